//! The engine's side of flow control ([`crate::queue`]): starts through de-duplicated and
//! debounced queues, why a queued run waits, and the queues' state for `queues list`,
//! `GET /queues` and the UI. Admission itself happens in the store's claim.

use serde::Serialize;
use serde_json::Value;

use super::{Engine, StartOptions};
use crate::error::EngineError;
use crate::event::{EventPayload, NewEvent, RunFilter, RunId, RunRecord, RunStatus, Trigger};
use crate::queue::{
    Admitter, Blocked, ClaimRequest, Gated, Queue, QueueSettings, Routing, StartGate, gate_key,
};
use crate::store::Lease;

/// Why a run is not executing yet, as `runs get`, `GET /runs/{id}` and the UI show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QueueWait {
    /// The run's queue, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// The run's key in the queue, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The queue limit that holds the run back now, if one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked: Option<Blocked>,
    /// Set when the store keeps a worker registry and no live worker would claim the run
    /// (no worker registers its workflow, or every one is routed elsewhere): says so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unserved: Option<String>,
    /// Set by direct execution ([`Engine::execute`]) when no limit of the run's own holds
    /// it back but runs ahead of it in the queue would take the place first: those runs,
    /// the first in admission order first. Empty otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ahead: Vec<RunId>,
    /// Set when the run's queue has a step rate limit whose window (the queue's, or the
    /// run's key's) is full now: the run's next live step attempt waits for a permit
    /// until `next_at`. Read from the store's counts, so it holds for every process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_permits: Option<crate::queue::StepPermits>,
}

impl std::fmt::Display for QueueWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(queue) = &self.queue {
            match (&self.blocked, self.ahead.first()) {
                (Some(blocked), _) => parts.push(format!("waiting in queue `{queue}`: {blocked}")),
                (None, Some(first)) => parts.push(format!(
                    "waiting in queue `{queue}`: {} run(s) ahead of it would be admitted \
                     first (the first: run `{first}`); execute that one, or run a worker",
                    self.ahead.len()
                )),
                (None, None) => parts.push(format!("waiting in queue `{queue}` for a worker")),
            }
        }
        if let Some(unserved) = &self.unserved {
            parts.push(unserved.clone());
        }
        if let Some(permits) = &self.step_permits {
            parts.push(format!("its steps wait for a step permit: {permits}"));
        }
        write!(f, "{}", parts.join("; "))
    }
}

/// A queue's settings and how many of its runs are admitted and waiting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QueueState {
    /// The settings.
    pub settings: Queue,
    /// Admitted runs that have not ended.
    pub active: u64,
    /// Admissions in the current rate window (0 without a queue-wide rate limit).
    pub admitted_in_window: u64,
    /// Runs of the queue that are `queued` and not admitted yet (waiting for their turn,
    /// a limit, a debounce window or a worker).
    pub waiting: u64,
    /// The queue-wide step rate limit's permits in its current window; `None` without a
    /// step rate limit or with a per-key one (counted per key only).
    pub step_permits: Option<crate::queue::StepPermits>,
}

impl Engine {
    /// The queues this engine knows (configured, and named by its workflows), by name.
    pub fn queues(&self) -> &[Queue] {
        QueueSettings::of(&self.inner.env).all()
    }

    /// Each queue's settings with its admitted, rate-window and waiting counts at now.
    /// `waiting` is counted by listing the queue's `queued` runs
    /// ([`crate::event::RunFilter::queue`]): one read of each queued run of the queue.
    ///
    /// # Errors
    /// Store failures.
    pub async fn queue_states(&self) -> Result<Vec<QueueState>, EngineError> {
        let now = self.now();
        let mut states = Vec::new();
        for queue in self.queues() {
            let (totals, _) = self.store().queue_totals(queue, None, now).await?;
            let waiting = self
                .list_runs(&RunFilter {
                    status: Some(RunStatus::Queued),
                    queue: Some(queue.name.clone()),
                    limit: None,
                    ..RunFilter::default()
                })
                .await?
                .iter()
                .filter(|run| run.queue.as_ref().is_some_and(|q| q.admitted_at.is_none()))
                .count() as u64;
            let step_permits = self.step_permits(queue, None, now).await?;
            states.push(QueueState {
                settings: queue.clone(),
                active: totals.active,
                admitted_in_window: totals.admitted_in_window,
                waiting,
                step_permits,
            });
        }
        Ok(states)
    }

