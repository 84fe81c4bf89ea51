//! Typed event payloads: [`EventPayload`], one variant per [`EventKind`], and the field
//! names of the JSON written to the log ([`field`]).
//!
//! The JSON on disk is the compatibility contract (`reprise-run/1`): [`EventPayload::encode`]
//! writes exactly the keys earlier versions wrote (absent optional fields are left out), and
//! [`EventPayload::decode`] reads what earlier versions wrote, as tolerantly as the readers
//! it replaces: a missing optional field is `None` (a malformed optional field too), a
//! missing field that has a natural empty value (an input digest, a step kind) is empty, and
//! a missing or malformed required field is a [`PayloadError`] naming the field. Unknown
//! fields are ignored.
//!
//! User data (inputs, outputs, hook payloads, schemas) stays a [`Value`] and is *moved*
//! into and out of the payload, never copied: the per-step hot path writes a
//! `step_started` and a `step_completed` for every step, and a resume decodes every event.
//!
//! Readers that need one field use the borrowing accessors of [`NewEvent`]
//! ([`NewEvent::output`], [`NewEvent::callee`], [`NewEvent::waits`], …), which apply the
//! same rules without decoding the rest.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{EventKind, NewEvent, Trigger};
use crate::error::{ActionError, WorkflowError};
use crate::usage::Usage;
use crate::wait::Wait;

/// The keys of event payloads, as written in the log.
pub mod field {
    /// `run_created`: the workflow's slug.
    pub const WORKFLOW: &str = "workflow";
    /// `run_created`, `step_started`: the input.
    pub const INPUT: &str = "input";
    /// `run_created`: what started the run.
    pub const TRIGGER: &str = "trigger";
    /// `run_created` of a delayed start: the requested start time.
    pub const START_AT: &str = "start_at";
    /// `run_started`: the step-site fingerprint of the code that ran the attempt.
    pub const FINGERPRINT: &str = "fingerprint";
    /// `step_started`, `step_completed` (recorded values): what the step calls.
    pub const CALLEE: &str = "callee";
    /// `step_started`: `action`, `workflow`, `llm` or `agent`.
    pub const KIND: &str = "kind";
    /// `step_started`: the input's digest.
    pub const DIGEST: &str = "digest";
    /// `step_completed`, `run_completed`: the output.
    pub const OUTPUT: &str = "output";
    /// `step_completed` of one model request: its token usage.
    pub const USAGE: &str = "usage";
    /// `step_completed` of an LLM step or agent: the usage of all its requests.
    pub const USAGE_TOTAL: &str = "usage_total";
    /// `step_completed` written by `Engine::seed_step`: `true`.
    pub const SEEDED: &str = "seeded";
    /// `step_retrying`, `step_failed`, `run_suspended` (retry), `run_failed`,
    /// `run_canceled`: the error.
    pub const ERROR: &str = "error";
    /// `step_retrying`: the delay before the next attempt, in milliseconds.
    pub const DELAY_MS: &str = "delay_ms";
    /// `sleep_started`, `run_suspended` (retry), `run_deferred`: when to wake up.
    pub const WAKE_AT: &str = "wake_at";
    /// `hook_created`: the SHA-256 (hex) of the hook's token.
    pub const TOKEN_HASH: &str = "token_hash";
    /// `hook_created`: the JSON Schema a payload must match.
    pub const SCHEMA: &str = "schema";
    /// `hook_created`, `hook_received` (timed out): the hook's deadline.
    pub const TIMEOUT_AT: &str = "timeout_at";
    /// `hook_received`: `true` when the hook timed out.
    pub const TIMED_OUT: &str = "timed_out";
    /// `hook_received`: the delivered payload.
    pub const PAYLOAD: &str = "payload";
    /// `run_suspended`: why (`sleep`, `hook`, `retry`, `shutdown`); `run_deferred`: why
    /// this binary cannot execute the run (text for people).
    pub const REASON: &str = "reason";
    /// `run_deferred`: how many executions in a row found the run unexecutable, this one
    /// included (from 1).
    pub const STRIKE: &str = "strike";
    /// `run_suspended` (sleep, hook): what the run waits for.
    pub const WAITS: &str = "waits";
    /// `run_retried`: who asked (`cli:<user>`, `api`, or what the caller passed).
    pub const BY: &str = "by";
    /// `run_tagged`: the tag key; `run_created`: the business key.
    pub const KEY: &str = "key";
    /// `run_tagged`: the tag value's type (`string`, `number`, `bool`, `time`).
    pub const TYPE: &str = "type";
    /// `run_tagged`: the tag value.
    pub const VALUE: &str = "value";
    /// `run_retried`: the step whose failure failed the run, which runs again;
    /// `fork_diverged`: the copied step that no longer matched.
    pub const STEP: &str = "step";
    /// `run_created` of a fork or restart: the original run and the copied prefix
    /// ([`super::ForkedFrom`]).
    pub const FORKED_FROM: &str = "forked_from";
    /// `run_created`: the W3C `traceparent` of the request that started the run (its
    /// executions join that trace).
    pub const TRACEPARENT: &str = "traceparent";
    /// `run_created`: the emitted event that started the run (`on_event`).
    pub const EVENT: &str = "event";
    /// `run_created` of a child run: the parent run and the step that started it
    /// ([`super::ParentRun`]).
    pub const PARENT: &str = "parent";
    /// `run_created` of a run started by `ctx.continue_as_new(..)`: the run it continues.
    pub const CONTINUED_FROM: &str = "continued_from";
    /// `run_created` of a run in a queue: `{"name", "key"?, "priority"}`.
    pub const QUEUE: &str = "queue";
    /// `run_created`: who started the run and whom it acts for
    /// (`{"actor", "user"?, "project"?, "subscriber"?}`, see [`crate::identity::RunIdentity`]).
    pub const IDENTITY: &str = "identity";
    /// `fork_diverged`: the sequence number (in the forked run's log) of the first event of
    /// the step that diverged; copied events from there on no longer answer replay.
    pub const FROM_SEQ: &str = "from_seq";
}

/// The emitted event that started a run of an `on_event` workflow: the `event` field of
/// its `run_created` event (see `Engine::emit`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct EventRef {
    /// The event's name, such as `order.paid`.
    pub name: String,
    /// The event's id.
    pub id: String,
}

