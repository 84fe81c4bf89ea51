//! Steps called by slug: a registered action or workflow named at run time (a workflow
//! file's `action:` and `workflow:` steps, an agent's tools given by slug), recorded by the
//! same adapter over the recorder as a typed `x.run(..)` ([`super::step::record_step`]):
//! the same ids, checks, retries, overrides and events, with the callee's JSON Schemas
//! (its input checked before it runs, its output after, a recorded output on replay) in
//! place of Rust types.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use serde_json::Value;

use super::Ctx;
use super::step::{AttemptPolicy, Expect, StepCall, action_ctx, attempts, record_step};
use crate::registry::{ActionEntry, Registry, WorkflowEntry};
use crate::schema::Validator;
use crate::step::StepKind;
use crate::{ActionError, RetryPolicy};

/// The error kind of a step that names no registered action or workflow (permanent).
pub(crate) const UNKNOWN_STEP: &str = "unknown_step";

/// A registered action or workflow, found by slug.
#[derive(Clone)]
pub(crate) enum Registered {
    /// An `#[action]`.
    Action(Arc<ActionEntry>),
    /// A `#[workflow]` or a workflow file.
    Workflow(Arc<WorkflowEntry>),
}

impl Registered {
    /// Its slug.
    pub(crate) fn slug(&self) -> &'static str {
        match self {
            Registered::Action(entry) => entry.registration.slug,
            Registered::Workflow(entry) => entry.registration.slug,
        }
    }

    /// Its description (the doc comment's first paragraph, a file's description).
    pub(crate) fn description(&self) -> &'static str {
        match self {
            Registered::Action(entry) => entry.registration.description,
            Registered::Workflow(entry) => entry.registration.description,
        }
    }

    /// Its input's JSON Schema.
    pub(crate) fn input_schema(&self) -> Value {
        match self {
            Registered::Action(entry) => (entry.registration.input_schema)(),
            Registered::Workflow(entry) => entry.input_schema().clone(),
        }
    }
}

/// The registry of the engine running `ctx`'s run.
fn registry(ctx: &Ctx) -> Option<&Registry> {
    ctx.run.env.service::<Registry>()
}

/// The action or workflow registered as `slug` on the engine running `ctx`.
///
/// # Errors
/// A permanent [`UNKNOWN_STEP`] error naming the slug (and what `what` is, e.g. `step
/// `fetch#0``) when none is registered.
pub(crate) fn find(ctx: &Ctx, slug: &str, what: &str) -> Result<Registered, ActionError> {
    let registry = registry(ctx);
    if let Some(entry) = registry.and_then(|r| r.action(slug)) {
        return Ok(Registered::Action(entry.clone()));
    }
    if let Some(entry) = registry.and_then(|r| r.workflow(slug)) {
        return Ok(Registered::Workflow(entry.clone()));
    }
    Err(ActionError::new(
        UNKNOWN_STEP,
        format!(
            "{what} calls `{slug}`, but no action or workflow is registered with that slug in \
             this engine; register it (`#[action]`/`#[workflow]` in the binary, or a workflow \
             file in the workflow directory) or correct the slug"
        ),
        false,
    ))
}

/// A file step's own retry policy and per-attempt limit, replacing the action's.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Overrides {
    /// Attempts and delays; `None`: the action's own.
    pub(crate) retry: Option<RetryPolicy>,
    /// Per-attempt limit; `None`: the action's own.
    pub(crate) timeout: Option<Duration>,
}

/// The input and output validators of action `entry`, compiled once per action type.
fn action_validators(entry: &ActionEntry) -> Result<(Arc<Validator>, Arc<Validator>), ActionError> {
    type Cache = RwLock<HashMap<TypeId, (Arc<Validator>, Arc<Validator>)>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Cache::default);
    let key = entry.registration.type_id();
    if let Some(found) = cache.read().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return Ok(found.clone());
    }
    let slug = entry.registration.slug;
    let compile = |schema: Value, what: String| {
        Validator::compile(schema, what)
            .map(Arc::new)
            .map_err(|e| ActionError::new(crate::error::kinds::SCHEMA, e.to_string(), false))
    };
    let pair = (
        compile(
            (entry.registration.input_schema)(),
            format!("input of action `{slug}`"),
        )?,
        compile(
            (entry.registration.output_schema)(),
            format!("output of action `{slug}`"),
        )?,
    );
    cache
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key)
        .or_insert_with(|| pair.clone());
    Ok(pair)
}

/// Runs `callee` with `input` as the recorded step `id` of the run in `ctx` (the typed
/// `x.run(..)`'s adapter, with the callee's schemas): an action with its retries and
/// timeout (`overrides` replace them) and any override of its body (`Engine::
/// override_action`, testkit stubs); a workflow inline as a sub-workflow (its steps under
/// `<id>/`). On replay, the recorded outcome.
///
/// # Errors
/// The step's error after its retries; kind `schema` naming each pointer when the input
/// or output does not match the callee's schema (the input is checked before the callee
/// runs, and the failure is recorded); the recorder's errors (non-determinism, a store
/// failure).
pub(crate) async fn execute_registered(
    ctx: &Ctx,
    id: &str,
    callee: &Registered,
    input: Value,
    overrides: Overrides,
) -> Result<Value, ActionError> {
    let identity = Ok::<Value, ActionError>;
    let copy = |output: &Value| Ok(output.clone());
    match callee {
        Registered::Action(entry) => {
            let (input_schema, output_schema) = action_validators(entry)?;
            let slug = entry.registration.slug;
            let options = entry.options;
            let mut policy = AttemptPolicy::from(options);
            if let Some(retry) = overrides.retry {
                policy.retry = retry;
            }
            if let Some(timeout) = overrides.timeout {
                policy.timeout = Some(timeout);
            }
            let call = entry.call;
            let step = StepCall {
                id,
                slug,
                kind: StepKind::Action,
                input,
                input_schema: Expect::Schema(&input_schema),
                output_schema: Expect::Schema(&output_schema),
            };
            let run = &ctx.run;
            record_step(ctx, step, identity, copy, |input| async move {
                let attempt_once = |attempt: u32| {
                    let cx = action_ctx(run, id, slug, attempt, options.credentials);
                    let input = Value::clone(&input);
                    match run.env.action_override(slug) {
                        None => call(input, cx),
                        Some(stub) => stub(input, cx),
                    }
                };
                attempts(run, id, slug, policy, attempt_once).await
            })
            .await
        }
        Registered::Workflow(entry) => {
            let slug = entry.registration.slug;
            let step = StepCall {
                id,
                slug,
                kind: StepKind::Workflow,
                input,
                input_schema: Expect::Schema(&entry.input),
                output_schema: Expect::Schema(&entry.output),
            };
            let body = entry.body.clone();
            record_step(ctx, step, identity, copy, |input| async move {
                let input = Arc::try_unwrap(input).unwrap_or_else(|shared| Value::clone(&shared));
                super::step::run_sub_workflow(ctx, id, slug, |child| body(child, input)).await
            })
            .await
        }
    }
}
