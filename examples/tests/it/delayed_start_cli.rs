//! Delayed starts through the example app's processes (issue 15, item 8): `workflows run
//! --delay` leaves the run `queued` with its due time, `runs get` says when it starts, a
//! `worker` process runs it only from then; a malformed `--delay` or `--start-at` exits 2
//! naming the accepted forms and starts nothing.

use std::fs::File;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use reprise::event::{EventKind, RunId};
use reprise::store::{SqliteStore, Store};
use reprise_testkit::TempDb;
use serde_json::Value;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn app(db: &TempDb) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_reprise-examples"));
    command
        .env("REPRISE_DATABASE_URL", db.url())
        .env("REPRISE_EXAMPLES_EFFECT_LOG", db.dir().join("effects.log"))
        .env("REPRISE_HOOK_SECRET", SECRET)
        .env_remove("REPRISE_API_TOKEN")
        .current_dir(db.dir());
    command
}

fn run(db: &TempDb, args: &[&str]) -> Output {
    app(db).args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `runs get <id> --json`'s `run`.
fn get(db: &TempDb, id: &str) -> Value {
    let out = run(db, &["runs", "get", id, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    serde_json::from_slice::<Value>(&out.stdout).unwrap()["run"].clone()
}

/// Kills the worker when the test ends, passing or not.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_run_delay_queues_the_run_and_a_worker_runs_it_after_the_delay() {
    let db = TempDb::new().unwrap();
    let asked = Instant::now();
    let out = run(
        &db,
        &[
            "workflows",
            "run",
            "ten-steps",
            "--input",
            "5",
            "--delay",
            "2s",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["status"], "queued", "{line}");
    let id = line["run_id"].as_str().unwrap().to_owned();
    assert!(line["wake_at"].is_string(), "{line}");

    // Queued with its due time, and `runs get` says it waits to start.
    let record = get(&db, &id);
    assert_eq!(record["status"], "queued", "{record}");
    let store = SqliteStore::open(db.path()).unwrap();
    let wake_at = store
        .run(&RunId(id.clone()))
        .await
        .unwrap()
        .unwrap()
        .wake_at;
    let wake_at = wake_at.expect("a due time");
    let created = store.events(&RunId(id.clone())).await.unwrap()[0].event.at;
    let delay = (wake_at - created).num_milliseconds();
    assert!(
        (1900..=2100).contains(&delay),
        "due {delay} ms after creation"
    );
    assert!(!record["wake_at"].is_null(), "{record}");
    let shown = run(&db, &["runs", "get", &id]);
    let shown = text(&shown.stdout);
    assert!(
        shown.contains("has not started: it starts at"),
        "`runs get` does not say the run waits to start:\n{shown}"
    );

    // A worker leaves it alone until then, and completes it after.
    let log = db.dir().join("worker.log");
    let _worker = Worker(
        app(&db)
            .args(["worker"])
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let record = loop {
        let record = get(&db, &id);
        if record["status"] == "completed" {
            break record;
        }
        if asked.elapsed() < Duration::from_millis(1500) {
            assert_eq!(
                record["status"], "queued",
                "taken before its time: {record}"
            );
        }
        assert!(
            Instant::now() < deadline,
            "not completed in 60 s: {record}\nworker:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(record["output"], 15, "{record}");
    let events = store.events(&RunId(id.clone())).await.unwrap();
    let started = events
        .iter()
        .find(|e| e.event.kind == EventKind::RunStarted)
        .unwrap();
    assert!(
        started.event.at >= wake_at,
        "started at {} before its time {wake_at}",
        started.event.at
    );
    assert_eq!(events[0].event.payload["start_at"], line["wake_at"]);
}

#[test]
fn malformed_delays_and_times_exit_2_naming_the_forms_and_start_nothing() {
    let db = TempDb::new().unwrap();
    for (flag, value, names) in [
        ("--delay", "nonsense", "10m"),
        ("--start-at", "tomorrow", "RFC 3339"),
    ] {
        let out = run(
            &db,
            &["workflows", "run", "ten-steps", "--input", "5", flag, value],
        );
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(
            stderr.contains(value) && stderr.contains(names),
            "{flag} {value}: {stderr}"
        );
    }
    // Refused while parsing the command line: not even the database was created.
    assert!(!db.path().exists(), "a run was started");
}
