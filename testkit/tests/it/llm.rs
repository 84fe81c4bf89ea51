//! LLM providers: the real `OpenAiProvider` over a socket against `FakeOpenAiServer`
//! (request shapes, replies, errors, retries), and the in-process `FakeLlm`.

use std::time::{Duration, Instant};

use reprise::llm::{
    ChatMessage, LlmError, LlmErrorKind, LlmProvider, LlmRequest, OpenAiProvider, ResponseSchema,
    ToolCall, ToolChoice, ToolSpec, Usage,
};
use reprise_testkit::llm::{FAKE_API_KEY, FakeLlm, FakeOpenAiServer, Reply};
use serde_json::{Value, json};

fn ask(text: &str) -> LlmRequest {
    LlmRequest {
        model: "gpt-4o-mini".into(),
        messages: vec![ChatMessage::user(text)],
        ..LlmRequest::default()
    }
}

// ---------------------------------------------------------------------------------------
// OpenAiProvider against FakeOpenAiServer

#[tokio::test]
async fn text_reply_with_usage_and_request_shape() {
    let server = FakeOpenAiServer::start()
        .await
        .reply(Reply::text("Hello, Ada!").usage(12, 3));
    let request = LlmRequest {
        messages: vec![
            ChatMessage::system("Be brief."),
            ChatMessage::user("Hi, I am Ada"),
        ],
        temperature: Some(0.5),
        max_tokens: Some(64),
        ..ask("")
    };
    let reply = server.provider().complete(request).await.unwrap();

    assert_eq!(reply.message.content.as_deref(), Some("Hello, Ada!"));
    assert!(reply.message.tool_calls.is_empty());
    assert_eq!(
        reply.usage,
        Usage {
            prompt_tokens: 12,
            completion_tokens: 3,
            total_tokens: 15,
            cached_tokens: 0,
        }
    );
    assert_eq!(reply.model, "gpt-4o-mini");
    assert_eq!(reply.finish_reason.as_deref(), Some("stop"));

    assert_eq!(server.request_count(), 1);
    assert_eq!(
        server.requests()[0],
        json!({
            "model": "gpt-4o-mini",
            "messages": [
                { "role": "system", "content": "Be brief." },
                { "role": "user", "content": "Hi, I am Ada" },
            ],
            "temperature": 0.5,
            "max_tokens": 64,
        })
    );
    let received = server.server().received_requests().await.unwrap();
    assert_eq!(received[0].url.path(), "/v1/chat/completions");
    assert_eq!(
        received[0].headers.get("authorization").unwrap(),
        &format!("Bearer {FAKE_API_KEY}")
    );
}

