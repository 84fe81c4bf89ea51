//! `/subscriptions`: subscriptions to subscribable workflows over HTTP (see
//! [`crate::subscriptions`]). `GET/POST /subscriptions`, `POST
//! /subscriptions/{id}/pause|resume`, `DELETE /subscriptions/{id}`. Creations are recorded
//! as made by `principal api`. Errors: 400 `bad_request` (workflow not subscribable, bad
//! user id, malformed body), 404 `unknown_workflow` / `unknown_subscription`, 422 `schema`
//! (the config does not fit the workflow's subscription schema; `violations` names each
//! JSON pointer).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::body::JsonBody;
use super::error::{ApiError, ErrorBody};
use crate::subscriptions::Subscription;

/// Who the HTTP API records as creating a subscription.
const BY: &str = "principal api";

/// The body of `POST /subscriptions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewSubscription {
    /// The subscribable workflow's slug.
    workflow: String,
    /// The subscriber: a user id (1 to 128 of ASCII letters, digits, `-`, `_`, `.`, `@`).
    user: String,
    /// The subscriber's settings, valid against the workflow's subscription schema
    /// (`subscription_schema` in `GET /workflows`). Default `null`.
    #[serde(default)]
    #[schema(value_type = Object)]
    config: Value,
}

/// Query of `GET /subscriptions`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only the subscriptions of this workflow.
    workflow: Option<String>,
}

/// Subscribes a user to a subscribable workflow: each trigger occurrence of the workflow
/// then starts one run for the subscription, acting for its user.
#[utoipa::path(
    post,
    path = "/subscriptions",
    operation_id = "create_subscription",
    tag = "subscriptions",
    request_body = NewSubscription,
    responses(
        (status = 201, description = "Created, active", body = Subscription),
        (status = 400, description = "The workflow is not subscribable, the user id is malformed, or the body is not `{workflow, user, config}`", body = ErrorBody),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 404, description = "No workflow has this slug", body = ErrorBody),
        (status = 422, description = "The config does not fit the workflow's subscription schema; `violations` names each JSON pointer (nothing is stored)", body = ErrorBody),
    )
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Subscription>), ApiError> {
    let body: NewSubscription = serde_json::from_value(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body is not a subscription ({e}); send {{\"workflow\": \"digest\", \"user\": \
             \"ada\", \"config\": {{…}}}}"
        ))
    })?;
    let subscription = state
        .engine
        .create_subscription_by(&body.workflow, &body.user, body.config, BY)
        .await?;
    Ok((StatusCode::CREATED, Json(subscription)))
}

/// Lists subscriptions, by workflow, then in order of creation.
#[utoipa::path(
    get,
    path = "/subscriptions",
    operation_id = "list_subscriptions",
    tag = "subscriptions",
    params(ListQuery),
    responses(
        (status = 200, description = "The subscriptions", body = Vec<Subscription>),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<Subscription>>, ApiError> {
    Ok(Json(
        state
            .engine
            .subscriptions(query.workflow.as_deref())
            .await?,
    ))
}

/// Pauses a subscription: trigger occurrences start no run for it until it is resumed;
/// its runs already started go on.
#[utoipa::path(
    post,
    path = "/subscriptions/{id}/pause",
    operation_id = "pause_subscription",
    tag = "subscriptions",
    params(("id" = String, Path, description = "The subscription's id")),
    responses(
        (status = 200, description = "Paused", body = Subscription),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 404, description = "No subscription has this id", body = ErrorBody),
    )
)]
pub(crate) async fn pause(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Subscription>, ApiError> {
    Ok(Json(state.engine.pause_subscription(&id, true).await?))
}

/// Resumes a paused subscription: the next trigger occurrence starts its run again.
#[utoipa::path(
    post,
    path = "/subscriptions/{id}/resume",
    operation_id = "resume_subscription",
    tag = "subscriptions",
    params(("id" = String, Path, description = "The subscription's id")),
    responses(
        (status = 200, description = "Active", body = Subscription),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 404, description = "No subscription has this id", body = ErrorBody),
    )
)]
pub(crate) async fn resume(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Subscription>, ApiError> {
    Ok(Json(state.engine.pause_subscription(&id, false).await?))
}

/// Deletes a subscription: it starts no more runs; its runs already started go on.
#[utoipa::path(
    delete,
    path = "/subscriptions/{id}",
    operation_id = "delete_subscription",
    tag = "subscriptions",
    params(("id" = String, Path, description = "The subscription's id")),
    responses(
        (status = 200, description = "Deleted: the subscription as it was", body = Subscription),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 404, description = "No subscription has this id", body = ErrorBody),
    )
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Subscription>, ApiError> {
    Ok(Json(state.engine.delete_subscription(&id).await?))
}
