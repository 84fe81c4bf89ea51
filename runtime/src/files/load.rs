//! Loading a directory of workflow files and registering them as workflows.

use std::path::Path;
use std::sync::Arc;

use super::program::{StepKind, WorkflowFile};
use super::run::Program;
use super::{FileError, FileErrors};
use crate::EngineError;
use crate::registry::{DynamicWorkflow, Registry};
use crate::step::{MessageDecl, WorkflowOptions};

/// Reads, parses and checks every workflow file (`*.md`, `*.yaml`, `*.yml`) in `dir` and
/// its subdirectories, in path order, against `registry`.
///
/// # Errors
/// Every problem in every file (a file that cannot be read included).
pub fn load_dir(dir: &Path, registry: &Registry) -> Result<Vec<WorkflowFile>, FileErrors> {
    let mut paths = Vec::new();
    let mut pending = vec![dir.to_owned()];
    let mut errors = Vec::new();
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) => {
                errors.push(FileError::new(
                    &dir,
                    super::Pos { line: 1, column: 1 },
                    format!("cannot read the directory: {e}"),
                ));
                continue;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if super::is_workflow_file(&path) {
                paths.push(path);
            }
        }
    }
    paths.sort();
    let mut files = Vec::new();
    for path in paths {
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                errors.push(FileError::new(
                    &path,
                    super::Pos { line: 1, column: 1 },
                    format!("cannot read the file: {e}"),
                ));
                continue;
            }
        };
        match super::parse_file(&path, &text) {
            Ok(file) => files.push(file),
            Err(FileErrors(mut found)) => errors.append(&mut found),
        }
    }
    if let Err(FileErrors(mut found)) = super::check_files(&mut files, registry) {
        errors.append(&mut found);
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(FileErrors(errors))
    }
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

fn duration(
    text: Option<&str>,
    what: &str,
    file: &WorkflowFile,
) -> Result<Option<std::time::Duration>, EngineError> {
    text.map(|t| {
        humantime::parse_duration(t).map_err(|e| {
            EngineError::Config(format!(
                "{}: options.{what} `{t}` is not a duration: {e}",
                file.path.display()
            ))
        })
    })
    .transpose()
}

/// Leaks the signal declarations of `file`: one per distinct `signal` step name, with an
/// any-JSON payload validator (a `signal` step's own `schema` is checked by the step).
fn signal_decls(file: &WorkflowFile) -> &'static [MessageDecl] {
    crate::ctx::signal::any_payload_signals(file.all_steps().into_iter().filter_map(|step| {
        match &step.kind {
            StepKind::Signal { name, .. } => Some(name.as_str()),
            _ => None,
        }
    }))
}

/// The event of the file's `event` trigger, if it has one.
fn on_event(file: &WorkflowFile) -> Option<&'static str> {
    file.triggers
        .iter()
        .find_map(|t| t.event.as_deref())
        .map(leak)
}

/// Registers `files` in `registry` as workflows: each with its manifest, options, the
/// signals its `signal` steps wait for (deliverable with `runs signal`) and the event of
/// its `event` trigger (`on_event`). Cron, webhook and poll triggers are the engine
/// builder's (`EngineBuilder::workflow_dir` adds them).
///
/// # Errors
/// [`EngineError::Config`] when a file's slug is already taken, or an option or schema is
/// invalid.
pub fn register_files(
    registry: &mut Registry,
    files: Vec<WorkflowFile>,
) -> Result<(), EngineError> {
    for file in files {
        let manifest = super::manifest::manifest(&file);
        let options = WorkflowOptions {
            max_attempts: file
                .options
                .max_attempts
                .unwrap_or(WorkflowOptions::DEFAULT.max_attempts),
            retention: duration(file.options.retention.as_deref(), "retention", &file)?,
            max_history_events: file.options.max_history_events,
            timeout: duration(file.options.timeout.as_deref(), "timeout", &file)?,
            queue: file.options.queue.as_deref().map(leak),
            messages: signal_decls(&file),
            on_event: on_event(&file),
            ..WorkflowOptions::DEFAULT
        };
        let workflow = DynamicWorkflow {
            slug: leak(&file.slug),
            description: leak(&file.description),
            origin: leak(&format!("workflow file {}", file.path.display())),
            path: Some(Box::leak(file.path.clone().into_boxed_path())),
            source: Some(leak(&file.source)),
            input_schema: file.input_schema.clone(),
            output_schema: file.output_schema.clone(),
            options,
            sites: manifest.sites,
            shape: manifest.shape,
            body: {
                let program = Arc::new(Program { file, manifest });
                Arc::new(move |ctx, input| super::run::body(program.clone(), ctx, input))
            },
        };
        registry.add_dynamic(workflow)?;
    }
    Ok(())
}
