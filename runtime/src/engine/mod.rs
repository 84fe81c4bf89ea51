//! The [`Engine`]: owns the store and the registry, starts runs, executes them with replay.

mod children;
mod control;
mod events;
mod execute;
mod export;
mod failure;
mod fingerprint;
mod fork_run;
mod hot;
mod idempotent;
mod keys;
mod lease;
mod pause;
mod queues;
mod replay_check;
mod report;
mod retention;
mod retry_run;
mod signals;
mod start;
mod state;
mod unexecutable;
mod usage_report;

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

pub use crate::clock::{Clock, SystemClock};
pub use crate::delivery::SignalTarget;
pub(crate) use crate::delivery::deliver;
pub(crate) use crate::run_env::RunControl;
pub use crate::run_env::{ActionOverride, Fault, RunTransition};
pub use children::{ChildLink, DEFAULT_MAX_HISTORY_EVENTS, RunLinks, run_links_of};
pub use control::{CancelOutcome, OpenHook};
pub use events::{Emitted, MAX_EVENT_NAME_LEN, RejectedStart, started_by_event};
pub(crate) use execute::AfterError;
pub use execute::{Execution, RunOutcome};
pub use export::{RUN_EXPORT_FORMAT, RunExport};
pub use failure::FailedRun;
pub use fork_run::{ForkOptions, ForkedRun, forked_from, identity_of};
pub(crate) use idempotent::check_idempotency_key;
pub use keys::key_of;
pub use pause::{PauseOutcome, UnpausedRun};
pub use queues::{QueueState, QueueWait};
pub use replay_check::{ReplayMismatch, judge_replay};
pub use report::{StepStatus, StepSummary, summarize_steps, token_usage};
pub(crate) use retention::{DEFAULT_BATCH, parse_before};
pub use retention::{PurgeReport, run_retention};
pub use retry_run::RetriedRun;
pub use start::StartOptions;
use start::default_actor;
pub(crate) use start::{delay_from, parse_delay, parse_start_at};
pub(crate) use unexecutable::is_unexecutable;
pub use usage_report::{
    ModelRequest, UsageQuery, UsageReport, UsageRow, model_requests, total_cost,
};

use crate::error::EngineError;
use crate::event::{EventPayload, NewEvent, RunFilter, RunId, RunRecord, RunStatus, Trigger};
use crate::registry::{Registry, WorkflowEntry};
use crate::resources::Resources;
use crate::run_env::{RunEnv, RunEnvParts};
use crate::step::Step;
use crate::store::{MemoryStore, SharedStore};

struct Inner {
    /// What runs see of the engine.
    env: Arc<RunEnv>,
    registry: Registry,
    run_retry_backoff: Duration,
    /// The backoff and strike limit of runs this binary cannot execute.
    unexecutable: crate::RetryPolicy,
    /// Parts that modules above the engine attach to it (the triggers), by type.
    extensions: crate::run_env::Services,
    /// Step-site fingerprints of the workflows, by slug.
    fingerprints: fingerprint::Fingerprints,
    owner_id: String,
    lease: Duration,
    /// Suspended runs kept in memory (see [`EngineBuilder::hot_runs`]).
    hot: hot::HotRuns,
    /// Runs this engine is executing right now, with their cancel/drain switches.
    controls: std::sync::Mutex<HashMap<RunId, RunControl>>,
    /// The project of runs whose start names none (see [`EngineBuilder::project`]).
    default_project: Option<String>,
}

/// The durable execution engine. Cheap to clone (an `Arc`).
///
/// ```no_run
/// # async fn demo() -> Result<(), reprise::EngineError> {
/// use reprise::Engine;
/// let engine = Engine::builder().sqlite(".reprise/reprise.db")?.discover()?.build()?;
/// let run = engine.start_json("file-digest", serde_json::json!({"dir": "."}), reprise::Trigger::Code).await?;
/// let execution = engine.drive(&run).await?;
/// println!("{:?}", execution.outcome);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

/// Builds an [`Engine`]: pick a store, register workflows, add resources.
pub struct EngineBuilder {
    store: Option<SharedStore>,
    registry: Registry,
    /// Directories of workflow files, loaded at `build` (see [`EngineBuilder::workflow_dir`]).
    workflow_dirs: Vec<std::path::PathBuf>,
    /// The first configuration error; [`EngineBuilder::build`] returns it.
    pub(crate) error: Option<EngineError>,
    resources: Resources,
    clock: Arc<dyn Clock>,
    hook_secret: Option<Vec<u8>>,
    public_url: String,
    run_retry_backoff: Duration,
    unexecutable: crate::RetryPolicy,
    replay_only: bool,
    fault: Fault,
    /// Parts that modules above the engine attach while building (the triggers), by type.
    extensions: BuilderParts,
    /// Checks those modules run against the registry when the engine is built, by part.
    build_checks: HashMap<TypeId, BuildCheck>,
    llm: crate::llm::LlmRouter,
    default_model: Option<String>,
    owner_id: Option<String>,
    lease: Duration,
    hot_capacity: usize,
    hot_max_sleep: Duration,
    /// Whether `build` may configure the `openai` provider from `OPENAI_*` variables.
    llm_from_env: bool,
    /// The host name in the default owner id.
    host: String,
    prices: crate::cost::PriceTable,
    /// The queues configured (see [`EngineBuilder::queue`]).
    queues: Vec<crate::queue::Queue>,
    /// The project of runs whose start names none (see [`EngineBuilder::project`]).
    default_project: Option<String>,
    /// The credential store configured with [`EngineBuilder::credentials`].
    credentials: Option<Arc<dyn crate::credentials::CredentialStore>>,
    /// The key of the store-backed credentials (see [`EngineBuilder::secrets_key`]).
    secrets_key: Option<crate::credentials::SecretsKey>,
    /// Whether `build` falls back to credentials in environment variables.
    credentials_from_env: bool,
}

/// A check of an engine part against the registry, run by [`EngineBuilder::build`].
pub(crate) type BuildCheck = fn(&Registry, &BuilderParts) -> Result<(), EngineError>;

