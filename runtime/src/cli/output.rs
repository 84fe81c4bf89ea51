//! Human-readable output: tables of workflows, runs and steps.

use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};

use crate::engine::{Engine, Execution, RunOutcome, StepSummary};
use crate::event::RunRecord;

fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_header(header.to_vec());
    table
}

pub(super) fn print_workflows(engine: &Engine, paused: &[crate::store::WorkflowPause]) {
    let mut rows = table(&[
        "workflow",
        "source",
        "max attempts",
        "steps",
        "paused",
        "description",
    ]);
    for workflow in engine.registry().workflows() {
        let slug = workflow.registration.slug;
        let pause = paused
            .iter()
            .find(|p| p.workflow == slug)
            .map(|p| format!("since {} by {}", p.at.format("%Y-%m-%d %H:%M:%S"), p.by))
            .unwrap_or_default();
        // `code` for a `#[workflow]` fn, the file's path for a workflow file.
        let source = workflow
            .path
            .map_or_else(|| "code".to_owned(), |p| p.display().to_string());
        rows.add_row(vec![
            slug.to_owned(),
            source,
            workflow.options.max_attempts.to_string(),
            workflow.sites.len().to_string(),
            pause,
            workflow.registration.description.to_owned(),
        ]);
    }
    println!("{rows}");
    for workflow in engine.registry().workflows() {
        if let Some(event) = workflow.options.on_event {
            println!(
                "{} starts once per `{event}` event (on_event)",
                workflow.registration.slug
            );
        }
    }
}

pub(super) fn print_runs(runs: &[RunRecord]) {
    let mut rows = table(&["run", "workflow", "status", "attempt", "created", "updated"]);
    for run in runs {
        rows.add_row(vec![
            run.id.to_string(),
            run.workflow.clone(),
            run.status.to_string(),
            run.attempt.to_string(),
            run.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            run.updated_at.format("%Y-%m-%d %H:%M:%S").to_string(),
        ]);
    }
    println!("{rows}");
}

/// `runs usage`: a row per day, workflow and model, then the totals; unpriced models named
/// on standard error.
pub(super) fn print_usage(report: &crate::UsageReport) {
    let mut rows = table(&[
        "day",
        "workflow",
        "model",
        "requests",
        "prompt",
        "cached",
        "completion",
        "cost",
    ]);
    for row in &report.rows {
        rows.add_row(vec![
            row.day.to_string(),
            row.workflow.clone(),
            row.model.clone(),
            row.requests.to_string(),
            row.usage.prompt_tokens.to_string(),
            row.usage.cached_tokens.to_string(),
            row.usage.completion_tokens.to_string(),
            row.cost_usd
                .map_or_else(|| "unpriced".into(), crate::cost::dollars),
        ]);
    }
    println!("{rows}");
    println!(
        "total: {} requests, {} tokens ({} prompt, {} completion), {} from {} runs",
        report.requests,
        report.usage.total_tokens,
        report.usage.prompt_tokens,
        report.usage.completion_tokens,
        crate::cost::dollars(report.cost_usd),
        report.runs_scanned
    );
    if !report.unpriced_models.is_empty() {
        eprintln!(
            "warning: no price for {}: their requests are not in the cost; add them to the \
             JSON file named by REPRISE_PRICES",
            report.unpriced_models.join(", ")
        );
    }
}

pub(super) fn steps_table(steps: &[StepSummary]) -> Table {
    let tokens = steps.iter().any(|s| s.usage.is_some());
    let mut header = vec!["step", "status", "attempts", "duration"];
    if tokens {
        header.push("tokens");
    }
    let mut rows = table(&header);
    for step in steps {
        let mut row = vec![
            step.id.clone(),
            step.status.as_str().to_owned(),
            step.attempts.to_string(),
            step.duration_ms
                .map(|ms| format!("{ms} ms"))
                .unwrap_or_else(|| "-".into()),
        ];
        if tokens {
            row.push(
                step.usage
                    .map(|u| u.total_tokens.to_string())
                    .unwrap_or_else(|| "-".into()),
            );
        }
        rows.add_row(row);
    }
    rows
}

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

pub(super) fn print_run(
    run: &RunRecord,
    steps: &[StepSummary],
    tags: &std::collections::BTreeMap<String, crate::tags::TagValue>,
) {
    println!("run       {}", run.id);
    println!("workflow  {}", run.workflow);
    println!("status    {}", run.status);
    println!("attempt   {}", run.attempt);
    println!("trigger   {}", run.trigger);
    println!("created   {}", run.created_at.to_rfc3339());
    if let Some(queue) = &run.queue {
        println!("queue     {}", queue_line(queue));
    }
    if !tags.is_empty() {
        let tags: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("tags      {}", tags.join(" "));
    }
    if let Some(wake_at) = run.wake_at {
        println!("wakes at  {}", wake_at.to_rfc3339());
    }
    if let Some(output) = &run.output {
        println!("output:\n{}", pretty(output));
    }
    if let Some(error) = &run.error {
        println!("error:\n{}", pretty(error));
    }
    println!("{}", steps_table(steps));
}

