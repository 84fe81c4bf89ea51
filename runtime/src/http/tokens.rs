//! `POST /tokens`, `GET /tokens`, `DELETE /tokens/{name}`: named API tokens
//! ([`crate::identity::tokens`]), admin scope.

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::{Json, response::IntoResponse, response::Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::body::JsonBody;
use super::error::{ApiError, ErrorBody};
use crate::identity::tokens::{self, ApiScope, ApiToken};

/// A named API token as listed (never the token itself).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TokenView {
    /// Its unique name.
    name: String,
    /// The principal it authenticates (recorded as the actor of the runs it starts).
    principal: String,
    /// `read`, `start`, `operate` or `admin`.
    #[schema(value_type = String)]
    scope: ApiScope,
    /// When it was created (RFC 3339, UTC).
    #[schema(value_type = String, format = DateTime)]
    created_at: DateTime<Utc>,
    /// Who created it (`cli:<user>`, `api`, `api:<principal>`).
    created_by: String,
    /// The bearer token: only in the answer of `POST /tokens`, the one time it is shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

impl From<ApiToken> for TokenView {
    fn from(token: ApiToken) -> Self {
        TokenView {
            name: token.name,
            principal: token.principal,
            scope: token.scope,
            created_at: token.created_at,
            created_by: token.created_by,
            token: None,
        }
    }
}

/// The answer of `DELETE /tokens/{name}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Revoked {
    /// The token's name.
    name: String,
    /// `true`.
    revoked: bool,
}

const CREATE_KEYS: &str = "`name`, `principal` and `scope` (read, start, operate or admin)";

/// A string field of the create body, or 400 naming it.
fn field(body: &serde_json::Map<String, Value>, key: &str) -> Result<String, ApiError> {
    match body.get(key) {
        Some(Value::String(text)) => Ok(text.clone()),
        Some(other) => Err(ApiError::bad_request(format!(
            "`{key}` must be a string, not {other}; send {CREATE_KEYS}"
        ))),
        None => Err(ApiError::bad_request(format!(
            "the body has no `{key}`; send {CREATE_KEYS}"
        ))),
    }
}

/// Creates a named API token for a principal with a scope. The answer holds the token,
/// the only time it is shown: the store keeps its SHA-256 digest.
#[utoipa::path(
    post,
    path = "/tokens",
    operation_id = "create_token",
    tag = "tokens",
    request_body(content = Object, description = "`{\"name\", \"principal\", \"scope\"}`"),
    responses(
        (status = 201, description = "The token, with `token` shown this once", body = TokenView),
        (status = 400, description = "A bad body, name, principal or scope", body = ErrorBody),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 403, description = "The caller's token lacks the `admin` scope", body = ErrorBody),
        (status = 409, description = "`token_name_taken`: a token has this name", body = ErrorBody),
    )
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let Value::Object(body) = body else {
        return Err(ApiError::bad_request(format!(
            "the body must be a JSON object with {CREATE_KEYS}"
        )));
    };
    if let Some(key) = body
        .keys()
        .find(|k| !matches!(k.as_str(), "name" | "principal" | "scope"))
    {
        return Err(ApiError::bad_request(format!(
            "unknown key `{key}` in the body; send {CREATE_KEYS}"
        )));
    }
    let name = field(&body, "name")?;
    let principal = field(&body, "principal")?;
    let scope: ApiScope = field(&body, "scope")?
        .parse()
        .map_err(ApiError::bad_request)?;
    let created = tokens::create(
        state.engine.store().as_ref(),
        &name,
        &principal,
        scope,
        &caller.by(),
        state.engine.now(),
    )
    .await?;
    match created {
        Ok(new) => {
            let mut view = TokenView::from(new.info);
            view.token = Some(new.token);
            Ok((StatusCode::CREATED, Json(view)).into_response())
        }
        Err(taken) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "token_name_taken",
            taken.to_string(),
        )),
    }
}

/// Lists the named API tokens by name (never the tokens themselves).
#[utoipa::path(
    get,
    path = "/tokens",
    operation_id = "list_tokens",
    tag = "tokens",
    responses(
        (status = 200, description = "The tokens, by name", body = Vec<TokenView>),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 403, description = "The caller's token lacks the `admin` scope", body = ErrorBody),
    )
)]
pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<Vec<TokenView>>, ApiError> {
    let tokens = tokens::list(state.engine.store().as_ref()).await?;
    Ok(Json(tokens.into_iter().map(TokenView::from).collect()))
}

/// Revokes a named API token: requests with it get 401 from then on.
#[utoipa::path(
    delete,
    path = "/tokens/{name}",
    operation_id = "revoke_token",
    tag = "tokens",
    params(("name" = String, Path, description = "The token's name")),
    responses(
        (status = 200, description = "Revoked", body = Revoked),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 403, description = "The caller's token lacks the `admin` scope", body = ErrorBody),
        (status = 404, description = "`unknown_token`: no token has this name", body = ErrorBody),
    )
)]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Revoked>, ApiError> {
    if tokens::revoke(state.engine.store().as_ref(), &name).await? {
        Ok(Json(Revoked {
            name,
            revoked: true,
        }))
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_token",
            format!("no API token is named `{name}`; `GET /tokens` lists them"),
        ))
    }
}
