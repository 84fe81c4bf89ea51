//! Flow control from the example app's command line (issue 16): queue settings from
//! `--queues-file` and `REPRISE_QUEUES` reach every command (a bad file is a startup
//! error naming it); `workflows run --queue/--queue-key/--priority/--dedup` place runs,
//! refuse bad input with exit 2 and start nothing, leave runs of bounded queues to the
//! workers; `runs get` shows a run's place and what it waits for; `queues list` shows the
//! queues; `worker --queues/--workflows` route a worker and refuse unknown names.
//!
//! The example app configures no queue in code: every queue here comes from the file or
//! the variable. Admission itself is tested over HTTP (`runtime/tests/it/queues_http.rs`)
//! and in the stores' conformance suite.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use reprise_testkit::TempDb;
use serde_json::Value;

use crate::operator::{app, run};

const QUEUES: &str = r#"[
  {"name": "serial", "concurrency": 1},
  {"name": "by-dir", "key": "/dir", "key_concurrency": 1},
  {"name": "free"}
]"#;

/// Writes the queue settings file into the database's directory; its path.
fn queues_file(db: &TempDb, text: &str) -> String {
    let path = db.dir().join("queues.json");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// The first run id (a UUID) in `text`.
fn run_id(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c == '"')
        .find(|word| word.len() == 36 && word.matches('-').count() == 4)
        .unwrap_or_else(|| panic!("no run id in {text}"))
        .to_owned()
}

/// Whether the SQLite store keeps queue counts (the SQLite claim with queues is built in
/// parallel with these surfaces), read from `queues list` on the test's database; when
/// not, prints a notice so the skip shows.
fn sqlite_keeps_queues(db: &TempDb, file: &str, test: &str) -> bool {
    let (code, out, err) = run(app(db).env_remove("REPRISE_QUEUES").args([
        "queues",
        "list",
        "--json",
        "--queues-file",
        file,
    ]));
    if code == 0 {
        return true;
    }
    assert!(err.contains("keeps no queues"), "{out}{err}");
    println!(
        "{test}: skipped the parts that need the SQLite store's queue counts (not in this build)"
    );
    false
}

