//! Retrying a failed run on the current code (`Engine::retry_run`, `runs retry`,
//! `POST /runs/{id}/retry`): the failed step runs again, completed steps replay, also
//! inside sub-workflows and for runs parked as unexecutable.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use reprise::event::{EventKind, RunStatus};
use reprise::prelude::*;
use reprise::store::SharedStore;
use reprise::{EngineError, RunOutcome};
use serde_json::json;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct N {
    n: i64,
}

// One set of counters and one "deployed fix" switch per test (tests run in parallel).
static PREPARED: AtomicU32 = AtomicU32::new(0);
static CHARGED: AtomicU32 = AtomicU32::new(0);
static FIXED: AtomicBool = AtomicBool::new(false);
static NOTIFIED: AtomicU32 = AtomicU32::new(0);

#[action]
async fn prepare(input: N) -> Result<N, ActionError> {
    PREPARED.fetch_add(1, Ordering::SeqCst);
    Ok(N { n: input.n + 1 })
}

/// Fails for good until the fix is "deployed".
#[action]
async fn charge(input: N) -> Result<N, ActionError> {
    CHARGED.fetch_add(1, Ordering::SeqCst);
    if FIXED.load(Ordering::SeqCst) {
        Ok(N { n: input.n * 10 })
    } else {
        Err(ActionError::permanent("card processor bug"))
    }
}

#[action]
async fn notify_customer(input: N) -> Result<N, ActionError> {
    NOTIFIED.fetch_add(1, Ordering::SeqCst);
    Ok(input)
}

#[workflow(slug = "retry-checkout")]
async fn retry_checkout(input: N) -> Result<N, WorkflowError> {
    let prepared = prepare.run(input).await?;
    let charged = charge.run(prepared).await?;
    Ok(notify_customer.run(charged).await?)
}

fn engine(store: SharedStore) -> Engine {
    Engine::builder()
        .store(store)
        .register(retry_checkout)
        .register(prepare)
        .register(charge)
        .register(notify_customer)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_retry_after_a_fix_runs_the_failed_step_again_and_replays_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let store: SharedStore =
        Arc::new(reprise::store::SqliteStore::open(dir.path().join("runs.db")).unwrap());
    let engine = engine(store);
    let id = engine.start(&retry_checkout, N { n: 1 }).await.unwrap();
    let failed = engine.drive(&id).await.unwrap().outcome;
    assert!(matches!(&failed, RunOutcome::Failed(e) if e.message == "card processor bug"));
    assert_eq!(
        (
            PREPARED.load(Ordering::SeqCst),
            CHARGED.load(Ordering::SeqCst)
        ),
        (1, 1)
    );

    FIXED.store(true, Ordering::SeqCst); // the fix is deployed
    let retried = engine.retry_run(&id, "test:ada").await.unwrap();
    assert_eq!(retried.step.as_deref(), Some("charge#0"));
    assert_eq!(retried.attempt, 2);
    let record = engine.get_run(&id).await.unwrap();
    assert_eq!(record.status, RunStatus::Queued);
    assert_eq!(record.error, None, "the failure no longer stands");

    let done = engine.drive(&id).await.unwrap().outcome;
    assert_eq!(done, RunOutcome::Completed(json!({ "n": 20 })));
    assert_eq!(PREPARED.load(Ordering::SeqCst), 1, "completed steps replay");
    assert_eq!(
        CHARGED.load(Ordering::SeqCst),
        2,
        "the failed step runs again"
    );
    assert_eq!(NOTIFIED.load(Ordering::SeqCst), 1);

    let events = engine.events(&id).await.unwrap();
    let retry = events
        .iter()
        .find(|e| e.event.kind == EventKind::RunRetried)
        .expect("a run_retried event");
    assert_eq!(retry.event.payload["by"], "test:ada");
    assert_eq!(retry.event.payload["step"], "charge#0");
    assert_eq!(
        retry.event.payload["error"]["message"],
        "card processor bug"
    );

    // A completed run is not retried.
    let refused = engine.retry_run(&id, "test").await.unwrap_err();
    assert!(
        matches!(&refused, EngineError::InvalidState { status, .. } if status == "completed"),
        "{refused}"
    );
    let unknown = engine
        .retry_run(&reprise::event::RunId::from("no-such-run"), "test")
        .await
        .unwrap_err();
    assert!(matches!(unknown, EngineError::UnknownRun(_)), "{unknown}");
}

