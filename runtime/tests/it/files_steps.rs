//! Issue 18: the leaf steps of workflow files (`action`, `workflow`, `prompt`, `agent`,
//! `sleep`, `hook`, `signal`, `event`, `select`) — each an adapter over the recorder, run
//! through a small file workflow: ids, schema checks, retries, waits across resumes, and
//! replay of what was recorded.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use reprise::event::{Event, EventKind, RunId, RunStatus};
use reprise::llm::{
    ChatMessage, LlmError, LlmErrorKind, LlmProvider, LlmRequest, LlmResponse, Role, ToolCall,
    Usage,
};
use reprise::prelude::*;
use reprise::store::MemoryStore;
use reprise::{Clock, RunOutcome, Trigger};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// fixtures

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct FsNum {
    n: i64,
}

/// How often each action ran live.
#[derive(Default)]
struct FsCalls {
    double: AtomicUsize,
    flaky: AtomicUsize,
}

/// Doubles `n`.
#[action(slug = "fs-double")]
async fn fs_double(input: FsNum, cx: ActionCtx) -> Result<FsNum, ActionError> {
    cx.resource::<FsCalls>()?
        .double
        .fetch_add(1, Ordering::SeqCst);
    Ok(FsNum { n: input.n * 2 })
}

/// Fails (retryably) on its first two attempts; no retries of its own.
#[action(slug = "fs-flaky")]
async fn fs_flaky(input: FsNum, cx: ActionCtx) -> Result<FsNum, ActionError> {
    let calls = cx
        .resource::<FsCalls>()?
        .flaky
        .fetch_add(1, Ordering::SeqCst);
    if calls < 2 {
        return Err(ActionError::transient("not yet"));
    }
    Ok(input)
}

/// A code workflow a file calls by slug: doubles twice.
#[workflow(slug = "fs-quadruple")]
async fn fs_quadruple(input: FsNum) -> Result<FsNum, WorkflowError> {
    let once = fs_double.run(input).await?;
    Ok(fs_double.run(once).await?)
}

/// A clock the test moves by hand.
struct FsClock(Mutex<DateTime<Utc>>);

impl FsClock {
    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += TimeDelta::from_std(by).unwrap();
    }
}

impl Clock for FsClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// Replies in order; records every request.
#[derive(Default)]
struct FsLlm {
    replies: Mutex<VecDeque<ChatMessage>>,
    requests: Mutex<Vec<LlmRequest>>,
}

impl FsLlm {
    fn new(replies: Vec<ChatMessage>) -> Arc<FsLlm> {
        Arc::new(FsLlm {
            replies: Mutex::new(replies.into()),
            ..FsLlm::default()
        })
    }
    fn requests(&self) -> Vec<LlmRequest> {
        self.requests.lock().unwrap().clone()
    }
}

#[async_trait]
impl LlmProvider for FsLlm {
    async fn complete(&self, request: LlmRequest) -> Result<LlmResponse, LlmError> {
        self.requests.lock().unwrap().push(request);
        let message = self
            .replies
            .lock()
            .unwrap()
            .pop_front()
            .ok_or_else(|| LlmError::new(LlmErrorKind::BadRequest, "no reply scripted"))?;
        Ok(LlmResponse {
            message,
            usage: Usage::default(),
            model: "fake".into(),
            finish_reason: None,
        })
    }
}

fn text(content: &str) -> ChatMessage {
    ChatMessage {
        role: Some(Role::Assistant),
        content: Some(content.into()),
        tool_calls: Vec::new(),
        tool_call_id: None,
    }
}

fn tool_call(name: &str, arguments: Value) -> ChatMessage {
    ChatMessage {
        role: Some(Role::Assistant),
        content: None,
        tool_calls: vec![ToolCall {
            id: "call-1".into(),
            name: name.into(),
            arguments,
        }],
        tool_call_id: None,
    }
}

/// An engine over the workflow files `files` (name → text), on the memory store, with a
/// hand-moved clock and a scripted model.
struct Fixture {
    engine: Engine,
    clock: Arc<FsClock>,
    calls: Arc<FsCalls>,
    _dir: tempfile::TempDir,
}

