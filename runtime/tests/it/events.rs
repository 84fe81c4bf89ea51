//! Events: `Engine::emit` / `POST /events`, `ctx.wait_for_event::<T>(name).matching(..)`,
//! and `#[workflow(on_event = "…")]` (issue 14, item 8). Memory store first; the SQLite
//! tests run against a file shared by two engines (two processes' worth of state).

use std::sync::Arc;
use std::time::Duration;

use reprise::event::{Event, EventKind, RunFilter, RunId, RunStatus};
use reprise::http::{HttpOptions, serve};
use reprise::prelude::*;
use reprise::store::{MemoryStore, SharedStore};
use reprise::{EngineError, RunOutcome, Trigger};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Paid {
    order_id: String,
    amount: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Order {
    order_id: String,
}

/// Waits for the payment of one order.
#[workflow(slug = "ev-await-paid")]
async fn ev_await_paid(ctx: Ctx, order: Order) -> Result<Paid, WorkflowError> {
    let paid = ctx
        .wait_for_event::<Paid>("order.paid")
        .matching("/order_id", &order.order_id)
        .await?;
    Ok(paid)
}

/// Waits for two payments of one order, in a loop.
#[workflow(slug = "ev-two-payments")]
async fn ev_two_payments(ctx: Ctx, order: Order) -> Result<Vec<u64>, WorkflowError> {
    let mut amounts = Vec::new();
    for _ in 0..2 {
        let paid = ctx
            .wait_for_event::<Paid>("order.paid")
            .matching("/order_id", &order.order_id)
            .await?;
        amounts.push(paid.amount);
    }
    Ok(amounts)
}

/// Runs `ev-two-payments` as a sub-workflow.
#[workflow(slug = "ev-parent")]
async fn ev_parent(order: Order) -> Result<Vec<u64>, WorkflowError> {
    Ok(ev_two_payments.run(order).await?)
}

/// Started once per `invoice.paid` event id.
#[workflow(slug = "ev-on-invoice", on_event = "invoice.paid")]
async fn ev_on_invoice(paid: Paid) -> Result<u64, WorkflowError> {
    Ok(paid.amount)
}

/// Started once per `race.paid` event id (the SQLite race).
#[workflow(slug = "ev-on-race", on_event = "race.paid")]
async fn ev_on_race(paid: Paid) -> Result<u64, WorkflowError> {
    Ok(paid.amount)
}

/// Races an event wait against a signal in a durable select, then waits for a second
/// payment with a 100 ms `.timeout`.
#[workflow(slug = "ev-select")]
async fn ev_select(ctx: Ctx, order: Order) -> Result<Vec<String>, WorkflowError> {
    let mut seen = Vec::new();
    reprise::select! {
        paid = ctx.wait_for_event::<Paid>("order.paid").matching("/order_id", &order.order_id) => {
            seen.push(format!("paid {}", paid?.amount));
        }
        _ = ctx.signal::<Value>("cancel").recv() => seen.push("canceled".to_owned()),
    }
    match ctx
        .wait_for_event::<Paid>("order.paid")
        .matching("/order_id", &order.order_id)
        .timeout("100ms")
        .await
    {
        Ok(paid) => seen.push(format!("paid again {}", paid.amount)),
        Err(error) if error.is_timeout() => seen.push("no second payment".to_owned()),
        Err(error) => return Err(error.into()),
    }
    Ok(seen)
}

fn engine_on(store: SharedStore) -> Engine {
    Engine::builder()
        .store(store)
        .discover()
        .unwrap()
        .run_retry_backoff(Duration::from_millis(1))
        .build()
        .unwrap()
}

fn engine() -> Engine {
    engine_on(Arc::new(MemoryStore::new()))
}

async fn events_of(engine: &Engine, id: &RunId) -> Vec<Event> {
    engine.store().events(id).await.unwrap()
}

fn paid(order_id: &str, amount: u64) -> Value {
    json!({ "order_id": order_id, "amount": amount })
}

/// Drives run `id` and expects it to wait.
async fn drive_to_wait(engine: &Engine, id: &RunId) {
    let execution = engine.drive(id).await.unwrap();
    assert!(
        matches!(execution.outcome, RunOutcome::Suspended(_)),
        "{:?}",
        execution.outcome
    );
    assert_eq!(engine.get_run(id).await.unwrap().status, RunStatus::Waiting);
}

/// Drives run `id` to its end and returns its output.
async fn drive_to_end(engine: &Engine, id: &RunId) -> Value {
    match engine.drive(id).await.unwrap().outcome {
        RunOutcome::Completed(output) => output,
        other => panic!("run {id} did not complete: {other:?}"),
    }
}

/// The receipts (`recv:event` step completions) of a run: (correlation id, output).
fn receipts(events: &[Event], callee: &str) -> Vec<(String, Value)> {
    events
        .iter()
        .filter(|e| e.event.kind == EventKind::StepCompleted && e.event.payload["callee"] == callee)
        .map(|e| {
            (
                e.event.correlation_id.clone().unwrap_or_default(),
                e.event.payload["output"].clone(),
            )
        })
        .collect()
}

/// The replay-only check of run `id` reproduces its history.
async fn replays_identically(engine: &Engine, id: &RunId) {
    let export = engine.export_run(id).await.unwrap();
    let judged = engine.check_replay(&export).await.unwrap();
    assert!(judged.is_ok(), "{:?}", judged.err());
}

#[tokio::test]
async fn an_event_wait_wins_a_select_and_times_out_with_timeout() {
    let engine = engine();
    let id = engine
        .start(
            &ev_select,
            Order {
                order_id: "S-1".into(),
            },
        )
        .await
        .unwrap();
    drive_to_wait(&engine, &id).await;
    engine
        .emit("order.paid", paid("S-1", 70), None)
        .await
        .unwrap();
    // The select is decided by the event; the second wait then times out (the timer is
    // waited for in this process by `drive`, or by a worker at its deadline).
    let first = engine.drive(&id).await.unwrap();
    if matches!(first.outcome, RunOutcome::Suspended(_)) {
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let output = drive_to_end(&engine, &id).await;
    assert_eq!(output, json!(["paid 70", "no second payment"]));
    let events = events_of(&engine, &id).await;
    let select = events
        .iter()
        .find(|e| e.event.correlation_id.as_deref() == Some("select#0"))
        .expect("the select is recorded");
    assert_eq!(select.event.payload["output"]["winner"], 0);
    assert!(
        events
            .iter()
            .any(|e| e.event.correlation_id.as_deref() == Some("timeout#0")
                && e.event.kind == EventKind::StepCompleted),
        "the timeout's select is recorded"
    );
    replays_identically(&engine, &id).await;
}

#[tokio::test]
async fn one_event_wakes_every_waiting_run_whose_match_holds() {
    let engine = engine();
    let a = engine
        .start(
            &ev_await_paid,
            Order {
                order_id: "o1".into(),
            },
        )
        .await
        .unwrap();
    let b = engine
        .start(
            &ev_await_paid,
            Order {
                order_id: "o1".into(),
            },
        )
        .await
        .unwrap();
    let c = engine
        .start(
            &ev_await_paid,
            Order {
                order_id: "o2".into(),
            },
        )
        .await
        .unwrap();
    for id in [&a, &b, &c] {
        drive_to_wait(&engine, id).await;
    }
    let emitted = engine
        .emit("order.paid", paid("o1", 5), Some("pay-1".into()))
        .await
        .unwrap();
    assert_eq!(emitted.id, "pay-1");
    assert!(!emitted.duplicate);
    assert_eq!(
        emitted.delivered, 3,
        "every waiting run gets it in its inbox"
    );
    for id in [&a, &b] {
        assert_eq!(drive_to_end(&engine, id).await, paid("o1", 5));
        let events = events_of(&engine, id).await;
        let got = receipts(&events, "recv:event");
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0, "event:order.paid#0");
        assert_eq!(
            got[0].1["payload"],
            json!({ "id": "pay-1", "data": paid("o1", 5) })
        );
        replays_identically(&engine, id).await;
    }
    // The third run's key does not match: it is woken, finds nothing and waits on.
    drive_to_wait(&engine, &c).await;
    assert!(receipts(&events_of(&engine, &c).await, "recv:event").is_empty());
    let again = engine
        .emit("order.paid", paid("o2", 9), None)
        .await
        .unwrap();
    assert_eq!(
        again.delivered, 1,
        "the ended runs are not waiting any more"
    );
    assert_eq!(again.id.len(), 36, "a fresh UUID: {}", again.id);
    assert_eq!(drive_to_end(&engine, &c).await, paid("o2", 9));
    // A repeat of an id delivers nothing twice.
    let repeat = engine
        .emit("order.paid", paid("o1", 5), Some("pay-1".into()))
        .await
        .unwrap();
    assert!(repeat.duplicate);
    assert_eq!(repeat.delivered, 0);
}

#[tokio::test]
async fn on_event_starts_one_run_per_event_id_however_often_it_is_posted() {
    let engine = engine();
    let mut started = Vec::new();
    for attempt in 0..5 {
        let emitted = engine
            .emit("invoice.paid", paid("i1", 7), Some("inv-1".into()))
            .await
            .unwrap();
        assert_eq!(emitted.duplicate, attempt > 0);
        started.extend(emitted.started);
    }
    assert_eq!(started.len(), 1, "{started:?}");
    let run = engine.get_run(&started[0]).await.unwrap();
    assert_eq!(run.workflow, "ev-on-invoice");
    assert_eq!(run.trigger, Trigger::Event);
    assert_eq!(run.input, paid("i1", 7));
    let created = events_of(&engine, &started[0]).await;
    let by = reprise::started_by_event(&created).expect("run_created names the event");
    assert_eq!(
        (by.name.as_str(), by.id.as_str()),
        ("invoice.paid", "inv-1")
    );
    assert_eq!(drive_to_end(&engine, &started[0]).await, json!(7));
    let runs = engine
        .store()
        .list_runs(&RunFilter {
            workflow: Some("ev-on-invoice".into()),
            ..RunFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(runs.len(), 1);

    // Another id: another run.
    let second = engine
        .emit("invoice.paid", paid("i2", 8), Some("inv-2".into()))
        .await
        .unwrap();
    assert_eq!(second.started.len(), 1);

    // Data that is not a valid input starts nothing, and says why.
    let bad = engine
        .emit(
            "invoice.paid",
            json!({ "order_id": "i3" }),
            Some("inv-3".into()),
        )
        .await
        .unwrap();
    assert!(bad.started.is_empty());
    assert_eq!(bad.rejected.len(), 1, "{bad:?}");
    assert_eq!(bad.rejected[0].workflow, "ev-on-invoice");
    assert!(bad.rejected[0].reason.contains("amount"), "{bad:?}");
}

#[tokio::test]
async fn data_failing_the_waits_schema_is_rejected_and_recorded_and_the_run_waits_on() {
    let engine = engine();
    let id = engine
        .start(
            &ev_await_paid,
            Order {
                order_id: "o1".into(),
            },
        )
        .await
        .unwrap();
    drive_to_wait(&engine, &id).await;
    let emitted = engine
        .emit(
            "order.paid",
            json!({ "order_id": "o1", "amount": "lots" }),
            Some("bad-1".into()),
        )
        .await
        .unwrap();
    assert_eq!(emitted.delivered, 1);
    drive_to_wait(&engine, &id).await;
    let events = events_of(&engine, &id).await;
    let rejected = receipts(&events, "recv:event-rejected");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].0, "event:order.paid#0/rejected@1");
    assert_eq!(rejected[0].1["id"], "bad-1");
    let reason = rejected[0].1["reason"].as_str().unwrap();
    assert!(reason.contains("/amount"), "{reason}");
    assert!(receipts(&events, "recv:event").is_empty(), "not satisfied");

    // Resumed again, the rejection is not recorded twice; a valid event completes it.
    engine
        .emit("order.paid", paid("o1", 3), Some("good-1".into()))
        .await
        .unwrap();
    assert_eq!(drive_to_end(&engine, &id).await, paid("o1", 3));
    let events = events_of(&engine, &id).await;
    assert_eq!(receipts(&events, "recv:event-rejected").len(), 1);
    assert_eq!(receipts(&events, "recv:event")[0].1["seq"], 2);
    replays_identically(&engine, &id).await;
}

#[tokio::test]
async fn an_event_emitted_before_the_wait_registered_is_not_seen() {
    let engine = engine();
    let id = engine
        .start(
            &ev_await_paid,
            Order {
                order_id: "o1".into(),
            },
        )
        .await
        .unwrap();
    let early = engine
        .emit("order.paid", paid("o1", 1), Some("early".into()))
        .await
        .unwrap();
    assert_eq!(early.delivered, 0, "nobody waits yet");
    drive_to_wait(&engine, &id).await;
    engine
        .emit("order.paid", paid("o1", 2), Some("late".into()))
        .await
        .unwrap();
    assert_eq!(drive_to_end(&engine, &id).await, paid("o1", 2));
}

#[tokio::test]
async fn waits_in_a_loop_inside_a_sub_workflow_receive_two_events() {
    let engine = engine();
    let id = engine
        .start(
            &ev_parent,
            Order {
                order_id: "o1".into(),
            },
        )
        .await
        .unwrap();
    drive_to_wait(&engine, &id).await;
    engine
        .emit("order.paid", paid("o1", 1), Some("p1".into()))
        .await
        .unwrap();
    drive_to_wait(&engine, &id).await;
    let second = engine
        .emit("order.paid", paid("o1", 2), Some("p2".into()))
        .await
        .unwrap();
    assert_eq!(second.delivered, 1, "the second wait registered again");
    assert_eq!(drive_to_end(&engine, &id).await, json!([1, 2]));
    let events = events_of(&engine, &id).await;
    let ids: Vec<String> = receipts(&events, "recv:event")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        ids,
        [
            "ev-two-payments#0/event:order.paid#0",
            "ev-two-payments#0/event:order.paid#1"
        ]
    );
    replays_identically(&engine, &id).await;
}

