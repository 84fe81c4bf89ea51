//! The scope expressions of a file are evaluated over: one JSON object
//!
//! ```text
//! {
//!   inputs,                                  // the run input
//!   steps: {<id>: {output, status, error}},  // the latest occurrence of each step
//!   vars: {<name>: value},                   // `vars`, `set`, `output_variable`
//!   ctx: {run_id, workflow, attempt, now, user, project},
//!   <loop variables>,                        // `item`/`as`, `index`, `acc`/`accumulator`
//!   error,                                   // {kind, message}, inside `catch`/`fallback`
//! }
//! ```
//!
//! `status` is `completed`, `skipped` (its `when` was false), `failed` (`error_handling:
//! continue`), `fallback` (its `fallback` steps gave the output) or `canceled` (a `select`
//! arm that lost).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::{ActionError, Ctx};

/// The scope of a run of a file (see the module docs).
#[derive(Clone, Debug)]
pub(crate) struct Scope(Value);

fn object(value: &mut Value) -> &mut Map<String, Value> {
    if !value.is_object() {
        *value = Value::Object(Map::new());
    }
    match value {
        Value::Object(map) => map,
        _ => unreachable!("made an object above"),
    }
}

impl Scope {
    /// The scope at the start of a run: `inputs`, `ctx` (with `now`, recorded once at the
    /// body's start), no steps and no variables.
    pub(crate) fn new(ctx: &Ctx, input: Value, now: DateTime<Utc>) -> Scope {
        Scope(json!({
            "inputs": input,
            "steps": {},
            "vars": {},
            "ctx": {
                "run_id": ctx.run_id().to_string(),
                "workflow": ctx.workflow(),
                "attempt": ctx.attempt(),
                "now": now.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                "user": ctx.user(),
                "project": ctx.project(),
            },
        }))
    }

    /// The scope as the JSON value expressions read.
    pub(crate) fn value(&self) -> &Value {
        &self.0
    }

    fn map(&mut self) -> &mut Map<String, Value> {
        object(&mut self.0)
    }

    fn section(&mut self, name: &str) -> &mut Map<String, Value> {
        object(self.map().entry(name).or_insert_with(|| json!({})))
    }

    /// Sets `vars.<name>`.
    pub(crate) fn set_var(&mut self, name: &str, value: Value) {
        self.section("vars").insert(name.to_owned(), value);
    }

    /// Records step `id`'s latest occurrence: `steps.<id> = {output, status, error}`.
    pub(crate) fn set_step(
        &mut self,
        id: &str,
        output: Value,
        status: &str,
        error: Option<&ActionError>,
    ) {
        let error = error.map_or(Value::Null, error_value);
        self.section("steps").insert(
            id.to_owned(),
            json!({"output": output, "status": status, "error": error}),
        );
    }

    /// Sets a top-level name (a loop variable, `error`), returning what it held, for
    /// [`Scope::restore`].
    pub(crate) fn bind(&mut self, name: &str, value: Value) -> Option<Value> {
        self.map().insert(name.to_owned(), value)
    }

    /// Puts back what [`Scope::bind`] returned.
    pub(crate) fn restore(&mut self, name: &str, previous: Option<Value>) {
        match previous {
            Some(value) => {
                self.map().insert(name.to_owned(), value);
            }
            None => {
                self.map().remove(name);
            }
        }
    }

    /// Takes into this scope the `steps` and `vars` entries that `branch` (which started
    /// as a copy of `base`) changed: what a loop iteration or a parallel branch did,
    /// merged in item or branch order.
    pub(crate) fn merge(&mut self, base: &Scope, branch: &Scope) {
        for section in ["steps", "vars"] {
            let Some(Value::Object(changed)) = branch.0.get(section) else {
                continue;
            };
            let before = base.0.get(section);
            let changes: Vec<(String, Value)> = changed
                .iter()
                .filter(|(k, v)| before.and_then(|b| b.get(k.as_str())) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let target = self.section(section);
            for (k, v) in changes {
                target.insert(k, v);
            }
        }
    }
}

/// An error as the scope shows it: `{kind, message}`.
pub(crate) fn error_value(error: &ActionError) -> Value {
    json!({"kind": error.kind, "message": error.message})
}
