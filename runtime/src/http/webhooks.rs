//! `POST /webhooks/{source}`: a webhook delivery starts a run of the source's workflow.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::body::RawBody;
use super::error::{ApiError, ErrorBody, from_engine};
use crate::trigger::{WebhookDelivery, WebhookError};

/// What became of a webhook delivery.
#[derive(Debug, Default, Serialize, ToSchema)]
pub(crate) struct WebhookReply {
    /// The run the delivery started (or, for a duplicate, started earlier).
    #[serde(skip_serializing_if = "Option::is_none")]
    run_id: Option<String>,
    /// `true` when a delivery with the same id already started `run_id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    duplicate: Option<bool>,
    /// `true` when the source's filter declined the delivery; nothing was started.
    #[serde(skip_serializing_if = "Option::is_none")]
    ignored: Option<bool>,
    /// Why the filter declined it.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// For a subscribable workflow: the runs started, one per active subscription.
    #[serde(skip_serializing_if = "Option::is_none")]
    run_ids: Option<Vec<String>>,
    /// For a subscribable workflow: the runs a delivery with the same id started before.
    #[serde(skip_serializing_if = "Option::is_none")]
    duplicate_run_ids: Option<Vec<String>>,
}

/// Delivers a webhook: checks the source's signature over the raw body, validates and
/// filters the payload, and starts a run (once per delivery id).
#[utoipa::path(
    post,
    path = "/webhooks/{source}",
    operation_id = "deliver_webhook",
    tag = "triggers",
    params(("source" = String, Path, description = "The webhook source's name")),
    request_body(content = Value, description = "The sender's payload, exactly as signed", content_type = "application/json"),
    responses(
        (status = 202, description = "A run was started: `{\"run_id\"}`", body = WebhookReply),
        (status = 200, description = "Duplicate delivery (`{\"run_id\", \"duplicate\": true}`) or declined by the filter (`{\"ignored\": true, \"reason\"}`)", body = WebhookReply),
        (status = 401, description = "The signature is missing or wrong", body = ErrorBody),
        (status = 403, description = "A cross-site request from a browser (`Origin` or `Sec-Fetch-Site`); any `Content-Type` is taken", body = ErrorBody),
        (status = 404, description = "No webhook source has this name", body = ErrorBody),
        (status = 413, description = "The body is over the limit", body = ErrorBody),
        (status = 422, description = "The payload is not valid JSON for the source, or its transform rejected it", body = ErrorBody),
        (status = 503, description = "The store failed; retry the delivery", body = ErrorBody),
    )
)]
pub(crate) async fn deliver(
    State(state): State<AppState>,
    Path(source): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let delivery = state
        .engine
        .deliver_webhook(&source, &headers, &body)
        .await
        .map_err(webhook_error)?;
    let (status, reply) = match delivery {
        WebhookDelivery::Started(id) => (
            StatusCode::ACCEPTED,
            WebhookReply {
                run_id: Some(id.to_string()),
                ..WebhookReply::default()
            },
        ),
        WebhookDelivery::Duplicate(id) => (
            StatusCode::OK,
            WebhookReply {
                run_id: Some(id.to_string()),
                duplicate: Some(true),
                ..WebhookReply::default()
            },
        ),
        WebhookDelivery::Subscribers {
            started,
            duplicates,
        } => (
            if started.is_empty() {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            },
            WebhookReply {
                run_ids: Some(started.iter().map(ToString::to_string).collect()),
                duplicate_run_ids: Some(duplicates.iter().map(ToString::to_string).collect()),
                ..WebhookReply::default()
            },
        ),
        WebhookDelivery::Filtered(reason) => (
            StatusCode::OK,
            WebhookReply {
                ignored: Some(true),
                reason: Some(reason),
                ..WebhookReply::default()
            },
        ),
    };
    Ok((status, Json(reply)).into_response())
}

/// The status and body of a rejected delivery.
fn webhook_error(error: WebhookError) -> ApiError {
    let message = error.to_string();
    match error {
        WebhookError::UnknownSource(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "unknown_source", message)
        }
        WebhookError::BadSignature(_) => {
            ApiError::new(StatusCode::UNAUTHORIZED, "bad_signature", message)
        }
        WebhookError::InvalidPayload(violation) => ApiError::schema(violation),
        WebhookError::Transform(_) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "transform", message)
        }
        WebhookError::Engine(error) => from_engine(error),
    }
}
