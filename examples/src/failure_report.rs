//! `report-failure`: the failure handler of `file-digest` (`#[workflow(on_failure =
//! report_failure)]`). When a digest fails for good, reprise starts one run of it with a
//! [`FailedRun`] (the failed run's id, workflow, input, error and attempt); it files a
//! notice, here a line on standard error and in the effect log. Its own run is recorded,
//! retried and listed like any other (`runs list --workflow report-failure`).
//!
//! ```text
//! cargo run -q -p reprise-examples -- workflows run file-digest --input '{"dir":"/nope"}'
//! cargo run -q -p reprise-examples -- runs list --workflow report-failure
//! cargo run -q -p reprise-examples -- runs resume      # or let `dev`/`worker` run it
//! ```

use reprise::FailedRun;
use reprise::prelude::*;

/// What the handler filed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Notice {
    /// One line for people: `<workflow> <run> failed (attempt N): <error>`.
    pub text: String,
    /// The notice's id: the filing step's idempotency key.
    pub notice_id: String,
}

/// Files a notice about a failed run (an effect: logged with its idempotency key).
#[action(slug = "file-notice")]
pub async fn file_notice(text: String, cx: ActionCtx) -> Result<Notice, ActionError> {
    crate::effects::record(&cx).map_err(|e| ActionError::transient(e.to_string()))?;
    eprintln!("notice: {text}");
    Ok(Notice {
        text,
        notice_id: cx.idempotency_key().to_owned(),
    })
}

/// Reports a run that failed for good.
#[workflow(slug = "report-failure")]
pub async fn report_failure(failed: FailedRun) -> Result<Notice, WorkflowError> {
    let text = format!(
        "{} {} failed (attempt {}): {}",
        failed.workflow, failed.run_id, failed.attempt, failed.error.message
    );
    Ok(file_notice.run(text).await?)
}
