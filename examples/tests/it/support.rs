//! `support-triage` (AI steps): structured output and re-asking, an agent loop whose
//! turns and tool calls are recorded steps, a refund above the threshold waiting on an
//! approval hook, resuming an interrupted conversation without asking the model again,
//! crash safety — on a `TestEnv` with `FakeLlm` or the built-in scripted model — and the
//! example app end to end: offline on the scripted model, and over a socket against
//! `FakeOpenAiServer` with the real OpenAI provider.

use std::process::{Command, Output};
use std::time::Duration;

use reprise::RunOutcome;
use reprise::event::EventKind;
use reprise::llm::{ChatMessage, LlmRequest, Role, ToolCall, ToolSpec};
use reprise_examples::support::{
    APPROVAL_THRESHOLD_CENTS, ApprovalStatus, Category, DEFAULT_MODEL, MODEL_ENV, RefundStatus,
    TRIAGE_SYSTEM, Ticket, TriageReport, dollars, issue_approved_refund, lookup_order, refund,
    reply_to_customer, request_refund_approval, support_triage,
};
use reprise_examples::support_model::ScriptedSupportModel;
use reprise_testkit::crash::{self, CheckConfig};
use reprise_testkit::llm::{FakeLlm, FakeOpenAiServer, Reply};
use reprise_testkit::{Pending, TempDb, TestEnv, assert_each_step_recorded_once, completed_steps};
use serde_json::{Value, json};

const MODEL: &str = "openai/gpt-4o-mini";

/// A ticket naming its model, so the tests do not depend on `REPRISE_EXAMPLES_MODEL`.
fn ticket(id: &str, email: &str, text: &str) -> Ticket {
    Ticket {
        model: Some(MODEL.to_owned()),
        ..Ticket::new(id, email, text)
    }
}

fn kettle() -> Ticket {
    ticket(
        "TCK-1",
        "ada@example.com",
        "My kettle from order A-1001 arrived broken. Please refund me.",
    )
}

fn espresso() -> Ticket {
    ticket(
        "TCK-2",
        "grace@example.com",
        "The espresso machine of order A-1002 leaks. I want my money back.",
    )
}

fn env_with(llm: &FakeLlm) -> TestEnv {
    TestEnv::builder().llm(llm.clone()).build()
}

fn scripted_env() -> TestEnv {
    TestEnv::builder().llm(ScriptedSupportModel).build()
}

fn report(output: Value) -> TriageReport {
    serde_json::from_value(output).unwrap()
}

fn tool_names(tools: &[ToolSpec]) -> Vec<&str> {
    tools.iter().map(|t| t.name.as_str()).collect()
}

fn last_content(request: &LlmRequest) -> String {
    request
        .messages
        .last()
        .and_then(|m| m.content.clone())
        .unwrap_or_default()
}

// ---- on a TestEnv with FakeLlm ----