#[test]
fn queues_list_shows_the_queues_of_the_file_and_the_variable() {
    let db = TempDb::new().unwrap();
    let file = queues_file(&db, QUEUES);
    let (code, out, err) = run(app(&db).env_remove("REPRISE_QUEUES").args([
        "queues",
        "list",
        "--db",
        "memory:",
        "--queues-file",
        &file,
        "--json",
    ]));
    assert_eq!(code, 0, "{out}{err}");
    let queues: Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = queues
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    // The file's queues, and `llm`, which the example app configures in code.
    assert_eq!(names, ["by-dir", "free", "llm", "serial"], "{out}");
    assert_eq!(queues[3]["concurrency"], 1, "{out}");
    assert_eq!(queues[2]["concurrency"], 8, "{out}");
    assert_eq!(queues[0]["key"], "/dir", "{out}");
    for queue in queues.as_array().unwrap() {
        assert_eq!(queue["active"], 0, "{queue}");
        assert_eq!(queue["waiting"], 0, "{queue}");
    }

    // The variable adds its own, as JSON text; the human table shows the limits.
    let (code, out, err) = run(app(&db)
        .env(
            "REPRISE_QUEUES",
            r#"[{"name": "gpu", "rate_limit": {"limit": 2, "period": "1m"},
                "step_rate_limit": {"limit": 30, "period": "1m"}}]"#,
        )
        .args(["queues", "list", "--db", "memory:", "--queues-file", &file]));
    assert_eq!(code, 0, "{out}{err}");
    for expected in [
        "gpu",
        "2 per 1m",
        "30 steps per 1m",
        "step permits",
        "serial",
        "concurrency 1",
        "by-dir",
        "1 per key",
        "/dir",
        "waiting",
    ] {
        assert!(out.contains(expected), "`{expected}` not in\n{out}");
    }

    // `@path` in the variable reads a file.
    let (code, out, err) = run(app(&db)
        .env("REPRISE_QUEUES", format!("@{file}"))
        .args(["queues", "list", "--db", "memory:", "--json"]));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        4
    );

    // Without the file and the variable: only the queue the app configures in code.
    let (code, out, err) = run(app(&db)
        .env_remove("REPRISE_QUEUES")
        .args(["queues", "list", "--db", "memory:"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("llm") && !out.contains("serial"), "{out}");
}

#[test]
fn a_bad_queue_settings_file_is_a_startup_error_naming_it() {
    let db = TempDb::new().unwrap();
    let missing = db.dir().join("nope.json").display().to_string();
    let (code, out, err) = run(app(&db).env_remove("REPRISE_QUEUES").args([
        "workflows",
        "list",
        "--queues-file",
        &missing,
    ]));
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("cannot read the queue settings file") && err.contains(&missing),
        "{err}"
    );

    let file = queues_file(&db, r#"[{"name": "q", "concurency": 1}]"#);
    let (code, out, err) = run(app(&db).env_remove("REPRISE_QUEUES").args([
        "workflows",
        "list",
        "--queues-file",
        &file,
    ]));
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains(&file) && err.contains("concurency"), "{err}");

    let file = queues_file(&db, r#"[{"name": "q", "concurrency": 0}]"#);
    let (code, out, err) = run(app(&db).env_remove("REPRISE_QUEUES").args([
        "workflows",
        "list",
        "--queues-file",
        &file,
    ]));
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains(&file) && err.contains("concurrency 0"),
        "{err}"
    );

    let (code, out, err) = run(app(&db)
        .env("REPRISE_QUEUES", "[{\"name\": \"q\",")
        .args(["workflows", "list"]));
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("REPRISE_QUEUES"), "{err}");
}

