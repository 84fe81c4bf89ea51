//! Fake chat models for tests, with no API key and no internet:
//!
//! - [`FakeLlm`]: an in-process [`LlmProvider`] answering with scripted [`Reply`]s (in
//!   order, or by matching the request), recording every request. Plug it into an engine
//!   or a `TestEnv` where a real provider would go.
//! - [`FakeOpenAiServer`]: a wiremock server on 127.0.0.1 speaking the OpenAI chat
//!   completions API (text, tool calls, JSON-schema replies, HTTP errors with
//!   `Retry-After`), so the real [`OpenAiProvider`] is tested over a socket.
//!
//! Both can stream a reply in pieces, as a watched run asks them to
//! ([`LlmProvider::complete_streaming`]; [`Reply::pieces`] says where the text is cut, by
//! default after each space): [`FakeLlm`] hands the pieces over in process, and
//! [`FakeOpenAiServer`] answers a request with `stream: true` as OpenAI does, with
//! `text/event-stream` chat completion chunks, `usage` last when `stream_options` asks
//! for it, and `data: [DONE]`.
//!
//! Both answer in the same order: a scripted failure first (`fail_next` / `fail_with`),
//! then the first matcher rule (`when…`) that accepts the request, then the next queued
//! reply; with none of those the request fails with a message naming the last user
//! message, so a test missing a script fails clearly.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use reprise::llm::{
    ChatMessage, LlmError, LlmErrorKind, LlmProvider, LlmRequest, LlmResponse, OpenAiProvider,
    Role, ToolCall, Usage,
};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The key [`FakeOpenAiServer::provider`] sends.
pub const FAKE_API_KEY: &str = "sk-fake-reprise-testkit";

/// The token counts a [`Reply`] reports unless [`Reply::usage`] says otherwise.
pub const DEFAULT_USAGE: Usage = Usage {
    prompt_tokens: 10,
    completion_tokens: 5,
    total_tokens: 15,
    cached_tokens: 0,
};

/// A scripted model reply: text, structured JSON, tool calls (or text and tool calls),
/// with the token usage it reports and an optional delay.
///
/// `&str` and `String` convert into a text reply, so `fake.reply("Hi")` works.
///
/// ```
/// use std::time::Duration;
/// use reprise_testkit::llm::Reply;
/// use serde_json::json;
///
/// let text = Reply::text("Bonjour").usage(12, 3);
/// let structured = Reply::json(json!({ "sentiment": "positive" }));
/// let calls = Reply::tool_call("lookup_order", json!({ "id": 7 }));
/// let slow = Reply::text("late").after(Duration::from_secs(2));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    content: Option<String>,
    tool_calls: Vec<(String, Value)>,
    usage: Usage,
    delay: Option<Duration>,
    pieces: Option<Vec<String>>,
}

impl Reply {
    /// A text reply (finish reason `stop`).
    pub fn text(text: impl Into<String>) -> Reply {
        Reply {
            content: Some(text.into()),
            tool_calls: Vec::new(),
            usage: DEFAULT_USAGE,
            delay: None,
            pieces: None,
        }
    }

    /// A structured reply: the content is `value`'s JSON text, as a model answering a
    /// JSON-schema response format writes it.
    pub fn json(value: Value) -> Reply {
        Reply::text(value.to_string())
    }

    /// A reply calling tools: `(name, arguments)` pairs, no text (finish reason
    /// `tool_calls`). Call ids are `call_1`, `call_2`, … in the order the fake hands them
    /// out. Arguments that are a JSON string reach the provider as that raw text, i.e. as
    /// a model writing arguments that are not JSON.
    pub fn tool_calls<N: Into<String>>(calls: impl IntoIterator<Item = (N, Value)>) -> Reply {
        Reply {
            content: None,
            tool_calls: calls
                .into_iter()
                .map(|(name, args)| (name.into(), args))
                .collect(),
            usage: DEFAULT_USAGE,
            delay: None,
            pieces: None,
        }
    }

    /// A reply calling one tool.
    pub fn tool_call(name: impl Into<String>, arguments: Value) -> Reply {
        Reply::tool_calls([(name.into(), arguments)])
    }

    /// The same reply with `text` as its content too (text alongside tool calls).
    #[must_use]
    pub fn with_text(mut self, text: impl Into<String>) -> Reply {
        self.content = Some(text.into());
        self
    }

