//! Engine behaviour through the macros: ids, replay after interruption, retries,
//! timeouts, panics, run-level retries, sub-workflows, parallel steps, recorded values,
//! schema checks, durable sleep.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use reprise::event::{Event, EventKind, NewEvent, RunFilter, RunId, RunRecord, RunStatus};
use reprise::prelude::*;
use reprise::store::{Append, MemoryStore, SharedStore, Store};
use reprise::{EngineError, RunOutcome, Trigger, summarize_steps};
use serde_json::json;

/// Every live action call, by correlation id, shared with the engine as a resource.
#[derive(Default)]
pub(crate) struct Calls(Mutex<Vec<String>>);

impl Calls {
    pub(crate) fn push(&self, cx: &ActionCtx) {
        self.0.lock().unwrap().push(cx.correlation_id().to_owned());
    }
    pub(crate) fn count(&self, prefix: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|id| id.starts_with(prefix))
            .count()
    }
    pub(crate) fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Num {
    pub(crate) n: i64,
}

/// Adds one.
#[action]
pub(crate) async fn add_one(input: Num, cx: ActionCtx) -> Result<Num, ActionError> {
    cx.resource::<Calls>()?.push(&cx);
    Ok(Num { n: input.n + 1 })
}

/// Doubles.
#[action]
pub(crate) async fn double(input: Num, cx: ActionCtx) -> Result<Num, ActionError> {
    cx.resource::<Calls>()?.push(&cx);
    Ok(Num { n: input.n * 2 })
}

#[workflow(slug = "arith")]
async fn arith(input: Num) -> Result<Num, WorkflowError> {
    let a = add_one.run(input).await?;
    let b = double.run(a).await?;
    let c = add_one.run(b).await?;
    Ok(c)
}

pub(crate) fn engine_on(store: SharedStore, calls: &Arc<Calls>) -> Engine {
    Engine::builder()
        .store(store)
        .discover()
        .unwrap()
        .shared_resource(calls.clone())
        .run_retry_backoff(Duration::from_millis(1))
        .build()
        .unwrap()
}

fn engine(calls: &Arc<Calls>) -> Engine {
    engine_on(Arc::new(MemoryStore::new()), calls)
}

pub(crate) async fn events_of(engine: &Engine, id: &RunId) -> Vec<Event> {
    engine.store().events(id).await.unwrap()
}

pub(crate) fn ids_of(events: &[Event], kind: EventKind) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.event.kind == kind)
        .filter_map(|e| e.event.correlation_id.clone())
        .collect()
}

#[tokio::test]
async fn sequential_steps_get_structural_ids_and_a_second_site_gets_an_ordinal() {
    let calls = Arc::new(Calls::default());
    let engine = engine(&calls);
    let id = engine.start(&arith, Num { n: 3 }).await.unwrap();
    let execution = engine.drive(&id).await.unwrap();
    assert_eq!(execution.outcome, RunOutcome::Completed(json!({ "n": 9 })));
    assert_eq!((execution.replayed, execution.executed), (0, 3));
    let events = events_of(&engine, &id).await;
    assert_eq!(
        ids_of(&events, EventKind::StepCompleted),
        ["add-one#0", "double#0", "add-one@2#0"]
    );
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (0..events.len() as u64).collect::<Vec<_>>(),
        "no gaps"
    );
    assert_eq!(events.last().unwrap().event.kind, EventKind::RunCompleted);
    assert_eq!(
        engine.get_run(&id).await.unwrap().status,
        RunStatus::Completed
    );
}

/// A store that fails every append after the first `allowed`, like a process that dies;
/// it also counts how leases are given back.
pub(crate) struct DyingStore {
    inner: SharedStore,
    allowed: AtomicUsize,
    /// Calls of `Store::release`.
    releases: AtomicUsize,
    /// The status set by each append that released its lease (`Append::release`).
    released_by_append: Mutex<Vec<Option<RunStatus>>>,
}

impl DyingStore {
    pub(crate) fn new(inner: SharedStore, allowed: usize) -> Self {
        DyingStore {
            inner,
            allowed: AtomicUsize::new(allowed),
            releases: AtomicUsize::new(0),
            released_by_append: Mutex::new(Vec::new()),
        }
    }
}

