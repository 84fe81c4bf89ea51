//! The default store: one SQLite file (DESIGN "Event log"), in WAL mode, fsynced on
//! every commit, with group commit under load.
//!
//! # Schema
//!
//! Versioned migrations ([`SqliteStore::SCHEMA_VERSION`]) are recorded in
//! `schema_migrations(version INTEGER PRIMARY KEY, applied_at TEXT)`; each is applied in
//! its own `BEGIN IMMEDIATE` transaction, so two processes opening the same new file
//! never apply one twice. Version 1 creates (all tables `STRICT`):
//!
//! - `runs(id TEXT PRIMARY KEY, workflow, status, input, output, error, attempt,
//!   "trigger", created_at, updated_at, wake_at, next_seq)`, indexed by
//!   `(status, created_at)`, `(workflow, created_at)` and `(created_at)`;
//! - `events(run_id → runs.id, seq, kind, correlation_id, attempt, at, payload,
//!   PRIMARY KEY (run_id, seq)) WITHOUT ROWID`.
//!
//! Version 2 adds the lease of a run (`runs.lease_owner`, `lease_expires_at`, the fencing
//! token `fence` and `cancel_requested`), `run_keys(key PRIMARY KEY, run_id)` for
//! exactly-once creation ([`Store::create_run_once`]) and `cursors(name PRIMARY KEY,
//! value, updated_at)`. Lease operations go through the writer thread like appends, in
//! `BEGIN IMMEDIATE` transactions, so two processes never claim one run.
//!
//! Version 3 adds `runs.due_at`, a virtual generated column: when the run may next be
//! claimed (a queued run from its creation or retry time, a sleeping or waiting run from
//! its wake-up time, a running one whose worker vanished from its creation; never before
//! its lease expires; NULL for ended runs and hooks without timeout), with the partial
//! index `runs_due`. A claim reads that index from its start and stops after `limit` due
//! runs: runs in flight under a lease and runs asleep for hours cost it nothing.
//!
//! Version 4 adds `runs.pause_requested` (who asked for a pause the lease holder has not
//! reached yet, [`Store::request_pause`]) and `paused_workflows(workflow PRIMARY KEY,
//! paused_by, paused_at)`, whose runs claims skip ([`Store::set_workflow_pause`]).
//!
//! Version 5 adds `schedules(name PRIMARY KEY, definition, paused, created_at, created_by,
//! updated_at, updated_by)`: schedules kept as data and the paused state of schedules
//! declared in code ([`Store::list_schedules`]); a handful of rows, read by name.
//!
//! Version 6 adds the partial index `runs_ended_updated_at (updated_at) WHERE status IN
//! ('completed', 'failed', 'canceled')`, which purges ([`Store::purge_runs`]) walk from
//! the oldest ended run and stop after one batch, and `run_keys_run_id`, so a purged run's
//! keys are found without a scan.
//!
//! Version 7 adds `run_tags(run_id → runs.id ON DELETE CASCADE, key, value_type,
//! value_text, value_num, created_at, PRIMARY KEY (run_id, key))`, indexed by `(key,
//! value_type, value_text, created_at, run_id)` and `(key, value_type, value_num,
//! created_at, run_id)`, and the trigger `run_tags_index` that upserts a tag from each
//! `run_tagged` event inserted into `events`: the index is written in the transaction of
//! the append that carries the event, whatever wrote it (see `tags`).
//!
//! Version 8 adds the run inbox: `messages(run_id → runs.id ON DELETE CASCADE, seq,
//! channel, payload, dedupe, created_at, PRIMARY KEY (run_id, seq)) WITHOUT ROWID`, with
//! the partial unique index `messages_dedupe (run_id, dedupe) WHERE dedupe IS NOT NULL`
//! ([`Store::post_message`] numbers a run's messages 1, 2, 3, … inside the writer's
//! transaction, which also wakes a `waiting` run); `event_waits(name, run_id → runs.id ON
//! DELETE CASCADE, since, PRIMARY KEY (name, run_id))`, listed oldest wait first by rowid
//! ([`Store::event_waiters`]); and `emitted_events(name, id, created_at, PRIMARY KEY
//! (name, id))`, which records each emitted event once ([`Store::record_event`]).
//!
//! Version 9 adds flow control (DESIGN "Flow control", `crate::queue`): `runs.queue`,
//! `queue_key`, `priority` and `admitted_at` (when a claim admitted the run into its
//! queue), the indexes a claim's admission reads (`runs_queue_waiting`,
//! `runs_queue_active`, `runs_queue_admitted_at`, `runs_queue_admitted`), narrows
//! `runs_due` to runs that need no admission, and adds `workers(id PRIMARY KEY, info,
//! expires_at)`, the registry of live workers, each `info` a JSON
//! [`crate::queue::WorkerInfo`]. Admission happens inside the claim's write transaction,
//! so the limits hold across processes sharing the file (see `sqlite_queues.rs`).
//!
//! Version 10 keeps `events` in insertion order: a rowid table (same columns) with the
//! unique index `events_run_seq (run_id, seq)` instead of a `WITHOUT ROWID` table
//! clustered by `(run_id, seq)`. Under many concurrent runs each append then writes its
//! rows to the table's last page and one small index entry, instead of a full row into
//! a leaf page of its own run: fewer pages per commit, fewer WAL frames per step. A run's
//! log is read through the index (rows of one run are in seq order there). The migration
//! copies the existing events and recreates the `run_tags_index` trigger.
//!
//! Version 11 adds `documents (kind, key, value, created_at, updated_at)`: the engine's own
//! data beside runs (credentials, API tokens, subscriptions; [`crate::store::Document`]).
//!
//! Version 12 adds the partial index `runs_queue_created_at (queue, created_at) WHERE
//! queue IS NOT NULL`: a listing of one queue's runs ([`crate::event::RunFilter::queue`])
//! reads only that queue's runs, newest first.
//!
//! Version 13 adds `step_permits(queue, scope, at)` with the index `step_permits_window
//! (queue, scope, at)`: the step permits of queues' step rate limits
//! ([`crate::queue::StepWindow`]), taken in the writer's transaction so the limit holds
//! across processes; stale rows (two periods old) are pruned as permits are taken.
//!
//! Statuses, triggers and event kinds are stored as their `as_str()` text, JSON values
//! (`input`, `output`, `error`, `payload`) as JSON text, and timestamps as `INTEGER`
//! microseconds since the Unix epoch (UTC): exact to the microsecond (finer parts of a
//! `DateTime<Utc>` are truncated), compact, and ordered by plain integer comparison.
//! In the `sqlite3` shell, `datetime(at / 1e6, 'unixepoch', 'subsec')` shows them.
//!
//! # Writes: one writer thread, group commit
//!
//! One thread owns the only write connection. [`Store::create_run`] and
//! [`Store::append`] encode their rows (JSON and all) on the caller's task, send them
//! to that thread and wait for its reply. The thread takes every request queued at
//! that moment (up to 1,024), applies them in one transaction — each inside its own
//! `SAVEPOINT`, so a request that fails (a `first_seq` conflict, an unknown run, a
//! duplicate id) is rolled back alone while the others go on — commits once, and only
//! then replies. So a write is acknowledged only once it is durable, and N concurrent
//! writers share one fsync. The thread stops when the store is dropped.
//!
//! # Reads
//!
//! Reads run on a pool of at most four read-only connections, each inside
//! [`tokio::task::spawn_blocking`] (further reads wait for a free one); each read is one SQL statement, and WAL gives it a
//! consistent snapshot, so a read never sees half of an append. They must therefore be
//! called from within a Tokio runtime (as every [`Store`] method is).
//!
//! A row that cannot be decoded (unknown status or event kind, invalid JSON, an
//! out-of-range number, a gap in the sequence numbers) is reported as
//! [`EngineError::Corrupt`] naming the run; it never panics. A listing skips such a run
//! row and reports it ([`Store::list_runs_with_skipped`]) instead of failing whole, and
//! [`Store::triage`] reads the plain columns the engine needs to defer or park a run
//! whose rows do not decode. Rows are decoded by the
//! codec shared with the Postgres store (`store::codec`), through [`SqlRow`].
//!
//! # Errors
//!
//! SQLite failures are [`EngineError::Storage`], with the `rusqlite::Error` as their
//! source and a [`StoreErrorKind`] from its code: `SQLITE_BUSY`/`SQLITE_LOCKED` (after the
//! busy timeout) are [`StoreErrorKind::Busy`], constraint violations
//! [`StoreErrorKind::Constraint`], file and permission problems [`StoreErrorKind::Io`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior};
use tokio::sync::oneshot;

#[path = "sqlite_documents.rs"]
mod documents;
#[path = "sqlite_queues.rs"]
mod queues;
#[path = "sqlite_schedules.rs"]
mod schedules;

use super::codec::{self, EventLog, SqlRow, append_refusal, decode_run, fence_param, micros};
use super::purge::{self, PurgeBatch, PurgeFilter, PurgedRun};
use super::search_sql;
use super::{
    Acquired, Append, Lease, RunListing, RunTriage, SkippedRun, Store, StoreError, StoreErrorKind,
    WorkflowPause,
};
use crate::EngineError;
use crate::event::{Event, NewEvent, RunFilter, RunId, RunRecord, RunStatus, RunUpdate};

