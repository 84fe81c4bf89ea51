//! Forking and restarting runs (`Engine::fork_run`, `runs fork`, `POST /runs/{id}/fork`):
//! the copied prefix replays without running its steps again, the rest runs live; a new
//! input re-runs exactly the steps after the fork point plus the copied steps whose input
//! changed (and those recorded after them), also across a suspension; the original's log
//! never changes.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reprise::Clock;

use reprise::event::{EventKind, RunId, RunStatus, Trigger};
use reprise::prelude::*;
use reprise::store::SharedStore;
use reprise::{EngineError, ForkOptions, RunOutcome, forked_from};
use serde_json::json;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct N {
    n: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Pair {
    a: i64,
    b: i64,
}

/// Calls per action, one set per workflow (tests run in parallel, each on its own
/// workflow).
#[derive(Default)]
struct Calls {
    a: AtomicU32,
    b: AtomicU32,
    c: AtomicU32,
    /// Links sent by `fork_send_link`.
    sent: Mutex<Vec<String>>,
}

impl Calls {
    fn get(&self) -> (u32, u32, u32) {
        (
            self.a.load(Ordering::SeqCst),
            self.b.load(Ordering::SeqCst),
            self.c.load(Ordering::SeqCst),
        )
    }
}

#[action]
async fn fork_a(input: N, cx: ActionCtx) -> Result<N, ActionError> {
    if let Ok(calls) = cx.resource::<Calls>() {
        calls.a.fetch_add(1, Ordering::SeqCst);
    }
    Ok(N { n: input.n + 1 })
}

#[action]
async fn fork_b(input: N, cx: ActionCtx) -> Result<N, ActionError> {
    if let Ok(calls) = cx.resource::<Calls>() {
        calls.b.fetch_add(1, Ordering::SeqCst);
    }
    Ok(N { n: input.n * 2 })
}

#[action]
async fn fork_c(input: N, cx: ActionCtx) -> Result<N, ActionError> {
    if let Ok(calls) = cx.resource::<Calls>() {
        calls.c.fetch_add(1, Ordering::SeqCst);
    }
    Ok(N { n: input.n + 100 })
}

/// a(input.a), b(input.b), an hour's sleep, then c(a + b).
#[workflow(slug = "fork-pipeline")]
async fn fork_pipeline(ctx: Ctx, input: Pair) -> Result<N, WorkflowError> {
    let a = fork_a.run(N { n: input.a }).await?;
    let b = fork_b.run(N { n: input.b }).await?;
    ctx.sleep(Duration::from_secs(3600)).await?;
    Ok(fork_c.run(N { n: a.n + b.n }).await?)
}

/// The inner steps of a sub-workflow.
#[workflow(slug = "fork-inner")]
async fn fork_inner(input: N) -> Result<N, WorkflowError> {
    let x = fork_a.run(input).await?;
    Ok(fork_b.run(x).await?)
}

/// c, then the sub-workflow.
#[workflow(slug = "fork-outer")]
async fn fork_outer(input: N) -> Result<N, WorkflowError> {
    let first = fork_c.run(input).await?;
    Ok(fork_inner.run(first).await?)
}

/// A clock that moves only when the engine waits on it (`Engine::drive` through a sleep),
/// by exactly that long: no test waits in real time.
struct VirtualClock(Mutex<DateTime<Utc>>);

impl Clock for VirtualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }

    fn sleep(&self, duration: Duration) -> futures::future::BoxFuture<'static, ()> {
        *self.0.lock().unwrap() += chrono::Duration::from_std(duration).unwrap();
        Box::pin(async {})
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Link {
    url: String,
}

#[action]
async fn fork_send_link(input: Link, cx: ActionCtx) -> Result<Link, ActionError> {
    if let Ok(calls) = cx.resource::<Calls>() {
        calls.sent.lock().unwrap().push(input.url.clone());
    }
    Ok(input)
}

/// Sends a hook's resume URL, waits for the approval, then c.
#[workflow(slug = "fork-approval")]
async fn fork_approval(ctx: Ctx, input: N) -> Result<N, WorkflowError> {
    let approval = ctx.hook::<N>();
    fork_send_link
        .run(Link {
            url: approval.resume_url(),
        })
        .await?;
    let approved = approval.await?;
    Ok(fork_c
        .run(N {
            n: input.n + approved.n,
        })
        .await?)
}

