//! Postgres only: flow control under contention. Three `PostgresStore`s (three pools, as
//! three worker processes) race their claim loops over one queue; the limits are then
//! checked from what the store recorded (each run's `admitted_at` and the time of its
//! `run_completed` event), not from the claimers' own bookkeeping.
//!
//! Skipped, with a notice, when `REPRISE_TEST_POSTGRES_URL` is unset.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reprise::event::{
    EventKind, NewEvent, RunId, RunQueue, RunRecord, RunStatus, RunUpdate, Trigger,
};
use reprise::queue::{ClaimRequest, Queue, Routing};
use reprise::store::{Append, Lease, PostgresOptions, PostgresStore, Store};
use serde_json::{Value, json};

use crate::postgres::{TestSchema, schema_client, test_url};

/// Three stores on one schema: three pools of `pool_size` connections each.
async fn three_processes(url: &str, schema: &TestSchema) -> Vec<Arc<PostgresStore>> {
    let mut stores = Vec::new();
    for _ in 0..3 {
        let options = PostgresOptions {
            pool_size: 4,
            ..schema.options()
        };
        let store = PostgresStore::connect_with(url, options)
            .await
            .expect("connect");
        stores.push(Arc::new(store));
    }
    stores
}

fn at(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).expect("valid time")
}

/// Creates `n` runs of queue `queue`, run `i` with key `key(i)` and priority
/// `priority(i)`, created at `created(i)`.
async fn create_runs(
    store: &PostgresStore,
    queue: &str,
    n: usize,
    key: impl Fn(usize) -> Option<String>,
    priority: impl Fn(usize) -> i32,
    created: impl Fn(usize) -> DateTime<Utc>,
) {
    for i in 0..n {
        let created_at = created(i);
        let record = RunRecord {
            id: RunId::from(format!("run-{i:05}").as_str()),
            workflow: "wf".to_owned(),
            status: RunStatus::Queued,
            input: json!({ "i": i }),
            output: None,
            error: None,
            attempt: 0,
            trigger: Trigger::Api,
            created_at,
            updated_at: created_at,
            wake_at: None,
            next_seq: 1,
            queue: Some(RunQueue {
                name: queue.to_owned(),
                key: key(i),
                priority: priority(i),
                admitted_at: None,
            }),
        };
        let event = NewEvent {
            kind: EventKind::RunCreated,
            correlation_id: None,
            attempt: 0,
            at: created_at,
            payload: json!({}),
        };
        store.create_run(record, event).await.expect("create_run");
    }
}

/// Ends the leased run with `run_completed` at `at`, as its worker would.
async fn complete(store: &PostgresStore, lease: &Lease, at: DateTime<Utc>) {
    let record = store
        .run(&lease.run_id)
        .await
        .expect("run")
        .expect("the run exists");
    store
        .append(Append {
            run_id: record.id.clone(),
            first_seq: record.next_seq,
            events: vec![NewEvent {
                kind: EventKind::RunCompleted,
                correlation_id: None,
                attempt: 0,
                at,
                payload: json!({ "output": null }),
            }],
            update: RunUpdate {
                status: Some(RunStatus::Completed),
                output: Some(Value::Null),
                ..RunUpdate::default()
            },
            fence: Some(lease.fence),
            release: false,
        })
        .await
        .expect("complete the run (a run claimed twice would fail here)");
}

/// One run as stored: its key, when it was admitted and when it completed (µs).
struct Stored {
    id: String,
    key: Option<String>,
    admitted: Option<i64>,
    completed: Option<i64>,
}

async fn stored_runs(url: &str, schema: &TestSchema) -> Vec<Stored> {
    let client = schema_client(url, schema).await;
    client
        .query(
            "SELECT r.id, r.queue_key, r.admitted_at,
                    (SELECT e.at FROM reprise_events e
                      WHERE e.run_id = r.id AND e.kind = 'run_completed')
               FROM reprise_runs r ORDER BY r.id",
            &[],
        )
        .await
        .expect("read the runs")
        .iter()
        .map(|row| Stored {
            id: row.get(0),
            key: row.get(1),
            admitted: row.get(2),
            completed: row.get(3),
        })
        .collect()
}

/// The most intervals `[start, end)` that hold one point in common.
fn max_overlap(intervals: &[(i64, i64)]) -> usize {
    let mut edges: Vec<(i64, i32)> = Vec::new();
    for &(start, end) in intervals {
        edges.push((start, 1));
        edges.push((end, -1));
    }
    // At equal times an end comes before a start: `[a, b)` and `[b, c)` do not overlap.
    edges.sort_unstable();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    usize::try_from(most).unwrap_or(0)
}

