//! Several `worker` processes on one SQLite file: every run is executed by one worker at a
//! time, each effect of a clean run happens once, and a worker killed with `kill -9` loses
//! nothing (its runs are taken over when their leases expire).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reprise::Engine;
use reprise::event::{EventKind, RunFilter, RunId, RunStatus};
use reprise_testkit::TempDb;
use serde_json::json;

use crate::file_digest::fixture_tree;

/// A `worker` process of the example app on `db`, logging its effects to `effects`.
fn worker(db: &TempDb, effects: &Path, lease: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_reprise-examples"))
        .args(["worker", "--concurrency", "3", "--lease", lease])
        .env("REPRISE_DATABASE_URL", db.url())
        .env("REPRISE_EXAMPLES_EFFECT_LOG", effects)
        .current_dir(db.dir())
        .stdout(Stdio::null())
        // A file, not a pipe nobody reads: a chatty worker must never block on stderr, and
        // a failing test shows what the worker said.
        .stderr(std::fs::File::create(effects.with_extension("stderr")).unwrap())
        .spawn()
        .unwrap()
}

/// Waits for `child` (a worker started by [`worker`] with effect log `effects`) to exit
/// successfully after SIGTERM; a failure shows its exit status and stderr.
fn assert_clean_exit(child: &mut Child, effects: &Path) {
    let status = wait_exit(child, Duration::from_secs(20));
    let stderr = std::fs::read_to_string(effects.with_extension("stderr")).unwrap_or_default();
    assert!(status.success(), "worker exited with {status}:\n{stderr}");
}

/// Enqueues `n` file-digest runs (4 files, `delay_ms` per file, one file at a time).
async fn enqueue(engine: &Engine, n: usize, tree: &Path, out: &Path, delay_ms: u64) -> Vec<RunId> {
    let mut ids = Vec::new();
    for i in 0..n {
        let input = json!({
            "dir": tree,
            "delay_ms": delay_ms,
            "concurrency": 1,
            "out": out.join(format!("report-{i}.json")),
        });
        ids.push(
            engine
                .start_json("file-digest", input, reprise::Trigger::Cli)
                .await
                .unwrap(),
        );
    }
    ids
}

async fn wait_all_completed(engine: &Engine, ids: &[RunId], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let mut unfinished = Vec::new();
        for id in ids {
            let run = engine.get_run(id).await.unwrap();
            assert_ne!(
                run.status,
                RunStatus::Failed,
                "run {id} failed: {:?}",
                run.error
            );
            if run.status != RunStatus::Completed {
                unfinished.push((id.clone(), run.status));
            }
        }
        if unfinished.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} runs unfinished after {timeout:?}: {unfinished:?}",
            unfinished.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The effect log's lines (idempotency keys `run-id/step-id`), in order.
fn effects(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The recorded completions of every run: `run-id/step-id`, each once, with a check that no
/// step was recorded twice and that each run completed exactly once.
async fn recorded(engine: &Engine, ids: &[RunId]) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for id in ids {
        let events = engine.events(id).await.unwrap();
        let completions = events
            .iter()
            .filter(|e| e.event.kind == EventKind::RunCompleted)
            .count();
        assert_eq!(completions, 1, "run {id} completed {completions} times");
        for event in &events {
            if event.event.kind == EventKind::StepCompleted
                && let Some(step) = &event.event.correlation_id
                && !step.starts_with('$')
            {
                assert!(
                    all.insert(format!("{id}/{step}")),
                    "step {step} of run {id} was recorded twice"
                );
            }
        }
    }
    all
}

