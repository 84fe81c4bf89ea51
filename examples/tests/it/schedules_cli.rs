//! Schedules as data through the example app (issue 15, item 7): `schedules
//! create|list|get|update|pause|resume|trigger|backfill|delete` on SQLite, the app's
//! code-declared `daily-digest` schedule paused without a deploy, bad input exiting 2 with
//! what to fix, and a schedule created while a `worker` runs firing without a restart.

use std::fs::File;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use reprise_testkit::TempDb;
use serde_json::Value;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

/// The example app on `db`, with a fixed hook secret, acting as OS user `ada`.
fn app(db: &TempDb) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_reprise-examples"));
    command
        .env("REPRISE_DATABASE_URL", db.url())
        .env("REPRISE_EXAMPLES_EFFECT_LOG", db.dir().join("effects.log"))
        .env("REPRISE_HOOK_SECRET", SECRET)
        .env_remove("REPRISE_EXAMPLES_DIGEST_CRON")
        .env("USER", "ada")
        .current_dir(db.dir());
    command
}

/// Runs the app: exit code, stdout, stderr.
pub(crate) fn run(db: &TempDb, args: &[&str]) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = app(db).args(args).output().unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// Runs the app, expects exit 0 and one JSON document on stdout.
pub(crate) fn json(db: &TempDb, args: &[&str]) -> Value {
    let (code, out, err) = run(db, args);
    assert_eq!(code, 0, "{args:?}: {out}{err}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

fn runs_of(db: &TempDb, workflow: &str) -> Vec<Value> {
    json(db, &["runs", "list", "--workflow", workflow, "--json"])
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn schedules_are_created_listed_changed_paused_triggered_backfilled_and_deleted() {
    let db = TempDb::new().unwrap();
    let created = json(
        &db,
        &[
            "schedules",
            "create",
            "tally",
            "--workflow",
            "ten-steps",
            "--cron",
            "0 3 * * *",
            "--time-zone",
            "Europe/Paris",
            "--input",
            "5",
            "--overlap",
            "buffer_one",
            "--catch-up",
            "10m",
            "--json",
        ],
    );
    assert_eq!(created["source"], "data");
    assert_eq!(created["created_by"], "cli:ada");
    assert_eq!(created["overlap"], "buffer_one");

    let list = json(&db, &["schedules", "list", "--json"]);
    let names: Vec<(&str, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["source"].as_str().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            ("daily-digest", "code"),
            // The cron trigger of the workflow file `examples/workflows/nightly-report.yaml`.
            ("nightly-report", "code"),
            ("repo-digest-daily", "code"),
            ("tally", "data")
        ]
    );
    let (code, table, _) = run(&db, &["schedules", "list"]);
    assert_eq!(code, 0);
    assert!(
        table.contains("tally") && table.contains("daily-digest"),
        "{table}"
    );

    let updated = json(
        &db,
        &[
            "schedules",
            "update",
            "tally",
            "--every",
            "15m",
            "--input",
            "7",
            "--json",
        ],
    );
    assert_eq!(updated["interval"], "15m");
    assert!(updated.get("cron").is_none(), "{updated}");
    assert_eq!(updated["input"], 7);
    assert_eq!(updated["updated_by"], "cli:ada");
    let shown = json(&db, &["schedules", "get", "tally", "--json"]);
    assert_eq!(
        (&shown["interval"], &shown["input"]),
        (&Value::from("15m"), &Value::from(7))
    );
    let (code, out, _) = run(&db, &["schedules", "get", "tally"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("every 15m") && out.contains("by cli:ada"),
        "{out}"
    );

    // The code-declared schedule is paused and resumed without a deploy.
    let paused = json(&db, &["schedules", "pause", "daily-digest", "--json"]);
    assert_eq!(
        (&paused["paused"], &paused["updated_by"]),
        (&Value::Bool(true), &Value::from("cli:ada"))
    );
    assert!(paused["next_tick"].is_null());
    let resumed = json(&db, &["schedules", "resume", "daily-digest", "--json"]);
    assert_eq!(resumed["paused"], false);

    let (code, out, err) = run(&db, &["schedules", "trigger", "tally", "--json"]);
    assert_eq!(code, 0, "{err}");
    let triggered: Value = serde_json::from_str(out.trim()).unwrap();
    assert!(triggered["run_id"].is_string(), "{triggered}");
    assert!(
        err.contains("schedule triggered by hand") && err.contains("cli:ada"),
        "the trigger is logged with who asked: {err}"
    );
    assert_eq!(runs_of(&db, "ten-steps").len(), 1);

    // Backfill of the code schedule: 09:00 on Jan 1, 2 and 3; again: nothing new.
    let range = [
        "schedules",
        "backfill",
        "daily-digest",
        "--from",
        "2026-01-01T00:00:00Z",
        "--to",
        "2026-01-03T10:00:00Z",
        "--json",
    ];
    let first = json(&db, &range);
    assert_eq!(first["ticks"].as_array().unwrap().len(), 3, "{first}");
    assert_eq!(first["started"].as_array().unwrap().len(), 3, "{first}");
    let again = json(&db, &range);
    assert!(again["started"].as_array().unwrap().is_empty(), "{again}");
    assert_eq!(again["existing"], 3);
    assert_eq!(runs_of(&db, "daily-digest").len(), 3);
    let (code, out, err) = run(&db, &range[..range.len() - 1]);
    assert_eq!(code, 0);
    assert!(
        out.contains("0 runs started, 3 had their run already"),
        "{out}"
    );
    assert!(
        err.contains("schedule backfilled") && err.contains("cli:ada"),
        "the backfill is logged with who asked: {err}"
    );

    let (code, out, err) = run(&db, &["schedules", "delete", "tally", "--json"]);
    assert_eq!(code, 0, "{err}");
    let deleted: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(deleted["deleted"], true);
    assert!(
        err.contains("schedule deleted") && err.contains("cli:ada"),
        "the delete is logged with who asked: {err}"
    );
    let (code, _, err) = run(&db, &["schedules", "get", "tally"]);
    assert_eq!(code, 2);
    assert!(err.contains("no schedule named `tally`"), "{err}");
}

#[test]
fn bad_schedules_exit_2_naming_what_to_fix() {
    let db = TempDb::new().unwrap();
    let create = |extra: &[&str]| {
        let mut args = vec!["schedules", "create", "bad", "--workflow"];
        args.extend_from_slice(extra);
        run(&db, &args)
    };
    for (extra, message) in [
        (
            &["ten-steps", "--cron", "every day", "--input", "1"][..],
            "not a valid cron expression",
        ),
        (
            &[
                "ten-steps",
                "--cron",
                "0 3 * * *",
                "--time-zone",
                "Mars/Olympus",
                "--input",
                "1",
            ][..],
            "unknown time zone `Mars/Olympus`",
        ),
        (
            &["nope", "--cron", "0 3 * * *"][..],
            "workflow `nope` is not registered",
        ),
        (
            &["ten-steps", "--cron", "0 3 * * *", "--input", "\"five\""][..],
            "does not match",
        ),
        (
            &["ten-steps", "--every", "soon", "--input", "1"][..],
            "not a duration",
        ),
        (
            &["ten-steps", "--input", "1"][..],
            "neither `cron` nor `interval`",
        ),
        (
            &["ten-steps", "--cron", "0 3 * * *", "--overlap", "sometimes"][..],
            "unknown overlap policy",
        ),
    ] {
        let (code, out, err) = create(extra);
        assert_eq!(code, 2, "{extra:?}: {out}{err}");
        assert!(err.contains(message), "{extra:?}: {err}");
    }
    assert_eq!(
        json(&db, &["schedules", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        3,
        "nothing stored (the app's three declared schedules only: two in code, one in \
         the workflow file nightly-report.yaml)"
    );

    // A schedule declared in code is changed and deleted in code.
    for args in [
        &["schedules", "update", "daily-digest", "--cron", "0 3 * * *"][..],
        &["schedules", "delete", "daily-digest"][..],
    ] {
        let (code, _, err) = run(&db, args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains("declared in code") && err.contains("change it in the code"),
            "{err}"
        );
    }
    let (code, _, err) = run(
        &db,
        &[
            "schedules",
            "backfill",
            "daily-digest",
            "--from",
            "yesterday",
            "--to",
            "2026-01-01T00:00:00Z",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("RFC 3339"), "{err}");
    let (code, _, err) = run(&db, &["schedules", "pause", "nope"]);
    assert_eq!(code, 2, "{err}");
}

/// Kills the worker when the test ends, passing or not.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_schedule_created_while_a_worker_runs_fires_without_a_restart() {
    let db = TempDb::new().unwrap();
    // The database exists (and is migrated) before the worker starts.
    json(&db, &["schedules", "list", "--json"]);
    let log = db.dir().join("worker.log");
    let _worker = Worker(
        app(&db)
            .args(["worker"])
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    json(
        &db,
        &[
            "schedules",
            "create",
            "every-second",
            "--workflow",
            "ten-steps",
            "--cron",
            "* * * * * *",
            "--input",
            "1",
            "--json",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let runs = runs_of(&db, "ten-steps");
        if runs.iter().any(|run| run["status"] == "completed") {
            assert!(runs.iter().all(|run| run["trigger"] == "cron"), "{runs:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no run of the new schedule completed in 60 s: {runs:?}\nworker:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
