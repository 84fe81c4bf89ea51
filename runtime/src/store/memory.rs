//! A process-local store: fast, not durable. For tests and benchmarks.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    Acquired, Append, Lease, PurgeBatch, PurgeFilter, PurgedRun, RunTriage, Store, WorkflowPause,
    due_at, trailing_deferrals,
};
use crate::EngineError;
use crate::event::{
    Event, EventKind, EventPayload, NewEvent, RunFilter, RunId, RunRecord, RunStatus, RunUpdate,
};
use crate::message::{EmittedEvent, Message, NewMessage, Posted};
use crate::tags::TagValue;

/// A [`Store`] in memory. Cloning the `Arc` holding it shares the data; dropping it loses it.
#[derive(Debug, Default)]
pub struct MemoryStore {
    runs: Mutex<Runs>,
}

#[derive(Debug, Default)]
struct Runs {
    by_id: HashMap<RunId, Entry>,
    /// Creation order, for newest-first listing.
    order: Vec<RunId>,
    /// `create_run_once` keys.
    keys: HashMap<String, RunId>,
    cursors: HashMap<String, serde_json::Value>,
    /// Paused workflows by slug.
    paused_workflows: HashMap<String, WorkflowPause>,
    /// Schedule rows by name.
    schedules: std::collections::BTreeMap<String, super::ScheduleRow>,
    /// Runs waiting for events, by event name, oldest wait first.
    event_waits: HashMap<String, Vec<RunId>>,
    /// Emitted events seen, by `(name, id)`.
    emitted: std::collections::HashSet<(String, String)>,
    /// Registered workers by id (a `BTreeMap`: listed by id).
    workers: BTreeMap<String, crate::queue::WorkerInfo>,
    /// Documents by (kind, key) (a `BTreeMap`: listed by key, and by prefix as a range).
    documents: BTreeMap<(String, String), super::Document>,
    /// Step permits by `(queue, scope)` (see [`crate::queue::StepWindow`]): the times
    /// they were taken, stale ones (`StepWindow::stale`) pruned when the next is asked for.
    step_permits: HashMap<(String, String), Vec<DateTime<Utc>>>,
}

#[derive(Debug)]
struct Entry {
    record: RunRecord,
    /// The log: event `seq` is at index `seq` (kept without its run id, which is the
    /// entry's key, so an append allocates nothing per event beyond the `Vec`).
    events: Vec<NewEvent>,
    /// The lease holder and expiry, while leased.
    lease: Option<(String, DateTime<Utc>)>,
    fence: u64,
    cancel_requested: bool,
    pause_requested: Option<String>,
    /// The run's tags (`run_tagged` events), updated with the append that carries them.
    tags: BTreeMap<String, TagValue>,
    /// The run's inbox: message `seq` is at index `seq - 1`.
    inbox: Vec<Message>,
}

impl Entry {
    fn lease(&mut self, id: &RunId, owner: &str, expires_at: DateTime<Utc>) -> Lease {
        self.fence += 1;
        self.lease = Some((owner.to_owned(), expires_at));
        Lease {
            run_id: id.clone(),
            owner: owner.to_owned(),
            fence: self.fence,
            expires_at,
            cancel_requested: self.cancel_requested,
            pause_requested: self.pause_requested.clone(),
        }
    }

