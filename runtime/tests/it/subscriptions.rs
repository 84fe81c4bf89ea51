//! Subscribable workflows (`#[workflow(subscribable = T)]`) and trigger actors: one trigger
//! occurrence fans out into one run per active subscription, exactly once per occurrence
//! and subscriber also when two schedulers race (memory, SQLite, Postgres); each run acts
//! for its subscriber (`ctx.subscriber()`, `ctx.user()`); paused and deleted
//! subscriptions start nothing; configs are validated against the schema; every trigger
//! kind records its actor (`ctx.actor()`).

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use reprise::event::{RunFilter, RunId};
use reprise::identity::{Actor, RunRelation};
use reprise::prelude::*;
use reprise::store::{MemoryStore, SharedStore, SqliteStore};
use reprise::trigger::{
    CronSchedule, PollBatch, PollItem, PollSource, ScheduleSpec, WebhookDelivery, WebhookSource,
};
use reprise::{Clock, EngineError, RunOutcome, StartOptions};
use serde_json::{Value, json};

/// A clock moved by hand.
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

/// A subscriber's digest settings.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
struct DigestConfig {
    repos: Vec<String>,
    #[serde(default)]
    max_items: Option<u8>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
struct Tick {
    #[serde(default)]
    tag: String,
}

/// Reports whom it acts for and who started it.
#[workflow(slug = "sub-digest", subscribable = DigestConfig, on_event = "digest.requested")]
async fn sub_digest(ctx: Ctx, _input: Tick) -> Result<Value, WorkflowError> {
    let config = match ctx.subscriber() {
        Some(subscriber) => Some(
            subscriber
                .config_as::<DigestConfig>()
                .map_err(|e| WorkflowError::new("config", e.to_string(), false))?
                .repos,
        ),
        None => None,
    };
    Ok(json!({
        "user": ctx.user(),
        "subscription": ctx.subscriber().map(|s| s.subscription.clone()),
        "repos": config,
        "actor": ctx.actor(),
    }))
}

/// Reports who started it (not subscribable).
#[workflow(slug = "actor-probe")]
async fn actor_probe(ctx: Ctx, _input: Tick) -> Result<Value, WorkflowError> {
    Ok(json!({ "actor": ctx.actor(), "user": ctx.user() }))
}

/// Fails for good, handing over to `actor_failure_handler`.
#[workflow(slug = "actor-doomed", on_failure = actor_failure_handler, max_attempts = 1)]
async fn actor_doomed(_input: Tick) -> Result<Value, WorkflowError> {
    Err(WorkflowError::new("doomed", "always fails", false))
}

#[workflow(slug = "actor-failure-handler")]
async fn actor_failure_handler(
    ctx: Ctx,
    _failed: reprise::FailedRun,
) -> Result<Value, WorkflowError> {
    Ok(json!({ "actor": ctx.actor() }))
}

fn builder(store: SharedStore, clock: &Arc<HandClock>) -> reprise::EngineBuilder {
    Engine::builder()
        .store(store)
        .clock(clock.clone())
        .register(sub_digest)
        .register(actor_probe)
        .register(actor_doomed)
        .register(actor_failure_handler)
}

fn daily() -> CronSchedule {
    CronSchedule::new("digest-daily", "0 9 * * *", "sub-digest").unwrap()
}

async fn runs_of(engine: &Engine, workflow: &str) -> Vec<reprise::event::RunRecord> {
    engine
        .list_runs(&RunFilter {
            workflow: Some(workflow.into()),
            ..RunFilter::default()
        })
        .await
        .unwrap()
}

async fn output(engine: &Engine, id: &RunId) -> Value {
    match engine.drive(id).await.unwrap().outcome {
        RunOutcome::Completed(output) => output,
        other => panic!("run {id} did not complete: {other:?}"),
    }
}

/// Subscribes ada, bob and cy; returns their subscription ids in that order.
async fn subscribe_three(engine: &Engine) -> Vec<String> {
    let mut ids = Vec::new();
    for user in ["ada", "bob", "cy"] {
        let subscription = engine
            .create_subscription(
                "sub-digest",
                user,
                json!({ "repos": [format!("{user}/app")] }),
            )
            .await
            .unwrap();
        assert_eq!(subscription.user, user);
        assert!(!subscription.paused);
        ids.push(subscription.id);
    }
    ids
}

/// The users the runs `ids` act for, sorted, after driving them; checks each run's
/// subscriber, config and actor.
async fn users_of(engine: &Engine, ids: &[RunId], subscriptions: &[String]) -> Vec<String> {
    let mut users = Vec::new();
    for id in ids {
        let out = output(engine, id).await;
        let user = out["user"].as_str().unwrap().to_owned();
        assert_eq!(out["repos"], json!([format!("{user}/app")]), "{out}");
        let subscription = out["subscription"].as_str().unwrap();
        assert!(subscriptions.iter().any(|s| s == subscription), "{out}");
        assert_eq!(out["actor"]["type"], "schedule", "{out}");
        assert_eq!(out["actor"]["name"], "digest-daily", "{out}");
        users.push(user);
    }
    users.sort();
    users
}

/// One tick, two engines (schedulers) sharing `store` racing it: exactly one run per
/// subscriber, each acting for its subscriber.
async fn one_tick_three_subscribers_two_schedulers(store: SharedStore) {
    let clock = HandClock::at("2026-03-02T08:59:00Z");
    let one = builder(store.clone(), &clock)
        .cron(daily())
        .build()
        .unwrap();
    let two = builder(store.clone(), &clock)
        .cron(daily())
        .build()
        .unwrap();
    let subscriptions = subscribe_three(&one).await;
    assert_eq!(
        two.subscriptions(Some("sub-digest")).await.unwrap().len(),
        3
    );
    // First sight of the schedule: nothing fires.
    one.triggers().fire_due(&one).await.unwrap();
    two.triggers().fire_due(&two).await.unwrap();

    clock.set("2026-03-02T09:00:00Z");
    let (a, b) = tokio::join!(one.triggers().fire_due(&one), two.triggers().fire_due(&two));
    let mut started = a.unwrap();
    started.extend(b.unwrap());
    assert_eq!(started.len(), 3, "{started:?}");
    // Firing the tick again (a third scheduler that read an old cursor) starts nothing.
    store
        .set_cursor("cron:digest-daily", &json!("2026-03-02T08:59:00Z"))
        .await
        .unwrap();
    assert!(two.triggers().fire_due(&two).await.unwrap().is_empty());
    assert_eq!(runs_of(&one, "sub-digest").await.len(), 3);
    assert_eq!(
        users_of(&one, &started, &subscriptions).await,
        ["ada", "bob", "cy"]
    );
}

#[tokio::test]
async fn one_cron_tick_starts_one_run_per_subscriber_on_memory() {
    one_tick_three_subscribers_two_schedulers(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn one_cron_tick_starts_one_run_per_subscriber_with_two_schedulers_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("subs.db");
    let store: SharedStore = Arc::new(SqliteStore::open(&path).unwrap());
    // Two engines on one SQLite file, each with its own connection.
    let clock = HandClock::at("2026-03-02T08:59:00Z");
    let other: SharedStore = Arc::new(SqliteStore::open(&path).unwrap());
    let one = builder(store.clone(), &clock)
        .cron(daily())
        .build()
        .unwrap();
    let two = builder(other, &clock).cron(daily()).build().unwrap();
    let subscriptions = subscribe_three(&one).await;
    one.triggers().fire_due(&one).await.unwrap();
    two.triggers().fire_due(&two).await.unwrap();
    clock.set("2026-03-02T09:00:00Z");
    let (a, b) = tokio::join!(one.triggers().fire_due(&one), two.triggers().fire_due(&two));
    let mut started = a.unwrap();
    started.extend(b.unwrap());
    assert_eq!(started.len(), 3, "{started:?}");
    assert_eq!(runs_of(&two, "sub-digest").await.len(), 3);
    assert_eq!(
        users_of(&one, &started, &subscriptions).await,
        ["ada", "bob", "cy"]
    );
    // And the shared-store variant of the race.
    drop((one, two));
    let dir = tempfile::tempdir().unwrap();
    let store: SharedStore = Arc::new(SqliteStore::open(dir.path().join("b.db")).unwrap());
    one_tick_three_subscribers_two_schedulers(store).await;
}

#[tokio::test]
async fn one_cron_tick_starts_one_run_per_subscriber_with_two_schedulers_on_postgres() {
    let Some(url) = crate::postgres::test_url() else {
        return;
    };
    let schema = crate::postgres::TestSchema::new(&url);
    let connect = || reprise::store::PostgresStore::connect_with(&url, schema.options());
    let (a, b) = (connect().await.unwrap(), connect().await.unwrap());
    let clock = HandClock::at("2026-03-02T08:59:00Z");
    let one = builder(Arc::new(a), &clock).cron(daily()).build().unwrap();
    let two = builder(Arc::new(b), &clock).cron(daily()).build().unwrap();
    let subscriptions = subscribe_three(&one).await;
    one.triggers().fire_due(&one).await.unwrap();
    two.triggers().fire_due(&two).await.unwrap();
    clock.set("2026-03-02T09:00:00Z");
    let (a, b) = tokio::join!(one.triggers().fire_due(&one), two.triggers().fire_due(&two));
    let mut started = a.unwrap();
    started.extend(b.unwrap());
    assert_eq!(started.len(), 3, "{started:?}");
    assert_eq!(runs_of(&two, "sub-digest").await.len(), 3);
    assert_eq!(
        users_of(&one, &started, &subscriptions).await,
        ["ada", "bob", "cy"]
    );
}

/// Paused: nothing at its ticks; resumed: runs again at the next tick; deleted: nothing,
/// and its runs already started go on.
async fn pause_resume_delete(store: SharedStore) {
    let clock = HandClock::at("2026-03-02T08:59:00Z");
    let engine = builder(store, &clock).cron(daily()).build().unwrap();
    let ids = subscribe_three(&engine).await;
    engine.triggers().fire_due(&engine).await.unwrap();

    let paused = engine.pause_subscription(&ids[1], true).await.unwrap();
    assert!(paused.paused);
    assert!(engine.subscription(&ids[1]).await.unwrap().paused);
    clock.set("2026-03-02T09:00:00Z");
    let started = engine.triggers().fire_due(&engine).await.unwrap();
    assert_eq!(users_of(&engine, &started, &ids).await, ["ada", "cy"]);

    // Everything paused: the tick starts nothing.
    engine.pause_subscription(&ids[0], true).await.unwrap();
    engine.pause_subscription(&ids[2], true).await.unwrap();
    clock.set("2026-03-03T09:00:00Z");
    assert!(
        engine
            .triggers()
            .fire_due(&engine)
            .await
            .unwrap()
            .is_empty()
    );

    // Resumed: the next tick starts its run again (the missed one is not made up).
    for id in &ids {
        assert!(!engine.pause_subscription(id, false).await.unwrap().paused);
    }
    clock.set("2026-03-04T09:00:00Z");
    let started = engine.triggers().fire_due(&engine).await.unwrap();
    assert_eq!(started.len(), 3);

    // A run started for bob is still queued when bob's subscription is deleted: it goes on.
    let bob_run = {
        let mut found = None;
        for id in &started {
            let events = engine.events(id).await.unwrap();
            let created = serde_json::to_value(&events[0]).unwrap();
            if created.to_string().contains(&ids[1]) {
                found = Some(id.clone());
            }
        }
        found.expect("a run for bob's subscription")
    };
    let deleted = engine.delete_subscription(&ids[1]).await.unwrap();
    assert_eq!(deleted.user, "bob");
    assert!(matches!(
        engine.subscription(&ids[1]).await,
        Err(EngineError::UnknownSubscription(_))
    ));
    assert!(matches!(
        engine.delete_subscription(&ids[1]).await,
        Err(EngineError::UnknownSubscription(_))
    ));
    assert_eq!(output(&engine, &bob_run).await["user"], "bob");
    clock.set("2026-03-05T09:00:00Z");
    let started = engine.triggers().fire_due(&engine).await.unwrap();
    assert_eq!(users_of(&engine, &started, &ids).await, ["ada", "cy"]);
    assert_eq!(engine.subscriptions(None).await.unwrap().len(), 2);
    assert_eq!(
        engine
            .subscriptions(Some("actor-probe"))
            .await
            .unwrap()
            .len(),
        0
    );
}

#[tokio::test]
async fn paused_subscriptions_start_nothing_resumed_ones_start_again_deleted_ones_stop_on_memory() {
    pause_resume_delete(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn paused_subscriptions_start_nothing_resumed_ones_start_again_deleted_ones_stop_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    pause_resume_delete(Arc::new(
        SqliteStore::open(dir.path().join("p.db")).unwrap(),
    ))
    .await;
}

#[tokio::test]
async fn a_subscription_is_checked_against_its_workflow_and_schema() {
    let clock = HandClock::at("2026-03-02T08:59:00Z");
    let engine = builder(Arc::new(MemoryStore::new()), &clock)
        .build()
        .unwrap();
    let Err(EngineError::Schema(violation)) = engine
        .create_subscription(
            "sub-digest",
            "ada",
            json!({ "repos": [1], "max_items": 300 }),
        )
        .await
    else {
        panic!("a config failing its schema was accepted");
    };
    let pointers: Vec<&str> = violation
        .violations
        .iter()
        .map(|v| v.pointer.as_str())
        .collect();
    assert!(pointers.contains(&"/repos/0"), "{pointers:?}");
    assert!(pointers.contains(&"/max_items"), "{pointers:?}");
    let Err(EngineError::InvalidRequest(message)) = engine
        .create_subscription("actor-probe", "ada", json!({}))
        .await
    else {
        panic!("a subscription to a non-subscribable workflow was accepted");
    };
    assert!(
        message.contains("not subscribable") && message.contains("subscribable = "),
        "{message}"
    );
    assert!(matches!(
        engine.create_subscription("nope", "ada", json!({})).await,
        Err(EngineError::UnknownWorkflow(_))
    ));
    let Err(EngineError::InvalidRequest(message)) = engine
        .create_subscription("sub-digest", "a b", json!({ "repos": [] }))
        .await
    else {
        panic!("a bad user id was accepted");
    };
    assert!(message.contains("user"), "{message}");
    assert!(matches!(
        engine.pause_subscription("sub_nope", true).await,
        Err(EngineError::UnknownSubscription(_))
    ));
    assert!(matches!(
        engine.pause_subscription("../x", true).await,
        Err(EngineError::UnknownSubscription(_))
    ));
    assert!(
        engine.subscriptions(None).await.unwrap().is_empty(),
        "nothing stored"
    );
    let schema = engine
        .workflow("sub-digest")
        .unwrap()
        .subscription_schema()
        .unwrap();
    assert!(schema["properties"]["repos"].is_object(), "{schema}");
    assert!(
        engine
            .workflow("actor-probe")
            .unwrap()
            .subscription_schema()
            .is_none()
    );
}

#[tokio::test]
async fn a_direct_start_runs_once_without_a_subscriber_or_for_one_subscription() {
    let clock = HandClock::at("2026-03-02T08:59:00Z");
    let dir = tempfile::tempdir().unwrap();
    let store: SharedStore = Arc::new(SqliteStore::open(dir.path().join("d.db")).unwrap());
    let engine = builder(store, &clock).build().unwrap();
    let ids = subscribe_three(&engine).await;
    let (run, _) = engine
        .start_with(
            "sub-digest",
            json!({}),
            reprise::event::Trigger::Code,
            StartOptions::new(),
        )
        .await
        .unwrap();
    let out = output(&engine, &run).await;
    assert_eq!(out["user"], Value::Null);
    assert_eq!(out["subscription"], Value::Null);
    assert_eq!(runs_of(&engine, "sub-digest").await.len(), 1);

    let subscriber = engine.subscriber_for("sub-digest", &ids[2]).await.unwrap();
    let (run, _) = engine
        .start_with(
            "sub-digest",
            json!({}),
            reprise::event::Trigger::Code,
            StartOptions::new().subscriber(subscriber),
        )
        .await
        .unwrap();
    let out = output(&engine, &run).await;
    assert_eq!(out["user"], "cy");
    assert_eq!(out["subscription"], json!(ids[2]));
    assert!(matches!(
        engine.subscriber_for("actor-probe", &ids[0]).await,
        Err(EngineError::InvalidRequest(_))
    ));
    engine.pause_subscription(&ids[0], true).await.unwrap();
    let Err(EngineError::InvalidRequest(message)) =
        engine.subscriber_for("sub-digest", &ids[0]).await
    else {
        panic!("a paused subscription started a run");
    };
    assert!(message.contains("resume"), "{message}");
}

// ---------------------------------------------------------------- fan-out per trigger kind

/// Webhook deliveries, poll items, emitted events and stored schedule ticks fan out too,
/// once per occurrence and subscriber.
async fn every_trigger_kind_fans_out(store: SharedStore) {
    let clock = HandClock::at("2026-03-02T08:30:00Z");
    let items = Arc::new(Mutex::new(vec!["i1".to_owned()]));
    let feed = items.clone();
    let poll = PollSource::new(
        "feed",
        "sub-digest",
        std::time::Duration::from_secs(60),
        move |_| {
            let items = feed.lock().unwrap().clone();
            async move {
                Ok(PollBatch {
                    cursor: None,
                    items: items
                        .into_iter()
                        .map(|id| PollItem::new(id, json!({})))
                        .collect(),
                })
            }
        },
    );
    let engine = builder(store, &clock)
        .webhook(
            WebhookSource::new("hooked", "sub-digest")
                .insecure_no_signature()
                .delivery_header("X-Delivery"),
        )
        .poll(poll)
        .build()
        .unwrap();
    let ids = subscribe_three(&engine).await;
    engine.pause_subscription(&ids[2], true).await.unwrap();

    // Poll: one item, two active subscribers; the same item again starts nothing.
    let started = engine.triggers().fire_due(&engine).await.unwrap();
    assert_eq!(started.len(), 2);
    for id in &started {
        let out = output(&engine, id).await;
        assert_eq!(
            out["actor"],
            json!({ "type": "poll", "source": "feed", "item_id": "i1" })
        );
    }

    // Webhook with a delivery id: twice the same delivery, one run per subscriber.
    let headers = vec![("x-delivery".to_owned(), "d-1".to_owned())];
    let WebhookDelivery::Subscribers {
        started,
        duplicates,
    } = engine
        .deliver_webhook("hooked", &headers, b"{}")
        .await
        .unwrap()
    else {
        panic!("not fanned out");
    };
    assert_eq!((started.len(), duplicates.len()), (2, 0));
    let out = output(&engine, &started[0]).await;
    assert_eq!(
        out["actor"],
        json!({ "type": "webhook", "source": "hooked", "delivery_id": "d-1" })
    );
    let WebhookDelivery::Subscribers {
        started,
        duplicates,
    } = engine
        .deliver_webhook("hooked", &headers, b"{}")
        .await
        .unwrap()
    else {
        panic!("not fanned out");
    };
    assert_eq!((started.len(), duplicates.len()), (0, 2));

    // An emitted event: one run per active subscriber, once per event id.
    let emitted = engine
        .emit("digest.requested", json!({}), Some("e-1".into()))
        .await
        .unwrap();
    assert_eq!(emitted.started.len(), 2);
    let out = output(&engine, &emitted.started[0]).await;
    assert_eq!(
        out["actor"],
        json!({ "type": "event", "name": "digest.requested", "id": "e-1" })
    );
    assert!(out["subscription"].is_string(), "{out}");
    let again = engine
        .emit("digest.requested", json!({}), Some("e-1".into()))
        .await
        .unwrap();
    assert!(again.started.is_empty());

    // Stored schedule ticks.
    engine
        .create_schedule(
            "stored",
            ScheduleSpec::cron("sub-digest", "0 * * * *"),
            false,
            "test",
        )
        .await
        .unwrap();
    engine.triggers().fire_due(&engine).await.unwrap();
    clock.set("2026-03-02T09:00:00Z");
    let started = engine.triggers().fire_due(&engine).await.unwrap();
    let mut users = Vec::new();
    for id in &started {
        let out = output(&engine, id).await;
        assert_eq!(out["actor"]["type"], "schedule", "{out}");
        assert_eq!(out["actor"]["name"], "stored", "{out}");
        users.push(out["user"].as_str().unwrap().to_owned());
    }
    users.sort();
    assert_eq!(users, ["ada", "bob"]);
}

#[tokio::test]
async fn webhooks_polls_events_and_stored_schedules_fan_out_on_memory() {
    every_trigger_kind_fans_out(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn webhooks_polls_events_and_stored_schedules_fan_out_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    every_trigger_kind_fans_out(Arc::new(
        SqliteStore::open(dir.path().join("t.db")).unwrap(),
    ))
    .await;
}

#[tokio::test]
async fn each_trigger_kind_records_its_actor() {
    let clock = HandClock::at("2026-03-02T08:59:00Z");
    let dir = tempfile::tempdir().unwrap();
    let store: SharedStore = Arc::new(SqliteStore::open(dir.path().join("a.db")).unwrap());
    let poll = PollSource::new(
        "items",
        "actor-probe",
        std::time::Duration::from_secs(60),
        |_| async {
            Ok(PollBatch {
                cursor: None,
                items: vec![PollItem::new("item-7", json!({}))],
            })
        },
    );
    let engine = builder(store, &clock)
        .cron(CronSchedule::new("probe-cron", "0 9 * * *", "actor-probe").unwrap())
        .webhook(
            WebhookSource::new("probe-hook", "actor-probe")
                .insecure_no_signature()
                .delivery_header("X-Delivery"),
        )
        .poll(poll)
        .build()
        .unwrap();

    // Poll (fires at once) and the first sight of the cron.
    let started = engine.triggers().fire_due(&engine).await.unwrap();
    assert_eq!(started.len(), 1);
    assert_eq!(
        output(&engine, &started[0]).await["actor"],
        json!({ "type": "poll", "source": "items", "item_id": "item-7" })
    );
    // Cron tick.
    clock.set("2026-03-02T09:00:00Z");
    let started = engine.triggers().fire_due(&engine).await.unwrap();
    assert_eq!(started.len(), 1);
    assert_eq!(
        output(&engine, &started[0]).await["actor"],
        json!({ "type": "schedule", "name": "probe-cron", "tick": "2026-03-02T09:00:00Z" })
    );
    // Webhook, with and without a delivery id.
    let delivery = engine
        .deliver_webhook("probe-hook", &[("x-delivery".into(), "abc".into())], b"{}")
        .await
        .unwrap();
    let WebhookDelivery::Started(run) = delivery else {
        panic!("{delivery:?}");
    };
    assert_eq!(
        output(&engine, &run).await["actor"],
        json!({ "type": "webhook", "source": "probe-hook", "delivery_id": "abc" })
    );
    let WebhookDelivery::Started(run) = engine
        .deliver_webhook("probe-hook", &[], b"{}")
        .await
        .unwrap()
    else {
        panic!("no run");
    };
    assert_eq!(
        output(&engine, &run).await["actor"],
        json!({ "type": "webhook", "source": "probe-hook" })
    );
    // on_failure handler: the failed run.
    let failed = engine
        .start_json("actor-doomed", json!({}), reprise::event::Trigger::Code)
        .await
        .unwrap();
    assert!(matches!(
        engine.drive(&failed).await.unwrap().outcome,
        RunOutcome::Failed(_)
    ));
    let handlers = runs_of(&engine, "actor-failure-handler").await;
    assert_eq!(handlers.len(), 1);
    let actor: Actor =
        serde_json::from_value(output(&engine, &handlers[0].id).await["actor"].clone()).unwrap();
    assert_eq!(
        actor,
        Actor::Run {
            run_id: failed.to_string(),
            relation: RunRelation::Failed
        }
    );
}

// ---------------------------------------------------------------- HTTP

#[tokio::test]
async fn subscriptions_over_http_are_created_listed_paused_and_deleted_with_422_pointers() {
    use reprise::http::{HttpOptions, serve};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let clock = HandClock::at("2026-03-02T08:59:00Z");
    let engine = builder(Arc::new(MemoryStore::new()), &clock)
        .build()
        .unwrap();
    let options = HttpOptions {
        api_token: None,
        ..HttpOptions::default()
    };
    let server = tokio::spawn(serve(
        engine.clone(),
        listener,
        options,
        std::future::pending(),
    ));
    let client = reqwest::Client::new();
    let send = |request: reqwest::RequestBuilder| async move {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json::<Value>().await.unwrap())
    };
    let url = |path: &str| format!("{base}{path}");

    // A config failing its schema: 422 naming each pointer; nothing stored.
    let (status, body) = send(client.post(url("/subscriptions")).json(&json!({
        "workflow": "sub-digest", "user": "ada", "config": { "repos": [1] }
    })))
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["violations"][0]["pointer"], "/repos/0", "{body}");
    let (status, body) = send(client.post(url("/subscriptions")).json(&json!({
        "workflow": "actor-probe", "user": "ada", "config": {}
    })))
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("not subscribable"),
        "{body}"
    );
    let (status, _) = send(client.post(url("/subscriptions")).json(&json!({
        "workflow": "nope", "user": "ada"
    })))
    .await;
    assert_eq!(status, 404);

    let (status, created) = send(client.post(url("/subscriptions")).json(&json!({
        "workflow": "sub-digest", "user": "ada", "config": { "repos": ["ada/app"] }
    })))
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["created_by"], "principal api");
    let id = created["id"].as_str().unwrap().to_owned();
    let (status, list) = send(client.get(url("/subscriptions?workflow=sub-digest"))).await;
    assert_eq!((status, list.as_array().unwrap().len()), (200, 1), "{list}");
    let (status, paused) = send(client.post(url(&format!("/subscriptions/{id}/pause")))).await;
    assert_eq!((status, &paused["paused"]), (200, &json!(true)), "{paused}");
    // A paused subscription cannot start a run directly either.
    let (status, body) = send(
        client
            .post(url(&format!("/workflows/sub-digest?subscription={id}")))
            .json(&json!({})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, resumed) = send(client.post(url(&format!("/subscriptions/{id}/resume")))).await;
    assert_eq!(
        (status, &resumed["paused"]),
        (200, &json!(false)),
        "{resumed}"
    );
    let (status, started) = send(
        client
            .post(url(&format!("/workflows/sub-digest?subscription={id}")))
            .json(&json!({})),
    )
    .await;
    assert_eq!(status, 202, "{started}");
    let run = RunId(started["run_id"].as_str().unwrap().to_owned());
    assert_eq!(output(&engine, &run).await["user"], "ada");

    // The workflow list shows the subscription schema.
    let (_, workflows) = send(client.get(url("/workflows"))).await;
    let digest = workflows
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["slug"] == "sub-digest")
        .unwrap();
    assert!(
        digest["subscription_schema"]["properties"]["repos"].is_object(),
        "{digest}"
    );

    // The workflow's UI page lists its subscriptions.
    let page = client
        .get(url("/ui/workflows/sub-digest"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Subscriptions") && page.contains(&id),
        "{page}"
    );

    let (status, _) = send(client.delete(url(&format!("/subscriptions/{id}")))).await;
    assert_eq!(status, 200);
    let (status, body) = send(client.delete(url(&format!("/subscriptions/{id}")))).await;
    assert_eq!(
        (status, &body["code"]),
        (404, &json!("unknown_subscription")),
        "{body}"
    );
    let (_, openapi) = send(client.get(url("/openapi.json"))).await;
    assert!(openapi["paths"]["/subscriptions"]["post"].is_object());
    server.abort();
}
