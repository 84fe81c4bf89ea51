//! Issue 14, items 1–4: business keys, signals, published state and updates — through the
//! macros, on the memory store, across a restart on SQLite, and over HTTP.

use std::sync::Arc;
use std::time::Duration;

use reprise::event::{Event, EventKind, RunId, RunStatus};
use reprise::prelude::*;
use reprise::store::{MemoryStore, SharedStore};
use reprise::{EngineError, RunOutcome, Trigger};
use serde_json::{Value, json};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Paid {
    amount: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Order {
    id: String,
}

/// Receives three `paid` signals, one after the other.
#[workflow(slug = "sig-three")]
async fn sig_three(ctx: Ctx, _input: Order) -> Result<Vec<u32>, WorkflowError> {
    let paid = ctx.signal::<Paid>("paid");
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(paid.recv().await?.amount);
    }
    Ok(got)
}

/// `try_recv` before and after a wait.
#[workflow(slug = "sig-try")]
async fn sig_try(ctx: Ctx, _input: Order) -> Result<Vec<Option<u32>>, WorkflowError> {
    let paid = ctx.signal::<Paid>("paid");
    let first = paid.try_recv().await?.map(|p| p.amount);
    ctx.signal::<Paid>("go").recv().await?;
    let second = paid.try_recv().await?.map(|p| p.amount);
    Ok(vec![first, second])
}

/// A sub-workflow that receives the signal.
#[workflow(slug = "sig-inner")]
async fn sig_inner(ctx: Ctx, _input: Order) -> Result<u32, WorkflowError> {
    Ok(ctx.signal::<Paid>("paid").recv().await?.amount)
}

/// Calls [`sig_inner`]: its signal is the run's too.
#[workflow(slug = "sig-outer")]
async fn sig_outer(input: Order) -> Result<u32, WorkflowError> {
    Ok(sig_inner.run(input).await? + 1000)
}

