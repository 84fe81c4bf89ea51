//! Live streams over real sockets on 127.0.0.1: `GET /runs/{id}/stream` (every recorded
//! event in order, then `end`; resuming with `Last-Event-ID`; LLM token deltas) and
//! `GET /runs/stream` (status changes), read as Server-Sent Events by a real SSE parser.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use futures::{Stream, StreamExt};
use reprise::http::{HttpOptions, serve};
use reprise::llm::OpenAiProvider;
use reprise::prelude::*;
use reprise::{EngineError, Worker, WorkerOptions};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Notes its input.
#[action]
async fn stream_note(input: String) -> Result<String, ActionError> {
    Ok(format!("noted {input}"))
}

/// A step, a hook, a step.
#[workflow(slug = "stream-approval")]
async fn stream_approval(ctx: Ctx, input: String) -> Result<String, WorkflowError> {
    let first = stream_note.run(input).await?;
    let answer: String = ctx.hook().await?;
    let second = stream_note.run(answer).await?;
    Ok(format!("{first}; {second}"))
}

/// One step.
#[workflow(slug = "stream-quick")]
async fn stream_quick(input: String) -> Result<String, WorkflowError> {
    Ok(stream_note.run(input).await?)
}

/// One step, another workflow.
#[workflow(slug = "stream-other")]
async fn stream_other(input: String) -> Result<String, WorkflowError> {
    Ok(stream_note.run(input).await?)
}

/// Waits for a go, then asks a model that talks a lot.
#[workflow(slug = "stream-chatty")]
async fn stream_chatty(ctx: Ctx, input: String) -> Result<String, WorkflowError> {
    let go: String = ctx.hook().await?;
    Ok(prompt_llm(format!("{input} {go}"))
        .model("chatty/model")
        .await?)
}

/// Waits for a go, then asks a model.
#[workflow(slug = "stream-llm")]
async fn stream_llm(ctx: Ctx, input: String) -> Result<String, WorkflowError> {
    let go: String = ctx.hook().await?;
    Ok(prompt_llm(format!("{input} {go}"))
        .model("openai/gpt-test")
        .await?)
}

const SECRET: &[u8] = b"streams-test-hook-secret-of-32-bytes";

fn builder(base: &str) -> reprise::EngineBuilder {
    Engine::builder()
        .public_url(base.to_owned())
        .hook_secret(SECRET)
        .hot_runs(0, Duration::ZERO)
        .register(stream_note)
        .register(stream_approval)
        .register(stream_quick)
        .register(stream_other)
        .register(stream_llm)
        .register(stream_chatty)
}

fn start_worker(engine: &Engine) {
    let worker = Worker::new(
        engine,
        WorkerOptions {
            poll_interval: Duration::from_millis(50),
            ..WorkerOptions::default()
        },
    );
    tokio::spawn(worker.run(std::future::pending::<()>()));
}

/// A server on 127.0.0.1 (with a worker in the same engine unless `worker` is false).
struct Api {
    base: String,
    client: reqwest::Client,
    token: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<Result<(), EngineError>>,
}

async fn api_with(
    token: Option<&str>,
    worker: bool,
    more: impl FnOnce(reprise::EngineBuilder) -> reprise::EngineBuilder,
) -> Api {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let engine = more(builder(&base)).build().unwrap();
    let options = HttpOptions {
        api_token: token.map(str::to_owned),
        // Above the stream limit, whatever `ulimit -n` makes the default.
        max_connections: 512,
        ..HttpOptions::default()
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(engine.clone(), listener, options, async {
        let _ = stopped.await;
    }));
    if worker {
        start_worker(&engine);
    }
    Api {
        base,
        client: reqwest::Client::new(),
        token: token.map(str::to_owned),
        stop: Some(stop),
        server,
    }
}

async fn api() -> Api {
    api_with(None, true, |b| b).await
}

/// One SSE message.
#[derive(Debug, Clone)]
struct Message {
    event: String,
    id: String,
    data: Value,
}

type Events = Pin<Box<dyn Stream<Item = Message> + Send>>;

/// An open stream.
struct Sse {
    events: Events,
}

impl Sse {
    /// The next message (10 s at most); `None` when the server ended the stream.
    async fn next(&mut self) -> Option<Message> {
        tokio::time::timeout(Duration::from_secs(10), self.events.next())
            .await
            .expect("a message within 10 s")
    }

