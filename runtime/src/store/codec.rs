//! How the SQL stores encode what they keep, and the one place rows are decoded: timestamps
//! as `i64` microseconds since the Unix epoch (UTC), fencing tokens as `i64`, statuses,
//! triggers and event kinds as their `as_str()` text, JSON values as JSON text; the
//! decoding of a run row ([`decode_run`]) and of a log's event rows ([`EventLog`]), with
//! the errors for rows that do not decode, each naming the run ([`EngineError::Corrupt`]);
//! lease rows ([`lease`], [`held_elsewhere`]); and why an append was refused
//! ([`append_refusal`]). Shared by the SQLite and Postgres stores, which read their
//! result rows through [`SqlRow`].

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use super::{Acquired, Lease, RunTriage, StoreError, StoreErrorKind};
use crate::EngineError;
use crate::event::{Event, EventKind, NewEvent, RunId, RunRecord, RunStatus, Trigger};

/// One result row of a SQL store, read by column position. Each method reads the column
/// as that SQL type and fails (with the driver's error) when its value is not one; the
/// decoders here turn that failure into [`EngineError::Corrupt`] naming the run and the
/// column.
pub(crate) trait SqlRow {
    /// The driver's error for a column that cannot be read as the type asked for.
    type Error: fmt::Display;

    /// A `TEXT` column that is never NULL.
    fn text(&self, index: usize) -> Result<String, Self::Error>;
    /// A `TEXT` column that may be NULL.
    fn opt_text(&self, index: usize) -> Result<Option<String>, Self::Error>;
    /// An integer column (`INTEGER`, `BIGINT`) that is never NULL.
    fn int(&self, index: usize) -> Result<i64, Self::Error>;
    /// An integer column that may be NULL.
    fn opt_int(&self, index: usize) -> Result<Option<i64>, Self::Error>;
    /// A boolean column (SQLite: an integer, 0 or 1).
    fn boolean(&self, index: usize) -> Result<bool, Self::Error>;
}

/// The select list of a run row, in the order [`decode_run`] reads it; `as_text` follows
/// each JSON column (`"::text"` on Postgres, where they are `json`; `""` on SQLite).
pub(crate) fn run_columns(as_text: &str) -> String {
    format!(
        r#"id, workflow, status, input{as_text}, output{as_text}, error{as_text}, attempt,
           "trigger", created_at, updated_at, wake_at, next_seq,
           queue, queue_key, priority, admitted_at"#
    )
}

/// The select list of an event row, in the order [`EventLog::push`] reads it; `as_text`
/// as for [`run_columns`].
pub(crate) fn event_columns(as_text: &str) -> String {
    format!("seq, kind, correlation_id, attempt, at, payload{as_text}")
}

/// A row of run `run` that does not decode.
pub(crate) fn corrupt(run: &str, message: String) -> EngineError {
    EngineError::Corrupt {
        run: run.to_owned(),
        message,
    }
}

