//! Flow control across runs (DESIGN "Flow control", `reprise::queue`), through the engine:
//! per-key and global concurrency (a run holds its place while it sleeps, waits, retries;
//! it frees it when it ends), sliding-window rate limits on a hand-moved clock, priority,
//! debounce (`Replace`, `Drop`), de-duplication, worker routing, `Engine::queue_wait`,
//! bad input at start, and composition with child runs, `join!`, continue-as-new, forks
//! and a worker that dies holding a queue run. Every scenario runs on the memory store and
//! on SQLite (async-store races hide in memory tests).
//!
//! Most tests drive admission by hand, as a worker's claim loop does (`Env::admit`: claim
//! through `Store::claim` with the engine's queues, execute each claimed run once, claim
//! again until nothing is claimed), so the order of admissions is deterministic. The
//! routing tests run real `Worker`s.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use reprise::event::{EventKind, RunFilter, RunId, RunStatus};
use reprise::prelude::*;
use reprise::queue::{Blocked, DebouncePolicy, Queue, Routing};
use reprise::{Clock, EngineError, ForkOptions, StartOptions, Trigger, Worker, WorkerOptions};
use serde_json::{Value, json};

/// A clock that moves only when a test says so (and by exactly a step's backoff).
struct HandClock(Mutex<DateTime<Utc>>);

impl HandClock {
    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += chrono::Duration::from_std(by).unwrap();
    }
}

impl Clock for HandClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }

    fn sleep(&self, duration: Duration) -> futures::future::BoxFuture<'static, ()> {
        self.advance(duration);
        Box::pin(async {})
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Job {
    customer: String,
    n: u32,
    /// `done`, `signal` (waits for signal `go`), `sleep` (1 h), `fail`, `retry` (fails
    /// its first attempt, retryable).
    mode: String,
}

fn job(customer: &str, n: u32, mode: &str) -> Job {
    Job {
        customer: customer.into(),
        n,
        mode: mode.into(),
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Go {
    ok: bool,
}

/// Which jobs did their work, in order: `(customer, n)`.
#[derive(Default)]
struct Seen(Mutex<Vec<(String, u32)>>);

impl Seen {
    fn all(&self) -> Vec<(String, u32)> {
        self.0.lock().unwrap().clone()
    }
}

/// The job's work: records that it ran.
#[action]
async fn qs_work(input: Job, cx: ActionCtx) -> Result<u32, ActionError> {
    if let Ok(seen) = cx.resource::<Seen>() {
        seen.0
            .lock()
            .unwrap()
            .push((input.customer.clone(), input.n));
    }
    Ok(input.n)
}

/// A job in no queue of its own (tests place it with `StartOptions::queue`): `done`,
/// `signal` (waits for signal `go`), `sleep` (1 h), `fail`, `retry` (fails its first
/// attempt, retryable), then does its work.
#[workflow(slug = "qs-job", max_attempts = 3)]
async fn qs_job(ctx: Ctx, input: Job) -> Result<u32, WorkflowError> {
    match input.mode.as_str() {
        "signal" => {
            ctx.signal::<Go>("go").recv().await?;
        }
        "sleep" => ctx.sleep(Duration::from_secs(3600)).await?,
        "fail" => return Err(WorkflowError::new("bad-job", "this job fails", false)),
        "retry" if ctx.attempt() == 1 => {
            return Err(WorkflowError::new("flaky", "try again later", true));
        }
        _ => {}
    }
    Ok(qs_work.run(input).await?)
}

/// A job in queue `qs-llm` (its own `#[workflow(queue)]`).
#[workflow(slug = "qs-llm-job", queue = "qs-llm", max_attempts = 3)]
async fn qs_llm_job(ctx: Ctx, input: Job) -> Result<u32, WorkflowError> {
    match input.mode.as_str() {
        "signal" => {
            ctx.signal::<Go>("go").recv().await?;
        }
        "sleep" => ctx.sleep(Duration::from_secs(3600)).await?,
        "fail" => return Err(WorkflowError::new("bad-job", "this job fails", false)),
        "retry" if ctx.attempt() == 1 => {
            return Err(WorkflowError::new("flaky", "try again later", true));
        }
        _ => {}
    }
    Ok(qs_work.run(input).await?)
}

/// Another workflow, for routing by workflow.
#[workflow(slug = "qs-other")]
async fn qs_other(input: Job) -> Result<u32, WorkflowError> {
    Ok(qs_work.run(input).await?)
}

/// Starts a `qs-llm` child and awaits it.
#[workflow(slug = "qs-parent")]
async fn qs_parent(input: Job) -> Result<u32, WorkflowError> {
    Ok(qs_llm_job.start(input).await?.await?)
}

/// Starts three `qs-llm` children side by side (`join!`) and sums them.
#[workflow(slug = "qs-join-parent")]
async fn qs_join_parent(input: Job) -> Result<u32, WorkflowError> {
    let with = |n: u32| Job { n, ..input.clone() };
    let (a, b, c) = futures::join!(
        qs_llm_job.start(with(1)),
        qs_llm_job.start(with(2)),
        qs_llm_job.start(with(3))
    );
    let (a, b, c) = futures::join!(a?, b?, c?);
    Ok(a? + b? + c?)
}

/// A job in queue `qs-debq` (debounced in `a_child_in_a_debounced_queue_is_not_debounced`).
#[workflow(slug = "qs-deb-job", queue = "qs-debq")]
async fn qs_deb_job(input: Job) -> Result<u32, WorkflowError> {
    Ok(qs_work.run(input).await?)
}

/// Starts two `qs-debq` children with one key and sums them.
#[workflow(slug = "qs-deb-parent")]
async fn qs_deb_parent(input: Job) -> Result<u32, WorkflowError> {
    let a = qs_deb_job.start(input.clone()).await?;
    let b = qs_deb_job
        .start(Job {
            n: input.n + 1,
            ..input
        })
        .await?;
    Ok(a.await? + b.await?)
}

/// In queue `qs-llm`: continues as new until `n == 3`.
#[workflow(slug = "qs-looper", queue = "qs-llm")]
async fn qs_looper(ctx: Ctx, input: Job) -> Result<u32, WorkflowError> {
    let n = qs_work.run(input.clone()).await?;
    if n < 3 {
        return ctx.continue_as_new(Job { n: n + 1, ..input }).await;
    }
    Ok(n)
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Memory,
    Sqlite,
}

struct Env {
    engine: Engine,
    clock: Arc<HandClock>,
    seen: Arc<Seen>,
    _dir: Option<tempfile::TempDir>,
}

fn start_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap()
}

fn store_of(kind: Kind) -> (reprise::store::SharedStore, Option<tempfile::TempDir>) {
    match kind {
        Kind::Memory => (Arc::new(reprise::store::MemoryStore::new()), None),
        Kind::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let store = reprise::store::SqliteStore::open(dir.path().join("q.db")).unwrap();
            (Arc::new(store), Some(dir))
        }
    }
}