/// The migrations, in order: entry `i` brings the schema to version `i + 1`.
///
/// Append only: never edit or reorder a released migration.
const MIGRATIONS: &[&str] = &[
    // Version 1: runs and their events.
    r#"
    CREATE TABLE runs (
        id          TEXT PRIMARY KEY NOT NULL,
        workflow    TEXT NOT NULL,
        status      TEXT NOT NULL,
        input       TEXT NOT NULL,
        output      TEXT,
        error       TEXT,
        attempt     INTEGER NOT NULL,
        "trigger"   TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL,
        wake_at     INTEGER,
        next_seq    INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX runs_status_created_at ON runs (status, created_at);
    CREATE INDEX runs_workflow_created_at ON runs (workflow, created_at);
    CREATE INDEX runs_created_at ON runs (created_at);
    CREATE TABLE events (
        run_id          TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        seq             INTEGER NOT NULL,
        kind            TEXT NOT NULL,
        correlation_id  TEXT,
        attempt         INTEGER NOT NULL,
        at              INTEGER NOT NULL,
        payload         TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    ) WITHOUT ROWID, STRICT;
    "#,
    // Version 2: leases with fencing tokens, cancellation requests, run keys (exactly-once
    // creation for triggers) and durable cursors.
    r#"
    ALTER TABLE runs ADD COLUMN lease_owner TEXT;
    ALTER TABLE runs ADD COLUMN lease_expires_at INTEGER;
    ALTER TABLE runs ADD COLUMN fence INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX runs_status_wake_at ON runs (status, wake_at);
    CREATE INDEX runs_unfinished ON runs (created_at)
        WHERE status IN ('queued', 'running', 'sleeping', 'waiting');
    CREATE TABLE run_keys (
        key     TEXT PRIMARY KEY NOT NULL,
        run_id  TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE
    ) STRICT;
    CREATE TABLE cursors (
        name        TEXT PRIMARY KEY NOT NULL,
        value       TEXT NOT NULL,
        updated_at  INTEGER NOT NULL
    ) STRICT;
    "#,
    // Version 3: claims walk only due runs, through `due_at` (when a run may next be
    // claimed; see the module docs), so runs leased in flight and runs asleep for hours
    // cost a claim nothing.
    r#"
    ALTER TABLE runs ADD COLUMN due_at INTEGER GENERATED ALWAYS AS (
        CASE
            WHEN status = 'queued' OR status = 'running' THEN
                max(CASE WHEN status = 'queued' THEN coalesce(wake_at, created_at)
                         ELSE created_at END,
                    coalesce(lease_expires_at, 0))
            WHEN (status = 'sleeping' OR status = 'waiting') AND wake_at IS NOT NULL THEN
                max(wake_at, coalesce(lease_expires_at, 0))
        END
    ) VIRTUAL;
    CREATE INDEX runs_due ON runs (due_at) WHERE due_at IS NOT NULL;
    DROP INDEX runs_unfinished;
    "#,
    // Version 4: pausing runs (a request the lease holder sees, like cancellation) and
    // workflows (no claims of their runs while paused).
    r#"
    ALTER TABLE runs ADD COLUMN pause_requested TEXT;
    CREATE TABLE paused_workflows (
        workflow    TEXT PRIMARY KEY NOT NULL,
        paused_by   TEXT NOT NULL,
        paused_at   INTEGER NOT NULL
    ) STRICT;
    "#,
    // Version 5: schedules kept as data (and paused states of schedules declared in
    // code), keyed by name; see `Store::list_schedules`.
    r#"
    CREATE TABLE schedules (
        name        TEXT PRIMARY KEY NOT NULL,
        definition  TEXT,
        paused      INTEGER NOT NULL DEFAULT 0,
        created_at  INTEGER NOT NULL,
        created_by  TEXT NOT NULL,
        updated_at  INTEGER NOT NULL,
        updated_by  TEXT NOT NULL
    ) STRICT;
    "#,
    // Version 6: purges (retention) walk ended runs by their last update, oldest first,
    // and delete a run's keys without scanning `run_keys`.
    r#"
    CREATE INDEX runs_ended_updated_at ON runs (updated_at)
        WHERE status IN ('completed', 'failed', 'canceled');
    CREATE INDEX run_keys_run_id ON run_keys (run_id);
    "#,
    // Version 7: searchable tags (`ctx.tag`). One row per run and key, the latest value;
    // written by a trigger on `events` from each `run_tagged` event, so the index is
    // updated in the transaction of the append that carries the event, whichever path
    // writes it. Strings and booleans in `value_text`, numbers and times (µs) in
    // `value_num`; `created_at` is the run's, so that a `key = value` lookup reads its
    // matches newest first straight from the index.
    r#"
    CREATE TABLE run_tags (
        run_id      TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        key         TEXT NOT NULL,
        value_type  TEXT NOT NULL,
        value_text  TEXT,
        value_num   REAL,
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (run_id, key)
    ) WITHOUT ROWID, STRICT;
    CREATE INDEX run_tags_text ON run_tags (key, value_type, value_text, created_at, run_id);
    CREATE INDEX run_tags_num ON run_tags (key, value_type, value_num, created_at, run_id);
    CREATE TRIGGER run_tags_index AFTER INSERT ON events
    WHEN NEW.kind = 'run_tagged'
    BEGIN
        INSERT INTO run_tags (run_id, key, value_type, value_text, value_num, created_at)
        SELECT NEW.run_id,
               json_extract(NEW.payload, '$.key'),
               json_extract(NEW.payload, '$.type'),
               CASE json_extract(NEW.payload, '$.type')
                   WHEN 'string' THEN json_extract(NEW.payload, '$.value')
                   WHEN 'bool' THEN
                       CASE WHEN json_extract(NEW.payload, '$.value') THEN 'true'
                            ELSE 'false' END
               END,
               CASE json_extract(NEW.payload, '$.type')
                   WHEN 'number' THEN json_extract(NEW.payload, '$.value')
                   WHEN 'time' THEN json_extract(NEW.payload, '$.epoch_us')
               END,
               runs.created_at
          FROM runs WHERE runs.id = NEW.run_id
        ON CONFLICT (run_id, key) DO UPDATE SET
            value_type = excluded.value_type,
            value_text = excluded.value_text,
            value_num = excluded.value_num;
    END;
    "#,
    // Version 8: the run inbox (messages addressed to one run, numbered per run in commit
    // order), the runs waiting for emitted events, and the emitted events seen (each
    // `(name, id)` once). See `Store::post_message`.
    r#"
    CREATE TABLE messages (
        run_id      TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        seq         INTEGER NOT NULL,
        channel     TEXT NOT NULL,
        payload     TEXT NOT NULL,
        dedupe      TEXT,
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (run_id, seq)
    ) WITHOUT ROWID, STRICT;
    CREATE UNIQUE INDEX messages_dedupe ON messages (run_id, dedupe) WHERE dedupe IS NOT NULL;
    CREATE TABLE event_waits (
        name    TEXT NOT NULL,
        run_id  TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        since   INTEGER NOT NULL,
        PRIMARY KEY (name, run_id)
    ) STRICT;
    CREATE INDEX event_waits_run_id ON event_waits (run_id);
    CREATE TABLE emitted_events (
        name        TEXT NOT NULL,
        id          TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (name, id)
    ) WITHOUT ROWID, STRICT;
    "#,
    // Version 9: flow control. A run's queue, its key in the queue, its priority and
    // when it was admitted (`Store::claim`); the registry of live workers
    // (`Store::worker_heartbeat`), each row a JSON `WorkerInfo`. `runs_due` is narrowed
    // to the runs a claim takes without admission; the queue indexes are described in
    // `sqlite_queues.rs`.
    r#"
    ALTER TABLE runs ADD COLUMN queue TEXT;
    ALTER TABLE runs ADD COLUMN queue_key TEXT;
    ALTER TABLE runs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN admitted_at INTEGER;
    DROP INDEX runs_due;
    CREATE INDEX runs_due ON runs (due_at)
        WHERE due_at IS NOT NULL AND (queue IS NULL OR admitted_at IS NOT NULL);
    CREATE INDEX runs_queue_waiting ON runs (queue, priority DESC, due_at)
        WHERE queue IS NOT NULL AND admitted_at IS NULL AND due_at IS NOT NULL;
    CREATE INDEX runs_queue_active ON runs (queue, queue_key)
        WHERE admitted_at IS NOT NULL AND status NOT IN ('completed', 'failed', 'canceled');
    CREATE INDEX runs_queue_admitted_at ON runs (queue, admitted_at)
        WHERE admitted_at IS NOT NULL;
    CREATE INDEX runs_queue_admitted ON runs (queue, queue_key, admitted_at)
        WHERE admitted_at IS NOT NULL;
    CREATE TABLE workers (
        id          TEXT PRIMARY KEY NOT NULL,
        info        TEXT NOT NULL,
        expires_at  INTEGER NOT NULL
    ) STRICT;
    "#,
    // Version 10: events in insertion order (a rowid table) with a unique index on
    // `(run_id, seq)`, instead of clustered by `(run_id, seq)`: with many runs appending
    // at once, a batch of appends writes the table's tail pages and small index entries
    // rather than a random leaf page per run (see the module docs). The existing events
    // are copied in log order; dropping the old table drops `run_tags_index`, which is
    // created again as in version 7.
    r#"
    CREATE TABLE events_v10 (
        run_id          TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        seq             INTEGER NOT NULL,
        kind            TEXT NOT NULL,
        correlation_id  TEXT,
        attempt         INTEGER NOT NULL,
        at              INTEGER NOT NULL,
        payload         TEXT NOT NULL
    ) STRICT;
    INSERT INTO events_v10 (run_id, seq, kind, correlation_id, attempt, at, payload)
        SELECT run_id, seq, kind, correlation_id, attempt, at, payload
          FROM events ORDER BY run_id, seq;
    DROP TABLE events;
    ALTER TABLE events_v10 RENAME TO events;
    CREATE UNIQUE INDEX events_run_seq ON events (run_id, seq);
    CREATE TRIGGER run_tags_index AFTER INSERT ON events
    WHEN NEW.kind = 'run_tagged'
    BEGIN
        INSERT INTO run_tags (run_id, key, value_type, value_text, value_num, created_at)
        SELECT NEW.run_id,
               json_extract(NEW.payload, '$.key'),
               json_extract(NEW.payload, '$.type'),
               CASE json_extract(NEW.payload, '$.type')
                   WHEN 'string' THEN json_extract(NEW.payload, '$.value')
                   WHEN 'bool' THEN
                       CASE WHEN json_extract(NEW.payload, '$.value') THEN 'true'
                            ELSE 'false' END
               END,
               CASE json_extract(NEW.payload, '$.type')
                   WHEN 'number' THEN json_extract(NEW.payload, '$.value')
                   WHEN 'time' THEN json_extract(NEW.payload, '$.epoch_us')
               END,
               runs.created_at
          FROM runs WHERE runs.id = NEW.run_id
        ON CONFLICT (run_id, key) DO UPDATE SET
            value_type = excluded.value_type,
            value_text = excluded.value_text,
            value_num = excluded.value_num;
    END;
    "#,
    // Version 11: documents, the engine's own data beside runs (credentials encrypted at
    // rest, API tokens by hash, subscriptions), as opaque JSON by kind and key.
    r#"
    CREATE TABLE documents (
        kind        TEXT NOT NULL,
        key         TEXT NOT NULL,
        value       TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL,
        PRIMARY KEY (kind, key)
    ) STRICT, WITHOUT ROWID;
    "#,
    // Version 12: listing the runs of one queue (`RunFilter::queue`, `runs list --queue`),
    // newest first, reads only that queue's runs. Partial: runs in no queue cost nothing.
    r#"
    CREATE INDEX runs_queue_created_at ON runs (queue, created_at) WHERE queue IS NOT NULL;
    "#,
    // Version 13: step rate limits (`Store::take_step_permit`): one row per step permit
    // taken, by queue and scope (the run's key for a per-key limit, '' for the queue);
    // rows two periods old are deleted when the next permit of their scope is taken.
    r#"
    CREATE TABLE step_permits (
        queue   TEXT NOT NULL,
        scope   TEXT NOT NULL,
        at      INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX step_permits_window ON step_permits (queue, scope, at);
    "#,
];

/// The most requests the writer thread puts into one transaction.
const MAX_BATCH: usize = 1024;

/// The writer connection's prepared-statement cache (all its statements fit).
const WRITER_STATEMENTS: usize = 128;

/// The most reads running at once, and so the most read connections and blocking threads
/// the store uses for reads. More concurrent reads wait for a free connection; without
/// this bound, a thousand runs starting at once would each get a blocking thread (Tokio
/// grows its pool to 512) and a fresh connection.
const MAX_READERS: usize = 4;

/// How hard SQLite pushes a commit to the disk (`PRAGMA synchronous`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Synchronous {
    /// `FULL` (the default): every commit is fsynced before the write is acknowledged.
    /// Nothing acknowledged is lost on a process crash *or* a power failure.
    #[default]
    Full,
    /// `NORMAL`: commits are fsynced only at WAL checkpoints. Still safe against a
    /// crash of the process (`kill -9`: the WAL is in the OS page cache), but a power
    /// failure or kernel crash may lose the last acknowledged commits (never corrupts
    /// the file). Trades durability of the most recent steps for fewer fsyncs.
    Normal,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// Options of [`SqliteStore::open_with`]. `SqliteOptions::default()` is what
/// [`SqliteStore::open`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SqliteOptions {
    /// Durability of commits; default [`Synchronous::Full`] (fsync on every commit).
    pub synchronous: Synchronous,
    /// How long a statement waits for a lock held by another connection (another
    /// process using the same file) before failing with "database is locked";
    /// default 5 s.
    pub busy_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Full,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// A [`Store`] in one SQLite file: durable, crash-safe, shared by every process that
/// opens the same path. See the module docs for its schema, batching and durability.
pub struct SqliteStore {
    path: PathBuf,
    /// `None` while dropping, and always in a store opened with
    /// [`SqliteStore::open_read_only`].
    writer: Option<Writer>,
    readers: Arc<Readers>,
    /// One permit per read connection (see [`MAX_READERS`]).
    read_permits: tokio::sync::Semaphore,
}

struct Writer {
    requests: mpsc::Sender<Request>,
    thread: JoinHandle<()>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// The schema version this build creates and understands (the number of migrations).
    pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

    /// Opens (creating it and its parent directories if needed) the database at `path`
    /// with the default [`SqliteOptions`]: WAL, `synchronous=FULL` (fsync on every
    /// commit), a 5 s busy timeout, foreign keys on; then applies pending migrations and
    /// starts the writer thread.
    ///
    /// A new database file is created with mode 0600 (its `-wal` and `-shm` files get the
    /// same mode from SQLite); an existing one that other users may access is used, with
    /// a warning (logged through `tracing`) saying how to restrict it. A file of 0 bytes
    /// becomes a new database, with a warning, unless a non-empty `-wal` file lies beside
    /// it: then the database file was truncated, and opening it would discard the log, so
    /// that is an error.
    ///
    /// # Errors
    /// [`EngineError::Storage`] naming the file and what to do: [`StoreErrorKind::Io`]
    /// when the directory or file cannot be created, read or written (permission denied,
    /// a directory, a full disk), [`StoreErrorKind::Database`] when the file is not an
    /// SQLite database, is damaged, or is empty beside a non-empty `-wal` file,
    /// [`StoreErrorKind::Schema`] when a migration fails or the database was written by a
    /// newer version of reprise (its schema version is higher than
    /// [`SqliteStore::SCHEMA_VERSION`]).
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, EngineError> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// Like [`SqliteStore::open`], with explicit [`SqliteOptions`].
    ///
    /// # Errors
    /// As [`SqliteStore::open`].
    pub fn open_with(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<SqliteStore, EngineError> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::new(
                    StoreErrorKind::Io,
                    format!("cannot create directory {}: {e}", parent.display()),
                )
                .with_source(e)
            })?;
        }
        match inspect(&path, true)? {
            FileState::Missing => create_private(&path)?,
            FileState::Empty => {
                warn_loose_mode(&path);
                tracing::warn!(
                    path = %path.display(),
                    "the database file {} was empty (0 bytes): it is now a new, empty \
                     database",
                    path.display()
                );
            }
            FileState::Database => warn_loose_mode(&path),
        }
        let at = |what: &str| format!("{what} {}", path.display());

        let mut conn = Connection::open(&path).map_err(|e| open_error(&path, "opening it", e))?;
        conn.busy_timeout(options.busy_timeout)
            .ctx(&at("cannot configure"))?;
        // Switching a new file to WAL needs an exclusive lock, and SQLite does not call the
        // busy handler for it: when several processes open a new file at once, retry
        // until the busy timeout, as the busy handler would.
        let started = std::time::Instant::now();
        let mode: String = loop {
            match conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)) {
                Ok(mode) => break mode,
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if matches!(
                        e.code,
                        rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                    ) && started.elapsed() < options.busy_timeout =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(open_error(&path, "switching it to WAL mode", e)),
            }
        };
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::new(
                StoreErrorKind::Database,
                format!(
                    "{}: journal mode is `{mode}`, expected `wal`",
                    path.display()
                ),
            )
            .into());
        }
        conn.pragma_update(None, "synchronous", options.synchronous.pragma())
            .ctx(&at("cannot configure"))?;
        conn.pragma_update(None, "foreign_keys", true)
            .ctx(&at("cannot configure"))?;
        migrate(&mut conn).map_err(|e| explain(&path, e))?;

        let readers = Arc::new(Readers {
            path: path.clone(),
            busy_timeout: options.busy_timeout,
            idle: Mutex::new(Vec::new()),
            mode: Mutex::new(ReadMode::Shared),
        });
        // Open one reader now, so that a problem shows up here rather than on first read.
        let reader = readers.open().map_err(|e| explain(&path, e))?;
        readers.put_back(reader);

        let (requests, inbox) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("reprise-sqlite-writer".to_owned())
            .spawn(move || writer_loop(conn, inbox, options.synchronous))
            .map_err(|e| {
                StoreError::new(
                    StoreErrorKind::Io,
                    format!("cannot start the SQLite writer thread: {e}"),
                )
                .with_source(e)
            })?;

        Ok(SqliteStore {
            path,
            writer: Some(Writer { requests, thread }),
            readers,
            read_permits: tokio::sync::Semaphore::new(MAX_READERS),
        })
    }

    /// Opens the existing database at `path` for reading only (`runs list`, `runs get`,
    /// `runs export`, `workflows check`): read permission on the file suffices. Nothing is
    /// created or migrated, the journal mode is left alone, and no writer thread starts;
    /// every write through this store fails with [`StoreErrorKind::Config`].
    ///
    /// No file is created beside the database either: when no process has it open (no
    /// `-wal` file), it is read as an immutable file (no locks, no `-wal`/`-shm`), and
    /// every read checks afterwards that the file's length and modification time did not
    /// change; if another process wrote to it meanwhile, that read fails with
    /// [`StoreErrorKind::Busy`] (run it again) and later reads go through SQLite's
    /// shared-memory index like any reader. When a `-wal` file exists (a process has it
    /// open, or one crashed), it is read through that log, with `SQLITE_OPEN_READ_ONLY`.
    ///
    /// # Errors
    /// [`EngineError::Storage`] naming the file and what to do: [`StoreErrorKind::Io`]
    /// when there is no file at `path` ("no database at …") or it cannot be read,
    /// [`StoreErrorKind::Database`] when it is empty (0 bytes), not an SQLite database or
    /// damaged, [`StoreErrorKind::Schema`] when it holds no reprise tables or its schema
    /// version is not [`SqliteStore::SCHEMA_VERSION`] (a newer reprise wrote it; or an
    /// older one did, and a command that writes must migrate it first).
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<SqliteStore, EngineError> {
        let path = path.as_ref().to_path_buf();
        let shown = path.display();
        match inspect(&path, false)? {
            FileState::Missing => {
                return Err(StoreError::new(
                    StoreErrorKind::Io,
                    format!(
                        "no database at {shown}: nothing has been recorded there (commands \
                         that write, such as `workflows run` or `worker`, create it); check \
                         --db or REPRISE_DATABASE_URL"
                    ),
                )
                .into());
            }
            FileState::Empty => {
                return Err(StoreError::new(
                    StoreErrorKind::Database,
                    format!(
                        "{shown} is empty (0 bytes), not a reprise database: nothing was ever \
                         recorded in it; check --db or REPRISE_DATABASE_URL"
                    ),
                )
                .into());
            }
            FileState::Database => {}
        }
        let mode = if sidecar(&path, "-wal").exists() {
            ReadMode::ReadOnly
        } else {
            match FileStamp::of(&path) {
                Some(stamp) => ReadMode::Immutable(stamp),
                None => ReadMode::ReadOnly,
            }
        };
        let readers = Arc::new(Readers {
            path: path.clone(),
            busy_timeout: SqliteOptions::default().busy_timeout,
            idle: Mutex::new(Vec::new()),
            mode: Mutex::new(mode),
        });
        let reader = readers.open().map_err(|e| explain(&path, e))?;
        let version = schema_version(&reader.conn).map_err(|e| explain(&path, e))?;
        readers.check_unchanged().map_err(|e| explain(&path, e))?;
        readers.put_back(reader);
        let latest = i64::from(SqliteStore::SCHEMA_VERSION);
        let problem = match version {
            None => Some(
                "it holds no reprise tables: it is an SQLite database, but not one reprise \
                 wrote; check --db or REPRISE_DATABASE_URL"
                    .to_owned(),
            ),
            Some(v) if v > latest => Some(format!(
                "it has schema version {v}, but this build of reprise supports versions up \
                 to {latest}: it was written by a newer reprise; upgrade reprise to read it"
            )),
            Some(v) if v < latest => Some(format!(
                "it has schema version {v}, older than this build's {latest}: a command that \
                 writes (`worker`, `dev`, `workflows run`, `runs resume`) migrates it, then \
                 read-only commands can read it"
            )),
            Some(_) => None,
        };
        if let Some(problem) = problem {
            return Err(StoreError::new(
                StoreErrorKind::Schema,
                format!("cannot read {shown}: {problem}"),
            )
            .into());
        }
        Ok(SqliteStore {
            path,
            writer: None,
            readers,
            read_permits: tokio::sync::Semaphore::new(MAX_READERS),
        })
    }

    /// The database file's path, as given to [`SqliteStore::open`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn write(&self, op: Op) -> Result<Reply, EngineError> {
        if self.readers.is_read_only() {
            return Err(StoreError::new(
                StoreErrorKind::Config,
                format!(
                    "{} was opened read-only (SqliteStore::open_read_only): open it with \
                     SqliteStore::open to write",
                    self.path.display()
                ),
            )
            .into());
        }
        let stopped = || {
            EngineError::from(StoreError::new(
                StoreErrorKind::Unavailable,
                "the SQLite writer thread has stopped",
            ))
        };
        let writer = self.writer.as_ref().ok_or_else(stopped)?;
        let (reply, answer) = oneshot::channel();
        writer
            .requests
            .send(Request { op, reply })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// A write that answers [`Reply::Changed`] (schedules, documents): whether it changed
    /// a row.
    async fn changed_write(&self, op: Op) -> Result<bool, EngineError> {
        match self.write(op).await? {
            Reply::Changed(changed) => Ok(changed),
            _ => Err(unexpected_reply()),
        }
    }

    async fn read<T, F>(&self, f: F) -> Result<T, EngineError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, EngineError> + Send + 'static,
    {
        let _permit = self.read_permits.acquire().await.map_err(|_| {
            StoreError::new(StoreErrorKind::Unavailable, "the SQLite store is closing")
        })?;
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || {
            let reader = readers.take()?;
            let result = f(&reader.conn);
            // A read of an immutable file counts only if nobody wrote to the file meanwhile.
            let unchanged = readers.check_unchanged();
            readers.put_back(reader);
            unchanged.and(result)
        })
        .await
        .map_err(|e| {
            StoreError::new(
                StoreErrorKind::Unavailable,
                format!("SQLite read task failed: {e}"),
            )
            .with_source(e)
        })?
    }
}

