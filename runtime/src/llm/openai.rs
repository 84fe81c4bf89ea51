//! [`OpenAiProvider`]: the OpenAI chat completions API (`POST {base}/chat/completions`)
//! over HTTP.
//!
//! It follows the OpenAI "Create chat completion" request and response shapes, so it
//! works with OpenAI itself and with the servers that copy them: vLLM
//! (`http://host:8000/v1`), the llama.cpp server (`http://host:8080/v1`), Ollama's
//! OpenAI-compatible endpoint (`http://host:11434/v1`), LiteLLM, and so on.
//!
//! Requests carry `model`, `messages`, `temperature`, `max_tokens`, `tools`,
//! `tool_choice` and, for structured output, `response_format: {type: "json_schema"}`.
//! Rate limits (429) and server errors (5xx) are retried, honouring `Retry-After`.
//!
//! While someone watches the run's live stream, LLM steps call
//! [`LlmProvider::complete_streaming`]: the request then carries `stream: true` and
//! `stream_options: {include_usage: true}`, and the answer's Server-Sent Events chunks
//! (`choices[0].delta.content`, tool-call pieces, the final `usage`) are put back together
//! into the same reply a plain request returns. A server that answers a streaming request
//! with a 4xx is asked again plainly, and when that succeeds it is not asked to stream again;
//! [`OpenAiProvider::stream_tokens`] turns streaming off altogether.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    ChatMessage, LlmError, LlmErrorKind, LlmProvider, LlmRequest, LlmResponse, Role, ToolCall,
    ToolChoice, Usage,
};

/// The base URL used when only `OPENAI_API_KEY` is set.
const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// The first backoff wait when the provider gave no `Retry-After`; doubled per retry.
const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// How much of an unparsable error body goes into an error message.
const BODY_EXCERPT: usize = 500;

/// A provider speaking the OpenAI-compatible chat completions API over HTTP.
///
/// Each [`complete`](LlmProvider::complete) is one `POST {base_url}/chat/completions`
/// with `Authorization: Bearer {api_key}` (when a key is set), retried on transient
/// failures:
///
/// | HTTP answer | [`LlmErrorKind`] | retried |
/// |---|---|---|
/// | 429 | [`RateLimited`](LlmErrorKind::RateLimited), `retry_after` from `Retry-After` | yes |
/// | 5xx | [`Server`](LlmErrorKind::Server) | yes |
/// | 408, or no answer within [`timeout`](Self::timeout) | [`Timeout`](LlmErrorKind::Timeout) | yes |
/// | connection failed | [`Transport`](LlmErrorKind::Transport) | yes |
/// | `https://` base URL while reqwest is built without TLS | [`Transport`](LlmErrorKind::Transport), saying so | no |
/// | base URL that is not a URL | [`BadRequest`](LlmErrorKind::BadRequest) | no |
/// | 401, 403 | [`Auth`](LlmErrorKind::Auth) (check `OPENAI_API_KEY`) | no |
/// | other 4xx | [`BadRequest`](LlmErrorKind::BadRequest) with the provider's message | no |
/// | 2xx that is not a chat completion | [`InvalidResponse`](LlmErrorKind::InvalidResponse) | no |
///
/// Retries wait what `Retry-After` (or `retry-after-ms`) asks, capped at
/// [`max_retry_wait`](Self::max_retry_wait), or else 250 ms × 2ⁿ before retry n+1; after
/// [`max_retries`](Self::max_retries) retries the last error is returned.
///
/// ```no_run
/// use std::time::Duration;
/// use reprise::llm::OpenAiProvider;
///
/// let local = OpenAiProvider::new("http://127.0.0.1:11434/v1", None) // Ollama
///     .timeout(Duration::from_secs(120))
///     .max_retries(5);
/// let from_env = OpenAiProvider::from_env(); // OPENAI_BASE_URL / OPENAI_API_KEY
/// ```
#[derive(Clone)]
pub struct OpenAiProvider {
    client: reqwest::Client,
    base_url: String,
    api_key: Option<String>,
    timeout: Duration,
    max_retries: u32,
    max_retry_wait: Duration,
    stream_tokens: bool,
    /// Set once the server refused a streaming request: this provider (and its clones)
    /// asks plainly from then on.
    stream_refused: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Where the pieces of a streamed reply go.
type Delta<'a> = &'a (dyn Fn(&str) + Send + Sync);

impl fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiProvider")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("max_retry_wait", &self.max_retry_wait)
            .field("stream_tokens", &self.stream_tokens)
            .finish()
    }
}