#[tokio::test]
async fn a_small_refund_is_triaged_then_issued_by_the_agent_in_three_recorded_turns() {
    let llm = FakeLlm::new()
        .reply_json(json!({ "category": "refund", "confidence": 0.92 }))
        .reply_tool_calls([("lookup-order", json!({ "order_id": "A-1001" }))])
        .reply_tool_calls([(
            "refund",
            json!({ "order_id": "A-1001", "cents": 3499, "reason": "arrived broken" }),
        )])
        .reply(Reply::text("Sorry about the kettle: I refunded $34.99.").usage(20, 10));
    let env = env_with(&llm);
    let done = env.execute(&support_triage, kettle()).await.completed();

    // The triage: structured output, parsed.
    assert_eq!(done.category, Category::Refund);
    assert_eq!(done.confidence, 0.92);
    // The agent: three turns, a lookup, a refund under the threshold.
    assert_eq!(done.turns, 3);
    assert_eq!(done.answer, "Sorry about the kettle: I refunded $34.99.");
    assert_eq!(done.refunds.len(), 1);
    assert_eq!(done.refunds[0].status, RefundStatus::Refunded);
    assert_eq!(done.refunds[0].refund_id.as_deref(), Some("RF-A-1001-3499"));
    assert!(done.approvals.is_empty(), "no approval below the threshold");
    assert_eq!(done.reply, done.answer);
    assert_eq!(
        (
            done.tokens.prompt,
            done.tokens.completion,
            done.tokens.total
        ),
        (10 + 10 + 20, 5 + 5 + 10, 60),
        "the agent's three turns"
    );

    // Every model request and tool call is a recorded step.
    let id = env.last_run();
    let events = env.engine().events(&id).await.unwrap();
    assert_eq!(
        completed_steps(&events),
        [
            "choose-model#0",
            "llm#0/attempt#0",
            "llm#0",
            "support#0/turn#0",
            "support#0/lookup-order#0",
            "support#0/turn#1",
            "support#0/refund#0",
            "support#0/turn#2",
            "support#0",
            "reply-to-customer#0",
        ]
    );
    assert_each_step_recorded_once(&events);
    assert_eq!(
        reprise::token_usage(&events).total_tokens,
        15 + 60,
        "the triage's request and the agent's turns"
    );

    // What the model was asked.
    let requests = llm.requests();
    assert_eq!(requests.len(), 4);
    let triage = &requests[0];
    assert_eq!(triage.model, MODEL);
    assert_eq!(triage.temperature, Some(0.0));
    assert_eq!(triage.messages[0], ChatMessage::system(TRIAGE_SYSTEM));
    assert!(last_content(triage).contains("arrived broken"));
    let schema = triage.response_schema.as_ref().expect("a JSON schema");
    assert_eq!(schema.name, "Triage");
    let schema_text = schema.schema.to_string();
    for category in ["billing", "shipping", "refund", "other"] {
        assert!(schema_text.contains(category), "{schema_text}");
    }
    assert!(triage.tools.is_empty());
    let turn = &requests[1];
    assert_eq!(tool_names(&turn.tools), ["lookup-order", "refund"]);
    // Tools are described by their doc comments, their arguments by their input schema.
    assert!(
        turn.tools[1]
            .description
            .contains(&dollars(APPROVAL_THRESHOLD_CENTS)),
        "the refund tool states the threshold: {}",
        turn.tools[1].description
    );
    assert!(turn.tools[0].parameters["properties"]["order_id"].is_object());
    assert!(last_content(turn).contains("triaged as refund (confidence 0.92)"));
    let after_lookup = requests[2].messages.last().unwrap();
    assert_eq!(after_lookup.role, Some(Role::Tool));
    assert!(
        after_lookup
            .content
            .as_deref()
            .unwrap()
            .contains("Blue enamel kettle")
    );

    // The effects: one refund by the agent's tool, no approval, one answer.
    assert_eq!(env.calls(&refund).len(), 1);
    assert!(env.calls(&request_refund_approval).is_empty());
    assert!(env.calls(&issue_approved_refund).is_empty());
    let replies = env.calls(&reply_to_customer);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].to, "ada@example.com");
}

#[tokio::test]
async fn a_triage_reply_that_is_not_valid_json_is_asked_again_with_its_violations() {
    let llm = FakeLlm::new()
        .reply("Category: refund, I'm quite sure.")
        .reply_json(json!({ "category": "refunds", "confidence": 0.9 }))
        .reply("```json\n{\"category\": \"billing\", \"confidence\": 0.7}\n```")
        .reply("Could you tell me your order number?");
    let env = env_with(&llm);
    let done = env
        .execute(
            &support_triage,
            ticket("TCK-3", "ada@example.com", "I was charged twice."),
        )
        .await
        .completed();
    assert_eq!(done.category, Category::Billing);
    assert_eq!(done.confidence, 0.7);
    assert_eq!(done.turns, 1);

    let requests = llm.requests();
    assert_eq!(requests.len(), 4, "three triage requests, one agent turn");
    let not_json = last_content(&requests[1]);
    assert!(not_json.contains("not JSON"), "{not_json}");
    let wrong_enum = last_content(&requests[2]);
    assert!(wrong_enum.contains("/category"), "{wrong_enum}");
    // A re-ask continues the conversation: the bad reply, then the violations.
    assert_eq!(requests[2].messages.len(), 2 + 2 + 2);
    let events = env.engine().events(&env.last_run()).await.unwrap();
    let steps = completed_steps(&events);
    assert_eq!(
        steps[1..5],
        [
            "llm#0/attempt#0",
            "llm#0/attempt#1",
            "llm#0/attempt#2",
            "llm#0"
        ],
        "each request is its own recorded step"
    );
}

