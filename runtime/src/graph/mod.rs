//! The graph of a workflow, drawn from its compile-time manifest with its real shape, and
//! optionally lit by one run (DESIGN "Observability").
//!
//! `#[workflow]` records, next to the body's call sites ([`crate::Site`]), the control
//! flow around them ([`crate::Shape`]): `if`/`else if`/`else` and `match` become a
//! decision with one arm per branch, `for`/`while`/`loop` a loop box, `join!`/`try_join!`
//! a parallel box with one branch per argument and `join_all`/`try_join_all`/`fan_out` a
//! parallel box whose branch runs once per item. Call sites are nodes by kind (action,
//! sub-workflow, sleep, hook, LLM, agent), labelled with their site keys. Constructs that
//! call no step are left out; steps called from helper fns are not steps of the body (the
//! macro only rewrites the body) and do not appear.
//!
//! A sub-workflow is one subroutine node ([`NodeKind::Workflow`], with its slug in
//! [`Node::workflow`]); its inner steps light that node (a sub-workflow whose inner sleep
//! is waiting shows `waiting`). Its own graph is the sub-workflow's.
//!
//! [`Graph::light`] maps each step event's correlation id (`<site-key>#<n>`, nested ids
//! `parent#0/child#1`) back to its node: every call-site node gets a [`NodeStatus`] and
//! the number of times it ran ([`Node::count`], e.g. 3 for a step in a loop that ran three
//! times).
//!
//! One model, three renderings: [`Graph::mermaid`] (the CLI's `workflows graph`),
//! [`Graph::svg`] (the web UI and `GET /workflows/{slug}/graph`), and the [`Graph`] value
//! itself, serializable as JSON (`--format json`, `?format=json`).

mod light;
mod mermaid;
mod model;
mod shape;
mod svg;
#[cfg(test)]
mod tests;

use serde::Serialize;

use crate::engine::Engine;
use crate::error::EngineError;
use crate::event::{Event, RunId};
use crate::registry::Registry;

pub use model::{Edge, Group, GroupKind, Node, NodeKind, NodeStatus};

/// A workflow's graph (see the [module docs](self)).
#[derive(Clone, Debug, Serialize)]
pub struct Graph {
    /// The workflow's slug.
    pub slug: String,
    /// Whether [`Graph::light`] lit it (every call-site node then has a status).
    pub lit: bool,
    /// The run that lit it, if any.
    pub run_id: Option<String>,
    /// The nodes: the start, the call sites, branch and parallel points, the end.
    pub nodes: Vec<Node>,
    /// The edges, in the direction control flows.
    pub edges: Vec<Edge>,
    /// The loop and parallel boxes.
    pub groups: Vec<Group>,
    #[serde(skip)]
    tree: model::Block,
}

impl Graph {
    /// The graph of the registered workflow `slug`, unlit; `None` when no such workflow is
    /// registered.
    pub fn of_workflow(registry: &Registry, slug: &str) -> Option<Graph> {
        let entry = registry.workflow(slug)?;
        let (nodes, groups, tree) = shape::build(registry, entry);
        Some(Graph::assemble(slug, nodes, groups, tree))
    }

    /// A graph of `nodes`, `groups` and `tree`, with the edges the tree implies.
    fn assemble(slug: &str, nodes: Vec<Node>, groups: Vec<Group>, tree: model::Block) -> Graph {
        let mut edges = Vec::new();
        tree.connections(&mut |c| {
            edges.push(Edge {
                from: nodes[c.from].id.clone(),
                to: nodes[c.to].id.clone(),
                label: c.label.map(str::to_owned),
            });
        });
        Graph {
            slug: slug.to_owned(),
            lit: false,
            run_id: None,
            nodes,
            edges,
            groups,
            tree,
        }
    }

    /// Lights the graph with one run's event log (`events` in `seq` order, as
    /// `Engine::events` returns them): every call-site node gets the status its steps
    /// reached and the number of times it ran; the start node is `completed` once the run
    /// started, the end node `completed` or `failed` (also for a canceled run) once the
    /// run ended. Lighting again replaces the earlier lighting. The caller checks that the
    /// events are of a run of this workflow.
    pub fn light(&mut self, events: &[Event]) {
        light::light(&mut self.nodes, events);
        self.lit = true;
        self.run_id = events.first().map(|e| e.run_id.to_string());
    }

    /// The graph of workflow `slug` lit by run `run` (its events read from `engine`'s
    /// store): what `workflows graph <slug> --run <id>` and `GET
    /// /workflows/{slug}/graph?run=<id>` draw.
    ///
    /// # Errors
    /// [`GraphError::Engine`] with [`EngineError::UnknownWorkflow`] (no such workflow is
    /// registered), [`EngineError::UnknownRun`] (no such run) or a store error;
    /// [`GraphError::OtherWorkflow`] when the run is of another workflow.
    pub async fn of_run(engine: &Engine, slug: &str, run: &RunId) -> Result<Graph, GraphError> {
        let mut graph = Graph::of_workflow(engine.registry(), slug)
            .ok_or_else(|| EngineError::UnknownWorkflow(slug.to_owned()))?;
        let record = engine.get_run(run).await?;
        if record.workflow != slug {
            return Err(GraphError::OtherWorkflow {
                run: run.to_string(),
                workflow: record.workflow,
                slug: slug.to_owned(),
            });
        }
        let events = engine.events(run).await?;
        graph.light(&events);
        graph.run_id = Some(run.to_string());
        Ok(graph)
    }

    /// The call-site node of site key `step` (`hash-file`, `notify@2`), if any.
    pub fn node(&self, step: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.step.as_deref() == Some(step))
    }

    /// The graph as a Mermaid `flowchart TD` (with `classDef`s for the node statuses and
    /// counts in the labels when lit).
    pub fn mermaid(&self) -> String {
        mermaid::render(self)
    }

    /// The graph as a standalone SVG document (no scripts, no external references), laid
    /// out top to bottom, nodes filled by status when lit. Each call-site node is a
    /// `<g class="node <status>">` with `data-step` (its site key), `data-status`,
    /// `data-kind`, `data-count` (when lit) and a `<title>`.
    pub fn svg(&self) -> String {
        svg::render(self)
    }
}

/// Why [`Graph::of_run`] could not draw a lit graph.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// An unknown workflow or run, or a store failure.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The run is a run of another workflow than the graph's.
    #[error(
        "run `{run}` is a run of workflow `{workflow}`, not of `{slug}`: draw it on its own workflow's graph (`workflows graph {workflow} --run {run}`, `GET /workflows/{workflow}/graph?run={run}`)"
    )]
    OtherWorkflow {
        /// The run's id.
        run: String,
        /// The run's workflow.
        workflow: String,
        /// The graph's workflow.
        slug: String,
    },
}

impl From<GraphError> for EngineError {
    /// An [`EngineError`] for callers that report engine errors (the CLI: exit 2 for an
    /// unknown workflow or run and for a run of another workflow).
    fn from(error: GraphError) -> Self {
        match error {
            GraphError::Engine(error) => error,
            other @ GraphError::OtherWorkflow { .. } => {
                EngineError::InvalidRequest(other.to_string())
            }
        }
    }
}
