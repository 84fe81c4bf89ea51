//! `GET /runs`, `GET /runs/{id}`, `GET /runs/{id}/events`, `POST /runs/{id}/cancel`,
//! `POST /runs/{id}/retry`, `POST /runs/{id}/fork`, `POST /runs/{id}/restart`.

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::Caller;
use super::body::JsonBody;
use super::error::{ApiError, ErrorBody};
use super::views::RunState;
use crate::engine::{CancelOutcome, ForkOptions, StepSummary, summarize_steps};
use crate::event::{Event, RunFilter, RunId, RunRecord, RunStatus};
use crate::tags::{TagFilter, TagValue};

/// How many runs `GET /runs` returns without `limit`.
pub(crate) const DEFAULT_LIMIT: usize = 100;

/// A run in a list.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RunSummary {
    /// The run's id.
    id: String,
    /// Its workflow's slug.
    workflow: String,
    /// `queued`, `running`, `sleeping`, `waiting`, `completed`, `failed` or `canceled`.
    status: String,
    /// The current run attempt, from 1 (0 before the first attempt started).
    attempt: u32,
    /// What started it: `api`, `cli`, `cron`, `webhook`, `poll`, `retry`, `code` or `fork`.
    trigger: String,
    /// When it was created (RFC 3339, UTC).
    #[schema(value_type = String, format = DateTime)]
    created_at: DateTime<Utc>,
    /// Its last status change.
    #[schema(value_type = String, format = DateTime)]
    updated_at: DateTime<Utc>,
    /// When a sleeping run (or a scheduled retry) continues.
    #[schema(value_type = Option<String>, format = DateTime)]
    wake_at: Option<DateTime<Utc>>,
}

impl From<&RunRecord> for RunSummary {
    fn from(record: &RunRecord) -> Self {
        RunSummary {
            id: record.id.to_string(),
            workflow: record.workflow.clone(),
            status: record.status.to_string(),
            attempt: record.attempt,
            trigger: record.trigger.to_string(),
            created_at: record.created_at,
            updated_at: record.updated_at,
            wake_at: record.wake_at,
        }
    }
}

/// A hook a waiting run is blocked on.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HookView {
    /// The hook's correlation id in the run.
    id: String,
    /// Where to deliver its payload: `POST` a JSON body, or `GET` with a query string.
    resume_url: String,
    /// When the hook times out, if it has a timeout.
    #[schema(value_type = Option<String>, format = DateTime)]
    timeout_at: Option<DateTime<Utc>>,
}