impl Drop for SqliteStore {
    /// Stops the writer thread after it has finished the requests already queued, and
    /// waits for it (at most one last commit): the write connection is closed when this
    /// returns, and the idle read connections right after.
    fn drop(&mut self) {
        if let Some(Writer { requests, thread }) = self.writer.take() {
            drop(requests);
            // A panicked writer has nothing left to clean up; its error was already
            // reported to the callers whose replies it dropped.
            let _ = thread.join();
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn run_for_key(&self, key: &str) -> Result<Option<RunId>, EngineError> {
        let key = key.to_owned();
        let id: Option<String> = self
            .read(move |conn| {
                let what = format!("cannot read the run of key `{key}`");
                conn.prepare_cached("SELECT run_id FROM run_keys WHERE key = ?1")
                    .ctx(&what)?
                    .query_row([&key], |row| row.get(0))
                    .optional()
                    .ctx(&what)
            })
            .await?;
        Ok(id.map(RunId))
    }

    async fn set_run_key(&self, key: &str, id: &RunId) -> Result<(), EngineError> {
        self.write(Op::SetRunKey(key.to_owned(), id.0.clone()))
            .await
            .map(drop)
    }

    async fn post_message(
        &self,
        message: crate::message::NewMessage,
    ) -> Result<crate::message::Posted, EngineError> {
        let op = Op::PostMessage(EncodedMessage {
            payload: serde_json::to_string(&message.payload)?,
            run_id: message.run_id.0,
            channel: message.channel,
            dedupe: message.dedupe,
            at: micros(message.at),
        });
        match self.write(op).await? {
            Reply::Posted(posted) => Ok(posted),
            _ => Err(unexpected_reply()),
        }
    }

    async fn messages(
        &self,
        id: &RunId,
        after: u64,
    ) -> Result<Vec<crate::message::Message>, EngineError> {
        let id = id.clone();
        self.read(move |conn| {
            let sql = format!(
                "SELECT {} FROM messages WHERE run_id = ?1 AND seq > ?2 ORDER BY seq",
                codec::message_columns("")
            );
            let what = format!("cannot read the inbox of run `{id}`");
            let mut stmt = conn.prepare_cached(&sql).ctx_run(&what, &id.0)?;
            let mut rows = stmt
                .query(rusqlite::params![id.0, codec::seq_param(after)])
                .ctx_run(&what, &id.0)?;
            let mut messages = Vec::new();
            while let Some(row) = rows.next().ctx_run(&what, &id.0)? {
                messages.push(codec::decode_message(&id.0, row)?);
            }
            Ok(messages)
        })
        .await
    }

    async fn add_event_wait(&self, id: &RunId, name: &str) -> Result<(), EngineError> {
        let op = Op::EventWait {
            run_id: id.0.clone(),
            name: name.to_owned(),
            since: Some(micros(Utc::now())),
        };
        self.write(op).await.map(drop)
    }

    async fn remove_event_wait(&self, id: &RunId, name: &str) -> Result<(), EngineError> {
        let op = Op::EventWait {
            run_id: id.0.clone(),
            name: name.to_owned(),
            since: None,
        };
        self.write(op).await.map(drop)
    }

    async fn event_waiters(&self, name: &str) -> Result<Vec<RunId>, EngineError> {
        let name = name.to_owned();
        let ids: Vec<String> = self
            .read(move |conn| {
                let what = format!("cannot read the runs waiting for events `{name}`");
                conn.prepare_cached("SELECT run_id FROM event_waits WHERE name = ?1 ORDER BY rowid")
                    .ctx(&what)?
                    .query_map([&name], |row| row.get(0))
                    .ctx(&what)?
                    .collect::<Result<_, _>>()
                    .ctx(&what)
            })
            .await?;
        Ok(ids.into_iter().map(RunId).collect())
    }

    async fn record_event(
        &self,
        event: &crate::message::EmittedEvent,
    ) -> Result<bool, EngineError> {
        let op = Op::RecordEvent {
            name: event.name.clone(),
            id: event.id.clone(),
            at: micros(event.at),
        };
        match self.write(op).await? {
            Reply::Changed(new) => Ok(new),
            _ => Err(unexpected_reply()),
        }
    }

    async fn create_run(&self, record: RunRecord, created: NewEvent) -> Result<(), EngineError> {
        match self
            .write(Op::Create(encode_create(record, &created)?))
            .await?
        {
            Reply::Done => Ok(()),
            _ => Err(unexpected_reply()),
        }
    }

    async fn create_run_once(
        &self,
        key: &str,
        record: RunRecord,
        created: NewEvent,
    ) -> Result<Option<RunId>, EngineError> {
        let op = Op::CreateOnce(key.to_owned(), encode_create(record, &created)?);
        match self.write(op).await? {
            Reply::Created(existing) => Ok(existing),
            _ => Err(unexpected_reply()),
        }
    }

    async fn acquire(
        &self,
        id: &RunId,
        owner: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<Acquired, EngineError> {
        let op = Op::Acquire {
            id: id.0.clone(),
            owner: owner.to_owned(),
            now: micros(now),
            expires_at: micros(expires_at),
        };
        match self.write(op).await? {
            Reply::Acquired(acquired) => Ok(acquired),
            _ => Err(unexpected_reply()),
        }
    }

    async fn claim(
        &self,
        request: &crate::queue::ClaimRequest<'_>,
    ) -> Result<Vec<Lease>, EngineError> {
        if request.limit == 0 {
            return Ok(Vec::new());
        }
        match self
            .write(Op::Claim(queues::encode_claim(request)?))
            .await?
        {
            Reply::Claimed(leases) => Ok(leases),
            _ => Err(unexpected_reply()),
        }
    }

    async fn create_run_gated(
        &self,
        record: RunRecord,
        created: NewEvent,
        gate: &crate::queue::StartGate,
    ) -> Result<crate::queue::Gated, EngineError> {
        let op = queues::QueueOp::CreateGated(Box::new((
            encode_create(record, &created)?,
            queues::encode_gate(gate)?,
        )));
        match self.write(Op::Queue(op)).await? {
            Reply::Gated(gated) => Ok(gated),
            _ => Err(unexpected_reply()),
        }
    }

    async fn queue_totals(
        &self,
        queue: &crate::queue::Queue,
        key: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(crate::queue::QueueTotals, Option<crate::queue::KeyTotals>), EngineError> {
        let queue = queue.clone();
        let key = key.map(str::to_owned);
        self.read(move |conn| queues::read_totals(conn, &queue, key.as_deref(), now))
            .await
    }

    async fn take_step_permit(
        &self,
        queue: &crate::queue::Queue,
        key: Option<&str>,
        clock: &std::sync::Arc<dyn crate::Clock>,
    ) -> Result<Result<(), DateTime<Utc>>, EngineError> {
        let Some(window) = super::step_window_to_take(queue, key, clock.now())? else {
            return Ok(Ok(()));
        };
        let op = queues::QueueOp::TakeStepPermit(Box::new((window, clock.clone())));
        match self.write(Op::Queue(op)).await? {
            Reply::Permit(decision) => Ok(decision),
            _ => Err(unexpected_reply()),
        }
    }

    async fn step_permits(
        &self,
        queue: &crate::queue::Queue,
        key: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(u64, Option<DateTime<Utc>>), EngineError> {
        let Some(window) = super::step_window_to_count(queue, key, now) else {
            return Ok((0, None));
        };
        self.read(move |conn| queues::step_permits_in_window(conn, &window))
            .await
    }

    async fn worker_heartbeat(&self, worker: &crate::queue::WorkerInfo) -> Result<(), EngineError> {
        let op = queues::QueueOp::Heartbeat(
            worker.id.clone(),
            serde_json::to_string(worker)?,
            micros(worker.expires_at),
        );
        self.write(Op::Queue(op)).await.map(drop)
    }

    async fn worker_stopped(&self, id: &str) -> Result<(), EngineError> {
        self.write(Op::Queue(queues::QueueOp::Stopped(id.to_owned())))
            .await
            .map(drop)
    }

    async fn live_workers(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<crate::queue::WorkerInfo>>, EngineError> {
        let now = micros(now);
        self.read(move |conn| queues::live_workers(conn, now))
            .await
            .map(Some)
    }

    async fn renew(
        &self,
        lease: &Lease,
        expires_at: DateTime<Utc>,
    ) -> Result<Option<Lease>, EngineError> {
        match self
            .write(Op::Renew(lease.clone(), micros(expires_at)))
            .await?
        {
            Reply::Renewed(lease) => Ok(lease),
            _ => Err(unexpected_reply()),
        }
    }

    async fn release(&self, lease: &Lease) -> Result<(), EngineError> {
        self.write(Op::Release(lease.clone())).await.map(drop)
    }

    async fn request_cancel(&self, id: &RunId) -> Result<(), EngineError> {
        self.write(Op::RequestCancel(id.0.clone())).await.map(drop)
    }

    async fn request_pause(&self, id: &RunId, by: Option<&str>) -> Result<(), EngineError> {
        self.write(Op::RequestPause(id.0.clone(), by.map(str::to_owned)))
            .await
            .map(drop)
    }

    async fn set_workflow_pause(
        &self,
        workflow: &str,
        pause: Option<&WorkflowPause>,
    ) -> Result<bool, EngineError> {
        let pause = pause.map(|p| (p.by.clone(), micros(p.at)));
        match self
            .write(Op::SetWorkflowPause(workflow.to_owned(), pause))
            .await?
        {
            Reply::Changed(changed) => Ok(changed),
            _ => Err(unexpected_reply()),
        }
    }

    async fn workflow_pauses(&self) -> Result<Vec<WorkflowPause>, EngineError> {
        let rows: Vec<(String, String, i64)> = self
            .read(|conn| {
                conn.prepare_cached(
                    "SELECT workflow, paused_by, paused_at FROM paused_workflows ORDER BY workflow",
                )
                .ctx("cannot read paused workflows")?
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
                .ctx("cannot read paused workflows")?
                .collect::<Result<_, _>>()
                .ctx("cannot read paused workflows")
            })
            .await?;
        rows.into_iter()
            .map(|(workflow, by, at)| {
                Ok(WorkflowPause {
                    at: codec::timestamp(&workflow, "paused_at", at)?,
                    workflow,
                    by,
                })
            })
            .collect()
    }

    async fn next_wake(&self) -> Result<Option<DateTime<Utc>>, EngineError> {
        let next: Option<i64> = self
            .read(|conn| {
                conn.prepare_cached(
                    "SELECT MIN(t) FROM (
                         SELECT MIN(wake_at) AS t FROM runs
                          WHERE status IN ('queued', 'sleeping', 'waiting')
                         UNION ALL
                         SELECT MIN(lease_expires_at) FROM runs WHERE status = 'running')",
                )
                .ctx("cannot read wake-up times")?
                .query_row([], |row| row.get(0))
                .ctx("cannot read wake-up times")
            })
            .await?;
        codec::next_wake(next)
    }

    async fn run_counts(&self, now: DateTime<Utc>) -> Result<Vec<super::RunCount>, EngineError> {
        let now = micros(now);
        self.read(move |conn| {
            let what = "cannot count runs";
            let mut stmt = conn
                .prepare_cached(
                    "SELECT workflow, status, COUNT(*),
                            SUM(due_at IS NOT NULL AND due_at <= ?1
                                AND (lease_owner IS NULL OR lease_expires_at <= ?1))
                       FROM runs GROUP BY workflow, status",
                )
                .ctx(what)?;
            let mut rows = stmt.query([now]).ctx(what)?;
            let mut counts = Vec::new();
            while let Some(row) = rows.next().ctx(what)? {
                counts.push(codec::decode_run_count(row)?);
            }
            Ok(counts)
        })
        .await
    }

    async fn cursor(&self, name: &str) -> Result<Option<serde_json::Value>, EngineError> {
        let key = name.to_owned();
        let text: Option<String> = self
            .read(move |conn| {
                conn.prepare_cached("SELECT value FROM cursors WHERE name = ?1")
                    .ctx("cannot read cursor")?
                    .query_row([&key], |row| row.get(0))
                    .optional()
                    .ctx("cannot read cursor")
            })
            .await?;
        text.map(|text| codec::cursor(name, &text)).transpose()
    }

    async fn set_cursor(&self, name: &str, value: &serde_json::Value) -> Result<(), EngineError> {
        let op = Op::SetCursor(
            name.to_owned(),
            serde_json::to_string(value)?,
            micros(Utc::now()),
        );
        self.write(op).await.map(drop)
    }

    async fn list_schedules(&self) -> Result<Vec<super::ScheduleRow>, EngineError> {
        self.read(schedules::read_all).await
    }

    async fn put_document(
        &self,
        kind: &str,
        key: &str,
        value: &serde_json::Value,
        mode: super::Put,
        now: DateTime<Utc>,
    ) -> Result<bool, EngineError> {
        super::documents::check(kind, key)?;
        let op = Op::Document(documents::DocumentOp::Put {
            kind: kind.to_owned(),
            key: key.to_owned(),
            value: serde_json::to_string(value)?,
            mode,
            at: micros(now),
        });
        self.changed_write(op).await
    }

    async fn document(
        &self,
        kind: &str,
        key: &str,
    ) -> Result<Option<super::Document>, EngineError> {
        let (kind, key) = (kind.to_owned(), key.to_owned());
        self.read(move |conn| documents::read_one(conn, &kind, &key))
            .await
    }

    async fn documents(
        &self,
        kind: &str,
        prefix: &str,
    ) -> Result<Vec<super::Document>, EngineError> {
        let (kind, prefix) = (kind.to_owned(), prefix.to_owned());
        self.read(move |conn| documents::read_prefix(conn, &kind, &prefix))
            .await
    }

    async fn delete_document(&self, kind: &str, key: &str) -> Result<bool, EngineError> {
        let op = Op::Document(documents::DocumentOp::Delete {
            kind: kind.to_owned(),
            key: key.to_owned(),
        });
        self.changed_write(op).await
    }

    async fn schedule(&self, name: &str) -> Result<Option<super::ScheduleRow>, EngineError> {
        let name = name.to_owned();
        self.read(move |conn| schedules::read_one(conn, &name))
            .await
    }

    async fn create_schedule(&self, row: &super::ScheduleRow) -> Result<bool, EngineError> {
        let op = Op::Schedule(schedules::ScheduleOp::Create(schedules::encode(row)?));
        self.changed_write(op).await
    }

    async fn update_schedule(&self, row: &super::ScheduleRow) -> Result<bool, EngineError> {
        let op = Op::Schedule(schedules::ScheduleOp::Update(schedules::encode(row)?));
        self.changed_write(op).await
    }

    async fn delete_schedule(&self, name: &str) -> Result<bool, EngineError> {
        let op = Op::Schedule(schedules::ScheduleOp::Delete(name.to_owned()));
        self.changed_write(op).await
    }

    async fn set_schedule_paused(
        &self,
        name: &str,
        paused: bool,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        let op = Op::Schedule(schedules::set_paused(name, paused, by, at));
        self.changed_write(op).await.map(drop)
    }

    async fn create_run_with_events(
        &self,
        record: RunRecord,
        created: NewEvent,
        events: Vec<NewEvent>,
    ) -> Result<(), EngineError> {
        let create = encode_create(record, &created)?;
        let events = events
            .iter()
            .map(EncodedEvent::new)
            .collect::<Result<Vec<_>, _>>()?;
        match self.write(Op::CreateWithEvents(create, events)).await? {
            Reply::Done => Ok(()),
            _ => Err(unexpected_reply()),
        }
    }

    async fn append(&self, append: Append) -> Result<(), EngineError> {
        append.check_release()?;
        let Append {
            run_id,
            first_seq,
            events,
            update,
            fence,
            release,
        } = append;
        let first_seq = i64::try_from(first_seq).map_err(|_| {
            StoreError::new(
                StoreErrorKind::Database,
                format!(
                    "cannot append to run `{run_id}`: sequence number {first_seq} is out of range"
                ),
            )
            .with_run(run_id.as_str())
        })?;
        let updated_at = micros(events.last().map_or_else(Utc::now, |e| e.at));
        let events = events
            .iter()
            .map(EncodedEvent::new)
            .collect::<Result<Vec<_>, _>>()?;
        let RunUpdate {
            status,
            attempt,
            output,
            error,
            wake_at,
            inbox_seen,
        } = update;
        // Only a suspension on a wait checks the inbox (see `memory::woken_by_inbox`).
        let inbox_seen = inbox_seen
            .filter(|_| status == Some(RunStatus::Waiting))
            .map(codec::seq_param);
        let op = Op::Append(EncodedAppend {
            run_id: run_id.0,
            first_seq,
            fence,
            release,
            events,
            status: status.map(RunStatus::as_str),
            attempt: attempt.map(i64::from),
            output: output.as_ref().map(serde_json::to_string).transpose()?,
            error: error.as_ref().map(serde_json::to_string).transpose()?,
            wake_at: wake_at.map(|w| w.map(micros)),
            updated_at,
            inbox_seen,
        });
        self.write(op).await.map(drop)
    }

    async fn run(&self, id: &RunId) -> Result<Option<RunRecord>, EngineError> {
        let id = id.clone();
        self.read(move |conn| {
            let sql = format!("SELECT {} FROM runs WHERE id = ?1", codec::run_columns(""));
            let what = format!("cannot read run `{id}`");
            let mut stmt = conn.prepare_cached(&sql).ctx_run(&what, &id.0)?;
            let mut rows = stmt.query([&id.0]).ctx_run(&what, &id.0)?;
            match rows.next().ctx_run(&what, &id.0)? {
                Some(row) => decode_run(row).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    async fn events(&self, id: &RunId) -> Result<Vec<Event>, EngineError> {
        let id = id.clone();
        self.read(move |conn| {
            let sql = format!(
                "SELECT {} FROM events WHERE run_id = ?1 ORDER BY seq",
                codec::event_columns("")
            );
            let what = format!("cannot read the events of run `{id}`");
            let mut stmt = conn.prepare_cached(&sql).ctx_run(&what, &id.0)?;
            let mut rows = stmt.query([&id.0]).ctx_run(&what, &id.0)?;
            let mut events = EventLog::new(&id, 0);
            while let Some(row) = rows.next().ctx_run(&what, &id.0)? {
                events.push(row)?;
            }
            Ok(events.finish())
        })
        .await
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, EngineError> {
        Ok(self.list_runs_with_skipped(filter).await?.runs)
    }

    async fn list_runs_with_skipped(&self, filter: &RunFilter) -> Result<RunListing, EngineError> {
        let filter = filter.clone();
        let cursor = filter.checked_cursor()?;
        self.read(move |conn| {
            let dialect = search_sql::Dialect {
                runs: "runs",
                tags: "run_tags",
                placeholder: |n, _| format!("?{n}"),
                columns: search_sql::qualified_run_columns(""),
            };
            let (sql, params) = search_sql::list_sql(&dialect, &filter, cursor.as_ref());
            let params: Vec<SqlValue> = params
                .into_iter()
                .map(|p| match p {
                    search_sql::Param::Text(t) => SqlValue::Text(t),
                    search_sql::Param::Int(i) => SqlValue::Integer(i),
                    search_sql::Param::Real(r) => SqlValue::Real(r),
                })
                .collect();
            let mut stmt = conn.prepare_cached(&sql).ctx("cannot list runs")?;
            let mut rows = stmt
                .query(rusqlite::params_from_iter(params))
                .ctx("cannot list runs")?;
            let mut listing = RunListing::default();
            while let Some(row) = rows.next().ctx("cannot list runs")? {
                // A row that does not decode is reported, not fatal to the listing.
                match decode_run(row) {
                    Ok(run) => listing.runs.push(run),
                    Err(error) => listing.skipped.push(SkippedRun::of(error)?),
                }
            }
            let read = listing.runs.len() + listing.skipped.len();
            listing.next_cursor = crate::tags::next_cursor(filter.limit, read, &listing.runs);
            Ok(listing)
        })
        .await
    }

    async fn triage(&self, id: &RunId) -> Result<Option<RunTriage>, EngineError> {
        let id = id.clone();
        self.read(move |conn| {
            let what = format!("cannot read run `{id}`");
            let mut stmt = conn
                .prepare_cached(&codec::triage_sql("runs", "events", "?1"))
                .ctx_run(&what, &id.0)?;
            let mut rows = stmt.query([&id.0]).ctx_run(&what, &id.0)?;
            match rows.next().ctx_run(&what, &id.0)? {
                Some(row) => codec::decode_triage(&id.0, row).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    async fn purge_runs(&self, filter: &PurgeFilter) -> Result<PurgeBatch, EngineError> {
        if !filter.dry_run {
            return match self.write(Op::Purge(filter.clone())).await? {
                Reply::Purged(runs) => Ok(PurgeBatch {
                    count: runs.len() as u64,
                    runs,
                }),
                _ => Err(unexpected_reply()),
            };
        }
        let filter = filter.clone();
        self.read(move |conn| {
            let what = "cannot count runs to purge";
            let (clause, params) = purge_where(&filter);
            let batch = i64::try_from(filter.batch()).unwrap_or(i64::MAX);
            let all: Vec<SqlValue> = std::iter::once(SqlValue::Integer(batch))
                .chain(params)
                .collect();
            let count: i64 = conn
                .prepare_cached(&format!(
                    "SELECT count(*) FROM runs INDEXED BY runs_ended_updated_at
                     WHERE {clause} AND ?1 IS NOT NULL"
                ))
                .ctx(what)?
                .query_row(rusqlite::params_from_iter(all.clone()), |row| row.get(0))
                .ctx(what)?;
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT id, workflow, status FROM runs INDEXED BY runs_ended_updated_at
                     WHERE {clause} ORDER BY updated_at, rowid LIMIT ?1"
                ))
                .ctx(what)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(all)).ctx(what)?;
            let mut runs = Vec::new();
            while let Some(row) = rows.next().ctx(what)? {
                runs.push(purge::purged_run(row)?);
            }
            Ok(PurgeBatch {
                runs,
                count: u64::try_from(count).unwrap_or(0),
            })
        })
        .await
    }
}

fn encode_create(record: RunRecord, created: &NewEvent) -> Result<EncodedCreate, EngineError> {
    Ok(EncodedCreate {
        id: record.id.0,
        workflow: record.workflow,
        status: record.status.as_str(),
        input: serde_json::to_string(&record.input)?,
        output: record
            .output
            .as_ref()
            .map(serde_json::to_string)
            .transpose()?,
        error: record
            .error
            .as_ref()
            .map(serde_json::to_string)
            .transpose()?,
        attempt: i64::from(record.attempt),
        trigger: record.trigger.as_str(),
        created_at: micros(record.created_at),
        updated_at: micros(record.updated_at),
        wake_at: record.wake_at.map(micros),
        queue: codec::encode_queue(record.queue.as_ref()),
        event: EncodedEvent::new(created)?,
    })
}

// ---------------------------------------------------------------------------------------
// Migrations

fn migrate(conn: &mut Connection) -> Result<(), EngineError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version     INTEGER PRIMARY KEY,
             applied_at  TEXT NOT NULL
         ) STRICT;",
    )
    .ctx("cannot create the schema_migrations table")?;
    let latest = i64::from(SqliteStore::SCHEMA_VERSION);
    loop {
        // IMMEDIATE: take the write lock before reading the version, so two processes
        // opening a fresh file cannot both apply the same migration.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("cannot start a migration")?;
        let current: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                [],
                |row| row.get(0),
            )
            .ctx("cannot read the schema version")?;
        if current > latest {
            return Err(StoreError::new(
                StoreErrorKind::Schema,
                format!(
                    "the database has schema version {current}, but this build of reprise \
                     supports versions up to {latest}: it was written by a newer reprise; \
                     upgrade reprise to open it"
                ),
            )
            .into());
        }
        if current == latest {
            tx.commit().ctx("cannot read the schema version")?;
            return Ok(());
        }
        let version = current + 1;
        let Some(sql) = usize::try_from(current)
            .ok()
            .and_then(|i| MIGRATIONS.get(i))
        else {
            return Err(StoreError::new(
                StoreErrorKind::Schema,
                format!("invalid schema version {current}"),
            )
            .into());
        };
        let failed = |e: rusqlite::Error| {
            let what = format!("migration to schema version {version} failed");
            let kind = match sql_kind(&e) {
                StoreErrorKind::Database => StoreErrorKind::Schema,
                kind => kind,
            };
            EngineError::from(StoreError::new(kind, format!("{what}: {e}")).with_source(e))
        };
        tx.execute_batch(sql).map_err(failed)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            rusqlite::params![
                version,
                Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
            ],
        )
        .map_err(failed)?;
        tx.commit().map_err(failed)?;
    }
}

// ---------------------------------------------------------------------------------------
// The writer thread

/// A write, encoded on the caller's task so the writer thread only runs SQL.
enum Op {
    Create(EncodedCreate),
    CreateOnce(String, EncodedCreate),
    Append(EncodedAppend),
    Acquire {
        id: String,
        owner: String,
        now: i64,
        expires_at: i64,
    },
    /// [`Store::claim`].
    Claim(queues::EncodedClaim),
    /// Gated creation and the worker registry.
    Queue(queues::QueueOp),
    Renew(Lease, i64),
    Release(Lease),
    RequestCancel(String),
    SetCursor(String, String, i64),
    RequestPause(String, Option<String>),
    /// A workflow's pause (`Some((by, at))`) or its resumption (`None`).
    SetWorkflowPause(String, Option<(String, i64)>),
    Schedule(schedules::ScheduleOp),
    /// A document write ([`Store::put_document`], [`Store::delete_document`]).
    Document(documents::DocumentOp),
    /// A run with its `run_created` event and the events after it (a fork's prefix).
    CreateWithEvents(EncodedCreate, Vec<EncodedEvent>),
    /// [`Store::purge_runs`], not a dry run.
    Purge(PurgeFilter),
    /// [`Store::set_run_key`]: `(key, run id)`.
    SetRunKey(String, String),
    /// [`Store::post_message`].
    PostMessage(EncodedMessage),
    /// [`Store::add_event_wait`] (`since: Some(now)`) or [`Store::remove_event_wait`]
    /// (`since: None`).
    EventWait {
        run_id: String,
        name: String,
        since: Option<i64>,
    },
    /// [`Store::record_event`].
    RecordEvent {
        name: String,
        id: String,
        at: i64,
    },
}

impl Op {
    /// Whether the op only takes, renews or gives back a lease (a claim's admissions
    /// included: like the lease, an admission matters while its holder runs, and the
    /// holder's first durable append makes it durable), or renews the worker registry.
    fn is_lease_bookkeeping(&self) -> bool {
        match self {
            Op::Acquire { .. } | Op::Claim(..) | Op::Renew(..) | Op::Release(..) => true,
            Op::Queue(op) => op.is_bookkeeping(),
            _ => false,
        }
    }
}

struct Request {
    op: Op,
    reply: oneshot::Sender<Result<Reply, EngineError>>,
}

/// What a write returns besides success.
enum Reply {
    Done,
    Created(Option<RunId>),
    Acquired(Acquired),
    Claimed(Vec<Lease>),
    Renewed(Option<Lease>),
    /// Whether a schedule write changed a row.
    Changed(bool),
    Purged(Vec<PurgedRun>),
    Posted(crate::message::Posted),
    /// What a gated creation did.
    Gated(crate::queue::Gated),
    /// Whether a step permit was taken (else when the next frees).
    Permit(Result<(), DateTime<Utc>>),
}

fn unexpected_reply() -> EngineError {
    StoreError::new(
        StoreErrorKind::Database,
        "the SQLite writer answered a different request",
    )
    .into()
}

struct EncodedEvent {
    kind: &'static str,
    correlation_id: Option<String>,
    attempt: i64,
    at: i64,
    payload: String,
}

impl EncodedEvent {
    fn new(event: &NewEvent) -> Result<Self, EngineError> {
        Ok(Self {
            kind: event.kind.as_str(),
            correlation_id: event.correlation_id.clone(),
            attempt: i64::from(event.attempt),
            at: micros(event.at),
            payload: serde_json::to_string(&event.payload)?,
        })
    }
}

struct EncodedCreate {
    id: String,
    workflow: String,
    status: &'static str,
    input: String,
    output: Option<String>,
    error: Option<String>,
    attempt: i64,
    trigger: &'static str,
    created_at: i64,
    updated_at: i64,
    wake_at: Option<i64>,
    /// `(queue, queue_key, priority)`, see `codec::encode_queue`.
    queue: (Option<String>, Option<String>, i64),
    event: EncodedEvent,
}

struct EncodedAppend {
    run_id: String,
    first_seq: i64,
    fence: Option<u64>,
    /// Gives the lease of `fence` back in the same statement (`Append::release`).
    release: bool,
    events: Vec<EncodedEvent>,
    status: Option<&'static str>,
    attempt: Option<i64>,
    output: Option<String>,
    error: Option<String>,
    /// `Some(None)` clears `wake_at`.
    wake_at: Option<Option<i64>>,
    updated_at: i64,
    /// For an append that suspends the run as `waiting`: the highest inbox seq its
    /// execution read; a later message leaves the run `queued` (`RunUpdate::inbox_seen`).
    inbox_seen: Option<i64>,
}

impl EncodedAppend {
    /// Whether the append changes no field of the run but `updated_at` and `next_seq`.
    fn only_events(&self) -> bool {
        !self.release
            && self.status.is_none()
            && self.attempt.is_none()
            && self.output.is_none()
            && self.error.is_none()
            && self.wake_at.is_none()
            && self.inbox_seen.is_none()
    }
}

/// A message for [`Store::post_message`], its payload as JSON text.
struct EncodedMessage {
    run_id: String,
    channel: String,
    payload: String,
    dedupe: Option<String>,
    at: i64,
}

fn writer_loop(mut conn: Connection, inbox: mpsc::Receiver<Request>, synchronous: Synchronous) {
    // Every statement the writer runs stays prepared (rusqlite keeps 16 by default; the
    // writer has more, and a statement evicted mid-workload is parsed again each time).
    conn.set_prepared_statement_cache_capacity(WRITER_STATEMENTS);
    let mut ops = Vec::with_capacity(MAX_BATCH);
    let mut replies = Vec::with_capacity(MAX_BATCH);
    // `recv` fails once every sender is gone (the store was dropped) and the queue is empty.
    while let Ok(first) = inbox.recv() {
        ops.push(first.op);
        replies.push(first.reply);
        while ops.len() < MAX_BATCH {
            match inbox.try_recv() {
                Ok(request) => {
                    ops.push(request.op);
                    replies.push(request.reply);
                }
                Err(_) => break,
            }
        }
        // Lease bookkeeping needs no fsync of its own: a lease only matters while its
        // holder runs, and a power failure ends every holder on this machine; the next
        // fsynced commit makes it durable anyway. A batch of nothing but lease operations
        // therefore commits with `synchronous=NORMAL` (no fsync in WAL mode).
        let relax = synchronous == Synchronous::Full && ops.iter().all(Op::is_lease_bookkeeping);
        if relax {
            let _ = conn.pragma_update(None, "synchronous", Synchronous::Normal.pragma());
        }
        let results = write_batch(&mut conn, &ops);
        if relax {
            // If this fails, later commits would skip their fsync: fail them loudly instead.
            if let Err(e) = conn.pragma_update(None, "synchronous", synchronous.pragma()) {
                eprintln!("reprise: cannot restore synchronous=FULL on the SQLite writer: {e}");
                return;
            }
        }
        ops.clear();
        for (reply, result) in replies.drain(..).zip(results) {
            // The caller may have stopped waiting (its future was dropped); the write
            // stands either way.
            let _ = reply.send(result);
        }
    }
}

/// Applies `ops` in one transaction, each in its own savepoint, and commits once.
/// Returns one result per op; `Ok` only if the commit succeeded.
fn write_batch(conn: &mut Connection, ops: &[Op]) -> Vec<Result<Reply, EngineError>> {
    let mut results: Vec<Result<Reply, EngineError>> = Vec::with_capacity(ops.len());
    let outcome = (|| -> rusqlite::Result<()> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for op in ops {
            tx.prepare_cached("SAVEPOINT request")?.execute([])?;
            let result = apply(&tx, op);
            if result.is_err() {
                tx.prepare_cached("ROLLBACK TO request")?.execute([])?;
            }
            tx.prepare_cached("RELEASE request")?.execute([])?;
            results.push(result);
        }
        tx.commit()
    })();
    if let Err(e) = outcome {
        // Nothing of this batch was committed: every request that had succeeded so far
        // fails with the transaction's error; the rest fail with it too.
        let failed = || Err(shared_error("SQLite write failed", &e));
        for result in &mut results {
            if result.is_ok() {
                *result = failed();
            }
        }
        results.resize_with(ops.len(), failed);
    }
    results
}

fn apply(conn: &Connection, op: &Op) -> Result<Reply, EngineError> {
    match op {
        Op::Create(create) => apply_create(conn, create).map(|()| Reply::Done),
        Op::CreateOnce(key, create) => apply_create_once(conn, key, create).map(Reply::Created),
        Op::Append(append) => apply_append(conn, append).map(|()| Reply::Done),
        Op::Acquire {
            id,
            owner,
            now,
            expires_at,
        } => apply_acquire(conn, id, owner, *now, *expires_at).map(Reply::Acquired),
        Op::Claim(claim) => queues::apply_claim(conn, claim).map(Reply::Claimed),
        Op::Queue(op) => queues::apply(conn, op),
        Op::Renew(lease, expires_at) => apply_renew(conn, lease, *expires_at).map(Reply::Renewed),
        Op::Release(lease) => {
            conn.prepare_cached(
                "UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL
                 WHERE id = ?1 AND fence = ?2",
            )
            .ctx_run(&release_failed(lease), lease.run_id.as_str())?
            .execute(rusqlite::params![lease.run_id.0, fence_param(lease.fence)])
            .ctx_run(&release_failed(lease), lease.run_id.as_str())?;
            Ok(Reply::Done)
        }
        Op::RequestCancel(id) => {
            let changed = conn
                .prepare_cached("UPDATE runs SET cancel_requested = 1 WHERE id = ?1")
                .ctx_run(&cancel_failed(id), id)?
                .execute([id])
                .ctx_run(&cancel_failed(id), id)?;
            if changed == 0 {
                return Err(EngineError::UnknownRun(id.clone()));
            }
            Ok(Reply::Done)
        }
        Op::RequestPause(id, requested) => {
            let what = || format!("cannot request a pause of run `{id}`");
            let changed = conn
                .prepare_cached("UPDATE runs SET pause_requested = ?2 WHERE id = ?1")
                .ctx_run(&what(), id)?
                .execute(rusqlite::params![id, requested])
                .ctx_run(&what(), id)?;
            if changed == 0 {
                return Err(EngineError::UnknownRun(id.clone()));
            }
            Ok(Reply::Done)
        }
        Op::SetWorkflowPause(workflow, pause) => {
            let what = format!("cannot change the pause of workflow `{workflow}`");
            let changed = match pause {
                Some((by, at)) => conn
                    .prepare_cached(
                        "INSERT INTO paused_workflows (workflow, paused_by, paused_at)
                         VALUES (?1, ?2, ?3) ON CONFLICT (workflow) DO NOTHING",
                    )
                    .ctx(&what)?
                    .execute(rusqlite::params![workflow, by, at])
                    .ctx(&what)?,
                None => conn
                    .prepare_cached("DELETE FROM paused_workflows WHERE workflow = ?1")
                    .ctx(&what)?
                    .execute([workflow])
                    .ctx(&what)?,
            };
            Ok(Reply::Changed(changed > 0))
        }
        Op::SetCursor(name, value, at) => {
            conn.prepare_cached(
                "INSERT INTO cursors (name, value, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value,
                                                  updated_at = excluded.updated_at",
            )
            .ctx("cannot store cursor")?
            .execute(rusqlite::params![name, value, at])
            .ctx("cannot store cursor")?;
            Ok(Reply::Done)
        }
        Op::Schedule(op) => schedules::apply(conn, op),
        Op::Document(op) => documents::apply(conn, op),
        Op::CreateWithEvents(create, events) => {
            apply_create_with_events(conn, create, events).map(|()| Reply::Done)
        }
        Op::Purge(filter) => apply_purge(conn, filter).map(Reply::Purged),
        Op::SetRunKey(key, id) => {
            let what = format!("cannot point key `{key}` at run `{id}`");
            let changed = conn
                .prepare_cached(
                    "INSERT INTO run_keys (key, run_id) SELECT ?1, id FROM runs WHERE id = ?2
                     ON CONFLICT (key) DO UPDATE SET run_id = excluded.run_id",
                )
                .ctx_run(&what, id)?
                .execute([key, id])
                .ctx_run(&what, id)?;
            if changed == 0 {
                return Err(EngineError::UnknownRun(id.clone()));
            }
            Ok(Reply::Done)
        }
        Op::PostMessage(message) => apply_post(conn, message).map(Reply::Posted),
        Op::EventWait {
            run_id,
            name,
            since,
        } => {
            let what = format!("cannot change the wait of run `{run_id}` for events `{name}`");
            match since {
                // Nothing for a run that does not exist (it waits for nothing).
                Some(since) => conn
                    .prepare_cached(
                        "INSERT INTO event_waits (name, run_id, since)
                         SELECT ?1, id, ?3 FROM runs WHERE id = ?2
                         ON CONFLICT (name, run_id) DO NOTHING",
                    )
                    .ctx_run(&what, run_id)?
                    .execute(rusqlite::params![name, run_id, since]),
                None => conn
                    .prepare_cached("DELETE FROM event_waits WHERE name = ?1 AND run_id = ?2")
                    .ctx_run(&what, run_id)?
                    .execute([name, run_id]),
            }
            .ctx_run(&what, run_id)?;
            Ok(Reply::Done)
        }
        Op::RecordEvent { name, id, at } => {
            let what = format!("cannot record event `{name}` `{id}`");
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO emitted_events (name, id, created_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (name, id) DO NOTHING",
                )
                .ctx(&what)?
                .execute(rusqlite::params![name, id, at])
                .ctx(&what)?;
            Ok(Reply::Changed(inserted > 0))
        }
    }
}

/// Posts a message into its run's inbox (inside the writer's transaction, so posts are
/// numbered in commit order): the earlier message's seq for a duplicate `dedupe`, else
/// one past the run's last, and a `waiting` run becomes `queued`.
fn apply_post(
    conn: &Connection,
    m: &EncodedMessage,
) -> Result<crate::message::Posted, EngineError> {
    let run = m.run_id.as_str();
    let what = format!("cannot post a message to run `{run}`");
    let exists = conn
        .prepare_cached("SELECT 1 FROM runs WHERE id = ?1")
        .ctx_run(&what, run)?
        .exists([run])
        .ctx_run(&what, run)?;
    if !exists {
        return Err(EngineError::UnknownRun(run.to_owned()));
    }
    if let Some(dedupe) = &m.dedupe {
        let earlier: Option<i64> = conn
            .prepare_cached("SELECT seq FROM messages WHERE run_id = ?1 AND dedupe = ?2")
            .ctx_run(&what, run)?
            .query_row([run, dedupe.as_str()], |row| row.get(0))
            .optional()
            .ctx_run(&what, run)?;
        if let Some(seq) = earlier {
            return Ok(crate::message::Posted {
                seq: codec::number(run, "messages.seq", seq)?,
                duplicate: true,
            });
        }
    }
    let seq: i64 = conn
        .prepare_cached(
            "INSERT INTO messages (run_id, seq, channel, payload, dedupe, created_at)
             SELECT ?1, COALESCE(MAX(seq), 0) + 1, ?2, ?3, ?4, ?5
               FROM messages WHERE run_id = ?1
             RETURNING seq",
        )
        .ctx_run(&what, run)?
        .query_row(
            rusqlite::params![run, m.channel, m.payload, m.dedupe, m.at],
            |row| row.get(0),
        )
        .ctx_run(&what, run)?;
    conn.prepare_cached(
        "UPDATE runs SET status = 'queued', wake_at = NULL, updated_at = ?2
         WHERE id = ?1 AND status = 'waiting'",
    )
    .ctx_run(&what, run)?
    .execute(rusqlite::params![run, m.at])
    .ctx_run(&what, run)?;
    Ok(crate::message::Posted {
        seq: codec::number(run, "messages.seq", seq)?,
        duplicate: false,
    })
}

/// [`apply_create`], then `events` from sequence number 1, in the same savepoint.
fn apply_create_with_events(
    conn: &Connection,
    create: &EncodedCreate,
    events: &[EncodedEvent],
) -> Result<(), EngineError> {
    apply_create(conn, create)?;
    for (seq, event) in (1..).zip(events) {
        insert_event(conn, &create.id, seq, event)?;
    }
    let what = format!("cannot create run `{}`", create.id);
    conn.prepare_cached("UPDATE runs SET next_seq = ?2 WHERE id = ?1")
        .ctx_run(&what, &create.id)?
        .execute(rusqlite::params![create.id, 1 + events.len() as i64])
        .ctx_run(&what, &create.id)?;
    Ok(())
}

/// The `WHERE` clause (from the second parameter on) and parameters of the runs a purge
/// matches: `?1` is the batch size or unused.
fn purge_where(filter: &PurgeFilter) -> (String, Vec<SqlValue>) {
    let mut params = vec![SqlValue::Integer(micros(filter.before))];
    // The first term is the partial index's own condition, word for word, so the planner
    // may use it (it must see that the query implies the index's WHERE).
    let mut sql = format!(
        "status IN ({}) AND status IN ({}) AND updated_at < ?2",
        purge::ENDED_SQL,
        purge::status_list(filter)
    );
    if let Some(workflow) = &filter.workflow {
        params.push(SqlValue::Text(workflow.clone()));
        sql.push_str(&format!(" AND workflow = ?{}", params.len() + 1));
    }
    (sql, params)
}

/// Deletes one batch of ended runs and their dependent rows (inside the writer's
/// transaction, so nothing else writes in between); returns them.
fn apply_purge(conn: &Connection, filter: &PurgeFilter) -> Result<Vec<PurgedRun>, EngineError> {
    let what = "cannot purge runs";
    let (clause, params) = purge_where(filter);
    // The status is checked again by the DELETE itself: only an ended run is ever deleted.
    let sql = format!(
        "DELETE FROM runs
          WHERE id IN (SELECT id FROM runs INDEXED BY runs_ended_updated_at WHERE {clause}
                       ORDER BY updated_at, rowid LIMIT ?1)
            AND status IN ({ended})
         RETURNING id, workflow, status, updated_at",
        ended = purge::ENDED_SQL
    );
    let batch = i64::try_from(filter.batch()).unwrap_or(i64::MAX);
    let all: Vec<SqlValue> = std::iter::once(SqlValue::Integer(batch))
        .chain(params)
        .collect();
    let mut stmt = conn.prepare_cached(&sql).ctx(what)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(all)).ctx(what)?;
    let mut purged = Vec::new();
    while let Some(row) = rows.next().ctx(what)? {
        purged.push((row.int(3).unwrap_or(0), purge::purged_run(row)?));
    }
    // RETURNING keeps no order: oldest update first, as documented.
    purged.sort_by_key(|(at, _)| *at);
    let purged: Vec<PurgedRun> = purged.into_iter().map(|(_, run)| run).collect();
    drop(rows);
    delete_dependent_rows(conn, &purged)?;
    Ok(purged)
}

/// Deletes every row that belongs to the purged runs: THE place to extend when a table
/// gains rows that hang off a run (events, run keys, and later tables such as tags).
fn delete_dependent_rows(conn: &Connection, purged: &[PurgedRun]) -> Result<(), EngineError> {
    const DEPENDENTS: &[&str] = &[
        "DELETE FROM events WHERE run_id = ?1",
        "DELETE FROM run_keys WHERE run_id = ?1",
        "DELETE FROM run_tags WHERE run_id = ?1",
        "DELETE FROM messages WHERE run_id = ?1",
        "DELETE FROM event_waits WHERE run_id = ?1",
    ];
    for run in purged {
        for sql in DEPENDENTS {
            conn.prepare_cached(sql)
                .ctx_run("cannot purge a run's rows", run.run_id.as_str())?
                .execute([run.run_id.as_str()])
                .ctx_run("cannot purge a run's rows", run.run_id.as_str())?;
        }
    }
    Ok(())
}

fn release_failed(lease: &Lease) -> String {
    format!("cannot release the lease of run `{}`", lease.run_id)
}

fn cancel_failed(run: &str) -> String {
    format!("cannot request the cancellation of run `{run}`")
}

fn apply_create_once(
    conn: &Connection,
    key: &str,
    c: &EncodedCreate,
) -> Result<Option<RunId>, EngineError> {
    let what = format!("cannot create run `{}`", c.id);
    let existing: Option<String> = conn
        .prepare_cached("SELECT run_id FROM run_keys WHERE key = ?1")
        .ctx_run(&what, &c.id)?
        .query_row([key], |row| row.get(0))
        .optional()
        .ctx_run(&what, &c.id)?;
    if let Some(existing) = existing {
        return Ok(Some(RunId(existing)));
    }
    apply_create(conn, c)?;
    conn.prepare_cached("INSERT INTO run_keys (key, run_id) VALUES (?1, ?2)")
        .ctx_run(&what, &c.id)?
        .execute([key, &c.id])
        .ctx_run(&what, &c.id)?;
    Ok(None)
}

fn take_lease(
    conn: &Connection,
    id: &str,
    owner: &str,
    expires_at: i64,
) -> Result<Lease, EngineError> {
    let what = || format!("cannot take the lease of run `{id}`");
    let mut stmt = conn
        .prepare_cached(
            "UPDATE runs SET lease_owner = ?2, lease_expires_at = ?3, fence = fence + 1
             WHERE id = ?1 RETURNING fence, cancel_requested, pause_requested",
        )
        .ctx_run(&what(), id)?;
    let mut rows = stmt
        .query(rusqlite::params![id, owner, expires_at])
        .ctx_run(&what(), id)?;
    match rows.next().ctx_run(&what(), id)? {
        Some(row) => codec::lease(id, owner, expires_at, row, 0),
        None => Err(EngineError::UnknownRun(id.to_owned())),
    }
}

fn apply_acquire(
    conn: &Connection,
    id: &str,
    owner: &str,
    now: i64,
    expires_at: i64,
) -> Result<Acquired, EngineError> {
    let what = || format!("cannot read the lease of run `{id}`");
    let mut stmt = conn
        .prepare_cached("SELECT lease_owner, lease_expires_at FROM runs WHERE id = ?1")
        .ctx_run(&what(), id)?;
    let mut rows = stmt.query([id]).ctx_run(&what(), id)?;
    let Some(row) = rows.next().ctx_run(&what(), id)? else {
        return Err(EngineError::UnknownRun(id.to_owned()));
    };
    let holder = codec::lease_holder(id, row, 0)?;
    if let Some(held) = codec::held_elsewhere(id, owner, now, holder)? {
        return Ok(held);
    }
    take_lease(conn, id, owner, expires_at).map(Acquired::Lease)
}

fn apply_renew(
    conn: &Connection,
    lease: &Lease,
    expires_at: i64,
) -> Result<Option<Lease>, EngineError> {
    let id = lease.run_id.as_str();
    let what = format!("cannot renew the lease of run `{id}`");
    let mut stmt = conn
        .prepare_cached(
            "UPDATE runs SET lease_expires_at = ?3
             WHERE id = ?1 AND fence = ?2 AND lease_owner IS NOT NULL
             RETURNING cancel_requested, pause_requested",
        )
        .ctx_run(&what, id)?;
    let mut rows = stmt
        .query(rusqlite::params![id, fence_param(lease.fence), expires_at])
        .ctx_run(&what, id)?;
    match rows.next().ctx_run(&what, id)? {
        Some(row) => codec::renewed(lease, expires_at, row, 0).map(Some),
        None => Ok(None),
    }
}

fn apply_create(conn: &Connection, c: &EncodedCreate) -> Result<(), EngineError> {
    let what = format!("cannot create run `{}`", c.id);
    let inserted = conn
        .prepare_cached(
            r#"INSERT INTO runs (id, workflow, status, input, output, error, attempt, "trigger",
                                 created_at, updated_at, wake_at, next_seq,
                                 queue, queue_key, priority)
               VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 1, ?12, ?13, ?14)
               ON CONFLICT (id) DO NOTHING"#,
        )
        .ctx_run(&what, &c.id)?
        .execute(rusqlite::params![
            c.id,
            c.workflow,
            c.status,
            c.input,
            c.output,
            c.error,
            c.attempt,
            c.trigger,
            c.created_at,
            c.updated_at,
            c.wake_at,
            c.queue.0,
            c.queue.1,
            c.queue.2,
        ])
        .ctx_run(&what, &c.id)?;
    if inserted == 0 {
        return Err(codec::run_exists(&c.id));
    }
    insert_event(conn, &c.id, 0, &c.event)
}

/// The update of an append that changes fields of the run: the checks (`next_seq`, and
/// the fence of a fenced append) are in its `WHERE` clause. `None` leaves a field alone,
/// `wake_at` is assigned when `?6`.
const APPEND_SQL: &str = "UPDATE runs SET
         status = COALESCE(?2, status),
         attempt = COALESCE(?3, attempt),
         output = COALESCE(?4, output),
         error = COALESCE(?5, error),
         wake_at = CASE WHEN ?6 THEN ?7 ELSE wake_at END,
         updated_at = ?8,
         next_seq = ?9
     WHERE id = ?1 AND next_seq = ?10
       AND (?11 IS NULL OR (fence = ?11 AND lease_owner IS NOT NULL))";

/// [`APPEND_SQL`] that also gives the writer's lease back (`Append::release`; the store
/// refuses a release without a fence, so `?11` is set and checked).
const APPEND_RELEASING_SQL: &str = "UPDATE runs SET
         status = COALESCE(?2, status),
         attempt = COALESCE(?3, attempt),
         output = COALESCE(?4, output),
         error = COALESCE(?5, error),
         wake_at = CASE WHEN ?6 THEN ?7 ELSE wake_at END,
         updated_at = ?8,
         next_seq = ?9,
         lease_owner = NULL,
         lease_expires_at = NULL
     WHERE id = ?1 AND next_seq = ?10
       AND fence = ?11 AND lease_owner IS NOT NULL";

fn apply_append(conn: &Connection, a: &EncodedAppend) -> Result<(), EngineError> {
    let what = format!("cannot append to run `{}`", a.run_id);
    // The checks (`next_seq`, and the fence of a fenced append) are in the update's
    // `WHERE` clause: one statement in the common case; the reason is looked up only
    // when it changed nothing. The same semantics as `memory::apply_update`: `None`
    // leaves a field alone, `wake_at: Some(None)` clears.
    let next_seq = a.first_seq + a.events.len() as i64;
    let changed = if a.only_events() {
        // Most appends (a step's record) change no field of the run: an update that sets
        // only `updated_at` and `next_seq` leaves the indexes on `status` and `due_at`
        // alone (SQLite rewrites an index entry whenever a column it covers is assigned,
        // even to its own value).
        conn.prepare_cached(
            "UPDATE runs SET updated_at = ?2, next_seq = ?3
             WHERE id = ?1 AND next_seq = ?4
               AND (?5 IS NULL OR (fence = ?5 AND lease_owner IS NOT NULL))",
        )
        .ctx_run(&what, &a.run_id)?
        .execute(rusqlite::params![
            a.run_id,
            a.updated_at,
            next_seq,
            a.first_seq,
            a.fence.map(fence_param),
        ])
        .ctx_run(&what, &a.run_id)?
    } else {
        // A releasing append (an execution's last) clears the lease in the same statement;
        // the others leave the lease columns unassigned, so their index entries stay.
        conn.prepare_cached(if a.release {
            APPEND_RELEASING_SQL
        } else {
            APPEND_SQL
        })
        .ctx_run(&what, &a.run_id)?
        .execute(rusqlite::params![
            a.run_id,
            a.status,
            a.attempt,
            a.output,
            a.error,
            a.wake_at.is_some(),
            a.wake_at.flatten(),
            a.updated_at,
            next_seq,
            a.first_seq,
            a.fence.map(fence_param),
        ])
        .ctx_run(&what, &a.run_id)?
    };
    if changed == 0 {
        return Err(append_refused(conn, a));
    }
    for (seq, event) in (a.first_seq..).zip(&a.events) {
        insert_event(conn, &a.run_id, seq, event)?;
    }
    if let Some(seen) = a.inbox_seen {
        // A message posted after the execution last read the inbox: the run must not wait
        // for it (`RunUpdate::inbox_seen`). Only suspensions on a wait get here.
        conn.prepare_cached(
            "UPDATE runs SET status = 'queued', wake_at = NULL
             WHERE id = ?1 AND status = 'waiting'
               AND EXISTS (SELECT 1 FROM messages WHERE run_id = ?1 AND seq > ?2)",
        )
        .ctx_run(&what, &a.run_id)?
        .execute(rusqlite::params![a.run_id, seen])
        .ctx_run(&what, &a.run_id)?;
    }
    Ok(())
}

/// Why an append's update changed nothing (see [`append_refusal`]).
fn append_refused(conn: &Connection, a: &EncodedAppend) -> EngineError {
    let run = a.run_id.as_str();
    let target = (|| {
        let what = format!("cannot append to run `{run}`");
        let mut stmt = conn
            .prepare_cached(
                "SELECT next_seq, fence, lease_owner IS NOT NULL FROM runs WHERE id = ?1",
            )
            .ctx_run(&what, run)?;
        let mut rows = stmt.query([run]).ctx_run(&what, run)?;
        rows.next()
            .ctx_run(&what, run)?
            .map(|row| codec::append_target(run, row))
            .transpose()
    })();
    match target {
        Ok(row) => append_refusal(run, a.first_seq as u64, a.fence.map(fence_param), row),
        Err(e) => e,
    }
}

fn insert_event(
    conn: &Connection,
    run_id: &str,
    seq: i64,
    e: &EncodedEvent,
) -> Result<(), EngineError> {
    conn.prepare_cached(
        "INSERT INTO events (run_id, seq, kind, correlation_id, attempt, at, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .ctx_run(&format!("cannot append an event to run `{run_id}`"), run_id)?
    .execute(rusqlite::params![
        run_id,
        seq,
        e.kind,
        e.correlation_id,
        e.attempt,
        e.at,
        e.payload
    ])
    .ctx_run(&format!("cannot append an event to run `{run_id}`"), run_id)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Read connections

struct Readers {
    path: PathBuf,
    busy_timeout: Duration,
    idle: Mutex<Vec<Reader>>,
    /// How read connections are opened; a read-only store may switch from
    /// [`ReadMode::Immutable`] to [`ReadMode::ReadOnly`], never back.
    mode: Mutex<ReadMode>,
}

/// A pooled read connection.
struct Reader {
    conn: Connection,
    /// Opened as an immutable file ([`ReadMode::Immutable`]).
    immutable: bool,
}

/// How a store's read connections are opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReadMode {
    /// A read-write store's readers: read-write flags (WAL readers write the shared-memory
    /// index) but `query_only`.
    Shared,
    /// A read-only store on a database in use (its `-wal` file exists):
    /// `SQLITE_OPEN_READ_ONLY`, through the log and its shared-memory index.
    ReadOnly,
    /// A read-only store on a database nobody had open (no `-wal` file): opened as an
    /// `immutable` file, so SQLite creates no `-wal`/`-shm` file and takes no lock. Valid
    /// while the file keeps this stamp, checked after every read
    /// ([`Readers::check_unchanged`]).
    Immutable(FileStamp),
}

/// A database file's length and modification time: a checkpoint by another process
/// changes both or one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: std::time::SystemTime,
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        let metadata = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            len: metadata.len(),
            modified: metadata.modified().ok()?,
        })
    }
}