/// Waits for a hook while b runs: b is recorded after the hook is created.
#[workflow(slug = "fork-hook-beside-a-step")]
async fn fork_hook_beside_a_step(ctx: Ctx, input: N) -> Result<N, WorkflowError> {
    use std::future::IntoFuture;
    let approval = ctx.hook::<N>();
    let (approved, b) = futures::join!(approval.into_future(), fork_b.run(input));
    Ok(N {
        n: approved?.n + b?.n,
    })
}

fn engine(store: SharedStore, calls: Arc<Calls>) -> Engine {
    Engine::builder()
        .clock(Arc::new(VirtualClock(Mutex::new(Utc::now()))))
        .store(store)
        .register(fork_pipeline)
        .register(fork_inner)
        .register(fork_outer)
        .register(fork_approval)
        .register(fork_hook_beside_a_step)
        .register(fork_send_link)
        .register(fork_a)
        .register(fork_b)
        .register(fork_c)
        .shared_resource(calls)
        // Every suspension replays from the log (no body kept in memory).
        .hot_runs(0, Duration::ZERO)
        .build()
        .unwrap()
}

fn sqlite(dir: &tempfile::TempDir) -> SharedStore {
    Arc::new(reprise::store::SqliteStore::open(dir.path().join("runs.db")).unwrap())
}

/// The original's log as the store holds it, as JSON text (compared byte for byte).
async fn log_text(engine: &Engine, id: &RunId) -> String {
    serde_json::to_string(&engine.store().events(id).await.unwrap()).unwrap()
}

/// Runs the original pipeline with `a = 1, b = 2` to completion: c = (2 + 4) + 100.
async fn original(engine: &Engine) -> RunId {
    let id = engine
        .start(&fork_pipeline, Pair { a: 1, b: 2 })
        .await
        .unwrap();
    let done = engine.drive(&id).await.unwrap().outcome;
    assert_eq!(done, RunOutcome::Completed(json!({ "n": 106 })));
    id
}

#[tokio::test]
async fn a_fork_replays_the_prefix_and_runs_the_rest_live() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Arc::new(Calls::default());
    let engine = engine(sqlite(&dir), calls.clone());
    let id = original(&engine).await;
    assert_eq!(calls.get(), (1, 1, 1));
    let before = log_text(&engine, &id).await;

    let forked = engine
        .fork_run(&id, ForkOptions::from_step("fork-c#0").by("test:ada"))
        .await
        .unwrap();
    assert_ne!(forked.run_id, id, "a fork is a new run");
    assert_eq!(forked.forked_from.run_id, id);
    assert_eq!(forked.forked_from.step.as_deref(), Some("fork-c#0"));
    assert!(!forked.forked_from.input_changed);
    assert_eq!(forked.forked_from.by, "test:ada");
    let record = engine.get_run(&forked.run_id).await.unwrap();
    assert_eq!(record.status, RunStatus::Queued);
    assert_eq!(record.trigger, Trigger::Fork);
    assert_eq!(record.input, json!({ "a": 1, "b": 2 }));

    // The new log: run_created naming the original, then the copied step events, from 1,
    // and no run-level event of the original.
    let events = engine.store().events(&forked.run_id).await.unwrap();
    assert_eq!(forked_from(&events), Some(forked.forked_from.clone()));
    assert_eq!(events.len() as u64, forked.forked_from.prefix_len);
    assert_eq!(forked.copied + 1, events.len());
    for (seq, event) in events.iter().enumerate() {
        assert_eq!(event.seq, seq as u64);
    }
    assert!(events[1..].iter().all(|e| e.event.correlation_id.is_some()));
    let original_events = engine.store().events(&id).await.unwrap();
    let originals: Vec<_> = original_events
        .iter()
        .filter(|e| e.event.correlation_id.is_some())
        .map(|e| &e.event)
        .take(forked.copied)
        .collect();
    let copies: Vec<_> = events[1..].iter().map(|e| &e.event).collect();
    assert_eq!(
        copies, originals,
        "kind, id, attempt, time and payload kept"
    );
    assert!(
        copies
            .iter()
            .all(|e| e.correlation_id.as_deref() != Some("fork-c#0"))
    );

    let execution = engine.drive(&forked.run_id).await.unwrap();
    assert_eq!(
        execution.outcome,
        RunOutcome::Completed(json!({ "n": 106 }))
    );
    assert_eq!(
        calls.get(),
        (1, 1, 2),
        "a and b replay from the copied prefix; c runs live"
    );
    assert_eq!(
        log_text(&engine, &id).await,
        before,
        "the original is untouched"
    );
}

