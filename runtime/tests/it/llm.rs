//! AI steps: `prompt_llm` (plain and structured, with re-asking) and agents (a durable
//! tool-calling loop), against a scripted provider that counts its calls.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use reprise::event::{EventKind, RunId};
use reprise::llm::{
    ChatMessage, LlmError, LlmErrorKind, LlmProvider, LlmRequest, LlmResponse, Role, ToolCall,
    Usage,
};
use reprise::prelude::*;
use reprise::store::{MemoryStore, SharedStore};
use reprise::{Agent, RunOutcome};
use serde_json::{Value, json};

/// Replies in order, or (`by_turn`) by the number of assistant messages in the request,
/// so that a request asked again gets the same reply; records every request.
#[derive(Default)]
struct Scripted {
    replies: Mutex<VecDeque<ChatMessage>>,
    by_turn: Option<Vec<ChatMessage>>,
    requests: Mutex<Vec<LlmRequest>>,
    calls: AtomicUsize,
}

impl Scripted {
    fn new(replies: Vec<ChatMessage>) -> Arc<Self> {
        Arc::new(Scripted {
            replies: Mutex::new(replies.into()),
            ..Scripted::default()
        })
    }
    fn by_turn(replies: Vec<ChatMessage>) -> Arc<Self> {
        Arc::new(Scripted {
            by_turn: Some(replies),
            ..Scripted::default()
        })
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
    fn requests(&self) -> Vec<LlmRequest> {
        self.requests.lock().unwrap().clone()
    }
}

#[async_trait]
impl LlmProvider for Scripted {
    async fn complete(&self, request: LlmRequest) -> Result<LlmResponse, LlmError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let turn = request
            .messages
            .iter()
            .filter(|m| m.role == Some(Role::Assistant))
            .count();
        self.requests.lock().unwrap().push(request);
        let message = match &self.by_turn {
            Some(replies) => replies.get(turn).cloned(),
            None => self.replies.lock().unwrap().pop_front(),
        }
        .ok_or_else(|| LlmError::new(LlmErrorKind::BadRequest, "no reply scripted"))?;
        Ok(LlmResponse {
            message,
            usage: Usage {
                prompt_tokens: 10,
                completion_tokens: 5,
                total_tokens: 15,
                cached_tokens: 0,
            },
            model: "scripted".into(),
            finish_reason: None,
        })
    }
}

fn tool_call(id: &str, name: &str, arguments: Value) -> ChatMessage {
    ChatMessage {
        role: Some(Role::Assistant),
        content: None,
        tool_calls: vec![ToolCall {
            id: id.into(),
            name: name.into(),
            arguments,
        }],
        tool_call_id: None,
    }
}

fn engine(store: SharedStore, llm: Arc<Scripted>) -> Engine {
    Engine::builder()
        .store(store)
        .register(summarize)
        .register(classify)
        .register(support)
        .register(lookup_order)
        .register(refund)
        .register(chatty)
        .llm(llm)
        .default_model("fake/model")
        .build()
        .unwrap()
}

fn ids(events: &[reprise::event::Event], kind: EventKind) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.event.kind == kind)
        .filter_map(|e| e.event.correlation_id.clone())
        .collect()
}

#[workflow(slug = "summarize")]
async fn summarize(text: String) -> Result<String, WorkflowError> {
    let summary = prompt_llm(format!("Summarize: {text}"))
        .model("fake/model")
        .system("One line.")
        .await?;
    Ok(summary)
}

