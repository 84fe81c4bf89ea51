//! Where runs and their event logs live: the [`Store`] trait and its implementations,
//! [`MemoryStore`] (tests, benchmarks), [`SqliteStore`] (the default, one file) and,
//! with feature `postgres`, `PostgresStore` (many processes on many machines).
//!
//! Every store passes the same conformance suite (`runtime/tests/it/conformance.rs`).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::EngineError;
pub use crate::error::{StoreError, StoreErrorKind};
use crate::event::{Event, NewEvent, RunFilter, RunId, RunRecord, RunUpdate};

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod codec;
mod documents;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "postgres")]
mod postgres_appends;
mod purge;
mod schedules;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod search_sql;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use documents::{Document, Put};
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::{PostgresOptions, PostgresStore};
pub use purge::{MAX_PURGE_BATCH, PURGEABLE, PurgeBatch, PurgeFilter, PurgedRun};
pub use schedules::ScheduleRow;

/// When a run with no live lease may next be claimed (the rule of [`Store::claim_due`]):
/// a `queued` run from its retry time (`wake_at`) or else its creation, a `running` one
/// (its worker went away) from its creation, a `sleeping` or `waiting` one from its
/// `wake_at`; `None` when only an outside event can make it due (a hook without timeout)
/// or it has ended. The SQL stores keep the same rule as the generated column `due_at`.
pub(crate) fn due_at(
    status: crate::RunStatus,
    wake_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    use crate::RunStatus::*;
    match status {
        Queued => Some(wake_at.unwrap_or(created_at)),
        Running => Some(created_at),
        Sleeping | Waiting => wake_at,
        Completed | Failed | Canceled | Paused => None,
    }
}

#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteOptions, SqliteStore, Synchronous};

/// One atomic write to a run: events appended at `first_seq..` plus an optional
/// change of the run record.
#[derive(Clone, Debug, PartialEq)]
pub struct Append {
    /// The run.
    pub run_id: RunId,
    /// The sequence number of the first event; must equal the run's `next_seq`,
    /// otherwise the store rejects the whole append with [`EngineError::Conflict`]
    /// (a stale writer, e.g. one that lost its lease, can never interleave).
    pub first_seq: u64,
    /// The events, numbered `first_seq`, `first_seq + 1`, …
    pub events: Vec<NewEvent>,
    /// The change to the run record, applied in the same transaction.
    pub update: RunUpdate,
    /// The fencing token of the writer's [`Lease`], if it holds one: the store rejects the
    /// append with [`EngineError::LeaseLost`] unless the run's current fence is this one, so
    /// a worker whose lease expired (and was taken over) can never write again. `None`
    /// (hook deliveries, cancellation of a suspended run) relies on `first_seq` alone.
    pub fence: Option<u64>,
    /// Whether the append also gives back the writer's lease (the one whose fencing token
    /// is `fence`), in the same transaction, as [`Store::release`] would: the last append
    /// of an execution that ends its run (or leaves it not due, e.g. paused) is then one
    /// write instead of two. Fencing holds as for any fenced append: when the fence is no
    /// longer the run's, nothing is written or released ([`EngineError::LeaseLost`]).
    ///
    /// `true` needs `fence`: an append with `release` and no fence is refused with a
    /// [`StoreErrorKind::Database`] error and writes nothing.
    pub release: bool,
}

impl Append {
    /// Refuses an append whose `release` has no lease to give back (see
    /// [`Append::release`]); every store checks this before writing.
    ///
    /// # Errors
    /// [`StoreErrorKind::Database`] naming the run.
    pub(crate) fn check_release(&self) -> Result<(), EngineError> {
        if self.release && self.fence.is_none() {
            return Err(StoreError::new(
                StoreErrorKind::Database,
                format!(
                    "cannot append to run `{}`: the append asks to release the lease but \
                     carries no fence; set `Append::fence` to the lease's fencing token, or \
                     `release: false`",
                    self.run_id
                ),
            )
            .with_run(self.run_id.as_str())
            .into());
        }
        Ok(())
    }
}

/// A worker's exclusive, expiring right to execute a run (DESIGN "Running": leases with
/// fencing). Taken by [`Store::acquire`] or [`Store::claim_due`], kept alive by
/// [`Store::renew`], given back by [`Store::release`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The run.
    pub run_id: RunId,
    /// Who holds it: a worker id, unique per process (see `Engine::owner_id`).
    pub owner: String,
    /// The fencing token: grows by one on every acquisition of this run's lease, by anyone.
    /// Every append made under the lease carries it ([`Append::fence`]).
    pub fence: u64,
    /// When the lease ends unless renewed (UTC).
    pub expires_at: DateTime<Utc>,
    /// Whether cancellation of the run was requested ([`Store::request_cancel`]).
    pub cancel_requested: bool,
    /// Who asked for a pause of the run, if anyone did ([`Store::request_pause`]): the
    /// holder records `run_paused` at its next step boundary instead of going on.
    pub pause_requested: Option<String>,
}