    /// The token usage the reply reports (total = prompt + completion); default 10 + 5.
    #[must_use]
    pub fn usage(mut self, prompt_tokens: u64, completion_tokens: u64) -> Reply {
        self.usage = Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            cached_tokens: 0,
        };
        self
    }

    /// Answers only after `delay` (tokio time in [`FakeLlm`], wall-clock time in
    /// [`FakeOpenAiServer`]): for timeout tests.
    #[must_use]
    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = Some(delay);
        self
    }

    /// When streamed, the text comes in these pieces (their concatenation replaces the
    /// text). Default: the text cut after each space (`"Hello, world"` streams as
    /// `"Hello, "` and `"world"`).
    #[must_use]
    pub fn pieces<P: Into<String>>(mut self, pieces: impl IntoIterator<Item = P>) -> Reply {
        let pieces: Vec<String> = pieces.into_iter().map(Into::into).collect();
        self.content = Some(pieces.concat());
        self.pieces = Some(pieces);
        self
    }

    /// The pieces a streamed answer sends the text in.
    fn text_pieces(&self) -> Vec<String> {
        match (&self.pieces, &self.content) {
            (Some(pieces), _) => pieces.clone(),
            (None, Some(text)) => text.split_inclusive(' ').map(str::to_owned).collect(),
            (None, None) => Vec::new(),
        }
    }

    fn finish_reason(&self) -> &'static str {
        if self.tool_calls.is_empty() {
            "stop"
        } else {
            "tool_calls"
        }
    }
}

impl From<&str> for Reply {
    fn from(text: &str) -> Reply {
        Reply::text(text)
    }
}

impl From<String> for Reply {
    fn from(text: String) -> Reply {
        Reply::text(text)
    }
}

impl From<&String> for Reply {
    fn from(text: &String) -> Reply {
        Reply::text(text.as_str())
    }
}

/// A matcher rule: a predicate on the request and the reply it selects.
struct Rule<Req: ?Sized> {
    matches: Arc<dyn Fn(&Req) -> bool + Send + Sync>,
    reply: Reply,
}

/// The script and the record shared by a fake's clones (or a server's responder).
struct Script<Req: ?Sized, Fail, Rec> {
    failures: VecDeque<Fail>,
    rules: Vec<Rule<Req>>,
    queue: VecDeque<Reply>,
    requests: Vec<Rec>,
    next_call: u64,
}

impl<Req: ?Sized, Fail, Rec> Default for Script<Req, Fail, Rec> {
    fn default() -> Self {
        Script {
            failures: VecDeque::new(),
            rules: Vec::new(),
            queue: VecDeque::new(),
            requests: Vec::new(),
            next_call: 1,
        }
    }
}

/// What a script answers one request with.
enum Answer<Fail> {
    Fail(Fail),
    Reply(Reply),
    Unscripted,
}

impl<Req: ?Sized, Fail, Rec> Script<Req, Fail, Rec> {
    fn answer(&mut self, request: &Req) -> Answer<Fail> {
        if let Some(failure) = self.failures.pop_front() {
            return Answer::Fail(failure);
        }
        if let Some(rule) = self.rules.iter().find(|rule| (rule.matches)(request)) {
            return Answer::Reply(rule.reply.clone());
        }
        match self.queue.pop_front() {
            Some(reply) => Answer::Reply(reply),
            None => Answer::Unscripted,
        }
    }