impl OpenAiProvider {
    /// A provider for the API at `base_url` (the part before `/chat/completions`, e.g.
    /// `https://api.openai.com/v1` or `http://127.0.0.1:8000/v1`; a trailing `/` is
    /// ignored), sending `api_key` as a bearer token when given (local servers usually
    /// need none). Defaults: 60 s timeout per request, 3 retries, `Retry-After` honoured
    /// up to 60 s.
    pub fn new(base_url: impl Into<String>, api_key: Option<String>) -> Self {
        let base_url = base_url.into().trim_end_matches('/').to_owned();
        OpenAiProvider {
            client: reqwest::Client::new(),
            base_url,
            api_key: api_key.filter(|key| !key.is_empty()),
            timeout: Duration::from_secs(60),
            max_retries: 3,
            max_retry_wait: Duration::from_secs(60),
            stream_tokens: true,
            stream_refused: std::sync::Arc::default(),
        }
    }

    /// A provider configured by the environment: `OPENAI_BASE_URL` (default
    /// `https://api.openai.com/v1`) and `OPENAI_API_KEY`. `None` when neither is set (or
    /// both are empty); a base URL without a key gives a key-less provider, for local
    /// servers.
    pub fn from_env() -> Option<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let base_url = var("OPENAI_BASE_URL");
        let api_key = var("OPENAI_API_KEY");
        if base_url.is_none() && api_key.is_none() {
            return None;
        }
        Some(Self::new(
            base_url.unwrap_or_else(|| DEFAULT_BASE_URL.to_owned()),
            api_key,
        ))
    }

    /// The longest one HTTP request may take, connecting to reading the whole body
    /// (default 60 s); past it the attempt fails with [`LlmErrorKind::Timeout`].
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many times a retryable failure (429, 5xx, timeout, connection failure) is
    /// retried before its error is returned (default 3; 0 disables retries).
    #[must_use]
    pub fn max_retries(mut self, max_retries: u32) -> Self {
        self.max_retries = max_retries;
        self
    }

    /// The longest wait before a retry (default 60 s): a longer `Retry-After` is cut to it.
    #[must_use]
    pub fn max_retry_wait(mut self, max_retry_wait: Duration) -> Self {
        self.max_retry_wait = max_retry_wait;
        self
    }

    /// Whether [`complete_streaming`](LlmProvider::complete_streaming) asks the server to
    /// stream (`stream: true`, default) so that a watched run shows its replies as they
    /// are written; with `false` it sends a plain request and hands over no pieces (for
    /// servers that reject `stream` or `stream_options`). A server that answers a streaming
    /// request with a 4xx is asked again plainly; when the plain request succeeds, this
    /// provider (and its clones) no longer streams from then on. The recorded reply is the
    /// same either way.
    /// [`timeout`](Self::timeout) covers the whole streamed answer.
    #[must_use]
    pub fn stream_tokens(mut self, stream_tokens: bool) -> Self {
        self.stream_tokens = stream_tokens;
        self
    }

    /// The base URL requests go to (without a trailing `/`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn endpoint(&self) -> String {
        format!("{}/chat/completions", self.base_url)
    }

    /// One attempt: send, classify the answer; with `delta`, read it as a stream.
    async fn attempt(
        &self,
        body: &Value,
        delta: Option<Delta<'_>>,
    ) -> Result<LlmResponse, LlmError> {
        let url = self.endpoint();
        let mut request = self.client.post(&url).timeout(self.timeout).json(body);
        // The LLM step's span (feature `otel`): the server may join the run's trace.
        if let Some(traceparent) = crate::telemetry::current_traceparent() {
            request = request.header(crate::telemetry::TRACEPARENT, traceparent);
        }
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.transport_error(&url, e))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let streamed = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if let Some(delta) = delta
            && status.is_success()
            && streamed
        {
            return self.read_stream(response, &url, delta).await;
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(&url, e))?;
        if !status.is_success() {
            return Err(status_error(status.as_u16(), &bytes, retry_after, &url));
        }
        parse_response(&bytes)
    }

    /// A streamed answer, its text handed to `delta` piece by piece, put back together.
    async fn read_stream(
        &self,
        response: reqwest::Response,
        url: &str,
        delta: Delta<'_>,
    ) -> Result<LlmResponse, LlmError> {
        use eventsource_stream::{EventStreamError, Eventsource};
        use futures::StreamExt;

        let bytes = futures::stream::unfold(response, |mut response| async move {
            match response.chunk().await {
                Ok(Some(bytes)) => Some((Ok(bytes), response)),
                Ok(None) => None,
                Err(error) => Some((Err(error), response)),
            }
        });
        let mut events = std::pin::pin!(bytes.eventsource());
        let mut reply = Streamed::default();
        while let Some(event) = events.next().await {
            let event = event.map_err(|error| match error {
                EventStreamError::Transport(error) => self.transport_error(url, error),
                other => invalid_stream(&other.to_string()),
            })?;
            let data = event.data.trim();
            if data == "[DONE]" {
                reply.done = true;
                break;
            }
            if data.is_empty() {
                continue;
            }
            let chunk: Value = serde_json::from_str(data)
                .map_err(|e| invalid_stream(&format!("a chunk is not JSON ({e}): {data}")))?;
            if chunk.get("error").is_some() {
                let message = error_message(data.as_bytes()).unwrap_or_else(|| data.to_owned());
                return Err(LlmError::new(
                    LlmErrorKind::Server,
                    format!("{url} failed while streaming its answer: {message}"),
                ));
            }
            reply.add(&chunk, delta);
        }
        if !reply.done && reply.finish_reason.is_none() {
            return Err(LlmError::new(
                LlmErrorKind::Transport,
                format!("{url} ended its streamed answer before the reply was complete"),
            ));
        }
        let completion = reply.completion();
        parse_response(completion.to_string().as_bytes())
    }

    fn transport_error(&self, url: &str, error: reqwest::Error) -> LlmError {
        let error = error.without_url();
        let detail = error_chain(&error);
        if error.is_builder() {
            LlmError::new(
                LlmErrorKind::BadRequest,
                format!(
                    "cannot send a request to `{url}` ({detail}); check the base URL \
                     (OPENAI_BASE_URL or `OpenAiProvider::new`)"
                ),
            )
        } else if url.starts_with("https:") && detail.contains("scheme is not http") {
            let mut error = LlmError::new(
                LlmErrorKind::Transport,
                format!(
                    "could not reach {url}: {detail}; this build has no TLS support, so \
                     only http:// base URLs work: enable reprise's `tls` feature to call \
                     https:// APIs"
                ),
            );
            // Retrying cannot help.
            error.retryable = false;
            error
        } else if error.is_timeout() {
            LlmError::new(
                LlmErrorKind::Timeout,
                format!(
                    "no answer from {url} within {:?} ({detail}); raise it with \
                     `OpenAiProvider::timeout`",
                    self.timeout
                ),
            )
        } else {
            LlmError::new(
                LlmErrorKind::Transport,
                format!("could not reach {url}: {detail}"),
            )
        }
    }

    /// The wait before retry number `retry` (0-based) after `error`.
    fn wait_before(&self, retry: u32, error: &LlmError) -> Duration {
        let policy = crate::RetryPolicy::exponential(BACKOFF_BASE).max_delay(self.max_retry_wait);
        error
            .retry_after
            .unwrap_or_else(|| policy.delay(retry + 1))
            .min(self.max_retry_wait)
    }
}

