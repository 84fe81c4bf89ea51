//! `runs watch <id>` as a user runs it: a second process follows a run that others move,
//! a line per step change (stdout is not a terminal here), and exits as `workflows run
//! --wait` does.

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;

use reprise_testkit::TempDb;
use serde_json::Value;

use crate::operator::{app, run};

fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// Starts an `approval` run, executed here until it waits for its decision; its id.
fn waiting_approval(db: &TempDb) -> String {
    let (code, out, err) = run(app(db)
        .args(["workflows", "run", "approval", "--json", "--input"])
        .arg(r#"{"title":"Ship v4"}"#));
    assert_eq!(code, 3, "left waiting: {out}{err}");
    let line: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(line["status"], "waiting");
    line["run_id"].as_str().unwrap().to_owned()
}

#[test]
fn watch_follows_a_run_moved_by_other_processes_until_it_ends() {
    let db = TempDb::new().unwrap();
    let id = waiting_approval(&db);
    let mut watcher = app(&db)
        .args(["runs", "watch", &id, "--json", "--timeout", "60s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Until the watcher has shown the run waiting on its hook (it gives up after 60 s).
    let mut stdout = BufReader::new(watcher.stdout.take().unwrap());
    let mut seen = String::new();
    while !seen.contains(r#""status":"waiting","step":"hook#0""#) {
        let mut line = String::new();
        assert_ne!(
            stdout.read_line(&mut line).unwrap(),
            0,
            "ended early: {seen}"
        );
        seen.push_str(&line);
    }

    let (code, out, err) = run(app(&db).args(["runs", "get", &id, "--json"]));
    assert_eq!(code, 0, "{out}{err}");
    let get: Value = serde_json::from_str(&out).unwrap();
    let token = get["open_hooks"][0]["token"].as_str().unwrap().to_owned();
    let (code, out, err) = run(app(&db)
        .args(["hooks", "resume", &token, "--payload"])
        .arg(r#"{"approved":true,"by":"Ada"}"#));
    assert_eq!(code, 0, "{out}{err}");

    stdout.read_to_string(&mut seen).unwrap();
    let stdout = seen;
    let watched = watcher.wait_with_output().unwrap();
    assert_eq!(
        watched.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&watched.stderr)
    );
    let lines = json_lines(&stdout);
    let runs: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("step").is_none() && l.get("output").is_none())
        .collect();
    assert_eq!(runs[0]["status"], "waiting", "{stdout}");
    // A run's status line follows the step lines that brought it there.
    let position = |f: &dyn Fn(&Value) -> bool| lines.iter().position(f).unwrap();
    assert!(
        position(&|l| l["step"] == "publish#0")
            < position(&|l| l.get("step").is_none() && l["status"] == "completed"),
        "{stdout}"
    );
    let step = |id: &str, status: &str| {
        lines
            .iter()
            .any(|l| l["step"] == id && l["status"] == status && l["attempts"] == 1)
    };
    assert!(step("ask-for-approval#0", "completed"), "{stdout}");
    assert!(step("hook#0", "waiting"), "{stdout}");
    assert!(
        step("hook#0", "completed"),
        "the hook's change is seen: {stdout}"
    );
    assert!(step("publish#0", "completed"), "{stdout}");
    let last = lines.last().unwrap();
    assert_eq!(last["status"], "completed", "{stdout}");
    assert_eq!(last["output"]["result"], "published", "{stdout}");

    // An ended run: shown at once, same exit code; in text, a line per step.
    let (code, out, err) = run(app(&db).args(["runs", "watch", &id]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("step publish#0 completed (attempt 1"), "{out}");
    assert!(out.contains("status    completed"), "{out}");
}

#[test]
fn watch_exits_3_at_its_timeout_and_2_for_an_unknown_run() {
    let db = TempDb::new().unwrap();
    let id = waiting_approval(&db);
    let (code, out, err) = run(app(&db).args(["runs", "watch", &id, "--timeout", "300ms"]));
    assert_eq!(code, 3, "{out}{err}");
    assert!(out.contains(&format!("run {id} is still waiting")), "{out}");
    let (code, out, err) = run(app(&db).args(["runs", "watch", "no-such-run"]));
    assert_eq!(code, 2, "{out}{err}");
}

#[test]
fn watch_exits_1_for_a_failed_run() {
    let db = TempDb::new().unwrap();
    let input = serde_json::json!({ "dir": db.dir().join("missing") }).to_string();
    let (code, out, err) = run(app(&db).args([
        "workflows",
        "run",
        "file-digest",
        "--json",
        "--input",
        &input,
    ]));
    assert_eq!(code, 1, "{out}{err}");
    let id = serde_json::from_str::<Value>(out.trim()).unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (code, out, err) = run(app(&db).args(["runs", "watch", &id, "--json"]));
    assert_eq!(code, 1, "{out}{err}");
    let lines = json_lines(&out);
    assert!(
        lines
            .iter()
            .any(|l| l["step"] == "list-files#0" && l["status"] == "failed"),
        "{out}"
    );
    assert_eq!(lines.last().unwrap()["status"], "failed", "{out}");
}
