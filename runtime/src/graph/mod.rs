//! The graph of a workflow, drawn from its compile-time step-site manifest, optionally lit
//! by one run (DESIGN "Observability"): each node coloured by the status its steps reached
//! in that run, with counts for sites that ran more than once.
//!
//! One model, three renderings: [`Graph::mermaid`] (the CLI's `workflows graph`),
//! [`Graph::svg`] (the web UI and `GET /workflows/{slug}/graph`), and the [`Graph`] value
//! itself (serializable, for tools).
//!
//! STUB (issue 13 kick-off): the API below is the contract the CLI, the HTTP API and the
//! web UI code against; the graph helper replaces the bodies.

mod mermaid_legacy;

use serde::Serialize;

use crate::event::Event;
use crate::registry::Registry;

/// How far a node's steps got in the run that lights the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum NodeStatus {
    /// The run never reached this site.
    NotReached,
    /// A step of this site is running.
    Running,
    /// A step of this site failed an attempt and will be retried.
    Retrying,
    /// A sleep or hook of this site is waiting.
    Waiting,
    /// Every step of this site completed.
    Completed,
    /// A step of this site failed for good.
    Failed,
}

/// A workflow's graph (see the [module docs](self)).
#[derive(Clone, Debug, Serialize)]
pub struct Graph {
    /// The workflow's slug.
    pub slug: String,
    mermaid: String,
}

impl Graph {
    /// The graph of the registered workflow `slug`, unlit; `None` when no such workflow is
    /// registered.
    pub fn of_workflow(registry: &Registry, slug: &str) -> Option<Graph> {
        let entry = registry.workflow(slug)?;
        Some(Graph {
            slug: slug.to_owned(),
            mermaid: mermaid_legacy::mermaid(registry, entry),
        })
    }

    /// Lights the graph with one run's event log (`events` in `seq` order, as
    /// `Engine::events` returns them): every node gets the status its steps reached.
    pub fn light(&mut self, events: &[Event]) {
        let _ = events;
    }

    /// The graph as a Mermaid `flowchart TD` (with `classDef`s for the node statuses when
    /// lit).
    pub fn mermaid(&self) -> String {
        self.mermaid.clone()
    }

    /// The graph as a standalone SVG document (no scripts, no external references), laid
    /// out top to bottom, nodes filled by status when lit.
    pub fn svg(&self) -> String {
        let text = self
            .mermaid
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        let mut out =
            String::from("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"600\" height=\"600\">");
        for (i, line) in text.lines().enumerate() {
            out.push_str(&format!(
                "<text x=\"4\" y=\"{}\">{line}</text>",
                16 + 16 * i
            ));
        }
        out.push_str("</svg>");
        out
    }
}
