//! Opening a store (issue 12, defects 11 and 13, file modes of 2/5): errors that say what
//! failed (a directory, not a database, a damaged file, a newer schema, a truncated file
//! beside its log, an unreachable Postgres), new files private to their owner, and
//! read-only opens that create, migrate and change nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::DateTime;
use reprise::EngineError;
use reprise::event::{EventKind, NewEvent, RunId, RunRecord, RunStatus, Trigger};
use reprise::store::{SharedStore, SqliteStore, Store, StoreErrorKind};
use serde_json::json;

fn record(id: &str) -> RunRecord {
    let at = DateTime::from_timestamp_micros(1_790_000_000_000_000).expect("valid time");
    RunRecord {
        id: RunId::from(id),
        workflow: "wf".to_owned(),
        status: RunStatus::Queued,
        input: json!({ "id": id }),
        output: None,
        error: None,
        attempt: 0,
        trigger: Trigger::Api,
        created_at: at,
        updated_at: at,
        wake_at: None,
        next_seq: 1,
        queue: None,
    }
}

fn created(record: &RunRecord) -> NewEvent {
    NewEvent {
        kind: EventKind::RunCreated,
        correlation_id: None,
        attempt: 0,
        at: record.created_at,
        payload: json!({
            "workflow": record.workflow,
            "input": record.input,
            "trigger": record.trigger.as_str(),
        }),
    }
}

async fn create(store: &dyn Store, id: &str) {
    let record = record(id);
    store
        .create_run(record.clone(), created(&record))
        .await
        .expect("create_run");
}

async fn ids(store: &dyn Store) -> Vec<String> {
    let mut ids: Vec<String> = store
        .list_runs(&Default::default())
        .await
        .expect("list_runs")
        .into_iter()
        .map(|run| run.id.to_string())
        .collect();
    ids.sort();
    ids
}

