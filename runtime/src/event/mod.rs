//! The event log's vocabulary: [`RunId`], [`RunStatus`], [`EventKind`], [`Event`], the
//! typed payloads of events ([`EventPayload`]) and the [`RunRecord`] a store keeps per run
//! (DESIGN "Event log").

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

mod payload;

pub use payload::ParentRun;
pub(crate) use payload::recorded_identity;
pub use payload::{
    EventPayload, EventRef, ForkedFrom, HookReceipt, PauseReason, PayloadError, SuspendReason,
    field,
};

/// A run's id: a UUID v7 (time-ordered), printed in its hyphenated form.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(pub String);

impl RunId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        RunId(uuid::Uuid::now_v7().to_string())
    }

    /// The id of the run that run `from` creates at step `step` (a child run, the run it
    /// continues as): a UUID version 8 (RFC 9562 §5.8) whose custom bits are the first
    /// 122 bits of SHA-256 of `<from>/<step>`. The same on every execution of `from`, so a
    /// re-executed start (after a crash, in a crash check) finds the run it created before;
    /// not time-ordered, unlike [`RunId::new`].
    pub fn derived(from: &RunId, step: &str) -> Self {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(format!("{from}/{step}").as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        RunId(
            uuid::Builder::from_custom_bytes(bytes)
                .into_uuid()
                .to_string(),
        )
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for RunId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for RunId {
    fn from(id: &str) -> Self {
        RunId(id.to_owned())
    }
}

/// Where a run is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RunStatus {
    /// Created, waiting for an executor (also after a run-level retry is scheduled).
    Queued,
    /// An executor is running its body.
    Running,
    /// Suspended in a durable sleep until `wake_at`.
    Sleeping,
    /// Suspended until a hook receives its payload.
    Waiting,
    /// Finished with an output.
    Completed,
    /// Finished with an error.
    Failed,
    /// Canceled.
    Canceled,
    /// Paused by an operator (`runs pause`) or parked when its attempts ran out
    /// (`on_max_attempts = "pause"`): never claimed until `runs unpause`, which queues it
    /// again. Not an end: its hooks still take payloads, and it can be canceled.
    Paused,
}

impl RunStatus {
    /// All statuses, in life order.
    pub const ALL: [RunStatus; 8] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Sleeping,
        RunStatus::Waiting,
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Canceled,
        RunStatus::Paused,
    ];

    /// The status as written in the log and on the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Sleeping => "sleeping",
            RunStatus::Waiting => "waiting",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Canceled => "canceled",
            RunStatus::Paused => "paused",
        }
    }

    /// Whether the run has ended (`completed`, `failed` or `canceled`).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Canceled
        )
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<_> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
                format!(
                    "unknown run status `{s}`; expected one of {}",
                    all.join(", ")
                )
            })
    }
}

