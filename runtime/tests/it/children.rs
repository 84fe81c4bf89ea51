//! Child runs (`wf.start(input)`, `start_after`, `.detach()`, `ParentClose`) and
//! continue-as-new (`ctx.continue_as_new`), with the history cap: each driven step by step
//! against one store, across engines re-created on it (a process kill), and replay-checked.

use std::sync::Arc;
use std::time::Duration;

use reprise::event::{EventKind, EventPayload, NewEvent, RunFilter, RunId, RunRecord, RunStatus};
use reprise::message::NewMessage;
use reprise::prelude::*;
use reprise::store::SharedStore;
use reprise::{ParentClose, RunOutcome, Trigger};
use serde_json::{Value, json};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Order {
    id: u32,
    fail: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Shipment {
    order: u32,
    label: String,
}

/// Prints a label, or fails for good when the order says so.
#[action]
async fn make_label(order: Order) -> Result<Shipment, ActionError> {
    if order.fail {
        return Err(ActionError::permanent("no carrier takes this parcel"));
    }
    Ok(Shipment {
        order: order.id,
        label: format!("L-{}", order.id),
    })
}

/// The child: ships one order.
#[workflow(slug = "ship-order", max_attempts = 1)]
async fn ship_order(order: Order) -> Result<Shipment, WorkflowError> {
    Ok(make_label.run(order).await?)
}

/// Starts the child, awaits it, says what came back.
#[workflow(slug = "order-parent")]
async fn order_parent(order: Order) -> Result<String, WorkflowError> {
    let child = ship_order.start(order).await?;
    Ok(match child.await {
        Ok(shipment) => format!("shipped {}", shipment.label),
        Err(error) => format!("{}: {}", error.kind, error.message),
    })
}

/// Starts the child, sleeps, then awaits it (the child may end first).
#[workflow(slug = "late-parent")]
async fn late_parent(ctx: Ctx, order: Order) -> Result<String, WorkflowError> {
    let child = ship_order.start(order).await?;
    ctx.sleep(Duration::from_millis(300)).await?;
    let shipment = child.await?;
    Ok(shipment.label)
}

/// A child that waits on a hook forever (until canceled).
#[workflow(slug = "waiting-child", max_attempts = 1)]
async fn waiting_child(ctx: Ctx, order: Order) -> Result<u32, WorkflowError> {
    let n: u32 = ctx.hook().await?;
    Ok(n + order.id)
}

/// Starts a child that waits forever, and gives up on its result after 150 ms.
#[workflow(slug = "impatient-parent")]
async fn impatient_parent(order: Order) -> Result<String, WorkflowError> {
    let child = waiting_child.start(order).await?;
    Ok(match child.timeout("150ms").await {
        Ok(n) => format!("got {n}"),
        Err(error) if error.is_timeout() => "gave up".to_owned(),
        Err(error) => return Err(error.into()),
    })
}

/// Starts a waiting child with the policy its input names, then waits on it.
#[workflow(slug = "policy-parent")]
async fn policy_parent(order: Order) -> Result<u32, WorkflowError> {
    let policy = if order.fail {
        ParentClose::Abandon
    } else {
        ParentClose::Cancel
    };
    let child = waiting_child.start(order).on_parent_close(policy).await?;
    Ok(child.await?)
}

/// Starts a detached child and ends at once.
#[workflow(slug = "detaching-parent")]
async fn detaching_parent(order: Order) -> Result<String, WorkflowError> {
    let id = waiting_child.start(order).detach().await?;
    Ok(id.to_string())
}

/// Starts a child due in 10 minutes and returns its id.
#[workflow(slug = "delaying-parent")]
async fn delaying_parent(order: Order) -> Result<String, WorkflowError> {
    let id = ship_order
        .start_after(Duration::from_secs(600), order)
        .detach()
        .await?;
    Ok(id.to_string())
}

/// A sub-workflow that starts a child and awaits it.
#[workflow(slug = "fulfil")]
async fn fulfil(order: Order) -> Result<String, WorkflowError> {
    let shipment = ship_order.start(order).await?.await?;
    Ok(shipment.label)
}

/// Runs `fulfil` as a sub-workflow, and two children side by side in `join!`.
#[workflow(slug = "nested-parent")]
async fn nested_parent(order: Order) -> Result<Vec<String>, WorkflowError> {
    let inner = fulfil.run(order.clone()).await?;
    let second = Order {
        id: order.id + 1,
        fail: false,
    };
    let (a, b) = futures::join!(ship_order.start(order), ship_order.start(second));
    let (a, b) = futures::join!(a?, b?);
    Ok(vec![inner, a?.label, b?.label])
}

/// Calls `.start` on an action.
#[workflow(slug = "wrong-start")]
async fn wrong_start(order: Order) -> Result<String, WorkflowError> {
    match make_label.start(order).await {
        Ok(_) => Ok("started".into()),
        Err(error) => Ok(format!("{}: {}", error.kind, error.message)),
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Loop {
    n: u32,
    until: u32,
}

/// Counts one.
#[action]
async fn tick(n: u32) -> Result<u32, ActionError> {
    Ok(n + 1)
}

/// Loops by continuing as new until `n == until`.
#[workflow(slug = "looper")]
async fn looper(ctx: Ctx, state: Loop) -> Result<u32, WorkflowError> {
    let n = tick.run(state.n).await?;
    if n < state.until {
        return ctx
            .continue_as_new(Loop {
                n,
                until: state.until,
            })
            .await;
    }
    Ok(n)
}

/// Starts a looping child and awaits the end of its chain.
#[workflow(slug = "loop-parent")]
async fn loop_parent(state: Loop) -> Result<u32, WorkflowError> {
    Ok(looper.start(state).await?.await?)
}

/// Loops with steps only, under a small history cap.
#[workflow(slug = "capped", max_history_events = 12)]
async fn capped(steps: u32) -> Result<u32, WorkflowError> {
    let mut n = 0;
    for _ in 0..steps {
        n = tick.run(n).await?;
    }
    Ok(n)
}

/// Loops with steps only, under the engine's cap.
#[workflow(slug = "uncapped")]
async fn uncapped(steps: u32) -> Result<u32, WorkflowError> {
    let mut n = 0;
    for _ in 0..steps {
        n = tick.run(n).await?;
    }
    Ok(n)
}

fn memory() -> SharedStore {
    Arc::new(reprise::store::MemoryStore::new())
}

fn engine(store: &SharedStore) -> Engine {
    Engine::builder()
        .store(store.clone())
        .register(make_label)
        .register(tick)
        .register(ship_order)
        .register(order_parent)
        .register(late_parent)
        .register(waiting_child)
        .register(policy_parent)
        .register(impatient_parent)
        .register(detaching_parent)
        .register(delaying_parent)
        .register(fulfil)
        .register(nested_parent)
        .register(wrong_start)
        .register(looper)
        .register(loop_parent)
        .register(capped)
        .register(uncapped)
        .build()
        .unwrap()
}

fn order(id: u32, fail: bool) -> Order {
    Order { id, fail }
}

/// The runs of workflow `slug`.
async fn runs_of(engine: &Engine, slug: &str) -> Vec<RunRecord> {
    let filter = RunFilter {
        workflow: Some(slug.to_owned()),
        ..Default::default()
    };
    engine.store().list_runs(&filter).await.unwrap()
}

/// The one child run `parent` started (by its log).
async fn only_child(engine: &Engine, parent: &RunId) -> RunId {
    let links = engine.run_links(parent).await.unwrap();
    assert_eq!(links.children.len(), 1, "{links:?}");
    links.children[0].run_id.clone()
}

/// The (kind, correlation id, callee) of each event of a log.
async fn log_of(engine: &Engine, id: &RunId) -> Vec<(EventKind, Option<String>, Option<String>)> {
    engine
        .events(id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            let callee = e
                .event
                .payload
                .get("callee")
                .and_then(Value::as_str)
                .map(str::to_owned);
            (e.event.kind, e.event.correlation_id, callee)
        })
        .collect()
}

async fn assert_replays(engine: &Engine, id: &RunId) {
    let export = engine.export_run(id).await.unwrap();
    let judged = engine.check_replay(&export).await.unwrap();
    assert!(
        judged.is_ok(),
        "replay of {id} diverged: {:?}",
        judged.err()
    );
}

#[tokio::test]
async fn a_child_run_completes_and_its_parent_gets_the_output() {
    let store = memory();
    let engine = engine(&store);
    let parent = engine.start(&order_parent, order(7, false)).await.unwrap();
    // The parent starts the child and waits for its result.
    let first = engine.execute(&parent).await.unwrap();
    assert!(
        matches!(&first.outcome, RunOutcome::Suspended(waits) if waits.len() == 1),
        "{first:?}"
    );
    assert_eq!(
        engine.get_run(&parent).await.unwrap().status,
        RunStatus::Waiting
    );
    let child = only_child(&engine, &parent).await;
    let record = engine.get_run(&child).await.unwrap();
    assert_eq!(record.trigger, Trigger::Child);
    assert_eq!(record.workflow, "ship-order");
    // The child is its own run, linked to its parent.
    let links = engine.run_links(&child).await.unwrap();
    let link = links.parent.unwrap();
    assert_eq!(link.run_id, parent);
    assert_eq!(link.step, "start:ship-order#0");
    // The child's end wakes the parent.
    let done = engine.drive(&child).await.unwrap();
    assert!(matches!(done.outcome, RunOutcome::Completed(_)));
    assert_eq!(
        engine.get_run(&parent).await.unwrap().status,
        RunStatus::Queued
    );
    let end = engine.drive(&parent).await.unwrap();
    assert_eq!(end.outcome, RunOutcome::Completed(json!("shipped L-7")));
    // The documented events: the start (kind `child`, output the run id) and the receipt.
    let log = log_of(&engine, &parent).await;
    let ids: Vec<_> = log
        .iter()
        .filter(|(k, _, _)| *k == EventKind::StepCompleted)
        .map(|(_, id, callee)| (id.clone().unwrap(), callee.clone()))
        .collect();
    assert_eq!(
        ids,
        vec![
            ("start:ship-order#0".to_owned(), None),
            (
                "start:ship-order#0$result".to_owned(),
                Some("recv:child".to_owned())
            ),
        ]
    );
    let events = engine.events(&parent).await.unwrap();
    let started = events
        .iter()
        .find(|e| e.event.kind == EventKind::StepStarted)
        .unwrap();
    assert_eq!(started.event.payload["kind"], json!("child"));
    assert_eq!(
        started.event.payload["input"]["workflow"],
        json!("ship-order")
    );
    assert_eq!(
        events
            .iter()
            .find(|e| e.event.kind == EventKind::StepCompleted)
            .unwrap()
            .event
            .payload["output"],
        json!({ "run_id": child })
    );
    assert_replays(&engine, &parent).await;
    assert_replays(&engine, &child).await;
    // Exactly one child run.
    assert_eq!(runs_of(&engine, "ship-order").await.len(), 1);
}

#[tokio::test]
async fn a_failed_child_is_an_error_of_kind_child_failed() {
    let store = memory();
    let engine = engine(&store);
    let parent = engine.start(&order_parent, order(3, true)).await.unwrap();
    engine.execute(&parent).await.unwrap();
    let child = only_child(&engine, &parent).await;
    let done = engine.drive(&child).await.unwrap();
    assert!(matches!(done.outcome, RunOutcome::Failed(_)), "{done:?}");
    let end = engine.drive(&parent).await.unwrap();
    let RunOutcome::Completed(Value::String(said)) = &end.outcome else {
        panic!("{end:?}");
    };
    assert!(said.starts_with("child_failed: child run"), "{said}");
    assert!(said.contains("no carrier takes this parcel"), "{said}");
    assert_replays(&engine, &parent).await;
}

#[tokio::test]
async fn a_child_survives_its_parents_worker_being_killed() {
    let store = memory();
    let first = engine(&store);
    let parent = first.start(&order_parent, order(5, false)).await.unwrap();
    first.execute(&parent).await.unwrap();
    let child = only_child(&first, &parent).await;
    drop(first); // the parent's process dies with the parent waiting
    // A new process on the same store: the child runs, the parent gets its result.
    let second = engine(&store);
    let done = second.drive(&child).await.unwrap();
    assert!(matches!(done.outcome, RunOutcome::Completed(_)));
    let end = second.drive(&parent).await.unwrap();
    assert_eq!(end.outcome, RunOutcome::Completed(json!("shipped L-5")));
    assert_eq!(runs_of(&second, "ship-order").await.len(), 1);
}

#[tokio::test]
async fn a_timeout_on_a_child_handle_is_a_recorded_select_against_a_timer() {
    let store = memory();
    let engine = engine(&store);
    let parent = engine
        .start(&impatient_parent, order(5, false))
        .await
        .unwrap();
    let first = engine.execute(&parent).await.unwrap();
    assert!(
        matches!(first.outcome, RunOutcome::Suspended(_)),
        "{first:?}"
    );
    let child = only_child(&engine, &parent).await;
    engine.execute(&child).await.unwrap(); // the child waits on its hook
    tokio::time::sleep(Duration::from_millis(200)).await;
    let end = engine.execute(&parent).await.unwrap();
    assert_eq!(end.outcome, RunOutcome::Completed(json!("gave up")));
    let log = log_of(&engine, &parent).await;
    let select = "start:waiting-child#0$result$timeout";
    assert!(
        log.iter()
            .any(|(kind, id, callee)| *kind == EventKind::StepCompleted
                && id.as_deref() == Some(select)
                && callee.as_deref() == Some("select")),
        "the timeout's select is recorded: {log:?}"
    );
    // The timeout gave up on the result, not on the run: the child was canceled only
    // when its parent ended (the default `ParentClose::Cancel`).
    assert_eq!(
        engine.get_run(&child).await.unwrap().status,
        RunStatus::Canceled
    );
    assert_replays(&engine, &parent).await;
}

#[tokio::test]
async fn a_replayed_start_finds_the_same_child() {
    // A parent that crashed after creating its child but before recording the start: the
    // replay creates no second child (create_run_once under `child:<parent>/<step>`).
    let store = memory();
    let engine = engine(&store);
    let parent = engine.start(&order_parent, order(9, false)).await.unwrap();
    engine.execute(&parent).await.unwrap();
    let child = only_child(&engine, &parent).await;
    // What the second attempt of the start would do: the same key finds the same run.
    let key = format!("child:{parent}/start:ship-order#0");
    assert_eq!(store.run_for_key(&key).await.unwrap(), Some(child.clone()));
    // Re-executing the parent (it is waiting; executing it replays the start) adds none.
    engine.execute(&parent).await.unwrap();
    assert_eq!(runs_of(&engine, "ship-order").await.len(), 1);
}

#[tokio::test]
async fn a_child_that_ends_before_the_parent_awaits_is_received() {
    let store = memory();
    let engine = engine(&store);
    let parent = engine.start(&late_parent, order(4, false)).await.unwrap();
    let first = engine.execute(&parent).await.unwrap();
    assert!(matches!(first.outcome, RunOutcome::Suspended(_)));
    assert_eq!(
        engine.get_run(&parent).await.unwrap().status,
        RunStatus::Sleeping
    );
    let child = only_child(&engine, &parent).await;
    engine.drive(&child).await.unwrap();
    // The message waits in the parent's inbox; the sleeping parent stays asleep.
    let inbox = store.messages(&parent, 0).await.unwrap();
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].channel, format!("child:{child}"));
    assert_eq!(
        inbox[0].dedupe.as_deref(),
        Some(&*format!("child-result:{child}"))
    );
    let end = engine.drive(&parent).await.unwrap();
    assert_eq!(end.outcome, RunOutcome::Completed(json!("L-4")));
    assert_replays(&engine, &parent).await;
}

