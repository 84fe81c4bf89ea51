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

#[tokio::test]
async fn the_brief_is_posted_over_http_with_one_idempotency_key_across_retries() {
    use reprise_examples::signup::{TeamChannel, post_brief};
    use reprise_testkit::{MockHttp, TestEnv};

    let channel = MockHttp::start().await;
    channel.fail_first("POST", "/messages", 503, 1).await;
    channel
        .respond_json(
            "POST",
            "/messages",
            201,
            serde_json::json!({ "id": "m-42" }),
        )
        .await;
    let uri = channel.uri();
    let env = TestEnv::builder()
        .configure(move |b| b.resource(TeamChannel::new(uri)))
        .build();

    let brief = env
        .execute(
            &signup_pipeline,
            Signup {
                name: "Ada".into(),
                email: "ada@analytical.org".into(),
            },
        )
        .await
        .completed();
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
    assert_eq!(env.calls(&post_brief).len(), 2);
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
    use reprise_examples::signup::TeamChannel;
    use reprise_testkit::{MockHttp, TestEnv};

    let channel = MockHttp::start().await;
    channel
        .respond_json(
            "POST",
            "/messages",
            400,
            serde_json::json!({ "error": "bad" }),
        )
        .await;
    let uri = channel.uri();
    let env = TestEnv::builder()
        .configure(move |b| b.resource(TeamChannel::new(uri)))
        .build();
    let error = env
        .execute(
            &signup_pipeline,
            Signup {
                name: "Ada".into(),
                email: "ada@analytical.org".into(),
            },
        )
        .await
        .failed();
    assert!(error.message.contains("400"), "{error}");
    assert_eq!(
        channel.received("POST", "/messages").await.len(),
        1,
        "not retried"
    );
}
