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

use std::fmt;
use std::path::Path;

use reprise::event::{RunId, RunStatus};
use reprise::{Engine, NonDeterminism, ReplayMismatch, RunExport, RunOutcome, Step};

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
        /// The engine's report: step id, what was recorded, what the code asked for, the
        /// differing values and the likely cause.
        error: Box<NonDeterminism>,
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
        let engine = Engine::builder()
            .register(self.workflow)
            .hook_secret(self.hook_secret.clone())
            .public_url(self.public_url.clone())
            .build()
            .map_err(setup)?;
        let execution = engine
            .check_replay(export)
            .await
            .map_err(setup)?
            .map_err(|mismatch| {
                let run = export.run.id.clone();
                match mismatch {
                    ReplayMismatch::NonDeterminism(error) => ReplayFailure::NonDeterminism {
                        run,
                        error: Box::new(error),
                    },
                    ReplayMismatch::RecordedOutput { step, message } => {
                        ReplayFailure::RecordedOutput { run, step, message }
                    }
                    ReplayMismatch::Diverged { recorded, replayed } => ReplayFailure::Diverged {
                        run,
                        recorded,
                        replayed,
                    },
                    other => ReplayFailure::Setup(format!("run {run}: {other}")),
                }
            })?;
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