#[async_trait]
impl LlmProvider for OpenAiProvider {
    async fn complete(&self, request: LlmRequest) -> Result<LlmResponse, LlmError> {
        self.complete_with(request, None).await
    }

    async fn complete_streaming(
        &self,
        request: LlmRequest,
        delta: &(dyn for<'s> Fn(&'s str) + Send + Sync),
    ) -> Result<LlmResponse, LlmError> {
        use std::sync::atomic::Ordering;
        if !self.stream_tokens || self.stream_refused.load(Ordering::Relaxed) {
            return self.complete_with(request, None).await;
        }
        match self.complete_with(request.clone(), Some(delta)).await {
            // A server that does not take `stream`/`stream_options` answers 4xx: ask it
            // plainly rather than fail a step because someone watches its run. Only when the
            // plain request then succeeds was streaming the problem: stop streaming from
            // now on. (A 400 of the request itself, such as a prompt over the context
            // window, fails plainly too and leaves streaming on.)
            Err(error)
                if error.kind == LlmErrorKind::BadRequest && error.message.contains("(HTTP ") =>
            {
                let plain = self.complete_with(request, None).await;
                if plain.is_ok() {
                    tracing::warn!(
                        base_url = %self.base_url,
                        error = %error.message,
                        "the LLM server refused a streaming request and took it plainly; \
                         asking without streaming from now on \
                         (`OpenAiProvider::stream_tokens(false)` skips the attempt)"
                    );
                    self.stream_refused.store(true, Ordering::Relaxed);
                }
                plain
            }
            other => other,
        }
    }
}

