//! The recording context: which run's body the current task is executing, so that a step
//! called where the macro could not rewrite it (a helper `async fn`, a closure built
//! outside the body) fails the run with a fix instead of running live, unrecorded, on
//! every replay (DESIGN "Recorder").
//!
//! The engine polls each workflow body inside [`in_body`]; an action's own code runs inside
//! [`outside_body`] (calling another action from an action is an ordinary call). A step
//! call that finds a run in [`current_body`] bypassed the recorder.

use std::sync::Arc;

use super::RunState;

tokio::task_local! {
    static BODY: Option<Arc<RunState>>;
}

/// Polls `body` as the workflow body of `run`.
pub(crate) fn in_body<F: Future>(run: Arc<RunState>, body: F) -> impl Future<Output = F::Output> {
    BODY.scope(Some(run), body)
}

/// Polls `future` (an action's code) outside any workflow body.
pub(crate) fn outside_body<F: Future>(future: F) -> impl Future<Output = F::Output> {
    BODY.scope(None, future)
}

/// The run whose body the current task is executing, if any.
pub(crate) fn current_body() -> Option<Arc<RunState>> {
    BODY.try_with(Clone::clone).ok().flatten()
}

impl RunState {
    /// Fails the run because step `slug` was called in its body outside the recording
    /// context, and returns the error for the call.
    pub(crate) fn unrecorded_step(&self, slug: &str) -> crate::ActionError {
        let message = format!(
            "`{slug}.run(..)` was called while the body of run {} (workflow `{}`) executes, \
             but outside the code `#[workflow]` rewrites (a helper fn or a closure defined \
             outside the body): it would not be recorded, and would run again on every \
             replay. Make the helper a `#[workflow]` and call it with `.run(..)` (a \
             sub-workflow: its steps are recorded under its id), or move the call into the \
             workflow body",
            self.run_id, self.workflow
        );
        let error = crate::ActionError::new(crate::error::kinds::UNRECORDED_STEP, message, false);
        let mut workflow_error = crate::WorkflowError::from(error.clone());
        workflow_error.step = Some(slug.to_owned());
        self.poison(workflow_error);
        error
    }
}
