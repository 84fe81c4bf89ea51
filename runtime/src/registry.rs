//! Link-time registration of actions and workflows (via `inventory`), and the
//! type-erased [`Registry`] an [`crate::Engine`] looks slugs up in.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::Value;

use crate::schema::{Validator, schema_of};
use crate::step::{ActionOptions, Site, Step, StepBehavior, StepKind, WorkflowOptions};
use crate::{ActionCtx, ActionError, Ctx, EngineError, WorkflowError};

/// A type-erased action body: JSON in, JSON out.
pub type ErasedActionFn = fn(Value, ActionCtx) -> BoxFuture<'static, Result<Value, ActionError>>;
/// A type-erased workflow body: JSON in, JSON out.
pub type ErasedWorkflowFn = fn(Ctx, Value) -> BoxFuture<'static, Result<Value, WorkflowError>>;

/// What `#[action]` and `#[workflow]` submit to the link-time registry.
#[derive(Clone, Copy)]
pub struct Registration {
    /// The slug.
    pub slug: &'static str,
    /// The Rust fn name (`research_signup`), used to resolve manifest sites to slugs.
    pub fn_name: &'static str,
    /// The doc-comment description.
    pub description: &'static str,
    /// Action or workflow.
    pub kind: StepKind,
    pub(crate) input_schema: fn() -> Value,
    pub(crate) output_schema: fn() -> Value,
    pub(crate) action: Option<(ActionOptions, ErasedActionFn)>,
    pub(crate) workflow: Option<(WorkflowOptions, &'static [Site], ErasedWorkflowFn)>,
}

inventory::collect!(Registration);

impl Registration {
    /// The registration of step `S` whose Rust fn is named `fn_name`.
    pub const fn of<S: Step>(fn_name: &'static str) -> Registration {
        let (kind, action, workflow) = match S::BEHAVIOR {
            StepBehavior::Action { options, .. } => (
                StepKind::Action,
                Some((options, erased_action::<S> as ErasedActionFn)),
                None,
            ),
            StepBehavior::Workflow { options, sites, .. } => (
                StepKind::Workflow,
                None,
                Some((options, sites, erased_workflow::<S> as ErasedWorkflowFn)),
            ),
        };
        Registration {
            slug: S::SLUG,
            fn_name,
            description: S::DESCRIPTION,
            kind,
            input_schema: schema_of::<S::Input>,
            output_schema: schema_of::<S::Output>,
            action,
            workflow,
        }
    }
}

fn erased_action<S: Step>(
    input: Value,
    cx: ActionCtx,
) -> BoxFuture<'static, Result<Value, ActionError>> {
    let StepBehavior::Action { call, .. } = S::BEHAVIOR else {
        return async { Err(ActionError::permanent("not an action")) }.boxed();
    };
    async move {
        let input: S::Input = serde_json::from_value(input).map_err(|e| {
            ActionError::new(
                crate::error::kinds::SERDE,
                format!("input of action `{}`: {e}", S::SLUG),
                false,
            )
        })?;
        let output = call(input, cx).await?;
        serde_json::to_value(output).map_err(|e| {
            ActionError::new(
                crate::error::kinds::SERDE,
                format!("output of action `{}`: {e}", S::SLUG),
                false,
            )
        })
    }
    .boxed()
}

fn erased_workflow<S: Step>(
    ctx: Ctx,
    input: Value,
) -> BoxFuture<'static, Result<Value, WorkflowError>> {
    let StepBehavior::Workflow { call, .. } = S::BEHAVIOR else {
        return async { Err(WorkflowError::permanent("not a workflow")) }.boxed();
    };
    async move {
        let input: S::Input = serde_json::from_value(input).map_err(|e| {
            WorkflowError::new(
                crate::error::kinds::SERDE,
                format!("input of workflow `{}`: {e}", S::SLUG),
                false,
            )
        })?;
        let output = call(ctx, input).await?;
        serde_json::to_value(output).map_err(|e| {
            WorkflowError::new(
                crate::error::kinds::SERDE,
                format!("output of workflow `{}`: {e}", S::SLUG),
                false,
            )
        })
    }
    .boxed()
}

/// A registered workflow, with its validators compiled once.
pub struct WorkflowEntry {
    /// The registration.
    pub registration: Registration,
    /// Its options.
    pub options: WorkflowOptions,
    /// Its call-site manifest.
    pub sites: &'static [Site],
    pub(crate) body: ErasedWorkflowFn,
    pub(crate) input: Validator,
    pub(crate) output: Validator,
}

