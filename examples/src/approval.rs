//! `approval`: ask a person for a decision, wait for it durably (a hook, optionally with a
//! timeout), act on it.
//!
//! The run sends the hook's resume URL through an action (here printed, as a chat bot would
//! post it), then waits holding nothing: no task, no memory, no connection. The decision
//! arrives from anywhere — `POST`/`GET` on the resume URL while `dev` serves the HTTP API,
//! or `hooks resume` on the command line — exactly once. With a `timeout`, a request nobody
//! decides in time *expires*: the run is woken at the deadline, tells the requester and
//! completes with `"expired"` (an outcome, not a failure); a decision sent after that is
//! refused (409 over HTTP).
//!
//! ```text
//! cargo run -q -p reprise-examples -- workflows run approval --input '{"title":"Ship v2"}'
//! # prints the resume URL and exits 3: the run is waiting, holding nothing
//! cargo run -q -p reprise-examples -- hooks resume <token> --payload '{"approved":true,"by":"Ada"}'
//!
//! cargo run -q -p reprise-examples -- workflows run approval --input '{"title":"Ship v3","timeout":"5s"}'
//! # nobody decides: after 5 s the run completes with {"result":"expired"}
//! ```

use reprise::prelude::*;

/// What needs approving.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalRequest {
    /// A one-line title.
    pub title: String,
    /// How long to wait for a decision, as a duration such as `"3d"`, `"4h"` or `"30s"`;
    /// when it passes, the request expires. Without it the run waits until someone decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

impl ApprovalRequest {
    /// A request titled `title`, waiting for a decision without a deadline.
    pub fn new(title: impl Into<String>) -> Self {
        ApprovalRequest {
            title: title.into(),
            timeout: None,
        }
    }

    /// The same request, expiring `timeout` (e.g. `"3d"`) after it is sent.
    #[must_use]
    pub fn expiring_after(mut self, timeout: impl Into<String>) -> Self {
        self.timeout = Some(timeout.into());
        self
    }
}

/// The message asking for a decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AskMessage {
    /// What needs approving.
    pub title: String,
    /// Where the decision is to be sent (`POST` JSON or `GET` with a query).
    pub resume_url: String,
    /// How long the approver has to decide, when the request expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decide_within: Option<String>,
}

/// The decision, as delivered to the hook: `POST` JSON such as
/// `{"approved": true, "by": "Ada"}`, or `GET <resume_url>?approved=true&by=Ada` (a link in
/// an email or a chat message; query values are text, so `approved` also takes `"true"` and
/// `"false"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Decision {
    /// Whether it is approved.
    #[serde(deserialize_with = "bool_or_text")]
    #[schemars(with = "BoolOrText")]
    pub approved: bool,
    /// Who decided.
    pub by: String,
}

/// The schema of [`Decision::approved`]: a boolean, or its text as a query string has it.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)] // only its schema is used
enum BoolOrText {
    Bool(bool),
    Text(TrueOrFalse),
}

#[derive(JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // only its schema is used
enum TrueOrFalse {
    True,
    False,
}

fn bool_or_text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bool(bool),
        Text(String),
    }
    match Raw::deserialize(deserializer)? {
        Raw::Bool(value) => Ok(value),
        Raw::Text(text) if text == "true" => Ok(true),
        Raw::Text(text) if text == "false" => Ok(false),
        Raw::Text(text) => Err(serde::de::Error::custom(format!(
            "`{text}` is not `true` or `false`"
        ))),
    }
}

/// How it ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Outcome {
    /// `"published"`, `"rejected"`, or `"expired"` when nobody decided before the timeout.
    pub result: String,
    /// Who decided (absent when the request expired).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// Sends the approval request (here: prints it on standard error, as a chat bot would post it).
#[action(retries = 3, backoff = "200ms")]
pub async fn ask_for_approval(input: AskMessage, cx: ActionCtx) -> Result<(), ActionError> {
    crate::effects::record(&cx)?;
    let within = input
        .decide_within
        .map(|d| format!(" (within {d})"))
        .unwrap_or_default();
    eprintln!(
        "[approvals] \"{}\" needs a decision{within}: POST {{\"approved\":true,\"by\":\"<you>\"}} to {url}, \
         or open {url}?approved=true&by=<you> (approved=false to reject)",
        input.title,
        url = input.resume_url
    );
    Ok(())
}

/// Publishes the approved item.
#[action(retries = 3, backoff = "200ms")]
pub async fn publish(input: ApprovalRequest, cx: ActionCtx) -> Result<(), ActionError> {
    crate::effects::record(&cx)?;
    eprintln!("[publish] {}", input.title);
    Ok(())
}

/// Tells the requester that nobody decided in time (here: prints it on standard error).
#[action(retries = 3, backoff = "200ms")]
pub async fn report_expired(input: ApprovalRequest, cx: ActionCtx) -> Result<(), ActionError> {
    crate::effects::record(&cx)?;
    eprintln!(
        "[approvals] \"{}\" expired: nobody decided within {}",
        input.title,
        input.timeout.as_deref().unwrap_or("its timeout")
    );
    Ok(())
}

/// Asks for approval, waits for the decision (or the timeout), and publishes if approved.
#[workflow(slug = "approval")]
pub async fn approval(ctx: Ctx, input: ApprovalRequest) -> Result<Outcome, WorkflowError> {
    let mut hook = ctx.hook::<Decision>();
    if let Some(timeout) = &input.timeout {
        // Refuse a malformed timeout ("soon") before anyone is asked.
        reprise::SleepDuration::to_duration(timeout)?;
        // The deadline is recorded with the hook: replays and restarts keep it.
        hook = hook.timeout(timeout);
    }
    ask_for_approval
        .run(AskMessage {
            title: input.title.clone(),
            resume_url: hook.resume_url(),
            decide_within: input.timeout.clone(),
        })
        .await?;
    let decision = match hook.await {
        Ok(decision) => decision,
        // Nobody decided in time: an outcome to act on, not a failure of the run.
        Err(error) if error.kind == reprise::kinds::TIMEOUT => {
            report_expired.run(input).await?;
            return Ok(Outcome {
                result: "expired".to_owned(),
                by: None,
            });
        }
        Err(error) => return Err(error.into()),
    };
    if decision.approved {
        publish.run(input).await?;
    }
    let result = if decision.approved {
        "published"
    } else {
        "rejected"
    };
    Ok(Outcome {
        result: result.to_owned(),
        by: Some(decision.by),
    })
}
