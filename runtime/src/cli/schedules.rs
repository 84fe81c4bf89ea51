//! `schedules list|get|create|update|pause|resume|delete|trigger|backfill`: schedules as
//! data (see [`crate::trigger::ScheduleSpec`]) from the command line. Every change is
//! recorded as made by `cli:$USER`. Bad input (a bad cron expression, interval, time zone
//! or window, an unknown workflow or schedule, input that does not fit the workflow's
//! schema, a change to a schedule declared in code) exits with 2.

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use serde_json::{Map, Value, json};

use super::{EXIT_COMPLETED, EXIT_USAGE, read_json};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::trigger::{OverlapPolicy, Schedule, ScheduleError, ScheduleSpec};

/// `schedules …`.
#[derive(Debug, Subcommand)]
pub(crate) enum SchedulesCommand {
    /// List every schedule: those declared in code (source `code`) and those kept in the
    /// database (source `data`).
    List {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Show one schedule.
    Get {
        /// The schedule's name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create a schedule in the database; `dev` and `worker` fire it within a second,
    /// without a restart. Its first tick is the first one after now.
    Create {
        /// The schedule's name (letters, digits, `-`, `_`, `.`).
        name: String,
        /// The workflow each tick starts.
        #[arg(long, value_name = "SLUG")]
        workflow: String,
        #[command(flatten)]
        fields: ScheduleFields,
        /// Create it paused (`schedules resume` starts it).
        #[arg(long)]
        paused: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change fields of a schedule kept in the database (the others stay; `--cron`
    /// replaces an interval and `--every` a cron expression). Schedules declared in code
    /// change in code.
    Update {
        /// The schedule's name.
        name: String,
        /// The workflow each tick starts.
        #[arg(long, value_name = "SLUG")]
        workflow: Option<String>,
        #[command(flatten)]
        fields: ScheduleFields,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Pause a schedule (also one declared in code): no tick fires until `resume`, and
    /// the ticks of the pause never fire.
    Pause {
        /// The schedule's name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Resume a paused schedule: its next tick after now fires.
    Resume {
        /// The schedule's name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a schedule kept in the database (its runs stay).
    Delete {
        /// The schedule's name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start one run of a schedule now, outside its ticks (also while it is paused).
    Trigger {
        /// The schedule's name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Fire every tick of a schedule from `--from` to `--to` (both included) that has no
    /// run yet: running it again starts nothing twice.
    Backfill {
        /// The schedule's name.
        name: String,
        /// The first instant (RFC 3339, e.g. `2026-03-02T00:00:00Z`).
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        from: DateTime<Utc>,
        /// The last instant (RFC 3339), not after now.
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        to: DateTime<Utc>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The definition flags of `create` and `update`.
#[derive(Debug, Args)]
pub(crate) struct ScheduleFields {
    /// A cron expression (five fields, or six with seconds first), e.g. `0 2 * * *`.
    #[arg(long, value_name = "EXPR", conflicts_with = "every")]
    cron: Option<String>,
    /// An interval instead of a cron expression (`30s`, `15m`, `1h`), aligned to the Unix
    /// epoch.
    #[arg(long, value_name = "DURATION")]
    every: Option<String>,
    /// The IANA time zone of the cron expression (default `UTC`), e.g. `Europe/Paris`.
    #[arg(long, value_name = "TZ")]
    time_zone: Option<String>,
    /// The input of every run: JSON text, or `@path` to read it from a file (default `{}`).
    #[arg(long, value_name = "JSON")]
    input: Option<String>,
    /// When the previous run has not ended: `skip` (default), `buffer_one` or `allow`.
    #[arg(long, value_name = "POLICY", value_parser = clap::builder::ValueParser::new(parse_overlap))]
    overlap: Option<OverlapPolicy>,
    /// Missed ticks older than this are skipped (default `1m`), e.g. `1h`.
    #[arg(long, value_name = "DURATION")]
    catch_up: Option<String>,
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    crate::engine::parse_start_at("the time", text)
}

fn parse_overlap(text: &str) -> Result<OverlapPolicy, String> {
    text.parse()
}

impl ScheduleFields {
    /// The fields given, as a JSON object of [`ScheduleSpec`] fields.
    fn patch(self, workflow: Option<String>) -> Result<Map<String, Value>, EngineError> {
        let mut patch = Map::new();
        if let Some(workflow) = workflow {
            patch.insert("workflow".into(), json!(workflow));
        }
        if let Some(cron) = self.cron {
            patch.insert("cron".into(), json!(cron));
        }
        if let Some(every) = self.every {
            patch.insert("interval".into(), json!(every));
        }
        if let Some(tz) = self.time_zone {
            patch.insert("time_zone".into(), json!(tz));
        }
        if let Some(input) = self.input {
            patch.insert("input".into(), read_json(&input, "--input")?);
        }
        if let Some(overlap) = self.overlap {
            patch.insert("overlap".into(), json!(overlap));
        }
        if let Some(window) = self.catch_up {
            patch.insert("catch_up_window".into(), json!(window));
        }
        Ok(patch)
    }
}

/// Runs a `schedules` command; returns the exit code.
pub(super) async fn dispatch(
    engine: &Engine,
    command: SchedulesCommand,
) -> Result<u8, EngineError> {
    match run(engine, command).await {
        Ok(()) => Ok(EXIT_COMPLETED),
        Err(ScheduleError::Engine(error)) => Err(error),
        Err(error) => {
            eprintln!("error: {error}");
            Ok(EXIT_USAGE)
        }
    }
}

async fn run(engine: &Engine, command: SchedulesCommand) -> Result<(), ScheduleError> {
    let by = super::cli_user();
    match command {
        SchedulesCommand::List { json } => {
            let schedules = engine.list_schedules().await?;
            if json {
                println!("{}", json!(schedules));
            } else if schedules.is_empty() {
                println!(
                    "no schedules; create one with `schedules create <name> --workflow <slug> --cron '<expr>'`"
                );
            } else {
                print_table(&schedules);
            }
        }
        SchedulesCommand::Get { name, json } => {
            let schedule = engine.get_schedule(&name).await?;
            if json {
                println!("{}", json!(schedule));
            } else {
                print_one(&schedule);
            }
        }
        SchedulesCommand::Create {
            name,
            workflow,
            fields,
            paused,
            json,
        } => {
            let patch = fields.patch(Some(workflow))?;
            let spec: ScheduleSpec = serde_json::from_value(Value::Object(patch))
                .map_err(|e| ScheduleError::Invalid(format!("schedule `{name}`: {e}")))?;
            let schedule = engine.create_schedule(&name, spec, paused, &by).await?;
            report(&schedule, json, "created");
        }
        SchedulesCommand::Update {
            name,
            workflow,
            fields,
            json,
        } => {
            let patch = fields.patch(workflow)?;
            if patch.is_empty() {
                return Err(ScheduleError::Invalid(
                    "nothing to change: give --cron, --every, --time-zone, --input, --overlap, \
                     --catch-up or --workflow"
                        .into(),
                ));
            }
            let schedule = engine
                .patch_schedule(&name, Value::Object(patch), &by)
                .await?;
            report(&schedule, json, "updated");
        }
        SchedulesCommand::Pause { name, json } => {
            let schedule = engine.pause_schedule(&name, &by).await?;
            report(&schedule, json, "paused");
        }
        SchedulesCommand::Resume { name, json } => {
            let schedule = engine.resume_schedule(&name, &by).await?;
            report(&schedule, json, "resumed");
        }
        SchedulesCommand::Delete { name, json } => {
            engine.delete_schedule(&name, &by).await?;
            if json {
                println!("{}", json!({ "name": name, "deleted": true }));
            } else {
                println!("schedule {name} deleted (its runs stay)");
            }
        }
        SchedulesCommand::Trigger { name, json } => {
            let run = engine.trigger_schedule(&name, &by).await?;
            if json {
                println!("{}", json!({ "name": name, "run_id": run }));
            } else {
                println!("schedule {name} started run {run}");
            }
        }
        SchedulesCommand::Backfill {
            name,
            from,
            to,
            json,
        } => {
            let backfill = engine.backfill_schedule(&name, from, to, &by).await?;
            if json {
                println!("{}", json!(backfill));
            } else {
                println!(
                    "schedule {name}: {} ticks from {from} to {to}: {} runs started, {} had \
                     their run already",
                    backfill.ticks.len(),
                    backfill.started.len(),
                    backfill.existing
                );
                for run in &backfill.started {
                    println!("  {run}");
                }
            }
        }
    }
    Ok(())
}

fn report(schedule: &Schedule, json: bool, what: &str) {
    if json {
        println!("{}", json!(schedule));
    } else {
        println!("schedule {} {what}", schedule.name);
        print_one(schedule);
    }
}

fn timing(schedule: &Schedule) -> String {
    match (&schedule.spec.cron, &schedule.spec.interval) {
        (Some(cron), _) => format!("cron `{cron}` ({})", schedule.spec.time_zone),
        (None, Some(every)) => format!("every {every}"),
        (None, None) => "-".into(),
    }
}

fn next(schedule: &Schedule) -> String {
    match (schedule.paused, schedule.next_tick) {
        (true, _) => "paused".into(),
        (false, Some(tick)) => tick.to_rfc3339(),
        (false, None) => "-".into(),
    }
}

fn print_table(schedules: &[Schedule]) {
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY).set_header(vec![
        "schedule",
        "source",
        "workflow",
        "when",
        "overlap",
        "next tick",
    ]);
    for schedule in schedules {
        table.add_row(vec![
            schedule.name.clone(),
            json!(schedule.source)
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            schedule.spec.workflow.clone(),
            timing(schedule),
            schedule.spec.overlap.to_string(),
            next(schedule),
        ]);
    }
    println!("{table}");
}

fn print_one(schedule: &Schedule) {
    println!(
        "  source:    {}",
        json!(schedule.source).as_str().unwrap_or_default()
    );
    println!("  workflow:  {}", schedule.spec.workflow);
    println!("  when:      {}", timing(schedule));
    println!("  input:     {}", schedule.spec.input);
    println!("  overlap:   {}", schedule.spec.overlap);
    println!("  catch-up:  {}", schedule.spec.catch_up_window);
    println!("  next tick: {}", next(schedule));
    if let (Some(at), Some(by)) = (schedule.updated_at, &schedule.updated_by) {
        println!("  changed:   {} by {by}", at.to_rfc3339());
    }
}
