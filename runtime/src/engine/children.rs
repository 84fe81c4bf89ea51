//! The engine's side of child runs and continue-as-new (the body's side is in
//! `ctx::child` and `ctx::continue_as_new`):
//! - when a run ends, its outcome goes to its parent's inbox and its attached children are
//!   canceled by their [`ParentClose`] policy ([`Engine::after_run_end`]);
//! - a run that called `ctx.continue_as_new(..)` continues as a new run (exactly once),
//!   handing on its business key and unreceived messages;
//! - the history cap ([`EngineBuilder::max_history_events`]);
//! - the links shown on a run ([`Engine::run_links`]).

use serde::Serialize;
use serde_json::{Value, json};

use super::{Engine, EngineBuilder, RunOutcome};
use crate::ctx::RunState;
use crate::ctx::child::{CHILD_KIND, ParentClose, is_start_id, post_result};
use crate::ctx::continue_as_new::CONTINUED_AS;
use crate::error::{EngineError, WorkflowError};
use crate::event::{
    Event, EventKind, EventPayload, NewEvent, ParentRun, RunId, RunRecord, RunStatus, Trigger,
};
use crate::message::NewMessage;
use crate::registry::{Registry, WorkflowEntry};

/// The default history cap: 100,000 events (about 50,000 steps).
pub const DEFAULT_MAX_HISTORY_EVENTS: u64 = 100_000;

/// The engine-wide history cap (an engine part, see `EngineBuilder::extension_mut`).
#[derive(Clone, Copy, Debug)]
struct HistoryCap(u64);

impl Default for HistoryCap {
    fn default() -> Self {
        HistoryCap(DEFAULT_MAX_HISTORY_EVENTS)
    }
}

fn check_cap(_: &Registry, _: &super::BuilderParts) -> Result<(), EngineError> {
    Ok(())
}

impl EngineBuilder {
    /// The most events a run's log may hold (default [`DEFAULT_MAX_HISTORY_EVENTS`]; 0
    /// turns the cap off); a workflow's `#[workflow(max_history_events = N)]` overrides it.
    /// A run whose steps would take its log past the cap fails, not retried, with kind
    /// `history_too_large` and the advice to loop with `ctx.continue_as_new(..)`: every
    /// resume replays the whole log, so an unbounded loop must start fresh now and then.
    #[must_use]
    pub fn max_history_events(mut self, events: u64) -> Self {
        self.extension_mut::<HistoryCap>(check_cap).0 = events;
        self
    }
}

/// How a run is linked to others (`GET /runs/{id}`, `runs get`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RunLinks {
    /// The run that started this one as a child run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentRun>,
    /// The child runs this run started, in start order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<ChildLink>,
    /// The run this one continues (`ctx.continue_as_new`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub continued_from: Option<RunId>,
    /// The run this one continued as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub continued_as: Option<RunId>,
}

/// One child run, as its parent's log recorded its start.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChildLink {
    /// The child's run id.
    pub run_id: RunId,
    /// The parent's start step (`start:ship-order#0`).
    pub step: String,
    /// The child's workflow.
    pub workflow: String,
    /// Whether it was started detached (it outlives the parent).
    pub detached: bool,
    /// What becomes of it when the parent ends first.
    pub on_parent_close: ParentClose,
}

/// The child starts a run's log records.
pub(crate) fn child_links(events: &[Event]) -> Vec<ChildLink> {
    let mut started: Vec<(String, Value)> = Vec::new();
    let mut links = Vec::new();
    for event in events {
        let Some(id) = event.event.correlation_id.as_deref() else {
            continue;
        };
        if !is_start_id(id) {
            continue;
        }
        match event.event.kind {
            EventKind::StepStarted
                if event.event.payload.get("kind").and_then(Value::as_str) == Some(CHILD_KIND) =>
            {
                let input = event
                    .event
                    .payload
                    .get("input")
                    .cloned()
                    .unwrap_or_default();
                started.push((id.to_owned(), input));
            }
            EventKind::StepCompleted => {
                let Some(child) = event
                    .event
                    .payload
                    .get("output")
                    .and_then(|o| o.get("run_id"))
                    .and_then(Value::as_str)
                else {
                    continue;
                };
                let Some((_, input)) = started.iter().rev().find(|(s, _)| s == id) else {
                    continue;
                };
                links.push(ChildLink {
                    run_id: RunId::from(child),
                    step: id.to_owned(),
                    workflow: input
                        .get("workflow")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    detached: input
                        .get("detached")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    on_parent_close: input
                        .get("on_parent_close")
                        .and_then(|p| serde_json::from_value(p.clone()).ok())
                        .unwrap_or_default(),
                });
            }
            _ => {}
        }
    }
    links
}

/// The `run_created` payload of a log, decoded.
fn created(events: &[Event]) -> Option<EventPayload> {
    let first = events.first()?;
    if first.event.kind != EventKind::RunCreated {
        return None;
    }
    EventPayload::decode(first.event.kind, &first.event.payload).ok()
}