#[tokio::test]
async fn tool_errors_and_invalid_arguments_are_answered_to_the_model() {
    let llm = FakeLlm::new()
        .reply_json(json!({ "category": "shipping", "confidence": 0.8 }))
        .reply_tool_calls([("lookup-order", json!({ "order_id": "Z-9" }))])
        .reply_tool_calls([("lookup-order", json!({ "order_id": 1003 }))])
        .reply_tool_calls([("cancel-order", json!({ "order_id": "A-1003" }))])
        .reply("I could not find your order; could you check the number?");
    let env = env_with(&llm);
    let done = env
        .execute(
            &support_triage,
            ticket("TCK-4", "ada@example.com", "Where is my order Z-9?"),
        )
        .await
        .completed();
    assert_eq!(done.turns, 4);
    assert!(done.refunds.is_empty());
    let requests = llm.requests();
    let unknown = last_content(&requests[2]);
    assert!(
        unknown.contains("there is no order `Z-9`"),
        "the tool's error: {unknown}"
    );
    let invalid = last_content(&requests[3]);
    assert!(
        invalid.contains("/order_id"),
        "the schema violation: {invalid}"
    );
    let no_such_tool = last_content(&requests[4]);
    assert!(
        no_such_tool.contains("lookup-order, refund"),
        "{no_such_tool}"
    );
    assert_eq!(
        env.calls(&lookup_order).len(),
        1,
        "arguments refused by the schema never reach the action"
    );
}

/// The agent's conversation for a refund of $189.00: above the threshold.
fn large_refund_llm() -> FakeLlm {
    FakeLlm::new()
        .reply_json(json!({ "category": "refund", "confidence": 0.95 }))
        .reply_tool_calls([("lookup-order", json!({ "order_id": "A-1002" }))])
        .reply_tool_calls([(
            "refund",
            json!({ "order_id": "A-1002", "cents": 18900, "reason": "leaking machine" }),
        )])
        .reply("A colleague must approve the refund of $189.00; you'll hear from us.")
}

/// Runs the espresso ticket up to its approval hook; returns the hook's token.
async fn until_approval(env: &TestEnv, ticket: Ticket) -> String {
    let waits = env.execute(&support_triage, ticket).await.suspended();
    let [Pending::Hook { id, token, .. }] = &waits[..] else {
        panic!("{waits:?}")
    };
    assert_eq!(id, "hook#0");
    token.clone()
}

#[tokio::test]
async fn a_refund_above_the_threshold_waits_for_approval_then_is_issued() {
    let llm = large_refund_llm();
    let env = env_with(&llm);
    let token = until_approval(&env, espresso()).await;

    // The agent's `refund` call issued nothing: it answered `needs_approval`.
    let asked = env.calls(&refund);
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].cents, 18_900);
    let answered = last_content(&llm.requests()[3]);
    assert!(answered.contains("needs_approval"), "{answered}");
    assert!(env.calls(&issue_approved_refund).is_empty());
    assert!(env.calls(&reply_to_customer).is_empty(), "not yet");
    let approval = env.calls(&request_refund_approval);
    assert_eq!(approval.len(), 1);
    assert_eq!(
        approval[0].resume_url,
        format!("http://reprise.test/hooks/{token}")
    );
    assert_eq!(
        (approval[0].cents, approval[0].decide_within.as_str()),
        (18_900, "3d")
    );
    let id = env.last_run();
    let hooks = env.engine().open_hooks(&id).await.unwrap();
    assert_eq!(
        hooks[0].timeout_at,
        Some(env.now() + Duration::from_secs(3 * 24 * 3600))
    );

    let done = report(
        env.resume_hook(&token, json!({ "approved": true, "by": "Ada" }))
            .await
            .unwrap()
            .completed(),
    );
    assert_eq!(done.approvals.len(), 1);
    assert_eq!(done.approvals[0].status, ApprovalStatus::Approved);
    assert_eq!(done.approvals[0].by.as_deref(), Some("Ada"));
    assert_eq!(done.refunds.len(), 1);
    assert_eq!(done.refunds[0].approved_by.as_deref(), Some("Ada"));
    assert_eq!(done.refunds[0].cents, 18_900);
    assert!(
        done.reply.contains("was approved and issued"),
        "{}",
        done.reply
    );
    let issued = env.calls(&issue_approved_refund);
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0].approved_by, "Ada");
    assert_eq!(
        llm.calls(),
        4,
        "resuming after the hook asked the model nothing: every turn came from the log"
    );
    assert_eq!(env.calls(&refund).len(), 1);
    assert_each_step_recorded_once(&env.engine().events(&id).await.unwrap());
}

