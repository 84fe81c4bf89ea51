//! Executing a run: replay the body from the top against the log until it ends or
//! suspends (DESIGN "Replay and determinism", "Running").

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::TimeDelta;
use futures::FutureExt;
use serde_json::Value;

use super::hot::RunBody;
use super::{Engine, RunControl};
use crate::ctx::step::panic_error;
use crate::ctx::{Ctx, RunState, Wait};
use crate::error::{EngineError, WorkflowError, kinds};
use crate::event::{
    EventKind, EventPayload, HookReceipt, RunId, RunStatus, RunUpdate, SuspendReason,
};
use crate::history::History;
use crate::hook_token::{token_hash, token_run_id};
use crate::store::{Acquired, Lease};

/// How an execution of a run ended.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum RunOutcome {
    /// The run completed with this output.
    Completed(Value),
    /// The run failed (for good) with this error.
    Failed(WorkflowError),
    /// The run is suspended until one of these waits ends.
    Suspended(Vec<Wait>),
    /// The run was canceled (before it started, or at a step boundary).
    Canceled,
    /// The execution stopped at a step boundary because its worker is shutting down; the
    /// run is `queued` again and any worker continues it from its log.
    Interrupted,
    /// The run is `paused` (an operator asked, or its attempts ran out and its workflow
    /// parks such runs) until it is unpaused.
    Paused,
}

/// The result of [`Engine::execute`] or [`Engine::drive`].
#[derive(Clone, Debug, PartialEq)]
pub struct Execution {
    /// The run.
    pub run_id: RunId,
    /// How it ended.
    pub outcome: RunOutcome,
    /// Steps answered from the log.
    pub replayed: u64,
    /// Steps executed live and recorded.
    pub executed: u64,
}

impl Engine {
    /// Executes run `id` once: replays its body from the top against its log, runs the
    /// first unrecorded steps live, and records how it ends. Returns when the run ends,
    /// suspends (sleep, hook, scheduled retry) or was already finished.
    ///
    /// A run this binary cannot execute (its workflow is not registered, its rows do not
    /// decode) is put off with a `run_deferred` event and the error is returned; after the
    /// strikes [`crate::EngineBuilder::unexecutable_policy`] allows, it is parked instead:
    /// `Ok`, [`RunOutcome::Failed`] with kind `unexecutable`.
    ///
    /// # Errors
    /// Unknown run; [`EngineError::UnknownWorkflow`] or [`EngineError::Corrupt`] for a run
    /// this binary cannot execute (put off as above); store failures, and
    /// [`EngineError::Conflict`] when another process appended to the run meanwhile (the
    /// run is theirs; nothing is lost).
    pub async fn execute(&self, id: &RunId) -> Result<Execution, EngineError> {
        let Some(control) = self.register_control(id) else {
            return Err(EngineError::Leased {
                run: id.to_string(),
                owner: format!("{} (this process)", self.owner_id()),
                expires_at: "the end of its current execution".to_owned(),
            });
        };
        let _registered = Registered { engine: self, id };
        // A run waiting for admission into its queue is admitted by the queue's rule, as a
        // worker's claim admits it, or not executed (no cost when no queue is known).
        if !self.queues().is_empty() {
            match self.admit_here(&self.get_run(id).await?).await? {
                super::queues::Admission::Leased(lease) => {
                    return self
                        .execute_leased(lease, control, AfterError::Release)
                        .await;
                }
                super::queues::Admission::NotNeeded => {}
                super::queues::Admission::Waiting(wait) => {
                    return Err(EngineError::InvalidState {
                        run: id.to_string(),
                        status: "queued".to_owned(),
                        message: format!(
                            "{wait}; it runs once its queue admits it (a worker, or \
                             `Engine::drive`, which waits for that)"
                        ),
                    });
                }
            }
        }
        let now = self.now();
        let lease = match self
            .store()
            .acquire(id, self.owner_id(), now, now + self.lease_delta())
            .await?
        {
            Acquired::Lease(lease) => lease,
            Acquired::HeldBy { owner, expires_at } => {
                return Err(EngineError::Leased {
                    run: id.to_string(),
                    owner,
                    expires_at: expires_at.to_rfc3339(),
                });
            }
        };
        self.execute_leased(lease, control, AfterError::Release)
            .await
    }

