//! The recorder: the one place that decides, for every recorded thing of a run, whether
//! it is answered from the event log or runs live (DESIGN "Recorder", "Replay and
//! determinism").
//!
//! Every step kind is an adapter over one function pair:
//! - [`RunState::enter`] (or [`RunState::lookup`] for synchronous recorded values) looks a
//!   correlation id up with what the code expects — its callee, its input — and returns
//!   either the recorded outcome ([`Entry::Replayed`], re-validated against the expected
//!   output schema) or a [`Slot`] to run live ([`Entry::Live`]);
//! - [`Slot::finish_step`] / [`Slot::finish_wait`] record the live outcome, once.
//!
//! The checks happen here only, in this order: interrupt (cancel or drain) and poison,
//! then the id, the callee, the input digest, and the recorded output's schema. A
//! mismatch is a [`NonDeterminism`] that fails the run whatever the body does with the
//! error; its message says whether the code changed since the run was recorded (the
//! step-site fingerprints of [`History::fingerprints`]) and shows the differing values.
//!
//! Scopes — sub-workflows, agents, LLM steps with re-asks — are steps whose body records
//! steps of its own under an id prefix (`enrich-lead#0/score-lead#0`). A scope is never
//! counted as a *live* step (only its leaves are), so a sleep or a hook inside it suspends
//! the run exactly as at the top level, at any depth; and re-entering an unfinished scope
//! after a resume writes no second `step_started`. A replay-only check re-enters even
//! finished scopes, so their inner steps are compared too.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::Value;

use super::record::StepUsage;
use super::step::digest;
use super::{LiveStep, RunState, poisoned_error, store_failure};
use crate::ActionError;
use crate::error::{EngineError, NonDeterminism, NonDeterminismCause, kinds};
use crate::event::{EventPayload, NewEvent, RunUpdate};
use crate::history::Recorded;
use crate::schema::Validator;

/// How a recorded thing behaves towards the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A step with an effect of its own (an action, one LLM request): counted as live
    /// while it runs, so a suspending run lets it finish and record first. Re-run after a
    /// crash that left it unfinished.
    Leaf,
    /// A step whose body records steps of its own under its id (sub-workflow, agent, LLM
    /// step with re-asks). Not counted as live; re-entered after a resume.
    Scope,
    /// A durable wait (sleep, hook): recorded when it starts, finished when it ends.
    Wait,
    /// A value recorded the first time it is asked for (`ctx.now()`, patch markers).
    Value,
}

/// Where an expected output type's validator comes from (`schema::validator_for::<T>`).
pub(crate) type ValidatorFn = fn() -> Result<Arc<Validator>, EngineError>;

/// What the code asks the recorder for.
pub(crate) struct Call<'a> {
    /// The correlation id.
    pub(crate) id: &'a str,
    /// What the code calls (an action's slug, `llm`, `sleep`, `hook`, `ctx.now`, …):
    /// checked against the callee the log recorded.
    pub(crate) callee: &'a str,
    /// How it behaves.
    pub(crate) shape: Shape,
    /// Its input, whose digest is checked against the log (steps only).
    pub(crate) input: Option<&'a Value>,
    /// The schema a recorded output must still match (`None`: not checked).
    pub(crate) output: Option<ValidatorFn>,
}

/// The recorder's answer.
pub(crate) enum Entry<'r> {
    /// The log holds the outcome (checked against what the code asked for).
    Replayed(Result<Value, ActionError>),
    /// Run it live, then finish the slot.
    Live(Slot<'r>),
}

/// A live step, sleep or hook: holds what its recording needs.
pub(crate) struct Slot<'r> {
    run: &'r Arc<RunState>,
    id: &'r str,
    callee: &'r str,
    digest: String,
    /// What the log holds for an unfinished step (started, never finished), or for a
    /// finished scope that a replay check re-enters.
    previous: Option<&'r Recorded>,
    /// A replay check re-entering a finished scope: the outcome it must reproduce.
    /// (It is `previous.outcome`.)
    verify: bool,
    _live: Option<LiveStep>,
    /// When the step started running here (`started`), for the step-duration metric; not
    /// read for recorded values, waits and replay checks, which never start a step.
    since: Option<std::time::Instant>,
    /// The step's span (`telemetry::step_span`): disabled for a replay check, a recorded
    /// value, or when no subscriber wants it. Answered-from-log steps get none at all.
    span: tracing::Span,
    shape: Shape,
    /// Whether the outcome was recorded (else, on drop, the span says the execution left
    /// the step unfinished).
    finished: bool,
    /// The durable selects (innermost first) whose branch entered this slot: a started live
    /// step dropped because another branch won records its cancellation.
    race: super::race::Chain,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if !self.finished {
            crate::telemetry::step_left(&self.span, self.shape);
            self.record_select_cancel();
        }
    }
}

