//! The trigger examples: `daily-digest` started by its cron schedule, `triage-issue` started
//! by GitHub webhooks — on a `TestEnv` whose clock the test moves, and through a real `dev`
//! process over HTTP, as the README shows them. Also [`Dev`], which the waits tests use.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use reprise::event::RunFilter;
use reprise::trigger::{WebhookDelivery, WebhookError};
use reprise_examples::digest::{self, DigestTick, daily_digest, post_digest};
use reprise_examples::webhook::{self, label_issue};
use reprise_testkit::{TempDb, TestEnv};
use serde_json::{Value, json};

/// A UTC time from RFC 3339 text (the examples do not depend on chrono by name).
macro_rules! utc {
    ($text:expr) => {
        reprise::WakeTime::to_wake_time(&$text).unwrap()
    };
}

/// An environment whose clock starts at `start`, with the digest's daily schedule.
fn digest_env(start: &str) -> TestEnv {
    TestEnv::builder()
        .starting_at(utc!(start))
        .configure(|b| b.cron(digest::schedule_at(digest::DEFAULT_CRON).unwrap()))
        .build()
}

#[tokio::test]
async fn the_digest_schedule_starts_one_cron_run_per_tick() {
    let env = digest_env("2030-01-01T08:59:30Z");
    let triggers = env.engine().triggers();
    let schedule = triggers.crons().next().unwrap();
    assert_eq!(
        (schedule.name(), schedule.workflow(), schedule.expression()),
        ("daily-digest", "daily-digest", "0 9 * * *")
    );
    assert_eq!(schedule.time_zone_name(), "UTC");
    // The first look anchors the schedule at now: nothing before it is back-filled.
    assert!(triggers.fire_due(env.engine()).await.unwrap().is_empty());
    env.clock().advance(Duration::from_secs(20));
    assert!(
        triggers.fire_due(env.engine()).await.unwrap().is_empty(),
        "08:59:50, not yet"
    );

    env.clock().advance(Duration::from_secs(15)); // 09:00:05
    let started = triggers.fire_due(env.engine()).await.unwrap();
    assert_eq!(started.len(), 1, "the 09:00 tick");
    assert!(
        triggers.fire_due(env.engine()).await.unwrap().is_empty(),
        "a tick starts one run, however often the scheduler looks"
    );
    let run = env.engine().get_run(&started[0]).await.unwrap();
    assert_eq!(run.trigger, reprise::Trigger::Cron);
    assert_eq!(run.input["tick"], "2030-01-01T09:00:00Z");

    let report = env.continue_run(&started[0]).await.completed();
    assert_eq!(report["trigger"], "cron", "{report}");
    assert_eq!(
        report["tick"], "2030-01-01T09:00:00Z",
        "the scheduled instant, not when the scheduler noticed it"
    );
    assert_eq!(report["since"], "2029-12-31T09:00:00Z");
    assert_eq!(env.calls(&post_digest).len(), 1);
}

#[tokio::test]
async fn ticks_missed_while_nothing_ran_are_made_up_by_one_run() {
    let env = digest_env("2030-01-01T08:00:00Z");
    let triggers = env.engine().triggers();
    assert!(triggers.fire_due(env.engine()).await.unwrap().is_empty());
    // Down for three and a half days: the ticks of Jan 1, 2, 3 and 4 were missed.
    env.clock()
        .advance(Duration::from_secs(3 * 86_400 + 4 * 3600)); // Jan 4, 12:00
    let started = triggers.fire_due(env.engine()).await.unwrap();
    assert_eq!(started.len(), 1, "one run for the latest missed tick");
    let report = env.continue_run(&started[0]).await.completed();
    assert_eq!(report["tick"], "2030-01-04T09:00:00Z");
    assert!(triggers.fire_due(env.engine()).await.unwrap().is_empty());
}