    /// Executes a run whose lease the caller holds: renews the lease while the body runs
    /// (stopping at once, with [`EngineError::LeaseLost`], if it is lost) and releases it
    /// at the end: in the run's last append when the execution leaves the run ended or
    /// paused ([`RunState::append_last`]), else by [`crate::store::Store::release`]. Every
    /// append carries the lease's fencing token.
    ///
    /// A run this binary cannot execute is put off by a strike (see
    /// `engine::unexecutable`), so it is not due again at once. After any other error (a
    /// store failure) `after_error` says what becomes of the lease: a worker keeps it until
    /// it expires, so the run is retried one lease duration later by any worker, as after
    /// a crash, instead of being claimed straight back in a hot loop.
    pub(crate) async fn execute_leased(
        &self,
        lease: Lease,
        control: RunControl,
        after_error: AfterError,
    ) -> Result<Execution, EngineError> {
        if lease.cancel_requested {
            control.cancel.cancel();
        }
        if let Some(by) = &lease.pause_requested {
            control.request_pause(by);
        }
        let mut guard = LeaseGuard {
            engine: self.clone(),
            lease: Some(lease.clone()),
        };
        let result = tokio::select! {
            biased;
            result = self.execute_under(&lease, &control) => result,
            lost = super::lease::keep(self, lease.clone(), control.clone()) => Err(lost),
        };
        match result {
            Ok(execution) => {
                if control.releasing() {
                    // The execution's last append gave the lease back (`Append::release`).
                    guard.lease = None;
                } else {
                    guard.release().await;
                }
                Ok(execution)
            }
            Err(error) if super::unexecutable::is_unexecutable(&error) => {
                match self.strike(&lease, &error).await {
                    Ok(super::unexecutable::Strike::Deferred) => {
                        guard.release().await;
                        Err(error)
                    }
                    Ok(super::unexecutable::Strike::Parked(execution)) => {
                        guard.release().await;
                        Ok(execution)
                    }
                    Err(strike_error) => {
                        tracing::warn!(
                            run = %lease.run_id,
                            %error,
                            %strike_error,
                            "cannot execute the run, and could not record that"
                        );
                        guard.after_error(after_error).await;
                        Err(error)
                    }
                }
            }
            Err(error) => {
                guard.after_error(after_error).await;
                Err(error)
            }
        }
    }

