//! The `reprise_schedules` table of the Postgres store (migration 3): see
//! [`super::ScheduleRow`].

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use super::{PostgresStore, pg};
use crate::EngineError;
use crate::store::ScheduleRow;
use crate::store::codec::{self, micros};

const COLUMNS: &str = "name, definition::text, paused, created_at, created_by, updated_at, \
                       updated_by FROM reprise_schedules";

impl PostgresStore {
    /// Every schedule row, by name.
    pub(super) async fn schedules_all(&self) -> Result<Vec<ScheduleRow>, EngineError> {
        let what = "cannot read schedules";
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!("SELECT {COLUMNS} ORDER BY name"))
            .await
            .map_err(|e| pg(what, e))?;
        let rows = client.query(&stmt, &[]).await.map_err(|e| pg(what, e))?;
        rows.iter().map(|row| decode(what, row)).collect()
    }

    /// Schedule row `name`.
    pub(super) async fn schedule_one(
        &self,
        name: &str,
    ) -> Result<Option<ScheduleRow>, EngineError> {
        let what = "cannot read schedule";
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!("SELECT {COLUMNS} WHERE name = $1::text"))
            .await
            .map_err(|e| pg(what, e))?;
        let row = client
            .query_opt(&stmt, &[&name])
            .await
            .map_err(|e| pg(what, e))?;
        row.map(|row| decode(what, &row)).transpose()
    }

    /// Inserts (`create`) or updates `row`: whether a row changed.
    pub(super) async fn schedule_put(
        &self,
        row: &ScheduleRow,
        create: bool,
    ) -> Result<bool, EngineError> {
        let what = "cannot store schedule";
        let definition = row
            .definition
            .as_ref()
            .map(serde_json::to_string)
            .transpose()?;
        let client = self.client().await?;
        let changed = if create {
            let stmt = client
                .prepare_cached(
                    "INSERT INTO reprise_schedules (name, definition, paused, created_at,
                                                    created_by, updated_at, updated_by)
                     VALUES ($1::text, $2::text::json, $3::bool, $4::bigint, $5::text,
                             $6::bigint, $7::text)
                     ON CONFLICT (name) DO NOTHING",
                )
                .await
                .map_err(|e| pg(what, e))?;
            client
                .execute(
                    &stmt,
                    &[
                        &row.name,
                        &definition,
                        &row.paused,
                        &micros(row.created_at),
                        &row.created_by,
                        &micros(row.updated_at),
                        &row.updated_by,
                    ],
                )
                .await
                .map_err(|e| pg(what, e))?
        } else {
            let stmt = client
                .prepare_cached(
                    "UPDATE reprise_schedules
                        SET definition = $2::text::json, paused = $3::bool,
                            updated_at = $4::bigint, updated_by = $5::text
                      WHERE name = $1::text",
                )
                .await
                .map_err(|e| pg(what, e))?;
            client
                .execute(
                    &stmt,
                    &[
                        &row.name,
                        &definition,
                        &row.paused,
                        &micros(row.updated_at),
                        &row.updated_by,
                    ],
                )
                .await
                .map_err(|e| pg(what, e))?
        };
        Ok(changed > 0)
    }

    /// Deletes row `name`: whether it existed.
    pub(super) async fn schedule_delete(&self, name: &str) -> Result<bool, EngineError> {
        let what = "cannot delete schedule";
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("DELETE FROM reprise_schedules WHERE name = $1::text")
            .await
            .map_err(|e| pg(what, e))?;
        let changed = client
            .execute(&stmt, &[&name])
            .await
            .map_err(|e| pg(what, e))?;
        Ok(changed > 0)
    }

    /// Sets the paused state of `name`, creating a row without a definition if needed.
    pub(super) async fn schedule_set_paused(
        &self,
        name: &str,
        paused: bool,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        let what = "cannot store schedule";
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO reprise_schedules (name, definition, paused, created_at,
                                                created_by, updated_at, updated_by)
                 VALUES ($1::text, NULL, $2::bool, $3::bigint, $4::text, $3::bigint, $4::text)
                 ON CONFLICT (name) DO UPDATE SET paused = excluded.paused,
                                                  updated_at = excluded.updated_at,
                                                  updated_by = excluded.updated_by",
            )
            .await
            .map_err(|e| pg(what, e))?;
        client
            .execute(&stmt, &[&name, &paused, &micros(at), &by])
            .await
            .map_err(|e| pg(what, e))?;
        Ok(())
    }
}

fn decode(what: &str, row: &Row) -> Result<ScheduleRow, EngineError> {
    let get = |e: tokio_postgres::Error| pg(what, e);
    let name: String = row.try_get(0).map_err(get)?;
    let label = format!("<schedule {name}>");
    let definition: Option<String> = row.try_get(1).map_err(get)?;
    Ok(ScheduleRow {
        definition: definition
            .map(|text| codec::json(&label, "reprise_schedules.definition", &text))
            .transpose()?,
        paused: row.try_get(2).map_err(get)?,
        created_at: codec::timestamp(
            &label,
            "reprise_schedules.created_at",
            row.try_get(3).map_err(get)?,
        )?,
        created_by: row.try_get(4).map_err(get)?,
        updated_at: codec::timestamp(
            &label,
            "reprise_schedules.updated_at",
            row.try_get(5).map_err(get)?,
        )?,
        updated_by: row.try_get(6).map_err(get)?,
        name,
    })
}