impl WorkflowEntry {
    /// The input's JSON Schema.
    pub fn input_schema(&self) -> &Value {
        self.input.schema()
    }

    /// The output's JSON Schema.
    pub fn output_schema(&self) -> &Value {
        self.output.schema()
    }
}

/// A registered action.
pub struct ActionEntry {
    /// The registration.
    pub registration: Registration,
    /// Its options.
    pub options: ActionOptions,
    /// The type-erased body (used for agent tools and by slug).
    pub call: ErasedActionFn,
}

/// The actions and workflows an engine knows, by slug.
#[derive(Default, Clone)]
pub struct Registry {
    workflows: BTreeMap<&'static str, Arc<WorkflowEntry>>,
    actions: BTreeMap<&'static str, Arc<ActionEntry>>,
}

impl Registry {
    /// Everything registered at link time by `#[action]` and `#[workflow]` in the binary.
    ///
    /// # Errors
    /// [`EngineError::Schema`]-free: fails only when two steps share a slug
    /// ([`EngineError::InvalidState`] naming the slug).
    pub fn discover() -> Result<Registry, EngineError> {
        let mut registry = Registry::default();
        for registration in inventory::iter::<Registration> {
            registry.add(*registration)?;
        }
        Ok(registry)
    }

    /// Adds one registration.
    ///
    /// # Errors
    /// When a different step already uses the slug.
    pub fn add(&mut self, registration: Registration) -> Result<(), EngineError> {
        let duplicate = |slug: &str| EngineError::InvalidState {
            run: String::new(),
            status: "registry".into(),
            message: format!(
                "two steps are registered with the slug `{slug}`; give one of them `slug = \"…\"`"
            ),
        };
        if let Some((options, sites, body)) = registration.workflow {
            if let Some(existing) = self.workflows.get(registration.slug) {
                if existing.registration.fn_name == registration.fn_name {
                    return Ok(());
                }
                return Err(duplicate(registration.slug));
            }
            let what_in = format!("input of workflow `{}`", registration.slug);
            let what_out = format!("output of workflow `{}`", registration.slug);
            let entry = WorkflowEntry {
                registration,
                options,
                sites,
                body,
                input: Validator::compile((registration.input_schema)(), what_in)?,
                output: Validator::compile((registration.output_schema)(), what_out)?,
            };
            self.workflows.insert(registration.slug, Arc::new(entry));
        }
        if let Some((options, call)) = registration.action {
            if let Some(existing) = self.actions.get(registration.slug) {
                if existing.registration.fn_name == registration.fn_name {
                    return Ok(());
                }
                return Err(duplicate(registration.slug));
            }
            let entry = ActionEntry {
                registration,
                options,
                call,
            };
            self.actions.insert(registration.slug, Arc::new(entry));
        }
        Ok(())
    }

    /// Adds step `S` (for engines built without [`Registry::discover`]).
    ///
    /// # Errors
    /// As [`Registry::add`].
    pub fn register<S: Step>(&mut self) -> Result<(), EngineError> {
        self.add(Registration::of::<S>(""))
    }

    /// The workflow with this slug.
    pub fn workflow(&self, slug: &str) -> Option<&Arc<WorkflowEntry>> {
        self.workflows.get(slug)
    }

    /// The action with this slug.
    pub fn action(&self, slug: &str) -> Option<&Arc<ActionEntry>> {
        self.actions.get(slug)
    }

    /// All workflows, by slug.
    pub fn workflows(&self) -> impl Iterator<Item = &Arc<WorkflowEntry>> {
        self.workflows.values()
    }

    /// All actions, by slug.
    pub fn actions(&self) -> impl Iterator<Item = &Arc<ActionEntry>> {
        self.actions.values()
    }

    /// The slug of the step whose Rust fn is named `fn_name` (the last path segment of
    /// a `.run` receiver), if exactly one is registered.
    pub fn slug_of_fn(&self, fn_name: &str) -> Option<&'static str> {
        let mut found = self
            .workflows
            .values()
            .map(|w| w.registration)
            .chain(self.actions.values().map(|a| a.registration))
            .filter(|r| r.fn_name == fn_name)
            .map(|r| r.slug);
        let first = found.next()?;
        found.next().is_none().then_some(first)
    }
}
