//! The worker: claiming due runs, durable sleep across a restart, hook timeouts,
//! cancellation of running, sleeping and waiting runs, graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use reprise::event::{EventKind, RunId, RunStatus};
use reprise::prelude::*;
use reprise::{CancelOutcome, EngineError, Worker, WorkerOptions, WorkerReport};
use serde_json::json;
use tokio::sync::oneshot;

use crate::engine::{Calls, Num, add_one};

/// A worker running on its own task until the returned sender fires (or is dropped).
pub(crate) fn spawn_worker(
    engine: &Engine,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<WorkerReport, EngineError>>,
) {
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = Worker::new(
        engine,
        WorkerOptions {
            poll_interval: Duration::from_millis(50),
            shutdown_grace: Duration::from_secs(5),
            ..WorkerOptions::default()
        },
    );
    let handle = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    (stop, handle)
}

async fn wait_status(engine: &Engine, id: &RunId, status: RunStatus) {
    for _ in 0..400 {
        if engine.get_run(id).await.unwrap().status == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let record = engine.get_run(id).await.unwrap();
    panic!("run {id} is {} after 4 s, expected {status}", record.status);
}

fn kinds(events: &[reprise::event::Event]) -> Vec<EventKind> {
    events.iter().map(|e| e.event.kind).collect()
}

#[workflow(slug = "nap")]
async fn nap(ctx: Ctx, input: Num) -> Result<Num, WorkflowError> {
    let a = add_one.run(input).await?;
    ctx.sleep(Duration::from_millis(300)).await?;
    let b = add_one.run(a).await?;
    Ok(b)
}

// Not `long-nap`: `hot_runs::long_nap` has that slug, and one slug names one step.
#[workflow(slug = "hour-nap")]
async fn long_nap(ctx: Ctx, input: Num) -> Result<Num, WorkflowError> {
    ctx.sleep("1h").await?;
    Ok(input)
}

fn engine_with(store: reprise::store::SharedStore, calls: &Arc<Calls>) -> Engine {
    Engine::builder()
        .store(store)
        .register(nap)
        .register(long_nap)
        .register(approve_or_expire)
        .register(slow_then_more)
        .register(add_one)
        .register(slow)
        .shared_resource(calls.clone())
        .lease(Duration::from_millis(600))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_runs_started_runs_and_wakes_sleeping_ones() {
    let calls = Arc::new(Calls::default());
    let engine = engine_with(Arc::new(reprise::store::MemoryStore::new()), &calls);
    let (stop, worker) = spawn_worker(&engine);
    let id = engine.start(&nap, Num { n: 1 }).await.unwrap();
    let record = engine
        .wait_for_end(&id, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(record.status, RunStatus::Completed);
    assert_eq!(record.output, Some(json!({ "n": 3 })));
    assert_eq!(calls.all(), ["add-one#0", "add-one@2#0"]);
    let events = engine.events(&id).await.unwrap();
    let kinds = kinds(&events);
    assert!(kinds.contains(&EventKind::SleepStarted) && kinds.contains(&EventKind::SleepCompleted));
    stop.send(()).unwrap();
    let report = worker.await.unwrap().unwrap();
    assert_eq!(
        (report.completed, report.suspended, report.errors),
        (1, 1, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleep_survives_a_restart_of_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reprise.db");
    let calls = Arc::new(Calls::default());
    let id = {
        let store = Arc::new(reprise::store::SqliteStore::open(&path).unwrap());
        let engine = engine_with(store, &calls);
        let (stop, worker) = spawn_worker(&engine);
        let id = engine.start(&nap, Num { n: 10 }).await.unwrap();
        wait_status(&engine, &id, RunStatus::Sleeping).await;
        let record = engine.get_run(&id).await.unwrap();
        assert!(
            record.wake_at.is_some(),
            "a sleeping run records its wake-up time"
        );
        stop.send(()).unwrap();
        worker.await.unwrap().unwrap();
        id
        // The engine and its store are dropped here: the "process" ends mid-sleep.
    };
    assert_eq!(calls.all(), ["add-one#0"]);

    let store = Arc::new(reprise::store::SqliteStore::open(&path).unwrap());
    let engine = engine_with(store, &calls);
    assert_eq!(
        engine.get_run(&id).await.unwrap().status,
        RunStatus::Sleeping
    );
    let (stop, worker) = spawn_worker(&engine);
    let record = engine
        .wait_for_end(&id, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(record.status, RunStatus::Completed);
    assert_eq!(record.output, Some(json!({ "n": 12 })));
    // The first step replayed from the log; only the one after the sleep ran now.
    assert_eq!(calls.all(), ["add-one#0", "add-one@2#0"]);
    let events = engine.events(&id).await.unwrap();
    let sleeps = kinds(&events)
        .into_iter()
        .filter(|k| *k == EventKind::SleepStarted)
        .count();
    assert_eq!(sleeps, 1, "the sleep is not started again on replay");
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Decision {
    approved: bool,
}

#[workflow(slug = "approve-or-expire")]
async fn approve_or_expire(ctx: Ctx, input: Num) -> Result<String, WorkflowError> {
    let timeout = Duration::from_millis(u64::try_from(input.n).unwrap_or(0));
    match ctx.hook::<Decision>().timeout(timeout).await {
        Ok(decision) => Ok(format!("approved: {}", decision.approved)),
        Err(error) if error.kind == reprise::kinds::TIMEOUT => Ok("expired".to_owned()),
        Err(error) => Err(error.into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_times_out_and_refuses_late_payloads() {
    let calls = Arc::new(Calls::default());
    let engine = engine_with(Arc::new(reprise::store::MemoryStore::new()), &calls);
    let (stop, worker) = spawn_worker(&engine);
    let id = engine
        .start(&approve_or_expire, Num { n: 300 })
        .await
        .unwrap();
    wait_status(&engine, &id, RunStatus::Waiting).await;
    let hooks = engine.open_hooks(&id).await.unwrap();
    assert_eq!(hooks.len(), 1);
    assert!(hooks[0].timeout_at.is_some());
    assert!(
        hooks[0]
            .resume_url
            .ends_with(&format!("/hooks/{}", hooks[0].token))
    );
    let record = engine
        .wait_for_end(&id, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(record.output, Some(json!("expired")));
    let error = engine
        .resume_hook(&hooks[0].token, json!({ "approved": true }))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, EngineError::InvalidState { message, .. } if message.contains("timed out")),
        "{error}"
    );

    // Delivered in time, the payload wins, and a second delivery is refused.
    let id = engine
        .start(&approve_or_expire, Num { n: 60_000 })
        .await
        .unwrap();
    wait_status(&engine, &id, RunStatus::Waiting).await;
    let token = engine.open_hooks(&id).await.unwrap()[0].token.clone();
    engine
        .resume_hook(&token, json!({ "approved": true }))
        .await
        .unwrap();
    let again = engine
        .resume_hook(&token, json!({ "approved": false }))
        .await;
    assert!(
        matches!(again, Err(EngineError::InvalidState { .. })),
        "{again:?}"
    );
    let record = engine
        .wait_for_end(&id, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(record.output, Some(json!("approved: true")));
    let unknown = engine.resume_hook("not-a-token", json!({})).await;
    assert!(
        matches!(unknown, Err(EngineError::UnknownHook)),
        "{unknown:?}"
    );
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
}

/// Counts its starts and finishes; waits up to `n` ms, or until the run is canceled.
#[action]
async fn slow(input: Num, cx: ActionCtx) -> Result<Num, ActionError> {
    cx.resource::<Calls>()?.push(&cx);
    tokio::select! {
        () = tokio::time::sleep(Duration::from_millis(u64::try_from(input.n).unwrap_or(0))) => {}
        () = cx.cancellation().cancelled() => {
            return Ok(Num { n: -1 });
        }
    }
    Ok(input)
}

#[workflow(slug = "slow-then-more")]
async fn slow_then_more(input: Num) -> Result<Num, WorkflowError> {
    let a = slow.run(input).await?;
    let b = add_one.run(a).await?;
    Ok(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_running_sleeping_and_waiting_runs() {
    let calls = Arc::new(Calls::default());
    let engine = engine_with(Arc::new(reprise::store::MemoryStore::new()), &calls);
    let (stop, worker) = spawn_worker(&engine);

    // Running: the action sees the token, its result is recorded, and the next step never
    // starts.
    let running = engine
        .start(&slow_then_more, Num { n: 60_000 })
        .await
        .unwrap();
    wait_status(&engine, &running, RunStatus::Running).await;
    while calls.count("slow#0") == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        engine.cancel(&running).await.unwrap(),
        CancelOutcome::Requested
    );
    let record = engine
        .wait_for_end(&running, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(record.status, RunStatus::Canceled);
    assert_eq!(calls.count("add-one"), 0, "no step starts after a cancel");
    let events = engine.events(&running).await.unwrap();
    let completed: Vec<_> = events
        .iter()
        .filter(|e| e.event.kind == EventKind::StepCompleted)
        .map(|e| e.event.payload["output"].clone())
        .collect();
    assert_eq!(
        completed,
        [json!({ "n": -1 })],
        "the action's own result is recorded"
    );
    assert_eq!(events.last().unwrap().event.kind, EventKind::RunCanceled);

    // Sleeping: canceled at once.
    let sleeping = engine.start(&long_nap, Num { n: 0 }).await.unwrap();
    wait_status(&engine, &sleeping, RunStatus::Sleeping).await;
    assert_eq!(
        engine.cancel(&sleeping).await.unwrap(),
        CancelOutcome::Canceled
    );
    assert_eq!(
        engine.get_run(&sleeping).await.unwrap().status,
        RunStatus::Canceled
    );

    // Waiting: canceled at once; its hook takes no payload any more.
    let waiting = engine
        .start(&approve_or_expire, Num { n: 60_000 })
        .await
        .unwrap();
    wait_status(&engine, &waiting, RunStatus::Waiting).await;
    let token = engine.open_hooks(&waiting).await.unwrap()[0].token.clone();
    assert_eq!(
        engine.cancel(&waiting).await.unwrap(),
        CancelOutcome::Canceled
    );
    assert_eq!(
        engine.get_run(&waiting).await.unwrap().status,
        RunStatus::Canceled
    );
    let late = engine
        .resume_hook(&token, json!({ "approved": true }))
        .await;
    assert!(
        matches!(late, Err(EngineError::InvalidState { .. })),
        "{late:?}"
    );

    // Finished: refused.
    let finished = engine.cancel(&waiting).await.unwrap_err();
    assert!(
        matches!(finished, EngineError::InvalidState { .. }),
        "{finished}"
    );
    stop.send(()).unwrap();
    let report = worker.await.unwrap().unwrap();
    assert_eq!(report.canceled, 1, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_running_step_finish_and_hands_the_run_back() {
    let calls = Arc::new(Calls::default());
    let store: reprise::store::SharedStore = Arc::new(reprise::store::MemoryStore::new());
    let engine = engine_with(store.clone(), &calls);
    let (stop, worker) = spawn_worker(&engine);
    let id = engine.start(&slow_then_more, Num { n: 300 }).await.unwrap();
    while calls.count("slow#0") == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.send(()).unwrap();
    let report = worker.await.unwrap().unwrap();
    assert_eq!(report.interrupted, 1, "{report:?}");
    let record = engine.get_run(&id).await.unwrap();
    assert_eq!(record.status, RunStatus::Queued, "handed back to the queue");
    let events = engine.events(&id).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.event.kind == EventKind::StepCompleted
                && e.event.correlation_id.as_deref() == Some("slow#0")),
        "the step in flight finished and was recorded"
    );
    assert_eq!(calls.count("add-one"), 0);

    // Another worker (another engine on the same store) continues from the log.
    let other = engine_with(store, &calls);
    let (stop, worker) = spawn_worker(&other);
    let record = other
        .wait_for_end(&id, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(record.output, Some(json!({ "n": 301 })));
    assert_eq!(
        calls.count("slow#0"),
        1,
        "the recorded step did not run again"
    );
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_leased_by_another_worker_is_not_executed() {
    let calls = Arc::new(Calls::default());
    let store: reprise::store::SharedStore = Arc::new(reprise::store::MemoryStore::new());
    let busy = engine_with(store.clone(), &calls);
    let id = busy.start(&slow_then_more, Num { n: 400 }).await.unwrap();
    let execution = tokio::spawn({
        let busy = busy.clone();
        let id = id.clone();
        async move { busy.execute(&id).await }
    });
    while calls.count("slow#0") == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let other = engine_with(store, &calls);
    let error = other.execute(&id).await.unwrap_err();
    assert!(matches!(error, EngineError::Leased { .. }), "{error}");
    let same = busy.execute(&id).await.unwrap_err();
    assert!(matches!(same, EngineError::Leased { .. }), "{same}");
    // The lease outlives several renewal periods of the 600 ms lease.
    let execution = execution.await.unwrap().unwrap();
    assert_eq!(
        execution.outcome,
        reprise::RunOutcome::Completed(json!({ "n": 401 }))
    );
    assert_eq!(calls.count("slow#0"), 1);
}

/// Sends a hook's resume URL through a step, then waits for the decision.
#[workflow(slug = "send-url-then-wait")]
async fn send_url_then_wait(ctx: Ctx, _input: Num) -> Result<String, WorkflowError> {
    let hook = ctx.hook::<Decision>();
    let url = hook.resume_url();
    echo_url.run(url.clone()).await?;
    let decision = hook.await?;
    Ok(format!("{url} {}", decision.approved))
}

/// Returns its input (stands for "send the URL to a person").
#[action]
async fn echo_url(input: String) -> Result<String, ActionError> {
    Ok(input)
}

#[tokio::test]
async fn a_resume_url_is_recorded_so_a_process_with_another_public_url_replays_it() {
    let store: reprise::store::SharedStore = Arc::new(reprise::store::MemoryStore::new());
    let engine_at = |url: &str| {
        Engine::builder()
            .store(store.clone())
            .register(send_url_then_wait)
            .register(echo_url)
            .hook_secret(vec![7; 32])
            .public_url(url)
            .build()
            .unwrap()
    };
    let first = engine_at("http://first.example");
    let id = first
        .start_json(
            "send-url-then-wait",
            json!({ "n": 1 }),
            reprise::Trigger::Code,
        )
        .await
        .unwrap();
    first.execute(&id).await.unwrap();
    let hooks = first.open_hooks(&id).await.unwrap();
    assert!(
        hooks[0]
            .resume_url
            .starts_with("http://first.example/hooks/")
    );

    // Another process, configured with another public URL, delivers and replays.
    let second = engine_at("http://second.example");
    assert_eq!(
        second.open_hooks(&id).await.unwrap()[0].resume_url,
        hooks[0].resume_url,
        "the URL the run sent, not this process's"
    );
    second
        .resume_hook(&hooks[0].token, json!({ "approved": true }))
        .await
        .unwrap();
    let execution = second.drive(&id).await.unwrap();
    assert_eq!(
        execution.outcome,
        reprise::RunOutcome::Completed(json!(format!("{} true", hooks[0].resume_url)))
    );
}

/// Issue 12, defect 12: nonsensical worker settings are refused with a message naming the
/// setting, never silently clamped (a worker of concurrency 0 used to run forever doing
/// nothing, a zero lease was raised to 30 ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonsensical_worker_settings_are_refused_not_clamped() {
    let engine = Engine::builder().register(add_one).build().unwrap();
    let settings = [
        (
            WorkerOptions {
                concurrency: 0,
                ..WorkerOptions::default()
            },
            "concurrency is 0",
        ),
        (
            WorkerOptions {
                poll_interval: Duration::ZERO,
                ..WorkerOptions::default()
            },
            "poll_interval is zero",
        ),
    ];
    for (options, wanted) in settings {
        // It must return at once, without waiting for a shutdown that never comes.
        let run = Worker::new(&engine, options).run(std::future::pending());
        let result = tokio::time::timeout(Duration::from_secs(5), run)
            .await
            .expect("the worker started instead of refusing its options");
        match result {
            Err(EngineError::Config(message)) => assert!(message.contains(wanted), "{message}"),
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }
    for lease in [
        Duration::ZERO,
        Duration::from_millis(100),
        Duration::from_secs(2 * 86_400),
    ] {
        match Engine::builder().lease(lease).build() {
            Err(EngineError::Config(message)) => {
                assert!(message.contains("lease"), "{message}");
            }
            Ok(engine) => panic!(
                "a lease of {lease:?} was accepted as {:?}",
                engine.lease_duration()
            ),
            Err(other) => panic!("{other}"),
        }
    }
    let engine = Engine::builder()
        .lease(reprise::EngineBuilder::MIN_LEASE)
        .build()
        .unwrap();
    assert_eq!(engine.lease_duration(), Duration::from_millis(500));
}
