//! Link-time registration of actions and workflows (via `inventory`), and the
//! type-erased [`Registry`] an [`crate::Engine`] looks slugs up in.
//!
//! A step is identified by its Rust type (the unit struct `#[action]` or `#[workflow]`
//! generates, named like the fn), not by its fn name: two `fn notify` in two modules are
//! two steps. A slug names exactly one step, so two different types with one slug (two
//! `fn notify` with default slugs, or an action and a workflow) are an error when they
//! are registered, naming both types; registering the same type twice is harmless.

use std::any::TypeId;
use std::collections::BTreeMap;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::Value;

use crate::schema::{Validator, schema_of};
use crate::step::{ActionOptions, Shape, Site, Step, StepBehavior, StepKind, WorkflowOptions};
use crate::{ActionCtx, ActionError, Ctx, EngineError, WorkflowError};

/// A type-erased action body: JSON in, JSON out.
pub type ErasedActionFn = fn(Value, ActionCtx) -> BoxFuture<'static, Result<Value, ActionError>>;
/// A type-erased workflow body: JSON in, JSON out.
pub type ErasedWorkflowFn = fn(Ctx, Value) -> BoxFuture<'static, Result<Value, WorkflowError>>;

/// A workflow body the registry calls: a code workflow's erased fn, or a closure over a
/// loaded workflow file (see [`DynamicWorkflow`]).
pub type WorkflowBody =
    Arc<dyn Fn(Ctx, Value) -> BoxFuture<'static, Result<Value, WorkflowError>> + Send + Sync>;

/// A workflow registered at run time rather than link time (a workflow file): its slug
/// and description, its input and output JSON Schemas, options, manifest and body.
///
/// Its strings, sites and shapes are `'static` (leaked once per load), as the registry
/// holds a code workflow's.
pub struct DynamicWorkflow {
    /// The slug.
    pub slug: &'static str,
    /// The description.
    pub description: &'static str,
    /// What it is, for messages (`workflow file workflows/code-review.md`).
    pub origin: &'static str,
    /// The file it was loaded from, as given (`workflows/code-review.md`).
    pub path: Option<&'static std::path::Path>,
    /// The file's text as loaded (shown by the UI, hashed into the fingerprint).
    pub source: Option<&'static str>,
    /// The input's JSON Schema.
    pub input_schema: Value,
    /// The output's JSON Schema.
    pub output_schema: Value,
    /// Its options.
    pub options: WorkflowOptions,
    /// Its call-site manifest.
    pub sites: &'static [Site],
    /// Its control-flow shape.
    pub shape: &'static [Shape],
    /// Its body.
    pub body: WorkflowBody,
}

/// The type all dynamic workflows register under (they are told apart by slug).
struct DynamicWorkflowType;

/// A workflow's options, site manifest, shape and type-erased body.
pub(crate) type WorkflowParts = (
    WorkflowOptions,
    &'static [Site],
    &'static [Shape],
    ErasedWorkflowFn,
);

/// What `#[action]` and `#[workflow]` submit to the link-time registry.
#[derive(Clone, Copy)]
pub struct Registration {
    /// The slug.
    pub slug: &'static str,
    /// The Rust fn name (`research_signup`); manifest sites whose callee cannot be
    /// resolved by its path fall back to it (see [`Registry::slug_of_callee`]).
    pub fn_name: &'static str,
    /// The doc-comment description.
    pub description: &'static str,
    /// Action or workflow.
    pub kind: StepKind,
    pub(crate) input_schema: fn() -> Value,
    pub(crate) output_schema: fn() -> Value,
    pub(crate) action: Option<(ActionOptions, ErasedActionFn)>,
    pub(crate) workflow: Option<WorkflowParts>,
    /// The step's type: what identifies it (fn pointers, so `of` stays `const`).
    type_id: fn() -> TypeId,
    type_name: fn() -> &'static str,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("slug", &self.slug)
            .field("type", &self.type_name())
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
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
            StepBehavior::Workflow {
                options,
                sites,
                shape,
                ..
            } => (
                StepKind::Workflow,
                None,
                Some((
                    options,
                    sites,
                    shape,
                    erased_workflow::<S> as ErasedWorkflowFn,
                )),
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
            type_id: TypeId::of::<S>,
            type_name: std::any::type_name::<S>,
        }
    }

    /// The Rust type of the step (the unit struct named like its fn), e.g.
    /// `my_app::email::notify`, as [`std::any::type_name`] spells it.
    pub fn type_name(&self) -> &'static str {
        (self.type_name)()
    }

    /// The [`TypeId`] of the step's type: what tells two steps apart.
    pub fn type_id(&self) -> TypeId {
        (self.type_id)()
    }

    /// Whether `self` and `other` register the same step type.
    pub fn is_same_step(&self, other: &Registration) -> bool {
        self.type_id() == other.type_id()
    }

    /// "action `my_app::email::notify`".
    fn describe(&self) -> String {
        let kind = match self.kind {
            StepKind::Action => "action",
            StepKind::Workflow => "workflow",
        };
        format!("{kind} `{}`", self.type_name())
    }

    /// The module path of the step's type (`my_app::email` for `my_app::email::notify`).
    fn module(&self) -> &'static str {
        self.type_name()
            .rsplit_once("::")
            .map_or("", |(module, _)| module)
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
    /// The control-flow shape of its body around the sites.
    pub shape: &'static [Shape],
    pub(crate) body: WorkflowBody,
    /// Where a workflow registered at run time comes from (`workflow file …`); `None`
    /// for a `#[workflow]` fn.
    pub origin: Option<&'static str>,
    /// The workflow file it was loaded from; `None` for a `#[workflow]` fn.
    pub path: Option<&'static std::path::Path>,
    /// The workflow file's text as loaded; `None` for a `#[workflow]` fn.
    pub source: Option<&'static str>,
    pub(crate) input: Validator,
    pub(crate) output: Validator,
    /// The subscription config's validator, for a subscribable workflow.
    pub(crate) subscription: Option<Validator>,
}