/// Column `name` of run `run`, as read by the driver.
pub(crate) fn column<T, E: fmt::Display>(
    run: &str,
    name: &str,
    read: Result<T, E>,
) -> Result<T, EngineError> {
    read.map_err(|e| corrupt(run, format!("column `{name}`: {e}")))
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

/// A row of `workflow, status, runs, due` (a `GROUP BY workflow, status` count) as a
/// [`super::RunCount`].
///
/// # Errors
/// [`EngineError::Corrupt`] naming the column: wrong type, unknown status, negative count.
pub(crate) fn decode_run_count(row: &impl SqlRow) -> Result<super::RunCount, EngineError> {
    let what = "<run counts>";
    let workflow = column(what, "workflow", row.text(0))?;
    let status = column(what, "status", row.text(1))?;
    let count = |index: usize, name: &str| -> Result<u64, EngineError> {
        let n = column(what, name, row.opt_int(index))?.unwrap_or(0);
        u64::try_from(n).map_err(|_| corrupt(what, format!("column `{name}`: {n} is negative")))
    };
    Ok(super::RunCount {
        status: RunStatus::from_str(&status)
            .map_err(|message| corrupt(what, format!("column `status`: {message}")))?,
        runs: count(2, "runs")?,
        due: count(3, "due")?,
        workflow,
    })
}

/// A run row (the columns of [`run_columns`], in that order) as a [`RunRecord`].
///
/// # Errors
/// [`EngineError::Corrupt`] naming the run (or `<unreadable id>`) and the column: a
/// column of the wrong type, an unknown status or trigger, invalid JSON, an out-of-range
/// number or time.
pub(crate) fn decode_run(row: &impl SqlRow) -> Result<RunRecord, EngineError> {
    let id = column("<unreadable id>", "id", row.text(0))?;
    let run = id.as_str();
    let status = column(run, "status", row.text(2))?;
    let trigger = column(run, "trigger", row.text(7))?;
    let output = column(run, "output", row.opt_text(4))?;
    let error = column(run, "error", row.opt_text(5))?;
    let wake_at = column(run, "wake_at", row.opt_int(10))?;
    Ok(RunRecord {
        workflow: column(run, "workflow", row.text(1))?,
        status: RunStatus::from_str(&status)
            .map_err(|message| corrupt(run, format!("column `status`: {message}")))?,
        input: json(run, "input", &column(run, "input", row.text(3))?)?,
        output: output.map(|text| json(run, "output", &text)).transpose()?,
        // JSON null is a cleared error (a retried run).
        error: error
            .map(|text| json(run, "error", &text))
            .transpose()?
            .filter(|error| !error.is_null()),
        attempt: number(run, "attempt", column(run, "attempt", row.int(6))?)?,
        trigger: serde_json::from_value::<Trigger>(serde_json::Value::String(trigger.clone()))
            .map_err(|_| {
                corrupt(
                    run,
                    format!("column `trigger`: unknown trigger `{trigger}`"),
                )
            })?,
        created_at: timestamp(run, "created_at", column(run, "created_at", row.int(8))?)?,
        updated_at: timestamp(run, "updated_at", column(run, "updated_at", row.int(9))?)?,
        wake_at: wake_at.map(|w| timestamp(run, "wake_at", w)).transpose()?,
        next_seq: number(run, "next_seq", column(run, "next_seq", row.int(11))?)?,
        queue: decode_queue(run, row, 12)?,
        id: RunId(id),
    })
}

/// The run's queue from the columns `queue, queue_key, priority, admitted_at` starting
/// at `first` (see [`run_columns`]); `None` when `queue` is NULL.
///
/// # Errors
/// [`EngineError::Corrupt`] naming the run and the column.
pub(crate) fn decode_queue(
    run: &str,
    row: &impl SqlRow,
    first: usize,
) -> Result<Option<crate::event::RunQueue>, EngineError> {
    let Some(name) = column(run, "queue", row.opt_text(first))? else {
        return Ok(None);
    };
    let priority = column(run, "priority", row.opt_int(first + 2))?.unwrap_or(0);
    let admitted_at = column(run, "admitted_at", row.opt_int(first + 3))?;
    Ok(Some(crate::event::RunQueue {
        name,
        key: column(run, "queue_key", row.opt_text(first + 1))?,
        priority: i32::try_from(priority).map_err(|_| {
            corrupt(
                run,
                format!("column `priority`: {priority} is out of range"),
            )
        })?,
        admitted_at: admitted_at
            .map(|t| timestamp(run, "admitted_at", t))
            .transpose()?,
    }))
}

/// The queue columns of a new run: `(queue, queue_key, priority)`, all NULL/0 for a run
/// in no queue.
pub(crate) fn encode_queue(
    queue: Option<&crate::event::RunQueue>,
) -> (Option<String>, Option<String>, i64) {
    match queue {
        Some(q) => (Some(q.name.clone()), q.key.clone(), i64::from(q.priority)),
        None => (None, None, 0),
    }
}

/// The select list of [`decode_triage`] for run `$1`/`?1` (`param`), from the run table
/// `runs` and its event table `events`: `next_seq`, `status`, `workflow`, `attempt` and
/// the number of `run_deferred` events after the log's last event of another kind.
pub(crate) fn triage_sql(runs: &str, events: &str, param: &str) -> String {
    format!(
        "SELECT next_seq, status, workflow, attempt,
                (SELECT COUNT(*) FROM {events}
                  WHERE run_id = {param} AND kind = 'run_deferred'
                    AND seq > COALESCE((SELECT MAX(seq) FROM {events}
                                         WHERE run_id = {param} AND kind <> 'run_deferred'),
                                       -1))
           FROM {runs} WHERE id = {param}"
    )
}

/// A row of [`triage_sql`] as a [`RunTriage`]: only `next_seq` must decode; an unknown
/// status is `None`, an unreadable workflow empty, an out-of-range attempt 0.
///
/// # Errors
/// [`EngineError::Corrupt`] naming the run when `next_seq` cannot be read.
pub(crate) fn decode_triage(run: &str, row: &impl SqlRow) -> Result<RunTriage, EngineError> {
    let next_seq = column(run, "next_seq", row.int(0))?;
    Ok(RunTriage {
        next_seq: number(run, "next_seq", next_seq)?,
        status: row.text(1).ok().and_then(|s| RunStatus::from_str(&s).ok()),
        workflow: row.text(2).unwrap_or_default(),
        attempt: row
            .int(3)
            .ok()
            .and_then(|a| u32::try_from(a).ok())
            .unwrap_or(0),
        deferrals: row
            .int(4)
            .ok()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(u32::MAX),
    })
}

/// The events of one run, decoded row by row in `seq` order: each row must be the next
/// sequence number, so a gap is an error too.
pub(crate) struct EventLog<'a> {
    run_id: &'a RunId,
    events: Vec<Event>,
}