fn builder(store: reprise::store::SharedStore, seen: &Arc<Seen>) -> reprise::EngineBuilder {
    Engine::builder()
        .store(store)
        .register(qs_job)
        .register(qs_llm_job)
        .register(qs_other)
        .register(qs_parent)
        .register(qs_join_parent)
        .register(qs_looper)
        .register(qs_deb_job)
        .register(qs_deb_parent)
        .register(qs_work)
        .shared_resource(seen.clone())
}

fn env(kind: Kind, queues: Vec<Queue>) -> Env {
    let (store, dir) = store_of(kind);
    let clock = Arc::new(HandClock(Mutex::new(start_time())));
    let seen = Arc::new(Seen::default());
    let mut b = builder(store, &seen).clock(clock.clone());
    for q in queues {
        b = b.queue(q);
    }
    Env {
        engine: b.build().unwrap(),
        clock,
        seen,
        _dir: dir,
    }
}

impl Env {
    async fn start(&self, queue: &str, input: Job) -> RunId {
        self.start_opts(input, StartOptions::new().queue(queue))
            .await
            .unwrap()
            .0
    }

    async fn start_opts(
        &self,
        input: Job,
        options: StartOptions,
    ) -> Result<(RunId, bool), EngineError> {
        self.engine
            .start_with(
                "qs-job",
                serde_json::to_value(input).unwrap(),
                Trigger::Api,
                options,
            )
            .await
    }

    /// One worker's claim loop, by hand: claims due runs through the store with the
    /// engine's queues, executes each claimed run once, and claims again until nothing is
    /// claimed. Returns the claimed runs in order.
    async fn admit(&self) -> Vec<RunId> {
        let mut claimed = Vec::new();
        for _ in 0..1000 {
            let now = self.engine.now();
            let leases = self
                .engine
                .store()
                .claim(&reprise::queue::ClaimRequest {
                    owner: self.engine.owner_id(),
                    now,
                    expires_at: now + chrono::Duration::seconds(30),
                    limit: 16,
                    routing: &Routing::default(),
                    queues: self.engine.queues(),
                    run: None,
                })
                .await
                .unwrap();
            if leases.is_empty() {
                return claimed;
            }
            for lease in leases {
                self.engine.execute(&lease.run_id).await.unwrap();
                claimed.push(lease.run_id);
            }
        }
        panic!("admission did not settle");
    }

    async fn status(&self, id: &RunId) -> RunStatus {
        self.engine.get_run(id).await.unwrap().status
    }

    async fn admitted_at(&self, id: &RunId) -> Option<DateTime<Utc>> {
        self.engine
            .get_run(id)
            .await
            .unwrap()
            .queue
            .and_then(|q| q.admitted_at)
    }

    async fn blocked(&self, id: &RunId) -> Option<Blocked> {
        let record = self.engine.get_run(id).await.unwrap();
        self.engine
            .queue_wait(&record)
            .await
            .unwrap()
            .and_then(|w| w.blocked)
    }

    async fn go(&self, id: &RunId) {
        self.engine
            .signal(id, "go", json!({"ok": true}), None)
            .await
            .unwrap();
    }

    fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    fn seen_ns(&self) -> Vec<u32> {
        self.seen.all().into_iter().map(|(_, n)| n).collect()
    }
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
    key_concurrency_holds_the_slot_while_waiting_for_a_signal,
    key_concurrency_holds_the_slot_while_sleeping,
    key_concurrency_holds_the_slot_while_retrying,
    key_concurrency_holds_the_slot_while_paused,
    key_concurrency_frees_the_slot_at_failure_and_cancel,
    global_concurrency_bounds_admitted_runs_over_all_keys,
    rate_limit_is_a_sliding_window_of_admissions,
    per_key_rate_limit_counts_each_key_alone,
    priority_orders_admission_then_due_time_then_creation,
    debounce_replace_cancels_the_pending_run_and_runs_the_last_input,
    debounce_drop_keeps_the_first_input,
    dedup_returns_the_unfinished_run_and_starts_anew_after_it_ended,
    queue_wait_names_what_holds_a_run_back,
    bad_queue_input_at_start_is_refused_and_creates_nothing,
    a_queued_child_run_goes_through_its_queue,
    children_started_in_join_are_admitted_one_key_slot_at_a_time,
    continue_as_new_keeps_the_queue,
    a_child_in_a_debounced_queue_is_not_debounced,
    a_fork_waits_in_the_original_runs_queue,
    a_queue_run_whose_worker_died_resumes_holding_its_slot,
    a_worker_without_a_queue_never_claims_its_runs,
    a_worker_routed_to_workflows_claims_only_those,
    a_worker_claims_no_run_of_a_queue_its_engine_does_not_know,
    executing_a_run_behind_another_admits_it_or_names_the_run_ahead,
    executing_a_run_admits_it_beside_a_run_ahead_of_another_key,
);

/// The `InvalidState` message of executing `id`, which must fail.
async fn refused(env: &Env, id: &RunId) -> String {
    match env.engine.execute(id).await {
        Err(EngineError::InvalidState {
            status, message, ..
        }) => {
            assert_eq!(status, "queued");
            message
        }
        other => panic!("executing {id} was not refused: {other:?}"),
    }
}

