//! Appends to the Postgres store, with group commit: appends from concurrent runs that
//! wait at the same moment are written by one statement, so they share one round trip,
//! one executor start and one commit (one WAL flush) instead of paying each.
//!
//! The scheme is leader/follower group commit, as in database write-ahead logs: an
//! append joins a queue; if fewer than [`MAX_WRITERS`] batches are being written, it
//! starts a writer task, which takes everything queued (up to [`MAX_BATCH`] appends,
//! at most one per run), writes it, answers each append, and goes on while the queue is
//! not empty. With one append at a time (one run) every batch has one append, written
//! by the same single statement as without batching; under load, batches grow by
//! themselves. The writer is a spawned task, so an append whose caller goes away (a
//! dropped execution) is still written and answered consistently.
//!
//! An append is acknowledged only after the statement that wrote it has committed. The
//! statement checks each append's `next_seq` and fence in its `UPDATE`'s `WHERE` clause
//! and inserts events only for the runs it updated, so one stale append fails alone;
//! the appends that were not applied are then diagnosed one by one
//! ([`EngineError::Conflict`], [`EngineError::LeaseLost`], [`EngineError::UnknownRun`]).
//! If the statement itself fails (a connection error, a payload the server rejects),
//! nothing of it was committed, and each append is retried alone, so a bad append never
//! fails its neighbours.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use deadpool_postgres::Pool;
use tokio::sync::oneshot;
use tokio_postgres::types::ToSql;

use super::codec::{append_refusal, append_target};
use super::postgres::{pg_run, pool_error};
use super::{StoreError, StoreErrorKind};
use crate::EngineError;

/// The most appends one statement writes.
pub(super) const MAX_BATCH: usize = 256;

/// The most batches written at once (each holds one pooled connection).
pub(super) const MAX_WRITERS: usize = 2;

/// One append, encoded for the statement (owned: it may be written by another task).
pub(super) struct EncodedAppend {
    pub(super) run: String,
    pub(super) first_seq: u64,
    pub(super) first: i64,
    pub(super) status: Option<&'static str>,
    pub(super) attempt: Option<i64>,
    pub(super) output: Option<String>,
    pub(super) error: Option<String>,
    pub(super) set_wake: bool,
    pub(super) wake: Option<i64>,
    pub(super) updated_at: i64,
    pub(super) fence: Option<i64>,
    /// Gives the lease of `fence` back in the same statement (`Append::release`).
    pub(super) release: bool,
    pub(super) kinds: Vec<&'static str>,
    pub(super) correlation_ids: Vec<Option<String>>,
    pub(super) attempts: Vec<i64>,
    pub(super) ats: Vec<i64>,
    pub(super) payloads: Vec<String>,
    /// For an append that suspends the run as `waiting`: the highest inbox seq its
    /// execution read (`RunUpdate::inbox_seen`). Such an append is written in a
    /// transaction of its own, not batched (see [`write_requeuing`]).
    pub(super) inbox_seen: Option<i64>,
}

/// One append: its run's row is updated only if `next_seq` (and the fence) match; its
/// events are inserted only for the row it updated.
const APPEND_SQL: &str = r#"
    WITH run AS (
        UPDATE reprise_runs SET
            status = COALESCE($3::text, status),
            attempt = COALESCE($4::bigint, attempt),
            output = COALESCE($5::text::json, output),
            error = COALESCE($6::text::json, error),
            wake_at = CASE WHEN $7::boolean THEN $8::bigint ELSE wake_at END,
            updated_at = $9::bigint,
            next_seq = $2::bigint + cardinality($10::text[]),
            lease_owner = CASE WHEN $16::boolean THEN NULL ELSE lease_owner END,
            lease_expires_at = CASE WHEN $16::boolean THEN NULL ELSE lease_expires_at END
        WHERE id = $1::text AND next_seq = $2::bigint
          AND ($11::bigint IS NULL OR (fence = $11::bigint AND lease_owner IS NOT NULL))
        RETURNING id
    ), inserted AS (
        INSERT INTO reprise_events (run_id, seq, kind, correlation_id, attempt, at, payload)
        SELECT run.id, $2::bigint + e.ord - 1, e.kind, e.correlation_id, e.attempt, e.at,
               e.payload::json
        FROM run,
             UNNEST($10::text[], $12::text[], $13::bigint[], $14::bigint[], $15::text[])
                 WITH ORDINALITY AS e (kind, correlation_id, attempt, at, payload, ord)
        RETURNING 1
    )
    SELECT count(*) FROM run"#;

