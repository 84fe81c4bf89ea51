//! Poison runs (issue 12, defects 1 and 7): runs this binary cannot execute are backed off
//! and parked, never claimed in a hot loop; listings skip the rows that do not decode and
//! report them; `runs resume` goes on past a run it cannot execute.
//!
//! Each store is driven by real `Worker`s and corrupted with plain SQL, as a deploy that
//! removed a workflow, a second application on the same database or a damaged row would.
//! The Postgres tests read `REPRISE_TEST_POSTGRES_URL` and are skipped, with a notice, when
//! it is unset. Run with `--nocapture` to see the claims per second measured on a bad run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reprise::event::{
    Event, EventKind, EventPayload, NewEvent, RunFilter, RunId, RunRecord, RunStatus,
};
use reprise::prelude::*;
use reprise::store::{
    Acquired, Append, Lease, RunListing, RunTriage, SharedStore, SqliteStore, Store, StoreError,
    StoreErrorKind,
};
use reprise::{EngineError, RetryPolicy, Worker, WorkerOptions};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Count {
    n: i64,
}

/// One step, so a healthy run has something to record.
#[action]
async fn poison_step(input: Count) -> Result<Count, ActionError> {
    Ok(Count { n: input.n + 1 })
}

#[workflow(slug = "poison-ok")]
async fn poison_ok(input: Count) -> Result<Count, WorkflowError> {
    Ok(poison_step.run(input).await?)
}

/// Strikes in all before a run is parked, in these tests.
const STRIKES: u32 = 5;

/// 200 ms, doubling: deferred 200 + 400 + 800 + 1,600 ms, parked at the fifth strike.
fn policy() -> RetryPolicy {
    RetryPolicy::exponential(Duration::from_millis(200)).max_attempts(STRIKES)
}

fn engine(store: &SharedStore, owner: &str) -> Engine {
    Engine::builder()
        .store(store.clone())
        .register(poison_ok)
        .register(poison_step)
        .unexecutable_policy(policy())
        .lease(Duration::from_secs(1))
        .owner_id(owner)
        .build()
        .unwrap()
}

/// Workers on their own engines (distinct owners, as separate processes would be), until
/// the returned sender is dropped.
fn workers(store: &SharedStore, count: usize) -> tokio::sync::watch::Sender<bool> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    for i in 0..count {
        let worker = Worker::new(
            &engine(store, &format!("poison-worker-{i}")),
            WorkerOptions {
                poll_interval: Duration::from_millis(20),
                shutdown_grace: Duration::from_secs(2),
                ..WorkerOptions::default()
            },
        );
        let mut stopped = stopped.clone();
        tokio::spawn(worker.run(async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }));
    }
    stop
}

async fn wait_status(store: &SharedStore, id: &RunId, status: RunStatus, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let record = store.run(id).await.unwrap().unwrap();
        if record.status == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "run {id} is {} after {within:?}, expected {status}",
            record.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Plain SQL on the database under a store: how the tests corrupt rows and read fences.
enum Raw {
    Sqlite(PathBuf),
    #[cfg(feature = "postgres")]
    Postgres(tokio_postgres::Client),
}

impl Raw {
    /// Runs `sql` (SQLite text; `runs`/`events` become `reprise_runs`/`reprise_events`
    /// and `?1` becomes `$1` on Postgres) with the run id as its one parameter.
    async fn exec(&self, sql: &str, id: &RunId) {
        match self {
            Raw::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.busy_timeout(Duration::from_secs(5)).unwrap();
                conn.execute(sql, [id.as_str()]).unwrap();
            }
            #[cfg(feature = "postgres")]
            Raw::Postgres(client) => {
                let sql = sql
                    .replace("UPDATE runs", "UPDATE reprise_runs")
                    .replace("INTO events", "INTO reprise_events")
                    .replace("UPDATE events", "UPDATE reprise_events")
                    .replace("?1", "$1::text");
                client.execute(&sql, &[&id.as_str()]).await.unwrap();
            }
        }
    }

    /// The run's fencing token: how many times its lease was taken (each claim takes it).
    async fn fence(&self, id: &RunId) -> i64 {
        match self {
            Raw::Sqlite(path) => rusqlite::Connection::open(path)
                .unwrap()
                .query_row("SELECT fence FROM runs WHERE id = ?1", [id.as_str()], |r| {
                    r.get(0)
                })
                .unwrap(),
            #[cfg(feature = "postgres")]
            Raw::Postgres(client) => client
                .query_one(
                    "SELECT fence FROM reprise_runs WHERE id = $1::text",
                    &[&id.as_str()],
                )
                .await
                .unwrap()
                .get(0),
        }
    }
}

