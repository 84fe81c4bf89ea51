//! Durable waits in the examples: `approval` (a hook with an optional timeout) and
//! `delayed-followup` (a sleep) — on a `TestEnv` with virtual time, from the command line,
//! and through a `dev` process over HTTP, as the README shows them.

use std::process::Command;
use std::time::{Duration, Instant};

use reprise::EngineError;
use reprise::event::RunStatus;
use reprise_examples::approval::{
    ApprovalRequest, Decision, approval, ask_for_approval, publish, report_expired,
};
use reprise_examples::delayed_followup::{
    FollowupRequest, delayed_followup, send_followup, send_welcome,
};
use reprise_testkit::{Outcome, Pending, TempDb, TestEnv, assert_each_step_recorded_once};
use serde_json::{Value, json};

use crate::triggers_example::Dev;

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Starts `approval` and returns the hook's token.
async fn ask(env: &TestEnv, request: ApprovalRequest) -> String {
    let waits = env.execute(&approval, request).await.suspended();
    let [Pending::Hook { token, .. }] = &waits[..] else {
        panic!("{waits:?}")
    };
    token.clone()
}

#[tokio::test]
async fn approval_waits_on_its_hook_then_acts_on_the_decision() {
    let env = TestEnv::new();
    let token = ask(&env, ApprovalRequest::new("Ship v2").expiring_after("3d")).await;
    let id = env.last_run();

    // The request that went out carries the hook's resume URL and the deadline.
    let asked = env.calls(&ask_for_approval);
    assert_eq!(asked.len(), 1);
    assert_eq!(
        asked[0].resume_url,
        format!("http://reprise.test/hooks/{token}")
    );
    assert_eq!(asked[0].decide_within.as_deref(), Some("3d"));
    let run = env.engine().get_run(&id).await.unwrap();
    assert_eq!(run.status, RunStatus::Waiting);
    let hooks = env.engine().open_hooks(&id).await.unwrap();
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0].timeout_at, Some(env.now() + secs(3 * DAY)));

    // A day passes: nothing happens. Then Ada approves.
    assert!(env.advance(secs(DAY)).await.is_empty());
    let done = env
        .resume_hook(
            &token,
            Decision {
                approved: true,
                by: "Ada".into(),
            },
        )
        .await
        .unwrap()
        .completed();
    assert_eq!(done, json!({ "result": "published", "by": "Ada" }));
    assert_eq!(env.calls(&publish).len(), 1);
    assert_eq!(env.calls(&ask_for_approval).len(), 1, "asked once");
    assert!(env.calls(&report_expired).is_empty());

    // The hook took its one payload; the deadline passing later changes nothing.
    let again = env
        .resume_hook(&token, json!({ "approved": false, "by": "Bob" }))
        .await
        .unwrap_err();
    assert!(again.to_string().contains("already"), "{again}");
    env.clock().advance(secs(3 * DAY));
    assert_eq!(env.continue_run(&id).await, Outcome::Completed(done));
    assert!(env.calls(&report_expired).is_empty());
    assert_each_step_recorded_once(&env.engine().events(&id).await.unwrap());
}

#[tokio::test]
async fn a_rejection_publishes_nothing() {
    let env = TestEnv::new();
    let token = ask(&env, ApprovalRequest::new("Ship v2")).await;
    let done = env
        .resume_hook(&token, json!({ "approved": false, "by": "Grace" }))
        .await
        .unwrap()
        .completed();
    assert_eq!(done, json!({ "result": "rejected", "by": "Grace" }));
    assert!(env.calls(&publish).is_empty());
}

#[tokio::test]
async fn an_undecided_approval_expires_at_its_timeout() {
    let env = TestEnv::new();
    let token = ask(&env, ApprovalRequest::new("Ship v2").expiring_after("2h")).await;
    let id = env.last_run();
    let deadline = env.now() + secs(2 * HOUR);
    assert_eq!(
        env.engine().get_run(&id).await.unwrap().wake_at,
        Some(deadline)
    );

    env.advance(secs(2 * HOUR - 1)).await;
    assert_eq!(
        env.engine().get_run(&id).await.unwrap().status,
        RunStatus::Waiting
    );
    // `TestEnv::advance` continues sleeping and queued runs only, not a `waiting` run whose
    // hook deadline came (reported to the testkit's owner), so the run is continued here as
    // a worker would at its `wake_at`.
    let woken = env.advance(secs(1)).await;
    let outcome = match woken.into_iter().find(|(run, _)| *run == id) {
        Some((_, outcome)) => outcome,
        None => env.continue_run(&id).await,
    };
    assert_eq!(
        outcome.completed(),
        json!({ "result": "expired" }),
        "an expiry is an outcome the workflow acts on, not a failure"
    );
    let expired = env.calls(&report_expired);
    assert_eq!(expired.len(), 1, "the requester is told once");
    assert_eq!(expired[0].title, "Ship v2");
    assert!(env.calls(&publish).is_empty());

    // A decision that comes too late is refused; the outcome stays.
    let late = env
        .resume_hook(&token, json!({ "approved": true, "by": "Ada" }))
        .await
        .unwrap_err();
    assert!(
        matches!(&late, EngineError::InvalidState { message, .. } if message.contains("timed out")),
        "{late}"
    );
    assert!(env.calls(&publish).is_empty());
}

