//! [`RunLog`]: a run's event log, for assertions and snapshots.

use reprise::event::{Event, EventKind};

use crate::snapshot::{RedactedEvent, redact};

/// A run's events, in order, with the extra text redactions of a snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct RunLog {
    events: Vec<Event>,
    texts: Vec<(String, String)>,
}

impl RunLog {
    /// Wraps `events`.
    pub fn new(events: Vec<Event>) -> Self {
        RunLog {
            events,
            texts: Vec::new(),
        }
    }

    /// The events.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The workflow's slug, from the `run_created` event.
    pub fn workflow(&self) -> Option<&str> {
        self.events
            .iter()
            .find(|e| e.event.kind == EventKind::RunCreated)
            .and_then(|e| e.event.workflow())
    }

    /// Makes [`RunLog::redacted`] replace every occurrence of `from` by `to` in the log's
    /// strings (payload values and keys, correlation ids) before its other redactions: for
    /// values only the test knows to vary, such as a temporary directory's path. Applied in
    /// the order given; an empty `from` is ignored.
    ///
    /// ```ignore
    /// let log = env.log(&run).await.redact_text(tmp.path().display().to_string(), "[tmp]");
    /// ```
    #[must_use]
    pub fn redact_text(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.texts.push((from.into(), to.into()));
        self
    }

    /// The log with everything that differs between two runs of the same workflow on the
    /// same input replaced by stable, numbered placeholders (`[time-N]`, `[run-N]`,
    /// `[token-N]`, `[uuid-N]`, `[random-N]`, `[duration]`, `[schema]`, `[digest]`; see
    /// [`RedactedEvent`] for the rules, and [`RunLog::redact_text`]). Events keep their
    /// sequence order. This is what [`assert_run_snapshot!`](crate::assert_run_snapshot)
    /// snapshots.
    pub fn redacted(&self) -> Vec<RedactedEvent> {
        redact(&self.events, &self.texts)
    }

    /// The insta settings of a run-log snapshot (used by the snapshot macros): the
    /// workflow's slug as description, no expression, sorted maps.
    #[doc(hidden)]
    pub fn snapshot_settings(&self) -> insta::Settings {
        let mut settings = insta::Settings::clone_current();
        settings.set_description(format!(
            "redacted run log of `{}`",
            self.workflow().unwrap_or("?")
        ));
        settings.set_omit_expression(true);
        settings.set_sort_maps(true);
        settings
    }
}
