//! Flow control in the Postgres store (schema version 8): admission of queue runs at
//! claim time, de-duplication and debouncing at start, the counts admission starts
//! from, and the registry of live workers. See [`crate::queue`].
//!
//! # Admission across processes
//!
//! [`PostgresStore::claim_admitted`] admits runs of one queue at a time, each in a
//! transaction that first takes a transaction-scoped advisory lock on the queue
//! (`pg_advisory_xact_lock` of a stable hash of the store's schema and the queue's name).
//! Every statement after the lock sees what the previous holder committed (it committed
//! before releasing the lock), so claimers in any number of processes count and admit in
//! turn: the queue's concurrency, its per-key concurrency and its rate limits hold across
//! all of them together. Claimers of other queues, and the plain claim of runs in no
//! queue or admitted already, never wait for the lock.
//!
//! Candidates are read in admission order (priority, due time, creation) from the
//! index of waiting runs, a page at a time; the admitted ones are leased by one
//! `UPDATE` that checks again that each is still waiting, due and unleased (a debounced
//! start may have canceled it meanwhile), so a run is admitted at most once and never
//! against the counts.
//!
//! Before taking any lock, one statement finds the queues that have waiting due runs
//! and reads their counts without the lock: a queue that is full even by those counts
//! (which can only over-count: admissions happen under the lock, and runs ending
//! meanwhile only free room) is skipped, so a saturated queue costs a claim one
//! statement.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use super::{EncodedCreate, PostgresStore, claimed_lease, pg, pg_run};
use crate::EngineError;
use crate::event::{NewEvent, RunId, RunRecord, RunStatus};
use crate::queue::{
    Admitter, ClaimRequest, DebouncePolicy, Gated, KeyTotals, Queue, QueueTotals, StartGate,
    StepWindow, WorkerInfo,
};
use crate::store::codec::{self, SqlRow, column, micros};
use crate::store::{Lease, StoreError, StoreErrorKind};

/// The permits of `window`'s queue and scope taken after its start, and the oldest.
async fn step_permits_in(
    what: &str,
    client: &impl deadpool_postgres::GenericClient,
    window: &StepWindow,
) -> Result<(u64, Option<DateTime<Utc>>), EngineError> {
    let stmt = client
        .prepare_cached(
            "SELECT count(*), min(at) FROM reprise_step_permits
              WHERE queue = $1::text AND scope = $2::text AND at > $3::bigint",
        )
        .await
        .map_err(|e| pg(what, e))?;
    let row = client
        .query_one(
            &stmt,
            &[&window.queue, &window.scope, &micros(window.start)],
        )
        .await
        .map_err(|e| pg(what, e))?;
    let taken = count(what, &row, 0)?;
    let oldest = column(what, "at", row.opt_int(1))?
        .map(|t| codec::timestamp(what, "at", t))
        .transpose()?;
    Ok((taken, oldest))
}

/// The statuses of a run that has not ended: an admitted run in one of them holds its
/// place in its queue. Kept identical to the predicate of the index
/// `reprise_runs_queue_active`, so the planner sees the index applies.
macro_rules! active {
    () => {
        "admitted_at IS NOT NULL \
         AND status IN ('queued', 'running', 'sleeping', 'waiting', 'paused')"
    };
}