async fn executing_a_run_behind_another_admits_it_or_names_the_run_ahead(kind: Kind) {
    let env = env(kind, vec![Queue::new("qs-one").concurrency(1)]);
    let ahead = env.start("qs-one", job("c1", 1, "signal")).await;
    env.advance(Duration::from_secs(1));
    let behind = env.start("qs-one", job("c2", 2, "signal")).await;
    // Executing the run behind neither runs it nor admits the run ahead.
    let message = refused(&env, &behind).await;
    assert!(
        message.contains(&format!("run `{ahead}`")) && message.contains("ahead"),
        "{message}"
    );
    for id in [&ahead, &behind] {
        assert_eq!(env.admitted_at(id).await, None, "{id} was admitted");
        assert_eq!(env.status(id).await, RunStatus::Queued);
    }
    assert!(env.seen_ns().is_empty());
    // The run ahead is executed directly: admitted, it waits for its signal.
    env.engine.execute(&ahead).await.unwrap();
    assert_eq!(env.status(&ahead).await, RunStatus::Waiting);
    assert!(env.admitted_at(&ahead).await.is_some());
    // Now the queue's concurrency holds the other back, and the refusal says so.
    let message = refused(&env, &behind).await;
    assert!(message.contains("concurrency is used up"), "{message}");
    assert_eq!(env.admitted_at(&behind).await, None);
    // Once the run ahead has ended, the other is admitted by its own execution.
    env.go(&ahead).await;
    env.engine.execute(&ahead).await.unwrap();
    assert_eq!(env.status(&ahead).await, RunStatus::Completed);
    env.engine.execute(&behind).await.unwrap();
    assert_eq!(env.status(&behind).await, RunStatus::Waiting);
    assert!(env.admitted_at(&behind).await.is_some());
}

async fn executing_a_run_admits_it_beside_a_run_ahead_of_another_key(kind: Kind) {
    let env = env(kind, vec![key_queue()]);
    let ahead = env.start("qs-key", job("c1", 1, "signal")).await;
    env.advance(Duration::from_secs(1));
    let other_key = env.start("qs-key", job("c2", 2, "signal")).await;
    env.advance(Duration::from_secs(1));
    let same_key = env.start("qs-key", job("c1", 3, "signal")).await;
    // Room for both keys: the run asked for is admitted, the run ahead keeps waiting.
    env.engine.execute(&other_key).await.unwrap();
    assert_eq!(env.status(&other_key).await, RunStatus::Waiting);
    assert!(env.admitted_at(&other_key).await.is_some());
    assert_eq!(env.admitted_at(&ahead).await, None);
    // A run of the key whose earlier run waits is behind that one.
    let message = refused(&env, &same_key).await;
    assert!(message.contains(&format!("run `{ahead}`")), "{message}");
    assert_eq!(env.admitted_at(&ahead).await, None);
    assert_eq!(env.admitted_at(&same_key).await, None);
}

fn key_queue() -> Queue {
    Queue::new("qs-key").key("/customer").key_concurrency(1)
}

async fn key_concurrency_holds_the_slot_while_waiting_for_a_signal(kind: Kind) {
    let env = env(kind, vec![key_queue()]);
    let a = env.start("qs-key", job("c1", 1, "signal")).await;
    let a2 = env.start("qs-key", job("c1", 2, "done")).await;
    let b = env.start("qs-key", job("c2", 3, "done")).await;
    // `a` is admitted and waits for its signal; `a2` (same key) waits for `a`'s slot; `b`
    // (another key) is not held back by `a2`.
    assert_eq!(env.admit().await, vec![a.clone(), b.clone()]);
    assert_eq!(env.status(&a).await, RunStatus::Waiting);
    assert_eq!(env.status(&a2).await, RunStatus::Queued);
    assert_eq!(env.status(&b).await, RunStatus::Completed);
    assert_eq!(env.admitted_at(&a2).await, None);
    assert_eq!(
        env.blocked(&a2).await,
        Some(Blocked::KeyConcurrency {
            key: "c1".into(),
            active: 1,
            limit: 1
        })
    );
    env.go(&a).await;
    assert_eq!(env.admit().await, vec![a.clone(), a2.clone()]);
    assert_eq!(env.status(&a2).await, RunStatus::Completed);
    assert_eq!(env.seen_ns(), vec![3, 1, 2]);
}

async fn key_concurrency_holds_the_slot_while_sleeping(kind: Kind) {
    let env = env(kind, vec![key_queue()]);
    let a = env.start("qs-key", job("c1", 1, "sleep")).await;
    let a2 = env.start("qs-key", job("c1", 2, "done")).await;
    assert_eq!(env.admit().await, vec![a.clone()]);
    assert_eq!(env.status(&a).await, RunStatus::Sleeping);
    env.advance(Duration::from_secs(3599));
    assert!(env.admit().await.is_empty(), "a2 waits while a sleeps");
    assert!(matches!(
        env.blocked(&a2).await,
        Some(Blocked::KeyConcurrency { .. })
    ));
    env.advance(Duration::from_secs(1));
    assert_eq!(env.admit().await, vec![a.clone(), a2.clone()]);
    assert_eq!(env.seen_ns(), vec![1, 2]);
}

async fn key_concurrency_holds_the_slot_while_retrying(kind: Kind) {
    let env = env(kind, vec![key_queue()]);
    let a = env.start("qs-key", job("c1", 1, "retry")).await;
    let a2 = env.start("qs-key", job("c1", 2, "done")).await;
    assert_eq!(env.admit().await, vec![a.clone()]);
    let record = env.engine.get_run(&a).await.unwrap();
    assert_eq!(
        record.status,
        RunStatus::Queued,
        "a run-level retry is scheduled"
    );
    let retry_at = record.wake_at.expect("the retry is due later");
    let first_admission = env.admitted_at(&a).await.expect("a was admitted");
    assert!(matches!(
        env.blocked(&a2).await,
        Some(Blocked::KeyConcurrency { .. })
    ));
    env.clock.0.lock().unwrap().clone_from(&retry_at);
    // The retry is claimed as an admitted run (no second admission), then a2.
    assert_eq!(env.admit().await, vec![a.clone(), a2.clone()]);
    assert_eq!(env.status(&a).await, RunStatus::Completed);
    assert_eq!(env.admitted_at(&a).await, Some(first_admission));
    assert_eq!(env.seen_ns(), vec![1, 2]);
}

