//! The graph of a workflow lit by a run (`reprise::graph`, `workflows graph`,
//! `GET /workflows/{slug}/graph`): the shape the macro records (branches, loops, parallel
//! groups, sub-workflows, waits), the status and count lighting gives each node, the SVG's
//! promises (escaped text, no scripts, `data-step`/`data-status`), and the HTTP route.

use std::sync::Arc;

use reprise::event::{Event, EventKind, EventPayload, HookReceipt, NewEvent, RunId};
use reprise::graph::{Graph, GraphError, NodeKind, NodeStatus};
use reprise::http::{HttpOptions, serve};
use reprise::prelude::*;
use reprise::store::MemoryStore;
use reprise::{EngineError, RunOutcome, Trigger};
use serde_json::Value;
use tokio::net::TcpListener;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Order {
    n: u32,
    kind: String,
    items: Vec<u32>,
}

fn order(n: u32, items: Vec<u32>) -> Order {
    Order {
        n,
        kind: "standard".into(),
        items,
    }
}

#[action]
async fn gr_check(input: Order) -> Result<Order, ActionError> {
    Ok(input)
}

#[action]
async fn gr_big(input: u32) -> Result<u32, ActionError> {
    Ok(input)
}

#[action]
async fn gr_small(input: u32) -> Result<u32, ActionError> {
    Ok(input)
}

#[action]
async fn gr_express(input: u32) -> Result<u32, ActionError> {
    Ok(input)
}

#[action]
async fn gr_item(input: u32) -> Result<u32, ActionError> {
    Ok(input)
}

#[action]
async fn gr_left(input: u32) -> Result<u32, ActionError> {
    Ok(input)
}

#[action]
async fn gr_right(input: u32) -> Result<u32, ActionError> {
    Ok(input)
}

#[action]
async fn gr_after(input: u32) -> Result<u32, ActionError> {
    Ok(input)
}

/// Fails every attempt with a transient error; the next attempt is an hour away.
#[action(retries = 2, backoff = "1h")]
async fn gr_flaky(_input: u32) -> Result<u32, ActionError> {
    Err(ActionError::transient("the service is down"))
}

/// Fails for good.
#[action]
async fn gr_declined(_input: u32) -> Result<u32, ActionError> {
    Err(ActionError::new("declined", "the card was declined", false))
}

/// A sub-workflow: one step, and a long sleep for large inputs.
#[workflow(slug = "gr-child")]
async fn gr_child(ctx: Ctx, input: u32) -> Result<u32, WorkflowError> {
    let x = gr_item.run(input).await?;
    if input > 100 {
        ctx.sleep("1h").await?;
    }
    Ok(x)
}

/// Every construct the graph draws.
#[workflow(slug = "gr-shape")]
async fn gr_shape(ctx: Ctx, input: Order) -> Result<u32, WorkflowError> {
    let order = gr_check.run(input).await?;
    let mut total = 0;
    if order.n > 10 {
        total += gr_big.run(order.n).await?;
    } else if order.n < 3 {
        total += gr_small.run(order.n).await?;
    } else {
        total += 1;
    }
    match order.kind.as_str() {
        "express" => total += gr_express.run(order.n).await?,
        _ => {}
    }
    for item in order.items.clone() {
        total += gr_item.run(item).await?;
    }
    let (a, b) = futures::try_join!(gr_left.run(total), gr_right.run(total))?;
    let each = reprise::fan_out(order.items.clone(), 2, |i| gr_item.run(i)).await;
    for one in each {
        total += one?;
    }
    total += gr_child.run(a + b).await?;
    ctx.sleep("1s").await?;
    let extra: u32 = ctx.hook().await?;
    Ok(total + extra)
}

/// A branch, a loop and a sub-workflow, run to its end.
#[workflow(slug = "gr-lit")]
async fn gr_lit(input: Order) -> Result<u32, WorkflowError> {
    let mut total = 0;
    if input.n > 10 {
        total += gr_big.run(input.n).await?;
    } else {
        total += gr_small.run(input.n).await?;
    }
    for item in input.items {
        total += gr_item.run(item).await?;
    }
    total += gr_child.run(total).await?;
    Ok(total)
}

