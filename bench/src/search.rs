//! The `search` workload (issue 15 item 5): a store filled with `--search-runs` runs
//! (default 1,000,000), then `list_runs` latency for indexed filters, median and p99 of
//! `--search-queries` queries each (default 50). Target: ≤ 50 ms per indexed filter.
//!
//! The runs are written through the `Store` API (no engine, no bodies): `create_run` with
//! a realistic record, then one `append` carrying two `run_tagged` events (`customer`, one
//! of 10,000 values; `amount`, a number from 1 to 10,000), so the tag index is filled by the
//! same path a workflow's `ctx.tag` takes. Runs are spread over 30 days of creation time,
//! across 10 workflows, with a status mix of 90 % completed, 5 % failed, 3 % waiting and 2 %
//! queued. `--search-concurrency` writes are in flight at once (the stores group-commit
//! them). On Postgres the tables are `ANALYZE`d after the fill (what autovacuum does after
//! a bulk load), so the planner knows their size.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use reprise::Trigger;
use reprise::event::{EventPayload, NewEvent, RunFilter, RunId, RunRecord, RunStatus, RunUpdate};
use reprise::store::{Append, SharedStore};
use reprise::tags::{RunCursor, TagFilter, TagOp, TagValue};

use crate::BoxError;
use crate::report::{Goal, Metric};
use crate::workloads::{Out, Sizes, StoreKind, open_store};

/// Distinct `customer` tag values.
const CUSTOMERS: u64 = 10_000;
/// Distinct workflows.
const WORKFLOWS: u64 = 10;
/// The creation times span this many days.
const DAYS: i64 = 30;
/// The target of every indexed filter, in ms.
const TARGET_MS: f64 = 50.0;

/// splitmix64: a small deterministic generator (the same data every run).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn status_of(roll: u64) -> RunStatus {
    match roll {
        0..90 => RunStatus::Completed,
        90..95 => RunStatus::Failed,
        95..98 => RunStatus::Waiting,
        _ => RunStatus::Queued,
    }
}

/// Run `i` of `n`: its record, `run_created` event and tag append.
fn run_of(i: u64, n: u64, start: DateTime<Utc>, rng: &mut Rng) -> (RunRecord, NewEvent, Append) {
    let span = TimeDelta::days(DAYS).num_microseconds().unwrap_or(i64::MAX);
    let offset = (i as i128 * span as i128 / n.max(1) as i128) as i64;
    let created_at = start + TimeDelta::microseconds(offset);
    let workflow = format!("workflow-{}", rng.below(WORKFLOWS));
    let status = status_of(rng.below(100));
    let customer = format!("customer-{:05}", rng.below(CUSTOMERS));
    let amount = 1 + rng.below(10_000);
    let id = RunId::new();
    let input = serde_json::json!({ "customer": customer, "amount": amount });
    let record = RunRecord {
        id: id.clone(),
        workflow: workflow.clone(),
        status,
        input: input.clone(),
        output: (status == RunStatus::Completed).then(|| serde_json::json!({ "ok": true })),
        error: None,
        attempt: 1,
        trigger: Trigger::Api,
        created_at,
        updated_at: created_at,
        wake_at: None,
        next_seq: 1,
        queue: None,
    };
    let created = NewEvent::new(
        None,
        0,
        created_at,
        EventPayload::RunCreated {
            workflow,
            input,
            trigger: Trigger::Api,
            start_at: None,
            forked_from: None,
            traceparent: None,
            key: None,
            event: None,
            parent: None,
            continued_from: None,
            queue: None,
            identity: None,
        },
    );
    let tag = |key: &str, value: TagValue| {
        NewEvent::new(
            Some(format!("$tag:{key}#0")),
            1,
            created_at,
            EventPayload::RunTagged {
                key: key.to_owned(),
                value,
            },
        )
    };
    let append = Append {
        run_id: id,
        first_seq: 1,
        events: vec![
            tag("customer", TagValue::from(customer)),
            tag("amount", TagValue::from(amount)),
        ],
        update: RunUpdate::default(),
        fence: None,
        release: false,
    };
    (record, created, append)
}

