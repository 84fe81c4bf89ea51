//! `reprise::select!` in a workflow body: a durable select over steps, hooks, signals,
//! sleeps, child runs and events whose winner is recorded (DESIGN "Messages and
//! composition").
//!
//! The `#[workflow]` macro evaluates every branch's expression (so each takes its
//! correlation id, in source order, on every execution), boxes each into a future of a
//! generated enum and calls [`select`]. The select is recorded under `select#n` (site key
//! `select`, `select@2`, …) as `{"winner": i, "branches": [{"started": bool, "steps":
//! [ids]}, …]}`:
//!
//! - recorded: only branch `winner` is polled (its recorded steps answer it), never the
//!   losers;
//! - not recorded: every branch is polled, in order, inside the race context of
//!   [`super::race`]; the first branch to claim wins — a wait claims just before recording
//!   its completion, and the select's record is written with that completion, in the same
//!   append; a branch whose outcome came from the log claims when it finishes, and the
//!   select's record is made durable before the body goes on.
//!
//! Once a branch has won, the losers are dropped: the waits they registered are withdrawn
//! (the run suspends only when every branch is blocked), a live step among them records its
//! cancellation (`step_failed`, kind `canceled`), and a loser that finished anyway (a live
//! step whose effect happened) keeps its recorded outcome but does not win.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;

use serde_json::Value;

use super::race::{Race, SELECT_CALLEE};
use super::recorder::{Call, Entry, Shape};
use super::{Ctx, RunState, Wait, lock, store_failure};
use crate::ActionError;
use crate::error::NonDeterminism;
use crate::event::RunUpdate;
use crate::step::Site;

/// One branch of a select: a boxed future of the select's output (the macro's enum).
pub type Branch<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// `reprise::select! { .. }`: races `branches` durably under the site's id (`select#n`)
/// and returns the winning branch's output.
///
/// # Errors
/// A recorded select that no longer fits the code (another callee at its id, a winner the
/// select does not have): a `non_determinism` error that fails the run; a store failure
/// making the select's record durable.
///
/// `created` holds, per branch, the correlation ids its expression took when it was created
/// ([`IdCapture`]), so a branch that started in an earlier execution counts as started even
/// when another branch wins before it is polled again.
pub fn select<'a, T: Send + 'a>(
    ctx: &Ctx,
    site: &'static Site,
    branches: Vec<Branch<'a, T>>,
    created: Vec<Vec<String>>,
) -> impl Future<Output = Result<T, ActionError>> + Send + 'a {
    let id = ctx.next_id(&site.key(SELECT_CALLEE));
    let ctx = ctx.clone();
    async move { race(&ctx, id, branches, created).await }
}

/// Captures the correlation ids taken while a select's branch expression is evaluated:
/// `IdCapture::start(ctx)`, evaluate, [`IdCapture::finish`].
#[must_use = "finish the capture to read the ids"]
pub struct IdCapture {
    ctx: Ctx,
    done: bool,
}

impl IdCapture {
    /// Starts capturing the ids `ctx`'s run takes.
    pub fn start(ctx: &Ctx) -> IdCapture {
        let run = &ctx.run;
        lock(&run.captures).push(Vec::new());
        run.capturing.store(true, Ordering::Relaxed);
        IdCapture {
            ctx: ctx.clone(),
            done: false,
        }
    }

    /// The ids taken since [`IdCapture::start`].
    pub fn finish(mut self) -> Vec<String> {
        self.done = true;
        self.pop()
    }

    fn pop(&self) -> Vec<String> {
        let run = &self.ctx.run;
        let mut captures = lock(&run.captures);
        let ids = captures.pop().unwrap_or_default();
        run.capturing.store(!captures.is_empty(), Ordering::Relaxed);
        ids
    }
}

impl Drop for IdCapture {
    fn drop(&mut self) {
        if !self.done {
            self.pop();
        }
    }
}

