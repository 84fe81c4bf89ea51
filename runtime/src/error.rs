//! Errors: [`ActionError`] (a step failed), [`WorkflowError`] (a run failed),
//! [`NonDeterminism`] (the code no longer matches the log), [`SchemaViolation`]
//! (a value does not match its JSON Schema) and [`EngineError`] (the engine or store failed).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Well-known error kinds used by the engine. User code may use any other kind.
pub mod kinds {
    /// The recorded history and the code disagree; never retried.
    pub const NON_DETERMINISM: &str = "non_determinism";
    /// A value violated its JSON Schema; never retried.
    pub const SCHEMA: &str = "schema";
    /// An attempt exceeded its timeout; retryable.
    pub const TIMEOUT: &str = "timeout";
    /// The step or run panicked; retryable.
    pub const PANIC: &str = "panic";
    /// A value could not be serialized or deserialized; never retried.
    pub const SERDE: &str = "serde";
    /// The store failed while recording; the run stops and is resumed later.
    pub const STORE: &str = "store";
    /// The run was canceled (`runs cancel`, `POST /runs/{id}/cancel`).
    pub const CANCELED: &str = "canceled";
    /// The default kind of an error converted from a `std::error::Error`.
    pub const ERROR: &str = "error";
    /// A permanent failure reported by user code.
    pub const PERMANENT: &str = "permanent";
    /// A transient failure reported by user code.
    pub const TRANSIENT: &str = "transient";
    /// A step was called in a workflow body outside the recording context (a helper fn
    /// the macro did not rewrite); the run fails, naming the step and the fix.
    pub const UNRECORDED_STEP: &str = "unrecorded_step";
    /// The binary could not execute the run (its workflow is not registered, or its rows
    /// do not decode) in as many attempts as `EngineBuilder::unexecutable_policy` allows;
    /// the run is parked as `failed`. The message names the reason.
    pub const UNEXECUTABLE: &str = "unexecutable";
    /// A payload (a step's input or output, a workflow's output) is larger than
    /// `EngineBuilder::max_payload_bytes` allows; never retried. The message names the
    /// step, the size and the limit; nothing oversized was written.
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    /// A child run (`wf.start(input)`) the body awaited failed; `details` holds the
    /// child's error. Never retried (the child had its own retries).
    pub const CHILD_FAILED: &str = "child_failed";
    /// `.start(..)` on something that is not a `#[workflow]`; never retried.
    pub const NOT_A_WORKFLOW: &str = "not_a_workflow";
    /// A run's event log would exceed its history cap (`max_history_events`); never
    /// retried: loop with `ctx.continue_as_new(..)` instead.
    pub const HISTORY_TOO_LARGE: &str = "history_too_large";
    /// The error a body gets back from `ctx.continue_as_new(..)`: the run ends `completed`
    /// with output `{"continued_as": <new run id>}` whatever the body does with it.
    pub const CONTINUED_AS_NEW: &str = "continued_as_new";
    /// An inline step (`ctx.run(name, ..)`) was given a name that cannot be part of a
    /// correlation id; never retried, nothing runs. The message names the rule.
    pub const INVALID_STEP_NAME: &str = "invalid_step_name";
}

/// The error of a step: returned by an action body, or by `.run(..)` in a workflow
/// when the step failed after its retries (or failed on replay the same way).
///
/// It serializes to the event log as `{"kind", "message", "retryable", "details"}`.
/// Any `std::error::Error` converts into it with `?` (kind `"error"`, retryable).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActionError {
    /// A short machine-readable kind, e.g. `"timeout"`, `"card_declined"`.
    pub kind: String,
    /// A message for people.
    pub message: String,
    /// Whether a retry may succeed. Retries also stop when the attempt budget is spent.
    pub retryable: bool,
    /// Optional structured details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

