//! Reading a run from outside while it runs: its published state ([`Engine::state`],
//! [`Engine::state_of`], [`Engine::wait_for_state`]) and the answer to an update
//! ([`Engine::update`]). Both are read from the run's log; waits use the engine's live
//! notifications of the run (in-process), re-reading the store at least once a second for
//! runs another process executes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Engine;
use crate::ctx::publish::state_of;
use crate::ctx::update::UPDATE_REPLY;
use crate::error::EngineError;
use crate::event::{Event, EventKind, RunId, field};
use crate::step::MessageKind;

/// The longest a wait goes without re-reading the store (a run executed by another
/// process notifies nobody here).
const REREAD: Duration = Duration::from_secs(1);

/// The reply to the update request with inbox seq `seq` in `events`, if recorded:
/// `Ok(value)` or `Err(message)`.
fn reply_to(events: &[Event], seq: u64) -> Option<Result<Value, String>> {
    events.iter().find_map(|event| {
        let payload = &event.event.payload;
        if event.event.kind != EventKind::StepCompleted
            || payload.get(field::CALLEE).and_then(Value::as_str) != Some(UPDATE_REPLY)
        {
            return None;
        }
        let output = payload.get(field::OUTPUT)?;
        if output.get("seq").and_then(Value::as_u64) != Some(seq) {
            return None;
        }
        Some(match output.get("error") {
            Some(error) => Err(error
                .as_str()
                .map_or_else(|| error.to_string(), str::to_owned)),
            None => Ok(output.get("ok").cloned().unwrap_or(Value::Null)),
        })
    })
}

impl Engine {
    /// The state run `run` published (`ctx.publish(key, &value)`): the latest value per
    /// key, from its log. Empty before the first publish.
    ///
    /// # Errors
    /// [`EngineError::UnknownRun`]; store failures.
    pub async fn state(&self, run: &RunId) -> Result<BTreeMap<String, Value>, EngineError> {
        self.get_run(run).await?;
        Ok(state_of(&self.events(run).await?))
    }

    /// The latest value run `run` published under `key`, as `T`; `None` before it
    /// published one.
    ///
    /// # Errors
    /// As [`Engine::state`]; [`EngineError::Serde`] when the value is not a `T`.
    pub async fn state_of<T: DeserializeOwned>(
        &self,
        run: &RunId,
        key: &str,
    ) -> Result<Option<T>, EngineError> {
        let Some(value) = self.state(run).await?.remove(key) else {
            return Ok(None);
        };
        serde_json::from_value(value).map(Some).map_err(|e| {
            EngineError::Serde(format!(
                "the state `{key}` of run `{run}` does not read as `{}`: {e}",
                std::any::type_name::<T>()
            ))
        })
    }

    /// The value run `run` published under `key`, waiting up to `timeout` for the first
    /// publish (at once when there is one).
    ///
    /// # Errors
    /// [`EngineError::Timeout`] when nothing was published in time;
    /// [`EngineError::InvalidState`] when the run ended without publishing `key`; as
    /// [`Engine::state`].
    pub async fn wait_for_state(
        &self,
        run: &RunId,
        key: &str,
        timeout: Duration,
    ) -> Result<Value, EngineError> {
        let mut watch = self.env().live.watch(run);
        let deadline = Instant::now() + timeout;
        loop {
            // The status first: a run that ended after it was read published everything
            // it ever will before the log is read.
            let record = self.get_run(run).await?;
            if let Some(value) = self.state(run).await?.remove(key) {
                return Ok(value);
            }
            if record.status.is_terminal() {
                return Err(EngineError::InvalidState {
                    run: run.to_string(),
                    status: record.status.to_string(),
                    message: format!("the run ended without publishing state `{key}`"),
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(EngineError::Timeout(format!(
                    "run `{run}` published no state `{key}` within {} (it is {}); wait \
                     longer, or check that the workflow calls `ctx.publish(\"{key}\", ..)`",
                    humantime::format_duration(timeout),
                    record.status
                )));
            }
            let _ = tokio::time::timeout(left.min(REREAD), watch.recv()).await;
        }
    }

    /// Sends update `name` with request `payload` to run `run` and waits up to `wait` for
    /// the body's answer (`request.reply(..)`): returns the `Ok` value.
    ///
    /// The request is validated against the update's request type first: an invalid one
    /// gets the violations and changes nothing (nothing is posted).
    ///
    /// ```no_run
    /// # async fn demo(engine: reprise::Engine, run: reprise::RunId) -> Result<(), reprise::EngineError> {
    /// let limit = engine
    ///     .update(&run, "set-limit", serde_json::json!({"cents": 5000}), std::time::Duration::from_secs(30))
    ///     .await?;
    /// # let _ = limit; Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Engine::signal`] for the delivery (404 unknown run or update name, 409 ended
    /// run, 422 schema violations); [`EngineError::UpdateRejected`] (422) with the
    /// handler's message when it answered `Err`; [`EngineError::Timeout`] when no answer
    /// came within `wait` — the request stays queued and the run answers it when it next
    /// receives the update; [`EngineError::InvalidState`] when the run ended without
    /// answering.
    pub async fn update(
        &self,
        run: &RunId,
        name: &str,
        payload: Value,
        wait: Duration,
    ) -> Result<Value, EngineError> {
        let mut watch = self.env().live.watch(run);
        let deadline = Instant::now() + wait;
        let (posted, _) =
            super::deliver(self.env(), run, MessageKind::Update, name, payload, None).await?;
        loop {
            let record = self.get_run(run).await?;
            match reply_to(&self.events(run).await?, posted.seq) {
                Some(Ok(value)) => return Ok(value),
                Some(Err(message)) => {
                    return Err(EngineError::UpdateRejected {
                        run: run.to_string(),
                        update: name.to_owned(),
                        message,
                    });
                }
                None => {}
            }
            if record.status.is_terminal() {
                return Err(EngineError::InvalidState {
                    run: run.to_string(),
                    status: record.status.to_string(),
                    message: format!(
                        "the run ended without answering update `{name}` (request #{})",
                        posted.seq
                    ),
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(EngineError::Timeout(format!(
                    "run `{run}` did not answer update `{name}` (request #{}) within {}; the \
                     request stays queued: the run answers it when it next receives `{name}` \
                     (it is {} now)",
                    posted.seq,
                    humantime::format_duration(wait),
                    record.status
                )));
            }
            let _ = tokio::time::timeout(left.min(REREAD), watch.recv()).await;
        }
    }
}
