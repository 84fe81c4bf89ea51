//! Issue 14 (events) through the example app's process: `events emit <name> --data JSON
//! [--id ID] [--json]` prints what it did, a repeat of an id is a duplicate that does
//! nothing twice, and bad input exits 2 naming what is wrong. (On SQLite: needs the store's
//! event tables.)

use std::process::{Command, Output};

use reprise_testkit::TempDb;
use serde_json::Value;

fn app(db: &TempDb) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_reprise-examples"));
    command
        .env("REPRISE_DATABASE_URL", db.url())
        .env("REPRISE_EXAMPLES_EFFECT_LOG", db.dir().join("effects.log"))
        .env_remove("REPRISE_API_TOKEN")
        .current_dir(db.dir());
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn emit(db: &TempDb, args: &[&str]) -> Output {
    app(db)
        .args(["events", "emit"])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn events_emit_prints_the_facts_and_a_repeated_id_is_a_duplicate() {
    let db = TempDb::new().unwrap();
    let data = r#"{"order_id":"A-1","amount":4200}"#;
    let first = emit(
        &db,
        &["order.paid", "--data", data, "--id", "pay-1", "--json"],
    );
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let first: Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(first["id"], "pay-1", "{first}");
    assert_eq!(first["duplicate"], false, "{first}");
    assert_eq!(first["delivered"], 0, "{first}");
    assert_eq!(first["started"], serde_json::json!([]), "{first}");

    // A retry with the same id (in another process): a duplicate, nothing twice.
    let again = emit(&db, &["order.paid", "--data", data, "--id", "pay-1"]);
    let stdout = text(&again.stdout);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert!(stdout.contains("emitted before"), "{stdout}");

    // Without --id: a fresh UUID.
    let fresh = emit(&db, &["order.paid", "--data", data, "--json"]);
    assert_eq!(fresh.status.code(), Some(0), "{}", text(&fresh.stderr));
    let fresh: Value = serde_json::from_slice(&fresh.stdout).unwrap();
    assert_eq!(fresh["id"].as_str().unwrap().len(), 36, "{fresh}");
}

#[test]
fn events_emit_refuses_a_bad_name_or_data_with_exit_2() {
    let db = TempDb::new().unwrap();
    let bad_name = emit(&db, &["order paid", "--data", "{}"]);
    let stderr = text(&bad_name.stderr);
    assert_eq!(bad_name.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("/name"), "{stderr}");

    let bad_data = emit(&db, &["order.paid", "--data", "{not json"]);
    let stderr = text(&bad_data.stderr);
    assert_eq!(bad_data.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--data"), "{stderr}");
}