#[tokio::test]
async fn tool_calls_are_parsed_and_tools_serialised_as_openai_expects() {
    let server = FakeOpenAiServer::start().await.reply_tool_calls(vec![
        ("lookup_order", json!({ "id": 7 })),
        // A model writing arguments that are not JSON.
        ("cancel_order", Value::String("id=7".into())),
    ]);
    let parameters = json!({
        "type": "object",
        "properties": { "id": { "type": "integer" } },
        "required": ["id"],
    });
    let request = LlmRequest {
        messages: vec![
            ChatMessage::user("Where is order 6?"),
            ChatMessage {
                role: Some(reprise::llm::Role::Assistant),
                content: None,
                tool_calls: vec![ToolCall {
                    id: "call_a".into(),
                    name: "lookup_order".into(),
                    arguments: json!({ "id": 6 }),
                }],
                tool_call_id: None,
            },
            ChatMessage::tool("call_a", r#"{"status":"shipped"}"#),
            ChatMessage::user("And order 7?"),
        ],
        tools: vec![ToolSpec {
            name: "lookup_order".into(),
            description: "Looks an order up.".into(),
            parameters: parameters.clone(),
        }],
        tool_choice: Some(ToolChoice::Tool("lookup_order".into())),
        ..ask("")
    };
    let reply = server.provider().complete(request).await.unwrap();

    assert_eq!(reply.message.content, None);
    assert_eq!(reply.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(
        reply.message.tool_calls,
        vec![
            ToolCall {
                id: "call_1".into(),
                name: "lookup_order".into(),
                arguments: json!({ "id": 7 }),
            },
            ToolCall {
                id: "call_2".into(),
                name: "cancel_order".into(),
                arguments: Value::String("id=7".into()),
            },
        ]
    );

    let body = &server.requests()[0];
    assert_eq!(
        body["messages"][1],
        json!({
            "role": "assistant",
            "content": null,
            "tool_calls": [{
                "id": "call_a",
                "type": "function",
                "function": { "name": "lookup_order", "arguments": "{\"id\":6}" },
            }],
        })
    );
    assert_eq!(
        body["messages"][2],
        json!({ "role": "tool", "content": "{\"status\":\"shipped\"}", "tool_call_id": "call_a" })
    );
    assert_eq!(
        body["tools"],
        json!([{
            "type": "function",
            "function": {
                "name": "lookup_order",
                "description": "Looks an order up.",
                "parameters": parameters,
            },
        }])
    );
    assert_eq!(
        body["tool_choice"],
        json!({ "type": "function", "function": { "name": "lookup_order" } })
    );
}

#[tokio::test]
async fn tool_choice_keywords() {
    let server = FakeOpenAiServer::start().await;
    let tool = ToolSpec {
        name: "t".into(),
        description: "d".into(),
        parameters: json!({ "type": "object" }),
    };
    let mut server = server;
    for (choice, expected) in [
        (ToolChoice::Auto, "auto"),
        (ToolChoice::None, "none"),
        (ToolChoice::Required, "required"),
    ] {
        server = server.reply("ok");
        let request = LlmRequest {
            tools: vec![tool.clone()],
            tool_choice: Some(choice),
            ..ask("go")
        };
        server.provider().complete(request).await.unwrap();
        assert_eq!(server.last_request().unwrap()["tool_choice"], expected);
    }
}

#[tokio::test]
async fn json_schema_response_format_is_sent_and_structured_reply_returned() {
    let server = FakeOpenAiServer::start()
        .await
        .reply_json(json!({ "sentiment": "positive", "score": 0.9 }));
    let schema = json!({
        "type": "object",
        "properties": { "sentiment": { "type": "string" }, "score": { "type": "number" } },
        "required": ["sentiment", "score"],
    });
    let request = LlmRequest {
        response_schema: Some(ResponseSchema {
            name: "Sentiment".into(),
            schema: schema.clone(),
        }),
        ..ask("I love it")
    };
    let reply = server.provider().complete(request).await.unwrap();

    let content: Value = serde_json::from_str(reply.message.content.as_deref().unwrap()).unwrap();
    assert_eq!(content, json!({ "sentiment": "positive", "score": 0.9 }));
    assert_eq!(
        server.requests()[0]["response_format"],
        json!({
            "type": "json_schema",
            "json_schema": { "name": "Sentiment", "schema": schema, "strict": false },
        })
    );
}

#[tokio::test]
async fn retries_429_after_retry_after() {
    let server = FakeOpenAiServer::start()
        .await
        .fail_with(429, Some("1"))
        .reply("made it");
    let started = Instant::now();
    let reply = server.provider().complete(ask("hi")).await.unwrap();

    assert_eq!(reply.message.content.as_deref(), Some("made it"));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited only {:?}",
        started.elapsed()
    );
    assert_eq!(server.request_count(), 2, "exactly one retry");
    assert_eq!(
        server.requests()[0],
        server.requests()[1],
        "the same request resent"
    );
}

#[tokio::test]
async fn retry_after_is_capped_by_max_retry_wait() {
    let server = FakeOpenAiServer::start()
        .await
        .fail_with(429, Some("30"))
        .reply("made it");
    let started = Instant::now();
    let provider = server.provider().max_retry_wait(Duration::from_millis(50));
    provider.complete(ask("hi")).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(server.request_count(), 2);
}

#[tokio::test]
async fn retries_5xx_with_backoff() {
    let server = FakeOpenAiServer::start()
        .await
        .fail_with(500, None)
        .fail_with(503, None)
        .reply("recovered");
    let started = Instant::now();
    let reply = server.provider().complete(ask("hi")).await.unwrap();

    assert_eq!(reply.message.content.as_deref(), Some("recovered"));
    assert_eq!(server.request_count(), 3);
    // 250 ms, then 500 ms of exponential backoff.
    assert!(started.elapsed() >= Duration::from_millis(750));
}

#[tokio::test]
async fn bad_request_carries_the_provider_message_and_is_not_retried() {
    let server = FakeOpenAiServer::start()
        .await
        .fail_with_message(400, "The model `gpt-9` does not exist")
        .reply("never sent");
    let error = server.provider().complete(ask("hi")).await.unwrap_err();

    assert_eq!(error.kind, LlmErrorKind::BadRequest);
    assert!(!error.retryable);
    assert!(
        error.message.contains("The model `gpt-9` does not exist"),
        "{}",
        error.message
    );
    assert_eq!(server.request_count(), 1);
    assert_eq!(server.remaining(), 1);
}

#[tokio::test]
async fn unauthorized_is_an_auth_error_naming_the_key() {
    let server = FakeOpenAiServer::start()
        .await
        .fail_with_message(401, "Incorrect API key provided");
    let error = server.provider().complete(ask("hi")).await.unwrap_err();

    assert_eq!(error.kind, LlmErrorKind::Auth);
    assert!(!error.retryable);
    assert!(
        error.message.contains("OPENAI_API_KEY"),
        "{}",
        error.message
    );
    assert!(error.message.contains("Incorrect API key provided"));
    assert_eq!(server.request_count(), 1);
}

#[tokio::test]
async fn exhausted_retries_return_the_rate_limit_error() {
    let server = FakeOpenAiServer::start()
        .await
        .fail_with(429, Some("0"))
        .fail_with(429, Some("0"))
        .fail_with(429, Some("0"))
        .reply("too late");
    let provider = server.provider().max_retries(2);
    let error = provider.complete(ask("hi")).await.unwrap_err();

    assert_eq!(error.kind, LlmErrorKind::RateLimited);
    assert!(error.retryable);
    assert_eq!(error.retry_after, Some(Duration::ZERO));
    assert!(
        error.message.contains("after 2 retries"),
        "{}",
        error.message
    );
    assert_eq!(server.request_count(), 3, "one call and two retries");
}

#[tokio::test]
async fn slow_answer_is_a_timeout() {
    let server = FakeOpenAiServer::start()
        .await
        .reply(Reply::text("late").after(Duration::from_secs(3)));
    let provider = server
        .provider()
        .timeout(Duration::from_millis(200))
        .max_retries(0);
    let started = Instant::now();
    let error = provider.complete(ask("hi")).await.unwrap_err();

    assert_eq!(error.kind, LlmErrorKind::Timeout, "{}", error.message);
    assert!(error.retryable);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(server.request_count(), 1);
}

#[tokio::test]
async fn unparsable_body_is_an_invalid_response() {
    let server = FakeOpenAiServer::start()
        .await
        .respond_next(wiremock::ResponseTemplate::new(200).set_body_string("<html>oops</html>"));
    let error = server.provider().complete(ask("hi")).await.unwrap_err();
    assert_eq!(error.kind, LlmErrorKind::InvalidResponse);
    assert!(!error.retryable);
    assert!(
        error.message.contains("<html>oops</html>"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn connection_refused_is_a_transport_error() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let provider = OpenAiProvider::new(format!("http://127.0.0.1:{port}/v1/"), None).max_retries(0);
    assert_eq!(provider.base_url(), format!("http://127.0.0.1:{port}/v1"));
    let error = provider.complete(ask("hi")).await.unwrap_err();
    assert_eq!(error.kind, LlmErrorKind::Transport, "{}", error.message);
    assert!(error.retryable);
}

#[tokio::test]
async fn server_matchers_and_unscripted_requests() {
    let server = FakeOpenAiServer::start()
        .await
        .when_last_user_contains("refund", "Refunds take 5 days.")
        .reply("Hello!");
    let provider = server.provider();

    let refund = provider.complete(ask("my refund?")).await.unwrap();
    assert_eq!(
        refund.message.content.as_deref(),
        Some("Refunds take 5 days.")
    );
    let hello = provider.complete(ask("hi")).await.unwrap();
    assert_eq!(hello.message.content.as_deref(), Some("Hello!"));
    let error = provider.complete(ask("anything else")).await.unwrap_err();
    assert_eq!(error.kind, LlmErrorKind::BadRequest);
    assert!(
        error
            .message
            .contains("FakeOpenAiServer has no reply scripted for: \"anything else\""),
        "{}",
        error.message
    );
    assert_eq!(server.request_count(), 3);
}

// ---------------------------------------------------------------------------------------
// FakeLlm

#[tokio::test]
async fn fake_llm_replies_in_sequence() {
    let llm = FakeLlm::new()
        .reply("first")
        .reply_json(json!({ "answer": 42 }))
        .reply_tool_calls(vec![
            ("lookup", json!({ "id": 1 })),
            ("lookup", json!({ "id": 2 })),
        ])
        .reply(Reply::text("cheap").usage(1, 1));

    let first = llm.complete(ask("a")).await.unwrap();
    assert_eq!(first.message.content.as_deref(), Some("first"));
    assert_eq!(first.usage.total_tokens, 15);
    assert_eq!(first.model, "gpt-4o-mini");
    assert_eq!(first.finish_reason.as_deref(), Some("stop"));

    let structured = llm.complete(ask("b")).await.unwrap();
    let value: Value =
        serde_json::from_str(structured.message.content.as_deref().unwrap()).unwrap();
    assert_eq!(value, json!({ "answer": 42 }));

    let calls = llm.complete(ask("c")).await.unwrap();
    assert_eq!(calls.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(calls.message.content, None);
    let ids: Vec<_> = calls
        .message
        .tool_calls
        .iter()
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(ids, ["call_1", "call_2"]);
    assert_eq!(calls.message.tool_calls[1].arguments, json!({ "id": 2 }));

    let cheap = llm.complete(ask("d")).await.unwrap();
    assert_eq!(cheap.usage.total_tokens, 2);
    assert_eq!(llm.remaining(), 0);
}

#[tokio::test]
async fn fake_llm_matchers_come_before_the_queue_and_requests_are_recorded() {
    let llm = FakeLlm::new()
        .when_last_user_contains("refund", "Refunds take 5 days.")
        .when(
            |req: &LlmRequest| !req.tools.is_empty(),
            Reply::tool_call("search", json!({})),
        )
        .reply("queued");
    let handle = llm.clone();

    let refund = llm.complete(ask("refund please")).await.unwrap();
    assert_eq!(
        refund.message.content.as_deref(),
        Some("Refunds take 5 days.")
    );
    let again = llm.complete(ask("another refund")).await.unwrap();
    assert_eq!(
        again.message.content.as_deref(),
        Some("Refunds take 5 days."),
        "rules persist"
    );
    let with_tools = LlmRequest {
        tools: vec![ToolSpec {
            name: "search".into(),
            description: "Searches.".into(),
            parameters: json!({ "type": "object" }),
        }],
        ..ask("find it")
    };
    let tool = llm.complete(with_tools).await.unwrap();
    assert_eq!(tool.message.tool_calls[0].name, "search");
    let queued = llm.complete(ask("hi")).await.unwrap();
    assert_eq!(queued.message.content.as_deref(), Some("queued"));

    assert_eq!(handle.calls(), 4, "clones share the record");
    let texts: Vec<_> = handle
        .requests()
        .iter()
        .map(|r| r.messages[0].content.clone().unwrap())
        .collect();
    assert_eq!(texts, ["refund please", "another refund", "find it", "hi"]);
    assert_eq!(handle.last_request().unwrap().model, "gpt-4o-mini");
}

#[tokio::test]
async fn fake_llm_fails_clearly_when_unscripted_and_on_demand() {
    let llm = FakeLlm::new()
        .fail_next(LlmError::new(LlmErrorKind::RateLimited, "slow down"))
        .reply("after the failure");

    let failed = llm.complete(ask("one")).await.unwrap_err();
    assert_eq!(failed.kind, LlmErrorKind::RateLimited);
    let ok = llm.complete(ask("two")).await.unwrap();
    assert_eq!(ok.message.content.as_deref(), Some("after the failure"));

    let error = llm
        .complete(ask("what is the meaning of life?"))
        .await
        .unwrap_err();
    assert_eq!(error.kind, LlmErrorKind::BadRequest);
    assert!(!error.retryable);
    assert_eq!(
        error.message,
        "FakeLlm has no reply scripted for: \"what is the meaning of life?\""
    );
    assert_eq!(llm.calls(), 3);
}

// ---------------------------------------------------------------------------------------
// Streaming (`complete_streaming`, as LLM steps call it while their run is watched)

/// Collects the pieces a streaming call hands over.
#[derive(Default)]
struct Pieces(std::sync::Mutex<Vec<String>>);

impl Pieces {
    fn push(&self, text: &str) {
        self.0.lock().unwrap().push(text.to_owned());
    }
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn a_streamed_reply_comes_in_pieces_and_equals_the_plain_reply() {
    let server = FakeOpenAiServer::start()
        .await
        .reply(
            Reply::text("Hello, Ada!")
                .pieces(["Hel", "lo, ", "Ada!"])
                .usage(12, 3),
        )
        .reply(Reply::text("Hello, Ada!").usage(12, 3));
    let pieces = Pieces::default();
    let streamed = server
        .provider()
        .complete_streaming(ask("Hi"), &|text| pieces.push(text))
        .await
        .unwrap();
    assert_eq!(pieces.all(), ["Hel", "lo, ", "Ada!"]);
    let request = server.last_request().unwrap();
    assert_eq!(request["stream"], true);
    assert_eq!(request["stream_options"]["include_usage"], true);

    let plain = server.provider().complete(ask("Hi")).await.unwrap();
    assert!(server.last_request().unwrap().get("stream").is_none());
    assert_eq!(
        streamed, plain,
        "the same reply, usage included, either way"
    );
    assert_eq!(streamed.usage.total_tokens, 15);
}

#[tokio::test]
async fn streamed_tool_calls_are_put_back_together() {
    let server = FakeOpenAiServer::start().await.reply(
        Reply::tool_calls([
            ("lookup_order", json!({ "id": 7 })),
            ("refund", json!({ "id": 7, "amount": 5 })),
        ])
        .with_text("Checking."),
    );
    let pieces = Pieces::default();
    let reply = server
        .provider()
        .complete_streaming(ask("refund 7"), &|text| pieces.push(text))
        .await
        .unwrap();
    assert_eq!(pieces.all(), ["Checking."]);
    assert_eq!(reply.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(
        reply.message.tool_calls,
        [
            ToolCall {
                id: "call_1".into(),
                name: "lookup_order".into(),
                arguments: json!({ "id": 7 }),
            },
            ToolCall {
                id: "call_2".into(),
                name: "refund".into(),
                arguments: json!({ "id": 7, "amount": 5 }),
            },
        ]
    );
}

#[tokio::test]
async fn stream_tokens_off_sends_a_plain_request_and_hands_over_nothing() {
    let server = FakeOpenAiServer::start().await.reply("Hi there");
    let pieces = Pieces::default();
    let reply = server
        .provider()
        .stream_tokens(false)
        .complete_streaming(ask("Hi"), &|text| pieces.push(text))
        .await
        .unwrap();
    assert_eq!(reply.message.content.as_deref(), Some("Hi there"));
    assert!(pieces.all().is_empty());
    assert!(server.last_request().unwrap().get("stream").is_none());
}

#[tokio::test]
async fn a_stream_cut_short_is_a_retryable_transport_error() {
    let cut = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n";
    let server = FakeOpenAiServer::start()
        .await
        .respond_next(wiremock::ResponseTemplate::new(200).set_body_raw(cut, "text/event-stream"));
    let pieces = Pieces::default();
    let error = server
        .provider()
        .max_retries(0)
        .complete_streaming(ask("Hi"), &|text| pieces.push(text))
        .await
        .unwrap_err();
    assert_eq!(error.kind, LlmErrorKind::Transport, "{}", error.message);
    assert!(error.retryable);
    assert!(
        error.message.contains("before the reply was complete"),
        "{}",
        error.message
    );
    assert_eq!(pieces.all(), ["Hel"]);
}

#[tokio::test]
async fn fake_llm_streams_its_text_cut_after_spaces() {
    let llm = FakeLlm::new().reply("Hello, brave new world");
    let pieces = Pieces::default();
    let reply = llm
        .complete_streaming(ask("hi"), &|text| pieces.push(text))
        .await
        .unwrap();
    assert_eq!(pieces.all(), ["Hello, ", "brave ", "new ", "world"]);
    assert_eq!(
        reply.message.content.as_deref(),
        Some("Hello, brave new world")
    );
}

#[tokio::test]
async fn a_server_refusing_to_stream_is_asked_plainly_from_then_on() {
    let server = FakeOpenAiServer::start()
        .await
        .fail_with_message(
            400,
            "Unrecognized request argument supplied: stream_options",
        )
        .reply("first")
        .reply("second");
    let provider = server.provider();
    let pieces = Pieces::default();
    let reply = provider
        .complete_streaming(ask("Hi"), &|text| pieces.push(text))
        .await
        .unwrap();
    assert_eq!(reply.message.content.as_deref(), Some("first"));
    let again = provider
        .clone()
        .complete_streaming(ask("Hi"), &|text| pieces.push(text))
        .await
        .unwrap();
    assert_eq!(again.message.content.as_deref(), Some("second"));
    let streamed: Vec<bool> = server
        .requests()
        .iter()
        .map(|r| r.get("stream").is_some())
        .collect();
    assert_eq!(streamed, [true, false, false], "refused once, then plain");
    assert!(pieces.all().is_empty());
}

#[tokio::test]
async fn a_request_that_fails_plainly_too_leaves_streaming_on() {
    let server = FakeOpenAiServer::start()
        .await
        .fail_with_message(400, "This model's maximum context length is 8192 tokens")
        .fail_with_message(400, "This model's maximum context length is 8192 tokens")
        .reply("short enough");
    let provider = server.provider();
    let pieces = Pieces::default();
    let error = provider
        .complete_streaming(ask("a very long prompt"), &|text| pieces.push(text))
        .await
        .expect_err("the request itself is refused");
    assert!(
        error.message.contains("context length"),
        "{}",
        error.message
    );
    let reply = provider
        .complete_streaming(ask("Hi"), &|text| pieces.push(text))
        .await
        .unwrap();
    assert_eq!(reply.message.content.as_deref(), Some("short enough"));
    let streamed: Vec<bool> = server
        .requests()
        .iter()
        .map(|r| r.get("stream").is_some())
        .collect();
    assert_eq!(
        streamed,
        [true, false, true],
        "the next request streams again: streaming was not the problem"
    );
}