#[tokio::test]
async fn without_a_timeout_the_request_waits_until_someone_decides() {
    let env = TestEnv::new();
    let token = ask(&env, ApprovalRequest::new("Ship v2")).await;
    let id = env.last_run();
    assert_eq!(
        env.engine().open_hooks(&id).await.unwrap()[0].timeout_at,
        None
    );
    assert_eq!(env.engine().get_run(&id).await.unwrap().wake_at, None);
    env.advance(secs(365 * DAY)).await;
    assert_eq!(env.continue_run(&id).await.suspended().len(), 1);
    let done = env
        .resume_hook(&token, json!({ "approved": true, "by": "Ada" }))
        .await
        .unwrap()
        .completed();
    assert_eq!(done["result"], "published");
}

#[tokio::test]
async fn a_malformed_timeout_fails_the_run_before_anyone_is_asked() {
    let env = TestEnv::new();
    let error = env
        .execute(
            &approval,
            ApprovalRequest::new("Ship v2").expiring_after("soon"),
        )
        .await
        .failed();
    assert!(
        error.message.contains("`soon` is not a duration"),
        "{error}"
    );
    assert!(!error.retryable);
    assert!(env.calls(&ask_for_approval).is_empty());
}

#[tokio::test]
async fn a_decision_from_a_link_query_has_text_values() {
    // `GET <resume_url>?approved=true&by=Ada` delivers {"approved": "true", "by": "Ada"}.
    let env = TestEnv::new();
    let token = ask(&env, ApprovalRequest::new("Ship v2")).await;
    let refused = env
        .resume_hook(&token, json!({ "approved": "yes", "by": "Ada" }))
        .await
        .unwrap_err();
    let EngineError::Schema(violation) = &refused else {
        panic!("{refused}")
    };
    assert_eq!(violation.violations[0].pointer, "/approved", "{refused}");
    let done = env
        .resume_hook(&token, json!({ "approved": "true", "by": "Ada" }))
        .await
        .unwrap()
        .completed();
    assert_eq!(done, json!({ "result": "published", "by": "Ada" }));
    let decision: Decision =
        serde_json::from_value(json!({ "approved": "false", "by": "Bob" })).unwrap();
    assert!(!decision.approved);
}

fn ada(delay: &str) -> FollowupRequest {
    FollowupRequest {
        name: "Ada".into(),
        email: "ada@example.com".into(),
        delay: delay.into(),
    }
}

#[tokio::test]
async fn delayed_followup_sleeps_for_the_input_delay_then_follows_up_once() {
    let env = TestEnv::new();
    let start = env.now();
    let waits = env.execute(&delayed_followup, ada("10s")).await.suspended();
    assert_eq!(
        waits,
        [Pending::Sleep {
            id: "sleep#0".into(),
            until: start + secs(10),
        }]
    );
    let id = env.last_run();
    assert_eq!(
        env.engine().get_run(&id).await.unwrap().status,
        RunStatus::Sleeping
    );
    assert_eq!(env.calls(&send_welcome).len(), 1);
    assert!(env.calls(&send_followup).is_empty());

    assert!(env.advance(secs(9)).await.is_empty(), "not yet");
    let woken = env.advance(secs(1)).await;
    assert_eq!(woken.len(), 1);
    let report = woken.into_iter().next().unwrap().1.completed();
    assert_eq!(report["waited"], "10s");
    assert_ne!(report["welcome"], report["followup"]);

    // The welcome was answered from the log when the run woke up: sent once, like the
    // follow-up.
    assert_eq!(env.calls(&send_welcome).len(), 1);
    let followups = env.calls(&send_followup);
    assert_eq!(followups.len(), 1);
    assert_eq!(followups[0].to, "ada@example.com");
    assert!(
        followups[0].text.contains("10s ago"),
        "{}",
        followups[0].text
    );
    assert!(
        env.advance(secs(DAY)).await.is_empty(),
        "nothing more to do"
    );
    assert_each_step_recorded_once(&env.engine().events(&id).await.unwrap());
}

