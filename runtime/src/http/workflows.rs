//! `GET /workflows` and `POST /workflows/{slug}`: the registered workflows, and starting
//! a run of one.

use std::time::Duration;

use chrono::{DateTime, Utc};

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::Caller;
use super::body::JsonBody;
use super::error::{ApiError, ErrorBody};
use super::views::RunState;
use crate::engine::{StartOptions, delay_from, parse_delay, parse_start_at};
use crate::event::{RunStatus, Trigger};
use crate::identity::tokens::ApiScope;

/// The longest `?wait=` accepted.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(300);

/// A registered workflow.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WorkflowInfo {
    /// The slug runs are started with.
    slug: String,
    /// The doc-comment description, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    /// The JSON Schema (draft 2020-12) the input must match.
    input_schema: Value,
    /// The JSON Schema of the output.
    output_schema: Value,
    /// Present while the workflow is paused (`POST /workflows/{slug}/pause`): who paused
    /// it and when. No run of it is claimed meanwhile.
    #[serde(skip_serializing_if = "Option::is_none")]
    paused: Option<PausedBy>,
    /// The event that starts a run of it, once per event id (`on_event = "order.paid"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    on_event: Option<String>,
    /// For a subscribable workflow (`#[workflow(subscribable = T)]`): the JSON Schema a
    /// subscription's config must match (`POST /subscriptions`).
    #[serde(skip_serializing_if = "Option::is_none")]
    subscription_schema: Option<Value>,
    /// Where it is defined: `code` (a `#[workflow]` fn in the binary) or `file` (a
    /// workflow file; `GET /workflows/{slug}/source` gives its text).
    origin: Origin,
    /// For a file workflow: the file's path, as it was loaded (`workflows/review.md`).
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
}

/// Where a workflow is defined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Origin {
    /// A `#[workflow]` fn compiled into the binary.
    Code,
    /// A workflow file loaded at startup (`--workflows-dir`, `REPRISE_WORKFLOWS_DIR`,
    /// `EngineBuilder::workflow_dir`).
    File,
}

impl WorkflowInfo {
    /// The view of `entry`, paused as `paused` says.
    fn of(entry: &crate::registry::WorkflowEntry, paused: Option<PausedBy>) -> WorkflowInfo {
        let description = entry.registration.description.trim();
        WorkflowInfo {
            slug: entry.registration.slug.to_owned(),
            description: (!description.is_empty()).then(|| description.to_owned()),
            input_schema: entry.input_schema().clone(),
            output_schema: entry.output_schema().clone(),
            paused,
            on_event: entry.options.on_event.map(str::to_owned),
            subscription_schema: entry.subscription_schema().cloned(),
            origin: if entry.path.is_some() || entry.origin.is_some() {
                Origin::File
            } else {
                Origin::Code
            },
            path: entry.path.map(|p| p.display().to_string()),
        }
    }
}

/// A workflow file's text (`GET /workflows/{slug}/source`).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WorkflowSource {
    /// The workflow's slug.
    slug: String,
    /// The file's path, as it was loaded.
    path: String,
    /// The file's whole text (front matter and Markdown), as loaded at startup: an edit
    /// on disk shows after a restart.
    source: String,
}

/// Who paused a workflow, and when.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PausedBy {
    /// `cli:<user>`, `api`, or the caller's text.
    by: String,
    /// When (RFC 3339, UTC).
    #[schema(value_type = String, format = DateTime)]
    at: DateTime<Utc>,
}

/// Lists the registered workflows with their input and output JSON Schemas, by slug.
#[utoipa::path(
    get,
    path = "/workflows",
    operation_id = "list_workflows",
    tag = "workflows",
    responses(
        (status = 200, description = "The registered workflows, by slug", body = Vec<WorkflowInfo>),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
) -> Result<Json<Vec<WorkflowInfo>>, ApiError> {
    let mut pauses = state.engine.workflow_pauses().await?;
    let workflows = state
        .engine
        .registry()
        .workflows()
        .map(|entry| {
            let paused = pauses
                .iter()
                .position(|p| p.workflow == entry.registration.slug)
                .map(|i| pauses.swap_remove(i))
                .map(|p| PausedBy { by: p.by, at: p.at });
            WorkflowInfo::of(entry, paused)
        })
        .collect();
    Ok(Json(workflows))
}