#[tokio::test]
async fn a_declined_refund_issues_nothing() {
    let env = env_with(&large_refund_llm());
    let token = until_approval(&env, espresso()).await;
    let done = report(
        env.resume_hook(&token, json!({ "approved": false, "by": "Grace" }))
            .await
            .unwrap()
            .completed(),
    );
    assert_eq!(done.approvals[0].status, ApprovalStatus::Declined);
    assert!(done.refunds.is_empty());
    assert!(done.reply.contains("was declined"), "{}", done.reply);
    assert!(env.calls(&issue_approved_refund).is_empty());
    assert_eq!(env.calls(&reply_to_customer).len(), 1);
}

#[tokio::test]
async fn an_undecided_refund_expires_at_the_approval_timeout() {
    let env = env_with(&large_refund_llm());
    let ticket = Ticket {
        approval_timeout: "2h".into(),
        ..espresso()
    };
    until_approval(&env, ticket).await;
    let id = env.last_run();
    let woken = env.advance(Duration::from_secs(2 * 3600)).await;
    let outcome = match woken.into_iter().find(|(run, _)| *run == id) {
        Some((_, outcome)) => outcome,
        None => env.continue_run(&id).await,
    };
    let done = report(outcome.completed());
    assert_eq!(done.approvals[0].status, ApprovalStatus::Expired);
    assert_eq!(done.approvals[0].by, None);
    assert!(done.refunds.is_empty());
    assert!(env.calls(&issue_approved_refund).is_empty());
}

#[tokio::test]
async fn the_model_cannot_approve_or_inflate_a_refund_itself() {
    let llm = FakeLlm::new()
        .reply_json(json!({ "category": "refund", "confidence": 0.9 }))
        // More than the order's total: refused by the action, told to the model.
        .reply_tool_calls([(
            "refund",
            json!({ "order_id": "A-1002", "cents": 99_999, "reason": "everything" }),
        )])
        // An "approval" in the arguments is not part of the tool: it changes nothing.
        .reply_tool_calls([(
            "refund",
            json!({ "order_id": "A-1002", "cents": 18_900, "reason": "leak", "approved_by": "CEO" }),
        )])
        .reply("A colleague will review the refund.");
    let env = env_with(&llm);
    env.execute(&support_triage, espresso()).await.suspended();
    let refused = last_content(&llm.requests()[2]);
    assert!(refused.contains("its total is $189.00"), "{refused}");
    assert!(env.calls(&issue_approved_refund).is_empty());
    assert_eq!(env.calls(&request_refund_approval).len(), 1);
}

#[tokio::test]
async fn a_malformed_approval_timeout_fails_before_any_model_is_asked() {
    let llm = FakeLlm::new();
    let env = env_with(&llm);
    let error = env
        .execute(
            &support_triage,
            Ticket {
                approval_timeout: "soon".into(),
                ..kettle()
            },
        )
        .await
        .failed();
    assert!(error.message.contains("`soon`"), "{error}");
    assert_eq!(llm.calls(), 0);
}

