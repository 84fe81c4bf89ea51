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
    assert_eq!(
        engine.get_run(&fired[0]).await.unwrap().input,
        json!({ "region": "us" })
    );

    // `null` returns a field to its default.
    let window = engine
        .patch_schedule("hourly", json!({ "catch_up_window": "1h" }), "test")
        .await
        .unwrap();
    assert_eq!(window.spec.catch_up_window, "1h");
    let reset = engine
        .patch_schedule("hourly", json!({ "catch_up_window": null }), "test")
        .await
        .unwrap();
    assert_eq!(reset.spec.catch_up_window, "1m");

    engine.delete_schedule("hourly", "test").await.unwrap();
    clock.set("2026-03-02T11:00:00Z");
    assert!(
        fire(&engine).await.is_empty(),
        "a deleted schedule no longer fires"
    );
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
    let created = engine
        .create_schedule("quarter", spec, false, "test")
        .await
        .unwrap();
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
    let by_hand = engine.trigger_schedule("hourly", "test").await.unwrap();
    assert_eq!(
        engine.get_run(&by_hand).await.unwrap().input,
        json!({ "region": "eu" }),
        "a paused schedule can still be triggered by hand"
    );
    finish(&engine, &by_hand).await;
    clock.set("2026-03-02T09:00:30Z");
    let resumed = engine.resume_schedule("hourly", "cli:ops").await.unwrap();
    assert!(!resumed.paused);
    assert!(
        fire(&engine).await.is_empty(),
        "the tick of the pause does not fire after the resume, even within the catch-up window"
    );
    clock.set("2026-03-02T10:00:00Z");
    assert_eq!(fire(&engine).await.len(), 1, "fires again after resume");
    assert_eq!(
        runs(&engine).await.len(),
        2,
        "the run by hand and the 10:00 tick"
    );
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
    assert!(
        fire(&engine).await.is_empty(),
        "paused code schedule does not fire"
    );
    let schedule = engine.get_schedule("in-code").await.unwrap();
    assert!(schedule.paused);
    assert_eq!(schedule.updated_by.as_deref(), Some("cli:ops"));
    engine.resume_schedule("in-code", "cli:ops").await.unwrap();
    assert!(
        fire(&engine).await.is_empty(),
        "the paused tick stays skipped"
    );
    clock.set("2026-03-02T10:00:00Z");
    assert_eq!(fire(&engine).await.len(), 1);

    let id = engine.trigger_schedule("in-code", "test").await.unwrap();
    assert_eq!(
        engine.get_run(&id).await.unwrap().input,
        json!({ "region": "code" })
    );

    for error in [
        engine
            .update_schedule("in-code", hourly(), "test")
            .await
            .unwrap_err(),
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

    // A range of more than 10 000 ticks is refused.
    engine
        .create_schedule(
            "each-second",
            ScheduleSpec::every("schedule-probe", "1s").input(json!({ "region": "eu" })),
            false,
            "test",
        )
        .await
        .unwrap();
    let error = engine
        .backfill_schedule(
            "each-second",
            at("2026-03-02T09:00:00Z"),
            at("2026-03-02T12:00:00Z"),
            "test",
        )
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("more than 10000 ticks"),
        "{error}"
    );

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
            hourly()
                .catch_up_window("2h 30m")
                .overlap(OverlapPolicy::Allow),
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

/// Two schedulers (engines) on `one` and `two` (views of one database) fire five ticks of
/// a schedule concurrently: five runs in all.
async fn race(one: SharedStore, two: SharedStore) {
    let clock = HandClock::at("2026-03-02T08:59:00Z");
    let one = engine(one, &clock);
    let two = engine(two, &clock);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_racing_create_each_ticks_run_once_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    // Two stores on one file: two writers, as two processes have.
    let one: SharedStore = Arc::new(SqliteStore::open(&path).unwrap());
    let two: SharedStore = Arc::new(SqliteStore::open(&path).unwrap());
    race(one, two).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_racing_create_each_ticks_run_once_on_postgres() {
    let Some((store, _schema)) = crate::postgres::fresh_store().await else {
        return;
    };
    let store: SharedStore = Arc::new(store);
    race(store.clone(), store).await;
}

#[tokio::test]
async fn invalid_schedules_are_refused_with_what_to_fix() {
    let clock = HandClock::at("2026-03-02T08:30:00Z");
    let engine = engine(Arc::new(MemoryStore::new()), &clock);
    let cases: Vec<(&str, ScheduleSpec, &str)> = vec![
        (
            "bad-cron",
            ScheduleSpec::cron("schedule-probe", "every day"),
            "not a valid cron",
        ),
        (
            "bad-tz",
            hourly().time_zone("Mars/Olympus"),
            "unknown time zone `Mars/Olympus`",
        ),
        (
            "bad-workflow",
            ScheduleSpec::cron("nope", "0 * * * *"),
            "workflow `nope` is not registered",
        ),
        (
            "bad-interval",
            ScheduleSpec::every("schedule-probe", "soon"),
            "not a duration",
        ),
        (
            "short-interval",
            ScheduleSpec::every("schedule-probe", "500ms"),
            "at least `1s`",
        ),
        (
            "bad-window",
            hourly().catch_up_window("0s"),
            "shorter than `1s`",
        ),
        ("bad name!", hourly(), "contains ` `"),
    ];
    for (name, spec, message) in cases {
        let error = engine
            .create_schedule(name, spec, false, "test")
            .await
            .unwrap_err();
        assert!(
            matches!(error, ScheduleError::Invalid(_)),
            "{name}: {error:?}"
        );
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
        matches!(
            error,
            ScheduleError::Engine(reprise::EngineError::Schema(_))
        ),
        "{error:?}"
    );
    assert!(
        engine.list_schedules().await.unwrap().is_empty(),
        "nothing stored"
    );

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
    let error = engine
        .patch_schedule("taken", json!({ "input": { "region": 7 } }), "test")
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ScheduleError::Engine(reprise::EngineError::Schema(_))
        ),
        "an update's input is checked too: {error:?}"
    );
    let error = engine.pause_schedule("missing", "test").await.unwrap_err();
    assert!(matches!(error, ScheduleError::Unknown(_)), "{error:?}");
}

