//! The web UI at `/ui` in a real headless Chromium, driven over WebDriver (`fantoccini`
//! and `chromedriver`), against the example app's `dev` on an ephemeral port with a
//! temporary SQLite database: the runs page, clicking through to a run, delivering a hook
//! through the form built from its schema (an invalid payload first: its violations show
//! next to the field and the hook stays open), a sleeping run completing live without a
//! reload, canceling, the lit graph, starting a run from a workflow's form, the 404 page,
//! the login a token requires; the queues page (`/ui/queues`) with its limits and counts,
//! and its link to the runs of a queue. Screenshots of each page go to
//! `target/ui-screenshots/`; the run page and the lit graph are also written to
//! `docs/img/ui-run.png` and `docs/img/ui-graph.png` (the README shows them) when those are
//! missing or `REPRISE_UPDATE_UI_IMAGES=1`.
//!
//! Needs `/usr/bin/chromedriver` and `/usr/bin/chromium` (Debian `chromium-driver`,
//! `chromium`): without them the test prints a notice and passes, unless
//! `REPRISE_REQUIRE_BROWSER=1` (CI sets it), which makes their absence a failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use reprise_testkit::TempDb;
use serde_json::{Value, json};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// How long a page may take to show what a step waits for (runs are started by a worker
/// polling the database; the test machine may be busy).
const PATIENCE: Duration = Duration::from_secs(60);