impl RunState {
    /// Looks `call` up after the step-boundary checks: a canceled or draining run stops
    /// here (the executor ends the execution once live steps have recorded), a poisoned
    /// run gets the poison.
    ///
    /// # Errors
    /// The poison, or a [`NonDeterminism`] (which poisons the run).
    pub(crate) async fn enter<'r>(
        self: &'r Arc<Self>,
        call: &Call<'r>,
    ) -> Result<Entry<'r>, ActionError> {
        if self.interrupted() {
            match self.stop_here().await {}
        }
        let entry = self.lookup(call)?;
        // A step about to run for the first time: its input goes into `step_started`, so
        // it must be within the payload limit (one recorded before is never re-checked).
        if let (Entry::Live(slot), Some(input)) = (&entry, call.input)
            && slot.previous.is_none()
            && matches!(call.shape, Shape::Leaf | Shape::Scope)
        {
            self.limits
                .check_step(|| format!("the input of step `{}`", call.id), input)?;
        }
        Ok(entry)
    }

    /// [`RunState::enter`] without the interrupt check, for synchronous recorded values
    /// (which are not step boundaries).
    ///
    /// # Errors
    /// As [`RunState::enter`].
    pub(crate) fn lookup<'r>(
        self: &'r Arc<Self>,
        call: &Call<'r>,
    ) -> Result<Entry<'r>, ActionError> {
        if let Some(poison) = self.poisoned() {
            return Err(poisoned_error(&poison));
        }
        super::race::note_entry(call.id, call.shape);
        let digest = call
            .input
            .map(|input| self.input_digest(input))
            .unwrap_or_default();
        let mut recorded = self.history.get(call.id);
        let mut previous = None;
        let mut verify = false;
        if let Some(held) = recorded {
            // A seeded step (testkit) records no callee or digest: it matches any call.
            let differs = (!held.callee.is_empty() && held.callee != call.callee)
                || call.input.is_some_and(|input| {
                    !held.digest.is_empty()
                        && held.digest != digest
                        && !self.matches_legacy_digest(input, &held.digest)
                });
            if differs {
                if self.replay_only() || !self.history.may_diverge(held) {
                    return Err(self.mismatch(call, held, &digest));
                }
                // A fork with a new input reached a copied step the code now calls
                // differently: the run diverges here and goes on live.
                self.diverge(call.id, held.first_seq);
                recorded = None;
            }
        }
        if let Some(recorded) = recorded {
            match &recorded.outcome {
                Some(_) if call.shape == Shape::Scope && self.verifies_scopes() => {
                    previous = Some(recorded);
                    verify = true;
                }
                Some(Ok(output)) => {
                    let output = self.unredacted(output);
                    if let Some(validator) = call.output {
                        self.check_recorded_output(call.id, validator, &output)?;
                    }
                    self.answered_from_log(call.shape);
                    return Ok(Entry::Replayed(Ok(output)));
                }
                Some(Err(error)) => {
                    self.answered_from_log(call.shape);
                    return Ok(Entry::Replayed(Err(self.unredacted_error(error))));
                }
                // Started, never finished: a leaf runs again (a crash mid-step), a scope or
                // a wait goes on where it was.
                None => previous = Some(recorded),
            }
        }
        let resumable = previous.is_some() && call.shape != Shape::Leaf;
        if self.replay_only() && !resumable {
            let ahead = self.history.answerable(true) > self.consumed.load(Ordering::Relaxed);
            let mut report = NonDeterminism::new(
                call.id,
                format!("no such {}", noun(call.shape)),
                requested(call, &digest),
            );
            if !ahead {
                report = report.at_end_of_history();
            }
            return Err(self.report_non_determinism(report));
        }
        let live = (call.shape == Shape::Leaf).then(|| self.live_step());
        // Replay-quiet: only a step that runs live gets a span (a replay check runs none).
        let span = if verify || self.replay_only() {
            tracing::Span::none()
        } else {
            crate::telemetry::step_span(call.id, call.callee, call.shape)
        };
        Ok(Entry::Live(Slot {
            run: self,
            id: call.id,
            callee: call.callee,
            digest,
            previous,
            verify,
            _live: live,
            since: None,
            span,
            shape: call.shape,
            finished: false,
            race: super::race::Chain::current(),
        }))
    }

    /// A forked run with a new input diverges at copied step `id` (first recorded at
    /// `from_seq`): the copied entries from there on no longer answer, and `fork_diverged`
    /// is written before the step's own events, so a later execution rebuilds the same
    /// history. Logged once per divergence.
    fn diverge(&self, id: &str, from_seq: u64) {
        self.history.diverge(from_seq);
        self.push_pending(self.event(
            None,
            1,
            EventPayload::ForkDiverged {
                step: id.to_owned(),
                from_seq,
            },
        ));
        tracing::info!(
            run = %self.run_id,
            step = id,
            from_seq,
            "forked run diverges from its copied prefix: the step runs live"
        );
    }

    /// Whether finished scopes are re-entered to compare their inner steps (replay-only
    /// checks).
    fn verifies_scopes(&self) -> bool {
        self.replay_only()
    }

    fn check_recorded_output(
        &self,
        id: &str,
        validator: ValidatorFn,
        output: &Value,
    ) -> Result<(), ActionError> {
        let validator =
            validator().map_err(|e| ActionError::new(kinds::SCHEMA, e.to_string(), false))?;
        self.check_recorded_against(id, &validator, output)
    }

    /// Checks the recorded output of step `id` against `validator` (a schema known at run
    /// time: a step called by slug); a mismatch is as fatal as a changed callee, and
    /// poisons the run.
    ///
    /// # Errors
    /// The `schema` violation.
    pub(crate) fn check_recorded_against(
        &self,
        id: &str,
        validator: &Validator,
        output: &Value,
    ) -> Result<(), ActionError> {
        let validated = validator.validate(output).map_err(|mut violation| {
            violation.what = format!("recorded output of step `{id}`");
            ActionError::from(violation)
        });
        if let Err(error) = validated {
            // The recorded value no longer fits today's type: as non-deterministic as a
            // changed callee, and just as fatal to the run.
            let mut workflow_error = crate::WorkflowError::from(error.clone());
            workflow_error.step = Some(id.to_owned());
            self.poison(workflow_error);
            return Err(error);
        }
        Ok(())
    }

    /// The report of `call` not matching `recorded`, with values and cause; poisons the run.
    fn mismatch(&self, call: &Call<'_>, recorded: &Recorded, digest: &str) -> ActionError {
        let held = if call.input.is_some() && !recorded.digest.is_empty() {
            format!(
                "`{}` with input digest {}",
                recorded.callee, recorded.digest
            )
        } else {
            format!("`{}`", recorded.callee)
        };
        let mut report = NonDeterminism::new(call.id, held, requested(call, digest));
        if let (Some(recorded), Some(requested)) = (&recorded.input, call.input) {
            let requested = self.redacted(requested);
            if recorded != &requested {
                report = report.with_values(recorded, &requested);
            }
        }
        self.report_non_determinism(report)
    }

    /// Sets the report's cause from the fingerprints and poisons the run with it.
    pub(crate) fn report_non_determinism(&self, report: NonDeterminism) -> ActionError {
        let recorded = self.history.fingerprints();
        let cause = if recorded.is_empty() || self.fingerprint.is_empty() {
            NonDeterminismCause::Unknown
        } else if recorded.iter().all(|f| f.as_str() == &*self.fingerprint) {
            NonDeterminismCause::SameCode
        } else {
            NonDeterminismCause::CodeChanged
        };
        let id = report.id.clone();
        let action_error = ActionError::from(report.with_cause(cause));
        let mut workflow_error = crate::WorkflowError::from(action_error.clone());
        workflow_error.step = Some(id);
        self.poison(workflow_error);
        action_error
    }

    /// The digest of a step's input as the log keeps it: with this run's hook tokens
    /// replaced by their placeholders, so that the digest does not depend on the hook
    /// secret (a history replays under another secret, in a test, as it did live).
    fn input_digest(&self, input: &Value) -> String {
        if self.hook_tokens.is_empty() {
            digest(input)
        } else {
            digest(&self.redacted(input))
        }
    }

    /// Whether `recorded` is the digest of `input` with its hook tokens in it, as versions
    /// before tokens were redacted wrote it (runs in flight across an upgrade).
    fn matches_legacy_digest(&self, input: &Value, recorded: &str) -> bool {
        !self.hook_tokens.is_empty() && digest(input) == recorded
    }

    /// `value` with this run's hook tokens replaced by their placeholders.
    fn redacted(&self, value: &Value) -> Value {
        let mut value = value.clone();
        self.hook_tokens.redact(&mut value);
        value
    }

    /// A recorded error as the body saw it (see [`RunState::unredacted`]).
    pub(crate) fn unredacted_error(&self, error: &ActionError) -> ActionError {
        let mut error = error.clone();
        if self.may_hold_placeholders() {
            let (secret, run_id) = (self.env.hook_secret(), self.run_id.as_str());
            crate::hook_token::expand_placeholders_str(&mut error.message, secret, run_id);
            if let Some(details) = &error.details {
                error.details = Some(crate::hook_token::expand_placeholders(
                    details, secret, run_id,
                ));
            }
        }
        error
    }

    /// Counts an outcome answered from the log.
    fn answered_from_log(&self, shape: Shape) {
        if shape != Shape::Value {
            self.replayed.fetch_add(1, Ordering::Relaxed);
        }
        self.consumed.fetch_add(1, Ordering::Relaxed);
    }
}

