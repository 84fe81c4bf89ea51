//! The Postgres store (cargo feature `postgres`): many worker processes on many machines
//! share one database (DESIGN "Event log"); runs are claimed with leases, fencing tokens
//! and `FOR UPDATE SKIP LOCKED`.
//!
//! # Connecting
//!
//! [`PostgresStore::connect`] / [`PostgresStore::connect_with`] build a connection pool
//! ([deadpool-postgres], plain TCP or Unix socket, no TLS), then connect once and apply
//! the pending migrations, so a wrong URL or an unreachable server is reported there.
//! [`PostgresStore::connect_lazy`] is the synchronous variant used by
//! [`store::open`](super::open) (`postgres://…` and `postgresql://…` URLs): it only
//! parses the URL and builds the pool; connections are made on first use (deadpool
//! creates them lazily) and the migrations are applied by the first store operation
//! (once per store; a failed attempt is retried by the next operation). Either way every
//! connection runs inside the Tokio runtime that first uses it.
//!
//! The URL is anything `tokio_postgres::Config` parses: `postgres://user@host:5432/db`
//! or `host=… user=… dbname=…`. A connect timeout of 10 s applies unless the URL sets
//! `connect_timeout`.
//!
//! # Schema
//!
//! All tables are prefixed `reprise_` (a Postgres database is usually shared with the
//! application's own tables). They live in the connection's default schema (its
//! `search_path`), or in [`PostgresOptions::schema`]: that schema is created if missing
//! and set as the `search_path` of every pooled connection, so several independent
//! reprise installations (or parallel tests) can share one database.
//!
//! Versioned migrations ([`PostgresStore::SCHEMA_VERSION`]) are recorded in
//! `reprise_schema_migrations(version BIGINT PRIMARY KEY, applied_at TIMESTAMPTZ)`.
//! They run in one transaction that first takes a transaction-scoped advisory lock
//! (`pg_advisory_xact_lock`, keyed by the schema name), so concurrent processes starting
//! on a fresh database apply each migration exactly once; DDL is transactional in
//! Postgres, so a failed migration leaves nothing behind. A database whose version is
//! higher than this build's is refused with both versions named. Version 1 creates:
//!
//! - `reprise_runs(id TEXT PRIMARY KEY, pos BIGINT IDENTITY, workflow, status, input,
//!   output, error, attempt, "trigger", created_at, updated_at, wake_at, next_seq,
//!   lease_owner, lease_expires_at, fence, cancel_requested)`; `pos` is the creation
//!   order (runs created in the same microsecond list and claim in creation order);
//!   indexed by `(created_at, pos)`, `(status, created_at, pos)`,
//!   `(workflow, created_at, pos)` and `(status, wake_at)`;
//! - `reprise_events(run_id → reprise_runs.id, seq, kind, correlation_id, attempt, at,
//!   payload, PRIMARY KEY (run_id, seq))`;
//! - `reprise_run_keys(key PRIMARY KEY, run_id → reprise_runs.id)` for exactly-once
//!   creation ([`Store::create_run_once`]);
//! - `reprise_cursors(name PRIMARY KEY, value, updated_at)`.
//!
//! Version 2 adds `reprise_runs.due_at`, a stored generated column: when the run may next
//! be claimed (a queued run from its creation or retry time, a sleeping or waiting run
//! from its wake-up time, a running one whose worker vanished from its creation; never
//! before its lease expires; NULL for ended runs and hooks without timeout). Claims scan
//! the partial index `(due_at, pos) WHERE due_at IS NOT NULL` from its start and stop
//! after `limit` rows, so runs in flight under a lease and runs asleep for hours cost a
//! claim nothing. The table's fillfactor is 70, so the per-step update of a run's row
//! usually fits on its page as a HOT update that touches no index. It also drops the
//! foreign key from `reprise_events.run_id` to `reprise_runs`: the statements that insert
//! events insert them joined to the run row they just wrote, so the key held by
//! construction and its check only added a row lock per event.
//!
//! Version 3 adds `reprise_runs.pause_requested` (who asked for a pause the lease holder has
//! not reached yet, [`Store::request_pause`]) and `reprise_paused_workflows(workflow PRIMARY
//! KEY, paused_by, paused_at)`, whose runs claims skip ([`Store::set_workflow_pause`]).
//!
//! Version 4 adds `reprise_schedules(name PRIMARY KEY, definition, paused, created_at,
//! created_by, updated_at, updated_by)`: schedules kept as data and the paused state of
//! schedules declared in code ([`Store::list_schedules`]); a handful of rows, read by name.
//!
//! Version 5 adds the partial index `(updated_at, pos) WHERE status IN ('completed',
//! 'failed', 'canceled')`, which purges ([`Store::purge_runs`]) walk from the oldest ended
//! run and stop after one batch, and an index on `reprise_run_keys (run_id)`, so a purged
//! run's keys are found without a scan.
//!
//! Version 6 adds `reprise_run_tags(run_id → reprise_runs.id ON DELETE CASCADE, key,
//! value_type, value_text, value_num, created_at, PRIMARY KEY (run_id, key))`, indexed by
//! `(key, value_type, value_text, created_at, run_id)` and `(key, value_type, value_num,
//! created_at, run_id)`, and the row trigger `reprise_run_tags_index` (`WHEN (NEW.kind =
//! 'run_tagged')`) that upserts a tag from each `run_tagged` event inserted into
//! `reprise_events`: the index is written by the statement that appends the event, in
//! its transaction, on every write path (see `tags`). Listings order by `(created_at,
//! id)` (ties by id, so a cursor can continue after a run), so the listing indexes
//! `(created_at, pos)`, `(status, created_at, pos)` and `(workflow, created_at, pos)`
//! become `(…, created_at, id)`.
//!
//! Version 7 adds the run inbox: `reprise_messages(run_id → reprise_runs.id ON DELETE
//! CASCADE, seq, channel, payload, dedupe, created_at, PRIMARY KEY (run_id, seq))` with the
//! partial unique index `(run_id, dedupe) WHERE dedupe IS NOT NULL`;
//! `reprise_event_waits(name, run_id → reprise_runs.id ON DELETE CASCADE, since, pos,
//! PRIMARY KEY (name, run_id))`, listed oldest wait first by `pos`
//! ([`Store::event_waiters`]); and `reprise_emitted_events(name, id, created_at, PRIMARY
//! KEY (name, id))`, which records each emitted event once ([`Store::record_event`]).
//!
//! Version 8 adds flow control (see `postgres_queues`). Version 9 adds
//! `reprise_documents`, the engine's own data beside runs (credentials, API tokens,
//! subscriptions; [`crate::store::Document`]). Version 10 adds the partial index
//! `reprise_runs_queue_created_at_id (queue, created_at, id) WHERE queue IS NOT NULL`: a
//! listing of one queue's runs ([`crate::event::RunFilter::queue`]) reads only that
//! queue's runs, in the listing's order.
//!
//! Version 11 adds `reprise_step_permits(queue, scope, at)` with the index
//! `(queue, scope, at)`: the permits of queues' step rate limits
//! ([`crate::queue::StepWindow`]), counted and taken under an advisory lock of the queue
//! and scope (see `postgres_queues.rs`).
//!
//! Timestamps are `BIGINT` microseconds since the Unix epoch (UTC), exactly as in the
//! SQLite store: exact to the microsecond, ordered by integer comparison
//! (`to_timestamp(at / 1e6)` shows them). JSON values are stored in `json` columns, not
//! `jsonb`: `jsonb` rejects the escape `\u0000`, which is valid JSON that serde emits for
//! a NUL character in a string, so some valid payloads could not be recorded; `json`
//! validates the text and keeps it byte for byte (and needs no conversion on write).
//! Cast to `jsonb` to query it when needed.
//!
//! # Writes and locking
//!
//! - [`Store::create_run`] and [`Store::append`] are each **one statement** (a
//!   data-modifying `WITH`), so one round trip and one commit; concurrent appends of
//!   different runs share one statement and one commit (group commit, see
//!   `postgres_appends`). The append's `UPDATE` of
//!   the run row checks `next_seq = first_seq` and, for a fenced append, `fence` and a
//!   held lease, in its `WHERE` clause; the events are inserted (`UNNEST` of arrays) only
//!   for the row it updated. Concurrent appends to one run serialize on the row lock;
//!   the loser re-evaluates the `WHERE` clause against the winner's committed row, so
//!   it updates and inserts nothing, and is then told [`EngineError::LeaseLost`] or
//!   [`EngineError::Conflict`] (the current `next_seq`), or
//!   [`EngineError::UnknownRun`].
//! - [`Store::claim_due`] selects the earliest due runs (`due_at`) with `LIMIT` and
//!   `FOR UPDATE SKIP LOCKED` and leases them in the same statement: concurrent claimers
//!   skip each other's rows instead of waiting, and a run is claimed by one of them only
//!   (a row claimed and committed meanwhile is re-checked and no longer due).
//! - Routing ([`crate::queue::Routing`]) is part of that statement (`= ANY($n)`), and
//!   it takes only runs that need no admission (in no queue, or admitted already). Runs
//!   waiting for a queue's admission are admitted by a transaction per queue that holds
//!   an advisory lock on the queue while it counts and admits, so queue limits hold
//!   across processes; a debounced or de-duplicated start locks its gate's key row. See
//!   `postgres_queues`.
//! - [`Store::acquire`] locks the run row (`SELECT … FOR UPDATE`) to decide; renew,
//!   release and cancellation requests are single conditional `UPDATE`s keyed by the
//!   fence.
//! - [`Store::post_message`] locks the run row (`SELECT … FOR UPDATE`) first, so posts to
//!   one run are numbered (`MAX(seq) + 1`) in commit order across processes; the same
//!   transaction wakes a `waiting` run. An append that suspends a run as `waiting` with
//!   `RunUpdate::inbox_seen` is written in a transaction of its own that re-queues the
//!   run when a newer message is there (see `postgres_appends`); other appends are
//!   unchanged.
//! - [`Store::create_run_once`] inserts the key with `ON CONFLICT DO NOTHING` and reads
//!   the holder back when it lost, in one transaction with the run's creation: of
//!   concurrent callers with one key, exactly one creates.
//!
//! # Durability
//!
//! A write is acknowledged when its transaction has committed. With the server's
//! defaults (`fsync = on`, `synchronous_commit = on`) that means the WAL record was
//! flushed to disk: nothing acknowledged is lost on a crash of the worker, of the
//! server or of its machine. With `synchronous_commit = off` (settable per database or
//! role) a server crash may lose the last acknowledged commits (never corrupting the
//! database); with synchronous replication (`synchronous_standby_names`) a commit also
//! waits for the standby. Lease bookkeeping uses the same commits.
//!
//! # Reads
//!
//! Each read is one statement, so it sees one snapshot and never half of an append.
//! A row that cannot be decoded (unknown status, trigger or event kind, invalid JSON, an
//! out-of-range number, a gap in the sequence numbers) is reported as
//! [`EngineError::Corrupt`] naming the run; it never panics. A listing skips such a run
//! row and reports it ([`Store::list_runs_with_skipped`]) instead of failing whole, and
//! [`Store::triage`] reads the plain columns the engine needs to defer or park a run
//! whose rows do not decode. Rows are decoded by the
//! codec shared with the SQLite store (`store::codec`), through [`SqlRow`].
//!
//! # Errors
//!
//! Failures are [`EngineError::Storage`] with the `tokio_postgres::Error` (or the pool's
//! error) as their source and a [`StoreErrorKind`] from its SQLSTATE: serialization
//! failures, deadlocks and lock timeouts are [`StoreErrorKind::Busy`]; connection
//! failures, lost connections, pool timeouts and a server shutting down
//! [`StoreErrorKind::Unavailable`]; integrity violations [`StoreErrorKind::Constraint`];
//! refused logins and unknown databases [`StoreErrorKind::Config`].
//!
//! [deadpool-postgres]: https://docs.rs/deadpool-postgres

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::OnceCell;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

