//! `/schedules`: schedules as data over HTTP (see [`crate::trigger::ScheduleSpec`]).
//! `GET/POST /schedules`, `GET/PUT/PATCH/DELETE /schedules/{name}`, `POST
//! /schedules/{name}/pause|resume|trigger|backfill`. Every change is recorded as made by
//! `api`. Errors: 400 `invalid_schedule` (bad cron expression, interval, time zone, window,
//! unknown workflow, bad name or range, unknown field), 404 `unknown_schedule`, 409
//! `schedule_conflict` (the name is taken; a schedule declared in code cannot be changed or
//! deleted), 422 `schema` (the input does not fit the workflow).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::AppState;
use super::body::JsonBody;
use super::error::{ApiError, ErrorBody, from_engine};
use crate::trigger::{Backfill, Schedule, ScheduleError, ScheduleSource, ScheduleSpec};

/// Who the HTTP API records as asking.
const BY: &str = "api";

impl From<ScheduleError> for ApiError {
    fn from(error: ScheduleError) -> Self {
        let message = error.to_string();
        match error {
            ScheduleError::Invalid(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_schedule", message)
            }
            ScheduleError::Unknown(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_schedule", message)
            }
            ScheduleError::Conflict(_) => {
                ApiError::new(StatusCode::CONFLICT, "schedule_conflict", message)
            }
            ScheduleError::Engine(error) => from_engine(error),
        }
    }
}

/// A schedule.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ScheduleView {
    /// Its name.
    name: String,
    /// `code` (declared in code: can be paused, resumed, triggered, backfilled) or `data`
    /// (kept in the database).
    source: String,
    /// The workflow each tick starts.
    workflow: String,
    /// The cron expression, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    cron: Option<String>,
    /// The interval (humantime, e.g. `15m`), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<String>,
    /// The IANA time zone of the cron expression.
    time_zone: String,
    /// The input of every run (`null`: a code schedule computing it from the tick).
    #[schema(value_type = Object)]
    input: Value,
    /// `skip`, `buffer_one` or `allow`.
    overlap: String,
    /// Missed ticks older than this are skipped (humantime).
    catch_up_window: String,
    /// Whether it is paused.
    paused: bool,
    /// Its next tick (RFC 3339, UTC); absent while paused.
    #[schema(value_type = Option<String>, format = DateTime)]
    next_tick: Option<DateTime<Utc>>,
    /// When it was created.
    #[schema(value_type = Option<String>, format = DateTime)]
    created_at: Option<DateTime<Utc>>,
    /// Who created it (`api`, `cli:<user>`, …).
    created_by: Option<String>,
    /// When it last changed.
    #[schema(value_type = Option<String>, format = DateTime)]
    updated_at: Option<DateTime<Utc>>,
    /// Who changed it last.
    updated_by: Option<String>,
}

impl From<Schedule> for ScheduleView {
    fn from(schedule: Schedule) -> Self {
        ScheduleView {
            name: schedule.name,
            source: match schedule.source {
                ScheduleSource::Code => "code",
                ScheduleSource::Data => "data",
            }
            .to_owned(),
            workflow: schedule.spec.workflow,
            cron: schedule.spec.cron,
            interval: schedule.spec.interval,
            time_zone: schedule.spec.time_zone,
            input: schedule.spec.input,
            overlap: schedule.spec.overlap.to_string(),
            catch_up_window: schedule.spec.catch_up_window,
            paused: schedule.paused,
            next_tick: schedule.next_tick,
            created_at: schedule.created_at,
            created_by: schedule.created_by,
            updated_at: schedule.updated_at,
            updated_by: schedule.updated_by,
        }
    }
}

/// The body of `POST /schedules`: a name, optionally `paused`, and the definition.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)] // read through `serde_json::Value`; this is its documented shape
pub(crate) struct NewSchedule {
    /// The name (letters, digits, `-`, `_`, `.`).
    name: String,
    /// Create it paused (default false).
    paused: Option<bool>,
    /// The workflow each tick starts.
    workflow: String,
    /// A cron expression (five fields, or six with seconds first). Exactly one of `cron`
    /// and `interval`.
    cron: Option<String>,
    /// An interval (`30s`, `15m`, `1h`), aligned to the Unix epoch.
    interval: Option<String>,
    /// The IANA time zone of the cron expression (default `UTC`).
    time_zone: Option<String>,
    /// The input of every run (default `{}`), checked against the workflow's schema.
    #[schema(value_type = Option<Object>)]
    input: Option<Value>,
    /// `skip` (default), `buffer_one` or `allow`.
    overlap: Option<String>,
    /// Missed ticks older than this are skipped (default `1m`).
    catch_up_window: Option<String>,
}