/// Where a forked (or restarted) run comes from: the `forked_from` field of its
/// `run_created` event (see `Engine::fork_run`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ForkedFrom {
    /// The original run (left untouched by the fork).
    pub run_id: super::RunId,
    /// The step the fork starts from (it and everything recorded after it run live);
    /// `None` for a restart (nothing copied).
    #[serde(default)]
    pub step: Option<String>,
    /// The length of the copied prefix in the forked run's log: events `1..prefix_len`
    /// are copies of the original's step events (`run_created` is event 0). `1` for a
    /// restart.
    #[serde(default)]
    pub prefix_len: u64,
    /// Whether the fork was given a new input: the copied steps are then checked against
    /// it, and the first one that no longer matches runs live (`fork_diverged`).
    #[serde(default)]
    pub input_changed: bool,
    /// Who asked (`cli:<user>`, `api`, or what the caller passed).
    #[serde(default)]
    pub by: String,
}

/// The parent of a child run: the `parent` field of its `run_created` event (see
/// `ctx::child`, `wf.start(input)` in a workflow body).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ParentRun {
    /// The run that started the child.
    pub run_id: super::RunId,
    /// The correlation id of the parent's start step (`start:ship-order#0`).
    pub step: String,
    /// For a run that continues a child run (continue-as-new): the run the parent started,
    /// whose result channel the parent waits on. `None` for the started run itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<super::RunId>,
}

/// The identity recorded in a `run_created` payload (its `identity` field), if it has a
/// readable one: the one reader of that field outside [`EventPayload::decode`], for the
/// places that keep a run's first payload as JSON (replay, forks, continue-as-new, views).
pub(crate) fn recorded_identity(created: &Value) -> Option<crate::identity::RunIdentity> {
    created
        .get(field::IDENTITY)
        .and_then(|i| <crate::identity::RunIdentity as serde::Deserialize>::deserialize(i).ok())
}

/// An event's payload, typed: one variant per [`EventKind`] (see [`EventPayload::kind`]).
///
/// The comment of each variant shows its JSON; `?` marks a field left out when absent.
// `RunCreated` is the large variant: one per run, built once and encoded at once, so its
// size costs nothing per step; boxing it would cost an allocation on every decode of it.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum EventPayload {
    /// `{"workflow", "input", "trigger", "start_at"?, "forked_from"?, "traceparent"?,
    /// "key"?, "event"?, "parent"?, "continued_from"?, "queue"?, "identity"?}`.
    RunCreated {
        /// The workflow's slug.
        workflow: String,
        /// The run's input.
        input: Value,
        /// What started the run.
        trigger: Trigger,
        /// The start time requested by a delayed start (`--delay`, `?start_at=`), if any;
        /// the run was due from then (at once when it had passed).
        start_at: Option<DateTime<Utc>>,
        /// For a fork or restart: the original run and the copied prefix.
        forked_from: Option<ForkedFrom>,
        /// The W3C `traceparent` the run was started with (written only when there is
        /// one; logs written before it have none).
        traceparent: Option<String>,
        /// The business key the run was started with (`StartOptions::key`), if any.
        key: Option<String>,
        /// For a run started by an emitted event (`on_event`): its name and id (written
        /// only then).
        event: Option<EventRef>,
        /// For a child run: its parent run and the step that started it.
        parent: Option<ParentRun>,
        /// For a run started by continue-as-new: the run it continues.
        continued_from: Option<super::RunId>,
        /// The run's queue, key and priority (written only for a run in a queue;
        /// `admitted_at` is never in the log).
        queue: Option<Box<super::RunQueue>>,
        /// Who started the run and whom it acts for (logs written before identities
        /// have none).
        identity: Option<Box<crate::identity::RunIdentity>>,
    },
    /// `{"fingerprint"?}` (runs recorded before fingerprints were: `{}`).
    RunStarted {
        /// The step-site fingerprint of the code running this attempt.
        fingerprint: Option<String>,
    },
    /// `{"callee", "kind", "input", "digest"}`.
    StepStarted {
        /// What the step calls (an action's slug, `llm`, an agent's slug).
        callee: String,
        /// `action`, `workflow`, `llm` or `agent` (empty when the log has none).
        kind: String,
        /// The step's input.
        input: Value,
        /// The input's digest (empty when the log has none: not checked on replay).
        digest: String,
    },
    /// `{"output", "callee"?, "usage"?, "usage_total"?, "seeded"?}`.
    StepCompleted {
        /// The output (`null` when the log has none).
        output: Value,
        /// The callee of a recorded value (`ctx.now`, `ctx.patched`, …), which has no
        /// `step_started`.
        callee: Option<String>,
        /// One model request's token usage.
        usage: Option<Usage>,
        /// An LLM step's or agent's usage over all its requests.
        usage_total: Option<Usage>,
        /// Pre-recorded by `Engine::seed_step` (written as `"seeded": true`).
        seeded: bool,
    },
    /// `{"error", "delay_ms"}`.
    StepRetrying {
        /// The attempt's error.
        error: ActionError,
        /// The delay before the next attempt, in milliseconds.
        delay_ms: u64,
    },
    /// `{"error"}`.
    StepFailed {
        /// The step's error.
        error: ActionError,
    },
    /// `{"wake_at"}`.
    SleepStarted {
        /// When the sleep ends.
        wake_at: DateTime<Utc>,
    },
    /// `{}`.
    SleepCompleted,
    /// `{"token_hash", "schema", "timeout_at"?}`.
    HookCreated {
        /// The SHA-256 (hex) of the hook's token (empty when the log has none).
        token_hash: String,
        /// The JSON Schema a payload must match (`null` when the log has none: not checked).
        schema: Value,
        /// When the hook times out, if it has a timeout.
        timeout_at: Option<DateTime<Utc>>,
    },
    /// `{"payload"}`, or `{"timed_out": true, "timeout_at"}`.
    HookReceived(HookReceipt),
    /// `{"reason", "waits"?, "wake_at"?, "error"?}`.
    RunSuspended {
        /// Why the run stopped.
        reason: SuspendReason,
        /// What it waits for (`sleep`, `hook`).
        waits: Option<Vec<Wait>>,
        /// When the next attempt may start (`retry`).
        wake_at: Option<DateTime<Utc>>,
        /// The failed attempt's error (`retry`).
        error: Option<WorkflowError>,
    },
    /// `{"output"}`.
    RunCompleted {
        /// The run's output (`null` when the log has none).
        output: Value,
    },
    /// `{"error"}`.
    RunFailed {
        /// Why the run failed.
        error: WorkflowError,
    },
    /// `{"error"?}`.
    RunCanceled {
        /// The cancellation error.
        error: Option<WorkflowError>,
    },
    /// `{"reason", "strike", "wake_at"}`.
    RunDeferred {
        /// Why this binary cannot execute the run (an unknown workflow, a row that does not
        /// decode), for people.
        reason: String,
        /// How many executions in a row found the run unexecutable, this one included.
        strike: u32,
        /// When the run may be claimed again.
        wake_at: DateTime<Utc>,
    },
    /// `{"by", "step"?, "error"}`.
    RunRetried {
        /// Who asked for the retry.
        by: String,
        /// The step whose failure failed the run (its recorded failure, and those of the
        /// sub-workflows around it, no longer answer replay: it runs again).
        step: Option<String>,
        /// The error the run had failed with.
        error: WorkflowError,
    },
    /// `{"by", "reason", "step"?, "error"?}`.
    RunPaused {
        /// Who paused it (`cli:<user>`, `api`, the caller's text), or `engine` for a run
        /// parked when its attempts ran out.
        by: String,
        /// Why.
        reason: PauseReason,
        /// For a parked run: the step whose failure would have failed it (it runs again
        /// when the run is unpaused).
        step: Option<String>,
        /// For a parked run: the error it would have failed with.
        error: Option<WorkflowError>,
    },
    /// `{"by", "step"?}`.
    RunUnpaused {
        /// Who unpaused it.
        by: String,
        /// For a parked run: the step that runs again (its recorded failure, and those of
        /// the scopes around it, no longer answer replay, as after `run_retried`).
        step: Option<String>,
    },
    /// `{"step", "from_seq"}`.
    ForkDiverged {
        /// The copied step that no longer matched the code's call.
        step: String,
        /// The sequence number of that step's first event: copied events from there on
        /// (up to the end of the copied prefix) no longer answer replay.
        from_seq: u64,
    },
    /// `run_tagged`: `{"key", "type", "value", "epoch_us"?}` (`epoch_us`: a time tag's
    /// value in µs since the Unix epoch, what the SQL stores index).
    RunTagged {
        /// The tag key.
        key: String,
        /// Its value.
        value: crate::tags::TagValue,
    },
}

