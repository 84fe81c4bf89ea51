//! Failure handlers and parking (DESIGN "Operations"; issue 15 item 4):
//! `#[workflow(on_failure = handler)]` starts a run of `handler` with a [`FailedRun`] when
//! a run fails for good, and `#[workflow(on_max_attempts = "pause")]` parks a run whose
//! attempts ran out as `paused` instead of failing it.
//!
//! The handler's run is created *before* the failed run's `run_failed` is appended, under
//! the key `on-failure:<run id>:<attempt>` (`Store::create_run_once`): a crash between the
//! two re-executes the failed run, which fails again and finds the handler's run already
//! there. So each failure starts its handler exactly once, and a run retried after a fix
//! that fails again starts it again (a new attempt, a new key).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Engine;
use crate::WorkflowError;
use crate::ctx::RunState;
use crate::error::EngineError;
use crate::event::{EventPayload, PauseReason, RunId, RunStatus, RunUpdate, Trigger};

/// The input of a failure handler (`#[workflow(on_failure = handler)]`): the run that
/// failed for good.
///
/// ```
/// use reprise::{Ctx, FailedRun, WorkflowError, workflow};
///
/// /// Tells someone; its own run is recorded and retried like any other.
/// #[workflow]
/// async fn report_failure(ctx: Ctx, failed: FailedRun) -> Result<String, WorkflowError> {
///     Ok(format!("{} {} failed: {}", failed.workflow, failed.run_id, failed.error.message))
/// }
///
/// #[workflow(on_failure = report_failure)]
/// async fn risky(ctx: Ctx, n: u32) -> Result<u32, WorkflowError> {
///     Err(WorkflowError::permanent("no"))
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FailedRun {
    /// The failed run's id.
    #[schemars(with = "String")]
    pub run_id: RunId,
    /// Its workflow's slug.
    pub workflow: String,
    /// Its input.
    pub input: Value,
    /// The error it failed with (`{"kind", "message", "retryable", "step"?, …}`).
    #[schemars(with = "Value")]
    pub error: WorkflowError,
    /// The attempt that failed (from 1).
    pub attempt: u32,
}

impl Engine {
    /// Starts `entry`'s failure handler, if it has one, for the failure of `state`'s run
    /// with `error`; exactly once per failed attempt (see the module docs). A handler this
    /// binary does not register, or whose input does not fit, is logged and skipped: the
    /// failure itself is recorded whatever becomes of its handler.
    ///
    /// # Errors
    /// Store errors (the failure is then not recorded either; the run is executed again).
    pub(super) async fn start_failure_handler(
        &self,
        state: &RunState,
        entry: &crate::registry::WorkflowEntry,
        error: &WorkflowError,
    ) -> Result<(), EngineError> {
        let Some(handler) = entry.options.on_failure else {
            return Ok(());
        };
        let run = self.get_run(&state.run_id).await?;
        let failed = FailedRun {
            run_id: state.run_id.clone(),
            workflow: run.workflow.clone(),
            input: run.input,
            error: error.clone(),
            attempt: state.attempt,
        };
        let key = format!("on-failure:{}:{}", state.run_id, state.attempt);
        let options = crate::StartOptions::new().actor(crate::identity::Actor::Run {
            run_id: state.run_id.to_string(),
            relation: crate::identity::RunRelation::Failed,
        });
        match self
            .start_once_with(
                handler,
                serde_json::to_value(&failed)?,
                Trigger::OnFailure,
                &key,
                &options,
            )
            .await
        {
            Ok((handler_run, created)) => {
                if created {
                    tracing::info!(
                        run = %state.run_id,
                        handler,
                        handler_run = %handler_run,
                        "run failed; started its failure handler"
                    );
                }
                Ok(())
            }
            Err(error) if error.is_store() => Err(error),
            Err(error) => {
                tracing::warn!(
                    run = %state.run_id,
                    handler,
                    %error,
                    "run failed; could not start its failure handler"
                );
                Ok(())
            }
        }
    }

    /// Parks `state`'s run as `paused` (`on_max_attempts = "pause"`) when it fails because
    /// retries ran out: its body's retryable error after its last attempt, or a step that
    /// failed with a retryable error after its last retry. Records `run_paused` with reason
    /// `max_attempts`, by `engine`, the error it would have failed with and the step that
    /// failed it. Returns whether it parked the run (`false`: a non-retryable failure, which
    /// would fail again, fails the run).
    ///
    /// # Errors
    /// Store errors.
    pub(super) async fn park_if_retries_ran_out(
        &self,
        state: &RunState,
        error: &WorkflowError,
    ) -> Result<bool, EngineError> {
        let events = self.store().events(&state.run_id).await?;
        let step = super::retry_run::failed_step(&events, error);
        let step_retryable = step.as_deref().is_some_and(|step| {
            events.iter().rev().any(|e| {
                e.event.kind == crate::event::EventKind::StepFailed
                    && e.event.correlation_id.as_deref() == Some(step)
                    && matches!(
                        EventPayload::decode(e.event.kind, &e.event.payload),
                        Ok(EventPayload::StepFailed { error }) if error.retryable
                    )
            })
        });
        if !(error.retryable || step_retryable) {
            return Ok(false);
        }
        let event = state.event(
            None,
            state.attempt,
            EventPayload::RunPaused {
                by: "engine".to_owned(),
                reason: PauseReason::MaxAttempts,
                step: step.clone(),
                error: Some(error.clone()),
            },
        );
        let update = RunUpdate {
            status: Some(RunStatus::Paused),
            error: Some(serde_json::to_value(error)?),
            wake_at: Some(None),
            ..RunUpdate::default()
        };
        state.append_last(vec![event], update).await?;
        tracing::warn!(
            run = %state.run_id,
            attempt = state.attempt,
            step = ?step,
            %error,
            "run parked as paused: its attempts ran out; fix the cause, then `runs unpause` it"
        );
        Ok(true)
    }
}
