//! Durable select (`reprise::select!`), `.timeout(d)`, `#[workflow(timeout = "…")]` and
//! inline steps (`ctx.run`): the winner is recorded and every replay takes it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use reprise::event::{Event, EventKind, RunId, RunStatus};
use reprise::message::{NewMessage, signal_channel};
use reprise::prelude::*;
use reprise::store::{MemoryStore, SharedStore, SqliteStore};
use reprise::{Clock, RunOutcome};
use serde_json::{Value, json};

use crate::engine::{Calls, Num, add_one};

/// A clock the test moves by hand.
struct HandClock(Mutex<DateTime<Utc>>);

impl HandClock {
    fn new() -> Arc<HandClock> {
        Arc::new(HandClock(Mutex::new(Utc::now())))
    }
    fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap();
        *now += TimeDelta::from_std(by).unwrap();
    }
}

impl Clock for HandClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

fn engine(store: SharedStore, clock: &Arc<HandClock>, calls: &Arc<Calls>) -> Engine {
    Engine::builder()
        .store(store)
        .clock(clock.clone())
        .discover()
        .unwrap()
        .shared_resource(calls.clone())
        .run_retry_backoff(Duration::from_millis(1))
        .build()
        .unwrap()
}

async fn events_of(engine: &Engine, id: &RunId) -> Vec<Event> {
    engine.store().events(id).await.unwrap()
}

/// The recorded output at correlation id `id` (a `step_completed`).
fn completed(events: &[Event], id: &str) -> Option<Value> {
    events
        .iter()
        .find(|e| {
            e.event.kind == EventKind::StepCompleted
                && e.event.correlation_id.as_deref() == Some(id)
        })
        .map(|e| e.event.payload["output"].clone())
}

fn count(events: &[Event], kind: EventKind, id: &str) -> usize {
    events
        .iter()
        .filter(|e| e.event.kind == kind && e.event.correlation_id.as_deref() == Some(id))
        .count()
}

async fn signal(engine: &Engine, run: &RunId, name: &str, payload: Value) {
    engine
        .store()
        .post_message(NewMessage {
            run_id: run.clone(),
            channel: signal_channel(name),
            payload,
            dedupe: None,
            at: Utc::now(),
        })
        .await
        .unwrap();
}

/// Replays the run in a replay-only engine and asserts it reproduces its history.
async fn assert_replays(engine: &Engine, id: &RunId) {
    let export = engine.export_run(id).await.unwrap();
    let judged = engine.check_replay(&export).await.unwrap();
    assert!(judged.is_ok(), "replay check of {id}: {judged:?}");
}

fn output(outcome: &RunOutcome) -> Value {
    match outcome {
        RunOutcome::Completed(output) => output.clone(),
        other => panic!("not completed: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// select over a signal and a sleep

#[workflow(slug = "sel-signal-or-sleep")]
async fn signal_or_sleep(ctx: Ctx, _input: Num) -> Result<String, WorkflowError> {
    let out = reprise::select! {
        payment = reprise::__private::receive_signal(&ctx, "paid") => format!("paid {}", payment?),
        expired = ctx.sleep("1h") => {
            expired?;
            "expired".to_owned()
        }
    };
    Ok(out)
}

#[tokio::test]
async fn a_signal_beats_a_sleep_and_every_replay_takes_the_signal() {
    let (store, clock, calls): (SharedStore, _, _) =
        (Arc::new(MemoryStore::new()), HandClock::new(), Arc::new(Calls::default()));
    let first = engine(store.clone(), &clock, &calls);
    let id = first.start(&signal_or_sleep, Num { n: 0 }).await.unwrap();
    let execution = first.execute(&id).await.unwrap();
    let RunOutcome::Suspended(waits) = &execution.outcome else {
        panic!("{execution:?}")
    };
    assert_eq!(waits.len(), 2, "waits on both branches: {waits:?}");
    assert_eq!(first.get_run(&id).await.unwrap().status, RunStatus::Waiting);

    signal(&first, &id, "paid", json!(42)).await;
    // A fresh engine on the same store: a restart between suspension and wake-up.
    let second = engine(store.clone(), &clock, &calls);
    let execution = second.execute(&id).await.unwrap();
    assert_eq!(output(&execution.outcome), json!("paid 42"));

    let events = events_of(&second, &id).await;
    let select = completed(&events, "select#0").expect("the select is recorded");
    assert_eq!(select["winner"], json!(0));
    assert_eq!(select["branches"][1]["started"], json!(true));
    assert_eq!(count(&events, EventKind::SleepStarted, "sleep#0"), 1);
    assert_eq!(count(&events, EventKind::SleepCompleted, "sleep#0"), 0);
    assert!(completed(&events, "signal:paid#0").is_some());
    // The select's record is written no later than the receipt it decided.
    let at = |id: &str| {
        events
            .iter()
            .find(|e| e.event.correlation_id.as_deref() == Some(id) && e.event.kind == EventKind::StepCompleted)
            .unwrap()
            .seq
    };
    assert!(at("select#0") < at("signal:paid#0"));

    // Once the sleep is long over, a replay still takes the signal.
    clock.advance(Duration::from_secs(7200));
    assert_replays(&second, &id).await;
}

#[tokio::test]
async fn a_sleep_beats_a_signal_that_comes_later_and_the_message_stays() {
    let (store, clock, calls): (SharedStore, _, _) =
        (Arc::new(MemoryStore::new()), HandClock::new(), Arc::new(Calls::default()));
    let engine = engine(store, &clock, &calls);
    let id = engine.start(&signal_or_sleep, Num { n: 0 }).await.unwrap();
    let execution = engine.execute(&id).await.unwrap();
    assert!(matches!(execution.outcome, RunOutcome::Suspended(_)));
    assert_eq!(engine.get_run(&id).await.unwrap().wake_at.is_some(), true);

    clock.advance(Duration::from_secs(3601));
    let execution = engine.execute(&id).await.unwrap();
    assert_eq!(output(&execution.outcome), json!("expired"));
    let events = events_of(&engine, &id).await;
    let select = completed(&events, "select#0").unwrap();
    assert_eq!(select["winner"], json!(1));
    assert_eq!(count(&events, EventKind::SleepCompleted, "sleep#0"), 1);
    assert!(completed(&events, "signal:paid#0").is_none(), "the loser received nothing");
    assert_replays(&engine, &id).await;
}
