//! Moving run histories in and out of a store: export to a file, import for a replay
//! check, and seeding of steps (the testkit's `env.seed`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Engine;
use crate::error::EngineError;
use crate::event::{
    Event, EventKind, EventPayload, NewEvent, RunId, RunRecord, RunStatus, RunUpdate,
};
use crate::store::Append;

/// A run's whole history, as `runs export` writes it: the record and every event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunExport {
    /// Format tag: `reprise-run/1`.
    pub format: String,
    /// The run's record.
    pub run: RunRecord,
    /// Its events, in order.
    pub events: Vec<Event>,
}

/// The format tag of [`RunExport`].
pub const RUN_EXPORT_FORMAT: &str = "reprise-run/1";

impl Engine {
    /// The run's record and events, ready to write as JSON.
    ///
    /// # Errors
    /// Unknown run, store errors.
    pub async fn export_run(&self, id: &RunId) -> Result<RunExport, EngineError> {
        let run = self.get_run(id).await?;
        let mut events = self.store().events(id).await?;
        // Logs written before tokens were redacted at append still hold them.
        crate::hook_token::redact_log(self.inner.env.hook_secret(), id.as_str(), &mut events);
        Ok(RunExport {
            format: RUN_EXPORT_FORMAT.to_owned(),
            run,
            events,
        })
    }

    /// A replay-only copy of this engine over a fresh in-memory store, reading time from
    /// `clock`: the same registry, resources, hook secret and public URL (so hook tokens and
    /// resume URLs, and the step inputs made from them, replay identically), no action
    /// overrides, no fault. `workflows check` replays each recorded run in one.
    pub fn replay_engine(&self, clock: std::sync::Arc<dyn super::Clock>) -> Engine {
        let inner = &self.inner;
        Engine {
            inner: std::sync::Arc::new(super::Inner {
                env: std::sync::Arc::new(inner.env.for_replay(clock)),
                registry: inner.registry.clone(),
                run_retry_backoff: inner.run_retry_backoff,
                unexecutable: inner.unexecutable,
                extensions: crate::run_env::Services::new(),
                fingerprints: super::fingerprint::Fingerprints::default(),
                owner_id: inner.owner_id.clone(),
                lease: inner.lease,
                hot: super::hot::HotRuns::new(0, std::time::Duration::ZERO),
                controls: std::sync::Mutex::new(std::collections::HashMap::new()),
                default_project: inner.default_project.clone(),
            }),
        }
    }

    /// Writes `export` into this engine's store *as an unfinished run*, for a replay:
    /// its end (`run_completed`, `run_failed`, `run_canceled`, the last `run_suspended`)
    /// is left out and the run is `queued`, so executing it replays the whole recorded
    /// history against today's code. Returns the run's id.
    ///
    /// # Errors
    /// An unknown format, a run id already in the store, store errors.
    pub async fn import_for_replay(&self, export: &RunExport) -> Result<RunId, EngineError> {
        if export.format != RUN_EXPORT_FORMAT {
            return Err(EngineError::Serde(format!(
                "unknown run export format `{}`; this reprise reads `{RUN_EXPORT_FORMAT}`",
                export.format
            )));
        }
        let mut events = export.events.iter().map(|e| e.event.clone());
        let created = events.next().ok_or_else(|| EngineError::Corrupt {
            run: export.run.id.to_string(),
            message: "the export has no events".into(),
        })?;
        let rest: Vec<NewEvent> = events
            .filter(|e| {
                !matches!(
                    e.kind,
                    EventKind::RunCompleted
                        | EventKind::RunFailed
                        | EventKind::RunCanceled
                        | EventKind::RunSuspended
                )
            })
            .collect();
        let mut record = export.run.clone();
        record.status = RunStatus::Queued;
        record.output = None;
        record.error = None;
        record.wake_at = None;
        record.next_seq = 1;
        self.store().create_run(record, created).await?;
        if !rest.is_empty() {
            self.store()
                .append(Append {
                    run_id: export.run.id.clone(),
                    first_seq: 1,
                    events: rest,
                    update: RunUpdate::default(),
                    fence: None,
                    release: false,
                })
                .await?;
        }
        Ok(export.run.id.clone())
    }

    /// Pre-records step `correlation_id` of a run that has not started (as if an earlier
    /// execution had completed it with `output`). A seeded step matches any callee and
    /// input; its output is re-validated against the step's output schema when replayed,
    /// as any recorded output is.
    ///
    /// # Errors
    /// Unknown run; [`EngineError::InvalidState`] when the run has ended; store errors.
    pub async fn seed_step(
        &self,
        run: &RunId,
        correlation_id: &str,
        output: Value,
    ) -> Result<(), EngineError> {
        let record = self.get_run(run).await?;
        if record.status.is_terminal() {
            return Err(EngineError::InvalidState {
                run: run.to_string(),
                status: record.status.to_string(),
                message: format!("cannot seed step `{correlation_id}` of a finished run"),
            });
        }
        let event = NewEvent::new(
            Some(correlation_id.to_owned()),
            1,
            self.now(),
            EventPayload::StepCompleted {
                output,
                callee: None,
                usage: None,
                usage_total: None,
                seeded: true,
            },
        );
        self.store()
            .append(Append {
                run_id: run.clone(),
                first_seq: record.next_seq,
                events: vec![event],
                update: RunUpdate::default(),
                fence: None,
                release: false,
            })
            .await
    }
}