/// A run's place in its queue: `llm (key c1, priority 5, admitted 2026-…)`, or `not
/// admitted yet`.
pub(super) fn queue_line(queue: &crate::queue::RunQueue) -> String {
    let mut parts = Vec::new();
    if let Some(key) = &queue.key {
        parts.push(format!("key {key}"));
    }
    parts.push(format!("priority {}", queue.priority));
    parts.push(match queue.admitted_at {
        Some(at) => format!("admitted {}", at.to_rfc3339()),
        None => "not admitted yet".to_owned(),
    });
    format!("{} ({})", queue.name, parts.join(", "))
}

pub(super) fn print_execution(run: &RunRecord, execution: &Execution, steps: &[StepSummary]) {
    match &execution.outcome {
        RunOutcome::Completed(output) => println!("{}", pretty(output)),
        RunOutcome::Failed(error) => println!("error: {error}"),
        RunOutcome::Suspended(waits) => {
            println!(
                "the run is waiting: {}",
                serde_json::to_string(waits).unwrap_or_default()
            )
        }
        RunOutcome::Canceled => println!("the run was canceled"),
        RunOutcome::Interrupted => println!("the run was handed back to the queue"),
        RunOutcome::Paused => println!("the run is paused (unpause it with `runs unpause`)"),
    }
    println!("{}", steps_table(steps));
    println!(
        "run {} {} ({} steps replayed from the log, {} executed)",
        run.id, run.status, execution.replayed, execution.executed
    );
}

/// `workflows check`: each run that no longer replays, then a summary line.
pub(super) fn print_check(checked: usize, incompatible: &[super::Incompatible]) {
    for run in incompatible {
        println!(
            "run {} ({}, {}) does not replay:\n  {}",
            run.run_id, run.workflow, run.status, run.message
        );
    }
    let runs = if checked == 1 { "run" } else { "runs" };
    if incompatible.is_empty() {
        println!("checked {checked} {runs}: every one replays against this binary");
    } else {
        println!(
            "checked {checked} {runs}: {} replay, {} do not",
            checked - incompatible.len(),
            incompatible.len()
        );
    }
}

/// A run's parent, children and continue-as-new links, after its record (`runs get`).
pub(super) fn print_links(links: &crate::RunLinks) {
    if let Some(parent) = &links.parent {
        println!("child of run {} (step {})", parent.run_id, parent.step);
    }
    if let Some(from) = &links.continued_from {
        println!("continues run {from}");
    }
    if let Some(next) = &links.continued_as {
        println!("continued as run {next}");
    }
    for child in &links.children {
        let how = if child.detached {
            "detached"
        } else if child.on_parent_close == crate::ParentClose::Abandon {
            "abandoned when this run ends"
        } else {
            "canceled when this run ends"
        };
        println!(
            "child run {} ({}, step {}, {how})",
            child.run_id, child.workflow, child.step
        );
    }
}

/// The origin of a forked or restarted run, after its record (`runs get`).
pub(super) fn print_forked_from(from: &crate::event::ForkedFrom) {
    let input = if from.input_changed {
        ", new input"
    } else {
        ""
    };
    match &from.step {
        Some(step) => println!(
            "forked from run {} at step {step} by {}{input}",
            from.run_id, from.by
        ),
        None => println!("restarted from run {} by {}{input}", from.run_id, from.by),
    }
}

/// The lines `runs get` prints about who started a run and whom it acts for: `started by
/// <actor>` ([`crate::identity::Actor::describe`]), then `user`, `project` and
/// `subscriber` when set.
pub(super) fn identity_lines(identity: &crate::identity::RunIdentity) -> Vec<String> {
    let mut lines = vec![format!("started by {}", identity.actor.describe())];
    if let Some(user) = &identity.user {
        lines.push(format!("acts for user {user}"));
    }
    if let Some(project) = &identity.project {
        lines.push(format!("project {project}"));
    }
    if let Some(subscriber) = &identity.subscriber {
        lines.push(format!(
            "subscriber {} (subscription {})",
            subscriber.user, subscriber.subscription
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Actor, RunIdentity};

    #[test]
    fn runs_get_says_who_started_the_run_and_for_whom() {
        let identity = RunIdentity {
            actor: Actor::Principal {
                name: "ada".into(),
                token: Some("ci".into()),
            },
            user: Some("ada".into()),
            project: Some("web".into()),
            subscriber: None,
        };
        assert_eq!(
            identity_lines(&identity),
            [
                "started by principal ada (token ci)",
                "acts for user ada",
                "project web"
            ]
        );
        assert_eq!(
            identity_lines(&RunIdentity::unrecorded()),
            ["started by not recorded"]
        );
    }
}