/// A run with its input, result, steps and open hooks.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RunDetail {
    /// The run's id.
    id: String,
    /// Its workflow's slug.
    workflow: String,
    /// `queued`, `running`, `sleeping`, `waiting`, `completed`, `failed` or `canceled`.
    status: String,
    /// The current run attempt, from 1 (0 before the first attempt started).
    attempt: u32,
    /// What started it.
    trigger: String,
    /// When it was created.
    #[schema(value_type = String, format = DateTime)]
    created_at: DateTime<Utc>,
    /// Its last status change.
    #[schema(value_type = String, format = DateTime)]
    updated_at: DateTime<Utc>,
    /// When a sleeping run (or a scheduled retry) continues.
    #[schema(value_type = Option<String>, format = DateTime)]
    wake_at: Option<DateTime<Utc>>,
    /// The validated input.
    input: Value,
    /// The output, once `completed`.
    output: Option<Value>,
    /// The error, once `failed` or `canceled`.
    error: Option<Value>,
    /// Every step, sleep and hook, in order: `{"id", "callee", "status", "attempts",
    /// "duration_ms", "started_at"}`.
    #[schema(value_type = Vec<Object>)]
    steps: Vec<StepSummary>,
    /// The hooks the run waits on (empty unless `waiting`).
    hooks: Vec<HookView>,
    /// Tokens the run's LLM requests used: `{"prompt_tokens", "completion_tokens",
    /// "total_tokens"}` (zeros for a run without AI steps).
    #[schema(value_type = Object)]
    usage: crate::llm::Usage,
    /// What those requests cost in US dollars, by the engine's price table; absent when the
    /// run made none. Requests to models without a price are not in it (see `unpriced`).
    #[serde(skip_serializing_if = "Option::is_none")]
    cost_usd: Option<f64>,
    /// Whether some requests were to models the price table has no price for.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    unpriced: bool,
    /// For a fork or restart, where it comes from (read from its `run_created` event):
    /// `{"run_id", "step"?, "prefix_len", "input_changed", "by"}`; absent for other runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    forked_from: Option<crate::event::ForkedFrom>,
    /// Who started the run and whom it acts for (read from its `run_created` event):
    /// `{"actor": {"type", …}, "user"?, "project"?, "subscriber"?}`. `actor.type` is
    /// `principal` (`name`, `token`?), `cli` (`user`), `schedule` (`name`, `tick`),
    /// `webhook` (`source`, `delivery_id`?), `poll` (`source`, `item_id`), `event`
    /// (`name`, `id`), `run` (`run_id`, `relation`: parent, continued, failed, forked),
    /// `code`, or `unrecorded` for runs recorded before actors were.
    #[schema(value_type = Object)]
    identity: crate::identity::RunIdentity,
    /// For a run started by an emitted event (`on_event`): `{"name", "id"}` (read from its
    /// `run_created` event); absent for other runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    event: Option<crate::event::EventRef>,
    /// The run's tags (`ctx.tag`), by key: strings, numbers, booleans, times as RFC 3339.
    #[schema(value_type = Object)]
    tags: std::collections::BTreeMap<String, TagValue>,
    /// The business key the run was started with (`?key=`, `--key`), read from its
    /// `run_created` event; absent for runs started without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    /// For a child run (`wf.start(..)` in a workflow): its parent, `{"run_id", "step"}`;
    /// absent for other runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    parent: Option<crate::event::ParentRun>,
    /// The child runs it started, from its log: `[{"run_id", "step", "workflow",
    /// "detached", "on_parent_close"}]`; absent when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    children: Vec<crate::ChildLink>,
    /// The run this one continues (`ctx.continue_as_new`); absent for other runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    continued_from: Option<crate::RunId>,
    /// The run this one continued as; absent for other runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    continued_as: Option<crate::RunId>,
    /// The run's flow-control queue (`?queue=`, `#[workflow(queue)]`): `{"name", "key"?,
    /// "priority", "admitted_at"?}` (`admitted_at`: when a worker first claimed it; from
    /// then on it holds its place in the queue until it ends); absent for a run in no queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    queue: Option<crate::queue::RunQueue>,
    /// Why the run is not executing yet, while it waits for admission to its queue or no
    /// live worker serves it: `{"queue"?, "key"?, "blocked"?, "unserved"?, "message"}`
    /// (`blocked`: the limit holding it back, `{"reason": "concurrency" |
    /// "key_concurrency" | "rate_limit", …}`; `unserved`: why no live worker would claim
    /// it; `message`: the whole as one sentence). Absent when nothing holds it back.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    waiting_for: Option<super::queues::WaitingFor>,
}

/// Query of `GET /runs`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only runs in this status.
    #[param(example = "waiting")]
    status: Option<String>,
    /// Only runs of this workflow slug.
    workflow: Option<String>,
    /// Only runs in this flow-control queue (waiting for admission, admitted or ended);
    /// with `status=queued`, the runs still waiting. A name that is not a valid queue
    /// name is a 400.
    #[param(example = "llm")]
    queue: Option<String>,
    /// At most this many runs, newest first (default 100).
    limit: Option<String>,
    /// Only runs created at or after this time (RFC 3339).
    #[param(example = "2026-12-06T00:00:00Z")]
    created_after: Option<String>,
    /// Only runs created before this time (RFC 3339).
    created_before: Option<String>,
    /// Only runs whose record last changed at or after this time (RFC 3339).
    updated_after: Option<String>,
    /// Only runs whose record last changed before this time (RFC 3339).
    updated_before: Option<String>,
    /// Continue a listing after the previous page: the `X-Reprise-Next-Cursor` header of
    /// that page's response, unchanged.
    cursor: Option<String>,
}

