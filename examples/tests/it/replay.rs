//! Replay regression (DESIGN "Testkit"): histories recorded by version 1 of `fulfill-order`
//! replay against today's code (`reprise_examples::versioning`, which made its change with
//! `ctx.patched` and pinned ids); the same change made without them is reported with the
//! step id; `runs export` and `workflows check` through the example app.
//!
//! The fixtures in `tests/fixtures/` were recorded by `fulfill_order_v1` below, a copy of
//! the workflow as it was before the change. Regenerate them with
//! `cargo test -p reprise-examples --test it -- --ignored record_v1_fixtures`.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use reprise::event::{EventPayload, RunStatus, RunUpdate};
use reprise::prelude::*;
use reprise::store::{Append, SqliteStore, Store};
use reprise::{RunExport, RunOutcome, Wait};
use reprise_examples::approval::{ApprovalRequest, Decision, approval};
use reprise_examples::book_trip::{TripRequest, book_trip};
use reprise_examples::signup::signup_pipeline;
use reprise_examples::versioning::{
    Order, Shipment, charge_card, charged_notice, fulfill_order, notify_customer, received_notice,
    ship_order,
};
use reprise_testkit::replay::{self, Replay, ReplayFailure};
use reprise_testkit::{Outcome, Pending, TempDb, TestEnv, VirtualClock};
use serde_json::{Value, json};

/// A run of version 1 that completed.
const V1_COMPLETED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/fulfill-order-v1-completed.json"
);
/// A run of version 1 in flight: sleeping through its cooling-off hour.
const V1_SLEEPING: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/fulfill-order-v1-sleeping.json"
);

/// `fulfill-order` as it was before the received-notice change: the code that recorded
/// the fixtures.
#[workflow(slug = "fulfill-order", register = false)]
async fn fulfill_order_v1(ctx: Ctx, order: Order) -> Result<Shipment, WorkflowError> {
    let receipt = charge_card.run(order.clone()).await?;
    notify_customer
        .run(charged_notice(&order, &receipt))
        .await?;
    ctx.sleep("1h").await?;
    Ok(ship_order.run(receipt).await?)
}

/// Today's change made naively: the new notice in front, no patch, no pinned ids. It takes
/// the key `notify-customer`, and the old call becomes `notify-customer@2`.
#[workflow(slug = "fulfill-order", register = false)]
async fn fulfill_order_naive(ctx: Ctx, order: Order) -> Result<Shipment, WorkflowError> {
    notify_customer.run(received_notice(&order)).await?;
    let receipt = charge_card.run(order.clone()).await?;
    notify_customer
        .run(charged_notice(&order, &receipt))
        .await?;
    ctx.sleep("1h").await?;
    Ok(ship_order.run(receipt).await?)
}

/// Today's change with `ctx.patched` but without pinned ids.
#[workflow(slug = "fulfill-order", register = false)]
async fn fulfill_order_unpinned(ctx: Ctx, order: Order) -> Result<Shipment, WorkflowError> {
    if ctx.patched("order-received-notice") {
        notify_customer.run(received_notice(&order)).await?;
    }
    let receipt = charge_card.run(order.clone()).await?;
    notify_customer
        .run(charged_notice(&order, &receipt))
        .await?;
    ctx.sleep("1h").await?;
    Ok(ship_order.run(receipt).await?)
}

fn order(id: u32) -> Order {
    Order {
        id,
        item: "kettle".into(),
        cents: 3900,
    }
}

fn load(path: &str) -> RunExport {
    replay::load(path).unwrap()
}

/// Records the fixtures with version 1, on a virtual clock starting 2030-01-01.
#[tokio::test]
#[ignore = "rewrites tests/fixtures; run by hand to regenerate them"]
async fn record_v1_fixtures() {
    let start = serde_json::from_value(json!("2030-01-01T00:00:00Z")).unwrap();
    let clock = Arc::new(VirtualClock::new(start));
    let engine = Engine::builder()
        .register(fulfill_order_v1)
        .clock(clock.clone())
        .build()
        .unwrap();

    let completed = engine.start(&fulfill_order_v1, order(7)).await.unwrap();
    let first = engine.execute(&completed).await.unwrap().outcome;
    assert!(matches!(first, RunOutcome::Suspended(_)), "{first:?}");
    clock.advance(Duration::from_secs(3600));
    let done = engine.execute(&completed).await.unwrap().outcome;
    assert!(matches!(done, RunOutcome::Completed(_)), "{done:?}");
    replay::save(&engine, &completed, V1_COMPLETED)
        .await
        .unwrap();

    let sleeping = engine.start(&fulfill_order_v1, order(8)).await.unwrap();
    let waits = engine.execute(&sleeping).await.unwrap().outcome;
    assert!(matches!(waits, RunOutcome::Suspended(_)), "{waits:?}");
    replay::save(&engine, &sleeping, V1_SLEEPING).await.unwrap();
}

