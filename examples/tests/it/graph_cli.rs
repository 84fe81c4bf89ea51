//! `workflows graph <slug> [--run <id>] [--format mermaid|svg|json]` as a user runs it: the
//! example's real shape, lit by a finished run, and the errors for a run that does not
//! fit (exit 2).

use std::process::{Command, Output};

use reprise_testkit::TempDb;
use serde_json::Value;

use crate::file_digest::fixture_tree;

fn app(db: &TempDb) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_reprise-examples"));
    command
        .env("REPRISE_DATABASE_URL", db.url())
        .env("REPRISE_EXAMPLES_EFFECT_LOG", db.dir().join("effects.log"))
        .current_dir(db.dir());
    command
}

fn run(command: &mut Command) -> Output {
    command.output().expect("the example app runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs file-digest over 4 files and returns the run's id.
fn digest_run(db: &TempDb) -> String {
    let tree = fixture_tree(4);
    let input = serde_json::json!({ "dir": tree.path() }).to_string();
    let out = run(app(db).args([
        "workflows",
        "run",
        "file-digest",
        "--input",
        &input,
        "--json",
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let line: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    line["run_id"].as_str().expect("a run id").to_owned()
}

#[test]
fn workflows_graph_lights_a_run_in_every_format() {
    let db = TempDb::new().expect("a temp db");
    let id = digest_run(&db);

    // Unlit: the real shape (the fan_out group), no classes.
    let out = run(app(&db).args(["workflows", "graph", "file-digest"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mermaid = text(&out.stdout);
    assert!(mermaid.starts_with("flowchart TD\n"), "{mermaid}");
    assert!(mermaid.contains("subgraph g0[\"fan_out\"]"), "{mermaid}");
    assert!(!mermaid.contains("classDef"), "{mermaid}");

    // Lit: classes, and the fan-out site ran once per file.
    let out = run(app(&db).args(["workflows", "graph", "file-digest", "--run", &id]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mermaid = text(&out.stdout);
    assert!(mermaid.contains("classDef completed"), "{mermaid}");
    assert!(mermaid.contains("\"hash-file ×4\""), "{mermaid}");

    let out = run(app(&db).args([
        "workflows",
        "graph",
        "file-digest",
        "--run",
        &id,
        "--format",
        "svg",
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let svg = text(&out.stdout);
    assert!(svg.starts_with("<svg"), "{svg}");
    assert!(
        svg.contains("data-step=\"hash-file\" data-status=\"completed\" data-count=\"4\""),
        "{svg}"
    );

    let out = run(app(&db).args([
        "workflows",
        "graph",
        "file-digest",
        "--run",
        &id,
        "--format",
        "json",
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let graph: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(graph["run_id"], id.as_str());
    let statuses: Vec<&str> = graph["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter(|n| n["step"].is_string())
        .map(|n| n["status"].as_str().unwrap_or_default())
        .collect();
    assert!(
        !statuses.is_empty() && statuses.iter().all(|s| *s == "completed"),
        "{graph}"
    );
}

#[test]
fn workflows_graph_rejects_an_unknown_run_or_one_of_another_workflow() {
    let db = TempDb::new().expect("a temp db");
    let id = digest_run(&db);

    let out = run(app(&db).args(["workflows", "graph", "file-digest", "--run", "no-such-run"]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("no-such-run"),
        "{}",
        text(&out.stderr)
    );

    let out = run(app(&db).args(["workflows", "graph", "book-trip", "--run", &id]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("is a run of workflow `file-digest`, not of `book-trip`"),
        "{stderr}"
    );
}

/// The support example lit while it waits for a person's approval: its LLM step and its
/// agent (matched by the agent's runtime slug) completed, the hook in the loop waiting,
/// what follows not reached.
#[tokio::test]
async fn the_support_graph_lights_its_agent_and_its_waiting_hook() {
    use reprise::graph::{Graph, NodeKind, NodeStatus};
    use reprise_examples::support::{Ticket, support_triage};
    use reprise_examples::support_model::ScriptedSupportModel;
    use reprise_testkit::TestEnv;

    let env = TestEnv::builder().llm(ScriptedSupportModel).build();
    let ticket = Ticket {
        model: Some("openai/gpt-4o-mini".to_owned()),
        ..Ticket::new(
            "TCK-2",
            "grace@example.com",
            "The espresso machine of order A-1002 leaks. I want my money back.",
        )
    };
    let waits = env.execute(&support_triage, ticket).await.suspended();
    assert_eq!(waits.len(), 1, "{waits:?}");
    let graph = Graph::of_run(env.engine(), "support-triage", &env.last_run())
        .await
        .expect("the graph lights");
    let status = |step: &str| {
        let node = graph.node(step).unwrap_or_else(|| panic!("no node {step}"));
        (node.status, node.count)
    };
    assert_eq!(status("choose-model"), (Some(NodeStatus::Completed), 1));
    assert_eq!(status("llm"), (Some(NodeStatus::Completed), 1));
    let agent = graph
        .nodes
        .iter()
        .find(|n| n.kind == NodeKind::Agent)
        .expect("the agent's node");
    assert_eq!(
        (agent.status, agent.count),
        (Some(NodeStatus::Completed), 1)
    );
    assert_eq!(
        status("request-refund-approval"),
        (Some(NodeStatus::Completed), 1)
    );
    assert_eq!(status("hook"), (Some(NodeStatus::Waiting), 1));
    assert_eq!(
        status("issue-approved-refund"),
        (Some(NodeStatus::NotReached), 0)
    );
    assert_eq!(
        status("reply-to-customer"),
        (Some(NodeStatus::NotReached), 0)
    );
}