impl ActionError {
    /// A failure worth retrying (network blip, rate limit), kind `"transient"`.
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(kinds::TRANSIENT, message, true)
    }

    /// A failure no retry will fix (bad request, declined card), kind `"permanent"`.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(kinds::PERMANENT, message, false)
    }

    /// An error of the given kind.
    pub fn new(kind: impl Into<String>, message: impl Into<String>, retryable: bool) -> Self {
        Self {
            kind: kind.into(),
            message: message.into(),
            retryable,
            details: None,
        }
    }

    /// Attaches structured details.
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    /// Whether this is the engine's non-determinism error.
    pub fn is_non_determinism(&self) -> bool {
        self.kind == kinds::NON_DETERMINISM
    }

    /// Whether this is a timeout (kind `timeout`): a `.timeout(d)` in a workflow body that
    /// expired, a hook's deadline, an action attempt over its `timeout` option.
    ///
    /// ```ignore
    /// match ship.run(order).timeout("1h").await {
    ///     Ok(receipt) => { /* … */ }
    ///     Err(e) if e.is_timeout() => { /* escalate */ }
    ///     Err(e) => return Err(e.into()),
    /// }
    /// ```
    pub fn is_timeout(&self) -> bool {
        self.kind == kinds::TIMEOUT
    }
}

impl fmt::Display for ActionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl<E: std::error::Error> From<E> for ActionError {
    fn from(error: E) -> Self {
        Self::new(kinds::ERROR, error.to_string(), true)
    }
}

/// Why a run failed: returned by a workflow body (any `std::error::Error` and any
/// [`ActionError`] convert into it with `?`) and reported by the engine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkflowError {
    /// A short machine-readable kind.
    pub kind: String,
    /// A message for people.
    pub message: String,
    /// Whether a run-level retry (up to `max_attempts`) may succeed.
    pub retryable: bool,
    /// The correlation id of the step the error came from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Optional structured details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

impl WorkflowError {
    /// An error of the given kind.
    pub fn new(kind: impl Into<String>, message: impl Into<String>, retryable: bool) -> Self {
        Self {
            kind: kind.into(),
            message: message.into(),
            retryable,
            step: None,
            details: None,
        }
    }

    /// A failure that a run-level retry will not fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(kinds::PERMANENT, message, false)
    }

    /// Whether this is the engine's non-determinism error.
    pub fn is_non_determinism(&self) -> bool {
        self.kind == kinds::NON_DETERMINISM
    }
}

impl fmt::Display for WorkflowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.step {
            Some(step) => write!(f, "{} (step {step}): {}", self.kind, self.message),
            None => write!(f, "{}: {}", self.kind, self.message),
        }
    }
}

impl<E: std::error::Error> From<E> for WorkflowError {
    fn from(error: E) -> Self {
        Self::new(kinds::ERROR, error.to_string(), true)
    }
}

impl From<ActionError> for WorkflowError {
    fn from(error: ActionError) -> Self {
        // A step that failed after its own retries is not retried again by default:
        // replay would return the same recorded failure.
        Self {
            kind: error.kind,
            message: error.message,
            retryable: false,
            step: None,
            details: error.details,
        }
    }
}

impl From<WorkflowError> for ActionError {
    fn from(error: WorkflowError) -> Self {
        Self {
            kind: error.kind,
            message: error.message,
            retryable: false,
            details: error.details,
        }
    }
}

/// The log and the code disagree about a step (DESIGN "Replay and determinism").
///
/// Names the correlation id, what the log recorded and what the code asked for.
///
/// Like [`ActionError`], it does not implement `std::error::Error`, so that it can
/// convert into the step and run errors with `?`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NonDeterminism {
    /// The correlation id.
    pub id: String,
    /// What the log holds, e.g. ``"`post-brief` with input digest 3f2a…"``.
    pub recorded: String,
    /// What the code asked for.
    pub requested: String,
    /// Why the two differ, as far as the run's recorded step-site fingerprints tell.
    #[serde(default)]
    pub cause: NonDeterminismCause,
    /// Where the recorded and requested inputs differ: at most
    /// [`NonDeterminism::MAX_DIFFERENCES`] entries, values shortened to
    /// [`NonDeterminism::MAX_VALUE_CHARS`] characters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<Difference>,
    /// The code asked for a step after the last one the log holds, in a replay-only check:
    /// where an unfinished run had got to, not a mismatch.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub end_of_history: bool,
}

