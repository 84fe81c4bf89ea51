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
