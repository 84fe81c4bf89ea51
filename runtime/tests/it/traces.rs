//! Traces: the run and step spans as the OpenTelemetry SDK's in-memory exporter receives
//! them through `reprise::telemetry::otel_layer_with_exporter` (the layer the CLI
//! installs), and the `traceparent` propagated in (HTTP start) and out (the
//! OpenAI-compatible provider, `ActionCtx::traceparent`).
//!
//! Each test installs its subscriber for its own thread only (`set_default`) and runs on
//! a current-thread runtime, so parallel tests never see each other's spans.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use opentelemetry::trace::{SpanId, Status};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};
use reprise::http::{HttpOptions, serve};
use reprise::llm::{
    ChatMessage, LlmError, LlmErrorKind, LlmProvider, LlmRequest, LlmResponse, OpenAiProvider,
    Role, ToolCall, Usage,
};
use reprise::prelude::*;
use reprise::store::{MemoryStore, SharedStore};
use reprise::{Agent, RunOutcome, StartOptions, Trigger};
use serde_json::json;
use tracing_subscriber::layer::SubscriberExt;

use crate::engine::DyingStore;

/// A number.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct N {
    n: i64,
}

/// Adds one.
#[action]
async fn tr_inc(input: N) -> Result<N, ActionError> {
    Ok(N { n: input.n + 1 })
}

/// Four steps in a row.
#[workflow(slug = "tr-four")]
async fn tr_four(input: N) -> Result<N, WorkflowError> {
    let a = tr_inc.run(input).await?;
    let b = tr_inc.run(a).await?;
    let c = tr_inc.run(b).await?;
    Ok(tr_inc.run(c).await?)
}

/// Two steps, as a sub-workflow.
#[workflow(slug = "tr-child")]
async fn tr_child(input: N) -> Result<N, WorkflowError> {
    let a = tr_inc.run(input).await?;
    Ok(tr_inc.run(a).await?)
}

/// A sub-workflow, then an agent with one tool.
#[workflow(slug = "tr-parent")]
async fn tr_parent(input: N) -> Result<String, WorkflowError> {
    let n = tr_child.run(input).await?;
    let agent = Agent::new("tr-agent").model("fake/model").tool(tr_inc);
    let reply = agent.prompt(format!("add one to {}", n.n)).await?;
    Ok(reply.text)
}

/// Per-test failure budget of `tr_flaky` (a resource, not a static shared by tests).
struct Failures(AtomicUsize);

/// Fails with a transient error while the budget lasts.
#[action(retries = 3, backoff = "1ms")]
async fn tr_flaky(input: N, cx: ActionCtx) -> Result<N, ActionError> {
    let failures = cx.resource::<Failures>()?;
    tracing::info!("calling the far side");
    if failures
        .0
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return Err(ActionError::transient("the far side is busy"));
    }
    Ok(input)
}

/// Always fails, for good.
#[action]
async fn tr_broken(_input: N) -> Result<N, ActionError> {
    Err(ActionError::new(
        "card_declined",
        "the card was declined",
        false,
    ))
}

/// A flaky step (retried), then a broken one (fails the run).
#[workflow(slug = "tr-failing")]
async fn tr_failing(input: N) -> Result<N, WorkflowError> {
    let n = tr_flaky.run(input).await?;
    Ok(tr_broken.run(n).await?)
}

/// Returns the `traceparent` its step would send.
#[action]
async fn tr_traceparent(_input: N, cx: ActionCtx) -> Result<Option<String>, ActionError> {
    Ok(cx.traceparent())
}

/// One step that reports its `traceparent`.
#[workflow(slug = "tr-outgoing")]
async fn tr_outgoing(input: N) -> Result<Option<String>, WorkflowError> {
    Ok(tr_traceparent.run(input).await?)
}

/// A short durable sleep, then a step.
#[workflow(slug = "tr-nap")]
async fn tr_nap(ctx: Ctx, input: N) -> Result<N, WorkflowError> {
    ctx.sleep("20ms").await?;
    Ok(tr_inc.run(input).await?)
}

/// One LLM step.
#[workflow(slug = "tr-llm")]
async fn tr_llm(_input: N) -> Result<String, WorkflowError> {
    Ok(prompt_llm("Say hi").model("openai/gpt-test").await?)
}