/// The body of `POST /schedules/{name}/backfill`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BackfillRange {
    /// The first instant (RFC 3339).
    from: String,
    /// The last instant (RFC 3339), not after now.
    to: String,
}

/// What a backfill did.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BackfillView {
    /// The schedule.
    schedule: String,
    /// Every tick in the range (RFC 3339).
    #[schema(value_type = Vec<String>)]
    ticks: Vec<DateTime<Utc>>,
    /// The runs started now (ticks without a run before).
    started: Vec<String>,
    /// How many ticks had their run already.
    existing: usize,
}

impl From<Backfill> for BackfillView {
    fn from(backfill: Backfill) -> Self {
        BackfillView {
            schedule: backfill.schedule,
            ticks: backfill.ticks,
            started: backfill.started.iter().map(ToString::to_string).collect(),
            existing: backfill.existing,
        }
    }
}

/// The answer of `POST /schedules/{name}/trigger`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Triggered {
    /// The run started.
    run_id: String,
    /// `queued`.
    status: String,
}

/// The answer of `DELETE /schedules/{name}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Deleted {
    /// The schedule.
    name: String,
    /// `true`.
    deleted: bool,
}

fn spec_from(name: &str, body: Value) -> Result<ScheduleSpec, ApiError> {
    serde_json::from_value(body).map_err(|e| {
        ScheduleError::Invalid(format!(
            "schedule `{name}`: the body is not a schedule ({e}); send e.g. \
             {{\"workflow\": \"cleanup\", \"cron\": \"0 2 * * *\"}}"
        ))
        .into()
    })
}

/// Lists every schedule, code-declared and stored, by name.
#[utoipa::path(
    get,
    path = "/schedules",
    operation_id = "list_schedules",
    tag = "schedules",
    responses(
        (status = 200, description = "Every schedule", body = Vec<ScheduleView>),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
) -> Result<Json<Vec<ScheduleView>>, ApiError> {
    let schedules = state.engine.list_schedules().await?;
    Ok(Json(
        schedules.into_iter().map(ScheduleView::from).collect(),
    ))
}

/// Creates a schedule in the database; the scheduler of `dev` and `worker` fires it within
/// a second, without a restart.
#[utoipa::path(
    post,
    path = "/schedules",
    operation_id = "create_schedule",
    tag = "schedules",
    request_body = NewSchedule,
    responses(
        (status = 201, description = "Created", body = ScheduleView),
        (status = 400, description = "Invalid schedule (names the field and the fix)", body = ErrorBody),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 409, description = "The name is taken (in the database or in code)", body = ErrorBody),
        (status = 422, description = "The input does not fit the workflow's input schema", body = ErrorBody),
    )
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<ScheduleView>), ApiError> {
    let Value::Object(mut body) = body else {
        return Err(ScheduleError::Invalid(
            "the body must be a JSON object such as {\"name\": \"nightly\", \"workflow\": \
             \"cleanup\", \"cron\": \"0 2 * * *\"}"
                .into(),
        )
        .into());
    };
    let name = match body.remove("name") {
        Some(Value::String(name)) => name,
        _ => {
            return Err(ScheduleError::Invalid(
                "the body needs a `name` (a string of letters, digits, `-`, `_`, `.`)".into(),
            )
            .into());
        }
    };
    let paused = match body.remove("paused") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(paused)) => paused,
        Some(other) => {
            return Err(ScheduleError::Invalid(format!(
                "schedule `{name}`: `paused` must be true or false, not {other}"
            ))
            .into());
        }
    };
    let spec = spec_from(&name, Value::Object(body))?;
    let schedule = state
        .engine
        .create_schedule(&name, spec, paused, BY)
        .await?;
    Ok((StatusCode::CREATED, Json(schedule.into())))
}

/// Shows one schedule.
#[utoipa::path(
    get,
    path = "/schedules/{name}",
    operation_id = "get_schedule",
    tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 200, description = "The schedule", body = ScheduleView),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 404, description = "No schedule has this name", body = ErrorBody),
    )
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    Ok(Json(state.engine.get_schedule(&name).await?.into()))
}

/// Replaces the definition of a schedule kept in the database (its paused state stays).
#[utoipa::path(
    put,
    path = "/schedules/{name}",
    operation_id = "replace_schedule",
    tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")),
    request_body(content = Object, description = "The whole definition: `workflow`, `cron` or `interval`, and optionally `time_zone`, `input`, `overlap`, `catch_up_window`"),
    responses(
        (status = 200, description = "The changed schedule", body = ScheduleView),
        (status = 400, description = "Invalid schedule", body = ErrorBody),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 404, description = "No schedule has this name", body = ErrorBody),
        (status = 409, description = "The schedule is declared in code", body = ErrorBody),
        (status = 422, description = "The input does not fit the workflow's input schema", body = ErrorBody),
    )
)]
pub(crate) async fn replace(
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(mut body): JsonBody,
) -> Result<Json<ScheduleView>, ApiError> {
    if let Some(object) = body.as_object_mut()
        && object.get("name").and_then(Value::as_str) == Some(name.as_str())
    {
        // The name of the path, repeated (a body read from `GET`): not a change.
        object.remove("name");
    }
    let spec = spec_from(&name, body)?;
    Ok(Json(
        state.engine.update_schedule(&name, spec, BY).await?.into(),
    ))
}

