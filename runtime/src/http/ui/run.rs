//! `/ui/runs/{id}`: one run. Its status, input, output or error, attempts and tags; open
//! hooks with a form from each hook's schema; the timeline of its steps; the raw event log;
//! buttons for the operations its status allows. `?fragment=body` answers the live part
//! alone, which `ui.js` re-fetches on each message of `/runs/{id}/stream` (or every second
//! while the stream is not there).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::super::AppState;
use super::form::{self, Then};
use super::layout::{self, Nav, badge, duration_ms, json_block, time};
use super::timeline::{Step, Timeline, tokens_label};
use super::{UiError, html as respond};
use crate::engine::OpenHook;
use crate::event::{Event, RunId, RunRecord, RunStatus};

/// Query of the run page.
#[derive(Debug, Deserialize)]
pub(crate) struct RunQuery {
    /// `body`: only the live part (for `ui.js`).
    fragment: Option<String>,
}

/// `GET /ui/runs/{id}`.
pub(crate) async fn page(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<RunQuery>,
) -> Result<Response, UiError> {
    let id = RunId(id);
    let record = state.engine.get_run(&id).await?;
    let events = state.engine.events(&id).await?;
    let hooks = state.engine.open_hooks_in(&record, &events);
    let wait = crate::http::queues::WaitingFor::of(&state.engine, &record).await;
    let body = body(&state, &record, &events, &hooks, wait.as_ref());
    if query.fragment.as_deref() == Some("body") {
        return Ok(respond(StatusCode::OK, body));
    }
    let title = format!("{} · {}", record.workflow, record.id);
    // The stream sends only what comes after what this page shows.
    let after = events.last().map_or(0, |e| e.seq);
    let page = html! {
        h1 {
            a href={ "/ui/workflows/" (record.workflow) } { (record.workflow) }
            span.mono.muted { (record.id) }
            span.live-dot data-live-dot title="live" {}
        }
        div #flash .flash {}
        div data-live data-fragment={ "/ui/runs/" (record.id) "?fragment=body" }
            data-stream={ "/runs/" (record.id) "/stream?after=" (after) } data-poll="1000" {
            (body)
        }
    };
    Ok(respond(
        StatusCode::OK,
        layout::page(&title, Nav::Runs, page),
    ))
}

/// The buttons the run's status allows (each posts to the JSON API).
fn actions(record: &RunRecord) -> Markup {
    let id = &record.id;
    let status = record.status;
    html! {
        span.actions {
            a.button href={ "/ui/runs/" (id) "/graph" } { "Graph" }
            @if !status.is_terminal() {
                @if status == RunStatus::Paused {
                    button data-post={ "/runs/" (id) "/unpause" } data-done="Unpaused." { "Unpause" }
                } @else {
                    button data-post={ "/runs/" (id) "/pause" } data-done="Pause requested." { "Pause" }
                }
                button.danger data-post={ "/runs/" (id) "/cancel" } data-confirm="Cancel this run?" data-done="Canceled." { "Cancel" }
            }
            @if status == RunStatus::Failed {
                button data-post={ "/runs/" (id) "/retry" } data-done="Retrying." { "Retry" }
            }
            button data-post={ "/runs/" (id) "/restart" } data-then="navigate" data-confirm="Start a new run with the same input?" { "Restart" }
        }
    }
}

