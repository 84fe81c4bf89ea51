//! One run-log snapshot per example workflow (`snapshots/it__snapshots__*.snap`): the whole
//! event log with times, run ids, tokens, jittered delays and temporary paths replaced by
//! stable placeholders. Review changes with `cargo insta review`, or rewrite them with
//! `INSTA_UPDATE=always cargo test -p reprise-examples --test it snapshots`.

use reprise_examples::approval::{ApprovalRequest, Decision, approval};
use reprise_examples::book_trip::{TripRequest, book_trip};
use reprise_examples::file_digest::{DigestRequest, file_digest};
use reprise_examples::signup::{Signup, signup_pipeline};
use reprise_testkit::{Pending, TestEnv, assert_log_snapshot, assert_run_snapshot};

use crate::file_digest::fixture_tree;

#[tokio::test]
async fn signup_pipeline_log() {
    let env = TestEnv::new();
    env.execute(
        &signup_pipeline,
        Signup {
            name: "Ada Lovelace".into(),
            email: "ada@analytical.org".into(),
        },
    )
    .await
    .completed();
    assert_run_snapshot!(env, env.last_run());
}

#[tokio::test]
async fn file_digest_log() {
    let tree = fixture_tree(3);
    let out = tempfile::tempdir().unwrap();
    let dir = tree.path().to_string_lossy().into_owned();
    let out_dir = out.path().to_string_lossy().into_owned();
    let env = TestEnv::new();
    let summary = env
        .execute(
            &file_digest,
            DigestRequest {
                dir: dir.clone(),
                delay_ms: 0,
                // One file at a time: with more, hashes finish (and are logged) in any order.
                concurrency: 1,
                max_files: 500,
                out: Some(format!("{out_dir}/report.json")),
            },
        )
        .await
        .completed();
    assert_eq!(summary.files, 3);
    // The temporary paths differ per run, and so does the tree digest over them.
    let log = env
        .log(&env.last_run())
        .await
        .redact_text(out_dir, "[out]")
        .redact_text(dir, "[dir]")
        .redact_text(summary.tree_sha256, "[tree-sha256]");
    assert_log_snapshot!(log);
}

fn trip(hotel: &str) -> TripRequest {
    TripRequest {
        traveler: "Ada".into(),
        destination: "Lisbon".into(),
        hotel: hotel.into(),
    }
}

#[tokio::test]
async fn book_trip_retries_the_flight_and_books() {
    let env = TestEnv::new();
    env.execute(&book_trip, trip("Casa Azul")).await.completed();
    assert_run_snapshot!("book_trip_booked", env, env.last_run());
}

#[tokio::test]
async fn book_trip_cancels_the_flight_when_the_hotel_is_full() {
    let env = TestEnv::new();
    env.execute(&book_trip, trip("Overbooked Inn"))
        .await
        .failed();
    assert_run_snapshot!("book_trip_compensated", env, env.last_run());
}

#[tokio::test]
async fn approval_log() {
    let env = TestEnv::new();
    let waits = env
        .execute(
            &approval,
            ApprovalRequest {
                title: "Ship v2".into(),
                timeout: None,
            },
        )
        .await
        .suspended();
    let [Pending::Hook { token, .. }] = &waits[..] else {
        panic!("{waits:?}")
    };
    env.resume_hook(
        token,
        Decision {
            approved: true,
            by: "Grace".into(),
        },
    )
    .await
    .unwrap()
    .completed();
    assert_run_snapshot!(env, env.last_run());
}

#[tokio::test]
async fn fulfill_order_log() {
    use reprise_examples::versioning::{Order, fulfill_order};
    let env = TestEnv::new();
    let order = Order {
        id: 7,
        item: "tea".into(),
        cents: 900,
    };
    let waits = env.execute(&fulfill_order, order).await.suspended();
    assert!(matches!(&waits[..], [Pending::Sleep { .. }]), "{waits:?}");
    let (_, outcome) = env
        .advance(std::time::Duration::from_secs(3600))
        .await
        .remove(0);
    let shipment = outcome.completed();
    assert_eq!(shipment["order"], 7, "{shipment}");
    assert_run_snapshot!(env, env.last_run());
}
