//! Schedules as data (issue 15 item 7) through the engine API, under a hand-moved clock:
//! stored schedules fire without a restart, once per tick across schedulers; pause and
//! resume (also of a code-declared schedule); backfill fires each tick once; overlap
//! policies; catch-up window; validation errors.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use reprise::event::{RunFilter, RunId, Trigger};
use reprise::prelude::*;
use reprise::store::{MemoryStore, SharedStore, SqliteStore};
use reprise::trigger::{CronSchedule, OverlapPolicy, ScheduleError, ScheduleSource, ScheduleSpec};
use reprise::{Clock, RunOutcome};
use serde_json::json;

struct HandClock(Mutex<DateTime<Utc>>);

impl HandClock {
    fn at(text: &str) -> Arc<HandClock> {
        Arc::new(HandClock(Mutex::new(at(text))))
    }
    fn set(&self, text: &str) {
        *self.0.lock().unwrap() = at(text);
    }
}

impl Clock for HandClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
struct Report {
    region: String,
}

/// Echoes its input.
#[workflow(slug = "schedule-probe")]
async fn schedule_probe(_ctx: Ctx, input: Report) -> Result<String, WorkflowError> {
    Ok(input.region)
}

fn engine(store: SharedStore, clock: &Arc<HandClock>) -> Engine {
    Engine::builder()
        .store(store)
        .clock(clock.clone())
        .register(schedule_probe)
        .build()
        .unwrap()
}

fn hourly() -> ScheduleSpec {
    ScheduleSpec::cron("schedule-probe", "0 * * * *").input(json!({ "region": "eu" }))
}

async fn runs(engine: &Engine) -> Vec<reprise::event::RunRecord> {
    engine
        .list_runs(&RunFilter {
            workflow: Some("schedule-probe".into()),
            ..RunFilter::default()
        })
        .await
        .unwrap()
}

async fn fire(engine: &Engine) -> Vec<RunId> {
    engine.triggers().fire_due(engine).await.unwrap()
}

async fn finish(engine: &Engine, id: &RunId) {
    match engine.drive(id).await.unwrap().outcome {
        RunOutcome::Completed(_) => {}
        other => panic!("run {id} did not complete: {other:?}"),
    }
}

#[tokio::test]
async fn a_stored_schedule_fires_each_tick_once_with_its_input_and_stops_when_deleted() {
    let clock = HandClock::at("2026-03-02T08:30:00Z");
    let engine = engine(Arc::new(MemoryStore::new()), &clock);
    engine
        .create_schedule("hourly", hourly(), false, "test")
        .await
        .unwrap();
    assert!(fire(&engine).await.is_empty(), "no tick before the first");
    clock.set("2026-03-02T09:00:00Z");
    let fired = fire(&engine).await;
    assert_eq!(fired.len(), 1);
    assert!(fire(&engine).await.is_empty(), "a tick fires once");
    let run = engine.get_run(&fired[0]).await.unwrap();
    assert_eq!(run.trigger, Trigger::Cron);
    assert_eq!(run.input, json!({ "region": "eu" }));
    finish(&engine, &fired[0]).await;

    // An update takes effect at the next turn.
    engine
        .patch_schedule("hourly", json!({ "input": { "region": "us" } }), "test")
        .await
        .unwrap();
    clock.set("2026-03-02T10:00:00Z");
    let fired = fire(&engine).await;
    assert_eq!(engine.get_run(&fired[0]).await.unwrap().input, json!({ "region": "us" }));

    engine.delete_schedule("hourly", "test").await.unwrap();
    clock.set("2026-03-02T11:00:00Z");
    assert!(fire(&engine).await.is_empty(), "a deleted schedule no longer fires");
    assert_eq!(runs(&engine).await.len(), 2);
    assert!(matches!(
        engine.get_schedule("hourly").await,
        Err(ScheduleError::Unknown(_))
    ));
}

