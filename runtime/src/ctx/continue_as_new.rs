//! Continue-as-new: `ctx.continue_as_new(input)` ends this run's history and starts a
//! fresh run of the same workflow with `input` (DESIGN "Messages and composition"), so a
//! poller, an agent or a reminder can loop forever with a bounded log. The engine side
//! (creating the new run exactly once, handing on the business key and the unreceived
//! messages, completing the old run) is in `engine::children`.
//!
//! Also the history cap (`#[workflow(max_history_events = N)]`,
//! `EngineBuilder::max_history_events`): an append of steps that would take the log past
//! it fails the run, not retried, with kind `history_too_large` and that advice.

use std::sync::atomic::Ordering;

use serde::Serialize;

use super::{Ctx, RunState, lock};
use crate::error::{EngineError, WorkflowError, kinds};
use crate::event::{RunId, RunStatus, RunUpdate};

/// The one field of a continued run's output: `{"continued_as": "<new run id>"}`.
pub(crate) const CONTINUED_AS: &str = "continued_as";

impl Ctx {
    /// Ends this run and starts a fresh run of the same workflow with `input`: a new id and
    /// an empty log, linked both ways (`continued_from` in the new run's `run_created`; the
    /// old run ends `completed` with output `{"continued_as": "<new run id>"}`). The new run
    /// keeps the business key (the key now finds it) and receives the messages (signals,
    /// updates) that were posted to the old run but never received, in their order.
    /// Children with [`ParentClose::Cancel`](crate::ParentClose) are canceled as when any
    /// run ends.
    ///
    /// Return its result from the workflow body; it is always an error (kind
    /// `continued_as_new`) that ends the run as described whatever the body does with it:
    ///
    /// ```ignore
    /// if reminders_sent == 30 {
    ///     return ctx.continue_as_new(State { reminders_sent: 0, ..state }).await;
    /// }
    /// ```
    ///
    /// The new run is created exactly once, also when the process dies between creating it
    /// and ending this run (the replay reaches the same call and finds it). `input` is
    /// checked against the workflow's input schema when the run ends: a mismatch fails
    /// this run (kind `schema`) and creates nothing.
    ///
    /// Call it in the workflow's own body, not in a sub-workflow (it ends the whole run;
    /// a sub-workflow gets an error saying so). A child run's body may call it: the parent
    /// then gets the result of the last run of the chain.
    ///
    /// # Errors
    /// Always an error: `continued_as_new` as above, `serde` when `input` does not
    /// serialize, `invalid_continue_as_new` in a sub-workflow.
    pub fn continue_as_new<I: Serialize, O: Send + 'static>(
        &self,
        input: I,
    ) -> impl Future<Output = Result<O, WorkflowError>> + Send + 'static {
        let result = self.ask_continue_as_new(input);
        std::future::ready(Err(result))
    }

    fn ask_continue_as_new<I: Serialize>(&self, input: I) -> WorkflowError {
        if !self.namespace.is_empty() {
            return WorkflowError::new(
                "invalid_continue_as_new",
                format!(
                    "ctx.continue_as_new(..) was called in sub-workflow `{}`; it ends the whole \
                     run, so call it in the top-level workflow's body (return a value from \
                     the sub-workflow that tells the body to continue)",
                    self.namespace.trim_end_matches('/')
                ),
                false,
            );
        }
        let input = match serde_json::to_value(input) {
            Ok(input) => input,
            Err(e) => {
                return WorkflowError::new(
                    kinds::SERDE,
                    format!("the input of ctx.continue_as_new(..) does not serialize: {e}"),
                    false,
                );
            }
        };
        // The new run's id is a recorded value, so every replay (and a replay check) ends
        // the run with the same `continued_as`; it is derived from this run's id, so an
        // execution that re-runs after a crash before the value was durable asks for the
        // same new run too.
        let derived = RunId::derived(&self.run.run_id, "continue-as-new").0;
        let id = self.recorded_value("continue-as-new", || derived);
        *lock(&self.run.continue_with) = Some((input, RunId(id)));
        WorkflowError::new(
            kinds::CONTINUED_AS_NEW,
            "the run continues as a new run (ctx.continue_as_new); return this error from \
             the workflow body",
            false,
        )
    }
}

impl RunState {
    /// The input `ctx.continue_as_new(..)` asked to continue with, and the new run's
    /// recorded id, if it was called.
    pub(crate) fn continue_with(&self) -> Option<(serde_json::Value, RunId)> {
        lock(&self.continue_with).clone()
    }

    /// Writes the events waiting for the next durable append (recorded values), if any.
    ///
    /// # Errors
    /// As [`RunState::append`].
    pub(crate) async fn flush_pending(&self) -> Result<(), EngineError> {
        if lock(&self.pending).is_empty() {
            return Ok(());
        }
        self.append(Vec::new(), RunUpdate::default()).await
    }

    /// Sets the cap on the log's length (0: none).
    pub(crate) fn set_history_cap(&self, cap: u64) {
        self.history_cap.store(cap, Ordering::Relaxed);
    }

    /// Fails the run (poison, kind `history_too_large`) when appending `count` events at
    /// `next_seq` takes the log past its cap. Only appends that record steps are checked
    /// (no status change, or back to `running` after a wait): the run's own start
    /// (`run_started` sets the attempt), suspension and end are always written, so a run
    /// over its cap still ends `failed`, telling why.
    ///
    /// # Errors
    /// [`EngineError::Config`] with the advice, once the run is poisoned.
    pub(crate) fn check_history_cap(
        &self,
        next_seq: u64,
        count: u64,
        update: &RunUpdate,
    ) -> Result<(), EngineError> {
        let cap = self.history_cap.load(Ordering::Relaxed);
        if cap == 0
            || next_seq.saturating_add(count) <= cap
            || !matches!(update.status, None | Some(RunStatus::Running))
            || update.attempt.is_some()
        {
            return Ok(());
        }
        let error = history_too_large(&self.workflow, cap);
        tracing::warn!(run = %self.run_id, cap, "{}", error.message);
        let message = error.message.clone();
        self.poison(error);
        Err(EngineError::Config(message))
    }
}

/// The error of a run whose log would exceed `cap` events.
pub(crate) fn history_too_large(workflow: &str, cap: u64) -> WorkflowError {
    WorkflowError::new(
        kinds::HISTORY_TOO_LARGE,
        format!(
            "the run's event log would exceed {cap} events, the history cap of workflow \
             `{workflow}` (`#[workflow(max_history_events = N)]` or \
             `EngineBuilder::max_history_events`): every resume replays the whole log. \
             Call ctx.continue_as_new(..) to go on in a fresh run with a new history (for \
             example every N iterations of a loop), or raise the cap"
        ),
        false,
    )
}
