//! `GET /runs/{id}/stream` and `GET /runs/stream`: runs as they move, as Server-Sent
//! Events (framing by axum's `Sse`).
//!
//! **A run's stream** sends one `event: event` message per recorded event, in `seq` order,
//! with `id: <seq>` and `data:` the event's JSON exactly as one element of
//! `GET /runs/{id}/events`; once the run has ended (`completed`, `failed`, `canceled`) and
//! every event was sent, one `event: end` whose `data:` is the run as `GET /runs/{id}`
//! returns it; then the response ends. A `paused` run has not ended: its stream stays open.
//! A reconnect with `Last-Event-ID: <seq>` (what browsers' `EventSource` sends) or
//! `?after=<seq>` continues with the event after `seq` (the header wins when both are
//! given), so nothing is lost or repeated. While an LLM step of the run streams its reply,
//! each delta is an `event: token` message, `data: {"step", "text"}` (`step`: the
//! correlation id of the model request, such as `llm#0/attempt#0`), not recorded and
//! without an id.
//!
//! **Where the events come from.** The store is the only source of `event` messages: a
//! stream reads what it has not sent yet whenever this process appends to the run (the
//! live notifications of [`crate::live`]) and, when nothing was heard for
//! [`POLL_INTERVAL`], looks at the run's record and reads again if it grew, because another
//! process (a `worker` beside `serve`) may be the writer. A stream that falls behind the
//! notifications reads the store too: only token deltas can be missed (they exist only in
//! the process that runs the step), and the stream says how many notifications it skipped
//! in an SSE comment. Token deltas reach only streams served by the process that executes
//! the run (`dev`, or `serve` with its own worker).
//!
//! **All runs' stream** sends `event: run`, `data: {"run_id", "workflow", "status", "at"}`
//! per status change (queued, running, sleeping, waiting, paused, completed, failed,
//! canceled), optionally only of one `workflow` and/or into one `status`. Changes made in
//! this process arrive as they happen, each one; changes made by other processes are found
//! by listing the runs updated lately every [`POLL_INTERVAL`]: such a run reports the
//! status it has at that moment, so a run that changed twice between two looks reports the
//! later status only (and at most [`POLL_LIMIT`] runs changed in one look are seen).
//!
//! Both send a keep-alive comment every 15 s, end when the server shuts down, and count
//! against [`DEFAULT_MAX_STREAMS`] streams open at once per router (503
//! `too_many_streams` beyond it, with `Retry-After`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::{ApiError, ErrorBody};
use crate::event::{RunFilter, RunId, RunStatus};
use crate::live::Live;
use crate::{Engine, EngineError};

/// How long a stream waits without hearing from this process before it looks at the store.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The shortest time between two reads of the store by one stream: appends announced
/// faster than that are read together (the gap is four times the last read when that is
/// longer).
pub(crate) const MIN_READ_GAP: Duration = Duration::from_millis(25);

/// How often an idle stream sends a keep-alive comment.
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// How many streams one router serves at once; more get 503 `too_many_streams`. Each open
/// stream holds a connection (see `HttpOptions::max_connections`) and looks at the store
/// every [`POLL_INTERVAL`] while idle.
pub(crate) const DEFAULT_MAX_STREAMS: usize = 128;

/// The most runs one look of `GET /runs/stream` at the store reports.
pub(crate) const POLL_LIMIT: usize = 1000;

/// How far back `GET /runs/stream` looks before the newest update it saw (other
/// processes' clocks, and appends committed out of order).
const SLACK: chrono::TimeDelta = chrono::TimeDelta::seconds(5);

/// The streams a router may still open, and the signal that ends them all.
#[derive(Clone, Debug)]
pub(crate) struct StreamLimits {
    permits: Arc<Semaphore>,
    shutdown: CancellationToken,
}

impl StreamLimits {
    /// [`DEFAULT_MAX_STREAMS`] streams, ended when `shutdown` is cancelled.
    pub(crate) fn new(shutdown: CancellationToken) -> Self {
        StreamLimits {
            permits: Arc::new(Semaphore::new(DEFAULT_MAX_STREAMS)),
            shutdown,
        }
    }

    fn open(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.permits.clone().try_acquire_owned().map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_streams",
                format!(
                    "{DEFAULT_MAX_STREAMS} streams are already open on this server; close \
                     one, or retry later (each stream holds a connection)"
                ),
            )
        })
    }
}

/// Query of `GET /runs/{id}/stream`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RunStreamQuery {
    /// Send only events after this sequence number (as the `Last-Event-ID` header does,
    /// which wins when both are given).
    after: Option<String>,
}