/// Why a [`NonDeterminism`] happened, judged from the fingerprint of the workflow's
/// step-site manifest that every execution records in its `run_started` event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum NonDeterminismCause {
    /// The step sites (or the crate version) changed since the run was recorded: a deploy
    /// changed the workflow while the run was in flight.
    CodeChanged,
    /// The same step sites recorded the run: the body took another path with the same
    /// code (HashMap iteration order, a race, an environment or clock read, a value not
    /// taken through `ctx`).
    SameCode,
    /// The run was recorded before fingerprints were (or the check could not tell).
    #[default]
    Unknown,
}

/// One place where a recorded and a requested value differ.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    /// JSON pointer into the input (`""` for the whole value).
    pub pointer: String,
    /// The recorded value there (JSON text, shortened), or `(absent)`.
    pub recorded: String,
    /// The requested value there (JSON text, shortened), or `(absent)`.
    pub requested: String,
}

impl NonDeterminism {
    /// How many differences a report lists.
    pub const MAX_DIFFERENCES: usize = 8;
    /// How long a value in a [`Difference`] may be.
    pub const MAX_VALUE_CHARS: usize = 120;

    /// A report naming `id`, what the log holds and what the code asked for.
    pub fn new(
        id: impl Into<String>,
        recorded: impl Into<String>,
        requested: impl Into<String>,
    ) -> Self {
        NonDeterminism {
            id: id.into(),
            recorded: recorded.into(),
            requested: requested.into(),
            cause: NonDeterminismCause::Unknown,
            differences: Vec::new(),
            end_of_history: false,
        }
    }

    /// With the cause set.
    pub fn with_cause(mut self, cause: NonDeterminismCause) -> Self {
        self.cause = cause;
        self
    }

    /// With the differences between the recorded and the requested value listed.
    pub fn with_values(
        mut self,
        recorded: &serde_json::Value,
        requested: &serde_json::Value,
    ) -> Self {
        self.differences = json_differences(recorded, requested);
        self
    }

    /// Marked as the end of a recorded history reached by a replay-only check.
    pub fn at_end_of_history(mut self) -> Self {
        self.end_of_history = true;
        self
    }
}

impl fmt::Display for NonDeterminism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "non-determinism at step `{}`: the log recorded {}, but the code asked for {}.",
            self.id, self.recorded, self.requested
        )?;
        for difference in &self.differences {
            write!(
                f,
                " At `{}` the log has {} and the code {}.",
                if difference.pointer.is_empty() {
                    "/"
                } else {
                    &difference.pointer
                },
                difference.recorded,
                difference.requested
            )?;
        }
        match self.cause {
            NonDeterminismCause::CodeChanged => write!(
                f,
                " The workflow's step sites changed since this run was recorded: run the old \
                 code for it, guard the change with `ctx.patched(\"…\")`, or pin the old id \
                 with #[step(id = \"…\")]"
            ),
            NonDeterminismCause::SameCode => write!(
                f,
                " The step sites did not change since this run was recorded (same call sites, \
                 lines and reprise version), so the body is most likely non-deterministic: it \
                 took another path or computed another input from the same history. Look for \
                 HashMap/HashSet iteration order (use BTreeMap or sort), a race that is not \
                 recorded, and clock, random or environment reads outside \
                 `ctx.now()`/`ctx.random()`/an action; pinning ids cannot help. (An edit that \
                 changed only an argument on the same line also shows this way.)"
            ),
            NonDeterminismCause::Unknown => write!(
                f,
                " Either the workflow code changed while this run was in flight (run the old \
                 code for it, or guard the change with `ctx.patched(\"…\")`), or the body is \
                 non-deterministic (HashMap order, an unrecorded race, clock or environment \
                 reads)"
            ),
        }
    }
}

