//! The command line for your own binary (feature `cli`, on by default): a thin layer over
//! [`Engine`].
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     reprise::cli::main(|engine| Ok(engine))
//! }
//! ```
//!
//! Commands: `dev [--addr 127.0.0.1:8080]` (worker + scheduler + HTTP API on one database),
//! `worker [--concurrency N] [--lease 15s] [--queues a,b] [--workflows x,y]`, `workflows
//! list|run <slug> --input <json|@file> [--json] [--wait 30s|--enqueue] [--queue Q]
//! [--queue-key K] [--priority N] [--dedup ID]|schema <slug>|graph <slug> [--run <id>] [--format mermaid|svg|json]|check [--workflow] [--in-flight]
//! [--json]`, `runs list [--status] [--workflow]|get <id> [--json]|cancel <id>|export <id>
//! [--out FILE]|watch <id> [--timeout 5m] [--json]|usage [--since 7d] [--workflow] [--json]|resume [<id>]`, `hooks resume <token> --payload <json|@file>`,
//! `schedules list|get|create|update|pause|resume|delete|trigger|backfill` (schedules as
//! data; see [`crate::trigger::ScheduleSpec`]), `queues list [--json]` (flow-control queues
//! with their limits, admitted and waiting runs). Every command reads queue settings from
//! `--queues-file path.json` and `REPRISE_QUEUES` (a JSON array of
//! [`crate::queue::Queue`], or `@path`), added to those configured in code.
//! The database comes from `--db` or `REPRISE_DATABASE_URL` (`sqlite://path`), default
//! `sqlite://.reprise/reprise.db`, created on first use by the commands that write. The
//! read-only commands (`runs list|get|watch|export|usage`, `workflows check`, `workflows graph --run`, `queues list`) open it read-only
//! ([`crate::store::open_read_only`]): they need only read permission, never create or
//! migrate it, and a missing database is an error ("no database at …"), not a new file.
//!
//! Exit codes ([`exit_code`] maps errors to them): [`EXIT_COMPLETED`] `0` the run (or
//! every resumed run) completed, or every checked run replays; [`EXIT_FAILED`] `1` a run
//! failed, or `workflows check` found runs that no longer replay; [`EXIT_USAGE`] `2`
//! usage, input or validation error (the message names each JSON pointer);
//! [`EXIT_INCOMPLETE`] `3` a run is still waiting (on a sleep or a hook) or goes on in
//! another process; [`EXIT_STORE`] `4` the store or the machine failed (a database that
//! cannot be opened, read or written: missing, corrupt, not a database, too new,
//! read-only, a full disk, Postgres unreachable; other I/O failures).
//!
//! Logs go to standard error through a `tracing-subscriber` installed by [`run`]:
//! `RUST_LOG` filters them (default `warn,reprise=info`; warnings always show), and
//! `--log-format json` (or `REPRISE_LOG_FORMAT=json`) prints one JSON object per line.
//!
//! `REPRISE_HOOK_SECRET`, when set, must be at least 32 bytes (an empty value, what
//! docker-compose makes of an unset `${VAR}`, is refused too: exit 2); else, on SQLite,
//! the secret is kept in `hook.key` beside the database, created with mode 0600.
//!
//! Workflow files: `--workflows-dir DIR` (repeatable) or `REPRISE_WORKFLOWS_DIR` loads a
//! directory of them for every command (no directory is loaded by default; a file that
//! does not load stops the command with its file:line:col, exit 2). `workflows check
//! --files DIR [--json]` checks a directory against the binary's actions and workflows
//! without a database: every problem on stderr as `file:line:col: message`, exit 1 when
//! there is one, else "N files OK". `workflows schema --file-format` prints the file
//! format's JSON Schema. `workflows list` shows each workflow's source: `code` or the
//! file's path.
//!
//! `workflows check` replays each recorded run in a fresh replay-only engine
//! ([`Engine::replay_engine`]): nothing runs live, no action is called. A run replays when
//! its replay ends as its history did (same output; same sleeps and hooks waited on; a
//! failure of the same kind), or, for a run that has not ended, when the replay goes through
//! its whole history. The same rules as `reprise_testkit::replay::check`.

mod args;
mod credentials;
mod events;
mod files;
mod logging;
mod messages;
mod output;
mod purge;
mod queues;
mod schedules;
mod serve;
mod subscriptions;
mod tokens;
mod watch;

use std::ffi::OsString;
use std::process::ExitCode;

use std::time::Duration;

use clap::Parser;
use serde::Serialize;
use serde_json::{Value, json};

use crate::engine::{Engine, EngineBuilder, Execution, RunOutcome, summarize_steps};
use crate::error::EngineError;
use crate::event::{RunFilter, RunId, RunRecord, RunStatus, Trigger};
use crate::store::StoreErrorKind;
use args::{Cli, Command, GraphFormat, HooksCommand, RunArgs, RunsCommand, WorkflowsCommand};

/// The lease of runs executed by foreground commands (`workflows run`, `runs resume`,
/// `hooks resume`).
const FOREGROUND_LEASE: Duration = Duration::from_secs(5);

/// Exit code: completed.
pub const EXIT_COMPLETED: u8 = 0;
/// Exit code: a run failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: usage, input or validation error.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: a run is left waiting (on a sleep or a hook), or goes on in another process.
pub const EXIT_INCOMPLETE: u8 = 3;
/// Exit code: the store or the machine failed: the database cannot be opened, read or
/// written (missing, corrupt, not a database, written by a newer reprise, read-only, a
/// full disk, Postgres unreachable or refusing the login), or another I/O failure.
pub const EXIT_STORE: u8 = 4;

/// The shortest `REPRISE_HOOK_SECRET` (and `hook.key`) accepted, in bytes.
const MIN_HOOK_SECRET: usize = crate::engine::MIN_HOOK_SECRET_LEN;

