//! `x.run(input)` in a workflow body: a recorded step (DESIGN "Replay and determinism").
//!
//! The correlation id is taken when the step future is *created* (so `join_all(map(..))`
//! numbers in iteration order), the log is consulted when it is first polled: a recorded
//! step returns its recorded outcome (the output re-validated against its schema), the
//! first unrecorded one runs live, with retries, and is recorded.

use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::recorder::{Call, Entry, Shape};
use super::{Ctx, store_failure};
use crate::error::kinds;
use crate::event::{EventPayload, RunUpdate};
use crate::schema::validator_for;
use crate::step::{ActionOptions, Site, Step, StepBehavior, StepKind};
use crate::{ActionCtx, ActionError};

/// Runs `step` with `input` as a recorded step of the workflow running in `ctx`.
///
/// Returns the step's output, or its error after its retries; on replay, the recorded
/// outcome. A step whose id, callee or input digest differs from the log fails with a
/// `non_determinism` error and fails the run, whatever the body does with the error.
pub fn run_step<S: Step>(
    ctx: &Ctx,
    site: &'static Site,
    step: &S,
    input: S::Input,
) -> impl Future<Output = Result<S::Output, ActionError>> + Send + 'static {
    let _ = step;
    let id = ctx.next_id(&site.key(S::SLUG));
    let ctx = ctx.clone();
    async move { execute::<S>(ctx, id, input).await }
}

/// A stable digest of a step input: SHA-256 of its JSON text, first 16 hex digits.
///
/// Computed for every step, live and replayed, so it avoids allocation where it can: the
/// JSON text goes into a per-thread buffer, and the hex is written from a table.
pub(crate) fn digest(value: &Value) -> String {
    thread_local! {
        static TEXT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let hash = TEXT.with(|text| {
        // Serializing a `Value` calls no user code, so the buffer is never borrowed twice;
        // still, a nested borrow would fall back to a fresh buffer rather than panic.
        let mut fresh = Vec::new();
        let mut borrowed = text.try_borrow_mut();
        let bytes = match borrowed.as_deref_mut() {
            Ok(buffer) => buffer,
            Err(_) => &mut fresh,
        };
        bytes.clear();
        if serde_json::to_writer(&mut *bytes, value).is_err() {
            bytes.clear(); // as before: an unserializable value digests as empty text
        }
        let hash = Sha256::digest(&*bytes);
        if bytes.capacity() > 64 * 1024 {
            *bytes = Vec::new(); // do not keep a huge input's buffer alive
        }
        hash
    });
    crate::hex::hex(&hash[..8])
}

/// How `kind` is written in a `step_started` payload (its serde name).
fn kind_name(kind: StepKind) -> &'static str {
    match kind {
        StepKind::Action => "action",
        StepKind::Workflow => "workflow",
    }
}

fn serde_error(what: &str, slug: &str, error: serde_json::Error) -> ActionError {
    ActionError::new(kinds::SERDE, format!("{what} of `{slug}`: {error}"), false)
}

/// Decodes a recorded or live outcome into the step's output type.
fn decode<O: serde::de::DeserializeOwned>(
    outcome: Result<Value, ActionError>,
    slug: &str,
) -> Result<O, ActionError> {
    serde_json::from_value(outcome?).map_err(|e| serde_error("recorded output", slug, e))
}

/// What a step's input and output are checked against: a Rust type's schema (its
/// validator compiled once per type) or a schema known only at run time (an action or
/// workflow called by slug from a workflow file).
#[derive(Clone, Copy)]
pub(crate) enum Expect<'a> {
    /// `schema::validator_for::<T>`.
    Type(super::recorder::ValidatorFn),
    /// A compiled schema.
    Schema(&'a crate::schema::Validator),
}

impl Expect<'_> {
    /// Validates `value`, naming it `what` in the violation.
    fn validate(&self, value: &Value, what: impl FnOnce() -> String) -> Result<(), ActionError> {
        let checked = match self {
            Expect::Type(validator) => validator()
                .map_err(|e| ActionError::new(kinds::SCHEMA, e.to_string(), false))?
                .validate(value),
            Expect::Schema(validator) => validator.validate(value),
        };
        checked.map_err(|mut violation| {
            violation.what = what();
            ActionError::from(violation)
        })
    }

    /// The check the recorder makes of a recorded output itself (a type's); a run-time
    /// schema is checked by [`record_step`] after the recorder answered.
    fn recorder_check(&self) -> Option<super::recorder::ValidatorFn> {
        match self {
            Expect::Type(validator) => Some(*validator),
            Expect::Schema(_) => None,
        }
    }
}

