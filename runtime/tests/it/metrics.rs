//! `GET /metrics` (OpenMetrics text) and token usage and cost (`GET /usage`, the run's
//! `cost_usd`, `Engine::usage`) over real HTTP on 127.0.0.1, with a provider that reports
//! token counts: each step, run, hook delivery and model request counted once, also when
//! the run replays after a hook.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use reprise::cost::{ModelPrice, PriceTable};
use reprise::http::{HttpOptions, serve};
use reprise::llm::{ChatMessage, LlmError, LlmProvider, LlmRequest, LlmResponse, Role, Usage};
use reprise::prelude::*;
use reprise::{EngineError, Trigger, UsageQuery, Worker, WorkerOptions};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// Answers every request with "ok" and 1,000 prompt tokens (400 of them cached) and 500
/// completion tokens.
struct Counting;

#[async_trait]
impl LlmProvider for Counting {
    async fn complete(&self, request: LlmRequest) -> Result<LlmResponse, LlmError> {
        Ok(LlmResponse {
            message: ChatMessage {
                role: Some(Role::Assistant),
                content: Some("ok".into()),
                tool_calls: Vec::new(),
                tool_call_id: None,
            },
            usage: Usage {
                prompt_tokens: 1000,
                completion_tokens: 500,
                total_tokens: 1500,
                cached_tokens: 400,
            },
            model: request.model,
            finish_reason: None,
        })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
struct Approval {
    approved: bool,
}

/// Attempts of `metrics_flaky` (only the metrics tests run it).
static FLAKY_ATTEMPTS: AtomicU32 = AtomicU32::new(0);

/// Fails its first attempt.
#[action(retries = 3, backoff = "1ms")]
async fn metrics_flaky(input: String) -> Result<String, ActionError> {
    if FLAKY_ATTEMPTS.fetch_add(1, Ordering::SeqCst) == 0 {
        return Err(ActionError::new("flaky", "first attempt fails", true));
    }
    Ok(input)
}

/// A step that retries once, a priced model request, an unpriced one, then a hook.
#[workflow(slug = "metrics-flow")]
async fn metrics_flow(ctx: Ctx, input: String) -> Result<String, WorkflowError> {
    let echoed = metrics_flaky.run(input).await?;
    let priced: String = prompt_llm(format!("Say ok to {echoed}"))
        .model("test/gpt-test")
        .await?;
    let unpriced: String = prompt_llm("Say ok again").model("test/mystery").await?;
    let approval: Approval = ctx.hook().await?;
    Ok(format!("{priced} {unpriced} {}", approval.approved))
}

/// Fails at once.
#[workflow(slug = "metrics-fail")]
async fn metrics_fail(input: String) -> Result<String, WorkflowError> {
    Err(WorkflowError::permanent(format!("no {input}")))
}

fn prices() -> PriceTable {
    // $1 per million fresh prompt tokens, $0.5 cached, $2 completion.
    PriceTable::empty().with("gpt-test", ModelPrice::new(1.0, 2.0).cached(0.5))
}

struct Server {
    base: String,
    client: reqwest::Client,
    engine: Engine,
}

async fn server() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let engine = Engine::builder()
        .public_url(base.clone())
        .register(metrics_flow)
        .register(metrics_flaky)
        .register(metrics_fail)
        .llm_provider("test", Arc::new(Counting))
        .prices(prices())
        .build()
        .unwrap();
    let options = HttpOptions {
        api_token: None,
        ..HttpOptions::default()
    };
    tokio::spawn(serve(
        engine.clone(),
        listener,
        options,
        std::future::pending::<()>(),
    ));
    let worker = Worker::new(
        &engine,
        WorkerOptions {
            poll_interval: Duration::from_millis(20),
            ..WorkerOptions::default()
        },
    );
    tokio::spawn(worker.run(std::future::pending::<()>()));
    Server {
        base,
        client: reqwest::Client::new(),
        engine,
    }
}

impl Server {
    async fn get_json(&self, path: &str) -> Value {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    async fn run_in(&self, id: &str, status: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let run = self.get_json(&format!("/runs/{id}")).await;
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

    async fn metrics(&self) -> String {
        let response = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("application/openmetrics-text"),
            "{content_type}"
        );
        response.text().await.unwrap()
    }
}

/// The value of the sample `name{labels}` (labels as the exposition writes them, in
/// order), or `None` when there is no such line.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_runs_steps_hooks_and_tokens_once_over_http() {
    let server = server().await;
    let (id, _) = server
        .engine
        .start_with(
            "metrics-flow",
            json!("ada"),
            Trigger::Api,
            Default::default(),
        )
        .await
        .unwrap();
    server
        .engine
        .start_json("metrics-fail", json!("luck"), Trigger::Api)
        .await
        .unwrap();
    let run = server.run_in(id.as_str(), "waiting").await;
    let resume_url = run["hooks"][0]["resume_url"].as_str().unwrap().to_owned();

