//! `/credentials`: set, list and delete the credentials of the engine's
//! [`crate::credentials::CredentialStore`] (admin routes; values go in, never out).
//!
//! - `PUT /credentials/{scope}/{name}` with body `{"value": "…"}` sets one;
//! - `GET /credentials[?scope=user:ada]` lists scopes, names and times, never values;
//! - `DELETE /credentials/{scope}/{name}` deletes one (404 when it is not there).
//!
//! `{scope}` is `user:<id>`, `project:<id>` or `org`; another string is 400 naming the
//! accepted forms. A store that cannot be written (environment variables, a file) is 409
//! `read_only`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::AppState;
use super::body::JsonBody;
use super::error::{ApiError, ErrorBody};
use crate::credentials::{CredentialError, CredentialInfo, Secret, check_name};
use crate::identity::Scope;

/// The answer to a `PUT` or `DELETE`: which credential.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CredentialChanged {
    /// Its scope.
    pub(crate) scope: String,
    /// Its name.
    pub(crate) name: String,
    /// `set` or `deleted`.
    pub(crate) change: &'static str,
}

/// The body of `PUT /credentials/{scope}/{name}`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documents the body for OpenAPI; the handler reads it field by field
pub(crate) struct CredentialValue {
    /// The secret value (a non-empty string). It is stored as the store says (encrypted
    /// with `REPRISE_SECRETS_KEY`) and never returned.
    value: String,
}

/// `?scope=` of `GET /credentials`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only this scope: `user:<id>`, `project:<id>` or `org`.
    scope: Option<String>,
}

/// A scope from a path or query, or 400 naming the accepted forms.
fn scope_of(text: &str) -> Result<Scope, ApiError> {
    Scope::parse(text).map_err(ApiError::bad_request)
}

/// A credential error as an HTTP error.
pub(crate) fn credential_error(error: CredentialError) -> ApiError {
    match error {
        CredentialError::InvalidName(_) => ApiError::bad_request(error.to_string()),
        CredentialError::ReadOnly(message) => {
            ApiError::new(StatusCode::CONFLICT, "read_only", message)
        }
        CredentialError::Store(engine) => ApiError::from(engine),
        other => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "credentials",
            other.to_string(),
        ),
    }
}

/// Sets a credential (replacing its value, if any). The value is never echoed back.
#[utoipa::path(
    put,
    path = "/credentials/{scope}/{name}",
    operation_id = "set_credential",
    tag = "credentials",
    params(
        ("scope" = String, Path, description = "`user:<id>`, `project:<id>` or `org`"),
        ("name" = String, Path, description = "The credential's name: 1 to 64 ASCII letters, digits, `-`, `_` or `.`"),
    ),
    request_body = CredentialValue,
    responses(
        (status = 200, description = "Set", body = CredentialChanged),
        (status = 400, description = "Unknown scope, bad name, or a body that is not `{\"value\": \"…\"}`", body = ErrorBody),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 409, description = "The credential store is read-only (no `REPRISE_SECRETS_KEY`)", body = ErrorBody),
    )
)]
pub(crate) async fn set(
    State(state): State<AppState>,
    Path((scope, name)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Json<CredentialChanged>, ApiError> {
    let scope = scope_of(&scope)?;
    check_name(&name).map_err(credential_error)?;
    let value = match body {
        Value::Object(mut map) if map.len() == 1 => match map.remove("value") {
            Some(Value::String(value)) if !value.is_empty() => Secret::new(value),
            _ => return Err(value_error()),
        },
        _ => return Err(value_error()),
    };
    state
        .engine
        .credentials()
        .set(&scope, &name, &value)
        .await
        .map_err(credential_error)?;
    Ok(Json(CredentialChanged {
        scope: scope.to_string(),
        name,
        change: "set",
    }))
}

/// The error of a body that is not `{"value": "<non-empty string>"}` (never quoting it).
fn value_error() -> ApiError {
    ApiError::bad_request(
        "the body must be a JSON object with one field, `value`, a non-empty string: \
         {\"value\": \"…\"}",
    )
}

/// Lists credentials: scopes, names, when they were set and where they are kept; never
/// values.
#[utoipa::path(
    get,
    path = "/credentials",
    operation_id = "list_credentials",
    tag = "credentials",
    params(ListQuery),
    responses(
        (status = 200, description = "The credentials, by scope then name", body = Vec<CredentialInfo>),
        (status = 400, description = "Unknown scope", body = ErrorBody),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<CredentialInfo>>, ApiError> {
    let scope = query.scope.as_deref().map(scope_of).transpose()?;
    let list = state
        .engine
        .credentials()
        .list(scope.as_ref())
        .await
        .map_err(credential_error)?;
    Ok(Json(list))
}

/// Deletes a credential.
#[utoipa::path(
    delete,
    path = "/credentials/{scope}/{name}",
    operation_id = "delete_credential",
    tag = "credentials",
    params(
        ("scope" = String, Path, description = "`user:<id>`, `project:<id>` or `org`"),
        ("name" = String, Path, description = "The credential's name"),
    ),
    responses(
        (status = 200, description = "Deleted", body = CredentialChanged),
        (status = 400, description = "Unknown scope or bad name", body = ErrorBody),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 404, description = "No such credential in this scope", body = ErrorBody),
        (status = 409, description = "The credential store is read-only", body = ErrorBody),
    )
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path((scope, name)): Path<(String, String)>,
) -> Result<Json<CredentialChanged>, ApiError> {
    let scope = scope_of(&scope)?;
    check_name(&name).map_err(credential_error)?;
    let deleted = state
        .engine
        .credentials()
        .delete(&scope, &name)
        .await
        .map_err(credential_error)?;
    if !deleted {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_credential",
            format!("no credential `{name}` in scope `{scope}`; `GET /credentials` lists them"),
        ));
    }
    Ok(Json(CredentialChanged {
        scope: scope.to_string(),
        name,
        change: "deleted",
    }))
}
