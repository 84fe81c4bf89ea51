//! `delayed-followup`: welcome a new user now, follow up later — a durable sleep in the
//! middle of a workflow.
//!
//! While the run sleeps it holds nothing: no task, no memory, no connection; the process
//! may stop and start again (or another worker may take over) and the follow-up still goes
//! out once, at the recorded wake-up time, while the welcome is never sent twice. The delay
//! is part of the input so a demo can use seconds where production uses days.
//!
//! ```text
//! cargo run -q -p reprise-examples -- workflows run delayed-followup \
//!     --input '{"name":"Ada","email":"ada@example.com","delay":"5s"}'
//! # `workflows run` waits the 5 s in-process; under `dev` or `worker` the run is
//! # `sleeping` in the database until a worker wakes it
//! ```

use std::time::Duration;

use reprise::prelude::*;

/// Who to welcome, and when to follow up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FollowupRequest {
    /// The new user's name.
    pub name: String,
    /// Their email address.
    #[schemars(email)]
    pub email: String,
    /// How long after the welcome to follow up, as a duration such as `"3d"`, `"12h"` or
    /// `"10s"` (default `"3d"`).
    #[serde(default = "default_delay")]
    pub delay: String,
}

fn default_delay() -> String {
    "3d".to_owned()
}

/// An email to send.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Email {
    /// The recipient.
    pub to: String,
    /// The subject line.
    pub subject: String,
    /// The body.
    pub text: String,
}

/// A sent email.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Sent {
    /// The message id: the step's idempotency key, which a real mail API would be given to
    /// drop a repeated send.
    pub message_id: String,
}

/// What the run did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FollowupReport {
    /// The welcome's message id.
    pub welcome: String,
    /// The follow-up's message id.
    pub followup: String,
    /// How long the run slept between the two (the input's `delay`).
    pub waited: String,
}

/// Sends an email (here: prints it on standard error).
async fn send(input: Email, cx: &ActionCtx) -> Result<Sent, ActionError> {
    crate::effects::record(cx)?;
    eprintln!("[mail] to {}: {} — {}", input.to, input.subject, input.text);
    Ok(Sent {
        message_id: cx.idempotency_key().to_owned(),
    })
}

/// Sends the welcome email.
#[action(retries = 3, backoff = "200ms")]
pub async fn send_welcome(input: Email, cx: ActionCtx) -> Result<Sent, ActionError> {
    send(input, &cx).await
}

/// Sends the follow-up email.
#[action(retries = 3, backoff = "200ms")]
pub async fn send_followup(input: Email, cx: ActionCtx) -> Result<Sent, ActionError> {
    send(input, &cx).await
}

/// The welcome email for `user`.
pub fn welcome_email(user: &FollowupRequest) -> Email {
    Email {
        to: user.email.clone(),
        subject: format!("Welcome, {}!", user.name),
        text: "Your account is ready. Reply to this email if anything is unclear.".to_owned(),
    }
}

/// The follow-up email for `user`.
pub fn followup_email(user: &FollowupRequest) -> Email {
    Email {
        to: user.email.clone(),
        subject: format!("How is it going, {}?", user.name),
        text: format!(
            "You signed up {} ago. What is the one thing we could make easier?",
            user.delay
        ),
    }
}

/// Sends a welcome, sleeps durably for `delay`, then sends a follow-up.
#[workflow(slug = "delayed-followup")]
pub async fn delayed_followup(
    ctx: Ctx,
    input: FollowupRequest,
) -> Result<FollowupReport, WorkflowError> {
    // Refuse a malformed delay ("soon") before anything is sent.
    let delay: Duration = reprise::SleepDuration::to_duration(&input.delay)?;
    let welcome = send_welcome.run(welcome_email(&input)).await?;
    // Durable: the wake-up time is recorded and the run suspends; nothing waits in memory.
    ctx.sleep(delay).await?;
    let followup = send_followup.run(followup_email(&input)).await?;
    Ok(FollowupReport {
        welcome: welcome.message_id,
        followup: followup.message_id,
        waited: input.delay,
    })
}
