//! How the SQL stores encode what they keep: timestamps as `i64` microseconds since the
//! Unix epoch (UTC), fencing tokens as `i64`, the errors for rows that do not decode,
//! each naming the run ([`EngineError::Corrupt`]), and why an append was refused. Shared
//! by the SQLite and Postgres stores.

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

/// The run row an append is checked against: `next_seq`, the fencing token, and whether a
/// lease is held.
pub(crate) type AppendTarget = (i64, i64, bool);

/// Why an append whose checked update changed nothing was refused, given the run's row as
/// it is now (`None`: no such run): its lease was lost, its log is not at `first_seq`, or
/// (neither, so it changed in between) a retryable store error.
pub(crate) fn append_refusal(
    run: &str,
    first_seq: u64,
    fence: Option<i64>,
    row: Option<AppendTarget>,
) -> EngineError {
    let Some((next_seq, current_fence, leased)) = row else {
        return EngineError::UnknownRun(run.to_owned());
    };
    if let Some(fence) = fence
        && (!leased || current_fence != fence)
    {
        return EngineError::LeaseLost {
            run: run.to_owned(),
        };
    }
    match u64::try_from(next_seq) {
        Ok(found) if found != first_seq => EngineError::Conflict {
            run: run.to_owned(),
            expected: first_seq,
            found,
        },
        Ok(_) => EngineError::Store(format!(
            "cannot append: run `{run}` changed concurrently; retry"
        )),
        Err(_) => corrupt(run, format!("negative next_seq {next_seq}")),
    }
}