    async fn execute_under(
        &self,
        lease: &Lease,
        control: &RunControl,
    ) -> Result<Execution, EngineError> {
        let id = &lease.run_id;
        // Taken first, so that whatever happens below a stale entry does not outlive this
        // execution.
        let hot = self.hot().take(id);
        let record = self.get_run(id).await?;
        if record.status == RunStatus::Running {
            // Another execution was running it: its lease expired or was handed back.
            self.env().metrics.lease_takeover();
        }
        let finished = |outcome| Execution {
            run_id: id.clone(),
            outcome,
            replayed: 0,
            executed: 0,
        };
        match record.status {
            RunStatus::Completed => {
                return Ok(finished(RunOutcome::Completed(
                    record.output.unwrap_or(Value::Null),
                )));
            }
            RunStatus::Canceled => return Ok(finished(RunOutcome::Canceled)),
            RunStatus::Failed => {
                let error = record
                    .error
                    .and_then(|e| serde_json::from_value(e).ok())
                    .unwrap_or_else(|| WorkflowError::permanent(format!("run {}", record.status)));
                return Ok(finished(RunOutcome::Failed(error)));
            }
            _ => {}
        }
        if control.cancel.is_cancelled() {
            self.record_cancel(id, &record.workflow, Some(lease.fence))
                .await?;
            return Ok(finished(RunOutcome::Canceled));
        }
        if record.status == RunStatus::Paused {
            return Ok(finished(RunOutcome::Paused));
        }
        if control.pause.is_cancelled() {
            self.record_pause(id, &control.paused_by(), Some(lease.fence))
                .await?;
            return Ok(finished(RunOutcome::Paused));
        }
        let entry = self.workflow(&record.workflow)?.clone();
        let attempt = record.attempt.max(1);
        let hot = match hot {
            // Only if nothing was appended since the body suspended.
            Some(hot)
                if record.status == RunStatus::Sleeping
                    && hot.next_seq == record.next_seq
                    && hot.state.attempt == attempt =>
            {
                Some(hot)
            }
            _ => None,
        };
        let continues_hot = hot.is_some();
        let (state, mut body) = match hot {
            Some(hot) => {
                hot.state.continue_under(Some(lease.fence), control.clone());
                (hot.state, hot.body)
            }
            None => {
                let events = self.store().events(id).await?;
                let next_seq = events.len() as u64;
                // Counted only up to the history warning threshold (0: not at all).
                let log_bytes = crate::payload::log_bytes(
                    events.iter().map(|e| &e.event.payload),
                    self.payload_limits().history_warning_bytes,
                );
                let history =
                    History::from_events(events).map_err(|message| EngineError::Corrupt {
                        run: id.to_string(),
                        message,
                    })?;
                let state = Arc::new(RunState::new(
                    self.env().clone(),
                    self.inner.fingerprints.of(self.registry(), &entry),
                    id.clone(),
                    record.workflow.clone(),
                    attempt,
                    record.trigger,
                    record.created_at,
                    history,
                    next_seq,
                    Some(lease.fence),
                    control.clone(),
                ));
                state.set_log_bytes(log_bytes);
                // Live attempts of a run in a queue with a step rate limit take permits.
                if let Some(placed) = &record.queue
                    && let Some(queue) =
                        crate::queue::QueueSettings::of(self.env()).get(&placed.name)
                    && queue.step_rate_limit.is_some()
                {
                    state.limit_steps_by(queue, placed.key.as_deref());
                }
                let ctx = Ctx {
                    run: state.clone(),
                    namespace: Arc::from(""),
                };
                let body = crate::ctx::recording::in_body(
                    state.clone(),
                    (entry.body)(ctx, record.input.clone()),
                );
                // Boxed so the body is `Unpin`: it moves into the hot-run cache when it
                // suspends, and the task-local scope around it is not.
                let body: futures::future::BoxFuture<'static, _> = Box::pin(body);
                let body: RunBody = AssertUnwindSafe(body).catch_unwind();
                (state, body)
            }
        };
        // One span per execution (replay-quiet: steps answered from the log get none; a
        // replay check, which runs nothing, gets none at all).
        let run_span = if state.replay_only() {
            tracing::Span::none()
        } else {
            crate::telemetry::run_span(
                id,
                &record.workflow,
                attempt,
                record.trigger,
                state.history.traceparent().as_deref(),
            )
        };
        // An execution that ends in an engine error (a store failure, a lost lease) says so.
        let mut span_end = RunSpanEnd {
            span: &run_span,
            state: &state,
            armed: true,
        };
        let started = state.event(
            None,
            attempt,
            EventPayload::RunStarted {
                fingerprint: Some(state.fingerprint.to_string()),
            },
        );
        state
            .append(
                vec![started],
                RunUpdate {
                    status: Some(RunStatus::Running),
                    attempt: Some(attempt),
                    wake_at: Some(None),
                    ..RunUpdate::default()
                },
            )
            .await?;
        // Checked from here on: the run's start is always written.
        state.set_history_cap(self.history_cap(&entry));
        if continues_hot {
            state.wake_suspended();
        }
        // The run's execution timeout (`#[workflow(timeout = "…")]`): past the deadline the
        // body stops at its next step boundary (as when canceled) and the run fails.
        let deadline = run_deadline(&entry, record.created_at);
        let mut timed_out = deadline.is_some_and(|deadline| self.now() >= deadline);
        if timed_out {
            control.cancel.cancel();
        }
        let driven =
            tracing::Instrument::instrument(drive_body(&state, &mut body), run_span.clone());
        let result = match deadline {
            Some(deadline) if !timed_out => {
                let mut driven = std::pin::pin!(driven);
                let delay = (deadline - self.now()).to_std().unwrap_or(Duration::ZERO);
                tokio::select! {
                    biased;
                    result = &mut driven => result,
                    () = self.clock().sleep(delay) => {
                        timed_out = true;
                        control.cancel.cancel();
                        driven.await
                    }
                }
            }
            _ => driven.await,
        };
        let result = match result {
            BodyEnd::Canceled if timed_out => {
                let timeout = entry.options.timeout.unwrap_or_default();
                tracing::warn!(
                    run = %id,
                    workflow = %record.workflow,
                    timeout = %humantime::format_duration(timeout),
                    "the run reached its execution timeout (`#[workflow(timeout = ..)]`) and fails"
                );
                BodyEnd::Returned(Ok(Err(WorkflowError::new(
                    kinds::TIMEOUT,
                    format!(
                        "the run did not finish within its execution timeout of {} (counted from its creation at {})",
                        humantime::format_duration(timeout),
                        record.created_at.to_rfc3339()
                    ),
                    false,
                ))))
            }
            other => other,
        };

        let outcome = match result {
            BodyEnd::Returned(result) => {
                let result = match result {
                    Ok(Ok(output)) => Ok(output),
                    Ok(Err(error)) => Err(error),
                    // A panicking body is retried like a retryable error (up to the
                    // workflow's `max_attempts`, replaying from the log): a panic is
                    // most often a bug fixed by a deploy, and the retry runs the new code.
                    Err(panic) => {
                        let mut error = WorkflowError::from(panic_error(&record.workflow, panic));
                        error.retryable = true;
                        Err(error)
                    }
                };
                self.finish(&state, &entry, result).await?
            }
            BodyEnd::Suspended(waits) => {
                let outcome = self.suspend(&state, waits, deadline).await?;
                self.keep_hot(&state, body, &outcome).await;
                outcome
            }
            BodyEnd::Canceled => {
                let error = WorkflowError::new(kinds::CANCELED, "the run was canceled", false);
                let update = RunUpdate {
                    status: Some(RunStatus::Canceled),
                    error: Some(serde_json::to_value(&error)?),
                    wake_at: Some(None),
                    ..RunUpdate::default()
                };
                let error = Some(error);
                let event = state.event(None, attempt, EventPayload::RunCanceled { error });
                state.append_last(vec![event], update).await?;
                RunOutcome::Canceled
            }
            BodyEnd::Paused => {
                let event = state.event(
                    None,
                    attempt,
                    EventPayload::RunPaused {
                        by: control.paused_by(),
                        reason: crate::event::PauseReason::Operator,
                        step: None,
                        error: None,
                    },
                );
                let update = RunUpdate {
                    status: Some(RunStatus::Paused),
                    wake_at: Some(None),
                    ..RunUpdate::default()
                };
                state.append_last(vec![event], update).await?;
                tracing::info!(run = %id, by = %control.paused_by(), "run paused");
                RunOutcome::Paused
            }
            BodyEnd::Drained => {
                let event = state.event(
                    None,
                    attempt,
                    EventPayload::RunSuspended {
                        reason: SuspendReason::Shutdown,
                        waits: None,
                        wake_at: None,
                        error: None,
                    },
                );
                let update = RunUpdate {
                    status: Some(RunStatus::Queued),
                    wake_at: Some(None),
                    ..RunUpdate::default()
                };
                state.append(vec![event], update).await?;
                RunOutcome::Interrupted
            }
        };
        crate::ctx::event_wait::forget_event_waits(&state, &outcome).await;
        if matches!(
            outcome,
            RunOutcome::Completed(_) | RunOutcome::Failed(_) | RunOutcome::Canceled
        ) {
            self.after_run_end(id, Some(&state)).await;
        }
        let execution = Execution {
            run_id: id.clone(),
            outcome,
            replayed: state.replayed.load(Ordering::Relaxed),
            executed: state.executed.load(Ordering::Relaxed),
        };
        span_end.armed = false;
        end_run_span(&run_span, &execution);
        Ok(execution)
    }

