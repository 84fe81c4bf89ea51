//! The hot-run cache: a run waking from a short sleep continues in memory instead of
//! replaying its log, writes the same log a replay would, and replays exactly when its
//! entry is gone (evicted, another process, the log moved on).

use std::sync::Arc;
use std::time::Duration;

use reprise::event::{Event, RunStatus};
use reprise::prelude::*;
use reprise::store::{MemoryStore, SharedStore};
use reprise::{RunOutcome, Trigger};
use serde_json::json;

use crate::engine::{Calls, Num, add_one, double};

#[workflow(slug = "naps")]
async fn naps(ctx: Ctx, input: Num) -> Result<Num, WorkflowError> {
    let a = add_one.run(input).await?;
    ctx.sleep(Duration::from_millis(100)).await?;
    let b = double.run(a).await?;
    ctx.sleep(Duration::from_millis(100)).await?;
    let c = add_one.run(b).await?;
    Ok(c)
}

/// How many times the body of `counted-naps` started: once per execution that replays it
/// from the top, once in all for a run continued in memory.
static COUNTED_NAPS_STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[workflow(slug = "counted-naps")]
async fn counted_naps(ctx: Ctx, input: Num) -> Result<Num, WorkflowError> {
    COUNTED_NAPS_STARTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let a = add_one.run(input).await?;
    ctx.sleep(Duration::from_millis(100)).await?;
    let b = double.run(a).await?;
    ctx.sleep(Duration::from_millis(100)).await?;
    let c = add_one.run(b).await?;
    Ok(c)
}

#[workflow(slug = "long-nap")]
async fn long_nap(ctx: Ctx, input: Num) -> Result<Num, WorkflowError> {
    let a = add_one.run(input).await?;
    ctx.sleep(Duration::from_secs(120)).await?;
    Ok(a)
}

fn engine(store: SharedStore, calls: &Arc<Calls>, capacity: usize) -> Engine {
    Engine::builder()
        .store(store)
        .discover()
        .unwrap()
        .shared_resource(calls.clone())
        .hot_runs(capacity, Duration::from_secs(60))
        .build()
        .unwrap()
}

/// The log without what differs between two executions for reasons of timing: the
/// steps and sleeps as (kind, correlation id, payload), without timestamps.
fn shape(events: &[Event]) -> Vec<(String, Option<String>, serde_json::Value)> {
    events
        .iter()
        // Whether a run suspends at a sleep depends on timing (a sleep already over when
        // reached ends at once), not on the cache.
        .filter(|e| {
            !matches!(
                e.event.kind,
                reprise::event::EventKind::RunSuspended | reprise::event::EventKind::RunStarted
            )
        })
        .map(|e| {
            let mut payload = e.event.payload.clone();
            // Wake-up times are computed from the clock.
            if let Some(map) = payload.as_object_mut() {
                map.remove("wake_at");
                map.remove("waits");
            }
            (
                format!("{:?}", e.event.kind),
                e.event.correlation_id.clone(),
                payload,
            )
        })
        .collect()
}

#[tokio::test]
async fn a_run_waking_from_a_short_sleep_continues_without_replaying_and_writes_the_same_log() {
    let hot_calls = Arc::new(Calls::default());
    let hot = engine(Arc::new(MemoryStore::new()), &hot_calls, 16);
    let hot_id = hot.start(&naps, Num { n: 1 }).await.unwrap();

    let first = hot.execute(&hot_id).await.unwrap();
    assert!(matches!(first.outcome, RunOutcome::Suspended(_)));
    assert_eq!(hot.hot_runs(), 1, "the sleeping run is kept in memory");

    let done = hot.drive(&hot_id).await.unwrap();
    assert_eq!(done.outcome, RunOutcome::Completed(json!({ "n": 5 })));
    assert_eq!(
        (done.replayed, done.executed),
        (0, 4),
        "both wake-ups continued in place: nothing answered from the log"
    );
    assert_eq!(hot.hot_runs(), 0, "a finished run leaves the cache");
    assert_eq!(hot_calls.all(), ["add-one#0", "double#0", "add-one@2#0"]);

    // The same run on an engine without the cache replays at each wake-up...
    let cold_calls = Arc::new(Calls::default());
    let cold = engine(Arc::new(MemoryStore::new()), &cold_calls, 0);
    let cold_id = cold.start(&naps, Num { n: 1 }).await.unwrap();
    let cold_done = cold.drive(&cold_id).await.unwrap();
    assert_eq!(cold_done.outcome, done.outcome);
    assert!(
        cold_done.replayed > 0,
        "without the cache a wake-up replays"
    );
    assert_eq!(cold.hot_runs(), 0);
    assert_eq!(cold_calls.all(), hot_calls.all());

    // ...and writes exactly the same log.
    let hot_log = hot.events(&hot_id).await.unwrap();
    let cold_log = cold.events(&cold_id).await.unwrap();
    assert_eq!(shape(&hot_log), shape(&cold_log));
}

