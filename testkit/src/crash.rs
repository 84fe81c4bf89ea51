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
//! 2. **Cases.** A proptest [`TestRunner`] draws [`CrashPlan`]s from [`strategy`]
//!    (`config.cases` of them; [`CheckConfig::default`] honours `PROPTEST_CASES`, default
//!    256). For each plan, the same run (same run id, input and start time) is created on a
//!    fresh store and executed on an engine whose store and actions are instrumented; at
//!    the crash point the store or the action wrapper signals the crash and never returns,
//!    and the execution future is dropped: the process is dead, nothing it did afterwards
//!    reaches the store. A **new** [`Engine`] is built over the surviving data (the same
//!    memory store; for SQLite the file reopened, or a torn copy of it) and the run is
//!    driven to its end: durable sleeps and run-level retries move the virtual clock,
//!    hooks get the payloads of [`CheckConfig::hook`].
//! 3. **Checks** after each case:
//!    - *durability*: the surviving log is exactly what the store had acknowledged before
//!      the crash (for a torn write: SQLite ignored the torn commit), and the final log
//!      starts with it unchanged;
//!    - (a) the outcome (output or error, or the waits of a run left on a hook without
//!      payload) equals the baseline's;
//!    - (b) effects: a step recorded before the crash never runs again, and runs exactly
//!      as often as in the baseline; a step whose outcome was not durable at the crash
//!      (the one whose completion was lost, and any concurrent step in flight) runs again
//!      in full after the resume — at-least-once, so its effect may be applied twice
//!      (DESIGN "Event log": the idempotency key makes that safe);
//!    - (c) the log: `seq` runs from 0 without gaps, one `run_created` first, every step id
//!      has at most one `step_completed`/`step_failed` and every `step_started` has one,
//!      sleeps and hooks are started, completed, created and received at most once, the
//!      run's end is one last event; and the sets of finished steps, sleeps and hooks
//!      equal the baseline's;
//!    - (d) statuses: the record's final status equals the baseline's, its output (error)
//!      equals the `run_completed` (`run_failed`) payload, and `next_seq` the log length.
//! 4. **Failure.** Proptest shrinks a failing plan to a minimal one; [`CrashFailure`]
//!    prints it with every problem, the event log (with the crash point marked) and the
//!    live action calls. [`check_plans`] re-runs given plans, e.g. that minimal one.
//!
//! # Crash points
//!
//! Appends are numbered from 0 in the order the run makes them (`run_started`, each step's
//! record, sleep and hook records, suspensions, hook deliveries, the run's end); action
//! calls likewise. See [`CrashPlan`] for what each plan simulates.
//!
//! The checker drives runs on its own single-threaded Tokio runtime (a helper thread when
//! called from inside a runtime), so it is called from a plain `#[test]`.

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
use futures::future::BoxFuture;
use proptest::strategy::{BoxedStrategy, Just, Strategy, Union};
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestError, TestRunner};
use reprise::event::{Event, EventKind, NewEvent, RunFilter, RunId, RunRecord, RunStatus};
use reprise::store::{Append, MemoryStore, SharedStore, SqliteStore, Store};
use reprise::{
    ActionCtx, ActionError, ActionOverride, Engine, EngineBuilder, EngineError, RunOutcome, Step,
    Wait,
};
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
    /// ignore the torn commit, so append `k` is lost as with `BeforeAppend(k)`.
    TornWrite(usize),
}

