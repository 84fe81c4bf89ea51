//! `/ui/runs/{id}/graph`: the run's workflow graph lit by the run (each node coloured by
//! the status its steps reached), with a legend of the colours.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use super::super::AppState;
use super::layout::{self, Nav, badge};
use super::{UiError, html as respond};
use crate::event::RunId;
use crate::graph::{Graph, NodeStatus};

/// The node statuses of a lit graph, as the legend lists them: (status, class, label).
pub(crate) const LEGEND: [(NodeStatus, &str, &str); 6] = [
    (NodeStatus::Completed, "completed", "completed"),
    (NodeStatus::Running, "running", "running"),
    (NodeStatus::Retrying, "retrying", "retrying"),
    (NodeStatus::Waiting, "waiting", "sleeping / waiting"),
    (NodeStatus::Failed, "failed", "failed"),
    (NodeStatus::NotReached, "not_reached", "not reached"),
];

/// The legend of node colours: a swatch in the graph's own fill and stroke per status.
pub(crate) fn legend() -> Markup {
    html! {
        div.legend #legend {
            @for (status, class, label) in LEGEND {
                @let (fill, stroke) = status.colours();
                span class={ "legend-item s-" (class) } {
                    svg.sw width="12" height="12" viewBox="0 0 12 12" aria-hidden="true" {
                        rect x="0.5" y="0.5" width="11" height="11" rx="3" fill=(fill) stroke=(stroke) {}
                    }
                    (label)
                }
            }
        }
    }
}

/// `GET /ui/runs/{id}/graph`.
pub(crate) async fn page(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let id = RunId(id);
    let record = state.engine.get_run(&id).await?;
    let events = state.engine.events(&id).await?;
    let graph = Graph::of_workflow(state.engine.registry(), &record.workflow).map(|mut graph| {
        graph.light(&events);
        graph.svg()
    });
    let body = html! {
        h1 {
            "Graph of "
            a href={ "/ui/runs/" (record.id) } { span.mono { (record.id) } }
            (badge(record.status.as_str()))
        }
        p.muted {
            "Workflow " a href={ "/ui/workflows/" (record.workflow) } { (record.workflow) }
            ", each node coloured by how far this run's steps at it got."
        }
        (legend())
        @match graph {
            Some(svg) => div.graph #graph { (layout::trusted(svg)) },
            None => p.notice {
                "This binary does not register the workflow `" (record.workflow)
                "`, so its graph is unknown here."
            },
        }
    };
    let title = format!("Graph · {}", record.id);
    Ok(respond(
        StatusCode::OK,
        layout::page(&title, Nav::Runs, body),
    ))
}
