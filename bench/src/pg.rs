//! Postgres for the benchmarks: every job gets a fresh schema of its own in the database
//! of `--postgres-url`, dropped (with its tables) when the job ends.

use std::sync::{Mutex, OnceLock};

use reprise::store::{PostgresOptions, PostgresStore, SharedStore};

use crate::BoxError;

/// The database URL (`--postgres-url`, else `REPRISE_BENCH_POSTGRES_URL`, else
/// `REPRISE_TEST_POSTGRES_URL`); `None` leaves Postgres out.
static URL: OnceLock<Option<String>> = OnceLock::new();

/// Schemas this process created, to drop at the end of the job.
static CREATED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Connections per store (per worker process, in DESIGN's terms): the store's default,
/// 16, unless `REPRISE_BENCH_POOL` says otherwise (for experiments).
pub(crate) fn pool_size() -> usize {
    std::env::var("REPRISE_BENCH_POOL")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16)
}

/// Sets the URL from the command line or the environment; call once, first.
pub(crate) fn configure(flag: Option<String>) {
    let url = flag
        .or_else(|| std::env::var("REPRISE_BENCH_POSTGRES_URL").ok())
        .or_else(|| std::env::var("REPRISE_TEST_POSTGRES_URL").ok())
        .filter(|u| !u.is_empty());
    let _ = URL.set(url);
}

/// The configured URL.
pub(crate) fn url() -> Option<&'static str> {
    URL.get().and_then(Option::as_deref)
}

/// A new schema name for job `name`, unique to this process and moment.
pub(crate) fn fresh_schema(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let schema = format!(
        "reprise_bench_{}_{}_{nanos}",
        name.replace('-', "_"),
        std::process::id()
    );
    CREATED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(schema.clone());
    schema
}

/// A store on `schema` (created and migrated on first use), with its own pool.
pub(crate) fn store(schema: &str) -> Result<SharedStore, BoxError> {
    let url =
        url().ok_or("no Postgres URL: pass --postgres-url or set REPRISE_BENCH_POSTGRES_URL")?;
    let store = PostgresStore::connect_lazy(
        url,
        PostgresOptions {
            schema: Some(schema.to_owned()),
            pool_size: pool_size(),
        },
    )?;
    Ok(std::sync::Arc::new(store))
}

/// Drops every schema this process created.
pub(crate) async fn drop_created() -> Result<(), BoxError> {
    let schemas = std::mem::take(&mut *CREATED.lock().unwrap_or_else(|p| p.into_inner()));
    if schemas.is_empty() {
        return Ok(());
    }
    let url = url().ok_or("no Postgres URL")?;
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let connection = tokio::spawn(connection);
    for schema in schemas {
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .await?;
    }
    drop(client);
    let _ = connection.await;
    Ok(())
}

/// Refreshes the planner statistics of every schema this process created (`ANALYZE`), as
/// autovacuum does after a bulk load; the search workload calls it after its fill.
pub(crate) async fn analyze_created() -> Result<(), BoxError> {
    let schemas = CREATED.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let url = url().ok_or("no Postgres URL")?;
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let connection = tokio::spawn(connection);
    for schema in schemas {
        client
            .batch_execute(&format!(
                "ANALYZE \"{schema}\".reprise_runs; ANALYZE \"{schema}\".reprise_run_tags"
            ))
            .await?;
    }
    drop(client);
    let _ = connection.await;
    Ok(())
}
