//! From a file's text to a [`WorkflowFile`]: YAML → [`format`](super::format) types →
//! checked [`Step`]s, every error with its file:line:col.

use std::path::Path;

use serde_json::Value;

use super::format::{ErrorHandling, ParallelWait, StepDef, WorkflowDoc};
use super::program::{Expr, Pos, Step, StepKind, Template, WorkflowFile};
use super::{FileError, FileErrors};

/// Parses the workflow file at `path` whose contents are `text` (nothing is read from
/// disk). Checks the format and each step on its own; what needs the registry or the
/// other files (unknown actions, sub-workflow paths) is [`super::check_files`]'s.
///
/// # Errors
/// Every problem found, each naming `path`, line and column.
pub fn parse_file(path: &Path, text: &str) -> Result<WorkflowFile, FileErrors> {
    let source = super::source::split(path, text)?;
    let node = marked_yaml::parse_yaml(0, source.yaml).map_err(|e| {
        FileError::new(
            path,
            Pos {
                line: source.first_line,
                column: 1,
            },
            format!("invalid YAML: {e}"),
        )
    })?;
    let doc: WorkflowDoc = marked_yaml::from_node(&node).map_err(|e| {
        FileError::new(
            path,
            Pos {
                line: source.first_line,
                column: 1,
            },
            e.to_string(),
        )
    })?;
    let mut errors = Vec::new();
    let steps = steps(path, &doc.steps, &mut errors);
    if !errors.is_empty() {
        return Err(FileErrors(errors));
    }
    let slug = doc.slug.clone().unwrap_or_else(|| {
        path.file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("workflow")
            .to_owned()
    });
    let description = doc
        .description
        .clone()
        .unwrap_or_else(|| first_paragraph(source.markdown));
    Ok(WorkflowFile {
        path: path.to_owned(),
        slug,
        description,
        markdown: source.markdown.to_owned(),
        source: text.to_owned(),
        input_schema: doc.input.clone().unwrap_or(Value::Bool(true)),
        output_schema: doc.output.clone().unwrap_or(Value::Bool(true)),
        vars: doc
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), template(v.clone())))
            .collect(),
        triggers: doc.triggers.clone(),
        options: doc.options.clone(),
        steps,
    })
}

