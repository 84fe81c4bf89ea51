//! Flow control in the SQLite store (schema version 9): claims with routing and queue
//! admission ([`crate::store::Store::claim`]), gated creation
//! ([`crate::store::Store::create_run_gated`]), queue totals and the worker registry.
//!
//! Every write here runs on the writer thread, inside its `BEGIN IMMEDIATE` transaction:
//! SQLite lets one writer at a time hold the file, so a claim's counting, admission and
//! leasing are atomic across every process that opens the file, and two claimers can
//! never both admit into the last free place of a queue.
//!
//! # Indexes
//!
//! - `runs_due (due_at) WHERE due_at IS NOT NULL AND (queue IS NULL OR admitted_at IS NOT
//!   NULL)`: the runs a claim leases without admission (in no queue, or admitted); a
//!   claim reads it from its start and stops after `limit` rows, as before queues. Runs
//!   waiting for admission are not in it, so a long queue costs this path nothing.
//! - `runs_queue_waiting (queue, priority DESC, due_at) WHERE queue IS NOT NULL AND
//!   admitted_at IS NULL AND due_at IS NOT NULL`: a queue's candidates in admission order
//!   (priority, due time, then rowid, that is creation).
//! - `runs_queue_active (queue, queue_key) WHERE admitted_at IS NOT NULL AND status NOT IN
//!   ('completed', 'failed', 'canceled')`: the admitted, unfinished runs that concurrency
//!   counts (a count reads as many entries as runs hold a place).
//! - `runs_queue_admitted_at (queue, admitted_at)` and `runs_queue_admitted (queue,
//!   queue_key, admitted_at)`, both `WHERE admitted_at IS NOT NULL`: the admissions in a
//!   rate window, queue-wide or per key (a count reads the window only).

use chrono::{DateTime, Utc};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension};

use super::{EncodedCreate, EncodedEvent, Reply, SqlContext, apply_create};
use crate::EngineError;
use crate::event::RunId;
use crate::queue::{
    Admitter, ClaimRequest, DEFAULT_QUEUE, DebouncePolicy, Gated, KeyTotals, Queue, QueueTotals,
    StartGate, StepWindow, WorkerInfo,
};
use crate::store::codec::{self, micros};
use crate::store::{Lease, StoreError, StoreErrorKind};

/// A flow-control write, applied by the writer thread.
pub(super) enum QueueOp {
    /// [`crate::store::Store::create_run_gated`].
    CreateGated(Box<(EncodedCreate, EncodedGate)>),
    /// [`crate::store::Store::worker_heartbeat`]: `(id, WorkerInfo as JSON, expires_at)`.
    Heartbeat(String, String, i64),
    /// [`crate::store::Store::worker_stopped`].
    Stopped(String),
    /// [`crate::store::Store::take_step_permit`] (the queue has a step rate limit): the
    /// window, re-timed by the clock when the writer applies it.
    TakeStepPermit(Box<(StepWindow, std::sync::Arc<dyn crate::Clock>)>),
}

impl QueueOp {
    /// Whether the op is bookkeeping that needs no fsync of its own (a lost heartbeat
    /// is renewed by the next one; a step permit matters while its step runs, and the
    /// step's own append, fsynced, follows it).
    pub(super) fn is_bookkeeping(&self) -> bool {
        matches!(
            self,
            QueueOp::Heartbeat(..) | QueueOp::Stopped(..) | QueueOp::TakeStepPermit(..)
        )
    }
}

/// A [`StartGate`] as the writer applies it.
pub(super) struct EncodedGate {
    key: String,
    rule: GateRule,
}

enum GateRule {
    Dedup,
    Debounce {
        policy: DebouncePolicy,
        canceled: EncodedEvent,
        error: String,
    },
}

