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
//! | `POST /workflows/{slug}` (body: the input; `?wait=30s`; `?delay=10m` or `?start_at=<RFC 3339>` for a delayed start: queued, due then; `?queue=&queue_key=&priority=&dedup=` for flow control; optional `Idempotency-Key` header) | 202 `{"run_id","status":"queued"}`; with `dedup` (or into a debounced queue): `"created": true`, or 200 with the pending run and `"created": false` when it answered the start; with `wait`, 200 `{"run_id","status","output"\|"error"}` once ended; a key seen before with the same input: 200 `{"run_id","status",…,"duplicate":true}` (that run, nothing new) | 400 bad JSON, `wait`, `delay`, `start_at` or key, an unknown queue, a queue key the input lacks, a `priority` that is not an integer (nothing is created), 404 unknown slug, 409 `idempotency_conflict` (the key started a run with another input; names it), 413 `payload_too_large` (the input is over `EngineBuilder::max_payload_bytes`; names the size and the limit), 422 schema violations (nothing is enqueued) |
//! | `GET /workflows/{slug}/graph` (`?run=<id>` lights it with that run; `?format=svg\|mermaid\|json`) | 200 the workflow's graph: `image/svg+xml` by default (call-site nodes `<g class="node <status>" data-step data-status>`), Mermaid as `text/plain`, or JSON | 400 unknown `format`, 404 unknown slug or run, 422 `other_workflow` (the run is of another workflow) |
//! | `GET /queues` | 200 `[{"name","concurrency"?,"key_concurrency"?,"key"?,"rate_limit"?,"debounce"?,"step_rate_limit"?,"active","admitted_in_window","step_permits_in_window"?,"next_step_permit_at"?,"waiting"}]`: the flow-control queues the engine knows, by name, with admitted unfinished runs (`active`), admissions in the current rate window, step permits in the current step-rate window (queue-wide step limits) and queued runs not yet admitted (`waiting`) | |
//! | `PUT /credentials/{scope}/{name}` | 200 `{"scope","name","change":"set"}`; body `{"value": "…"}` (never echoed) | 400 unknown scope (the message names `user:<id>`, `project:<id>`, `org`), bad name or body; 409 `read_only` store |
//! | `GET /credentials[?scope=]` | 200 `[{"scope","name","updated_at","source"}]`: never values | 400 unknown scope |
//! | `DELETE /credentials/{scope}/{name}` | 200 `{"scope","name","change":"deleted"}` | 400; 404 `unknown_credential`; 409 `read_only` |
//! | `GET /workflows` | 200 `[{"slug","description"?,"input_schema","output_schema","paused"?,"on_event"?}]` (`paused`: `{"by","at"}` while paused; `on_event`: the event that starts its runs) | |
//! | `GET /runs?status=&workflow=&limit=` | 200 `[{"id","workflow","status","attempt","trigger","created_at","updated_at","wake_at"}]`, newest first, at most `limit` (default 100); runs whose rows do not decode are left out (logged at debug) and named in the header `X-Reprise-Skipped: <id>, <id>` | 400 unknown status (names the valid ones) or bad limit |
//! | `GET /runs/{id}` | 200 the run with `input`, `output`, `error`, `steps` and open `hooks`; `queue` (`{"name","key"?,"priority","admitted_at"?}`) for a run in a queue, and `waiting_for` (`{"queue"?,"key"?,"blocked"?,"unserved"?,"message"}`) while it waits for admission or no live worker serves it | 404 |
//! | `GET /runs/{id}/events` | 200 the event log | 404 |
//! | `GET /runs/{id}/stream` (SSE; `Last-Event-ID` or `?after=<seq>` to resume) | 200 `text/event-stream`: `event: event` per recorded event (`id`: its seq, `data`: as in `/events`), `event: token` per LLM reply delta (`data`: `{"step","text"}`), then `event: end` (`data`: the run as in `GET /runs/{id}`) once it ended. See [Live streams](self#live-streams) | 400 bad `after`, 404, 503 `too_many_streams` |
//! | `GET /runs/stream?workflow=&status=` (SSE) | 200 `text/event-stream`: `event: run`, `data`: `{"run_id","workflow","status","at"}` per status change | 400 unknown status, 503 `too_many_streams` |
//! | `POST /runs/{id}/retry` | 200 `{"run_id","status":"queued","attempt","step"?}`: a failed run queued again on the current code (the failed step runs again, completed ones replay) | 404, 409 not `failed` |
//! | `POST /runs/{id}/pause` | 200 `{"run_id","status":"paused"}`; 202 `{"run_id","status":"running","pause_requested":true}` while it executes (it pauses at its next step boundary) | 404, 409 already ended |
//! | `POST /runs/{id}/unpause` | 200 `{"run_id","status":"queued","attempt","step"?}` (a parked run runs its failed step again) | 404, 409 not paused |
//! | `POST /workflows/{slug}/pause`, `POST /workflows/{slug}/unpause` | 200 `{"workflow","paused","changed"}`: while paused, no run of the workflow is claimed | 404 unknown slug (pause) |
//! | `POST /runs/{id}/fork` (body `{"from": "<step id>", "input"?: …}`) | 201 `{"run_id","status":"queued","forked_from","copied"}`: a new run whose steps before `from` replay from the original's log; with `input`, the first copied step whose input changed runs live with all after it; the original is unchanged | 400 bad body, 404 unknown run, 422 `unknown_step` (lists some step ids) or `schema` (new input, with pointers) |
//! | `POST /runs/{id}/restart` | 201 as fork: a new run with the same input in which every step runs again | 404 |
//! | `POST /runs/purge` (body `{"before": "30d" \| "<RFC 3339>", "workflow"?, "status"?, "dry_run"?, "limit"?}`) | 200 `{"dry_run","count","by_workflow","runs"?}`: ended runs deleted with their events in small batches (unfinished ones never); a dry run deletes nothing and lists at most `limit` (default 100) | 400 bad `before`, unfinished or unknown `status`, `limit` out of 1..=1000, unknown field |
//! | `POST /runs/{id}/cancel` | 200 `{"run_id","status":"canceled"}`; 202 `{"run_id","status":"running","cancel_requested":true}` while it executes | 404, 409 already ended |
//! | `POST /hooks/{token}` (JSON body), `GET /hooks/{token}?k=v` | 200 `{"run_id","status":"queued"}` | 404 unknown token, 409 already delivered / not waiting, 413 `payload_too_large` naming the hook, the size and the limit, 422 schema violations (the hook stays open either way) |
//! | `POST /events` (body `{"name","data","id"?}`) | 202 `{"id","duplicate","delivered","started":[…],"rejected"?}`: delivered to every run waiting for the name, one run started per event id for each `on_event` workflow; a repeat of an id starts and delivers nothing twice (`duplicate: true`) | 400 bad JSON, 413 `payload_too_large`, 422 not `{"name","data","id"?}` or a bad name or id (with pointers) |
//! | `POST /webhooks/{source}` | 202 `{"run_id"}`; 200 `{"run_id","duplicate":true}`; 200 `{"ignored":true,"reason"}` | 401 bad signature, 404 unknown source, 422 invalid payload |
//! | `GET /openapi.json` | 200 OpenAPI 3.1, with each workflow's input and output schema | |
//! | `GET /schedules`, `GET /schedules/{name}` | 200 every schedule (`source`: `code` or `data`) / one | 404 `unknown_schedule` |
//! | `POST /schedules` (`{"name","workflow","cron"\|"interval","time_zone"?,"input"?,"overlap"?,"catch_up_window"?,"paused"?}`) | 201 the schedule; fired without a restart | 400 `invalid_schedule` (bad cron, interval, time zone, window, unknown workflow or field), 409 `schedule_conflict` (name taken), 422 input does not fit |
//! | `PUT`/`PATCH /schedules/{name}` (whole definition / some fields) | 200 the schedule | 400, 404, 409 declared in code, 422 |
//! | `DELETE /schedules/{name}` | 200 `{"name","deleted":true}` | 404, 409 declared in code |
//! | `POST /schedules/{name}/pause`, `/resume` | 200 the schedule (also for schedules declared in code) | 404 |
//! | `GET /subscriptions?workflow=` / `POST /subscriptions` (`{"workflow","user","config"}`) | 200 the subscriptions / 201 the subscription | 400 not subscribable or bad user, 404 `unknown_workflow`, 422 config violations (JSON pointers) |
//! | `POST /subscriptions/{id}/pause`, `/resume`; `DELETE /subscriptions/{id}` | 200 the subscription | 404 `unknown_subscription` |
//! | `POST /schedules/{name}/trigger` | 202 `{"run_id","status":"queued"}` | 404, 422 |
//! | `GET /metrics` | 200 OpenMetrics text (`application/openmetrics-text`), names prefixed `reprise_` (see [`crate::metrics`]) | 503 store failure |
//! | `GET /usage?since=&until=&workflow=` | 200 `{"rows":[{"day","workflow","model","requests","prompt_tokens","completion_tokens","total_tokens","cached_tokens"?,"cost_usd"}],"requests","usage","cost_usd","unpriced_models","runs_scanned"}`: model requests' tokens and cost by day (UTC), workflow and model; `since`/`until` RFC 3339 or an age (`7d`) | 400 bad time |
//! | `POST /schedules/{name}/backfill` (`{"from","to"}`, RFC 3339) | 200 `{"schedule","ticks","started","existing"}`: each tick's run once, also when repeated | 400 bad range, 404 |
//! | `POST /tokens` (`{"name","principal","scope"}`), `GET /tokens`, `DELETE /tokens/{name}` (admin scope) | 201 `{"name","principal","scope","created_at","created_by","token"}` (`token` shown this once) / 200 the tokens by name (never the tokens) / 200 `{"name","revoked":true}` | 400 bad body, name, principal or scope; 409 `token_name_taken`; 404 `unknown_token` |
//! | `GET /ui`, `/ui/runs/{id}`, `/ui/runs/{id}/graph`, `/ui/workflows`, `/ui/workflows/{slug}`, `/ui/queues` | 200 the web UI's pages (HTML; assets under `/ui/assets/`) | 404 HTML page for unknown runs, workflows and pages; 303 to `/ui/login` without the token |
//! | `POST /ui/login` (`{"token"}`), `POST /ui/logout` | 204 setting / clearing the UI's token cookie | 401 not the API token |
//!
//! # Errors
//! Every error body is JSON: `{"error": "<what went wrong and what to do>", "code":
//! "<machine-readable kind>"}`, plus `"violations": [{"pointer", "message"}]` for schema
//! violations. That includes what the handlers never see: unknown routes (404), wrong
//! methods (405), oversized bodies (413), a body that stops short of its `Content-Length`
//! (408 after [`HttpOptions::body_timeout`], then the connection is closed), cross-site
//! refusals (403, 415), and, with [`serve`], the answers hyper gives before any service runs
//! (400 for a malformed request line, header or `Content-Length` and for bytes that are not
//! HTTP, 414 for a request target over 64 KiB, 431 for headers over ~400 KiB): the
//! connection layer rewrites those into the same JSON shape.
//!
//! What the stack leaves without a JSON body, by design or because there is nobody to
//! answer: a connection closed for taking longer than [`HttpOptions::header_timeout`] to
//! send its request head, or idle longer than [`HttpOptions::idle_timeout`] between
//! requests (closed silently, as HTTP allows); an HTTP/2 preface sent to this HTTP/1.1
//! server (hyper closes the connection); a malformed request pipelined behind another on
//! the same connection, in the same write (hyper's plain answer is left as is); a client
//! that stops reading its response; and connections over [`HttpOptions::max_connections`],
//! which wait in the listener's backlog until one closes and are not answered until then.
//! A router mounted in your own server ([`router`]) gets every handler-level JSON error,
//! but timeouts, the connection limit and the rewriting of hyper's answers are [`serve`]'s.
//!
//! # Limits and timeouts
//! [`serve`] applies [`HttpOptions`]' limits per connection (defaults; environment
//! variables read by [`HttpOptions::from_env`]):
//!
//! | Setting | Default | Environment | What happens |
//! |---|---|---|---|
//! | [`header_timeout`](HttpOptions::header_timeout) | 10 s | `REPRISE_HTTP_HEADER_TIMEOUT` | a new connection, or one that started a request, must send the whole request head within it; else it is closed |
//! | [`body_timeout`](HttpOptions::body_timeout) | 30 s | `REPRISE_HTTP_BODY_TIMEOUT` | a request body must arrive whole within it; else 408 `request_timeout` and the connection is closed |
//! | [`idle_timeout`](HttpOptions::idle_timeout) | 60 s | `REPRISE_HTTP_IDLE_TIMEOUT` | a keep-alive connection with no request for that long is closed |
//! | [`max_connections`](HttpOptions::max_connections) | 512, or half the process's open-file limit if lower | `REPRISE_HTTP_MAX_CONNECTIONS` | further connections wait in the backlog (they hold no descriptor) until one closes; one warning when the limit is reached |
//! | [`body_limit`](HttpOptions::body_limit) | 1 MiB | | larger bodies get 413 |
//!
//! Handlers themselves are not timed: `?wait=` holds a request up to 5 minutes. Accept
//! errors (`EMFILE` when the process is out of descriptors, …) never stop the server: it
//! warns (at most once a minute), backs off (10 ms doubling to 1 s) and accepts again.
//!
//! # Cross-site requests
//! A web page the user visits can send requests to `http://127.0.0.1:8080` (form posts,
//! `fetch` with `text/plain` bodies) without being able to read the answers; that is
//! enough to start runs. So every state-changing request (any method but `GET`, `HEAD`
//! and `OPTIONS`) is refused:
//! - with 403 `cross_site` when `Sec-Fetch-Site: cross-site`, or when an `Origin` header is
//!   present and names another host than the request's `Host` (or `X-Forwarded-Host`)
//!   (`Origin: null` included). Clients other than browsers send neither header;
//! - with 415 `unsupported_media_type` unless its `Content-Type` is `application/json` (or
//!   `application/<x>+json`), the one kind of body a page cannot send cross-site without
//!   the CORS preflight this API never grants. A request with no body may omit the
//!   header (`curl -X POST …/runs/{id}/cancel`).
//!
//! Two routes differ, on purpose. `POST /webhooks/{source}` gets the `Origin` and
//! `Sec-Fetch-Site` check but takes any `Content-Type`: the services that call webhooks use
//! their own, and the body is authenticated by its signature. `/hooks/{token}` gets
//! neither: the unguessable token in the URL is the credential (a page cannot forge what
//! it does not know), and resume URLs are meant to be followed from anywhere, `GET` from a
//! link in an email, `POST` from a form or another service. Bodies are still parsed as JSON
//! there, whatever the `Content-Type`.
//!
//! # Live streams
//! The two SSE routes keep their response open: a keep-alive comment every 15 s, and the
//! stream ends when the run ends (`/runs/{id}/stream`), when the client goes, or when
//! [`serve`] shuts down. At most 128 streams are open at once per router (503
//! `too_many_streams` with the JSON error body beyond that); each holds one of
//! [`HttpOptions::max_connections`]. Events come from the store, so a stream served by
//! `serve` sees the runs a separate `worker` process executes (within 250 ms); LLM token
//! deltas are not recorded and reach only streams of the process executing the run.
//!
//! # Authentication
//! With [`HttpOptions::api_token`] set, every route except `/hooks/*` and `/webhooks/*`
//! (and the web UI's login page and assets) requires `Authorization: Bearer <token>`
//! (compared in constant time), else 401, or the web UI's cookie, which `POST /ui/login`
//! sets for that token (`HttpOnly`, `SameSite=Strict`); a `GET` of a UI page without
//! either is redirected to `/ui/login`. Hook
//! tokens are unguessable and webhooks check their own signatures, so those routes stay
//! open for the services that call them. Without a token, anyone who can reach the port
//! can start and cancel runs: `dev` warns when it listens on a non-loopback address
//! without one.
//!
//! Named API tokens ([`crate::identity::tokens`]; `tokens create`, `POST /tokens`) are
//! accepted beside the configured one, in the header and by the UI's login: each names a
//! principal, recorded as the actor of the runs it starts, forks and restarts
//! (`{"type": "principal", "name", "token"}`), and a scope. The configured token is
//! principal `api` with every scope; so is a request to an API without a configured token
//! (which stays open), unless it presents a named token: that is still checked (401 when
//! unknown or revoked) and its scope holds. Scopes, each including the ones before:
//! `read` (every `GET`, the web UI's pages), `start` (`POST /workflows/{slug}`, `POST
//! /events`), `operate` (every other `POST`/`PUT`/`PATCH`/`DELETE`: cancel, retry,
//! pause, unpause, fork, restart, signals, updates, schedules, pausing a subscription),
//! `admin` (`/tokens`, `/credentials`, creating and deleting subscriptions, `POST
//! /runs/purge`, and `?user=` naming another user than the caller). Too low a scope is
//! 403 `forbidden`, naming the scope needed and the token's.