fn engine_on(store: SharedStore) -> Engine {
    builder(store).build().expect("engine")
}

fn builder(store: SharedStore) -> reprise::EngineBuilder {
    Engine::builder()
        .store(store)
        .register(tr_four)
        .register(tr_child)
        .register(tr_parent)
        .register(tr_failing)
        .register(tr_outgoing)
        .register(tr_llm)
        .register(tr_nap)
}

/// The spans exported while it lives (on this thread only).
struct Traced {
    exporter: InMemorySpanExporter,
    _default: tracing::subscriber::DefaultGuard,
    _otel: reprise::telemetry::OtelGuard,
}

fn traced() -> Traced {
    let exporter = InMemorySpanExporter::default();
    let (layer, otel) = reprise::telemetry::otel_layer_with_exporter(exporter.clone(), false);
    let subscriber = tracing_subscriber::registry().with(layer);
    Traced {
        exporter,
        _default: tracing::subscriber::set_default(subscriber),
        _otel: otel,
    }
}

impl Traced {
    fn spans(&self) -> Vec<SpanData> {
        self.exporter.get_finished_spans().expect("finished spans")
    }
    fn runs(&self) -> Vec<SpanData> {
        self.spans()
            .into_iter()
            .filter(|s| attr(s, "reprise.run.id").is_some())
            .collect()
    }
    fn steps(&self) -> Vec<SpanData> {
        self.spans()
            .into_iter()
            .filter(|s| attr(s, "reprise.step.id").is_some())
            .collect()
    }
}

fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

fn step_id(span: &SpanData) -> String {
    attr(span, "reprise.step.id").expect("a step span")
}

fn status(span: &SpanData) -> String {
    attr(span, "reprise.step.status")
        .or_else(|| attr(span, "reprise.run.status"))
        .unwrap_or_default()
}

fn event_names(span: &SpanData) -> Vec<String> {
    span.events.iter().map(|e| e.name.to_string()).collect()
}

#[tokio::test]
async fn a_run_that_crashed_and_resumed_twice_shows_each_step_once() {
    let traced = traced();
    let store: SharedStore = Arc::new(MemoryStore::new());
    // First process: run_started and two step records reach the log, then it dies.
    let first = engine_on(Arc::new(DyingStore::new(store.clone(), 3)));
    let id = first.start(&tr_four, N { n: 0 }).await.expect("start");
    first
        .execute(&id)
        .await
        .expect_err("the first process dies");
    // Second process: run_started and one more step record, then it dies too.
    let second = engine_on(Arc::new(DyingStore::new(store.clone(), 2)));
    second
        .execute(&id)
        .await
        .expect_err("the second process dies");
    let third = engine_on(store);
    let execution = third.drive(&id).await.expect("drive");
    assert_eq!(execution.outcome, RunOutcome::Completed(json!({ "n": 4 })));

    let runs = traced.runs();
    assert_eq!(
        runs.iter().map(status).collect::<Vec<_>>(),
        ["aborted", "aborted", "completed"],
        "one run span per execution"
    );
    for run in &runs {
        assert_eq!(attr(run, "reprise.run.id"), Some(id.to_string()));
        assert_eq!(attr(run, "reprise.workflow").as_deref(), Some("tr-four"));
        assert_eq!(attr(run, "reprise.run.attempt").as_deref(), Some("1"));
    }
    assert_eq!(runs[2].status, Status::Unset);
    // One trace for the whole run: its id is the run id, in every process.
    let run_trace = id.to_string().replace('-', "");
    for span in runs.iter().chain(&traced.steps()) {
        assert_eq!(span.span_context.trace_id().to_string(), run_trace);
    }
    let root = runs[0].parent_span_id;
    assert!(
        runs.iter()
            .all(|r| r.parent_span_is_remote && r.parent_span_id == root)
    );
    assert!(
        matches!(runs[0].status, Status::Error { .. }),
        "an aborted execution"
    );
    assert_eq!(attr(&runs[2], "reprise.run.replayed").as_deref(), Some("3"));

    let steps = traced.steps();
    // Each step completed in exactly one span; replayed steps have none.
    let mut completed: BTreeMap<String, usize> = BTreeMap::new();
    for step in steps.iter().filter(|s| status(s) == "completed") {
        *completed.entry(step_id(step)).or_default() += 1;
    }
    assert_eq!(completed.len(), 4, "{completed:?}");
    assert!(completed.values().all(|&n| n == 1), "{completed:?}");
    // The two steps whose records died with a process show once more, interrupted.
    let interrupted: Vec<_> = steps
        .iter()
        .filter(|s| status(s) == "interrupted")
        .collect();
    assert_eq!(interrupted.len(), 2);
    assert_eq!(steps.len(), 6);
    // Every step span is a child of the run span of the execution that ran it; the last
    // execution ran only the last step (the others were answered from the log).
    let children = |run: &SpanData| -> Vec<(String, String)> {
        steps
            .iter()
            .filter(|s| s.parent_span_id == run.span_context.span_id())
            .map(|s| (step_id(s), status(s)))
            .collect()
    };
    assert_eq!(children(&runs[0]).len(), 3);
    assert_eq!(children(&runs[1]).len(), 2);
    let last = children(&runs[2]);
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].1, "completed");
    for step in &steps {
        assert_eq!(attr(step, "reprise.step.callee").as_deref(), Some("tr-inc"));
        assert_eq!(attr(step, "reprise.step.kind").as_deref(), Some("action"));
    }
}