    /// Tool calls with fresh ids `call_N`.
    fn tool_calls(&mut self, reply: &Reply) -> Vec<ToolCall> {
        reply
            .tool_calls
            .iter()
            .map(|(name, arguments)| {
                let id = format!("call_{}", self.next_call);
                self.next_call += 1;
                ToolCall {
                    id,
                    name: name.clone(),
                    arguments: arguments.clone(),
                }
            })
            .collect()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The text of the last user message, for "no reply scripted" errors.
fn describe_last_user(text: Option<&str>) -> String {
    match text {
        Some(text) => format!("{text:?}"),
        None => "(no user message)".to_owned(),
    }
}

// ---------------------------------------------------------------------------------------
// FakeLlm

type FakeScript = Script<LlmRequest, LlmError, LlmRequest>;

/// An in-process [`LlmProvider`] with scripted replies, recording every request.
///
/// Cheap to clone: clones share the script and the record, so a test hands one clone to
/// the engine and keeps another to script more replies and assert on the requests. The
/// scripting methods take and return the fake, for chaining from [`FakeLlm::new`].
///
/// Per request: a failure queued by [`fail_next`](Self::fail_next) comes first, then the
/// first rule ([`when`](Self::when), [`when_last_user_contains`](Self::when_last_user_contains))
/// that matches (rules are kept and may answer many requests), then the next queued reply
/// ([`reply`](Self::reply), [`reply_json`](Self::reply_json),
/// [`reply_tool_calls`](Self::reply_tool_calls)), each used once. Otherwise the call fails
/// with [`LlmErrorKind::BadRequest`] `FakeLlm has no reply scripted for: "<last user
/// message>"`. Replies name the requested model and report [`DEFAULT_USAGE`] unless the
/// [`Reply`] says otherwise.
///
/// ```
/// use reprise::llm::{ChatMessage, LlmProvider, LlmRequest};
/// use reprise_testkit::llm::{FakeLlm, Reply};
/// use serde_json::json;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let llm = FakeLlm::new()
///     .when_last_user_contains("refund", "Refunds take 5 days.")
///     .reply("Hello!")
///     .reply_json(json!({ "sentiment": "positive" }))
///     .reply_tool_calls(vec![("lookup_order", json!({ "id": 7 }))]);
///
/// let ask = |text: &str| LlmRequest {
///     model: "gpt-4o-mini".into(),
///     messages: vec![ChatMessage::user(text)],
///     ..LlmRequest::default()
/// };
/// let hello = llm.complete(ask("hi")).await.unwrap();
/// assert_eq!(hello.message.content.as_deref(), Some("Hello!"));
/// let refund = llm.complete(ask("where is my refund?")).await.unwrap();
/// assert_eq!(refund.message.content.as_deref(), Some("Refunds take 5 days."));
/// assert_eq!(llm.calls(), 2);
/// assert_eq!(llm.requests()[1].messages[0].content.as_deref(), Some("where is my refund?"));
/// # });
/// ```
#[derive(Clone, Default)]
pub struct FakeLlm {
    script: Arc<Mutex<FakeScript>>,
}

impl fmt::Debug for FakeLlm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let script = lock(&self.script);
        f.debug_struct("FakeLlm")
            .field("queued", &script.queue.len())
            .field("rules", &script.rules.len())
            .field("failures", &script.failures.len())
            .field("calls", &script.requests.len())
            .finish()
    }
}

impl FakeLlm {
    /// A fake with nothing scripted.
    pub fn new() -> FakeLlm {
        FakeLlm::default()
    }

    /// Queues `reply` (text, or any [`Reply`]) for the next request no rule answers.
    pub fn reply(self, reply: impl Into<Reply>) -> FakeLlm {
        lock(&self.script).queue.push_back(reply.into());
        self
    }

    /// Queues a structured reply: the content is `value`'s JSON text.
    pub fn reply_json(self, value: Value) -> FakeLlm {
        self.reply(Reply::json(value))
    }

    /// Queues a reply calling tools: `(name, arguments)` pairs.
    pub fn reply_tool_calls<N: Into<String>>(
        self,
        calls: impl IntoIterator<Item = (N, Value)>,
    ) -> FakeLlm {
        self.reply(Reply::tool_calls(calls))
    }

    /// Answers every request `matches` accepts with `reply`, before the queue (rules are
    /// tried in the order they were added).
    pub fn when(
        self,
        matches: impl Fn(&LlmRequest) -> bool + Send + Sync + 'static,
        reply: impl Into<Reply>,
    ) -> FakeLlm {
        lock(&self.script).rules.push(Rule {
            matches: Arc::new(matches),
            reply: reply.into(),
        });
        self
    }

    /// Answers every request whose last user message contains `needle` with `reply`.
    pub fn when_last_user_contains(
        self,
        needle: impl Into<String>,
        reply: impl Into<Reply>,
    ) -> FakeLlm {
        let needle = needle.into();
        self.when(
            move |request| last_user(request).is_some_and(|text| text.contains(&needle)),
            reply,
        )
    }

    /// Fails the next request with `error` (before any rule or queued reply); several
    /// calls fail that many requests in order.
    pub fn fail_next(self, error: LlmError) -> FakeLlm {
        lock(&self.script).failures.push_back(error);
        self
    }

    /// Every request received, in order (including the ones that failed).
    pub fn requests(&self) -> Vec<LlmRequest> {
        lock(&self.script).requests.clone()
    }

    /// The last request received.
    pub fn last_request(&self) -> Option<LlmRequest> {
        lock(&self.script).requests.last().cloned()
    }

    /// How many requests were received.
    pub fn calls(&self) -> usize {
        lock(&self.script).requests.len()
    }

    /// How many queued replies are still unused.
    pub fn remaining(&self) -> usize {
        lock(&self.script).queue.len()
    }
}