/// Query of `GET /runs/stream`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AllRunsQuery {
    /// Only runs of this workflow slug.
    workflow: Option<String>,
    /// Only changes into this status.
    #[param(example = "completed")]
    status: Option<String>,
}

/// The `data:` of an `event: token` message.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TokenMessage {
    /// The correlation id of the model request (`llm#0/attempt#0`).
    step: String,
    /// The text of the delta.
    text: String,
}

/// The `data:` of an `event: run` message.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RunMessage {
    /// The run's id.
    run_id: String,
    /// Its workflow's slug.
    workflow: String,
    /// Its new status.
    status: String,
    /// When it changed (RFC 3339, UTC).
    #[schema(value_type = String, format = DateTime)]
    at: DateTime<Utc>,
}

/// A sequence number from `Last-Event-ID` or `?after=`.
fn resume_point(headers: &HeaderMap, after: Option<String>) -> Result<Option<u64>, ApiError> {
    let header = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .map(str::to_owned)
                .map_err(|_| ApiError::bad_request("`Last-Event-ID` is not text"))
        })
        .transpose()?;
    let (name, text) = match (header, after) {
        (Some(text), _) if !text.trim().is_empty() => ("Last-Event-ID", text),
        (_, Some(text)) if !text.trim().is_empty() => ("after", text),
        _ => return Ok(None),
    };
    text.trim().parse::<u64>().map(Some).map_err(|_| {
        ApiError::bad_request(format!(
            "`{name}: {text}` is not an event sequence number; give the `id` of the last \
             message received, such as `12`"
        ))
    })
}

/// A response streaming what `receiver` gets, with keep-alives, until `shutdown` (then the
/// body ends at once, and so does the task feeding `receiver`: its sends fail).
fn sse_response(receiver: mpsc::Receiver<SseEvent>, shutdown: &CancellationToken) -> Response {
    use futures::StreamExt;
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver
            .recv()
            .await
            .map(|event| (Ok::<_, Infallible>(event), receiver))
    })
    .take_until(shutdown.clone().cancelled_owned());
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response();
    // Proxies (nginx) must pass the messages on as they come.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// A message whose `data:` is `value`'s JSON (one line: serde_json escapes newlines).
fn json_message(kind: &str, value: &impl Serialize) -> SseEvent {
    let data = serde_json::to_string(value).unwrap_or_else(|e| {
        serde_json::json!({ "error": format!("could not encode the message: {e}") }).to_string()
    });
    SseEvent::default().event(kind).data(data)
}

/// Follows one run as Server-Sent Events: its recorded events (after `Last-Event-ID` or
/// `?after=`), LLM token deltas while it runs here, and its final state.
#[utoipa::path(
    get,
    path = "/runs/{id}/stream",
    operation_id = "stream_run",
    tag = "runs",
    params(
        ("id" = String, Path, description = "The run's id"),
        RunStreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Continue after this event `seq` (sent by `EventSource` on reconnect)"),
    ),
    responses(
        (status = 200, description = "`text/event-stream`: `event: event` (`id`: the seq, `data`: the event as in `GET /runs/{id}/events`) per recorded event; `event: token` (`data`: `{\"step\", \"text\"}`) per LLM reply delta; then `event: end` (`data`: the run as in `GET /runs/{id}`) once it ended", content_type = "text/event-stream", body = String),
        (status = 400, description = "`after` or `Last-Event-ID` is not a sequence number", body = ErrorBody),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 404, description = "No run has this id", body = ErrorBody),
        (status = 503, description = "Too many streams are open (`too_many_streams`)", body = ErrorBody),
    )
)]
pub(crate) async fn run(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<RunStreamQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = RunId(id);
    let after = resume_point(&headers, query.after)?;
    state.engine.get_run(&id).await?;
    let permit = state.streams.open()?;
    let (sender, receiver) = mpsc::channel(64);
    let follow = FollowRun {
        engine: state.engine.clone(),
        id,
        next: after.map_or(0, |seq| seq.saturating_add(1)),
        sender,
    };
    tokio::spawn(follow.run(state.streams.shutdown.clone(), permit));
    Ok(sse_response(receiver, &state.streams.shutdown))
}

/// A stream's store failures, which it outlives (it reads again at its next look): the
/// first of a series is a warning, the others are logged at debug until a read succeeds.
#[derive(Debug, Default)]
struct Trouble {
    failing: bool,
}

