//! Judging a replay check: does the replay of a recorded history (in a replay-only engine)
//! end as the history did? Shared by `workflows check` and `reprise_testkit::replay`.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::Value;

use super::{Engine, Execution, RunExport, RunOutcome};
use crate::ctx::Wait;
use crate::error::EngineError;
use crate::error::{NonDeterminism, WorkflowError, kinds};
use crate::event::{Event, EventKind, RunStatus};

/// Why a recorded history does not replay against today's code.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ReplayMismatch {
    /// The code asked for a different step than the log holds at `id`: another callee,
    /// another input, or a step the history does not have.
    NonDeterminism(NonDeterminism),
    /// A recorded output no longer matches the step's output type.
    RecordedOutput {
        /// The step's correlation id.
        step: String,
        /// The schema violations.
        message: String,
    },
    /// Every step matched, but the replay ended otherwise than the history.
    Diverged {
        /// How the history ended, e.g. ``completed with {"n":1}``.
        recorded: String,
        /// How the replay ended.
        replayed: String,
    },
}

impl ReplayMismatch {
    /// A short machine-readable reason: `non_determinism`, `recorded_output`, `diverged`.
    pub fn reason(&self) -> &'static str {
        match self {
            ReplayMismatch::NonDeterminism(_) => "non_determinism",
            ReplayMismatch::RecordedOutput { .. } => "recorded_output",
            ReplayMismatch::Diverged { .. } => "diverged",
        }
    }

    /// The correlation id of the offending step, when there is one.
    pub fn step(&self) -> Option<&str> {
        match self {
            ReplayMismatch::NonDeterminism(error) => Some(&error.id),
            ReplayMismatch::RecordedOutput { step, .. } => Some(step),
            ReplayMismatch::Diverged { .. } => None,
        }
    }
}

impl fmt::Display for ReplayMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayMismatch::NonDeterminism(error) => write!(f, "{error}"),
            ReplayMismatch::RecordedOutput { step, message } => write!(
                f,
                "the recorded output of step `{step}` does not fit today's code ({message})"
            ),
            ReplayMismatch::Diverged { recorded, replayed } => write!(
                f,
                "every step replays, but the history ended {recorded}, the replay {replayed}"
            ),
        }
    }
}

impl Engine {
    /// Replays the recorded history `export` against this binary's code and judges the
    /// result with [`judge_replay`]: the one replay check behind `workflows check` and
    /// `reprise_testkit::replay`.
    ///
    /// The replay runs in a fresh replay-only copy of this engine ([`Engine::replay_engine`]:
    /// same registry, resources, hook secret and public URL; an in-memory store), with time
    /// frozen at the run's creation so every recorded sleep that had not ended is still
    /// ahead. Nothing runs live: no action is called, no model asked. Finished
    /// sub-workflows and agents are re-entered, so their inner steps are compared too.
    ///
    /// Returns the replay's [`Execution`] when it reproduces the history, the
    /// [`ReplayMismatch`] otherwise.
    ///
    /// # Errors
    /// When the history cannot be imported or executed at all (an unknown workflow, an
    /// unreadable log).
    pub async fn check_replay(
        &self,
        export: &RunExport,
    ) -> Result<Result<Execution, ReplayMismatch>, EngineError> {
        let clock = std::sync::Arc::new(FrozenClock(export.run.created_at));
        let replay = self.replay_engine(clock);
        let id = replay.import_for_replay(export).await?;
        let execution = replay.execute(&id).await?;
        Ok(judge_replay(export, &execution).map(|()| execution))
    }
}

/// A clock that always reads the same time.
struct FrozenClock(chrono::DateTime<chrono::Utc>);

impl crate::clock::Clock for FrozenClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.0
    }
}

