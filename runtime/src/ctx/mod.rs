//! [`Ctx`], the workflow context: identity of the run, recorded values (`now`,
//! `random`, `uuid`), and the per-run state every recorded step shares.
//!
//! The step primitives the macro rewrites calls into live in the submodules:
//! [`step`] (`x.run(..)`), [`sleep`] (`ctx.sleep(..)`) and [`hook`] (`ctx.hook()`).

pub(crate) mod child;
pub(crate) mod continue_as_new;
pub(crate) mod dynamic;
pub(crate) mod event_wait;
pub(crate) mod hook;
pub(crate) mod inbox;
pub(crate) mod inline;
pub(crate) mod publish;
pub(crate) mod race;
pub(crate) mod record;
pub(crate) mod recorder;
pub(crate) mod recording;
pub(crate) mod select;
pub(crate) mod signal;
pub(crate) mod sleep;
pub(crate) mod step;
pub(crate) mod step_rate;
pub(crate) mod tag;
pub(crate) mod timeout;
pub(crate) mod update;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::Notify;

use crate::error::{EngineError, WorkflowError, kinds};
use crate::event::{EventPayload, NewEvent, RunId, RunUpdate, Trigger};
use crate::history::History;
use crate::run_env::{RunControl, RunEnv};
use crate::store::Append;
use recorder::{Call, Entry, Shape};

pub use crate::wait::Wait;