#[tokio::test]
async fn a_fork_with_a_new_input_reruns_exactly_the_steps_whose_input_changed_and_after() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Arc::new(Calls::default());
    let engine = engine(sqlite(&dir), calls.clone());
    let id = original(&engine).await;
    let before = log_text(&engine, &id).await;

    // Only b's input changes: a replays, b diverges and runs live, the copied sleep (recorded
    // after b) runs again, c (the fork point) runs live.
    let forked = engine
        .fork_run(
            &id,
            ForkOptions::from_step("fork-c#0").input(json!({ "a": 1, "b": 5 })),
        )
        .await
        .unwrap();
    assert!(forked.forked_from.input_changed);
    assert_eq!(forked.forked_from.by, "code", "who asked, when nobody said");
    assert_eq!(
        engine.get_run(&forked.run_id).await.unwrap().input,
        json!({ "a": 1, "b": 5 })
    );
    // The first execution suspends in the sleep, which runs live again (it was copied
    // after b). The next executions rebuild the history from the log, with the divergence
    // recorded in it: a and b replay, and the copied sleep's completion no longer answers,
    // so the run sleeps until its new wake-up time.
    let first = engine.execute(&forked.run_id).await.unwrap();
    assert!(
        matches!(first.outcome, RunOutcome::Suspended(_)),
        "{:?}",
        first.outcome
    );
    assert_eq!(calls.get(), (1, 2, 1), "a replays; b runs again");
    let early = engine.execute(&forked.run_id).await.unwrap();
    assert!(
        matches!(early.outcome, RunOutcome::Suspended(_)),
        "the live sleep is not over: {:?}",
        early.outcome
    );
    assert_eq!(calls.get(), (1, 2, 1));
    let done = engine.drive(&forked.run_id).await.unwrap();
    assert_eq!(
        done.outcome,
        RunOutcome::Completed(json!({ "n": 2 + 10 + 100 }))
    );
    assert_eq!(
        calls.get(),
        (1, 2, 2),
        "after the suspension a and b replay; only c ran"
    );
    let events = engine.store().events(&forked.run_id).await.unwrap();
    let diverged: Vec<_> = events
        .iter()
        .filter(|e| e.event.kind == EventKind::ForkDiverged)
        .collect();
    assert_eq!(diverged.len(), 1, "one divergence, recorded once");
    assert_eq!(diverged[0].event.payload["step"], "fork-b#0");
    let b_first = events
        .iter()
        .find(|e| e.event.correlation_id.as_deref() == Some("fork-b#0"))
        .unwrap();
    assert_eq!(diverged[0].event.payload["from_seq"], b_first.seq);
    assert_eq!(
        log_text(&engine, &id).await,
        before,
        "the original is untouched"
    );

    // Now a's input changes: a diverges at the first copied event, so every copied step
    // runs again (b's input is the same, but it was recorded after a).
    let forked = engine
        .fork_run(
            &id,
            ForkOptions::from_step("fork-c#0").input(json!({ "a": 7, "b": 2 })),
        )
        .await
        .unwrap();
    let done = engine.drive(&forked.run_id).await.unwrap();
    assert_eq!(
        done.outcome,
        RunOutcome::Completed(json!({ "n": 8 + 4 + 100 }))
    );
    assert_eq!(calls.get(), (2, 3, 3));

    // The same input as the original is no change: everything before c replays.
    let forked = engine
        .fork_run(
            &id,
            ForkOptions::from_step("fork-c#0").input(json!({ "a": 1, "b": 2 })),
        )
        .await
        .unwrap();
    assert!(!forked.forked_from.input_changed);
    engine.drive(&forked.run_id).await.unwrap();
    assert_eq!(calls.get(), (2, 3, 4));
    assert_eq!(
        log_text(&engine, &id).await,
        before,
        "the original is untouched"
    );
}