#[test]
fn max_overlap_counts_shared_points_only() {
    assert_eq!(max_overlap(&[(0, 2), (2, 4), (4, 6)]), 1);
    assert_eq!(max_overlap(&[(0, 5), (1, 2), (3, 6), (4, 7)]), 3);
    assert_eq!(max_overlap(&[]), 0);
}

/// Three processes, two claimers each, race 2,000 runs of a queue with key
/// concurrency 1 (50 keys) and concurrency 10, with mixed priorities. From the stored
/// data: no key ever had two admitted, unfinished runs at once, the queue never more
/// than 10, and every run was admitted and completed exactly once.
///
/// Times come from one logical clock (µs ticks): a claim reads its `now` and runs while
/// holding a shared gate, a completion reads its time under the exclusive gate (so no
/// claim is in flight) and then appends. Then, with a correct store, a run admitted
/// after another's completion committed always has the later time, so intervals
/// `[admitted_at, completed_at)` of one key must not overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_processes_never_break_key_or_queue_concurrency() {
    let Some(url) = test_url() else { return };
    let schema = TestSchema::new(&url);
    let stores = three_processes(&url, &schema).await;
    const RUNS: usize = 2_000;
    const KEYS: usize = 50;
    const CONCURRENCY: u32 = 10;
    let origin = 1_790_000_000_000_000i64;
    create_runs(
        &stores[0],
        "q",
        RUNS,
        |i| Some(format!("k{:02}", i % KEYS)),
        |i| i32::try_from(i % 3).unwrap(),
        |i| at(origin + i64::try_from(i).unwrap()),
    )
    .await;
    let queues: Arc<[Queue]> = Arc::from(vec![
        Queue::new("q").key_concurrency(1).concurrency(CONCURRENCY),
    ]);
    let clock = Arc::new(AtomicI64::new(origin + 1_000_000));
    let gate = Arc::new(tokio::sync::RwLock::new(()));
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (p, store) in stores.iter().enumerate() {
        for c in 0..2 {
            let (store, queues, clock, gate, done) = (
                Arc::clone(store),
                Arc::clone(&queues),
                Arc::clone(&clock),
                Arc::clone(&gate),
                Arc::clone(&done),
            );
            tasks.push(tokio::spawn(async move {
                let owner = format!("p{p}-c{c}");
                let routing = Routing::default();
                let mut claimed: Vec<RunId> = Vec::new();
                let deadline = std::time::Instant::now() + Duration::from_secs(120);
                while done.load(Ordering::SeqCst) < RUNS {
                    assert!(std::time::Instant::now() < deadline, "the claimers stalled");
                    let leases = {
                        let _shared = gate.read().await;
                        let now = at(clock.fetch_add(1, Ordering::SeqCst));
                        store
                            .claim(&ClaimRequest {
                                owner: &owner,
                                now,
                                expires_at: now + chrono::Duration::hours(1),
                                limit: 4,
                                routing: &routing,
                                queues: &queues,
                                run: None,
                            })
                            .await
                            .expect("claim")
                    };
                    if leases.is_empty() {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        continue;
                    }
                    for lease in &leases {
                        // The run "works" a little, so overlaps would be wide.
                        tokio::task::yield_now().await;
                        let ended = {
                            let _exclusive = gate.write().await;
                            at(clock.fetch_add(1, Ordering::SeqCst))
                        };
                        complete(&store, lease, ended).await;
                        done.fetch_add(1, Ordering::SeqCst);
                        claimed.push(lease.run_id.clone());
                    }
                }
                claimed
            }));
        }
    }
    let mut claimed: Vec<RunId> = Vec::new();
    for task in tasks {
        claimed.extend(task.await.expect("claimer"));
    }
    let distinct: HashSet<&RunId> = claimed.iter().collect();
    assert_eq!(claimed.len(), RUNS, "every run was claimed once");
    assert_eq!(distinct.len(), RUNS, "no run was claimed twice");

    let runs = stored_runs(&url, &schema).await;
    assert_eq!(runs.len(), RUNS);
    let mut by_key: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
    let mut all = Vec::with_capacity(RUNS);
    for run in &runs {
        let admitted = run
            .admitted
            .unwrap_or_else(|| panic!("{} not admitted", run.id));
        let completed = run
            .completed
            .unwrap_or_else(|| panic!("{} not completed", run.id));
        assert!(
            admitted < completed,
            "{} completed before admission",
            run.id
        );
        let key = run.key.clone().expect("every run has a key");
        by_key.entry(key).or_default().push((admitted, completed));
        all.push((admitted, completed));
    }
    assert_eq!(by_key.len(), KEYS);
    for (key, intervals) in &by_key {
        assert_eq!(
            max_overlap(intervals),
            1,
            "key {key} had two admitted, unfinished runs at once"
        );
    }
    let most = max_overlap(&all);
    assert!(
        most <= CONCURRENCY as usize,
        "the queue had {most} admitted, unfinished runs at once (limit {CONCURRENCY})"
    );
    assert!(
        most >= 2,
        "the claimers never overlapped: the test tested nothing"
    );
    drop(stores);
}

