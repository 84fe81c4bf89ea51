//! `dev` and `worker`: the long-running commands. Both stop gracefully on SIGINT or
//! SIGTERM (see [`crate::Worker::run`]).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::args::{DevArgs, WorkerArgs};
use super::{EXIT_COMPLETED, EXIT_INCOMPLETE, EXIT_STORE};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::event::RunStatus;
use crate::worker::{Worker, WorkerOptions};

/// `dev`: worker, trigger scheduler and HTTP API in one process; prints the URL and one
/// line per run transition.
pub(super) async fn dev(
    engine: &Engine,
    args: DevArgs,
    db: &str,
    listener: std::net::TcpListener,
) -> Result<u8, EngineError> {
    let listener = listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpListener::from_std(listener))
        .map_err(|e| EngineError::Store(format!("cannot listen on {}: {e}", args.addr)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| EngineError::Store(format!("cannot read the listening address: {e}")))?;
    let options = crate::http::HttpOptions::try_from_env()?;
    let stop = shutdown_on_signal();
    println!(
        "reprise dev: http://{addr}  (database {db}, worker {})",
        engine.owner_id()
    );
    if options.api_token.is_none() && !addr.ip().is_loopback() {
        eprintln!("{}", exposed_warning(addr));
    }
    let slugs: Vec<&str> = engine
        .registry()
        .workflows()
        .map(|w| w.registration.slug)
        .collect();
    println!("workflows: {}", slugs.join(", "));
    let files: Vec<String> = engine
        .registry()
        .workflows()
        .filter_map(|w| Some(format!("{} ({})", w.registration.slug, w.path?.display())))
        .collect();
    if !files.is_empty() {
        println!("from workflow files: {}", files.join(", "));
    }
    print_routing(engine, &args.worker);
    println!("web UI:       http://{addr}/ui");
    println!(
        "start a run:  curl -X POST http://{addr}/workflows/<slug> -H 'content-type: application/json' -d '<input>'"
    );
    let printer = tokio::spawn(print_transitions(engine.clone(), stop.clone()));
    let server = tokio::spawn(crate::http::serve(
        engine.clone(),
        listener,
        options,
        stop.clone().cancelled_owned(),
    ));
    let code = run_worker(engine, &args.worker, stop.clone()).await?;
    stop.cancel();
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => eprintln!("error: the HTTP server stopped: {error}"),
        Err(error) => eprintln!("error: the HTTP server task failed: {error}"),
    }
    let _ = printer.await;
    Ok(code)
}

/// What `dev` prints on standard error when it listens on a non-loopback address without
/// an API token.
fn exposed_warning(addr: std::net::SocketAddr) -> String {
    format!(
        "warning: the HTTP API listens on {addr}, which other machines can reach, and has no \
         API token: anyone who reaches it can start, cancel and read runs. Set {} (clients \
         then send `Authorization: Bearer <token>`), or listen on 127.0.0.1 (`--addr \
         127.0.0.1:{}`)",
        crate::http::API_TOKEN_ENV,
        addr.port()
    )
}

/// `worker`: worker and trigger scheduler until SIGINT or SIGTERM.
pub(super) async fn worker(engine: &Engine, args: WorkerArgs) -> Result<u8, EngineError> {
    let stop = shutdown_on_signal();
    eprintln!(
        "reprise worker {}: up to {} runs at once, lease {}",
        engine.owner_id(),
        args.concurrency,
        humantime::format_duration(args.lease)
    );
    print_routing(engine, &args);
    run_worker(engine, &args, stop).await
}

/// Says on standard error which queues and workflows the worker claims, when it is routed
/// or the engine knows queues.
fn print_routing(engine: &Engine, args: &WorkerArgs) {
    if let Some(workflows) = &args.workflows {
        eprintln!("claiming only runs of workflows: {}", workflows.join(", "));
    }
    match &args.queues {
        Some(queues) => eprintln!("claiming only runs in queues: {}", queues.join(", ")),
        None if !engine.queues().is_empty() => {
            let names: Vec<&str> = engine.queues().iter().map(|q| q.name.as_str()).collect();
            eprintln!(
                "claiming runs in no queue and in queues: {}",
                names.join(", ")
            );
        }
        None => {}
    }
}