#[workflow(slug = "gr-fail", max_attempts = 1)]
async fn gr_fail(input: Order) -> Result<u32, WorkflowError> {
    let order = gr_check.run(input).await?;
    let n = gr_declined.run(order.n).await?;
    Ok(gr_after.run(n).await?)
}

#[workflow(slug = "gr-retry")]
async fn gr_retry(input: Order) -> Result<u32, WorkflowError> {
    let n = gr_flaky.run(input.n).await?;
    Ok(gr_after.run(n).await?)
}

#[workflow(slug = "gr-nap")]
async fn gr_nap(ctx: Ctx, input: Order) -> Result<u32, WorkflowError> {
    let order = gr_check.run(input).await?;
    ctx.sleep("1h").await?;
    Ok(gr_after.run(order.n).await?)
}

#[workflow(slug = "gr-wait")]
async fn gr_wait(ctx: Ctx, input: Order) -> Result<u32, WorkflowError> {
    let extra: u32 = ctx.hook().await?;
    Ok(gr_after.run(input.n + extra).await?)
}

#[workflow(slug = "gr-parent")]
async fn gr_parent(input: Order) -> Result<u32, WorkflowError> {
    let n = gr_child.run(input.n).await?;
    Ok(gr_after.run(n).await?)
}

fn engine() -> Engine {
    Engine::builder()
        .store(Arc::new(MemoryStore::new()))
        .register(gr_check)
        .register(gr_big)
        .register(gr_small)
        .register(gr_express)
        .register(gr_item)
        .register(gr_left)
        .register(gr_right)
        .register(gr_after)
        .register(gr_flaky)
        .register(gr_declined)
        .register(gr_child)
        .register(gr_shape)
        .register(gr_lit)
        .register(gr_fail)
        .register(gr_retry)
        .register(gr_nap)
        .register(gr_wait)
        .register(gr_parent)
        .build()
        .expect("the engine builds")
}

/// Starts a run of `slug` and executes it once (to its end or its first suspension).
async fn run_once(engine: &Engine, slug: &str, input: &Order) -> (RunId, RunOutcome) {
    let input = serde_json::to_value(input).expect("the input serializes");
    let id = engine
        .start_json(slug, input, Trigger::Code)
        .await
        .expect("the run starts");
    let execution = engine.execute(&id).await.expect("the run executes");
    (id, execution.outcome)
}

async fn lit(engine: &Engine, slug: &str, id: &RunId) -> Graph {
    Graph::of_run(engine, slug, id)
        .await
        .expect("the graph lights")
}

fn status(graph: &Graph, step: &str) -> (Option<NodeStatus>, u32) {
    let node = graph
        .node(step)
        .unwrap_or_else(|| panic!("no node `{step}` in {:#?}", graph.nodes));
    (node.status, node.count)
}

fn end_status(graph: &Graph) -> Option<NodeStatus> {
    graph
        .nodes
        .iter()
        .find(|n| n.kind == NodeKind::End)
        .and_then(|n| n.status)
}

#[test]
fn the_graph_has_the_shape_of_the_body() {
    let engine = engine();
    let graph = Graph::of_workflow(engine.registry(), "gr-shape").expect("gr-shape is registered");
    insta::assert_snapshot!(graph.mermaid());

    // Every site is a node, keyed as the runtime keys its steps.
    for step in [
        "gr-check",
        "gr-big",
        "gr-small",
        "gr-express",
        "gr-item",
        "gr-left",
        "gr-right",
        "gr-item@2",
        "gr-child",
        "sleep",
        "hook",
    ] {
        assert!(graph.node(step).is_some(), "no node {step}");
    }
    let kind = |step: &str| graph.node(step).map(|n| n.kind);
    assert_eq!(kind("gr-child"), Some(NodeKind::Workflow));
    assert_eq!(
        graph
            .node("gr-child")
            .and_then(|n| n.workflow.clone())
            .as_deref(),
        Some("gr-child")
    );
    assert_eq!(kind("sleep"), Some(NodeKind::Sleep));
    assert_eq!(kind("hook"), Some(NodeKind::Hook));
    assert_eq!(kind("gr-check"), Some(NodeKind::Action));

    // The loop body and the parallel groups are groups; the join! has two branches.
    let group_of = |step: &str| {
        let group = graph.node(step).and_then(|n| n.group).expect("in a group");
        &graph.groups[group]
    };
    assert_eq!(group_of("gr-item").label, "for item in order.items.clone()");
    assert_eq!(group_of("gr-left").label, "try_join!");
    assert_eq!(group_of("gr-right").label, "try_join!");
    assert_eq!(group_of("gr-item@2").label, "fan_out");
    assert!(graph.node("gr-check").and_then(|n| n.group).is_none());

    // The if/else-if/else chain is one decision with three arms, the empty `else` too.
    let decisions: Vec<_> = graph
        .nodes
        .iter()
        .filter(|n| n.kind == NodeKind::Decision)
        .collect();
    assert_eq!(decisions.len(), 2, "{decisions:#?}");
    let arms: Vec<_> = graph
        .edges
        .iter()
        .filter(|e| e.from == decisions[0].id)
        .map(|e| e.label.clone().unwrap_or_default())
        .collect();
    assert_eq!(arms, ["order.n > 10", "order.n < 3", "else"]);

    // Unlit: no statuses, no counts.
    assert!(!graph.lit);
    assert!(
        graph
            .nodes
            .iter()
            .all(|n| n.status.is_none() && n.count == 0)
    );
}