#[tokio::test]
async fn another_process_continuing_the_run_makes_the_cached_body_stale_and_it_replays() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reprise.db");
    let calls = Arc::new(Calls::default());
    let store_a: SharedStore = Arc::new(reprise::store::SqliteStore::open(&path).unwrap());
    let a = engine(store_a, &calls, 16);
    let id = a.start(&naps, Num { n: 1 }).await.unwrap();
    assert!(matches!(
        a.execute(&id).await.unwrap().outcome,
        RunOutcome::Suspended(_)
    ));
    assert_eq!(a.hot_runs(), 1);

    // A second process (its own engine on the same file) wakes the run first: it has no
    // cache entry, so it replays the first step and goes on to the second sleep.
    tokio::time::sleep(Duration::from_millis(120)).await;
    let store_b: SharedStore = Arc::new(reprise::store::SqliteStore::open(&path).unwrap());
    let b = engine(store_b, &calls, 16);
    let second = b.execute(&id).await.unwrap();
    assert!(matches!(second.outcome, RunOutcome::Suspended(_)));
    assert_eq!(
        (second.replayed, second.executed),
        (1, 2),
        "replayed the first step; completed the sleep and ran the second"
    );

    // Engine A's entry is now behind the log: it must not be used. A replays the log.
    tokio::time::sleep(Duration::from_millis(120)).await;
    b.clear_hot_runs();
    let third = a.execute(&id).await.unwrap();
    assert_eq!(third.outcome, RunOutcome::Completed(json!({ "n": 5 })));
    assert!(
        third.replayed >= 3,
        "the stale entry was dropped and the log replayed (replayed {})",
        third.replayed
    );
    assert_eq!(a.hot_runs(), 0);
    // Every step ran once, whoever ran it.
    assert_eq!(calls.all(), ["add-one#0", "double#0", "add-one@2#0"]);
    let events = a.events(&id).await.unwrap();
    let completed: Vec<_> = events
        .iter()
        .filter(|e| e.event.kind == reprise::event::EventKind::StepCompleted)
        .filter_map(|e| e.event.correlation_id.clone())
        .collect();
    assert_eq!(completed.len(), 3, "no step recorded twice: {completed:?}");
}

#[tokio::test]
async fn the_cache_holds_at_most_its_capacity_and_evicted_runs_replay() {
    let calls = Arc::new(Calls::default());
    let engine = engine(Arc::new(MemoryStore::new()), &calls, 1);
    let first = engine.start(&naps, Num { n: 1 }).await.unwrap();
    let second = engine.start(&naps, Num { n: 10 }).await.unwrap();
    engine.execute(&first).await.unwrap();
    engine.execute(&second).await.unwrap();
    assert_eq!(engine.hot_runs(), 1, "the older entry was evicted");

    let first_done = engine.drive(&first).await.unwrap();
    let second_done = engine.drive(&second).await.unwrap();
    assert_eq!(first_done.outcome, RunOutcome::Completed(json!({ "n": 5 })));
    assert_eq!(
        second_done.outcome,
        RunOutcome::Completed(json!({ "n": 23 }))
    );
    assert!(first_done.replayed > 0, "the evicted run replayed its log");
    assert_eq!(calls.all().len(), 6, "each of the 6 steps ran once");
}

#[tokio::test]
async fn long_sleeps_are_not_kept_in_memory() {
    let calls = Arc::new(Calls::default());
    let engine = engine(Arc::new(MemoryStore::new()), &calls, 16);
    let id = engine.start(&long_nap, Num { n: 1 }).await.unwrap();
    let execution = engine.execute(&id).await.unwrap();
    assert!(matches!(execution.outcome, RunOutcome::Suspended(_)));
    assert_eq!(
        engine.hot_runs(),
        0,
        "a sleep longer than max_sleep holds no memory"
    );
}