    /// Executes run `id` until it ends, waiting in this process through sleeps and
    /// run-level retries. Returns early, `Suspended`, only when the run waits on a hook.
    ///
    /// # Errors
    /// As [`Engine::execute`].
    pub async fn drive(&self, id: &RunId) -> Result<Execution, EngineError> {
        let mut replayed = 0;
        let mut executed = 0;
        // A sleeping run, or a scheduled retry, is not due before its wake-up time. A run
        // put off because it could not be executed is tried at once: the caller asks for it
        // now (after deploying the workflow, say).
        let record = self.get_run(id).await?;
        if matches!(record.status, RunStatus::Sleeping | RunStatus::Queued)
            && let Some(wake_at) = record.wake_at
            && let Ok(delay) = (wake_at - self.now()).to_std()
            && !self.is_deferred(id).await?
        {
            self.clock().sleep(delay).await;
        }
        self.wait_for_admission(&record).await?;
        let mut told = false;
        loop {
            let execution = match self.execute(id).await {
                // Its queue did not admit it (a run ahead of it comes first): wait again,
                // saying why once.
                Err(EngineError::InvalidState {
                    status, message, ..
                }) if status == "queued" && !self.queues().is_empty() => {
                    if !told {
                        tracing::info!(run = %id, %message, "waiting for admission into the queue");
                        told = true;
                    }
                    self.clock().sleep(Duration::from_millis(100)).await;
                    self.wait_for_admission(&record).await?;
                    continue;
                }
                other => other?,
            };
            replayed += execution.replayed;
            executed += execution.executed;
            // Sleeps and retries are waited for here; a hook (even one with a timeout) is
            // not: the run is left `waiting` for a delivery, or for a worker at its deadline.
            let wake = match &execution.outcome {
                RunOutcome::Suspended(waits) if waits.iter().all(|w| !w.is_external()) => {
                    waits.iter().filter_map(Wait::until).min()
                }
                _ => None,
            };
            let Some(wake) = wake else {
                return Ok(Execution {
                    replayed,
                    executed,
                    ..execution
                });
            };
            let deadline = self
                .workflow(&record.workflow)
                .ok()
                .and_then(|entry| run_deadline(entry, record.created_at));
            let wake = deadline.map_or(wake, |deadline| wake.min(deadline));
            let delay = (wake - self.now()).to_std().unwrap_or(Duration::ZERO);
            self.clock().sleep(delay).await;
        }
    }

