//! Retrying a failed run on the current code (DESIGN "Operations"; issue 15 item 1):
//! `runs retry`, `POST /runs/{id}/retry`, [`Engine::retry_run`].
//!
//! A retry appends `run_retried` (who asked, the failed step, the error) and queues the
//! run again with a new attempt. The next execution replays the log as usual, with the
//! usual non-determinism checks, except that the recorded failure of the step that failed
//! the run (and of the sub-workflows around it) no longer answers: that step runs again,
//! on the code deployed now. Every step that had completed replays from the log and is not
//! executed again. The run keeps its id and its log; forking into a new run is a separate
//! operation.

use serde::Serialize;

use super::Engine;
use crate::error::EngineError;
use crate::event::{Event, EventKind, EventPayload, NewEvent, RunId, RunStatus, RunUpdate};
use crate::store::Append;
use crate::{ActionError, WorkflowError};

/// What [`Engine::retry_run`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RetriedRun {
    /// The run, now `queued`.
    pub run_id: RunId,
    /// The attempt the retry starts (the failed one plus one).
    pub attempt: u32,
    /// The step that runs again, when the run failed because a step failed (`None`: the
    /// workflow body itself returned the error; it runs again from its replayed steps).
    pub step: Option<String>,
}

impl Engine {
    /// Retries failed run `id` on the current code: records `run_retried` (with `by`, who
    /// asked: `cli:<user>`, `api`, or your own text) and queues the run with a new
    /// attempt, so a worker (or [`Engine::drive`]) executes it again. Completed steps
    /// replay from the log; the step whose failure failed the run runs again.
    ///
    /// # Errors
    /// [`EngineError::UnknownRun`]; [`EngineError::InvalidState`] unless the run is
    /// `failed`; [`EngineError::Conflict`] when another retry won the race; store errors.
    pub async fn retry_run(&self, id: &RunId, by: &str) -> Result<RetriedRun, EngineError> {
        let record = self.get_run(id).await?;
        if record.status != RunStatus::Failed {
            return Err(EngineError::InvalidState {
                run: id.to_string(),
                status: record.status.to_string(),
                message: "only failed runs can be retried".into(),
            });
        }
        let error: WorkflowError = record
            .error
            .clone()
            .and_then(|error| serde_json::from_value(error).ok())
            .unwrap_or_else(|| WorkflowError::permanent("unknown error"));
        let events = self.store().events(id).await?;
        let step = failed_step(&events, &error);
        let attempt = record.attempt + 1;
        let event = NewEvent::new(
            None,
            attempt,
            self.now(),
            EventPayload::RunRetried {
                by: by.to_owned(),
                step: step.clone(),
                error,
            },
        );
        let update = RunUpdate {
            status: Some(RunStatus::Queued),
            attempt: Some(attempt),
            // JSON null: the failure no longer stands (stores read it back as no error).
            error: Some(serde_json::Value::Null),
            wake_at: Some(None),
            ..RunUpdate::default()
        };
        self.store()
            .append(Append {
                run_id: id.clone(),
                first_seq: record.next_seq,
                events: vec![event],
                update,
                fence: None,
                release: false,
            })
            .await?;
        tracing::info!(run = %id, by, step = ?step, attempt, "run retried");
        self.announce(id, &record.workflow, RunStatus::Queued);
        Ok(RetriedRun {
            run_id: id.clone(),
            attempt,
            step,
        })
    }
}

/// The step whose failure failed the run: the last `step_failed` with the run's error
/// (kind and message), and inside it, when it is a sub-workflow or agent, the innermost
/// step that failed with that error (the failure travelled up through the scopes).
pub(super) fn failed_step(events: &[Event], error: &WorkflowError) -> Option<String> {
    let failures: Vec<&str> = events
        .iter()
        .filter(|e| e.event.kind == EventKind::StepFailed)
        .filter_map(|e| {
            let id = e.event.correlation_id.as_deref()?;
            match EventPayload::decode(e.event.kind, &e.event.payload) {
                Ok(EventPayload::StepFailed { error: step_error })
                    if same_error(&step_error, error) =>
                {
                    Some(id)
                }
                _ => None,
            }
        })
        .collect();
    let mut step = *failures.last()?;
    while let Some(inner) = failures.iter().rev().find(|id| {
        id.len() > step.len() && id.starts_with(step) && id[step.len()..].starts_with('/')
    }) {
        step = inner;
    }
    Some(step.to_owned())
}

fn same_error(step: &ActionError, run: &WorkflowError) -> bool {
    step.kind == run.kind && step.message == run.message
}