#[tokio::test]
async fn the_followup_delay_defaults_to_three_days() {
    let request: FollowupRequest =
        serde_json::from_value(json!({ "name": "Ada", "email": "ada@example.com" })).unwrap();
    assert_eq!(request.delay, "3d");
    let env = TestEnv::new();
    let start = env.now();
    let waits = env.execute(&delayed_followup, request).await.suspended();
    assert!(
        matches!(&waits[..], [Pending::Sleep { until, .. }] if *until == start + secs(3 * DAY)),
        "{waits:?}"
    );
    assert!(env.advance(secs(3 * DAY - 1)).await.is_empty());
    assert_eq!(env.advance(secs(1)).await.len(), 1);
    assert_eq!(env.calls(&send_followup).len(), 1);
}

#[tokio::test]
async fn a_malformed_delay_fails_the_run_before_the_welcome() {
    let env = TestEnv::new();
    let error = env
        .execute(&delayed_followup, ada("three days"))
        .await
        .failed();
    assert!(error.message.contains("is not a duration"), "{error}");
    assert!(env.calls(&send_welcome).is_empty());
}

// ---- from the command line ----

fn app(db: &TempDb) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_reprise-examples"));
    command
        .env("REPRISE_DATABASE_URL", db.url())
        .env("REPRISE_EXAMPLES_EFFECT_LOG", db.dir().join("effects.log"))
        .current_dir(db.dir());
    command
}