fn last_user(request: &LlmRequest) -> Option<&str> {
    request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Some(Role::User))
        .and_then(|m| m.content.as_deref())
}

#[async_trait]
impl LlmProvider for FakeLlm {
    async fn complete(&self, request: LlmRequest) -> Result<LlmResponse, LlmError> {
        self.answer(request, None).await
    }

    async fn complete_streaming(
        &self,
        request: LlmRequest,
        delta: &(dyn for<'s> Fn(&'s str) + Send + Sync),
    ) -> Result<LlmResponse, LlmError> {
        self.answer(request, Some(delta)).await
    }
}

impl FakeLlm {
    /// The scripted answer to `request`, its text handed to `delta` piece by piece.
    async fn answer(
        &self,
        request: LlmRequest,
        delta: Option<&(dyn for<'s> Fn(&'s str) + Send + Sync)>,
    ) -> Result<LlmResponse, LlmError> {
        let (reply, tool_calls) = {
            let mut script = lock(&self.script);
            script.requests.push(request.clone());
            match script.answer(&request) {
                Answer::Fail(error) => return Err(error),
                Answer::Unscripted => {
                    return Err(LlmError::new(
                        LlmErrorKind::BadRequest,
                        format!(
                            "FakeLlm has no reply scripted for: {}",
                            describe_last_user(last_user(&request))
                        ),
                    ));
                }
                Answer::Reply(reply) => {
                    let calls = script.tool_calls(&reply);
                    (reply, calls)
                }
            }
        };
        if let Some(delay) = reply.delay {
            tokio::time::sleep(delay).await;
        }
        if let Some(delta) = delta {
            for piece in reply.text_pieces() {
                delta(&piece);
            }
        }
        Ok(LlmResponse {
            message: ChatMessage {
                role: Some(Role::Assistant),
                content: reply.content.clone(),
                tool_calls,
                tool_call_id: None,
            },
            usage: reply.usage,
            model: request.model,
            finish_reason: Some(reply.finish_reason().to_owned()),
        })
    }
}

// ---------------------------------------------------------------------------------------
// FakeOpenAiServer

type ServerScript = Script<Value, ResponseTemplate, Value>;

/// A wiremock server on 127.0.0.1 speaking the OpenAI chat completions API
/// (`POST /v1/chat/completions`), with scripted replies, for testing
/// [`OpenAiProvider`] (or any OpenAI-compatible client) over a real socket.
///
/// Replies are the same [`Reply`]s as [`FakeLlm`]'s, answered as chat completion JSON
/// (`choices[0].message` with `content` and/or `tool_calls` whose `arguments` is a JSON
/// string, `finish_reason`, `usage`, `model` echoing the request); matcher rules see the
/// request's JSON body. Scripted HTTP failures ([`fail_with`](Self::fail_with),
/// [`fail_with_message`](Self::fail_with_message), [`respond_next`](Self::respond_next))
/// answer the next requests before anything else. An unscripted request gets a 400 whose
/// error message says `FakeOpenAiServer has no reply scripted for: "<last user message>"`.
/// The server counts what it receives, so a test can prove a model call was not repeated.
///
/// ```no_run
/// use reprise::llm::{ChatMessage, LlmProvider, LlmRequest};
/// use reprise_testkit::llm::FakeOpenAiServer;
///
/// # async fn example() {
/// let server = FakeOpenAiServer::start()
///     .await
///     .fail_with(429, Some("1"))
///     .reply("Hello!");
/// let provider = server.provider(); // OpenAiProvider at server.url()
/// let request = LlmRequest {
///     model: "gpt-4o-mini".into(),
///     messages: vec![ChatMessage::user("hi")],
///     ..LlmRequest::default()
/// };
/// let reply = provider.complete(request).await.unwrap(); // one retry after 1 s
/// assert_eq!(reply.message.content.as_deref(), Some("Hello!"));
/// assert_eq!(server.request_count(), 2);
/// assert_eq!(server.requests()[0]["model"], "gpt-4o-mini");
/// # }
/// ```
pub struct FakeOpenAiServer {
    server: MockServer,
    script: Arc<Mutex<ServerScript>>,
}

impl fmt::Debug for FakeOpenAiServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let script = lock(&self.script);
        f.debug_struct("FakeOpenAiServer")
            .field("url", &self.url())
            .field("queued", &script.queue.len())
            .field("rules", &script.rules.len())
            .field("failures", &script.failures.len())
            .field("requests", &script.requests.len())
            .finish()
    }
}

