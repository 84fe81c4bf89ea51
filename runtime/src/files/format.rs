//! The workflow file format: the Rust types a file's YAML is read into, and from which
//! its JSON Schema is generated ([`super::format_schema`], `workflows schema
//! --file-format`).
//!
//! A workflow file is either Markdown whose YAML front matter (between two `---` lines
//! at the top) is a [`WorkflowDoc`], or a plain `.yaml`/`.yml` file that is one. The
//! Markdown body is documentation: its first paragraph is the workflow's description
//! when the front matter gives none.
//!
//! Every step is a [`StepDef`]: an `id` (its structural id: unique in the file), exactly
//! one *step type key* (`action`, `workflow`, `prompt`, `agent`, `if`, `switch`,
//! `for_each`, `while`, `map`, `filter`, `reduce`, `parallel`, `try`, `sleep`,
//! `sleep_until`, `hook`, `signal`, `event`, `select`, `set`, `fail`, `return`), the keys
//! that type takes, and the keys every step may have (`when`, `timeout`, `retry`,
//! `error_handling`, `fallback`, `compensate`, `output_variable`, `name`).
//!
//! Values that are *templates* (step inputs, `set` values, `return`, `prompt`, …) are
//! YAML values whose strings may hold `{{ expression }}`: a string that is exactly one
//! `{{ … }}` evaluates to the expression's value (a number stays a number, an object an
//! object); any other string with `{{ … }}` renders to a string; everything else is taken
//! as written. Keys documented as *expressions* (`if`, `when`, `while`, `switch`,
//! `for_each`, …) take a bare expression (`inputs.count > 3`), with or without `{{ }}`.
//! Expressions are [minijinja](https://docs.rs/minijinja) expressions over `inputs`,
//! `steps.<id>.output`, `vars.<name>`, `ctx` and loop variables (see `super::expr`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

/// The front matter of a `.md` workflow file, or the whole of a `.yaml` one.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowDoc {
    /// The workflow's slug (kebab-case, unique among code and file workflows). Default:
    /// the file name without its extension (`code-review.md` → `code-review`).
    #[serde(default)]
    pub slug: Option<String>,
    /// What the workflow does. Default: the first paragraph of the Markdown body.
    #[serde(default)]
    pub description: Option<String>,
    /// The JSON Schema of the run input (`inputs` in expressions). Default: any value.
    #[serde(default)]
    pub input: Option<Value>,
    /// The JSON Schema of the run output (what `return` gives). Default: any value.
    #[serde(default)]
    pub output: Option<Value>,
    /// Variables set before the first step (`vars.<name>`): name → template, evaluated in
    /// order of the names.
    #[serde(default)]
    pub vars: BTreeMap<String, Value>,
    /// What starts runs besides explicit starts: cron schedules, webhook and poll sources,
    /// events.
    #[serde(default)]
    pub triggers: Vec<TriggerDef>,
    /// Run-level options, as `#[workflow(..)]` takes them.
    #[serde(default)]
    pub options: WorkflowFileOptions,
    /// The steps, run in order.
    pub steps: Vec<StepDef>,
}

/// Run-level options of a file workflow (the `#[workflow(..)]` options of a code one).
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowFileOptions {
    /// How many times the whole body may run before the run fails (run-level retries
    /// replay from the log). Default 3.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// The run's execution timeout across attempts (humantime: `"1h"`, `"2d"`).
    #[serde(default)]
    pub timeout: Option<String>,
    /// The flow-control queue its runs go through.
    #[serde(default)]
    pub queue: Option<String>,
    /// How long ended runs are kept (humantime).
    #[serde(default)]
    pub retention: Option<String>,
    /// The most events a run's log may hold.
    #[serde(default)]
    pub max_history_events: Option<u64>,
}

