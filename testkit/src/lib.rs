//! Test tools for reprise workflows: prove a workflow's durability in `cargo test`.
//!
//! - [`TestEnv`]: an engine on a fresh store with a [`VirtualClock`]; `execute`, `advance`,
//!   `resume_hook`, `stub`, `calls`, `seed`, `log`; flow-control queues
//!   ([`TestEnvBuilder::queue`], `admit`, `start_with`) admitted as a worker admits them;
//!   workflow files ([`TestEnvBuilder::workflow_dir`]) run by slug (`run_slug`,
//!   `start_slug`) with actions stubbed by slug (`stub_slug`, `calls_of`); cron triggers fire
//!   on the virtual clock (`fire_triggers`).
//! - [`RunLog`]: a run's event log for assertions and snapshots; [`RunLog::redacted`] and
//!   [`assert_run_snapshot!`] turn it into an insta YAML snapshot that is identical across
//!   runs and machines.
//! - [`memory_engine`], [`TempDb`]: plain engines over fresh stores.
//! - [`completed_steps`], [`assert_each_step_recorded_once`]: log assertions.
//! - [`crash`]: crash-and-replay property checks ([`crash::check`], [`CrashPlan`]); by
//!   slug for workflow files ([`crash::check_slug`], [`CheckConfig::workflow_dir`]).

mod clock;
pub mod crash;
mod env;
pub mod http;
pub mod llm;
mod log;
pub mod replay;
mod snapshot;

pub use clock::VirtualClock;
pub use crash::{CheckConfig, CheckReport, CrashFailure, CrashPlan};
pub use env::{Call, Outcome, Pending, TestEnv, TestEnvBuilder, stubs};
pub use http::MockHttp;
pub use log::RunLog;
pub use replay::{Replay, ReplayFailure, ReplayReport};
pub use snapshot::RedactedEvent;

#[doc(hidden)]
pub use insta as __insta;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use reprise::event::{Event, EventKind};
use reprise::{Engine, EngineBuilder, EngineError};

/// An engine over a fresh in-memory store with every linked workflow, after `configure`.
///
/// # Errors
/// Registration or configuration errors.
pub fn memory_engine(
    configure: impl FnOnce(EngineBuilder) -> EngineBuilder,
) -> Result<Engine, EngineError> {
    configure(Engine::builder().discover()?).build()
}

/// A SQLite database in a temporary directory, deleted on drop.
#[derive(Debug)]
pub struct TempDb {
    dir: tempfile::TempDir,
}

impl TempDb {
    /// A new, empty directory for the database.
    ///
    /// # Errors
    /// When the temporary directory cannot be created.
    pub fn new() -> std::io::Result<TempDb> {
        Ok(TempDb {
            dir: tempfile::tempdir()?,
        })
    }

    /// The database file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("reprise.db")
    }

    /// The directory holding the database (for other files a test needs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `sqlite://<path>`, for `--db` and `REPRISE_DATABASE_URL`.
    pub fn url(&self) -> String {
        format!("sqlite://{}", self.path().display())
    }

    /// An engine on this database with every linked workflow, after `configure`.
    ///
    /// # Errors
    /// When the database cannot be opened, or registration fails.
    pub fn engine(
        &self,
        configure: impl FnOnce(EngineBuilder) -> EngineBuilder,
    ) -> Result<Engine, EngineError> {
        configure(Engine::builder().sqlite(self.path())?.discover()?).build()
    }
}

/// Correlation ids of the `step_completed` events, in log order (recorded values such as
/// `$now#0` left out).
pub fn completed_steps(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.event.kind == EventKind::StepCompleted)
        .filter_map(|e| e.event.correlation_id.clone())
        .filter(|id| !id.rsplit('/').next().unwrap_or(id).contains('$'))
        .collect()
}

/// Panics with the offending ids unless every step was completed or failed at most once
/// and sequence numbers run from 0 without gaps.
pub fn assert_each_step_recorded_once(events: &[Event]) {
    let mut finished: HashMap<&str, usize> = HashMap::new();
    for (index, event) in events.iter().enumerate() {
        assert_eq!(
            event.seq, index as u64,
            "event sequence has a gap or duplicate at {index}"
        );
        if matches!(
            event.event.kind,
            EventKind::StepCompleted | EventKind::StepFailed
        ) && let Some(id) = event.event.correlation_id.as_deref()
        {
            *finished.entry(id).or_default() += 1;
        }
    }
    let twice: Vec<_> = finished
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| *id)
        .collect();
    assert!(twice.is_empty(), "steps recorded more than once: {twice:?}");
}
