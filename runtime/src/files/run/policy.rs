//! Per-step policies: `when`, `timeout`, `retry`, `error_handling` (stop, continue,
//! fallback, rollback) and `output_variable`.
//!
//! - `when` false: the step's status is `skipped`, its output `null`; nothing records.
//! - `timeout`: `action` and `prompt` steps pass it (and `retry`) to the call as a
//!   per-attempt limit ([`Overrides`]); `hook`, `signal` and `event` waits take it as
//!   their deadline; every other step type is raced durably against a timer at site
//!   `<id>.timeout` (`waits::timeout`); exceeding it is an error of kind `timeout`.
//! - `error_handling` applies to the step's error after its retries: `stop` passes it up,
//!   `continue` stores it (status `failed`, output `null`) and goes on, `fallback` runs the
//!   `fallback` steps (with the error as `error`) whose last output becomes the step's
//!   (status `fallback`), `rollback` runs the `compensate` steps of every step that
//!   finished in this execution so far, last finished first, then passes the error up.
//!   Errors the run cannot go on after (`non_determinism`, `store`, `canceled`) are never
//!   handled: they always go up.

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde_json::Value;

use super::scope::{Scope, error_value};
use super::{Finished, Flow, Interp, Outcome};
use crate::ctx::dynamic::Overrides;
use crate::error::kinds;
use crate::files::format::ErrorHandling;
use crate::files::manifest::TIMEOUT_SUFFIX;
use crate::files::program::{Step, StepKind};
use crate::{ActionError, Ctx};

/// Whether `error` may be handled by a step (`error_handling`, `try`): not when the run
/// cannot go on anyway.
pub(crate) fn handleable(error: &ActionError) -> bool {
    !matches!(
        error.kind.as_str(),
        kinds::NON_DETERMINISM | kinds::STORE | kinds::CANCELED
    )
}

/// The `retry` and `timeout` an `action` or `prompt` step passes to its call.
pub(crate) fn step_policy(step: &Step) -> Overrides {
    Overrides {
        retry: step.retry,
        timeout: step.timeout,
    }
}

/// What a step future run on its own (under a durable timer) left behind.
#[derive(Default)]
pub(crate) struct Left {
    /// The scope after the step.
    pub(crate) scope: Option<Scope>,
    /// The output of a `return` that ran inside it.
    pub(crate) returned: Option<Value>,
}

/// The error a detached step future reports when a `return` ran inside it (the value is
/// in its [`Left`]); never recorded, never seen by users.
const RETURNED: &str = "reprise_file_return";

/// Runs `run` on its own as a `'static` step future over an owned copy of `scope`: what a
/// durable race (a timeout, `parallel: any`) needs. The scope after it and the value of a
/// `return` inside it are left in the returned [`Left`].
pub(crate) fn detached<F>(
    interp: &Arc<Interp>,
    ctx: &Ctx,
    scope: Scope,
    run: F,
) -> (super::waits::StepFuture, Arc<Mutex<Left>>)
where
    F: for<'a> FnOnce(&'a Arc<Interp>, &'a Ctx, &'a mut Scope) -> BoxFuture<'a, Outcome>
        + Send
        + 'static,
{
    let left = Arc::new(Mutex::new(Left::default()));
    let slot = left.clone();
    let interp = interp.clone();
    let ctx = ctx.clone();
    let future = Box::pin(async move {
        let mut scope = scope;
        let outcome = run(&interp, &ctx, &mut scope).await;
        let mut left = slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        left.scope = Some(scope);
        match outcome {
            Ok(value) => Ok(value),
            Err(Flow::Error(error)) => Err(error),
            Err(Flow::Return(value)) => {
                left.returned = Some(value);
                Err(ActionError::new(RETURNED, "a `return` step ran", false))
            }
        }
    });
    (future, left)
}

/// Reads what a detached step future left: its scope (into `scope`), and turns its
/// outcome back into an [`Outcome`] (a `return` inside it included).
pub(crate) fn rejoin(
    left: &Mutex<Left>,
    outcome: Result<Value, ActionError>,
    scope: &mut Scope,
) -> Outcome {
    let mut left = left
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(after) = left.scope.take() {
        *scope = after;
    }
    if let Some(value) = left.returned.take() {
        return Err(Flow::Return(value));
    }
    outcome.map_err(Flow::Error)
}