#[async_trait]
impl Store for DyingStore {
    async fn create_run(&self, record: RunRecord, created: NewEvent) -> Result<(), EngineError> {
        self.inner.create_run(record, created).await
    }
    async fn append(&self, append: Append) -> Result<(), EngineError> {
        if self
            .allowed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_err()
        {
            return Err(EngineError::Store("the process died".into()));
        }
        let released = append.release.then_some(append.update.status);
        self.inner.append(append).await?;
        if let Some(status) = released {
            self.released_by_append.lock().unwrap().push(status);
        }
        Ok(())
    }
    async fn run(&self, id: &RunId) -> Result<Option<RunRecord>, EngineError> {
        self.inner.run(id).await
    }
    async fn events(&self, id: &RunId) -> Result<Vec<Event>, EngineError> {
        self.inner.events(id).await
    }
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, EngineError> {
        self.inner.list_runs(filter).await
    }
    async fn create_run_once(
        &self,
        key: &str,
        record: RunRecord,
        created: NewEvent,
    ) -> Result<Option<RunId>, EngineError> {
        self.inner.create_run_once(key, record, created).await
    }
    async fn acquire(
        &self,
        id: &RunId,
        owner: &str,
        now: chrono::DateTime<chrono::Utc>,
        expires_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<reprise::store::Acquired, EngineError> {
        self.inner.acquire(id, owner, now, expires_at).await
    }
    async fn claim(
        &self,
        request: &reprise::queue::ClaimRequest<'_>,
    ) -> Result<Vec<reprise::store::Lease>, EngineError> {
        self.inner.claim(request).await
    }
    async fn renew(
        &self,
        lease: &reprise::store::Lease,
        expires_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<reprise::store::Lease>, EngineError> {
        self.inner.renew(lease, expires_at).await
    }
    async fn release(&self, lease: &reprise::store::Lease) -> Result<(), EngineError> {
        self.releases.fetch_add(1, Ordering::SeqCst);
        self.inner.release(lease).await
    }
    async fn request_pause(&self, id: &RunId, by: Option<&str>) -> Result<(), EngineError> {
        self.inner.request_pause(id, by).await
    }
    async fn set_workflow_pause(
        &self,
        workflow: &str,
        pause: Option<&reprise::store::WorkflowPause>,
    ) -> Result<bool, EngineError> {
        self.inner.set_workflow_pause(workflow, pause).await
    }
    async fn workflow_pauses(&self) -> Result<Vec<reprise::store::WorkflowPause>, EngineError> {
        self.inner.workflow_pauses().await
    }
    async fn request_cancel(&self, id: &RunId) -> Result<(), EngineError> {
        self.inner.request_cancel(id).await
    }
    async fn next_wake(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>, EngineError> {
        self.inner.next_wake().await
    }
    async fn cursor(&self, name: &str) -> Result<Option<serde_json::Value>, EngineError> {
        self.inner.cursor(name).await
    }
    async fn set_cursor(&self, name: &str, value: &serde_json::Value) -> Result<(), EngineError> {
        self.inner.set_cursor(name, value).await
    }
    async fn purge_runs(
        &self,
        filter: &reprise::store::PurgeFilter,
    ) -> Result<reprise::store::PurgeBatch, EngineError> {
        self.inner.purge_runs(filter).await
    }
}

#[tokio::test]
async fn an_interrupted_run_resumes_without_rerunning_recorded_steps() {
    let calls = Arc::new(Calls::default());
    let store: SharedStore = Arc::new(MemoryStore::new());
    // run_started + two step completions, then the "process" dies.
    let dying: SharedStore = Arc::new(DyingStore::new(store.clone(), 3));
    let first = engine_on(dying, &calls);
    let id = first.start(&arith, Num { n: 3 }).await.unwrap();
    let error = first.execute(&id).await.unwrap_err();
    assert!(matches!(error, EngineError::Store(_)), "{error}");
    assert_eq!(first.get_run(&id).await.unwrap().status, RunStatus::Running);
    assert_eq!(calls.all(), ["add-one#0", "double#0", "add-one@2#0"]);

    let second = engine_on(store, &calls);
    let unfinished: Vec<RunId> = second
        .unfinished_runs()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(unfinished, std::slice::from_ref(&id));
    let execution = second.drive(&id).await.unwrap();
    assert_eq!(execution.outcome, RunOutcome::Completed(json!({ "n": 9 })));
    assert_eq!((execution.replayed, execution.executed), (2, 1));
    // add-one@2 ran twice (its record was lost with the process: at-least-once), the
    // recorded two ran once.
    assert_eq!(calls.count("add-one#0"), 1);
    assert_eq!(calls.count("double#0"), 1);
    assert_eq!(calls.count("add-one@2#0"), 2);
    let events = events_of(&second, &id).await;
    assert_eq!(
        ids_of(&events, EventKind::StepCompleted),
        ["add-one#0", "double#0", "add-one@2#0"]
    );
}

static FLAKY_FAILURES: AtomicUsize = AtomicUsize::new(0);

/// Fails with a transient error while `FLAKY_FAILURES` is positive.
#[action(retries = 3, backoff = "1ms")]
async fn flaky(input: Num) -> Result<Num, ActionError> {
    if FLAKY_FAILURES
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return Err(ActionError::transient("try again"));
    }
    Ok(input)
}

/// Always fails for good.
#[action(retries = 3, backoff = "1ms")]
async fn declined(_input: Num) -> Result<Num, ActionError> {
    Err(ActionError::new(
        "card_declined",
        "the card was declined",
        false,
    ))
}

/// Slower than its timeout. (Not `slow`: `worker::slow` has that slug, and one slug
/// names one step.)
#[action(slug = "too-slow", retries = 1, backoff = "1ms", timeout = "20ms")]
async fn slow(input: Num) -> Result<Num, ActionError> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(input)
}

/// Panics.
#[action]
async fn explode(_input: Num) -> Result<Num, ActionError> {
    panic!("boom")
}

#[workflow(slug = "flaky-flow", max_attempts = 1)]
async fn flaky_flow(input: Num) -> Result<Num, WorkflowError> {
    Ok(flaky.run(input).await?)
}

#[workflow(slug = "declined-flow", max_attempts = 1)]
async fn declined_flow(input: Num) -> Result<Num, WorkflowError> {
    Ok(declined.run(input).await?)
}

#[workflow(slug = "slow-flow", max_attempts = 1)]
async fn slow_flow(input: Num) -> Result<Num, WorkflowError> {
    Ok(slow.run(input).await?)
}

#[workflow(slug = "explode-flow", max_attempts = 1)]
async fn explode_flow(input: Num) -> Result<Num, WorkflowError> {
    Ok(explode.run(input).await?)
}

#[tokio::test]
async fn transient_failures_are_retried_and_recorded() {
    let calls = Arc::new(Calls::default());
    let engine = engine(&calls);
    FLAKY_FAILURES.store(2, Ordering::SeqCst);
    let id = engine.start(&flaky_flow, Num { n: 1 }).await.unwrap();
    let execution = engine.drive(&id).await.unwrap();
    assert_eq!(execution.outcome, RunOutcome::Completed(json!({ "n": 1 })));
    let events = events_of(&engine, &id).await;
    assert_eq!(
        ids_of(&events, EventKind::StepRetrying),
        ["flaky#0", "flaky#0"]
    );
    let steps = summarize_steps(&events);
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].attempts, 3);
}

