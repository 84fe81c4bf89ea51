//! The command-line grammar (clap derive).

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::engine::EngineBuilder;
use crate::event::RunStatus;

/// The exit-code table `--help` shows (see the `EXIT_*` constants in `cli/mod.rs`).
const EXIT_CODES: &str = "\
Exit codes:
  0  completed: the run (or every resumed run) completed, every checked run replays
  1  a run failed or was canceled, or `workflows check` found runs that no longer replay
  2  usage, input or validation error (bad flags, invalid JSON, schema violations,
     unknown workflow, run or step, a hook secret under 32 bytes)
  3  a run is still waiting (on a sleep or hook) or continues in another process
  4  store or infrastructure failure: the database cannot be opened, read or written
     (missing, corrupt, not a database, written by a newer reprise, read-only, disk
     full, Postgres unreachable or refusing the login), or another I/O failure

Logs go to standard error: RUST_LOG filters them (default `warn,reprise=info`;
warnings are always shown), --log-format json prints one JSON object per line.";

/// Durable workflows: run, inspect and resume them.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None, after_help = EXIT_CODES)]
pub(crate) struct Cli {
    /// Database URL: `sqlite://path/to/file.db` (or a bare path), `postgres://user@host/db`, or `memory:`.
    #[arg(
        long,
        global = true,
        env = "REPRISE_DATABASE_URL",
        default_value = "sqlite://.reprise/reprise.db"
    )]
    pub(crate) db: String,

    /// How log lines on standard error look: `text` for people, `json` for one JSON
    /// object per line (log collectors). `RUST_LOG` chooses which lines.
    #[arg(
        long,
        global = true,
        env = "REPRISE_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    pub(crate) log_format: LogFormat,

    /// Queue settings to configure (flow control): a JSON file holding an array of queues,
    /// such as `[{"name": "llm", "concurrency": 4, "key": "/customer", "key_concurrency": 1,
    /// "rate_limit": {"limit": 60, "period": "1m"}}]`. Added to the queues the binary
    /// configures in code; give every process on one database the same file. The
    /// environment variable `REPRISE_QUEUES` may hold the same JSON text instead (or
    /// `@path` to a file).
    #[arg(long, global = true, value_name = "PATH")]
    pub(crate) queues_file: Option<std::path::PathBuf>,

    /// A directory of workflow files (`*.md` with YAML front matter, `*.yaml`, `*.yml`)
    /// to load and register beside the binary's code workflows; repeat for several. Also
    /// read from `REPRISE_WORKFLOWS_DIR` (several separated by `:`). No directory is
    /// loaded unless named: `./workflows` is not a default. A file that does not load
    /// stops every command with its file:line:col (exit 2); `workflows check --files DIR`
    /// lists every problem instead.
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) workflows_dir: Vec<std::path::PathBuf>,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The output of `workflows graph` (`--format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum GraphFormat {
    /// A Mermaid `flowchart TD`, with a `classDef` per node status when lit.
    #[default]
    Mermaid,
    /// A standalone SVG document.
    Svg,
    /// The graph's nodes, edges and groups as JSON.
    Json,
}

/// The format of log lines (`--log-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// `2026-01-01T09:00:00.000000Z  WARN reprise::worker: could not claim runs; retrying …`
    #[default]
    Text,
    /// `{"timestamp":"…","level":"WARN","message":"…","run":"…","target":"…"}`
    Json,
}

/// `--concurrency`: at least 1.
fn parse_concurrency(text: &str) -> Result<usize, String> {
    let n: usize = text
        .parse()
        .map_err(|e| format!("`{text}` is not a number of runs ({e})"))?;
    if n == 0 {
        return Err(
            "must be at least 1: a worker with concurrency 0 would never run \
                    anything; pass 1 or more (default 16)"
                .to_owned(),
        );
    }
    Ok(n)
}