impl FakeOpenAiServer {
    /// Starts a server on a free port of 127.0.0.1, with nothing scripted.
    pub async fn start() -> FakeOpenAiServer {
        let server = MockServer::start().await;
        let script = Arc::new(Mutex::new(ServerScript::default()));
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(Responder {
                script: script.clone(),
            })
            .mount(&server)
            .await;
        FakeOpenAiServer { server, script }
    }

    /// The API base URL, `http://127.0.0.1:PORT/v1`, for [`OpenAiProvider::new`] or
    /// `OPENAI_BASE_URL`.
    pub fn url(&self) -> String {
        format!("{}/v1", self.server.uri())
    }

    /// An [`OpenAiProvider`] pointed at [`url`](Self::url) with the key [`FAKE_API_KEY`]
    /// and the provider's default timeout and retries (adjust with its builder methods).
    pub fn provider(&self) -> OpenAiProvider {
        OpenAiProvider::new(self.url(), Some(FAKE_API_KEY.to_owned()))
    }

    /// The underlying wiremock server (e.g. for the headers of received requests).
    pub fn server(&self) -> &MockServer {
        &self.server
    }

    /// Queues `reply` (text, or any [`Reply`]) for the next request no rule answers.
    pub fn reply(self, reply: impl Into<Reply>) -> FakeOpenAiServer {
        lock(&self.script).queue.push_back(reply.into());
        self
    }

    /// Queues a structured reply: the content is `value`'s JSON text.
    pub fn reply_json(self, value: Value) -> FakeOpenAiServer {
        self.reply(Reply::json(value))
    }

    /// Queues a reply calling tools: `(name, arguments)` pairs, sent with `arguments` as
    /// JSON strings the way OpenAI does.
    pub fn reply_tool_calls<N: Into<String>>(
        self,
        calls: impl IntoIterator<Item = (N, Value)>,
    ) -> FakeOpenAiServer {
        self.reply(Reply::tool_calls(calls))
    }

    /// Answers every request whose JSON body `matches` accepts with `reply`, before the
    /// queue.
    pub fn when(
        self,
        matches: impl Fn(&Value) -> bool + Send + Sync + 'static,
        reply: impl Into<Reply>,
    ) -> FakeOpenAiServer {
        lock(&self.script).rules.push(Rule {
            matches: Arc::new(matches),
            reply: reply.into(),
        });
        self
    }

    /// Answers every request whose last user message contains `needle` with `reply`.
    pub fn when_last_user_contains(
        self,
        needle: impl Into<String>,
        reply: impl Into<Reply>,
    ) -> FakeOpenAiServer {
        let needle = needle.into();
        self.when(
            move |body| last_user_in_body(body).is_some_and(|text| text.contains(&needle)),
            reply,
        )
    }

    /// Fails the next request with HTTP `status`, an OpenAI-style error body
    /// (`{"error": {"message": "FakeOpenAiServer: scripted HTTP <status>", …}}`) and, when
    /// given, a `Retry-After` header (`"1"`, or an HTTP date). Several calls fail that many
    /// requests in order.
    pub fn fail_with(self, status: u16, retry_after: Option<&str>) -> FakeOpenAiServer {
        let mut template =
            error_template(status, &format!("FakeOpenAiServer: scripted HTTP {status}"));
        if let Some(retry_after) = retry_after {
            template = template.insert_header("retry-after", retry_after);
        }
        self.respond_next(template)
    }

    /// Fails the next request with HTTP `status` and `{"error": {"message": message}}`.
    pub fn fail_with_message(self, status: u16, message: &str) -> FakeOpenAiServer {
        self.respond_next(error_template(status, message))
    }

    /// Answers the next request with `template` as it is (any status, headers, body or
    /// delay wiremock can produce), before any rule or queued reply.
    pub fn respond_next(self, template: ResponseTemplate) -> FakeOpenAiServer {
        lock(&self.script).failures.push_back(template);
        self
    }

    /// The JSON bodies received on `/v1/chat/completions`, in order (`Value::Null` for a
    /// body that is not JSON).
    pub fn requests(&self) -> Vec<Value> {
        lock(&self.script).requests.clone()
    }

    /// The last body received.
    pub fn last_request(&self) -> Option<Value> {
        lock(&self.script).requests.last().cloned()
    }

    /// How many requests reached `/v1/chat/completions`.
    pub fn request_count(&self) -> usize {
        lock(&self.script).requests.len()
    }