/// `gate` as stored.
pub(super) fn encode_gate(gate: &StartGate) -> Result<EncodedGate, EngineError> {
    Ok(match gate {
        StartGate::Dedup { key } => EncodedGate {
            key: key.clone(),
            rule: GateRule::Dedup,
        },
        StartGate::Debounce {
            key,
            policy,
            canceled,
            error,
        } => EncodedGate {
            key: key.clone(),
            rule: GateRule::Debounce {
                policy: *policy,
                canceled: EncodedEvent::new(canceled)?,
                error: serde_json::to_string(error)?,
            },
        },
    })
}

/// A [`ClaimRequest`] as the writer applies it.
pub(super) struct EncodedClaim {
    owner: String,
    now: DateTime<Utc>,
    expires_at: i64,
    limit: i64,
    /// The served workflows (`None`: all).
    workflows: Option<Vec<String>>,
    /// The served queues (`default` = no queue; `None`: all).
    routed_queues: Option<Vec<String>>,
    /// The queues to admit into: those of the request that the routing serves.
    queues: Vec<Queue>,
    /// A claim of this run alone ([`ClaimRequest::run`]).
    run: Option<String>,
}

/// `request` as the writer applies it.
pub(super) fn encode_claim(request: &ClaimRequest<'_>) -> Result<EncodedClaim, EngineError> {
    let routing = request.routing;
    let queues = request
        .queues
        .iter()
        .filter(|q| {
            routing
                .queues
                .as_ref()
                .is_none_or(|served| served.contains(&q.name))
        })
        .cloned()
        .collect();
    Ok(EncodedClaim {
        owner: request.owner.to_owned(),
        now: request.now,
        expires_at: micros(request.expires_at),
        limit: i64::try_from(request.limit).unwrap_or(i64::MAX),
        workflows: routing.workflows.clone(),
        routed_queues: routing.queues.clone(),
        queues,
        run: request.run.map(|id| id.0.clone()),
    })
}

/// The writer's side of [`crate::store::Store::claim`]: due runs that need no admission
/// first (earliest due first, as before queues), then admission into each queue of the
/// request while places are left; every chosen run leased, in creation order.
pub(super) fn apply_claim(conn: &Connection, c: &EncodedClaim) -> Result<Vec<Lease>, EngineError> {
    let now = micros(c.now);
    if let Some(run) = &c.run {
        return claim_one(conn, c, run, now);
    }
    // (rowid, admitted now)
    let chosen: Vec<(i64, bool)> = free_runs(conn, c, now)?
        .into_iter()
        .map(|rowid| (rowid, false))
        .collect();
    lease_chosen(conn, c, chosen_after_admission(conn, c, now, chosen)?, now)
}

/// [`ClaimRequest::run`]: run `id` alone, if it waits in one of the claim's queues and
/// the queue's walk admits it (the runs ahead of it only counted).
fn claim_one(
    conn: &Connection,
    c: &EncodedClaim,
    id: &str,
    now: i64,
) -> Result<Vec<Lease>, EngineError> {
    let what = format!("cannot claim run `{id}`");
    let found: Option<(i64, Option<String>)> = conn
        .prepare_cached("SELECT rowid, queue FROM runs WHERE id = ?1 AND admitted_at IS NULL")
        .ctx(&what)?
        .query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()
        .ctx(&what)?;
    let Some((rowid, Some(name))) = found else {
        return Ok(Vec::new());
    };
    let Some(queue) = c.queues.iter().find(|q| q.name == name) else {
        return Ok(Vec::new());
    };
    let paused = paused_workflows(conn)?;
    let admitted = admit(conn, c, queue, &paused, now, i64::MAX, Some(rowid))?;
    let chosen = admitted
        .into_iter()
        .filter(|r| *r == rowid)
        .map(|r| (r, true))
        .collect();
    lease_chosen(conn, c, chosen, now)
}

