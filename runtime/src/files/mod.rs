//! Workflow files (DESIGN "Workflow files"): workflows written as Markdown with YAML
//! front matter, or as plain YAML, run by the same engine as `#[workflow]` fns — the same
//! event log, replay, step ids, checks, testkit, graph and UI. A file composes what the
//! binary registers: its `action` steps call `#[action]`s by slug; it runs no code of its
//! own. The guide's "Workflow files" section (`docs/GUIDE.md`) is the full reference.
//!
//! ```yaml
//! # workflows/greet.yaml: the slug is the file name, `greet`
//! input: { type: object, required: [name], properties: { name: { type: string } } }
//! steps:
//!   - id: brief                        # recorded as brief#0
//!     action: research-signup
//!     input: { name: "{{ inputs.name }}", email: "{{ inputs.name | lower }}@example.com" }
//!     retry: { max_attempts: 3, backoff: fixed, delay: 10s }
//!   - id: done
//!     return: "{{ steps.brief.output }}"  # exactly one `{{ }}`: the value, not its text
//! ```
//!
//! - [`format`]: the file format's types — every key, with its meaning and default — and,
//!   through schemars, its JSON Schema ([`format_schema`], `workflows schema
//!   --file-format`).
//! - [`WorkflowFile`]: a parsed and checked file ([`parse_file`] checks one file on its
//!   own, [`check_files`] what needs the registry and the other files: actions, workflows,
//!   agent tools, names in scope, action inputs); [`load_dir`] reads, parses and checks a
//!   directory of them (`*.md`, `*.yaml`, `*.yml`, subdirectories included) and
//!   [`register_files`] registers them as workflows.
//! - Loading: `EngineBuilder::workflow_dir(dir)` (loads and registers them at `build`),
//!   the CLI's `--workflows-dir` and `REPRISE_WORKFLOWS_DIR` (read by
//!   `EngineBuilder::from_env`); `workflows check --files <dir>` checks a directory
//!   without starting anything.
//! - Step ids: a step's `id` is its site key, so a file step `fetch` records as `fetch#0`,
//!   `fetch#1`, …; a `for_each`/`while` iteration is a scope named after the loop step
//!   (`sources#1/fetch#0`), a `workflow` step's sub-workflow one named after the step
//!   (`review#0/fetch-diff#0`). The file's manifest (its sites and control-flow shape)
//!   feeds `workflows graph`, `workflows check` and the run's fingerprint (which also
//!   hashes the file's text): a run whose recorded steps an edit changed fails with a
//!   `NonDeterminism` error whose cause says the workflow changed (`code_changed`).
//! - Expressions and templates are [minijinja](https://docs.rs/minijinja) over `inputs`,
//!   `steps.<id>.output|status|error`, `vars`, `ctx` (`run_id`, `workflow`, `attempt`,
//!   `now`, `user`, `project`) and loop variables; a name not in scope is an error the
//!   checks report, and evaluation is deterministic (no clock, random numbers or I/O:
//!   `ctx.now` is recorded).
//! - Every error is a [`FileError`] naming the file, line and column (1-based), the
//!   offending key and how to fix it: `path:line:col: message`, then `` (key `k`) ``
//!   when a key is named and a `help:` line when there is one.

pub mod format;
mod program;

mod check;
pub(crate) mod expr;
mod load;
pub(crate) mod manifest;
mod parse;
pub(crate) mod run;
mod source;
mod yaml;

use std::fmt;
use std::path::{Path, PathBuf};

pub use check::check_files;
pub use load::{load_dir, register_files};
pub use parse::parse_file;
pub use program::{Expr, Pos, Step, StepKind, Template, WorkflowFile};

/// One problem in a workflow file: where (file, 1-based line and column, the offending
/// key when there is one), what, and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// Where: line and column (1-based).
    pub at: Pos,
    /// The offending key (`steps[2].actoin`, `action`), when there is one.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when we can say.
    pub help: Option<String>,
}

impl FileError {
    /// An error at `at` in `path`.
    pub fn new(path: impl Into<PathBuf>, at: Pos, message: impl Into<String>) -> FileError {
        FileError {
            path: path.into(),
            at,
            key: None,
            message: message.into(),
            help: None,
        }
    }

    /// Names the offending key.
    pub fn key(mut self, key: impl Into<String>) -> FileError {
        self.key = Some(key.into());
        self
    }

    /// Adds how to fix it.
    pub fn help(mut self, help: impl Into<String>) -> FileError {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for FileError {
    /// `path:line:col: message` (with `` (key `k`) `` when a key is named), then
    /// `\n  help: …` when there is help.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.path.display(),
            self.at.line,
            self.at.column,
            self.message
        )?;
        if let Some(key) = &self.key {
            write!(f, " (key `{key}`)")?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FileError {}

/// The problems found in one or more workflow files, in file and position order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileErrors(pub Vec<FileError>);

impl fmt::Display for FileErrors {
    /// One error per line block, each as [`FileError`] prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FileErrors {}

impl From<FileError> for FileErrors {
    fn from(error: FileError) -> Self {
        FileErrors(vec![error])
    }
}

impl From<FileErrors> for crate::EngineError {
    fn from(errors: FileErrors) -> Self {
        crate::EngineError::Config(errors.to_string())
    }
}

/// The JSON Schema of the workflow file format (a [`format::WorkflowDoc`]), generated
/// with schemars from the types files are read into: what `workflows schema
/// --file-format` prints, for editors (YAML language servers) and CI linters.
pub fn format_schema() -> serde_json::Value {
    crate::schema::schema_of::<format::WorkflowDoc>()
}

/// Whether `path` names a workflow file by its extension (`.md`, `.yaml`, `.yml`).
pub fn is_workflow_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("md" | "yaml" | "yml")
    )
}
