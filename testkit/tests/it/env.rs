//! `TestEnv`: execute, stubs, call capture, seeding, virtual time, hooks, patches.

use std::time::Duration;

use reprise::prelude::*;
use reprise_testkit::{Outcome, Pending, TestEnv, stubs};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Order {
    id: u32,
    #[schemars(range(min = 0))]
    cents: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Receipt {
    order: u32,
    #[schemars(length(min = 1))]
    code: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Approval {
    ok: bool,
}

/// Charges a card (the real one would call a payment API).
#[action(retries = 3, backoff = "10s")]
async fn charge(input: Order) -> Result<Receipt, ActionError> {
    Ok(Receipt {
        order: input.id,
        code: format!("real-{}", input.id),
    })
}

/// Ships an order.
#[action]
async fn ship(input: Receipt) -> Result<String, ActionError> {
    Ok(format!("shipped {}", input.code))
}

#[workflow(slug = "testkit-checkout")]
async fn checkout(ctx: Ctx, input: Order) -> Result<String, WorkflowError> {
    let receipt = charge.run(input).await?;
    ctx.sleep(Duration::from_secs(3600)).await?;
    let approval: Approval = ctx.hook().await?;
    if !approval.ok {
        return Err(WorkflowError::permanent("not approved"));
    }
    Ok(ship.run(receipt).await?)
}

#[tokio::test]
async fn a_workflow_runs_through_sleep_and_hook_on_virtual_time() {
    let env = TestEnv::new();
    let start = env.now();
    let waits = env
        .execute(&checkout, Order { id: 7, cents: 100 })
        .await
        .suspended();
    let [Pending::Sleep { until, .. }] = &waits[..] else {
        panic!("{waits:?}")
    };
    assert_eq!(*until - start, chrono::TimeDelta::hours(1));

    // Not yet due: nothing happens.
    assert!(env.advance(Duration::from_secs(60)).await.is_empty());
    let (run, outcome) = env.advance(Duration::from_secs(3600)).await.remove(0);
    let waits = outcome.suspended();
    let Pending::Hook { token, schema, .. } = &waits[0] else {
        panic!("{waits:?}")
    };
    assert_eq!(schema["properties"]["ok"]["type"], "boolean");

    let invalid = env
        .resume_hook(token, serde_json::json!({ "ok": "yes" }))
        .await
        .unwrap_err();
    assert!(invalid.to_string().contains("/ok"), "{invalid}");
    let done = env
        .resume_hook(token, Approval { ok: true })
        .await
        .unwrap()
        .completed();
    assert_eq!(done, "shipped real-7");
    assert_eq!(
        env.calls(&charge),
        vec![Order { id: 7, cents: 100 }],
        "charged once across three executions"
    );
    assert_eq!(
        env.log(&run).await.events().last().unwrap().event.kind,
        reprise::event::EventKind::RunCompleted
    );
}

#[workflow(slug = "testkit-charge-only")]
async fn charge_only(input: Order) -> Result<Receipt, WorkflowError> {
    Ok(charge.run(input).await?)
}

#[tokio::test]
async fn a_stub_replaces_the_action_and_retries_cost_no_real_time() {
    let env = TestEnv::new();
    env.stub(
        &charge,
        stubs::fail_times(
            2,
            ActionError::transient("503 from the bank"),
            |order: Order| {
                Ok(Receipt {
                    order: order.id,
                    code: "stubbed".into(),
                })
            },
        ),
    );
    let started = std::time::Instant::now();
    let before = env.now();
    let receipt = env
        .execute(&charge_only, Order { id: 1, cents: 5 })
        .await
        .completed();
    assert_eq!(receipt.code, "stubbed");
    assert_eq!(env.calls(&charge).len(), 3, "two failures, one success");
    let waited = env.now() - before;
    assert!(
        waited >= chrono::TimeDelta::milliseconds(22_500),
        "10 s + 20 s of virtual backoff, ±25 % jitter: {waited}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no real waiting"
    );
}

#[tokio::test]
async fn a_seeded_step_is_replayed_not_called_and_is_validated() {
    let env = TestEnv::new();
    env.seed(
        "charge#0",
        Receipt {
            order: 9,
            code: "seeded".into(),
        },
    );
    let receipt = env
        .execute(&charge_only, Order { id: 9, cents: 5 })
        .await
        .completed();
    assert_eq!(receipt.code, "seeded");
    assert!(env.calls(&charge).is_empty());

    env.seed("charge#0", serde_json::json!({ "order": 9, "code": "" }));
    let error = env
        .execute(&charge_only, Order { id: 9, cents: 5 })
        .await
        .failed();
    assert_eq!(error.kind, "schema", "{error}");
    assert!(error.message.contains("/code"), "{error}");
}

#[workflow(slug = "testkit-patched", register = false)]
async fn before_patch(ctx: Ctx, input: Order) -> Result<String, WorkflowError> {
    let receipt = charge.run(input).await?;
    let shipped = ship.run(receipt).await?;
    let _: Approval = ctx.hook().await?;
    Ok(shipped)
}

#[workflow(slug = "testkit-patched", register = false)]
async fn after_patch(ctx: Ctx, input: Order) -> Result<String, WorkflowError> {
    let receipt = charge.run(input).await?;
    if ctx.patched("ship-twice") {
        // A second call site of `ship` in front of the old one: pin both ids, so the old
        // call keeps the id it was recorded under (`ship`, not `ship@2`).
        #[step(id = "ship-extra")]
        ship.run(receipt.clone()).await?;
    }
    #[step(id = "ship")]
    let shipped = ship.run(receipt).await?;
    let _: Approval = ctx.hook().await?;
    Ok(shipped)
}

#[tokio::test]
async fn patched_is_false_for_runs_recorded_before_the_change_and_true_after() {
    let env_old = TestEnv::builder()
        .configure(|b| b.register(before_patch))
        .build();
    let waits = env_old
        .execute(&before_patch, Order { id: 1, cents: 1 })
        .await
        .suspended();
    let token = waits[0].token().unwrap().to_owned();
    let run = env_old.last_run();
    let export = env_old.engine().export_run(&run).await.unwrap();

    // New code resumes the old run, which passed the patch point before the change.
    let env_new = TestEnv::builder()
        .configure(|b| b.register(after_patch))
        .build();
    env_new.engine().import_for_replay(&export).await.unwrap();
    let waits = env_new.continue_run(&run).await.suspended();
    assert_eq!(
        waits[0].token(),
        Some(token.as_str()),
        "the replayed hook has the same token"
    );
    let done = env_new
        .resume_hook(&token, Approval { ok: true })
        .await
        .unwrap();
    assert_eq!(
        done,
        Outcome::Completed(serde_json::json!("shipped real-1"))
    );
    assert!(
        env_new.calls(&ship).is_empty(),
        "the old run replays its old path"
    );

    // A new run takes the patched branch, and keeps taking it on replay.
    let waits = env_new
        .execute(&after_patch, Order { id: 2, cents: 1 })
        .await
        .suspended();
    assert_eq!(env_new.calls(&ship).len(), 2);
    env_new
        .resume_hook(waits[0].token().unwrap(), Approval { ok: true })
        .await
        .unwrap()
        .completed();
    assert_eq!(
        env_new.calls(&ship).len(),
        2,
        "replayed after the hook, not re-run"
    );
}

#[workflow(slug = "testkit-inner")]
async fn inner(input: Order) -> Result<Receipt, WorkflowError> {
    Ok(charge.run(input).await?)
}

#[workflow(slug = "testkit-patch-after-sub-workflow")]
async fn patch_after_sub_workflow(ctx: Ctx, input: Order) -> Result<String, WorkflowError> {
    let receipt = inner.run(input).await?;
    let _: Approval = ctx.hook().await?;
    if ctx.patched("ship-after-approval") {
        return Ok(ship.run(receipt).await?);
    }
    Ok("not shipped".into())
}

/// Regression: the inner steps of a completed sub-workflow were counted as history still
/// to replay, so `patched` after it answered `false` for runs recorded after the change.
#[tokio::test]
async fn patched_after_a_completed_sub_workflow_is_true_for_new_runs() {
    let env = TestEnv::new();
    let waits = env
        .execute(&patch_after_sub_workflow, Order { id: 3, cents: 1 })
        .await
        .suspended();
    let done = env
        .resume_hook(waits[0].token().unwrap(), Approval { ok: true })
        .await
        .unwrap();
    assert_eq!(
        done,
        Outcome::Completed(serde_json::json!("shipped real-3"))
    );
}
