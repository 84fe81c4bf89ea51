//! `reprise-bench`: the benchmark harness of reprise (DESIGN "Performance").
//!
//! ```text
//! cargo run --release -p reprise-bench -- --workload all           # table
//! cargo run --release -p reprise-bench -- --workload all --json    # for machines
//! cargo run --release -p reprise-bench -- --workload w1 --store sqlite
//! ```
//!
//! Workloads (every step a no-op action returning a small JSON value derived from its
//! input): `w1` one run of 1,000 sequential steps; `w2` 1,000 runs × 10 steps started
//! together; `w3` a 1,000-step run killed after 500 steps, then resumed; `w3-10k` the same
//! with a 10,000-step history; `flat` the cost of step 10 against step 10,000 of one run;
//! `search` (not in `all`) `list_runs` latency over 1,000,000 tagged runs; `flow` (not in
//! `all`) the cost of flow control: W2 executed by a `Worker` in no queue (`w2-worker`),
//! in a queue with per-key concurrency (`w2-queue`), in a rate-limited queue
//! (`w2-rate`) and in a queue with a step rate limit that does not bind
//! (`w2-step-rate`), each also on its own.
//! Each runs against the in-memory and the SQLite store (a temporary directory under
//! `--dir`, default the working directory, so on the same disk). The disk's fdatasync
//! latency is measured in the same invocation, and SQLite throughput is shown as
//! fdatasyncs per step.
//!
//! With several workloads, each (workload, store) pair runs in a fresh child process of
//! this binary, so its peak RSS (VmHWM) is its own. Every job runs `--repeat` times
//! (default 3, interleaved) and the median is reported with the range. `--store all` also
//! runs W1 and W2 against `sqlite-normal` (SQLite with `synchronous=NORMAL`, no fsync per
//! commit): a diagnostic that separates the fsync from the rest of a commit's cost.

mod fleet;
mod flow;
mod otel;
mod pg;
mod report;
mod search;
mod stats;
mod system;
mod workflows;
mod workloads;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use clap::{Parser, ValueEnum};
use reprise::RunId;

use report::{Goal, Metric, Report};
use workloads::{Out, Sizes, StoreKind, THROUGHPUT};

/// The error type of this binary.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Which workload to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Workload {
    /// Every workload below.
    All,
    /// One run of `--w1-steps` sequential steps.
    W1,
    /// `--w2-runs` runs × `--w2-steps` steps, started together.
    W2,
    /// A 1,000-step run killed after 500 steps, then resumed (DESIGN's W3).
    W3,
    /// A run killed after 10,000 steps, then resumed: replay of a 10,000-step history.
    #[value(name = "w3-10k")]
    W3_10k,
    /// Step 10 against step `--flat-steps` of one long run.
    Flat,
    /// `--sleepers` runs asleep for an hour: what they cost an idle worker's memory
    /// (sqlite and postgres; not part of `all`).
    Sleepers,
    /// Only the disk's fdatasync latency.
    Fsync,
    /// `w2-worker`, `w2-queue`, `w2-rate` and `w2-step-rate`: the cost of flow control
    /// (not part of `all`).
    Flow,
    /// W2 executed by one `Worker` (64 slots), the runs in no queue: the baseline of
    /// `w2-queue` and `w2-rate`.
    #[value(name = "w2-worker")]
    W2Worker,
    /// W2 executed by one `Worker`, every run in a queue with `key_concurrency` 10 and a
    /// key out of `--queue-keys`.
    #[value(name = "w2-queue")]
    W2Queue,
    /// W2 executed by one `Worker`, every run in a queue rate-limited to `--rate-limit`
    /// admissions per `--rate-period-ms`.
    #[value(name = "w2-rate")]
    W2Rate,
    /// W2 executed by one `Worker`, every run in a queue with a step rate limit of as many
    /// step attempts per second as the W2 has steps (every step takes a permit; none
    /// waits).
    #[value(name = "w2-step-rate")]
    W2StepRate,
    /// `--search-runs` runs with tags, then `list_runs` latency of indexed filters (sqlite
    /// and postgres; not part of `all`).
    Search,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::All => "all",
            Workload::W1 => "w1",
            Workload::W2 => "w2",
            Workload::W3 => "w3",
            Workload::W3_10k => "w3-10k",
            Workload::Flat => "flat",
            Workload::Sleepers => "sleepers",
            Workload::Fsync => "fsync",
            Workload::Flow => "flow",
            Workload::W2Worker => "w2-worker",
            Workload::W2Queue => "w2-queue",
            Workload::W2Rate => "w2-rate",
            Workload::W2StepRate => "w2-step-rate",
            Workload::Search => "search",
        }
    }
}