#[path = "postgres_documents.rs"]
mod documents;
#[path = "postgres_queues.rs"]
mod queues;
#[path = "postgres_schedules.rs"]
mod schedules;

use super::codec::{self, EventLog, SqlRow, column, decode_run, fence_param, micros};
use super::postgres_appends::{EncodedAppend, GroupCommit};
use super::purge::{self, PurgeBatch, PurgeFilter, PurgedRun};
use super::search_sql;
use super::{
    Acquired, Append, Lease, RunListing, RunTriage, SkippedRun, Store, StoreError, StoreErrorKind,
    WorkflowPause,
};
use crate::EngineError;
use crate::event::{Event, NewEvent, RunFilter, RunId, RunRecord, RunStatus};

/// The migrations, in order: entry `i` brings the schema to version `i + 1`.
///
/// Append only: never edit or reorder a released migration.
const MIGRATIONS: &[&str] = &[
    // Version 1: runs with their leases, events, run keys and cursors.
    r#"
    CREATE TABLE reprise_runs (
        id                TEXT PRIMARY KEY,
        pos               BIGINT GENERATED ALWAYS AS IDENTITY,
        workflow          TEXT NOT NULL,
        status            TEXT NOT NULL,
        input             JSON NOT NULL,
        output            JSON,
        error             JSON,
        attempt           BIGINT NOT NULL,
        "trigger"         TEXT NOT NULL,
        created_at        BIGINT NOT NULL,
        updated_at        BIGINT NOT NULL,
        wake_at           BIGINT,
        next_seq          BIGINT NOT NULL,
        lease_owner       TEXT,
        lease_expires_at  BIGINT,
        fence             BIGINT NOT NULL DEFAULT 0,
        cancel_requested  BOOLEAN NOT NULL DEFAULT FALSE
    );
    CREATE INDEX reprise_runs_created_at ON reprise_runs (created_at, pos);
    CREATE INDEX reprise_runs_status_created_at ON reprise_runs (status, created_at, pos);
    CREATE INDEX reprise_runs_workflow_created_at ON reprise_runs (workflow, created_at, pos);
    CREATE INDEX reprise_runs_status_wake_at ON reprise_runs (status, wake_at);
    CREATE INDEX reprise_runs_unfinished ON reprise_runs (created_at, pos)
        WHERE status IN ('queued', 'running', 'sleeping', 'waiting');
    CREATE TABLE reprise_events (
        run_id          TEXT NOT NULL REFERENCES reprise_runs (id) ON DELETE CASCADE,
        seq             BIGINT NOT NULL,
        kind            TEXT NOT NULL,
        correlation_id  TEXT,
        attempt         BIGINT NOT NULL,
        at              BIGINT NOT NULL,
        payload         JSON NOT NULL,
        PRIMARY KEY (run_id, seq)
    );
    CREATE TABLE reprise_run_keys (
        key     TEXT PRIMARY KEY,
        run_id  TEXT NOT NULL REFERENCES reprise_runs (id) ON DELETE CASCADE
                DEFERRABLE INITIALLY DEFERRED
    );
    CREATE TABLE reprise_cursors (
        name        TEXT PRIMARY KEY,
        value       JSON NOT NULL,
        updated_at  BIGINT NOT NULL
    );
    "#,
    // Version 2: claims walk only due runs. `due_at` is when a run may next be claimed:
    // a queued run from its creation (or its retry time), a sleeping or waiting run from
    // its wake-up time, an orphaned running run from its creation; never before its lease
    // expires; NULL when nothing but an outside event (a hook delivery) can make it due,
    // and for ended runs. Leased runs in flight and runs asleep for hours are then outside
    // the index range a claim scans. Room on each page (fillfactor) lets the per-step
    // update of `next_seq` be a HOT update that touches no index. The foreign key from
    // events to runs goes: every statement that inserts events inserts them joined to the
    // run row it just inserted or updated, so the key check (a row lock per event) only
    // cost time.
    r#"
    ALTER TABLE reprise_runs SET (fillfactor = 70);
    ALTER TABLE reprise_runs ADD COLUMN due_at BIGINT GENERATED ALWAYS AS (
        CASE
            WHEN status = 'queued' OR status = 'running' THEN
                GREATEST(CASE WHEN status = 'queued' THEN COALESCE(wake_at, created_at)
                              ELSE created_at END,
                         COALESCE(lease_expires_at, 0))
            WHEN (status = 'sleeping' OR status = 'waiting') AND wake_at IS NOT NULL THEN
                GREATEST(wake_at, COALESCE(lease_expires_at, 0))
        END
    ) STORED;
    CREATE INDEX reprise_runs_due ON reprise_runs (due_at, pos) WHERE due_at IS NOT NULL;
    DROP INDEX reprise_runs_unfinished;
    ALTER TABLE reprise_events DROP CONSTRAINT IF EXISTS reprise_events_run_id_fkey;
    "#,
    // Version 3: pausing runs (a request the lease holder sees, like cancellation) and
    // workflows (no claims of their runs while paused).
    r#"
    ALTER TABLE reprise_runs ADD COLUMN pause_requested TEXT;
    CREATE TABLE reprise_paused_workflows (
        workflow    TEXT PRIMARY KEY,
        paused_by   TEXT NOT NULL,
        paused_at   BIGINT NOT NULL
    );
    "#,
    // Version 4: schedules kept as data (and paused states of schedules declared in
    // code), keyed by name; see `Store::list_schedules`.
    r#"
    CREATE TABLE reprise_schedules (
        name        TEXT PRIMARY KEY,
        definition  JSON,
        paused      BOOLEAN NOT NULL DEFAULT FALSE,
        created_at  BIGINT NOT NULL,
        created_by  TEXT NOT NULL,
        updated_at  BIGINT NOT NULL,
        updated_by  TEXT NOT NULL
    );
    "#,
    // Version 5: purges (retention) walk ended runs by their last update, oldest first,
    // and delete a run's keys without scanning `reprise_run_keys`.
    r#"
    CREATE INDEX reprise_runs_ended_updated_at ON reprise_runs (updated_at, pos)
        WHERE status IN ('completed', 'failed', 'canceled');
    CREATE INDEX reprise_run_keys_run_id ON reprise_run_keys (run_id);
    "#,
    // Version 6: searchable tags (`ctx.tag`). One row per run and key, the latest value;
    // written by a row trigger on `reprise_events` from each `run_tagged` event, so the
    // index is updated in the statement (and transaction) of the append that carries the
    // event, whichever path writes it (single or group-committed appends). Other events
    // skip the trigger by its `WHEN` clause, without calling the function. Strings and
    // booleans in `value_text`, numbers and times (µs) in `value_num`; `created_at` is the
    // run's, so that a `key = value` lookup reads its matches newest first from the index.
    r#"
    CREATE TABLE reprise_run_tags (
        run_id      TEXT NOT NULL REFERENCES reprise_runs (id) ON DELETE CASCADE,
        key         TEXT NOT NULL,
        value_type  TEXT NOT NULL,
        value_text  TEXT,
        value_num   DOUBLE PRECISION,
        created_at  BIGINT NOT NULL,
        PRIMARY KEY (run_id, key)
    );
    CREATE INDEX reprise_run_tags_text
        ON reprise_run_tags (key, value_type, value_text, created_at, run_id);
    CREATE INDEX reprise_run_tags_num
        ON reprise_run_tags (key, value_type, value_num, created_at, run_id);
    CREATE FUNCTION reprise_index_run_tag() RETURNS trigger LANGUAGE plpgsql AS $fn$
    DECLARE
        p json := NEW.payload;
    BEGIN
        INSERT INTO reprise_run_tags (run_id, key, value_type, value_text, value_num,
                                      created_at)
        SELECT NEW.run_id, p->>'key', p->>'type',
               CASE p->>'type' WHEN 'string' THEN p->>'value'
                               WHEN 'bool' THEN p->>'value' END,
               CASE p->>'type' WHEN 'number' THEN (p->>'value')::double precision
                               WHEN 'time' THEN (p->>'epoch_us')::double precision END,
               r.created_at
          FROM reprise_runs r WHERE r.id = NEW.run_id
        ON CONFLICT (run_id, key) DO UPDATE SET
            value_type = EXCLUDED.value_type,
            value_text = EXCLUDED.value_text,
            value_num = EXCLUDED.value_num;
        RETURN NULL;
    END
    $fn$;
    CREATE TRIGGER reprise_run_tags_index AFTER INSERT ON reprise_events
        FOR EACH ROW WHEN (NEW.kind = 'run_tagged')
        EXECUTE FUNCTION reprise_index_run_tag();
    CREATE INDEX reprise_runs_created_at_id ON reprise_runs (created_at, id);
    CREATE INDEX reprise_runs_status_created_at_id ON reprise_runs (status, created_at, id);
    CREATE INDEX reprise_runs_workflow_created_at_id
        ON reprise_runs (workflow, created_at, id);
    DROP INDEX reprise_runs_created_at;
    DROP INDEX reprise_runs_status_created_at;
    DROP INDEX reprise_runs_workflow_created_at;
    "#,
    // Version 7: the run inbox (messages addressed to one run, numbered per run in commit
    // order under the run row's lock), the runs waiting for emitted events (listed in
    // the order they began waiting, `pos`), and the emitted events seen (each `(name,
    // id)` once). See `Store::post_message`.
    r#"
    CREATE TABLE reprise_messages (
        run_id      TEXT NOT NULL REFERENCES reprise_runs (id) ON DELETE CASCADE,
        seq         BIGINT NOT NULL,
        channel     TEXT NOT NULL,
        payload     JSON NOT NULL,
        dedupe      TEXT,
        created_at  BIGINT NOT NULL,
        PRIMARY KEY (run_id, seq)
    );
    CREATE UNIQUE INDEX reprise_messages_dedupe ON reprise_messages (run_id, dedupe)
        WHERE dedupe IS NOT NULL;
    CREATE TABLE reprise_event_waits (
        name    TEXT NOT NULL,
        run_id  TEXT NOT NULL REFERENCES reprise_runs (id) ON DELETE CASCADE,
        since   BIGINT NOT NULL,
        pos     BIGINT GENERATED ALWAYS AS IDENTITY,
        PRIMARY KEY (name, run_id)
    );
    CREATE INDEX reprise_event_waits_run_id ON reprise_event_waits (run_id);
    CREATE TABLE reprise_emitted_events (
        name        TEXT NOT NULL,
        id          TEXT NOT NULL,
        created_at  BIGINT NOT NULL,
        PRIMARY KEY (name, id)
    );
    "#,
    // Version 8: flow control. A run's queue, its key in the queue, its priority and
    // when it was admitted (`Store::claim`); the registry of live workers
    // (`Store::worker_heartbeat`), each row a JSON `WorkerInfo`. The due index keeps
    // only runs a claim takes without admission (in no queue, or admitted), so runs
    // waiting for a full queue cost the plain claim nothing; waiting runs have an index
    // of their own in admission order (priority, then due time, then creation).
    // Admission counts admitted, unfinished runs per queue and key (`queue_active`) and
    // admissions in a rate window, queue-wide or per key (`queue_admitted`,
    // `queue_key_admitted`): each a range scan bounded by what it counts.
    r#"
    ALTER TABLE reprise_runs ADD COLUMN queue TEXT;
    ALTER TABLE reprise_runs ADD COLUMN queue_key TEXT;
    ALTER TABLE reprise_runs ADD COLUMN priority BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE reprise_runs ADD COLUMN admitted_at BIGINT;
    DROP INDEX reprise_runs_due;
    CREATE INDEX reprise_runs_due ON reprise_runs (due_at, pos)
        WHERE due_at IS NOT NULL AND (queue IS NULL OR admitted_at IS NOT NULL);
    CREATE INDEX reprise_runs_queue_waiting ON reprise_runs (queue, priority DESC, due_at, pos)
        WHERE queue IS NOT NULL AND admitted_at IS NULL AND due_at IS NOT NULL;
    CREATE INDEX reprise_runs_queue_active ON reprise_runs (queue, queue_key)
        WHERE admitted_at IS NOT NULL
          AND status IN ('queued', 'running', 'sleeping', 'waiting', 'paused');
    CREATE INDEX reprise_runs_queue_admitted ON reprise_runs (queue, admitted_at)
        WHERE admitted_at IS NOT NULL;
    CREATE INDEX reprise_runs_queue_key_admitted ON reprise_runs (queue, queue_key, admitted_at)
        WHERE admitted_at IS NOT NULL;
    CREATE TABLE reprise_workers (
        id          TEXT PRIMARY KEY,
        info        JSON NOT NULL,
        expires_at  BIGINT NOT NULL
    );
    "#,
    // Version 9: documents, the engine's own data beside runs (credentials encrypted at
    // rest, API tokens by hash, subscriptions), as opaque JSON by kind and key.
    r#"
    CREATE TABLE reprise_documents (
        kind        TEXT NOT NULL,
        key         TEXT NOT NULL,
        value       JSONB NOT NULL,
        created_at  BIGINT NOT NULL,
        updated_at  BIGINT NOT NULL,
        PRIMARY KEY (kind, key)
    );
    "#,
    // Version 10: listing the runs of one queue (`RunFilter::queue`, `runs list --queue`)
    // in the listing's order (`created_at DESC, id DESC`) reads only that queue's runs.
    // Partial: runs in no queue cost nothing.
    r#"
    CREATE INDEX reprise_runs_queue_created_at_id ON reprise_runs (queue, created_at, id)
        WHERE queue IS NOT NULL;
    "#,
    // Version 11: step rate limits (`Store::take_step_permit`): one row per step permit
    // taken, by queue and scope (the run's key for a per-key limit, '' for the queue),
    // counted and inserted under an advisory lock of the queue and scope; rows that left
    // the window are deleted as permits are taken.
    r#"
    CREATE TABLE reprise_step_permits (
        queue   TEXT NOT NULL,
        scope   TEXT NOT NULL,
        at      BIGINT NOT NULL
    );
    CREATE INDEX reprise_step_permits_window ON reprise_step_permits (queue, scope, at);
    "#,
];