#[tokio::test]
async fn a_restart_runs_every_step_again() {
    let calls = Arc::new(Calls::default());
    let engine = engine(Arc::new(reprise::store::MemoryStore::new()), calls.clone());
    let id = original(&engine).await;
    let before = log_text(&engine, &id).await;
    let restarted = engine.restart_run(&id, "test").await.unwrap();
    assert_eq!(restarted.forked_from.by, "test");
    assert_eq!(restarted.copied, 0);
    assert_eq!(restarted.forked_from.step, None);
    assert_eq!(restarted.forked_from.prefix_len, 1);
    assert_eq!(
        engine
            .store()
            .events(&restarted.run_id)
            .await
            .unwrap()
            .len(),
        1
    );
    let done = engine.drive(&restarted.run_id).await.unwrap().outcome;
    assert_eq!(done, RunOutcome::Completed(json!({ "n": 106 })));
    assert_eq!(calls.get(), (2, 2, 2));
    assert_eq!(log_text(&engine, &id).await, before);
}

#[tokio::test]
async fn a_fork_from_a_step_inside_a_sub_workflow_reenters_it() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Arc::new(Calls::default());
    let engine = engine(sqlite(&dir), calls.clone());
    let id = engine.start(&fork_outer, N { n: 1 }).await.unwrap();
    let done = engine.drive(&id).await.unwrap().outcome;
    // c: 101, inner a: 102, inner b: 204.
    assert_eq!(done, RunOutcome::Completed(json!({ "n": 204 })));
    assert_eq!(calls.get(), (1, 1, 1));

    let forked = engine
        .fork_run(&id, ForkOptions::from_step("fork-inner#0/fork-b#0"))
        .await
        .unwrap();
    let done = engine.drive(&forked.run_id).await.unwrap().outcome;
    assert_eq!(done, RunOutcome::Completed(json!({ "n": 204 })));
    assert_eq!(
        calls.get(),
        (1, 2, 1),
        "c and the sub-workflow's a replay; its b runs live"
    );
    let events = engine.store().events(&forked.run_id).await.unwrap();
    let scope_starts = events
        .iter()
        .filter(|e| {
            e.event.kind == EventKind::StepStarted
                && e.event.correlation_id.as_deref() == Some("fork-inner#0")
        })
        .count();
    assert_eq!(
        scope_starts, 1,
        "the sub-workflow is re-entered, not started again"
    );

    // With a new input, the sub-workflow's input changes: it diverges and runs whole.
    let forked = engine
        .fork_run(
            &id,
            ForkOptions::from_step("fork-inner#0/fork-b#0").input(json!({ "n": 2 })),
        )
        .await
        .unwrap();
    let done = engine.drive(&forked.run_id).await.unwrap().outcome;
    assert_eq!(done, RunOutcome::Completed(json!({ "n": 206 })));
    assert_eq!(calls.get(), (2, 3, 2));
}

#[tokio::test]
async fn forks_of_forks_keep_the_divergence() {
    let calls = Arc::new(Calls::default());
    let engine = engine(Arc::new(reprise::store::MemoryStore::new()), calls.clone());
    let id = original(&engine).await;
    let first = engine
        .fork_run(
            &id,
            ForkOptions::from_step("fork-c#0").input(json!({ "a": 1, "b": 5 })),
        )
        .await
        .unwrap();
    engine.drive(&first.run_id).await.unwrap();
    assert_eq!(calls.get(), (1, 2, 2));
    // Forking the diverged fork from its last step: its live b and sleep are copied, not
    // the voided copies of the original's; everything before c replays.
    let second = engine
        .fork_run(&first.run_id, ForkOptions::from_step("fork-c#0"))
        .await
        .unwrap();
    let done = engine.drive(&second.run_id).await.unwrap().outcome;
    assert_eq!(done, RunOutcome::Completed(json!({ "n": 112 })));
    assert_eq!(calls.get(), (1, 2, 3));
}

#[tokio::test]
async fn bad_forks_are_refused_and_create_nothing() {
    let calls = Arc::new(Calls::default());
    let engine = engine(Arc::new(reprise::store::MemoryStore::new()), calls.clone());
    let id = original(&engine).await;
    let before = log_text(&engine, &id).await;
    let runs = || async {
        engine
            .list_runs(&reprise::event::RunFilter::default())
            .await
            .unwrap()
            .len()
    };
    assert_eq!(runs().await, 1);

    let error = engine
        .fork_run(&id, ForkOptions::from_step("fork-z#0"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, EngineError::UnknownStep { step, .. } if step == "fork-z#0"),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("no step `fork-z#0`")
            && message.contains("`fork-a#0`")
            && message.contains("`fork-c#0`"),
        "{message}"
    );

    let error = engine
        .fork_run(
            &id,
            ForkOptions::from_step("fork-c#0").input(json!({ "a": "one", "b": 2 })),
        )
        .await
        .unwrap_err();
    let EngineError::Schema(violation) = &error else {
        panic!("{error:?}");
    };
    assert!(
        violation.violations.iter().any(|v| v.pointer == "/a"),
        "{error}"
    );

    let error = engine
        .fork_run(&RunId::from("no-such-run"), ForkOptions::restart())
        .await
        .unwrap_err();
    assert!(matches!(error, EngineError::UnknownRun(_)), "{error:?}");

    assert_eq!(runs().await, 1, "nothing was created");
    assert_eq!(log_text(&engine, &id).await, before);
}