#[tokio::test]
async fn a_wait_survives_a_restart_on_the_same_memory_store() {
    let store: SharedStore = Arc::new(MemoryStore::new());
    let id = {
        let first = engine_on(store.clone());
        let id = first
            .start(
                &ev_two_payments,
                Order {
                    order_id: "o1".into(),
                },
            )
            .await
            .unwrap();
        drive_to_wait(&first, &id).await;
        first
            .emit("order.paid", paid("o1", 4), Some("r1".into()))
            .await
            .unwrap();
        id
    };
    // A fresh engine (a restarted process) replays the log and goes on.
    let second = engine_on(store);
    drive_to_wait(&second, &id).await;
    second
        .emit("order.paid", paid("o1", 6), Some("r2".into()))
        .await
        .unwrap();
    assert_eq!(drive_to_end(&second, &id).await, json!([4, 6]));
    replays_identically(&second, &id).await;
}

#[tokio::test]
async fn bad_names_and_oversized_data_are_refused_and_nothing_is_recorded() {
    let engine = engine();
    for name in ["", "order paid", "a\u{7}b"] {
        let error = engine.emit(name, json!({}), None).await.unwrap_err();
        assert!(
            matches!(&error, EngineError::Schema(v) if v.violations[0].pointer == "/name"),
            "{error}"
        );
    }
    let error = engine
        .emit("order.paid", json!({}), Some(String::new()))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, EngineError::Schema(v) if v.violations[0].pointer == "/id"),
        "{error}"
    );
    let huge = json!({ "blob": "x".repeat(2 * 1024 * 1024) });
    let error = engine
        .emit("order.paid", huge, Some("big".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(error, EngineError::PayloadTooLarge { .. }),
        "{error}"
    );
    // Nothing was recorded: the same id is new.
    let emitted = engine
        .emit("order.paid", json!({}), Some("big".into()))
        .await
        .unwrap();
    assert!(!emitted.duplicate);
}

