//! Flow-control queues on a `TestEnv` (virtual time): a run in a queue starts only when
//! its queue admits it; `execute` reports a held-back run as `Pending::Queued` with the
//! reason; `admit` and `advance` admit runs as limits free up and windows pass.

use std::time::Duration;

use reprise::StartOptions;
use reprise::prelude::*;
use reprise::queue::{DebouncePolicy, Queue};
use reprise_testkit::{Outcome, Pending, TestEnv};
use serde_json::json;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct QtJob {
    customer: String,
    n: u32,
    wait: bool,
}

fn qt(customer: &str, n: u32, wait: bool) -> QtJob {
    QtJob {
        customer: customer.into(),
        n,
        wait,
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct QtGo {
    ok: bool,
}

/// The job's work.
#[action]
async fn qt_work(input: QtJob) -> Result<u32, ActionError> {
    Ok(input.n)
}

/// A job in queue `qt-key`; waits for signal `go` first when `wait`.
#[workflow(slug = "qt-job", queue = "qt-key")]
async fn qt_job(ctx: Ctx, input: QtJob) -> Result<u32, WorkflowError> {
    if input.wait {
        ctx.signal::<QtGo>("go").recv().await?;
    }
    Ok(qt_work.run(input).await?)
}

fn queued<T: std::fmt::Debug>(outcome: Outcome<T>) -> (String, Option<String>, String) {
    match &outcome.suspended()[..] {
        [Pending::Queued { queue, key, reason }] => (queue.clone(), key.clone(), reason.clone()),
        other => panic!("expected a run waiting for its queue, got {other:?}"),
    }
}

#[tokio::test]
async fn a_test_env_admits_queue_runs_one_per_key() {
    let env = TestEnv::builder()
        .queue(Queue::new("qt-key").key("/customer").key_concurrency(1))
        .build();
    let waits = env.execute(&qt_job, qt("c1", 1, true)).await.suspended();
    assert!(
        matches!(&waits[..], [Pending::Message { channel, .. }] if channel == "signal:go"),
        "{waits:?}"
    );
    let first = env.last_run();
    // Same key: held back, with the reason `runs get` shows.
    let (queue, key, reason) = queued(env.execute(&qt_job, qt("c1", 2, false)).await);
    let second = env.last_run();
    assert_eq!((queue.as_str(), key.as_deref()), ("qt-key", Some("c1")));
    assert!(
        reason.contains("key `c1` has 1 of 1 runs at once"),
        "{reason}"
    );
    // Another key is not held back.
    assert_eq!(
        env.execute(&qt_job, qt("c2", 3, false)).await.completed(),
        3
    );
    // The first ends; `admit` admits the second.
    let outcome = env.signal(&first, "go", json!({"ok": true})).await.unwrap();
    assert_eq!(outcome, Outcome::Completed(json!(1)));
    assert_eq!(
        env.admit().await,
        vec![(second, Outcome::Completed(json!(2)))]
    );
    assert!(env.admit().await.is_empty());
}

#[tokio::test]
async fn a_test_env_passes_debounce_windows_with_advance() {
    let env = TestEnv::builder()
        .queue(
            Queue::new("qt-deb")
                .key("/customer")
                .debounce(Duration::from_secs(5), DebouncePolicy::Replace),
        )
        .build();
    let options = || StartOptions::new().queue("qt-deb");
    let (replaced, _) = env
        .start_with(&qt_job, qt("c1", 1, false), options())
        .await
        .unwrap();
    env.advance(Duration::from_secs(3)).await;
    let (last, created) = env
        .start_with(&qt_job, qt("c1", 2, false), options())
        .await
        .unwrap();
    assert!(created);
    // Due 5 s after the last start.
    assert!(env.advance(Duration::from_secs(4)).await.is_empty());
    let outcomes = env.advance(Duration::from_secs(1)).await;
    assert_eq!(outcomes, vec![(last, Outcome::Completed(json!(2)))]);
    assert_eq!(env.calls(&qt_work), vec![qt("c1", 2, false)]);
    let error = env.continue_run(&replaced).await.failed();
    assert_eq!(error.kind, reprise::kinds::CANCELED);
}

#[tokio::test]
async fn a_test_env_passes_rate_windows_with_advance() {
    let env = TestEnv::builder()
        .queue(Queue::new("qt-rate").rate_limit(1, Duration::from_secs(60)))
        .build();
    let options = || StartOptions::new().queue("qt-rate");
    let (first, _) = env
        .start_with(&qt_job, qt("c1", 1, false), options())
        .await
        .unwrap();
    let (second, _) = env
        .start_with(&qt_job, qt("c2", 2, false), options())
        .await
        .unwrap();
    assert_eq!(
        env.admit().await,
        vec![(first, Outcome::Completed(json!(1)))]
    );
    let (_, _, reason) = queued(env.continue_run(&second).await);
    assert!(reason.contains("rate limit of 1 per 1m"), "{reason}");
    assert!(env.advance(Duration::from_secs(59)).await.is_empty());
    assert_eq!(
        env.advance(Duration::from_secs(1)).await,
        vec![(second, Outcome::Completed(json!(2)))]
    );
}
