//! [`TestEnv`]: an engine over a fresh store with a virtual clock, where every action call
//! is counted and can be stubbed, and a run is driven by hand: `execute`, `advance`,
//! `resume_hook`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use futures::FutureExt;
use futures::future::BoxFuture;
use reprise::event::{EventKind, RunFilter, RunId, RunStatus};
use reprise::{
    ActionCtx, ActionError, Engine, EngineBuilder, RunOutcome, Step, Wait, WorkflowError,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::TempDb;
use crate::clock::VirtualClock;

/// How a run stands after [`TestEnv::execute`], [`TestEnv::advance`] or
/// [`TestEnv::resume_hook`].
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome<T> {
    /// The run completed with this output.
    Completed(T),
    /// The run failed with this error.
    Failed(WorkflowError),
    /// The run is suspended on these waits.
    Suspended(Vec<Pending>),
}

impl<T: std::fmt::Debug> Outcome<T> {
    /// The output.
    ///
    /// # Panics
    /// When the run did not complete, with the outcome in the message.
    #[track_caller]
    pub fn completed(self) -> T {
        match self {
            Outcome::Completed(output) => output,
            other => panic!("expected the run to complete, but it is {other:?}"),
        }
    }

    /// The error.
    ///
    /// # Panics
    /// When the run did not fail.
    #[track_caller]
    pub fn failed(self) -> WorkflowError {
        match self {
            Outcome::Failed(error) => error,
            other => panic!("expected the run to fail, but it is {other:?}"),
        }
    }

    /// The waits.
    ///
    /// # Panics
    /// When the run is not suspended.
    #[track_caller]
    pub fn suspended(self) -> Vec<Pending> {
        match self {
            Outcome::Suspended(waits) => waits,
            other => panic!("expected the run to be suspended, but it is {other:?}"),
        }
    }
}

/// Something a suspended run waits for.
#[derive(Clone, Debug, PartialEq)]
pub enum Pending {
    /// A durable sleep until `until` (on the virtual clock): [`TestEnv::advance`] past it.
    Sleep {
        /// The sleep's correlation id.
        id: String,
        /// When it ends.
        until: DateTime<Utc>,
    },
    /// A hook: deliver with [`TestEnv::resume_hook`].
    Hook {
        /// The hook's correlation id.
        id: String,
        /// Its token.
        token: String,
        /// The JSON Schema the payload must match.
        schema: Value,
    },
    /// A message in the run's inbox: a signal (`signal:<name>`), an update request, an
    /// event (`event:<name>`) or a child run's result (`child:<run-id>`).
    Message {
        /// The receive's correlation id (`signal:paid#0`).
        id: String,
        /// The inbox channel it waits on.
        channel: String,
    },
    /// Admission into the run's flow-control queue: the run has not started because a
    /// limit of its queue holds it back (or it is debounced and not due yet).
    /// [`TestEnv::admit`] or [`TestEnv::advance`] admit it once the limit allows.
    Queued {
        /// The queue's name.
        queue: String,
        /// The run's key in the queue, if any.
        key: Option<String>,
        /// Why it waits, as `runs get` says it ([`reprise::QueueWait`]'s text), e.g.
        /// "waiting in queue `llm`: key `c1` has 1 of 1 runs at once already".
        reason: String,
    },
}

impl Pending {
    /// The token, for a hook.
    pub fn token(&self) -> Option<&str> {
        match self {
            Pending::Hook { token, .. } => Some(token),
            Pending::Sleep { .. } | Pending::Message { .. } | Pending::Queued { .. } => None,
        }
    }
}

/// One live call of an action, as [`TestEnv::calls`] reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// The action's slug.
    pub slug: String,
    /// The step's correlation id.
    pub correlation_id: String,
    /// The attempt, from 1.
    pub attempt: u32,
    /// The input, as JSON.
    pub input: Value,
}

/// A stub body over JSON, as the engine's action override calls it.
pub(crate) type ErasedStub =
    Arc<dyn Fn(Value, ActionCtx) -> BoxFuture<'static, Result<Value, ActionError>> + Send + Sync>;