impl<'a> EventLog<'a> {
    /// An empty log of run `run_id`, with room for `capacity` events.
    pub(crate) fn new(run_id: &'a RunId, capacity: usize) -> Self {
        Self {
            run_id,
            events: Vec::with_capacity(capacity),
        }
    }

    /// Decodes the next event row (the columns of [`event_columns`], in that order).
    ///
    /// # Errors
    /// [`EngineError::Corrupt`] naming the run: a column of the wrong type, an unknown
    /// event kind, invalid JSON, an out-of-range number or time, a sequence number that
    /// is not the next one.
    pub(crate) fn push(&mut self, row: &impl SqlRow) -> Result<(), EngineError> {
        let event = decode_event(self.run_id, row)?;
        let expected = self.events.len() as u64;
        if event.seq != expected {
            return Err(corrupt(
                self.run_id.as_str(),
                format!(
                    "event sequence has a gap: expected {expected}, found {}",
                    event.seq
                ),
            ));
        }
        self.events.push(event);
        Ok(())
    }

    /// The events decoded.
    pub(crate) fn finish(self) -> Vec<Event> {
        self.events
    }
}

fn decode_event(run_id: &RunId, row: &impl SqlRow) -> Result<Event, EngineError> {
    let run = run_id.as_str();
    let kind = column(run, "events.kind", row.text(1))?;
    Ok(Event {
        run_id: run_id.clone(),
        seq: number(run, "events.seq", column(run, "events.seq", row.int(0))?)?,
        event: NewEvent {
            kind: EventKind::parse(&kind)
                .ok_or_else(|| corrupt(run, format!("unknown event kind `{kind}`")))?,
            correlation_id: column(run, "events.correlation_id", row.opt_text(2))?,
            attempt: number(
                run,
                "events.attempt",
                column(run, "events.attempt", row.int(3))?,
            )?,
            at: timestamp(run, "events.at", column(run, "events.at", row.int(4))?)?,
            payload: json(
                run,
                "events.payload",
                &column(run, "events.payload", row.text(5))?,
            )?,
        },
    })
}