/// State shared by every [`Ctx`] of one execution of a run.
pub(crate) struct RunState {
    pub(crate) env: Arc<RunEnv>,
    /// The fingerprint of the workflow's step sites in this binary (see
    /// `registry::WorkflowEntry::fingerprint`), recorded with each execution.
    pub(crate) fingerprint: Arc<str>,
    pub(crate) run_id: RunId,
    pub(crate) workflow: String,
    pub(crate) attempt: u32,
    pub(crate) trigger: Trigger,
    pub(crate) triggered_at: DateTime<Utc>,
    pub(crate) history: History,
    counters: Mutex<HashMap<String, u32>>,
    /// Correlation ids taken while a select's branch is created (see `select::IdCapture`):
    /// innermost capture last.
    captures: Mutex<Vec<Vec<String>>>,
    /// Whether `captures` is non-empty (read without the lock on every id taken).
    capturing: std::sync::atomic::AtomicBool,
    /// The next sequence number; the async lock serializes this run's appends.
    next_seq: tokio::sync::Mutex<u64>,
    /// `step_started` events and recorded values, written with the next durable append so
    /// that a step costs one commit (its completion), not two.
    pending: Mutex<Vec<NewEvent>>,
    /// Set when the run must fail whatever the body does (non-determinism, store failure).
    poison: Mutex<Option<WorkflowError>>,
    /// Waits the body is blocked on; non-empty means the run suspends.
    waits: Mutex<Vec<Wait>>,
    pub(crate) suspended: Notify,
    /// Live steps running right now; a suspending run lets them finish and record first.
    pub(super) inflight: AtomicUsize,
    pub(crate) inflight_changed: Notify,
    pub(crate) replayed: AtomicU64,
    pub(crate) executed: AtomicU64,
    /// The fencing token of the execution's lease, carried by every append (replaced when
    /// a hot run continues under a new lease).
    fence: Mutex<Option<u64>>,
    /// The last status announced, so a transition is announced once.
    announced: Mutex<Option<crate::event::RunStatus>>,
    /// Cancel and drain switches of the current execution: checked at every step boundary.
    control: Mutex<RunControl>,
    /// Bumped when a hot run continues in memory: suspended sleeps wake and re-check.
    resumed: tokio::sync::watch::Sender<u64>,
    /// Recorded outcomes answered from the history so far (steps, waits, values); while it
    /// is below `history.answerable()`, the body is still replaying old history.
    consumed: AtomicUsize,
    /// The hook tokens the body has handed out: redacted from what the run records, put
    /// back into what it replays (see [`crate::hook_token::token_placeholder`]).
    pub(crate) hook_tokens: crate::hook_token::IssuedTokens,
    /// The credential values this execution resolved: masked (`***`) in what it records
    /// (see [`crate::credentials::Masks`]).
    pub(crate) masks: Arc<crate::credentials::Masks>,
    /// The engine's payload limits, read once per execution (every step checks them).
    pub(crate) limits: crate::payload::PayloadLimits,
    /// Bytes of event payload JSON in the log, counted up to the history warning threshold
    /// (see `EngineBuilder::history_warning_bytes`): the append that crosses it logs the
    /// warning, once per run; past it nothing is counted any more.
    log_bytes: AtomicU64,
    /// What this execution read of the run's inbox (signals, updates, events, child results).
    pub(crate) inbox: inbox::Inbox,
    /// The event names this execution registered the run as waiting for, with how many
    /// of its waits for each are open (see [`event_wait`]): a registration is removed when
    /// the last open wait for its name receives, and when the run ends.
    pub(crate) event_waits: Mutex<std::collections::BTreeMap<String, usize>>,
    /// The input `ctx.continue_as_new(..)` asked the run to continue with, if it did.
    pub(crate) continue_with: Mutex<Option<(Value, RunId)>>,
    /// The cap on the log's length (`max_history_events`; 0: none): an append of steps
    /// past it fails the run with kind `history_too_large`.
    pub(crate) history_cap: AtomicU64,
    /// The run's queue and key when the queue has a step rate limit: live attempts take
    /// a permit first (see [`step_rate`]). Set once, before the body runs.
    pub(crate) step_queue: std::sync::OnceLock<step_rate::StepQueue>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section below is a plain insert/read; a panic elsewhere cannot leave
    // the data half-updated, so a poisoned lock is still consistent.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl RunState {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        env: Arc<RunEnv>,
        fingerprint: Arc<str>,
        run_id: RunId,
        workflow: String,
        attempt: u32,
        trigger: Trigger,
        triggered_at: DateTime<Utc>,
        history: History,
        next_seq: u64,
        fence: Option<u64>,
        control: RunControl,
    ) -> Self {
        let limits = crate::payload::PayloadLimits::of(&env);
        RunState {
            env,
            fingerprint,
            run_id,
            workflow,
            attempt,
            trigger,
            triggered_at,
            history,
            counters: Mutex::new(HashMap::new()),
            captures: Mutex::new(Vec::new()),
            capturing: std::sync::atomic::AtomicBool::new(false),
            next_seq: tokio::sync::Mutex::new(next_seq),
            pending: Mutex::new(Vec::new()),
            poison: Mutex::new(None),
            waits: Mutex::new(Vec::new()),
            suspended: Notify::new(),
            inflight: AtomicUsize::new(0),
            inflight_changed: Notify::new(),
            replayed: AtomicU64::new(0),
            executed: AtomicU64::new(0),
            consumed: AtomicUsize::new(0),
            hook_tokens: crate::hook_token::IssuedTokens::default(),
            masks: Arc::default(),
            fence: Mutex::new(fence),
            control: Mutex::new(control),
            resumed: tokio::sync::watch::Sender::new(0),
            announced: Mutex::new(None),
            log_bytes: AtomicU64::new(0),
            inbox: inbox::Inbox::default(),
            event_waits: Mutex::default(),
            continue_with: Mutex::new(None),
            history_cap: AtomicU64::new(0),
            step_queue: std::sync::OnceLock::new(),
            limits,
        }
    }

    /// Sets the size of the log this execution loaded (bytes of event payload JSON, as
    /// counted by `payload::log_bytes` up to the history warning threshold).
    pub(crate) fn set_log_bytes(&self, bytes: u64) {
        self.log_bytes.store(bytes, Ordering::Relaxed);
    }

    /// The log's size after `events` are appended, when the history warning is on and the
    /// log has not crossed it yet (else `None`: nothing to count).
    fn grown_log(&self, events: &[NewEvent]) -> Option<(u64, u64)> {
        let threshold = self.limits.history_warning_bytes;
        let before = self.log_bytes.load(Ordering::Relaxed);
        if threshold == 0 || before >= threshold {
            return None;
        }
        let added = crate::payload::log_bytes(events.iter().map(|e| &e.payload), threshold);
        Some((before.saturating_add(added), threshold))
    }

    /// Records the log's new size; the append that crosses the threshold logs it.
    fn note_log_growth(&self, grown: Option<(u64, u64)>) {
        let Some((after, threshold)) = grown else {
            return;
        };
        self.log_bytes
            .store(after.min(threshold), Ordering::Relaxed);
        if after >= threshold {
            tracing::warn!(
                run = %self.run_id,
                workflow = %self.workflow,
                threshold_bytes = threshold,
                "the run's event log has grown past the history warning threshold \
                 (EngineBuilder::history_warning_bytes); every resume replays all of it: \
                 keep large data out of step outputs, or split the work into sub-workflows \
                 (logged once per run)"
            );
        }
    }

    /// The cancel and drain switches of the current execution.
    pub(crate) fn control(&self) -> RunControl {
        lock(&self.control).clone()
    }

    /// Whether the run must stop at this step boundary (canceled, or its worker drains).
    pub(crate) fn interrupted(&self) -> bool {
        let control = lock(&self.control);
        control.cancel.is_cancelled()
            || control.drain.is_cancelled()
            || control.pause.is_cancelled()
    }

    /// The sequence number the next append will get (the log's length as this execution
    /// knows it).
    pub(crate) async fn next_seq(&self) -> u64 {
        *self.next_seq.lock().await
    }

    /// Prepares a suspended (hot) run to continue in memory under a new execution: its new
    /// lease's fencing token and switches, fresh per-execution counters, no waits. The
    /// suspended sleeps wake once [`RunState::wake_suspended`] is called.
    pub(crate) fn continue_under(&self, fence: Option<u64>, control: RunControl) {
        *lock(&self.fence) = fence;
        *lock(&self.control) = control;
        lock(&self.waits).clear();
        self.replayed.store(0, Ordering::Relaxed);
        self.executed.store(0, Ordering::Relaxed);
    }

    /// Wakes the body's suspended sleeps so they re-check their wake-up time.
    pub(crate) fn wake_suspended(&self) {
        self.resumed.send_modify(|n| *n += 1);
    }

    /// A receiver that changes when the run continues in memory.
    pub(crate) fn resumptions(&self) -> tokio::sync::watch::Receiver<u64> {
        self.resumed.subscribe()
    }

    /// Stops the body at a step boundary: the executor ends the execution (canceled or
    /// handed back to the queue) once live steps have recorded.
    pub(crate) async fn stop_here(&self) -> std::convert::Infallible {
        self.suspended.notify_one();
        std::future::pending().await
    }

    /// Takes the next occurrence number of `key` (synchronously, when a step future is created).
    pub(crate) fn next_occurrence(&self, key: &str) -> u32 {
        let mut counters = lock(&self.counters);
        let n = counters.entry(key.to_owned()).or_insert(0);
        let current = *n;
        *n += 1;
        drop(counters);
        if self.capturing.load(Ordering::Relaxed) {
            self.captured(key, current);
        }
        current
    }

    /// Buffers an event until the next durable append.
    pub(crate) fn push_pending(&self, event: NewEvent) {
        lock(&self.pending).push(event);
    }

    /// Appends `events` (after everything pending) and applies `update`, durably.
    ///
    /// # Errors
    /// The store's error; [`EngineError::Store`] at once when an earlier append of this
    /// execution failed.
    pub(crate) async fn append(
        &self,
        events: Vec<NewEvent>,
        update: RunUpdate,
    ) -> Result<(), EngineError> {
        self.append_releasing(events, update, false).await
    }

    /// [`RunState::append`] for the last append of an execution that leaves its run not
    /// due (ended, or paused): under a lease, the append also gives the lease back in the
    /// same write ([`crate::store::Append::release`]), and the execution's control says so
    /// ([`RunControl::releasing`]). Nothing may be appended under the lease afterwards.
    ///
    /// # Errors
    /// As [`RunState::append`].
    pub(crate) async fn append_last(
        &self,
        events: Vec<NewEvent>,
        update: RunUpdate,
    ) -> Result<(), EngineError> {
        self.append_releasing(events, update, true).await
    }

    async fn append_releasing(
        &self,
        events: Vec<NewEvent>,
        update: RunUpdate,
        release: bool,
    ) -> Result<(), EngineError> {
        // Once the log could not be written, this execution is abandoned: nothing more is
        // recorded (above all not the store failure as a step's outcome, which replay would
        // return forever). Unrecorded steps run again when the run resumes, as after a crash.
        if let Some(poison) = self.poisoned()
            && poison.kind == kinds::STORE
        {
            return Err(EngineError::Store(poison.message));
        }
        // Counted as live while the append is in flight: the executor must never drop the
        // body (another branch may have suspended) between the store's commit and this
        // execution learning of it, or its next append would reuse a sequence number.
        let _appending = Appending::new(self);
        let mut next_seq = self.next_seq.lock().await;
        let mut all = std::mem::take(&mut *lock(&self.pending));
        all.extend(events);
        let mut update = update;
        if !self.hook_tokens.is_empty() {
            self.redact_hook_tokens(&mut all, &mut update);
        }
        if !self.masks.is_empty() {
            self.mask_credentials(&mut all, &mut update);
        }
        let count = all.len() as u64;
        self.check_history_cap(*next_seq, count, &update)?;
        let grown = self.grown_log(&all);
        let status = update.status;
        let fence = *lock(&self.fence);
        // Only a lease can be given back (an execution without one has no fence).
        let release = release && fence.is_some();
        if release {
            self.control().set_releasing();
        }
        let append = Append {
            run_id: self.run_id.clone(),
            first_seq: *next_seq,
            events: all,
            update,
            fence,
            release,
        };
        self.env.store.append(append).await?;
        *next_seq += count;
        self.env
            .live
            .publish(&self.run_id, crate::live::Live::Appended);
        self.note_log_growth(grown);
        if let Some(status) = status {
            let mut last = lock(&self.announced);
            if *last != Some(status) {
                *last = Some(status);
                self.env.announce(&self.run_id, &self.workflow, status);
            }
        }
        Ok(())
    }

    /// Replaces every hook token this run handed out by its placeholder in what is about
    /// to be written: tokens exist at rest only as hashes.
    fn redact_hook_tokens(&self, events: &mut [NewEvent], update: &mut RunUpdate) {
        for event in events {
            self.hook_tokens.redact(&mut event.payload);
        }
        for value in [&mut update.output, &mut update.error]
            .into_iter()
            .flatten()
        {
            self.hook_tokens.redact(value);
        }
    }

    /// Replaces every credential value this execution resolved by `***` in what is about
    /// to be written (step inputs, outputs, errors; the run's output and error).
    fn mask_credentials(&self, events: &mut [NewEvent], update: &mut RunUpdate) {
        for event in events {
            self.masks.mask_payload(&mut event.payload);
        }
        if let Some(output) = &mut update.output {
            self.masks.mask_value(output);
        }
        if let Some(error) = &mut update.error {
            self.masks.mask_error_value(error);
        }
    }

    /// A recorded value as the body saw it when it was recorded: each hook-token
    /// placeholder replaced by the token (a no-op before the body created a hook).
    pub(crate) fn unredacted(&self, value: &serde_json::Value) -> serde_json::Value {
        if self.may_hold_placeholders() {
            crate::hook_token::expand_placeholders(
                value,
                self.env.hook_secret(),
                self.run_id.as_str(),
            )
        } else {
            value.clone()
        }
    }

    /// Whether recorded values may hold hook-token placeholders: the body created a hook
    /// in this execution, or the log holds one. (A token handed out by a hook that was
    /// never awaited and whose resume URL was never read, inside a sub-workflow that has
    /// since finished, is the one placeholder this does not see: the body then replays the
    /// placeholder text where it had the token.)
    pub(crate) fn may_hold_placeholders(&self) -> bool {
        !self.hook_tokens.is_empty() || self.history.holds_hooks()
    }

    /// An event of `payload`'s kind, stamped now (inlined: see [`EventPayload::encode`]).
    #[inline(always)]
    pub(crate) fn event(&self, id: Option<&str>, attempt: u32, payload: EventPayload) -> NewEvent {
        NewEvent::new(id.map(str::to_owned), attempt, self.env.now(), payload)
    }

    /// Whether this is a replay-only check: nothing may run live.
    pub(crate) fn replay_only(&self) -> bool {
        self.env.replay_only
    }

    /// Marks the run as failed whatever the body does next; the first poison wins.
    pub(crate) fn poison(&self, error: WorkflowError) {
        let mut poison = lock(&self.poison);
        if poison.is_none() {
            *poison = Some(error);
        }
    }

    pub(crate) fn poisoned(&self) -> Option<WorkflowError> {
        lock(&self.poison).clone()
    }

    /// Registers a wait and tells the executor the body is blocked on it.
    pub(crate) fn suspend(&self, wait: Wait) {
        lock(&self.waits).push(wait);
        self.suspended.notify_one();
    }

    pub(crate) fn waits(&self) -> Vec<Wait> {
        lock(&self.waits).clone()
    }

    pub(crate) fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Acquire)
    }

    /// Ends one count of [`RunState::inflight`] and tells the executor.
    pub(super) fn leave_inflight(&self) {
        self.inflight.fetch_sub(1, Ordering::AcqRel);
        self.inflight_changed.notify_one();
    }

    /// Counts a live step until the guard drops.
    pub(crate) fn live_step(self: &Arc<Self>) -> LiveStep {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        LiveStep(self.clone())
    }
}