/// The live part of the page.
fn body(
    state: &AppState,
    record: &RunRecord,
    events: &[Event],
    hooks: &[OpenHook],
    wait: Option<&crate::http::queues::WaitingFor>,
) -> Markup {
    let timeline = Timeline::of(events, state.engine.prices());
    let usage = crate::engine::token_usage(events);
    let tags = crate::tags::tags_of(events);
    let forked = crate::engine::forked_from(events);
    let identity = crate::engine::identity_of(events);
    let links = crate::engine::run_links_of(record, events);
    let now = state.engine.now();
    let ended = record.status.is_terminal();
    let duration = match (timeline.start, ended) {
        (Some(start), true) => Some((record.updated_at - start).num_milliseconds().max(0) as u64),
        _ => None,
    };
    html! {
        div data-run-status=(record.status.as_str()) data-done=(ended) {}
        div.toolbar { (actions(record)) }
        div.panel {
            dl.meta {
                dt { "Status" } dd #run-status { (badge(record.status.as_str())) }
                dt { "Workflow" } dd { a href={ "/ui/workflows/" (record.workflow) } { (record.workflow) } }
                dt { "Trigger" } dd { (record.trigger.as_str()) }
                dt { "Started by" } dd #run-actor { (identity.actor.describe()) }
                @if let Some(user) = &identity.user { dt { "User" } dd #run-user { (user) } }
                @if let Some(project) = &identity.project { dt { "Project" } dd #run-project { (project) } }
                @if let Some(subscriber) = &identity.subscriber {
                    dt { "Subscriber" } dd #run-subscriber {
                        (subscriber.user) " · subscription " code { (subscriber.subscription) }
                    }
                }
                dt { "Attempt" } dd { (record.attempt) }
                dt { "Created" } dd { (time(record.created_at, now)) }
                dt { "Updated" } dd { (time(record.updated_at, now)) }
                @if let Some(ms) = duration { dt { "Duration" } dd { (duration_ms(ms)) } }
                @if let Some(wake) = record.wake_at { dt { "Wakes" } dd { (time(wake, now)) } }
                @if let Some(queue) = &record.queue {
                    dt { "Queue" } dd #run-queue data-queue=(queue.name) {
                        a href="/ui/queues" { (queue.name) }
                        @if let Some(key) = &queue.key { " · key " code { (key) } }
                        " · priority " (queue.priority)
                        @if let Some(at) = queue.admitted_at { " · admitted " (time(at, now)) }
                        @else { " · " span.muted { "not admitted yet" } }
                    }
                }
                @if let Some(wait) = wait {
                    dt { "Waiting" } dd #run-waiting .wrap { (wait.message) }
                }
                @if usage.total_tokens > 0 {
                    dt { "Tokens" } dd { (tokens_label(&usage)) }
                    dt { "Cost" } dd {
                        @if let Some(cost) = timeline.cost { (crate::cost::dollars(cost)) }
                        @else { span.muted title={ "no price for " (timeline.unpriced.join(", ")) } { "unknown" } }
                    }
                }
                @if let Some(forked) = &forked {
                    dt { "Forked from" } dd {
                        a.mono href={ "/ui/runs/" (forked.run_id) } { (forked.run_id) }
                        @if let Some(step) = &forked.step { " at " code { (step) } } @else { " (restart)" }
                    }
                }
                @if let Some(parent) = &links.parent {
                    dt { "Parent" } dd {
                        a.mono href={ "/ui/runs/" (parent.run_id) } { (parent.run_id) }
                        " at " code { (parent.step) }
                    }
                }
                @if !links.children.is_empty() {
                    dt { "Children" } dd {
                        @for child in &links.children {
                            a.mono href={ "/ui/runs/" (child.run_id) } { (child.run_id) }
                            " " (child.workflow) @if child.detached { " (detached)" } br;
                        }
                    }
                }
                @if let Some(from) = &links.continued_from {
                    dt { "Continues" } dd { a.mono href={ "/ui/runs/" (from) } { (from) } }
                }
                @if let Some(next) = &links.continued_as {
                    dt { "Continued as" } dd { a.mono href={ "/ui/runs/" (next) } { (next) } }
                }
                @if !tags.is_empty() {
                    dt { "Tags" } dd {
                        @for (key, value) in &tags {
                            span.tag { (key) "=" (value) }
                        }
                    }
                }
            }
        }
        @if !hooks.is_empty() {
            h2 { "Waiting on" }
            @for hook in hooks { (hook_panel(record, hook, now)) }
        }
        (messages_panel(state, record, events))
        div.grid2 {
            div {
                h2 { "Input" }
                (json_block(&record.input))
            }
            div {
                @if let Some(error) = &record.error {
                    h2 { "Error" }
                    div.error-box { (json_block(error)) }
                } @else if let Some(output) = &record.output {
                    h2 { "Output" }
                    (json_block(output))
                } @else {
                    h2 { "Output" }
                    p.muted { "None yet: the run is " (record.status.as_str()) "." }
                }
            }
        }
        h2 { "Timeline " span.muted { "(" (timeline.steps.len()) " steps)" } }
        (timeline_markup(&timeline, now))
        h2 { "Event log" }
        details.raw data-key="raw-log" {
            summary { (events.len()) " events (raw)" }
            table.data #events {
                thead { tr { th { "seq" } th { "kind" } th { "step" } th { "attempt" } th { "at" } th { "payload" } } }
                tbody {
                    @for event in events {
                        tr {
                            td { (event.seq) }
                            td { (event.event.kind.as_str()) }
                            td.mono { (event.event.correlation_id.as_deref().unwrap_or("")) }
                            td { (event.event.attempt) }
                            td { (time(event.event.at, now)) }
                            td.wrap.mono { (compact(&event.event.payload, 400)) }
                        }
                    }
                }
            }
        }
    }
}

