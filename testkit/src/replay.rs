//! Replay regression: check a recorded run history against today's workflow code.
//!
//! Record a history once — `<app> runs export <id> --out tests/fixtures/run.json` against a
//! real database, or [`save`] in a test — check the file in, and replay it in a test:
//!
//! ```ignore
//! use reprise_testkit::replay;
//!
//! #[tokio::test]
//! async fn orders_recorded_by_v1_still_replay() {
//!     replay::assert_replays(&fulfill_order, "tests/fixtures/fulfill-order-v1.json").await;
//! }
//! ```
//!
//! The history is imported into a fresh in-memory engine that *only replays*
//! ([`reprise::EngineBuilder::replay_only`]): every step, sleep, hook and recorded value
//! must come from the log; nothing runs live and no action is called, so only the workflow
//! itself is registered (actions and sub-workflows are reached through the code, not the
//! registry). The replay passes when it ends as the history did:
//!
//! - a run that completed completes with the same output;
//! - a run that was waiting (on a hook) or sleeping suspends on the same waits;
//! - a run that failed fails with an error of the same kind;
//! - a run that had not ended (queued, running, canceled) replays its whole history; the
//!   first step the log does not hold is where the run had got to, not a mismatch.
//!
//! Anything else is a [`ReplayFailure`]. A changed step is a
//! [`ReplayFailure::NonDeterminism`] whose message is the engine's report: the step id, what
//! the log recorded and what the code asked for.
//!
//! A replay check is stricter than a resume: a step the code asks for *before* the end of
//! the recorded history fails it, even where a resume would run the step live (late, and
//! out of order). Guard such additions with `ctx.patched("…")`.
//!
//! Step inputs may carry hook tokens (a resume URL sent to someone), which are derived
//! from the engine's hook secret. [`check`] uses the secret and public URL of
//! [`crate::TestEnv`], so histories a `TestEnv` recorded replay as they are; for an export
//! from a real database, pass its secret and URL to [`Replay::hook_secret`] and
//! [`Replay::public_url`].

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use reprise::event::{Event, EventKind, RunId, RunStatus};
use reprise::{Engine, NonDeterminism, RunExport, RunOutcome, Step, Wait, WorkflowError, kinds};
use serde_json::Value;

use crate::clock::VirtualClock;

/// The hook secret of [`crate::TestEnv`] (see `env.rs`): histories it recorded replay with
/// identical hook tokens.
const TEST_ENV_HOOK_SECRET: &[u8] = b"reprise-testkit fixed hook secret, for stable tokens";
/// The public URL of [`crate::TestEnv`].
const TEST_ENV_PUBLIC_URL: &str = "http://reprise.test";

/// A history that replayed cleanly against today's code.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplayReport {
    /// The recorded run.
    pub run: RunId,
    /// Its workflow's slug.
    pub workflow: String,
    /// The run's status when it was exported: how its history ends.
    pub recorded: RunStatus,
    /// How the replay ended.
    pub outcome: RunOutcome,
    /// Steps, sleeps and hooks answered from the log.
    pub replayed: u64,
}

/// Why a history does not replay against today's code.
#[derive(Clone, Debug, PartialEq)]
pub enum ReplayFailure {
    /// The code asked for a different step than the log holds at `error.id`: another
    /// callee, another input, or a step the history does not have.
    NonDeterminism {
        /// The recorded run.
        run: RunId,
        /// The engine's report: step id, what was recorded, what the code asked for.
        error: NonDeterminism,
    },
    /// A recorded output no longer matches the step's output type.
    RecordedOutput {
        /// The recorded run.
        run: RunId,
        /// The step's correlation id.
        step: String,
        /// The schema violations.
        message: String,
    },
    /// Every step matched, but the replay ended otherwise than the history.
    Diverged {
        /// The recorded run.
        run: RunId,
        /// How the history ended, e.g. ``completed with {"n":1}``.
        recorded: String,
        /// How the replay ended.
        replayed: String,
    },
    /// The export could not be read, or is not a run of the workflow under test.
    Setup(String),
}

impl ReplayFailure {
    /// The correlation id of the offending step, when there is one.
    pub fn step(&self) -> Option<&str> {
        match self {
            ReplayFailure::NonDeterminism { error, .. } => Some(&error.id),
            ReplayFailure::RecordedOutput { step, .. } => Some(step),
            ReplayFailure::Diverged { .. } | ReplayFailure::Setup(_) => None,
        }
    }