#[tokio::test]
async fn an_interval_schedule_fires_on_epoch_aligned_ticks() {
    let clock = HandClock::at("2026-03-02T09:07:00Z");
    let engine = engine(Arc::new(MemoryStore::new()), &clock);
    let spec = ScheduleSpec::every("schedule-probe", "15m")
        .input(json!({ "region": "eu" }))
        .overlap(OverlapPolicy::Allow);
    let created = engine.create_schedule("quarter", spec, false, "test").await.unwrap();
    assert_eq!(created.next_tick, Some(at("2026-03-02T09:15:00Z")));
    clock.set("2026-03-02T09:15:00Z");
    assert_eq!(fire(&engine).await.len(), 1);
    clock.set("2026-03-02T09:29:59Z");
    assert!(fire(&engine).await.is_empty());
    clock.set("2026-03-02T09:30:00Z");
    assert_eq!(fire(&engine).await.len(), 1);
}

#[tokio::test]
async fn a_schedule_paused_over_a_tick_does_not_fire_and_fires_again_after_resume() {
    let clock = HandClock::at("2026-03-02T08:30:00Z");
    let engine = engine(Arc::new(MemoryStore::new()), &clock);
    engine
        .create_schedule("hourly", hourly(), false, "test")
        .await
        .unwrap();
    fire(&engine).await;
    let paused = engine.pause_schedule("hourly", "cli:ops").await.unwrap();
    assert!(paused.paused);
    assert_eq!(paused.updated_by.as_deref(), Some("cli:ops"));
    assert_eq!(paused.next_tick, None);
    clock.set("2026-03-02T09:00:00Z");
    assert!(fire(&engine).await.is_empty(), "paused over the 09:00 tick");
    clock.set("2026-03-02T09:00:30Z");
    let resumed = engine.resume_schedule("hourly", "cli:ops").await.unwrap();
    assert!(!resumed.paused);
    assert!(
        fire(&engine).await.is_empty(),
        "the tick of the pause does not fire after the resume, even within the catch-up window"
    );
    clock.set("2026-03-02T10:00:00Z");
    assert_eq!(fire(&engine).await.len(), 1, "fires again after resume");
    assert_eq!(runs(&engine).await.len(), 1);
}

#[tokio::test]
async fn a_schedule_paused_without_a_scheduler_running_skips_the_ticks_of_the_pause() {
    let clock = HandClock::at("2026-03-02T08:30:00Z");
    let engine = engine(Arc::new(MemoryStore::new()), &clock);
    engine
        .create_schedule("hourly", hourly().catch_up_window("1h"), false, "test")
        .await
        .unwrap();
    fire(&engine).await;
    engine.pause_schedule("hourly", "test").await.unwrap();
    // No scheduler turn during the pause.
    clock.set("2026-03-02T09:10:00Z");
    engine.resume_schedule("hourly", "test").await.unwrap();
    assert!(fire(&engine).await.is_empty());
}

#[tokio::test]
async fn a_code_declared_schedule_can_be_paused_resumed_and_triggered_but_not_changed() {
    let clock = HandClock::at("2026-03-02T08:30:00Z");
    let engine = Engine::builder()
        .store(Arc::new(MemoryStore::new()))
        .clock(clock.clone())
        .register(schedule_probe)
        .cron(
            CronSchedule::new("in-code", "0 * * * *", "schedule-probe")
                .unwrap()
                .input(json!({ "region": "code" })),
        )
        .build()
        .unwrap();
    fire(&engine).await;
    let listed = engine.list_schedules().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].source, ScheduleSource::Code);
    assert_eq!(listed[0].spec.cron.as_deref(), Some("0 * * * *"));

    engine.pause_schedule("in-code", "cli:ops").await.unwrap();
    clock.set("2026-03-02T09:00:00Z");
    assert!(fire(&engine).await.is_empty(), "paused code schedule does not fire");
    let schedule = engine.get_schedule("in-code").await.unwrap();
    assert!(schedule.paused);
    assert_eq!(schedule.updated_by.as_deref(), Some("cli:ops"));
    engine.resume_schedule("in-code", "cli:ops").await.unwrap();
    assert!(fire(&engine).await.is_empty(), "the paused tick stays skipped");
    clock.set("2026-03-02T10:00:00Z");
    assert_eq!(fire(&engine).await.len(), 1);

    let id = engine.trigger_schedule("in-code", "test").await.unwrap();
    assert_eq!(
        engine.get_run(&id).await.unwrap().input,
        json!({ "region": "code" })
    );

    for error in [
        engine.update_schedule("in-code", hourly(), "test").await.unwrap_err(),
        engine.delete_schedule("in-code", "test").await.unwrap_err(),
        engine
            .create_schedule("in-code", hourly(), false, "test")
            .await
            .unwrap_err(),
    ] {
        assert!(matches!(error, ScheduleError::Conflict(_)), "{error:?}");
        assert!(error.to_string().contains("declared in code"), "{error}");
    }
}