/// The value of cursor `name`, stored as JSON text.
///
/// # Errors
/// [`EngineError::Corrupt`] naming the cursor when the text is not JSON.
pub(crate) fn cursor(name: &str, text: &str) -> Result<serde_json::Value, EngineError> {
    json(&format!("<cursor {name}>"), "cursors.value", text)
}

/// The earliest wake-up time, as stored (see `Store::next_wake`).
///
/// # Errors
/// [`EngineError::Corrupt`] when it is not a valid time.
pub(crate) fn next_wake(micros: Option<i64>) -> Result<Option<DateTime<Utc>>, EngineError> {
    micros
        .map(|t| timestamp("<next wake-up>", "wake_at", t))
        .transpose()
}

/// A run row's lease columns, `(lease_owner, lease_expires_at)`, read from `row` at
/// positions `first` and `first + 1`.
pub(crate) fn lease_holder(
    run: &str,
    row: &impl SqlRow,
    first: usize,
) -> Result<(Option<String>, Option<i64>), EngineError> {
    Ok((
        column(run, "lease_owner", row.opt_text(first))?,
        column(run, "lease_expires_at", row.opt_int(first + 1))?,
    ))
}

/// When `owner` asks for the lease of run `run` at `now` (microseconds) and the run's row
/// holds `holder` until `until`: [`Acquired::HeldBy`] when another owner holds an
/// unexpired lease, else `None` (the caller takes the lease).
pub(crate) fn held_elsewhere(
    run: &str,
    owner: &str,
    now: i64,
    (holder, until): (Option<String>, Option<i64>),
) -> Result<Option<Acquired>, EngineError> {
    match (holder, until) {
        (Some(holder), Some(until)) if until > now && holder != owner => {
            Ok(Some(Acquired::HeldBy {
                owner: holder,
                expires_at: timestamp(run, "lease_expires_at", until)?,
            }))
        }
        _ => Ok(None),
    }
}

/// The lease of run `run` just taken by `owner`: the row's new `fence` and
/// `cancel_requested` and `pause_requested`, read from `row` at positions `first`,
/// `first + 1` and `first + 2`, and the
/// expiry it was given (microseconds).
pub(crate) fn lease(
    run: &str,
    owner: &str,
    expires_at: i64,
    row: &impl SqlRow,
    first: usize,
) -> Result<Lease, EngineError> {
    let fence = column(run, "fence", row.int(first))?;
    Ok(Lease {
        run_id: RunId(run.to_owned()),
        owner: owner.to_owned(),
        fence: number(run, "fence", fence)?,
        expires_at: timestamp(run, "lease_expires_at", expires_at)?,
        cancel_requested: column(run, "cancel_requested", row.boolean(first + 1))?,
        pause_requested: column(run, "pause_requested", row.opt_text(first + 2))?,
    })
}

/// `lease` renewed until `expires_at` (microseconds), with the row's `cancel_requested`
/// and `pause_requested` (read from `row` at positions `index` and `index + 1`).
pub(crate) fn renewed(
    lease: &Lease,
    expires_at: i64,
    row: &impl SqlRow,
    index: usize,
) -> Result<Lease, EngineError> {
    let run = lease.run_id.as_str();
    Ok(Lease {
        expires_at: timestamp(run, "lease_expires_at", expires_at)?,
        cancel_requested: column(run, "cancel_requested", row.boolean(index))?,
        pause_requested: column(run, "pause_requested", row.opt_text(index + 1))?,
        ..lease.clone()
    })
}

/// The error for a run created under an id that exists already.
pub(crate) fn run_exists(run: &str) -> EngineError {
    StoreError::new(
        StoreErrorKind::Constraint,
        format!("run `{run}` already exists"),
    )
    .with_run(run)
    .into()
}

