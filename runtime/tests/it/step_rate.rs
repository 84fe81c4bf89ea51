//! Step rate limits (`Queue::step_rate_limit`, issue 16): every live attempt of an action
//! or LLM step of a run in the queue takes a permit first; at most `limit` permits in any
//! window of `period`, over all runs and engines. Replayed steps, recorded values and
//! sub-workflow steps take none (their inner actions do); a step waiting for a permit is
//! not an attempt, shows in `Engine::queue_wait`, and cancel and drain end the wait at once.
//! Every scenario runs on the memory store and on SQLite.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reprise::event::{EventKind, RunId, RunStatus};
use reprise::llm::{ChatMessage, LlmError, LlmProvider, LlmRequest, LlmResponse, Usage};
use reprise::prelude::*;
use reprise::queue::Queue;
use reprise::store::SharedStore;
use reprise::{EngineError, StartOptions, Trigger, Worker, WorkerOptions};
use serde_json::json;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Tick {
    run: u32,
    part: u32,
    /// The first attempt fails (retryably).
    flaky: bool,
}

fn tick(run: u32, part: u32, flaky: bool) -> Tick {
    Tick { run, part, flaky }
}

/// When each `sr_tick` attempt began (system time), in any order.
#[derive(Default)]
struct Attempts(Mutex<Vec<DateTime<Utc>>>);

impl Attempts {
    fn times(&self) -> Vec<DateTime<Utc>> {
        let mut times = self.0.lock().unwrap().clone();
        times.sort();
        times
    }
    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

#[action(retries = 2, backoff = "10ms")]
async fn sr_tick(input: Tick, cx: ActionCtx) -> Result<u32, ActionError> {
    if let Ok(attempts) = cx.resource::<Attempts>() {
        attempts.0.lock().unwrap().push(Utc::now());
    }
    if input.flaky && cx.attempt() == 1 {
        return Err(ActionError::new("flaky", "the first attempt fails", true));
    }
    Ok(input.part)
}

/// A sub-workflow (a step of its caller's run): its own step is free, its action is not.
#[workflow(slug = "sr-inner")]
async fn sr_inner(input: Tick) -> Result<u32, WorkflowError> {
    Ok(sr_tick.run(input).await?)
}

/// Three steps: an action (flaky when asked), a sub-workflow with one action inside, and
/// `join!` of two actions; plus a recorded value (`ctx.now()`), which takes no permit.
#[workflow(slug = "sr-job", queue = "sr")]
async fn sr_job(ctx: Ctx, input: Tick) -> Result<u32, WorkflowError> {
    let _ = ctx.now();
    let a = sr_tick.run(tick(input.run, 1, input.flaky)).await?;
    let b = sr_inner.run(tick(input.run, 2, false)).await?;
    let (c, d) = futures::join!(
        sr_tick.run(tick(input.run, 3, false)),
        sr_tick.run(tick(input.run, 4, false))
    );
    Ok(a + b + c? + d?)
}

/// As `sr-job`, but waits for signal `go` after its first two steps.
#[workflow(slug = "sr-pausing", queue = "sr")]
async fn sr_pausing(ctx: Ctx, input: Tick) -> Result<u32, WorkflowError> {
    let a = sr_tick.run(tick(input.run, 1, input.flaky)).await?;
    let _ = ctx.now();
    let b = sr_inner.run(tick(input.run, 2, false)).await?;
    ctx.signal::<serde_json::Value>("go").recv().await?;
    let (c, d) = futures::join!(
        sr_tick.run(tick(input.run, 3, false)),
        sr_tick.run(tick(input.run, 4, false))
    );
    Ok(a + b + c? + d?)
}

/// Two actions in a row.
#[workflow(slug = "sr-two", queue = "sr")]
async fn sr_two(input: Tick) -> Result<u32, WorkflowError> {
    let a = sr_tick.run(tick(input.run, 1, false)).await?;
    let b = sr_tick.run(tick(input.run, 2, false)).await?;
    Ok(a + b)
}

/// Calls of `sr-inline`'s inline steps.
static INLINE_CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Two inline steps (`ctx.run`) in a row.
#[workflow(slug = "sr-inline", queue = "sr")]
async fn sr_inline(ctx: Ctx, input: Tick) -> Result<u32, WorkflowError> {
    let count = || async {
        INLINE_CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(1u32)
    };
    let a = ctx.run("first", count).await?;
    let b = ctx.run("second", count).await?;
    Ok(input.run + a + b)
}

/// Two LLM steps in a row.
#[workflow(slug = "sr-llm", queue = "sr")]
async fn sr_llm(input: Tick) -> Result<String, WorkflowError> {
    let a = prompt_llm(format!("one {}", input.run))
        .model("fake/model")
        .await?;
    let b = prompt_llm(format!("two {}", input.run))
        .model("fake/model")
        .await?;
    Ok(format!("{a}{b}"))
}

/// Answers `ok` and records when it was asked.
struct Echo(Mutex<Vec<DateTime<Utc>>>);

#[async_trait]
impl LlmProvider for Echo {
    async fn complete(&self, _request: LlmRequest) -> Result<LlmResponse, LlmError> {
        self.0.lock().unwrap().push(Utc::now());
        Ok(LlmResponse {
            message: ChatMessage::assistant("ok"),
            usage: Usage {
                prompt_tokens: 1,
                completion_tokens: 1,
                total_tokens: 2,
                cached_tokens: 0,
            },
            model: "fake".into(),
            finish_reason: None,
        })
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Memory,
    Sqlite,
}

fn store_of(kind: Kind) -> (SharedStore, Option<tempfile::TempDir>) {
    match kind {
        Kind::Memory => (Arc::new(reprise::store::MemoryStore::new()), None),
        Kind::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let store = reprise::store::SqliteStore::open(dir.path().join("sr.db")).unwrap();
            (Arc::new(store), Some(dir))
        }
    }
}

fn engine(store: SharedStore, attempts: &Arc<Attempts>, queue: Queue) -> Engine {
    Engine::builder()
        .store(store)
        .register(sr_job)
        .register(sr_pausing)
        .register(sr_two)
        .register(sr_inline)
        .register(sr_inner)
        .register(sr_tick)
        .shared_resource(attempts.clone())
        .queue(queue)
        .build()
        .unwrap()
}

fn spawn_worker(
    engine: &Engine,
    grace: Duration,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<reprise::WorkerReport, EngineError>>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = Worker::new(
        engine,
        WorkerOptions {
            poll_interval: Duration::from_millis(20),
            shutdown_grace: grace,
            ..WorkerOptions::default()
        },
    );
    let handle = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    (stop, handle)
}

async fn start(engine: &Engine, slug: &str, input: Tick) -> RunId {
    engine
        .start_with(
            slug,
            serde_json::to_value(input).unwrap(),
            Trigger::Api,
            StartOptions::new(),
        )
        .await
        .unwrap()
        .0
}

/// The most times in any half-open span of `span` (times sorted).
fn most_within(times: &[DateTime<Utc>], span: Duration) -> usize {
    let span = chrono::Duration::from_std(span).unwrap();
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|t| **t < times[i] + span)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// Generates `<name>_memory` and `<name>_sqlite` from `async fn <name>(kind: Kind)`.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Kind::Memory).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Kind::Sqlite).await;
                }
            )*
        }
    };
}