/// The default [`PostgresOptions::pool_size`].
const DEFAULT_POOL_SIZE: usize = 16;

/// How long connecting may take unless the URL sets `connect_timeout`.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

const CREATE_RUN_SQL: &str = r#"
    WITH run AS (
        INSERT INTO reprise_runs (id, workflow, status, input, output, error, attempt,
                                  "trigger", created_at, updated_at, wake_at, next_seq,
                                  queue, queue_key, priority)
        VALUES ($1::text, $2::text, $3::text, $4::text::json, $5::text::json,
                $6::text::json, $7::bigint, $8::text, $9::bigint, $10::bigint,
                $11::bigint, 1, $17::text, $18::text, $19::bigint)
        ON CONFLICT (id) DO NOTHING
        RETURNING id
    )
    INSERT INTO reprise_events (run_id, seq, kind, correlation_id, attempt, at, payload)
    SELECT id, 0, $12::text, $13::text, $14::bigint, $15::bigint, $16::text::json FROM run"#;

/// The claim of due runs that need no admission (in no queue, or admitted already):
/// `$1` now, `$2` limit, `$3` owner, `$4` lease expiry, `$5` the workflows served (NULL:
/// all), `$6` the queues served (NULL: all), `$7` the name runs in no queue are served
/// under ([`crate::queue::DEFAULT_QUEUE`]). The
/// first condition after `due_at` is the due index's own, so the planner uses it.
const CLAIM_SQL: &str = "
    WITH due AS (
        SELECT id FROM reprise_runs
        WHERE due_at <= $1::bigint
          AND (queue IS NULL OR admitted_at IS NOT NULL)
          AND (lease_owner IS NULL OR lease_expires_at <= $1::bigint)
          AND NOT EXISTS (SELECT 1 FROM reprise_paused_workflows p
                           WHERE p.workflow = reprise_runs.workflow)
          AND ($5::text[] IS NULL OR workflow = ANY($5::text[]))
          AND ($6::text[] IS NULL OR COALESCE(queue, $7::text) = ANY($6::text[]))
        ORDER BY due_at, pos
        LIMIT $2::bigint
        FOR UPDATE SKIP LOCKED
    )
    UPDATE reprise_runs AS r
       SET lease_owner = $3::text, lease_expires_at = $4::bigint, fence = r.fence + 1
      FROM due
     WHERE r.id = due.id
    RETURNING r.id, r.fence, r.cancel_requested, r.pause_requested, r.created_at, r.pos";

/// Options of [`PostgresStore::connect_with`]. `PostgresOptions::default()` is what
/// [`PostgresStore::connect`] and [`store::open`](super::open) use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresOptions {
    /// The Postgres schema holding reprise's tables: created if missing and made the
    /// `search_path` of every pooled connection. `None` (the default) uses the
    /// connection's own `search_path` (usually `public`).
    pub schema: Option<String>,
    /// The most connections the pool opens at once; default 16. Operations beyond it
    /// wait for a free connection.
    pub pool_size: usize,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            schema: None,
            pool_size: DEFAULT_POOL_SIZE,
        }
    }
}

