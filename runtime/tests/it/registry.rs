//! The registry identifies steps by type, not by fn name: two `fn notify` in two modules
//! with the default slug are an error naming both types (they used to dedupe silently,
//! one of them never registered); the same type registered twice is fine; manifest
//! callees resolve by type path.
//!
//! The steps here are declared with `register = false` and registered by hand: linked
//! into the binary's registry, the duplicate slug would fail every `discover()` of this
//! test binary (which is the point of the check).

use reprise::EngineError;
use reprise::prelude::*;
use reprise::registry::{Registration, Registry};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Message {
    text: String,
}

mod email {
    use super::Message;
    use reprise::prelude::*;

    /// Sends an email.
    #[action(register = false)]
    pub(super) async fn notify(input: Message) -> Result<Message, ActionError> {
        Ok(input)
    }
}

mod sms {
    use super::Message;
    use reprise::prelude::*;

    /// Sends a text message: another `notify`, with the same default slug.
    #[action(register = false)]
    pub(super) async fn notify(input: Message) -> Result<Message, ActionError> {
        Ok(input)
    }
}

mod texts {
    use super::Message;
    use reprise::prelude::*;

    /// Another `notify`, with a slug of its own.
    #[action(slug = "text-notify", register = false)]
    pub(super) async fn notify(input: Message) -> Result<Message, ActionError> {
        Ok(input)
    }
}

/// A workflow whose slug is an action's.
#[workflow(slug = "notify", register = false)]
async fn notify_workflow(input: Message) -> Result<Message, WorkflowError> {
    Ok(input)
}

/// Calls both `notify` actions that have distinct slugs.
#[workflow(register = false)]
async fn alerts(input: Message) -> Result<Message, WorkflowError> {
    let sent = email::notify.run(input).await?;
    Ok(texts::notify.run(sent).await?)
}

fn here(name: &str) -> String {
    format!("{}::{name}", module_path!())
}

fn duplicate_message(first: &str, second: &str) -> String {
    format!(
        "two different steps are registered with the slug `notify`: the {first} and the \
         {second}; give one of them another slug (`#[action(slug = \"…\")]` or \
         `#[workflow(slug = \"…\")]`)"
    )
}

fn config_message(result: Result<(), EngineError>) -> String {
    match result {
        Err(EngineError::Config(message)) => message,
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[test]
fn two_notify_actions_in_two_modules_are_an_error_naming_both() {
    let mut registry = Registry::default();
    registry.register::<email::notify>().unwrap();
    let message = config_message(registry.register::<sms::notify>());
    assert_eq!(
        message,
        duplicate_message(
            &format!("action `{}`", here("email::notify")),
            &format!("action `{}`", here("sms::notify"))
        )
    );
    // The first stays registered, the second was not.
    let entry = registry.action("notify").expect("email::notify");
    assert_eq!(entry.registration.type_name(), here("email::notify"));
}

#[test]
fn link_time_registrations_with_one_fn_name_do_not_dedupe() {
    // What `#[action]` submits and `discover()` adds: both carry the fn name `notify`,
    // which alone made them look like one step.
    let mut registry = Registry::default();
    registry
        .add(Registration::of::<email::notify>("notify"))
        .unwrap();
    let message = config_message(registry.add(Registration::of::<sms::notify>("notify")));
    assert!(message.contains(&here("email::notify")), "{message}");
    assert!(message.contains(&here("sms::notify")), "{message}");
}

#[test]
fn the_same_type_registered_twice_is_fine() {
    let mut registry = Registry::default();
    registry.register::<email::notify>().unwrap();
    registry.register::<email::notify>().unwrap();
    registry
        .add(Registration::of::<email::notify>("notify"))
        .unwrap();
    assert_eq!(registry.actions().count(), 1);
}

#[test]
fn an_action_and_a_workflow_cannot_share_a_slug() {
    let mut registry = Registry::default();
    registry.register::<email::notify>().unwrap();
    let message = config_message(registry.register::<notify_workflow>());
    assert_eq!(
        message,
        duplicate_message(
            &format!("action `{}`", here("email::notify")),
            &format!("workflow `{}`", here("notify_workflow"))
        )
    );
}

#[test]
fn the_engine_builder_reports_the_duplicate() {
    let error = Engine::builder()
        .register(email::notify)
        .register(sms::notify)
        .build()
        .map(drop)
        .expect_err("two steps with one slug");
    assert_eq!(
        error.to_string(),
        duplicate_message(
            &format!("action `{}`", here("email::notify")),
            &format!("action `{}`", here("sms::notify"))
        )
    );
}

#[test]
fn manifest_callees_resolve_by_type_path() {
    let mut registry = Registry::default();
    registry.register::<email::notify>().unwrap();
    registry.register::<texts::notify>().unwrap();
    registry.register::<alerts>().unwrap();
    // By fn name, `notify` is ambiguous.
    assert_eq!(registry.slug_of_fn("notify"), None);
    let workflow = registry.workflow("alerts").expect("alerts");
    let caller = workflow.registration;
    let resolved: Vec<_> = workflow
        .sites
        .iter()
        .map(|site| registry.slug_of_callee(&caller, site.callee))
        .collect();
    assert_eq!(resolved, [Some("notify"), Some("text-notify")]);
    // Other spellings of the same paths.
    for (callee, slug) in [
        ("crate::registry::texts::notify", "text-notify"),
        ("self::email::notify", "notify"),
        ("super::registry::email::notify", "notify"),
        ("texts :: notify", "text-notify"),
    ] {
        assert_eq!(
            registry.slug_of_callee(&caller, callee),
            Some(slug),
            "{callee}"
        );
    }
    // A bare name that fits both stays unresolved; one that fits one step resolves.
    assert_eq!(registry.slug_of_callee(&caller, "notify"), None);
    assert_eq!(registry.slug_of_callee(&caller, "alerts"), Some("alerts"));
}
