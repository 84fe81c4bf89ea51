//! `events emit <name> --data JSON [--id ID] [--json]`: emits an event
//! ([`crate::Engine::emit`]) and prints what it did. A bad name, id or data exits with 2.

use clap::Subcommand;
use serde_json::json;

use super::{EXIT_COMPLETED, read_json};
use crate::engine::Engine;
use crate::error::EngineError;

/// `events …`.
#[derive(Debug, Subcommand)]
pub(crate) enum EventsCommand {
    /// Emit an event: every run waiting for NAME (`ctx.wait_for_event`) gets it, and every
    /// workflow declared `on_event = "NAME"` starts one run with the data as input, once per
    /// event id. Emit again with the same `--id` to retry: nothing happens twice.
    Emit {
        /// The event's name, such as `order.paid`.
        name: String,
        /// The event's data: JSON text, or @path/to/file.json.
        #[arg(long, default_value = "null", value_name = "JSON")]
        data: String,
        /// The event's id (a repeat of the same name and id is processed once); a fresh
        /// UUID v7 when absent.
        #[arg(long, value_name = "ID")]
        id: Option<String>,
        /// Print JSON: `{"id","duplicate","delivered","started","rejected"}`.
        #[arg(long)]
        json: bool,
    },
}

/// Runs an `events` command.
pub(crate) async fn dispatch(engine: &Engine, command: EventsCommand) -> Result<u8, EngineError> {
    match command {
        EventsCommand::Emit {
            name,
            data,
            id,
            json,
        } => {
            let data = read_json(&data, "--data")?;
            let emitted = engine.emit(&name, data, id).await?;
            if json {
                println!(
                    "{}",
                    json!({
                        "id": emitted.id,
                        "duplicate": emitted.duplicate,
                        "delivered": emitted.delivered,
                        "started": emitted.started,
                        "rejected": emitted.rejected,
                    })
                );
                return Ok(EXIT_COMPLETED);
            }
            if emitted.duplicate {
                println!(
                    "event {name} {} was emitted before: nothing started or delivered twice",
                    emitted.id
                );
            } else {
                println!("event {name} {} emitted", emitted.id);
            }
            println!("delivered to {} waiting run(s)", emitted.delivered);
            for run in &emitted.started {
                println!("started run {run}");
            }
            for rejected in &emitted.rejected {
                println!(
                    "not started: workflow {}: {}",
                    rejected.workflow, rejected.reason
                );
            }
            Ok(EXIT_COMPLETED)
        }
    }
}
