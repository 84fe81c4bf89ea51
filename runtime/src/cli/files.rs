//! `workflows check --files <dir>` and `workflows schema --file-format`: workflow files
//! from the command line.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::{EXIT_COMPLETED, EXIT_FAILED};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::files::{FileError, FileErrors, WorkflowFile};

/// `workflows schema --file-format`: prints the JSON Schema of workflow files.
///
/// # Errors
/// Only when the schema cannot be printed as JSON (never in practice).
pub(super) fn print_format_schema() -> Result<u8, EngineError> {
    println!(
        "{}",
        serde_json::to_string_pretty(&crate::files::format_schema())?
    );
    Ok(EXIT_COMPLETED)
}

/// `workflows check --files <dir>`: loads every workflow file in `dir` against `engine`'s
/// registry (its code actions and workflows) and triggers, as `--workflows-dir` would,
/// without registering anything. Prints each problem on standard error as
/// `file:line:col: message` (with its help line), then a count; or "N files OK" on
/// standard output. With `as_json`, one object `{"files": N, "errors": [{path, line,
/// column, key, message, help}]}` on standard output. Exit 1 when there is a problem.
///
/// # Errors
/// None: every problem is reported in the output and the exit code.
pub(super) fn check_dir(engine: &Engine, dir: &Path, as_json: bool) -> Result<u8, EngineError> {
    let (count, errors) = check(engine, dir);
    if as_json {
        let errors: Vec<_> = errors
            .iter()
            .map(|e| {
                json!({
                    "path": e.path.display().to_string(),
                    "line": e.at.line,
                    "column": e.at.column,
                    "key": e.key,
                    "message": e.message,
                    "help": e.help,
                })
            })
            .collect();
        println!("{}", json!({ "files": count, "errors": errors }));
    } else if errors.is_empty() {
        let noun = if count == 1 { "file" } else { "files" };
        println!("{count} {noun} OK in {}", dir.display());
    } else {
        for error in &errors {
            eprintln!("{error}");
        }
        let noun = if errors.len() == 1 {
            "problem"
        } else {
            "problems"
        };
        eprintln!("{} {noun} in {}", errors.len(), dir.display());
    }
    Ok(if errors.is_empty() {
        EXIT_COMPLETED
    } else {
        EXIT_FAILED
    })
}

/// How many workflow files `dir` holds, and every problem found loading them: what the
/// load finds (parse and check errors), then the triggers of every file that parses.
fn check(engine: &Engine, dir: &Path) -> (usize, Vec<FileError>) {
    let paths = workflow_files(dir);
    let (loaded, mut errors) = match crate::files::load_dir(dir, engine.registry()) {
        Ok(files) => (Some(files), Vec::new()),
        Err(FileErrors(errors)) => (None, errors),
    };
    // The triggers of the files that parse, also when another file does not.
    let parsed: Vec<WorkflowFile> = match &loaded {
        Some(files) => files.clone(),
        None => paths
            .iter()
            .filter_map(|path| {
                let text = std::fs::read_to_string(path).ok()?;
                crate::files::parse_file(path, &text).ok()
            })
            .collect(),
    };
    if let Err(FileErrors(found)) = crate::trigger::file_triggers(engine.triggers(), &parsed) {
        errors.extend(found);
    }
    // Registering into a copy finds slugs taken by code workflows.
    let mut registry = engine.registry().clone();
    for file in loaded.into_iter().flatten() {
        let (path, slug) = (file.path.clone(), file.slug.clone());
        if let Err(error) = crate::files::register_files(&mut registry, vec![file]) {
            let message = match error {
                EngineError::Config(message) => message,
                other => other.to_string(),
            };
            errors.push(
                FileError::new(path, crate::files::Pos { line: 1, column: 1 }, message)
                    .key("slug")
                    .help(format!(
                        "set `slug:` in the front matter to a slug other than `{slug}`"
                    )),
            );
        }
    }
    errors.sort_by(|a, b| (&a.path, a.at).cmp(&(&b.path, b.at)));
    (paths.len(), errors)
}

/// The workflow files under `dir`, in path order (none when it cannot be read: the load
/// reports that).
fn workflow_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if crate::files::is_workflow_file(&path) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}