/// A [`Store`] in a Postgres database, shared by every process that connects to it. See
/// the module docs for its schema, migrations, locking and durability.
pub struct PostgresStore {
    pool: Pool,
    schema: Option<String>,
    /// Where the pool connects, for error messages: `host:port/dbname as user`.
    target: String,
    /// Set once the migrations have been applied (or found applied) through this store.
    migrated: OnceCell<()>,
    /// The append queue: group commit of concurrent appends.
    appends: Arc<GroupCommit>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.schema)
            .field("pool", &self.pool.status())
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// The schema version this build creates and understands (the number of migrations).
    pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

    /// Connects to the database at `url` with the default [`PostgresOptions`] and applies
    /// pending migrations.
    ///
    /// # Errors
    /// [`EngineError::Storage`]: [`StoreErrorKind::Config`] when the URL is invalid or
    /// the server refuses the login, [`StoreErrorKind::Unavailable`] when it cannot be
    /// reached, [`StoreErrorKind::Schema`] when a migration fails or the database was
    /// migrated by a newer reprise (its schema version is higher than
    /// [`PostgresStore::SCHEMA_VERSION`]).
    pub async fn connect(url: &str) -> Result<PostgresStore, EngineError> {
        Self::connect_with(url, PostgresOptions::default()).await
    }

    /// Like [`PostgresStore::connect`], with explicit [`PostgresOptions`].
    ///
    /// # Errors
    /// As [`PostgresStore::connect`]; also when `options.schema` is empty or
    /// `options.pool_size` is 0.
    pub async fn connect_with(
        url: &str,
        options: PostgresOptions,
    ) -> Result<PostgresStore, EngineError> {
        let store = Self::connect_lazy(url, options)?;
        store.ready().await?;
        Ok(store)
    }

    /// Builds the store without connecting: connections are opened on first use, and the
    /// first operation applies pending migrations. Synchronous, so that
    /// [`store::open`](super::open) can use it; the store must then be used from within a
    /// Tokio runtime (as every [`Store`] method is).
    ///
    /// # Errors
    /// [`EngineError::Storage`] of kind [`StoreErrorKind::Config`] when the URL cannot be
    /// parsed, `options.schema` is empty or `options.pool_size` is 0. Connection problems
    /// surface on first use.
    pub fn connect_lazy(url: &str, options: PostgresOptions) -> Result<PostgresStore, EngineError> {
        let mut config = tokio_postgres::Config::from_str(url).map_err(|e| {
            StoreError::new(
                StoreErrorKind::Config,
                format!("invalid Postgres URL `{}`: {e}", redact_password(url)),
            )
            .with_source(e)
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        let target = describe_target(&config);
        if config.get_application_name().is_none() {
            config.application_name("reprise");
        }
        if let Some(schema) = &options.schema {
            if schema.is_empty() {
                return Err(StoreError::new(
                    StoreErrorKind::Config,
                    "the Postgres schema name must not be empty",
                )
                .into());
            }
            // `options` is the server's command line: `-c search_path=…` for every
            // connection; spaces and backslashes are escaped with a backslash there.
            let path = quote_ident(schema)
                .replace('\\', "\\\\")
                .replace(' ', "\\ ");
            let setting = format!("-c search_path={path}");
            let merged = match config.get_options() {
                Some(existing) if !existing.is_empty() => format!("{existing} {setting}"),
                _ => setting,
            };
            config.options(merged);
        }
        if options.pool_size == 0 {
            return Err(StoreError::new(
                StoreErrorKind::Config,
                "the Postgres pool size must be at least 1",
            )
            .into());
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(DEFAULT_CONNECT_TIMEOUT + Duration::from_secs(5)))
            .build()
            .map_err(|e| {
                StoreError::new(
                    StoreErrorKind::Config,
                    format!("cannot build the Postgres pool: {e}"),
                )
                .with_source(e)
            })?;
        Ok(PostgresStore {
            pool,
            schema: options.schema,
            target,
            migrated: OnceCell::new(),
            appends: Arc::new(GroupCommit::default()),
        })
    }

    /// The schema holding reprise's tables, if one was set in [`PostgresOptions`].
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// Applies pending migrations (once per store; retried after a failure).
    async fn ready(&self) -> Result<(), EngineError> {
        self.migrated
            .get_or_try_init(|| async {
                let mut client = self.raw_client().await?;
                migrate(&mut client, self.schema.as_deref()).await
            })
            .await
            .map(drop)
    }

    async fn raw_client(&self) -> Result<deadpool_postgres::Client, EngineError> {
        self.pool
            .get()
            .await
            .map_err(|e| connect_error(&self.target, e).into())
    }

    /// A pooled connection to a migrated database.
    async fn client(&self) -> Result<deadpool_postgres::Client, EngineError> {
        self.ready().await?;
        self.raw_client().await
    }
}

// ---------------------------------------------------------------------------------------
// Migrations

async fn migrate(
    client: &mut deadpool_postgres::Client,
    schema: Option<&str>,
) -> Result<(), EngineError> {
    let latest = i64::from(PostgresStore::SCHEMA_VERSION);
    let tx = client
        .transaction()
        .await
        .map_err(|e| pg("cannot start a migration", e))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1::bigint)",
        &[&lock_key(schema.unwrap_or(""))],
    )
    .await
    .map_err(|e| pg("cannot take the migration lock", e))?;
    if let Some(schema) = schema {
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            quote_ident(schema)
        ))
        .await
        .map_err(|e| pg(&format!("cannot create schema `{schema}`"), e))?;
    }
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS reprise_schema_migrations (
             version     BIGINT PRIMARY KEY,
             applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(|e| pg("cannot create the reprise_schema_migrations table", e))?;
    let current: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0)::bigint FROM reprise_schema_migrations",
            &[],
        )
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|e| pg("cannot read the schema version", e))?;
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
    for version in current + 1..=latest {
        let sql = usize::try_from(version - 1)
            .ok()
            .and_then(|i| MIGRATIONS.get(i))
            .ok_or_else(|| {
                StoreError::new(
                    StoreErrorKind::Schema,
                    format!("invalid schema version {version}"),
                )
            })?;
        let what = format!("migration to schema version {version} failed");
        tx.batch_execute(sql)
            .await
            .map_err(|e| match pg(&what, e) {
                // A statement of the migration the server refused: the schema is not one it
                // can be migrated from.
                EngineError::Storage(e) if e.kind() == StoreErrorKind::Database => {
                    EngineError::Storage(e.with_kind(StoreErrorKind::Schema))
                }
                other => other,
            })?;
        tx.execute(
            "INSERT INTO reprise_schema_migrations (version) VALUES ($1::bigint)",
            &[&version],
        )
        .await
        .map_err(|e| pg(&what, e))?;
    }
    tx.commit()
        .await
        .map_err(|e| pg("cannot commit the migrations", e))
}

/// The advisory lock key of the migrations of `schema`: a stable 64-bit FNV-1a hash.
fn lock_key(schema: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in "reprise_schema_migrations:".bytes().chain(schema.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// `name` as a quoted SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Where `config` connects, for error messages: `host:port/dbname as user` (hosts and
/// ports comma-separated when there are several; never the password).
fn describe_target(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports
                .get(i)
                .or_else(|| ports.first())
                .copied()
                .unwrap_or(5432);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                #[cfg(unix)]
                Host::Unix(dir) => format!("{}/.s.PGSQL.{port}", dir.display()),
            }
        })
        .collect();
    let hosts = if hosts.is_empty() {
        "localhost:5432".to_owned()
    } else {
        hosts.join(",")
    };
    let user = config.get_user().unwrap_or("(default user)");
    let dbname = config.get_dbname().unwrap_or(user);
    format!("{hosts}/{dbname} as {user}")
}

/// A failure to get a pooled connection to the server at `target`, saying what to check:
/// the server's address when it cannot be reached, the credentials when it refuses the
/// login, the database name when it does not exist.
fn connect_error(target: &str, e: deadpool_postgres::PoolError) -> StoreError {
    let kind = pool_kind(&e);
    let (state, text) = match &e {
        // The client's own error and its causes ("error connecting to server: Connection
        // refused"), without the pool's "Error occurred while creating a new object".
        deadpool_postgres::PoolError::Backend(backend) => {
            let mut text = backend.to_string();
            let mut cause = std::error::Error::source(backend);
            while let Some(error) = cause {
                text.push_str(&format!(": {error}"));
                cause = error.source();
            }
            (backend.code().map(|c| c.code().to_owned()), text)
        }
        other => (None, other.to_string()),
    };
    let login = "the server refused the login: check the user name and password in the URL \
                 (or PGPASSWORD) and the server's pg_hba.conf";
    let check = match (kind, state.as_deref()) {
        (_, Some("3D000")) => {
            "the database does not exist there: create it (`createdb`) or fix the database \
             name in the URL"
        }
        (_, Some(code)) if code.starts_with("28") => login,
        (StoreErrorKind::Config, _) if text.contains("password") || text.contains("auth") => login,
        (StoreErrorKind::Unavailable, _) => {
            "check the host and port in the URL, and that the server listens there \
             (`pg_isready -h HOST -p PORT` tells)"
        }
        _ => "",
    };
    let check = if check.is_empty() {
        String::new()
    } else {
        format!("; {check}")
    };
    StoreError::new(
        kind,
        format!("cannot connect to Postgres at {target}: {text}{check}"),
    )
    .with_source(e)
}

/// The URL with the password (if any) replaced, for error messages.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------
// The store

#[async_trait]
impl Store for PostgresStore {
    async fn run_for_key(&self, key: &str) -> Result<Option<RunId>, EngineError> {
        let what = &format!("cannot read the run of key `{key}`");
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT run_id FROM reprise_run_keys WHERE key = $1::text")
            .await
            .map_err(|e| pg(what, e))?;
        let row = client
            .query_opt(&stmt, &[&key])
            .await
            .map_err(|e| pg(what, e))?;
        row.map(|row| row.try_get(0).map(RunId).map_err(|e| pg(what, e)))
            .transpose()
    }

