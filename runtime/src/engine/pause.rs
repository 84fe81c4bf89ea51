//! Pausing and unpausing runs and workflows (DESIGN "Operations"; issue 15 item 3):
//! `runs pause|unpause`, `workflows pause|unpause`, `POST /runs/{id}/pause|unpause`,
//! `POST /workflows/{slug}/pause|unpause`, and [`Engine::pause_run`] and friends.
//!
//! A paused run has status `paused`: no worker claims it. A run that is queued, sleeping
//! or waiting is paused at once (`run_paused` appended under its lease); a running one at
//! its next step boundary, like a cancellation, except that the steps in flight finish
//! and record first and nothing is canceled: its worker sees the request at once in this
//! process, and within a third of the lease duration in another one (on its next lease
//! renewal), or when it next claims the run. While paused, the run's hooks still take
//! payloads (kept in its log) and its timers still run out, but nothing continues until
//! [`Engine::unpause_run`] queues it again; its next execution replays the log, so a
//! sleep that ended meanwhile ends and a delivered hook payload is read.
//!
//! A run parked because its attempts ran out (`#[workflow(on_max_attempts = "pause")]`)
//! is paused the same way; unpausing it also runs again the step whose failure parked it,
//! with a new attempt, exactly as [`Engine::retry_run`] does for a failed run.
//!
//! A paused *workflow* has no runs claimed at all: runs executing when it was paused go on
//! to their next suspension, and nothing of it is claimed again until it is unpaused.

use serde::Serialize;

use super::Engine;
use crate::error::EngineError;
use crate::event::{EventPayload, NewEvent, PauseReason, RunId, RunStatus, RunUpdate};
use crate::store::{Acquired, Append, WorkflowPause};

/// What [`Engine::pause_run`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PauseOutcome {
    /// The run was queued, sleeping or waiting: it is `paused` now.
    Paused,
    /// The run is executing: it is paused at its next step boundary.
    Requested,
    /// The run was paused already; nothing changed.
    AlreadyPaused,
}

/// What [`Engine::unpause_run`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnpausedRun {
    /// The run, `queued` again (or still executing, when only a pending request was
    /// withdrawn).
    pub run_id: RunId,
    /// The run's status now.
    pub status: RunStatus,
    /// The run's attempt now (a parked run starts a new one).
    pub attempt: u32,
    /// For a run parked when its attempts ran out: the step that runs again.
    pub step: Option<String>,
}

impl Engine {
    /// Pauses run `id`, recording who asked (`by`: `cli:<user>`, `api`, your own text) in
    /// `run_paused`. A queued, sleeping or waiting run is `paused` at once; a running one
    /// at its next step boundary (see the module docs).
    ///
    /// # Errors
    /// [`EngineError::UnknownRun`]; [`EngineError::InvalidState`] when the run has ended;
    /// store errors.
    pub async fn pause_run(&self, id: &RunId, by: &str) -> Result<PauseOutcome, EngineError> {
        let record = self.get_run(id).await?;
        if record.status == RunStatus::Paused {
            return Ok(PauseOutcome::AlreadyPaused);
        }
        if record.status.is_terminal() {
            return Err(EngineError::InvalidState {
                run: id.to_string(),
                status: record.status.to_string(),
                message: "the run has already ended; only unfinished runs can be paused".into(),
            });
        }
        self.store().request_pause(id, Some(by)).await?;
        if let Some(control) = self.control(id) {
            control.request_pause(by);
            return Ok(PauseOutcome::Requested);
        }
        if record.status == RunStatus::Running {
            return Ok(PauseOutcome::Requested);
        }
        let now = self.now();
        let lease = match self
            .store()
            .acquire(id, self.owner_id(), now, now + self.lease_delta())
            .await?
        {
            Acquired::Lease(lease) => lease,
            // A worker just claimed it: it sees the request and pauses it itself.
            Acquired::HeldBy { .. } => return Ok(PauseOutcome::Requested),
        };
        let result = self.record_pause(id, by, Some(lease.fence)).await;
        let _ = self.store().release(&lease).await;
        match result {
            Ok(()) => {
                // A body kept in the hot-run cache must not continue while paused.
                drop(self.hot().take(id));
                Ok(PauseOutcome::Paused)
            }
            // The log moved meanwhile (a hook delivery): the request stands, and the
            // worker that executes the run next pauses it.
            Err(EngineError::Conflict { .. }) => {
                self.wake_workers();
                Ok(PauseOutcome::Requested)
            }
            Err(error) => Err(error),
        }
    }

    /// Appends `run_paused` (asked by `by`) at the end of the log and marks the run
    /// `paused`; its wake-up time is cleared (an unpaused run's next execution finds its
    /// sleeps and hook deadlines in its log).
    pub(crate) async fn record_pause(
        &self,
        id: &RunId,
        by: &str,
        fence: Option<u64>,
    ) -> Result<(), EngineError> {
        let record = self.get_run(id).await?;
        let append = Append {
            run_id: id.clone(),
            first_seq: record.next_seq,
            events: vec![NewEvent::new(
                None,
                record.attempt,
                self.now(),
                EventPayload::RunPaused {
                    by: by.to_owned(),
                    reason: PauseReason::Operator,
                    step: None,
                    error: None,
                },
            )],
            update: RunUpdate {
                status: Some(RunStatus::Paused),
                wake_at: Some(None),
                ..RunUpdate::default()
            },
            fence,
            release: false,
        };
        self.store().append(append).await?;
        tracing::info!(run = %id, by, "run paused");
        self.announce(id, &record.workflow, RunStatus::Paused);
        Ok(())
    }

