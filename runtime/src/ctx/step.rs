//! `x.run(input)` in a workflow body: a recorded step (DESIGN "Replay and determinism").
//!
//! The correlation id is taken when the step future is *created* (so `join_all(map(..))`
//! numbers in iteration order), the log is consulted when it is first polled: a recorded
//! step returns its recorded outcome (the output re-validated against its schema), the
//! first unrecorded one runs live, with retries, and is recorded.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{Ctx, poisoned_error, store_failure};
use crate::error::kinds;
use crate::event::{EventKind, RunUpdate};
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
    hex(&hash[..8])
}

/// Lower-case hex of `bytes`, two digits a byte (what `format!("{b:02x}")` writes).
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * bytes.len());
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// The `step_started` payload `{"callee", "kind", "input", "digest"}`, built from owned
/// values (`json!` would serialize the input `Value` into a copy of itself).
pub(crate) fn started_payload(callee: &str, kind: &str, input: Value, digest: String) -> Value {
    let mut payload = serde_json::Map::new();
    payload.insert("callee".to_owned(), Value::String(callee.to_owned()));
    payload.insert("kind".to_owned(), Value::String(kind.to_owned()));
    payload.insert("input".to_owned(), input);
    payload.insert("digest".to_owned(), Value::String(digest));
    Value::Object(payload)
}