mod auth;
mod body;
pub(crate) mod credentials;
mod cross_site;
mod error;
mod events;
mod graph;
mod hooks;
mod messages;
mod metrics;
mod openapi;
mod pause;
mod purge;
pub(crate) mod queues;
mod runs;
mod schedules;
mod server;
mod streams;
mod subscriptions;
mod tokens;
mod ui;
mod usage;
mod views;
mod webhooks;
mod workflows;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::{Engine, EngineError};

/// The environment variable [`HttpOptions::from_env`] reads the API token from.
pub const API_TOKEN_ENV: &str = "REPRISE_API_TOKEN";

/// The default request body limit: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// The default [`HttpOptions::header_timeout`]: 10 s.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The default [`HttpOptions::body_timeout`]: 30 s.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The default [`HttpOptions::idle_timeout`]: 60 s.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The most connections [`HttpOptions::max_connections`] defaults to: 512 (fewer when the
/// process's open-file limit is under 1024: half of it).
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// The environment variables of [`HttpOptions::from_env`]'s limits, in the order of the
/// fields: header timeout, body timeout, idle timeout (humantime durations such as `10s`),
/// and the connection limit (a count).
pub const LIMIT_ENVS: [&str; 4] = [
    "REPRISE_HTTP_HEADER_TIMEOUT",
    "REPRISE_HTTP_BODY_TIMEOUT",
    "REPRISE_HTTP_IDLE_TIMEOUT",
    "REPRISE_HTTP_MAX_CONNECTIONS",
];

