//! The `schedules` table of the SQLite store (migration 4): see [`super::ScheduleRow`].

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension};

use super::{Reply, SqlContext};
use crate::EngineError;
use crate::store::ScheduleRow;
use crate::store::codec::{self, micros};

/// A schedule write, applied by the writer thread.
pub(super) enum ScheduleOp {
    Create(Encoded),
    Update(Encoded),
    Delete(String),
    SetPaused {
        name: String,
        paused: bool,
        by: String,
        at: i64,
    },
}

/// A [`ScheduleRow`] as stored.
pub(super) struct Encoded {
    name: String,
    definition: Option<String>,
    paused: bool,
    created_at: i64,
    created_by: String,
    updated_at: i64,
    updated_by: String,
}

/// `row` as stored.
pub(super) fn encode(row: &ScheduleRow) -> Result<Encoded, EngineError> {
    Ok(Encoded {
        name: row.name.clone(),
        definition: row
            .definition
            .as_ref()
            .map(serde_json::to_string)
            .transpose()?,
        paused: row.paused,
        created_at: micros(row.created_at),
        created_by: row.created_by.clone(),
        updated_at: micros(row.updated_at),
        updated_by: row.updated_by.clone(),
    })
}

/// `SetPaused` of `name`.
pub(super) fn set_paused(name: &str, paused: bool, by: &str, at: DateTime<Utc>) -> ScheduleOp {
    ScheduleOp::SetPaused {
        name: name.to_owned(),
        paused,
        by: by.to_owned(),
        at: micros(at),
    }
}

/// Applies `op`: [`Reply::Changed`] with whether a row was created, updated or deleted.
pub(super) fn apply(conn: &Connection, op: &ScheduleOp) -> Result<Reply, EngineError> {
    let what = "cannot store schedule";
    let changed = match op {
        ScheduleOp::Create(row) => conn
            .prepare_cached(
                "INSERT INTO schedules (name, definition, paused, created_at, created_by,
                                        updated_at, updated_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (name) DO NOTHING",
            )
            .ctx(what)?
            .execute(rusqlite::params![
                row.name,
                row.definition,
                row.paused,
                row.created_at,
                row.created_by,
                row.updated_at,
                row.updated_by
            ])
            .ctx(what)?,
        ScheduleOp::Update(row) => conn
            .prepare_cached(
                "UPDATE schedules SET definition = ?2, paused = ?3, updated_at = ?4,
                                      updated_by = ?5
                 WHERE name = ?1",
            )
            .ctx(what)?
            .execute(rusqlite::params![
                row.name,
                row.definition,
                row.paused,
                row.updated_at,
                row.updated_by
            ])
            .ctx(what)?,
        ScheduleOp::Delete(name) => conn
            .prepare_cached("DELETE FROM schedules WHERE name = ?1")
            .ctx("cannot delete schedule")?
            .execute([name])
            .ctx("cannot delete schedule")?,
        ScheduleOp::SetPaused {
            name,
            paused,
            by,
            at,
        } => conn
            .prepare_cached(
                "INSERT INTO schedules (name, definition, paused, created_at, created_by,
                                        updated_at, updated_by)
                 VALUES (?1, NULL, ?2, ?3, ?4, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET paused = excluded.paused,
                                                  updated_at = excluded.updated_at,
                                                  updated_by = excluded.updated_by",
            )
            .ctx(what)?
            .execute(rusqlite::params![name, paused, at, by])
            .ctx(what)?,
    };
    Ok(Reply::Changed(changed > 0))
}

const COLUMNS: &str =
    "name, definition, paused, created_at, created_by, updated_at, updated_by FROM schedules";

/// Every row, by name.
pub(super) fn read_all(conn: &Connection) -> Result<Vec<ScheduleRow>, EngineError> {
    let what = "cannot read schedules";
    let mut stmt = conn
        .prepare_cached(&format!("SELECT {COLUMNS} ORDER BY name"))
        .ctx(what)?;
    let rows = stmt.query_map([], raw).ctx(what)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(decode(row.ctx(what)?)?);
    }
    Ok(out)
}

/// Row `name`.
pub(super) fn read_one(conn: &Connection, name: &str) -> Result<Option<ScheduleRow>, EngineError> {
    let what = "cannot read schedule";
    let raw = conn
        .prepare_cached(&format!("SELECT {COLUMNS} WHERE name = ?1"))
        .ctx(what)?
        .query_row([name], raw)
        .optional()
        .ctx(what)?;
    raw.map(decode).transpose()
}

type Raw = (String, Option<String>, bool, i64, String, i64, String);

fn raw(row: &rusqlite::Row<'_>) -> rusqlite::Result<Raw> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
    ))
}

fn decode(raw: Raw) -> Result<ScheduleRow, EngineError> {
    let (name, definition, paused, created_at, created_by, updated_at, updated_by) = raw;
    let label = format!("<schedule {name}>");
    Ok(ScheduleRow {
        definition: definition
            .map(|text| codec::json(&label, "schedules.definition", &text))
            .transpose()?,
        paused,
        created_at: codec::timestamp(&label, "schedules.created_at", created_at)?,
        created_by,
        updated_at: codec::timestamp(&label, "schedules.updated_at", updated_at)?,
        updated_by,
        name,
    })
}
