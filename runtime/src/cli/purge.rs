//! `runs purge`: deletes ended runs (retention by hand); see [`Engine::purge_runs`].

use serde_json::json;

use super::EXIT_COMPLETED;
use crate::engine::{DEFAULT_BATCH, Engine, parse_before};
use crate::error::EngineError;
use crate::event::RunStatus;
use crate::store::PurgeFilter;

/// `runs purge --before <time|age> [--workflow] [--status] [--dry-run] [--json]`: prints
/// what it deleted (or would delete); exit 0, or 2 for a bad `--before` or an unfinished
/// `--status`.
pub(super) async fn purge(
    engine: &Engine,
    before: &str,
    workflow: Option<String>,
    status: Option<RunStatus>,
    dry_run: bool,
    json: bool,
) -> Result<u8, EngineError> {
    let by = super::cli_user();
    let filter = PurgeFilter {
        before: parse_before("--before", before, engine.now())?,
        workflow,
        status,
        limit: DEFAULT_BATCH,
        dry_run,
    };
    if let Err(message) = filter.check() {
        return Err(EngineError::InvalidRequest(
            message.replace("use status completed", "use --status completed"),
        ));
    }
    let report = engine.purge_runs(&filter, &by).await?;
    if json {
        println!("{}", json!(report));
        return Ok(EXIT_COMPLETED);
    }
    let cutoff = filter
        .before
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    if report.dry_run {
        println!(
            "dry run: {} ended run(s) last updated before {cutoff} would be deleted",
            report.count
        );
        for run in &report.runs {
            println!("  {}  {:<10} {}", run.run_id, run.status, run.workflow);
        }
        if report.count > report.runs.len() as u64 {
            println!("  … and {} more", report.count - report.runs.len() as u64);
        }
    } else {
        println!(
            "deleted {} ended run(s) last updated before {cutoff}, with their events",
            report.count
        );
        for (workflow, count) in &report.by_workflow {
            println!("  {workflow}: {count}");
        }
    }
    Ok(EXIT_COMPLETED)
}
