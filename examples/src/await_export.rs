//! `await-export`: starts a long job on a remote service, then polls it every few seconds
//! with a durable sleep between polls until it is done: the "wait for an external job"
//! pattern.
//!
//! Each poll is a recorded step and each pause a durable sleep, so a crash or a deploy at
//! any moment resumes the loop where it was. The pauses are short, so the engine's
//! hot-run cache keeps the run's body in memory while it sleeps
//! ([`reprise::EngineBuilder::hot_runs`]): each wake-up continues the loop in place instead
//! of replaying every earlier poll from the log, and a run that polls *n* times costs *n*
//! steps, not *n²/2* replayed ones. After a restart the first wake-up replays once, and the
//! log it writes is the same either way.
//!
//! The "remote service" here is simulated: a job is ready after `polls_needed` polls.
//!
//! ```text
//! cargo run -q -p reprise-examples -- workflows run await-export \
//!     --input '{"dataset":"orders","polls_needed":5,"interval":"1s"}'
//! ```

use reprise::prelude::*;

/// What to export, and how the simulated service behaves.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ExportRequest {
    /// The dataset to export.
    pub dataset: String,
    /// How many polls the simulated job needs before it is ready (at most 1,000).
    #[schemars(range(max = 1000))]
    pub polls_needed: u32,
    /// The pause between polls, as humantime (`"2s"`, `"500ms"`).
    pub interval: String,
}

/// A started export job.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ExportJob {
    /// The job's id at the service.
    pub job_id: String,
    /// Polls until the simulated job is ready.
    pub polls_needed: u32,
}

/// One poll of a job.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Poll {
    /// The job.
    pub job: ExportJob,
    /// Which poll this is, from 1.
    pub poll: u32,
}

/// The job's state as the service reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct JobStatus {
    /// The download URL once the job is done.
    pub download_url: Option<String>,
}

/// The finished export.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Export {
    /// Where to download it.
    pub download_url: String,
    /// How many polls it took.
    pub polls: u32,
}

/// Starts the export at the (simulated) service.
#[action(retries = 3, backoff = "1s")]
pub async fn start_export(request: ExportRequest, cx: ActionCtx) -> Result<ExportJob, ActionError> {
    crate::effects::record(&cx)?;
    Ok(ExportJob {
        job_id: format!("export-{}", cx.idempotency_key()),
        polls_needed: request.polls_needed,
    })
}

/// Asks the (simulated) service whether the job is done.
#[action(retries = 3, backoff = "1s")]
pub async fn check_export(poll: Poll, cx: ActionCtx) -> Result<JobStatus, ActionError> {
    crate::effects::record(&cx)?;
    let ready = poll.poll >= poll.job.polls_needed;
    Ok(JobStatus {
        download_url: ready.then(|| format!("https://exports.example/{}.csv", poll.job.job_id)),
    })
}

/// Starts an export, then polls it with a durable sleep between polls until it is ready.
#[workflow(slug = "await-export")]
pub async fn await_export(ctx: Ctx, request: ExportRequest) -> Result<Export, WorkflowError> {
    let interval = request.interval.clone();
    let job = start_export.run(request).await?;
    let mut poll = 0;
    loop {
        poll += 1;
        let status = check_export
            .run(Poll {
                job: job.clone(),
                poll,
            })
            .await?;
        if let Some(download_url) = status.download_url {
            return Ok(Export {
                download_url,
                polls: poll,
            });
        }
        ctx.sleep(interval.as_str()).await?;
    }
}
