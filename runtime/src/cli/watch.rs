//! `runs watch <id>`: a run's steps as they move, until it ends.
//!
//! It reads the store (read-only, as `runs get` does), so it follows a run whichever
//! process executes it: the step summaries are read again whenever the run's record shows
//! new events, looked at every [`LOOK_EVERY`]. On a terminal the table of steps (id,
//! status, attempts, duration, tokens) is redrawn in place; otherwise, and with `--json`,
//! one line per step change is printed (a step seen for the first time, or a new status or
//! attempt count), and one per run status change. When the run ends it prints the run as
//! `workflows run --wait` does and exits with the same codes: 0 completed, 1 failed or
//! canceled, 3 still going when `--timeout` passed.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use serde_json::json;

use crate::engine::{Engine, StepSummary, summarize_steps};
use crate::error::EngineError;
use crate::event::{RunId, RunStatus};

/// How often the store is looked at.
const LOOK_EVERY: Duration = Duration::from_millis(250);

/// Follows run `id` until it ends (or `timeout` passes); returns the exit code.
pub(super) async fn watch(
    engine: &Engine,
    id: RunId,
    timeout: Option<Duration>,
    as_json: bool,
) -> Result<u8, EngineError> {
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let redraw = !as_json && std::io::stdout().is_terminal();
    let mut shown: HashMap<String, (String, u32)> = HashMap::new();
    let mut status: Option<RunStatus> = None;
    let mut seen_events = 0;
    let mut drawn_lines = 0;
    loop {
        let (record, steps) = match look(engine, &id, seen_events, status).await {
            Ok(seen) => seen,
            // The read-only store refuses a read that raced a write of another process
            // (once: it then reads through the log); look again.
            Err(error) if is_busy(&error) => {
                tokio::time::sleep(LOOK_EVERY).await;
                continue;
            }
            Err(error) => return Err(error),
        };
        if let Some(steps) = steps {
            seen_events = record.next_seq;
            if redraw {
                drawn_lines = draw(&record.workflow, &id, record.status, &steps, drawn_lines);
            } else {
                // Steps first: the run's status is where they left it.
                for step in &steps {
                    let now = (step.status.as_str().to_owned(), step.attempts);
                    if shown.get(&step.id) != Some(&now) {
                        print_step(as_json, step);
                        shown.insert(step.id.clone(), now);
                    }
                }
                if status != Some(record.status) {
                    print_line(
                        as_json,
                        json!({ "run_id": id, "status": record.status }),
                        format!("run {id} ({}): {}", record.workflow, record.status),
                    );
                }
            }
            status = Some(record.status);
        }
        let timed_out = deadline.is_some_and(|d| tokio::time::Instant::now() >= d);
        if record.status.is_terminal() || timed_out {
            if redraw && drawn_lines > 0 {
                // The final report prints the table again, with the output or error.
                print!("\x1b[{drawn_lines}A\x1b[J");
            }
            return super::report_record(engine, &record, as_json).await;
        }
        let pause = match deadline {
            Some(d) => LOOK_EVERY.min(d.saturating_duration_since(tokio::time::Instant::now())),
            None => LOOK_EVERY,
        };
        tokio::time::sleep(pause).await;
    }
}

/// The run's record, and its steps when it changed since `seen_events` and `status`.
async fn look(
    engine: &Engine,
    id: &RunId,
    seen_events: u64,
    status: Option<RunStatus>,
) -> Result<(crate::event::RunRecord, Option<Vec<StepSummary>>), EngineError> {
    let record = engine.get_run(id).await?;
    if record.next_seq == seen_events && status == Some(record.status) {
        return Ok((record, None));
    }
    let steps = summarize_steps(&engine.events(id).await?);
    Ok((record, Some(steps)))
}

fn is_busy(error: &EngineError) -> bool {
    error
        .store_error()
        .is_some_and(|e| e.kind() == crate::store::StoreErrorKind::Busy)
}

fn print_line(as_json: bool, value: serde_json::Value, text: String) {
    if as_json {
        println!("{value}");
    } else {
        println!("{text}");
    }
}

/// One step's line: `step charge#0 completed (attempt 2, 120 ms)`.
fn print_step(as_json: bool, step: &StepSummary) {
    let duration = step
        .duration_ms
        .map(|ms| format!(", {ms} ms"))
        .unwrap_or_default();
    let tokens = step
        .usage
        .map(|u| format!(", {} tokens", u.total_tokens))
        .unwrap_or_default();
    print_line(
        as_json,
        json!({
            "step": step.id,
            "status": step.status.as_str(),
            "attempts": step.attempts,
            "duration_ms": step.duration_ms,
        }),
        format!(
            "step {} {} (attempt {}{duration}{tokens})",
            step.id,
            step.status.as_str(),
            step.attempts
        ),
    );
}

/// Redraws the run's line and step table over the previous drawing (`previous` lines);
/// returns how many lines this one took.
fn draw(
    workflow: &str,
    id: &RunId,
    status: RunStatus,
    steps: &[StepSummary],
    previous: usize,
) -> usize {
    let text = format!(
        "run {id} ({workflow}): {status}\n{}\n",
        super::output::steps_table(steps)
    );
    let mut out = std::io::stdout().lock();
    if previous > 0 {
        let _ = write!(out, "\x1b[{previous}A\x1b[J");
    }
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    text.lines().count()
}