    /// Delivers `payload` to the hook whose token is `token` and returns the run it
    /// belongs to; the run becomes `queued` and a worker (or [`Engine::drive`]) continues
    /// it. The token names its run, so delivery reads one run's log, whatever the size of
    /// the store. A payload is applied at most once: the delivery is an append checked
    /// against the log's sequence number, so of two concurrent deliveries one wins.
    ///
    /// # Errors
    /// [`EngineError::UnknownHook`] when no hook has this token;
    /// [`EngineError::InvalidState`] when the hook already received a payload, timed out,
    /// or the run is neither `waiting` nor `paused` (a paused run keeps the payload in its
    /// log and stays paused; it reads it once unpaused); [`EngineError::Schema`] naming
    /// each JSON pointer when the payload does not match the hook's type (the hook stays
    /// open); [`EngineError::PayloadTooLarge`] when it is over
    /// [`EngineBuilder::max_payload_bytes`](crate::EngineBuilder::max_payload_bytes)
    /// (the hook stays open, nothing is written).
    pub async fn resume_hook(&self, token: &str, payload: Value) -> Result<RunId, EngineError> {
        let delivered = self.deliver_hook(token, payload).await;
        self.env().metrics.hook_delivery(delivered.is_ok());
        delivered
    }

    async fn deliver_hook(&self, token: &str, payload: Value) -> Result<RunId, EngineError> {
        let run_id = RunId(token_run_id(token).ok_or(EngineError::UnknownHook)?);
        let Some(run) = self.store().run(&run_id).await? else {
            return Err(EngineError::UnknownHook);
        };
        let events = self.store().events(&run_id).await?;
        let hash = token_hash(token);
        let created = events
            .iter()
            .find(|e| e.event.token_hash() == Some(hash.as_str()))
            .ok_or(EngineError::UnknownHook)?;
        let id = created.event.correlation_id.clone().unwrap_or_default();
        let invalid = |message: String| EngineError::InvalidState {
            run: run_id.to_string(),
            status: run.status.to_string(),
            message,
        };
        let received = events.iter().find(|e| {
            e.event.kind == EventKind::HookReceived
                && e.event.correlation_id.as_deref() == Some(id.as_str())
        });
        if let Some(received) = received {
            return Err(invalid(if received.event.timed_out() {
                format!("hook `{id}` timed out; it takes no payload any more")
            } else {
                format!("hook `{id}` already received its payload; it takes one only")
            }));
        }
        if let Some(timeout_at) = created.event.timeout_at()
            && self.now() >= timeout_at
        {
            return Err(invalid(format!(
                "hook `{id}` timed out at {}; it takes no payload any more",
                timeout_at.to_rfc3339()
            )));
        }
        // A paused run takes the payload into its log and stays paused; it reads it once
        // it is unpaused.
        let paused = run.status == RunStatus::Paused;
        if run.status != RunStatus::Waiting && !paused {
            return Err(invalid(format!(
                "hook `{id}` cannot take a payload while the run is {}{}",
                run.status,
                if run.status.is_terminal() {
                    ""
                } else {
                    "; retry once it waits on the hook"
                }
            )));
        }
        if let Some(schema) = created.event.hook_schema() {
            crate::schema::Validator::compile(schema.clone(), format!("payload of hook `{id}`"))?
                .validate(&payload)?;
        }
        self.payload_limits()
            .check(|| format!("the payload of hook `{id}`"), &payload)?;
        let event = crate::event::NewEvent::new(
            Some(id.clone()),
            1,
            self.now(),
            EventPayload::HookReceived(HookReceipt::Delivered(payload)),
        );
        let append = crate::store::Append {
            run_id: run_id.clone(),
            first_seq: events.len() as u64,
            events: vec![event],
            update: if paused {
                RunUpdate::default()
            } else {
                RunUpdate {
                    status: Some(RunStatus::Queued),
                    wake_at: Some(None),
                    ..RunUpdate::default()
                }
            },
            fence: None,
            release: false,
        };
        match self.store().append(append).await {
            Ok(()) => {
                if !paused {
                    self.announce(&run_id, &run.workflow, RunStatus::Queued);
                }
                Ok(run_id)
            }
            // Another delivery (or change) won the race for this position in the log.
            Err(EngineError::Conflict { .. }) => Err(invalid(format!(
                "hook `{id}` was changed by a concurrent delivery; it takes one payload only"
            ))),
            Err(error) => Err(error),
        }
    }

