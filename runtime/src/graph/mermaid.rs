//! The graph as a Mermaid `flowchart TD`: call sites by kind (actions as boxes,
//! sub-workflows as subroutines, sleeps as stadiums, hooks as hexagons, LLM and agent
//! steps as parallelograms), branches as diamonds, loops and parallel groups as
//! subgraphs; when lit, a `classDef` per status and counts in the labels (`hash-file ×3`).

use std::fmt::Write;

use super::Graph;
use super::model::{NodeKind, NodeStatus};

/// Renders `graph` (see the module docs).
pub(crate) fn render(graph: &Graph) -> String {
    let mut out = String::from("flowchart TD\n");
    write_scope(graph, None, 1, &mut out);
    for edge in &graph.edges {
        match &edge.label {
            Some(label) => {
                let _ = writeln!(
                    out,
                    "    {} -->|\"{}\"| {}",
                    edge.from,
                    text(label),
                    edge.to
                );
            }
            None => {
                let _ = writeln!(out, "    {} --> {}", edge.from, edge.to);
            }
        }
    }
    if graph.lit {
        for status in NodeStatus::ALL {
            let (fill, stroke) = status.colours();
            let _ = writeln!(
                out,
                "    classDef {} fill:{fill},stroke:{stroke},color:#111827",
                status.as_str()
            );
        }
        for status in NodeStatus::ALL {
            let ids: Vec<&str> = graph
                .nodes
                .iter()
                .filter(|n| n.status == Some(status))
                .map(|n| n.id.as_str())
                .collect();
            if !ids.is_empty() {
                let _ = writeln!(out, "    class {} {}", ids.join(","), status.as_str());
            }
        }
    }
    out
}

/// Writes the nodes directly in `group` (or at the top level) and the subgraphs of the
/// groups nested in it.
fn write_scope(graph: &Graph, group: Option<usize>, depth: usize, out: &mut String) {
    let indent = "    ".repeat(depth);
    for node in graph.nodes.iter().filter(|n| n.group == group) {
        let mut label = text(&node.label);
        if node.count > 1 {
            let _ = write!(label, " ×{}", node.count);
        }
        let shape = match node.kind {
            NodeKind::Start | NodeKind::End | NodeKind::Sleep => format!("([\"{label}\"])"),
            NodeKind::Action => format!("[\"{label}\"]"),
            NodeKind::Workflow => format!("[[\"{label}\"]]"),
            NodeKind::Hook => format!("{{{{\"{label}\"}}}}"),
            NodeKind::Llm | NodeKind::Agent => format!("[/\"{label}\"/]"),
            NodeKind::Decision => format!("{{\"{label}\"}}"),
            NodeKind::Merge | NodeKind::Fork | NodeKind::Join => "((\" \"))".to_owned(),
        };
        let _ = writeln!(out, "{indent}{}{shape}", node.id);
    }
    for (index, child) in graph.groups.iter().enumerate() {
        if child.parent != group {
            continue;
        }
        let _ = writeln!(
            out,
            "{indent}subgraph {}[\"{}\"]",
            child.id,
            text(&child.label)
        );
        write_scope(graph, Some(index), depth + 1, out);
        let _ = writeln!(out, "{indent}end");
    }
}

/// Label text safe inside Mermaid's `"…"`: quotes and markup as entity codes.
fn text(label: &str) -> String {
    let mut out = String::with_capacity(label.len());
    for c in label.chars() {
        match c {
            '"' => out.push_str("#quot;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '#' => out.push_str("#35;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}
