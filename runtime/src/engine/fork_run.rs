//! Forking and restarting runs (DESIGN "Operations"; issue 15 item 2): `runs fork <id>
//! --from <step-id> [--input <json>]`, `runs restart <id>`, `POST /runs/{id}/fork`,
//! `POST /runs/{id}/restart`, [`Engine::fork_run`].
//!
//! A fork is a *new* run of the same workflow whose log starts with a copy of the
//! original's step events (steps, sleeps, hooks: the events with a correlation id) recorded
//! before the first event of step `from`. Run-level events (`run_started`,
//! `run_suspended`, `run_retried`, …) are not copied; the copies are renumbered from 1 and
//! keep their kind, correlation id, attempt, time and payload. The new run's `run_created`
//! names the original in `forked_from` ([`ForkedFrom`]). The original is untouched: nothing
//! is appended to it.
//!
//! Executed, the fork replays the copied steps from the log (they do not run again) and
//! runs `from` and everything after it live. A restart is a fork that copies nothing:
//! every step runs again.
//!
//! With a new input, the copied steps are checked against it as the body calls them: the
//! first copied step whose callee or input no longer matches does not fail the run with a
//! non-determinism error, as it would in any other run; the run *diverges* there
//! (`fork_diverged`): that step runs live, and every copied step recorded at or after it
//! no longer answers (each runs live when the body calls it). Copied steps recorded before
//! it, whose inputs did not change, still replay.

use serde::Serialize;
use serde_json::Value;

use super::Engine;
use crate::error::EngineError;
use crate::event::{
    Event, EventKind, EventPayload, ForkedFrom, NewEvent, RunId, RunRecord, RunStatus, Trigger,
    field,
};

/// How to fork a run, for [`Engine::fork_run`].
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ForkOptions {
    /// The step to fork from: its correlation id as `runs get` shows it (`charge#0`,
    /// `enrich-lead#0/score-lead#0`). It and everything recorded after it run live.
    /// `None` restarts the run: nothing is copied and every step runs again.
    pub from: Option<String>,
    /// A new workflow input (validated against the workflow's input schema), or `None`
    /// to keep the original's.
    pub input: Option<Value>,
    /// Who asked: `cli:<user>`, `api`, or your own text. Recorded in `forked_from`
    /// (`code` when empty).
    pub by: String,
    /// The actor recorded in the fork's identity (the CLI user, the API principal);
    /// `None`: the original run ([`crate::identity::Actor::Run`], relation `forked`). The
    /// fork keeps the original's user, project and subscriber.
    pub actor: Option<crate::identity::Actor>,
}

impl ForkOptions {
    /// A restart: a new run with the original's input and no copied step.
    pub fn restart() -> Self {
        Self::default()
    }

    /// A fork from step `step` (a correlation id of the original run).
    pub fn from_step(step: impl Into<String>) -> Self {
        Self {
            from: Some(step.into()),
            ..Self::default()
        }
    }

    /// Runs the fork with `input` instead of the original's input.
    #[must_use]
    pub fn input(mut self, input: Value) -> Self {
        self.input = Some(input);
        self
    }

    /// Records `by` as who asked.
    #[must_use]
    pub fn by(mut self, by: impl Into<String>) -> Self {
        self.by = by.into();
        self
    }

    /// Records `actor` as the fork's actor (in its identity) instead of the original run.
    #[must_use]
    pub fn actor(mut self, actor: crate::identity::Actor) -> Self {
        self.actor = Some(actor);
        self
    }
}

/// What [`Engine::fork_run`] created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ForkedRun {
    /// The new run, `queued`.
    pub run_id: RunId,
    /// Where it comes from, as its `run_created` records it.
    pub forked_from: ForkedFrom,
    /// How many of the original's events were copied into the new run's log.
    pub copied: usize,
}

/// How many step ids an unknown-step error lists.
const SHOWN_STEPS: usize = 8;

