//! Retention and purging (`Engine::purge_runs`, `EngineBuilder::retention`,
//! `#[workflow(retention = "…")]`, the sweep loop `run_retention` that `dev` and `worker`
//! run, `POST /runs/purge` over real HTTP on SQLite).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reprise::event::{RunFilter, RunId, RunStatus};
use reprise::prelude::*;
use reprise::store::{PurgeFilter, SharedStore, SqliteStore};
use reprise::{Clock, EngineBuilder, EngineError, RunOutcome};
use serde_json::{Value, json};

/// A clock moved by hand.
struct HandClock(Mutex<DateTime<Utc>>);

impl HandClock {
    fn new() -> Arc<HandClock> {
        let start = DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        Arc::new(HandClock(Mutex::new(start)))
    }
    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += chrono::Duration::from_std(by).unwrap();
    }
}

impl Clock for HandClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
struct N {
    n: i64,
}

#[action]
async fn keep_step(input: N) -> Result<N, ActionError> {
    if input.n < 0 {
        return Err(ActionError::permanent("negative"));
    }
    Ok(input)
}

/// Kept as long as the engine-wide retention says.
#[workflow(slug = "keep-default")]
async fn keep_default(input: N) -> Result<N, WorkflowError> {
    Ok(keep_step.run(input).await?)
}

/// Kept one hour only.
#[workflow(slug = "keep-short", retention = "1h")]
async fn keep_short(input: N) -> Result<N, WorkflowError> {
    Ok(keep_step.run(input).await?)
}

/// Kept longer than the engine-wide retention.
#[workflow(slug = "keep-long", retention = "90days")]
async fn keep_long(input: N) -> Result<N, WorkflowError> {
    Ok(keep_step.run(input).await?)
}

fn sqlite() -> (SharedStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store: SharedStore = Arc::new(SqliteStore::open(dir.path().join("runs.db")).unwrap());
    (store, dir)
}

fn builder(store: SharedStore, clock: Arc<HandClock>) -> EngineBuilder {
    Engine::builder()
        .store(store)
        .clock(clock)
        .register(keep_default)
        .register(keep_short)
        .register(keep_long)
        .register(keep_step)
}

async fn finished(engine: &Engine, slug: &str, n: i64) -> RunId {
    let id = engine
        .start_json(slug, json!({ "n": n }), reprise::Trigger::Code)
        .await
        .unwrap();
    let outcome = engine.drive(&id).await.unwrap().outcome;
    assert!(
        matches!(outcome, RunOutcome::Completed(_) | RunOutcome::Failed(_)),
        "{outcome:?}"
    );
    id
}

async fn exists(engine: &Engine, id: &RunId) -> bool {
    engine.store().run(id).await.unwrap().is_some()
}

#[tokio::test]
async fn the_retention_sweep_purges_ended_runs_past_their_workflows_retention() {
    let (store, _dir) = sqlite();
    let clock = HandClock::new();
    let engine = builder(store, clock.clone())
        .retention(30 * DAY)
        .build()
        .unwrap();
    assert_eq!(engine.retention_of("keep-short"), Some(HOUR));
    assert_eq!(engine.retention_of("keep-default"), Some(30 * DAY));
    assert_eq!(engine.retention_of("keep-long"), Some(90 * DAY));
    assert_eq!(engine.retention_of("keep-step"), Some(30 * DAY));

    let short = finished(&engine, "keep-short", 1).await;
    let short_failed = finished(&engine, "keep-short", -1).await;
    let default = finished(&engine, "keep-default", 2).await;
    let long = finished(&engine, "keep-long", 3).await;
    // Never executed: queued for ever, and never purged however old.
    let unfinished = engine
        .start_json("keep-short", json!({ "n": 4 }), reprise::Trigger::Code)
        .await
        .unwrap();

    assert!(
        engine.enforce_retention().await.unwrap().is_empty(),
        "nothing is old yet"
    );
    clock.advance(2 * HOUR);
    let purged = engine.enforce_retention().await.unwrap();
    assert_eq!(purged, [("keep-short".to_owned(), 2)].into_iter().collect());
    assert!(!exists(&engine, &short).await && !exists(&engine, &short_failed).await);
    assert!(engine.store().events(&short).await.unwrap().is_empty());
    assert!(exists(&engine, &default).await && exists(&engine, &long).await);

    clock.advance(31 * DAY);
    let purged = engine.enforce_retention().await.unwrap();
    assert_eq!(
        purged,
        [("keep-default".to_owned(), 1)].into_iter().collect()
    );
    assert!(exists(&engine, &long).await, "its own retention is longer");

    clock.advance(60 * DAY);
    let purged = engine.enforce_retention().await.unwrap();
    assert_eq!(purged, [("keep-long".to_owned(), 1)].into_iter().collect());
    let run = engine.get_run(&unfinished).await.unwrap();
    assert_eq!(
        run.status,
        RunStatus::Queued,
        "an unfinished run is never purged"
    );
}