/// Options of the HTTP API.
///
/// `HttpOptions::default()` is [`HttpOptions::from_env`]: an operator who sets
/// `REPRISE_API_TOKEN` gets it enforced however the server is built. To turn
/// authentication off explicitly, set `api_token: None`. Build one with
/// `HttpOptions { api_token: None, ..HttpOptions::default() }`.
///
/// The timeouts and the connection limit apply to [`serve`] (they are properties of
/// connections, which a [`router`] mounted elsewhere does not see), except
/// [`body_timeout`](Self::body_timeout), which the handlers enforce wherever they run.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// When set, every route except `/hooks/*` and `/webhooks/*` requires
    /// `Authorization: Bearer <token>`. Default: `REPRISE_API_TOKEN` when set and not empty.
    pub api_token: Option<String>,
    /// The largest request body accepted, in bytes; larger ones get 413. Default 1 MiB.
    pub body_limit: usize,
    /// How long a connection may take to send a request's head (request line and headers):
    /// counted from the connection's start for its first request, from the request's
    /// first byte for later ones. A connection over it is closed (without an answer: its
    /// request is incomplete). Default 10 s; `REPRISE_HTTP_HEADER_TIMEOUT`.
    pub header_timeout: Duration,
    /// How long a request body may take to arrive whole, from when the handler starts
    /// reading it. Over it, the request gets 408 `request_timeout` and the connection is
    /// closed: this is what ends a body shorter than its `Content-Length`. Default 30 s;
    /// `REPRISE_HTTP_BODY_TIMEOUT`.
    pub body_timeout: Duration,
    /// How long a keep-alive connection may wait, idle, for its next request before it is
    /// closed. Keep it above the idle timeout of a load balancer in front (60 s on most).
    /// Default 60 s; `REPRISE_HTTP_IDLE_TIMEOUT`.
    pub idle_timeout: Duration,
    /// The most connections served at once. Further ones are not accepted until one
    /// closes: they wait in the listener's backlog, holding no file descriptor here, so a
    /// flood of connections cannot starve the worker and the store of descriptors.
    /// Default 512, or half the process's open-file limit (`ulimit -n`) when that is
    /// lower; `REPRISE_HTTP_MAX_CONNECTIONS`.
    pub max_connections: usize,
}