#[tokio::test]
async fn a_new_run_sends_both_notices_then_ships_after_the_hour() {
    let env = TestEnv::new();
    let waits = env.execute(&fulfill_order, order(7)).await.suspended();
    assert!(matches!(&waits[..], [Pending::Sleep { id, .. }] if id == "sleep#0"));
    let notices: Vec<String> = env
        .calls(&notify_customer)
        .into_iter()
        .map(|n| n.text)
        .collect();
    assert_eq!(
        notices,
        [
            received_notice(&order(7)).text,
            "your kettle is paid (3900 cents, ch-7-3900); it ships in an hour".to_owned()
        ]
    );
    let done = env.advance(Duration::from_secs(3600)).await;
    assert_eq!(
        done[0].1,
        Outcome::Completed(json!({ "order": 7, "tracking": "TRK-7" }))
    );
    let log = env.log(&env.last_run()).await;
    assert_eq!(
        reprise_testkit::completed_steps(log.events()),
        [
            "notify-received#0",
            "charge-card#0",
            "notify-customer#0",
            "ship-order#0"
        ]
    );
}

#[tokio::test]
async fn a_version_1_run_resumed_by_version_2_sends_no_late_notice() {
    let env = TestEnv::new();
    let run = env
        .engine()
        .import_for_replay(&load(V1_SLEEPING))
        .await
        .unwrap();
    let waits = env.continue_run(&run).await.suspended();
    assert!(matches!(&waits[..], [Pending::Sleep { id, .. }] if id == "sleep#0"));
    let done = env.advance(Duration::from_secs(3 * 3600)).await;
    assert_eq!(
        done[0].1,
        Outcome::Completed(json!({ "order": 8, "tracking": "TRK-8" }))
    );
    assert!(env.calls(&notify_customer).is_empty(), "no late notice");
    assert_eq!(
        env.calls(&charge_card).len(),
        0,
        "charged once, by version 1"
    );
    assert_eq!(env.calls(&ship_order).len(), 1);
}

#[tokio::test]
async fn histories_recorded_by_version_1_replay_against_todays_code() {
    let report = replay::assert_replays(&fulfill_order, V1_COMPLETED).await;
    assert_eq!(report.recorded, RunStatus::Completed);
    assert_eq!(
        report.outcome,
        RunOutcome::Completed(json!({ "order": 7, "tracking": "TRK-7" }))
    );
    assert_eq!(report.replayed, 4, "charge, notice, sleep, ship");

    let report = replay::assert_replays(&fulfill_order, V1_SLEEPING).await;
    assert_eq!(report.recorded, RunStatus::Sleeping);
    let RunOutcome::Suspended(waits) = &report.outcome else {
        panic!("{:?}", report.outcome)
    };
    assert!(
        matches!(&waits[..], [Wait::Sleep { id, .. }] if id == "sleep#0"),
        "{waits:?}"
    );
    assert_eq!(report.replayed, 2, "charge and notice");

    // And version 1 itself, of course.
    replay::assert_replays(&fulfill_order_v1, V1_SLEEPING).await;
}

/// The fixtures' payloads, written before payloads were typed, read as typed payloads
/// and write back the very same JSON.
#[test]
fn version_1_payloads_decode_and_re_encode_to_the_same_json() {
    for path in [V1_COMPLETED, V1_SLEEPING] {
        for event in load(path).events {
            let event = event.event;
            let decoded = EventPayload::decode(event.kind, &event.payload)
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(decoded.encode(), event.payload, "{path}: {}", event.kind);
        }
    }
}