impl Engine {
    /// Forks run `id` into a new `queued` run of the same workflow (trigger `fork`): its
    /// log holds a copy of the original's step events (steps, sleeps, hooks, recorded
    /// values; renumbered from 1, otherwise as recorded) from before the first event of
    /// step [`ForkOptions::from`] (none for a restart), so those steps replay and the rest
    /// run live. With [`ForkOptions::input`], the run takes that input and the first
    /// copied step whose callee or input no longer matches runs live (recorded as
    /// `fork_diverged`), with every copied step recorded after it. The new run's
    /// `run_created` records [`ForkedFrom`] (read it back with [`forked_from`]). Nothing
    /// is appended to the original, whatever its status.
    ///
    /// # Errors
    /// [`EngineError::UnknownRun`]; [`EngineError::UnknownStep`] when the original's log
    /// has no step `from` (the error lists some that it has);
    /// [`EngineError::UnknownWorkflow`] when this binary does not know the run's workflow;
    /// [`EngineError::Schema`] when the new input does not match the input schema (each
    /// violation with its JSON pointer); store errors. Nothing is created on error.
    pub async fn fork_run(
        &self,
        id: &RunId,
        options: ForkOptions,
    ) -> Result<ForkedRun, EngineError> {
        let original = self.get_run(id).await?;
        let entry = self.workflow(&original.workflow)?;
        let (input, input_changed) = match options.input {
            Some(input) => {
                entry.input.validate(&input)?;
                let changed = input != original.input;
                (input, changed)
            }
            None => (original.input.clone(), false),
        };
        let events = self.store().events(id).await?;
        let inherited = identity_of(&events);
        let cut = match &options.from {
            None => 0,
            Some(step) => events
                .iter()
                .find(|e| e.event.correlation_id.as_deref() == Some(step.as_str()))
                .map(|e| e.seq)
                .ok_or_else(|| unknown_step(id, step, &events))?,
        };
        let new_id = RunId::new();
        // A fork of a fork: the entries its own divergence voided are not part of its
        // history, and copied steps it has not reached yet may still diverge from its input.
        let void = voided_range(&events);
        let input_changed =
            input_changed || forked_from(&events).is_some_and(|f| f.input_changed && cut > 1);
        let mut copied: Vec<NewEvent> = events
            .into_iter()
            .filter(|e| e.seq < cut && e.event.correlation_id.is_some())
            .filter(|e| !void.is_some_and(|(from, to)| e.seq >= from && e.seq < to))
            .map(|e| e.event)
            .collect();
        for event in &mut copied {
            self.rehash_hook(&new_id, event);
        }
        let forked_from = ForkedFrom {
            run_id: id.clone(),
            step: options.from,
            prefix_len: 1 + copied.len() as u64,
            input_changed,
            by: if options.by.is_empty() {
                "code".to_owned()
            } else {
                options.by
            },
        };
        let now = self.now();
        let record = RunRecord {
            id: new_id.clone(),
            workflow: original.workflow.clone(),
            status: RunStatus::Queued,
            input: input.clone(),
            output: None,
            error: None,
            attempt: 0,
            trigger: Trigger::Fork,
            created_at: now,
            updated_at: now,
            wake_at: None,
            next_seq: 1,
            // The fork waits in the original's queue, under its key and priority, afresh.
            queue: original.queue.clone().map(|q| crate::queue::RunQueue {
                admitted_at: None,
                ..q
            }),
        };
        let created = NewEvent::new(
            None,
            0,
            now,
            EventPayload::RunCreated {
                workflow: original.workflow.clone(),
                input,
                trigger: Trigger::Fork,
                start_at: None,
                forked_from: Some(forked_from.clone()),
                // A fork is a new run an operator asked for, not part of the caller's trace.
                traceparent: None,
                // The business key stays with the original run.
                key: None,
                event: None,
                parent: None,
                continued_from: None,
                queue: record.queue.clone().map(Box::new),
                // A fork acts for the original's user, project and subscriber.
                identity: Some(Box::new(crate::identity::RunIdentity {
                    actor: options
                        .actor
                        .clone()
                        .unwrap_or(crate::identity::Actor::Run {
                            run_id: original.id.to_string(),
                            relation: crate::identity::RunRelation::Forked,
                        }),
                    ..inherited
                })),
            },
        );
        let count = copied.len();
        self.store()
            .create_run_with_events(record, created, copied)
            .await?;
        tracing::info!(
            run = %new_id,
            original = %id,
            step = ?forked_from.step,
            copied = count,
            input_changed,
            by = %forked_from.by,
            "run forked"
        );
        self.env().announce_created(&new_id, &original.workflow);
        Ok(ForkedRun {
            run_id: new_id,
            forked_from,
            copied: count,
        })
    }

