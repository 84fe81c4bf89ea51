//! Delivering signals (and update requests) into a run's inbox: the one delivery path
//! that `Engine::signal`, `Engine::signal_by_key`, `Engine::update` and `ctx.send_signal`
//! share ([`deliver`]), the signals and updates each workflow receives ([`Mailboxes`]),
//! and where a signal goes ([`SignalTarget`]). Below the engine and the workflow context,
//! which both use it.
//!
//! A delivery is checked before anything is written: the run exists and has not ended, its
//! workflow (or a sub-workflow it calls) receives a signal of that name
//! (`ctx.signal::<T>("name")`, collected by `#[workflow]`), the payload matches `T`'s
//! schema and is within the payload limit. Then it is posted ([`crate::store::Store::post_message`]),
//! de-duplicated by the sender's idempotency key, which wakes a waiting run.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::error::EngineError;
use crate::event::RunId;
use crate::message::{NewMessage, Posted};
use crate::registry::Registry;
use crate::run_env::RunEnv;
use crate::step::{MessageDecl, MessageKind, SiteKind};

/// The signals and updates each workflow receives: its own (`WorkflowOptions::messages`)
/// and those of the sub-workflows it calls, at any depth (they run in the same run and
/// read the same inbox). Built once per engine.
#[derive(Debug, Default)]
pub(crate) struct Mailboxes {
    by_workflow: BTreeMap<&'static str, Vec<MessageDecl>>,
}

impl Mailboxes {
    /// The messages of every workflow of `registry`.
    pub(crate) fn of(registry: &Registry) -> Mailboxes {
        let mut by_workflow = BTreeMap::new();
        for entry in registry.workflows() {
            let mut decls: Vec<MessageDecl> = Vec::new();
            let mut seen = BTreeSet::new();
            let mut stack = vec![entry.clone()];
            while let Some(workflow) = stack.pop() {
                if !seen.insert(workflow.registration.slug) {
                    continue;
                }
                for decl in workflow.options.messages {
                    if !decls.iter().any(|d| d == decl) {
                        decls.push(*decl);
                    }
                }
                for site in workflow.sites.iter().filter(|s| s.kind == SiteKind::Run) {
                    // A workflow file's sites name their callee by slug.
                    let slug = if workflow.origin.is_some() {
                        Some(site.callee)
                    } else {
                        registry.slug_of_callee(&workflow.registration, site.callee)
                    };
                    if let Some(callee) = slug.and_then(|slug| registry.workflow(slug)) {
                        stack.push(callee.clone());
                    }
                }
            }
            by_workflow.insert(entry.registration.slug, decls);
        }
        Mailboxes { by_workflow }
    }

    /// The declaration of `kind` message `name` that workflow `slug` receives.
    pub(crate) fn find(&self, slug: &str, kind: MessageKind, name: &str) -> Option<MessageDecl> {
        self.by_workflow
            .get(slug)?
            .iter()
            .find(|d| d.kind == kind && d.name == name)
            .copied()
    }

    /// The names of `kind` messages workflow `slug` receives.
    pub(crate) fn names(&self, slug: &str, kind: MessageKind) -> Vec<String> {
        self.by_workflow
            .get(slug)
            .map(|decls| {
                decls
                    .iter()
                    .filter(|d| d.kind == kind)
                    .map(|d| d.name.to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// `signal` or `update`, as errors and messages say it.
pub(crate) fn kind_word(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::Signal => "signal",
        MessageKind::Update => "update",
    }
}

/// The inbox channel of `kind` message `name`.
fn channel(kind: MessageKind, name: &str) -> String {
    match kind {
        MessageKind::Signal => crate::message::signal_channel(name),
        MessageKind::Update => crate::message::update_channel(name),
    }
}

/// Checks and posts `kind` message `name` with `payload` into run `run`'s inbox,
/// de-duplicated by `dedupe`. Returns where it was posted and the message's declaration.
///
/// # Errors
/// [`EngineError::UnknownRun`]; [`EngineError::InvalidState`] (409) when the run has
/// ended; [`EngineError::UnknownMessage`] (404) when its workflow receives no such
/// message; [`EngineError::Schema`] (422, naming JSON pointers) when the payload does not
/// match the declared type; [`EngineError::PayloadTooLarge`]; store failures. Nothing is
/// posted on any error.
pub(crate) async fn deliver(
    env: &RunEnv,
    run: &RunId,
    kind: MessageKind,
    name: &str,
    payload: Value,
    dedupe: Option<String>,
) -> Result<(Posted, MessageDecl), EngineError> {
    let word = kind_word(kind);
    let record = env
        .store
        .run(run)
        .await?
        .ok_or_else(|| EngineError::UnknownRun(run.to_string()))?;
    let mailboxes = env.service::<Mailboxes>();
    let decl = mailboxes.and_then(|m| m.find(&record.workflow, kind, name));
    let Some(decl) = decl else {
        return Err(EngineError::UnknownMessage {
            run: run.to_string(),
            workflow: record.workflow.clone(),
            kind: word,
            name: name.to_owned(),
            known: mailboxes
                .map(|m| m.names(&record.workflow, kind))
                .unwrap_or_default(),
        });
    };
    if record.status.is_terminal() {
        return Err(EngineError::InvalidState {
            run: run.to_string(),
            status: record.status.to_string(),
            message: format!(
                "the run has ended; a {word} is delivered only to a run that has not (start a \
                 new run, or look at `runs get {run}`)"
            ),
        });
    }
    (decl.payload)()?
        .validate(&payload)
        .map_err(|mut violation| {
            violation.what = format!("the payload of {word} `{name}`");
            EngineError::Schema(violation)
        })?;
    crate::payload::PayloadLimits::of(env).check(
        || format!("the payload of {word} `{name}` for run `{run}`"),
        &payload,
    )?;
    let posted = env
        .store
        .post_message(NewMessage {
            run_id: run.clone(),
            channel: channel(kind, name),
            payload,
            dedupe,
            at: env.now(),
        })
        .await?;
    if !posted.duplicate {
        // A waiting run is `queued` now: local workers look for it at once.
        env.wake.notify_waiters();
        env.live.publish(run, crate::live::Live::Appended);
    }
    Ok((posted, decl))
}

/// Where `ctx.send_signal` delivers: a run by id, or the run of a workflow holding a
/// business key.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalTarget {
    /// The run with this id.
    Run(RunId),
    /// The run of workflow `workflow` started with business key `key`
    /// ([`crate::StartOptions::key`]).
    Key {
        /// The workflow's slug.
        workflow: String,
        /// The business key.
        key: String,
    },
}

impl From<RunId> for SignalTarget {
    fn from(run: RunId) -> Self {
        SignalTarget::Run(run)
    }
}

impl From<&RunId> for SignalTarget {
    fn from(run: &RunId) -> Self {
        SignalTarget::Run(run.clone())
    }
}

impl From<(&str, &str)> for SignalTarget {
    fn from((workflow, key): (&str, &str)) -> Self {
        SignalTarget::Key {
            workflow: workflow.to_owned(),
            key: key.to_owned(),
        }
    }
}

impl SignalTarget {
    /// The run this target names now.
    ///
    /// # Errors
    /// [`EngineError::UnknownKey`] when no run holds the key; store failures.
    pub(crate) async fn resolve(&self, env: &RunEnv) -> Result<RunId, EngineError> {
        match self {
            SignalTarget::Run(run) => Ok(run.clone()),
            SignalTarget::Key { workflow, key } => {
                crate::run_keys::run_id_for_key(env, workflow, key).await
            }
        }
    }
}
