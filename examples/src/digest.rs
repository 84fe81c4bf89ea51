//! `daily-digest`: a workflow started by a cron schedule — every morning, post which files of
//! a directory changed during the day before.
//!
//! [`schedule`] is the trigger the example app registers (`main.rs`): `0 9 * * *` (09:00
//! UTC every day), or the expression in `REPRISE_EXAMPLES_DIGEST_CRON`, six fields with
//! seconds first allowed, so a demo can tick every 20 seconds:
//!
//! ```text
//! REPRISE_EXAMPLES_DIGEST_CRON='*/20 * * * * *' cargo run -q -p reprise-examples -- dev
//! # one `daily-digest` run every 20 s; `runs list --workflow daily-digest` shows them
//! ```
//!
//! Each tick starts exactly one run, however many `dev`/`worker` processes share the
//! database (the run is created under the key `cron:daily-digest:<tick>`); a tick missed
//! while no process ran is made up once ([`MissedTicks::RunOnce`]) when one starts again.
//! The run reads how it was started from `ctx.trigger()` (`cron`) and the tick it is for
//! from its input, which the schedule computes from the tick — the scheduled instant, not
//! the moment the scheduler noticed it. Started by hand (`workflows run daily-digest
//! --input '{}'`), it reports on the day before the run was created.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use reprise::EngineError;
use reprise::prelude::*;
use reprise::trigger::{CronSchedule, MissedTicks};

/// The environment variable that overrides the digest's cron expression.
pub const CRON_ENV: &str = "REPRISE_EXAMPLES_DIGEST_CRON";

/// The digest's default cron expression: 09:00 every day (UTC).
pub const DEFAULT_CRON: &str = "0 9 * * *";

/// The most files a digest lists by name (the count covers all of them).
pub const MAX_LISTED: usize = 20;

/// The most directory entries one digest looks at, so a huge tree cannot stall it.
const MAX_WALKED: usize = 100_000;

/// What a digest is about.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DigestTick {
    /// The cron tick this digest is for (RFC 3339, UTC), set by the schedule; without it, the
    /// time the run was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tick: Option<String>,
    /// The directory to report on (default `.`, the worker's working directory); hidden
    /// directories and `target` are skipped.
    #[serde(default = "default_dir")]
    pub dir: String,
    /// How far before the tick to look, as a duration such as `"1d"` or `"1h"` (default
    /// `"1d"`).
    #[serde(default = "default_window")]
    pub window: String,
}

fn default_dir() -> String {
    ".".to_owned()
}

fn default_window() -> String {
    "1d".to_owned()
}

/// Which changes to collect.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChangeQuery {
    /// The directory, walked recursively.
    pub dir: String,
    /// The end of the window (RFC 3339).
    pub until: String,
    /// The window's length (a duration such as `"1d"`).
    pub window: String,
}

/// The files changed in a window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Changes {
    /// The start of the window (RFC 3339, UTC).
    pub since: String,
    /// How many files changed.
    pub total: usize,
    /// The most recently changed ones, newest first, at most [`MAX_LISTED`].
    pub files: Vec<String>,
}

/// The digest message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DigestMessage {
    /// The text, as posted.
    pub text: String,
}

/// What a digest run reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DigestReport {
    /// The tick the digest is for (RFC 3339, UTC).
    pub tick: String,
    /// How the run was started: `cron` for the schedule, `cli`, `api`, `code`, … otherwise.
    pub trigger: String,
    /// The start of the window (RFC 3339, UTC).
    pub since: String,
    /// How many files changed in the window.
    pub changed: usize,
    /// The most recently changed ones, newest first.
    pub files: Vec<String>,
    /// The posted text.
    pub text: String,
}

/// The example app's cron schedule: [`DEFAULT_CRON`], or the expression in [`CRON_ENV`].
///
/// # Errors
/// When the expression is not a valid cron expression (five fields, or six with seconds
/// first).
pub fn schedule() -> Result<CronSchedule, EngineError> {
    let expression = std::env::var(CRON_ENV)
        .ok()
        .filter(|e| !e.trim().is_empty());
    schedule_at(expression.as_deref().unwrap_or(DEFAULT_CRON))
}