/// A trigger declared in a file: exactly one of `cron`, `webhook`, `poll`, `event`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerDef {
    /// A cron expression (5 or 6 fields, as `croner` reads them): one run per tick.
    #[serde(default)]
    pub cron: Option<String>,
    /// The IANA time zone a `cron` expression is read in. Default UTC.
    #[serde(default)]
    pub timezone: Option<String>,
    /// The name of a webhook source configured on the engine: each verified delivery
    /// starts a run with the delivery's body as input.
    #[serde(default)]
    pub webhook: Option<String>,
    /// The name of a poll source configured on the engine: each new item starts a run.
    #[serde(default)]
    pub poll: Option<String>,
    /// An event name (`Engine::emit`): one run per event id, with the event's data as
    /// input.
    #[serde(default)]
    pub event: Option<String>,
    /// The input of runs started by a `cron` trigger (a template; `ctx.now` is the tick).
    #[serde(default)]
    pub input: Option<Value>,
    /// A name for the schedule (`cron` only). Default: `<slug>-cron-<n>`.
    #[serde(default)]
    pub name: Option<String>,
}

/// One step of a workflow file. Exactly one step type key is set; the parser turns this
/// flat form into a [`super::Step`] and reports a step with none or several.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepDef {
    // ---- keys every step has ----
    /// The step's id: its structural id (the site key of its correlation ids,
    /// `<id>#<n>`), unique in the file; letters, digits, `-` and `_`.
    pub id: String,
    /// A human name, shown in the UI and graphs. Default: the id.
    #[serde(default)]
    pub name: Option<String>,
    /// An expression: the step runs only when it is true (otherwise its status is
    /// `skipped` and its output `null`).
    #[serde(default)]
    pub when: Option<String>,
    /// A time limit (humantime, `"30s"`): for `action` steps per attempt (error kind
    /// `timeout`, retried as the step's retries allow); for `prompt` steps per model request
    /// (a retryable `llm` error); for a `hook`, the hook's recorded deadline (a later
    /// delivery is refused); for every other step type the whole step, raced durably
    /// against a timer recorded as `<id>.timeout#n`. Exceeding it is an error of kind
    /// `timeout` except where said.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Retries of an `action` or `prompt` step (replaces the action's own policy).
    #[serde(default)]
    pub retry: Option<RetryDef>,
    /// What a failure of this step (after its retries) does: `stop` (default: the error
    /// goes up and fails the run unless a `try` catches it), `continue` (the workflow goes
    /// on; `steps.<id>.status` is `failed`, `steps.<id>.error` the error), `fallback`
    /// (run the `fallback` steps instead; their last output is this step's output), or
    /// `rollback` (run the `compensate` steps of every step finished so far, last first,
    /// then fail).
    #[serde(default)]
    pub error_handling: Option<ErrorHandling>,
    /// The steps `error_handling: fallback` runs.
    #[serde(default)]
    pub fallback: Option<Vec<StepDef>>,
    /// Compensation steps for this step, run (last finished step first) when a later
    /// step fails with `error_handling: rollback`.
    #[serde(default)]
    pub compensate: Option<Vec<StepDef>>,
    /// Also store the step's output as `vars.<name>`.
    #[serde(default)]
    pub output_variable: Option<String>,

    // ---- step types (exactly one) ----
    /// Call a registered `#[action]` by slug, with `input`.
    #[serde(default)]
    pub action: Option<String>,
    /// Run a sub-workflow inline (its steps namespaced under this step's id): a registered
    /// workflow's slug, or a workflow file's path relative to this file
    /// (`./review-one.md`).
    #[serde(default)]
    pub workflow: Option<String>,
    /// An LLM step: the prompt (a template). `model`, `system`, `temperature`,
    /// `output_schema` refine it.
    #[serde(default)]
    pub prompt: Option<String>,
    /// An agent step: a tool-calling loop over registered actions and workflows.
    #[serde(default)]
    pub agent: Option<AgentDef>,
    /// A choice: an expression; `then` runs when it is true, `else` otherwise.
    #[serde(rename = "if", default)]
    pub if_: Option<String>,
    /// A choice by value: an expression whose value (as text) picks a `cases` entry, or
    /// `default`.
    #[serde(default)]
    pub switch: Option<String>,
    /// A loop over an array (an expression): `steps` run once per item, with the item as
    /// `as` (default `item`) and its position as `index`; `concurrency` iterations at a
    /// time (default 1). Output: the list of each iteration's last step output.
    #[serde(default)]
    pub for_each: Option<String>,
    /// A loop: `steps` run while the expression is true, at most `max_iterations` times
    /// (default 100; one more fails the step with kind `max_iterations`). Output: the last
    /// iteration's last step output.
    #[serde(rename = "while", default)]
    pub while_: Option<String>,
    /// Transform an array (an expression): `value` evaluated per item (as `as`).
    #[serde(default)]
    pub map: Option<String>,
    /// Keep the items of an array (an expression) for which `where` is true.
    #[serde(default)]
    pub filter: Option<String>,
    /// Fold an array (an expression): start from `initial`, evaluate `value` per item with
    /// the running value as `accumulator` (default `acc`).
    #[serde(default)]
    pub reduce: Option<String>,
    /// Branches run together: `all` (wait for every branch), `any` (the first to finish
    /// wins; the others are canceled), or a number N (the first N).
    #[serde(default)]
    pub parallel: Option<ParallelWait>,
    /// Steps whose error `catch` handles (the error as `error`); `finally` runs either way.
    #[serde(rename = "try", default)]
    pub try_: Option<Vec<StepDef>>,
    /// A durable sleep: a duration (template rendering to humantime, `"10m"`).
    #[serde(default)]
    pub sleep: Option<String>,
    /// A durable sleep until a time (template rendering to RFC 3339).
    #[serde(default)]
    pub sleep_until: Option<String>,
    /// Wait for a payload delivered to the hook (human approval): the value is a label for
    /// people reading the file (not recorded); `schema` checks the payload at delivery (a
    /// payload that fails it is refused and the hook stays open); `timeout` bounds the wait.
    #[serde(default)]
    pub hook: Option<String>,
    /// Wait for the next signal with this name (`runs signal`); `schema` checks it when the
    /// step receives it (a payload that fails it fails the step with kind `schema`).
    #[serde(default)]
    pub signal: Option<String>,
    /// Wait for an emitted event with this name; `match` narrows it.
    #[serde(default)]
    pub event: Option<String>,
    /// A durable race: the listed steps (waits, actions, prompts, sub-workflows) start
    /// together and the first to finish wins. Output: `{winner: <id>, output: <value>}`.
    #[serde(default)]
    pub select: Option<Vec<StepDef>>,
    /// Set variables: name → template, in order of the names.
    #[serde(default)]
    pub set: Option<BTreeMap<String, Value>>,
    /// Fail the run (or the enclosing `try`) with this message (a template).
    #[serde(default)]
    pub fail: Option<String>,
    /// End the workflow with this output (a template).
    #[serde(rename = "return", default)]
    pub return_: Option<Value>,

    // ---- keys of particular step types ----
    /// `action`, `workflow`: the input (a template).
    #[serde(default)]
    pub input: Option<Value>,
    /// `prompt`, `agent`: the model (`vendor/model`). Default: the engine's.
    #[serde(default)]
    pub model: Option<String>,
    /// `prompt`: a system message (a template).
    #[serde(default)]
    pub system: Option<String>,
    /// `prompt`: the sampling temperature.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// `prompt`: a JSON Schema the answer must match (the output is then the parsed
    /// object, not text).
    #[serde(default)]
    pub output_schema: Option<Value>,
    /// `agent`: the user message (a template).
    #[serde(default)]
    pub message: Option<String>,
    /// `if`: the steps run when the condition is true.
    #[serde(default)]
    pub then: Option<Vec<StepDef>>,
    /// `if`: the steps run when it is false.
    #[serde(rename = "else", default)]
    pub else_: Option<Vec<StepDef>>,
    /// `switch`: value (as text) → steps.
    #[serde(default)]
    pub cases: Option<BTreeMap<String, Vec<StepDef>>>,
    /// `switch`: the steps run when no case matches.
    #[serde(default)]
    pub default: Option<Vec<StepDef>>,
    /// `for_each`, `while`: the loop body.
    #[serde(default)]
    pub steps: Option<Vec<StepDef>>,
    /// `for_each`, `map`, `filter`, `reduce`: the item's variable name. Default `item`.
    #[serde(rename = "as", default)]
    pub as_: Option<String>,
    /// `for_each`: iterations at a time (through `fan_out`). Default 1.
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// `while`: the most iterations. Default 100.
    #[serde(default)]
    pub max_iterations: Option<u32>,
    /// `map`, `reduce`: the template evaluated per item.
    #[serde(default)]
    pub value: Option<Value>,
    /// `filter`: the expression an item must satisfy.
    #[serde(rename = "where", default)]
    pub where_: Option<String>,
    /// `reduce`: the starting value (a template).
    #[serde(default)]
    pub initial: Option<Value>,
    /// `reduce`: the running value's variable name. Default `acc`.
    #[serde(default)]
    pub accumulator: Option<String>,
    /// `parallel`: the branches.
    #[serde(default)]
    pub branches: Option<Vec<BranchDef>>,
    /// `try`: the steps run when a `try` step fails (the error as `error`:
    /// `{kind, message}`).
    #[serde(default)]
    pub catch: Option<Vec<StepDef>>,
    /// `try`: the steps run after `try` (and `catch`), whatever happened.
    #[serde(rename = "finally", default)]
    pub finally: Option<Vec<StepDef>>,
    /// `hook`, `signal`: the JSON Schema the payload must match.
    #[serde(default)]
    pub schema: Option<Value>,
    /// `event`: JSON pointer → value the event's data must hold (`{"/order_id": "{{
    /// inputs.order }}"}`; values are templates).
    #[serde(rename = "match", default)]
    pub match_: Option<BTreeMap<String, Value>>,
    /// `fail`: the error kind. Default `workflow_failed`.
    #[serde(default)]
    pub kind: Option<String>,
}