/// `chosen` (the free runs of a claim) with the runs admitted into the claim's queues
/// while its limit leaves room.
fn chosen_after_admission(
    conn: &Connection,
    c: &EncodedClaim,
    now: i64,
    mut chosen: Vec<(i64, bool)>,
) -> Result<Vec<(i64, bool)>, EngineError> {
    if !c.queues.is_empty() && (chosen.len() as i64) < c.limit {
        let paused = paused_workflows(conn)?;
        for queue in &c.queues {
            let room = c.limit.saturating_sub(chosen.len() as i64);
            if room <= 0 {
                break;
            }
            for rowid in admit(conn, c, queue, &paused, now, room, None)? {
                chosen.push((rowid, true));
            }
        }
    }
    Ok(chosen)
}

/// Leases the `chosen` runs `(rowid, admitted now)`, in creation order. An admitted run
/// is stamped `admitted_at` = `now`, or the latest admission of its queue if that is later:
/// a claim whose `now` was read before another claim admitted runs never counts as
/// admitted earlier than those (which would let the rate window forget an admission
/// early).
fn lease_chosen(
    conn: &Connection,
    c: &EncodedClaim,
    mut chosen: Vec<(i64, bool)>,
    now: i64,
) -> Result<Vec<Lease>, EngineError> {
    let what = "cannot claim runs";
    // Chosen earliest due (or in admission order); handed out in creation order.
    chosen.sort_unstable();
    let mut leases = Vec::with_capacity(chosen.len());
    for (rowid, admitted) in chosen {
        let mut stmt = conn
            .prepare_cached(
                "UPDATE runs SET lease_owner = ?2, lease_expires_at = ?3, fence = fence + 1,
                                 admitted_at = CASE WHEN ?4 THEN max(?5, coalesce(
                                     (SELECT max(p.admitted_at) FROM runs p
                                       WHERE p.queue = runs.queue
                                         AND p.admitted_at IS NOT NULL), ?5))
                                 ELSE admitted_at END
                 WHERE rowid = ?1 RETURNING id, fence, cancel_requested, pause_requested",
            )
            .ctx(what)?;
        let mut rows = stmt
            .query(rusqlite::params![
                rowid,
                c.owner,
                c.expires_at,
                admitted,
                now
            ])
            .ctx(what)?;
        let Some(row) = rows.next().ctx(what)? else {
            return Err(EngineError::UnknownRun(format!("(row {rowid})")));
        };
        let id: String = row.get(0).ctx(what)?;
        leases.push(codec::lease(&id, &c.owner, c.expires_at, row, 1)?);
    }
    Ok(leases)
}

/// The paused workflows (a handful at most).
fn paused_workflows(conn: &Connection) -> Result<Vec<String>, EngineError> {
    let what = "cannot read the paused workflows";
    conn.prepare_cached("SELECT workflow FROM paused_workflows")
        .ctx(what)?
        .query_map([], |row| row.get(0))
        .ctx(what)?
        .collect::<Result<_, _>>()
        .ctx(what)
}

/// ` AND <expr> [NOT] IN (?n, …)` over `values`, its parameters pushed onto `params`
/// (numbered on from their length). A list of parameters, not `json_each`: SQLite
/// tests a row against a literal list far faster (a `json_each` subquery costs
/// microseconds per row). The list is padded (repeating its last value) to a power of
/// two, so a few statement texts serve every length and stay in the statement cache.
fn in_list(expr: &str, not: bool, values: &[String], params: &mut Vec<SqlValue>) -> String {
    let Some(last) = values.last() else {
        return if not {
            String::new()
        } else {
            " AND 0".to_owned()
        };
    };
    let padded = values.len().next_power_of_two().max(4);
    let mut placeholders = Vec::with_capacity(padded);
    for i in 0..padded {
        params.push(SqlValue::Text(values.get(i).unwrap_or(last).clone()));
        placeholders.push(format!("?{}", params.len()));
    }
    format!(
        " AND {expr} {}IN ({})",
        if not { "NOT " } else { "" },
        placeholders.join(", ")
    )
}