impl Trouble {
    fn failed(&mut self, who: &str, error: &EngineError) {
        if self.failing {
            tracing::debug!(%error, "{who} still cannot read the store");
        } else {
            tracing::warn!(%error, "{who} cannot read the store; it tries again at its next look");
            self.failing = true;
        }
    }

    fn over(&mut self) {
        self.failing = false;
    }
}

/// The task behind one run's stream.
struct FollowRun {
    engine: Engine,
    id: RunId,
    /// The sequence number of the next event to send.
    next: u64,
    sender: mpsc::Sender<SseEvent>,
}

/// Whether a stream goes on.
enum Flow {
    Continue,
    Stop,
}

impl FollowRun {
    async fn run(mut self, shutdown: CancellationToken, _permit: OwnedSemaphorePermit) {
        // Watch before the first read, so nothing appended in between goes unnoticed.
        let mut watch = self.engine.env().live.watch(&self.id);
        let mut trouble = Trouble::default();
        loop {
            let reading = Instant::now();
            match self.catch_up().await {
                Ok(Flow::Continue) => trouble.over(),
                Ok(Flow::Stop) => return,
                Err(EngineError::UnknownRun(_)) => {
                    // Purged while followed: say so, and end.
                    let error = ApiError::from(EngineError::UnknownRun(self.id.to_string()));
                    let _ = self.send(json_message("error", &error.body)).await;
                    return;
                }
                Err(error) => trouble.failed(&format!("the stream of run {}", self.id), &error),
            }
            // Read again at the next look, or soon after an append is announced (appends
            // that come faster are read together: one read per `MIN_READ_GAP`).
            // A long log takes long to read: the gap grows with it, so that a stream of a
            // busy run spends at most a fifth of its time reading.
            let read_at = Instant::now();
            let gap = MIN_READ_GAP.max((read_at - reading) * 4);
            let mut due = read_at + POLL_INTERVAL.max(gap);
            loop {
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => return,
                    () = self.sender.closed() => return,
                    live = watch.recv() => match live {
                        Ok(Live::Token { step, text }) => {
                            let message = json_message("token", &TokenMessage { step, text });
                            if let Flow::Stop = self.send(message).await {
                                return;
                            }
                        }
                        Ok(Live::Appended) => due = due.min(read_at + gap),
                        Err(broadcast::error::RecvError::Lagged(skipped)) => {
                            let note = SseEvent::default().comment(format!(
                                "fell behind: {skipped} live notifications skipped (token \
                                 deltas among them are lost; recorded events are read again \
                                 from the store)"
                            ));
                            if let Flow::Stop = self.send(note).await {
                                return;
                            }
                            due = due.min(read_at + gap);
                        }
                        // The hub keeps the sender while this watch lives.
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    () = tokio::time::sleep_until(due) => break,
                }
            }
        }
    }

    async fn send(&self, message: SseEvent) -> Flow {
        match self.sender.send(message).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Stop,
        }
    }

    /// Sends the events not sent yet; once the run ended and all are sent, `end` too.
    async fn catch_up(&mut self) -> Result<Flow, EngineError> {
        // The record first: when it says the run ended, the events read after it are all
        // of them (appends are atomic).
        let record = self.engine.get_run(&self.id).await?;
        if record.next_seq > self.next {
            for event in self.engine.events(&self.id).await? {
                if event.seq < self.next {
                    continue;
                }
                let seq = event.seq;
                let message = json_message("event", &event).id(seq.to_string());
                if let Flow::Stop = self.send(message).await {
                    return Ok(Flow::Stop);
                }
                self.next = seq + 1;
            }
        }
        if record.status.is_terminal() && self.next >= record.next_seq {
            let detail = super::runs::run_detail(&self.engine, &self.id).await?;
            let _ = self.send(json_message("end", &detail)).await;
            return Ok(Flow::Stop);
        }
        Ok(Flow::Continue)
    }
}

/// Status changes of runs as Server-Sent Events, optionally of one workflow or into one
/// status.
#[utoipa::path(
    get,
    path = "/runs/stream",
    operation_id = "stream_runs",
    tag = "runs",
    params(AllRunsQuery),
    responses(
        (status = 200, description = "`text/event-stream`: `event: run`, `data`: `{\"run_id\", \"workflow\", \"status\", \"at\"}` per status change", content_type = "text/event-stream", body = String),
        (status = 400, description = "Unknown status (the message names the valid ones)", body = ErrorBody),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
        (status = 503, description = "Too many streams are open (`too_many_streams`)", body = ErrorBody),
    )
)]
pub(crate) async fn all(
    State(state): State<AppState>,
    Query(query): Query<AllRunsQuery>,
) -> Result<Response, ApiError> {
    let status = query
        .status
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<RunStatus>())
        .transpose()
        .map_err(ApiError::bad_request)?;
    let workflow = query.workflow.filter(|w| !w.is_empty());
    let permit = state.streams.open()?;
    let (sender, receiver) = mpsc::channel(256);
    let follow = FollowRuns {
        engine: state.engine.clone(),
        workflow,
        status,
        sender,
        last: HashMap::new(),
        since: state.engine.now(),
    };
    tokio::spawn(follow.run(state.streams.shutdown.clone(), permit));
    Ok(sse_response(receiver, &state.streams.shutdown))
}

