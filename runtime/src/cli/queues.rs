//! `queues list`, and the queue settings every command reads (`--queues-file`,
//! `REPRISE_QUEUES`).

use clap::Subcommand;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};

use super::EXIT_COMPLETED;
use crate::engine::{Engine, EngineBuilder};
use crate::error::EngineError;
use crate::queue::Queue;

/// The environment variable that may hold queue settings: a JSON array of queues, or
/// `@path` to a file holding one.
pub(crate) const QUEUES_ENV: &str = "REPRISE_QUEUES";

#[derive(Debug, Subcommand)]
pub(crate) enum QueuesCommand {
    /// List the queues: their limits, admitted unfinished runs (`active`), admissions in
    /// the current rate window, step permits in the current step-rate window, and queued
    /// runs waiting for admission.
    List {
        /// Print JSON (the array `GET /queues` answers).
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `queues` command; returns the exit code.
pub(super) async fn dispatch(engine: &Engine, command: QueuesCommand) -> Result<u8, EngineError> {
    match command {
        QueuesCommand::List { json } => {
            let queues = crate::http::queues::overview(engine).await?;
            if json {
                println!("{}", serde_json::to_string(&queues)?);
                return Ok(EXIT_COMPLETED);
            }
            if queues.is_empty() {
                println!(
                    "no queues: configure one in code (`Engine::builder().queue(..)`), with \
                     `--queues-file` or {QUEUES_ENV}, or name one in `#[workflow(queue = ..)]`"
                );
                return Ok(EXIT_COMPLETED);
            }
            let mut table = Table::new();
            table.load_preset(UTF8_BORDERS_ONLY).set_header(vec![
                "queue",
                "limits",
                "key",
                "active",
                "in window",
                "step permits",
                "waiting",
            ]);
            for queue in &queues {
                table.add_row(vec![
                    queue.name.clone(),
                    queue.limits(),
                    queue.key.clone().unwrap_or_default(),
                    queue.active.to_string(),
                    queue.admitted_in_window.to_string(),
                    queue
                        .step_permits_in_window
                        .map(|n| n.to_string())
                        .unwrap_or_default(),
                    queue.waiting.to_string(),
                ]);
            }
            println!("{table}");
            Ok(EXIT_COMPLETED)
        }
    }
}

/// Adds the queues of `--queues-file` (`file`) and of `REPRISE_QUEUES` to `builder`.
///
/// # Errors
/// [`EngineError::Config`] (exit 2) naming the file (or the variable) when it cannot be
/// read, is not a JSON array of queues, or holds a queue whose settings are invalid.
pub(super) fn configure(
    builder: EngineBuilder,
    file: Option<&std::path::Path>,
) -> Result<EngineBuilder, EngineError> {
    let mut builder = builder;
    if let Some(path) = file {
        for queue in read_file(path, "--queues-file")? {
            builder = builder.queue(queue);
        }
    }
    if let Some(value) = std::env::var_os(QUEUES_ENV) {
        let value = value.to_string_lossy().into_owned();
        let queues = match value.trim().strip_prefix('@') {
            Some(path) => read_file(std::path::Path::new(path), QUEUES_ENV)?,
            None => parse(&value, &format!("{QUEUES_ENV} (its value)"))?,
        };
        for queue in queues {
            builder = builder.queue(queue);
        }
    }
    Ok(builder)
}

/// The queues in the file at `path` (named by `what`, the flag or variable).
fn read_file(path: &std::path::Path, what: &str) -> Result<Vec<Queue>, EngineError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        EngineError::Config(format!(
            "cannot read the queue settings file `{}` ({what}): {e}",
            path.display()
        ))
    })?;
    parse(
        &text,
        &format!("the queue settings file `{}`", path.display()),
    )
}

/// The queues in `text`, checked; errors name `source`.
fn parse(text: &str, source: &str) -> Result<Vec<Queue>, EngineError> {
    let queues: Vec<Queue> = serde_json::from_str(text).map_err(|e| {
        EngineError::Config(format!(
            "{source} is not a JSON array of queues: {e}; write e.g. `[{{\"name\": \"llm\", \
             \"concurrency\": 4, \"rate_limit\": {{\"limit\": 60, \"period\": \"1m\"}}}}]`"
        ))
    })?;
    for queue in &queues {
        queue
            .check()
            .map_err(|e| EngineError::Config(format!("{source}: {e}")))?;
    }
    Ok(queues)
}