#[test]
fn the_digest_schedule_takes_six_fields_for_second_ticks_and_rejects_nonsense() {
    let every_20s = digest::schedule_at("*/20 * * * * *").unwrap();
    assert_eq!(
        every_20s.next_tick(utc!("2030-01-01T09:00:05Z")).unwrap(),
        utc!("2030-01-01T09:00:20Z")
    );
    let daily = digest::schedule_at(digest::DEFAULT_CRON).unwrap();
    assert_eq!(
        daily.next_tick(utc!("2030-01-01T09:00:00Z")).unwrap(),
        utc!("2030-01-02T09:00:00Z")
    );
    let error = digest::schedule_at("every morning")
        .unwrap_err()
        .to_string();
    assert!(error.contains("not a valid cron expression"), "{error}");
}

/// 2030-01-01T00:00:00Z, where the clock of `TestEnv::new()` starts, in seconds since the
/// epoch.
const JAN_1_2030: u64 = 1_893_456_000;

/// Sets `path`'s modification time to `seconds` after 2030-01-01T00:00:00Z (negative:
/// before), creating the file and its directories.
fn touch(path: PathBuf, seconds: i64) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "x").unwrap();
    let base = SystemTime::UNIX_EPOCH + Duration::from_secs(JAN_1_2030);
    let time = if seconds >= 0 {
        base + Duration::from_secs(seconds.unsigned_abs())
    } else {
        base - Duration::from_secs(seconds.unsigned_abs())
    };
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(time)
        .unwrap();
}

#[tokio::test]
async fn the_digest_lists_the_files_changed_in_the_window_before_the_tick_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let nine = 9 * 3600;
    touch(root.join("notes.md"), nine - 3600); // 08:00
    touch(root.join("sub/deeper.rs"), nine - 600); // 08:50
    touch(root.join("old.txt"), nine - 2 * 86_400); // two days before
    touch(root.join("later.txt"), nine + 60); // after the tick
    touch(root.join(".git/HEAD"), nine - 60); // hidden: skipped
    touch(root.join("target/debug/app"), nine - 60); // build output: skipped

    let env = TestEnv::new();
    let report = env
        .execute(
            &daily_digest,
            DigestTick {
                tick: Some("2030-01-01T09:00:00Z".into()),
                dir: root.to_string_lossy().into_owned(),
                window: "1d".into(),
            },
        )
        .await
        .completed();
    assert_eq!(report.files, ["sub/deeper.rs", "notes.md"]);
    assert_eq!(report.changed, 2);
    assert_eq!(report.since, "2029-12-31T09:00:00Z");
    assert_eq!(
        report.trigger, "code",
        "started by code, not by the schedule"
    );
    assert!(
        report.text.contains("2 file(s) changed")
            && report.text.ends_with("sub/deeper.rs, notes.md"),
        "{}",
        report.text
    );
    let posted = env.calls(&post_digest);
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].text, report.text);
}

#[tokio::test]
async fn a_digest_started_by_hand_reports_on_the_day_before_the_run_was_created() {
    let dir = tempfile::tempdir().unwrap();
    touch(dir.path().join("today.md"), -3600); // 2029-12-31T23:00Z
    let env = TestEnv::new(); // the clock starts at 2030-01-01T00:00:00Z
    let input: DigestTick = serde_json::from_value(json!({ "dir": dir.path() })).unwrap();
    assert_eq!((input.tick.as_deref(), input.window.as_str()), (None, "1d"));
    let report = env.execute(&daily_digest, input).await.completed();
    assert_eq!(report.tick, "2030-01-01T00:00:00Z");
    assert_eq!(report.files, ["today.md"]);
}

// ---- webhooks ----

const SECRET: &str = "test-webhook-secret";

fn webhook_env() -> TestEnv {
    TestEnv::builder()
        .configure(|b| b.webhook(webhook::github_source_with_secret(SECRET)))
        .build()
}