/// The task behind one `GET /runs/stream`.
struct FollowRuns {
    engine: Engine,
    workflow: Option<String>,
    status: Option<RunStatus>,
    sender: mpsc::Sender<SseEvent>,
    /// The last status known of each run changed lately, and when that was last seen.
    last: HashMap<RunId, (RunStatus, DateTime<Utc>)>,
    /// The newest change seen (the store is asked for changes from `SLACK` before it).
    since: DateTime<Utc>,
}

impl FollowRuns {
    async fn run(mut self, shutdown: CancellationToken, _permit: OwnedSemaphorePermit) {
        let mut transitions = self.engine.subscribe();
        let mut trouble = Trouble::default();
        // What the runs changed before this stream opened are: known, not sent.
        if let Err(error) = self.look(false).await {
            trouble.failed("the runs stream", &error);
        }
        let mut next_look = Instant::now() + POLL_INTERVAL;
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                () = self.sender.closed() => return,
                transition = transitions.recv() => match transition {
                    Ok(t) => {
                        if let Flow::Stop = self.seen(t.run_id, t.workflow, t.status, t.at, true).await {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => next_look = Instant::now(),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                () = tokio::time::sleep_until(next_look) => {
                    match self.look(true).await {
                        Ok(Flow::Continue) => trouble.over(),
                        Ok(Flow::Stop) => return,
                        Err(error) => trouble.failed("the runs stream", &error),
                    }
                    next_look = Instant::now() + POLL_INTERVAL;
                }
            }
        }
    }

    /// Lists the runs changed lately and sends (with `send`) the changes not sent yet.
    async fn look(&mut self, send: bool) -> Result<Flow, EngineError> {
        let filter = RunFilter {
            workflow: self.workflow.clone(),
            updated_after: Some(self.since - SLACK),
            limit: Some(POLL_LIMIT),
            ..RunFilter::default()
        };
        let opened = self.since;
        // Rows that do not decode are left out quietly: `GET /runs` names them, and a
        // warning every look would flood the log.
        let listing = self.engine.list_runs_with_skipped(&filter).await?;
        for skipped in &listing.skipped {
            tracing::debug!(run = %skipped.run_id, reason = %skipped.reason, "the runs stream left out a run whose row does not decode");
        }
        for run in listing.runs {
            if !send && run.updated_at >= opened {
                // Changed since the stream opened: the next look (or this process's
                // announcement) reports it.
                continue;
            }
            let flow = self
                .seen(run.id, run.workflow, run.status, run.updated_at, send)
                .await;
            if let Flow::Stop = flow {
                return Ok(Flow::Stop);
            }
        }
        // Forget runs that fell out of the window (they cannot be listed again).
        let horizon = self.since - SLACK - SLACK;
        self.last.retain(|_, (_, at)| *at >= horizon);
        Ok(Flow::Continue)
    }

    /// Run `id` is `status` as of `at`: sent when that is news and passes the filters.
    async fn seen(
        &mut self,
        id: RunId,
        workflow: String,
        status: RunStatus,
        at: DateTime<Utc>,
        send: bool,
    ) -> Flow {
        if self.workflow.as_ref().is_some_and(|w| *w != workflow) {
            return Flow::Continue;
        }
        self.since = self.since.max(at);
        let news = match self.last.get_mut(&id) {
            Some((known, seen_at)) => {
                *seen_at = (*seen_at).max(at);
                if *known == status {
                    false
                } else {
                    *known = status;
                    true
                }
            }
            None => {
                self.last.insert(id.clone(), (status, at));
                true
            }
        };
        if !news || !send || self.status.is_some_and(|s| s != status) {
            return Flow::Continue;
        }
        let message = RunMessage {
            run_id: id.to_string(),
            workflow,
            status: status.to_string(),
            at,
        };
        match self.sender.send(json_message("run", &message)).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Stop,
        }
    }
}