impl Readers {
    fn open(&self) -> Result<Reader, EngineError> {
        let what = format!("cannot open {} for reading", self.path.display());
        let mode = *self.mode_lock();
        let conn = match mode {
            // Read-write flags (WAL readers need to write the shared-memory index) but
            // `query_only`, so this connection can never modify the database.
            ReadMode::Shared => {
                let conn = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .ctx(&what)?;
                conn.pragma_update(None, "query_only", true).ctx(&what)?;
                conn
            }
            ReadMode::ReadOnly => Connection::open_with_flags(
                &self.path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .ctx(&what)?,
            ReadMode::Immutable(_) => Connection::open_with_flags(
                immutable_uri(&self.path),
                OpenFlags::SQLITE_OPEN_READ_ONLY
                    | OpenFlags::SQLITE_OPEN_URI
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .ctx(&what)?,
        };
        conn.busy_timeout(self.busy_timeout).ctx(&what)?;
        Ok(Reader {
            conn,
            immutable: matches!(mode, ReadMode::Immutable(_)),
        })
    }

    fn take(&self) -> Result<Reader, EngineError> {
        let idle = self.lock().pop();
        match idle {
            Some(reader) => Ok(reader),
            None => self.open(),
        }
    }

    fn put_back(&self, reader: Reader) {
        // An immutable connection is kept only while the file is still read that way.
        if reader.immutable && !matches!(*self.mode_lock(), ReadMode::Immutable(_)) {
            return;
        }
        let mut idle = self.lock();
        if idle.len() < MAX_READERS {
            idle.push(reader);
        }
    }

    /// Whether this is a read-only store's pool.
    fn is_read_only(&self) -> bool {
        !matches!(*self.mode_lock(), ReadMode::Shared)
    }

    /// After a read of an immutable file: `Ok` when the file is as it was when the store
    /// was opened. When another process has opened it since (a `-wal` file appeared),
    /// later reads go through the log ([`ReadMode::ReadOnly`]); when it also wrote to the
    /// file (its stamp changed), what was just read may mix old and new pages, so the
    /// read fails with [`StoreErrorKind::Busy`].
    fn check_unchanged(&self) -> Result<(), EngineError> {
        let mut mode = self.mode_lock();
        let ReadMode::Immutable(stamp) = *mode else {
            return Ok(());
        };
        let changed = FileStamp::of(&self.path) != Some(stamp);
        if changed || sidecar(&self.path, "-wal").exists() {
            *mode = ReadMode::ReadOnly;
            self.lock().clear();
        }
        if changed {
            return Err(StoreError::new(
                StoreErrorKind::Busy,
                format!(
                    "{} was written by another process while this read-only command read it; \
                     run the command again",
                    self.path.display()
                ),
            )
            .into());
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Reader>> {
        // The pool is a plain list: a panic while holding the lock cannot break it.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn mode_lock(&self) -> std::sync::MutexGuard<'_, ReadMode> {
        // A plain value: a panic while holding the lock cannot break it.
        self.mode
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// `file:` URI of `path` opened read-only as an immutable file.
fn immutable_uri(path: &Path) -> String {
    #[cfg(unix)]
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()).to_vec();
    #[cfg(not(unix))]
    let bytes = path.to_string_lossy().into_owned().into_bytes();
    let mut uri = String::from("file:");
    for byte in bytes {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'/' | b'-' | b'_' | b'.' | b'~') {
            uri.push(char::from(byte));
        } else {
            uri.push_str(&format!("%{byte:02X}"));
        }
    }
    uri.push_str("?mode=ro&immutable=1");
    uri
}

// ---------------------------------------------------------------------------------------
// Opening: what is at the path, file modes, errors that say what to do

/// The first 16 bytes of every SQLite database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// What [`inspect`] found at a database path.
#[derive(Debug, PartialEq, Eq)]
enum FileState {
    /// Nothing: a new database.
    Missing,
    /// A file of 0 bytes with no non-empty `-wal` beside it: SQLite makes it a new database.
    Empty,
    /// A file that starts with the SQLite header.
    Database,
}

/// `path` with `suffix` appended (`-wal`, `-shm`).
fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// ` (owner uid 0, mode 0644)`, for permission errors.
fn owner_and_mode(path: &Path) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(metadata) = std::fs::metadata(path) {
            return format!(
                " (owner uid {}, mode {:04o})",
                metadata.uid(),
                metadata.mode() & 0o7777
            );
        }
    }
    let _ = path;
    String::new()
}

/// A failed file operation on the database at `path`, with what to do about it.
fn file_error(path: &Path, what: &str, e: std::io::Error, write: bool) -> EngineError {
    let shown = path.display();
    let message = if e.kind() == std::io::ErrorKind::PermissionDenied {
        let fix = if write {
            "run this command as the user that owns it, or give this user write access to \
             the file and its directory (read-only commands — `runs list|get|export`, \
             `workflows check` — need only read access)"
        } else {
            "run this command as the user that owns it, or give this user read access"
        };
        format!(
            "cannot {what} {shown}: permission denied{}; {fix}",
            owner_and_mode(path)
        )
    } else {
        format!("cannot {what} {shown}: {e}")
    };
    StoreError::new(StoreErrorKind::Io, message)
        .with_source(e)
        .into()
}

/// Looks at what is at `path` before SQLite opens it, so that a problem is reported for
/// what it is: a directory, a file that cannot be read (or, with `write`, written), a
/// file that is not an SQLite database, a truncated database beside its log.
fn inspect(path: &Path, write: bool) -> Result<FileState, EngineError> {
    use std::io::Read;
    let shown = path.display();
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileState::Missing),
        Err(e) => return Err(file_error(path, "look at", e, write)),
    };
    if metadata.is_dir() {
        return Err(StoreError::new(
            StoreErrorKind::Io,
            format!(
                "{shown} is a directory, not a database file; name a file in it, e.g. \
                 `sqlite://{}`",
                path.join("reprise.db").display()
            ),
        )
        .into());
    }
    if metadata.len() == 0 {
        let wal = sidecar(path, "-wal");
        if let Ok(log) = std::fs::metadata(&wal)
            && log.len() > 0
        {
            return Err(StoreError::new(
                StoreErrorKind::Database,
                format!(
                    "{shown} is empty (0 bytes), but its write-ahead log {} holds {} bytes: the \
                     database file was truncated or replaced, and opening it would throw the \
                     log away. Restore {shown} from a backup and keep the log beside it, or \
                     move both files away to start a new database",
                    wal.display(),
                    log.len()
                ),
            )
            .into());
        }
        return Ok(FileState::Empty);
    }
    let mut header = Vec::with_capacity(SQLITE_HEADER.len());
    std::fs::File::open(path)
        .and_then(|file| {
            file.take(SQLITE_HEADER.len() as u64)
                .read_to_end(&mut header)
        })
        .map_err(|e| file_error(path, "read", e, false))?;
    if header.as_slice() != SQLITE_HEADER.as_slice() {
        let preview: String = header
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    char::from(b)
                } else {
                    '.'
                }
            })
            .collect();
        // SQLite's own verdict on such a file, as the source (what `Connection::open`
        // would have reported on first use).
        let verdict = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_NOTADB),
            Some("file is not a database".to_owned()),
        );
        return Err(StoreError::new(
            StoreErrorKind::Database,
            format!(
                "{shown} is not a database: SQLite files start with `SQLite format 3`, this \
                 one ({} bytes) starts with `{preview}`; check that --db or \
                 REPRISE_DATABASE_URL names the reprise database file",
                metadata.len()
            ),
        )
        .with_source(verdict)
        .into());
    }
    if write
        && let Err(e) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
    {
        return Err(file_error(path, "write to", e, true));
    }
    Ok(FileState::Database)
}

