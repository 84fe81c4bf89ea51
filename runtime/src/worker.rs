//! The [`Worker`]: claims due runs with leases and executes them as tokio tasks
//! (DESIGN "Running"). It is also the scheduler of durable sleeps, hook timeouts and
//! run-level retries: a run whose `wake_at` has come is due, and claimed like any other.
//!
//! Any number of workers, in any number of processes sharing one store, may run at once:
//! a run is claimed by one worker only ([`crate::store::Store::claim_due`] is atomic),
//! the claim is a lease the worker renews while it executes the run, and every append
//! carries the lease's fencing token, so a worker that lost its lease (paused too long,
//! partitioned away) can never write to the run again. A worker that dies stops renewing;
//! its runs are claimed by others once their leases expire.
//!
//! No run makes a worker spin. A run this binary cannot execute (its workflow is not
//! registered, its rows do not decode) is put off with exponential backoff and eventually
//! parked as `failed` (see [`crate::EngineBuilder::unexecutable_policy`]); a run whose
//! execution fails with any other engine error (a store failure) keeps its lease until the
//! lease expires, so it is retried one lease duration later, by any worker. Both are
//! logged once per run, not per claim; a failing claim is logged when it starts failing
//! and when it recovers.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::engine::{AfterError, Engine, Execution, RunOutcome};
use crate::error::EngineError;

/// How a [`Worker`] runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerOptions {
    /// The most runs executed at once (default 16; at least 1, see [`Worker::run`]). Each
    /// is a tokio task.
    pub concurrency: usize,
    /// The longest the worker waits before looking for due runs again when nothing woke
    /// it (default 1 s). Runs started, resumed or canceled through this engine wake it at
    /// once; runs made due by another process are noticed within this interval.
    pub poll_interval: Duration,
    /// On shutdown, how long running executions may take to reach their next step
    /// boundary (default 30 s). Past it they are dropped: their leases are released and
    /// their unrecorded steps run again elsewhere (at-least-once, as after a crash).
    pub shutdown_grace: Duration,
    /// Worker routing (`worker --workflows x,y`): claim only runs of these workflows
    /// (slugs registered with the engine). `None` (the default): any workflow.
    pub workflows: Option<Vec<String>>,
    /// Worker routing (`worker --queues a,b`): claim only runs in these queues
    /// ([`crate::queue::DEFAULT_QUEUE`], `default`, names runs in no queue). `None` (the
    /// default): every queue the engine knows, and runs in none.
    pub queues: Option<Vec<String>>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            concurrency: 16,
            poll_interval: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(30),
            workflows: None,
            queues: None,
        }
    }
}

/// How often a worker renews its entry in the store's worker registry, at most: the
/// entry lives for [`HEARTBEAT_TTL_FACTOR`] times this (or the poll interval, if longer).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
/// A worker entry expires after this many missed heartbeats.
const HEARTBEAT_TTL_FACTOR: u32 = 3;

/// What a worker did, returned when it stops.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Executions that ended with the run completed.
    pub completed: u64,
    /// Executions that ended with the run failed for good.
    pub failed: u64,
    /// Executions that ended with the run suspended (sleep, hook, scheduled retry).
    pub suspended: u64,
    /// Executions that ended with the run canceled.
    pub canceled: u64,
    /// Executions that ended with the run paused (`runs pause`, or parked when its
    /// attempts ran out).
    pub paused: u64,
    /// Executions stopped by shutdown and handed back to the queue (or dropped at the
    /// shutdown deadline).
    pub interrupted: u64,
    /// Executions that ended with an engine error (store failure, lost lease, a run this
    /// binary cannot execute and put off); the run stays in the store and is claimed again
    /// later (see the module docs).
    pub errors: u64,
}

/// Claims due runs from the engine's store and executes them; see the module docs.
///
/// ```no_run
/// # async fn demo(engine: reprise::Engine) -> Result<(), reprise::EngineError> {
/// use reprise::{Worker, WorkerOptions};
/// let worker = Worker::new(&engine, WorkerOptions { concurrency: 32, ..Default::default() });
/// let report = worker.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
/// println!("{report:?}");
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Worker {
    engine: Engine,
    options: WorkerOptions,
}

impl Worker {
    /// A worker executing runs of `engine` (its store, registry and lease settings).
    /// The options are checked by [`Worker::run`].
    pub fn new(engine: &Engine, options: WorkerOptions) -> Self {
        Self {
            engine: engine.clone(),
            options,
        }
    }

