//! `POST /events`: emits an event ([`crate::Engine::emit`]) — delivered to every run
//! waiting for its name, and one run started per event id for every workflow declared
//! `#[workflow(on_event = "<name>")]`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::AppState;
use super::body::JsonBody;
use super::error::{ApiError, ErrorBody};

/// The body of `POST /events`.
#[derive(Deserialize, JsonSchema, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EmitBody {
    /// The event's name, such as `order.paid` (1 to 255 bytes, no whitespace).
    name: String,
    /// The event's data (any JSON; `null` when absent).
    #[serde(default)]
    #[schema(value_type = Object)]
    data: Value,
    /// The event's id: a repeat of the same `name` and `id` is processed once (retry with
    /// the same id). A fresh UUID v7 when absent.
    #[serde(default)]
    id: Option<String>,
}

/// The answer of `POST /events` (see [`crate::Emitted`]).
#[derive(Serialize, ToSchema)]
pub(crate) struct EmittedView {
    /// The event's id (the one sent, or the fresh one).
    id: String,
    /// Whether this name and id were emitted before: nothing was started or delivered twice.
    duplicate: bool,
    /// How many waiting runs got the event by this request.
    delivered: usize,
    /// The runs started by this request (`on_event` workflows).
    started: Vec<String>,
    /// `on_event` workflows that started nothing because the data is not a valid input:
    /// `[{"workflow","reason"}]` (left out when empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    rejected: Vec<crate::RejectedStart>,
}

/// Emits an event: every run waiting for `name` (a `ctx.wait_for_event`) gets it, and
/// every workflow declared `on_event = "<name>"` starts one run with `data` as input, once
/// per event id (a repeat answers `duplicate: true`). Only runs waiting when the event is
/// emitted see it.
#[utoipa::path(
    post,
    path = "/events",
    operation_id = "emit_event",
    tag = "events",
    request_body(content = EmitBody, description = "`{\"name\", \"data\", \"id\"?}`", content_type = "application/json"),
    responses(
        (status = 202, description = "Emitted (or a repeat of an id: `duplicate: true`)", body = EmittedView),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 403, description = "A cross-site request (`Origin` or `Sec-Fetch-Site`)", body = ErrorBody),
        (status = 413, description = "The body is over the HTTP body limit, or `data` over the engine's `max_payload_bytes` (nothing is written)", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 422, description = "The body is not `{\"name\", \"data\", \"id\"?}`, or the name or id is empty, too long or holds whitespace; `violations` names each JSON pointer", body = ErrorBody),
    )
)]
pub(crate) async fn emit(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    crate::schema::validate_as::<EmitBody>(&body, "the body of `POST /events`")?;
    let body: EmitBody = serde_json::from_value(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body of `POST /events` is not `{{\"name\", \"data\", \"id\"?}}`: {e}"
        ))
    })?;
    let emitted = state.engine.emit(&body.name, body.data, body.id).await?;
    let view = EmittedView {
        id: emitted.id,
        duplicate: emitted.duplicate,
        delivered: emitted.delivered,
        started: emitted.started.into_iter().map(|id| id.0).collect(),
        rejected: emitted.rejected,
    };
    Ok((StatusCode::ACCEPTED, Json(view)).into_response())
}