/// `POST url` with a JSON body (or none); the status and the JSON answer.
async fn post(
    url: &str,
    body: Option<serde_json::Value>,
) -> (reqwest::StatusCode, serde_json::Value) {
    let mut request = reqwest::Client::new().post(url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_and_restart_over_http() {
    use reqwest::StatusCode;
    let dir = tempfile::tempdir().unwrap();
    let calls = Arc::new(Calls::default());
    let engine = engine(sqlite(&dir), calls.clone());
    let id = original(&engine).await;
    let before = log_text(&engine, &id).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = reprise::http::HttpOptions {
        api_token: None,
        ..reprise::http::HttpOptions::default()
    };
    let server = tokio::spawn(reprise::http::serve(
        engine.clone(),
        listener,
        options,
        async {
            let _ = stopped.await;
        },
    ));

    let (status, body) = post(
        &format!("{base}/runs/{id}/fork"),
        Some(json!({ "from": "fork-c#0", "input": { "a": 1, "b": 5 } })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"], "queued");
    assert_eq!(body["forked_from"]["run_id"], id.as_str());
    assert_eq!(body["forked_from"]["step"], "fork-c#0");
    assert_eq!(body["forked_from"]["input_changed"], true);
    assert_eq!(body["forked_from"]["by"], "api");
    let forked = RunId::from(body["run_id"].as_str().unwrap());
    let done = engine.drive(&forked).await.unwrap().outcome;
    assert_eq!(done, RunOutcome::Completed(json!({ "n": 112 })));
    assert_eq!(calls.get(), (1, 2, 2), "a replayed; b and c ran live");

    let detail: serde_json::Value = reqwest::get(format!("{base}/runs/{forked}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(detail["trigger"], "fork");
    assert_eq!(detail["forked_from"]["run_id"], id.as_str());
    assert_eq!(detail["forked_from"]["step"], "fork-c#0");
    let original_detail: serde_json::Value = reqwest::get(format!("{base}/runs/{id}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        original_detail.get("forked_from").is_none(),
        "{original_detail}"
    );

    let (status, body) = post(
        &format!("{base}/runs/{id}/fork"),
        Some(json!({ "from": "fork-z#0" })),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["code"], "unknown_step");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains("fork-z#0") && message.contains("`fork-a#0`"),
        "{message}"
    );

    let (status, body) = post(
        &format!("{base}/runs/{id}/fork"),
        Some(json!({ "from": "fork-c#0", "input": { "a": "one", "b": 2 } })),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["code"], "schema");
    assert_eq!(body["violations"][0]["pointer"], "/a");

    let (status, body) = post(&format!("{base}/runs/{id}/fork"), Some(json!({}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().contains("`from`"), "{body}");
    let (status, body) = post(
        &format!("{base}/runs/{id}/fork"),
        Some(json!({ "from": "fork-c#0", "inputs": {} })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("`inputs`"),
        "{body}"
    );

    let (status, body) = post(
        &format!("{base}/runs/no-such-run/fork"),
        Some(json!({ "from": "fork-c#0" })),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["code"], "unknown_run");

    let (status, body) = post(&format!("{base}/runs/{id}/restart"), None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["copied"], 0);
    assert!(body["forked_from"]["step"].is_null(), "{body}");
    let restarted = RunId::from(body["run_id"].as_str().unwrap());
    engine.drive(&restarted).await.unwrap();
    assert_eq!(calls.get(), (2, 3, 3), "a restart runs every step");
    let (status, body) = post(&format!("{base}/runs/no-such-run/restart"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let doc: serde_json::Value = reqwest::get(format!("{base}/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in ["/runs/{id}/fork", "/runs/{id}/restart"] {
        assert!(doc["paths"][path]["post"].is_object(), "{path} is missing");
    }
    assert_eq!(
        log_text(&engine, &id).await,
        before,
        "the original is untouched"
    );
    let _ = stop.send(());
    let _ = server.await;
}

#[tokio::test]
async fn forked_hooks_have_the_new_runs_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Arc::new(Calls::default());
    let engine = engine(sqlite(&dir), calls.clone());
    let id = engine.start(&fork_approval, N { n: 1 }).await.unwrap();
    let waiting = engine.execute(&id).await.unwrap().outcome;
    assert!(matches!(waiting, RunOutcome::Suspended(_)), "{waiting:?}");
    let token = engine.hook_token(&id, "hook#0");
    assert_eq!(
        calls.sent.lock().unwrap().clone(),
        [engine.hook_resume_url(&id, "hook#0")]
    );
    engine
        .resume_hook(&token, json!({ "n": 10 }))
        .await
        .unwrap();
    let done = engine.drive(&id).await.unwrap().outcome;
    assert_eq!(done, RunOutcome::Completed(json!({ "n": 111 })));

    // From after the hook: its delivery replays; only c runs.
    let forked = engine
        .fork_run(&id, ForkOptions::from_step("fork-c#0"))
        .await
        .unwrap();
    let done = engine.drive(&forked.run_id).await.unwrap().outcome;
    assert_eq!(done, RunOutcome::Completed(json!({ "n": 111 })));
    assert_eq!(calls.get().2, 2);

    // From the hook: the copied resume URL is the fork's own (tokens derive from the run
    // id), so the step that sent it replays without being sent again, and the fork waits
    // for a delivery to its own token; the original's token does not reach it.
    let forked = engine
        .fork_run(&id, ForkOptions::from_step("hook#0"))
        .await
        .unwrap();
    let waiting = engine.execute(&forked.run_id).await.unwrap().outcome;
    assert!(matches!(waiting, RunOutcome::Suspended(_)), "{waiting:?}");
    assert_eq!(
        calls.sent.lock().unwrap().len(),
        1,
        "the link was not sent again"
    );
    let open = engine.open_hooks(&forked.run_id).await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(
        open[0].resume_url,
        engine.hook_resume_url(&forked.run_id, "hook#0")
    );
    assert!(
        engine
            .resume_hook(&token, json!({ "n": 20 }))
            .await
            .is_err()
    );
    let fork_token = engine.hook_token(&forked.run_id, "hook#0");
    assert_eq!(
        engine
            .resume_hook(&fork_token, json!({ "n": 20 }))
            .await
            .unwrap(),
        forked.run_id
    );
    let done = engine.drive(&forked.run_id).await.unwrap().outcome;
    assert_eq!(done, RunOutcome::Completed(json!({ "n": 121 })));
}

#[tokio::test]
async fn a_hook_copied_open_takes_the_forks_token() {
    let calls = Arc::new(Calls::default());
    let engine = engine(Arc::new(reprise::store::MemoryStore::new()), calls.clone());
    let id = engine
        .start(&fork_hook_beside_a_step, N { n: 3 })
        .await
        .unwrap();
    let waiting = engine.execute(&id).await.unwrap().outcome;
    assert!(matches!(waiting, RunOutcome::Suspended(_)), "{waiting:?}");
    let events = engine.store().events(&id).await.unwrap();
    let position = |kind: EventKind, step: &str| {
        events
            .iter()
            .position(|e| e.event.kind == kind && e.event.correlation_id.as_deref() == Some(step))
            .unwrap()
    };
    assert!(
        position(EventKind::HookCreated, "hook#0") < position(EventKind::StepStarted, "fork-b#0"),
        "the hook is created before b starts"
    );

    // The fork copies the open hook; b runs live; the hook answers the fork's token.
    let forked = engine
        .fork_run(&id, ForkOptions::from_step("fork-b#0"))
        .await
        .unwrap();
    let waiting = engine.execute(&forked.run_id).await.unwrap().outcome;
    assert!(matches!(waiting, RunOutcome::Suspended(_)), "{waiting:?}");
    assert_eq!(calls.get().1, 2);
    let fork_token = engine.hook_token(&forked.run_id, "hook#0");
    engine
        .resume_hook(&fork_token, json!({ "n": 100 }))
        .await
        .unwrap();
    let done = engine.drive(&forked.run_id).await.unwrap().outcome;
    assert_eq!(done, RunOutcome::Completed(json!({ "n": 106 })));
    // The original still waits on its own hook.
    assert_eq!(
        engine.get_run(&id).await.unwrap().status,
        RunStatus::Waiting
    );
}