    /// Records the end of an attempt: completion, a scheduled retry, or failure.
    async fn finish(
        &self,
        state: &RunState,
        entry: &crate::registry::WorkflowEntry,
        result: Result<Value, WorkflowError>,
    ) -> Result<RunOutcome, EngineError> {
        // A poisoned run fails whatever the body returned: non-determinism must never be
        // swallowed by user code.
        let result = match state.poisoned() {
            Some(poison) => Err(poison),
            None => result,
        };
        // `ctx.continue_as_new(..)` ends the run whatever the body returned.
        let result = match result {
            Err(poison) if state.poisoned().is_some() => Err(poison),
            result => match self.finish_continued(state, entry).await? {
                Some(Ok(outcome)) => return Ok(outcome),
                Some(Err(error)) => Err(error),
                None => result,
            },
        };
        let result = result.and_then(|output| match entry.output.validate(&output) {
            Ok(()) => Ok(output),
            Err(violation) => Err(WorkflowError::from(crate::ActionError::from(violation))),
        });
        // An output over the payload limit fails the run (not retried): nothing oversized
        // is written.
        let result = result.and_then(|output| {
            match self.payload_limits().check(
                || format!("the output of workflow `{}`", state.workflow),
                &output,
            ) {
                Ok(()) => Ok(output),
                Err(error) => Err(WorkflowError::from(crate::payload::too_large_error(error))),
            }
        });
        match result {
            Ok(output) => record_completed(state, output).await,
            Err(error) if error.kind == kinds::STORE => {
                // The log could not be written: leave the run as it is for a later resume.
                Err(EngineError::Store(error.message))
            }
            Err(error)
                if error.retryable
                    && self
                        .run_retry_policy(entry)
                        .allows_retry_after(state.attempt) =>
            {
                let delay = self.run_retry_policy(entry).delay(state.attempt);
                let until = self.now() + TimeDelta::from_std(delay).unwrap_or(TimeDelta::MAX);
                let until = run_deadline(entry, state.triggered_at).map_or(until, |d| until.min(d));
                let event = state.event(
                    None,
                    state.attempt,
                    EventPayload::RunSuspended {
                        reason: SuspendReason::Retry,
                        waits: None,
                        wake_at: Some(until),
                        error: Some(error),
                    },
                );
                let update = RunUpdate {
                    status: Some(RunStatus::Queued),
                    attempt: Some(state.attempt + 1),
                    wake_at: Some(Some(until)),
                    ..RunUpdate::default()
                };
                state.append(vec![event], update).await?;
                Ok(RunOutcome::Suspended(vec![Wait::Retry { until }]))
            }
            Err(error)
                if entry.options.on_max_attempts == crate::step::OnMaxAttempts::Pause
                    && self.park_if_retries_ran_out(state, &error).await? =>
            {
                Ok(RunOutcome::Paused)
            }
            Err(error) => {
                self.start_failure_handler(state, entry, &error).await?;
                let update = RunUpdate {
                    status: Some(RunStatus::Failed),
                    error: Some(serde_json::to_value(&error)?),
                    ..RunUpdate::default()
                };
                let event = state.event(
                    None,
                    state.attempt,
                    EventPayload::RunFailed {
                        error: error.clone(),
                    },
                );
                state.append_last(vec![event], update).await?;
                Ok(RunOutcome::Failed(error))
            }
        }
    }