/// Races `branches` as select `id` (the adapter `select` and `timeout` share); `created`
/// as for [`select`] (missing entries: none known).
pub(crate) async fn race<T: Send>(
    ctx: &Ctx,
    id: String,
    mut branches: Vec<Branch<'_, T>>,
    mut created: Vec<Vec<String>>,
) -> Result<T, ActionError> {
    let run = &ctx.run;
    let recorded = recorded_winner(run, &id, branches.len())?;
    created.resize(branches.len(), Vec::new());
    let race = Race::new(run.clone(), id, created, recorded.as_ref().map(|r| r.0));
    if let Some((winner, losers)) = recorded {
        run.count_replayed(&losers);
        let mut future = branches.swap_remove(winner);
        drop(branches);
        return Ok(std::future::poll_fn(|cx| race.poll_branch(winner, &mut future, cx)).await);
    }
    let mut futures: Vec<Option<Branch<'_, T>>> = branches.into_iter().map(Some).collect();
    let mut flush = false;
    let output = std::future::poll_fn(|cx| {
        for i in 0..futures.len() {
            if race.winner().is_some_and(|w| w != i) {
                continue;
            }
            let Some(future) = futures[i].as_mut() else {
                continue;
            };
            let polled = race.poll_branch(i, future, cx);
            if let Poll::Ready(output) = polled {
                futures[i] = None;
                match race.claim_finished(i) {
                    Some(queued) => {
                        flush = queued;
                        drop_losers(run, &race, &mut futures, i);
                        return Poll::Ready(output);
                    }
                    // A loser that finished anyway (a live step): its outcome is recorded,
                    // its output is not used.
                    None => continue,
                }
            }
            if let Some(winner) = race.winner() {
                drop_losers(run, &race, &mut futures, winner);
                if winner != i {
                    // Claimed by a branch further on in this poll (a nested race): poll it.
                    if let Some(future) = futures[winner].as_mut()
                        && let Poll::Ready(output) = race.poll_branch(winner, future, cx)
                    {
                        futures[winner] = None;
                        return Poll::Ready(output);
                    }
                    return Poll::Pending;
                }
            }
        }
        Poll::Pending
    })
    .await;
    drop(futures);
    if flush && !lock(&run.pending).is_empty() {
        // The winner's outcome came from the log: its select record goes out on its own
        // (unless another append of this run took it meanwhile).
        run.append(Vec::new(), RunUpdate::default())
            .await
            .map_err(|e| store_failure(run, e))?;
    }
    Ok(output)
}

/// Drops every branch but `winner` (a live step among them records its cancellation) and
/// withdraws the waits they registered.
fn drop_losers<T>(
    run: &RunState,
    race: &Race,
    futures: &mut [Option<Branch<'_, T>>],
    winner: usize,
) {
    let mut dropped = false;
    for (i, future) in futures.iter_mut().enumerate() {
        if i != winner && future.is_some() {
            *future = None;
            dropped = true;
        }
    }
    if dropped {
        let ids: HashSet<String> = race.loser_ids().into_iter().collect();
        run.withdraw_waits(&ids);
    }
}

/// The recorded winner of select `id` and the ids its losers had entered, if the log holds
/// the select.
fn recorded_winner(
    run: &Arc<RunState>,
    id: &str,
    branches: usize,
) -> Result<Option<(usize, Vec<String>)>, ActionError> {
    if run.history.get(id).is_none() {
        return Ok(None);
    }
    let call = Call {
        id,
        callee: SELECT_CALLEE,
        shape: Shape::Value,
        input: None,
        output: None,
    };
    let output = match run.lookup(&call)? {
        Entry::Replayed(outcome) => outcome?,
        Entry::Live(_) => return Ok(None),
    };
    let winner = output
        .get("winner")
        .and_then(Value::as_u64)
        .and_then(|w| usize::try_from(w).ok())
        .filter(|w| *w < branches);
    let Some(winner) = winner else {
        let report = NonDeterminism::new(
            id,
            format!("a select whose recorded winner is {}", output["winner"]),
            format!("a select of {branches} branches"),
        );
        return Err(run.report_non_determinism(report));
    };
    let losers = output
        .get("branches")
        .and_then(Value::as_array)
        .map(|branches| {
            branches
                .iter()
                .filter_map(|b| b.get("steps").and_then(Value::as_array))
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(Some((winner, losers)))
}

impl RunState {
    /// Notes id `key#n`, just taken, in the innermost [`IdCapture`].
    pub(crate) fn captured(&self, key: &str, n: u32) {
        if let Some(ids) = lock(&self.captures).last_mut() {
            ids.push(format!("{key}#{n}"));
        }
    }

    /// Removes the waits registered under `ids` (the losers of a decided select): the run
    /// no longer suspends on them.
    pub(crate) fn withdraw_waits(&self, ids: &HashSet<String>) {
        lock(&self.waits).retain(|wait| match wait {
            Wait::Sleep { id, .. } | Wait::Hook { id, .. } | Wait::Message { id, .. } => {
                !ids.contains(id)
            }
            _ => true,
        });
    }

    /// Counts the recorded outcomes of a select's losers as replayed: a replay polls only
    /// the winner, yet "old history lies ahead" (`ctx.patched`) must not see them as
    /// pending.
    fn count_replayed(&self, ids: &[String]) {
        let ids: HashSet<&String> = ids.iter().collect();
        let finished = ids
            .into_iter()
            .filter(|id| {
                self.history
                    .get(id)
                    .is_some_and(|recorded| recorded.outcome.is_some())
            })
            .count();
        self.consumed.fetch_add(finished, Ordering::Relaxed);
    }
}