/// A GitHub "issues" event body (GitHub sends many more fields; they are allowed).
fn issues_event(action: &str, number: u64, title: &str, body: &str) -> String {
    json!({
        "action": action,
        "issue": {
            "number": number,
            "title": title,
            "body": body,
            "html_url": format!("https://github.com/octo/app/issues/{number}"),
            "user": { "login": "ada", "id": 1 },
            "labels": [],
            "state": "open"
        },
        "repository": { "full_name": "octo/app", "private": false },
        "sender": { "login": "ada" }
    })
    .to_string()
}

fn headers(signature: &str, delivery: &str) -> Vec<(String, String)> {
    vec![
        ("X-Hub-Signature-256".to_owned(), signature.to_owned()),
        ("X-GitHub-Delivery".to_owned(), delivery.to_owned()),
        ("X-GitHub-Event".to_owned(), "issues".to_owned()),
    ]
}

fn signed(body: &str, delivery: &str) -> Vec<(String, String)> {
    headers(
        &webhook::signature(SECRET.as_bytes(), body.as_bytes()),
        delivery,
    )
}

#[test]
fn the_signature_helper_matches_githubs_documented_example() {
    // https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
    assert_eq!(
        webhook::signature(b"It's a Secret to Everybody", b"Hello, World!"),
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    );
    // Keys longer than SHA-256's block are hashed first (RFC 2104).
    let long = [7u8; 100];
    assert_ne!(
        webhook::signature(&long, b"x"),
        webhook::signature(&long[..64], b"x")
    );
}

#[tokio::test]
async fn a_signed_opened_issue_starts_one_triage_run_per_delivery() {
    let env = webhook_env();
    let body = issues_event("opened", 7, "Crash on start", "It panics at boot.");
    let delivery = env
        .engine()
        .deliver_webhook("github", &signed(&body, "d-1"), body.as_bytes())
        .await
        .unwrap();
    let WebhookDelivery::Started(id) = delivery else {
        panic!("{delivery:?}")
    };
    let run = env.engine().get_run(&id).await.unwrap();
    assert_eq!(run.trigger, reprise::Trigger::Webhook);
    assert_eq!(
        run.input,
        json!({
            "repo": "octo/app",
            "number": 7,
            "title": "Crash on start",
            "body": "It panics at boot.",
            "author": "ada",
            "url": "https://github.com/octo/app/issues/7"
        }),
        "the transform's output, not the raw event"
    );
    let outcome = env.continue_run(&id).await.completed();
    assert_eq!(
        outcome,
        json!({ "issue": "octo/app#7", "label": "bug", "priority": "high", "trigger": "webhook" })
    );
    let labeled = env.calls(&label_issue);
    assert_eq!(labeled.len(), 1);
    assert_eq!(labeled[0].labels, ["bug", "priority:high"]);

    // GitHub redelivers with the same delivery id: the first run is reported, nothing starts.
    let again = env
        .engine()
        .deliver_webhook("github", &signed(&body, "d-1"), body.as_bytes())
        .await
        .unwrap();
    assert_eq!(again, WebhookDelivery::Duplicate(id.clone()));
    // A new delivery id is a new event.
    let question = issues_event("opened", 8, "How do I resume a hook?", "");
    let other = env
        .engine()
        .deliver_webhook("github", &signed(&question, "d-2"), question.as_bytes())
        .await
        .unwrap();
    let WebhookDelivery::Started(other) = other else {
        panic!("{other:?}")
    };
    assert_ne!(other, id);
    let outcome = env.continue_run(&other).await.completed();
    assert_eq!(outcome["label"], "question");
    assert_eq!(outcome["priority"], "normal");
    assert_eq!(env.calls(&label_issue).len(), 2);
}

