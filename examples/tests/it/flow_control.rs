//! Flow control across processes (DESIGN "Flow control"): `worker` processes of the example
//! app racing each other on one SQLite file (2 workers) or one Postgres database (3
//! workers; skipped with a notice when `REPRISE_TEST_POSTGRES_URL` is unset), with the
//! limits checked afterwards from what the store recorded:
//!
//! - per-key concurrency 1 over 2,000 runs and 50 keys: the runs of one key never overlap
//!   (from the first event after `run_created` to `run_completed`, recorded timestamps);
//! - the example's own queue `llm` (8 at once, one per customer, 20 per second): never more
//!   than 8 runs between admission and end, never two of one customer, never more than 20
//!   admissions in any window of 1 s (admission times as the store keeps them);
//! - priority: with concurrency 1, runs are admitted highest priority first, FIFO within
//!   one priority, so runs started later with a higher priority go first;
//! - debounce (`replace`): a burst of starts per key makes exactly one executed run per key
//!   and window (the last start's), the others are canceled without executing;
//! - routing: a worker started with `--queues default` never executes a run of queue `llm`,
//!   and `runs get` reports those runs as unserved while only that worker lives; a worker
//!   started with `--queues llm --workflows llm-batch` executes them and nothing else.
//!
//! The test process creates the runs through an engine of its own on the same database,
//! configured with the same queues; the workers read the test queues from `REPRISE_QUEUES`
//! (CLI flags used: `worker --queues`, `--workflows`, `REPRISE_QUEUES`; `runs get` and
//! `runs get --json` for `waiting_for`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use reprise::event::{EventKind, RunFilter, RunId, RunStatus};
use reprise::store::{PostgresOptions, PostgresStore};
use reprise::{Engine, StartOptions, Trigger};
use reprise_examples::llm_batch::{self, generated_document};
use reprise_testkit::TempDb;
use serde_json::{Value, json};

use crate::many_workers::{TestSchema, test_url};

/// The variable every command of the app reads extra queue settings from.
const QUEUES_ENV: &str = "REPRISE_QUEUES";

/// The queues of these tests, besides the example's `llm`: for the workers (through
/// `REPRISE_QUEUES`) and the test's own engine alike.
const TEST_QUEUES: &str = r#"[
    {"name": "keyed", "key": "/customer", "key_concurrency": 1},
    {"name": "ranked", "concurrency": 1},
    {"name": "debounced", "key": "/customer", "debounce": {"window": "1s", "policy": "replace"}}
]"#;

/// How long a scenario may take before the test gives up.
const PATIENCE: Duration = Duration::from_secs(100);

/// One database the workers and the test share.
struct Fleet {
    /// The test's engine (creates runs, reads records and logs).
    engine: Engine,
    /// `REPRISE_DATABASE_URL` for the workers.
    url: String,
    /// Effect logs and worker stderr.
    dir: tempfile::TempDir,
    workers: Vec<Worker>,
    /// The database, deleted (SQLite) or dropped (the Postgres schema) with the fleet.
    _sqlite: Option<TempDb>,
    _postgres: Option<TestSchema>,
}

/// One `worker` process.
struct Worker {
    child: Child,
    effects: PathBuf,
    stderr: PathBuf,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn configure(builder: reprise::EngineBuilder) -> reprise::EngineBuilder {
    builder.queue(llm_batch::queue()).queues_json(TEST_QUEUES)
}

impl Fleet {
    fn sqlite() -> Fleet {
        let db = TempDb::new().unwrap();
        let engine = db.engine(configure).unwrap();
        Fleet {
            engine,
            url: db.url(),
            dir: tempfile::tempdir().unwrap(),
            workers: Vec::new(),
            _sqlite: Some(db),
            _postgres: None,
        }
    }

    /// `None` (with a notice) when `REPRISE_TEST_POSTGRES_URL` is unset.
    async fn postgres() -> Option<Fleet> {
        let url = test_url()?;
        let schema = TestSchema::new(&url);
        let store = PostgresStore::connect_with(
            &url,
            PostgresOptions {
                schema: Some(schema.name.clone()),
                pool_size: 8,
            },
        )
        .await
        .unwrap();
        let engine = configure(Engine::builder().store(Arc::new(store)).discover().unwrap())
            .build()
            .unwrap();
        Some(Fleet {
            engine,
            url: schema.child_url(),
            dir: tempfile::tempdir().unwrap(),
            workers: Vec::new(),
            _sqlite: None,
            _postgres: Some(schema),
        })
    }

