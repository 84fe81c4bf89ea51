//! Flow control over HTTP (issue 16), on the memory store (whose claim admits queue runs):
//! `POST /workflows/{slug}?queue=&queue_key=&priority=&dedup=` places runs in queues and
//! refuses bad input with 400 creating nothing; `GET /runs/{id}` shows the run's `queue`
//! and, while it waits, `waiting_for` (the limit holding it back, or that no live worker
//! serves it); `GET /queues` counts active, in-window and waiting runs; the UI's run page
//! and `/ui/queues` show the same; the OpenAPI document describes all of it.

use std::time::Duration;

use reprise::event::RunId;
use reprise::http::{HttpOptions, serve};
use reprise::prelude::*;
use reprise::queue::{DebouncePolicy, Queue};
use reprise::{Worker, WorkerOptions};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpListener;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Job {
    customer: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Go {
    ok: bool,
}

/// Waits for a go (a hook), then finishes: it stays admitted (holding its queue place)
/// until the hook is delivered.
#[workflow(slug = "qh-hold")]
async fn qh_hold(ctx: Ctx, input: Job) -> Result<String, WorkflowError> {
    let go: Go = ctx.hook().await?;
    Ok(format!("{} {}", input.customer, go.ok))
}

/// A step of `qh-two-steps`.
#[action]
async fn qh_step(input: Job) -> Result<String, ActionError> {
    Ok(input.customer)
}

/// Two steps in a row (in queue `steps`: the second waits an hour for its permit).
#[workflow(slug = "qh-two-steps")]
async fn qh_two_steps(input: Job) -> Result<String, WorkflowError> {
    qh_step.run(input.clone()).await?;
    Ok(qh_step.run(input).await?)
}

/// One run per customer at a time, three at most in all.
fn serial() -> Queue {
    Queue::new("serial")
        .concurrency(3)
        .key("/customer")
        .key_concurrency(1)
}

struct Api {
    base: String,
    client: reqwest::Client,
    engine: Engine,
}

/// A server on a memory-store engine that knows queues `serial` and `free`; with a
/// worker when `worker` is true.
async fn api(worker: bool) -> Api {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let engine = Engine::builder()
        .public_url(base.clone())
        .register(qh_hold)
        .register(qh_two_steps)
        .register(qh_step)
        .queue(Queue::new("steps").step_rate_limit(1, Duration::from_secs(3600)))
        .queue(serial())
        .queue(Queue::new("free"))
        .queue(Queue::new("paced").rate_limit(10, Duration::from_secs(3600)))
        .queue(
            Queue::new("first-wins")
                .key("/customer")
                .debounce(Duration::from_secs(60), DebouncePolicy::Drop),
        )
        .queue(
            Queue::new("last-wins")
                .key("/customer")
                .debounce(Duration::from_secs(60), DebouncePolicy::Replace),
        )
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
    if worker {
        let worker = Worker::new(
            &engine,
            WorkerOptions {
                poll_interval: Duration::from_millis(30),
                ..WorkerOptions::default()
            },
        );
        tokio::spawn(worker.run(std::future::pending::<()>()));
    }
    Api {
        base,
        client: reqwest::Client::new(),
        engine,
    }
}

impl Api {
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    async fn html(&self, path: &str) -> (StatusCode, String) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    /// `POST /workflows/qh-hold?{query}` for `customer`; the answer.
    async fn start(&self, query: &str, customer: &str) -> (StatusCode, Value) {
        self.post(
            &format!("/workflows/qh-hold?{query}"),
            json!({ "customer": customer }),
        )
        .await
    }

    /// `GET /runs/{id}` once `done` holds for it (10 s at most).
    async fn run_when(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (status, run) = self.get(&format!("/runs/{id}")).await;
            assert_eq!(status, StatusCode::OK, "{run}");
            if done(&run) {
                return run;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "run {id} never {what}: {run}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The queue `name` of `GET /queues`.
    async fn queue(&self, name: &str) -> Value {
        let (status, queues) = self.get("/queues").await;
        assert_eq!(status, StatusCode::OK, "{queues}");
        queues
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["name"] == name)
            .unwrap_or_else(|| panic!("no queue {name} in {queues}"))
            .clone()
    }

    async fn run_count(&self) -> usize {
        let (_, runs) = self.get("/runs").await;
        runs.as_array().unwrap().len()
    }
}

fn id_of(body: &Value) -> String {
    body["run_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_start_places_the_run_in_the_queue_with_its_key_and_priority() {
    let api = api(false).await;
    let (status, body) = api.start("queue=serial&priority=5", "c1").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "queued", "{body}");
    assert!(body.get("created").is_none(), "{body}");
    let id = id_of(&body);
    let (_, run) = api.get(&format!("/runs/{id}")).await;
    assert_eq!(
        run["queue"],
        json!({ "name": "serial", "key": "c1", "priority": 5 }),
        "{run}"
    );
    // An explicit key wins over the queue's pointer; a negative priority is fine.
    let (status, body) = api
        .start("queue=serial&queue_key=vip&priority=-2", "c1")
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (_, run) = api.get(&format!("/runs/{}", id_of(&body))).await;
    assert_eq!(run["queue"]["key"], "vip", "{run}");
    assert_eq!(run["queue"]["priority"], -2, "{run}");
    // A run in no queue shows neither field.
    let (_, body) = api.start("", "c2").await;
    let (_, run) = api.get(&format!("/runs/{}", id_of(&body))).await;
    assert!(run.get("queue").is_none(), "{run}");
}

#[tokio::test]
async fn bad_queue_input_is_400_with_the_engines_sentence_and_creates_nothing() {
    let api = api(false).await;
    let (status, body) = api.start("queue=nope", "c1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains("unknown queue `nope`") && message.contains("`serial`"),
        "{body}"
    );
    let (status, body) = api.start("queue=serial&priority=high", "c1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("`priority=high` is not an integer"),
        "{body}"
    );
    // An empty parameter is no parameter (as HTML forms send them).
    let (status, body) = api
        .post(
            "/workflows/qh-hold?queue=serial&queue_key=",
            json!({ "customer": "c1" }),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "an empty queue_key is no key: {body}"
    );
    let before = api.run_count().await;
    let (status, body) = api.start("priority=3", "c1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("runs in no queue"),
        "{body}"
    );
    assert_eq!(
        api.run_count().await,
        before,
        "a refused start created a run"
    );
}

/// A queue whose key pointer the input does not have: 400, nothing created.
#[tokio::test]
async fn a_key_pointer_missing_from_the_input_is_400() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let engine = Engine::builder()
        .register(qh_hold)
        .queue(Queue::new("by-region").key("/region").key_concurrency(1))
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
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{base}/workflows/qh-hold?queue=by-region"))
        .json(&json!({ "customer": "c1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains("`/region`") && message.contains("does not have"),
        "{body}"
    );
    assert!(
        engine
            .list_runs(&Default::default())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn without_a_live_worker_the_run_says_no_worker_serves_it() {
    let api = api(false).await;
    let (_, body) = api.start("queue=serial", "c1").await;
    let id = id_of(&body);
    let (_, run) = api.get(&format!("/runs/{id}")).await;
    let waiting = &run["waiting_for"];
    assert_eq!(waiting["queue"], "serial", "{run}");
    assert_eq!(waiting["key"], "c1", "{run}");
    assert!(waiting.get("blocked").is_none(), "{run}");
    let unserved = waiting["unserved"].as_str().unwrap_or_default();
    assert!(
        unserved.contains("no live worker serves workflow `qh-hold` in queue `serial`"),
        "{run}"
    );
    let message = waiting["message"].as_str().unwrap();
    assert!(
        message.starts_with("waiting in queue `serial` for a worker; no live worker"),
        "{message}"
    );
    // The run page says the same.
    let (status, page) = api.html(&format!("/ui/runs/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(r#"id="run-queue""#), "{page}");
    assert!(page.contains("not admitted yet"), "{page}");
    assert!(page.contains("no live worker serves workflow"), "{page}");
}

#[tokio::test]
async fn per_key_concurrency_holds_the_second_run_and_every_surface_says_why() {
    let api = api(true).await;
    let (_, first) = api.start("queue=serial", "c1").await;
    let first = id_of(&first);
    let run = api
        .run_when(&first, "waited on its hook", |r| r["status"] == "waiting")
        .await;
    assert!(run["queue"]["admitted_at"].is_string(), "{run}");
    assert!(run.get("waiting_for").is_none(), "{run}");

    let (_, second) = api.start("queue=serial", "c1").await;
    let second = id_of(&second);
    // Another customer is admitted meanwhile: the limit is per key.
    let (_, other) = api.start("queue=serial", "c2").await;
    let other = id_of(&other);
    api.run_when(&other, "was admitted", |r| r["status"] == "waiting")
        .await;
    let run = api
        .run_when(&second, "said it waits for its key", |r| {
            r["waiting_for"]["blocked"]["reason"] == "key_concurrency"
        })
        .await;
    assert_eq!(run["status"], "queued", "{run}");
    assert!(run["queue"].get("admitted_at").is_none(), "{run}");
    assert_eq!(run["waiting_for"]["blocked"]["key"], "c1", "{run}");
    let message = run["waiting_for"]["message"].as_str().unwrap();
    assert_eq!(
        message, "waiting in queue `serial`: key `c1` has 1 of 1 runs at once already",
        "{run}"
    );

    let queue = api.queue("serial").await;
    assert_eq!(queue["active"], 2, "{queue}");
    assert_eq!(queue["waiting"], 1, "{queue}");
    assert_eq!(queue["concurrency"], 3, "{queue}");
    assert_eq!(queue["key_concurrency"], 1, "{queue}");
    assert_eq!(queue["key"], "/customer", "{queue}");
    assert_eq!(api.queue("free").await["waiting"], 0);

    // The UI shows it too.
    let (status, page) = api.html(&format!("/ui/runs/{second}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(r#"data-queue="serial""#), "{page}");
    assert!(
        page.contains("key `c1` has 1 of 1 runs at once already"),
        "{page}"
    );
    let (status, page) = api.html("/ui/queues").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(r#"<tr data-queue="serial">"#), "{page}");
    assert!(page.contains(r#"data-active="2""#), "{page}");
    assert!(page.contains(r#"data-waiting="1""#), "{page}");
    assert!(page.contains("concurrency 3, 1 per key"), "{page}");
    assert!(page.contains(r#"href="/ui/queues""#), "nav links the page");

    // Once the first run ends, the second is admitted.
    let (_, run) = api.get(&format!("/runs/{first}")).await;
    let url = run["hooks"][0]["resume_url"].as_str().unwrap().to_owned();
    let response = api
        .client
        .post(url)
        .json(&json!({ "ok": true }))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    api.run_when(&first, "completed", |r| r["status"] == "completed")
        .await;
    let run = api
        .run_when(&second, "was admitted", |r| r["status"] == "waiting")
        .await;
    assert!(run["queue"]["admitted_at"].is_string(), "{run}");
    let queue = api.queue("serial").await;
    assert_eq!(queue["active"], 2, "{queue}");
    assert_eq!(queue["waiting"], 0, "{queue}");
    drop(api.engine);
}

#[tokio::test]
async fn a_step_waiting_for_its_step_permit_shows_in_the_run_the_queues_and_the_ui() {
    let api = api(true).await;
    let (status, body) = api
        .post(
            "/workflows/qh-two-steps?queue=steps",
            json!({ "customer": "c1" }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = id_of(&body);
    // Its first step takes the hour's one permit; the second waits, the run running.
    let run = api
        .run_when(&id, "said its steps wait", |r| {
            r["waiting_for"]["step_permits"].is_object()
        })
        .await;
    assert_eq!(run["status"], "running", "{run}");
    let permits = &run["waiting_for"]["step_permits"];
    assert_eq!(
        (permits["limit"].clone(), permits["taken"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(permits["period_ms"], 3_600_000, "{run}");
    assert!(permits["next_at"].is_string(), "{run}");
    let message = run["waiting_for"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "its steps wait for a step permit: 1 of the queue's step rate limit of 1 per 1h \
             taken; steps wait for a permit until "
        ),
        "{message}"
    );
    let queue = api.queue("steps").await;
    assert_eq!(queue["step_rate_limit"]["limit"], 1, "{queue}");
    assert_eq!(queue["step_rate_limit"]["period"], "1h", "{queue}");
    assert_eq!(queue["step_permits_in_window"], 1, "{queue}");
    assert_eq!(queue["next_step_permit_at"], permits["next_at"], "{queue}");
    assert!(
        api.queue("free")
            .await
            .get("step_permits_in_window")
            .is_none()
    );
    let (status, page) = api.html("/ui/queues").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("1 steps per 1h"), "{page}");
    assert!(page.contains(r#"data-step-permits="1""#), "{page}");
    let (status, page) = api.html(&format!("/ui/runs/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("its steps wait for a step permit"), "{page}");
    api.engine.cancel(&RunId::from(id.as_str())).await.unwrap();
}

#[tokio::test]
async fn a_dedup_id_answers_with_the_unfinished_run_and_created_false() {
    let api = api(false).await;
    let (status, body) = api.start("queue=free&dedup=nightly-1", "c1").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["created"], true, "{body}");
    let id = id_of(&body);
    let (status, body) = api.start("queue=free&dedup=nightly-1", "c9").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["created"], false, "{body}");
    assert_eq!(body["run_id"], id.as_str(), "{body}");
    assert_eq!(body["status"], "queued", "{body}");
    assert_eq!(api.run_count().await, 1);
    // Another id is another run.
    let (status, body) = api.start("queue=free&dedup=nightly-2", "c1").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_ne!(body["run_id"], id.as_str());
}

#[tokio::test]
async fn a_debounced_start_says_whether_it_created_a_run() {
    let api = api(false).await;
    // `drop`: the first start within the window wins; later ones answer with it.
    let (status, first) = api.start("queue=first-wins", "c1").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    assert_eq!(first["created"], true, "{first}");
    let (status, again) = api.start("queue=first-wins", "c1").await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["created"], false, "{again}");
    assert_eq!(again["run_id"], first["run_id"], "{again}");
    // `replace`: each start makes a new pending run and cancels the one before.
    let (status, first) = api.start("queue=last-wins", "c1").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let (status, second) = api.start("queue=last-wins", "c1").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{second}");
    assert_eq!(second["created"], true, "{second}");
    assert_ne!(second["run_id"], first["run_id"], "{second}");
    let (_, replaced) = api.get(&format!("/runs/{}", id_of(&first))).await;
    assert_eq!(replaced["status"], "canceled", "{replaced}");
    let (_, pending) = api.get(&format!("/runs/{}", id_of(&second))).await;
    assert_eq!(pending["status"], "queued", "{pending}");
    assert!(
        pending["wake_at"].is_string(),
        "due at the window's end: {pending}"
    );
}

#[tokio::test]
async fn the_openapi_document_describes_queues() {
    let api = api(false).await;
    let (status, doc) = api.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["paths"]["/queues"]["get"].is_object(),
        "{}",
        doc["paths"]
    );
    let start = &doc["paths"]["/workflows/{slug}"]["post"];
    let params: Vec<&str> = start["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for name in ["queue", "queue_key", "priority", "dedup"] {
        assert!(params.contains(&name), "{name} not in {params:?}");
    }
    let schemas = &doc["components"]["schemas"];
    for field in ["queue", "waiting_for"] {
        assert!(
            schemas["RunDetail"]["properties"][field].is_object(),
            "{field}: {}",
            schemas["RunDetail"]
        );
    }
    for field in [
        "name",
        "active",
        "admitted_in_window",
        "waiting",
        "rate_limit",
        "step_rate_limit",
        "step_permits_in_window",
        "next_step_permit_at",
    ] {
        assert!(
            schemas["QueueView"]["properties"][field].is_object(),
            "{field}: {}",
            schemas["QueueView"]
        );
    }
}

/// The ids of `GET {path}` (a run listing), in order.
async fn listed(api: &Api, path: &str) -> Vec<String> {
    let (status, runs) = api.get(path).await;
    assert_eq!(status, StatusCode::OK, "{path}: {runs}");
    runs.as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn get_runs_filters_by_queue_and_refuses_a_bad_queue_name() {
    let api = api(false).await;
    let (_, a) = api.start("queue=serial", "c1").await;
    let (_, b) = api.start("queue=serial", "c2").await;
    let (_, free) = api.start("queue=free", "c1").await;
    let (_, none) = api.start("", "c1").await;
    let (a, b, free, none) = (id_of(&a), id_of(&b), id_of(&free), id_of(&none));
    let mut serial = listed(&api, "/runs?queue=serial").await;
    serial.sort();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(serial, expected);
    assert_eq!(listed(&api, "/runs?queue=free").await, [free.as_str()]);
    assert_eq!(
        listed(&api, "/runs?queue=serial&status=queued").await.len(),
        2
    );
    assert!(
        listed(&api, "/runs?queue=serial&status=completed")
            .await
            .is_empty()
    );
    assert!(listed(&api, "/runs?queue=last-wins").await.is_empty());
    // An empty value is no filter.
    assert!(listed(&api, "/runs?queue=").await.contains(&none));
    let (status, body) = api.get("/runs?queue=no%20spaces").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("`queue`") && error.contains("no spaces") && error.contains("ASCII"),
        "{body}"
    );
    // The OpenAPI document lists the parameter.
    let (_, doc) = api.get("/openapi.json").await;
    let params: Vec<&str> = doc["paths"]["/runs"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(params.contains(&"queue"), "{params:?}");
    // The UI's runs page filters the same way and offers the engine's queues.
    let (status, page) = api.html("/ui?queue=serial").await;
    assert_eq!(status, StatusCode::OK);
    for id in [&a, &b] {
        assert!(page.contains(&format!(r#"data-run-id="{id}""#)), "{page}");
    }
    for id in [&free, &none] {
        assert!(!page.contains(&format!(r#"data-run-id="{id}""#)), "{page}");
    }
    assert!(
        page.contains(r#"<option value="serial" selected>serial</option>"#),
        "{page}"
    );
    let (status, page) = api.html("/ui?queue=no%20spaces").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    // `/ui/queues` links each queue to its runs, and its waiting count to those queued.
    let (_, page) = api.html("/ui/queues").await;
    assert!(page.contains(r#"href="/ui?queue=serial""#), "{page}");
    assert!(
        page.contains(r#"href="/ui?queue=serial&amp;status=queued""#),
        "{page}"
    );
}

/// The value of the sample `name{queue="queue"}` in OpenMetrics `text`.
fn sample(text: &str, name: &str, queue: &str) -> Option<i64> {
    let prefix = format!("{name}{{queue=\"{queue}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn metrics_show_each_queues_active_waiting_and_in_window_counts() {
    let api = api(true).await;
    let (_, first) = api.start("queue=serial", "c1").await;
    let first = id_of(&first);
    api.run_when(&first, "was admitted", |r| r["status"] == "waiting")
        .await;
    let (_, second) = api.start("queue=serial", "c1").await;
    let second = id_of(&second);
    api.run_when(&second, "said it waits for its key", |r| {
        r["waiting_for"]["blocked"]["reason"] == "key_concurrency"
    })
    .await;
    let (_, paced) = api.start("queue=paced", "c7").await;
    let paced = id_of(&paced);
    api.run_when(&paced, "was admitted", |r| r["status"] == "waiting")
        .await;
    let response = api
        .client
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert_eq!(
        sample(&text, "reprise_queue_active", "serial"),
        Some(1),
        "{text}"
    );
    assert_eq!(
        sample(&text, "reprise_queue_waiting", "serial"),
        Some(1),
        "{text}"
    );
    assert_eq!(
        sample(&text, "reprise_queue_admitted_in_window", "serial"),
        Some(0),
        "no rate limit: {text}"
    );
    assert_eq!(
        sample(&text, "reprise_queue_active", "paced"),
        Some(1),
        "{text}"
    );
    assert_eq!(
        sample(&text, "reprise_queue_admitted_in_window", "paced"),
        Some(1),
        "{text}"
    );
    assert_eq!(
        sample(&text, "reprise_queue_waiting", "free"),
        Some(0),
        "{text}"
    );
    assert!(text.contains("# TYPE reprise_queue_active gauge"), "{text}");
}