/// Wraps a typed stub of action `A` as an [`ErasedStub`] (JSON in, JSON out).
pub(crate) fn erase_stub<A, F, Fut>(stub: F) -> ErasedStub
where
    A: Step,
    F: Fn(A::Input) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<A::Output, ActionError>> + Send + 'static,
{
    let stub = Arc::new(stub);
    Arc::new(move |input: Value, _cx: ActionCtx| {
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
    })
}

/// Wraps a stub over JSON (for actions called by slug, e.g. from workflow files) as an
/// [`ErasedStub`].
pub(crate) fn erase_json_stub<F, Fut>(stub: F) -> ErasedStub
where
    F: Fn(Value) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, ActionError>> + Send + 'static,
{
    let stub = Arc::new(stub);
    Arc::new(move |input: Value, _cx: ActionCtx| {
        let stub = stub.clone();
        async move { stub(input).await }.boxed()
    })
}

/// Counts every live action call and routes it to its stub or its real body.
#[derive(Default)]
pub(crate) struct Calls {
    log: Mutex<Vec<Call>>,
    stubs: Mutex<HashMap<String, ErasedStub>>,
}

impl Calls {
    pub(crate) fn all(&self) -> Vec<Call> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Builds a [`TestEnv`].
pub struct TestEnvBuilder {
    sqlite: bool,
    start: DateTime<Utc>,
    configure: Vec<Box<dyn FnOnce(EngineBuilder) -> EngineBuilder>>,
}

impl TestEnvBuilder {
    /// Uses a SQLite file in a temporary directory instead of the in-memory store.
    pub fn sqlite(mut self) -> Self {
        self.sqlite = true;
        self
    }

    /// Starts the virtual clock at `start` (default 2030-01-01T00:00:00Z).
    pub fn starting_at(mut self, start: DateTime<Utc>) -> Self {
        self.start = start;
        self
    }

    /// Answers every LLM step and agent turn with `provider` (a [`crate::llm::FakeLlm`],
    /// or the real provider pointed at a [`crate::llm::FakeOpenAiServer`]), whatever the
    /// model id, so no test needs an API key or the network.
    ///
    /// ```ignore
    /// let llm = FakeLlm::new().reply_json(json!({"category": "billing", "confidence": 0.9}));
    /// let env = TestEnv::builder().llm(llm.clone()).build();
    /// ```
    pub fn llm(self, provider: impl reprise::llm::LlmProvider) -> Self {
        let provider: Arc<dyn reprise::llm::LlmProvider> = Arc::new(provider);
        self.configure(move |builder| builder.llm(provider))
    }

    /// Configures flow-control queue `queue` on the engine ([`EngineBuilder::queue`]).
    /// Runs in a queue are then admitted as a worker admits them, by the queue's limits
    /// on the virtual clock: [`TestEnv::execute`], [`TestEnv::advance`] and
    /// [`TestEnv::admit`] claim them through the store, never around it.
    ///
    /// ```ignore
    /// let env = TestEnv::builder()
    ///     .queue(Queue::new("llm").key("/customer").key_concurrency(1))
    ///     .build();
    /// ```
    pub fn queue(self, queue: reprise::queue::Queue) -> Self {
        self.configure(move |builder| builder.queue(queue))
    }

    /// Loads the workflow files (`*.md`, `*.yaml`, `*.yml`) of `dir` and its subdirectories
    /// into the engine ([`EngineBuilder::workflow_dir`]): they run, are stubbed, crashed
    /// and snapshotted like code workflows; start them by slug with
    /// [`TestEnv::run_slug`]. A file that does not parse or check makes
    /// [`TestEnvBuilder::build`] panic with every problem (file:line:col).
    ///
    /// ```ignore
    /// let env = TestEnv::builder().workflow_dir("workflows").build();
    /// let out = env.run_slug("nightly-report", json!({"sources": ["api"]})).await.completed();
    /// ```
    pub fn workflow_dir(self, dir: impl Into<std::path::PathBuf>) -> Self {
        let dir = dir.into();
        self.configure(move |builder| builder.workflow_dir(dir))
    }

    /// Configures the engine further (resources, registrations).
    pub fn configure(mut self, f: impl FnOnce(EngineBuilder) -> EngineBuilder + 'static) -> Self {
        self.configure.push(Box::new(f));
        self
    }

