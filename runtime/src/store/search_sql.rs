//! The `SELECT` of a run listing ([`RunFilter`]) for the SQL stores: one builder, two
//! dialects (placeholders `?N` for SQLite, `$N::type` for Postgres).
//!
//! Plan: with a tag equality filter, the listing is driven by the tag index
//! (`key, value_type, value, created_at, run_id`): the matching runs come out of it newest
//! first, so a page reads `limit` index entries and as many run rows. Otherwise it walks
//! the runs by `created_at` (or `(status|workflow|queue, created_at)`), newest first. Other tag
//! filters (ranges, further equalities) are correlated probes of the tag table's primary
//! key `(run_id, key)`, one per candidate run. Order: `created_at DESC, id DESC`; the cursor continues strictly after
//! `(created_at, id)` of the previous page's last run.

use super::codec::micros;
use crate::event::RunFilter;
use crate::tags::{RunCursor, TagFilter, TagOp, TagValue};

/// A parameter of the statement.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Param {
    Text(String),
    Int(i64),
    Real(f64),
}

/// The SQL names of one store.
pub(crate) struct Dialect {
    /// The runs table.
    pub(crate) runs: &'static str,
    /// The tags table.
    pub(crate) tags: &'static str,
    /// Placeholder `n` (1-based) for a parameter like `param`.
    pub(crate) placeholder: fn(usize, &Param) -> String,
    /// The select list of a run row, qualified by alias `r`.
    pub(crate) columns: String,
}

struct Builder<'d> {
    dialect: &'d Dialect,
    params: Vec<Param>,
}

impl Builder<'_> {
    fn bind(&mut self, param: Param) -> String {
        let placeholder = (self.dialect.placeholder)(self.params.len() + 1, &param);
        self.params.push(param);
        placeholder
    }

    /// `alias.value_type = ? AND alias.<column> op ?` for a tag filter.
    fn tag_condition(&mut self, alias: &str, filter: &TagFilter) -> String {
        let key = self.bind(Param::Text(filter.key.clone()));
        let ty = self.bind(Param::Text(filter.value.type_name().to_owned()));
        let (column, value) = value_param(&filter.value);
        let value = self.bind(value);
        format!(
            "{alias}.key = {key} AND {alias}.value_type = {ty} AND {alias}.{column} {} {value}",
            filter.op.sql()
        )
    }
}

/// The tag table's column holding `value`'s type, and `value` as its parameter.
fn value_param(value: &TagValue) -> (&'static str, Param) {
    match value {
        TagValue::String(_) | TagValue::Bool(_) => {
            let (text, _) = value.index_columns();
            ("value_text", Param::Text(text.unwrap_or_default()))
        }
        TagValue::Number(n) => ("value_num", Param::Real(*n)),
        TagValue::Time(t) => ("value_num", Param::Real(t.timestamp_micros() as f64)),
    }
}

/// The statement and its parameters listing the runs `filter` selects.
pub(crate) fn list_sql(
    dialect: &Dialect,
    filter: &RunFilter,
    cursor: Option<&RunCursor>,
) -> (String, Vec<Param>) {
    let mut b = Builder {
        dialect,
        params: Vec::new(),
    };
    let driver = filter.tags.iter().position(|f| f.op == TagOp::Eq);
    // The table whose `created_at` orders the listing: the driving tag's index (it holds
    // the run's creation time) or the runs.
    let (order_table, order_id) = match driver {
        Some(_) => ("t0", "t0.run_id"),
        None => ("r", "r.id"),
    };
    let mut sql = format!("SELECT {} FROM {} r", dialect.columns, dialect.runs);
    let mut clauses = Vec::new();
    if let Some(i) = driver {
        sql.push_str(&format!(" JOIN {} t0 ON t0.run_id = r.id", dialect.tags));
        clauses.push(b.tag_condition("t0", &filter.tags[i]));
    }
    for (i, tag) in filter.tags.iter().enumerate() {
        if Some(i) == driver {
            continue;
        }
        // A correlated scalar subquery, not `EXISTS`: a planner cannot turn it into a
        // join over every run's tag (Postgres did, a hash semi-join reading all `amount`
        // tags), so each candidate run costs one probe of the primary key `(run_id, key)`
        // and the walk stops after `limit` matches.
        let key = b.bind(Param::Text(tag.key.clone()));
        let ty = b.bind(Param::Text(tag.value.type_name().to_owned()));
        let (column, value) = value_param(&tag.value);
        let value = b.bind(value);
        clauses.push(format!(
            "(SELECT t.{column} FROM {} t WHERE t.run_id = r.id AND t.key = {key} \
             AND t.value_type = {ty}) {} {value}",
            dialect.tags,
            tag.op.sql()
        ));
    }
    if let Some(status) = filter.status {
        let p = b.bind(Param::Text(status.as_str().to_owned()));
        clauses.push(format!("r.status = {p}"));
    }
    if let Some(workflow) = &filter.workflow {
        let p = b.bind(Param::Text(workflow.clone()));
        clauses.push(format!("r.workflow = {p}"));
    }
    if let Some(queue) = &filter.queue {
        let p = b.bind(Param::Text(queue.clone()));
        clauses.push(format!("r.queue = {p}"));
    }
    if let Some(t) = filter.created_after {
        let p = b.bind(Param::Int(micros(t)));
        clauses.push(format!("{order_table}.created_at >= {p}"));
    }
    if let Some(t) = filter.created_before {
        let p = b.bind(Param::Int(micros(t)));
        clauses.push(format!("{order_table}.created_at < {p}"));
    }
    if let Some(t) = filter.updated_after {
        let p = b.bind(Param::Int(micros(t)));
        clauses.push(format!("r.updated_at >= {p}"));
    }
    if let Some(t) = filter.updated_before {
        let p = b.bind(Param::Int(micros(t)));
        clauses.push(format!("r.updated_at < {p}"));
    }
    if let Some(cursor) = cursor {
        let at = b.bind(Param::Int(micros(cursor.created_at)));
        let at2 = b.bind(Param::Int(micros(cursor.created_at)));
        let id = b.bind(Param::Text(cursor.id.0.clone()));
        // The first term is a range on the index; the second breaks ties by id.
        clauses.push(format!(
            "{order_table}.created_at <= {at} AND ({order_table}.created_at < {at2} OR \
             {order_id} < {id})"
        ));
    }
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    sql.push_str(&format!(
        " ORDER BY {order_table}.created_at DESC, {order_id} DESC"
    ));
    if let Some(limit) = filter.limit {
        let p = b.bind(Param::Int(i64::try_from(limit).unwrap_or(i64::MAX)));
        sql.push_str(&format!(" LIMIT {p}"));
    }
    (sql, b.params)
}

/// A run row's select list qualified by alias `r` (see `codec::run_columns`).
pub(crate) fn qualified_run_columns(as_text: &str) -> String {
    format!(
        r#"r.id, r.workflow, r.status, r.input{as_text}, r.output{as_text}, r.error{as_text},
           r.attempt, r."trigger", r.created_at, r.updated_at, r.wake_at, r.next_seq,
           r.queue, r.queue_key, r.priority, r.admitted_at"#
    )
}
