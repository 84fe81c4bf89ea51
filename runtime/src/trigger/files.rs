//! The triggers a workflow file declares in its front matter (`triggers:`), turned into
//! the engine's own: a `cron` trigger becomes a [`CronSchedule`] like one declared in
//! code; a `webhook` or `poll` trigger names a source declared in code
//! ([`EngineBuilder::webhook`], [`EngineBuilder::poll`]) that must start this file's
//! workflow; an `event` trigger is the workflow's `on_event` (set by
//! [`crate::files::register_files`]).

use serde_json::{Value, json};

use super::{CronSchedule, Triggers};
use crate::engine::EngineBuilder;
use crate::files::format::TriggerDef;
use crate::files::{FileError, FileErrors, Pos, WorkflowFile};

/// Where `key: value` is written in `source` (the file's whole text): the line and column
/// of the first line, from the top-level `triggers:` key on, whose content after any `- `
/// starts with `key:` and holds `value`.
/// `1:1` when it cannot be found (the trigger is then still named in the message).
pub(crate) fn locate(source: &str, key: &str, value: &str) -> Pos {
    // From the top-level `triggers:` key on (a step may hold `event: <same name>`).
    let start = source
        .lines()
        .position(|line| line.starts_with("triggers:"))
        .unwrap_or(0);
    for (index, line) in source.lines().enumerate().skip(start) {
        let trimmed = line.trim_start();
        let item = trimmed.strip_prefix("- ").unwrap_or(trimmed).trim_start();
        if let Some(rest) = item.strip_prefix(key)
            && rest.trim_start().starts_with(':')
            && rest.contains(value)
        {
            let column = line.len() - item.len() + 1;
            return Pos {
                line: u32::try_from(index + 1).unwrap_or(u32::MAX),
                column: u32::try_from(line[..column - 1].chars().count() + 1).unwrap_or(1),
            };
        }
    }
    Pos { line: 1, column: 1 }
}

/// The schedule name of the `n`-th (from 1) cron trigger of `file`, unless it names one.
fn cron_name(file: &WorkflowFile, trigger: &TriggerDef, n: usize) -> String {
    trigger
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-cron-{n}", file.slug))
}

/// Adds the triggers of `files` to `builder`: a cron schedule per `cron` trigger, and a
/// check that each `webhook`/`poll` trigger names a source declared on the builder that
/// starts the file's workflow. `event` triggers are not handled here (see
/// [`crate::files::register_files`]).
///
/// # Errors
/// Every problem, each naming the file, the line and column of the trigger and how to
/// fix it: a trigger with none or several of `cron`/`webhook`/`poll`/`event`, an invalid
/// cron expression or time zone, a cron input that does not render, an unknown source or
/// one that starts another workflow, two `event` triggers.
pub(crate) fn add_file_triggers(
    builder: &mut EngineBuilder,
    files: &[WorkflowFile],
) -> Result<(), FileErrors> {
    let triggers = builder.triggers_mut();
    for schedule in file_triggers(triggers, files)? {
        triggers.add_cron(schedule);
    }
    Ok(())
}