/// Why a run was paused ([`EventPayload::RunPaused`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PauseReason {
    /// An operator asked (`runs pause`, `POST /runs/{id}/pause`, [`crate::Engine::pause_run`]).
    Operator,
    /// The run would have failed for good after its last attempt, and its workflow parks
    /// such runs (`#[workflow(on_max_attempts = "pause")]`).
    MaxAttempts,
}

impl PauseReason {
    /// The reason as written in the log: `operator` or `max_attempts`.
    pub fn as_str(self) -> &'static str {
        match self {
            PauseReason::Operator => "operator",
            PauseReason::MaxAttempts => "max_attempts",
        }
    }

    /// Parses [`PauseReason::as_str`]'s output.
    pub fn parse(s: &str) -> Option<PauseReason> {
        [PauseReason::Operator, PauseReason::MaxAttempts]
            .into_iter()
            .find(|reason| reason.as_str() == s)
    }
}

impl fmt::Display for PauseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a hook ended ([`EventPayload::HookReceived`]).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum HookReceipt {
    /// A payload was delivered: `{"payload"}` (`null` when the log has none).
    Delivered(Value),
    /// The hook received nothing before its deadline: `{"timed_out": true, "timeout_at"?}`.
    TimedOut {
        /// The deadline.
        timeout_at: Option<DateTime<Utc>>,
    },
}

/// Why a run stopped ([`EventPayload::RunSuspended`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SuspendReason {
    /// Every unfinished branch sleeps.
    Sleep,
    /// A branch waits on a hook.
    Hook,
    /// The attempt failed; a run-level retry is scheduled.
    Retry,
    /// The worker shut down; the run is queued for any worker.
    Shutdown,
}

impl SuspendReason {
    /// The reason as written in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            SuspendReason::Sleep => "sleep",
            SuspendReason::Hook => "hook",
            SuspendReason::Retry => "retry",
            SuspendReason::Shutdown => "shutdown",
        }
    }

    /// Parses [`SuspendReason::as_str`]'s output.
    pub fn parse(s: &str) -> Option<SuspendReason> {
        [
            SuspendReason::Sleep,
            SuspendReason::Hook,
            SuspendReason::Retry,
            SuspendReason::Shutdown,
        ]
        .into_iter()
        .find(|reason| reason.as_str() == s)
    }
}

impl fmt::Display for SuspendReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A payload that lacks a required field, or holds one that does not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayloadError {
    kind: EventKind,
    field: &'static str,
    problem: Option<String>,
}

impl PayloadError {
    /// The kind of the event.
    pub fn kind(&self) -> EventKind {
        self.kind
    }

    /// The field at fault.
    pub fn field(&self) -> &'static str {
        self.field
    }
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            None => write!(f, "the {} payload has no `{}`", self.kind, self.field),
            Some(problem) => write!(
                f,
                "the {} payload has an invalid `{}`: {problem}",
                self.kind, self.field
            ),
        }
    }
}

impl std::error::Error for PayloadError {}

