//! A run's inbox: durable messages addressed to one run (signals, update requests, events
//! delivered to a waiting run, a child run's result), and emitted events (DESIGN "Messages
//! and composition").
//!
//! A message is written to the store by whoever delivers it ([`crate::store::Store::post_message`]),
//! never to the run's event log: the run may be executing under another process's lease.
//! The run *consumes* a message by recording its receipt in its own log (a `step_completed`
//! whose callee is `recv:<kind>` and whose output is `{"seq": n, "payload": …}`), so a message
//! is received exactly once, in inbox order, and every replay receives the same one.
//!
//! Channels name what a message is for: `signal:<name>`, `update:<name>`, `event:<name>`,
//! `child:<child-run-id>`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::RunId;

/// A message to post into a run's inbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewMessage {
    /// The run it is for.
    pub run_id: RunId,
    /// What it is for: `signal:<name>`, `update:<name>`, `event:<name>`, `child:<run-id>`.
    pub channel: String,
    /// The JSON payload (already validated by the deliverer).
    pub payload: Value,
    /// A de-duplication key (an idempotency key of the sender, an event id): a second
    /// message to the same run with the same key is not stored; the first one's `seq`
    /// is returned as a duplicate.
    pub dedupe: Option<String>,
    /// When it was posted.
    pub at: DateTime<Utc>,
}

/// A message in a run's inbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Its position in the run's inbox: 1, 2, 3, … in posting order, per run.
    pub seq: u64,
    /// What it is for (see [`NewMessage::channel`]).
    pub channel: String,
    /// The JSON payload.
    pub payload: Value,
    /// The sender's de-duplication key, if any.
    pub dedupe: Option<String>,
    /// When it was posted.
    pub at: DateTime<Utc>,
}

/// The answer of [`crate::store::Store::post_message`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posted {
    /// The message's `seq` in the run's inbox (the earlier message's, for a duplicate).
    pub seq: u64,
    /// Whether a message with the same de-duplication key was posted before (nothing was
    /// written).
    pub duplicate: bool,
}

/// An event emitted to the engine (`POST /events`, `Engine::emit`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmittedEvent {
    /// The event's name, such as `order.paid`.
    pub name: String,
    /// Its id: an event is processed once per id (given by the sender, or a fresh UUID).
    pub id: String,
    /// Its data.
    pub data: Value,
    /// When it was emitted.
    pub at: DateTime<Utc>,
}

/// The channel of signal `name`.
pub fn signal_channel(name: &str) -> String {
    format!("signal:{name}")
}

/// The channel of update `name`.
pub fn update_channel(name: &str) -> String {
    format!("update:{name}")
}

/// The channel of event `name`.
pub fn event_channel(name: &str) -> String {
    format!("event:{name}")
}

/// The channel of child run `id`'s result, in its parent's inbox.
pub fn child_channel(id: &RunId) -> String {
    format!("child:{id}")
}
