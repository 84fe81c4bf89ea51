//! Delayed starts (`StartOptions::start_at`, `POST /workflows/{slug}?delay=`): the run is
//! `queued` with its due time, no worker claims it before, it completes after; composes
//! with `Idempotency-Key`; malformed values are a 400.

use std::sync::Arc;
use std::time::Duration;

use reprise::event::{EventKind, EventPayload, RunId, RunStatus};
use reprise::http::{HttpOptions, serve};
use reprise::prelude::*;
use reprise::{StartOptions, Trigger, Worker, WorkerOptions};

use crate::worker::spawn_worker;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Later {
    n: u32,
}

/// Adds one.
#[action]
async fn later_add(input: Later) -> Result<Later, ActionError> {
    Ok(Later { n: input.n + 1 })
}

/// Adds one, once started.
#[workflow(slug = "delayed-add")]
async fn delayed_add(input: Later) -> Result<Later, WorkflowError> {
    Ok(later_add.run(input).await?)
}

fn engine() -> Engine {
    Engine::builder()
        .store(Arc::new(reprise::store::MemoryStore::new()))
        .register(delayed_add)
        .register(later_add)
        .build()
        .unwrap()
}

/// The `start_at` its `run_created` event recorded.
async fn recorded_start(engine: &Engine, id: &RunId) -> Option<chrono::DateTime<chrono::Utc>> {
    let events = engine.events(id).await.unwrap();
    let created = &events[0].event;
    assert_eq!(created.kind, EventKind::RunCreated);
    match EventPayload::decode(created.kind, &created.payload).unwrap() {
        EventPayload::RunCreated { start_at, .. } => start_at,
        other => panic!("not run_created: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_run_is_not_claimed_before_its_time_and_completes_after() {
    let engine = engine();
    let (stop, worker) = spawn_worker(&engine);
    let at = engine.now() + chrono::Duration::milliseconds(600);
    let (id, created) = engine
        .start_with(
            "delayed-add",
            json!({ "n": 1 }),
            Trigger::Api,
            StartOptions::new().start_at(at),
        )
        .await
        .unwrap();
    assert!(created);
    let record = engine.get_run(&id).await.unwrap();
    assert_eq!(record.status, RunStatus::Queued);
    assert_eq!(record.wake_at, Some(at));
    assert_eq!(recorded_start(&engine, &id).await, Some(at));
    // A polling worker leaves it alone until its time.
    while engine.now() < at - chrono::Duration::milliseconds(100) {
        let record = engine.get_run(&id).await.unwrap();
        assert_eq!(record.status, RunStatus::Queued, "claimed before its time");
        assert_eq!(record.attempt, 0);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let record = engine
        .wait_for_end(&id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(record.status, RunStatus::Completed);
    assert_eq!(record.output, Some(json!({ "n": 2 })));
    let events = engine.events(&id).await.unwrap();
    let started = events
        .iter()
        .find(|e| e.event.kind == EventKind::RunStarted)
        .unwrap();
    assert!(
        started.event.at >= at,
        "started at {} before {at}",
        started.event.at
    );
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_time_in_the_past_starts_at_once() {
    let engine = engine();
    let at = engine.now() - chrono::Duration::hours(1);
    let (id, _) = engine
        .start_with(
            "delayed-add",
            json!({ "n": 5 }),
            Trigger::Code,
            StartOptions::new().start_at(at),
        )
        .await
        .unwrap();
    let record = engine.get_run(&id).await.unwrap();
    assert_eq!(record.wake_at, None, "due at once");
    assert_eq!(recorded_start(&engine, &id).await, Some(at));
    let (stop, worker) = spawn_worker(&engine);
    let record = engine
        .wait_for_end(&id, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(record.output, Some(json!({ "n": 6 })));
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_start_without_a_time_records_none() {
    let engine = engine();
    let id = engine
        .start_json("delayed-add", json!({ "n": 1 }), Trigger::Code)
        .await
        .unwrap();
    assert_eq!(recorded_start(&engine, &id).await, None);
    let events = engine.events(&id).await.unwrap();
    assert!(
        events[0].event.payload.get("start_at").is_none(),
        "{:?}",
        events[0]
    );
}

/// A server on 127.0.0.1:0 with a worker behind it.
async fn server() -> (String, Engine, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let engine = engine();
    let (stop, stopped) = oneshot::channel::<()>();
    let options = HttpOptions {
        api_token: None,
        ..HttpOptions::default()
    };
    tokio::spawn(serve(engine.clone(), listener, options, async {
        let _ = stopped.await;
    }));
    let worker = Worker::new(
        &engine,
        WorkerOptions {
            poll_interval: Duration::from_millis(20),
            ..WorkerOptions::default()
        },
    );
    tokio::spawn(worker.run(std::future::pending::<()>()));
    (base, engine, stop)
}

async fn post(url: &str, body: Value, key: Option<&str>) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().post(url).json(&body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
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
async fn http_delay_queues_the_run_until_then() {
    let (base, engine, stop) = server().await;
    let before = engine.now();
    let (status, body) = post(
        &format!("{base}/workflows/delayed-add?delay=600ms"),
        json!({ "n": 10 }),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "queued");
    let id = RunId(body["run_id"].as_str().unwrap().to_owned());
    let record = engine.get_run(&id).await.unwrap();
    let wake_at = record.wake_at.expect("a due time");
    assert!(
        wake_at >= before + chrono::Duration::milliseconds(600),
        "{wake_at}"
    );
    assert_eq!(recorded_start(&engine, &id).await, Some(wake_at));
    // GET /runs/{id} shows it queued with its due time.
    let shown: Value = reqwest::get(format!("{base}/runs/{id}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["status"], "queued", "{shown}");
    assert!(!shown["wake_at"].is_null(), "{shown}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(engine.get_run(&id).await.unwrap().status, RunStatus::Queued);
    let record = engine
        .wait_for_end(&id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(record.output, Some(json!({ "n": 11 })));
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_start_at_takes_an_rfc3339_time_even_with_a_plus_offset() {
    let (base, engine, stop) = server().await;
    let at = (engine.now() + chrono::Duration::hours(2))
        .with_timezone(&chrono::FixedOffset::east_opt(3600).unwrap());
    let text = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
    assert!(text.contains('+'), "{text}");
    // An unencoded `+` arrives as a space.
    let (status, body) = post(
        &format!("{base}/workflows/delayed-add?start_at={text}"),
        json!({ "n": 1 }),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = RunId(body["run_id"].as_str().unwrap().to_owned());
    let record = engine.get_run(&id).await.unwrap();
    assert_eq!(record.wake_at.unwrap().timestamp(), at.timestamp());
    assert_eq!(record.status, RunStatus::Queued);
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_malformed_delay_or_time_is_a_400_naming_the_forms_and_enqueues_nothing() {
    let (base, engine, stop) = server().await;
    for (query, names) in [
        ("delay=nonsense", "`delay` `nonsense` is not a duration"),
        ("delay=-5m", "is not a duration"),
        ("start_at=tomorrow", "`start_at` `tomorrow` is not a time"),
        ("start_at=2026-12-24", "RFC 3339"),
        ("delay=1m&start_at=2026-12-24T18:00:00Z", "not both"),
    ] {
        let (status, body) = post(
            &format!("{base}/workflows/delayed-add?{query}"),
            json!({ "n": 1 }),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["code"], "bad_request", "{body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(names), "{query}: {error}");
        if query.starts_with("delay=n") {
            assert!(error.contains("10m"), "names the accepted forms: {error}");
        }
        if query.starts_with("start_at=t") {
            assert!(
                error.contains("2026-12-24T18:00:00Z"),
                "names the accepted forms: {error}"
            );
        }
    }
    let runs = engine.list_runs(&Default::default()).await.unwrap();
    assert!(runs.is_empty(), "nothing enqueued: {runs:?}");
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_delay_with_an_idempotency_key_returns_the_same_delayed_run() {
    let (base, engine, stop) = server().await;
    let url = format!("{base}/workflows/delayed-add?delay=1h");
    let (status, first) = post(&url, json!({ "n": 3 }), Some("order-3")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let (status, again) = post(&url, json!({ "n": 3 }), Some("order-3")).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["run_id"], first["run_id"]);
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["status"], "queued");
    let (status, conflict) = post(&url, json!({ "n": 4 }), Some("order-3")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{conflict}");
    let runs = engine.list_runs(&Default::default()).await.unwrap();
    assert_eq!(runs.len(), 1, "one run: {runs:?}");
    assert!(runs[0].wake_at.unwrap() > engine.now() + chrono::Duration::minutes(59));
    // The engine API: same key, same run, and still delayed.
    let (id, created) = engine
        .start_with(
            "delayed-add",
            json!({ "n": 3 }),
            Trigger::Code,
            StartOptions::new()
                .idempotency_key("order-3")
                .start_at(engine.now()),
        )
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(id.0, first["run_id"].as_str().unwrap());
    assert_eq!(engine.get_run(&id).await.unwrap().status, RunStatus::Queued);
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_delay_and_start_at() {
    let (base, _engine, stop) = server().await;
    let doc: Value = reqwest::get(format!("{base}/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in ["/workflows/{slug}", "/workflows/delayed-add"] {
        let params = doc["paths"][path]["post"]["parameters"].as_array().unwrap();
        let names: Vec<&str> = params.iter().filter_map(|p| p["name"].as_str()).collect();
        for name in ["delay", "start_at"] {
            assert!(names.contains(&name), "{path} has no `{name}`: {names:?}");
        }
    }
    let _ = stop.send(());
}
