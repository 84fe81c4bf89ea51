//! The web UI at `/ui` (DESIGN "Observability"): server-rendered HTML (maud), assets
//! embedded in the binary, no network. Pages: `/ui` (runs), `/ui/runs/{id}`,
//! `/ui/runs/{id}/graph`, `/ui/workflows`, `/ui/workflows/{slug}`, `/ui/queues`; `/ui/login` when the
//! API has a token; `/ui/assets/…`.
//!
//! Pages read the engine directly and act through the JSON API (`fetch` from
//! `assets/ui.js` with `Content-Type: application/json`, so the cross-site rules hold);
//! live parts follow the SSE streams (`/runs/stream`, `/runs/{id}/stream`) and fall back to
//! polling when a stream is not there.

mod assets;
mod form;
mod graph;
mod layout;
mod login;
mod queues;
mod run;
mod runs;
mod timeline;
mod workflows;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::Markup;

use super::AppState;
use crate::EngineError;

pub(crate) use login::token_from_cookies;
pub(crate) use runs::encode_keeping;

/// The pages behind the API token (when one is set).
pub(crate) fn protected_routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(runs::page))
        .route("/ui/", get(runs::page))
        .route("/ui/runs/{id}", get(run::page))
        .route("/ui/runs/{id}/graph", get(graph::page))
        .route("/ui/workflows", get(workflows::list))
        .route("/ui/workflows/{slug}", get(workflows::page))
        .route("/ui/queues", get(queues::page))
        .route("/ui/{*rest}", get(not_found_route))
}

/// What the UI serves without the token: the login form and the assets.
pub(crate) fn open_routes() -> Router<AppState> {
    Router::new()
        .route("/ui/login", get(login::form).post(login::submit))
        .route("/ui/logout", axum::routing::post(login::logout))
        .route("/ui/assets/{name}", get(assets::serve))
}

/// An HTML page with the headers every UI page carries: a content security policy that
/// allows this origin's assets only (no inline script, no other origin), no framing, no
/// caching of pages that show live state.
pub(crate) fn html(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
             form-action 'self'; base-uri 'none'",
        ),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// A UI error: rendered as an HTML page with its status (404 for unknown runs and
/// workflows), never as the API's JSON.
#[derive(Debug)]
pub(crate) struct UiError {
    status: StatusCode,
    title: String,
    message: String,
}

impl UiError {
    /// 404 with `message`.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        UiError {
            status: StatusCode::NOT_FOUND,
            title: "Not found".into(),
            message: message.into(),
        }
    }

    /// 400 with `message`.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        UiError {
            status: StatusCode::BAD_REQUEST,
            title: "Bad request".into(),
            message: message.into(),
        }
    }
}

impl From<EngineError> for UiError {
    fn from(error: EngineError) -> Self {
        if let EngineError::UnknownRun(id) = &error {
            return UiError::not_found(format!(
                "No run has the id `{id}`. It may have been purged, or the id is mistyped."
            ));
        }
        // One home for an engine error's status: the API's mapping.
        let api = super::error::from_engine(error);
        let title = match api.status {
            StatusCode::NOT_FOUND => "Not found".to_owned(),
            status => format!(
                "{} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("Error")
            ),
        };
        UiError {
            status: api.status,
            title,
            message: api.body.error,
        }
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, error = %self.message, "web UI error");
        }
        let body = maud::html! {
            section.error-page {
                h1 { (self.status.as_u16()) " · " (self.title) }
                p.error-message { (self.message) }
                p { a href="/ui" { "← All runs" } " · " a href="/ui/workflows" { "Workflows" } }
            }
        };
        html(
            self.status,
            layout::page(&self.title, layout::Nav::None, body),
        )
    }
}

/// Any other path under `/ui/`: the UI's 404 page.
async fn not_found_route(uri: axum::http::Uri) -> UiError {
    UiError::not_found(format!("There is no page at {}.", uri.path()))
}