    /// The permits of `queue`'s step rate limit (of `key`'s, for a per-key limit) in the
    /// window at `now`; `None` without a step rate limit, or for a per-key one without a
    /// key.
    async fn step_permits(
        &self,
        queue: &Queue,
        key: Option<&str>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<crate::queue::StepPermits>, EngineError> {
        let Some(window) = crate::queue::StepWindow::of(queue, key, now).ok().flatten() else {
            return Ok(None);
        };
        let (taken, oldest) = self.store().step_permits(queue, key, now).await?;
        Ok(Some(window.permits(taken, oldest)))
    }

    /// Why `run` is not executing yet: the queue limit holding it back, and whether any
    /// live worker serves it; for a run in a queue with a step rate limit whose window is
    /// full, that its steps wait for a permit. `None` for a run that is not `queued` (or
    /// is due later by `start_at`/a retry), is served and waits for no step permit, or
    /// when nothing can be said.
    ///
    /// # Errors
    /// Store failures.
    pub async fn queue_wait(&self, run: &RunRecord) -> Result<Option<QueueWait>, EngineError> {
        if run.status.is_terminal() || run.status == RunStatus::Paused {
            return Ok(None);
        }
        let now = self.now();
        let queue_name = run.queue.as_ref().map(|q| q.name.as_str());
        let mut wait = QueueWait {
            queue: None,
            key: None,
            blocked: None,
            unserved: None,
            ahead: Vec::new(),
            step_permits: None,
        };
        if let Some(placed) = &run.queue
            && let Some(queue) = QueueSettings::of(&self.inner.env).get(&placed.name)
        {
            wait.step_permits = self
                .step_permits(queue, placed.key.as_deref(), now)
                .await?
                .filter(crate::queue::StepPermits::is_full);
        }
        if let Some(placed) = &run.queue
            && placed.admitted_at.is_none()
            && run.status == RunStatus::Queued
        {
            wait.queue = Some(placed.name.clone());
            wait.key = placed.key.clone();
            if let Some(queue) = QueueSettings::of(&self.inner.env).get(&placed.name) {
                let (totals, key_totals) = self
                    .store()
                    .queue_totals(queue, placed.key.as_deref(), now)
                    .await?;
                let mut admitter = Admitter::new(queue, now, totals);
                if let (Some(key), Some(key_totals)) = (&placed.key, key_totals) {
                    admitter.add_key_totals(key, key_totals);
                }
                wait.blocked = admitter.check(placed.key.as_deref()).err();
            } else {
                wait.unserved = Some(format!(
                    "this process does not know queue `{}`; only workers configured with it \
                     claim its runs",
                    placed.name
                ));
            }
        }
        if wait.unserved.is_none()
            && let Some(workers) = self.store().live_workers(now).await?
            && !workers.iter().any(|w| w.serves(&run.workflow, queue_name))
        {
            wait.unserved = Some(match queue_name {
                Some(queue) => format!(
                    "no live worker serves workflow `{}` in queue `{queue}` ({} live \
                     worker(s)); start one with `worker --queues {queue}` or without \
                     `--queues`",
                    run.workflow,
                    workers.len()
                ),
                None => format!(
                    "no live worker serves workflow `{}` ({} live worker(s)); start one \
                     that registers it, without `--workflows`/`--queues` that exclude it",
                    run.workflow,
                    workers.len()
                ),
            });
        }
        Ok(
            (wait.queue.is_some() || wait.unserved.is_some() || wait.step_permits.is_some())
                .then_some(wait),
        )
    }

    /// Starts a run through its queue's de-duplication or debouncing, when either
    /// applies: `Some((run, created))`; `None` when neither does (the caller creates the
    /// run as usual).
    pub(super) async fn start_gated(
        &self,
        slug: &str,
        input: &Value,
        trigger: Trigger,
        options: &StartOptions,
    ) -> Result<Option<(RunId, bool)>, EngineError> {
        let entry = self.workflow(slug)?;
        let settings = QueueSettings::of(&self.inner.env);
        let Some((placed, queue)) = settings
            .place(slug, entry.options.queue, &options.queue, input)
            .map_err(EngineError::Serde)?
        else {
            return Ok(None);
        };
        let debounce = queue.debounce;
        let dedup = options.queue.dedup_id.clone();
        if debounce.is_none() && dedup.is_none() {
            return Ok(None);
        }
        if options.key.is_some() || options.idempotency_key.is_some() {
            return Err(EngineError::Serde(format!(
                "queue `{}` de-duplicates or debounces its starts, which a business key or \
                 an idempotency key would bypass; drop the key",
                queue.name
            )));
        }
        let now = self.now();
        let (gate, start_at) = match (debounce, dedup) {
            (Some(_), Some(_)) => {
                return Err(EngineError::Serde(format!(
                    "queue `{}` debounces its starts; a de-duplication id means nothing \
                     there; drop it",
                    queue.name
                )));
            }
            (Some(debounce), None) => {
                // `place` ensured a debounced queue's run has a key.
                let key = placed.key.clone().unwrap_or_default();
                let window = chrono::Duration::from_std(debounce.window)
                    .map_err(|e| EngineError::Config(format!("debounce window: {e}")))?;
                let due = now + window;
                let error = crate::WorkflowError::new(
                    crate::error::kinds::CANCELED,
                    "debounced: a later start with the same key replaced this run",
                    false,
                );
                let gate = StartGate::Debounce {
                    key: gate_key(&queue.name, "debounce", &key),
                    policy: debounce.policy,
                    canceled: NewEvent::new(
                        None,
                        0,
                        now,
                        EventPayload::RunCanceled {
                            error: Some(error.clone()),
                        },
                    ),
                    error: serde_json::to_value(&error)?,
                };
                (gate, Some(options.start_at.map_or(due, |at| at.max(due))))
            }
            (None, Some(id)) => (
                StartGate::Dedup {
                    key: gate_key(&queue.name, "dedup", &id),
                },
                options.start_at,
            ),
            (None, None) => return Ok(None),
        };
        let (record, created) = self.new_run_at(
            slug,
            input.clone(),
            trigger,
            &StartOptions {
                start_at,
                ..options.clone()
            },
        )?;
        let id = record.id.clone();
        match self
            .store()
            .create_run_gated(record, created, &gate)
            .await?
        {
            Gated::Created => {
                self.inner.env.announce_created(&id, slug);
                Ok(Some((id, true)))
            }
            Gated::Existing(existing) => Ok(Some((existing, false))),
            Gated::Replaced(replaced) => {
                tracing::info!(run = %replaced, by = %id, queue = %queue.name, "debounced run replaced by a later start");
                self.announce(&replaced, slug, RunStatus::Canceled);
                self.inner.env.announce_created(&id, slug);
                Ok(Some((id, true)))
            }
        }
    }

    /// For direct execution (`Engine::execute`): admits `run` into its queue if it waits for
    /// admission and the queue's rule admits it now, through the store's claim of that one
    /// run ([`ClaimRequest::run`]: the same transaction and lock a worker's claim uses),
    /// and returns its lease. The runs ahead of it in the queue (higher priority, or
    /// earlier) keep their turn: when one of them would take the place, `run` is not
    /// admitted and the answer names it; no other run is ever admitted here.
    pub(super) async fn admit_here(&self, run: &RunRecord) -> Result<Admission, EngineError> {
        let Some(placed) = run.queue.as_ref().filter(|q| q.admitted_at.is_none()) else {
            return Ok(Admission::NotNeeded);
        };
        if run.status != RunStatus::Queued {
            return Ok(Admission::NotNeeded);
        }
        let Some(queue) = QueueSettings::of(&self.inner.env).get(&placed.name) else {
            return Err(EngineError::Config(format!(
                "run `{}` is in queue `{}`, which this engine does not know; configure it \
                 with `Engine::builder().queue(Queue::new(\"{}\"))`",
                run.id, placed.name, placed.name
            )));
        };
        // Every run of the queue counts when deciding who is ahead, whatever its workflow.
        let routing = Routing::default();
        let now = self.now();
        let leases = self
            .store()
            .claim(&ClaimRequest {
                owner: self.owner_id(),
                now,
                expires_at: now + self.lease_delta(),
                limit: 1,
                routing: &routing,
                queues: std::slice::from_ref(queue),
                run: Some(&run.id),
            })
            .await?;
        for lease in leases {
            if lease.run_id == run.id {
                return Ok(Admission::Leased(lease));
            }
            // Not asked for: a store that ignored `ClaimRequest::run`. Given back at once.
            self.store().release(&lease).await?;
        }
        // Admitted meanwhile by another process: executed as any admitted run.
        if self
            .get_run(&run.id)
            .await?
            .queue
            .is_some_and(|q| q.admitted_at.is_some())
        {
            return Ok(Admission::NotNeeded);
        }
        let mut wait = self.queue_wait(run).await?.unwrap_or(QueueWait {
            queue: Some(placed.name.clone()),
            key: placed.key.clone(),
            blocked: None,
            unserved: None,
            ahead: Vec::new(),
            step_permits: None,
        });
        if wait.blocked.is_none() {
            wait.ahead = self.runs_ahead(run, &placed.name).await?;
        }
        Ok(Admission::Waiting(wait))
    }

    /// The queued runs of `queue` not admitted yet that come before `run` in admission
    /// order (priority, highest first; then due time; then creation), the first of them
    /// first: what holds `run` back when no limit of its own does.
    async fn runs_ahead(&self, run: &RunRecord, queue: &str) -> Result<Vec<RunId>, EngineError> {
        let order = |r: &RunRecord| {
            let priority = r.queue.as_ref().map_or(0, |q| q.priority);
            let due = crate::store::due_at(r.status, r.wake_at, r.created_at);
            (-i64::from(priority), due, r.created_at)
        };
        let mine = order(run);
        let mut ahead: Vec<RunRecord> = self
            .list_runs(&RunFilter {
                status: Some(RunStatus::Queued),
                queue: Some(queue.to_owned()),
                limit: None,
                ..RunFilter::default()
            })
            .await?
            .into_iter()
            .filter(|r| r.id != run.id)
            .filter(|r| r.queue.as_ref().is_some_and(|q| q.admitted_at.is_none()))
            .filter(|r| order(r) <= mine)
            .collect();
        ahead.sort_by_key(order);
        Ok(ahead.into_iter().map(|r| r.id).collect())
    }

    /// Waits in this process (on the engine's clock) until `run` is admitted into its
    /// queue or needs no admission, checking as often as the queue's next admission time
    /// says (at least every 100 ms, at most every second); says once, at `info`, why it
    /// waits. Used by [`Engine::drive`].
    pub(super) async fn wait_for_admission(&self, run: &RunRecord) -> Result<(), EngineError> {
        if self.queues().is_empty() || run.queue.as_ref().is_none_or(|q| q.admitted_at.is_some()) {
            return Ok(());
        }
        let mut told = false;
        loop {
            let record = self.get_run(&run.id).await?;
            if record.status != RunStatus::Queued
                || record
                    .queue
                    .as_ref()
                    .is_none_or(|q| q.admitted_at.is_some())
            {
                return Ok(());
            }
            let Some(wait) = self.queue_wait(&record).await? else {
                return Ok(());
            };
            if wait.blocked.is_none() {
                // Nothing holds it back: `execute` admits it.
                return Ok(());
            }
            if !told {
                tracing::info!(run = %run.id, %wait, "waiting for admission into the queue");
                told = true;
            }
            let next = match &wait.blocked {
                Some(Blocked::RateLimit {
                    next_at: Some(at), ..
                }) => (*at - self.now()).to_std().unwrap_or_default(),
                _ => std::time::Duration::from_secs(1),
            };
            self.clock()
                .sleep(next.clamp(
                    std::time::Duration::from_millis(100),
                    std::time::Duration::from_secs(1),
                ))
                .await;
        }
    }
}

/// What [`Engine::admit_here`] found.
#[derive(Debug)]
pub(super) enum Admission {
    /// The run is not waiting for admission (in no queue, admitted, not queued).
    NotNeeded,
    /// This call admitted the run; its lease.
    Leased(Lease),
    /// The queue does not admit the run now: why.
    Waiting(QueueWait),
}