#[test]
fn an_unknown_workflow_or_an_action_has_no_graph() {
    let engine = engine();
    assert!(Graph::of_workflow(engine.registry(), "no-such-workflow").is_none());
    assert!(
        Graph::of_workflow(engine.registry(), "gr-check").is_none(),
        "an action has no graph"
    );
}

#[test]
fn the_svg_is_standalone_escaped_and_marks_nodes() {
    let engine = engine();
    let graph = Graph::of_workflow(engine.registry(), "gr-shape").expect("registered");
    let svg = graph.svg();
    assert!(
        svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
        "{svg}"
    );
    assert!(svg.ends_with("</svg>"));
    assert!(!svg.contains("<script"));
    assert!(!svg.contains("href"), "no external references");
    assert_eq!(svg.matches("http").count(), 1, "only the namespace: {svg}");
    // The condition `order.n < 3` is text, escaped.
    assert!(svg.contains("order.n &lt; 3"), "{svg}");
    assert!(!svg.contains("order.n < 3"));
    assert!(svg.contains("&quot;express&quot;"), "{svg}");
    // Call-site nodes carry their key, kind and a title.
    assert!(
        svg.contains("class=\"node\" data-node=\"n1\" data-kind=\"action\" data-step=\"gr-check\"><title>gr-check (action `gr_check`"),
        "{svg}"
    );
    assert!(svg.contains("data-kind=\"workflow\" data-step=\"gr-child\""));
    assert!(svg.contains("class=\"group loop\""));
    assert!(svg.contains("class=\"group parallel\""));
}

#[tokio::test]
async fn a_completed_run_lights_taken_branches_loop_counts_and_the_sub_workflow() {
    let engine = engine();
    let (id, outcome) = run_once(&engine, "gr-lit", &order(3, vec![1, 2, 3])).await;
    assert!(matches!(outcome, RunOutcome::Completed(_)), "{outcome:?}");
    let graph = lit(&engine, "gr-lit", &id).await;
    assert!(graph.lit);
    assert_eq!(graph.run_id.as_deref(), Some(id.as_str()));
    assert_eq!(status(&graph, "gr-small"), (Some(NodeStatus::Completed), 1));
    assert_eq!(status(&graph, "gr-big"), (Some(NodeStatus::NotReached), 0));
    // The loop ran three times; the sub-workflow's own `gr-item` does not count here.
    assert_eq!(status(&graph, "gr-item"), (Some(NodeStatus::Completed), 3));
    assert_eq!(status(&graph, "gr-child"), (Some(NodeStatus::Completed), 1));
    assert_eq!(end_status(&graph), Some(NodeStatus::Completed));

    let mermaid = graph.mermaid();
    assert!(mermaid.contains("classDef completed "), "{mermaid}");
    assert!(mermaid.contains("classDef not_reached "), "{mermaid}");
    assert!(mermaid.contains("[\"gr-item ×3\"]"), "{mermaid}");
    let big = graph.node("gr-big").expect("node").id.clone();
    assert!(
        mermaid.lines().any(|l| l.trim_start().starts_with("class ")
            && l.ends_with(" not_reached")
            && l.contains(&big)),
        "{mermaid}"
    );

    let svg = graph.svg();
    assert!(
        svg.contains("class=\"node completed\" data-node=\"n5\" data-kind=\"action\" data-step=\"gr-item\" data-status=\"completed\" data-count=\"3\""),
        "{svg}"
    );
    assert!(svg.contains("gr-item ×3"));
    assert!(svg.contains("data-step=\"gr-big\" data-status=\"not_reached\""));
}

