//! Request bodies: JSON, within the body limit and the body deadline. The `Content-Type`
//! is checked before the handlers, by the cross-site guard (`cross_site`), where it
//! matters; here a body is parsed as JSON whatever its type.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde_json::Value;

use super::AppState;
use super::error::ApiError;

/// A request body parsed as JSON. An empty body is `null` (a workflow or hook whose input
/// is `()`); a body that is not JSON is 400; one over the limit is 413; one that does not
/// arrive whole within the body deadline is 408.
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

/// The raw request body (for signature checks), within the body limit (else 413) and the
/// body deadline (else 408).
#[derive(Debug)]
pub(crate) struct RawBody(pub(crate) Bytes);

impl FromRequest<AppState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        read_bytes(request, state).await.map(RawBody)
    }
}

/// The whole body, within `state.body_limit` bytes and `state.body_timeout`.
async fn read_bytes(request: Request, state: &AppState) -> Result<Bytes, ApiError> {
    match tokio::time::timeout(state.body_timeout, Bytes::from_request(request, state)).await {
        Ok(read) => read.map_err(|rejection| rejected(rejection, state.body_limit)),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request body did not arrive whole within {} (is it shorter than its \
                 Content-Length?); send the whole body at once. The connection is closed",
                humantime::format_duration(state.body_timeout)
            ),
        )),
    }
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
