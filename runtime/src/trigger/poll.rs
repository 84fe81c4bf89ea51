//! Poll sources: [`PollSource`], [`PollBatch`], [`PollItem`].

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::Value;

use super::{guarded, panic_message};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::event::{RunId, Trigger};

/// A poll function: given the stored cursor (`None` on the first poll), fetches what is
/// new. `Err(message)` is logged and the poll is tried again at the next interval.
pub type PollFn =
    Arc<dyn Fn(Option<Value>) -> BoxFuture<'static, Result<PollBatch, String>> + Send + Sync>;

/// One new thing found by a poll: starts one run, once.
#[derive(Clone, Debug, PartialEq)]
pub struct PollItem {
    /// A stable, unique id of the item at its source (a message id, a row key, a URL):
    /// the run is keyed `poll:<source>:<id>`, so an item seen again never starts a second run.
    pub id: String,
    /// The workflow's input for this item (checked against its input schema).
    pub input: Value,
}

impl PollItem {
    /// An item with id `id` and workflow input `input`.
    pub fn new(id: impl Into<String>, input: Value) -> PollItem {
        PollItem {
            id: id.into(),
            input,
        }
    }
}

/// What one poll found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PollBatch {
    /// New items, each starting one run (in this order).
    pub items: Vec<PollItem>,
    /// The cursor to store once every item has started its run, passed to the next poll;
    /// `None` keeps the stored one.
    pub cursor: Option<Value>,
}

/// A poll source: calls a function every `every` with a durable cursor and starts one run
/// of a workflow per new item it returns.
///
/// Each item's run is created with [`Trigger::Poll`] under the key `poll:<name>:<id>`, so
/// it starts at most once even when the item comes back (a cursor write lost in a crash,
/// two processes polling, a source that returns overlapping pages). Once the items have
/// their runs, the batch's cursor is stored durably as `poll:<name>` and handed to the
/// next poll, also after a restart.
///
/// ```no_run
/// # fn demo() -> Result<(), reprise::EngineError> {
/// use std::time::Duration;
/// use reprise::trigger::{PollBatch, PollItem, PollSource};
/// use serde_json::json;
///
/// let inbox = PollSource::new("inbox", "triage-email", Duration::from_secs(60), |cursor| async move {
///     let since = cursor.and_then(|c| c.as_u64()).unwrap_or(0);
///     let ids: Vec<u64> = vec![since + 1, since + 2]; // fetch new messages here
///     Ok(PollBatch {
///         items: ids.iter().map(|id| PollItem::new(id.to_string(), json!({ "id": id }))).collect(),
///         cursor: ids.last().map(|id| json!(id)),
///     })
/// });
/// let engine = reprise::Engine::builder().discover()?.poll(inbox).build()?;
/// # Ok(()) }
/// ```
pub struct PollSource {
    pub(crate) name: String,
    pub(crate) workflow: String,
    pub(crate) every: Duration,
    poll: PollFn,
    /// When this process polls next (`None`: at once). Held while polling, so one process
    /// never polls a source twice at the same time.
    next_due: tokio::sync::Mutex<Option<DateTime<Utc>>>,
}

impl fmt::Debug for PollSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PollSource")
            .field("name", &self.name)
            .field("workflow", &self.workflow)
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

impl PollSource {
    /// A source named `name` (unique among poll sources; letters, digits, `-`, `_`, `.`)
    /// that calls `poll` with the stored cursor when the scheduler starts and then every
    /// `every` (on the engine's clock; must not be zero), starting workflow `workflow`
    /// once per item.
    ///
    /// The poll function should bound its own time (e.g. a request timeout): the
    /// scheduler waits for it.
    pub fn new<F, Fut>(
        name: impl Into<String>,
        workflow: impl Into<String>,
        every: Duration,
        poll: F,
    ) -> PollSource
    where
        F: Fn(Option<Value>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<PollBatch, String>> + Send + 'static,
    {
        PollSource {
            name: name.into(),
            workflow: workflow.into(),
            every,
            poll: Arc::new(move |cursor| poll(cursor).boxed()),
            next_due: tokio::sync::Mutex::new(None),
        }
    }

    /// The source's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The slug of the workflow it starts.
    pub fn workflow(&self) -> &str {
        &self.workflow
    }

    /// The interval between polls.
    pub fn every(&self) -> Duration {
        self.every
    }

    /// The name of its durable cursor: `poll:<name>`.
    pub fn cursor_name(&self) -> String {
        format!("poll:{}", self.name)
    }

    /// The `create_run_once` key of item `id`: `poll:<name>:<id>`.
    pub fn run_key(&self, id: &str) -> String {
        format!("poll:{}:{id}", self.name)
    }

    /// When this process polls next (`None`: at once, or a poll is in progress).
    pub(crate) fn next_due(&self) -> Option<DateTime<Utc>> {
        self.next_due.try_lock().ok().and_then(|due| *due)
    }

    /// Polls if due at the engine's `now`; returns the runs it created. A failing poll
    /// function is logged and retried at the next interval.
    pub(crate) async fn fire_due(&self, engine: &Engine) -> Result<Vec<RunId>, EngineError> {
        // Another task of this process is polling this source right now: leave it to it.
        let Ok(mut next_due) = self.next_due.try_lock() else {
            return Ok(Vec::new());
        };
        let now = engine.now();
        if next_due.is_some_and(|due| due > now) {
            return Ok(Vec::new());
        }
        let every = chrono::Duration::from_std(self.every).unwrap_or(chrono::Duration::MAX);
        *next_due = Some(
            now.checked_add_signed(every)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        );

        let store = engine.store();
        let cursor_name = self.cursor_name();
        let cursor = store.cursor(&cursor_name).await?;
        let batch = match self.call(cursor).await {
            Ok(batch) => batch,
            Err(message) => {
                tracing::warn!(source = %self.name, "poll failed, trying again in {:?}: {message}", self.every);
                return Ok(Vec::new());
            }
        };
        let mut started = Vec::new();
        for item in batch.items {
            let key = self.run_key(&item.id);
            let options = crate::StartOptions::new().actor(crate::identity::Actor::Poll {
                source: self.name.clone(),
                item_id: item.id.clone(),
            });
            match engine
                .start_occurrence(&self.workflow, item.input, Trigger::Poll, &key, options)
                .await
            {
                Ok(runs) => {
                    for (id, created) in runs {
                        if created {
                            tracing::info!(source = %self.name, item = %item.id, run = %id, "poll item started a run");
                            started.push(id);
                        } else {
                            tracing::debug!(source = %self.name, item = %item.id, run = %id, "poll item already started a run");
                        }
                    }
                }
                Err(error @ (EngineError::Schema(_) | EngineError::UnknownWorkflow(_))) => {
                    // Retrying would fail the same way forever: report and go on.
                    tracing::error!(source = %self.name, item = %item.id, "poll item skipped: {error}");
                }
                Err(error) => {
                    // The cursor stays where it was: the next poll returns the item again,
                    // and items that did start are recognized by their keys.
                    *next_due = None;
                    return Err(error);
                }
            }
        }
        if let Some(cursor) = batch.cursor {
            store.set_cursor(&cursor_name, &cursor).await?;
        }
        Ok(started)
    }

    async fn call(&self, cursor: Option<Value>) -> Result<PollBatch, String> {
        let future = guarded(|| (self.poll)(cursor))?;
        AssertUnwindSafe(future)
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| Err(format!("panicked: {}", panic_message(&*panic))))
    }
}
