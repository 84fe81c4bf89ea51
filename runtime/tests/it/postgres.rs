//! Postgres only: the test database (`REPRISE_TEST_POSTGRES_URL`), one schema per test,
//! and the checks the shared conformance suite cannot make: several processes (pools)
//! claiming concurrently, migrations, corrupt rows, `store::open` with a `postgres://`
//! URL.
//!
//! Every test is skipped, with a notice on stderr, when `REPRISE_TEST_POSTGRES_URL` is
//! unset (e.g. `postgres://postgres@127.0.0.1:5432/test`); CI sets it.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use reprise::EngineError;
use reprise::event::{EventKind, NewEvent, RunId, RunRecord, RunStatus, Trigger};
use reprise::store::{PostgresOptions, PostgresStore, SharedStore, Store, StoreErrorKind};
use serde_json::json;

/// The variable naming the test database.
const URL_VAR: &str = "REPRISE_TEST_POSTGRES_URL";

/// The test database's URL, or `None` (with a notice) when the variable is unset.
pub(crate) fn test_url() -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!(
                "skipped: {URL_VAR} is not set (e.g. postgres://postgres@127.0.0.1:5432/test)"
            );
            None
        }
    }
}

/// A schema of its own for one test, dropped (with everything in it) when this is
/// dropped, also when the test panics.
pub(crate) struct TestSchema {
    url: String,
    name: String,
}

impl TestSchema {
    pub(crate) fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            name: format!("reprise_test_{}", uuid::Uuid::new_v4().simple()),
        }
    }

    pub(crate) fn options(&self) -> PostgresOptions {
        PostgresOptions {
            schema: Some(self.name.clone()),
            pool_size: 8,
        }
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        // `Drop` cannot await, and may run inside the test's runtime: use a thread with a
        // runtime of its own.
        let url = self.url.clone();
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let client = raw_client(&url).await;
                client.batch_execute(&sql).await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test schema {}: {dropped:?}", self.name);
        }
    }
}

/// A plain connection to the test database (its task runs on the current runtime).
async fn raw_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test database");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A plain connection whose `search_path` is `schema`.
pub(crate) async fn schema_client(url: &str, schema: &TestSchema) -> tokio_postgres::Client {
    let client = raw_client(url).await;
    client
        .batch_execute(&format!("SET search_path TO \"{}\"", schema.name))
        .await
        .expect("set search_path");
    client
}

/// A fresh, migrated [`PostgresStore`] in a new schema, and the guard that drops the
/// schema; `None` when the test database is not configured.
pub(crate) async fn fresh_store() -> Option<(PostgresStore, TestSchema)> {
    let url = test_url()?;
    let schema = TestSchema::new(&url);
    let store = PostgresStore::connect_with(&url, schema.options())
        .await
        .expect("connect to the test database");
    Some((store, schema))
}

/// Another handle (its own pool) onto the store in `schema`, as another process would open.
pub(crate) async fn another_handle(schema: &TestSchema) -> PostgresStore {
    PostgresStore::connect_with(&schema.url, schema.options())
        .await
        .expect("connect to the test database")
}

fn t(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(1_790_000_000_123_456 + micros).expect("valid time")
}

fn record(id: &str, created_at: DateTime<Utc>) -> RunRecord {
    RunRecord {
        id: RunId::from(id),
        workflow: "wf".to_owned(),
        status: RunStatus::Queued,
        input: json!({ "id": id }),
        output: None,
        error: None,
        attempt: 0,
        trigger: Trigger::Api,
        created_at,
        updated_at: created_at,
        wake_at: None,
        next_seq: 1,
        queue: None,
    }
}

async fn create(store: &dyn Store, id: &str, created_at: DateTime<Utc>) -> RunRecord {
    let record = record(id, created_at);
    let created = NewEvent {
        kind: EventKind::RunCreated,
        correlation_id: None,
        attempt: 0,
        at: created_at,
        payload: json!({}),
    };
    store
        .create_run(record.clone(), created)
        .await
        .expect("create_run");
    record
}

