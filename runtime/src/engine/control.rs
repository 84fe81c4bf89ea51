//! Controlling runs from outside their execution: cancellation, waiting for the end of a
//! run, listing a waiting run's open hooks, and the stream of status transitions that
//! `dev` prints and `?wait=` listens to.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Engine, RunControl, RunTransition};
use crate::error::EngineError;
use crate::event::{
    Event, EventKind, EventPayload, NewEvent, RunId, RunRecord, RunStatus, RunUpdate,
};
use crate::store::{Acquired, Append};

/// What [`Engine::cancel`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CancelOutcome {
    /// The run was queued, sleeping or waiting: it is `canceled` now.
    Canceled,
    /// The run is executing: it ends `canceled` at its next step boundary (at once in this
    /// process; in another process when its worker next renews the lease, within a third
    /// of the lease duration).
    Requested,
}

/// A hook a waiting run is blocked on, with what delivers its payload.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OpenHook {
    /// The hook's correlation id.
    pub id: String,
    /// The hook's token (`POST /hooks/{token}`, `hooks resume <token>`).
    pub token: String,
    /// `<public-url>/hooks/<token>`.
    pub resume_url: String,
    /// When the hook times out, if it has a timeout.
    pub timeout_at: Option<DateTime<Utc>>,
    /// The JSON Schema its payload must match, as the run recorded it (not serialized:
    /// `GET /workflows` and the UI show schemas on their own).
    #[serde(skip)]
    pub schema: Option<serde_json::Value>,
}

impl Engine {
    /// Cancels run `id`. A `queued`, `sleeping` or `waiting` run is `canceled` at once; a
    /// running one at its next step boundary, its running actions seeing their
    /// cancellation token. A canceled run keeps its log; it never runs again.
    ///
    /// # Errors
    /// [`EngineError::UnknownRun`]; [`EngineError::InvalidState`] when the run already
    /// ended (`completed`, `failed` or `canceled`); store errors.
    pub async fn cancel(&self, id: &RunId) -> Result<CancelOutcome, EngineError> {
        let record = self.get_run(id).await?;
        if record.status.is_terminal() {
            return Err(EngineError::InvalidState {
                run: id.to_string(),
                status: record.status.to_string(),
                message: "the run has already ended; only unfinished runs can be canceled".into(),
            });
        }
        self.store().request_cancel(id).await?;
        if let Some(control) = self.control(id) {
            control.cancel.cancel();
            return Ok(CancelOutcome::Requested);
        }
        if record.status == RunStatus::Running {
            return Ok(CancelOutcome::Requested);
        }
        // Suspended or queued: take the lease so that no worker starts it meanwhile, then
        // record the cancellation ourselves.
        let now = self.now();
        let lease = match self
            .store()
            .acquire(id, self.owner_id(), now, now + self.lease_delta())
            .await?
        {
            Acquired::Lease(lease) => lease,
            // A worker just claimed it: it sees the request and cancels it itself.
            Acquired::HeldBy { .. } => {
                self.wake_workers();
                return Ok(CancelOutcome::Requested);
            }
        };
        let result = self
            .record_cancel(id, &record.workflow, Some(lease.fence))
            .await;
        let _ = self.store().release(&lease).await;
        match result {
            Ok(()) => {
                // A body kept in the hot-run cache will never continue.
                drop(self.hot().take(id));
                Ok(CancelOutcome::Canceled)
            }
            Err(EngineError::Conflict { .. }) => {
                // The log moved meanwhile (a hook delivery): re-read and decide again.
                let record = self.get_run(id).await?;
                if record.status.is_terminal() {
                    return Err(EngineError::InvalidState {
                        run: id.to_string(),
                        status: record.status.to_string(),
                        message: "the run ended while it was being canceled".into(),
                    });
                }
                self.wake_workers();
                Ok(CancelOutcome::Requested)
            }
            Err(error) => Err(error),
        }
    }

    /// Appends `run_canceled` at the end of the log and marks the run `canceled`.
    pub(crate) async fn record_cancel(
        &self,
        id: &RunId,
        workflow: &str,
        fence: Option<u64>,
    ) -> Result<(), EngineError> {
        let record = self.get_run(id).await?;
        let error =
            crate::WorkflowError::new(crate::error::kinds::CANCELED, "the run was canceled", false);
        let update = RunUpdate {
            status: Some(RunStatus::Canceled),
            error: Some(serde_json::to_value(&error)?),
            wake_at: Some(None),
            ..RunUpdate::default()
        };
        let append = Append {
            run_id: id.clone(),
            first_seq: record.next_seq,
            events: vec![NewEvent::new(
                None,
                record.attempt,
                self.now(),
                EventPayload::RunCanceled { error: Some(error) },
            )],
            update,
            fence,
            release: false,
        };
        self.store().append(append).await?;
        self.announce(id, workflow, RunStatus::Canceled);
        self.after_run_end(id, None).await;
        Ok(())
    }