/// `--lease`: a humantime duration within [`EngineBuilder::MIN_LEASE`] and
/// [`EngineBuilder::MAX_LEASE`].
fn parse_lease(text: &str) -> Result<Duration, String> {
    let lease = humantime::parse_duration(text).map_err(|e| {
        format!("`{text}` is not a duration ({e}); write it like `15s`, `500ms` or `1m`")
    })?;
    EngineBuilder::check_lease(lease)?;
    Ok(lease)
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
    /// Manage schedules: those kept in the database (create, update, delete) and those
    /// declared in code (pause, resume, trigger, backfill). `dev` and `worker` fire them.
    #[command(subcommand)]
    Schedules(super::schedules::SchedulesCommand),
    /// Emit events to waiting runs and `on_event` workflows.
    #[command(subcommand)]
    Events(super::events::EventsCommand),
    /// Show the flow-control queues this binary knows: their limits, how many runs each
    /// has admitted and running, and how many wait.
    #[command(subcommand)]
    Queues(super::queues::QueuesCommand),
    /// Set, list and delete the credentials actions read (`cx.credential("github")`),
    /// per scope: `user:<id>`, `project:<id>` or `org`. Values are read from stdin and
    /// never shown; with REPRISE_SECRETS_KEY they are kept encrypted in the database.
    #[command(subcommand)]
    Credentials(super::credentials::CredentialsCommand),
    /// Manage named API tokens: each carries a principal (recorded as the actor of the
    /// runs it starts) and a scope (read, start, operate, admin).
    #[command(subcommand)]
    Tokens(super::tokens::TokensCommand),
    /// Manage subscriptions to subscribable workflows: each trigger occurrence of such a
    /// workflow starts one run per active subscription, acting for its user.
    #[command(subcommand)]
    Subscriptions(super::subscriptions::SubscriptionsCommand),
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
    /// The most runs executed at once (at least 1).
    #[arg(long, default_value_t = 16, value_parser = parse_concurrency)]
    pub(crate) concurrency: usize,
    /// How long a run's lease lasts unless renewed (humantime: `15s`, `1m`; from 500ms to
    /// 24h); another worker takes the run over this long after this process dies.
    #[arg(long, default_value = "15s", value_parser = parse_lease)]
    pub(crate) lease: std::time::Duration,
    /// On SIGINT/SIGTERM, how long running steps may take to finish before they are
    /// dropped (and run again elsewhere).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub(crate) shutdown_grace: std::time::Duration,
    /// Do not fire cron schedules and poll sources in this process.
    #[arg(long)]
    pub(crate) no_triggers: bool,
    /// Claim only runs in these queues (comma-separated; `default` names runs in no
    /// queue). Default: every queue this process knows, and runs in none. An unknown queue
    /// is an error at startup (exit 2) listing the known ones.
    #[arg(long, value_name = "QUEUE,…", value_delimiter = ',')]
    pub(crate) queues: Option<Vec<String>>,
    /// Claim only runs of these workflows (comma-separated slugs). Default: every
    /// workflow this binary registers. An unknown slug is an error at startup (exit 2).
    #[arg(long, value_name = "SLUG,…", value_delimiter = ',')]
    pub(crate) workflows: Option<Vec<String>>,
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
    Run(Box<RunArgs>),
    /// Print a workflow's input and output JSON Schemas, or (`--file-format`) the JSON
    /// Schema of the workflow file format.
    Schema {
        /// The workflow's slug.
        #[arg(required_unless_present = "file_format")]
        slug: Option<String>,
        /// Print the JSON Schema of workflow files (their YAML front matter, or a whole
        /// `.yaml` file) instead: for editors' YAML language servers and CI linters.
        #[arg(long, conflicts_with = "slug")]
        file_format: bool,
    },
    /// Print a workflow's graph: its call sites in their real shape (branches, loops,
    /// parallel groups, sub-workflows, waits), optionally lit by one of its runs (each
    /// node's status, and how often it ran).
    Graph {
        /// The workflow's slug.
        slug: String,
        /// Light the graph with this run of the workflow.
        #[arg(long, value_name = "RUN_ID")]
        run: Option<String>,
        /// `mermaid` (a Mermaid flowchart), `svg` (a standalone SVG document) or `json`.
        #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
        format: GraphFormat,
    },
    /// Pause a workflow (for incidents): no run of it is claimed by any worker until it is
    /// unpaused; runs executing now go on to their next suspension.
    Pause {
        /// The workflow's slug.
        slug: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Unpause a workflow: its due runs are claimed again.
    Unpause {
        /// The workflow's slug.
        slug: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
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
        /// Print one JSON object (`checked`, `compatible`, `incompatible`; with `--files`:
        /// `files`, `errors`).
        #[arg(long)]
        json: bool,
        /// Check the workflow files in this directory instead of recorded runs: parse and
        /// check every file against this binary's actions and workflows, print every
        /// problem as `file:line:col: message` on standard error (or "N files OK"), exit 1
        /// when there is one. Needs no database.
        #[arg(long, value_name = "DIR", conflicts_with_all = ["workflow", "in_flight"])]
        files: Option<std::path::PathBuf>,
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
    /// Start the run this long from now (humantime: `30s`, `10m`, `1h 30m`): it is
    /// enqueued `queued`, due then, and a `dev` or `worker` process runs it (as with
    /// `--enqueue`, unless `--wait` is given).
    #[arg(long, value_name = "DURATION", value_parser = parse_delay, conflicts_with = "start_at")]
    pub(crate) delay: Option<std::time::Duration>,
    /// Start the run at this time (RFC 3339: `2026-12-24T18:00:00Z`,
    /// `2026-12-24T19:00:00+01:00`); a time in the past starts at once. Enqueues like
    /// `--delay`.
    #[arg(long, value_name = "TIME", value_parser = parse_start_at)]
    pub(crate) start_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Name the run by a business key (1 to 255 printable ASCII characters, e.g.
    /// `order-42`): one run per workflow and key. When a run already holds the key, nothing
    /// is started: the command prints that run's id and says it exists. `runs signal
    /// <KEY> <NAME> --workflow <SLUG>` signals it.
    #[arg(long, value_name = "KEY", conflicts_with = "idempotency_key")]
    pub(crate) key: Option<String>,
    /// Put the run in this flow-control queue instead of its workflow's own (`queues list`
    /// shows them). An unknown queue exits 2 naming the known ones; nothing is started.
    /// Run here, the run first waits until its queue admits it (as a worker's would).
    #[arg(long, value_name = "QUEUE")]
    pub(crate) queue: Option<String>,
    /// The run's key in its queue (per-key concurrency, per-key rate limit, debounce),
    /// instead of the one the queue reads from the input.
    #[arg(long, value_name = "KEY")]
    pub(crate) queue_key: Option<String>,
    /// The run's priority in its queue: higher is admitted first (default 0; negative
    /// allowed, e.g. `--priority=-5`).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub(crate) priority: Option<i32>,
    /// De-duplication in the run's queue: while a run of the queue started with this id
    /// has not ended, the command starts nothing and reports that run (`"created": false`
    /// with `--json`).
    #[arg(long, value_name = "ID", conflicts_with_all = ["key", "idempotency_key"])]
    pub(crate) dedup: Option<String>,
    /// The user the run acts for (its credentials are looked up for `user:<id>` first): 1
    /// to 128 ASCII letters, digits, `-`, `_`, `.`, `@`. The run's actor is the OS user.
    #[arg(long, value_name = "ID", value_parser = parse_user)]
    pub(crate) user: Option<String>,
    /// The run's project (credentials are looked up for `project:<id>` next); same rules
    /// as `--user`. Default: the engine's project (`REPRISE_PROJECT`).
    #[arg(long, value_name = "ID", value_parser = parse_project)]
    pub(crate) project: Option<String>,
    /// Start the run for this subscription of the (subscribable) workflow: it acts for the
    /// subscriber's user and `ctx.subscriber()` returns the subscription (`subscriptions
    /// list` shows the ids). An unknown or paused subscription, or one of another
    /// workflow, exits 2; nothing is started.
    #[arg(long, value_name = "ID")]
    pub(crate) subscription: Option<String>,
}

/// `--user`: a user id ([`crate::identity::Scope::parse`]'s rules).
fn parse_user(text: &str) -> Result<String, String> {
    crate::identity::Scope::parse(&format!("user:{text}")).map(|_| text.to_owned())
}

/// `--project`: a project id ([`crate::identity::Scope::parse`]'s rules).
fn parse_project(text: &str) -> Result<String, String> {
    crate::identity::Scope::parse(&format!("project:{text}")).map(|_| text.to_owned())
}

/// `--delay`: a humantime duration.
fn parse_delay(text: &str) -> Result<std::time::Duration, String> {
    crate::engine::parse_delay("--delay", text)
}

/// `--start-at`: an RFC 3339 time.
fn parse_start_at(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    crate::engine::parse_start_at("--start-at", text)
}

/// `--tag`: a tag filter (`key=value`, `key>=100`, …).
fn parse_queue_name(text: &str) -> Result<String, String> {
    crate::queue::check_queue_name(text)?;
    Ok(text.to_owned())
}

fn parse_tag_filter(text: &str) -> Result<crate::tags::TagFilter, String> {
    text.parse()
}

/// A time bound of `runs list`: an instant, or a duration before now.
#[derive(Clone, Copy, Debug)]
pub(crate) enum TimeBound {
    /// This instant.
    At(chrono::DateTime<chrono::Utc>),
    /// This long before now.
    Ago(std::time::Duration),
}

impl TimeBound {
    /// The instant, relative to `now`.
    pub(crate) fn resolve(
        self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> chrono::DateTime<chrono::Utc> {
        match self {
            TimeBound::At(at) => at,
            TimeBound::Ago(ago) => {
                now - chrono::TimeDelta::from_std(ago).unwrap_or(chrono::TimeDelta::MAX)
            }
        }
    }
}

/// `--created-after` and friends: RFC 3339 or a humantime duration ago.
fn parse_time_bound(text: &str) -> Result<TimeBound, String> {
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(TimeBound::At(at.with_timezone(&chrono::Utc)));
    }
    humantime::parse_duration(text)
        .map(TimeBound::Ago)
        .map_err(|_| {
            format!(
                "`{text}` is neither an RFC 3339 time (`2026-12-06T10:00:00Z`) nor a duration \
                 ago (`90m`, `1h`, `2d`)"
            )
        })
}

/// `--idempotency-key`: 1 to 255 printable ASCII characters.
fn parse_idempotency_key(key: &str) -> Result<String, String> {
    crate::engine::check_idempotency_key(key).map(|()| key.to_owned())
}

#[derive(Debug, Subcommand)]
pub(crate) enum RunsCommand {
    /// Send a signal to a run: its workflow receives it with `ctx.signal::<T>(NAME)`. The
    /// payload is checked against `T` first (exit 2 naming the JSON pointers; nothing is
    /// sent). With `--workflow`, TARGET is the business key of a run of that workflow.
    Signal {
        /// The run's id (or, with `--workflow`, its business key).
        target: String,
        /// The signal's name.
        name: String,
        /// The payload: JSON text, or `@path` to read it from a file.
        #[arg(long, value_name = "JSON", default_value = "null")]
        payload: String,
        /// TARGET is the business key of a run of this workflow (`workflows run --key`).
        #[arg(long, value_name = "SLUG")]
        workflow: Option<String>,
        /// Deliver at most once for this key (1 to 255 printable ASCII characters): a retry
        /// with the same key sends nothing more.
        #[arg(long, value_name = "KEY", value_parser = parse_idempotency_key)]
        idempotency_key: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the state a run published (`ctx.publish`): every key, or one.
    State {
        /// The run's id.
        id: String,
        /// Only this key's value.
        key: Option<String>,
        /// With KEY: wait up to this long (humantime: `10s`) for the first publish.
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, requires = "key")]
        wait: Option<std::time::Duration>,
    },
    /// Send an update to a run and print its answer: the workflow receives it with
    /// `ctx.updates::<Req, Resp>(NAME)` and replies. A refused update exits 2 with the
    /// workflow's message; no answer within `--wait` exits 3 (the request stays queued).
    Update {
        /// The run's id.
        id: String,
        /// The update's name.
        name: String,
        /// The request: JSON text, or `@path` to read it from a file.
        #[arg(long, value_name = "JSON", default_value = "null")]
        payload: String,
        /// How long to wait for the answer (humantime).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "30s")]
        wait: std::time::Duration,
    },
    /// List runs, newest first.
    List {
        /// Only runs in this status (queued, running, sleeping, waiting, completed, failed,
        /// canceled, paused).
        #[arg(long)]
        status: Option<RunStatus>,
        /// Only runs of this workflow slug.
        #[arg(long)]
        workflow: Option<String>,
        /// Only runs in this flow-control queue (waiting for admission, admitted or ended);
        /// combine with `--status queued` for the runs still waiting.
        #[arg(long, value_name = "NAME", value_parser = parse_queue_name)]
        queue: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only runs with this tag (`ctx.tag`): `key=value`, or `key<value`, `key<=value`,
        /// `key>value`, `key>=value` for numbers and times. The value's type is read from
        /// its text (`true`/`false`, a number, an RFC 3339 time, else a string; `"100"` in
        /// double quotes is a string). Repeat to require several.
        #[arg(long = "tag", value_name = "FILTER", value_parser = parse_tag_filter)]
        tags: Vec<crate::tags::TagFilter>,
        /// Only runs created at or after this time: RFC 3339, or a duration ago (`1h`, `2d`).
        #[arg(long, value_name = "TIME", value_parser = parse_time_bound)]
        created_after: Option<TimeBound>,
        /// Only runs created before this time: RFC 3339, or a duration ago.
        #[arg(long, value_name = "TIME", value_parser = parse_time_bound)]
        created_before: Option<TimeBound>,
        /// Only runs last changed at or after this time: RFC 3339, or a duration ago.
        #[arg(long, value_name = "TIME", value_parser = parse_time_bound)]
        updated_after: Option<TimeBound>,
        /// Only runs last changed before this time: RFC 3339, or a duration ago.
        #[arg(long, value_name = "TIME", value_parser = parse_time_bound)]
        updated_before: Option<TimeBound>,
        /// Continue a listing: the cursor the previous page printed (`next cursor: …`).
        #[arg(long, value_name = "CURSOR")]
        cursor: Option<String>,
        /// Print JSON (the array of runs; the next cursor, if any, on standard error as
        /// `next_cursor: …`).
        #[arg(long)]
        json: bool,
    },
    /// Sum the tokens and cost of recorded model requests by day (UTC), workflow and model,
    /// priced with the built-in price table merged with the file named by `REPRISE_PRICES`.
    Usage {
        /// Only requests recorded at or after this time: RFC 3339, or a duration ago (`7d`).
        #[arg(long, value_name = "TIME", value_parser = parse_time_bound)]
        since: Option<TimeBound>,
        /// Only requests recorded before this time: RFC 3339, or a duration ago.
        #[arg(long, value_name = "TIME", value_parser = parse_time_bound)]
        until: Option<TimeBound>,
        /// Only runs of this workflow slug.
        #[arg(long)]
        workflow: Option<String>,
        /// Print JSON (the report `GET /usage` answers).
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
    /// Follow a run until it ends: its steps (status, attempts, duration) as they move, a
    /// table redrawn in place on a terminal, else a line per step change. Reads the store,
    /// so it follows runs any process executes. Exits as `workflows run --wait` does: 0
    /// completed, 1 failed or canceled, 3 still going at `--timeout`.
    Watch {
        /// The run's id.
        id: String,
        /// Stop watching after this long (humantime: `30s`, `5m`); default: until it ends.
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        timeout: Option<std::time::Duration>,
        /// Print JSON lines: `{"run_id","status"}` per run status change,
        /// `{"step","status","attempts","duration_ms"}` per step change, then the result.
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
    /// Retry failed runs on the current code: each is queued again with a new attempt;
    /// completed steps replay from the log and the step whose failure failed the run runs
    /// again (a worker, `dev` or `runs resume` executes them). One run by id, or every
    /// failed run matching `--workflow` and `--since`.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["id", "workflow", "since"]).multiple(true)))]
    Retry {
        /// The run's id.
        #[arg(conflicts_with_all = ["workflow", "since"])]
        id: Option<String>,
        /// Every failed run of this workflow.
        #[arg(long, value_name = "SLUG")]
        workflow: Option<String>,
        /// Only runs that failed within this long (humantime: `1h`, `2d`).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        since: Option<std::time::Duration>,
        /// Print one JSON object per retried run.
        #[arg(long)]
        json: bool,
    },
    /// Pause a run: a queued, sleeping or waiting run at once, a running one at its next
    /// step boundary (steps in flight finish first). A paused run is not claimed by any
    /// worker; its hooks still take payloads. `runs unpause` continues it.
    Pause {
        /// The run's id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Unpause a paused run: it is queued again and continues from its log (a run parked
    /// when its attempts ran out runs its failed step again, with a new attempt).
    Unpause {
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
    /// Fork a run from one of its steps into a new run: the steps recorded before it replay
    /// from the original's log (they do not run again), it and everything after it run
    /// live on the current code. With `--input`, the new run takes that input, and the
    /// first copied step whose input changed runs live with every step recorded after it.
    /// The original is not changed. A worker, `dev` or `runs resume` executes the new run.
    Fork {
        /// The original run's id.
        id: String,
        /// The step to fork from: its id as `runs get` shows it (`charge#0`,
        /// `enrich-lead#0/score-lead#0`).
        #[arg(long, value_name = "STEP-ID")]
        from: String,
        /// A new workflow input: JSON text, or `@path` to read it from a file (default: the
        /// original's input).
        #[arg(long, value_name = "JSON")]
        input: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Restart a run: a new run of the same workflow with the same input (or `--input`), in
    /// which every step runs again (a fork from the start). The original is not changed.
    Restart {
        /// The original run's id.
        id: String,
        /// A new workflow input: JSON text, or `@path` to read it from a file (default: the
        /// original's input).
        #[arg(long, value_name = "JSON")]
        input: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete ended runs (completed, failed, canceled) with their events, in small
    /// batches; unfinished runs are never deleted. `--dry-run` only counts them.
    Purge {
        /// Only runs that ended before this: an RFC 3339 time (`2026-01-01T00:00:00Z`) or
        /// an age (`30d`, `12h`: ended longer ago than that).
        #[arg(long, value_name = "TIME|AGE")]
        before: String,
        /// Only runs of this workflow slug.
        #[arg(long, value_name = "SLUG")]
        workflow: Option<String>,
        /// Only runs in this status: completed, failed or canceled.
        #[arg(long)]
        status: Option<RunStatus>,
        /// Delete nothing: print how many runs would be deleted and the first 100.
        #[arg(long)]
        dry_run: bool,
        /// Print one JSON object (`dry_run`, `count`, `by_workflow`, `runs`).
        #[arg(long)]
        json: bool,
    },
}
