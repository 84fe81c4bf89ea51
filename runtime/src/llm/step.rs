//! `prompt_llm(prompt)` in a workflow body: a recorded LLM step.
//!
//! The call is one step `llm#n` (the site key is `llm`, `llm@2` for a second call site, or
//! a pinned `#[step(id)]`); each request to the model is its own recorded sub-step,
//! `llm#n/attempt#k`, whose output is the model's reply. With `.output::<T>()` the reply
//! must be JSON matching `T`'s schema: a reply that does not parse or validate is
//! answered with the violations and the model is asked again, up to `.reasks(n)` times
//! (default 2); then the step fails with a `llm_output` error quoting the last reply.
//! A replay answers every recorded request from the log: a model is never asked twice
//! for a recorded reply.

use std::future::IntoFuture;
use std::marker::PhantomData;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{ChatMessage, LlmRequest, LlmResponse, ResponseSchema, Usage};
use crate::ActionError;
use crate::ctx::Ctx;
use crate::ctx::record::{JsonOutput, JsonStep, StepUsage, json_step};
use crate::schema::validator_for;
use crate::step::{Site, StepData};

/// The error kind of an LLM reply that never matched the requested output type.
pub const LLM_OUTPUT: &str = "llm_output";
/// The error kind of a failed request to a model (after the provider's own retries).
pub const LLM_ERROR: &str = "llm";

/// A prompt to a chat model, built with `prompt_llm(..)` and awaited as a recorded step.
/// `T` is the reply's type: `String` (plain text, the default) or the `T` of
/// [`LlmCall::output`].
#[must_use = "an LLM call does nothing until it is awaited"]
pub struct LlmCall<T = String> {
    ctx: Option<Ctx>,
    id: String,
    prompt: String,
    system: Option<String>,
    model: Option<String>,
    temperature: Option<f32>,
    max_tokens: Option<u32>,
    reasks: u32,
    _output: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for LlmCall<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmCall")
            .field("id", &self.id)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

/// `prompt_llm(prompt)`: a prompt to a chat model. Inside a `#[workflow]` body the macro
/// binds it to the run as a recorded step (see the module docs); awaited anywhere else it
/// fails, since there is no run to record it in.
///
/// ```ignore
/// let summary = prompt_llm(format!("Summarize: {text}"))
///     .model("openai/gpt-4o-mini")
///     .system("You write one-line summaries.")
///     .await?;
/// let label: Label = prompt_llm(ticket).model("openai/gpt-4o-mini").output::<Label>().await?;
/// ```
pub fn prompt_llm(prompt: impl Into<String>) -> LlmCall<String> {
    LlmCall {
        ctx: None,
        id: String::new(),
        prompt: prompt.into(),
        system: None,
        model: None,
        temperature: None,
        max_tokens: None,
        reasks: 2,
        _output: PhantomData,
    }
}

/// What `#[workflow]` rewrites `prompt_llm(prompt)` into: the call, bound to the run.
pub fn bind_prompt_llm(ctx: &Ctx, site: &'static Site, prompt: impl Into<String>) -> LlmCall {
    let mut call = prompt_llm(prompt);
    call.id = ctx.next_id(&site.key("llm"));
    call.ctx = Some(ctx.clone());
    call
}

impl<T> LlmCall<T> {
    /// The model, as `vendor/model` (`openai/gpt-4o-mini`); default: the engine's default
    /// model (`REPRISE_LLM_MODEL`).
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// A system message before the prompt.
    pub fn system(mut self, system: impl Into<String>) -> Self {
        self.system = Some(system.into());
        self
    }

    /// The sampling temperature.
    pub fn temperature(mut self, temperature: f32) -> Self {
        self.temperature = Some(temperature);
        self
    }

    /// The most tokens to generate.
    pub fn max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = Some(max_tokens);
        self
    }

    /// How many times a reply that does not match the output type is answered with its
    /// violations and asked again (default 2; 0: one request only).
    pub fn reasks(mut self, reasks: u32) -> Self {
        self.reasks = reasks;
        self
    }

    /// Asks for a `U` instead: its JSON Schema is sent as the response format, and the
    /// reply is parsed and validated against it (see the module docs for re-asking).
    pub fn output<U: StepData>(self) -> LlmCall<U> {
        LlmCall {
            ctx: self.ctx,
            id: self.id,
            prompt: self.prompt,
            system: self.system,
            model: self.model,
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            reasks: self.reasks,
            _output: PhantomData,
        }
    }
}