/// Whether the browser is installed; when not, `None` after a notice (or a panic when
/// `REPRISE_REQUIRE_BROWSER=1`).
fn browser_installed() -> bool {
    let missing: Vec<&str> = [CHROMEDRIVER, CHROMIUM]
        .into_iter()
        .filter(|path| !Path::new(path).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let required = std::env::var("REPRISE_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "REPRISE_REQUIRE_BROWSER=1 but {} is missing; install it with \
         `apt-get install -y chromium chromium-driver`",
        missing.join(" and ")
    );
    eprintln!(
        "SKIPPED the web UI browser test: {} not installed (apt-get install -y chromium \
         chromium-driver; set REPRISE_REQUIRE_BROWSER=1 to make this a failure)",
        missing.join(" and ")
    );
    false
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("its address")
        .port()
}

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `reprise-examples dev` on 127.0.0.1 with a temporary database.
struct Dev {
    _child: Killed,
    db: TempDb,
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Dev {
    async fn start(token: Option<&str>) -> Dev {
        Dev::start_with(token, &[]).await
    }

    /// [`Dev::start`] with more environment variables.
    async fn start_with(token: Option<&str>, env: &[(&str, &str)]) -> Dev {
        let db = TempDb::new().expect("a temporary directory");
        let port = free_port();
        let log = std::fs::File::create(db.dir().join("dev.log")).expect("the log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_reprise-examples"));
        command
            .args(["dev", "--addr", &format!("127.0.0.1:{port}")])
            .env("REPRISE_DATABASE_URL", db.url())
            .env("REPRISE_EXAMPLES_EFFECT_LOG", db.dir().join("effects.log"))
            .env_remove("REPRISE_API_TOKEN")
            .current_dir(db.dir())
            .stdout(Stdio::from(log.try_clone().expect("the log file")))
            .stderr(Stdio::from(log));
        if let Some(token) = token {
            command.env("REPRISE_API_TOKEN", token);
        }
        command.env_remove("REPRISE_QUEUES");
        for (name, value) in env {
            command.env(name, value);
        }
        let child = Killed(command.spawn().expect("dev starts"));
        let dev = Dev {
            _child: child,
            db,
            base: format!("http://127.0.0.1:{port}"),
            token: token.map(str::to_owned),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(response) = dev.http.get(format!("{}/ui/login", dev.base)).send().await
                && response.status().is_success()
            {
                return dev;
            }
            assert!(
                Instant::now() < deadline,
                "dev did not start: {}",
                dev.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.db.dir().join("dev.log")).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Starts a run over the JSON API; its id.
    async fn start_run(&self, workflow: &str, input: Value) -> String {
        let response = self
            .authorized(self.http.post(self.url(&format!("/workflows/{workflow}"))))
            .json(&input)
            .send()
            .await
            .expect("POST /workflows");
        assert_eq!(response.status(), 202, "{}", self.log());
        let body: Value = response.json().await.expect("JSON");
        body["run_id"].as_str().expect("run_id").to_owned()
    }

    /// `GET /runs/{id}`.
    async fn run(&self, id: &str) -> Value {
        self.authorized(self.http.get(self.url(&format!("/runs/{id}"))))
            .send()
            .await
            .expect("GET /runs/{id}")
            .json()
            .await
            .expect("JSON")
    }
}

/// Headless Chromium under its own chromedriver.
struct Browser {
    client: Client,
    _driver: Killed,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        let port = free_port();
        let driver = Killed(
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver starts"),
        );
        let profile = tempfile::tempdir().expect("a profile directory");
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1400,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("an object")
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let deadline = Instant::now() + PATIENCE;
        let client = loop {
            match ClientBuilder::new(connector.clone())
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => break client,
                Err(error) => {
                    assert!(Instant::now() < deadline, "no WebDriver session: {error}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        Browser {
            client,
            _driver: driver,
            _profile: profile,
        }
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigation");
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}` on the page: {e}"))
    }

    async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.expect("text")
    }

    /// The value of a JavaScript expression.
    async fn eval(&self, expression: &str) -> Value {
        self.client
            .execute(&format!("return ({expression});"), Vec::new())
            .await
            .expect("script")
    }

    /// Waits until the JavaScript `condition` is true, else panics naming `what`.
    async fn wait_until(&self, condition: &str, what: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if self.eval(condition).await == Value::Bool(true) {
                return;
            }
            if Instant::now() >= deadline {
                let shown = self.eval("document.querySelector('main').innerText").await;
                panic!(
                    "timed out waiting for {what}; the page shows:\n{}",
                    shown.as_str().unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The id of the run whose page is open.
    async fn run_on_page(&self) -> String {
        let path = self.eval("location.pathname").await;
        path.as_str()
            .and_then(|p| p.strip_prefix("/ui/runs/"))
            .expect("a run page")
            .to_owned()
    }

    /// The run status the run page shows.
    async fn shown_status(&self) -> String {
        self.text("#run-status [data-status]").await
    }

    async fn wait_for_status(&self, status: &str) {
        self.wait_until(
            &format!(
                "(document.querySelector('#run-status [data-status]') || {{}}).textContent === '{status}'"
            ),
            &format!("the run page to show `{status}`"),
        )
        .await;
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("the screenshot directory");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("the screenshot");
        path
    }
}

/// `target/ui-screenshots/` (under `CARGO_TARGET_DIR` when set).
fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("ui-screenshots")
}

/// Copies a screenshot to `docs/img/` (the README's images) when it is not there yet or
/// when `REPRISE_UPDATE_UI_IMAGES=1`, so that running the tests does not change committed
/// files every time.
fn publish(screenshot: &Path, name: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/img");
    let target = dir.join(name);
    let update = std::env::var("REPRISE_UPDATE_UI_IMAGES").is_ok_and(|v| v == "1");
    if target.exists() && !update {
        return;
    }
    std::fs::create_dir_all(&dir).expect("docs/img");
    std::fs::copy(screenshot, target).expect("copy the screenshot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_shows_runs_delivers_hooks_goes_live_and_cancels_in_chromium() {
    if !browser_installed() {
        return;
    }
    let dev = Dev::start(None).await;
    assert!(
        dev.log()
            .contains(&format!("web UI:       {}/ui", dev.base)),
        "dev prints where the UI is: {}",
        dev.log()
    );
    let browser = Browser::start().await;
    let approval = dev.start_run("approval", json!({"title": "Ship v2"})).await;
    let doomed = dev
        .start_run("approval", json!({"title": "Never decided"}))
        .await;
    let counted = dev.start_run("ten-steps", json!(5)).await;

    // The runs page lists them, each linking to its page.
    browser.goto(&dev.url("/ui")).await;
    for id in [&approval, &doomed, &counted] {
        browser.find(&format!("#runs tr[data-run-id='{id}']")).await;
    }
    // Filtering by workflow keeps the ten-steps run only.
    browser.goto(&dev.url("/ui?workflow=ten-steps")).await;
    browser
        .find(&format!("#runs tr[data-run-id='{counted}']"))
        .await;
    assert_eq!(
        browser
            .eval("document.querySelectorAll('#runs tbody tr').length")
            .await,
        json!(1)
    );
    browser.goto(&dev.url("/ui")).await;
    browser
        .find(&format!("#runs tr[data-run-id='{approval}']"))
        .await;
    browser.screenshot("runs").await;
    // The table is live: a run started now appears without a reload.
    browser.eval("(window.__notReloaded = true)").await;
    let newcomer = dev.start_run("ten-steps", json!(7)).await;
    browser
        .find(&format!("#runs tr[data-run-id='{newcomer}']"))
        .await;
    assert_eq!(
        browser.eval("window.__notReloaded === true").await,
        json!(true)
    );

    // Click through to the approval run, which waits on its hook.
    browser
        .find(&format!("#runs a[href='/ui/runs/{approval}']"))
        .await
        .click()
        .await
        .expect("click");
    browser.wait_for_status("waiting").await;
    let hook_form = ".hook form.schema-form";
    browser.find(hook_form).await;

    // An invalid payload (no decision chosen): the violation shows next to its field; the
    // hook stays open.
    let approved = browser
        .find(".hook [data-pointer='/approved'] select")
        .await;
    browser
        .find(".hook [data-pointer='/by'] input")
        .await
        .send_keys("Ada")
        .await
        .expect("type");
    browser
        .find(".hook button[type=submit]")
        .await
        .click()
        .await
        .expect("submit");
    browser
        .wait_until(
            "document.querySelector(\".hook [data-pointer='/approved'] .violations\").textContent.length > 0",
            "the violation next to `approved`",
        )
        .await;
    let violation = browser
        .text(".hook [data-pointer='/approved'] .violations")
        .await;
    assert!(violation.contains("/approved"), "{violation}");
    assert!(
        browser
            .eval("document.querySelector(\".hook [data-pointer='/approved']\").classList.contains('invalid')")
            .await
            == json!(true)
    );
    assert_eq!(
        browser
            .eval("document.querySelector(\".hook [data-pointer='/by'] .violations\").textContent")
            .await,
        json!(""),
        "a valid field shows no violation"
    );
    let run = dev.run(&approval).await;
    assert_eq!(run["status"], "waiting", "{run}");
    assert_eq!(
        run["hooks"].as_array().map(Vec::len),
        Some(1),
        "the hook is open"
    );
    browser.screenshot("run-hook-violation").await;

    // A valid payload: the run completes, shown without a reload.
    browser.eval("(window.__notReloaded = true)").await;
    approved.select_by_label("true").await.expect("choose true");
    browser
        .find(".hook button[type=submit]")
        .await
        .click()
        .await
        .expect("submit");
    browser.wait_for_status("completed").await;
    assert_eq!(
        browser.eval("window.__notReloaded === true").await,
        json!(true)
    );
    let run = dev.run(&approval).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["output"]["by"], "Ada", "{run}");
    // The timeline lists the hook as completed, with the payload it received.
    let hook_row = browser
        .find("#timeline details[data-step-status='completed'][data-step^='hook']")
        .await;
    hook_row.click().await.expect("expand the hook step");
    let expanded = hook_row.text().await.expect("text");
    assert!(expanded.contains("Ada"), "{expanded}");
    let shot = browser.screenshot("run").await;
    publish(&shot, "ui-run.png");
    assert_eq!(
        browser
            .eval("document.querySelector('[data-live-dot]').dataset.mode")
            .await,
        json!("off"),
        "the live dot says the run ended"
    );

    // Restart opens the new run's page.
    browser
        .find("button[data-post$='/restart']")
        .await
        .click()
        .await
        .expect("click Restart");
    browser
        .client
        .accept_alert()
        .await
        .expect("confirm the restart");
    browser
        .wait_until(
            &format!("location.pathname.startsWith('/ui/runs/') && !location.pathname.includes('{approval}')"),
            "the restarted run's page",
        )
        .await;
    let restarted = browser.run_on_page().await;
    assert_eq!(dev.run(&restarted).await["input"]["title"], "Ship v2");
    browser
        .goto(&dev.url(&format!("/ui/runs/{approval}")))
        .await;

    // The lit graph of the run, with its legend.
    browser
        .find("a.button[href$='/graph']")
        .await
        .click()
        .await
        .expect("click Graph");
    browser.find("#graph svg").await;
    let legend = browser.text("#legend").await;
    for status in ["completed", "running", "failed", "not reached"] {
        assert!(legend.contains(status), "{legend}");
    }
    let shot = browser.screenshot("graph").await;
    publish(&shot, "ui-graph.png");

    // A sleeping run completes live, without a reload.
    let sleeper = dev
        .start_run(
            "delayed-followup",
            json!({"name": "Ada", "email": "ada@example.com", "delay": "6s"}),
        )
        .await;
    browser.goto(&dev.url(&format!("/ui/runs/{sleeper}"))).await;
    browser.wait_for_status("sleeping").await;
    let mode = browser
        .eval("document.querySelector('[data-live-dot]').dataset.mode")
        .await;
    assert!(
        mode == json!("on") || mode == json!("poll"),
        "streaming or polling: {mode}"
    );
    browser.eval("(window.__notReloaded = true)").await;
    // A row opened now stays open through the live updates.
    browser
        .find("#timeline details[data-step^='send-welcome'] > summary")
        .await
        .click()
        .await
        .expect("open the welcome step");
    browser.screenshot("run-sleeping").await;
    browser.wait_for_status("completed").await;
    assert_eq!(
        browser.eval("window.__notReloaded === true").await,
        json!(true)
    );
    assert_eq!(
        browser
            .eval("document.querySelector(\"#timeline details[data-step^='send-welcome']\").open")
            .await,
        json!(true),
        "the opened row stays open"
    );
    assert_eq!(dev.run(&sleeper).await["status"], "completed");

    // Pause and unpause a waiting run, then cancel it, with its buttons.
    browser.goto(&dev.url(&format!("/ui/runs/{doomed}"))).await;
    browser.wait_for_status("waiting").await;
    browser
        .find("button[data-post$='/pause']")
        .await
        .click()
        .await
        .expect("click Pause");
    browser.wait_for_status("paused").await;
    assert_eq!(dev.run(&doomed).await["status"], "paused");
    browser
        .find("button[data-post$='/unpause']")
        .await
        .click()
        .await
        .expect("click Unpause");
    browser.wait_for_status("waiting").await;
    browser
        .find("button[data-post$='/cancel']")
        .await
        .click()
        .await
        .expect("click Cancel");
    browser
        .client
        .accept_alert()
        .await
        .expect("confirm the cancel");
    browser.wait_for_status("canceled").await;
    assert_eq!(dev.run(&doomed).await["status"], "canceled");

    // The ten-steps run's timeline has its ten steps.
    browser.goto(&dev.url(&format!("/ui/runs/{counted}"))).await;
    browser.wait_for_status("completed").await;
    assert_eq!(
        browser
            .eval("document.querySelectorAll('#timeline details[data-step^=\"advance\"]').length")
            .await,
        json!(10)
    );
    browser.screenshot("run-ten-steps").await;

    // Start a run from the workflow's form: it opens the new run's page.
    browser.goto(&dev.url("/ui/workflows")).await;
    browser.screenshot("workflows").await;
    browser
        .find("#workflows a[href='/ui/workflows/approval']")
        .await
        .click()
        .await
        .expect("click approval");
    browser
        .find("#start [data-pointer='/title'] input")
        .await
        .send_keys("Started from the form")
        .await
        .expect("type");
    browser.find("#graph svg").await;
    browser.screenshot("workflow").await;
    browser
        .find("#start button[type=submit]")
        .await
        .click()
        .await
        .expect("start");
    browser
        .wait_until(
            "location.pathname.startsWith('/ui/runs/')",
            "the new run's page",
        )
        .await;
    let started = browser.run_on_page().await;
    let run = dev.run(&started).await;
    assert_eq!(run["workflow"], "approval", "{run}");
    assert_eq!(run["input"]["title"], "Started from the form", "{run}");

    // An unknown run: the UI's own 404 page.
    browser.goto(&dev.url("/ui/runs/no-such-run")).await;
    let heading = browser.text("h1").await;
    assert!(heading.contains("404"), "{heading}");
    assert!(browser.text(".error-message").await.contains("no-such-run"));
    browser.screenshot("not-found").await;
    let response = dev
        .http
        .get(dev.url("/ui/runs/no-such-run"))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 404);
    assert!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/html"))
    );

    browser.client.close().await.expect("close the session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_the_web_ui_asks_for_it_once_and_keeps_it_in_a_cookie() {
    if !browser_installed() {
        return;
    }
    let dev = Dev::start(Some("s3cret-token")).await;
    let browser = Browser::start().await;
    let id = dev.start_run("ten-steps", json!(1)).await;

    browser.goto(&dev.url("/ui?status=completed")).await;
    browser.find("form#login").await;
    let path = browser.eval("location.pathname + location.search").await;
    assert_eq!(path, json!("/ui/login?next=/ui%3Fstatus%3Dcompleted"));
    browser.screenshot("login").await;

    // A wrong token is refused on the page.
    let input = browser.find("form#login input[name=token]").await;
    input.send_keys("wrong").await.expect("type");
    browser
        .find("form#login button[type=submit]")
        .await
        .click()
        .await
        .expect("submit");
    browser
        .wait_until(
            "document.querySelector('form#login .form-error').textContent.length > 0",
            "the login error",
        )
        .await;
    // The right one lands on the page asked for, and later pages need no login.
    input.clear().await.expect("clear");
    input.send_keys("s3cret-token").await.expect("type");
    browser
        .find("form#login button[type=submit]")
        .await
        .click()
        .await
        .expect("submit");
    browser
        .wait_until("location.pathname === '/ui'", "the runs page")
        .await;
    assert_eq!(
        browser.eval("location.search").await,
        json!("?status=completed")
    );
    browser.goto(&dev.url(&format!("/ui/runs/{id}"))).await;
    browser.wait_for_status("completed").await;
    assert_eq!(browser.shown_status().await, "completed");

    // Without the cookie or the header, the API still answers 401 and pages redirect.
    let response = dev.http.get(dev.url("/runs")).send().await.expect("GET");
    assert_eq!(response.status(), 401);
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(dev.url("/ui/workflows"))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 303);
    browser.client.close().await.expect("close the session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queues_page_shows_limits_and_counts_and_links_to_each_queues_runs() {
    if !browser_installed() {
        return;
    }
    let queues = r#"[{"name": "serial", "concurrency": 1},
                     {"name": "paced", "rate_limit": {"limit": 5, "period": "1h"}}]"#;
    let dev = Dev::start_with(None, &[("REPRISE_QUEUES", queues)]).await;
    let browser = Browser::start().await;
    // Two approvals through `serial`: the first is admitted and waits on its hook, holding
    // the only place; the second waits for it. One quick run through `paced`, one in no
    // queue.
    let held = dev
        .start_run("approval?queue=serial", json!({"title": "first"}))
        .await;
    let deadline = Instant::now() + PATIENCE;
    while dev.run(&held).await["status"] != "waiting" {
        assert!(Instant::now() < deadline, "never admitted: {}", dev.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let behind = dev
        .start_run("approval?queue=serial", json!({"title": "second"}))
        .await;
    let paced = dev.start_run("ten-steps?queue=paced", json!(2)).await;
    let outside = dev
        .start_run("approval", json!({"title": "no queue"}))
        .await;
    let deadline = Instant::now() + PATIENCE;
    while dev.run(&paced).await["status"] != "completed" {
        assert!(
            Instant::now() < deadline,
            "paced run never ended: {}",
            dev.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    browser.goto(&dev.url("/ui/queues")).await;
    let serial = "#queues tr[data-queue='serial']";
    browser.find(serial).await;
    assert_eq!(
        browser.text(&format!("{serial} td:nth-child(2)")).await,
        "concurrency 1"
    );
    assert_eq!(
        browser.text(&format!("{serial} td[data-active]")).await,
        "1"
    );
    assert_eq!(
        browser.text(&format!("{serial} td[data-waiting]")).await,
        "1"
    );
    // `paced` counts its admission in the rate window; its run has ended.
    let paced_row = "#queues tr[data-queue='paced']";
    assert_eq!(
        browser.text(&format!("{paced_row} td:nth-child(2)")).await,
        "5 per 1h"
    );
    assert_eq!(
        browser
            .text(&format!("{paced_row} td[data-in-window]"))
            .await,
        "1"
    );
    assert_eq!(
        browser.text(&format!("{paced_row} td[data-active]")).await,
        "0"
    );
    browser.screenshot("queues").await;

    // The queue's name links to its runs: both of `serial`, and nothing else.
    browser
        .find(&format!("{serial} a.queue-runs"))
        .await
        .click()
        .await
        .expect("click");
    browser
        .wait_until("location.pathname === '/ui'", "the runs page")
        .await;
    assert_eq!(
        browser.eval("location.search").await,
        json!("?queue=serial")
    );
    for id in [&held, &behind] {
        browser.find(&format!("#runs tr[data-run-id='{id}']")).await;
    }
    assert_eq!(
        browser
            .eval("document.querySelectorAll('#runs tbody tr').length")
            .await,
        json!(2)
    );
    for id in [&paced, &outside] {
        let absent = format!("document.querySelector(\"#runs tr[data-run-id='{id}']\") === null");
        assert_eq!(
            browser.eval(&absent).await,
            json!(true),
            "run {id} is not in queue serial"
        );
    }
    assert_eq!(
        browser
            .eval("document.querySelector('select[name=queue]').value")
            .await,
        json!("serial")
    );
    browser.screenshot("runs-of-a-queue").await;
    // The waiting count links to the queue's runs still queued: the one behind.
    browser.goto(&dev.url("/ui/queues")).await;
    browser
        .find(&format!("{serial} td[data-waiting] a"))
        .await
        .click()
        .await
        .expect("click");
    browser
        .wait_until("location.pathname === '/ui'", "the runs page")
        .await;
    browser
        .find(&format!("#runs tr[data-run-id='{behind}']"))
        .await;
    assert_eq!(
        browser
            .eval("document.querySelectorAll('#runs tbody tr').length")
            .await,
        json!(1)
    );
    browser.client.close().await.expect("close the session");
}