#[cfg(feature = "sqlite")]
fn sqlite(path: &std::path::Path) -> SharedStore {
    Arc::new(reprise::store::SqliteStore::open(path).unwrap())
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn two_engines_on_one_sqlite_file_racing_one_event_id_start_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let a = engine_on(sqlite(&path));
    let b = engine_on(sqlite(&path));
    let emits = (0..5).map(|i| {
        let engine = if i % 2 == 0 { a.clone() } else { b.clone() };
        tokio::spawn(async move {
            engine
                .emit("race.paid", paid("r", 1), Some("race-1".into()))
                .await
                .unwrap()
        })
    });
    let mut started = Vec::new();
    let mut fresh = 0;
    for emit in emits.collect::<Vec<_>>() {
        let emitted = emit.await.unwrap();
        fresh += usize::from(!emitted.duplicate);
        started.extend(emitted.started);
    }
    assert_eq!(started.len(), 1, "{started:?}");
    assert!(fresh >= 1);
    let runs = a
        .store()
        .list_runs(&RunFilter {
            workflow: Some("ev-on-race".into()),
            ..RunFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(runs.len(), 1);
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn a_wait_on_sqlite_is_delivered_by_another_process_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let id = {
        let first = engine_on(sqlite(&path));
        let id = first
            .start(
                &ev_await_paid,
                Order {
                    order_id: "o1".into(),
                },
            )
            .await
            .unwrap();
        drive_to_wait(&first, &id).await;
        id
    };
    let sender = engine_on(sqlite(&path));
    let emitted = sender
        .emit("order.paid", paid("o1", 12), Some("s1".into()))
        .await
        .unwrap();
    assert_eq!(emitted.delivered, 1);
    let worker = engine_on(sqlite(&path));
    assert_eq!(drive_to_end(&worker, &id).await, paid("o1", 12));
    replays_identically(&worker, &id).await;
}

/// A server over a memory-store engine; returns its base URL.
async fn server(engine: Engine, options: HttpOptions) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(
        engine,
        listener,
        options,
        std::future::pending::<()>(),
    ));
    base
}

