//! Authentication and scopes: the optional configured bearer token (`Authorization:
//! Bearer <token>`, compared in constant time), named API tokens
//! ([`crate::identity::tokens`]) and the scope each route needs.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::identity::Actor;
use crate::identity::tokens::{self, ApiScope};

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
    #[cfg(test)]
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

/// The authenticated caller of a request, which the auth middleware puts in the request's
/// extensions for the handlers: who (for `Actor::Principal`) and what it may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Caller {
    /// The principal: a named token's, or `api` for the configured bearer token and for an
    /// API without authentication.
    pub(crate) principal: String,
    /// The named token's name (`None` for the configured token or no token).
    pub(crate) token: Option<String>,
    /// What it may do.
    pub(crate) scope: ApiScope,
}

impl Caller {
    /// The configured bearer token's caller, and that of an API without authentication:
    /// principal `api` with every scope.
    pub(crate) fn api() -> Caller {
        Caller {
            principal: "api".into(),
            token: None,
            scope: ApiScope::Admin,
        }
    }

    /// The actor recorded for the runs it starts, forks and restarts.
    pub(crate) fn actor(&self) -> Actor {
        Actor::Principal {
            name: self.principal.clone(),
            token: self.token.clone(),
        }
    }

    /// Who asked, as operations record it (`by`): `api`, or `api:<principal>` for a named
    /// token.
    pub(crate) fn by(&self) -> String {
        match &self.token {
            Some(_) => format!("api:{}", self.principal),
            None => "api".into(),
        }
    }

    /// 403 `forbidden` unless the caller's scope allows `needed`; the message names both.
    pub(crate) fn require(&self, needed: ApiScope, what: &str) -> Result<(), ApiError> {
        if self.scope.allows(needed) {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "{what} needs the `{needed}` scope; this token{} has `{}`; ask an admin for a \
                 token with `{needed}` (`tokens create --scope {needed}`)",
                self.token
                    .as_deref()
                    .map(|t| format!(" (`{t}`)"))
                    .unwrap_or_default(),
                self.scope
            ),
        ))
    }
}

/// The caller a presented token (from the header or the UI cookie) authenticates: the
/// configured token (principal `api`, admin), else a named token (`rpr_…`) that is not
/// revoked; `None` when it is neither. With no token configured, a token that is not a
/// named one is ignored as before (principal `api`), but an unknown `rpr_…` token is
/// refused (`None`): a revoked token never passes.
///
/// # Errors
/// Store failures while looking the named token up.
pub(crate) async fn caller_of(
    auth: &BearerAuth,
    store: &dyn crate::store::Store,
    presented: &[u8],
) -> Result<Option<Caller>, crate::EngineError> {
    if auth.is_enabled() && auth.accepts_token(presented) {
        return Ok(Some(Caller::api()));
    }
    let named = match std::str::from_utf8(presented) {
        Ok(text) if text.starts_with(tokens::TOKEN_PREFIX) => Some(text),
        _ => None,
    };
    match named {
        Some(text) => Ok(tokens::verify(store, text).await?.map(|token| Caller {
            principal: token.principal,
            token: Some(token.name),
            scope: token.scope,
        })),
        None if !auth.is_enabled() => Ok(Some(Caller::api())),
        None => Ok(None),
    }
}

/// The scope a request needs, by method and path: every route's in one place (listed in
/// the [module docs](super#authentication)). `GET`s read, except `GET /tokens` (admin);
/// starting runs, emitting events and resuming hooks start; API tokens, credentials,
/// subscriptions (but pausing and resuming one) and purge are admin; every other change
/// operates.
pub(crate) fn required_scope(method: &Method, path: &str) -> ApiScope {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let first = segments.first().copied().unwrap_or("");
    if first == "tokens" || first == "credentials" {
        return ApiScope::Admin;
    }
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return ApiScope::Read;
    }
    match segments.as_slice() {
        ["workflows", _] | ["events"] | ["hooks", ..] => ApiScope::Start,
        ["runs", "purge"] => ApiScope::Admin,
        ["subscriptions", _, "pause" | "resume" | "unpause"] => ApiScope::Operate,
        ["subscriptions", ..] => ApiScope::Admin,
        _ => ApiScope::Operate,
    }
}