#[tokio::test]
async fn a_permanent_failure_is_not_retried_and_fails_the_run() {
    let calls = Arc::new(Calls::default());
    let engine = engine(&calls);
    let id = engine.start(&declined_flow, Num { n: 1 }).await.unwrap();
    let RunOutcome::Failed(error) = engine.drive(&id).await.unwrap().outcome else {
        panic!("expected a failure");
    };
    assert_eq!(error.kind, "card_declined");
    let events = events_of(&engine, &id).await;
    assert!(ids_of(&events, EventKind::StepRetrying).is_empty());
    assert_eq!(ids_of(&events, EventKind::StepFailed), ["declined#0"]);
    assert_eq!(engine.get_run(&id).await.unwrap().status, RunStatus::Failed);
}

#[tokio::test]
async fn an_attempt_over_its_timeout_fails_with_a_timeout_and_is_retried() {
    let calls = Arc::new(Calls::default());
    let engine = engine(&calls);
    let id = engine.start(&slow_flow, Num { n: 1 }).await.unwrap();
    let RunOutcome::Failed(error) = engine.drive(&id).await.unwrap().outcome else {
        panic!("expected a failure");
    };
    assert_eq!(error.kind, reprise::kinds::TIMEOUT);
    let events = events_of(&engine, &id).await;
    assert_eq!(ids_of(&events, EventKind::StepRetrying).len(), 1);
}