/// Creates the new, empty database file `path` with mode 0600 (owner only; SQLite gives
/// its `-wal` and `-shm` files the same mode). Another process creating it first is fine.
fn create_private(path: &Path) -> Result<(), EngineError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(file_error(path, "create", e, true)),
    }
}

/// Logs a warning when users other than the owner may access the database file `path`
/// (any group or other permission bit): run inputs, outputs and hook data are in it.
fn warn_loose_mode(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(metadata) = std::fs::metadata(path) {
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    "the database file {} has mode {mode:04o}: other users can read the runs' \
                     inputs and outputs in it; restrict it with `chmod 600 {}`",
                    path.display(),
                    path.display()
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// What to do about a SQLite failure while opening the database at `path`, and the kind
/// it is then; `None` when there is nothing more to say than SQLite's message.
fn open_hint(path: &Path, e: &rusqlite::Error) -> Option<(StoreErrorKind, String)> {
    use rusqlite::ErrorCode as C;
    let shown = path.display();
    Some(match e.sqlite_error_code()? {
        C::NotADatabase => (
            StoreErrorKind::Database,
            format!(
                "{shown} is not a database (not an SQLite file); check that --db or \
                 REPRISE_DATABASE_URL names the reprise database file"
            ),
        ),
        C::DatabaseCorrupt => (
            StoreErrorKind::Database,
            format!(
                "the database file is damaged: restore it from a backup, or salvage what is \
                 left with `sqlite3 {shown} .recover`"
            ),
        ),
        C::DiskFull => (
            StoreErrorKind::Io,
            "the disk is full: free some space, then try again".to_owned(),
        ),
        C::ReadOnly | C::CannotOpen | C::PermissionDenied => (
            StoreErrorKind::Io,
            format!(
                "check that this user may write to {shown} and create files in its \
                 directory (SQLite keeps `-wal` and `-shm` files beside it)"
            ),
        ),
        C::SystemIoFailure => (
            StoreErrorKind::Io,
            "the operating system reported an I/O error: check the disk".to_owned(),
        ),
        _ => return None,
    })
}

/// A SQLite failure while opening the database at `path` (`doing` what): names the file,
/// SQLite's message and what to do.
fn open_error(path: &Path, doing: &str, e: rusqlite::Error) -> EngineError {
    let (kind, hint) = match open_hint(path, &e) {
        Some((kind, hint)) => (kind, format!("; {hint}")),
        None => (sql_kind(&e), String::new()),
    };
    StoreError::new(
        kind,
        format!("cannot open {} ({doing}): {e}{hint}", path.display()),
    )
    .with_source(e)
    .into()
}

/// An error met while opening the database at `path`, prefixed with the path, and with
/// what to do when its SQLite cause calls for it.
fn explain(path: &Path, error: EngineError) -> EngineError {
    let EngineError::Storage(error) = error else {
        return error;
    };
    let cause = std::error::Error::source(&error)
        .and_then(|source| source.downcast_ref::<rusqlite::Error>());
    match cause.and_then(|cause| open_hint(path, cause).map(|hint| (cause, hint))) {
        Some((cause, (kind, hint))) => {
            let explained = StoreError::new(
                kind,
                format!("{}: {}; {hint}", path.display(), error.message()),
            );
            EngineError::Storage(match cause {
                rusqlite::Error::SqliteFailure(code, message) => {
                    explained.with_source(rusqlite::Error::SqliteFailure(*code, message.clone()))
                }
                _ => explained,
            })
        }
        None => EngineError::Storage(error.context(path.display())),
    }
}

/// The reprise schema version recorded in the database, `None` when it has no
/// `schema_migrations` table (not a reprise database, or a new one).
fn schema_version(conn: &Connection) -> Result<Option<i64>, EngineError> {
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
            [],
            |row| row.get(0),
        )
        .ctx("cannot read the list of tables")?;
    if tables == 0 {
        return Ok(None);
    }
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |row| row.get(0),
    )
    .map(Some)
    .ctx("cannot read the schema version")
}