impl WorkflowEntry {
    /// The subscription config's JSON Schema, for a subscribable workflow
    /// (`#[workflow(subscribable = T)]`).
    pub fn subscription_schema(&self) -> Option<&Value> {
        self.subscription.as_ref().map(Validator::schema)
    }

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
    /// [`EngineError::Config`] when two different steps share a slug (see
    /// [`Registry::add`]), or a step's schema does not compile.
    pub fn discover() -> Result<Registry, EngineError> {
        let mut registry = Registry::default();
        for registration in inventory::iter::<Registration> {
            registry.add(*registration)?;
        }
        Ok(registry)
    }

    /// Adds one registration. Adding the same step type again does nothing.
    ///
    /// # Errors
    /// [`EngineError::Config`] naming both types when a different step type (an action or
    /// a workflow) already uses the slug — e.g. two `#[action] async fn notify` in two
    /// modules, both with the default slug `notify`.
    pub fn add(&mut self, registration: Registration) -> Result<(), EngineError> {
        let slug = registration.slug;
        let existing = self
            .workflows
            .get(slug)
            .map(|w| w.registration)
            .or_else(|| self.actions.get(slug).map(|a| a.registration));
        if let Some(existing) = existing {
            if existing.is_same_step(&registration) {
                return Ok(());
            }
            return Err(EngineError::Config(format!(
                "two different steps are registered with the slug `{slug}`: the {} and the \
                 {}; give one of them another slug (`#[action(slug = \"…\")]` or \
                 `#[workflow(slug = \"…\")]`)",
                existing.describe(),
                registration.describe()
            )));
        }
        if let Some((options, sites, shape, body)) = registration.workflow {
            let what_in = format!("input of workflow `{}`", registration.slug);
            let what_out = format!("output of workflow `{}`", registration.slug);
            let subscription = match options.subscribable {
                Some(decl) => Some(Validator::compile(
                    (decl.schema)(),
                    format!("subscription config of workflow `{}`", registration.slug),
                )?),
                None => None,
            };
            let entry = WorkflowEntry {
                registration,
                options,
                sites,
                shape,
                body: Arc::new(body),
                origin: None,
                path: None,
                source: None,
                input: Validator::compile((registration.input_schema)(), what_in)?,
                output: Validator::compile((registration.output_schema)(), what_out)?,
                subscription,
            };
            self.workflows.insert(registration.slug, Arc::new(entry));
        }
        if let Some((options, call)) = registration.action {
            let entry = ActionEntry {
                registration,
                options,
                call,
            };
            self.actions.insert(registration.slug, Arc::new(entry));
        }
        Ok(())
    }

