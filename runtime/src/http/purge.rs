//! `POST /runs/purge`: deletes ended runs (retention by hand); see
//! [`Engine::purge_runs`](crate::Engine::purge_runs).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::body::JsonBody;
use super::error::{ApiError, ErrorBody};
use crate::engine::{DEFAULT_BATCH, parse_before};
use crate::event::RunStatus;
use crate::store::{MAX_PURGE_BATCH, PurgeFilter};

/// The body of `POST /runs/purge`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PurgeRequest {
    /// Only runs that ended before this: an RFC 3339 time (`2026-01-01T00:00:00Z`) or an
    /// age (`30d`, `12h`: ended longer ago than that).
    before: String,
    /// Only runs of this workflow slug.
    #[serde(default)]
    workflow: Option<String>,
    /// Only runs in this status: `completed`, `failed` or `canceled`.
    #[serde(default)]
    status: Option<String>,
    /// Delete nothing: count the runs and list the first `limit`.
    #[serde(default)]
    dry_run: bool,
    /// In a dry run, how many runs to list (1 to 1000, default 100).
    #[serde(default)]
    limit: Option<usize>,
}

/// One run a purge would delete (dry run).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PurgedRunView {
    /// The run's id.
    run_id: String,
    /// Its workflow slug.
    workflow: String,
    /// Its status.
    #[schema(value_type = String)]
    status: RunStatus,
}

/// The answer of `POST /runs/purge`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Purged {
    /// Whether nothing was deleted (a dry run).
    dry_run: bool,
    /// How many runs were deleted; in a dry run, how many would be.
    count: u64,
    /// The count per workflow slug (in a dry run, of the listed runs only).
    by_workflow: BTreeMap<String, u64>,
    /// In a dry run, the first runs that would be deleted (at most `limit`), oldest
    /// first; absent otherwise (deleted runs are gone).
    #[serde(skip_serializing_if = "Option::is_none")]
    runs: Option<Vec<PurgedRunView>>,
}

/// Deletes ended runs (`completed`, `failed`, `canceled`) last updated before `before`,
/// with their events and run keys, in small batches; unfinished runs are never deleted.
/// A purged run keeps no log: who asked (`api`) is logged by the server with the count.
#[utoipa::path(
    post,
    path = "/runs/purge",
    tag = "runs",
    operation_id = "purge_runs",
    request_body = PurgeRequest,
    responses(
        (status = 200, description = "What was deleted (or, with `dry_run`, would be)", body = Purged),
        (status = 400, description = "A bad `before`, an unknown or unfinished `status`, a `limit` out of range, an unknown field", body = ErrorBody),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 415, description = "A body that is not `application/json`", body = ErrorBody),
        (status = 503, description = "The store failed; batches deleted before it stay deleted", body = ErrorBody),
    )
)]
pub(crate) async fn purge(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Json<Purged>, ApiError> {
    let request: PurgeRequest = serde_json::from_value(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the purge request is not valid ({e}); send {{\"before\": \"30d\"}} with optional \
             \"workflow\", \"status\", \"dry_run\" and \"limit\""
        ))
    })?;
    let status = request
        .status
        .map(|text| text.parse::<RunStatus>())
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("`status`: {e}")))?;
    let limit = request.limit.unwrap_or(DEFAULT_BATCH);
    if !(1..=MAX_PURGE_BATCH).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "`limit` {limit} is out of range: list 1 to {MAX_PURGE_BATCH} runs"
        )));
    }
    let filter = PurgeFilter {
        before: parse_before("`before`", &request.before, state.engine.now())?,
        workflow: request.workflow,
        status,
        limit,
        dry_run: request.dry_run,
    };
    let report = state.engine.purge_runs(&filter, "api").await?;
    Ok(Json(Purged {
        dry_run: report.dry_run,
        count: report.count,
        by_workflow: report.by_workflow,
        runs: report.dry_run.then(|| {
            report
                .runs
                .into_iter()
                .map(|run| PurgedRunView {
                    run_id: run.run_id.to_string(),
                    workflow: run.workflow,
                    status: run.status,
                })
                .collect()
        }),
    }))
}
