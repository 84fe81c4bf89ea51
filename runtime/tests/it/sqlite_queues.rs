//! Flow control on SQLite under contention: two `SqliteStore`s opened on one file (two
//! writer threads and connections, as two worker processes would have) race their
//! claims on one queue. The limits must hold across both, because each claim counts,
//! admits and leases inside one write transaction of the file.

#![cfg(feature = "sqlite")]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reprise::event::{
    EventKind, NewEvent, RunId, RunQueue, RunRecord, RunStatus, RunUpdate, Trigger,
};
use reprise::queue::{ClaimRequest, Queue, Routing};
use reprise::store::{Append, Lease, SqliteOptions, SqliteStore, Store, Synchronous};
use serde_json::json;

/// A time `micros` µs after a fixed instant.
fn t(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(1_790_000_000_000_000 + micros).expect("valid time")
}

/// Two handles on one new file in `dir` (fsync at checkpoints only: the test is about
/// locking, not durability).
fn two_handles(dir: &tempfile::TempDir) -> (Arc<SqliteStore>, Arc<SqliteStore>) {
    let path = dir.path().join("reprise.db");
    let options = SqliteOptions {
        synchronous: Synchronous::Normal,
        busy_timeout: Duration::from_secs(30),
    };
    let a = SqliteStore::open_with(&path, options).expect("open the first handle");
    let b = SqliteStore::open_with(&path, options).expect("open the second handle");
    (Arc::new(a), Arc::new(b))
}

fn queued(
    id: &str,
    workflow: &str,
    at: DateTime<Utc>,
    queue: Option<(&str, Option<&str>)>,
) -> (RunRecord, NewEvent) {
    let record = RunRecord {
        id: RunId::from(id),
        workflow: workflow.to_owned(),
        status: RunStatus::Queued,
        input: json!({ "id": id }),
        output: None,
        error: None,
        attempt: 0,
        trigger: Trigger::Api,
        created_at: at,
        updated_at: at,
        wake_at: None,
        next_seq: 1,
        queue: queue.map(|(name, key)| RunQueue {
            name: name.to_owned(),
            key: key.map(str::to_owned),
            priority: 0,
            admitted_at: None,
        }),
    };
    let created = NewEvent {
        kind: EventKind::RunCreated,
        correlation_id: None,
        attempt: 0,
        at,
        payload: json!({ "workflow": workflow, "input": record.input, "trigger": "api" }),
    };
    (record, created)
}

async fn claim(
    store: &SqliteStore,
    owner: &str,
    now: i64,
    limit: usize,
    routing: &Routing,
    queues: &[Queue],
) -> Vec<Lease> {
    store
        .claim(&ClaimRequest {
            owner,
            now: t(now),
            expires_at: t(now + 3_600_000_000),
            limit,
            routing,
            queues,
            run: None,
        })
        .await
        .expect("claim")
}

/// Ends the leased run (`run_completed`, status `completed`) through `store`.
async fn complete(store: &SqliteStore, lease: &Lease, at: i64) {
    store
        .append(Append {
            run_id: lease.run_id.clone(),
            first_seq: 1,
            events: vec![NewEvent {
                kind: EventKind::RunCompleted,
                correlation_id: None,
                attempt: 1,
                at: t(at),
                payload: json!({ "output": null }),
            }],
            update: RunUpdate {
                status: Some(RunStatus::Completed),
                output: Some(serde_json::Value::Null),
                ..RunUpdate::default()
            },
            fence: Some(lease.fence),
            release: false,
        })
        .await
        .expect("complete the run");
}

/// A run held by a claimer: (run id, key, held from, held until), in logical time.
type Held = (String, String, i64, i64);

