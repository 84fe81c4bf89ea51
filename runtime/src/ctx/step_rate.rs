//! Step rate limits ([`crate::queue::Queue::step_rate_limit`]): every live attempt of an
//! action, inline step or LLM request of a run in a queue with a step rate limit takes a
//! permit from the store first ([`crate::store::Store::take_step_permit`]), and waits
//! for one while the queue's window is full.
//!
//! The wait is not an attempt, not an error and records nothing in the log. A cancel,
//! pause or drain of the run ends it at once: the step stops without an outcome (it runs
//! again, live, when the run resumes), as a step that had not started yet.

use std::sync::atomic::Ordering;

use super::{RunState, store_failure};
use crate::ActionError;
use crate::queue::Queue;

/// The queue whose step rate limit a run's live attempts take permits from, with the
/// run's key in it.
#[derive(Clone, Debug)]
pub(crate) struct StepQueue {
    pub(crate) queue: Queue,
    pub(crate) key: Option<String>,
}

impl RunState {
    /// Makes this execution's live attempts take permits of `queue`'s step rate limit,
    /// for a run with `key` in it (set once, before the body runs).
    pub(crate) fn limit_steps_by(&self, queue: &Queue, key: Option<&str>) {
        let _ = self.step_queue.set(StepQueue {
            queue: queue.clone(),
            key: key.map(str::to_owned),
        });
    }
}

/// Waits for a step permit of the run's queue for an attempt of step `id` (at once when
/// the run's queue has no step rate limit).
///
/// # Errors
/// A store failure (which poisons the run, as a failed append does). A cancel, pause or
/// drain while waiting never returns: the body stops here.
pub(crate) async fn take_permit(run: &RunState, id: &str) -> Result<(), ActionError> {
    let Some(step_queue) = run.step_queue.get() else {
        return Ok(());
    };
    let mut told = false;
    loop {
        let next_at = match run
            .env
            .store
            .take_step_permit(&step_queue.queue, step_queue.key.as_deref(), &run.env.clock)
            .await
        {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(next_at)) => next_at,
            Err(error) => return Err(store_failure(run, error)),
        };
        if !told {
            tracing::debug!(
                run = %run.run_id,
                step = id,
                queue = %step_queue.queue.name,
                next_at = %next_at,
                "step waits for a permit of its queue's step rate limit"
            );
            told = true;
        }
        // At least 1 ms, so a clock that stands still cannot make this spin.
        let wait = (next_at - run.env.now())
            .to_std()
            .unwrap_or_default()
            .max(std::time::Duration::from_millis(1));
        let control = run.control();
        tokio::select! {
            () = run.env.clock.sleep(wait) => {}
            () = control.cancel.cancelled() => match stop_waiting(run).await {},
            () = control.drain.cancelled() => match stop_waiting(run).await {},
            () = control.pause.cancelled() => match stop_waiting(run).await {},
        }
    }
}

/// Stops the body at a step waiting for its permit: the step no longer counts as in
/// flight (it has not run, and records nothing), so the executor ends the execution
/// (canceled, paused or handed back) without waiting for it.
async fn stop_waiting(run: &RunState) -> std::convert::Infallible {
    let _lent = InflightLent::new(run);
    run.stop_here().await
}

/// Takes one count off [`RunState::inflight`] while it lives; gives it back when the
/// body is dropped, so the waiting step's own guard (`LiveStep`) balances it.
struct InflightLent<'a>(&'a RunState);

impl<'a> InflightLent<'a> {
    fn new(run: &'a RunState) -> Self {
        run.leave_inflight();
        InflightLent(run)
    }
}

impl Drop for InflightLent<'_> {
    fn drop(&mut self) {
        self.0.inflight.fetch_add(1, Ordering::AcqRel);
    }
}