fn stdout_json(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[test]
fn workflows_run_waits_out_a_sleep_but_leaves_a_hook_waiting() {
    let db = TempDb::new().unwrap();
    let started = Instant::now();
    let out = app(&db)
        .args(["workflows", "run", "delayed-followup", "--json", "--input"])
        .arg(r#"{"name":"Ada","email":"ada@example.com","delay":"1s"}"#)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(started.elapsed() >= Duration::from_secs(1));
    let line = stdout_json(&out);
    assert_eq!(line["status"], "completed");
    assert_eq!(line["output"]["waited"], "1s");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("How is it going, Ada?"), "{stderr}");

    // A hook is not waited for in-process, even with a timeout: the run is left waiting
    // (exit 3) and continues at its deadline, here by `runs resume`.
    let out = app(&db)
        .args(["workflows", "run", "approval", "--json", "--input"])
        .arg(r#"{"title":"Ship v3","timeout":"1s"}"#)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let waiting = stdout_json(&out);
    assert_eq!(waiting["status"], "waiting");
    std::thread::sleep(Duration::from_millis(1200));
    let run_id = waiting["run_id"].as_str().unwrap();
    let out = app(&db)
        .args(["runs", "resume", run_id, "--json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout_json(&out)["output"], json!({ "result": "expired" }));
    let effects = std::fs::read_to_string(db.dir().join("effects.log")).unwrap();
    for step in [
        "send-welcome#0",
        "send-followup#0",
        "ask-for-approval#0",
        "report-expired#0",
    ] {
        assert_eq!(
            effects.lines().filter(|l| l.ends_with(step)).count(),
            1,
            "{step}: {effects}"
        );
    }
}

// ---- through a `dev` process, over HTTP ----

/// Starts `workflow` over HTTP and returns the run id.
async fn start(dev: &Dev, workflow: &str, input: Value) -> String {
    let (status, reply) = dev
        .post(&format!("/workflows/{workflow}"), &[], &input.to_string())
        .await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["status"], "queued");
    reply["run_id"].as_str().unwrap().to_owned()
}

/// Waits until run `id` waits on its hook; returns the hook's resume URL.
async fn resume_url(dev: &Dev, id: &str) -> String {
    let run = dev.wait_status(id, "waiting").await;
    let url = run["hooks"][0]["resume_url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&format!("{}/hooks/", dev.base)), "{url}");
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleep_survives_a_crash_of_the_dev_process() {
    let mut dev = Dev::start(&[]).await;
    let id = start(
        &dev,
        "delayed-followup",
        json!({ "name": "Ada", "email": "ada@example.com", "delay": "2s" }),
    )
    .await;
    let run = dev.wait_status(&id, "sleeping").await;
    assert!(run["wake_at"].is_string(), "{run}");
    // kill -9 while the run sleeps; the new process knows of it only from the database.
    dev.crash_and_restart().await;
    let (status, run) = dev.get(&format!("/runs/{id}")).await;
    assert_eq!(
        (status, run["status"].as_str()),
        (200, Some("sleeping")),
        "{run}"
    );
    let run = dev.wait_status(&id, "completed").await;
    assert_eq!(run["output"]["waited"], "2s", "{run}");
    let effects = std::fs::read_to_string(dev.db.dir().join("effects.log")).unwrap();
    for step in ["send-welcome#0", "send-followup#0"] {
        let key = format!("{id}/{step}");
        assert_eq!(
            effects.lines().filter(|l| *l == key).count(),
            1,
            "{step} ran once across both processes:\n{effects}"
        );
    }
    assert!(
        dev.log().contains(&format!("{id}  completed")),
        "the new process printed the transition:\n{}",
        dev.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_serves_approvals_and_followups_over_http() {
    let dev = Dev::start(&[]).await;

    // Approved with a POSTed JSON body.
    let id = start(
        &dev,
        "approval",
        json!({ "title": "Ship v2", "timeout": "1h" }),
    )
    .await;
    let url = resume_url(&dev, &id).await;
    let run = dev.get(&format!("/runs/{id}")).await.1;
    assert!(run["hooks"][0]["timeout_at"].is_string(), "{run}");
    let (status, reply) = dev
        .post(&url, &[], r#"{"approved":"yes","by":"Ada"}"#)
        .await;
    assert_eq!(
        (status, &reply["violations"][0]["pointer"]),
        (422, &json!("/approved")),
        "{reply}"
    );
    let (status, reply) = dev.post(&url, &[], r#"{"approved":true,"by":"Ada"}"#).await;
    assert_eq!(status, 200, "{reply}");
    let run = dev.wait_status(&id, "completed").await;
    assert_eq!(run["output"], json!({ "result": "published", "by": "Ada" }));
    let (status, _) = dev
        .post(&url, &[], r#"{"approved":false,"by":"Bob"}"#)
        .await;
    assert_eq!(status, 409, "one payload only");

    // Rejected from a link: GET with a query string.
    let id = start(&dev, "approval", json!({ "title": "Ship v3" })).await;
    let url = resume_url(&dev, &id).await;
    let (status, reply) = dev.get(&format!("{url}?approved=false&by=Bob")).await;
    assert_eq!(status, 200, "{reply}");
    let run = dev.wait_status(&id, "completed").await;
    assert_eq!(run["output"], json!({ "result": "rejected", "by": "Bob" }));

    // Nobody decides: the worker wakes the run at the deadline.
    let id = start(
        &dev,
        "approval",
        json!({ "title": "Ship v4", "timeout": "1s" }),
    )
    .await;
    let run = dev.wait_status(&id, "completed").await;
    assert_eq!(run["output"], json!({ "result": "expired" }));

    // Canceled while it waits.
    let id = start(&dev, "approval", json!({ "title": "Ship v5" })).await;
    resume_url(&dev, &id).await;
    let (status, reply) = dev.post(&format!("/runs/{id}/cancel"), &[], "").await;
    assert_eq!(
        (status, &reply["status"]),
        (200, &json!("canceled")),
        "{reply}"
    );

    // A follow-up two seconds after the welcome: `sleeping` in between, holding no worker.
    let id = start(
        &dev,
        "delayed-followup",
        json!({ "name": "Ada", "email": "ada@example.com", "delay": "2s" }),
    )
    .await;
    let run = dev.wait_status(&id, "sleeping").await;
    assert!(run["wake_at"].is_string(), "{run}");
    let run = dev.wait_status(&id, "completed").await;
    assert_eq!(run["output"]["waited"], "2s");
    let effects = std::fs::read_to_string(dev.db.dir().join("effects.log")).unwrap();
    let sent = |step: &str| effects.lines().filter(|l| l.ends_with(step)).count();
    assert_eq!(
        (sent("send-welcome#0"), sent("send-followup#0")),
        (1, 1),
        "{effects}"
    );
}

// ---- run-log snapshots (`snapshots/it__waits__*.snap`) ----

#[tokio::test]
async fn delayed_followup_log() {
    let env = TestEnv::new();
    env.execute(&delayed_followup, ada("1h")).await.suspended();
    env.advance(secs(HOUR)).await.remove(0).1.completed();
    reprise_testkit::assert_run_snapshot!(env, env.last_run());
}

#[tokio::test]
async fn approval_expired_log() {
    let env = TestEnv::new();
    ask(&env, ApprovalRequest::new("Ship v2").expiring_after("1h")).await;
    env.clock().advance(secs(HOUR));
    env.continue_run(&env.last_run()).await.completed();
    reprise_testkit::assert_run_snapshot!(env, env.last_run());
}
