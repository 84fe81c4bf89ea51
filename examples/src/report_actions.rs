//! The actions of the workflow file `workflows/nightly-report.yaml`: fetch one source's
//! metrics for the last 24 hours, the empty stand-in used when a source cannot be reached, and send
//! the report.
//!
//! [`fetch_metrics`] reads `GET {api}/metrics/{source}?until=<RFC 3339>` from the metrics
//! API whose base URL is the engine resource [`MetricsApi`] when one is registered (the
//! tests register a local mock's), else `REPRISE_EXAMPLES_METRICS_API`. With neither it
//! works offline, answering made-up but stable numbers derived from the source and the
//! window, so `workflows run nightly-report` needs no network. [`send_report`] posts to
//! [`ReportInbox`] / `REPRISE_EXAMPLES_REPORT_URL` when set, else prints the report on
//! standard error.

use reprise::prelude::*;
use sha2::{Digest, Sha256};

/// The environment variable naming the metrics API's base URL.
pub const METRICS_API_ENV: &str = "REPRISE_EXAMPLES_METRICS_API";

/// The environment variable naming where reports are posted (`POST {url}`).
pub const REPORT_URL_ENV: &str = "REPRISE_EXAMPLES_REPORT_URL";

/// The metrics API's base URL, as an engine resource
/// (`EngineBuilder::resource(MetricsApi(url))`); overrides [`METRICS_API_ENV`].
#[derive(Clone, Debug)]
pub struct MetricsApi(pub String);

/// Where reports are posted (`POST {0}` with the report as JSON), as an engine resource;
/// overrides [`REPORT_URL_ENV`].
#[derive(Clone, Debug)]
pub struct ReportInbox(pub String);

/// Which metrics to fetch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricsQuery {
    /// The source (a service name: `api`, `web`, …).
    #[schemars(length(min = 1))]
    pub source: String,
    /// The end of the 24-hour window the metrics cover (RFC 3339, e.g.
    /// `2030-01-02T02:00:00Z`).
    #[schemars(length(min = 1))]
    pub until: String,
}

/// One source's metrics for the 24 hours before `until`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Metrics {
    /// The source.
    pub source: String,
    /// The end of the window (RFC 3339).
    pub until: String,
    /// Requests served.
    pub requests: u64,
    /// Requests that failed.
    pub errors: u64,
    /// The 95th percentile latency in milliseconds (`None` when unknown).
    pub p95_ms: Option<u64>,
    /// Whether these numbers are a stand-in (the source could not be reached): zeros.
    pub stale: bool,
}

/// The API's answer (`source` and `until` come from the query).
#[derive(Deserialize)]
struct ApiMetrics {
    requests: u64,
    errors: u64,
    #[serde(default)]
    p95_ms: Option<u64>,
}

/// Made-up, stable numbers for `source` in the window up to `until` (offline mode).
pub fn offline_metrics(source: &str, until: &str) -> Metrics {
    let digest = Sha256::digest(format!("{source}/{until}").as_bytes());
    let n = |i: usize| u64::from(u16::from_be_bytes([digest[i], digest[i + 1]]));
    let requests = 10_000 + n(0) * 10;
    Metrics {
        source: source.to_owned(),
        until: until.to_owned(),
        requests,
        errors: n(2) % (requests / 50),
        p95_ms: Some(40 + n(4) % 400),
        stale: false,
    }
}

/// Fetches one source's metrics for a day (`GET {api}/metrics/{source}?until=…`, the 24 hours before `until`; offline:
/// [`offline_metrics`]). Connection errors, 5xx and 429 are transient: the workflow
/// file's `retry` decides how often and how far apart they are retried.
#[action(retries = 3, backoff = "1s", timeout = "30s")]
pub async fn fetch_metrics(input: MetricsQuery, cx: ActionCtx) -> Result<Metrics, ActionError> {
    let api = match cx.resource::<MetricsApi>() {
        Ok(api) => Some(api.0.clone()),
        Err(_) => std::env::var(METRICS_API_ENV)
            .ok()
            .filter(|u| !u.is_empty()),
    };
    let Some(api) = api else {
        return Ok(offline_metrics(&input.source, &input.until));
    };
    let url = format!(
        "{}/metrics/{}?until={}",
        api.trim_end_matches('/'),
        input.source,
        input.until
    );
    let response = reqwest::Client::new()
        .get(&url)
        .header("user-agent", "reprise-nightly-report")
        .send()
        .await
        .map_err(|e| ActionError::transient(format!("GET {url}: {e}")))?;
    let status = response.status();
    if status.is_server_error() || status.as_u16() == 429 {
        return Err(ActionError::transient(format!("GET {url}: {status}")));
    }
    if !status.is_success() {
        return Err(ActionError::permanent(format!(
            "GET {url}: {status} (check the source name `{}`)",
            input.source
        )));
    }
    let answer: ApiMetrics = response.json().await.map_err(|e| {
        ActionError::permanent(format!(
            "GET {url}: not {{requests, errors, p95_ms}} JSON: {e}"
        ))
    })?;
    Ok(Metrics {
        source: input.source,
        until: input.until,
        requests: answer.requests,
        errors: answer.errors,
        p95_ms: answer.p95_ms,
        stale: false,
    })
}

