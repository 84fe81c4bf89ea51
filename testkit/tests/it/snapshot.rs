//! Run-log redaction for snapshots: `RunLog::redacted` and `redact_text`.

use std::time::Duration;

use chrono::{TimeDelta, TimeZone, Utc};
use reprise::event::{Event, EventKind, NewEvent, RunId};
use reprise::prelude::*;
use reprise_testkit::{Pending, RedactedEvent, RunLog, TestEnv};
use serde_json::{Value, json};

const RUN: &str = "0190b7a2-6c1e-7d3f-9a4b-1c2d3e4f5a6b";

fn event(seq: u64, kind: EventKind, at_secs: i64, payload: Value) -> Event {
    Event {
        run_id: RunId::from(RUN),
        seq,
        event: NewEvent {
            kind,
            correlation_id: None,
            attempt: 1,
            at: Utc.with_ymd_and_hms(2031, 5, 6, 7, 8, 9).unwrap() + TimeDelta::seconds(at_secs),
            payload,
        },
    }
}

#[test]
fn equal_times_share_a_placeholder_numbered_by_first_appearance() {
    let wake = "2031-05-06T07:09:09Z"; // at 60 s
    let log = RunLog::new(vec![
        event(0, EventKind::RunStarted, 0, json!({})),
        event(1, EventKind::SleepStarted, 0, json!({ "wake_at": wake })),
        event(2, EventKind::RunSuspended, 0, json!({ "wake_at": wake })),
        event(3, EventKind::SleepCompleted, 60, json!({})),
        event(
            4,
            EventKind::RunCompleted,
            61,
            json!({ "output": "woke at 2031-05-06 07:09:09 UTC (2031-05-06T09:09:09+02:00), not 2031-05-06T07:09:09" }),
        ),
    ]);
    let redacted = log.redacted();
    let at: Vec<_> = redacted.iter().map(|e| e.at.as_str()).collect();
    assert_eq!(
        at,
        ["[time-1]", "[time-1]", "[time-1]", "[time-2]", "[time-3]"]
    );
    assert_eq!(redacted[1].payload, json!({ "wake_at": "[time-2]" }));
    assert_eq!(redacted[2].payload, json!({ "wake_at": "[time-2]" }));
    assert_eq!(
        redacted[4].payload["output"], "woke at [time-2] ([time-2]), not 2031-05-06T07:09:09",
        "the same instant in `Display` form or another offset is linked; a time without offset is left alone"
    );
}

#[test]
fn tokens_in_urls_run_ids_and_uuids_are_redacted_and_digests_kept() {
    let env = TestEnv::new();
    let run = RunId::from(RUN);
    let token = env.engine().hook_token(&run, "hook#0");
    let url = env.engine().hook_resume_url(&run, "hook#0");
    assert!(url.ends_with(&token), "{url}");
    let other = "4f9c1e2a-0b3d-4c5e-8f60-718293a4b5c6";
    let digest = "5d02623f6b1ed907";
    let sha = "80990cbffe01c38165b55e60a4060fd83344e4ab1739c67329b94648e7bdf5e5";
    let mut started = event(
        0,
        EventKind::StepStarted,
        0,
        json!({
            "callee": "notify",
            "digest": digest,
            "input": { "text": format!("approve at {url}?by=ada or reply {token}") },
        }),
    );
    started.event.correlation_id = Some("notify#0".into());
    let completed = event(
        1,
        EventKind::StepCompleted,
        0,
        json!({ "output": { "key": format!("{RUN}/notify#0"), "ids": [other, other.to_uppercase(), RUN], "sha256": sha } }),
    );
    let plain = event(
        2,
        EventKind::StepStarted,
        0,
        json!({ "callee": "ship", "digest": digest, "input": { "n": 1 } }),
    );
    let redacted = RunLog::new(vec![started, completed, plain]).redacted();
    assert_eq!(
        redacted[0].payload["input"]["text"],
        "approve at http://reprise.test/hooks/[token-1]?by=ada or reply [token-1]"
    );
    assert_eq!(
        redacted[0].payload["digest"], "[digest]",
        "the digest covers the redacted token, so it would differ per run"
    );
    assert_eq!(redacted[0].id.as_deref(), Some("notify#0"));
    assert_eq!(
        redacted[1].payload["output"],
        json!({
            "key": "[run-1]/notify#0",
            "ids": ["[uuid-1]", "[uuid-1]", "[run-1]"],
            "sha256": sha,
        }),
        "hex digests are neither tokens nor UUIDs"
    );
    assert_eq!(redacted[2].payload["digest"], digest, "stable input, kept");
}