/// What an event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// The run was created with its input. Payload: [`EventPayload::RunCreated`].
    RunCreated,
    /// An attempt of the body started. Payload: [`EventPayload::RunStarted`].
    RunStarted,
    /// A step started live. Payload: [`EventPayload::StepStarted`].
    StepStarted,
    /// A step finished. Payload: [`EventPayload::StepCompleted`].
    StepCompleted,
    /// An attempt of a step failed and will be retried. Payload: [`EventPayload::StepRetrying`].
    StepRetrying,
    /// A step failed for good. Payload: [`EventPayload::StepFailed`].
    StepFailed,
    /// A durable sleep began. Payload: [`EventPayload::SleepStarted`].
    SleepStarted,
    /// A durable sleep ended. Payload: [`EventPayload::SleepCompleted`].
    SleepCompleted,
    /// A hook was created. Payload: [`EventPayload::HookCreated`].
    HookCreated,
    /// A hook received its payload or timed out. Payload: [`EventPayload::HookReceived`].
    HookReceived,
    /// The run stopped until something happens. Payload: [`EventPayload::RunSuspended`].
    RunSuspended,
    /// The run finished. Payload: [`EventPayload::RunCompleted`].
    RunCompleted,
    /// The run failed for good. Payload: [`EventPayload::RunFailed`].
    RunFailed,
    /// The run was canceled. Payload: [`EventPayload::RunCanceled`].
    RunCanceled,
    /// This binary could not execute the run (an unknown workflow, a row that does not
    /// decode); it is put off until `wake_at`. Payload: [`EventPayload::RunDeferred`].
    RunDeferred,
    /// An operator asked to retry the failed run on the current code: it is queued again
    /// with a new attempt, and the step whose failure failed it runs again. Payload:
    /// [`EventPayload::RunRetried`].
    RunRetried,
    /// The run was paused (by an operator, or parked when its attempts ran out). Payload:
    /// [`EventPayload::RunPaused`].
    RunPaused,
    /// A paused run was queued again. Payload: [`EventPayload::RunUnpaused`].
    RunUnpaused,
    /// A forked run whose input changed reached a copied step that no longer matches the
    /// code's call (another callee or input): from this step on, the copied prefix no longer
    /// answers and the steps run live. Payload: [`EventPayload::ForkDiverged`].
    ForkDiverged,
    /// The body tagged its run with a searchable key and value (`ctx.tag`); a later tag of
    /// the key replaces the value. Payload: [`EventPayload::RunTagged`].
    RunTagged,
}

impl EventKind {
    /// The kind as written in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::RunCreated => "run_created",
            EventKind::RunStarted => "run_started",
            EventKind::StepStarted => "step_started",
            EventKind::StepCompleted => "step_completed",
            EventKind::StepRetrying => "step_retrying",
            EventKind::StepFailed => "step_failed",
            EventKind::SleepStarted => "sleep_started",
            EventKind::SleepCompleted => "sleep_completed",
            EventKind::HookCreated => "hook_created",
            EventKind::HookReceived => "hook_received",
            EventKind::RunSuspended => "run_suspended",
            EventKind::RunCompleted => "run_completed",
            EventKind::RunFailed => "run_failed",
            EventKind::RunCanceled => "run_canceled",
            EventKind::RunDeferred => "run_deferred",
            EventKind::RunRetried => "run_retried",
            EventKind::RunPaused => "run_paused",
            EventKind::RunUnpaused => "run_unpaused",
            EventKind::ForkDiverged => "fork_diverged",
            EventKind::RunTagged => "run_tagged",
        }
    }

    /// Parses [`EventKind::as_str`]'s output.
    pub fn parse(s: &str) -> Option<EventKind> {
        use EventKind::*;
        [
            RunCreated,
            RunStarted,
            StepStarted,
            StepCompleted,
            StepRetrying,
            StepFailed,
            SleepStarted,
            SleepCompleted,
            HookCreated,
            HookReceived,
            RunSuspended,
            RunCompleted,
            RunFailed,
            RunCanceled,
            RunDeferred,
            RunRetried,
            RunPaused,
            RunUnpaused,
            ForkDiverged,
            RunTagged,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == s)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event about to be appended (the store assigns nothing: the writer numbers events).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// What happened.
    pub kind: EventKind,
    /// The step's correlation id, for step, sleep and hook events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The run attempt (run events) or step attempt (step events), from 1.
    pub attempt: u32,
    /// When it happened (UTC).
    pub at: DateTime<Utc>,
    /// The JSON payload (input, output, error, …): an encoded [`EventPayload`].
    pub payload: serde_json::Value,
}

impl NewEvent {
    /// An event of `payload`'s kind, its payload encoded (inlined: see
    /// [`EventPayload::encode`]).
    #[inline(always)]
    pub fn new(
        correlation_id: Option<String>,
        attempt: u32,
        at: DateTime<Utc>,
        payload: EventPayload,
    ) -> NewEvent {
        NewEvent {
            kind: payload.kind(),
            correlation_id,
            attempt,
            at,
            payload: payload.encode(),
        }
    }
}

