//! [`Agent`]: a model with tools, run as a durable tool-calling loop.
//!
//! `agent.prompt(msg)` in a `#[workflow]` body is one step, `<slug>#n`. Inside it, every
//! model turn is a recorded step `<slug>#n/turn#k` and every tool call a recorded step
//! `<slug>#n/<tool-slug>#j` with the tool's own semantics (an action's retries and
//! timeout, a workflow's steps). A crash mid-conversation resumes from the log: recorded
//! turns are not asked again and recorded tool calls do not run again.
//!
//! The loop: ask the model with the conversation and the tools; run the tool calls it
//! asks for and answer each with its result (or its error, e.g. arguments that fail the
//! tool's JSON Schema, which the model can then correct); repeat until the model answers
//! without tool calls, or `max_turns` turns have been taken, after which one last turn is
//! asked without tools so the agent always ends with an answer.

use std::future::IntoFuture;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::step::complete;
use super::{ChatMessage, LlmRequest, ToolCall, ToolChoice, ToolSpec, Usage};
use crate::ActionError;
use crate::ctx::Ctx;
use crate::ctx::record::{JsonOutput, JsonStep, StepUsage, json_step};
use crate::schema::schema_of;
use crate::step::{Site, Step};

/// How a tool call runs: as the recorded step (the id) of the run in the context, with
/// the model's arguments as input.
type ToolFn =
    Arc<dyn Fn(Ctx, String, Value) -> BoxFuture<'static, Result<Value, ActionError>> + Send + Sync>;

/// A tool the agent offers: an action's or workflow's slug, description and input schema,
/// and how to run it as a recorded step.
#[derive(Clone)]
struct Tool {
    spec: ToolSpec,
    call: ToolFn,
}

/// A model with a system prompt and tools, run by `agent.prompt(msg)` in a workflow body
/// as a durable tool-calling loop (see the module docs).
///
/// ```ignore
/// let support = Agent::new("support")
///     .model("openai/gpt-4o-mini")
///     .system("You resolve order problems. Use the tools; refunds need an order id.")
///     .tool(lookup_order)
///     .tool(refund)
///     .max_turns(6);
/// let answer = support.prompt(format!("Ticket: {}", ticket.text)).await?;
/// println!("{} ({} tokens)", answer.text, answer.usage.total_tokens);
/// ```
#[derive(Clone)]
pub struct Agent {
    slug: String,
    system: Option<String>,
    model: Option<String>,
    tools: Arc<Vec<Tool>>,
    max_turns: u32,
    tool_choice: ToolChoice,
    temperature: Option<f32>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("slug", &self.slug)
            .field("model", &self.model)
            .field(
                "tools",
                &self.tools.iter().map(|t| &t.spec.name).collect::<Vec<_>>(),
            )
            .field("max_turns", &self.max_turns)
            .finish_non_exhaustive()
    }
}

/// What an agent's conversation came to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AgentReply {
    /// The model's final answer.
    pub text: String,
    /// The whole conversation, system message first.
    #[schemars(with = "Vec<Value>")]
    pub messages: Vec<ChatMessage>,
    /// Every tool call made, in order.
    pub tool_calls: Vec<ToolCallRecord>,
    /// Model turns taken.
    pub turns: u32,
    /// Tokens used by all turns.
    #[schemars(with = "Value")]
    pub usage: Usage,
}

/// One tool call an agent made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ToolCallRecord {
    /// The tool's slug.
    pub tool: String,
    /// The step that ran it (`support#0/lookup-order#0`), or `None` when its arguments
    /// were refused before it ran.
    pub step: Option<String>,
    /// The arguments the model gave.
    pub arguments: Value,
    /// The tool's output, or `{"error": …}`.
    pub result: Value,
}

impl Agent {
    /// An agent whose steps are named `slug` (`support#0/turn#1`). Defaults: no system
    /// prompt, the engine's default model, no tools, `max_turns` 10, tool choice auto.
    pub fn new(slug: impl Into<String>) -> Self {
        Agent {
            slug: slug.into(),
            system: None,
            model: None,
            tools: Arc::new(Vec::new()),
            max_turns: 10,
            tool_choice: ToolChoice::Auto,
            temperature: None,
        }
    }

    /// The agent's slug.
    pub fn slug(&self) -> &str {
        &self.slug
    }

    /// The system prompt.
    pub fn system(mut self, system: impl Into<String>) -> Self {
        self.system = Some(system.into());
        self
    }

    /// The model, `vendor/model`.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// The sampling temperature.
    pub fn temperature(mut self, temperature: f32) -> Self {
        self.temperature = Some(temperature);
        self
    }

