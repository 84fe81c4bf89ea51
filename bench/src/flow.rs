//! The cost of flow control (DESIGN "Performance": "observability and flow control cost
//! little; an unconfigured queue costs nothing measurable"): W2 executed by one
//! [`Worker`] (admission into a queue happens in `Store::claim`, which `engine.drive`
//! bypasses), three ways, each in its own job:
//!
//! - `w2-worker`: the runs in no queue (the baseline, W2 run the same way);
//! - `w2-queue`: every run in the queue `bench` with `key_concurrency` 10, its key one of
//!   `--queue-keys` keys (run `i` gets key `k{i mod keys}`), so every claim checks the
//!   per-key bound; with 100 keys and 1,000 runs each key holds exactly 10 runs, so the
//!   bound is reached but never holds a run back; with fewer keys it does (4 keys: at
//!   most 40 runs at once);
//! - `w2-rate`: every run in the queue `bench-rate` with a queue-wide sliding-window rate
//!   limit of `--rate-limit` admissions per `--rate-period-ms` (default: as many as there
//!   are runs per second, so every claim counts the window but the limit does not bind
//!   within a W2 of up to a second);
//! - `w2-step-rate`: every run in the queue `bench-step-rate` with a queue-wide step rate
//!   limit of as many step attempts per second as the W2 has steps in all, so every live
//!   step takes a permit from the store (`Store::take_step_permit`) but none ever waits:
//!   the cost of the permit itself.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use reprise::event::{RunFilter, RunStatus};
use reprise::queue::Queue;
use reprise::store::SharedStore;
use reprise::{StartOptions, Worker, WorkerOptions};
use tokio::sync::Notify;

use crate::BoxError;
use crate::report::Metric;
use crate::system::cpu_seconds;
use crate::workflows;
use crate::workloads::{Out, Sizes, StoreKind, open_store};

/// How the runs of a flow-control W2 are queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    /// In no queue (the baseline).
    None,
    /// In a queue with per-key concurrency 10.
    KeyConcurrency,
    /// In a queue with a queue-wide rate limit.
    Rate,
    /// In a queue with a step rate limit that does not bind.
    StepRate,
}

impl Flow {
    /// The workload's name in reports.
    pub(crate) fn workload(self) -> &'static str {
        match self {
            Flow::None => "w2-worker",
            Flow::KeyConcurrency => "w2-queue",
            Flow::Rate => "w2-rate",
            Flow::StepRate => "w2-step-rate",
        }
    }
}

/// Per-key concurrency of the `w2-queue` workload's queue.
const KEY_CONCURRENCY: u32 = 10;

/// Slots of the worker (as in the multi-worker W2).
const SLOTS: usize = 64;

/// How a worker looks for due runs when it has free slots and was not woken.
const POLL: Duration = Duration::from_millis(20);

/// The queue of `flow` (none for the baseline).
fn queue(flow: Flow, sizes: &Sizes) -> Option<Queue> {
    match flow {
        Flow::None => None,
        Flow::KeyConcurrency => Some(Queue::new("bench").key_concurrency(KEY_CONCURRENCY)),
        Flow::Rate => Some(Queue::new("bench-rate").rate_limit(
            sizes.rate_limit.max(1),
            Duration::from_millis(sizes.rate_period_ms.max(1)),
        )),
        // As many permits per window as the W2 takes in all: never binds.
        Flow::StepRate => Some(Queue::new("bench-step-rate").step_rate_limit(
            sizes.w2_runs.saturating_mul(sizes.w2_steps).max(1),
            Duration::from_secs(1),
        )),
    }
}

/// The start options of run `i` under `flow`.
fn options(flow: Flow, queue: Option<&Queue>, i: u32, keys: u32) -> StartOptions {
    match (flow, queue) {
        (Flow::KeyConcurrency, Some(q)) => StartOptions::new()
            .queue(q.name.clone())
            .queue_key(format!("k{}", i % keys.max(1))),
        (Flow::Rate | Flow::StepRate, Some(q)) => StartOptions::new().queue(q.name.clone()),
        _ => StartOptions::new(),
    }
}