impl Interp {
    /// Runs `steps` in order over `scope`; the output is the last step's (`null` for no
    /// steps).
    pub(crate) fn run_list<'a>(
        self: &'a Arc<Self>,
        ctx: &'a Ctx,
        steps: &'a [Step],
        scope: &'a mut Scope,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let mut last = Value::Null;
            for step in steps {
                last = self.run_step(ctx, step, scope).await?;
            }
            Ok(last)
        })
    }

    /// Runs one step with its policies, storing its outcome in `scope`.
    pub(crate) fn run_step<'a>(
        self: &'a Arc<Self>,
        ctx: &'a Ctx,
        step: &'a Step,
        scope: &'a mut Scope,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            if let Some(when) = &step.when {
                match crate::files::expr::is_true(when, scope.value()) {
                    Ok(true) => {}
                    Ok(false) => {
                        scope.set_step(&step.id, Value::Null, "skipped", None);
                        return Ok(Value::Null);
                    }
                    Err(e) => {
                        let flow = self.expression_error(&step.id, &when.source, when.at, &e);
                        return self.on_error(ctx, step, scope, flow).await;
                    }
                }
            }
            match self.timed(ctx, step, scope).await {
                Ok(output) => {
                    self.finished(ctx, step, scope, output.clone(), "completed", None);
                    Ok(output)
                }
                Err(flow) => self.on_error(ctx, step, scope, flow).await,
            }
        })
    }

    /// Applies the step's `error_handling` to `flow` (a `return` passes through).
    async fn on_error(
        self: &Arc<Self>,
        ctx: &Ctx,
        step: &Step,
        scope: &mut Scope,
        flow: Flow,
    ) -> Outcome {
        let error = match flow {
            Flow::Error(error) if handleable(&error) => error,
            other => return Err(other),
        };
        match step.error_handling {
            ErrorHandling::Stop => Err(Flow::Error(error)),
            ErrorHandling::Continue => {
                self.finished(ctx, step, scope, Value::Null, "failed", Some(&error));
                Ok(Value::Null)
            }
            ErrorHandling::Fallback => {
                let previous = scope.bind("error", error_value(&error));
                let outcome = self.run_list(ctx, &step.fallback, scope).await;
                scope.restore("error", previous);
                let output = outcome?;
                self.finished(ctx, step, scope, output.clone(), "fallback", Some(&error));
                Ok(output)
            }
            ErrorHandling::Rollback => {
                self.rollback(scope, &error).await?;
                Err(Flow::Error(error))
            }
        }
    }

    /// Runs the compensations of every step finished so far, last finished first (each
    /// in the namespace its step finished in, with `error` set to `cause`). A
    /// compensation that fails does not stop the others; the first such failure is added
    /// to the cause's message by the caller's error.
    async fn rollback(
        self: &Arc<Self>,
        scope: &mut Scope,
        cause: &ActionError,
    ) -> Result<(), Flow> {
        let finished = std::mem::take(&mut *self.lock_finished());
        let previous = scope.bind("error", error_value(cause));
        let mut failures = Vec::new();
        for done in finished.iter().rev() {
            match self.run_list(&done.ctx, &done.compensate, scope).await {
                Ok(_) => {}
                Err(Flow::Error(error)) if handleable(&error) => {
                    tracing::warn!(step = %done.id, %error, "a compensation step failed");
                    failures.push(format!("the compensation of `{}` failed: {error}", done.id));
                }
                Err(other) => {
                    scope.restore("error", previous);
                    return Err(other);
                }
            }
        }
        scope.restore("error", previous);
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Flow::Error(ActionError {
                message: format!("{} (rolled back; {})", cause.message, failures.join("; ")),
                ..cause.clone()
            }))
        }
    }

    /// Stores a finished step's output (and `output_variable`), and notes its
    /// compensations for a later rollback.
    fn finished(
        &self,
        ctx: &Ctx,
        step: &Step,
        scope: &mut Scope,
        output: Value,
        status: &str,
        error: Option<&ActionError>,
    ) {
        if let Some(name) = &step.output_variable {
            scope.set_var(name, output.clone());
        }
        scope.set_step(&step.id, output, status, error);
        if !step.compensate.is_empty() && status == "completed" {
            self.lock_finished().push(Finished {
                id: step.id.clone(),
                compensate: step.compensate.clone(),
                ctx: ctx.clone(),
            });
        }
    }

    /// The step's own work, under its `timeout` when it is raced against a timer.
    async fn timed(self: &Arc<Self>, ctx: &Ctx, step: &Step, scope: &mut Scope) -> Outcome {
        let Some(limit) = step.timeout else {
            return self.exec(ctx, step, scope).await;
        };
        if is_leaf(&step.kind) {
            // Leaf steps apply their own timeout (see `leaf`).
            return self.exec(ctx, step, scope).await;
        }
        let site = self.site(&format!("{}{TIMEOUT_SUFFIX}", step.id))?;
        let owned = step.clone();
        let (future, left) = detached(self, ctx, scope.clone(), move |interp, ctx, scope| {
            Box::pin(async move { interp.exec(ctx, &owned, scope).await })
        });
        let outcome = super::waits::timeout(ctx, site, future, limit).await;
        rejoin(&left, outcome, scope)
    }
}

/// Whether a step type records under its own id (a call or a wait) rather than being
/// control flow.
pub(crate) fn is_leaf(kind: &StepKind) -> bool {
    matches!(
        kind,
        StepKind::Action { .. }
            | StepKind::Workflow { .. }
            | StepKind::Prompt { .. }
            | StepKind::Agent { .. }
            | StepKind::Sleep(_)
            | StepKind::SleepUntil(_)
            | StepKind::Hook { .. }
            | StepKind::Signal { .. }
            | StepKind::Event { .. }
    )
}