/// Many appends to distinct runs: the same checks per run, in one statement; returns the
/// (1-based) positions of the appends it applied.
const BATCH_SQL: &str = r#"
    WITH a AS (
        SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::text[],
                             $6::text[], $7::boolean[], $8::bigint[], $9::bigint[],
                             $10::bigint[], $11::bigint[], $19::boolean[])
            WITH ORDINALITY AS a (run_id, first_seq, status, attempt, output, error,
                                  set_wake, wake, updated_at, n, fence, release, idx)
    ), run AS (
        UPDATE reprise_runs AS r SET
            status = COALESCE(a.status, r.status),
            attempt = COALESCE(a.attempt, r.attempt),
            output = COALESCE(a.output::json, r.output),
            error = COALESCE(a.error::json, r.error),
            wake_at = CASE WHEN a.set_wake THEN a.wake ELSE r.wake_at END,
            updated_at = a.updated_at,
            next_seq = a.first_seq + a.n,
            lease_owner = CASE WHEN a.release THEN NULL ELSE r.lease_owner END,
            lease_expires_at = CASE WHEN a.release THEN NULL ELSE r.lease_expires_at END
        FROM a
        WHERE r.id = a.run_id AND r.next_seq = a.first_seq
          AND (a.fence IS NULL OR (r.fence = a.fence AND r.lease_owner IS NOT NULL))
        RETURNING a.idx, a.run_id, a.first_seq
    ), inserted AS (
        INSERT INTO reprise_events (run_id, seq, kind, correlation_id, attempt, at, payload)
        SELECT run.run_id, run.first_seq + e.ord, e.kind, e.correlation_id, e.attempt,
               e.at, e.payload::json
        FROM run
        JOIN UNNEST($12::bigint[], $13::bigint[], $14::text[], $15::text[], $16::bigint[],
                    $17::bigint[], $18::text[])
             AS e (append_idx, ord, kind, correlation_id, attempt, at, payload)
          ON e.append_idx = run.idx
        RETURNING 1
    )
    SELECT idx FROM run"#;

struct Pending {
    append: EncodedAppend,
    reply: oneshot::Sender<Result<(), EngineError>>,
}

#[derive(Default)]
struct Queue {
    pending: Vec<Pending>,
    writers: usize,
}

/// The append queue of one store (see the module docs).
#[derive(Default)]
pub(super) struct GroupCommit {
    queue: Mutex<Queue>,
}

impl GroupCommit {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Pushes and takes only: a panic elsewhere cannot leave the queue half-updated.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends, durably: returns once the statement holding this append has committed.
    ///
    /// # Errors
    /// As [`super::Store::append`].
    pub(super) async fn append(
        self: &Arc<Self>,
        pool: &Pool,
        append: EncodedAppend,
    ) -> Result<(), EngineError> {
        if append.inbox_seen.is_some() {
            // Spawned, like a batch writer, so the append completes (or not) as a whole
            // even if the caller goes away.
            let pool = pool.clone();
            return tokio::spawn(async move { write_requeuing(&pool, &append).await })
                .await
                .map_err(|e| {
                    StoreError::new(
                        StoreErrorKind::Unavailable,
                        format!(
                            "the append's writer stopped before answering ({e}); whether it \
                             was recorded shows in the run's log"
                        ),
                    )
                })?;
        }
        let (reply, answer) = oneshot::channel();
        let batch = {
            let mut queue = self.lock();
            queue.pending.push(Pending { append, reply });
            if queue.writers < MAX_WRITERS {
                queue.writers += 1;
                Some(take_batch(&mut queue.pending))
            } else {
                None
            }
        };
        if let Some(batch) = batch {
            let writer = Writer {
                queue: self.clone(),
            };
            tokio::spawn(writer.run(pool.clone(), batch));
        }
        answer.await.map_err(|_| {
            StoreError::new(
                StoreErrorKind::Unavailable,
                "the append's writer stopped before answering (the runtime is shutting down); \
                 whether it was recorded shows in the run's log",
            )
        })?
    }
}

/// Takes up to [`MAX_BATCH`] queued appends, at most one per run (a run's later appends
/// wait, in order, for the next batch).
fn take_batch(pending: &mut Vec<Pending>) -> Vec<Pending> {
    let mut runs = HashSet::new();
    let mut batch = Vec::new();
    let mut rest = Vec::new();
    for p in pending.drain(..) {
        if batch.len() < MAX_BATCH && runs.insert(p.append.run.clone()) {
            batch.push(p);
        } else {
            rest.push(p);
        }
    }
    *pending = rest;
    batch
}