// ---------------------------------------------------------------------------------------
// Rows and errors

impl SqlRow for Row<'_> {
    type Error = rusqlite::Error;

    fn text(&self, index: usize) -> Result<String, rusqlite::Error> {
        self.get(index)
    }

    fn opt_text(&self, index: usize) -> Result<Option<String>, rusqlite::Error> {
        self.get(index)
    }

    fn int(&self, index: usize) -> Result<i64, rusqlite::Error> {
        self.get(index)
    }

    fn opt_int(&self, index: usize) -> Result<Option<i64>, rusqlite::Error> {
        self.get(index)
    }

    fn boolean(&self, index: usize) -> Result<bool, rusqlite::Error> {
        self.get(index)
    }
}

/// The [`StoreErrorKind`] of a SQLite error, from its result code.
fn sql_kind(e: &rusqlite::Error) -> StoreErrorKind {
    use rusqlite::ErrorCode as C;
    match e.sqlite_error_code() {
        Some(C::DatabaseBusy | C::DatabaseLocked) => StoreErrorKind::Busy,
        Some(C::ConstraintViolation) => StoreErrorKind::Constraint,
        Some(
            C::CannotOpen
            | C::PermissionDenied
            | C::ReadOnly
            | C::DiskFull
            | C::SystemIoFailure
            | C::NoLargeFileSupport
            | C::FileLockingProtocolFailed,
        ) => StoreErrorKind::Io,
        _ => StoreErrorKind::Database,
    }
}

