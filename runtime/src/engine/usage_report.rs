//! Token usage and cost: per model request of a run ([`model_requests`]) and summed by
//! workflow, model and day over many runs ([`Engine::usage`]: `GET /usage`, `runs usage`).
//!
//! Everything is read from the event log: each recorded model request (an LLM step's
//! `llm#n/attempt#k`, an agent's turns) has a `step_started` whose input names the model and
//! a `step_completed` with its `usage`. Costs come from the engine's
//! [`crate::cost::PriceTable`] at the time of asking.

use std::collections::BTreeMap;
use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use super::Engine;
use crate::cost::PriceTable;
use crate::error::EngineError;
use crate::event::{Event, EventKind, RunFilter};
use crate::usage::Usage;

/// One model request recorded in a run's log.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelRequest {
    /// Its correlation id (`triage#0/llm#0/attempt#0`).
    pub step: String,
    /// The model as the request named it (`openai/gpt-4o-mini`); `""` if the log does not say.
    pub model: String,
    /// Its tokens.
    pub usage: Usage,
    /// When its outcome was recorded.
    pub at: DateTime<Utc>,
    /// Its cost in US dollars, `None` when the price table has no price for the model.
    pub cost_usd: Option<f64>,
}

/// The model requests of one run's `events` (in log order), priced with `prices`.
pub fn model_requests(events: &[Event], prices: &PriceTable) -> Vec<ModelRequest> {
    let mut models: HashMap<&str, &str> = HashMap::new();
    let mut requests = Vec::new();
    for event in events {
        let Some(id) = event.event.correlation_id.as_deref() else {
            continue;
        };
        match event.event.kind {
            EventKind::StepStarted => {
                if let Some(model) = event
                    .event
                    .payload
                    .get("input")
                    .and_then(|input| input.get("model"))
                    .and_then(|model| model.as_str())
                {
                    models.insert(id, model);
                }
            }
            EventKind::StepCompleted => {
                if let Some(usage) = event.event.usage() {
                    let model = models.get(id).copied().unwrap_or_default();
                    requests.push(ModelRequest {
                        step: id.to_owned(),
                        model: model.to_owned(),
                        cost_usd: prices.cost(model, &usage),
                        usage,
                        at: event.event.at,
                    });
                }
            }
            _ => {}
        }
    }
    requests
}

/// The cost of `requests` in US dollars (of those with a price), and whether some had no
/// price; `None` when there are no requests.
pub fn total_cost(requests: &[ModelRequest]) -> Option<(f64, bool)> {
    if requests.is_empty() {
        return None;
    }
    let cost = requests.iter().filter_map(|r| r.cost_usd).sum();
    Some((cost, requests.iter().any(|r| r.cost_usd.is_none())))
}

/// What [`Engine::usage`] sums over.
#[derive(Clone, Debug, Default)]
pub struct UsageQuery {
    /// Only requests recorded at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only requests recorded before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only runs of this workflow.
    pub workflow: Option<String>,
}

/// Tokens and cost of one workflow's requests to one model on one day (UTC).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UsageRow {
    /// The day (UTC), `YYYY-MM-DD`.
    pub day: NaiveDate,
    /// The workflow's slug.
    pub workflow: String,
    /// The model.
    pub model: String,
    /// How many requests.
    pub requests: u64,
    /// Their tokens.
    #[serde(flatten)]
    pub usage: Usage,
    /// Their cost in US dollars; `None` when the model has no price.
    pub cost_usd: Option<f64>,
}

/// What [`Engine::usage`] found: rows by day, workflow and model (sorted so), and totals.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UsageReport {
    /// One row per (day, workflow, model).
    pub rows: Vec<UsageRow>,
    /// All requests.
    pub requests: u64,
    /// All their tokens.
    pub usage: Usage,
    /// The cost of the priced requests, in US dollars.
    pub cost_usd: f64,
    /// Models seen without a price (their requests are not in `cost_usd`).
    pub unpriced_models: Vec<String>,
    /// How many runs were read.
    pub runs_scanned: u64,
}

/// Runs read per page.
const PAGE: usize = 500;

impl Engine {
    /// Sums the tokens and cost of recorded model requests by day, workflow and model.
    ///
    /// Reads the log of every run (of `query.workflow`, if set) changed since `query.since`:
    /// its cost grows with the number of such runs, so ask for a bounded period on a big
    /// store. Purged runs are gone from the sum.
    ///
    /// # Errors
    /// Store failures.
    pub async fn usage(&self, query: &UsageQuery) -> Result<UsageReport, EngineError> {
        let prices = self.prices();
        let mut rows: BTreeMap<(NaiveDate, String, String), UsageRow> = BTreeMap::new();
        let mut runs_scanned = 0;
        let mut cursor = None;
        loop {
            let filter = RunFilter {
                workflow: query.workflow.clone(),
                // A request recorded since `since` is in a run changed since then.
                updated_after: query.since,
                created_before: query.until,
                limit: Some(PAGE),
                cursor,
                ..RunFilter::default()
            };
            let listing = self.store().list_runs_with_skipped(&filter).await?;
            for run in &listing.runs {
                runs_scanned += 1;
                let events = self.store().events(&run.id).await?;
                for request in model_requests(&events, prices) {
                    if query.since.is_some_and(|since| request.at < since)
                        || query.until.is_some_and(|until| request.at >= until)
                    {
                        continue;
                    }
                    let day = request.at.date_naive();
                    let row = rows
                        .entry((day, run.workflow.clone(), request.model.clone()))
                        .or_insert_with(|| UsageRow {
                            day,
                            workflow: run.workflow.clone(),
                            model: request.model.clone(),
                            requests: 0,
                            usage: Usage::default(),
                            cost_usd: Some(0.0),
                        });
                    row.requests += 1;
                    row.usage += request.usage;
                    row.cost_usd = row.cost_usd.zip(request.cost_usd).map(|(a, b)| a + b);
                }
            }
            match listing.next_cursor {
                Some(next) if !listing.runs.is_empty() => cursor = Some(next),
                _ => break,
            }
        }
        let rows: Vec<UsageRow> = rows.into_values().collect();
        let mut usage = Usage::default();
        let mut unpriced: Vec<String> = Vec::new();
        for row in &rows {
            usage += row.usage;
            if row.cost_usd.is_none() && !unpriced.contains(&row.model) {
                unpriced.push(row.model.clone());
            }
        }
        unpriced.sort();
        Ok(UsageReport {
            requests: rows.iter().map(|r| r.requests).sum(),
            cost_usd: rows.iter().filter_map(|r| r.cost_usd).sum(),
            usage,
            unpriced_models: unpriced,
            runs_scanned,
            rows,
        })
    }
}