/// Where `recorded` and `requested` differ, by JSON pointer, in document order; at most
/// [`NonDeterminism::MAX_DIFFERENCES`] entries.
fn json_differences(
    recorded: &serde_json::Value,
    requested: &serde_json::Value,
) -> Vec<Difference> {
    fn shorten(value: Option<&serde_json::Value>) -> String {
        let Some(value) = value else {
            return "(absent)".to_owned();
        };
        let text = value.to_string();
        if text.chars().count() <= NonDeterminism::MAX_VALUE_CHARS {
            return text;
        }
        let cut: String = text.chars().take(NonDeterminism::MAX_VALUE_CHARS).collect();
        format!("{cut}…")
    }
    fn escape(key: &str) -> String {
        key.replace('~', "~0").replace('/', "~1")
    }
    fn walk(
        pointer: String,
        recorded: Option<&serde_json::Value>,
        requested: Option<&serde_json::Value>,
        out: &mut Vec<Difference>,
    ) {
        use serde_json::Value;
        if out.len() >= NonDeterminism::MAX_DIFFERENCES || recorded == requested {
            return;
        }
        match (recorded, requested) {
            (Some(Value::Object(a)), Some(Value::Object(b))) => {
                let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
                keys.sort();
                keys.dedup();
                for key in keys {
                    walk(
                        format!("{pointer}/{}", escape(key)),
                        a.get(key),
                        b.get(key),
                        out,
                    );
                }
            }
            (Some(Value::Array(a)), Some(Value::Array(b))) => {
                for i in 0..a.len().max(b.len()) {
                    walk(format!("{pointer}/{i}"), a.get(i), b.get(i), out);
                }
            }
            _ => out.push(Difference {
                pointer,
                recorded: shorten(recorded),
                requested: shorten(requested),
            }),
        }
    }
    let mut out = Vec::new();
    walk(String::new(), Some(recorded), Some(requested), &mut out);
    out
}

impl From<NonDeterminism> for ActionError {
    fn from(error: NonDeterminism) -> Self {
        let details = serde_json::to_value(&error).ok();
        ActionError {
            kind: kinds::NON_DETERMINISM.to_owned(),
            message: error.to_string(),
            retryable: false,
            details,
        }
    }
}

/// One schema violation: where (a JSON pointer into the value) and what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// JSON pointer of the offending value, e.g. `/email` (empty for the root).
    pub pointer: String,
    /// What is wrong, e.g. `"not-an-email" is not a "email"`.
    pub message: String,
}

/// A value did not match its JSON Schema.
///
/// Like [`ActionError`], it does not implement `std::error::Error`, so that it can
/// convert into the step and run errors with `?`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaViolation {
    /// What was checked, e.g. `input of workflow signup-pipeline`.
    pub what: String,
    /// Every violation found, in document order.
    pub violations: Vec<Violation>,
}

impl fmt::Display for SchemaViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} does not match its schema: {}",
            self.what,
            format_violations(&self.violations)
        )
    }
}