#[test]
fn bad_queue_input_at_start_exits_2_and_starts_nothing() {
    let db = TempDb::new().unwrap();
    let file = queues_file(&db, QUEUES);
    let start = |extra: &[&str]| {
        let mut args = vec![
            "workflows",
            "run",
            "ten-steps",
            "--input",
            "5",
            "--queues-file",
            &file,
        ];
        args.extend_from_slice(extra);
        run(app(&db).env_remove("REPRISE_QUEUES").args(&args))
    };
    let (code, out, err) = start(&["--queue", "nope"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("unknown queue `nope`") && err.contains("`serial`"),
        "{err}"
    );
    // `by-dir` reads each run's key from `/dir`; the input `5` has none.
    let (code, out, err) = start(&["--queue", "by-dir"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("`/dir`") && err.contains("does not have"),
        "{err}"
    );
    let (code, out, err) = start(&["--queue", "serial", "--priority", "high"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("--priority"), "{err}");
    let (code, out, err) = start(&["--priority", "3"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("runs in no queue"), "{err}");

    let (code, out, err) = run(app(&db).args(["runs", "list", "--json"]));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.trim(), "[]", "a refused start started a run");
}

#[test]
fn runs_get_shows_a_queued_runs_place_and_a_run_started_here_runs_once_admitted() {
    let db = TempDb::new().unwrap();
    let file = queues_file(&db, QUEUES);
    let (code, out, err) = run(app(&db).env_remove("REPRISE_QUEUES").args([
        "workflows",
        "run",
        "ten-steps",
        "--input",
        "5",
        "--queue",
        "serial",
        "--priority",
        "3",
        "--enqueue",
        "--queues-file",
        &file,
        "--json",
    ]));
    assert_eq!(code, 0, "{out}{err}");
    let line: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(line["status"], "queued", "{line}");
    let id = line["run_id"].as_str().unwrap().to_owned();

    let (code, out, err) = run(app(&db).env_remove("REPRISE_QUEUES").args([
        "runs",
        "get",
        &id,
        "--json",
        "--queues-file",
        &file,
    ]));
    assert_eq!(code, 0, "{out}{err}");
    let body: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(body["run"]["status"], "queued", "{body}");
    assert_eq!(body["run"]["queue"]["name"], "serial", "{body}");
    assert_eq!(body["run"]["queue"]["priority"], 3, "{body}");
    let (code, human, err) = run(app(&db).env_remove("REPRISE_QUEUES").args([
        "runs",
        "get",
        &id,
        "--queues-file",
        &file,
    ]));
    assert_eq!(code, 0, "{human}{err}");
    assert!(
        human.contains("queue     serial (priority 3, not admitted yet)"),
        "{human}"
    );
    let kept = sqlite_keeps_queues(&db, &file, "queued run");
    if kept {
        let waiting = &body["waiting_for"];
        assert_eq!(waiting["queue"], "serial", "{body}");
        assert!(
            waiting["message"]
                .as_str()
                .unwrap()
                .starts_with("waiting in queue `serial`"),
            "{body}"
        );
        assert!(
            human.contains("waiting: waiting in queue `serial`"),
            "{human}"
        );
    }

    // Run here, a run of a queue is admitted (nothing else is in it) and runs to its end,
    // its record keeping its place. (Admission needs the store's queue counts.)
    if !kept {
        return;
    }
    let fresh = TempDb::new().unwrap();
    let file = queues_file(&fresh, QUEUES);
    let (code, out, err) = run(app(&fresh).env_remove("REPRISE_QUEUES").args([
        "workflows",
        "run",
        "ten-steps",
        "--input",
        "5",
        "--queue",
        "serial",
        "--queues-file",
        &file,
        "--json",
    ]));
    assert_eq!(code, 0, "{out}{err}");
    let line: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(line["status"], "completed", "{line}");
    let id = line["run_id"].as_str().unwrap().to_owned();
    let (code, out, err) = run(app(&fresh).env_remove("REPRISE_QUEUES").args([
        "runs",
        "get",
        &id,
        "--json",
        "--queues-file",
        &file,
    ]));
    assert_eq!(code, 0, "{out}{err}");
    let body: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(body["run"]["queue"]["name"], "serial", "{body}");
    assert!(body.get("waiting_for").is_none(), "{body}");
}

#[test]
fn a_dedup_id_reports_the_unfinished_run_instead_of_starting_another() {
    let db = TempDb::new().unwrap();
    let file = queues_file(&db, QUEUES);
    // Creates the database.
    let (code, out, err) = run(app(&db).args(["workflows", "list"]));
    assert_eq!(code, 0, "{out}{err}");
    if !sqlite_keeps_queues(&db, &file, "dedup") {
        return;
    }
    let start = |json: bool| {
        let mut args = vec![
            "workflows",
            "run",
            "ten-steps",
            "--input",
            "5",
            "--queue",
            "free",
            "--dedup",
            "nightly-1",
            "--enqueue",
            "--queues-file",
            &file,
        ];
        if json {
            args.push("--json");
        }
        run(app(&db).env_remove("REPRISE_QUEUES").args(&args))
    };
    let (code, out, err) = start(true);
    assert_eq!(code, 0, "{out}{err}");
    let first: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(first["created"], true, "{first}");
    let (code, out, err) = start(true);
    assert_eq!(code, 0, "{out}{err}");
    let second: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(second["created"], false, "{second}");
    assert_eq!(second["run_id"], first["run_id"], "{second}");
    let (code, out, err) = start(false);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("already exists in queue `free` with de-duplication id `nightly-1`"),
        "{out}"
    );
    assert_eq!(run_id(&out), first["run_id"].as_str().unwrap());
}

#[test]
fn worker_routing_flags_refuse_unknown_names_and_route_the_worker() {
    let db = TempDb::new().unwrap();
    let file = queues_file(&db, QUEUES);
    let (code, out, err) = run(app(&db).env_remove("REPRISE_QUEUES").args([
        "worker",
        "--no-triggers",
        "--queues",
        "default,nope",
        "--queues-file",
        &file,
    ]));
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("queue `nope`") && err.contains("default") && err.contains("serial"),
        "{err}"
    );
    let (code, out, err) = run(app(&db).env_remove("REPRISE_QUEUES").args([
        "worker",
        "--no-triggers",
        "--workflows",
        "ten-steps,nope",
    ]));
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("workflow `nope`"), "{err}");

    // A worker routed to runs in no queue of `ten-steps` runs one.
    let (code, out, err) =
        run(app(&db).args(["workflows", "run", "ten-steps", "--input", "3", "--enqueue"]));
    assert_eq!(code, 0, "{out}{err}");
    let id = run_id(&out);
    let mut worker = app(&db)
        .env_remove("REPRISE_QUEUES")
        .args([
            "worker",
            "--no-triggers",
            "--queues",
            "default,serial",
            "--workflows",
            "ten-steps",
            "--queues-file",
            &file,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = worker.stderr.take().unwrap();
    let (lines, read) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut status = Value::Null;
    while Instant::now() < deadline {
        while let Ok(line) = read.try_recv() {
            seen.push(line);
        }
        let (code, out, _) = run(app(&db).args(["runs", "get", &id, "--json"]));
        if code == 0 {
            status = serde_json::from_str::<Value>(&out).unwrap()["run"]["status"].clone();
            if status == "completed" {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = worker.kill();
    let _ = worker.wait();
    while let Ok(line) = read.try_recv() {
        seen.push(line);
    }
    let seen = seen.join("\n");
    assert_eq!(status, "completed", "{seen}");
    assert!(
        seen.contains("claiming only runs of workflows: ten-steps"),
        "{seen}"
    );
    assert!(
        seen.contains("claiming only runs in queues: default, serial"),
        "{seen}"
    );
}

#[test]
fn runs_list_filters_by_queue_and_refuses_a_bad_queue_name() {
    let db = TempDb::new().unwrap();
    let file = queues_file(&db, QUEUES);
    let enqueue = |extra: &[&str]| {
        let mut args = vec![
            "workflows",
            "run",
            "ten-steps",
            "--input",
            "2",
            "--enqueue",
            "--queues-file",
            &file,
            "--json",
        ];
        args.extend_from_slice(extra);
        let (code, out, err) = run(app(&db).env_remove("REPRISE_QUEUES").args(&args));
        assert_eq!(code, 0, "{out}{err}");
        run_id(&out)
    };
    let serial = enqueue(&["--queue", "serial"]);
    let free = enqueue(&["--queue", "free"]);
    let none = enqueue(&[]);
    let list = |extra: &[&str]| {
        let mut args = vec!["runs", "list", "--json", "--queues-file", &file];
        args.extend_from_slice(extra);
        let (code, out, err) = run(app(&db).env_remove("REPRISE_QUEUES").args(&args));
        assert_eq!(code, 0, "{out}{err}");
        let runs: Value = serde_json::from_str(&out).unwrap();
        runs.as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(list(&["--queue", "serial"]), [serial.as_str()]);
    assert_eq!(list(&["--queue", "free", "--status", "queued"]), [free]);
    assert!(list(&["--queue", "by-dir"]).is_empty());
    assert_eq!(list(&[]).len(), 3);
    assert!(list(&[]).contains(&none));
    // The human table lists the same run.
    let (code, out, err) = run(app(&db).env_remove("REPRISE_QUEUES").args([
        "runs",
        "list",
        "--queue",
        "serial",
        "--queues-file",
        &file,
    ]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&serial), "{out}");
    // A name that cannot be a queue's is refused with exit 2, naming the rule.
    let (code, out, err) =
        run(app(&db)
            .env_remove("REPRISE_QUEUES")
            .args(["runs", "list", "--queue", "no spaces"]));
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("--queue") && err.contains("ASCII"), "{err}");
}
