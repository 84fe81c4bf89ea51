//! The HTTP API over real sockets: a server on 127.0.0.1:0 with a worker behind it,
//! requests with reqwest, statuses and bodies asserted.

use std::time::Duration;

use hmac::{Hmac, Mac};
use reprise::http::{HttpOptions, serve};
use reprise::prelude::*;
use reprise::trigger::WebhookSource;
use reprise::{EngineBuilder, EngineError, Worker, WorkerOptions};
use reqwest::{RequestBuilder, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Greet {
    name: String,
    #[schemars(email)]
    email: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Greeting {
    message: String,
}

/// Writes the greeting.
#[action]
async fn http_greeting(input: Greet) -> Result<Greeting, ActionError> {
    Ok(Greeting {
        message: format!("Hello, {} <{}>", input.name, input.email),
    })
}

/// Greets a new user.
#[workflow(slug = "http-greet")]
async fn http_greet(input: Greet) -> Result<Greeting, WorkflowError> {
    Ok(http_greeting.run(input).await?)
}

/// Always fails.
#[workflow(slug = "http-fail")]
async fn http_fail(input: Greet) -> Result<Greeting, WorkflowError> {
    Err(WorkflowError::permanent(format!(
        "no greeting for {}",
        input.name
    )))
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Request {
    item: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Decision {
    decision: String,
    note: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Outcome {
    item: String,
    decision: Decision,
}

/// Waits for a person's decision on a hook.
#[workflow(slug = "http-approval")]
async fn http_approval(ctx: Ctx, input: Request) -> Result<Outcome, WorkflowError> {
    let decision: Decision = ctx.hook().await?;
    Ok(Outcome {
        item: input.item,
        decision,
    })
}

/// Sleeps for a day, then greets.
#[workflow(slug = "http-nap")]
async fn http_nap(ctx: Ctx, input: Greet) -> Result<Greeting, WorkflowError> {
    ctx.sleep("1d").await?;
    Ok(http_greeting.run(input).await?)
}

/// Set when `http-block` starts (only one test runs it).
static BLOCK_STARTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Blocks until the run is canceled (then says so), at most a minute.
#[action]
async fn http_block(input: Greet, cx: ActionCtx) -> Result<Greet, ActionError> {
    BLOCK_STARTED.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::select! {
        () = cx.cancellation().cancelled() => Ok(Greet { name: "canceled".into(), ..input }),
        () = tokio::time::sleep(Duration::from_secs(60)) => Ok(input),
    }
}

/// Runs a blocking step, then greets.
#[workflow(slug = "http-busy")]
async fn http_busy(input: Greet) -> Result<Greeting, WorkflowError> {
    let input = http_block.run(input).await?;
    Ok(http_greeting.run(input).await?)
}

const SLUGS: [&str; 5] = [
    "http-approval",
    "http-busy",
    "http-fail",
    "http-greet",
    "http-nap",
];

/// A server and a worker on one engine, and a client.
struct Api {
    base: String,
    client: reqwest::Client,
    token: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<Result<(), EngineError>>,
}

fn no_auth() -> HttpOptions {
    HttpOptions {
        api_token: None,
        ..HttpOptions::default()
    }
}

async fn api(options: HttpOptions) -> Api {
    api_with(options, |builder| builder).await
}

/// [`api`], with more on the engine (webhook sources).
async fn api_with(options: HttpOptions, more: impl FnOnce(EngineBuilder) -> EngineBuilder) -> Api {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let builder = Engine::builder()
        .public_url(base.clone())
        .register(http_greet)
        .register(http_greeting)
        .register(http_fail)
        .register(http_approval)
        .register(http_nap)
        .register(http_busy)
        .register(http_block);
    let engine = more(builder).build().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let token = options.api_token.clone();
    let server = tokio::spawn(serve(engine.clone(), listener, options, async {
        let _ = stopped.await;
    }));
    let worker = Worker::new(
        &engine,
        WorkerOptions {
            poll_interval: Duration::from_millis(50),
            ..WorkerOptions::default()
        },
    );
    tokio::spawn(worker.run(std::future::pending::<()>()));
    Api {
        base,
        client: reqwest::Client::new(),
        token,
        stop: Some(stop),
        server,
    }
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Adds the server's token, if it has one.
    fn authed(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        send(self.authed(self.client.get(self.url(path)))).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        send(self.authed(self.client.post(self.url(path)).json(&body))).await
    }

    /// Starts a run and returns its id (asserting 202 queued).
    async fn start(&self, slug: &str, input: Value) -> String {
        let (status, body) = self.post(&format!("/workflows/{slug}"), input).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["status"], "queued", "{body}");
        body["run_id"].as_str().unwrap().to_owned()
    }

    /// `GET /runs/{id}` once the run is in `status` (10 s at most).
    async fn run_in(&self, id: &str, status: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (code, run) = self.get(&format!("/runs/{id}")).await;
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

    /// The resume URL of the one hook a waiting run shows.
    async fn resume_url(&self, id: &str) -> String {
        let run = self.run_in(id, "waiting").await;
        let hooks = run["hooks"].as_array().unwrap();
        assert_eq!(hooks.len(), 1, "{run}");
        hooks[0]["resume_url"].as_str().unwrap().to_owned()
    }

    /// Stops the server and checks that `serve` returned `Ok`.
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).unwrap();
        }
        tokio::time::timeout(Duration::from_secs(5), self.server)
            .await
            .expect("serve returns after its shutdown signal")
            .unwrap()
            .unwrap();
    }
}

/// Sends `request`; every answer of this API, errors included, must be JSON.
async fn send(request: RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    assert!(
        content_type.starts_with("application/json"),
        "{status} answered with `{content_type}`: {text}"
    );
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, body)
}

fn assert_error(body: &Value, code: &str, mentions: &str) {
    assert_eq!(body["code"], code, "{body}");
    let message = body["error"].as_str().unwrap_or_else(|| panic!("{body}"));
    assert!(message.contains(mentions), "`{mentions}` not in {body}");
}

#[tokio::test]
async fn a_started_run_is_queued_then_completes_with_its_steps_and_events() {
    let api = api(no_auth()).await;
    let id = api
        .start(
            "http-greet",
            json!({ "name": "Ada", "email": "ada@example.com" }),
        )
        .await;

    let run = api.run_in(&id, "completed").await;
    assert_eq!(run["id"], id.as_str());
    assert_eq!(run["workflow"], "http-greet");
    assert_eq!(run["trigger"], "api");
    assert_eq!(run["input"]["email"], "ada@example.com");
    assert_eq!(run["output"]["message"], "Hello, Ada <ada@example.com>");
    assert_eq!(run["error"], Value::Null);
    assert_eq!(run["hooks"], json!([]));
    let steps = run["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{run}");
    assert_eq!(steps[0]["callee"], "http-greeting");
    assert_eq!(steps[0]["status"], "completed");

    let (status, events) = api.get(&format!("/runs/{id}/events")).await;
    assert_eq!(status, StatusCode::OK);
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"run_created"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"run_completed"), "{kinds:?}");
    assert!(kinds.contains(&"step_completed"), "{kinds:?}");
    assert_eq!(events[0]["seq"], 0);
    assert_eq!(events[0]["run_id"], id.as_str());

    let (status, body) = api.get("/runs/no-such-run").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "unknown_run", "no-such-run");
    let (status, body) = api.get("/runs/no-such-run/events").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "unknown_run", "no-such-run");
    api.stop().await;
}