    /// Adds a workflow defined at run time (a workflow file).
    ///
    /// # Errors
    /// [`EngineError::Config`] when a step (code or dynamic) already has the slug, or a
    /// schema does not compile.
    pub fn add_dynamic(&mut self, workflow: DynamicWorkflow) -> Result<(), EngineError> {
        let slug = workflow.slug;
        if let Some(existing) = self.workflows.get(slug) {
            let what = existing
                .origin
                .map_or_else(|| existing.registration.describe(), str::to_owned);
            return Err(EngineError::Config(format!(
                "the slug `{slug}` of the {} is taken by the {what}; give one of them another slug",
                workflow.origin
            )));
        }
        if let Some(existing) = self.actions.get(slug) {
            return Err(EngineError::Config(format!(
                "the slug `{slug}` of the {} is taken by the {}; give one of them another slug",
                workflow.origin,
                existing.registration.describe()
            )));
        }
        fn any_schema() -> Value {
            Value::Bool(true)
        }
        fn dynamic_type_name() -> &'static str {
            "workflow file"
        }
        let registration = Registration {
            slug,
            fn_name: slug,
            description: workflow.description,
            kind: StepKind::Workflow,
            input_schema: any_schema,
            output_schema: any_schema,
            action: None,
            workflow: None,
            type_id: TypeId::of::<DynamicWorkflowType>,
            type_name: dynamic_type_name,
        };
        let entry = WorkflowEntry {
            registration,
            options: workflow.options,
            sites: workflow.sites,
            shape: workflow.shape,
            body: workflow.body,
            origin: Some(workflow.origin),
            path: workflow.path,
            source: workflow.source,
            input: Validator::compile(
                workflow.input_schema,
                format!("input of workflow `{slug}`"),
            )?,
            output: Validator::compile(
                workflow.output_schema,
                format!("output of workflow `{slug}`"),
            )?,
            subscription: None,
        };
        self.workflows.insert(slug, Arc::new(entry));
        Ok(())
    }

    /// Adds step `S` (for engines built without [`Registry::discover`]).
    ///
    /// # Errors
    /// As [`Registry::add`].
    pub fn register<S: Step>(&mut self) -> Result<(), EngineError> {
        // The fn name is the last segment of the type's path (the unit struct is named
        // like the fn), so `slug_of_fn` finds steps registered this way too.
        let name = std::any::type_name::<S>();
        let fn_name = name.rsplit("::").next().unwrap_or(name);
        self.add(Registration::of::<S>(fn_name))
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

    /// The workflows declared `#[workflow(on_event = "<name>")]` for event `name`, by slug:
    /// [`crate::Engine::emit`] starts one run of each per event id.
    pub fn on_event<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Arc<WorkflowEntry>> {
        self.workflows()
            .filter(move |entry| entry.options.on_event == Some(name))
    }

    fn registrations(&self) -> impl Iterator<Item = Registration> + '_ {
        self.workflows
            .values()
            .map(|w| w.registration)
            .chain(self.actions.values().map(|a| a.registration))
    }

    /// The slug of the step whose Rust fn is named `fn_name` (the last path segment of
    /// a `.run` receiver), if exactly one is registered.
    pub fn slug_of_fn(&self, fn_name: &str) -> Option<&'static str> {
        let mut found = self
            .registrations()
            .filter(|r| r.fn_name == fn_name)
            .map(|r| r.slug);
        let first = found.next()?;
        found.next().is_none().then_some(first)
    }

    /// The slug of the step a manifest site of workflow `caller` calls: `callee` is the
    /// `.run` receiver as written (`notify`, `email::notify`, `crate::email::notify`,
    /// `super::notify`). Resolved by the steps' type paths where the path tells them
    /// apart (two `notify` in two modules), preferring one in `caller`'s own module for a
    /// bare name; otherwise by fn name, as [`Registry::slug_of_fn`]. `None` when no step,
    /// or more than one, fits.
    pub fn slug_of_callee(&self, caller: &Registration, callee: &str) -> Option<&'static str> {
        let path: String = callee.chars().filter(|c| !c.is_whitespace()).collect();
        let is_path = !path.is_empty()
            && path
                .split("::")
                .all(|s| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_'));
        if is_path && let Some(slug) = self.slug_of_path(caller, &path) {
            return Some(slug);
        }
        let fn_name = path.rsplit("::").next().unwrap_or(&path);
        self.slug_of_fn(fn_name)
    }

    /// [`Registry::slug_of_callee`] by type path only.
    fn slug_of_path(&self, caller: &Registration, path: &str) -> Option<&'static str> {
        let module = caller.module();
        let krate = module.split("::").next().unwrap_or(module);
        let exact = |full: String| {
            self.registrations()
                .find(|r| r.type_name() == full)
                .map(|r| r.slug)
        };
        if let Some(rest) = path.strip_prefix("crate::") {
            return exact(format!("{krate}::{rest}"));
        }
        if let Some(rest) = path.strip_prefix("self::") {
            return exact(format!("{module}::{rest}"));
        }
        if path.starts_with("super::") {
            let mut module = module;
            let mut rest = path;
            while let Some(tail) = rest.strip_prefix("super::") {
                module = module.rsplit_once("::").map_or("", |(parent, _)| parent);
                rest = tail;
            }
            return exact(format!("{module}::{rest}"));
        }
        // Relative to the caller's module (a step defined beside the workflow, or in a
        // child module), else the one step whose type path ends with it (an import).
        if let Some(slug) = exact(format!("{module}::{path}")) {
            return Some(slug);
        }
        let suffix = format!("::{path}");
        let mut found = self
            .registrations()
            .filter(|r| r.type_name() == path || r.type_name().ends_with(&suffix))
            .map(|r| r.slug);
        let first = found.next()?;
        found.next().is_none().then_some(first)
    }
}