    /// The retry policy of run-level retries of `entry`'s runs: its `max_attempts`, delays
    /// from [`crate::EngineBuilder::run_retry_backoff`], doubling, capped at 10 minutes,
    /// no jitter.
    fn run_retry_policy(&self, entry: &crate::registry::WorkflowEntry) -> crate::RetryPolicy {
        crate::RetryPolicy::exponential(self.run_retry_backoff())
            .max_attempts(entry.options.max_attempts)
    }

    /// Records a suspension: `sleeping` until the earliest wake-up, or `waiting` on a hook.
    async fn suspend(
        &self,
        state: &RunState,
        waits: Vec<Wait>,
        deadline: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<RunOutcome, EngineError> {
        let on_hook = waits.iter().any(Wait::is_external);
        // A run with an execution timeout is woken at its deadline, whatever it waits for.
        let wake_at = waits.iter().filter_map(Wait::until).chain(deadline).min();
        let event = state.event(
            None,
            state.attempt,
            EventPayload::RunSuspended {
                reason: if on_hook {
                    SuspendReason::Hook
                } else {
                    SuspendReason::Sleep
                },
                waits: Some(waits.clone()),
                wake_at: None,
                error: None,
            },
        );
        let update = RunUpdate {
            status: Some(if on_hook {
                RunStatus::Waiting
            } else {
                RunStatus::Sleeping
            }),
            wake_at: Some(wake_at),
            // A message posted while this execution ran wakes the run at once.
            inbox_seen: on_hook.then(|| state.inbox_seen()),
            ..RunUpdate::default()
        };
        state.append(vec![event], update).await?;
        Ok(RunOutcome::Suspended(waits))
    }

    /// Offers a run whose sleep is recorded to the hot-run cache: only sleeps (a hook's
    /// payload must come from the log), and only short ones.
    async fn keep_hot(&self, state: &Arc<RunState>, body: RunBody, outcome: &RunOutcome) {
        let RunOutcome::Suspended(waits) = outcome else {
            return;
        };
        if waits.iter().any(|w| !matches!(w, Wait::Sleep { .. })) {
            return;
        }
        let Some(wake_at) = waits.iter().filter_map(Wait::until).min() else {
            return;
        };
        let now = self.now();
        if !self.hot().accepts(now, wake_at) {
            return;
        }
        let next_seq = state.next_seq().await;
        self.hot().insert(
            state.run_id.clone(),
            state.clone(),
            body,
            next_seq,
            now,
            wake_at,
        );
    }
}

/// When a run of `entry` created at `created_at` reaches its execution timeout, if it has
/// one (`#[workflow(timeout = "…")]`).
fn run_deadline(
    entry: &crate::registry::WorkflowEntry,
    created_at: chrono::DateTime<chrono::Utc>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let timeout = TimeDelta::from_std(entry.options.timeout?).ok()?;
    // A deadline past the calendar's end is no deadline.
    created_at.checked_add_signed(timeout)
}

/// Records that the run of `state` completed with `output` (`run_completed`, status
/// `completed`, the output on the record), giving the execution's lease back in the same
/// write ([`RunState::append_last`]).
///
/// # Errors
/// The append's store error.
pub(crate) async fn record_completed(
    state: &RunState,
    output: Value,
) -> Result<RunOutcome, EngineError> {
    let event = state.event(
        None,
        state.attempt,
        EventPayload::RunCompleted {
            output: output.clone(),
        },
    );
    let update = RunUpdate {
        status: Some(RunStatus::Completed),
        output: Some(output.clone()),
        ..RunUpdate::default()
    };
    state.append_last(vec![event], update).await?;
    Ok(RunOutcome::Completed(output))
}

enum BodyEnd<T> {
    Returned(T),
    Suspended(Vec<Wait>),
    Canceled,
    Paused,
    Drained,
}

/// Polls the body until it returns, or until it is blocked on waits and no live step is
/// still running (those finish and record first, so no effect is lost).
async fn drive_body(state: &RunState, body: &mut RunBody) -> BodyEnd<<RunBody as Future>::Output> {
    loop {
        tokio::select! {
            biased;
            result = &mut *body => return BodyEnd::Returned(result),
            () = state.suspended.notified() => {}
        }
        loop {
            if state.inflight() == 0 {
                // Let any step that just became ready record before dropping the body.
                if let Some(result) = (&mut *body).now_or_never() {
                    return BodyEnd::Returned(result);
                }
                if state.inflight() == 0 {
                    let control = state.control();
                    if control.cancel.is_cancelled() {
                        return BodyEnd::Canceled;
                    }
                    if control.pause.is_cancelled() {
                        return BodyEnd::Paused;
                    }
                    if control.drain.is_cancelled() {
                        return BodyEnd::Drained;
                    }
                    let waits = state.waits();
                    if !waits.is_empty() {
                        return BodyEnd::Suspended(waits);
                    }
                    // A wake-up left over from before a hot run continued: keep polling.
                    break;
                }
            }
            tokio::select! {
                biased;
                result = &mut *body => return BodyEnd::Returned(result),
                () = state.inflight_changed.notified() => {}
            }
        }
    }
}

/// Marks the `run` span of an execution that ended with an engine error (or was dropped),
/// with the steps it got through; disarmed when the execution ends normally.
struct RunSpanEnd<'a> {
    span: &'a tracing::Span,
    state: &'a RunState,
    armed: bool,
}