/// Which stores to run against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Stores {
    /// `memory` and `sqlite`, plus `sqlite-normal` for W1 and W2, plus `postgres` (all but
    /// `flat`) when a Postgres URL is configured.
    All,
    /// The in-memory store.
    Memory,
    /// The SQLite store as shipped (WAL, `synchronous=FULL`: fsync on every commit).
    Sqlite,
    /// Diagnostic: SQLite with `synchronous=NORMAL` (no fsync per commit), to separate
    /// the fsync from everything else a commit costs. Not a DESIGN configuration.
    SqliteNormal,
    /// The Postgres store on a fresh schema of `--postgres-url` (W1, W2 with 4 workers,
    /// W3, sleepers).
    Postgres,
}

/// Hidden modes of the W3 child processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Internal {
    /// Execute a run and hang at `--kill-at` until killed.
    Victim,
    /// Resume a run in a fresh process and report timings as JSON.
    Resume,
    /// Run a worker on a store for a few seconds and report its memory as JSON.
    IdleWorker,
}

/// Benchmarks of reprise: DESIGN's workloads against the memory and SQLite stores.
#[derive(Debug, Parser)]
#[command(name = "reprise-bench", version)]
struct Args {
    /// The workload to run.
    #[arg(long, value_enum, default_value = "all")]
    workload: Workload,
    /// The stores to run it against.
    #[arg(long, value_enum, default_value = "all")]
    store: Stores,
    /// Where the temporary SQLite files and the fsync probe go (default: the working
    /// directory, so the disk measured is the one you work on).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Run every workload in this process instead of one child process each (peak RSS is
    /// then cumulative).
    #[arg(long)]
    in_process: bool,
    /// Export the engine's spans over OTLP/HTTP (the `otel` feature's batched exporter) to
    /// a local sink that accepts and drops them: the cost of tracing with OpenTelemetry on.
    #[arg(long)]
    otel: bool,
    /// W1: steps of the run.
    #[arg(long, default_value_t = 1000)]
    w1_steps: u32,
    /// W1: repetitions (the median is reported).
    #[arg(long, default_value_t = 3)]
    w1_reps: u32,
    /// W2: runs started together.
    #[arg(long, default_value_t = 1000)]
    w2_runs: u32,
    /// W2: steps per run.
    #[arg(long, default_value_t = 10)]
    w2_steps: u32,
    /// `w2-queue`: how many keys the runs are spread over (run `i` gets key `k{i mod n}`;
    /// `key_concurrency` is 10, so fewer than runs/10 keys make the bound hold runs back).
    #[arg(long, default_value_t = 100)]
    queue_keys: u32,
    /// `w2-rate`: admissions per window (default: `--w2-runs`, so the limit does not bind
    /// within a drive of up to one window).
    #[arg(long)]
    rate_limit: Option<u32>,
    /// `w2-rate`: the window, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    rate_period_ms: u64,
    /// Flat cost: steps of the long run.
    #[arg(long, default_value_t = 10_000)]
    flat_steps: u32,
    /// Flat cost: steps averaged per window.
    #[arg(long, default_value_t = 50)]
    flat_window: usize,
    /// W3: in-process resumes (the median is reported).
    #[arg(long, default_value_t = 5)]
    w3_resumes: u32,
    /// Sleepers: runs put to sleep.
    #[arg(long, default_value_t = 100_000)]
    sleepers: u32,
    /// Search: runs in the store.
    #[arg(long, default_value_t = 1_000_000)]
    search_runs: u32,
    /// Search: queries per filter (median and p99 reported).
    #[arg(long, default_value_t = 50)]
    search_queries: u32,
    /// Search: writes in flight while filling the store.
    #[arg(long, default_value_t = 512)]
    search_concurrency: usize,
    /// The Postgres database the `postgres` store uses (a fresh schema per job, dropped
    /// after it). Default: `REPRISE_BENCH_POSTGRES_URL`, else `REPRISE_TEST_POSTGRES_URL`.
    #[arg(long)]
    postgres_url: Option<String>,
    /// fdatasync samples.
    #[arg(long, default_value_t = 200)]
    fsync_iterations: usize,
    /// Rounds: every job (and the fdatasync probe) runs this many times, interleaved, and
    /// the median is reported with the range.
    #[arg(long, default_value_t = 3)]
    repeat: u32,
    /// Internal: this is a child process running one job (no fdatasync measurement, no
    /// progress lines: the parent does both).
    #[arg(long, hide = true)]
    child: bool,
    /// Internal: a W3 child process.
    #[arg(long, value_enum, hide = true)]
    internal: Option<Internal>,
    /// Internal: the database of a W3 child.
    #[arg(long, hide = true)]
    db: Option<PathBuf>,
    /// Internal: the Postgres schema of a child process.
    #[arg(long, hide = true)]
    schema: Option<String>,
    /// Internal: the run of a W3 child.
    #[arg(long, hide = true)]
    run: Option<String>,
    /// Internal: where the W3 victim stops.
    #[arg(long, hide = true)]
    kill_at: Option<u32>,
}