#[tokio::test]
async fn a_failed_step_is_failed_and_what_follows_not_reached() {
    let engine = engine();
    let (id, outcome) = run_once(&engine, "gr-fail", &order(1, vec![])).await;
    assert!(matches!(outcome, RunOutcome::Failed(_)), "{outcome:?}");
    let graph = lit(&engine, "gr-fail", &id).await;
    assert_eq!(status(&graph, "gr-check"), (Some(NodeStatus::Completed), 1));
    assert_eq!(status(&graph, "gr-declined"), (Some(NodeStatus::Failed), 1));
    assert_eq!(
        status(&graph, "gr-after"),
        (Some(NodeStatus::NotReached), 0)
    );
    assert_eq!(end_status(&graph), Some(NodeStatus::Failed));
}

#[tokio::test]
async fn a_step_waiting_for_its_next_attempt_is_retrying() {
    let engine = engine();
    let input = serde_json::to_value(order(1, vec![])).expect("the input serializes");
    let id = engine
        .start_json("gr-retry", input, Trigger::Code)
        .await
        .expect("the run starts");
    // Step retries wait in the executing process: look while it waits for attempt 2.
    let executing = tokio::spawn({
        let engine = engine.clone();
        let id = id.clone();
        async move { engine.execute(&id).await }
    });
    let mut retrying = false;
    for _ in 0..1000 {
        let events = engine.events(&id).await.expect("events");
        if events
            .iter()
            .any(|e| e.event.kind == EventKind::StepRetrying)
        {
            retrying = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(retrying, "the first attempt of gr-flaky never failed");
    let graph = lit(&engine, "gr-retry", &id).await;
    executing.abort();
    assert_eq!(status(&graph, "gr-flaky"), (Some(NodeStatus::Retrying), 1));
    assert_eq!(
        status(&graph, "gr-after"),
        (Some(NodeStatus::NotReached), 0)
    );
    assert_eq!(end_status(&graph), Some(NodeStatus::NotReached));
}

#[tokio::test]
async fn a_sleeping_run_and_a_waiting_hook_are_waiting() {
    let engine = engine();
    let (id, outcome) = run_once(&engine, "gr-nap", &order(1, vec![])).await;
    assert!(matches!(outcome, RunOutcome::Suspended(_)), "{outcome:?}");
    let graph = lit(&engine, "gr-nap", &id).await;
    assert_eq!(status(&graph, "gr-check"), (Some(NodeStatus::Completed), 1));
    assert_eq!(status(&graph, "sleep"), (Some(NodeStatus::Waiting), 1));
    assert_eq!(
        status(&graph, "gr-after"),
        (Some(NodeStatus::NotReached), 0)
    );

    let (id, outcome) = run_once(&engine, "gr-wait", &order(1, vec![])).await;
    assert!(matches!(outcome, RunOutcome::Suspended(_)), "{outcome:?}");
    let graph = lit(&engine, "gr-wait", &id).await;
    assert_eq!(status(&graph, "hook"), (Some(NodeStatus::Waiting), 1));
    assert_eq!(
        status(&graph, "gr-after"),
        (Some(NodeStatus::NotReached), 0)
    );
}

#[tokio::test]
async fn a_sub_workflow_node_shows_what_its_inner_steps_do() {
    let engine = engine();
    // The child sleeps for an hour on inputs over 100.
    let (id, outcome) = run_once(&engine, "gr-parent", &order(500, vec![])).await;
    assert!(matches!(outcome, RunOutcome::Suspended(_)), "{outcome:?}");
    let graph = lit(&engine, "gr-parent", &id).await;
    assert_eq!(status(&graph, "gr-child"), (Some(NodeStatus::Waiting), 1));
    assert_eq!(
        status(&graph, "gr-after"),
        (Some(NodeStatus::NotReached), 0)
    );

    let (id, outcome) = run_once(&engine, "gr-parent", &order(5, vec![])).await;
    assert!(matches!(outcome, RunOutcome::Completed(_)), "{outcome:?}");
    let graph = lit(&engine, "gr-parent", &id).await;
    assert_eq!(status(&graph, "gr-child"), (Some(NodeStatus::Completed), 1));
    assert_eq!(status(&graph, "gr-after"), (Some(NodeStatus::Completed), 1));
}

#[tokio::test]
async fn lighting_with_an_unknown_run_or_another_workflows_run_is_an_error() {
    let engine = engine();
    let missing = Graph::of_run(&engine, "gr-lit", &RunId::from("no-such-run")).await;
    assert!(
        matches!(missing, Err(GraphError::Engine(EngineError::UnknownRun(_)))),
        "{missing:?}"
    );
    let (id, _) = run_once(&engine, "gr-fail", &order(1, vec![])).await;
    let other = Graph::of_run(&engine, "gr-lit", &id).await;
    let Err(error @ GraphError::OtherWorkflow { .. }) = other else {
        panic!("expected OtherWorkflow, got {other:?}");
    };
    assert!(
        error
            .to_string()
            .contains("is a run of workflow `gr-fail`, not of `gr-lit`"),
        "{error}"
    );
    let unknown = Graph::of_run(&engine, "no-such-workflow", &id).await;
    assert!(
        matches!(
            unknown,
            Err(GraphError::Engine(EngineError::UnknownWorkflow(_)))
        ),
        "{unknown:?}"
    );
}

#[tokio::test]
async fn the_http_route_serves_svg_mermaid_and_json() {
    let engine = engine();
    let (id, _) = run_once(&engine, "gr-lit", &order(20, vec![7])).await;
    let (other, _) = run_once(&engine, "gr-fail", &order(1, vec![])).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let base = format!("http://{}", listener.local_addr().expect("an address"));
    let options = HttpOptions {
        api_token: None,
        ..HttpOptions::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(engine.clone(), listener, options, async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let get = |path: String| {
        let client = client.clone();
        let url = format!("{base}{path}");
        async move {
            let response = client.get(url).send().await.expect("the server answers");
            let status = response.status().as_u16();
            let kind = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let body = response.text().await.expect("a body");
            (status, kind, body)
        }
    };

    let (status, kind, body) = get("/workflows/gr-lit/graph".into()).await;
    assert_eq!((status, kind.as_str()), (200, "image/svg+xml"), "{body}");
    assert!(
        body.starts_with("<svg") && body.contains("data-step=\"gr-big\""),
        "{body}"
    );
    assert!(!body.contains("data-status"), "unlit: {body}");

    let (status, kind, body) = get(format!("/workflows/gr-lit/graph?run={id}")).await;
    assert_eq!((status, kind.as_str()), (200, "image/svg+xml"), "{body}");
    assert!(
        body.contains("data-step=\"gr-big\" data-status=\"completed\""),
        "{body}"
    );
    assert!(
        body.contains("data-step=\"gr-small\" data-status=\"not_reached\""),
        "{body}"
    );

    let (status, kind, body) =
        get(format!("/workflows/gr-lit/graph?run={id}&format=mermaid")).await;
    assert_eq!(status, 200);
    assert!(kind.starts_with("text/plain"), "{kind}");
    assert!(
        body.starts_with("flowchart TD\n") && body.contains("classDef failed"),
        "{body}"
    );

    let (status, kind, body) = get(format!("/workflows/gr-lit/graph?run={id}&format=json")).await;
    assert_eq!((status, kind.as_str()), (200, "application/json"), "{body}");
    let json: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["lit"], true);
    assert_eq!(json["run_id"], id.as_str());
    let item = json["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["step"] == "gr-item")
        .expect("the gr-item node");
    assert_eq!(item["status"], "completed");
    assert_eq!(item["count"], 1);
    assert_eq!(item["kind"], "action");

    let (status, _, body) = get("/workflows/no-such-workflow/graph".into()).await;
    assert_eq!(status, 404, "{body}");
    let json: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["code"], "unknown_workflow");

    let (status, _, body) = get("/workflows/gr-lit/graph?run=no-such-run".into()).await;
    assert_eq!(status, 404, "{body}");
    let json: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["code"], "unknown_run");

    let (status, _, body) = get(format!("/workflows/gr-lit/graph?run={other}")).await;
    assert_eq!(status, 422, "{body}");
    let json: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["code"], "other_workflow");
    assert!(
        json["error"]
            .as_str()
            .unwrap_or_default()
            .contains("gr-fail"),
        "{json}"
    );

    let (status, _, body) = get("/workflows/gr-lit/graph?format=png".into()).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("`svg` (the default), `mermaid` or `json`"),
        "{body}"
    );

    let (status, _, body) = get("/openapi.json".into()).await;
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&body).expect("JSON");
    assert!(
        doc["paths"]["/workflows/{slug}/graph"]["get"].is_object(),
        "{doc}"
    );

    let _ = stop.send(());
    server
        .await
        .expect("the server task")
        .expect("the server stops");
}

