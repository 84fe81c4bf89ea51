//! How the SQL stores encode what they keep: timestamps as `i64` microseconds since the
//! Unix epoch (UTC), fencing tokens as `i64`, and the errors for rows that do not decode,
//! each naming the run ([`EngineError::Corrupt`]). Shared by the SQLite and Postgres
//! stores.

use chrono::{DateTime, Utc};

use crate::EngineError;

/// A row of run `run` that does not decode.
pub(crate) fn corrupt(run: &str, message: String) -> EngineError {
    EngineError::Corrupt {
        run: run.to_owned(),
        message,
    }
}

/// Column `name` of run `run`, parsed as JSON.
pub(crate) fn json(run: &str, name: &str, text: &str) -> Result<serde_json::Value, EngineError> {
    serde_json::from_str(text)
        .map_err(|e| corrupt(run, format!("column `{name}` is not valid JSON: {e}")))
}

/// Column `name` of run `run` as a narrower integer.
pub(crate) fn number<T: TryFrom<i64>>(run: &str, name: &str, value: i64) -> Result<T, EngineError> {
    T::try_from(value)
        .map_err(|_| corrupt(run, format!("column `{name}`: {value} is out of range")))
}

/// Column `name` of run `run`: microseconds since the Unix epoch, as a time.
pub(crate) fn timestamp(run: &str, name: &str, micros: i64) -> Result<DateTime<Utc>, EngineError> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| {
        corrupt(
            run,
            format!("column `{name}`: {micros} µs is not a valid time"),
        )
    })
}

/// A timestamp as stored: microseconds since the Unix epoch (finer parts truncated).
pub(crate) fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// A fencing token as stored (tokens beyond `i64::MAX` saturate; they never get there).
pub(crate) fn fence_param(fence: u64) -> i64 {
    i64::try_from(fence).unwrap_or(i64::MAX)
}