/// A time bound of `GET /runs`: RFC 3339, or a 400 naming the parameter.
fn time_param(name: &str, value: Option<String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    let Some(text) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    DateTime::parse_from_rfc3339(&text)
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(|e| {
            ApiError::bad_request(format!(
                "`{name}={text}` is not an RFC 3339 time ({e}); write e.g. \
                 `{name}=2026-12-06T10:00:00Z`"
            ))
        })
}

impl ListQuery {
    /// The filter of the query, with the tag filters of its `tag` parameters (`pairs`: the
    /// whole query string, in order).
    pub(crate) fn filter(self, pairs: &[(String, String)]) -> Result<RunFilter, ApiError> {
        let tags = pairs
            .iter()
            .filter(|(name, _)| name == "tag")
            .map(|(_, text)| text.parse::<TagFilter>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(ApiError::bad_request)?;
        let cursor = self.cursor.filter(|c| !c.is_empty());
        if let Some(cursor) = &cursor {
            crate::tags::RunCursor::decode(cursor).map_err(ApiError::bad_request)?;
        }
        let status = self
            .status
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<RunStatus>())
            .transpose()
            .map_err(ApiError::bad_request)?;
        let limit = match self.limit.as_deref().filter(|s| !s.is_empty()) {
            None => DEFAULT_LIMIT,
            Some(text) => text.parse::<usize>().map_err(|_| {
                ApiError::bad_request(format!(
                    "`limit={text}` is not a count; write a whole number such as `limit=20`"
                ))
            })?,
        };
        let queue = self.queue.filter(|q| !q.is_empty());
        if let Some(queue) = &queue {
            crate::queue::check_queue_name(queue)
                .map_err(|e| ApiError::bad_request(format!("`queue`: {e}")))?;
        }
        Ok(RunFilter {
            status,
            workflow: self.workflow.filter(|w| !w.is_empty()),
            queue,
            limit: Some(limit),
            tags,
            created_after: time_param("created_after", self.created_after)?,
            created_before: time_param("created_before", self.created_before)?,
            updated_after: time_param("updated_after", self.updated_after)?,
            updated_before: time_param("updated_before", self.updated_before)?,
            cursor,
        })
    }
}

/// The response header naming the runs `GET /runs` left out because their rows do not
/// decode: their ids, comma-separated (characters other than visible ASCII, and commas,
/// shown as `_`). Absent when none was left out. The body stays the array of the others.
pub(crate) const SKIPPED_HEADER: &str = "x-reprise-skipped";

/// The response header of `GET /runs` holding the cursor of the next page when the page
/// is full (pass it back as `cursor=`); absent on the last page. A header, so that the
/// body stays the array earlier clients read.
pub(crate) const NEXT_CURSOR_HEADER: &str = "x-reprise-next-cursor";