/// The cron schedules of the `cron` triggers of `files`, after checking every trigger of
/// theirs against the sources in `triggers` (see [`add_file_triggers`]).
///
/// # Errors
/// As [`add_file_triggers`].
pub(crate) fn file_triggers(
    triggers: &Triggers,
    files: &[WorkflowFile],
) -> Result<Vec<CronSchedule>, FileErrors> {
    let mut schedules = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        let mut crons = 0;
        let mut events = 0;
        for (index, trigger) in file.triggers.iter().enumerate() {
            let key = format!("triggers[{index}]");
            let kinds: Vec<(&str, &str)> = [
                ("cron", trigger.cron.as_deref()),
                ("webhook", trigger.webhook.as_deref()),
                ("poll", trigger.poll.as_deref()),
                ("event", trigger.event.as_deref()),
            ]
            .into_iter()
            .filter_map(|(k, v)| Some((k, v?)))
            .collect();
            let (kind, value) = match kinds.as_slice() {
                [one] => *one,
                [] => {
                    errors.push(
                        FileError::new(
                            &file.path,
                            locate(&file.source, "triggers", ""),
                            format!("trigger {index} has no `cron`, `webhook`, `poll` or `event`"),
                        )
                        .key(key)
                        .help(
                            "give each trigger exactly one of `cron`, `webhook`, `poll`, `event`",
                        ),
                    );
                    continue;
                }
                [(first, value), ..] => {
                    let names: Vec<&str> = kinds.iter().map(|(k, _)| *k).collect();
                    errors.push(
                        FileError::new(
                            &file.path,
                            locate(&file.source, first, value),
                            format!("trigger {index} has several kinds: {}", names.join(", ")),
                        )
                        .key(key)
                        .help("write one trigger per kind (one list item each)"),
                    );
                    continue;
                }
            };
            let at = locate(&file.source, kind, value);
            let error = |message: String, help: String| {
                FileError::new(&file.path, at, message)
                    .key(format!("{key}.{kind}"))
                    .help(help)
            };
            if kind != "cron" && (trigger.timezone.is_some() || trigger.input.is_some()) {
                errors.push(error(
                    format!("a `{kind}` trigger takes no `timezone` or `input`"),
                    format!(
                        "`timezone` and `input` are for `cron` triggers; a `{kind}` trigger's \
                         runs get their input from the {kind}"
                    ),
                ));
            }
            if kind != "cron" && trigger.name.is_some() {
                errors.push(error(
                    format!("a `{kind}` trigger takes no `name`"),
                    "`name` names the schedule of a `cron` trigger".to_owned(),
                ));
            }
            match kind {
                "cron" => {
                    crons += 1;
                    match cron_schedule(file, trigger, value, crons) {
                        Ok(schedule) => schedules.push(schedule),
                        Err((message, help)) => errors.push(error(message, help)),
                    }
                }
                "webhook" => match triggers.webhooks.iter().find(|s| s.name == value) {
                    None => errors.push(error(
                        format!("no webhook source named `{value}` is configured"),
                        source_help(
                            "webhook",
                            value,
                            &file.slug,
                            known(triggers.webhooks.iter().map(|s| s.name.as_str())),
                        ),
                    )),
                    Some(source) if source.workflow != file.slug => errors.push(error(
                        format!(
                            "webhook source `{value}` starts workflow `{}`, not this file's `{}`",
                            source.workflow, file.slug
                        ),
                        format!(
                            "a source starts one workflow: declare it with \
                                 `WebhookSource::new(\"{value}\", \"{}\")`, or remove this trigger",
                            file.slug
                        ),
                    )),
                    Some(_) => {}
                },
                "poll" => match triggers.polls.iter().find(|s| s.name == value) {
                    None => errors.push(error(
                        format!("no poll source named `{value}` is configured"),
                        source_help(
                            "poll",
                            value,
                            &file.slug,
                            known(triggers.polls.iter().map(|s| s.name.as_str())),
                        ),
                    )),
                    Some(source) if source.workflow != file.slug => errors.push(error(
                        format!(
                            "poll source `{value}` starts workflow `{}`, not this file's `{}`",
                            source.workflow, file.slug
                        ),
                        format!(
                            "a source starts one workflow: declare it with \
                                 `PollSource::new(\"{value}\", \"{}\", …)`, or remove this trigger",
                            file.slug
                        ),
                    )),
                    Some(_) => {}
                },
                _ => {
                    events += 1;
                    if events > 1 {
                        errors.push(error(
                            "a workflow has at most one `event` trigger".to_owned(),
                            "keep one `event` trigger; emit that event for every case".to_owned(),
                        ));
                    }
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(schedules)
    } else {
        Err(FileErrors(errors))
    }
}

/// `a`, `b` or "none".
fn known<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<String> = names.map(|n| format!("`{n}`")).collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

fn source_help(kind: &str, name: &str, slug: &str, known: String) -> String {
    let (builder, ty) = match kind {
        "webhook" => ("webhook", "WebhookSource::new"),
        _ => ("poll", "PollSource::new"),
    };
    format!(
        "declare the source in code (`.{builder}({ty}(\"{name}\", \"{slug}\")…)`) or fix the \
         name; configured {kind} sources: {known}"
    )
}

/// The cron schedule of a `cron` trigger.
fn cron_schedule(
    file: &WorkflowFile,
    trigger: &TriggerDef,
    expression: &str,
    n: usize,
) -> Result<CronSchedule, (String, String)> {
    let name = cron_name(file, trigger, n);
    let mut schedule = CronSchedule::new(name.clone(), expression, file.slug.clone())
        .map_err(|e| (e.to_string(), "fix the cron expression".to_owned()))?;
    if let Some(zone) = &trigger.timezone {
        schedule = schedule
            .time_zone(zone)
            .map_err(|e| (e.to_string(), "fix `timezone`".to_owned()))?;
    }
    let Some(template) = trigger.input.clone() else {
        return Ok(schedule);
    };
    // A trial render: a template may read `ctx.now` (the tick, RFC 3339) only.
    let trial =
        crate::files::expr::render_value(&template, &cron_scope("", &name)).map_err(|e| {
            (
                format!("the cron trigger's `input` does not render: {e}"),
                "an `input` template may read `ctx.now` (the tick, RFC 3339) and `ctx.schedule`"
                    .to_owned(),
            )
        })?;
    if trial == template {
        return Ok(schedule.input(template));
    }
    Ok(schedule.input_with(move |tick| {
        let now = tick.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        match crate::files::expr::render_value(&template, &cron_scope(&now, &name)) {
            Ok(input) => input,
            Err(error) => {
                tracing::error!(schedule = %name, %error, "cron trigger input does not render");
                Value::Null
            }
        }
    }))
}

/// What a cron trigger's `input` template reads: `ctx.now` (the tick) and `ctx.schedule`.
fn cron_scope(now: &str, schedule: &str) -> Value {
    json!({ "ctx": { "now": now, "schedule": schedule } })
}
