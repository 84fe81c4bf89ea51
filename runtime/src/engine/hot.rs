//! The hot-run cache: suspended runs whose body is kept in memory, so that when a short
//! sleep ends the run continues where it stopped instead of replaying from the top.
//!
//! A run enters the cache only after its suspension is durably recorded, so the cache is
//! never the only copy of anything: evicting an entry (capacity, a long sleep, a restart)
//! only means the next execution replays the log, exactly as without a cache. An entry is
//! used only when the log still ends where the cached body left it (same length, same
//! attempt, status `sleeping`); if any other execution (another worker, a cancel, a retry)
//! appended in between, the entry is dropped and the run is replayed.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::{BoxFuture, CatchUnwind};
use serde_json::Value;

use crate::ctx::RunState;
use crate::error::WorkflowError;
use crate::event::RunId;

/// A workflow body being executed, with panics caught.
pub(crate) type RunBody =
    CatchUnwind<AssertUnwindSafe<BoxFuture<'static, Result<Value, WorkflowError>>>>;

/// The defaults of [`crate::EngineBuilder::hot_runs`].
pub(crate) const DEFAULT_CAPACITY: usize = 1024;
pub(crate) const DEFAULT_MAX_SLEEP: Duration = Duration::from_secs(60);

/// A suspended run kept in memory.
pub(crate) struct HotRun {
    pub(crate) state: Arc<RunState>,
    pub(crate) body: RunBody,
    /// The log's length right after the suspension was recorded.
    pub(crate) next_seq: u64,
    /// When the run is due (the earliest of its sleeps).
    wake_at: DateTime<Utc>,
    /// Insertion order, for evicting the oldest entry.
    tick: u64,
}

#[derive(Default)]
struct Entries {
    runs: HashMap<RunId, HotRun>,
    ticks: u64,
}

/// The engine's hot-run cache (see the module docs).
pub(crate) struct HotRuns {
    capacity: usize,
    max_sleep: Duration,
    entries: Mutex<Entries>,
}

impl HotRuns {
    pub(crate) fn new(capacity: usize, max_sleep: Duration) -> Self {
        HotRuns {
            capacity,
            max_sleep,
            entries: Mutex::new(Entries::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        // Inserts and removals only: a panic elsewhere cannot leave the map half-updated.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a run sleeping until `wake_at` may be kept (the cache is on and the sleep
    /// is short enough).
    pub(crate) fn accepts(&self, now: DateTime<Utc>, wake_at: DateTime<Utc>) -> bool {
        self.capacity > 0
            && (wake_at - now)
                .to_std()
                .map_or(true, |until| until <= self.max_sleep)
    }

    /// Keeps a suspended run whose suspension is recorded. When the cache is full it first
    /// drops the entries long past their wake-up time (another worker continued those
    /// runs) and, if none is, the oldest entry; below capacity an insert is one map insert.
    pub(crate) fn insert(
        &self,
        id: RunId,
        state: Arc<RunState>,
        body: RunBody,
        next_seq: u64,
        now: DateTime<Utc>,
        wake_at: DateTime<Utc>,
    ) {
        let mut evicted = Vec::new();
        {
            let mut entries = self.lock();
            if entries.runs.len() >= self.capacity && !entries.runs.contains_key(&id) {
                let stale_before = now
                    - chrono::TimeDelta::from_std(self.max_sleep.saturating_mul(2))
                        .unwrap_or(chrono::TimeDelta::MAX);
                let mut victims: Vec<RunId> = entries
                    .runs
                    .iter()
                    .filter(|(_, hot)| hot.wake_at < stale_before)
                    .map(|(id, _)| id.clone())
                    .collect();
                if victims.is_empty() {
                    victims.extend(
                        entries
                            .runs
                            .iter()
                            .min_by_key(|(_, hot)| hot.tick)
                            .map(|(id, _)| id.clone()),
                    );
                }
                for victim in victims {
                    evicted.extend(entries.runs.remove(&victim));
                }
            }
            entries.ticks += 1;
            let tick = entries.ticks;
            evicted.extend(entries.runs.insert(
                id,
                HotRun {
                    state,
                    body,
                    next_seq,
                    wake_at,
                    tick,
                },
            ));
        }
        // Dropping a body runs user destructors: never under the lock.
        drop(evicted);
    }

    /// Takes run `id`'s entry, if it has one.
    pub(crate) fn take(&self, id: &RunId) -> Option<HotRun> {
        self.lock().runs.remove(id)
    }

    /// The number of runs held.
    pub(crate) fn len(&self) -> usize {
        self.lock().runs.len()
    }

    /// Drops every entry (their runs replay from the log when they wake).
    pub(crate) fn clear(&self) {
        let runs = std::mem::take(&mut self.lock().runs);
        drop(runs);
    }
}