#[tokio::test]
async fn the_change_without_patch_or_pins_is_reported_with_the_step_id() {
    for fixture in [V1_COMPLETED, V1_SLEEPING] {
        let failure = replay::check(&fulfill_order_naive, fixture)
            .await
            .unwrap_err();
        assert_eq!(failure.step(), Some("notify-customer#0"), "{failure}");
        let report = failure.non_determinism().unwrap();
        assert!(
            report
                .recorded
                .starts_with("`notify-customer` with input digest ")
        );
        assert!(
            report
                .requested
                .starts_with("`notify-customer` with input digest ")
        );
        assert_ne!(report.recorded, report.requested, "another notice");
        // Recorded before runs carried step-site fingerprints: the cause cannot be told,
        // and the message names both; the differing input is shown by pointer.
        assert_eq!(report.cause, reprise::NonDeterminismCause::Unknown);
        assert!(!report.differences.is_empty(), "{report:?}");
        let message = failure.to_string();
        assert!(
            message.contains("Either the workflow code changed"),
            "{message}"
        );
        for part in [
            "non-determinism at step `notify-customer#0`",
            "the log recorded `notify-customer` with input digest",
            "but the code asked for `notify-customer` with input digest",
        ] {
            assert!(message.contains(part), "`{part}` missing from: {message}");
        }
    }
}

#[tokio::test]
async fn patched_without_pinned_ids_is_reported_too() {
    // `patched` skips the new notice for the old run, but the old call lost its key.
    let failure = replay::check(&fulfill_order_unpinned, V1_SLEEPING)
        .await
        .unwrap_err();
    assert_eq!(failure.step(), Some("notify-customer@2#0"), "{failure}");
    let report = failure.non_determinism().unwrap();
    assert_eq!(report.recorded, "no such step");
    assert!(
        report
            .requested
            .starts_with("`notify-customer` with input digest"),
        "{report:?}"
    );
}

#[tokio::test]
async fn assert_replays_panics_with_the_report() {
    let panic = tokio::spawn(replay::assert_replays(&fulfill_order_naive, V1_SLEEPING))
        .await
        .unwrap_err()
        .into_panic();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(
        message.contains("fulfill-order-v1-sleeping.json"),
        "{message}"
    );
    assert!(
        message.contains("non-determinism at step `notify-customer#0`"),
        "{message}"
    );
}

/// The v1 completed history cut after the notice: a run that was interrupted there.
fn interrupted_after_the_notice() -> RunExport {
    let mut export = load(V1_COMPLETED);
    let notice = export
        .events
        .iter()
        .position(|e| e.event.correlation_id.as_deref() == Some("notify-customer#0"))
        .unwrap();
    let end = notice
        + export.events[notice..]
            .iter()
            .position(|e| e.event.kind == reprise::event::EventKind::StepCompleted)
            .unwrap();
    export.events.truncate(end + 1);
    export.run.status = RunStatus::Running;
    export.run.output = None;
    export.run.next_seq = export.events.len() as u64;
    export
}

#[tokio::test]
async fn an_unfinished_history_replays_up_to_where_it_got() {
    let export = interrupted_after_the_notice();
    let report = Replay::new(&fulfill_order)
        .check_export(&export)
        .await
        .unwrap();
    assert_eq!(report.replayed, 2);
    assert!(
        matches!(report.outcome, RunOutcome::Failed(_)),
        "{report:?}"
    );

    // Past the end of the history is fine; a mismatch before it is not, nor is a step
    // the history does not have in front of recorded ones.
    let failure = Replay::new(&fulfill_order_naive)
        .check_export(&export)
        .await
        .unwrap_err();
    assert_eq!(failure.step(), Some("notify-customer#0"), "{failure}");
    let failure = Replay::new(&fulfill_order_unpinned)
        .check_export(&export)
        .await
        .unwrap_err();
    assert_eq!(failure.step(), Some("notify-customer@2#0"), "{failure}");
}

#[tokio::test]
async fn a_history_of_another_workflow_is_a_setup_error() {
    let failure = replay::check(&signup_pipeline, V1_SLEEPING)
        .await
        .unwrap_err();
    assert!(matches!(failure, ReplayFailure::Setup(_)), "{failure:?}");
    assert!(failure.to_string().contains("`fulfill-order`"), "{failure}");
    let missing = replay::check(&fulfill_order, "tests/fixtures/nope.json")
        .await
        .unwrap_err();
    assert!(missing.to_string().contains("nope.json"), "{missing}");
}