/// The exit code of a command that failed with `error`: [`EXIT_USAGE`] for what the
/// caller can fix in the command line or its input (a schema violation, an unknown
/// workflow, run, hook or step (`runs fork --from`), invalid JSON, a configuration error,
/// an operation the run's state does not allow, an idempotency key reused with another
/// input, invalid request arguments, a payload over the size limit),
/// [`EXIT_INCOMPLETE`] when the run goes on in another process
/// (its lease is held or was taken over), and [`EXIT_STORE`] for store failures (every
/// [`EngineError::Storage`] kind, [`EngineError::Store`], a corrupt row).
pub fn exit_code(error: &EngineError) -> u8 {
    match error {
        EngineError::Schema(_)
        | EngineError::UnknownWorkflow(_)
        | EngineError::UnknownRun(_)
        | EngineError::UnknownHook
        | EngineError::UnknownSubscription(_)
        | EngineError::Config(_)
        | EngineError::InvalidState { .. }
        | EngineError::Serde(_)
        | EngineError::IdempotencyConflict { .. }
        | EngineError::UnknownStep { .. }
        | EngineError::InvalidRequest(_)
        | EngineError::PayloadTooLarge { .. }
        | EngineError::UnknownMessage { .. }
        | EngineError::UnknownKey { .. }
        | EngineError::UpdateRejected { .. } => EXIT_USAGE,
        EngineError::Timeout(_) => EXIT_INCOMPLETE,
        EngineError::Conflict { .. }
        | EngineError::LeaseLost { .. }
        | EngineError::Leased { .. } => EXIT_INCOMPLETE,
        EngineError::Storage(_) | EngineError::Store(_) | EngineError::Corrupt { .. } => EXIT_STORE,
    }
}

/// Parses the process arguments, builds the engine (store from `--db`, every discovered
/// workflow, then `configure` for resources), runs the command on a new tokio runtime and
/// returns the exit code.
pub fn main(
    configure: impl FnOnce(EngineBuilder) -> Result<EngineBuilder, EngineError>,
) -> ExitCode {
    exit_quietly_on_closed_stdout();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: could not start the tokio runtime: {error}");
            return ExitCode::from(EXIT_STORE);
        }
    };
    ExitCode::from(runtime.block_on(run(std::env::args_os(), configure)))
}

/// `runs get <id> | head` closes standard output early, and `println!` then panics. For a
/// command line that is the reader's choice, not an error: exit at once, quietly, as Unix
/// tools do on `SIGPIPE`. Every other panic is reported as before.
fn exit_quietly_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(i32::from(EXIT_COMPLETED));
        }
        default(info);
    }));
}

/// [`main`] for an existing runtime and explicit arguments (the first is the program name).
/// Installs the log subscriber (see the module docs) unless the process has one already.
/// Returns the exit code.
pub async fn run(
    args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
    configure: impl FnOnce(EngineBuilder) -> Result<EngineBuilder, EngineError>,
) -> u8 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            let code = if error.use_stderr() {
                EXIT_USAGE
            } else {
                EXIT_COMPLETED
            };
            let _ = error.print();
            return code;
        }
    };
    // Held to the end: with the `otel` feature, dropping it flushes the last spans.
    let _telemetry = logging::init(cli.log_format);
    // The long-running commands take SIGINT/SIGTERM over before anything slow (opening a
    // busy database, building the engine): a supervisor's stop during startup is then a
    // graceful stop (exit 0), not the signal's default kill.
    if matches!(cli.command, Command::Dev(_) | Command::Worker(_)) {
        serve::shutdown_on_signal();
    }
    // `dev` listens before the engine is built, so that resume URLs name the real port
    // (also when `--addr` asks for port 0).
    let listener = match &cli.command {
        Command::Dev(args) => match std::net::TcpListener::bind(args.addr) {
            Ok(listener) => Some(listener),
            Err(error) => {
                eprintln!(
                    "error: cannot listen on {}: {error}; pick another with --addr 127.0.0.1:PORT",
                    args.addr
                );
                return EXIT_USAGE;
            }
        },
        _ => None,
    };
    let local_addr = listener.as_ref().and_then(|l| l.local_addr().ok());
    // The file format's schema needs no engine (nor a database).
    if let Command::Workflows(WorkflowsCommand::Schema {
        file_format: true, ..
    }) = &cli.command
    {
        return match files::print_format_schema() {
            Ok(code) => code,
            Err(error) => {
                eprintln!("error: {error}");
                exit_code(&error)
            }
        };
    }
    // `workflows check --files DIR` checks DIR against the code workflows alone, on no
    // database: the directories given to load are left out (a broken file there would
    // stop the engine's build before the check could list its problems).
    let checks_files = matches!(
        &cli.command,
        Command::Workflows(WorkflowsCommand::Check { files: Some(_), .. })
    );
    let workflows_dirs = cli.workflows_dir.clone();
    let queues_file = cli.queues_file.clone();
    let configure = |builder: EngineBuilder| {
        // Every command knows the same queues: `runs get` explains waits, `workflows run`
        // places runs, workers admit them, all by these settings.
        let builder = queues::configure(builder, queues_file.as_deref())?;
        let builder = match &cli.command {
            Command::Dev(args) => {
                let builder = builder.lease(args.worker.lease);
                // Resume URLs point at this server unless a public URL is configured.
                match local_addr {
                    Some(addr) if std::env::var_os("REPRISE_PUBLIC_URL").is_none() => {
                        builder.public_url(format!("http://{addr}"))
                    }
                    _ => builder,
                }
            }
            Command::Worker(args) => builder.lease(args.lease),
            // A run executed in the foreground holds a short lease, so that after a crash
            // `runs resume` takes it over within seconds.
            _ => builder.lease(FOREGROUND_LEASE),
        };
        let builder = workflows_dirs
            .iter()
            .fold(builder, |builder, dir| builder.workflow_dir(dir));
        let builder = configure(builder)?;
        Ok(if checks_files {
            builder.without_workflow_dirs()
        } else {
            builder
        })
    };
    let read_only = is_read_only(&cli.command);
    let db = if checks_files {
        "memory:"
    } else {
        cli.db.as_str()
    };
    let engine = match build_engine(db, read_only, configure) {
        Ok(engine) => engine,
        Err((error, code)) => {
            eprintln!("error: {error}");
            return code;
        }
    };
    warn_unshared_hook_secret(&cli.db, &cli.command);
    match dispatch(&engine, cli.command, &cli.db, listener).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            exit_code(&error)
        }
    }
}

/// The commands that only read the store, and so open it read-only.
fn is_read_only(command: &Command) -> bool {
    matches!(
        command,
        Command::Runs(
            RunsCommand::List { .. }
                | RunsCommand::Get { .. }
                | RunsCommand::Watch { .. }
                | RunsCommand::Export { .. }
                | RunsCommand::Usage { .. }
                | RunsCommand::State { .. }
        ) | Command::Workflows(
            WorkflowsCommand::Check { .. } | WorkflowsCommand::Graph { run: Some(_), .. }
        ) | Command::Queues(_)
            | Command::Credentials(credentials::CredentialsCommand::List { .. })
            | Command::Tokens(tokens::TokensCommand::List { .. })
    )
}