/// An event as stored: a [`NewEvent`] with its run and sequence number.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The run.
    pub run_id: RunId,
    /// Position in the run's log, from 0, without gaps.
    pub seq: u64,
    /// The event itself.
    #[serde(flatten)]
    pub event: NewEvent,
}

/// Who or what started a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Trigger {
    /// `POST /workflows/{slug}`.
    Api,
    /// The command line.
    Cli,
    /// A cron schedule.
    Cron,
    /// A webhook source.
    Webhook,
    /// A poll source.
    Poll,
    /// A run-level retry of an earlier attempt.
    Retry,
    /// Code calling [`crate::Engine::start`] directly (tests, embedding apps).
    Code,
    /// The failure of another run, whose workflow names this one as its `on_failure`
    /// handler (the input is a [`crate::FailedRun`]).
    OnFailure,
    /// A fork or restart of another run ([`crate::Engine::fork_run`]); its `run_created`
    /// names the original ([`ForkedFrom`]).
    Fork,
    /// An emitted event ([`crate::Engine::emit`], `POST /events`) started it: its workflow
    /// is declared `#[workflow(on_event = "<name>")]` and its input is the event's data.
    Event,
    /// A child run started by its parent (`wf.start(input)` in a workflow body); its
    /// `run_created` names the parent ([`ParentRun`]).
    Child,
    /// A run started by `ctx.continue_as_new(input)` of the run it continues (its
    /// `run_created` names it in `continued_from`).
    ContinueAsNew,
}

impl Trigger {
    /// The trigger as written in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Api => "api",
            Trigger::Cli => "cli",
            Trigger::Cron => "cron",
            Trigger::Webhook => "webhook",
            Trigger::Poll => "poll",
            Trigger::Retry => "retry",
            Trigger::Code => "code",
            Trigger::OnFailure => "on_failure",
            Trigger::Fork => "fork",
            Trigger::Event => "event",
            Trigger::Child => "child",
            Trigger::ContinueAsNew => "continue_as_new",
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a store keeps about a run besides its events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run's id.
    pub id: RunId,
    /// The workflow's slug.
    pub workflow: String,
    /// Current status.
    pub status: RunStatus,
    /// The validated input.
    pub input: serde_json::Value,
    /// The output, once `completed`.
    pub output: Option<serde_json::Value>,
    /// The error, once `failed` (a serialized [`crate::WorkflowError`]).
    pub error: Option<serde_json::Value>,
    /// Current run attempt, from 1 (0 before the first attempt started).
    pub attempt: u32,
    /// What started the run.
    pub trigger: Trigger,
    /// When the run was created.
    pub created_at: DateTime<Utc>,
    /// Last status change.
    pub updated_at: DateTime<Utc>,
    /// For `sleeping` runs and scheduled retries: when to continue.
    pub wake_at: Option<DateTime<Utc>>,
    /// The sequence number the next event will get (= number of events).
    pub next_seq: u64,
    /// The run's queue, key and priority, and when it was admitted (see
    /// [`crate::queue`]); `None` for a run in no queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<RunQueue>,
}

/// A run's place in a queue: which queue, under which key, at which priority. Set at
/// creation, recorded in `run_created`, kept on the run's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunQueue {
    /// The queue's name.
    pub name: String,
    /// The run's key in the queue (per-key concurrency, per-key rate limit, debounce),
    /// if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Higher is admitted first; equal priorities are admitted in order of due time,
    /// then creation (FIFO). Default 0.
    #[serde(default)]
    pub priority: i32,
    /// When a worker first claimed the run (it then holds its place until it ends);
    /// `None` while it waits for admission. Kept by the store, not in `run_created`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub admitted_at: Option<DateTime<Utc>>,
}