    /// The non-determinism report, for a changed step.
    pub fn non_determinism(&self) -> Option<&NonDeterminism> {
        match self {
            ReplayFailure::NonDeterminism { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl fmt::Display for ReplayFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayFailure::NonDeterminism { run, error } => {
                write!(f, "run {run} no longer replays: {error}")
            }
            ReplayFailure::RecordedOutput { run, step, message } => write!(
                f,
                "run {run} no longer replays: the recorded output of step `{step}` does not \
                 fit today's code ({message})"
            ),
            ReplayFailure::Diverged {
                run,
                recorded,
                replayed,
            } => write!(
                f,
                "run {run} replays step by step but ends differently: the history ended \
                 {recorded}, the replay {replayed}"
            ),
            ReplayFailure::Setup(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for ReplayFailure {}

/// A replay check of `workflow`, with options (hook secret, public URL).
#[derive(Clone, Debug)]
pub struct Replay<W> {
    workflow: W,
    hook_secret: Vec<u8>,
    public_url: String,
}

impl<W: Step + Copy> Replay<W> {
    /// A check of histories of `workflow`, with [`crate::TestEnv`]'s hook secret and URL.
    pub fn new(workflow: &W) -> Self {
        Replay {
            workflow: *workflow,
            hook_secret: TEST_ENV_HOOK_SECRET.to_vec(),
            public_url: TEST_ENV_PUBLIC_URL.to_owned(),
        }
    }

    /// The hook secret of the engine that recorded the history (for an app's database:
    /// `REPRISE_HOOK_SECRET`, or the `hook.key` file beside it).
    pub fn hook_secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.hook_secret = secret.into();
        self
    }

    /// The public URL of the engine that recorded the history (`REPRISE_PUBLIC_URL`;
    /// the engine's default is `http://127.0.0.1:8080`).
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = url.into();
        self
    }

    /// Replays the history in the export file at `path`. See the [module docs](self).
    ///
    /// # Errors
    /// A [`ReplayFailure`] when the file cannot be read or the code no longer replays it.
    pub async fn check(&self, path: impl AsRef<Path>) -> Result<ReplayReport, ReplayFailure> {
        let export = load(path)?;
        self.check_export(&export).await
    }

    /// Replays `export`. See the [module docs](self).
    ///
    /// # Errors
    /// A [`ReplayFailure`] when the export is not a run of this workflow or the code no
    /// longer replays it.
    pub async fn check_export(&self, export: &RunExport) -> Result<ReplayReport, ReplayFailure> {
        if export.run.workflow != W::SLUG {
            return Err(ReplayFailure::Setup(format!(
                "run {} is a run of `{}`, not of `{}`",
                export.run.id,
                export.run.workflow,
                W::SLUG
            )));
        }
        let setup = |e: reprise::EngineError| {
            ReplayFailure::Setup(format!("cannot replay run {}: {e}", export.run.id))
        };
        // Time stands still at the run's creation: every recorded sleep that had not ended
        // is still ahead, so the replay suspends on it as the run did.
        let clock = Arc::new(VirtualClock::new(export.run.created_at));
        let engine = Engine::builder()
            .replay_only(true)
            .register(self.workflow)
            .clock(clock)
            .hook_secret(self.hook_secret.clone())
            .public_url(self.public_url.clone())
            .build()
            .map_err(setup)?;
        let id = engine.import_for_replay(export).await.map_err(setup)?;
        let execution = engine.execute(&id).await.map_err(setup)?;
        judge(export, &execution.outcome, execution.replayed)?;
        Ok(ReplayReport {
            run: export.run.id.clone(),
            workflow: export.run.workflow.clone(),
            recorded: export.run.status,
            outcome: execution.outcome,
            replayed: execution.replayed,
        })
    }
}

/// Replays the run history exported to `path` against today's `workflow`, in a fresh
/// replay-only engine. See the [module docs](self) for what passes.
///
/// ```ignore
/// let report = replay::check(&signup_pipeline, "tests/fixtures/signup.json").await?;
/// ```
///
/// # Errors
/// A [`ReplayFailure`]; for a changed step, [`ReplayFailure::NonDeterminism`], whose
/// message names the step id, what the log recorded and what the code asked for.
pub async fn check<W: Step + Copy>(
    workflow: &W,
    path: impl AsRef<Path>,
) -> Result<ReplayReport, ReplayFailure> {
    Replay::new(workflow).check(path).await
}

/// [`check`], panicking with the [`ReplayFailure`] report when the history does not replay.
///
/// # Panics
/// When the history at `path` does not replay against `workflow`.
pub async fn assert_replays<W: Step + Copy>(workflow: &W, path: impl AsRef<Path>) -> ReplayReport {
    let path = path.as_ref();
    match check(workflow, path).await {
        Ok(report) => report,
        Err(failure) => panic!(
            "the history in {} does not replay against today's `{}`:\n{failure}",
            path.display(),
            W::SLUG
        ),
    }
}

/// Reads a run export (`runs export` output, or [`save`]'s).
///
/// # Errors
/// [`ReplayFailure::Setup`] naming the file when it cannot be read or parsed.
pub fn load(path: impl AsRef<Path>) -> Result<RunExport, ReplayFailure> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ReplayFailure::Setup(format!(
            "cannot read the run export {}: {e}",
            path.display()
        ))
    })?;
    serde_json::from_str(&text).map_err(|e| {
        ReplayFailure::Setup(format!(
            "{} is not a run export (`runs export` output): {e}",
            path.display()
        ))
    })
}