/// Lists runs, newest first (ties by id), filtered by status, workflow, tags and
/// creation/update time, a page at a time: when the page is full, the
/// `X-Reprise-Next-Cursor` header holds the `cursor` of the next one. A run whose row does
/// not decode is left out (logged with the reason) and named in the `X-Reprise-Skipped`
/// header, so one bad row never fails the listing.
#[utoipa::path(
    get,
    path = "/runs",
    operation_id = "list_runs",
    tag = "runs",
    params(
        ListQuery,
        ("tag" = Option<Vec<String>>, Query, explode = true,
            description = "Only runs with this tag (`ctx.tag`), repeatable (all must match): `key=value`, or `key<value`, `key<=value`, `key>value`, `key>=value` for numbers and times (URL-encode `<`, `>`, `=`). The value's type is read from its text: `true`/`false`, a number, an RFC 3339 time, else a string; `\"100\"` in double quotes is a string.",
            example = json!(["customer=acme", "amount>=100"])),
    ),
    responses(
        (status = 200, description = "Matching runs, newest first", body = Vec<RunSummary>,
            headers(
                ("x-reprise-skipped" = String, description = "Ids of matching runs left out because their rows do not decode, comma-separated; absent when none"),
                ("x-reprise-next-cursor" = String, description = "When the page is full: the `cursor` of the next page; absent on the last page"),
            )),
        (status = 400, description = "Unknown status (the message names the valid ones), bad limit, malformed tag filter, time or cursor", body = ErrorBody),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let listing = state
        .engine
        .list_runs_with_skipped(&query.filter(&pairs)?)
        .await?;
    let body: Vec<RunSummary> = listing.runs.iter().map(RunSummary::from).collect();
    let mut response = Json(body).into_response();
    if let Some(cursor) = &listing.next_cursor
        && let Ok(value) = axum::http::HeaderValue::from_str(cursor)
    {
        response.headers_mut().insert(NEXT_CURSOR_HEADER, value);
    }
    if !listing.skipped.is_empty() {
        // Reported to the caller in the header; at debug only here, since a client
        // polling the listing would otherwise log the same bad row on every request
        // (`runs list` names it on stderr).
        for skipped in &listing.skipped {
            tracing::debug!(
                run = %skipped.run_id,
                reason = %skipped.reason,
                "GET /runs left a run out: its row does not decode"
            );
        }
        let ids: Vec<String> = listing
            .skipped
            .iter()
            .map(|s| {
                s.run_id
                    .as_str()
                    .chars()
                    .map(|c| {
                        if c.is_ascii_graphic() && c != ',' {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect()
            })
            .collect();
        if let Ok(value) = axum::http::HeaderValue::from_str(&ids.join(", ")) {
            response.headers_mut().insert(SKIPPED_HEADER, value);
        }
    }
    Ok(response)
}

/// A run: its record, its steps and the hooks it waits on.
#[utoipa::path(
    get,
    path = "/runs/{id}",
    operation_id = "get_run",
    tag = "runs",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The run", body = RunDetail),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 404, description = "No run has this id", body = ErrorBody),
    )
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RunDetail>, ApiError> {
    Ok(Json(run_detail(&state.engine, &RunId(id)).await?))
}

/// Run `id` as `GET /runs/{id}` shows it (also the `end` message of its stream).
pub(crate) async fn run_detail(
    engine: &crate::Engine,
    id: &RunId,
) -> Result<RunDetail, crate::EngineError> {
    let record = engine.get_run(id).await?;
    let events = engine.events(id).await?;
    let cost = crate::engine::total_cost(&crate::engine::model_requests(&events, engine.prices()));
    let (cost_usd, unpriced) = (cost.map(|c| c.0), cost.is_some_and(|c| c.1));
    let hooks = engine
        .open_hooks_in(&record, &events)
        .into_iter()
        .map(|hook| HookView {
            id: hook.id,
            resume_url: hook.resume_url,
            timeout_at: hook.timeout_at,
        })
        .collect();
    let links = crate::engine::run_links_of(&record, &events);
    let waiting_for = super::queues::WaitingFor::of(engine, &record).await;
    Ok(RunDetail {
        id: record.id.to_string(),
        workflow: record.workflow,
        status: record.status.to_string(),
        attempt: record.attempt,
        trigger: record.trigger.to_string(),
        created_at: record.created_at,
        updated_at: record.updated_at,
        wake_at: record.wake_at,
        input: record.input,
        output: record.output,
        error: record.error,
        steps: summarize_steps(&events),
        hooks,
        usage: crate::engine::token_usage(&events),
        cost_usd,
        unpriced,
        forked_from: crate::engine::forked_from(&events),
        event: crate::engine::started_by_event(&events),
        identity: crate::engine::identity_of(&events),
        tags: crate::tags::tags_of(&events),
        key: crate::engine::key_of(&events),
        parent: links.parent,
        children: links.children,
        continued_from: links.continued_from,
        continued_as: links.continued_as,
        queue: record.queue,
        waiting_for,
    })
}

/// A run's event log, in order: `[{"run_id", "seq", "kind", "correlation_id"?, "attempt",
/// "at", "payload"}]`.
#[utoipa::path(
    get,
    path = "/runs/{id}/events",
    operation_id = "get_run_events",
    tag = "runs",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The events, by sequence number", body = Vec<Object>),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 404, description = "No run has this id", body = ErrorBody),
    )
)]
pub(crate) async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<Event>>, ApiError> {
    Ok(Json(state.engine.events(&RunId(id)).await?))
}