static INNER_FIXED: AtomicBool = AtomicBool::new(false);
static INNER_CALLS: AtomicU32 = AtomicU32::new(0);
static CAUGHT_CALLS: AtomicU32 = AtomicU32::new(0);
static BEFORE_CALLS: AtomicU32 = AtomicU32::new(0);

#[action]
async fn before_sub(input: N) -> Result<N, ActionError> {
    BEFORE_CALLS.fetch_add(1, Ordering::SeqCst);
    Ok(input)
}

/// Always fails; the sub-workflow catches it (its recorded failure must keep replaying).
#[action]
async fn optional_lookup(_input: N) -> Result<N, ActionError> {
    CAUGHT_CALLS.fetch_add(1, Ordering::SeqCst);
    Err(ActionError::permanent("lookup service down"))
}

#[action]
async fn inner_charge(input: N) -> Result<N, ActionError> {
    INNER_CALLS.fetch_add(1, Ordering::SeqCst);
    if INNER_FIXED.load(Ordering::SeqCst) {
        Ok(N { n: input.n + 100 })
    } else {
        Err(ActionError::permanent("inner bug"))
    }
}

#[workflow(slug = "retry-billing")]
async fn retry_billing(input: N) -> Result<N, WorkflowError> {
    let n = match optional_lookup.run(input.clone()).await {
        Ok(found) => found,
        Err(_) => input,
    };
    Ok(inner_charge.run(n).await?)
}

#[workflow(slug = "retry-order")]
async fn retry_order(ctx: Ctx, input: N) -> Result<N, WorkflowError> {
    let n = before_sub.run(input).await?;
    let billed = retry_billing.run(n).await?;
    ctx.sleep(std::time::Duration::from_millis(1)).await?;
    Ok(billed)
}

#[tokio::test]
async fn a_step_failed_inside_a_sub_workflow_runs_again_and_caught_failures_still_replay() {
    let store: SharedStore = Arc::new(reprise::store::MemoryStore::new());
    let engine = Engine::builder()
        .store(store)
        .register(retry_order)
        .register(retry_billing)
        .register(before_sub)
        .register(optional_lookup)
        .register(inner_charge)
        .build()
        .unwrap();
    let id = engine.start(&retry_order, N { n: 1 }).await.unwrap();
    let failed = engine.drive(&id).await.unwrap().outcome;
    assert!(matches!(&failed, RunOutcome::Failed(e) if e.message == "inner bug"));

    INNER_FIXED.store(true, Ordering::SeqCst);
    let retried = engine.retry_run(&id, "test").await.unwrap();
    assert_eq!(
        retried.step.as_deref(),
        Some("retry-billing#0/inner-charge#0"),
        "the innermost step that failed with the run's error"
    );
    let done = engine.drive(&id).await.unwrap().outcome;
    assert_eq!(done, RunOutcome::Completed(json!({ "n": 101 })));
    assert_eq!(BEFORE_CALLS.load(Ordering::SeqCst), 1);
    assert_eq!(
        CAUGHT_CALLS.load(Ordering::SeqCst),
        1,
        "a failure the body caught replays from the log"
    );
    assert_eq!(INNER_CALLS.load(Ordering::SeqCst), 2);
}

static BODY_FIXED: AtomicBool = AtomicBool::new(false);

#[workflow(slug = "retry-validate")]
async fn retry_validate(input: N) -> Result<N, WorkflowError> {
    let n = prepare_twice.run(input).await?;
    if !BODY_FIXED.load(Ordering::SeqCst) {
        return Err(WorkflowError::new("invalid", "the body rejected it", false));
    }
    Ok(n)
}

static TWICE_CALLS: AtomicU32 = AtomicU32::new(0);

#[action]
async fn prepare_twice(input: N) -> Result<N, ActionError> {
    TWICE_CALLS.fetch_add(1, Ordering::SeqCst);
    Ok(input)
}

#[tokio::test]
async fn a_run_the_body_itself_failed_replays_its_steps_and_runs_the_body_again() {
    let store: SharedStore = Arc::new(reprise::store::MemoryStore::new());
    let engine = Engine::builder()
        .store(store)
        .register(retry_validate)
        .register(prepare_twice)
        .build()
        .unwrap();
    let id = engine.start(&retry_validate, N { n: 7 }).await.unwrap();
    assert!(matches!(
        engine.drive(&id).await.unwrap().outcome,
        RunOutcome::Failed(_)
    ));
    BODY_FIXED.store(true, Ordering::SeqCst);
    let retried = engine.retry_run(&id, "test").await.unwrap();
    assert_eq!(retried.step, None);
    assert_eq!(
        engine.drive(&id).await.unwrap().outcome,
        RunOutcome::Completed(json!({ "n": 7 }))
    );
    assert_eq!(TWICE_CALLS.load(Ordering::SeqCst), 1);
}

