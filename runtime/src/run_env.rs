//! [`RunEnv`]: what an executing run needs from its engine — the store, the clock, action
//! overrides, resources, hook keys, the announcement of status changes — and nothing else
//! (DESIGN "Recorder": workflow bodies never hold the engine).
//!
//! The engine owns one and hands an `Arc` of it to every run it executes; `Ctx` and
//! `ActionCtx` hold that, so a workflow body cannot start, cancel or list runs by
//! reaching into the engine, and this module depends on nothing above the store.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::event::{RunId, RunStatus};
use crate::resources::Resources;
use crate::store::SharedStore;

/// A replacement body for an action, by slug: JSON in, JSON out. See
/// [`crate::Engine::override_action`].
pub type ActionOverride = Arc<
    dyn Fn(
            Value,
            crate::ActionCtx,
        ) -> futures::future::BoxFuture<'static, Result<Value, crate::ActionError>>
        + Send
        + Sync,
>;

/// A deliberate engine fault, for proving that checkers catch broken engines. Never use
/// in production.
#[doc(hidden)]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// No fault.
    #[default]
    None,
    /// Runs step `id` live but never appends its completion.
    SkipStepRecord(String),
}

/// A run changed status (sent on [`crate::Engine::subscribe`]).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunTransition {
    /// The run.
    pub run_id: RunId,
    /// Its workflow's slug.
    pub workflow: String,
    /// The new status.
    pub status: RunStatus,
    /// When (engine clock).
    pub at: DateTime<Utc>,
}

/// The switches of one execution of a run: `cancel` ends the run `canceled` at its next
/// step boundary (running actions see it through `ActionCtx::cancellation`); `drain` stops
/// it at its next step boundary and hands it back to the queue (worker shutdown); `pause`
/// stops it at its next step boundary and marks it `paused` (`runs pause`).
#[derive(Clone, Debug, Default)]
pub(crate) struct RunControl {
    pub(crate) cancel: CancellationToken,
    pub(crate) drain: CancellationToken,
    pub(crate) pause: CancellationToken,
    /// Who asked for the pause (recorded in `run_paused`).
    pause_by: Arc<Mutex<Option<String>>>,
    /// Set when the execution writes its last append with the release of its lease
    /// (`Append::release`), before the write: see [`RunControl::releasing`].
    releasing: Arc<AtomicBool>,
}

impl RunControl {
    /// Asks the execution to pause at its next step boundary; the first asker is recorded.
    pub(crate) fn request_pause(&self, by: &str) {
        let mut pause_by = self.pause_by.lock().unwrap_or_else(|p| p.into_inner());
        if pause_by.is_none() {
            *pause_by = Some(by.to_owned());
        }
        drop(pause_by);
        self.pause.cancel();
    }

    /// Marks that the execution's last append gives its lease back (set before the append
    /// is sent).
    pub(crate) fn set_releasing(&self) {
        self.releasing.store(true, Ordering::Release);
    }

    /// Whether the execution's last append gives its lease back (it was sent; it may still
    /// fail). Then a lease found gone is not a takeover but this append's doing (or, if
    /// it was a takeover, the append fails with [`crate::EngineError::LeaseLost`] by
    /// itself), and the executor must not release the lease again after a successful end.
    pub(crate) fn releasing(&self) -> bool {
        self.releasing.load(Ordering::Acquire)
    }

    /// Who asked for the pause (`unknown` when nobody said).
    pub(crate) fn paused_by(&self) -> String {
        self.pause_by
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| "unknown".to_owned())
    }
}

/// Engine parts that live in modules above [`RunEnv`]'s, by type.
pub(crate) type Services = HashMap<TypeId, Arc<dyn Any + Send + Sync>>;

/// What runs need from the engine that executes them (see the module docs).
pub(crate) struct RunEnv {
    pub(crate) store: SharedStore,
    pub(crate) clock: Arc<dyn Clock>,
    overrides: RwLock<HashMap<String, ActionOverride>>,
    pub(crate) replay_only: bool,
    pub(crate) fault: Fault,
    pub(crate) resources: Arc<Resources>,
    /// Engine parts that live in modules above this one (the LLM router), by type.
    services: Services,
    hook_secret: Vec<u8>,
    public_url: String,
    transitions: tokio::sync::broadcast::Sender<RunTransition>,
    /// Woken when a run may have become due (started, hook delivered, canceled).
    pub(crate) wake: tokio::sync::Notify,
    /// What this engine counted (`GET /metrics`).
    pub(crate) metrics: crate::metrics::Metrics,
    /// Prices of model tokens.
    pub(crate) prices: crate::cost::PriceTable,
    /// Live notifications of watched runs (new events, LLM token deltas), for streams.
    pub(crate) live: crate::live::LiveHub,
}

