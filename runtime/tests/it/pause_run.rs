//! Pausing runs and workflows (`Engine::pause_run`, `unpause_run`, `pause_workflow`,
//! `runs pause|unpause`, `POST /runs/{id}/pause|unpause`, `POST /workflows/{slug}/pause`),
//! parking at max attempts (`on_max_attempts = "pause"`) and failure handlers
//! (`on_failure = handler`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use reprise::event::{EventKind, RunFilter, RunId, RunStatus};
use reprise::prelude::*;
use reprise::store::SharedStore;
use reprise::{EngineError, FailedRun, PauseOutcome, RunOutcome, Trigger};
use serde_json::json;

use crate::worker::spawn_worker;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct P {
    n: i64,
}

fn sqlite(dir: &tempfile::TempDir) -> SharedStore {
    Arc::new(reprise::store::SqliteStore::open(dir.path().join("runs.db")).unwrap())
}

async fn wait_status(engine: &Engine, id: &RunId, status: RunStatus) {
    for _ in 0..500 {
        if engine.get_run(id).await.unwrap().status == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let record = engine.get_run(id).await.unwrap();
    panic!("run {id} is {} after 5 s, expected {status}", record.status);
}

async fn kinds(engine: &Engine, id: &RunId) -> Vec<EventKind> {
    engine
        .events(id)
        .await
        .unwrap()
        .iter()
        .map(|e| e.event.kind)
        .collect()
}

// --- a sleeping run, paused, under two racing workers --------------------------------

static NAP_BEFORE: AtomicU32 = AtomicU32::new(0);
static NAP_AFTER: AtomicU32 = AtomicU32::new(0);

#[action]
async fn nap_before(input: P) -> Result<P, ActionError> {
    NAP_BEFORE.fetch_add(1, Ordering::SeqCst);
    Ok(P { n: input.n + 1 })
}

#[action]
async fn nap_after(input: P) -> Result<P, ActionError> {
    NAP_AFTER.fetch_add(1, Ordering::SeqCst);
    Ok(P { n: input.n * 10 })
}

#[workflow(slug = "pause-nap")]
async fn pause_nap(ctx: Ctx, input: P) -> Result<P, WorkflowError> {
    let a = nap_before.run(input).await?;
    ctx.sleep(Duration::from_millis(200)).await?;
    Ok(nap_after.run(a).await?)
}

fn nap_engine(store: SharedStore) -> Engine {
    Engine::builder()
        .store(store)
        .register(pause_nap)
        .register(nap_before)
        .register(nap_after)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_sleeping_run_is_not_claimed_and_one_of_two_workers_continues_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(&dir);
    // Two engines (two "processes") on one database, each with a worker.
    let (a, b) = (nap_engine(store.clone()), nap_engine(store));
    let id = a.start(&pause_nap, P { n: 1 }).await.unwrap();
    let (stop_a, worker_a) = spawn_worker(&a);
    let (stop_b, worker_b) = spawn_worker(&b);
    wait_status(&a, &id, RunStatus::Sleeping).await;

    assert_eq!(
        b.pause_run(&id, "test:ada").await.unwrap(),
        PauseOutcome::Paused
    );
    assert_eq!(
        a.pause_run(&id, "test").await.unwrap(),
        PauseOutcome::AlreadyPaused
    );
    // Well past the sleep's end: nobody continues a paused run.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let record = a.get_run(&id).await.unwrap();
    assert_eq!(record.status, RunStatus::Paused);
    assert_eq!(NAP_AFTER.load(Ordering::SeqCst), 0);

    let unpaused = a.unpause_run(&id, "test:bob").await.unwrap();
    assert_eq!(unpaused.status, RunStatus::Queued);
    assert_eq!(unpaused.step, None);
    wait_status(&a, &id, RunStatus::Completed).await;
    assert_eq!(
        a.get_run(&id).await.unwrap().output,
        Some(json!({ "n": 20 }))
    );
    assert_eq!(NAP_BEFORE.load(Ordering::SeqCst), 1, "replayed, not re-run");
    assert_eq!(
        NAP_AFTER.load(Ordering::SeqCst),
        1,
        "continued exactly once"
    );

    let events = a.events(&id).await.unwrap();
    let paused = events
        .iter()
        .find(|e| e.event.kind == EventKind::RunPaused)
        .unwrap();
    assert_eq!(paused.event.payload["by"], "test:ada");
    assert_eq!(paused.event.payload["reason"], "operator");
    let unpaused = events
        .iter()
        .find(|e| e.event.kind == EventKind::RunUnpaused)
        .unwrap();
    assert_eq!(unpaused.event.payload["by"], "test:bob");

    let refused = a.pause_run(&id, "test").await.unwrap_err();
    assert!(
        matches!(&refused, EngineError::InvalidState { status, .. } if status == "completed"),
        "{refused}"
    );
    let refused = a.unpause_run(&id, "test").await.unwrap_err();
    assert!(
        matches!(refused, EngineError::InvalidState { .. }),
        "{refused}"
    );
    let _ = stop_a.send(());
    let _ = stop_b.send(());
    worker_a.await.unwrap().unwrap();
    worker_b.await.unwrap().unwrap();
}

// --- a running run pauses at its next step boundary ------------------------------------

static GATE_OPEN: AtomicBool = AtomicBool::new(false);
static GATED: AtomicU32 = AtomicU32::new(0);
static AFTER_GATE: AtomicU32 = AtomicU32::new(0);

#[action]
async fn gated(input: P) -> Result<P, ActionError> {
    GATED.fetch_add(1, Ordering::SeqCst);
    while !GATE_OPEN.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(P { n: input.n + 1 })
}

#[action]
async fn after_gate(input: P) -> Result<P, ActionError> {
    AFTER_GATE.fetch_add(1, Ordering::SeqCst);
    Ok(input)
}

#[workflow(slug = "pause-gated")]
async fn pause_gated(input: P) -> Result<P, WorkflowError> {
    let a = gated.run(input).await?;
    Ok(after_gate.run(a).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_run_lets_its_step_finish_then_pauses_at_the_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::builder()
        .store(sqlite(&dir))
        .register(pause_gated)
        .register(gated)
        .register(after_gate)
        .build()
        .unwrap();
    let id = engine.start(&pause_gated, P { n: 1 }).await.unwrap();
    let driving = tokio::spawn({
        let engine = engine.clone();
        let id = id.clone();
        async move { engine.drive(&id).await }
    });
    while GATED.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        engine.pause_run(&id, "test").await.unwrap(),
        PauseOutcome::Requested
    );
    GATE_OPEN.store(true, Ordering::SeqCst);
    let execution = driving.await.unwrap().unwrap();
    assert_eq!(execution.outcome, RunOutcome::Paused);
    assert_eq!(engine.get_run(&id).await.unwrap().status, RunStatus::Paused);
    let kinds = kinds(&engine, &id).await;
    assert!(
        kinds.contains(&EventKind::StepCompleted),
        "the step in flight recorded first: {kinds:?}"
    );
    assert_eq!(kinds.last(), Some(&EventKind::RunPaused));
    assert_eq!(
        AFTER_GATE.load(Ordering::SeqCst),
        0,
        "stopped at the boundary"
    );
    // A paused run is not executed by a foreground resume either.
    assert_eq!(engine.drive(&id).await.unwrap().outcome, RunOutcome::Paused);

    engine.unpause_run(&id, "test").await.unwrap();
    assert_eq!(
        engine.drive(&id).await.unwrap().outcome,
        RunOutcome::Completed(json!({ "n": 2 }))
    );
    assert_eq!(GATED.load(Ordering::SeqCst), 1);
    assert_eq!(AFTER_GATE.load(Ordering::SeqCst), 1);
}

// --- a waiting run, paused, keeps a hook payload -----------------------------------------

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Verdict {
    ok: bool,
}

#[workflow(slug = "pause-approval")]
async fn pause_approval(ctx: Ctx, _input: P) -> Result<bool, WorkflowError> {
    let verdict: Verdict = ctx.hook().await?;
    Ok(verdict.ok)
}

#[tokio::test]
async fn a_paused_waiting_run_takes_its_hook_payload_and_reads_it_once_unpaused() {
    let engine = Engine::builder().register(pause_approval).build().unwrap();
    let id = engine.start(&pause_approval, P { n: 0 }).await.unwrap();
    assert!(matches!(
        engine.drive(&id).await.unwrap().outcome,
        RunOutcome::Suspended(_)
    ));
    assert_eq!(
        engine.pause_run(&id, "test").await.unwrap(),
        PauseOutcome::Paused
    );
    let hooks = engine.events(&id).await.unwrap();
    let hook = hooks
        .iter()
        .find(|e| e.event.kind == EventKind::HookCreated)
        .and_then(|e| e.event.correlation_id.clone())
        .unwrap();
    let token = engine.hook_token(&id, &hook);
    engine
        .resume_hook(&token, json!({ "ok": true }))
        .await
        .unwrap();
    assert_eq!(
        engine.get_run(&id).await.unwrap().status,
        RunStatus::Paused,
        "the payload is kept; the run stays paused"
    );
    engine.unpause_run(&id, "test").await.unwrap();
    assert_eq!(
        engine.drive(&id).await.unwrap().outcome,
        RunOutcome::Completed(json!(true))
    );

    // A paused run can be canceled; it never runs again.
    let other = engine.start(&pause_approval, P { n: 1 }).await.unwrap();
    engine.drive(&other).await.unwrap();
    engine.pause_run(&other, "test").await.unwrap();
    assert_eq!(
        engine.cancel(&other).await.unwrap(),
        reprise::CancelOutcome::Canceled
    );
    assert_eq!(
        engine.get_run(&other).await.unwrap().status,
        RunStatus::Canceled
    );
    assert!(engine.unpause_run(&other, "test").await.is_err());
}

// --- parking at max attempts -------------------------------------------------------------

static FLAKY_FIXED: AtomicBool = AtomicBool::new(false);
static FLAKY_CALLS: AtomicU32 = AtomicU32::new(0);
static BEFORE_FLAKY: AtomicU32 = AtomicU32::new(0);

#[action]
async fn before_flaky(input: P) -> Result<P, ActionError> {
    BEFORE_FLAKY.fetch_add(1, Ordering::SeqCst);
    Ok(input)
}

/// Fails with a retryable error until the fix is "deployed".
#[action(retries = 0)]
async fn flaky_upstream(input: P) -> Result<P, ActionError> {
    FLAKY_CALLS.fetch_add(1, Ordering::SeqCst);
    if FLAKY_FIXED.load(Ordering::SeqCst) {
        Ok(P { n: input.n + 100 })
    } else {
        Err(ActionError::transient("upstream is down"))
    }
}

#[workflow(
    slug = "park-at-max",
    max_attempts = 2,
    on_max_attempts = "pause",
    on_failure = report_doomed
)]
async fn park_at_max(input: P) -> Result<P, WorkflowError> {
    let a = before_flaky.run(input).await?;
    Ok(flaky_upstream.run(a).await?)
}

