//! Per-step summaries of a run's log (the CLI's step table, `runs get`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::event::{Event, EventKind};
use crate::llm::Usage;

/// Where a step stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StepStatus {
    /// Started, not finished (running now, or interrupted).
    Running,
    /// Finished with an output.
    Completed,
    /// Failed after its retries.
    Failed,
    /// A durable sleep that has not ended.
    Sleeping,
    /// A hook that has not received its payload.
    Waiting,
    /// A sleep or hook of a run that has ended without it ending: it lost a durable
    /// `select!` (or a `.timeout`), or the run ended while it was open. It never ends.
    Abandoned,
}

impl StepStatus {
    /// The status as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Running => "running",
            StepStatus::Completed => "completed",
            StepStatus::Failed => "failed",
            StepStatus::Sleeping => "sleeping",
            StepStatus::Waiting => "waiting",
            StepStatus::Abandoned => "abandoned",
        }
    }
}

/// One step of a run, summarized from its events.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StepSummary {
    /// The correlation id.
    pub id: String,
    /// The callee slug (`sleep`, `hook` for waits).
    pub callee: String,
    /// Where it stands.
    pub status: StepStatus,
    /// Attempts made (1 + retries).
    pub attempts: u32,
    /// From the first event to the last, in milliseconds, once finished.
    pub duration_ms: Option<u64>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// For LLM steps and agents: the tokens used (all requests of the step).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// The tokens a run's LLM requests used: the sum of the `usage` of every recorded model
/// request (each `prompt_llm` attempt and agent turn).
pub fn token_usage(events: &[Event]) -> Usage {
    let mut total = Usage::default();
    for event in events {
        if let Some(usage) = event.event.usage() {
            total += usage;
        }
    }
    total
}

/// Summarizes every step, sleep and hook of `events`, in order of first appearance.
/// Recorded values (`ctx.now()` and friends, ids with `$`) are left out.
pub fn summarize_steps(events: &[Event]) -> Vec<StepSummary> {
    let mut order: Vec<String> = Vec::new();
    let mut steps: HashMap<String, StepSummary> = HashMap::new();
    for event in events {
        let Some(id) = event.event.correlation_id.as_deref() else {
            continue;
        };
        if id.rsplit('/').next().is_some_and(|last| last.contains('$')) {
            continue;
        }
        let at = event.event.at;
        let step = steps.entry(id.to_owned()).or_insert_with(|| {
            order.push(id.to_owned());
            StepSummary {
                id: id.to_owned(),
                callee: String::new(),
                status: StepStatus::Running,
                attempts: 1,
                duration_ms: None,
                started_at: at,
                usage: None,
            }
        });
        let elapsed = (at - step.started_at).num_milliseconds().max(0) as u64;
        match event.event.kind {
            EventKind::StepStarted => {
                step.callee = event.event.callee().unwrap_or_default().to_owned();
                step.status = StepStatus::Running;
            }
            EventKind::StepRetrying => step.attempts = event.event.attempt + 1,
            EventKind::StepCompleted => {
                step.usage = event.event.usage().or_else(|| event.event.usage_total());
                step.status = StepStatus::Completed;
                step.attempts = event.event.attempt.max(step.attempts);
                step.duration_ms = Some(elapsed);
            }
            EventKind::StepFailed => {
                step.status = StepStatus::Failed;
                step.attempts = event.event.attempt.max(step.attempts);
                step.duration_ms = Some(elapsed);
            }
            EventKind::SleepStarted => {
                step.callee = "sleep".into();
                step.status = StepStatus::Sleeping;
            }
            EventKind::SleepCompleted => {
                step.status = StepStatus::Completed;
                step.duration_ms = Some(elapsed);
            }
            EventKind::HookCreated => {
                step.callee = "hook".into();
                step.status = StepStatus::Waiting;
            }
            EventKind::HookReceived => {
                step.status = StepStatus::Completed;
                step.duration_ms = Some(elapsed);
            }
            _ => {}
        }
    }
    let ended = events.last().is_some_and(|e| {
        matches!(
            e.event.kind,
            EventKind::RunCompleted | EventKind::RunFailed | EventKind::RunCanceled
        )
    });
    order
        .into_iter()
        .filter_map(|id| steps.remove(&id))
        .map(|mut step| {
            if ended && matches!(step.status, StepStatus::Sleeping | StepStatus::Waiting) {
                step.status = StepStatus::Abandoned;
            }
            step
        })
        .collect()
}