impl CrashPlan {
    /// Every crash point of a run with `appends` appends and `actions` live action calls;
    /// torn writes only when `sqlite`. For exhaustive sweeps with [`check_plans`].
    pub fn all(appends: usize, actions: usize, sqlite: bool) -> Vec<CrashPlan> {
        let mut plans: Vec<CrashPlan> = (0..appends).map(CrashPlan::BeforeAppend).collect();
        plans.extend((0..appends).map(CrashPlan::AfterAppend));
        plans.extend((0..actions).map(CrashPlan::MidAction));
        if sqlite {
            plans.extend((0..appends).map(CrashPlan::TornWrite));
        }
        plans
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
type ErasedStub =
    Arc<dyn Fn(Value, ActionCtx) -> BoxFuture<'static, Result<Value, ActionError>> + Send + Sync>;

/// The hook secret every engine of a check uses, so hook tokens survive the crash.
const HOOK_SECRET: &[u8] = b"reprise-testkit crash checker hook secret (fixed)";

/// How a check runs. `CheckConfig::default()`: `PROPTEST_CASES` cases (default 256) on
/// the memory store, the virtual clock starting at 2030-01-01T00:00:00Z, 30 s per case.
#[derive(Clone)]
pub struct CheckConfig {
    cases: u32,
    store: StoreKind,
    start: DateTime<Utc>,
    case_timeout: Duration,
    configure: Vec<Configure>,
    configure_after_crash: Vec<Configure>,
    hooks: BTreeMap<String, Value>,
    stubs: BTreeMap<String, ErasedStub>,
}

impl fmt::Debug for CheckConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckConfig")
            .field("cases", &self.cases)
            .field("store", &self.store)
            .field("start", &self.start)
            .field("case_timeout", &self.case_timeout)
            .field("configure", &self.configure.len())
            .field("configure_after_crash", &self.configure_after_crash.len())
            .field("hooks", &self.hooks)
            .field("stubs", &self.stubs.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            cases: ProptestConfig::default().cases,
            store: StoreKind::Memory,
            start: Utc
                .with_ymd_and_hms(2030, 1, 1, 0, 0, 0)
                .single()
                .unwrap_or_default(),
            case_timeout: Duration::from_secs(30),
            configure: Vec::new(),
            configure_after_crash: Vec::new(),
            hooks: BTreeMap::new(),
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

    /// Replaces `action`'s body with `stub` in every engine of the check (typed by the
    /// action's input and output). Stubbed calls are counted and crashed like real ones.
    pub fn stub<A, F, Fut>(mut self, _action: &A, stub: F) -> Self
    where
        A: Step,
        F: Fn(A::Input) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<A::Output, ActionError>> + Send + 'static,
    {
        let stub = Arc::new(stub);
        let erased: ErasedStub = Arc::new(move |input: Value, _cx: ActionCtx| {
            let stub = stub.clone();
            async move {
                let input: A::Input = serde_json::from_value(input).map_err(|e| {
                    ActionError::new("serde", format!("stub input of `{}`: {e}", A::SLUG), false)
                })?;
                let output = stub(input).await?;
                serde_json::to_value(output).map_err(|e| {
                    ActionError::new("serde", format!("stub output of `{}`: {e}", A::SLUG), false)
                })
            }
            .boxed()
        });
        self.stubs.insert(A::SLUG.to_owned(), erased);
        self
    }
}

/// What a passing check did.
#[derive(Clone, Debug)]
pub struct CheckReport {
    /// The workflow's slug.
    pub workflow: String,
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
    pub workflow: String,
    /// The store it ran on.
    pub store: StoreKind,
    /// The minimal crash plan; `None` when the uncrashed baseline already failed (or the
    /// check could not be set up).
    pub plan: Option<CrashPlan>,
    /// Every problem found, one sentence each.
    pub problems: Vec<String>,
    /// The run's event log, one event a line, with the crash point marked.
    pub log: String,
    /// The live action calls, per step, before the crash and after the resume.
    pub calls: String,
}

impl CrashFailure {
    fn setup(workflow: &str, store: StoreKind, problem: String) -> Self {
        CrashFailure {
            workflow: workflow.to_owned(),
            store,
            plan: None,
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
        match &self.plan {
            Some(plan) => writeln!(f, "minimal crash plan: {plan}")?,
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
        if let Some(plan) = &self.plan {
            writeln!(
                f,
                "reproduce: reprise_testkit::crash::check_plans(&workflow, input, config, [CrashPlan::{plan:?}])"
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for CrashFailure {}

/// Runs the crash-and-replay property check of `workflow` with `input`: a baseline run,
/// then `config`'s number of crash cases drawn from [`strategy`], shrinking a failure to a
/// minimal plan. See the [module docs](self) for what is checked.
///
/// # Errors
/// The first failure (after shrinking), or a setup problem (invalid input, engine errors).
pub fn check<W: Step>(
    workflow: &W,
    input: W::Input,
    config: CheckConfig,
) -> Result<CheckReport, CrashFailure> {
    on_own_runtime(|| Checker::prepare(workflow, input, config)?.random())
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
    let plans: Vec<CrashPlan> = plans.into_iter().collect();
    on_own_runtime(|| Checker::prepare(workflow, input, config)?.plans(&plans))
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

/// Which execution a live call belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The baseline, or the execution that crashes.
    First,
    /// The execution on the new engine after the crash.
    Resumed,
}

/// One live action call.
#[derive(Clone, Debug)]
struct CallRecord {
    id: String,
    attempt: u32,
    phase: Phase,
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
    phase: Phase,
    dead: AtomicBool,
    died: Notify,
    appends: AtomicUsize,
    actions: AtomicUsize,
    /// Every event the store acknowledged (`create_run` and successful appends), in order.
    acked: Mutex<Vec<NewEvent>>,
    /// Appends handed to the store whose answer never came back (the process died while
    /// the store wrote them: SQLite's writer thread may still commit them), by number.
    in_flight: Mutex<BTreeMap<usize, Vec<NewEvent>>>,
    calls: Calls,
    /// SQLite: the database file, for a torn-write copy.
    db_path: Option<PathBuf>,
    /// The torn copy made at the crash instant, or why it could not be made.
    torn: Mutex<Option<Result<tempfile::TempDir, String>>>,
}

impl Probe {
    fn new(plan: Option<CrashPlan>, phase: Phase, calls: Calls, db_path: Option<PathBuf>) -> Self {
        Probe {
            plan,
            phase,
            dead: AtomicBool::new(false),
            died: Notify::new(),
            appends: AtomicUsize::new(0),
            actions: AtomicUsize::new(0),
            acked: Mutex::new(Vec::new()),
            in_flight: Mutex::new(BTreeMap::new()),
            calls,
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

    fn ack(&self, events: Vec<NewEvent>) {
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
        self.inner.create_run(record, created.clone()).await?;
        self.probe.ack(vec![created]);
        Ok(())
    }

    async fn append(&self, append: Append) -> Result<(), EngineError> {
        self.probe.alive().await;
        let k = self.probe.appends.fetch_add(1, Ordering::SeqCst);
        let events = append.events.clone();
        match self.probe.plan {
            Some(CrashPlan::BeforeAppend(n)) if n == k => self.probe.die().await,
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
                let call = {
                    let mut calls = lock(&probe.calls);
                    calls.push(CallRecord {
                        id: cx.correlation_id().to_owned(),
                        attempt: cx.attempt(),
                        phase: probe.phase,
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

/// Executes run `id` until it completes, fails, or waits on a hook without a configured
/// payload: durable sleeps and run-level retries move the virtual clock to their end.
async fn drive(
    engine: &Engine,
    id: &RunId,
    clock: &VirtualClock,
    hooks: &BTreeMap<String, Value>,
) -> Result<RunOutcome, String> {
    for _ in 0..MAX_EXECUTIONS {
        let execution = engine
            .execute(id)
            .await
            .map_err(|e| format!("executing the run failed: {e}"))?;
        let RunOutcome::Suspended(waits) = &execution.outcome else {
            return Ok(execution.outcome);
        };
        let hook = waits.iter().find_map(|wait| match wait {
            Wait::Hook { id: hook, .. } => hooks.get(hook).map(|payload| (hook, payload)),
            _ => None,
        });
        if let Some((hook, payload)) = hook {
            let token = engine.hook_token(id, hook);
            engine
                .resume_hook(&token, payload.clone())
                .await
                .map_err(|e| format!("delivering hook `{hook}` failed: {e}"))?;
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

/// A prepared check: a runtime and a baseline.
struct Checker {
    runtime: tokio::runtime::Runtime,
    workflow: String,
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
    fn prepare<W: Step>(
        workflow: &W,
        input: W::Input,
        config: CheckConfig,
    ) -> Result<Checker, CrashFailure> {
        let started = Instant::now();
        let setup = |problem: String| CrashFailure::setup(W::SLUG, config.store, problem);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| setup(format!("cannot start a Tokio runtime: {e}")))?;
        let baseline = runtime.block_on(Self::baseline(workflow, input, &config))?;
        Ok(Checker {
            runtime,
            workflow: W::SLUG.to_owned(),
            config,
            baseline,
            started,
        })
    }

    fn engine(
        &self,
        store: SharedStore,
        clock: &Arc<VirtualClock>,
        after_crash: bool,
    ) -> Result<Engine, String> {
        build_engine(&self.config, store, clock, after_crash)
    }

    async fn baseline<W: Step>(
        workflow: &W,
        input: W::Input,
        config: &CheckConfig,
    ) -> Result<Baseline, CrashFailure> {
        let fail = |problem: String| CrashFailure::setup(W::SLUG, config.store, problem);
        let (store, db) = fresh_store(config.store).map_err(fail)?;
        let clock = Arc::new(VirtualClock::new(config.start));
        let calls: Calls = Arc::default();
        let probe = Arc::new(Probe::new(None, Phase::First, calls.clone(), None));
        let wrapped: SharedStore = Arc::new(CrashStore {
            inner: store.clone(),
            probe: probe.clone(),
        });
        let engine = build_engine(config, wrapped, &clock, false).map_err(fail)?;
        instrument_actions(&engine, &probe, &config.stubs);
        let id = engine
            .start(workflow, input)
            .await
            .map_err(|e| fail(format!("cannot start `{}`: {e}", W::SLUG)))?;
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
        let outcome = tokio::time::timeout(timeout, drive(&engine, &id, &clock, &config.hooks))
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
            workflow: W::SLUG.to_owned(),
            store: config.store,
            plan: None,
            problems,
            log: render_log(&events, None),
            calls: render_calls(&calls),
        };
        let outcome = outcome.map_err(|problem| fail_with_log(vec![problem]))?;
        let mut problems = Vec::new();
        check_log(&events, &record, &outcome, &mut problems);
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
        let sqlite = self.config.store == StoreKind::Sqlite;
        CheckReport {
            workflow: self.workflow.clone(),
            store: self.config.store,
            cases,
            crashed,
            appends: self.baseline.appends,
            actions: self.baseline.actions,
            crash_points: CrashPlan::all(self.baseline.appends, self.baseline.actions, sqlite)
                .len(),
            covered,
            outcome: self.baseline.outcome.clone(),
            elapsed: self.started.elapsed(),
        }
    }

    /// Runs `config.cases` random plans through proptest, shrinking a failure.
    fn random(self) -> Result<CheckReport, CrashFailure> {
        let sqlite = self.config.store == StoreKind::Sqlite;
        let strategy = strategy(self.baseline.appends, self.baseline.actions, sqlite);
        let mut runner = TestRunner::new(ProptestConfig {
            cases: self.config.cases,
            failure_persistence: None,
            ..ProptestConfig::default()
        });
        let failures: RefCell<HashMap<CrashPlan, CrashFailure>> = RefCell::default();
        let covered: RefCell<BTreeSet<CrashPlan>> = RefCell::default();
        let counts = RefCell::new((0u32, 0u32));
        let result = runner.run(&strategy, |plan| {
            covered.borrow_mut().insert(plan);
            match self.runtime.block_on(self.case(plan)) {
                Ok(crashed) => {
                    let mut counts = counts.borrow_mut();
                    counts.0 += 1;
                    counts.1 += u32::from(crashed);
                    Ok(())
                }
                Err(failure) => {
                    let reason = failure.problems.join("; ");
                    failures.borrow_mut().insert(plan, failure);
                    Err(TestCaseError::fail(reason))
                }
            }
        });
        match result {
            Ok(()) => {
                let (cases, crashed) = *counts.borrow();
                Ok(self.report(cases, crashed, covered.borrow().len()))
            }
            Err(TestError::Fail(reason, plan)) => Err(failures
                .borrow_mut()
                .remove(&plan)
                .unwrap_or_else(|| CrashFailure {
                    plan: Some(plan),
                    ..CrashFailure::setup(&self.workflow, self.config.store, reason.to_string())
                })),
            Err(TestError::Abort(reason)) => Err(CrashFailure::setup(
                &self.workflow,
                self.config.store,
                format!("proptest aborted the check: {reason}"),
            )),
        }
    }

    /// Runs exactly `plans`.
    fn plans(self, plans: &[CrashPlan]) -> Result<CheckReport, CrashFailure> {
        let mut crashed = 0;
        for plan in plans {
            crashed += u32::from(self.runtime.block_on(self.case(*plan))?);
        }
        let covered = plans.iter().collect::<BTreeSet<_>>().len();
        Ok(self.report(plans.len() as u32, crashed, covered))
    }

    /// One crash case: run until the crash, resume on a new engine, check. Returns whether
    /// the crash point was reached.
    async fn case(&self, plan: CrashPlan) -> Result<bool, CrashFailure> {
        let fail = |problems: Vec<String>, events: &[Event], crash_at: Option<usize>| {
            let calls: Vec<CallRecord> = Vec::new();
            CrashFailure {
                workflow: self.workflow.clone(),
                store: self.config.store,
                plan: Some(plan),
                problems,
                log: render_log(events, crash_at.map(|at| (plan, at))),
                calls: render_calls(&calls),
            }
        };
        let id = self.baseline.created_record.id.clone();
        let timeout = self.config.case_timeout;
        let (store, db) = fresh_store(self.config.store).map_err(|p| fail(vec![p], &[], None))?;
        let clock = Arc::new(VirtualClock::new(self.config.start));
        let calls: Calls = Arc::default();
        let probe = Arc::new(Probe::new(
            Some(plan),
            Phase::First,
            calls.clone(),
            db.as_ref().map(crate::TempDb::path),
        ));
        let wrapped: SharedStore = Arc::new(CrashStore {
            inner: store.clone(),
            probe: probe.clone(),
        });
        let engine = self
            .engine(wrapped.clone(), &clock, false)
            .map_err(|p| fail(vec![p], &[], None))?;
        instrument_actions(&engine, &probe, &self.config.stubs);
        wrapped
            .create_run(
                self.baseline.created_record.clone(),
                self.baseline.created_event.clone(),
            )
            .await
            .map_err(|e| fail(vec![format!("cannot create the run: {e}")], &[], None))?;
        drop(wrapped);

        let first = tokio::select! {
            biased;
            () = probe.death() => None,
            outcome = tokio::time::timeout(timeout, drive(&engine, &id, &clock, &self.config.hooks)) => Some(
                outcome.unwrap_or_else(|_| Err(format!("the run neither finished nor crashed within {timeout:?}")))
            ),
        };
        // The process is dead (or done): its engine, store handle and every future it ran
        // are gone before anything reads the surviving data.
        drop(engine);

        let Some(first) = first else {
            return self
                .resume(plan, &id, store, db, &probe, &clock, &calls)
                .await;
        };
        // The crash point was never reached: the run ended on its own.
        let events = store.events(&id).await.unwrap_or_default();
        let outcome = first.map_err(|p| fail(vec![p], &events, None))?;
        let record = store
            .run(&id)
            .await
            .ok()
            .flatten()
            .ok_or_else(|| fail(vec!["the run vanished".to_owned()], &events, None))?;
        let mut problems = Vec::new();
        self.compare(&events, &record, &outcome, &mut problems);
        check_calls(&self.baseline.calls, &lock(&calls), None, &mut problems);
        if problems.is_empty() {
            Ok(false)
        } else {
            let mut failure = fail(problems, &events, None);
            failure.calls = render_calls(&lock(&calls));
            Err(failure)
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn resume(
        &self,
        plan: CrashPlan,
        id: &RunId,
        store: SharedStore,
        db: Option<crate::TempDb>,
        probe: &Probe,
        clock: &Arc<VirtualClock>,
        calls: &Calls,
    ) -> Result<bool, CrashFailure> {
        let acked = lock(&probe.acked).clone();
        let in_flight: Vec<Vec<NewEvent>> = lock(&probe.in_flight).values().cloned().collect();
        let mut problems = Vec::new();
        let failure = |problems: Vec<String>, events: &[Event], surviving: usize| CrashFailure {
            workflow: self.workflow.clone(),
            store: self.config.store,
            plan: Some(plan),
            problems,
            log: render_log(events, Some((plan, surviving))),
            calls: render_calls(&lock(calls)),
        };

        // What survived the crash.
        let torn = lock(&probe.torn).take();
        let (survivor, _torn_dir): (SharedStore, Option<tempfile::TempDir>) =
            match (self.config.store, db.as_ref()) {
                (StoreKind::Sqlite, Some(db)) => {
                    drop(store); // closes the dead process's connection
                    let (path, dir) = match torn {
                        Some(Ok(dir)) => (dir.path().join("reprise.db"), Some(dir)),
                        Some(Err(problem)) => {
                            return Err(failure(
                                vec![format!("cannot simulate the torn write: {problem}")],
                                &[],
                                0,
                            ));
                        }
                        None => (db.path(), None),
                    };
                    let reopened = SqliteStore::open(&path).map_err(|e| {
                        failure(
                            vec![format!("cannot reopen the database after the crash: {e}")],
                            &[],
                            0,
                        )
                    })?;
                    (Arc::new(reopened), dir)
                }
                _ => (store, None),
            };
        let surviving = survivor.events(id).await.map_err(|e| {
            failure(
                vec![format!("cannot read the log after the crash: {e}")],
                &[],
                0,
            )
        })?;
        check_durable(plan, &acked, &in_flight, &surviving, &mut problems);

        // A new process resumes the run.
        let probe = Arc::new(Probe::new(None, Phase::Resumed, calls.clone(), None));
        let wrapped: SharedStore = Arc::new(CrashStore {
            inner: survivor.clone(),
            probe: probe.clone(),
        });
        let engine = self
            .engine(wrapped, clock, true)
            .map_err(|p| failure(vec![p], &surviving, surviving.len()))?;
        instrument_actions(&engine, &probe, &self.config.stubs);
        let timeout = self.config.case_timeout;
        let outcome = tokio::time::timeout(timeout, drive(&engine, id, clock, &self.config.hooks))
            .await
            .unwrap_or_else(|_| Err(format!("the resumed run did not finish within {timeout:?}")));
        drop(engine);
        let events = survivor.events(id).await.unwrap_or_default();
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(problem) => {
                problems.push(format!("after the resume: {problem}"));
                return Err(failure(problems, &events, surviving.len()));
            }
        };
        let Some(record) = survivor.run(id).await.ok().flatten() else {
            problems.push("the run vanished from the store".to_owned());
            return Err(failure(problems, &events, surviving.len()));
        };

        // Nothing the crash left may be rewritten.
        let prefix = surviving.len().min(events.len());
        if events.len() < surviving.len() || !same_events(&surviving, &events[..prefix]) {
            problems.push(format!(
                "the resume changed the {} events that survived the crash",
                surviving.len()
            ));
        }
        self.compare(&events, &record, &outcome, &mut problems);
        let recorded = finished_steps(&surviving).into_keys().collect();
        check_calls(
            &self.baseline.calls,
            &lock(calls),
            Some(&recorded),
            &mut problems,
        );
        drop(db);
        if problems.is_empty() {
            Ok(true)
        } else {
            Err(failure(problems, &events, surviving.len()))
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
    let mut builder = Engine::builder()
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
                .and_then(|e| e.event.payload.get("output"));
            if logged.is_none() || logged != record.output.as_ref() {
                problems.push(format!(
                    "(d) the record is completed with output {} but the log's run_completed holds {}",
                    record.output.as_ref().map_or("none".to_owned(), |o| compact(o, 200)),
                    logged.map_or("nothing".to_owned(), |o| compact(o, 200))
                ));
            }
        }
        RunStatus::Failed => {
            let logged = ends
                .last()
                .filter(|e| e.event.kind == EventKind::RunFailed)
                .and_then(|e| e.event.payload.get("error"));
            if logged.is_none() || logged != record.error.as_ref() {
                problems.push(format!(
                    "(d) the record is failed with error {} but the log's run_failed holds {}",
                    record
                        .error
                        .as_ref()
                        .map_or("none".to_owned(), |o| compact(o, 200)),
                    logged.map_or("nothing".to_owned(), |o| compact(o, 200))
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
        RunOutcome::Suspended(_) => !record.status.is_terminal(),
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

/// (b): live calls per step against the baseline. `recorded` holds the steps whose outcome
/// survived the crash (`None`: no crash happened).
fn check_calls(
    baseline: &BTreeMap<String, usize>,
    calls: &[CallRecord],
    recorded: Option<&BTreeSet<String>>,
    problems: &mut Vec<String>,
) {
    let mut first: BTreeMap<&str, usize> = BTreeMap::new();
    let mut resumed: BTreeMap<&str, usize> = BTreeMap::new();
    for call in calls {
        let counts = match call.phase {
            Phase::First => &mut first,
            Phase::Resumed => &mut resumed,
        };
        *counts.entry(call.id.as_str()).or_default() += 1;
    }
    let ids: BTreeSet<&str> = baseline
        .keys()
        .map(String::as_str)
        .chain(first.keys().copied())
        .chain(resumed.keys().copied())
        .collect();
    for id in ids {
        let expected = baseline.get(id).copied().unwrap_or(0);
        let before = first.get(id).copied().unwrap_or(0);
        let after = resumed.get(id).copied().unwrap_or(0);
        if expected == 0 {
            problems.push(format!(
                "(b) action step `{id}` ran {} time(s) but never in the uncrashed run",
                before + after
            ));
            continue;
        }
        match recorded {
            None if before != expected => problems.push(format!(
                "(b) step `{id}` ran {before} time(s); {expected} in the uncrashed run"
            )),
            None => {}
            Some(recorded) if recorded.contains(id) => {
                if after > 0 {
                    problems.push(format!(
                        "(b) step `{id}` was recorded before the crash but ran {after} more time(s) after the resume: its effect was applied again"
                    ));
                }
                if before != expected {
                    problems.push(format!(
                        "(b) step `{id}` ran {before} time(s) before the crash; {expected} in the uncrashed run"
                    ));
                }
            }
            Some(_) => {
                if after != expected {
                    problems.push(format!(
                        "(b) step `{id}` was not recorded before the crash and ran {after} time(s) after the resume; {expected} in the uncrashed run"
                    ));
                }
                if before > expected {
                    problems.push(format!(
                        "(b) step `{id}` ran {before} time(s) before the crash; {expected} in the uncrashed run"
                    ));
                }
            }
        }
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

/// One event a line; when `crash` is given, a marker after the events that survived it.
fn render_log(events: &[Event], crash: Option<(CrashPlan, usize)>) -> String {
    let mut out = String::new();
    for (index, event) in events.iter().enumerate() {
        if let Some((plan, surviving)) = crash
            && index == surviving
        {
            let _ = writeln!(
                out,
                "  ---- crash: {plan:?}; the {surviving} events above survived it, the ones below were written after the resume ----"
            );
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
    if let Some((plan, surviving)) = crash
        && surviving >= events.len()
    {
        let _ = writeln!(
            out,
            "  ---- crash: {plan:?}; all {surviving} events above survived it ----"
        );
    }
    out
}

fn render_calls(calls: &[CallRecord]) -> String {
    let mut by_id: BTreeMap<&str, Vec<&CallRecord>> = BTreeMap::new();
    for call in calls {
        by_id.entry(&call.id).or_default().push(call);
    }
    let mut out = String::new();
    for (id, calls) in by_id {
        let list: Vec<String> = calls
            .iter()
            .map(|c| {
                let phase = match c.phase {
                    Phase::First => "before the crash",
                    Phase::Resumed => "after the resume",
                };
                let ok = match c.ok {
                    Some(true) => "ok",
                    Some(false) => "error",
                    None => "interrupted",
                };
                format!("attempt {} {phase} ({ok})", c.attempt)
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

    #[test]
    fn every_crash_point_is_listed_once() {
        let plans = CrashPlan::all(3, 2, true);
        assert_eq!(plans.len(), 3 + 3 + 2 + 3);
        assert_eq!(plans.iter().collect::<BTreeSet<_>>().len(), plans.len());
        assert_eq!(CrashPlan::all(3, 0, false).len(), 6);
    }
}