async fn run_count(env: &TestEnv) -> usize {
    env.engine()
        .list_runs(&RunFilter::default())
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn other_issue_actions_are_ignored_without_starting_a_run() {
    let env = webhook_env();
    for action in ["closed", "edited", "labeled"] {
        let body = issues_event(action, 7, "Crash on start", "");
        let delivery = env
            .engine()
            .deliver_webhook("github", &signed(&body, action), body.as_bytes())
            .await
            .unwrap();
        let WebhookDelivery::Filtered(reason) = delivery else {
            panic!("{action}: {delivery:?}")
        };
        assert!(reason.contains(action), "{reason}");
    }
    assert_eq!(run_count(&env).await, 0);
}

#[tokio::test]
async fn bad_signatures_and_non_issue_payloads_are_rejected() {
    let env = webhook_env();
    let body = issues_event("opened", 7, "Crash on start", "");
    let deliver = |headers: Vec<(String, String)>, body: String| {
        let engine = env.engine().clone();
        async move {
            engine
                .deliver_webhook("github", &headers, body.as_bytes())
                .await
        }
    };

    let forged = webhook::signature(b"not the secret", body.as_bytes());
    let error = deliver(headers(&forged, "d-1"), body.clone())
        .await
        .unwrap_err();
    assert!(matches!(error, WebhookError::BadSignature(_)), "{error}");
    // Signed, then changed on the way.
    let tampered = body.replace("Crash", "Crush");
    let error = deliver(signed(&body, "d-2"), tampered).await.unwrap_err();
    assert!(matches!(error, WebhookError::BadSignature(_)), "{error}");
    let unsigned = vec![("x-github-delivery".to_owned(), "d-3".to_owned())];
    let error = deliver(unsigned, body.clone()).await.unwrap_err();
    assert!(
        matches!(&error, WebhookError::BadSignature(m) if m.contains("x-hub-signature-256")),
        "{error}"
    );

    // Correctly signed, but not an issues event (GitHub's `ping`): the request schema.
    let ping = json!({ "zen": "Keep it logically awesome.", "hook_id": 1 }).to_string();
    let error = deliver(signed(&ping, "d-4"), ping).await.unwrap_err();
    let WebhookError::InvalidPayload(violation) = &error else {
        panic!("{error}")
    };
    assert!(error.to_string().contains("action"), "{error}");
    assert!(!violation.violations.is_empty());

    let error = env
        .engine()
        .deliver_webhook("gitlab", &signed(&body, "d-5"), body.as_bytes())
        .await
        .unwrap_err();
    assert!(matches!(error, WebhookError::UnknownSource(_)), "{error}");
    assert_eq!(run_count(&env).await, 0, "nothing was started");
}

// ---- through a `dev` process, over HTTP ----

/// A `dev` process of the example app on a fresh database and a free port, with its output
/// in `dev.log` beside the database. Killed when dropped.
pub(crate) struct Dev {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub(crate) base: String,
    /// The database directory.
    pub(crate) db: TempDb,
    client: reqwest::Client,
}

impl Dev {
    /// Starts `dev` with the extra environment `env` and waits until it answers.
    pub(crate) async fn start(env: &[(&str, &str)]) -> Dev {
        let db = TempDb::new().unwrap();
        let (child, base) = Self::spawn(&db, env);
        let dev = Dev {
            child,
            base,
            db,
            client: reqwest::Client::new(),
        };
        dev.wait_ready().await;
        dev
    }

    /// Kills the process with SIGKILL (a crash: nothing is shut down) and starts a new
    /// `dev` on the same database, on a new port.
    pub(crate) async fn crash_and_restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let (child, base) = Self::spawn(&self.db, &[]);
        self.child = child;
        self.base = base;
        self.wait_ready().await;
    }

    fn spawn(db: &TempDb, env: &[(&str, &str)]) -> (Child, String) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(db.dir().join("dev.log"))
            .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_reprise-examples"));
        command
            .args(["dev", "--addr", &format!("127.0.0.1:{port}")])
            .env("REPRISE_DATABASE_URL", db.url())
            .env("REPRISE_EXAMPLES_EFFECT_LOG", db.dir().join("effects.log"))
            .env_remove("REPRISE_PUBLIC_URL")
            .env_remove("REPRISE_API_TOKEN")
            .env_remove(webhook::SECRET_ENV)
            .env_remove(digest::CRON_ENV)
            .current_dir(db.dir())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log));
        for (name, value) in env {
            command.env(name, value);
        }
        (command.spawn().unwrap(), format!("http://127.0.0.1:{port}"))
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = self
                .client
                .get(format!("{}/workflows", self.base))
                .send()
                .await
                && response.status().as_u16() != 404
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "dev did not start: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What the process printed so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.db.dir().join("dev.log")).unwrap_or_default()
    }

    /// `GET {base}{path}`: the status and the JSON body.
    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        (
            response.status().as_u16(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    /// `POST {base}{path}` with `body` (sent as is) and `headers`.
    pub(crate) async fn post(
        &self,
        path: &str,
        headers: &[(String, String)],
        body: &str,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_owned());
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request.send().await.unwrap();
        (
            response.status().as_u16(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    /// Polls `GET /runs/{id}` until `done` accepts it (at most 30 s); returns it.
    pub(crate) async fn wait_run(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, run) = self.get(&format!("/runs/{id}")).await;
            assert_eq!(status, 200, "{run}");
            if done(&run) {
                return run;
            }
            assert!(
                Instant::now() < deadline,
                "run {id} is still {}: {run}\n{}",
                run["status"],
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until run `id` has status `status`.
    pub(crate) async fn wait_status(&self, id: &str, status: &str) -> Value {
        self.wait_run(id, |run| run["status"] == status).await
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_serves_the_github_webhook_and_fires_the_digest_schedule() {
    // A digest every two seconds, as a demo would set it.
    let dev = Dev::start(&[(digest::CRON_ENV, "*/2 * * * * *")]).await;
    let secret = webhook::DEV_SECRET.as_bytes();
    let body = issues_event("opened", 12, "Data loss after crash", "");
    let sign = |body: &str, delivery: &str| {
        headers(&webhook::signature(secret, body.as_bytes()), delivery)
    };

    let (status, reply) = dev
        .post("/webhooks/github", &sign(&body, "d-1"), &body)
        .await;
    assert_eq!(status, 202, "{reply}");
    let id = reply["run_id"].as_str().unwrap().to_owned();
    let run = dev.wait_status(&id, "completed").await;
    assert_eq!(run["trigger"], "webhook");
    assert_eq!(
        run["output"],
        json!({ "issue": "octo/app#12", "label": "bug", "priority": "high", "trigger": "webhook" })
    );

    let (status, reply) = dev
        .post("/webhooks/github", &sign(&body, "d-1"), &body)
        .await;
    assert_eq!(
        (status, &reply["duplicate"], &reply["run_id"]),
        (200, &json!(true), &json!(id))
    );
    let closed = issues_event("closed", 12, "Data loss after crash", "");
    let (status, reply) = dev
        .post("/webhooks/github", &sign(&closed, "d-2"), &closed)
        .await;
    assert_eq!((status, &reply["ignored"]), (200, &json!(true)), "{reply}");
    let forged = headers(&webhook::signature(b"guess", body.as_bytes()), "d-3");
    let (status, reply) = dev.post("/webhooks/github", &forged, &body).await;
    assert_eq!(
        (status, &reply["code"]),
        (401, &json!("bad_signature")),
        "{reply}"
    );

    // The schedule fires on its own; each digest run says it came from cron.
    let deadline = Instant::now() + Duration::from_secs(30);
    let digest = loop {
        let (_, runs) = dev
            .get("/runs?workflow=daily-digest&status=completed")
            .await;
        if let Some(run) = runs.as_array().and_then(|runs| runs.first()) {
            break run.clone();
        }
        assert!(Instant::now() < deadline, "no digest ran: {}", dev.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(digest["trigger"], "cron");
    let (_, run) = dev
        .get(&format!("/runs/{}", digest["id"].as_str().unwrap()))
        .await;
    assert_eq!(run["output"]["trigger"], "cron");
    let tick = run["input"]["tick"].as_str().unwrap();
    let second: u32 = tick[17..19].parse().unwrap();
    assert_eq!(second % 2, 0, "ticks fall on even seconds: {tick}");
    assert_eq!(run["output"]["tick"], tick);
}