/// Middleware: authenticates the request and checks its scope. The caller comes from the
/// `Authorization: Bearer` header or the web UI's login cookie (see `ui::login`): the
/// configured token, a named token, or (without a configured token) nobody, as principal
/// `api`. 401 JSON for a missing, unknown or revoked token (a `GET` of a UI page without
/// one is redirected to `/ui/login` instead); 403 JSON naming the scope needed and the
/// token's when its scope is too low. Puts the [`Caller`] in the request's extensions.
pub(crate) async fn require_bearer(
    State(state): State<super::AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec());
    let cookie = super::ui::token_from_cookies(request.headers());
    let presented = match &header {
        Some(value) => bearer_token(value).map(<[u8]>::to_vec),
        None => cookie.clone(),
    };
    let caller = match (&header, presented) {
        (_, Some(token)) => {
            match caller_of(&state.auth, state.engine.store().as_ref(), &token).await {
                Ok(caller) => caller,
                Err(error) => return ApiError::from(error).into_response(),
            }
        }
        (Some(_), None) if state.auth.is_enabled() => None,
        _ if !state.auth.is_enabled() => Some(Caller::api()),
        _ => None,
    };
    if let Some(caller) = caller {
        let needed = required_scope(request.method(), request.uri().path());
        let what = format!("{} {}", request.method(), request.uri().path());
        if let Err(error) = caller.require(needed, &what) {
            return error.into_response();
        }
        request.extensions_mut().insert(caller);
        return next.run(request).await;
    }
    let path = request.uri().path();
    if header.is_none() && request.method() == Method::GET && path.starts_with("/ui") {
        let target = request.uri().path_and_query().map_or(path, |p| p.as_str());
        let next = super::ui::encode_keeping(target, b"/");
        return Redirect::to(&format!("/ui/login?next={next}")).into_response();
    }
    let message = if header.is_some() {
        "the bearer token is not valid (unknown, revoked, or not this server's); send \
         `Authorization: Bearer <token>` with the API token or a named token (`tokens list`)"
    } else if cookie.is_some() {
        "the web UI's login cookie does not hold a valid token for this server (it may have \
         been revoked); sign in again at /ui/login"
    } else {
        "this API requires a bearer token; send `Authorization: Bearer <token>` with the API \
         token the server was started with (REPRISE_API_TOKEN) or a named token"
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
    fn every_route_needs_its_scope() {
        let get = Method::GET;
        let post = Method::POST;
        let delete = Method::DELETE;
        assert_eq!(required_scope(&get, "/runs/x"), ApiScope::Read);
        assert_eq!(required_scope(&get, "/ui/runs/x"), ApiScope::Read);
        assert_eq!(required_scope(&post, "/workflows/signup"), ApiScope::Start);
        assert_eq!(required_scope(&post, "/events"), ApiScope::Start);
        assert_eq!(
            required_scope(&post, "/workflows/signup/pause"),
            ApiScope::Operate
        );
        assert_eq!(required_scope(&post, "/runs/x/cancel"), ApiScope::Operate);
        assert_eq!(required_scope(&post, "/runs/x/fork"), ApiScope::Operate);
        assert_eq!(required_scope(&post, "/schedules"), ApiScope::Operate);
        assert_eq!(required_scope(&post, "/runs/purge"), ApiScope::Admin);
        assert_eq!(required_scope(&get, "/tokens"), ApiScope::Admin);
        assert_eq!(required_scope(&delete, "/tokens/ci"), ApiScope::Admin);
        assert_eq!(required_scope(&get, "/credentials"), ApiScope::Admin);
        assert_eq!(required_scope(&post, "/subscriptions"), ApiScope::Admin);
        assert_eq!(
            required_scope(&delete, "/subscriptions/s1"),
            ApiScope::Admin
        );
        assert_eq!(
            required_scope(&post, "/subscriptions/s1/pause"),
            ApiScope::Operate
        );
        assert_eq!(required_scope(&get, "/subscriptions"), ApiScope::Read);
    }

    #[test]
    fn the_login_redirect_keeps_the_page_as_one_query_value() {
        assert_eq!(
            super::super::ui::encode_keeping("/ui?status=failed&q=a b", b"/"),
            "/ui%3Fstatus%3Dfailed%26q%3Da%20b"
        );
    }
}
