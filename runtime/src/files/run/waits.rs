//! Steps that wait: `sleep`, `sleep_until`, `hook`, `signal`, `event`, and the durable
//! races `select`, `parallel: any|N` and a step's `timeout` go through.
//!
//! Each fn takes its correlation id when called (synchronously); the returned future
//! waits. Each is an adapter over the recorded primitive a `#[workflow]` body uses
//! (`ctx.sleep`, `ctx.hook`, signal receives, event waits, `select!`, `.timeout(..)`), at
//! the step's site: its id is the step id (`approve#0`), not the primitive's default key.

use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::Value;

use crate::ctx::select::Branch;
use crate::files::manifest::TIMEOUT_SUFFIX;
use crate::schema::Validator;
use crate::step::Site;
use crate::{ActionError, Ctx};

/// The result of a step future: what select branches race.
pub(crate) type StepFuture = BoxFuture<'static, Result<Value, ActionError>>;

/// `sleep: <duration>` (humantime text). Output: `null`.
pub(crate) fn sleep(ctx: &Ctx, site: &'static Site, duration: &str) -> StepFuture {
    crate::ctx::sleep::sleep(ctx, site, duration.to_owned())
        .map(|slept| slept.map(|()| Value::Null))
        .boxed()
}

/// `sleep_until: <RFC 3339 time>`. Output: `null`.
pub(crate) fn sleep_until(ctx: &Ctx, site: &'static Site, time: &str) -> StepFuture {
    crate::ctx::sleep::sleep_until(ctx, site, time)
        .map(|slept| slept.map(|()| Value::Null))
        .boxed()
}

/// `hook: <label>`: waits for a payload (validated against `schema` when it is delivered:
/// a payload that does not match is refused and the hook stays open), at most `timeout`
/// (the hook's own recorded deadline: then an error of kind `timeout`, and a later
/// delivery is refused). Output: the payload.
pub(crate) fn hook(
    ctx: &Ctx,
    site: &'static Site,
    label: &str,
    schema: Option<&Value>,
    timeout: Option<Duration>,
) -> StepFuture {
    let _ = label; // shown by the surfaces from the file; the log keys the hook by its id
    let mut hook = crate::ctx::hook::hook::<Value>(ctx, site);
    if let Some(schema) = schema {
        hook = hook.schema(schema.clone());
    }
    if let Some(timeout) = timeout {
        hook = hook.timeout(timeout);
    }
    std::future::IntoFuture::into_future(hook)
}

/// The correlation id of the timeout race of the wait at `site` (`<id>.timeout#n`, the
/// manifest's `<id>.timeout` site), taken now.
fn timeout_id(ctx: &Ctx, site: &'static Site) -> String {
    ctx.next_id(&format!("{}{TIMEOUT_SUFFIX}", site.key("")))
}

/// `wait` raced against a durable timer of `limit` as select `id` (see [`timeout`]).
fn limited(ctx: &Ctx, id: String, wait: StepFuture, limit: Duration) -> StepFuture {
    crate::ctx::timeout::timeout_as(ctx.clone(), id, wait, limit).boxed()
}

/// Compiles a step's payload `schema`, naming `what` (`payload of signal step `paid#0``).
fn compile(schema: Option<&Value>, what: &str) -> Result<Option<Validator>, ActionError> {
    schema
        .map(|schema| {
            Validator::compile(schema.clone(), what)
                .map_err(|e| ActionError::new(crate::error::kinds::SCHEMA, e.to_string(), false))
        })
        .transpose()
}

/// `signal: <name>`: the next signal `name` (its payload validated against `schema`
/// once received: one that does not match fails the step with kind `schema` naming each
/// pointer), at most `timeout` (a durable race recorded as `<id>.timeout#n`: then an
/// error of kind `timeout`). Output: its payload.
///
/// The workflow must declare the signal name (`WorkflowOptions::messages`) for deliveries
/// to be accepted.
pub(crate) fn signal(
    ctx: &Ctx,
    site: &'static Site,
    name: &str,
    schema: Option<&Value>,
    timeout: Option<Duration>,
) -> StepFuture {
    let id = ctx.next_id(&site.key(name));
    let validator = compile(schema, &format!("payload of signal step `{id}`"));
    let wait_ctx = ctx.clone();
    let name = name.to_owned();
    let wait: StepFuture = Box::pin(async move {
        let validator = validator?;
        let payload = crate::ctx::signal::receive_at(&wait_ctx, &id, &name).await?;
        if let Some(validator) = validator {
            validator.validate(&payload).map_err(|mut violation| {
                violation.what = format!("payload of signal `{name}` received by step `{id}`");
                ActionError::from(violation)
            })?;
        }
        Ok(payload)
    });
    match timeout {
        Some(limit) => limited(ctx, timeout_id(ctx, site), wait, limit),
        None => wait,
    }
}

/// `event: <name>`: the next emitted event `name` whose data holds `matching` (JSON
/// pointer → value), at most `timeout` (as for [`signal`]). Output: the event's data.
pub(crate) fn event(
    ctx: &Ctx,
    site: &'static Site,
    name: &str,
    matching: Vec<(String, Value)>,
    timeout: Option<Duration>,
) -> StepFuture {
    let id = ctx.next_id(&site.key(name));
    let mut wait = crate::ctx::event_wait::EventWait::<Value>::at(ctx, id, name);
    for (pointer, value) in matching {
        wait = wait.matching(&pointer, value);
    }
    let wait = std::future::IntoFuture::into_future(wait);
    match timeout {
        Some(limit) => limited(ctx, timeout_id(ctx, site), wait, limit),
        None => wait,
    }
}

/// A durable race of `branches` recorded at `site` (`select`, `parallel: any`); `created`
/// holds each branch's correlation ids taken when it was created (see
/// `crate::ctx::select::IdCapture`). Output: the winner's index and value (a winner that
/// failed: its error).
pub(crate) fn race(
    ctx: &Ctx,
    site: &'static Site,
    branches: Vec<StepFuture>,
    created: Vec<Vec<String>>,
) -> BoxFuture<'static, Result<(usize, Value), ActionError>> {
    let branches: Vec<Branch<'static, (usize, Result<Value, ActionError>)>> = branches
        .into_iter()
        .enumerate()
        .map(|(i, branch)| -> Branch<'static, _> { Box::pin(branch.map(move |out| (i, out))) })
        .collect();
    let raced = crate::ctx::select::select(ctx, site, branches, created);
    Box::pin(async move {
        let (winner, outcome) = raced.await?;
        Ok((winner, outcome?))
    })
}

/// `future` raced against a durable timer of `limit` at `site` (`<id>.timeout`): its
/// outcome, or an error of kind `timeout`.
pub(crate) fn timeout(
    ctx: &Ctx,
    site: &'static Site,
    future: StepFuture,
    limit: Duration,
) -> StepFuture {
    crate::ctx::timeout::timeout(ctx, site, future, limit).boxed()
}
