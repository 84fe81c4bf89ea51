//! Errors as HTTP responses. Every error body is JSON:
//! `{"error": "<message>", "code": "<kind>", "violations"?: [{"pointer", "message"}]}`.
//! [`from_engine`] is the one place an [`EngineError`] gets its status.

use axum::body::Body;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{EngineError, SchemaViolation};

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    /// What went wrong, and what to do about it.
    pub(crate) error: String,
    /// A machine-readable kind: `unknown_workflow`, `unknown_run`, `unknown_hook`,
    /// `unknown_source`, `schema`, `invalid_state`, `conflict`, `leased`,
    /// `idempotency_conflict`, `bad_request`, `unauthorized`, `cross_site`,
    /// `unsupported_media_type`, `bad_signature`, `payload_too_large`, `request_timeout`,
    /// `uri_too_long`, `headers_too_large`, `transform`, `store`, `corrupt`, `lease_lost`,
    /// `config`, `openapi`, `not_found`, `method_not_allowed`, `http_<status>`,
    /// `invalid_schedule`, `unknown_schedule`, `schedule_conflict`, `other_workflow`,
    /// `too_many_streams`, `unknown_signal`, `unknown_update`, `unknown_key`,
    /// `update_rejected`, `timeout`, `forbidden` (the token's scope is too low),
    /// `token_name_taken`, `unknown_token`.
    pub(crate) code: String,
    /// For `schema`: every violation, with the JSON pointer of the offending value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) violations: Option<Vec<ViolationBody>>,
}

/// One schema violation.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ViolationBody {
    /// JSON pointer of the offending value (empty for the root), e.g. `/email`.
    pub(crate) pointer: String,
    /// What is wrong with it.
    pub(crate) message: String,
}

/// An error response: a status and an [`ErrorBody`].
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) body: ErrorBody,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub(crate) fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorBody {
                error: message.into(),
                code: code.to_owned(),
                violations: None,
            },
        }
    }

    /// 400 `bad_request`.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 422 `schema` with every violation.
    pub(crate) fn schema(violation: SchemaViolation) -> Self {
        let mut error = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "schema",
            violation.to_string(),
        );
        error.body.violations = Some(
            violation
                .violations
                .into_iter()
                .map(|v| ViolationBody {
                    pointer: v.pointer,
                    message: v.message,
                })
                .collect(),
        );
        error
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, error = %self.body.error, "HTTP API error");
        }
        let unauthorized = self.body.code == "unauthorized";
        let timed_out = self.status == StatusCode::REQUEST_TIMEOUT;
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if unauthorized {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if timed_out {
            // The rest of the body may still come; it must not be read as the next request.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> Self {
        from_engine(error)
    }
}

