//! Primitives inside primitives (issue 11, DESIGN "Recorder"): a sleep, a hook, a nested
//! sub-workflow, an agent and a `fan_out` each inside a sub-workflow — also under `join!` —
//! run to completion in memory, on SQLite, and across engines that share nothing but the
//! database; the crash checker over a sub-workflow that sleeps and waits; a step called
//! from a helper fn fails the run; a panicking body is retried; a NonDeterminism caused by
//! HashMap order says the code did not change; a replay check compares the inner steps of
//! sub-workflows.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use reprise::prelude::*;
use reprise::{NonDeterminismCause, RunOutcome, Wait};
use reprise_testkit::crash::{self, CheckConfig};
use reprise_testkit::llm::FakeLlm;
use reprise_testkit::replay::{Replay, ReplayFailure};
use reprise_testkit::{Outcome, TestEnv, VirtualClock};
use serde_json::json;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Order {
    id: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Approval {
    by: String,
}

/// Reserves stock for an order.
#[action]
async fn reserve(input: Order) -> Result<String, ActionError> {
    Ok(format!("reserved {}", input.id))
}

/// Sends a notice.
#[action]
async fn notify(input: String) -> Result<String, ActionError> {
    Ok(format!("sent {input}"))
}

/// Reserves, sleeps a minute, then notifies: a sub-workflow that sleeps.
#[workflow(slug = "compose-reserve-later")]
async fn reserve_later(ctx: Ctx, input: Order) -> Result<String, WorkflowError> {
    let reserved = reserve.run(input).await?;
    ctx.sleep(Duration::from_secs(60)).await?;
    Ok(notify.run(reserved).await?)
}

/// Waits for an approval: a sub-workflow with a hook.
#[workflow(slug = "compose-approve")]
async fn approve(ctx: Ctx, input: Order) -> Result<String, WorkflowError> {
    let approval: Approval = ctx.hook().await?;
    Ok(format!("order {} approved by {}", input.id, approval.by))
}

/// A sub-workflow calling a sleeping sub-workflow, then one that waits on a hook.
#[workflow(slug = "compose-nested")]
async fn nested(input: Order) -> Result<String, WorkflowError> {
    let later = reserve_later.run(input.clone()).await?;
    let approved = approve.run(input).await?;
    Ok(format!("{later}; {approved}"))
}

/// Two sub-workflows at once: the nested one (depth 3 to its sleep and hook) and a
/// sleeping one.
#[workflow(slug = "compose-top")]
async fn top(input: Order) -> Result<String, WorkflowError> {
    let other = Order { id: input.id + 100 };
    let (a, b) = futures::try_join!(nested.run(input), reserve_later.run(other))?;
    Ok(format!("{a} | {b}"))
}

/// Sleeping sub-workflows, at most two at a time, inside a sub-workflow.
#[workflow(slug = "compose-batch")]
async fn batch(input: Vec<u32>) -> Result<Vec<String>, WorkflowError> {
    let results = reprise::fan_out(input, 2, |id| reserve_later.run(Order { id })).await;
    Ok(results.into_iter().collect::<Result<Vec<_>, _>>()?)
}

/// Calls the batch as a sub-workflow.
#[workflow(slug = "compose-batch-top")]
async fn batch_top(input: Vec<u32>) -> Result<Vec<String>, WorkflowError> {
    Ok(batch.run(input).await?)
}

/// An agent whose tool is a sleeping workflow, inside a sub-workflow.
#[workflow(slug = "compose-agent-sub")]
async fn agent_sub(input: String) -> Result<String, WorkflowError> {
    let agent = Agent::new("helper")
        .model("fake/model")
        .tool(reserve_later)
        .max_turns(3);
    let reply = agent.prompt(input).await?;
    Ok(reply.text)
}

/// Calls the agent's sub-workflow.
#[workflow(slug = "compose-agent-top")]
async fn agent_top(input: String) -> Result<String, WorkflowError> {
    Ok(agent_sub.run(input).await?)
}

fn approval() -> Approval {
    Approval { by: "Ada".into() }
}

const TOP_OUTPUT: &str = "sent reserved 1; order 1 approved by Ada | sent reserved 101";

/// Runs `top` to its end in `env`: two sleeps at once, then the nested hook.
async fn run_top(env: &TestEnv) {
    let waits = env.execute(&top, Order { id: 1 }).await.suspended();
    let mut ids: Vec<String> = waits.iter().map(|w| format!("{w:?}")).collect();
    ids.sort();
    assert_eq!(waits.len(), 2, "both sleeps, at depths 2 and 1: {ids:?}");
    assert!(
        ids[0].contains("compose-nested#0/compose-reserve-later#0/sleep#0"),
        "{ids:?}"
    );
    assert!(
        ids[1].contains("compose-reserve-later#0/sleep#0"),
        "{ids:?}"
    );

    let run = env.last_run();
    let advanced = env.advance(Duration::from_secs(60)).await;
    assert_eq!(advanced.len(), 1);
    let Outcome::Suspended(waits) = &advanced[0].1 else {
        panic!("expected the nested hook, got {:?}", advanced[0].1);
    };
    assert_eq!(waits.len(), 1);
    assert!(format!("{:?}", waits[0]).contains("compose-nested#0/compose-approve#0/hook#0"));
    let token = waits[0].token().expect("a hook").to_owned();

    let done = env.resume_hook(&token, approval()).await.unwrap();
    assert_eq!(done, Outcome::Completed(json!(TOP_OUTPUT)));
    // Every effect ran once, whatever was replayed.
    assert_eq!(env.calls(&reserve).len(), 2);
    assert_eq!(env.calls(&notify).len(), 2);
    assert_eq!(env.completed_count(&run, "compose-nested#0/").await, 4);
}

#[tokio::test]
async fn sleeps_and_hooks_inside_nested_sub_workflows_under_join_in_memory() {
    run_top(&TestEnv::new()).await;
}

#[tokio::test]
async fn sleeps_and_hooks_inside_nested_sub_workflows_under_join_on_sqlite() {
    run_top(&TestEnv::builder().sqlite().build()).await;
}

/// Engines that share nothing but the SQLite file (and the hook secret) take turns, as
/// processes would: one records the sleeps, another wakes the run, a third delivers the
/// hook, a fourth finishes the run.
#[tokio::test]
async fn a_sub_workflow_sleeps_and_waits_across_engines_on_one_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("compose.db");
    let clock = Arc::new(VirtualClock::new(chrono::Utc::now()));
    let engine = || {
        Engine::builder()
            .sqlite(&path)
            .unwrap()
            .discover()
            .unwrap()
            .clock(clock.clone())
            .hook_secret(b"compose-test-secret-of-32-bytes!".to_vec())
            .build()
            .unwrap()
    };

    let first = engine();
    let run = first.start(&top, Order { id: 1 }).await.unwrap();
    let execution = first.execute(&run).await.unwrap();
    assert!(matches!(execution.outcome, RunOutcome::Suspended(ref w) if w.len() == 2));
    drop(first);

    clock.advance(Duration::from_secs(61));
    let second = engine();
    let execution = second.execute(&run).await.unwrap();
    let RunOutcome::Suspended(waits) = execution.outcome else {
        panic!("expected the hook, got {:?}", execution.outcome);
    };
    assert!(
        matches!(&waits[0], Wait::Hook { id, .. } if id == "compose-nested#0/compose-approve#0/hook#0")
    );
    drop(second);

    let third = engine();
    let token = third.hook_token(&run, "compose-nested#0/compose-approve#0/hook#0");
    third
        .resume_hook(&token, json!({ "by": "Ada" }))
        .await
        .unwrap();
    drop(third);

    let fourth = engine();
    let execution = fourth.execute(&run).await.unwrap();
    assert_eq!(execution.outcome, RunOutcome::Completed(json!(TOP_OUTPUT)));
    // Each step recorded once, across four engines.
    let events = fourth.events(&run).await.unwrap();
    let mut completed: Vec<&str> = events
        .iter()
        .filter(|e| e.event.kind == reprise::event::EventKind::StepCompleted)
        .filter_map(|e| e.event.correlation_id.as_deref())
        .collect();
    let all = completed.len();
    completed.sort_unstable();
    completed.dedup();
    assert_eq!(completed.len(), all, "{completed:?}");
    assert_eq!(
        all, 8,
        "two sub-workflows at the top, three and two inside: {completed:?}"
    );
}

