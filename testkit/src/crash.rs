//! Crash-and-replay property checks (DESIGN "Testkit", "Reliability"): kill the process at
//! every point of a run, resume it on a fresh engine over whatever survived, and prove that
//! nothing was lost, nothing was recorded twice, and the run ends as if nothing happened.
//!
//! ```ignore
//! use reprise_testkit::crash::{self, CheckConfig};
//!
//! #[test]
//! fn signup_survives_any_crash() {
//!     let report = crash::assert_crash_safe(&signup_pipeline, signup(), CheckConfig::default());
//!     println!("{report}");
//! }
//! ```
//!
//! # How a check runs
//!
//! 1. **Baseline.** The workflow runs once without a crash, on a fresh store, a
//!    [`VirtualClock`] and a fixed hook secret. It yields the expected outcome, the number
//!    of [`Store::append`] calls (`appends`) and the number of live action calls
//!    (`actions`, every attempt counts); its own log must already pass the log checks.
//! 2. **Cases.** `config.cases` of them ([`CheckConfig::default`] honours
//!    `PROPTEST_CASES`, default 256). When that many allow it, every crash point runs
//!    once, in [`CrashPlan::all`] order (simplest first); the other cases are plans a
//!    proptest [`TestRunner`] draws from [`strategy`] (a repeated point still explores
//!    other interleavings of concurrent steps). In each case the same run (same run id,
//!    input and start time) is created on a fresh store and executed by an engine whose
//!    store and actions are instrumented; at the crash point the store or the action
//!    wrapper flags the crash and never returns, and the execution future is dropped: the
//!    process is dead, nothing it would have done reaches the store. A **new** [`Engine`]
//!    is built over the surviving data (the same memory store; for SQLite the file
//!    reopened, or a torn copy of it) and drives the run to its end: durable sleeps and
//!    run-level retries move the virtual clock, hooks get [`CheckConfig::hook`] payloads.
//!    With [`CheckConfig::crashes`], resuming processes may die too; with
//!    [`CheckConfig::store_failures`], the store may also refuse one append.
//! 3. **Checks** after each case:
//!    - *durability*: the log that survived a crash is exactly what the store had
//!      acknowledged (plus, at most, the one append on its way to the disk; never a torn
//!      one), and the final log starts with it unchanged;
//!    - (a) the outcome (output or error, or the waits of a run left on a hook without a
//!      payload) equals the baseline's;
//!    - (b) effects: no action call of a step starts once the step's outcome is durable
//!      (a recorded step's effect is applied once); every step of the baseline runs at
//!      least as often as there, and no other step runs. A step whose outcome was not
//!      durable at the crash — the one whose completion was lost, and any concurrent step
//!      in flight — runs again in full after the resume: at-least-once, so its effect may
//!      be applied twice (DESIGN "Event log": the idempotency key makes that safe);
//!    - (c) the log: `seq` runs from 0 without gaps, one `run_created` first, every step
//!      id has at most one `step_completed`/`step_failed` and every `step_started` one,
//!      sleeps and hooks are started, completed, created and received at most once, the
//!      run's end is one last event; the sets of finished steps, sleeps and hooks equal
//!      the baseline's;
//!    - (d) statuses: the record's final status equals the baseline's, its output (error)
//!      equals the `run_completed` (`run_failed`) payload, and `next_seq` the log length.
//! 4. **Failure.** The sweep stops at the simplest failing plan; proptest shrinks a
//!    failing random plan to a minimal one. [`CrashFailure`] prints it with every
//!    problem, the event log (crash points marked) and the live action calls;
//!    [`check_plans`] and [`check_crashes`] re-run given plans.
//!
//! # Crash points
//!
//! Appends are numbered from 0 in the order the run makes them (`run_started`, each step's
//! record, sleep and hook records, suspensions, hook deliveries, the run's end); action
//! calls likewise. See [`CrashPlan`] for what each plan simulates.
//!
//! The checker drives runs on its own single-threaded Tokio runtime (a helper thread when
//! called from inside a runtime), so it is called from a plain `#[test]`. Workflows must
//! be deterministic for a given input and clock, with step outputs that do not depend on
//! real time; a report path or similar must be fixed in the input (not derived from
//! anything random), since every case reruns the same run.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use futures::FutureExt;
use proptest::strategy::{BoxedStrategy, Just, Strategy, Union};
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestError, TestRunner};
use reprise::event::{
    Event, EventKind, EventPayload, NewEvent, RunFilter, RunId, RunRecord, RunStatus,
};
use reprise::store::{Append, MemoryStore, SharedStore, SqliteStore, Store};
use reprise::{
    ActionCtx, ActionError, ActionOverride, Engine, EngineBuilder, EngineError, RunOutcome, Step,
    Wait, WorkflowError,
};
use serde::Deserialize as _;
use serde_json::Value;
use tokio::sync::Notify;

use crate::clock::VirtualClock;

/// Where the process dies in a crash case. Appends and action calls are numbered from 0 in
/// the order the run makes them (see the [module docs](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CrashPlan {
    /// The process dies as append `k` is about to be written: append `k` is never
    /// written (its events, e.g. a step's completion, are lost).
    BeforeAppend(usize),
    /// Append `k` is durable, then the process dies before doing anything else.
    AfterAppend(usize),
    /// The process dies inside the `k`-th live action call, after its side effect: the
    /// (real or stubbed) body has returned, its outcome is not yet recorded.
    MidAction(usize),
    /// SQLite only: append `k` was being written when the power failed. The database and
    /// its `-wal` file are copied at that instant, the copied WAL is cut a few bytes into
    /// the last committed frame, and the run resumes on the copy; SQLite's recovery must
    /// ignore the torn commit, so append `k` is lost as with `BeforeAppend(k)`. (Meant for
    /// test-sized runs: once a WAL checkpoint has copied the commit into the database file,
    /// which SQLite does past 1,000 WAL pages, a torn WAL can no longer take it back.)
    TornWrite(usize),
    /// Not a crash: the store refuses append `k` with an error (nothing is written; a full
    /// disk, a lock timeout, a dropped connection) and the process goes on, retrying the
    /// run as a worker would. The engine must leave the run resumable, and the retried run
    /// must end as the uncrashed one did. Opt in with [`CheckConfig::store_failures`].
    FailAppend(usize),
}

impl CrashPlan {
    /// Every crash point of a run with `appends` appends and `actions` live action calls;
    /// torn writes only when `sqlite`. For exhaustive sweeps with [`check_plans`]; add
    /// [`CrashPlan::store_failures`] for those.
    pub fn all(appends: usize, actions: usize, sqlite: bool) -> Vec<CrashPlan> {
        let mut plans: Vec<CrashPlan> = (0..appends).map(CrashPlan::BeforeAppend).collect();
        plans.extend((0..appends).map(CrashPlan::AfterAppend));
        plans.extend((0..actions).map(CrashPlan::MidAction));
        if sqlite {
            plans.extend((0..appends).map(CrashPlan::TornWrite));
        }
        plans
    }

    /// A refused append at each of `appends` appends ([`CrashPlan::FailAppend`]).
    pub fn store_failures(appends: usize) -> Vec<CrashPlan> {
        (0..appends).map(CrashPlan::FailAppend).collect()
    }
}

impl fmt::Display for CrashPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CrashPlan::BeforeAppend(k) => {
                write!(
                    f,
                    "BeforeAppend({k}): the process dies before append #{k} is written"
                )
            }
            CrashPlan::AfterAppend(k) => {
                write!(
                    f,
                    "AfterAppend({k}): the process dies right after append #{k} is durable"
                )
            }
            CrashPlan::MidAction(k) => write!(
                f,
                "MidAction({k}): the process dies after live action call #{k} returned, before its outcome is recorded"
            ),
            CrashPlan::FailAppend(k) => write!(
                f,
                "FailAppend({k}): the store refuses append #{k} with an error, the process goes on"
            ),
            CrashPlan::TornWrite(k) => write!(
                f,
                "TornWrite({k}): the power fails while append #{k} is written (its WAL frame is torn)"
            ),
        }
    }
}

/// A proptest strategy over every crash point of a run with `appends` appends and
/// `actions` live action calls (from a baseline run, see [`CheckReport`]): before and
/// after each append, inside each action call, and, when `sqlite`, a torn write of each
/// append. Shrinks towards `BeforeAppend(0)`: earlier kinds, then smaller indexes.
pub fn strategy(
    appends: usize,
    actions: usize,
    sqlite: bool,
) -> impl Strategy<Value = CrashPlan> + Clone {
    plan_strategy(appends, actions, sqlite, false)
}

/// [`strategy`], plus refused appends ([`CrashPlan::FailAppend`]) when `store_failures`.
fn plan_strategy(
    appends: usize,
    actions: usize,
    sqlite: bool,
    store_failures: bool,
) -> Union<BoxedStrategy<CrashPlan>> {
    let mut kinds: Vec<BoxedStrategy<CrashPlan>> = Vec::new();
    if appends > 0 {
        kinds.push((0..appends).prop_map(CrashPlan::BeforeAppend).boxed());
        kinds.push((0..appends).prop_map(CrashPlan::AfterAppend).boxed());
    }
    if actions > 0 {
        kinds.push((0..actions).prop_map(CrashPlan::MidAction).boxed());
    }
    if sqlite && appends > 0 {
        kinds.push((0..appends).prop_map(CrashPlan::TornWrite).boxed());
    }
    if store_failures && appends > 0 {
        kinds.push((0..appends).prop_map(CrashPlan::FailAppend).boxed());
    }
    if kinds.is_empty() {
        kinds.push(Just(CrashPlan::BeforeAppend(0)).boxed());
    }
    Union::new(kinds)
}

/// The store a check runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoreKind {
    /// A [`MemoryStore`]; the crashed process's store object survives it (as a database
    /// server would).
    Memory,
    /// A SQLite file in a temporary directory, reopened after the crash; enables
    /// [`CrashPlan::TornWrite`].
    Sqlite,
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreKind::Memory => "memory",
            StoreKind::Sqlite => "sqlite",
        })
    }
}

type Configure = Arc<dyn Fn(EngineBuilder) -> EngineBuilder + Send + Sync>;
use crate::env::{ErasedStub, erase_json_stub, erase_stub};

/// The hook secret every engine of a check uses, so hook tokens survive the crash.
const HOOK_SECRET: &[u8] = b"reprise-testkit crash checker hook secret (fixed)";

/// How a check runs. `CheckConfig::default()`: `PROPTEST_CASES` cases (default 256) on
/// the memory store, every crash point swept first when the cases allow it, the virtual
/// clock starting at 2030-01-01T00:00:00Z, 30 s per case.
#[derive(Clone)]
pub struct CheckConfig {
    cases: u32,
    sweep: bool,
    crashes: usize,
    store_failures: bool,
    store: StoreKind,
    start: DateTime<Utc>,
    case_timeout: Duration,
    configure: Vec<Configure>,
    configure_after_crash: Vec<Configure>,
    hooks: BTreeMap<String, Value>,
    /// Scripted messages by inbox channel (`signal:<name>`), posted in order when the run
    /// first waits on the channel.
    messages: BTreeMap<String, Vec<Value>>,
    stubs: BTreeMap<String, ErasedStub>,
}