/// The stand-in for a source whose metrics could not be fetched: zeros, `stale: true`,
/// so the report still goes out and says which sources are missing. No I/O.
#[action(timeout = "5s")]
pub async fn empty_metrics(input: MetricsQuery) -> Result<Metrics, ActionError> {
    Ok(Metrics {
        source: input.source,
        until: input.until,
        requests: 0,
        errors: 0,
        p95_ms: None,
        stale: true,
    })
}

/// The report's totals over every source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Totals {
    /// Requests over all sources.
    pub requests: u64,
    /// Errors over all sources.
    pub errors: u64,
    /// How many sources were stale (not reachable).
    pub stale: u64,
}

/// One row of the report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReportRow {
    /// The source.
    pub source: String,
    /// Requests served.
    pub requests: u64,
    /// Errors per 100 requests (0 when there were none).
    pub error_rate: f64,
    /// Whether the numbers are a stand-in.
    pub stale: bool,
}

/// A nightly report to send.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// Who gets it (an address or channel name).
    pub to: String,
    /// The end of the 24-hour window the report covers (RFC 3339).
    pub until: String,
    /// One row per source, in the input's order.
    pub rows: Vec<ReportRow>,
    /// The totals.
    pub totals: Totals,
    /// The sources with fresh numbers and an error rate of 1 % or less.
    pub healthy: Vec<String>,
    /// A short summary in words (empty when none was written).
    #[serde(default)]
    pub summary: String,
}

/// Where a report went.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Sent {
    /// The delivery's id: the far side's, or the step's idempotency key when printed.
    pub id: String,
    /// How many rows the report had.
    pub rows: usize,
}

/// Sends the report: `POST` to [`ReportInbox`] / [`REPORT_URL_ENV`] (with the step's
/// idempotency key in `Idempotency-Key`), else prints it on standard error. Recorded in
/// the [`crate::effects::EffectLog`] when one is configured.
#[action(retries = 3, backoff = "1s", timeout = "30s")]
pub async fn send_report(input: Report, cx: ActionCtx) -> Result<Sent, ActionError> {
    crate::effects::record(&cx)?;
    let rows = input.rows.len();
    let url = match cx.resource::<ReportInbox>() {
        Ok(inbox) => Some(inbox.0.clone()),
        Err(_) => std::env::var(REPORT_URL_ENV).ok().filter(|u| !u.is_empty()),
    };
    let Some(url) = url else {
        eprintln!(
            "[nightly report for {} until {}] {} requests, {} errors, {} stale; healthy: {}",
            input.to,
            input.until,
            input.totals.requests,
            input.totals.errors,
            input.totals.stale,
            input.healthy.join(", ")
        );
        return Ok(Sent {
            id: cx.idempotency_key().to_owned(),
            rows,
        });
    };
    let response = reqwest::Client::new()
        .post(&url)
        .header("Idempotency-Key", cx.idempotency_key())
        .json(&input)
        .send()
        .await
        .map_err(|e| ActionError::transient(format!("POST {url}: {e}")))?;
    let status = response.status();
    if !status.is_success() {
        let message = format!("POST {url}: {status}");
        return Err(if status.is_server_error() {
            ActionError::transient(message)
        } else {
            ActionError::permanent(message)
        });
    }
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    Ok(Sent {
        id: body["id"]
            .as_str()
            .map_or_else(|| cx.idempotency_key().to_owned(), str::to_owned),
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_metrics_are_stable_and_plausible() {
        let a = offline_metrics("api", "2030-01-01T02:00:00Z");
        assert_eq!(a, offline_metrics("api", "2030-01-01T02:00:00Z"));
        assert_ne!(a, offline_metrics("web", "2030-01-01T02:00:00Z"));
        assert!(a.requests >= 10_000 && a.errors < a.requests / 50);
    }
}