/// The HTTP status and body of an engine error:
///
/// | Error | Status | `code` |
/// |---|---|---|
/// | `UnknownWorkflow`, `UnknownRun`, `UnknownHook` | 404 | `unknown_workflow`, `unknown_run`, `unknown_hook` |
/// | `Schema` | 422, with `violations` | `schema` |
/// | `InvalidState`, `Conflict`, `Leased` | 409 | `invalid_state`, `conflict`, `leased` |
/// | `IdempotencyConflict` | 409 | `idempotency_conflict` |
/// | `Serde` | 400 | `bad_request` |
/// | `Store`, `Storage`, `LeaseLost` | 503 (retry later) | `store`, `lease_lost` |
/// | `Corrupt` | 500 | `corrupt` |
/// | `Config` | 500 (the server's configuration is wrong) | `config` |
/// | `UnknownStep` (`POST /runs/{id}/fork` with a `from` the run's log lacks) | 422 | `unknown_step` |
/// | `InvalidRequest` | 400 | `bad_request` |
/// | `PayloadTooLarge` | 413 | `payload_too_large` |
/// | `UnknownMessage`, `UnknownKey` | 404 | `unknown_signal` / `unknown_update`, `unknown_key` |
/// | `UpdateRejected` | 422 | `update_rejected` |
/// | `Timeout` | 504 | `timeout` |
pub(crate) fn from_engine(error: EngineError) -> ApiError {
    use StatusCode as S;
    let message = error.to_string();
    match error {
        EngineError::UnknownWorkflow(slug) => ApiError::new(
            S::NOT_FOUND,
            "unknown_workflow",
            format!(
                "no workflow named `{slug}` is registered; GET /workflows lists the registered ones"
            ),
        ),
        EngineError::UnknownRun(_) => ApiError::new(S::NOT_FOUND, "unknown_run", message),
        EngineError::UnknownHook => ApiError::new(S::NOT_FOUND, "unknown_hook", message),
        EngineError::UnknownSubscription(_) => {
            ApiError::new(S::NOT_FOUND, "unknown_subscription", message)
        }
        EngineError::Schema(violation) => ApiError::schema(violation),
        EngineError::InvalidState { .. } => ApiError::new(S::CONFLICT, "invalid_state", message),
        EngineError::Conflict { .. } => ApiError::new(S::CONFLICT, "conflict", message),
        EngineError::Leased { .. } => ApiError::new(S::CONFLICT, "leased", message),
        EngineError::IdempotencyConflict { .. } => {
            ApiError::new(S::CONFLICT, "idempotency_conflict", message)
        }
        EngineError::Serde(_) => ApiError::bad_request(message),
        EngineError::Store(_) | EngineError::Storage(_) => {
            ApiError::new(S::SERVICE_UNAVAILABLE, "store", message)
        }
        EngineError::LeaseLost { .. } => {
            ApiError::new(S::SERVICE_UNAVAILABLE, "lease_lost", message)
        }
        EngineError::Corrupt { .. } => ApiError::new(S::INTERNAL_SERVER_ERROR, "corrupt", message),
        EngineError::Config(_) => ApiError::new(S::INTERNAL_SERVER_ERROR, "config", message),
        EngineError::UnknownStep { .. } => {
            ApiError::new(S::UNPROCESSABLE_ENTITY, "unknown_step", message)
        }
        EngineError::InvalidRequest(_) => ApiError::bad_request(message),
        EngineError::PayloadTooLarge { .. } => {
            ApiError::new(S::PAYLOAD_TOO_LARGE, "payload_too_large", message)
        }
        EngineError::UnknownMessage { kind, .. } => {
            ApiError::new(S::NOT_FOUND, &format!("unknown_{kind}"), message)
        }
        EngineError::UnknownKey { .. } => ApiError::new(S::NOT_FOUND, "unknown_key", message),
        EngineError::UpdateRejected { .. } => {
            ApiError::new(S::UNPROCESSABLE_ENTITY, "update_rejected", message)
        }
        EngineError::Timeout(_) => ApiError::new(S::GATEWAY_TIMEOUT, "timeout", message),
    }
}

/// The fallback for paths no route matches: 404 naming the request.
pub(crate) async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no route for {method} {}; GET /openapi.json lists the routes",
            uri.path()
        ),
    )
}

/// The most a non-JSON error body is read to turn it into a message.
const MAX_PLAIN_ERROR: usize = 16 * 1024;

/// Makes every error response JSON: error responses produced outside the handlers (axum's
/// rejections, 405 for a wrong method, 413 from the body limit) carry plain text or nothing;
/// their text, or the status's reason, becomes `{"error", "code"}`.
pub(crate) async fn json_error_bodies(response: Response) -> Response {
    let status = response.status();
    let keeps_body = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    // HTML error pages are the web UI's own (`/ui`), rendered for people: kept as they are.
    if !(status.is_client_error() || status.is_server_error()) || keeps_body {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_PLAIN_ERROR)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let reason = status.canonical_reason().unwrap_or("error");
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            "the request body is larger than this server accepts; send a smaller one".to_owned()
        }
        StatusCode::METHOD_NOT_ALLOWED => {
            "this route does not accept that method; GET /openapi.json lists the routes".to_owned()
        }
        _ if text.is_empty() => reason.to_owned(),
        _ => text,
    };
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large".to_owned(),
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed".to_owned(),
        StatusCode::BAD_REQUEST => "bad_request".to_owned(),
        StatusCode::REQUEST_TIMEOUT => "request_timeout".to_owned(),
        StatusCode::URI_TOO_LONG => "uri_too_long".to_owned(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type".to_owned(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "headers_too_large".to_owned(),
        _ => format!("http_{}", status.as_u16()),
    };
    let body = ErrorBody {
        error: message,
        code,
        violations: None,
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(bytes))
}