/// Replies with a tool call first, then a final answer; records the requests.
#[derive(Default)]
struct FakeModel {
    replies: Mutex<VecDeque<ChatMessage>>,
}

#[async_trait]
impl LlmProvider for FakeModel {
    async fn complete(&self, _request: LlmRequest) -> Result<LlmResponse, LlmError> {
        let message = self
            .replies
            .lock()
            .expect("lock")
            .pop_front()
            .ok_or_else(|| LlmError::new(LlmErrorKind::BadRequest, "no reply scripted"))?;
        Ok(LlmResponse {
            message,
            usage: Usage {
                prompt_tokens: 10,
                completion_tokens: 5,
                total_tokens: 15,
                cached_tokens: 0,
            },
            model: "fake".into(),
            finish_reason: None,
        })
    }
}

#[tokio::test]
async fn sub_workflow_and_agent_steps_are_children_of_their_step_spans() {
    let traced = traced();
    let model = FakeModel::default();
    model.replies.lock().expect("lock").extend([
        ChatMessage {
            role: Some(Role::Assistant),
            content: None,
            tool_calls: vec![ToolCall {
                id: "c1".into(),
                name: "tr-inc".into(),
                arguments: json!({ "n": 2 }),
            }],
            tool_call_id: None,
        },
        ChatMessage::assistant("3"),
    ]);
    let engine = builder(Arc::new(MemoryStore::new()))
        .llm(Arc::new(model))
        .default_model("fake/model")
        .build()
        .expect("engine");
    let id = engine.start(&tr_parent, N { n: 0 }).await.expect("start");
    let execution = engine.drive(&id).await.expect("drive");
    assert_eq!(execution.outcome, RunOutcome::Completed(json!("3")));

    let runs = traced.runs();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    let steps = traced.steps();
    let by_id = |id: &str| -> &SpanData {
        steps.iter().find(|s| step_id(s) == id).unwrap_or_else(|| {
            panic!(
                "no span for step {id}: {:?}",
                steps.iter().map(step_id).collect::<Vec<_>>()
            )
        })
    };
    let parent_of = |span: &SpanData| span.parent_span_id;
    let id_of = |span: &SpanData| span.span_context.span_id();

    let child = by_id("tr-child#0");
    assert_eq!(
        attr(child, "reprise.step.kind").as_deref(),
        Some("workflow")
    );
    assert_eq!(parent_of(child), id_of(run));
    let inner: Vec<_> = steps
        .iter()
        .filter(|s| step_id(s).starts_with("tr-child#0/"))
        .collect();
    assert_eq!(inner.len(), 2);
    for step in &inner {
        assert_eq!(parent_of(step), id_of(child), "{}", step_id(step));
    }

    let agent = steps
        .iter()
        .find(|s| attr(s, "reprise.step.kind").as_deref() == Some("agent"))
        .expect("an agent span");
    assert_eq!(parent_of(agent), id_of(run));
    let agent_id = step_id(agent);
    let turns: Vec<_> = steps
        .iter()
        .filter(|s| attr(s, "reprise.step.kind").as_deref() == Some("llm"))
        .collect();
    assert_eq!(turns.len(), 2, "two model requests");
    for turn in &turns {
        assert_eq!(parent_of(turn), id_of(agent), "{}", step_id(turn));
        assert!(step_id(turn).starts_with(&format!("{agent_id}/")));
        assert_eq!(attr(turn, "gen_ai.operation.name").as_deref(), Some("chat"));
        assert_eq!(
            attr(turn, "gen_ai.request.model").as_deref(),
            Some("fake/model")
        );
        assert_eq!(
            attr(turn, "gen_ai.usage.input_tokens").as_deref(),
            Some("10")
        );
        assert_eq!(
            attr(turn, "gen_ai.usage.output_tokens").as_deref(),
            Some("5")
        );
    }
    let tool = steps
        .iter()
        .find(|s| {
            step_id(s).starts_with(&format!("{agent_id}/"))
                && attr(s, "reprise.step.callee").as_deref() == Some("tr-inc")
        })
        .expect("the tool call's span");
    assert_eq!(parent_of(tool), id_of(agent));
    // The agent's span sums its requests' tokens.
    assert_eq!(
        attr(agent, "gen_ai.usage.input_tokens").as_deref(),
        Some("20")
    );
    // One trace.
    let trace = run.span_context.trace_id();
    assert!(steps.iter().all(|s| s.span_context.trace_id() == trace));
}

