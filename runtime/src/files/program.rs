//! A parsed and checked workflow file: what the interpreter runs, the manifest is built
//! from and the surfaces show. Produced from the flat [`super::format`] types by
//! `super::parse`; every step carries the position of its `id` key for messages.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::format::{ErrorHandling, ParallelWait, TriggerDef, WorkflowFileOptions};

/// A 1-based line and column in a workflow file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// The line, from 1.
    pub line: u32,
    /// The column (in characters), from 1.
    pub column: u32,
}

/// An expression (`if`, `when`, `while`, `for_each`, …): minijinja expression text, with
/// any `{{ }}` around it removed, and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    /// The expression's text (`inputs.count > 3`).
    pub source: String,
    /// Where it starts in the file.
    pub at: Pos,
}

/// A template value (a step's `input`, `set` values, `return`, `prompt`, …): a YAML value
/// whose strings may hold `{{ … }}` (see [`super::format`]), and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    /// The value as written.
    pub value: Value,
    /// Where it starts in the file.
    pub at: Pos,
}

/// A workflow file, parsed and checked.
#[derive(Clone, Debug)]
pub struct WorkflowFile {
    /// The file it was read from.
    pub path: PathBuf,
    /// The workflow's slug.
    pub slug: String,
    /// Its description (front matter `description`, else the Markdown body's first
    /// paragraph, else empty).
    pub description: String,
    /// The Markdown body (empty for `.yaml` files).
    pub markdown: String,
    /// The file's full text, as read (shown by the UI).
    pub source: String,
    /// The input's JSON Schema (`true` when the file gives none).
    pub input_schema: Value,
    /// The output's JSON Schema (`true` when the file gives none).
    pub output_schema: Value,
    /// Variables set before the first step, in order.
    pub vars: Vec<(String, Template)>,
    /// Its triggers, as written.
    pub triggers: Vec<TriggerDef>,
    /// Its run-level options, as written.
    pub options: WorkflowFileOptions,
    /// Its steps.
    pub steps: Vec<Step>,
}

/// A step, checked: its id, the keys every step has, and what it does.
#[derive(Clone, Debug)]
pub struct Step {
    /// The step id (its site key).
    pub id: String,
    /// Where the step's `id` key is.
    pub at: Pos,
    /// Its display name (the id when none is given).
    pub name: String,
    /// Run only when this is true.
    pub when: Option<Expr>,
    /// The step's time limit.
    pub timeout: Option<Duration>,
    /// Its retry policy (`action` and `prompt` steps).
    pub retry: Option<crate::RetryPolicy>,
    /// What its failure does.
    pub error_handling: ErrorHandling,
    /// `error_handling: fallback`: the steps run instead.
    pub fallback: Vec<Step>,
    /// Compensation steps (run by a later `rollback`).
    pub compensate: Vec<Step>,
    /// Also store the output as `vars.<name>`.
    pub output_variable: Option<String>,
    /// What the step does.
    pub kind: StepKind,
}