    /// Runs until `shutdown` completes, then shuts down gracefully: claims nothing more,
    /// stops every execution at its next step boundary (handing the run back to the
    /// queue), waits up to [`WorkerOptions::shutdown_grace`] for them, drops the rest, and
    /// releases all leases. Nothing recorded is lost either way.
    ///
    /// # Errors
    /// [`EngineError::Config`], at once, when [`WorkerOptions::concurrency`] is 0 (the
    /// worker would never run anything) or [`WorkerOptions::poll_interval`] is zero (it
    /// would poll the store in a busy loop). Nothing else: store failures while claiming
    /// are logged and retried after `poll_interval`; failures of single executions are
    /// counted in the report.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<WorkerReport, EngineError> {
        if self.options.concurrency == 0 {
            return Err(EngineError::Config(
                "WorkerOptions::concurrency is 0: the worker would never run anything; use \
                 1 or more (default 16)"
                    .to_owned(),
            ));
        }
        if self.options.poll_interval.is_zero() {
            return Err(EngineError::Config(
                "WorkerOptions::poll_interval is zero: the worker would poll the store in a \
                 busy loop; use at least a few milliseconds (default 1s)"
                    .to_owned(),
            ));
        }
        let routing = self.routing()?;
        let engine = &self.engine;
        let heartbeat_every =
            HEARTBEAT_EVERY.min(self.options.poll_interval.max(Duration::from_millis(100)));
        let registration = crate::queue::WorkerInfo {
            id: format!(
                "{}#{}",
                engine.owner_id(),
                &uuid::Uuid::new_v4().simple().to_string()[..6]
            ),
            registered: engine
                .registry()
                .workflows()
                .map(|w| w.registration.slug.to_owned())
                .collect(),
            routing: routing.clone(),
            queues: engine.queues().iter().map(|q| q.name.clone()).collect(),
            started_at: engine.now(),
            expires_at: engine.now(),
        };
        let mut heartbeat = Heartbeat::new(
            registration,
            heartbeat_every.max(self.options.poll_interval) * HEARTBEAT_TTL_FACTOR,
        );
        let mut next_heartbeat = tokio::time::Instant::now();
        let mut shutdown = pin!(shutdown);
        let mut tasks: JoinSet<Result<Execution, EngineError>> = JoinSet::new();
        let mut report = WorkerReport::default();
        // Whether the last claim failed: its failure is logged once, not every poll.
        let mut claims_failing = false;
        loop {
            if tokio::time::Instant::now() >= next_heartbeat {
                heartbeat.beat(engine).await;
                next_heartbeat = tokio::time::Instant::now() + heartbeat_every;
            }
            // Register interest before looking, so a wake-up in between is not missed.
            let mut woken = pin!(engine.wake().notified());
            woken.as_mut().enable();
            let free = self.options.concurrency.saturating_sub(tasks.len());
            let mut delay = self.options.poll_interval;
            if free > 0 {
                let claimed = self.claim(free, &routing, &mut tasks).await;
                match &claimed {
                    Ok(_) if claims_failing => {
                        tracing::info!("claiming runs works again");
                    }
                    Err(error) if !claims_failing => {
                        tracing::warn!(
                            %error,
                            retry_every = ?self.options.poll_interval,
                            "could not claim runs; retrying until it works"
                        );
                    }
                    _ => {}
                }
                claims_failing = claimed.is_err();
                match claimed {
                    Ok(claimed) if claimed == free => delay = Duration::ZERO,
                    Ok(_) => delay = self.next_delay().await,
                    Err(_) => {}
                }
            }
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    count(&mut report, joined);
                }
                () = &mut woken => {}
                () = tokio::time::sleep(delay), if free > 0 => {}
                () = tokio::time::sleep_until(next_heartbeat) => {}
            }
        }
        heartbeat.stop(engine).await;
        // Graceful shutdown.
        engine.drain_all();
        let deadline = tokio::time::sleep(self.options.shutdown_grace);
        let mut deadline = pin!(deadline);
        while !tasks.is_empty() {
            tokio::select! {
                Some(joined) = tasks.join_next() => count(&mut report, joined),
                () = &mut deadline => {
                    report.interrupted += tasks.len() as u64;
                    // Dropping an execution releases its lease (see `LeaseGuard`).
                    tasks.abort_all();
                    while tasks.join_next().await.is_some() {}
                    break;
                }
            }
        }
        // Runs sleeping in the hot-run cache continue from their log on any worker.
        engine.clear_hot_runs();
        Ok(report)
    }

    /// The worker's routing, checked against the engine.
    ///
    /// # Errors
    /// [`EngineError::Config`] naming a workflow the engine does not register or a queue
    /// it does not know, and what it knows.
    fn routing(&self) -> Result<crate::queue::Routing, EngineError> {
        let engine = &self.engine;
        if let Some(workflows) = &self.options.workflows {
            for slug in workflows {
                if engine.workflow(slug).is_err() {
                    let known: Vec<&str> = engine
                        .registry()
                        .workflows()
                        .map(|w| w.registration.slug)
                        .collect();
                    return Err(EngineError::Config(format!(
                        "the worker is routed to workflow `{slug}`, which this binary does not \
                         register; the workflows are: {}",
                        known.join(", ")
                    )));
                }
            }
        }
        if let Some(queues) = &self.options.queues {
            for name in queues {
                if name != crate::queue::DEFAULT_QUEUE
                    && !engine.queues().iter().any(|q| &q.name == name)
                {
                    let mut known: Vec<&str> = vec![crate::queue::DEFAULT_QUEUE];
                    known.extend(engine.queues().iter().map(|q| q.name.as_str()));
                    return Err(EngineError::Config(format!(
                        "the worker is routed to queue `{name}`, which this engine does not \
                         know; the queues are: {} (configure it with \
                         `Engine::builder().queue(Queue::new(\"{name}\"))`)",
                        known.join(", ")
                    )));
                }
            }
        }
        Ok(crate::queue::Routing {
            workflows: self.options.workflows.clone(),
            queues: self.options.queues.clone(),
        })
    }

    /// Claims up to `limit` due runs and spawns their executions; returns how many.
    async fn claim(
        &self,
        limit: usize,
        routing: &crate::queue::Routing,
        tasks: &mut JoinSet<Result<Execution, EngineError>>,
    ) -> Result<usize, EngineError> {
        let engine = &self.engine;
        let now = engine.now();
        let leases = engine
            .store()
            .claim(&crate::queue::ClaimRequest {
                owner: engine.owner_id(),
                now,
                expires_at: now + engine.lease_delta(),
                limit,
                routing,
                queues: engine.queues(),
                run: None,
            })
            .await?;
        let claimed = leases.len();
        engine.metrics().runs_claimed(claimed);
        for lease in leases {
            let Some(control) = engine.register_control(&lease.run_id) else {
                // This engine executes the run already (an `execute` call of its own).
                continue;
            };
            let engine = engine.clone();
            tasks.spawn(async move {
                let id = lease.run_id.clone();
                let result = engine
                    .execute_leased(lease, control, AfterError::Keep)
                    .await;
                engine.unregister_control(&id);
                match &result {
                    // Logged by the engine, at the first strike and when parked.
                    Err(error) if crate::engine::is_unexecutable(error) => {
                        tracing::debug!(run = %id, %error, "run put off: cannot execute it");
                    }
                    Err(error) => {
                        tracing::warn!(
                            run = %id,
                            %error,
                            "execution stopped; the run is retried when its lease expires"
                        );
                    }
                    Ok(_) => {}
                }
                result
            });
        }
        Ok(claimed)
    }

    /// How long to wait before the next claim: until the earliest wake-up time in the
    /// store, at most `poll_interval`, and at least 20 ms (a due run another worker holds
    /// must not make this one spin).
    async fn next_delay(&self) -> Duration {
        let poll = self.options.poll_interval;
        match self.engine.store().next_wake().await {
            Ok(Some(at)) => (at - self.engine.now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .clamp(
                    Duration::from_millis(20),
                    poll.max(Duration::from_millis(20)),
                ),
            Ok(None) | Err(_) => poll,
        }
    }
}