/// How a reply is turned into a call's output: plain text, or JSON matching a schema (a
/// Rust type's, or one given at run time by a workflow file's `output_schema`).
pub(crate) struct ReplyFormat {
    /// The JSON Schema response format to request; `None`: plain text.
    schema: Option<ResponseSchema>,
    /// What the reply must match; `None`: plain text.
    validator: Option<std::sync::Arc<crate::schema::Validator>>,
    /// What the output is, for messages (`my_app::Label`, `the output schema`).
    expected: String,
}

impl ReplyFormat {
    /// The format of a `T` reply (`String`: plain text).
    fn of<T: StepData>() -> Result<ReplyFormat, ActionError> {
        let expected = std::any::type_name::<T>().to_owned();
        if is_text::<T>() {
            return Ok(ReplyFormat {
                schema: None,
                validator: None,
                expected,
            });
        }
        let name = std::any::type_name::<T>()
            .rsplit("::")
            .next()
            .unwrap_or("output")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect::<String>();
        let validator = validator_for::<T>()
            .map_err(|e| ActionError::new(crate::error::kinds::SCHEMA, e.to_string(), false))?;
        Ok(ReplyFormat {
            schema: Some(ResponseSchema {
                name: if name.is_empty() {
                    "output".into()
                } else {
                    name
                },
                schema: crate::schema::schema_of::<T>(),
            }),
            validator: Some(validator),
            expected,
        })
    }

    /// A JSON reply matching `schema` (named `output` to the provider).
    ///
    /// # Errors
    /// Kind `schema` when `schema` is not a valid JSON Schema.
    pub(crate) fn json(schema: Value) -> Result<ReplyFormat, ActionError> {
        let validator = crate::schema::Validator::compile(schema.clone(), "the output schema")
            .map_err(|e| ActionError::new(crate::error::kinds::SCHEMA, e.to_string(), false))?;
        Ok(ReplyFormat {
            schema: Some(ResponseSchema {
                name: "output".into(),
                schema,
            }),
            validator: Some(std::sync::Arc::new(validator)),
            expected: "the output schema".into(),
        })
    }

    /// Plain text.
    pub(crate) fn text() -> ReplyFormat {
        ReplyFormat {
            schema: None,
            validator: None,
            expected: "text".into(),
        }
    }

    /// The output, or what is wrong with the reply (told to the model when re-asking).
    fn parse(&self, reply: &LlmResponse) -> Result<Value, String> {
        let text = reply.message.content.clone().unwrap_or_default();
        let Some(validator) = &self.validator else {
            return Ok(Value::String(text));
        };
        let value: Value = serde_json::from_str(strip_fences(&text))
            .map_err(|e| format!("the reply is not JSON ({e})"))?;
        validator.validate(&value).map_err(|violation| {
            violation
                .violations
                .iter()
                .map(|v| {
                    let at = if v.pointer.is_empty() {
                        "/"
                    } else {
                        &v.pointer
                    };
                    format!("at `{at}`: {}", v.message)
                })
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        Ok(value)
    }
}

fn is_text<T: 'static>() -> bool {
    std::any::TypeId::of::<T>() == std::any::TypeId::of::<String>()
}

/// Models often wrap JSON in a Markdown code fence; accept it.
fn strip_fences(text: &str) -> &str {
    let trimmed = text.trim();
    let Some(inner) = trimmed.strip_prefix("```") else {
        return trimmed;
    };
    let inner = inner.strip_prefix("json").unwrap_or(inner);
    inner.strip_suffix("```").unwrap_or(inner).trim()
}

impl<T: StepData + DeserializeOwned> LlmCall<T> {
    async fn execute(self) -> Result<T, ActionError> {
        let Some(ctx) = self.ctx.clone() else {
            return Err(ActionError::new(
                LLM_ERROR,
                "prompt_llm(..) was awaited outside a #[workflow] body: there is no run to \
                 record it in; call it inside a workflow",
                false,
            ));
        };
        let format = ReplyFormat::of::<T>()?;
        let prompt = LlmPrompt {
            prompt: self.prompt,
            system: self.system,
            model: self.model,
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            reasks: self.reasks,
            policy: RequestPolicy::default(),
        };
        let output = run_prompt(&ctx, &self.id, prompt, &format).await?;
        serde_json::from_value(output).map_err(|e| {
            ActionError::new(
                crate::error::kinds::SERDE,
                format!("recorded output of LLM step `{}`: {e}", self.id),
                false,
            )
        })
    }
}

/// The retries and per-request time limit of one model request, on top of the provider's
/// own retries.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RequestPolicy {
    /// Attempts of a request that fails with a retryable error, and the delays between.
    pub(crate) retry: crate::RetryPolicy,
    /// The longest one request may take (then a retryable `timeout` error); `None`: no
    /// limit.
    pub(crate) timeout: Option<std::time::Duration>,
}

