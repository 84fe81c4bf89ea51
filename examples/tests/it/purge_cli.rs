//! `runs purge` as a user runs it on SQLite: a dry run counts and deletes nothing, a purge
//! deletes ended runs with their events and never an unfinished one, and bad arguments
//! are exit 2 with a clear message.

use std::process::Command;

use reprise_testkit::TempDb;
use serde_json::Value;

use crate::operator::run;

fn app(db: &TempDb) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_reprise-examples"));
    command
        .env("REPRISE_DATABASE_URL", db.url())
        .env("REPRISE_EXAMPLES_EFFECT_LOG", db.dir().join("effects.log"))
        .env("USER", "ada")
        .env("RUST_LOG", "info")
        .current_dir(db.dir());
    command
}

/// Runs file-digest over `dir` in this process; its id and status.
fn digest(db: &TempDb, dir: &std::path::Path, extra: &[&str]) -> (String, String) {
    let input = serde_json::json!({ "dir": dir }).to_string();
    let mut args = vec![
        "workflows",
        "run",
        "file-digest",
        "--json",
        "--input",
        &input,
    ];
    args.extend_from_slice(extra);
    let (_, out, err) = run(app(db).args(&args));
    let line: Value = serde_json::from_str(out.trim()).unwrap_or_else(|_| panic!("{out}{err}"));
    (
        line["run_id"].as_str().unwrap().to_owned(),
        line["status"].as_str().unwrap_or("queued").to_owned(),
    )
}

/// Far enough ahead that every run here ended before it.
const LATER: &str = "2999-01-01T00:00:00Z";

#[test]
fn runs_purge_deletes_ended_runs_only_and_a_dry_run_deletes_nothing() {
    let db = TempDb::new().unwrap();
    let tree = db.dir().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("a.txt"), "hello").unwrap();
    let (completed, status) = digest(&db, &tree, &[]);
    assert_eq!(status, "completed");
    let (failed, status) = digest(&db, &db.dir().join("missing"), &[]);
    assert_eq!(status, "failed");
    let (queued, _) = digest(&db, &tree, &["--enqueue"]);

    // Nothing ended a day ago.
    let (code, out, err) = run(app(&db).args(["runs", "purge", "--before", "1d", "--dry-run"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("dry run: 0 ended run(s)"), "{out}");

    let (code, out, err) =
        run(app(&db).args(["runs", "purge", "--before", LATER, "--dry-run", "--json"]));
    assert_eq!(code, 0, "{out}{err}");
    let dry: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["count"], 2, "{dry}");
    let listed: Vec<&str> = dry["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert!(listed.contains(&completed.as_str()) && listed.contains(&failed.as_str()));
    let (code, _, _) = run(app(&db).args(["runs", "get", &failed]));
    assert_eq!(code, 0, "a dry run deletes nothing");

    let (code, out, err) =
        run(app(&db).args(["runs", "purge", "--before", LATER, "--status", "failed"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("deleted 1 ended run(s)") && out.contains("file-digest: 1"),
        "{out}"
    );
    assert!(
        err.contains("runs purged") && err.contains("cli:ada"),
        "who asked is logged: {err}"
    );
    let (code, _, err) = run(app(&db).args(["runs", "get", &failed]));
    assert_eq!(code, 2, "the failed run is gone: {err}");
    let (code, _, _) = run(app(&db).args(["runs", "export", &failed]));
    assert_eq!(code, 2, "with its events");

    let (code, out, err) = run(app(&db).args(["runs", "purge", "--before", LATER, "--json"]));
    assert_eq!(code, 0, "{out}{err}");
    let purged: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(purged["count"], 1, "{purged}");
    assert_eq!(purged["by_workflow"]["file-digest"], 1, "{purged}");
    let (code, _, _) = run(app(&db).args(["runs", "get", &completed]));
    assert_eq!(code, 2, "the completed run is gone");
    let (code, out, _) = run(app(&db).args(["runs", "get", &queued, "--json"]));
    assert_eq!(code, 0, "an unfinished run is never purged");
    assert!(out.contains("queued"), "{out}");
}

#[test]
fn runs_purge_refuses_an_unfinished_status_and_a_bad_before_with_exit_2() {
    let db = TempDb::new().unwrap();
    let (code, _, err) =
        run(app(&db).args(["runs", "purge", "--before", "30d", "--status", "running"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("`running` runs have not ended") && err.contains("--status completed"),
        "{err}"
    );
    let (code, _, err) = run(app(&db).args(["runs", "purge", "--before", "last week"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("neither a time nor an age"), "{err}");
    let (code, _, err) = run(app(&db).args(["runs", "purge"]));
    assert_eq!(code, 2, "--before is required: {err}");
}

/// `worker` enforces an engine-wide retention (`REPRISE_RETENTION`) with its sweep loop:
/// an ended run older than it disappears with its events while the worker runs, an
/// unfinished one stays, and the sweep's purge is logged with the count per workflow.
#[test]
fn a_worker_purges_ended_runs_past_the_retention() {
    let db = TempDb::new().unwrap();
    let tree = db.dir().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("a.txt"), "hello").unwrap();
    let (ended, status) = digest(&db, &db.dir().join("missing"), &[]);
    assert_eq!(status, "failed");
    // Queued, due in a day: unfinished, never purged.
    let (waiting, _) = digest(&db, &tree, &["--delay", "1d"]);
    let log = db.dir().join("worker.stderr");
    let mut worker = app(&db)
        .args(["worker"])
        .env("REPRISE_RETENTION", "1s")
        .env("REPRISE_RETENTION_SWEEP_EVERY", "100ms")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (code, _, _) = run(app(&db).args(["runs", "get", &ended]));
        if code == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the worker did not purge the ended run: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let pid = worker.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = worker.wait().unwrap();
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("ended runs past their retention purged")
            && stderr.contains("file-digest")
            && stderr.contains("count=1"),
        "{stderr}"
    );
    let (code, out, _) = run(app(&db).args(["runs", "get", &waiting, "--json"]));
    assert_eq!(code, 0, "an unfinished run is never purged");
    assert!(out.contains("queued"), "{out}");
    let (code, _, err) = run(app(&db)
        .args(["runs", "list"])
        .env("REPRISE_RETENTION", "a while"));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("REPRISE_RETENTION `a while` is not a duration"),
        "{err}"
    );
}