/// Keeps [`RunState::inflight`] counted while a live step runs.
pub(crate) struct LiveStep(Arc<RunState>);

impl Drop for LiveStep {
    fn drop(&mut self) {
        self.0.leave_inflight();
    }
}

/// Keeps [`RunState::inflight`] counted while an append is in flight.
struct Appending<'a>(&'a RunState);

impl<'a> Appending<'a> {
    fn new(run: &'a RunState) -> Self {
        run.inflight.fetch_add(1, Ordering::AcqRel);
        Appending(run)
    }
}

impl Drop for Appending<'_> {
    fn drop(&mut self) {
        self.0.leave_inflight();
    }
}

/// The context of a workflow run, handed to the workflow body.
///
/// Cheap to clone (an `Arc`). Inside a `#[workflow]` body, `ctx.sleep(..)`,
/// `ctx.sleep_until(..)` and `ctx.hook()` are rewritten by the macro into recorded steps;
/// `now()`, `random()` and `uuid()` record their value the first time and return the
/// recorded value on every replay, so the body stays deterministic.
#[derive(Clone)]
pub struct Ctx {
    pub(crate) run: Arc<RunState>,
    /// Prefix of correlation ids: `""` at top level, `"enrich-lead#0/"` in a sub-workflow.
    pub(crate) namespace: Arc<str>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("run_id", &self.run.run_id)
            .field("workflow", &self.run.workflow)
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl Ctx {
    /// The run's id.
    pub fn run_id(&self) -> &RunId {
        &self.run.run_id
    }

    /// The slug of the run's (top-level) workflow.
    pub fn workflow(&self) -> &str {
        &self.run.workflow
    }

    /// What started the run (`api`, `cli`, `cron`, `webhook`, `poll`, `retry`, `code`, `fork`,
    /// `child`, `continue_as_new`).
    pub fn trigger(&self) -> Trigger {
        self.run.trigger
    }

    /// When the run was created (UTC).
    pub fn triggered_at(&self) -> DateTime<Utc> {
        self.run.triggered_at
    }

    /// Who or what started the run, with the trigger's details (a schedule's name and
    /// tick, a webhook's source and delivery id, an API principal, a parent run, …), as
    /// recorded in its `run_created` event ([`crate::identity::Actor::Unrecorded`] for runs
    /// recorded before actors were). Recorded, so a replay sees the same actor.
    pub fn actor(&self) -> &crate::identity::Actor {
        &self.run.history.identity().actor
    }

    /// Who started the run and whom it acts for: its actor, user, project and subscriber.
    pub fn identity(&self) -> &crate::identity::RunIdentity {
        self.run.history.identity()
    }

    /// The user the run acts for (credentials are looked up for this user first), if any.
    pub fn user(&self) -> Option<&str> {
        self.run.history.identity().user.as_deref()
    }

    /// The run's project (credentials are looked up there after the user's), if any.
    pub fn project(&self) -> Option<&str> {
        self.run.history.identity().project.as_deref()
    }

    /// For a run of a subscribable workflow started for a subscription: the subscription,
    /// its subscriber and the subscriber's configuration.
    pub fn subscriber(&self) -> Option<&crate::identity::Subscriber> {
        self.run.history.identity().subscriber.as_ref()
    }

    /// The run-level attempt, from 1; grows when a failed body is retried (`max_attempts`).
    pub fn attempt(&self) -> u32 {
        self.run.attempt
    }

    /// The resource of type `T` registered with `Engine::builder().resource(..)`, if any.
    ///
    /// Resources are for actions (clients, pools, base URLs); a body that reads one must
    /// not let it change which steps it calls or with what input, or a replay after a
    /// configuration change fails with a `NonDeterminism` error.
    pub fn resource<T: std::any::Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.run.env.resources.get::<T>()
    }

