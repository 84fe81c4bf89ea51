//! `GET /usage`: tokens and cost of model requests summed by day, workflow and model; see
//! [`Engine::usage`](crate::Engine::usage).

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use crate::engine::{UsageQuery, UsageReport, parse_before};

/// The query of `GET /usage`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct UsageParams {
    /// Only requests recorded at or after this: RFC 3339, or an age (`7d`: seven days
    /// before now). Default: all.
    since: Option<String>,
    /// Only requests recorded before this: RFC 3339, or an age.
    until: Option<String>,
    /// Only runs of this workflow slug.
    workflow: Option<String>,
}

/// Sums the token usage and cost of the model requests recorded in runs' logs, by day
/// (UTC), workflow and model, priced with the engine's price table. A model without a
/// price has `cost_usd: null` and is named in `unpriced_models`.
#[utoipa::path(
    get,
    path = "/usage",
    tag = "observability",
    operation_id = "usage",
    params(UsageParams),
    responses(
        (status = 200, description = "Rows by day, workflow and model, and totals", body = Object),
        (status = 400, description = "A bad `since` or `until`", body = ErrorBody),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 503, description = "The store failed", body = ErrorBody),
    )
)]
pub(crate) async fn usage(
    State(state): State<AppState>,
    Query(params): Query<UsageParams>,
) -> Result<Json<UsageReport>, ApiError> {
    let now = state.engine.now();
    let bound = |name: &str, value: Option<String>| {
        value
            .filter(|v| !v.is_empty())
            .map(|text| parse_before(&format!("`{name}`"), &text, now))
            .transpose()
    };
    let query = UsageQuery {
        since: bound("since", params.since)?,
        until: bound("until", params.until)?,
        workflow: params.workflow.filter(|w| !w.is_empty()),
    };
    Ok(Json(state.engine.usage(&query).await?))
}
