//! Poison runs at the command line (issue 12, defects 1 and 7), as a user meets them: a
//! run whose workflow a deploy removed, and a run row that does not decode, in the example
//! app's database. `worker` backs the bad run off and warns once, `runs list` leaves the bad
//! row out with a warning and exits 0, `runs resume` goes on past the bad run.
//!
//! The rows are corrupted with plain SQL (rusqlite), as the reproduction does.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use reprise_testkit::TempDb;
use serde_json::Value;

fn app(db: &TempDb) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_reprise-examples"));
    command
        .env("REPRISE_DATABASE_URL", db.url())
        .env("REPRISE_EXAMPLES_EFFECT_LOG", db.dir().join("effects.log"))
        .env_remove("RUST_LOG")
        .current_dir(db.dir());
    command
}

fn run(command: &mut Command) -> Output {
    command.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Enqueues a `ten-steps` run; returns its id.
fn enqueue(db: &TempDb, input: u64) -> String {
    let out = run(app(db).args([
        "workflows",
        "run",
        "ten-steps",
        "--input",
        &input.to_string(),
        "--enqueue",
        "--json",
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    line["run_id"].as_str().unwrap().to_owned()
}

/// Runs `sql` on the database with the run id as `?1`.
fn sql(db: &TempDb, sql: &str, id: &str) {
    let conn = rusqlite::Connection::open(db.path()).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(conn.execute(sql, [id]).unwrap(), 1, "{sql}");
}

fn fence(db: &TempDb, id: &str) -> i64 {
    let conn = rusqlite::Connection::open(db.path()).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.query_row("SELECT fence FROM runs WHERE id = ?1", [id], |row| {
        row.get(0)
    })
    .unwrap()
}

fn status(db: &TempDb, id: &str) -> String {
    let out = run(app(db).args(["runs", "get", id, "--json"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    body["run"]["status"].as_str().unwrap().to_owned()
}

/// The reproduction: enqueue `ten-steps`, make its workflow one this binary lacks,
/// start a worker, read `fence` after 5 s. Before: 16,667 claims, nothing logged. Now: a
/// strike at 0, 1 and 3 s (default backoff 1 s, doubling), one warning naming the run, and
/// a healthy run beside it completes.
#[test]
fn a_worker_backs_off_a_run_of_a_removed_workflow_and_warns_once() {
    let db = TempDb::new().unwrap();
    let bad = enqueue(&db, 1);
    let good = enqueue(&db, 2);
    sql(
        &db,
        "UPDATE runs SET workflow = 'removed-workflow' WHERE id = ?1",
        &bad,
    );
    let log = db.dir().join("worker.log");
    let mut worker = app(&db)
        .arg("worker")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    let claims = fence(&db, &bad);
    let elapsed = started.elapsed();
    worker.kill().unwrap();
    worker.wait().unwrap();
    let stderr = std::fs::read_to_string(&log).unwrap();
    println!(
        "worker: the run of a removed workflow was claimed {claims} times in {:.1} s \
         ({:.2} claims/s; default policy 1 s doubling)",
        elapsed.as_secs_f64(),
        claims as f64 / elapsed.as_secs_f64()
    );
    assert!(
        (1..=4).contains(&claims),
        "{claims} claims in {elapsed:?}: at most one per backoff period (0, 1, 3 s)\n{stderr}"
    );
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains(&bad) && line.contains("cannot execute"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning per run:\n{stderr}");
    assert!(warnings[0].contains("WARN"), "{}", warnings[0]);
    assert!(warnings[0].contains("removed-workflow"), "{}", warnings[0]);
    assert_eq!(status(&db, &good), "completed");
    assert_eq!(status(&db, &bad), "queued");
}

/// One run row with an unknown status: `runs list` (human and `--json`) lists the others,
/// names the bad run on stderr, and exits 0 (before: exit 3).
#[test]
fn runs_list_leaves_out_an_undecodable_row_names_it_and_exits_0() {
    let db = TempDb::new().unwrap();
    let good = enqueue(&db, 1);
    let bad = enqueue(&db, 2);
    sql(
        &db,
        "UPDATE runs SET status = 'exploded' WHERE id = ?1",
        &bad,
    );

    let out = run(app(&db).args(["runs", "list"]));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains(&good), "{stdout}");
    assert!(!stdout.contains(&bad), "{stdout}");
    let warning = stderr
        .lines()
        .find(|line| line.contains(&bad))
        .unwrap_or_else(|| panic!("no warning names the bad run:\n{stderr}"));
    assert!(warning.starts_with("warning:"), "{warning}");
    assert!(
        warning.contains("unknown run status `exploded`"),
        "{warning}"
    );

    let out = run(app(&db).args(["runs", "list", "--json"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let runs: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [good.as_str()]);
    assert!(text(&out.stderr).contains(&bad));
}

/// `runs resume` with a run of a removed workflow first in line: the healthy run after it
/// completes, the bad one is reported at the end, and the exit code is not 0 (before: it
/// stopped at the bad run and left the healthy one queued).
#[test]
fn runs_resume_goes_on_past_a_run_of_a_removed_workflow() {
    let db = TempDb::new().unwrap();
    let bad = enqueue(&db, 1);
    let good = enqueue(&db, 2);
    sql(
        &db,
        "UPDATE runs SET workflow = 'removed-workflow' WHERE id = ?1",
        &bad,
    );

    let out = run(app(&db).args(["runs", "resume"]));
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(status(&db, &good), "completed", "{stderr}");
    let report = stderr
        .split("could not be resumed")
        .nth(1)
        .unwrap_or_else(|| panic!("no report at the end:\n{stderr}"));
    assert!(report.contains(&bad), "{report}");
    assert!(report.contains("removed-workflow"), "{report}");
    assert!(!report.contains(&good), "{report}");
    // The bad run was put off, not failed: a worker with the workflow could still run it.
    assert_eq!(status(&db, &bad), "queued");
}