/// One registered workflow: its schemas, where it is defined (`origin`, and `path` for a
/// workflow file), whether it is paused.
#[utoipa::path(
    get,
    path = "/workflows/{slug}",
    operation_id = "get_workflow",
    tag = "workflows",
    params(("slug" = String, Path, description = "The workflow's slug")),
    responses(
        (status = 200, description = "The workflow", body = WorkflowInfo),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 404, description = "No workflow has this slug", body = ErrorBody),
    )
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    Path(slug): Path<String>,
) -> Result<Json<WorkflowInfo>, ApiError> {
    let entry = state.engine.workflow(&slug)?.clone();
    let paused = state
        .engine
        .workflow_pauses()
        .await?
        .into_iter()
        .find(|p| p.workflow == slug)
        .map(|p| PausedBy { by: p.by, at: p.at });
    Ok(Json(WorkflowInfo::of(&entry, paused)))
}

/// The text of a file workflow's file, as loaded at startup (for the UI and tools).
#[utoipa::path(
    get,
    path = "/workflows/{slug}/source",
    operation_id = "get_workflow_source",
    tag = "workflows",
    params(("slug" = String, Path, description = "The workflow's slug")),
    responses(
        (status = 200, description = "The file's path and text", body = WorkflowSource),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 404, description = "No workflow has this slug (`unknown_workflow`), or it is defined in code and has no file (`no_source`)", body = ErrorBody),
    )
)]
pub(crate) async fn source(
    State(state): State<AppState>,
    Path(slug): Path<String>,
) -> Result<Json<WorkflowSource>, ApiError> {
    let entry = state.engine.workflow(&slug)?;
    match (entry.path, entry.source) {
        (Some(path), Some(source)) => Ok(Json(WorkflowSource {
            slug,
            path: path.display().to_string(),
            source: source.to_owned(),
        })),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_source",
            format!(
                "workflow `{slug}` is a `#[workflow]` fn compiled into the binary, not a                  workflow file: it has no source file to show"
            ),
        )),
    }
}

/// Query of `POST /workflows/{slug}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct StartQuery {
    /// Wait up to this long (`500ms`, `30s`, `2m`; at most `5m`) for the run to end, and
    /// answer with its output or error if it did.
    #[param(example = "30s")]
    wait: Option<String>,
    /// Start the run this long from now (`30s`, `10m`, `1h 30m`): it is created `queued`
    /// with this due time (`wake_at`) and no worker takes it before.
    #[param(example = "10m")]
    delay: Option<String>,
    /// Start the run at this RFC 3339 time (`2026-12-24T18:00:00Z`; percent-encode a `+`
    /// offset as `%2B`); a time in the past starts at once. Not with `delay`.
    #[param(example = "2026-12-24T18:00:00Z")]
    start_at: Option<String>,
    /// A business key (1 to 255 printable ASCII characters, e.g. `order-42`): one run per
    /// workflow and key. The first request creates the run (201, `"created": true`); a
    /// later one creates nothing and answers 200 with that run and `"created": false`.
    /// Find the run with `GET /workflows/{slug}/runs/{key}`. Not with `Idempotency-Key`.
    #[param(example = "order-42")]
    key: Option<String>,
    /// The flow-control queue to put the run in, instead of its workflow's own (`GET
    /// /queues` lists them). An unknown queue is 400 naming the known ones; nothing is
    /// created.
    #[param(example = "llm")]
    queue: Option<String>,
    /// The run's key in its queue (per-key concurrency, per-key rate limit, debounce),
    /// instead of the one the queue reads from the input (its JSON pointer; an input
    /// without it is 400, nothing created).
    #[param(example = "customer-7")]
    queue_key: Option<String>,
    /// The run's priority in its queue, an integer: higher is admitted first; equal
    /// priorities by due time, then creation. Default 0.
    #[param(example = "5")]
    priority: Option<String>,
    /// A de-duplication id in the run's queue: while a run of the queue started with it
    /// has not ended, the request creates nothing and answers 200 with that run and
    /// `"created": false`; otherwise 202 with `"created": true`. Not with `key` or
    /// `Idempotency-Key`.
    #[param(example = "nightly-2026-12-06")]
    dedup: Option<String>,
    /// The user the run acts for (credentials are looked up for `user:<id>` first):
    /// 1 to 128 bytes of ASCII letters, digits, `-`, `_`, `.` and `@`. Default: none.
    /// Another user than the caller's own principal needs the `admin` scope (403 without).
    #[param(example = "ada")]
    user: Option<String>,
    /// The run's project (credentials are looked up for `project:<id>` next); same rules
    /// as `user`. Default: the engine's project (`REPRISE_PROJECT`).
    #[param(example = "billing")]
    project: Option<String>,
    /// Start the run for this subscription of the (subscribable) workflow: it acts for the
    /// subscriber's user, and `ctx.subscriber()` returns the subscription. An unknown
    /// subscription is 404, a paused one or one of another workflow 400; nothing is
    /// created. Without it, a subscribable workflow's run has no subscriber.
    #[param(example = "sub_0193…")]
    subscription: Option<String>,
}

