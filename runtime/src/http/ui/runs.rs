//! `/ui`: the runs, newest first, filtered by workflow, queue, status, creation time and text (a
//! run id, or tag filters such as `customer=acme amount>=100`), a page at a time (the
//! listing's cursor). The table is live: `ui.js` re-fetches `?…&fragment=table` on each
//! message of `/runs/stream`, or every 2 s while the stream is not there.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, NaiveDateTime, Utc};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::super::AppState;
use super::super::runs::ListQuery;
use super::layout::{self, Nav, badge, time};
use super::{UiError, html as respond};
use crate::event::{RunId, RunRecord, RunStatus};

/// Runs on one page.
pub(crate) const PAGE_SIZE: usize = 50;

/// The periods the "created within" filter offers.
const SINCE: [&str; 5] = ["15m", "1h", "24h", "7d", "30d"];

/// Query of the runs page (every field as the form sends it: empty means unset).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RunsQuery {
    workflow: Option<String>,
    /// A flow-control queue's name (`/ui/queues` links here with it).
    queue: Option<String>,
    status: Option<String>,
    /// Created within this period (`1h`, `7d`, …).
    since: Option<String>,
    /// Created at or after (RFC 3339, or `YYYY-MM-DDTHH:MM` in UTC).
    from: Option<String>,
    /// Created before.
    to: Option<String>,
    /// A run id, or space-separated tag filters (`key=value`, `key>=10`).
    q: Option<String>,
    cursor: Option<String>,
    /// `table`: only the live table (for `ui.js`).
    fragment: Option<String>,
}

fn set(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// A time filter: RFC 3339, or what `<input type="datetime-local">` sends, read as UTC.
fn parse_time(name: &str, text: &str) -> Result<DateTime<Utc>, UiError> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(at) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(at.and_utc());
        }
    }
    Err(UiError::bad_request(format!(
        "`{name}` is `{text}`, not a time; write it as 2026-12-06T10:00 (UTC) or in RFC 3339"
    )))
}

/// What the page lists: a page of runs, or the one run a run id names.
struct Listing {
    runs: Vec<RunRecord>,
    next_cursor: Option<String>,
    /// The text search named a run id: the page shows that run alone.
    by_id: bool,
}

async fn listing(state: &AppState, query: &RunsQuery) -> Result<Listing, UiError> {
    let mut params = Map::new();
    let mut pairs: Vec<(String, String)> = Vec::new();
    if let Some(text) = set(&query.q) {
        if text.contains(['=', '<', '>']) {
            pairs.extend(
                text.split_whitespace()
                    .map(|t| ("tag".to_owned(), t.to_owned())),
            );
        } else {
            let id = RunId(text.to_owned());
            return match state.engine.get_run(&id).await {
                Ok(run) => Ok(Listing {
                    runs: vec![run],
                    next_cursor: None,
                    by_id: true,
                }),
                Err(crate::EngineError::UnknownRun(_)) => Ok(Listing {
                    runs: Vec::new(),
                    next_cursor: None,
                    by_id: true,
                }),
                Err(other) => Err(other.into()),
            };
        }
    }
    let now = state.engine.now();
    let mut after = match set(&query.from) {
        Some(text) => Some(parse_time("from", text)?),
        None => None,
    };
    if let Some(since) = set(&query.since) {
        let period = humantime::parse_duration(since).map_err(|e| {
            UiError::bad_request(format!(
                "`since` is `{since}`, not a period ({e}); e.g. 24h"
            ))
        })?;
        let bound = now - chrono::TimeDelta::from_std(period).unwrap_or(chrono::TimeDelta::MAX);
        after = Some(after.map_or(bound, |a| a.max(bound)));
    }
    if let Some(at) = after {
        params.insert("created_after".into(), Value::String(at.to_rfc3339()));
    }
    if let Some(text) = set(&query.to) {
        let at = parse_time("to", text)?;
        params.insert("created_before".into(), Value::String(at.to_rfc3339()));
    }
    for (name, value) in [
        ("workflow", &query.workflow),
        ("queue", &query.queue),
        ("status", &query.status),
        ("cursor", &query.cursor),
    ] {
        if let Some(value) = set(value) {
            params.insert(name.into(), Value::String(value.to_owned()));
        }
    }
    params.insert("limit".into(), Value::String(PAGE_SIZE.to_string()));
    // The API's own reading of a listing query: one home for its rules and messages.
    let list_query: ListQuery = serde_json::from_value(Value::Object(params))
        .map_err(|e| UiError::bad_request(e.to_string()))?;
    let filter = list_query
        .filter(&pairs)
        .map_err(|e| UiError::bad_request(e.body.error))?;
    let listing = state
        .engine
        .list_runs_with_skipped(&filter)
        .await
        .map_err(|e| match e {
            crate::EngineError::Serde(message) => UiError::bad_request(message),
            other => other.into(),
        })?;
    Ok(Listing {
        runs: listing.runs,
        next_cursor: listing.next_cursor,
        by_id: false,
    })
}

/// The query string of this page with `cursor` (or without one), other filters kept.
fn page_url(query: &RunsQuery, cursor: Option<&str>, fragment: Option<&str>) -> String {
    let mut parts: Vec<String> = Vec::new();
    for (name, value) in [
        ("workflow", set(&query.workflow)),
        ("queue", set(&query.queue)),
        ("status", set(&query.status)),
        ("since", set(&query.since)),
        ("from", set(&query.from)),
        ("to", set(&query.to)),
        ("q", set(&query.q)),
        ("cursor", cursor),
        ("fragment", fragment),
    ] {
        if let Some(value) = value {
            parts.push(format!("{name}={}", encode(value)));
        }
    }
    if parts.is_empty() {
        "/ui".to_owned()
    } else {
        format!("/ui?{}", parts.join("&"))
    }
}

