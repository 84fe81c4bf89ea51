//! Request bodies: JSON, whatever the `Content-Type`, within the body limit.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde_json::Value;

use super::AppState;
use super::error::ApiError;

/// A request body parsed as JSON. An empty body is `null` (a workflow or hook whose input
/// is `()`); a body that is not JSON is 400; one over the limit is 413.
#[derive(Debug)]
pub(crate) struct JsonBody(pub(crate) Value);

impl FromRequest<AppState> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = read_bytes(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonBody(Value::Null));
        }
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            ApiError::bad_request(format!(
                "the request body is not valid JSON ({e}); send a JSON document"
            ))
        })
    }
}

/// The raw request body (for signature checks), within the body limit (else 413).
#[derive(Debug)]
pub(crate) struct RawBody(pub(crate) Bytes);

impl FromRequest<AppState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        read_bytes(request, state).await.map(RawBody)
    }
}

async fn read_bytes(request: Request, state: &AppState) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| rejected(rejection, state.body_limit))
}

fn rejected(rejection: BytesRejection, limit: usize) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than the limit of {limit} bytes"),
        );
    }
    ApiError::new(
        rejection.status(),
        "bad_request",
        format!(
            "the request body could not be read: {}",
            rejection.body_text()
        ),
    )
}