impl Args {
    fn sizes(&self) -> Sizes {
        Sizes {
            w1_steps: self.w1_steps,
            w1_reps: self.w1_reps,
            w2_runs: self.w2_runs,
            w2_steps: self.w2_steps,
            queue_keys: self.queue_keys,
            rate_limit: self.rate_limit.unwrap_or(self.w2_runs),
            rate_period_ms: self.rate_period_ms,
            flat_steps: self.flat_steps,
            flat_window: self.flat_window,
            w3_resumes: self.w3_resumes,
            sleepers: self.sleepers,
            search_runs: self.search_runs,
            search_queries: self.search_queries,
            search_concurrency: self.search_concurrency,
        }
    }

    /// The (workload, store) pairs to run.
    fn jobs(&self) -> Vec<(Workload, StoreKind)> {
        let workloads = match self.workload {
            Workload::All => vec![
                Workload::W1,
                Workload::W2,
                Workload::W3,
                Workload::W3_10k,
                Workload::Flat,
            ],
            Workload::Fsync => vec![],
            Workload::Flow => vec![
                Workload::W2Worker,
                Workload::W2Queue,
                Workload::W2Rate,
                Workload::W2StepRate,
            ],
            one => vec![one],
        };
        let stores = match self.store {
            Stores::All if matches!(self.workload, Workload::Sleepers | Workload::Search) => {
                let mut stores = vec![StoreKind::Sqlite];
                stores.extend(pg::url().map(|_| StoreKind::Postgres));
                stores
            }
            Stores::All => {
                let mut stores = vec![
                    StoreKind::Memory,
                    StoreKind::Sqlite,
                    StoreKind::SqliteNormal,
                ];
                stores.extend(pg::url().map(|_| StoreKind::Postgres));
                stores
            }
            Stores::Memory => vec![StoreKind::Memory],
            Stores::Sqlite => vec![StoreKind::Sqlite],
            Stores::SqliteNormal => vec![StoreKind::SqliteNormal],
            Stores::Postgres => vec![StoreKind::Postgres],
        };
        // The diagnostic store runs the throughput workloads only (W3 kills and reopens
        // the file with the shipped options); with `--store all`, only W1 and W2.
        let diagnostic = |w: Workload| match self.store {
            Stores::SqliteNormal => matches!(w, Workload::W1 | Workload::W2 | Workload::Flat),
            _ => matches!(w, Workload::W1 | Workload::W2),
        };
        workloads
            .into_iter()
            .flat_map(|w| stores.iter().map(move |s| (w, *s)))
            .filter(|(w, s)| *s != StoreKind::SqliteNormal || diagnostic(*w))
            // `flat` measures the log's growth; on Postgres it adds nothing W1 doesn't show.
            .filter(|(w, s)| *s != StoreKind::Postgres || *w != Workload::Flat)
            .collect()
    }