/// What a step does: one variant per step type key.
#[derive(Clone, Debug)]
pub enum StepKind {
    /// `action: <slug>`.
    Action {
        /// The registered action's slug.
        slug: String,
        /// Its input.
        input: Template,
    },
    /// `workflow: <slug or path>`, resolved to a registered (code or file) workflow's slug.
    Workflow {
        /// The workflow's slug.
        slug: String,
        /// Its input.
        input: Template,
    },
    /// `prompt: <template>`.
    Prompt {
        /// The prompt.
        prompt: Template,
        /// `vendor/model`, or the engine's default.
        model: Option<String>,
        /// A system message.
        system: Option<Template>,
        /// The sampling temperature.
        temperature: Option<f32>,
        /// The JSON Schema a structured answer must match.
        output_schema: Option<Value>,
    },
    /// `agent: {…}` with `message`.
    Agent {
        /// The agent's name.
        name: String,
        /// System instructions.
        instructions: Option<Template>,
        /// Tool slugs (registered actions and workflows).
        tools: Vec<String>,
        /// The most model turns.
        max_turns: u32,
        /// `vendor/model`, or the engine's default.
        model: Option<String>,
        /// The user message.
        message: Template,
    },
    /// `if` / `then` / `else`.
    If {
        /// The condition.
        condition: Expr,
        /// Run when true.
        then: Vec<Step>,
        /// Run when false.
        otherwise: Vec<Step>,
    },
    /// `switch` / `cases` / `default`.
    Switch {
        /// The value whose text picks a case.
        value: Expr,
        /// Case text → steps, in file order.
        cases: Vec<(String, Vec<Step>)>,
        /// Run when no case matches.
        default: Vec<Step>,
    },
    /// `for_each` / `as` / `concurrency` / `steps`.
    ForEach {
        /// The array.
        items: Expr,
        /// The item's variable name.
        item: String,
        /// Iterations at a time (≥ 1).
        concurrency: usize,
        /// The body.
        steps: Vec<Step>,
    },
    /// `while` / `max_iterations` / `steps`.
    While {
        /// The condition, evaluated before each iteration.
        condition: Expr,
        /// The most iterations.
        max_iterations: u32,
        /// The body.
        steps: Vec<Step>,
    },
    /// `map` / `as` / `value`.
    Map {
        /// The array.
        items: Expr,
        /// The item's variable name.
        item: String,
        /// Evaluated per item.
        value: Template,
    },
    /// `filter` / `as` / `where`.
    Filter {
        /// The array.
        items: Expr,
        /// The item's variable name.
        item: String,
        /// Kept when true.
        condition: Expr,
    },
    /// `reduce` / `as` / `initial` / `accumulator` / `value`.
    Reduce {
        /// The array.
        items: Expr,
        /// The item's variable name.
        item: String,
        /// The starting value.
        initial: Template,
        /// The running value's variable name.
        accumulator: String,
        /// Evaluated per item; becomes the running value.
        value: Template,
    },
    /// `parallel` / `branches`.
    Parallel {
        /// How many branches to wait for.
        wait: ParallelWait,
        /// Branch name → steps, in file order.
        branches: Vec<(String, Vec<Step>)>,
    },
    /// `try` / `catch` / `finally`.
    Try {
        /// The guarded steps.
        steps: Vec<Step>,
        /// Run on an error (as `error`).
        catch: Vec<Step>,
        /// Run either way.
        finally: Vec<Step>,
    },
    /// `sleep: <duration template>`.
    Sleep(Template),
    /// `sleep_until: <RFC 3339 template>`.
    SleepUntil(Template),
    /// `hook: <label>` / `schema`.
    Hook {
        /// The label: for people reading the file, what the hook waits for (it is not
        /// recorded).
        label: String,
        /// The payload's JSON Schema.
        schema: Option<Value>,
    },
    /// `signal: <name>` / `schema`.
    Signal {
        /// The signal's name.
        name: String,
        /// The payload's JSON Schema.
        schema: Option<Value>,
    },
    /// `event: <name>` / `match`.
    Event {
        /// The event's name.
        name: String,
        /// JSON pointer → template the event data must hold.
        matching: Vec<(String, Template)>,
    },
    /// `select: [steps]`.
    Select(Vec<Step>),
    /// `set: {name: template}`.
    Set(Vec<(String, Template)>),
    /// `fail: <message template>` / `kind`.
    Fail {
        /// The message.
        message: Template,
        /// The error kind.
        kind: String,
    },
    /// `return: <template>`.
    Return(Template),
}

impl StepKind {
    /// The step type key (`action`, `for_each`, …), as written in files.
    pub fn key(&self) -> &'static str {
        match self {
            StepKind::Action { .. } => "action",
            StepKind::Workflow { .. } => "workflow",
            StepKind::Prompt { .. } => "prompt",
            StepKind::Agent { .. } => "agent",
            StepKind::If { .. } => "if",
            StepKind::Switch { .. } => "switch",
            StepKind::ForEach { .. } => "for_each",
            StepKind::While { .. } => "while",
            StepKind::Map { .. } => "map",
            StepKind::Filter { .. } => "filter",
            StepKind::Reduce { .. } => "reduce",
            StepKind::Parallel { .. } => "parallel",
            StepKind::Try { .. } => "try",
            StepKind::Sleep(_) => "sleep",
            StepKind::SleepUntil(_) => "sleep_until",
            StepKind::Hook { .. } => "hook",
            StepKind::Signal { .. } => "signal",
            StepKind::Event { .. } => "event",
            StepKind::Select(_) => "select",
            StepKind::Set(_) => "set",
            StepKind::Fail { .. } => "fail",
            StepKind::Return(_) => "return",
        }
    }

    /// The nested step lists of this step (branches, bodies, `try` parts), in file order.
    pub fn children(&self) -> Vec<&[Step]> {
        match self {
            StepKind::If {
                then, otherwise, ..
            } => vec![then, otherwise],
            StepKind::Switch { cases, default, .. } => {
                let mut lists: Vec<&[Step]> = cases.iter().map(|(_, s)| s.as_slice()).collect();
                lists.push(default);
                lists
            }
            StepKind::ForEach { steps, .. } | StepKind::While { steps, .. } => vec![steps],
            StepKind::Parallel { branches, .. } => {
                branches.iter().map(|(_, s)| s.as_slice()).collect()
            }
            StepKind::Try {
                steps,
                catch,
                finally,
            } => vec![steps, catch, finally],
            StepKind::Select(steps) => vec![steps],
            _ => Vec::new(),
        }
    }
}

impl Step {
    /// Every step list nested in this step, its `fallback` and `compensate` included.
    pub fn nested(&self) -> Vec<&[Step]> {
        let mut lists = self.kind.children();
        lists.push(&self.fallback);
        lists.push(&self.compensate);
        lists
    }
}

impl WorkflowFile {
    /// Every step of the file, depth first in file order (nested steps after their
    /// parent).
    pub fn all_steps(&self) -> Vec<&Step> {
        fn walk<'a>(steps: &'a [Step], out: &mut Vec<&'a Step>) {
            for step in steps {
                out.push(step);
                for list in step.nested() {
                    walk(list, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.steps, &mut out);
        out
    }
}