/// The parts attached to an [`EngineBuilder`] by type (see [`EngineBuilder::extension_mut`]).
pub(crate) type BuilderParts = HashMap<TypeId, Box<dyn Any + Send + Sync>>;

/// The public URL resume URLs are built from unless configured.
const DEFAULT_PUBLIC_URL: &str = "http://127.0.0.1:8080";

/// The shortest hook secret accepted, in bytes ([`EngineBuilder::hook_secret`],
/// `REPRISE_HOOK_SECRET`): 256 bits, the size of the HMAC-SHA256 key the tokens use.
pub const MIN_HOOK_SECRET_LEN: usize = 32;

impl EngineBuilder {
    /// The part of type `T` (created with its default on first use) that a module above
    /// the engine attaches to it, so the engine does not depend on that module; `check`
    /// runs against the registry when the engine is built.
    pub(crate) fn extension_mut<T: Any + Send + Sync + Default>(
        &mut self,
        check: BuildCheck,
    ) -> &mut T {
        self.build_checks.insert(TypeId::of::<T>(), check);
        let part = self
            .extensions
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Box::new(T::default()));
        match part.downcast_mut::<T>() {
            Some(part) => part,
            None => unreachable!("the part under T's TypeId is a T"),
        }
    }

    /// [`Engine::builder`] configured from the process environment:
    /// - `REPRISE_PUBLIC_URL`: the base of hook resume URLs (default `http://127.0.0.1:8080`);
    /// - `REPRISE_LLM_MODEL`: the model of LLM steps and agents that name none;
    /// - `OPENAI_BASE_URL` / `OPENAI_API_KEY`: unless a provider is registered, the
    ///   OpenAI-compatible provider [`crate::llm::OpenAiProvider::from_env`] serves vendor
    ///   `openai` and is the default;
    /// - `HOSTNAME`: the host part of the default owner id;
    /// - `REPRISE_SECRETS_KEY` (32 bytes, base64): credentials are kept encrypted in the
    ///   store ([`crate::credentials::StoredCredentials`]), looked up there first and then
    ///   in `REPRISE_CREDENTIAL_*` variables ([`crate::credentials::EnvCredentials`]);
    ///   without it, in those variables only (a key that is not 32 bytes of base64 makes
    ///   [`EngineBuilder::build`] fail, naming the variable);
    /// - `REPRISE_RETENTION` / `REPRISE_RETENTION_SWEEP_EVERY` (humantime, e.g. `30d` /
    ///   `1m`): [`EngineBuilder::retention`] and [`EngineBuilder::retention_sweep_every`]
    ///   (a value that is not a duration makes [`EngineBuilder::build`] fail, naming it);
    /// - `REPRISE_PRICES`: a JSON price table file ([`crate::cost::PriceTable::from_json_file`])
    ///   merged over the built-in prices (an unreadable or invalid file makes
    ///   [`EngineBuilder::build`] fail, naming it);
    /// - `REPRISE_WORKFLOWS_DIR`: a directory of workflow files (several separated by `:`,
    ///   `;` on Windows), as [`EngineBuilder::workflow_dir`] (a file that does not load
    ///   makes [`EngineBuilder::build`] fail, naming file:line:col). There is no default
    ///   directory: a `./workflows` directory is not loaded unless named here or with
    ///   `--workflows-dir`.
    ///
    /// Methods called afterwards override what the environment set. The CLI
    /// ([`crate::cli`]) builds its engine with this; tests should not.
    pub fn from_env() -> EngineBuilder {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let mut builder = Engine::builder();
        if let Some(url) = var("REPRISE_PUBLIC_URL") {
            builder.public_url = url;
        }
        builder.default_model = var("REPRISE_LLM_MODEL");
        if let Some(project) = var("REPRISE_PROJECT") {
            builder = builder.project(project);
        }
        builder.llm_from_env = true;
        builder.credentials_from_env = true;
        match crate::credentials::SecretsKey::from_env() {
            Ok(key) => builder.secrets_key = key,
            Err(error) => {
                builder
                    .error
                    .get_or_insert(EngineError::Config(error.to_string()));
            }
        }
        if let Some(host) = var("HOSTNAME") {
            builder.host = host;
        }
        if let Some(dirs) = std::env::var_os("REPRISE_WORKFLOWS_DIR") {
            for dir in std::env::split_paths(&dirs) {
                if !dir.as_os_str().is_empty() {
                    builder.workflow_dirs.push(dir);
                }
            }
        }
        if let Some(path) = var("REPRISE_PRICES") {
            match crate::cost::PriceTable::from_json_file(&path) {
                Ok(table) => builder.prices = crate::cost::PriceTable::builtin().merged(table),
                Err(error) => {
                    builder
                        .error
                        .get_or_insert(EngineError::Config(format!("REPRISE_PRICES: {error}")));
                }
            }
        }
        retention::from_env(builder)
    }

    /// Serves `vendor/…` model ids (`openai/gpt-4o-mini`) with `provider` in LLM steps and
    /// agents.
    pub fn llm_provider(
        mut self,
        vendor: impl Into<String>,
        provider: Arc<dyn crate::llm::LlmProvider>,
    ) -> Self {
        self.llm.add(vendor, provider);
        self
    }

    /// Serves every model id no vendor claims with `provider` (a fake in tests, a local
    /// server). Without any provider, a builder made by [`EngineBuilder::from_env`] uses
    /// [`crate::llm::OpenAiProvider::from_env`] (`OPENAI_BASE_URL`, `OPENAI_API_KEY`) for
    /// vendor `openai` and as the default; [`Engine::builder`] uses none (LLM steps then
    /// fail with an error saying how to register one).
    pub fn llm(mut self, provider: Arc<dyn crate::llm::LlmProvider>) -> Self {
        self.llm.set_default(provider);
        self
    }

    /// The model of LLM steps and agents that name none (default: none; with
    /// [`EngineBuilder::from_env`], `REPRISE_LLM_MODEL`).
    pub fn default_model(mut self, model: impl Into<String>) -> Self {
        self.default_model = Some(model.into());
        self
    }

    /// The id this engine's leases are held under (default: `<host>-<pid>-<random>`, unique
    /// per process). A process restarting with the same id takes back its own leases at
    /// once instead of waiting for them to expire; two live processes must never share one.
    pub fn owner_id(mut self, id: impl Into<String>) -> Self {
        self.owner_id = Some(id.into());
        self
    }

    /// How long a lease on a run lasts unless renewed (default 15 s). The holder renews
    /// it every third of that; a worker that dies stops renewing, and its runs are claimed
    /// by other workers once the lease expires. Shorter leases fail over faster and cost
    /// more renewals.
    ///
    /// A duration outside [`EngineBuilder::MIN_LEASE`]..=[`EngineBuilder::MAX_LEASE`] is
    /// not clamped: [`EngineBuilder::build`] then fails with [`EngineError::Config`]
    /// naming it.
    pub fn lease(mut self, duration: Duration) -> Self {
        match Self::check_lease(duration) {
            Ok(()) => self.lease = duration,
            Err(message) => {
                self.error
                    .get_or_insert(EngineError::Config(format!("invalid lease: {message}")));
            }
        }
        self
    }

    /// The shortest lease [`EngineBuilder::lease`] accepts: 500 ms. Renewals (every third
    /// of the lease) are store writes that must land before the lease runs out, also when
    /// the store is slow for a moment.
    pub const MIN_LEASE: Duration = Duration::from_millis(500);

    /// The longest lease [`EngineBuilder::lease`] accepts: 24 hours. A dead worker's runs
    /// wait this long before another worker takes them over.
    pub const MAX_LEASE: Duration = Duration::from_secs(24 * 60 * 60);

    /// `Ok` when `lease` is within [`EngineBuilder::MIN_LEASE`] and
    /// [`EngineBuilder::MAX_LEASE`]; else why not, for people (`--lease` shows it).
    ///
    /// # Errors
    /// The message when it is out of range.
    pub fn check_lease(lease: Duration) -> Result<(), String> {
        let shown = humantime::format_duration(lease);
        if lease < Self::MIN_LEASE {
            return Err(format!(
                "a lease of {shown} is too short: it is renewed every third of its length \
                 and must outlast a slow store write; use at least 500ms (default 15s)"
            ));
        }
        if lease > Self::MAX_LEASE {
            return Err(format!(
                "a lease of {shown} is too long: a dead worker's runs would wait that long \
                 before another worker takes them over; use at most 24h (default 15s)"
            ));
        }
        Ok(())
    }

    /// Sizes the hot-run cache: up to `capacity` runs suspended in a sleep of at most
    /// `max_sleep` keep their body in memory, and continue in place when the sleep ends
    /// instead of replaying their log from the top. Default: 1,024 runs, sleeps up to 60 s.
    /// `capacity` 0 turns the cache off.
    ///
    /// The cache only saves work: a run enters it after its suspension is recorded, and an
    /// entry is used only if the log is still exactly where the body left it. A run evicted
    /// (the cache is full, the sleep is longer, the process restarted, another worker took
    /// the run) replays from its log as usual, writing the same events. Longer sleeps, hook
    /// waits and run-level retries always replay, so a run waiting for long holds no memory.
    ///
    /// Each entry holds the run's body future and its history index, so its size grows with
    /// the run's recorded history. An entry leaves when its run wakes or is canceled, when
    /// it is evicted, or by [`Engine::clear_hot_runs`]; an engine dropped while it
    /// holds entries keeps them alive (they own an engine handle) until they are cleared, so
    /// call it before dropping an engine in a long-lived process that builds many engines.
    pub fn hot_runs(mut self, capacity: usize, max_sleep: Duration) -> Self {
        self.hot_capacity = capacity;
        self.hot_max_sleep = max_sleep;
        self
    }

    /// Makes the engine replay only: a step, sleep, hook or recorded value the log does not
    /// hold fails the run with a non-determinism error instead of running live. Used to
    /// check recorded histories against new code (`workflows check`).
    pub fn replay_only(mut self, replay_only: bool) -> Self {
        self.replay_only = replay_only;
        self
    }

    /// Injects a deliberate fault (tests of checkers only).
    #[doc(hidden)]
    pub fn fault(mut self, fault: Fault) -> Self {
        self.fault = fault;
        self
    }

    /// Uses `store`.
    pub fn store(mut self, store: SharedStore) -> Self {
        self.store = Some(store);
        self
    }

    /// Uses a SQLite file at `path` (created with its directory on first use).
    ///
    /// # Errors
    /// When the database cannot be opened or migrated.
    #[cfg(feature = "sqlite")]
    pub fn sqlite(self, path: impl AsRef<std::path::Path>) -> Result<Self, EngineError> {
        let store = crate::store::SqliteStore::open(path)?;
        Ok(self.store(Arc::new(store)))
    }

    /// Registers every `#[action]` and `#[workflow]` linked into the binary.
    ///
    /// # Errors
    /// When two steps share a slug.
    pub fn discover(mut self) -> Result<Self, EngineError> {
        for registration in inventory::iter::<crate::registry::Registration> {
            self.registry.add(*registration)?;
        }
        Ok(self)
    }

    /// Loads the workflow files (`*.md` with YAML front matter, `*.yaml`, `*.yml`) in `dir`
    /// and its subdirectories when the engine is built, after the code steps, and registers
    /// each as a workflow (see [`crate::files`]). May be called more than once (a
    /// directory given twice is loaded once). The files' `triggers` are added as the
    /// engine's: `cron` ones as cron schedules named `<slug>-cron-<n>` (or their `name`),
    /// `event` ones as the workflow's `on_event`; `webhook`/`poll` ones must name a source
    /// declared on this builder ([`EngineBuilder::webhook`], [`EngineBuilder::poll`]) whose
    /// workflow is the file's slug.
    ///
    /// [`EngineBuilder::build`] fails with [`EngineError::Config`] listing every problem
    /// (file:line:col) when a file does not parse or check, or a slug is taken.
    pub fn workflow_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        let dir = dir.into();
        // The same directory named twice (`workflows`, `./workflows`) is loaded once.
        let same = |a: &std::path::Path, b: &std::path::Path| {
            a == b
                || matches!(
                    (std::fs::canonicalize(a), std::fs::canonicalize(b)),
                    (Ok(a), Ok(b)) if a == b
                )
        };
        if !self.workflow_dirs.iter().any(|known| same(known, &dir)) {
            self.workflow_dirs.push(dir);
        }
        self
    }

    /// Forgets the workflow directories given so far (`workflows check --files` checks its
    /// directory on its own, against the code workflows only).
    pub(crate) fn without_workflow_dirs(mut self) -> Self {
        self.workflow_dirs.clear();
        self
    }

    /// Registers one action or workflow (when not using [`EngineBuilder::discover`]).
    pub fn register<S: Step>(mut self, _step: S) -> Self {
        if let Err(error) = self.registry.register::<S>() {
            self.error.get_or_insert(error);
        }
        self
    }

    /// Adds a shared resource (an HTTP client, a base URL, a pool) that actions read with
    /// `cx.resource::<T>()`. One value per type; a later call replaces an earlier one.
    pub fn resource<T: Any + Send + Sync>(mut self, value: T) -> Self {
        self.resources.insert(Arc::new(value));
        self
    }

    /// Adds a resource that the caller keeps a handle to (a counter a test inspects, a pool
    /// shared with other code). Actions read it with `cx.resource::<T>()`.
    pub fn shared_resource<T: Any + Send + Sync>(mut self, value: Arc<T>) -> Self {
        self.resources.insert(value);
        self
    }

    /// Uses `clock` for every timestamp and wake-up time.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The secret hook tokens are derived from: at least [`MIN_HOOK_SECRET_LEN`] (32)
    /// bytes, else [`EngineBuilder::build`] fails. Runs waiting on hooks must be resumed by
    /// an engine with the same secret. Default: 32 random bytes per engine.
    pub fn hook_secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.hook_secret = Some(secret.into());
        self
    }

    /// The base URL hook resume URLs are built on. Default `http://127.0.0.1:8080`.
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = url.into();
        self
    }

    /// The prices of model tokens the engine reports costs with (UI, `GET /usage`, `runs
    /// usage`, metrics). Default: [`crate::cost::PriceTable::builtin`]; to add to it rather
    /// than replace it, pass `PriceTable::builtin().merged(yours)`.
    pub fn prices(mut self, prices: crate::cost::PriceTable) -> Self {
        self.prices = prices;
        self
    }

    /// The project of runs whose start names none ([`StartOptions::project`]): credentials
    /// are looked up in `project:<project>` after the run's user and before the
    /// organisation. Also read from `REPRISE_PROJECT` by [`EngineBuilder::from_env`].
    ///
    /// # Errors
    /// [`EngineBuilder::build`] fails with [`EngineError::Config`] when `project` is not 1
    /// to 128 bytes of ASCII letters, digits, `-`, `_`, `.` and `@`.
    pub fn project(mut self, project: impl Into<String>) -> Self {
        let project = project.into();
        if let Err(message) = crate::identity::Scope::parse(&format!("project:{project}")) {
            self.error.get_or_insert(EngineError::Config(format!(
                "EngineBuilder::project: {message}"
            )));
        }
        self.default_project = Some(project);
        self
    }

    /// Where actions' credentials come from ([`crate::ActionCtx::credential`]) and where
    /// the `credentials` CLI and API write them: any [`crate::credentials::CredentialStore`]
    /// (several as one with [`crate::credentials::LayeredCredentials`]). It replaces what
    /// [`EngineBuilder::secrets_key`] and [`EngineBuilder::from_env`] would configure.
    ///
    /// Without it: with a secrets key, [`crate::credentials::StoredCredentials`] in the
    /// engine's store (encrypted), layered over
    /// [`crate::credentials::EnvCredentials`] when the builder came from
    /// [`EngineBuilder::from_env`] (a credential set in the store wins over the same
    /// variable); from the environment without a key, `EnvCredentials` alone (read-only);
    /// otherwise ([`Engine::builder`] is hermetic) none: every look-up misses and writes
    /// fail saying how to configure a store.
    pub fn credentials(mut self, store: impl crate::credentials::CredentialStore) -> Self {
        self.credentials = Some(Arc::new(store));
        self
    }

    /// The key credentials are encrypted with in the engine's store
    /// ([`crate::credentials::StoredCredentials`]); [`EngineBuilder::from_env`] reads it
    /// from `REPRISE_SECRETS_KEY` (32 bytes, base64). Ignored when
    /// [`EngineBuilder::credentials`] is called.
    pub fn secrets_key(mut self, key: crate::credentials::SecretsKey) -> Self {
        self.secrets_key = Some(key);
        self
    }

    /// Configures a flow-control queue (DESIGN "Flow control", [`crate::queue`]): its
    /// concurrency, per-key concurrency, rate limit and debounce. Runs go through it when
    /// their workflow names it (`#[workflow(queue = "llm")]`) or their start does
    /// ([`StartOptions::queue`]). A queue a workflow names but no `queue` call configures
    /// exists with no limits.
    ///
    /// Every process that runs workers over one store should configure the same queues:
    /// each worker admits runs by the settings it knows.
    ///
    /// # Errors
    /// [`EngineBuilder::build`] fails with [`EngineError::Config`] naming the queue and
    /// the setting when a setting is invalid ([`crate::queue::Queue::check`]) or the queue
    /// is configured twice.
    pub fn queue(mut self, queue: crate::queue::Queue) -> Self {
        self.queues.push(queue);
        self
    }

    /// Configures the queues in `json`, a JSON array of [`crate::queue::Queue`] (settings
    /// kept as data: a file, an environment variable), as [`EngineBuilder::queue`] does.
    ///
    /// ```
    /// let builder = reprise::Engine::builder().queues_json(
    ///     r#"[{"name": "llm", "concurrency": 4, "rate_limit": {"limit": 60, "period": "1m"}}]"#,
    /// );
    /// assert!(builder.build().is_ok());
    /// ```
    ///
    /// # Errors
    /// [`EngineBuilder::build`] fails with [`EngineError::Config`] saying where the JSON is
    /// wrong (line, column, the unknown field or bad duration).
    pub fn queues_json(mut self, json: &str) -> Self {
        match serde_json::from_str::<Vec<crate::queue::Queue>>(json) {
            Ok(queues) => self.queues.extend(queues),
            Err(e) => {
                self.error.get_or_insert(EngineError::Config(format!(
                    "the queue settings are not valid JSON for a list of queues: {e}; write \
                     e.g. `[{{\"name\": \"llm\", \"concurrency\": 4}}]`"
                )));
            }
        }
        self
    }

    /// The delay before the second attempt of a failed run; doubles per attempt, capped
    /// at 10 minutes. Default 1 s.
    pub fn run_retry_backoff(mut self, delay: Duration) -> Self {
        self.run_retry_backoff = delay;
        self
    }

    /// How runs this binary cannot execute are backed off and when they are given up
    /// (DESIGN "Reliability and security"). A run is unexecutable when its workflow is not
    /// registered here (removed or renamed by a deploy, or a run of another application on
    /// the same database) or when its stored record or log does not decode.
    ///
    /// Each execution that finds a run unexecutable is a *strike*: strike `n` appends a
    /// `run_deferred` event (reason, strike number, next attempt time) under the run's lease
    /// and puts the run off by `policy.delay(n)` (a `queued` run's `wake_at`), so no worker,
    /// in any process, claims it before then; at strike `policy.max_attempts` the run is
    /// *parked*: `failed` with error kind `unexecutable` and the reason. A warning is logged
    /// at the first strike and when the run is parked, never per claim. A run that executes
    /// again (a newer worker that has the workflow) starts its count afresh.
    ///
    /// Default: 1 s before the second attempt, doubling, capped at 5 minutes, 10 strikes:
    /// deferred 1 + 2 + … + 256 s, so parked about 8½ minutes after the first strike,
    /// enough for a rolling deploy to bring up workers that have the workflow. Two
    /// applications with different workflows must not share one database (or Postgres
    /// schema): each would park the other's runs after these strikes.
    pub fn unexecutable_policy(mut self, policy: crate::RetryPolicy) -> Self {
        self.unexecutable = policy;
        self
    }

    /// The engine.
    ///
    /// # Errors
    /// The first registration error, if any.
    pub fn build(mut self) -> Result<Engine, EngineError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        for dir in std::mem::take(&mut self.workflow_dirs) {
            let files = crate::files::load_dir(&dir, &self.registry)?;
            crate::trigger::add_file_triggers(&mut self, &files)?;
            crate::files::register_files(&mut self.registry, files)?;
        }
        for check in self.build_checks.values() {
            check(&self.registry, &self.extensions)?;
        }
        let mut llm = self.llm;
        if llm.is_empty()
            && self.llm_from_env
            && let Some(provider) = crate::llm::OpenAiProvider::from_env()
        {
            let provider: Arc<dyn crate::llm::LlmProvider> = Arc::new(provider);
            llm.add("openai", provider.clone());
            llm.set_default(provider);
        }
        if let Some(secret) = &self.hook_secret
            && secret.len() < MIN_HOOK_SECRET_LEN
        {
            return Err(EngineError::Config(format!(
                "the hook secret is {} bytes; it must be at least {MIN_HOOK_SECRET_LEN} (anyone \
                 who can guess it can forge hook tokens): make one with \
                 `openssl rand -base64 32`",
                secret.len()
            )));
        }
        let hook_secret = self
            .hook_secret
            .unwrap_or_else(|| rand::random::<[u8; 32]>().to_vec());
        let owner_id = self.owner_id.unwrap_or_else(|| {
            let random = &uuid::Uuid::new_v4().simple().to_string()[..8];
            format!("{}-{}-{random}", self.host, std::process::id())
        });
        let mut services = crate::run_env::Services::new();
        services.insert(
            TypeId::of::<crate::llm::LlmSettings>(),
            Arc::new(crate::llm::LlmSettings {
                router: llm,
                default_model: self.default_model,
            }),
        );
        // Steps called by slug (workflow files, agents' tools) find their callee here.
        services.insert(TypeId::of::<Registry>(), Arc::new(self.registry.clone()));
        services.insert(
            TypeId::of::<crate::delivery::Mailboxes>(),
            Arc::new(crate::delivery::Mailboxes::of(&self.registry)),
        );
        let queues = crate::queue::QueueSettings::new(
            self.queues,
            self.registry
                .workflows()
                .filter_map(|w| Some((w.registration.slug, w.options.queue?))),
        )
        .map_err(EngineError::Config)?;
        services.insert(
            TypeId::of::<crate::queue::QueueSettings>(),
            Arc::new(queues),
        );
        services.insert(
            TypeId::of::<crate::payload::PayloadLimits>(),
            Arc::new(crate::payload::limits_of(&self.extensions)),
        );
        let store: SharedStore = self.store.unwrap_or_else(|| Arc::new(MemoryStore::new()));
        let credentials = credential_store(
            self.credentials,
            self.secrets_key,
            self.credentials_from_env,
            &store,
        );
        services.insert(
            TypeId::of::<crate::credentials::CredentialSettings>(),
            Arc::new(crate::credentials::CredentialSettings { store: credentials }),
        );
        let env = RunEnv::new(RunEnvParts {
            store,
            clock: self.clock,
            replay_only: self.replay_only,
            fault: self.fault,
            resources: Arc::new(self.resources),
            services,
            hook_secret,
            public_url: self.public_url,
            prices: self.prices,
        });
        Ok(Engine {
            inner: Arc::new(Inner {
                env: Arc::new(env),
                registry: self.registry,
                run_retry_backoff: self.run_retry_backoff,
                unexecutable: self.unexecutable,
                extensions: self
                    .extensions
                    .into_iter()
                    .map(|(type_id, part)| (type_id, Arc::from(part)))
                    .collect(),
                fingerprints: fingerprint::Fingerprints::default(),
                owner_id,
                lease: self.lease,
                hot: hot::HotRuns::new(
                    if self.replay_only {
                        0
                    } else {
                        self.hot_capacity
                    },
                    self.hot_max_sleep,
                ),
                controls: std::sync::Mutex::new(HashMap::new()),
                default_project: self.default_project,
            }),
        })
    }
}