#[tokio::test]
async fn retries_and_errors_are_span_events() {
    let traced = traced();
    let engine = builder(Arc::new(MemoryStore::new()))
        .resource(Failures(AtomicUsize::new(2)))
        .build()
        .expect("engine");
    let id = engine.start(&tr_failing, N { n: 0 }).await.expect("start");
    let execution = engine.drive(&id).await.expect("drive");
    assert!(matches!(execution.outcome, RunOutcome::Failed(_)));

    let steps = traced.steps();
    let flaky = steps
        .iter()
        .find(|s| attr(s, "reprise.step.callee").as_deref() == Some("tr-flaky"))
        .expect("the flaky step's span");
    assert_eq!(status(flaky), "completed");
    assert_eq!(attr(flaky, "reprise.step.attempts").as_deref(), Some("3"));
    assert_eq!(flaky.status, Status::Unset, "a success's status is unset");
    let retries: Vec<_> = flaky
        .events
        .iter()
        .filter(|e| e.name == "step attempt failed; retrying")
        .collect();
    assert_eq!(retries.len(), 2, "{:?}", event_names(flaky));
    // The action's own events land in its step's span, one per attempt.
    let own = event_names(flaky)
        .into_iter()
        .filter(|name| name == "calling the far side")
        .count();
    assert_eq!(own, 3);
    for (n, event) in retries.iter().enumerate() {
        let get = |key: &str| {
            event
                .attributes
                .iter()
                .find(|kv| kv.key.as_str() == key)
                .map(|kv| kv.value.to_string())
        };
        assert_eq!(get("exception.type").as_deref(), Some("transient"));
        assert_eq!(
            get("exception.message").as_deref(),
            Some("the far side is busy")
        );
        assert_eq!(get("reprise.step.attempt"), Some((n + 1).to_string()));
    }

    let broken = steps
        .iter()
        .find(|s| attr(s, "reprise.step.callee").as_deref() == Some("tr-broken"))
        .expect("the broken step's span");
    assert_eq!(status(broken), "failed");
    assert!(
        matches!(broken.status, Status::Error { .. }),
        "{:?}",
        broken.status
    );
    assert!(event_names(broken).contains(&"step failed".to_owned()));
    let event = broken
        .events
        .iter()
        .find(|e| e.name == "step failed")
        .expect("the failure event");
    assert!(
        event.attributes.iter().any(
            |kv| kv.key.as_str() == "exception.type" && kv.value.to_string() == "card_declined"
        )
    );

    let runs = traced.runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(status(&runs[0]), "failed");
    assert!(matches!(runs[0].status, Status::Error { .. }));
    assert!(event_names(&runs[0]).contains(&"run failed".to_owned()));
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn a_traceparent_from_an_http_start_is_the_runs_trace_across_a_crash() {
    let traced = traced();
    let store: SharedStore = Arc::new(MemoryStore::new());
    let engine = engine_on(store.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = HttpOptions {
        api_token: None,
        ..HttpOptions::default()
    };
    let server = tokio::spawn(serve(engine.clone(), listener, options, async {
        let _ = stopped.await;
    }));
    let response = reqwest::Client::new()
        .post(format!("{base}/workflows/tr-four"))
        .header("traceparent", TRACEPARENT)
        .json(&json!({ "n": 0 }))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
    let body: serde_json::Value = response.json().await.expect("JSON");
    let id = reprise::RunId::from(body["run_id"].as_str().expect("run_id"));
    // A malformed header is ignored (W3C Trace Context): the run starts, on a trace of its own.
    let response = reqwest::Client::new()
        .post(format!("{base}/workflows/tr-four"))
        .header("traceparent", "00-not-a-trace-01")
        .json(&json!({ "n": 0 }))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
    let body: serde_json::Value = response.json().await.expect("JSON");
    let other = reprise::RunId::from(body["run_id"].as_str().expect("run_id"));
    let events = engine.events(&other).await.expect("events");
    assert_eq!(events[0].event.payload.get("traceparent"), None);
    let _ = stop.send(());
    server.await.expect("join").expect("server");

    // The run records the caller's trace context…
    let events = engine.events(&id).await.expect("events");
    assert_eq!(events[0].event.payload["traceparent"], json!(TRACEPARENT));
    // …and every execution, before and after a crash, joins that trace.
    let dying = engine_on(Arc::new(DyingStore::new(store.clone(), 2)));
    dying.execute(&id).await.expect_err("the process dies");
    let execution = engine.drive(&id).await.expect("drive");
    assert_eq!(execution.outcome, RunOutcome::Completed(json!({ "n": 4 })));

    let runs = traced.runs();
    assert_eq!(runs.len(), 2);
    for run in &runs {
        assert_eq!(run.span_context.trace_id().to_string(), TRACE_ID);
        assert_eq!(run.parent_span_id.to_string(), PARENT_ID);
        assert!(run.parent_span_is_remote);
    }
    let steps = traced.steps();
    assert!(!steps.is_empty());
    assert!(
        steps
            .iter()
            .all(|s| s.span_context.trace_id().to_string() == TRACE_ID)
    );
}

#[tokio::test]
async fn a_malformed_traceparent_is_refused_by_start_with() {
    let engine = engine_on(Arc::new(MemoryStore::new()));
    let error = engine
        .start_with(
            "tr-four",
            json!({ "n": 0 }),
            Trigger::Code,
            StartOptions::new().traceparent("not-a-traceparent"),
        )
        .await
        .expect_err("refused");
    assert!(error.to_string().contains("W3C traceparent"), "{error}");
}

#[tokio::test]
async fn steps_hand_their_traceparent_to_outgoing_calls() {
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::path("/v1/chat/completions"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(json!({
            "model": "gpt-test",
            "choices": [{ "message": { "role": "assistant", "content": "hi" }, "finish_reason": "stop" }],
            "usage": { "prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4 }
        })))
        .mount(&server)
        .await;
    let traced = traced();
    let provider = OpenAiProvider::new(format!("{}/v1", server.uri()), None);
    let engine = builder(Arc::new(MemoryStore::new()))
        .llm_provider("openai", Arc::new(provider))
        .build()
        .expect("engine");
    let (id, _) = engine
        .start_with(
            "tr-llm",
            json!({ "n": 0 }),
            Trigger::Code,
            StartOptions::new().traceparent(TRACEPARENT),
        )
        .await
        .expect("start");
    let execution = engine.drive(&id).await.expect("drive");
    assert_eq!(execution.outcome, RunOutcome::Completed(json!("hi")));

    let requests = server.received_requests().await.expect("requests");
    assert_eq!(requests.len(), 1);
    let sent = requests[0]
        .headers
        .get("traceparent")
        .expect("a traceparent header")
        .to_str()
        .expect("ASCII")
        .to_owned();
    // The header names the model request's own step span, in the run's trace.
    let request_span = traced
        .steps()
        .into_iter()
        .find(|s| {
            attr(s, "reprise.step.kind").as_deref() == Some("llm")
                && step_id(s).contains("/attempt")
        })
        .expect("the request's span");
    assert_eq!(
        sent,
        format!(
            "00-{}-{}-01",
            request_span.span_context.trace_id(),
            request_span.span_context.span_id()
        )
    );
    assert_eq!(request_span.span_context.trace_id().to_string(), TRACE_ID);

    // An action gets its own step's traceparent from its context.
    let (id, _) = engine
        .start_with(
            "tr-outgoing",
            json!({ "n": 0 }),
            Trigger::Code,
            StartOptions::new().traceparent(TRACEPARENT),
        )
        .await
        .expect("start");
    let RunOutcome::Completed(output) = engine.drive(&id).await.expect("drive").outcome else {
        panic!("completes");
    };
    let step = traced
        .steps()
        .into_iter()
        .find(|s| attr(s, "reprise.step.callee").as_deref() == Some("tr-traceparent"))
        .expect("the step's span");
    assert_ne!(step.span_context.span_id(), SpanId::INVALID);
    assert_eq!(
        output,
        json!(format!("00-{TRACE_ID}-{}-01", step.span_context.span_id()))
    );
}

#[tokio::test]
async fn without_an_otel_layer_an_action_gets_the_runs_recorded_traceparent() {
    // A subscriber without an OpenTelemetry layer on this thread (whatever another test
    // installed globally): no span has a trace context.
    let _default = tracing::subscriber::set_default(tracing_subscriber::registry());
    let engine = engine_on(Arc::new(MemoryStore::new()));
    let (id, _) = engine
        .start_with(
            "tr-outgoing",
            json!({ "n": 0 }),
            Trigger::Code,
            StartOptions::new().traceparent(TRACEPARENT),
        )
        .await
        .expect("start");
    let execution = engine.drive(&id).await.expect("drive");
    assert_eq!(execution.outcome, RunOutcome::Completed(json!(TRACEPARENT)));
    // And none at all for a run started without one.
    let id = engine.start(&tr_outgoing, N { n: 0 }).await.expect("start");
    let execution = engine.drive(&id).await.expect("drive");
    assert_eq!(execution.outcome, RunOutcome::Completed(json!(null)));
}

#[tokio::test]
async fn a_sleep_shows_once_in_a_hot_run_and_waiting_then_completed_after_a_replay() {
    for hot in [false, true] {
        let traced = traced();
        let mut builder = builder(Arc::new(MemoryStore::new()));
        if !hot {
            builder = builder.hot_runs(0, std::time::Duration::ZERO);
        }
        let engine = builder.build().expect("engine");
        let id = engine.start(&tr_nap, N { n: 0 }).await.expect("start");
        let execution = engine.drive(&id).await.expect("drive");
        assert_eq!(execution.outcome, RunOutcome::Completed(json!({ "n": 1 })));
        let runs = traced.runs();
        assert_eq!(
            runs.iter().map(status).collect::<Vec<_>>(),
            ["suspended", "completed"],
            "hot: {hot}"
        );
        let sleeps: Vec<_> = traced
            .steps()
            .into_iter()
            .filter(|s| attr(s, "reprise.step.kind").as_deref() == Some("sleep"))
            .collect();
        let shown: Vec<_> = sleeps
            .iter()
            .map(|s| {
                let run = runs
                    .iter()
                    .position(|r| r.span_context.span_id() == s.parent_span_id);
                (status(s), run)
            })
            .collect();
        if hot {
            // The suspended body stayed in memory: one span, from the execution that
            // started the sleep to the one that finished it.
            assert_eq!(shown, [("completed".to_owned(), Some(0))]);
        } else {
            // The body was dropped and replayed: the sleep shows in both executions.
            assert_eq!(
                shown,
                [
                    ("waiting".to_owned(), Some(0)),
                    ("completed".to_owned(), Some(1))
                ]
            );
        }
        let step = traced
            .steps()
            .into_iter()
            .find(|s| attr(s, "reprise.step.callee").as_deref() == Some("tr-inc"))
            .expect("the step after the sleep");
        assert_eq!(step.parent_span_id, runs[1].span_context.span_id());
    }
}

#[test]
fn nothing_is_exported_without_an_endpoint() {
    let unset = |name: &str| std::env::var(name).map_or(true, |v| v.trim().is_empty());
    if !unset("OTEL_EXPORTER_OTLP_ENDPOINT") || !unset("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        println!("skipped: an OTLP endpoint is set in this environment");
        return;
    }
    let layer = reprise::telemetry::otel_layer::<tracing_subscriber::Registry>().expect("no error");
    assert!(layer.is_none());
}

#[tokio::test]
async fn a_webhook_delivery_with_a_traceparent_records_it() {
    use reprise::trigger::{WebhookDelivery, WebhookSource};
    let engine = builder(Arc::new(MemoryStore::new()))
        .webhook(WebhookSource::new("tr-hook", "tr-four").insecure_no_signature())
        .webhook(
            WebhookSource::new("tr-hook-once", "tr-four")
                .insecure_no_signature()
                .delivery_header("x-delivery-id"),
        )
        .build()
        .expect("engine");
    for (source, extra) in [("tr-hook", None), ("tr-hook-once", Some("d-1"))] {
        let mut headers = vec![("TraceParent".to_owned(), TRACEPARENT.to_owned())];
        if let Some(id) = extra {
            headers.push(("x-delivery-id".to_owned(), id.to_owned()));
        }
        let delivery = engine
            .deliver_webhook(source, &headers, br#"{"n": 1}"#)
            .await
            .expect("delivered");
        let WebhookDelivery::Started(id) = delivery else {
            panic!("{source}: {delivery:?}");
        };
        let events = engine.events(&id).await.expect("events");
        assert_eq!(
            events[0].event.payload["traceparent"],
            json!(TRACEPARENT),
            "{source}"
        );
    }
}

/// A plain `tracing` layer (no OpenTelemetry): every span created, with its fields as
/// created.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<SpanFields>>>);

/// A span's name and its fields as created.
type SpanFields = (String, BTreeMap<String, String>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Captured {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _id: &tracing::span::Id,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        self.0
            .lock()
            .expect("lock")
            .push((attrs.metadata().name().to_owned(), fields));
    }
}

impl Captured {
    fn take(&self) -> Vec<SpanFields> {
        std::mem::take(&mut *self.0.lock().expect("lock"))
    }
}

#[tokio::test]
async fn any_subscriber_sees_the_spans_and_a_replay_check_emits_none() {
    let captured = Captured::default();
    let _default =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(captured.clone()));
    let engine = engine_on(Arc::new(MemoryStore::new()));
    let id = engine.start(&tr_four, N { n: 0 }).await.expect("start");
    let execution = engine.drive(&id).await.expect("drive");
    assert_eq!(execution.outcome, RunOutcome::Completed(json!({ "n": 4 })));
    let spans = captured.take();
    let names: Vec<&str> = spans.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["run", "step", "step", "step", "step"]);
    let run = &spans[0].1;
    assert_eq!(run["reprise.run.id"], id.to_string());
    assert_eq!(run["reprise.workflow"], "tr-four");
    assert_eq!(run["reprise.run.trigger"], "code");
    let ids: Vec<&str> = spans[1..]
        .iter()
        .map(|(_, fields)| fields["reprise.step.id"].as_str())
        .collect();
    let events = engine.events(&id).await.expect("events");
    let recorded: Vec<&str> = events
        .iter()
        .filter(|e| e.event.kind == reprise::event::EventKind::StepCompleted)
        .filter_map(|e| e.event.correlation_id.as_deref())
        .collect();
    assert_eq!(ids, recorded);

    // Replaying the whole history (a replay check) runs nothing live: no span at all.
    let export = engine.export_run(&id).await.expect("export");
    engine
        .check_replay(&export)
        .await
        .expect("replays")
        .expect("matches");
    assert_eq!(captured.take(), []);
}