/// A change of a run's record, written atomically with the events of an append.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunUpdate {
    /// New status.
    pub status: Option<RunStatus>,
    /// New attempt number.
    pub attempt: Option<u32>,
    /// Output (set when completing).
    pub output: Option<serde_json::Value>,
    /// Error (set when failing). JSON `null` clears it (a retried run): every store
    /// reads a null error back as `None`.
    pub error: Option<serde_json::Value>,
    /// New wake time; `Some(None)` clears it.
    pub wake_at: Option<Option<DateTime<Utc>>>,
    /// With `status: Some(Waiting)`: the highest inbox `seq` the execution has read. If the
    /// run's inbox holds a later message (posted while the run executed), the store makes
    /// the run `queued` instead of `waiting`, in the same transaction, so no message posted
    /// between a receive finding nothing and the run suspending is missed.
    pub inbox_seen: Option<u64>,
}

/// Filters for listing runs. Empty means all, newest first (ties in creation time by id,
/// highest first: a stable order, which [`RunFilter::cursor`] pages through).
///
/// Conditions combine with AND. Time bounds are half-open: `*_after` is inclusive (at or
/// after), `*_before` exclusive (strictly before).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunFilter {
    /// Only runs in this status.
    pub status: Option<RunStatus>,
    /// Only runs of this workflow slug.
    pub workflow: Option<String>,
    /// Only runs in this flow-control queue ([`crate::queue`]): runs whose workflow or
    /// start named it, waiting for admission, admitted or ended. Runs in no queue never
    /// match (the implicit `default` queue of worker routing is not a name here).
    pub queue: Option<String>,
    /// At most this many (newest first). `None`: no limit.
    pub limit: Option<usize>,
    /// Only runs whose tags (`ctx.tag`) match every one of these; see
    /// [`crate::tags::TagFilter`]. A malformed filter (bad key, a range on a string) makes
    /// the listing fail with [`crate::EngineError::Serde`] naming it.
    pub tags: Vec<crate::tags::TagFilter>,
    /// Only runs created at or after this time.
    pub created_after: Option<DateTime<Utc>>,
    /// Only runs created strictly before this time.
    pub created_before: Option<DateTime<Utc>>,
    /// Only runs whose record last changed at or after this time.
    pub updated_after: Option<DateTime<Utc>>,
    /// Only runs whose record last changed strictly before this time.
    pub updated_before: Option<DateTime<Utc>>,
    /// Continue after this position: the `next_cursor` of the previous page
    /// ([`crate::store::RunListing::next_cursor`]), opaque. Pages never repeat or skip a
    /// run, also while new runs are created (those are newer than the first page and
    /// appear in a new listing, not in later pages). A cursor that is not one a listing
    /// returned makes the listing fail with [`crate::EngineError::Serde`].
    pub cursor: Option<String>,
    // Business keys (issue 14) will add their filter here (`key: Option<String>`).
}

impl RunFilter {
    /// Checks the tag filters and the cursor, and returns the decoded cursor.
    ///
    /// # Errors
    /// [`crate::EngineError::Serde`] naming the malformed filter or cursor.
    pub fn checked_cursor(&self) -> Result<Option<crate::tags::RunCursor>, crate::EngineError> {
        for tag in &self.tags {
            tag.check().map_err(crate::EngineError::Serde)?;
        }
        self.cursor
            .as_deref()
            .map(crate::tags::RunCursor::decode)
            .transpose()
            .map_err(crate::EngineError::Serde)
    }

    /// Whether `run` (with its `tags`) passes every condition except `limit` and the
    /// cursor (what the memory store evaluates).
    pub(crate) fn admits(
        &self,
        run: &RunRecord,
        tags: &std::collections::BTreeMap<String, crate::tags::TagValue>,
    ) -> bool {
        self.status.is_none_or(|s| run.status == s)
            && self.workflow.as_ref().is_none_or(|w| &run.workflow == w)
            && self
                .queue
                .as_ref()
                .is_none_or(|q| run.queue.as_ref().is_some_and(|placed| &placed.name == q))
            && self.created_after.is_none_or(|t| run.created_at >= t)
            && self.created_before.is_none_or(|t| run.created_at < t)
            && self.updated_after.is_none_or(|t| run.updated_at >= t)
            && self.updated_before.is_none_or(|t| run.updated_at < t)
            && self.tags.iter().all(|f| f.matches(tags))
    }
}
