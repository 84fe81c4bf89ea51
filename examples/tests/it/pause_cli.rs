//! `runs pause|unpause`, `workflows pause|unpause` and the `file-digest` failure handler
//! (`report-failure`) as a user runs them from the example app's CLI.

use reprise_testkit::TempDb;
use serde_json::{Value, json};

use crate::operator::{app, run};

fn status(db: &TempDb, id: &str) -> Value {
    let (code, out, err) = run(app(db).args(["runs", "get", id, "--json"]));
    assert_eq!(code, 0, "{out}{err}");
    let body: Value = serde_json::from_str(&out).unwrap();
    body["run"]["status"].clone()
}

#[test]
fn a_queued_run_is_paused_and_unpaused_and_a_workflow_pause_is_listed() {
    let db = TempDb::new().unwrap();
    let input = json!({ "name": "Ada", "email": "ada@example.com", "delay": "1h" }).to_string();
    let (code, out, err) = run(app(&db).args([
        "workflows",
        "run",
        "delayed-followup",
        "--enqueue",
        "--input",
        &input,
    ]));
    assert_eq!(code, 0, "{out}{err}");
    let id = out
        .split_whitespace()
        .find(|word| word.len() == 36 && word.contains('-'))
        .expect("the run id")
        .to_owned();

    let (code, out, err) = run(app(&db).args(["runs", "pause", &id]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("run {id} paused")), "{out}");
    assert_eq!(status(&db, &id), "paused");
    let (code, out, _) = run(app(&db).args(["runs", "pause", &id, "--json"]));
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["outcome"],
        "already_paused"
    );
    // A resume does not execute a paused run.
    let (code, out, err) = run(app(&db).args(["runs", "resume", &id]));
    assert_ne!(code, 0, "{out}{err}");
    assert_eq!(status(&db, &id), "paused");

    let (code, out, err) = run(app(&db).args(["runs", "unpause", &id, "--json"]));
    assert_eq!(code, 0, "{out}{err}");
    let unpaused: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(unpaused["status"], "queued");
    let (code, _, err) = run(app(&db).args(["runs", "unpause", &id]));
    assert_eq!(code, 2, "only paused runs: {err}");
    assert!(err.contains("only paused runs can be unpaused"), "{err}");
    let (_, out, _) = run(app(&db).args(["runs", "export", &id]));
    let export: Value = serde_json::from_str(&out).unwrap();
    let by: Vec<&Value> = export["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "run_paused" || e["kind"] == "run_unpaused")
        .map(|e| &e["payload"]["by"])
        .collect();
    assert_eq!(by, [&json!("cli:ada"), &json!("cli:ada")]);

    let (code, out, err) = run(app(&db).args(["workflows", "pause", "delayed-followup"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("workflow delayed-followup paused"), "{out}");
    let (_, out, _) = run(app(&db).args(["workflows", "list"]));
    let row = out
        .lines()
        .find(|line| line.contains("delayed-followup"))
        .unwrap();
    assert!(row.contains("by cli:ada"), "{out}");
    let (code, out, _) = run(app(&db).args(["workflows", "unpause", "delayed-followup", "--json"]));
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        json!({ "workflow": "delayed-followup", "paused": false, "changed": true })
    );
    let (code, _, err) = run(app(&db).args(["workflows", "pause", "no-such-flow"]));
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(app(&db).args(["runs", "pause", "no-such-run"]));
    assert_ne!(code, 0, "{err}");
}

#[test]
fn a_failed_digest_starts_its_failure_handler_once() {
    let db = TempDb::new().unwrap();
    let input = json!({ "dir": db.dir().join("missing") }).to_string();
    let (code, out, err) = run(app(&db).args([
        "workflows",
        "run",
        "file-digest",
        "--json",
        "--input",
        &input,
    ]));
    assert_eq!(code, 1, "{out}{err}");
    let failed: Value = serde_json::from_str(out.trim()).unwrap();
    let failed_id = failed["run_id"].as_str().unwrap();

    let (code, out, err) =
        run(app(&db).args(["runs", "list", "--workflow", "report-failure", "--json"]));
    assert_eq!(code, 0, "{out}{err}");
    let handlers: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(handlers.len(), 1, "{out}");
    assert_eq!(handlers[0]["trigger"], "on_failure");
    let handler_id = handlers[0]["id"].as_str().unwrap().to_owned();
    let (_, out, _) = run(app(&db).args(["runs", "get", &handler_id, "--json"]));
    let handler: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(handler["run"]["input"]["run_id"], failed_id);
    assert_eq!(handler["run"]["input"]["workflow"], "file-digest");

    let (code, out, err) = run(app(&db).args(["runs", "resume", &handler_id]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains(&format!("file-digest {failed_id} failed (attempt 1)")),
        "{err}"
    );
    let effects = std::fs::read_to_string(db.dir().join("effects.log")).unwrap();
    assert_eq!(
        effects.lines().filter(|l| l.contains(&handler_id)).count(),
        1,
        "{effects}"
    );
}