impl HttpOptions {
    /// The token from `REPRISE_API_TOKEN` (none when unset or empty), a 1 MiB body limit,
    /// and the limits from [`LIMIT_ENVS`] or their defaults. A limit variable that does not
    /// parse is ignored with a warning (use [`HttpOptions::try_from_env`] to refuse it).
    pub fn from_env() -> Self {
        match Self::try_from_env() {
            Ok(options) => options,
            Err(error) => {
                tracing::warn!(%error, "ignoring the HTTP limits in the environment");
                Self::defaults(api_token_from_env())
            }
        }
    }

    /// [`HttpOptions::from_env`], but a limit variable that does not parse, or a zero
    /// timeout or limit, is an error.
    ///
    /// # Errors
    /// [`EngineError::Config`] naming the variable, its value and what it takes.
    pub fn try_from_env() -> Result<Self, EngineError> {
        let mut options = Self::defaults(api_token_from_env());
        let [header, body, idle, connections] = LIMIT_ENVS;
        if let Some(value) = env_duration(header)? {
            options.header_timeout = value;
        }
        if let Some(value) = env_duration(body)? {
            options.body_timeout = value;
        }
        if let Some(value) = env_duration(idle)? {
            options.idle_timeout = value;
        }
        if let Ok(text) = std::env::var(connections) {
            options.max_connections = text
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    EngineError::Config(format!(
                        "{connections}={text:?} is not a connection count; give a whole \
                         number of at least 1, such as 512"
                    ))
                })?;
        }
        Ok(options)
    }

    fn defaults(api_token: Option<String>) -> Self {
        HttpOptions {
            api_token,
            body_limit: DEFAULT_BODY_LIMIT,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: server::default_max_connections(),
        }
    }
}