#[tokio::test]
async fn wait_answers_with_the_output_or_the_error_once_the_run_ended() {
    let api = api(no_auth()).await;
    let input = json!({ "name": "Ada", "email": "ada@example.com" });
    let (status, body) = api
        .post("/workflows/http-greet?wait=5s", input.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "completed");
    assert_eq!(body["output"]["message"], "Hello, Ada <ada@example.com>");
    assert!(body.get("error").is_none(), "{body}");
    let id = body["run_id"].as_str().unwrap();
    api.run_in(id, "completed").await;

    let (status, body) = api
        .post("/workflows/http-fail?wait=5s", input.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "failed");
    assert_eq!(body["error"]["kind"], "permanent");
    assert_eq!(body["error"]["message"], "no greeting for Ada");
    assert!(body.get("output").is_none(), "{body}");

    // A run that does not end within the wait: 202 with where it stands.
    let (status, body) = api
        .post(
            "/workflows/http-approval?wait=300ms",
            json!({ "item": "laptop" }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "waiting", "{body}");

    // A bad wait is refused before anything is started.
    let (status, body) = api
        .post("/workflows/http-greet?wait=soon", input.clone())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "bad_request", "wait=soon");
    let (status, body) = api.post("/workflows/http-greet?wait=1h", input).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "bad_request", "longest wait");
    let (_, runs) = api.get("/runs?workflow=http-greet").await;
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    api.stop().await;
}

