//! Where runs and their event logs live: the [`Store`] trait and its implementations,
//! [`MemoryStore`] (tests, benchmarks) and [`SqliteStore`] (the default, one file).
//!
//! Every store passes the same conformance suite (`runtime/tests/it/conformance.rs`).

use std::sync::Arc;

use async_trait::async_trait;

use crate::EngineError;
use crate::event::{Event, NewEvent, RunFilter, RunId, RunRecord, RunUpdate};

mod memory;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use memory::MemoryStore;
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
}

/// A shared store handle.
pub type SharedStore = Arc<dyn Store>;

/// Opens a store from a URL: `sqlite://path/to/file.db` (created on first use, with its
/// parent directory), `sqlite::memory:`-style in-memory SQLite is not supported,
/// `memory:` for a process-local [`MemoryStore`].
///
/// # Errors
/// [`EngineError::Store`] when the scheme is unknown or the database cannot be opened.
pub fn open(url: &str) -> Result<SharedStore, EngineError> {
    if url == "memory:" {
        return Ok(Arc::new(MemoryStore::new()));
    }
    #[cfg(feature = "sqlite")]
    if let Some(path) = url.strip_prefix("sqlite://") {
        return Ok(Arc::new(SqliteStore::open(path)?));
    }
    Err(EngineError::Store(format!(
        "unsupported database URL `{url}`: use `sqlite://path/to/file.db` or `memory:`"
    )))
}