    /// Offers an `#[action]` or `#[workflow]` as a tool: named by its slug, described by
    /// its doc comment, its arguments its input type's JSON Schema.
    pub fn tool<S: Step>(mut self, _step: S) -> Self {
        let tool = Tool {
            spec: ToolSpec {
                name: S::SLUG.to_owned(),
                description: S::DESCRIPTION.to_owned(),
                parameters: schema_of::<S::Input>(),
            },
            call: Arc::new(run_tool::<S>),
        };
        Arc::make_mut(&mut self.tools).push(tool);
        self
    }

    /// Offers the action or workflow registered as `callee` as a tool (a workflow file's
    /// agent names its tools by slug): named by its slug, described by its description,
    /// its arguments its input's JSON Schema; each call is a recorded step run by
    /// [`crate::ctx::dynamic::execute_registered`], with the callee's own options.
    pub(crate) fn registered_tool(mut self, callee: crate::ctx::dynamic::Registered) -> Self {
        let spec = ToolSpec {
            name: callee.slug().to_owned(),
            description: callee.description().to_owned(),
            parameters: callee.input_schema(),
        };
        let callee = Arc::new(callee);
        let call: ToolFn = Arc::new(move |ctx: Ctx, id: String, arguments: Value| {
            let callee = callee.clone();
            Box::pin(async move {
                crate::ctx::dynamic::execute_registered(
                    &ctx,
                    &id,
                    &callee,
                    arguments,
                    crate::ctx::dynamic::Overrides::default(),
                )
                .await
            })
        });
        Arc::make_mut(&mut self.tools).push(Tool { spec, call });
        self
    }

    /// The most model turns that may call tools (default 10); then one last turn without
    /// tools produces the answer.
    pub fn max_turns(mut self, max_turns: u32) -> Self {
        self.max_turns = max_turns.max(1);
        self
    }

    /// Whether the model may or must call tools (default auto).
    pub fn tool_choice(mut self, choice: ToolChoice) -> Self {
        self.tool_choice = choice;
        self
    }
}

/// A tool call run as the recorded step `id`, with the step's own semantics.
fn run_tool<S: Step>(
    ctx: Ctx,
    id: String,
    arguments: Value,
) -> BoxFuture<'static, Result<Value, ActionError>> {
    Box::pin(async move {
        let input: S::Input = serde_json::from_value(arguments).map_err(|e| {
            ActionError::new(
                crate::error::kinds::SERDE,
                format!("arguments of `{}`: {e}", S::SLUG),
                false,
            )
        })?;
        let output = crate::ctx::step::execute::<S>(ctx, id, input).await?;
        serde_json::to_value(output).map_err(|e| {
            ActionError::new(
                crate::error::kinds::SERDE,
                format!("output of `{}`: {e}", S::SLUG),
                false,
            )
        })
    })
}

/// A prompt to an agent bound to a run: await it for the [`AgentReply`].
#[must_use = "an agent prompt does nothing until it is awaited"]
#[derive(Debug)]
pub struct AgentPrompt {
    ctx: Ctx,
    id: String,
    agent: Agent,
    message: String,
}

/// What `#[workflow]` rewrites `agent.prompt(msg)` into.
pub fn bind_agent_prompt(
    ctx: &Ctx,
    site: &'static Site,
    agent: &Agent,
    message: impl Into<String>,
) -> AgentPrompt {
    AgentPrompt {
        ctx: ctx.clone(),
        id: ctx.next_id(&site.key(agent.slug())),
        agent: agent.clone(),
        message: message.into(),
    }
}

impl AgentPrompt {
    /// `agent`'s reply to `message` as the recorded step `id` of the run in `ctx` (`id`
    /// taken by the caller, as [`bind_agent_prompt`] takes it from a site).
    pub(crate) fn at(ctx: &Ctx, id: String, agent: Agent, message: String) -> AgentPrompt {
        AgentPrompt {
            ctx: ctx.clone(),
            id,
            agent,
            message,
        }
    }

    async fn execute(self) -> Result<AgentReply, ActionError> {
        let AgentPrompt {
            ctx,
            id,
            agent,
            message,
        } = self;
        let model = crate::llm::LlmSettings::of(&ctx.run.env)
            .model_for(agent.model.clone(), &format!("agent `{}`", agent.slug))?;
        let input = json!({
            "message": message,
            "model": model,
            "system": agent.system,
            "tools": agent.tools.iter().map(|t| &t.spec.name).collect::<Vec<_>>(),
        });
        let step = JsonStep {
            id: &id,
            callee: &agent.slug,
            kind: "agent",
            input: &input,
            scope: true,
        };
        let output = json_step(&ctx, step, || {
            converse(&ctx, &id, &agent, model.clone(), message.clone())
        })
        .await?;
        serde_json::from_value(output).map_err(|e| {
            ActionError::new(
                crate::error::kinds::SERDE,
                format!("recorded reply of agent step `{id}`: {e}"),
                false,
            )
        })
    }
}