#[tokio::test]
async fn bad_input_is_refused_with_pointers_and_starts_nothing() {
    let api = api(no_auth()).await;
    let (status, body) = api
        .post(
            "/workflows/http-greet",
            json!({ "name": "Ada", "email": "not-an-email" }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_error(&body, "schema", "input of workflow `http-greet`");
    let violations = body["violations"].as_array().unwrap();
    assert_eq!(violations.len(), 1, "{body}");
    assert_eq!(violations[0]["pointer"], "/email");
    assert!(
        violations[0]["message"]
            .as_str()
            .unwrap()
            .contains("not-an-email"),
        "{body}"
    );

    let (status, body) = api
        .post("/workflows/http-greet", json!({ "email": 42 }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let pointers: Vec<&str> = body["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["pointer"].as_str().unwrap())
        .collect();
    assert!(pointers.contains(&"/email"), "{body}");
    assert!(
        pointers.contains(&""),
        "the missing `name` is at the root: {body}"
    );

    // Not JSON at all.
    let (status, body) = send(
        api.client
            .post(api.url("/workflows/http-greet"))
            .header("content-type", "application/json")
            .body("{name: Ada"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "bad_request", "not valid JSON");

    let (status, body) = api.post("/workflows/no-such-flow", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "unknown_workflow", "no-such-flow");

    let (status, runs) = api.get("/runs").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(runs, json!([]), "nothing was enqueued");
    api.stop().await;
}

#[tokio::test]
async fn workflows_are_listed_with_their_schemas() {
    let api = api(no_auth()).await;
    let (status, list) = api.get("/workflows").await;
    assert_eq!(status, StatusCode::OK);
    let list = list.as_array().unwrap();
    let slugs: Vec<&str> = list.iter().map(|w| w["slug"].as_str().unwrap()).collect();
    assert_eq!(slugs, SLUGS);
    let greet = &list[3];
    assert_eq!(greet["description"], "Greets a new user.");
    assert_eq!(
        greet["input_schema"]["properties"]["email"]["format"],
        "email"
    );
    assert_eq!(greet["input_schema"]["required"], json!(["name", "email"]));
    assert_eq!(
        greet["output_schema"]["properties"]["message"]["type"],
        "string"
    );
    let approval = &list[0];
    assert_eq!(
        approval["input_schema"]["properties"]["item"]["type"],
        "string"
    );
    api.stop().await;
}

#[tokio::test]
async fn runs_are_listed_by_status_workflow_and_limit() {
    let api = api(no_auth()).await;
    let input = json!({ "name": "Ada", "email": "ada@example.com" });
    for slug in ["http-greet", "http-greet", "http-fail"] {
        let (status, body) = api
            .post(&format!("/workflows/{slug}?wait=5s"), input.clone())
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let waiting = api
        .start("http-approval", json!({ "item": "laptop" }))
        .await;
    api.run_in(&waiting, "waiting").await;

    let (_, all) = api.get("/runs").await;
    assert_eq!(all.as_array().unwrap().len(), 4, "{all}");
    assert_eq!(all[0]["id"], waiting.as_str(), "newest first");
    for field in [
        "workflow",
        "status",
        "attempt",
        "trigger",
        "created_at",
        "updated_at",
    ] {
        assert!(all[0].get(field).is_some(), "{field} missing: {all}");
    }

    let (status, greets) = api.get("/runs?workflow=http-greet").await;
    assert_eq!(status, StatusCode::OK);
    let greets = greets.as_array().unwrap();
    assert_eq!(greets.len(), 2);
    assert!(greets.iter().all(|r| r["workflow"] == "http-greet"));
    assert!(greets.iter().all(|r| r["status"] == "completed"));

    let (_, failed) = api.get("/runs?status=failed").await;
    assert_eq!(failed.as_array().unwrap().len(), 1, "{failed}");
    assert_eq!(failed[0]["workflow"], "http-fail");

    let (_, waiting_runs) = api.get("/runs?status=waiting&workflow=http-approval").await;
    assert_eq!(waiting_runs[0]["id"], waiting.as_str(), "{waiting_runs}");
    let (_, none) = api.get("/runs?status=waiting&workflow=http-greet").await;
    assert_eq!(none, json!([]));

    let (_, limited) = api.get("/runs?limit=1").await;
    assert_eq!(limited.as_array().unwrap().len(), 1);
    assert_eq!(limited[0]["id"], waiting.as_str());

    let (status, body) = api.get("/runs?status=done").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "bad_request", "done");
    for valid in ["queued", "waiting", "completed", "failed", "canceled"] {
        assert!(body["error"].as_str().unwrap().contains(valid), "{body}");
    }
    let (status, body) = api.get("/runs?limit=many").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "bad_request", "limit=many");
    api.stop().await;
}

#[tokio::test]
async fn a_hook_takes_one_valid_payload_by_post() {
    let api = api(no_auth()).await;
    let id = api
        .start("http-approval", json!({ "item": "laptop" }))
        .await;
    let run = api.run_in(&id, "waiting").await;
    let hook = &run["hooks"][0];
    let url = hook["resume_url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/hooks/", api.base)), "{run}");
    assert_eq!(hook["timeout_at"], Value::Null);
    assert!(hook.get("id").is_some(), "{run}");
    assert!(
        run["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["callee"] == "hook" && s["status"] == "waiting"),
        "{run}"
    );

    // Invalid payload: 422 with the pointer; the hook stays open.
    let (status, body) = send(api.client.post(url).json(&json!({ "decision": 5 }))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_error(&body, "schema", "payload of hook");
    assert_eq!(body["violations"][0]["pointer"], "/decision");
    let run = api.run_in(&id, "waiting").await;
    assert_eq!(run["hooks"].as_array().unwrap().len(), 1, "{run}");

    let (status, body) = send(
        api.client
            .post(url)
            .json(&json!({ "decision": "approved", "note": "go" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({ "run_id": id, "status": "queued" }));

    let (status, body) = send(api.client.post(url).json(&json!({ "decision": "no" }))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_error(&body, "invalid_state", "already");

    let run = api.run_in(&id, "completed").await;
    assert_eq!(
        run["output"],
        json!({ "item": "laptop", "decision": { "decision": "approved", "note": "go" } })
    );
    assert_eq!(run["hooks"], json!([]));

    let (status, body) = api.post("/hooks/not-a-token", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_error(&body, "unknown_hook", "token");
    let (status, body) = api.get("/hooks/not-a-token?decision=yes").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_error(&body, "unknown_hook", "token");
    api.stop().await;
}

#[tokio::test]
async fn a_hook_takes_its_payload_from_a_query_string_by_get() {
    let api = api(no_auth()).await;
    let id = api.start("http-approval", json!({ "item": "desk" })).await;
    let url = api.resume_url(&id).await;

    let (status, body) = send(api.client.get(format!("{url}?decision=a&decision=b"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_error(&body, "bad_request", "`decision`");
    let (status, body) = send(api.client.get(format!("{url}?note=only"))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_error(&body, "schema", "decision");
    api.run_in(&id, "waiting").await;

    let (status, body) = send(
        api.client
            .get(format!("{url}?decision=yes&note=fine%20by%20me")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["run_id"], id.as_str());
    assert_eq!(body["status"], "queued");

    let run = api.run_in(&id, "completed").await;
    assert_eq!(
        run["output"],
        json!({ "item": "desk", "decision": { "decision": "yes", "note": "fine by me" } })
    );
    let (status, body) = send(api.client.get(format!("{url}?decision=again"))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    api.stop().await;
}

#[tokio::test]
async fn cancel_stops_a_waiting_run_and_refuses_an_ended_one() {
    let api = api(no_auth()).await;
    let id = api.start("http-approval", json!({ "item": "chair" })).await;
    let url = api.resume_url(&id).await;

    let (status, body) = api.post(&format!("/runs/{id}/cancel"), json!(null)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({ "run_id": id, "status": "canceled" }));
    let run = api.run_in(&id, "canceled").await;
    assert_eq!(run["hooks"], json!([]));
    assert!(run["error"].is_object(), "{run}");

    let (status, body) = api.post(&format!("/runs/{id}/cancel"), json!(null)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_error(&body, "invalid_state", "canceled");
    // Its hook is closed with it.
    let (status, body) = send(api.client.post(&url).json(&json!({ "decision": "late" }))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    let (_, done) = api
        .post(
            "/workflows/http-greet?wait=5s",
            json!({ "name": "Ada", "email": "ada@example.com" }),
        )
        .await;
    assert_eq!(done["status"], "completed");
    let done_id = done["run_id"].as_str().unwrap();
    let (status, body) = api
        .post(&format!("/runs/{done_id}/cancel"), json!(null))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_error(&body, "invalid_state", "completed");
    api.run_in(done_id, "completed").await;

    let (status, body) = api.post("/runs/no-such-run/cancel", json!(null)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "unknown_run", "no-such-run");
    api.stop().await;
}

#[tokio::test]
async fn cancel_stops_a_sleeping_run_at_once_and_a_running_one_at_its_next_step() {
    let api = api(no_auth()).await;
    let ada = json!({ "name": "Ada", "email": "ada@example.com" });

    let sleeping = api.start("http-nap", ada.clone()).await;
    let run = api.run_in(&sleeping, "sleeping").await;
    assert!(run["wake_at"].is_string(), "{run}");
    let (status, body) = api
        .post(&format!("/runs/{sleeping}/cancel"), json!(null))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "canceled");
    let run = api.run_in(&sleeping, "canceled").await;
    assert_eq!(run["error"]["kind"], "canceled", "{run}");

    let running = api.start("http-busy", ada).await;
    api.run_in(&running, "running").await;
    // Wait until the blocking step is live.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !BLOCK_STARTED.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the step never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, body) = api
        .post(&format!("/runs/{running}/cancel"), json!(null))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["cancel_requested"], true, "{body}");
    let run = api.run_in(&running, "canceled").await;
    let steps: Vec<&str> = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        ["http-block#0"],
        "the greeting step never started: {run}"
    );
    let (_, events) = api.get(&format!("/runs/{running}/events")).await;
    let block = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "step_completed")
        .unwrap();
    assert_eq!(
        block["payload"]["output"]["name"], "canceled",
        "the running action saw its cancellation token"
    );
    api.stop().await;
}

#[tokio::test]
async fn a_bearer_token_guards_everything_but_hooks_and_webhooks() {
    let api = api(HttpOptions {
        api_token: Some("s3cret".into()),
        ..HttpOptions::default()
    })
    .await;
    let bare = |path: &str| api.client.get(api.url(path));

    let response = bare("/workflows").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let (status, body) = send(bare("/workflows")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body, "unauthorized", "Authorization: Bearer");
    let (status, body) = send(bare("/workflows").bearer_auth("s3cre")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body, "unauthorized", "not valid");
    for path in ["/runs", "/runs/x", "/runs/x/events", "/openapi.json"] {
        let (status, _) = send(bare(path)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    let (status, _) = send(
        api.client
            .post(api.url("/workflows/http-approval"))
            .json(&json!({ "item": "lamp" })),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, runs) = api.get("/runs").await;
    assert_eq!(runs, json!([]), "the refused start enqueued nothing");

    // With the token: 200; and the hook is delivered without it.
    let (status, list) = send(bare("/workflows").bearer_auth("s3cret")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), SLUGS.len());
    let id = api.start("http-approval", json!({ "item": "lamp" })).await;
    let url = api.resume_url(&id).await;
    let (status, body) = send(api.client.post(&url).json(&json!({ "decision": "ok" }))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    api.run_in(&id, "completed").await;
    // Webhooks do not ask for the token either (this source does not exist: 404, not 401).
    let (status, body) = send(
        api.client
            .post(api.url("/webhooks/github"))
            .json(&json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_error(&body, "unknown_source", "github");

    let (_, doc) = api.get("/openapi.json").await;
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(doc["security"], json!([{ "bearer": [] }]));
    assert_eq!(
        doc["paths"]["/hooks/{token}"]["post"]["security"],
        json!([])
    );
    api.stop().await;
}

#[tokio::test]
async fn oversized_bodies_are_413_in_json() {
    let api = api(HttpOptions {
        api_token: None,
        body_limit: 1024,
        ..HttpOptions::default()
    })
    .await;
    let big = json!({ "name": "x".repeat(4000), "email": "ada@example.com" });
    let (status, body) = api.post("/workflows/http-greet", big.clone()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_error(&body, "payload_too_large", "1024 bytes");
    let (status, body) = api.post("/hooks/whatever", big.clone()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let (status, body) = api.post("/webhooks/whatever", big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_error(&body, "payload_too_large", "1024 bytes");
    let (_, runs) = api.get("/runs").await;
    assert_eq!(runs, json!([]));
    // Just under the limit is fine.
    let (status, body) = api
        .post(
            "/workflows/http-greet",
            json!({ "name": "x".repeat(900), "email": "ada@example.com" }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    api.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_json() {
    let api = api(no_auth()).await;
    let (status, body) = api.get("/nowhere").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found", "/nowhere");
    let (status, body) = send(api.client.delete(api.url("/runs"))).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_error(&body, "method_not_allowed", "method");
    api.stop().await;
}

/// Every `$ref` in `value`, recursively.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                match (key.as_str(), child) {
                    ("$ref", Value::String(target)) => out.push(target),
                    _ => refs(child, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| refs(item, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_openapi_document_describes_routes_and_each_workflow() {
    let api = api(no_auth()).await;
    let (status, doc) = api.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{doc}");
    for (path, method) in [
        ("/workflows", "get"),
        ("/workflows/{slug}", "post"),
        ("/runs", "get"),
        ("/runs/{id}", "get"),
        ("/runs/{id}/events", "get"),
        ("/runs/{id}/cancel", "post"),
        ("/hooks/{token}", "post"),
        ("/hooks/{token}", "get"),
        ("/webhooks/{source}", "post"),
        ("/openapi.json", "get"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }
    assert!(
        doc.get("security").is_none(),
        "no token, no security: {doc}"
    );

    let schemas = &doc["components"]["schemas"];
    for slug in SLUGS {
        assert!(schemas[format!("{slug}.input")].is_object(), "{slug}");
        assert!(schemas[format!("{slug}.output")].is_object(), "{slug}");
        let start = &doc["paths"][format!("/workflows/{slug}")]["post"];
        assert_eq!(
            start["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            format!("#/components/schemas/{slug}.input"),
            "{start}"
        );
        assert_eq!(
            start["operationId"],
            format!("start_{}", slug.replace('-', "_"))
        );
        assert!(start["responses"].get("404").is_none(), "{start}");
    }
    let greet_in = &schemas["http-greet.input"];
    assert_eq!(greet_in["properties"]["email"]["format"], "email");
    assert!(greet_in.get("$schema").is_none());
    assert_eq!(
        schemas["http-greet.output"]["properties"]["message"]["type"],
        "string"
    );
    let start = &doc["paths"]["/workflows/http-greet"]["post"];
    assert_eq!(start["summary"], "Greets a new user.");
    let ok = serde_json::to_string(&start["responses"]["200"]).unwrap();
    assert!(
        ok.contains("#/components/schemas/http-greet.output"),
        "{ok}"
    );
    assert!(
        start["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "wait"),
        "{start}"
    );
    // `Outcome` nests `Decision`: schemars' `$defs` become components, references follow.
    let decision = &schemas["http-approval.output.Decision"];
    assert_eq!(
        decision["properties"]["decision"]["type"], "string",
        "{schemas}"
    );
    assert_eq!(
        schemas["http-approval.output"]["properties"]["decision"]["$ref"],
        "#/components/schemas/http-approval.output.Decision"
    );
    assert!(schemas["http-approval.output"].get("$defs").is_none());
    // Every reference in the document resolves to a component.
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for target in all {
        let name = target
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected reference {target}"));
        let name = name.split('/').next().unwrap();
        assert!(schemas[name].is_object(), "dangling reference {target}");
    }
    api.stop().await;
}

const WEBHOOK_SECRET: &[u8] = b"webhook secret for the HTTP tests";

/// GitHub-style `sha256=<hex HMAC>` of `body`.
fn signature(body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(WEBHOOK_SECRET).unwrap();
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// A `signup` source: signed, de-duplicated by `x-delivery-id`, body schema `{"kind":
/// string, "user": object}`, only `kind = "signup"`, the user becomes `http-greet`'s input.
fn signup_source() -> WebhookSource {
    WebhookSource::new("signup", "http-greet")
        .secret(WEBHOOK_SECRET)
        .delivery_header("X-Delivery-Id")
        .schema_json(json!({
            "type": "object",
            "properties": { "kind": { "type": "string" }, "user": { "type": "object" } },
            "required": ["kind"]
        }))
        .filter(|body| match body["kind"].as_str() {
            Some("signup") => Ok(()),
            other => Err(format!("kind {other:?} is not a signup")),
        })
        .transform(|body| match body.get("user") {
            Some(user) => Ok(user.clone()),
            None => Err("a signup needs a `user`".into()),
        })
}

#[tokio::test]
async fn webhooks_check_signatures_and_start_runs_once() {
    let api = api_with(no_auth(), |b| b.webhook(signup_source())).await;
    let deliver = |body: Value, id: &str, signed: bool| {
        let bytes = serde_json::to_vec(&body).unwrap();
        let mut request = api
            .client
            .post(api.url("/webhooks/signup"))
            .header("content-type", "application/json")
            .header("X-Delivery-Id", id);
        if signed {
            request = request.header("X-Hub-Signature-256", signature(&bytes));
        }
        send(request.body(bytes))
    };
    let signup = json!({ "kind": "signup", "user": { "name": "Ada", "email": "ada@example.com" } });

    let (status, body) = deliver(signup.clone(), "d-1", false).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_error(&body, "bad_signature", "x-hub-signature-256");
    let (status, body) = send(
        api.client
            .post(api.url("/webhooks/signup"))
            .header("X-Hub-Signature-256", signature(b"{}"))
            .json(&signup),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_error(&body, "bad_signature", "does not match");

    let (status, body) = deliver(signup.clone(), "d-1", true).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["run_id"].as_str().unwrap().to_owned();
    assert_eq!(body, json!({ "run_id": id }));
    let run = api.run_in(&id, "completed").await;
    assert_eq!(run["trigger"], "webhook");
    assert_eq!(run["output"]["message"], "Hello, Ada <ada@example.com>");

    let (status, body) = deliver(signup.clone(), "d-1", true).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({ "run_id": id, "duplicate": true }));

    let (status, body) = deliver(json!({ "kind": "login" }), "d-2", true).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ignored"], true);
    assert!(body["reason"].as_str().unwrap().contains("login"), "{body}");

    let (status, body) = deliver(json!({ "kind": 5 }), "d-3", true).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_error(&body, "schema", "body of webhook `signup`");
    assert_eq!(body["violations"][0]["pointer"], "/kind");

    let (status, body) = deliver(json!({ "kind": "signup" }), "d-4", true).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_error(&body, "transform", "needs a `user`");

    let bad_user = json!({ "kind": "signup", "user": { "name": "Bo", "email": "nope" } });
    let (status, body) = deliver(bad_user, "d-5", true).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["code"], "schema");
    assert_eq!(body["violations"][0]["pointer"], "/email");

    let (status, body) = deliver(signup, "d-6", true).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (_, runs) = api.get("/runs?workflow=http-greet").await;
    assert_eq!(
        runs.as_array().unwrap().len(),
        2,
        "one run per accepted delivery: {runs}"
    );
    api.stop().await;
}