async fn key_concurrency_holds_the_slot_while_paused(kind: Kind) {
    let env = env(kind, vec![key_queue()]);
    let a = env.start("qs-key", job("c1", 1, "signal")).await;
    let a2 = env.start("qs-key", job("c1", 2, "done")).await;
    assert_eq!(env.admit().await, vec![a.clone()]);
    env.engine.pause_run(&a, "test").await.unwrap();
    assert_eq!(env.status(&a).await, RunStatus::Paused);
    assert!(env.admit().await.is_empty(), "a paused run keeps its slot");
    assert!(matches!(
        env.blocked(&a2).await,
        Some(Blocked::KeyConcurrency { .. })
    ));
    env.engine.unpause_run(&a, "test").await.unwrap();
    env.go(&a).await;
    assert_eq!(env.admit().await, vec![a.clone(), a2.clone()]);
    assert_eq!(env.seen_ns(), vec![1, 2]);
}

async fn key_concurrency_frees_the_slot_at_failure_and_cancel(kind: Kind) {
    let env = env(kind, vec![key_queue()]);
    let f = env.start("qs-key", job("c1", 1, "fail")).await;
    let f2 = env.start("qs-key", job("c1", 2, "done")).await;
    assert_eq!(env.admit().await, vec![f.clone(), f2.clone()]);
    assert_eq!(env.status(&f).await, RunStatus::Failed);
    assert_eq!(env.status(&f2).await, RunStatus::Completed);

    let k = env.start("qs-key", job("c2", 3, "signal")).await;
    let k2 = env.start("qs-key", job("c2", 4, "done")).await;
    assert_eq!(env.admit().await, vec![k.clone()]);
    env.engine.cancel(&k).await.unwrap();
    assert_eq!(env.status(&k).await, RunStatus::Canceled);
    assert_eq!(env.admit().await, vec![k2.clone()]);
    assert_eq!(env.status(&k2).await, RunStatus::Completed);
    assert_eq!(env.seen_ns(), vec![2, 4]);
}

async fn global_concurrency_bounds_admitted_runs_over_all_keys(kind: Kind) {
    let env = env(kind, vec![Queue::new("qs-two").concurrency(2)]);
    let runs: Vec<RunId> = futures::future::join_all(
        (0..3).map(|i| env.start("qs-two", job(&format!("c{i}"), i, "signal"))),
    )
    .await;
    let mut created = runs.clone();
    created.sort_by_key(|id| id.to_string());
    let admitted = env.admit().await;
    assert_eq!(admitted.len(), 2, "{admitted:?}");
    let third = runs.iter().find(|r| !admitted.contains(r)).unwrap().clone();
    assert_eq!(env.status(&third).await, RunStatus::Queued);
    assert_eq!(
        env.blocked(&third).await,
        Some(Blocked::Concurrency {
            active: 2,
            limit: 2
        })
    );
    let states = env.engine.queue_states().await.unwrap();
    let two = states.iter().find(|s| s.settings.name == "qs-two").unwrap();
    assert_eq!(two.active, 2);
    env.go(&admitted[0]).await;
    assert_eq!(env.admit().await, vec![admitted[0].clone(), third.clone()]);
    assert_eq!(env.status(&third).await, RunStatus::Waiting);
    assert!(env.blocked(&third).await.is_none());
}

async fn rate_limit_is_a_sliding_window_of_admissions(kind: Kind) {
    let minute = Duration::from_secs(60);
    let env = env(kind, vec![Queue::new("qs-rate").rate_limit(2, minute)]);
    let t0 = env.engine.now();
    let first = env.start("qs-rate", job("a", 0, "done")).await;
    assert_eq!(env.admit().await, vec![first.clone()]);
    env.advance(Duration::from_secs(30));
    let mut runs = Vec::new();
    for n in 1..=4 {
        runs.push(env.start("qs-rate", job("a", n, "done")).await);
    }
    // t = 30 s: one admission in the window (at 0 s), so one more.
    assert_eq!(env.admit().await, vec![runs[0].clone()]);
    assert_eq!(
        env.blocked(&runs[1]).await,
        Some(Blocked::RateLimit {
            key: None,
            limit: 2,
            period_ms: 60_000,
            next_at: Some(t0 + chrono::Duration::seconds(60)),
        })
    );
    env.advance(Duration::from_secs(29));
    assert!(
        env.admit().await.is_empty(),
        "t = 59 s: still 2 in the window"
    );
    env.advance(Duration::from_secs(1));
    // t = 60 s: the admission at 0 s left the window, the one at 30 s did not: one more,
    // not two (a token bucket refilled at 2/min would allow a burst here).
    assert_eq!(env.admit().await, vec![runs[1].clone()]);
    env.advance(Duration::from_secs(30));
    assert_eq!(env.admit().await, vec![runs[2].clone()]);
    env.advance(Duration::from_secs(30));
    assert_eq!(env.admit().await, vec![runs[3].clone()]);
    // No window of 60 s holds more than 2 admissions.
    let mut times = Vec::new();
    for id in std::iter::once(&first).chain(&runs) {
        times.push(env.admitted_at(id).await.unwrap());
    }
    times.sort();
    for (i, t) in times.iter().enumerate() {
        let in_window = times[i..]
            .iter()
            .filter(|u| **u < *t + chrono::Duration::seconds(60))
            .count();
        assert!(in_window <= 2, "{times:?}");
    }
}

