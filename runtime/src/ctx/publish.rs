//! Published state: `ctx.publish("progress", &value)` records a value under a key that
//! readers outside the run see (`Engine::state`, `GET /runs/{id}/state`), latest per key.
//!
//! A publish is a recorded step (id `publish:<key>#<n>`): one `step_completed` with callee
//! `publish` and output `{"key", "value"}`. Readers read it from the log, so what they see
//! survives restarts and is the same in every process; a replay records nothing again.

use std::future::Future;

use serde::Serialize;
use serde_json::{Value, json};

use super::Ctx;
use super::recorder::{Call, Entry, Shape};
use crate::ActionError;
use crate::error::kinds;
use crate::event::EventPayload;

/// The callee of recorded publishes.
pub(crate) const PUBLISH: &str = "publish";

/// Whether `key` can name published state (it appears in URLs): 1 to 100 ASCII letters,
/// digits, `-`, `_` or `.`.
pub(crate) fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 100
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Ctx {
    /// Publishes `value` under `key` for readers outside the run: [`crate::Engine::state`],
    /// [`crate::Engine::wait_for_state`], `GET /runs/{id}/state/{key}`, `runs state`.
    /// Readers see the latest value per key, from the log.
    ///
    /// ```ignore
    /// ctx.publish("progress", &Progress { done: 3, total: 10 }).await?;
    /// ```
    ///
    /// # Errors
    /// A permanent `invalid_state_key` error for a key that is not 1 to 100 ASCII letters,
    /// digits, `-`, `_` or `.`; `serde` when the value does not serialize;
    /// `payload_too_large` when it is over the engine's payload limit (nothing recorded).
    pub fn publish<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
    ) -> impl Future<Output = Result<(), ActionError>> + Send + 'static {
        let valid = valid_key(key);
        let id = self.next_id(&format!("publish:{key}"));
        let ctx = self.clone();
        let key = key.to_owned();
        let value = serde_json::to_value(value);
        async move {
            if !valid {
                return Err(ActionError::new(
                    "invalid_state_key",
                    format!(
                        "state key {key:?} is not valid: use 1 to 100 ASCII letters, digits, \
                         `-`, `_` or `.` (it appears in URLs), e.g. \"progress\""
                    ),
                    false,
                ));
            }
            let value = value.map_err(|e| {
                ActionError::new(
                    kinds::SERDE,
                    format!("value published as `{key}`: {e}"),
                    false,
                )
            })?;
            publish(ctx, id, key, value).await
        }
    }
}

/// The publish adapter over the recorder.
async fn publish(ctx: Ctx, id: String, key: String, value: Value) -> Result<(), ActionError> {
    let output = json!({ "key": key, "value": value });
    record_completed(&ctx, &id, PUBLISH, output).await
}

/// Records `output` as the `step_completed` of `id` (callee `callee`) once; a replay
/// records nothing. The output must be within the payload limit (checked by the recorder
/// as the step's input).
pub(crate) async fn record_completed(
    ctx: &Ctx,
    id: &str,
    callee: &str,
    output: Value,
) -> Result<(), ActionError> {
    let run = &ctx.run;
    let call = Call {
        id,
        callee,
        shape: Shape::Leaf,
        input: Some(&output),
        output: None,
    };
    match run.enter(&call).await? {
        Entry::Replayed(outcome) => outcome.map(drop),
        Entry::Live(slot) => {
            slot.finish_event(EventPayload::StepCompleted {
                output: output.clone(),
                callee: Some(callee.to_owned()),
                usage: None,
                usage_total: None,
                seeded: false,
            })
            .await
        }
    }
}

/// The published state in a run's log: the latest value per key.
pub(crate) fn state_of(
    events: &[crate::event::Event],
) -> std::collections::BTreeMap<String, Value> {
    use crate::event::field;
    let mut state = std::collections::BTreeMap::new();
    for event in events {
        let payload = &event.event.payload;
        if event.event.kind != crate::event::EventKind::StepCompleted
            || payload.get(field::CALLEE).and_then(Value::as_str) != Some(PUBLISH)
        {
            continue;
        }
        let output = payload.get(field::OUTPUT);
        if let Some(key) = output.and_then(|o| o.get("key")).and_then(Value::as_str) {
            let value = output
                .and_then(|o| o.get("value"))
                .cloned()
                .unwrap_or(Value::Null);
            state.insert(key.to_owned(), value);
        }
    }
    state
}