#[tokio::test]
async fn an_await_reads_an_ended_childs_record_when_no_message_came() {
    // The child ended, but its post never reached the parent (a crash in between): the
    // parent's await finds the child's record and receives its outcome all the same.
    let store = memory();
    let engine = engine(&store);
    let parent = engine.start(&late_parent, order(6, false)).await.unwrap();
    engine.execute(&parent).await.unwrap();
    let child = only_child(&engine, &parent).await;
    // End the child behind the engine's back: no post.
    let record = engine.get_run(&child).await.unwrap();
    let now = engine.now();
    let output = json!({ "order": 6, "label": "L-6" });
    store
        .append(reprise::store::Append {
            run_id: child.clone(),
            first_seq: record.next_seq,
            events: vec![NewEvent::new(
                None,
                1,
                now,
                EventPayload::RunCompleted {
                    output: output.clone(),
                },
            )],
            update: reprise::event::RunUpdate {
                status: Some(RunStatus::Completed),
                output: Some(output),
                ..Default::default()
            },
            fence: None,
            release: false,
        })
        .await
        .unwrap();
    assert!(store.messages(&parent, 0).await.unwrap().is_empty());
    let end = engine.drive(&parent).await.unwrap();
    assert_eq!(end.outcome, RunOutcome::Completed(json!("L-6")));
}

