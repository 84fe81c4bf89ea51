//! # reprise: durable async workflows for Rust
//!
//! Mark units of work with [`macro@action`] and orchestration with [`macro@workflow`].
//! The macros turn every step call in a workflow body into a *recorded step* with a
//! structural correlation id and schema checks; the [`Engine`] writes each finished step
//! to an event log and, after a crash, a retry or a long wait, runs the body again from
//! the top, answering finished steps from the log and going on live at the first
//! unfinished one.
//!
//! ```no_run
//! use reprise::prelude::*;
//!
//! #[derive(Clone, Serialize, Deserialize, JsonSchema)]
//! struct Signup { name: String, #[schemars(email)] email: String }
//!
//! #[derive(Clone, Serialize, Deserialize, JsonSchema)]
//! struct Brief { brief: String }
//!
//! /// Looks the new user up and writes a short brief.
//! #[action(retries = 3, backoff = "1s", timeout = "30s")]
//! async fn research_signup(input: Signup) -> Result<Brief, ActionError> {
//!     Ok(Brief { brief: format!("{} <{}>", input.name, input.email) })
//! }
//!
//! #[action]
//! async fn post_brief(input: Brief) -> Result<(), ActionError> { Ok(()) }
//!
//! #[workflow(slug = "signup-pipeline")]
//! async fn signup_pipeline(ctx: Ctx, input: Signup) -> Result<Brief, WorkflowError> {
//!     let brief = research_signup.run(input).await?;
//!     post_brief.run(brief.clone()).await?;
//!     ctx.sleep(std::time::Duration::from_secs(1)).await?; // durable: no process waits
//!     Ok(brief)
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), reprise::EngineError> {
//! let engine = Engine::builder().sqlite(".reprise/reprise.db")?.discover()?.build()?;
//! let brief = engine
//!     .run(&signup_pipeline, Signup { name: "Ada".into(), email: "ada@example.com".into() })
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! ## Map
//! - [`macro@action`], [`macro@workflow`]: the macros (options, rules, errors).
//! - [`Ctx`]: the workflow context; [`ActionCtx`]: the action context (idempotency key).
//! - [`Engine`]: start, execute, resume and cancel runs; [`store`]: the event log
//!   (memory, SQLite, Postgres with feature `postgres`) with leases and fencing tokens.
//! - [`Worker`]: claims due runs (started, woken from a durable sleep, a hook delivered or
//!   timed out, a retry due) and executes them; any number per store.
//! - [`Hook`]: wait for a payload from outside (`ctx.hook::<T>()`, `.timeout(d)`).
//! - [`trigger`]: cron schedules, webhook sources and poll sources that start runs.
//! - `http` (feature `http`): the HTTP API (axum) and its OpenAPI document.
//! - [`fan_out`]: bounded parallel steps.
//! - [`files`]: workflow files (Markdown with YAML front matter, or plain YAML) run as
//!   workflows by the same engine: [`files::format`] is the format (every key),
//!   [`files::format_schema`] its JSON Schema; [`EngineBuilder::workflow_dir`] loads a
//!   directory of them.
//! - `cli` (feature `cli`): the command line for your own binary, including `dev` (worker,
//!   scheduler and HTTP API in one process) and `worker`.
//!
//! ## Semantics in one paragraph
//! A step is *recorded* exactly once; its side effect runs at least once (a crash between
//! effect and record repeats it), which [`ActionCtx::idempotency_key`] makes safe.
//! Replayed steps are matched by correlation id, callee and input digest; any mismatch is
//! a non-determinism error that fails the run instead of replaying wrong data.
//! Correlation ids are `<site-key>#<n>`: the site key comes from the call's place in the
//! body (the callee's slug, `@2` for a second call site of the same callee, or
//! `#[step(id = "…")]`), never from line numbers, and `n` counts the site's runs.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod action_ctx;
mod clock;
pub mod cost;
pub mod credentials;
mod ctx;
mod delivery;
mod engine;
mod error;
pub mod event;
mod fan_out;
pub mod files;
pub mod graph;
mod hex;
mod history;
mod hook_token;
#[cfg(feature = "http")]
pub mod http;
pub mod identity;
mod live;
pub mod llm;
pub mod message;
pub mod metrics;
mod payload;
pub mod queue;
pub mod registry;
mod resources;
mod retry;
mod run_env;
mod run_keys;
pub mod schema;
mod step;
pub mod store;
pub mod subscriptions;
pub mod tags;
pub mod telemetry;
pub mod trigger;
mod usage;
mod wait;
mod worker;

#[cfg(feature = "cli")]
pub mod cli;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

/// A durable select inside a `#[workflow]` body: races steps, hooks, signal receives,
/// sleeps, child runs and event waits, and records the winner, so every replay takes the
/// same branch. The `#[workflow]` macro rewrites it; anywhere else it is a compile error.
///
/// ```ignore
/// reprise::select! {
///     payment = paid.recv() => { /* the signal came first */ }
///     _ = ctx.sleep("2d") => { /* two days passed */ }
///     shipped = ship_order.run(order.clone()) => { /* the step finished first */ }
/// }
/// ```
///
/// Each arm is `pattern = awaitable => body`; every branch's awaitable is created (and takes
/// its step id) before any is polled, in source order. The select is recorded under
/// `select#n` with its winner and, for each loser, whether it had started; a losing live
/// step is canceled (dropped) and its cancellation recorded. A recording error (a replay
/// that no longer fits the log) is returned with `?`, so the enclosing fn or block must
/// return a `Result` whose error converts from [`ActionError`].
#[macro_export]
macro_rules! select {
    ($($tokens:tt)*) => {
        ::core::compile_error!(
            "`reprise::select!` works only directly inside a `#[workflow]` body, which rewrites it into a durable select; outside one there is nothing to record the winner"
        )
    };
}

pub use action_ctx::ActionCtx;
pub use ctx::Ctx;
pub use ctx::Wait;
pub use ctx::child::{ChildRun, ParentClose, StartChild};
pub use ctx::event_wait::EventWait;
pub use ctx::hook::Hook;
pub use ctx::inline::InlineOptions;
pub use ctx::signal::{SIGNAL_REFUSED, Signal};
pub use ctx::sleep::{SleepDuration, WakeTime};
pub use ctx::update::{UpdateRequest, Updates};
pub use engine::{
    ActionOverride, CancelOutcome, Clock, Engine, EngineBuilder, Execution, FailedRun, Fault,
    MIN_HOOK_SECRET_LEN, OpenHook, PauseOutcome, RUN_EXPORT_FORMAT, ReplayMismatch, RetriedRun,
    RunExport, RunOutcome, RunTransition, StartOptions, StepStatus, StepSummary, SystemClock,
    UnpausedRun, judge_replay, summarize_steps, token_usage,
};
pub use engine::{ChildLink, DEFAULT_MAX_HISTORY_EVENTS, RunLinks, run_links_of};
pub use engine::{Emitted, MAX_EVENT_NAME_LEN, RejectedStart, started_by_event};
pub use engine::{ForkOptions, ForkedRun, forked_from, identity_of};
/// Token usage and cost from the event log (see [`cost`] for prices).
pub use engine::{ModelRequest, UsageQuery, UsageReport, UsageRow, model_requests, total_cost};
/// Retention: the sweep `dev` and `worker` run (see [`EngineBuilder::retention`]).
pub use engine::{PurgeReport, run_retention};
pub use engine::{QueueState, QueueWait};
pub use engine::{SignalTarget, key_of};
pub use error::{
    ActionError, Difference, EngineError, NonDeterminism, NonDeterminismCause, SchemaViolation,
    Violation, WorkflowError, kinds,
};
pub use event::{PauseReason, RunId, RunStatus, Trigger};
pub use fan_out::fan_out;
pub use llm::{Agent, AgentReply, LlmCall, prompt_llm};
/// Payload limits (see [`EngineBuilder::max_payload_bytes`]).
pub use payload::{DEFAULT_HISTORY_WARNING_BYTES, DEFAULT_MAX_PAYLOAD_BYTES};
pub use retry::RetryPolicy;
pub use step::{
    ActionOptions, OnMaxAttempts, Shape, ShapeArm, Site, SiteKind, Step, StepData, StepKind,
    SubscriptionSchema, WorkflowOptions,
};
pub use step::{MessageDecl, MessageKind, MessageSchemaFn};
pub use tags::{RunCursor, TagFilter, TagOp, TagValue};
pub use worker::{Worker, WorkerOptions, WorkerReport};

pub use reprise_macros::{action, workflow};

/// Everything a workflow file needs: `use reprise::prelude::*;`.
pub mod prelude {
    pub use crate::InlineOptions;
    pub use crate::{
        ActionCtx, ActionError, Agent, Ctx, Engine, Step, WorkflowError, action, fan_out,
        prompt_llm, workflow,
    };
    pub use schemars::JsonSchema;
    pub use serde::{Deserialize, Serialize};
}

/// Re-exported so generated code and users agree on versions.
pub use schemars;
/// Re-exported so generated code and users agree on versions.
pub use serde;
/// Re-exported so generated code and users agree on versions.
pub use serde_json;
