//! `/ui/login`: a browser cannot send `Authorization: Bearer` on a navigation, so the UI
//! takes the API token once in a form and keeps it in an `HttpOnly`, `SameSite=Strict`
//! cookie, which the bearer middleware accepts like the header.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use maud::html;
use serde::Deserialize;
use serde_json::Value;

use super::super::AppState;
use super::super::body::JsonBody;
use super::super::error::ApiError;
use super::layout::{self, Nav};

/// The cookie holding the API token (base64url, so that any token fits a cookie value).
pub(crate) const COOKIE_NAME: &str = "reprise_token";

/// The token a `Cookie` header carries in [`COOKIE_NAME`], decoded; `None` without one.
pub(crate) fn token_from_cookies(headers: &HeaderMap) -> Option<Vec<u8>> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .and_then(|(_, value)| URL_SAFE_NO_PAD.decode(value.trim()).ok())
}

/// Query of the login page: where to go after logging in.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
}

/// A path of this UI to return to (never another site: `//host` and `/\host` are refused).
fn safe_next(next: Option<String>) -> String {
    next.filter(|n| n.starts_with("/ui") && !n.starts_with("//") && !n.contains('\\'))
        .unwrap_or_else(|| "/ui".to_owned())
}

/// `GET /ui/login`: the token form (straight to the UI when the API has no token).
pub(crate) async fn form(
    State(state): State<AppState>,
    Query(query): Query<LoginQuery>,
) -> Response {
    let next = safe_next(query.next);
    if !state.auth_enabled {
        return Redirect::to(&next).into_response();
    }
    let body = html! {
        section.login.panel {
            h1 { "Sign in" }
            p.muted {
                "This server requires its API token (the "
                code { "REPRISE_API_TOKEN" } " it was started with)."
            }
            form #login data-next=(next) {
                p { input type="password" name="token" placeholder="API token" autocomplete="current-password" required autofocus; }
                p.form-error {}
                button.primary type="submit" { "Sign in" }
            }
        }
    };
    super::html(StatusCode::OK, layout::page("Sign in", Nav::None, body))
}

/// `POST /ui/login` with `{"token": "…"}`: 204 setting the cookie when the token is the
/// API's or a named token (whose scope then limits what the UI may do); 401 otherwise;
/// 400 for a body without a `token` string.
pub(crate) async fn submit(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let Some(token) = body.get("token").and_then(Value::as_str) else {
        return Err(ApiError::bad_request(
            "send {\"token\": \"<the API token>\"} as JSON",
        ));
    };
    let caller =
        super::super::auth::caller_of(&state.auth, state.engine.store().as_ref(), token.as_bytes())
            .await?;
    if caller.is_none() {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "that is not a token of this server; give the REPRISE_API_TOKEN it was started \
             with, or a named API token that has not been revoked",
        ));
    }
    let cookie = format!(
        "{COOKIE_NAME}={}; Path=/; HttpOnly; SameSite=Strict",
        URL_SAFE_NO_PAD.encode(token.as_bytes())
    );
    set_cookie(cookie)
}

/// `POST /ui/logout`: 204 clearing the cookie.
pub(crate) async fn logout() -> Result<Response, ApiError> {
    set_cookie(format!(
        "{COOKIE_NAME}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
    ))
}

fn set_cookie(cookie: String) -> Result<Response, ApiError> {
    let value = HeaderValue::from_str(&cookie)
        .map_err(|e| ApiError::bad_request(format!("the token cannot be kept in a cookie: {e}")))?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(header::SET_COOKIE, value);
    Ok(response)
}