#[tokio::test]
async fn canceling_the_parent_cancels_its_child_by_default() {
    let store = memory();
    let engine = engine(&store);
    let parent = engine.start(&policy_parent, order(1, false)).await.unwrap();
    engine.execute(&parent).await.unwrap();
    let child = only_child(&engine, &parent).await;
    engine.execute(&child).await.unwrap(); // waits on its hook
    assert_eq!(
        engine.get_run(&child).await.unwrap().status,
        RunStatus::Waiting
    );
    engine.cancel(&parent).await.unwrap();
    assert_eq!(
        engine.get_run(&parent).await.unwrap().status,
        RunStatus::Canceled
    );
    assert_eq!(
        engine.get_run(&child).await.unwrap().status,
        RunStatus::Canceled
    );
}

#[tokio::test]
async fn an_abandoned_child_outlives_its_canceled_parent() {
    let store = memory();
    let engine = engine(&store);
    // `fail: true` picks ParentClose::Abandon in `policy_parent`.
    let parent = engine.start(&policy_parent, order(1, true)).await.unwrap();
    engine.execute(&parent).await.unwrap();
    let child = only_child(&engine, &parent).await;
    engine.execute(&child).await.unwrap();
    engine.cancel(&parent).await.unwrap();
    assert_eq!(
        engine.get_run(&child).await.unwrap().status,
        RunStatus::Waiting
    );
    let links = engine.run_links(&parent).await.unwrap();
    assert_eq!(links.children[0].on_parent_close, ParentClose::Abandon);
}