async fn fan_out_in_a_sub_workflow(env: TestEnv) {
    let waits = env.execute(&batch_top, vec![1, 2, 3]).await.suspended();
    assert_eq!(waits.len(), 2, "two at a time");
    let mut outcome = None;
    for _ in 0..3 {
        let advanced = env.advance(Duration::from_secs(60)).await;
        if let Some((_, last)) = advanced.into_iter().last() {
            outcome = Some(last);
        }
    }
    assert_eq!(
        outcome,
        Some(Outcome::Completed(json!([
            "sent reserved 1",
            "sent reserved 2",
            "sent reserved 3"
        ])))
    );
    assert_eq!(env.calls(&reserve).len(), 3);
    assert_eq!(env.calls(&notify).len(), 3);
}

#[tokio::test]
async fn fan_out_of_sleeping_sub_workflows_inside_a_sub_workflow() {
    fan_out_in_a_sub_workflow(TestEnv::new()).await;
    fan_out_in_a_sub_workflow(TestEnv::builder().sqlite().build()).await;
}

async fn agent_in_a_sub_workflow(sqlite: bool) {
    let llm = FakeLlm::new()
        .reply_tool_calls(vec![("compose-reserve-later", json!({ "id": 5 }))])
        .reply("Reserved and notified.");
    let mut builder = TestEnv::builder().llm(llm.clone());
    if sqlite {
        builder = builder.sqlite();
    }
    let env = builder.build();
    let waits = env
        .execute(&agent_top, "Reserve order 5".to_owned())
        .await
        .suspended();
    assert!(
        format!("{waits:?}")
            .contains("compose-agent-sub#0/helper#0/compose-reserve-later#0/sleep#0"),
        "{waits:?}"
    );
    let advanced = env.advance(Duration::from_secs(60)).await;
    assert_eq!(
        advanced[0].1,
        Outcome::Completed(json!("Reserved and notified."))
    );
    assert_eq!(llm.calls(), 2, "a replay never asks the model again");
    assert_eq!(env.calls(&reserve).len(), 1);
}