impl Engine {
    /// The history cap of `entry`'s runs (0: none).
    pub(crate) fn history_cap(&self, entry: &WorkflowEntry) -> u64 {
        entry
            .options
            .max_history_events
            .or_else(|| self.extension::<HistoryCap>().map(|cap| cap.0))
            .unwrap_or(DEFAULT_MAX_HISTORY_EVENTS)
    }

    /// How run `id` is linked to others: its parent, its children, the runs it continues
    /// and continued as.
    ///
    /// # Errors
    /// [`EngineError::UnknownRun`]; store failures.
    pub async fn run_links(&self, id: &RunId) -> Result<RunLinks, EngineError> {
        let record = self.get_run(id).await?;
        let events = self.events(id).await?;
        Ok(run_links_of(&record, &events))
    }

    /// What to do once run `id` has ended (completed, failed or canceled): post its outcome
    /// to its parent, cancel its attached children whose policy is [`ParentClose::Cancel`].
    /// `state` is the execution that ended it, if any: it tells whether the log must be
    /// read at all. Failures are logged (with the run id), never returned: the run has
    /// ended either way, and an awaiting parent reads the child's record itself.
    pub(crate) fn after_run_end<'a>(
        &'a self,
        id: &'a RunId,
        state: Option<&RunState>,
    ) -> futures::future::BoxFuture<'a, ()> {
        if let Some(state) = state {
            if state.replay_only() {
                return Box::pin(std::future::ready(())); // a replay check tells nobody
            }
            let linked = matches!(state.trigger, Trigger::Child | Trigger::ContinueAsNew)
                || state.started_children();
            if !linked {
                return Box::pin(std::future::ready(()));
            }
        }
        // Boxed: canceling a child ends it, which propagates its own end in turn.
        Box::pin(async move {
            if let Err(error) = self.propagate_end(id).await {
                tracing::warn!(
                    run = %id,
                    %error,
                    "the run ended, but its parent or children could not be told; an awaiting \
                     parent reads the child's record when it next runs"
                );
            }
        })
    }

    async fn propagate_end(&self, id: &RunId) -> Result<(), EngineError> {
        let record = self.get_run(id).await?;
        let events = self.events(id).await?;
        if let Some(EventPayload::RunCreated {
            parent: Some(parent),
            ..
        }) = created(&events)
        {
            let started = parent.started.clone().unwrap_or_else(|| id.clone());
            post_result(&**self.store(), &record, &parent.run_id, &started).await?;
            self.wake_workers(); // the parent may be queued now
        }
        for child in child_links(&events) {
            if child.detached || child.on_parent_close != ParentClose::Cancel {
                continue;
            }
            let Some(child_record) = self.store().run(&child.run_id).await? else {
                continue;
            };
            if child_record.status.is_terminal() {
                continue;
            }
            match self.cancel(&child.run_id).await {
                Ok(_) => tracing::info!(
                    run = %id,
                    child = %child.run_id,
                    "parent run ended: its child run is canceled (ParentClose::Cancel)"
                ),
                Err(EngineError::InvalidState { .. }) => {} // it ended meanwhile
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Continues the run of `state` as a new run with `input` (it called
    /// `ctx.continue_as_new(input)`): creates the new run once (key
    /// `continue:<old-run-id>`), hands on the business key and the unreceived messages,
    /// and returns the old run's output `{"continued_as": <new id>}` — or the error that
    /// fails the old run instead (an input the workflow's schema rejects).
    ///
    /// # Errors
    /// Store failures (the run is left as it is and resumes later, finding the same new
    /// run).
    pub(crate) async fn continue_as_new(
        &self,
        state: &RunState,
        entry: &WorkflowEntry,
        input: Value,
        new: RunId,
    ) -> Result<Result<Value, WorkflowError>, EngineError> {
        let old = &state.run_id;
        let slug = entry.registration.slug;
        if let Err(violation) = entry.input.validate(&input) {
            let mut error = WorkflowError::from(crate::ActionError::from(violation));
            error.message = format!("the input of ctx.continue_as_new(..): {}", error.message);
            return Ok(Err(error));
        }
        if let Err(error) = self
            .payload_limits()
            .check(|| "the input of ctx.continue_as_new(..)".to_owned(), &input)
        {
            return Ok(Err(WorkflowError::from(crate::payload::too_large_error(
                error,
            ))));
        }
        let events = self.events(old).await?;
        let old_created = events.first().map(|e| e.event.payload.clone());
        let parent = match created(&events) {
            Some(EventPayload::RunCreated {
                parent: Some(parent),
                ..
            }) => Some(ParentRun {
                started: Some(parent.started.clone().unwrap_or_else(|| old.clone())),
                ..parent
            }),
            _ => None,
        };
        // The recorded id is durable before the run is created under it.
        state.flush_pending().await?;
        let now = self.now();
        // The continuation goes through the workflow's queue (its key read from the new
        // input) as a new start does.
        let entry = self.workflow(slug)?;
        let queue = crate::queue::QueueSettings::of(&self.inner.env)
            .place(
                slug,
                entry.options.queue,
                &crate::queue::QueueRequest::default(),
                &input,
            )
            .map_err(EngineError::Serde)?
            .map(|(placed, _)| placed);
        let record = RunRecord {
            id: new,
            workflow: slug.to_owned(),
            status: RunStatus::Queued,
            input: input.clone(),
            output: None,
            error: None,
            attempt: 0,
            trigger: Trigger::ContinueAsNew,
            created_at: now,
            updated_at: now,
            wake_at: None,
            next_seq: 1,
            queue: queue.clone(),
        };
        // The business key (recorded in `run_created` as `key`) goes with the run.
        let key = old_created
            .as_ref()
            .and_then(|p| p.get("key"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let created_event = NewEvent::new(
            None,
            0,
            now,
            EventPayload::RunCreated {
                workflow: slug.to_owned(),
                input,
                trigger: Trigger::ContinueAsNew,
                start_at: None,
                forked_from: None,
                traceparent: None,
                parent,
                continued_from: Some(old.clone()),
                queue: queue.map(Box::new),
                key: key.clone(),
                event: None,
                // The continuation is the same logical run: it keeps who started it and
                // whom it acts for.
                identity: old_created
                    .as_ref()
                    .and_then(crate::event::recorded_identity)
                    .map(Box::new),
            },
        );
        let new = record.id.clone();
        let new = match self
            .store()
            .create_run_once(&format!("continue:{old}"), record, created_event)
            .await?
        {
            Some(existing) => existing,
            None => {
                self.env().announce_created(&new, slug);
                new
            }
        };
        if let Some(key) = &key {
            self.store()
                .set_run_key(&crate::run_keys::business_key(slug, key), &new)
                .await?;
        }
        self.forward_messages(old, &new, &events).await?;
        tracing::info!(run = %old, continued_as = %new, "run continues as a new run");
        Ok(Ok(json!({ CONTINUED_AS: new })))
    }

    /// Posts the messages of `old`'s inbox that its log never received to `new`, in order
    /// (de-duplicated by `forward:<old>:<seq>`). Child results stay behind: they answer
    /// starts of the old run only.
    async fn forward_messages(
        &self,
        old: &RunId,
        new: &RunId,
        events: &[Event],
    ) -> Result<(), EngineError> {
        let received: std::collections::HashSet<u64> = events
            .iter()
            .filter(|e| e.event.kind == EventKind::StepCompleted)
            .filter(|e| {
                e.event
                    .payload
                    .get("callee")
                    .and_then(Value::as_str)
                    .is_some_and(|c| c.starts_with(crate::ctx::inbox::RECEIPT_PREFIX))
            })
            .filter_map(|e| e.event.payload.get("output")?.get("seq")?.as_u64())
            .collect();
        let messages = match self.store().messages(old, 0).await {
            Ok(messages) => messages,
            // A store that keeps no inbox has nothing to forward.
            Err(EngineError::Config(_)) => return Ok(()),
            Err(error) => return Err(error),
        };
        for message in messages {
            if received.contains(&message.seq) || message.channel.starts_with("child:") {
                continue;
            }
            self.store()
                .post_message(NewMessage {
                    run_id: new.clone(),
                    channel: message.channel,
                    payload: message.payload,
                    dedupe: Some(format!("forward:{old}:{}", message.seq)),
                    at: message.at,
                })
                .await?;
        }
        Ok(())
    }

    /// Ends the run of `state` if it called `ctx.continue_as_new(..)`: `Some(outcome)` once
    /// recorded (`completed` with `{"continued_as"}`), or the error that fails it instead;
    /// `None` when it did not call it.
    ///
    /// # Errors
    /// Store failures.
    pub(crate) async fn finish_continued(
        &self,
        state: &RunState,
        entry: &WorkflowEntry,
    ) -> Result<Option<Result<RunOutcome, WorkflowError>>, EngineError> {
        let Some((input, new)) = state.continue_with() else {
            return Ok(None);
        };
        let output = if state.replay_only() {
            // A replay check creates nothing: the recorded id is the outcome.
            json!({ CONTINUED_AS: new })
        } else {
            match self.continue_as_new(state, entry, input, new).await? {
                Ok(output) => output,
                Err(error) => return Ok(Some(Err(error))),
            }
        };
        Ok(Some(Ok(
            super::execute::record_completed(state, output).await?
        )))
    }
}

/// How a run is linked to others (see [`RunLinks`]), from its record and its log.
pub fn run_links_of(record: &RunRecord, events: &[Event]) -> RunLinks {
    let (parent, continued_from) = match created(events) {
        Some(EventPayload::RunCreated {
            parent,
            continued_from,
            ..
        }) => (parent, continued_from),
        _ => (None, None),
    };
    RunLinks {
        parent,
        children: child_links(events),
        continued_from,
        continued_as: crate::ctx::child::continued_as(record),
    }
}
