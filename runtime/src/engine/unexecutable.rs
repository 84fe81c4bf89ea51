//! Runs this binary cannot execute (DESIGN "Reliability and security"): the run's workflow
//! is not registered here (removed or renamed by a deploy; a run of another application
//! sharing the database), or its record or log does not decode (a corrupt row; a row
//! written by a newer version). Executing such a run fails before its body starts, and
//! releasing its lease would make it due again at once: every worker would re-claim it in
//! a hot loop.
//!
//! Instead each such execution is a *strike*, recorded in the run's own log by a normal
//! append under the lease (so it is durable, fenced, and respected by every worker in
//! every process): strike `n` appends `run_deferred {reason, strike: n, wake_at}` and sets
//! the run's `wake_at` to `now + policy.delay(n)`; the last strike the policy allows parks
//! the run instead: `run_failed` with error kind [`kinds::UNEXECUTABLE`] and the reason.
//! The strike count is the number of `run_deferred` events that end the log, which the
//! store counts without decoding the log ([`crate::store::Store::triage`]), so a log
//! that does not decode is counted too; any other event (the run executing again on a
//! worker that has the workflow, a hook delivery) starts the count afresh.
//!
//! Why the log and not the lease: holding the lease until the next attempt would also keep
//! the run from being canceled, and would need a counter the log already is; why not a
//! status of its own: `failed` with a kind is what every surface already shows, and it
//! needs no schema change.

use std::time::Duration;

use chrono::{SubsecRound, TimeDelta};
use serde_json::json;

use super::{Engine, Execution, RunOutcome};
use crate::error::{EngineError, WorkflowError, kinds};
use crate::event::{EventPayload, NewEvent, RunStatus, RunUpdate};
use crate::retry::RetryPolicy;
use crate::store::{Append, Lease};

/// The default [`crate::EngineBuilder::unexecutable_policy`]: 1 s, doubling, capped at
/// 5 minutes, 10 strikes (deferred 511 s in all before the run is parked).
pub(super) const DEFAULT_POLICY: RetryPolicy = RetryPolicy::exponential(Duration::from_secs(1))
    .max_delay(Duration::from_secs(300))
    .max_attempts(10);

/// Whether `error`, from an execution of a run, means this binary cannot execute the run
/// at all: its workflow is unknown, or a row of it does not decode.
pub(crate) fn is_unexecutable(error: &EngineError) -> bool {
    matches!(
        error,
        EngineError::UnknownWorkflow(_) | EngineError::Corrupt { .. }
    )
}

/// What a strike did to the run.
pub(super) enum Strike {
    /// The run is put off until its next attempt; the lease may be released.
    Deferred,
    /// The run is parked: `failed`, kind `unexecutable`.
    Parked(Execution),
}

/// Why the run cannot be executed, for people (the log, the run's error, the warning).
fn reason(error: &EngineError) -> String {
    match error {
        EngineError::UnknownWorkflow(slug) => format!(
            "this binary has no workflow `{slug}` (removed or renamed by a deploy, or a run \
             of another application sharing this database)"
        ),
        EngineError::Corrupt { message, .. } => {
            format!("its stored record or log does not decode: {message}")
        }
        other => other.to_string(),
    }
}

impl Engine {
    /// Whether run `id` was last put off because it could not be executed (its log ends
    /// with a `run_deferred` event).
    ///
    /// # Errors
    /// Store failures.
    pub(super) async fn is_deferred(&self, id: &crate::event::RunId) -> Result<bool, EngineError> {
        Ok(self
            .store()
            .triage(id)
            .await?
            .is_some_and(|triage| triage.deferrals > 0))
    }

    /// Records a strike against the run under `lease`, which an execution found
    /// unexecutable with `error` (see the module docs): defers it, or parks it at the
    /// policy's last strike. Logs a warning at the first strike and when parking.
    ///
    /// # Errors
    /// Store failures and a lost lease: nothing was recorded, and the caller keeps the
    /// lease until it expires, so the run is not claimed again at once either.
    pub(super) async fn strike(
        &self,
        lease: &Lease,
        error: &EngineError,
    ) -> Result<Strike, EngineError> {
        let id = &lease.run_id;
        let triage = self
            .store()
            .triage(id)
            .await?
            .ok_or_else(|| EngineError::UnknownRun(id.to_string()))?;
        let strike = triage.deferrals.saturating_add(1);
        let policy = self.unexecutable_policy();
        let reason = reason(error);
        let workflow = triage.workflow.as_str();
        // To the microsecond, as the stores keep times: the event's time, its `wake_at` and
        // the run's `wake_at` then read back exactly as written.
        let now = self.now().trunc_subsecs(6);
        if policy.allows_retry_after(strike) {
            let delay = policy.delay(strike);
            let until = now + TimeDelta::from_std(delay).unwrap_or(TimeDelta::MAX);
            // A sleeping or waiting run stays so (its `wake_at` makes it due, and a waiting
            // run can still take its hook's payload); any other is queued.
            let status = match triage.status {
                Some(RunStatus::Sleeping | RunStatus::Waiting) => None,
                _ => Some(RunStatus::Queued),
            };
            let event = NewEvent::new(
                None,
                triage.attempt,
                now,
                EventPayload::RunDeferred {
                    reason: reason.clone(),
                    strike,
                    wake_at: until,
                },
            );
            self.store()
                .append(Append {
                    run_id: id.clone(),
                    first_seq: triage.next_seq,
                    events: vec![event],
                    update: RunUpdate {
                        status,
                        wake_at: Some(Some(until)),
                        ..RunUpdate::default()
                    },
                    fence: Some(lease.fence),
                    release: false,
                })
                .await?;
            if strike == 1 {
                tracing::warn!(
                    run = %id,
                    workflow,
                    reason = %reason,
                    next_attempt_at = %until.to_rfc3339(),
                    max_strikes = policy.max_attempts,
                    "this binary cannot execute the run; it is put off and retried with \
                     backoff, then parked as failed (kind `unexecutable`)"
                );
            } else {
                tracing::debug!(
                    run = %id,
                    workflow,
                    strike,
                    next_attempt_at = %until.to_rfc3339(),
                    "run still cannot be executed; put off again"
                );
            }
            return Ok(Strike::Deferred);
        }
        let message = format!(
            "this binary cannot execute the run: {reason}; parked after {strike} attempts. \
             Deploy a binary that registers workflow `{workflow}` (or repair the run's rows); \
             the run's log is kept"
        );
        let mut failure = WorkflowError::new(kinds::UNEXECUTABLE, message, false);
        failure.details = Some(json!({ "reason": reason, "strikes": strike }));
        let event = NewEvent::new(
            None,
            triage.attempt,
            now,
            EventPayload::RunFailed {
                error: failure.clone(),
            },
        );
        self.store()
            .append(Append {
                run_id: id.clone(),
                first_seq: triage.next_seq,
                events: vec![event],
                update: RunUpdate {
                    status: Some(RunStatus::Failed),
                    error: Some(serde_json::to_value(&failure)?),
                    wake_at: Some(None),
                    ..RunUpdate::default()
                },
                fence: Some(lease.fence),
                release: false,
            })
            .await?;
        tracing::warn!(
            run = %id,
            workflow,
            reason = %reason,
            strikes = strike,
            "this binary could not execute the run; parked: failed with kind `unexecutable`"
        );
        self.announce(id, workflow, RunStatus::Failed);
        Ok(Strike::Parked(Execution {
            run_id: id.clone(),
            outcome: RunOutcome::Failed(failure),
            replayed: 0,
            executed: 0,
        }))
    }
}