async fn per_key_rate_limit_counts_each_key_alone(kind: Kind) {
    let env = env(
        kind,
        vec![
            Queue::new("qs-rate-key")
                .key("/customer")
                .rate_limit_per_key(1, Duration::from_secs(10)),
        ],
    );
    let a1 = env.start("qs-rate-key", job("c1", 1, "done")).await;
    let a2 = env.start("qs-rate-key", job("c1", 2, "done")).await;
    let b1 = env.start("qs-rate-key", job("c2", 3, "done")).await;
    assert_eq!(env.admit().await, vec![a1, b1]);
    assert!(matches!(
        env.blocked(&a2).await,
        Some(Blocked::RateLimit { key: Some(k), .. }) if k == "c1"
    ));
    env.advance(Duration::from_secs(9));
    assert!(env.admit().await.is_empty());
    env.advance(Duration::from_secs(1));
    assert_eq!(env.admit().await, vec![a2]);
}

async fn priority_orders_admission_then_due_time_then_creation(kind: Kind) {
    let env = env(kind, vec![Queue::new("qs-one").concurrency(1)]);
    let start = |n: u32, priority: i32| {
        env.start_opts(
            job("c", n, "done"),
            StartOptions::new().queue("qs-one").priority(priority),
        )
    };
    let p0a = start(1, 0).await.unwrap().0;
    let p5 = start(2, 5).await.unwrap().0;
    let p0b = start(3, 0).await.unwrap().0;
    let p1 = start(4, 1).await.unwrap().0;
    let neg = start(5, -1).await.unwrap().0;
    assert_eq!(env.admit().await, vec![p5, p1, p0a, p0b, neg]);
    assert_eq!(env.seen_ns(), vec![2, 4, 1, 3, 5]);

    // Equal priority: the earlier due time first, even when created later.
    let later = env
        .start_opts(
            job("c", 6, "done"),
            StartOptions::new()
                .queue("qs-one")
                .start_at(env.engine.now() + chrono::Duration::seconds(10)),
        )
        .await
        .unwrap()
        .0;
    env.advance(Duration::from_secs(1));
    let sooner = start(7, 0).await.unwrap().0;
    env.advance(Duration::from_secs(9));
    assert_eq!(env.admit().await, vec![sooner, later]);
}

fn debounce_queue(policy: DebouncePolicy) -> Queue {
    Queue::new("qs-deb")
        .key("/customer")
        .debounce(Duration::from_secs(5), policy)
}

async fn debounce_replace_cancels_the_pending_run_and_runs_the_last_input(kind: Kind) {
    let env = env(kind, vec![debounce_queue(DebouncePolicy::Replace)]);
    let (d1, created1) = env
        .start_opts(job("c1", 1, "done"), StartOptions::new().queue("qs-deb"))
        .await
        .unwrap();
    assert!(created1);
    env.advance(Duration::from_secs(2));
    let (d2, created2) = env
        .start_opts(job("c1", 2, "done"), StartOptions::new().queue("qs-deb"))
        .await
        .unwrap();
    assert!(created2);
    assert_ne!(d1, d2);
    // The replaced run is canceled with kind `canceled`, and its log ends so.
    let replaced = env.engine.get_run(&d1).await.unwrap();
    assert_eq!(replaced.status, RunStatus::Canceled);
    let error: WorkflowError = serde_json::from_value(replaced.error.unwrap()).unwrap();
    assert_eq!(error.kind, reprise::kinds::CANCELED);
    let events = env.engine.events(&d1).await.unwrap();
    let kinds: Vec<EventKind> = events.iter().map(|e| e.event.kind).collect();
    assert_eq!(kinds, vec![EventKind::RunCreated, EventKind::RunCanceled]);
    let e = env.start("qs-deb", job("c2", 3, "done")).await;
    // Due 5 s after its start: d2 at 7 s, e at 7 s.
    assert!(env.admit().await.is_empty());
    env.advance(Duration::from_secs(4));
    assert!(env.admit().await.is_empty(), "t = 6 s: nothing due");
    env.advance(Duration::from_secs(1));
    assert_eq!(env.admit().await, vec![d2.clone(), e]);
    // Exactly one run per key and window executed, with the last input.
    assert_eq!(env.seen_ns(), vec![2, 3]);
    assert_eq!(env.status(&d1).await, RunStatus::Canceled);
    // After the window's run was admitted, a start with the key makes a new pending run.
    let (d3, created3) = env
        .start_opts(job("c1", 4, "done"), StartOptions::new().queue("qs-deb"))
        .await
        .unwrap();
    assert!(created3);
    assert_ne!(d3, d2);
    assert_eq!(env.status(&d2).await, RunStatus::Completed);
}

async fn debounce_drop_keeps_the_first_input(kind: Kind) {
    let env = env(kind, vec![debounce_queue(DebouncePolicy::Drop)]);
    let (first, created) = env
        .start_opts(job("c1", 1, "done"), StartOptions::new().queue("qs-deb"))
        .await
        .unwrap();
    assert!(created);
    env.advance(Duration::from_secs(2));
    let (again, created_again) = env
        .start_opts(job("c1", 2, "done"), StartOptions::new().queue("qs-deb"))
        .await
        .unwrap();
    assert_eq!((again, created_again), (first.clone(), false));
    env.advance(Duration::from_secs(3));
    assert_eq!(env.admit().await, vec![first]);
    assert_eq!(env.seen_ns(), vec![1]);
    let runs = env.engine.list_runs(&RunFilter::default()).await.unwrap();
    assert_eq!(runs.len(), 1);
}

