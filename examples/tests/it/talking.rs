//! `order-saga` and `reminder`: signals addressed by business key, published state, a
//! durable `select!` against a deadline, a child run and continue-as-new — on a `TestEnv`
//! with virtual time, replay-checked, and through the crash checker.

use std::time::Duration;

use reprise::RunOutcome;
use reprise::Trigger;
use reprise::event::{EventKind, RunId, RunStatus};
use reprise_examples::approval::Decision;
use reprise_examples::order_saga::{
    Cancellation, Order, Payment, dispatch_parcel, order_saga, release_stock,
};
use reprise_examples::reminder::{ReminderRequest, reminder, send_reminder};
use reprise_testkit::crash::{self, CheckConfig};
use reprise_testkit::{Outcome, Pending, TestEnv};
use serde_json::{Value, json};

fn order(id: &str) -> Order {
    Order {
        order_id: id.into(),
        amount_cents: 4200,
        pay_within: "1d".into(),
    }
}

fn paid() -> Payment {
    Payment {
        amount_cents: 4200,
        reference: "pay_1".into(),
    }
}

/// Starts `order-saga` with the order id as business key and runs it until it waits.
async fn start_order(env: &TestEnv, id: &str) -> RunId {
    let (run, created) = env
        .engine()
        .start_with_key(
            "order-saga",
            serde_json::to_value(order(id)).expect("json"),
            Trigger::Code,
            id,
        )
        .await
        .expect("started");
    assert!(created);
    let waits = match env.continue_run(&run).await {
        Outcome::Suspended(waits) => waits,
        other => panic!("the order should wait for its payment, it ended {other:?}"),
    };
    // The select waits on both signals and the deadline at once.
    let channels: Vec<&str> = waits
        .iter()
        .filter_map(|w| match w {
            Pending::Message { channel, .. } => Some(channel.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(channels, ["signal:paid", "signal:canceled"], "{waits:?}");
    assert!(waits.iter().any(|w| matches!(w, Pending::Sleep { .. })));
    run
}

/// The recorded winner of the run's first select.
async fn winner(env: &TestEnv, run: &RunId) -> u64 {
    let log = env.log(run).await;
    let select = log
        .events()
        .iter()
        .find(|e| {
            e.event.kind == EventKind::StepCompleted
                && e.event.correlation_id.as_deref() == Some("select#0")
        })
        .expect("the select is recorded");
    select.event.payload["output"]["winner"]
        .as_u64()
        .expect("a winner")
}

/// The replay check of run `id` passes (the body takes the recorded path again).
async fn replays(env: &TestEnv, id: &RunId) {
    let export = env.engine().export_run(id).await.expect("export");
    let replay = env.engine().check_replay(&export).await.expect("replay");
    assert!(replay.is_ok(), "{replay:?}");
}

#[tokio::test]
async fn a_paid_order_ships_in_a_child_run_addressed_by_its_key() {
    let env = TestEnv::new();
    let run = start_order(&env, "A-1001").await;
    assert_eq!(
        env.engine()
            .state_of::<String>(&run, "status")
            .await
            .expect("state"),
        Some("awaiting_payment".to_owned())
    );
    assert_eq!(
        env.engine()
            .run_by_key("order-saga", "A-1001")
            .await
            .expect("by key")
            .id,
        run
    );
    env.engine()
        .signal_by_key(
            "order-saga",
            "A-1001",
            "paid",
            serde_json::to_value(paid()).expect("json"),
            Some("pay_1"),
        )
        .await
        .expect("delivered");
    let output = env.continue_run(&run).await.completed();
    assert_eq!(output["result"], "shipped");
    assert_eq!(output["payment"], "pay_1");
    assert!(
        output["tracking"]
            .as_str()
            .is_some_and(|t| t.starts_with("TRK-"))
    );
    assert_eq!(winner(&env, &run).await, 0, "the `paid` branch won");
    // The deadline's sleep lost the select: `runs get` shows it abandoned, not sleeping.
    let events = env.engine().events(&run).await.expect("events");
    let sleep = reprise::summarize_steps(&events)
        .into_iter()
        .find(|s| s.id == "sleep#0")
        .expect("the sleep");
    assert_eq!(sleep.status, reprise::StepStatus::Abandoned);
    // The child run is its own run, linked both ways.
    let links = env.engine().run_links(&run).await.expect("links");
    let child = &links.children[0].run_id;
    let child_record = env.engine().get_run(child).await.expect("child");
    assert_eq!(child_record.workflow, "ship-parcel");
    assert_eq!(child_record.status, RunStatus::Completed);
    let child_links = env.engine().run_links(child).await.expect("links");
    assert_eq!(child_links.parent.map(|p| p.run_id).as_ref(), Some(&run));
    assert_eq!(env.calls(&dispatch_parcel).len(), 1);
    assert!(env.calls(&release_stock).is_empty());
    assert_eq!(
        env.engine()
            .state_of::<String>(&run, "status")
            .await
            .expect("state"),
        Some("shipped".to_owned())
    );
    replays(&env, &run).await;
}

#[tokio::test]
async fn a_paid_order_ships_on_sqlite_where_the_inbox_is_read_asynchronously() {
    // On SQLite, reading the inbox takes a trip to the store while the deadline's sleep has
    // already registered its wait: the run must not suspend on the sleep alone then.
    let env = TestEnv::builder().sqlite().build();
    let run = start_order(&env, "A-1005").await;
    let output = env
        .signal(&run, "paid", paid())
        .await
        .expect("delivered")
        .completed();
    assert_eq!(output["result"], "shipped");
    assert_eq!(winner(&env, &run).await, 0);
    replays(&env, &run).await;
}

#[tokio::test]
async fn an_unpaid_order_expires_at_its_deadline_and_a_late_payment_is_refused() {
    let env = TestEnv::new();
    let run = start_order(&env, "A-1002").await;
    let ended = env.advance(Duration::from_secs(24 * 3600)).await;
    let (_, outcome) = ended
        .into_iter()
        .find(|(id, _)| *id == run)
        .expect("the run woke at its deadline");
    assert_eq!(outcome.completed()["result"], "expired");
    assert_eq!(winner(&env, &run).await, 2, "the deadline won");
    assert_eq!(
        env.calls(&release_stock).len(),
        1,
        "the stock is released once"
    );
    // The run has ended: a payment now is refused (409) and delivers nothing.
    let late = env.signal(&run, "paid", paid()).await;
    assert!(
        matches!(late, Err(reprise::EngineError::InvalidState { .. })),
        "{late:?}"
    );
    replays(&env, &run).await;
}

#[tokio::test]
async fn a_canceled_order_releases_its_stock_and_never_ships() {
    let env = TestEnv::new();
    let run = start_order(&env, "A-1003").await;
    let output = env
        .signal(
            &run,
            "canceled",
            Cancellation {
                reason: "changed my mind".into(),
            },
        )
        .await
        .expect("delivered")
        .completed();
    assert_eq!(output["result"], "canceled");
    assert_eq!(output["reason"], "changed my mind");
    assert_eq!(winner(&env, &run).await, 1);
    assert!(env.calls(&dispatch_parcel).is_empty());
    assert_eq!(env.calls(&release_stock).len(), 1);
    // A signal the workflow does not receive is refused, naming it.
    let unknown = env.signal(&run, "refunded", json!({})).await;
    assert!(unknown.is_err(), "{unknown:?}");
    replays(&env, &run).await;
}

#[tokio::test]
async fn a_second_start_with_the_same_key_returns_the_first_run() {
    let env = TestEnv::new();
    let run = start_order(&env, "A-1004").await;
    let (again, created) = env
        .engine()
        .start_with_key(
            "order-saga",
            serde_json::to_value(order("A-1004")).expect("json"),
            Trigger::Code,
            "A-1004",
        )
        .await
        .expect("answered");
    assert!(!created);
    assert_eq!(again, run);
}

#[tokio::test]
async fn the_reminder_continues_as_a_new_run_under_its_key_until_someone_decides() {
    let env = TestEnv::new();
    let request = ReminderRequest {
        title: "Approve expense 77".into(),
        every: "1h".into(),
        reminders_per_run: 2,
        sent: 0,
    };
    let (first, _) = env
        .engine()
        .start_with_key(
            "reminder",
            serde_json::to_value(&request).expect("json"),
            Trigger::Code,
            "expense-77",
        )
        .await
        .expect("started");
    assert!(matches!(
        env.continue_run(&first).await,
        Outcome::Suspended(_)
    ));
    // Two reminders, an hour apart; after the second the run continues as a new run.
    env.advance(Duration::from_secs(3600)).await;
    env.advance(Duration::from_secs(3600)).await;
    let first_record = env.engine().get_run(&first).await.expect("first");
    assert_eq!(first_record.status, RunStatus::Completed);
    let next = RunId(
        first_record.output.expect("output")["continued_as"]
            .as_str()
            .expect("continued_as")
            .to_owned(),
    );
    assert_eq!(
        env.engine()
            .run_by_key("reminder", "expense-77")
            .await
            .expect("by key")
            .id,
        next,
        "the key follows the run that continues"
    );
    let links = env.engine().run_links(&next).await.expect("links");
    assert_eq!(links.continued_from.as_ref(), Some(&first));
    assert!(matches!(
        env.continue_run(&next).await,
        Outcome::Suspended(_)
    ));
    // The decision, sent to the key, reaches the current run.
    env.engine()
        .signal_by_key(
            "reminder",
            "expense-77",
            "decide",
            json!({"approved": true, "by": "Grace"}),
            None,
        )
        .await
        .expect("delivered");
    let output = env.continue_run(&next).await.completed();
    assert_eq!(
        output,
        json!({"decision": {"approved": true, "by": "Grace"}, "reminders": 2})
    );
    assert_eq!(env.calls(&send_reminder).len(), 2);
    // Each run's history is bounded: the first holds two reminders, not the whole wait.
    let first_steps = env.completed_count(&first, "send-reminder").await;
    assert_eq!(first_steps, 2);
    replays(&env, &first).await;
    replays(&env, &next).await;
    let _: Decision = serde_json::from_value(output["decision"].clone()).expect("a decision");
}

fn check_config() -> CheckConfig {
    CheckConfig::default().max_cases(64)
}

#[test]
fn order_saga_with_a_select_a_signal_and_a_child_run_survives_any_crash() {
    let config = check_config().signal("paid", serde_json::to_value(paid()).expect("json"));
    let report = crash::assert_crash_safe(&order_saga, order("A-2001"), config);
    eprintln!("{report}");
    match &report.outcome {
        RunOutcome::Completed(output) => assert_eq!(output["result"], "shipped"),
        other => panic!("expected the order to ship, it ended {other:?}"),
    }
}

#[test]
fn the_reminder_with_a_select_and_a_signal_survives_any_crash() {
    let config = check_config().signal("decide", json!({"approved": false, "by": "Ada"}));
    let request = ReminderRequest {
        title: "Approve expense 78".into(),
        every: "1h".into(),
        reminders_per_run: 3,
        sent: 0,
    };
    let report = crash::assert_crash_safe(&reminder, request, config);
    eprintln!("{report}");
    match &report.outcome {
        RunOutcome::Completed(output) => {
            assert_eq!(output["decision"]["by"], Value::from("Ada"));
        }
        other => panic!("expected a decision, it ended {other:?}"),
    }
}

#[test]
fn the_reminder_continuing_as_new_survives_any_crash() {
    let request = ReminderRequest {
        title: "Approve expense 79".into(),
        every: "1h".into(),
        reminders_per_run: 2,
        sent: 0,
    };
    let report = crash::assert_crash_safe(&reminder, request, check_config());
    eprintln!("{report}");
    match &report.outcome {
        RunOutcome::Completed(output) => assert!(output["continued_as"].is_string(), "{output}"),
        other => panic!("expected the run to continue as new, it ended {other:?}"),
    }
}

// ---- separate processes on one SQLite file ----

/// A worker is killed with SIGKILL while the order waits in its select; the payment is sent
/// by business key from another process; a second worker continues the order, starts the
/// child run and ships it — each effect once.
#[tokio::test]
async fn cli_an_order_survives_kill_9_while_it_waits_and_is_paid_from_another_process() {
    use crate::expense_report::{App, run_json, wait_until};
    let db = reprise_testkit::TempDb::new().expect("a database");
    let store = reprise::store::SqliteStore::open(db.path()).expect("the store");
    let input = serde_json::to_string(&order("B-1")).expect("json");
    let (code, line, _) = run_json(
        &db,
        "enqueue",
        &[
            "workflows",
            "run",
            "order-saga",
            "--key",
            "B-1",
            "--enqueue",
            "--json",
            "--input",
            &input,
        ],
    );
    assert_eq!(code, Some(0), "{line}");
    let id = RunId(line["run_id"].as_str().expect("run_id").to_owned());
    let worker_args = ["worker", "--lease", "1s"];
    let mut first = App::spawn(&db, "worker-a", &worker_args);
    wait_until(&store, &id, "waited for its payment", |run, _| {
        run.status == RunStatus::Waiting
    })
    .await;
    first.sigkill();
    let (code, line, signal) = run_json(
        &db,
        "signal",
        &[
            "runs",
            "signal",
            "B-1",
            "paid",
            "--workflow",
            "order-saga",
            "--json",
            "--payload",
            r#"{"amount_cents":4200,"reference":"pay_9"}"#,
        ],
    );
    assert_eq!(code, Some(0), "{line} {}", signal.stderr());
    let second = App::spawn(&db, "worker-b", &worker_args);
    let (done, _) = wait_until(&store, &id, "shipped", |run, _| {
        run.status == RunStatus::Completed
    })
    .await;
    let output = done.output.expect("an output");
    assert_eq!(output["result"], "shipped");
    assert_eq!(output["payment"], "pay_9");
    // Each effect once: the reservation by the killed worker, the dispatch (in the child
    // run) by the second.
    let reserved = |app: &App| {
        app.effects()
            .iter()
            .filter(|key| key.ends_with("reserve-stock#0"))
            .count()
    };
    assert_eq!(reserved(&first) + reserved(&second), 1);
    let dispatched: Vec<String> = first
        .effects()
        .into_iter()
        .chain(second.effects())
        .filter(|key| key.ends_with("dispatch-parcel#0"))
        .collect();
    assert_eq!(dispatched.len(), 1, "{dispatched:?}");
}