    fn leased_at(&self, now: DateTime<Utc>) -> bool {
        self.lease.as_ref().is_some_and(|(_, until)| *until > now)
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Runs> {
        // A panic while holding the lock cannot leave a half-applied append (every
        // mutation below is applied after all checks), so a poisoned lock is still usable.
        self.runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Applies a [`RunUpdate`] to a record. Shared by the stores that keep records as structs.
pub(crate) fn apply_update(
    record: &mut RunRecord,
    update: &RunUpdate,
    at: chrono::DateTime<chrono::Utc>,
) {
    if let Some(status) = update.status {
        record.status = status;
    }
    if let Some(attempt) = update.attempt {
        record.attempt = attempt;
    }
    if let Some(output) = &update.output {
        record.output = Some(output.clone());
    }
    if let Some(error) = &update.error {
        // JSON null clears the error (a retried run), as the SQL stores read it back.
        record.error = (!error.is_null()).then(|| error.clone());
    }
    if let Some(wake_at) = update.wake_at {
        record.wake_at = wake_at;
    }
    record.updated_at = at;
}

/// Whether an append that sets `update` must leave the run `queued` instead of `waiting`:
/// its inbox (last `seq` = `last_message`) holds a message the execution has not read.
pub(crate) fn woken_by_inbox(update: &RunUpdate, last_message: u64) -> bool {
    update.status == Some(RunStatus::Waiting)
        && update.inbox_seen.is_some_and(|seen| last_message > seen)
}

/// Whether a run of a queue is pending: queued and not admitted (a debounced run still
/// open to replacement).
fn is_pending(record: &RunRecord) -> bool {
    record.status == RunStatus::Queued
        && record
            .queue
            .as_ref()
            .is_some_and(|q| q.admitted_at.is_none())
}

/// The counts of [`Store::queue_totals`] for `queue` and for every key of it, read from the
/// records in one pass (a claim needs several keys; reading the records once per key
/// would make it quadratic).
fn memory_totals(
    by_id: &HashMap<RunId, Entry>,
    queue: &crate::queue::Queue,
    now: DateTime<Utc>,
) -> (
    crate::queue::QueueTotals,
    HashMap<String, crate::queue::KeyTotals>,
) {
    let window = crate::queue::Admitter::window_start(queue, now);
    let per_key_rate = queue.rate_limit.is_some_and(|r| r.per_key);
    let mut totals = crate::queue::QueueTotals::default();
    let mut keys: HashMap<String, crate::queue::KeyTotals> = HashMap::new();
    let oldest = |t: Option<DateTime<Utc>>, at: DateTime<Utc>| Some(t.map_or(at, |t| t.min(at)));
    for entry in by_id.values() {
        let record = &entry.record;
        let Some(q) = record.queue.as_ref().filter(|q| q.name == queue.name) else {
            continue;
        };
        let Some(admitted_at) = q.admitted_at else {
            continue;
        };
        let active = u64::from(!record.status.is_terminal());
        let in_window = window.is_some_and(|w| admitted_at > w);
        totals.active += active;
        if in_window && !per_key_rate {
            totals.admitted_in_window += 1;
            totals.oldest_in_window = oldest(totals.oldest_in_window, admitted_at);
        }
        if let Some(key) = &q.key {
            let k = keys.entry(key.clone()).or_default();
            k.active += active;
            if in_window && per_key_rate {
                k.admitted_in_window += 1;
                k.oldest_in_window = oldest(k.oldest_in_window, admitted_at);
            }
        }
    }
    (totals, keys)
}

/// Applies the `run_tagged` events of `events` to `tags` (a later tag of a key wins).
fn index_tags(tags: &mut BTreeMap<String, TagValue>, events: &[NewEvent]) {
    for event in events.iter().filter(|e| e.kind == EventKind::RunTagged) {
        if let Ok(EventPayload::RunTagged { key, value }) =
            EventPayload::decode(EventKind::RunTagged, &event.payload)
        {
            tags.insert(key, value);
        }
    }
}

fn insert_run(runs: &mut Runs, record: RunRecord, created: NewEvent) -> Result<(), EngineError> {
    if runs.by_id.contains_key(&record.id) {
        return Err(super::StoreError::new(
            super::StoreErrorKind::Constraint,
            format!("run `{}` already exists", record.id),
        )
        .with_run(record.id.as_str())
        .into());
    }
    let id = record.id.clone();
    let mut record = record;
    record.next_seq = 1;
    if let Some(queue) = &mut record.queue {
        queue.admitted_at = None;
    }
    let mut tags = BTreeMap::new();
    index_tags(&mut tags, std::slice::from_ref(&created));
    runs.by_id.insert(
        id.clone(),
        Entry {
            record,
            events: vec![created],
            lease: None,
            fence: 0,
            cancel_requested: false,
            pause_requested: None,
            tags,
            inbox: Vec::new(),
        },
    );
    runs.order.push(id);
    Ok(())
}

#[async_trait]
impl Store for MemoryStore {
    async fn create_run(&self, record: RunRecord, created: NewEvent) -> Result<(), EngineError> {
        insert_run(&mut self.lock(), record, created)
    }

    async fn create_run_once(
        &self,
        key: &str,
        record: RunRecord,
        created: NewEvent,
    ) -> Result<Option<RunId>, EngineError> {
        let mut runs = self.lock();
        if let Some(existing) = runs.keys.get(key) {
            return Ok(Some(existing.clone()));
        }
        let id = record.id.clone();
        insert_run(&mut runs, record, created)?;
        runs.keys.insert(key.to_owned(), id);
        Ok(None)
    }

    async fn acquire(
        &self,
        id: &RunId,
        owner: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<Acquired, EngineError> {
        let mut runs = self.lock();
        let entry = runs
            .by_id
            .get_mut(id)
            .ok_or_else(|| EngineError::UnknownRun(id.to_string()))?;
        if let Some((holder, until)) = &entry.lease
            && *until > now
            && holder != owner
        {
            return Ok(Acquired::HeldBy {
                owner: holder.clone(),
                expires_at: *until,
            });
        }
        Ok(Acquired::Lease(entry.lease(id, owner, expires_at)))
    }

    async fn claim(
        &self,
        request: &crate::queue::ClaimRequest<'_>,
    ) -> Result<Vec<Lease>, EngineError> {
        use crate::queue::Admitter;
        let now = request.now;
        let mut runs = self.lock();
        let Runs {
            by_id,
            order,
            paused_workflows,
            ..
        } = &mut *runs;
        // Due, unleased, unpaused, served: free (no queue, or admitted) or awaiting
        // admission in one of the request's queues.
        let mut free: Vec<(DateTime<Utc>, usize)> = Vec::new();
        let mut waiting: Vec<(usize, i32, DateTime<Utc>, usize)> = Vec::new();
        for (position, id) in order.iter().enumerate() {
            let Some(entry) = by_id.get(id) else { continue };
            let record = &entry.record;
            let Some(due) = due_at(record.status, record.wake_at, record.created_at) else {
                continue;
            };
            if due > now
                || entry.leased_at(now)
                || paused_workflows.contains_key(&record.workflow)
                || !request.routing.serves(
                    &record.workflow,
                    record.queue.as_ref().map(|q| q.name.as_str()),
                )
            {
                continue;
            }
            match &record.queue {
                Some(q) if q.admitted_at.is_none() => {
                    if let Some(index) = request.queues.iter().position(|s| s.name == q.name) {
                        waiting.push((index, -q.priority, due, position));
                    }
                }
                _ => free.push((due, position)),
            }
        }
        // A claim of one run: only that run's queue is walked, and no free run is taken.
        let target = match request.run {
            Some(id) => {
                let Some(&(index, ..)) = waiting.iter().find(|w| order[w.3] == *id) else {
                    return Ok(Vec::new());
                };
                free.clear();
                waiting.retain(|w| w.0 == index);
                Some(id)
            }
            None => None,
        };
        // Free runs first, earliest due first; then admission into each queue.
        free.sort_unstable();
        free.truncate(request.limit);
        let mut chosen: Vec<usize> = free.into_iter().map(|(_, position)| position).collect();
        waiting.sort_unstable();
        let mut admitted: Vec<usize> = Vec::new();
        let mut next = 0;
        // A claim of one run counts the runs ahead of it as admitted (not admitting them):
        // no bound but the queue's limits, and the walk stops at the run.
        let limit = if target.is_some() {
            usize::MAX
        } else {
            request.limit
        };
        while next < waiting.len() && chosen.len() + admitted.len() < limit {
            let index = waiting[next].0;
            let queue = &request.queues[index];
            let (totals, mut key_totals) = memory_totals(by_id, queue, now);
            let mut admitter = Admitter::new(queue, now, totals);
            while next < waiting.len() && waiting[next].0 == index {
                let position = waiting[next].3;
                next += 1;
                if chosen.len() + admitted.len() >= limit || admitter.is_full() {
                    continue;
                }
                let key: Option<String> = by_id
                    .get(&order[position])
                    .and_then(|e| e.record.queue.as_ref())
                    .and_then(|q| q.key.clone());
                if let Some(key) = &key
                    && admitter.needs_key_totals(key)
                {
                    admitter.add_key_totals(key, key_totals.remove(key).unwrap_or_default());
                }
                if admitter.admit(key.as_deref()).is_ok() {
                    admitted.push(position);
                }
                if target.is_some_and(|t| order[position] == *t) {
                    next = waiting.len();
                    break;
                }
            }
        }
        if let Some(target) = target {
            // The runs ahead were only counted.
            admitted.retain(|&position| order[position] == *target);
        }
        // Stamped no earlier than any admission already counted in the queue: a claim
        // whose `now` was read before another claim admitted runs never counts as
        // admitted earlier than those (which would shorten its rate window's memory).
        let mut stamps: std::collections::HashMap<String, DateTime<Utc>> = Default::default();
        if !admitted.is_empty() {
            for q in by_id.values().filter_map(|e| e.record.queue.as_ref()) {
                if let Some(at) = q.admitted_at
                    && at > now
                {
                    let stamp = stamps.entry(q.name.clone()).or_insert(now);
                    *stamp = (*stamp).max(at);
                }
            }
        }
        for &position in &admitted {
            if let Some(q) = by_id
                .get_mut(&order[position])
                .and_then(|e| e.record.queue.as_mut())
            {
                q.admitted_at = Some(stamps.get(&q.name).copied().unwrap_or(now));
            }
        }
        chosen.extend(admitted);
        chosen.sort_unstable();
        let mut claimed = Vec::with_capacity(chosen.len());
        for position in chosen {
            let id = &order[position];
            if let Some(entry) = by_id.get_mut(id) {
                claimed.push(entry.lease(id, request.owner, request.expires_at));
            }
        }
        Ok(claimed)
    }

    async fn create_run_gated(
        &self,
        record: RunRecord,
        created: NewEvent,
        gate: &crate::queue::StartGate,
    ) -> Result<crate::queue::Gated, EngineError> {
        use crate::queue::{DebouncePolicy, Gated, StartGate};
        let mut runs = self.lock();
        let key = match gate {
            StartGate::Dedup { key } | StartGate::Debounce { key, .. } => key,
        };
        let holder = runs.keys.get(key).cloned();
        let holder = holder.and_then(|id| runs.by_id.get(&id).map(|e| (id, e.record.clone())));
        let mut outcome = Gated::Created;
        if let Some((held, holding)) = holder {
            match gate {
                StartGate::Dedup { .. } if !holding.status.is_terminal() => {
                    return Ok(Gated::Existing(held));
                }
                StartGate::Debounce {
                    policy,
                    canceled,
                    error,
                    ..
                } if is_pending(&holding) => match policy {
                    DebouncePolicy::Drop => return Ok(Gated::Existing(held)),
                    DebouncePolicy::Replace => {
                        if let Some(entry) = runs.by_id.get_mut(&held) {
                            let at = canceled.at;
                            entry.events.push(canceled.clone());
                            entry.record.next_seq = entry.events.len() as u64;
                            entry.record.status = RunStatus::Canceled;
                            entry.record.error = Some(error.clone());
                            entry.record.wake_at = None;
                            entry.record.updated_at = at;
                        }
                        outcome = Gated::Replaced(held);
                    }
                },
                _ => {}
            }
        }
        let id = record.id.clone();
        insert_run(&mut runs, record, created)?;
        runs.keys.insert(key.clone(), id);
        Ok(outcome)
    }

    async fn queue_totals(
        &self,
        queue: &crate::queue::Queue,
        key: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(crate::queue::QueueTotals, Option<crate::queue::KeyTotals>), EngineError> {
        let (totals, mut keys) = memory_totals(&self.lock().by_id, queue, now);
        Ok((totals, key.map(|key| keys.remove(key).unwrap_or_default())))
    }

    async fn take_step_permit(
        &self,
        queue: &crate::queue::Queue,
        key: Option<&str>,
        clock: &std::sync::Arc<dyn crate::Clock>,
    ) -> Result<Result<(), DateTime<Utc>>, EngineError> {
        let Some(window) = super::step_window_to_take(queue, key, clock.now())? else {
            return Ok(Ok(()));
        };
        let mut runs = self.lock();
        let window = window.at(clock.now());
        let taken = runs
            .step_permits
            .entry((window.queue.clone(), window.scope.clone()))
            .or_default();
        taken.retain(|at| *at > window.stale);
        let in_window = taken.iter().filter(|at| **at > window.start);
        let oldest = in_window.clone().min().copied();
        let decision = window.decide(in_window.count() as u64, oldest);
        if decision.is_ok() {
            taken.push(window.now);
        }
        Ok(decision)
    }

    async fn step_permits(
        &self,
        queue: &crate::queue::Queue,
        key: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(u64, Option<DateTime<Utc>>), EngineError> {
        let Some(window) = super::step_window_to_count(queue, key, now) else {
            return Ok((0, None));
        };
        let runs = self.lock();
        let Some(taken) = runs.step_permits.get(&(window.queue, window.scope)) else {
            return Ok((0, None));
        };
        let in_window = taken.iter().filter(|at| **at > window.start);
        let oldest = in_window.clone().min().copied();
        Ok((in_window.count() as u64, oldest))
    }

    async fn worker_heartbeat(&self, worker: &crate::queue::WorkerInfo) -> Result<(), EngineError> {
        self.lock()
            .workers
            .insert(worker.id.clone(), worker.clone());
        Ok(())
    }

    async fn worker_stopped(&self, id: &str) -> Result<(), EngineError> {
        self.lock().workers.remove(id);
        Ok(())
    }

    async fn live_workers(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<crate::queue::WorkerInfo>>, EngineError> {
        Ok(Some(
            self.lock()
                .workers
                .values()
                .filter(|w| w.expires_at > now)
                .cloned()
                .collect(),
        ))
    }

    async fn renew(
        &self,
        lease: &Lease,
        expires_at: DateTime<Utc>,
    ) -> Result<Option<Lease>, EngineError> {
        let mut runs = self.lock();
        let Some(entry) = runs.by_id.get_mut(&lease.run_id) else {
            return Ok(None);
        };
        if entry.fence != lease.fence || entry.lease.is_none() {
            return Ok(None);
        }
        entry.lease = Some((lease.owner.clone(), expires_at));
        Ok(Some(Lease {
            expires_at,
            cancel_requested: entry.cancel_requested,
            pause_requested: entry.pause_requested.clone(),
            ..lease.clone()
        }))
    }

    async fn release(&self, lease: &Lease) -> Result<(), EngineError> {
        let mut runs = self.lock();
        if let Some(entry) = runs.by_id.get_mut(&lease.run_id)
            && entry.fence == lease.fence
        {
            entry.lease = None;
        }
        Ok(())
    }

    async fn request_cancel(&self, id: &RunId) -> Result<(), EngineError> {
        let mut runs = self.lock();
        let entry = runs
            .by_id
            .get_mut(id)
            .ok_or_else(|| EngineError::UnknownRun(id.to_string()))?;
        entry.cancel_requested = true;
        Ok(())
    }

    async fn request_pause(&self, id: &RunId, by: Option<&str>) -> Result<(), EngineError> {
        let mut runs = self.lock();
        let entry = runs
            .by_id
            .get_mut(id)
            .ok_or_else(|| EngineError::UnknownRun(id.to_string()))?;
        entry.pause_requested = by.map(str::to_owned);
        Ok(())
    }

    async fn set_workflow_pause(
        &self,
        workflow: &str,
        pause: Option<&WorkflowPause>,
    ) -> Result<bool, EngineError> {
        let mut runs = self.lock();
        Ok(match pause {
            Some(pause) => {
                if runs.paused_workflows.contains_key(workflow) {
                    false
                } else {
                    runs.paused_workflows
                        .insert(workflow.to_owned(), pause.clone());
                    true
                }
            }
            None => runs.paused_workflows.remove(workflow).is_some(),
        })
    }

    async fn workflow_pauses(&self) -> Result<Vec<WorkflowPause>, EngineError> {
        let runs = self.lock();
        let mut pauses: Vec<WorkflowPause> = runs.paused_workflows.values().cloned().collect();
        pauses.sort_by(|a, b| a.workflow.cmp(&b.workflow));
        Ok(pauses)
    }

    async fn next_wake(&self) -> Result<Option<DateTime<Utc>>, EngineError> {
        let runs = self.lock();
        Ok(runs
            .by_id
            .values()
            .filter_map(|entry| match entry.record.status {
                RunStatus::Queued | RunStatus::Sleeping | RunStatus::Waiting => {
                    entry.record.wake_at
                }
                RunStatus::Running => entry.lease.as_ref().map(|(_, until)| *until),
                _ => None,
            })
            .min())
    }

    async fn run_counts(&self, now: DateTime<Utc>) -> Result<Vec<super::RunCount>, EngineError> {
        let runs = self.lock();
        let mut counts: HashMap<(&str, RunStatus), (u64, u64)> = HashMap::new();
        for entry in runs.by_id.values() {
            let record = &entry.record;
            let due = due_at(record.status, record.wake_at, record.created_at)
                .is_some_and(|due| due <= now && !entry.leased_at(now));
            let count = counts
                .entry((record.workflow.as_str(), record.status))
                .or_default();
            count.0 += 1;
            count.1 += u64::from(due);
        }
        Ok(counts
            .into_iter()
            .map(|((workflow, status), (runs, due))| super::RunCount {
                workflow: workflow.to_owned(),
                status,
                runs,
                due,
            })
            .collect())
    }

    async fn cursor(&self, name: &str) -> Result<Option<serde_json::Value>, EngineError> {
        Ok(self.lock().cursors.get(name).cloned())
    }

    async fn set_cursor(&self, name: &str, value: &serde_json::Value) -> Result<(), EngineError> {
        self.lock().cursors.insert(name.to_owned(), value.clone());
        Ok(())
    }

    async fn put_document(
        &self,
        kind: &str,
        key: &str,
        value: &serde_json::Value,
        mode: super::Put,
        now: DateTime<Utc>,
    ) -> Result<bool, EngineError> {
        super::documents::check(kind, key)?;
        let mut runs = self.lock();
        let slot = (kind.to_owned(), key.to_owned());
        let existing = runs.documents.get(&slot).map(|d| d.created_at);
        match (mode, existing) {
            (super::Put::Create, Some(_)) | (super::Put::Replace, None) => return Ok(false),
            _ => {}
        }
        runs.documents.insert(
            slot,
            super::Document {
                kind: kind.to_owned(),
                key: key.to_owned(),
                value: value.clone(),
                created_at: existing.unwrap_or(now),
                updated_at: now,
            },
        );
        Ok(true)
    }

    async fn document(
        &self,
        kind: &str,
        key: &str,
    ) -> Result<Option<super::Document>, EngineError> {
        Ok(self
            .lock()
            .documents
            .get(&(kind.to_owned(), key.to_owned()))
            .cloned())
    }

    async fn documents(
        &self,
        kind: &str,
        prefix: &str,
    ) -> Result<Vec<super::Document>, EngineError> {
        let runs = self.lock();
        Ok(runs
            .documents
            .range((kind.to_owned(), prefix.to_owned())..)
            .take_while(|((k, key), _)| k == kind && key.starts_with(prefix))
            .map(|(_, d)| d.clone())
            .collect())
    }

    async fn delete_document(&self, kind: &str, key: &str) -> Result<bool, EngineError> {
        Ok(self
            .lock()
            .documents
            .remove(&(kind.to_owned(), key.to_owned()))
            .is_some())
    }

    async fn list_schedules(&self) -> Result<Vec<super::ScheduleRow>, EngineError> {
        Ok(self.lock().schedules.values().cloned().collect())
    }

    async fn schedule(&self, name: &str) -> Result<Option<super::ScheduleRow>, EngineError> {
        Ok(self.lock().schedules.get(name).cloned())
    }

    async fn create_schedule(&self, row: &super::ScheduleRow) -> Result<bool, EngineError> {
        let mut runs = self.lock();
        if runs.schedules.contains_key(&row.name) {
            return Ok(false);
        }
        runs.schedules.insert(row.name.clone(), row.clone());
        Ok(true)
    }

    async fn update_schedule(&self, row: &super::ScheduleRow) -> Result<bool, EngineError> {
        let mut runs = self.lock();
        let Some(stored) = runs.schedules.get_mut(&row.name) else {
            return Ok(false);
        };
        stored.definition = row.definition.clone();
        stored.paused = row.paused;
        stored.updated_at = row.updated_at;
        stored.updated_by = row.updated_by.clone();
        Ok(true)
    }

    async fn delete_schedule(&self, name: &str) -> Result<bool, EngineError> {
        Ok(self.lock().schedules.remove(name).is_some())
    }

    async fn set_schedule_paused(
        &self,
        name: &str,
        paused: bool,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        let mut runs = self.lock();
        let row = runs
            .schedules
            .entry(name.to_owned())
            .or_insert_with(|| super::ScheduleRow {
                name: name.to_owned(),
                definition: None,
                paused,
                created_at: at,
                created_by: by.to_owned(),
                updated_at: at,
                updated_by: by.to_owned(),
            });
        row.paused = paused;
        row.updated_at = at;
        row.updated_by = by.to_owned();
        Ok(())
    }

    async fn create_run_with_events(
        &self,
        record: RunRecord,
        created: NewEvent,
        events: Vec<NewEvent>,
    ) -> Result<(), EngineError> {
        let mut runs = self.lock();
        let id = record.id.clone();
        insert_run(&mut runs, record, created)?;
        if let Some(entry) = runs.by_id.get_mut(&id) {
            // A copied `run_tagged` is indexed as an appended one is.
            index_tags(&mut entry.tags, &events);
            entry.events.extend(events);
            entry.record.next_seq = entry.events.len() as u64;
        }
        Ok(())
    }

    async fn append(&self, append: Append) -> Result<(), EngineError> {
        append.check_release()?;
        let mut runs = self.lock();
        let Some(entry) = runs.by_id.get_mut(&append.run_id) else {
            return Err(EngineError::UnknownRun(append.run_id.0));
        };
        if let Some(fence) = append.fence
            && (fence != entry.fence || entry.lease.is_none())
        {
            return Err(EngineError::LeaseLost {
                run: append.run_id.0,
            });
        }
        let Entry {
            record,
            events,
            tags,
            inbox,
            lease,
            ..
        } = entry;
        if record.next_seq != append.first_seq {
            return Err(EngineError::Conflict {
                run: append.run_id.0,
                expected: append.first_seq,
                found: record.next_seq,
            });
        }
        let at = append
            .events
            .last()
            .map(|e| e.at)
            .unwrap_or_else(chrono::Utc::now);
        index_tags(tags, &append.events);
        events.extend(append.events);
        record.next_seq = events.len() as u64;
        apply_update(record, &append.update, at);
        if woken_by_inbox(&append.update, inbox.last().map_or(0, |m| m.seq)) {
            record.status = RunStatus::Queued;
            record.wake_at = None;
        }
        if append.release {
            // The fence was checked above: this is the writer's own lease.
            *lease = None;
        }
        Ok(())
    }

    async fn run(&self, id: &RunId) -> Result<Option<RunRecord>, EngineError> {
        Ok(self.lock().by_id.get(id).map(|entry| entry.record.clone()))
    }

    async fn events(&self, id: &RunId) -> Result<Vec<Event>, EngineError> {
        let runs = self.lock();
        let Some(entry) = runs.by_id.get(id) else {
            return Ok(Vec::new());
        };
        Ok(entry
            .events
            .iter()
            .zip(0u64..)
            .map(|(event, seq)| Event {
                run_id: id.clone(),
                seq,
                event: event.clone(),
            })
            .collect())
    }

    async fn triage(&self, id: &RunId) -> Result<Option<RunTriage>, EngineError> {
        let runs = self.lock();
        Ok(runs.by_id.get(id).map(|entry| RunTriage {
            next_seq: entry.record.next_seq,
            status: Some(entry.record.status),
            workflow: entry.record.workflow.clone(),
            attempt: entry.record.attempt,
            deferrals: trailing_deferrals(entry.events.iter().map(|e| e.kind)),
        }))
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, EngineError> {
        let cursor = filter.checked_cursor()?;
        let runs = self.lock();
        let mut matching: Vec<&RunRecord> = runs
            .by_id
            .values()
            .filter(|entry| filter.admits(&entry.record, &entry.tags))
            .map(|entry| &entry.record)
            .filter(|r| cursor.as_ref().is_none_or(|c| c.is_before(r)))
            .collect();
        // Newest first, ties by id (highest first): the order cursors page through.
        matching.sort_unstable_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        Ok(matching
            .into_iter()
            .take(filter.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect())
    }

    async fn purge_runs(&self, filter: &PurgeFilter) -> Result<PurgeBatch, EngineError> {
        let mut runs = self.lock();
        let statuses = filter.statuses();
        let mut matching: Vec<(DateTime<Utc>, usize, PurgedRun)> = runs
            .order
            .iter()
            .enumerate()
            .filter_map(|(position, id)| {
                let record = &runs.by_id.get(id)?.record;
                let wanted = record.status.is_terminal()
                    && statuses.contains(&record.status)
                    && record.updated_at < filter.before
                    && filter
                        .workflow
                        .as_deref()
                        .is_none_or(|w| record.workflow == w);
                wanted.then(|| {
                    let run = PurgedRun {
                        run_id: id.clone(),
                        workflow: record.workflow.clone(),
                        status: record.status,
                    };
                    (record.updated_at, position, run)
                })
            })
            .collect();
        matching.sort_by_key(|(at, position, _)| (*at, *position));
        let total = matching.len() as u64;
        matching.truncate(filter.batch());
        let purged: Vec<PurgedRun> = matching.into_iter().map(|(_, _, run)| run).collect();
        if filter.dry_run {
            return Ok(PurgeBatch {
                runs: purged,
                count: total,
            });
        }
        // The whole batch under one lock: nothing can change a run in between.
        let doomed: std::collections::HashSet<&RunId> = purged.iter().map(|r| &r.run_id).collect();
        let Runs {
            by_id,
            order,
            keys,
            event_waits,
            ..
        } = &mut *runs;
        for id in &doomed {
            by_id.remove(*id);
        }
        order.retain(|id| !doomed.contains(id));
        keys.retain(|_, id| !doomed.contains(id));
        for waiting in event_waits.values_mut() {
            waiting.retain(|id| !doomed.contains(id));
        }
        drop(doomed);
        Ok(PurgeBatch {
            count: purged.len() as u64,
            runs: purged,
        })
    }

    async fn run_for_key(&self, key: &str) -> Result<Option<RunId>, EngineError> {
        Ok(self.lock().keys.get(key).cloned())
    }

    async fn set_run_key(&self, key: &str, id: &RunId) -> Result<(), EngineError> {
        let mut runs = self.lock();
        if !runs.by_id.contains_key(id) {
            return Err(EngineError::UnknownRun(id.0.clone()));
        }
        runs.keys.insert(key.to_owned(), id.clone());
        Ok(())
    }

    async fn post_message(&self, message: NewMessage) -> Result<Posted, EngineError> {
        let mut runs = self.lock();
        let Some(entry) = runs.by_id.get_mut(&message.run_id) else {
            return Err(EngineError::UnknownRun(message.run_id.0));
        };
        if let Some(dedupe) = &message.dedupe
            && let Some(earlier) = entry
                .inbox
                .iter()
                .find(|m| m.dedupe.as_deref() == Some(dedupe.as_str()))
        {
            return Ok(Posted {
                seq: earlier.seq,
                duplicate: true,
            });
        }
        let seq = entry.inbox.len() as u64 + 1;
        entry.inbox.push(Message {
            seq,
            channel: message.channel,
            payload: message.payload,
            dedupe: message.dedupe,
            at: message.at,
        });
        if entry.record.status == RunStatus::Waiting {
            entry.record.status = RunStatus::Queued;
            entry.record.wake_at = None;
            entry.record.updated_at = message.at;
        }
        Ok(Posted {
            seq,
            duplicate: false,
        })
    }

    async fn messages(&self, id: &RunId, after: u64) -> Result<Vec<Message>, EngineError> {
        let runs = self.lock();
        Ok(runs.by_id.get(id).map_or_else(Vec::new, |entry| {
            entry
                .inbox
                .iter()
                .filter(|m| m.seq > after)
                .cloned()
                .collect()
        }))
    }

    async fn add_event_wait(&self, id: &RunId, name: &str) -> Result<(), EngineError> {
        let mut runs = self.lock();
        let waiting = runs.event_waits.entry(name.to_owned()).or_default();
        if !waiting.contains(id) {
            waiting.push(id.clone());
        }
        Ok(())
    }

    async fn remove_event_wait(&self, id: &RunId, name: &str) -> Result<(), EngineError> {
        let mut runs = self.lock();
        if let Some(waiting) = runs.event_waits.get_mut(name) {
            waiting.retain(|w| w != id);
        }
        Ok(())
    }

    async fn event_waiters(&self, name: &str) -> Result<Vec<RunId>, EngineError> {
        let runs = self.lock();
        Ok(runs
            .event_waits
            .get(name)
            .map(|waiting| {
                waiting
                    .iter()
                    .filter(|id| runs.by_id.contains_key(*id))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn record_event(&self, event: &EmittedEvent) -> Result<bool, EngineError> {
        Ok(self
            .lock()
            .emitted
            .insert((event.name.clone(), event.id.clone())))
    }
}