#[tokio::test]
async fn a_panicking_action_is_recorded_as_an_error_not_a_crash() {
    let calls = Arc::new(Calls::default());
    let engine = engine(&calls);
    let id = engine.start(&explode_flow, Num { n: 1 }).await.unwrap();
    let RunOutcome::Failed(error) = engine.drive(&id).await.unwrap().outcome else {
        panic!("expected a failure");
    };
    assert_eq!(error.kind, reprise::kinds::PANIC);
    assert!(error.message.contains("boom"), "{}", error.message);
    // The engine still works.
    let other = engine.start(&arith, Num { n: 0 }).await.unwrap();
    assert!(matches!(
        engine.drive(&other).await.unwrap().outcome,
        RunOutcome::Completed(_)
    ));
}

#[workflow(slug = "retry-run", max_attempts = 3)]
async fn retry_run(ctx: Ctx, input: Num) -> Result<Num, WorkflowError> {
    let a = add_one.run(input).await?;
    if ctx.attempt() < 2 {
        return Err(WorkflowError::new(
            "flaky_body",
            "first attempt fails",
            true,
        ));
    }
    Ok(double.run(a).await?)
}

#[tokio::test]
async fn a_failed_body_is_retried_at_run_level_replaying_recorded_steps() {
    let calls = Arc::new(Calls::default());
    let engine = engine(&calls);
    let id = engine.start(&retry_run, Num { n: 1 }).await.unwrap();
    let execution = engine.drive(&id).await.unwrap();
    assert_eq!(execution.outcome, RunOutcome::Completed(json!({ "n": 4 })));
    assert_eq!(
        calls.count("add-one#0"),
        1,
        "the recorded step was replayed, not re-run"
    );
    let record = engine.get_run(&id).await.unwrap();
    assert_eq!(record.attempt, 2);
    let events = events_of(&engine, &id).await;
    let started: Vec<u32> = events
        .iter()
        .filter(|e| e.event.kind == EventKind::RunStarted)
        .map(|e| e.event.attempt)
        .collect();
    assert_eq!(started, [1, 2]);
}

#[workflow(slug = "inner-flow")]
async fn inner_flow(input: Num) -> Result<Num, WorkflowError> {
    let a = add_one.run(input).await?;
    Ok(double.run(a).await?)
}

#[workflow(slug = "outer-flow")]
async fn outer_flow(input: Num) -> Result<Num, WorkflowError> {
    let a = inner_flow.run(input).await?;
    let b = inner_flow.run(a).await?;
    Ok(add_one.run(b).await?)
}

#[tokio::test]
async fn sub_workflows_run_inline_with_namespaced_ids() {
    let calls = Arc::new(Calls::default());
    let engine = engine(&calls);
    let out = engine
        .run(&outer_flow, Num { n: 0 })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out, Num { n: 7 });
    assert_eq!(
        calls.all(),
        [
            "inner-flow#0/add-one#0",
            "inner-flow#0/double#0",
            "inner-flow@2#0/add-one#0",
            "inner-flow@2#0/double#0",
            "add-one#0"
        ]
    );
}

#[workflow(slug = "parallel-flow")]
async fn parallel_flow(input: Vec<Num>) -> Result<Vec<Num>, WorkflowError> {
    let (a, b) = futures::try_join!(add_one.run(Num { n: 100 }), double.run(Num { n: 100 }))?;
    let mapped = futures::future::join_all(input.into_iter().map(|n| add_one.run(n))).await;
    let mut out = vec![a, b];
    for item in mapped {
        out.push(item?);
    }
    Ok(out)
}

