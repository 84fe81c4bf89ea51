//! Steps that call something: `action`, `workflow`, `prompt`, `agent`.
//!
//! Each fn takes its correlation id when called (synchronously), so a step's id follows
//! the order steps are *created* in, as for code; the returned future does the work.
#![allow(dead_code)] // called by the interpreter

use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;

use crate::ctx::dynamic::{self, Overrides, Registered};
use crate::llm::agent::{Agent, AgentPrompt};
use crate::llm::step::{LlmPrompt, ReplyFormat, RequestPolicy, run_prompt};
use crate::step::Site;
use crate::{ActionError, Ctx};

/// A file step's own retry and timeout (override the action's options).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct StepPolicy {
    /// Attempts and delays; `None`: the action's own.
    pub(crate) retry: Option<crate::RetryPolicy>,
    /// Per-attempt limit; `None`: the action's own.
    pub(crate) timeout: Option<Duration>,
}

/// `action: <slug>`: the registered action, as a recorded step at `site`, with `input`
/// validated against its input schema.
pub(crate) fn action(
    ctx: &Ctx,
    site: &'static Site,
    slug: &str,
    input: Value,
    policy: StepPolicy,
) -> BoxFuture<'static, Result<Value, ActionError>> {
    let id = ctx.next_id(&site.key(slug));
    let ctx = ctx.clone();
    let slug = slug.to_owned();
    Box::pin(async move {
        let callee = dynamic::find(&ctx, &slug, &format!("step `{id}`"))?;
        if let Registered::Workflow(_) = callee {
            return Err(ActionError::new(
                dynamic::UNKNOWN_STEP,
                format!(
                    "step `{id}` is an `action` step, but `{slug}` is a workflow; write \
                     `workflow: {slug}` to run it as a sub-workflow"
                ),
                false,
            ));
        }
        dynamic::execute_registered(&ctx, &id, &callee, input, policy.into()).await
    })
}

/// `workflow: <slug>`: the registered (code or file) workflow run inline as a recorded
/// sub-workflow step at `site`.
pub(crate) fn workflow(
    ctx: &Ctx,
    site: &'static Site,
    slug: &str,
    input: Value,
) -> BoxFuture<'static, Result<Value, ActionError>> {
    let id = ctx.next_id(&site.key(slug));
    let ctx = ctx.clone();
    let slug = slug.to_owned();
    Box::pin(async move {
        let callee = dynamic::find(&ctx, &slug, &format!("step `{id}`"))?;
        if let Registered::Action(_) = callee {
            return Err(ActionError::new(
                dynamic::UNKNOWN_STEP,
                format!(
                    "step `{id}` is a `workflow` step, but `{slug}` is an action; write \
                     `action: {slug}` to call it"
                ),
                false,
            ));
        }
        dynamic::execute_registered(&ctx, &id, &callee, input, Overrides::default()).await
    })
}

/// A rendered `prompt` step.
#[derive(Clone, Debug)]
pub(crate) struct PromptCall {
    /// The prompt text.
    pub(crate) prompt: String,
    /// `vendor/model`.
    pub(crate) model: Option<String>,
    /// A system message.
    pub(crate) system: Option<String>,
    /// The temperature.
    pub(crate) temperature: Option<f32>,
    /// The JSON Schema of a structured answer.
    pub(crate) output_schema: Option<Value>,
}

/// `prompt:`: an LLM step at `site`; the output is the answer's text, or the parsed
/// object when `output_schema` is given.
pub(crate) fn prompt(
    ctx: &Ctx,
    site: &'static Site,
    call: PromptCall,
    policy: StepPolicy,
) -> BoxFuture<'static, Result<Value, ActionError>> {
    let id = ctx.next_id(&site.key("llm"));
    let ctx = ctx.clone();
    Box::pin(async move {
        let format = match call.output_schema {
            Some(schema) => ReplyFormat::json(schema).map_err(|mut e| {
                e.message = format!("`output_schema` of step `{id}`: {}", e.message);
                e
            })?,
            None => ReplyFormat::text(),
        };
        let mut request = RequestPolicy::default();
        if let Some(retry) = policy.retry {
            request.retry = retry;
        }
        request.timeout = policy.timeout;
        let prompt = LlmPrompt {
            prompt: call.prompt,
            system: call.system,
            model: call.model,
            temperature: call.temperature,
            max_tokens: None,
            reasks: 2,
            policy: request,
        };
        run_prompt(&ctx, &id, prompt, &format).await
    })
}

/// A rendered `agent` step.
#[derive(Clone, Debug)]
pub(crate) struct AgentCall {
    /// The agent's name.
    pub(crate) name: String,
    /// System instructions.
    pub(crate) instructions: Option<String>,
    /// Tool slugs.
    pub(crate) tools: Vec<String>,
    /// The most turns.
    pub(crate) max_turns: u32,
    /// `vendor/model`.
    pub(crate) model: Option<String>,
    /// The user message.
    pub(crate) message: String,
}

/// `agent:`: an agent's tool-calling loop at `site`; the output is the reply's text.
pub(crate) fn agent(
    ctx: &Ctx,
    site: &'static Site,
    call: AgentCall,
) -> BoxFuture<'static, Result<Value, ActionError>> {
    let id = ctx.next_id(&site.key(&call.name));
    let ctx = ctx.clone();
    Box::pin(async move {
        let mut agent = Agent::new(call.name).max_turns(call.max_turns);
        if let Some(instructions) = call.instructions {
            agent = agent.system(instructions);
        }
        if let Some(model) = call.model {
            agent = agent.model(model);
        }
        for slug in &call.tools {
            let tool = dynamic::find(&ctx, slug, &format!("a tool of agent step `{id}`"))?;
            agent = agent.registered_tool(tool);
        }
        let reply = AgentPrompt::at(&ctx, id, agent, call.message).await?;
        Ok(Value::String(reply.text))
    })
}

impl From<StepPolicy> for Overrides {
    fn from(policy: StepPolicy) -> Self {
        Overrides {
            retry: policy.retry,
            timeout: policy.timeout,
        }
    }
}
