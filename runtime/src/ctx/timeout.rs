//! `.timeout(d)` on an awaited step, hook, signal receive, child run or event wait in a
//! workflow body: a durable select of the awaited thing against a durable timer.
//!
//! The `#[workflow]` macro rewrites `<expr>.timeout(d)` into [`timeout`]: the select is
//! recorded under `timeout#n` (site key `timeout`, `timeout@2`, …) exactly like a
//! `reprise::select!`, and the timer is a durable sleep under `timeout#n$timer` (it records
//! `sleep_started` with its deadline, so a replay or a restart keeps the deadline, and the
//! run is woken at it like any sleep). If the timer wins, the awaited thing is dropped (a
//! live step records its cancellation) and the result is a permanent [`ActionError`] of
//! kind `timeout` ([`ActionError::is_timeout`]).

use std::future::{Future, IntoFuture};

use super::Ctx;
use super::select::{Branch, race};
use super::sleep::SleepDuration;
use crate::ActionError;
use crate::error::kinds;
use crate::step::Site;

/// What won a timeout's race.
enum Raced<T> {
    Done(Result<T, ActionError>),
    Expired(Result<(), ActionError>),
}

/// `<expr>.timeout(duration)` in a workflow body: `future`'s outcome, or a permanent
/// `timeout` error once `duration` (a [`std::time::Duration`], a [`chrono::TimeDelta`] or
/// a humantime string such as `"10m"`) has passed since the timeout was first awaited.
///
/// `future` is anything awaitable whose output is `Result<T, ActionError>`: a step call
/// (`x.run(..)`), `agent.prompt(..)`, `prompt_llm(..)`, an inline step (`ctx.run(..)`), a
/// signal's `recv()`, a child run's handle, an event wait.
///
/// # Errors
/// `future`'s own error; kind `timeout` (permanent) when the timer won; kind
/// `invalid_duration` when `duration` does not parse (nothing is raced then).
pub fn timeout<'a, F, T>(
    ctx: &Ctx,
    site: &'static Site,
    future: F,
    duration: impl SleepDuration,
) -> impl Future<Output = Result<T, ActionError>> + Send + 'a
where
    F: IntoFuture<Output = Result<T, ActionError>>,
    F::IntoFuture: Send + 'a,
    T: Send + 'a,
{
    let id = ctx.next_id(&site.key("timeout"));
    timeout_as(ctx.clone(), id, future, duration)
}

/// [`timeout`] recorded as select `id` (its timer under `<id>$timer`): what handles that
/// are not rewritten by the macro use (`ChildRun::timeout`), with an id derived from their
/// own.
pub(crate) fn timeout_as<'a, F, T>(
    ctx: Ctx,
    id: String,
    future: F,
    duration: impl SleepDuration,
) -> impl Future<Output = Result<T, ActionError>> + Send + 'a
where
    F: IntoFuture<Output = Result<T, ActionError>>,
    F::IntoFuture: Send + 'a,
    T: Send + 'a,
{
    let duration = duration.to_duration();
    let future = future.into_future();
    async move {
        let duration = duration?;
        let timer_id = format!("{id}$timer");
        // (Known before it is polled: `created` below.)
        let timer_ctx = ctx.clone();
        let timer = async move {
            let now = timer_ctx.run.env.now();
            let wake_at = chrono::TimeDelta::from_std(duration)
                .ok()
                .and_then(|d| now.checked_add_signed(d))
                .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
            Raced::Expired(super::sleep::wait_until(timer_ctx, timer_id, wake_at).await)
        };
        let branches: Vec<Branch<'a, Raced<T>>> = vec![
            Box::pin(async move { Raced::Done(future.await) }),
            Box::pin(timer),
        ];
        let created = vec![Vec::new(), vec![format!("{id}$timer")]];
        match race(&ctx, id.clone(), branches, created).await? {
            Raced::Done(outcome) => outcome,
            Raced::Expired(Ok(())) => Err(ActionError::new(
                kinds::TIMEOUT,
                format!(
                    "`{id}` timed out after {} (`.timeout(..)`)",
                    humantime::format_duration(duration)
                ),
                false,
            )),
            Raced::Expired(Err(error)) => Err(error),
        }
    }
}