// ---------------------------------------------------------------- HTTP

/// A server (with the scheduling loop, as `dev` runs it) on an engine with a hand clock
/// and the code-declared schedule `in-code`.
async fn server(clock: &Arc<HandClock>) -> (String, Engine, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
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
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let stopped = futures::FutureExt::shared(async {
        let _ = stopped.await;
    });
    let options = reprise::http::HttpOptions {
        api_token: None,
        ..reprise::http::HttpOptions::default()
    };
    tokio::spawn(reprise::http::serve(
        engine.clone(),
        listener,
        options,
        stopped.clone(),
    ));
    tokio::spawn(reprise::trigger::run_schedules(engine.clone(), stopped));
    (base, engine, stop)
}

async fn call(
    method: reqwest::Method,
    url: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(json!(text)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_created_over_http_fires_without_restarting_the_server() {
    let clock = HandClock::at("2026-03-02T08:30:00Z");
    let (base, engine, _stop) = server(&clock).await;
    let (status, created) = call(
        reqwest::Method::POST,
        &format!("{base}/schedules"),
        Some(json!({
            "name": "nightly-eu",
            "workflow": "schedule-probe",
            "cron": "0 9 * * *",
            "time_zone": "Europe/Paris",
            "input": { "region": "eu" },
            "overlap": "buffer_one",
            "catch_up_window": "10m"
        })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["source"], "data");
    assert_eq!(created["created_by"], "api");
    // 09:00 in Paris is 08:00 UTC in March: the next one is tomorrow.
    assert_eq!(created["next_tick"], "2026-03-03T08:00:00Z");

    clock.set("2026-03-03T08:00:01Z");
    let mut fired = Vec::new();
    for _ in 0..200 {
        // (`in-code` fires at 08:00 too, with its own input.)
        fired = runs(&engine).await;
        fired.retain(|run| run.input["region"] == "eu");
        if !fired.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        fired.len(),
        1,
        "the running scheduler picked the new schedule up"
    );
    assert_eq!(fired[0].input, json!({ "region": "eu" }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_over_http_list_change_pause_trigger_backfill_and_delete() {
    let clock = HandClock::at("2026-03-02T08:30:00Z");
    let (base, engine, _stop) = server(&clock).await;
    let url = |path: &str| format!("{base}{path}");
    let (status, _) = call(
        reqwest::Method::POST,
        &url("/schedules"),
        Some(json!({ "name": "hourly", "workflow": "schedule-probe", "cron": "0 * * * *", "input": { "region": "eu" }, "paused": true })),
    )
    .await;
    assert_eq!(status, 201);

    let (status, list) = call(reqwest::Method::GET, &url("/schedules"), None).await;
    assert_eq!(status, 200);
    let names: Vec<(&str, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["source"].as_str().unwrap()))
        .collect();
    assert_eq!(names, [("hourly", "data"), ("in-code", "code")]);
    assert_eq!(list[0]["paused"], true);

    let (status, patched) = call(
        reqwest::Method::PATCH,
        &url("/schedules/hourly"),
        Some(json!({ "interval": "30m" })),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["interval"], "30m");
    assert!(patched.get("cron").is_none(), "{patched}");
    let (status, replaced) = call(
        reqwest::Method::PUT,
        &url("/schedules/hourly"),
        Some(json!({ "workflow": "schedule-probe", "cron": "0 * * * *", "input": { "region": "us" } })),
    )
    .await;
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(replaced["paused"], true, "PUT keeps the paused state");
    let (status, resumed) = call(
        reqwest::Method::POST,
        &url("/schedules/hourly/resume"),
        None,
    )
    .await;
    assert_eq!((status, &resumed["paused"]), (200, &json!(false)));
    let (status, paused) = call(
        reqwest::Method::POST,
        &url("/schedules/in-code/pause"),
        None,
    )
    .await;
    assert_eq!((status, &paused["paused"]), (200, &json!(true)), "{paused}");
    assert_eq!(paused["updated_by"], "api");

    let (status, triggered) = call(
        reqwest::Method::POST,
        &url("/schedules/hourly/trigger"),
        None,
    )
    .await;
    assert_eq!(status, 202, "{triggered}");
    let run = RunId::from(triggered["run_id"].as_str().unwrap());
    assert_eq!(
        engine.get_run(&run).await.unwrap().input,
        json!({ "region": "us" })
    );

    clock.set("2026-03-02T12:30:00Z");
    let range = json!({ "from": "2026-03-02T09:00:00Z", "to": "2026-03-02T12:00:00Z" });
    let (status, first) = call(
        reqwest::Method::POST,
        &url("/schedules/hourly/backfill"),
        Some(range.clone()),
    )
    .await;
    assert_eq!(status, 200, "{first}");
    let (_, second) = call(
        reqwest::Method::POST,
        &url("/schedules/hourly/backfill"),
        Some(range),
    )
    .await;
    let started = |b: &serde_json::Value| b["started"].as_array().unwrap().len();
    assert_eq!(first["ticks"].as_array().unwrap().len(), 4);
    assert_eq!(
        started(&first) + started(&second),
        4 - first["existing"].as_u64().unwrap() as usize
    );
    assert_eq!(started(&second), 0, "a repeated backfill starts nothing");
    assert_eq!(second["existing"], 4);

    let (status, deleted) = call(reqwest::Method::DELETE, &url("/schedules/hourly"), None).await;
    assert_eq!((status, &deleted["deleted"]), (200, &json!(true)));
    let (status, missing) = call(reqwest::Method::GET, &url("/schedules/hourly"), None).await;
    assert_eq!(
        (status, missing["code"].as_str()),
        (404, Some("unknown_schedule"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_schedules_over_http_get_a_clear_4xx() {
    let clock = HandClock::at("2026-03-02T08:30:00Z");
    let (base, _engine, _stop) = server(&clock).await;
    let url = |path: &str| format!("{base}{path}");
    let schedules_url = url("/schedules");
    for (body, code, status, message) in [
        (
            json!({ "name": "a", "workflow": "schedule-probe", "cron": "every day" }),
            "invalid_schedule",
            400,
            "not a valid cron expression",
        ),
        (
            json!({ "name": "a", "workflow": "schedule-probe", "cron": "0 * * * *", "time_zone": "Mars/Olympus" }),
            "invalid_schedule",
            400,
            "unknown time zone",
        ),
        (
            json!({ "name": "a", "workflow": "nope", "cron": "0 * * * *" }),
            "invalid_schedule",
            400,
            "workflow `nope` is not registered",
        ),
        (
            json!({ "name": "a", "workflow": "schedule-probe", "cron": "0 * * * *", "input": { "region": 7 } }),
            "schema",
            422,
            "region",
        ),
        (
            json!({ "name": "a", "workflow": "schedule-probe", "cron": "0 * * * *", "colour": "red" }),
            "invalid_schedule",
            400,
            "colour",
        ),
        (
            json!({ "workflow": "schedule-probe", "cron": "0 * * * *" }),
            "invalid_schedule",
            400,
            "needs a `name`",
        ),
        (
            json!({ "name": "in-code", "workflow": "schedule-probe", "cron": "0 * * * *", "input": { "region": "x" } }),
            "schedule_conflict",
            409,
            "declared in code",
        ),
    ] {
        let (got, error) = call(reqwest::Method::POST, &schedules_url, Some(body.clone())).await;
        assert_eq!(got, status, "{body}: {error}");
        assert_eq!(error["code"], code, "{body}: {error}");
        assert!(
            error["error"].as_str().unwrap().contains(message),
            "{body}: {error}"
        );
    }
    for (method, path) in [
        (reqwest::Method::PATCH, "/schedules/in-code"),
        (reqwest::Method::DELETE, "/schedules/in-code"),
    ] {
        let (status, error) = call(method, &url(path), Some(json!({ "cron": "0 3 * * *" }))).await;
        assert_eq!(
            (status, error["code"].as_str()),
            (409, Some("schedule_conflict")),
            "{error}"
        );
        assert!(
            error["error"]
                .as_str()
                .unwrap()
                .contains("change it in the code"),
            "{error}"
        );
    }
    let (status, error) = call(
        reqwest::Method::POST,
        &url("/schedules/in-code/backfill"),
        Some(json!({ "from": "yesterday", "to": "2026-03-02T08:00:00Z" })),
    )
    .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("invalid_schedule")),
        "{error}"
    );
    let (status, _) = call(reqwest::Method::POST, &url("/schedules/nope/pause"), None).await;
    assert_eq!(status, 404);

    let (_, doc) = call(reqwest::Method::GET, &url("/openapi.json"), None).await;
    for (path, method) in [
        ("/schedules", "get"),
        ("/schedules", "post"),
        ("/schedules/{name}", "put"),
        ("/schedules/{name}", "patch"),
        ("/schedules/{name}", "delete"),
        ("/schedules/{name}/pause", "post"),
        ("/schedules/{name}/resume", "post"),
        ("/schedules/{name}/trigger", "post"),
        ("/schedules/{name}/backfill", "post"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} in the OpenAPI document"
        );
    }
}