    async fn set_run_key(&self, key: &str, id: &RunId) -> Result<(), EngineError> {
        let run = id.as_str();
        let what = &format!("cannot point key `{key}` at run `{run}`");
        let client = self.client().await?;
        let changed = client
            .execute(
                "INSERT INTO reprise_run_keys (key, run_id)
                 SELECT $1::text, id FROM reprise_runs WHERE id = $2::text
                 ON CONFLICT (key) DO UPDATE SET run_id = EXCLUDED.run_id",
                &[&key, &run],
            )
            .await
            .map_err(|e| pg_run(what, run, e))?;
        if changed == 0 {
            return Err(EngineError::UnknownRun(run.to_owned()));
        }
        Ok(())
    }

    async fn post_message(
        &self,
        message: crate::message::NewMessage,
    ) -> Result<crate::message::Posted, EngineError> {
        let payload = serde_json::to_string(&message.payload)?;
        let run = message.run_id.as_str();
        let at = micros(message.at);
        let what = &format!("cannot post a message to run `{run}`");
        let pg = |what: &str, e| pg_run(what, run, e);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| pg(what, e))?;
        // The run row's lock orders concurrent posts: each numbers its message after the
        // last one committed.
        let Some(row) = tx
            .query_opt(
                "SELECT status FROM reprise_runs WHERE id = $1::text FOR UPDATE",
                &[&run],
            )
            .await
            .map_err(|e| pg(what, e))?
        else {
            tx.rollback().await.map_err(|e| pg(what, e))?;
            return Err(EngineError::UnknownRun(run.to_owned()));
        };
        let status: String = row.try_get(0).map_err(|e| pg(what, e))?;
        if let Some(dedupe) = &message.dedupe {
            let earlier = tx
                .query_opt(
                    "SELECT seq FROM reprise_messages WHERE run_id = $1::text AND dedupe = $2::text",
                    &[&run, dedupe],
                )
                .await
                .map_err(|e| pg(what, e))?;
            if let Some(row) = earlier {
                let seq: i64 = row.try_get(0).map_err(|e| pg(what, e))?;
                tx.rollback().await.map_err(|e| pg(what, e))?;
                return Ok(crate::message::Posted {
                    seq: codec::number(run, "messages.seq", seq)?,
                    duplicate: true,
                });
            }
        }
        let seq: i64 = tx
            .query_one(
                "INSERT INTO reprise_messages (run_id, seq, channel, payload, dedupe, created_at)
                 SELECT $1::text, COALESCE(MAX(seq), 0) + 1, $2::text, $3::text::json,
                        $4::text, $5::bigint
                   FROM reprise_messages WHERE run_id = $1::text
                 RETURNING seq",
                &[&run, &message.channel, &payload, &message.dedupe, &at],
            )
            .await
            .map_err(|e| pg(what, e))?
            .try_get(0)
            .map_err(|e| pg(what, e))?;
        if status == RunStatus::Waiting.as_str() {
            tx.execute(
                "UPDATE reprise_runs SET status = 'queued', wake_at = NULL,
                        updated_at = $2::bigint
                  WHERE id = $1::text AND status = 'waiting'",
                &[&run, &at],
            )
            .await
            .map_err(|e| pg(what, e))?;
        }
        tx.commit().await.map_err(|e| pg(what, e))?;
        Ok(crate::message::Posted {
            seq: codec::number(run, "messages.seq", seq)?,
            duplicate: false,
        })
    }

    async fn messages(
        &self,
        id: &RunId,
        after: u64,
    ) -> Result<Vec<crate::message::Message>, EngineError> {
        let run = id.as_str();
        let what = &format!("cannot read the inbox of run `{run}`");
        let pg = |what: &str, e| pg_run(what, run, e);
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {} FROM reprise_messages
                  WHERE run_id = $1::text AND seq > $2::bigint ORDER BY seq",
                codec::message_columns("::text")
            ))
            .await
            .map_err(|e| pg(what, e))?;
        let rows = client
            .query(&stmt, &[&run, &codec::seq_param(after)])
            .await
            .map_err(|e| pg(what, e))?;
        rows.iter()
            .map(|row| codec::decode_message(run, row))
            .collect()
    }

    async fn add_event_wait(&self, id: &RunId, name: &str) -> Result<(), EngineError> {
        let run = id.as_str();
        let what = &format!("cannot record that run `{run}` waits for events `{name}`");
        let client = self.client().await?;
        // Nothing for a run that does not exist (it waits for nothing).
        client
            .execute(
                "INSERT INTO reprise_event_waits (name, run_id, since)
                 SELECT $1::text, id, $3::bigint FROM reprise_runs WHERE id = $2::text
                 ON CONFLICT (name, run_id) DO NOTHING",
                &[&name, &run, &micros(Utc::now())],
            )
            .await
            .map_err(|e| pg_run(what, run, e))?;
        Ok(())
    }

    async fn remove_event_wait(&self, id: &RunId, name: &str) -> Result<(), EngineError> {
        let run = id.as_str();
        let what = &format!("cannot end the wait of run `{run}` for events `{name}`");
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM reprise_event_waits WHERE name = $1::text AND run_id = $2::text",
                &[&name, &run],
            )
            .await
            .map_err(|e| pg_run(what, run, e))?;
        Ok(())
    }

    async fn event_waiters(&self, name: &str) -> Result<Vec<RunId>, EngineError> {
        let what = &format!("cannot read the runs waiting for events `{name}`");
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT run_id FROM reprise_event_waits WHERE name = $1::text ORDER BY pos",
                &[&name],
            )
            .await
            .map_err(|e| pg(what, e))?;
        rows.iter()
            .map(|row| row.try_get(0).map(RunId).map_err(|e| pg(what, e)))
            .collect()
    }

    async fn record_event(
        &self,
        event: &crate::message::EmittedEvent,
    ) -> Result<bool, EngineError> {
        let what = &format!("cannot record event `{}` `{}`", event.name, event.id);
        let client = self.client().await?;
        let inserted = client
            .execute(
                "INSERT INTO reprise_emitted_events (name, id, created_at)
                 VALUES ($1::text, $2::text, $3::bigint) ON CONFLICT (name, id) DO NOTHING",
                &[&event.name, &event.id, &micros(event.at)],
            )
            .await
            .map_err(|e| pg(what, e))?;
        Ok(inserted > 0)
    }

    async fn create_run(&self, record: RunRecord, created: NewEvent) -> Result<(), EngineError> {
        let create = EncodedCreate::new(record, &created)?;
        let run = create.id.as_str();
        let what = format!("cannot create run `{run}`");
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(CREATE_RUN_SQL)
            .await
            .map_err(|e| pg_run(&what, run, e))?;
        let inserted = client
            .execute(&stmt, &create.params())
            .await
            .map_err(|e| pg_run(&what, run, e))?;
        if inserted == 0 {
            return Err(codec::run_exists(run));
        }
        Ok(())
    }

    async fn create_run_once(
        &self,
        key: &str,
        record: RunRecord,
        created: NewEvent,
    ) -> Result<Option<RunId>, EngineError> {
        let create = EncodedCreate::new(record, &created)?;
        let run = create.id.as_str();
        let what = &format!("cannot create run `{run}`");
        let pg = |what: &str, e| pg_run(what, run, e);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| pg(what, e))?;
        // A concurrent inserter of the same key waits here for the first one's commit
        // (or rollback), then inserts nothing (or takes the key).
        let won = tx
            .execute(
                "INSERT INTO reprise_run_keys (key, run_id) VALUES ($1::text, $2::text)
                 ON CONFLICT (key) DO NOTHING",
                &[&key, &create.id],
            )
            .await
            .map_err(|e| pg(what, e))?;
        if won == 0 {
            let holder: Option<String> = tx
                .query_opt(
                    "SELECT run_id FROM reprise_run_keys WHERE key = $1::text",
                    &[&key],
                )
                .await
                .map_err(|e| pg(what, e))?
                .map(|row| row.try_get(0))
                .transpose()
                .map_err(|e| pg(what, e))?;
            tx.rollback().await.map_err(|e| pg(what, e))?;
            return match holder {
                Some(holder) => Ok(Some(RunId(holder))),
                None => Err(StoreError::new(
                    StoreErrorKind::Busy,
                    format!("{what}: the key `{key}` was taken and then released concurrently"),
                )
                .with_run(run)
                .into()),
            };
        }
        let stmt = tx
            .prepare_cached(CREATE_RUN_SQL)
            .await
            .map_err(|e| pg(what, e))?;
        let inserted = tx
            .execute(&stmt, &create.params())
            .await
            .map_err(|e| pg(what, e))?;
        if inserted == 0 {
            tx.rollback().await.map_err(|e| pg(what, e))?;
            return Err(codec::run_exists(run));
        }
        tx.commit().await.map_err(|e| pg(what, e))?;
        Ok(None)
    }

    async fn create_run_gated(
        &self,
        record: RunRecord,
        created: NewEvent,
        gate: &crate::queue::StartGate,
    ) -> Result<crate::queue::Gated, EngineError> {
        self.gated_create(record, created, gate).await
    }

    async fn queue_totals(
        &self,
        queue: &crate::queue::Queue,
        key: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(crate::queue::QueueTotals, Option<crate::queue::KeyTotals>), EngineError> {
        self.totals_of(queue, key, now).await
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
        self.step_permit_take(&window, clock.as_ref()).await
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
        self.step_permit_count(&window).await
    }

    async fn worker_heartbeat(&self, worker: &crate::queue::WorkerInfo) -> Result<(), EngineError> {
        self.worker_put(worker).await
    }

    async fn worker_stopped(&self, id: &str) -> Result<(), EngineError> {
        self.worker_delete(id).await
    }

    async fn live_workers(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<crate::queue::WorkerInfo>>, EngineError> {
        self.workers_live(now).await.map(Some)
    }

    async fn acquire(
        &self,
        id: &RunId,
        owner: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<Acquired, EngineError> {
        let run = id.as_str();
        let what = &format!("cannot take the lease of run `{run}`");
        let pg = |what: &str, e| pg_run(what, run, e);
        let (now, expires) = (micros(now), micros(expires_at));
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| pg(what, e))?;
        let Some(row) = tx
            .query_opt(
                "SELECT lease_owner, lease_expires_at FROM reprise_runs
                 WHERE id = $1::text FOR UPDATE",
                &[&run],
            )
            .await
            .map_err(|e| pg(what, e))?
        else {
            tx.rollback().await.map_err(|e| pg(what, e))?;
            return Err(EngineError::UnknownRun(run.to_owned()));
        };
        let holder = codec::lease_holder(run, &row, 0)?;
        if let Some(held) = codec::held_elsewhere(run, owner, now, holder)? {
            tx.rollback().await.map_err(|e| pg(what, e))?;
            return Ok(held);
        }
        let row = tx
            .query_one(
                "UPDATE reprise_runs
                    SET lease_owner = $2::text, lease_expires_at = $3::bigint,
                        fence = fence + 1
                  WHERE id = $1::text
                 RETURNING fence, cancel_requested, pause_requested",
                &[&run, &owner, &expires],
            )
            .await
            .map_err(|e| pg(what, e))?;
        let lease = codec::lease(run, owner, expires, &row, 0)?;
        tx.commit().await.map_err(|e| pg(what, e))?;
        Ok(Acquired::Lease(lease))
    }

    async fn claim(
        &self,
        request: &crate::queue::ClaimRequest<'_>,
    ) -> Result<Vec<Lease>, EngineError> {
        let crate::queue::ClaimRequest {
            owner,
            now,
            expires_at,
            limit,
            routing,
            ..
        } = *request;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let what = "cannot claim runs";
        let expires = micros(expires_at);
        if request.run.is_some() {
            // A claim of one run: admission only (see `ClaimRequest::run`).
            let admitted = self.claim_admitted(request, usize::MAX).await?;
            return Ok(admitted.into_iter().map(|(_, lease)| lease).collect());
        }
        let mut claimed = {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(CLAIM_SQL)
                .await
                .map_err(|e| pg(what, e))?;
            let rows = client
                .query(
                    &stmt,
                    &[
                        &micros(now),
                        &i64::try_from(limit).unwrap_or(i64::MAX),
                        &owner,
                        &expires,
                        &routing.workflows,
                        &routing.queues,
                        &crate::queue::DEFAULT_QUEUE,
                    ],
                )
                .await
                .map_err(|e| pg(what, e))?;
            let mut claimed = Vec::with_capacity(rows.len());
            for row in &rows {
                claimed.push(claimed_lease(owner, expires, row)?);
            }
            claimed
        };
        // Admission into the queues this worker knows, while the limit leaves room.
        if claimed.len() < limit && !request.queues.is_empty() {
            let admitted = self.claim_admitted(request, limit - claimed.len()).await?;
            claimed.extend(admitted);
        }
        // `UPDATE … RETURNING` does not keep the CTE's order.
        claimed.sort_by_key(|(order, _)| *order);
        Ok(claimed.into_iter().map(|(_, lease)| lease).collect())
    }

    async fn renew(
        &self,
        lease: &Lease,
        expires_at: DateTime<Utc>,
    ) -> Result<Option<Lease>, EngineError> {
        let run = lease.run_id.as_str();
        let what = &format!("cannot renew the lease of run `{run}`");
        let pg = |what: &str, e| pg_run(what, run, e);
        let expires = micros(expires_at);
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE reprise_runs SET lease_expires_at = $3::bigint
                  WHERE id = $1::text AND fence = $2::bigint AND lease_owner IS NOT NULL
                 RETURNING cancel_requested, pause_requested",
            )
            .await
            .map_err(|e| pg(what, e))?;
        let Some(row) = client
            .query_opt(&stmt, &[&run, &fence_param(lease.fence), &expires])
            .await
            .map_err(|e| pg(what, e))?
        else {
            return Ok(None);
        };
        codec::renewed(lease, expires, &row, 0).map(Some)
    }

    async fn release(&self, lease: &Lease) -> Result<(), EngineError> {
        let run = lease.run_id.as_str();
        let what = &format!("cannot release the lease of run `{run}`");
        let pg = |what: &str, e| pg_run(what, run, e);
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE reprise_runs SET lease_owner = NULL, lease_expires_at = NULL
                  WHERE id = $1::text AND fence = $2::bigint",
            )
            .await
            .map_err(|e| pg(what, e))?;
        client
            .execute(&stmt, &[&lease.run_id.as_str(), &fence_param(lease.fence)])
            .await
            .map_err(|e| pg(what, e))?;
        Ok(())
    }

    async fn request_cancel(&self, id: &RunId) -> Result<(), EngineError> {
        let what = &format!("cannot request the cancellation of run `{id}`");
        let pg = |what: &str, e| pg_run(what, id.as_str(), e);
        let client = self.client().await?;
        let changed = client
            .execute(
                "UPDATE reprise_runs SET cancel_requested = TRUE WHERE id = $1::text",
                &[&id.as_str()],
            )
            .await
            .map_err(|e| pg(what, e))?;
        if changed == 0 {
            return Err(EngineError::UnknownRun(id.to_string()));
        }
        Ok(())
    }

    async fn request_pause(&self, id: &RunId, by: Option<&str>) -> Result<(), EngineError> {
        let what = &format!("cannot request a pause of run `{id}`");
        let pg = |what: &str, e| pg_run(what, id.as_str(), e);
        let client = self.client().await?;
        let changed = client
            .execute(
                "UPDATE reprise_runs SET pause_requested = $2::text WHERE id = $1::text",
                &[&id.as_str(), &by],
            )
            .await
            .map_err(|e| pg(what, e))?;
        if changed == 0 {
            return Err(EngineError::UnknownRun(id.to_string()));
        }
        Ok(())
    }

    async fn set_workflow_pause(
        &self,
        workflow: &str,
        pause: Option<&WorkflowPause>,
    ) -> Result<bool, EngineError> {
        let what = &format!("cannot change the pause of workflow `{workflow}`");
        let client = self.client().await?;
        let changed = match pause {
            Some(pause) => client
                .execute(
                    "INSERT INTO reprise_paused_workflows (workflow, paused_by, paused_at)
                     VALUES ($1::text, $2::text, $3::bigint) ON CONFLICT (workflow) DO NOTHING",
                    &[&workflow, &pause.by, &micros(pause.at)],
                )
                .await
                .map_err(|e| pg(what, e))?,
            None => client
                .execute(
                    "DELETE FROM reprise_paused_workflows WHERE workflow = $1::text",
                    &[&workflow],
                )
                .await
                .map_err(|e| pg(what, e))?,
        };
        Ok(changed > 0)
    }

    async fn workflow_pauses(&self) -> Result<Vec<WorkflowPause>, EngineError> {
        let what = "cannot read paused workflows";
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT workflow, paused_by, paused_at FROM reprise_paused_workflows
                  ORDER BY workflow",
                &[],
            )
            .await
            .map_err(|e| pg(what, e))?;
        rows.iter()
            .map(|row| {
                let workflow = column("<paused workflow>", "workflow", row.text(0))?;
                let by = column(&workflow, "paused_by", row.text(1))?;
                let at = column(&workflow, "paused_at", row.int(2))?;
                Ok(WorkflowPause {
                    at: codec::timestamp(&workflow, "paused_at", at)?,
                    workflow,
                    by,
                })
            })
            .collect()
    }

    async fn next_wake(&self) -> Result<Option<DateTime<Utc>>, EngineError> {
        let what = "cannot read wake-up times";
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT MIN(t)::bigint FROM (
                     SELECT MIN(wake_at) AS t FROM reprise_runs
                      WHERE status IN ('queued', 'sleeping', 'waiting')
                     UNION ALL
                     SELECT MIN(lease_expires_at) FROM reprise_runs
                      WHERE status = 'running') AS wakes",
            )
            .await
            .map_err(|e| pg(what, e))?;
        let row = client
            .query_one(&stmt, &[])
            .await
            .map_err(|e| pg(what, e))?;
        codec::next_wake(column("<next wake-up>", "wake_at", row.opt_int(0))?)
    }

    async fn run_counts(&self, now: DateTime<Utc>) -> Result<Vec<super::RunCount>, EngineError> {
        let what = "cannot count runs";
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT workflow, status, COUNT(*)::bigint,
                        (COUNT(*) FILTER (WHERE due_at IS NOT NULL AND due_at <= $1::bigint
                            AND (lease_owner IS NULL OR lease_expires_at <= $1::bigint)))::bigint
                   FROM reprise_runs GROUP BY workflow, status",
            )
            .await
            .map_err(|e| pg(what, e))?;
        let rows = client
            .query(&stmt, &[&micros(now)])
            .await
            .map_err(|e| pg(what, e))?;
        rows.iter().map(codec::decode_run_count).collect()
    }

    async fn cursor(&self, name: &str) -> Result<Option<serde_json::Value>, EngineError> {
        let what = "cannot read cursor";
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT value::text FROM reprise_cursors WHERE name = $1::text")
            .await
            .map_err(|e| pg(what, e))?;
        let Some(row) = client
            .query_opt(&stmt, &[&name])
            .await
            .map_err(|e| pg(what, e))?
        else {
            return Ok(None);
        };
        let text = column(&format!("<cursor {name}>"), "value", row.text(0))?;
        codec::cursor(name, &text).map(Some)
    }

    async fn set_cursor(&self, name: &str, value: &serde_json::Value) -> Result<(), EngineError> {
        let what = "cannot store cursor";
        let text = serde_json::to_string(value)?;
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO reprise_cursors (name, value, updated_at)
                 VALUES ($1::text, $2::text::json, $3::bigint)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value,
                                                  updated_at = excluded.updated_at",
            )
            .await
            .map_err(|e| pg(what, e))?;
        client
            .execute(&stmt, &[&name, &text, &micros(Utc::now())])
            .await
            .map_err(|e| pg(what, e))?;
        Ok(())
    }

    async fn list_schedules(&self) -> Result<Vec<super::ScheduleRow>, EngineError> {
        self.schedules_all().await
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
        self.document_put(kind, key, value, mode, now).await
    }

    async fn document(
        &self,
        kind: &str,
        key: &str,
    ) -> Result<Option<super::Document>, EngineError> {
        self.document_one(kind, key).await
    }

    async fn documents(
        &self,
        kind: &str,
        prefix: &str,
    ) -> Result<Vec<super::Document>, EngineError> {
        self.document_prefix(kind, prefix).await
    }

    async fn delete_document(&self, kind: &str, key: &str) -> Result<bool, EngineError> {
        self.document_delete(kind, key).await
    }

    async fn schedule(&self, name: &str) -> Result<Option<super::ScheduleRow>, EngineError> {
        self.schedule_one(name).await
    }

    async fn create_schedule(&self, row: &super::ScheduleRow) -> Result<bool, EngineError> {
        self.schedule_put(row, true).await
    }

    async fn update_schedule(&self, row: &super::ScheduleRow) -> Result<bool, EngineError> {
        self.schedule_put(row, false).await
    }

    async fn delete_schedule(&self, name: &str) -> Result<bool, EngineError> {
        self.schedule_delete(name).await
    }

    async fn set_schedule_paused(
        &self,
        name: &str,
        paused: bool,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        self.schedule_set_paused(name, paused, by, at).await
    }

    async fn create_run_with_events(
        &self,
        record: RunRecord,
        created: NewEvent,
        events: Vec<NewEvent>,
    ) -> Result<(), EngineError> {
        let create = EncodedCreate::new(record, &created)?;
        let run = create.id.as_str();
        let what = &format!("cannot create run `{run}`");
        let pg = |what: &str, e| pg_run(what, run, e);
        let mut kinds: Vec<&str> = Vec::with_capacity(events.len());
        let mut ids: Vec<Option<String>> = Vec::with_capacity(events.len());
        let mut attempts: Vec<i64> = Vec::with_capacity(events.len());
        let mut ats: Vec<i64> = Vec::with_capacity(events.len());
        let mut payloads: Vec<String> = Vec::with_capacity(events.len());
        for event in &events {
            kinds.push(event.kind.as_str());
            ids.push(event.correlation_id.clone());
            attempts.push(i64::from(event.attempt));
            ats.push(micros(event.at));
            payloads.push(serde_json::to_string(&event.payload)?);
        }
        let next_seq = 1 + events.len() as i64;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| pg(what, e))?;
        let stmt = tx
            .prepare_cached(CREATE_RUN_SQL)
            .await
            .map_err(|e| pg(what, e))?;
        let inserted = tx
            .execute(&stmt, &create.params())
            .await
            .map_err(|e| pg(what, e))?;
        if inserted == 0 {
            tx.rollback().await.map_err(|e| pg(what, e))?;
            return Err(codec::run_exists(run));
        }
        tx.execute(
            "INSERT INTO reprise_events (run_id, seq, kind, correlation_id, attempt, at, payload)
             SELECT $1::text, e.ord, e.kind, e.correlation_id, e.attempt, e.at, e.payload::json
             FROM UNNEST($2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[])
                  WITH ORDINALITY AS e (kind, correlation_id, attempt, at, payload, ord)",
            &[&create.id, &kinds, &ids, &attempts, &ats, &payloads],
        )
        .await
        .map_err(|e| pg(what, e))?;
        tx.execute(
            "UPDATE reprise_runs SET next_seq = $2::bigint WHERE id = $1::text",
            &[&create.id, &next_seq],
        )
        .await
        .map_err(|e| pg(what, e))?;
        tx.commit().await.map_err(|e| pg(what, e))?;
        Ok(())
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
        let first = i64::try_from(first_seq).map_err(|_| {
            StoreError::new(
                StoreErrorKind::Database,
                format!(
                    "cannot append to run `{run_id}`: sequence number {first_seq} is out of range"
                ),
            )
            .with_run(run_id.as_str())
        })?;
        let updated_at = micros(events.last().map_or_else(Utc::now, |e| e.at));
        let mut encoded = EncodedAppend {
            run: run_id.0,
            first_seq,
            first,
            status: update.status.map(RunStatus::as_str),
            attempt: update.attempt.map(i64::from),
            output: update
                .output
                .as_ref()
                .map(serde_json::to_string)
                .transpose()?,
            error: update
                .error
                .as_ref()
                .map(serde_json::to_string)
                .transpose()?,
            set_wake: update.wake_at.is_some(),
            wake: update.wake_at.flatten().map(micros),
            updated_at,
            fence: fence.map(fence_param),
            release,
            kinds: Vec::with_capacity(events.len()),
            correlation_ids: Vec::with_capacity(events.len()),
            attempts: Vec::with_capacity(events.len()),
            ats: Vec::with_capacity(events.len()),
            payloads: Vec::with_capacity(events.len()),
            // Only a suspension on a wait checks the inbox (see `memory::woken_by_inbox`).
            inbox_seen: update
                .inbox_seen
                .filter(|_| update.status == Some(RunStatus::Waiting))
                .map(codec::seq_param),
        };
        for event in events {
            encoded.kinds.push(event.kind.as_str());
            encoded.attempts.push(i64::from(event.attempt));
            encoded.ats.push(micros(event.at));
            encoded
                .payloads
                .push(serde_json::to_string(&event.payload)?);
            encoded.correlation_ids.push(event.correlation_id);
        }
        self.ready().await?;
        self.appends.append(&self.pool, encoded).await
    }

    async fn run(&self, id: &RunId) -> Result<Option<RunRecord>, EngineError> {
        let what = &format!("cannot read run `{id}`");
        let pg = |what: &str, e| pg_run(what, id.as_str(), e);
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {} FROM reprise_runs WHERE id = $1::text",
                codec::run_columns("::text")
            ))
            .await
            .map_err(|e| pg(what, e))?;
        client
            .query_opt(&stmt, &[&id.as_str()])
            .await
            .map_err(|e| pg(what, e))?
            .map(|row| decode_run(&row))
            .transpose()
    }

    async fn events(&self, id: &RunId) -> Result<Vec<Event>, EngineError> {
        let what = &format!("cannot read the events of run `{id}`");
        let pg = |what: &str, e| pg_run(what, id.as_str(), e);
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {} FROM reprise_events WHERE run_id = $1::text ORDER BY seq",
                codec::event_columns("::text")
            ))
            .await
            .map_err(|e| pg(what, e))?;
        let rows = client
            .query(&stmt, &[&id.as_str()])
            .await
            .map_err(|e| pg(what, e))?;
        let mut events = EventLog::new(id, rows.len());
        for row in &rows {
            events.push(row)?;
        }
        Ok(events.finish())
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, EngineError> {
        Ok(self.list_runs_with_skipped(filter).await?.runs)
    }

    async fn triage(&self, id: &RunId) -> Result<Option<RunTriage>, EngineError> {
        let run = id.as_str();
        let what = &format!("cannot read run `{run}`");
        let pg = |what: &str, e| pg_run(what, run, e);
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&codec::triage_sql(
                "reprise_runs",
                "reprise_events",
                "$1::text",
            ))
            .await
            .map_err(|e| pg(what, e))?;
        client
            .query_opt(&stmt, &[&run])
            .await
            .map_err(|e| pg(what, e))?
            .map(|row| codec::decode_triage(run, &row))
            .transpose()
    }

    async fn list_runs_with_skipped(&self, filter: &RunFilter) -> Result<RunListing, EngineError> {
        let what = "cannot list runs";
        let cursor = filter.checked_cursor()?;
        let dialect = search_sql::Dialect {
            runs: "reprise_runs",
            tags: "reprise_run_tags",
            placeholder: |n, param| {
                let ty = match param {
                    search_sql::Param::Text(_) => "text",
                    search_sql::Param::Int(_) => "bigint",
                    search_sql::Param::Real(_) => "float8",
                };
                format!("${n}::{ty}")
            },
            columns: search_sql::qualified_run_columns("::text"),
        };
        let (sql, values) = search_sql::list_sql(&dialect, filter, cursor.as_ref());
        let values: Vec<Box<dyn ToSql + Sync + Send>> = values
            .into_iter()
            .map(|p| -> Box<dyn ToSql + Sync + Send> {
                match p {
                    search_sql::Param::Text(t) => Box::new(t),
                    search_sql::Param::Int(i) => Box::new(i),
                    search_sql::Param::Real(r) => Box::new(r),
                }
            })
            .collect();
        let params: Vec<&(dyn ToSql + Sync)> = values
            .iter()
            .map(|v| v.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let client = self.client().await?;
        let stmt = client.prepare_cached(&sql).await.map_err(|e| pg(what, e))?;
        let rows = client
            .query(&stmt, &params)
            .await
            .map_err(|e| pg(what, e))?;
        let mut listing = RunListing::default();
        for row in &rows {
            // A row that does not decode is reported, not fatal to the listing.
            match decode_run(row) {
                Ok(run) => listing.runs.push(run),
                Err(error) => listing.skipped.push(SkippedRun::of(error)?),
            }
        }
        listing.next_cursor = crate::tags::next_cursor(filter.limit, rows.len(), &listing.runs);
        Ok(listing)
    }

    async fn purge_runs(&self, filter: &PurgeFilter) -> Result<PurgeBatch, EngineError> {
        let what = "cannot purge runs";
        let before = micros(filter.before);
        let batch = i64::try_from(filter.batch()).unwrap_or(i64::MAX);
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&batch, &before];
        // The first term is the partial index's own condition, so the planner sees that
        // the query implies it.
        let mut clause = format!(
            "status IN ({}) AND status IN ({}) AND updated_at < $2::bigint",
            purge::ENDED_SQL,
            purge::status_list(filter)
        );
        if let Some(workflow) = &filter.workflow {
            params.push(workflow);
            clause.push_str(" AND workflow = $3::text");
        }
        let mut client = self.client().await?;
        if filter.dry_run {
            let count: i64 = client
                .query_one(
                    &format!("SELECT count(*) FROM reprise_runs WHERE {clause} AND $1::bigint > 0"),
                    &params,
                )
                .await
                .map_err(|e| pg(what, e))?
                .get(0);
            let rows = client
                .query(
                    &format!(
                        "SELECT id, workflow, status FROM reprise_runs WHERE {clause}
                         ORDER BY updated_at, pos LIMIT $1::bigint"
                    ),
                    &params,
                )
                .await
                .map_err(|e| pg(what, e))?;
            let runs = rows
                .iter()
                .map(purge::purged_run)
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(PurgeBatch {
                runs,
                count: u64::try_from(count).unwrap_or(0),
            });
        }
        // One short transaction per batch. Rows a writer holds are skipped (SKIP LOCKED),
        // and the DELETE checks the status again on the row as it is when deleted (under
        // READ COMMITTED it re-reads a row updated meanwhile), so a run a concurrent retry
        // made `queued` is never deleted.
        let tx = client.transaction().await.map_err(|e| pg(what, e))?;
        let rows = tx
            .query(
                &format!(
                    "DELETE FROM reprise_runs
                      WHERE id IN (SELECT id FROM reprise_runs WHERE {clause}
                                   ORDER BY updated_at, pos LIMIT $1::bigint
                                   FOR UPDATE SKIP LOCKED)
                        AND status IN ({ended})
                     RETURNING id, workflow, status, updated_at",
                    ended = purge::ENDED_SQL
                ),
                &params,
            )
            .await
            .map_err(|e| pg(what, e))?;
        let mut runs = Vec::with_capacity(rows.len());
        for row in &rows {
            runs.push((row.int(3).unwrap_or(0), purge::purged_run(row)?));
        }
        // RETURNING keeps no order: oldest update first, as documented.
        runs.sort_by_key(|(at, _)| *at);
        let runs: Vec<PurgedRun> = runs.into_iter().map(|(_, run)| run).collect();
        delete_dependent_rows(&tx, &runs).await?;
        tx.commit().await.map_err(|e| pg(what, e))?;
        Ok(PurgeBatch {
            count: runs.len() as u64,
            runs,
        })
    }
}

