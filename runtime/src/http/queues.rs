//! `GET /queues`: the flow-control queues the engine knows ([`crate::queue`]), each with
//! its settings, how many of its runs are admitted and unfinished, how many were admitted
//! in the current rate window, and how many wait. `queues list` and the UI's queues page
//! show the same [`QueueView`]s.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use crate::{Engine, EngineError};

/// A queue: its settings and its counts now.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct QueueView {
    /// The queue's name.
    pub(crate) name: String,
    /// The most admitted, unfinished runs of the queue at once; absent: no bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) concurrency: Option<u32>,
    /// The most admitted, unfinished runs per key at once; absent: no bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) key_concurrency: Option<u32>,
    /// The JSON pointer into a run's input its key is read from (`/customer`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) key: Option<String>,
    /// The rate limit, `{"limit", "period", "per_key"}` (`period` as humantime text such
    /// as `1m`): at most `limit` admissions in any window of `period`; absent: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub(crate) rate_limit: Option<crate::queue::RateLimit>,
    /// The debounce, `{"window", "policy"}` (`policy`: `replace` or `drop`); absent: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub(crate) debounce: Option<crate::queue::Debounce>,
    /// Admitted runs of the queue that have not ended (running, sleeping, waiting, paused
    /// or retrying): what its concurrency counts.
    pub(crate) active: u64,
    /// Admissions in the current rate window, queue-wide (0 without a queue-wide rate
    /// limit).
    pub(crate) admitted_in_window: u64,
    /// The step rate limit, `{"limit", "period", "per_key"}`: at most `limit` live step
    /// attempts of the queue's runs (per key with `per_key`) in any window of `period`;
    /// absent: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub(crate) step_rate_limit: Option<crate::queue::RateLimit>,
    /// Step permits taken in the current window of a queue-wide step rate limit (absent
    /// without one, or for a per-key limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) step_permits_in_window: Option<u64>,
    /// When the queue-wide step window is full: when the next step permit frees.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub(crate) next_step_permit_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Runs of the queue that are `queued` and not admitted yet (waiting for their turn,
    /// a limit, a debounce window or a worker).
    pub(crate) waiting: u64,
}

/// Every queue the engine knows, by name, with its counts ([`Engine::queue_states`]).
///
/// # Errors
/// Store failures.
pub(crate) async fn overview(engine: &Engine) -> Result<Vec<QueueView>, EngineError> {
    Ok(engine
        .queue_states()
        .await?
        .into_iter()
        .map(|state| {
            let settings = state.settings;
            QueueView {
                waiting: state.waiting,
                name: settings.name,
                concurrency: settings.concurrency,
                key_concurrency: settings.key_concurrency,
                key: settings.key,
                rate_limit: settings.rate_limit,
                debounce: settings.debounce,
                step_rate_limit: settings.step_rate_limit,
                step_permits_in_window: state.step_permits.as_ref().map(|p| p.taken),
                next_step_permit_at: state.step_permits.as_ref().and_then(|p| p.next_at),
                active: state.active,
                admitted_in_window: state.admitted_in_window,
            }
        })
        .collect())
}

impl QueueView {
    /// The limits as a short text: `concurrency 10, 1 per key, 60 per 1m, 600 steps per
    /// 1m`.
    pub(crate) fn limits(&self) -> String {
        let mut parts = Vec::new();
        if let Some(n) = self.concurrency {
            parts.push(format!("concurrency {n}"));
        }
        if let Some(n) = self.key_concurrency {
            parts.push(format!("{n} per key"));
        }
        if let Some(rate) = &self.rate_limit {
            let per = if rate.per_key { " per key" } else { "" };
            parts.push(format!(
                "{} per {}{per}",
                rate.limit,
                humantime::format_duration(rate.period)
            ));
        }
        if let Some(rate) = &self.step_rate_limit {
            let per = if rate.per_key { " per key" } else { "" };
            parts.push(format!(
                "{} steps per {}{per}",
                rate.limit,
                humantime::format_duration(rate.period)
            ));
        }
        if let Some(debounce) = &self.debounce {
            let policy = match debounce.policy {
                crate::queue::DebouncePolicy::Replace => "replace",
                crate::queue::DebouncePolicy::Drop => "drop",
            };
            parts.push(format!(
                "debounce {} ({policy})",
                humantime::format_duration(debounce.window)
            ));
        }
        if parts.is_empty() {
            "no limits".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

/// Lists the flow-control queues the server's engine knows (configured in code or by
/// `--queues-file`/`REPRISE_QUEUES`, and named by its workflows), by name: each with its
/// settings, `active` (admitted, unfinished runs), `admitted_in_window`, the step rate
/// limit's `step_permits_in_window` and `next_step_permit_at`, and `waiting` (queued, not
/// yet admitted runs).
#[utoipa::path(
    get,
    path = "/queues",
    operation_id = "list_queues",
    tag = "queues",
    responses(
        (status = 200, description = "The queues, by name", body = Vec<QueueView>),
        (status = 401, description = "A bearer token is required", body = ErrorBody),
    )
)]
pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<Vec<QueueView>>, ApiError> {
    Ok(Json(overview(&state.engine).await?))
}

/// [`crate::QueueWait`] with its sentence, as `GET /runs/{id}` and `runs get --json` show
/// it.
#[derive(Debug, Serialize)]
pub(crate) struct WaitingFor {
    /// The parts.
    #[serde(flatten)]
    pub(crate) wait: crate::QueueWait,
    /// The sentence `runs get` prints.
    pub(crate) message: String,
}

impl WaitingFor {
    /// Why `record` waits, if it does ([`crate::Engine::queue_wait`]). When the store
    /// cannot say (it keeps no queues, or failed), logs a warning and says nothing: the
    /// run itself is still shown.
    pub(crate) async fn of(engine: &Engine, record: &crate::event::RunRecord) -> Option<Self> {
        match engine.queue_wait(record).await {
            Ok(wait) => wait.map(|wait| WaitingFor {
                message: wait.to_string(),
                wait,
            }),
            Err(error) => {
                tracing::warn!(
                    run = %record.id,
                    %error,
                    "cannot say why run {} waits: {error}",
                    record.id
                );
                None
            }
        }
    }
}
