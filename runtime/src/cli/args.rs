//! The command-line grammar (clap derive).

use clap::{Args, Parser, Subcommand};

use crate::event::RunStatus;

/// Durable workflows: run, inspect and resume them.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub(crate) struct Cli {
    /// Database URL: `sqlite://path/to/file.db` (or a bare path), `postgres://user@host/db`, or `memory:`.
    #[arg(
        long,
        global = true,
        env = "REPRISE_DATABASE_URL",
        default_value = "sqlite://.reprise/reprise.db"
    )]
    pub(crate) db: String,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// List, run and describe workflows.
    #[command(subcommand)]
    Workflows(WorkflowsCommand),
    /// Inspect and resume runs.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Deliver hook payloads.
    #[command(subcommand)]
    Hooks(HooksCommand),
    /// Run a worker, the scheduler (sleeps, hook timeouts, retries, cron and poll
    /// triggers) and the HTTP API in one process: the local development server.
    Dev(DevArgs),
    /// Run a worker and the trigger scheduler, without HTTP: claims due runs from the
    /// database and executes them. Start as many as you like on one database.
    Worker(WorkerArgs),
}

/// `dev`'s options.
#[derive(Debug, Args)]
pub(crate) struct DevArgs {
    /// The address the HTTP API listens on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub(crate) addr: std::net::SocketAddr,
    #[command(flatten)]
    pub(crate) worker: WorkerArgs,
}

/// Worker options shared by `dev` and `worker`.
#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    /// The most runs executed at once.
    #[arg(long, default_value_t = 16)]
    pub(crate) concurrency: usize,
    /// How long a run's lease lasts unless renewed (humantime: `15s`, `1m`); another
    /// worker takes the run over this long after this process dies.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub(crate) lease: std::time::Duration,
    /// On SIGINT/SIGTERM, how long running steps may take to finish before they are
    /// dropped (and run again elsewhere).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub(crate) shutdown_grace: std::time::Duration,
    /// Do not fire cron schedules and poll sources in this process.
    #[arg(long)]
    pub(crate) no_triggers: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum HooksCommand {
    /// Deliver a payload to a waiting run's hook, then drive the run on.
    Resume {
        /// The hook's token (the last segment of its resume URL).
        token: String,
        /// The payload: JSON text, or `@path` to read it from a file.
        #[arg(long)]
        payload: String,
        /// Print one JSON object, as `workflows run --json` does.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum WorkflowsCommand {
    /// List the registered workflows.
    List,
    /// Start a run and drive it to its end, then print its output and step table.
    Run(RunArgs),
    /// Print a workflow's input and output JSON Schemas.
    Schema {
        /// The workflow's slug.
        slug: String,
    },
    /// Print a Mermaid flowchart of a workflow's call sites.
    Graph {
        /// The workflow's slug.
        slug: String,
    },
    /// Replay every recorded run against this binary's workflows, without running any
    /// step, and list the runs that no longer replay (exit code 1): gate deploys on it.
    Check {
        /// Only runs of this workflow slug.
        #[arg(long)]
        workflow: Option<String>,
        /// Only runs that have not ended (queued, running, sleeping, waiting): the ones a
        /// deploy can break.
        #[arg(long)]
        in_flight: bool,
        /// Print one JSON object (`checked`, `compatible`, `incompatible`).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The workflow's slug.
    pub(crate) slug: String,
    /// The input: JSON text, or `@path` to read it from a file.
    #[arg(long, default_value = "null")]
    pub(crate) input: String,
    /// Print one JSON object (`run_id`, `status`, `output` or `error`) instead of tables.
    #[arg(long)]
    pub(crate) json: bool,
    /// Only enqueue the run (for a `dev` or `worker` process) and wait up to this long
    /// (humantime: `30s`, `5m`) for it to end, showing a live progress line. Without it,
    /// the run executes in this process.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub(crate) wait: Option<std::time::Duration>,
    /// Only enqueue the run and print its id; a `dev` or `worker` process executes it.
    #[arg(long, conflicts_with = "wait")]
    pub(crate) enqueue: bool,
    /// Start the run at most once for this key (1 to 255 printable ASCII characters, e.g. a
    /// UUID; per workflow): run again with the same key and input, it starts nothing and
    /// reports the run the first call started; the same key with another input is an
    /// error (exit 2) naming that run. For scripts that retry.
    #[arg(long, value_name = "KEY", value_parser = parse_idempotency_key)]
    pub(crate) idempotency_key: Option<String>,
}

/// `--idempotency-key`: 1 to 255 printable ASCII characters.
fn parse_idempotency_key(key: &str) -> Result<String, String> {
    crate::engine::check_idempotency_key(key).map(|()| key.to_owned())
}

#[derive(Debug, Subcommand)]
pub(crate) enum RunsCommand {
    /// List runs, newest first.
    List {
        /// Only runs in this status (queued, running, sleeping, waiting, completed, failed, canceled).
        #[arg(long)]
        status: Option<RunStatus>,
        /// Only runs of this workflow slug.
        #[arg(long)]
        workflow: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a run: status, output or error, and its steps.
    Get {
        /// The run's id.
        id: String,
        /// Print JSON (the run record and its steps).
        #[arg(long)]
        json: bool,
    },
    /// Write a run's whole history (its record and every event) as JSON, for replay
    /// regression tests (`reprise_testkit::replay`) and bug reports.
    Export {
        /// The run's id.
        id: String,
        /// Write to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<std::path::PathBuf>,
    },
    /// Cancel a run: a queued, sleeping or waiting run at once, a running one at its next
    /// step boundary (its running actions see their cancellation token).
    Cancel {
        /// The run's id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Continue interrupted runs (all unfinished ones, or one) until they end.
    Resume {
        /// Only this run.
        id: Option<String>,
        /// Print JSON lines, one per run.
        #[arg(long)]
        json: bool,
    },
}