impl OpenAiProvider {
    /// Sends `request` (streamed when `delta` is given), retrying transient failures.
    async fn complete_with(
        &self,
        request: LlmRequest,
        delta: Option<Delta<'_>>,
    ) -> Result<LlmResponse, LlmError> {
        let mut body = request_body(&request);
        if delta.is_some() {
            body["stream"] = json!(true);
            body["stream_options"] = json!({ "include_usage": true });
        }
        let mut retry = 0;
        loop {
            match self.attempt(&body, delta).await {
                Ok(response) => return Ok(response),
                Err(error) if error.retryable && retry < self.max_retries => {
                    let wait = self.wait_before(retry, &error);
                    tracing::warn!(
                        model = %request.model,
                        kind = ?error.kind,
                        retry = retry + 1,
                        max_retries = self.max_retries,
                        wait_ms = wait.as_millis() as u64,
                        "LLM call failed, retrying: {}",
                        error.message
                    );
                    tokio::time::sleep(wait).await;
                    retry += 1;
                }
                Err(mut error) => {
                    if retry > 0 {
                        error.message = format!(
                            "{} (after {retry} {})",
                            error.message,
                            if retry == 1 { "retry" } else { "retries" }
                        );
                    }
                    return Err(error);
                }
            }
        }
    }
}

/// The error for a streamed answer that cannot be understood.
fn invalid_stream(why: &str) -> LlmError {
    LlmError::new(
        LlmErrorKind::InvalidResponse,
        format!("the streamed chat completions answer could not be understood: {why}"),
    )
}

/// A streamed reply so far: the chunks' pieces, added up.
#[derive(Debug, Default)]
struct Streamed {
    content: Option<String>,
    refusal: Option<String>,
    /// By the chunks' `index`: id, name, arguments text.
    tool_calls: BTreeMap<u64, (Option<String>, String, String)>,
    finish_reason: Option<String>,
    usage: Option<Value>,
    model: Option<String>,
    /// `data: [DONE]` arrived.
    done: bool,
}

