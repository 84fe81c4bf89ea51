//! `runs fork` and `runs restart` as a user runs them on the README's app (SQLite): the
//! effect log shows which steps of the new run executed (its lines are
//! `<run-id>/<step-id>`), so a replayed step leaves no line.

use reprise_testkit::TempDb;
use serde_json::Value;

use crate::operator::{app, run};

/// The steps of `run` whose effects ran, sorted.
fn effects_of(db: &TempDb, run: &str) -> Vec<String> {
    let log = std::fs::read_to_string(db.dir().join("effects.log")).unwrap_or_default();
    let mut steps: Vec<String> = log
        .lines()
        .filter_map(|line| line.strip_prefix(&format!("{run}/")))
        .map(str::to_owned)
        .collect();
    steps.sort();
    steps
}

/// `runs fork|restart … --json`; the new run's id, after `runs resume` completed it.
fn fork_and_finish(db: &TempDb, args: &[&str]) -> (String, Value) {
    let (code, out, err) = run(app(db).args(args));
    assert_eq!(code, 0, "{args:?}: {out}{err}");
    let forked: Value = serde_json::from_str(out.trim()).unwrap();
    let id = forked["run_id"].as_str().unwrap().to_owned();
    let (code, out, err) = run(app(db).args(["runs", "resume", &id]));
    assert_eq!(code, 0, "the new run completes: {out}{err}");
    (id, forked)
}

#[test]
fn runs_fork_and_restart_run_only_what_they_must_and_leave_the_original_alone() {
    let db = TempDb::new().unwrap();
    let dir = db.dir().join("tree");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("a.txt"), "hello").unwrap();
    std::fs::write(dir.join("b.txt"), "hello world").unwrap();
    let input = serde_json::json!({ "dir": dir }).to_string();
    let (code, out, err) = run(app(&db).args([
        "workflows",
        "run",
        "file-digest",
        "--json",
        "--input",
        &input,
    ]));
    assert_eq!(code, 0, "{out}{err}");
    let original = serde_json::from_str::<Value>(out.trim()).unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        effects_of(&db, &original),
        ["hash-file#0", "hash-file#1", "write-report#0"]
    );
    let (_, before, _) = run(app(&db).args(["runs", "export", &original]));

    // A fork from the last step: the hashes replay, only the report is written again.
    let (code, out, err) =
        run(app(&db).args(["runs", "fork", &original, "--from", "write-report#0"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "forked from run {original} at step write-report#0"
        )),
        "{out}"
    );
    let forked = out.split_whitespace().nth(1).unwrap().to_owned();
    let (code, out, err) = run(app(&db).args(["runs", "resume", &forked]));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(effects_of(&db, &forked), ["write-report#0"]);
    let (code, out, _) = run(app(&db).args(["runs", "get", &forked, "--json"]));
    assert_eq!(code, 0);
    let detail: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(detail["run"]["status"], "completed");
    assert_eq!(detail["run"]["trigger"], "fork");
    assert_eq!(detail["forked_from"]["run_id"], original.as_str());
    assert_eq!(detail["forked_from"]["step"], "write-report#0");
    assert_eq!(detail["forked_from"]["by"], "cli:ada");
    let (_, out, _) = run(app(&db).args(["runs", "get", &forked]));
    assert!(
        out.contains(&format!(
            "forked from run {original} at step write-report#0 by cli:ada"
        )),
        "{out}"
    );

    // A new input that changes no copied step's input (`concurrency` only shapes the
    // fan-out): the prefix still replays.
    let wider = serde_json::json!({ "dir": dir, "concurrency": 2 }).to_string();
    let (id, forked) = fork_and_finish(
        &db,
        &[
            "runs",
            "fork",
            &original,
            "--from",
            "write-report#0",
            "--input",
            &wider,
            "--json",
        ],
    );
    assert_eq!(forked["forked_from"]["input_changed"], true);
    assert_eq!(effects_of(&db, &id), ["write-report#0"]);

    // A new input that changes the first step's input: it diverges there, and every copied
    // step after it runs again (one file now).
    let fewer = serde_json::json!({ "dir": dir, "max_files": 1 }).to_string();
    let (id, _) = fork_and_finish(
        &db,
        &[
            "runs",
            "fork",
            &original,
            "--from",
            "write-report#0",
            "--input",
            &fewer,
            "--json",
        ],
    );
    assert_eq!(effects_of(&db, &id), ["hash-file#0", "write-report#0"]);
    let (_, out, _) = run(app(&db).args(["runs", "export", &id]));
    let export: Value = serde_json::from_str(&out).unwrap();
    let diverged: Vec<&Value> = export["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "fork_diverged")
        .collect();
    assert_eq!(diverged.len(), 1, "{}", export["events"]);
    assert_eq!(diverged[0]["payload"]["step"], "list-files#0");
    assert_eq!(export["run"]["output"]["files"], 1);

    // A restart: every step runs again.
    let (id, forked) = fork_and_finish(&db, &["runs", "restart", &original, "--json"]);
    assert_eq!(forked["copied"], 0);
    assert_eq!(
        effects_of(&db, &id),
        ["hash-file#0", "hash-file#1", "write-report#0"]
    );

    // A restart with a new input: a new run of it, every step live (one file now).
    let (id, forked) = fork_and_finish(
        &db,
        &["runs", "restart", &original, "--input", &fewer, "--json"],
    );
    assert_eq!(forked["copied"], 0);
    assert_eq!(forked["forked_from"]["input_changed"], true);
    assert_eq!(effects_of(&db, &id), ["hash-file#0", "write-report#0"]);

    // Bad requests: exit 2, a clear message, nothing created.
    let (_, listed, _) = run(app(&db).args(["runs", "list", "--json"]));
    let (code, _, err) = run(app(&db).args(["runs", "fork", &original, "--from", "hash-file#9"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("has no step `hash-file#9`") && err.contains("`list-files#0`"),
        "{err}"
    );
    let bad = serde_json::json!({ "dir": 5 }).to_string();
    let (code, _, err) = run(app(&db).args([
        "runs",
        "fork",
        &original,
        "--from",
        "write-report#0",
        "--input",
        &bad,
    ]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/dir"), "the message names the pointer: {err}");
    let (code, _, err) = run(app(&db).args([
        "runs",
        "fork",
        &original,
        "--from",
        "write-report#0",
        "--input",
        "{not json",
    ]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--input is not valid JSON"), "{err}");
    let (code, _, err) = run(app(&db).args(["runs", "fork", "no-such-run", "--from", "x#0"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no run with id `no-such-run`"), "{err}");
    let (code, _, err) = run(app(&db).args(["runs", "restart", "no-such-run"]));
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(app(&db).args(["runs", "fork", &original]));
    assert_eq!(code, 2, "--from is required: {err}");
    let (_, listed_after, _) = run(app(&db).args(["runs", "list", "--json"]));
    assert_eq!(listed, listed_after, "no run was created");

    // The original's history is byte for byte what it was.
    let (_, after, _) = run(app(&db).args(["runs", "export", &original]));
    assert_eq!(before, after);

    // Every fork, diverged or not, replays against the code that ran it.
    let (code, out, err) =
        run(app(&db).args(["workflows", "check", "--workflow", "file-digest", "--json"]));
    assert_eq!(code, 0, "{out}{err}");
    let report: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        report["checked"], 6,
        "the original and its five forks: {out}"
    );
    assert_eq!(report["compatible"], 6, "{out}");
}