/// Whether `execution`, the replay of `export` in a replay-only engine, reproduces the
/// history. It does when:
/// - a completed run completes with the same output;
/// - a waiting or sleeping run suspends on the same waits;
/// - a failed run fails with an error of the same kind;
/// - an unfinished run (queued, running, canceled, or failed with kind `unexecutable`:
///   parked by a binary that could not execute it) replays its whole history (the first
///   step the log does not hold is where the run had got to, not a mismatch).
///
/// # Errors
/// The [`ReplayMismatch`] otherwise.
pub fn judge_replay(export: &RunExport, execution: &Execution) -> Result<(), ReplayMismatch> {
    let expected = Expected::of(export);
    match (&execution.outcome, &expected) {
        (RunOutcome::Failed(error), _) if error.is_non_determinism() => {
            let report = error
                .details
                .clone()
                .and_then(|d| serde_json::from_value::<NonDeterminism>(d).ok())
                .unwrap_or_else(|| {
                    NonDeterminism::new(
                        error.step.clone().unwrap_or_default(),
                        "?",
                        error.message.clone(),
                    )
                });
            // The recorder marks a step asked for after every recorded outcome (nested ones
            // included) was replayed.
            let at_the_end = report.end_of_history;
            match expected {
                // The code went on past the end of an unfinished history: where it had got to.
                Expected::Unfinished if at_the_end => Ok(()),
                // The run had already failed this way.
                Expected::Failed(ref recorded) if recorded.is_non_determinism() => Ok(()),
                _ => Err(ReplayMismatch::NonDeterminism(report)),
            }
        }
        (RunOutcome::Failed(error), Expected::Failed(recorded)) if error.kind == recorded.kind => {
            Ok(())
        }
        (RunOutcome::Failed(error), _) if error.kind == kinds::SCHEMA && error.step.is_some() => {
            Err(ReplayMismatch::RecordedOutput {
                step: error.step.clone().unwrap_or_default(),
                message: error.message.clone(),
            })
        }
        (_, Expected::Unfinished) => Ok(()),
        (RunOutcome::Completed(output), Expected::Completed(recorded)) if output == recorded => {
            Ok(())
        }
        (RunOutcome::Suspended(waits), Expected::Suspended(recorded))
            if &wait_ids(waits) == recorded =>
        {
            Ok(())
        }
        (outcome, _) => Err(ReplayMismatch::Diverged {
            recorded: expected.describe(),
            replayed: describe(outcome),
        }),
    }
}

/// How a recorded history ended, as a replay must reproduce it.
enum Expected {
    Completed(Value),
    Failed(WorkflowError),
    Suspended(BTreeSet<String>),
    /// Not ended: the replay runs until the history runs out.
    Unfinished,
}

impl Expected {
    fn of(export: &RunExport) -> Expected {
        match export.run.status {
            RunStatus::Completed => {
                Expected::Completed(export.run.output.clone().unwrap_or(Value::Null))
            }
            RunStatus::Failed => {
                let error = export
                    .run
                    .error
                    .clone()
                    .and_then(|e| serde_json::from_value(e).ok())
                    .unwrap_or_else(|| WorkflowError::permanent("unknown error"));
                // Parked because a binary could not execute it: the body had got only as
                // far as its history, which is all a replay can be held to.
                if error.kind == kinds::UNEXECUTABLE {
                    Expected::Unfinished
                } else {
                    Expected::Failed(error)
                }
            }
            RunStatus::Waiting | RunStatus::Sleeping => {
                Expected::Suspended(last_waits(&export.events))
            }
            RunStatus::Queued | RunStatus::Running | RunStatus::Canceled | RunStatus::Paused => {
                Expected::Unfinished
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Expected::Completed(output) => format!("completed with {output}"),
            Expected::Failed(error) => format!("failed ({error})"),
            Expected::Suspended(waits) => format!("suspended on {}", list(waits)),
            Expected::Unfinished => "unfinished".to_owned(),
        }
    }
}

fn describe(outcome: &RunOutcome) -> String {
    match outcome {
        RunOutcome::Completed(output) => format!("completed with {output}"),
        RunOutcome::Failed(error) => format!("failed ({error})"),
        RunOutcome::Suspended(waits) => format!("suspended on {}", list(&wait_ids(waits))),
        RunOutcome::Canceled => "canceled".to_owned(),
        RunOutcome::Interrupted => "interrupted".to_owned(),
        RunOutcome::Paused => "paused".to_owned(),
    }
}

fn list(ids: &BTreeSet<String>) -> String {
    if ids.is_empty() {
        return "nothing".to_owned();
    }
    let ids: Vec<String> = ids.iter().map(|id| format!("`{id}`")).collect();
    ids.join(", ")
}

fn wait_ids(waits: &[Wait]) -> BTreeSet<String> {
    waits
        .iter()
        .filter_map(|wait| match wait {
            Wait::Sleep { id, .. } | Wait::Hook { id, .. } | Wait::Message { id, .. } => {
                Some(id.clone())
            }
            Wait::Retry { .. } => None,
        })
        .collect()
}

/// The sleeps and hooks of the history's last suspension.
fn last_waits(events: &[Event]) -> BTreeSet<String> {
    events
        .iter()
        .rev()
        .find(|e| e.event.kind == EventKind::RunSuspended)
        .and_then(|e| e.event.waits())
        .map(|waits| wait_ids(&waits))
        .unwrap_or_default()
}