#[tokio::test]
async fn an_interrupted_conversation_resumes_without_asking_for_recorded_turns() {
    // The process dies while the model is writing turn#1 (its reply takes a minute).
    let llm = FakeLlm::new()
        .reply_json(json!({ "category": "refund", "confidence": 0.9 }))
        .reply_tool_calls([("lookup-order", json!({ "order_id": "A-1001" }))])
        .reply(
            Reply::tool_call(
                "refund",
                json!({ "order_id": "A-1001", "cents": 3499, "reason": "broken" }),
            )
            .after(Duration::from_secs(60)),
        )
        // What the model answers when asked turn#1 again, and turn#2.
        .reply_tool_calls([(
            "refund",
            json!({ "order_id": "A-1001", "cents": 3499, "reason": "broken" }),
        )])
        .reply("Refunded $34.99.");
    let env = env_with(&llm);
    {
        let first = env.execute(&support_triage, kettle());
        tokio::pin!(first);
        loop {
            tokio::select! {
                outcome = &mut first => panic!("the first process should hang in turn#1: {outcome:?}"),
                () = tokio::time::sleep(Duration::from_millis(5)) => {
                    if llm.calls() == 3 {
                        break;
                    }
                }
            }
        }
        // Dropping the execution is the process dying mid-conversation.
    }
    let id = env.last_run();
    let recorded = completed_steps(&env.engine().events(&id).await.unwrap());
    assert!(
        recorded.contains(&"support#0/turn#0".to_owned())
            && recorded.contains(&"support#0/lookup-order#0".to_owned())
            && !recorded.contains(&"support#0/turn#1".to_owned()),
        "died in turn#1: {recorded:?}"
    );

    let done = report(env.continue_run(&id).await.completed());
    assert_eq!(done.refunds.len(), 1);
    assert_eq!(done.answer, "Refunded $34.99.");
    let requests = llm.requests();
    assert_eq!(
        requests.len(),
        5,
        "asked again only for the turn in flight (turn#1) and the next (turn#2)"
    );
    assert_eq!(
        requests[3], requests[2],
        "turn#1 was asked again with the same conversation"
    );
    assert_eq!(
        env.calls(&lookup_order).len(),
        1,
        "the lookup was not redone"
    );
    assert_eq!(env.calls(&refund).len(), 1);
    assert_each_step_recorded_once(&env.engine().events(&id).await.unwrap());
}

// ---- the scripted model ----

#[tokio::test]
async fn the_scripted_model_follows_the_conversation() {
    let env = scripted_env();
    let done = env.execute(&support_triage, kettle()).await.completed();
    assert_eq!(done.category, Category::Refund);
    assert_eq!(done.turns, 3);
    assert_eq!(done.refunds[0].cents, 3_499);
    assert!(done.answer.contains("RF-A-1001-3499"), "{}", done.answer);
    assert!(done.tokens.total > 0);

    let shipping = env
        .execute(
            &support_triage,
            ticket(
                "TCK-5",
                "ada@example.com",
                "Where is my tea? Order A-1003 is late.",
            ),
        )
        .await
        .completed();
    assert_eq!(shipping.category, Category::Shipping);
    assert_eq!(shipping.turns, 2);
    assert!(shipping.refunds.is_empty());
    assert!(shipping.answer.contains("Parcelo"), "{}", shipping.answer);

    let unknown = env
        .execute(
            &support_triage,
            ticket("TCK-6", "ada@example.com", "Refund order A-9999 please"),
        )
        .await
        .completed();
    assert!(
        unknown.answer.contains("couldn't find order A-9999"),
        "{}",
        unknown.answer
    );
    assert!(unknown.refunds.is_empty());

    let vague = env
        .execute(
            &support_triage,
            ticket("TCK-7", "ada@example.com", "Hello, I have a question."),
        )
        .await
        .completed();
    assert_eq!(vague.category, Category::Other);
    assert_eq!(vague.turns, 1);
    assert!(vague.answer.contains("order number"), "{}", vague.answer);
}

#[test]
fn the_scripted_model_does_not_call_tools_it_is_not_offered() {
    // The last turn after `max_turns` offers no tools: the model must answer in words.
    let model = ScriptedSupportModel;
    let prompt = "Ticket TCK-1 from ada@example.com, triaged as refund (confidence 0.80).\n\
                  The customer writes:\nRefund order A-1001 please";
    let lookup = ToolCall {
        id: "call_1".into(),
        name: "lookup-order".into(),
        arguments: json!({ "order_id": "A-1001" }),
    };
    let mut request = LlmRequest {
        model: "any".into(),
        messages: vec![
            ChatMessage::user(prompt),
            ChatMessage {
                role: Some(Role::Assistant),
                tool_calls: vec![lookup],
                ..ChatMessage::default()
            },
            ChatMessage::tool(
                "call_1",
                json!({ "order_id": "A-1001", "items": ["Kettle"], "total_cents": 3499, "status": "delivered" })
                    .to_string(),
            ),
        ],
        ..LlmRequest::default()
    };
    let words = model.respond(&request).message;
    assert!(words.tool_calls.is_empty());
    assert!(
        words
            .content
            .unwrap()
            .contains("passed your refund request"),
        "no refund tool offered"
    );

    request.tools = vec![ToolSpec {
        name: "refund".into(),
        description: String::new(),
        parameters: json!({}),
    }];
    let reply = model.respond(&request);
    let [call] = &reply.message.tool_calls[..] else {
        panic!("{reply:?}")
    };
    assert_eq!(call.name, "refund");
    assert_eq!(call.id, "call_2", "a fresh call id");
    assert_eq!(call.arguments["cents"], 3499);
    assert_eq!(model.respond(&request), reply, "deterministic");
}

