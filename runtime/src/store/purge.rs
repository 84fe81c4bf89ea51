//! What [`Store::purge_runs`](super::Store::purge_runs) takes and returns (issue 15 item 6,
//! "Retention"), and the rules every store follows:
//!
//! - only ended runs (`completed`, `failed`, `canceled`) are deleted, and that is decided
//!   by the delete statement itself (its `WHERE` names the ended statuses), so a run that a
//!   concurrent retry turns back to `queued` is never deleted;
//! - one call deletes at most [`PurgeFilter::limit`] runs, in one short transaction, so
//!   writers wait for at most one small batch;
//! - a run goes together with every row that depends on it: its events, its run keys, and
//!   whatever later tables hang off a run: the SQL stores delete them in one place
//!   (`delete_dependent_rows` in `sqlite.rs` and `postgres.rs`), extend it there.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::event::{RunId, RunStatus};

/// The statuses a purge may delete: the ended ones.
pub const PURGEABLE: [RunStatus; 3] =
    [RunStatus::Completed, RunStatus::Failed, RunStatus::Canceled];

/// The most runs one [`Store::purge_runs`](super::Store::purge_runs) call deletes when the
/// caller asks for more: 1,000 runs is one short transaction on either SQL store.
pub const MAX_PURGE_BATCH: usize = 1_000;

/// Which runs a purge deletes (or, with `dry_run`, counts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurgeFilter {
    /// Only runs last updated (`updated_at`, when they ended) strictly before this time.
    pub before: DateTime<Utc>,
    /// Only runs of this workflow slug.
    pub workflow: Option<String>,
    /// Only runs in this status; must be an ended one (see [`PurgeFilter::check`]).
    pub status: Option<RunStatus>,
    /// At most this many runs per call (clamped to 1..=[`MAX_PURGE_BATCH`]); in a dry run,
    /// at most this many are listed (all matching ones are counted).
    pub limit: usize,
    /// Delete nothing: count the matching runs and list the first `limit` of them.
    pub dry_run: bool,
}

impl PurgeFilter {
    /// A filter for ended runs last updated before `before`, of any workflow and ended
    /// status, in batches of 100, deleting.
    pub fn before(before: DateTime<Utc>) -> Self {
        PurgeFilter {
            before,
            workflow: None,
            status: None,
            limit: 100,
            dry_run: false,
        }
    }

    /// `Ok` unless `status` names a status that has not ended.
    ///
    /// # Errors
    /// The message to show, naming the status and the ones allowed.
    pub fn check(&self) -> Result<(), String> {
        match self.status {
            Some(status) if !status.is_terminal() => Err(format!(
                "a purge deletes ended runs only; `{status}` runs have not ended: use status \
                 completed, failed or canceled (or none for all three)"
            )),
            _ => Ok(()),
        }
    }

    /// The batch size a store uses: `limit` clamped to 1..=[`MAX_PURGE_BATCH`].
    pub fn batch(&self) -> usize {
        self.limit.clamp(1, MAX_PURGE_BATCH)
    }

    /// The statuses this filter matches: `status` if set and ended, else all ended ones
    /// (an unfinished `status` matches nothing).
    pub fn statuses(&self) -> Vec<RunStatus> {
        match self.status {
            Some(status) if status.is_terminal() => vec![status],
            Some(_) => Vec::new(),
            None => PURGEABLE.to_vec(),
        }
    }
}

/// One run a purge deleted (or, in a dry run, would delete).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PurgedRun {
    /// The run's id.
    pub run_id: RunId,
    /// Its workflow slug.
    pub workflow: String,
    /// Its status when deleted.
    pub status: RunStatus,
}

/// What one [`Store::purge_runs`](super::Store::purge_runs) call did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PurgeBatch {
    /// The runs deleted (at most the batch size), or in a dry run the first matching
    /// ones (at most the batch size), oldest update first.
    pub runs: Vec<PurgedRun>,
    /// How many runs were deleted; in a dry run, how many match in all.
    pub count: u64,
}

/// The statuses of `filter` as SQL text literals (`'completed', 'failed'`): fixed words,
/// never user text.
pub(crate) fn status_list(filter: &PurgeFilter) -> String {
    let statuses = filter.statuses();
    if statuses.is_empty() {
        // Matches nothing (no run has an empty status).
        return "''".to_owned();
    }
    statuses
        .iter()
        .map(|status| format!("'{}'", status.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The ended statuses as SQL text literals, for the re-check in the delete statement.
pub(crate) const ENDED_SQL: &str = "'completed', 'failed', 'canceled'";

/// A purged run from `id, workflow, status` columns (both SQL stores).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn purged_run(row: &impl super::codec::SqlRow) -> Result<PurgedRun, crate::EngineError> {
    use super::codec;
    let id: String = codec::column("<unreadable id>", "id", row.text(0))?;
    let workflow = codec::column(&id, "workflow", row.text(1))?;
    let status: String = codec::column(&id, "status", row.text(2))?;
    let status = status
        .parse()
        .map_err(|message| codec::corrupt(&id, format!("column `status`: {message}")))?;
    Ok(PurgedRun {
        run_id: RunId(id),
        workflow,
        status,
    })
}