impl StartQuery {
    /// The flow-control part of the start; 400 for a `priority` that is not an integer.
    fn queue_request(&self) -> Result<crate::queue::QueueRequest, ApiError> {
        let nonempty = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
        let priority = match nonempty(&self.priority) {
            None => None,
            Some(text) => Some(text.trim().parse::<i32>().map_err(|_| {
                ApiError::bad_request(format!(
                    "`priority={text}` is not an integer; write a whole number such as \
                     `priority=5` or `priority=-1` (higher is admitted first)"
                ))
            })?),
        };
        Ok(crate::queue::QueueRequest {
            queue: nonempty(&self.queue),
            key: nonempty(&self.queue_key),
            priority,
            dedup_id: nonempty(&self.dedup),
        })
    }
}

/// Whether a start of `slug` with `request` goes through a de-duplication or a debounce,
/// and so may answer with a run that already existed.
fn gated(engine: &crate::Engine, slug: &str, request: &crate::queue::QueueRequest) -> bool {
    if request.dedup_id.is_some() {
        return true;
    }
    let own = engine
        .registry()
        .workflow(slug)
        .and_then(|entry| entry.options.queue);
    request
        .queue
        .as_deref()
        .or(own)
        .and_then(|name| engine.queues().iter().find(|q| q.name == name))
        .is_some_and(|q| q.debounce.is_some())
}