/// The routing terms of a claim's `WHERE` clause (with the served queues when
/// `queues`), their parameters pushed onto `params`.
fn routing_terms(c: &EncodedClaim, queues: bool, params: &mut Vec<SqlValue>) -> String {
    let mut sql = String::new();
    if let Some(workflows) = &c.workflows {
        sql.push_str(&in_list("workflow", false, workflows, params));
    }
    if queues && let Some(routed) = &c.routed_queues {
        sql.push_str(&in_list(
            &format!("coalesce(queue, '{DEFAULT_QUEUE}')"),
            false,
            routed,
            params,
        ));
    }
    sql
}

/// Up to `limit` due, unleased, served runs that need no admission (in no queue, or
/// admitted), earliest due first: their rowids.
fn free_runs(conn: &Connection, c: &EncodedClaim, now: i64) -> Result<Vec<i64>, EngineError> {
    let what = "cannot claim runs";
    let mut params = vec![SqlValue::Integer(now), SqlValue::Integer(c.limit)];
    let routing = routing_terms(c, true, &mut params);
    // The rule of `store::due_at`, kept in SQL as the column `due_at` (schema version 3);
    // the second term is the partial index's own condition, word for word, so the
    // planner may use it.
    let sql = format!(
        "SELECT rowid FROM runs INDEXED BY runs_due
         WHERE due_at <= ?1
           AND (queue IS NULL OR admitted_at IS NOT NULL)
           AND (lease_owner IS NULL OR lease_expires_at <= ?1)
           AND NOT EXISTS (SELECT 1 FROM paused_workflows p WHERE p.workflow = runs.workflow)
           {routing}
         ORDER BY due_at, rowid LIMIT ?2"
    );
    conn.prepare_cached(&sql)
        .ctx(what)?
        .query_map(rusqlite::params_from_iter(params), |row| row.get(0))
        .ctx(what)?
        .collect::<Result<_, _>>()
        .ctx(what)
}

/// Admits up to `room` due, served candidates of `queue` by [`Admitter`], in order of
/// priority, due time and creation: the rowid of each. A candidate blocked by its key's
/// limits is passed over; the walk stops when the queue is full or `room` is used, or
/// once it has decided on `target` (a claim of one run: the caller keeps that one).
///
/// The counts of every key that has any (admitted, unfinished runs; admissions in the
/// rate window) are loaded up front, so keys already blocked are excluded in SQL and a
/// long run of their candidates costs the walk little; a key that this claim blocks is
/// excluded by starting the walk over once it has passed over a few of its candidates.
fn admit(
    conn: &Connection,
    c: &EncodedClaim,
    queue: &Queue,
    paused: &[String],
    now: i64,
    room: i64,
    target: Option<i64>,
) -> Result<Vec<i64>, EngineError> {
    /// How many candidates in a row the walk passes over before it starts over with
    /// the keys it blocked itself excluded.
    const RESTART_AFTER: usize = 16;
    let what = format!("cannot admit runs into queue `{}`", queue.name);
    let totals = queue_totals(conn, queue, c.now, queue.concurrency.is_some())?;
    let mut admitter = Admitter::new(queue, c.now, totals);
    if admitter.is_full() {
        return Ok(Vec::new());
    }
    let per_key = queue.key_concurrency.is_some() || queue.rate_limit.is_some_and(|r| r.per_key);
    let mut blocked: Vec<String> = Vec::new();
    if per_key {
        for (key, totals) in all_key_totals(conn, queue, c.now)? {
            admitter.add_key_totals(&key, totals);
            if admitter.check(Some(&key)).is_err() {
                blocked.push(key);
            }
        }
    }
    let mut admitted: Vec<i64> = Vec::new();
    'walk: loop {
        let mut sql = String::from(
            "SELECT rowid, queue_key FROM runs INDEXED BY runs_queue_waiting
             WHERE queue = ?1 AND admitted_at IS NULL AND due_at <= ?2",
        );
        let mut params = vec![SqlValue::Text(queue.name.clone()), SqlValue::Integer(now)];
        // No lease term: `due_at` is never before a lease expires.
        sql.push_str(&in_list("workflow", true, paused, &mut params));
        // A run with no key is never blocked by a key: `coalesce` keeps it in.
        sql.push_str(&in_list(
            "coalesce(queue_key, '')",
            true,
            &blocked,
            &mut params,
        ));
        sql.push_str(&routing_terms(c, false, &mut params));
        sql.push_str(" ORDER BY priority DESC, due_at, rowid");
        let mut stmt = conn.prepare_cached(&sql).ctx(&what)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(params)).ctx(&what)?;
        let mut passed = 0;
        let mut newly_blocked = false;
        while (admitted.len() as i64) < room && !admitter.is_full() {
            let Some(row) = rows.next().ctx(&what)? else {
                break 'walk;
            };
            let rowid: i64 = row.get(0).ctx(&what)?;
            if admitted.contains(&rowid) {
                continue;
            }
            let key = row.get_ref(1).ctx(&what)?;
            let kind = key.data_type();
            let key = key
                .as_str_or_null()
                .map_err(|e| rusqlite::Error::FromSqlConversionFailure(1, kind, e.into()))
                .ctx(&what)?;
            if let Some(key) = key
                && admitter.needs_key_totals(key)
            {
                // Not among the loaded keys: it has nothing admitted.
                admitter.add_key_totals(key, KeyTotals::default());
            }
            let admits = admitter.admit(key).is_ok();
            if target == Some(rowid) {
                if admits {
                    admitted.push(rowid);
                }
                break 'walk;
            }
            if admits {
                admitted.push(rowid);
                passed = 0;
                if let Some(key) = key
                    && admitter.check(Some(key)).is_err()
                {
                    blocked.push(key.to_owned());
                    newly_blocked = true;
                }
            } else {
                passed += 1;
                if newly_blocked && passed >= RESTART_AFTER {
                    continue 'walk;
                }
            }
        }
        break;
    }
    Ok(admitted)
}