/// One row of [`Store::run_counts`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunCount {
    /// The workflow's slug.
    pub workflow: String,
    /// The status.
    pub status: crate::RunStatus,
    /// How many runs of the workflow are in the status.
    pub runs: u64,
    /// How many of those are due now and not leased.
    pub due: u64,
}

/// What [`Store::acquire`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Acquired {
    /// The lease is now held by the caller.
    Lease(Lease),
    /// Another owner holds an unexpired lease.
    HeldBy {
        /// The holder.
        owner: String,
        /// When its lease expires unless renewed.
        expires_at: DateTime<Utc>,
    },
}

/// Durable storage of runs and their event logs.
///
/// Contract (checked by the conformance suite):
/// - `create_run` stores the record and its `run_created` event atomically, and fails
///   if the id exists;
/// - `append` is atomic and durable when it returns (the SQLite store fsyncs by
///   default), and enforces `first_seq == next_seq`;
/// - `events` returns a run's events in `seq` order, without gaps;
/// - reads never see half of an append.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates a run; `record.next_seq` must be 1 and `created` is its event 0.
    async fn create_run(&self, record: RunRecord, created: NewEvent) -> Result<(), EngineError>;

    /// Appends events and updates the run record, atomically.
    async fn append(&self, append: Append) -> Result<(), EngineError>;

    /// A run's record, or `None`.
    async fn run(&self, id: &RunId) -> Result<Option<RunRecord>, EngineError>;

    /// A run's events in `seq` order.
    async fn events(&self, id: &RunId) -> Result<Vec<Event>, EngineError>;

    /// Runs matching the filter, newest first, ties in creation time by id (highest first),
    /// from after `filter.cursor`; tags are matched against what the appends recorded
    /// (`run_tagged` events, indexed in the transaction of their append). A malformed tag
    /// filter or cursor is [`EngineError::Serde`]. A run row that does not decode (an unknown
    /// status or trigger, invalid JSON, …) is left out rather than failing the whole
    /// listing; [`Store::list_runs_with_skipped`] says which and why. `filter.limit` counts
    /// the rows read, skipped ones included.
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, EngineError>;

    /// [`Store::list_runs`], with the run rows it skipped because they do not decode, each
    /// with its id (`<unreadable id>` when even that cannot be read) and what is wrong.
    ///
    /// The default implementation returns `list_runs` and no skipped rows; the SQL stores
    /// override it (the memory store keeps typed records, which always decode).
    ///
    /// # Errors
    /// Store failures; never a row that does not decode.
    async fn list_runs_with_skipped(&self, filter: &RunFilter) -> Result<RunListing, EngineError> {
        let runs = self.list_runs(filter).await?;
        Ok(RunListing {
            next_cursor: crate::tags::next_cursor(filter.limit, runs.len(), &runs),
            runs,
            skipped: Vec::new(),
        })
    }

    /// What the engine needs to defer or park a run it cannot execute, read without
    /// decoding the run's rows (they may be what is wrong): see [`RunTriage`]. `None` when
    /// there is no such run.
    ///
    /// The default implementation decodes the run and its log through [`Store::run`] and
    /// [`Store::events`], so it fails where they fail; the SQL stores override it with
    /// reads of plain columns.
    ///
    /// # Errors
    /// Store failures; [`EngineError::Corrupt`] only when `next_seq` cannot be read.
    async fn triage(&self, id: &RunId) -> Result<Option<RunTriage>, EngineError> {
        let Some(record) = self.run(id).await? else {
            return Ok(None);
        };
        let events = self.events(id).await?;
        Ok(Some(RunTriage {
            next_seq: record.next_seq,
            status: Some(record.status),
            workflow: record.workflow,
            attempt: record.attempt,
            deferrals: trailing_deferrals(events.iter().map(|e| e.event.kind)),
        }))
    }

    /// Creates a run unless a run was already created under `key` (a webhook delivery id,
    /// a cron tick, a poll item): returns `None` when created, or the id of the run that
    /// holds the key. Atomic: of two concurrent calls with one key, exactly one creates.
    async fn create_run_once(
        &self,
        key: &str,
        record: RunRecord,
        created: NewEvent,
    ) -> Result<Option<RunId>, EngineError>;

    /// Takes the lease of run `id` for `owner` until `expires_at`, unless another owner
    /// holds an unexpired one (`now` decides expiry). The same owner may take its own lease
    /// again (a restarted worker with a stable id); the fence grows either way.
    ///
    /// # Errors
    /// [`EngineError::UnknownRun`], store failures.
    async fn acquire(
        &self,
        id: &RunId,
        owner: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<Acquired, EngineError>;

    /// Claims up to `request.limit` runs that are due and that `request.routing` serves,
    /// and returns their leases in creation order; each is leased to `request.owner`
    /// until `request.expires_at`.
    ///
    /// Due (at `request.now`): `queued` with no `wake_at` or one at or before now;
    /// `sleeping` or `waiting` with `wake_at` at or before now (a sleep ended, a hook timed
    /// out); `running` whose lease expired or was released (its worker died or shut
    /// down); and in every case no unexpired lease held by anyone and its workflow not
    /// paused ([`Store::set_workflow_pause`]).
    ///
    /// Runs in no queue, and runs of a queue already admitted (their `admitted_at` is
    /// set), are claimed earliest due first (ties in creation order). A due run of a
    /// queue not yet admitted is claimed only when its queue is among `request.queues`
    /// and [`crate::queue::Admitter`] admits it: candidates of each queue in order of
    /// priority (highest first), then due time, then creation; the store loads the
    /// queue's [`crate::queue::QueueTotals`] and each candidate key's
    /// [`crate::queue::KeyTotals`] (as [`Store::queue_totals`] defines them), and sets
    /// `admitted_at = now` on each admitted run in the same transaction as its lease. A
    /// candidate blocked by its key's limit does not stop candidates with other keys.
    /// Runs of queues not in `request.queues` are never claimed unless admitted.
    ///
    /// Atomic across processes: a run is claimed by one caller only, and the queue limits
    /// hold across all callers together (SQLite: one write transaction; Postgres: a
    /// transaction holding a per-queue advisory lock while it counts and admits).
    async fn claim(
        &self,
        request: &crate::queue::ClaimRequest<'_>,
    ) -> Result<Vec<Lease>, EngineError>;

    /// [`Store::claim`] with no routing and no queue settings: due runs in no queue and
    /// admitted runs of queues, earliest due first.
    async fn claim_due(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Lease>, EngineError> {
        self.claim(&crate::queue::ClaimRequest {
            owner,
            now,
            expires_at,
            limit,
            routing: &crate::queue::Routing::default(),
            queues: &[],
            run: None,
        })
        .await
    }

    /// Creates a run atomically with the rule of `gate` (de-duplication or debouncing,
    /// see [`crate::queue::StartGate`]), under the gate's key (kept where
    /// [`Store::create_run_once`] keeps its keys; the key is rebound to each run the gate
    /// creates). Of two concurrent calls with one key, the second sees the first's run.
    ///
    /// # Errors
    /// Store failures; the default implementation fails (this store keeps no queues).
    async fn create_run_gated(
        &self,
        record: RunRecord,
        created: NewEvent,
        gate: &crate::queue::StartGate,
    ) -> Result<crate::queue::Gated, EngineError> {
        let _ = (record, created, gate);
        Err(no_queues("create_run_gated"))
    }

    /// The counts admission starts from, for `queue` (and `key`, if given) at `now`:
    /// `active` = runs of the queue (with the key) whose `admitted_at` is set and that
    /// have not ended (status `queued`, `running`, `sleeping`, `waiting` or `paused`);
    /// `admitted_in_window` and `oldest_in_window` = runs of the queue (with the key)
    /// whose `admitted_at` is after [`crate::queue::Admitter::window_start`] (0 and
    /// `None` when the queue has no rate limit, or for the queue-wide totals of a per-key
    /// limit, and for the key totals of a queue-wide limit).
    ///
    /// # Errors
    /// Store failures; the default implementation fails (this store keeps no queues).
    async fn queue_totals(
        &self,
        queue: &crate::queue::Queue,
        key: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(crate::queue::QueueTotals, Option<crate::queue::KeyTotals>), EngineError> {
        let _ = (queue, key, now);
        Err(no_queues("queue_totals"))
    }

    /// Takes one step permit of `queue`'s step rate limit for a run with `key`,
    /// atomically across processes: once it holds the scope's lock (the memory store's
    /// mutex; SQLite: inside the writer's transaction; Postgres: under an advisory lock
    /// of the queue and scope) it reads `clock`, builds the
    /// [`crate::queue::StepWindow`] at that instant, counts the permits of its queue and
    /// scope taken after its `start` (and the oldest of them), asks
    /// [`crate::queue::StepWindow::decide`], and on `Ok` records a permit at its `now` in
    /// the same transaction. Reading the clock under the lock, not before, keeps the
    /// recorded times in the order the permits were granted: a taker that waited for the
    /// lock is not recorded as of when it started waiting. Permits at or before the
    /// window's `stale` may be pruned.
    ///
    /// Returns `Ok(Ok(()))` when a permit was taken (also when the queue has no step
    /// rate limit: nothing is recorded), `Ok(Err(next_at))` when the window is full and
    /// the next permit frees at `next_at`.
    ///
    /// # Errors
    /// Store failures; a per-key limit for a run without a key
    /// ([`crate::error::EngineError::Config`]); the default implementation fails (this
    /// store keeps no queues).
    async fn take_step_permit(
        &self,
        queue: &crate::queue::Queue,
        key: Option<&str>,
        clock: &std::sync::Arc<dyn crate::Clock>,
    ) -> Result<Result<(), DateTime<Utc>>, EngineError> {
        let _ = (queue, key, clock);
        Err(no_queues("take_step_permit"))
    }

    /// The permits of `queue`'s step rate limit (of `key`, for a per-key limit) taken in
    /// the window at `now` and the oldest of them, as
    /// [`Store::take_step_permit`] counts them, without taking one; `(0, None)` when the
    /// queue has no step rate limit or, for a per-key limit, `key` is `None`.
    ///
    /// # Errors
    /// Store failures; the default implementation fails (this store keeps no queues).
    async fn step_permits(
        &self,
        queue: &crate::queue::Queue,
        key: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(u64, Option<DateTime<Utc>>), EngineError> {
        let _ = (queue, key, now);
        Err(no_queues("step_permits"))
    }

    /// Registers or renews a live worker (replacing the row with its id).
    ///
    /// # Errors
    /// Store failures. The default implementation keeps no registry and does nothing.
    async fn worker_heartbeat(&self, worker: &crate::queue::WorkerInfo) -> Result<(), EngineError> {
        let _ = worker;
        Ok(())
    }

    /// Removes worker `id` from the registry (it shut down).
    ///
    /// # Errors
    /// Store failures. The default implementation does nothing.
    async fn worker_stopped(&self, id: &str) -> Result<(), EngineError> {
        let _ = id;
        Ok(())
    }

    /// The registered workers whose `expires_at` is after `now`, by id; `None` when this
    /// store keeps no registry (the default), so nobody can say which runs are served.
    ///
    /// # Errors
    /// Store failures.
    async fn live_workers(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<crate::queue::WorkerInfo>>, EngineError> {
        let _ = now;
        Ok(None)
    }

    /// Extends `lease` to `expires_at`. Returns the renewed lease (with a fresh
    /// `cancel_requested`), or `None` when the lease was lost (its fence is no longer the
    /// run's: someone else took the run over); the holder must then stop at once.
    async fn renew(
        &self,
        lease: &Lease,
        expires_at: DateTime<Utc>,
    ) -> Result<Option<Lease>, EngineError>;

    /// Gives `lease` back, so the run can be claimed at once. Does nothing when the lease
    /// was already lost.
    async fn release(&self, lease: &Lease) -> Result<(), EngineError>;

    /// Marks run `id` for cancellation: its lease holder sees `cancel_requested` on its
    /// next renewal and stops the run at its next step boundary.
    ///
    /// # Errors
    /// [`EngineError::UnknownRun`], store failures.
    async fn request_cancel(&self, id: &RunId) -> Result<(), EngineError>;

    /// The earliest `wake_at` of a `queued`, `sleeping` or `waiting` run, and the earliest
    /// expiry of a lease on a `running` run: when a worker should next look for due runs.
    async fn next_wake(&self) -> Result<Option<DateTime<Utc>>, EngineError>;

    /// How many runs each workflow has in each status, and how many of those are due at
    /// `now` (claimable by [`Store::claim_due`]: due and not leased; workflow pauses are not
    /// applied). One row per (workflow, status) that has runs, in no particular order. Read
    /// by `GET /metrics` for its run gauges. The default (for stores that cannot count)
    /// returns no rows: the gauges are then absent, not zero.
    async fn run_counts(&self, now: DateTime<Utc>) -> Result<Vec<RunCount>, EngineError> {
        let _ = now;
        Ok(Vec::new())
    }

    /// The durable cursor stored under `name` (a poll source's position, a cron schedule's
    /// last tick), or `None`.
    async fn cursor(&self, name: &str) -> Result<Option<serde_json::Value>, EngineError>;

    /// Stores `value` as the cursor `name`, durably, replacing any previous value.
    async fn set_cursor(&self, name: &str, value: &serde_json::Value) -> Result<(), EngineError>;

    /// Sets (`Some(who asked)`) or clears (`None`) the pause request of run `id`: its lease
    /// holder sees `pause_requested` on its next renewal (or claim) and pauses the run at
    /// its next step boundary. Cleared when the run is unpaused.
    ///
    /// # Errors
    /// [`EngineError::UnknownRun`], store failures.
    async fn request_pause(&self, id: &RunId, by: Option<&str>) -> Result<(), EngineError>;

    /// Pauses workflow `workflow` (`Some`: no run of it is claimed by [`Store::claim_due`]
    /// until it is resumed; runs executing now go on) or resumes it (`None`). Returns
    /// whether anything changed (pausing a paused workflow keeps its first pause).
    async fn set_workflow_pause(
        &self,
        workflow: &str,
        pause: Option<&WorkflowPause>,
    ) -> Result<bool, EngineError>;

    /// The paused workflows, by slug.
    async fn workflow_pauses(&self) -> Result<Vec<WorkflowPause>, EngineError>;

    /// Every stored schedule row (schedules kept as data, and paused states of schedules
    /// declared in code), by name. The default implementation keeps none.
    async fn list_schedules(&self) -> Result<Vec<ScheduleRow>, EngineError> {
        Ok(Vec::new())
    }

    /// The schedule row `name`, or `None`. The default implementation keeps none.
    async fn schedule(&self, name: &str) -> Result<Option<ScheduleRow>, EngineError> {
        let _ = name;
        Ok(None)
    }

    /// Stores `row` unless a row named `row.name` exists: `true` when stored, `false` when
    /// the name is taken (nothing changes). Atomic: of two concurrent creations of one
    /// name, exactly one stores.
    ///
    /// # Errors
    /// Store failures; the default implementation fails (this store keeps no schedules).
    async fn create_schedule(&self, row: &ScheduleRow) -> Result<bool, EngineError> {
        let _ = row;
        Err(no_schedules())
    }

    /// Replaces the definition, paused state, `updated_at` and `updated_by` of row
    /// `row.name` (its `created_*` stay): `true` when it existed, `false` when not (nothing
    /// is stored).
    ///
    /// # Errors
    /// Store failures; the default implementation fails (this store keeps no schedules).
    async fn update_schedule(&self, row: &ScheduleRow) -> Result<bool, EngineError> {
        let _ = row;
        Err(no_schedules())
    }

    /// Deletes row `name`: whether it existed.
    ///
    /// # Errors
    /// Store failures; the default implementation fails (this store keeps no schedules).
    async fn delete_schedule(&self, name: &str) -> Result<bool, EngineError> {
        let _ = name;
        Err(no_schedules())
    }

    /// Sets the paused state of schedule `name` (`by` asked, at `at`), creating a row
    /// without a definition when there is none (the paused state of a schedule declared in
    /// code). Atomic; the last call wins.
    ///
    /// # Errors
    /// Store failures; the default implementation fails (this store keeps no schedules).
    async fn set_schedule_paused(
        &self,
        name: &str,
        paused: bool,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        let _ = (name, paused, by, at);
        Err(no_schedules())
    }

    /// Creates a run whose log starts with more than its `run_created` event (a fork: the
    /// copied prefix of another run, see `Engine::fork_run`): `created` is event 0 and
    /// `events` follow from sequence number 1; `record.next_seq` must be 1 (the stored run's
    /// becomes `1 + events.len()`). Fails, creating nothing, if the id exists.
    ///
    /// The memory, SQLite and Postgres stores write it in one transaction, so no worker
    /// ever sees the run without its prefix. The default implementation (for other stores)
    /// is [`Store::create_run`] then [`Store::append`]: override it to make it atomic.
    ///
    /// # Errors
    /// As [`Store::create_run`] and [`Store::append`].
    async fn create_run_with_events(
        &self,
        record: RunRecord,
        created: NewEvent,
        events: Vec<NewEvent>,
    ) -> Result<(), EngineError> {
        let run_id = record.id.clone();
        self.create_run(record, created).await?;
        if events.is_empty() {
            return Ok(());
        }
        self.append(Append {
            run_id,
            first_seq: 1,
            events,
            update: RunUpdate::default(),
            fence: None,
            release: false,
        })
        .await
    }

    /// Deletes up to `filter.batch()` ended runs (`completed`, `failed`, `canceled`) last
    /// updated before `filter.before`, optionally of one workflow or one ended status,
    /// oldest update first, together with every row that depends on them (events, run
    /// keys), in one short transaction; returns them. Whether a run has ended is decided by
    /// the delete itself, so a run made unfinished concurrently (a retry) is never deleted.
    /// Call it again until it returns fewer runs than the batch size to purge everything.
    ///
    /// With `filter.dry_run`, deletes nothing: [`PurgeBatch::count`] is how many runs
    /// match in all and [`PurgeBatch::runs`] the first `filter.batch()` of them.
    ///
    /// A `filter.status` that has not ended matches nothing (check it first with
    /// [`PurgeFilter::check`]).
    ///
    /// # Errors
    /// Store failures; a run row whose id, workflow or status does not read is
    /// [`EngineError::Corrupt`].
    async fn purge_runs(&self, filter: &PurgeFilter) -> Result<PurgeBatch, EngineError>;

    // ---- Messages and composition (DESIGN "Messages and composition"). The default
    // implementations (for stores that keep no inbox, such as test wrappers) fail with a
    // configuration error. ----

    /// The run a [`Store::create_run_once`] key names (an idempotency key, a business key),
    /// if any.
    ///
    /// # Errors
    /// Store failures.
    async fn run_for_key(&self, key: &str) -> Result<Option<RunId>, EngineError> {
        let _ = key;
        Err(no_inbox("run_for_key"))
    }

    /// Points `key` at run `id`, creating the key if it is new (continue-as-new hands a
    /// business key on to the run that continues). Idempotent.
    ///
    /// # Errors
    /// [`EngineError::UnknownRun`] when `id` does not exist; store failures.
    async fn set_run_key(&self, key: &str, id: &RunId) -> Result<(), EngineError> {
        let _ = (key, id);
        Err(no_inbox("set_run_key"))
    }

    /// Posts `message` into its run's inbox, numbered one past the run's last message, and
    /// in the same transaction wakes the run when it is `waiting` (status `queued`,
    /// `wake_at` cleared), so a worker replays it and the receive finds the message. A
    /// message whose `dedupe` key was posted to this run before writes nothing and returns
    /// the earlier one's `seq` with `duplicate: true`. Posts to one run are numbered in
    /// commit order, across processes.
    ///
    /// # Errors
    /// [`EngineError::UnknownRun`] when the run does not exist; store failures.
    async fn post_message(
        &self,
        message: crate::message::NewMessage,
    ) -> Result<crate::message::Posted, EngineError> {
        let _ = message;
        Err(no_inbox("post_message"))
    }

    /// The messages of run `id` with `seq > after`, in `seq` order (all channels).
    ///
    /// # Errors
    /// Store failures.
    async fn messages(
        &self,
        id: &RunId,
        after: u64,
    ) -> Result<Vec<crate::message::Message>, EngineError> {
        let _ = (id, after);
        Err(no_inbox("messages"))
    }

    /// Records that run `id` waits for events named `name` (idempotent): [`Store::event_waiters`]
    /// lists it until [`Store::remove_event_wait`].
    ///
    /// # Errors
    /// Store failures.
    async fn add_event_wait(&self, id: &RunId, name: &str) -> Result<(), EngineError> {
        let _ = (id, name);
        Err(no_inbox("add_event_wait"))
    }

    /// Ends what [`Store::add_event_wait`] recorded (nothing to do is not an error).
    ///
    /// # Errors
    /// Store failures.
    async fn remove_event_wait(&self, id: &RunId, name: &str) -> Result<(), EngineError> {
        let _ = (id, name);
        Err(no_inbox("remove_event_wait"))
    }

    /// The runs waiting for events named `name`, oldest wait first.
    ///
    /// # Errors
    /// Store failures.
    async fn event_waiters(&self, name: &str) -> Result<Vec<RunId>, EngineError> {
        let _ = name;
        Err(no_inbox("event_waiters"))
    }

    /// Records an emitted event once per `(name, id)`: `true` when it is new, `false` when
    /// an event with this name and id was recorded before (nothing is written).
    ///
    /// # Errors
    /// Store failures.
    async fn record_event(
        &self,
        event: &crate::message::EmittedEvent,
    ) -> Result<bool, EngineError> {
        let _ = event;
        Err(no_inbox("record_event"))
    }

    /// Writes document `value` under (`kind`, `key`) at `now`, as `mode` says: whether it
    /// was written (see [`Put`]). Atomic per key. Documents are the engine's own data
    /// beside runs (credentials, API tokens, subscriptions); see [`Document`].
    ///
    /// # Errors
    /// A kind over 64 or a key over 512 bytes (or empty); store failures; the default
    /// implementation fails (this store keeps no documents).
    async fn put_document(
        &self,
        kind: &str,
        key: &str,
        value: &serde_json::Value,
        mode: Put,
        now: DateTime<Utc>,
    ) -> Result<bool, EngineError> {
        let _ = (kind, key, value, mode, now);
        Err(documents::unsupported())
    }

    /// The document under (`kind`, `key`), if any.
    ///
    /// # Errors
    /// Store failures; the default implementation fails.
    async fn document(&self, kind: &str, key: &str) -> Result<Option<Document>, EngineError> {
        let _ = (kind, key);
        Err(documents::unsupported())
    }

    /// The documents of `kind` whose key starts with `prefix` (`""`: all), by key.
    ///
    /// # Errors
    /// Store failures; the default implementation fails.
    async fn documents(&self, kind: &str, prefix: &str) -> Result<Vec<Document>, EngineError> {
        let _ = (kind, prefix);
        Err(documents::unsupported())
    }

    /// Deletes the document under (`kind`, `key`): whether there was one.
    ///
    /// # Errors
    /// Store failures; the default implementation fails.
    async fn delete_document(&self, kind: &str, key: &str) -> Result<bool, EngineError> {
        let _ = (kind, key);
        Err(documents::unsupported())
    }
}

/// What the inbox methods of a store that keeps none (a wrapper in a test) answer.
fn no_inbox(what: &str) -> EngineError {
    StoreError::new(
        StoreErrorKind::Config,
        format!(
            "this store keeps no run inboxes (`{what}`): signals, updates, events, child runs \
             and business keys need the memory, SQLite or Postgres store"
        ),
    )
    .into()
}

/// The step window [`Store::take_step_permit`] takes a permit from (`None`: the queue has
/// no step rate limit), a per-key limit without a key as a configuration error.
pub(crate) fn step_window_to_take(
    queue: &crate::queue::Queue,
    key: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Option<crate::queue::StepWindow>, EngineError> {
    crate::queue::StepWindow::of(queue, key, now).map_err(EngineError::Config)
}

/// The step window [`Store::step_permits`] counts (`None`: nothing to count: no step rate
/// limit, or a per-key one and no key).
pub(crate) fn step_window_to_count(
    queue: &crate::queue::Queue,
    key: Option<&str>,
    now: DateTime<Utc>,
) -> Option<crate::queue::StepWindow> {
    crate::queue::StepWindow::of(queue, key, now).ok().flatten()
}

/// What the queue methods of a store that keeps no queues answer.
fn no_queues(what: &str) -> EngineError {
    StoreError::new(
        StoreErrorKind::Config,
        format!(
            "this store keeps no queues (`{what}`): flow control needs the memory, SQLite or \
             Postgres store"
        ),
    )
    .into()
}

/// The error of the default schedule writes of [`Store`].
fn no_schedules() -> EngineError {
    StoreError::new(
        StoreErrorKind::Config,
        "this store keeps no schedules; use the memory, SQLite or Postgres store",
    )
    .into()
}

/// A paused workflow ([`Store::set_workflow_pause`]): `workflows pause <slug>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkflowPause {
    /// The workflow's slug.
    pub workflow: String,
    /// Who paused it (`cli:<user>`, `api`, the caller's text).
    pub by: String,
    /// When (UTC, microsecond precision in the SQL stores).
    pub at: DateTime<Utc>,
}

/// A shared store handle.
pub type SharedStore = Arc<dyn Store>;

/// What [`Store::list_runs_with_skipped`] found: the runs that decode, newest first, and
/// the rows it skipped.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RunListing {
    /// The matching runs, newest first.
    pub runs: Vec<RunRecord>,
    /// The matching rows that do not decode, in listing order.
    pub skipped: Vec<SkippedRun>,
    /// When the page is full (`limit` rows read): the [`RunFilter::cursor`] that lists the
    /// next page (opaque). `None` when there is no limit or fewer rows matched. (After a
    /// full page the next one may be empty.)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A run row left out of a listing because it does not decode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SkippedRun {
    /// The run's id (`<unreadable id>` when the id itself cannot be read).
    pub run_id: RunId,
    /// What is wrong, naming the column: e.g. ``column `status`: unknown run status
    /// `exploded`; expected one of queued, …``.
    pub reason: String,
}

impl SkippedRun {
    /// The skipped row of a decoding error ([`EngineError::Corrupt`]); any other error is
    /// given back (a store failure fails the whole listing).
    pub(crate) fn of(error: EngineError) -> Result<SkippedRun, EngineError> {
        match error {
            EngineError::Corrupt { run, message } => Ok(SkippedRun {
                run_id: RunId(run),
                reason: message,
            }),
            other => Err(other),
        }
    }
}

/// The plain columns of a run row and the end of its log, as [`Store::triage`] reads them
/// without decoding anything else: what the engine needs to append to a run whose record
/// or events do not decode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunTriage {
    /// The sequence number the next event gets (the run's `next_seq`).
    pub next_seq: u64,
    /// The run's status; `None` when the stored text is not a status this build knows.
    pub status: Option<crate::RunStatus>,
    /// The workflow slug as stored.
    pub workflow: String,
    /// The run attempt as stored (0 when it is out of range).
    pub attempt: u32,
    /// How many `run_deferred` events end the log (after its last event of any other
    /// kind): how many executions in a row found the run unexecutable.
    pub deferrals: u32,
}

/// How many `run_deferred` kinds end `kinds` (a log, oldest first).
pub(crate) fn trailing_deferrals(
    kinds: impl DoubleEndedIterator<Item = crate::event::EventKind>,
) -> u32 {
    let count = kinds
        .rev()
        .take_while(|kind| *kind == crate::event::EventKind::RunDeferred)
        .count();
    u32::try_from(count).unwrap_or(u32::MAX)
}

/// Opens a store from a URL: `sqlite://path/to/file.db` (created on first use, with its
/// parent directory), `sqlite::memory:`-style in-memory SQLite is not supported,
/// `memory:` for a process-local [`MemoryStore`], and, with the `postgres` feature,
/// `postgres://…` or `postgresql://…` for a `PostgresStore` with the default
/// options.
///
/// `open` is synchronous: a Postgres store is built with
/// `PostgresStore::connect_lazy`, which only parses the URL; it connects and applies
/// its migrations on first use (inside the caller's Tokio runtime), so an unreachable
/// server is reported by the first store operation. Use `PostgresStore::connect` to
/// find out at once.
///
/// # Errors
/// [`EngineError::Storage`]: of kind [`StoreErrorKind::Config`] when the scheme is
/// unknown, of the store's own kind when the database cannot be opened.
pub fn open(url: &str) -> Result<SharedStore, EngineError> {
    if url == "memory:" {
        return Ok(Arc::new(MemoryStore::new()));
    }
    #[cfg(feature = "sqlite")]
    if let Some(path) = url.strip_prefix("sqlite://") {
        return Ok(Arc::new(SqliteStore::open(path)?));
    }
    #[cfg(feature = "postgres")]
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(PostgresStore::connect_lazy(
            url,
            PostgresOptions::default(),
        )?));
    }
    let postgres = if cfg!(feature = "postgres") {
        ", `postgres://user@host/db`"
    } else {
        ""
    };
    Err(StoreError::new(
        StoreErrorKind::Config,
        format!(
            "unsupported database URL `{url}`: use `sqlite://path/to/file.db`{postgres} or \
             `memory:`"
        ),
    )
    .into())
}

