//! Recorded steps with JSON input and output whose body is not an `#[action]`: LLM calls,
//! agent turns, and the agent step around them. The same rules as `x.run(..)`: the log
//! answers a recorded step (matched by id, callee and input digest), the first unrecorded
//! one runs live and is recorded once.

use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use serde_json::{Value, json};

use super::step::{digest, panic_error, single_field, started_payload};
use super::{Ctx, poisoned_error, store_failure};
use crate::ActionError;
use crate::event::{EventKind, RunUpdate};

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
}

/// A finished live JSON step: its output, and extra fields for its `step_completed` event
/// (e.g. `usage`).
pub(crate) struct JsonOutput {
    pub(crate) output: Value,
    pub(crate) extra: Option<(&'static str, Value)>,
}

impl From<Value> for JsonOutput {
    fn from(output: Value) -> Self {
        JsonOutput {
            output,
            extra: None,
        }
    }
}

/// Runs `body` as the recorded step `step` of the run in `ctx`, or answers it from the log.
pub(crate) async fn json_step<F, Fut>(
    ctx: &Ctx,
    step: JsonStep<'_>,
    body: F,
) -> Result<Value, ActionError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<JsonOutput, ActionError>>,
{
    let run = &ctx.run;
    let JsonStep {
        id,
        callee,
        kind,
        input,
    } = step;
    let digest = digest(input);
    if let Some(recorded) = run.history.get(id) {
        if (!recorded.callee.is_empty() && recorded.callee != callee)
            || (!recorded.digest.is_empty() && recorded.digest != digest)
        {
            return Err(run.non_determinism(
                id,
                format!(
                    "`{}` with input digest {}",
                    recorded.callee, recorded.digest
                ),
                format!("`{callee}` with input digest {digest}"),
            ));
        }
        match &recorded.outcome {
            Some(Ok(output)) => {
                run.answered_from_log();
                return Ok(output.clone());
            }
            Some(Err(error)) => {
                run.answered_from_log();
                return Err(error.clone());
            }
            None => {} // started, never finished: run it again live
        }
    }
    if let Some(poison) = run.poisoned() {
        return Err(poisoned_error(&poison));
    }
    if run.engine.is_replay_only() {
        return Err(run.non_determinism(
            id,
            "no such step".to_owned(),
            format!("`{callee}` with input digest {digest}"),
        ));
    }
    if run.interrupted() {
        match run.stop_here().await {}
    }
    let _live = run.live_step();
    run.push_pending(run.event(
        EventKind::StepStarted,
        Some(id),
        1,
        started_payload(callee, kind, input.clone(), digest),
    ));
    let result = match AssertUnwindSafe(body()).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => Err(panic_error(callee, panic)),
    };
    let (event, returned) = match result {
        Ok(JsonOutput { output, extra }) => {
            let mut payload = single_field("output", output.clone());
            if let Some((field, value)) = extra {
                payload[field] = value;
            }
            (
                run.event(EventKind::StepCompleted, Some(id), 1, payload),
                Ok(output),
            )
        }
        Err(error) => (
            run.event(
                EventKind::StepFailed,
                Some(id),
                1,
                json!({ "error": error }),
            ),
            Err(error),
        ),
    };
    if let Err(store_error) = run.append(vec![event], RunUpdate::default()).await {
        return Err(store_failure(run, store_error));
    }
    run.executed
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    returned
}