    /// How many queued replies are still unused.
    pub fn remaining(&self) -> usize {
        lock(&self.script).queue.len()
    }
}

/// The text of the last `role: user` message of a chat completions body.
fn last_user_in_body(body: &Value) -> Option<&str> {
    body.get("messages")?
        .as_array()?
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))?
        .get("content")?
        .as_str()
}

fn error_template(status: u16, message: &str) -> ResponseTemplate {
    let kind = match status {
        429 => "rate_limit_exceeded",
        401 | 403 => "invalid_api_key",
        500..=599 => "server_error",
        _ => "invalid_request_error",
    };
    ResponseTemplate::new(status).set_body_json(json!({
        "error": { "message": message, "type": kind, "param": null, "code": kind }
    }))
}

/// The wiremock responder answering from the shared script.
struct Responder {
    script: Arc<Mutex<ServerScript>>,
}

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let mut script = lock(&self.script);
        script.requests.push(body.clone());
        let reply = match script.answer(&body) {
            Answer::Fail(template) => return template,
            Answer::Unscripted => {
                return error_template(
                    400,
                    &format!(
                        "FakeOpenAiServer has no reply scripted for: {}",
                        describe_last_user(last_user_in_body(&body))
                    ),
                );
            }
            Answer::Reply(reply) => reply,
        };
        let calls = script.tool_calls(&reply);
        let n = script.requests.len();
        drop(script);
        let mut message = json!({ "role": "assistant", "content": reply.content });
        if !calls.is_empty() {
            message["tool_calls"] = calls
                .iter()
                .map(|call| {
                    let arguments = match &call.arguments {
                        Value::String(raw) => raw.clone(),
                        other => other.to_string(),
                    };
                    json!({
                        "id": call.id,
                        "type": "function",
                        "function": { "name": call.name, "arguments": arguments }
                    })
                })
                .collect();
        }
        let model = body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("fake-model");
        if body.get("stream") == Some(&Value::Bool(true)) {
            let template = ResponseTemplate::new(200).set_body_raw(
                stream_body(&body, &reply, &calls, model, n),
                "text/event-stream",
            );
            return match reply.delay {
                Some(delay) => template.set_delay(delay),
                None => template,
            };
        }
        let completion = json!({
            "id": format!("chatcmpl-fake-{n}"),
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [{
                "index": 0,
                "message": message,
                "logprobs": null,
                "finish_reason": reply.finish_reason(),
            }],
            "usage": {
                "prompt_tokens": reply.usage.prompt_tokens,
                "completion_tokens": reply.usage.completion_tokens,
                "total_tokens": reply.usage.total_tokens,
            },
        });
        let template = ResponseTemplate::new(200).set_body_json(completion);
        match reply.delay {
            Some(delay) => template.set_delay(delay),
            None => template,
        }
    }
}

/// The `text/event-stream` answer to a request with `stream: true`: a first chunk with the
/// role, one chunk per piece of text, one per tool call (arguments as one string), the
/// finish reason, the usage when `stream_options.include_usage` asks, then `[DONE]`.
fn stream_body(body: &Value, reply: &Reply, calls: &[ToolCall], model: &str, n: usize) -> String {
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": format!("chatcmpl-fake-{n}"),
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }],
        })
    };
    let mut chunks = vec![chunk(
        json!({ "role": "assistant", "content": "" }),
        Value::Null,
    )];
    for piece in reply.text_pieces() {
        chunks.push(chunk(json!({ "content": piece }), Value::Null));
    }
    for (index, call) in calls.iter().enumerate() {
        let arguments = match &call.arguments {
            Value::String(raw) => raw.clone(),
            other => other.to_string(),
        };
        chunks.push(chunk(
            json!({ "tool_calls": [{
                "index": index,
                "id": call.id,
                "type": "function",
                "function": { "name": call.name, "arguments": arguments },
            }] }),
            Value::Null,
        ));
    }
    chunks.push(chunk(json!({}), json!(reply.finish_reason())));
    if body["stream_options"]["include_usage"] == json!(true) {
        chunks.push(json!({
            "id": format!("chatcmpl-fake-{n}"),
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [],
            "usage": {
                "prompt_tokens": reply.usage.prompt_tokens,
                "completion_tokens": reply.usage.completion_tokens,
                "total_tokens": reply.usage.total_tokens,
            },
        }));
    }
    let mut text: String = chunks
        .iter()
        .map(|chunk| format!("data: {chunk}\n\n"))
        .collect();
    text.push_str("data: [DONE]\n\n");
    text
}
