//! The web UI at `/ui` over real HTTP on 127.0.0.1 (no browser: the examples' `ui_browser`
//! test drives Chromium): pages render from the engine's state, unknown runs get the UI's
//! HTML 404 page, the timeline nests sub-workflow steps and shows retried attempts, hook
//! forms are built from the hook's schema, assets are served from the binary and pages
//! load nothing from another origin, and with an API token the pages redirect to
//! `/ui/login`, whose cookie then opens the pages and the API alike.
//!
//! `measure_run_page_of_1000_steps` is a measurement, not a test (ignored; run it with
//! `cargo test -p reprise --test it ui::measure -- --ignored --nocapture`).

use std::time::{Duration, Instant};

use reprise::event::{RunId, RunStatus};
use reprise::http::{HttpOptions, serve};
use reprise::prelude::*;
use reprise::{Worker, WorkerOptions};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use tokio::net::TcpListener;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Parcel {
    /// Where it goes.
    city: String,
    weight: u32,
}

/// Weighs the parcel; the scale is not ready on the first attempt (retryable).
#[action(retries = 3, backoff = "10ms")]
async fn ui_weigh(input: Parcel, cx: ActionCtx) -> Result<u32, ActionError> {
    if cx.attempt() == 1 {
        return Err(ActionError::new("scale", "the scale is not ready", true));
    }
    Ok(input.weight)
}

/// Labels the parcel.
#[action]
async fn ui_label(input: Parcel) -> Result<String, ActionError> {
    Ok(format!("to {}", input.city))
}