/// A store on a fresh SQLite file, and plain SQL on it.
fn sqlite(dir: &Path) -> (SharedStore, Raw) {
    let path = dir.join("reprise.db");
    let store: SharedStore = Arc::new(SqliteStore::open(&path).unwrap());
    (store, Raw::Sqlite(path))
}

/// A store in a fresh Postgres schema (dropped with the guard), and plain SQL on it;
/// `None` when `REPRISE_TEST_POSTGRES_URL` is unset.
#[cfg(feature = "postgres")]
async fn postgres() -> Option<(SharedStore, Raw, impl Drop)> {
    let (store, schema) = crate::postgres::fresh_store().await?;
    let url = crate::postgres::test_url()?;
    let name = store.schema().unwrap().to_owned();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
        .batch_execute(&format!("SET search_path TO \"{name}\""))
        .await
        .unwrap();
    Some((Arc::new(store), Raw::Postgres(client), schema))
}

/// The `run_deferred` events of a log: (strike, when written, when due again).
fn deferrals(events: &[Event]) -> Vec<(u32, DateTime<Utc>, DateTime<Utc>)> {
    events
        .iter()
        .filter(|e| e.event.kind == EventKind::RunDeferred)
        .map(|e| match e.event.decode_payload().unwrap() {
            EventPayload::RunDeferred {
                strike, wake_at, ..
            } => (strike, e.event.at, wake_at),
            other => panic!("not a deferral: {other:?}"),
        })
        .collect()
}

/// Asserts that run `id` was put off `STRIKES - 1` times, each strike claimed no earlier
/// than the previous one's wake-up time (so at most one claim per backoff period), then
/// parked: `failed`, kind `unexecutable`, the reason naming `needle`.
async fn assert_backed_off_then_parked(store: &SharedStore, id: &RunId, needle: &str) {
    let record = store.run(id).await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Failed);
    let error: WorkflowError = serde_json::from_value(record.error.clone().unwrap()).unwrap();
    assert_eq!(error.kind, "unexecutable", "{error:?}");
    assert!(!error.retryable);
    assert!(error.message.contains(needle), "{}", error.message);
    assert_eq!(error.details.as_ref().unwrap()["strikes"], json!(STRIKES));

    let events = store.events(id).await.unwrap_or_default();
    if events.is_empty() {
        return; // an undecodable log: the count is checked through `triage` instead
    }
    let deferred = deferrals(&events);
    let strikes: Vec<u32> = deferred.iter().map(|d| d.0).collect();
    assert_eq!(strikes, (1..STRIKES).collect::<Vec<_>>());
    for (strike, at, wake_at) in &deferred {
        let delay = (*wake_at - *at).to_std().unwrap();
        assert_eq!(delay, policy().delay(*strike), "strike {strike}");
    }
    for pair in deferred.windows(2) {
        assert!(
            pair[1].1 >= pair[0].2,
            "strike {} came at {}, before strike {}'s wake-up at {}",
            pair[1].0,
            pair[1].1,
            pair[0].0,
            pair[0].2
        );
    }
    let failed = events.last().unwrap();
    assert_eq!(failed.event.kind, EventKind::RunFailed);
    assert!(failed.event.at >= deferred.last().unwrap().2);
}