/// An open hook: where to send its payload, and a form from its schema.
fn hook_panel(record: &RunRecord, hook: &OpenHook, now: DateTime<Utc>) -> Markup {
    let schema = hook.schema.clone().unwrap_or_else(form::any_schema);
    let action = format!("/hooks/{}", hook.token);
    html! {
        div.panel.hook data-hook=(hook.id) {
            p {
                strong.mono { (hook.id) }
                @if let Some(at) = hook.timeout_at { " · times out at " (time(at, now)) }
                " · "
                span.muted { "resume URL: " code { (hook.resume_url) } }
            }
            (form::schema_form(&schema, &action, "Deliver payload", Then::Refresh))
            details.raw { summary { "Schema" } (json_block(&schema)) }
            @if record.status != RunStatus::Waiting { p.muted { "The run is " (record.status.as_str()) "." } }
        }
    }
}

/// The run's published state (`ctx.publish`), and, while it runs, a form per signal and per
/// update its workflow receives (posting to `/runs/{id}/signals/{name}` or
/// `/runs/{id}/updates/{name}`, checked against the payload's schema there: a 422 shows
/// each violation next to its field).
fn messages_panel(state: &AppState, record: &RunRecord, events: &[Event]) -> Markup {
    let published = crate::ctx::publish::state_of(events);
    let signals = message_forms(state, record, crate::step::MessageKind::Signal);
    let updates = message_forms(state, record, crate::step::MessageKind::Update);
    html! {
        @if !published.is_empty() {
            h2 { "Published state" }
            table.data #published-state {
                thead { tr { th { "key" } th { "value" } } }
                tbody {
                    @for (key, value) in &published {
                        tr data-state-key=(key) { td.mono { (key) } td.wrap.mono { (compact(value, 400)) } }
                    }
                }
            }
        }
        @if !signals.is_empty() {
            h2 { "Send a signal" }
            @for (name, schema) in &signals {
                details.panel.signal data-signal=(name) {
                    summary { strong.mono { (name) } }
                    (form::schema_form(schema, &format!("/runs/{}/signals/{name}", record.id), &format!("Send {name}"), Then::Refresh))
                }
            }
        }
        @if !updates.is_empty() {
            h2 { "Send an update" }
            @for (name, schema) in &updates {
                details.panel.update data-update=(name) {
                    summary { strong.mono { (name) } " " span.muted { "(waits up to 30 s for the run's answer)" } }
                    (form::schema_form(schema, &format!("/runs/{}/updates/{name}?wait=30s", record.id), &format!("Send {name}"), Then::Refresh))
                }
            }
        }
    }
}

/// The `kind` messages (signals or updates) the run's workflow receives, with the schema of
/// each payload; none once the run has ended.
fn message_forms(
    state: &AppState,
    record: &RunRecord,
    kind: crate::step::MessageKind,
) -> Vec<(String, Value)> {
    if record.status.is_terminal() {
        return Vec::new();
    }
    let Some(mailboxes) = state.engine.env().service::<crate::delivery::Mailboxes>() else {
        return Vec::new();
    };
    mailboxes
        .names(&record.workflow, kind)
        .into_iter()
        .filter_map(|name| {
            let decl = mailboxes.find(&record.workflow, kind, &name)?;
            let schema = (decl.payload)()
                .map(|v| v.schema().clone())
                .unwrap_or_else(|_| form::any_schema());
            Some((name, schema))
        })
        .collect()
}