impl EventPayload {
    /// The kind of event this payload belongs to.
    #[inline(always)]
    pub fn kind(&self) -> EventKind {
        match self {
            EventPayload::RunCreated { .. } => EventKind::RunCreated,
            EventPayload::RunStarted { .. } => EventKind::RunStarted,
            EventPayload::StepStarted { .. } => EventKind::StepStarted,
            EventPayload::StepCompleted { .. } => EventKind::StepCompleted,
            EventPayload::StepRetrying { .. } => EventKind::StepRetrying,
            EventPayload::StepFailed { .. } => EventKind::StepFailed,
            EventPayload::SleepStarted { .. } => EventKind::SleepStarted,
            EventPayload::SleepCompleted => EventKind::SleepCompleted,
            EventPayload::HookCreated { .. } => EventKind::HookCreated,
            EventPayload::HookReceived(_) => EventKind::HookReceived,
            EventPayload::RunSuspended { .. } => EventKind::RunSuspended,
            EventPayload::RunCompleted { .. } => EventKind::RunCompleted,
            EventPayload::RunFailed { .. } => EventKind::RunFailed,
            EventPayload::RunCanceled { .. } => EventKind::RunCanceled,
            EventPayload::RunDeferred { .. } => EventKind::RunDeferred,
            EventPayload::RunRetried { .. } => EventKind::RunRetried,
            EventPayload::RunPaused { .. } => EventKind::RunPaused,
            EventPayload::RunUnpaused { .. } => EventKind::RunUnpaused,
            EventPayload::ForkDiverged { .. } => EventKind::ForkDiverged,
            EventPayload::RunTagged { .. } => EventKind::RunTagged,
        }
    }

    /// The payload as written in the log. User data (inputs, outputs, hook payloads,
    /// schemas) is moved into the JSON, not copied.
    ///
    /// Always inlined, like [`NewEvent::new`]: every writer names its variant, so the match
    /// folds away at the call site. Out of line, one jump table served the `step_started`
    /// and the `step_completed` of every step in turn; W1 on the memory store measured ~3 %
    /// slower that way (callgrind's branch simulation: 13 % more mispredicted indirect
    /// branches).
    #[inline(always)]
    pub fn encode(self) -> Value {
        let mut out = Map::new();
        let mut put = |name: &str, value: Value| {
            out.insert(name.to_owned(), value);
        };
        match self {
            EventPayload::RunCreated {
                workflow,
                input,
                trigger,
                start_at,
                forked_from,
                traceparent,
                key,
                event,
                parent,
                continued_from,
                queue,
                identity,
            } => {
                put(field::WORKFLOW, Value::String(workflow));
                put(field::INPUT, input);
                put(field::TRIGGER, Value::from(trigger.as_str()));
                if let Some(start_at) = start_at {
                    put(field::START_AT, to_json(&start_at));
                }
                if let Some(forked_from) = forked_from {
                    put(field::FORKED_FROM, to_json(&forked_from));
                }
                if let Some(traceparent) = traceparent {
                    put(field::TRACEPARENT, Value::String(traceparent));
                }
                if let Some(key) = key {
                    put(field::KEY, Value::String(key));
                }
                if let Some(event) = event {
                    put(field::EVENT, to_json(&event));
                }
                if let Some(parent) = parent {
                    put(field::PARENT, to_json(&parent));
                }
                if let Some(continued_from) = continued_from {
                    put(field::CONTINUED_FROM, Value::String(continued_from.0));
                }
                if let Some(queue) = queue {
                    put(field::QUEUE, to_json(&queue));
                }
                if let Some(identity) = identity {
                    put(field::IDENTITY, to_json(&identity));
                }
            }
            EventPayload::RunStarted { fingerprint } => {
                if let Some(fingerprint) = fingerprint {
                    put(field::FINGERPRINT, Value::String(fingerprint));
                }
            }
            EventPayload::StepStarted {
                callee,
                kind,
                input,
                digest,
            } => {
                put(field::CALLEE, Value::String(callee));
                put(field::KIND, Value::String(kind));
                put(field::INPUT, input);
                put(field::DIGEST, Value::String(digest));
            }
            EventPayload::StepCompleted {
                output,
                callee,
                usage,
                usage_total,
                seeded,
            } => {
                put(field::OUTPUT, output);
                if let Some(callee) = callee {
                    put(field::CALLEE, Value::String(callee));
                }
                if let Some(usage) = usage {
                    put(field::USAGE, to_json(&usage));
                }
                if let Some(usage) = usage_total {
                    put(field::USAGE_TOTAL, to_json(&usage));
                }
                if seeded {
                    put(field::SEEDED, Value::Bool(true));
                }
            }
            EventPayload::StepRetrying { error, delay_ms } => {
                put(field::ERROR, to_json(&error));
                put(field::DELAY_MS, Value::from(delay_ms));
            }
            EventPayload::StepFailed { error } => put(field::ERROR, to_json(&error)),
            EventPayload::SleepStarted { wake_at } => put(field::WAKE_AT, to_json(&wake_at)),
            EventPayload::SleepCompleted => {}
            EventPayload::HookCreated {
                token_hash,
                schema,
                timeout_at,
            } => {
                put(field::TOKEN_HASH, Value::String(token_hash));
                put(field::SCHEMA, schema);
                if let Some(timeout_at) = timeout_at {
                    put(field::TIMEOUT_AT, to_json(&timeout_at));
                }
            }
            EventPayload::HookReceived(HookReceipt::Delivered(payload)) => {
                put(field::PAYLOAD, payload);
            }
            EventPayload::HookReceived(HookReceipt::TimedOut { timeout_at }) => {
                put(field::TIMED_OUT, Value::Bool(true));
                if let Some(timeout_at) = timeout_at {
                    put(field::TIMEOUT_AT, to_json(&timeout_at));
                }
            }
            EventPayload::RunSuspended {
                reason,
                waits,
                wake_at,
                error,
            } => {
                put(field::REASON, Value::from(reason.as_str()));
                if let Some(waits) = waits {
                    put(field::WAITS, to_json(&waits));
                }
                if let Some(wake_at) = wake_at {
                    put(field::WAKE_AT, to_json(&wake_at));
                }
                if let Some(error) = error {
                    put(field::ERROR, to_json(&error));
                }
            }
            EventPayload::RunCompleted { output } => put(field::OUTPUT, output),
            EventPayload::RunFailed { error } => put(field::ERROR, to_json(&error)),
            EventPayload::RunCanceled { error } => {
                if let Some(error) = error {
                    put(field::ERROR, to_json(&error));
                }
            }
            EventPayload::RunDeferred {
                reason,
                strike,
                wake_at,
            } => {
                put(field::REASON, Value::String(reason));
                put(field::STRIKE, Value::from(strike));
                put(field::WAKE_AT, to_json(&wake_at));
            }
            EventPayload::RunRetried { by, step, error } => {
                put(field::BY, Value::String(by));
                if let Some(step) = step {
                    put(field::STEP, Value::String(step));
                }
                put(field::ERROR, to_json(&error));
            }
            EventPayload::RunPaused {
                by,
                reason,
                step,
                error,
            } => {
                put(field::BY, Value::String(by));
                put(field::REASON, Value::String(reason.as_str().to_owned()));
                if let Some(step) = step {
                    put(field::STEP, Value::String(step));
                }
                if let Some(error) = error {
                    put(field::ERROR, to_json(&error));
                }
            }
            EventPayload::RunUnpaused { by, step } => {
                put(field::BY, Value::String(by));
                if let Some(step) = step {
                    put(field::STEP, Value::String(step));
                }
            }
            EventPayload::ForkDiverged { step, from_seq } => {
                put(field::STEP, Value::String(step));
                put(field::FROM_SEQ, Value::from(from_seq));
            }
            EventPayload::RunTagged { key, value } => {
                put(field::KEY, Value::String(key));
                value.encode_into(&mut out);
            }
        }
        Value::Object(out)
    }