fn format_violations(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| {
            let pointer = if v.pointer.is_empty() {
                "/"
            } else {
                &v.pointer
            };
            format!("{pointer}: {}", v.message)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<SchemaViolation> for ActionError {
    fn from(error: SchemaViolation) -> Self {
        let details = serde_json::to_value(&error.violations).ok();
        ActionError {
            kind: kinds::SCHEMA.to_owned(),
            message: error.to_string(),
            retryable: false,
            details,
        }
    }
}

/// An error of the engine or its store, as opposed to a failed run.
///
/// Store failures come in two shapes: [`EngineError::Storage`], what the stores return,
/// typed ([`StoreErrorKind`]: busy, unavailable, a constraint, …) with the underlying
/// database or I/O error as its [`source`](std::error::Error::source); and
/// [`EngineError::Store`], a failure known only by its message (code that has no
/// underlying error to carry). [`EngineError::is_store`] is true for both.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// No workflow is registered under this slug.
    #[error("no workflow named `{0}` is registered; `workflows list` shows the registered ones")]
    UnknownWorkflow(String),
    /// No run has this id.
    #[error("no run with id `{0}`")]
    UnknownRun(String),
    /// Input (or output) did not match its schema. Nothing was recorded.
    #[error("{0}")]
    Schema(SchemaViolation),
    /// A value could not be (de)serialized.
    #[error("{0}")]
    Serde(String),
    /// The store failed; only a message is known. Stores themselves report
    /// [`EngineError::Storage`], with the cause; this variant is for code that has nothing
    /// but a message (a failure recorded earlier, a simulated crash).
    #[error("store error: {0}")]
    Store(String),
    /// The store failed: what failed, which run (when one), the kind of failure and, as
    /// its [`source`](std::error::Error::source), the underlying error (a
    /// `rusqlite::Error`, a `tokio_postgres::Error`, a `std::io::Error`, …).
    #[error(transparent)]
    Storage(StoreError),
    /// Another writer appended to this run first (its lease or fencing token is stale).
    #[error(
        "run `{run}` was appended to concurrently: expected sequence {expected}, found {found}"
    )]
    Conflict {
        /// The run.
        run: String,
        /// The sequence number this writer expected to write next.
        expected: u64,
        /// The sequence number the store holds.
        found: u64,
    },
    /// A stored row could not be read.
    #[error("run `{run}` has a corrupt or unknown record: {message}")]
    Corrupt {
        /// The run.
        run: String,
        /// What is wrong.
        message: String,
    },
    /// The writer's lease on the run was lost (it expired and another worker took the
    /// run over): it must stop; nothing it did not record is lost, the new holder goes on.
    #[error("the lease on run `{run}` was lost: another worker took the run over")]
    LeaseLost {
        /// The run.
        run: String,
    },
    /// Another worker holds the run's lease and is executing it.
    #[error(
        "run `{run}` is being executed by `{owner}` (lease until {expires_at}); wait for it, \
         or for the lease to expire if that process is gone"
    )]
    Leased {
        /// The run.
        run: String,
        /// The lease holder.
        owner: String,
        /// When its lease expires unless renewed (RFC 3339).
        expires_at: String,
    },
    /// The engine's configuration is invalid (a trigger definition, a duplicate slug, …);
    /// the message names what and how to fix it.
    #[error("{0}")]
    Config(String),
    /// No hook has this token.
    #[error("no hook has this token (check that it was copied whole)")]
    UnknownHook,
    /// No subscription has this id.
    #[error("no subscription with id `{0}`; `subscriptions list` shows them")]
    UnknownSubscription(String),
    /// An idempotency key already started a run of this workflow, with a different input
    /// ([`Engine::start_idempotent`](crate::Engine::start_idempotent)). Nothing was created.
    #[error(
        "idempotency key `{key}` already started run `{run}` of `{workflow}` with a different \
         input; send the same input to get that run back, or use a new key for a new run"
    )]
    IdempotencyConflict {
        /// The run the key started.
        run: String,
        /// The workflow's slug.
        workflow: String,
        /// The key.
        key: String,
    },
    /// The run is in a state that does not allow the operation.
    #[error("run `{run}` is {status}: {message}")]
    InvalidState {
        /// The run.
        run: String,
        /// Its status.
        status: String,
        /// What could not be done.
        message: String,
    },
    /// The run's log has no step with this id (`runs fork --from`). Nothing was created.
    #[error(
        "run `{run}` has no step `{step}`; its steps include {} (`runs get {run}` lists them \
         all); pass one of them exactly as shown",
        list_steps(known, *total)
    )]
    UnknownStep {
        /// The run.
        run: String,
        /// The step id asked for.
        step: String,
        /// Some of the step ids the log holds, in order (the first few).
        known: Vec<String>,
        /// How many step ids the log holds.
        total: usize,
    },
    /// A request's arguments are wrong (e.g. a purge of runs that have not ended); the
    /// message names what and how to fix it. Nothing was done.
    #[error("{0}")]
    InvalidRequest(String),
    /// A payload (a workflow input, a step's input or output, a hook payload, a workflow
    /// output) is larger than [`EngineBuilder::max_payload_bytes`](crate::EngineBuilder::max_payload_bytes)
    /// allows, as serialized JSON. Nothing of it was written.
    #[error(
        "{what} is {size} bytes of JSON, over the limit of {limit} bytes: store large data \
         elsewhere (a file, a bucket) and pass a reference, or raise \
         EngineBuilder::max_payload_bytes"
    )]
    PayloadTooLarge {
        /// What was too large: `the input of workflow \`x\``, `the output of step \`a/b\``,
        /// `the payload of hook \`approve\``.
        what: String,
        /// Its size, in bytes of serialized JSON.
        size: u64,
        /// The limit, in bytes.
        limit: u64,
    },
    /// The run's workflow (or a sub-workflow it calls) receives no signal or update of
    /// this name (`Engine::signal`, `Engine::update`). Nothing was posted.
    #[error(
        "run `{run}` of `{workflow}` receives no {kind} named `{name}`; it receives {}",
        list_names(known)
    )]
    UnknownMessage {
        /// The run.
        run: String,
        /// Its workflow's slug.
        workflow: String,
        /// `signal` or `update`.
        kind: &'static str,
        /// The name asked for.
        name: String,
        /// The names of that kind the workflow receives.
        known: Vec<String>,
    },
    /// No run of the workflow holds this business key (`Engine::run_by_key`).
    #[error(
        "no run of `{workflow}` has the business key `{key}`; start one with          `workflows run {workflow} --key {key}` (or `POST /workflows/{workflow}?key=…`)"
    )]
    UnknownKey {
        /// The workflow's slug.
        workflow: String,
        /// The key.
        key: String,
    },
    /// A workflow's update handler refused the request (`request.reply(Err(..))`).
    #[error("update `{update}` of run `{run}` was refused by the workflow: {message}")]
    UpdateRejected {
        /// The run.
        run: String,
        /// The update's name.
        update: String,
        /// The handler's message.
        message: String,
    },
    /// Waiting for something a run does (an update's reply, published state) timed out;
    /// the message says what, and what became of the request.
    #[error("{0}")]
    Timeout(String),
}

