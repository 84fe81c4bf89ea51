//! Workloads run by [`reprise::Worker`]s rather than by `engine.drive`: W2 with several
//! workers sharing one Postgres database (DESIGN: "W2 ≥ 20,000 steps/s with 4 workers"),
//! and the sleeping-runs memory figure ("100,000 sleeping runs hold no worker memory").

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use reprise::event::{RunFilter, RunStatus};
use reprise::store::SharedStore;
use reprise::{Engine, RunOutcome, Worker, WorkerOptions};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::BoxError;
use crate::report::{Goal, Metric};
use crate::system::{cpu_seconds, rss_mib};
use crate::workflows;
use crate::workloads::{Out, Sizes, StoreKind, StoreSpec};

/// Slots per worker (`REPRISE_BENCH_SLOTS` overrides, for experiments).
fn worker_concurrency() -> usize {
    std::env::var("REPRISE_BENCH_SLOTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64)
}

/// How a worker looks for due runs when it has free slots and was not woken.
const POLL: Duration = Duration::from_millis(20);

/// W2 with `workers` workers: `w2_runs` runs × `w2_steps` steps are enqueued, then
/// `workers` [`Worker`]s, each with its own engine and connection pool on the same
/// database, claim and execute them until every run has ended.
pub(crate) async fn w2_workers(
    kind: StoreKind,
    workers: usize,
    sizes: &Sizes,
    out: &mut Out,
) -> Result<(), BoxError> {
    if kind != StoreKind::Postgres {
        return Err("w2 with several workers runs against postgres only".into());
    }
    let store = kind.name();
    let schema = crate::pg::fresh_schema("w2");
    let engines: Vec<Engine> = (0..workers)
        .map(|_| Ok(workflows::engine(crate::pg::store(&schema)?)?))
        .collect::<Result<_, BoxError>>()?;
    let (runs, steps) = (sizes.w2_runs, sizes.w2_steps);

    let created_at = Instant::now();
    let mut starts = tokio::task::JoinSet::new();
    for i in 0..runs {
        let engine = engines[i as usize % workers].clone();
        starts.spawn(async move { workflows::start(&engine, steps).await });
    }
    let mut errors = Vec::new();
    while let Some(joined) = starts.join_next().await {
        if let Err(e) = joined? {
            errors.push(format!("start: {e}"));
        }
    }
    let create = created_at.elapsed();

    let ended = Arc::new(AtomicU32::new(0));
    let lagged = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let all_ended = Arc::new(Notify::new());
    let cpu = cpu_seconds();
    let driven_at = Instant::now();
    let (stop, _) = tokio::sync::watch::channel(false);
    let mut fleet = tokio::task::JoinSet::new();
    let mut counters = tokio::task::JoinSet::new();
    for engine in &engines {
        let mut transitions = engine.subscribe();
        let (ended, all_ended, lagged) = (ended.clone(), all_ended.clone(), lagged.clone());
        counters.spawn(async move {
            loop {
                match transitions.recv().await {
                    Ok(t) if t.status.is_terminal() => {
                        if ended.fetch_add(1, Ordering::AcqRel) + 1 >= runs {
                            all_ended.notify_one();
                        }
                    }
                    Ok(_) => {}
                    // The count is incomplete now: the store is polled instead.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        lagged.store(true, Ordering::Release);
                        all_ended.notify_one();
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        let mut stopped = stop.subscribe();
        let worker = Worker::new(
            engine,
            WorkerOptions {
                concurrency: worker_concurrency(),
                poll_interval: POLL,
                shutdown_grace: Duration::from_secs(30),
                ..WorkerOptions::default()
            },
        );
        fleet.spawn(async move {
            worker
                .run(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await
        });
    }
    // Wait until every run ended: counted from the transitions and confirmed in the store;
    // if a receiver lagged (transitions lost), the store is polled every 50 ms instead.
    let checker = engines[0].store().clone();
    loop {
        let poll = if lagged.load(Ordering::Acquire) {
            Duration::from_millis(50)
        } else {
            Duration::from_secs(2)
        };
        tokio::select! {
            () = all_ended.notified() => {}
            () = tokio::time::sleep(poll) => {}
        }
        if unfinished(&checker).await? == 0 {
            break;
        }
    }
    let drive = driven_at.elapsed();
    let cpu = cpu_seconds() - cpu;
    let _ = stop.send(true);
    let mut completed_by_workers = 0u64;
    let mut worker_errors = 0u64;
    counters.abort_all();
    while let Some(joined) = fleet.join_next().await {
        let report = joined??;
        completed_by_workers += report.completed;
        worker_errors += report.errors;
    }
    let completed = checker
        .list_runs(&RunFilter {
            status: Some(RunStatus::Completed),
            ..RunFilter::default()
        })
        .await?
        .len() as u32;
    let total_steps = f64::from(runs) * f64::from(steps);
    crate::workloads::w2_phases(
        out,
        "w2",
        store,
        total_steps,
        (create, drive),
        f64::from(runs - completed.min(runs)),
        Some(20_000.0),
    );
    out.metrics.push(Metric::new(
        "w2",
        store,
        "CPU time per step, this process, all threads (10 ms ticks)",
        cpu * 1e6 / total_steps,
        "µs",
    ));
    if lagged.load(Ordering::Acquire) {
        out.notes.push(format!(
            "w2/{store}: a transition receiver lagged; the end was found by polling (±50 ms)"
        ));
    }
    out.notes.push(format!(
        "w2/{store}: {workers} workers ({} slots, own engine and pool of {} \
         connections each) on one schema; {completed} of {runs} runs completed; the workers \
         reported {completed_by_workers} completions and {worker_errors} errors before they \
         were stopped; the Postgres server's CPU is not in the CPU figure",
        worker_concurrency(),
        crate::pg::pool_size()
    ));
    for error in errors.iter().take(5) {
        out.notes.push(format!("w2/{store}: {error}"));
    }
    Ok(())
}

/// Runs that have not ended (counted in the store).
async fn unfinished(store: &SharedStore) -> Result<usize, BoxError> {
    let mut n = 0;
    for status in [RunStatus::Queued, RunStatus::Running] {
        n += store
            .list_runs(&RunFilter {
                status: Some(status),
                ..RunFilter::default()
            })
            .await?
            .len();
    }
    Ok(n)
}

/// What `reprise-bench --internal idle-worker` reports.
#[derive(Debug, Deserialize, Serialize)]
pub(crate) struct IdleWorker {
    /// VmRSS after the worker ran for a while, MiB.
    rss_mib: f64,
    /// VmHWM, MiB.
    peak_rss_mib: f64,
    /// Runs the worker executed (none is due: must be 0).
    executed: u64,
    /// Runs in the engine's hot-run cache at the end.
    hot_runs: usize,
}

/// Sleeping runs: `sleepers` runs each execute one step and sleep for an hour. Then a
/// fresh process opens the store and runs a worker for a few seconds, once on an empty
/// store and once on the one with the sleeping runs: the difference of their resident
/// memory is what the sleeping runs cost a worker.
pub(crate) async fn sleepers(
    kind: StoreKind,
    dir: &Path,
    sizes: &Sizes,
    out: &mut Out,
) -> Result<(), BoxError> {
    if !matches!(kind, StoreKind::Sqlite | StoreKind::Postgres) {
        return Err(
            "sleepers runs against sqlite and postgres (the memory store keeps every log in \
             the process by design)"
                .into(),
        );
    }
    let store = kind.name();
    let n = sizes.sleepers;
    let (full, empty) = match kind {
        StoreKind::Postgres => (
            StoreSpec::Schema(crate::pg::fresh_schema("sleepers")),
            StoreSpec::Schema(crate::pg::fresh_schema("sleepers_empty")),
        ),
        _ => (
            StoreSpec::File(dir.join("sleepers.db")),
            StoreSpec::File(dir.join("sleepers-empty.db")),
        ),
    };
    let engine = workflows::engine(full.open()?)?;
    // The empty store, migrated, for the baseline.
    workflows::engine(empty.open()?)?
        .store()
        .next_wake()
        .await?;

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut suspended = 0u32;
    let mut errors = Vec::new();
    let mut next = 0u32;
    let concurrency = 256;
    while next < n || !tasks.is_empty() {
        while next < n && tasks.len() < concurrency {
            let engine = engine.clone();
            let i = next;
            tasks.spawn(async move {
                let id = workflows::start_sleeper(&engine, i).await?;
                engine.execute(&id).await
            });
            next += 1;
        }
        if let Some(joined) = tasks.join_next().await {
            match joined? {
                Ok(e) if matches!(e.outcome, RunOutcome::Suspended(_)) => suspended += 1,
                Ok(e) => errors.push(format!("{}: {:?}", e.run_id, e.outcome)),
                Err(e) => errors.push(e.to_string()),
            }
        }
    }
    let populate = started.elapsed();
    let hot = engine.hot_runs();
    drop(engine);

    let baseline = run_idle_worker(&empty)?;
    let loaded = run_idle_worker(&full)?;
    out.metrics.push(Metric::new(
        "sleepers",
        store,
        "sleeping runs created (start + execute to the sleep), per second",
        f64::from(suspended) / populate.as_secs_f64(),
        "runs/s",
    ));
    out.metrics.push(Metric::new(
        "sleepers",
        store,
        "idle worker RSS, empty store",
        baseline.rss_mib,
        "MiB",
    ));
    out.metrics.push(Metric::new(
        "sleepers",
        store,
        &format!("idle worker RSS, {n} sleeping runs"),
        loaded.rss_mib,
        "MiB",
    ));
    out.metrics.push(
        Metric::new(
            "sleepers",
            store,
            "worker memory held by the sleeping runs (RSS difference)",
            loaded.rss_mib - baseline.rss_mib,
            "MiB",
        )
        .goal(Goal::AtMost(5.0)),
    );
    out.metrics.push(Metric::new(
        "sleepers",
        store,
        "idle worker peak RSS, sleeping runs",
        loaded.peak_rss_mib,
        "MiB",
    ));
    out.metrics.push(
        Metric::new(
            "sleepers",
            store,
            "runs in the hot-run cache after they all slept",
            hot as f64 + loaded.hot_runs as f64,
            "runs",
        )
        .goal(Goal::AtMost(0.0)),
    );
    out.notes.push(format!(
        "sleepers/{store}: {suspended} of {n} runs asleep for 1 h ({} errors); a fresh process \
         ran a worker (16 slots, 100 ms poll) for 3 s on each store and executed {} runs on \
         the loaded one (none was due)",
        errors.len(),
        loaded.executed
    ));
    for error in errors.iter().take(5) {
        out.notes.push(format!("sleepers/{store}: {error}"));
    }
    Ok(())
}

fn run_idle_worker(spec: &StoreSpec) -> Result<IdleWorker, BoxError> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args(["--internal", "idle-worker"])
        .args(spec.args());
    let output = command.output()?;
    if !output.status.success() {
        return Err(format!(
            "idle worker failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// `--internal idle-worker`: opens the store, runs a worker for 3 s, prints [`IdleWorker`].
pub(crate) fn idle_worker(db: Option<&Path>, schema: Option<&str>) -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        let spec = match (db, schema) {
            (Some(db), _) => StoreSpec::File(db.to_path_buf()),
            (None, Some(schema)) => StoreSpec::Schema(schema.to_owned()),
            (None, None) => return Err::<IdleWorker, BoxError>("--db or --schema".into()),
        };
        let engine = workflows::engine(spec.open()?)?;
        let worker = Worker::new(
            &engine,
            WorkerOptions {
                concurrency: 16,
                poll_interval: Duration::from_millis(100),
                shutdown_grace: Duration::from_secs(5),
                ..WorkerOptions::default()
            },
        );
        let report = worker
            .run(tokio::time::sleep(Duration::from_secs(3)))
            .await?;
        Ok(IdleWorker {
            rss_mib: rss_mib(),
            peak_rss_mib: crate::system::peak_rss_mib(),
            executed: report.completed + report.suspended + report.failed,
            hot_runs: engine.hot_runs(),
        })
    })?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