    /// The environment.
    ///
    /// # Panics
    /// When the store cannot be created or two linked steps share a slug — a broken test
    /// setup, reported with the cause.
    pub fn build(self) -> TestEnv {
        let clock = Arc::new(VirtualClock::new(self.start));
        let db = self.sqlite.then(|| {
            TempDb::new().unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"))
        });
        // No hot-run cache: every wake-up replays the log, as after a restart, so tests
        // check that replay is exact.
        let mut builder = Engine::builder()
            .owner_id("test-env")
            .hot_runs(0, std::time::Duration::ZERO);
        if let Some(db) = &db {
            builder = builder
                .sqlite(db.path())
                .unwrap_or_else(|e| panic!("cannot open the test database: {e}"));
        }
        let mut builder = builder
            .discover()
            .unwrap_or_else(|e| panic!("cannot register the linked workflows: {e}"))
            .clock(clock.clone())
            .hook_secret(b"reprise-testkit fixed hook secret, for stable tokens".to_vec())
            .public_url("http://reprise.test");
        for configure in self.configure {
            builder = configure(builder);
        }
        let engine = builder
            .build()
            .unwrap_or_else(|e| panic!("cannot build the test engine: {e}"));
        let calls = Arc::new(Calls::default());
        install_counters(&engine, &calls);
        TestEnv {
            engine,
            clock,
            calls,
            seeds: Mutex::new(Vec::new()),
            last: Mutex::new(None),
            db,
        }
    }
}

/// Routes every registered action through the call log (and its stub, if any).
fn install_counters(engine: &Engine, calls: &Arc<Calls>) {
    for action in engine.registry().actions() {
        let slug = action.registration.slug;
        let real = action.call;
        let calls = calls.clone();
        let body: reprise::ActionOverride = Arc::new(move |input: Value, cx: ActionCtx| {
            calls
                .log
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Call {
                    slug: slug.to_owned(),
                    correlation_id: cx.correlation_id().to_owned(),
                    attempt: cx.attempt(),
                    input: input.clone(),
                });
            let stub = calls
                .stubs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(slug)
                .cloned();
            match stub {
                Some(stub) => stub(input, cx),
                None => real(input, cx),
            }
        });
        engine.override_action(slug, Some(body));
    }
}