/// `text` percent-encoded for a query value: unreserved characters kept, everything else
/// `%XX`.
pub(crate) fn encode(text: &str) -> String {
    encode_keeping(text, b"")
}

/// [`encode`], keeping the bytes of `keep` too (`/` for a path that stays readable).
pub(crate) fn encode_keeping(text: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) || keep.contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `GET /ui`.
pub(crate) async fn page(
    State(state): State<AppState>,
    Query(query): Query<RunsQuery>,
) -> Result<Response, UiError> {
    let listing = listing(&state, &query).await;
    let now = state.engine.now();
    if query.fragment.as_deref() == Some("table") {
        let listing = listing?;
        return Ok(respond(
            StatusCode::OK,
            table_section(&query, &listing, now),
        ));
    }
    let (status, content) = match &listing {
        Ok(listing) => (StatusCode::OK, table_section(&query, listing, now)),
        Err(error) => (error.status, html! { p.notice { (error.message) } }),
    };
    let mut workflows: Vec<&str> = state
        .engine
        .registry()
        .workflows()
        .map(|w| w.registration.slug)
        .collect();
    workflows.sort_unstable();
    // The queues this engine knows, and the one asked for even if it does not (its runs
    // may be in a queue other processes configure).
    let mut queues: Vec<&str> = state
        .engine
        .queues()
        .iter()
        .map(|q| q.name.as_str())
        .collect();
    if let Some(asked) = set(&query.queue)
        && !queues.contains(&asked)
    {
        queues.push(asked);
    }
    queues.sort_unstable();
    let mut stream = "/runs/stream".to_owned();
    let mut sep = '?';
    for (name, value) in [
        ("workflow", set(&query.workflow)),
        ("status", set(&query.status)),
    ] {
        if let Some(value) = value {
            stream.push_str(&format!("{sep}{name}={}", encode(value)));
            sep = '&';
        }
    }
    let body = html! {
        h1 { "Runs" span.live-dot data-live-dot title="live" {} }
        form.filters method="get" action="/ui" {
            label { "Workflow"
                select name="workflow" data-autosubmit {
                    option value="" { "all" }
                    @for slug in &workflows {
                        option value=(slug) selected[set(&query.workflow) == Some(*slug)] { (slug) }
                    }
                }
            }
            @if !queues.is_empty() {
                label { "Queue"
                    select name="queue" data-autosubmit {
                        option value="" { "any" }
                        @for name in &queues {
                            option value=(name) selected[set(&query.queue) == Some(*name)] { (name) }
                        }
                    }
                }
            }
            label { "Status"
                select name="status" data-autosubmit {
                    option value="" { "any" }
                    @for s in RunStatus::ALL {
                        option value=(s.as_str()) selected[set(&query.status) == Some(s.as_str())] { (s.as_str()) }
                    }
                }
            }
            label { "Created within"
                select name="since" data-autosubmit {
                    option value="" { "any time" }
                    @for p in SINCE {
                        option value=(p) selected[set(&query.since) == Some(p)] { "last " (p) }
                    }
                }
            }
            label { "From (UTC)" input type="datetime-local" name="from" value=[set(&query.from)]; }
            label { "To (UTC)" input type="datetime-local" name="to" value=[set(&query.to)]; }
            label { "Run id or tags"
                input type="search" name="q" size="34" value=[set(&query.q)] placeholder="run id, or key=value amount>=100";
            }
            button.primary type="submit" { "Filter" }
            a.button href="/ui" { "Clear" }
        }
        div data-live data-fragment=(page_url(&query, set(&query.cursor), Some("table")))
            data-stream=(stream) data-poll="2000" {
            (content)
        }
    };
    Ok(respond(status, layout::page("Runs", Nav::Runs, body)))
}

fn table_section(query: &RunsQuery, listing: &Listing, now: DateTime<Utc>) -> Markup {
    html! {
        @if listing.runs.is_empty() {
            p.empty {
                @if listing.by_id { "No run has the id " code { (set(&query.q).unwrap_or_default()) } "." }
                @else { "No runs match." }
            }
        } @else {
            (runs_table(&listing.runs, now, true))
        }
        div.pager {
            @if set(&query.cursor).is_some() { a.button href=(page_url(query, None, None)) { "← Newest" } }
            @if let Some(cursor) = &listing.next_cursor {
                a.button #older href=(page_url(query, Some(cursor), None)) { "Older →" }
            }
            span.muted { (listing.runs.len()) " shown" }
        }
    }
}

/// A table of runs, linking each to its page.
pub(crate) fn runs_table(runs: &[RunRecord], now: DateTime<Utc>, with_workflow: bool) -> Markup {
    html! {
        table.data #runs {
            thead { tr {
                th { "Run" }
                @if with_workflow { th { "Workflow" } }
                th { "Status" } th { "Attempt" } th { "Trigger" } th { "Created" } th { "Updated" } th { "Duration" }
            } }
            tbody {
                @for run in runs {
                    tr data-run-id=(run.id) {
                        td.mono { a href={ "/ui/runs/" (run.id) } { (run.id) } }
                        @if with_workflow { td { a href={ "/ui/workflows/" (run.workflow) } { (run.workflow) } } }
                        td { (badge(run.status.as_str())) }
                        td { (run.attempt) }
                        td { (run.trigger.as_str()) }
                        td { (time(run.created_at, now)) }
                        td { (time(run.updated_at, now)) }
                        td {
                            @if run.status.is_terminal() {
                                (layout::duration_ms((run.updated_at - run.created_at).num_milliseconds().max(0) as u64))
                            } @else { span.muted { "—" } }
                        }
                    }
                }
            }
        }
    }
}
