//! Steps that call something: `action`, `workflow`, `prompt`, `agent`.
//!
//! Each fn takes its correlation id when called (synchronously), so a step's id follows
//! the order steps are *created* in, as for code; the returned future does the work.
#![allow(dead_code)] // filled in by the interpreter

use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;

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
    let _ = (ctx, site, slug, input, policy);
    Box::pin(async {
        Err(ActionError::permanent(
            "action steps of files are not built yet",
        ))
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
    let _ = (ctx, site, slug, input);
    Box::pin(async {
        Err(ActionError::permanent(
            "workflow steps of files are not built yet",
        ))
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
    let _ = (ctx, site, call, policy);
    Box::pin(async {
        Err(ActionError::permanent(
            "prompt steps of files are not built yet",
        ))
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
    let _ = (ctx, site, call);
    Box::pin(async {
        Err(ActionError::permanent(
            "agent steps of files are not built yet",
        ))
    })
}
