//! The workloads of DESIGN "Performance", each against one store.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reprise::event::{Event, EventKind};
use reprise::store::{MemoryStore, SharedStore, SqliteOptions, SqliteStore, Synchronous};
use reprise::{Engine, RunId, RunOutcome};
use serde::{Deserialize, Serialize};

use crate::BoxError;
use crate::report::{Goal, Metric};
use crate::stats::{mean, percentile};
use crate::system::cpu_seconds;
use crate::workflows::{self, probe};

/// DESIGN's figures for the fastest established engine measured ("for scale").
pub(crate) const REF_W1: &str = "~1,500 steps/s";
/// See [`REF_W1`].
pub(crate) const REF_W2: &str = "~7,500 steps/s";
/// See [`REF_W1`].
pub(crate) const REF_W3: &str = "~500 ms";

/// The metric every throughput-measuring workload reports; the fdatasync ratio is
/// derived from it.
pub(crate) const THROUGHPUT: &str = "throughput";

/// Which store a workload runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StoreKind {
    /// [`MemoryStore`].
    Memory,
    /// [`SqliteStore`] with its defaults (WAL, `synchronous=FULL`: fsync per commit).
    Sqlite,
    /// Diagnostic: [`SqliteStore`] with `synchronous=NORMAL` (fsync only at checkpoints).
    SqliteNormal,
    /// [`reprise::store::PostgresStore`] on a fresh schema of `--postgres-url`.
    Postgres,
}

impl StoreKind {
    /// The name used in tables and on the command line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            StoreKind::Memory => "memory",
            StoreKind::Sqlite => "sqlite",
            StoreKind::SqliteNormal => "sqlite-normal",
            StoreKind::Postgres => "postgres",
        }
    }
}

/// Sizes and repetitions of the workloads.
#[derive(Clone, Debug)]
pub(crate) struct Sizes {
    /// W1: steps of the one run.
    pub(crate) w1_steps: u32,
    /// W1: repetitions (the median one is reported).
    pub(crate) w1_reps: u32,
    /// W2: runs started together.
    pub(crate) w2_runs: u32,
    /// W2: steps per run.
    pub(crate) w2_steps: u32,
    /// `w2-queue`: keys the runs are spread over.
    pub(crate) queue_keys: u32,
    /// `w2-rate`: admissions per window.
    pub(crate) rate_limit: u32,
    /// `w2-rate`: the window, ms.
    pub(crate) rate_period_ms: u64,
    /// Flat cost: steps of the long run.
    pub(crate) flat_steps: u32,
    /// Flat cost: steps per averaging window.
    pub(crate) flat_window: usize,
    /// W3: in-process resumes to take the median of.
    pub(crate) w3_resumes: u32,
    /// Sleeping runs of the `sleepers` workload.
    pub(crate) sleepers: u32,
    /// Runs of the `search` workload.
    pub(crate) search_runs: u32,
    /// Queries per filter of the `search` workload.
    pub(crate) search_queries: u32,
    /// Writes in flight while the `search` workload fills its store.
    pub(crate) search_concurrency: usize,
}

/// Where one workload's results go.
#[derive(Debug, Default)]
pub(crate) struct Out {
    /// Figures.
    pub(crate) metrics: Vec<Metric>,
    /// Remarks.
    pub(crate) notes: Vec<String>,
}

/// A fresh store of `kind` in `dir` (SQLite: `dir/<name>.db`; Postgres: a new schema).
pub(crate) fn open_store(kind: StoreKind, dir: &Path, name: &str) -> Result<SharedStore, BoxError> {
    Ok(match kind {
        StoreKind::Memory => Arc::new(MemoryStore::new()),
        StoreKind::Sqlite => Arc::new(SqliteStore::open(dir.join(format!("{name}.db")))?),
        StoreKind::SqliteNormal => Arc::new(SqliteStore::open_with(
            dir.join(format!("{name}.db")),
            SqliteOptions {
                synchronous: Synchronous::Normal,
                ..SqliteOptions::default()
            },
        )?),
        StoreKind::Postgres => crate::pg::store(&crate::pg::fresh_schema(name))?,
    })
}