/// A new run and its `run_created` event, encoded as the parameters of
/// [`CREATE_RUN_SQL`].
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
    kind: &'static str,
    correlation_id: Option<String>,
    event_attempt: i64,
    at: i64,
    payload: String,
    queue: Option<String>,
    queue_key: Option<String>,
    priority: i64,
}

impl EncodedCreate {
    fn new(record: RunRecord, created: &NewEvent) -> Result<Self, EngineError> {
        let (queue, queue_key, priority) = codec::encode_queue(record.queue.as_ref());
        Ok(Self {
            queue,
            queue_key,
            priority,
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
            kind: created.kind.as_str(),
            correlation_id: created.correlation_id.clone(),
            event_attempt: i64::from(created.attempt),
            at: micros(created.at),
            payload: serde_json::to_string(&created.payload)?,
        })
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 19] {
        [
            &self.id,
            &self.workflow,
            &self.status,
            &self.input,
            &self.output,
            &self.error,
            &self.attempt,
            &self.trigger,
            &self.created_at,
            &self.updated_at,
            &self.wake_at,
            &self.kind,
            &self.correlation_id,
            &self.event_attempt,
            &self.at,
            &self.payload,
            &self.queue,
            &self.queue_key,
            &self.priority,
        ]
    }
}

/// A lease from a row `id, fence, cancel_requested, pause_requested, created_at, pos`
/// returned by a claim, with its creation order `(created_at, pos)`.
fn claimed_lease(owner: &str, expires: i64, row: &Row) -> Result<((i64, i64), Lease), EngineError> {
    let id = column("<unreadable id>", "id", row.text(0))?;
    let run = id.as_str();
    let lease = codec::lease(run, owner, expires, row, 1)?;
    let created_at = column(run, "created_at", row.int(4))?;
    let pos = column(run, "pos", row.int(5))?;
    Ok(((created_at, pos), lease))
}