#[test]
fn the_refund_tool_states_the_threshold_the_code_applies() {
    fn description<S: reprise::Step>(_: &S) -> &'static str {
        S::DESCRIPTION
    }
    assert!(description(&refund).contains(&dollars(APPROVAL_THRESHOLD_CENTS)));
}

// ---- crash safety, on the scripted model ----

#[test]
fn support_triage_survives_any_crash_in_memory() {
    let config = CheckConfig::default()
        .configure(|builder| builder.llm(std::sync::Arc::new(ScriptedSupportModel)));
    let report = crash::assert_crash_safe(&support_triage, kettle(), config);
    eprintln!("{report}");
    let RunOutcome::Completed(output) = &report.outcome else {
        panic!("{:?}", report.outcome)
    };
    assert_eq!(output["refunds"][0]["cents"], 3499);
}

#[test]
fn support_triage_survives_any_crash_around_its_approval_in_memory() {
    let config = CheckConfig::default()
        .configure(|builder| builder.llm(std::sync::Arc::new(ScriptedSupportModel)))
        .hook("hook#0", json!({ "approved": true, "by": "Ada" }));
    let report = crash::assert_crash_safe(&support_triage, espresso(), config);
    eprintln!("{report}");
    let RunOutcome::Completed(output) = &report.outcome else {
        panic!("{:?}", report.outcome)
    };
    assert_eq!(output["approvals"][0]["status"], "approved");
    assert_eq!(output["refunds"][0]["approved_by"], "Ada");
}

#[test]
fn support_triage_survives_any_crash_and_torn_write_on_sqlite() {
    let config = CheckConfig::default()
        .sqlite()
        .max_cases(32)
        .configure(|builder| builder.llm(std::sync::Arc::new(ScriptedSupportModel)))
        .hook("hook#0", json!({ "approved": false, "by": "Grace" }));
    let report = crash::assert_crash_safe(&support_triage, espresso(), config);
    eprintln!("{report}");
    let RunOutcome::Completed(output) = &report.outcome else {
        panic!("{:?}", report.outcome)
    };
    assert_eq!(output["approvals"][0]["status"], "declined");
}

// ---- snapshot ----

#[tokio::test]
async fn support_triage_approved_log() {
    let env = scripted_env();
    let token = until_approval(&env, espresso()).await;
    env.resume_hook(&token, json!({ "approved": true, "by": "Ada" }))
        .await
        .unwrap()
        .completed();
    reprise_testkit::assert_run_snapshot!(env, env.last_run());
}

// ---- the example app ----

/// The example app on `db`, with no LLM endpoint or model configured (offline).
fn app(db: &TempDb) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_reprise-examples"));
    command
        .env("REPRISE_DATABASE_URL", db.url())
        .env("REPRISE_EXAMPLES_EFFECT_LOG", db.dir().join("effects.log"))
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env_remove(MODEL_ENV)
        .env_remove("REPRISE_LLM_MODEL")
        .current_dir(db.dir());
    command
}