fn event(seq: u64, id: Option<&str>, payload: EventPayload) -> Event {
    Event {
        run_id: RunId::from("synthetic-run"),
        seq,
        event: NewEvent::new(id.map(str::to_owned), 1, chrono::Utc::now(), payload),
    }
}

fn started(callee: &str) -> EventPayload {
    EventPayload::StepStarted {
        callee: callee.to_owned(),
        kind: "action".to_owned(),
        input: Value::Null,
        digest: String::new(),
    }
}

fn completed() -> EventPayload {
    EventPayload::StepCompleted {
        output: Value::Null,
        callee: None,
        usage: None,
        usage_total: None,
        seeded: false,
    }
}

#[test]
fn the_most_pressing_outcome_wins_and_a_timed_out_hook_or_a_canceled_run_is_failed() {
    let engine = engine();
    let mut graph = Graph::of_workflow(engine.registry(), "gr-shape").expect("registered");
    let failed = EventPayload::StepFailed {
        error: ActionError::new("declined", "no", false),
    };
    let events = [
        event(0, None, EventPayload::RunStarted { fingerprint: None }),
        event(1, Some("gr-check#0"), started("gr-check")),
        event(2, Some("gr-check#0"), completed()),
        // Recorded values (`ctx.now()`, a hook's resume URL) are not steps.
        event(3, Some("$now#0"), completed()),
        event(3, Some("hook#0$resume-url"), completed()),
        event(4, Some("gr-item#0"), started("gr-item")),
        event(5, Some("gr-item#0"), completed()),
        event(6, Some("gr-item#1"), started("gr-item")),
        event(7, Some("gr-item#1"), failed),
        event(
            8,
            Some("hook#0"),
            EventPayload::HookCreated {
                token_hash: String::new(),
                schema: Value::Null,
                timeout_at: None,
            },
        ),
        event(
            9,
            Some("hook#0"),
            EventPayload::HookReceived(HookReceipt::TimedOut { timeout_at: None }),
        ),
        event(10, None, EventPayload::RunCanceled { error: None }),
    ];
    graph.light(&events);
    assert_eq!(graph.run_id.as_deref(), Some("synthetic-run"));
    let start = graph.nodes.iter().find(|n| n.kind == NodeKind::Start);
    assert_eq!(start.and_then(|n| n.status), Some(NodeStatus::Completed));
    assert_eq!(status(&graph, "gr-check"), (Some(NodeStatus::Completed), 1));
    assert_eq!(status(&graph, "gr-item"), (Some(NodeStatus::Failed), 2));
    assert_eq!(status(&graph, "hook"), (Some(NodeStatus::Failed), 1));
    assert_eq!(status(&graph, "gr-big"), (Some(NodeStatus::NotReached), 0));
    assert_eq!(end_status(&graph), Some(NodeStatus::Failed));
    // Structural nodes have no status.
    assert!(
        graph
            .nodes
            .iter()
            .filter(|n| matches!(
                n.kind,
                NodeKind::Decision | NodeKind::Merge | NodeKind::Fork | NodeKind::Join
            ))
            .all(|n| n.status.is_none())
    );
}