/// Three processes race 300 runs of a queue limited to 50 admissions per second (real
/// time): in the stored admission times, no window of one second holds more than 50.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_processes_never_exceed_a_rate_limit_in_any_window() {
    let Some(url) = test_url() else { return };
    let schema = TestSchema::new(&url);
    let stores = three_processes(&url, &schema).await;
    const RUNS: usize = 300;
    const LIMIT: usize = 50;
    let period = Duration::from_secs(1);
    let created = Utc::now() - chrono::Duration::seconds(10);
    create_runs(&stores[0], "rated", RUNS, |_| None, |_| 0, |_| created).await;
    let queues: Arc<[Queue]> = Arc::from(vec![
        Queue::new("rated").rate_limit(u32::try_from(LIMIT).unwrap(), period),
    ]);
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (p, store) in stores.iter().enumerate() {
        for c in 0..2 {
            let (store, queues, done) = (Arc::clone(store), Arc::clone(&queues), Arc::clone(&done));
            tasks.push(tokio::spawn(async move {
                let owner = format!("p{p}-c{c}");
                let routing = Routing::default();
                let deadline = std::time::Instant::now() + Duration::from_secs(60);
                while done.load(Ordering::SeqCst) < RUNS {
                    assert!(std::time::Instant::now() < deadline, "the claimers stalled");
                    let now = Utc::now();
                    let leases = store
                        .claim(&ClaimRequest {
                            owner: &owner,
                            now,
                            expires_at: now + chrono::Duration::hours(1),
                            limit: 8,
                            routing: &routing,
                            queues: &queues,
                            run: None,
                        })
                        .await
                        .expect("claim");
                    if leases.is_empty() {
                        tokio::time::sleep(Duration::from_millis(3)).await;
                        continue;
                    }
                    for lease in &leases {
                        complete(&store, lease, Utc::now()).await;
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }));
        }
    }
    for task in tasks {
        task.await.expect("claimer");
    }
    let mut admitted: Vec<i64> = stored_runs(&url, &schema)
        .await
        .iter()
        .map(|run| {
            run.admitted
                .unwrap_or_else(|| panic!("{} not admitted", run.id))
        })
        .collect();
    assert_eq!(admitted.len(), RUNS);
    admitted.sort_unstable();
    // A window (w - period, w] holds admissions i..=i+LIMIT only if they span less
    // than a period.
    let period_us = i64::try_from(period.as_micros()).unwrap();
    for (i, pair) in admitted.windows(LIMIT + 1).enumerate() {
        let span = pair[LIMIT] - pair[0];
        assert!(
            span >= period_us,
            "admissions {i}..={} fall within {span} µs: more than {LIMIT} in one window",
            i + LIMIT
        );
    }
    // The limit was the bound, not the claimers' speed: full windows happened.
    let full = admitted
        .windows(LIMIT)
        .filter(|w| w[LIMIT - 1] - w[0] < period_us)
        .count();
    assert!(
        full > 0,
        "no window ever filled: the limit was never tested"
    );
    drop(stores);
}

/// Not a check: measures what a claim costs with flow control against the plain claim,
/// on one connection, and prints it. Run with
/// `cargo test --release -p reprise --all-features --test it postgres_queues::claim_cost -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn claim_cost() {
    let Some(url) = test_url() else { return };
    const RUNS: usize = 3_000;
    const LIMIT: usize = 10;
    let origin = 1_790_000_000_000_000i64;
    let now = at(origin + 1_000_000_000);
    let routing = Routing::default();
    // (label, queue of the runs, the queues the claimer knows, a saturated queue too)
    let scenarios: [(&str, Option<&str>, Vec<Queue>, bool); 5] = [
        ("no queues (today's claim)", None, vec![], false),
        (
            "runs in no queue, worker knows an idle queue",
            None,
            vec![Queue::new("idle")],
            false,
        ),
        (
            "runs in no queue, next to a saturated queue",
            None,
            vec![Queue::new("full").concurrency(1)],
            true,
        ),
        (
            "runs in a queue without limits",
            Some("q"),
            vec![Queue::new("q")],
            false,
        ),
        (
            "runs in a queue, concurrency and a rate limit that never bind",
            Some("q"),
            vec![
                Queue::new("q")
                    .concurrency(1_000_000)
                    .rate_limit(1_000_000, Duration::from_secs(3_600)),
            ],
            false,
        ),
    ];
    for (label, queue, queues, saturated) in scenarios {
        let schema = TestSchema::new(&url);
        let store = PostgresStore::connect_with(
            &url,
            PostgresOptions {
                pool_size: 2,
                ..schema.options()
            },
        )
        .await
        .expect("connect");
        let q = queue.unwrap_or("q");
        create_runs(
            &store,
            q,
            RUNS,
            |i| Some(format!("k{:03}", i % 300)),
            |_| 0,
            |i| at(origin + i64::try_from(i).unwrap()),
        )
        .await;
        if queue.is_none() {
            // The same runs, in no queue.
            schema_client(&url, &schema)
                .await
                .batch_execute("UPDATE reprise_runs SET queue = NULL, queue_key = NULL")
                .await
                .expect("unqueue");
        }
        if saturated {
            let client = schema_client(&url, &schema).await;
            client
                .batch_execute(
                    "INSERT INTO reprise_runs (id, workflow, status, input, attempt, \"trigger\",
                                               created_at, updated_at, next_seq, queue)
                     SELECT 'full-' || g, 'wf', 'queued', '{}', 0, 'api', 0, 0, 1, 'full'
                       FROM generate_series(1, 2000) AS g;
                     UPDATE reprise_runs SET admitted_at = 1, lease_owner = 'other',
                                            lease_expires_at = 9000000000000000
                      WHERE id = 'full-1';
                     ANALYZE reprise_runs;",
                )
                .await
                .expect("saturate");
        }
        let started = std::time::Instant::now();
        let (mut claims, mut claimed) = (0usize, 0usize);
        loop {
            let leases = store
                .claim(&ClaimRequest {
                    owner: "bench",
                    now,
                    expires_at: now + chrono::Duration::hours(1),
                    limit: LIMIT,
                    routing: &routing,
                    queues: &queues,
                    run: None,
                })
                .await
                .expect("claim");
            claims += 1;
            if leases.is_empty() {
                break;
            }
            claimed += leases.len();
        }
        let elapsed = started.elapsed();
        assert_eq!(claimed, RUNS, "{label}");
        println!(
            "{label}: {claims} claims of up to {LIMIT} in {:.1} ms: {:.0} µs per claim, {:.1} µs per run claimed",
            elapsed.as_secs_f64() * 1e3,
            elapsed.as_secs_f64() * 1e6 / claims as f64,
            elapsed.as_secs_f64() * 1e6 / claimed as f64
        );
        drop(store);
    }
}

