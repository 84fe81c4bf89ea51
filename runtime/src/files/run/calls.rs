//! Steps that call something: `action`, `workflow`, `prompt`, `agent`.
//!
//! Each fn takes its correlation id when called (synchronously), so a step's id follows
//! the order steps are *created* in, as for code; the returned future does the work.

use futures::future::BoxFuture;
use serde_json::Value;

use crate::ctx::dynamic::{self, Overrides, Registered};
use crate::llm::agent::{Agent, AgentPrompt};
use crate::llm::step::{LlmPrompt, ReplyFormat, RequestPolicy, run_prompt};
use crate::step::{Site, StepKind};
use crate::{ActionError, Ctx};

/// `action: <slug>`: the registered action, as a recorded step at `site` (id
/// `<ns><step-id>#n`, callee the slug), with `input` validated against its input schema
/// (a mismatch fails the step, recorded, with kind `schema` naming each pointer; the action
/// is not called) and its output against its output schema; its retries and per-attempt
/// timeout are the action's own unless `policy` replaces them; an engine override of the
/// action (`Engine::override_action`, testkit stubs) applies. An unknown slug, or one
/// naming a workflow, fails with the permanent kind `unknown_step` naming it.
pub(crate) fn action(
    ctx: &Ctx,
    site: &'static Site,
    slug: &str,
    input: Value,
    policy: Overrides,
) -> BoxFuture<'static, Result<Value, ActionError>> {
    registered(ctx, site, slug, input, StepKind::Action, policy)
}

/// `workflow: <slug>`: the registered (code or file) workflow run inline as a recorded
/// sub-workflow step at `site` (a scope: its steps record under `<step-id>#n/`), its input
/// and output checked against its schemas. An unknown slug, or one naming an action, fails
/// with the permanent kind `unknown_step`.
pub(crate) fn workflow(
    ctx: &Ctx,
    site: &'static Site,
    slug: &str,
    input: Value,
) -> BoxFuture<'static, Result<Value, ActionError>> {
    registered(
        ctx,
        site,
        slug,
        input,
        StepKind::Workflow,
        Overrides::default(),
    )
}

/// The registered step `slug`, which the file's step type says is a `kind`, as a recorded
/// step at `site`: its id taken now, the callee found and run by
/// [`dynamic::execute_registered`].
fn registered(
    ctx: &Ctx,
    site: &'static Site,
    slug: &str,
    input: Value,
    kind: StepKind,
    overrides: Overrides,
) -> BoxFuture<'static, Result<Value, ActionError>> {
    let id = ctx.next_id(&site.key(slug));
    let ctx = ctx.clone();
    let slug = slug.to_owned();
    Box::pin(async move {
        let callee = dynamic::find(&ctx, &slug, &format!("step `{id}`"))?;
        let mismatch = match (&callee, kind) {
            (Registered::Workflow(_), StepKind::Action) => Some(format!(
                "step `{id}` is an `action` step, but `{slug}` is a workflow; write \
                 `workflow: {slug}` to run it as a sub-workflow"
            )),
            (Registered::Action(_), StepKind::Workflow) => Some(format!(
                "step `{id}` is a `workflow` step, but `{slug}` is an action; write \
                 `action: {slug}` to call it"
            )),
            _ => None,
        };
        if let Some(message) = mismatch {
            return Err(ActionError::new(dynamic::UNKNOWN_STEP, message, false));
        }
        dynamic::execute_registered(&ctx, &id, &callee, input, overrides).await
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

/// `prompt:`: an LLM step at `site` (a scope: each request records as
/// `<step-id>#n/attempt#k`); the output is the answer's text, or, with `output_schema`,
/// the parsed JSON (fences allowed) validated against it — a reply that does not match is
/// answered with its violations and asked again, twice at most, then the step fails with
/// kind `llm_output`. `policy.retry` replaces the retries of a request that fails with a
/// retryable error (default: 3 attempts, 1 s then 2 s apart); `policy.timeout` limits
/// each request (then a retryable `llm` error).
pub(crate) fn prompt(
    ctx: &Ctx,
    site: &'static Site,
    call: PromptCall,
    policy: Overrides,
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

/// `agent:`: an agent's tool-calling loop at `site` (turns record as `<step-id>#n/turn#k`,
/// tool calls as `<step-id>#n/<tool-slug>#j`, each a registered action or workflow run by
/// slug with its own options); the output is the reply's text. A tool slug that names
/// nothing registered fails the step with kind `unknown_step` before the model is asked.
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