/// The parts of a [`RunEnv`], set by the engine builder.
pub(crate) struct RunEnvParts {
    pub(crate) store: SharedStore,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) replay_only: bool,
    pub(crate) fault: Fault,
    pub(crate) resources: Arc<Resources>,
    pub(crate) services: Services,
    pub(crate) hook_secret: Vec<u8>,
    pub(crate) public_url: String,
    pub(crate) prices: crate::cost::PriceTable,
}

impl RunEnv {
    pub(crate) fn new(parts: RunEnvParts) -> Self {
        RunEnv {
            store: parts.store,
            clock: parts.clock,
            overrides: RwLock::new(HashMap::new()),
            replay_only: parts.replay_only,
            fault: parts.fault,
            resources: parts.resources,
            services: parts.services,
            hook_secret: parts.hook_secret,
            public_url: parts.public_url,
            transitions: tokio::sync::broadcast::channel(1024).0,
            wake: tokio::sync::Notify::new(),
            metrics: crate::metrics::Metrics::new(),
            prices: parts.prices,
            live: crate::live::LiveHub::default(),
        }
    }

    /// A copy for a replay-only engine reading time from `clock`: a fresh in-memory store,
    /// the same resources, LLM router, hook secret and public URL (so hook tokens and
    /// resume URLs, and the step inputs made from them, replay identically), no action
    /// overrides, no fault.
    pub(crate) fn for_replay(&self, clock: Arc<dyn Clock>) -> RunEnv {
        RunEnv::new(RunEnvParts {
            store: Arc::new(crate::store::MemoryStore::new()),
            clock,
            replay_only: true,
            fault: Fault::None,
            resources: self.resources.clone(),
            services: self.services.clone(),
            hook_secret: self.hook_secret.clone(),
            public_url: self.public_url.clone(),
            prices: self.prices.clone(),
        })
    }

    /// Now, on the engine's clock.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The deliberate fault, if any.
    pub(crate) fn fault(&self) -> &Fault {
        &self.fault
    }

    /// The engine part of type `T` (see [`RunEnvParts::services`]).
    pub(crate) fn service<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.services
            .get(&TypeId::of::<T>())
            .and_then(|s| s.downcast_ref::<T>())
    }

    /// Replaces (or, with `None`, restores) the body of action `slug`.
    pub(crate) fn override_action(&self, slug: &str, body: Option<ActionOverride>) {
        let mut overrides = self.overrides.write().unwrap_or_else(|p| p.into_inner());
        match body {
            Some(body) => overrides.insert(slug.to_owned(), body),
            None => overrides.remove(slug),
        };
    }

    /// The replacement body of action `slug`, if any.
    pub(crate) fn action_override(&self, slug: &str) -> Option<ActionOverride> {
        let overrides = self.overrides.read().unwrap_or_else(|p| p.into_inner());
        if overrides.is_empty() {
            return None;
        }
        overrides.get(slug).cloned()
    }

    /// The secret hook tokens are derived from.
    pub(crate) fn hook_secret(&self) -> &[u8] {
        &self.hook_secret
    }

    /// The token of hook `correlation_id` of run `run_id`.
    pub(crate) fn hook_token(&self, run_id: &RunId, correlation_id: &str) -> String {
        crate::hook_token::hook_token(&self.hook_secret, run_id.as_str(), correlation_id)
    }

    /// `<public-url>/hooks/<token>`.
    pub(crate) fn hook_resume_url(&self, run_id: &RunId, correlation_id: &str) -> String {
        let token = self.hook_token(run_id, correlation_id);
        format!("{}/hooks/{token}", self.public_url.trim_end_matches('/'))
    }

    /// Tells subscribers that run `id` is now `status` (and its live watchers that it has
    /// new events); a queued run wakes the workers.
    pub(crate) fn announce(&self, id: &RunId, workflow: &str, status: RunStatus) {
        self.metrics.run_transition(workflow, status);
        self.live.publish(id, crate::live::Live::Appended);
        let _ = self.transitions.send(RunTransition {
            run_id: id.clone(),
            workflow: workflow.to_owned(),
            status,
            at: self.now(),
        });
        if status == RunStatus::Queued {
            self.wake.notify_waiters();
        }
    }

    /// Tells subscribers that run `id` was created (queued) and counts it as started.
    pub(crate) fn announce_created(&self, id: &RunId, workflow: &str) {
        self.metrics.run_started(workflow);
        self.announce(id, workflow, RunStatus::Queued);
    }

    /// A receiver of every status transition from now on.
    pub(crate) fn subscribe(&self) -> tokio::sync::broadcast::Receiver<RunTransition> {
        self.transitions.subscribe()
    }
}
