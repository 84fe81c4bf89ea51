//! The HTTP API (axum, feature `http`): start runs, inspect them, cancel them, deliver hook
//! payloads and webhooks, and read the OpenAPI document (DESIGN "Surfaces").
//!
//! Build the [`axum::Router`] with [`router`] to mount it in your own server, or let
//! [`serve`] run it on a listener until a shutdown signal.
//!
//! ```no_run
//! # async fn demo() -> Result<(), reprise::EngineError> {
//! use reprise::http::{HttpOptions, serve};
//! let engine = reprise::Engine::builder().discover()?.build()?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080")
//!     .await
//!     .map_err(|e| reprise::EngineError::Store(e.to_string()))?;
//! serve(engine, listener, HttpOptions::from_env(), async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```
//!
//! # Routes
//!
//! | Route | Success | Errors |
//! |---|---|---|
//! | `POST /workflows/{slug}` (body: the input; `?wait=30s`) | 202 `{"run_id","status":"queued"}`; with `wait`, 200 `{"run_id","status","output"\|"error"}` once ended | 400 bad JSON or `wait`, 404 unknown slug, 422 schema violations (nothing is enqueued) |
//! | `GET /workflows` | 200 `[{"slug","description"?,"input_schema","output_schema"}]` | |
//! | `GET /runs?status=&workflow=&limit=` | 200 `[{"id","workflow","status","attempt","trigger","created_at","updated_at","wake_at"}]`, newest first, at most `limit` (default 100) | 400 unknown status (names the valid ones) or bad limit |
//! | `GET /runs/{id}` | 200 the run with `input`, `output`, `error`, `steps` and open `hooks` | 404 |
//! | `GET /runs/{id}/events` | 200 the event log | 404 |
//! | `POST /runs/{id}/cancel` | 200 `{"run_id","status":"canceled"}`; 202 `{"run_id","status":"running","cancel_requested":true}` while it executes | 404, 409 already ended |
//! | `POST /hooks/{token}` (JSON body), `GET /hooks/{token}?k=v` | 200 `{"run_id","status":"queued"}` | 404 unknown token, 409 already delivered / not waiting, 422 schema violations (the hook stays open) |
//! | `POST /webhooks/{source}` | 202 `{"run_id"}`; 200 `{"run_id","duplicate":true}`; 200 `{"ignored":true,"reason"}` | 401 bad signature, 404 unknown source, 422 invalid payload |
//! | `GET /openapi.json` | 200 OpenAPI 3.1, with each workflow's input and output schema | |
//!
//! # Errors
//! Every error body is JSON: `{"error": "<what went wrong and what to do>", "code":
//! "<machine-readable kind>"}`, plus `"violations": [{"pointer", "message"}]` for schema
//! violations. Unknown routes, wrong methods and oversized bodies (413) answer the same way.
//!
//! # Authentication
//! With [`HttpOptions::api_token`] set, every route except `/hooks/*` and `/webhooks/*`
//! requires `Authorization: Bearer <token>` (compared in constant time), else 401. Hook
//! tokens are unguessable and webhooks check their own signatures, so those routes stay
//! open for the services that call them.

mod auth;
mod body;
mod error;
mod hooks;
mod openapi;
mod runs;
mod views;
mod webhooks;
mod workflows;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::{Engine, EngineError};

/// The environment variable [`HttpOptions::from_env`] reads the API token from.
pub const API_TOKEN_ENV: &str = "REPRISE_API_TOKEN";

/// The default request body limit: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// Options of the HTTP API.
///
/// `HttpOptions::default()` is [`HttpOptions::from_env`]: an operator who sets
/// `REPRISE_API_TOKEN` gets it enforced however the server is built. To turn
/// authentication off explicitly, set `api_token: None`.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// When set, every route except `/hooks/*` and `/webhooks/*` requires
    /// `Authorization: Bearer <token>`. Default: `REPRISE_API_TOKEN` when set and not empty.
    pub api_token: Option<String>,
    /// The largest request body accepted, in bytes; larger ones get 413. Default 1 MiB.
    pub body_limit: usize,
}

impl HttpOptions {
    /// The token from `REPRISE_API_TOKEN` (none when unset or empty) and a 1 MiB body limit.
    pub fn from_env() -> Self {
        let api_token = std::env::var(API_TOKEN_ENV)
            .ok()
            .filter(|token| !token.is_empty());
        HttpOptions {
            api_token,
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self::from_env()
    }
}

impl std::fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpOptions")
            .field("api_token", &self.api_token.as_ref().map(|_| "<redacted>"))
            .field("body_limit", &self.body_limit)
            .finish()
    }
}

/// What every handler reads: the engine and the options that shape responses.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) engine: Engine,
    pub(crate) body_limit: usize,
    pub(crate) auth_enabled: bool,
}

/// The HTTP API as an axum router (state applied), ready to serve or to nest in a bigger
/// application. See the [module docs](self) for the routes, statuses and error shape.
pub fn router(engine: Engine, options: HttpOptions) -> Router {
    let auth = auth::BearerAuth::new(options.api_token.as_deref());
    let state = AppState {
        engine,
        body_limit: options.body_limit,
        auth_enabled: auth.is_enabled(),
    };
    let protected = Router::new()
        .route("/workflows", get(workflows::list))
        .route("/workflows/{slug}", post(workflows::start))
        .route("/runs", get(runs::list))
        .route("/runs/{id}", get(runs::get))
        .route("/runs/{id}/events", get(runs::events))
        .route("/runs/{id}/cancel", post(runs::cancel))
        .route("/openapi.json", get(openapi::document))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::new(auth),
            auth::require_bearer,
        ));
    let open = Router::new()
        .route(
            "/hooks/{token}",
            get(hooks::resume_get).post(hooks::resume_post),
        )
        .route("/webhooks/{source}", post(webhooks::deliver));
    protected
        .merge(open)
        .fallback(error::no_route)
        .layer(DefaultBodyLimit::max(options.body_limit))
        .layer(axum::middleware::map_response(error::json_error_bodies))
        .with_state(state)
}

/// Serves [`router`] on `listener` until `shutdown` completes, then finishes the requests in
/// flight (graceful shutdown) and returns.
///
/// # Errors
/// [`EngineError::Store`] naming the I/O error if the server stops on one (accept errors
/// are retried, so in practice it returns `Ok` after `shutdown`).
pub async fn serve(
    engine: Engine,
    listener: tokio::net::TcpListener,
    options: HttpOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), EngineError> {
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, auth = options.api_token.is_some(), "HTTP API listening");
    }
    let app = router(engine, options);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| EngineError::Store(format!("the HTTP server stopped: {e}")))
}