/// Where a child process finds its store: a SQLite file, or a Postgres schema of the
/// configured database.
#[derive(Clone, Debug)]
pub(crate) enum StoreSpec {
    /// A SQLite file.
    File(PathBuf),
    /// A schema of `--postgres-url`.
    Schema(String),
}

impl StoreSpec {
    /// Opens the store.
    pub(crate) fn open(&self) -> Result<SharedStore, BoxError> {
        match self {
            StoreSpec::File(path) => Ok(Arc::new(SqliteStore::open(path)?)),
            StoreSpec::Schema(schema) => crate::pg::store(schema),
        }
    }

    /// The command-line arguments that name it to a child process of this binary.
    pub(crate) fn args(&self) -> Vec<String> {
        match self {
            StoreSpec::File(path) => vec!["--db".to_owned(), path.display().to_string()],
            StoreSpec::Schema(schema) => {
                let mut args = vec!["--schema".to_owned(), schema.clone()];
                if let Some(url) = crate::pg::url() {
                    args.push("--postgres-url".to_owned());
                    args.push(url.to_owned());
                }
                args
            }
        }
    }
}

/// Per-step cost in µs: time between a step's `step_completed` and the previous step's
/// (the first one: since `run_started`), read from the timestamps in the log.
fn step_costs(events: &[Event]) -> Vec<f64> {
    let mut costs = Vec::with_capacity(events.len() / 2);
    let mut previous = None;
    for event in events {
        match event.event.kind {
            EventKind::RunStarted => previous = Some(event.event.at),
            EventKind::StepCompleted
                if event
                    .event
                    .correlation_id
                    .as_deref()
                    .is_some_and(|id| id.starts_with("bench-step#")) =>
            {
                if let Some(previous) = previous {
                    let delta = event.event.at - previous;
                    costs.push(delta.num_nanoseconds().unwrap_or(i64::MAX) as f64 / 1e3);
                }
                previous = Some(event.event.at);
            }
            _ => {}
        }
    }
    costs
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs one fresh run of `steps` steps to completion; returns its duration, the CPU
/// seconds the process used meanwhile, and its log.
async fn one_run(engine: &Engine, steps: u32) -> Result<(Duration, f64, Vec<Event>), BoxError> {
    let id = workflows::start(engine, steps).await?;
    let cpu = cpu_seconds();
    let start = Instant::now();
    let execution = engine.drive(&id).await?;
    let elapsed = start.elapsed();
    let cpu = cpu_seconds() - cpu;
    if !matches!(execution.outcome, RunOutcome::Completed(_))
        || execution.executed != u64::from(steps)
    {
        return Err(format!(
            "run {id} did not complete its {steps} steps: {:?} (executed {})",
            execution.outcome, execution.executed
        )
        .into());
    }
    let events = engine.store().events(&id).await?;
    Ok((elapsed, cpu, events))
}

/// W1: one run of `w1_steps` sequential steps, repeated `w1_reps` times on one store;
/// the median repetition is reported.
pub(crate) async fn w1(
    kind: StoreKind,
    dir: &Path,
    sizes: &Sizes,
    out: &mut Out,
) -> Result<(), BoxError> {
    let store = kind.name();
    let engine = workflows::engine(open_store(kind, dir, "w1")?)?;
    let steps = sizes.w1_steps;
    let mut reps = Vec::new();
    let mut cpu = 0.0;
    for _ in 0..sizes.w1_reps.max(1) {
        let (elapsed, used, events) = one_run(&engine, steps).await?;
        cpu += used;
        reps.push((
            f64::from(steps) / elapsed.as_secs_f64(),
            step_costs(&events),
        ));
    }
    reps.sort_by(|a, b| a.0.total_cmp(&b.0));
    let all: Vec<String> = reps.iter().map(|(r, _)| format!("{r:.0}")).collect();
    let (rate, mut costs) = reps.swap_remove(reps.len() / 2);
    let mut throughput = Metric::new("w1", store, THROUGHPUT, rate, "steps/s").reference(REF_W1);
    throughput = match kind {
        StoreKind::Sqlite => throughput.goal(Goal::AtLeast(4000.0)),
        StoreKind::SqliteNormal => throughput,
        StoreKind::Memory => throughput.goal(Goal::AtLeast(500_000.0)),
        StoreKind::Postgres => throughput.goal(Goal::AtLeast(2000.0)),
    };
    out.metrics.push(throughput);
    let mut per_step = Metric::new(
        "w1",
        store,
        "mean step cost (1/throughput)",
        1e6 / rate,
        "µs",
    );
    if kind == StoreKind::Memory {
        per_step = per_step.goal(Goal::AtMost(2.0));
    }
    out.metrics.push(per_step);
    // CPU time is counted in 10 ms ticks: below ~50 ms in total it says nothing.
    if cpu >= 0.05 {
        out.metrics.push(Metric::new(
            "w1",
            store,
            "CPU time per step, all threads (10 ms ticks)",
            cpu * 1e6 / (f64::from(steps) * f64::from(sizes.w1_reps.max(1))),
            "µs",
        ));
    }
    for (name, p) in [
        ("step latency p50", 50.0),
        ("step latency p99", 99.0),
        ("step latency max", 100.0),
    ] {
        out.metrics.push(Metric::new(
            "w1",
            store,
            name,
            percentile(&mut costs, p),
            "µs",
        ));
    }
    out.notes.push(format!(
        "w1/{store}: {} runs of {steps} steps, steps/s per run (sorted): {}; latency = gap between consecutive \
         step_completed timestamps of the median run",
        all.len(),
        all.join(", ")
    ));
    Ok(())
}

/// W2: `w2_runs` runs × `w2_steps` steps, all created concurrently, then all driven at
/// once as Tokio tasks.
pub(crate) async fn w2(
    kind: StoreKind,
    dir: &Path,
    sizes: &Sizes,
    out: &mut Out,
) -> Result<(), BoxError> {
    let store = kind.name();
    let engine = workflows::engine(open_store(kind, dir, "w2")?)?;
    let (runs, steps) = (sizes.w2_runs, sizes.w2_steps);

    let created_at = Instant::now();
    let mut starts = tokio::task::JoinSet::new();
    for _ in 0..runs {
        let engine = engine.clone();
        starts.spawn(async move { workflows::start(&engine, steps).await });
    }
    let mut ids = Vec::with_capacity(runs as usize);
    let mut errors: Vec<String> = Vec::new();
    while let Some(joined) = starts.join_next().await {
        match joined? {
            Ok(id) => ids.push(id),
            Err(e) => errors.push(format!("start: {e}")),
        }
    }
    let create = created_at.elapsed();

    let cpu = cpu_seconds();
    let driven_at = Instant::now();
    let mut drives = tokio::task::JoinSet::new();
    for id in ids {
        let engine = engine.clone();
        drives.spawn(async move {
            let start = Instant::now();
            let result = engine.drive(&id).await;
            (id, result, start.elapsed())
        });
    }
    let mut latencies = Vec::with_capacity(runs as usize);
    let (mut completed, mut failed, mut executed) = (0u32, 0u32, 0u64);
    while let Some(joined) = drives.join_next().await {
        let (id, result, elapsed) = joined?;
        latencies.push(millis(elapsed));
        match result {
            Ok(execution) => {
                executed += execution.executed;
                match execution.outcome {
                    RunOutcome::Completed(_) => completed += 1,
                    other => {
                        failed += 1;
                        errors.push(format!("run {id}: {other:?}"));
                    }
                }
            }
            Err(e) => {
                failed += 1;
                errors.push(format!("run {id}: {e}"));
            }
        }
    }
    let drive = driven_at.elapsed();
    let cpu = cpu_seconds() - cpu;
    let threads = crate::system::threads();
    let total_steps = f64::from(runs) * f64::from(steps);

    let goal = match kind {
        StoreKind::Sqlite => Some(75_000.0),
        StoreKind::SqliteNormal | StoreKind::Postgres => None,
        StoreKind::Memory => Some(500_000.0),
    };
    let unfinished =
        f64::from(failed) + f64::from(runs.saturating_sub(completed).saturating_sub(failed));
    w2_phases(
        out,
        "w2",
        store,
        total_steps,
        (create, drive),
        unfinished,
        goal,
    );
    out.metrics.push(Metric::new(
        "w2",
        store,
        "CPU time per step, all threads (10 ms ticks)",
        cpu * 1e6 / total_steps,
        "µs",
    ));
    out.metrics.push(Metric::new(
        "w2",
        store,
        "OS threads right after the drive phase",
        threads,
        "threads",
    ));
    out.metrics.push(Metric::new(
        "w2",
        store,
        "run latency p50",
        percentile(&mut latencies, 50.0),
        "ms",
    ));
    out.metrics.push(Metric::new(
        "w2",
        store,
        "run latency p99",
        percentile(&mut latencies, 99.0),
        "ms",
    ));
    if executed != total_steps as u64 {
        errors.push(format!("executed {executed} steps, expected {total_steps}"));
    }
    let locked = errors
        .iter()
        .filter(|e| e.contains("locked") || e.contains("busy"))
        .count();
    out.notes.push(format!(
        "w2/{store}: {completed} of {runs} runs completed, {failed} failed ({locked} by lock contention); \
         latency = each run's drive() from the moment all were spawned"
    ));
    for error in errors.iter().take(5) {
        out.notes.push(format!("w2/{store}: {error}"));
    }
    Ok(())
}

/// The figures every W2 variant reports: throughput of the execution phase (against
/// `goal` steps/s when DESIGN sets one), with creation included, both phases' wall time,
/// and the runs that did not complete (DESIGN: none may fail).
pub(crate) fn w2_phases(
    out: &mut Out,
    workload: &str,
    store: &str,
    total_steps: f64,
    (create, drive): (Duration, Duration),
    failed: f64,
    goal: Option<f64>,
) {
    let mut throughput = Metric::new(
        workload,
        store,
        THROUGHPUT,
        total_steps / drive.as_secs_f64(),
        "steps/s",
    )
    .reference(REF_W2);
    if let Some(goal) = goal {
        throughput = throughput.goal(Goal::AtLeast(goal));
    }
    out.metrics.push(throughput);
    for (name, value, unit) in [
        (
            "throughput incl. creating the runs",
            total_steps / (create + drive).as_secs_f64(),
            "steps/s",
        ),
        ("creating the runs (concurrently)", millis(create), "ms"),
        ("driving them (wall)", millis(drive), "ms"),
    ] {
        out.metrics
            .push(Metric::new(workload, store, name, value, unit));
    }
    out.metrics
        .push(Metric::new(workload, store, "failed runs", failed, "runs").goal(Goal::AtMost(0.0)));
}

/// Flat cost: one run of `flat_steps` steps; the mean cost of the `flat_window` steps from
/// step 10 against that of the last `flat_window` steps, from the log's timestamps.
pub(crate) async fn flat(
    kind: StoreKind,
    dir: &Path,
    sizes: &Sizes,
    out: &mut Out,
) -> Result<(), BoxError> {
    let store = kind.name();
    let engine = workflows::engine(open_store(kind, dir, "flat")?)?;
    let steps = sizes.flat_steps;
    let (elapsed, cpu, events) = one_run(&engine, steps).await?;
    let costs = step_costs(&events);
    let window = sizes.flat_window.max(1);
    if costs.len() < 10 + 2 * window {
        return Err(format!(
            "flat: {} steps are too few for two windows of {window}",
            costs.len()
        )
        .into());
    }
    let early = &costs[10..10 + window];
    let late = &costs[costs.len() - window..];
    let (early_mean, late_mean) = (mean(early), mean(late));
    let (mut early_sorted, mut late_sorted) = (early.to_vec(), late.to_vec());
    let median_ratio = percentile(&mut late_sorted, 50.0) / percentile(&mut early_sorted, 50.0);
    let block = (costs.len() / 10).max(1);
    let block_ratio = mean(&costs[costs.len() - block..]) / mean(&costs[..block]);

    out.metrics.push(Metric::new(
        "flat",
        store,
        THROUGHPUT,
        f64::from(steps) / elapsed.as_secs_f64(),
        "steps/s",
    ));
    out.metrics.push(Metric::new(
        "flat",
        store,
        "CPU time per step, all threads (10 ms ticks)",
        cpu * 1e6 / f64::from(steps),
        "µs",
    ));
    out.metrics.push(Metric::new(
        "flat",
        store,
        &format!("mean cost of steps 10..{}", 10 + window),
        early_mean,
        "µs",
    ));
    out.metrics.push(Metric::new(
        "flat",
        store,
        &format!(
            "mean cost of steps {}..{}",
            costs.len() - window,
            costs.len()
        ),
        late_mean,
        "µs",
    ));
    out.metrics.push(
        Metric::new(
            "flat",
            store,
            &format!("step {steps} / step 10 (means of {window})"),
            late_mean / early_mean,
            "x",
        )
        .goal(Goal::AtMost(1.1)),
    );
    out.metrics.push(Metric::new(
        "flat",
        store,
        &format!("same, medians of {window}"),
        median_ratio,
        "x",
    ));
    out.metrics.push(Metric::new(
        "flat",
        store,
        &format!("last {block} / first {block} steps (means)"),
        block_ratio,
        "x",
    ));
    Ok(())
}

/// W3: a run of `history + after` steps is stopped dead at step `history` (in-process: its
/// future is dropped while step `history` hangs; SQLite and Postgres also in a separate
/// process killed with SIGKILL), then resumed by a new engine, replaying `history` steps.
pub(crate) async fn w3(
    kind: StoreKind,
    label: &str,
    dir: &Path,
    history: u32,
    after: u32,
    sizes: &Sizes,
    out: &mut Out,
) -> Result<(), BoxError> {
    if kind == StoreKind::SqliteNormal {
        return Err("W3 runs against the memory, sqlite and postgres stores only".into());
    }
    let store_name = kind.name();
    let total = history + after;
    let db = dir.join(format!("{label}.db"));
    let restart_db = dir.join(format!("{label}-restart.db"));
    // Postgres: one schema; the processes that record and resume the run all open it.
    let schema = (kind == StoreKind::Postgres).then(|| crate::pg::fresh_schema(label));
    let (recording, restarting) = match &schema {
        Some(schema) => (
            StoreSpec::Schema(schema.clone()),
            StoreSpec::Schema(schema.clone()),
        ),
        None => (
            StoreSpec::File(db.clone()),
            StoreSpec::File(restart_db.clone()),
        ),
    };
    let memory: SharedStore = Arc::new(MemoryStore::new());
    let reopen = || -> Result<SharedStore, BoxError> {
        match kind {
            StoreKind::Memory => Ok(memory.clone()),
            _ => recording.open(),
        }
    };

    // Record: create the run, then run it until it dies at step `history`.
    let engine = workflows::restartable_engine(reopen()?)?;
    let id = workflows::start(&engine, total).await?;
    let record_start = Instant::now();
    match kind {
        StoreKind::Memory => {
            probe::kill_at(Some(history), false);
            execute_until_killed(&engine, &id).await?;
        }
        StoreKind::Sqlite | StoreKind::SqliteNormal | StoreKind::Postgres => {
            drop(engine);
            run_victim(&recording, &id, history)?;
            // The cold resume below gets the files exactly as the kill left them (WAL and
            // all); the in-process resumes, which close the file cleanly, use the original.
            // (Postgres: the server keeps the state; the in-process resumes below only add
            // `run_started` events, which the cold resume replays like any other.)
            for suffix in ["", "-wal", "-shm"] {
                let from = PathBuf::from(format!("{}{suffix}", db.display()));
                if from.exists() {
                    std::fs::copy(&from, format!("{}{suffix}", restart_db.display()))?;
                }
            }
        }
    }
    let record = record_start.elapsed();
    let engine = workflows::restartable_engine(reopen()?)?;
    let recorded = engine
        .store()
        .events(&id)
        .await?
        .iter()
        .filter(|e| e.event.kind == EventKind::StepCompleted)
        .count();
    drop(engine);
    if recorded != history as usize {
        return Err(format!(
            "{label}: expected {history} recorded steps after the kill, found {recorded}"
        )
        .into());
    }
    out.notes.push(format!(
        "{label}/{store_name}: recorded {history} of {total} steps in {:.0} ms, then {}",
        millis(record),
        match kind {
            StoreKind::Memory => "dropped the execution while step #history hung (the in-memory analogue of a crash)",
            StoreKind::Sqlite | StoreKind::SqliteNormal | StoreKind::Postgres => "SIGKILLed the recording process while step #history ran",
        }
    ));

    // In-process resumes: a new engine (SQLite: the file reopened) replays the history; the
    // run is stopped again at its first new step, so every resume sees the same log.
    let mut to_first = Vec::new();
    let mut execute_to_first = Vec::new();
    for _ in 0..sizes.w3_resumes.max(1) {
        let start = Instant::now();
        let engine = workflows::restartable_engine(reopen()?)?;
        probe::arm_first_step();
        probe::kill_at(Some(history), false);
        let execute_start = Instant::now();
        execute_until_killed(&engine, &id).await?;
        let (first, _) = probe::first_step().ok_or("the first new step was not observed")?;
        to_first.push(millis(first - start));
        execute_to_first.push(millis(first - execute_start));
        drop(engine);
    }
    probe::kill_at(None, false);
    let resume_median = percentile(&mut to_first, 50.0);
    let what = match kind {
        StoreKind::Memory => "new engine -> first new step (in-process, median)",
        StoreKind::Sqlite | StoreKind::SqliteNormal => {
            "reopen file + new engine -> first new step (in-process, median)"
        }
        StoreKind::Postgres => {
            "new store (pool) + new engine -> first new step (in-process, median)"
        }
    };
    let mut metric = Metric::new(label, store_name, what, resume_median, "ms");
    if kind == StoreKind::Memory && history >= 10_000 {
        metric = metric.goal(Goal::AtMost(20.0));
    }
    out.metrics.push(metric);
    let execute_median = percentile(&mut execute_to_first, 50.0);
    out.metrics.push(Metric::new(
        label,
        store_name,
        "  of which: execute() -> first new step (median)",
        execute_median,
        "ms",
    ));

    // The first part of every resume, alone: reading the log (and, for SQLite, decoding
    // its rows and JSON payloads) on a freshly opened store.
    let mut reads = Vec::new();
    let mut events = 0;
    for _ in 0..sizes.w3_resumes.max(1) {
        let store = reopen()?;
        let start = Instant::now();
        events = store.events(&id).await?.len();
        reads.push(millis(start.elapsed()));
    }
    let read_median = percentile(&mut reads, 50.0);
    out.metrics.push(Metric::new(
        label,
        store_name,
        &format!("    of which: store.events() ({events} events), median"),
        read_median,
        "ms",
    ));
    out.metrics.push(Metric::new(
        label,
        store_name,
        "    of which: the rest (index the history, replay the body)",
        execute_median - read_median,
        "ms",
    ));
    out.metrics.push(Metric::new(
        label,
        store_name,
        "replay cost per recorded step (execute -> first new step / history)",
        execute_median * 1e3 / f64::from(history),
        "µs",
    ));

    match kind {
        StoreKind::Memory => {
            let engine = workflows::restartable_engine(reopen()?)?;
            probe::arm_first_step();
            let start = Instant::now();
            let execution = engine.execute(&id).await?;
            let done = start.elapsed();
            check_resumed(&execution, history, after)?;
            let (first, _) = probe::first_step().ok_or("the first new step was not observed")?;
            out.metrics.push(Metric::new(
                label,
                store_name,
                &format!("new engine -> completion ({after} new steps)"),
                millis(done),
                "ms",
            ));
            out.notes.push(format!(
                "{label}/{store_name}: final resume replayed {} and executed {} steps; first new step after {:.2} ms",
                execution.replayed,
                execution.executed,
                millis(first - start)
            ));
        }
        StoreKind::Sqlite | StoreKind::SqliteNormal | StoreKind::Postgres => {
            let resumed = run_resumer(&restarting, &id)?;
            check_resumed_counts(
                resumed.replayed,
                resumed.executed,
                &resumed.outcome,
                history,
                after,
            )?;
            let ms = |from: u64, to: u64| to.saturating_sub(from) as f64 / 1e3;
            out.metrics.push(
                Metric::new(
                    label,
                    store_name,
                    "restart (spawn new process) -> first new step",
                    ms(resumed.spawned_us, resumed.first_step_us),
                    "ms",
                )
                .goal(Goal::AtMost(50.0))
                .reference(REF_W3),
            );
            out.metrics.push(Metric::new(
                label,
                store_name,
                "  of which: process start -> store open + engine built",
                ms(resumed.spawned_us, resumed.opened_us),
                "ms",
            ));
            out.metrics.push(Metric::new(
                label,
                store_name,
                "  of which: execute() -> first new step (cold process)",
                ms(resumed.execute_us, resumed.first_step_us),
                "ms",
            ));
            out.metrics.push(Metric::new(
                label,
                store_name,
                &format!("restart -> completion ({after} new steps)"),
                ms(resumed.spawned_us, resumed.completed_us),
                "ms",
            ));
        }
    }
    Ok(())
}

fn check_resumed(execution: &reprise::Execution, history: u32, after: u32) -> Result<(), BoxError> {
    let outcome = match &execution.outcome {
        RunOutcome::Completed(_) => "completed".to_owned(),
        other => format!("{other:?}"),
    };
    check_resumed_counts(
        execution.replayed,
        execution.executed,
        &outcome,
        history,
        after,
    )
}

fn check_resumed_counts(
    replayed: u64,
    executed: u64,
    outcome: &str,
    history: u32,
    after: u32,
) -> Result<(), BoxError> {
    if outcome != "completed" || replayed != u64::from(history) || executed != u64::from(after) {
        return Err(format!(
            "resume: expected a completed run with {history} replayed and {after} executed steps, \
             got {outcome} with {replayed} replayed and {executed} executed"
        )
        .into());
    }
    Ok(())
}

/// Executes run `id` until a step reaches the probe's kill point, then drops the execution.
async fn execute_until_killed(engine: &Engine, id: &RunId) -> Result<(), BoxError> {
    let killed = probe::killed().notified();
    tokio::select! {
        result = engine.execute(id) => Err(format!(
            "run {id} ended before its kill point: {:?}",
            result.map(|e| e.outcome)
        )
        .into()),
        () = killed => Ok(()),
    }
}

/// Runs `reprise-bench --internal victim` on run `id` of `db` and SIGKILLs it when step
/// `kill_at` starts.
fn run_victim(store: &StoreSpec, id: &RunId, kill_at: u32) -> Result<(), BoxError> {
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "--internal",
            "victim",
            "--run",
            id.as_str(),
            "--kill-at",
            &kill_at.to_string(),
        ])
        .args(store.args())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or("no stdout from the victim process")?;
    let mut reached = false;
    for line in BufReader::new(stdout).lines() {
        if line? == probe::KILL_LINE {
            reached = true;
            break;
        }
    }
    child.kill()?; // SIGKILL
    let status = child.wait()?;
    if !reached {
        return Err(format!("the victim process ended ({status}) before its kill point").into());
    }
    Ok(())
}

