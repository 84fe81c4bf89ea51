//! The interpreter of workflow files: runs a [`WorkflowFile`]'s steps inside a workflow
//! body, through the same recorded primitives `#[workflow]` code uses (DESIGN "Recorder":
//! a file step is an adapter over the recorder, never a copy of it).
//!
//! - [`body`] is the entry: it takes one recorded `ctx.now()`, evaluates the file's
//!   `vars`, and runs the steps in order over a [`scope::Scope`].
//! - `policy` wraps every step: `when`, `timeout`, `error_handling`, `output_variable`.
//! - `flow` runs the control-flow step types; `leaf` builds the futures of the step types
//!   that record under their own id (`calls` and `waits`).
//!
//! Identity: a leaf step records under its site `<id>`, so its correlation id is
//! `<namespace><id>#<n>`. Each iteration of a `for_each` or `while` runs in a namespace of
//! its own, `<namespace><loop id>#<i>/`, so iterations running together number their
//! steps deterministically (`items#1/fetch#0`). The iteration namespaces are not recorded
//! themselves (the recorder needs no entry for a namespace).

mod calls;
mod flow;
mod leaf;
mod policy;
mod scope;
mod waits;

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde_json::Value;

use super::manifest::Manifest;
use super::program::{Step, WorkflowFile};
use crate::{ActionError, Ctx, WorkflowError};
use scope::Scope;

/// A loaded file with its manifest: what a run of the file's workflow executes.
pub(crate) struct Program {
    /// The file.
    pub(crate) file: WorkflowFile,
    /// Its sites.
    pub(crate) manifest: Manifest,
}

/// The error kind of a failed expression or template (a non-recorded step failure).
pub(crate) const EXPRESSION: &str = "expression";
/// The error kind of a `for_each`, `map`, `filter` or `reduce` over something that is not
/// an array, and of other step inputs of the wrong shape.
pub(crate) const INVALID_INPUT: &str = "invalid_input";
/// The error kind of a `while` loop that would run more than `max_iterations` times.
pub(crate) const MAX_ITERATIONS: &str = "max_iterations";

/// How a step (or a list of steps) ends when it does not end normally.
#[derive(Debug)]
pub(crate) enum Flow {
    /// A failure: handled by `error_handling`, `try`, or failing the run.
    Error(ActionError),
    /// A `return` step ran: the workflow ends with this output, from any depth.
    Return(Value),
}

impl From<ActionError> for Flow {
    fn from(error: ActionError) -> Self {
        Flow::Error(error)
    }
}

/// The outcome of a step or a list of steps: its output, or how it ended early.
pub(crate) type Outcome = Result<Value, Flow>;

/// A step that finished with `compensate` steps: what a later `rollback` runs.
struct Finished {
    /// The finished step's id (for messages).
    id: String,
    /// Its compensation steps.
    compensate: Vec<Step>,
    /// The context it finished in (its namespace).
    ctx: Ctx,
}

/// One run of a file workflow: the program and what the run collected so far.
pub(crate) struct Interp {
    program: Arc<Program>,
    /// Steps with compensations that finished in this execution, in finishing order.
    finished: Mutex<Vec<Finished>>,
}

impl Interp {
    /// The file's path, for messages.
    fn path(&self) -> String {
        self.program.file.path.display().to_string()
    }

    /// Where `at` is in the file, for messages: `path:line:col`, or the path alone when
    /// the position is unknown.
    fn place(&self, at: crate::files::Pos) -> String {
        if at.line == 0 {
            self.path()
        } else {
            format!("{}:{}:{}", self.path(), at.line, at.column)
        }
    }

    /// The error of an expression (or template) written at `at` that failed in step
    /// `step`: permanent, kind `expression`, naming the file (line and column), the step
    /// and the expression text.
    fn expression_error(
        &self,
        step: &str,
        source: &str,
        at: crate::files::Pos,
        error: &super::expr::ExprError,
    ) -> Flow {
        Flow::Error(ActionError::new(
            EXPRESSION,
            format!(
                "{}: step `{step}`: the expression `{source}` failed: {error}",
                self.place(at)
            ),
            false,
        ))
    }

    /// The site of step `key` (`<id>` or `<id>.timeout`).
    fn site(&self, key: &str) -> Result<&'static crate::step::Site, Flow> {
        self.program.manifest.site(key).ok_or_else(|| {
            Flow::Error(ActionError::permanent(format!(
                "{}: step `{key}` has no site in the file's manifest (an internal error: \
                 please report it with the file)",
                self.path()
            )))
        })
    }

    fn lock_finished(&self) -> std::sync::MutexGuard<'_, Vec<Finished>> {
        self.finished
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The body of a file workflow: runs `program` in `ctx` with `input`.
///
/// The output is the value of the `return` step that ended the workflow, or else the
/// output of the last top-level step (`null` when it was skipped). The engine validates it
/// against the file's output schema.
///
/// # Errors
/// The error of the step that failed the run (after its `error_handling`, outside any
/// `try`), as a [`WorkflowError`] of the step's error kind.
pub(crate) fn body(
    program: Arc<Program>,
    ctx: Ctx,
    input: Value,
) -> BoxFuture<'static, Result<Value, WorkflowError>> {
    Box::pin(async move {
        let interp = Arc::new(Interp {
            program,
            finished: Mutex::new(Vec::new()),
        });
        let now = ctx.now();
        let mut scope = Scope::new(&ctx, input, now);
        let file = &interp.program.file;
        for (name, template) in &file.vars {
            match super::expr::render(template, scope.value()) {
                Ok(value) => scope.set_var(name, value),
                Err(e) => {
                    let error = ActionError::new(
                        EXPRESSION,
                        format!(
                            "{}: vars.{name}: the template failed: {e}",
                            interp.place(template.at)
                        ),
                        false,
                    );
                    return Err(WorkflowError::from(error));
                }
            }
        }
        match interp.run_list(&ctx, &file.steps, &mut scope).await {
            Ok(output) | Err(Flow::Return(output)) => Ok(output),
            Err(Flow::Error(error)) => Err(WorkflowError::from(error)),
        }
    })
}