/// A test environment: an [`Engine`] on a fresh store (in memory, or a temporary SQLite
/// file) with every linked workflow, a [`VirtualClock`], and a log of action calls.
///
/// ```ignore
/// let env = TestEnv::new();
/// env.stub(&research_signup, |input: Signup| async move { Ok(Brief { brief: input.name }) });
/// let brief = env.execute(&signup_pipeline, signup).await.completed();
/// assert_eq!(env.calls(&post_brief).len(), 1);
/// ```
pub struct TestEnv {
    engine: Engine,
    clock: Arc<VirtualClock>,
    calls: Arc<Calls>,
    seeds: Mutex<Vec<(String, Value)>>,
    last: Mutex<Option<RunId>>,
    db: Option<TempDb>,
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl TestEnv {
    /// An environment with the in-memory store. See [`TestEnvBuilder::build`] for panics.
    pub fn new() -> TestEnv {
        Self::builder().build()
    }

    /// A builder.
    pub fn builder() -> TestEnvBuilder {
        TestEnvBuilder {
            sqlite: false,
            start: Utc
                .with_ymd_and_hms(2030, 1, 1, 0, 0, 0)
                .single()
                .unwrap_or_default(),
            configure: Vec::new(),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The virtual clock.
    pub fn clock(&self) -> &Arc<VirtualClock> {
        &self.clock
    }

    /// The SQLite database, when built with [`TestEnvBuilder::sqlite`].
    pub fn db(&self) -> Option<&TempDb> {
        self.db.as_ref()
    }

    /// The virtual time.
    pub fn now(&self) -> DateTime<Utc> {
        reprise::Clock::now(&*self.clock)
    }

    /// The id of the run the last [`TestEnv::execute`] started.
    ///
    /// # Panics
    /// When nothing was executed yet.
    pub fn last_run(&self) -> RunId {
        self.last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| panic!("no run was executed in this TestEnv yet"))
    }

    /// Replaces `action`'s body with `stub` (typed by the action's input and output).
    /// Calls are still counted ([`TestEnv::calls`]), retried, timed out, validated and
    /// recorded as for the real action.
    pub fn stub<A, F, Fut>(&self, _action: &A, stub: F)
    where
        A: Step,
        F: Fn(A::Input) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<A::Output, ActionError>> + Send + 'static,
    {
        let erased = erase_stub::<A, F, Fut>(stub);
        self.calls
            .stubs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(A::SLUG.to_owned(), erased);
    }

    /// Replaces the body of the action registered as `slug` with `stub`, over JSON: for
    /// actions a test only knows by slug (those a workflow file calls). As with
    /// [`TestEnv::stub`], calls are counted, retried, timed out, validated against the
    /// action's schemas and recorded as for the real action.
    ///
    /// ```ignore
    /// env.stub_slug("fetch-metrics", |input: Value| async move {
    ///     Err(ActionError::transient("503 from the metrics API"))
    /// });
    /// ```
    pub fn stub_slug<F, Fut>(&self, slug: &str, stub: F)
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, ActionError>> + Send + 'static,
    {
        self.calls
            .stubs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(slug.to_owned(), erase_json_stub(stub));
    }

    /// Every live call (each attempt) of the action registered as `slug`, in call order:
    /// its correlation id, attempt and JSON input.
    pub fn calls_of(&self, slug: &str) -> Vec<Call> {
        self.calls
            .all()
            .into_iter()
            .filter(|call| call.slug == slug)
            .collect()
    }

    /// The inputs of every live call of `action` (each attempt), in call order.
    ///
    /// # Panics
    /// When a recorded input no longer deserializes into the action's input type.
    pub fn calls<A: Step>(&self, _action: &A) -> Vec<A::Input> {
        self.calls
            .all()
            .into_iter()
            .filter(|call| call.slug == A::SLUG)
            .map(|call| {
                serde_json::from_value(call.input)
                    .unwrap_or_else(|e| panic!("input of `{}` does not deserialize: {e}", A::SLUG))
            })
            .collect()
    }

    /// Every live action call, in order.
    pub fn all_calls(&self) -> Vec<Call> {
        self.calls.all()
    }

    /// Pre-records step `correlation_id` (e.g. `"research-signup#0"`) with `output` in the
    /// next run [`TestEnv::execute`] starts. The seeded value is re-validated against the
    /// step's output schema when replayed, as any recorded output is.
    ///
    /// # Panics
    /// When `output` does not serialize.
    pub fn seed(&self, correlation_id: &str, output: impl Serialize) {
        let output = serde_json::to_value(output)
            .unwrap_or_else(|e| panic!("seed of `{correlation_id}`: {e}"));
        self.seeds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((correlation_id.to_owned(), output));
    }

    /// Starts a run of `workflow` and executes it until it ends or waits on a sleep or a
    /// hook. Run-level retries are taken at once (the virtual clock jumps over their backoff).
    /// A run in a queue starts only when its queue admits it (see [`TestEnv::continue_run`]).
    ///
    /// # Panics
    /// When the input is invalid or the store fails — test setup errors, with the cause.
    pub async fn execute<W: Step>(&self, workflow: &W, input: W::Input) -> Outcome<W::Output> {
        let id = self
            .engine
            .start(workflow, input)
            .await
            .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", W::SLUG));
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(id.clone());
        let seeds = std::mem::take(&mut *self.seeds.lock().unwrap_or_else(|p| p.into_inner()));
        for (step, output) in seeds {
            self.engine
                .seed_step(&id, &step, output)
                .await
                .unwrap_or_else(|e| panic!("cannot seed `{step}`: {e}"));
        }
        typed(self.continue_run(&id).await)
    }

    /// Starts a run of the registered workflow `slug` (a workflow file's, or any code
    /// workflow's) with a JSON `input`, and executes it until it ends or waits, as
    /// [`TestEnv::execute`] does for a typed workflow; [`TestEnv::last_run`] is then its id
    /// and the [`TestEnv::seed`]s go into it.
    ///
    /// # Panics
    /// When the slug is unknown, the input does not match the workflow's input schema, or
    /// the store fails — test setup errors, with the cause.
    pub async fn run_slug(&self, slug: &str, input: Value) -> Outcome<Value> {
        let id = self.start_slug(slug, input).await;
        self.continue_run(&id).await
    }

    /// Starts a run of the registered workflow `slug` with a JSON `input` without executing
    /// it (the seeds go into it; [`TestEnv::last_run`] is its id); drive it with
    /// [`TestEnv::continue_run`].
    ///
    /// # Panics
    /// As [`TestEnv::run_slug`].
    pub async fn start_slug(&self, slug: &str, input: Value) -> RunId {
        let id = self
            .engine
            .start_json(slug, input, reprise::Trigger::Code)
            .await
            .unwrap_or_else(|e| panic!("cannot start `{slug}`: {e}"));
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(id.clone());
        let seeds = std::mem::take(&mut *self.seeds.lock().unwrap_or_else(|p| p.into_inner()));
        for (step, output) in seeds {
            self.engine
                .seed_step(&id, &step, output)
                .await
                .unwrap_or_else(|e| panic!("cannot seed `{step}`: {e}"));
        }
        id
    }

    /// Starts a run of `workflow` with `options` ([`Engine::start_with`]: a queue, a
    /// queue key, a priority, a de-duplication id, a delay) without executing it.
    /// Returns the run's id and whether this start created it.
    ///
    /// # Errors
    /// The engine's refusal of the start ([`reprise::EngineError::Serde`] for an unknown
    /// queue or a key the queue cannot read, …); nothing is created then.
    pub async fn start_with<W: Step>(
        &self,
        _workflow: &W,
        input: W::Input,
        options: reprise::StartOptions,
    ) -> Result<(RunId, bool), reprise::EngineError> {
        let input = serde_json::to_value(input)?;
        self.engine
            .start_with(W::SLUG, input, reprise::Trigger::Api, options)
            .await
    }

    /// How run `id` stands without executing it: its end, or what it waits for.
    async fn outcome_of(&self, id: &RunId) -> Outcome<Value> {
        let record = self
            .engine
            .get_run(id)
            .await
            .unwrap_or_else(|e| panic!("cannot read run {id}: {e}"));
        match record.status {
            RunStatus::Completed => Outcome::Completed(record.output.unwrap_or(Value::Null)),
            RunStatus::Failed | RunStatus::Canceled => Outcome::Failed(
                record
                    .error
                    .and_then(|e| serde_json::from_value(e).ok())
                    .unwrap_or_else(|| {
                        WorkflowError::new(
                            reprise::kinds::CANCELED,
                            format!("the run is {}", record.status),
                            false,
                        )
                    }),
            ),
            _ => {
                let mut waits = Vec::new();
                if let Some(wait) = self
                    .engine
                    .queue_wait(&record)
                    .await
                    .unwrap_or_else(|e| panic!("cannot read the queue of run {id}: {e}"))
                    && let Some(queue) = wait.queue.clone()
                {
                    waits.push(Pending::Queued {
                        queue,
                        key: wait.key.clone(),
                        reason: wait.to_string(),
                    });
                }
                Outcome::Suspended(waits)
            }
        }
    }

    /// Whether run `id` is in a queue and not admitted yet (it waits for a claim).
    async fn is_pending_in_queue(&self, id: &RunId) -> bool {
        self.engine.get_run(id).await.is_ok_and(|r| {
            r.status == RunStatus::Queued && r.queue.is_some_and(|q| q.admitted_at.is_none())
        })
    }

    /// Admits due runs of the engine's queues as a worker does, at the virtual time: claims
    /// them through the store ([`reprise::store::Store::claim`], which applies each
    /// queue's concurrency, per-key concurrency, rate limit and priority), continues each
    /// admitted run until it ends or waits, and claims again until nothing more is
    /// admitted. Returns each continued run's outcome, in admission order. Runs in no
    /// queue are left alone (drive them with [`TestEnv::continue_run`]).
    ///
    /// # Panics
    /// When the store fails, or when admission never settles (more than 10,000 claims).
    pub async fn admit(&self) -> Vec<(RunId, Outcome<Value>)> {
        let queues: Vec<String> = self
            .engine
            .queues()
            .iter()
            .map(|q| q.name.clone())
            .collect();
        let mut outcomes = Vec::new();
        if queues.is_empty() {
            return outcomes;
        }
        let routing = reprise::queue::Routing {
            workflows: None,
            queues: Some(queues),
        };
        for _ in 0..10_000 {
            let now = self.now();
            let leases = self
                .engine
                .store()
                .claim(&reprise::queue::ClaimRequest {
                    owner: self.engine.owner_id(),
                    now,
                    expires_at: now + chrono::TimeDelta::minutes(5),
                    limit: 64,
                    routing: &routing,
                    queues: self.engine.queues(),
                    run: None,
                })
                .await
                .unwrap_or_else(|e| panic!("cannot claim queue runs: {e}"));
            if leases.is_empty() {
                return outcomes;
            }
            for lease in leases {
                let outcome = Box::pin(self.run_until_wait(&lease.run_id)).await;
                outcomes.push((lease.run_id, outcome));
            }
        }
        panic!("queue admission did not settle after 10,000 claims")
    }

    /// Executes run `id` until it ends or waits on a sleep or a hook (retries are taken at
    /// once), as JSON. A run waiting for admission into its queue is not executed around
    /// its queue: the due queue runs are admitted ([`TestEnv::admit`]) and the run's
    /// outcome is what admission made of it (`Suspended` with [`Pending::Queued`] while
    /// its queue holds it back).
    ///
    /// # Panics
    /// When the store fails.
    pub async fn continue_run(&self, id: &RunId) -> Outcome<Value> {
        if !self.is_pending_in_queue(id).await {
            return self.run_until_wait(id).await;
        }
        let admitted = Box::pin(self.admit()).await;
        if let Some((_, outcome)) = admitted.into_iter().find(|(run, _)| run == id) {
            return outcome;
        }
        self.outcome_of(id).await
    }

    /// Executes run `id` (not checking its queue) until it ends or waits.
    async fn run_until_wait(&self, id: &RunId) -> Outcome<Value> {
        loop {
            let execution = self
                .engine
                .execute(id)
                .await
                .unwrap_or_else(|e| panic!("executing run {id} failed: {e}"));
            match execution.outcome {
                RunOutcome::Completed(output) => return Outcome::Completed(output),
                RunOutcome::Failed(error) => return Outcome::Failed(error),
                RunOutcome::Suspended(waits) => {
                    if let [Wait::Retry { until }] = waits[..] {
                        self.clock.set(until.max(self.now()));
                        continue;
                    }
                    // A child run the run waits for is executed here too (as a worker
                    // would); once it has ended, its result has woken the parent.
                    if self.continue_children(&waits).await {
                        continue;
                    }
                    return Outcome::Suspended(self.pending(id, &waits).await);
                }
                RunOutcome::Canceled => {
                    let record = self.engine.get_run(id).await.ok();
                    let error = record
                        .and_then(|r| r.error)
                        .and_then(|e| serde_json::from_value(e).ok())
                        .unwrap_or_else(|| {
                            reprise::WorkflowError::new(
                                reprise::kinds::CANCELED,
                                "the run was canceled",
                                false,
                            )
                        });
                    return Outcome::Failed(error);
                }
                // Only a draining worker interrupts; the test environment has none.
                RunOutcome::Interrupted => continue,
                other => {
                    panic!("run {id} ended in an outcome this TestEnv does not know: {other:?}")
                }
            }
        }
    }

    /// Executes the child runs `waits` wait for (a child in a queue only once its queue
    /// admits it); returns whether one of them ended.
    async fn continue_children(&self, waits: &[Wait]) -> bool {
        let mut ended = false;
        for wait in waits {
            if let Wait::Message { channel, .. } = wait
                && let Some(child) = channel.strip_prefix("child:")
            {
                let child = RunId(child.to_owned());
                let outcome = Box::pin(self.continue_run(&child)).await;
                ended |= !matches!(outcome, Outcome::Suspended(_));
            }
        }
        ended
    }

    async fn pending(&self, id: &RunId, waits: &[Wait]) -> Vec<Pending> {
        let events = self.engine.store().events(id).await.unwrap_or_default();
        let schema_of = |hook: &str| {
            events
                .iter()
                .find(|e| {
                    e.event.kind == EventKind::HookCreated
                        && e.event.correlation_id.as_deref() == Some(hook)
                })
                .and_then(|e| e.event.hook_schema().cloned())
                .unwrap_or(Value::Null)
        };
        waits
            .iter()
            .filter_map(|wait| match wait {
                Wait::Sleep { id, until } => Some(Pending::Sleep {
                    id: id.clone(),
                    until: *until,
                }),
                Wait::Hook { id: hook, .. } => Some(Pending::Hook {
                    id: hook.clone(),
                    token: self.engine.hook_token(id, hook),
                    schema: schema_of(hook),
                }),
                Wait::Message { id, channel } => Some(Pending::Message {
                    id: id.clone(),
                    channel: channel.clone(),
                }),
                // A retry (taken at once by `continue_run`), or a wait kind this TestEnv
                // does not know.
                _ => None,
            })
            .collect()
    }

    /// Moves the virtual clock forward by `by` and continues every run whose sleep,
    /// scheduled retry or hook timeout is then due, oldest first; then admits the due runs
    /// of the engine's queues ([`TestEnv::admit`]: debounce windows and rate windows pass
    /// with the virtual clock). Returns each continued run's outcome.
    ///
    /// # Panics
    /// When the store fails.
    pub async fn advance(&self, by: Duration) -> Vec<(RunId, Outcome<Value>)> {
        self.clock.advance(by);
        let now = self.now();
        let mut due = Vec::new();
        // Sleeps, scheduled retries and hook deadlines.
        for status in [RunStatus::Sleeping, RunStatus::Queued, RunStatus::Waiting] {
            let runs = self
                .engine
                .list_runs(&RunFilter {
                    status: Some(status),
                    ..RunFilter::default()
                })
                .await
                .unwrap_or_else(|e| panic!("cannot list runs: {e}"));
            // A run waiting for admission into its queue is admitted below, by the queue.
            due.extend(runs.into_iter().filter(|r| {
                r.wake_at.is_some_and(|t| t <= now)
                    && !(r.status == RunStatus::Queued
                        && r.queue.as_ref().is_some_and(|q| q.admitted_at.is_none()))
            }));
        }
        due.sort_by_key(|r| r.created_at);
        let mut outcomes = Vec::new();
        for run in due {
            let outcome = self.continue_run(&run.id).await;
            outcomes.push((run.id, outcome));
        }
        outcomes.extend(self.admit().await);
        outcomes
    }

    /// Fires the engine's triggers due at the virtual time, as the scheduler's loop does
    /// ([`reprise::trigger::Triggers::fire_due`]: cron schedules declared in code or in
    /// workflow files' `triggers`, stored schedules, polls), and executes each run it
    /// started until it ends or waits. Returns those runs' outcomes, in start order. The
    /// first call anchors each cron schedule at the virtual time (earlier ticks are not
    /// back-filled); move the clock ([`TestEnv::clock`]) past a tick, then call it again.
    ///
    /// ```ignore
    /// let env = TestEnv::builder().workflow_dir("workflows").starting_at(t("01:59:30")).build();
    /// assert!(env.fire_triggers().await.is_empty());
    /// env.clock().advance(Duration::from_secs(60));
    /// let [(run, outcome)] = &env.fire_triggers().await[..] else { panic!() };
    /// ```
    ///
    /// # Panics
    /// When a trigger fails (a store error), with the cause.
    pub async fn fire_triggers(&self) -> Vec<(RunId, Outcome<Value>)> {
        let started = self
            .engine
            .triggers()
            .fire_due(&self.engine)
            .await
            .unwrap_or_else(|e| panic!("firing the due triggers failed: {e}"));
        let mut outcomes = Vec::with_capacity(started.len());
        for id in started {
            let outcome = self.continue_run(&id).await;
            outcomes.push((id, outcome));
        }
        outcomes
    }

    /// Delivers `payload` to the hook with `token` and continues its run.
    ///
    /// # Errors
    /// The engine's refusal: an unknown token, a payload that does not match the hook's
    /// schema (the hook stays open), a second delivery.
    pub async fn resume_hook(
        &self,
        token: &str,
        payload: impl Serialize,
    ) -> Result<Outcome<Value>, reprise::EngineError> {
        let payload = serde_json::to_value(payload)?;
        let id = self.engine.resume_hook(token, payload).await?;
        Ok(self.continue_run(&id).await)
    }

    /// Sends signal `name` with `payload` to run `id` ([`Engine::signal`], no idempotency
    /// key) and continues the run until it ends or waits again.
    ///
    /// # Errors
    /// The engine's refusal: an unknown run or signal name (404), an ended run (409), a
    /// payload that does not match the signal's type (422); nothing is delivered then.
    pub async fn signal(
        &self,
        id: &RunId,
        name: &str,
        payload: impl Serialize,
    ) -> Result<Outcome<Value>, reprise::EngineError> {
        let payload = serde_json::to_value(payload)?;
        self.engine.signal(id, name, payload, None).await?;
        Ok(self.continue_run(id).await)
    }

    /// Emits event `name` with `data` ([`Engine::emit`], a fresh event id) and continues
    /// every run it was delivered to or started, oldest first. Returns what `emit` reported.
    ///
    /// # Errors
    /// The engine's refusal of the event (a bad name, data over the payload limit).
    pub async fn emit(
        &self,
        name: &str,
        data: impl Serialize,
    ) -> Result<reprise::Emitted, reprise::EngineError> {
        let data = serde_json::to_value(data)?;
        let emitted = self.engine.emit(name, data, None).await?;
        let waiting = self.engine.store().event_waiters(name).await?;
        for id in waiting.iter().chain(&emitted.started) {
            self.continue_run(id).await;
        }
        Ok(emitted)
    }

    /// The run's event log.
    ///
    /// # Panics
    /// When the store fails.
    pub async fn log(&self, run: &RunId) -> crate::RunLog {
        let events = self
            .engine
            .store()
            .events(run)
            .await
            .unwrap_or_else(|e| panic!("cannot read the log of run {run}: {e}"));
        crate::RunLog::new(events)
    }

    /// How many `step_completed` events the run has for ids starting with `prefix`.
    pub async fn completed_count(&self, run: &RunId, prefix: &str) -> usize {
        self.log(run)
            .await
            .events()
            .iter()
            .filter(|e| e.event.kind == EventKind::StepCompleted)
            .filter(|e| {
                e.event
                    .correlation_id
                    .as_deref()
                    .is_some_and(|id| id.starts_with(prefix))
            })
            .count()
    }
}

fn typed<T: DeserializeOwned>(outcome: Outcome<Value>) -> Outcome<T> {
    match outcome {
        Outcome::Completed(output) => match serde_json::from_value(output) {
            Ok(output) => Outcome::Completed(output),
            Err(e) => Outcome::Failed(WorkflowError::new(
                "serde",
                format!("output does not deserialize: {e}"),
                false,
            )),
        },
        Outcome::Failed(error) => Outcome::Failed(error),
        Outcome::Suspended(waits) => Outcome::Suspended(waits),
    }
}

/// Stub helpers.
pub mod stubs {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use reprise::ActionError;

    /// A stub body that fails `n` times with `error`, then answers with `then(input)`: for
    /// retry tests.
    ///
    /// ```ignore
    /// env.stub(&charge_card, stubs::fail_times(2, ActionError::transient("503"), |i: Charge| Ok(Receipt::for(i))));
    /// ```
    pub fn fail_times<I, O, F>(
        n: u32,
        error: ActionError,
        then: F,
    ) -> impl Fn(I) -> std::future::Ready<Result<O, ActionError>> + Send + Sync + 'static
    where
        F: Fn(I) -> Result<O, ActionError> + Send + Sync + 'static,
    {
        let failures = Arc::new(AtomicU32::new(0));
        move |input| {
            let failed = failures.fetch_add(1, Ordering::SeqCst);
            std::future::ready(if failed < n {
                Err(error.clone())
            } else {
                then(input)
            })
        }
    }
}