async fn post(client: &reqwest::Client, url: &str, body: &str) -> (StatusCode, Value) {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn post_events_answers_202_with_the_facts_and_refuses_bad_bodies() {
    let engine = engine();
    let id = engine
        .start(
            &ev_await_paid,
            Order {
                order_id: "o1".into(),
            },
        )
        .await
        .unwrap();
    drive_to_wait(&engine, &id).await;
    let base = server(
        engine.clone(),
        HttpOptions {
            api_token: None,
            ..HttpOptions::default()
        },
    )
    .await;
    let client = reqwest::Client::new();
    let url = format!("{base}/events");
    let body = json!({ "name": "order.paid", "data": paid("o1", 2), "id": "h-1" }).to_string();
    let (status, answer) = post(&client, &url, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["id"], "h-1");
    assert_eq!(answer["duplicate"], false);
    assert_eq!(answer["delivered"], 1);
    assert_eq!(answer["started"], json!([]));
    let (status, answer) = post(&client, &url, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["duplicate"], true);
    assert_eq!(drive_to_end(&engine, &id).await, paid("o1", 2));

    // An on_event start: `GET /runs/{id}` names the event that started the run.
    let invoice = json!({ "name": "invoice.paid", "data": paid("i9", 4), "id": "h-inv" });
    let (status, answer) = post(&client, &url, &invoice.to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let run = answer["started"][0].as_str().unwrap().to_owned();
    let detail: Value = client
        .get(format!("{base}/runs/{run}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(detail["trigger"], "event", "{detail}");
    assert_eq!(
        detail["event"],
        json!({ "name": "invoice.paid", "id": "h-inv" }),
        "{detail}"
    );

    let (status, answer) = post(&client, &url, r#"{"name": "bad name", "data": {}}"#).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["violations"][0]["pointer"], "/name", "{answer}");
    let (status, answer) = post(&client, &url, r#"{"data": {}}"#).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("name"),
        "{answer}"
    );
    let (status, answer) = post(&client, &url, r#"{"name": "order.paid", "data": "#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("JSON"),
        "{answer}"
    );

    // The cross-site rules of every write route: JSON only, same site only.
    let plain = client
        .post(&url)
        .header("content-type", "text/plain")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let cross = client
        .post(&url)
        .header("content-type", "application/json")
        .header("sec-fetch-site", "cross-site")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);

    // Like every write route, it wants the bearer token when the server has one.
    let locked = server(
        engine,
        HttpOptions {
            api_token: Some("s3cret-token-for-events".into()),
            ..HttpOptions::default()
        },
    )
    .await;
    let (status, _) = post(&client, &format!("{locked}/events"), &body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_worker_resumes_a_waiting_run_when_its_event_is_emitted() {
    let engine = engine();
    let worker = reprise::Worker::new(
        &engine,
        reprise::WorkerOptions {
            poll_interval: Duration::from_millis(20),
            ..reprise::WorkerOptions::default()
        },
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let stopped = stop.clone();
    let handle = tokio::spawn(worker.run(async move { stopped.cancelled().await }));
    let id = engine
        .start(
            &ev_two_payments,
            Order {
                order_id: "w1".into(),
            },
        )
        .await
        .unwrap();
    let until = |status: RunStatus| {
        let engine = engine.clone();
        let id = id.clone();
        async move {
            for _ in 0..500 {
                if engine.get_run(&id).await.unwrap().status == status {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("run {id} never became {status}");
        }
    };
    until(RunStatus::Waiting).await;
    engine
        .emit("order.paid", paid("w1", 1), Some("w-1".into()))
        .await
        .unwrap();
    // The second wait registers once the first receipt is recorded.
    for _ in 0..500 {
        let events = events_of(&engine, &id).await;
        if receipts(&events, "recv:event").len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    until(RunStatus::Waiting).await;
    // Waiting again means the second wait registered (before it suspended).
    let second = engine
        .emit("order.paid", paid("w1", 2), Some("w-2".into()))
        .await
        .unwrap();
    assert_eq!(second.delivered, 1);
    until(RunStatus::Completed).await;
    assert_eq!(
        engine.get_run(&id).await.unwrap().output,
        Some(json!([1, 2]))
    );
    stop.cancel();
    handle.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_run_waiting_for_an_event_passes_the_replay_check() {
    let engine = engine();
    let id = engine
        .start(
            &ev_await_paid,
            Order {
                order_id: "o1".into(),
            },
        )
        .await
        .unwrap();
    drive_to_wait(&engine, &id).await;
    engine
        .emit(
            "order.paid",
            json!({ "order_id": "o1" }),
            Some("bad".into()),
        )
        .await
        .unwrap();
    drive_to_wait(&engine, &id).await;
    replays_identically(&engine, &id).await;
}

/// Fails for good.
#[action]
async fn ev_refuse(order: Order) -> Result<Order, ActionError> {
    Err(ActionError::new(
        "refused",
        format!("no {}", order.order_id),
        false,
    ))
}

/// Waits for the payment while another branch fails: the run ends with its wait open.
#[workflow(slug = "ev-fail-while-waiting", max_attempts = 1)]
async fn ev_fail_while_waiting(ctx: Ctx, order: Order) -> Result<u64, WorkflowError> {
    let wait = ctx
        .wait_for_event::<Paid>("order.paid")
        .matching("/order_id", &order.order_id);
    let (paid, _) = futures::try_join!(wait.into_future(), ev_refuse.run(order.clone()))?;
    Ok(paid.amount)
}

#[tokio::test]
async fn a_run_that_ends_while_waiting_is_no_longer_a_waiter() {
    let engine = engine();
    let id = engine
        .start(
            &ev_fail_while_waiting,
            Order {
                order_id: "f1".into(),
            },
        )
        .await
        .unwrap();
    let outcome = engine.drive(&id).await.unwrap().outcome;
    assert!(matches!(outcome, RunOutcome::Failed(_)), "{outcome:?}");
    assert!(
        engine
            .store()
            .event_waiters("order.paid")
            .await
            .unwrap()
            .is_empty(),
        "the ended run's registration is removed"
    );
}

/// Waits for two orders' payments at once.
#[workflow(slug = "ev-both-paid")]
async fn ev_both_paid(ctx: Ctx, orders: Vec<Order>) -> Result<u64, WorkflowError> {
    let first = ctx
        .wait_for_event::<Paid>("order.paid")
        .matching("/order_id", &orders[0].order_id);
    let second = ctx
        .wait_for_event::<Paid>("order.paid")
        .matching("/order_id", &orders[1].order_id);
    let (a, b) = futures::join!(first.into_future(), second.into_future());
    Ok(a?.amount + b?.amount)
}

#[tokio::test]
async fn two_waits_for_one_name_at_once_each_get_their_event() {
    let engine = engine();
    let orders = vec![
        Order {
            order_id: "j1".into(),
        },
        Order {
            order_id: "j2".into(),
        },
    ];
    let id = engine.start(&ev_both_paid, orders).await.unwrap();
    drive_to_wait(&engine, &id).await;
    engine
        .emit("order.paid", paid("j1", 1), Some("j-1".into()))
        .await
        .unwrap();
    drive_to_wait(&engine, &id).await;
    let second = engine
        .emit("order.paid", paid("j2", 2), Some("j-2".into()))
        .await
        .unwrap();
    assert_eq!(
        second.delivered, 1,
        "the other wait still holds the registration"
    );
    assert_eq!(drive_to_end(&engine, &id).await, json!(3));
    let ids: Vec<String> = receipts(&events_of(&engine, &id).await, "recv:event")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, ["event:order.paid#0", "event:order.paid#1"]);
    replays_identically(&engine, &id).await;
}