static PARKED_CALLS: AtomicU32 = AtomicU32::new(0);

#[action]
async fn parked_step(input: N) -> Result<N, ActionError> {
    PARKED_CALLS.fetch_add(1, Ordering::SeqCst);
    Ok(input)
}

#[workflow(slug = "retry-parked")]
async fn retry_parked(input: N) -> Result<N, WorkflowError> {
    Ok(parked_step.run(input).await?)
}

#[tokio::test]
async fn a_run_parked_as_unexecutable_is_retried_once_its_workflow_is_back() {
    let store: SharedStore = Arc::new(reprise::store::MemoryStore::new());
    let with_workflow = Engine::builder()
        .store(store.clone())
        .register(retry_parked)
        .register(parked_step)
        .build()
        .unwrap();
    let id = with_workflow
        .start(&retry_parked, N { n: 3 })
        .await
        .unwrap();
    // A binary without the workflow parks it at once (one strike).
    let without = Engine::builder()
        .store(store.clone())
        .unexecutable_policy(
            reprise::RetryPolicy::exponential(std::time::Duration::from_millis(1)).max_attempts(1),
        )
        .build()
        .unwrap();
    let parked = without.execute(&id).await.unwrap().outcome;
    assert!(matches!(&parked, RunOutcome::Failed(e) if e.kind == "unexecutable"));

    with_workflow.retry_run(&id, "test").await.unwrap();
    assert_eq!(
        with_workflow.drive(&id).await.unwrap().outcome,
        RunOutcome::Completed(json!({ "n": 3 }))
    );
    assert_eq!(PARKED_CALLS.load(Ordering::SeqCst), 1);
}

static HTTP_FIXED: AtomicBool = AtomicBool::new(false);
static HTTP_CALLS: AtomicU32 = AtomicU32::new(0);

#[action]
async fn http_flaky(input: N) -> Result<N, ActionError> {
    HTTP_CALLS.fetch_add(1, Ordering::SeqCst);
    if HTTP_FIXED.load(Ordering::SeqCst) {
        Ok(input)
    } else {
        Err(ActionError::permanent("not yet"))
    }
}

#[workflow(slug = "retry-over-http")]
async fn retry_over_http(input: N) -> Result<N, WorkflowError> {
    Ok(http_flaky.run(input).await?)
}

async fn post(router: &axum::Router, path: &str) -> (u16, serde_json::Value) {
    use tower::ServiceExt;
    let request = axum::http::Request::post(path)
        .body(axum::body::Body::empty())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn post_runs_retry_queues_a_failed_run_and_refuses_others() {
    let engine = Engine::builder()
        .register(retry_over_http)
        .register(http_flaky)
        .build()
        .unwrap();
    let router = reprise::http::router(
        engine.clone(),
        reprise::http::HttpOptions {
            api_token: None,
            ..Default::default()
        },
    );
    let id = engine.start(&retry_over_http, N { n: 5 }).await.unwrap();
    assert!(matches!(
        engine.drive(&id).await.unwrap().outcome,
        RunOutcome::Failed(_)
    ));
    HTTP_FIXED.store(true, Ordering::SeqCst);
    let (status, body) = post(&router, &format!("/runs/{id}/retry")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "queued");
    assert_eq!(body["attempt"], 2);
    assert_eq!(body["step"], "http-flaky#0");
    let events = engine.events(&id).await.unwrap();
    let retry = events
        .iter()
        .find(|e| e.event.kind == EventKind::RunRetried)
        .unwrap();
    assert_eq!(retry.event.payload["by"], "api");
    assert_eq!(
        engine.drive(&id).await.unwrap().outcome,
        RunOutcome::Completed(json!({ "n": 5 }))
    );
    assert_eq!(HTTP_CALLS.load(Ordering::SeqCst), 2);

    let (status, body) = post(&router, &format!("/runs/{id}/retry")).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "invalid_state");
    let (status, body) = post(&router, "/runs/no-such-run/retry").await;
    assert_eq!(status, 404, "{body}");
}
