//! Traces of runs (DESIGN "Observability"): a `tracing` span per execution of a run and
//! per step that runs live, and W3C `traceparent` propagation in and out.
//!
//! # Spans
//!
//! All spans have the target `reprise::trace` and level `INFO`.
//!
//! - `run`: one per execution of a run's body by an engine (a first start, each resume
//!   after a sleep, a hook, a crash or a run-level retry). Attributes: `reprise.run.id`,
//!   `reprise.workflow`, `reprise.run.attempt` (the run-level attempt, from 1),
//!   `reprise.run.trigger`, and when the execution ends `reprise.run.status` (`completed`,
//!   `failed`, `suspended`, `canceled`, `paused`, `interrupted` (its worker shut down),
//!   `aborted` (an engine error: the store failed, the lease was lost; the run resumes
//!   later)), `reprise.run.replayed` and
//!   `reprise.run.executed` (steps answered from the log / run live), and
//!   `otel.status_code = "error"` when it failed or aborted (unset otherwise, as
//!   OpenTelemetry asks of instrumentation).
//! - `step`: one per step that runs **live**, a child of the `run` span or of the step
//!   span of the sub-workflow, agent or LLM step it belongs to. Attributes:
//!   `reprise.step.id` (the correlation id), `reprise.step.callee`, `reprise.step.kind`
//!   (`action`, `workflow`, `llm`, `agent`, `sleep`, `hook`), `reprise.step.attempts`,
//!   `reprise.step.status` (`completed`, `failed`, `waiting` for a wait the run suspended
//!   on, `interrupted` when the execution ended before the step did), `otel.status_code`
//!   (`error` for a failed step, unset otherwise);
//!   LLM requests add the OpenTelemetry GenAI names `gen_ai.operation.name`,
//!   `gen_ai.request.model`, `gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens`.
//!
//! **Replay-quiet**: a step answered from the event log emits no span, so across crashes,
//! resumes and replays a trace shows each finished step once. A step whose outcome was
//! not recorded when its execution ended (a crash mid-step) runs again, and shows again.
//!
//! Each failed attempt of an action that is retried is a `WARN` event on its step span
//! (`step attempt failed; retrying`, with `exception.type`, `exception.message` and
//! `reprise.step.attempt`); a step that fails for good has a `WARN` event `step failed`
//! and `otel.status_code = "error"`. Code inside an action runs inside its step span, so
//! its own `tracing` events land there too.
//!
//! # Propagation
//!
//! A run started with a `traceparent` (the `traceparent` header of `POST
//! /workflows/{slug}` or of a webhook delivery, or `StartOptions::traceparent`) records it in its
//! `run_created` event; with the `otel` feature every execution's `run` span is a child of
//! that remote parent, so every execution of the run, before and after a crash, is in the
//! caller's trace. [`current_traceparent`] (and `ActionCtx::traceparent`) give the
//! `traceparent` of the current step for outgoing calls; the OpenAI-compatible provider
//! sends it on every request.
//!
//! A run started without one still has one trace for all its executions: its trace id is
//! the run id (a UUID's 32 hex digits), under a parent span id derived from it that is
//! never exported (trace viewers show the `run` spans as roots whose parent is missing).
//!
//! With the `otel` feature, `otel_layer` and `init_otel` export the spans over OTLP.

use tracing::Span;
use tracing::field::Empty;

use crate::ctx::recorder::Shape;

/// The name of the W3C trace-context header: `traceparent`.
pub const TRACEPARENT: &str = "traceparent";

/// A valid W3C `traceparent` value: `00-<32 hex trace id>-<16 hex parent id>-<2 hex
/// flags>` (lower-case hex; trace and parent id not all zero; version not `ff`).
///
/// # Errors
/// What is wrong with `value`, naming the expected form.
pub fn check_traceparent(value: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "`{value}` is not a W3C traceparent ({why}); expected \
             `00-<32 lower-case hex trace id>-<16 hex parent id>-<2 hex flags>`"
        ))
    };
    let parts: Vec<&str> = value.split('-').collect();
    if parts.len() < 4 {
        return bad("it needs four `-`-separated parts");
    }
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let (version, trace_id, parent_id, flags) = (parts[0], parts[1], parts[2], parts[3]);
    if !hex(version, 2) || version == "ff" {
        return bad("bad version");
    }
    if version == "00" && parts.len() != 4 {
        return bad("version 00 has exactly four parts");
    }
    if !hex(trace_id, 32) || trace_id.bytes().all(|b| b == b'0') {
        return bad("bad trace id");
    }
    if !hex(parent_id, 16) || parent_id.bytes().all(|b| b == b'0') {
        return bad("bad parent id");
    }
    if !hex(flags, 2) {
        return bad("bad flags");
    }
    Ok(())
}

