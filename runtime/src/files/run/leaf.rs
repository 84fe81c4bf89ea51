//! The futures of the steps that record under their own id: `action`, `workflow`,
//! `prompt`, `agent` (`calls`) and `sleep`, `sleep_until`, `hook`, `signal`, `event`
//! (`waits`).
//!
//! [`Interp::leaf`] renders the step's templates and calls the primitive synchronously, so
//! the step takes its correlation id when the future is *created* (what a `select` or a
//! `parallel` race needs to know which branch started what).

use std::sync::Arc;

use serde_json::Value;

use super::calls::{self, AgentCall, PromptCall};
use super::policy::step_policy;
use super::scope::Scope;
use super::waits::{self, StepFuture};
use super::{Flow, INVALID_INPUT, Interp};
use crate::ActionError;
use crate::Ctx;
use crate::files::manifest::TIMEOUT_SUFFIX;
use crate::files::program::{Step, StepKind, Template};

/// A rendered value as text: a string as is, anything else as JSON.
pub(crate) fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Interp {
    /// Renders `template` for step `step`.
    pub(crate) fn render(
        &self,
        step: &str,
        template: &Template,
        scope: &Scope,
    ) -> Result<Value, Flow> {
        crate::files::expr::render(template, scope.value()).map_err(|e| {
            let source = match &template.value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            self.expression_error(step, &source, template.at, &e)
        })
    }

    /// The future of leaf step `step` (its ids taken now), under its timeout when the
    /// primitive does not take one itself.
    ///
    /// # Errors
    /// A template that fails (kind `expression`), a step that is not a leaf.
    pub(crate) fn leaf(
        self: &Arc<Self>,
        ctx: &Ctx,
        step: &Step,
        scope: &Scope,
    ) -> Result<StepFuture, Flow> {
        let site = || self.site(&step.id);
        let mut own_timeout = true;
        let future = match &step.kind {
            StepKind::Action { slug, input } => {
                let input = self.render(&step.id, input, scope)?;
                own_timeout = false;
                calls::action(ctx, site()?, slug, input, step_policy(step))
            }
            StepKind::Workflow { slug, input } => {
                let input = self.render(&step.id, input, scope)?;
                calls::workflow(ctx, site()?, slug, input)
            }
            StepKind::Prompt {
                prompt,
                model,
                system,
                temperature,
                output_schema,
            } => {
                let call = PromptCall {
                    prompt: text(&self.render(&step.id, prompt, scope)?),
                    model: model.clone(),
                    system: system
                        .as_ref()
                        .map(|s| self.render(&step.id, s, scope).map(|v| text(&v)))
                        .transpose()?,
                    temperature: *temperature,
                    output_schema: output_schema.clone(),
                };
                own_timeout = false;
                calls::prompt(ctx, site()?, call, step_policy(step))
            }
            StepKind::Agent {
                name,
                instructions,
                tools,
                max_turns,
                model,
                message,
            } => {
                let call = AgentCall {
                    name: name.clone(),
                    instructions: instructions
                        .as_ref()
                        .map(|s| self.render(&step.id, s, scope).map(|v| text(&v)))
                        .transpose()?,
                    tools: tools.clone(),
                    max_turns: *max_turns,
                    model: model.clone(),
                    message: text(&self.render(&step.id, message, scope)?),
                };
                calls::agent(ctx, site()?, call)
            }
            StepKind::Sleep(duration) => {
                let duration = text(&self.render(&step.id, duration, scope)?);
                waits::sleep(ctx, site()?, &duration)
            }
            StepKind::SleepUntil(time) => {
                let time = text(&self.render(&step.id, time, scope)?);
                waits::sleep_until(ctx, site()?, &time)
            }
            StepKind::Hook { label, schema } => {
                own_timeout = false;
                waits::hook(ctx, site()?, label, schema.as_ref(), step.timeout)
            }
            StepKind::Signal { name, schema } => {
                own_timeout = false;
                waits::signal(ctx, site()?, name, schema.as_ref(), step.timeout)
            }
            StepKind::Event { name, matching } => {
                let matching = matching
                    .iter()
                    .map(|(pointer, template)| {
                        Ok((pointer.clone(), self.render(&step.id, template, scope)?))
                    })
                    .collect::<Result<Vec<_>, Flow>>()?;
                own_timeout = false;
                waits::event(ctx, site()?, name, matching, step.timeout)
            }
            other => {
                return Err(Flow::Error(ActionError::new(
                    INVALID_INPUT,
                    format!(
                        "{}: step `{}`: a `{}` step cannot be raced here: only action, \
                         workflow, prompt, agent, sleep, sleep_until, hook, signal and event \
                         steps can (put the others in a `parallel` branch)",
                        self.path(),
                        step.id,
                        other.key()
                    ),
                    false,
                )));
            }
        };
        match step.timeout {
            Some(limit) if own_timeout => {
                let site = self.site(&format!("{}{TIMEOUT_SUFFIX}", step.id))?;
                Ok(waits::timeout(ctx, site, future, limit))
            }
            _ => Ok(future),
        }
    }
}