async fn dedup_returns_the_unfinished_run_and_starts_anew_after_it_ended(kind: Kind) {
    let env = env(kind, vec![Queue::new("qs-free")]);
    let opts = || StartOptions::new().queue("qs-free").dedup_id("order-7");
    let (r1, created) = env.start_opts(job("c", 1, "signal"), opts()).await.unwrap();
    assert!(created);
    let (again, created) = env.start_opts(job("c", 2, "signal"), opts()).await.unwrap();
    assert_eq!((&again, created), (&r1, false));
    assert_eq!(env.admit().await, vec![r1.clone()]);
    assert_eq!(env.status(&r1).await, RunStatus::Waiting);
    let (again, created) = env.start_opts(job("c", 3, "signal"), opts()).await.unwrap();
    assert_eq!((&again, created), (&r1, false), "admitted and unfinished");
    env.go(&r1).await;
    env.admit().await;
    assert_eq!(env.status(&r1).await, RunStatus::Completed);
    let (r2, created) = env.start_opts(job("c", 4, "done"), opts()).await.unwrap();
    assert!(created);
    assert_ne!(r2, r1);
    // Another id is another run.
    let (other, created) = env
        .start_opts(
            job("c", 5, "done"),
            StartOptions::new().queue("qs-free").dedup_id("order-8"),
        )
        .await
        .unwrap();
    assert!(created);
    assert_ne!(other, r2);
}

async fn queue_wait_names_what_holds_a_run_back(kind: Kind) {
    let env = env(
        kind,
        vec![
            key_queue(),
            Queue::new("qs-two").concurrency(1),
            Queue::new("qs-rate").rate_limit(1, Duration::from_secs(60)),
        ],
    );
    let wait_text = |id: RunId| {
        let engine = env.engine.clone();
        async move {
            let record = engine.get_run(&id).await.unwrap();
            engine
                .queue_wait(&record)
                .await
                .unwrap()
                .map(|w| w.to_string())
        }
    };
    let k1 = env.start("qs-key", job("c1", 1, "signal")).await;
    let k2 = env.start("qs-key", job("c1", 2, "done")).await;
    let c1 = env.start("qs-two", job("x", 3, "signal")).await;
    let c2 = env.start("qs-two", job("y", 4, "done")).await;
    let r1 = env.start("qs-rate", job("x", 5, "done")).await;
    let r2 = env.start("qs-rate", job("y", 6, "done")).await;
    env.admit().await;
    let _ = (k1, c1, r1);
    let text = wait_text(k2).await.unwrap();
    assert!(
        text.contains("waiting in queue `qs-key`")
            && text.contains("key `c1` has 1 of 1 runs at once"),
        "{text}"
    );
    let text = wait_text(c2).await.unwrap();
    assert!(
        text.contains("concurrency is used up (1 of 1 running)"),
        "{text}"
    );
    let text = wait_text(r2).await.unwrap();
    assert!(
        text.contains("rate limit of 1 per 1m") && text.contains("next admission at"),
        "{text}"
    );
}

async fn bad_queue_input_at_start_is_refused_and_creates_nothing(kind: Kind) {
    let env = env(
        kind,
        vec![
            key_queue(),
            Queue::new("qs-free"),
            debounce_queue(DebouncePolicy::Replace),
        ],
    );
    let start = |input: Value, options: StartOptions| {
        let engine = env.engine.clone();
        async move {
            engine
                .start_with("qs-job", input, Trigger::Api, options)
                .await
        }
    };
    let good = serde_json::to_value(job("c1", 1, "done")).unwrap();
    let cases: Vec<(&str, Value, StartOptions, &str)> = vec![
        (
            "unknown queue",
            good.clone(),
            StartOptions::new().queue("nope"),
            "unknown queue `nope`",
        ),
        (
            "missing key pointer",
            json!({"customer_id": "c1", "n": 1, "mode": "done", "customer": null}),
            StartOptions::new().queue("qs-key"),
            "`/customer`",
        ),
        (
            "object key",
            json!({"customer": {"id": 1}, "n": 1, "mode": "done"}),
            StartOptions::new().queue("qs-key"),
            "an object",
        ),
        (
            "dedup on a run in no queue",
            good.clone(),
            StartOptions::new().dedup_id("x"),
            "runs in no queue",
        ),
        (
            "priority on a run in no queue",
            good.clone(),
            StartOptions::new().priority(3),
            "runs in no queue",
        ),
        (
            "dedup with a business key",
            good.clone(),
            StartOptions::new()
                .queue("qs-free")
                .dedup_id("x")
                .key("order-1"),
            "business key",
        ),
        (
            "dedup on a debounced queue",
            good.clone(),
            StartOptions::new().queue("qs-deb").dedup_id("x"),
            "debounces",
        ),
        (
            "malformed explicit key",
            good.clone(),
            StartOptions::new().queue("qs-key").queue_key(""),
            "queue key",
        ),
    ];
    for (what, input, options, says) in cases {
        let error = start(input, options).await.unwrap_err();
        assert!(
            matches!(&error, EngineError::Serde(m) if m.contains(says)),
            "{what}: {error}"
        );
    }
    let runs = env.engine.list_runs(&RunFilter::default()).await.unwrap();
    assert!(runs.is_empty(), "nothing is created: {runs:?}");
}

fn llm_queue() -> Queue {
    Queue::new("qs-llm").key("/customer").key_concurrency(1)
}