/// The counts of every key of `queue` that has admitted, unfinished runs (when the queue
/// bounds keys' concurrency) or admissions in the per-key rate window.
fn all_key_totals(
    conn: &Connection,
    queue: &Queue,
    now: DateTime<Utc>,
) -> Result<Vec<(String, KeyTotals)>, EngineError> {
    let what = format!("cannot count the runs per key of queue `{}`", queue.name);
    let mut keys: std::collections::HashMap<String, KeyTotals> = Default::default();
    if queue.key_concurrency.is_some() {
        let mut stmt = conn
            .prepare_cached(
                "SELECT queue_key, COUNT(*) FROM runs INDEXED BY runs_queue_active
                 WHERE queue = ?1 AND admitted_at IS NOT NULL
                   AND status NOT IN ('completed', 'failed', 'canceled')
                   AND queue_key IS NOT NULL
                 GROUP BY queue_key",
            )
            .ctx(&what)?;
        let mut rows = stmt.query([&queue.name]).ctx(&what)?;
        while let Some(row) = rows.next().ctx(&what)? {
            let key: String = row.get(0).ctx(&what)?;
            let n: i64 = row.get(1).ctx(&what)?;
            keys.entry(key).or_default().active = count(n);
        }
    }
    if let (Some(rate), Some(start)) = (queue.rate_limit, Admitter::window_start(queue, now))
        && rate.per_key
    {
        let mut stmt = conn
            .prepare_cached(
                "SELECT queue_key, COUNT(*), MIN(admitted_at)
                   FROM runs INDEXED BY runs_queue_admitted_at
                  WHERE queue = ?1 AND admitted_at > ?2 AND queue_key IS NOT NULL
                  GROUP BY queue_key",
            )
            .ctx(&what)?;
        let mut rows = stmt
            .query(rusqlite::params![queue.name, micros(start)])
            .ctx(&what)?;
        while let Some(row) = rows.next().ctx(&what)? {
            let key: String = row.get(0).ctx(&what)?;
            let n: i64 = row.get(1).ctx(&what)?;
            let oldest: i64 = row.get(2).ctx(&what)?;
            let totals = keys.entry(key).or_default();
            totals.admitted_in_window = count(n);
            totals.oldest_in_window = Some(admitted(&queue.name, oldest)?);
        }
    }
    Ok(keys.into_iter().collect())
}

