//! The response shape several routes share: where a run stands after a request.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::event::{RunId, RunRecord, RunStatus};

/// A run's id and status, with its result once it ended: the answer of starting a run,
/// delivering a hook payload and canceling.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RunState {
    /// The run's id.
    pub(crate) run_id: String,
    /// `queued`, `running`, `sleeping`, `waiting`, `completed`, `failed` or `canceled`.
    #[schema(example = "queued")]
    pub(crate) status: String,
    /// The workflow's output, when `completed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) output: Option<Value>,
    /// The run's error (`{"kind", "message", "retryable", ...}`), when `failed` or `canceled`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<Value>,
    /// `true` when a cancellation was requested and the run stops at its next step boundary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cancel_requested: Option<bool>,
    /// `true` when an `Idempotency-Key` seen before returned this run: nothing was started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) duplicate: Option<bool>,
    /// For a start with a business key (`?key=`): whether this request created the run
    /// (`false`: a run already held the key, and this is it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) created: Option<bool>,
}

impl RunState {
    /// Run `id` in `status`, nothing else.
    pub(crate) fn new(id: &RunId, status: RunStatus) -> Self {
        RunState {
            run_id: id.to_string(),
            status: status.to_string(),
            output: None,
            error: None,
            cancel_requested: None,
            duplicate: None,
            created: None,
        }
    }

    /// Where `record` stands, with its output or error when it ended.
    pub(crate) fn of(record: RunRecord) -> Self {
        let mut state = Self::new(&record.id, record.status);
        match record.status {
            RunStatus::Completed => state.output = Some(record.output.unwrap_or(Value::Null)),
            RunStatus::Failed | RunStatus::Canceled | RunStatus::Paused => {
                state.error = record.error
            }
            _ => {}
        }
        state
    }
}
