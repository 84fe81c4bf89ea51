//! `POST /hooks/{token}` and `GET /hooks/{token}`: deliver a hook's payload (once).

use axum::Json;
use axum::extract::{Path, Query, State};
use serde_json::{Map, Value};

use super::AppState;
use super::body::JsonBody;
use super::error::{ApiError, ErrorBody};
use super::views::RunState;
use crate::event::RunStatus;

/// Delivers a JSON payload to the hook with this token. The payload is checked against the
/// hook's type; the run becomes `queued` and a worker continues it.
#[utoipa::path(
    post,
    path = "/hooks/{token}",
    operation_id = "resume_hook_post",
    tag = "hooks",
    params(("token" = String, Path, description = "The hook's token (the last segment of its resume URL)")),
    request_body(content = Value, description = "The payload (an empty body is `null`)", content_type = "application/json"),
    responses(
        (status = 200, description = "Delivered; the run is queued", body = RunState),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 404, description = "No hook has this token", body = ErrorBody),
        (status = 409, description = "The hook already received its payload, timed out, or the run is not waiting", body = ErrorBody),
        (status = 413, description = "The body is over the HTTP body limit, or the payload over the engine's `max_payload_bytes` (`code: payload_too_large`, naming the size and the limit; nothing is written)", body = ErrorBody),
        (status = 422, description = "The payload violates the hook's schema; the hook stays open", body = ErrorBody),
    )
)]
pub(crate) async fn resume_post(
    State(state): State<AppState>,
    Path(token): Path<String>,
    JsonBody(payload): JsonBody,
) -> Result<Json<RunState>, ApiError> {
    resume(&state, &token, payload).await
}

/// Delivers the query string as the payload: `?approved=yes&note=ok` is
/// `{"approved": "yes", "note": "ok"}`. Every value is a **string** (use `POST` for numbers,
/// booleans or nested values); a name given twice is 400.
#[utoipa::path(
    get,
    path = "/hooks/{token}",
    operation_id = "resume_hook_get",
    tag = "hooks",
    params(
        ("token" = String, Path, description = "The hook's token (the last segment of its resume URL)"),
    ),
    responses(
        (status = 200, description = "Delivered; the run is queued", body = RunState),
        (status = 400, description = "A query parameter is given twice", body = ErrorBody),
        (status = 404, description = "No hook has this token", body = ErrorBody),
        (status = 409, description = "The hook already received its payload, timed out, or the run is not waiting", body = ErrorBody),
        (status = 422, description = "The payload violates the hook's schema; the hook stays open", body = ErrorBody),
    )
)]
pub(crate) async fn resume_get(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<RunState>, ApiError> {
    let payload = query_payload(pairs)?;
    resume(&state, &token, payload).await
}

async fn resume(state: &AppState, token: &str, payload: Value) -> Result<Json<RunState>, ApiError> {
    let id = state.engine.resume_hook(token, payload).await?;
    Ok(Json(RunState::new(&id, RunStatus::Queued)))
}

/// The query string's pairs as a JSON object of strings.
fn query_payload(pairs: Vec<(String, String)>) -> Result<Value, ApiError> {
    let mut payload = Map::new();
    for (name, value) in pairs {
        if payload.contains_key(&name) {
            return Err(ApiError::bad_request(format!(
                "query parameter `{name}` is given more than once; give each name once, or POST \
                 a JSON body for lists"
            )));
        }
        payload.insert(name, Value::String(value));
    }
    Ok(Value::Object(payload))
}