/// 2,000 runs of a queue with `key_concurrency(1)` and `concurrency(5)`, 40 keys, raced
/// by four claimers on two handles. Each run is held from just after its claim returned
/// to just before its completion was sent (an interval inside the store's own holding,
/// stamped by one logical clock): no two such intervals of one key overlap, no more than
/// five overlap at all, and every run was claimed exactly once (fence 1) and completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_handles_on_one_file_respect_key_and_queue_concurrency() {
    const RUNS: usize = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_handles(&dir);
    for i in 0..RUNS {
        let key = format!("k{}", i % 40);
        let (record, created) = queued(
            &format!("r{i:04}"),
            "wf",
            t(i as i64),
            Some(("q", Some(&key))),
        );
        let store = if i % 2 == 0 { &a } else { &b };
        store.create_run(record, created).await.unwrap();
    }
    let queues: Arc<[Queue]> = Arc::from(vec![Queue::new("q").key_concurrency(1).concurrency(5)]);
    let clock = Arc::new(AtomicI64::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let held: Arc<Mutex<Vec<Held>>> = Arc::default();
    let mut tasks = Vec::new();
    for w in 0..4 {
        let store = if w % 2 == 0 { a.clone() } else { b.clone() };
        let (queues, clock, done, held) =
            (queues.clone(), clock.clone(), done.clone(), held.clone());
        tasks.push(tokio::spawn(async move {
            let owner = format!("w{w}");
            let routing = Routing::default();
            let mut idle = 0;
            while done.load(Ordering::SeqCst) < RUNS && idle < 20_000 {
                let leases = claim(&store, &owner, 10_000_000_000, 2, &routing, &queues).await;
                if leases.is_empty() {
                    idle += 1;
                    tokio::task::yield_now().await;
                    continue;
                }
                let from = clock.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
                for lease in &leases {
                    let record = store.run(&lease.run_id).await.unwrap().unwrap();
                    let key = record.queue.unwrap().key.unwrap();
                    let until = clock.fetch_add(1, Ordering::SeqCst);
                    held.lock()
                        .unwrap()
                        .push((lease.run_id.to_string(), key, from, until));
                    complete(&store, lease, 10_000_000_001).await;
                    done.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(done.load(Ordering::SeqCst), RUNS, "every run ran");
    let held = held.lock().unwrap().clone();
    assert_eq!(held.len(), RUNS);
    // One key at a time.
    let mut by_key: HashMap<&str, Vec<(i64, i64)>> = HashMap::new();
    for (_, key, from, until) in &held {
        by_key.entry(key).or_default().push((*from, *until));
    }
    for (key, mut spans) in by_key {
        spans.sort_unstable();
        for pair in spans.windows(2) {
            assert!(
                pair[0].1 < pair[1].0,
                "two runs of key {key} at once: {pair:?}"
            );
        }
    }
    // At most five at a time: sweep the starts and ends.
    let mut edges: Vec<(i64, i32)> = held
        .iter()
        .flat_map(|(_, _, from, until)| [(*from, 1), (*until, -1)])
        .collect();
    edges.sort_unstable_by_key(|&(at, delta)| (at, delta));
    let (mut open, mut most) = (0, 0);
    for (_, delta) in edges {
        open += delta;
        most = most.max(open);
    }
    assert!(
        most <= 5,
        "{most} runs of the queue at once; the bound is 5"
    );
    // Claimed exactly once each, from the store's own records.
    for id in held.iter().map(|(id, ..)| id) {
        let record = a.run(&RunId::from(id.as_str())).await.unwrap().unwrap();
        assert_eq!(record.status, RunStatus::Completed, "{id}");
        assert!(record.queue.unwrap().admitted_at.is_some(), "{id}");
        assert_eq!(a.events(&record.id).await.unwrap().len(), 2, "{id}");
    }
    let mut ids: Vec<&str> = held.iter().map(|(id, ..)| id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), RUNS, "no run was claimed twice");
}

/// A queue limited to 4 admissions per 50 ms, raced by four claimers on two handles
/// whose clocks (an injected `now`, stepping 3 ms per claim) interleave: from the stored
/// `admitted_at`s, no window of 50 ms holds more than 4 admissions, and every run is
/// admitted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_handles_on_one_file_never_exceed_a_rate_limit() {
    const RUNS: usize = 200;
    const LIMIT: usize = 4;
    const PERIOD_US: i64 = 50_000;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_handles(&dir);
    for i in 0..RUNS {
        let (record, created) = queued(&format!("r{i:04}"), "wf", t(i as i64), Some(("q", None)));
        a.create_run(record, created).await.unwrap();
    }
    let queues: Arc<[Queue]> =
        Arc::from(vec![Queue::new("q").rate_limit(
            LIMIT as u32,
            Duration::from_micros(PERIOD_US as u64),
        )]);
    let clock = Arc::new(AtomicI64::new(1_000_000));
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for w in 0..4 {
        let store = if w % 2 == 0 { a.clone() } else { b.clone() };
        let (queues, clock, done) = (queues.clone(), clock.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let owner = format!("w{w}");
            let routing = Routing::default();
            while done.load(Ordering::SeqCst) < RUNS {
                let now = clock.fetch_add(3_000, Ordering::SeqCst);
                let leases = claim(&store, &owner, now, 3, &routing, &queues).await;
                for lease in &leases {
                    complete(&store, lease, now).await;
                    done.fetch_add(1, Ordering::SeqCst);
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut admitted: Vec<i64> = Vec::new();
    for i in 0..RUNS {
        let record = a
            .run(&RunId::from(format!("r{i:04}").as_str()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.status, RunStatus::Completed);
        let at = record.queue.unwrap().admitted_at.expect("admitted");
        admitted.push(at.timestamp_micros());
    }
    admitted.sort_unstable();
    // A window (now - period, now] holds at most LIMIT admissions: any LIMIT + 1 in a
    // row span at least a period.
    for run in admitted.windows(LIMIT + 1) {
        assert!(
            run[LIMIT] - run[0] >= PERIOD_US,
            "{} admissions within {} µs: {run:?}",
            LIMIT + 1,
            run[LIMIT] - run[0]
        );
    }
    // Every window was used: the limit, not the test, paced the admissions.
    let mut per_window: BTreeMap<i64, usize> = BTreeMap::new();
    for at in &admitted {
        *per_window.entry(at / PERIOD_US).or_default() += 1;
    }
    assert!(per_window.values().any(|&n| n == LIMIT), "{per_window:?}");
}

/// Runs of three workflows in no queue and in two queues: a claim routed to some
/// workflows and queues returns only runs it serves, over repeated claims until nothing
/// is left, and exactly the unserved runs remain unclaimed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routed_claims_never_return_an_unserved_run() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _b) = two_handles(&dir);
    let workflows = ["alpha", "beta", "gamma"];
    let queue_names = [None, Some("gpu"), Some("llm")];
    let mut n = 0;
    for round in 0..5 {
        for workflow in workflows {
            for queue in queue_names {
                let id = format!("{workflow}-{}-{round}", queue.unwrap_or("none"));
                let (record, created) = queued(&id, workflow, t(n), queue.map(|q| (q, None)));
                a.create_run(record, created).await.unwrap();
                n += 1;
            }
        }
    }
    let known = [Queue::new("gpu"), Queue::new("llm").concurrency(100)];
    let routings = [
        Routing {
            workflows: Some(vec!["alpha".into(), "gamma".into()]),
            queues: Some(vec!["default".into(), "gpu".into()]),
        },
        Routing {
            workflows: None,
            queues: Some(vec!["llm".into()]),
        },
        Routing {
            workflows: Some(vec!["beta".into()]),
            queues: None,
        },
    ];
    for routing in &routings {
        let serves = |id: &str, record: &RunRecord| {
            assert!(
                routing.serves(
                    &record.workflow,
                    record.queue.as_ref().map(|q| q.name.as_str())
                ),
                "{id} is not served by {routing:?}"
            );
        };
        let mut claimed = Vec::new();
        let mut leases = Vec::new();
        loop {
            let got = claim(&a, "w", 1_000_000, 4, routing, &known).await;
            if got.is_empty() {
                break;
            }
            for lease in got {
                let record = a.run(&lease.run_id).await.unwrap().unwrap();
                serves(lease.run_id.as_str(), &record);
                claimed.push(lease.run_id.to_string());
                leases.push(lease);
            }
        }
        // Every served run was claimed: the rest is unserved.
        let mut expected = Vec::new();
        for record in a.list_runs(&Default::default()).await.unwrap() {
            if routing.serves(
                &record.workflow,
                record.queue.as_ref().map(|q| q.name.as_str()),
            ) {
                expected.push(record.id.to_string());
            }
        }
        claimed.sort_unstable();
        expected.sort_unstable();
        assert_eq!(claimed, expected, "{routing:?}");
        // Give the runs back for the next routing (admitted runs stay admitted).
        for lease in &leases {
            a.release(lease).await.unwrap();
        }
    }
}

/// 100 waiting runs of key `A`, then one of `B` and one with no key, in a queue with
/// `key_concurrency(1)`: one claim admits the first `A` run and passes over the other 99
/// (the walk starts over with `A` excluded) to admit `B` and the keyless run; the next
/// claim, with `A` still held, admits nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_passes_over_a_long_run_of_one_blocked_key() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_handles(&dir);
    for i in 0..100 {
        let (record, created) = queued(&format!("a{i:03}"), "wf", t(i), Some(("q", Some("A"))));
        a.create_run(record, created).await.unwrap();
    }
    let (record, created) = queued("b", "wf", t(100), Some(("q", Some("B"))));
    a.create_run(record, created).await.unwrap();
    let (record, created) = queued("none", "wf", t(101), Some(("q", None)));
    a.create_run(record, created).await.unwrap();
    let queues = [Queue::new("q").key_concurrency(1)];
    let routing = Routing::default();
    let first = claim(&a, "w", 1_000_000, 10, &routing, &queues).await;
    let ids: Vec<&str> = first.iter().map(|l| l.run_id.as_str()).collect();
    assert_eq!(ids, ["a000", "b", "none"]);
    let second = claim(&b, "w", 1_000_001, 10, &routing, &queues).await;
    assert!(second.is_empty(), "{second:?}");
    complete(&a, &first[0], 1_000_002).await;
    let third = claim(&b, "w", 1_000_003, 10, &routing, &queues).await;
    let ids: Vec<&str> = third.iter().map(|l| l.run_id.as_str()).collect();
    assert_eq!(
        ids,
        ["a001"],
        "the next run of `A`, once the first has ended"
    );
}

/// What a claim costs with queues (not a check: prints µs per claim; run with
/// `cargo test -p reprise --all-features --test it -- --ignored --nocapture claim_costs`).
/// 2,000 runs wait in a queue with `key_concurrency(1)` over 10 keys, each key held by an
/// admitted run: a claim with the queue's settings walks every candidate and admits
/// none; a claim without them (or a worker serving other queues) must not walk them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn claim_costs() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _b) = two_handles(&dir);
    for i in 0..2_010 {
        let key = format!("k{}", i % 10);
        let (record, created) = queued(
            &format!("r{i:04}"),
            "wf",
            t(i as i64),
            Some(("q", Some(&key))),
        );
        a.create_run(record, created).await.unwrap();
    }
    let keyed = [Queue::new("q").key_concurrency(1)];
    let routing = Routing::default();
    let held = claim(&a, "w", 1_000_000, 100, &routing, &keyed).await;
    assert_eq!(held.len(), 10, "one per key");
    let rounds = 200;
    let time = |label: &'static str, queues: &'static [Queue]| {
        let a = a.clone();
        async move {
            let started = std::time::Instant::now();
            for _ in 0..rounds {
                let got = claim(&a, "w", 2_000_000, 10, &Routing::default(), queues).await;
                assert!(got.is_empty());
            }
            let us = started.elapsed().as_micros() / rounds;
            println!("{label}: {us} µs per claim");
        }
    };
    static KEYED: std::sync::LazyLock<[Queue; 1]> =
        std::sync::LazyLock::new(|| [Queue::new("q").key_concurrency(1)]);
    time("no queue settings, 2,000 waiting runs", &[]).await;
    time("2,000 key-blocked candidates walked", &*KEYED).await;
    // A queue with only a concurrency bound, full: the walk stops at once.
    for lease in &held {
        complete(&a, lease, 1_500_000).await;
    }
    static FULL: std::sync::LazyLock<[Queue; 1]> =
        std::sync::LazyLock::new(|| [Queue::new("q").concurrency(10)]);
    let admitted = claim(&a, "w", 1_600_000, 100, &routing, &*FULL).await;
    assert_eq!(admitted.len(), 10);
    time("full queue (concurrency 10 held)", &*FULL).await;
    // Admission throughput: claim 10, complete them, again.
    for lease in &admitted {
        complete(&a, lease, 1_700_000).await;
    }
    let started = std::time::Instant::now();
    let mut n = 0;
    loop {
        let got = claim(&a, "w", 3_000_000, 10, &routing, &*FULL).await;
        if got.is_empty() {
            break;
        }
        for lease in &got {
            complete(&a, lease, 3_000_001).await;
        }
        n += got.len();
    }
    println!(
        "admit+complete, concurrency 10: {n} runs in {} ms",
        started.elapsed().as_millis()
    );
}
