//! A process-local store: fast, not durable. For tests and benchmarks.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Append, Store};
use crate::EngineError;
use crate::event::{Event, NewEvent, RunFilter, RunId, RunRecord, RunUpdate};

/// A [`Store`] in memory. Cloning the `Arc` holding it shares the data; dropping it loses it.
#[derive(Debug, Default)]
pub struct MemoryStore {
    runs: Mutex<Runs>,
}

#[derive(Debug, Default)]
struct Runs {
    by_id: HashMap<RunId, (RunRecord, Vec<Event>)>,
    /// Creation order, for newest-first listing.
    order: Vec<RunId>,
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
        record.error = Some(error.clone());
    }
    if let Some(wake_at) = update.wake_at {
        record.wake_at = wake_at;
    }
    record.updated_at = at;
}

#[async_trait]
impl Store for MemoryStore {
    async fn create_run(&self, record: RunRecord, created: NewEvent) -> Result<(), EngineError> {
        let mut runs = self.lock();
        if runs.by_id.contains_key(&record.id) {
            return Err(EngineError::Store(format!(
                "run `{}` already exists",
                record.id
            )));
        }
        let id = record.id.clone();
        let event = Event {
            run_id: id.clone(),
            seq: 0,
            event: created,
        };
        let mut record = record;
        record.next_seq = 1;
        runs.by_id.insert(id.clone(), (record, vec![event]));
        runs.order.push(id);
        Ok(())
    }

    async fn append(&self, append: Append) -> Result<(), EngineError> {
        let mut runs = self.lock();
        let Some((record, events)) = runs.by_id.get_mut(&append.run_id) else {
            return Err(EngineError::UnknownRun(append.run_id.0));
        };
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
        for (offset, event) in append.events.into_iter().enumerate() {
            events.push(Event {
                run_id: append.run_id.clone(),
                seq: append.first_seq + offset as u64,
                event,
            });
        }
        record.next_seq = events.len() as u64;
        apply_update(record, &append.update, at);
        Ok(())
    }

    async fn run(&self, id: &RunId) -> Result<Option<RunRecord>, EngineError> {
        Ok(self.lock().by_id.get(id).map(|(record, _)| record.clone()))
    }

    async fn events(&self, id: &RunId) -> Result<Vec<Event>, EngineError> {
        Ok(self
            .lock()
            .by_id
            .get(id)
            .map(|(_, events)| events.clone())
            .unwrap_or_default())
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, EngineError> {
        let runs = self.lock();
        let matching = runs
            .order
            .iter()
            .rev()
            .filter_map(|id| runs.by_id.get(id).map(|(record, _)| record))
            .filter(|r| filter.status.is_none_or(|s| r.status == s))
            .filter(|r| filter.workflow.as_deref().is_none_or(|w| r.workflow == w))
            .take(filter.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect();
        Ok(matching)
    }
}