/// The `traceparent` header of an incoming request that starts a run, when valid. As the
/// W3C Trace Context specification requires, a malformed one is ignored (the run starts
/// a trace of its own); it is logged at `WARN`.
pub(crate) fn incoming_traceparent(value: Option<&str>) -> Option<String> {
    let value = value?.trim();
    match check_traceparent(value) {
        Ok(()) => Some(value.to_owned()),
        Err(problem) => {
            tracing::warn!("ignoring the request's traceparent header: {problem}");
            None
        }
    }
}

/// The trace id (32 hex digits) of a valid `traceparent` (for the tests below).
#[cfg(test)]
fn trace_id_of(traceparent: &str) -> Option<&str> {
    check_traceparent(traceparent).ok()?;
    traceparent.split('-').nth(1)
}

/// The `traceparent` of the current span — inside an action or an LLM request, the step
/// span — for an outgoing call, when an OpenTelemetry layer (`otel_layer`, feature
/// `otel`) records it. `None` without one.
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&Span::current())
}

/// The `traceparent` of `span` (see [`current_traceparent`]).
#[cfg(feature = "otel")]
pub(crate) fn traceparent_of(span: &Span) -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if span.is_disabled() {
        return None;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        )
    })
}

/// Without the `otel` feature no span has a trace id.
#[cfg(not(feature = "otel"))]
pub(crate) fn traceparent_of(_span: &Span) -> Option<String> {
    None
}

/// The span of one execution of a run (see the module docs), a child of the run's
/// recorded `traceparent` when there is one and an OpenTelemetry layer is installed.
pub(crate) fn run_span(
    run_id: &crate::RunId,
    workflow: &str,
    attempt: u32,
    trigger: crate::Trigger,
    traceparent: Option<&str>,
) -> Span {
    let span = tracing::info_span!(
        target: "reprise::trace",
        "run",
        otel.name = Empty,
        otel.kind = "internal",
        otel.status_code = Empty,
        otel.status_description = Empty,
        reprise.run.id = %run_id,
        reprise.workflow = workflow,
        reprise.run.attempt = attempt,
        reprise.run.trigger = trigger.as_str(),
        reprise.run.status = Empty,
        reprise.run.replayed = Empty,
        reprise.run.executed = Empty,
    );
    if !span.is_disabled() {
        span.record("otel.name", format!("run {workflow}"));
        match traceparent {
            Some(traceparent) => set_remote_parent(&span, traceparent),
            #[cfg(feature = "otel")]
            None => set_remote_parent(&span, &run_traceparent(run_id.as_str())),
            #[cfg(not(feature = "otel"))]
            None => {}
        }
    }
    span
}

/// The trace of a run started without a `traceparent`: trace id the run id's 128 bits (a
/// UUID's, else the first half of its SHA-256), parent span id the next 8 bytes of the
/// SHA-256 (a span never exported: the root every execution of the run hangs under), so
/// that all executions of the run, in any process, share one trace.
#[cfg(any(feature = "otel", test))]
pub(crate) fn run_traceparent(run_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(run_id.as_bytes());
    let trace_id = match uuid::Uuid::parse_str(run_id) {
        Ok(uuid) if !uuid.is_nil() => uuid.simple().to_string(),
        _ => crate::hex::hex(&hash[..16]),
    };
    let mut span_id = crate::hex::hex(&hash[16..24]);
    if span_id.bytes().all(|b| b == b'0') {
        span_id = "0000000000000001".to_owned();
    }
    format!("00-{trace_id}-{span_id}-01")
}

#[cfg(feature = "otel")]
fn set_remote_parent(span: &Span, traceparent: &str) {
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let carrier =
        std::collections::HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
    let context = opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&carrier);
    if context.span().span_context().is_valid() {
        // Fails only when no OpenTelemetry layer sees this span: nothing to join then.
        let _ = span.set_parent(context);
    }
}

#[cfg(not(feature = "otel"))]
fn set_remote_parent(_span: &Span, _traceparent: &str) {}

/// How an execution of a run ended, on its span.
pub(crate) fn end_run_span(span: &Span, status: &str, replayed: u64, executed: u64) {
    if span.is_disabled() {
        return;
    }
    span.record("reprise.run.status", status);
    span.record("reprise.run.replayed", replayed);
    span.record("reprise.run.executed", executed);
    // OpenTelemetry leaves a success's status unset.
    if matches!(status, "failed" | "aborted") {
        span.record("otel.status_code", "error");
    }
}

