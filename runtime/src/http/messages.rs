//! Talking to running runs: signals (`POST /runs/{id}/signals/{name}`, and by business key
//! `POST /workflows/{slug}/runs/{key}/signals/{name}`), updates
//! (`POST /runs/{id}/updates/{name}?wait=30s`), published state (`GET /runs/{id}/state`,
//! `GET /runs/{id}/state/{key}?wait=10s`), and a run by business key
//! (`GET /workflows/{slug}/runs/{key}`). Errors map as everywhere ([`super::error`]): 404
//! unknown run, key or name, 409 ended run, 422 schema violations with JSON pointers.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::body::JsonBody;
use super::error::{ApiError, ErrorBody};
use super::runs::RunDetail;
use super::views::RunState;
use super::workflows::{idempotency_key, parse_wait};
use crate::event::RunId;
use crate::message::Posted;

/// The answer to a delivered signal.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SignalPosted {
    /// The run it was delivered to.
    run_id: String,
    /// Its position in the run's inbox (the first delivery's, for a duplicate).
    seq: u64,
    /// `true` when a delivery with the same `Idempotency-Key` was posted before: nothing
    /// was posted this time.
    duplicate: bool,
}

fn posted(run: &RunId, posted: Posted) -> Response {
    let body = SignalPosted {
        run_id: run.to_string(),
        seq: posted.seq,
        duplicate: posted.duplicate,
    };
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

/// The `Idempotency-Key` header of a delivery, if any (400 when malformed).
fn delivery_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    idempotency_key(headers)
}

/// Delivers signal `name` to run `id`: the JSON body is the payload, checked against the
/// type the workflow receives it as (`ctx.signal::<T>(name)`). A run waiting for it is
/// queued at once; one not waiting yet keeps it until it does. With an `Idempotency-Key`
/// header, a retried request delivers once (202 with `"duplicate": true`).
#[utoipa::path(
    post,
    path = "/runs/{id}/signals/{name}",
    operation_id = "signal_run",
    tag = "runs",
    params(
        ("id" = String, Path, description = "The run's id"),
        ("name" = String, Path, description = "The signal's name, as the workflow receives it (`ctx.signal::<T>(\"paid\")`)"),
        ("Idempotency-Key" = Option<String>, Header, description = "A key unique to this delivery (1 to 255 printable ASCII characters): a retry with the same key delivers nothing more (`duplicate: true`)"),
    ),
    request_body(content = Value, description = "The signal's payload (an empty body is `null`)", content_type = "application/json"),
    responses(
        (status = 202, description = "Delivered (or a duplicate of an earlier delivery)", body = SignalPosted),
        (status = 400, description = "The body is not JSON, or the idempotency key is malformed", body = ErrorBody),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 404, description = "No run has this id (`unknown_run`), or its workflow receives no signal of this name (`unknown_signal`)", body = ErrorBody),
        (status = 409, description = "The run has ended", body = ErrorBody),
        (status = 413, description = "The payload is over the engine's `max_payload_bytes`", body = ErrorBody),
        (status = 422, description = "The payload violates the signal's schema; `violations` names each JSON pointer; nothing was delivered", body = ErrorBody),
    )
)]
pub(crate) async fn signal(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    headers: HeaderMap,
    JsonBody(payload): JsonBody,
) -> Result<Response, ApiError> {
    let key = delivery_key(&headers)?;
    let run = RunId(id);
    let done = state
        .engine
        .signal(&run, &name, payload, key.as_deref())
        .await?;
    Ok(posted(&run, done))
}

/// Delivers signal `name` to the run of workflow `slug` that holds business key `key`, as
/// `POST /runs/{id}/signals/{name}` does.
#[utoipa::path(
    post,
    path = "/workflows/{slug}/runs/{key}/signals/{name}",
    operation_id = "signal_run_by_key",
    tag = "workflows",
    params(
        ("slug" = String, Path, description = "The workflow's slug"),
        ("key" = String, Path, description = "The run's business key"),
        ("name" = String, Path, description = "The signal's name"),
        ("Idempotency-Key" = Option<String>, Header, description = "A key unique to this delivery: a retry with the same key delivers nothing more"),
    ),
    request_body(content = Value, description = "The signal's payload", content_type = "application/json"),
    responses(
        (status = 202, description = "Delivered (or a duplicate of an earlier delivery)", body = SignalPosted),
        (status = 400, description = "The body is not JSON, or a key is malformed", body = ErrorBody),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 404, description = "No run of the workflow holds the key (`unknown_key`), or it receives no such signal (`unknown_signal`)", body = ErrorBody),
        (status = 409, description = "The run has ended", body = ErrorBody),
        (status = 413, description = "The payload is over the engine's `max_payload_bytes`", body = ErrorBody),
        (status = 422, description = "The payload violates the signal's schema", body = ErrorBody),
    )
)]
pub(crate) async fn signal_by_key(
    State(state): State<AppState>,
    Path((slug, key, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    JsonBody(payload): JsonBody,
) -> Result<Response, ApiError> {
    let idempotency = delivery_key(&headers)?;
    let run = state.engine.run_by_key(&slug, &key).await?.id;
    let done = state
        .engine
        .signal(&run, &name, payload, idempotency.as_deref())
        .await?;
    Ok(posted(&run, done))
}

/// The run of workflow `slug` that holds business key `key`, as `GET /runs/{id}` shows it.
#[utoipa::path(
    get,
    path = "/workflows/{slug}/runs/{key}",
    operation_id = "get_run_by_key",
    tag = "workflows",
    params(
        ("slug" = String, Path, description = "The workflow's slug"),
        ("key" = String, Path, description = "The run's business key"),
    ),
    responses(
        (status = 200, description = "The run", body = RunDetail),
        (status = 400, description = "The key is malformed", body = ErrorBody),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 404, description = "No run of the workflow holds the key (`unknown_key`, naming it)", body = ErrorBody),
    )
)]
pub(crate) async fn run_by_key(
    State(state): State<AppState>,
    Path((slug, key)): Path<(String, String)>,
) -> Result<Json<RunDetail>, ApiError> {
    let run = state.engine.run_by_key(&slug, &key).await?.id;
    Ok(Json(super::runs::run_detail(&state.engine, &run).await?))
}

