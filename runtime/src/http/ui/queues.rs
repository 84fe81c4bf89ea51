//! `/ui/queues`: the flow-control queues, with their limits, admitted unfinished runs,
//! admissions in the current rate window, step permits in the step-rate window and
//! waiting runs (as `GET /queues`). Each queue's name links to the runs page filtered to
//! its runs (`/ui?queue=<name>`), its waiting count to its runs still `queued`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

use super::super::AppState;
use super::layout::{self, Nav};
use super::runs::encode;
use super::{UiError, html as respond};

/// `GET /ui/queues`.
pub(crate) async fn page(State(state): State<AppState>) -> Result<Response, UiError> {
    let queues = crate::http::queues::overview(&state.engine).await?;
    let body = html! {
        h1 { "Queues" }
        @if queues.is_empty() {
            p.empty {
                "No queues. Configure one in code (" code { "Engine::builder().queue(..)" } "), with "
                code { "--queues-file" } " or " code { "REPRISE_QUEUES" } ", or name one in "
                code { "#[workflow(queue = \"…\")]" } "."
            }
        } @else {
            table.data #queues {
                thead { tr {
                    th { "Queue" } th { "Limits" } th { "Key" }
                    th title="admitted runs that have not ended" { "Active" }
                    th title="admissions in the current rate window" { "In window" }
                    th title="step permits taken in the current step-rate window (queue-wide step limits)" { "Step permits" }
                    th title="queued runs not admitted yet" { "Waiting" }
                } }
                tbody {
                    @for queue in &queues {
                        tr data-queue=(queue.name) {
                            td { a.queue-runs href={ "/ui?queue=" (encode(&queue.name)) } { strong { (queue.name) } } }
                            td.wrap { (queue.limits()) }
                            td.mono { (queue.key.as_deref().unwrap_or("")) }
                            td data-active=(queue.active) { (queue.active) }
                            td data-in-window=(queue.admitted_in_window) { (queue.admitted_in_window) }
                            td data-step-permits=(queue.step_permits_in_window.map(|n| n.to_string()).unwrap_or_default()) {
                                @if let Some(n) = queue.step_permits_in_window {
                                    (n)
                                    @if let Some(rate) = &queue.step_rate_limit { " of " (rate.limit) }
                                }
                            }
                            td data-waiting=(queue.waiting) {
                                a href={ "/ui?queue=" (encode(&queue.name)) "&status=queued" } { (queue.waiting) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(respond(
        StatusCode::OK,
        layout::page("Queues", Nav::Queues, body),
    ))
}