fn json_line(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn exit_code(output: &Output) -> Option<i32> {
    if output.status.code() != Some(0) {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    }
    output.status.code()
}

const KETTLE: &str = r#"{"id":"TCK-1","customer_email":"ada@example.com","text":"My kettle from order A-1001 arrived broken. Please refund me."}"#;
const ESPRESSO: &str = r#"{"id":"TCK-2","customer_email":"grace@example.com","text":"The espresso machine of order A-1002 leaks. I want my money back."}"#;

#[test]
fn the_app_runs_support_triage_offline_on_the_scripted_model() {
    let db = TempDb::new().unwrap();
    let out = app(&db)
        .args([
            "workflows",
            "run",
            "support-triage",
            "--json",
            "--input",
            KETTLE,
        ])
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), Some(0));
    let line = json_line(&out);
    assert_eq!(line["status"], "completed");
    let output = &line["output"];
    assert_eq!(output["model"], DEFAULT_MODEL);
    assert_eq!(output["category"], "refund");
    assert_eq!(output["refunds"][0]["cents"], 3499);
    assert_eq!(output["refunds"][0]["status"], "refunded");
    assert_eq!(output["turns"], 3);

    // `runs get` shows the tokens of every model request.
    let run_id = line["run_id"].as_str().unwrap();
    let get = app(&db)
        .args(["runs", "get", run_id, "--json"])
        .output()
        .unwrap();
    assert_eq!(exit_code(&get), Some(0));
    let got = json_line(&get);
    let total = got["usage"]["total_tokens"].as_u64().unwrap();
    assert!(
        total > output["tokens"]["total"].as_u64().unwrap(),
        "the triage's tokens count too: {got}"
    );
    let turn = got["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "support#0/turn#0")
        .unwrap();
    assert!(
        turn["usage"]["total_tokens"].as_u64().unwrap() > 0,
        "{turn}"
    );
    let table = app(&db).args(["runs", "get", run_id]).output().unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains(&format!("tokens: {total} (")), "{table}");
    // …and what they cost at the built-in price of gpt-4o-mini ($0.15 / $0.60 per
    // million prompt / completion tokens).
    let usage = &got["usage"];
    let expected = (usage["prompt_tokens"].as_f64().unwrap() * 0.15
        + usage["completion_tokens"].as_f64().unwrap() * 0.60)
        / 1e6;
    let cost = got["cost_usd"].as_f64().unwrap();
    assert!(
        (cost - expected).abs() < 1e-12,
        "{cost} != {expected}: {got}"
    );
    assert!(table.contains(", cost $0.0"), "{table}");

    // A price file (`REPRISE_PRICES`) merged over the built-in table re-prices the run:
    // $1 per million tokens either way.
    let prices = db.dir().join("prices.json");
    std::fs::write(&prices, r#"{"gpt-4o-mini": {"input": 1, "output": 1}}"#).unwrap();
    let repriced = json_line(
        &app(&db)
            .env("REPRISE_PRICES", &prices)
            .args(["runs", "get", run_id, "--json"])
            .output()
            .unwrap(),
    );
    let cost = repriced["cost_usd"].as_f64().unwrap();
    assert!((cost - total as f64 / 1e6).abs() < 1e-12, "{repriced}");
    // A price file that does not parse stops the command, naming the file.
    std::fs::write(&prices, r#"{"gpt-4o-mini": {"input": "cheap"}}"#).unwrap();
    let bad = app(&db)
        .env("REPRISE_PRICES", &prices)
        .args(["runs", "get", run_id])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("REPRISE_PRICES") && stderr.contains("prices.json"),
        "{stderr}"
    );

    // `runs usage` sums them by day, workflow and model.
    let usage_out = app(&db)
        .args(["runs", "usage", "--since", "1d", "--json"])
        .output()
        .unwrap();
    assert_eq!(exit_code(&usage_out), Some(0));
    let report = json_line(&usage_out);
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{report}");
    assert_eq!(rows[0]["workflow"], "support-triage");
    assert_eq!(rows[0]["model"], MODEL);
    assert_eq!(rows[0]["total_tokens"].as_u64(), Some(total), "{report}");
    assert!(
        (report["cost_usd"].as_f64().unwrap() - got["cost_usd"].as_f64().unwrap()).abs() < 1e-12,
        "{report}"
    );
    let usage_table = app(&db).args(["runs", "usage"]).output().unwrap();
    let usage_table = String::from_utf8_lossy(&usage_table.stdout);
    assert!(
        usage_table.contains("support-triage") && usage_table.contains("total: "),
        "{usage_table}"
    );

    // A large refund waits for approval (exit 3); `hooks resume` completes it.
    let out = app(&db)
        .args([
            "workflows",
            "run",
            "support-triage",
            "--json",
            "--input",
            ESPRESSO,
        ])
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), Some(3));
    let waiting = json_line(&out);
    assert_eq!(waiting["status"], "waiting");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refund $189.00 of order A-1002"),
        "{stderr}"
    );
    let run_id = waiting["run_id"].as_str().unwrap();
    let get = json_line(
        &app(&db)
            .args(["runs", "get", run_id, "--json"])
            .output()
            .unwrap(),
    );
    let token = get["open_hooks"][0]["token"].as_str().unwrap().to_owned();
    assert!(stderr.contains(&token), "the resume URL was sent: {stderr}");
    let out = app(&db)
        .args(["hooks", "resume", &token, "--json", "--payload"])
        .arg(r#"{"approved":true,"by":"Ada"}"#)
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), Some(0));
    let done = json_line(&out);
    assert_eq!(done["output"]["approvals"][0]["status"], "approved");
    assert_eq!(done["output"]["refunds"][0]["approved_by"], "Ada");

    let effects = std::fs::read_to_string(db.dir().join("effects.log")).unwrap();
    // The agent's refund of the kettle; the espresso's `refund` call issued nothing.
    for step in [
        "/support#0/refund#0",
        "/request-refund-approval#0",
        "/issue-approved-refund#0",
    ] {
        assert_eq!(
            effects.lines().filter(|l| l.ends_with(step)).count(),
            1,
            "{step}: {effects}"
        );
    }
    assert_eq!(
        effects
            .lines()
            .filter(|l| l.ends_with("reply-to-customer#0"))
            .count(),
        2,
        "one answer per ticket: {effects}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_talks_to_an_openai_compatible_endpoint_when_configured() {
    let server = FakeOpenAiServer::start()
        .await
        .reply_json(json!({ "category": "refund", "confidence": 0.97 }))
        .reply_tool_calls([("lookup-order", json!({ "order_id": "A-1001" }))])
        .reply_tool_calls([(
            "refund",
            json!({ "order_id": "A-1001", "cents": 3499, "reason": "broken kettle" }),
        )])
        .reply("Refunded $34.99 for your kettle.");
    let db = TempDb::new().unwrap();
    let mut command = app(&db);
    command
        .env("OPENAI_BASE_URL", server.url())
        .env("OPENAI_API_KEY", reprise_testkit::llm::FAKE_API_KEY)
        .args([
            "workflows",
            "run",
            "support-triage",
            "--json",
            "--input",
            KETTLE,
        ]);
    // The child process blocks this thread; the fake server answers on the other.
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert_eq!(exit_code(&out), Some(0));
    let line = json_line(&out);
    assert_eq!(line["output"]["confidence"], 0.97);
    assert_eq!(line["output"]["answer"], "Refunded $34.99 for your kettle.");
    assert_eq!(line["output"]["refunds"][0]["refund_id"], "RF-A-1001-3499");

    assert_eq!(server.request_count(), 4);
    let requests = server.requests();
    assert_eq!(
        requests[0]["model"], "gpt-4o-mini",
        "`openai/` routes to the endpoint, which gets the bare model name"
    );
    assert_eq!(requests[0]["response_format"]["type"], "json_schema");
    assert_eq!(
        requests[0]["response_format"]["json_schema"]["name"],
        "Triage"
    );
    let tools: Vec<&str> = requests[1]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(tools, ["lookup-order", "refund"]);
    let answered = requests[2]["messages"].as_array().unwrap().last().unwrap();
    assert_eq!(answered["role"], "tool");
    assert_eq!(answered["tool_call_id"], "call_1");
    let received = server.server().received_requests().await.unwrap();
    assert_eq!(
        received[0].headers.get("authorization").unwrap(),
        &format!("Bearer {}", reprise_testkit::llm::FAKE_API_KEY)
    );

    // Replaying the recorded run (`workflows check`) answers every request from the log.
    let mut command = app(&db);
    command
        .env("OPENAI_BASE_URL", server.url())
        .args(["workflows", "check", "--json"]);
    let check = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert_eq!(exit_code(&check), Some(0));
    assert_eq!(
        server.request_count(),
        4,
        "the endpoint was not asked again"
    );
    let events = db
        .engine(|b| b)
        .unwrap()
        .events(&reprise::RunId(line["run_id"].as_str().unwrap().to_owned()))
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.event.kind == EventKind::StepCompleted
                && e.event.payload["output"]["model"] == "gpt-4o-mini"),
        "the endpoint's replies are recorded"
    );
}