/// W2 (`w2_runs` × `w2_steps`) under `flow`, executed by one [`Worker`] with 64 slots on
/// one engine: the runs are created concurrently, then the worker claims and executes
/// them until every run has ended.
pub(crate) async fn w2_flow(
    kind: StoreKind,
    dir: &Path,
    flow: Flow,
    sizes: &Sizes,
    out: &mut Out,
) -> Result<(), BoxError> {
    let store = kind.name();
    let workload = flow.workload();
    let queue = queue(flow, sizes);
    let engine = workflows::engine_with_queues(
        open_store(kind, dir, &workload.replace('-', "_"))?,
        queue.iter().cloned().collect(),
    )?;
    let (runs, steps) = (sizes.w2_runs, sizes.w2_steps);

    let created_at = Instant::now();
    let mut starts = tokio::task::JoinSet::new();
    for i in 0..runs {
        let engine = engine.clone();
        let options = options(flow, queue.as_ref(), i, sizes.queue_keys);
        starts.spawn(async move { workflows::start_with(&engine, steps, options).await });
    }
    let mut errors = Vec::new();
    while let Some(joined) = starts.join_next().await {
        if let Err(e) = joined? {
            errors.push(format!("start: {e}"));
        }
    }
    let create = created_at.elapsed();

    let ended = Arc::new(AtomicU32::new(0));
    let lagged = Arc::new(AtomicBool::new(false));
    let all_ended = Arc::new(Notify::new());
    let mut transitions = engine.subscribe();
    let counter = {
        let (ended, all_ended, lagged) = (ended.clone(), all_ended.clone(), lagged.clone());
        tokio::spawn(async move {
            loop {
                match transitions.recv().await {
                    Ok(t) if t.status.is_terminal() => {
                        if ended.fetch_add(1, Ordering::AcqRel) + 1 >= runs {
                            all_ended.notify_one();
                        }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        lagged.store(true, Ordering::Release);
                        all_ended.notify_one();
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        })
    };
    let cpu = cpu_seconds();
    let driven_at = Instant::now();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let worker = Worker::new(
        &engine,
        WorkerOptions {
            concurrency: SLOTS,
            poll_interval: POLL,
            shutdown_grace: Duration::from_secs(30),
            ..WorkerOptions::default()
        },
    );
    let running = tokio::spawn(async move {
        worker
            .run(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await
    });
    // Every run ended: counted from the transitions and confirmed in the store; after a
    // lagged receiver (transitions lost) the store is polled every 50 ms instead.
    let checker = engine.store().clone();
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
    counter.abort();
    let report = running.await??;
    let completed = count(&checker, RunStatus::Completed).await?;
    let total_steps = f64::from(runs) * f64::from(steps);
    crate::workloads::w2_phases(
        out,
        workload,
        store,
        total_steps,
        (create, drive),
        f64::from(runs - completed.min(runs)),
        None,
    );
    out.metrics.push(Metric::new(
        workload,
        store,
        "CPU time per step, all threads (10 ms ticks)",
        cpu * 1e6 / total_steps,
        "µs",
    ));
    let how = match flow {
        Flow::None => "in no queue".to_owned(),
        Flow::KeyConcurrency => format!(
            "in queue `bench` (key_concurrency {KEY_CONCURRENCY}, {} keys)",
            sizes.queue_keys.max(1)
        ),
        Flow::Rate => format!(
            "in queue `bench-rate` (rate limit {} per {} ms)",
            sizes.rate_limit.max(1),
            sizes.rate_period_ms.max(1)
        ),
        Flow::StepRate => format!(
            "in queue `bench-step-rate` (step rate limit {} per 1 s: every step takes a \
             permit, none waits)",
            runs.saturating_mul(steps).max(1)
        ),
    };
    out.notes.push(format!(
        "{workload}/{store}: {runs} runs x {steps} steps {how}, executed by one Worker \
         ({SLOTS} slots); {completed} completed; the worker reported {} completions and {} \
         errors",
        report.completed, report.errors
    ));
    if lagged.load(Ordering::Acquire) {
        out.notes.push(format!(
            "{workload}/{store}: a transition receiver lagged; the end was found by polling \
             (±50 ms)"
        ));
    }
    for error in errors.iter().take(5) {
        out.notes.push(format!("{workload}/{store}: {error}"));
    }
    drop(engine);
    Ok(())
}

/// Runs that have not ended (counted in the store).
async fn unfinished(store: &SharedStore) -> Result<u32, BoxError> {
    let mut n = 0;
    for status in [RunStatus::Queued, RunStatus::Running] {
        n += count(store, status).await?;
    }
    Ok(n)
}

/// Runs with `status`.
async fn count(store: &SharedStore, status: RunStatus) -> Result<u32, BoxError> {
    let runs = store
        .list_runs(&RunFilter {
            status: Some(status),
            ..RunFilter::default()
        })
        .await?;
    Ok(u32::try_from(runs.len()).unwrap_or(u32::MAX))
}