#[tokio::test]
async fn an_agent_with_a_sleeping_workflow_tool_inside_a_sub_workflow() {
    agent_in_a_sub_workflow(false).await;
    agent_in_a_sub_workflow(true).await;
}

#[test]
fn crash_checker_over_a_sub_workflow_that_sleeps_and_waits() {
    for config in [CheckConfig::default(), CheckConfig::default().sqlite()] {
        let config = config.hook("compose-approve#0/hook#0", json!({ "by": "Ada" }));
        let report = crash::assert_crash_safe(&nested, Order { id: 3 }, config);
        assert_eq!(
            report.outcome,
            RunOutcome::Completed(json!("sent reserved 3; order 3 approved by Ada"))
        );
        assert!(report.crashed > 0);
    }
}

// ---------------------------------------------------------------------------------------
// A step called from a helper fn

/// Not a workflow: the macro does not see (or record) the step inside.
async fn reserve_via_helper(order: Order) -> Result<String, ActionError> {
    reserve.run(order).await
}

/// Calls a step through a helper fn.
#[workflow(slug = "compose-helper")]
async fn uses_helper(input: Order) -> Result<String, WorkflowError> {
    Ok(reserve_via_helper(input).await?)
}

/// An action that calls another action: inside an action, `.run(..)` is an ordinary call.
#[action]
async fn reserve_twice(input: Order) -> Result<String, ActionError> {
    let first = reserve.run(input.clone()).await?;
    let second = reserve.run(Order { id: input.id + 1 }).await?;
    Ok(format!("{first}, {second}"))
}