/// A payload with one field, `{field: value}`, without re-serializing `value`.
pub(crate) fn single_field(field: &str, value: Value) -> Value {
    let mut payload = serde_json::Map::new();
    payload.insert(field.to_owned(), value);
    Value::Object(payload)
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

pub(crate) async fn execute<S: Step>(
    ctx: Ctx,
    id: String,
    input: S::Input,
) -> Result<S::Output, ActionError> {
    let run = &ctx.run;
    let input_json = serde_json::to_value(&input).map_err(|e| serde_error("input", S::SLUG, e))?;
    let digest = digest(&input_json);

    if let Some(recorded) = run.history.get(&id) {
        // A seeded step (testkit) records no callee or digest: it matches any call.
        if (!recorded.callee.is_empty() && recorded.callee != S::SLUG)
            || (!recorded.digest.is_empty() && recorded.digest != digest)
        {
            return Err(run.non_determinism(
                &id,
                format!(
                    "`{}` with input digest {}",
                    recorded.callee, recorded.digest
                ),
                format!("`{}` with input digest {digest}", S::SLUG),
            ));
        }
        match &recorded.outcome {
            Some(Ok(output)) => {
                let validated = validator_for::<S::Output>()
                    .map_err(|e| ActionError::new(kinds::SCHEMA, e.to_string(), false))?
                    .validate(output)
                    .map_err(|mut violation| {
                        violation.what = format!("recorded output of step `{id}`");
                        ActionError::from(violation)
                    });
                if let Err(error) = validated {
                    // The recorded value no longer fits today's type: as non-deterministic as a
                    // changed callee, and just as fatal to the run.
                    let mut workflow_error = crate::WorkflowError::from(error.clone());
                    workflow_error.step = Some(id.clone());
                    run.poison(workflow_error);
                    return Err(error);
                }
                run.answered_from_log();
                return S::Output::deserialize(output)
                    .map_err(|e| serde_error("recorded output", S::SLUG, e));
            }
            Some(Err(error)) => {
                run.answered_from_log();
                return Err(error.clone());
            }
            None => {} // started but never finished (crash mid-step): run it again live.
        }
    }

    if let Some(poison) = run.poisoned() {
        return Err(poisoned_error(&poison));
    }
    if run.engine.is_replay_only() {
        return Err(run.non_determinism(
            &id,
            "no such step".to_owned(),
            format!("`{}` with input digest {digest}", S::SLUG),
        ));
    }
    if run.interrupted() {
        // A step boundary of a canceled or draining run: start nothing new.
        match run.stop_here().await {}
    }
    let _live = run.live_step();
    let kind = match S::BEHAVIOR {
        StepBehavior::Action { .. } => StepKind::Action,
        StepBehavior::Workflow { .. } => StepKind::Workflow,
    };
    run.push_pending(run.event(
        EventKind::StepStarted,
        Some(&id),
        1,
        started_payload(S::SLUG, kind_name(kind), input_json.clone(), digest),
    ));

    let input_check = validator_for::<S::Input>()
        .map_err(|e| ActionError::new(kinds::SCHEMA, e.to_string(), false))
        .and_then(|validator| {
            validator.validate(&input_json).map_err(|mut violation| {
                violation.what = format!("input of step `{id}` (`{}`)", S::SLUG);
                ActionError::from(violation)
            })
        });

    let (result, attempts) = match input_check {
        Err(error) => (Err(error), 1),
        Ok(()) => match S::BEHAVIOR {
            StepBehavior::Action { options, call } => {
                run_action::<S>(&ctx, &id, options, call, input, &input_json).await
            }
            StepBehavior::Workflow { call, .. } => {
                let child = ctx.child(&id);
                let outcome = AssertUnwindSafe(call(child, input)).catch_unwind().await;
                let result = match outcome {
                    Ok(result) => result.map_err(ActionError::from),
                    Err(panic) => Err(panic_error(S::SLUG, panic)),
                };
                (result, 1)
            }
        },
    };

    let result = result.and_then(|output| {
        let output_json =
            serde_json::to_value(&output).map_err(|e| serde_error("output", S::SLUG, e))?;
        validator_for::<S::Output>()
            .map_err(|e| ActionError::new(kinds::SCHEMA, e.to_string(), false))?
            .validate(&output_json)
            .map_err(|mut violation| {
                violation.what = format!("output of step `{id}` (`{}`)", S::SLUG);
                ActionError::from(violation)
            })?;
        Ok((output, output_json))
    });

    let (event, returned) = match result {
        Ok((output, output_json)) => (
            run.event(
                EventKind::StepCompleted,
                Some(&id),
                attempts,
                single_field("output", output_json),
            ),
            Ok(output),
        ),
        Err(error) => (
            run.event(
                EventKind::StepFailed,
                Some(&id),
                attempts,
                json!({ "error": error }),
            ),
            Err(error),
        ),
    };
    if matches!(run.engine.fault(), crate::engine::Fault::SkipStepRecord(skipped) if *skipped == id)
    {
        return returned; // deliberately broken engine: the checkers must notice
    }
    if let Err(store_error) = run.append(vec![event], RunUpdate::default()).await {
        return Err(store_failure(run, store_error));
    }
    run.executed
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    returned
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
    let mut attempt = 1u32;
    loop {
        let this_input = match input.take() {
            Some(input) => input,
            None => match serde_json::from_value(input_json.clone()) {
                Ok(input) => input,
                Err(e) => return (Err(serde_error("input", S::SLUG, e)), attempt),
            },
        };
        let cx = ActionCtx::new(ctx, id, attempt);
        let call = match run.engine.action_override(S::SLUG) {
            None => call(this_input, cx),
            Some(stub) => {
                let input = input_json.clone();
                Box::pin(async move {
                    let output = stub(input, cx).await?;
                    serde_json::from_value(output)
                        .map_err(|e| serde_error("stubbed output", S::SLUG, e))
                })
            }
        };
        let call = AssertUnwindSafe(call).catch_unwind();
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
        let result = match outcome {
            Ok(result) => result,
            Err(panic) => Err(panic_error(S::SLUG, panic)),
        };
        let error = match result {
            Ok(output) => return (Ok(output), attempt),
            Err(error) => error,
        };
        let retry = error.retryable
            && attempt <= options.retries
            && !options.non_retryable.contains(&error.kind.as_str())
            && run.poisoned().is_none();
        if !retry {
            return (Err(error), attempt);
        }
        let delay = backoff(options.backoff, attempt);
        let event = run.event(
            EventKind::StepRetrying,
            Some(id),
            attempt,
            json!({ "error": error, "delay_ms": delay.as_millis() as u64 }),
        );
        if let Err(store_error) = run.append(vec![event], RunUpdate::default()).await {
            return (Err(store_failure(run, store_error)), attempt);
        }
        run.engine.clock().sleep(delay).await;
        attempt += 1;
    }
}

/// Exponential backoff: `initial × 2^(attempt-1)`, capped at [`ActionOptions::MAX_BACKOFF`],
/// with ±25 % uniform jitter (the "equal jitter" family; see the AWS Architecture Blog,
/// "Exponential Backoff And Jitter", 2015).
pub(crate) fn backoff(initial: Duration, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
    let base = initial
        .saturating_mul(factor)
        .min(ActionOptions::MAX_BACKOFF);
    let jitter: f64 = rand::random_range(0.75..1.25);
    base.mul_f64(jitter)
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

    use super::{digest, kind_name, single_field, started_payload};
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

    #[test]
    fn payloads_match_json_macro() {
        for kind in [StepKind::Action, StepKind::Workflow] {
            let input = json!({ "i": 1, "nested": { "x": [1.5, "y"] } });
            assert_eq!(
                started_payload("slug", kind_name(kind), input.clone(), "0011".to_owned()),
                json!({ "callee": "slug", "kind": kind, "input": input, "digest": "0011" })
            );
            assert_eq!(
                serde_json::to_value(kind).ok(),
                Some(json!(kind_name(kind)))
            );
        }
        let output = json!({ "i": 1, "twice": 2 });
        assert_eq!(
            single_field("output", output.clone()),
            json!({ "output": output })
        );
    }
}
