//! `runs retry` as a user runs it: a run that failed on a missing directory is retried
//! once the directory exists, one by id and several by filter.

use reprise_testkit::TempDb;
use serde_json::Value;

use crate::operator::{app, run};

/// Starts file-digest over `dir` (which does not exist yet): the run fails; its id.
fn failed_digest(db: &TempDb, dir: &std::path::Path) -> String {
    let input = serde_json::json!({ "dir": dir }).to_string();
    let (code, out, err) = run(app(db).args([
        "workflows",
        "run",
        "file-digest",
        "--json",
        "--input",
        &input,
    ]));
    assert_eq!(code, 1, "the run fails on a missing directory: {out}{err}");
    let line: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(line["status"], "failed");
    line["run_id"].as_str().unwrap().to_owned()
}

#[test]
fn runs_retry_queues_a_failed_run_that_then_completes_and_refuses_a_completed_one() {
    let db = TempDb::new().unwrap();
    let dir = db.dir().join("tree");
    let id = failed_digest(&db, &dir);

    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("a.txt"), "hello").unwrap(); // the "fix"
    let (code, out, err) = run(app(&db).args(["runs", "retry", &id]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("queued for attempt 2") && out.contains("list-files#0 runs again"),
        "{out}"
    );
    let (code, out, err) = run(app(&db).args(["runs", "resume", &id]));
    assert_eq!(code, 0, "{out}{err}");
    let (_, out, _) = run(app(&db).args(["runs", "export", &id]));
    let export: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(export["run"]["status"], "completed");
    assert_eq!(export["run"]["attempt"], 2);
    assert!(export["run"]["error"].is_null(), "{}", export["run"]);
    let retried = export["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "run_retried")
        .expect("a run_retried event");
    assert_eq!(retried["payload"]["by"], "cli:ada");

    let (code, _, err) = run(app(&db).args(["runs", "retry", &id]));
    assert_eq!(code, 2, "a completed run is not retried: {err}");
    assert!(err.contains("only failed runs can be retried"), "{err}");
    let (code, _, err) = run(app(&db).args(["runs", "retry"]));
    assert_eq!(code, 2, "an id or a filter is required: {err}");
}

#[test]
fn runs_retry_by_workflow_retries_every_failed_run_of_it() {
    let db = TempDb::new().unwrap();
    let first = failed_digest(&db, &db.dir().join("missing-1"));
    let second = failed_digest(&db, &db.dir().join("missing-2"));
    let (code, out, err) = run(app(&db).args([
        "runs",
        "retry",
        "--workflow",
        "file-digest",
        "--since",
        "1h",
        "--json",
    ]));
    assert_eq!(code, 0, "{out}{err}");
    let ids: Vec<String> = out
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["run_id"].to_string())
        .collect();
    assert_eq!(ids.len(), 2, "{out}");
    for id in [&first, &second] {
        assert!(ids.iter().any(|line| line.contains(id.as_str())), "{out}");
    }
    let (_, out, _) = run(app(&db).args(["runs", "retry", "--workflow", "file-digest"]));
    assert!(
        out.contains("no failed runs match"),
        "both are queued now: {out}"
    );
}