impl Default for RequestPolicy {
    /// [`STEP_RETRY`], no time limit.
    fn default() -> Self {
        RequestPolicy {
            retry: STEP_RETRY,
            timeout: None,
        }
    }
}

/// An LLM step's parts, whatever its output type.
pub(crate) struct LlmPrompt {
    /// The user message.
    pub(crate) prompt: String,
    /// A system message before it.
    pub(crate) system: Option<String>,
    /// `vendor/model`; `None`: the engine's default.
    pub(crate) model: Option<String>,
    /// The sampling temperature.
    pub(crate) temperature: Option<f32>,
    /// The most tokens to generate.
    pub(crate) max_tokens: Option<u32>,
    /// How often a reply that does not match the format is asked again.
    pub(crate) reasks: u32,
    /// Each request's retries and time limit.
    pub(crate) policy: RequestPolicy,
}

/// The LLM step `id` of the run in `ctx` (a scope: each request is the sub-step
/// `<id>/attempt#k`), its reply read as `format` says: the adapter `prompt_llm(..)` and a
/// workflow file's `prompt:` step share. Returns the output as JSON (a string for text).
///
/// # Errors
/// [`LLM_OUTPUT`] when no reply matched the format after the re-asks; [`LLM_ERROR`] when
/// a request failed; the recorder's errors.
pub(crate) async fn run_prompt(
    ctx: &Ctx,
    id: &str,
    prompt: LlmPrompt,
    format: &ReplyFormat,
) -> Result<Value, ActionError> {
    let model = crate::llm::LlmSettings::of(&ctx.run.env)
        .model_for(prompt.model.clone(), &format!("LLM step `{id}`"))?;
    let mut messages = Vec::new();
    if let Some(system) = &prompt.system {
        messages.push(ChatMessage::system(system.clone()));
    }
    messages.push(ChatMessage::user(prompt.prompt.clone()));
    let request = LlmRequest {
        model,
        messages,
        temperature: prompt.temperature,
        max_tokens: prompt.max_tokens,
        tools: Vec::new(),
        tool_choice: None,
        response_schema: format.schema.clone(),
    };
    let input = serde_json::to_value(&request).unwrap_or(Value::Null);
    let step = JsonStep {
        id,
        callee: "llm",
        kind: "llm",
        input: &input,
        scope: true,
    };
    json_step(ctx, step, || {
        ask_until_valid(ctx, id, request, prompt.reasks, format, prompt.policy)
    })
    .await
}

/// Asks the model (each request a recorded sub-step) until a reply parses as `format`
/// says, at most `1 + reasks` times.
async fn ask_until_valid(
    ctx: &Ctx,
    id: &str,
    mut request: LlmRequest,
    reasks: u32,
    format: &ReplyFormat,
    policy: RequestPolicy,
) -> Result<JsonOutput, ActionError> {
    let inner = ctx.child(id);
    let mut usage = Usage::default();
    let mut last_problem = String::new();
    for attempt in 0..=reasks {
        let reply = complete_with(&inner, &inner.next_id("attempt"), &request, policy).await?;
        usage += reply.usage;
        match format.parse(&reply) {
            Ok(output) => {
                return Ok(JsonOutput {
                    output,
                    usage: Some(StepUsage::Total(usage)),
                });
            }
            Err(problem) => {
                let text = reply.message.content.clone().unwrap_or_default();
                last_problem = format!("{problem}; the reply was: {}", quote(&text));
                if attempt < reasks {
                    request.messages.push(reply.message);
                    request.messages.push(ChatMessage::user(format!(
                        "Your reply does not match the required JSON Schema: {problem}. \
                         Reply again with only the corrected JSON."
                    )));
                }
            }
        }
    }
    Err(ActionError::new(
        LLM_OUTPUT,
        format!(
            "LLM step `{id}`: no reply matched `{}` after {} requests: {last_problem}",
            format.expected,
            reasks + 1
        ),
        false,
    ))
}