#[tokio::test]
async fn a_canceled_hot_run_is_dropped_from_the_cache_and_never_continues() {
    let calls = Arc::new(Calls::default());
    let engine = engine(Arc::new(MemoryStore::new()), &calls, 16);
    let id = engine
        .start_json("naps", json!({ "n": 1 }), Trigger::Code)
        .await
        .unwrap();
    engine.execute(&id).await.unwrap();
    assert_eq!(engine.hot_runs(), 1);
    engine.cancel(&id).await.unwrap();
    assert_eq!(
        engine.hot_runs(),
        0,
        "canceling the run frees its cached body"
    );
    tokio::time::sleep(Duration::from_millis(120)).await;
    let execution = engine.execute(&id).await.unwrap();
    assert_eq!(execution.outcome, RunOutcome::Canceled);
    assert_eq!(engine.hot_runs(), 0);
    assert_eq!(
        engine.get_run(&id).await.unwrap().status,
        RunStatus::Canceled
    );
    assert_eq!(calls.all(), ["add-one#0"], "nothing ran after the cancel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_continues_a_hot_run_at_its_wake_up_and_empties_the_cache_when_it_stops() {
    let calls = Arc::new(Calls::default());
    let engine = engine(Arc::new(MemoryStore::new()), &calls, 16);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = reprise::Worker::new(
        &engine,
        reprise::WorkerOptions {
            poll_interval: Duration::from_millis(10),
            shutdown_grace: Duration::from_secs(5),
            ..reprise::WorkerOptions::default()
        },
    );
    let worker = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    let id = engine.start(&counted_naps, Num { n: 1 }).await.unwrap();
    let record = engine
        .wait_for_end(&id, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(record.output, Some(json!({ "n": 5 })));
    assert_eq!(calls.all(), ["add-one#0", "double#0", "add-one@2#0"]);
    assert_eq!(
        COUNTED_NAPS_STARTS.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the worker continued the run in memory at both wake-ups (a replay would have \
         started the body again)"
    );
    let sleeps = engine
        .events(&id)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.event.kind == reprise::event::EventKind::SleepCompleted)
        .count();
    assert_eq!(sleeps, 2);

    // A run asleep in the cache when the worker stops leaves the cache with it.
    let id = engine.start(&naps, Num { n: 1 }).await.unwrap();
    for _ in 0..400 {
        if engine.hot_runs() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(engine.hot_runs(), 1, "the run sleeps in the cache");
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
    assert_eq!(engine.hot_runs(), 0, "a stopped worker empties the cache");
    // Another worker (here, drive) finishes it by replaying its log.
    let done = engine.drive(&id).await.unwrap();
    assert_eq!(done.outcome, RunOutcome::Completed(json!({ "n": 5 })));
}

/// `naps` as a sub-workflow, twice in parallel: its sleeps are two levels down.
#[workflow(slug = "nested-naps")]
async fn nested_naps(input: Num) -> Result<Num, WorkflowError> {
    let (a, b) = futures::try_join!(naps.run(input.clone()), naps.run(Num { n: input.n + 10 }))?;
    Ok(Num { n: a.n + b.n })
}

#[tokio::test]
async fn sleeps_inside_sub_workflows_continue_in_memory_and_write_the_log_a_replay_writes() {
    let hot_calls = Arc::new(Calls::default());
    let hot = engine(Arc::new(MemoryStore::new()), &hot_calls, 16);
    let hot_id = hot.start(&nested_naps, Num { n: 1 }).await.unwrap();
    let done = hot.drive(&hot_id).await.unwrap();
    // naps(1) = 5, naps(11) = 25.
    assert_eq!(done.outcome, RunOutcome::Completed(json!({ "n": 30 })));
    assert_eq!(done.replayed, 0, "every wake-up continued in place");
    assert_eq!(
        hot_calls.all().len(),
        6,
        "three steps in each sub-workflow, once each"
    );

    let cold_calls = Arc::new(Calls::default());
    let cold = engine(Arc::new(MemoryStore::new()), &cold_calls, 0);
    let cold_id = cold.start(&nested_naps, Num { n: 1 }).await.unwrap();
    let cold_done = cold.drive(&cold_id).await.unwrap();
    assert_eq!(cold_done.outcome, done.outcome);
    assert!(
        cold_done.replayed > 0,
        "without the cache a wake-up replays"
    );
    let mut hot_ids = hot_calls.all();
    let mut cold_ids = cold_calls.all();
    hot_ids.sort();
    cold_ids.sort();
    assert_eq!(hot_ids, cold_ids);
    // The same events, in an order that may differ between the two branches.
    let mut hot_log = shape(&hot.events(&hot_id).await.unwrap());
    let mut cold_log = shape(&cold.events(&cold_id).await.unwrap());
    let key = |e: &(String, Option<String>, serde_json::Value)| format!("{e:?}");
    hot_log.sort_by_key(key);
    cold_log.sort_by_key(key);
    assert_eq!(hot_log, cold_log);
}