#[tokio::test]
async fn backfill_fires_each_missed_tick_exactly_once_also_when_run_twice() {
    let clock = HandClock::at("2026-03-02T08:30:00Z");
    let engine = engine(Arc::new(MemoryStore::new()), &clock);
    engine
        .create_schedule("hourly", hourly(), false, "test")
        .await
        .unwrap();
    fire(&engine).await;
    clock.set("2026-03-02T09:00:00Z");
    let on_time = fire(&engine).await;
    assert_eq!(on_time.len(), 1);
    // Down from 09:30 to 13:30: 10:00 … 13:00 are missed (older than the 1m window).
    clock.set("2026-03-02T13:30:00Z");
    assert!(fire(&engine).await.is_empty());

    let first = engine
        .backfill_schedule(
            "hourly",
            at("2026-03-02T09:00:00Z"),
            at("2026-03-02T13:00:00Z"),
            "test",
        )
        .await
        .unwrap();
    assert_eq!(first.ticks.len(), 5, "09:00 to 13:00 inclusive");
    assert_eq!(first.started.len(), 4, "10:00 … 13:00");
    assert_eq!(first.existing, 1, "09:00 fired on time");
    let again = engine
        .backfill_schedule(
            "hourly",
            at("2026-03-02T09:00:00Z"),
            at("2026-03-02T13:00:00Z"),
            "test",
        )
        .await
        .unwrap();
    assert!(again.started.is_empty());
    assert_eq!(again.existing, 5);
    assert_eq!(runs(&engine).await.len(), 5);

    // Bad ranges.
    for (from, to) in [
        ("2026-03-02T12:00:00Z", "2026-03-02T10:00:00Z"),
        ("2026-03-02T12:00:00Z", "2026-03-02T15:00:00Z"),
    ] {
        let error = engine
            .backfill_schedule("hourly", at(from), at(to), "test")
            .await
            .unwrap_err();
        assert!(matches!(error, ScheduleError::Invalid(_)), "{error:?}");
    }
}

#[tokio::test]
async fn missed_ticks_within_the_catch_up_window_fire_once_each_older_ones_are_skipped() {
    let clock = HandClock::at("2026-03-02T08:30:00Z");
    let engine = engine(Arc::new(MemoryStore::new()), &clock);
    engine
        .create_schedule(
            "hourly",
            hourly().catch_up_window("2h 30m").overlap(OverlapPolicy::Allow),
            false,
            "test",
        )
        .await
        .unwrap();
    fire(&engine).await;
    // Down until 13:10: 09:00 … 13:00 missed; within 2h30m: 11:00, 12:00, 13:00.
    clock.set("2026-03-02T13:10:00Z");
    let fired = fire(&engine).await;
    assert_eq!(fired.len(), 3);
    assert!(fire(&engine).await.is_empty());
    // Which ticks fired: a backfill of 09:00 … 13:00 finds 11:00 … 13:00 taken.
    let backfill = engine
        .backfill_schedule(
            "hourly",
            at("2026-03-02T09:00:00Z"),
            at("2026-03-02T13:00:00Z"),
            "test",
        )
        .await
        .unwrap();
    assert_eq!((backfill.existing, backfill.started.len()), (3, 2));
}