/// An action or sub-workflow step as the recorder sees it.
pub(crate) struct StepCall<'a> {
    /// The correlation id.
    pub(crate) id: &'a str,
    /// The callee's slug.
    pub(crate) slug: &'a str,
    /// Action (a leaf) or workflow (a scope).
    pub(crate) kind: StepKind,
    /// The input, as JSON.
    pub(crate) input: Value,
    /// What the input must match (checked before the step runs live).
    pub(crate) input_schema: Expect<'a>,
    /// What the output must match (live and recorded).
    pub(crate) output_schema: Expect<'a>,
}

/// The action and sub-workflow adapter over the recorder, for typed calls (`x.run(..)`)
/// and calls by slug (`super::dynamic`) alike: answer from the log (the output
/// re-validated, then `decode`d), or validate the input, run `live` (an action's attempts,
/// a sub-workflow's body: it returns the outcome and the attempts made), validate the
/// `encode`d output and record the outcome.
pub(crate) async fn record_step<O, Live, Fut>(
    ctx: &Ctx,
    step: StepCall<'_>,
    decode: impl FnOnce(Value) -> Result<O, ActionError>,
    encode: impl FnOnce(&O) -> Result<Value, ActionError>,
    live: Live,
) -> Result<O, ActionError>
where
    Live: FnOnce(std::sync::Arc<Value>) -> Fut,
    Fut: Future<Output = (Result<O, ActionError>, u32)>,
{
    let StepCall {
        id,
        slug,
        kind,
        input,
        input_schema,
        output_schema,
    } = step;
    let run = &ctx.run;
    let input = std::sync::Arc::new(input);
    let shape = match kind {
        StepKind::Action => Shape::Leaf,
        StepKind::Workflow => Shape::Scope,
    };
    let call = Call {
        id,
        callee: slug,
        shape,
        input: Some(&input),
        output: output_schema.recorder_check(),
    };
    let mut slot = match run.enter(&call).await? {
        Entry::Replayed(outcome) => {
            let output = outcome?;
            if let Expect::Schema(validator) = &output_schema {
                run.check_recorded_against(id, validator, &output)?;
            }
            return decode(output);
        }
        Entry::Live(slot) => slot,
    };
    slot.started(kind_name(kind), Value::clone(&input));

    let input_check = input_schema.validate(&input, || format!("input of step `{id}` (`{slug}`)"));

    let (result, attempts) = match input_check {
        Err(error) => (Err(error), 1),
        Ok(()) => slot.instrument(live(input.clone())).await,
    };

    let mut typed = None;
    let outcome = result.and_then(|output| {
        let output_json = encode(&output)?;
        output_schema.validate(&output_json, || format!("output of step `{id}` (`{slug}`)"))?;
        typed = Some(output);
        Ok(output_json)
    });
    slot.finish_step(outcome, attempts, None).await?;
    typed.ok_or_else(|| {
        ActionError::new(
            kinds::SERDE,
            format!("step `{id}` (`{slug}`) finished without an output"),
            false,
        )
    })
}

/// A sub-workflow's `body` run live as step `id` (a scope: its steps are recorded under
/// `<id>/`): its outcome, a panic caught as a `panic` error; one attempt.
pub(crate) async fn run_sub_workflow<O, Fut>(
    ctx: &Ctx,
    id: &str,
    slug: &str,
    body: impl FnOnce(Ctx) -> Fut,
) -> (Result<O, ActionError>, u32)
where
    Fut: Future<Output = Result<O, crate::WorkflowError>>,
{
    let child = ctx.child(id);
    // Its body races nothing of the caller's: the sub-workflow step claims its select
    // branch (if any) when it records its own outcome.
    let body = super::race::outside(body(child));
    let result = match AssertUnwindSafe(body).catch_unwind().await {
        Ok(result) => result.map_err(ActionError::from),
        Err(panic) => Err(panic_error(slug, panic)),
    };
    (result, 1)
}

