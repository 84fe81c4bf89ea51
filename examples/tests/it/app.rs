//! The example app as a user runs it: a child process, its exit codes, `kill -9` and
//! `runs resume`.

use std::collections::{HashMap, HashSet};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use reprise::store::{SqliteStore, Store};
use reprise_testkit::{TempDb, assert_each_step_recorded_once, completed_steps};
use serde_json::Value;

use crate::file_digest::fixture_tree;

fn app(db: &TempDb) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_reprise-examples"));
    command
        .env("REPRISE_DATABASE_URL", db.url())
        .env("REPRISE_EXAMPLES_EFFECT_LOG", db.dir().join("effects.log"))
        .current_dir(db.dir());
    command
}

fn run(command: &mut Command) -> Output {
    command.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn workflows_run_prints_the_output_and_the_step_table() {
    let db = TempDb::new().unwrap();
    let tree = fixture_tree(5);
    let input = serde_json::json!({ "dir": tree.path() }).to_string();
    let out = run(app(&db).args(["workflows", "run", "file-digest", "--input", &input]));
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("\"files\": 5"), "{stdout}");
    for column in ["step", "status", "attempts", "duration"] {
        assert!(stdout.contains(column), "missing column {column}: {stdout}");
    }
    assert!(stdout.contains("hash-file#4"), "{stdout}");
    assert!(stdout.contains("completed"), "{stdout}");
}

#[test]
fn workflows_run_json_prints_one_object() {
    let db = TempDb::new().unwrap();
    let input = r#"{"traveler":"Ada","destination":"Lisbon","hotel":"Overbooked Inn"}"#;
    let out = run(app(&db).args(["workflows", "run", "book-trip", "--input", input, "--json"]));
    assert_eq!(out.status.code(), Some(1), "a failed run exits 1");
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["status"], "failed");
    assert!(line["run_id"].is_string());
    assert!(
        line["error"]["message"]
            .as_str()
            .unwrap()
            .contains("canceled")
    );
}

#[test]
fn an_invalid_email_exits_2_names_the_pointer_and_creates_no_run() {
    let db = TempDb::new().unwrap();
    let input = r#"{"name":"Ada","email":"not-an-email"}"#;
    let out = run(app(&db).args(["workflows", "run", "signup-pipeline", "--input", input]));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("/email"), "{stderr}");
    let list = run(app(&db).args(["runs", "list", "--json"]));
    assert_eq!(list.status.code(), Some(0));
    let runs: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(runs, serde_json::json!([]), "no run was created");
}

