//! `GET /workflows/{slug}/graph`: a workflow's graph (its real shape: branches, loops,
//! parallel groups, sub-workflows, waits), optionally lit by one of its runs, as SVG,
//! Mermaid or JSON (see [`crate::graph`]).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::error::{ApiError, ErrorBody, from_engine};
use crate::event::RunId;
use crate::graph::{Graph, GraphError};

/// The query of `GET /workflows/{slug}/graph`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct GraphQuery {
    /// Light the graph with this run of the workflow: every call-site node gets the status
    /// its steps reached and how often it ran.
    run: Option<String>,
    /// `svg` (the default, `image/svg+xml`), `mermaid` (a Mermaid flowchart,
    /// `text/plain`) or `json` (the graph's nodes, edges and groups).
    format: Option<String>,
}

/// A workflow's graph, optionally lit by one of its runs: SVG (default), Mermaid or JSON.
#[utoipa::path(
    get,
    path = "/workflows/{slug}/graph",
    operation_id = "get_workflow_graph",
    tag = "workflows",
    params(("slug" = String, Path, description = "The workflow's slug"), GraphQuery),
    responses(
        (status = 200, description = "The graph: `image/svg+xml` (standalone, no scripts; call-site nodes are `<g class=\"node <status>\" data-step data-status>`), `text/plain` Mermaid, or JSON `{slug, lit, run_id, nodes, edges, groups}`", body = Object),
        (status = 400, description = "An unknown `format`", body = ErrorBody),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 404, description = "No workflow has this slug, or no run has this id", body = ErrorBody),
        (status = 422, description = "The run is a run of another workflow", body = ErrorBody),
    )
)]
pub(crate) async fn graph(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    Query(query): Query<GraphQuery>,
) -> Result<Response, ApiError> {
    let format = query.format.as_deref().unwrap_or("svg");
    if !matches!(format, "svg" | "mermaid" | "json") {
        return Err(ApiError::bad_request(format!(
            "unknown graph format `{format}`; expected `svg` (the default), `mermaid` or `json`"
        )));
    }
    let graph = match &query.run {
        Some(run) => Graph::of_run(&state.engine, &slug, &RunId(run.clone()))
            .await
            .map_err(graph_error)?,
        None => Graph::of_workflow(state.engine.registry(), &slug)
            .ok_or_else(|| from_engine(crate::EngineError::UnknownWorkflow(slug.clone())))?,
    };
    Ok(match format {
        "mermaid" => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            graph.mermaid(),
        )
            .into_response(),
        "json" => Json(graph).into_response(),
        _ => ([(header::CONTENT_TYPE, "image/svg+xml")], graph.svg()).into_response(),
    })
}

/// 404 for an unknown workflow or run (as everywhere), 422 `other_workflow` for a run of
/// another workflow.
fn graph_error(error: GraphError) -> ApiError {
    match error {
        GraphError::Engine(error) => from_engine(error),
        other @ GraphError::OtherWorkflow { .. } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "other_workflow",
            other.to_string(),
        ),
    }
}
