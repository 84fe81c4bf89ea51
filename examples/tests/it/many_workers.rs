//! Many `worker` processes on one Postgres database, two of them killed with `kill -9`
//! mid-flight: 2,000 `ten-steps` runs each complete exactly once, each step is recorded
//! once, and no run is ever executed by two workers at once.
//!
//! Skipped, with a notice on stderr, when `REPRISE_TEST_POSTGRES_URL` is unset (e.g.
//! `postgres://postgres@127.0.0.1:5432/test`). The test works in a schema of its own
//! (the workers reach it through `?options=-c search_path=…` in their URL), dropped at the
//! end, also when the test fails.
//!
//! # Why the effect logs prove that no run ran on two workers at once
//!
//! Every worker process appends the idempotency key (`run/step`) of each effect to a log
//! of its own, in the order it performs them. A run's ten steps are sequential, and each
//! execution of a run replays the recorded steps and performs the unrecorded ones from
//! the first unrecorded step on. So if the executions of a run never overlap in time, each
//! worker's effects of that run are one contiguous, increasing range of step positions,
//! and these ranges, ordered, tile the ten steps: the next range starts right after the
//! previous one ends, or at its last step (that step's effect ran, but its record did not
//! land before the execution stopped: at-least-once). Execution passes from one worker to
//! another only when the first stopped, and a worker that is up and renewing its lease
//! never stops executing a run before it ends, so every hand-over must come from a worker
//! that was SIGKILLed (and a repeated effect is always the last effect of a killed
//! worker's range). Two workers executing one run at once would break this: both would
//! perform effects of the same steps (overlapping ranges beyond one step), or, with the
//! fencing stopping the loser at its first append, the loser would be a live worker that
//! handed a run over, which the check rejects. The check is independent of wall clocks:
//! it uses only the order of lines within each log and the recorded step order.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use reprise::Engine;
use reprise::event::{EventKind, RunFilter, RunId, RunStatus};
use reprise::store::{PostgresOptions, PostgresStore};
use serde_json::json;

/// The variable naming the test database.
const URL_VAR: &str = "REPRISE_TEST_POSTGRES_URL";
/// Runs enqueued.
const RUNS: usize = 2_000;
/// Steps (effects) per run.
const STEPS: usize = 10;

/// The test database's URL, or `None` (with a notice) when the variable is unset.
pub(crate) fn test_url() -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!(
                "skipped: {URL_VAR} is not set (e.g. postgres://postgres@127.0.0.1:5432/test)"
            );
            None
        }
    }
}

/// A schema of its own for this test, dropped with everything in it when this is dropped.
pub(crate) struct TestSchema {
    url: String,
    pub(crate) name: String,
}

impl TestSchema {
    pub(crate) fn new(url: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        Self {
            url: url.to_owned(),
            name: format!("reprise_many_workers_{}_{nanos}", std::process::id()),
        }
    }

    /// The database URL with this schema as the `search_path`, for child processes.
    pub(crate) fn child_url(&self) -> String {
        let separator = if self.url.contains('?') { '&' } else { '?' };
        format!(
            "{}{separator}options=-c%20search_path%3D{}",
            self.url, self.name
        )
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let url = self.url.clone();
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name);
        // `Drop` cannot await and may run inside the test's runtime: a thread of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(connection);
                client.batch_execute(&sql).await.map_err(|e| e.to_string())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test schema {}: {dropped:?}", self.name);
        }
    }
}

/// One `worker` process and what the test knows about it.
struct Slot {
    child: Child,
    effects: PathBuf,
    stderr: PathBuf,
    killed: bool,
    stopped: bool,
}

fn spawn_worker(url: &str, dir: &Path, index: usize) -> Slot {
    let effects = dir.join(format!("effects-{index}.log"));
    let stderr = dir.join(format!("worker-{index}.stderr"));
    let child = Command::new(env!("CARGO_BIN_EXE_reprise-examples"))
        .args(["worker", "--concurrency", "16", "--lease", "2s"])
        .env("REPRISE_DATABASE_URL", url)
        .env(
            "REPRISE_HOOK_SECRET",
            "many-workers-test-secret-0123456789abcdef",
        )
        .env("REPRISE_EXAMPLES_EFFECT_LOG", &effects)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    Slot {
        child,
        effects,
        stderr,
        killed: false,
        stopped: false,
    }
}