/// Opens the store (read-only for `read_only` commands) and builds the engine. A failure
/// comes with its exit code: a database URL that cannot be parsed or has an unknown scheme
/// is a usage error, the rest as [`exit_code`] says.
fn build_engine(
    db: &str,
    read_only: bool,
    configure: impl FnOnce(EngineBuilder) -> Result<EngineBuilder, EngineError>,
) -> Result<Engine, (EngineError, u8)> {
    let coded = |error: EngineError| {
        let code = exit_code(&error);
        (error, code)
    };
    let url = if db.contains(':') {
        db.to_owned()
    } else {
        format!("sqlite://{db}")
    };
    // Checked before the store is opened, so that a refused secret leaves no database
    // file behind.
    let env_secret = env_hook_secret().map_err(coded)?;
    let opened = if read_only {
        crate::store::open_read_only(&url)
    } else {
        crate::store::open(&url)
    };
    let store = opened.map_err(|error| {
        let code = match error.store_error().map(crate::store::StoreError::kind) {
            // `open` reports only problems of the URL itself as `Config`: nothing has been
            // contacted yet (a Postgres store connects on first use).
            Some(StoreErrorKind::Config) => EXIT_USAGE,
            _ => exit_code(&error),
        };
        (error, code)
    })?;
    let mut builder = EngineBuilder::from_env()
        .store(store)
        .discover()
        .map_err(coded)?;
    let secret = match env_secret {
        Some(secret) => Some(secret),
        None => hook_secret_file(&url, !read_only).map_err(coded)?,
    };
    if let Some(secret) = secret {
        builder = builder.hook_secret(secret);
    }
    configure(builder)
        .and_then(EngineBuilder::build)
        .map_err(coded)
}

/// `REPRISE_HOOK_SECRET`, when it is set.
///
/// # Errors
/// [`EngineError::Config`] (exit code 2) when it is shorter than [`MIN_HOOK_SECRET`]
/// bytes, empty included: with a short secret anyone who knows a run id could compute its
/// hook tokens.
fn env_hook_secret() -> Result<Option<Vec<u8>>, EngineError> {
    let Some(secret) = std::env::var_os("REPRISE_HOOK_SECRET") else {
        return Ok(None);
    };
    let secret = secret.into_encoded_bytes();
    if secret.len() < MIN_HOOK_SECRET {
        let what = if secret.is_empty() {
            "is set but empty (docker-compose turns an unset `${HOOK_SECRET}` into \"\")".to_owned()
        } else {
            format!("is only {} bytes long", secret.len())
        };
        return Err(EngineError::Config(format!(
            "REPRISE_HOOK_SECRET {what}; a hook secret must be at least {MIN_HOOK_SECRET} \
             bytes, or anyone who knows a run id could forge its hook tokens. Make one with \
             `openssl rand -base64 32` and set it in every process on this database, or \
             unset REPRISE_HOOK_SECRET to use the `hook.key` file beside a SQLite database"
        )));
    }
    Ok(Some(secret))
}

