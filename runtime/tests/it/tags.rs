//! Tags (`ctx.tag`) from a workflow body: recorded once (a replay answers them from the
//! log), attached to the top-level run also from a sub-workflow, searchable through
//! `Engine::list_runs` on the store the run lives in, across a crash and resume.

use std::sync::Arc;

use reprise::RunOutcome;
use reprise::event::{EventKind, RunFilter, RunStatus};
use reprise::prelude::*;
use reprise::store::SharedStore;
use reprise::tags::{TagFilter, TagOp, TagValue};
use serde_json::json;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Order {
    customer: String,
    amount: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Approval {
    approved: bool,
}

#[action]
async fn price_order(order: Order) -> Result<Order, ActionError> {
    Ok(order)
}

/// A sub-workflow: its tags attach to the run that executes it.
#[workflow(slug = "tag-billing")]
async fn tag_billing(ctx: Ctx, order: Order) -> Result<Order, WorkflowError> {
    ctx.tag("amount", order.amount).await?;
    ctx.tag("stage", "billing").await?;
    Ok(price_order.run(order).await?)
}

#[workflow(slug = "tag-order")]
async fn tag_order(ctx: Ctx, order: Order) -> Result<bool, WorkflowError> {
    ctx.tag("customer", order.customer.as_str()).await?;
    let order = tag_billing.run(order).await?;
    let approval: Approval = ctx.hook().await?;
    ctx.tag("stage", "approved").await?;
    ctx.tag("approved", approval.approved).await?;
    Ok(approval.approved && order.amount > 0)
}

#[workflow(slug = "tag-bad-key")]
async fn tag_bad_key(ctx: Ctx, _order: Order) -> Result<(), WorkflowError> {
    ctx.tag("has space", 1).await?;
    Ok(())
}

const SECRET: &[u8] = b"a hook secret of at least 32 bytes, for tests";

fn engine(store: SharedStore) -> Engine {
    Engine::builder()
        .store(store)
        .hook_secret(SECRET)
        .register(tag_order)
        .register(tag_billing)
        .register(tag_bad_key)
        .register(price_order)
        .build()
        .unwrap()
}

fn sqlite(path: &std::path::Path) -> SharedStore {
    Arc::new(reprise::store::SqliteStore::open(path).unwrap())
}

async fn tagged_runs(engine: &Engine, filter: TagFilter) -> Vec<String> {
    engine
        .list_runs(&RunFilter {
            tags: vec![filter],
            ..RunFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id.0)
        .collect()
}

#[tokio::test]
async fn tags_from_a_sub_workflow_attach_to_the_run_and_survive_a_crash_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.db");
    let (id, other) = {
        let engine = engine(sqlite(&path));
        let order = Order {
            customer: "acme".into(),
            amount: 250,
        };
        let id = engine.start(&tag_order, order).await.unwrap();
        let other = engine
            .start(
                &tag_order,
                Order {
                    customer: "globex".into(),
                    amount: 5,
                },
            )
            .await
            .unwrap();
        for run in [&id, &other] {
            let execution = engine.drive(run).await.unwrap();
            assert!(matches!(execution.outcome, RunOutcome::Suspended(_)));
        }
        // Searchable while the run waits: the tags were written when made.
        assert_eq!(
            tagged_runs(&engine, TagFilter::eq("customer", "acme")).await,
            [id.0.as_str()]
        );
        assert_eq!(
            tagged_runs(&engine, TagFilter::eq("stage", "billing")).await,
            [other.0.clone(), id.0.clone()]
        );
        (id, other)
        // The engine and its store are dropped here: the process "crashes" mid-run.
    };

    // A new process on the same database resumes the run: the body replays from the
    // start, and the tags it made before the crash are answered from the log.
    let engine = engine(sqlite(&path));
    let events = engine.events(&id).await.unwrap();
    let hook = events
        .iter()
        .find(|e| e.event.kind == EventKind::HookCreated)
        .and_then(|e| e.event.correlation_id.clone())
        .unwrap();
    engine
        .resume_hook(&engine.hook_token(&id, &hook), json!({ "approved": true }))
        .await
        .unwrap();
    let RunOutcome::Completed(out) = engine.drive(&id).await.unwrap().outcome else {
        panic!("the run completes");
    };
    assert_eq!(out, json!(true));

    let events = engine.events(&id).await.unwrap();
    let tags: Vec<_> = events
        .iter()
        .filter(|e| e.event.kind == EventKind::RunTagged)
        .map(|e| e.event.correlation_id.clone().unwrap())
        .collect();
    assert_eq!(
        tags,
        [
            "$tag:customer#0",
            "tag-billing#0/$tag:amount#0",
            "tag-billing#0/$tag:stage#0",
            "$tag:stage#0",
            "$tag:approved#0",
        ],
        "each tag is recorded once; the replay wrote none again"
    );
    let recorded = reprise::tags::tags_of(&events);
    assert_eq!(recorded["customer"], TagValue::from("acme"));
    assert_eq!(recorded["amount"], TagValue::from(250));
    assert_eq!(
        recorded["stage"],
        TagValue::from("approved"),
        "re-tag replaces"
    );
    assert_eq!(recorded["approved"], TagValue::from(true));

    // The index agrees with the log.
    assert_eq!(
        tagged_runs(&engine, TagFilter::eq("stage", "approved")).await,
        [id.0.as_str()]
    );
    assert_eq!(
        tagged_runs(&engine, TagFilter::eq("stage", "billing")).await,
        [other.0.as_str()]
    );
    assert_eq!(
        tagged_runs(&engine, TagFilter::new("amount", TagOp::Ge, 100)).await,
        [id.0.as_str()]
    );
    assert_eq!(
        engine.get_run(&other).await.unwrap().status,
        RunStatus::Waiting
    );
}

#[tokio::test]
async fn a_bad_tag_key_fails_the_run_with_a_clear_error() {
    let engine = engine(Arc::new(reprise::store::MemoryStore::new()));
    let id = engine
        .start(
            &tag_bad_key,
            Order {
                customer: "acme".into(),
                amount: 1,
            },
        )
        .await
        .unwrap();
    let RunOutcome::Failed(error) = engine.drive(&id).await.unwrap().outcome else {
        panic!("the run fails");
    };
    assert!(error.message.contains("tag key `has space`"), "{error:?}");
    assert!(!error.retryable);
    let events = engine.events(&id).await.unwrap();
    assert!(!events.iter().any(|e| e.event.kind == EventKind::RunTagged));
}

#[workflow(slug = "tag-simple")]
async fn tag_simple(ctx: Ctx, order: Order) -> Result<i64, WorkflowError> {
    ctx.tag("customer", order.customer.as_str()).await?;
    ctx.tag("amount", order.amount).await?;
    Ok(order.amount)
}

/// `GET /runs?tag=…` and `GET /runs/{id}` over a real socket, on SQLite.
#[tokio::test]
async fn get_runs_filters_by_tags_and_pages_with_the_next_cursor_header() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::builder()
        .store(sqlite(&dir.path().join("runs.db")))
        .register(tag_simple)
        .build()
        .unwrap();
    let mut ids = Vec::new();
    for (customer, amount) in [("acme", 50), ("globex", 500), ("acme", 150), ("acme", 300)] {
        let id = engine
            .start(
                &tag_simple,
                Order {
                    customer: customer.into(),
                    amount,
                },
            )
            .await
            .unwrap();
        assert!(matches!(
            engine.drive(&id).await.unwrap().outcome,
            RunOutcome::Completed(_)
        ));
        ids.push(id.0);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = reprise::http::HttpOptions {
        api_token: None,
        ..Default::default()
    };
    let server = tokio::spawn(reprise::http::serve(engine, listener, options, async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let get = async |query: &[(&str, &str)]| {
        let url = reqwest::Url::parse_with_params(&format!("{base}/runs"), query).unwrap();
        let response = client.get(url).send().await.unwrap();
        let status = response.status().as_u16();
        let cursor = response
            .headers()
            .get("x-reprise-next-cursor")
            .map(|v| v.to_str().unwrap().to_owned());
        let body: serde_json::Value = response.json().await.unwrap();
        (status, body, cursor)
    };
    let listed = |body: &serde_json::Value| -> Vec<String> {
        body.as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };

    let (status, body, cursor) = get(&[("tag", "customer=acme")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        listed(&body),
        [ids[3].as_str(), ids[2].as_str(), ids[0].as_str()]
    );
    assert_eq!(cursor, None, "the last page has no next cursor");
    let (_, body, _) = get(&[("tag", "customer=acme"), ("tag", "amount>=100")]).await;
    assert_eq!(listed(&body), [ids[3].as_str(), ids[2].as_str()]);
    let (_, body, _) = get(&[("tag", "amount<100"), ("workflow", "tag-simple")]).await;
    assert_eq!(listed(&body), [ids[0].as_str()]);

    // Pages of one: the header carries the cursor, the body stays an array.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("limit", "1"), ("tag", "customer=acme")];
        if let Some(c) = &cursor {
            query.push(("cursor", c.as_str()));
        }
        let (status, body, next) = get(&query).await;
        assert_eq!(status, 200, "{body}");
        seen.extend(listed(&body));
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, [ids[3].as_str(), ids[2].as_str(), ids[0].as_str()]);

    // Time bounds.
    let (status, body, _) = get(&[("created_after", "2999-01-01T00:00:00Z")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(listed(&body), Vec::<String>::new());

    // Bad input: 400 with the house error body, naming the problem.
    for (query, mentions) in [
        (("tag", "customer"), "no operator"),
        (("tag", "customer>acme"), "numbers and times only"),
        (("tag", "bad key=1"), "tag key `bad key`"),
        (("cursor", "garbage"), "cursor `garbage`"),
        (("created_after", "yesterday"), "created_after=yesterday"),
    ] {
        let (status, body, _) = get(&[query]).await;
        assert_eq!(status, 400, "{query:?}: {body}");
        assert_eq!(body["code"], "bad_request", "{body}");
        assert!(
            body["error"].as_str().unwrap().contains(mentions),
            "`{mentions}` not in {body}"
        );
    }

    // A run shows its tags.
    let run: serde_json::Value = client
        .get(format!("{base}/runs/{}", ids[1]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(run["tags"], json!({ "customer": "globex", "amount": 500 }));

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