on_both_stores!(
    steps_of_many_runs_in_two_engines_never_exceed_the_step_rate,
    replayed_steps_and_recorded_values_take_no_permit,
    a_step_waiting_for_a_permit_is_reported_and_cancel_pause_and_drain_end_the_wait,
    llm_requests_take_step_permits,
    a_per_key_step_limit_holds_back_only_its_key,
);

const PERIOD: Duration = Duration::from_millis(500);

async fn steps_of_many_runs_in_two_engines_never_exceed_the_step_rate(kind: Kind) {
    let (store, _dir) = store_of(kind);
    let attempts = Arc::new(Attempts::default());
    let queue = Queue::new("sr").step_rate_limit(10, PERIOD);
    let first = engine(store.clone(), &attempts, queue.clone());
    let second = engine(store, &attempts, queue);
    let mut runs = Vec::new();
    for i in 0..30 {
        runs.push(start(&first, "sr-job", tick(i, 0, i % 10 == 0)).await);
    }
    let (stop_a, worker_a) = spawn_worker(&first, Duration::from_secs(5));
    let (stop_b, worker_b) = spawn_worker(&second, Duration::from_secs(5));
    for id in &runs {
        let end = first
            .wait_for_end(id, Duration::from_secs(120))
            .await
            .unwrap();
        assert_eq!(end.status, RunStatus::Completed, "{id}");
    }
    stop_a.send(()).unwrap();
    stop_b.send(()).unwrap();
    worker_a.await.unwrap().unwrap();
    worker_b.await.unwrap().unwrap();
    // 30 runs × 4 actions (one in the sub-workflow, two in `join!`), and the second
    // attempts of the 3 flaky first steps: each attempt took a permit.
    let times = attempts.times();
    assert_eq!(times.len(), 30 * 4 + 3);
    // No window of the period holds more than 10 attempt starts. (An attempt starts a
    // moment after its permit; 100 ms of the window are left for that scheduling delay.)
    let most = most_within(&times, PERIOD - Duration::from_millis(100));
    assert!(most <= 10, "{most} attempts within one window");
    // 123 permits at 10 per window need 12 windows after the first.
    let span = (times[times.len() - 1] - times[0]).to_std().unwrap();
    assert!(span >= PERIOD * 12, "all attempts within {span:?}");
    // The retries are in the log: each flaky first step records one `step_retrying`.
    for (i, id) in runs.iter().enumerate() {
        let retrying = first
            .events(id)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.event.kind == EventKind::StepRetrying)
            .count();
        assert_eq!(retrying, usize::from(i % 10 == 0), "run {i}");
    }
}