#[tokio::test]
async fn a_prompt_is_a_recorded_step_and_a_replay_does_not_ask_again() {
    let store: SharedStore = Arc::new(MemoryStore::new());
    let llm = Scripted::new(vec![ChatMessage::assistant("Short.")]);
    let first = engine(store.clone(), llm.clone());
    let id = first
        .start_json("summarize", json!("a long text"), reprise::Trigger::Code)
        .await
        .unwrap();
    let execution = first.drive(&id).await.unwrap();
    assert_eq!(execution.outcome, RunOutcome::Completed(json!("Short.")));
    let request = &llm.requests()[0];
    assert_eq!(request.model, "fake/model");
    assert_eq!(request.messages[0], ChatMessage::system("One line."));
    assert_eq!(
        request.messages[1],
        ChatMessage::user("Summarize: a long text")
    );
    assert!(request.response_schema.is_none(), "plain text by default");

    let events = first.events(&id).await.unwrap();
    assert_eq!(
        ids(&events, EventKind::StepCompleted),
        ["llm#0/attempt#0", "llm#0"]
    );
    let usage = events
        .iter()
        .find(|e| {
            e.event.kind == EventKind::StepCompleted
                && e.event.correlation_id.as_deref() == Some("llm#0")
        })
        .map(|e| e.event.payload["usage_total"].clone());
    assert_eq!(
        usage,
        Some(json!({ "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15 }))
    );

    assert_eq!(
        reprise::token_usage(&events).total_tokens,
        15,
        "counted once per request"
    );
    let steps = reprise::summarize_steps(&events);
    assert_eq!(
        steps
            .iter()
            .find(|s| s.id == "llm#0")
            .unwrap()
            .usage
            .unwrap()
            .total_tokens,
        15
    );

    // Re-executing the finished history (a replay) answers from the log.
    let replay = first.replay_engine(Arc::new(reprise::SystemClock));
    let export = first.export_run(&id).await.unwrap();
    let replayed = replay.import_for_replay(&export).await.unwrap();
    let execution = replay.execute(&replayed).await.unwrap();
    assert_eq!(execution.outcome, RunOutcome::Completed(json!("Short.")));
    assert_eq!(llm.calls(), 1, "the model was asked once");
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
enum Category {
    Billing,
    Shipping,
    Other,
}

/// A ticket's category and how sure the model is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Triage {
    category: Category,
    #[schemars(range(min = 0.0, max = 1.0))]
    confidence: f64,
}

#[workflow(slug = "classify")]
async fn classify(ticket: String) -> Result<Triage, WorkflowError> {
    Ok(prompt_llm(ticket).output::<Triage>().await?)
}

#[tokio::test]
async fn structured_output_is_validated_and_the_model_is_asked_again_with_the_violations() {
    let llm = Scripted::new(vec![
        ChatMessage::assistant(r#"{"category":"refunds","confidence":0.9}"#),
        ChatMessage::assistant("```json\n{\"category\":\"billing\",\"confidence\":0.8}\n```"),
    ]);
    let engine = engine(Arc::new(MemoryStore::new()), llm.clone());
    let id = engine
        .start_json(
            "classify",
            json!("I was charged twice"),
            reprise::Trigger::Code,
        )
        .await
        .unwrap();
    let execution = engine.drive(&id).await.unwrap();
    assert_eq!(
        execution.outcome,
        RunOutcome::Completed(json!({ "category": "billing", "confidence": 0.8 }))
    );
    let requests = llm.requests();
    assert_eq!(requests.len(), 2);
    let schema = requests[0]
        .response_schema
        .as_ref()
        .expect("a response format");
    assert_eq!(schema.name, "Triage");
    assert!(schema.schema["properties"]["category"].is_object());
    let reask = requests[1]
        .messages
        .last()
        .unwrap()
        .content
        .clone()
        .unwrap();
    assert!(
        reask.contains("/category"),
        "the violations are told: {reask}"
    );
    let events = engine.events(&id).await.unwrap();
    assert_eq!(
        ids(&events, EventKind::StepCompleted),
        ["llm#0/attempt#0", "llm#0/attempt#1", "llm#0"],
        "each attempt is recorded"
    );
}

#[tokio::test]
async fn structured_output_gives_up_after_the_reasks_with_the_last_reply() {
    let llm = Scripted::new(vec![
        ChatMessage::assistant("not json"),
        ChatMessage::assistant(r#"{"category":"billing"}"#),
        ChatMessage::assistant(r#"{"category":"billing","confidence":7}"#),
    ]);
    let engine = engine(Arc::new(MemoryStore::new()), llm.clone());
    let id = engine
        .start_json("classify", json!("?"), reprise::Trigger::Code)
        .await
        .unwrap();
    let RunOutcome::Failed(error) = engine.drive(&id).await.unwrap().outcome else {
        panic!("the run fails");
    };
    assert_eq!(error.kind, reprise::llm::LLM_OUTPUT);
    assert!(error.message.contains("after 3 requests"), "{error}");
    assert!(error.message.contains("confidence"), "{error}");
    assert!(
        error.message.contains(r#"\"confidence\":7"#),
        "quotes the last reply: {error}"
    );
    assert_eq!(llm.calls(), 3, "1 + 2 re-asks by default");
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct OrderRef {
    order_id: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Order {
    order_id: String,
    total_cents: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct RefundRequest {
    order_id: String,
    #[schemars(range(min = 1))]
    cents: u64,
}

static LOOKUPS: AtomicUsize = AtomicUsize::new(0);
static REFUNDS: AtomicUsize = AtomicUsize::new(0);

/// Looks an order up by id.
#[action]
async fn lookup_order(input: OrderRef) -> Result<Order, ActionError> {
    LOOKUPS.fetch_add(1, Ordering::SeqCst);
    Ok(Order {
        order_id: input.order_id,
        total_cents: 4200,
    })
}

/// Refunds part of an order.
#[action]
async fn refund(input: RefundRequest) -> Result<String, ActionError> {
    REFUNDS.fetch_add(1, Ordering::SeqCst);
    Ok(format!("refunded {} on {}", input.cents, input.order_id))
}

#[workflow(slug = "support")]
async fn support(ticket: String) -> Result<reprise::AgentReply, WorkflowError> {
    let agent = Agent::new("support")
        .model("fake/model")
        .system("You resolve order problems.")
        .tool(lookup_order)
        .tool(refund)
        .max_turns(5);
    Ok(agent.prompt(ticket).await?)
}

fn support_script() -> Vec<ChatMessage> {
    vec![
        tool_call("c1", "lookup-order", json!({ "order_id": "A-1" })),
        // Arguments that fail the tool's schema: answered as an error, not a crash.
        tool_call("c2", "refund", json!({ "order_id": "A-1", "cents": 0 })),
        tool_call("c3", "refund", json!({ "order_id": "A-1", "cents": 4200 })),
        ChatMessage::assistant("Refunded 42.00 on A-1."),
    ]
}

#[tokio::test]
async fn an_agent_runs_a_tool_loop_where_each_turn_and_tool_call_is_a_step() {
    let llm = Scripted::new(support_script());
    let engine = engine(Arc::new(MemoryStore::new()), llm.clone());
    let (lookups, refunds) = (
        LOOKUPS.load(Ordering::SeqCst),
        REFUNDS.load(Ordering::SeqCst),
    );
    let id = engine
        .start_json("support", json!("Refund order A-1"), reprise::Trigger::Code)
        .await
        .unwrap();
    let RunOutcome::Completed(output) = engine.drive(&id).await.unwrap().outcome else {
        panic!("the agent finishes");
    };
    let reply: reprise::AgentReply = serde_json::from_value(output).unwrap();
    assert_eq!(reply.text, "Refunded 42.00 on A-1.");
    assert_eq!(reply.turns, 4);
    assert_eq!(reply.usage.total_tokens, 60);
    assert_eq!(reply.tool_calls.len(), 3);
    assert_eq!(reply.tool_calls[1].step, None, "refused before it ran");
    assert!(
        reply.tool_calls[1].result["error"]
            .as_str()
            .unwrap()
            .contains("/cents"),
        "{:?}",
        reply.tool_calls[1]
    );
    assert_eq!(reply.tool_calls[2].result, json!("refunded 4200 on A-1"));
    assert!(LOOKUPS.load(Ordering::SeqCst) > lookups);
    assert!(REFUNDS.load(Ordering::SeqCst) > refunds);

    let events = engine.events(&id).await.unwrap();
    assert_eq!(
        ids(&events, EventKind::StepCompleted),
        [
            "support#0/turn#0",
            "support#0/lookup-order#0",
            "support#0/turn#1",
            "support#0/turn#2",
            "support#0/refund#0",
            "support#0/turn#3",
            "support#0",
        ]
    );
    let requests = llm.requests();
    // The tools were offered with their schemas and doc comments.
    let names: Vec<&str> = requests[0].tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["lookup-order", "refund"]);
    assert_eq!(requests[0].tools[0].description, "Looks an order up by id.");
    // The refused call was answered to the model with the violation.
    let answer = requests[2].messages.last().unwrap();
    assert_eq!(answer.tool_call_id.as_deref(), Some("c2"));
    assert!(answer.content.as_deref().unwrap().contains("/cents"));
}

#[tokio::test]
async fn a_crash_mid_conversation_resumes_without_asking_the_model_again() {
    // The store dies after run_started and two recorded turns' worth of appends.
    let store: SharedStore = Arc::new(MemoryStore::new());
    let llm = Scripted::by_turn(support_script());
    let dying = crate::llm::dying(store.clone(), 4);
    let first = engine(dying, llm.clone());
    let id = first
        .start_json("support", json!("Refund order A-1"), reprise::Trigger::Code)
        .await
        .unwrap();
    assert!(first.drive(&id).await.is_err(), "the first process dies");
    let recorded_turns = turns(&store, &id).await;
    assert!(
        (1..4).contains(&recorded_turns.len()),
        "died mid-conversation: {recorded_turns:?}"
    );
    let asked_before = llm.calls();

    let second = engine(store.clone(), llm.clone());
    let RunOutcome::Completed(output) = second.drive(&id).await.unwrap().outcome else {
        panic!("the resumed agent finishes");
    };
    assert_eq!(output["text"], "Refunded 42.00 on A-1.");
    // Every turn recorded before the crash was answered from the log: the model was asked
    // only for the turns that were not (4 turns in all, plus at most the one in flight).
    assert_eq!(
        llm.calls(),
        4 + (asked_before - recorded_turns.len()),
        "no recorded turn was asked again"
    );
    assert_eq!(turns(&store, &id).await.len(), 4);
}

async fn turns(store: &SharedStore, id: &RunId) -> Vec<String> {
    let events = store.events(id).await.unwrap();
    ids(&events, EventKind::StepCompleted)
        .into_iter()
        .filter(|id| id.contains("/turn#"))
        .collect()
}

/// A store that fails every append after the first `allowed` (a process that dies).
pub(crate) fn dying(inner: SharedStore, allowed: usize) -> SharedStore {
    Arc::new(crate::engine::DyingStore::new(inner, allowed))
}

#[workflow(slug = "chatty")]
async fn chatty(question: String) -> Result<String, WorkflowError> {
    let agent = Agent::new("chatty").tool(lookup_order).max_turns(2);
    Ok(agent.prompt(question).await?.text)
}

#[tokio::test]
async fn when_the_turns_run_out_one_last_turn_is_asked_without_tools() {
    let llm = Scripted::new(vec![
        tool_call("c1", "lookup-order", json!({ "order_id": "A-1" })),
        tool_call("c2", "lookup-order", json!({ "order_id": "A-2" })),
        ChatMessage::assistant("I looked both up."),
    ]);
    let engine = Engine::builder()
        .register(chatty)
        .register(lookup_order)
        .llm(llm.clone())
        .default_model("fake/default")
        .build()
        .unwrap();
    let out = engine
        .run(&chatty, "Where are my orders?".into())
        .await
        .unwrap();
    assert_eq!(out.unwrap(), "I looked both up.");
    let requests = llm.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(
        requests[0].model, "fake/default",
        "the engine's default model"
    );
    assert!(!requests[1].tools.is_empty());
    assert!(
        requests[2].tools.is_empty(),
        "the last turn offers no tools"
    );
    assert_eq!(requests[2].tool_choice, None);
}

/// Fails with a rate limit `failures` times, then answers.
struct Flaky {
    failures: AtomicUsize,
    calls: AtomicUsize,
}

#[async_trait]
impl LlmProvider for Flaky {
    async fn complete(&self, _request: LlmRequest) -> Result<LlmResponse, LlmError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            let mut error = LlmError::new(LlmErrorKind::RateLimited, "slow down");
            error.retry_after = Some(std::time::Duration::from_millis(10));
            return Err(error);
        }
        Ok(LlmResponse {
            message: ChatMessage::assistant("fine"),
            usage: Usage::default(),
            model: "flaky".into(),
            finish_reason: None,
        })
    }
}

#[tokio::test]
async fn a_retryable_provider_error_is_tried_again_then_recorded() {
    let flaky = Arc::new(Flaky {
        failures: AtomicUsize::new(2),
        calls: AtomicUsize::new(0),
    });
    let engine = Engine::builder()
        .register(summarize)
        .llm(flaky.clone())
        .build()
        .unwrap();
    let out = engine.run(&summarize, "x".into()).await.unwrap();
    assert_eq!(out.unwrap(), "fine");
    assert_eq!(
        flaky.calls.load(Ordering::SeqCst),
        3,
        "two retries, then the answer"
    );

    let failing = Arc::new(Flaky {
        failures: AtomicUsize::new(10),
        calls: AtomicUsize::new(0),
    });
    let engine = Engine::builder()
        .register(summarize)
        .llm(failing.clone())
        .build()
        .unwrap();
    let error = engine
        .run(&summarize, "x".into())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(error.kind, reprise::llm::LLM_ERROR);
    assert!(error.message.contains("slow down"), "{error}");
    assert_eq!(
        failing.calls.load(Ordering::SeqCst),
        3,
        "three attempts in all"
    );
}