#[tokio::test]
async fn a_run_whose_attempts_ran_out_is_parked_and_unpausing_runs_the_failed_step_again() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::builder()
        .store(sqlite(&dir))
        .run_retry_backoff(Duration::from_millis(10))
        .register(park_at_max)
        .register(before_flaky)
        .register(flaky_upstream)
        .register(report_doomed)
        .build()
        .unwrap();
    let id = engine.start(&park_at_max, P { n: 1 }).await.unwrap();
    assert_eq!(engine.drive(&id).await.unwrap().outcome, RunOutcome::Paused);
    let record = engine.get_run(&id).await.unwrap();
    assert_eq!(record.status, RunStatus::Paused);
    assert_eq!(
        record.attempt, 1,
        "a step's failure is not retried at run level: replay would return it again"
    );
    assert_eq!(record.error.unwrap()["message"], "upstream is down");
    let events = engine.events(&id).await.unwrap();
    let parked = events
        .iter()
        .find(|e| e.event.kind == EventKind::RunPaused)
        .unwrap();
    assert_eq!(parked.event.payload["reason"], "max_attempts");
    assert_eq!(parked.event.payload["step"], "flaky-upstream#0");
    assert_eq!(parked.event.payload["by"], "engine");
    assert!(
        handler_runs(&engine).await.is_empty(),
        "a parked run has not failed: no failure handler"
    );

    FLAKY_FIXED.store(true, Ordering::SeqCst);
    let unpaused = engine.unpause_run(&id, "test").await.unwrap();
    assert_eq!(unpaused.attempt, 2);
    assert_eq!(unpaused.step.as_deref(), Some("flaky-upstream#0"));
    assert_eq!(engine.get_run(&id).await.unwrap().error, None);
    assert_eq!(
        engine.drive(&id).await.unwrap().outcome,
        RunOutcome::Completed(json!({ "n": 101 }))
    );
    assert_eq!(
        BEFORE_FLAKY.load(Ordering::SeqCst),
        1,
        "completed steps replay"
    );
    assert_eq!(
        FLAKY_CALLS.load(Ordering::SeqCst),
        2,
        "the failed step ran again"
    );
}

