//! The `documents` table of the SQLite store (migration 11): see [`super::super::Document`].

use rusqlite::{Connection, OptionalExtension};

use super::{Reply, SqlContext};
use crate::EngineError;
use crate::store::codec;
use crate::store::{Document, Put};

/// A document write, applied by the writer thread.
pub(super) enum DocumentOp {
    Put {
        kind: String,
        key: String,
        value: String,
        mode: Put,
        at: i64,
    },
    Delete {
        kind: String,
        key: String,
    },
}

/// Applies `op`: [`Reply::Changed`] with whether a row was written or deleted.
pub(super) fn apply(conn: &Connection, op: &DocumentOp) -> Result<Reply, EngineError> {
    let what = "cannot store document";
    let changed = match op {
        DocumentOp::Put {
            kind,
            key,
            value,
            mode,
            at,
        } => {
            let sql = match mode {
                Put::Create => {
                    "INSERT INTO documents (kind, key, value, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT (kind, key) DO NOTHING"
                }
                Put::Replace => {
                    "UPDATE documents SET value = ?3, updated_at = ?4
                     WHERE kind = ?1 AND key = ?2"
                }
                Put::Upsert => {
                    "INSERT INTO documents (kind, key, value, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?4)
                     ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value,
                                                         updated_at = excluded.updated_at"
                }
            };
            conn.prepare_cached(sql)
                .ctx(what)?
                .execute(rusqlite::params![kind, key, value, at])
                .ctx(what)?
        }
        DocumentOp::Delete { kind, key } => conn
            .prepare_cached("DELETE FROM documents WHERE kind = ?1 AND key = ?2")
            .ctx("cannot delete document")?
            .execute([kind, key])
            .ctx("cannot delete document")?,
    };
    Ok(Reply::Changed(changed > 0))
}

const COLUMNS: &str = "kind, key, value, created_at, updated_at FROM documents";

/// The document (`kind`, `key`).
pub(super) fn read_one(
    conn: &Connection,
    kind: &str,
    key: &str,
) -> Result<Option<Document>, EngineError> {
    let what = "cannot read document";
    let raw = conn
        .prepare_cached(&format!("SELECT {COLUMNS} WHERE kind = ?1 AND key = ?2"))
        .ctx(what)?
        .query_row([kind, key], raw)
        .optional()
        .ctx(what)?;
    raw.map(decode).transpose()
}

/// The documents of `kind` whose key starts with `prefix`, by key.
pub(super) fn read_prefix(
    conn: &Connection,
    kind: &str,
    prefix: &str,
) -> Result<Vec<Document>, EngineError> {
    let what = "cannot read documents";
    // `substr` rather than LIKE: keys may hold `%` and `_`.
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} WHERE kind = ?1 AND key >= ?2
               AND substr(key, 1, length(?2)) = ?2 ORDER BY key"
        ))
        .ctx(what)?;
    let rows = stmt.query_map([kind, prefix], raw).ctx(what)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(decode(row.ctx(what)?)?);
    }
    Ok(out)
}

type Raw = (String, String, String, i64, i64);

fn raw(row: &rusqlite::Row<'_>) -> rusqlite::Result<Raw> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

fn decode(raw: Raw) -> Result<Document, EngineError> {
    let (kind, key, value, created_at, updated_at) = raw;
    let label = format!("<document {kind}/{key}>");
    Ok(Document {
        value: codec::json(&label, "documents.value", &value)?,
        created_at: codec::timestamp(&label, "documents.created_at", created_at)?,
        updated_at: codec::timestamp(&label, "documents.updated_at", updated_at)?,
        kind,
        key,
    })
}
