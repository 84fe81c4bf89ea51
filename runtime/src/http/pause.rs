//! `POST /runs/{id}/pause`, `POST /runs/{id}/unpause`, `POST /workflows/{slug}/pause`,
//! `POST /workflows/{slug}/unpause` (see [`crate::Engine::pause_run`]). Recorded with
//! `"by": "api"`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use crate::engine::PauseOutcome;
use crate::event::{RunId, RunStatus};

/// The answer of `POST /runs/{id}/pause` and `POST /runs/{id}/unpause`.
#[derive(Serialize, ToSchema)]
pub(crate) struct PauseState {
    /// The run.
    run_id: String,
    /// The run's status now: `paused`; `running` while a pause is pending; `queued` once
    /// unpaused.
    #[schema(value_type = String)]
    status: RunStatus,
    /// `true` while the run executes and pauses at its next step boundary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pause_requested: Option<bool>,
    /// After an unpause: the run's attempt (a parked run starts a new one).
    #[serde(skip_serializing_if = "Option::is_none")]
    attempt: Option<u32>,
    /// After unpausing a run parked when its attempts ran out: the step that runs again.
    #[serde(skip_serializing_if = "Option::is_none")]
    step: Option<String>,
}

/// Pauses a run: at once when it is queued, sleeping or waiting (200, `paused`); at its next
/// step boundary when it is executing (202, `pause_requested`). A paused run is not claimed
/// by any worker until it is unpaused; its hooks still take payloads.
#[utoipa::path(
    post,
    path = "/runs/{id}/pause",
    operation_id = "pause_run",
    tag = "runs",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The run is paused (or was already)", body = PauseState),
        (status = 202, description = "The run is executing; it pauses at its next step boundary", body = PauseState),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 403, description = "A cross-site request (`Origin` or `Sec-Fetch-Site`)", body = ErrorBody),
        (status = 404, description = "No run has this id", body = ErrorBody),
        (status = 409, description = "The run has already ended", body = ErrorBody),
        (status = 415, description = "A body that is not `application/json` (send none, or JSON)", body = ErrorBody),
    )
)]
pub(crate) async fn pause_run(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = RunId(id);
    let outcome = state.engine.pause_run(&id, "api").await?;
    let (code, status, pending) = match outcome {
        PauseOutcome::Requested => (StatusCode::ACCEPTED, RunStatus::Running, Some(true)),
        _ => (StatusCode::OK, RunStatus::Paused, None),
    };
    let body = PauseState {
        run_id: id.to_string(),
        status,
        pause_requested: pending,
        attempt: None,
        step: None,
    };
    Ok((code, Json(body)).into_response())
}

/// Unpauses a paused run: it is queued again and continues from its log; a run parked when
/// its attempts ran out starts a new attempt and runs its failed step again. For a run that
/// still executes with a pause pending, the request is withdrawn (`status` `running`).
#[utoipa::path(
    post,
    path = "/runs/{id}/unpause",
    operation_id = "unpause_run",
    tag = "runs",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The run is queued again", body = PauseState),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 403, description = "A cross-site request (`Origin` or `Sec-Fetch-Site`)", body = ErrorBody),
        (status = 404, description = "No run has this id", body = ErrorBody),
        (status = 409, description = "The run is not paused", body = ErrorBody),
        (status = 415, description = "A body that is not `application/json` (send none, or JSON)", body = ErrorBody),
    )
)]
pub(crate) async fn unpause_run(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PauseState>, ApiError> {
    let unpaused = state.engine.unpause_run(&RunId(id), "api").await?;
    Ok(Json(PauseState {
        run_id: unpaused.run_id.to_string(),
        status: unpaused.status,
        pause_requested: None,
        attempt: Some(unpaused.attempt),
        step: unpaused.step,
    }))
}

/// The answer of `POST /workflows/{slug}/pause` and `POST /workflows/{slug}/unpause`.
#[derive(Serialize, ToSchema)]
pub(crate) struct WorkflowPauseState {
    /// The workflow's slug.
    workflow: String,
    /// Whether it is paused now.
    paused: bool,
    /// Whether this request changed anything (`false`: it was so already).
    changed: bool,
}

/// Pauses a workflow (for incidents): no run of it is claimed by any worker until it is
/// unpaused; runs executing now go on to their next suspension.
#[utoipa::path(
    post,
    path = "/workflows/{slug}/pause",
    operation_id = "pause_workflow",
    tag = "workflows",
    params(("slug" = String, Path, description = "The workflow's slug")),
    responses(
        (status = 200, description = "The workflow is paused", body = WorkflowPauseState),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 403, description = "A cross-site request (`Origin` or `Sec-Fetch-Site`)", body = ErrorBody),
        (status = 404, description = "No workflow has this slug", body = ErrorBody),
        (status = 415, description = "A body that is not `application/json` (send none, or JSON)", body = ErrorBody),
    )
)]
pub(crate) async fn pause_workflow(
    State(state): State<AppState>,
    Path(slug): Path<String>,
) -> Result<Json<WorkflowPauseState>, ApiError> {
    let changed = state.engine.pause_workflow(&slug, "api").await?;
    Ok(Json(WorkflowPauseState {
        workflow: slug,
        paused: true,
        changed,
    }))
}

/// Unpauses a workflow: its due runs are claimed again.
#[utoipa::path(
    post,
    path = "/workflows/{slug}/unpause",
    operation_id = "unpause_workflow",
    tag = "workflows",
    params(("slug" = String, Path, description = "The workflow's slug")),
    responses(
        (status = 200, description = "The workflow is not paused (any more)", body = WorkflowPauseState),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 403, description = "A cross-site request (`Origin` or `Sec-Fetch-Site`)", body = ErrorBody),
        (status = 415, description = "A body that is not `application/json` (send none, or JSON)", body = ErrorBody),
    )
)]
pub(crate) async fn unpause_workflow(
    State(state): State<AppState>,
    Path(slug): Path<String>,
) -> Result<Json<WorkflowPauseState>, ApiError> {
    let changed = state.engine.unpause_workflow(&slug, "api").await?;
    Ok(Json(WorkflowPauseState {
        workflow: slug,
        paused: false,
        changed,
    }))
}