/// The credential store an engine uses (see [`EngineBuilder::credentials`]): the one
/// configured; else the encrypted store-backed one over the environment's (each when
/// configured); else none.
fn credential_store(
    configured: Option<Arc<dyn crate::credentials::CredentialStore>>,
    key: Option<crate::credentials::SecretsKey>,
    from_env: bool,
    store: &SharedStore,
) -> Arc<dyn crate::credentials::CredentialStore> {
    use crate::credentials::{EnvCredentials, LayeredCredentials, StoredCredentials};
    if let Some(configured) = configured {
        return configured;
    }
    let mut layered = LayeredCredentials::new();
    if let Some(key) = key {
        layered = layered.layer(StoredCredentials::new(store.clone(), key));
    }
    if from_env {
        layered = layered.layer(EnvCredentials::new());
    }
    Arc::new(layered)
}

impl Engine {
    /// The credential store runs read credentials from and the `credentials` CLI and API
    /// write to (see [`EngineBuilder::credentials`]).
    pub fn credentials(&self) -> Arc<dyn crate::credentials::CredentialStore> {
        crate::credentials::CredentialSettings::of(&self.inner.env)
    }

    /// A builder with an in-memory store, no workflows, the system clock.
    ///
    /// Hermetic: it reads no environment variable, so a test engine never reaches a real
    /// model because `OPENAI_API_KEY` is set in the developer's shell. Applications that
    /// want the environment's settings use [`EngineBuilder::from_env`] (the CLI does).
    pub fn builder() -> EngineBuilder {
        EngineBuilder {
            store: None,
            registry: Registry::default(),
            workflow_dirs: Vec::new(),
            error: None,
            resources: Resources::default(),
            clock: Arc::new(SystemClock),
            hook_secret: None,
            public_url: DEFAULT_PUBLIC_URL.to_owned(),
            run_retry_backoff: Duration::from_secs(1),
            unexecutable: unexecutable::DEFAULT_POLICY,
            replay_only: false,
            fault: Fault::None,
            extensions: HashMap::new(),
            build_checks: HashMap::new(),
            llm: crate::llm::LlmRouter::default(),
            default_model: None,
            owner_id: None,
            lease: Duration::from_secs(15),
            hot_capacity: hot::DEFAULT_CAPACITY,
            hot_max_sleep: hot::DEFAULT_MAX_SLEEP,
            llm_from_env: false,
            host: "host".to_owned(),
            prices: crate::cost::PriceTable::builtin(),
            queues: Vec::new(),
            default_project: None,
            credentials: None,
            secrets_key: None,
            credentials_from_env: false,
        }
    }