async fn replayed_steps_and_recorded_values_take_no_permit(kind: Kind) {
    let (store, _dir) = store_of(kind);
    let attempts = Arc::new(Attempts::default());
    // A window no test outlives: the store's count is every permit ever taken.
    let queue = Queue::new("sr").step_rate_limit(1000, Duration::from_secs(3600));
    let permits = |engine: &Engine| {
        let engine = engine.clone();
        let queue = queue.clone();
        async move {
            engine
                .store()
                .step_permits(&queue, None, Utc::now())
                .await
                .unwrap()
                .0
        }
    };
    let before = engine(store.clone(), &attempts, queue.clone());
    let id = start(&before, "sr-pausing", tick(1, 0, true)).await;
    before.execute(&id).await.unwrap();
    assert_eq!(
        before.get_run(&id).await.unwrap().status,
        RunStatus::Waiting
    );
    // The flaky step's two attempts and the sub-workflow's action; not the sub-workflow
    // step itself, not `ctx.now()`.
    assert_eq!(permits(&before).await, 3);
    assert_eq!(attempts.count(), 3);
    drop(before);
    // A new engine (as after a crash) replays the first three steps from the log.
    let after = engine(store, &attempts, queue.clone());
    after.signal(&id, "go", json!(true), None).await.unwrap();
    let outcome = after.execute(&id).await.unwrap();
    assert_eq!(outcome.outcome, reprise::RunOutcome::Completed(json!(10)));
    assert_eq!(
        permits(&after).await,
        5,
        "only the two `join!` actions were live"
    );
    assert_eq!(attempts.count(), 5);
}

async fn a_step_waiting_for_a_permit_is_reported_and_cancel_pause_and_drain_end_the_wait(
    kind: Kind,
) {
    let (store, _dir) = store_of(kind);
    let attempts = Arc::new(Attempts::default());
    let queue = Queue::new("sr").step_rate_limit(1, Duration::from_secs(3600));
    let engine = engine(store, &attempts, queue);
    let (stop, worker) = spawn_worker(&engine, Duration::from_secs(60));
    let first = start(&engine, "sr-two", tick(1, 0, false)).await;
    // Its first step takes the hour's permit; its second waits for the next one.
    let wait = wait_for_step_permit(&engine, &first).await;
    let permits = wait.step_permits.clone().unwrap();
    assert_eq!((permits.limit, permits.taken), (1, 1));
    let text = wait.to_string();
    assert!(
        text.contains("its steps wait for a step permit")
            && text.contains("of 1 per 1h taken")
            && text.contains("until 20"),
        "{text}"
    );
    let states = engine.queue_states().await.unwrap();
    let listed = states[0].step_permits.clone().unwrap();
    assert_eq!((listed.taken, listed.next_at), (1, permits.next_at));
    assert_eq!(attempts.count(), 1);
    // Cancel ends the wait at once; the waiting step made no attempt and recorded no
    // outcome, and the wait was no error.
    let asked = Instant::now();
    engine.cancel(&first).await.unwrap();
    let end = engine
        .wait_for_end(&first, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(end.status, RunStatus::Canceled);
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    let kinds: Vec<EventKind> = engine
        .events(&first)
        .await
        .unwrap()
        .iter()
        .map(|e| e.event.kind)
        .collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| matches!(
                k,
                EventKind::StepCompleted | EventKind::StepFailed | EventKind::StepRetrying
            ))
            .count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(attempts.count(), 1);
    // A pause ends the wait too: the run is paused, its waiting step not attempted.
    let paused = start(&engine, "sr-two", tick(3, 0, false)).await;
    wait_for_step_permit(&engine, &paused).await;
    let asked = Instant::now();
    engine.pause_run(&paused, "test").await.unwrap();
    let mut status = RunStatus::Running;
    for _ in 0..250 {
        status = engine.get_run(&paused).await.unwrap().status;
        if status == RunStatus::Paused {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, RunStatus::Paused);
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(attempts.count(), 1);
    // A drain (worker shutdown) ends the wait of a run whose first step waits.
    let second = start(&engine, "sr-two", tick(2, 0, false)).await;
    wait_for_step_permit(&engine, &second).await;
    let asked = Instant::now();
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "the worker waited {:?} for a step waiting for a permit",
        asked.elapsed()
    );
    let record = engine.get_run(&second).await.unwrap();
    assert!(!record.status.is_terminal(), "{:?}", record.status);
    assert_eq!(attempts.count(), 1);
}