    /// Waits until run `id` has ended or `timeout` has passed, and returns its record then
    /// (check `status.is_terminal()`). Works whichever process executes the run: it
    /// listens for this engine's transitions and re-reads the store at least every 250 ms.
    ///
    /// # Errors
    /// [`EngineError::UnknownRun`], store errors.
    pub async fn wait_for_end(
        &self,
        id: &RunId,
        timeout: Duration,
    ) -> Result<RunRecord, EngineError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut transitions = self.subscribe();
        loop {
            let record = self.get_run(id).await?;
            if record.status.is_terminal() || tokio::time::Instant::now() >= deadline {
                return Ok(record);
            }
            let poll = tokio::time::Instant::now() + Duration::from_millis(250);
            let until = poll.min(deadline);
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(until) => break,
                    transition = transitions.recv() => match transition {
                        Ok(t) if t.run_id == *id && t.status.is_terminal() => break,
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            tokio::time::sleep_until(until).await;
                            break;
                        }
                    },
                }
            }
        }
    }

    /// The hooks run `id` waits on that have not received their payload, with their resume
    /// URLs (empty unless the run is `waiting`).
    ///
    /// # Errors
    /// [`EngineError::UnknownRun`], store errors.
    pub async fn open_hooks(&self, id: &RunId) -> Result<Vec<OpenHook>, EngineError> {
        let record = self.get_run(id).await?;
        if record.status != RunStatus::Waiting {
            return Ok(Vec::new());
        }
        let events = self.store().events(id).await?;
        Ok(self.open_hooks_in(&record, &events))
    }

    /// [`Engine::open_hooks`] of a run whose record and events the caller has read already
    /// (`events` as [`Engine::events`] or the store returns them): no store read.
    pub fn open_hooks_in(&self, record: &RunRecord, events: &[Event]) -> Vec<OpenHook> {
        if record.status != RunStatus::Waiting {
            return Vec::new();
        }
        let id = &record.id;
        let mut open: Vec<OpenHook> = Vec::new();
        for event in events {
            let Some(hook) = event.event.correlation_id.as_deref() else {
                continue;
            };
            match event.event.kind {
                EventKind::HookCreated => open.push(OpenHook {
                    id: hook.to_owned(),
                    token: self.hook_token(id, hook),
                    resume_url: self.hook_resume_url(id, hook),
                    timeout_at: event.event.timeout_at(),
                    schema: event.event.hook_schema().cloned(),
                }),
                EventKind::HookReceived => open.retain(|h| h.id != hook),
                _ => {}
            }
        }
        // The URL the run itself recorded (and sent on) wins over this process's public URL.
        for hook in &mut open {
            let recorded = format!("{}{}", hook.id, crate::ctx::hook::RESUME_URL_SUFFIX);
            if let Some(url) = events
                .iter()
                .rev()
                .find(|e| e.event.correlation_id.as_deref() == Some(recorded.as_str()))
                .and_then(|e| e.event.output())
                .and_then(serde_json::Value::as_str)
            {
                // Recorded with the token as a placeholder (tokens exist at rest only as
                // hashes): expanded as replay expands it.
                let mut url = url.to_owned();
                let secret = self.env().hook_secret();
                crate::hook_token::expand_placeholders_str(&mut url, secret, id.as_str());
                hook.resume_url = url;
            }
        }
        open
    }

    /// Status transitions of runs this engine starts, executes, resumes or cancels, as
    /// they happen (a slow receiver skips ahead: `RecvError::Lagged`).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<RunTransition> {
        self.env().subscribe()
    }

    /// Tells this process's workers that a run may have become due.
    pub fn wake_workers(&self) {
        self.env().wake.notify_waiters();
    }

    pub(crate) fn wake(&self) -> &tokio::sync::Notify {
        &self.env().wake
    }

    /// Publishes a transition and wakes workers when the run became runnable.
    pub(crate) fn announce(&self, id: &RunId, workflow: &str, status: RunStatus) {
        self.env().announce(id, workflow, status);
    }

    /// The switches of run `id` if this engine executes it now.
    pub(crate) fn control(&self, id: &RunId) -> Option<RunControl> {
        self.inner
            .controls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Registers an execution of `id`; `None` when this engine already executes it.
    pub(crate) fn register_control(&self, id: &RunId) -> Option<RunControl> {
        let mut controls = self
            .inner
            .controls
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if controls.contains_key(id) {
            return None;
        }
        let control = RunControl::default();
        controls.insert(id.clone(), control.clone());
        self.env().metrics.executing(1);
        Some(control)
    }

    pub(crate) fn unregister_control(&self, id: &RunId) {
        let removed = self
            .inner
            .controls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        if removed.is_some() {
            self.env().metrics.executing(-1);
        }
    }

    /// Stops every execution of this engine at its next step boundary and hands the runs
    /// back to the queue (worker shutdown).
    pub(crate) fn drain_all(&self) {
        for control in self
            .inner
            .controls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            control.drain.cancel();
        }
    }

    pub(crate) fn lease_delta(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::from_std(self.lease_duration()).unwrap_or(chrono::TimeDelta::MAX)
    }
}