/// The schedule named `daily-digest` that starts the `daily-digest` workflow at every tick
/// of `expression` (in UTC), with the tick as its input; one run makes up for missed ticks.
///
/// # Errors
/// When the expression is not a valid cron expression.
pub fn schedule_at(expression: &str) -> Result<CronSchedule, EngineError> {
    Ok(
        CronSchedule::new("daily-digest", expression, "daily-digest")?
            .time_zone("UTC")?
            .missed(MissedTicks::RunOnce)
            .input_with(|tick| serde_json::json!({ "tick": tick.format(RFC3339).to_string() })),
    )
}

/// RFC 3339 to the second, in UTC.
const RFC3339: &str = "%Y-%m-%dT%H:%M:%SZ";

fn walk(
    dir: &Path,
    budget: &mut usize,
    out: &mut Vec<(SystemTime, PathBuf)>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        if *budget == 0 {
            return Ok(());
        }
        *budget -= 1;
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&entry.path(), budget, out)?;
        } else if kind.is_file() {
            out.push((entry.metadata()?.modified()?, entry.path()));
        }
    }
    Ok(())
}

/// Lists the files under a directory modified in the window `[until - window, until]`.
#[action(retries = 2, backoff = "100ms", timeout = "60s")]
pub async fn collect_changes(input: ChangeQuery) -> Result<Changes, ActionError> {
    let until = reprise::WakeTime::to_wake_time(&input.until.as_str())?;
    let window = reprise::SleepDuration::to_duration(&input.window)?;
    let until = SystemTime::from(until);
    let since = until.checked_sub(window).unwrap_or(SystemTime::UNIX_EPOCH);
    let root = PathBuf::from(&input.dir);
    if !root.is_dir() {
        return Err(ActionError::permanent(format!(
            "`{}` is not a directory",
            input.dir
        )));
    }
    let mut files = Vec::new();
    let mut budget = MAX_WALKED;
    walk(&root, &mut budget, &mut files)?;
    files.retain(|(modified, _)| since <= *modified && *modified <= until);
    // Newest first; the path breaks ties so the order is stable.
    files.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let total = files.len();
    let listed = files
        .into_iter()
        .take(MAX_LISTED)
        .map(|(_, path)| {
            path.strip_prefix(&root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let since = reprise::WakeTime::to_wake_time(&since)?;
    Ok(Changes {
        since: since.format(RFC3339).to_string(),
        total,
        files: listed,
    })
}

/// Posts the digest (here: prints it on standard error, as a chat bot would post it).
#[action(retries = 3, backoff = "200ms")]
pub async fn post_digest(input: DigestMessage, cx: ActionCtx) -> Result<(), ActionError> {
    crate::effects::record(&cx)?;
    eprintln!("[digest] {}", input.text);
    Ok(())
}

/// The digest's text.
pub fn render(tick: &str, trigger: &str, dir: &str, window: &str, changes: &Changes) -> String {
    let mut text = format!(
        "{tick} ({trigger}): {} file(s) changed in `{dir}` in the last {window}",
        changes.total
    );
    if !changes.files.is_empty() {
        text.push_str(": ");
        text.push_str(&changes.files.join(", "));
        if changes.total > changes.files.len() {
            text.push_str(&format!(
                " and {} more",
                changes.total - changes.files.len()
            ));
        }
    }
    text
}

/// Collects the files changed in the window before the tick and posts a digest of them.
#[workflow(slug = "daily-digest")]
pub async fn daily_digest(ctx: Ctx, input: DigestTick) -> Result<DigestReport, WorkflowError> {
    // The tick comes with the input when the schedule started the run; `triggered_at` (the
    // run's creation time, the same on every replay) stands in for it otherwise.
    let tick = match input.tick {
        Some(tick) => tick,
        None => ctx.triggered_at().format(RFC3339).to_string(),
    };
    let trigger = ctx.trigger().to_string();
    let changes = collect_changes
        .run(ChangeQuery {
            dir: input.dir.clone(),
            until: tick.clone(),
            window: input.window.clone(),
        })
        .await?;
    let text = render(&tick, &trigger, &input.dir, &input.window, &changes);
    post_digest
        .run(DigestMessage { text: text.clone() })
        .await?;
    Ok(DigestReport {
        tick,
        trigger,
        since: changes.since,
        changed: changes.total,
        files: changes.files,
        text,
    })
}