/// Changes some fields of a schedule kept in the database (`null` restores a field's
/// default; `cron` replaces `interval` and the other way round).
#[utoipa::path(
    patch,
    path = "/schedules/{name}",
    operation_id = "update_schedule",
    tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")),
    request_body(content = Object, description = "The fields to change, e.g. {\"cron\": \"0 3 * * *\"}"),
    responses(
        (status = 200, description = "The changed schedule", body = ScheduleView),
        (status = 400, description = "Invalid schedule or unknown field", body = ErrorBody),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 404, description = "No schedule has this name", body = ErrorBody),
        (status = 409, description = "The schedule is declared in code", body = ErrorBody),
        (status = 422, description = "The input does not fit the workflow's input schema", body = ErrorBody),
    )
)]
pub(crate) async fn patch(
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<ScheduleView>, ApiError> {
    Ok(Json(
        state.engine.patch_schedule(&name, body, BY).await?.into(),
    ))
}

/// Deletes a schedule kept in the database (its runs stay).
#[utoipa::path(
    delete,
    path = "/schedules/{name}",
    operation_id = "delete_schedule",
    tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 200, description = "Deleted", body = Deleted),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 404, description = "No schedule has this name", body = ErrorBody),
        (status = 409, description = "The schedule is declared in code", body = ErrorBody),
    )
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    state.engine.delete_schedule(&name, BY).await?;
    Ok(Json(Deleted {
        name,
        deleted: true,
    }))
}

/// Pauses a schedule (also one declared in code): no tick fires until it is resumed, and
/// the ticks of the pause never fire.
#[utoipa::path(
    post,
    path = "/schedules/{name}/pause",
    operation_id = "pause_schedule",
    tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 200, description = "The paused schedule", body = ScheduleView),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 404, description = "No schedule has this name", body = ErrorBody),
    )
)]
pub(crate) async fn pause(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    Ok(Json(state.engine.pause_schedule(&name, BY).await?.into()))
}

/// Resumes a schedule: its next tick after now fires.
#[utoipa::path(
    post,
    path = "/schedules/{name}/resume",
    operation_id = "resume_schedule",
    tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 200, description = "The resumed schedule", body = ScheduleView),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 404, description = "No schedule has this name", body = ErrorBody),
    )
)]
pub(crate) async fn resume(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    Ok(Json(state.engine.resume_schedule(&name, BY).await?.into()))
}

/// Starts one run of a schedule now, outside its ticks (also while it is paused).
#[utoipa::path(
    post,
    path = "/schedules/{name}/trigger",
    operation_id = "trigger_schedule",
    tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 202, description = "A run was started", body = Triggered),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 404, description = "No schedule has this name", body = ErrorBody),
        (status = 422, description = "The input no longer fits the workflow", body = ErrorBody),
    )
)]
pub(crate) async fn trigger(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<Triggered>), ApiError> {
    let run = state.engine.trigger_schedule(&name, BY).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Triggered {
            run_id: run.to_string(),
            status: "queued".into(),
        }),
    ))
}

/// Fires every tick of a schedule from `from` to `to` (both included) that has no run yet;
/// repeating it starts nothing twice.
#[utoipa::path(
    post,
    path = "/schedules/{name}/backfill",
    operation_id = "backfill_schedule",
    tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")),
    request_body = BackfillRange,
    responses(
        (status = 200, description = "The ticks, the runs started and how many existed", body = BackfillView),
        (status = 400, description = "Bad range (not RFC 3339, from after to, to in the future, too many ticks)", body = ErrorBody),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 404, description = "No schedule has this name", body = ErrorBody),
    )
)]
pub(crate) async fn backfill(
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<BackfillView>, ApiError> {
    let range: BackfillRange = serde_json::from_value(body).map_err(|e| {
        ScheduleError::Invalid(format!(
            "backfill of `{name}`: the body must be {{\"from\": \"<RFC 3339>\", \"to\": \
             \"<RFC 3339>\"}} ({e})"
        ))
    })?;
    let from =
        crate::engine::parse_start_at("from", &range.from).map_err(ScheduleError::Invalid)?;
    let to = crate::engine::parse_start_at("to", &range.to).map_err(ScheduleError::Invalid)?;
    let backfill = state.engine.backfill_schedule(&name, from, to, BY).await?;
    Ok(Json(backfill.into()))
}
