//! `GET /metrics`: the engine's metrics in the OpenMetrics text format Prometheus scrapes
//! (see [`crate::metrics`] for the names).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::AppState;
use super::error::{ApiError, ErrorBody};

/// The OpenMetrics text format's media type.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The engine's counters and histograms, and the run gauges read from the store now.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "observability",
    operation_id = "metrics",
    responses(
        (status = 200, description = "OpenMetrics text (names prefixed `reprise_`)", content_type = "application/openmetrics-text", body = String),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 503, description = "The store failed", body = ErrorBody),
    )
)]
pub(crate) async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let text = state.engine.render_metrics().await?;
    Ok(([(header::CONTENT_TYPE, OPENMETRICS)], text))
}