#[tokio::test]
async fn a_test_env_history_replays_with_its_hook_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("approval.json");
    let env = TestEnv::new();
    let waits = env
        .execute(
            &approval,
            ApprovalRequest {
                title: "Ship v2".into(),
                timeout: None,
            },
        )
        .await
        .suspended();
    let run = env.last_run();
    replay::save(env.engine(), &run, &path).await.unwrap();
    let report = replay::assert_replays(&approval, &path).await;
    assert_eq!(report.recorded, RunStatus::Waiting);

    // The resume URL sent by `ask-for-approval` is part of its input, and recorded with the
    // run (its token as a placeholder): a replay under another public URL sees the URL the
    // run sent, and one under another hook secret (a test without production's) matches,
    // since input digests are taken with the token replaced by its placeholder.
    Replay::new(&approval)
        .hook_secret(b"not the secret the run was recorded with".to_vec())
        .check(&path)
        .await
        .unwrap();

    let decision = Decision {
        approved: true,
        by: "Ada".into(),
    };
    let done = env
        .resume_hook(waits[0].token().unwrap(), decision)
        .await
        .unwrap();
    assert!(matches!(done, Outcome::Completed(_)));
    replay::save(env.engine(), &run, &path).await.unwrap();
    let report = replay::assert_replays(&approval, &path).await;
    assert_eq!(
        report.outcome,
        RunOutcome::Completed(json!({ "result": "published", "by": "Ada" }))
    );
}

#[tokio::test]
async fn a_failed_history_replays_when_it_fails_the_same_way() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("book-trip.json");
    let env = TestEnv::new();
    let trip = TripRequest {
        traveler: "Ada".into(),
        destination: "Lisbon".into(),
        hotel: "Overbooked Inn".into(),
    };
    let error = env.execute(&book_trip, trip).await.failed();
    replay::save(env.engine(), &env.last_run(), &path)
        .await
        .unwrap();
    let report = replay::assert_replays(&book_trip, &path).await;
    assert_eq!(report.recorded, RunStatus::Failed);
    assert_eq!(report.outcome, RunOutcome::Failed(error));
    assert_eq!(report.replayed, 3, "flight, hotel (failed), cancellation");
}

fn app(db: &TempDb) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_reprise-examples"));
    command
        .env("REPRISE_DATABASE_URL", db.url())
        .current_dir(db.dir());
    command
}

fn run(command: &mut Command) -> Output {
    command.output().unwrap()
}

fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Writes `export` into `store` as the run stood when exported (not as a replay would).
async fn restore(store: &dyn Store, export: &RunExport) {
    let mut record = export.run.clone();
    record.next_seq = 1;
    let mut events = export.events.iter().map(|e| e.event.clone());
    store
        .create_run(record, events.next().unwrap())
        .await
        .unwrap();
    store
        .append(Append {
            run_id: export.run.id.clone(),
            first_seq: 1,
            events: events.collect(),
            update: RunUpdate::default(),
            fence: None,
            release: false,
        })
        .await
        .unwrap();
}

fn check(db: &TempDb, args: &[&str]) -> (Option<i32>, Value) {
    let out = run(app(db).args(["workflows", "check", "--json"]).args(args));
    (out.status.code(), stdout_json(&out))
}