/// A writer task: writes batches while appends are queued. Counted in `Queue::writers`
/// until it drops, however it ends.
struct Writer {
    queue: Arc<GroupCommit>,
}

impl Writer {
    async fn run(self, pool: Pool, mut batch: Vec<Pending>) {
        loop {
            write(&pool, batch).await;
            let mut queue = self.queue.lock();
            if queue.pending.is_empty() {
                return;
            }
            batch = take_batch(&mut queue.pending);
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let mut queue = self.queue.lock();
        queue.writers = queue.writers.saturating_sub(1);
    }
}

/// Writes a batch and answers each append.
async fn write(pool: &Pool, batch: Vec<Pending>) {
    let client = match pool.get().await {
        Ok(client) => client,
        Err(e) => {
            // One failure answers every append of the batch: each gets its own error, the
            // pool's shared as their source.
            let error = pool_error(e);
            let (kind, message) = (error.kind(), error.message().to_owned());
            let source = Arc::new(error);
            for p in batch {
                let error = StoreError::new(kind, message.clone())
                    .with_run(p.append.run.as_str())
                    .with_source(Arc::clone(&source));
                let _ = p.reply.send(Err(error.into()));
            }
            return;
        }
    };
    // If the statement fails, nothing of it was committed: each append is then written
    // alone, so that one the server rejects fails by itself.
    if batch.len() > 1
        && let Ok(applied) = write_many(&client, &batch).await
    {
        for (i, p) in batch.into_iter().enumerate() {
            let result = if applied.contains(&(i as i64 + 1)) {
                Ok(())
            } else {
                diagnose(&client, &p.append).await
            };
            let _ = p.reply.send(result);
        }
        return;
    }
    for p in batch {
        let result = write_one(&client, &p.append).await;
        let _ = p.reply.send(result);
    }
}

async fn write_one(
    client: &deadpool_postgres::Client,
    a: &EncodedAppend,
) -> Result<(), EngineError> {
    let what = &format!("cannot append to run `{}`", a.run);
    let pg = |what: &str, e| pg_run(what, &a.run, e);
    let stmt = client
        .prepare_cached(APPEND_SQL)
        .await
        .map_err(|e| pg(what, e))?;
    let params = append_params(a);
    let row = client
        .query_one(&stmt, &params)
        .await
        .map_err(|e| pg(what, e))?;
    let updated: i64 = row.try_get(0).map_err(|e| pg(what, e))?;
    if updated == 1 {
        return Ok(());
    }
    diagnose(client, a).await
}

/// The parameters of [`APPEND_SQL`] for append `a`, in order.
fn append_params(a: &EncodedAppend) -> [&(dyn ToSql + Sync); 16] {
    [
        &a.run,
        &a.first,
        &a.status,
        &a.attempt,
        &a.output,
        &a.error,
        &a.set_wake,
        &a.wake,
        &a.updated_at,
        &a.kinds,
        &a.fence,
        &a.correlation_ids,
        &a.attempts,
        &a.ats,
        &a.payloads,
        &a.release,
    ]
}

/// Re-queues run `$1` if it is `waiting` while its inbox holds a message past `$2`.
const REQUEUE_SQL: &str = "
    UPDATE reprise_runs SET status = 'queued', wake_at = NULL
     WHERE id = $1::text AND status = 'waiting'
       AND EXISTS (SELECT 1 FROM reprise_messages WHERE run_id = $1::text AND seq > $2::bigint)";

/// An append that suspends its run as `waiting` after reading the inbox up to
/// `inbox_seen`: the append, then (a second statement, so it reads the messages committed
/// up to then, while this transaction holds the run row's lock, which a post takes first)
/// the run goes back to `queued` if a newer message is there. So a message posted while
/// the run executed is never left unread by a waiting run.
async fn write_requeuing(pool: &Pool, a: &EncodedAppend) -> Result<(), EngineError> {
    let what = &format!("cannot append to run `{}`", a.run);
    let pg = |what: &str, e| pg_run(what, &a.run, e);
    let mut client = pool
        .get()
        .await
        .map_err(|e| EngineError::from(pool_error(e).with_run(a.run.as_str())))?;
    let tx = client.transaction().await.map_err(|e| pg(what, e))?;
    let stmt = tx
        .prepare_cached(APPEND_SQL)
        .await
        .map_err(|e| pg(what, e))?;
    let params = append_params(a);
    let row = tx
        .query_one(&stmt, &params)
        .await
        .map_err(|e| pg(what, e))?;
    let updated: i64 = row.try_get(0).map_err(|e| pg(what, e))?;
    if updated != 1 {
        tx.rollback().await.map_err(|e| pg(what, e))?;
        return diagnose(&client, a).await;
    }
    let requeue = tx
        .prepare_cached(REQUEUE_SQL)
        .await
        .map_err(|e| pg(what, e))?;
    tx.execute(&requeue, &[&a.run, &a.inbox_seen])
        .await
        .map_err(|e| pg(what, e))?;
    tx.commit().await.map_err(|e| pg(what, e))
}

async fn write_many(
    client: &deadpool_postgres::Client,
    batch: &[Pending],
) -> Result<HashSet<i64>, EngineError> {
    let what = "cannot append";
    let pg = super::postgres::pg;
    let stmt = client
        .prepare_cached(BATCH_SQL)
        .await
        .map_err(|e| pg(what, e))?;
    let n = batch.len();
    let mut runs = Vec::with_capacity(n);
    let mut firsts = Vec::with_capacity(n);
    let mut statuses = Vec::with_capacity(n);
    let mut attempts = Vec::with_capacity(n);
    let mut outputs = Vec::with_capacity(n);
    let mut errors = Vec::with_capacity(n);
    let mut set_wakes = Vec::with_capacity(n);
    let mut wakes = Vec::with_capacity(n);
    let mut updated_ats = Vec::with_capacity(n);
    let mut counts = Vec::with_capacity(n);
    let mut fences = Vec::with_capacity(n);
    let mut releases = Vec::with_capacity(n);
    let mut e_append = Vec::new();
    let mut e_ord = Vec::new();
    let mut e_kind = Vec::new();
    let mut e_correlation = Vec::new();
    let mut e_attempt = Vec::new();
    let mut e_at = Vec::new();
    let mut e_payload = Vec::new();
    for (i, p) in batch.iter().enumerate() {
        let a = &p.append;
        runs.push(a.run.as_str());
        firsts.push(a.first);
        statuses.push(a.status);
        attempts.push(a.attempt);
        outputs.push(a.output.as_deref());
        errors.push(a.error.as_deref());
        set_wakes.push(a.set_wake);
        wakes.push(a.wake);
        updated_ats.push(a.updated_at);
        counts.push(a.kinds.len() as i64);
        fences.push(a.fence);
        releases.push(a.release);
        for (ord, kind) in a.kinds.iter().enumerate() {
            e_append.push(i as i64 + 1);
            e_ord.push(ord as i64);
            e_kind.push(*kind);
            e_correlation.push(a.correlation_ids[ord].as_deref());
            e_attempt.push(a.attempts[ord]);
            e_at.push(a.ats[ord]);
            e_payload.push(a.payloads[ord].as_str());
        }
    }
    let params: [&(dyn ToSql + Sync); 19] = [
        &runs,
        &firsts,
        &statuses,
        &attempts,
        &outputs,
        &errors,
        &set_wakes,
        &wakes,
        &updated_ats,
        &counts,
        &fences,
        &e_append,
        &e_ord,
        &e_kind,
        &e_correlation,
        &e_attempt,
        &e_at,
        &e_payload,
        &releases,
    ];
    let rows = client
        .query(&stmt, &params)
        .await
        .map_err(|e| pg(what, e))?;
    rows.iter()
        .map(|row| row.try_get::<_, i64>(0).map_err(|e| pg(what, e)))
        .collect()
}

/// Why an append changed nothing (see [`append_refusal`]).
async fn diagnose(
    client: &deadpool_postgres::Client,
    a: &EncodedAppend,
) -> Result<(), EngineError> {
    let run = a.run.as_str();
    let row = client
        .query_opt(
            "SELECT next_seq, fence, lease_owner IS NOT NULL FROM reprise_runs
              WHERE id = $1::text",
            &[&run],
        )
        .await
        .map_err(|e| pg_run(&format!("cannot append to run `{run}`"), run, e))?;
    let row = row.map(|row| append_target(run, &row)).transpose()?;
    Err(append_refusal(run, a.first_seq, a.fence, row))
}