/// The effect log's lines (idempotency keys `run-id/step-id`), in order.
fn effect_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The workers' stderr, for failure messages.
fn stderr_tails(slots: &[Slot]) -> String {
    slots
        .iter()
        .enumerate()
        .map(|(i, slot)| {
            let text = std::fs::read_to_string(&slot.stderr).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(8).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!(
                "worker {i} (killed: {}):\n{}\n",
                slot.killed,
                tail.join("\n")
            )
        })
        .collect()
}

/// A pseudo-random number from the clock (the moment and victim of each kill).
fn random(below: usize) -> usize {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as usize;
    (nanos / 7) % below.max(1)
}

async fn completed_count(engine: &Engine) -> usize {
    engine
        .list_runs(&RunFilter {
            status: Some(RunStatus::Completed),
            workflow: Some("ten-steps".to_owned()),
            limit: None,
            ..RunFilter::default()
        })
        .await
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_workers_with_kills_complete_every_run_exactly_once() {
    let Some(url) = test_url() else { return };
    let schema = TestSchema::new(&url);
    let dir = tempfile::tempdir().unwrap();
    let store = PostgresStore::connect_with(
        &url,
        PostgresOptions {
            schema: Some(schema.name.clone()),
            pool_size: 8,
        },
    )
    .await
    .unwrap();
    let engine = Engine::builder()
        .store(Arc::new(store))
        .discover()
        .unwrap()
        .build()
        .unwrap();

    // Enqueue, 16 creations in flight at a time.
    let started = Instant::now();
    let ids: Vec<(u64, RunId)> = futures::stream::iter(0..RUNS as u64)
        .map(|i| {
            let engine = engine.clone();
            async move {
                let id = engine
                    .start_json("ten-steps", json!(i), reprise::Trigger::Cli)
                    .await
                    .unwrap();
                (i, id)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let enqueue_time = started.elapsed();

    // Three workers; kill one (chosen at random) at 20–29 % and another at 50–59 % of the
    // runs completed, each time starting a replacement so that three stay up.
    let child_url = schema.child_url();
    let started = Instant::now();
    let mut slots: Vec<Slot> = (0..3)
        .map(|i| spawn_worker(&child_url, dir.path(), i))
        .collect();
    let mut kill_at: Vec<usize> = vec![
        RUNS * (20 + random(10)) / 100,
        RUNS * (50 + random(10)) / 100,
    ];
    let mut kills = Vec::new();
    let deadline = started + Duration::from_secs(180);
    loop {
        let done = completed_count(&engine).await;
        if done == RUNS {
            break;
        }
        for (i, slot) in slots.iter_mut().enumerate() {
            if !slot.killed
                && let Some(status) = slot.child.try_wait().unwrap()
            {
                panic!("worker {i} exited on its own ({status})");
            }
        }
        if let Some(&threshold) = kill_at.first()
            && done >= threshold
        {
            kill_at.remove(0);
            let alive: Vec<usize> = (0..slots.len()).filter(|&i| !slots[i].killed).collect();
            let victim = alive[random(alive.len())];
            slots[victim].child.kill().unwrap(); // SIGKILL
            let _ = slots[victim].child.wait();
            slots[victim].killed = true;
            kills.push((victim, done));
            let index = slots.len();
            slots.push(spawn_worker(&child_url, dir.path(), index));
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {RUNS} runs completed after 180 s\n{}",
            stderr_tails(&slots)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let run_time = started.elapsed();
    assert_eq!(kills.len(), 2, "both kills happened: {kills:?}");

    // SIGTERM the survivors: they stop gracefully.
    for slot in slots.iter_mut().filter(|s| !s.killed) {
        let pid = slot.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
    }
    for (i, slot) in slots.iter_mut().enumerate().filter(|(_, s)| !s.killed) {
        let limit = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = slot.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > limit {
                let _ = slot.child.kill();
                panic!("worker {i} did not stop within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "worker {i} exited with {status}");
        slot.stopped = true;
    }

    // Every run completed exactly once, with the right output; each step recorded once.
    // `order[run][step]` is the step's position in the run's recorded order.
    let mut order: HashMap<String, HashMap<String, usize>> = HashMap::new();
    for (i, id) in &ids {
        let run = engine.get_run(id).await.unwrap();
        assert_eq!(
            run.status,
            RunStatus::Completed,
            "run {id}: {:?}",
            run.error
        );
        assert_eq!(run.output, Some(json!(i + STEPS as u64)), "run {id}");
        let events = engine.events(id).await.unwrap();
        let completions = events
            .iter()
            .filter(|e| e.event.kind == EventKind::RunCompleted)
            .count();
        assert_eq!(completions, 1, "run {id} completed {completions} times");
        let mut steps = HashMap::new();
        for event in &events {
            if event.event.kind == EventKind::StepCompleted
                && let Some(step) = &event.event.correlation_id
                && !step.starts_with('$')
            {
                let position = steps.len();
                assert!(
                    steps.insert(step.clone(), position).is_none(),
                    "step {step} of run {id} was recorded twice"
                );
            }
        }
        assert_eq!(steps.len(), STEPS, "run {id} recorded {steps:?}");
        order.insert(id.to_string(), steps);
    }

    // Each worker's effects of each run, as recorded-order positions, in log order.
    let mut by_run: HashMap<String, BTreeMap<usize, Vec<usize>>> = HashMap::new();
    let mut lines = 0;
    for (w, slot) in slots.iter().enumerate() {
        for key in effect_lines(&slot.effects) {
            lines += 1;
            let (run, step) = key.split_once('/').unwrap_or((&key, ""));
            let position = order
                .get(run)
                .and_then(|steps| steps.get(step))
                .unwrap_or_else(|| panic!("effect {key} (worker {w}) is no recorded step"));
            by_run
                .entry(run.to_owned())
                .or_default()
                .entry(w)
                .or_default()
                .push(*position);
        }
    }
    assert!(
        lines >= RUNS * STEPS,
        "{lines} effects for {} recorded steps",
        RUNS * STEPS
    );
    let (mut handovers, mut repeated) = (0, 0);
    let mut per_worker = vec![0usize; slots.len()];
    for (_, id) in &ids {
        let run = id.to_string();
        let workers = by_run.get(&run).cloned().unwrap_or_default();
        // Per worker: one contiguous increasing range of positions.
        let mut ranges: Vec<(usize, usize, usize)> = Vec::new();
        for (&w, positions) in &workers {
            per_worker[w] += positions.len();
            let (first, last) = (positions[0], positions[positions.len() - 1]);
            assert!(
                positions.iter().copied().eq(first..=last),
                "run {run}: worker {w}'s effects are not one contiguous run of steps: \
                 {positions:?} (all: {workers:?})"
            );
            ranges.push((first, last, w));
        }
        ranges.sort_unstable();
        assert_eq!(
            ranges.first().map(|r| r.0),
            Some(0),
            "run {run}: the first step's effect is missing: {workers:?}"
        );
        assert_eq!(
            ranges.last().map(|r| r.1),
            Some(STEPS - 1),
            "run {run}: the last step's effect is missing: {workers:?}"
        );
        for pair in ranges.windows(2) {
            let ((_, prev_last, prev), (next_first, _, next)) = (pair[0], pair[1]);
            assert!(
                next_first == prev_last + 1 || next_first == prev_last,
                "run {run}: workers {prev} and {next} performed overlapping steps \
                 (executed at once?): {workers:?}"
            );
            assert!(
                slots[prev].killed,
                "run {run} passed from worker {prev} to worker {next}, but worker {prev} \
                 was not killed (lease lost or executed at once?): {workers:?}\n{}",
                stderr_tails(&slots)
            );
            handovers += 1;
            if next_first == prev_last {
                repeated += 1;
            }
        }
    }
    assert!(
        handovers > 0,
        "the killed workers held runs mid-flight that others took over"
    );
    let total = enqueue_time + run_time;
    eprintln!(
        "many workers: enqueued {RUNS} runs in {:.1} s; executed them in {:.1} s \
         ({:.0} runs/s, {:.0} steps/s) on {} workers ({} killed at {:?} completed runs); \
         effects per worker {per_worker:?}; {handovers} runs taken over after a kill, \
         {repeated} effects repeated across a kill; total {:.1} s",
        enqueue_time.as_secs_f64(),
        run_time.as_secs_f64(),
        RUNS as f64 / run_time.as_secs_f64(),
        (RUNS * STEPS) as f64 / run_time.as_secs_f64(),
        slots.len(),
        kills.len(),
        kills.iter().map(|k| k.1).collect::<Vec<_>>(),
        total.as_secs_f64(),
    );
    assert!(slots.iter().all(|s| s.killed || s.stopped));
    drop(engine);
}