/// Polls until `id` is running and `queue_wait` says its steps wait for a permit.
async fn wait_for_step_permit(engine: &Engine, id: &RunId) -> reprise::QueueWait {
    for _ in 0..500 {
        let record = engine.get_run(id).await.unwrap();
        if record.status == RunStatus::Running
            && let Some(wait) = engine.queue_wait(&record).await.unwrap()
            && wait.step_permits.is_some()
        {
            return wait;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("run {id} never waited for a step permit");
}

async fn llm_requests_take_step_permits(kind: Kind) {
    let (store, _dir) = store_of(kind);
    let queue = Queue::new("sr").step_rate_limit(2, PERIOD);
    let asked = Arc::new(Echo(Mutex::new(Vec::new())));
    let engine = Engine::builder()
        .store(store)
        .register(sr_llm)
        .llm(asked.clone())
        .default_model("fake/model")
        .queue(queue.clone())
        .build()
        .unwrap();
    let mut runs = Vec::new();
    for i in 0..3 {
        runs.push(start(&engine, "sr-llm", tick(i, 0, false)).await);
    }
    let (stop, worker) = spawn_worker(&engine, Duration::from_secs(5));
    for id in &runs {
        let end = engine
            .wait_for_end(id, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(end.status, RunStatus::Completed);
    }
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
    let mut times = asked.0.lock().unwrap().clone();
    times.sort();
    assert_eq!(times.len(), 6);
    let most = most_within(&times, PERIOD - Duration::from_millis(100));
    assert!(most <= 2, "{most} LLM requests within one window");
    let span = (times[5] - times[0]).to_std().unwrap();
    assert!(span >= PERIOD * 2, "all requests within {span:?}");
}

async fn a_per_key_step_limit_holds_back_only_its_key(kind: Kind) {
    let (store, _dir) = store_of(kind);
    let attempts = Arc::new(Attempts::default());
    let queue = Queue::new("sr")
        .key("/run")
        .step_rate_limit_per_key(1, Duration::from_secs(3600));
    let engine = engine(store, &attempts, queue);
    let (stop, worker) = spawn_worker(&engine, Duration::from_secs(60));
    // Key 1's second step waits an hour; key 2 and key 3 run their first step meanwhile.
    let one = start(&engine, "sr-two", tick(1, 0, false)).await;
    let wait = wait_for_step_permit(&engine, &one).await;
    assert_eq!(wait.step_permits.unwrap().key.as_deref(), Some("1"));
    let two = start(&engine, "sr-two", tick(2, 0, false)).await;
    let three = start(&engine, "sr-two", tick(3, 0, false)).await;
    wait_for_step_permit(&engine, &two).await;
    wait_for_step_permit(&engine, &three).await;
    assert_eq!(attempts.count(), 3);
    for id in [&one, &two, &three] {
        engine.cancel(id).await.unwrap();
    }
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
}

/// Inline steps take permits like actions (one test: the call counter is process-wide).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_steps_take_step_permits() {
    let (store, _dir) = store_of(Kind::Sqlite);
    let attempts = Arc::new(Attempts::default());
    let queue = Queue::new("sr").step_rate_limit(1, Duration::from_secs(3600));
    let engine = engine(store, &attempts, queue);
    let (stop, worker) = spawn_worker(&engine, Duration::from_secs(60));
    let id = start(&engine, "sr-inline", tick(1, 0, false)).await;
    // The first inline step takes the hour's permit; the second waits for the next.
    wait_for_step_permit(&engine, &id).await;
    assert_eq!(INLINE_CALLS.load(std::sync::atomic::Ordering::SeqCst), 1);
    engine.cancel(&id).await.unwrap();
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
    assert_eq!(INLINE_CALLS.load(std::sync::atomic::Ordering::SeqCst), 1);
}

// Bad input, and the settings as data.

#[tokio::test]
async fn bad_step_rate_limits_are_refused_naming_the_queue() {
    let build = |queue: Queue| {
        Engine::builder()
            .store(Arc::new(reprise::store::MemoryStore::new()))
            .register(sr_two)
            .register(sr_tick)
            .queue(queue)
            .build()
    };
    let err = build(Queue::new("sr").step_rate_limit(0, Duration::from_secs(1)))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("queue `sr` has a step rate limit of 0"),
        "{err}"
    );
    let err = build(Queue::new("sr").step_rate_limit(5, Duration::ZERO))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("queue `sr` has a step-rate-limit period under 1 ms"),
        "{err}"
    );
    // A per-key step limit needs a key per run: a start without one is refused.
    let engine =
        build(Queue::new("sr").step_rate_limit_per_key(5, Duration::from_secs(1))).unwrap();
    let err = engine
        .start_with(
            "sr-two",
            serde_json::to_value(tick(1, 0, false)).unwrap(),
            Trigger::Api,
            StartOptions::new(),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("queue `sr` limits or debounces per key"),
        "{err}"
    );
    assert!(
        engine
            .list_runs(&reprise::event::RunFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
}

#[test]
fn step_rate_limits_read_from_data() {
    let engine = Engine::builder()
        .store(Arc::new(reprise::store::MemoryStore::new()))
        .register(sr_two)
        .register(sr_tick)
        .queues_json(
            r#"[{"name": "sr", "step_rate_limit": {"limit": 600, "period": "1m", "per_key": false}}]"#,
        )
        .build()
        .unwrap();
    let sr = engine.queues().iter().find(|q| q.name == "sr").unwrap();
    assert_eq!(
        sr.step_rate_limit,
        Some(reprise::queue::RateLimit {
            limit: 600,
            period: Duration::from_secs(60),
            per_key: false
        })
    );
    let err = Engine::builder()
        .store(Arc::new(reprise::store::MemoryStore::new()))
        .queues_json(r#"[{"name": "sr", "step_rate_limit": {"limit": 0, "period": "1m"}}]"#)
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("queue `sr` has a step rate limit of 0"),
        "{err}"
    );
}

// Postgres: two engines, each with its own pool (as two processes), race over one queue.

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_engines_never_exceed_the_step_rate() {
    use reprise::store::{PostgresOptions, PostgresStore};
    let Some(url) = crate::postgres::test_url() else {
        return;
    };
    let schema = crate::postgres::TestSchema::new(&url);
    let attempts = Arc::new(Attempts::default());
    let queue = Queue::new("sr").step_rate_limit(10, PERIOD);
    let mut engines = Vec::new();
    for _ in 0..2 {
        let options = PostgresOptions {
            pool_size: 4,
            ..schema.options()
        };
        let store = PostgresStore::connect_with(&url, options)
            .await
            .expect("connect");
        engines.push(engine(Arc::new(store), &attempts, queue.clone()));
    }
    let mut runs = Vec::new();
    for i in 0..30 {
        runs.push(start(&engines[0], "sr-job", tick(i, 0, i % 10 == 0)).await);
    }
    let workers: Vec<_> = engines
        .iter()
        .map(|e| spawn_worker(e, Duration::from_secs(5)))
        .collect();
    for id in &runs {
        let end = engines[1]
            .wait_for_end(id, Duration::from_secs(120))
            .await
            .unwrap();
        assert_eq!(end.status, RunStatus::Completed, "{id}");
    }
    for (stop, worker) in workers {
        stop.send(()).unwrap();
        worker.await.unwrap().unwrap();
    }
    let times = attempts.times();
    assert_eq!(times.len(), 30 * 4 + 3);
    let most = most_within(&times, PERIOD - Duration::from_millis(100));
    assert!(most <= 10, "{most} attempts within one window");
    let span = (times[times.len() - 1] - times[0]).to_std().unwrap();
    assert!(span >= PERIOD * 12, "all attempts within {span:?}");
}