/// The hook secret when `REPRISE_HOOK_SECRET` is unset: for SQLite, 32 random bytes kept
/// in `hook.key` beside the database (created with mode 0600 on first use, unless
/// `create` is false: read-only commands only read an existing one), so every process on
/// one database derives the same hook tokens. An existing `hook.key` that other users may
/// read or write is used, with a warning (logged once) saying how to fix its mode.
///
/// Other databases (Postgres) get no shared default: each process makes a random secret
/// of its own, and [`warn_unshared_hook_secret`] says so. The secret is deliberately not
/// kept in the database through `Store::cursor`/`set_cursor`: `set_cursor` overwrites
/// (last writer wins), so two processes starting together could each write their own
/// value and read it straight back before the other's write landed, and then mint
/// different tokens; converging needs an insert-if-absent the `Store` trait does not
/// have. (It would also put the secret in a table every database reader can see.)
fn hook_secret_file(url: &str, create: bool) -> Result<Option<Vec<u8>>, EngineError> {
    let Some(path) = url.strip_prefix("sqlite://") else {
        return Ok(None);
    };
    let dir = std::path::Path::new(path)
        .parent()
        .unwrap_or(std::path::Path::new("."));
    let key = dir.join("hook.key");
    let unreadable = |e: std::io::Error| {
        EngineError::from(
            crate::store::StoreError::new(
                StoreErrorKind::Io,
                format!(
                    "cannot read or create the hook secret `{}`: {e}; check that this user \
                     may read it (and create files in its directory), or set \
                     REPRISE_HOOK_SECRET instead",
                    key.display()
                ),
            )
            .with_source(e),
        )
    };
    match std::fs::read(&key) {
        Ok(secret) if secret.len() >= MIN_HOOK_SECRET => {
            warn_loose_mode(&key);
            return Ok(Some(secret));
        }
        Ok(_) => {
            return Err(crate::store::StoreError::new(
                StoreErrorKind::Io,
                format!(
                    "the hook secret `{}` is shorter than {MIN_HOOK_SECRET} bytes; delete it \
                     to make a new one (open hooks of waiting runs will need their old secret)",
                    key.display()
                ),
            )
            .into());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(unreadable(e)),
    }
    // Written whole to a file of this process, then published under the key's name with a
    // hard link, which fails when the name exists: of processes starting together on one
    // database (several workers), exactly one publishes its secret, and no process ever
    // reads a key file that is still being written (it would be empty or short).
    let secret: [u8; 32] = rand::random();
    let tmp = dir.join(format!(
        "hook.key.{}.{:016x}.tmp",
        std::process::id(),
        rand::random::<u64>()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&tmp).and_then(|mut file| {
        use std::io::Write;
        file.write_all(&secret).and_then(|()| file.sync_all())
    });
    let published = written.and_then(|()| std::fs::hard_link(&tmp, &key));
    let _ = std::fs::remove_file(&tmp);
    match published {
        Ok(()) => Ok(Some(secret.to_vec())),
        // Another process published one first: use theirs (complete, since it was linked
        // only once written).
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read(&key).map(Some).map_err(unreadable)
        }
        Err(e) => Err(unreadable(e)),
    }
}

/// Logs a warning when the secret file `path` may be read or written by users other than
/// its owner (any group or other permission bit).
fn warn_loose_mode(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(metadata) = std::fs::metadata(path) {
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    file = %path.display(),
                    "the hook secret file {} has mode {mode:04o}: other users can read it and \
                     forge hook tokens; restrict it with `chmod 600 {}`",
                    path.display(),
                    path.display()
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// On a database without a shared hook secret (any but SQLite and `memory:`) and with
/// `REPRISE_HOOK_SECRET` unset, warns on stderr at the start of the commands that execute
/// runs in the background or deliver hooks (`dev`, `worker`, `hooks resume`).
fn warn_unshared_hook_secret(db: &str, command: &Command) {
    let shared = !db.contains(':') || db.starts_with("sqlite://") || db == "memory:";
    let relevant = matches!(
        command,
        Command::Dev(_) | Command::Worker(_) | Command::Hooks(HooksCommand::Resume { .. })
    );
    if !shared && relevant && std::env::var_os("REPRISE_HOOK_SECRET").is_none() {
        eprintln!(
            "warning: REPRISE_HOOK_SECRET is not set, so this process uses a random hook \
             secret of its own; hooks delivered through another process need \
             REPRISE_HOOK_SECRET set to the same value in every process"
        );
    }
}

async fn dispatch(
    engine: &Engine,
    command: Command,
    db: &str,
    listener: Option<std::net::TcpListener>,
) -> Result<u8, EngineError> {
    match command {
        Command::Dev(args) => match listener {
            Some(listener) => serve::dev(engine, args, db, listener).await,
            None => Err(EngineError::Config("dev needs its listener".into())),
        },
        Command::Worker(args) => serve::worker(engine, args).await,
        Command::Schedules(command) => schedules::dispatch(engine, command).await,
        Command::Subscriptions(command) => subscriptions::dispatch(engine, command).await,
        Command::Runs(
            command @ (RunsCommand::Signal { .. }
            | RunsCommand::State { .. }
            | RunsCommand::Update { .. }),
        ) => messages::dispatch(engine, command).await,
        Command::Events(command) => events::dispatch(engine, command).await,
        Command::Queues(command) => queues::dispatch(engine, command).await,
        Command::Credentials(command) => credentials::dispatch(engine, command).await,
        Command::Tokens(command) => tokens::dispatch(engine, command).await,
        Command::Runs(RunsCommand::Cancel { id, json }) => {
            let id = RunId(id);
            let outcome = engine.cancel(&id).await?;
            if json {
                println!("{}", json!({ "run_id": id, "outcome": outcome }));
            } else {
                match outcome {
                    crate::CancelOutcome::Canceled => println!("run {id} canceled"),
                    crate::CancelOutcome::Requested => println!(
                        "run {id} is executing: it stops at its next step boundary \
                         (`runs get {id}` shows when)"
                    ),
                }
            }
            Ok(EXIT_COMPLETED)
        }
        Command::Runs(RunsCommand::Retry {
            id,
            workflow,
            since,
            json,
        }) => retry_runs(engine, id, workflow, since, json).await,
        Command::Runs(RunsCommand::Pause { id, json }) => {
            let id = RunId(id);
            let outcome = engine.pause_run(&id, &cli_user()).await?;
            if json {
                println!("{}", json!({ "run_id": id, "outcome": outcome }));
            } else {
                match outcome {
                    crate::PauseOutcome::Paused => println!("run {id} paused"),
                    crate::PauseOutcome::AlreadyPaused => println!("run {id} was paused already"),
                    crate::PauseOutcome::Requested => println!(
                        "run {id} is executing: it pauses at its next step boundary \
                         (`runs get {id}` shows when)"
                    ),
                }
            }
            Ok(EXIT_COMPLETED)
        }
        Command::Runs(RunsCommand::Unpause { id, json }) => {
            let unpaused = engine.unpause_run(&RunId(id), &cli_user()).await?;
            if json {
                println!("{}", json!(unpaused));
            } else {
                let id = &unpaused.run_id;
                match (&unpaused.status, &unpaused.step) {
                    (RunStatus::Queued, Some(step)) => println!(
                        "run {id} queued for attempt {} (step {step} runs again)",
                        unpaused.attempt
                    ),
                    (RunStatus::Queued, None) => {
                        println!("run {id} queued: a worker, `dev` or `runs resume` continues it")
                    }
                    _ => println!("run {id}: its pending pause request was withdrawn"),
                }
            }
            Ok(EXIT_COMPLETED)
        }
        Command::Workflows(WorkflowsCommand::Pause { slug, json }) => {
            let changed = engine.pause_workflow(&slug, &cli_user()).await?;
            if json {
                println!(
                    "{}",
                    json!({ "workflow": slug, "paused": true, "changed": changed })
                );
            } else if changed {
                println!(
                    "workflow {slug} paused: no worker claims its runs until `workflows unpause {slug}`"
                );
            } else {
                println!("workflow {slug} was paused already");
            }
            Ok(EXIT_COMPLETED)
        }
        Command::Workflows(WorkflowsCommand::Unpause { slug, json }) => {
            let changed = engine.unpause_workflow(&slug, &cli_user()).await?;
            if json {
                println!(
                    "{}",
                    json!({ "workflow": slug, "paused": false, "changed": changed })
                );
            } else if changed {
                println!("workflow {slug} unpaused: its due runs are claimed again");
            } else {
                println!("workflow {slug} was not paused");
            }
            Ok(EXIT_COMPLETED)
        }
        Command::Runs(RunsCommand::Fork {
            id,
            from,
            input,
            json,
        }) => {
            let mut options = crate::ForkOptions::from_step(from)
                .by(cli_user())
                .actor(crate::identity::Actor::cli_user());
            if let Some(input) = input {
                options = options.input(read_json(&input, "--input")?);
            }
            fork_run(engine, RunId(id), options, json).await
        }
        Command::Runs(RunsCommand::Restart { id, input, json }) => {
            let mut options = crate::ForkOptions::restart()
                .by(cli_user())
                .actor(crate::identity::Actor::cli_user());
            if let Some(input) = input {
                options = options.input(read_json(&input, "--input")?);
            }
            fork_run(engine, RunId(id), options, json).await
        }
        Command::Workflows(WorkflowsCommand::List) => {
            let paused = engine.workflow_pauses().await?;
            output::print_workflows(engine, &paused);
            Ok(EXIT_COMPLETED)
        }
        Command::Workflows(WorkflowsCommand::Run(args)) => run_workflow(engine, *args).await,
        Command::Workflows(WorkflowsCommand::Schema {
            file_format: true, ..
        }) => files::print_format_schema(),
        Command::Workflows(WorkflowsCommand::Schema { slug, .. }) => {
            let slug = slug.unwrap_or_default();
            let entry = engine.workflow(&slug)?;
            let mut schemas =
                json!({ "input": entry.input_schema(), "output": entry.output_schema() });
            if let Some(schema) = entry.subscription_schema() {
                schemas["subscription"] = schema.clone();
            }
            println!("{}", pretty(&schemas));
            Ok(EXIT_COMPLETED)
        }
        Command::Workflows(WorkflowsCommand::Graph { slug, run, format }) => {
            engine.workflow(&slug)?;
            let graph = match run {
                Some(run) => crate::graph::Graph::of_run(engine, &slug, &RunId(run)).await?,
                None => crate::graph::Graph::of_workflow(engine.registry(), &slug)
                    .ok_or_else(|| EngineError::UnknownWorkflow(slug.clone()))?,
            };
            match format {
                GraphFormat::Mermaid => print!("{}", graph.mermaid()),
                GraphFormat::Svg => println!("{}", graph.svg()),
                GraphFormat::Json => println!("{}", pretty(&serde_json::to_value(&graph)?)),
            }
            Ok(EXIT_COMPLETED)
        }
        Command::Workflows(WorkflowsCommand::Check {
            files: Some(dir),
            json,
            ..
        }) => files::check_dir(engine, &dir, json),
        Command::Workflows(WorkflowsCommand::Check {
            workflow,
            in_flight,
            json,
            files: None,
        }) => check_workflows(engine, workflow, in_flight, json).await,
        Command::Runs(RunsCommand::Export { id, out }) => {
            let export = engine.export_run(&RunId(id)).await?;
            let text = serde_json::to_string_pretty(&export)?;
            match out {
                None => println!("{text}"),
                Some(path) => {
                    std::fs::write(&path, format!("{text}\n")).map_err(|e| {
                        EngineError::Serde(format!("could not write `{}`: {e}", path.display()))
                    })?;
                    eprintln!(
                        "wrote run {} ({}, {} events) to {}",
                        export.run.id,
                        export.run.status,
                        export.events.len(),
                        path.display()
                    );
                }
            }
            Ok(EXIT_COMPLETED)
        }
        Command::Runs(RunsCommand::List {
            status,
            workflow,
            queue,
            limit,
            tags,
            created_after,
            created_before,
            updated_after,
            updated_before,
            cursor,
            json,
        }) => {
            let now = engine.now();
            let filter = RunFilter {
                status,
                workflow,
                queue,
                limit: Some(limit),
                tags,
                created_after: created_after.map(|t| t.resolve(now)),
                created_before: created_before.map(|t| t.resolve(now)),
                updated_after: updated_after.map(|t| t.resolve(now)),
                updated_before: updated_before.map(|t| t.resolve(now)),
                cursor,
            };
            // A row that does not decode is left out and named on stderr; the listing
            // (and its exit code) stays that of the other runs.
            let listing = engine.list_runs_with_skipped(&filter).await?;
            if json {
                println!("{}", serde_json::to_string(&listing.runs)?);
                if let Some(cursor) = &listing.next_cursor {
                    eprintln!("next_cursor: {cursor}");
                }
            } else {
                output::print_runs(&listing.runs);
                if let Some(cursor) = &listing.next_cursor {
                    println!("next cursor: {cursor}");
                }
            }
            for skipped in &listing.skipped {
                eprintln!(
                    "warning: run {} left out: its row does not decode ({}); `runs get {}` \
                     shows the same error",
                    skipped.run_id, skipped.reason, skipped.run_id
                );
            }
            Ok(EXIT_COMPLETED)
        }
        Command::Runs(RunsCommand::Usage {
            since,
            until,
            workflow,
            json,
        }) => {
            let now = engine.now();
            let query = crate::UsageQuery {
                since: since.map(|t| t.resolve(now)),
                until: until.map(|t| t.resolve(now)),
                workflow,
            };
            let report = engine.usage(&query).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                output::print_usage(&report);
            }
            Ok(EXIT_COMPLETED)
        }
        Command::Runs(RunsCommand::Get { id, json }) => {
            let id = RunId(id);
            let record = engine.get_run(&id).await?;
            let events = engine.events(&id).await?;
            let steps = summarize_steps(&events);
            let hooks = engine.open_hooks(&id).await?;
            let forked_from = crate::forked_from(&events);
            let identity = crate::identity_of(&events);
            let links = crate::run_links_of(&record, &events);
            let tags = crate::tags::tags_of(&events);
            let cost =
                crate::engine::total_cost(&crate::engine::model_requests(&events, engine.prices()));
            if json {
                let usage = crate::engine::token_usage(&events);
                let mut body = json!({
                    "run": record, "steps": steps, "open_hooks": hooks, "usage": usage,
                    "tags": tags, "identity": identity,
                });
                if let Some((cost, unpriced)) = cost {
                    body["cost_usd"] = json!(cost);
                    if unpriced {
                        body["unpriced"] = json!(true);
                    }
                }
                if let Some(forked_from) = &forked_from {
                    body["forked_from"] = json!(forked_from);
                }
                if let Some(key) = crate::engine::key_of(&events) {
                    body["key"] = json!(key);
                }
                if let Some(event) = crate::started_by_event(&events) {
                    body["event"] = json!(event);
                }
                if let Some(waiting) = crate::http::queues::WaitingFor::of(engine, &record).await {
                    body["waiting_for"] = json!(waiting);
                }
                if let (Value::Object(body), Value::Object(links)) = (&mut body, json!(links)) {
                    body.extend(links); // parent, children, continued_from, continued_as
                }
                println!("{}", serde_json::to_string(&body)?);
            } else {
                output::print_run(&record, &steps, &tags);
                for line in output::identity_lines(&identity) {
                    println!("{line}");
                }
                if let Some(key) = crate::engine::key_of(&events) {
                    println!("business key: {key}");
                }
                if let Some(forked_from) = &forked_from {
                    output::print_forked_from(forked_from);
                }
                if let Some(event) = crate::started_by_event(&events) {
                    println!("started by event {} (id {})", event.name, event.id);
                }
                output::print_links(&links);
                if let Some(waiting) = crate::http::queues::WaitingFor::of(engine, &record).await {
                    println!("waiting: {}", waiting.message);
                }
                if let Some(wake_at) = record.wake_at
                    && !record.status.is_terminal()
                {
                    let left = (wake_at - engine.now()).to_std().unwrap_or_default();
                    let left = humantime::format_duration(Duration::from_secs(left.as_secs()));
                    let started = events
                        .iter()
                        .any(|e| e.event.kind == crate::event::EventKind::RunStarted);
                    if started {
                        println!("the run continues in {left}");
                    } else {
                        println!(
                            "the run has not started: it starts at {} (in {left})",
                            wake_at.to_rfc3339()
                        );
                    }
                }
                let usage = crate::engine::token_usage(&events);
                if usage.total_tokens > 0 {
                    let cost = match cost {
                        Some((cost, false)) => format!(", cost {}", crate::cost::dollars(cost)),
                        Some((cost, true)) => format!(
                            ", cost {} (some models have no price: add them to the file \
                             named by REPRISE_PRICES)",
                            crate::cost::dollars(cost)
                        ),
                        None => String::new(),
                    };
                    println!(
                        "tokens: {} ({} prompt, {} completion){cost}",
                        usage.total_tokens, usage.prompt_tokens, usage.completion_tokens
                    );
                }
                for hook in &hooks {
                    let timeout = hook
                        .timeout_at
                        .map(|t| format!(" (times out at {})", t.to_rfc3339()))
                        .unwrap_or_default();
                    println!(
                        "hook {} waits for a payload at {}{timeout}",
                        hook.id, hook.resume_url
                    );
                }
            }
            Ok(EXIT_COMPLETED)
        }
        Command::Runs(RunsCommand::Watch { id, timeout, json }) => {
            watch::watch(engine, RunId(id), timeout, json).await
        }
        Command::Runs(RunsCommand::Resume { id, json }) => resume(engine, id, json).await,
        Command::Runs(RunsCommand::Purge {
            before,
            workflow,
            status,
            dry_run,
            json,
        }) => purge::purge(engine, &before, workflow, status, dry_run, json).await,
        Command::Hooks(HooksCommand::Resume {
            token,
            payload,
            json,
        }) => {
            let payload = read_json(&payload, "--payload")?;
            let id = engine.resume_hook(&token, payload).await?;
            if !json {
                eprintln!("hook delivered; resuming run {id}");
            }
            drive_here(engine, &id, json).await
        }
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

fn read_json(text: &str, flag: &str) -> Result<Value, EngineError> {
    let text = match text.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|e| {
            EngineError::Serde(format!("could not read the input file `{path}`: {e}"))
        })?,
        None => text.to_owned(),
    };
    serde_json::from_str(&text).map_err(|e| {
        EngineError::Serde(format!(
            "{flag} is not valid JSON ({e}); pass JSON text such as '{{\"dir\":\".\"}}' or @path/to/file.json"
        ))
    })
}

async fn run_workflow(engine: &Engine, args: RunArgs) -> Result<u8, EngineError> {
    let input = read_json(&args.input, "--input")?;
    let mut options = crate::StartOptions::new().actor(crate::identity::Actor::cli_user());
    if let Some(user) = &args.user {
        options = options.user(user.clone());
    }
    if let Some(project) = &args.project {
        options = options.project(project.clone());
    }
    let start_at = match (args.delay, args.start_at) {
        (Some(delay), _) => Some(
            crate::engine::delay_from("--delay", engine.now(), delay)
                .map_err(EngineError::Config)?,
        ),
        (None, at) => at,
    };
    if let Some(at) = start_at {
        options = options.start_at(at);
    }
    if let Some(key) = &args.idempotency_key {
        options = options.idempotency_key(key.clone());
    }
    if let Some(key) = &args.key {
        options = options.key(key.clone());
    }
    if let Some(id) = &args.subscription {
        options = options.subscriber(engine.subscriber_for(&args.slug, id).await?);
    }
    options.queue = crate::queue::QueueRequest {
        queue: args.queue.clone(),
        key: args.queue_key.clone(),
        priority: args.priority,
        dedup_id: args.dedup.clone(),
    };
    let (id, created) = engine
        .start_with(&args.slug, input, Trigger::Cli, options)
        .await?;
    if let (false, Some(key)) = (created, &args.key) {
        return messages::report_existing(engine, &id, key, &args.slug, args.json).await;
    }
    if let (false, Some(key)) = (created, &args.idempotency_key) {
        return report_duplicate(engine, &id, key, &args).await;
    }
    if !created {
        return report_gated(engine, &id, &args).await;
    }
    // A delayed run is left to a worker: driving it here would start it now.
    let delayed = start_at.filter(|at| *at > engine.now());
    if args.enqueue || (delayed.is_some() && args.wait.is_none()) {
        if args.json {
            let mut line = json!({ "run_id": id, "status": RunStatus::Queued });
            if let Some(at) = delayed {
                line["wake_at"] = json!(at);
            }
            if args.dedup.is_some() {
                line["created"] = json!(true);
            }
            println!("{line}");
        } else if let Some(at) = delayed {
            println!(
                "run {id} queued ({}); it starts at {}, when a `dev` or `worker` process runs it",
                args.slug,
                at.to_rfc3339()
            );
        } else {
            println!(
                "run {id} queued ({}); a `dev` or `worker` process runs it",
                args.slug
            );
        }
        return Ok(EXIT_COMPLETED);
    }
    if let Some(wait) = args.wait {
        if !args.json {
            eprintln!("run {id} queued ({}); waiting for a worker", args.slug);
        }
        let record = serve::wait_with_progress(engine, &id, wait, !args.json).await?;
        return report_record(engine, &record, args.json).await;
    }
    if !args.json {
        eprintln!("run {id} started ({})", args.slug);
    }
    drive_here(engine, &id, args.json).await
}

/// `workflows run` when the start created nothing because a de-duplication id or a
/// debounce answered it with run `id`: says so (`"created": false` with `--json`) and
/// exits 0.
async fn report_gated(engine: &Engine, id: &RunId, args: &RunArgs) -> Result<u8, EngineError> {
    let record = engine.get_run(id).await?;
    let queue = record
        .queue
        .as_ref()
        .map(|q| q.name.clone())
        .unwrap_or_default();
    if args.json {
        println!(
            "{}",
            json!({ "run_id": id, "status": record.status, "created": false, "queue": queue })
        );
        return Ok(EXIT_COMPLETED);
    }
    let why = match &args.dedup {
        Some(dedup) => format!("with de-duplication id `{dedup}`"),
        None => {
            "pending under the same key (the queue debounces starts; first start wins)".to_owned()
        }
    };
    println!(
        "run {id} ({}) already exists in queue `{queue}` {why}; it is {}, and no other run \
         was started",
        args.slug, record.status
    );
    Ok(EXIT_COMPLETED)
}

/// `workflows run --idempotency-key` when the key already started run `id`: says so and
/// reports that run as the command would have (its id with `--enqueue`; its end, once it
/// ended, else waits with `--wait` or drives it here), starting nothing.
async fn report_duplicate(
    engine: &Engine,
    id: &RunId,
    key: &str,
    args: &RunArgs,
) -> Result<u8, EngineError> {
    let record = engine.get_run(id).await?;
    if args.json && (args.enqueue || record.status.is_terminal()) {
        let mut line = json!({ "run_id": id, "status": record.status, "duplicate": true });
        if let Some(output) = &record.output {
            line["output"] = output.clone();
        }
        if let Some(error) = &record.error {
            line["error"] = error.clone();
        }
        println!("{line}");
        let completed = args.enqueue || record.status == RunStatus::Completed;
        return Ok(if completed {
            EXIT_COMPLETED
        } else {
            EXIT_FAILED
        });
    }
    if !args.json {
        eprintln!(
            "run {id} ({}) was already started with idempotency key `{key}`; it is {}, and \
             no other run was started",
            args.slug, record.status
        );
    }
    if args.enqueue {
        if !args.json {
            println!("run {id} ({}) is {}", args.slug, record.status);
        }
        return Ok(EXIT_COMPLETED);
    }
    if record.status.is_terminal() {
        return report_record(engine, &record, args.json).await;
    }
    if let Some(wait) = args.wait {
        let record = serve::wait_with_progress(engine, id, wait, !args.json).await?;
        return report_record(engine, &record, args.json).await;
    }
    drive_here(engine, id, args.json).await
}

/// Drives run `id` in this process and reports it. When another process holds the run's
/// lease, waits: for the run to end there, or for the lease to expire (its holder died),
/// and then takes the run over.
async fn drive_here(engine: &Engine, id: &RunId, as_json: bool) -> Result<u8, EngineError> {
    let mut told = false;
    loop {
        match engine.drive(id).await {
            Ok(execution) => return report(engine, &execution, as_json).await,
            Err(EngineError::Leased {
                owner, expires_at, ..
            }) => {
                if !as_json && !told {
                    eprintln!(
                        "run {id} is held by {owner} (lease until {expires_at}); waiting for it \
                         to finish, or for the lease to expire if that process is gone"
                    );
                    told = true;
                }
                let record =
                    serve::wait_with_progress(engine, id, Duration::from_secs(1), false).await?;
                if record.status.is_terminal() {
                    return report_record(engine, &record, as_json).await;
                }
            }
            Err(error) => return Err(error),
        }
    }
}

/// `runs retry`: retries one failed run, or every failed run of `workflow` that failed
/// within `since`; prints each; returns the exit code (2 when a run named by id cannot be
/// retried, 0 otherwise, also when no run matched).
async fn retry_runs(
    engine: &Engine,
    id: Option<String>,
    workflow: Option<String>,
    since: Option<std::time::Duration>,
    json: bool,
) -> Result<u8, EngineError> {
    let by = cli_user();
    let ids = match id {
        Some(id) => vec![RunId(id)],
        None => {
            let cutoff = since.map(|since| {
                engine.now() - chrono::TimeDelta::from_std(since).unwrap_or(chrono::TimeDelta::MAX)
            });
            engine
                .list_runs(&RunFilter {
                    status: Some(RunStatus::Failed),
                    workflow,
                    limit: None,
                    ..RunFilter::default()
                })
                .await?
                .into_iter()
                .filter(|run| cutoff.is_none_or(|cutoff| run.updated_at >= cutoff))
                .map(|run| run.id)
                .collect()
        }
    };
    if ids.is_empty() && !json {
        println!("no failed runs match");
    }
    for id in ids {
        let retried = engine.retry_run(&id, &by).await?;
        if json {
            println!("{}", json!(retried));
        } else {
            let step = match &retried.step {
                Some(step) => format!("step {step} runs again"),
                None => "the workflow body runs again".to_owned(),
            };
            println!(
                "run {id} queued for attempt {} ({step}; completed steps replay)",
                retried.attempt
            );
        }
    }
    Ok(EXIT_COMPLETED)
}

/// Who asks, as operations record it: `cli:$USER` (`cli:unknown` without `USER`).
pub(super) fn cli_user() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}

/// `runs fork` and `runs restart`: creates the new run and prints it.
async fn fork_run(
    engine: &Engine,
    id: RunId,
    options: crate::ForkOptions,
    json: bool,
) -> Result<u8, EngineError> {
    let forked = engine.fork_run(&id, options).await?;
    if json {
        println!("{}", json!(forked));
        return Ok(EXIT_COMPLETED);
    }
    let what = match &forked.forked_from.step {
        Some(step) => format!(
            "forked from run {id} at step {step}: {} copied events replay, {step} and what \
             follows run live",
            forked.copied
        ),
        None => format!("restarted from run {id}: every step runs again"),
    };
    let input = if forked.forked_from.input_changed {
        " with a new input (copied steps whose input changed run again)"
    } else {
        ""
    };
    println!("run {} queued, {what}{input}", forked.run_id);
    Ok(EXIT_COMPLETED)
}

/// Reports a run by its record (it was executed elsewhere); returns the exit code.
async fn report_record(
    engine: &Engine,
    record: &RunRecord,
    as_json: bool,
) -> Result<u8, EngineError> {
    let code = match record.status {
        RunStatus::Completed => EXIT_COMPLETED,
        RunStatus::Failed | RunStatus::Canceled => EXIT_FAILED,
        _ => EXIT_INCOMPLETE,
    };
    if as_json {
        let mut line = json!({ "run_id": record.id, "status": record.status });
        if let Some(output) = &record.output {
            line["output"] = output.clone();
        }
        if let Some(error) = &record.error {
            line["error"] = error.clone();
        }
        println!("{line}");
        return Ok(code);
    }
    let events = engine.events(&record.id).await?;
    let steps = summarize_steps(&events);
    output::print_run(record, &steps, &crate::tags::tags_of(&events));
    if !record.status.is_terminal() {
        println!(
            "run {} is still {}; `runs get {}` shows it later",
            record.id, record.status, record.id
        );
    }
    Ok(code)
}

/// Prints how an execution ended; returns its exit code.
async fn report(engine: &Engine, execution: &Execution, as_json: bool) -> Result<u8, EngineError> {
    let id = &execution.run_id;
    let record = engine.get_run(id).await?;
    let (code, body) = match &execution.outcome {
        RunOutcome::Completed(output) => (EXIT_COMPLETED, json!({ "output": output })),
        RunOutcome::Failed(error) => (EXIT_FAILED, json!({ "error": error })),
        RunOutcome::Suspended(waits) => (EXIT_INCOMPLETE, json!({ "waits": waits })),
        RunOutcome::Canceled => (EXIT_FAILED, json!({ "error": record.error })),
        RunOutcome::Interrupted | RunOutcome::Paused => (EXIT_INCOMPLETE, json!({})),
    };
    if as_json {
        let mut line = json!({
            "run_id": id,
            "status": record.status,
            "replayed": execution.replayed,
            "executed": execution.executed,
        });
        if let (Some(line), Some(body)) = (line.as_object_mut(), body.as_object()) {
            line.extend(body.clone());
        }
        println!("{line}");
        return Ok(code);
    }
    let events = engine.store().events(id).await?;
    let steps = summarize_steps(&events);
    output::print_execution(&record, execution, &steps);
    Ok(code)
}

/// `runs resume [<id>]`: drives the run, or every unfinished one (oldest first), here. A
/// run that cannot be resumed (this binary lacks its workflow, its rows do not decode, the
/// store failed for it) does not stop the others: each is reported at the end, on stderr
/// (and, with `--json`, as a line `{"run_id", "resumed": false, "error"}`), and the exit
/// code is the worst of all: [`exit_code`] of each error.
async fn resume(engine: &Engine, id: Option<String>, as_json: bool) -> Result<u8, EngineError> {
    let (ids, skipped): (Vec<RunId>, _) = match id {
        Some(id) => (vec![RunId(id)], Vec::new()),
        None => {
            let listing = engine.unfinished_runs_with_skipped().await?;
            (
                listing.runs.into_iter().map(|r| r.id).collect(),
                listing.skipped,
            )
        }
    };
    if ids.is_empty() && skipped.is_empty() && !as_json {
        println!("no unfinished runs");
    }
    let mut worst = EXIT_COMPLETED;
    let mut not_resumed: Vec<(RunId, String)> = Vec::new();
    for id in ids {
        if !as_json {
            eprintln!("resuming run {id}");
        }
        match drive_here(engine, &id, as_json).await {
            Ok(code) => worst = worst.max(code),
            Err(error) => {
                worst = worst.max(exit_code(&error));
                let mut message = error.to_string();
                if crate::engine::is_unexecutable(&error) {
                    message.push_str(
                        " (put off: workers retry it with backoff, then park it as failed with \
                         kind `unexecutable`)",
                    );
                }
                not_resumed.push((id, message));
            }
        }
    }
    for skipped in skipped {
        let error = EngineError::Corrupt {
            run: skipped.run_id.to_string(),
            message: skipped.reason,
        };
        worst = worst.max(exit_code(&error));
        not_resumed.push((skipped.run_id, format!("{error} (left out of the listing)")));
    }
    if !not_resumed.is_empty() {
        eprintln!(
            "warning: {} run(s) could not be resumed:",
            not_resumed.len()
        );
    }
    for (id, message) in &not_resumed {
        eprintln!("  run {id}: {message}");
        if as_json {
            println!(
                "{}",
                json!({ "run_id": id, "resumed": false, "error": message })
            );
        }
    }
    Ok(worst)
}

/// A recorded run that does not replay against this binary, as `workflows check` lists it.
#[derive(Debug, Serialize)]
struct Incompatible {
    run_id: RunId,
    workflow: String,
    status: RunStatus,
    /// `non_determinism`, `recorded_output`, `diverged`, `unknown_workflow` or `unreadable`.
    reason: &'static str,
    /// The offending step's correlation id, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    step: Option<String>,
    /// For people: the non-determinism report, or what differs.
    message: String,
}

/// `workflows check`: replays every recorded run (of `workflow`; only unfinished ones with
/// `in_flight`) and lists those that no longer replay. Exit code 1 when there are any.
async fn check_workflows(
    engine: &Engine,
    workflow: Option<String>,
    in_flight: bool,
    as_json: bool,
) -> Result<u8, EngineError> {
    let filter = RunFilter {
        workflow,
        ..RunFilter::default()
    };
    let runs: Vec<RunRecord> = engine
        .list_runs(&filter)
        .await?
        .into_iter()
        .filter(|run| !in_flight || !run.status.is_terminal())
        .collect();
    let mut incompatible = Vec::new();
    for run in &runs {
        if let Some(problem) = check_run(engine, run).await? {
            incompatible.push(problem);
        }
    }
    if as_json {
        let body = json!({
            "checked": runs.len(),
            "compatible": runs.len() - incompatible.len(),
            "incompatible": incompatible,
        });
        println!("{body}");
    } else {
        output::print_check(runs.len(), &incompatible);
    }
    Ok(if incompatible.is_empty() {
        EXIT_COMPLETED
    } else {
        EXIT_FAILED
    })
}

/// The clock of a replay check: time stands still at the run's creation, so every recorded
/// sleep that had not ended is still ahead and the replay suspends on it, as the run did.
/// Replays `run` in a fresh replay-only copy of `engine`; `None` when it replays.
///
/// # Errors
/// Only when the run's history cannot be read from the store.
async fn check_run(engine: &Engine, run: &RunRecord) -> Result<Option<Incompatible>, EngineError> {
    let problem = |reason, step, message| Incompatible {
        run_id: run.id.clone(),
        workflow: run.workflow.clone(),
        status: run.status,
        reason,
        step,
        message,
    };
    if engine.registry().workflow(&run.workflow).is_none() {
        let message = format!("this binary has no workflow `{}`", run.workflow);
        return Ok(Some(problem("unknown_workflow", None, message)));
    }
    let export = engine.export_run(&run.id).await?;
    let judged = match engine.check_replay(&export).await {
        Ok(judged) => judged,
        Err(error) => {
            let message = format!("its history cannot be replayed: {error}");
            return Ok(Some(problem("unreadable", None, message)));
        }
    };
    Ok(judged.err().map(|mismatch| {
        let step = mismatch.step().map(str::to_owned);
        problem(mismatch.reason(), step, mismatch.to_string())
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    /// Processes starting together on a new database (several workers) all end up with
    /// the one secret that was published, whole: none reads a key file still being
    /// written (it failed as "0 bytes" before the key was published by a hard link).
    #[test]
    fn concurrent_first_starts_share_one_whole_hook_secret() {
        for _ in 0..100 {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("runs.db").display());
            let secrets: Vec<Vec<u8>> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..8)
                    .map(|_| scope.spawn(|| super::hook_secret_file(&url, true)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap().unwrap().unwrap())
                    .collect()
            });
            assert!(secrets.iter().all(|s| s.len() == 32 && *s == secrets[0]));
            let leftovers: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .filter(|name| name != "hook.key")
                .collect();
            assert!(leftovers.is_empty(), "{leftovers:?}");
        }
    }
}
