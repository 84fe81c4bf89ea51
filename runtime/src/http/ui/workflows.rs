//! `/ui/workflows` and `/ui/workflows/{slug}`: the registered workflows; one workflow's
//! description, start form (from its input schema), graph, schemas and recent runs, and
//! for a workflow file, its path and text.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

use super::super::AppState;
use super::form::{self, Then};
use super::layout::{self, Nav, json_block};
use super::{UiError, html as respond};
use crate::event::RunFilter;
use crate::graph::Graph;

/// Recent runs shown on a workflow's page.
const RECENT: usize = 20;

/// `GET /ui/workflows`.
pub(crate) async fn list(State(state): State<AppState>) -> Result<Response, UiError> {
    let pauses = state.engine.workflow_pauses().await?;
    let mut entries: Vec<_> = state.engine.registry().workflows().collect();
    entries.sort_by_key(|e| e.registration.slug);
    let body = html! {
        h1 { "Workflows" }
        @if entries.is_empty() {
            p.empty { "No workflow is registered in this binary." }
        } @else {
            table.data #workflows {
                thead { tr { th { "Workflow" } th { "Description" } th { "State" } th {} } }
                tbody {
                    @for entry in &entries {
                        @let slug = entry.registration.slug;
                        tr data-workflow=(slug) {
                            td {
                                a href={ "/ui/workflows/" (slug) } { strong { (slug) } }
                                @if let Some(path) = entry.path {
                                    " " span.muted.origin title={ "workflow file " (path.display()) } { "file" }
                                }
                            }
                            td.wrap { (layout::doc_text(entry.registration.description.trim().lines().next().unwrap_or(""))) }
                            td {
                                @if let Some(p) = pauses.iter().find(|p| p.workflow == slug) {
                                    span.badge.s-paused title={ "by " (p.by) } { "paused" }
                                } @else { span.muted { "active" } }
                            }
                            td { a href={ "/ui?workflow=" (super::runs::encode(slug)) } { "runs →" } }
                        }
                    }
                }
            }
        }
    };
    Ok(respond(
        StatusCode::OK,
        layout::page("Workflows", Nav::Workflows, body),
    ))
}

/// `GET /ui/workflows/{slug}`.
pub(crate) async fn page(
    State(state): State<AppState>,
    Path(slug): Path<String>,
) -> Result<Response, UiError> {
    let Some(entry) = state.engine.registry().workflow(&slug) else {
        return Err(UiError::not_found(format!(
            "No workflow `{slug}` is registered in this binary."
        )));
    };
    let runs = state
        .engine
        .list_runs(&RunFilter {
            workflow: Some(slug.clone()),
            limit: Some(RECENT),
            ..RunFilter::default()
        })
        .await?;
    let paused = state
        .engine
        .workflow_pauses()
        .await?
        .into_iter()
        .find(|p| p.workflow == slug);
    let subscriptions = match entry.subscription_schema() {
        Some(_) => Some(state.engine.subscriptions(Some(&slug)).await?),
        None => None,
    };
    let svg = Graph::of_workflow(state.engine.registry(), &slug).map(|g| g.svg());
    let now = state.engine.now();
    let description = entry.registration.description.trim();
    let action = format!("/workflows/{slug}");
    let body = html! {
        h1 {
            (slug)
            @if let Some(p) = &paused { span.badge.s-paused title={ "by " (p.by) } { "paused" } }
            span.actions {
                @if paused.is_some() {
                    button data-post={ "/workflows/" (slug) "/unpause" } data-done="Unpaused." { "Unpause workflow" }
                } @else {
                    button data-post={ "/workflows/" (slug) "/pause" } data-done="Paused: no run of it is claimed." { "Pause workflow" }
                }
            }
        }
        div #flash .flash {}
        @if let Some(path) = entry.path {
            p.muted #defined-in { "defined in " code { (path.display()) } " (a workflow file; edits take effect at the next start)" }
        }
        @if !description.is_empty() { div.panel { @for line in description.lines() { (layout::doc_text(line)) br; } } }
        div.grid2 {
            div {
                h2 { "Start a run" }
                div.panel #start { (form::schema_form(entry.input_schema(), &action, "Start run", Then::OpenRun)) }
            }
            div {
                h2 { "Graph" }
                @match svg {
                    Some(svg) => div.graph #graph { (layout::trusted(svg)) },
                    None => p.muted { "No graph." },
                }
            }
        }
        h2 { "Recent runs" }
        @if runs.is_empty() { p.empty { "No runs yet." } } @else {
            (super::runs::runs_table(&runs, now, false))
            p { a href={ "/ui?workflow=" (super::runs::encode(&slug)) } { "All runs of " (slug) " →" } }
        }
        @if let Some(subscriptions) = &subscriptions {
            h2 { "Subscriptions" }
            @if subscriptions.is_empty() {
                p.empty { "No subscriptions: a trigger starts no run until a user subscribes (`subscriptions create " (slug) " --user <id> --config '<json>'`)." }
            } @else {
                table {
                    thead { tr { th { "Id" } th { "User" } th { "State" } th { "Created" } th { "Config" } } }
                    tbody {
                        @for s in subscriptions {
                            tr {
                                td { code { (s.id) } }
                                td { (s.user) }
                                td { @if s.paused { "paused" } @else { "active" } }
                                td { (s.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)) " by " (s.created_by) }
                                td { code { (s.config.to_string()) } }
                            }
                        }
                    }
                }
            }
        }
        div.grid2 {
            details.raw { summary { "Input schema" } (json_block(entry.input_schema())) }
            details.raw { summary { "Output schema" } (json_block(entry.output_schema())) }
        }
        @if let Some(schema) = entry.subscription_schema() {
            details.raw { summary { "Subscription config schema" } (json_block(schema)) }
        }
        @if let (Some(path), Some(source)) = (entry.path, entry.source) {
            h2 { "Source" }
            details.raw #source open {
                summary { (path.display()) }
                pre { code { (source) } }
            }
        }
    };
    Ok(respond(
        StatusCode::OK,
        layout::page(&slug, Nav::Workflows, body),
    ))
}