/// The run row an append is checked against: `next_seq`, the fencing token, and whether a
/// lease is held.
pub(crate) type AppendTarget = (i64, i64, bool);

/// The [`AppendTarget`] of run `run` from a row of `next_seq, fence, lease_owner IS NOT
/// NULL`.
pub(crate) fn append_target(run: &str, row: &impl SqlRow) -> Result<AppendTarget, EngineError> {
    Ok((
        column(run, "next_seq", row.int(0))?,
        column(run, "fence", row.int(1))?,
        column(run, "lease_owner", row.boolean(2))?,
    ))
}

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
        Ok(_) => StoreError::new(
            StoreErrorKind::Busy,
            format!("cannot append to run `{run}`: it changed concurrently"),
        )
        .with_run(run)
        .into(),
        Err(_) => corrupt(run, format!("negative next_seq {next_seq}")),
    }
}

/// The select list of an inbox message row, in the order [`decode_message`] reads it;
/// `as_text` as for [`run_columns`].
pub(crate) fn message_columns(as_text: &str) -> String {
    format!("seq, channel, payload{as_text}, dedupe, created_at")
}

/// A message of run `run`'s inbox, from a row of [`message_columns`].
///
/// # Errors
/// [`EngineError::Corrupt`] naming the run and the column when a column does not decode
/// (a negative `seq`, invalid JSON, an invalid time).
pub(crate) fn decode_message(
    run: &str,
    row: &impl SqlRow,
) -> Result<crate::message::Message, EngineError> {
    Ok(crate::message::Message {
        seq: number(
            run,
            "messages.seq",
            column(run, "messages.seq", row.int(0))?,
        )?,
        channel: column(run, "messages.channel", row.text(1))?,
        payload: json(
            run,
            "messages.payload",
            &column(run, "messages.payload", row.text(2))?,
        )?,
        dedupe: column(run, "messages.dedupe", row.opt_text(3))?,
        at: timestamp(
            run,
            "messages.created_at",
            column(run, "messages.created_at", row.int(4))?,
        )?,
    })
}

