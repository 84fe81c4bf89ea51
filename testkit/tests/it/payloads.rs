//! Typed event payloads (issue 11): every event of logs written by today's code decodes
//! into an [`EventPayload`] and encodes back to the very same JSON, so the typed vocabulary
//! is a faithful reading of the on-disk contract (`reprise-run/1`).
//!
//! The logs come from workflows that together write every event kind and every optional
//! field: actions with a retried attempt and a failed step, a sub-workflow, recorded
//! values (`ctx.now`, `ctx.random`, `ctx.uuid`, `ctx.patched`, a hook's resume URL), a
//! durable sleep, hooks without a timeout, with one that fires and with one met in time,
//! an LLM request (`usage`), a structured LLM step and an agent (`usage_total`), a seeded
//! step, a run-level retry ending in failure, and a canceled run. They run on the in-memory
//! store and on SQLite (whose JSON goes through text).

use std::collections::BTreeSet;
use std::time::Duration;

use reprise::Agent;
use reprise::event::Event;
use reprise::event::{EventKind, EventPayload, HookReceipt, RunFilter, SuspendReason};
use reprise::prelude::*;
use reprise_testkit::llm::FakeLlm;
use reprise_testkit::replay::{self, Replay};
use reprise_testkit::{Outcome, TestEnv};
use serde_json::{Value, json};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Approval {
    by: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Note {
    text: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Verdict {
    ok: bool,
}

/// Echoes a note.
#[action]
async fn payloads_echo(input: Note) -> Result<Note, ActionError> {
    Ok(Note {
        text: format!("echo {}", input.text),
    })
}

/// Fails its first attempt with a transient error.
#[action(retries = 2, backoff = "1s")]
async fn payloads_flaky(input: u32, cx: ActionCtx) -> Result<u32, ActionError> {
    if cx.attempt() == 1 {
        return Err(ActionError::transient("503 on the first attempt"));
    }
    Ok(input + 1)
}

/// Always refuses, for good.
#[action]
async fn payloads_refuse(_input: u32) -> Result<u32, ActionError> {
    Err(ActionError::new("refused", "no, never", false).with_details(json!({ "code": 7 })))
}

/// A sub-workflow of one step.
#[workflow(slug = "payloads-inner")]
async fn payloads_inner(input: Note) -> Result<Note, WorkflowError> {
    Ok(payloads_echo.run(input).await?)
}

/// Writes (almost) every kind of event.
#[workflow(slug = "payloads-tour")]
async fn payloads_tour(ctx: Ctx, input: u32) -> Result<String, WorkflowError> {
    let now = ctx.now();
    let dice: u8 = ctx.random();
    let id = ctx.uuid();
    let v2 = ctx.patched("payloads-v2");
    let flaky = payloads_flaky.run(input).await?;
    let refused = payloads_refuse.run(input).await.is_err();
    let inner = payloads_inner
        .run(Note {
            text: format!("{now} {dice} {id} {v2}"),
        })
        .await?;
    ctx.sleep("1m").await?;
    let approval = ctx.hook::<Approval>();
    payloads_echo
        .run(Note {
            text: approval.resume_url(),
        })
        .await?;
    let approval = approval.await?;
    let late = ctx.hook::<Approval>().timeout("1h").await.is_err();
    let in_time: Approval = ctx.hook().timeout("1h").await?;
    let text = prompt_llm("Say hi").model("fake/model").await?;
    let verdict = prompt_llm("Judge it")
        .model("fake/model")
        .output::<Verdict>()
        .await?;
    let agent = Agent::new("payloads-helper")
        .model("fake/model")
        .tool(payloads_echo)
        .max_turns(3);
    let reply = agent.prompt("Echo x").await?;
    Ok(format!(
        "{flaky} {refused} {} {} {late} {} {text} {} {}",
        inner.text, approval.by, in_time.by, verdict.ok, reply.text
    ))
}

/// Fails every attempt (retryable): one run-level retry, then `run_failed`.
#[workflow(slug = "payloads-retried", max_attempts = 2)]
async fn payloads_retried(ctx: Ctx, input: Note) -> Result<Note, WorkflowError> {
    let echoed = payloads_echo.run(input).await?;
    Err(WorkflowError::new(
        "flaky_body",
        format!("attempt {} after {}", ctx.attempt(), echoed.text),
        true,
    ))
}

/// Waits on a hook forever (until canceled); its first step is seeded.
#[workflow(slug = "payloads-waiter")]
async fn payloads_waiter(ctx: Ctx, input: Note) -> Result<Approval, WorkflowError> {
    payloads_echo.run(input).await?;
    Ok(ctx.hook().await?)
}

/// Drives every workflow above in `env`, to its end.
async fn write_logs(env: &TestEnv) {
    let waits = env.execute(&payloads_tour, 1).await.suspended();
    assert_eq!(waits.len(), 1, "the sleep: {waits:?}");
    let mut advanced = env.advance(Duration::from_secs(60)).await;
    let (_, outcome) = advanced.remove(0);
    let token = |outcome: &Outcome<Value>| match outcome {
        Outcome::Suspended(waits) => waits[0].token().expect("a hook").to_owned(),
        other => panic!("expected a hook, got {other:?}"),
    };
    let first = token(&outcome);
    let outcome = env
        .resume_hook(&first, Approval { by: "Ada".into() })
        .await
        .unwrap();
    token(&outcome); // the hook that times out
    let mut advanced = env.advance(Duration::from_secs(3600)).await;
    let (_, outcome) = advanced.remove(0);
    let in_time = token(&outcome);
    let done = env
        .resume_hook(&in_time, Approval { by: "Grace".into() })
        .await
        .unwrap();
    let Outcome::Completed(Value::String(text)) = &done else {
        panic!("expected the tour to complete, got {done:?}");
    };
    assert!(
        text.starts_with("2 true echo ") && text.ends_with(" Ada true Grace hi true Echoed."),
        "{text}"
    );

    let error = env
        .execute(&payloads_retried, Note { text: "r".into() })
        .await
        .failed();
    assert_eq!(error.kind, "flaky_body");

    env.seed(
        "payloads-echo#0",
        Note {
            text: "seeded".into(),
        },
    );
    env.execute(&payloads_waiter, Note { text: "w".into() })
        .await
        .suspended();
    let run = env.last_run();
    env.engine().cancel(&run).await.unwrap();
}

/// What the logs must show, beyond every event kind: the optional fields and variants.
#[derive(Default, Debug)]
struct Seen {
    kinds: BTreeSet<String>,
    shapes: BTreeSet<&'static str>,
}

impl Seen {
    /// Decodes and re-encodes every event of one run's log, noting what it saw.
    fn round_trip(&mut self, events: &[Event]) {
        for event in events {
            let run = &event.run_id;
            let event = &event.event;
            let decoded = EventPayload::decode(event.kind, &event.payload)
                .unwrap_or_else(|e| panic!("{} of run {run}: {e}: {}", event.kind, event.payload));
            assert_eq!(decoded.kind(), event.kind);
            assert_eq!(event.decode_payload().as_ref(), Ok(&decoded));
            // The accessors read what the decoder reads.
            if let Some(output) = event.output() {
                assert!(matches!(
                    &decoded,
                    EventPayload::StepCompleted { output: o, .. }
                        | EventPayload::RunCompleted { output: o } if o == output
                ));
            }
            self.shapes.extend(shape(&decoded));
            self.kinds.insert(event.kind.to_string());
            // The round trip: the same JSON, key for key.
            let encoded = decoded.encode();
            assert_eq!(
                encoded, event.payload,
                "{} of run {run} does not re-encode to its JSON",
                event.kind
            );
        }
    }

    /// Asserts that the logs held every event kind (but a shutdown's `run_suspended`) and
    /// every optional field and variant the workflows above write.
    fn assert_complete(&self) {
        let kinds: BTreeSet<String> = [
            EventKind::RunCreated,
            EventKind::RunStarted,
            EventKind::StepStarted,
            EventKind::StepCompleted,
            EventKind::StepRetrying,
            EventKind::StepFailed,
            EventKind::SleepStarted,
            EventKind::SleepCompleted,
            EventKind::HookCreated,
            EventKind::HookReceived,
            EventKind::RunSuspended,
            EventKind::RunCompleted,
            EventKind::RunFailed,
            EventKind::RunCanceled,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(self.kinds, kinds, "every event kind is written");
        let shapes: BTreeSet<&str> = [
            "fingerprint",
            "step: action",
            "step: workflow",
            "step: llm",
            "step: agent",
            "recorded value",
            "usage",
            "usage_total",
            "seeded",
            "error details",
            "hook timeout",
            "hook without timeout",
            "timed out",
            "delivered",
            "suspended: sleep",
            "suspended: hook",
            "suspended: retry",
            "cancel error",
        ]
        .into_iter()
        .collect();
        assert_eq!(
            self.shapes, shapes,
            "every optional field and variant is written"
        );
    }
}

/// The optional field or variant `payload` shows, if any worth checking.
fn shape(payload: &EventPayload) -> Option<&'static str> {
    match payload {
        EventPayload::RunStarted {
            fingerprint: Some(_),
        } => Some("fingerprint"),
        EventPayload::StepStarted { kind, .. } => match kind.as_str() {
            "action" => Some("step: action"),
            "workflow" => Some("step: workflow"),
            "llm" => Some("step: llm"),
            "agent" => Some("step: agent"),
            _ => None,
        },
        EventPayload::StepCompleted {
            callee: Some(_), ..
        } => Some("recorded value"),
        EventPayload::StepCompleted { usage: Some(_), .. } => Some("usage"),
        EventPayload::StepCompleted {
            usage_total: Some(_),
            ..
        } => Some("usage_total"),
        EventPayload::StepCompleted { seeded: true, .. } => Some("seeded"),
        EventPayload::StepFailed { error } if error.details.is_some() => Some("error details"),
        EventPayload::HookCreated {
            timeout_at: Some(_),
            ..
        } => Some("hook timeout"),
        EventPayload::HookCreated {
            timeout_at: None, ..
        } => Some("hook without timeout"),
        EventPayload::HookReceived(HookReceipt::TimedOut { .. }) => Some("timed out"),
        EventPayload::HookReceived(HookReceipt::Delivered(_)) => Some("delivered"),
        EventPayload::RunSuspended { reason, .. } => match reason {
            SuspendReason::Sleep => Some("suspended: sleep"),
            SuspendReason::Hook => Some("suspended: hook"),
            SuspendReason::Retry => Some("suspended: retry"),
            _ => None,
        },
        EventPayload::RunCanceled { error: Some(_) } => Some("cancel error"),
        _ => None,
    }
}

fn llm() -> FakeLlm {
    FakeLlm::new()
        .reply("hi")
        .reply_json(json!({ "ok": true }))
        .reply_tool_calls(vec![("payloads-echo", json!({ "text": "x" }))])
        .reply("Echoed.")
}

/// The logs this code writes round-trip, in memory and through SQLite's JSON text.
#[tokio::test]
async fn every_event_of_todays_logs_decodes_and_re_encodes_to_the_same_json() {
    for env in [
        TestEnv::builder().llm(llm()).build(),
        TestEnv::builder().llm(llm()).sqlite().build(),
    ] {
        write_logs(&env).await;
        let mut seen = Seen::default();
        let runs = env.engine().list_runs(&RunFilter::default()).await.unwrap();
        assert_eq!(runs.len(), 3);
        for run in runs {
            seen.round_trip(&env.engine().store().events(&run.id).await.unwrap());
        }
        seen.assert_complete();
    }
}

/// The fixture of the workflow `slug`: `tests/fixtures/<slug>.json`, one run of it.
fn fixture(slug: &str) -> String {
    format!("{}/tests/fixtures/{slug}.json", env!("CARGO_MANIFEST_DIR"))
}

/// Records the fixtures (`reprise-run/1` exports). They were recorded by the code *before*
/// payloads were typed (commit f14601e), so that the test below proves the typed payloads
/// read and re-write what that code wrote; regenerate them only when the format changes on
/// purpose.
#[tokio::test]
#[ignore = "rewrites tests/fixtures; run by hand to regenerate them"]
async fn record_payload_fixtures() {
    let env = TestEnv::builder().llm(llm()).build();
    write_logs(&env).await;
    for run in env.engine().list_runs(&RunFilter::default()).await.unwrap() {
        replay::save(env.engine(), &run.id, fixture(&run.workflow))
            .await
            .unwrap();
    }
}

/// Histories written before payloads were typed: every event decodes and re-encodes to the
/// same JSON, and each history still imports and replays against today's code.
#[tokio::test]
async fn logs_recorded_before_payloads_were_typed_round_trip_and_replay() {
    let mut seen = Seen::default();
    for slug in ["payloads-tour", "payloads-retried", "payloads-waiter"] {
        let export = replay::load(fixture(slug)).unwrap();
        assert_eq!(export.format, "reprise-run/1");
        seen.round_trip(&export.events);
    }
    seen.assert_complete();
    Replay::new(&payloads_tour)
        .check(fixture("payloads-tour"))
        .await
        .unwrap();
    Replay::new(&payloads_retried)
        .check(fixture("payloads-retried"))
        .await
        .unwrap();
    Replay::new(&payloads_waiter)
        .check(fixture("payloads-waiter"))
        .await
        .unwrap();
}