// --- failure handlers --------------------------------------------------------------------

static DOOMED_FIXED: AtomicBool = AtomicBool::new(false);

#[action]
async fn doomed_step(input: P) -> Result<P, ActionError> {
    if DOOMED_FIXED.load(Ordering::SeqCst) {
        Ok(input)
    } else {
        Err(ActionError::permanent("the card was declined"))
    }
}

/// Reports a failure (its own run, recorded and retried like any other).
#[workflow(slug = "report-doomed")]
async fn report_doomed(failed: FailedRun) -> Result<String, WorkflowError> {
    Ok(format!(
        "{} {} failed at attempt {}: {}",
        failed.workflow, failed.run_id, failed.attempt, failed.error.message
    ))
}

#[workflow(slug = "doomed-order", on_failure = report_doomed)]
async fn doomed_order(input: P) -> Result<P, WorkflowError> {
    Ok(doomed_step.run(input).await?)
}

async fn handler_runs(engine: &Engine) -> Vec<reprise::event::RunRecord> {
    engine
        .list_runs(&RunFilter {
            workflow: Some("report-doomed".into()),
            ..RunFilter::default()
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn a_run_that_fails_for_good_starts_its_failure_handler_once_per_failure() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::builder()
        .store(sqlite(&dir))
        .register(doomed_order)
        .register(doomed_step)
        .register(report_doomed)
        .build()
        .unwrap();
    let id = engine.start(&doomed_order, P { n: 7 }).await.unwrap();
    assert!(matches!(
        engine.drive(&id).await.unwrap().outcome,
        RunOutcome::Failed(_)
    ));
    let handlers = handler_runs(&engine).await;
    assert_eq!(handlers.len(), 1);
    let handler = &handlers[0];
    assert_eq!(handler.trigger, Trigger::OnFailure);
    assert_eq!(handler.input["run_id"], json!(id));
    assert_eq!(handler.input["workflow"], "doomed-order");
    assert_eq!(handler.input["input"], json!({ "n": 7 }));
    assert_eq!(handler.input["attempt"], 1);
    assert_eq!(handler.input["error"]["message"], "the card was declined");
    let report = engine.drive(&handler.id).await.unwrap().outcome;
    assert_eq!(
        report,
        RunOutcome::Completed(json!(format!(
            "doomed-order {id} failed at attempt 1: the card was declined"
        )))
    );

    // Executing the failed run again changes nothing: still one handler run.
    engine.drive(&id).await.unwrap();
    assert_eq!(handler_runs(&engine).await.len(), 1);

    // Retried and failing again: a second failure, a second handler run.
    engine.retry_run(&id, "test").await.unwrap();
    assert!(matches!(
        engine.drive(&id).await.unwrap().outcome,
        RunOutcome::Failed(_)
    ));
    let handlers = handler_runs(&engine).await;
    assert_eq!(handlers.len(), 2);
    assert!(handlers.iter().any(|h| h.input["attempt"] == 2));

    // Retried after the fix: completed, no third handler run.
    DOOMED_FIXED.store(true, Ordering::SeqCst);
    engine.retry_run(&id, "test").await.unwrap();
    assert_eq!(
        engine.drive(&id).await.unwrap().outcome,
        RunOutcome::Completed(json!({ "n": 7 }))
    );
    assert_eq!(handler_runs(&engine).await.len(), 2);
}

// --- workflow pause, and the HTTP routes --------------------------------------------------

static HELD: AtomicU32 = AtomicU32::new(0);

#[action]
async fn held_step(input: P) -> Result<P, ActionError> {
    HELD.fetch_add(1, Ordering::SeqCst);
    Ok(input)
}

#[workflow(slug = "pause-held")]
async fn pause_held(input: P) -> Result<P, WorkflowError> {
    Ok(held_step.run(input).await?)
}

/// `POST <url>` with no body over a real connection: the status and the JSON answer.
async fn post(url: &str) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new().post(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// `GET <url>` over a real connection: the JSON answer of a 200.
async fn get(url: &str) -> serde_json::Value {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_workflow_has_no_runs_claimed_until_unpaused_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::builder()
        .store(sqlite(&dir))
        .register(pause_held)
        .register(held_step)
        .register(pause_approval)
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(reprise::http::serve(
        engine.clone(),
        listener,
        reprise::http::HttpOptions {
            api_token: None,
            ..Default::default()
        },
        async {
            let _ = server_stopped.await;
        },
    ));
    let (status, body) = post(&format!("{base}/workflows/pause-held/pause")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({ "workflow": "pause-held", "paused": true, "changed": true })
    );
    let (status, body) = post(&format!("{base}/workflows/no-such-flow/pause")).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        engine.workflow_pauses().await.unwrap()[0].by,
        "api",
        "who asked is kept"
    );
    let listed = get(&format!("{base}/workflows")).await;
    let held = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["slug"] == "pause-held")
        .unwrap();
    assert_eq!(held["paused"]["by"], "api", "{held}");
    let other = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["slug"] == "pause-approval")
        .unwrap();
    assert!(other.get("paused").is_none(), "{other}");

    let (stop, worker) = spawn_worker(&engine);
    let id = engine.start(&pause_held, P { n: 3 }).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        engine.get_run(&id).await.unwrap().status,
        RunStatus::Queued,
        "not claimed while its workflow is paused"
    );
    assert_eq!(HELD.load(Ordering::SeqCst), 0);
    let (status, body) = post(&format!("{base}/workflows/pause-held/unpause")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["paused"], false);
    wait_status(&engine, &id, RunStatus::Completed).await;
    assert_eq!(HELD.load(Ordering::SeqCst), 1);

    // Run-level pause and unpause over HTTP.
    let waiting = engine.start(&pause_approval, P { n: 0 }).await.unwrap();
    wait_status(&engine, &waiting, RunStatus::Waiting).await;
    let (status, body) = post(&format!("{base}/runs/{waiting}/pause")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "paused");
    let (status, body) = post(&format!("{base}/runs/{waiting}/unpause")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "queued");
    // The worker takes it again and it waits on its hook: not paused, so a second
    // unpause is refused. (While it executes, an unpause withdraws a pending pause
    // request instead and answers 200 `running`.)
    wait_status(&engine, &waiting, RunStatus::Waiting).await;
    let (status, body) = post(&format!("{base}/runs/{waiting}/unpause")).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "invalid_state");
    let (status, body) = post(&format!("{base}/runs/{id}/pause")).await;
    assert_eq!(status, 409, "a completed run: {body}");
    let (status, body) = post(&format!("{base}/runs/no-such-run/pause")).await;
    assert_eq!(status, 404, "{body}");
    let events = engine.events(&waiting).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.event.kind == EventKind::RunPaused && e.event.payload["by"] == "api")
    );
    let _ = stop.send(());
    worker.await.unwrap().unwrap();
    let _ = stop_server.send(());
    server.await.unwrap().unwrap();
}