    /// [`Engine::fork_run`] with [`ForkOptions::restart`]: a new run of the same workflow
    /// with the same input, in which every step runs again.
    ///
    /// # Errors
    /// As [`Engine::fork_run`].
    pub async fn restart_run(&self, id: &RunId, by: &str) -> Result<ForkedRun, EngineError> {
        self.fork_run(id, ForkOptions::restart().by(by)).await
    }

    /// A copied `hook_created` holds the hash of the original run's token; the fork's hook
    /// has its own token (tokens derive from the run id), so the hash is recomputed.
    fn rehash_hook(&self, new_id: &RunId, event: &mut NewEvent) {
        if event.kind != EventKind::HookCreated {
            return;
        }
        let Some(step) = event.correlation_id.as_deref() else {
            return;
        };
        let hash = crate::hook_token::token_hash(&self.hook_token(new_id, step));
        if let Value::Object(payload) = &mut event.payload {
            payload.insert(field::TOKEN_HASH.to_owned(), Value::String(hash));
        }
    }
}

/// Where a run comes from when it is a fork or a restart: the `forked_from` of its
/// `run_created` event (event 0 of `events`, a run's log); `None` for other runs.
pub fn forked_from(events: &[Event]) -> Option<ForkedFrom> {
    let created = events
        .first()
        .filter(|e| e.event.kind == EventKind::RunCreated)?;
    match created.event.decode_payload() {
        Ok(EventPayload::RunCreated { forked_from, .. }) => forked_from,
        _ => None,
    }
}

/// In a log that is itself a fork which diverged: the range of sequence numbers whose
/// copied events no longer answer (they are not copied again).
fn voided_range(events: &[Event]) -> Option<(u64, u64)> {
    let prefix_len = forked_from(events)?.prefix_len;
    let from = events
        .iter()
        .filter(|e| e.event.kind == EventKind::ForkDiverged)
        .filter_map(|e| match e.event.decode_payload() {
            Ok(EventPayload::ForkDiverged { from_seq, .. }) => Some(from_seq),
            _ => None,
        })
        .min()?;
    Some((from, prefix_len))
}

/// The error for a `from` the log does not hold, listing some step ids it does hold.
fn unknown_step(run: &RunId, step: &str, events: &[Event]) -> EngineError {
    let mut known: Vec<String> = Vec::new();
    for id in events
        .iter()
        .filter_map(|e| e.event.correlation_id.as_deref())
    {
        if !known.iter().any(|k| k == id) {
            known.push(id.to_owned());
        }
    }
    let total = known.len();
    known.truncate(SHOWN_STEPS);
    EngineError::UnknownStep {
        run: run.to_string(),
        step: step.to_owned(),
        known,
        total,
    }
}

/// Who started a run and whom it acts for: the identity recorded in the `run_created`
/// event of `events` (a run's log, as [`Engine::events`] returns it), or
/// [`crate::identity::RunIdentity::unrecorded`] when it has none (a run recorded before
/// identities were). `runs get`, `GET /runs/{id}` and the web UI's run page read it here.
pub fn identity_of(events: &[Event]) -> crate::identity::RunIdentity {
    events
        .iter()
        .find(|e| e.event.kind == EventKind::RunCreated)
        .and_then(|e| crate::event::recorded_identity(&e.event.payload))
        .unwrap_or_default()
}