/// Calls the composite action as one step.
#[workflow(slug = "compose-action-in-action")]
async fn action_in_action(input: Order) -> Result<String, WorkflowError> {
    Ok(reserve_twice.run(input).await?)
}

#[tokio::test]
async fn an_action_calling_an_action_is_an_ordinary_call_inside_one_recorded_step() {
    let env = TestEnv::new();
    let done = env.execute(&action_in_action, Order { id: 1 }).await;
    assert_eq!(
        done,
        Outcome::Completed("reserved 1, reserved 2".to_owned())
    );
    let run = env.last_run();
    assert_eq!(
        env.completed_count(&run, "").await,
        1,
        "one step: reserve-twice#0"
    );
}

#[tokio::test]
async fn a_step_called_from_a_helper_fn_fails_the_run_naming_the_step_and_the_fix() {
    let env = TestEnv::new();
    let error = env.execute(&uses_helper, Order { id: 4 }).await.failed();
    assert_eq!(error.kind, "unrecorded_step", "{error}");
    assert!(error.message.contains("`reserve.run(..)`"), "{error}");
    assert!(error.message.contains("#[workflow]"), "{error}");
    assert!(env.calls(&reserve).is_empty(), "the action never ran");
    // Outside any workflow, the same helper is an ordinary call.
    assert_eq!(
        reserve_via_helper(Order { id: 4 }).await.unwrap(),
        "reserved 4"
    );
}

// ---------------------------------------------------------------------------------------
// Panicking bodies

/// Panics on its first attempt.
#[workflow(slug = "compose-panics-once", max_attempts = 3)]
async fn panics_once(ctx: Ctx, input: Order) -> Result<String, WorkflowError> {
    let reserved = reserve.run(input).await?;
    if ctx.attempt() == 1 {
        panic!("a bug in attempt one");
    }
    Ok(reserved)
}

/// Always panics.
#[workflow(slug = "compose-panics", max_attempts = 2)]
async fn always_panics(input: Order) -> Result<String, WorkflowError> {
    reserve.run(input).await?;
    panic!("a bug");
}

#[tokio::test]
async fn a_panicking_body_is_retried_up_to_max_attempts_replaying_its_steps() {
    // TestEnv takes run-level retries at once (its clock jumps over the backoff).
    let env = TestEnv::new();
    let done = env.execute(&panics_once, Order { id: 6 }).await;
    assert_eq!(done, Outcome::Completed("reserved 6".to_owned()));
    assert_eq!(env.calls(&reserve).len(), 1, "replayed, not re-run");
    let run = env.engine().get_run(&env.last_run()).await.unwrap();
    assert_eq!(run.attempt, 2);

    let env = TestEnv::new();
    let error = env.execute(&always_panics, Order { id: 7 }).await.failed();
    assert_eq!(error.kind, "panic");
    assert!(error.message.contains("a bug"), "{error}");
    let run = env.engine().get_run(&env.last_run()).await.unwrap();
    assert_eq!(run.attempt, 2, "max_attempts = 2");
    assert_eq!(env.calls(&reserve).len(), 1);
}

// ---------------------------------------------------------------------------------------
// NonDeterminism that is not a code change

/// Records the names in HashSet order (a bug: the order changes between processes).
#[workflow(slug = "compose-hash-order")]
async fn hash_order(ctx: Ctx, input: Vec<String>) -> Result<String, WorkflowError> {
    let unique: HashSet<String> = input.into_iter().collect();
    let names: Vec<String> = unique.into_iter().collect();
    let joined = notify.run(names.join(",")).await?;
    ctx.sleep(Duration::from_secs(1)).await?;
    Ok(joined)
}