/// Cancels a run: at once when it is queued, sleeping or waiting (200); at its next step
/// boundary when it is executing (202, `cancel_requested`).
#[utoipa::path(
    post,
    path = "/runs/{id}/cancel",
    operation_id = "cancel_run",
    tag = "runs",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The run is canceled", body = RunState),
        (status = 202, description = "The run is executing; it stops at its next step boundary", body = RunState),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 403, description = "A cross-site request (`Origin` or `Sec-Fetch-Site`)", body = ErrorBody),
        (status = 404, description = "No run has this id", body = ErrorBody),
        (status = 409, description = "The run has already ended", body = ErrorBody),
        (status = 415, description = "A body that is not `application/json` (send none, or JSON)", body = ErrorBody),
    )
)]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = RunId(id);
    let response = match state.engine.cancel(&id).await? {
        CancelOutcome::Canceled => (
            StatusCode::OK,
            Json(RunState::new(&id, RunStatus::Canceled)),
        ),
        CancelOutcome::Requested => {
            let mut body = RunState::new(&id, RunStatus::Running);
            body.cancel_requested = Some(true);
            (StatusCode::ACCEPTED, Json(body))
        }
    };
    Ok(response.into_response())
}

/// The answer of `POST /runs/{id}/retry`.
#[derive(Serialize, ToSchema)]
pub(crate) struct Retried {
    /// The run.
    run_id: String,
    /// `queued`: a worker executes it again.
    #[schema(value_type = String)]
    status: RunStatus,
    /// The attempt the retry starts.
    attempt: u32,
    /// The step that runs again (absent when the workflow body itself failed the run).
    #[serde(skip_serializing_if = "Option::is_none")]
    step: Option<String>,
}

/// Retries a failed run on the current code: it is queued again with a new attempt;
/// completed steps replay from the log and the step whose failure failed the run runs
/// again. Recorded as `run_retried` with `"by": "api"`.
#[utoipa::path(
    post,
    path = "/runs/{id}/retry",
    operation_id = "retry_run",
    tag = "runs",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The run is queued again", body = Retried),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 403, description = "A cross-site request (`Origin` or `Sec-Fetch-Site`)", body = ErrorBody),
        (status = 404, description = "No run has this id", body = ErrorBody),
        (status = 409, description = "The run is not `failed` (or another retry won the race)", body = ErrorBody),
        (status = 415, description = "A body that is not `application/json` (send none, or JSON)", body = ErrorBody),
    )
)]
pub(crate) async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Retried>, ApiError> {
    let retried = state.engine.retry_run(&RunId(id), "api").await?;
    Ok(Json(Retried {
        run_id: retried.run_id.to_string(),
        status: RunStatus::Queued,
        attempt: retried.attempt,
        step: retried.step,
    }))
}

/// The answer of `POST /runs/{id}/fork` and `POST /runs/{id}/restart`.
#[derive(Serialize, ToSchema)]
pub(crate) struct Forked {
    /// The new run.
    run_id: String,
    /// `queued`: a worker executes it.
    #[schema(value_type = String)]
    status: RunStatus,
    /// Where it comes from: `{"run_id", "step"?, "prefix_len", "input_changed", "by"}`.
    #[schema(value_type = Object)]
    forked_from: crate::event::ForkedFrom,
    /// How many of the original's events were copied (they replay; 0 for a restart).
    copied: usize,
}