    /// Unpauses run `id`: records `run_unpaused` (with `by`) and queues it, so a worker (or
    /// [`Engine::drive`]) continues it from its log. A run parked when its attempts ran out
    /// starts a new attempt and the step whose failure parked it runs again. A run that
    /// is still executing with a pause request pending has the request withdrawn.
    ///
    /// # Errors
    /// [`EngineError::UnknownRun`]; [`EngineError::InvalidState`] when the run is neither
    /// paused nor has a pending pause request; [`EngineError::Conflict`] when another
    /// change won the race; store errors.
    pub async fn unpause_run(&self, id: &RunId, by: &str) -> Result<UnpausedRun, EngineError> {
        let record = self.get_run(id).await?;
        if record.status != RunStatus::Paused {
            if !record.status.is_terminal() {
                // A request the run has not reached yet is withdrawn.
                self.store().request_pause(id, None).await?;
                if let Some(control) = self.control(id)
                    && control.pause.is_cancelled()
                {
                    return Err(EngineError::InvalidState {
                        run: id.to_string(),
                        status: record.status.to_string(),
                        message: "the run is stopping at its pause right now; unpause it once \
                                  it is paused"
                            .into(),
                    });
                }
                if record.status == RunStatus::Running {
                    return Ok(UnpausedRun {
                        run_id: id.clone(),
                        status: record.status,
                        attempt: record.attempt,
                        step: None,
                    });
                }
            }
            return Err(EngineError::InvalidState {
                run: id.to_string(),
                status: record.status.to_string(),
                message: "only paused runs can be unpaused".into(),
            });
        }
        let parked = self.parked_step(id).await?;
        let (attempt, step) = match &parked {
            Some(step) => (record.attempt + 1, step.clone()),
            None => (record.attempt, None),
        };
        let event = NewEvent::new(
            None,
            attempt,
            self.now(),
            EventPayload::RunUnpaused {
                by: by.to_owned(),
                step: step.clone(),
            },
        );
        let mut update = RunUpdate {
            status: Some(RunStatus::Queued),
            wake_at: Some(None),
            ..RunUpdate::default()
        };
        if parked.is_some() {
            update.attempt = Some(attempt);
            // JSON null: the parked failure no longer stands.
            update.error = Some(serde_json::Value::Null);
        }
        // The request is withdrawn first: a worker that claims the run once it is queued
        // must not find it and pause it again.
        self.store().request_pause(id, None).await?;
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
        tracing::info!(run = %id, by, step = ?step, attempt, "run unpaused");
        self.announce(id, &record.workflow, RunStatus::Queued);
        Ok(UnpausedRun {
            run_id: id.clone(),
            status: RunStatus::Queued,
            attempt,
            step,
        })
    }

    /// For a run whose last `run_paused` parked it when its attempts ran out: `Some(step)`
    /// (the step that runs again, `None` when the body itself returned the error); `None`
    /// for a run paused by an operator.
    async fn parked_step(&self, id: &RunId) -> Result<Option<Option<String>>, EngineError> {
        let events = self.store().events(id).await?;
        for event in events.iter().rev() {
            if event.event.kind == crate::event::EventKind::RunPaused {
                return Ok(
                    match EventPayload::decode(event.event.kind, &event.event.payload) {
                        Ok(EventPayload::RunPaused {
                            reason: PauseReason::MaxAttempts,
                            step,
                            ..
                        }) => Some(step),
                        _ => None,
                    },
                );
            }
        }
        Ok(None)
    }

    /// Pauses workflow `slug`: no run of it is claimed until [`Engine::unpause_workflow`]
    /// (runs executing now go on to their next suspension). Returns `false` when it was
    /// paused already (its first pause stands).
    ///
    /// # Errors
    /// [`EngineError::UnknownWorkflow`] when no workflow of that slug is registered here;
    /// store errors.
    pub async fn pause_workflow(&self, slug: &str, by: &str) -> Result<bool, EngineError> {
        self.workflow(slug)?;
        let pause = WorkflowPause {
            workflow: slug.to_owned(),
            by: by.to_owned(),
            at: self.now(),
        };
        let changed = self.store().set_workflow_pause(slug, Some(&pause)).await?;
        if changed {
            tracing::info!(
                workflow = slug,
                by,
                "workflow paused: its runs are not claimed"
            );
        }
        Ok(changed)
    }

    /// Unpauses workflow `slug`: its due runs are claimed again. Returns `false` when it
    /// was not paused. Works for slugs this binary does not register (a pause left by an
    /// older deploy).
    ///
    /// # Errors
    /// Store errors.
    pub async fn unpause_workflow(&self, slug: &str, by: &str) -> Result<bool, EngineError> {
        let changed = self.store().set_workflow_pause(slug, None).await?;
        if changed {
            tracing::info!(workflow = slug, by, "workflow unpaused");
            self.wake_workers();
        }
        Ok(changed)
    }

    /// The paused workflows, by slug.
    ///
    /// # Errors
    /// Store errors.
    pub async fn workflow_pauses(&self) -> Result<Vec<WorkflowPause>, EngineError> {
        self.store().workflow_pauses().await
    }
}