fn timeline_markup(timeline: &Timeline<'_>, now: DateTime<Utc>) -> Markup {
    if timeline.steps.is_empty() {
        return html! { p.empty { "No steps recorded yet." } };
    }
    let start = timeline.start.unwrap_or(now);
    let end = timeline.end.unwrap_or(now);
    let span = (end - start).num_milliseconds().max(1) as f64;
    html! {
        div.timeline #timeline {
            div.tl-head { span { "Step" } span { "Status" } span { "Attempts" } span { "Duration" } span { "When" } }
            @for step in &timeline.steps { (step_row(step, start, end, span, now)) }
        }
    }
}

fn step_row(
    step: &Step<'_>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    span: f64,
    now: DateTime<Utc>,
) -> Markup {
    let s = &step.summary;
    let status = s.status.as_str();
    // Unfinished steps extend to the last event (not to now: the fragment stays the same
    // while nothing happens, so a poll changes nothing on the page).
    let finish = match s.duration_ms {
        Some(ms) => s.started_at + chrono::TimeDelta::milliseconds(ms as i64),
        None => end,
    };
    let left = ((s.started_at - start).num_milliseconds().max(0) as f64 / span * 100.0).min(99.7);
    // At least a sliver, never past the end (the CSS gives bars a minimum width too).
    let width = ((finish - s.started_at).num_milliseconds().max(0) as f64 / span * 100.0)
        .max(0.3)
        .min(100.0 - left);
    let name = s.id.rsplit('/').next().unwrap_or(&s.id);
    let indent = format!("padding-left:{}px", 10 + step.depth * 18);
    html! {
        details.tl-row data-key={ "step:" (s.id) } data-step=(s.id) data-step-status=(status) {
            summary {
                span.tl-name style=(indent) {
                    span.caret { "▸" }
                    span.id title=(s.id) { (name) }
                    span.callee { (s.callee) }
                    @if !step.kind.is_empty() && step.kind != s.callee { span.kind { (step.kind) } }
                }
                span { (badge(status)) }
                span {
                    (s.attempts)
                    @if !step.retries.is_empty() { " " span.tl-retries title="retried attempts" { "↻" (step.retries.len()) } }
                }
                span { @if let Some(ms) = s.duration_ms { (duration_ms(ms)) } @else { span.muted { "—" } } }
                span.tl-track title={ (s.started_at.to_rfc3339()) } {
                    span class={ "tl-bar s-" (status) } style=(format!("left:{left:.3}%;width:{width:.3}%")) {}
                }
            }
            div.tl-body {
                div.muted {
                    "started " (time(s.started_at, now)) " · id " code { (s.id) }
                    @if let Some(usage) = &s.usage {
                        " · " (tokens_label(usage))
                        @if let Some(model) = &step.model { " on " code { (model) } }
                        @if let Some(cost) = step.cost { " · " (crate::cost::dollars(cost)) }
                    }
                }
                @if let Some(input) = step.input { div { h3 { "Input" } (json_block(input)) } }
                @for retry in &step.retries {
                    div.retry {
                        h3 {
                            "Attempt " (retry.attempt) " failed at " (time(retry.at, now))
                            @if let Some(ms) = retry.delay_ms { ", retried after " (duration_ms(ms)) }
                        }
                        (json_block(&retry.error))
                    }
                }
                @if let Some(error) = step.error { div.error-box { h3 { "Error" } (json_block(error)) } }
                @if let Some(output) = step.output { div { h3 { "Output" } (json_block(output)) } }
                @if let Some(wake) = step.wake_at { div { h3 { "Wakes at" } (json_block(wake)) } }
                @if let Some(received) = step.received { div { h3 { "Received" } (json_block(received)) } }
            }
        }
    }
}

/// `value` as one line of JSON, cut at about `max` characters.
fn compact(value: &Value, max: usize) -> String {
    let text = value.to_string();
    if text.len() <= max {
        return text;
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &text[..cut])
}