impl From<crate::engine::ForkedRun> for Forked {
    fn from(forked: crate::engine::ForkedRun) -> Self {
        Forked {
            run_id: forked.run_id.to_string(),
            status: RunStatus::Queued,
            forked_from: forked.forked_from,
            copied: forked.copied,
        }
    }
}

/// The keys `POST /runs/{id}/fork` accepts, for error messages.
const FORK_KEYS: &str = "`from` (a step id as `GET /runs/{id}` lists it) and optionally `input`";

/// Forks a run from one of its steps into a new, queued run: the steps recorded before
/// `from` replay from the original's log, `from` and what follows run live. With `input`,
/// the new run takes it (validated like a start), and the first copied step whose input
/// changed runs live with every step recorded after it. The original is not changed.
/// Recorded in the new run's `run_created` as `forked_from` with `"by": "api"` (`api:<principal>`
/// for a named token), and the caller's principal as its actor.
#[utoipa::path(
    post,
    path = "/runs/{id}/fork",
    operation_id = "fork_run",
    tag = "runs",
    params(("id" = String, Path, description = "The original run's id")),
    request_body(content = Object, description = "`{\"from\": \"<step id>\", \"input\"?: <new workflow input>}`"),
    responses(
        (status = 201, description = "The new run, queued", body = Forked),
        (status = 400, description = "The body is not JSON, lacks `from`, or has other keys", body = ErrorBody),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 403, description = "A cross-site request (`Origin` or `Sec-Fetch-Site`)", body = ErrorBody),
        (status = 404, description = "No run has this id (or its workflow is not registered)", body = ErrorBody),
        (status = 415, description = "A body that is not `application/json`", body = ErrorBody),
        (status = 422, description = "`unknown_step`: the run has no step `from` (the message lists some it has); `schema`: the new input does not match the workflow's input schema (`violations` names each JSON pointer). Nothing is created", body = ErrorBody),
    )
)]
pub(crate) async fn fork(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Forked>), ApiError> {
    let Value::Object(mut body) = body else {
        return Err(ApiError::bad_request(format!(
            "the body must be a JSON object with {FORK_KEYS}"
        )));
    };
    let from = match body.remove("from") {
        Some(Value::String(from)) if !from.is_empty() => from,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "`from` must be a step id (a string such as \"charge#0\"), not {other}"
            )));
        }
        None => {
            return Err(ApiError::bad_request(format!(
                "the body has no `from`; send {FORK_KEYS}"
            )));
        }
    };
    let input = body.remove("input");
    if let Some(key) = body.keys().next() {
        return Err(ApiError::bad_request(format!(
            "unknown key `{key}` in the body; send {FORK_KEYS}"
        )));
    }
    let mut options = ForkOptions::from_step(from)
        .by(caller.by())
        .actor(caller.actor());
    if let Some(input) = input {
        options = options.input(input);
    }
    let forked = state.engine.fork_run(&RunId(id), options).await?;
    Ok((StatusCode::CREATED, Json(forked.into())))
}

/// Restarts a run: a new, queued run of the same workflow with the same input, in which
/// every step runs again. The original is not changed. Recorded in the new run's
/// `run_created` as `forked_from` (no `step`) with `"by": "api"` (`api:<principal>` for a
/// named token), and the caller's principal as its actor.
#[utoipa::path(
    post,
    path = "/runs/{id}/restart",
    operation_id = "restart_run",
    tag = "runs",
    params(("id" = String, Path, description = "The original run's id")),
    responses(
        (status = 201, description = "The new run, queued", body = Forked),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 403, description = "A cross-site request (`Origin` or `Sec-Fetch-Site`)", body = ErrorBody),
        (status = 404, description = "No run has this id (or its workflow is not registered)", body = ErrorBody),
        (status = 415, description = "A body that is not `application/json` (send none, or JSON)", body = ErrorBody),
    )
)]
pub(crate) async fn restart(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Forked>), ApiError> {
    let options = ForkOptions::restart().by(caller.by()).actor(caller.actor());
    let forked = state.engine.fork_run(&RunId(id), options).await?;
    Ok((StatusCode::CREATED, Json(forked.into())))
}
