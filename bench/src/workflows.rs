//! The benchmark workflow: `n` sequential no-op steps, each returning a small JSON value
//! derived from its input, so that the engine and the store are what is measured.
//!
//! The step also hosts the [`probe`]: it notes when the first live step of an execution
//! ran (replayed steps never call the action, so the first call after a resume *is* the
//! first new step) and can stop the run dead at a chosen step, the way a crash would.

use reprise::prelude::*;

/// Input of the benchmark workflow.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Sequence {
    /// How many steps to run.
    pub(crate) steps: u32,
}

/// Input of one step.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Tick {
    /// The step's index in the run.
    pub(crate) i: u32,
}

/// Output of one step: a small value derived from the input.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Tock {
    /// The step's index in the run.
    pub(crate) i: u32,
    /// `2 × i`.
    pub(crate) twice: u64,
}

/// Output of the benchmark workflow.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Total {
    /// Steps run.
    pub(crate) steps: u32,
    /// Sum of the steps' `twice`.
    pub(crate) sum: u64,
}

/// A no-op step: returns `{i, twice: 2i}`.
#[action(slug = "bench-step")]
async fn bench_step(input: Tick) -> Result<Tock, ActionError> {
    probe::on_step(input.i).await;
    Ok(Tock {
        i: input.i,
        twice: u64::from(input.i) * 2,
    })
}

/// Runs `steps` no-op steps one after the other.
#[workflow(slug = "bench-sequence", max_attempts = 1)]
async fn bench_sequence(input: Sequence) -> Result<Total, WorkflowError> {
    let mut sum = 0u64;
    for i in 0..input.steps {
        let out = bench_step.run(Tick { i }).await?;
        sum = sum.wrapping_add(out.twice);
    }
    Ok(Total {
        steps: input.steps,
        sum,
    })
}

/// Runs one step, then sleeps for an hour (the sleeping-runs workload).
#[workflow(slug = "bench-sleeper", max_attempts = 1)]
async fn bench_sleeper(ctx: Ctx, input: Tick) -> Result<Tock, WorkflowError> {
    let out = bench_step.run(input).await?;
    ctx.sleep(std::time::Duration::from_secs(3600)).await?;
    Ok(out)
}

/// An engine over `store` with the benchmark workflows registered.
pub(crate) fn engine(store: reprise::store::SharedStore) -> Result<Engine, reprise::EngineError> {
    Engine::builder()
        .store(store)
        .register(bench_sequence)
        .register(bench_sleeper)
        .register(bench_step)
        .build()
}

/// An engine as [`engine`] that also knows the flow-control `queues` (the `w2-queue` and
/// `w2-rate` workloads): a worker claims runs of a queue only if its engine knows it.
pub(crate) fn engine_with_queues(
    store: reprise::store::SharedStore,
    queues: Vec<reprise::queue::Queue>,
) -> Result<Engine, reprise::EngineError> {
    queues
        .into_iter()
        .fold(Engine::builder().store(store), |builder, queue| {
            builder.queue(queue)
        })
        .register(bench_sequence)
        .register(bench_sleeper)
        .register(bench_step)
        .build()
}

/// An engine as [`engine`], holding leases under one fixed owner id: W3's processes are
/// one worker restarting (DESIGN's "killed, then resumed in a new process"), and a
/// restarted worker with a stable id takes back its own leases at once instead of waiting
/// for them to expire.
pub(crate) fn restartable_engine(
    store: reprise::store::SharedStore,
) -> Result<Engine, reprise::EngineError> {
    Engine::builder()
        .owner_id("reprise-bench-w3")
        .store(store)
        .register(bench_sequence)
        .register(bench_sleeper)
        .register(bench_step)
        .build()
}

/// Starts a run that sleeps for an hour after one step.
pub(crate) async fn start_sleeper(
    engine: &Engine,
    i: u32,
) -> Result<reprise::RunId, reprise::EngineError> {
    engine.start(&bench_sleeper, Tick { i }).await
}

/// Starts a run of `steps` steps.
pub(crate) async fn start(
    engine: &Engine,
    steps: u32,
) -> Result<reprise::RunId, reprise::EngineError> {
    engine.start(&bench_sequence, Sequence { steps }).await
}

/// Starts a run of `steps` steps with `options` (a queue, its key).
pub(crate) async fn start_with(
    engine: &Engine,
    steps: u32,
    options: reprise::StartOptions,
) -> Result<reprise::RunId, reprise::EngineError> {
    let input = serde_json::to_value(Sequence { steps })?;
    let (id, _) = engine
        .start_with("bench-sequence", input, reprise::Trigger::Code, options)
        .await?;
    Ok(id)
}

/// Observation and fault injection inside the step (process-wide, one run at a time).
pub(crate) mod probe {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::{Mutex, OnceLock};
    use std::time::{Instant, SystemTime, UNIX_EPOCH};

    use tokio::sync::Notify;

    /// The line a victim process prints when it reaches its kill point.
    pub(crate) const KILL_LINE: &str = "REPRISE_BENCH_KILL_POINT";

    static ARMED: AtomicBool = AtomicBool::new(false);
    static FIRST: Mutex<Option<(Instant, u64)>> = Mutex::new(None);
    static KILL_AT: AtomicU32 = AtomicU32::new(u32::MAX);
    static KILL_PRINTS: AtomicBool = AtomicBool::new(false);
    static KILLED: OnceLock<Notify> = OnceLock::new();

    /// Microseconds since the Unix epoch (comparable across processes).
    pub(crate) fn unix_micros() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    /// Forget the last first-step time and note the next one.
    pub(crate) fn arm_first_step() {
        *FIRST.lock().unwrap_or_else(|p| p.into_inner()) = None;
        ARMED.store(true, Ordering::Release);
    }

    /// When the first step since [`arm_first_step`] ran: monotonic and Unix µs.
    pub(crate) fn first_step() -> Option<(Instant, u64)> {
        *FIRST.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes step `at` hang forever (after notifying [`killed`], and printing
    /// [`KILL_LINE`] to stdout when `print`); `None` disarms.
    pub(crate) fn kill_at(at: Option<u32>, print: bool) {
        KILL_PRINTS.store(print, Ordering::Release);
        KILL_AT.store(at.unwrap_or(u32::MAX), Ordering::Release);
    }

    /// Notified when a step reaches the kill point.
    pub(crate) fn killed() -> &'static Notify {
        KILLED.get_or_init(Notify::new)
    }

    /// Called by every live step with its index.
    pub(super) async fn on_step(i: u32) {
        if ARMED.load(Ordering::Relaxed) && ARMED.swap(false, Ordering::AcqRel) {
            *FIRST.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((Instant::now(), unix_micros()));
        }
        if i == KILL_AT.load(Ordering::Relaxed) {
            if KILL_PRINTS.load(Ordering::Acquire) {
                let mut out = std::io::stdout().lock();
                // If stdout is gone the parent is gone too; hanging is all that is left.
                let _ = writeln!(out, "{KILL_LINE}");
                let _ = out.flush();
            }
            killed().notify_one();
            std::future::pending::<()>().await;
        }
    }
}
