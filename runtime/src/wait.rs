//! [`Wait`]: what a suspended run waits for — part of the event log's vocabulary
//! (`run_suspended` lists them) and what an execution reports when it suspends.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Something a suspended run waits for.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "wait", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Wait {
    /// A durable sleep, until `until`.
    Sleep {
        /// The sleep's correlation id.
        id: String,
        /// When it ends.
        until: DateTime<Utc>,
    },
    /// A hook, until its payload arrives (or `timeout_at`).
    Hook {
        /// The hook's correlation id.
        id: String,
        /// When the hook times out, if it has a timeout.
        timeout_at: Option<DateTime<Utc>>,
    },
    /// A message in the run's inbox (a signal, an update request, an event, a child
    /// run's result; see [`crate::message`]).
    Message {
        /// The receive's correlation id (`signal:paid#0`).
        id: String,
        /// The inbox channel it waits on (`signal:paid`, `event:order.paid`, `child:<id>`).
        channel: String,
    },
    /// A run-level retry scheduled after a failed attempt.
    Retry {
        /// When the next attempt may start.
        until: DateTime<Utc>,
    },
}

impl Wait {
    /// When the wait ends by itself (`None` for a hook without timeout).
    pub fn until(&self) -> Option<DateTime<Utc>> {
        match self {
            Wait::Sleep { until, .. } | Wait::Retry { until } => Some(*until),
            Wait::Hook { timeout_at, .. } => *timeout_at,
            Wait::Message { .. } => None,
        }
    }

    /// Whether only something from outside the run ends the wait (a hook's payload, a
    /// message): a run suspended on one is `waiting`, else `sleeping`.
    pub fn is_external(&self) -> bool {
        matches!(self, Wait::Hook { .. } | Wait::Message { .. })
    }
}