// ---------------------------------------------------------------------------------------
// Rows and errors

impl SqlRow for Row {
    type Error = tokio_postgres::Error;

    fn text(&self, index: usize) -> Result<String, tokio_postgres::Error> {
        self.try_get(index)
    }

    fn opt_text(&self, index: usize) -> Result<Option<String>, tokio_postgres::Error> {
        self.try_get(index)
    }

    fn int(&self, index: usize) -> Result<i64, tokio_postgres::Error> {
        self.try_get(index)
    }

    fn opt_int(&self, index: usize) -> Result<Option<i64>, tokio_postgres::Error> {
        self.try_get(index)
    }

    fn boolean(&self, index: usize) -> Result<bool, tokio_postgres::Error> {
        self.try_get(index)
    }
}

/// The [`StoreErrorKind`] of a Postgres error: from its SQLSTATE when the server sent
/// one, else from what the client ran into (tokio-postgres does not expose its error
/// kinds; a lost connection, an I/O error and a timeout are told apart from the rest by
/// `is_closed`, the source and the message).
fn pg_kind(e: &tokio_postgres::Error) -> StoreErrorKind {
    if let Some(state) = e.code() {
        return match state.code() {
            // serialization_failure, deadlock_detected, lock_not_available,
            // object_in_use, query_canceled (a statement or lock timeout).
            "40001" | "40P01" | "55P03" | "55006" | "57014" => StoreErrorKind::Busy,
            // invalid_catalog_name (no such database), invalid_schema_name,
            // insufficient_privilege.
            "3D000" | "3F000" | "42501" => StoreErrorKind::Config,
            // undefined_table, undefined_column, undefined_function.
            "42P01" | "42703" | "42883" => StoreErrorKind::Schema,
            // Integrity constraint violations.
            code if code.starts_with("23") => StoreErrorKind::Constraint,
            // Connection exceptions, insufficient resources (too many connections),
            // operator intervention (shutdown, cannot connect now).
            code if code.starts_with("08") || code.starts_with("53") || code.starts_with("57P") => {
                StoreErrorKind::Unavailable
            }
            // Invalid authorization specification (a refused login).
            code if code.starts_with("28") => StoreErrorKind::Config,
            // System errors (an I/O error of the server).
            code if code.starts_with("58") => StoreErrorKind::Io,
            _ => StoreErrorKind::Database,
        };
    }
    let io = std::error::Error::source(e).is_some_and(|source| source.is::<std::io::Error>());
    let text = e.to_string();
    if e.is_closed()
        || io
        || text.starts_with("timeout")
        || text.starts_with("error connecting")
        || text.starts_with("error communicating")
    {
        StoreErrorKind::Unavailable
    } else if text.starts_with("authentication")
        || text.starts_with("invalid connection string")
        || text.starts_with("invalid configuration")
    {
        StoreErrorKind::Config
    } else {
        StoreErrorKind::Database
    }
}