#[tokio::test]
async fn overlap_policies_skip_buffer_one_and_allow() {
    for (policy, expected) in [
        // Ticks 09:00, 10:00, 11:00 while the 09:00 run is unfinished, then it ends.
        (OverlapPolicy::Skip, 1),
        (OverlapPolicy::BufferOne, 2),
        (OverlapPolicy::Allow, 3),
    ] {
        let clock = HandClock::at("2026-03-02T08:30:00Z");
        let engine = engine(Arc::new(MemoryStore::new()), &clock);
        engine
            .create_schedule("hourly", hourly().overlap(policy), false, "test")
            .await
            .unwrap();
        fire(&engine).await;
        clock.set("2026-03-02T09:00:00Z");
        let first = fire(&engine).await;
        assert_eq!(first.len(), 1);
        clock.set("2026-03-02T10:00:00Z");
        fire(&engine).await;
        clock.set("2026-03-02T11:00:00Z");
        fire(&engine).await;
        // The first run ends; a buffered tick fires at the next turn.
        finish(&engine, &first[0]).await;
        clock.set("2026-03-02T11:00:05Z");
        let after = fire(&engine).await;
        assert_eq!(runs(&engine).await.len(), expected, "{policy}");
        if policy == OverlapPolicy::BufferOne {
            assert_eq!(after.len(), 1, "the buffered tick fires once the run ended");
            assert!(fire(&engine).await.is_empty(), "only one tick was buffered");
        }
    }
}

#[tokio::test]
async fn two_schedulers_racing_create_each_ticks_run_once() {
    let dir = tempfile::tempdir().unwrap();
    let store: SharedStore = Arc::new(SqliteStore::open(dir.path().join("r.db")).unwrap());
    let clock = HandClock::at("2026-03-02T08:59:00Z");
    let one = engine(store.clone(), &clock);
    let two = engine(store.clone(), &clock);
    one.create_schedule(
        "minutely",
        ScheduleSpec::cron("schedule-probe", "* * * * *")
            .input(json!({ "region": "eu" }))
            .overlap(OverlapPolicy::Allow),
        false,
        "test",
    )
    .await
    .unwrap();
    let mut total = 0;
    for minute in 0..5 {
        clock.set(&format!("2026-03-02T09:0{minute}:00Z"));
        let (a, b) = tokio::join!(fire(&one), fire(&two));
        total += a.len() + b.len();
    }
    assert_eq!(total, 5);
    assert_eq!(runs(&one).await.len(), 5);
}

#[tokio::test]
async fn invalid_schedules_are_refused_with_what_to_fix() {
    let clock = HandClock::at("2026-03-02T08:30:00Z");
    let engine = engine(Arc::new(MemoryStore::new()), &clock);
    let cases: Vec<(&str, ScheduleSpec, &str)> = vec![
        ("bad-cron", ScheduleSpec::cron("schedule-probe", "every day"), "not a valid cron"),
        ("bad-tz", hourly().time_zone("Mars/Olympus"), "unknown time zone `Mars/Olympus`"),
        (
            "bad-workflow",
            ScheduleSpec::cron("nope", "0 * * * *"),
            "workflow `nope` is not registered",
        ),
        ("bad-interval", ScheduleSpec::every("schedule-probe", "soon"), "not a duration"),
        ("short-interval", ScheduleSpec::every("schedule-probe", "500ms"), "at least `1s`"),
        ("bad-window", hourly().catch_up_window("0s"), "shorter than `1s`"),
        ("bad name!", hourly(), "contains ` `"),
    ];
    for (name, spec, message) in cases {
        let error = engine
            .create_schedule(name, spec, false, "test")
            .await
            .unwrap_err();
        assert!(matches!(error, ScheduleError::Invalid(_)), "{name}: {error:?}");
        assert!(error.to_string().contains(message), "{name}: {error}");
    }
    let error = engine
        .create_schedule(
            "bad-input",
            hourly().input(json!({ "region": 7 })),
            false,
            "test",
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, ScheduleError::Engine(reprise::EngineError::Schema(_))),
        "{error:?}"
    );
    assert!(engine.list_schedules().await.unwrap().is_empty(), "nothing stored");

    engine
        .create_schedule("taken", hourly(), false, "test")
        .await
        .unwrap();
    let error = engine
        .create_schedule("taken", hourly(), false, "test")
        .await
        .unwrap_err();
    assert!(matches!(error, ScheduleError::Conflict(_)), "{error:?}");
    let error = engine
        .patch_schedule("taken", json!({ "cron": "61 * * * *" }), "test")
        .await
        .unwrap_err();
    assert!(matches!(error, ScheduleError::Invalid(_)), "{error:?}");
    let error = engine
        .patch_schedule("taken", json!({ "colour": "red" }), "test")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("colour"), "{error}");
    let error = engine.pause_schedule("missing", "test").await.unwrap_err();
    assert!(matches!(error, ScheduleError::Unknown(_)), "{error:?}");
}