/// Two receives at once, in `join!`.
#[workflow(slug = "sig-join")]
async fn sig_join(ctx: Ctx, _input: Order) -> Result<(u32, u32), WorkflowError> {
    let a = ctx.signal::<Paid>("a");
    let b = ctx.signal::<Paid>("b");
    let (a, b) = futures::try_join!(a.recv(), b.recv())?;
    Ok((a.amount, b.amount))
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Progress {
    done: u32,
}

/// Publishes its progress around a wait.
#[workflow(slug = "sig-publish")]
async fn sig_publish(ctx: Ctx, _input: Order) -> Result<u32, WorkflowError> {
    ctx.publish("progress", &Progress { done: 1 }).await?;
    let paid = ctx.signal::<Paid>("paid").recv().await?;
    ctx.publish("progress", &Progress { done: 2 }).await?;
    Ok(paid.amount)
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct SetLimit {
    cents: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Limit {
    cents: u32,
}

/// Answers `set-limit` updates until one sets 0; refuses limits over 100000.
#[workflow(slug = "sig-limits")]
async fn sig_limits(ctx: Ctx, _input: Order) -> Result<u32, WorkflowError> {
    let updates = ctx.updates::<SetLimit, Limit>("set-limit");
    let mut limit = 0;
    loop {
        let request = updates.recv().await?;
        let cents = request.input().cents;
        if cents > 100_000 {
            request
                .reply(Err(format!("{cents} is over the maximum of 100000")))
                .await?;
            continue;
        }
        limit = if cents == 0 { limit } else { cents };
        request.reply(Ok(Limit { cents })).await?;
        ctx.publish("limit", &limit).await?;
        if cents == 0 {
            return Ok(limit);
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Notify {
    order: String,
    amount: u32,
}

/// Signals the run of `sig-three` keyed by the order, as a recorded step.
#[workflow(slug = "sig-sender")]
async fn sig_sender(ctx: Ctx, input: Notify) -> Result<u64, WorkflowError> {
    let posted = ctx
        .send_signal(
            ("sig-three", input.order.as_str()),
            "paid",
            &Paid {
                amount: input.amount,
            },
        )
        .await?;
    Ok(posted.seq)
}

fn engine_on(store: SharedStore) -> Engine {
    Engine::builder()
        .store(store)
        .discover()
        .unwrap()
        .build()
        .unwrap()
}

fn engine() -> Engine {
    engine_on(Arc::new(MemoryStore::new()))
}

async fn events_of(engine: &Engine, id: &RunId) -> Vec<Event> {
    engine.store().events(id).await.unwrap()
}

/// `(correlation id, callee)` of every `step_completed` whose callee starts with `prefix`.
fn completed(events: &[Event], prefix: &str) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| e.event.kind == EventKind::StepCompleted)
        .filter_map(|e| {
            let callee = e.event.payload["callee"].as_str()?;
            callee.starts_with(prefix).then(|| {
                (
                    e.event.correlation_id.clone().unwrap_or_default(),
                    callee.to_owned(),
                )
            })
        })
        .collect()
}

fn order() -> Value {
    json!({ "id": "o-1" })
}

async fn start(engine: &Engine, slug: &str) -> RunId {
    engine
        .start_json(slug, order(), Trigger::Code)
        .await
        .unwrap()
}

async fn drive(engine: &Engine, id: &RunId) -> RunOutcome {
    engine.drive(id).await.unwrap().outcome
}

async fn signal(engine: &Engine, id: &RunId, name: &str, amount: u32) {
    engine
        .signal(id, name, json!({ "amount": amount }), None)
        .await
        .unwrap();
}

async fn status(engine: &Engine, id: &RunId) -> RunStatus {
    engine.get_run(id).await.unwrap().status
}

async fn replays_the_same(engine: &Engine, id: &RunId) {
    let export = engine.export_run(id).await.unwrap();
    let judged = engine.check_replay(&export).await.unwrap();
    assert!(judged.is_ok(), "{:?}", judged.err());
}

#[tokio::test]
async fn signals_sent_before_the_run_waits_are_received_in_order() {
    let engine = engine();
    let id = start(&engine, "sig-three").await;
    for amount in [1, 2, 3] {
        signal(&engine, &id, "paid", amount).await;
    }
    let RunOutcome::Completed(out) = drive(&engine, &id).await else {
        panic!("completes with its three signals at hand")
    };
    assert_eq!(out, json!([1, 2, 3]));
    let events = events_of(&engine, &id).await;
    assert_eq!(
        completed(&events, "recv:"),
        [0, 1, 2].map(|n| (format!("signal:paid#{n}"), "recv:signal".to_owned()))
    );
    replays_the_same(&engine, &id).await;
}

#[tokio::test]
async fn a_run_waits_for_each_signal_and_replays_the_same_path_after_resuming() {
    let engine = engine();
    let id = start(&engine, "sig-three").await;
    assert!(matches!(
        drive(&engine, &id).await,
        RunOutcome::Suspended(_)
    ));
    assert_eq!(status(&engine, &id).await, RunStatus::Waiting);
    signal(&engine, &id, "paid", 10).await;
    assert_eq!(
        status(&engine, &id).await,
        RunStatus::Queued,
        "a delivery wakes the waiting run"
    );
    assert!(matches!(
        drive(&engine, &id).await,
        RunOutcome::Suspended(_)
    ));
    signal(&engine, &id, "paid", 20).await;
    signal(&engine, &id, "paid", 30).await;
    let RunOutcome::Completed(out) = drive(&engine, &id).await else {
        panic!()
    };
    assert_eq!(out, json!([10, 20, 30]));
    let receipts: Vec<Value> = events_of(&engine, &id)
        .await
        .iter()
        .filter(|e| e.event.payload["callee"] == "recv:signal")
        .map(|e| e.event.payload["output"].clone())
        .collect();
    assert_eq!(
        receipts,
        [
            json!({"seq": 1, "payload": {"amount": 10}}),
            json!({"seq": 2, "payload": {"amount": 20}}),
            json!({"seq": 3, "payload": {"amount": 30}}),
        ]
    );
    replays_the_same(&engine, &id).await;
}

#[tokio::test]
async fn try_recv_is_recorded_and_replays_the_same_none_and_some() {
    let engine = engine();
    let id = start(&engine, "sig-try").await;
    assert!(matches!(
        drive(&engine, &id).await,
        RunOutcome::Suspended(_)
    ));
    // `paid` arrives after the first `try_recv` recorded `None`: the replay keeps the None,
    // and the second `try_recv` takes it.
    signal(&engine, &id, "paid", 7).await;
    signal(&engine, &id, "go", 0).await;
    let RunOutcome::Completed(out) = drive(&engine, &id).await else {
        panic!()
    };
    assert_eq!(out, json!([null, 7]));
    let events = events_of(&engine, &id).await;
    let outputs: Vec<(String, Value)> = events
        .iter()
        .filter(|e| e.event.payload["callee"] == "recv:signal")
        .map(|e| {
            (
                e.event.correlation_id.clone().unwrap(),
                e.event.payload["output"].clone(),
            )
        })
        .collect();
    assert_eq!(outputs[0], ("signal:paid#0".into(), json!({"seq": null})));
    assert_eq!(outputs[1].0, "signal:go#0");
    assert_eq!(outputs[2].0, "signal:paid#1");
    assert_eq!(outputs[2].1["payload"], json!({"amount": 7}));
    replays_the_same(&engine, &id).await;
}

#[tokio::test]
async fn an_idempotency_key_delivers_a_signal_once() {
    let engine = engine();
    let id = start(&engine, "sig-try").await;
    let payload = json!({ "amount": 5 });
    let first = engine
        .signal(&id, "paid", payload.clone(), Some("pay-1"))
        .await
        .unwrap();
    let again = engine
        .signal(&id, "paid", payload, Some("pay-1"))
        .await
        .unwrap();
    assert!(!first.duplicate);
    assert!(again.duplicate);
    assert_eq!(again.seq, first.seq);
    assert_eq!(engine.store().messages(&id, 0).await.unwrap().len(), 1);
    signal(&engine, &id, "go", 0).await;
    let RunOutcome::Completed(out) = drive(&engine, &id).await else {
        panic!()
    };
    assert_eq!(
        out,
        json!([5, null]),
        "the retried delivery is not a second signal"
    );
}

#[tokio::test]
async fn deliveries_that_cannot_be_received_are_refused_and_post_nothing() {
    let engine = engine();
    let id = start(&engine, "sig-three").await;
    let unknown_run = engine
        .signal(&RunId("nope".into()), "paid", json!({"amount": 1}), None)
        .await
        .unwrap_err();
    assert!(
        matches!(unknown_run, EngineError::UnknownRun(_)),
        "{unknown_run}"
    );
    let unknown_name = engine
        .signal(&id, "refund", json!({"amount": 1}), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &unknown_name,
            EngineError::UnknownMessage { kind: "signal", .. }
        ),
        "{unknown_name}"
    );
    assert!(
        unknown_name.to_string().contains("`refund`")
            && unknown_name.to_string().contains("`paid`"),
        "names the signal asked for and the ones it receives: {unknown_name}"
    );
    let invalid = engine
        .signal(&id, "paid", json!({"amount": "ten"}), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&invalid, EngineError::Schema(v) if v.violations[0].pointer == "/amount"),
        "{invalid}"
    );
    let bad_key = engine
        .signal(&id, "paid", json!({"amount": 1}), Some(""))
        .await
        .unwrap_err();
    assert!(matches!(bad_key, EngineError::Serde(_)), "{bad_key}");
    assert!(engine.store().messages(&id, 0).await.unwrap().is_empty());

    let done = start(&engine, "sig-three").await;
    for amount in [1, 2, 3] {
        signal(&engine, &done, "paid", amount).await;
    }
    assert!(matches!(
        drive(&engine, &done).await,
        RunOutcome::Completed(_)
    ));
    let ended = engine
        .signal(&done, "paid", json!({"amount": 4}), None)
        .await
        .unwrap_err();
    assert!(matches!(ended, EngineError::InvalidState { .. }), "{ended}");
}

#[tokio::test]
async fn a_signal_inside_a_sub_workflow_is_scoped_and_received() {
    let engine = engine();
    let id = start(&engine, "sig-outer").await;
    assert!(matches!(
        drive(&engine, &id).await,
        RunOutcome::Suspended(_)
    ));
    // The outer workflow declares no signal; the sub-workflow it calls does.
    signal(&engine, &id, "paid", 5).await;
    let RunOutcome::Completed(out) = drive(&engine, &id).await else {
        panic!()
    };
    assert_eq!(out, json!(1005));
    let events = events_of(&engine, &id).await;
    assert_eq!(
        completed(&events, "recv:"),
        [(
            "sig-inner#0/signal:paid#0".to_owned(),
            "recv:signal".to_owned()
        )]
    );
    replays_the_same(&engine, &id).await;
}

#[tokio::test]
async fn receives_in_join_each_take_their_own_signal() {
    let engine = engine();
    let id = start(&engine, "sig-join").await;
    signal(&engine, &id, "b", 2).await;
    assert!(matches!(
        drive(&engine, &id).await,
        RunOutcome::Suspended(_)
    ));
    signal(&engine, &id, "a", 1).await;
    let RunOutcome::Completed(out) = drive(&engine, &id).await else {
        panic!()
    };
    assert_eq!(out, json!([1, 2]));
    replays_the_same(&engine, &id).await;
}

#[tokio::test]
async fn a_signal_is_delivered_from_another_engine_and_received_after_a_restart() {
    let store: SharedStore = Arc::new(MemoryStore::new());
    let first = engine_on(store.clone());
    let id = start(&first, "sig-three").await;
    assert!(matches!(drive(&first, &id).await, RunOutcome::Suspended(_)));
    drop(first);
    let other = engine_on(store.clone());
    for amount in [4, 5, 6] {
        signal(&other, &id, "paid", amount).await;
    }
    let restarted = engine_on(store);
    let RunOutcome::Completed(out) = drive(&restarted, &id).await else {
        panic!()
    };
    assert_eq!(out, json!([4, 5, 6]));
}

#[tokio::test]
async fn a_signal_survives_a_restart_on_sqlite_delivered_by_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reprise.db");
    let open = || -> SharedStore { Arc::new(reprise::store::SqliteStore::open(&path).unwrap()) };
    let first = engine_on(open());
    let id = start(&first, "sig-three").await;
    signal(&first, &id, "paid", 1).await;
    assert!(matches!(drive(&first, &id).await, RunOutcome::Suspended(_)));
    drop(first);
    // "Another process": its own engine on the same file.
    let other = engine_on(open());
    signal(&other, &id, "paid", 2).await;
    signal(&other, &id, "paid", 3).await;
    drop(other);
    let restarted = engine_on(open());
    let RunOutcome::Completed(out) = drive(&restarted, &id).await else {
        panic!()
    };
    assert_eq!(out, json!([1, 2, 3]));
    replays_the_same(&restarted, &id).await;
}

#[tokio::test]
async fn published_state_is_read_while_the_run_waits() {
    let engine = engine();
    let id = start(&engine, "sig-publish").await;
    assert!(engine.state(&id).await.unwrap().is_empty());
    assert_eq!(
        engine.state_of::<Progress>(&id, "progress").await.unwrap(),
        None
    );
    assert!(matches!(
        drive(&engine, &id).await,
        RunOutcome::Suspended(_)
    ));
    assert_eq!(
        engine.state(&id).await.unwrap().get("progress"),
        Some(&json!({"done": 1}))
    );
    assert_eq!(
        engine
            .wait_for_state(&id, "progress", Duration::from_millis(10))
            .await
            .unwrap(),
        json!({"done": 1})
    );
    let missing = engine
        .wait_for_state(&id, "eta", Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(matches!(missing, EngineError::Timeout(_)), "{missing}");
    signal(&engine, &id, "paid", 9).await;
    assert!(matches!(
        drive(&engine, &id).await,
        RunOutcome::Completed(_)
    ));
    assert_eq!(
        engine.state_of::<Progress>(&id, "progress").await.unwrap(),
        Some(Progress { done: 2 }),
        "the latest value per key"
    );
    let events = events_of(&engine, &id).await;
    assert_eq!(
        completed(&events, "publish"),
        [
            ("publish:progress#0".to_owned(), "publish".to_owned()),
            ("publish:progress#1".to_owned(), "publish".to_owned())
        ]
    );
    let ended = engine
        .wait_for_state(&id, "eta", Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(ended, EngineError::InvalidState { .. }), "{ended}");
    replays_the_same(&engine, &id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_state_wakes_when_the_run_publishes() {
    let engine = engine();
    let id = start(&engine, "sig-publish").await;
    let waiter = {
        let engine = engine.clone();
        let id = id.clone();
        tokio::spawn(async move {
            engine
                .wait_for_state(&id, "progress", Duration::from_secs(10))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = std::time::Instant::now();
    assert!(matches!(
        drive(&engine, &id).await,
        RunOutcome::Suspended(_)
    ));
    let value = waiter.await.unwrap().unwrap();
    assert_eq!(value, json!({"done": 1}));
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "woken by the append, not by the once-a-second re-read"
    );
}

/// Drives `id` whenever it is queued, until it ends (a worker for one run).
fn keep_driving(engine: &Engine, id: &RunId) -> tokio::task::JoinHandle<()> {
    let engine = engine.clone();
    let id = id.clone();
    tokio::spawn(async move {
        loop {
            let record = engine.get_run(&id).await.unwrap();
            if record.status.is_terminal() {
                return;
            }
            if record.status == RunStatus::Queued {
                engine.drive(&id).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_are_answered_refused_and_invalid_ones_change_nothing() {
    let engine = engine();
    let id = start(&engine, "sig-limits").await;
    assert!(matches!(
        drive(&engine, &id).await,
        RunOutcome::Suspended(_)
    ));

    let invalid = engine
        .update(
            &id,
            "set-limit",
            json!({"cents": -5}),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&invalid, EngineError::Schema(v) if v.violations[0].pointer == "/cents"),
        "{invalid}"
    );
    assert!(engine.store().messages(&id, 0).await.unwrap().is_empty());
    assert_eq!(status(&engine, &id).await, RunStatus::Waiting);
    let unknown = engine
        .update(&id, "set-color", json!({}), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        matches!(&unknown, EngineError::UnknownMessage { kind: "update", .. }),
        "{unknown}"
    );

    let driver = keep_driving(&engine, &id);
    let reply = engine
        .update(
            &id,
            "set-limit",
            json!({"cents": 5000}),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(reply, json!({"cents": 5000}));
    assert_eq!(
        engine.state_of::<u32>(&id, "limit").await.unwrap(),
        Some(5000)
    );
    let refused = engine
        .update(
            &id,
            "set-limit",
            json!({"cents": 200000}),
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, EngineError::UpdateRejected { message, .. } if message.contains("over the maximum")),
        "{refused}"
    );
    let last = engine
        .update(
            &id,
            "set-limit",
            json!({"cents": 0}),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(last, json!({"cents": 0}));
    driver.await.unwrap();
    let record = engine.get_run(&id).await.unwrap();
    assert_eq!(record.output, Some(json!(5000)));
    let events = events_of(&engine, &id).await;
    let replies = completed(&events, "update-reply");
    assert_eq!(
        replies
            .iter()
            .map(|(id, _)| id.as_str())
            .collect::<Vec<_>>(),
        [
            "update:set-limit#0$reply",
            "update:set-limit#1$reply",
            "update:set-limit#2$reply"
        ]
    );
    replays_the_same(&engine, &id).await;
}

#[tokio::test]
async fn an_unanswered_update_times_out_and_stays_queued() {
    let engine = engine();
    let id = start(&engine, "sig-limits").await;
    let timeout = engine
        .update(
            &id,
            "set-limit",
            json!({"cents": 10}),
            Duration::from_millis(50),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&timeout, EngineError::Timeout(m) if m.contains("stays queued")),
        "{timeout}"
    );
    assert_eq!(engine.store().messages(&id, 0).await.unwrap().len(), 1);
    // The run answers it when it executes.
    assert!(matches!(
        drive(&engine, &id).await,
        RunOutcome::Suspended(_)
    ));
    assert_eq!(
        engine.state_of::<u32>(&id, "limit").await.unwrap(),
        Some(10)
    );
}

#[tokio::test]
async fn a_business_key_starts_one_run_that_is_found_and_signalled_by_it() {
    let engine = engine();
    let (id, created) = engine
        .start_with_key("sig-three", order(), Trigger::Code, "order-42")
        .await
        .unwrap();
    assert!(created);
    let (again, created) = engine
        .start_with_key(
            "sig-three",
            json!({"id": "other"}),
            Trigger::Code,
            "order-42",
        )
        .await
        .unwrap();
    assert_eq!((again.clone(), created), (id.clone(), false));
    assert_eq!(
        engine.run_by_key("sig-three", "order-42").await.unwrap().id,
        id
    );
    assert_eq!(
        reprise::key_of(&events_of(&engine, &id).await).as_deref(),
        Some("order-42"),
        "the key is recorded in run_created"
    );
    // The same key names another run in another workflow, and idempotency keys apart.
    let (other, created) = engine
        .start_with_key("sig-try", order(), Trigger::Code, "order-42")
        .await
        .unwrap();
    assert!(created && other != id);
    let (idem, created) = engine
        .start_idempotent("sig-three", order(), Trigger::Code, "order-42")
        .await
        .unwrap();
    assert!(created && idem != id);

    let missing = engine
        .run_by_key("sig-three", "order-43")
        .await
        .unwrap_err();
    assert!(
        matches!(missing, EngineError::UnknownKey { .. }),
        "{missing}"
    );
    assert!(missing.to_string().contains("order-43"), "{missing}");
    let bad = engine
        .start_with_key("sig-three", order(), Trigger::Code, "")
        .await
        .unwrap_err();
    assert!(
        matches!(&bad, EngineError::Serde(m) if m.contains("business key")),
        "{bad}"
    );

    for amount in [1, 2, 3] {
        engine
            .signal_by_key(
                "sig-three",
                "order-42",
                "paid",
                json!({"amount": amount}),
                None,
            )
            .await
            .unwrap();
    }
    let RunOutcome::Completed(out) = drive(&engine, &id).await else {
        panic!()
    };
    assert_eq!(out, json!([1, 2, 3]));
}

#[tokio::test]
async fn send_signal_is_a_recorded_step_that_delivers_once() {
    let engine = engine();
    let (target, _) = engine
        .start_with_key("sig-three", order(), Trigger::Code, "o-9")
        .await
        .unwrap();
    let sender = engine
        .start_json(
            "sig-sender",
            json!({"order": "o-9", "amount": 8}),
            Trigger::Code,
        )
        .await
        .unwrap();
    let RunOutcome::Completed(seq) = drive(&engine, &sender).await else {
        panic!()
    };
    assert_eq!(seq, json!(1));
    let messages = engine.store().messages(&target, 0).await.unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].dedupe.as_deref(),
        Some(format!("{sender}/send-signal:paid#0").as_str())
    );
    let events = events_of(&engine, &sender).await;
    let started: Vec<_> = events
        .iter()
        .filter(|e| e.event.kind == EventKind::StepStarted)
        .map(|e| {
            (
                e.event.correlation_id.clone().unwrap(),
                e.event.payload["callee"].clone(),
            )
        })
        .collect();
    assert_eq!(
        started,
        [("send-signal:paid#0".to_owned(), json!("send-signal"))]
    );
    replays_the_same(&engine, &sender).await;
    assert_eq!(
        engine.store().messages(&target, 0).await.unwrap().len(),
        1,
        "the replay delivered nothing again"
    );

    // A refused delivery (no run holds the key) is the step's recorded, permanent failure.
    let lost = engine
        .start_json(
            "sig-sender",
            json!({"order": "o-404", "amount": 1}),
            Trigger::Code,
        )
        .await
        .unwrap();
    let RunOutcome::Failed(error) = drive(&engine, &lost).await else {
        panic!()
    };
    assert_eq!(error.kind, reprise::SIGNAL_REFUSED, "{error:?}");
    assert!(error.message.contains("o-404"), "{error:?}");
}

/// A server with a worker on `engine`, on a free port; returns its base URL.
async fn serve(engine: &Engine) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let options = reprise::http::HttpOptions {
        api_token: None,
        ..reprise::http::HttpOptions::default()
    };
    tokio::spawn(reprise::http::serve(
        engine.clone(),
        listener,
        options,
        std::future::pending(),
    ));
    let worker = reprise::Worker::new(
        engine,
        reprise::WorkerOptions {
            poll_interval: Duration::from_millis(20),
            ..reprise::WorkerOptions::default()
        },
    );
    tokio::spawn(worker.run(std::future::pending::<()>()));
    base
}

async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, body)
}

/// Polls `GET /runs/{id}` until the run is `status` (10 s at most).
async fn http_run_in(client: &reqwest::Client, base: &str, id: &str, status: &str) -> Value {
    for _ in 0..500 {
        let (code, run) = send(client.get(format!("{base}/runs/{id}"))).await;
        assert_eq!(code, 200, "{run}");
        if run["status"] == status {
            return run;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("run {id} never became {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http_keys_signals_state_and_updates_answer_with_the_documented_statuses() {
    let engine = engine();
    let base = serve(&engine).await;
    let client = reqwest::Client::new();
    let post = |path: &str, body: Value| client.post(format!("{base}{path}")).json(&body);

    // Business key: 201 created, then 200 with the same run.
    let (code, first) = send(post("/workflows/sig-three?key=order-7", order())).await;
    assert_eq!(code, 201, "{first}");
    assert_eq!(first["created"], true, "{first}");
    let id = first["run_id"].as_str().unwrap().to_owned();
    let (code, again) = send(post("/workflows/sig-three?key=order-7", order())).await;
    assert_eq!((code, &again["created"]), (200, &json!(false)), "{again}");
    assert_eq!(again["run_id"], id.as_str());
    let (code, by_key) = send(client.get(format!("{base}/workflows/sig-three/runs/order-7"))).await;
    assert_eq!(code, 200, "{by_key}");
    assert_eq!(
        (&by_key["id"], &by_key["key"]),
        (&json!(id), &json!("order-7"))
    );
    let (code, missing) =
        send(client.get(format!("{base}/workflows/sig-three/runs/order-8"))).await;
    assert_eq!(
        (code, &missing["code"]),
        (404, &json!("unknown_key")),
        "{missing}"
    );
    assert!(
        missing["error"].as_str().unwrap().contains("order-8"),
        "{missing}"
    );
    http_run_in(&client, &base, &id, "waiting").await;

    // Signals: 202, once per Idempotency-Key; refusals name what is wrong.
    let signal = |path: String, body: Value, key: Option<&str>| {
        let request = client.post(format!("{base}{path}")).json(&body);
        match key {
            Some(key) => request.header("Idempotency-Key", key),
            None => request,
        }
    };
    let path = format!("/runs/{id}/signals/paid");
    let (code, sent) = send(signal(path.clone(), json!({"amount": 1}), Some("k1"))).await;
    assert_eq!(code, 202, "{sent}");
    assert_eq!(
        (&sent["seq"], &sent["duplicate"]),
        (&json!(1), &json!(false))
    );
    let (code, dup) = send(signal(path.clone(), json!({"amount": 1}), Some("k1"))).await;
    assert_eq!(
        (code, &dup["duplicate"], &dup["seq"]),
        (202, &json!(true), &json!(1))
    );
    let (code, invalid) = send(signal(path.clone(), json!({"amount": -1}), None)).await;
    assert_eq!(
        (code, &invalid["code"]),
        (422, &json!("schema")),
        "{invalid}"
    );
    assert_eq!(invalid["violations"][0]["pointer"], "/amount", "{invalid}");
    let (code, name) = send(signal(
        format!("/runs/{id}/signals/refund"),
        json!({}),
        None,
    ))
    .await;
    assert_eq!(
        (code, &name["code"]),
        (404, &json!("unknown_signal")),
        "{name}"
    );
    let (code, run) = send(signal(
        "/runs/nope/signals/paid".into(),
        json!({"amount": 1}),
        None,
    ))
    .await;
    assert_eq!((code, &run["code"]), (404, &json!("unknown_run")), "{run}");
    for amount in [2, 3] {
        let (code, body) = send(signal(
            "/workflows/sig-three/runs/order-7/signals/paid".into(),
            json!({"amount": amount}),
            None,
        ))
        .await;
        assert_eq!(code, 202, "{body}");
    }
    let done = http_run_in(&client, &base, &id, "completed").await;
    assert_eq!(done["output"], json!([1, 2, 3]));
    let (code, ended) = send(signal(path, json!({"amount": 4}), None)).await;
    assert_eq!(
        (code, &ended["code"]),
        (409, &json!("invalid_state")),
        "{ended}"
    );

    // Published state and updates.
    let (code, started) = send(post("/workflows/sig-limits", order())).await;
    assert_eq!(code, 202, "{started}");
    let limits = started["run_id"].as_str().unwrap().to_owned();
    let (code, none) = send(client.get(format!("{base}/runs/{limits}/state/limit"))).await;
    assert_eq!((code, &none["code"]), (404, &json!("no_state")), "{none}");
    let (code, invalid) = send(post(
        &format!("/runs/{limits}/updates/set-limit?wait=10s"),
        json!({"cents": "x"}),
    ))
    .await;
    assert_eq!(
        (code, &invalid["code"]),
        (422, &json!("schema")),
        "{invalid}"
    );
    let (code, reply) = send(post(
        &format!("/runs/{limits}/updates/set-limit?wait=10s"),
        json!({"cents": 300}),
    ))
    .await;
    assert_eq!(code, 200, "{reply}");
    assert_eq!(reply["result"], json!({"cents": 300}));
    let (code, refused) = send(post(
        &format!("/runs/{limits}/updates/set-limit?wait=10s"),
        json!({"cents": 300000}),
    ))
    .await;
    assert_eq!(
        (code, &refused["code"]),
        (422, &json!("update_rejected")),
        "{refused}"
    );
    let (code, limit) = send(client.get(format!("{base}/runs/{limits}/state/limit?wait=5s"))).await;
    assert_eq!((code, limit), (200, json!(300)));
    let (code, all) = send(client.get(format!("{base}/runs/{limits}/state"))).await;
    assert_eq!((code, all), (200, json!({"limit": 300})));

    let (code, doc) = send(client.get(format!("{base}/openapi.json"))).await;
    assert_eq!(code, 200);
    for path in [
        "/runs/{id}/signals/{name}",
        "/workflows/{slug}/runs/{key}/signals/{name}",
        "/workflows/{slug}/runs/{key}",
        "/runs/{id}/updates/{name}",
        "/runs/{id}/state",
        "/runs/{id}/state/{key}",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} is documented");
    }
}

/// `reprise <args>` on the SQLite database `db` (in this process); returns the exit code.
async fn cli(db: &std::path::Path, args: &[&str]) -> u8 {
    let url = format!("sqlite://{}", db.display());
    let mut all = vec!["reprise", "--db", url.as_str()];
    all.extend_from_slice(args);
    reprise::cli::run(all, Ok).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_starts_by_key_signals_and_reads_state_with_its_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reprise.db");
    let input = r#"{"id":"o-1"}"#;
    let start = [
        "workflows",
        "run",
        "sig-publish",
        "--input",
        input,
        "--key",
        "order-1",
        "--enqueue",
    ];
    assert_eq!(cli(&path, &start).await, 0);
    assert_eq!(cli(&path, &start).await, 0, "a taken key reports the run");
    let store: SharedStore = Arc::new(reprise::store::SqliteStore::open(&path).unwrap());
    let engine = engine_on(store);
    let runs = engine.list_runs(&Default::default()).await.unwrap();
    assert_eq!(runs.len(), 1, "one run per key");
    let id = engine
        .run_by_key("sig-publish", "order-1")
        .await
        .unwrap()
        .id;
    assert!(matches!(
        drive(&engine, &id).await,
        RunOutcome::Suspended(_)
    ));

    let run = id.to_string();
    assert_eq!(cli(&path, &["runs", "state", &run]).await, 0);
    assert_eq!(cli(&path, &["runs", "state", &run, "progress"]).await, 0);
    assert_eq!(
        cli(&path, &["runs", "state", &run, "eta"]).await,
        3,
        "not published yet"
    );
    let bad = cli(
        &path,
        &[
            "runs",
            "signal",
            &run,
            "paid",
            "--payload",
            r#"{"amount":"x"}"#,
        ],
    )
    .await;
    assert_eq!(bad, 2, "a schema violation is bad input");
    assert_eq!(
        cli(
            &path,
            &["runs", "signal", &run, "refund", "--payload", "{}"]
        )
        .await,
        2,
        "an unknown signal name is bad input"
    );
    assert!(engine.store().messages(&id, 0).await.unwrap().is_empty());
    let by_key = [
        "runs",
        "signal",
        "order-1",
        "paid",
        "--workflow",
        "sig-publish",
        "--payload",
        r#"{"amount":4}"#,
        "--idempotency-key",
        "pay-1",
    ];
    assert_eq!(cli(&path, &by_key).await, 0);
    assert_eq!(
        cli(&path, &by_key).await,
        0,
        "a retry delivers nothing more"
    );
    assert_eq!(engine.store().messages(&id, 0).await.unwrap().len(), 1);
    let RunOutcome::Completed(out) = drive(&engine, &id).await else {
        panic!()
    };
    assert_eq!(out, json!(4));
    assert_eq!(
        cli(
            &path,
            &["runs", "update", &run, "set-limit", "--payload", "{}"]
        )
        .await,
        2,
        "sig-publish receives no update `set-limit`"
    );
}

/// Publishes, answers one update and signals another run, inside a sub-workflow.
#[workflow(slug = "sig-sub-all")]
async fn sig_sub_all(ctx: Ctx, input: Order) -> Result<u32, WorkflowError> {
    ctx.publish("phase", "asking").await?;
    let request = ctx.updates::<SetLimit, Limit>("set-limit").recv().await?;
    let cents = request.input().cents;
    request.reply(Ok(Limit { cents })).await?;
    ctx.send_signal(
        ("sig-three", input.id.as_str()),
        "paid",
        &Paid { amount: cents },
    )
    .await?;
    ctx.publish("phase", "done").await?;
    Ok(cents)
}

/// Calls [`sig_sub_all`].
#[workflow(slug = "sig-outer-all")]
async fn sig_outer_all(input: Order) -> Result<u32, WorkflowError> {
    Ok(sig_sub_all.run(input).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_updates_and_send_signal_work_inside_a_sub_workflow() {
    let engine = engine();
    let (target, _) = engine
        .start_with_key("sig-three", order(), Trigger::Code, "o-1")
        .await
        .unwrap();
    let id = start(&engine, "sig-outer-all").await;
    assert!(matches!(
        drive(&engine, &id).await,
        RunOutcome::Suspended(_)
    ));
    assert_eq!(
        engine
            .state_of::<String>(&id, "phase")
            .await
            .unwrap()
            .as_deref(),
        Some("asking")
    );
    let driver = keep_driving(&engine, &id);
    let reply = engine
        .update(
            &id,
            "set-limit",
            json!({"cents": 77}),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(reply, json!({"cents": 77}));
    driver.await.unwrap();
    assert_eq!(engine.get_run(&id).await.unwrap().output, Some(json!(77)));
    assert_eq!(
        engine
            .state_of::<String>(&id, "phase")
            .await
            .unwrap()
            .as_deref(),
        Some("done")
    );
    let messages = engine.store().messages(&target, 0).await.unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].dedupe.as_deref(),
        Some(format!("{id}/sig-sub-all#0/send-signal:paid#0").as_str())
    );
    let ids: Vec<String> = events_of(&engine, &id)
        .await
        .iter()
        .filter(|e| e.event.kind == EventKind::StepCompleted)
        .filter_map(|e| e.event.correlation_id.clone())
        .collect();
    for expected in [
        "sig-sub-all#0/publish:phase#0",
        "sig-sub-all#0/update:set-limit#0",
        "sig-sub-all#0/update:set-limit#0$reply",
        "sig-sub-all#0/send-signal:paid#0",
        "sig-sub-all#0/publish:phase#1",
    ] {
        assert!(ids.iter().any(|id| id == expected), "{expected} in {ids:?}");
    }
    replays_the_same(&engine, &id).await;
}

#[tokio::test]
async fn a_signal_over_the_payload_limit_is_refused() {
    let engine = Engine::builder()
        .max_payload_bytes(64)
        .discover()
        .unwrap()
        .build()
        .unwrap();
    let id = start(&engine, "sig-three").await;
    let big = engine
        .signal(
            &id,
            "paid",
            json!({"amount": 1, "note": "x".repeat(100)}),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(big, EngineError::PayloadTooLarge { .. }), "{big}");
    assert!(big.to_string().contains("signal `paid`"), "{big}");
    assert!(engine.store().messages(&id, 0).await.unwrap().is_empty());
}