/// `known` as text for [`EngineError::UnknownMessage`]: `` `paid`, `cancel` `` or `none`.
fn list_names(known: &[String]) -> String {
    if known.is_empty() {
        return "none".to_owned();
    }
    let shown: Vec<String> = known.iter().map(|name| format!("`{name}`")).collect();
    shown.join(", ")
}

/// `known` as text for [`EngineError::UnknownStep`]: `` `a#0`, `b#0` and 3 more ``.
fn list_steps(known: &[String], total: usize) -> String {
    if known.is_empty() {
        return "none (it has recorded no step yet; `runs restart` starts it over)".to_owned();
    }
    let shown: Vec<String> = known.iter().map(|id| format!("`{id}`")).collect();
    let more = total.saturating_sub(known.len());
    if more == 0 {
        shown.join(", ")
    } else {
        format!("{} and {more} more", shown.join(", "))
    }
}

impl EngineError {
    /// Whether the store failed ([`EngineError::Storage`] or [`EngineError::Store`]): the
    /// operation did not happen, or it is not known whether it did; the run is left for a
    /// later resume.
    pub fn is_store(&self) -> bool {
        matches!(self, EngineError::Store(_) | EngineError::Storage(_))
    }

    /// The typed store failure, when this is one.
    pub fn store_error(&self) -> Option<&StoreError> {
        match self {
            EngineError::Storage(error) => Some(error),
            _ => None,
        }
    }
}

/// What kind of failure a [`StoreError`] is: what a caller can do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// Another connection holds a lock the operation needs (SQLite `SQLITE_BUSY` or
    /// `SQLITE_LOCKED` after the busy timeout; a Postgres serialization failure, deadlock
    /// or lock timeout), or the row changed concurrently. A retry may succeed.
    Busy,
    /// The database cannot be reached or went away: connection refused, lost or timed
    /// out, no pooled connection in time, the server shutting down, the SQLite writer
    /// thread gone. A retry once it is back may succeed.
    Unavailable,
    /// A constraint refused the write (a run id that exists already, a foreign key).
    Constraint,
    /// The operating system refused a file operation (a directory that cannot be created,
    /// a file that cannot be opened, permissions, a full disk) or a thread could not start.
    Io,
    /// The database's schema is not one this build can use: written by a newer reprise,
    /// a migration that failed, a table that is missing.
    Schema,
    /// The store's configuration is wrong: an unsupported or unparsable URL, an empty
    /// schema name, a pool size of 0, credentials the server refuses.
    Config,
    /// Any other database failure: a statement the database refused, a file that is not
    /// a database.
    Database,
}