    /// Starts `worker <args>` (offline: the scripted model answers `llm-batch`).
    fn spawn(&mut self, args: &[&str]) -> usize {
        let index = self.workers.len();
        let effects = self.dir.path().join(format!("effects-{index}.log"));
        let stderr = self.dir.path().join(format!("worker-{index}.stderr"));
        let child = Command::new(env!("CARGO_BIN_EXE_reprise-examples"))
            .args([
                "worker",
                "--concurrency",
                "16",
                "--lease",
                "5s",
                "--no-triggers",
            ])
            .args(args)
            .env("REPRISE_DATABASE_URL", &self.url)
            .env(QUEUES_ENV, TEST_QUEUES)
            .env("REPRISE_EXAMPLES_EFFECT_LOG", &effects)
            .env(
                "REPRISE_HOOK_SECRET",
                "flow-control-test-secret-0123456789abcdef",
            )
            .env_remove("OPENAI_BASE_URL")
            .env_remove("OPENAI_API_KEY")
            .env_remove("REPRISE_EXAMPLES_MODEL")
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        self.workers.push(Worker {
            child,
            effects,
            stderr,
        });
        index
    }

    /// Panics with the workers' stderr if one of them exited.
    fn check_alive(&mut self) {
        for i in 0..self.workers.len() {
            if let Some(status) = self.workers[i].child.try_wait().unwrap() {
                panic!("worker {i} exited on its own ({status})\n{}", self.stderr());
            }
        }
    }