fn api_token_from_env() -> Option<String> {
    std::env::var(API_TOKEN_ENV)
        .ok()
        .filter(|token| !token.is_empty())
}

/// A positive humantime duration from environment variable `name`, if set.
fn env_duration(name: &str) -> Result<Option<Duration>, EngineError> {
    let Ok(text) = std::env::var(name) else {
        return Ok(None);
    };
    match humantime::parse_duration(text.trim()) {
        Ok(duration) if !duration.is_zero() => Ok(Some(duration)),
        Ok(_) => Err(EngineError::Config(format!(
            "{name}={text:?} is zero; give a positive duration such as `10s`"
        ))),
        Err(e) => Err(EngineError::Config(format!(
            "{name}={text:?} is not a duration ({e}); write e.g. `10s` or `1m`"
        ))),
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
            .field("header_timeout", &self.header_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// What every handler reads: the engine and the options that shape responses.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) engine: Engine,
    pub(crate) body_limit: usize,
    pub(crate) body_timeout: Duration,
    pub(crate) auth_enabled: bool,
    /// The open SSE streams' limit and the signal that ends them (server shutdown).
    pub(crate) streams: streams::StreamLimits,
    /// The API token check, for the web UI's login.
    pub(crate) auth: Arc<auth::BearerAuth>,
}

/// The HTTP API as an axum router (state applied), ready to serve or to nest in a bigger
/// application. See the [module docs](self) for the routes, statuses and error shape.
pub fn router(engine: Engine, options: HttpOptions) -> Router {
    build_router(engine, options, tokio_util::sync::CancellationToken::new())
}

/// [`router`], whose SSE streams end when `shutdown` is cancelled (so a graceful shutdown
/// does not wait for them forever).
fn build_router(
    engine: Engine,
    options: HttpOptions,
    shutdown: tokio_util::sync::CancellationToken,
) -> Router {
    let auth = Arc::new(auth::BearerAuth::new(options.api_token.as_deref()));
    let state = AppState {
        engine,
        body_limit: options.body_limit,
        body_timeout: options.body_timeout,
        auth_enabled: auth.is_enabled(),
        streams: streams::StreamLimits::new(shutdown),
        auth,
    };
    let protected = Router::new()
        .route("/workflows", get(workflows::list))
        .route(
            "/workflows/{slug}",
            get(workflows::get).post(workflows::start),
        )
        .route("/workflows/{slug}/source", get(workflows::source))
        .route("/workflows/{slug}/graph", get(graph::graph))
        .route("/runs", get(runs::list))
        .route("/runs/stream", get(streams::all))
        .route("/runs/{id}/stream", get(streams::run))
        .route("/runs/{id}", get(runs::get))
        .route("/runs/{id}/events", get(runs::events))
        .route("/runs/{id}/cancel", post(runs::cancel))
        .route("/runs/{id}/retry", post(runs::retry))
        .route("/runs/{id}/pause", post(pause::pause_run))
        .route("/runs/{id}/unpause", post(pause::unpause_run))
        .route("/workflows/{slug}/pause", post(pause::pause_workflow))
        .route("/workflows/{slug}/unpause", post(pause::unpause_workflow))
        .route("/runs/{id}/fork", post(runs::fork))
        .route("/runs/{id}/restart", post(runs::restart))
        .route("/runs/{id}/signals/{name}", post(messages::signal))
        .route("/runs/{id}/updates/{name}", post(messages::update))
        .route("/runs/{id}/state", get(messages::state))
        .route("/runs/{id}/state/{key}", get(messages::state_key))
        .route("/workflows/{slug}/runs/{key}", get(messages::run_by_key))
        .route(
            "/workflows/{slug}/runs/{key}/signals/{name}",
            post(messages::signal_by_key),
        )
        .route("/runs/purge", post(purge::purge))
        .route("/events", post(events::emit))
        .route("/openapi.json", get(openapi::document))
        .route("/schedules", get(schedules::list).post(schedules::create))
        .route(
            "/schedules/{name}",
            get(schedules::get)
                .put(schedules::replace)
                .patch(schedules::patch)
                .delete(schedules::delete),
        )
        .route("/schedules/{name}/pause", post(schedules::pause))
        .route("/schedules/{name}/resume", post(schedules::resume))
        .route("/schedules/{name}/trigger", post(schedules::trigger))
        .route("/schedules/{name}/backfill", post(schedules::backfill))
        .route(
            "/subscriptions",
            get(subscriptions::list).post(subscriptions::create),
        )
        .route(
            "/subscriptions/{id}",
            axum::routing::delete(subscriptions::delete),
        )
        .route("/subscriptions/{id}/pause", post(subscriptions::pause))
        .route("/subscriptions/{id}/resume", post(subscriptions::resume))
        .route("/metrics", get(metrics::metrics))
        .route("/usage", get(usage::usage))
        .route("/queues", get(queues::list))
        .route("/credentials", get(credentials::list))
        .route(
            "/credentials/{scope}/{name}",
            axum::routing::put(credentials::set).delete(credentials::delete),
        )
        .merge(ui::protected_routes())
        .route("/tokens", get(tokens::list).post(tokens::create))
        .route("/tokens/{name}", axum::routing::delete(tokens::revoke))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_bearer,
        ));
    let open = Router::new()
        .route(
            "/hooks/{token}",
            get(hooks::resume_get).post(hooks::resume_post),
        )
        .route("/webhooks/{source}", post(webhooks::deliver))
        .merge(ui::open_routes());
    protected
        .merge(open)
        .fallback(error::no_route)
        .layer(axum::middleware::from_fn(cross_site::refuse))
        .layer(DefaultBodyLimit::max(options.body_limit))
        .layer(axum::middleware::map_response(error::json_error_bodies))
        .with_state(state)
}