/// The queue-wide counts of [`crate::store::Store::queue_totals`] for `queue` at `now`;
/// `active` only when `with_active` (else 0).
fn queue_totals(
    conn: &Connection,
    queue: &Queue,
    now: DateTime<Utc>,
    with_active: bool,
) -> Result<QueueTotals, EngineError> {
    let what = format!("cannot count the runs of queue `{}`", queue.name);
    let mut totals = QueueTotals::default();
    if with_active {
        let active: i64 = conn
            .prepare_cached(
                "SELECT COUNT(*) FROM runs INDEXED BY runs_queue_active
                 WHERE queue = ?1 AND admitted_at IS NOT NULL
                   AND status NOT IN ('completed', 'failed', 'canceled')",
            )
            .ctx(&what)?
            .query_row([&queue.name], |row| row.get(0))
            .ctx(&what)?;
        totals.active = count(active);
    }
    if let (Some(rate), Some(start)) = (queue.rate_limit, Admitter::window_start(queue, now))
        && !rate.per_key
    {
        let (n, oldest): (i64, Option<i64>) = conn
            .prepare_cached(
                "SELECT COUNT(*), MIN(admitted_at) FROM runs INDEXED BY runs_queue_admitted_at
                 WHERE queue = ?1 AND admitted_at > ?2",
            )
            .ctx(&what)?
            .query_row(rusqlite::params![queue.name, micros(start)], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .ctx(&what)?;
        totals.admitted_in_window = count(n);
        totals.oldest_in_window = oldest.map(|t| admitted(&queue.name, t)).transpose()?;
    }
    Ok(totals)
}

/// The counts of `key` in `queue` at `now`, as [`crate::store::Store::queue_totals`]
/// defines them.
fn key_totals(
    conn: &Connection,
    queue: &Queue,
    key: &str,
    now: DateTime<Utc>,
) -> Result<KeyTotals, EngineError> {
    let what = format!(
        "cannot count the runs of key `{key}` in queue `{}`",
        queue.name
    );
    let active: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM runs INDEXED BY runs_queue_active
             WHERE queue = ?1 AND queue_key = ?2 AND admitted_at IS NOT NULL
               AND status NOT IN ('completed', 'failed', 'canceled')",
        )
        .ctx(&what)?
        .query_row([&queue.name, key], |row| row.get(0))
        .ctx(&what)?;
    let mut totals = KeyTotals {
        active: count(active),
        ..KeyTotals::default()
    };
    if let (Some(rate), Some(start)) = (queue.rate_limit, Admitter::window_start(queue, now))
        && rate.per_key
    {
        let (n, oldest): (i64, Option<i64>) = conn
            .prepare_cached(
                "SELECT COUNT(*), MIN(admitted_at) FROM runs INDEXED BY runs_queue_admitted
                 WHERE queue = ?1 AND queue_key = ?2 AND admitted_at > ?3",
            )
            .ctx(&what)?
            .query_row(rusqlite::params![queue.name, key, micros(start)], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .ctx(&what)?;
        totals.admitted_in_window = count(n);
        totals.oldest_in_window = oldest.map(|t| admitted(&queue.name, t)).transpose()?;
    }
    Ok(totals)
}

/// A `COUNT(*)` (never negative).
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or_default()
}

/// An `admitted_at` of a run of `queue`, as a time.
fn admitted(queue: &str, at: i64) -> Result<DateTime<Utc>, EngineError> {
    DateTime::from_timestamp_micros(at).ok_or_else(|| {
        StoreError::new(
            StoreErrorKind::Database,
            format!(
                "a run of queue `{queue}` has `admitted_at` {at} µs, which is not a valid time"
            ),
        )
        .into()
    })
}