/// Query of the routes that wait (`?wait=`).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct WaitQuery {
    /// How long to wait (`500ms`, `10s`; at most `5m`).
    #[param(example = "10s")]
    wait: Option<String>,
}

/// The default `?wait=` of an update.
const UPDATE_WAIT: Duration = Duration::from_secs(30);

/// The answer to an update.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UpdateReply {
    /// The run.
    run_id: String,
    /// The workflow's answer (`request.reply(Ok(..))`).
    result: Value,
}

/// Sends update `name` to run `id` (the JSON body is the request, checked against the
/// update's request type) and waits up to `?wait=` (default 30s) for the workflow's answer.
/// An invalid request gets 422 with the violations and changes nothing; a handler's
/// `Err(message)` is 422 `update_rejected` with the message; no answer in time is 504
/// `timeout` (the request stays queued: the run answers it when it next receives it).
#[utoipa::path(
    post,
    path = "/runs/{id}/updates/{name}",
    operation_id = "update_run",
    tag = "runs",
    params(
        ("id" = String, Path, description = "The run's id"),
        ("name" = String, Path, description = "The update's name (`ctx.updates::<Req, Resp>(\"set-limit\")`)"),
        WaitQuery,
    ),
    request_body(content = Value, description = "The update request", content_type = "application/json"),
    responses(
        (status = 200, description = "The workflow's answer", body = UpdateReply),
        (status = 400, description = "The body is not JSON, or `wait` is not a duration of at most 5m", body = ErrorBody),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 404, description = "No run has this id, or it receives no update of this name (`unknown_update`)", body = ErrorBody),
        (status = 409, description = "The run has ended (before or without answering)", body = ErrorBody),
        (status = 413, description = "The request is over the engine's `max_payload_bytes`", body = ErrorBody),
        (status = 422, description = "The request violates the update's schema (`schema`, nothing posted), or the workflow refused it (`update_rejected`)", body = ErrorBody),
        (status = 504, description = "No answer within `wait` (`timeout`); the request stays queued", body = ErrorBody),
    )
)]
pub(crate) async fn update(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    Query(query): Query<WaitQuery>,
    JsonBody(payload): JsonBody,
) -> Result<Json<UpdateReply>, ApiError> {
    let wait = match query.wait.as_deref() {
        Some(text) => parse_wait(text)?,
        None => UPDATE_WAIT,
    };
    let run = RunId(id);
    let result = state.engine.update(&run, &name, payload, wait).await?;
    Ok(Json(UpdateReply {
        run_id: run.to_string(),
        result,
    }))
}

/// The state run `id` published (`ctx.publish`): the latest value per key (`{}` before the
/// first publish).
#[utoipa::path(
    get,
    path = "/runs/{id}/state",
    operation_id = "get_run_state",
    tag = "runs",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The published state, by key", body = Object),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 404, description = "No run has this id", body = ErrorBody),
    )
)]
pub(crate) async fn state(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<BTreeMap<String, Value>>, ApiError> {
    Ok(Json(state.engine.state(&RunId(id)).await?))
}

/// The latest value run `id` published under `key`. With `?wait=10s`, waits up to that
/// long for the first publish.
#[utoipa::path(
    get,
    path = "/runs/{id}/state/{key}",
    operation_id = "get_run_state_key",
    tag = "runs",
    params(
        ("id" = String, Path, description = "The run's id"),
        ("key" = String, Path, description = "The state key (`ctx.publish(\"progress\", ..)`)"),
        WaitQuery,
    ),
    responses(
        (status = 200, description = "The value", body = Value),
        (status = 400, description = "`wait` is not a duration of at most 5m", body = ErrorBody),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 404, description = "No run has this id (`unknown_run`), or it has not published `key` (`no_state`)", body = ErrorBody),
        (status = 409, description = "With `wait`: the run ended without publishing `key`", body = ErrorBody),
        (status = 504, description = "With `wait`: nothing was published in time (`timeout`)", body = ErrorBody),
    )
)]
pub(crate) async fn state_key(
    State(state): State<AppState>,
    Path((id, key)): Path<(String, String)>,
    Query(query): Query<WaitQuery>,
) -> Result<Json<Value>, ApiError> {
    let run = RunId(id);
    if let Some(text) = query.wait.as_deref() {
        let wait = parse_wait(text)?;
        return Ok(Json(state.engine.wait_for_state(&run, &key, wait).await?));
    }
    match state.engine.state(&run).await?.remove(&key) {
        Some(value) => Ok(Json(value)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_state",
            format!(
                "run `{run}` has not published state `{key}` (yet); `GET /runs/{run}/state` \
                 lists what it published, `?wait=10s` waits for it"
            ),
        )),
    }
}

/// The answer to a start with a business key: 201 with `"created": true` when this
/// request created run `id`, else 200 with where that run stands and `"created": false`
/// (after `wait`, if given).
pub(crate) async fn keyed_start(
    state: &AppState,
    id: &RunId,
    created: bool,
    wait: Option<Duration>,
) -> Result<Response, ApiError> {
    let record = match wait {
        Some(wait) => state.engine.wait_for_end(id, wait).await?,
        None => state.engine.get_run(id).await?,
    };
    let mut body = RunState::of(record);
    body.created = Some(created);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(body)).into_response())
}
