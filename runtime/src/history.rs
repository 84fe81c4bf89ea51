//! A run's recorded history, indexed by correlation id for replay.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::ActionError;
use crate::event::{Event, EventKind};

/// What the log holds for one correlation id.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Recorded {
    /// The callee slug recorded at `step_started` (`ctx.now` etc. for recorded values).
    pub(crate) callee: String,
    /// The input digest recorded at `step_started`.
    pub(crate) digest: String,
    /// The outcome, once `step_completed` / `step_failed` was recorded.
    pub(crate) outcome: Option<Result<Value, ActionError>>,
    /// For sleeps: the recorded wake-up time.
    pub(crate) wake_at: Option<DateTime<Utc>>,
    /// For sleeps: whether `sleep_completed` was recorded.
    pub(crate) sleep_done: bool,
    /// For hooks: the recorded token hash.
    pub(crate) token_hash: Option<String>,
    /// For hooks: the received payload.
    pub(crate) hook_payload: Option<Value>,
    /// For hooks: when the hook times out, if it has a timeout.
    pub(crate) hook_timeout_at: Option<DateTime<Utc>>,
    /// For hooks: whether the timeout was recorded (nothing arrived in time).
    pub(crate) hook_timed_out: bool,
}

/// Recorded steps by correlation id, built once per execution from the event log.
#[derive(Debug, Default)]
pub(crate) struct History {
    by_id: HashMap<String, Recorded>,
    answerable: usize,
}

impl History {
    /// Indexes `events`.
    ///
    /// # Errors
    /// A message naming the event when a payload lacks a field replay needs.
    pub(crate) fn from_events(events: &[Event]) -> Result<History, String> {
        let mut by_id: HashMap<String, Recorded> = HashMap::with_capacity(events.len() / 2);
        for event in events {
            let Some(id) = event.event.correlation_id.as_deref() else {
                continue;
            };
            let payload = &event.event.payload;
            let bad = |what: &str| {
                format!(
                    "event {} ({}) of step `{id}` has no {what}",
                    event.seq, event.event.kind
                )
            };
            match event.event.kind {
                EventKind::StepStarted => {
                    let entry = by_id.entry(id.to_owned()).or_default();
                    entry.callee = str_field(payload, "callee").ok_or_else(|| bad("callee"))?;
                    entry.digest = str_field(payload, "digest").unwrap_or_default();
                }
                EventKind::StepCompleted => {
                    let entry = by_id.entry(id.to_owned()).or_default();
                    if let Some(callee) = str_field(payload, "callee") {
                        entry.callee = callee;
                    }
                    let output = payload.get("output").cloned().unwrap_or(Value::Null);
                    entry.outcome = Some(Ok(output));
                }
                EventKind::StepFailed => {
                    let entry = by_id.entry(id.to_owned()).or_default();
                    let error = payload.get("error").cloned().ok_or_else(|| bad("error"))?;
                    let error: ActionError = serde_json::from_value(error)
                        .map_err(|e| format!("{}: {e}", bad("valid error")))?;
                    entry.outcome = Some(Err(error));
                }
                EventKind::SleepStarted => {
                    let entry = by_id.entry(id.to_owned()).or_default();
                    let wake_at = payload
                        .get("wake_at")
                        .and_then(|v| serde_json::from_value(v.clone()).ok())
                        .ok_or_else(|| bad("wake_at"))?;
                    entry.callee = "sleep".to_owned();
                    entry.wake_at = Some(wake_at);
                }
                EventKind::SleepCompleted => {
                    by_id.entry(id.to_owned()).or_default().sleep_done = true;
                }
                EventKind::HookCreated => {
                    let entry = by_id.entry(id.to_owned()).or_default();
                    entry.callee = "hook".to_owned();
                    entry.token_hash = str_field(payload, "token_hash");
                    entry.hook_timeout_at = payload
                        .get("timeout_at")
                        .and_then(|t| serde_json::from_value(t.clone()).ok());
                }
                EventKind::HookReceived => {
                    let entry = by_id.entry(id.to_owned()).or_default();
                    if payload.get("timed_out") == Some(&Value::Bool(true)) {
                        entry.hook_timed_out = true;
                    } else {
                        entry.hook_payload =
                            Some(payload.get("payload").cloned().unwrap_or(Value::Null));
                    }
                }
                _ => {}
            }
        }
        // Inner steps of a completed sub-workflow are never visited by a replay (the
        // sub-workflow step answers for them), so they are not counted.
        let visited = |id: &str| {
            id.match_indices('/').all(|(end, _)| {
                by_id
                    .get(&id[..end])
                    .is_none_or(|parent| parent.outcome.is_none())
            })
        };
        let answerable = by_id
            .iter()
            .filter(|(id, _)| !id.rsplit('/').next().unwrap_or(id).starts_with("$patch:"))
            .filter(|(_, r)| {
                r.outcome.is_some() || r.sleep_done || r.hook_payload.is_some() || r.hook_timed_out
            })
            .filter(|(id, _)| visited(id))
            .count();
        Ok(History { by_id, answerable })
    }

    /// How many recorded outcomes a replay can answer (finished steps, recorded values,
    /// finished sleeps, received hooks), leaving out `ctx.patched` markers.
    pub(crate) fn answerable(&self) -> usize {
        self.answerable
    }

    /// What the log holds for `id`.
    pub(crate) fn get(&self, id: &str) -> Option<&Recorded> {
        self.by_id.get(id)
    }
}

fn str_field(payload: &Value, field: &str) -> Option<String> {
    payload
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
}
