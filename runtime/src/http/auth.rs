//! The optional bearer token: `Authorization: Bearer <token>`, compared in constant time.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;

/// The expected token, kept as its SHA-256 digest so that comparing a presented token
/// takes the same time whatever its length or content.
#[derive(Debug)]
pub(crate) struct BearerAuth {
    expected: Option<[u8; 32]>,
}

impl BearerAuth {
    /// Requires `token` when it is `Some` and not empty; otherwise lets every request in.
    pub(crate) fn new(token: Option<&str>) -> Self {
        BearerAuth {
            expected: token.filter(|t| !t.is_empty()).map(digest),
        }
    }

    /// Whether a token is required.
    pub(crate) fn is_enabled(&self) -> bool {
        self.expected.is_some()
    }

    /// Whether an `Authorization` header value carries the expected token.
    fn accepts(&self, authorization: Option<&[u8]>) -> bool {
        if self.expected.is_none() {
            return true;
        }
        authorization
            .and_then(bearer_token)
            .is_some_and(|presented| self.accepts_token(presented))
    }

    /// Whether `presented` is the expected token (always, when none is required).
    pub(crate) fn accepts_token(&self, presented: &[u8]) -> bool {
        let Some(expected) = &self.expected else {
            return true;
        };
        bool::from(digest_bytes(presented).ct_eq(expected))
    }
}

fn digest(token: &str) -> [u8; 32] {
    digest_bytes(token.as_bytes())
}

fn digest_bytes(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The token of a `Bearer <token>` header value (scheme case-insensitive).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let scheme = value.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    Some(value[7..].trim_ascii())
}

/// Middleware: 401 JSON unless the request carries the configured bearer token, in the
/// `Authorization` header or in the web UI's login cookie (see `ui::login`). A `GET` of a
/// UI page without it is redirected to `/ui/login` instead.
pub(crate) async fn require_bearer(
    State(auth): State<Arc<BearerAuth>>,
    request: Request,
    next: Next,
) -> Response {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    let accepted = auth.accepts(header)
        || (header.is_none()
            && super::ui::token_from_cookies(request.headers())
                .is_some_and(|token| auth.accepts_token(&token)));
    if accepted {
        return next.run(request).await;
    }
    let path = request.uri().path();
    if header.is_none() && request.method() == Method::GET && path.starts_with("/ui") {
        let target = request.uri().path_and_query().map_or(path, |p| p.as_str());
        let next = super::ui::encode_keeping(target, b"/");
        return Redirect::to(&format!("/ui/login?next={next}")).into_response();
    }
    let message = if header.is_some() {
        "the bearer token is not valid; send `Authorization: Bearer <token>` with the API token"
    } else if super::ui::token_from_cookies(request.headers()).is_some() {
        "the web UI's login cookie does not hold this server's API token; sign in again at /ui/login"
    } else {
        "this API requires a bearer token; send `Authorization: Bearer <token>` with the API \
         token the server was started with (REPRISE_API_TOKEN)"
    };
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_the_configured_token() {
        let auth = BearerAuth::new(Some("s3cret"));
        assert!(auth.accepts(Some(b"Bearer s3cret")));
        assert!(auth.accepts(Some(b"bearer s3cret")));
        assert!(!auth.accepts(Some(b"Bearer s3cre")));
        assert!(!auth.accepts(Some(b"Basic s3cret")));
        assert!(!auth.accepts(Some(b"Bearer")));
        assert!(!auth.accepts(None));
        assert!(BearerAuth::new(None).accepts(None));
        assert!(!BearerAuth::new(Some("")).is_enabled());
        assert!(auth.accepts_token(b"s3cret"));
        assert!(!auth.accepts_token(b"s3cret "));
        assert!(BearerAuth::new(None).accepts_token(b"anything"));
    }

    #[test]
    fn the_login_redirect_keeps_the_page_as_one_query_value() {
        assert_eq!(
            super::super::ui::encode_keeping("/ui?status=failed&q=a b", b"/"),
            "/ui%3Fstatus%3Dfailed%26q%3Da%20b"
        );
    }
}