/// Debounced starts (`Replace`) from three processes race claimers of the queue: every
/// run ends up either admitted (and not canceled) or canceled by a later start (and never
/// admitted), never both; exactly the replaced runs are canceled, each with its
/// `run_canceled` event right after `run_created`; the key points at the last run created.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn debounced_starts_racing_claims_admit_or_cancel_each_run_once() {
    let Some(url) = test_url() else { return };
    let schema = TestSchema::new(&url);
    let stores = three_processes(&url, &schema).await;
    const STARTS: usize = 60;
    let queues: Arc<[Queue]> = Arc::from(vec![Queue::new("d")]);
    let gate_key = reprise::queue::gate_key("d", "debounce", "k");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut claimers = Vec::new();
    for (p, store) in stores.iter().enumerate() {
        let (store, queues, stop) = (Arc::clone(store), Arc::clone(&queues), Arc::clone(&stop));
        claimers.push(tokio::spawn(async move {
            let owner = format!("p{p}");
            let routing = Routing::default();
            let mut claimed = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let now = Utc::now();
                let leases = store
                    .claim(&ClaimRequest {
                        owner: &owner,
                        now,
                        expires_at: now + chrono::Duration::hours(1),
                        limit: 2,
                        routing: &routing,
                        queues: &queues,
                        run: None,
                    })
                    .await
                    .expect("claim");
                claimed.extend(leases.into_iter().map(|l| l.run_id));
                tokio::task::yield_now().await;
            }
            claimed
        }));
    }
    let mut starters = Vec::new();
    for (p, store) in stores.iter().enumerate() {
        let (store, gate_key) = (Arc::clone(store), gate_key.clone());
        starters.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for i in 0..STARTS / 3 {
                let created_at = Utc::now() - chrono::Duration::seconds(1);
                let id = format!("p{p}-{i:03}");
                let record = RunRecord {
                    id: RunId::from(id.as_str()),
                    workflow: "wf".to_owned(),
                    status: RunStatus::Queued,
                    input: json!({}),
                    output: None,
                    error: None,
                    attempt: 0,
                    trigger: Trigger::Api,
                    created_at,
                    updated_at: created_at,
                    wake_at: None,
                    next_seq: 1,
                    queue: Some(RunQueue {
                        name: "d".to_owned(),
                        key: Some("k".to_owned()),
                        priority: 0,
                        admitted_at: None,
                    }),
                };
                let error =
                    json!({ "kind": "canceled", "message": "debounced", "retryable": false });
                let gate = reprise::queue::StartGate::Debounce {
                    key: gate_key.clone(),
                    policy: reprise::queue::DebouncePolicy::Replace,
                    canceled: NewEvent {
                        kind: EventKind::RunCanceled,
                        correlation_id: None,
                        attempt: 0,
                        at: Utc::now(),
                        payload: json!({ "error": error }),
                    },
                    error,
                };
                let created = NewEvent {
                    kind: EventKind::RunCreated,
                    correlation_id: None,
                    attempt: 0,
                    at: created_at,
                    payload: json!({}),
                };
                let outcome = store
                    .create_run_gated(record, created, &gate)
                    .await
                    .expect("gated start");
                outcomes.push((id, outcome));
            }
            outcomes
        }));
    }
    let mut outcomes = Vec::new();
    for task in starters {
        outcomes.extend(task.await.expect("starter"));
    }
    stop.store(true, Ordering::SeqCst);
    let mut claimed = HashSet::new();
    for task in claimers {
        for id in task.await.expect("claimer") {
            assert!(claimed.insert(id.to_string()), "{id} claimed twice");
        }
    }
    let mut replaced = HashSet::new();
    for (id, outcome) in &outcomes {
        match outcome {
            reprise::queue::Gated::Replaced(old) => {
                assert!(replaced.insert(old.to_string()), "{old} replaced twice");
            }
            reprise::queue::Gated::Created => {}
            reprise::queue::Gated::Existing(old) => {
                panic!("a Replace start returned the existing {old} for {id}")
            }
        }
    }
    let client = schema_client(&url, &schema).await;
    let rows = client
        .query(
            "SELECT id, status, admitted_at, next_seq,
                    (SELECT string_agg(kind, ',' ORDER BY seq) FROM reprise_events e
                      WHERE e.run_id = r.id)
               FROM reprise_runs r",
            &[],
        )
        .await
        .expect("read the runs");
    assert_eq!(rows.len(), STARTS, "every Replace start created its run");
    for row in &rows {
        let id: String = row.get(0);
        let status: String = row.get(1);
        let admitted: Option<i64> = row.get(2);
        let kinds: String = row.get(4);
        if replaced.contains(&id) {
            assert_eq!(status, "canceled", "{id}");
            assert_eq!(admitted, None, "{id} was canceled and admitted");
            assert_eq!(kinds, "run_created,run_canceled", "{id}");
            assert_eq!(row.get::<_, i64>(3), 2, "{id}");
            assert!(!claimed.contains(&id), "{id} was claimed and canceled");
        } else {
            assert_eq!(status, "queued", "{id}");
            assert_eq!(kinds, "run_created", "{id}");
            assert_eq!(
                admitted.is_some(),
                claimed.contains(&id),
                "{id}: admitted exactly when claimed"
            );
        }
    }
    let holder: String = client
        .query_one(
            "SELECT run_id FROM reprise_run_keys WHERE key = $1",
            &[&gate_key],
        )
        .await
        .expect("the gate key")
        .get(0);
    assert!(!replaced.contains(&holder), "the key points at a live run");
    // A pending run that nobody replaced is the holder: every later start takes the key.
    for row in &rows {
        let id: String = row.get(0);
        if !replaced.contains(&id) && row.get::<_, Option<i64>>(2).is_none() {
            assert_eq!(id, holder, "{id} is pending but no longer holds the key");
        }
    }
    drop(stores);
}