    /// The current time (UTC), recorded: a replay returns the value of the first execution.
    pub fn now(&self) -> DateTime<Utc> {
        self.recorded_value("now", || self.run.env.now())
    }

    /// A random value, recorded: a replay returns the value of the first execution.
    ///
    /// ```ignore
    /// let dice: u8 = ctx.random::<u8>() % 6 + 1;
    /// ```
    pub fn random<T>(&self) -> T
    where
        T: Serialize + DeserializeOwned,
        rand::distr::StandardUniform: rand::distr::Distribution<T>,
    {
        self.recorded_value("random", rand::random::<T>)
    }

    /// A random UUID (v4), recorded: a replay returns the value of the first execution.
    pub fn uuid(&self) -> uuid::Uuid {
        self.recorded_value("uuid", uuid::Uuid::new_v4)
    }

    /// Records `make()` under `$<name>#<n>` the first time; returns the recorded value on replay.
    fn recorded_value<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        make: impl FnOnce() -> T,
    ) -> T {
        let key = format!("{}${name}", self.namespace);
        let n = self.run.next_occurrence(&key);
        let id = format!("{key}#{n}");
        self.recorded_as(&id, &format!("ctx.{name}"), make)
    }

    /// Records `make()` under correlation id `id` (callee `callee`) the first time; returns
    /// the recorded value on replay. A value recorded under another callee, or one that no
    /// longer deserializes as `T`, fails the run with a `NonDeterminism` error (the fresh
    /// value is returned so the body can reach its next step boundary).
    pub(crate) fn recorded_as<T: Serialize + DeserializeOwned>(
        &self,
        id: &str,
        callee: &str,
        make: impl FnOnce() -> T,
    ) -> T {
        let call = Call {
            id,
            callee,
            shape: Shape::Value,
            input: None,
            output: None,
        };
        match self.run.lookup(&call) {
            Ok(Entry::Replayed(Ok(value))) => match serde_json::from_value::<T>(value.clone()) {
                Ok(value) => value,
                Err(error) => {
                    let report = crate::error::NonDeterminism::new(
                        id,
                        format!("`{callee}` = {value}"),
                        format!("a value of type `{}` ({error})", std::any::type_name::<T>()),
                    );
                    self.run.report_non_determinism(report);
                    make()
                }
            },
            Ok(Entry::Live(slot)) => {
                let value = make();
                slot.finish_value(serde_json::to_value(&value).unwrap_or(Value::Null));
                value
            }
            // A recorded value is never an error; the run is failing anyway.
            Ok(Entry::Replayed(Err(_))) | Err(_) => make(),
        }
    }

    /// Whether the code of change `change_id` applies to this run: `true` for runs that
    /// reach this point after the change was deployed, `false` when replaying a run
    /// recorded before it. The first `true` is recorded as a marker, so the answer never
    /// changes for a run. This is how a workflow changes while runs are in flight:
    ///
    /// ```ignore
    /// if ctx.patched("send-receipt") {
    ///     send_receipt.run(order.clone()).await?;   // new runs, and old ones past this point
    /// }
    /// ship.run(order).await?;                       // every run
    /// ```
    ///
    /// Once no run recorded before the change is in flight (`workflows check` tells), remove
    /// the `if` and keep the new branch.
    pub fn patched(&self, change_id: &str) -> bool {
        let id = format!("{}$patch:{change_id}", self.namespace);
        if self.run.history.get(&id).is_some() {
            return true;
        }
        let nested = self.run.replay_only();
        if self.run.consumed.load(Ordering::Relaxed) < self.run.history.answerable(nested) {
            // Old history lies ahead: this run was recorded without the change.
            return false;
        }
        self.recorded_as(&id, "ctx.patched", || true)
    }

    /// The correlation id of the next occurrence of `site_key` in this namespace.
    pub(crate) fn next_id(&self, site_key: &str) -> String {
        let key = format!("{}{site_key}", self.namespace);
        let n = self.run.next_occurrence(&key);
        format!("{key}#{n}")
    }

    /// A context for a sub-workflow running as step `id`.
    pub(crate) fn child(&self, id: &str) -> Ctx {
        Ctx {
            run: self.run.clone(),
            namespace: Arc::from(format!("{id}/")),
        }
    }
}

/// Error for a step that may not start because the run is already failing.
pub(crate) fn poisoned_error(error: &WorkflowError) -> crate::ActionError {
    crate::ActionError::new(error.kind.clone(), error.message.clone(), false)
}

/// Converts a store failure inside a step into the step's error, poisoning the run.
pub(crate) fn store_failure(run: &RunState, error: EngineError) -> crate::ActionError {
    let message = format!("could not record the step: {error}");
    run.poison(WorkflowError::new(kinds::STORE, message.clone(), true));
    crate::ActionError::new(kinds::STORE, message, false)
}
