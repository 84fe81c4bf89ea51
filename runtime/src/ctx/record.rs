//! Recorded steps with JSON input and output whose body is not an `#[action]`: LLM calls,
//! agent turns, and the agent step around them. The same rules as `x.run(..)`: the log
//! answers a recorded step (matched by id, callee and input digest), the first unrecorded
//! one runs live and is recorded once.

use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use serde_json::Value;

use super::Ctx;
use super::recorder::{Call, Entry, Shape};
use super::step::panic_error;
use crate::ActionError;
use crate::usage::Usage;

/// What a recorded JSON step is, for its `step_started` event.
pub(crate) struct JsonStep<'a> {
    /// Its correlation id.
    pub(crate) id: &'a str,
    /// What it calls (`llm`, the agent's slug), checked on replay.
    pub(crate) callee: &'a str,
    /// `llm` or `agent`.
    pub(crate) kind: &'a str,
    /// Its input, digested and checked on replay.
    pub(crate) input: &'a Value,
    /// Whether its body records steps of its own under its id (an agent's turns and tool
    /// calls, a structured LLM step's requests): then it is a scope, not a live leaf.
    pub(crate) scope: bool,
}

/// A finished live JSON step: its output, and the token usage its `step_completed` event
/// records.
pub(crate) struct JsonOutput {
    pub(crate) output: Value,
    pub(crate) usage: Option<StepUsage>,
}

impl From<Value> for JsonOutput {
    fn from(output: Value) -> Self {
        JsonOutput {
            output,
            usage: None,
        }
    }
}

/// The token usage a `step_completed` event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StepUsage {
    /// One model request's usage (`usage`).
    Request(Usage),
    /// An LLM step's or agent's usage over all its requests (`usage_total`).
    Total(Usage),
}

impl StepUsage {
    /// The usage of one request, if this is one.
    pub(crate) fn request(self) -> Option<Usage> {
        match self {
            StepUsage::Request(usage) => Some(usage),
            StepUsage::Total(_) => None,
        }
    }

    /// The usage of a whole step, if this is one.
    pub(crate) fn total(self) -> Option<Usage> {
        match self {
            StepUsage::Total(usage) => Some(usage),
            StepUsage::Request(_) => None,
        }
    }
}

/// Runs `body` as the recorded step `step` of the run in `ctx`, or answers it from the log:
/// the JSON-step adapter over the recorder.
pub(crate) async fn json_step<F, Fut>(
    ctx: &Ctx,
    step: JsonStep<'_>,
    body: F,
) -> Result<Value, ActionError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<JsonOutput, ActionError>>,
{
    let JsonStep {
        id,
        callee,
        kind,
        input,
        scope,
    } = step;
    let call = Call {
        id,
        callee,
        shape: if scope { Shape::Scope } else { Shape::Leaf },
        input: Some(input),
        output: None,
    };
    let mut slot = match ctx.run.enter(&call).await? {
        Entry::Replayed(outcome) => return outcome,
        Entry::Live(slot) => slot,
    };
    slot.started(kind, input.clone());
    // A leaf's body (one model request) is not workflow code; a scope's body is.
    // Run inside the step's span: a scope's steps are its children, a request carries its
    // `traceparent`.
    let body = AssertUnwindSafe(slot.instrument(body())).catch_unwind();
    let result = if scope {
        // A scope's body races nothing of its caller's (see `race::outside`).
        super::race::outside(body).await
    } else {
        super::recording::outside_body(body).await
    };
    let result = match result {
        Ok(result) => result,
        Err(panic) => Err(panic_error(callee, panic)),
    };
    match result {
        Ok(JsonOutput { output, usage }) => {
            let returned = output.clone();
            slot.finish_step(Ok(output), 1, usage)
                .await
                .map(|()| returned)
        }
        Err(error) => slot
            .finish_step(Err(error), 1, None)
            .await
            .map(|()| Value::Null),
    }
}