/// For each queue of `$1` (with `$2` the start of its rate window, NULL without a
/// queue-wide rate limit, and `$3` whether its active runs are counted) that has a
/// waiting run due at `$4` of a workflow in `$5` (NULL: any): its name, active runs,
/// admissions in the window and the oldest of them. Read without the queue's lock.
const WAITING_QUEUES_SQL: &str = concat!(
    "SELECT q.name,
            (SELECT count(*) FROM reprise_runs r
              WHERE r.queue = q.name AND q.counted AND r.",
    active!(),
    "),
            (SELECT count(*) FROM reprise_runs r
              WHERE r.queue = q.name AND r.admitted_at > q.since),
            (SELECT min(r.admitted_at) FROM reprise_runs r
              WHERE r.queue = q.name AND r.admitted_at > q.since)
       FROM unnest($1::text[], $2::bigint[], $3::boolean[]) AS q (name, since, counted)
      WHERE EXISTS (SELECT 1 FROM reprise_runs r
                     WHERE r.queue = q.name AND r.admitted_at IS NULL
                       AND r.due_at <= $4::bigint
                       AND ($5::text[] IS NULL OR r.workflow = ANY($5::text[])))"
);

/// The totals of queue `$1`: active runs (when `$2`), admissions after `$3` (NULL: none
/// counted) and the oldest of them; for key `$4` (NULL: none) its active runs (when
/// `$5`), admissions after `$6` and the oldest of them.
const TOTALS_SQL: &str = concat!(
    "SELECT (SELECT count(*) FROM reprise_runs
              WHERE queue = $1::text AND $2::boolean AND ",
    active!(),
    "),
            (SELECT count(*) FROM reprise_runs
              WHERE queue = $1::text AND admitted_at > $3::bigint),
            (SELECT min(admitted_at) FROM reprise_runs
              WHERE queue = $1::text AND admitted_at > $3::bigint),
            (SELECT count(*) FROM reprise_runs
              WHERE queue = $1::text AND queue_key = $4::text AND $5::boolean AND ",
    active!(),
    "),
            (SELECT count(*) FROM reprise_runs
              WHERE queue = $1::text AND queue_key = $4::text AND admitted_at > $6::bigint),
            (SELECT min(admitted_at) FROM reprise_runs
              WHERE queue = $1::text AND queue_key = $4::text AND admitted_at > $6::bigint)"
);

/// The totals of the keys `$4` of queue `$1`: per key, its active runs (when `$2`),
/// admissions after `$3` (NULL: none counted) and the oldest of them.
const KEY_TOTALS_SQL: &str = concat!(
    "SELECT k.key,
            (SELECT count(*) FROM reprise_runs r
              WHERE r.queue = $1::text AND r.queue_key = k.key AND $2::boolean AND r.",
    active!(),
    "),
            (SELECT count(*) FROM reprise_runs r
              WHERE r.queue = $1::text AND r.queue_key = k.key AND r.admitted_at > $3::bigint),
            (SELECT min(r.admitted_at) FROM reprise_runs r
              WHERE r.queue = $1::text AND r.queue_key = k.key AND r.admitted_at > $3::bigint)
       FROM unnest($4::text[]) AS k (key)"
);

/// A page of candidates of queue `$1` due at `$2`, of workflows in `$3` (NULL: any),
/// unleased, their workflow not paused, in admission order after the candidate
/// `($4 priority, $5 due_at, $6 pos)` (NULL `$4`: from the first), at most `$7`.
const CANDIDATES_SQL: &str = "
    SELECT id, queue_key, priority, due_at, pos FROM reprise_runs r
     WHERE queue = $1::text AND admitted_at IS NULL AND due_at <= $2::bigint
       AND (lease_owner IS NULL OR lease_expires_at <= $2::bigint)
       AND ($3::text[] IS NULL OR workflow = ANY($3::text[]))
       AND NOT EXISTS (SELECT 1 FROM reprise_paused_workflows p WHERE p.workflow = r.workflow)
       AND ($4::bigint IS NULL OR priority < $4::bigint
            OR (priority = $4::bigint
                AND (due_at > $5::bigint OR (due_at = $5::bigint AND pos > $6::bigint))))
     ORDER BY priority DESC, due_at, pos
     LIMIT $7::bigint";

/// Admits and leases the runs `$1` of queue `$5` at `$2` for owner `$3` until `$4`, each
/// only if it is still waiting, due and unleased. `admitted_at` is `$2` or the queue's
/// latest admission if that is later: `$2` was read before the queue's lock was taken, so
/// a claimer that waited for the lock may hold an earlier time than an admission it has
/// counted; stamping that earlier time would let the rate window forget this admission
/// too soon (and admit one too many). Read under the lock, the latest admission is final.
const ADMIT_SQL: &str = "
    UPDATE reprise_runs
       SET admitted_at = GREATEST($2::bigint,
                                  (SELECT max(p.admitted_at) FROM reprise_runs p
                                    WHERE p.queue = $5::text AND p.admitted_at IS NOT NULL)),
           lease_owner = $3::text, lease_expires_at = $4::bigint,
           fence = fence + 1
     WHERE id = ANY($1::text[]) AND admitted_at IS NULL AND due_at <= $2::bigint
       AND (lease_owner IS NULL OR lease_expires_at <= $2::bigint)
    RETURNING id, fence, cancel_requested, pause_requested, created_at, pos";

/// The fewest candidates read per page.
const MIN_PAGE: usize = 64;

/// The advisory lock key of admission into `queue` of the store in `schema`: a stable
/// 64-bit FNV-1a hash, distinct from the migrations' keys by its prefix.
fn queue_lock_key(schema: &str, queue: &str) -> i64 {
    lock_key("reprise_queue:", &[schema, queue])
}

/// The advisory lock key of the step permits of `scope` in `queue` of the store in
/// `schema` (see [`crate::queue::StepWindow`]): as [`queue_lock_key`], with its own prefix,
/// so taking step permits never waits for a claim's admission.
fn step_permit_lock_key(schema: &str, queue: &str, scope: &str) -> i64 {
    lock_key("reprise_step_permits:", &[schema, queue, scope])
}

/// A stable 64-bit FNV-1a hash of `prefix` followed by `parts`, NUL-separated.
fn lock_key(prefix: &str, parts: &[&str]) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    feed(prefix.as_bytes());
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            feed(&[0]);
        }
        feed(part.as_bytes());
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// The start of `queue`'s rate window at `now` (µs) when its limit is per key (`per_key`)
/// or queue-wide (`!per_key`); `None` otherwise.
fn window_since(queue: &Queue, now: DateTime<Utc>, per_key: bool) -> Option<i64> {
    queue
        .rate_limit
        .filter(|r| r.per_key == per_key)
        .and(Admitter::window_start(queue, now))
        .map(micros)
}

/// Whether admission into `queue` counts active runs per key.
fn counts_key_active(queue: &Queue) -> bool {
    queue.key_concurrency.is_some()
}

fn count(what: &str, row: &Row, index: usize) -> Result<u64, EngineError> {
    let n = column(what, "count", row.int(index))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

fn oldest(what: &str, row: &Row, index: usize) -> Result<Option<DateTime<Utc>>, EngineError> {
    column(what, "admitted_at", row.opt_int(index))?
        .map(|t| codec::timestamp(what, "admitted_at", t))
        .transpose()
}

fn queue_totals_at(what: &str, row: &Row, first: usize) -> Result<QueueTotals, EngineError> {
    Ok(QueueTotals {
        active: count(what, row, first)?,
        admitted_in_window: count(what, row, first + 1)?,
        oldest_in_window: oldest(what, row, first + 2)?,
    })
}

fn key_totals_at(what: &str, row: &Row, first: usize) -> Result<KeyTotals, EngineError> {
    Ok(KeyTotals {
        active: count(what, row, first)?,
        admitted_in_window: count(what, row, first + 1)?,
        oldest_in_window: oldest(what, row, first + 2)?,
    })
}

/// A waiting run read as a candidate for admission.
struct Candidate {
    id: String,
    key: Option<String>,
    priority: i64,
    due_at: i64,
    pos: i64,
}

impl PostgresStore {
    /// The admission part of [`crate::store::Store::claim`]: up to `room` runs of the
    /// queues in `request.queues` (those its routing serves), admitted and leased.
    /// Returns each lease with its creation order `(created_at, pos)`.
    pub(super) async fn claim_admitted(
        &self,
        request: &ClaimRequest<'_>,
        room: usize,
    ) -> Result<Vec<((i64, i64), Lease)>, EngineError> {
        let what = "cannot claim runs of queues";
        let now = request.now;
        let served: Vec<&Queue> = request
            .queues
            .iter()
            .filter(|q| {
                request
                    .routing
                    .queues
                    .as_ref()
                    .is_none_or(|names| names.contains(&q.name))
            })
            .collect();
        if served.is_empty() || room == 0 {
            return Ok(Vec::new());
        }
        let names: Vec<&str> = served.iter().map(|q| q.name.as_str()).collect();
        let since: Vec<Option<i64>> = served.iter().map(|q| window_since(q, now, false)).collect();
        let counted: Vec<bool> = served.iter().map(|q| q.concurrency.is_some()).collect();
        let mut client = self.client().await?;
        let stmt = client
            .prepare_cached(WAITING_QUEUES_SQL)
            .await
            .map_err(|e| pg(what, e))?;
        let rows = client
            .query(
                &stmt,
                &[
                    &names,
                    &since,
                    &counted,
                    &micros(now),
                    &request.routing.workflows,
                ],
            )
            .await
            .map_err(|e| pg(what, e))?;
        let mut claimed = Vec::new();
        for queue in served {
            let Some(row) = rows
                .iter()
                .find(|row| row.try_get::<_, &str>(0).is_ok_and(|n| n == queue.name))
            else {
                continue;
            };
            // Counted without the lock: never under the truth, so "full" is final here.
            if Admitter::new(queue, now, queue_totals_at(what, row, 1)?).is_full() {
                continue;
            }
            let room = room - claimed.len();
            if room == 0 {
                break;
            }
            let admitted = self.admit(&mut client, request, queue, room).await?;
            claimed.extend(admitted);
        }
        Ok(claimed)
    }

    /// Admits up to `room` runs of `queue` in one transaction under the queue's lock.
    async fn admit(
        &self,
        client: &mut deadpool_postgres::Client,
        request: &ClaimRequest<'_>,
        queue: &Queue,
        room: usize,
    ) -> Result<Vec<((i64, i64), Lease)>, EngineError> {
        let name = queue.name.as_str();
        let what = &format!("cannot admit runs of queue `{name}`");
        let pg = |e| pg(what, e);
        let now = request.now;
        let now_us = micros(now);
        let tx = client.transaction().await.map_err(pg)?;
        let lock = queue_lock_key(self.schema.as_deref().unwrap_or(""), name);
        tx.execute("SELECT pg_advisory_xact_lock($1::bigint)", &[&lock])
            .await
            .map_err(pg)?;
        // Statements from here on see every admission committed before the lock.
        let totals_stmt = tx.prepare_cached(TOTALS_SQL).await.map_err(pg)?;
        let no_key: Option<&str> = None;
        let none: Option<i64> = None;
        let row = tx
            .query_one(
                &totals_stmt,
                &[
                    &name,
                    &queue.concurrency.is_some(),
                    &window_since(queue, now, false),
                    &no_key,
                    &false,
                    &none,
                ],
            )
            .await
            .map_err(pg)?;
        let mut admitter = Admitter::new(queue, now, queue_totals_at(what, &row, 0)?);
        let candidates_stmt = tx.prepare_cached(CANDIDATES_SQL).await.map_err(pg)?;
        let keys_stmt = tx.prepare_cached(KEY_TOTALS_SQL).await.map_err(pg)?;
        let key_since = window_since(queue, now, true);
        // A claim of one run walks up to it, however long the queue: bounded pages.
        let page = match request.run {
            Some(_) => MIN_PAGE * 16,
            None => room.saturating_mul(4).max(MIN_PAGE),
        };
        let page = i64::try_from(page).unwrap_or(i64::MAX);
        let mut chosen: Vec<String> = Vec::new();
        let mut after: Option<(i64, i64, i64)> = None;
        let mut reached = false;
        while !reached && chosen.len() < room && !admitter.is_full() {
            let rows = tx
                .query(
                    &candidates_stmt,
                    &[
                        &name,
                        &now_us,
                        &request.routing.workflows,
                        &after.map(|a| a.0),
                        &after.map(|a| a.1),
                        &after.map(|a| a.2),
                        &page,
                    ],
                )
                .await
                .map_err(pg)?;
            let mut candidates = Vec::with_capacity(rows.len());
            for row in &rows {
                let id = column(name, "id", row.text(0))?;
                let run = id.as_str();
                candidates.push(Candidate {
                    key: column(run, "queue_key", row.opt_text(1))?,
                    priority: column(run, "priority", row.int(2))?,
                    due_at: column(run, "due_at", row.int(3))?,
                    pos: column(run, "pos", row.int(4))?,
                    id,
                });
            }
            let Some(last) = candidates.last() else { break };
            after = Some((last.priority, last.due_at, last.pos));
            // The totals of the page's keys the admitter has not seen, in one statement.
            let mut wanted: Vec<&str> = Vec::new();
            let mut seen = HashSet::new();
            for key in candidates.iter().filter_map(|c| c.key.as_deref()) {
                if admitter.needs_key_totals(key) && seen.insert(key) {
                    wanted.push(key);
                }
            }
            if !wanted.is_empty() {
                let rows = tx
                    .query(
                        &keys_stmt,
                        &[&name, &counts_key_active(queue), &key_since, &wanted],
                    )
                    .await
                    .map_err(pg)?;
                for row in &rows {
                    let key = column(name, "queue_key", row.text(0))?;
                    admitter.add_key_totals(&key, key_totals_at(what, row, 1)?);
                }
            }
            for candidate in &candidates {
                if chosen.len() >= room || admitter.is_full() {
                    break;
                }
                if admitter.admit(candidate.key.as_deref()).is_ok() {
                    chosen.push(candidate.id.clone());
                }
                if request.run.is_some_and(|id| id.0 == candidate.id) {
                    reached = true;
                    break;
                }
            }
            if i64::try_from(rows.len()).unwrap_or(i64::MAX) < page {
                break;
            }
        }
        if let Some(id) = request.run {
            // The runs ahead were only counted.
            chosen.retain(|c| *c == id.0);
        }
        if chosen.is_empty() {
            tx.rollback().await.map_err(pg)?;
            return Ok(Vec::new());
        }
        let expires = micros(request.expires_at);
        let admit_stmt = tx.prepare_cached(ADMIT_SQL).await.map_err(pg)?;
        let rows = tx
            .query(
                &admit_stmt,
                &[&chosen, &now_us, &request.owner, &expires, &name],
            )
            .await
            .map_err(pg)?;
        let mut leases = Vec::with_capacity(rows.len());
        for row in &rows {
            leases.push(claimed_lease(request.owner, expires, row)?);
        }
        tx.commit().await.map_err(pg)?;
        Ok(leases)
    }

    /// [`crate::store::Store::queue_totals`].
    pub(super) async fn totals_of(
        &self,
        queue: &Queue,
        key: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(QueueTotals, Option<KeyTotals>), EngineError> {
        let name = queue.name.as_str();
        let what = &format!("cannot count the runs of queue `{name}`");
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(TOTALS_SQL)
            .await
            .map_err(|e| pg(what, e))?;
        let row = client
            .query_one(
                &stmt,
                &[
                    &name,
                    &true,
                    &window_since(queue, now, false),
                    &key,
                    &true,
                    &window_since(queue, now, true),
                ],
            )
            .await
            .map_err(|e| pg(what, e))?;
        let totals = queue_totals_at(what, &row, 0)?;
        let key_totals = key.map(|_| key_totals_at(what, &row, 3)).transpose()?;
        Ok((totals, key_totals))
    }

    /// [`crate::store::Store::create_run_gated`]: in one transaction, the gate's key row
    /// is taken (inserted, or locked with `FOR UPDATE` when it exists, so concurrent
    /// starts with one key run one after the other), the holder's row is locked and
    /// judged, a pending holder is canceled (`Replace`), and the new run is created and
    /// takes the key.
    pub(super) async fn gated_create(
        &self,
        record: RunRecord,
        created: NewEvent,
        gate: &StartGate,
    ) -> Result<Gated, EngineError> {
        let create = EncodedCreate::new(record, &created)?;
        let run = create.id.as_str();
        let what = &format!("cannot create run `{run}`");
        let pg = |e| pg_run(what, run, e);
        let key = match gate {
            StartGate::Dedup { key } | StartGate::Debounce { key, .. } => key.as_str(),
        };
        let mut client = self.client().await?;
        // A key row deleted between the insert that lost and the lock (its run was
        // purged) is taken on the next round.
        for _ in 0..3 {
            let tx = client.transaction().await.map_err(pg)?;
            let won = tx
                .execute(
                    "INSERT INTO reprise_run_keys (key, run_id) VALUES ($1::text, $2::text)
                     ON CONFLICT (key) DO NOTHING",
                    &[&key, &create.id],
                )
                .await
                .map_err(pg)?;
            let mut outcome = Gated::Created;
            if won == 0 {
                let Some(holder) = tx
                    .query_opt(
                        "SELECT run_id FROM reprise_run_keys WHERE key = $1::text FOR UPDATE",
                        &[&key],
                    )
                    .await
                    .map_err(pg)?
                else {
                    tx.rollback().await.map_err(pg)?;
                    continue;
                };
                let held: String = holder.try_get(0).map_err(pg)?;
                let holding = tx
                    .query_opt(
                        "SELECT status, queue, admitted_at, next_seq FROM reprise_runs
                          WHERE id = $1::text FOR UPDATE",
                        &[&held],
                    )
                    .await
                    .map_err(pg)?;
                if let Some(holding) = holding {
                    let status_text = column(&held, "status", holding.text(0))?;
                    let status = status_text.parse::<RunStatus>().map_err(|_| {
                        codec::corrupt(&held, format!("unknown status `{status_text}`"))
                    })?;
                    let pending = status == RunStatus::Queued
                        && column(&held, "queue", holding.opt_text(1))?.is_some()
                        && column(&held, "admitted_at", holding.opt_int(2))?.is_none();
                    match gate {
                        StartGate::Dedup { .. } if !status.is_terminal() => {
                            tx.rollback().await.map_err(pg)?;
                            return Ok(Gated::Existing(RunId(held)));
                        }
                        StartGate::Debounce {
                            policy,
                            canceled,
                            error,
                            ..
                        } if pending => match policy {
                            DebouncePolicy::Drop => {
                                tx.rollback().await.map_err(pg)?;
                                return Ok(Gated::Existing(RunId(held)));
                            }
                            DebouncePolicy::Replace => {
                                let next_seq = column(&held, "next_seq", holding.int(3))?;
                                cancel_pending(&tx, &held, next_seq, canceled, error).await?;
                                outcome = Gated::Replaced(RunId(held.clone()));
                            }
                        },
                        _ => {}
                    }
                }
                tx.execute(
                    "UPDATE reprise_run_keys SET run_id = $2::text WHERE key = $1::text",
                    &[&key, &create.id],
                )
                .await
                .map_err(pg)?;
            }
            let stmt = tx.prepare_cached(super::CREATE_RUN_SQL).await.map_err(pg)?;
            let inserted = tx.execute(&stmt, &create.params()).await.map_err(pg)?;
            if inserted == 0 {
                tx.rollback().await.map_err(pg)?;
                return Err(codec::run_exists(run));
            }
            tx.commit().await.map_err(pg)?;
            return Ok(outcome);
        }
        Err(StoreError::new(
            StoreErrorKind::Busy,
            format!(
                "{what}: the start gate `{key}` was taken and released concurrently three \
                 times; try again"
            ),
        )
        .with_run(run)
        .into())
    }

    /// [`crate::store::Store::take_step_permit`] for a queue with a step rate limit: in
    /// one transaction holding the advisory lock of the window's queue and scope, prunes
    /// the scope's stale permits, counts those in the window, and records one if
    /// [`StepWindow::decide`] grants it. Every taker in every process counts in turn.
    pub(super) async fn step_permit_take(
        &self,
        window: &StepWindow,
        clock: &dyn crate::Clock,
    ) -> Result<Result<(), DateTime<Utc>>, EngineError> {
        let what = &format!("cannot take a step permit of queue `{}`", window.queue);
        let pg = |e| pg(what, e);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let lock = step_permit_lock_key(
            self.schema.as_deref().unwrap_or(""),
            &window.queue,
            &window.scope,
        );
        tx.execute("SELECT pg_advisory_xact_lock($1::bigint)", &[&lock])
            .await
            .map_err(pg)?;
        // Statements from here on see every permit committed before the lock; the window
        // is timed now, after them.
        let window = &window.at(clock.now());
        let stale = micros(window.stale);
        let prune = tx
            .prepare_cached(
                "DELETE FROM reprise_step_permits
                  WHERE queue = $1::text AND scope = $2::text AND at <= $3::bigint",
            )
            .await
            .map_err(pg)?;
        tx.execute(&prune, &[&window.queue, &window.scope, &stale])
            .await
            .map_err(pg)?;
        let (taken, oldest) = step_permits_in(what, &tx, window).await?;
        let decision = window.decide(taken, oldest);
        if decision.is_ok() {
            let insert = tx
                .prepare_cached(
                    "INSERT INTO reprise_step_permits (queue, scope, at)
                     VALUES ($1::text, $2::text, $3::bigint)",
                )
                .await
                .map_err(pg)?;
            tx.execute(
                &insert,
                &[&window.queue, &window.scope, &micros(window.now)],
            )
            .await
            .map_err(pg)?;
        }
        tx.commit().await.map_err(pg)?;
        Ok(decision)
    }

    /// [`crate::store::Store::step_permits`] for a queue with a step rate limit.
    pub(super) async fn step_permit_count(
        &self,
        window: &StepWindow,
    ) -> Result<(u64, Option<DateTime<Utc>>), EngineError> {
        let what = &format!("cannot count the step permits of queue `{}`", window.queue);
        let client = self.client().await?;
        step_permits_in(what, &client, window).await
    }

    /// [`crate::store::Store::worker_heartbeat`]: upserts the worker's row, and drops the
    /// rows of workers that expired a day or more before this one's expiry.
    pub(super) async fn worker_put(&self, worker: &WorkerInfo) -> Result<(), EngineError> {
        let what = &format!("cannot register worker `{}`", worker.id);
        let info = serde_json::to_string(worker)?;
        let expires = micros(worker.expires_at);
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "WITH gone AS (
                     DELETE FROM reprise_workers
                      WHERE id <> $1::text AND expires_at < $3::bigint - 86400000000
                 )
                 INSERT INTO reprise_workers (id, info, expires_at)
                 VALUES ($1::text, $2::text::json, $3::bigint)
                 ON CONFLICT (id) DO UPDATE
                    SET info = EXCLUDED.info, expires_at = EXCLUDED.expires_at",
            )
            .await
            .map_err(|e| pg(what, e))?;
        client
            .execute(&stmt, &[&worker.id, &info, &expires])
            .await
            .map_err(|e| pg(what, e))?;
        Ok(())
    }

    /// [`crate::store::Store::worker_stopped`].
    pub(super) async fn worker_delete(&self, id: &str) -> Result<(), EngineError> {
        let what = &format!("cannot unregister worker `{id}`");
        let client = self.client().await?;
        client
            .execute("DELETE FROM reprise_workers WHERE id = $1::text", &[&id])
            .await
            .map_err(|e| pg(what, e))?;
        Ok(())
    }

    /// [`crate::store::Store::live_workers`]: by id.
    pub(super) async fn workers_live(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<WorkerInfo>, EngineError> {
        let what = "cannot read the live workers";
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT id, info::text FROM reprise_workers
                  WHERE expires_at > $1::bigint ORDER BY id",
            )
            .await
            .map_err(|e| pg(what, e))?;
        let rows = client
            .query(&stmt, &[&micros(now)])
            .await
            .map_err(|e| pg(what, e))?;
        let mut workers = Vec::with_capacity(rows.len());
        for row in &rows {
            let id = column("<unreadable worker id>", "id", row.text(0))?;
            let info = column(&id, "info", row.text(1))?;
            let worker = serde_json::from_str::<WorkerInfo>(&info).map_err(|e| {
                codec::corrupt(
                    &id,
                    format!("the registry row of worker `{id}` is not a worker: {e}"),
                )
            })?;
            workers.push(worker);
        }
        Ok(workers)
    }
}

/// Cancels the pending run `run` (its log ends at `next_seq - 1`) for a debounced start
/// that replaces it: appends `canceled` at `next_seq`, sets status `canceled`, `error`
/// and no wake-up time.
async fn cancel_pending(
    tx: &deadpool_postgres::Transaction<'_>,
    run: &str,
    next_seq: i64,
    canceled: &NewEvent,
    error: &serde_json::Value,
) -> Result<(), EngineError> {
    let what = &format!("cannot cancel the debounced run `{run}`");
    let pg = |e| pg_run(what, run, e);
    let payload = serde_json::to_string(&canceled.payload)?;
    let error = serde_json::to_string(error)?;
    let at = micros(canceled.at);
    tx.execute(
        "INSERT INTO reprise_events (run_id, seq, kind, correlation_id, attempt, at, payload)
         VALUES ($1::text, $2::bigint, $3::text, $4::text, $5::bigint, $6::bigint,
                 $7::text::json)",
        &[
            &run,
            &next_seq,
            &canceled.kind.as_str(),
            &canceled.correlation_id,
            &i64::from(canceled.attempt),
            &at,
            &payload,
        ],
    )
    .await
    .map_err(pg)?;
    tx.execute(
        "UPDATE reprise_runs
            SET next_seq = $2::bigint + 1, status = 'canceled', error = $3::text::json,
                wake_at = NULL, updated_at = $4::bigint
          WHERE id = $1::text",
        &[&run, &next_seq, &error, &at],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_lock_keys_differ_per_schema_and_queue_and_are_stable() {
        assert_eq!(queue_lock_key("s", "llm"), queue_lock_key("s", "llm"));
        assert_ne!(queue_lock_key("s", "llm"), queue_lock_key("s", "gpu"));
        assert_ne!(queue_lock_key("s", "llm"), queue_lock_key("t", "llm"));
        assert_ne!(queue_lock_key("ab", "c"), queue_lock_key("a", "bc"));
        assert_ne!(queue_lock_key("", "x"), super::super::lock_key("x"));
    }
}