/// The tool-calling loop of one `agent.prompt(..)`.
async fn converse(
    ctx: &Ctx,
    id: &str,
    agent: &Agent,
    model: String,
    message: String,
) -> Result<JsonOutput, ActionError> {
    let inner = ctx.child(id);
    let mut messages = Vec::new();
    if let Some(system) = &agent.system {
        messages.push(ChatMessage::system(system.clone()));
    }
    messages.push(ChatMessage::user(message));
    let mut usage = Usage::default();
    let mut calls = Vec::new();
    let mut turns = 0;
    loop {
        let last = turns >= agent.max_turns;
        let offer_tools = !last && !agent.tools.is_empty();
        let request = LlmRequest {
            model: model.clone(),
            messages: messages.clone(),
            temperature: agent.temperature,
            max_tokens: None,
            tools: if offer_tools {
                agent.tools.iter().map(|t| t.spec.clone()).collect()
            } else {
                Vec::new()
            },
            tool_choice: offer_tools.then(|| agent.tool_choice.clone()),
            response_schema: None,
        };
        turns += 1;
        let reply = complete(&inner, &inner.next_id("turn"), &request).await?;
        usage += reply.usage;
        let tool_calls = reply.message.tool_calls.clone();
        messages.push(reply.message.clone());
        if tool_calls.is_empty() || !offer_tools {
            let reply = AgentReply {
                text: reply.message.content.unwrap_or_default(),
                messages,
                tool_calls: calls,
                turns,
                usage,
            };
            return Ok(JsonOutput {
                output: serde_json::to_value(&reply).unwrap_or(Value::Null),
                usage: Some(StepUsage::Total(usage)),
            });
        }
        for call in tool_calls {
            let record = call_tool(&inner, agent, &call).await?;
            let content = serde_json::to_string(&record.result).unwrap_or_default();
            messages.push(ChatMessage::tool(call.id.clone(), content));
            calls.push(record);
        }
    }
}

/// Runs one tool call; an unknown tool, arguments that fail the tool's schema, or a tool
/// that fails become an error result for the model, never the agent's failure. Only a
/// failure of the run itself (non-determinism, the store) ends the conversation.
async fn call_tool(
    ctx: &Ctx,
    agent: &Agent,
    call: &ToolCall,
) -> Result<ToolCallRecord, ActionError> {
    let refused = |message: String| ToolCallRecord {
        tool: call.name.clone(),
        step: None,
        arguments: call.arguments.clone(),
        result: json!({ "error": message }),
    };
    let Some(tool) = agent.tools.iter().find(|t| t.spec.name == call.name) else {
        let names: Vec<&str> = agent.tools.iter().map(|t| t.spec.name.as_str()).collect();
        return Ok(refused(format!(
            "there is no tool `{}`; the tools are: {}",
            call.name,
            names.join(", ")
        )));
    };
    if let Err(problem) = check_arguments(&tool.spec, &call.arguments) {
        return Ok(refused(problem));
    }
    let step = ctx.next_id(&call.name);
    let result = (tool.call)(ctx.clone(), step.clone(), call.arguments.clone()).await;
    if ctx.run.poisoned().is_some() {
        // The run is failing (non-determinism, the store): do not talk on.
        if let Err(error) = &result {
            return Err(error.clone());
        }
    }
    Ok(ToolCallRecord {
        tool: call.name.clone(),
        step: Some(step),
        arguments: call.arguments.clone(),
        result: match result {
            Ok(output) => output,
            Err(error) => json!({ "error": error.message, "kind": error.kind }),
        },
    })
}

/// Checks tool arguments against the tool's input schema; the message names each pointer.
fn check_arguments(spec: &ToolSpec, arguments: &Value) -> Result<(), String> {
    if let Value::String(text) = arguments {
        return Err(format!(
            "the arguments of `{}` must be a JSON object, not {text:?}",
            spec.name
        ));
    }
    let validator = crate::schema::Validator::compile(
        spec.parameters.clone(),
        format!("arguments of `{}`", spec.name),
    )
    .map_err(|e| e.to_string())?;
    validator.validate(arguments).map_err(|violation| {
        let problems: Vec<String> = violation
            .violations
            .iter()
            .map(|v| {
                let at = if v.pointer.is_empty() { "/" } else { &v.pointer };
                format!("at `{at}`: {}", v.message)
            })
            .collect();
        format!(
            "the arguments of `{}` do not match its schema: {}; call it again with corrected arguments",
            spec.name,
            problems.join("; ")
        )
    })
}

impl IntoFuture for AgentPrompt {
    type Output = Result<AgentReply, ActionError>;
    type IntoFuture = BoxFuture<'static, Result<AgentReply, ActionError>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.execute())
    }
}