    /// Reads the payload of a `kind` event, copying the values it keeps (see
    /// [`EventPayload::decode_owned`] to move them out instead).
    ///
    /// # Errors
    /// A [`PayloadError`] naming a required field that is missing or does not parse.
    pub fn decode(kind: EventKind, payload: &Value) -> Result<EventPayload, PayloadError> {
        Self::decode_owned(kind, payload.clone())
    }

    /// Reads the payload of a `kind` event, moving its values out (a resume decodes every
    /// event of a run this way: step inputs and outputs are never copied).
    ///
    /// # Errors
    /// As [`EventPayload::decode`].
    pub fn decode_owned(kind: EventKind, payload: Value) -> Result<EventPayload, PayloadError> {
        let mut f = Fields::new(kind, payload);
        Ok(match kind {
            EventKind::RunCreated => EventPayload::RunCreated {
                workflow: f.required_string(field::WORKFLOW)?,
                input: f.value(field::INPUT),
                trigger: f.required(field::TRIGGER)?,
                start_at: f.optional(field::START_AT),
                forked_from: f.optional(field::FORKED_FROM),
                traceparent: f.string(field::TRACEPARENT),
                key: f.string(field::KEY),
                event: f.optional(field::EVENT),
                parent: f.optional(field::PARENT),
                continued_from: f.string(field::CONTINUED_FROM).map(super::RunId),
                queue: f.optional(field::QUEUE),
                identity: f.optional(field::IDENTITY),
            },
            EventKind::RunStarted => EventPayload::RunStarted {
                fingerprint: f.string(field::FINGERPRINT),
            },
            EventKind::StepStarted => EventPayload::StepStarted {
                callee: f.required_string(field::CALLEE)?,
                kind: f.string(field::KIND).unwrap_or_default(),
                input: f.value(field::INPUT),
                digest: f.string(field::DIGEST).unwrap_or_default(),
            },
            EventKind::StepCompleted => EventPayload::StepCompleted {
                output: f.value(field::OUTPUT),
                callee: f.string(field::CALLEE),
                usage: f.optional(field::USAGE),
                usage_total: f.optional(field::USAGE_TOTAL),
                seeded: f.flag(field::SEEDED),
            },
            EventKind::StepRetrying => EventPayload::StepRetrying {
                error: f.required(field::ERROR)?,
                delay_ms: f.required(field::DELAY_MS)?,
            },
            EventKind::StepFailed => EventPayload::StepFailed {
                error: f.required(field::ERROR)?,
            },
            EventKind::SleepStarted => EventPayload::SleepStarted {
                wake_at: f.required(field::WAKE_AT)?,
            },
            EventKind::SleepCompleted => EventPayload::SleepCompleted,
            EventKind::HookCreated => EventPayload::HookCreated {
                token_hash: f.string(field::TOKEN_HASH).unwrap_or_default(),
                schema: f.value(field::SCHEMA),
                timeout_at: f.optional(field::TIMEOUT_AT),
            },
            EventKind::HookReceived => EventPayload::HookReceived(if f.flag(field::TIMED_OUT) {
                HookReceipt::TimedOut {
                    timeout_at: f.optional(field::TIMEOUT_AT),
                }
            } else {
                HookReceipt::Delivered(f.value(field::PAYLOAD))
            }),
            EventKind::RunSuspended => {
                let reason = f.required_string(field::REASON)?;
                EventPayload::RunSuspended {
                    reason: SuspendReason::parse(&reason).ok_or_else(|| {
                        f.invalid(
                            field::REASON,
                            format!("`{reason}` is not sleep, hook, retry or shutdown"),
                        )
                    })?,
                    waits: f.optional(field::WAITS),
                    wake_at: f.optional(field::WAKE_AT),
                    error: f.optional(field::ERROR),
                }
            }
            EventKind::RunCompleted => EventPayload::RunCompleted {
                output: f.value(field::OUTPUT),
            },
            EventKind::RunFailed => EventPayload::RunFailed {
                error: f.required(field::ERROR)?,
            },
            EventKind::RunCanceled => EventPayload::RunCanceled {
                error: f.optional(field::ERROR),
            },
            EventKind::RunDeferred => EventPayload::RunDeferred {
                reason: f.string(field::REASON).unwrap_or_default(),
                strike: f.required(field::STRIKE)?,
                wake_at: f.required(field::WAKE_AT)?,
            },
            EventKind::RunRetried => EventPayload::RunRetried {
                by: f.string(field::BY).unwrap_or_default(),
                step: f.string(field::STEP),
                error: f.required(field::ERROR)?,
            },
            EventKind::RunPaused => EventPayload::RunPaused {
                by: f.string(field::BY).unwrap_or_default(),
                reason: {
                    let reason = f.string(field::REASON).unwrap_or_default();
                    PauseReason::parse(&reason).ok_or_else(|| {
                        f.invalid(field::REASON, format!("unknown pause reason `{reason}`"))
                    })?
                },
                step: f.string(field::STEP),
                error: f.optional(field::ERROR),
            },
            EventKind::RunUnpaused => EventPayload::RunUnpaused {
                by: f.string(field::BY).unwrap_or_default(),
                step: f.string(field::STEP),
            },
            EventKind::ForkDiverged => EventPayload::ForkDiverged {
                step: f.string(field::STEP).unwrap_or_default(),
                from_seq: f.required(field::FROM_SEQ)?,
            },
            EventKind::RunTagged => {
                let key = f.required_string(field::KEY)?;
                let type_name = f.string(field::TYPE);
                let value = f.value(field::VALUE);
                let value = crate::tags::TagValue::decode(type_name.as_deref(), &value)
                    .map_err(|problem| f.invalid(field::VALUE, problem))?;
                EventPayload::RunTagged { key, value }
            }
        })
    }
}

