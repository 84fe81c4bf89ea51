//! [`RunLog`]: a run's event log, for assertions and snapshots.

use reprise::event::Event;

/// A run's events, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct RunLog {
    events: Vec<Event>,
}

impl RunLog {
    /// Wraps `events`.
    pub fn new(events: Vec<Event>) -> Self {
        RunLog { events }
    }

    /// The events.
    pub fn events(&self) -> &[Event] {
        &self.events
    }
}