/// An `agent` step's agent.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentDef {
    /// The agent's name (its site key's callee, shown in the UI). Default: the step id.
    #[serde(default)]
    pub name: Option<String>,
    /// The system instructions (a template).
    #[serde(default)]
    pub instructions: Option<String>,
    /// The slugs of registered actions and workflows the agent may call as tools.
    #[serde(default)]
    pub tools: Vec<String>,
    /// The most model turns. Default 10.
    #[serde(default)]
    pub max_turns: Option<u32>,
}

/// One branch of a `parallel` step.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BranchDef {
    /// The branch's name: its key in the step's output.
    pub name: String,
    /// Its steps.
    pub steps: Vec<StepDef>,
}

/// How many branches of a `parallel` step to wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ParallelWait {
    /// `all`, `any`.
    Mode(WaitMode),
    /// The first N branches to finish (the others are canceled).
    Count(u32),
}

/// `all` or `any`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WaitMode {
    /// Every branch. Output: branch name → its last step's output.
    All,
    /// The first branch to finish. Output: `{winner: <name>, output: <value>}`.
    Any,
}

/// A step's retry policy (`retry:`).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryDef {
    /// Attempts in all, the first included (`3`: up to two retries).
    pub max_attempts: u32,
    /// `exponential` (default: the delay doubles per retry, ±25 % jitter) or `fixed`.
    #[serde(default)]
    pub backoff: Option<Backoff>,
    /// The first (or every, for `fixed`) delay (humantime). Default `1s`.
    #[serde(default)]
    pub delay: Option<String>,
    /// The cap on one delay (humantime). Default `5m`.
    #[serde(default)]
    pub max_delay: Option<String>,
}

/// How a retry's delay grows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Backoff {
    /// Doubles per retry, with ±25 % jitter.
    Exponential,
    /// The same delay before every retry.
    Fixed,
}

/// What a step's failure does (`error_handling:`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorHandling {
    /// The error goes up (the default).
    Stop,
    /// The workflow goes on; the step's status is `failed`.
    Continue,
    /// The `fallback` steps run instead.
    Fallback,
    /// Compensations of finished steps run, last first; then the error goes up.
    Rollback,
}
