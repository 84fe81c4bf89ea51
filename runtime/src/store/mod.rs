//! Where runs and their event logs live: the [`Store`] trait and its implementations,
//! [`MemoryStore`] (tests, benchmarks), [`SqliteStore`] (the default, one file) and,
//! with feature `postgres`, `PostgresStore` (many processes on many machines).
//!
//! Every store passes the same conformance suite (`runtime/tests/it/conformance.rs`).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::EngineError;
pub use crate::error::{StoreError, StoreErrorKind};
use crate::event::{Event, NewEvent, RunFilter, RunId, RunRecord, RunUpdate};

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod codec;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "postgres")]
mod postgres_appends;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::{PostgresOptions, PostgresStore};

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
        Completed | Failed | Canceled => None,
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

    /// Runs matching the filter, newest first.
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, EngineError>;

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

    /// Claims up to `limit` runs that are due, choosing the earliest due first (a queued or
    /// running run is due from its creation or retry time, a sleeping or waiting one from
    /// its wake-up time; ties in creation order), and returns their leases in creation
    /// order; each is leased to `owner` until `expires_at`. Due: `queued` with no `wake_at` or one at or before `now`; `sleeping`
    /// or `waiting` with `wake_at` at or before `now` (a sleep ended, a hook timed out);
    /// `running` whose lease expired or was released (its worker died or shut down); and
    /// in every case no unexpired lease held by anyone. Atomic across processes: a run is
    /// claimed by one caller only.
    async fn claim_due(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Lease>, EngineError>;

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

    /// The durable cursor stored under `name` (a poll source's position, a cron schedule's
    /// last tick), or `None`.
    async fn cursor(&self, name: &str) -> Result<Option<serde_json::Value>, EngineError>;

    /// Stores `value` as the cursor `name`, durably, replacing any previous value.
    async fn set_cursor(&self, name: &str, value: &serde_json::Value) -> Result<(), EngineError>;
}

/// A shared store handle.
pub type SharedStore = Arc<dyn Store>;

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