/// A database at `dir/reprise.db` holding runs `ids`, closed (so no `-wal` is left).
async fn closed_database(dir: &Path, ids: &[&str]) -> PathBuf {
    let path = dir.join("reprise.db");
    let store = SqliteStore::open(&path).expect("open");
    for id in ids {
        create(&store, id).await;
    }
    drop(store);
    assert!(!sidecar(&path, "-wal").exists(), "closing removes the log");
    path
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn store_error(result: Result<SqliteStore, EngineError>) -> (StoreErrorKind, String) {
    match result {
        Ok(store) => panic!("expected an error, opened {store:?}"),
        Err(error) => {
            let kind = error.store_error().map(|e| e.kind());
            (
                kind.unwrap_or_else(|| panic!("not a store error: {error:?}")),
                error.to_string(),
            )
        }
    }
}

fn stamp(path: &Path) -> (Vec<u8>, std::time::SystemTime) {
    let bytes = std::fs::read(path).expect("read");
    let modified = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .expect("mtime");
    (bytes, modified)
}

fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(true)
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_database_file_is_private_to_its_owner() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join("reprise.db");
    let store = SqliteStore::open(&path).unwrap();
    create(&store, "r1").await;
    assert_eq!(mode(&path), 0o600, "the database file");
    // SQLite gives its log and index the database file's mode.
    assert_eq!(mode(&sidecar(&path, "-wal")), 0o600, "the -wal file");
    assert_eq!(mode(&sidecar(&path, "-shm")), 0o600, "the -shm file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_is_not_a_database_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reprise.db");
    let text = "{\"format\": \"not a database\"}\n".repeat(10);
    std::fs::write(&path, &text).unwrap();
    for result in [SqliteStore::open(&path), SqliteStore::open_read_only(&path)] {
        let (kind, message) = store_error(result);
        assert_eq!(kind, StoreErrorKind::Database, "{message}");
        assert!(
            message.contains(&path.display().to_string())
                && message.contains("is not a database")
                && message.contains("{\"format\"")
                && message.contains("REPRISE_DATABASE_URL"),
            "names the file, what it is, and where the path came from: {message}"
        );
        assert!(!message.contains("WAL mode"), "{message}");
    }
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "untouched");
    assert!(!sidecar(&path, "-wal").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_is_refused_with_the_file_to_name_instead() {
    let dir = tempfile::tempdir().unwrap();
    let (kind, message) = store_error(SqliteStore::open(dir.path()));
    assert_eq!(kind, StoreErrorKind::Io);
    assert!(
        message.contains("is a directory") && message.contains("reprise.db"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_database_file_beside_its_log_is_an_error_not_a_new_store() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.db");
    let store = SqliteStore::open(&live).unwrap();
    create(&store, "r1").await;
    create(&store, "r2").await;
    // While the store is open, the runs are in the log, not yet in the database file.
    let copy_dir = dir.path().join("copy");
    std::fs::create_dir(&copy_dir).unwrap();
    let copy = copy_dir.join("reprise.db");
    std::fs::copy(&live, &copy).unwrap();
    std::fs::copy(sidecar(&live, "-wal"), sidecar(&copy, "-wal")).unwrap();
    drop(store);
    // The copy as it is: both runs (the log is read).
    let intact = SqliteStore::open_read_only(&copy).unwrap();
    assert_eq!(ids(&intact).await, ["r1", "r2"]);
    drop(intact);

    // Truncated to 0 bytes, its log beside it: opening it would throw the log away.
    std::fs::write(&copy, b"").unwrap();
    let log_len = std::fs::metadata(sidecar(&copy, "-wal")).unwrap().len();
    assert!(log_len > 0);
    for result in [SqliteStore::open(&copy), SqliteStore::open_read_only(&copy)] {
        let (kind, message) = store_error(result);
        assert_eq!(kind, StoreErrorKind::Database, "{message}");
        assert!(
            message.contains("empty (0 bytes)")
                && message.contains("write-ahead log")
                && message.contains("backup"),
            "{message}"
        );
    }
    assert_eq!(
        std::fs::metadata(sidecar(&copy, "-wal")).unwrap().len(),
        log_len,
        "the log is kept"
    );
    assert_eq!(std::fs::metadata(&copy).unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_file_alone_becomes_a_new_database_but_is_not_read_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reprise.db");
    std::fs::write(&path, b"").unwrap();
    let (kind, message) = store_error(SqliteStore::open_read_only(&path));
    assert_eq!(kind, StoreErrorKind::Database);
    assert!(message.contains("empty (0 bytes)"), "{message}");
    // `touch reprise.db` before the first start still works.
    let store = SqliteStore::open(&path).unwrap();
    create(&store, "r1").await;
    assert_eq!(ids(&store).await, ["r1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_database_is_an_error_that_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = closed_database(dir.path(), &["r1"]).await;
    let mut bytes = std::fs::read(&path).unwrap();
    // Keep the 100-byte header; wreck the rest of the first page (the schema's b-tree).
    bytes[100..4096].fill(0xff);
    std::fs::write(&path, &bytes).unwrap();
    for result in [SqliteStore::open(&path), SqliteStore::open_read_only(&path)] {
        let (kind, message) = store_error(result);
        assert_eq!(kind, StoreErrorKind::Database, "{message}");
        assert!(
            message.contains(&path.display().to_string())
                && message.contains("damaged")
                && message.contains(".recover"),
            "{message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_a_newer_reprise_is_refused_with_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let path = closed_database(dir.path(), &["r1"]).await;
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO schema_migrations (version, applied_at) VALUES (99, 'later')",
        [],
    )
    .unwrap();
    drop(conn);
    let latest = SqliteStore::SCHEMA_VERSION;
    for result in [SqliteStore::open(&path), SqliteStore::open_read_only(&path)] {
        let (kind, message) = store_error(result);
        assert_eq!(kind, StoreErrorKind::Schema, "{message}");
        assert!(
            message.contains("schema version 99")
                && message.contains(&format!("up to {latest}"))
                && message.contains("newer reprise")
                && message.contains(&path.display().to_string()),
            "{message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_open_of_a_missing_file_is_an_error_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nothing-here").join("reprise.db");
    let (kind, message) = store_error(SqliteStore::open_read_only(&path));
    assert_eq!(kind, StoreErrorKind::Io);
    assert!(
        message.contains(&format!("no database at {}", path.display())),
        "{message}"
    );
    assert!(!path.parent().unwrap().exists(), "not even the directory");
    let (_, message) = store_error(SqliteStore::open_read_only(dir.path().join("x.db")));
    assert!(message.contains("no database at"), "{message}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_open_changes_nothing_and_creates_no_file_beside_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = closed_database(dir.path(), &["r1", "r2"]).await;
    let before = stamp(&path);
    let store = SqliteStore::open_read_only(&path).unwrap();
    assert_eq!(ids(&store).await, ["r1", "r2"]);
    assert!(store.run(&RunId::from("r1")).await.unwrap().is_some());
    assert_eq!(store.events(&RunId::from("r2")).await.unwrap().len(), 1);
    // Writes are refused, naming the way to write.
    let error = store
        .create_run(record("r3"), created(&record("r3")))
        .await
        .unwrap_err();
    assert_eq!(
        error.store_error().map(|e| e.kind()),
        Some(StoreErrorKind::Config)
    );
    assert!(error.to_string().contains("read-only"), "{error}");
    drop(store);
    for suffix in ["-wal", "-shm", "-journal"] {
        assert!(
            !sidecar(&path, suffix).exists(),
            "a read-only open created {suffix}"
        );
    }
    assert!(stamp(&path) == before, "the database file changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_open_reads_through_the_log_of_a_store_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reprise.db");
    let writer = SqliteStore::open(&path).unwrap();
    create(&writer, "r1").await;
    let reader = SqliteStore::open_read_only(&path).unwrap();
    assert_eq!(ids(&reader).await, ["r1"]);
    create(&writer, "r2").await;
    assert_eq!(ids(&reader).await, ["r1", "r2"], "sees later commits");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_open_notices_a_writer_that_comes_along() {
    let dir = tempfile::tempdir().unwrap();
    let path = closed_database(dir.path(), &["r1"]).await;
    let reader: SharedStore = Arc::new(SqliteStore::open_read_only(&path).unwrap());
    assert_eq!(ids(&*reader).await, ["r1"]);

    // A writer opens it and commits (into its log): the reader's next read is of the
    // file as it was, and later reads go through the log.
    let writer = SqliteStore::open(&path).unwrap();
    create(&writer, "r2").await;
    let first = ids(&*reader).await;
    assert!(first == ["r1"] || first == ["r1", "r2"], "{first:?}");
    assert_eq!(ids(&*reader).await, ["r1", "r2"]);
    drop(writer);
    drop(reader);

    // A writer that opens, writes and checkpoints into the file between two reads: the
    // read after it cannot trust what it read, and says so; the next one reads anew.
    // (A fresh database: the reader above left the log of the one before behind, as a
    // read-only connection cannot remove it.)
    let dir = tempfile::tempdir().unwrap();
    let path = closed_database(dir.path(), &["r1", "r2"]).await;
    let reader = SqliteStore::open_read_only(&path).unwrap();
    assert_eq!(ids(&reader).await, ["r1", "r2"]);
    let writer = SqliteStore::open(&path).unwrap();
    for i in 0..50 {
        create(&writer, &format!("w{i:02}")).await;
    }
    drop(writer); // checkpoints the log into the database file
    match reader.list_runs(&Default::default()).await {
        Err(error) => {
            let kind = error.store_error().map(|e| e.kind());
            assert_eq!(kind, Some(StoreErrorKind::Busy), "{error}");
            assert!(
                error.to_string().contains("run the command again"),
                "{error}"
            );
        }
        Ok(runs) => panic!(
            "a read across another process's checkpoint counted ({} runs)",
            runs.len()
        ),
    }
    assert_eq!(ids(&reader).await.len(), 52);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_write_permission_read_only_open_works_and_open_says_why_not() {
    use std::os::unix::fs::PermissionsExt;
    if running_as_root() {
        eprintln!("skipped: file permissions do not bind root (the effective uid is 0)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = closed_database(dir.path(), &["r1"]).await;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o500)).unwrap();
    let (kind, message) = store_error(SqliteStore::open(&path));
    let listed = match SqliteStore::open_read_only(&path) {
        Ok(store) => Ok(ids(&store).await),
        Err(error) => Err(error.to_string()),
    };
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(kind, StoreErrorKind::Io, "{message}");
    assert!(
        message.contains("permission denied")
            && message.contains("mode 0400")
            && message.contains("need only read access"),
        "{message}"
    );
    assert_eq!(listed, Ok(vec!["r1".to_owned()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_postgres_server_is_named_with_what_to_check() {
    // Port 1 on the loopback: nothing listens there.
    let error = reprise::store::PostgresStore::connect("postgres://reprise@127.0.0.1:1/app")
        .await
        .unwrap_err();
    let store = error.store_error().expect("a store error");
    assert_eq!(store.kind(), StoreErrorKind::Unavailable, "{error}");
    let message = error.to_string();
    assert!(
        message.contains("127.0.0.1:1/app as reprise") && message.contains("pg_isready"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_login_or_database_the_server_refuses_says_what_to_fix() {
    let Some(url) = crate::postgres::test_url() else {
        return;
    };
    let config: tokio_postgres::Config = url.parse().unwrap();
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => {
            eprintln!("skipped: the test database is not reached over TCP");
            return;
        }
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres");
    let missing_db = format!("postgres://{user}@{host}:{port}/reprise_no_such_database");
    let error = reprise::store::PostgresStore::connect(&missing_db)
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(&format!("{host}:{port}/reprise_no_such_database"))
            && message.contains("does not exist")
            && message.contains("createdb"),
        "{message}"
    );
    let stranger = format!("postgres://reprise_no_such_role@{host}:{port}/postgres");
    let error = reprise::store::PostgresStore::connect(&stranger)
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("as reprise_no_such_role") && message.contains("refused the login"),
        "{message}"
    );
}