impl fmt::Debug for CheckConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckConfig")
            .field("cases", &self.cases)
            .field("sweep", &self.sweep)
            .field("crashes", &self.crashes)
            .field("store_failures", &self.store_failures)
            .field("store", &self.store)
            .field("start", &self.start)
            .field("case_timeout", &self.case_timeout)
            .field("configure", &self.configure.len())
            .field("configure_after_crash", &self.configure_after_crash.len())
            .field("hooks", &self.hooks)
            .field("messages", &self.messages)
            .field("stubs", &self.stubs.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            cases: ProptestConfig::default().cases,
            sweep: true,
            crashes: 1,
            store_failures: false,
            store: StoreKind::Memory,
            start: Utc
                .with_ymd_and_hms(2030, 1, 1, 0, 0, 0)
                .single()
                .unwrap_or_default(),
            case_timeout: Duration::from_secs(30),
            configure: Vec::new(),
            configure_after_crash: Vec::new(),
            hooks: BTreeMap::new(),
            messages: BTreeMap::new(),
            stubs: BTreeMap::new(),
        }
    }
}

impl CheckConfig {
    /// The number of crash cases to run (replaces `PROPTEST_CASES`).
    pub fn cases(mut self, cases: u32) -> Self {
        self.cases = cases;
        self
    }

    /// At most `cases` crash cases: `PROPTEST_CASES` still lowers the count, never raises
    /// it past `cases` (for slower stores).
    pub fn max_cases(mut self, cases: u32) -> Self {
        self.cases = self.cases.min(cases);
        self
    }

    /// Whether a check first runs every crash point once, in [`CrashPlan::all`] order,
    /// when `cases` is at least the number of crash points (default `true`); the remaining
    /// cases are drawn at random either way. With `false`, all cases are random.
    pub fn sweep_first(mut self, sweep: bool) -> Self {
        self.sweep = sweep;
        self
    }

    /// Lets a random case crash up to `crashes` times in a row (default 1): the process
    /// resuming after a crash may die too, at a point of its own (appends and calls
    /// numbered from 0 in each process), before a last process resumes the run to its end.
    /// Recovery from states only a crash leaves behind is then itself crash-tested.
    pub fn crashes(mut self, crashes: usize) -> Self {
        self.crashes = crashes.max(1);
        self
    }

    /// Also tests refused appends ([`CrashPlan::FailAppend`]): the store fails one append
    /// with an error and the process goes on retrying the run. Default `false`.
    pub fn store_failures(mut self, enabled: bool) -> Self {
        self.store_failures = enabled;
        self
    }

    /// The number of crash cases this configuration runs.
    pub fn case_count(&self) -> u32 {
        self.cases
    }

    /// Runs on `store`.
    pub fn store(mut self, store: StoreKind) -> Self {
        self.store = store;
        self
    }

    /// Runs on a SQLite file in a temporary directory (enables torn writes).
    pub fn sqlite(self) -> Self {
        self.store(StoreKind::Sqlite)
    }

    /// Starts the virtual clock at `start` in the baseline and in every case.
    pub fn starting_at(mut self, start: DateTime<Utc>) -> Self {
        self.start = start;
        self
    }

    /// How long (real time) one case may take before it counts as hung. Default 30 s.
    pub fn case_timeout(mut self, timeout: Duration) -> Self {
        self.case_timeout = timeout;
        self
    }

    /// Customizes every engine the check builds (baseline, crashed and resumed): resources,
    /// registrations, or a deliberate [`reprise::Fault`] to prove the checker catches a
    /// broken engine. It must not replace the store or the clock.
    pub fn configure(
        mut self,
        f: impl Fn(EngineBuilder) -> EngineBuilder + Send + Sync + 'static,
    ) -> Self {
        self.configure.push(Arc::new(f));
        self
    }

    /// Customizes only the engines built after a crash (after [`CheckConfig::configure`]):
    /// a resume by a differently configured process, or a fault that only a resume hits.
    pub fn configure_after_crash(
        mut self,
        f: impl Fn(EngineBuilder) -> EngineBuilder + Send + Sync + 'static,
    ) -> Self {
        self.configure_after_crash.push(Arc::new(f));
        self
    }

    /// Delivers `payload` to hook `correlation_id` (e.g. `"hook#0"`) whenever the run waits
    /// on it. A run left waiting on a hook without a payload ends the case `Suspended`,
    /// which must then match the baseline too.
    pub fn hook(mut self, correlation_id: &str, payload: Value) -> Self {
        self.hooks.insert(correlation_id.to_owned(), payload);
        self
    }

    /// Sends signal `name` with `payload` to the run when it first waits on a signal `name`;
    /// several calls send several payloads, in call order. Each is posted with a fixed
    /// de-duplication key, so a case that crashes and re-posts delivers each payload once.
    pub fn signal(mut self, name: &str, payload: Value) -> Self {
        self.messages
            .entry(reprise::message::signal_channel(name))
            .or_default()
            .push(payload);
        self
    }

    /// Loads the workflow files of `dir` into every engine of the check
    /// ([`EngineBuilder::workflow_dir`]), for [`check_slug`] of a file workflow.
    pub fn workflow_dir(self, dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        self.configure(move |builder| builder.workflow_dir(dir.clone()))
    }

    /// Replaces the body of the action registered as `slug` with `stub` (over JSON) in
    /// every engine of the check: for actions known only by slug, as workflow files call
    /// them. Stubbed calls are counted and crashed like real ones.
    pub fn stub_slug<F, Fut>(mut self, slug: &str, stub: F) -> Self
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, ActionError>> + Send + 'static,
    {
        self.stubs.insert(slug.to_owned(), erase_json_stub(stub));
        self
    }

    /// Replaces `action`'s body with `stub` in every engine of the check (typed by the
    /// action's input and output). Stubbed calls are counted and crashed like real ones.
    pub fn stub<A, F, Fut>(mut self, _action: &A, stub: F) -> Self
    where
        A: Step,
        F: Fn(A::Input) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<A::Output, ActionError>> + Send + 'static,
    {
        let erased = erase_stub::<A, F, Fut>(stub);
        self.stubs.insert(A::SLUG.to_owned(), erased);
        self
    }
}

/// What a passing check did.
#[derive(Clone, Debug)]
pub struct CheckReport {
    /// The workflow's slug.
    pub workflow: &'static str,
    /// The store it ran on.
    pub store: StoreKind,
    /// Crash cases run.
    pub cases: u32,
    /// Cases whose crash point was reached (the others ran to their end uncrashed, e.g. a
    /// `MidAction` index past the calls of a run that took another path).
    pub crashed: u32,
    /// Appends the baseline run made.
    pub appends: usize,
    /// Live action calls the baseline run made (every attempt).
    pub actions: usize,
    /// Distinct crash points of the run ([`CrashPlan::all`]).
    pub crash_points: usize,
    /// Distinct crash points the cases hit.
    pub covered: usize,
    /// How the baseline (and every case) ended.
    pub outcome: RunOutcome,
    /// Wall time of the whole check.
    pub elapsed: Duration,
}

impl CheckReport {
    /// Cases per second of wall time.
    pub fn cases_per_second(&self) -> f64 {
        f64::from(self.cases) / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "crash-replay `{}` on {}: {} cases ({} crashed) over {} crash points ({} covered; {} appends, {} action calls) in {:.2?} ({:.0} cases/s)",
            self.workflow,
            self.store,
            self.cases,
            self.crashed,
            self.crash_points,
            self.covered,
            self.appends,
            self.actions,
            self.elapsed,
            self.cases_per_second()
        )
    }
}

/// A failed check: the (minimal, after shrinking) crash plan, what went wrong, the run's
/// event log and its live action calls. `Display` prints all of it.
#[derive(Clone, Debug)]
pub struct CrashFailure {
    /// The workflow's slug.
    pub workflow: &'static str,
    /// The store it ran on.
    pub store: StoreKind,
    /// The crashes of the failing case, minimal after shrinking: where the first process
    /// died, then (with [`CheckConfig::crashes`] above 1) where each resuming process died
    /// in turn, its appends and calls numbered from 0. Empty when the uncrashed baseline
    /// already failed (or the check could not be set up).
    pub crashes: Vec<CrashPlan>,
    /// Every problem found, one sentence each.
    pub problems: Vec<String>,
    /// The run's event log, one event a line, with the crash point marked.
    pub log: String,
    /// The live action calls, per step, before the crash and after the resume.
    pub calls: String,
}

impl CrashFailure {
    /// The (first) crash plan of the failing case; `None` for a failure without a crash.
    pub fn plan(&self) -> Option<CrashPlan> {
        self.crashes.first().copied()
    }

    fn setup(workflow: &'static str, store: StoreKind, problem: String) -> Self {
        CrashFailure {
            workflow,
            store,
            crashes: Vec::new(),
            problems: vec![problem],
            log: String::new(),
            calls: String::new(),
        }
    }
}

impl fmt::Display for CrashFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "crash-replay check of `{}` on the {} store failed",
            self.workflow, self.store
        )?;
        match self.crashes.split_first() {
            Some((plan, later)) => {
                writeln!(f, "minimal crash plan: {plan}")?;
                for (n, plan) in later.iter().enumerate() {
                    writeln!(f, "then crash #{} (in the resuming process): {plan}", n + 2)?;
                }
            }
            None => writeln!(f, "without any crash (the uncrashed baseline run)")?,
        }
        writeln!(f, "problems:")?;
        for problem in &self.problems {
            writeln!(f, "  - {problem}")?;
        }
        if !self.log.is_empty() {
            writeln!(f, "event log:")?;
            f.write_str(&self.log)?;
        }
        if !self.calls.is_empty() {
            writeln!(f, "live action calls:")?;
            f.write_str(&self.calls)?;
        }
        let plans: Vec<String> = self
            .crashes
            .iter()
            .map(|p| format!("CrashPlan::{p:?}"))
            .collect();
        match plans.len() {
            0 => {}
            1 => writeln!(
                f,
                "reproduce: reprise_testkit::crash::check_plans(&workflow, input, config, [{}])",
                plans.join("")
            )?,
            _ => writeln!(
                f,
                "reproduce: reprise_testkit::crash::check_crashes(&workflow, input, config, &[{}])",
                plans.join(", ")
            )?,
        }
        Ok(())
    }
}

impl std::error::Error for CrashFailure {}

/// Runs the crash-and-replay property check of `workflow` with `input`: a baseline run,
/// then `config`'s number of crash cases — every crash point once, simplest first, when
/// the cases allow it ([`CheckConfig::sweep_first`]), the rest drawn from [`strategy`] by
/// proptest, which shrinks a failure to a minimal plan. See the [module docs](self) for
/// what is checked.
///
/// # Errors
/// The first failure (after shrinking), or a setup problem (invalid input, engine errors).
pub fn check<W: Step>(
    workflow: &W,
    input: W::Input,
    config: CheckConfig,
) -> Result<CheckReport, CrashFailure> {
    let _ = workflow;
    check_slug(W::SLUG, typed_input::<W>(input), config)
}