    /// The providers LLM steps and agents call.
    pub fn llm_router(&self) -> &crate::llm::LlmRouter {
        crate::llm::LlmSettings::of(&self.inner.env).router()
    }

    /// The model of LLM steps and agents that name none.
    pub fn default_model(&self) -> Option<String> {
        crate::llm::LlmSettings::of(&self.inner.env).default_model()
    }

    /// What the runs this engine executes see of it.
    pub(crate) fn env(&self) -> &Arc<RunEnv> {
        &self.inner.env
    }

    /// The id this engine holds leases under (see [`EngineBuilder::owner_id`]).
    pub fn owner_id(&self) -> &str {
        &self.inner.owner_id
    }

    /// The number of suspended runs held in the hot-run cache (see
    /// [`EngineBuilder::hot_runs`]).
    pub fn hot_runs(&self) -> usize {
        self.inner.hot.len()
    }

    /// Empties the hot-run cache: those runs replay from their log when they wake. Workers
    /// call this when they stop.
    pub fn clear_hot_runs(&self) {
        self.inner.hot.clear();
    }

    pub(crate) fn hot(&self) -> &hot::HotRuns {
        &self.inner.hot
    }

    /// The lease duration (see [`EngineBuilder::lease`]).
    pub fn lease_duration(&self) -> Duration {
        self.inner.lease
    }