// --- composition: a pause inside a sub-workflow's sleep and hook, and over a fan_out ------

static FANNED: AtomicU32 = AtomicU32::new(0);
static FAN_GATE: AtomicBool = AtomicBool::new(false);

#[action]
async fn fanned(input: P) -> Result<P, ActionError> {
    FANNED.fetch_add(1, Ordering::SeqCst);
    while !FAN_GATE.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(P { n: input.n * 2 })
}

/// Sleeps, then waits on an approval: both inside a sub-workflow.
#[workflow(slug = "pause-inner-wait")]
async fn pause_inner_wait(ctx: Ctx, input: P) -> Result<P, WorkflowError> {
    ctx.sleep(Duration::from_millis(50)).await?;
    let verdict: Verdict = ctx.hook().await?;
    Ok(P {
        n: if verdict.ok { input.n } else { -1 },
    })
}

/// Four gated steps at most two at a time, then the sub-workflow.
#[workflow(slug = "pause-composed")]
async fn pause_composed(input: P) -> Result<P, WorkflowError> {
    let items: Vec<P> = (1..=4).map(|n| P { n }).collect();
    let doubled = reprise::fan_out(items, 2, |p| fanned.run(p)).await;
    let mut total = 0;
    for result in doubled {
        total += result?.n;
    }
    Ok(pause_inner_wait.run(P { n: total + input.n }).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_composes_with_a_fan_out_and_with_a_sleep_and_hook_inside_a_sub_workflow() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::builder()
        .store(sqlite(&dir))
        .register(pause_composed)
        .register(pause_inner_wait)
        .register(fanned)
        .build()
        .unwrap();
    let id = engine.start(&pause_composed, P { n: 100 }).await.unwrap();
    let driving = tokio::spawn({
        let engine = engine.clone();
        let id = id.clone();
        async move { engine.drive(&id).await }
    });
    while FANNED.load(Ordering::SeqCst) < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Two fan_out steps are in flight: they finish and record, the others do not start.
    assert_eq!(
        engine.pause_run(&id, "test").await.unwrap(),
        PauseOutcome::Requested
    );
    FAN_GATE.store(true, Ordering::SeqCst);
    assert_eq!(driving.await.unwrap().unwrap().outcome, RunOutcome::Paused);
    let started = FANNED.load(Ordering::SeqCst);
    assert!(
        started < 4,
        "the pause stopped the fan_out: {started} started"
    );
    let completed = engine
        .events(&id)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.event.kind == EventKind::StepCompleted)
        .count();
    assert_eq!(completed as u32, started, "every started step recorded");

    // Unpaused, it finishes the fan_out and suspends in the sub-workflow's hook.
    engine.unpause_run(&id, "test").await.unwrap();
    assert!(matches!(
        engine.drive(&id).await.unwrap().outcome,
        RunOutcome::Suspended(_)
    ));
    assert_eq!(FANNED.load(Ordering::SeqCst), 4, "each item ran once");
    // Paused while waiting inside the sub-workflow; the payload is kept.
    engine.pause_run(&id, "test").await.unwrap();
    let hook = engine
        .events(&id)
        .await
        .unwrap()
        .iter()
        .find(|e| e.event.kind == EventKind::HookCreated)
        .and_then(|e| e.event.correlation_id.clone())
        .unwrap();
    assert!(hook.starts_with("pause-inner-wait#0/"), "{hook}");
    engine
        .resume_hook(&engine.hook_token(&id, &hook), json!({ "ok": true }))
        .await
        .unwrap();
    assert_eq!(engine.drive(&id).await.unwrap().outcome, RunOutcome::Paused);
    engine.unpause_run(&id, "test").await.unwrap();
    assert_eq!(
        engine.drive(&id).await.unwrap().outcome,
        RunOutcome::Completed(json!({ "n": 120 }))
    );
    assert_eq!(FANNED.load(Ordering::SeqCst), 4);
}