/// Opens a store from a URL (as [`open`]) for reading only: what `runs list|get|export`
/// and `workflows check` use.
///
/// - `sqlite://path`: [`SqliteStore::open_read_only`]: read permission suffices; nothing
///   is created, migrated or switched to WAL mode, and no `-wal`/`-shm` file is created;
///   a missing file is an error ("no database at …"), not a new database.
/// - `postgres://…`: opened as by [`open`] (its pending migrations are applied on first
///   use, so the login needs the rights [`open`] needs); reads never write.
/// - `memory:`: a new, empty [`MemoryStore`].
///
/// Writes through the returned SQLite store fail with [`StoreErrorKind::Config`].
///
/// # Errors
/// As [`open`]; for SQLite also [`StoreErrorKind::Io`] when the file does not exist or
/// cannot be read, [`StoreErrorKind::Database`] when it is empty or not an SQLite
/// database, [`StoreErrorKind::Schema`] when it holds no reprise tables or a schema
/// version other than this build's.
pub fn open_read_only(url: &str) -> Result<SharedStore, EngineError> {
    #[cfg(feature = "sqlite")]
    if let Some(path) = url.strip_prefix("sqlite://") {
        return Ok(Arc::new(SqliteStore::open_read_only(path)?));
    }
    open(url)
}