/// A Postgres error as a [`StoreError`]: `"<what>: <error>"` (the server's message when
/// there is one), its kind from [`pg_kind`], the error itself as the source.
fn pg_store_error(what: &str, e: tokio_postgres::Error) -> StoreError {
    let message = match e.as_db_error() {
        Some(db) => format!("{what}: {db}"),
        None => format!("{what}: {e}"),
    };
    StoreError::new(pg_kind(&e), message).with_source(e)
}

/// A Postgres error as [`EngineError::Storage`] (see [`pg_store_error`]).
pub(super) fn pg(what: &str, e: tokio_postgres::Error) -> EngineError {
    pg_store_error(what, e).into()
}

/// [`pg`] for an operation on run `run` (which `what` names).
pub(super) fn pg_run(what: &str, run: &str, e: tokio_postgres::Error) -> EngineError {
    pg_store_error(what, e).with_run(run).into()
}

/// No pooled connection: the pool timed out or was closed, or connecting failed.
pub(super) fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    StoreError::new(
        pool_kind(&e),
        format!("cannot get a Postgres connection: {e}"),
    )
    .with_source(e)
}

/// The [`StoreErrorKind`] of a failure to get a pooled connection.
fn pool_kind(e: &deadpool_postgres::PoolError) -> StoreErrorKind {
    use deadpool_postgres::PoolError as P;
    match e {
        P::Backend(e) => pg_kind(e),
        P::Timeout(_) | P::Closed => StoreErrorKind::Unavailable,
        P::NoRuntimeSpecified => StoreErrorKind::Config,
        _ => StoreErrorKind::Database,
    }
}

/// Deletes every row that belongs to the purged runs: THE place to extend when a table
/// gains rows that hang off a run (events, run keys, and later tables such as tags).
async fn delete_dependent_rows(
    tx: &deadpool_postgres::Transaction<'_>,
    purged: &[PurgedRun],
) -> Result<(), EngineError> {
    const DEPENDENTS: &[&str] = &[
        "DELETE FROM reprise_events WHERE run_id = ANY($1::text[])",
        "DELETE FROM reprise_run_keys WHERE run_id = ANY($1::text[])",
        "DELETE FROM reprise_run_tags WHERE run_id = ANY($1::text[])",
        "DELETE FROM reprise_messages WHERE run_id = ANY($1::text[])",
        "DELETE FROM reprise_event_waits WHERE run_id = ANY($1::text[])",
    ];
    if purged.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = purged.iter().map(|run| run.run_id.as_str()).collect();
    for sql in DEPENDENTS {
        tx.execute(*sql, &[&ids])
            .await
            .map_err(|e| pg("cannot purge the rows of purged runs", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_password("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_password("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_password("host=h user=u"), "host=h user=u");
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("plain"), "\"plain\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn lock_keys_differ_per_schema_and_are_stable() {
        assert_ne!(lock_key(""), lock_key("a"));
        assert_eq!(lock_key("a"), lock_key("a"));
    }
}