async fn migrations(url: &str, schema: &TestSchema) -> Vec<i64> {
    schema_client(url, schema)
        .await
        .query(
            "SELECT version FROM reprise_schema_migrations ORDER BY version",
            &[],
        )
        .await
        .expect("read migrations")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_from_several_processes_never_share_a_run() {
    let Some(url) = test_url() else { return };
    let schema = TestSchema::new(&url);
    // Four stores = four pools = four "processes", two connections each.
    let mut stores = Vec::new();
    for _ in 0..4 {
        let options = PostgresOptions {
            pool_size: 2,
            ..schema.options()
        };
        let store = PostgresStore::connect_with(&url, options)
            .await
            .expect("connect");
        stores.push(Arc::new(store));
    }
    for i in 0..120 {
        create(stores[0].as_ref(), &format!("run-{i:03}"), t(i)).await;
    }
    let mut tasks = Vec::new();
    for (p, store) in stores.iter().enumerate() {
        // Two claimers per process, each on its own connection.
        for c in 0..2 {
            let store = Arc::clone(store);
            tasks.push(tokio::spawn(async move {
                let owner = format!("p{p}-c{c}");
                let mut mine = Vec::new();
                loop {
                    let leases = store
                        .claim_due(&owner, t(1_000_000), t(100_000_000), 5)
                        .await
                        .expect("claim_due");
                    if leases.is_empty() {
                        return mine;
                    }
                    assert!(leases.iter().all(|l| l.owner == owner));
                    mine.extend(leases.into_iter().map(|l| l.run_id));
                }
            }));
        }
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("claimer"));
    }
    all.sort();
    let claimed = all.len();
    all.dedup();
    assert_eq!(claimed, all.len(), "a run was claimed twice");
    assert_eq!(all.len(), 120, "every run was claimed");
    drop(stores);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_applied_once_across_connects() {
    let Some(url) = test_url() else { return };
    let schema = TestSchema::new(&url);
    // Concurrent first connects to a fresh schema: the advisory lock makes one migrate.
    let connects = (0..4).map(|_| PostgresStore::connect_with(&url, schema.options()));
    let stores: Vec<PostgresStore> = futures::future::join_all(connects)
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("concurrent connects");
    let expected: Vec<i64> = (1..=i64::from(PostgresStore::SCHEMA_VERSION)).collect();
    assert_eq!(migrations(&url, &schema).await, expected);
    create(&stores[0], "kept", t(0)).await;
    drop(stores);
    for _ in 0..2 {
        let store = PostgresStore::connect_with(&url, schema.options())
            .await
            .expect("reconnect");
        assert_eq!(migrations(&url, &schema).await, expected);
        assert!(
            store
                .run(&RunId::from("kept"))
                .await
                .expect("run")
                .is_some(),
            "data survives reconnecting"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused_with_both_versions() {
    let Some((store, schema)) = fresh_store().await else {
        return;
    };
    drop(store);
    let url = test_url().expect("set");
    let newer = i64::from(PostgresStore::SCHEMA_VERSION) + 7;
    schema_client(&url, &schema)
        .await
        .execute(
            "INSERT INTO reprise_schema_migrations (version) VALUES ($1)",
            &[&newer],
        )
        .await
        .expect("insert");
    let err = PostgresStore::connect_with(&url, schema.options())
        .await
        .expect_err("a newer schema must be refused");
    let message = err.to_string();
    assert!(
        matches!(&err, EngineError::Storage(e) if e.kind() == StoreErrorKind::Schema),
        "{err:?}"
    );
    assert!(message.contains(&newer.to_string()), "{message}");
    assert!(
        message.contains(&PostgresStore::SCHEMA_VERSION.to_string()),
        "{message}"
    );
    assert!(message.contains("newer"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_rows_are_errors_naming_the_run() {
    let Some((store, schema)) = fresh_store().await else {
        return;
    };
    let url = test_url().expect("set");
    let raw = schema_client(&url, &schema).await;
    let run_corruptions = [
        (
            "bad-status",
            "UPDATE reprise_runs SET status = 'exploded' WHERE id = $1",
            "status",
        ),
        (
            "bad-trigger",
            "UPDATE reprise_runs SET \"trigger\" = 'carrier-pigeon' WHERE id = $1",
            "trigger",
        ),
        (
            "bad-attempt",
            "UPDATE reprise_runs SET attempt = -1 WHERE id = $1",
            "attempt",
        ),
        (
            "bad-time",
            "UPDATE reprise_runs SET wake_at = 9223372036854775807 WHERE id = $1",
            "wake_at",
        ),
    ];
    for (id, sql, needle) in run_corruptions {
        let run = create(&store, id, t(0)).await;
        raw.execute(sql, &[&id]).await.expect("corrupt the run");
        match store.run(&run.id).await {
            Err(EngineError::Corrupt { run, message }) => {
                assert_eq!(run, id);
                assert!(message.contains(needle), "{id}: {message}");
            }
            other => panic!("{id}: expected Corrupt, got {other:?}"),
        }
    }
    let event_corruptions = [
        (
            "bad-kind",
            "UPDATE reprise_events SET kind = 'teleported' WHERE run_id = $1",
            "teleported",
        ),
        (
            "gap",
            "UPDATE reprise_events SET seq = 5 WHERE run_id = $1",
            "gap",
        ),
    ];
    for (id, sql, needle) in event_corruptions {
        let run = create(&store, id, t(0)).await;
        raw.execute(sql, &[&id]).await.expect("corrupt the event");
        match store.events(&run.id).await {
            Err(EngineError::Corrupt { run, message }) => {
                assert_eq!(run, id);
                assert!(message.contains(needle), "{id}: {message}");
            }
            other => panic!("{id}: expected Corrupt, got {other:?}"),
        }
    }
    // Listing leaves the corrupt runs out and reports each (issue 12, defect 7); healthy
    // runs still work.
    let listing = store
        .list_runs_with_skipped(&Default::default())
        .await
        .expect("one bad row never fails a listing");
    let mut skipped: Vec<&str> = listing.skipped.iter().map(|s| s.run_id.as_str()).collect();
    skipped.sort_unstable();
    assert_eq!(
        skipped,
        ["bad-attempt", "bad-status", "bad-time", "bad-trigger"]
    );
    assert!(
        listing
            .skipped
            .iter()
            .any(|s| s.reason.contains("unknown run status `exploded`")),
        "{listing:?}"
    );
    assert_eq!(
        store
            .list_runs(&Default::default())
            .await
            .expect("list")
            .len(),
        listing.runs.len()
    );
    let healthy = create(&store, "healthy", t(0)).await;
    assert_eq!(
        store.run(&healthy.id).await.expect("run"),
        Some(healthy.clone())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_accepts_postgres_urls_and_connects_lazily() {
    let Some(url) = test_url() else { return };
    let schema = TestSchema::new(&url);
    raw_client(&url)
        .await
        .batch_execute(&format!("CREATE SCHEMA \"{}\"", schema.name))
        .await
        .expect("create schema");
    // libpq's `options` parameter selects the schema for `open`, which uses the defaults.
    let separator = if url.contains('?') { '&' } else { '?' };
    let scoped = format!("{url}{separator}options=-c%20search_path%3D{}", schema.name);
    let store: SharedStore = reprise::store::open(&scoped).expect("open");
    let run = create(store.as_ref(), "via-open", t(0)).await;
    assert_eq!(store.run(&run.id).await.expect("run"), Some(run));
    assert_eq!(
        migrations(&url, &schema).await,
        (1..=i64::from(PostgresStore::SCHEMA_VERSION)).collect::<Vec<_>>()
    );
    let also = url.replacen("postgres://", "postgresql://", 1);
    if also.starts_with("postgresql://") {
        drop(reprise::store::open(&also).expect("postgresql:// is accepted too"));
    }
    // A server that is not there: `open` succeeds (lazy), the first operation fails.
    let nowhere = reprise::store::open("postgres://nobody@127.0.0.1:1/none?connect_timeout=2")
        .expect("open is lazy");
    let err = nowhere.run(&RunId::from("x")).await.expect_err("no server");
    assert!(
        matches!(&err, EngineError::Storage(e) if e.kind() == StoreErrorKind::Unavailable),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("reachable"),
        "the message says what to check: {err}"
    );
    drop(store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_commits_and_a_stale_one_fails_alone() {
    let Some((store, _schema)) = fresh_store().await else {
        return;
    };
    let store = std::sync::Arc::new(store);
    let (good, stale) = (200, 50);
    for i in 0..good + stale {
        create(&*store, &format!("r{i:03}"), t(i)).await;
    }
    let step = |i: i64, first_seq: u64| reprise::store::Append {
        run_id: RunId::from(format!("r{i:03}").as_str()),
        first_seq,
        events: vec![
            NewEvent {
                kind: EventKind::StepStarted,
                correlation_id: Some(format!("s#{i}")),
                attempt: 1,
                at: t(1_000 + i),
                payload: json!({ "input": i }),
            },
            NewEvent {
                kind: EventKind::StepCompleted,
                correlation_id: Some(format!("s#{i}")),
                attempt: 1,
                at: t(1_001 + i),
                payload: json!({ "output": i * 2 }),
            },
        ],
        update: reprise::event::RunUpdate {
            status: Some(RunStatus::Running),
            ..Default::default()
        },
        fence: None,
        release: false,
    };
    // All at once: the good appends are written in shared statements; the stale ones
    // (a sequence number the log is not at) are in the same batches.
    let appends = (0..good + stale).map(|i| {
        let store = store.clone();
        let first_seq = if i < good { 1 } else { 5 };
        async move { store.append(step(i, first_seq)).await }
    });
    let results = futures::future::join_all(appends).await;
    for (i, result) in results.iter().enumerate() {
        if i < good as usize {
            assert!(result.is_ok(), "append {i}: {result:?}");
        } else {
            assert!(
                matches!(
                    result,
                    Err(reprise::EngineError::Conflict {
                        expected: 5,
                        found: 1,
                        ..
                    })
                ),
                "stale append {i}: {result:?}"
            );
        }
    }
    for i in 0..good + stale {
        let id = RunId::from(format!("r{i:03}").as_str());
        let events = store.events(&id).await.unwrap();
        let record = store.run(&id).await.unwrap().unwrap();
        if i < good {
            assert_eq!(events.len(), 3, "run {i}");
            assert_eq!(record.next_seq, 3);
            assert_eq!(record.status, RunStatus::Running);
            assert_eq!(events[2].event.payload, json!({ "output": i * 2 }));
            assert_eq!(events[1].seq, 1);
            assert_eq!(events[2].seq, 2);
        } else {
            assert_eq!(events.len(), 1, "a stale append wrote nothing (run {i})");
            assert_eq!(record.next_seq, 1);
            assert_eq!(record.status, RunStatus::Queued);
        }
    }
    // Two appends to one run at once: one wins, the other is told the log moved on.
    let both = futures::future::join(store.append(step(0, 3)), store.append(step(0, 3))).await;
    let outcomes = [both.0.is_ok(), both.1.is_ok()];
    assert_eq!(
        outcomes.iter().filter(|ok| **ok).count(),
        1,
        "exactly one of two racing appends wins: {both:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_the_server_rejects_fails_alone_in_a_shared_statement() {
    let Some(url) = test_url() else {
        return;
    };
    let schema = TestSchema::new(&url);
    let store = Arc::new(
        PostgresStore::connect_with(&url, schema.options())
            .await
            .expect("connect to the test database"),
    );
    let good = 60;
    for i in 0..good {
        create(&*store, &format!("g{i:02}"), t(i)).await;
    }
    create(&*store, "bad", t(100)).await;
    // A corrupt log: an event already at seq 1 while the run says its next is 1, so
    // inserting its next event violates the primary key and fails the whole statement
    // it is in.
    schema_client(&url, &schema)
        .await
        .batch_execute(
            "INSERT INTO reprise_events (run_id, seq, kind, correlation_id, attempt, at, payload)
             VALUES ('bad', 1, 'step_completed', 'x#0', 1, 0, '{}')",
        )
        .await
        .expect("insert the corrupt row");
    let step = |id: String| reprise::store::Append {
        run_id: RunId::from(id.as_str()),
        first_seq: 1,
        events: vec![NewEvent {
            kind: EventKind::StepCompleted,
            correlation_id: Some("s#0".to_owned()),
            attempt: 1,
            at: t(1_000),
            payload: json!({ "output": 1 }),
        }],
        update: reprise::event::RunUpdate::default(),
        fence: None,
        release: false,
    };
    // Several rounds, so that the bad append shares a statement with good ones at least
    // once (appends waiting together are written together).
    for round in 0..3 {
        let ids: Vec<String> = (0..good)
            .map(|i| format!("g{i:02}"))
            .chain(std::iter::once("bad".to_owned()))
            .collect();
        let appends = ids.iter().map(|id| {
            let store = store.clone();
            let mut append = step(id.clone());
            if id != "bad" {
                append.first_seq = 1 + round;
                append.events[0].correlation_id = Some(format!("s#{round}"));
            }
            async move { (id.clone(), store.append(append).await) }
        });
        for (id, result) in futures::future::join_all(appends).await {
            if id == "bad" {
                let Err(err) = &result else {
                    panic!("the rejected append must fail: {result:?}");
                };
                assert!(
                    matches!(err, EngineError::Storage(e)
                        if e.kind() == StoreErrorKind::Constraint
                            && e.run() == Some("bad")
                            && e.message().contains("cannot append to run `bad`")),
                    "the rejected append reports the server's error: {err:?}"
                );
                // The server's error is the source, with its SQLSTATE.
                let source = std::error::Error::source(err)
                    .and_then(|s| s.downcast_ref::<tokio_postgres::Error>())
                    .expect("the source is the tokio_postgres::Error");
                assert_eq!(
                    source.code(),
                    Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION),
                    "{source:?}"
                );
            } else {
                assert!(result.is_ok(), "round {round}, {id}: {result:?}");
            }
        }
    }
    for i in 0..good {
        let events = store
            .events(&RunId::from(format!("g{i:02}").as_str()))
            .await
            .unwrap();
        assert_eq!(events.len(), 4, "run g{i:02}: created + 3 appends");
    }
    let bad = store.run(&RunId::from("bad")).await.unwrap().unwrap();
    assert_eq!(
        bad.next_seq, 1,
        "nothing of the rejected append was written"
    );
}

/// Posts to one run from several processes (pools) at once are numbered in commit order:
/// distinct seqs 1..=N without a gap, each message stored under the seq its post returned,
/// and the waiting run is woken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_from_several_processes_are_numbered_without_gaps() {
    let Some(url) = test_url() else { return };
    let schema = TestSchema::new(&url);
    let mut stores = Vec::new();
    for _ in 0..3 {
        let options = PostgresOptions {
            pool_size: 2,
            ..schema.options()
        };
        stores.push(Arc::new(
            PostgresStore::connect_with(&url, options)
                .await
                .expect("connect"),
        ));
    }
    create(stores[0].as_ref(), "shared", t(0)).await;
    stores[0]
        .append(reprise::store::Append {
            run_id: RunId::from("shared"),
            first_seq: 1,
            events: Vec::new(),
            update: reprise::event::RunUpdate {
                status: Some(RunStatus::Waiting),
                ..Default::default()
            },
            fence: None,
            release: false,
        })
        .await
        .expect("suspend");
    let mut tasks = Vec::new();
    for (p, store) in stores.iter().enumerate() {
        for c in 0..2u64 {
            let store = Arc::clone(store);
            tasks.push(tokio::spawn(async move {
                let mut posted = Vec::new();
                for i in 0..8u64 {
                    let n = (p as u64 * 2 + c) * 8 + i;
                    let message = reprise::message::NewMessage {
                        run_id: RunId::from("shared"),
                        channel: "signal:n".to_owned(),
                        payload: json!(n),
                        dedupe: Some(format!("m-{n}")),
                        at: t(1),
                    };
                    let answer = store.post_message(message).await.expect("post");
                    assert!(!answer.duplicate);
                    posted.push((answer.seq, n));
                }
                posted
            }));
        }
    }
    let mut posted = Vec::new();
    for task in tasks {
        posted.extend(task.await.expect("poster"));
    }
    posted.sort_unstable();
    let stored: Vec<(u64, u64)> = stores[1]
        .messages(&RunId::from("shared"), 0)
        .await
        .expect("messages")
        .iter()
        .map(|m| (m.seq, m.payload.as_u64().expect("a number")))
        .collect();
    assert_eq!(stored, posted);
    assert_eq!(
        stored.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        (1..=48).collect::<Vec<_>>()
    );
    let run = stores[2]
        .run(&RunId::from("shared"))
        .await
        .expect("run")
        .expect("exists");
    assert_eq!(run.status, RunStatus::Queued);
    drop(stores);
}
