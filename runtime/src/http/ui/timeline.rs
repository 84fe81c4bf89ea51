//! A run's timeline, read from its event log: every step, sleep and hook with where it
//! stands ([`summarize_steps`], the one summary the CLI shows too), and what the page
//! expands: its input, output, each retried attempt's error, its final error, its token
//! usage and what that cost.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::cost::PriceTable;
use crate::engine::{ModelRequest, StepSummary, model_requests, summarize_steps, total_cost};
use crate::event::{Event, EventKind};
use crate::llm::Usage;

/// One attempt of a step that failed and was retried.
pub(crate) struct Retry {
    pub(crate) attempt: u32,
    pub(crate) at: DateTime<Utc>,
    pub(crate) error: Value,
    pub(crate) delay_ms: Option<u64>,
}

/// One row of the timeline.
pub(crate) struct Step<'a> {
    pub(crate) summary: StepSummary,
    /// How many `/`-separated scopes enclose it (sub-workflow and agent steps: 1 and more).
    pub(crate) depth: usize,
    /// `action`, `workflow`, `llm`, `agent`, `sleep`, `hook` (empty when the log has none).
    pub(crate) kind: String,
    pub(crate) input: Option<&'a Value>,
    pub(crate) output: Option<&'a Value>,
    pub(crate) error: Option<&'a Value>,
    pub(crate) retries: Vec<Retry>,
    /// A sleep's wake-up time.
    pub(crate) wake_at: Option<&'a Value>,
    /// A hook's payload (or `{"timed_out": true, …}`).
    pub(crate) received: Option<&'a Value>,
    /// The model of an LLM step or agent (its own input's `model`, or its scope's).
    pub(crate) model: Option<String>,
    /// What its usage cost, when the price table knows the model.
    pub(crate) cost: Option<f64>,
}

/// The timeline of a run: its steps in order of first appearance, and the time span they
/// cover (from the first event to the last).
pub(crate) struct Timeline<'a> {
    pub(crate) steps: Vec<Step<'a>>,
    pub(crate) start: Option<DateTime<Utc>>,
    pub(crate) end: Option<DateTime<Utc>>,
    /// The run's cost over its recorded model requests, when every model has a price.
    pub(crate) cost: Option<f64>,
    /// Models seen without a price.
    pub(crate) unpriced: Vec<String>,
}

#[derive(Default)]
struct Details<'a> {
    kind: String,
    input: Option<&'a Value>,
    output: Option<&'a Value>,
    error: Option<&'a Value>,
    retries: Vec<Retry>,
    wake_at: Option<&'a Value>,
    received: Option<&'a Value>,
}

impl<'a> Timeline<'a> {
    /// Reads `events` (one run's log, in order), pricing usage with `prices`.
    pub(crate) fn of(events: &'a [Event], prices: &PriceTable) -> Self {
        let mut details: HashMap<&'a str, Details<'a>> = HashMap::new();
        for event in events {
            let Some(id) = event.event.correlation_id.as_deref() else {
                continue;
            };
            let payload = &event.event.payload;
            let entry = details.entry(id).or_default();
            match event.event.kind {
                EventKind::StepStarted => {
                    entry.kind = payload
                        .get("kind")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    entry.input = payload.get("input");
                }
                EventKind::StepCompleted => entry.output = payload.get("output"),
                EventKind::StepRetrying => entry.retries.push(Retry {
                    attempt: event.event.attempt,
                    at: event.event.at,
                    error: payload.get("error").cloned().unwrap_or(Value::Null),
                    delay_ms: payload.get("delay_ms").and_then(Value::as_u64),
                }),
                EventKind::StepFailed => entry.error = payload.get("error"),
                EventKind::SleepStarted => {
                    entry.kind = "sleep".into();
                    entry.wake_at = payload.get("wake_at");
                }
                EventKind::HookCreated => entry.kind = "hook".into(),
                EventKind::HookReceived => entry.received = Some(payload),
                _ => {}
            }
        }
        // Costs by the one rule of `crate::engine::model_requests`: each recorded model
        // request priced on the model its step recorded.
        let requests = model_requests(events, prices);
        let mut unpriced: Vec<String> = Vec::new();
        for request in requests.iter().filter(|r| r.cost_usd.is_none()) {
            if !unpriced.contains(&request.model) {
                unpriced.push(request.model.clone());
            }
        }
        let run_cost = total_cost(&requests)
            .filter(|&(_, some_unpriced)| !some_unpriced)
            .map(|(cost, _)| cost);
        let summaries = summarize_steps(events);
        let models: Vec<Option<String>> = summaries
            .iter()
            .map(|summary| model_of(&summary.id, &details))
            .collect();
        let steps = summaries
            .into_iter()
            .zip(models)
            .map(|(summary, model)| {
                let depth = summary.id.matches('/').count();
                let cost = summary
                    .usage
                    .and_then(|_| step_cost(&summary.id, &requests));
                let d = details.remove(summary.id.as_str()).unwrap_or_default();
                let kind = if d.kind.is_empty() {
                    summary.callee.clone()
                } else {
                    d.kind
                };
                Step {
                    depth,
                    kind,
                    input: d.input,
                    output: d.output,
                    error: d.error,
                    retries: d.retries,
                    wake_at: d.wake_at,
                    received: d.received,
                    model,
                    cost,
                    summary,
                }
            })
            .collect();
        Timeline {
            steps,
            start: events.first().map(|e| e.event.at),
            end: events.last().map(|e| e.event.at),
            cost: run_cost,
            unpriced,
        }
    }
}

/// The model of step `id`: the `model` of its own recorded input, else of the closest
/// enclosing scope's (`support#0/turn#0` takes the agent `support#0`'s).
fn model_of(id: &str, details: &HashMap<&str, Details<'_>>) -> Option<String> {
    let mut scope = id;
    loop {
        if let Some(model) = details
            .get(scope)
            .and_then(|d| d.input)
            .and_then(|input| input.get("model"))
            .and_then(Value::as_str)
        {
            return Some(model.to_owned());
        }
        scope = &scope[..scope.rfind('/')?];
    }
}

/// What step `id`'s model requests cost: its own, or those recorded under it (an LLM step's
/// attempts, an agent's turns); `None` when it made none or one has no price.
fn step_cost(id: &str, requests: &[ModelRequest]) -> Option<f64> {
    let scope = format!("{id}/");
    let mine: Vec<&ModelRequest> = requests
        .iter()
        .filter(|r| r.step == id || r.step.starts_with(&scope))
        .collect();
    if mine.is_empty() || mine.iter().any(|r| r.cost_usd.is_none()) {
        return None;
    }
    Some(mine.iter().filter_map(|r| r.cost_usd).sum())
}

/// Total tokens of a usage, for a compact label.
pub(crate) fn tokens_label(usage: &Usage) -> String {
    format!(
        "{} tokens ({} in, {} out)",
        usage.total_tokens, usage.prompt_tokens, usage.completion_tokens
    )
}