    /// The last lines of every worker's stderr.
    fn stderr(&self) -> String {
        self.workers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let text = std::fs::read_to_string(&w.stderr).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(10)..].join("\n");
                format!("worker {i}:\n{tail}\n")
            })
            .collect()
    }

    /// The effect log of worker `index`: one idempotency key (`run-id/step`) per line.
    fn effects(&self, index: usize) -> Vec<String> {
        effect_lines(&self.workers[index].effects)
    }

    /// Starts `slug` with `input` and `options`, expecting a new run.
    async fn start(&self, slug: &str, input: Value, options: StartOptions) -> RunId {
        let (id, created) = self
            .engine
            .start_with(slug, input, Trigger::Cli, options)
            .await
            .unwrap();
        assert!(created, "a new run");
        id
    }

    /// Waits until every run in `ids` has ended.
    async fn until_ended(&mut self, ids: &[RunId]) {
        let deadline = Instant::now() + PATIENCE;
        let mut open: Vec<RunId> = ids.to_vec();
        while !open.is_empty() {
            self.check_alive();
            let mut still = Vec::new();
            for id in open {
                if !self.engine.get_run(&id).await.unwrap().status.is_terminal() {
                    still.push(id);
                }
            }
            open = still;
            assert!(
                Instant::now() < deadline,
                "{} of {} runs still open after {PATIENCE:?}\n{}",
                open.len(),
                ids.len(),
                self.stderr()
            );
            if !open.is_empty() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Waits until no run of `workflow` is unfinished (cheaper than `until_ended` for
    /// thousands of runs).
    async fn until_none_open(&mut self, workflow: &str, expected: usize) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            self.check_alive();
            let done = self
                .engine
                .list_runs(&RunFilter {
                    status: Some(RunStatus::Completed),
                    workflow: Some(workflow.to_owned()),
                    limit: None,
                    ..RunFilter::default()
                })
                .await
                .unwrap()
                .len();
            if done >= expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{done} of {expected} runs completed after {PATIENCE:?}\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// What the store recorded of run `id`.
    async fn recorded(&self, id: &RunId) -> Recorded {
        let run = self.engine.get_run(id).await.unwrap();
        let events = self.engine.events(id).await.unwrap();
        let first = events
            .iter()
            .find(|e| e.event.kind != EventKind::RunCreated)
            .map(|e| e.event.at);
        let completed = events
            .iter()
            .find(|e| e.event.kind == EventKind::RunCompleted)
            .map(|e| e.event.at);
        let queue = run.queue.clone();
        Recorded {
            status: run.status,
            key: queue.as_ref().and_then(|q| q.key.clone()),
            admitted_at: queue.as_ref().and_then(|q| q.admitted_at),
            first,
            completed,
            kinds: events.iter().map(|e| e.event.kind).collect(),
            error_kind: run
                .error
                .as_ref()
                .and_then(|e| e.get("kind"))
                .and_then(Value::as_str)
                .map(str::to_owned),
        }
    }

    /// Starts `runs` runs of `llm-batch` in `queue` (`None`: its own, `llm`) over
    /// `customers` customers, 16 starts in flight.
    async fn start_batch(&self, queue: Option<&str>, runs: u32, customers: u32) -> Vec<RunId> {
        futures::stream::iter(0..runs)
            .map(|i| {
                let input = serde_json::to_value(generated_document(i, customers)).unwrap();
                let options = match queue {
                    Some(queue) => StartOptions::new().queue(queue),
                    None => StartOptions::new(),
                };
                async move { (i, self.start("llm-batch", input, options).await) }
            })
            .buffer_unordered(16)
            .collect::<BTreeMap<u32, RunId>>()
            .await
            .into_values()
            .collect()
    }
}

/// A run as the store recorded it.
#[derive(Debug)]
struct Recorded {
    status: RunStatus,
    key: Option<String>,
    admitted_at: Option<DateTime<Utc>>,
    /// The first event after `run_created`: when a worker began executing it.
    first: Option<DateTime<Utc>>,
    completed: Option<DateTime<Utc>>,
    kinds: Vec<EventKind>,
    error_kind: Option<String>,
}

impl Recorded {
    /// `[first event after run_created, run_completed]` of a completed run.
    fn execution(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        match (self.first, self.completed) {
            (Some(first), Some(completed)) => (first, completed),
            _ => panic!("not a completed run: {self:?}"),
        }
    }
}

fn effect_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A run's execution: `(began, ended, run)`.
type Span<'a> = (DateTime<Utc>, DateTime<Utc>, &'a RunId);

/// Panics unless the executions of the runs of each key are disjoint in time; returns the
/// most runs (of any keys) that were executing at one moment.
fn assert_one_per_key(runs: &[(RunId, Recorded)]) -> usize {
    let mut by_key: HashMap<&str, Vec<Span<'_>>> = HashMap::new();
    for (id, run) in runs {
        let key = run.key.as_deref().expect("every run has a key");
        let (start, end) = run.execution();
        by_key.entry(key).or_default().push((start, end, id));
    }
    for (key, spans) in &mut by_key {
        spans.sort_by_key(|(start, end, _)| (*start, *end));
        for pair in spans.windows(2) {
            let ((_, prev_end, prev), (next_start, _, next)) = (pair[0], pair[1]);
            assert!(
                next_start >= prev_end,
                "key {key}: run {next} began executing at {next_start} before run {prev} \
                 ended at {prev_end}"
            );
        }
    }
    most_at_once(runs.iter().map(|(_, r)| r.execution()))
}

/// The most intervals overlapping at one moment (ends before starts at equal times).
fn most_at_once(spans: impl Iterator<Item = (DateTime<Utc>, DateTime<Utc>)>) -> usize {
    let mut points: Vec<(DateTime<Utc>, i32)> = Vec::new();
    for (start, end) in spans {
        points.push((start, 1));
        points.push((end, -1));
    }
    points.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, delta) in points {
        now += delta;
        most = most.max(now);
    }
    most as usize
}

async fn recorded_all(fleet: &Fleet, ids: &[RunId]) -> Vec<(RunId, Recorded)> {
    futures::stream::iter(ids.iter().cloned())
        .map(|id| async move {
            let run = fleet.recorded(&id).await;
            (id, run)
        })
        .buffer_unordered(16)
        .collect()
        .await
}

// ---- per-key concurrency under contention ----