async fn a_queued_child_run_goes_through_its_queue(kind: Kind) {
    let env = env(kind, vec![llm_queue()]);
    let blocker = env
        .engine
        .start(&qs_llm_job, job("c1", 1, "signal"))
        .await
        .unwrap();
    assert_eq!(env.admit().await, vec![blocker.clone()]);
    let parent = env
        .engine
        .start(&qs_parent, job("c1", 2, "done"))
        .await
        .unwrap();
    assert_eq!(env.admit().await, vec![parent.clone()]);
    let children = env
        .engine
        .list_runs(&RunFilter {
            workflow: Some("qs-llm-job".into()),
            status: Some(RunStatus::Queued),
            ..RunFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(children.len(), 1);
    let child = children[0].id.clone();
    assert_eq!(children[0].queue.as_ref().unwrap().name, "qs-llm");
    assert!(matches!(
        env.blocked(&child).await,
        Some(Blocked::KeyConcurrency { .. })
    ));
    env.go(&blocker).await;
    assert_eq!(
        env.admit().await,
        vec![blocker.clone(), child.clone(), parent.clone()]
    );
    assert_eq!(
        env.engine.get_run(&parent).await.unwrap().output,
        Some(json!(2))
    );
}

async fn children_started_in_join_are_admitted_one_key_slot_at_a_time(kind: Kind) {
    let env = env(kind, vec![llm_queue()]);
    let parent = env
        .engine
        .start(&qs_join_parent, job("c1", 0, "sleep"))
        .await
        .unwrap();
    env.admit().await;
    let children = |status: RunStatus| {
        let engine = env.engine.clone();
        async move {
            engine
                .list_runs(&RunFilter {
                    workflow: Some("qs-llm-job".into()),
                    status: Some(status),
                    ..RunFilter::default()
                })
                .await
                .unwrap()
                .len()
        }
    };
    assert_eq!(children(RunStatus::Sleeping).await, 1);
    assert_eq!(children(RunStatus::Queued).await, 2);
    env.advance(Duration::from_secs(3600));
    env.admit().await;
    assert_eq!(children(RunStatus::Completed).await, 1);
    assert_eq!(children(RunStatus::Sleeping).await, 1);
    assert_eq!(children(RunStatus::Queued).await, 1);
    env.advance(Duration::from_secs(3600));
    env.admit().await;
    env.advance(Duration::from_secs(3600));
    env.admit().await;
    assert_eq!(children(RunStatus::Completed).await, 3);
    assert_eq!(
        env.engine.get_run(&parent).await.unwrap().output,
        Some(json!(6))
    );
}

async fn continue_as_new_keeps_the_queue(kind: Kind) {
    let env = env(kind, vec![llm_queue()]);
    let first = env
        .engine
        .start(&qs_looper, job("c1", 1, "done"))
        .await
        .unwrap();
    env.admit().await;
    let runs = env
        .engine
        .list_runs(&RunFilter {
            workflow: Some("qs-looper".into()),
            ..RunFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(runs.len(), 3, "{runs:?}");
    for run in &runs {
        let queue = run
            .queue
            .as_ref()
            .expect("every run of the chain is queued");
        assert_eq!(
            (queue.name.as_str(), queue.key.as_deref()),
            ("qs-llm", Some("c1"))
        );
        assert!(queue.admitted_at.is_some(), "admitted through the queue");
        assert_eq!(run.status, RunStatus::Completed);
    }
    assert!(runs.iter().any(|r| r.id == first));
    assert_eq!(env.seen_ns(), vec![1, 2, 3]);
}

async fn a_child_in_a_debounced_queue_is_not_debounced(kind: Kind) {
    let env = env(
        kind,
        vec![
            Queue::new("qs-debq")
                .key("/customer")
                .key_concurrency(1)
                .debounce(Duration::from_secs(5), DebouncePolicy::Replace),
        ],
    );
    // Debouncing applies to starts from outside a run; children are admitted by the
    // queue's limits (one per key here) at once, neither delayed nor replaced.
    let parent = env
        .engine
        .start(&qs_deb_parent, job("c1", 1, "done"))
        .await
        .unwrap();
    env.admit().await;
    assert_eq!(env.status(&parent).await, RunStatus::Completed);
    assert_eq!(
        env.engine.get_run(&parent).await.unwrap().output,
        Some(json!(3))
    );
    assert_eq!(env.seen_ns(), vec![1, 2]);
}

async fn a_fork_waits_in_the_original_runs_queue(kind: Kind) {
    let env = env(kind, vec![llm_queue()]);
    let original = env
        .engine
        .start(&qs_llm_job, job("c1", 1, "signal"))
        .await
        .unwrap();
    env.admit().await;
    let fork = env
        .engine
        .fork_run(
            &original,
            ForkOptions::restart().input(serde_json::to_value(job("c1", 2, "done")).unwrap()),
        )
        .await
        .unwrap()
        .run_id;
    let record = env.engine.get_run(&fork).await.unwrap();
    let queue = record.queue.unwrap();
    assert_eq!(
        (queue.name.as_str(), queue.key.as_deref(), queue.admitted_at),
        ("qs-llm", Some("c1"), None)
    );
    assert!(env.admit().await.is_empty(), "the original holds key c1");
    assert!(matches!(
        env.blocked(&fork).await,
        Some(Blocked::KeyConcurrency { .. })
    ));
    env.go(&original).await;
    assert_eq!(env.admit().await, vec![original, fork.clone()]);
    assert_eq!(env.status(&fork).await, RunStatus::Completed);
}

async fn a_queue_run_whose_worker_died_resumes_holding_its_slot(kind: Kind) {
    let env = env(kind, vec![llm_queue()]);
    let a = env
        .engine
        .start(&qs_llm_job, job("c1", 1, "done"))
        .await
        .unwrap();
    let b = env
        .engine
        .start(&qs_llm_job, job("c1", 2, "done"))
        .await
        .unwrap();
    // Another worker claims `a` (admitting it) and dies before writing anything.
    let now = env.engine.now();
    let leases = env
        .engine
        .store()
        .claim(&reprise::queue::ClaimRequest {
            owner: "dead-worker",
            now,
            expires_at: now + chrono::Duration::seconds(30),
            limit: 16,
            routing: &Routing::default(),
            queues: env.engine.queues(),
            run: None,
        })
        .await
        .unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].run_id, a);
    let admitted = env.admitted_at(&a).await.unwrap();
    // While its lease lasts nobody runs `a`, and `b` stays behind it.
    env.advance(Duration::from_secs(20));
    assert!(env.admit().await.is_empty());
    assert!(matches!(
        env.blocked(&b).await,
        Some(Blocked::KeyConcurrency { .. })
    ));
    // The lease expires: `a` resumes as an admitted run (admitted once), then `b`.
    env.advance(Duration::from_secs(11));
    assert_eq!(env.admit().await, vec![a.clone(), b.clone()]);
    assert_eq!(env.admitted_at(&a).await, Some(admitted));
    assert_eq!(env.status(&a).await, RunStatus::Completed);
    assert_eq!(env.seen_ns(), vec![1, 2]);
}

// Worker routing, with real workers on the system clock.

fn real_engine(store: reprise::store::SharedStore, seen: &Arc<Seen>, queues: Vec<Queue>) -> Engine {
    let mut b = builder(store, seen);
    for q in queues {
        b = b.queue(q);
    }
    b.build().unwrap()
}

fn spawn_worker(
    engine: &Engine,
    workflows: Option<&[&str]>,
    queues: Option<&[&str]>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<reprise::WorkerReport, EngineError>>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let to_vec = |names: &[&str]| names.iter().map(|s| (*s).to_owned()).collect();
    let worker = Worker::new(
        engine,
        WorkerOptions {
            poll_interval: Duration::from_millis(20),
            shutdown_grace: Duration::from_secs(5),
            workflows: workflows.map(to_vec),
            queues: queues.map(to_vec),
            ..WorkerOptions::default()
        },
    );
    let handle = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    (stop, handle)
}

async fn wait_end(engine: &Engine, id: &RunId) -> RunStatus {
    engine
        .wait_for_end(id, Duration::from_secs(10))
        .await
        .unwrap()
        .status
}

/// Lets a worker poll several times (it polls every 20 ms).
async fn a_few_polls() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

async fn unserved(engine: &Engine, id: &RunId) -> Option<String> {
    let record = engine.get_run(id).await.unwrap();
    engine
        .queue_wait(&record)
        .await
        .unwrap()
        .and_then(|w| w.unserved)
}

async fn a_worker_without_a_queue_never_claims_its_runs(kind: Kind) {
    let (store, _dir) = store_of(kind);
    let seen = Arc::new(Seen::default());
    let engine = real_engine(store, &seen, vec![Queue::new("qs-gpu")]);
    let (stop, worker) = spawn_worker(&engine, None, Some(&["default"]));
    let free = engine.start(&qs_job, job("c", 1, "done")).await.unwrap();
    let gpu = engine
        .start_with(
            "qs-job",
            serde_json::to_value(job("c", 2, "done")).unwrap(),
            Trigger::Api,
            StartOptions::new().queue("qs-gpu"),
        )
        .await
        .unwrap()
        .0;
    assert_eq!(wait_end(&engine, &free).await, RunStatus::Completed);
    a_few_polls().await;
    let record = engine.get_run(&gpu).await.unwrap();
    assert_eq!(record.status, RunStatus::Queued);
    assert_eq!(record.queue.unwrap().admitted_at, None);
    let text = unserved(&engine, &gpu).await.unwrap();
    assert!(
        text.contains("no live worker serves workflow `qs-job` in queue `qs-gpu`"),
        "{text}"
    );
    // A free run a live worker serves has nothing to report.
    let later = engine
        .start_with(
            "qs-job",
            serde_json::to_value(job("c", 3, "done")).unwrap(),
            Trigger::Api,
            StartOptions::new().start_at(Utc::now() + chrono::Duration::hours(1)),
        )
        .await
        .unwrap()
        .0;
    let record = engine.get_run(&later).await.unwrap();
    assert_eq!(engine.queue_wait(&record).await.unwrap(), None);
    // A worker of the queue claims it.
    let (stop_gpu, gpu_worker) = spawn_worker(&engine, None, Some(&["qs-gpu"]));
    assert_eq!(wait_end(&engine, &gpu).await, RunStatus::Completed);
    stop.send(()).unwrap();
    stop_gpu.send(()).unwrap();
    let first = worker.await.unwrap().unwrap();
    assert_eq!(first.completed, 1, "only the free run: {first:?}");
    gpu_worker.await.unwrap().unwrap();

    // Routing names are checked.
    for (workflows, queues, says) in [
        (None, Some(&["nope"][..]), "queue `nope`"),
        (Some(&["nope"][..]), None, "workflow `nope`"),
    ] {
        let (_stop, bad) = spawn_worker(&engine, workflows, queues);
        let error = bad.await.unwrap().unwrap_err();
        assert!(
            matches!(&error, EngineError::Config(m) if m.contains(says)),
            "{error}"
        );
    }
}

async fn a_worker_routed_to_workflows_claims_only_those(kind: Kind) {
    let (store, _dir) = store_of(kind);
    let seen = Arc::new(Seen::default());
    let engine = real_engine(store, &seen, vec![]);
    let (stop, worker) = spawn_worker(&engine, Some(&["qs-other"]), None);
    let mine = engine.start(&qs_job, job("c", 1, "done")).await.unwrap();
    let other = engine.start(&qs_other, job("c", 2, "done")).await.unwrap();
    assert_eq!(wait_end(&engine, &other).await, RunStatus::Completed);
    a_few_polls().await;
    assert_eq!(
        engine.get_run(&mine).await.unwrap().status,
        RunStatus::Queued
    );
    let text = unserved(&engine, &mine).await.unwrap();
    assert!(
        text.contains("no live worker serves workflow `qs-job`"),
        "{text}"
    );
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
}

async fn a_worker_claims_no_run_of_a_queue_its_engine_does_not_know(kind: Kind) {
    let (store, _dir) = store_of(kind);
    let seen = Arc::new(Seen::default());
    let knows = real_engine(store.clone(), &seen, vec![Queue::new("qs-gpu")]);
    let blind = real_engine(store, &seen, vec![]);
    let (stop, worker) = spawn_worker(&blind, None, None);
    let gpu = knows
        .start_with(
            "qs-job",
            serde_json::to_value(job("c", 1, "done")).unwrap(),
            Trigger::Api,
            StartOptions::new().queue("qs-gpu"),
        )
        .await
        .unwrap()
        .0;
    let free = knows.start(&qs_job, job("c", 2, "done")).await.unwrap();
    assert_eq!(wait_end(&knows, &free).await, RunStatus::Completed);
    a_few_polls().await;
    assert_eq!(knows.get_run(&gpu).await.unwrap().status, RunStatus::Queued);
    let text = unserved(&blind, &gpu).await.unwrap();
    assert!(text.contains("does not know queue `qs-gpu`"), "{text}");
    let text = unserved(&knows, &gpu).await.unwrap();
    assert!(text.contains("no live worker serves"), "{text}");
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
}