#[tokio::test]
async fn runs_export_and_workflows_check_through_the_app() {
    let db = TempDb::new().unwrap();
    let signup = run(app(&db).args([
        "workflows",
        "run",
        "signup-pipeline",
        "--input",
        r#"{"name":"Ada","email":"ada@example.com"}"#,
        "--json",
    ]));
    assert_eq!(signup.status.code(), Some(0));
    let signup_id = stdout_json(&signup)["run_id"].as_str().unwrap().to_owned();
    let waiting = run(app(&db).args([
        "workflows",
        "run",
        "approval",
        "--input",
        r#"{"title":"Ship v2"}"#,
        "--json",
    ]));
    assert_eq!(waiting.status.code(), Some(3), "waits on its hook");
    let approval_id = stdout_json(&waiting)["run_id"].as_str().unwrap().to_owned();

    // `runs export` prints the history; `--out` writes the same to a file.
    let out = run(app(&db).args(["runs", "export", &signup_id]));
    assert_eq!(out.status.code(), Some(0));
    let export: RunExport = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(export.format, reprise::RUN_EXPORT_FORMAT);
    assert_eq!(export.run.id.as_str(), signup_id);
    assert_eq!(export.run.status, RunStatus::Completed);
    assert_eq!(export.events.len() as u64, export.run.next_seq);
    let file = db.dir().join("signup.json");
    let out = run(app(&db)
        .args(["runs", "export", &signup_id, "--out"])
        .arg(&file));
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    assert_eq!(replay::load(&file).unwrap(), export);
    replay::assert_replays(&signup_pipeline, &file).await;

    // A history with hook tokens replays under the app's hook secret and public URL.
    let file = db.dir().join("approval.json");
    let out = run(app(&db)
        .args(["runs", "export", &approval_id, "--out"])
        .arg(&file));
    assert_eq!(out.status.code(), Some(0));
    let secret = std::fs::read(db.dir().join("hook.key")).unwrap();
    let public_url =
        std::env::var("REPRISE_PUBLIC_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    Replay::new(&approval)
        .hook_secret(secret)
        .public_url(public_url)
        .check(&file)
        .await
        .unwrap();

    let out = run(app(&db).args(["runs", "export", "no-such-run"]));
    assert_eq!(out.status.code(), Some(2));

    // Every run the app recorded replays against the app.
    let out = run(app(&db).args(["workflows", "check"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("checked 2 runs: every one replays"),
        "{stdout}"
    );

    // A run of version 1, sleeping, as an older binary left it: it replays too.
    let store = SqliteStore::open(db.path()).unwrap();
    restore(&store, &load(V1_SLEEPING)).await;
    // A run recorded by a build with the naive change: today's code does not replay it.
    let naive = Engine::builder()
        .store(Arc::new(store))
        .register(fulfill_order_naive)
        .build()
        .unwrap();
    let naive_id = naive.start(&fulfill_order_naive, order(9)).await.unwrap();
    let outcome = naive.execute(&naive_id).await.unwrap().outcome;
    assert!(matches!(outcome, RunOutcome::Suspended(_)), "{outcome:?}");
    drop(naive);

    let out = run(app(&db).args(["workflows", "check"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "run {naive_id} (fulfill-order, sleeping) does not replay"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("non-determinism at step `notify-customer#0`"),
        "{stdout}"
    );
    assert!(
        stdout.contains("checked 4 runs: 3 replay, 1 do not"),
        "{stdout}"
    );

    let (code, body) = check(&db, &[]);
    assert_eq!(code, Some(1));
    assert_eq!(body["checked"], 4);
    assert_eq!(body["compatible"], 3);
    let incompatible = body["incompatible"].as_array().unwrap();
    assert_eq!(incompatible.len(), 1, "{body}");
    let problem = &incompatible[0];
    assert_eq!(problem["run_id"], naive_id.as_str());
    assert_eq!(problem["workflow"], "fulfill-order");
    assert_eq!(problem["status"], "sleeping");
    assert_eq!(problem["reason"], "non_determinism");
    assert_eq!(problem["step"], "notify-customer#0");

    let (code, body) = check(&db, &["--workflow", "signup-pipeline"]);
    assert_eq!((code, body["checked"].clone()), (Some(0), json!(1)));
    let (code, body) = check(&db, &["--in-flight"]);
    assert_eq!(code, Some(1));
    assert_eq!(body["checked"], 3, "approval, and both fulfill-order runs");
}

#[test]
fn the_fixtures_are_runs_of_version_1() {
    for (path, status) in [
        (V1_COMPLETED, RunStatus::Completed),
        (V1_SLEEPING, RunStatus::Sleeping),
    ] {
        assert!(Path::new(path).exists(), "{path}: run record_v1_fixtures");
        let export = load(path);
        assert_eq!(export.run.workflow, "fulfill-order");
        assert_eq!(export.run.status, status);
        assert!(
            !export
                .events
                .iter()
                .any(|e| e.event.correlation_id.as_deref() == Some("notify-received#0")),
            "version 1 sent no received notice"
        );
    }
}
