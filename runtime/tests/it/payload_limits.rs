//! Payload limits (`EngineBuilder::max_payload_bytes`, `history_warning_bytes`): every
//! path over the limit is refused or fails the step before anything is written, a payload
//! exactly at the limit is accepted, and a big log is warned about once per run.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use reprise::event::{EventKind, RunFilter, RunStatus};
use reprise::prelude::*;
use reprise::store::{MemoryStore, SharedStore, SqliteStore};
use reprise::{EngineError, RunOutcome};
use serde_json::{Value, json};

/// The limit in these tests, in bytes of JSON.
const LIMIT: u64 = 100;

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
struct Text {
    s: String,
}

/// `{"s":"xx…"}` of exactly `bytes` bytes of JSON (at least 8).
fn text_of(bytes: usize) -> Text {
    Text {
        s: "x".repeat(bytes - r#"{"s":""}"#.len()),
    }
}

/// Calls of `pad-to` for 5,000 bytes: only the oversized-output test asks for that many
/// (tests run in parallel and share `pad-to`).
static ECHOED_5000: AtomicU32 = AtomicU32::new(0);

/// Returns its input padded to `n` bytes of JSON: `{"s": "xx…"}`.
#[action(retries = 3)]
async fn pad_to(n: usize) -> Result<Text, ActionError> {
    if n == 5000 {
        ECHOED_5000.fetch_add(1, Ordering::SeqCst);
    }
    Ok(text_of(n))
}

static TAKEN: AtomicU32 = AtomicU32::new(0);

#[action]
async fn take_text(input: Text) -> Result<usize, ActionError> {
    TAKEN.fetch_add(1, Ordering::SeqCst);
    Ok(input.s.len())
}

/// Makes an output of `n` bytes of JSON.
#[workflow(slug = "limits-output")]
async fn limits_output(n: usize) -> Result<Text, WorkflowError> {
    Ok(pad_to.run(n).await?)
}

/// Handles an oversized output by asking for a smaller one.
#[workflow(slug = "limits-handled")]
async fn limits_handled(n: usize) -> Result<String, WorkflowError> {
    match pad_to.run(n).await {
        Ok(text) => Ok(format!("{} bytes", text.s.len())),
        Err(error) if error.kind == reprise::kinds::PAYLOAD_TOO_LARGE => {
            let small = pad_to.run(10).await?;
            Ok(format!("fell back to {}", small.s.len()))
        }
        Err(error) => Err(error.into()),
    }
}

/// Passes a step an input of `n` bytes of JSON.
#[workflow(slug = "limits-input")]
async fn limits_input(n: usize) -> Result<usize, WorkflowError> {
    Ok(take_text.run(text_of(n)).await?)
}

/// Returns `n` bytes of JSON itself (no step).
#[workflow(slug = "limits-workflow-output")]
async fn limits_workflow_output(n: usize) -> Result<Text, WorkflowError> {
    Ok(text_of(n))
}

/// Calls `limits-workflow-output` as a sub-workflow.
#[workflow(slug = "limits-parent")]
async fn limits_parent(n: usize) -> Result<usize, WorkflowError> {
    Ok(limits_workflow_output.run(n).await?.s.len())
}

/// Starts with any text.
#[workflow(slug = "limits-start")]
async fn limits_start(input: Text) -> Result<usize, WorkflowError> {
    Ok(input.s.len())
}

/// Waits on a hook for a text.
#[workflow(slug = "limits-hook")]
async fn limits_hook(ctx: Ctx, _input: ()) -> Result<usize, WorkflowError> {
    let text: Text = ctx.hook().await?;
    Ok(text.s.len())
}

fn engine(store: SharedStore) -> Engine {
    Engine::builder()
        .store(store)
        .max_payload_bytes(LIMIT)
        .register(pad_to)
        .register(take_text)
        .register(limits_output)
        .register(limits_handled)
        .register(limits_input)
        .register(limits_workflow_output)
        .register(limits_parent)
        .register(limits_start)
        .register(limits_hook)
        .build()
        .unwrap()
}

/// Every event payload of the run is within the limit (nothing oversized was written).
async fn nothing_oversized(engine: &Engine, id: &reprise::RunId) {
    for event in engine.events(id).await.unwrap() {
        let size = serde_json::to_string(&event.event.payload).unwrap().len() as u64;
        assert!(
            size <= LIMIT + 400,
            "event {} ({:?}) holds {size} bytes",
            event.seq,
            event.event.kind
        );
        let text = event.event.payload.to_string();
        assert!(!text.contains(&"x".repeat(LIMIT as usize)), "{text}");
    }
}

fn failed(outcome: RunOutcome) -> reprise::WorkflowError {
    match outcome {
        RunOutcome::Failed(error) => error,
        other => panic!("expected a failed run, got {other:?}"),
    }
}

#[tokio::test]
async fn a_start_input_over_the_limit_is_refused_and_creates_nothing() {
    let engine = engine(Arc::new(MemoryStore::new()));
    assert_eq!(engine.max_payload_bytes(), LIMIT);
    let at_limit = serde_json::to_value(text_of(LIMIT as usize)).unwrap();
    let id = engine
        .start_json("limits-start", at_limit, reprise::Trigger::Code)
        .await
        .expect("exactly at the limit is accepted");
    assert_eq!(
        engine.drive(&id).await.unwrap().outcome,
        RunOutcome::Completed(json!(LIMIT - 8))
    );

    let over = serde_json::to_value(text_of(LIMIT as usize + 1)).unwrap();
    let error = engine
        .start_json("limits-start", over, reprise::Trigger::Code)
        .await
        .unwrap_err();
    match &error {
        EngineError::PayloadTooLarge { what, size, limit } => {
            assert_eq!(
                (what.as_str(), *size, *limit),
                ("the input of workflow `limits-start`", LIMIT + 1, LIMIT)
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(error.to_string().contains("101 bytes"), "{error}");
    assert_eq!(reprise::cli::exit_code(&error), 2);
    let runs = engine.list_runs(&RunFilter::default()).await.unwrap();
    assert_eq!(runs.len(), 1, "the refused start created no run");
}

#[tokio::test]
async fn a_step_output_over_the_limit_fails_the_run_without_retrying_or_writing_it() {
    let engine = engine(Arc::new(MemoryStore::new()));
    let ok = engine
        .start_json("limits-output", json!(LIMIT), reprise::Trigger::Code)
        .await
        .unwrap();
    assert!(matches!(
        engine.drive(&ok).await.unwrap().outcome,
        RunOutcome::Completed(_)
    ));

    assert_eq!(LIMIT * 50, 5000);
    let id = engine
        .start_json("limits-output", json!(LIMIT * 50), reprise::Trigger::Code)
        .await
        .unwrap();
    let error = failed(engine.drive(&id).await.unwrap().outcome);
    assert_eq!(error.kind, "payload_too_large");
    assert!(!error.retryable);
    assert!(
        error.message.contains("the output of step `pad-to#0`")
            && error.message.contains("5000 bytes")
            && error.message.contains("limit of 100 bytes"),
        "{}",
        error.message
    );
    assert_eq!(
        ECHOED_5000.load(Ordering::SeqCst),
        1,
        "neither the action's retries nor the run's attempts run it again"
    );
    assert_eq!(engine.get_run(&id).await.unwrap().attempt, 1);
    let events = engine.events(&id).await.unwrap();
    assert!(events.iter().any(|e| e.event.kind == EventKind::StepFailed));
    assert!(
        !events
            .iter()
            .any(|e| e.event.kind == EventKind::StepCompleted)
    );
    nothing_oversized(&engine, &id).await;
}

#[tokio::test]
async fn a_body_may_handle_an_oversized_step_output() {
    let engine = engine(Arc::new(MemoryStore::new()));
    let id = engine
        .start_json("limits-handled", json!(LIMIT * 3), reprise::Trigger::Code)
        .await
        .unwrap();
    assert_eq!(
        engine.drive(&id).await.unwrap().outcome,
        RunOutcome::Completed(json!("fell back to 2"))
    );
    nothing_oversized(&engine, &id).await;
}

#[tokio::test]
async fn a_step_input_over_the_limit_fails_before_the_step_starts() {
    let engine = engine(Arc::new(MemoryStore::new()));
    let before = TAKEN.load(Ordering::SeqCst);
    let id = engine
        .start_json("limits-input", json!(LIMIT + 1), reprise::Trigger::Code)
        .await
        .unwrap();
    let error = failed(engine.drive(&id).await.unwrap().outcome);
    assert_eq!(error.kind, "payload_too_large");
    assert!(
        error.message.contains("the input of step `take-text#0`"),
        "{}",
        error.message
    );
    assert_eq!(TAKEN.load(Ordering::SeqCst), before, "the action never ran");
    let events = engine.events(&id).await.unwrap();
    assert!(
        !events
            .iter()
            .any(|e| e.event.kind == EventKind::StepStarted)
    );
    nothing_oversized(&engine, &id).await;

    let at_limit = engine
        .start_json("limits-input", json!(LIMIT), reprise::Trigger::Code)
        .await
        .unwrap();
    assert_eq!(
        engine.drive(&at_limit).await.unwrap().outcome,
        RunOutcome::Completed(json!(LIMIT - 8))
    );
}

#[tokio::test]
async fn a_workflow_output_over_the_limit_fails_the_run() {
    let engine = engine(Arc::new(MemoryStore::new()));
    let id = engine
        .start_json(
            "limits-workflow-output",
            json!(LIMIT + 1),
            reprise::Trigger::Code,
        )
        .await
        .unwrap();
    let error = failed(engine.drive(&id).await.unwrap().outcome);
    assert_eq!(error.kind, "payload_too_large");
    assert!(
        error
            .message
            .contains("the output of workflow `limits-workflow-output`"),
        "{}",
        error.message
    );
    let run = engine.get_run(&id).await.unwrap();
    assert_eq!(
        (run.status, run.attempt, run.output),
        (RunStatus::Failed, 1, None)
    );
    nothing_oversized(&engine, &id).await;
    let at_limit = engine
        .start_json(
            "limits-workflow-output",
            json!(LIMIT),
            reprise::Trigger::Code,
        )
        .await
        .unwrap();
    assert!(matches!(
        engine.drive(&at_limit).await.unwrap().outcome,
        RunOutcome::Completed(_)
    ));
}

#[tokio::test]
async fn a_sub_workflow_output_over_the_limit_fails_that_step() {
    let engine = engine(Arc::new(MemoryStore::new()));
    let id = engine
        .start_json("limits-parent", json!(LIMIT + 1), reprise::Trigger::Code)
        .await
        .unwrap();
    let error = failed(engine.drive(&id).await.unwrap().outcome);
    assert_eq!(error.kind, "payload_too_large");
    assert!(
        error
            .message
            .contains("the output of step `limits-workflow-output#0`"),
        "{}",
        error.message
    );
    nothing_oversized(&engine, &id).await;
}

/// A model that answers every request with `n` characters of text.
struct Verbose(usize);

#[async_trait::async_trait]
impl reprise::llm::LlmProvider for Verbose {
    async fn complete(
        &self,
        _request: reprise::llm::LlmRequest,
    ) -> Result<reprise::llm::LlmResponse, reprise::llm::LlmError> {
        Ok(reprise::llm::LlmResponse {
            message: reprise::llm::ChatMessage {
                role: Some(reprise::llm::Role::Assistant),
                content: Some("y".repeat(self.0)),
                tool_calls: Vec::new(),
                tool_call_id: None,
            },
            usage: reprise::llm::Usage::default(),
            model: "verbose".into(),
            finish_reason: None,
        })
    }
}

#[workflow(slug = "limits-llm")]
async fn limits_llm(_input: ()) -> Result<String, WorkflowError> {
    Ok(prompt_llm("Say a lot").model("fake/model").await?)
}

#[tokio::test]
async fn an_llm_reply_over_the_limit_fails_the_llm_step() {
    let engine = Engine::builder()
        .store(Arc::new(MemoryStore::new()))
        .max_payload_bytes(1000)
        .llm(Arc::new(Verbose(5000)))
        .register(limits_llm)
        .build()
        .unwrap();
    let id = engine
        .start_json("limits-llm", Value::Null, reprise::Trigger::Code)
        .await
        .unwrap();
    let error = failed(engine.drive(&id).await.unwrap().outcome);
    assert_eq!(error.kind, "payload_too_large");
    assert!(
        error.message.contains("the output of step `llm#0"),
        "{}",
        error.message
    );
    for event in engine.events(&id).await.unwrap() {
        assert!(!event.event.payload.to_string().contains(&"y".repeat(1000)));
    }
}

async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Over real HTTP on SQLite: a start and a hook delivery over the limit are 413 with the
/// JSON error naming what, the size and the limit; nothing is written; the hook stays
/// open and takes a payload within the limit.
#[tokio::test]
async fn http_refuses_oversized_starts_and_hook_payloads_with_413() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(Arc::new(
        SqliteStore::open(dir.path().join("runs.db")).unwrap(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = reprise::http::HttpOptions {
        api_token: None,
        ..Default::default()
    };
    let server = tokio::spawn(reprise::http::serve(
        engine.clone(),
        listener,
        options,
        async {
            let _ = stopped.await;
        },
    ));
    let client = reqwest::Client::new();

    let (status, body) = send(
        client
            .post(format!("{base}/workflows/limits-start"))
            .json(&text_of(LIMIT as usize + 20)),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["code"], "payload_too_large");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains("the input of workflow `limits-start` is 120 bytes")
            && message.contains("limit of 100 bytes"),
        "{message}"
    );
    assert!(
        engine
            .list_runs(&RunFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    let (status, body) = send(
        client
            .post(format!("{base}/workflows/limits-start"))
            .json(&text_of(LIMIT as usize)),
    )
    .await;
    assert_eq!(status, 202, "exactly at the limit: {body}");

    let id = engine
        .start_json("limits-hook", Value::Null, reprise::Trigger::Code)
        .await
        .unwrap();
    let waiting = engine.execute(&id).await.unwrap().outcome;
    assert!(matches!(waiting, RunOutcome::Suspended(_)), "{waiting:?}");
    let hook = engine.open_hooks(&id).await.unwrap().remove(0);
    let next_seq = engine.get_run(&id).await.unwrap().next_seq;
    let (status, body) = send(
        client
            .post(format!("{base}/hooks/{}", hook.token))
            .json(&text_of(LIMIT as usize * 2)),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["code"], "payload_too_large");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains(&format!("the payload of hook `{}` is 200 bytes", hook.id)),
        "{message}"
    );
    let run = engine.get_run(&id).await.unwrap();
    assert_eq!(
        (run.status, run.next_seq),
        (RunStatus::Waiting, next_seq),
        "nothing written"
    );
    let (status, body) = send(
        client
            .post(format!("{base}/hooks/{}", hook.token))
            .json(&text_of(LIMIT as usize)),
    )
    .await;
    assert_eq!(status, 200, "the hook stays open: {body}");
    assert_eq!(
        engine.drive(&id).await.unwrap().outcome,
        RunOutcome::Completed(json!(LIMIT - 8))
    );
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[test]
fn a_zero_payload_limit_is_a_build_error() {
    let error = Engine::builder().max_payload_bytes(0).build().unwrap_err();
    assert!(
        error.to_string().contains("max_payload_bytes of 0"),
        "{error}"
    );
    assert_eq!(reprise::DEFAULT_MAX_PAYLOAD_BYTES, 2 * 1024 * 1024);
}

// ---------------------------------------------------------------------------------------
// The history warning

/// Log lines written by the subscriber of this test's thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Three rounds of four steps of ~100 bytes each, with a hook between rounds (three
/// executions).
#[workflow(slug = "limits-long-log")]
async fn limits_long_log(ctx: Ctx, _input: ()) -> Result<(), WorkflowError> {
    for round in 0..3 {
        for _ in 0..4 {
            pad_to.run(90).await?;
        }
        if round < 2 {
            let () = ctx.hook().await?;
        }
    }
    Ok(())
}

fn long_log_engine(store: SharedStore, warn_at: u64) -> Engine {
    Engine::builder()
        .store(store)
        .history_warning_bytes(warn_at)
        .register(pad_to)
        .register(limits_long_log)
        .build()
        .unwrap()
}

/// Bytes of event payload JSON in the run's log.
async fn log_size(engine: &Engine, id: &reprise::RunId) -> u64 {
    let mut total = 0;
    for event in engine.store().events(id).await.unwrap() {
        total += serde_json::to_string(&event.event.payload).unwrap().len() as u64;
    }
    total
}

/// Executes the run up to its next hook (or its end) and delivers the hook; the log size.
async fn next_round(engine: &Engine, id: &reprise::RunId) -> u64 {
    let outcome = engine.execute(id).await.unwrap().outcome;
    let size = log_size(engine, id).await;
    if matches!(outcome, RunOutcome::Suspended(_)) {
        let hook = engine.open_hooks(id).await.unwrap().remove(0);
        engine.resume_hook(&hook.token, Value::Null).await.unwrap();
    }
    size
}

#[tokio::test]
async fn a_log_past_the_history_warning_is_logged_once_per_run() {
    // A probe run without the warning: the log's size after each round.
    let probe_engine = long_log_engine(Arc::new(MemoryStore::new()), 0);
    let probe = probe_engine
        .start_json("limits-long-log", Value::Null, reprise::Trigger::Code)
        .await
        .unwrap();
    let first = next_round(&probe_engine, &probe).await;
    let second = next_round(&probe_engine, &probe).await;
    assert!(first < second);

    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let warnings = || {
        String::from_utf8_lossy(&captured.0.lock().unwrap())
            .matches("history warning threshold")
            .count()
    };
    // Crossed in the second round: warned then, and not again by the third execution,
    // which loads a log already past it.
    let engine = long_log_engine(Arc::new(MemoryStore::new()), (first + second) / 2);
    let id = engine
        .start_json("limits-long-log", Value::Null, reprise::Trigger::Code)
        .await
        .unwrap();
    next_round(&engine, &id).await;
    assert_eq!(warnings(), 0, "under the threshold after the first round");
    next_round(&engine, &id).await;
    assert_eq!(warnings(), 1, "crossed in the second round");
    next_round(&engine, &id).await;
    assert_eq!(
        engine.get_run(&id).await.unwrap().status,
        RunStatus::Completed
    );
    let text = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert_eq!(warnings(), 1, "once per run: {text}");
    assert!(
        text.contains(id.as_str()),
        "the warning names the run: {text}"
    );
}