/// A payload's fields, taken out one by one.
struct Fields {
    kind: EventKind,
    map: Map<String, Value>,
}

impl Fields {
    /// A payload that is not an object reads as `{}` (every field missing).
    fn new(kind: EventKind, payload: Value) -> Self {
        let map = match payload {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        Fields { kind, map }
    }

    fn missing(&self, name: &'static str) -> PayloadError {
        PayloadError {
            kind: self.kind,
            field: name,
            problem: None,
        }
    }

    fn invalid(&self, name: &'static str, problem: impl fmt::Display) -> PayloadError {
        PayloadError {
            kind: self.kind,
            field: name,
            problem: Some(problem.to_string()),
        }
    }

    /// A user-data field, `null` when missing.
    fn value(&mut self, name: &str) -> Value {
        self.map.remove(name).unwrap_or(Value::Null)
    }

    /// A text field; `None` when missing or not a string.
    fn string(&mut self, name: &str) -> Option<String> {
        match self.map.remove(name) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    fn required_string(&mut self, name: &'static str) -> Result<String, PayloadError> {
        match self.map.remove(name) {
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(self.invalid(name, format!("{other} is not a string"))),
            None => Err(self.missing(name)),
        }
    }

    /// Whether the field is `true`.
    fn flag(&mut self, name: &str) -> bool {
        self.map.remove(name) == Some(Value::Bool(true))
    }

    /// A typed field; `None` when missing or when it does not parse.
    fn optional<T: DeserializeOwned>(&mut self, name: &str) -> Option<T> {
        self.map
            .remove(name)
            .and_then(|v| serde_json::from_value(v).ok())
    }

    fn required<T: DeserializeOwned>(&mut self, name: &'static str) -> Result<T, PayloadError> {
        let value = self.map.remove(name).ok_or_else(|| self.missing(name))?;
        serde_json::from_value(value).map_err(|e| self.invalid(name, e))
    }
}

/// A small typed value (an error, a time, a usage, waits) as JSON.
fn to_json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// A typed field read in place; `None` when missing or when it does not parse.
fn parse<T: DeserializeOwned>(value: Option<&Value>) -> Option<T> {
    value.and_then(|v| T::deserialize(v).ok())
}

/// One-field readers, by reference: the rules of [`EventPayload::decode`] for one field,
/// without decoding (or copying) the rest. Each returns `None` for events whose kind does
/// not carry the field.
impl NewEvent {
    /// A decoded copy of the payload.
    ///
    /// # Errors
    /// As [`EventPayload::decode`].
    pub fn decode_payload(&self) -> Result<EventPayload, PayloadError> {
        EventPayload::decode(self.kind, &self.payload)
    }

    fn field(&self, name: &str, kinds: &[EventKind]) -> Option<&Value> {
        if kinds.contains(&self.kind) {
            self.payload.get(name)
        } else {
            None
        }
    }

    /// `run_created`: the workflow's slug.
    pub fn workflow(&self) -> Option<&str> {
        self.field(field::WORKFLOW, &[EventKind::RunCreated])?
            .as_str()
    }

    /// `run_started`: the step-site fingerprint of the code that ran the attempt.
    pub fn fingerprint(&self) -> Option<&str> {
        self.field(field::FINGERPRINT, &[EventKind::RunStarted])?
            .as_str()
    }

    /// `step_started`: what the step calls; `step_completed`: what a recorded value
    /// (`ctx.now`, …) was recorded for.
    pub fn callee(&self) -> Option<&str> {
        self.field(
            field::CALLEE,
            &[EventKind::StepStarted, EventKind::StepCompleted],
        )?
        .as_str()
    }

    /// `step_completed`, `run_completed`: the output.
    pub fn output(&self) -> Option<&Value> {
        self.field(
            field::OUTPUT,
            &[EventKind::StepCompleted, EventKind::RunCompleted],
        )
    }

    /// `step_completed` of one model request: its token usage.
    pub fn usage(&self) -> Option<Usage> {
        parse(self.field(field::USAGE, &[EventKind::StepCompleted]))
    }

    /// `step_completed` of an LLM step or agent: the usage of all its requests.
    pub fn usage_total(&self) -> Option<Usage> {
        parse(self.field(field::USAGE_TOTAL, &[EventKind::StepCompleted]))
    }

    /// `hook_created`: the hash of the hook's token.
    pub fn token_hash(&self) -> Option<&str> {
        self.field(field::TOKEN_HASH, &[EventKind::HookCreated])?
            .as_str()
    }

    /// `hook_created`: the JSON Schema a payload must match.
    pub fn hook_schema(&self) -> Option<&Value> {
        self.field(field::SCHEMA, &[EventKind::HookCreated])
            .filter(|schema| !schema.is_null())
    }

    /// `hook_created`, `hook_received` (timed out): the hook's deadline.
    pub fn timeout_at(&self) -> Option<DateTime<Utc>> {
        parse(self.field(
            field::TIMEOUT_AT,
            &[EventKind::HookCreated, EventKind::HookReceived],
        ))
    }

    /// `hook_received`: whether the hook timed out (rather than received a payload).
    pub fn timed_out(&self) -> bool {
        self.field(field::TIMED_OUT, &[EventKind::HookReceived]) == Some(&Value::Bool(true))
    }

    /// `run_suspended` (sleep, hook): what the run waits for.
    pub fn waits(&self) -> Option<Vec<Wait>> {
        parse(self.field(field::WAITS, &[EventKind::RunSuspended]))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 123_456_789).single().unwrap()
    }

    fn round_trip(payload: EventPayload, expected: Value) {
        let kind = payload.kind();
        let encoded = payload.clone().encode();
        assert_eq!(encoded, expected, "{kind}");
        assert_eq!(EventPayload::decode(kind, &encoded), Ok(payload), "{kind}");
    }

    /// Every variant writes what `json!` wrote before payloads were typed.
    #[test]
    fn encodes_todays_json() {
        let error = ActionError::new("boom", "it broke", true);
        let run_error = WorkflowError::new("boom", "it broke", true);
        let usage = Usage {
            prompt_tokens: 1,
            completion_tokens: 2,
            total_tokens: 3,
            cached_tokens: 0,
        };
        let input = json!({ "i": 1, "nested": { "x": [1.5, "y"] } });
        round_trip(
            EventPayload::RunCreated {
                workflow: "wf".into(),
                input: input.clone(),
                trigger: Trigger::Cron,
                start_at: None,
                forked_from: None,
                traceparent: None,
                key: None,
                event: None,
                parent: None,
                continued_from: None,
                queue: None,
                identity: None,
            },
            json!({ "workflow": "wf", "input": input, "trigger": Trigger::Cron }),
        );
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        round_trip(
            EventPayload::RunCreated {
                workflow: "wf".into(),
                input: input.clone(),
                trigger: Trigger::Api,
                start_at: None,
                forked_from: None,
                traceparent: Some(traceparent.into()),
                key: None,
                event: None,
                parent: None,
                continued_from: None,
                queue: None,
                identity: None,
            },
            json!({ "workflow": "wf", "input": input, "trigger": Trigger::Api,
                    "traceparent": traceparent }),
        );
        round_trip(
            EventPayload::RunCreated {
                workflow: "wf".into(),
                input: input.clone(),
                trigger: Trigger::Api,
                start_at: Some(at(7)),
                forked_from: None,
                traceparent: None,
                key: None,
                event: None,
                parent: None,
                continued_from: None,
                queue: None,
                identity: None,
            },
            json!({ "workflow": "wf", "input": input, "trigger": Trigger::Api, "start_at": at(7) }),
        );
        round_trip(
            EventPayload::RunCreated {
                workflow: "wf".into(),
                input: input.clone(),
                trigger: Trigger::Event,
                start_at: None,
                forked_from: None,
                traceparent: None,
                event: Some(EventRef {
                    name: "order.paid".into(),
                    id: "e-1".into(),
                }),
                key: None,
                parent: None,
                continued_from: None,
                queue: None,
                identity: None,
            },
            json!({ "workflow": "wf", "input": input, "trigger": "event",
                    "event": { "name": "order.paid", "id": "e-1" } }),
        );
        let forked_from = ForkedFrom {
            run_id: super::super::RunId::from("r1"),
            step: Some("charge#0".into()),
            prefix_len: 5,
            input_changed: true,
            by: "cli:ada".into(),
        };
        round_trip(
            EventPayload::RunCreated {
                workflow: "wf".into(),
                input: input.clone(),
                trigger: Trigger::Fork,
                start_at: None,
                forked_from: Some(forked_from),
                traceparent: None,
                key: None,
                event: None,
                parent: None,
                continued_from: None,
                queue: None,
                identity: None,
            },
            json!({ "workflow": "wf", "input": input, "trigger": "fork", "forked_from": {
                "run_id": "r1", "step": "charge#0", "prefix_len": 5, "input_changed": true,
                "by": "cli:ada" } }),
        );
        round_trip(
            EventPayload::RunCreated {
                workflow: "wf".into(),
                input: input.clone(),
                trigger: Trigger::ContinueAsNew,
                start_at: None,
                forked_from: None,
                traceparent: None,
                parent: Some(ParentRun {
                    run_id: super::super::RunId::from("p1"),
                    step: "start:wf#0".into(),
                    started: Some(super::super::RunId::from("c1")),
                }),
                continued_from: Some(super::super::RunId::from("c1")),
                queue: None,
                identity: None,
                key: Some("k-1".into()),
                event: None,
            },
            json!({ "workflow": "wf", "input": input, "trigger": "continue_as_new", "key": "k-1",
                    "parent": { "run_id": "p1", "step": "start:wf#0", "started": "c1" },
                    "continued_from": "c1" }),
        );
        round_trip(
            EventPayload::ForkDiverged {
                step: "charge#0".into(),
                from_seq: 3,
            },
            json!({ "step": "charge#0", "from_seq": 3 }),
        );
        round_trip(
            EventPayload::RunStarted {
                fingerprint: Some("f00".into()),
            },
            json!({ "fingerprint": "f00" }),
        );
        round_trip(EventPayload::RunStarted { fingerprint: None }, json!({}));
        for kind in [crate::StepKind::Action, crate::StepKind::Workflow] {
            let name = serde_json::to_value(kind).unwrap();
            round_trip(
                EventPayload::StepStarted {
                    callee: "slug".into(),
                    kind: name.as_str().unwrap().to_owned(),
                    input: input.clone(),
                    digest: "0011".into(),
                },
                json!({ "callee": "slug", "kind": kind, "input": input, "digest": "0011" }),
            );
        }
        let completed = |output: Value,
                         callee: Option<&str>,
                         usage: Option<Usage>,
                         usage_total: Option<Usage>,
                         seeded: bool| EventPayload::StepCompleted {
            output,
            callee: callee.map(str::to_owned),
            usage,
            usage_total,
            seeded,
        };
        round_trip(
            completed(input.clone(), None, None, None, false),
            json!({ "output": input }),
        );
        round_trip(
            completed(json!(at(5)), Some("ctx.now"), None, None, false),
            json!({ "callee": "ctx.now", "output": at(5) }),
        );
        round_trip(
            completed(json!("reply"), None, Some(usage), None, false),
            json!({ "output": "reply", "usage": usage }),
        );
        round_trip(
            completed(json!("reply"), None, None, Some(usage), false),
            json!({ "output": "reply", "usage_total": usage }),
        );
        round_trip(
            completed(json!(7), None, None, None, true),
            json!({ "output": 7, "seeded": true }),
        );
        round_trip(
            EventPayload::StepRetrying {
                error: error.clone(),
                delay_ms: 1500,
            },
            json!({ "error": error, "delay_ms": 1500u64 }),
        );
        round_trip(
            EventPayload::StepFailed {
                error: error.clone().with_details(json!({ "why": [1] })),
            },
            json!({ "error": error.clone().with_details(json!({ "why": [1] })) }),
        );
        round_trip(
            EventPayload::SleepStarted { wake_at: at(9) },
            json!({ "wake_at": at(9) }),
        );
        round_trip(EventPayload::SleepCompleted, json!({}));
        let schema = json!({ "type": "object" });
        round_trip(
            EventPayload::HookCreated {
                token_hash: "ab".into(),
                schema: schema.clone(),
                timeout_at: None,
            },
            json!({ "token_hash": "ab", "schema": schema }),
        );
        round_trip(
            EventPayload::HookCreated {
                token_hash: "ab".into(),
                schema: schema.clone(),
                timeout_at: Some(at(11)),
            },
            json!({ "token_hash": "ab", "schema": schema, "timeout_at": at(11) }),
        );
        round_trip(
            EventPayload::HookReceived(HookReceipt::Delivered(json!({ "ok": true }))),
            json!({ "payload": { "ok": true } }),
        );
        round_trip(
            EventPayload::HookReceived(HookReceipt::TimedOut {
                timeout_at: Some(at(11)),
            }),
            json!({ "timed_out": true, "timeout_at": at(11) }),
        );
        let waits = vec![
            Wait::Sleep {
                id: "sleep#0".into(),
                until: at(3),
            },
            Wait::Hook {
                id: "hook#0".into(),
                timeout_at: None,
            },
        ];
        round_trip(
            EventPayload::RunSuspended {
                reason: SuspendReason::Hook,
                waits: Some(waits.clone()),
                wake_at: None,
                error: None,
            },
            json!({ "reason": "hook", "waits": waits }),
        );
        round_trip(
            EventPayload::RunSuspended {
                reason: SuspendReason::Retry,
                waits: None,
                wake_at: Some(at(4)),
                error: Some(run_error.clone()),
            },
            json!({ "reason": "retry", "error": run_error, "wake_at": at(4) }),
        );
        round_trip(
            EventPayload::RunSuspended {
                reason: SuspendReason::Shutdown,
                waits: None,
                wake_at: None,
                error: None,
            },
            json!({ "reason": "shutdown" }),
        );
        round_trip(
            EventPayload::RunCompleted {
                output: input.clone(),
            },
            json!({ "output": input }),
        );
        round_trip(
            EventPayload::RunFailed {
                error: run_error.clone(),
            },
            json!({ "error": run_error }),
        );
        round_trip(
            EventPayload::RunCanceled {
                error: Some(run_error.clone()),
            },
            json!({ "error": run_error }),
        );
        round_trip(EventPayload::RunCanceled { error: None }, json!({}));
        round_trip(
            EventPayload::RunDeferred {
                reason: "no workflow `gone`".into(),
                strike: 2,
                wake_at: at(9),
            },
            json!({ "reason": "no workflow `gone`", "strike": 2, "wake_at": at(9) }),
        );
        round_trip(
            EventPayload::RunRetried {
                by: "cli:ada".into(),
                step: Some("charge#0".into()),
                error: run_error.clone(),
            },
            json!({ "by": "cli:ada", "step": "charge#0", "error": run_error }),
        );
    }

    /// Missing optional fields default; a missing or malformed required one is named.
    #[test]
    fn decodes_as_tolerantly_as_the_readers_did() {
        let decode = |kind, payload: Value| EventPayload::decode(kind, &payload);
        assert_eq!(
            decode(EventKind::StepStarted, json!({ "callee": "x" })),
            Ok(EventPayload::StepStarted {
                callee: "x".into(),
                kind: String::new(),
                input: Value::Null,
                digest: String::new(),
            })
        );
        let error = decode(EventKind::StepStarted, json!({ "digest": "00" })).unwrap_err();
        assert_eq!(
            (error.kind(), error.field()),
            (EventKind::StepStarted, "callee")
        );
        assert_eq!(
            error.to_string(),
            "the step_started payload has no `callee`"
        );
        let error = decode(EventKind::StepFailed, json!({ "error": "nope" })).unwrap_err();
        assert_eq!(error.field(), "error");
        assert!(
            error
                .to_string()
                .starts_with("the step_failed payload has an invalid `error`: "),
            "{error}"
        );
        assert_eq!(
            decode(EventKind::SleepStarted, json!({}))
                .unwrap_err()
                .field(),
            "wake_at"
        );
        // Not an object: every field missing.
        assert_eq!(
            decode(EventKind::StepCompleted, json!(null)),
            Ok(EventPayload::StepCompleted {
                output: Value::Null,
                callee: None,
                usage: None,
                usage_total: None,
                seeded: false,
            })
        );
        // A malformed optional field reads as absent.
        assert_eq!(
            decode(
                EventKind::HookCreated,
                json!({ "token_hash": "ab", "schema": true, "timeout_at": "soon" })
            ),
            Ok(EventPayload::HookCreated {
                token_hash: "ab".into(),
                schema: json!(true),
                timeout_at: None,
            })
        );
        assert_eq!(
            decode(EventKind::HookReceived, json!({ "timed_out": true })),
            Ok(EventPayload::HookReceived(HookReceipt::TimedOut {
                timeout_at: None
            }))
        );
        assert_eq!(
            decode(EventKind::RunSuspended, json!({ "reason": "nap" }))
                .unwrap_err()
                .field(),
            "reason"
        );
    }

    #[test]
    fn accessors_read_one_field_of_the_right_kind() {
        let event = |kind, payload| NewEvent {
            kind,
            correlation_id: None,
            attempt: 1,
            at: at(0),
            payload,
        };
        let created = event(
            EventKind::HookCreated,
            json!({ "token_hash": "ab", "schema": null, "timeout_at": at(2) }),
        );
        assert_eq!(created.token_hash(), Some("ab"));
        assert_eq!(created.hook_schema(), None);
        assert_eq!(created.timeout_at(), Some(at(2)));
        assert_eq!(created.output(), None);
        let completed = event(
            EventKind::StepCompleted,
            json!({ "output": 1, "callee": "ctx.now", "usage": { "bad": 1 } }),
        );
        assert_eq!(completed.output(), Some(&json!(1)));
        assert_eq!(completed.callee(), Some("ctx.now"));
        assert_eq!(completed.usage(), None);
        assert_eq!(completed.token_hash(), None);
        let received = event(EventKind::HookReceived, json!({ "timed_out": true }));
        assert!(received.timed_out());
    }
}
