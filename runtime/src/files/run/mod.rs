//! The interpreter of workflow files: runs a [`WorkflowFile`]'s steps inside a workflow
//! body, through the same recorded primitives `#[workflow]` code uses (DESIGN "Recorder":
//! a file step is an adapter over the recorder, never a copy of it).

mod calls;
mod flow;
mod policy;
mod waits;

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;

use super::manifest::Manifest;
use super::program::WorkflowFile;
use crate::{Ctx, WorkflowError};

/// A loaded file with its manifest: what a run of the file's workflow executes.
pub(crate) struct Program {
    /// The file.
    pub(crate) file: WorkflowFile,
    /// Its sites.
    pub(crate) manifest: Manifest,
}

/// The body of a file workflow: runs `program` in `ctx` with `input`.
pub(crate) fn body(
    program: Arc<Program>,
    ctx: Ctx,
    input: Value,
) -> BoxFuture<'static, Result<Value, WorkflowError>> {
    Box::pin(async move {
        let _ = (program, ctx, input);
        Err(WorkflowError::permanent("workflow files are not run yet"))
    })
}