    /// Messages up to and including the first of `event` kind that `stop` accepts.
    async fn until(&mut self, stop: impl Fn(&Message) -> bool) -> Vec<Message> {
        let mut seen = Vec::new();
        loop {
            let message = self
                .next()
                .await
                .unwrap_or_else(|| panic!("the stream ended early after {seen:#?}"));
            let done = stop(&message);
            seen.push(message);
            if done {
                return seen;
            }
        }
    }
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.get(self.url(path));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn json(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    async fn start(&self, slug: &str, input: Value) -> String {
        let mut request = self.client.post(self.url(&format!("/workflows/{slug}")));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let (status, body) = self.json(request.json(&input)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body["run_id"].as_str().unwrap().to_owned()
    }

    /// `GET /runs/{id}` once it is in `status` (10 s at most).
    async fn run_in(&self, id: &str, status: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (code, run) = self.json(self.get(&format!("/runs/{id}"))).await;
            assert_eq!(code, StatusCode::OK, "{run}");
            if run["status"] == status {
                return run;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "run {id} never became {status}: {run}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Delivers `payload` to the one hook waiting run `id` shows.
    async fn deliver(&self, id: &str, payload: Value) {
        let run = self.run_in(id, "waiting").await;
        let url = run["hooks"][0]["resume_url"].as_str().unwrap().to_owned();
        let (status, body) = self.json(self.client.post(url).json(&payload)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// Opens `path` as a stream, asserting 200 `text/event-stream`.
    async fn stream(&self, path: &str, last_event_id: Option<&str>) -> Sse {
        let mut request = self.get(path);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        assert_eq!(response.headers()["x-accel-buffering"], "no");
        assert_eq!(response.headers()["cache-control"], "no-cache");
        let bytes = futures::stream::unfold(response, |mut response| async move {
            match response.chunk().await {
                Ok(Some(bytes)) => Some((Ok(bytes), response)),
                Ok(None) => None,
                Err(error) => Some((Err(error), response)),
            }
        });
        let events = bytes.eventsource().map(|event| {
            let event = event.expect("well-formed SSE");
            Message {
                data: serde_json::from_str(&event.data)
                    .unwrap_or_else(|e| panic!("{e}: {}", event.data)),
                event: event.event,
                id: event.id,
            }
        });
        Sse {
            events: Box::pin(events),
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).unwrap();
        }
        tokio::time::timeout(Duration::from_secs(5), self.server)
            .await
            .expect("serve returns after its shutdown signal, open streams or not")
            .unwrap()
            .unwrap();
    }
}

/// The `event` messages' data must be the run's log, in order, each with its seq as id.
fn assert_is_log(messages: &[Message], log: &Value, from: u64) {
    let events: Vec<&Message> = messages.iter().filter(|m| m.event == "event").collect();
    let log = log.as_array().unwrap();
    assert_eq!(
        events.len() as u64,
        log.len() as u64 - from,
        "{messages:#?}"
    );
    for (message, expected) in events.iter().zip(&log[from as usize..]) {
        assert_eq!(message.id, expected["seq"].to_string());
        assert_eq!(&message.data, expected);
    }
}

#[tokio::test]
async fn a_run_streams_each_event_in_order_then_ends_with_the_run() {
    let api = api().await;
    let id = api.start("stream-approval", json!("order 7")).await;
    let mut stream = api.stream(&format!("/runs/{id}/stream"), None).await;
    let mut messages = stream
        .until(|m| m.event == "event" && m.data["kind"] == "hook_created")
        .await;
    api.deliver(&id, json!("approved")).await;
    messages.extend(stream.until(|m| m.event == "end").await);
    assert!(
        stream.next().await.is_none(),
        "the stream closes after `end`"
    );

    let end = messages.last().unwrap();
    assert_eq!(end.data["status"], "completed", "{end:?}");
    assert_eq!(end.data["output"], "noted order 7; noted approved");
    let (_, run) = api.json(api.get(&format!("/runs/{id}"))).await;
    assert_eq!(
        end.data, run,
        "`end` carries the run as GET /runs/{{id}} shows it"
    );
    let (_, log) = api.json(api.get(&format!("/runs/{id}/events"))).await;
    assert_is_log(&messages, &log, 0);
    api.stop().await;
}

#[tokio::test]
async fn a_reconnect_with_last_event_id_or_after_resumes_without_gaps_or_repeats() {
    let api = api().await;
    let id = api.start("stream-approval", json!("order 8")).await;
    let mut first = api.stream(&format!("/runs/{id}/stream"), None).await;
    let seen = first.until(|m| m.event == "event").await;
    let seen_more = first.until(|m| m.event == "event").await;
    assert_eq!((seen[0].id.as_str(), seen_more[0].id.as_str()), ("0", "1"));
    drop(first);

    let mut second = api.stream(&format!("/runs/{id}/stream"), Some("1")).await;
    let mut messages = second
        .until(|m| m.event == "event" && m.data["kind"] == "hook_created")
        .await;
    let hook: u64 = messages.last().unwrap().id.parse().unwrap();
    // The query parameter resumes too (the header wins when both are given).
    let mut third = api
        .stream(&format!("/runs/{id}/stream?after=0"), Some("1"))
        .await;
    assert_eq!(third.until(|m| m.event == "event").await[0].id, "2");
    drop(third);
    let mut fourth = api
        .stream(&format!("/runs/{id}/stream?after={}", hook - 1), None)
        .await;
    assert_eq!(
        fourth.until(|m| m.event == "event").await[0].id,
        hook.to_string()
    );
    drop(fourth);

    api.deliver(&id, json!("yes")).await;
    messages.extend(second.until(|m| m.event == "end").await);
    let (_, log) = api.json(api.get(&format!("/runs/{id}/events"))).await;
    assert_is_log(&messages, &log, 2);

    let (status, body) = api
        .json(api.get(&format!("/runs/{id}/stream?after=last")))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().contains("`after: last`"));
    api.stop().await;
}

#[tokio::test]
async fn a_finished_run_replays_all_its_events_then_ends() {
    let api = api().await;
    let id = api.start("stream-quick", json!("done")).await;
    api.run_in(&id, "completed").await;
    let mut stream = api.stream(&format!("/runs/{id}/stream"), None).await;
    let messages = stream.until(|m| m.event == "end").await;
    assert!(stream.next().await.is_none());
    let (_, log) = api.json(api.get(&format!("/runs/{id}/events"))).await;
    assert_is_log(&messages, &log, 0);
    assert_eq!(messages.last().unwrap().data["output"], "noted done");

    // Resuming after the last event: only `end`.
    let last = log.as_array().unwrap().len() - 1;
    let mut resumed = api
        .stream(&format!("/runs/{id}/stream"), Some(&last.to_string()))
        .await;
    let only = resumed.until(|m| m.event == "end").await;
    assert_eq!(only.len(), 1, "{only:#?}");
    api.stop().await;
}

#[tokio::test]
async fn an_unknown_run_is_404_and_streams_need_the_token_when_one_is_set() {
    let api = api_with(Some("s3cret"), true, |b| b).await;
    let (status, body) = api.json(api.get("/runs/no-such-run/stream")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["code"], "unknown_run", "{body}");

    let id = api.start("stream-quick", json!("x")).await;
    for path in [format!("/runs/{id}/stream"), "/runs/stream".to_owned()] {
        let response = api.client.get(api.url(&path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "unauthorized");
    }
    let mut stream = api.stream(&format!("/runs/{id}/stream"), None).await;
    stream.until(|m| m.event == "end").await;

    let (status, body) = api.json(api.get("/runs/stream?status=sleepy")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let (status, document) = api.json(api.get("/openapi.json")).await;
    assert_eq!(status, StatusCode::OK);
    for path in ["/runs/{id}/stream", "/runs/stream"] {
        let get = &document["paths"][path]["get"];
        assert!(
            get["responses"]["200"]["content"]["text/event-stream"].is_object(),
            "{path}: {get:#}"
        );
    }
    api.stop().await;
}

#[tokio::test]
async fn the_runs_stream_sends_each_status_change_of_the_filtered_workflow_only() {
    let api = api().await;
    let mut all = api.stream("/runs/stream?workflow=stream-quick", None).await;
    let mut completed = api
        .stream("/runs/stream?workflow=stream-quick&status=completed", None)
        .await;
    let other = api.start("stream-other", json!("o")).await;
    api.run_in(&other, "completed").await;
    let id = api.start("stream-quick", json!("q")).await;

    let messages = all
        .until(|m| m.data["run_id"] == id.as_str() && m.data["status"] == "completed")
        .await;
    for message in &messages {
        assert_eq!(message.event, "run");
        assert_eq!(message.data["workflow"], "stream-quick", "{messages:#?}");
        assert!(message.data["at"].is_string(), "{message:?}");
    }
    let statuses: Vec<&str> = messages
        .iter()
        .map(|m| m.data["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["queued", "running", "completed"],
        "{messages:#?}"
    );

    let only = completed.until(|m| m.data["run_id"] == id.as_str()).await;
    assert_eq!(only.len(), 1, "{only:#?}");
    assert_eq!(only[0].data["status"], "completed");
    api.stop().await;
}

#[tokio::test]
async fn events_written_by_another_process_reach_the_streams() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("runs.db");
    // The server's engine executes nothing; a second engine over the same file (another
    // `worker` process, as far as the server can tell) does.
    let db_for_server = db.clone();
    let api = api_with(None, false, move |b| b.sqlite(&db_for_server).unwrap()).await;
    let worker = builder(&api.base).sqlite(&db).unwrap().build().unwrap();
    start_worker(&worker);

    let mut runs = api
        .stream("/runs/stream?workflow=stream-approval", None)
        .await;
    let id = api.start("stream-approval", json!("far")).await;
    let mut stream = api.stream(&format!("/runs/{id}/stream"), None).await;
    let mut messages = stream
        .until(|m| m.event == "event" && m.data["kind"] == "hook_created")
        .await;
    let waiting = runs
        .until(|m| m.data["run_id"] == id.as_str() && m.data["status"] == "waiting")
        .await;
    assert_eq!(waiting[0].data["status"], "queued", "{waiting:#?}");

    api.deliver(&id, json!("from afar")).await;
    messages.extend(stream.until(|m| m.event == "end").await);
    assert_eq!(
        messages.last().unwrap().data["output"],
        "noted far; noted from afar"
    );
    let (_, log) = api.json(api.get(&format!("/runs/{id}/events"))).await;
    assert_is_log(&messages, &log, 0);
    runs.until(|m| m.data["run_id"] == id.as_str() && m.data["status"] == "completed")
        .await;
    drop(worker);
    api.stop().await;
}

#[tokio::test]
async fn serve_shuts_down_while_streams_are_open() {
    let api = api().await;
    let id = api.start("stream-approval", json!("never answered")).await;
    let mut stream = api.stream(&format!("/runs/{id}/stream"), None).await;
    stream
        .until(|m| m.event == "event" && m.data["kind"] == "hook_created")
        .await;
    let _runs = api.stream("/runs/stream", None).await;
    api.stop().await; // within 5 s, asserted by `stop`
    // What was sent before is still read; then the stream ends (else `next` panics).
    while stream.next().await.is_some() {}
}

/// An OpenAI-compatible server streaming `pieces` as chat completion chunks when asked
/// with `stream: true` (and failing the test otherwise).
async fn streaming_model(pieces: &[&str]) -> wiremock::MockServer {
    use wiremock::matchers::{body_partial_json, method, path};
    let server = wiremock::MockServer::start().await;
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0,
            "model": "gpt-test",
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
        })
    };
    let mut body = String::new();
    let mut push = |value: Value| body.push_str(&format!("data: {value}\n\n"));
    push(chunk(
        json!({ "role": "assistant", "content": "" }),
        Value::Null,
    ));
    for piece in pieces {
        push(chunk(json!({ "content": piece }), Value::Null));
    }
    push(chunk(json!({}), json!("stop")));
    push(json!({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-test",
        "choices": [],
        "usage": { "prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10 },
    }));
    body.push_str("data: [DONE]\n\n");
    wiremock::Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_partial_json(
            json!({ "stream": true, "stream_options": { "include_usage": true } }),
        ))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_raw(body, "text/event-stream"))
        .expect(1)
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn token_deltas_reach_the_stream_and_the_step_records_the_whole_reply_once() {
    let model = streaming_model(&["Hel", "lo, ", "world"]).await;
    let provider = OpenAiProvider::new(format!("{}/v1", model.uri()), None).max_retries(0);
    let api = api_with(None, true, move |b| {
        b.llm_provider("openai", Arc::new(provider))
    })
    .await;
    let id = api.start("stream-llm", json!("Say hello")).await;
    let mut stream = api.stream(&format!("/runs/{id}/stream"), None).await;
    let mut messages = stream
        .until(|m| m.event == "event" && m.data["kind"] == "hook_created")
        .await;
    api.deliver(&id, json!("now")).await;
    messages.extend(stream.until(|m| m.event == "end").await);

    let tokens: Vec<&Message> = messages.iter().filter(|m| m.event == "token").collect();
    let texts: Vec<&str> = tokens
        .iter()
        .map(|m| m.data["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["Hel", "lo, ", "world"], "{messages:#?}");
    for token in &tokens {
        assert_eq!(token.data["step"], "llm#0/attempt#0");
    }
    // Token messages set no id of their own (they are not recorded): the last event id
    // stays the last recorded event's, so a reconnect resumes after it.
    for pair in messages.windows(2) {
        if pair[1].event == "token" {
            assert_eq!(pair[1].id, pair[0].id, "{messages:#?}");
        }
    }
    let end = messages.last().unwrap();
    assert_eq!(end.data["output"], "Hello, world");
    assert_eq!(end.data["usage"]["total_tokens"], 10);

    // The log holds the whole reply once, in the request's step, and no token.
    let (_, log) = api.json(api.get(&format!("/runs/{id}/events"))).await;
    assert_is_log(&messages, &log, 0);
    let replies: Vec<&Value> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "step_completed" && e["correlation_id"] == "llm#0/attempt#0")
        .collect();
    assert_eq!(replies.len(), 1, "{log:#}");
    assert!(
        replies[0]["payload"]
            .to_string()
            .contains("\"Hello, world\""),
        "{log:#}"
    );
    api.stop().await;
    // One request, streamed (wiremock checks `expect(1)` when it drops).
    drop(model);
}

#[tokio::test]
async fn streams_beyond_the_limit_get_503_until_one_closes() {
    let api = api().await;
    let mut open = Vec::new();
    for _ in 0..128 {
        open.push(api.stream("/runs/stream", None).await);
    }
    let (status, body) = api.json(api.get("/runs/stream")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "too_many_streams", "{body}");
    drop(open.pop());
    // The server notices the closed stream at its next write or look.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let response = api.get("/runs/stream").send().await.unwrap();
        if response.status() == StatusCode::OK {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no stream was freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(open);
    api.stop().await;
}

/// A model that streams its reply in `PIECES` pieces of 100 bytes.
struct Chatty;

const PIECES: usize = 50_000;

#[async_trait::async_trait]
impl reprise::llm::LlmProvider for Chatty {
    async fn complete(
        &self,
        request: reprise::llm::LlmRequest,
    ) -> Result<reprise::llm::LlmResponse, reprise::llm::LlmError> {
        self.complete_streaming(request, &|_| {}).await
    }

    async fn complete_streaming(
        &self,
        request: reprise::llm::LlmRequest,
        delta: &(dyn for<'s> Fn(&'s str) + Send + Sync),
    ) -> Result<reprise::llm::LlmResponse, reprise::llm::LlmError> {
        let piece = "x".repeat(100);
        for _ in 0..PIECES {
            delta(&piece);
        }
        Ok(reprise::llm::LlmResponse {
            message: reprise::llm::ChatMessage::assistant("all said"),
            usage: reprise::llm::Usage::default(),
            model: request.model,
            finish_reason: Some("stop".into()),
        })
    }
}

#[tokio::test]
async fn a_stream_that_falls_behind_loses_token_pieces_but_no_event_and_says_so() {
    let api = api_with(None, true, |b| b.llm_provider("chatty", Arc::new(Chatty))).await;
    let id = api.start("stream-chatty", json!("Talk")).await;
    let response = api.get(&format!("/runs/{id}/stream")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    api.deliver(&id, json!("go")).await;
    // Nothing is read until the run has ended: the pieces pile up behind.
    api.run_in(&id, "completed").await;
    let text = tokio::time::timeout(Duration::from_secs(30), response.text())
        .await
        .expect("the whole stream within 30 s")
        .unwrap();
    let tokens = text.matches("event: token\n").count();
    assert!(tokens < PIECES, "{tokens} pieces: none was skipped");
    assert!(text.contains(": fell behind: "), "the skip is said");
    let (_, log) = api.json(api.get(&format!("/runs/{id}/events"))).await;
    let log = log.as_array().unwrap();
    assert_eq!(text.matches("event: event\n").count(), log.len());
    for event in log {
        assert!(text.contains(&format!("id: {}\n", event["seq"])), "{event}");
    }
    assert!(text.contains("event: end\n"));
    api.stop().await;
}

#[tokio::test]
async fn a_paused_run_keeps_its_stream_open_and_the_runs_stream_says_paused() {
    let api = api().await;
    let mut runs = api
        .stream("/runs/stream?workflow=stream-approval", None)
        .await;
    let id = api.start("stream-approval", json!("held")).await;
    let mut stream = api.stream(&format!("/runs/{id}/stream"), None).await;
    stream
        .until(|m| m.event == "event" && m.data["kind"] == "hook_created")
        .await;
    api.run_in(&id, "waiting").await;
    let pause = api.client.post(api.url(&format!("/runs/{id}/pause")));
    let (status, body) = api.json(pause).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let paused = stream
        .until(|m| m.event == "event" && m.data["kind"] == "run_paused")
        .await;
    assert!(paused.iter().all(|m| m.event != "end"), "{paused:#?}");
    runs.until(|m| m.data["run_id"] == id.as_str() && m.data["status"] == "paused")
        .await;

    let unpause = api.client.post(api.url(&format!("/runs/{id}/unpause")));
    let (status, body) = api.json(unpause).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    api.deliver(&id, json!("released")).await;
    let rest = stream.until(|m| m.event == "end").await;
    assert_eq!(
        rest.last().unwrap().data["status"],
        "completed",
        "{rest:#?}"
    );
    runs.until(|m| m.data["run_id"] == id.as_str() && m.data["status"] == "completed")
        .await;
    api.stop().await;
}

/// Adds one.
#[action]
async fn m_inc(input: u64) -> Result<u64, ActionError> {
    Ok(input + 1)
}

/// `input` steps in a row.
#[workflow(slug = "m-many")]
async fn m_many(input: u64) -> Result<u64, WorkflowError> {
    let mut x = 0;
    for _ in 0..input {
        x = m_inc.run(x).await?;
    }
    Ok(x)
}

/// Drives one run of `n` steps (watched over HTTP or not): how long the run took, how
/// long after it ended `end` arrived, and how many messages the stream had.
async fn measured_run(n: u64, watch: bool) -> (Duration, Duration, usize) {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let engine = Engine::builder()
        .sqlite(dir.path().join("m.db"))
        .unwrap()
        .register(m_inc)
        .register(m_many)
        .build()
        .unwrap();
    tokio::spawn(serve(
        engine.clone(),
        listener,
        HttpOptions {
            api_token: None,
            ..HttpOptions::default()
        },
        std::future::pending::<()>(),
    ));
    let id = engine
        .start_json("m-many", json!(n), reprise::Trigger::Code)
        .await
        .unwrap();
    let reader = if watch {
        let response = reqwest::get(format!("{base}/runs/{id}/stream"))
            .await
            .unwrap();
        Some(tokio::spawn(async move {
            let bytes = futures::stream::unfold(response, |mut r| async move {
                match r.chunk().await {
                    Ok(Some(b)) => Some((Ok(b), r)),
                    Ok(None) => None,
                    Err(e) => Some((Err(e), r)),
                }
            });
            let mut events = std::pin::pin!(bytes.eventsource());
            let mut count = 0;
            while let Some(e) = events.next().await {
                let e = e.unwrap();
                count += 1;
                if e.event == "end" {
                    return (Instant::now(), count);
                }
            }
            panic!("the stream ended without `end`");
        }))
    } else {
        None
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    engine.drive(&id).await.unwrap();
    let done = Instant::now();
    let run_time = done - started;
    match reader {
        Some(reader) => {
            let (end_at, count) = reader.await.unwrap();
            (run_time, end_at.saturating_duration_since(done), count)
        }
        None => (run_time, Duration::ZERO, 0),
    }
}

/// A measurement, not a test (run it with `cargo test -p reprise --test it
/// streams::measure -- --ignored --nocapture`): a 1,000-step run (SQLite), unwatched and
/// watched over `GET /runs/{id}/stream`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: prints timings, asserts none"]
async fn measure_a_watched_1000_step_run() {
    for _ in 0..3 {
        let (plain, _, _) = measured_run(1000, false).await;
        let (watched, lag, count) = measured_run(1000, true).await;
        println!(
            "1000 steps: run {plain:?} unwatched, {watched:?} watched; `end` {lag:?} after the run ended; {count} messages"
        );
    }
}