#[tokio::test]
async fn join_and_join_all_number_steps_in_creation_order() {
    let calls = Arc::new(Calls::default());
    let engine = engine(&calls);
    let input: Vec<Num> = (0..5).map(|n| Num { n }).collect();
    let id = engine.start(&parallel_flow, input).await.unwrap();
    let execution = engine.drive(&id).await.unwrap();
    let RunOutcome::Completed(output) = execution.outcome else {
        panic!()
    };
    assert_eq!(
        output,
        json!([{"n":101},{"n":200},{"n":1},{"n":2},{"n":3},{"n":4},{"n":5}])
    );
    let events = events_of(&engine, &id).await;
    let mut started = ids_of(&events, EventKind::StepStarted);
    started.sort();
    assert_eq!(
        started,
        [
            "add-one#0",
            "add-one@2#0",
            "add-one@2#1",
            "add-one@2#2",
            "add-one@2#3",
            "add-one@2#4",
            "double#0"
        ]
    );
    // The input of each join_all step follows the iteration order.
    for event in events
        .iter()
        .filter(|e| e.event.kind == EventKind::StepStarted)
    {
        let id = event.event.correlation_id.as_deref().unwrap();
        if let Some(n) = id.strip_prefix("add-one@2#") {
            assert_eq!(
                event.event.payload["input"]["n"],
                json!(n.parse::<i64>().unwrap())
            );
        }
    }
}

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static MAX_IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Tracks how many calls overlap.
#[action]
async fn tracked(input: Num) -> Result<Num, ActionError> {
    let now = IN_FLIGHT.fetch_add(1, Ordering::SeqCst) + 1;
    MAX_IN_FLIGHT.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(5)).await;
    IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    Ok(input)
}

#[workflow(slug = "fan-out-flow")]
async fn fan_out_flow(input: Vec<Num>) -> Result<Vec<Num>, WorkflowError> {
    let results = reprise::fan_out(input, 3, |n| tracked.run(n)).await;
    Ok(results.into_iter().collect::<Result<Vec<_>, _>>()?)
}