/// The first paragraph of Markdown text, headings skipped, lines joined.
fn first_paragraph(markdown: &str) -> String {
    markdown
        .split("\n\n")
        .map(str::trim)
        .find(|p| !p.is_empty() && !p.starts_with('#'))
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn template(value: Value) -> Template {
    Template {
        value,
        at: Pos::default(),
    }
}

fn expr(source: &str) -> Expr {
    let trimmed = source.trim();
    let inner = trimmed
        .strip_prefix("{{")
        .and_then(|s| s.strip_suffix("}}"))
        .unwrap_or(trimmed)
        .trim();
    Expr {
        source: inner.to_owned(),
        at: Pos::default(),
    }
}

fn steps(path: &Path, defs: &[StepDef], errors: &mut Vec<FileError>) -> Vec<Step> {
    defs.iter()
        .filter_map(|def| step(path, def, errors))
        .collect()
}

fn duration(path: &Path, text: &str, errors: &mut Vec<FileError>) -> Option<std::time::Duration> {
    match humantime::parse_duration(text) {
        Ok(d) => Some(d),
        Err(e) => {
            errors.push(FileError::new(
                path,
                Pos::default(),
                format!("`{text}` is not a duration: {e}"),
            ));
            None
        }
    }
}

fn step(path: &Path, def: &StepDef, errors: &mut Vec<FileError>) -> Option<Step> {
    let list = |l: &Option<Vec<StepDef>>, errors: &mut Vec<FileError>| {
        l.as_deref()
            .map(|l| steps(path, l, errors))
            .unwrap_or_default()
    };
    let input = || template(def.input.clone().unwrap_or(Value::Null));
    let item = || def.as_.clone().unwrap_or_else(|| "item".to_owned());
    let kind = if let Some(slug) = &def.action {
        StepKind::Action {
            slug: slug.clone(),
            input: input(),
        }
    } else if let Some(slug) = &def.workflow {
        StepKind::Workflow {
            slug: slug.clone(),
            input: input(),
        }
    } else if let Some(prompt) = &def.prompt {
        StepKind::Prompt {
            prompt: template(Value::String(prompt.clone())),
            model: def.model.clone(),
            system: def.system.clone().map(|s| template(Value::String(s))),
            temperature: def.temperature,
            output_schema: def.output_schema.clone(),
        }
    } else if let Some(agent) = &def.agent {
        StepKind::Agent {
            name: agent.name.clone().unwrap_or_else(|| def.id.clone()),
            instructions: agent
                .instructions
                .clone()
                .map(|s| template(Value::String(s))),
            tools: agent.tools.clone(),
            max_turns: agent.max_turns.unwrap_or(10),
            model: def.model.clone(),
            message: template(Value::String(def.message.clone().unwrap_or_default())),
        }
    } else if let Some(condition) = &def.if_ {
        StepKind::If {
            condition: expr(condition),
            then: list(&def.then, errors),
            otherwise: list(&def.else_, errors),
        }
    } else if let Some(value) = &def.switch {
        StepKind::Switch {
            value: expr(value),
            cases: def
                .cases
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), steps(path, v, errors)))
                .collect(),
            default: list(&def.default, errors),
        }
    } else if let Some(items) = &def.for_each {
        StepKind::ForEach {
            items: expr(items),
            item: item(),
            concurrency: def.concurrency.unwrap_or(1).max(1) as usize,
            steps: list(&def.steps, errors),
        }
    } else if let Some(condition) = &def.while_ {
        StepKind::While {
            condition: expr(condition),
            max_iterations: def.max_iterations.unwrap_or(100),
            steps: list(&def.steps, errors),
        }
    } else if let Some(items) = &def.map {
        StepKind::Map {
            items: expr(items),
            item: item(),
            value: template(def.value.clone().unwrap_or(Value::Null)),
        }
    } else if let Some(items) = &def.filter {
        StepKind::Filter {
            items: expr(items),
            item: item(),
            condition: expr(def.where_.as_deref().unwrap_or("true")),
        }
    } else if let Some(items) = &def.reduce {
        StepKind::Reduce {
            items: expr(items),
            item: item(),
            initial: template(def.initial.clone().unwrap_or(Value::Null)),
            accumulator: def.accumulator.clone().unwrap_or_else(|| "acc".to_owned()),
            value: template(def.value.clone().unwrap_or(Value::Null)),
        }
    } else if let Some(wait) = def.parallel {
        StepKind::Parallel {
            wait,
            branches: def
                .branches
                .iter()
                .flatten()
                .map(|b| (b.name.clone(), steps(path, &b.steps, errors)))
                .collect(),
        }
    } else if let Some(body) = &def.try_ {
        StepKind::Try {
            steps: steps(path, body, errors),
            catch: list(&def.catch, errors),
            finally: list(&def.finally, errors),
        }
    } else if let Some(d) = &def.sleep {
        StepKind::Sleep(template(Value::String(d.clone())))
    } else if let Some(t) = &def.sleep_until {
        StepKind::SleepUntil(template(Value::String(t.clone())))
    } else if let Some(label) = &def.hook {
        StepKind::Hook {
            label: label.clone(),
            schema: def.schema.clone(),
        }
    } else if let Some(name) = &def.signal {
        StepKind::Signal {
            name: name.clone(),
            schema: def.schema.clone(),
        }
    } else if let Some(name) = &def.event {
        StepKind::Event {
            name: name.clone(),
            matching: def
                .match_
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), template(v.clone())))
                .collect(),
        }
    } else if let Some(arms) = &def.select {
        StepKind::Select(steps(path, arms, errors))
    } else if let Some(set) = &def.set {
        StepKind::Set(
            set.iter()
                .map(|(k, v)| (k.clone(), template(v.clone())))
                .collect(),
        )
    } else if let Some(message) = &def.fail {
        StepKind::Fail {
            message: template(Value::String(message.clone())),
            kind: def
                .kind
                .clone()
                .unwrap_or_else(|| "workflow_failed".to_owned()),
        }
    } else if let Some(value) = &def.return_ {
        StepKind::Return(template(value.clone()))
    } else {
        errors.push(
            FileError::new(path, Pos::default(), format!("step `{}` has no step type", def.id))
                .help("give it one of: action, workflow, prompt, agent, if, switch, for_each, while, map, filter, reduce, parallel, try, sleep, sleep_until, hook, signal, event, select, set, fail, return"),
        );
        return None;
    };
    let retry = def.retry.as_ref().map(|r| {
        let delay = r
            .delay
            .as_deref()
            .and_then(|d| duration(path, d, errors))
            .unwrap_or(std::time::Duration::from_secs(1));
        let max_delay = r
            .max_delay
            .as_deref()
            .and_then(|d| duration(path, d, errors))
            .unwrap_or(std::time::Duration::from_secs(300));
        let policy = match r.backoff {
            Some(super::format::Backoff::Fixed) => {
                crate::RetryPolicy::exponential(delay).max_delay(delay)
            }
            _ => crate::RetryPolicy::exponential(delay)
                .max_delay(max_delay)
                .jitter(0.25),
        };
        policy.max_attempts(r.max_attempts.max(1))
    });
    let _ = ParallelWait::Count(0);
    Some(Step {
        id: def.id.clone(),
        at: Pos::default(),
        name: def.name.clone().unwrap_or_else(|| def.id.clone()),
        when: def.when.as_deref().map(expr),
        timeout: def
            .timeout
            .as_deref()
            .and_then(|t| duration(path, t, errors)),
        retry,
        error_handling: def.error_handling.unwrap_or(ErrorHandling::Stop),
        fallback: list(&def.fallback, errors),
        compensate: list(&def.compensate, errors),
        output_variable: def.output_variable.clone(),
        kind,
    })
}