fn fixture(files: &[(&str, &str)], llm: Option<Arc<FsLlm>>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in files {
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    let clock = Arc::new(FsClock(Mutex::new(Utc::now())));
    let calls = Arc::new(FsCalls::default());
    let mut builder = Engine::builder()
        .store(Arc::new(MemoryStore::new()))
        .clock(clock.clone())
        .register(fs_double)
        .register(fs_flaky)
        .register(fs_quadruple)
        .shared_resource(calls.clone())
        .run_retry_backoff(Duration::from_millis(1))
        .workflow_dir(dir.path());
    if let Some(llm) = llm {
        builder = builder.llm(llm).default_model("fake/model");
    }
    Fixture {
        engine: builder.build().unwrap(),
        clock,
        calls,
        _dir: dir,
    }
}

impl Fixture {
    async fn start(&self, slug: &str, input: Value) -> RunId {
        self.engine
            .start_json(slug, input, Trigger::Code)
            .await
            .unwrap()
    }

    /// One execution (a sleep suspends it; the test moves the clock).
    async fn drive(&self, id: &RunId) -> RunOutcome {
        self.engine.execute(id).await.unwrap().outcome
    }

    async fn events(&self, id: &RunId) -> Vec<Event> {
        self.engine.store().events(id).await.unwrap()
    }

    async fn status(&self, id: &RunId) -> RunStatus {
        self.engine.get_run(id).await.unwrap().status
    }

    /// Replays the run in a replay-only engine and asserts it reproduces its history.
    async fn assert_replays(&self, id: &RunId) {
        let export = self.engine.export_run(id).await.unwrap();
        let judged = self.engine.check_replay(&export).await.unwrap();
        assert!(judged.is_ok(), "replay check of {id}: {judged:?}");
    }
}

fn completed(outcome: RunOutcome) -> Value {
    match outcome {
        RunOutcome::Completed(output) => output,
        other => panic!("not completed: {other:?}"),
    }
}

fn failed(outcome: RunOutcome) -> WorkflowError {
    match outcome {
        RunOutcome::Failed(error) => error,
        other => panic!("not failed: {other:?}"),
    }
}

/// `(correlation id, kind)` of every event with a correlation id, in log order.
fn ids(events: &[Event]) -> Vec<(String, EventKind)> {
    events
        .iter()
        .filter_map(|e| Some((e.event.correlation_id.clone()?, e.event.kind)))
        .collect()
}

fn has(events: &[Event], id: &str, kind: EventKind) -> bool {
    events
        .iter()
        .any(|e| e.event.kind == kind && e.event.correlation_id.as_deref() == Some(id))
}

fn output_at(events: &[Event], id: &str) -> Option<Value> {
    events
        .iter()
        .find(|e| {
            e.event.kind == EventKind::StepCompleted
                && e.event.correlation_id.as_deref() == Some(id)
        })
        .map(|e| e.event.payload["output"].clone())
}

// ---------------------------------------------------------------------------------------
// action by slug

const ACTION_FILE: &str = "---
slug: fs-action
steps:
  - id: twice
    action: fs-double
    input:
      n: '{{ inputs.n }}'
  - id: out
    return: '{{ steps.twice.output }}'
---
Doubles through a registered action.
";

#[tokio::test]
async fn fs_an_action_step_calls_the_action_by_slug_records_it_at_its_id_and_replays() {
    let fx = fixture(&[("fs-action.md", ACTION_FILE)], None);
    let id = fx.start("fs-action", json!({ "n": 21 })).await;
    assert_eq!(completed(fx.drive(&id).await), json!({ "n": 42 }));
    let events = fx.events(&id).await;
    let started = events
        .iter()
        .find(|e| e.event.kind == EventKind::StepStarted)
        .unwrap();
    assert_eq!(started.event.correlation_id.as_deref(), Some("twice#0"));
    assert_eq!(started.event.payload["callee"], "fs-double");
    assert_eq!(started.event.payload["kind"], "action");
    assert_eq!(output_at(&events, "twice#0"), Some(json!({ "n": 42 })));
    fx.assert_replays(&id).await;
    assert_eq!(
        fx.calls.double.load(Ordering::SeqCst),
        1,
        "replay calls nothing"
    );
}

#[tokio::test]
async fn fs_an_engine_override_of_the_action_answers_a_by_slug_call() {
    let fx = fixture(&[("fs-action.md", ACTION_FILE)], None);
    let stub: reprise::ActionOverride = Arc::new(|input: Value, _cx: ActionCtx| {
        Box::pin(async move { Ok(json!({ "n": input["n"].as_i64().unwrap() + 1000 })) })
    });
    fx.engine.override_action("fs-double", Some(stub));
    let id = fx.start("fs-action", json!({ "n": 1 })).await;
    assert_eq!(completed(fx.drive(&id).await), json!({ "n": 1001 }));
    assert_eq!(
        fx.calls.double.load(Ordering::SeqCst),
        0,
        "the stub ran instead"
    );
}

#[tokio::test]
async fn fs_an_action_input_that_fails_its_schema_fails_the_step_with_kind_schema() {
    // The input is built at run time (the file's check cannot see it): the step checks it.
    let body = ACTION_FILE.replace("slug: fs-action", "slug: fs-action-bad");
    let fx = fixture(&[("fs-action-bad.md", &body)], None);
    let id = fx.start("fs-action-bad", json!({ "n": "many" })).await;
    let error = failed(fx.drive(&id).await);
    assert_eq!(error.kind, "schema", "{error:?}");
    assert!(
        error.message.contains("/n") && error.message.contains("twice#0"),
        "names the step and the pointer: {}",
        error.message
    );
    assert_eq!(fx.calls.double.load(Ordering::SeqCst), 0, "never called");
    assert!(has(&fx.events(&id).await, "twice#0", EventKind::StepFailed));
}

#[tokio::test]
async fn fs_a_step_retry_with_a_fixed_delay_replaces_the_actions_own_policy() {
    let body = "---
slug: fs-retry
steps:
  - id: shaky
    action: fs-flaky
    input: { n: 7 }
    retry: { max_attempts: 3, backoff: fixed, delay: 20ms }
  - id: out
    return: '{{ steps.shaky.output.n }}'
---
";
    let fx = fixture(&[("fs-retry.md", body)], None);
    let id = fx.start("fs-retry", json!({})).await;
    assert_eq!(completed(fx.drive(&id).await), json!(7));
    let events = fx.events(&id).await;
    let delays: Vec<Value> = events
        .iter()
        .filter(|e| e.event.kind == EventKind::StepRetrying)
        .map(|e| e.event.payload["delay_ms"].clone())
        .collect();
    assert_eq!(delays, [json!(20), json!(20)], "two retries, 20 ms each");
    assert_eq!(fx.calls.flaky.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn fs_an_unknown_action_slug_fails_the_step_naming_it() {
    let body = ACTION_FILE
        .replace("slug: fs-action", "slug: fs-action-unknown")
        .replace("action: fs-double", "action: fs-nowhere");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fs-action-unknown.md"), &body).unwrap();
    // The check at startup may refuse the file; if it loads, the step fails at run time.
    let built = Engine::builder()
        .store(Arc::new(MemoryStore::new()))
        .register(fs_double)
        .workflow_dir(dir.path())
        .build();
    let engine = match built {
        Err(error) => {
            assert!(error.to_string().contains("fs-nowhere"), "{error}");
            return;
        }
        Ok(engine) => engine,
    };
    let id = engine
        .start_json("fs-action-unknown", json!({ "n": 1 }), Trigger::Code)
        .await
        .unwrap();
    let error = failed(engine.execute(&id).await.unwrap().outcome);
    assert!(error.message.contains("fs-nowhere"), "{error:?}");
    assert!(!error.retryable);
}

// ---------------------------------------------------------------------------------------
// sub-workflow by slug

#[tokio::test]
async fn fs_a_workflow_step_runs_a_registered_workflow_inline_under_its_id() {
    let body = "---
slug: fs-sub
steps:
  - id: four
    workflow: fs-quadruple
    input: { n: '{{ inputs.n }}' }
  - id: out
    return: '{{ steps.four.output.n }}'
---
";
    let fx = fixture(&[("fs-sub.md", body)], None);
    let id = fx.start("fs-sub", json!({ "n": 3 })).await;
    assert_eq!(completed(fx.drive(&id).await), json!(12));
    let events = fx.events(&id).await;
    assert_eq!(
        output_at(&events, "four#0/fs-double#0"),
        Some(json!({ "n": 6 }))
    );
    assert_eq!(
        output_at(&events, "four#0/fs-double@2#0"),
        Some(json!({ "n": 12 }))
    );
    assert_eq!(output_at(&events, "four#0"), Some(json!({ "n": 12 })));
    fx.assert_replays(&id).await;
}

// ---------------------------------------------------------------------------------------
// prompt and agent

#[tokio::test]
async fn fs_a_prompt_with_an_output_schema_is_parsed_validated_and_asked_again() {
    let body = r#"---
slug: fs-prompt
steps:
  - id: verdict
    prompt: 'Review: {{ inputs.diff }}'
    system: You review code.
    output_schema:
      type: object
      required: [approve]
      properties:
        approve: { type: boolean }
  - id: out
    return: '{{ steps.verdict.output.approve }}'
---
"#;
    let llm = FsLlm::new(vec![
        text(r#"{"approve": "yes"}"#),
        text("```json\n{\"approve\": true}\n```"),
    ]);
    let fx = fixture(&[("fs-prompt.md", body)], Some(llm.clone()));
    let id = fx.start("fs-prompt", json!({ "diff": "+1 line" })).await;
    assert_eq!(completed(fx.drive(&id).await), json!(true));
    let requests = llm.requests();
    assert_eq!(
        requests.len(),
        2,
        "the first reply did not match: asked again"
    );
    let schema = requests[0].response_schema.as_ref().unwrap();
    assert_eq!(schema.schema["required"], json!(["approve"]));
    assert_eq!(
        requests[0].messages[1].content.as_deref(),
        Some("Review: +1 line")
    );
    let events = fx.events(&id).await;
    assert_eq!(
        output_at(&events, "verdict#0"),
        Some(json!({ "approve": true }))
    );
    assert!(has(
        &events,
        "verdict#0/attempt#1",
        EventKind::StepCompleted
    ));
    fx.assert_replays(&id).await;
    assert_eq!(llm.requests().len(), 2, "a replay asks nothing");
}

#[tokio::test]
async fn fs_an_agent_step_calls_a_registered_action_as_a_tool_and_returns_its_reply() {
    let body = "---
slug: fs-agent
steps:
  - id: helper
    agent:
      instructions: Use the tools.
      tools: [fs-double]
      max_turns: 3
    message: 'Double {{ inputs.n }}'
  - id: out
    return: '{{ steps.helper.output }}'
---
";
    let llm = FsLlm::new(vec![
        tool_call("fs-double", json!({ "n": 5 })),
        text("It is 10."),
    ]);
    let fx = fixture(&[("fs-agent.md", body)], Some(llm.clone()));
    let id = fx.start("fs-agent", json!({ "n": 5 })).await;
    assert_eq!(completed(fx.drive(&id).await), json!("It is 10."));
    let requests = llm.requests();
    assert_eq!(requests[0].tools.len(), 1);
    assert_eq!(requests[0].tools[0].name, "fs-double");
    assert_eq!(requests[0].tools[0].parameters["required"], json!(["n"]));
    let events = fx.events(&id).await;
    let tool_step = ids(&events)
        .into_iter()
        .find(|(id, kind)| id.ends_with("/fs-double#0") && *kind == EventKind::StepCompleted)
        .map(|(id, _)| id)
        .expect("the tool call is a recorded step inside the agent's");
    assert!(tool_step.starts_with("helper#0/"), "{tool_step}");
    assert_eq!(output_at(&events, &tool_step), Some(json!({ "n": 10 })));
    assert_eq!(fx.calls.double.load(Ordering::SeqCst), 1);
    fx.assert_replays(&id).await;
}

// ---------------------------------------------------------------------------------------
// sleep, hook

#[tokio::test]
async fn fs_a_sleep_suspends_the_run_and_it_goes_on_once_the_time_has_come() {
    let body = "---
slug: fs-sleep
steps:
  - id: nap
    sleep: 1h
  - id: after
    action: fs-double
    input: { n: 2 }
  - id: out
    return: '{{ steps.after.output.n }}'
---
";
    let fx = fixture(&[("fs-sleep.md", body)], None);
    let id = fx.start("fs-sleep", json!({})).await;
    assert!(matches!(fx.drive(&id).await, RunOutcome::Suspended(_)));
    assert_eq!(fx.status(&id).await, RunStatus::Sleeping);
    assert_eq!(fx.calls.double.load(Ordering::SeqCst), 0);
    fx.clock.advance(Duration::from_secs(3601));
    assert_eq!(completed(fx.drive(&id).await), json!(4));
    let events = fx.events(&id).await;
    assert!(has(&events, "nap#0", EventKind::SleepStarted));
    assert!(has(&events, "nap#0", EventKind::SleepCompleted));
    fx.assert_replays(&id).await;
}

const HOOK_FILE: &str = "---
slug: fs-hook
steps:
  - id: approve
    hook: Approve the deploy
    timeout: 2h
    schema:
      type: object
      required: [ok]
      properties:
        ok: { type: boolean }
  - id: out
    return: '{{ steps.approve.output.ok }}'
---
";

#[tokio::test]
async fn fs_a_hook_refuses_a_payload_that_fails_its_schema_and_takes_a_good_one() {
    let fx = fixture(&[("fs-hook.md", HOOK_FILE)], None);
    let id = fx.start("fs-hook", json!({})).await;
    assert!(matches!(fx.drive(&id).await, RunOutcome::Suspended(_)));
    let hooks = fx.engine.open_hooks(&id).await.unwrap();
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0].id, "approve#0");
    assert!(
        hooks[0].timeout_at.is_some(),
        "the step's timeout is the hook's deadline"
    );
    let refused = fx
        .engine
        .resume_hook(&hooks[0].token, json!({ "ok": "sure" }))
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("/ok"), "{refused}");
    assert_eq!(
        fx.status(&id).await,
        RunStatus::Waiting,
        "the hook stays open"
    );
    fx.engine
        .resume_hook(&hooks[0].token, json!({ "ok": true }))
        .await
        .unwrap();
    assert_eq!(completed(fx.drive(&id).await), json!(true));
    fx.assert_replays(&id).await;
}

#[tokio::test]
async fn fs_a_hook_that_times_out_fails_the_step_with_kind_timeout() {
    let fx = fixture(&[("fs-hook.md", HOOK_FILE)], None);
    let id = fx.start("fs-hook", json!({})).await;
    assert!(matches!(fx.drive(&id).await, RunOutcome::Suspended(_)));
    fx.clock.advance(Duration::from_secs(2 * 3600 + 1));
    let error = failed(fx.drive(&id).await);
    assert_eq!(error.kind, "timeout", "{error:?}");
    let hooks = fx.engine.open_hooks(&id).await.unwrap();
    assert!(hooks.is_empty());
}

// ---------------------------------------------------------------------------------------
// signal, event, select

#[tokio::test]
async fn fs_a_signal_step_receives_the_signal_delivered_to_the_run() {
    let body = "---
slug: fs-signal
steps:
  - id: paid
    signal: payment
    schema:
      type: object
      required: [amount]
  - id: out
    return: '{{ steps.paid.output.amount }}'
---
";
    let fx = fixture(&[("fs-signal.md", body)], None);
    let id = fx.start("fs-signal", json!({})).await;
    assert!(matches!(fx.drive(&id).await, RunOutcome::Suspended(_)));
    assert_eq!(fx.status(&id).await, RunStatus::Waiting);
    fx.engine
        .signal(&id, "payment", json!({ "amount": 12 }), None)
        .await
        .unwrap();
    assert_eq!(completed(fx.drive(&id).await), json!(12));
    let events = fx.events(&id).await;
    assert_eq!(
        output_at(&events, "paid#0"),
        Some(json!({ "seq": 1, "payload": { "amount": 12 } }))
    );
    fx.assert_replays(&id).await;
}

#[tokio::test]
async fn fs_an_event_step_takes_only_the_event_whose_data_matches() {
    let body = "---
slug: fs-event
steps:
  - id: shipped
    event: fs.order.shipped
    match:
      /order: '{{ inputs.order }}'
  - id: out
    return: '{{ steps.shipped.output.carrier }}'
---
";
    let fx = fixture(&[("fs-event.md", body)], None);
    let id = fx.start("fs-event", json!({ "order": "o-7" })).await;
    assert!(matches!(fx.drive(&id).await, RunOutcome::Suspended(_)));
    fx.engine
        .emit(
            "fs.order.shipped",
            json!({ "order": "o-8", "carrier": "wrong" }),
            None,
        )
        .await
        .unwrap();
    fx.engine
        .emit(
            "fs.order.shipped",
            json!({ "order": "o-7", "carrier": "ups" }),
            None,
        )
        .await
        .unwrap();
    assert_eq!(completed(fx.drive(&id).await), json!("ups"));
    fx.assert_replays(&id).await;
}

#[tokio::test]
async fn fs_a_select_records_its_winner_and_every_replay_takes_it() {
    let body = "---
slug: fs-select
steps:
  - id: first
    select:
      - id: approval
        hook: Approve
      - id: expire
        sleep: 1h
  - id: out
    return: '{{ steps.first.output.winner }}'
---
";
    let fx = fixture(&[("fs-select.md", body)], None);
    let id = fx.start("fs-select", json!({})).await;
    assert!(matches!(fx.drive(&id).await, RunOutcome::Suspended(_)));
    fx.clock.advance(Duration::from_secs(3601));
    assert_eq!(completed(fx.drive(&id).await), json!("expire"));
    let events = fx.events(&id).await;
    let record = output_at(&events, "first#0").expect("the select is recorded");
    assert_eq!(record["winner"], json!(1));
    assert!(has(&events, "expire#0", EventKind::SleepCompleted));
    assert!(!has(&events, "approval#0", EventKind::HookReceived));
    fx.assert_replays(&id).await;
}
