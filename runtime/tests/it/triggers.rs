//! Triggers: cron schedules under a hand-moved clock (tick times, time zones, missed
//! ticks, once per tick across engines), webhook deliveries (signature, schema, filter,
//! transform, de-duplication), poll sources (once per item, durable cursor, failures),
//! definition errors at build time, and `ctx.trigger()` in the started runs.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use reprise::event::{RunFilter, RunId};
use reprise::prelude::*;
use reprise::store::{MemoryStore, SharedStore, SqliteStore};
use reprise::trigger::{
    CronSchedule, MissedTicks, PollBatch, PollItem, PollSource, WebhookDelivery, WebhookError,
    WebhookSource,
};
use reprise::{Clock, RunOutcome};
use serde_json::{Value, json};
use sha2::Sha256;

/// A clock moved by hand.
struct HandClock(Mutex<DateTime<Utc>>);

impl HandClock {
    fn at(text: &str) -> Arc<HandClock> {
        Arc::new(HandClock(Mutex::new(at(text))))
    }
    fn set(&self, text: &str) {
        *self.0.lock().unwrap() = at(text);
    }
    fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap();
        *now += chrono::Duration::from_std(by).unwrap();
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

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
struct Probe {
    #[serde(default)]
    tag: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
struct Seen {
    trigger: String,
    tag: String,
}

/// Reports what started it.
#[workflow(slug = "trigger-probe")]
async fn trigger_probe(ctx: Ctx, input: Probe) -> Result<Seen, WorkflowError> {
    Ok(Seen {
        trigger: ctx.trigger().to_string(),
        tag: input.tag,
    })
}

fn builder(store: SharedStore, clock: &Arc<HandClock>) -> reprise::EngineBuilder {
    Engine::builder()
        .store(store)
        .clock(clock.clone())
        .register(trigger_probe)
}

async fn probe_runs(engine: &Engine) -> usize {
    engine
        .list_runs(&RunFilter {
            workflow: Some("trigger-probe".into()),
            ..RunFilter::default()
        })
        .await
        .unwrap()
        .len()
}

/// Drives run `id` and returns what the workflow saw.
async fn seen(engine: &Engine, id: &RunId) -> Value {
    match engine.drive(id).await.unwrap().outcome {
        RunOutcome::Completed(output) => output,
        other => panic!("run {id} did not complete: {other:?}"),
    }
}

fn tick_tag() -> impl Fn(DateTime<Utc>) -> Value + Send + Sync + 'static {
    |tick| json!({ "tag": tick.to_rfc3339() })
}

// ---------------------------------------------------------------- cron

#[tokio::test]
async fn cron_fires_at_its_tick_not_before_and_once() {
    let clock = HandClock::at("2026-03-02T08:59:30Z");
    let daily = CronSchedule::new("daily", "0 9 * * *", "trigger-probe")
        .unwrap()
        .input_with(tick_tag());
    let engine = builder(Arc::new(MemoryStore::new()), &clock)
        .cron(daily)
        .build()
        .unwrap();
    let triggers = engine.triggers();

    // First sight: starts from now, nothing fires.
    assert!(triggers.fire_due(&engine).await.unwrap().is_empty());
    clock.set("2026-03-02T08:59:59Z");
    assert!(triggers.fire_due(&engine).await.unwrap().is_empty());

    clock.set("2026-03-02T09:00:00Z");
    let runs = triggers.fire_due(&engine).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(
        seen(&engine, &runs[0]).await,
        json!({ "trigger": "cron", "tag": "2026-03-02T09:00:00+00:00" })
    );

    // Called again at the same time and a bit later: the tick already fired.
    assert!(triggers.fire_due(&engine).await.unwrap().is_empty());
    clock.set("2026-03-02T09:00:20Z");
    assert!(triggers.fire_due(&engine).await.unwrap().is_empty());
    assert_eq!(probe_runs(&engine).await, 1);
    assert_eq!(
        engine.store().cursor("cron:daily").await.unwrap(),
        Some(json!("2026-03-02T09:00:00Z"))
    );

    // The next day's tick, noticed a few seconds late.
    clock.set("2026-03-03T09:00:05Z");
    let runs = triggers.fire_due(&engine).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(
        seen(&engine, &runs[0]).await["tag"],
        "2026-03-03T09:00:00+00:00"
    );
    assert_eq!(probe_runs(&engine).await, 2);
}

#[tokio::test]
async fn a_cron_tick_starts_one_run_across_engines_sharing_a_store() {
    let clock = HandClock::at("2026-03-02T08:59:00Z");
    let store: SharedStore = Arc::new(MemoryStore::new());
    let schedule = || CronSchedule::new("shared", "*/5 * * * *", "trigger-probe").unwrap();
    let one = builder(store.clone(), &clock)
        .cron(schedule())
        .build()
        .unwrap();
    let two = builder(store.clone(), &clock)
        .cron(schedule())
        .build()
        .unwrap();
    one.triggers().fire_due(&one).await.unwrap();
    let before = store.cursor("cron:shared").await.unwrap().unwrap();

    // Sequential: the second engine sees the tick handled.
    clock.set("2026-03-02T09:00:01Z");
    assert_eq!(one.triggers().fire_due(&one).await.unwrap().len(), 1);
    assert!(two.triggers().fire_due(&two).await.unwrap().is_empty());

    // Racing: the second engine read the cursor before the first wrote it. The run is
    // keyed by its tick, so it still is not started twice.
    store.set_cursor("cron:shared", &before).await.unwrap();
    assert!(two.triggers().fire_due(&two).await.unwrap().is_empty());
    assert_eq!(probe_runs(&one).await, 1);

    // Truly concurrent, on the next tick.
    clock.set("2026-03-02T09:05:00Z");
    let (a, b) = tokio::join!(one.triggers().fire_due(&one), two.triggers().fire_due(&two));
    assert_eq!(a.unwrap().len() + b.unwrap().len(), 1);
    assert_eq!(probe_runs(&one).await, 2);
}

#[tokio::test]
async fn a_time_zone_schedule_fires_at_the_right_utc_instant() {
    // 09:00 in Paris is 08:00 UTC in winter (CET) and 07:00 UTC in summer (CEST).
    let clock = HandClock::at("2026-01-15T07:59:00Z");
    let paris = CronSchedule::new("paris", "0 9 * * *", "trigger-probe")
        .unwrap()
        .time_zone("Europe/Paris")
        .unwrap()
        .input_with(tick_tag());
    assert_eq!(paris.time_zone_name(), "Europe/Paris");
    let engine = builder(Arc::new(MemoryStore::new()), &clock)
        .cron(paris)
        .build()
        .unwrap();
    let triggers = engine.triggers();
    triggers.fire_due(&engine).await.unwrap();

    clock.set("2026-01-15T07:59:59Z");
    assert!(triggers.fire_due(&engine).await.unwrap().is_empty());
    clock.set("2026-01-15T08:00:00Z");
    let runs = triggers.fire_due(&engine).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(
        seen(&engine, &runs[0]).await["tag"],
        "2026-01-15T08:00:00+00:00"
    );

    // Summer. The ticks in between were missed (skipped); the next one is on time.
    clock.set("2026-07-15T06:59:59Z");
    assert!(triggers.fire_due(&engine).await.unwrap().is_empty());
    clock.set("2026-07-15T07:00:00Z");
    let runs = triggers.fire_due(&engine).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(
        seen(&engine, &runs[0]).await["tag"],
        "2026-07-15T07:00:00+00:00"
    );
}

#[tokio::test]
async fn missed_ticks_are_skipped_or_run_once() {
    for (policy, expected_catch_up) in [(MissedTicks::Skip, 0), (MissedTicks::RunOnce, 1)] {
        let clock = HandClock::at("2026-03-02T10:30:00Z");
        let hourly = CronSchedule::new("hourly", "0 * * * *", "trigger-probe")
            .unwrap()
            .input_with(tick_tag())
            .missed(policy);
        let engine = builder(Arc::new(MemoryStore::new()), &clock)
            .cron(hourly)
            .build()
            .unwrap();
        let triggers = engine.triggers();
        triggers.fire_due(&engine).await.unwrap();

        // Down from 10:30 to 15:30: the ticks 11:00 … 15:00 were missed.
        clock.set("2026-03-02T15:30:00Z");
        let runs = triggers.fire_due(&engine).await.unwrap();
        assert_eq!(runs.len(), expected_catch_up, "{policy:?}");
        if let Some(run) = runs.first() {
            // The most recent missed tick.
            assert_eq!(seen(&engine, run).await["tag"], "2026-03-02T15:00:00+00:00");
        }
        // Nothing more for them, ever.
        assert!(triggers.fire_due(&engine).await.unwrap().is_empty());
        clock.set("2026-03-02T15:59:59Z");
        assert!(triggers.fire_due(&engine).await.unwrap().is_empty());

        // Back to normal: the 16:00 tick fires on time.
        clock.set("2026-03-02T16:00:10Z");
        let runs = triggers.fire_due(&engine).await.unwrap();
        assert_eq!(runs.len(), 1, "{policy:?}");
        assert_eq!(
            seen(&engine, &runs[0]).await["tag"],
            "2026-03-02T16:00:00+00:00"
        );
        assert_eq!(probe_runs(&engine).await, expected_catch_up + 1);
    }
}

#[tokio::test]
async fn the_scheduling_loop_fires_when_the_clock_is_moved_and_stops_on_shutdown() {
    let clock = HandClock::at("2026-03-02T08:59:58Z");
    let engine = builder(Arc::new(MemoryStore::new()), &clock)
        .cron(CronSchedule::new("loop", "0 9 * * *", "trigger-probe").unwrap())
        .build()
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(reprise::trigger::run_schedules(
        engine.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    // Let the loop see the schedule first (it starts from now).
    while engine.store().cursor("cron:loop").await.unwrap().is_none() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    clock.set("2026-03-02T09:00:00Z");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while probe_runs(&engine).await == 0 {
        assert!(std::time::Instant::now() < deadline, "the loop never fired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the loop stops on shutdown")
        .unwrap()
        .unwrap();
    assert_eq!(probe_runs(&engine).await, 1);
}

// ---------------------------------------------------------------- webhooks

const SECRET: &[u8] = b"It's a Secret to Everybody";

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[derive(Deserialize, JsonSchema)]
#[allow(dead_code)]
struct PushEvent {
    action: String,
    #[serde(rename = "ref")]
    reference: String,
}

fn webhook_engine() -> Engine {
    let clock = HandClock::at("2026-03-02T12:00:00Z");
    let github = WebhookSource::new("github", "trigger-probe")
        .secret(SECRET)
        .delivery_header("X-GitHub-Delivery")
        .schema::<PushEvent>()
        .filter(|body| match body["action"].as_str() {
            Some("push") => Ok(()),
            other => Err(format!("action {other:?} is not a push")),
        })
        .transform(|body| match body["ref"].as_str() {
            Some("refs/heads/bad") => Err("cannot build this branch".into()),
            Some("refs/heads/number") => Ok(json!({ "tag": 5 })),
            Some(reference) => Ok(json!({ "tag": reference })),
            None => Err("no ref".into()),
        });
    builder(Arc::new(MemoryStore::new()), &clock)
        .webhook(github)
        .webhook(WebhookSource::new("open", "trigger-probe").insecure_no_signature())
        .build()
        .unwrap()
}

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[tokio::test]
async fn webhook_signatures_are_checked() {
    let engine = webhook_engine();
    let body = br#"{"action":"push","ref":"refs/heads/main"}"#;

    let missing = engine
        .deliver_webhook("github", &headers(&[]), body)
        .await
        .unwrap_err();
    assert!(
        matches!(&missing, WebhookError::BadSignature(m) if m.contains("x-hub-signature-256") && m.contains("sha256=")),
        "{missing}"
    );

    let other_body = br#"{"action":"push","ref":"refs/heads/evil"}"#;
    let wrong = engine
        .deliver_webhook(
            "github",
            &headers(&[("x-hub-signature-256", &sign(other_body))]),
            body,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&wrong, WebhookError::BadSignature(m) if m.contains("does not match")),
        "{wrong}"
    );

    let malformed = engine
        .deliver_webhook(
            "github",
            &headers(&[("x-hub-signature-256", "sha1=0123")]),
            body,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&malformed, WebhookError::BadSignature(m) if m.contains("sha256=<hex digest>")),
        "{malformed}"
    );
    assert_eq!(
        probe_runs(&engine).await,
        0,
        "nothing starts on a bad signature"
    );

    // Signed right (the header name in any case): a run starts with the transformed input.
    let delivered = engine
        .deliver_webhook(
            "github",
            &headers(&[("X-Hub-Signature-256", &sign(body))]),
            body,
        )
        .await
        .unwrap();
    let WebhookDelivery::Started(run) = delivered else {
        panic!("expected a started run, got {delivered:?}");
    };
    assert_eq!(
        seen(&engine, &run).await,
        json!({ "trigger": "webhook", "tag": "refs/heads/main" })
    );

    // A source without a secret, declared so, takes unsigned requests.
    let open = engine
        .deliver_webhook("open", &headers(&[]), br#"{"tag":"hi"}"#)
        .await
        .unwrap();
    assert!(matches!(open, WebhookDelivery::Started(_)), "{open:?}");
}

#[tokio::test]
async fn a_webhook_delivery_id_starts_one_run() {
    let engine = webhook_engine();
    let body = br#"{"action":"push","ref":"refs/heads/main"}"#;
    let signature = sign(body);
    let with_id = |id: &'static str| {
        headers(&[
            ("x-hub-signature-256", signature.as_str()),
            ("x-github-delivery", id),
        ])
    };
    let first = engine
        .deliver_webhook("github", &with_id("d-1"), body)
        .await
        .unwrap();
    let again = engine
        .deliver_webhook("github", &with_id("d-1"), body)
        .await
        .unwrap();
    let WebhookDelivery::Started(run) = &first else {
        panic!("{first:?}")
    };
    assert_eq!(again, WebhookDelivery::Duplicate(run.clone()));
    let other = engine
        .deliver_webhook("github", &with_id("d-2"), body)
        .await
        .unwrap();
    assert!(
        matches!(&other, WebhookDelivery::Started(id) if id != run),
        "{other:?}"
    );
    assert_eq!(probe_runs(&engine).await, 2);
}

#[tokio::test]
async fn webhook_bodies_are_checked_filtered_and_transformed() {
    let engine = webhook_engine();
    let deliver = |body: &'static [u8]| {
        let engine = engine.clone();
        async move {
            engine
                .deliver_webhook(
                    "github",
                    &headers(&[("x-hub-signature-256", &sign(body))]),
                    body,
                )
                .await
        }
    };

    // The request schema, with the pointer of the offending value.
    let invalid = deliver(br#"{"action":5,"ref":"refs/heads/main"}"#)
        .await
        .unwrap_err();
    let WebhookError::InvalidPayload(violation) = &invalid else {
        panic!("{invalid}")
    };
    assert_eq!(violation.violations[0].pointer, "/action");
    assert!(
        invalid.to_string().contains("webhook `github`"),
        "{invalid}"
    );

    // Not JSON at all.
    let junk = deliver(b"action=push").await.unwrap_err();
    assert!(
        matches!(&junk, WebhookError::InvalidPayload(v) if v.violations[0].message.contains("not JSON")),
        "{junk}"
    );

    // Filtered, with the filter's reason.
    let filtered = deliver(br#"{"action":"opened","ref":"refs/heads/main"}"#)
        .await
        .unwrap();
    assert_eq!(
        filtered,
        WebhookDelivery::Filtered("action Some(\"opened\") is not a push".into())
    );

    // The transform refuses.
    let refused = deliver(br#"{"action":"push","ref":"refs/heads/bad"}"#)
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, WebhookError::Transform(m) if m.contains("cannot build this branch")),
        "{refused}"
    );

    // The transform's output does not fit the workflow's input.
    let misfit = deliver(br#"{"action":"push","ref":"refs/heads/number"}"#)
        .await
        .unwrap_err();
    let WebhookError::InvalidPayload(violation) = &misfit else {
        panic!("{misfit}")
    };
    assert_eq!(violation.violations[0].pointer, "/tag");
    assert!(violation.what.contains("trigger-probe"), "{misfit}");

    assert_eq!(
        probe_runs(&engine).await,
        0,
        "no rejected delivery starts a run"
    );

    let unknown = engine
        .deliver_webhook("gitlab", &headers(&[]), b"{}")
        .await
        .unwrap_err();
    assert!(
        matches!(&unknown, WebhookError::UnknownSource(name) if name == "gitlab"),
        "{unknown}"
    );
}

// ---------------------------------------------------------------- definitions

#[test]
fn invalid_trigger_definitions_fail_the_build_with_a_fix() {
    let clock = HandClock::at("2026-03-02T12:00:00Z");
    let build_error = |b: reprise::EngineBuilder| b.build().unwrap_err().to_string();

    let unsigned = build_error(
        builder(Arc::new(MemoryStore::new()), &clock)
            .webhook(WebhookSource::new("hooky", "trigger-probe")),
    );
    assert!(
        unsigned.contains("hooky") && unsigned.contains(".insecure_no_signature()"),
        "{unsigned}"
    );

    let unregistered = build_error(
        builder(Arc::new(MemoryStore::new()), &clock)
            .cron(CronSchedule::new("nightly", "0 2 * * *", "no-such-workflow").unwrap()),
    );
    assert!(
        unregistered.contains("cron schedule `nightly`")
            && unregistered.contains("no-such-workflow")
            && unregistered.contains("register"),
        "{unregistered}"
    );

    let poll = || {
        PollSource::new(
            "feed",
            "trigger-probe",
            Duration::from_secs(60),
            |_| async { Ok(PollBatch::default()) },
        )
    };
    let twice = build_error(
        builder(Arc::new(MemoryStore::new()), &clock)
            .poll(poll())
            .poll(poll()),
    );
    assert!(
        twice.contains("poll source `feed` is declared twice"),
        "{twice}"
    );

    let bad_name = build_error(
        builder(Arc::new(MemoryStore::new()), &clock)
            .webhook(WebhookSource::new("a/b", "trigger-probe").insecure_no_signature()),
    );
    assert!(bad_name.contains("`a/b`"), "{bad_name}");

    let bad_input = build_error(
        builder(Arc::new(MemoryStore::new()), &clock).cron(
            CronSchedule::new("typed", "0 2 * * *", "trigger-probe")
                .unwrap()
                .input(json!({ "tag": 1 })),
        ),
    );
    assert!(bad_input.contains("/tag"), "{bad_input}");

    let missing_env = build_error(
        builder(Arc::new(MemoryStore::new()), &clock).webhook(
            WebhookSource::new("env", "trigger-probe")
                .secret_env("REPRISE_TEST_SURELY_UNSET_WEBHOOK_SECRET"),
        ),
    );
    assert!(
        missing_env.contains("REPRISE_TEST_SURELY_UNSET_WEBHOOK_SECRET"),
        "{missing_env}"
    );

    let expression = CronSchedule::new("broken", "61 * * * *", "trigger-probe")
        .unwrap_err()
        .to_string();
    assert!(
        expression.contains("broken") && expression.contains("61 * * * *"),
        "{expression}"
    );
    let zone = CronSchedule::new("zoned", "0 9 * * *", "trigger-probe")
        .unwrap()
        .time_zone("Europe/Atlantis")
        .unwrap_err()
        .to_string();
    assert!(
        zone.contains("Europe/Atlantis") && zone.contains("IANA"),
        "{zone}"
    );
}

// ---------------------------------------------------------------- polls

/// A feed of numbered items; a poll returns items after the cursor (or all of them when
/// `ignore_cursor`, like a source that repeats itself), and can be made to fail.
#[derive(Default)]
struct Feed {
    items: Mutex<Vec<u64>>,
    cursors_seen: Mutex<Vec<Option<Value>>>,
    fail: AtomicBool,
    ignore_cursor: AtomicBool,
    calls: AtomicUsize,
}

impl Feed {
    fn source(self: &Arc<Self>, every: Duration) -> PollSource {
        let feed = self.clone();
        PollSource::new("feed", "trigger-probe", every, move |cursor| {
            let feed = feed.clone();
            async move {
                feed.calls.fetch_add(1, Ordering::SeqCst);
                feed.cursors_seen.lock().unwrap().push(cursor.clone());
                if feed.fail.load(Ordering::SeqCst) {
                    return Err("feed unreachable".to_owned());
                }
                let after = if feed.ignore_cursor.load(Ordering::SeqCst) {
                    0
                } else {
                    cursor.and_then(|c| c["after"].as_u64()).unwrap_or(0)
                };
                let items: Vec<u64> = feed
                    .items
                    .lock()
                    .unwrap()
                    .iter()
                    .copied()
                    .filter(|id| *id > after)
                    .collect();
                Ok(PollBatch {
                    cursor: items.last().map(|last| json!({ "after": last })),
                    items: items
                        .iter()
                        .map(|id| {
                            PollItem::new(id.to_string(), json!({ "tag": format!("item-{id}") }))
                        })
                        .collect(),
                })
            }
        })
    }

    fn publish(&self, ids: &[u64]) {
        self.items.lock().unwrap().extend_from_slice(ids);
    }
}

#[tokio::test]
async fn poll_items_start_one_run_each_and_the_cursor_is_passed_back() {
    let clock = HandClock::at("2026-03-02T12:00:00Z");
    let feed = Arc::new(Feed::default());
    feed.publish(&[1, 2]);
    let every = Duration::from_secs(60);
    let engine = builder(Arc::new(MemoryStore::new()), &clock)
        .poll(feed.source(every))
        .build()
        .unwrap();
    let triggers = engine.triggers();

    // The first poll happens at once.
    let runs = triggers.fire_due(&engine).await.unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(
        seen(&engine, &runs[0]).await,
        json!({ "trigger": "poll", "tag": "item-1" })
    );
    assert_eq!(
        engine.store().cursor("poll:feed").await.unwrap(),
        Some(json!({ "after": 2 }))
    );

    // Not again before the interval.
    feed.publish(&[3]);
    clock.advance(Duration::from_secs(59));
    assert!(triggers.fire_due(&engine).await.unwrap().is_empty());
    assert_eq!(feed.calls.load(Ordering::SeqCst), 1);

    clock.advance(Duration::from_secs(1));
    let runs = triggers.fire_due(&engine).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(seen(&engine, &runs[0]).await["tag"], "item-3");
    assert_eq!(
        *feed.cursors_seen.lock().unwrap(),
        [None, Some(json!({ "after": 2 }))]
    );

    // A source that returns old items again (as after a lost cursor write) starts nothing.
    feed.ignore_cursor.store(true, Ordering::SeqCst);
    clock.advance(every);
    assert!(triggers.fire_due(&engine).await.unwrap().is_empty());
    assert_eq!(probe_runs(&engine).await, 3);
}

#[tokio::test]
async fn a_failing_poll_does_not_stop_later_polls() {
    let clock = HandClock::at("2026-03-02T12:00:00Z");
    let feed = Arc::new(Feed::default());
    feed.publish(&[1]);
    feed.fail.store(true, Ordering::SeqCst);
    let every = Duration::from_secs(30);
    let engine = builder(Arc::new(MemoryStore::new()), &clock)
        .poll(feed.source(every))
        .build()
        .unwrap();
    let triggers = engine.triggers();

    assert!(triggers.fire_due(&engine).await.unwrap().is_empty());
    clock.advance(every);
    assert!(triggers.fire_due(&engine).await.unwrap().is_empty());
    assert_eq!(
        feed.calls.load(Ordering::SeqCst),
        2,
        "retried at the interval"
    );

    feed.fail.store(false, Ordering::SeqCst);
    clock.advance(every);
    assert_eq!(triggers.fire_due(&engine).await.unwrap().len(), 1);
    assert_eq!(
        *feed.cursors_seen.lock().unwrap(),
        [None, None, None],
        "failed polls keep the cursor"
    );
}

#[tokio::test]
async fn the_poll_cursor_survives_a_restart_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reprise.db");
    let clock = HandClock::at("2026-03-02T12:00:00Z");
    let feed = Arc::new(Feed::default());
    feed.publish(&[1, 2, 3]);
    {
        let store: SharedStore = Arc::new(SqliteStore::open(&path).unwrap());
        let engine = builder(store, &clock)
            .poll(feed.source(Duration::from_secs(60)))
            .build()
            .unwrap();
        assert_eq!(engine.triggers().fire_due(&engine).await.unwrap().len(), 3);
    }

    // A new process: the first poll gets the stored cursor, and old items, even if
    // returned again, start nothing.
    feed.publish(&[4]);
    let store: SharedStore = Arc::new(SqliteStore::open(&path).unwrap());
    let engine = builder(store, &clock)
        .poll(feed.source(Duration::from_secs(60)))
        .build()
        .unwrap();
    let runs = engine.triggers().fire_due(&engine).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(seen(&engine, &runs[0]).await["tag"], "item-4");
    assert_eq!(
        feed.cursors_seen.lock().unwrap().last().cloned().flatten(),
        Some(json!({ "after": 3 }))
    );
    feed.ignore_cursor.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_secs(60));
    assert!(
        engine
            .triggers()
            .fire_due(&engine)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(probe_runs(&engine).await, 4);
}
