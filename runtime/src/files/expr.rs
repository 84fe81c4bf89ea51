//! Expressions and templates of workflow files, evaluated with minijinja over a scope
//! value (`{inputs, steps, vars, ctx, <loop variables>}`).
//!
//! Evaluation is deterministic: the environment has no functions that read a clock,
//! random numbers or I/O, and undefined names are errors (strict undefined), so a
//! replay computes exactly what the first execution did from the same recorded values.

use std::collections::BTreeSet;

use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;

use super::program::{Expr, Template};

/// The one environment: strict undefined, the built-in filters and tests, no loader.
fn environment() -> &'static Environment<'static> {
    static ENV: std::sync::OnceLock<Environment<'static>> = std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env
    })
}

/// An expression or template that failed to compile or evaluate: the message, and the
/// 1-based line within the expression text when minijinja names one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ExprError {
    /// What went wrong (minijinja's description).
    pub(crate) message: String,
}

impl std::fmt::Display for ExprError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn error(e: &minijinja::Error) -> ExprError {
    let mut message = e.kind().to_string();
    if let Some(detail) = e.detail() {
        message = format!("{message}: {detail}");
    }
    ExprError { message }
}

/// The single expression a string holds when it is exactly `{{ expr }}`.
pub(crate) fn whole_expression(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}")).then(|| inner.trim())
}

/// The variable paths (`inputs.repo`, `steps.fetch.output`) an expression reads.
///
/// # Errors
/// The expression does not compile.
pub(crate) fn expression_names(source: &str) -> Result<BTreeSet<String>, ExprError> {
    let compiled = environment()
        .compile_expression(source)
        .map_err(|e| error(&e))?;
    Ok(compiled.undeclared_variables(true).into_iter().collect())
}

/// The variable paths a template string reads.
///
/// # Errors
/// The template does not compile.
pub(crate) fn template_names(text: &str) -> Result<BTreeSet<String>, ExprError> {
    if let Some(expr) = whole_expression(text) {
        return expression_names(expr);
    }
    let compiled = environment()
        .template_from_str(text)
        .map_err(|e| error(&e))?;
    Ok(compiled.undeclared_variables(true).into_iter().collect())
}

/// Evaluates expression text over `scope`.
///
/// # Errors
/// It does not compile, reads an undefined name, or fails (a type error, a filter's
/// error).
pub(crate) fn eval_source(source: &str, scope: &Value) -> Result<Value, ExprError> {
    let compiled = environment()
        .compile_expression(source)
        .map_err(|e| error(&e))?;
    let value = compiled
        .eval(minijinja::Value::from_serialize(scope))
        .map_err(|e| error(&e))?;
    serde_json::to_value(&value).map_err(|e| ExprError {
        message: format!("the value is not JSON: {e}"),
    })
}

/// Evaluates `expr` over `scope`.
///
/// # Errors
/// As [`eval_source`].
pub(crate) fn eval(expr: &Expr, scope: &Value) -> Result<Value, ExprError> {
    eval_source(&expr.source, scope)
}

/// Whether `expr` is true over `scope`, by minijinja's truthiness (`false`, `0`, `""`,
/// `[]`, `{}`, `none` are false).
///
/// # Errors
/// As [`eval_source`].
pub(crate) fn is_true(expr: &Expr, scope: &Value) -> Result<bool, ExprError> {
    let compiled = environment()
        .compile_expression(&expr.source)
        .map_err(|e| error(&e))?;
    let value = compiled
        .eval(minijinja::Value::from_serialize(scope))
        .map_err(|e| error(&e))?;
    Ok(value.is_true())
}

/// Renders a template value over `scope`: strings that are exactly `{{ expr }}` become
/// the expression's value, other strings with `{{` render to strings, arrays and objects
/// are rendered member by member, everything else is returned as is.
///
/// # Errors
/// As [`eval_source`], for the first string that fails.
pub(crate) fn render_value(value: &Value, scope: &Value) -> Result<Value, ExprError> {
    Ok(match value {
        Value::String(text) => {
            if let Some(expr) = whole_expression(text) {
                eval_source(expr, scope)?
            } else if text.contains("{{") || text.contains("{%") {
                let rendered = environment()
                    .render_str(text, minijinja::Value::from_serialize(scope))
                    .map_err(|e| error(&e))?;
                Value::String(rendered)
            } else {
                value.clone()
            }
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| render_value(item, scope))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_value(v, scope)?)))
                .collect::<Result<_, ExprError>>()?,
        ),
        other => other.clone(),
    })
}

/// Renders `template` over `scope` (see [`render_value`]).
///
/// # Errors
/// As [`render_value`].
pub(crate) fn render(template: &Template, scope: &Value) -> Result<Value, ExprError> {
    render_value(&template.value, scope)
}