#[tokio::test]
async fn without_any_retention_nothing_is_swept_and_the_loop_returns_at_once() {
    let (store, _dir) = sqlite();
    let clock = HandClock::new();
    let engine = Engine::builder()
        .store(store)
        .clock(clock.clone())
        .register(keep_default)
        .register(keep_step)
        .build()
        .unwrap();
    let id = finished(&engine, "keep-default", 1).await;
    clock.advance(3650 * DAY);
    assert!(!engine.has_retention());
    assert!(engine.enforce_retention().await.unwrap().is_empty());
    // Returns although the shutdown never comes.
    reprise::run_retention(engine.clone(), std::future::pending()).await;
    assert!(exists(&engine, &id).await);
}

#[tokio::test]
async fn the_retention_loop_dev_and_worker_run_purges_at_every_interval() {
    let (store, _dir) = sqlite();
    let clock = HandClock::new();
    let engine = builder(store, clock.clone())
        .retention(DAY)
        .retention_sweep_every(Duration::from_millis(20))
        .build()
        .unwrap();
    let first = finished(&engine, "keep-default", 1).await;
    clock.advance(2 * DAY);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let sweeping = tokio::spawn(reprise::run_retention(engine.clone(), async {
        let _ = stopped.await;
    }));
    wait_until_gone(&engine, &first).await;
    // A later run is purged by a later sweep of the same loop.
    let second = finished(&engine, "keep-default", 2).await;
    assert!(exists(&engine, &second).await, "not old yet");
    clock.advance(2 * DAY);
    wait_until_gone(&engine, &second).await;
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), sweeping)
        .await
        .expect("the loop stops on shutdown")
        .unwrap();
}