/// [`check`] of the registered workflow `slug` with a JSON `input`: for workflows without
/// a Rust type, such as workflow files (load them with [`CheckConfig::workflow_dir`]).
///
/// ```ignore
/// let config = CheckConfig::default().workflow_dir("workflows");
/// let report = crash::check_slug("nightly-report", json!({"sources": ["api"]}), config)?;
/// ```
///
/// # Errors
/// As [`check`]; an unknown slug or an input its schema rejects is a setup failure.
pub fn check_slug(
    slug: &'static str,
    input: Value,
    config: CheckConfig,
) -> Result<CheckReport, CrashFailure> {
    on_own_runtime(|| Checker::prepare(slug, input, config)?.random())
}

/// Like [`check`], but runs exactly `plans` (a regression of a minimal plan, or an
/// exhaustive sweep over [`CrashPlan::all`]), in order; stops at the first failure.
///
/// # Errors
/// As [`check`].
pub fn check_plans<W: Step>(
    workflow: &W,
    input: W::Input,
    config: CheckConfig,
    plans: impl IntoIterator<Item = CrashPlan>,
) -> Result<CheckReport, CrashFailure> {
    let _ = workflow;
    check_plans_slug(W::SLUG, typed_input::<W>(input), config, plans)
}

/// [`check_plans`] of the registered workflow `slug` with a JSON `input` (see
/// [`check_slug`]).
///
/// # Errors
/// As [`check`].
pub fn check_plans_slug(
    slug: &'static str,
    input: Value,
    config: CheckConfig,
    plans: impl IntoIterator<Item = CrashPlan>,
) -> Result<CheckReport, CrashFailure> {
    let cases: Vec<Vec<CrashPlan>> = plans.into_iter().map(|plan| vec![plan]).collect();
    on_own_runtime(|| Checker::prepare(slug, input, config)?.sequences(&cases))
}

/// Runs one case with several crashes in a row: the first process dies at `crashes[0]`,
/// the process resuming the run at `crashes[1]` (its own appends and calls numbered from
/// 0), and so on; a last process resumes the run to its end. For regressions of a
/// failure found with [`CheckConfig::crashes`].
///
/// # Errors
/// As [`check`].
pub fn check_crashes<W: Step>(
    workflow: &W,
    input: W::Input,
    config: CheckConfig,
    crashes: &[CrashPlan],
) -> Result<CheckReport, CrashFailure> {
    let _ = workflow;
    check_crashes_slug(W::SLUG, typed_input::<W>(input), config, crashes)
}

/// [`check_crashes`] of the registered workflow `slug` with a JSON `input` (see
/// [`check_slug`]).
///
/// # Errors
/// As [`check`].
pub fn check_crashes_slug(
    slug: &'static str,
    input: Value,
    config: CheckConfig,
    crashes: &[CrashPlan],
) -> Result<CheckReport, CrashFailure> {
    let cases = [crashes.to_vec()];
    on_own_runtime(|| Checker::prepare(slug, input, config)?.sequences(&cases))
}

/// [`check`], panicking with the [`CrashFailure`] (minimal plan, problems, event log and
/// calls) when the check fails.
///
/// # Panics
/// When the check fails.
#[track_caller]
pub fn assert_crash_safe<W: Step>(
    workflow: &W,
    input: W::Input,
    config: CheckConfig,
) -> CheckReport {
    match check(workflow, input, config) {
        Ok(report) => report,
        Err(failure) => panic!("{failure}"),
    }
}

/// [`check_slug`], panicking with the [`CrashFailure`] when the check fails: the crash
/// check of a workflow file.
///
/// ```ignore
/// let report = crash::assert_crash_safe_slug(
///     "code-review",
///     json!({"repo": "octo/app", "pr": 7}),
///     CheckConfig::default()
///         .workflow_dir("workflows")
///         .hook("approval#0", json!({"decision": "approve", "reviewer": "ada"})),
/// );
/// ```
///
/// # Panics
/// When the check fails.
#[track_caller]
pub fn assert_crash_safe_slug(
    slug: &'static str,
    input: Value,
    config: CheckConfig,
) -> CheckReport {
    match check_slug(slug, input, config) {
        Ok(report) => report,
        Err(failure) => panic!("{failure}"),
    }
}

/// A typed input as JSON; one that does not serialize becomes a string the workflow's
/// input schema then rejects with the serializer's message.
fn typed_input<W: Step>(input: W::Input) -> Value {
    serde_json::to_value(input).unwrap_or_else(|e| {
        Value::String(format!(
            "the input of `{}` does not serialize: {e}",
            W::SLUG
        ))
    })
}

/// Runs `f` where it may start its own Tokio runtime: here, or on a helper thread when
/// the caller is already inside a runtime.
fn on_own_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|scope| match scope.spawn(f).join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

// ---------------------------------------------------------------------------------------
// Instrumentation: the store wrapper and the action wrapper.

/// One live action call.
#[derive(Clone, Debug)]
struct CallRecord {
    id: String,
    attempt: u32,
    /// The process that made it: 0 before the first crash, `n` after the `n`-th.
    process: usize,
    /// Whether the step's outcome was already durable when the call started.
    after_record: bool,
    /// `None` while running (or when the process died during it).
    ok: Option<bool>,
}

type Calls = Arc<Mutex<Vec<CallRecord>>>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Shared by the store wrapper and the action wrappers of one engine ("process").
struct Probe {
    plan: Option<CrashPlan>,
    process: usize,
    dead: AtomicBool,
    died: Notify,
    appends: AtomicUsize,
    actions: AtomicUsize,
    /// Every event of the checked run the store acknowledged (`create_run` and successful
    /// appends), in order.
    acked: Mutex<Vec<NewEvent>>,
    /// The checked run: the first run created through the probe, or the one a case
    /// continues. Events of other runs (child runs, the run a run continues as) are not
    /// its log and are not counted.
    checked: Mutex<Option<RunId>>,
    /// Appends handed to the store whose answer never came back (the process died while
    /// the store wrote them: SQLite's writer thread may still commit them), by number.
    in_flight: Mutex<BTreeMap<usize, Vec<NewEvent>>>,
    calls: Calls,
    /// The steps whose outcome is durable, shared by the processes of a case.
    recorded: Arc<Mutex<BTreeSet<String>>>,
    /// After a refused append ([`CrashPlan::FailAppend`]): how many events were durable then.
    refused_at: Mutex<Option<usize>>,
    /// SQLite: the database file, for a torn-write copy.
    db_path: Option<PathBuf>,
    /// The torn copy made at the crash instant, or why it could not be made.
    torn: Mutex<Option<Result<tempfile::TempDir, String>>>,
}

impl Probe {
    fn new(
        plan: Option<CrashPlan>,
        process: usize,
        calls: Calls,
        recorded: Arc<Mutex<BTreeSet<String>>>,
        db_path: Option<PathBuf>,
    ) -> Self {
        Probe {
            plan,
            process,
            dead: AtomicBool::new(false),
            died: Notify::new(),
            appends: AtomicUsize::new(0),
            actions: AtomicUsize::new(0),
            acked: Mutex::new(Vec::new()),
            checked: Mutex::new(None),
            in_flight: Mutex::new(BTreeMap::new()),
            calls,
            recorded,
            refused_at: Mutex::new(None),
            db_path,
            torn: Mutex::new(None),
        }
    }

    fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    /// The process dies here: flags the crash and never returns.
    async fn die<T>(&self) -> T {
        self.dead.store(true, Ordering::SeqCst);
        self.died.notify_one();
        std::future::pending().await
    }

    /// Never returns once the process is dead: a dead process does nothing.
    async fn alive(&self) {
        if self.is_dead() {
            std::future::pending::<()>().await;
        }
    }

    /// Resolves when the process dies.
    async fn death(&self) {
        if !self.is_dead() {
            self.died.notified().await;
        }
    }

    /// Whether `run` is the checked run (the first run asked about becomes it).
    fn is_checked(&self, run: &RunId) -> bool {
        let mut checked = lock(&self.checked);
        checked.get_or_insert_with(|| run.clone()) == run
    }

    fn ack(&self, events: Vec<NewEvent>) {
        {
            let mut recorded = lock(&self.recorded);
            for event in &events {
                if matches!(event.kind, EventKind::StepCompleted | EventKind::StepFailed)
                    && let Some(id) = &event.correlation_id
                {
                    recorded.insert(id.clone());
                }
            }
        }
        lock(&self.acked).extend(events);
    }

    /// Copies the database and its WAL at this instant and tears the copy's last commit.
    fn tear(&self) -> Result<tempfile::TempDir, String> {
        let db = self
            .db_path
            .as_deref()
            .ok_or("a torn write needs the SQLite store")?;
        let dir = tempfile::tempdir().map_err(|e| format!("cannot create a directory: {e}"))?;
        let copy = dir.path().join("reprise.db");
        std::fs::copy(db, &copy).map_err(|e| format!("cannot copy {}: {e}", db.display()))?;
        let wal = std::fs::read(wal_path(db))
            .map_err(|e| format!("cannot read the WAL of {}: {e}", db.display()))?;
        let keep = torn_wal_length(&wal)
            .ok_or_else(|| format!("the WAL of {} holds no commit to tear", db.display()))?;
        std::fs::write(wal_path(&copy), &wal[..keep])
            .map_err(|e| format!("cannot write the torn WAL copy: {e}"))?;
        Ok(dir)
    }
}

fn wal_path(db: &Path) -> PathBuf {
    let mut path = db.as_os_str().to_owned();
    path.push("-wal");
    PathBuf::from(path)
}

/// The length to cut a WAL file to so that its last committed frame is torn: the end of
/// the last commit frame of the current WAL generation, minus a few bytes. `None` when the
/// file holds no valid commit frame.
///
/// Format (sqlite.org/fileformat2.html#walformat): a 32-byte header (magic, version, page
/// size at 8, checkpoint sequence, salts at 16 and 20, checksums), then frames of a 24-byte
/// header (page number, database size after commit at 4 — non-zero for commit frames —
/// salts at 8 and 12, checksums) and one page. Frames whose salts differ from the header's
/// are left over from an earlier generation.
fn torn_wal_length(wal: &[u8]) -> Option<usize> {
    const HEADER: usize = 32;
    const FRAME_HEADER: usize = 24;
    const TEAR: usize = 7;
    let word = |at: usize| -> Option<u32> {
        let bytes: [u8; 4] = wal.get(at..at + 4)?.try_into().ok()?;
        Some(u32::from_be_bytes(bytes))
    };
    if !matches!(word(0)?, 0x377f_0682 | 0x377f_0683) {
        return None;
    }
    let page_size = usize::try_from(word(8)?).ok()?;
    let (salt1, salt2) = (word(16)?, word(20)?);
    let frame = FRAME_HEADER + page_size;
    let mut end = HEADER;
    let mut last_commit = None;
    while end + frame <= wal.len() {
        if word(end + 8)? != salt1 || word(end + 12)? != salt2 {
            break;
        }
        let commit = word(end + 4)? != 0;
        end += frame;
        if commit {
            last_commit = Some(end);
        }
    }
    last_commit.map(|end| end - TEAR)
}