    /// The arguments of a child process running one job.
    fn child_args(&self, workload: Workload, store: StoreKind, dir: &Path) -> Vec<String> {
        let mut args: Vec<String> = [
            "--workload",
            workload.name(),
            "--store",
            store.name(),
            "--json",
            "--child",
        ]
        .map(str::to_owned)
        .to_vec();
        let sized = [
            ("--w1-steps", self.w1_steps.to_string()),
            ("--w1-reps", self.w1_reps.to_string()),
            ("--w2-runs", self.w2_runs.to_string()),
            ("--w2-steps", self.w2_steps.to_string()),
            ("--queue-keys", self.queue_keys.to_string()),
            (
                "--rate-limit",
                self.rate_limit.unwrap_or(self.w2_runs).to_string(),
            ),
            ("--rate-period-ms", self.rate_period_ms.to_string()),
            ("--flat-steps", self.flat_steps.to_string()),
            ("--flat-window", self.flat_window.to_string()),
            ("--w3-resumes", self.w3_resumes.to_string()),
            ("--sleepers", self.sleepers.to_string()),
            ("--search-runs", self.search_runs.to_string()),
            ("--search-queries", self.search_queries.to_string()),
            ("--search-concurrency", self.search_concurrency.to_string()),
        ];
        for (flag, value) in sized {
            args.push(flag.to_owned());
            args.push(value);
        }
        args.push("--dir".to_owned());
        args.push(dir.display().to_string());
        if self.otel {
            args.push("--otel".to_owned());
        }
        if let Some(url) = pg::url() {
            args.push("--postgres-url".to_owned());
            args.push(url.to_owned());
        }
        args
    }
}

