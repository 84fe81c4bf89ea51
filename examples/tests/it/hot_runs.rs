//! The hot-run cache on the `await-export` example: a run polling with short sleeps
//! continues in memory at each wake-up (nothing replayed), while an engine without the
//! cache replays every earlier poll at each wake-up; both write the same log and run
//! every effect once.

use std::time::Duration;

use reprise::event::EventKind;
use reprise::{Engine, RunOutcome};
use reprise_examples::await_export::{ExportRequest, await_export};
use reprise_examples::effects::EffectLog;
use reprise_testkit::TempDb;
use serde_json::json;

const POLLS: u32 = 15;

/// Runs `await-export` to the end on a fresh SQLite file; returns the execution, the
/// kinds of its log and the effect log's lines.
async fn poll_to_the_end(hot_capacity: usize) -> (reprise::Execution, Vec<EventKind>, Vec<String>) {
    let db = TempDb::new().unwrap();
    let effects = db.path().with_extension("effects");
    let engine = Engine::builder()
        .sqlite(db.path())
        .unwrap()
        .discover()
        .unwrap()
        .resource(EffectLog::to_file(&effects))
        .hot_runs(hot_capacity, Duration::from_secs(60))
        .build()
        .unwrap();
    let id = engine
        .start(
            &await_export,
            ExportRequest {
                dataset: "orders".to_owned(),
                polls_needed: POLLS,
                interval: "20ms".to_owned(),
            },
        )
        .await
        .unwrap();
    let execution = engine.drive(&id).await.unwrap();
    let kinds = engine
        .events(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event.kind)
        .collect();
    let lines = std::fs::read_to_string(&effects)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    engine.clear_hot_runs();
    (execution, kinds, lines)
}

fn assert_each_effect_once(lines: &[String]) {
    let mut unique = lines.to_vec();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), lines.len(), "an effect ran twice: {lines:?}");
    assert_eq!(
        lines.len(),
        1 + POLLS as usize,
        "one start and {POLLS} polls"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_sleeps_continue_in_memory_and_write_the_same_log_as_replays() {
    let (hot, hot_log, hot_effects) = poll_to_the_end(1024).await;
    let (cold, cold_log, cold_effects) = poll_to_the_end(0).await;

    let RunOutcome::Completed(output) = &hot.outcome else {
        panic!("{:?}", hot.outcome)
    };
    assert_eq!(output["polls"], json!(POLLS));
    assert!(
        matches!(&cold.outcome, RunOutcome::Completed(o) if o["polls"] == json!(POLLS)),
        "{:?}",
        cold.outcome
    );

    assert_eq!(
        hot.replayed, 0,
        "with the cache, every wake-up continued in place"
    );
    // Without it, the j-th wake-up replays at least the j polls before it. (A sleep whose
    // time is already over when it is first reached, on a slow machine, ends at once
    // without a wake-up; so the wake-ups are counted from the log.)
    let wakeups = cold_log
        .iter()
        .filter(|k| **k == EventKind::RunSuspended)
        .count() as u64;
    assert!(wakeups > 0);
    assert!(
        cold.replayed >= wakeups * (wakeups + 1) / 2,
        "without the cache each wake-up replays the earlier polls ({} replayed over \
         {wakeups} wake-ups)",
        cold.replayed
    );
    assert_eq!(hot.executed, cold.executed);

    // The same steps and sleeps in the same order; where the run suspended and started
    // again depends on timing, not on the cache.
    let steps = |log: &[EventKind]| -> Vec<EventKind> {
        log.iter()
            .copied()
            .filter(|k| !matches!(k, EventKind::RunSuspended | EventKind::RunStarted))
            .collect()
    };
    assert_eq!(
        steps(&hot_log),
        steps(&cold_log),
        "the same events in the same order"
    );
    assert_each_effect_once(&hot_effects);
    assert_each_effect_once(&cold_effects);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_loop_replays_once_then_goes_on() {
    let db = TempDb::new().unwrap();
    let build = || {
        Engine::builder()
            .sqlite(db.path())
            .unwrap()
            .discover()
            .unwrap()
            .build()
            .unwrap()
    };
    let first = build();
    let id = first
        .start(
            &await_export,
            ExportRequest {
                dataset: "orders".to_owned(),
                polls_needed: 4,
                interval: "100ms".to_owned(),
            },
        )
        .await
        .unwrap();
    // Two polls, each followed by a sleep, continued in memory.
    for _ in 0..2 {
        let execution = first.execute(&id).await.unwrap();
        assert!(matches!(execution.outcome, RunOutcome::Suspended(_)));
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    assert_eq!(first.hot_runs(), 1);
    first.clear_hot_runs();
    drop(first);

    // A new process: no cache entry, so the first wake-up replays the log once...
    let second = build();
    let execution = second.execute(&id).await.unwrap();
    assert!(matches!(execution.outcome, RunOutcome::Suspended(_)));
    assert!(execution.replayed >= 3, "replayed {}", execution.replayed);
    // ...and the next ones continue in memory.
    tokio::time::sleep(Duration::from_millis(120)).await;
    let execution = second.drive(&id).await.unwrap();
    assert_eq!(execution.replayed, 0);
    let RunOutcome::Completed(output) = execution.outcome else {
        panic!("{:?}", execution.outcome)
    };
    assert_eq!(output["polls"], json!(4));
    second.clear_hot_runs();
}