/// The store a crashing "process" writes through: counts appends, crashes at the plan's
/// point, and records what the inner store acknowledged.
struct CrashStore {
    inner: SharedStore,
    probe: Arc<Probe>,
}

#[async_trait]
impl Store for CrashStore {
    async fn create_run(&self, record: RunRecord, created: NewEvent) -> Result<(), EngineError> {
        self.probe.alive().await;
        let run = record.id.clone();
        self.inner.create_run(record, created.clone()).await?;
        if self.probe.is_checked(&run) {
            self.probe.ack(vec![created]);
        }
        Ok(())
    }

    async fn append(&self, append: Append) -> Result<(), EngineError> {
        self.probe.alive().await;
        if !self.probe.is_checked(&append.run_id) {
            // Another run (a child run): written, but neither counted nor crashed.
            return self.inner.append(append).await;
        }
        let k = self.probe.appends.fetch_add(1, Ordering::SeqCst);
        let events = append.events.clone();
        match self.probe.plan {
            Some(CrashPlan::BeforeAppend(n)) if n == k => self.probe.die().await,
            Some(CrashPlan::FailAppend(n)) if n == k => {
                *lock(&self.probe.refused_at) = Some(lock(&self.probe.acked).len());
                Err(EngineError::Store(format!(
                    "append #{k} refused on purpose (CrashPlan::FailAppend({k}))"
                )))
            }
            Some(CrashPlan::AfterAppend(n)) if n == k => {
                if self.inner.append(append).await.is_ok() {
                    self.probe.ack(events);
                }
                self.probe.die().await
            }
            Some(CrashPlan::TornWrite(n)) if n == k => {
                // Written, but never acknowledged: the power fails while the commit is on
                // its way to the disk.
                if self.inner.append(append).await.is_ok() {
                    let torn = self.probe.tear();
                    *lock(&self.probe.torn) = Some(torn);
                }
                self.probe.die().await
            }
            _ => {
                lock(&self.probe.in_flight).insert(k, events.clone());
                let result = self.inner.append(append).await;
                lock(&self.probe.in_flight).remove(&k);
                result?;
                self.probe.ack(events);
                Ok(())
            }
        }
    }

    async fn run(&self, id: &RunId) -> Result<Option<RunRecord>, EngineError> {
        self.probe.alive().await;
        self.inner.run(id).await
    }