/// Exports run `run` of `engine` to `path` as pretty JSON (what `runs export --out` writes),
/// creating the parent directory. Use it to (re)generate fixtures.
///
/// # Errors
/// Unknown run, store errors, or the file cannot be written.
pub async fn save(
    engine: &Engine,
    run: &RunId,
    path: impl AsRef<Path>,
) -> std::io::Result<RunExport> {
    let path = path.as_ref();
    let export = engine
        .export_run(run)
        .await
        .map_err(std::io::Error::other)?;
    let mut text = serde_json::to_string_pretty(&export).map_err(std::io::Error::other)?;
    text.push('\n');
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text)?;
    Ok(export)
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
            RunStatus::Failed => Expected::Failed(
                export
                    .run
                    .error
                    .clone()
                    .and_then(|e| serde_json::from_value(e).ok())
                    .unwrap_or_else(|| WorkflowError::permanent("unknown error")),
            ),
            RunStatus::Waiting | RunStatus::Sleeping => {
                Expected::Suspended(last_waits(&export.events))
            }
            RunStatus::Queued | RunStatus::Running | RunStatus::Canceled => Expected::Unfinished,
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
    }
}

fn list(ids: &BTreeSet<String>) -> String {
    if ids.is_empty() {
        return "nothing".to_owned();
    }
    ids.iter()
        .map(|id| format!("`{id}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn wait_ids(waits: &[Wait]) -> BTreeSet<String> {
    waits
        .iter()
        .filter_map(|wait| match wait {
            Wait::Sleep { id, .. } | Wait::Hook { id, .. } => Some(id.clone()),
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
        .and_then(|e| e.event.payload.get("waits"))
        .and_then(|waits| serde_json::from_value::<Vec<Wait>>(waits.clone()).ok())
        .map(|waits| wait_ids(&waits))
        .unwrap_or_default()
}

/// How many top-level steps, sleeps and hooks a replay answers from this history (nested
/// steps are answered with their sub-workflow; recorded values and `ctx.patched` markers
/// are not counted, as [`reprise::Execution::replayed`] does not count them).
fn answerable(events: &[Event]) -> u64 {
    let ids: BTreeSet<&str> = events
        .iter()
        .filter(|e| {
            matches!(
                e.event.kind,
                EventKind::StepCompleted
                    | EventKind::StepFailed
                    | EventKind::SleepCompleted
                    | EventKind::HookReceived
            )
        })
        .filter_map(|e| e.event.correlation_id.as_deref())
        .filter(|id| !id.contains('/') && !id.starts_with('$'))
        .collect();
    ids.len() as u64
}

/// Whether a replay that ended with `outcome`, having answered `replayed` steps from the
/// log, reproduces the history of `export`.
fn judge(export: &RunExport, outcome: &RunOutcome, replayed: u64) -> Result<(), ReplayFailure> {
    let run = export.run.id.clone();
    let expected = Expected::of(export);
    let diverged = || ReplayFailure::Diverged {
        run: run.clone(),
        recorded: expected.describe(),
        replayed: describe(outcome),
    };
    match (outcome, &expected) {
        (RunOutcome::Failed(error), _) if error.is_non_determinism() => {
            let report = error
                .details
                .clone()
                .and_then(|d| serde_json::from_value::<NonDeterminism>(d).ok())
                .unwrap_or_else(|| NonDeterminism {
                    id: error.step.clone().unwrap_or_default(),
                    recorded: "?".to_owned(),
                    requested: error.message.clone(),
                });
            let at_the_end =
                report.recorded.starts_with("no such ") && replayed >= answerable(&export.events);
            match expected {
                // The code went on past the end of an unfinished history: where it had got to.
                Expected::Unfinished if at_the_end => Ok(()),
                // The run had already failed this way.
                Expected::Failed(ref recorded) if recorded.is_non_determinism() => Ok(()),
                _ => Err(ReplayFailure::NonDeterminism { run, error: report }),
            }
        }
        (RunOutcome::Failed(error), Expected::Failed(recorded)) if error.kind == recorded.kind => {
            Ok(())
        }
        (RunOutcome::Failed(error), _) if error.kind == kinds::SCHEMA && error.step.is_some() => {
            Err(ReplayFailure::RecordedOutput {
                run,
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
        _ => Err(diverged()),
    }
}
