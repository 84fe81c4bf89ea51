//! The `reprise_documents` table of the Postgres store (migration 9): see
//! [`crate::store::Document`].

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use super::{PostgresStore, pg};
use crate::EngineError;
use crate::store::codec::{self, micros};
use crate::store::{Document, Put};

const COLUMNS: &str = "kind, key, value::text, created_at, updated_at FROM reprise_documents";

impl PostgresStore {
    /// Writes a document as `mode` says: whether a row was written.
    pub(super) async fn document_put(
        &self,
        kind: &str,
        key: &str,
        value: &serde_json::Value,
        mode: Put,
        now: DateTime<Utc>,
    ) -> Result<bool, EngineError> {
        let what = "cannot store document";
        let text = serde_json::to_string(value)?;
        let sql = match mode {
            Put::Create => {
                "INSERT INTO reprise_documents (kind, key, value, created_at, updated_at)
                 VALUES ($1::text, $2::text, $3::text::jsonb, $4::bigint, $4::bigint)
                 ON CONFLICT (kind, key) DO NOTHING"
            }
            Put::Replace => {
                "UPDATE reprise_documents SET value = $3::text::jsonb, updated_at = $4::bigint
                 WHERE kind = $1::text AND key = $2::text"
            }
            Put::Upsert => {
                "INSERT INTO reprise_documents (kind, key, value, created_at, updated_at)
                 VALUES ($1::text, $2::text, $3::text::jsonb, $4::bigint, $4::bigint)
                 ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value,
                                                      updated_at = excluded.updated_at"
            }
        };
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(|e| pg(what, e))?;
        let changed = client
            .execute(&stmt, &[&kind, &key, &text, &micros(now)])
            .await
            .map_err(|e| pg(what, e))?;
        Ok(changed > 0)
    }

    /// The document (`kind`, `key`).
    pub(super) async fn document_one(
        &self,
        kind: &str,
        key: &str,
    ) -> Result<Option<Document>, EngineError> {
        let what = "cannot read document";
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {COLUMNS} WHERE kind = $1::text AND key = $2::text"
            ))
            .await
            .map_err(|e| pg(what, e))?;
        let row = client
            .query_opt(&stmt, &[&kind, &key])
            .await
            .map_err(|e| pg(what, e))?;
        row.map(|row| decode(what, &row)).transpose()
    }

    /// The documents of `kind` whose key starts with `prefix`, by key.
    pub(super) async fn document_prefix(
        &self,
        kind: &str,
        prefix: &str,
    ) -> Result<Vec<Document>, EngineError> {
        let what = "cannot read documents";
        let client = self.client().await?;
        // `left(..)` rather than LIKE: keys may hold `%` and `_`; `COLLATE "C"` orders by
        // bytes, as the other stores do.
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {COLUMNS} WHERE kind = $1::text
                   AND left(key, length($2::text)) = $2::text ORDER BY key COLLATE \"C\""
            ))
            .await
            .map_err(|e| pg(what, e))?;
        let rows = client
            .query(&stmt, &[&kind, &prefix])
            .await
            .map_err(|e| pg(what, e))?;
        rows.iter().map(|row| decode(what, row)).collect()
    }

    /// Deletes the document (`kind`, `key`): whether there was one.
    pub(super) async fn document_delete(&self, kind: &str, key: &str) -> Result<bool, EngineError> {
        let what = "cannot delete document";
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "DELETE FROM reprise_documents WHERE kind = $1::text AND key = $2::text",
            )
            .await
            .map_err(|e| pg(what, e))?;
        let changed = client
            .execute(&stmt, &[&kind, &key])
            .await
            .map_err(|e| pg(what, e))?;
        Ok(changed > 0)
    }
}

fn decode(what: &str, row: &Row) -> Result<Document, EngineError> {
    let get = |e: tokio_postgres::Error| pg(what, e);
    let kind: String = row.try_get(0).map_err(get)?;
    let key: String = row.try_get(1).map_err(get)?;
    let label = format!("<document {kind}/{key}>");
    let value: String = row.try_get(2).map_err(get)?;
    Ok(Document {
        value: codec::json(&label, "reprise_documents.value", &value)?,
        created_at: codec::timestamp(
            &label,
            "reprise_documents.created_at",
            row.try_get(3).map_err(get)?,
        )?,
        updated_at: codec::timestamp(
            &label,
            "reprise_documents.updated_at",
            row.try_get(4).map_err(get)?,
        )?,
        kind,
        key,
    })
}