/// 2,000 runs over 50 customers in queue `keyed` (per-key concurrency 1), `workers`
/// processes racing for them.
async fn per_key_concurrency_holds(mut fleet: Fleet, workers: usize, store: &str) {
    const RUNS: u32 = 2_000;
    const KEYS: u32 = 50;
    let started = Instant::now();
    let ids = fleet.start_batch(Some("keyed"), RUNS, KEYS).await;
    let enqueued = started.elapsed();
    for _ in 0..workers {
        fleet.spawn(&[]);
    }
    fleet.until_none_open("llm-batch", RUNS as usize).await;
    let ran = started.elapsed() - enqueued;
    let runs = recorded_all(&fleet, &ids).await;
    for (id, run) in &runs {
        assert_eq!(run.status, RunStatus::Completed, "run {id}: {run:?}");
        assert!(run.admitted_at.is_some(), "run {id} was never admitted");
    }
    let keys: std::collections::HashSet<_> =
        runs.iter().filter_map(|(_, r)| r.key.clone()).collect();
    assert_eq!(keys.len(), KEYS as usize);
    let most = assert_one_per_key(&runs);
    assert!(
        most <= KEYS as usize,
        "{most} runs at once with {KEYS} keys"
    );
    // Every worker took part: the race was real.
    for w in 0..workers {
        assert!(
            !fleet.effects(w).is_empty(),
            "worker {w} executed nothing\n{}",
            fleet.stderr()
        );
    }
    eprintln!(
        "per-key concurrency ({store}, {workers} workers): {RUNS} runs over {KEYS} keys \
         enqueued in {:.1} s, executed in {:.1} s; at most {most} runs at once, never two \
         of one key",
        enqueued.as_secs_f64(),
        ran.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_concurrency_holds_across_two_sqlite_workers() {
    per_key_concurrency_holds(Fleet::sqlite(), 2, "SQLite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_concurrency_holds_across_three_postgres_workers() {
    let Some(fleet) = Fleet::postgres().await else {
        return;
    };
    per_key_concurrency_holds(fleet, 3, "Postgres").await;
}

// ---- the example's queue: concurrency, per-customer concurrency, rate limit ----

/// 120 `llm-batch` runs over 12 customers through queue `llm` as the example app
/// configures it.
async fn llm_queue_limits_hold(mut fleet: Fleet, workers: usize, store: &str) {
    const RUNS: u32 = 120;
    const CUSTOMERS: u32 = 12;
    let queue = llm_batch::queue();
    let rate = queue.rate_limit.unwrap();
    let ids = fleet.start_batch(None, RUNS, CUSTOMERS).await;
    for _ in 0..workers {
        fleet.spawn(&[]);
    }
    fleet.until_none_open("llm-batch", RUNS as usize).await;
    let runs = recorded_all(&fleet, &ids).await;
    let mut admitted: Vec<DateTime<Utc>> = Vec::new();
    let mut held = Vec::new();
    for (id, run) in &runs {
        assert_eq!(run.status, RunStatus::Completed, "run {id}: {run:?}");
        let at = run.admitted_at.expect("admitted");
        admitted.push(at);
        let (start, end) = run.execution();
        assert!(at <= start, "run {id} executed before its admission");
        held.push((start, end));
    }
    assert_one_per_key(&runs);
    // Concurrency: at most 8 runs executing at any moment. (Executions, not
    // `[admitted_at, end]`: a store stamps `admitted_at` with the claim's `now`, taken before
    // the claim waits for the queue's lock, so a run's stamp may precede the end of the
    // run whose place it took, although it was admitted after that end.)
    let most = most_at_once(held.into_iter());
    assert!(
        most <= queue.concurrency.unwrap() as usize,
        "{most} runs of queue llm held a place at once"
    );
    // Rate: at most `limit` admissions in any window of `period` — the (limit+1)-th
    // admission after any admission is at least `period` later.
    admitted.sort();
    let period = chrono::Duration::from_std(rate.period).unwrap();
    let limit = rate.limit as usize;
    for (i, window) in admitted.windows(limit + 1).enumerate() {
        assert!(
            window[limit] - window[0] >= period,
            "{} admissions within {:?} starting with admission {i} at {}",
            limit + 1,
            rate.period,
            window[0]
        );
    }
    let span = (admitted[admitted.len() - 1] - admitted[0])
        .to_std()
        .unwrap();
    // 120 admissions at 20 per second need at least 5 s between the first and the last.
    assert!(span >= Duration::from_secs(5), "admitted within {span:?}");
    eprintln!(
        "queue llm ({store}, {workers} workers): {RUNS} runs admitted over {:.1} s, at most \
         {most} at once",
        span.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_llm_queue_limits_hold_across_two_sqlite_workers() {
    llm_queue_limits_hold(Fleet::sqlite(), 2, "SQLite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_llm_queue_limits_hold_across_three_postgres_workers() {
    let Some(fleet) = Fleet::postgres().await else {
        return;
    };
    llm_queue_limits_hold(fleet, 3, "Postgres").await;
}

// ---- priority ----

/// Queue `ranked` admits one run at a time: 10 runs of priority 0, then 10 of priority 5,
/// then 5 of priority 10, all created before the workers start; they must be admitted
/// (and so execute) priority 10 first, then 5, then 0, each group in the order it was
/// started.
async fn priority_then_fifo(mut fleet: Fleet, workers: usize) {
    let mut started: Vec<(i32, usize, RunId)> = Vec::new();
    for (priority, count) in [(0, 10), (5, 10), (10, 5)] {
        for _ in 0..count {
            let i = started.len();
            let doc = generated_document(i as u32, 3);
            let id = fleet
                .start(
                    "llm-batch",
                    serde_json::to_value(doc).unwrap(),
                    StartOptions::new().queue("ranked").priority(priority),
                )
                .await;
            started.push((priority, i, id));
        }
    }
    for _ in 0..workers {
        fleet.spawn(&[]);
    }
    let ids: Vec<RunId> = started.iter().map(|(_, _, id)| id.clone()).collect();
    fleet.until_ended(&ids).await;
    let mut expected = started.clone();
    expected.sort_by_key(|(priority, i, _)| (-priority, *i));
    // One at a time, so each run in the expected order began executing after the one
    // before it ended. (Execution times, not `admitted_at`: a store stamps admissions with
    // the claim's `now`, taken before the claim waits for the queue's lock.)
    let mut previous: Option<Span<'_>> = None;
    for (priority, _, id) in &expected {
        let run = fleet.recorded(id).await;
        assert_eq!(run.status, RunStatus::Completed, "run {id}: {run:?}");
        assert!(run.admitted_at.is_some(), "run {id} was never admitted");
        let (start, end) = run.execution();
        if let Some((prev_start, prev_end, prev)) = previous {
            assert!(
                start >= prev_end,
                "run {id} (priority {priority}) began executing at {start}, before run \
                 {prev} (executed {prev_start} to {prev_end}), which should go first"
            );
        }
        previous = Some((start, end, id));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_then_fifo_decides_admission_across_two_sqlite_workers() {
    priority_then_fifo(Fleet::sqlite(), 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_then_fifo_decides_admission_across_three_postgres_workers() {
    let Some(fleet) = Fleet::postgres().await else {
        return;
    };
    priority_then_fifo(fleet, 3).await;
}

// ---- debounce ----

/// Queue `debounced` (window 1 s, `replace`): two bursts of 5 starts for each of 8
/// customers, the second after the first settled. Per customer and burst exactly one run
/// executes, the burst's last; the others are canceled without executing.
async fn debounce_keeps_one_run(mut fleet: Fleet, workers: usize) {
    const CUSTOMERS: usize = 8;
    const BURST: usize = 5;
    for _ in 0..workers {
        fleet.spawn(&[]);
    }
    let mut executed = 0;
    for burst in 0..2 {
        // Each customer's burst in a tight loop, the customers side by side.
        let bursts: Vec<Vec<RunId>> = futures::future::join_all((0..CUSTOMERS).map(|c| {
            let fleet = &fleet;
            async move {
                let mut ids = Vec::new();
                for n in 0..BURST {
                    let input = json!({
                        "customer": format!("cust-{c}"),
                        "doc_id": format!("burst-{burst}-{n}"),
                        "text": "Debounced. Only the last start of a burst runs.",
                    });
                    ids.push(
                        fleet
                            .start("llm-batch", input, StartOptions::new().queue("debounced"))
                            .await,
                    );
                }
                ids
            }
        }))
        .await;
        let all: Vec<RunId> = bursts.iter().flatten().cloned().collect();
        fleet.until_ended(&all).await;
        for (c, ids) in bursts.iter().enumerate() {
            for (n, id) in ids.iter().enumerate() {
                let run = fleet.recorded(id).await;
                if n + 1 == BURST {
                    assert_eq!(
                        run.status,
                        RunStatus::Completed,
                        "customer {c}, burst {burst}: the last start runs: {run:?}"
                    );
                    executed += 1;
                } else {
                    assert_eq!(
                        run.status,
                        RunStatus::Canceled,
                        "customer {c}, burst {burst}: start {n} is replaced: {run:?}"
                    );
                    assert_eq!(run.error_kind.as_deref(), Some("canceled"), "{run:?}");
                    assert_eq!(
                        run.kinds,
                        [EventKind::RunCreated, EventKind::RunCanceled],
                        "customer {c}, burst {burst}: replaced start {n} never executed"
                    );
                }
            }
        }
    }
    assert_eq!(executed, 2 * CUSTOMERS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debounce_keeps_one_run_per_key_and_window_across_two_sqlite_workers() {
    debounce_keeps_one_run(Fleet::sqlite(), 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debounce_keeps_one_run_per_key_and_window_across_three_postgres_workers() {
    let Some(fleet) = Fleet::postgres().await else {
        return;
    };
    debounce_keeps_one_run(fleet, 3).await;
}

// ---- routing ----

/// `runs get <id>` (human, then `--json`) of the example app on `fleet`'s database.
fn runs_get(fleet: &Fleet, id: &RunId, json: bool) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_reprise-examples"));
    command
        .args(["runs", "get", &id.to_string()])
        .env("REPRISE_DATABASE_URL", &fleet.url)
        .env(QUEUES_ENV, TEST_QUEUES);
    if json {
        command.arg("--json");
    }
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "runs get exited {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn routing_keeps_llm_runs_off_default_workers(mut fleet: Fleet) {
    let default = fleet.spawn(&["--queues", "default"]);
    let llm_runs = fleet.start_batch(None, 6, 3).await;
    let plain = fleet
        .start("ten-steps", json!(1), StartOptions::new())
        .await;
    fleet.until_ended(std::slice::from_ref(&plain)).await;
    assert_eq!(
        fleet.engine.get_run(&plain).await.unwrap().status,
        RunStatus::Completed
    );
    // Several claims later, the llm runs are still untouched and reported unserved.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    fleet.check_alive();
    for id in &llm_runs {
        let run = fleet.recorded(id).await;
        assert_eq!(run.status, RunStatus::Queued, "run {id}: {run:?}");
        assert_eq!(run.admitted_at, None, "run {id} was admitted: {run:?}");
        assert_eq!(run.kinds, [EventKind::RunCreated], "run {id} executed");
    }
    let human = runs_get(&fleet, &llm_runs[0], false);
    assert!(
        human.contains("no live worker serves workflow `llm-batch` in queue `llm`"),
        "{human}"
    );
    let json: Value = serde_json::from_str(&runs_get(&fleet, &llm_runs[0], true)).unwrap();
    let unserved = json["waiting_for"]["unserved"].as_str().unwrap_or_default();
    assert!(unserved.contains("no live worker serves"), "{json:#}");

    // A worker for queue `llm` and workflow `llm-batch` only: it runs them, and nothing else.
    let llm = fleet.spawn(&["--queues", "llm", "--workflows", "llm-batch"]);
    fleet.until_ended(&llm_runs).await;
    let second_plain = fleet
        .start("ten-steps", json!(2), StartOptions::new())
        .await;
    fleet.until_ended(std::slice::from_ref(&second_plain)).await;
    for id in &llm_runs {
        assert_eq!(
            fleet.engine.get_run(id).await.unwrap().status,
            RunStatus::Completed
        );
    }
    let llm_ids: Vec<String> = llm_runs.iter().map(ToString::to_string).collect();
    let is_llm = |line: &String| llm_ids.iter().any(|id| line.starts_with(id.as_str()));
    let default_effects = fleet.effects(default);
    assert!(
        !default_effects.iter().any(is_llm),
        "the `--queues default` worker executed a run of queue llm: {default_effects:?}"
    );
    let llm_effects = fleet.effects(llm);
    assert_eq!(
        llm_effects.iter().filter(|l| is_llm(l)).count(),
        llm_runs.len(),
        "one stored summary per run: {llm_effects:?}"
    );
    assert!(
        llm_effects.iter().all(is_llm),
        "the `--queues llm --workflows llm-batch` worker executed other runs: {llm_effects:?}"
    );
    assert_eq!(
        default_effects.len(),
        20,
        "both ten-steps runs on the default worker"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_routed_to_default_never_claims_llm_runs_on_sqlite() {
    routing_keeps_llm_runs_off_default_workers(Fleet::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_routed_to_default_never_claims_llm_runs_on_postgres() {
    let Some(fleet) = Fleet::postgres().await else {
        return;
    };
    routing_keeps_llm_runs_off_default_workers(fleet).await;
}

// ---- the example in one process: output, children, crash safety, log ----

mod in_memory {
    use std::sync::Arc;

    use reprise::RunOutcome;
    use reprise::event::RunStatus;
    use reprise_examples::llm_batch::{Batch, Document, llm_batch, llm_batch_fan};
    use reprise_examples::support_model::ScriptedSupportModel;
    use reprise_testkit::crash::{self, CheckConfig};
    use reprise_testkit::{TestEnv, assert_run_snapshot};

    fn env() -> TestEnv {
        TestEnv::builder()
            .llm(ScriptedSupportModel)
            .configure(|builder| builder.queue(reprise_examples::llm_batch::queue()))
            .build()
    }

    fn report() -> Document {
        Document {
            customer: "cust-7".into(),
            doc_id: "doc-42".into(),
            text: "Quarterly report. Revenue grew 4 percent; churn fell.".into(),
            model: Some("openai/gpt-4o-mini".into()),
        }
    }

    #[tokio::test]
    async fn llm_batch_summarises_a_document_in_queue_llm_keyed_by_customer() {
        let env = env();
        let summary = env.execute(&llm_batch, report()).await.completed();
        assert_eq!(summary.summary, "Quarterly report. (8 words)");
        assert_eq!(summary.stored_at, "summaries/cust-7/doc-42.txt");
        let run = env.engine().get_run(&env.last_run()).await.unwrap();
        let queue = run.queue.expect("in a queue");
        assert_eq!(queue.name, "llm");
        assert_eq!(queue.key.as_deref(), Some("cust-7"));
    }

    #[tokio::test]
    async fn llm_batch_log() {
        let env = env();
        env.execute(&llm_batch, report()).await.completed();
        assert_run_snapshot!(env, env.last_run());
    }

    #[tokio::test]
    async fn llm_batch_fan_starts_one_child_per_document_through_the_queue() {
        let env = env();
        let report = env
            .execute(
                &llm_batch_fan,
                Batch {
                    documents: 6,
                    customers: 2,
                },
            )
            .await
            .completed();
        assert_eq!(report.summarised, 6);
        let children = env
            .engine()
            .list_runs(&reprise::event::RunFilter {
                workflow: Some("llm-batch".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(children.len(), 6);
        let mut keys: Vec<String> = children
            .iter()
            .map(|run| {
                assert_eq!(run.status, RunStatus::Completed);
                let queue = run.queue.clone().expect("in queue llm");
                assert_eq!(queue.name, "llm");
                queue.key.expect("keyed by customer")
            })
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            ["cust-0", "cust-0", "cust-0", "cust-1", "cust-1", "cust-1"]
        );
    }

    #[tokio::test]
    async fn a_document_without_a_customer_is_refused_and_creates_no_run() {
        let env = env();
        let error = env
            .engine()
            .start_json(
                "llm-batch",
                serde_json::json!({"doc_id": "d", "text": "t"}),
                reprise::Trigger::Cli,
            )
            .await
            .unwrap_err();
        assert!(error.to_string().contains("customer"), "{error}");
        let runs = env.engine().list_runs(&Default::default()).await.unwrap();
        assert!(runs.is_empty(), "{runs:?}");
    }

    fn completed(report: &crash::CheckReport) -> &serde_json::Value {
        eprintln!("{report}");
        match &report.outcome {
            RunOutcome::Completed(output) => output,
            other => panic!("expected the run to complete, it ended {other:?}"),
        }
    }

    #[test]
    fn llm_batch_survives_any_crash_in_memory() {
        let config = CheckConfig::default().configure(|builder| {
            builder
                .llm(Arc::new(ScriptedSupportModel))
                .queue(reprise_examples::llm_batch::queue())
        });
        let report = crash::assert_crash_safe(&llm_batch, report(), config);
        assert_eq!(completed(&report)["summary"], "Quarterly report. (8 words)");
        assert_eq!(report.actions, 2);
    }

    #[test]
    fn llm_batch_survives_any_crash_and_torn_write_on_sqlite() {
        let config = CheckConfig::default()
            .sqlite()
            .max_cases(32)
            .configure(|builder| {
                builder
                    .llm(Arc::new(ScriptedSupportModel))
                    .queue(reprise_examples::llm_batch::queue())
            });
        let report = crash::assert_crash_safe(&llm_batch, report(), config);
        assert_eq!(
            completed(&report)["stored_at"],
            "summaries/cust-7/doc-42.txt"
        );
    }
}