/// The action and sub-workflow adapter over the recorder: answer from the log, or run the
/// action (with its retries and timeout) or the sub-workflow's body (a scope) live.
pub(crate) async fn execute<S: Step>(
    ctx: Ctx,
    id: String,
    input: S::Input,
) -> Result<S::Output, ActionError> {
    let input_json = serde_json::to_value(&input).map_err(|e| serde_error("input", S::SLUG, e))?;
    let kind = match S::BEHAVIOR {
        StepBehavior::Action { .. } => StepKind::Action,
        StepBehavior::Workflow { .. } => StepKind::Workflow,
    };
    let step = StepCall {
        id: &id,
        slug: S::SLUG,
        kind,
        input: input_json,
        input_schema: Expect::Type(validator_for::<S::Input>),
        output_schema: Expect::Type(validator_for::<S::Output>),
    };
    let (ctx, id) = (&ctx, id.as_str());
    record_step(
        ctx,
        step,
        |output| decode(Ok(output), S::SLUG),
        |output| serde_json::to_value(output).map_err(|e| serde_error("output", S::SLUG, e)),
        |input_json| async move {
            match S::BEHAVIOR {
                StepBehavior::Action { options, call } => {
                    run_action::<S>(ctx, id, options, call, input, &input_json).await
                }
                StepBehavior::Workflow { call, .. } => {
                    run_sub_workflow(ctx, id, S::SLUG, |child| call(child, input)).await
                }
            }
        },
    )
    .await
}

/// The `ActionCtx` of attempt `attempt` of action `slug` at step `id`, which may read the
/// `credentials` it declares.
pub(crate) fn action_ctx(
    run: &super::RunState,
    id: &str,
    slug: &str,
    attempt: u32,
    credentials: &'static [crate::credentials::CredentialDecl],
) -> ActionCtx {
    ActionCtx::new(
        run.run_id.as_str(),
        id,
        attempt,
        run.env.resources.clone(),
        run.control().cancel,
        crate::credentials::CredentialAccess {
            store: crate::credentials::CredentialSettings::of(&run.env),
            declared: Some(credentials),
            slug: slug.to_owned(),
            masks: run.masks.clone(),
        },
    )
    .traced(tracing::Span::current(), run.history.traceparent())
    .acting(run.history.identity().clone())
}

/// Calls an action with its retries and timeout; returns the outcome and the attempts made.
async fn run_action<S: Step>(
    ctx: &Ctx,
    id: &str,
    options: ActionOptions,
    call: crate::step::ActionFn<S::Input, S::Output>,
    first_input: S::Input,
    input_json: &Value,
) -> (Result<S::Output, ActionError>, u32) {
    let run = &ctx.run;
    let mut input = Some(first_input);
    let attempt_once =
        |attempt: u32| -> futures::future::BoxFuture<'static, Result<S::Output, ActionError>> {
            let this_input = match input.take() {
                Some(input) => input,
                None => match serde_json::from_value(input_json.clone()) {
                    Ok(input) => input,
                    Err(e) => {
                        return Box::pin(std::future::ready(Err(serde_error("input", S::SLUG, e))));
                    }
                },
            };
            let cx = action_ctx(run, id, S::SLUG, attempt, options.credentials);
            match run.env.action_override(S::SLUG) {
                None => call(this_input, cx),
                Some(stub) => {
                    let input = input_json.clone();
                    Box::pin(async move {
                        let output = stub(input, cx).await?;
                        serde_json::from_value(output)
                            .map_err(|e| serde_error("stubbed output", S::SLUG, e))
                    })
                }
            }
        };
    attempts(run, id, S::SLUG, options, attempt_once).await
}

/// How the attempts of a live step are made: its retry policy, per-attempt time limit and
/// the error kinds never retried. An action's come from its [`ActionOptions`]; a
/// workflow file's step may override the policy and the limit.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AttemptPolicy {
    /// Attempts and delays.
    pub(crate) retry: crate::RetryPolicy,
    /// Per-attempt limit (`None`: none).
    pub(crate) timeout: Option<std::time::Duration>,
    /// Error kinds never retried.
    pub(crate) non_retryable: &'static [&'static str],
}

impl From<ActionOptions> for AttemptPolicy {
    fn from(options: ActionOptions) -> Self {
        AttemptPolicy {
            retry: options.retry_policy(),
            timeout: options.timeout,
            non_retryable: options.non_retryable,
        }
    }
}