fn noun(shape: Shape) -> &'static str {
    match shape {
        Shape::Leaf | Shape::Scope => "step",
        Shape::Wait => "wait",
        Shape::Value => "value",
    }
}

fn requested(call: &Call<'_>, digest: &str) -> String {
    match call.input {
        Some(_) => format!("`{}` with input digest {digest}", call.callee),
        None => format!("`{}`", call.callee),
    }
}

impl<'r> Slot<'r> {
    /// A started live step (action, sub-workflow, LLM request) dropped unfinished because
    /// another branch of a durable select won: records its cancellation (`step_failed`,
    /// kind `canceled`, naming the select and the winner) with the next durable append.
    fn record_select_cancel(&self) {
        if self.verify || self.since.is_none() || !matches!(self.shape, Shape::Leaf | Shape::Scope)
        {
            return;
        }
        let Some((select, winner)) = self.race.lost() else {
            return;
        };
        let error = ActionError::new(
            kinds::CANCELED,
            format!(
                "canceled: branch {winner} of select `{select}` won, and step `{}` was on a losing branch",
                self.id
            ),
            false,
        );
        self.run.push_pending(
            self.run
                .event(Some(self.id), 1, EventPayload::StepFailed { error }),
        );
    }

    /// What the log holds for this id when the step started before and never finished
    /// (a sleep's wake-up time, a hook's deadline), or for a finished scope being checked.
    pub(crate) fn previous(&self) -> Option<&'r Recorded> {
        self.previous
    }

    /// The step's span: polls of the returned future (the live body of the step: an
    /// action's attempts, a sub-workflow's or agent's body, a model request) run inside it,
    /// so the steps a scope records are its children and an action's own events land in it.
    pub(crate) fn instrument<F: Future>(&self, future: F) -> tracing::instrument::Instrumented<F> {
        tracing::Instrument::instrument(future, self.span.clone())
    }

    /// Records that the step starts (`step_started`, written with the next durable append):
    /// once per live execution of a leaf, once ever for a scope. Called once per slot: the
    /// input digest moves into the event.
    pub(crate) fn started(&mut self, kind: &str, input: Value) {
        crate::telemetry::step_started(&self.span, kind, &input);
        if self.verify {
            return; // a replay check re-enters a finished scope: nothing is written
        }
        self.since = Some(std::time::Instant::now());
        if self.previous.is_some() && self._live.is_none() {
            return; // a scope re-entered after a resume: its start is recorded already
        }
        self.run.push_pending(self.run.event(
            Some(self.id),
            1,
            EventPayload::StepStarted {
                callee: self.callee.to_owned(),
                kind: kind.to_owned(),
                input,
                digest: std::mem::take(&mut self.digest),
            },
        ));
    }

    /// Appends `event` durably (a wait's start), without finishing the slot.
    ///
    /// # Errors
    /// A store failure, which poisons the run.
    pub(crate) async fn record(
        &self,
        event: NewEvent,
        update: RunUpdate,
    ) -> Result<(), ActionError> {
        // (`RunState::append` counts itself as live while in flight.)
        self.run
            .append(vec![event], update)
            .await
            .map_err(|e| store_failure(self.run, e))
    }

    /// Records a step's outcome (`step_completed` with its output and token `usage`, or
    /// `step_failed` with its error) after `attempts` attempts. Returns `Ok(())` for an
    /// output (moved into the event, not copied), the step's error otherwise.
    ///
    /// A replay check re-entering a finished scope compares the outcome with the recorded
    /// one instead (a difference is a [`NonDeterminism`]) and writes nothing.
    pub(crate) async fn finish_step(
        mut self,
        outcome: Result<Value, ActionError>,
        attempts: u32,
        usage: Option<StepUsage>,
    ) -> Result<(), ActionError> {
        if let Some(recorded) = self
            .previous
            .and_then(|r| r.outcome.as_ref())
            .filter(|_| self.verify)
        {
            self.finished = true;
            self.run.consumed.fetch_add(1, Ordering::Relaxed);
            self.run.replayed.fetch_add(1, Ordering::Relaxed);
            let recorded = &match recorded {
                Ok(output) => Ok(self.run.unredacted(output)),
                Err(error) => Err(self.run.unredacted_error(error)),
            };
            let same = match (recorded, &outcome) {
                (Ok(a), Ok(b)) => a == b,
                (Err(a), Err(b)) => a.kind == b.kind,
                _ => false,
            };
            if same || self.run.poisoned().is_some() {
                return outcome.map(drop);
            }
            let show = |o: &Result<Value, ActionError>| match o {
                Ok(v) => format!("output {v}"),
                Err(e) => format!("error `{}` ({})", e.kind, e.message),
            };
            let mut report = NonDeterminism::new(self.id, show(recorded), show(&outcome));
            if let (Ok(a), Ok(b)) = (recorded, &outcome) {
                report = report.with_values(a, b);
            }
            return Err(self.run.report_non_determinism(report));
        }
        // A live step that finishes first wins its select; one that lost still records its
        // outcome (its effect happened), and the select does not use it.
        let _ = super::race::may_finish();
        // An output over the payload limit is recorded as the step's failure instead
        // (small, not retried): nothing oversized is written.
        let outcome = outcome.and_then(|output| {
            self.run
                .limits
                .check_step(|| format!("the output of step `{}`", self.id), &output)
                .map(|()| output)
        });
        let (payload, result) = match outcome {
            Ok(output) => (
                EventPayload::StepCompleted {
                    output,
                    callee: None,
                    usage: usage.and_then(StepUsage::request),
                    usage_total: usage.and_then(StepUsage::total),
                    seeded: false,
                },
                Ok(()),
            ),
            Err(error) => (
                EventPayload::StepFailed {
                    error: error.clone(),
                },
                Err(error),
            ),
        };
        let event = self.run.event(Some(self.id), attempts, payload);
        if matches!(self.run.env.fault(), crate::run_env::Fault::SkipStepRecord(skipped) if skipped == self.id)
        {
            return result; // deliberately broken engine: the checkers must notice
        }
        // The span says how the step ended once that is durable (a step whose record was
        // lost shows as interrupted: it runs again on resume).
        self.record(event, RunUpdate::default()).await?;
        self.finished = true;
        crate::telemetry::step_finished(
            &self.span,
            result.as_ref().map(|_| ()),
            attempts,
            usage.map(|u| match u {
                StepUsage::Request(usage) | StepUsage::Total(usage) => usage,
            }),
        );
        self.run.executed.fetch_add(1, Ordering::Relaxed);
        if let Some(since) = self.since {
            self.run.env.metrics.step_finished(
                self.callee,
                result.is_ok(),
                attempts,
                since.elapsed(),
            );
        }
        result
    }

    /// Records the end of a wait (`sleep_completed`, `hook_received`) with `update`.
    ///
    /// # Errors
    /// A store failure, which poisons the run.
    pub(crate) async fn finish_wait(
        mut self,
        event: NewEvent,
        update: RunUpdate,
    ) -> Result<(), ActionError> {
        self.record(event, update).await?;
        self.finished = true;
        crate::telemetry::step_finished(&self.span, Ok(()), 1, None);
        self.run.executed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Records `payload` as this slot's event, durably and at once (with everything
    /// pending): a recorded fact with no outcome of its own, such as a tag (`run_tagged`).
    ///
    /// # Errors
    /// A store failure, which poisons the run.
    pub(crate) async fn finish_event(mut self, payload: EventPayload) -> Result<(), ActionError> {
        self.finished = true;
        let event = self.run.event(Some(self.id), 1, payload);
        self.record(event, RunUpdate::default()).await
    }

    /// Records a value asked for the first time (with the next durable append).
    pub(crate) fn finish_value(mut self, value: Value) {
        self.finished = true;
        let event = self.run.event(
            Some(self.id),
            1,
            EventPayload::StepCompleted {
                output: value,
                callee: Some(self.callee.to_owned()),
                usage: None,
                usage_total: None,
                seeded: false,
            },
        );
        self.run.push_pending(event);
    }
}