/// A SQLite error as [`EngineError::Storage`]: `"<what>: <error>"`, its kind from its
/// result code, the error itself as the source.
fn sql_error(what: &str, e: rusqlite::Error) -> EngineError {
    StoreError::new(sql_kind(&e), format!("{what}: {e}"))
        .with_source(e)
        .into()
}

/// [`sql_error`] for a failure that several requests share (`rusqlite::Error` is not
/// `Clone`): SQLite's own errors are copied as the source, others are only named.
fn shared_error(what: &str, e: &rusqlite::Error) -> EngineError {
    let error = StoreError::new(sql_kind(e), format!("{what}: {e}"));
    match e {
        rusqlite::Error::SqliteFailure(code, message) => error
            .with_source(rusqlite::Error::SqliteFailure(*code, message.clone()))
            .into(),
        _ => error.into(),
    }
}

/// Adds context to SQLite errors, turning them into [`EngineError::Storage`].
trait SqlContext<T> {
    /// `what` failed.
    fn ctx(self, what: &str) -> Result<T, EngineError>;
    /// `what` failed, for run `run` (which `what` names).
    fn ctx_run(self, what: &str, run: &str) -> Result<T, EngineError>;
}

impl<T> SqlContext<T> for rusqlite::Result<T> {
    fn ctx(self, what: &str) -> Result<T, EngineError> {
        self.map_err(|e| sql_error(what, e))
    }

    fn ctx_run(self, what: &str, run: &str) -> Result<T, EngineError> {
        self.map_err(|e| match sql_error(what, e) {
            EngineError::Storage(e) => EngineError::Storage(e.with_run(run)),
            other => other,
        })
    }
}