/// The header of an idempotent start.
pub(crate) const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Validates the body against the workflow's input schema and enqueues a run.
///
/// Answers 202 `{"run_id", "status": "queued"}`. With `?wait=`, waits that long for the
/// run to end: 200 `{"run_id", "status", "output" | "error"}` if it did, else 202 with
/// the current status. An invalid input creates no run.
///
/// With an `Idempotency-Key` header (1 to 255 printable ASCII characters, e.g. a UUID),
/// the first request starts the run as above; a later one with the same key and input
/// starts nothing and answers 200 with that run's current state and `"duplicate": true`
/// (after `?wait=`, if given); the same key with another input is 409
/// `idempotency_conflict`, naming the run. Keys are per workflow and kept with the run.
///
/// A `traceparent` header (W3C Trace Context) puts the run in the caller's trace: it is
/// recorded in `run_created`, and every execution's `run` span is its child (see
/// [`crate::telemetry`]); a malformed one is ignored.
///
/// With `?delay=10m` or `?start_at=<RFC 3339>`, the run is created `queued` and due then
/// (its `wake_at`; `run_created` records the requested time): no worker takes it before.
/// A time in the past starts at once. Combines with `Idempotency-Key`.
///
/// The run records its actor (`run_created`'s `identity`): `{"type": "principal", "name",
/// "token"?}`, the caller's principal (`api` for the configured bearer token or no
/// authentication, else the named token's principal and the token's name). `?user=` and
/// `?project=` set whom it acts for; another user than the caller's principal needs the
/// `admin` scope.
///
/// With `?key=order-42` (a business key), at most one run of the workflow holds the key:
/// 201 `{"run_id", "status", "created": true}` when this request created it, 200 with that
/// run and `"created": false` when one already held it (whatever its input).
///
/// Flow control ([`crate::queue`]): `?queue=` puts the run in a queue (instead of its
/// workflow's own), `?queue_key=` gives its key there, `?priority=` its priority, `?dedup=`
/// a de-duplication id. An unknown queue, a key the queue needs but the input lacks, or a
/// `priority` that is not an integer is 400 with the sentence saying what to change;
/// nothing is created. A start with `dedup`, or into a debounced queue, answers 202 with
/// `"created": true` when it created a run, and 200 with the run that answered it and
/// `"created": false` when it created none.
#[utoipa::path(
    post,
    path = "/workflows/{slug}",
    operation_id = "start_run",
    tag = "workflows",
    params(
        ("slug" = String, Path, description = "The workflow's slug"),
        ("Idempotency-Key" = Option<String>, Header, description = "A key unique to this intended run (1 to 255 printable ASCII characters, e.g. a UUID): a retry with the same key and input returns the same run (200, `duplicate: true`) instead of starting another"),
        ("traceparent" = Option<String>, Header, description = "A W3C trace context (`00-<trace id>-<parent id>-<flags>`): recorded with the run, whose executions then join that trace (as children of that parent span). A malformed value is ignored, as the W3C specification asks"),
        StartQuery,
    ),
    request_body(content = Value, description = "The workflow's input (an empty body is `null`)", content_type = "application/json"),
    responses(
        (status = 202, description = "Enqueued (or still going after `wait`)", body = RunState),
        (status = 200, description = "With `wait`: the run ended; `output` or `error`. With an `Idempotency-Key` seen before: that run, `duplicate: true`. With a `key` a run already holds, or a `dedup` id (or a debounce) answered by a pending run: that run, `created: false`", body = RunState),
        (status = 201, description = "With `key`: the run was created (`created: true`)", body = RunState),
        (status = 400, description = "The body is not JSON, or `wait` or `delay` is not a duration, or `start_at` is not an RFC 3339 time, or both `delay` and `start_at` are given, or the idempotency key is malformed, or the queue is unknown, or the queue's key pointer is missing from the input, or `priority` is not an integer (nothing is created)", body = ErrorBody),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 403, description = "A cross-site request (`Origin` or `Sec-Fetch-Site`); or the caller's token lacks the `start` scope, or `user` names another user than the caller and its token lacks `admin` (`forbidden`, naming the scope needed)", body = ErrorBody),
        (status = 404, description = "No workflow has this slug", body = ErrorBody),
        (status = 408, description = "The body did not arrive in time", body = ErrorBody),
        (status = 409, description = "The idempotency key started a run with another input (`idempotency_conflict`)", body = ErrorBody),
        (status = 413, description = "The body is over the HTTP body limit, or the payload over the engine's `max_payload_bytes` (`code: payload_too_large`, naming the size and the limit; nothing is written)", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 422, description = "The input violates the schema; `violations` names each JSON pointer", body = ErrorBody),
    )
)]
pub(crate) async fn start(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    Query(query): Query<StartQuery>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    JsonBody(input): JsonBody,
) -> Result<Response, ApiError> {
    let wait = query.wait.as_deref().map(parse_wait).transpose()?;
    let mut options = StartOptions::new().actor(caller.actor());
    if let Some(user) = query.user.as_deref().filter(|u| !u.is_empty()) {
        crate::identity::Scope::parse(&format!("user:{user}"))
            .map_err(|e| ApiError::bad_request(format!("`user`: {e}")))?;
        if user != caller.principal {
            caller.require(
                ApiScope::Admin,
                &format!("starting a run for another user (`user={user}`)"),
            )?;
        }
        options = options.user(user);
    }
    if let Some(project) = query.project.as_deref().filter(|p| !p.is_empty()) {
        crate::identity::Scope::parse(&format!("project:{project}"))
            .map_err(|e| ApiError::bad_request(format!("`project`: {e}")))?;
        options = options.project(project);
    }
    if let Some(at) = start_time(&state, &query)? {
        options = options.start_at(at);
    }
    if let Some(key) = idempotency_key(&headers)? {
        options = options.idempotency_key(key);
    }
    if let Some(key) = &query.key {
        options = options.key(key.clone());
    }
    options.queue = query.queue_request()?;
    if let Some(id) = &query.subscription {
        options = options.subscriber(state.engine.subscriber_for(&slug, id).await?);
    }
    let gated = gated(&state.engine, &slug, &options.queue);
    // The caller's trace context: every execution of the run joins its trace.
    let traceparent = headers
        .get(crate::telemetry::TRACEPARENT)
        .and_then(|v| v.to_str().ok());
    options.traceparent = crate::telemetry::incoming_traceparent(traceparent);
    let (id, created) = state
        .engine
        .start_with(&slug, input, Trigger::Api, options)
        .await?;
    if query.key.is_some() {
        return super::messages::keyed_start(&state, &id, created, wait).await;
    }
    if !created && !gated {
        return duplicate(&state, &id, wait).await;
    }
    if !created {
        // A de-duplication id or a debounce answered with the run that holds it.
        return super::messages::keyed_start(&state, &id, false, wait).await;
    }
    let created = gated.then_some(true);
    let Some(wait) = wait else {
        let mut body = RunState::new(&id, RunStatus::Queued);
        body.created = created;
        return Ok(accepted(body));
    };
    let record = state.engine.wait_for_end(&id, wait).await?;
    if record.status.is_terminal() {
        let mut body = RunState::of(record);
        body.created = created;
        return Ok((StatusCode::OK, Json(body)).into_response());
    }
    let mut body = RunState::new(&id, record.status);
    body.created = created;
    Ok(accepted(body))
}