/// An inbox position (`seq`) as stored: `after` bounds beyond `i64::MAX` saturate (no
/// message is numbered that high).
pub(crate) fn seq_param(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A row of plain values, as a driver would return them.
    #[derive(Clone)]
    enum Cell {
        Null,
        Text(&'static str),
        Int(i64),
    }

    struct FakeRow(Vec<Cell>);

    impl FakeRow {
        fn cell(&self, index: usize) -> Result<&Cell, String> {
            self.0
                .get(index)
                .ok_or_else(|| format!("no column {index}"))
        }
    }

    impl SqlRow for FakeRow {
        type Error = String;

        fn text(&self, index: usize) -> Result<String, String> {
            match self.cell(index)? {
                Cell::Text(text) => Ok((*text).to_owned()),
                _ => Err(format!("column {index} is not text")),
            }
        }

        fn opt_text(&self, index: usize) -> Result<Option<String>, String> {
            match self.cell(index)? {
                Cell::Null => Ok(None),
                _ => self.text(index).map(Some),
            }
        }

        fn int(&self, index: usize) -> Result<i64, String> {
            match self.cell(index)? {
                Cell::Int(n) => Ok(*n),
                _ => Err(format!("column {index} is not an integer")),
            }
        }

        fn opt_int(&self, index: usize) -> Result<Option<i64>, String> {
            match self.cell(index)? {
                Cell::Null => Ok(None),
                _ => self.int(index).map(Some),
            }
        }

        fn boolean(&self, index: usize) -> Result<bool, String> {
            self.int(index).map(|n| n != 0)
        }
    }

    fn run_row() -> Vec<Cell> {
        use Cell::*;
        vec![
            Text("r1"),
            Text("signup"),
            Text("completed"),
            Text(r#"{"email":"a@b.c"}"#),
            Text("42"),
            Null,
            Int(1),
            Text("api"),
            Int(1_000_000),
            Int(2_000_000),
            Null,
            Int(3),
            Text("llm"),
            Text("cust-1"),
            Int(-2),
            Int(1_500_000),
        ]
    }

    fn corrupt_message(result: Result<impl fmt::Debug, EngineError>) -> (String, String) {
        match result {
            Err(EngineError::Corrupt { run, message }) => (run, message),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn message_rows_decode_and_a_bad_one_names_the_run_and_the_column() {
        use Cell::*;
        let row = |seq, payload| {
            FakeRow(vec![
                Int(seq),
                Text("signal:paid"),
                Text(payload),
                Null,
                Int(5),
            ])
        };
        let message = decode_message("r1", &row(2, r#"{"n":1}"#)).expect("decodes");
        assert_eq!(message.seq, 2);
        assert_eq!(message.channel, "signal:paid");
        assert_eq!(message.payload, json!({"n": 1}));
        assert_eq!(message.dedupe, None);
        assert_eq!(message.at.timestamp_micros(), 5);
        let (run, text) = corrupt_message(decode_message("r1", &row(3, "{not json")));
        assert_eq!(run, "r1");
        assert!(text.contains("messages.payload"), "{text}");
        let (_, text) = corrupt_message(decode_message("r1", &row(-1, "1")));
        assert!(
            text.contains("messages.seq") && text.contains("-1"),
            "{text}"
        );
    }

    #[test]
    fn a_run_row_decodes() {
        let record = decode_run(&FakeRow(run_row())).expect("decodes");
        assert_eq!(record.id, RunId::from("r1"));
        let queue = record.queue.clone().expect("in a queue");
        assert_eq!(
            (queue.name.as_str(), queue.key.as_deref(), queue.priority),
            ("llm", Some("cust-1"), -2)
        );
        assert_eq!(
            queue.admitted_at.map(|t| t.timestamp_micros()),
            Some(1_500_000)
        );
        assert_eq!(record.workflow, "signup");
        assert_eq!(record.status, RunStatus::Completed);
        assert_eq!(record.input, json!({ "email": "a@b.c" }));
        assert_eq!(record.output, Some(json!(42)));
        assert_eq!(record.error, None);
        assert_eq!(record.attempt, 1);
        assert_eq!(record.trigger, Trigger::Api);
        assert_eq!(
            record.created_at,
            timestamp("r1", "t", 1_000_000).expect("a time")
        );
        assert_eq!(record.wake_at, None);
        assert_eq!(record.next_seq, 3);
    }

    #[test]
    fn corrupt_run_rows_are_errors_naming_the_run_and_the_column() {
        let cases: [(usize, Cell, &str); 8] = [
            (2, Cell::Text("exploded"), "`status`"),
            (
                7,
                Cell::Text("carrier-pigeon"),
                "unknown trigger `carrier-pigeon`",
            ),
            (3, Cell::Text("{not json"), "`input` is not valid JSON"),
            (4, Cell::Int(7), "column `output`"),
            (6, Cell::Int(-1), "`attempt`: -1 is out of range"),
            (6, Cell::Text("one"), "column `attempt`"),
            (10, Cell::Int(i64::MAX), "`wake_at`"),
            (11, Cell::Null, "column `next_seq`"),
        ];
        for (index, cell, needle) in cases {
            let mut row = run_row();
            row[index] = cell;
            let (run, message) = corrupt_message(decode_run(&FakeRow(row)));
            assert_eq!(run, "r1", "{message}");
            assert!(message.contains(needle), "{needle}: {message}");
        }
        // Without a readable id, the error still says which column failed.
        let mut row = run_row();
        row[0] = Cell::Null;
        let (run, message) = corrupt_message(decode_run(&FakeRow(row)));
        assert_eq!(run, "<unreadable id>");
        assert!(message.contains("column `id`"), "{message}");
    }

    fn event_row(seq: i64, kind: &'static str, payload: &'static str) -> FakeRow {
        use Cell::*;
        FakeRow(vec![
            Int(seq),
            Text(kind),
            Text("s#0"),
            Int(1),
            Int(5),
            Text(payload),
        ])
    }

    #[test]
    fn event_rows_decode_in_order_and_a_gap_or_bad_row_names_the_run() {
        let id = RunId::from("r2");
        let mut log = EventLog::new(&id, 2);
        log.push(&event_row(0, "run_created", "{}")).expect("first");
        log.push(&event_row(1, "step_completed", r#"{"output":1}"#))
            .expect("second");
        let events = log.finish();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].seq, 1);
        assert_eq!(events[1].event.kind, EventKind::StepCompleted);
        assert_eq!(events[1].event.correlation_id.as_deref(), Some("s#0"));
        assert_eq!(events[1].event.payload, json!({ "output": 1 }));

        let cases = [
            (
                event_row(1, "run_created", "{}"),
                "gap: expected 0, found 1",
            ),
            (
                event_row(0, "run_exploded", "{}"),
                "unknown event kind `run_exploded`",
            ),
            (
                event_row(0, "run_created", "nope"),
                "`events.payload` is not valid JSON",
            ),
            (
                event_row(-1, "run_created", "{}"),
                "`events.seq`: -1 is out of range",
            ),
        ];
        for (row, needle) in cases {
            let mut log = EventLog::new(&id, 1);
            let (run, message) = corrupt_message(log.push(&row));
            assert_eq!(run, "r2", "{message}");
            assert!(message.contains(needle), "{needle}: {message}");
        }
    }

    #[test]
    fn leases_decode_and_a_live_lease_of_another_owner_is_reported() {
        let row = FakeRow(vec![Cell::Int(4), Cell::Int(1), Cell::Null]);
        let lease = lease("r3", "w1", 9_000_000, &row, 0).expect("lease");
        assert_eq!(lease.fence, 4);
        assert!(lease.cancel_requested);
        assert_eq!(lease.pause_requested, None);
        assert_eq!(lease.owner, "w1");
        let row = FakeRow(vec![Cell::Int(-4), Cell::Int(0), Cell::Null]);
        let (run, message) = corrupt_message(super::lease("r3", "w1", 0, &row, 0));
        assert_eq!(run, "r3");
        assert!(message.contains("`fence`"), "{message}");

        let held = held_elsewhere("r3", "w1", 10, (Some("w2".into()), Some(20))).expect("valid");
        assert!(matches!(held, Some(Acquired::HeldBy { ref owner, .. }) if owner == "w2"));
        // Expired, or held by the same owner: the caller takes it.
        assert!(
            held_elsewhere("r3", "w1", 20, (Some("w2".into()), Some(20)))
                .expect("valid")
                .is_none()
        );
        assert!(
            held_elsewhere("r3", "w1", 10, (Some("w1".into()), Some(20)))
                .expect("valid")
                .is_none()
        );
        assert!(
            held_elsewhere("r3", "w1", 10, (None, None))
                .expect("valid")
                .is_none()
        );
    }

    #[test]
    fn an_unchanged_row_refusing_an_append_is_a_busy_store_error_naming_the_run() {
        let error = append_refusal("r4", 3, Some(2), Some((3, 2, true)));
        let store = error.store_error().expect("a store error");
        assert_eq!(store.kind(), StoreErrorKind::Busy);
        assert_eq!(store.run(), Some("r4"));
        assert!(error.to_string().contains("run `r4`"), "{error}");
        assert!(matches!(
            append_refusal("r4", 3, Some(2), Some((5, 2, true))),
            EngineError::Conflict { found: 5, .. }
        ));
        assert!(matches!(
            append_refusal("r4", 3, Some(2), Some((3, 3, true))),
            EngineError::LeaseLost { .. }
        ));
        assert!(matches!(
            append_refusal("r4", 3, None, None),
            EngineError::UnknownRun(_)
        ));
    }
}