    async fn events(&self, id: &RunId) -> Result<Vec<Event>, EngineError> {
        self.probe.alive().await;
        self.inner.events(id).await
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, EngineError> {
        self.probe.alive().await;
        self.inner.list_runs(filter).await
    }
    async fn create_run_once(
        &self,
        key: &str,
        record: RunRecord,
        created: NewEvent,
    ) -> Result<Option<RunId>, EngineError> {
        self.probe.alive().await;
        self.inner.create_run_once(key, record, created).await
    }
    async fn acquire(
        &self,
        id: &RunId,
        owner: &str,
        now: chrono::DateTime<chrono::Utc>,
        expires_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<reprise::store::Acquired, EngineError> {
        self.probe.alive().await;
        self.inner.acquire(id, owner, now, expires_at).await
    }
    async fn claim(
        &self,
        request: &reprise::queue::ClaimRequest<'_>,
    ) -> Result<Vec<reprise::store::Lease>, EngineError> {
        self.probe.alive().await;
        self.inner.claim(request).await
    }
    async fn renew(
        &self,
        lease: &reprise::store::Lease,
        expires_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<reprise::store::Lease>, EngineError> {
        self.probe.alive().await;
        self.inner.renew(lease, expires_at).await
    }
    async fn release(&self, lease: &reprise::store::Lease) -> Result<(), EngineError> {
        self.probe.alive().await;
        self.inner.release(lease).await
    }
    async fn request_pause(&self, id: &RunId, by: Option<&str>) -> Result<(), EngineError> {
        self.probe.alive().await;
        self.inner.request_pause(id, by).await
    }
    async fn set_workflow_pause(
        &self,
        workflow: &str,
        pause: Option<&reprise::store::WorkflowPause>,
    ) -> Result<bool, EngineError> {
        self.probe.alive().await;
        self.inner.set_workflow_pause(workflow, pause).await
    }
    async fn workflow_pauses(&self) -> Result<Vec<reprise::store::WorkflowPause>, EngineError> {
        self.probe.alive().await;
        self.inner.workflow_pauses().await
    }
    async fn request_cancel(&self, id: &RunId) -> Result<(), EngineError> {
        self.probe.alive().await;
        self.inner.request_cancel(id).await
    }
    async fn next_wake(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>, EngineError> {
        self.probe.alive().await;
        self.inner.next_wake().await
    }
    async fn cursor(&self, name: &str) -> Result<Option<serde_json::Value>, EngineError> {
        self.probe.alive().await;
        self.inner.cursor(name).await
    }
    async fn set_cursor(&self, name: &str, value: &serde_json::Value) -> Result<(), EngineError> {
        self.probe.alive().await;
        self.inner.set_cursor(name, value).await
    }
    async fn list_schedules(&self) -> Result<Vec<reprise::store::ScheduleRow>, EngineError> {
        self.probe.alive().await;
        self.inner.list_schedules().await
    }
    async fn schedule(
        &self,
        name: &str,
    ) -> Result<Option<reprise::store::ScheduleRow>, EngineError> {
        self.probe.alive().await;
        self.inner.schedule(name).await
    }
    async fn create_schedule(
        &self,
        row: &reprise::store::ScheduleRow,
    ) -> Result<bool, EngineError> {
        self.probe.alive().await;
        self.inner.create_schedule(row).await
    }
    async fn update_schedule(
        &self,
        row: &reprise::store::ScheduleRow,
    ) -> Result<bool, EngineError> {
        self.probe.alive().await;
        self.inner.update_schedule(row).await
    }
    async fn delete_schedule(&self, name: &str) -> Result<bool, EngineError> {
        self.probe.alive().await;
        self.inner.delete_schedule(name).await
    }
    async fn put_document(
        &self,
        kind: &str,
        key: &str,
        value: &serde_json::Value,
        mode: reprise::store::Put,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, EngineError> {
        self.probe.alive().await;
        self.inner.put_document(kind, key, value, mode, now).await
    }
    async fn document(
        &self,
        kind: &str,
        key: &str,
    ) -> Result<Option<reprise::store::Document>, EngineError> {
        self.probe.alive().await;
        self.inner.document(kind, key).await
    }
    async fn documents(
        &self,
        kind: &str,
        prefix: &str,
    ) -> Result<Vec<reprise::store::Document>, EngineError> {
        self.probe.alive().await;
        self.inner.documents(kind, prefix).await
    }
    async fn delete_document(&self, kind: &str, key: &str) -> Result<bool, EngineError> {
        self.probe.alive().await;
        self.inner.delete_document(kind, key).await
    }
    async fn set_schedule_paused(
        &self,
        name: &str,
        paused: bool,
        by: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), EngineError> {
        self.probe.alive().await;
        self.inner.set_schedule_paused(name, paused, by, at).await
    }

    async fn purge_runs(
        &self,
        filter: &reprise::store::PurgeFilter,
    ) -> Result<reprise::store::PurgeBatch, EngineError> {
        self.probe.alive().await;
        self.inner.purge_runs(filter).await
    }

    async fn run_for_key(&self, key: &str) -> Result<Option<RunId>, EngineError> {
        self.probe.alive().await;
        self.inner.run_for_key(key).await
    }
    async fn create_run_gated(
        &self,
        record: RunRecord,
        created: NewEvent,
        gate: &reprise::queue::StartGate,
    ) -> Result<reprise::queue::Gated, EngineError> {
        self.probe.alive().await;
        self.inner.create_run_gated(record, created, gate).await
    }
    async fn queue_totals(
        &self,
        queue: &reprise::queue::Queue,
        key: Option<&str>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<
        (
            reprise::queue::QueueTotals,
            Option<reprise::queue::KeyTotals>,
        ),
        EngineError,
    > {
        self.inner.queue_totals(queue, key, now).await
    }
    async fn take_step_permit(
        &self,
        queue: &reprise::queue::Queue,
        key: Option<&str>,
        clock: &std::sync::Arc<dyn reprise::Clock>,
    ) -> Result<Result<(), chrono::DateTime<chrono::Utc>>, EngineError> {
        self.inner.take_step_permit(queue, key, clock).await
    }
    async fn step_permits(
        &self,
        queue: &reprise::queue::Queue,
        key: Option<&str>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(u64, Option<chrono::DateTime<chrono::Utc>>), EngineError> {
        self.inner.step_permits(queue, key, now).await
    }
    async fn worker_heartbeat(
        &self,
        worker: &reprise::queue::WorkerInfo,
    ) -> Result<(), EngineError> {
        self.inner.worker_heartbeat(worker).await
    }
    async fn worker_stopped(&self, id: &str) -> Result<(), EngineError> {
        self.inner.worker_stopped(id).await
    }
    async fn live_workers(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<Vec<reprise::queue::WorkerInfo>>, EngineError> {
        self.inner.live_workers(now).await
    }

    async fn set_run_key(&self, key: &str, id: &RunId) -> Result<(), EngineError> {
        self.probe.alive().await;
        self.inner.set_run_key(key, id).await
    }

    async fn post_message(
        &self,
        message: reprise::message::NewMessage,
    ) -> Result<reprise::message::Posted, EngineError> {
        self.probe.alive().await;
        self.inner.post_message(message).await
    }

    async fn messages(
        &self,
        id: &RunId,
        after: u64,
    ) -> Result<Vec<reprise::message::Message>, EngineError> {
        self.probe.alive().await;
        self.inner.messages(id, after).await
    }

    async fn add_event_wait(&self, id: &RunId, name: &str) -> Result<(), EngineError> {
        self.probe.alive().await;
        self.inner.add_event_wait(id, name).await
    }

    async fn remove_event_wait(&self, id: &RunId, name: &str) -> Result<(), EngineError> {
        self.probe.alive().await;
        self.inner.remove_event_wait(id, name).await
    }

    async fn event_waiters(&self, name: &str) -> Result<Vec<RunId>, EngineError> {
        self.probe.alive().await;
        self.inner.event_waiters(name).await
    }

    async fn record_event(
        &self,
        event: &reprise::message::EmittedEvent,
    ) -> Result<bool, EngineError> {
        self.probe.alive().await;
        self.inner.record_event(event).await
    }
}

/// Routes every registered action through a wrapper that counts the call, runs the stub or
/// the real body, and crashes after it at the plan's `MidAction` point.
fn instrument_actions(engine: &Engine, probe: &Arc<Probe>, stubs: &BTreeMap<String, ErasedStub>) {
    for action in engine.registry().actions() {
        let slug = action.registration.slug;
        let real = action.call;
        let stub = stubs.get(slug).cloned();
        let probe = probe.clone();
        let body: ActionOverride = Arc::new(move |input: Value, cx: ActionCtx| {
            let probe = probe.clone();
            let stub = stub.clone();
            async move {
                probe.alive().await;
                let index = probe.actions.fetch_add(1, Ordering::SeqCst);
                let after_record = lock(&probe.recorded).contains(cx.correlation_id());
                let call = {
                    let mut calls = lock(&probe.calls);
                    calls.push(CallRecord {
                        id: cx.correlation_id().to_owned(),
                        attempt: cx.attempt(),
                        process: probe.process,
                        after_record,
                        ok: None,
                    });
                    calls.len() - 1
                };
                let result = match stub {
                    Some(stub) => stub(input, cx).await,
                    None => real(input, cx).await,
                };
                if let Some(record) = lock(&probe.calls).get_mut(call) {
                    record.ok = Some(result.is_ok());
                }
                probe.alive().await;
                if probe.plan == Some(CrashPlan::MidAction(index)) {
                    return probe.die().await;
                }
                result
            }
            .boxed()
        });
        engine.override_action(slug, Some(body));
    }
}

// ---------------------------------------------------------------------------------------
// Running.

/// How often a run may be executed (resumes after sleeps, retries and hooks) before the
/// checker calls it stuck.
const MAX_EXECUTIONS: usize = 1_000;

/// What the checker delivers to a waiting run: hook payloads and scripted messages.
#[derive(Clone, Copy)]
struct Script<'a> {
    hooks: &'a BTreeMap<String, Value>,
    messages: &'a BTreeMap<String, Vec<Value>>,
}

impl<'a> Script<'a> {
    fn of(config: &'a CheckConfig) -> Self {
        Script {
            hooks: &config.hooks,
            messages: &config.messages,
        }
    }
}

/// Executes run `id` until it completes, fails, or waits on a hook without a configured
/// payload: durable sleeps and run-level retries move the virtual clock to their end;
/// scripted signals are posted when the run waits on their channel; a child run the run
/// waits for is driven to its end (its result wakes the parent).
///
/// A store error is retried `store_retries` times in all (a worker retrying the run).
async fn drive(
    engine: &Engine,
    id: &RunId,
    clock: &VirtualClock,
    script: &Script<'_>,
    store_retries: usize,
) -> Result<RunOutcome, String> {
    Box::pin(drive_run(engine, id, clock, script, store_retries, 0)).await
}

/// Child runs are driven to a depth of this many levels at most.
const MAX_CHILD_DEPTH: usize = 8;

async fn drive_run(
    engine: &Engine,
    id: &RunId,
    clock: &VirtualClock,
    script: &Script<'_>,
    store_retries: usize,
    depth: usize,
) -> Result<RunOutcome, String> {
    let hooks = script.hooks;
    let mut retries = store_retries;
    let mut retry = |error: &EngineError| {
        let store_error = error.is_store();
        let again = store_error && retries > 0;
        retries = retries.saturating_sub(1);
        again
    };
    let stuck = |error: EngineError| {
        if store_retries > 0 && error.is_store() {
            format!(
                "the run is stuck: after the refused append, {} executions in a row failed: {error}",
                store_retries + 1
            )
        } else {
            format!("executing the run failed: {error}")
        }
    };
    for _ in 0..MAX_EXECUTIONS {
        let execution = match engine.execute(id).await {
            Ok(execution) => execution,
            Err(error) if retry(&error) => continue,
            Err(error) => return Err(stuck(error)),
        };
        let RunOutcome::Suspended(waits) = &execution.outcome else {
            return Ok(execution.outcome);
        };
        let hook = waits.iter().find_map(|wait| match wait {
            Wait::Hook { id: hook, .. } => hooks.get(hook).map(|payload| (hook, payload)),
            _ => None,
        });
        if let Some((hook, payload)) = hook {
            let token = engine.hook_token(id, hook);
            match engine.resume_hook(&token, payload.clone()).await {
                Ok(_) => {}
                Err(error) if retry(&error) => {}
                Err(error) => return Err(format!("delivering hook `{hook}` failed: {error}")),
            }
            continue;
        }
        if deliver_messages(engine, id, clock, script, waits, store_retries, depth).await? {
            continue;
        }
        match waits.iter().filter_map(Wait::until).min() {
            Some(until) => clock.set(until.max(reprise::Clock::now(clock))),
            None => return Ok(execution.outcome),
        }
    }
    Err(format!(
        "the run did not finish after {MAX_EXECUTIONS} executions"
    ))
}

/// Posts the scripted messages of the channels `waits` wait on, and drives the child runs
/// they wait for to their end. Returns whether anything was delivered (the run is then due
/// again).
async fn deliver_messages(
    engine: &Engine,
    id: &RunId,
    clock: &VirtualClock,
    script: &Script<'_>,
    waits: &[Wait],
    store_retries: usize,
    depth: usize,
) -> Result<bool, String> {
    let mut delivered = false;
    for wait in waits {
        let Wait::Message { channel, .. } = wait else {
            continue;
        };
        if let Some(child) = channel.strip_prefix("child:") {
            if depth >= MAX_CHILD_DEPTH {
                return Err(format!(
                    "child runs nest deeper than {MAX_CHILD_DEPTH} levels (at {child})"
                ));
            }
            let child = RunId(child.to_owned());
            let outcome = Box::pin(drive_run(
                engine,
                &child,
                clock,
                script,
                store_retries,
                depth + 1,
            ))
            .await
            .map_err(|e| format!("driving child run {child}: {e}"))?;
            // A child that ended posted its result to this run; one still waiting did not.
            delivered |= !matches!(outcome, RunOutcome::Suspended(_) | RunOutcome::Interrupted);
            continue;
        }
        for (n, payload) in script
            .messages
            .get(channel)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let message = reprise::message::NewMessage {
                run_id: id.clone(),
                channel: channel.clone(),
                payload: payload.clone(),
                dedupe: Some(format!("crash-checker/{channel}#{n}")),
                at: reprise::Clock::now(clock),
            };
            let posted = engine
                .store()
                .post_message(message)
                .await
                .map_err(|e| format!("posting the scripted `{channel}` message #{n}: {e}"))?;
            delivered |= !posted.duplicate;
        }
    }
    Ok(delivered)
}

/// What the uncrashed run did.
struct Baseline {
    /// The run's record as created (queued, attempt 0): every case starts from it.
    created_record: RunRecord,
    /// Its `run_created` event.
    created_event: NewEvent,
    outcome: RunOutcome,
    appends: usize,
    actions: usize,
    events: Vec<Event>,
    record: RunRecord,
    /// Live calls per step id.
    calls: BTreeMap<String, usize>,
}

/// A crash of one process in a case, or a refused append.
struct Crash {
    plan: CrashPlan,
    /// `false` for a refused append ([`CrashPlan::FailAppend`]): the process went on.
    died: bool,
    /// How many events were durable at that point.
    at: usize,
    /// The run's log as the next process found it (crashes only).
    surviving: Vec<Event>,
}

fn deaths(crashes: &[Crash]) -> usize {
    crashes.iter().filter(|c| c.died).count()
}

/// A prepared check: a runtime and a baseline.
struct Checker {
    runtime: tokio::runtime::Runtime,
    workflow: &'static str,
    config: CheckConfig,
    baseline: Baseline,
    started: Instant,
}

/// A fresh store of the configured kind (and the temporary directory of a SQLite file).
fn fresh_store(kind: StoreKind) -> Result<(SharedStore, Option<crate::TempDb>), String> {
    match kind {
        StoreKind::Memory => Ok((Arc::new(MemoryStore::new()), None)),
        StoreKind::Sqlite => {
            let db = crate::TempDb::new()
                .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
            let store = SqliteStore::open(db.path())
                .map_err(|e| format!("cannot open the SQLite database: {e}"))?;
            Ok((Arc::new(store), Some(db)))
        }
    }
}

impl Checker {
    fn prepare(
        slug: &'static str,
        input: Value,
        config: CheckConfig,
    ) -> Result<Checker, CrashFailure> {
        let started = Instant::now();
        let setup = |problem: String| CrashFailure::setup(slug, config.store, problem);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| setup(format!("cannot start a Tokio runtime: {e}")))?;
        let baseline = runtime.block_on(Self::baseline(slug, input, &config))?;
        Ok(Checker {
            runtime,
            workflow: slug,
            config,
            baseline,
            started,
        })
    }

    async fn baseline(
        slug: &'static str,
        input: Value,
        config: &CheckConfig,
    ) -> Result<Baseline, CrashFailure> {
        let fail = |problem: String| CrashFailure::setup(slug, config.store, problem);
        let (store, db) = fresh_store(config.store).map_err(fail)?;
        let clock = Arc::new(VirtualClock::new(config.start));
        let calls: Calls = Arc::default();
        let probe = Arc::new(Probe::new(None, 0, calls.clone(), Arc::default(), None));
        let wrapped: SharedStore = Arc::new(CrashStore {
            inner: store.clone(),
            probe: probe.clone(),
        });
        let engine = build_engine(config, wrapped, &clock, false).map_err(fail)?;
        instrument_actions(&engine, &probe, &config.stubs);
        let id = engine
            .start_json(slug, input, reprise::Trigger::Code)
            .await
            .map_err(|e| fail(format!("cannot start `{slug}`: {e}")))?;
        let store_error = |e: EngineError| fail(format!("the store failed: {e}"));
        let created_record = store
            .run(&id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| fail("the started run is not in the store".to_owned()))?;
        let created_event = store
            .events(&id)
            .await
            .map_err(store_error)?
            .first()
            .map(|e| e.event.clone())
            .ok_or_else(|| fail("the started run has no run_created event".to_owned()))?;
        let timeout = config.case_timeout;
        let outcome =
            tokio::time::timeout(timeout, drive(&engine, &id, &clock, &Script::of(config), 0))
                .await
                .unwrap_or_else(|_| Err(format!("the run did not finish within {timeout:?}")));
        let events = store.events(&id).await.map_err(store_error)?;
        let record = store
            .run(&id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| fail("the run vanished from the store".to_owned()))?;
        drop(engine);
        drop(db);
        let calls = lock(&calls).clone();
        let fail_with_log = |problems: Vec<String>| CrashFailure {
            workflow: slug,
            store: config.store,
            crashes: Vec::new(),
            problems,
            log: render_log(&events, &[]),
            calls: render_calls(&calls, 0),
        };
        let outcome = outcome.map_err(|problem| fail_with_log(vec![problem]))?;
        let mut problems = Vec::new();
        check_log(&events, &record, &outcome, &mut problems);
        for call in calls.iter().filter(|call| call.after_record) {
            problems.push(format!(
                "(b) step `{}` ran again (attempt {}) after its outcome was recorded",
                call.id, call.attempt
            ));
        }
        if !problems.is_empty() {
            problems.insert(
                0,
                "the uncrashed run already breaks the log invariants".to_owned(),
            );
            return Err(fail_with_log(problems));
        }
        let mut per_step = BTreeMap::new();
        for call in &calls {
            *per_step.entry(call.id.clone()).or_insert(0) += 1;
        }
        Ok(Baseline {
            created_record,
            created_event,
            outcome,
            appends: probe.appends.load(Ordering::SeqCst),
            actions: probe.actions.load(Ordering::SeqCst),
            events,
            record,
            calls: per_step,
        })
    }

    fn report(&self, cases: u32, crashed: u32, covered: usize) -> CheckReport {
        CheckReport {
            workflow: self.workflow,
            store: self.config.store,
            cases,
            crashed,
            appends: self.baseline.appends,
            actions: self.baseline.actions,
            crash_points: self.all_plans().len(),
            covered,
            outcome: self.baseline.outcome.clone(),
            elapsed: self.started.elapsed(),
        }
    }

    /// Every crash point of the baseline run (and refused append, when enabled).
    fn all_plans(&self) -> Vec<CrashPlan> {
        let sqlite = self.config.store == StoreKind::Sqlite;
        let mut plans = CrashPlan::all(self.baseline.appends, self.baseline.actions, sqlite);
        if self.config.store_failures {
            plans.extend(CrashPlan::store_failures(self.baseline.appends));
        }
        plans
    }

    /// Runs `config.cases` cases: the sweep, then random plans through proptest, which
    /// shrinks a failure.
    fn random(self) -> Result<CheckReport, CrashFailure> {
        let sqlite = self.config.store == StoreKind::Sqlite;
        let (appends, actions) = (self.baseline.appends, self.baseline.actions);
        let covered: RefCell<BTreeSet<CrashPlan>> = RefCell::default();
        let counts = RefCell::new((0u32, 0u32));
        let count = |plans: &[CrashPlan], crashes: usize| {
            covered.borrow_mut().extend(plans.first());
            let mut counts = counts.borrow_mut();
            counts.0 += 1;
            counts.1 += u32::from(crashes > 0);
        };

        // Every crash point once, simplest first, when the budget allows: the first
        // failure is then the simplest failing plan in the order proptest shrinks towards.
        let all = self.all_plans();
        if self.config.sweep && self.config.cases as usize >= all.len() {
            for plan in &all {
                let crashes = self
                    .runtime
                    .block_on(self.case(std::slice::from_ref(plan)))?;
                count(std::slice::from_ref(plan), crashes);
            }
        }
        let remaining = self.config.cases.saturating_sub(counts.borrow().0);
        if remaining == 0 {
            let (cases, crashed) = *counts.borrow();
            return Ok(self.report(cases, crashed, covered.borrow().len()));
        }

        let single = plan_strategy(appends, actions, sqlite, self.config.store_failures);
        let sequences: BoxedStrategy<Vec<CrashPlan>> = if self.config.crashes > 1 {
            proptest::collection::vec(single, 1..=self.config.crashes).boxed()
        } else {
            single.prop_map(|plan| vec![plan]).boxed()
        };
        let mut runner = TestRunner::new(ProptestConfig {
            cases: remaining,
            failure_persistence: None,
            ..ProptestConfig::default()
        });
        let failures: RefCell<HashMap<Vec<CrashPlan>, CrashFailure>> = RefCell::default();
        let result = runner.run(&sequences, |plans| {
            match self.runtime.block_on(self.case(&plans)) {
                Ok(crashes) => {
                    count(&plans, crashes);
                    Ok(())
                }
                Err(failure) => {
                    let reason = failure.problems.join("; ");
                    failures.borrow_mut().insert(plans, failure);
                    Err(TestCaseError::fail(reason))
                }
            }
        });
        match result {
            Ok(()) => {
                let (cases, crashed) = *counts.borrow();
                Ok(self.report(cases, crashed, covered.borrow().len()))
            }
            Err(TestError::Fail(reason, plans)) => Err(failures
                .borrow_mut()
                .remove(&plans)
                .unwrap_or_else(|| CrashFailure {
                    crashes: plans.clone(),
                    ..CrashFailure::setup(self.workflow, self.config.store, reason.to_string())
                })),
            Err(TestError::Abort(reason)) => Err(CrashFailure::setup(
                self.workflow,
                self.config.store,
                format!("proptest aborted the check: {reason}"),
            )),
        }
    }

    /// Runs exactly `cases`, each a sequence of crashes.
    fn sequences(self, cases: &[Vec<CrashPlan>]) -> Result<CheckReport, CrashFailure> {
        let mut crashed = 0;
        for plans in cases {
            crashed += u32::from(self.runtime.block_on(self.case(plans))? > 0);
        }
        let covered = cases
            .iter()
            .filter_map(|plans| plans.first())
            .collect::<BTreeSet<_>>()
            .len();
        Ok(self.report(cases.len() as u32, crashed, covered))
    }

    /// One case: process 0 runs the run until `plans[0]`'s crash, process 1 resumes it on
    /// a new engine over what survived until `plans[1]`'s crash, and so on; a last process
    /// resumes it to its end. Then everything is checked. Returns how many crashes
    /// happened (a crash point the process never reached lets it finish the run).
    async fn case(&self, plans: &[CrashPlan]) -> Result<usize, CrashFailure> {
        let id = self.baseline.created_record.id.clone();
        let timeout = self.config.case_timeout;
        let kind = self.config.store;
        let clock = Arc::new(VirtualClock::new(self.config.start));
        let calls: Calls = Arc::default();
        let recorded: Arc<Mutex<BTreeSet<String>>> = Arc::default();
        let mut problems: Vec<String> = Vec::new();
        let mut crashes: Vec<Crash> = Vec::new();
        let failure = |problems: Vec<String>, events: &[Event], crashes: &[Crash]| CrashFailure {
            workflow: self.workflow,
            store: kind,
            crashes: plans.to_vec(),
            problems,
            log: render_log(events, crashes),
            calls: render_calls(&lock(&calls), deaths(crashes)),
        };

        let (mut store, db) = fresh_store(kind).map_err(|p| failure(vec![p], &[], &[]))?;
        let mut db_path = db.as_ref().map(crate::TempDb::path);
        let mut torn_copies: Vec<tempfile::TempDir> = Vec::new();
        let mut survived: Vec<NewEvent> = Vec::new();
        let mut ended = None;
        for process in 0..=plans.len() {
            let plan = plans.get(process).copied();
            let probe = Arc::new(Probe::new(
                plan,
                process,
                calls.clone(),
                recorded.clone(),
                db_path.clone(),
            ));
            lock(&recorded).clear();
            *lock(&probe.checked) = Some(self.baseline.created_record.id.clone());
            probe.ack(survived.clone());
            let wrapped: SharedStore = Arc::new(CrashStore {
                inner: store.clone(),
                probe: probe.clone(),
            });
            let engine = build_engine(&self.config, wrapped.clone(), &clock, process > 0)
                .map_err(|p| failure(vec![p], &[], &crashes))?;
            instrument_actions(&engine, &probe, &self.config.stubs);
            if process == 0 {
                wrapped
                    .create_run(
                        self.baseline.created_record.clone(),
                        self.baseline.created_event.clone(),
                    )
                    .await
                    .map_err(|e| failure(vec![format!("cannot create the run: {e}")], &[], &[]))?;
            }
            drop(wrapped);
            let store_retries = match plan {
                Some(CrashPlan::FailAppend(_)) => 3,
                _ => 0,
            };
            let script = Script::of(&self.config);
            let driven = drive(&engine, &id, &clock, &script, store_retries);
            let outcome = tokio::select! {
                biased;
                () = probe.death() => None,
                outcome = tokio::time::timeout(timeout, driven) => Some(
                    outcome.unwrap_or_else(|_| Err(format!("the run neither finished nor crashed within {timeout:?}")))
                ),
            };
            // The process is dead (or done): its engine, its store handle and every future
            // it ran are gone before anything reads the surviving data.
            drop(engine);
            if let (Some(plan), Some(at)) = (plan, *lock(&probe.refused_at)) {
                crashes.push(Crash {
                    plan,
                    died: false,
                    at,
                    surviving: Vec::new(),
                });
            }
            if let Some(outcome) = outcome {
                ended = Some(outcome);
                break;
            }
            let Some(plan) = plan else {
                let problem = "internal: a process without a crash plan died".to_owned();
                return Err(failure(vec![problem], &[], &crashes));
            };

            // What survived: the memory store as it is; the SQLite file reopened (or its
            // torn copy) by the next process.
            if let (StoreKind::Sqlite, Some(path)) = (kind, db_path.clone()) {
                drop(store); // the dead process's connection
                let path = match lock(&probe.torn).take() {
                    Some(Ok(dir)) => {
                        let copy = dir.path().join("reprise.db");
                        torn_copies.push(dir);
                        copy
                    }
                    Some(Err(problem)) => {
                        let problem = format!("cannot simulate the torn write: {problem}");
                        return Err(failure(vec![problem], &[], &crashes));
                    }
                    None => path,
                };
                store = match SqliteStore::open(&path) {
                    Ok(reopened) => Arc::new(reopened),
                    Err(e) => {
                        let problem = format!("cannot reopen the database after the crash: {e}");
                        return Err(failure(vec![problem], &[], &crashes));
                    }
                };
                db_path = Some(path);
            }
            let surviving = store.events(&id).await.map_err(|e| {
                let problem = format!("cannot read the log after the crash: {e}");
                failure(vec![problem], &[], &crashes)
            })?;
            let acked = lock(&probe.acked).clone();
            let in_flight: Vec<Vec<NewEvent>> = lock(&probe.in_flight).values().cloned().collect();
            check_durable(plan, &acked, &in_flight, &surviving, &mut problems);
            survived = surviving.iter().map(|e| e.event.clone()).collect();
            crashes.push(Crash {
                plan,
                died: true,
                at: surviving.len(),
                surviving,
            });
        }

        let events = store.events(&id).await.unwrap_or_default();
        let outcome = match ended {
            Some(Ok(outcome)) => outcome,
            Some(Err(problem)) => {
                let when = match (deaths(&crashes), crashes.len()) {
                    (0, 0) => "without a crash: ",
                    (0, _) => "",
                    _ => "after the resume: ",
                };
                problems.push(format!("{when}{problem}"));
                return Err(failure(problems, &events, &crashes));
            }
            None => {
                problems.push("internal: no process finished the run".to_owned());
                return Err(failure(problems, &events, &crashes));
            }
        };
        let Some(record) = store.run(&id).await.ok().flatten() else {
            problems.push("the run vanished from the store".to_owned());
            return Err(failure(problems, &events, &crashes));
        };

        // Nothing a crash left may be rewritten.
        for (n, crash) in crashes.iter().filter(|c| c.died).enumerate() {
            let prefix = crash.surviving.len().min(events.len());
            if !same_events(&crash.surviving, &events[..prefix]) {
                problems.push(format!(
                    "the resume changed the {} events that survived crash #{}",
                    crash.surviving.len(),
                    n + 1
                ));
            }
        }
        self.compare(&events, &record, &outcome, &mut problems);
        check_calls(
            &self.baseline.calls,
            &lock(&calls),
            crashes.len(),
            &mut problems,
        );
        drop(store);
        drop(torn_copies);
        drop(db);
        if problems.is_empty() {
            Ok(deaths(&crashes))
        } else {
            Err(failure(problems, &events, &crashes))
        }
    }

    /// (a), (c), (d): the run's end, log and record against the invariants and the baseline.
    fn compare(
        &self,
        events: &[Event],
        record: &RunRecord,
        outcome: &RunOutcome,
        problems: &mut Vec<String>,
    ) {
        let baseline = &self.baseline;
        if *outcome != baseline.outcome {
            problems.push(format!(
                "(a) the run ended {} but the uncrashed run ended {}",
                describe_outcome(outcome),
                describe_outcome(&baseline.outcome)
            ));
        }
        check_log(events, record, outcome, problems);
        if record.status != baseline.record.status {
            problems.push(format!(
                "(d) the run is `{}` but the uncrashed run is `{}`",
                record.status, baseline.record.status
            ));
        }
        compare_sets(
            "(c) finished steps",
            &finished_steps(&baseline.events),
            &finished_steps(events),
            problems,
        );
        for (what, kind) in [
            ("(c) started sleeps", EventKind::SleepStarted),
            ("(c) completed sleeps", EventKind::SleepCompleted),
            ("(c) created hooks", EventKind::HookCreated),
            ("(c) received hooks", EventKind::HookReceived),
        ] {
            compare_sets(
                what,
                &ids_of(&baseline.events, kind),
                &ids_of(events, kind),
                problems,
            );
        }
    }
}

fn build_engine(
    config: &CheckConfig,
    store: SharedStore,
    clock: &Arc<VirtualClock>,
    after_crash: bool,
) -> Result<Engine, String> {
    // Every "process" of the checker uses one owner id: a restarted process takes back
    // the leases its crashed predecessor held, instead of waiting for them to expire.
    let mut builder = Engine::builder()
        .owner_id("crash-checker")
        // Every continuation replays, so every crash point is checked against the log.
        .hot_runs(0, std::time::Duration::ZERO)
        .store(store)
        .discover()
        .map_err(|e| format!("cannot register the linked workflows: {e}"))?
        .clock(clock.clone())
        .hook_secret(HOOK_SECRET.to_vec())
        .public_url("http://reprise.test");
    for configure in &config.configure {
        builder = configure(builder);
    }
    if after_crash {
        for configure in &config.configure_after_crash {
            builder = configure(builder);
        }
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the engine: {e}"))
}

// ---------------------------------------------------------------------------------------
// Checks.

fn describe_outcome(outcome: &RunOutcome) -> String {
    match outcome {
        RunOutcome::Completed(output) => format!("completed with {}", compact(output, 300)),
        RunOutcome::Failed(error) => format!(
            "failed with `{}`: {}",
            error.kind,
            compact(&Value::String(error.message.clone()), 300)
        ),
        RunOutcome::Suspended(waits) => format!(
            "suspended on {}",
            serde_json::to_string(waits).unwrap_or_default()
        ),
        RunOutcome::Canceled => "canceled".to_owned(),
        RunOutcome::Interrupted => "interrupted (handed back to the queue)".to_owned(),
        other => format!("{other:?}"),
    }
}

/// The finished steps of a log: correlation id → `step_completed` or `step_failed`.
fn finished_steps(events: &[Event]) -> BTreeMap<String, &'static str> {
    events
        .iter()
        .filter(|e| {
            matches!(
                e.event.kind,
                EventKind::StepCompleted | EventKind::StepFailed
            )
        })
        .filter_map(|e| {
            let id = e.event.correlation_id.clone()?;
            Some((id, e.event.kind.as_str()))
        })
        .collect()
}

fn ids_of(events: &[Event], kind: EventKind) -> BTreeMap<String, &'static str> {
    events
        .iter()
        .filter(|e| e.event.kind == kind)
        .filter_map(|e| Some((e.event.correlation_id.clone()?, kind.as_str())))
        .collect()
}

fn compare_sets(
    what: &str,
    expected: &BTreeMap<String, &'static str>,
    found: &BTreeMap<String, &'static str>,
    problems: &mut Vec<String>,
) {
    let missing: Vec<String> = expected
        .iter()
        .filter(|(id, kind)| found.get(*id) != Some(*kind))
        .map(|(id, kind)| format!("{id} ({kind})"))
        .collect();
    let extra: Vec<String> = found
        .iter()
        .filter(|(id, kind)| expected.get(*id) != Some(*kind))
        .map(|(id, kind)| format!("{id} ({kind})"))
        .collect();
    if !missing.is_empty() || !extra.is_empty() {
        problems.push(format!(
            "{what} differ from the uncrashed run: missing [{}], unexpected [{}]",
            missing.join(", "),
            extra.join(", ")
        ));
    }
}

/// (c) and (d) on one log and record: no gaps, no duplicates, every started step finished,
/// one end, and a record that agrees with the log.
fn check_log(
    events: &[Event],
    record: &RunRecord,
    outcome: &RunOutcome,
    problems: &mut Vec<String>,
) {
    for (index, event) in events.iter().enumerate() {
        if event.seq != index as u64 {
            problems.push(format!(
                "(c) event {index} has seq {}: the sequence has a gap or a duplicate",
                event.seq
            ));
            break;
        }
    }
    if events.first().map(|e| e.event.kind) != Some(EventKind::RunCreated) {
        problems.push("(c) the log does not start with run_created".to_owned());
    }
    let created = events
        .iter()
        .filter(|e| e.event.kind == EventKind::RunCreated)
        .count();
    if created > 1 {
        problems.push(format!("(c) run_created appears {created} times"));
    }
    if record.next_seq != events.len() as u64 {
        problems.push(format!(
            "(d) the record's next_seq is {} but the log has {} events",
            record.next_seq,
            events.len()
        ));
    }

    // Per correlation id: how often each kind of event appears.
    let mut counts: BTreeMap<&str, HashMap<EventKind, Vec<u64>>> = BTreeMap::new();
    for event in events {
        if let Some(id) = event.event.correlation_id.as_deref() {
            counts
                .entry(id)
                .or_default()
                .entry(event.event.kind)
                .or_default()
                .push(event.seq);
        }
    }
    let seqs = |seqs: &[u64]| {
        seqs.iter()
            .map(|s| format!("#{s}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (id, kinds) in &counts {
        let get = |kind: EventKind| kinds.get(&kind).map(Vec::as_slice).unwrap_or(&[]);
        let (completed, failed) = (get(EventKind::StepCompleted), get(EventKind::StepFailed));
        let mut finished: Vec<u64> = completed.iter().chain(failed).copied().collect();
        finished.sort_unstable();
        if finished.len() > 1 {
            problems.push(format!(
                "(c) step `{id}` is recorded {} times (events {}): a step is recorded exactly once",
                finished.len(),
                seqs(&finished)
            ));
        }
        let started = get(EventKind::StepStarted);
        if !started.is_empty() && finished.is_empty() {
            problems.push(format!(
                "(c) step `{id}` started (events {}) but has no step_completed or step_failed: its outcome was never recorded, so every resume runs it again",
                seqs(started)
            ));
        }
        for kind in [
            EventKind::SleepStarted,
            EventKind::SleepCompleted,
            EventKind::HookCreated,
            EventKind::HookReceived,
        ] {
            if get(kind).len() > 1 {
                problems.push(format!(
                    "(c) `{id}` has {} {kind} events ({})",
                    get(kind).len(),
                    seqs(get(kind))
                ));
            }
        }
        if !get(EventKind::SleepCompleted).is_empty() && get(EventKind::SleepStarted).is_empty() {
            problems.push(format!("(c) sleep `{id}` completed but never started"));
        }
        if !get(EventKind::HookReceived).is_empty() && get(EventKind::HookCreated).is_empty() {
            problems.push(format!(
                "(c) hook `{id}` received a payload but was never created"
            ));
        }
    }

    // The run's end: one event, the last one, agreeing with the record.
    let ends: Vec<&Event> = events
        .iter()
        .filter(|e| {
            matches!(
                e.event.kind,
                EventKind::RunCompleted | EventKind::RunFailed | EventKind::RunCanceled
            )
        })
        .collect();
    if ends.len() > 1 {
        problems.push(format!(
            "(c) the run ended {} times (events {})",
            ends.len(),
            seqs(&ends.iter().map(|e| e.seq).collect::<Vec<_>>())
        ));
    }
    if let Some(end) = ends.first()
        && Some(end.seq) != events.last().map(|e| e.seq)
    {
        problems.push(format!(
            "(c) events follow the run's end ({} at #{})",
            end.event.kind, end.seq
        ));
    }
    let end = ends.last().map(|e| e.event.kind);
    match record.status {
        RunStatus::Completed => {
            let logged = ends
                .last()
                .filter(|e| e.event.kind == EventKind::RunCompleted)
                .and_then(|e| e.event.output());
            if logged.is_none() || logged != record.output.as_ref() {
                problems.push(format!(
                    "(d) the record is completed with output {} but the log's run_completed holds {}",
                    record.output.as_ref().map_or("none".to_owned(), |o| compact(o, 200)),
                    logged.map_or("nothing".to_owned(), |o| compact(o, 200))
                ));
            }
        }
        RunStatus::Failed => {
            let logged = ends.last().and_then(|e| match e.event.decode_payload() {
                Ok(EventPayload::RunFailed { error }) => Some(error),
                _ => None,
            });
            let recorded = record
                .error
                .as_ref()
                .and_then(|e| WorkflowError::deserialize(e).ok());
            if logged.is_none() || logged != recorded {
                let show = |error: &WorkflowError| {
                    compact(&serde_json::to_value(error).unwrap_or_default(), 200)
                };
                problems.push(format!(
                    "(d) the record is failed with error {} but the log's run_failed holds {}",
                    record
                        .error
                        .as_ref()
                        .map_or("none".to_owned(), |o| compact(o, 200)),
                    logged.as_ref().map_or("nothing".to_owned(), show)
                ));
            }
        }
        RunStatus::Canceled => {
            if end != Some(EventKind::RunCanceled) {
                problems.push("(d) the record is canceled but the log has no run_canceled".into());
            }
        }
        status => {
            if let Some(end) = end {
                problems.push(format!(
                    "(d) the record is `{status}` but the log holds {end}"
                ));
            }
        }
    }
    let consistent = match outcome {
        RunOutcome::Completed(_) => record.status == RunStatus::Completed,
        RunOutcome::Failed(_) => matches!(record.status, RunStatus::Failed | RunStatus::Canceled),
        RunOutcome::Suspended(_) | RunOutcome::Interrupted => !record.status.is_terminal(),
        RunOutcome::Canceled => record.status == RunStatus::Canceled,
        _ => false,
    };
    if !consistent {
        problems.push(format!(
            "(d) the execution reported {} but the record is `{}`",
            describe_outcome(outcome),
            record.status
        ));
    }
    if let RunOutcome::Completed(output) = outcome
        && record.output.as_ref() != Some(output)
    {
        problems.push(format!(
            "(d) the execution returned {} but the record holds {}",
            compact(output, 200),
            record
                .output
                .as_ref()
                .map_or("none".to_owned(), |o| compact(o, 200))
        ));
    }
}

/// Durability: after the crash the store holds exactly the events it acknowledged — plus,
/// at most, one whole append that was on its way to the disk when the process died (never
/// for a torn write: that one is the append being written).
fn check_durable(
    plan: CrashPlan,
    acked: &[NewEvent],
    in_flight: &[Vec<NewEvent>],
    surviving: &[Event],
    problems: &mut Vec<String>,
) {
    let holds = |expected: &[&NewEvent]| {
        surviving.len() == expected.len()
            && surviving
                .iter()
                .zip(expected)
                .all(|(s, a)| same_event(&s.event, a))
    };
    let acked_only: Vec<&NewEvent> = acked.iter().collect();
    if holds(&acked_only) {
        return;
    }
    if !matches!(plan, CrashPlan::TornWrite(_))
        && in_flight.iter().any(|append| {
            let with: Vec<&NewEvent> = acked.iter().chain(append).collect();
            holds(&with)
        })
    {
        return;
    }
    let what = if surviving.len() > acked.len() {
        match plan {
            CrashPlan::TornWrite(_) => "SQLite kept the torn commit",
            _ => "the store holds events it never acknowledged",
        }
    } else if surviving.len() < acked.len() {
        "the store lost acknowledged events"
    } else {
        "the store altered acknowledged events"
    };
    problems.push(format!(
        "durability: {what}: {} events acknowledged before the crash, {} survived it",
        acked.len(),
        surviving.len()
    ));
}

/// Events compared by what they say (timestamps may lose precision in a store).
fn same_event(a: &NewEvent, b: &NewEvent) -> bool {
    a.kind == b.kind
        && a.correlation_id == b.correlation_id
        && a.attempt == b.attempt
        && a.payload == b.payload
}

fn same_events(a: &[Event], b: &[Event]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(a, b)| a.seq == b.seq && same_event(&a.event, &b.event))
}

/// (b): live calls per step against the baseline, after `boundaries` crashes and refused
/// appends (0: the run went through undisturbed).
///
/// No call of a step starts once its outcome is durable (a recorded step's effect is
/// applied once); every step of the uncrashed run runs at least as often as there, never
/// a step it did not run; without a disturbance exactly as often. A step whose outcome
/// was not durable at a crash runs again (at-least-once), so at most `boundaries + 1`
/// times as often as in the uncrashed run.
fn check_calls(
    baseline: &BTreeMap<String, usize>,
    calls: &[CallRecord],
    boundaries: usize,
    problems: &mut Vec<String>,
) {
    let mut per_step: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for call in calls {
        let (all, after_record) = per_step.entry(call.id.as_str()).or_default();
        *all += 1;
        *after_record += usize::from(call.after_record);
    }
    for id in baseline.keys() {
        per_step.entry(id.as_str()).or_default();
    }
    for (id, (ran, after_record)) in per_step {
        let expected = baseline.get(id).copied().unwrap_or(0);
        if expected == 0 {
            problems.push(format!(
                "(b) action step `{id}` ran {ran} time(s) but never in the uncrashed run"
            ));
            continue;
        }
        if after_record > 0 {
            problems.push(format!(
                "(b) step `{id}` ran {after_record} more time(s) after its outcome was recorded: its effect was applied again"
            ));
        }
        if ran < expected || (boundaries == 0 && ran != expected) {
            problems.push(format!(
                "(b) step `{id}` ran {ran} time(s); {expected} in the uncrashed run"
            ));
        } else if ran > expected * (boundaries + 1) {
            problems.push(format!(
                "(b) step `{id}` ran {ran} time(s), more than at-least-once explains ({expected} in the uncrashed run, {boundaries} disturbance(s))"
            ));
        }
    }
}

/// "before the crash", "after the resume", "between crash #1 and crash #2", …
fn process_name(process: usize, crashes: usize) -> String {
    match (process, crashes) {
        (_, 0) => "in the run".to_owned(),
        (0, 1) => "before the crash".to_owned(),
        (1, 1) => "after the resume".to_owned(),
        (0, _) => "before crash #1".to_owned(),
        (p, n) if p >= n => format!("after crash #{n}"),
        (p, _) => format!("between crash #{p} and crash #{}", p + 1),
    }
}

// ---------------------------------------------------------------------------------------
// Rendering.

fn compact(value: &Value, max: usize) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        other => serde_json::to_string(other).unwrap_or_default(),
    };
    if text.chars().count() <= max {
        return text;
    }
    let cut: String = text.chars().take(max).collect();
    format!("{cut}…")
}

/// One event a line, with a marker where each crash struck (after the events that survived it).
fn render_log(events: &[Event], crashes: &[Crash]) -> String {
    let mut out = String::new();
    let marker = |out: &mut String, n: usize, crash: &Crash| {
        let _ = if crash.died {
            writeln!(
                out,
                "  ---- crash #{}: {:?}; the {} events above survived it ----",
                n + 1,
                crash.plan,
                crash.at
            )
        } else {
            writeln!(
                out,
                "  ---- {:?}: the store refused an append here; the process went on ----",
                crash.plan
            )
        };
    };
    let numbered: Vec<(usize, &Crash)> = {
        let mut deaths = 0;
        crashes
            .iter()
            .map(|crash| {
                deaths += usize::from(crash.died);
                (deaths.saturating_sub(1), crash)
            })
            .collect()
    };
    for (index, event) in events.iter().enumerate() {
        for (n, crash) in &numbered {
            if crash.at == index {
                marker(&mut out, *n, crash);
            }
        }
        let payload = if event
            .event
            .payload
            .as_object()
            .is_some_and(|o| o.is_empty())
        {
            String::new()
        } else {
            compact(&event.event.payload, 160)
        };
        let _ = writeln!(
            out,
            "  #{:<3} {:<15} {:<26} a{:<2} {}",
            event.seq,
            event.event.kind.as_str(),
            event.event.correlation_id.as_deref().unwrap_or("-"),
            event.event.attempt,
            payload
        );
    }
    for (n, crash) in &numbered {
        if crash.at >= events.len() {
            marker(&mut out, *n, crash);
        }
    }
    out
}

fn render_calls(calls: &[CallRecord], crashes: usize) -> String {
    let mut by_id: BTreeMap<&str, Vec<&CallRecord>> = BTreeMap::new();
    for call in calls {
        by_id.entry(&call.id).or_default().push(call);
    }
    let mut out = String::new();
    for (id, calls) in by_id {
        let list: Vec<String> = calls
            .iter()
            .map(|c| {
                let ok = match c.ok {
                    Some(true) => "ok",
                    Some(false) => "error",
                    None => "interrupted",
                };
                format!(
                    "attempt {} {} ({ok})",
                    c.attempt,
                    process_name(c.process, crashes)
                )
            })
            .collect();
        let _ = writeln!(out, "  {id:<26} {}", list.join(", "));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn wal(page_size: u32, frames: &[(u32, u32)], salts: (u32, u32)) -> Vec<u8> {
        let mut bytes = Vec::new();
        for word in [
            0x377f_0682u32,
            3_007_000,
            page_size,
            0,
            salts.0,
            salts.1,
            0,
            0,
        ] {
            bytes.extend_from_slice(&word.to_be_bytes());
        }
        for (commit, salt1) in frames {
            for word in [1u32, *commit, *salt1, salts.1, 0, 0] {
                bytes.extend_from_slice(&word.to_be_bytes());
            }
            bytes.extend(std::iter::repeat_n(0u8, page_size as usize));
        }
        bytes
    }

    #[test]
    fn a_torn_wal_cuts_into_the_last_commit_frame_of_the_current_generation() {
        let frame = 24 + 512;
        // Two transactions: frames 1-2 (commit at 2), frame 3 (commit).
        let bytes = wal(512, &[(0, 9), (2, 9), (3, 9)], (9, 4));
        assert_eq!(torn_wal_length(&bytes), Some(32 + 3 * frame - 7));
        // A stale frame of an earlier generation after the current ones is ignored.
        let bytes = wal(512, &[(0, 9), (2, 9), (3, 8)], (9, 4));
        assert_eq!(torn_wal_length(&bytes), Some(32 + 2 * frame - 7));
        // No commit frame: nothing to tear.
        assert_eq!(torn_wal_length(&wal(512, &[(0, 9)], (9, 4))), None);
        assert_eq!(torn_wal_length(b"not a wal"), None);
    }

    fn call(id: &str, after_record: bool) -> CallRecord {
        CallRecord {
            id: id.to_owned(),
            attempt: 1,
            process: 0,
            after_record,
            ok: Some(true),
        }
    }

    #[test]
    fn effects_are_checked_against_the_baseline() {
        let baseline: BTreeMap<String, usize> = [("a#0".to_owned(), 1), ("b#0".to_owned(), 2)]
            .into_iter()
            .collect();
        let check = |calls: &[CallRecord], boundaries| {
            let mut problems = Vec::new();
            check_calls(&baseline, calls, boundaries, &mut problems);
            problems
        };
        let (a, b) = (call("a#0", false), call("b#0", false));
        assert!(check(&[a.clone(), b.clone(), b.clone()], 0).is_empty());
        // Without a crash, a second call is one too many.
        assert_eq!(
            check(&[a.clone(), a.clone(), b.clone(), b.clone()], 0).len(),
            1
        );
        // After a crash, an unrecorded step may run again ...
        assert!(check(&[a.clone(), a.clone(), b.clone(), b.clone()], 1).is_empty());
        // ... a recorded one never.
        let again = check(&[a.clone(), call("a#0", true), b.clone(), b.clone()], 1);
        assert!(
            again[0].contains("after its outcome was recorded"),
            "{again:?}"
        );
        // Missing and unexpected steps.
        assert_eq!(check(std::slice::from_ref(&a), 1).len(), 1);
        assert_eq!(check(&[a, b.clone(), b, call("c#0", false)], 1).len(), 1);
    }

    #[test]
    fn every_crash_point_is_listed_once() {
        let plans = CrashPlan::all(3, 2, true);
        assert_eq!(plans.len(), 3 + 3 + 2 + 3);
        assert_eq!(plans.iter().collect::<BTreeSet<_>>().len(), plans.len());
        assert_eq!(CrashPlan::all(3, 0, false).len(), 6);
    }
}