/// What `reprise-bench --internal resume` reports (Unix µs timestamps).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Resumed {
    /// Just before the parent spawned the process (filled in by the parent).
    #[serde(default)]
    pub(crate) spawned_us: u64,
    /// First thing in `main`.
    pub(crate) main_us: u64,
    /// Store opened, engine built.
    pub(crate) opened_us: u64,
    /// `execute` called.
    pub(crate) execute_us: u64,
    /// First live step ran.
    pub(crate) first_step_us: u64,
    /// `execute` returned.
    pub(crate) completed_us: u64,
    /// Steps replayed.
    pub(crate) replayed: u64,
    /// Steps executed.
    pub(crate) executed: u64,
    /// `completed`, or the outcome's debug text.
    pub(crate) outcome: String,
    /// VmHWM of the resuming process, MiB.
    pub(crate) peak_rss_mib: f64,
}

fn run_resumer(store: &StoreSpec, id: &RunId) -> Result<Resumed, BoxError> {
    let spawned_us = probe::unix_micros();
    let output = Command::new(std::env::current_exe()?)
        .args(["--internal", "resume", "--run", id.as_str()])
        .args(store.args())
        .stderr(Stdio::inherit())
        .output()?;
    if !output.status.success() {
        return Err(format!("the resuming process failed: {}", output.status).into());
    }
    let mut resumed: Resumed = serde_json::from_slice(&output.stdout)?;
    resumed.spawned_us = spawned_us;
    Ok(resumed)
}