#[tokio::test]
async fn hashmap_order_is_reported_as_non_determinism_with_the_same_code_and_both_inputs() {
    let names: Vec<String> = (0..12).map(|i| format!("name-{i}")).collect();
    let env = TestEnv::new();
    // Each replay builds a new HashSet with new random keys; a few runs make a different
    // order certain in practice (the chance of 12 names keeping their order is ~1/12!).
    let mut error = None;
    for _ in 0..5 {
        env.execute(&hash_order, names.clone()).await.suspended();
        let advanced = env.advance(Duration::from_secs(1)).await;
        if let Outcome::Failed(failed) = &advanced[0].1 {
            error = Some(failed.clone());
            break;
        }
    }
    let error = error.expect("a replay computed another order");
    assert!(error.is_non_determinism(), "{error}");
    let report: reprise::NonDeterminism =
        serde_json::from_value(error.details.clone().unwrap()).unwrap();
    assert_eq!(report.cause, NonDeterminismCause::SameCode, "{error}");
    assert!(error.message.contains("did not change"), "{error}");
    assert!(error.message.contains("HashMap"), "{error}");
    assert!(!error.message.contains("pin the old id"), "{error}");
    assert_eq!(report.differences.len(), 1, "{report:?}");
    assert_eq!(report.differences[0].pointer, "");
    assert!(
        report.differences[0].recorded.contains("name-"),
        "{report:?}"
    );
    assert!(
        report.differences[0].requested.contains("name-"),
        "{report:?}"
    );
    assert_ne!(
        report.differences[0].recorded,
        report.differences[0].requested
    );
    // The stored run error carries the report (what `runs get --json` and `GET /runs/{id}`
    // show).
    let run = env.engine().get_run(&env.last_run()).await.unwrap();
    let stored = run.error.expect("a failed run has its error");
    assert_eq!(stored["details"]["cause"], json!("same_code"), "{stored}");
    assert!(stored["details"]["differences"].is_array(), "{stored}");
}

// ---------------------------------------------------------------------------------------
// Replay checks compare sub-workflow internals

/// Version 1: reserve, then notify with the reservation.
#[workflow(slug = "compose-sub-v", register = false)]
async fn sub_v1(ctx: Ctx, input: Order) -> Result<String, WorkflowError> {
    let reserved = reserve.run(input).await?;
    let sent = notify.run(reserved).await?;
    ctx.sleep(Duration::from_secs(60)).await?;
    Ok(sent)
}

/// Version 2: notify first (a reordering of the sub-workflow's steps).
#[workflow(slug = "compose-sub-v", register = false)]
async fn sub_v2(ctx: Ctx, input: Order) -> Result<String, WorkflowError> {
    let sent = notify.run(format!("order {}", input.id)).await?;
    let reserved = reserve.run(input).await?;
    ctx.sleep(Duration::from_secs(60)).await?;
    Ok(format!("{sent} {reserved}"))
}

/// Calls version 1 of the sub-workflow.
#[workflow(slug = "compose-outer-v", register = false)]
async fn outer_v1(ctx: Ctx, input: Order) -> Result<String, WorkflowError> {
    let inner = sub_v1.run(input).await?;
    ctx.sleep(Duration::from_secs(60)).await?;
    Ok(inner)
}

/// Calls version 2 of the sub-workflow.
#[workflow(slug = "compose-outer-v", register = false)]
async fn outer_v2(ctx: Ctx, input: Order) -> Result<String, WorkflowError> {
    let inner = sub_v2.run(input).await?;
    ctx.sleep(Duration::from_secs(60)).await?;
    Ok(inner)
}