/// The reader's side of [`crate::store::Store::queue_totals`]: one snapshot (a read
/// transaction) for all counts.
pub(super) fn read_totals(
    conn: &Connection,
    queue: &Queue,
    key: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(QueueTotals, Option<KeyTotals>), EngineError> {
    let what = format!("cannot count the runs of queue `{}`", queue.name);
    let tx = conn.unchecked_transaction().ctx(&what)?;
    let totals = queue_totals(&tx, queue, now, true)?;
    let key = key
        .map(|key| key_totals(&tx, queue, key, now))
        .transpose()?;
    tx.finish().ctx(&what)?;
    Ok((totals, key))
}

/// The permits of `window`'s queue and scope taken after its start, and the oldest.
pub(super) fn step_permits_in_window(
    conn: &Connection,
    window: &StepWindow,
) -> Result<(u64, Option<DateTime<Utc>>), EngineError> {
    let what = format!("cannot count the step permits of queue `{}`", window.queue);
    let (n, oldest): (i64, Option<i64>) = conn
        .prepare_cached(
            "SELECT COUNT(*), MIN(at) FROM step_permits INDEXED BY step_permits_window
             WHERE queue = ?1 AND scope = ?2 AND at > ?3",
        )
        .ctx(&what)?
        .query_row(
            rusqlite::params![window.queue, window.scope, micros(window.start)],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .ctx(&what)?;
    let oldest = oldest
        .map(|at| {
            DateTime::from_timestamp_micros(at).ok_or_else(|| {
                EngineError::from(StoreError::new(
                    StoreErrorKind::Database,
                    format!(
                        "a step permit of queue `{}` has `at` {at} µs, which is not a valid \
                         time",
                        window.queue
                    ),
                ))
            })
        })
        .transpose()?;
    Ok((count(n), oldest))
}

/// [`crate::store::Store::take_step_permit`] in the writer's transaction: prunes the
/// scope's permits out of the window, counts the rest, and records one if
/// [`StepWindow::decide`] grants it.
fn take_step_permit(
    conn: &Connection,
    window: &StepWindow,
) -> Result<Result<(), DateTime<Utc>>, EngineError> {
    let what = format!("cannot take a step permit of queue `{}`", window.queue);
    conn.prepare_cached("DELETE FROM step_permits WHERE queue = ?1 AND scope = ?2 AND at <= ?3")
        .ctx(&what)?
        .execute(rusqlite::params![
            window.queue,
            window.scope,
            micros(window.stale)
        ])
        .ctx(&what)?;
    let (taken, oldest) = step_permits_in_window(conn, window)?;
    let decision = window.decide(taken, oldest);
    if decision.is_ok() {
        conn.prepare_cached("INSERT INTO step_permits (queue, scope, at) VALUES (?1, ?2, ?3)")
            .ctx(&what)?
            .execute(rusqlite::params![
                window.queue,
                window.scope,
                micros(window.now)
            ])
            .ctx(&what)?;
    }
    Ok(decision)
}

/// Applies a flow-control write.
pub(super) fn apply(conn: &Connection, op: &QueueOp) -> Result<Reply, EngineError> {
    match op {
        QueueOp::TakeStepPermit(taken) => {
            // Timed here, inside the writer's transaction: after every permit before it.
            let window = taken.0.at(taken.1.now());
            take_step_permit(conn, &window).map(Reply::Permit)
        }
        QueueOp::CreateGated(gated) => apply_gated(conn, &gated.0, &gated.1).map(Reply::Gated),
        QueueOp::Heartbeat(id, info, expires_at) => {
            let what = format!("cannot register worker `{id}`");
            conn.prepare_cached(
                "INSERT INTO workers (id, info, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET info = excluded.info,
                                                expires_at = excluded.expires_at",
            )
            .ctx(&what)?
            .execute(rusqlite::params![id, info, expires_at])
            .ctx(&what)?;
            Ok(Reply::Done)
        }
        QueueOp::Stopped(id) => {
            let what = format!("cannot remove worker `{id}` from the registry");
            conn.prepare_cached("DELETE FROM workers WHERE id = ?1")
                .ctx(&what)?
                .execute([id])
                .ctx(&what)?;
            Ok(Reply::Done)
        }
    }
}

/// Creates `create` under the rule of `gate`, in the writer's transaction (see
/// [`StartGate`]).
fn apply_gated(
    conn: &Connection,
    create: &EncodedCreate,
    gate: &EncodedGate,
) -> Result<Gated, EngineError> {
    let what = format!("cannot create run `{}` under key `{}`", create.id, gate.key);
    // The run holding the key: its id, whether it ended, whether it is pending (queued
    // and not admitted), its next seq.
    let holder: Option<(String, bool, bool, i64)> = conn
        .prepare_cached(
            "SELECT runs.id, runs.status IN ('completed', 'failed', 'canceled'),
                    runs.status = 'queued' AND runs.queue IS NOT NULL
                        AND runs.admitted_at IS NULL,
                    runs.next_seq
               FROM run_keys JOIN runs ON runs.id = run_keys.run_id
              WHERE run_keys.key = ?1",
        )
        .ctx_run(&what, &create.id)?
        .query_row([&gate.key], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .optional()
        .ctx_run(&what, &create.id)?;
    let mut outcome = Gated::Created;
    if let Some((held, ended, pending, next_seq)) = holder {
        match &gate.rule {
            GateRule::Dedup if !ended => return Ok(Gated::Existing(RunId(held))),
            GateRule::Debounce {
                policy,
                canceled,
                error,
            } if pending => match policy {
                DebouncePolicy::Drop => return Ok(Gated::Existing(RunId(held))),
                DebouncePolicy::Replace => {
                    super::insert_event(conn, &held, next_seq, canceled)?;
                    conn.prepare_cached(
                        "UPDATE runs SET status = 'canceled', error = ?2, wake_at = NULL,
                                         updated_at = ?3, next_seq = ?4
                         WHERE id = ?1",
                    )
                    .ctx_run(&what, &held)?
                    .execute(rusqlite::params![held, error, canceled.at, next_seq + 1])
                    .ctx_run(&what, &held)?;
                    outcome = Gated::Replaced(RunId(held));
                }
            },
            _ => {}
        }
    }
    apply_create(conn, create)?;
    conn.prepare_cached(
        "INSERT INTO run_keys (key, run_id) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET run_id = excluded.run_id",
    )
    .ctx_run(&what, &create.id)?
    .execute([&gate.key, &create.id])
    .ctx_run(&what, &create.id)?;
    Ok(outcome)
}

/// The reader's side of [`crate::store::Store::live_workers`].
pub(super) fn live_workers(conn: &Connection, now: i64) -> Result<Vec<WorkerInfo>, EngineError> {
    let what = "cannot read the registry of workers";
    let mut stmt = conn
        .prepare_cached("SELECT id, info FROM workers WHERE expires_at > ?1 ORDER BY id")
        .ctx(what)?;
    let mut rows = stmt.query([now]).ctx(what)?;
    let mut workers = Vec::new();
    while let Some(row) = rows.next().ctx(what)? {
        let id: String = row.get(0).ctx(what)?;
        let info: String = row.get(1).ctx(what)?;
        let info: WorkerInfo = serde_json::from_str(&info).map_err(|e| {
            StoreError::new(
                StoreErrorKind::Database,
                format!(
                    "the registry row of worker `{id}` is not a worker description ({e}); \
                     it is rewritten at the worker's next heartbeat, or delete it from the \
                     `workers` table"
                ),
            )
        })?;
        workers.push(info);
    }
    Ok(workers)
}