impl Streamed {
    /// Adds one `chat.completion.chunk` (only its first choice: requests ask for one).
    fn add(&mut self, chunk: &Value, delta: Delta<'_>) {
        if let Some(model) = chunk.get("model").and_then(Value::as_str) {
            self.model = Some(model.to_owned());
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage.clone());
        }
        let Some(choice) = chunk
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|choices| {
                choices
                    .iter()
                    .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
            })
        else {
            return;
        };
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = Some(reason.to_owned());
        }
        let Some(piece) = choice.get("delta") else {
            return;
        };
        for (field, text) in [
            ("content", &mut self.content),
            ("refusal", &mut self.refusal),
        ] {
            if let Some(part) = piece.get(field).and_then(Value::as_str) {
                text.get_or_insert_with(String::new).push_str(part);
                if !part.is_empty() {
                    delta(part);
                }
            }
        }
        for call in piece
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            let entry = self.tool_calls.entry(index).or_default();
            if let Some(id) = call.get("id").and_then(Value::as_str) {
                entry.0 = Some(id.to_owned());
            }
            let function = call.get("function");
            if let Some(name) = function.and_then(|f| f.get("name")).and_then(Value::as_str) {
                entry.1.push_str(name);
            }
            if let Some(arguments) = function
                .and_then(|f| f.get("arguments"))
                .and_then(Value::as_str)
            {
                entry.2.push_str(arguments);
            }
        }
    }

    /// The reply as the non-streamed answer would have been, for [`parse_response`].
    fn completion(self) -> Value {
        let mut message = json!({ "role": "assistant", "content": self.content });
        if let Some(refusal) = self.refusal {
            message["refusal"] = json!(refusal);
        }
        if !self.tool_calls.is_empty() {
            message["tool_calls"] = self
                .tool_calls
                .into_values()
                .map(|(id, name, arguments)| {
                    json!({
                        "id": id,
                        "type": "function",
                        "function": { "name": name, "arguments": arguments },
                    })
                })
                .collect();
        }
        json!({
            "choices": [{ "message": message, "finish_reason": self.finish_reason }],
            "usage": self.usage,
            "model": self.model,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Request

/// The chat completions request body for `request`.
fn request_body(request: &LlmRequest) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), Value::String(request.model.clone()));
    body.insert(
        "messages".into(),
        Value::Array(request.messages.iter().map(message_json).collect()),
    );
    if let Some(temperature) = request.temperature {
        body.insert("temperature".into(), json!(temperature));
    }
    if let Some(max_tokens) = request.max_tokens {
        body.insert("max_tokens".into(), json!(max_tokens));
    }
    if !request.tools.is_empty() {
        let tools = request
            .tools
            .iter()
            .map(|tool| {
                json!({
                    "type": "function",
                    "function": {
                        "name": tool.name,
                        "description": tool.description,
                        "parameters": tool.parameters,
                    }
                })
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
        // OpenAI rejects `tool_choice` without `tools`, so it is only sent with them.
        if let Some(choice) = &request.tool_choice {
            let choice = match choice {
                ToolChoice::Auto => json!("auto"),
                ToolChoice::None => json!("none"),
                ToolChoice::Required => json!("required"),
                ToolChoice::Tool(name) => {
                    json!({ "type": "function", "function": { "name": name } })
                }
            };
            body.insert("tool_choice".into(), choice);
        }
    }
    if let Some(schema) = &request.response_schema {
        body.insert(
            "response_format".into(),
            json!({
                "type": "json_schema",
                "json_schema": {
                    "name": schema_name(&schema.name),
                    "schema": schema.schema,
                    "strict": false,
                }
            }),
        );
    }
    Value::Object(body)
}

/// One message as OpenAI expects it.
fn message_json(message: &ChatMessage) -> Value {
    let role = match message.role.unwrap_or(Role::User) {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    };
    let mut out = Map::new();
    out.insert("role".into(), Value::String(role.into()));
    let content = match &message.content {
        Some(text) => Value::String(text.clone()),
        // An assistant message that only calls tools has `content: null`; the others
        // must carry text.
        None if role == "assistant" && !message.tool_calls.is_empty() => Value::Null,
        None => Value::String(String::new()),
    };
    out.insert("content".into(), content);
    if !message.tool_calls.is_empty() {
        let calls = message
            .tool_calls
            .iter()
            .map(|call| {
                json!({
                    "id": call.id,
                    "type": "function",
                    "function": {
                        "name": call.name,
                        "arguments": arguments_text(&call.arguments),
                    }
                })
            })
            .collect();
        out.insert("tool_calls".into(), Value::Array(calls));
    }
    if let Some(id) = &message.tool_call_id {
        out.insert("tool_call_id".into(), Value::String(id.clone()));
    }
    Value::Object(out)
}

/// A tool call's arguments as the JSON string OpenAI carries; a `Value::String` is the
/// non-JSON text the model wrote, sent back as it was.
fn arguments_text(arguments: &Value) -> String {
    match arguments {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// OpenAI wants schema names matching `^[a-zA-Z0-9_-]{1,64}$`; Rust type names such as
/// `Vec<Order>` are mapped onto that.
fn schema_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if cleaned.is_empty() {
        "response".to_owned()
    } else {
        cleaned
    }
}

// ---------------------------------------------------------------------------------------
// Response

#[derive(Deserialize)]
struct Completion {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<CompletionUsage>,
    #[serde(default)]
    model: Option<String>,
}

#[derive(Deserialize)]
struct Choice {
    message: CompletionMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct CompletionMessage {
    /// A string, `null`, or (some servers) an array of `{type: "text", text}` parts.
    #[serde(default)]
    content: Value,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<CompletionToolCall>>,
}

#[derive(Deserialize)]
struct CompletionToolCall {
    #[serde(default)]
    id: Option<String>,
    function: CompletionFunction,
}

#[derive(Deserialize)]
struct CompletionFunction {
    name: String,
    /// A JSON string per the API; some servers send the object itself.
    #[serde(default)]
    arguments: Value,
}

#[derive(Deserialize)]
struct CompletionUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    total_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<PromptTokensDetails>,
}

#[derive(Deserialize)]
struct PromptTokensDetails {
    #[serde(default)]
    cached_tokens: u64,
}

/// A 2xx body as an [`LlmResponse`].
fn parse_response(bytes: &[u8]) -> Result<LlmResponse, LlmError> {
    let invalid = |why: String| {
        LlmError::new(
            LlmErrorKind::InvalidResponse,
            format!(
                "the chat completions answer could not be understood: {why}; body: {}",
                excerpt(bytes)
            ),
        )
    };
    let completion: Completion =
        serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
    let Some(choice) = completion.choices.into_iter().next() else {
        if let Some(message) = error_message(bytes) {
            return Err(invalid(format!(
                "the provider reported an error: {message}"
            )));
        }
        return Err(invalid("it has no choices".to_owned()));
    };
    let mut content = match choice.message.content {
        Value::String(text) => Some(text),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(|part| part.get("text").and_then(Value::as_str))
                .collect::<String>(),
        ),
        _ => None,
    };
    if content.is_none() {
        content = choice.message.refusal;
    }
    let tool_calls = choice
        .message
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(index, call)| ToolCall {
            id: call
                .id
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| format!("call_{index}")),
            name: call.function.name,
            arguments: match call.function.arguments {
                Value::String(text) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
                Value::Null => Value::Object(Map::new()),
                other => other,
            },
        })
        .collect();
    let usage = completion
        .usage
        .map(|u| Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u
                .total_tokens
                .unwrap_or(u.prompt_tokens + u.completion_tokens),
            cached_tokens: u.prompt_tokens_details.map_or(0, |d| d.cached_tokens),
        })
        .unwrap_or_default();
    Ok(LlmResponse {
        message: ChatMessage {
            role: Some(Role::Assistant),
            content,
            tool_calls,
            tool_call_id: None,
        },
        usage,
        model: completion.model.unwrap_or_default(),
        finish_reason: choice.finish_reason,
    })
}