/// The span of a step about to run live: a child of the current span (the `run` span, or
/// the span of the scope the step belongs to). Values are not steps: no span.
pub(crate) fn step_span(id: &str, callee: &str, shape: Shape) -> Span {
    if shape == Shape::Value {
        return Span::none();
    }
    let span = tracing::info_span!(
        target: "reprise::trace",
        "step",
        otel.name = callee,
        otel.kind = "internal",
        otel.status_code = Empty,
        otel.status_description = Empty,
        reprise.step.id = id,
        reprise.step.callee = callee,
        // A wait's kind is its callee (`sleep`, `hook`); a step's comes with its start.
        reprise.step.kind = (shape == Shape::Wait).then_some(callee),
        reprise.step.attempts = Empty,
        reprise.step.status = Empty,
        gen_ai.operation.name = Empty,
        gen_ai.request.model = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
    );
    span
}

/// The step's kind, once known; for LLM requests also the GenAI operation and model (read
/// from the request JSON only when the span is recorded).
pub(crate) fn step_started(span: &Span, kind: &str, input: &serde_json::Value) {
    if span.is_disabled() {
        return;
    }
    span.record("reprise.step.kind", kind);
    if kind == "llm" {
        span.record("gen_ai.operation.name", "chat");
        if let Some(model) = input.get("model").and_then(|m| m.as_str()) {
            span.record("gen_ai.request.model", model);
        }
    }
}

/// A step's outcome on its span: status, attempts, tokens; a failure as a `WARN` event.
pub(crate) fn step_finished(
    span: &Span,
    outcome: Result<(), &crate::ActionError>,
    attempts: u32,
    usage: Option<crate::usage::Usage>,
) {
    if span.is_disabled() {
        return;
    }
    span.record("reprise.step.attempts", attempts);
    if let Some(usage) = usage {
        span.record("gen_ai.usage.input_tokens", usage.prompt_tokens);
        span.record("gen_ai.usage.output_tokens", usage.completion_tokens);
    }
    match outcome {
        // OpenTelemetry leaves a success's status unset.
        Ok(()) => {
            span.record("reprise.step.status", "completed");
        }
        Err(error) => {
            span.record("reprise.step.status", "failed");
            span.record("otel.status_code", "error");
            span.record("otel.status_description", error.message.as_str());
            tracing::warn!(
                target: "reprise::trace",
                parent: span,
                retryable = error.retryable,
                exception.message = %error.message,
                "exception.type" = %error.kind,
                "step failed"
            );
        }
    }
}

/// A wait or step whose execution ended before it did (the run suspended on the wait, or
/// the execution was dropped mid-step).
pub(crate) fn step_left(span: &Span, shape: Shape) {
    if span.is_disabled() {
        return;
    }
    span.record(
        "reprise.step.status",
        if shape == Shape::Wait {
            "waiting"
        } else {
            "interrupted"
        },
    );
}

/// A failed attempt of a step that is tried again, as a `WARN` event on the current span
/// (the step's).
pub(crate) fn attempt_failed(error: &crate::ActionError, attempt: u32, delay: std::time::Duration) {
    tracing::warn!(
        target: "reprise::trace",
        retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        reprise.step.attempt = attempt,
        exception.message = %error.message,
        "exception.type" = %error.kind,
        "step attempt failed; retrying"
    );
}

#[cfg(feature = "otel")]
mod otel;
#[cfg(feature = "otel")]
pub use otel::{OtelGuard, TelemetryError, init_otel, otel_layer, otel_layer_with_exporter};

#[cfg(test)]
mod tests {
    use super::{check_traceparent, trace_id_of};

    #[test]
    fn a_runs_own_trace_is_its_id() {
        let run = "01937a2e-5b1c-7f00-8a00-0123456789ab";
        let traceparent = super::run_traceparent(run);
        assert_eq!(check_traceparent(&traceparent), Ok(()));
        assert_eq!(
            trace_id_of(&traceparent),
            Some("01937a2e5b1c7f008a000123456789ab")
        );
        assert_eq!(
            traceparent,
            super::run_traceparent(run),
            "the same in every process"
        );
        // Run ids that are not UUIDs (tests, imports) get one too.
        assert_eq!(check_traceparent(&super::run_traceparent("r1")), Ok(()));
    }

    #[test]
    fn traceparents_are_checked() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(check_traceparent(good), Ok(()));
        assert_eq!(trace_id_of(good), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(check_traceparent(bad).is_err(), "{bad}");
        }
        // A later version may append fields.
        assert_eq!(
            check_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x"),
            Ok(())
        );
    }
}