fn main() -> ExitCode {
    let main_us = workflows::probe::unix_micros();
    let args = Args::parse();
    pg::configure(args.postgres_url.clone());
    match run(args, main_us) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("reprise-bench: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args, main_us: u64) -> Result<(), BoxError> {
    if args.internal == Some(Internal::IdleWorker) {
        return fleet::idle_worker(args.db.as_deref(), args.schema.as_deref());
    }
    if let Some(internal) = args.internal {
        let store = match (&args.db, &args.schema) {
            (Some(db), _) => workloads::StoreSpec::File(db.clone()),
            (None, Some(schema)) => workloads::StoreSpec::Schema(schema.clone()),
            (None, None) => return Err("--db or --schema is required".into()),
        };
        let run = RunId(args.run.clone().ok_or("--run is required")?);
        return match internal {
            Internal::Victim => {
                workloads::victim(&store, &run, args.kill_at.ok_or("--kill-at is required")?)
            }
            Internal::Resume => workloads::resume(store, run, main_us),
            Internal::IdleWorker => Ok(()),
        };
    }

    let otel = if args.otel && (args.child || args.in_process) {
        Some(otel::install()?)
    } else {
        None
    };
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::current_dir()?,
    };
    std::fs::create_dir_all(&dir)?;
    let mut report = Report {
        machine: system::Machine::read(&dir),
        fsync: None,
        metrics: Vec::new(),
        notes: Vec::new(),
    };
    let jobs = args.jobs();
    let wants_fsync =
        args.workload == Workload::Fsync || jobs.iter().any(|(_, s)| *s != StoreKind::Memory);
    if args.store == Stores::All && pg::url().is_none() && !args.child {
        report.notes.push(
            "postgres: not measured (no --postgres-url, REPRISE_BENCH_POSTGRES_URL or \
             REPRISE_TEST_POSTGRES_URL)"
                .to_owned(),
        );
    }
    let repeat = if args.child { 1 } else { args.repeat.max(1) };
    let forked = (jobs.len() > 1 || repeat > 1) && !args.in_process;
    let mut fsyncs = Vec::new();
    let mut rounds = Vec::new();
    for round in 1..=repeat {
        if wants_fsync && !args.child {
            eprintln!(
                "reprise-bench: [{round}/{repeat}] fdatasync in {}",
                dir.display()
            );
            let probe_dir = tempfile::Builder::new()
                .prefix("reprise-bench-")
                .tempdir_in(&dir)?;
            fsyncs.push(system::measure_fsync(
                probe_dir.path(),
                args.fsync_iterations,
            )?);
        }
        let mut metrics = Vec::new();
        for &(workload, store) in &jobs {
            if !args.child {
                eprintln!(
                    "reprise-bench: [{round}/{repeat}] {} / {}",
                    workload.name(),
                    store.name()
                );
            }
            let result = if forked {
                run_child(&args, workload, store, &dir)
            } else {
                run_job(workload, store, &args.sizes(), &dir, !args.in_process)
            };
            match result {
                Ok(out) => {
                    metrics.extend(out.metrics);
                    if round == 1 {
                        report.notes.extend(out.notes);
                    }
                }
                Err(error) => {
                    eprintln!(
                        "reprise-bench: {} / {} failed: {error}",
                        workload.name(),
                        store.name()
                    );
                    report.notes.push(format!(
                        "{}/{} FAILED in round {round}: {error}",
                        workload.name(),
                        store.name()
                    ));
                }
            }
        }
        rounds.push(metrics);
    }
    if repeat > 1 {
        report.notes.insert(
            0,
            format!(
                "each figure is the median of {repeat} rounds (min-max in brackets); the notes \
                 below are from round 1"
            ),
        );
    }

    if let Some(otel) = otel {
        let requests = otel.finish()?;
        report.notes.push(format!(
            "otel: run and step spans exported over OTLP/HTTP (batched) to a local sink, \
             {requests} requests"
        ));
    }
    report.fsync = system::median_fsync(&fsyncs);
    if let Some(fsync) = &report.fsync {
        report.metrics.extend(fsync_metrics(fsync));
    }
    report.metrics.extend(report::aggregate(rounds));
    if let Some(fsync) = &report.fsync {
        report.metrics = with_fsync_ratios(std::mem::take(&mut report.metrics), fsync.median_us);
    }

    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        report::print_table(&report);
    }
    Ok(())
}

/// The fdatasync figures as metrics.
fn fsync_metrics(fsync: &system::FsyncStats) -> Vec<Metric> {
    [
        ("4 KiB write + fdatasync, median", fsync.median_us, "µs"),
        ("4 KiB write + fdatasync, p99", fsync.p99_us, "µs"),
        ("fdatasyncs per second (1/median)", fsync.ops_per_s, "ops/s"),
        (
            "4 KiB write + fsync (not fdatasync), median",
            fsync.fsync_median_us,
            "µs",
        ),
        (
            "4 KiB append + fdatasync, median",
            fsync.append_median_us,
            "µs",
        ),
        (
            "WAL-like commit (4 x 4 KiB frames + fsync), median",
            fsync.wal_commit_median_us,
            "µs",
        ),
    ]
    .into_iter()
    .map(|(name, value, unit)| Metric::new("fsync", "disk", name, value, unit))
    .collect()
}