    // A payload that does not fit is rejected (and counted so); then the right one.
    let bad = server
        .client
        .post(&resume_url)
        .json(&json!({"approved": "yes"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    let good = server
        .client
        .post(&resume_url)
        .json(&json!({"approved": true}))
        .send()
        .await
        .unwrap();
    assert!(good.status().is_success(), "{}", good.status());
    let run = server.run_in(id.as_str(), "completed").await;
    assert_eq!(run["output"], "ok ok true");

    let text = server.metrics().await;
    let value =
        |series: &str| sample(&text, series).unwrap_or_else(|| panic!("no `{series}` in:\n{text}"));
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert_eq!(
        value("reprise_runs_started_total{workflow=\"metrics-flow\"}"),
        1.0
    );
    assert_eq!(
        value("reprise_runs_completed_total{workflow=\"metrics-flow\"}"),
        1.0
    );
    assert_eq!(
        value("reprise_runs_failed_total{workflow=\"metrics-fail\"}"),
        1.0
    );
    // The flaky step ran live once (two attempts), although the run replayed it after the
    // hook: one observation, of 2 attempts.
    assert_eq!(
        value("reprise_step_attempts_count{callee=\"metrics-flaky\"}"),
        1.0
    );
    assert_eq!(
        value("reprise_step_attempts_sum{callee=\"metrics-flaky\"}"),
        2.0
    );
    assert_eq!(
        value(
            "reprise_step_duration_seconds_count{callee=\"metrics-flaky\",outcome=\"completed\"}"
        ),
        1.0
    );
    assert_eq!(
        value("reprise_hook_deliveries_total{outcome=\"accepted\"}"),
        1.0
    );
    assert_eq!(
        value("reprise_hook_deliveries_total{outcome=\"rejected\"}"),
        1.0
    );
    // One request per model, counted once although the run replayed both after the hook.
    assert_eq!(
        value("reprise_llm_requests_total{model=\"test/gpt-test\"}"),
        1.0
    );
    assert_eq!(
        value("reprise_llm_tokens_total{model=\"test/gpt-test\",kind=\"prompt\"}"),
        1000.0
    );
    assert_eq!(
        value("reprise_llm_tokens_total{model=\"test/gpt-test\",kind=\"cached\"}"),
        400.0
    );
    // 600 fresh × $1 + 400 cached × $0.5 + 500 × $2, per million.
    let cost = value("reprise_llm_cost_usd_total{model=\"test/gpt-test\"}");
    assert!((cost - 0.0018).abs() < 1e-12, "{cost}");
    assert!(
        sample(&text, "reprise_llm_cost_usd_total{model=\"test/mystery\"}").is_none(),
        "an unpriced model has no cost series:\n{text}"
    );
    assert_eq!(
        value("reprise_runs{workflow=\"metrics-flow\",status=\"completed\"}"),
        1.0
    );
    assert_eq!(value("reprise_runs_due{workflow=\"metrics-flow\"}"), 0.0);
    assert!(value("reprise_runs_claimed_total") >= 2.0);

    // The run's cost, and the usage report by day, workflow and model.
    let run = server.get_json(&format!("/runs/{id}")).await;
    assert!(
        (run["cost_usd"].as_f64().unwrap() - 0.0018).abs() < 1e-12,
        "{run}"
    );
    assert_eq!(run["unpriced"], true, "{run}");
    assert_eq!(run["usage"]["total_tokens"], 3000, "{run}");

    let usage = server.get_json("/usage?since=1d").await;
    let rows = usage["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{usage}");
    let today = chrono::Utc::now().date_naive().to_string();
    let row = |model: &str| {
        rows.iter()
            .find(|r| r["model"] == model)
            .unwrap_or_else(|| panic!("no {model} row: {usage}"))
    };
    let priced = row("test/gpt-test");
    assert_eq!(priced["day"], today.as_str());
    assert_eq!(priced["workflow"], "metrics-flow");
    assert_eq!(priced["requests"], 1);
    assert_eq!(priced["prompt_tokens"], 1000);
    assert_eq!(priced["cached_tokens"], 400);
    assert!((priced["cost_usd"].as_f64().unwrap() - 0.0018).abs() < 1e-12);
    assert_eq!(row("test/mystery")["cost_usd"], Value::Null);
    assert_eq!(usage["unpriced_models"], json!(["test/mystery"]));
    assert_eq!(usage["requests"], 2);

    // A period that ended before the run: nothing.
    let none = server.get_json("/usage?until=2000-01-01T00:00:00Z").await;
    assert_eq!(none["rows"], json!([]), "{none}");
    let other = server
        .engine
        .usage(&UsageQuery {
            workflow: Some("metrics-fail".into()),
            ..UsageQuery::default()
        })
        .await
        .unwrap();
    assert!(other.rows.is_empty());

    // A bad bound is a 400 naming it.
    let bad = server
        .client
        .get(format!("{}/usage?since=yesterday-ish", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("`since`"),
        "{body}"
    );
}

#[test]
fn a_price_file_that_does_not_parse_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prices.json");
    std::fs::write(&path, r#"{"gpt-x": {"input": "cheap"}}"#).unwrap();
    let error = reprise::cost::PriceTable::from_json_file(&path).unwrap_err();
    assert!(matches!(error, EngineError::Config(_)), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("prices.json"), "{message}");
}