impl StoreErrorKind {
    /// Whether retrying the operation later may succeed ([`StoreErrorKind::Busy`],
    /// [`StoreErrorKind::Unavailable`]).
    pub fn is_retryable(self) -> bool {
        matches!(self, StoreErrorKind::Busy | StoreErrorKind::Unavailable)
    }

    /// What to do about it, when that is the same for every failure of the kind.
    fn hint(self) -> Option<&'static str> {
        match self {
            StoreErrorKind::Busy => Some("a retry may succeed"),
            StoreErrorKind::Unavailable => {
                Some("check that the database is running and reachable; a retry may succeed then")
            }
            _ => None,
        }
    }
}

/// A failure of the store ([`EngineError::Storage`]): the database, its connection or its
/// files. Its message says what failed and, when one run was concerned, which; its
/// [`kind`](StoreError::kind) what sort of failure it is; its
/// [`source`](std::error::Error::source) is the underlying error, for callers that need
/// the database's own code (downcast it to `rusqlite::Error`, `tokio_postgres::Error`,
/// `std::io::Error`).
///
/// Rows that do not decode are not store errors but [`EngineError::Corrupt`]; appends the
/// store refused are [`EngineError::Conflict`] or [`EngineError::LeaseLost`].
#[derive(Debug)]
pub struct StoreError {
    kind: StoreErrorKind,
    message: String,
    run: Option<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl StoreError {
    /// A failure of `kind`; `message` says what failed (`"cannot append to run `x`: …"`).
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            run: None,
            source: None,
        }
    }

    /// Sets the underlying error, returned by [`source`](std::error::Error::source).
    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Sets the run the failed operation concerned.
    pub fn with_run(mut self, run: impl Into<String>) -> Self {
        self.run = Some(run.into());
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// The run the failed operation concerned, when it concerned one.
    pub fn run(&self) -> Option<&str> {
        self.run.as_deref()
    }

    /// What failed, with the underlying error's message (without the hint).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same failure, of another kind.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn with_kind(mut self, kind: StoreErrorKind) -> Self {
        self.kind = kind;
        self
    }

    /// The same failure, its message prefixed with `context` (`"<context>: <message>"`).
    pub(crate) fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "store error: {}", self.message)?;
        match self.kind.hint() {
            Some(hint) => write!(f, " ({hint})"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<StoreError> for EngineError {
    fn from(error: StoreError) -> Self {
        EngineError::Storage(error)
    }
}

impl From<SchemaViolation> for EngineError {
    fn from(error: SchemaViolation) -> Self {
        EngineError::Schema(error)
    }
}

impl From<serde_json::Error> for EngineError {
    fn from(error: serde_json::Error) -> Self {
        EngineError::Serde(error.to_string())
    }
}

#[cfg(test)]
mod store_error_tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn a_store_error_says_what_failed_and_its_source_is_the_underlying_error() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let error: EngineError = StoreError::new(
            StoreErrorKind::Unavailable,
            "cannot append to run `r1`: refused",
        )
        .with_run("r1")
        .with_source(io)
        .into();
        assert!(error.is_store());
        let store = error.store_error().expect("typed");
        assert_eq!(store.kind(), StoreErrorKind::Unavailable);
        assert!(store.kind().is_retryable());
        assert_eq!(store.run(), Some("r1"));
        assert_eq!(
            error.to_string(),
            "store error: cannot append to run `r1`: refused (check that the database is \
             running and reachable; a retry may succeed then)"
        );
        let source = error.source().expect("a source");
        let io = source
            .downcast_ref::<std::io::Error>()
            .expect("the io::Error itself");
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);

        // The message-only variant stays a store failure, without a source.
        let plain = EngineError::Store("the process died".into());
        assert!(plain.is_store());
        assert!(plain.store_error().is_none());
        assert!(plain.source().is_none());
        assert_eq!(plain.to_string(), "store error: the process died");

        let constraint = StoreError::new(StoreErrorKind::Constraint, "run `r1` already exists");
        assert!(!constraint.kind().is_retryable());
        assert_eq!(
            constraint.to_string(),
            "store error: run `r1` already exists"
        );
    }
}