async fn wait_until_gone(engine: &Engine, id: &RunId) {
    for _ in 0..500 {
        if !exists(engine, id).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("run {id} was not purged by the retention loop");
}

#[tokio::test]
async fn a_zero_retention_is_a_build_error() {
    let error = Engine::builder()
        .retention(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("retention of zero"), "{error}");
    let error = Engine::builder()
        .retention_sweep_every(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("busy loop"), "{error}");
}

#[tokio::test]
async fn purge_runs_dry_run_deletes_nothing_and_an_unfinished_status_is_refused() {
    let (store, _dir) = sqlite();
    let clock = HandClock::new();
    let engine = builder(store, clock.clone()).build().unwrap();
    let done = finished(&engine, "keep-default", 1).await;
    let failed = finished(&engine, "keep-default", -1).await;
    clock.advance(HOUR);
    let before = engine.now();
    let dry = engine
        .purge_runs(
            &PurgeFilter {
                dry_run: true,
                ..PurgeFilter::before(before)
            },
            "test",
        )
        .await
        .unwrap();
    assert!(dry.dry_run);
    assert_eq!(dry.count, 2);
    assert_eq!(dry.runs.len(), 2);
    assert!(exists(&engine, &done).await && exists(&engine, &failed).await);

    let refused = engine
        .purge_runs(
            &PurgeFilter {
                status: Some(RunStatus::Running),
                ..PurgeFilter::before(before)
            },
            "test",
        )
        .await
        .unwrap_err();
    assert!(
        matches!(refused, EngineError::InvalidRequest(_)),
        "{refused}"
    );

    let report = engine
        .purge_runs(
            &PurgeFilter {
                status: Some(RunStatus::Failed),
                ..PurgeFilter::before(before)
            },
            "test",
        )
        .await
        .unwrap();
    assert_eq!(report.count, 1);
    assert!(!exists(&engine, &failed).await && exists(&engine, &done).await);
}

/// Many batches: a purge goes on until nothing matches, one small batch at a time.
#[tokio::test]
async fn purge_runs_goes_through_every_batch() {
    let (store, _dir) = sqlite();
    let clock = HandClock::new();
    let engine = builder(store, clock.clone()).build().unwrap();
    for n in 0..25 {
        finished(&engine, "keep-default", n).await;
    }
    clock.advance(HOUR);
    let report = engine
        .purge_runs(
            &PurgeFilter {
                limit: 4,
                ..PurgeFilter::before(engine.now())
            },
            "test",
        )
        .await
        .unwrap();
    assert_eq!(report.count, 25);
    assert_eq!(report.by_workflow.get("keep-default"), Some(&25));
    assert!(
        engine
            .list_runs(&RunFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
}

async fn post(client: &reqwest::Client, url: &str, body: Value) -> (u16, Value) {
    let response = client.post(url).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn post_runs_purge_over_http_counts_deletes_and_refuses_bad_requests() {
    let (store, _dir) = sqlite();
    let clock = HandClock::new();
    let engine = builder(store, clock.clone()).build().unwrap();
    let done = finished(&engine, "keep-default", 1).await;
    let failed = finished(&engine, "keep-short", -1).await;
    let unfinished = engine
        .start_json("keep-default", json!({ "n": 9 }), reprise::Trigger::Code)
        .await
        .unwrap();
    clock.advance(2 * DAY);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/runs/purge", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = reprise::http::HttpOptions {
        api_token: None,
        ..Default::default()
    };
    let server = tokio::spawn(reprise::http::serve(
        engine.clone(),
        listener,
        options,
        async {
            let _ = stopped.await;
        },
    ));
    let client = reqwest::Client::new();

    let (status, body) = post(&client, &base, json!({ "before": "1d", "dry_run": true })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["dry_run"], true);
    assert_eq!(body["count"], 2);
    assert_eq!(body["runs"].as_array().unwrap().len(), 2, "{body}");
    assert!(exists(&engine, &done).await, "a dry run deletes nothing");
    let (status, body) = post(
        &client,
        &base,
        json!({ "before": "1d", "dry_run": true, "limit": 1 }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            body["count"].clone(),
            body["runs"].as_array().unwrap().len()
        ),
        (json!(2), 1)
    );

    for (bad, says) in [
        (
            json!({ "before": "last tuesday" }),
            "neither a time nor an age",
        ),
        (
            json!({ "before": "1d", "status": "running" }),
            "have not ended",
        ),
        (json!({ "before": "1d", "status": "exploded" }), "status"),
        (json!({ "before": "1d", "limit": 0 }), "out of range"),
        (
            json!({ "before": "1d", "olderThan": "2d" }),
            "unknown field",
        ),
        (json!({}), "missing field `before`"),
    ] {
        let (status, body) = post(&client, &base, bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["code"], "bad_request", "{body}");
        assert!(
            body["error"].as_str().unwrap().contains(says),
            "{bad}: {body}"
        );
    }
    assert!(exists(&engine, &done).await && exists(&engine, &failed).await);

    let (status, body) = post(
        &client,
        &base,
        json!({ "before": "2026-03-02T12:00:00Z", "workflow": "keep-short" }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["count"], 1);
    assert_eq!(body["by_workflow"], json!({ "keep-short": 1 }));
    assert!(body.get("runs").is_none(), "{body}");
    assert!(!exists(&engine, &failed).await);

    let (status, body) = post(&client, &base, json!({ "before": "1d" })).await;
    assert_eq!((status, body["count"].clone()), (200, json!(1)), "{body}");
    assert!(!exists(&engine, &done).await);
    assert!(
        exists(&engine, &unfinished).await,
        "an unfinished run is never purged"
    );

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// A store whose purges fail while `failing` is set (a database that went away).
struct FailingPurges {
    inner: SharedStore,
    failing: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl reprise::store::Store for FailingPurges {
    async fn create_run(
        &self,
        record: reprise::event::RunRecord,
        created: reprise::event::NewEvent,
    ) -> Result<(), EngineError> {
        self.inner.create_run(record, created).await
    }
    async fn append(&self, append: reprise::store::Append) -> Result<(), EngineError> {
        self.inner.append(append).await
    }
    async fn run(&self, id: &RunId) -> Result<Option<reprise::event::RunRecord>, EngineError> {
        self.inner.run(id).await
    }
    async fn events(&self, id: &RunId) -> Result<Vec<reprise::event::Event>, EngineError> {
        self.inner.events(id).await
    }
    async fn list_runs(
        &self,
        filter: &RunFilter,
    ) -> Result<Vec<reprise::event::RunRecord>, EngineError> {
        self.inner.list_runs(filter).await
    }
    async fn create_run_once(
        &self,
        key: &str,
        record: reprise::event::RunRecord,
        created: reprise::event::NewEvent,
    ) -> Result<Option<RunId>, EngineError> {
        self.inner.create_run_once(key, record, created).await
    }
    async fn acquire(
        &self,
        id: &RunId,
        owner: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<reprise::store::Acquired, EngineError> {
        self.inner.acquire(id, owner, now, expires_at).await
    }
    async fn claim(
        &self,
        request: &reprise::queue::ClaimRequest<'_>,
    ) -> Result<Vec<reprise::store::Lease>, EngineError> {
        self.inner.claim(request).await
    }
    async fn renew(
        &self,
        lease: &reprise::store::Lease,
        expires_at: DateTime<Utc>,
    ) -> Result<Option<reprise::store::Lease>, EngineError> {
        self.inner.renew(lease, expires_at).await
    }
    async fn release(&self, lease: &reprise::store::Lease) -> Result<(), EngineError> {
        self.inner.release(lease).await
    }
    async fn request_pause(
        &self,
        id: &reprise::event::RunId,
        by: Option<&str>,
    ) -> Result<(), reprise::EngineError> {
        self.inner.request_pause(id, by).await
    }
    async fn set_workflow_pause(
        &self,
        workflow: &str,
        pause: Option<&reprise::store::WorkflowPause>,
    ) -> Result<bool, reprise::EngineError> {
        self.inner.set_workflow_pause(workflow, pause).await
    }
    async fn workflow_pauses(
        &self,
    ) -> Result<Vec<reprise::store::WorkflowPause>, reprise::EngineError> {
        self.inner.workflow_pauses().await
    }
    async fn request_cancel(&self, id: &RunId) -> Result<(), EngineError> {
        self.inner.request_cancel(id).await
    }
    async fn next_wake(&self) -> Result<Option<DateTime<Utc>>, EngineError> {
        self.inner.next_wake().await
    }
    async fn cursor(&self, name: &str) -> Result<Option<Value>, EngineError> {
        self.inner.cursor(name).await
    }
    async fn set_cursor(&self, name: &str, value: &Value) -> Result<(), EngineError> {
        self.inner.set_cursor(name, value).await
    }
    async fn purge_runs(
        &self,
        filter: &PurgeFilter,
    ) -> Result<reprise::store::PurgeBatch, EngineError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(EngineError::Store("the database went away".into()));
        }
        self.inner.purge_runs(filter).await
    }
}

/// Log lines written by the subscriber of this test's thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A sweep that fails is logged at warn once, however many sweeps fail, the loop goes on,
/// and it purges once the store works again (logged at info, with the count per workflow).
#[tokio::test]
async fn a_failing_sweep_is_logged_once_and_the_loop_goes_on() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let store = Arc::new(FailingPurges {
        inner: Arc::new(reprise::store::MemoryStore::new()),
        failing: std::sync::atomic::AtomicBool::new(true),
    });
    let clock = HandClock::new();
    let engine = builder(store.clone(), clock.clone())
        .retention(HOUR)
        .retention_sweep_every(Duration::from_millis(10))
        .build()
        .unwrap();
    let id = finished(&engine, "keep-default", 1).await;
    clock.advance(2 * HOUR);
    let text = || String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    // One loop: sweeps fail until well after the first warning, then the store works
    // again and the next sweep purges.
    let engine_in_loop = engine.clone();
    let run = id.clone();
    let store_in_loop = store.clone();
    let captured_in_loop = captured.clone();
    let warned = move || {
        String::from_utf8_lossy(&captured_in_loop.0.lock().unwrap())
            .matches("retention sweep failed")
            .count()
    };
    reprise::run_retention(engine.clone(), async move {
        while warned() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(warned(), 1, "logged once, not per sweep");
        assert!(exists(&engine_in_loop, &run).await);
        store_in_loop
            .failing
            .store(false, std::sync::atomic::Ordering::SeqCst);
        while exists(&engine_in_loop, &run).await {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let text = text();
    assert_eq!(text.matches("retention sweep failed").count(), 1, "{text}");
    assert!(text.contains("the retention sweep works again"), "{text}");
    assert!(
        text.contains("ended runs past their retention purged")
            && text.contains("keep-default")
            && text.contains("count=1"),
        "{text}"
    );
}