/// Makes the attempts of a live step (an action, an inline step): each attempt after a
/// permit of the run's queue's step rate limit (see [`super::step_rate`]), under the
/// per-attempt `timeout`, a panic caught as a retryable `panic` error, a retryable failure
/// recorded as `step_retrying` and tried again after the backoff, as `options` say.
/// Returns the outcome and the attempts made.
pub(crate) async fn attempts<O>(
    run: &super::RunState,
    id: &str,
    slug: &str,
    options: impl Into<AttemptPolicy>,
    mut attempt_once: impl FnMut(u32) -> futures::future::BoxFuture<'static, Result<O, ActionError>>,
) -> (Result<O, ActionError>, u32) {
    let options: AttemptPolicy = options.into();
    let mut attempt = 1u32;
    loop {
        // Each live attempt takes a permit of its queue's step rate limit, if any.
        if let Err(error) = super::step_rate::take_permit(run, id).await {
            return (Err(error), attempt);
        }
        let call = attempt_once(attempt);
        // The step's own code is not the workflow body: plain `.run(..)` calls inside it
        // are ordinary calls (see `recording::outside_body`).
        let call = AssertUnwindSafe(super::recording::outside_body(call)).catch_unwind();
        let outcome = match options.timeout {
            Some(limit) => match tokio::time::timeout(limit, call).await {
                Ok(outcome) => outcome,
                Err(_) => Ok(Err(ActionError::new(
                    kinds::TIMEOUT,
                    format!(
                        "attempt {attempt} exceeded the timeout of {}",
                        humantime::format_duration(limit)
                    ),
                    true,
                ))),
            },
            None => call.await,
        };
        let mut result = match outcome {
            Ok(result) => result,
            Err(panic) => Err(panic_error(slug, panic)),
        };
        // Before the error is logged, recorded or handed to the body: no credential value
        // this execution resolved may be in it.
        if let Err(error) = &mut result {
            run.masks.mask_error(error);
        }
        let error = match result {
            Ok(output) => return (Ok(output), attempt),
            Err(error) => error,
        };
        let policy = options.retry;
        let retry = error.retryable
            && policy.allows_retry_after(attempt)
            && !options.non_retryable.contains(&error.kind.as_str())
            && run.poisoned().is_none();
        if !retry {
            return (Err(error), attempt);
        }
        let delay = policy.delay(attempt);
        crate::telemetry::attempt_failed(&error, attempt, delay);
        let event = run.event(
            Some(id),
            attempt,
            EventPayload::StepRetrying {
                error,
                delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            },
        );
        if let Err(store_error) = run.append(vec![event], RunUpdate::default()).await {
            return (Err(store_failure(run, store_error)), attempt);
        }
        run.env.clock.sleep(delay).await;
        attempt += 1;
    }
}

/// A caught panic as a retryable `panic` error naming the step.
pub(crate) fn panic_error(slug: &str, panic: Box<dyn std::any::Any + Send>) -> ActionError {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-string payload".to_owned());
    ActionError::new(kinds::PANIC, format!("`{slug}` panicked: {message}"), true)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use sha2::{Digest, Sha256};

    use super::{digest, kind_name};
    use crate::step::StepKind;

    /// The digest as it was first written: recorded logs hold these values.
    fn reference_digest(value: &Value) -> String {
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        let hash = Sha256::digest(&bytes);
        hash[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn digest_is_unchanged() {
        let big = Value::String("x".repeat(100_000));
        for value in [
            json!(null),
            json!({}),
            json!({ "i": 7 }),
            json!({ "z": [1, 2.5, -3], "a": { "b": "ü\n\"" } }),
            big.clone(),
            json!({ "after": "a big input" }),
        ] {
            assert_eq!(digest(&value), reference_digest(&value), "{value}");
        }
        assert_eq!(digest(&json!({ "i": 7 })), "a361a366dc1d1ed2"); // `printf '{"i":7}' | sha256sum`
    }

    /// The `kind` a `step_started` payload records is the step kind's serde name.
    #[test]
    fn kind_names_match_serde() {
        for kind in [StepKind::Action, StepKind::Workflow] {
            assert_eq!(
                serde_json::to_value(kind).ok(),
                Some(json!(kind_name(kind)))
            );
        }
    }
}