fn quote(text: &str) -> String {
    let mut shown: String = text.chars().take(500).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    format!("{shown:?}")
}

/// One request to the model as the recorded step `id` (callee `llm`): its output is the
/// reply, with its token usage also on the event.
pub(crate) async fn complete(
    ctx: &Ctx,
    id: &str,
    request: &LlmRequest,
) -> Result<LlmResponse, ActionError> {
    complete_with(ctx, id, request, RequestPolicy::default()).await
}

/// [`complete`] with `policy`'s retries and per-request time limit.
pub(crate) async fn complete_with(
    ctx: &Ctx,
    id: &str,
    request: &LlmRequest,
    policy: RequestPolicy,
) -> Result<LlmResponse, ActionError> {
    let input = serde_json::to_value(request).unwrap_or(Value::Null);
    let step = JsonStep {
        id,
        callee: "llm",
        kind: "llm",
        input: &input,
        scope: false,
    };
    let env = ctx.run.env.clone();
    let run_id = ctx.run.run_id.clone();
    let run = ctx.run.clone();
    let output = json_step(ctx, step, || async move {
        let (provider, model) = crate::llm::LlmSettings::of(&env)
            .router()
            .route(&request.model)
            .map_err(llm_error)?;
        let mut routed = request.clone();
        routed.model = model;
        // Providers retry transient failures themselves; a retryable error that still
        // comes back is tried again here, twice, after 1 s and 2 s (engine clock).
        let mut attempt = 1;
        let reply = loop {
            // Each request takes a permit of the run's queue's step rate limit, if any.
            crate::ctx::step_rate::take_permit(&run, id).await?;
            // While someone watches the run's stream here, its pieces are shown as they
            // come (not recorded: the step records the whole reply below).
            let asked = async {
                if env.live.is_watched(&run_id) {
                    let publish = |text: &str| {
                        env.live.publish(
                            &run_id,
                            crate::live::Live::Token {
                                step: id.to_owned(),
                                text: text.to_owned(),
                            },
                        );
                    };
                    provider.complete_streaming(routed.clone(), &publish).await
                } else {
                    provider.complete(routed.clone()).await
                }
            };
            let asked = match policy.timeout {
                None => asked.await,
                Some(limit) => tokio::time::timeout(limit, asked)
                    .await
                    .unwrap_or_else(|_| {
                        Err(super::LlmError::new(
                            super::LlmErrorKind::Timeout,
                            format!(
                                "the request took longer than the step's timeout of {}",
                                humantime::format_duration(limit)
                            ),
                        ))
                    }),
            };
            match asked {
                Ok(reply) => break reply,
                Err(error) if error.retryable && policy.retry.allows_retry_after(attempt) => {
                    let delay = error.retry_after.unwrap_or(policy.retry.delay(attempt));
                    tracing::warn!(step = id, %error, "LLM request failed; trying again");
                    env.clock.sleep(delay).await;
                    attempt += 1;
                }
                Err(error) => return Err(llm_error(error)),
            }
        };
        let cost = env.prices.cost(&request.model, &reply.usage);
        env.metrics.llm_request(&request.model, &reply.usage, cost);
        Ok(JsonOutput {
            usage: Some(StepUsage::Request(reply.usage)),
            output: serde_json::to_value(&reply).unwrap_or(Value::Null),
        })
    })
    .await?;
    serde_json::from_value(output).map_err(|e| {
        ActionError::new(
            crate::error::kinds::SERDE,
            format!("recorded reply of LLM step `{id}`: {e}"),
            false,
        )
    })
}

/// Retries of one model request by an LLM step, on top of the provider's own: 3 attempts,
/// 1 s then 2 s apart (engine clock), unless the provider says when to retry.
const STEP_RETRY: crate::RetryPolicy =
    crate::RetryPolicy::exponential(std::time::Duration::from_secs(1)).max_attempts(3);

fn llm_error(error: super::LlmError) -> ActionError {
    ActionError::new(LLM_ERROR, error.message, error.retryable)
}

impl<T: StepData + DeserializeOwned> IntoFuture for LlmCall<T> {
    type Output = Result<T, ActionError>;
    type IntoFuture = BoxFuture<'static, Result<T, ActionError>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.execute())
    }
}