/// A run of a workflow this binary lacks, among healthy ones, under two workers: claimed
/// once per strike (at most once per backoff period), then parked; the healthy run
/// completes meanwhile. Prints the claims per second on the bad run.
async fn unknown_workflow_is_backed_off_then_parked(label: &str, store: SharedStore, raw: Raw) {
    let starter = engine(&store, "poison-starter");
    let bad = starter.start(&poison_ok, Count { n: 1 }).await.unwrap();
    let good = starter.start(&poison_ok, Count { n: 10 }).await.unwrap();
    raw.exec(
        "UPDATE runs SET workflow = 'removed-workflow' WHERE id = ?1",
        &bad,
    )
    .await;

    let started = Instant::now();
    let stop = workers(&store, 2);
    wait_status(&store, &good, RunStatus::Completed, Duration::from_secs(10)).await;
    wait_status(&store, &bad, RunStatus::Failed, Duration::from_secs(20)).await;
    let elapsed = started.elapsed();
    let claims = raw.fence(&bad).await;
    // Nothing claims a parked run: the count stays.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(raw.fence(&bad).await, claims);
    drop(stop);

    println!(
        "{label}: a run of an unknown workflow was claimed {claims} times in {:.2} s \
         ({:.2} claims/s) by 2 workers, then parked \
         (policy 200 ms doubling, {STRIKES} strikes)",
        elapsed.as_secs_f64(),
        claims as f64 / elapsed.as_secs_f64(),
    );
    assert_eq!(
        claims,
        i64::from(STRIKES),
        "one claim per strike, none in between"
    );
    assert_backed_off_then_parked(&store, &bad, "removed-workflow").await;
    assert_eq!(
        store.run(&good).await.unwrap().unwrap().output,
        Some(json!({ "n": 11 }))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_run_of_an_unknown_workflow_is_backed_off_then_parked() {
    let dir = tempfile::tempdir().unwrap();
    let (store, raw) = sqlite(dir.path());
    unknown_workflow_is_backed_off_then_parked("SQLite", store, raw).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_run_of_an_unknown_workflow_is_backed_off_then_parked() {
    let Some((store, raw, _schema)) = postgres().await else {
        return;
    };
    unknown_workflow_is_backed_off_then_parked("Postgres", store, raw).await;
}

/// A run whose log holds a row that does not decode (garbage written straight into the
/// events table) is struck and parked like a run of an unknown workflow.
async fn undecodable_event_is_backed_off_then_parked(store: SharedStore, raw: Raw, garbage: &str) {
    let starter = engine(&store, "poison-starter");
    let bad = starter.start(&poison_ok, Count { n: 1 }).await.unwrap();
    raw.exec(garbage, &bad).await;
    raw.exec("UPDATE runs SET next_seq = 2 WHERE id = ?1", &bad)
        .await;
    assert!(matches!(
        store.events(&bad).await,
        Err(EngineError::Corrupt { .. })
    ));

    let stop = workers(&store, 1);
    wait_status(&store, &bad, RunStatus::Failed, Duration::from_secs(20)).await;
    drop(stop);
    assert_eq!(raw.fence(&bad).await, i64::from(STRIKES));
    assert_backed_off_then_parked(&store, &bad, "does not decode").await;
    assert_backed_off_then_parked(&store, &bad, "unknown event kind `garbage`").await;
    // The strikes are in the log, after the bad row, counted without decoding it; the
    // parking `run_failed` ended the count.
    let triage = store.triage(&bad).await.unwrap().unwrap();
    assert_eq!(triage.next_seq, 2 + u64::from(STRIKES));
    assert_eq!(triage.deferrals, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_an_undecodable_event_row_is_backed_off_then_parked() {
    let dir = tempfile::tempdir().unwrap();
    let (store, raw) = sqlite(dir.path());
    undecodable_event_is_backed_off_then_parked(
        store,
        raw,
        "INSERT INTO events (run_id, seq, kind, correlation_id, attempt, at, payload)
         VALUES (?1, 1, 'garbage', NULL, 1, 0, '{not json')",
    )
    .await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_undecodable_event_row_is_backed_off_then_parked() {
    let Some((store, raw, _schema)) = postgres().await else {
        return;
    };
    undecodable_event_is_backed_off_then_parked(
        store,
        raw,
        "INSERT INTO events (run_id, seq, kind, correlation_id, attempt, at, payload)
         VALUES (?1, 1, 'garbage', NULL, 1, 0, '\"garbage\"')",
    )
    .await;
}

/// A run row with a status this build does not know: never claimed, left out of every
/// listing and reported (`list_runs_with_skipped`), while the other runs list as before.
async fn unknown_status_is_skipped_and_reported(store: SharedStore, raw: Raw) {
    let starter = engine(&store, "poison-starter");
    let first = starter.start(&poison_ok, Count { n: 1 }).await.unwrap();
    let bad = starter.start(&poison_ok, Count { n: 2 }).await.unwrap();
    let last = starter.start(&poison_ok, Count { n: 3 }).await.unwrap();
    raw.exec("UPDATE runs SET status = 'exploded' WHERE id = ?1", &bad)
        .await;

    let listing: RunListing = starter
        .list_runs_with_skipped(&RunFilter::default())
        .await
        .unwrap();
    let listed: Vec<&RunId> = listing.runs.iter().map(|r| &r.id).collect();
    assert_eq!(listed, [&last, &first]);
    assert_eq!(listing.skipped.len(), 1);
    assert_eq!(listing.skipped[0].run_id, bad);
    assert!(
        listing.skipped[0]
            .reason
            .contains("unknown run status `exploded`"),
        "{}",
        listing.skipped[0].reason
    );
    // The plain listing leaves it out too (and logs it), rather than failing.
    let runs: Vec<RunId> = starter
        .list_runs(&RunFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(runs, [last.clone(), first.clone()]);
    // A status filter leaves out the row (it has no known status) and fails nothing.
    let queued = starter
        .list_runs_with_skipped(&RunFilter {
            status: Some(RunStatus::Queued),
            ..RunFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(queued.runs.len(), 2);

    // Workers run the others and never claim it.
    let stop = workers(&store, 1);
    wait_status(&store, &last, RunStatus::Completed, Duration::from_secs(10)).await;
    wait_status(
        &store,
        &first,
        RunStatus::Completed,
        Duration::from_secs(10),
    )
    .await;
    drop(stop);
    assert_eq!(raw.fence(&bad).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_an_unknown_status_row_is_skipped_by_listings_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (store, raw) = sqlite(dir.path());
    unknown_status_is_skipped_and_reported(store, raw).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_unknown_status_row_is_skipped_by_listings_and_reported() {
    let Some((store, raw, _schema)) = postgres().await else {
        return;
    };
    unknown_status_is_skipped_and_reported(store, raw).await;
}

/// `GET /runs` with a run row that does not decode: 200, the other runs, and the bad
/// run's id in `X-Reprise-Skipped`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_runs_answers_200_with_the_good_rows_and_names_the_skipped_one() {
    let dir = tempfile::tempdir().unwrap();
    let (store, raw) = sqlite(dir.path());
    let engine = engine(&store, "poison-http");
    let good = engine.start(&poison_ok, Count { n: 1 }).await.unwrap();
    let bad = engine.start(&poison_ok, Count { n: 2 }).await.unwrap();
    raw.exec("UPDATE runs SET status = 'exploded' WHERE id = ?1", &bad)
        .await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let options = reprise::http::HttpOptions {
        api_token: None,
        ..reprise::http::HttpOptions::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(reprise::http::serve(engine, listener, options, async {
        let _ = stopped.await;
    }));
    let response = reqwest::get(format!("{base}/runs")).await.unwrap();
    assert_eq!(response.status(), 200);
    let skipped = response
        .headers()
        .get("x-reprise-skipped")
        .expect("the skipped run is named")
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(skipped, bad.as_str());
    let body: Value = response.json().await.unwrap();
    let ids: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [good.as_str()]);
    // Without bad rows, no header.
    let response = reqwest::get(format!("{base}/runs?status=queued"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("x-reprise-skipped").is_none());
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// `runs resume` (all) goes on past a run it cannot execute: the healthy run created after
/// it completes, the bad one is put off (one strike) and reported, and the exit code is not
/// 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_resume_goes_on_past_a_run_it_cannot_execute() {
    let dir = tempfile::tempdir().unwrap();
    let (store, raw) = sqlite(dir.path());
    let starter = engine(&store, "poison-starter");
    let bad = starter.start(&poison_ok, Count { n: 1 }).await.unwrap();
    let good = starter.start(&poison_ok, Count { n: 5 }).await.unwrap();
    raw.exec(
        "UPDATE runs SET workflow = 'removed-workflow' WHERE id = ?1",
        &bad,
    )
    .await;
    drop(starter);
    drop(store);

    let Raw::Sqlite(path) = &raw else {
        unreachable!()
    };
    let db = format!("sqlite://{}", path.display());
    let code = reprise::cli::run(["reprise", "--db", db.as_str(), "runs", "resume"], Ok).await;
    assert_ne!(code, 0, "a run was left behind");

    let store: SharedStore = Arc::new(SqliteStore::open(path).unwrap());
    let record = store.run(&good).await.unwrap().unwrap();
    assert_eq!(
        record.status,
        RunStatus::Completed,
        "the healthy run resumed"
    );
    assert_eq!(record.output, Some(json!({ "n": 6 })));
    let record = store.run(&bad).await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Queued);
    let events = store.events(&bad).await.unwrap();
    let deferred = deferrals(&events);
    assert_eq!(deferred.len(), 1, "one strike");
    assert_eq!(record.wake_at, Some(deferred[0].2));
}

/// `Engine::execute` on a run whose workflow this binary lacks: the error, and a strike in
/// the log; called again, it tries at once (not waiting for the wake-up time) and strikes
/// again; at the last strike it returns the parked run. The memory store too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_strikes_a_run_it_cannot_execute_and_parks_it_at_the_last_strike() {
    let store: SharedStore = Arc::new(reprise::store::MemoryStore::new());
    let starter = engine(&store, "poison-starter");
    let id = starter.start(&poison_ok, Count { n: 1 }).await.unwrap();
    // An engine of "another application": it has none of these workflows.
    let other = Engine::builder()
        .store(store.clone())
        .unexecutable_policy(policy())
        .build()
        .unwrap();
    for strike in 1..STRIKES {
        let error = other.drive(&id).await.unwrap_err();
        assert!(
            matches!(&error, EngineError::UnknownWorkflow(slug) if slug == "poison-ok"),
            "{error}"
        );
        let events = store.events(&id).await.unwrap();
        assert_eq!(deferrals(&events).len(), strike as usize);
        let record = store.run(&id).await.unwrap().unwrap();
        assert_eq!(record.status, RunStatus::Queued);
        assert!(record.wake_at.unwrap() > other.now());
    }
    let execution = other.execute(&id).await.unwrap();
    match execution.outcome {
        reprise::RunOutcome::Failed(error) => {
            assert_eq!(error.kind, "unexecutable");
            assert!(error.message.contains("poison-ok"), "{}", error.message);
        }
        other => panic!("expected the run parked, got {other:?}"),
    }
    assert_eq!(
        store.run(&id).await.unwrap().unwrap().status,
        RunStatus::Failed
    );
    // A parked run stays parked.
    assert!(matches!(
        other.execute(&id).await.unwrap().outcome,
        reprise::RunOutcome::Failed(_)
    ));
    assert_eq!(
        store.triage(&id).await.unwrap().unwrap().next_seq,
        1 + u64::from(STRIKES)
    );
}

/// `workflows check` of a parked run, once the workflow is back: its history is all a
/// replay can be held to (the body never ran past it), so it replays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_run_replays_once_its_workflow_is_back() {
    let store: SharedStore = Arc::new(reprise::store::MemoryStore::new());
    let starter = engine(&store, "poison-starter");
    let id = starter.start(&poison_ok, Count { n: 1 }).await.unwrap();
    let other = Engine::builder()
        .store(store.clone())
        .unexecutable_policy(RetryPolicy::exponential(Duration::from_millis(1)).max_attempts(1))
        .build()
        .unwrap();
    let parked = other.execute(&id).await.unwrap().outcome;
    assert!(
        matches!(&parked, reprise::RunOutcome::Failed(e) if e.kind == "unexecutable"),
        "{parked:?}"
    );
    let export = starter.export_run(&id).await.unwrap();
    let judged = starter.check_replay(&export).await.unwrap();
    assert!(judged.is_ok(), "{:?}", judged.err());
}

/// A run that the binary can execute again (a newer worker has the workflow) executes
/// normally, and its strike count starts afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_run_completes_once_a_worker_has_its_workflow() {
    let store: SharedStore = Arc::new(reprise::store::MemoryStore::new());
    let newer = engine(&store, "poison-newer");
    let id = newer.start(&poison_ok, Count { n: 1 }).await.unwrap();
    let older = Engine::builder()
        .store(store.clone())
        .unexecutable_policy(policy())
        .build()
        .unwrap();
    older.execute(&id).await.unwrap_err();
    older.execute(&id).await.unwrap_err();
    assert_eq!(store.triage(&id).await.unwrap().unwrap().deferrals, 2);
    let execution = newer.drive(&id).await.unwrap();
    assert_eq!(
        execution.outcome,
        reprise::RunOutcome::Completed(json!({ "n": 2 }))
    );
    assert_eq!(store.triage(&id).await.unwrap().unwrap().deferrals, 0);
}

/// A store whose reads of one run fail (as a store that is down for it would), counting
/// how often that run is claimed.
struct FailingReads {
    inner: SharedStore,
    run: std::sync::Mutex<Option<RunId>>,
    claims: AtomicUsize,
}

impl FailingReads {
    fn target(&self) -> Option<RunId> {
        self.run.lock().unwrap().clone()
    }
}

#[async_trait]
impl Store for FailingReads {
    async fn create_run(&self, record: RunRecord, created: NewEvent) -> Result<(), EngineError> {
        self.inner.create_run(record, created).await
    }
    async fn append(&self, append: Append) -> Result<(), EngineError> {
        self.inner.append(append).await
    }
    async fn run(&self, id: &RunId) -> Result<Option<RunRecord>, EngineError> {
        if self.target().as_ref() == Some(id) {
            return Err(StoreError::new(StoreErrorKind::Unavailable, "the disk is gone").into());
        }
        self.inner.run(id).await
    }
    async fn events(&self, id: &RunId) -> Result<Vec<Event>, EngineError> {
        self.inner.events(id).await
    }
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, EngineError> {
        self.inner.list_runs(filter).await
    }
    async fn triage(&self, id: &RunId) -> Result<Option<RunTriage>, EngineError> {
        self.inner.triage(id).await
    }
    async fn create_run_once(
        &self,
        key: &str,
        record: RunRecord,
        created: NewEvent,
    ) -> Result<Option<RunId>, EngineError> {
        self.inner.create_run_once(key, record, created).await
    }
    async fn acquire(
        &self,
        id: &RunId,
        owner: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<Acquired, EngineError> {
        self.inner.acquire(id, owner, now, expires_at).await
    }
    async fn claim(
        &self,
        request: &reprise::queue::ClaimRequest<'_>,
    ) -> Result<Vec<Lease>, EngineError> {
        let leases = self.inner.claim(request).await?;
        let target = self.target();
        let hits = leases
            .iter()
            .filter(|l| Some(&l.run_id) == target.as_ref())
            .count();
        self.claims.fetch_add(hits, Ordering::SeqCst);
        Ok(leases)
    }
    async fn renew(
        &self,
        lease: &Lease,
        expires_at: DateTime<Utc>,
    ) -> Result<Option<Lease>, EngineError> {
        self.inner.renew(lease, expires_at).await
    }
    async fn release(&self, lease: &Lease) -> Result<(), EngineError> {
        self.inner.release(lease).await
    }
    async fn request_pause(&self, id: &RunId, by: Option<&str>) -> Result<(), EngineError> {
        self.inner.request_pause(id, by).await
    }
    async fn set_workflow_pause(
        &self,
        workflow: &str,
        pause: Option<&reprise::store::WorkflowPause>,
    ) -> Result<bool, EngineError> {
        self.inner.set_workflow_pause(workflow, pause).await
    }
    async fn workflow_pauses(&self) -> Result<Vec<reprise::store::WorkflowPause>, EngineError> {
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
        filter: &reprise::store::PurgeFilter,
    ) -> Result<reprise::store::PurgeBatch, EngineError> {
        self.inner.purge_runs(filter).await
    }
}

/// A claimed run whose execution fails with a store error before anything is appended is
/// not claimed straight back: its lease is kept until it expires (1 s here), so in 2.5 s
/// it is claimed at most 3 times, and the worker goes on running other runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_failing_with_a_store_error_is_not_claimed_again_before_its_lease_expires() {
    let failing = Arc::new(FailingReads {
        inner: Arc::new(reprise::store::MemoryStore::new()),
        run: std::sync::Mutex::new(None),
        claims: AtomicUsize::new(0),
    });
    let store: SharedStore = failing.clone();
    let starter = engine(&store, "poison-starter");
    let bad = starter.start(&poison_ok, Count { n: 1 }).await.unwrap();
    *failing.run.lock().unwrap() = Some(bad.clone());

    let stop = workers(&store, 1);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let good = starter.start(&poison_ok, Count { n: 1 }).await.unwrap();
    wait_status(&store, &good, RunStatus::Completed, Duration::from_secs(5)).await;
    drop(stop);
    let claims = failing.claims.load(Ordering::SeqCst);
    println!("a run failing with a store error was claimed {claims} times in 2.5 s");
    assert!((1..=3).contains(&claims), "{claims} claims in 2.5 s");
}

/// A claimable run whose own row does not decode (its input is not JSON): the engine
/// cannot read its record, so the strike is appended through the plain columns
/// (`Store::triage`); the run is parked like the others, and listings leave it out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_run_row_that_does_not_decode_is_backed_off_then_parked() {
    let dir = tempfile::tempdir().unwrap();
    let (store, raw) = sqlite(dir.path());
    let starter = engine(&store, "poison-starter");
    let bad = starter.start(&poison_ok, Count { n: 1 }).await.unwrap();
    raw.exec("UPDATE runs SET input = '{not json' WHERE id = ?1", &bad)
        .await;
    assert!(matches!(
        store.run(&bad).await,
        Err(EngineError::Corrupt { .. })
    ));

    let stop = workers(&store, 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.triage(&bad).await.unwrap().unwrap().status != Some(RunStatus::Failed) {
        assert!(Instant::now() < deadline, "not parked after 20 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(stop);
    assert_eq!(raw.fence(&bad).await, i64::from(STRIKES));
    let events = store.events(&bad).await.unwrap();
    let deferred = deferrals(&events);
    assert_eq!(deferred.len(), STRIKES as usize - 1);
    for pair in deferred.windows(2) {
        assert!(pair[1].1 >= pair[0].2, "claimed before its wake-up time");
    }
    match events.last().unwrap().event.decode_payload().unwrap() {
        EventPayload::RunFailed { error } => {
            assert_eq!(error.kind, "unexecutable");
            assert!(
                error.message.contains("column `input`"),
                "{}",
                error.message
            );
        }
        other => panic!("expected run_failed, got {other:?}"),
    }
    let listing = starter
        .list_runs_with_skipped(&RunFilter::default())
        .await
        .unwrap();
    assert!(listing.runs.is_empty());
    assert_eq!(listing.skipped[0].run_id, bad);
}