/// The start time `?delay=` or `?start_at=` asks for, if any; 400 when malformed or both.
fn start_time(state: &AppState, query: &StartQuery) -> Result<Option<DateTime<Utc>>, ApiError> {
    match (&query.delay, &query.start_at) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "give `delay` or `start_at`, not both".to_owned(),
        )),
        (Some(delay), None) => {
            let delay = parse_delay("`delay`", delay).map_err(ApiError::bad_request)?;
            delay_from("`delay`", state.engine.now(), delay)
                .map(Some)
                .map_err(ApiError::bad_request)
        }
        (None, Some(at)) => parse_start_at("`start_at`", &query_offset(at))
            .map(Some)
            .map_err(ApiError::bad_request),
    }
}

/// A query's `+01:00` offset arrives as ` 01:00` (`+` decodes to a space): puts the `+`
/// back.
fn query_offset(text: &str) -> String {
    let text = text.trim();
    match text.rsplit_once(' ') {
        Some((time, offset))
            if offset.len() == 5 && offset.as_bytes()[2] == b':' && time.contains('T') =>
        {
            format!("{time}+{offset}")
        }
        _ => text.to_owned(),
    }
}

/// The `Idempotency-Key` header, if sent; 400 when it is not a valid key.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value.to_str().map_err(|_| {
        ApiError::bad_request(
            "the Idempotency-Key header is not printable ASCII; send e.g. a UUID".to_owned(),
        )
    })?;
    crate::engine::check_idempotency_key(key).map_err(ApiError::bad_request)?;
    Ok(Some(key.to_owned()))
}

/// The answer to a start whose idempotency key already started run `id`: 200 with where
/// the run stands (after `wait`, if given) and `duplicate: true`.
async fn duplicate(
    state: &AppState,
    id: &crate::RunId,
    wait: Option<Duration>,
) -> Result<Response, ApiError> {
    let record = match wait {
        Some(wait) => state.engine.wait_for_end(id, wait).await?,
        None => state.engine.get_run(id).await?,
    };
    let mut body = RunState::of(record);
    body.duplicate = Some(true);
    Ok((StatusCode::OK, Json(body)).into_response())
}

fn accepted(state: RunState) -> Response {
    (StatusCode::ACCEPTED, Json(state)).into_response()
}

/// Parses `?wait=`: a humantime duration of at most [`MAX_WAIT`].
pub(crate) fn parse_wait(text: &str) -> Result<Duration, ApiError> {
    let wait = humantime::parse_duration(text).map_err(|e| {
        ApiError::bad_request(format!(
            "`wait={text}` is not a duration ({e}); write e.g. `500ms`, `30s` or `2m`"
        ))
    })?;
    if wait > MAX_WAIT {
        return Err(ApiError::bad_request(format!(
            "`wait={text}` is longer than the longest wait, {}; wait less and poll GET /runs/{{id}}",
            humantime::format_duration(MAX_WAIT)
        )));
    }
    Ok(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_humantime_and_bounded() {
        assert_eq!(parse_wait("30s").ok(), Some(Duration::from_secs(30)));
        assert_eq!(parse_wait("250ms").ok(), Some(Duration::from_millis(250)));
        assert!(parse_wait("soon").is_err());
        assert!(parse_wait("1h").is_err());
    }

    #[test]
    fn query_offsets_get_their_plus_back() {
        assert_eq!(
            query_offset("2026-12-24T19:00:00 01:00"),
            "2026-12-24T19:00:00+01:00"
        );
        assert_eq!(query_offset("2026-12-24T18:00:00Z"), "2026-12-24T18:00:00Z");
        assert_eq!(query_offset("tomorrow at 10:00"), "tomorrow at 10:00");
    }
}
