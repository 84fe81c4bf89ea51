//! `approval`: ask a person for a decision, wait for it durably (a hook), act on it.
//!
//! ```text
//! cargo run -q -p reprise-examples -- workflows run approval --input '{"title":"Ship v2"}'
//! # prints the resume URL and exits 3: the run is waiting, holding nothing
//! cargo run -q -p reprise-examples -- hooks resume <token> --payload '{"approved":true,"by":"Ada"}'
//! ```

use reprise::prelude::*;

/// What needs approving.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalRequest {
    /// A one-line title.
    pub title: String,
}

/// The message asking for a decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AskMessage {
    /// What needs approving.
    pub title: String,
    /// Where the decision is to be sent (`POST` JSON or `GET` with a query).
    pub resume_url: String,
}

/// The decision, as delivered to the hook.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Decision {
    /// Whether it is approved.
    pub approved: bool,
    /// Who decided.
    pub by: String,
}

/// How it ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Outcome {
    /// `"published"` or `"rejected"`.
    pub result: String,
    /// Who decided.
    pub by: String,
}

/// Sends the approval request (here: prints it on standard error, as a chat bot would post it).
#[action(retries = 3, backoff = "200ms")]
pub async fn ask_for_approval(input: AskMessage, cx: ActionCtx) -> Result<(), ActionError> {
    crate::effects::record(&cx)?;
    eprintln!(
        "[approvals] \"{}\" needs a decision: {}",
        input.title, input.resume_url
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

/// Asks for approval, waits for the decision, and publishes if approved.
#[workflow(slug = "approval")]
pub async fn approval(ctx: Ctx, input: ApprovalRequest) -> Result<Outcome, WorkflowError> {
    let hook = ctx.hook::<Decision>();
    ask_for_approval
        .run(AskMessage {
            title: input.title.clone(),
            resume_url: hook.resume_url(),
        })
        .await?;
    let decision = hook.await?;
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
        by: decision.by,
    })
}