#[test]
fn unknown_workflow_and_bad_json_are_usage_errors() {
    let db = TempDb::new().unwrap();
    let out = run(app(&db).args(["workflows", "run", "nope", "--input", "{}"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no workflow named `nope`"));
    let out = run(app(&db).args(["workflows", "run", "file-digest", "--input", "{not json"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("not valid JSON"));
}

#[test]
fn schema_and_graph_describe_a_workflow() {
    let db = TempDb::new().unwrap();
    let out = run(app(&db).args(["workflows", "schema", "signup-pipeline"]));
    let schema: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(schema["input"]["properties"]["email"]["format"], "email");
    let out = run(app(&db).args(["workflows", "graph", "file-digest"]));
    let graph = text(&out.stdout);
    assert!(graph.starts_with("flowchart TD"), "{graph}");
    for node in ["list-files", "hash-file", "write-report"] {
        assert!(graph.contains(node), "{graph}");
    }
    let out = run(app(&db).args(["workflows", "list"]));
    let list = text(&out.stdout);
    for slug in ["signup-pipeline", "file-digest", "book-trip"] {
        assert!(list.contains(slug), "{list}");
    }
}

async fn completed_before(db: &TempDb) -> (String, Vec<String>) {
    let store = SqliteStore::open(db.path()).unwrap();
    let runs = store.list_runs(&Default::default()).await.unwrap();
    let Some(run) = runs.first() else {
        return (String::new(), Vec::new());
    };
    let events = store.events(&run.id).await.unwrap();
    (run.id.to_string(), completed_steps(&events))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_digest_killed_with_sigkill_resumes_without_rerunning_recorded_steps() {
    let db = TempDb::new().unwrap();
    let tree = fixture_tree(30);
    let input =
        serde_json::json!({ "dir": tree.path(), "delay_ms": 60, "concurrency": 2 }).to_string();
    let mut child = app(&db)
        .args(["workflows", "run", "file-digest", "--input", &input])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // Wait until some files are recorded, then kill -9 mid-run.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, done) = completed_before(&db).await;
        if done.iter().filter(|s| s.starts_with("hash-file#")).count() >= 6 {
            break;
        }
        assert!(Instant::now() < deadline, "the run made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let (run_id, recorded) = completed_before(&db).await;
    assert!(
        recorded.len() < 32,
        "killed before the end ({} steps recorded)",
        recorded.len()
    );

    let out = run(app(&db).args(["runs", "resume"]));
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("\"files\": 30"), "{stdout}");
    let replayed = format!("{} steps replayed from the log", recorded.len());
    assert!(
        stdout.contains(&replayed),
        "expected `{replayed}` in {stdout}"
    );

    let store = SqliteStore::open(db.path()).unwrap();
    let events = store.events(&reprise::RunId(run_id.clone())).await.unwrap();
    assert_each_step_recorded_once(&events);
    assert_eq!(
        completed_steps(&events)
            .iter()
            .filter(|s| s.starts_with("hash-file#"))
            .count(),
        30
    );

    // Every effect recorded before the kill ran exactly once.
    let effects = std::fs::read_to_string(db.dir().join("effects.log")).unwrap();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for line in effects.lines() {
        *counts.entry(line).or_default() += 1;
    }
    let recorded: HashSet<String> = recorded
        .into_iter()
        .map(|id| format!("{run_id}/{id}"))
        .collect();
    for key in recorded.iter().filter(|k| k.contains("hash-file")) {
        assert_eq!(
            counts.get(key.as_str()),
            Some(&1),
            "effect of {key} ran {:?} times",
            counts.get(key.as_str())
        );
    }
}

#[test]
fn a_hook_waits_across_processes_and_resumes_from_the_cli() {
    let db = TempDb::new().unwrap();
    let out = run(app(&db).args([
        "workflows",
        "run",
        "approval",
        "--input",
        r#"{"title":"Ship v2"}"#,
        "--json",
    ]));
    assert_eq!(
        out.status.code(),
        Some(3),
        "a waiting run exits 3: {}",
        text(&out.stderr)
    );
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["status"], "waiting");
    let run_id = line["run_id"].as_str().unwrap().to_owned();

    // The resume URL the action sent is the one `runs get` shows, in another process.
    let get = run(app(&db).args(["runs", "get", &run_id, "--json"]));
    let got: Value = serde_json::from_slice(&get.stdout).unwrap();
    let url = got["open_hooks"][0]["resume_url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        text(&out.stderr).contains(&url),
        "the action sent {url}: {}",
        text(&out.stderr)
    );
    let token = url.rsplit('/').next().unwrap().to_owned();
    assert!(token.len() >= 43, "at least 256 bits, base64url: {token}");

    let bad = run(app(&db).args([
        "hooks",
        "resume",
        &token,
        "--payload",
        r#"{"approved":"yes","by":"Ada"}"#,
    ]));
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("/approved"),
        "{}",
        text(&bad.stderr)
    );

    let ok = run(app(&db).args([
        "hooks",
        "resume",
        &token,
        "--payload",
        r#"{"approved":true,"by":"Ada"}"#,
        "--json",
    ]));
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    let done: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(
        done["output"],
        serde_json::json!({ "result": "published", "by": "Ada" })
    );

    let again = run(app(&db).args([
        "hooks",
        "resume",
        &token,
        "--payload",
        r#"{"approved":false,"by":"Bob"}"#,
    ]));
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again.stderr).contains("already"),
        "{}",
        text(&again.stderr)
    );
    let effects = std::fs::read_to_string(db.dir().join("effects.log")).unwrap();
    assert_eq!(
        effects
            .lines()
            .filter(|l| l.ends_with("ask-for-approval#0"))
            .count(),
        1,
        "asked once"
    );
}
