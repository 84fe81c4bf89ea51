//! Schedules kept as data ([`ScheduleRow`]): the rows behind `schedules list|create|…`,
//! `/schedules` and the stored schedules the scheduler fires (see
//! [`crate::trigger::Schedules`]). The store keeps them opaque: the definition is JSON,
//! checked and read by the engine.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// One stored schedule row, keyed by `name`.
///
/// A row with a `definition` is a schedule kept as data. A row without one only holds the
/// paused state of a schedule declared in code (`EngineBuilder::cron`), so that an
/// operator can pause it without a deploy.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScheduleRow {
    /// The schedule's name (letters, digits, `-`, `_`, `.`), unique.
    pub name: String,
    /// The schedule as JSON (see `trigger::ScheduleSpec`), or `None` for the paused state
    /// of a schedule declared in code.
    pub definition: Option<serde_json::Value>,
    /// Whether its ticks are held back (they do not fire while paused).
    pub paused: bool,
    /// When the row was created (UTC).
    pub created_at: DateTime<Utc>,
    /// Who created it (`cli:<user>`, `api`, or the caller's text).
    pub created_by: String,
    /// When it last changed (UTC).
    pub updated_at: DateTime<Utc>,
    /// Who changed it last.
    pub updated_by: String,
}