/// Writes `n` runs with their tags, `concurrency` at a time; returns the creation start.
async fn fill(
    store: &SharedStore,
    n: u64,
    concurrency: usize,
    start: DateTime<Utc>,
) -> Result<(), BoxError> {
    let mut rng = Rng(0x5eed);
    let mut tasks = tokio::task::JoinSet::new();
    let mut next = 0u64;
    let mut last_report = Instant::now();
    let began = Instant::now();
    while next < n || !tasks.is_empty() {
        while next < n && tasks.len() < concurrency {
            let (record, created, append) = run_of(next, n, start, &mut rng);
            let store = store.clone();
            tasks.spawn(async move {
                store.create_run(record, created).await?;
                store.append(append).await
            });
            next += 1;
        }
        if let Some(joined) = tasks.join_next().await {
            joined.map_err(|e| -> BoxError { e.into() })??;
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            last_report = Instant::now();
            let done = next - tasks.len() as u64;
            eprintln!(
                "reprise-bench: search: {done} / {n} runs written ({:.0} runs/s)",
                done as f64 / began.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

/// Median and p99 (nearest rank) of `samples`, in ms.
fn median_p99(samples: &mut [f64]) -> (f64, f64) {
    samples.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| {
        let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        samples[rank - 1]
    };
    (at(0.5), at(0.99))
}

/// Times `queries` listings made by `filter(i)`; pushes median and p99 metrics (with the
/// target when `indexed`) and a note of the rows returned.
async fn measure(
    store: &SharedStore,
    out: &mut Out,
    kind: StoreKind,
    name: &str,
    queries: u32,
    indexed: bool,
    mut filter: impl FnMut(u32) -> RunFilter,
) -> Result<(), BoxError> {
    // One warm-up query (statement preparation, cold pages).
    store.list_runs(&filter(queries)).await?;
    let mut samples = Vec::with_capacity(queries as usize);
    let mut rows = 0usize;
    for i in 0..queries {
        let filter = filter(i);
        let started = Instant::now();
        let listing = store.list_runs_with_skipped(&filter).await?;
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
        rows += listing.runs.len();
    }
    let (median, p99) = median_p99(&mut samples);
    let mut m = Metric::new(
        "search",
        kind.name(),
        &format!("{name}, median"),
        median,
        "ms",
    );
    let mut p = Metric::new("search", kind.name(), &format!("{name}, p99"), p99, "ms");
    if indexed {
        m = m.goal(Goal::AtMost(TARGET_MS));
        p = p.goal(Goal::AtMost(TARGET_MS));
    }
    out.metrics.push(m);
    out.metrics.push(p);
    out.notes.push(format!(
        "search/{}: {name}: {queries} queries, {:.1} rows each on average",
        kind.name(),
        rows as f64 / queries.max(1) as f64
    ));
    Ok(())
}

/// The `search` workload against `kind` (sqlite or postgres).
pub(crate) async fn search(
    kind: StoreKind,
    dir: &std::path::Path,
    sizes: &Sizes,
    out: &mut Out,
) -> Result<(), BoxError> {
    let n = u64::from(sizes.search_runs);
    let queries = sizes.search_queries.max(1);
    let store = open_store(kind, dir, "search")?;
    let start = DateTime::from_timestamp(1_790_000_000, 0).ok_or("bad start time")?;
    let began = Instant::now();
    fill(&store, n, sizes.search_concurrency.max(1), start).await?;
    let took = began.elapsed().as_secs_f64();
    if kind == StoreKind::Postgres {
        // Fresh statistics, as autovacuum's analyze leaves them after a bulk load.
        let analyzing = Instant::now();
        crate::pg::analyze_created().await?;
        out.notes.push(format!(
            "search/postgres: ANALYZE after the fill took {:.1} s",
            analyzing.elapsed().as_secs_f64()
        ));
    }
    out.metrics.push(Metric::new(
        "search",
        kind.name(),
        "fill: runs written (create + tag append)",
        n as f64 / took,
        "runs/s",
    ));
    out.notes.push(format!(
        "search/{}: filled {n} runs (2 tags each) in {took:.1} s",
        kind.name()
    ));
    if kind == StoreKind::Sqlite {
        out.notes.push(format!(
            "search/sqlite: database file {:.0} MiB",
            std::fs::metadata(dir.join("search.db"))
                .map(|m| m.len() as f64 / (1024.0 * 1024.0))
                .unwrap_or(0.0)
        ));
    }
    let mut rng = Rng(0xfeed);
    let page = Some(50);
    let customers: Vec<String> = (0..=queries)
        .map(|_| format!("customer-{:05}", rng.below(CUSTOMERS)))
        .collect();
    measure(
        &store,
        out,
        kind,
        "tag customer = v (limit 50)",
        queries,
        true,
        |i| RunFilter {
            tags: vec![TagFilter::eq("customer", customers[i as usize].as_str())],
            limit: page,
            ..RunFilter::default()
        },
    )
    .await?;
    let workflows: Vec<(String, RunStatus)> = (0..=queries)
        .map(|i| {
            let status =
                [RunStatus::Failed, RunStatus::Completed, RunStatus::Waiting][i as usize % 3];
            (format!("workflow-{}", rng.below(WORKFLOWS)), status)
        })
        .collect();
    measure(
        &store,
        out,
        kind,
        "workflow + status (limit 50)",
        queries,
        true,
        |i| {
            let (workflow, status) = workflows[i as usize].clone();
            RunFilter {
                workflow: Some(workflow),
                status: Some(status),
                limit: page,
                ..RunFilter::default()
            }
        },
    )
    .await?;
    let span = TimeDelta::days(DAYS).num_seconds();
    let ranges: Vec<DateTime<Utc>> = (0..=queries)
        .map(|_| start + TimeDelta::seconds(rng.below(span as u64 - 3600) as i64))
        .collect();
    measure(
        &store,
        out,
        kind,
        "created in a 1 h range (limit 50)",
        queries,
        true,
        |i| {
            let from = ranges[i as usize];
            RunFilter {
                created_after: Some(from),
                created_before: Some(from + TimeDelta::hours(1)),
                limit: page,
                ..RunFilter::default()
            }
        },
    )
    .await?;
    // Pages deep in the listing: the cursor of a run at a random position.
    let mut cursors = Vec::new();
    for i in 0..=queries {
        let at = ranges[i as usize];
        let listing = store
            .list_runs(&RunFilter {
                created_after: Some(at),
                limit: Some(1),
                ..RunFilter::default()
            })
            .await?;
        let run = listing.last().ok_or("no run to page from")?;
        cursors.push(RunCursor::after(run).encode());
    }
    measure(
        &store,
        out,
        kind,
        "next page via cursor (limit 50)",
        queries,
        true,
        |i| RunFilter {
            cursor: Some(cursors[i as usize].clone()),
            limit: page,
            ..RunFilter::default()
        },
    )
    .await?;
    let customer_cursors: Vec<Option<String>> = {
        let mut v = Vec::new();
        for customer in &customers {
            let first = store
                .list_runs_with_skipped(&RunFilter {
                    tags: vec![TagFilter::eq("customer", customer.as_str())],
                    limit: Some(20),
                    ..RunFilter::default()
                })
                .await?;
            v.push(first.next_cursor);
        }
        v
    };
    measure(
        &store,
        out,
        kind,
        "tag customer = v, 2nd page via cursor (limit 20)",
        queries,
        true,
        |i| RunFilter {
            tags: vec![TagFilter::eq("customer", customers[i as usize].as_str())],
            cursor: customer_cursors[i as usize].clone(),
            limit: Some(20),
            ..RunFilter::default()
        },
    )
    .await?;
    // Not index-driven (a range with no equality): walks runs newest first and probes each
    // run's tag; shown for scale, without target.
    measure(
        &store,
        out,
        kind,
        "tag amount >= 9,990 only (limit 50, not index-driven)",
        queries.min(10),
        false,
        |_| RunFilter {
            tags: vec![TagFilter::new("amount", TagOp::Ge, 9_990)],
            limit: page,
            ..RunFilter::default()
        },
    )
    .await?;
    measure(
        &store,
        out,
        kind,
        "tag customer = v and amount >= 5,000 (limit 50)",
        queries,
        true,
        |i| RunFilter {
            tags: vec![
                TagFilter::eq("customer", customers[i as usize].as_str()),
                TagFilter::new("amount", TagOp::Ge, 5_000),
            ],
            limit: page,
            ..RunFilter::default()
        },
    )
    .await?;
    Ok(())
}
