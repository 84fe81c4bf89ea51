//! Step identity across code changes (DESIGN "Step identity"): a run recorded by one
//! version of a workflow, resumed by the next.
//!
//! Each version is declared with `register = false` and registered by hand, since two
//! versions of one slug cannot share the link-time registry of one binary.

use std::sync::Arc;

use reprise::event::{EventKind, RunStatus};
use reprise::prelude::*;
use reprise::store::{MemoryStore, SharedStore};
use reprise::{RunOutcome, Step};
use serde_json::json;

use crate::engine::{Calls, Num, add_one, double, events_of, ids_of, only_hook_token};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Go {
    go: bool,
}

/// Sends a notification.
#[action]
async fn notify(input: Num, cx: ActionCtx) -> Result<Num, ActionError> {
    cx.resource::<Calls>()?.push(&cx);
    Ok(input)
}

/// An audit step added in a later version.
#[action]
async fn audit(input: Num, cx: ActionCtx) -> Result<Num, ActionError> {
    cx.resource::<Calls>()?.push(&cx);
    Ok(input)
}

#[workflow(slug = "evolving", register = false)]
async fn evolving_v1(ctx: Ctx, input: Num) -> Result<Num, WorkflowError> {
    let a = add_one.run(input).await?;
    let _go: Go = ctx.hook().await?;
    Ok(double.run(a).await?)
}

#[workflow(slug = "evolving", register = false)]
async fn evolving_v2(ctx: Ctx, input: Num) -> Result<Num, WorkflowError> {
    audit.run(input.clone()).await?; // inserted before the existing steps
    let a = add_one.run(input).await?;
    let _go: Go = ctx.hook().await?;
    Ok(double.run(a).await?)
}

#[workflow(slug = "notifier", register = false)]
async fn notifier_v1(ctx: Ctx, _input: Num) -> Result<Num, WorkflowError> {
    notify.run(Num { n: 1 }).await?;
    notify.run(Num { n: 2 }).await?;
    let _go: Go = ctx.hook().await?;
    Ok(Num { n: 0 })
}

#[workflow(slug = "notifier", register = false)]
async fn notifier_v2(ctx: Ctx, _input: Num) -> Result<Num, WorkflowError> {
    notify.run(Num { n: 2 }).await?; // the two calls swapped
    notify.run(Num { n: 1 }).await?;
    let _go: Go = ctx.hook().await?;
    Ok(Num { n: 0 })
}

fn engine_for<W: Step>(workflow: W, store: &SharedStore, calls: &Arc<Calls>) -> Engine {
    Engine::builder()
        .store(store.clone())
        .register(workflow)
        .register(add_one)
        .register(double)
        .register(notify)
        .register(audit)
        .shared_resource(calls.clone())
        .hook_secret(b"the same secret in both versions".to_vec())
        .build()
        .unwrap()
}

#[tokio::test]
async fn inserting_an_unrelated_step_keeps_the_ids_of_the_others() {
    let calls = Arc::new(Calls::default());
    let store: SharedStore = Arc::new(MemoryStore::new());
    let v1 = engine_for(evolving_v1, &store, &calls);
    let id = v1.start(&evolving_v1, Num { n: 1 }).await.unwrap();
    assert!(matches!(
        v1.drive(&id).await.unwrap().outcome,
        RunOutcome::Suspended(_)
    ));

    let v2 = engine_for(evolving_v2, &store, &calls);
    let token = only_hook_token(&v2, &id).await;
    v2.resume_hook(&token, json!({ "go": true })).await.unwrap();
    let execution = v2.drive(&id).await.unwrap();
    assert_eq!(execution.outcome, RunOutcome::Completed(json!({ "n": 4 })));
    // add-one#0 and hook#0 kept their ids and were answered from the log.
    assert_eq!(calls.count("add-one#0"), 1);
    assert_eq!(execution.replayed, 2);
    let events = events_of(&v2, &id).await;
    assert_eq!(
        ids_of(&events, EventKind::StepCompleted),
        ["add-one#0", "audit#0", "double#0"]
    );
}

#[tokio::test]
async fn reordering_two_calls_to_the_same_action_is_a_non_determinism_naming_the_id() {
    let calls = Arc::new(Calls::default());
    let store: SharedStore = Arc::new(MemoryStore::new());
    let v1 = engine_for(notifier_v1, &store, &calls);
    let id = v1.start(&notifier_v1, Num { n: 0 }).await.unwrap();
    assert!(matches!(
        v1.drive(&id).await.unwrap().outcome,
        RunOutcome::Suspended(_)
    ));

    let v2 = engine_for(notifier_v2, &store, &calls);
    let token = only_hook_token(&v2, &id).await;
    v2.resume_hook(&token, json!({ "go": true })).await.unwrap();
    let RunOutcome::Failed(error) = v2.drive(&id).await.unwrap().outcome else {
        panic!("a reordered history must not complete");
    };
    assert!(error.is_non_determinism(), "{error}");
    assert_eq!(error.step.as_deref(), Some("notify#0"));
    assert!(error.message.contains("`notify#0`"), "{}", error.message);
    assert_eq!(v2.get_run(&id).await.unwrap().status, RunStatus::Failed);
    assert_eq!(
        calls.count("notify"),
        2,
        "nothing ran live after the mismatch"
    );
}