/// `--internal victim`: executes run `id` of `db`; step `kill_at` prints the kill line and
/// hangs until the parent kills this process.
pub(crate) fn victim(store: &StoreSpec, id: &RunId, kill_at: u32) -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let engine = workflows::restartable_engine(store.open()?)?;
        probe::kill_at(Some(kill_at), true);
        let execution = engine.execute(id).await?;
        Err(format!(
            "the victim run ended before its kill point: {:?}",
            execution.outcome
        )
        .into())
    })
}

/// `--internal resume`: a fresh process resumes run `id` of `db` to completion and prints
/// a [`Resumed`] as JSON.
pub(crate) fn resume(store: StoreSpec, id: RunId, main_us: u64) -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut resumed = runtime.block_on(async move {
        let engine = workflows::restartable_engine(store.open()?)?;
        let opened_us = probe::unix_micros();
        probe::arm_first_step();
        let execute_us = probe::unix_micros();
        let execution = engine.execute(&id).await?;
        let completed_us = probe::unix_micros();
        let (_, first_step_us) = probe::first_step().unwrap_or((Instant::now(), 0));
        Ok::<_, BoxError>(Resumed {
            spawned_us: 0,
            main_us,
            opened_us,
            execute_us,
            first_step_us,
            completed_us,
            replayed: execution.replayed,
            executed: execution.executed,
            outcome: match execution.outcome {
                RunOutcome::Completed(_) => "completed".to_owned(),
                other => format!("{other:?}"),
            },
            peak_rss_mib: 0.0,
        })
    })?;
    drop(runtime);
    resumed.peak_rss_mib = crate::system::peak_rss_mib();
    println!("{}", serde_json::to_string(&resumed)?);
    Ok(())
}