#[test]
fn redact_text_replaces_a_substring_everywhere() {
    let mut started = event(
        0,
        EventKind::StepStarted,
        0,
        json!({ "digest": "5d02623f6b1ed907", "input": { "path": "/tmp/.tmpAbC123/a.txt" } }),
    );
    started.event.correlation_id = Some("hash-file#0".into());
    let done = event(
        1,
        EventKind::StepCompleted,
        0,
        json!({ "output": { "/tmp/.tmpAbC123/a.txt": 3 } }),
    );
    let log = RunLog::new(vec![started, done]).redact_text("/tmp/.tmpAbC123", "[dir]");
    let redacted = log.redacted();
    assert_eq!(redacted[0].payload["input"]["path"], "[dir]/a.txt");
    assert_eq!(redacted[0].payload["digest"], "[digest]");
    assert_eq!(redacted[1].payload["output"], json!({ "[dir]/a.txt": 3 }));
    assert_eq!(
        log.events()[0].event.payload["input"]["path"],
        "/tmp/.tmpAbC123/a.txt",
        "the events themselves are untouched"
    );
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Note {
    text: String,
    n: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Ack {
    ok: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Done {
    id: String,
    n: u64,
    ok: bool,
}

/// Sends a note; the first attempt fails, so the log has a jittered retry.
#[action(retries = 3, backoff = "1s")]
async fn snapshot_send(input: Note, cx: ActionCtx) -> Result<String, ActionError> {
    if cx.attempt() == 1 {
        return Err(ActionError::transient("flaky"));
    }
    Ok(format!("sent {} ({})", input.text, cx.idempotency_key()))
}

#[workflow(slug = "testkit-snapshot")]
async fn snapshot_flow(ctx: Ctx, input: Note) -> Result<Done, WorkflowError> {
    let now = ctx.now();
    let id = ctx.uuid();
    let n: u64 = ctx.random(); // ≥ 2^16 but with a chance of 2^-48: linked where it reappears
    let hook = ctx.hook::<Ack>();
    snapshot_send
        .run(Note {
            text: format!("{} at {now} as {id}: {}", input.text, hook.resume_url()),
            n,
        })
        .await?;
    ctx.sleep(Duration::from_secs(60)).await?;
    let ack = hook.await?;
    Ok(Done {
        id: id.to_string(),
        n,
        ok: ack.ok,
    })
}

/// Runs `snapshot_flow` through its retry, sleep and hook; returns its redacted log.
async fn run_flow(env: &TestEnv) -> Vec<RedactedEvent> {
    let input = Note {
        text: "hello".into(),
        n: 0,
    };
    let waits = env.execute(&snapshot_flow, input).await.suspended();
    let [Pending::Sleep { until, .. }] = waits[..] else {
        panic!("{waits:?}")
    };
    let run = env.last_run();
    // Exactly to the wake time (which depends on the jittered retry delay before it).
    let to_wake = (until - env.now()).to_std().unwrap();
    let (_, outcome) = env.advance(to_wake).await.remove(0);
    let waits = outcome.suspended();
    let token = waits[0].token().unwrap().to_owned();
    env.resume_hook(&token, Ack { ok: true })
        .await
        .unwrap()
        .completed();
    let log = env.log(&run).await;
    assert_eq!(log.workflow(), Some("testkit-snapshot"));
    log.redacted()
}

#[tokio::test]
async fn two_runs_of_a_workflow_have_identical_redacted_logs() {
    let env = TestEnv::new();
    let first = run_flow(&env).await;
    let second = run_flow(&env).await;
    let fresh = run_flow(&TestEnv::new()).await;
    let sqlite = run_flow(&TestEnv::builder().sqlite().build()).await;
    assert_eq!(first, second, "same environment, later run");
    assert_eq!(first, fresh, "fresh environment");
    assert_eq!(first, sqlite, "SQLite store");

    let yaml = serde_json::to_string_pretty(&first).unwrap();
    for placeholder in [
        "[run-1]",
        "[time-1]",
        "[uuid-1]",
        "[random-1]",
        "[token-1]",
        "[duration]",
        "[schema]",
        "[digest]",
    ] {
        assert!(yaml.contains(placeholder), "{placeholder} missing: {yaml}");
    }
    let started = first
        .iter()
        .find(|e| e.kind == EventKind::StepStarted)
        .unwrap();
    assert_eq!(
        started.payload["input"],
        json!({
            "text": "hello at [time-1] as [uuid-1]: http://reprise.test/hooks/{{reprise:hook-token:hook#0}}",
            "n": "[random-1]",
        })
    );
    let hook = first
        .iter()
        .find(|e| e.kind == EventKind::HookCreated)
        .unwrap();
    assert_eq!(
        hook.payload,
        json!({ "token_hash": "[token-1]", "schema": "[schema]" }),
        "the stored hash is linked to the token in the URL"
    );
    let sleep = first
        .iter()
        .find(|e| e.kind == EventKind::SleepStarted)
        .unwrap();
    let woke = first
        .iter()
        .find(|e| e.kind == EventKind::SleepCompleted)
        .unwrap();
    assert_eq!(
        sleep.payload["wake_at"],
        json!(woke.at),
        "the sleep ends at its wake time: {yaml}"
    );
    assert_eq!(
        first.last().unwrap().payload["output"],
        json!({ "id": "[uuid-1]", "n": "[random-1]", "ok": true })
    );
    let step_ids: Vec<_> = first.iter().filter_map(|e| e.id.as_deref()).collect();
    assert!(step_ids.contains(&"$random#0"), "{step_ids:?}");
}