fn count(
    report: &mut WorkerReport,
    joined: Result<Result<Execution, EngineError>, tokio::task::JoinError>,
) {
    match joined {
        Ok(Ok(execution)) => match execution.outcome {
            RunOutcome::Completed(_) => report.completed += 1,
            RunOutcome::Failed(_) => report.failed += 1,
            RunOutcome::Suspended(_) => report.suspended += 1,
            RunOutcome::Canceled => report.canceled += 1,
            RunOutcome::Interrupted => report.interrupted += 1,
            RunOutcome::Paused => report.paused += 1,
        },
        Ok(Err(_)) => report.errors += 1,
        Err(join_error) if join_error.is_cancelled() => report.interrupted += 1,
        Err(_) => report.errors += 1,
    }
}

/// The worker's entry in the store's worker registry: renewed by [`Heartbeat::beat`],
/// removed by [`Heartbeat::stop`]. A failing heartbeat is logged when it starts failing
/// and when it recovers, not at every beat.
struct Heartbeat {
    info: crate::queue::WorkerInfo,
    ttl: Duration,
    failing: bool,
}

impl Heartbeat {
    fn new(info: crate::queue::WorkerInfo, ttl: Duration) -> Self {
        Self {
            info,
            ttl,
            failing: false,
        }
    }

    async fn beat(&mut self, engine: &Engine) {
        let ttl = chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::MAX);
        self.info.expires_at = engine
            .now()
            .checked_add_signed(ttl)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
        match engine.store().worker_heartbeat(&self.info).await {
            Ok(()) if self.failing => {
                tracing::info!(worker = %self.info.id, "registering the worker works again");
                self.failing = false;
            }
            Err(error) if !self.failing => {
                tracing::warn!(
                    worker = %self.info.id,
                    %error,
                    "could not register the worker in the store; `runs get` may report its \
                     runs as unserved until it works"
                );
                self.failing = true;
            }
            _ => {}
        }
    }

    async fn stop(&self, engine: &Engine) {
        if let Err(error) = engine.store().worker_stopped(&self.info.id).await {
            tracing::warn!(worker = %self.info.id, %error, "could not remove the worker from the registry; it expires on its own");
        }
    }
}