/// The error for a non-2xx answer.
fn status_error(status: u16, body: &[u8], retry_after: Option<Duration>, url: &str) -> LlmError {
    let detail = error_message(body).unwrap_or_else(|| {
        if body.is_empty() {
            "no error message".to_owned()
        } else {
            excerpt(body)
        }
    });
    let (kind, message) = match status {
        429 => (
            LlmErrorKind::RateLimited,
            format!("rate limited by {url} (HTTP 429): {detail}"),
        ),
        401 | 403 => (
            LlmErrorKind::Auth,
            format!(
                "{url} refused the credentials (HTTP {status}): {detail}; check OPENAI_API_KEY \
                 (or the key given to `OpenAiProvider::new`)"
            ),
        ),
        408 => (
            LlmErrorKind::Timeout,
            format!("{url} timed out the request (HTTP 408): {detail}"),
        ),
        500..=599 => (
            LlmErrorKind::Server,
            format!("{url} failed (HTTP {status}): {detail}"),
        ),
        _ => (
            LlmErrorKind::BadRequest,
            format!("{url} rejected the request (HTTP {status}): {detail}"),
        ),
    };
    let mut error = LlmError::new(kind, message);
    error.retry_after = retry_after;
    error
}

/// The provider's error message in a body: `{"error": {"message"}}` (OpenAI, vLLM),
/// `{"error": "…"}` (Ollama), `{"message"}` or `{"detail"}`.
fn error_message(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let text = |v: &Value| v.as_str().map(str::to_owned);
    match value.get("error") {
        Some(Value::Object(error)) => error.get("message").and_then(text),
        Some(Value::String(message)) => Some(message.clone()),
        _ => None,
    }
    .or_else(|| value.get("message").and_then(text))
    .or_else(|| value.get("detail").and_then(text))
}

