//! AI steps (DESIGN "AI steps"): the provider-neutral chat vocabulary, the
//! [`LlmProvider`] trait, routing of `vendor/model` ids to providers, and the recorded
//! steps built on them: [`prompt_llm`] and [`Agent`].
//!
//! The shipped provider, [`OpenAiProvider`], speaks the OpenAI-compatible chat
//! completions API over HTTP (OpenAI, vLLM, llama.cpp, Ollama, …). Tests use
//! `reprise_testkit::llm::FakeLlm`, or the real provider against
//! `reprise_testkit::llm::FakeOpenAiServer`.

pub(crate) mod agent;
mod openai;
mod router;
pub(crate) mod step;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::usage::Usage;
pub use agent::{Agent, AgentPrompt, AgentReply, ToolCallRecord, bind_agent_prompt};
pub use openai::OpenAiProvider;
pub use router::LlmRouter;
pub(crate) use router::LlmSettings;
pub use step::{LLM_ERROR, LLM_OUTPUT, LlmCall, bind_prompt_llm, prompt_llm};

/// Who wrote a chat message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The user (or the workflow speaking for them).
    User,
    /// The model.
    Assistant,
    /// The result of a tool call, answering the assistant message that asked for it.
    Tool,
}

/// A tool call the model asked for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The provider's id of the call; the tool message answering it carries it back.
    pub id: String,
    /// The tool's name (an action's or workflow's slug).
    pub name: String,
    /// The arguments: the JSON object the model wrote, or, when it wrote something that is
    /// not JSON, that text as a JSON string (answered to the model as an error).
    pub arguments: Value,
}

/// One message of a conversation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: Option<Role>,
    /// Its text (`None` for an assistant message that only calls tools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// For assistant messages: the tools it calls.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For tool messages: the id of the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    /// A system message.
    pub fn system(text: impl Into<String>) -> Self {
        Self::text(Role::System, text)
    }

    /// A user message.
    pub fn user(text: impl Into<String>) -> Self {
        Self::text(Role::User, text)
    }

    /// An assistant message with text only.
    pub fn assistant(text: impl Into<String>) -> Self {
        Self::text(Role::Assistant, text)
    }

    /// A tool result answering call `call_id`.
    pub fn tool(call_id: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: Some(Role::Tool),
            content: Some(content.into()),
            tool_calls: Vec::new(),
            tool_call_id: Some(call_id.into()),
        }
    }

    fn text(role: Role, text: impl Into<String>) -> Self {
        ChatMessage {
            role: Some(role),
            content: Some(text.into()),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

/// A tool offered to the model: a name, what it does, and its arguments' JSON Schema.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// The name the model calls it by (the step's slug).
    pub name: String,
    /// What it does (the step's doc comment).
    pub description: String,
    /// The JSON Schema of its arguments (the step's input schema).
    pub parameters: Value,
}

/// Whether and which tools the model may call.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ToolChoice {
    /// The model decides (the default).
    #[default]
    Auto,
    /// No tool calls.
    None,
    /// At least one tool call.
    Required,
    /// This tool.
    Tool(String),
}

/// A JSON-schema response format: the reply must be JSON matching `schema`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResponseSchema {
    /// A name for the schema (providers require one), e.g. the Rust type's name.
    pub name: String,
    /// The JSON Schema (from schemars).
    pub schema: Value,
}

/// One request to a chat model.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LlmRequest {
    /// The model, without the vendor prefix the router used (`gpt-4o-mini` for
    /// `openai/gpt-4o-mini`).
    pub model: String,
    /// The conversation so far, system message first.
    pub messages: Vec<ChatMessage>,
    /// Sampling temperature, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// The most tokens to generate, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Tools the model may call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolSpec>,
    /// Whether it may call them (`None`: the provider's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// A JSON-schema response format, for structured output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_schema: Option<ResponseSchema>,
}

/// A chat model's reply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LlmResponse {
    /// The assistant message: text, tool calls, or both.
    pub message: ChatMessage,
    /// Tokens used.
    #[serde(default)]
    pub usage: Usage,
    /// The model that answered, as the provider names it.
    #[serde(default)]
    pub model: String,
    /// Why generation stopped (`stop`, `length`, `tool_calls`, …), if the provider says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
}

/// What went wrong calling a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LlmErrorKind {
    /// 429: too many requests.
    RateLimited,
    /// 5xx: the provider failed.
    Server,
    /// 401/403: the key is missing or wrong.
    Auth,
    /// Another 4xx: the request is wrong (unknown model, bad parameters).
    BadRequest,
    /// No answer in time.
    Timeout,
    /// The connection failed.
    Transport,
    /// The answer could not be understood.
    InvalidResponse,
    /// No provider serves the model id.
    NoProvider,
}

/// An error calling a model, with whether trying again may help.
#[derive(Clone, Debug, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[error("{message}")]
pub struct LlmError {
    /// What went wrong.
    pub kind: LlmErrorKind,
    /// For people: what happened and how to fix it.
    pub message: String,
    /// Whether a later attempt may succeed (rate limits, server errors, timeouts).
    pub retryable: bool,
    /// How long the provider asked to wait (`Retry-After`), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<Duration>,
}

impl LlmError {
    /// An error of `kind`; retryable for rate limits, server errors, timeouts and
    /// transport failures.
    pub fn new(kind: LlmErrorKind, message: impl Into<String>) -> Self {
        LlmError {
            kind,
            message: message.into(),
            retryable: matches!(
                kind,
                LlmErrorKind::RateLimited
                    | LlmErrorKind::Server
                    | LlmErrorKind::Timeout
                    | LlmErrorKind::Transport
            ),
            retry_after: None,
        }
    }
}

/// A chat model backend. Implement it to plug in a provider; the engine routes
/// `vendor/model` ids to providers by vendor ([`LlmRouter`]).
///
/// Providers retry transient failures themselves (the shipped one honours
/// `Retry-After`). A retryable error they still return is tried twice more by the LLM step
/// (after 1 s and 2 s, or the error's `retry_after`); any other error, or the third one,
/// is recorded as the step's failure.
#[async_trait]
pub trait LlmProvider: Send + Sync + 'static {
    /// Sends `request` and returns the model's reply.
    ///
    /// # Errors
    /// [`LlmError`] naming what failed and whether a retry may help.
    async fn complete(&self, request: LlmRequest) -> Result<LlmResponse, LlmError>;

    /// [`complete`](Self::complete), handing each piece of the reply's text to `delta` as
    /// it arrives. LLM steps call it instead of `complete` while someone watches the run's
    /// live stream (`GET /runs/{id}/stream` in this process), so the pieces can be shown
    /// as `token` messages; the reply returned is the whole of it, as `complete` would
    /// return it, and is what the step records. Pieces are never recorded.
    ///
    /// The default asks with `complete` and hands over nothing; [`OpenAiProvider`]
    /// requests `stream: true`. A provider that retries a request which failed half-way
    /// hands the new attempt's pieces over from its start.
    ///
    /// # Errors
    /// As [`complete`](Self::complete).
    async fn complete_streaming(
        &self,
        request: LlmRequest,
        delta: &(dyn for<'s> Fn(&'s str) + Send + Sync),
    ) -> Result<LlmResponse, LlmError> {
        let _ = delta;
        self.complete(request).await
    }
}