fn terminate(child: &mut Child) {
    let pid = child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("worker did not stop within {within:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_never_run_one_run_twice() {
    let db = TempDb::new().unwrap();
    let tree = fixture_tree(4);
    let engine = db.engine(|builder| builder).unwrap();
    let ids = enqueue(&engine, 24, tree.path(), db.dir(), 15).await;
    let (log_a, log_b) = (
        db.dir().join("effects-a.log"),
        db.dir().join("effects-b.log"),
    );
    let mut a = worker(&db, &log_a, "15s");
    let mut b = worker(&db, &log_b, "15s");
    wait_all_completed(&engine, &ids, Duration::from_secs(120)).await;
    terminate(&mut a);
    terminate(&mut b);
    assert_clean_exit(&mut a, &log_a);
    assert_clean_exit(&mut b, &log_b);

    let (effects_a, effects_b) = (effects(&log_a), effects(&log_b));
    assert!(
        !effects_a.is_empty() && !effects_b.is_empty(),
        "both workers took part ({} and {} effects)",
        effects_a.len(),
        effects_b.len()
    );
    // Each effect happened exactly once across both processes…
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for key in effects_a.iter().chain(&effects_b) {
        *counts.entry(key.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "effects applied more than once: {twice:?}"
    );
    // …and is a recorded step; every effectful recorded step has its effect.
    let recorded = recorded(&engine, &ids).await;
    for key in counts.keys() {
        assert!(recorded.contains(*key), "effect {key} has no recorded step");
    }
    let effectful: BTreeSet<&String> = recorded
        .iter()
        .filter(|k| k.contains("/hash-file#") || k.contains("/write-report#"))
        .collect();
    assert_eq!(effectful.len(), counts.len());
    // No run was split between the workers: a run is executed by the worker that claimed it.
    let run_of = |key: &String| key.split('/').next().unwrap_or_default().to_owned();
    let runs_a: BTreeSet<String> = effects_a.iter().map(run_of).collect();
    let runs_b: BTreeSet<String> = effects_b.iter().map(run_of).collect();
    assert!(
        runs_a.is_disjoint(&runs_b),
        "a run executed on both workers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_loses_nothing_and_its_runs_are_taken_over() {
    let db = TempDb::new().unwrap();
    let tree = fixture_tree(4);
    let engine = db.engine(|builder| builder).unwrap();
    let ids = enqueue(&engine, 12, tree.path(), db.dir(), 60).await;
    let (log_a, log_b) = (
        db.dir().join("effects-a.log"),
        db.dir().join("effects-b.log"),
    );
    let mut a = worker(&db, &log_a, "1s");
    // Let the first worker take runs and record some of their steps, then kill it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while effects(&log_a).len() < 6 {
        assert!(
            Instant::now() < deadline,
            "the first worker made no progress"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.kill().unwrap();
    let _ = a.wait();
    let held = engine
        .list_runs(&RunFilter {
            status: Some(RunStatus::Running),
            ..RunFilter::default()
        })
        .await
        .unwrap();
    assert!(
        !held.is_empty(),
        "the killed worker left runs mid-execution"
    );

    let mut b = worker(&db, &log_b, "1s");
    wait_all_completed(&engine, &ids, Duration::from_secs(120)).await;
    terminate(&mut b);
    assert_clean_exit(&mut b, &log_b);

    let recorded = recorded(&engine, &ids).await;
    let all_effects: Vec<String> = effects(&log_a).into_iter().chain(effects(&log_b)).collect();
    let applied: BTreeSet<&String> = all_effects.iter().collect();
    for key in recorded
        .iter()
        .filter(|k| k.contains("/hash-file#") || k.contains("/write-report#"))
    {
        assert!(applied.contains(key), "recorded step {key} has no effect");
    }
    // At-least-once: only a step in flight when the worker died may have run twice, and
    // then once on each side of the kill.
    let mut counts: BTreeMap<&String, usize> = BTreeMap::new();
    for key in &all_effects {
        *counts.entry(key).or_default() += 1;
    }
    let b_effects: BTreeSet<String> = effects(&log_b).into_iter().collect();
    for (key, n) in counts {
        assert!(n <= 2, "effect {key} applied {n} times");
        if n == 2 {
            assert!(
                effects(&log_a).contains(key) && b_effects.contains(key),
                "a repeated effect must span the kill: {key}"
            );
        }
    }
    for run in &held {
        let events = engine.events(&run.id).await.unwrap();
        let starts = events
            .iter()
            .filter(|e| e.event.kind == EventKind::RunStarted)
            .count();
        assert!(
            starts >= 2,
            "run {} was taken over by the second worker",
            run.id
        );
    }
}

#[test]
fn workflows_run_wait_enqueues_for_a_worker_and_reports_the_end() {
    let db = TempDb::new().unwrap();
    let tree = fixture_tree(3);
    let effect_log = db.dir().join("effects.log");
    let mut w = worker(&db, &effect_log, "15s");
    let input = json!({ "dir": tree.path(), "out": db.dir().join("report.json") }).to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_reprise-examples"))
        .args([
            "workflows",
            "run",
            "file-digest",
            "--wait",
            "60s",
            "--json",
            "--input",
            &input,
        ])
        .env("REPRISE_DATABASE_URL", db.url())
        .current_dir(db.dir())
        .output()
        .unwrap();
    terminate(&mut w);
    assert_clean_exit(&mut w, &effect_log);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["status"], "completed", "{line}");
    assert_eq!(line["output"]["files"], 3, "{line}");
    // This process only enqueued and waited: the worker executed every step.
    let effects = effects(&db.dir().join("effects.log"));
    assert_eq!(
        effects.len(),
        4,
        "3 hashes and the report, by the worker: {effects:?}"
    );

    // `--enqueue` only starts the run; with no worker it stays queued.
    let out = Command::new(env!("CARGO_BIN_EXE_reprise-examples"))
        .args([
            "workflows",
            "run",
            "file-digest",
            "--enqueue",
            "--json",
            "--input",
            &input,
        ])
        .env("REPRISE_DATABASE_URL", db.url())
        .current_dir(db.dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["status"], "queued", "{line}");
}

/// A supervisor that stops a worker while it is still starting up (opening the database,
/// building its engine) gets a graceful stop, exit 0, not the signal's default kill: the
/// signal handlers are installed before anything slow.
#[test]
fn a_worker_stopped_during_startup_exits_cleanly() {
    for _ in 0..5 {
        let db = TempDb::new().unwrap();
        let effects = db.dir().join("effects.log");
        let mut child = worker(&db, &effects, "15s");
        // The database file appears while the worker opens its store, before its engine
        // is built and long before it claims anything.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !db.path().exists() {
            assert!(
                Instant::now() < deadline,
                "the worker never opened its database"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        terminate(&mut child);
        assert_clean_exit(&mut child, &effects);
    }
}