#[tokio::test]
async fn fan_out_bounds_started_steps_and_keeps_item_order() {
    let calls = Arc::new(Calls::default());
    let engine = engine(&calls);
    let input: Vec<Num> = (0..20).map(|n| Num { n }).collect();
    let out = engine
        .run(&fan_out_flow, input.clone())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out, input);
    let max = MAX_IN_FLIGHT.load(Ordering::SeqCst);
    assert!(max <= 3, "at most 3 steps in flight, saw {max}");
    assert!(max >= 2, "steps did run in parallel (max {max})");
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Approval {
    approved: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Values {
    random: u64,
    uuid: String,
    now: String,
    approved: bool,
}

#[workflow(slug = "values-flow")]
async fn values_flow(ctx: Ctx, _input: Num) -> Result<Values, WorkflowError> {
    let random = ctx.random::<u64>();
    let uuid = ctx.uuid().to_string();
    let now = ctx.now().to_rfc3339();
    let approval: Approval = ctx.hook().await?;
    Ok(Values {
        random,
        uuid,
        now,
        approved: approval.approved,
    })
}

/// The token of the one open hook of run `id`.
pub(crate) async fn only_hook_token(engine: &Engine, id: &RunId) -> String {
    let events = events_of(engine, id).await;
    let hook = ids_of(&events, EventKind::HookCreated);
    assert_eq!(hook.len(), 1);
    engine.hook_token(id, &hook[0])
}

#[tokio::test]
async fn recorded_values_replay_identically_across_a_hook_wait() {
    let calls = Arc::new(Calls::default());
    let engine = engine(&calls);
    let id = engine.start(&values_flow, Num { n: 0 }).await.unwrap();
    let execution = engine.drive(&id).await.unwrap();
    assert!(matches!(execution.outcome, RunOutcome::Suspended(_)));
    assert_eq!(
        engine.get_run(&id).await.unwrap().status,
        RunStatus::Waiting
    );
    let events = events_of(&engine, &id).await;
    let recorded = |name: &str| {
        events
            .iter()
            .find(|e| e.event.correlation_id.as_deref() == Some(&format!("${name}#0")[..]))
            .map(|e| e.event.payload["output"].clone())
            .unwrap()
    };
    let (random, uuid, now) = (recorded("random"), recorded("uuid"), recorded("now"));

    let token = only_hook_token(&engine, &id).await;
    let bad = engine
        .resume_hook(&token, json!({ "approved": "yes" }))
        .await
        .unwrap_err();
    assert!(
        matches!(&bad, EngineError::Schema(v) if v.violations[0].pointer == "/approved"),
        "{bad}"
    );
    assert_eq!(
        engine.get_run(&id).await.unwrap().status,
        RunStatus::Waiting,
        "invalid payload leaves it open"
    );
    engine
        .resume_hook(&token, json!({ "approved": true }))
        .await
        .unwrap();
    let second = engine
        .resume_hook(&token, json!({ "approved": true }))
        .await
        .unwrap_err();
    assert!(second.to_string().contains("already"), "{second}");
    let RunOutcome::Completed(out) = engine.drive(&id).await.unwrap().outcome else {
        panic!()
    };
    assert_eq!(out["random"], random);
    assert_eq!(out["uuid"], uuid);
    assert_eq!(
        out["now"]
            .as_str()
            .map(|s| chrono::DateTime::parse_from_rfc3339(s).unwrap()),
        now.as_str()
            .map(|s| chrono::DateTime::parse_from_rfc3339(s).unwrap())
    );
    assert_eq!(out["approved"], json!(true));
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Bounded {
    #[schemars(range(min = 0, max = 10))]
    n: i64,
}

/// Returns a value outside its own output schema.
#[action]
async fn overflow(_input: Num) -> Result<Bounded, ActionError> {
    Ok(Bounded { n: 99 })
}

#[workflow(slug = "bounded-flow", max_attempts = 3)]
async fn bounded_flow(input: Bounded) -> Result<Bounded, WorkflowError> {
    Ok(overflow.run(Num { n: input.n }).await?)
}

#[tokio::test]
async fn invalid_workflow_input_creates_no_run_and_names_the_pointer() {
    let calls = Arc::new(Calls::default());
    let engine = engine(&calls);
    let error = engine
        .start_json("bounded-flow", json!({ "n": 11 }), Trigger::Code)
        .await
        .unwrap_err();
    let EngineError::Schema(violation) = &error else {
        panic!("{error}")
    };
    assert_eq!(violation.violations[0].pointer, "/n");
    assert!(
        engine
            .list_runs(&RunFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn an_action_output_violating_its_schema_fails_the_step_without_retry() {
    let calls = Arc::new(Calls::default());
    let engine = engine(&calls);
    let id = engine
        .start_json("bounded-flow", json!({ "n": 1 }), Trigger::Code)
        .await
        .unwrap();
    let RunOutcome::Failed(error) = engine.drive(&id).await.unwrap().outcome else {
        panic!()
    };
    assert_eq!(error.kind, reprise::kinds::SCHEMA);
    assert!(error.message.contains("/n"), "{}", error.message);
    let events = events_of(&engine, &id).await;
    let started = events
        .iter()
        .filter(|e| e.event.kind == EventKind::RunStarted)
        .count();
    assert_eq!(started, 1, "a schema violation is not retried at run level");
}

#[workflow(slug = "sleepy-flow")]
async fn sleepy_flow(ctx: Ctx, input: Num) -> Result<Num, WorkflowError> {
    let a = add_one.run(input).await?;
    ctx.sleep(Duration::from_millis(30)).await?;
    ctx.sleep("1ms").await?;
    Ok(double.run(a).await?)
}

/// Executes a run of each kind once on `store` and checks how each execution gave its
/// lease back: with its last append when the run ended, by a release of its own when it
/// suspended (a sleeping run is due again by itself).
async fn the_lease_goes_with_the_last_append_of_an_ended_run(store: SharedStore) {
    let calls = Arc::new(Calls::default());
    let counting = Arc::new(DyingStore::new(store.clone(), usize::MAX));
    let engine = engine_on(counting.clone(), &calls);
    let released = || counting.released_by_append.lock().unwrap().clone();
    let releases = || counting.releases.load(Ordering::SeqCst);
    let free = |id: RunId| {
        let store = store.clone();
        async move {
            let now = chrono::Utc::now();
            let acquired = store
                .acquire(
                    &id,
                    "someone-else",
                    now,
                    now + chrono::TimeDelta::seconds(30),
                )
                .await
                .unwrap();
            let reprise::store::Acquired::Lease(lease) = acquired else {
                panic!("the execution's lease was given back, yet: {acquired:?}");
            };
            store.release(&lease).await.unwrap();
        }
    };

    let done = engine.start(&arith, Num { n: 3 }).await.unwrap();
    let execution = engine.execute(&done).await.unwrap();
    assert_eq!(execution.outcome, RunOutcome::Completed(json!({ "n": 9 })));
    assert_eq!(released(), [Some(RunStatus::Completed)]);
    assert_eq!(releases(), 0, "no second write to give the lease back");
    free(done).await;

    let failed = engine.start(&declined_flow, Num { n: 1 }).await.unwrap();
    let execution = engine.execute(&failed).await.unwrap();
    assert!(matches!(execution.outcome, RunOutcome::Failed(_)));
    assert_eq!(
        released(),
        [Some(RunStatus::Completed), Some(RunStatus::Failed)]
    );
    assert_eq!(releases(), 0);
    free(failed).await;

    let sleeping = engine.start(&sleepy_flow, Num { n: 1 }).await.unwrap();
    let execution = engine.execute(&sleeping).await.unwrap();
    assert!(matches!(execution.outcome, RunOutcome::Suspended(_)));
    assert_eq!(
        released().len(),
        2,
        "a suspension keeps its lease past its append"
    );
    assert_eq!(
        releases(),
        1,
        "and gives it back once the execution is over"
    );
    free(sleeping.clone()).await;
    let execution = engine.drive(&sleeping).await.unwrap();
    assert_eq!(execution.outcome, RunOutcome::Completed(json!({ "n": 4 })));
    assert_eq!(released().last(), Some(&Some(RunStatus::Completed)));
}

#[tokio::test]
async fn the_lease_goes_with_the_last_append_of_an_ended_run_memory() {
    the_lease_goes_with_the_last_append_of_an_ended_run(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_goes_with_the_last_append_of_an_ended_run_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = reprise::store::SqliteStore::open(dir.path().join("reprise.db")).unwrap();
    the_lease_goes_with_the_last_append_of_an_ended_run(Arc::new(store)).await;
}

#[tokio::test]
async fn a_durable_sleep_suspends_the_run_and_replays_without_waiting_again() {
    let calls = Arc::new(Calls::default());
    let engine = engine(&calls);
    let id = engine.start(&sleepy_flow, Num { n: 1 }).await.unwrap();
    let first = engine.execute(&id).await.unwrap();
    let RunOutcome::Suspended(waits) = &first.outcome else {
        panic!("{:?}", first.outcome)
    };
    assert!(matches!(&waits[..], [reprise::Wait::Sleep { id, .. }] if id == "sleep#0"));
    let record = engine.get_run(&id).await.unwrap();
    assert_eq!(record.status, RunStatus::Sleeping);
    assert!(record.wake_at.is_some());
    let execution = engine.drive(&id).await.unwrap();
    assert_eq!(execution.outcome, RunOutcome::Completed(json!({ "n": 4 })));
    assert_eq!(calls.count("add-one#0"), 1);
    let events = events_of(&engine, &id).await;
    assert_eq!(
        ids_of(&events, EventKind::SleepCompleted),
        ["sleep#0", "sleep@2#0"]
    );
    let started = events
        .iter()
        .filter(|e| e.event.kind == EventKind::RunStarted)
        .count();
    // One execution per sleep: drive waits for each wake-up time instead of replaying early.
    assert_eq!(started, 3);
}