/// Labels a parcel (a sub-workflow).
#[workflow(slug = "ui-label-parcel")]
async fn ui_label_parcel(input: Parcel) -> Result<String, WorkflowError> {
    Ok(ui_label.run(input).await?)
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
enum Speed {
    Slow,
    Fast,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Pickup {
    /// Who picks it up.
    courier: String,
    speed: Speed,
    insured: bool,
}

/// Weighs, labels in a sub-workflow, then waits for a pickup.
#[workflow(slug = "ui-parcel")]
async fn ui_parcel(ctx: Ctx, input: Parcel) -> Result<String, WorkflowError> {
    ctx.tag("city", input.city.clone()).await?;
    let weight = ui_weigh.run(input.clone()).await?;
    let label = ui_label_parcel.run(input).await?;
    let pickup: Pickup = ctx.hook().await?;
    Ok(format!("{label}, {weight} g, by {}", pickup.courier))
}

/// Counts up `n` times: one step per count.
#[action]
async fn ui_count(n: u32) -> Result<u32, ActionError> {
    Ok(n + 1)
}

/// Calls `ui-count` `input` times in a row.
#[workflow(slug = "ui-many")]
async fn ui_many(input: u32) -> Result<u32, WorkflowError> {
    let mut n = 0;
    for _ in 0..input {
        n = ui_count.run(n).await?;
    }
    Ok(n)
}

/// Always fails.
#[workflow(slug = "ui-broken")]
async fn ui_broken(input: u32) -> Result<u32, WorkflowError> {
    Err(WorkflowError::permanent(format!("{input} is broken")))
}

/// Asks the model for a slogan.
#[workflow(slug = "ui-slogan")]
async fn ui_slogan(topic: String) -> Result<String, WorkflowError> {
    Ok(reprise::llm::prompt_llm(format!("A slogan for {topic}"))
        .model("fake/model")
        .await?)
}

/// A model that always answers the same, using 10 prompt and 5 completion tokens.
struct OneReply;

#[async_trait::async_trait]
impl reprise::llm::LlmProvider for OneReply {
    async fn complete(
        &self,
        _request: reprise::llm::LlmRequest,
    ) -> Result<reprise::llm::LlmResponse, reprise::llm::LlmError> {
        Ok(reprise::llm::LlmResponse {
            message: reprise::llm::ChatMessage::assistant("Parcels, promptly."),
            usage: reprise::llm::Usage {
                prompt_tokens: 10,
                completion_tokens: 5,
                total_tokens: 15,
                cached_tokens: 0,
            },
            model: "model".into(),
            finish_reason: None,
        })
    }
}

/// Publishes where the parcel is, then waits for the `picked-up` signal.
#[workflow(slug = "ui-track")]
async fn ui_track(ctx: Ctx, input: Parcel) -> Result<String, WorkflowError> {
    ctx.publish("where", &input.city).await?;
    let pickup = ctx.signal::<Pickup>("picked-up").recv().await?;
    ctx.publish("where", &"on the road").await?;
    Ok(pickup.courier)
}

/// Answers one `set-courier` update with the courier's name.
#[workflow(slug = "ui-courier")]
async fn ui_courier(ctx: Ctx, _input: Parcel) -> Result<String, WorkflowError> {
    let request = ctx.updates::<Pickup, String>("set-courier").recv().await?;
    let courier = request.input().courier.clone();
    request.reply(Ok(format!("courier is {courier}"))).await?;
    Ok(courier)
}

struct Ui {
    base: String,
    http: reqwest::Client,
    engine: Engine,
}

async fn ui(token: Option<&str>) -> Ui {
    ui_on(token, None).await
}

/// [`ui`] on a SQLite database at `sqlite` (the in-memory store without).
async fn ui_on(token: Option<&str>, sqlite: Option<&std::path::Path>) -> Ui {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let base = format!("http://{}", listener.local_addr().expect("its address"));
    let mut builder = Engine::builder();
    if let Some(path) = sqlite {
        builder = builder.sqlite(path).expect("a SQLite database");
    }
    let engine = builder
        .public_url(base.clone())
        .register(ui_parcel)
        .register(ui_label_parcel)
        .register(ui_weigh)
        .register(ui_label)
        .register(ui_many)
        .register(ui_count)
        .register(ui_broken)
        .register(ui_slogan)
        .register(ui_track)
        .register(ui_courier)
        .llm(std::sync::Arc::new(OneReply))
        // $100,000 / $200,000 per million tokens: the 10 + 5 tokens of a reply cost $2.00.
        .prices(reprise::cost::PriceTable::empty().with(
            "model",
            reprise::cost::ModelPrice::new(100_000.0, 200_000.0),
        ))
        .build()
        .expect("an engine");
    let options = HttpOptions {
        api_token: token.map(str::to_owned),
        ..HttpOptions::default()
    };
    tokio::spawn(serve(
        engine.clone(),
        listener,
        options,
        std::future::pending(),
    ));
    let worker = Worker::new(
        &engine,
        WorkerOptions {
            poll_interval: Duration::from_millis(20),
            ..WorkerOptions::default()
        },
    );
    tokio::spawn(worker.run(std::future::pending::<()>()));
    Ui {
        base,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client"),
        engine,
    }
}

impl Ui {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path`: status, content type, body.
    async fn get(&self, path: &str) -> (StatusCode, String, String) {
        let response = self.http.get(self.url(path)).send().await.expect("GET");
        let status = response.status();
        let kind = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (status, kind, response.text().await.expect("a body"))
    }

    async fn wait_for(&self, id: &RunId, status: RunStatus) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let run = self.engine.get_run(id).await.expect("the run");
            if run.status == status {
                return;
            }
            assert!(Instant::now() < deadline, "run {id} stayed {}", run.status);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Every `src`/`href` of a page points at this server (no CDN, no other origin).
fn assert_no_other_origin(page: &str) {
    for attribute in ["src=\"", "href=\""] {
        for (at, _) in page.match_indices(attribute) {
            let value = &page[at + attribute.len()..];
            assert!(
                value.starts_with('/') || value.starts_with("data:") || value.starts_with('#'),
                "a reference outside this server: {}",
                &value[..value.len().min(80)]
            );
        }
    }
}

#[tokio::test]
async fn pages_render_the_run_its_timeline_and_a_hook_form_from_the_schema() {
    let ui = ui(None).await;
    let id = ui
        .engine
        .start(
            &ui_parcel,
            Parcel {
                city: "Lyon".into(),
                weight: 1200,
            },
        )
        .await
        .expect("started");
    ui.wait_for(&id, RunStatus::Waiting).await;

    // The runs page lists it; a text search by its id finds it alone.
    let (status, kind, page) = ui.get("/ui").await;
    assert_eq!(status, StatusCode::OK);
    assert!(kind.starts_with("text/html"), "{kind}");
    assert!(page.contains(&format!("href=\"/ui/runs/{id}\"")), "{page}");
    assert_no_other_origin(&page);
    let (_, _, found) = ui.get(&format!("/ui?q={id}")).await;
    assert!(found.contains(&format!("data-run-id=\"{id}\"")));
    let (_, _, filtered) = ui.get("/ui?workflow=ui-many").await;
    assert!(!filtered.contains(&format!("data-run-id=\"{id}\"")));
    // By tag, and by creation time.
    let (_, _, tagged) = ui.get("/ui?q=city%3DLyon").await;
    assert!(
        tagged.contains(&format!("data-run-id=\"{id}\"")),
        "{tagged}"
    );
    let (_, _, other) = ui.get("/ui?q=city%3DParis").await;
    assert!(!other.contains(&format!("data-run-id=\"{id}\"")));
    let (_, _, recent) = ui.get("/ui?since=1h").await;
    assert!(recent.contains(&format!("data-run-id=\"{id}\"")));
    let (_, _, old) = ui.get("/ui?to=2001-01-01T00%3A00").await;
    assert!(!old.contains(&format!("data-run-id=\"{id}\"")));
    let (_, _, later) = ui.get("/ui?from=2001-01-01T00%3A00").await;
    assert!(later.contains(&format!("data-run-id=\"{id}\"")));
    let (status, _, bad) = ui.get("/ui?from=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(bad.contains("not a time"), "{bad}");

    // The run page: the timeline nests the sub-workflow's step under it, and shows the
    // retried attempt with its error.
    let (status, _, page) = ui.get(&format!("/ui/runs/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_no_other_origin(&page);
    for step in [
        "ui-weigh#0",
        "ui-label-parcel#0",
        "ui-label-parcel#0/ui-label#0",
        "hook#0",
    ] {
        assert!(
            page.contains(&format!("data-step=\"{step}\"")),
            "no {step}: {page}"
        );
    }
    assert!(
        page.contains("padding-left:28px"),
        "the nested step is indented"
    );
    assert!(
        page.contains("the scale is not ready"),
        "the retried attempt's error"
    );
    assert!(page.contains("Attempt 1 failed"), "{page}");
    // The hook's form, one field per property of its schema, posting to its token.
    for pointer in ["/courier", "/speed", "/insured"] {
        assert!(
            page.contains(&format!("data-pointer=\"{pointer}\"")),
            "{pointer}"
        );
    }
    assert!(
        page.contains("<option value=\"&quot;Fast&quot;\">Fast</option>"),
        "{page}"
    );
    assert!(page.contains("data-action=\"/hooks/"));
    // The live part alone, for ui.js.
    let (_, _, fragment) = ui.get(&format!("/ui/runs/{id}?fragment=body")).await;
    assert!(!fragment.contains("<html"));
    assert!(fragment.contains("data-run-status=\"waiting\""));

    // The lit graph and the workflow pages.
    let (status, _, graph) = ui.get(&format!("/ui/runs/{id}/graph")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(graph.contains("<svg"), "{graph}");
    assert!(graph.contains("not reached"), "the legend");
    let (_, _, list) = ui.get("/ui/workflows").await;
    assert!(list.contains("href=\"/ui/workflows/ui-parcel\""));
    let (_, _, workflow) = ui.get("/ui/workflows/ui-parcel").await;
    assert!(workflow.contains("data-action=\"/workflows/ui-parcel\""));
    assert!(workflow.contains("data-pointer=\"/city\""));
    assert!(
        workflow.contains("Where it goes."),
        "the field's description"
    );
    assert!(
        workflow.contains(&format!("href=\"/ui/runs/{id}\"")),
        "recent runs"
    );
}

#[tokio::test]
async fn an_llm_step_shows_its_tokens_on_the_run_page() {
    let ui = ui(None).await;
    let id = ui
        .engine
        .start(&ui_slogan, "parcels".to_owned())
        .await
        .expect("started");
    ui.wait_for(&id, RunStatus::Completed).await;
    let (_, _, page) = ui.get(&format!("/ui/runs/{id}")).await;
    assert!(page.contains("15 tokens (10 in, 5 out)"), "{page}");
    assert!(page.contains("<dt>Cost</dt>"), "the run's cost");
    // The run's cost and its LLM step's, priced on the step's model `fake/model`.
    assert!(page.matches("$2.00").count() >= 2, "{page}");
}

#[tokio::test]
async fn a_run_page_shows_published_state_and_a_form_per_signal_that_delivers_it() {
    let ui = ui(None).await;
    let parcel = Parcel {
        city: "Bergen".into(),
        weight: 2,
    };
    let id = ui.engine.start(&ui_track, parcel).await.expect("started");
    ui.wait_for(&id, RunStatus::Waiting).await;
    let (status, _, page) = ui.get(&format!("/ui/runs/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Published state"), "{page}");
    assert!(page.contains("data-state-key=\"where\""), "the state row");
    assert!(page.contains("Bergen"), "its value");
    // The signal's form posts to the signal route, with a field per property of its type
    // (and the enum's choices).
    assert!(
        page.contains("data-signal=\"picked-up\""),
        "the signal panel"
    );
    assert!(
        page.contains(&format!("/runs/{id}/signals/picked-up")),
        "its action"
    );
    assert!(
        page.contains("courier") && page.contains("Fast"),
        "fields from the schema"
    );
    // What the form posts: a wrong payload is refused with the pointer, a right one delivered.
    let url = ui.url(&format!("/runs/{id}/signals/picked-up"));
    let refused = ui
        .http
        .post(&url)
        .json(&json!({"courier": "Ada"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let accepted = ui
        .http
        .post(&url)
        .json(&json!({"courier": "Ada", "speed": "Fast", "insured": true}))
        .send()
        .await
        .expect("POST");
    let code = accepted.status();
    assert_eq!(
        code,
        StatusCode::ACCEPTED,
        "{}",
        accepted.text().await.unwrap_or_default()
    );
    ui.wait_for(&id, RunStatus::Completed).await;
    let (_, _, page) = ui.get(&format!("/ui/runs/{id}")).await;
    assert!(page.contains("on the road"), "the latest value");
    assert!(
        !page.contains("data-signal="),
        "no form once the run has ended"
    );
}

#[tokio::test]
async fn a_run_page_offers_a_form_per_update_whose_post_gets_the_runs_answer() {
    let ui = ui(None).await;
    let parcel = Parcel {
        city: "Oslo".into(),
        weight: 1,
    };
    let id = ui.engine.start(&ui_courier, parcel).await.expect("started");
    ui.wait_for(&id, RunStatus::Waiting).await;
    let (_, _, page) = ui.get(&format!("/ui/runs/{id}")).await;
    assert!(
        page.contains("data-update=\"set-courier\""),
        "the update panel"
    );
    let action = format!("/runs/{id}/updates/set-courier?wait=30s");
    assert!(page.contains(&action), "its action");
    assert!(
        !page.contains("data-signal="),
        "no signal forms: it receives none"
    );
    // What the form posts: the run answers while the caller waits.
    let answer = ui
        .http
        .post(ui.url(&action))
        .json(&json!({"courier": "Ada", "speed": "Slow", "insured": false}))
        .send()
        .await
        .expect("POST");
    assert_eq!(answer.status(), StatusCode::OK);
    let body: Value = answer.json().await.expect("JSON");
    assert_eq!(body["result"], "courier is Ada");
}

#[tokio::test]
async fn a_run_page_offers_the_operations_its_status_allows() {
    let ui = ui(None).await;
    let failed = ui.engine.start(&ui_broken, 7).await.expect("started");
    ui.wait_for(&failed, RunStatus::Failed).await;
    let (_, _, page) = ui.get(&format!("/ui/runs/{failed}")).await;
    assert!(page.contains(&format!("data-post=\"/runs/{failed}/retry\"")));
    assert!(page.contains(&format!("data-post=\"/runs/{failed}/restart\"")));
    assert!(!page.contains(&format!("data-post=\"/runs/{failed}/cancel\"")));
    assert!(page.contains("7 is broken"), "the error");
    let waiting = ui
        .engine
        .start(
            &ui_parcel,
            Parcel {
                city: "Oslo".into(),
                weight: 1,
            },
        )
        .await
        .expect("started");
    ui.wait_for(&waiting, RunStatus::Waiting).await;
    let (_, _, page) = ui.get(&format!("/ui/runs/{waiting}")).await;
    for action in ["cancel", "pause", "restart"] {
        assert!(
            page.contains(&format!("data-post=\"/runs/{waiting}/{action}\"")),
            "{action}"
        );
    }
    assert!(!page.contains(&format!("data-post=\"/runs/{waiting}/retry\"")));
}

#[tokio::test]
async fn unknown_runs_and_pages_get_the_ui_404_page_in_html() {
    let ui = ui(None).await;
    for path in [
        "/ui/runs/no-such-run",
        "/ui/runs/no-such-run/graph",
        "/ui/workflows/nope",
        "/ui/nothing/here",
    ] {
        let (status, kind, page) = ui.get(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(kind.starts_with("text/html"), "{path}: {kind}");
        assert!(page.contains("404"), "{path}: {page}");
    }
    let (_, _, page) = ui.get("/ui/runs/no-such-run").await;
    assert!(page.contains("No run has the id `no-such-run`"), "{page}");
    // The API's unknown routes stay JSON.
    let (status, kind, _) = ui.get("/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(kind.starts_with("application/json"), "{kind}");
}

#[tokio::test]
async fn assets_are_served_from_the_binary() {
    let ui = ui(None).await;
    let (_, _, page) = ui.get("/ui").await;
    let css = page
        .split("href=\"")
        .find_map(|rest| rest.split('"').next().filter(|h| h.ends_with(".css")))
        .expect("a stylesheet link")
        .to_owned();
    let js = page
        .split("src=\"")
        .find_map(|rest| rest.split('"').next().filter(|h| h.ends_with(".js")))
        .expect("a script")
        .to_owned();
    let (status, kind, body) = ui.get(&css).await;
    assert_eq!(
        (status, kind.starts_with("text/css")),
        (StatusCode::OK, true)
    );
    assert!(body.contains(".timeline"));
    let (status, kind, body) = ui.get(&js).await;
    assert_eq!(
        (status, kind.starts_with("text/javascript")),
        (StatusCode::OK, true)
    );
    assert!(body.contains("EventSource"));
    let (status, _, _) = ui.get("/ui/assets/other.js").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn with_a_token_pages_redirect_to_login_whose_cookie_opens_pages_and_api() {
    let ui = ui(Some("tok-en")).await;
    let id = ui.engine.start(&ui_many, 2).await.expect("started");

    let response = ui
        .http
        .get(ui.url("/ui/workflows?x=1"))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        response.headers()[LOCATION],
        "/ui/login?next=/ui/workflows%3Fx%3D1"
    );
    // The login page and the assets need no token.
    let (status, _, login) = ui.get("/ui/login").await;
    assert_eq!(status, StatusCode::OK);
    assert!(login.contains("form id=\"login\""));
    let css = login
        .split("href=\"")
        .find_map(|rest| rest.split('"').next().filter(|h| h.ends_with(".css")))
        .expect("a stylesheet link")
        .to_owned();
    assert_eq!(ui.get(&css).await.0, StatusCode::OK);

    let login = |token: &str| {
        ui.http
            .post(ui.url("/ui/login"))
            .json(&json!({ "token": token }))
            .send()
    };
    let refused = login("wrong").await.expect("POST");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused.headers().get(SET_COOKIE).is_none());
    let accepted = login("tok-en").await.expect("POST");
    assert_eq!(accepted.status(), StatusCode::NO_CONTENT);
    let cookie = accepted.headers()[SET_COOKIE]
        .to_str()
        .expect("text")
        .to_owned();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    let pair = cookie.split(';').next().expect("name=value").to_owned();

    let with_cookie = |path: &str| {
        ui.http
            .get(ui.url(path))
            .header(COOKIE, pair.clone())
            .send()
    };
    assert_eq!(
        with_cookie("/ui").await.expect("GET").status(),
        StatusCode::OK
    );
    assert_eq!(
        with_cookie(&format!("/ui/runs/{id}"))
            .await
            .expect("GET")
            .status(),
        StatusCode::OK
    );
    let runs = with_cookie("/runs").await.expect("GET");
    assert_eq!(
        runs.status(),
        StatusCode::OK,
        "the API takes the cookie too"
    );
    // The cross-site rules still hold for cookie-carrying requests.
    let cross = ui
        .http
        .post(ui.url(&format!("/runs/{id}/cancel")))
        .header(COOKIE, pair.clone())
        .header("origin", "http://evil.example")
        .send()
        .await
        .expect("POST");
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    // A cookie with another token opens nothing.
    let forged = ui
        .http
        .get(ui.url("/runs"))
        .header(COOKIE, "reprise_token=d3Jvbmc")
        .send()
        .await
        .expect("GET");
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    let body: Value = forged.json().await.expect("JSON");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("/ui/login"),
        "{body}"
    );
    // Logging out clears the cookie.
    let out = ui
        .http
        .post(ui.url("/ui/logout"))
        .header(COOKIE, pair.clone())
        .send()
        .await
        .expect("POST");
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    let cleared = out.headers()[SET_COOKIE].to_str().expect("text");
    assert!(cleared.starts_with("reprise_token=;"), "{cleared}");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
}

#[tokio::test]
#[ignore = "a measurement, not a test: cargo test -p reprise --test it ui::measure -- --ignored --nocapture"]
async fn measure_run_page_of_1000_steps() {
    let dir = tempfile::tempdir().expect("a directory");
    let ui = ui_on(None, Some(&dir.path().join("measure.db"))).await;
    let id = ui.engine.start(&ui_many, 1000).await.expect("started");
    ui.wait_for(&id, RunStatus::Completed).await;
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let (status, _, page) = ui.get(&format!("/ui/runs/{id}")).await;
        times.push(started.elapsed());
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("(1000 steps)"));
    }
    let events = ui.engine.events(&id).await.expect("events").len();
    times.sort();
    println!(
        "GET /ui/runs/{{id}} of a 1,000-step run ({events} events, SQLite), 5 requests: min {:?}, median {:?}, max {:?}",
        times[0], times[2], times[4]
    );
}