/// Runs one job in this process, on a fresh Tokio runtime, in a fresh temporary directory.
fn run_job(
    workload: Workload,
    store: StoreKind,
    sizes: &Sizes,
    dir: &Path,
    own_process: bool,
) -> Result<Out, BoxError> {
    let tmp = tempfile::Builder::new()
        .prefix("reprise-bench-")
        .tempdir_in(dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut out = Out::default();
    let path = tmp.path();
    let result = runtime.block_on(async {
        match workload {
            Workload::W1 => workloads::w1(store, path, sizes, &mut out).await,
            Workload::W2 if store == StoreKind::Postgres => {
                fleet::w2_workers(store, 4, sizes, &mut out).await
            }
            Workload::W2 => workloads::w2(store, path, sizes, &mut out).await,
            Workload::Sleepers => fleet::sleepers(store, path, sizes, &mut out).await,
            Workload::W3 => workloads::w3(store, "w3", path, 500, 500, sizes, &mut out).await,
            Workload::W3_10k => {
                workloads::w3(store, "w3-10k", path, 10_000, 100, sizes, &mut out).await
            }
            Workload::Flat => workloads::flat(store, path, sizes, &mut out).await,
            Workload::Search => search::search(store, path, sizes, &mut out).await,
            Workload::W2Worker => {
                flow::w2_flow(store, path, flow::Flow::None, sizes, &mut out).await
            }
            Workload::W2Queue => {
                flow::w2_flow(store, path, flow::Flow::KeyConcurrency, sizes, &mut out).await
            }
            Workload::W2Rate => flow::w2_flow(store, path, flow::Flow::Rate, sizes, &mut out).await,
            Workload::W2StepRate => {
                flow::w2_flow(store, path, flow::Flow::StepRate, sizes, &mut out).await
            }
            Workload::All | Workload::Fsync | Workload::Flow => Ok(()),
        }
    });
    // The job's Postgres schemas go, whether it succeeded or not.
    let dropped = runtime.block_on(pg::drop_created());
    result?;
    dropped?;
    drop(runtime);
    let name = if own_process {
        "peak RSS (VmHWM)"
    } else {
        "peak RSS so far (in-process)"
    };
    let mut rss = Metric::new(
        workload.name(),
        store.name(),
        name,
        system::peak_rss_mib(),
        "MiB",
    );
    if workload == Workload::W2 && own_process {
        rss = rss.goal(Goal::AtMost(50.0));
    }
    out.metrics.push(rss);
    Ok(out)
}

/// Runs one job in a child process of this binary and reads its JSON report.
fn run_child(
    args: &Args,
    workload: Workload,
    store: StoreKind,
    dir: &Path,
) -> Result<Out, BoxError> {
    let output = Command::new(std::env::current_exe()?)
        .args(args.child_args(workload, store, dir))
        .stderr(Stdio::inherit())
        .output()?;
    if !output.status.success() {
        return Err(format!("child process failed: {}", output.status).into());
    }
    let report: Report = serde_json::from_slice(&output.stdout)?;
    Ok(Out {
        metrics: report.metrics,
        notes: report.notes,
    })
}

/// After each SQLite throughput, the number of fdatasyncs of this disk that one step's
/// time would pay for: `(1 / steps_per_s) / fdatasync_latency`.
fn with_fsync_ratios(metrics: Vec<Metric>, fsync_median_us: f64) -> Vec<Metric> {
    let mut out = Vec::with_capacity(metrics.len() + 4);
    for metric in metrics {
        let ratio = ((metric.store.starts_with("sqlite") || metric.store == "postgres")
            && metric.name == THROUGHPUT
            && metric.value > 0.0)
            .then(|| {
                let per_step = (1e6 / metric.value) / fsync_median_us;
                let mut m = Metric::new(
                    &metric.workload,
                    &metric.store,
                    "step time in fdatasync latencies",
                    per_step,
                    "fdatasyncs",
                );
                if metric.workload == "w1" && metric.store == "sqlite" {
                    m = m.goal(Goal::AtMost(1.5));
                }
                m
            });
        out.push(metric);
        out.extend(ratio);
    }
    out
}