impl Drop for RunSpanEnd<'_> {
    fn drop(&mut self) {
        if self.armed {
            crate::telemetry::end_run_span(
                self.span,
                "aborted",
                self.state
                    .replayed
                    .load(std::sync::atomic::Ordering::Relaxed),
                self.state
                    .executed
                    .load(std::sync::atomic::Ordering::Relaxed),
            );
        }
    }
}

/// How an execution ended, on its `run` span; a failure also as a `WARN` event there.
fn end_run_span(span: &tracing::Span, execution: &Execution) {
    if span.is_disabled() {
        return;
    }
    let status = match &execution.outcome {
        RunOutcome::Completed(_) => "completed",
        RunOutcome::Failed(error) => {
            tracing::warn!(
                target: "reprise::trace",
                parent: span,
                step = error.step.as_deref(),
                exception.message = %error.message,
                "exception.type" = %error.kind,
                "run failed"
            );
            "failed"
        }
        RunOutcome::Suspended(_) => "suspended",
        RunOutcome::Canceled => "canceled",
        RunOutcome::Interrupted => "interrupted",
        RunOutcome::Paused => "paused",
    };
    crate::telemetry::end_run_span(span, status, execution.replayed, execution.executed);
}

/// Unregisters an execution from its engine's controls when it ends, however it ends.
struct Registered<'a> {
    engine: &'a Engine,
    id: &'a RunId,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.engine.unregister_control(self.id);
    }
}

/// What becomes of the lease after an execution failed with an engine error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AfterError {
    /// Released: the run may be claimed at once (foreground executions, which report the
    /// error and do not loop).
    Release,
    /// Kept until it expires: no worker claims the run before then (workers, which would
    /// otherwise claim it straight back).
    Keep,
}

/// Releases a lease when the execution ends; if the execution future is dropped instead
/// (a worker aborting at its shutdown deadline), releases it from a spawned task.
struct LeaseGuard {
    engine: Engine,
    lease: Option<Lease>,
}

impl LeaseGuard {
    /// Releases the lease, or leaves it to expire (the run is not claimed again before
    /// then).
    async fn after_error(&mut self, after_error: AfterError) {
        match after_error {
            AfterError::Release => self.release().await,
            AfterError::Keep => self.lease = None,
        }
    }

    async fn release(&mut self) {
        if let Some(lease) = self.lease.take() {
            // A failed release only delays the next claim until the lease expires.
            if let Err(error) = self.engine.store().release(&lease).await {
                tracing::warn!(run = %lease.run_id, %error, "could not release lease");
            }
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let store = self.engine.store().clone();
            handle.spawn(async move {
                let _ = store.release(&lease).await;
            });
        }
    }
}