/// How long a `Retry-After` (seconds or an HTTP date) or `retry-after-ms` asks to wait.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = header("retry-after")?;
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0)
            .then(|| Duration::from_secs_f64(seconds.min(1e9)));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = date.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// An error and its sources, e.g. `error sending request: connection refused`.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The start of a body, for error messages.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(BODY_EXCERPT) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_parses_seconds_dates_and_ms() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("retry-after", "2".parse().expect("header"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert("retry-after-ms", "150".parse().expect("header"));
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(150)));
        headers.remove("retry-after-ms");
        headers.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().expect("header"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        let later = (chrono::Utc::now() + chrono::TimeDelta::seconds(30)).to_rfc2822();
        headers.insert("retry-after", later.parse().expect("header"));
        let wait = retry_after(&headers).expect("a wait");
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30));
        headers.insert("retry-after", "soon".parse().expect("header"));
        assert_eq!(retry_after(&headers), None);
    }

    #[tokio::test]
    async fn https_without_tls_or_a_bad_url_fail_clearly() {
        // 127.0.0.1 only: with TLS compiled in this is a refused connection instead.
        let provider = OpenAiProvider::new("https://127.0.0.1:9/v1", None).max_retries(0);
        let error = provider
            .complete(LlmRequest::default())
            .await
            .expect_err("nothing listens there");
        assert_eq!(error.kind, LlmErrorKind::Transport, "{}", error.message);
        if error.message.contains("scheme is not http") {
            assert!(
                error.message.contains("no TLS support"),
                "{}",
                error.message
            );
        }

        let provider = OpenAiProvider::new("not a url", None).max_retries(0);
        let error = provider
            .complete(LlmRequest::default())
            .await
            .expect_err("not a URL");
        assert_eq!(error.kind, LlmErrorKind::BadRequest, "{}", error.message);
        assert!(
            error.message.contains("check the base URL"),
            "{}",
            error.message
        );
    }

    #[test]
    fn schema_names_are_made_acceptable() {
        assert_eq!(schema_name("Vec<Order>"), "Vec_Order_");
        assert_eq!(schema_name(""), "response");
        assert_eq!(schema_name(&"x".repeat(100)).len(), 64);
    }
}