/// Serves [`router`] on `listener` until `shutdown` completes, then finishes the requests in
/// flight (graceful shutdown: idle connections are closed at once) and returns.
///
/// Each connection is HTTP/1.1 with keep-alive, under `options`' timeouts and connection
/// limit (see the [module docs](self#limits-and-timeouts)); the answers hyper gives to
/// requests it cannot parse are rewritten as JSON errors.
///
/// # Errors
/// None in practice: accept errors are logged and retried, so it returns `Ok` after
/// `shutdown`. The `Result` is kept for servers that may fail to start.
pub async fn serve(
    engine: Engine,
    listener: tokio::net::TcpListener,
    options: HttpOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), EngineError> {
    if let Ok(address) = listener.local_addr() {
        tracing::info!(
            %address,
            auth = options.api_token.is_some(),
            max_connections = options.max_connections,
            "HTTP API listening"
        );
    }
    let limits = server::Limits {
        header_timeout: options.header_timeout,
        idle_timeout: options.idle_timeout,
        max_connections: options.max_connections.max(1),
    };
    let streams_end = tokio_util::sync::CancellationToken::new();
    let app = build_router(engine, options, streams_end.clone());
    let shutdown = async move {
        shutdown.await;
        // Streams never finish on their own: end them, so the requests in flight can.
        streams_end.cancel();
    };
    server::run(listener, app, limits, shutdown).await;
    Ok(())
}