/// Runs the worker, the retention sweep (see [`crate::EngineBuilder::retention`]) and the
/// trigger scheduler (unless disabled) until `stop`, then prints
/// what the worker did.
async fn run_worker(
    engine: &Engine,
    args: &WorkerArgs,
    stop: CancellationToken,
) -> Result<u8, EngineError> {
    let triggers = (!args.no_triggers).then(|| {
        tokio::spawn(crate::trigger::run_schedules(
            engine.clone(),
            stop.clone().cancelled_owned(),
        ))
    });
    // Retention (a no-op unless a retention is configured): ended runs past it are purged.
    let retention = tokio::spawn(crate::engine::run_retention(
        engine.clone(),
        stop.clone().cancelled_owned(),
    ));
    let worker = Worker::new(
        engine,
        WorkerOptions {
            concurrency: args.concurrency,
            shutdown_grace: args.shutdown_grace,
            queues: args.queues.clone(),
            workflows: args.workflows.clone(),
            ..WorkerOptions::default()
        },
    );
    let report = worker.run(stop.clone().cancelled_owned()).await?;
    stop.cancel();
    if let Err(error) = retention.await {
        eprintln!("error: the retention sweep failed: {error}");
    }
    let mut code = EXIT_COMPLETED;
    if let Some(triggers) = triggers {
        match triggers.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                eprintln!("error: the trigger scheduler stopped: {error}");
                code = super::exit_code(&error);
            }
            Err(error) => {
                eprintln!("error: the trigger scheduler failed: {error}");
                code = EXIT_STORE;
            }
        }
    }
    eprintln!(
        "worker stopped: {} completed, {} failed, {} suspended, {} canceled, {} handed back, {} errors",
        report.completed,
        report.failed,
        report.suspended,
        report.canceled,
        report.interrupted,
        report.errors
    );
    Ok(code)
}

/// A token cancelled on the first SIGINT or SIGTERM; the second exits at once. One per
/// process: the first call installs the handlers (before it, a signal has its default
/// effect), later calls return the same token, so the CLI calls it early in startup.
pub(super) fn shutdown_on_signal() -> CancellationToken {
    static STOP: std::sync::OnceLock<CancellationToken> = std::sync::OnceLock::new();
    STOP.get_or_init(|| {
        let token = CancellationToken::new();
        let cancel = token.clone();
        // Registered here, synchronously: from now on the signals are ours.
        let mut signals = Signals::install();
        tokio::spawn(async move {
            signals.next().await;
            eprintln!("shutting down: finishing running steps (Ctrl-C again to force)…");
            cancel.cancel();
            signals.next().await;
            eprintln!("forced exit");
            std::process::exit(i32::from(EXIT_INCOMPLETE));
        });
        token
    })
    .clone()
}

/// SIGINT and (on Unix) SIGTERM, registered when installed.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Signals {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        {
            Signals {}
        }
    }

    /// The next SIGINT or SIGTERM.
    async fn next(&mut self) {
        #[cfg(unix)]
        {
            async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            if self.term.is_none() && self.int.is_none() {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
            tokio::select! {
                () = recv(&mut self.term) => {}
                () = recv(&mut self.int) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Prints one line per run transition until `stop`.
async fn print_transitions(engine: Engine, stop: CancellationToken) {
    let mut transitions = engine.subscribe();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            transition = transitions.recv() => match transition {
                Ok(t) => {
                    let detail = match t.status {
                        RunStatus::Sleeping | RunStatus::Waiting => {
                            match engine.get_run(&t.run_id).await {
                                Ok(run) => run
                                    .wake_at
                                    .map(|w| format!("  (until {})", w.format("%Y-%m-%d %H:%M:%S UTC")))
                                    .unwrap_or_default(),
                                Err(_) => String::new(),
                            }
                        }
                        _ => String::new(),
                    };
                    println!(
                        "{}  {}  {:<10} {}{detail}",
                        t.at.format("%H:%M:%S%.3f"),
                        t.run_id,
                        t.status,
                        t.workflow
                    );
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    println!("… {n} transitions not shown (too many at once)");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// Waits for run `id` to end, at most `timeout`, redrawing one progress line on stderr
/// (status, steps recorded, elapsed time). Returns the final record.
pub(super) async fn wait_with_progress(
    engine: &Engine,
    id: &crate::RunId,
    timeout: Duration,
    show: bool,
) -> Result<crate::event::RunRecord, EngineError> {
    use std::io::{IsTerminal, Write};
    let started = tokio::time::Instant::now();
    let deadline = started + timeout;
    let terminal = std::io::stderr().is_terminal();
    let mut last_line = String::new();
    loop {
        let record = engine
            .wait_for_end(
                id,
                Duration::from_millis(500)
                    .min(deadline - tokio::time::Instant::now().min(deadline)),
            )
            .await?;
        if show {
            let line = format!(
                "run {id}: {} · {} events · {}s",
                record.status,
                record.next_seq,
                started.elapsed().as_secs()
            );
            if line != last_line {
                if terminal {
                    eprint!("\r\x1b[2K{line}");
                    let _ = std::io::stderr().flush();
                } else if record.status.to_string() != last_status(&last_line) {
                    eprintln!("{line}");
                }
                last_line = line;
            }
        }
        if record.status.is_terminal() || tokio::time::Instant::now() >= deadline {
            if show && terminal {
                eprintln!();
            }
            return Ok(record);
        }
    }
}

/// The status word of a progress line (`run <id>: <status> · …`).
fn last_status(line: &str) -> String {
    line.split(": ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_default()
        .to_owned()
}