    /// The part of type `T` a module above the engine attached with
    /// [`EngineBuilder::extension_mut`].
    pub(crate) fn extension<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.inner
            .extensions
            .get(&TypeId::of::<T>())
            .and_then(|part| part.downcast_ref::<T>())
    }

    /// Replaces the body of the action with slug `slug` for runs executed from now on
    /// (`None` restores it). Retries, timeouts, schema checks and recording stay as they
    /// are: only the call changes. This is the seam `reprise-testkit` stubs actions with.
    pub fn override_action(&self, slug: &str, body: Option<ActionOverride>) {
        self.inner.env.override_action(slug, body);
    }

    /// The engine's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.env.clock
    }

    /// The store.
    pub fn store(&self) -> &SharedStore {
        &self.inner.env.store
    }

    /// The prices of model tokens, by model (see [`crate::cost`]).
    ///
    /// [`crate::cost::PriceTable::builtin`] unless [`EngineBuilder::prices`] set another.
    pub fn prices(&self) -> &crate::cost::PriceTable {
        &self.inner.env.prices
    }

    /// What this engine counted (see [`crate::metrics`]).
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.inner.env.metrics
    }

    /// The metrics as OpenMetrics text (what `GET /metrics` answers), with the run gauges
    /// and the queue gauges ([`Engine::queue_states`]) read from the store now.
    ///
    /// # Errors
    /// Store failures.
    pub async fn render_metrics(&self) -> Result<String, EngineError> {
        let counts = self.store().run_counts(self.now()).await?;
        let queues: Vec<crate::metrics::QueueGauges> = self
            .queue_states()
            .await?
            .into_iter()
            .map(|state| crate::metrics::QueueGauges {
                queue: state.settings.name,
                active: state.active,
                waiting: state.waiting,
                admitted_in_window: state.admitted_in_window,
            })
            .collect();
        Ok(self.metrics().render(&counts, &queues))
    }

    /// The registry of workflows and actions.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The current time on the engine's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.inner.env.now()
    }

    /// The resource of type `T`, if registered.
    pub fn resource<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.inner.env.resources.get::<T>()
    }

    /// The token of hook `correlation_id` of run `run_id` (what `Hook::token` returned to
    /// the workflow), for operators who deliver a payload by hand.
    pub fn hook_token(&self, run_id: &RunId, correlation_id: &str) -> String {
        self.inner.env.hook_token(run_id, correlation_id)
    }

    /// The resume URL of hook `correlation_id` of run `run_id`: `<public-url>/hooks/<token>`,
    /// where the public URL is `REPRISE_PUBLIC_URL` or [`EngineBuilder::public_url`]
    /// (default `http://127.0.0.1:8080`).
    pub fn hook_resume_url(&self, run_id: &RunId, correlation_id: &str) -> String {
        self.inner.env.hook_resume_url(run_id, correlation_id)
    }

    /// The payload limits (see [`EngineBuilder::max_payload_bytes`]).
    pub(crate) fn payload_limits(&self) -> crate::payload::PayloadLimits {
        crate::payload::PayloadLimits::of(&self.inner.env)
    }

    /// The largest payload a run may record, in bytes of JSON (see
    /// [`EngineBuilder::max_payload_bytes`]).
    pub fn max_payload_bytes(&self) -> u64 {
        self.payload_limits().max_payload_bytes
    }

    pub(crate) fn run_retry_backoff(&self) -> Duration {
        self.inner.run_retry_backoff
    }

    /// The policy of runs this binary cannot execute (see
    /// [`EngineBuilder::unexecutable_policy`]).
    pub fn unexecutable_policy(&self) -> crate::RetryPolicy {
        self.inner.unexecutable
    }

    /// The workflow registered under `slug`.
    ///
    /// # Errors
    /// [`EngineError::UnknownWorkflow`].
    pub fn workflow(&self, slug: &str) -> Result<&Arc<WorkflowEntry>, EngineError> {
        self.inner
            .registry
            .workflow(slug)
            .ok_or_else(|| EngineError::UnknownWorkflow(slug.to_owned()))
    }

    /// Validates `input` against the workflow's input schema and creates a `queued` run.
    /// Invalid input creates no run. [`Engine::start_with`] adds a start time and an
    /// idempotency key.
    ///
    /// # Errors
    /// [`EngineError::UnknownWorkflow`], [`EngineError::Schema`] (every violation with its
    /// JSON pointer), [`EngineError::PayloadTooLarge`] (an input over
    /// [`EngineBuilder::max_payload_bytes`]), or a store error.
    pub async fn start_json(
        &self,
        slug: &str,
        input: Value,
        trigger: Trigger,
    ) -> Result<RunId, EngineError> {
        let (id, _) = self
            .start_with(slug, input, trigger, StartOptions::default())
            .await?;
        Ok(id)
    }

    /// Like [`Engine::start_json`], but creates the run only if no run was created under
    /// `key` before (a webhook delivery id, a cron tick, a poll item): returns the run's
    /// id and whether this call created it. Atomic across processes sharing the store.
    ///
    /// # Errors
    /// As [`Engine::start_json`]; invalid input is reported even when the key is taken.
    pub async fn start_once(
        &self,
        slug: &str,
        input: Value,
        trigger: Trigger,
        key: &str,
    ) -> Result<(RunId, bool), EngineError> {
        self.start_once_with(slug, input, trigger, key, &StartOptions::default())
            .await
    }

    /// [`Engine::start_once`] with the start time, trace (checked by the caller) and
    /// identity of `options` (its keys and queue options are not used).
    pub(crate) async fn start_once_with(
        &self,
        slug: &str,
        input: Value,
        trigger: Trigger,
        key: &str,
        options: &StartOptions,
    ) -> Result<(RunId, bool), EngineError> {
        let (record, created) = self.new_run_at(slug, input, trigger, options)?;
        let id = record.id.clone();
        match self
            .inner
            .env
            .store
            .create_run_once(key, record, created)
            .await?
        {
            Some(existing) => Ok((existing, false)),
            None => {
                self.env().announce_created(&id, slug);
                Ok((id, true))
            }
        }
    }

    /// A validated, `queued` run record and its `run_created` event, as `options` say: due
    /// at `start_at` (recorded in `run_created`; a time not after now is due at once),
    /// joining the trace of `traceparent` (checked by the caller), in the queue of `queue`,
    /// with the identity of `identity` (its actor defaulting to the trigger's). The
    /// options' business key, idempotency key and de-duplication are the caller's.
    fn new_run_at(
        &self,
        slug: &str,
        input: Value,
        trigger: Trigger,
        options: &StartOptions,
    ) -> Result<(RunRecord, NewEvent), EngineError> {
        let (start_at, traceparent, queue) = (
            options.start_at,
            options.traceparent.clone(),
            &options.queue,
        );
        let identity = options
            .identity
            .resolve(
                || default_actor(trigger),
                self.inner.default_project.as_deref(),
            )
            .map_err(EngineError::Serde)?;
        let entry = self.workflow(slug)?;
        entry.input.validate(&input)?;
        self.payload_limits()
            .check(|| format!("the input of workflow `{slug}`"), &input)?;
        let queue = crate::queue::QueueSettings::of(&self.inner.env)
            .place(slug, entry.options.queue, queue, &input)
            .map_err(EngineError::Serde)?
            .map(|(placed, _)| placed);
        let now = self.now();
        let wake_at = start_at.filter(|at| *at > now);
        let record = RunRecord {
            id: RunId::new(),
            workflow: entry.registration.slug.to_owned(),
            status: RunStatus::Queued,
            input: input.clone(),
            output: None,
            error: None,
            attempt: 0,
            trigger,
            created_at: now,
            updated_at: now,
            wake_at,
            next_seq: 1,
            queue: queue.clone(),
        };
        let created = NewEvent::new(
            None,
            0,
            now,
            EventPayload::RunCreated {
                workflow: entry.registration.slug.to_owned(),
                input,
                trigger,
                start_at,
                forked_from: None,
                traceparent,
                key: None,
                event: None,
                parent: None,
                continued_from: None,
                queue: queue.map(Box::new),
                identity: Some(Box::new(identity)),
            },
        );
        Ok((record, created))
    }

    /// The engine's default project (see [`EngineBuilder::project`]), if any.
    pub fn default_project(&self) -> Option<&str> {
        self.inner.default_project.as_deref()
    }

    /// Typed [`Engine::start_json`]: enqueues a run of `workflow`.
    ///
    /// # Errors
    /// As [`Engine::start_json`]; also when the workflow is not registered with this engine.
    pub async fn start<W: Step>(
        &self,
        _workflow: &W,
        input: W::Input,
    ) -> Result<RunId, EngineError> {
        let input = serde_json::to_value(input)?;
        self.start_json(W::SLUG, input, Trigger::Code).await
    }

    /// Starts a run of `workflow` and drives it to its end (waiting in this process for
    /// sleeps and retries); returns the typed output or the run's error.
    ///
    /// # Errors
    /// Engine errors; a failed run is `Ok(Err(..))`. A run left waiting on a hook is an
    /// [`EngineError::InvalidState`].
    pub async fn run<W: Step>(
        &self,
        workflow: &W,
        input: W::Input,
    ) -> Result<Result<W::Output, crate::WorkflowError>, EngineError> {
        let id = self.start(workflow, input).await?;
        match self.drive(&id).await?.outcome {
            RunOutcome::Completed(output) => Ok(Ok(serde_json::from_value(output)?)),
            RunOutcome::Failed(error) => Ok(Err(error)),
            RunOutcome::Suspended(_) => Err(EngineError::InvalidState {
                run: id.to_string(),
                status: "waiting".into(),
                message: "the run waits on a hook; deliver it with resume_hook".into(),
            }),
            RunOutcome::Canceled => Ok(Err(crate::WorkflowError::new(
                crate::error::kinds::CANCELED,
                "the run was canceled",
                false,
            ))),
            RunOutcome::Paused => Err(EngineError::InvalidState {
                run: id.to_string(),
                status: "paused".into(),
                message: "the run is paused; unpause it with unpause_run".into(),
            }),
            RunOutcome::Interrupted => Err(EngineError::InvalidState {
                run: id.to_string(),
                status: "queued".into(),
                message: "the engine is shutting down; a worker continues the run".into(),
            }),
        }
    }

    /// A run's record.
    ///
    /// # Errors
    /// [`EngineError::UnknownRun`] or a store error.
    pub async fn get_run(&self, id: &RunId) -> Result<RunRecord, EngineError> {
        self.inner
            .env
            .store
            .run(id)
            .await?
            .ok_or_else(|| EngineError::UnknownRun(id.to_string()))
    }

    /// A run's events, in order.
    ///
    /// # Errors
    /// [`EngineError::UnknownRun`] or a store error.
    pub async fn events(&self, id: &RunId) -> Result<Vec<crate::event::Event>, EngineError> {
        let mut events = self.inner.env.store.events(id).await?;
        if events.is_empty() {
            return Err(EngineError::UnknownRun(id.to_string()));
        }
        crate::hook_token::redact_log(self.inner.env.hook_secret(), id.as_str(), &mut events);
        Ok(events)
    }

    /// Runs matching `filter`, newest first. Run rows that do not decode are left out, each
    /// logged as a warning naming the run and what is wrong; use
    /// [`Engine::list_runs_with_skipped`] to report them yourself.
    ///
    /// # Errors
    /// Store errors.
    pub async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, EngineError> {
        let listing = self.list_runs_with_skipped(filter).await?;
        for skipped in &listing.skipped {
            tracing::warn!(
                run = %skipped.run_id,
                reason = %skipped.reason,
                "run left out of a listing: its row does not decode"
            );
        }
        Ok(listing.runs)
    }

    /// Runs matching `filter`, newest first, and the run rows left out because they do not
    /// decode (an unknown status or trigger, invalid JSON), each with its id and what is
    /// wrong: one bad row never fails a listing. Logs nothing.
    ///
    /// # Errors
    /// Store errors.
    pub async fn list_runs_with_skipped(
        &self,
        filter: &RunFilter,
    ) -> Result<crate::store::RunListing, EngineError> {
        self.inner.env.store.list_runs_with_skipped(filter).await
    }

    /// Runs that have not ended and can continue now: `queued` and `running` ones (a
    /// `running` run found here is executing, or was interrupted; executing it waits for or
    /// takes over its lease) and `sleeping` ones, oldest first. A [`crate::Worker`] finds
    /// due runs itself; this is for `runs resume`.
    ///
    /// # Errors
    /// Store errors.
    pub async fn unfinished_runs(&self) -> Result<Vec<RunRecord>, EngineError> {
        Ok(self.unfinished_runs_with_skipped().await?.runs)
    }

    /// [`Engine::unfinished_runs`], with the unfinished run rows left out because they do
    /// not decode (see [`Engine::list_runs_with_skipped`]).
    ///
    /// # Errors
    /// Store errors.
    pub async fn unfinished_runs_with_skipped(
        &self,
    ) -> Result<crate::store::RunListing, EngineError> {
        let mut all = crate::store::RunListing::default();
        for status in [RunStatus::Running, RunStatus::Queued, RunStatus::Sleeping] {
            let listing = self
                .list_runs_with_skipped(&RunFilter {
                    status: Some(status),
                    ..RunFilter::default()
                })
                .await?;
            all.runs.extend(listing.runs);
            all.skipped.extend(listing.skipped);
        }
        all.runs.sort_by_key(|run| run.created_at);
        Ok(all)
    }
}