#[tokio::test]
async fn a_detached_child_outlives_its_parent() {
    let store = memory();
    let engine = engine(&store);
    let parent = engine
        .start(&detaching_parent, order(2, false))
        .await
        .unwrap();
    let end = engine.drive(&parent).await.unwrap();
    let child = only_child(&engine, &parent).await;
    assert_eq!(end.outcome, RunOutcome::Completed(json!(child.to_string())));
    // The parent completed; the detached child was not canceled.
    let record = engine.get_run(&child).await.unwrap();
    assert_eq!(record.status, RunStatus::Queued);
    assert!(engine.run_links(&parent).await.unwrap().children[0].detached);
    assert_replays(&engine, &parent).await;
}

#[tokio::test]
async fn start_after_creates_a_queued_child_due_later() {
    let store = memory();
    let engine = engine(&store);
    let parent = engine
        .start(&delaying_parent, order(8, false))
        .await
        .unwrap();
    let before = engine.now();
    engine.drive(&parent).await.unwrap();
    let child = only_child(&engine, &parent).await;
    let record = engine.get_run(&child).await.unwrap();
    assert_eq!(record.status, RunStatus::Queued);
    let due = record.wake_at.unwrap();
    assert!(due >= before + chrono::Duration::seconds(599), "{due}");
    let events = engine.events(&child).await.unwrap();
    match EventPayload::decode(events[0].event.kind, &events[0].event.payload).unwrap() {
        EventPayload::RunCreated { start_at, .. } => assert_eq!(start_at, Some(due)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn children_start_inside_a_sub_workflow_and_a_join() {
    let store = memory();
    let engine = engine(&store);
    let parent = engine
        .start(&nested_parent, order(20, false))
        .await
        .unwrap();
    // Drive until the parent ends, running each child it waits on.
    for _ in 0..10 {
        let execution = engine.execute(&parent).await.unwrap();
        if !matches!(execution.outcome, RunOutcome::Suspended(_)) {
            assert_eq!(
                execution.outcome,
                RunOutcome::Completed(json!(["L-20", "L-20", "L-21"]))
            );
            break;
        }
        for child in engine.run_links(&parent).await.unwrap().children {
            if !engine
                .get_run(&child.run_id)
                .await
                .unwrap()
                .status
                .is_terminal()
            {
                engine.drive(&child.run_id).await.unwrap();
            }
        }
    }
    assert_eq!(
        engine.get_run(&parent).await.unwrap().status,
        RunStatus::Completed
    );
    let steps: Vec<String> = engine
        .run_links(&parent)
        .await
        .unwrap()
        .children
        .into_iter()
        .map(|c| c.step)
        .collect();
    assert_eq!(
        steps,
        vec![
            "fulfil#0/start:ship-order#0",
            "start:ship-order#0",
            "start:ship-order@2#0"
        ]
    );
    assert_replays(&engine, &parent).await;
}

#[tokio::test]
async fn start_on_an_action_is_a_clear_error() {
    let store = memory();
    let engine = engine(&store);
    let run = engine.start(&wrong_start, order(1, false)).await.unwrap();
    let end = engine.drive(&run).await.unwrap();
    let RunOutcome::Completed(Value::String(said)) = &end.outcome else {
        panic!("{end:?}");
    };
    assert!(said.starts_with("not_a_workflow:"), "{said}");
    assert!(said.contains("use `.run(..)` for actions"), "{said}");
}

/// Follows `continued_as` links from `id` to the last run of the chain.
async fn chain_of(engine: &Engine, id: &RunId) -> Vec<RunRecord> {
    let mut chain = vec![engine.get_run(id).await.unwrap()];
    while let Some(next) = engine
        .run_links(&chain.last().unwrap().id)
        .await
        .unwrap()
        .continued_as
    {
        chain.push(engine.get_run(&next).await.unwrap());
    }
    chain
}

#[tokio::test]
async fn continue_as_new_loops_with_bounded_histories() {
    let store = memory();
    let engine = engine(&store);
    let first = engine
        .start(&looper, Loop { n: 0, until: 5 })
        .await
        .unwrap();
    let mut id = first.clone();
    for _ in 0..5 {
        engine.drive(&id).await.unwrap();
        match engine.run_links(&id).await.unwrap().continued_as {
            Some(next) => id = next,
            None => break,
        }
    }
    let chain = chain_of(&engine, &first).await;
    assert_eq!(chain.len(), 5);
    for (i, run) in chain.iter().enumerate() {
        assert_eq!(run.status, RunStatus::Completed);
        assert_eq!(run.input, json!({ "n": i, "until": 5 }));
        // Each run's log holds its own steps only.
        assert!(run.next_seq <= 8, "run {i} has {} events", run.next_seq);
        if i + 1 < chain.len() {
            assert_eq!(run.output, Some(json!({ "continued_as": chain[i + 1].id })));
            let links = engine.run_links(&chain[i + 1].id).await.unwrap();
            assert_eq!(links.continued_from.as_ref(), Some(&run.id));
            assert_eq!(chain[i + 1].trigger, Trigger::ContinueAsNew);
        }
    }
    assert_eq!(chain.last().unwrap().output, Some(json!(5)));
    for run in &chain {
        assert_replays(&engine, &run.id).await;
    }
}

#[tokio::test]
async fn continue_as_new_hands_on_the_key_and_unreceived_messages() {
    let store = memory();
    let engine = engine(&store);
    // A run carrying a business key (as `start_with_key` records it).
    let now = engine.now();
    let input = json!({ "n": 0, "until": 2 });
    let record = RunRecord {
        id: RunId::new(),
        workflow: "looper".into(),
        status: RunStatus::Queued,
        input: input.clone(),
        output: None,
        error: None,
        attempt: 0,
        trigger: Trigger::Api,
        created_at: now,
        updated_at: now,
        wake_at: None,
        next_seq: 1,
        queue: None,
    };
    let created = NewEvent::new(
        None,
        0,
        now,
        EventPayload::RunCreated {
            workflow: "looper".into(),
            input,
            trigger: Trigger::Api,
            start_at: None,
            forked_from: None,
            traceparent: None,
            parent: None,
            continued_from: None,
            queue: None,
            key: Some("poller-1".into()),
            event: None,
            identity: None,
        },
    );
    let first = record.id.clone();
    store
        .create_run_once("business:looper:poller-1", record, created)
        .await
        .unwrap();
    // A signal sent but never received.
    store
        .post_message(NewMessage {
            run_id: first.clone(),
            channel: "signal:x".into(),
            payload: json!({ "hello": 1 }),
            dedupe: None,
            at: now,
        })
        .await
        .unwrap();
    engine.drive(&first).await.unwrap();
    let next = engine
        .run_links(&first)
        .await
        .unwrap()
        .continued_as
        .unwrap();
    assert_eq!(
        store.run_for_key("business:looper:poller-1").await.unwrap(),
        Some(next.clone())
    );
    let events = engine.events(&next).await.unwrap();
    assert_eq!(events[0].event.payload["key"], json!("poller-1"));
    let inbox = store.messages(&next, 0).await.unwrap();
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].channel, "signal:x");
    assert_eq!(inbox[0].payload, json!({ "hello": 1 }));
    assert_eq!(
        inbox[0].dedupe.as_deref(),
        Some(&*format!("forward:{first}:1"))
    );
}

#[tokio::test]
async fn a_crash_between_creating_the_new_run_and_ending_the_old_one_makes_one_new_run() {
    let store = memory();
    let first_engine = engine(&store);
    let id = first_engine
        .start(&looper, Loop { n: 0, until: 2 })
        .await
        .unwrap();
    first_engine.drive(&id).await.unwrap();
    let next = first_engine
        .run_links(&id)
        .await
        .unwrap()
        .continued_as
        .unwrap();
    // Undo the old run's end, as if the process had died right after creating the new
    // run: re-executing it (a fresh engine) must find that run, not make another.
    let events = first_engine.events(&id).await.unwrap();
    drop(first_engine);
    let copy: SharedStore = memory();
    let kept: Vec<NewEvent> = events
        .iter()
        .filter(|e| e.event.kind != EventKind::RunCompleted)
        .map(|e| e.event.clone())
        .collect();
    let record = store.run(&id).await.unwrap().unwrap();
    copy.create_run(
        RunRecord {
            status: RunStatus::Queued,
            output: None,
            next_seq: 1,
            queue: None,
            ..record
        },
        kept[0].clone(),
    )
    .await
    .unwrap();
    copy.append(reprise::store::Append {
        run_id: id.clone(),
        first_seq: 1,
        events: kept[1..].to_vec(),
        update: Default::default(),
        fence: None,
        release: false,
    })
    .await
    .unwrap();
    // The new run exists already (created under `continue:<old>`).
    let new_record = store.run(&next).await.unwrap().unwrap();
    let new_events = store.events(&next).await.unwrap();
    copy.create_run_once(
        &format!("continue:{id}"),
        new_record,
        new_events[0].event.clone(),
    )
    .await
    .unwrap();
    let second = engine(&copy);
    let end = second.execute(&id).await.unwrap();
    assert_eq!(
        end.outcome,
        RunOutcome::Completed(json!({ "continued_as": next }))
    );
    assert_eq!(runs_of(&second, "looper").await.len(), 2);
}

#[tokio::test]
async fn a_run_over_its_history_cap_fails_fast_with_advice() {
    let store = memory();
    let engine = engine(&store);
    let run = engine.start(&capped, 20).await.unwrap();
    let end = engine.drive(&run).await.unwrap();
    let RunOutcome::Failed(error) = &end.outcome else {
        panic!("{end:?}");
    };
    assert_eq!(error.kind, "history_too_large");
    assert!(
        error.message.contains("ctx.continue_as_new"),
        "{}",
        error.message
    );
    assert!(!error.retryable);
    let record = engine.get_run(&run).await.unwrap();
    assert_eq!(record.attempt, 1, "not retried");
    assert!(record.next_seq <= 14, "{} events", record.next_seq);
    // Under the cap it completes.
    let small = engine.start(&capped, 3).await.unwrap();
    assert_eq!(
        engine.drive(&small).await.unwrap().outcome,
        RunOutcome::Completed(json!(3))
    );
}

#[tokio::test]
async fn the_engine_wide_history_cap_applies_and_zero_turns_it_off() {
    let store = memory();
    let capped_engine = Engine::builder()
        .store(store.clone())
        .register(tick)
        .register(uncapped)
        .max_history_events(10)
        .build()
        .unwrap();
    let run = capped_engine.start(&uncapped, 10).await.unwrap();
    let end = capped_engine.drive(&run).await.unwrap();
    assert!(
        matches!(&end.outcome, RunOutcome::Failed(e) if e.kind == "history_too_large"),
        "{end:?}"
    );
    let open = Engine::builder()
        .store(store.clone())
        .register(tick)
        .register(uncapped)
        .max_history_events(0)
        .build()
        .unwrap();
    let run = open.start(&uncapped, 10).await.unwrap();
    assert_eq!(
        open.drive(&run).await.unwrap().outcome,
        RunOutcome::Completed(json!(10))
    );
}

#[tokio::test]
async fn children_and_continue_as_new_work_on_sqlite_across_engines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reprise.db");
    let open = || -> SharedStore {
        reprise::store::open(&format!("sqlite://{}", path.display())).unwrap()
    };
    let first = engine(&open());
    let parent = first.start(&order_parent, order(11, false)).await.unwrap();
    first.execute(&parent).await.unwrap();
    let child = only_child(&first, &parent).await;
    drop(first);
    let second = engine(&open());
    second.drive(&child).await.unwrap();
    assert_eq!(
        second.drive(&parent).await.unwrap().outcome,
        RunOutcome::Completed(json!("shipped L-11"))
    );
    let looping = second
        .start(&looper, Loop { n: 0, until: 2 })
        .await
        .unwrap();
    second.drive(&looping).await.unwrap();
    let next = second
        .run_links(&looping)
        .await
        .unwrap()
        .continued_as
        .unwrap();
    assert_eq!(
        second.drive(&next).await.unwrap().outcome,
        RunOutcome::Completed(json!(2))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_runs_parent_and_child_and_get_runs_shows_both_links() {
    use reprise::http::{HttpOptions, serve};
    let store = memory();
    let engine = engine(&store);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = HttpOptions {
        api_token: None,
        ..HttpOptions::default()
    };
    tokio::spawn(serve(engine.clone(), listener, options, async {
        let _ = stopped.await;
    }));
    let (stop_worker, worker) = crate::worker::spawn_worker(&engine);
    let parent = engine.start(&order_parent, order(12, false)).await.unwrap();
    let record = engine
        .wait_for_end(&parent, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(record.output, Some(json!("shipped L-12")));
    let child = only_child(&engine, &parent).await;
    let client = reqwest::Client::new();
    let get = |id: &RunId| {
        let url = format!("{base}/runs/{id}");
        let client = client.clone();
        async move {
            client
                .get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let shown = get(&parent).await;
    assert_eq!(shown["children"][0]["run_id"], json!(child));
    assert_eq!(shown["children"][0]["workflow"], json!("ship-order"));
    assert_eq!(shown["children"][0]["on_parent_close"], json!("cancel"));
    assert!(shown.get("parent").is_none());
    let shown = get(&child).await;
    assert_eq!(
        shown["parent"],
        json!({ "run_id": parent, "step": "start:ship-order#0" })
    );
    assert_eq!(shown["trigger"], json!("child"));
    let page = client
        .get(format!("{base}/ui/runs/{child}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!("/ui/runs/{parent}")),
        "no link to the parent"
    );
    stop_worker.send(()).unwrap();
    worker.await.unwrap().unwrap();
    let _ = stop.send(());
}

#[tokio::test]
async fn a_parent_gets_the_result_of_the_last_run_of_a_continued_child() {
    let store = memory();
    let engine = engine(&store);
    let parent = engine
        .start(&loop_parent, Loop { n: 0, until: 3 })
        .await
        .unwrap();
    engine.execute(&parent).await.unwrap();
    let first = only_child(&engine, &parent).await;
    let mut id = first.clone();
    for _ in 0..3 {
        engine.drive(&id).await.unwrap();
        match engine.run_links(&id).await.unwrap().continued_as {
            Some(next) => {
                // The continuation keeps the parent link, naming the run it started.
                let parent_link = engine.run_links(&next).await.unwrap().parent.unwrap();
                assert_eq!(parent_link.run_id, parent);
                assert_eq!(parent_link.started.as_ref(), Some(&first));
                id = next;
            }
            None => break,
        }
    }
    assert_eq!(chain_of(&engine, &first).await.len(), 3);
    // Only the last run's end reached the parent.
    assert_eq!(store.messages(&parent, 0).await.unwrap().len(), 1);
    assert_eq!(
        engine.drive(&parent).await.unwrap().outcome,
        RunOutcome::Completed(json!(3))
    );
}
