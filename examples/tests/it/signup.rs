//! `signup-pipeline`.

use reprise_examples::signup::{Brief, Signup, research_signup, signup_pipeline};
use reprise_testkit::memory_engine;

#[tokio::test]
async fn research_is_a_plain_async_call_outside_a_workflow() {
    let brief = research_signup
        .run(Signup {
            name: "Ada".into(),
            email: "ada@analytical.org".into(),
        })
        .await
        .unwrap();
    assert!(
        brief.brief.contains("Ada signed up from analytical"),
        "{}",
        brief.brief
    );
}

#[tokio::test]
async fn the_pipeline_returns_the_posted_brief() {
    let engine = memory_engine(|b| b).unwrap();
    let brief = engine
        .run(
            &signup_pipeline,
            Signup {
                name: "Grace".into(),
                email: "grace@navy.mil".into(),
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        brief,
        Brief {
            brief: "Grace signed up from navy (navy.mil); say hello within a day.".into()
        }
    );
}

fn ada() -> Signup {
    Signup {
        name: "Ada".into(),
        email: "ada@analytical.org".into(),
    }
}

/// A `TestEnv` whose team channel is `channel`.
fn env_posting_to(channel: &reprise_testkit::MockHttp) -> reprise_testkit::TestEnv {
    let uri = channel.uri();
    reprise_testkit::TestEnv::builder()
        .configure(move |b| b.resource(reprise_examples::signup::TeamChannel::new(uri)))
        .build()
}

#[tokio::test]
async fn the_brief_is_posted_over_http_with_one_idempotency_key_across_retries() {
    let channel = reprise_testkit::MockHttp::start().await;
    channel.fail_first("POST", "/messages", 503, 1).await;
    let answer = serde_json::json!({ "id": "m-42" });
    channel.respond_json("POST", "/messages", 201, answer).await;
    let env = env_posting_to(&channel);

    let brief = env.execute(&signup_pipeline, ada()).await.completed();
    let received = channel.received("POST", "/messages").await;
    assert_eq!(received.len(), 2, "one 503, then the retry");
    let keys: Vec<_> = received
        .iter()
        .map(|r| r.headers.get("idempotency-key").cloned())
        .collect();
    assert!(
        keys[0].is_some() && keys[0] == keys[1],
        "the retry carries the same key: {keys:?}"
    );
    assert_eq!(
        channel.received_json("POST", "/messages").await[1],
        serde_json::json!({ "text": brief.brief })
    );
    assert_eq!(env.calls(&reprise_examples::signup::post_brief).len(), 2);
    let log = env.log(&env.last_run()).await;
    let posted = log
        .events()
        .iter()
        .find(|e| {
            e.event.correlation_id.as_deref() == Some("post-brief#0")
                && e.event.kind == reprise::event::EventKind::StepCompleted
        })
        .unwrap();
    assert_eq!(posted.event.payload["output"]["message_id"], "m-42");
}

#[tokio::test]
async fn a_client_error_from_the_channel_is_permanent() {
    let channel = reprise_testkit::MockHttp::start().await;
    let answer = serde_json::json!({ "error": "bad" });
    channel.respond_json("POST", "/messages", 400, answer).await;
    let env = env_posting_to(&channel);
    let error = env.execute(&signup_pipeline, ada()).await.failed();
    assert!(error.message.contains("400"), "{error}");
    assert_eq!(
        channel.received("POST", "/messages").await.len(),
        1,
        "not retried"
    );
}
