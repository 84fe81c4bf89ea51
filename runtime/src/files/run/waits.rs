//! Steps that wait: `sleep`, `sleep_until`, `hook`, `signal`, `event`, and the durable
//! races `select`, `parallel: any|N` and a step's `timeout` go through.
//!
//! Each fn takes its correlation id when called (synchronously); the returned future
//! waits.
#![allow(dead_code)] // filled in by the interpreter

use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;

use crate::step::Site;
use crate::{ActionError, Ctx};

/// The result of a step future: what select branches race.
pub(crate) type StepFuture = BoxFuture<'static, Result<Value, ActionError>>;

/// `sleep: <duration>` (humantime text).
pub(crate) fn sleep(ctx: &Ctx, site: &'static Site, duration: &str) -> StepFuture {
    let _ = (ctx, site, duration);
    Box::pin(async {
        Err(ActionError::permanent(
            "sleep steps of files are not built yet",
        ))
    })
}

/// `sleep_until: <RFC 3339 time>`.
pub(crate) fn sleep_until(ctx: &Ctx, site: &'static Site, time: &str) -> StepFuture {
    let _ = (ctx, site, time);
    Box::pin(async {
        Err(ActionError::permanent(
            "sleep_until steps of files are not built yet",
        ))
    })
}

/// `hook: <label>`: waits for a payload (validated against `schema`), at most `timeout`
/// (then an error of kind `timeout`). Output: the payload.
pub(crate) fn hook(
    ctx: &Ctx,
    site: &'static Site,
    label: &str,
    schema: Option<&Value>,
    timeout: Option<Duration>,
) -> StepFuture {
    let _ = (ctx, site, label, schema, timeout);
    Box::pin(async {
        Err(ActionError::permanent(
            "hook steps of files are not built yet",
        ))
    })
}

/// `signal: <name>`: the next signal `name` (validated against `schema`), at most
/// `timeout`. Output: its payload.
pub(crate) fn signal(
    ctx: &Ctx,
    site: &'static Site,
    name: &str,
    schema: Option<&Value>,
    timeout: Option<Duration>,
) -> StepFuture {
    let _ = (ctx, site, name, schema, timeout);
    Box::pin(async {
        Err(ActionError::permanent(
            "signal steps of files are not built yet",
        ))
    })
}

/// `event: <name>`: the next emitted event `name` whose data holds `matching` (JSON
/// pointer → value), at most `timeout`. Output: the event's data.
pub(crate) fn event(
    ctx: &Ctx,
    site: &'static Site,
    name: &str,
    matching: Vec<(String, Value)>,
    timeout: Option<Duration>,
) -> StepFuture {
    let _ = (ctx, site, name, matching, timeout);
    Box::pin(async {
        Err(ActionError::permanent(
            "event steps of files are not built yet",
        ))
    })
}

/// A durable race of `branches` recorded at `site` (`select`, `parallel: any`); `created`
/// holds each branch's correlation ids taken when it was created (see
/// `crate::ctx::select::IdCapture`). Output: the winner's index and value.
pub(crate) fn race(
    ctx: &Ctx,
    site: &'static Site,
    branches: Vec<StepFuture>,
    created: Vec<Vec<String>>,
) -> BoxFuture<'static, Result<(usize, Value), ActionError>> {
    let _ = (ctx, site, branches, created);
    Box::pin(async {
        Err(ActionError::permanent(
            "select steps of files are not built yet",
        ))
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
    let _ = (ctx, site, limit);
    future
}