#[tokio::test]
async fn a_replay_check_fails_on_a_reordered_sub_workflow_finished_or_not() {
    let env = TestEnv::builder()
        .configure(|b| b.register(outer_v1))
        .build();
    // Suspended inside the sub-workflow (its sleep), then after it (the outer sleep).
    env.execute(&outer_v1, Order { id: 8 }).await.suspended();
    let run = env.last_run();
    let inside = env.engine().export_run(&run).await.unwrap();
    env.advance(Duration::from_secs(60)).await;
    let after = env.engine().export_run(&run).await.unwrap();
    assert_eq!(after.run.status, reprise::RunStatus::Sleeping);

    // Today's code still replays both histories.
    Replay::new(&outer_v1).check_export(&inside).await.unwrap();
    Replay::new(&outer_v1).check_export(&after).await.unwrap();

    // The reordered code fails on both, at the sub-workflow's first step.
    for export in [&inside, &after] {
        let failure = Replay::new(&outer_v2)
            .check_export(export)
            .await
            .expect_err("a reordered sub-workflow does not replay");
        let ReplayFailure::NonDeterminism { error, .. } = &failure else {
            panic!("expected a NonDeterminism, got {failure}");
        };
        assert!(error.id.starts_with("compose-sub-v#0/"), "{failure}");
    }
}

#[tokio::test]
async fn resuming_a_run_on_changed_code_says_the_code_changed() {
    let env_old = TestEnv::builder()
        .configure(|b| b.register(outer_v1))
        .build();
    env_old
        .execute(&outer_v1, Order { id: 9 })
        .await
        .suspended();
    let run = env_old.last_run();
    let export = env_old.engine().export_run(&run).await.unwrap();

    let env_new = TestEnv::builder()
        .configure(|b| b.register(outer_v2))
        .build();
    env_new.engine().import_for_replay(&export).await.unwrap();
    let error = match env_new.continue_run(&run).await {
        Outcome::Failed(error) => error,
        other => panic!("expected a NonDeterminism, got {other:?}"),
    };
    let report: reprise::NonDeterminism =
        serde_json::from_value(error.details.clone().unwrap()).unwrap();
    assert_eq!(report.cause, NonDeterminismCause::CodeChanged, "{error}");
    assert_eq!(report.id, "compose-sub-v#0/notify#0");
    assert!(error.message.contains("step sites changed"), "{error}");
    // The recorded input was the reservation, the new code asks with the order.
    assert_eq!(report.differences.len(), 1, "{report:?}");
    assert_eq!(report.differences[0].recorded, "\"reserved 9\"");
    assert_eq!(report.differences[0].requested, "\"order 9\"");
    assert!(env_new.calls(&notify).is_empty(), "nothing ran live");
}

/// Asks a model without naming one.
#[workflow(slug = "compose-no-model")]
async fn no_model(input: String) -> Result<String, WorkflowError> {
    Ok(prompt_llm(input).await?)
}

#[tokio::test]
async fn an_llm_step_naming_no_model_fails_saying_how_to_set_one_and_reads_no_environment() {
    // TestEnv is hermetic: REPRISE_LLM_MODEL in the developer's shell would not apply.
    let llm = FakeLlm::new().reply("never asked");
    let env = TestEnv::builder().llm(llm.clone()).build();
    let error = env.execute(&no_model, "Hi".to_owned()).await.failed();
    assert_eq!(error.kind, "llm", "{error}");
    assert!(
        error.message.contains("LLM step `llm#0` names no model"),
        "{error}"
    );
    assert!(
        error.message.contains("EngineBuilder::default_model"),
        "{error}"
    );
    assert_eq!(llm.calls(), 0);

    let env = TestEnv::builder()
        .llm(llm.clone())
        .configure(|b| b.default_model("fake/model"))
        .build();
    let reply = env.execute(&no_model, "Hi".to_owned()).await;
    assert_eq!(reply, Outcome::Completed("never asked".to_owned()));
}
