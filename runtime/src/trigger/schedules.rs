//! Schedules as data (DESIGN "Operations"; issue 15 item 7): schedules kept in the store
//! beside the [`CronSchedule`]s declared in code, managed at run time with
//! `schedules list|get|create|update|pause|resume|delete|trigger|backfill`, `/schedules` in
//! the HTTP API and the `*_schedule` methods of [`Engine`].
//!
//! - *Definition* ([`ScheduleSpec`]): a workflow, a cron expression (with a time zone) or
//!   an interval, a constant input (checked against the workflow's input schema when the
//!   schedule is created or changed), an [`OverlapPolicy`] and a catch-up window.
//! - *Firing*: the scheduler of `dev` and `worker` ([`super::run_schedules`]) reads the
//!   stored schedules on every turn (at least once a second), so creates, updates, pauses
//!   and deletes take effect within about a second, without a restart. Each tick's run is
//!   created under the key `schedule:<name>:<tick RFC 3339>` ([`schedule_run_key`]), so
//!   however many schedulers share the store, a tick starts one run. The run's trigger is
//!   [`crate::Trigger::Cron`] and its input the schedule's.
//! - *Position*: the cursor `schedule:<name>` holds the last handled tick, the run of the
//!   last fired tick (for the overlap policy) and a buffered tick. A new schedule starts
//!   at its creation: its first tick is the first one after it.
//! - *Missed ticks*: a tick older than the catch-up window when the scheduler sees it is
//!   skipped; the others fire once each, oldest first.
//! - *Paused*: no tick fires while a schedule is paused, and ticks that fell in the pause
//!   never fire (resuming moves its position to the moment of the resume). Code-declared schedules
//!   can be paused and resumed too (the paused state is a row without a definition).
//! - *Who asked*: every change records `by` (`cli:<user>`, `api`, or the caller's text)
//!   as the row's `created_by`/`updated_by`, and is logged with it.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::CronSchedule;
use crate::engine::Engine;
use crate::error::EngineError;
use crate::event::{RunId, RunStatus, Trigger};
use crate::store::ScheduleRow;

/// The most ticks one [`Engine::backfill_schedule`] fires; a longer range is refused.
pub const MAX_BACKFILL_TICKS: usize = 10_000;

/// The most ticks one scheduler turn fires for one schedule (a long catch-up window of a
/// frequent schedule is worked through over several turns).
const MAX_TICKS_PER_TURN: usize = 1000;

/// What a schedule does when a tick comes while the run of its previous tick has not
/// finished.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverlapPolicy {
    /// Starts no run for the tick (the default).
    #[default]
    Skip,
    /// Keeps the first such tick waiting and starts its run when the previous run ends;
    /// further ticks while one waits are skipped.
    BufferOne,
    /// Starts the tick's run anyway: runs of one schedule may overlap.
    Allow,
}

impl fmt::Display for OverlapPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OverlapPolicy::Skip => "skip",
            OverlapPolicy::BufferOne => "buffer_one",
            OverlapPolicy::Allow => "allow",
        })
    }
}

impl FromStr for OverlapPolicy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "skip" => Ok(OverlapPolicy::Skip),
            "buffer_one" | "buffer-one" => Ok(OverlapPolicy::BufferOne),
            "allow" => Ok(OverlapPolicy::Allow),
            other => Err(format!(
                "unknown overlap policy `{other}`; use `skip`, `buffer_one` or `allow`"
            )),
        }
    }
}

/// A schedule's definition, as stored and as sent to `POST /schedules` (with a `name`) or
/// `PUT /schedules/{name}`. Exactly one of `cron` and `interval` is set.
///
/// JSON: `{"workflow": "cleanup", "cron": "0 2 * * *", "time_zone": "Europe/Paris",
/// "input": {}, "overlap": "skip", "catch_up_window": "1m"}` or with `"interval": "15m"`
/// instead of `cron`. Omitted fields take their defaults: `time_zone` `UTC`, `input` `{}`,
/// `overlap` `skip`, `catch_up_window` `1m`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// The slug of the workflow each tick starts.
    pub workflow: String,
    /// A cron expression: five fields (`minute hour day-of-month month day-of-week`) or
    /// six (seconds first), as [`CronSchedule`] accepts, evaluated in `time_zone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// An interval (humantime: `30s`, `15m`, `1h 30m`, `1day`), at least one second, in
    /// whole seconds. Ticks are aligned to the Unix epoch: `15m` fires at :00, :15, :30
    /// and :45 of every hour (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// The IANA time zone cron ticks are computed in (default `UTC`); daylight-saving
    /// changes behave as for [`CronSchedule::time_zone`].
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// The input of every run (default `{}`), checked against the workflow's input schema
    /// when the schedule is created or changed. `null` for a code-declared schedule that
    /// computes its input from the tick.
    #[serde(default = "default_input")]
    pub input: Value,
    /// What to do when a tick comes while the previous run is unfinished (default
    /// [`OverlapPolicy::Skip`]).
    #[serde(default)]
    pub overlap: OverlapPolicy,
    /// How old a tick may be when the scheduler sees it and still fire (humantime, default
    /// `1m`, at least `1s`): ticks missed while no scheduler ran fire once each if they are
    /// within the window, older ones are skipped.
    #[serde(default = "default_catch_up")]
    pub catch_up_window: String,
}

fn default_time_zone() -> String {
    "UTC".to_owned()
}

fn default_input() -> Value {
    json!({})
}

fn default_catch_up() -> String {
    "1m".to_owned()
}

impl ScheduleSpec {
    /// A schedule of `workflow` at every tick of the cron expression `expression`, with
    /// the defaults (UTC, input `{}`, overlap `skip`, catch-up window `1m`).
    pub fn cron(workflow: impl Into<String>, expression: impl Into<String>) -> Self {
        Self::new(workflow, Some(expression.into()), None)
    }

    /// A schedule of `workflow` every `interval` (humantime, e.g. `15m`), with the
    /// defaults.
    pub fn every(workflow: impl Into<String>, interval: impl Into<String>) -> Self {
        Self::new(workflow, None, Some(interval.into()))
    }

    fn new(workflow: impl Into<String>, cron: Option<String>, interval: Option<String>) -> Self {
        ScheduleSpec {
            workflow: workflow.into(),
            cron,
            interval,
            time_zone: default_time_zone(),
            input: default_input(),
            overlap: OverlapPolicy::default(),
            catch_up_window: default_catch_up(),
        }
    }

    /// Sets the time zone (an IANA name such as `Europe/Paris`).
    #[must_use]
    pub fn time_zone(mut self, name: impl Into<String>) -> Self {
        self.time_zone = name.into();
        self
    }

    /// Sets the input of every run.
    #[must_use]
    pub fn input(mut self, input: Value) -> Self {
        self.input = input;
        self
    }

    /// Sets the overlap policy.
    #[must_use]
    pub fn overlap(mut self, policy: OverlapPolicy) -> Self {
        self.overlap = policy;
        self
    }

    /// Sets the catch-up window (humantime, e.g. `10m`).
    #[must_use]
    pub fn catch_up_window(mut self, window: impl Into<String>) -> Self {
        self.catch_up_window = window.into();
        self
    }

    /// Checks the definition of schedule `name`: timing, time zone, window, workflow,
    /// input.
    fn check(&self, name: &str, engine: &Engine) -> Result<Checked, ScheduleError> {
        let invalid =
            |message: String| ScheduleError::Invalid(format!("schedule `{name}`: {message}"));
        let tz = Tz::from_str(&self.time_zone).map_err(|_| {
            invalid(format!(
                "unknown time zone `{}`; use an IANA name such as `UTC`, `Europe/Paris` or \
                 `America/New_York`",
                self.time_zone
            ))
        })?;
        let timing = match (&self.cron, &self.interval) {
            (Some(expression), None) => {
                let cron = CronSchedule::new(name, expression, self.workflow.clone())
                    .and_then(|cron| cron.time_zone(tz.name()))
                    .map_err(|e| ScheduleError::Invalid(e.to_string()))?;
                Timing::Cron(Box::new(cron))
            }
            (None, Some(interval)) => {
                let every = humantime::parse_duration(interval.trim()).map_err(|e| {
                    invalid(format!(
                        "interval `{interval}` is not a duration ({e}); write e.g. `30s`, \
                         `15m`, `1h 30m` or `1day`"
                    ))
                })?;
                if every < Duration::from_secs(1) || every.subsec_nanos() != 0 {
                    return Err(invalid(format!(
                        "interval `{interval}` must be a whole number of seconds, at least `1s`"
                    )));
                }
                let seconds = i64::try_from(every.as_secs())
                    .ok()
                    .filter(|s| *s <= 100 * 366 * 24 * 3600)
                    .ok_or_else(|| invalid(format!("interval `{interval}` is too long")))?;
                Timing::Interval(seconds)
            }
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "it has both `cron` and `interval`; give exactly one".to_owned(),
                ));
            }
            (None, None) => {
                return Err(invalid(
                    "it has neither `cron` nor `interval`; give one, e.g. `\"cron\": \"0 2 * * \
                     *\"` or `\"interval\": \"15m\"`"
                        .to_owned(),
                ));
            }
        };
        let catch_up = humantime::parse_duration(self.catch_up_window.trim())
            .map_err(|e| {
                invalid(format!(
                    "catch-up window `{}` is not a duration ({e}); write e.g. `1m` or `1h`",
                    self.catch_up_window
                ))
            })
            .and_then(|window| {
                if window < Duration::from_secs(1) {
                    return Err(invalid(format!(
                        "catch-up window `{}` is shorter than `1s`; the scheduler looks once \
                         a second, so give it at least a few seconds",
                        self.catch_up_window
                    )));
                }
                chrono::Duration::from_std(window).map_err(|_| {
                    invalid(format!(
                        "catch-up window `{}` is too long",
                        self.catch_up_window
                    ))
                })
            })?;
        let entry = engine.workflow(&self.workflow).map_err(|_| {
            invalid(format!(
                "workflow `{}` is not registered; `workflows list` shows the registered ones",
                self.workflow
            ))
        })?;
        entry
            .input
            .validate(&self.input)
            .map_err(|violation| ScheduleError::Engine(EngineError::Schema(violation)))?;
        Ok(Checked { timing, catch_up })
    }
}

/// A checked definition: how its ticks are computed.
struct Checked {
    timing: Timing,
    catch_up: chrono::Duration,
}

enum Timing {
    Cron(Box<CronSchedule>),
    /// Every this many seconds, aligned to the Unix epoch.
    Interval(i64),
}

impl Timing {
    /// The first tick strictly after `after`.
    fn next_after(&self, after: DateTime<Utc>) -> Result<DateTime<Utc>, EngineError> {
        match self {
            Timing::Cron(cron) => cron.next_tick(after),
            Timing::Interval(every) => {
                let next = after
                    .timestamp()
                    .div_euclid(*every)
                    .checked_add(1)
                    .and_then(|n| n.checked_mul(*every));
                next.and_then(|secs| DateTime::from_timestamp(secs, 0))
                    .ok_or_else(|| EngineError::Config("schedule tick out of range".into()))
            }
        }
    }
}

/// Where a schedule is defined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleSource {
    /// Declared in code (`EngineBuilder::cron`): it can be paused, resumed, triggered and
    /// backfilled, but changed or deleted only in code.
    Code,
    /// Kept in the store (`schedules create`, `POST /schedules`).
    Data,
}

/// A schedule as `schedules list|get` and `GET /schedules` show it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Schedule {
    /// Its name.
    pub name: String,
    /// Where it is defined.
    pub source: ScheduleSource,
    /// Its definition (for a code-declared schedule: its cron expression, time zone,
    /// constant input or `null`, overlap `allow` and its grace period as catch-up window).
    #[serde(flatten)]
    pub spec: ScheduleSpec,
    /// Whether it is paused.
    pub paused: bool,
    /// Its next tick after now (UTC); `None` while paused.
    pub next_tick: Option<DateTime<Utc>>,
    /// When it was created (`None` for a code-declared schedule never paused).
    pub created_at: Option<DateTime<Utc>>,
    /// Who created it (`cli:<user>`, `api`, or the caller's text).
    pub created_by: Option<String>,
    /// When it last changed.
    pub updated_at: Option<DateTime<Utc>>,
    /// Who changed it last.
    pub updated_by: Option<String>,
}

/// What [`Engine::backfill_schedule`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Backfill {
    /// The schedule.
    pub schedule: String,
    /// Every tick in the range, oldest first.
    pub ticks: Vec<DateTime<Utc>>,
    /// The runs this call started (ticks that had no run yet).
    pub started: Vec<RunId>,
    /// How many ticks already had their run (fired before, or by an earlier backfill).
    pub existing: usize,
}

/// An error of a schedule operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The request is invalid (a bad cron expression, interval, time zone or window, an
    /// unknown workflow, a bad name or range); the message says what and how to fix it.
    /// HTTP 400 `invalid_schedule`, CLI exit 2.
    #[error("{0}")]
    Invalid(String),
    /// No schedule has this name. HTTP 404 `unknown_schedule`, CLI exit 2.
    #[error("no schedule named `{0}`; `schedules list` shows them")]
    Unknown(String),
    /// The operation conflicts with the schedule: the name is taken, or the schedule is
    /// declared in code and cannot be changed or deleted at run time. HTTP 409
    /// `schedule_conflict`, CLI exit 2.
    #[error("{0}")]
    Conflict(String),
    /// The engine or the store failed, or the input does not fit the workflow's schema
    /// ([`EngineError::Schema`]: HTTP 422).
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// The `create_run_once` key of the run of stored schedule `name` at `tick`:
/// `schedule:<name>:<tick, RFC 3339 UTC>`.
pub fn schedule_run_key(name: &str, tick: DateTime<Utc>) -> String {
    format!(
        "schedule:{name}:{}",
        tick.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

/// The cursor of stored schedule `name`.
fn cursor_name(name: &str) -> String {
    format!("schedule:{name}")
}

/// The position of a stored schedule, kept in its cursor.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Position {
    /// The `created_at` of the row this position belongs to: a schedule deleted and
    /// created again under the same name starts afresh.
    generation: Option<DateTime<Utc>>,
    /// The last tick handled (fired, skipped or buffered).
    tick: Option<DateTime<Utc>>,
    /// The run of the last fired tick.
    last_run: Option<RunId>,
    /// A tick waiting for the previous run to end ([`OverlapPolicy::BufferOne`]).
    buffered: Option<DateTime<Utc>>,
}

/// A stored schedule row with its definition decoded, or why it does not decode.
fn decode_spec(row: &ScheduleRow) -> Option<Result<ScheduleSpec, String>> {
    row.definition.as_ref().map(|definition| {
        serde_json::from_value::<ScheduleSpec>(definition.clone())
            .map_err(|e| format!("stored schedule `{}` does not decode: {e}", row.name))
    })
}

impl Engine {
    /// Every schedule, code-declared and stored, by name.
    ///
    /// # Errors
    /// Store failures.
    pub async fn list_schedules(&self) -> Result<Vec<Schedule>, ScheduleError> {
        let rows: HashMap<String, ScheduleRow> = self
            .store()
            .list_schedules()
            .await?
            .into_iter()
            .map(|row| (row.name.clone(), row))
            .collect();
        let mut out: Vec<Schedule> = self
            .triggers()
            .crons()
            .map(|cron| self.code_view(cron, rows.get(cron.name())))
            .collect();
        for row in rows.values() {
            if self.code_schedule(&row.name).is_some() {
                continue;
            }
            match decode_spec(row) {
                Some(Ok(spec)) => out.push(self.data_view(row, spec)),
                Some(Err(problem)) => tracing::warn!(schedule = %row.name, "{problem}"),
                None => {}
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Schedule `name`.
    ///
    /// # Errors
    /// [`ScheduleError::Unknown`]; store failures.
    pub async fn get_schedule(&self, name: &str) -> Result<Schedule, ScheduleError> {
        let row = self.store().schedule(name).await?;
        if let Some(cron) = self.code_schedule(name) {
            return Ok(self.code_view(cron, row.as_ref()));
        }
        let row = row.ok_or_else(|| ScheduleError::Unknown(name.to_owned()))?;
        match decode_spec(&row) {
            Some(Ok(spec)) => Ok(self.data_view(&row, spec)),
            Some(Err(problem)) => Err(EngineError::Store(problem).into()),
            None => Err(ScheduleError::Unknown(name.to_owned())),
        }
    }

    /// Creates stored schedule `name` (letters, digits, `-`, `_`, `.`) from `spec`,
    /// `paused` or not, recorded as created by `by`. Its first tick is the first one after
    /// now.
    ///
    /// # Errors
    /// [`ScheduleError::Invalid`] (name, timing, time zone, window, workflow),
    /// [`EngineError::Schema`] (input), [`ScheduleError::Conflict`] when the name is taken
    /// (in code or in the store); store failures.
    pub async fn create_schedule(
        &self,
        name: &str,
        spec: ScheduleSpec,
        paused: bool,
        by: &str,
    ) -> Result<Schedule, ScheduleError> {
        super::check_name(name)
            .map_err(|problem| ScheduleError::Invalid(format!("schedule `{name}`: {problem}")))?;
        spec.check(name, self)?;
        if self.code_schedule(name).is_some() {
            return Err(ScheduleError::Conflict(format!(
                "schedule `{name}` is declared in code (`EngineBuilder::cron`); pick another name"
            )));
        }
        let now = self.now();
        let row = ScheduleRow {
            name: name.to_owned(),
            definition: Some(serde_json::to_value(&spec).map_err(EngineError::from)?),
            paused,
            created_at: now,
            created_by: by.to_owned(),
            updated_at: now,
            updated_by: by.to_owned(),
        };
        if !self.store().create_schedule(&row).await? {
            return Err(ScheduleError::Conflict(format!(
                "a schedule named `{name}` exists already; change it with `schedules update \
                 {name}` (PUT/PATCH /schedules/{name}) or pick another name"
            )));
        }
        tracing::info!(schedule = name, by, workflow = %spec.workflow, "schedule created");
        Ok(self.data_view(&row, spec))
    }

    /// Replaces the definition of stored schedule `name` with `spec` (its paused state
    /// stays), recorded as changed by `by`. Ticks from now on follow the new definition.
    ///
    /// # Errors
    /// As [`Engine::create_schedule`]; [`ScheduleError::Unknown`];
    /// [`ScheduleError::Conflict`] for a code-declared schedule.
    pub async fn update_schedule(
        &self,
        name: &str,
        spec: ScheduleSpec,
        by: &str,
    ) -> Result<Schedule, ScheduleError> {
        self.refuse_code(name, "changed")?;
        spec.check(name, self)?;
        let mut row = self.stored_row(name).await?;
        row.definition = Some(serde_json::to_value(&spec).map_err(EngineError::from)?);
        row.updated_at = self.now();
        row.updated_by = by.to_owned();
        if !self.store().update_schedule(&row).await? {
            return Err(ScheduleError::Unknown(name.to_owned()));
        }
        tracing::info!(schedule = name, by, "schedule updated");
        Ok(self.data_view(&row, spec))
    }

    /// Changes some fields of stored schedule `name`: `patch` is a JSON object of
    /// [`ScheduleSpec`] fields (a `null` field returns to its default; setting `cron`
    /// drops `interval` and the other way round), applied as by
    /// [`Engine::update_schedule`].
    ///
    /// # Errors
    /// As [`Engine::update_schedule`]; [`ScheduleError::Invalid`] when `patch` is not an
    /// object of known fields.
    pub async fn patch_schedule(
        &self,
        name: &str,
        patch: Value,
        by: &str,
    ) -> Result<Schedule, ScheduleError> {
        self.refuse_code(name, "changed")?;
        let row = self.stored_row(name).await?;
        let current = match decode_spec(&row) {
            Some(Ok(spec)) => spec,
            Some(Err(problem)) => return Err(EngineError::Store(problem).into()),
            None => return Err(ScheduleError::Unknown(name.to_owned())),
        };
        let Value::Object(patch) = patch else {
            return Err(ScheduleError::Invalid(format!(
                "schedule `{name}`: the change must be a JSON object of fields such as \
                 `{{\"cron\": \"0 3 * * *\"}}`"
            )));
        };
        let Value::Object(mut merged) =
            serde_json::to_value(&current).map_err(EngineError::from)?
        else {
            return Err(EngineError::Serde("a schedule is not an object".into()).into());
        };
        let sets = |key: &str| patch.get(key).is_some_and(|v| !v.is_null());
        if sets("cron") && !patch.contains_key("interval") {
            merged.remove("interval");
        }
        if sets("interval") && !patch.contains_key("cron") {
            merged.remove("cron");
        }
        for (key, value) in patch {
            if value.is_null() {
                merged.remove(&key);
            } else {
                merged.insert(key, value);
            }
        }
        let spec: ScheduleSpec = serde_json::from_value(Value::Object(merged))
            .map_err(|e| ScheduleError::Invalid(format!("schedule `{name}`: {e}")))?;
        self.update_schedule(name, spec, by).await
    }

    /// Deletes stored schedule `name` (`by` is logged): no tick of it fires any more; its
    /// runs stay.
    ///
    /// # Errors
    /// [`ScheduleError::Unknown`]; [`ScheduleError::Conflict`] for a code-declared
    /// schedule; store failures.
    pub async fn delete_schedule(&self, name: &str, by: &str) -> Result<(), ScheduleError> {
        self.refuse_code(name, "deleted")?;
        self.stored_row(name).await?;
        if !self.store().delete_schedule(name).await? {
            return Err(ScheduleError::Unknown(name.to_owned()));
        }
        tracing::info!(schedule = name, by, "schedule deleted");
        Ok(())
    }

    /// Pauses schedule `name` (stored or code-declared), recorded as changed by `by`: no
    /// tick fires until [`Engine::resume_schedule`], and ticks in the pause never fire.
    ///
    /// # Errors
    /// [`ScheduleError::Unknown`]; store failures.
    pub async fn pause_schedule(&self, name: &str, by: &str) -> Result<Schedule, ScheduleError> {
        self.set_paused(name, true, by).await
    }

    /// Resumes schedule `name`, recorded as changed by `by`: its next tick after now fires;
    /// ticks that fell in the pause do not.
    ///
    /// # Errors
    /// [`ScheduleError::Unknown`]; store failures.
    pub async fn resume_schedule(&self, name: &str, by: &str) -> Result<Schedule, ScheduleError> {
        self.set_paused(name, false, by).await
    }

    async fn set_paused(
        &self,
        name: &str,
        paused: bool,
        by: &str,
    ) -> Result<Schedule, ScheduleError> {
        let schedule = self.get_schedule(name).await?;
        let now = self.now();
        if !paused {
            // Start from now: ticks of the pause never fire, also when no scheduler
            // looked during the pause.
            let anchor = now.trunc_subsecs(0);
            match self.code_schedule(name) {
                Some(cron) => {
                    self.store()
                        .set_cursor(&cron.cursor_name(), &super::cron::cursor_value(anchor))
                        .await?;
                }
                None => {
                    let cursor = cursor_name(name);
                    let mut position = self.position(&cursor).await;
                    position.generation = schedule.created_at;
                    position.tick = Some(anchor);
                    position.buffered = None;
                    self.store().set_cursor(&cursor, &json!(position)).await?;
                }
            }
        }
        self.store()
            .set_schedule_paused(name, paused, by, now)
            .await?;
        let what = if paused { "paused" } else { "resumed" };
        tracing::info!(schedule = name, by, "schedule {what}");
        self.get_schedule(name).await
    }

    /// Starts one run of schedule `name` now, outside its ticks (also while paused), with
    /// its input (for a code schedule computing its input, the input of a tick now).
    /// `by` is logged. Returns the run.
    ///
    /// # Errors
    /// [`ScheduleError::Unknown`]; [`EngineError::Schema`] when the input no longer fits
    /// the workflow; store failures.
    pub async fn trigger_schedule(&self, name: &str, by: &str) -> Result<RunId, ScheduleError> {
        let now = self.now();
        let (workflow, input) = match self.code_schedule(name) {
            Some(cron) => (cron.workflow.clone(), self.code_input(cron, now)?),
            None => {
                let schedule = self.get_schedule(name).await?;
                (schedule.spec.workflow, schedule.spec.input)
            }
        };
        let (id, _) = self
            .start_with(&workflow, input, Trigger::Cron, schedule_options(name, now))
            .await?;
        tracing::info!(schedule = name, by, run = %id, "schedule triggered by hand");
        Ok(id)
    }

    /// Fires every tick of schedule `name` from `from` to `to` (both included, UTC), each
    /// under its tick's key, so a tick that already has its run (fired on time, or by an
    /// earlier backfill) starts nothing: running a backfill twice starts no duplicate.
    /// Paused state and overlap policy do not apply. `by` is logged.
    ///
    /// # Errors
    /// [`ScheduleError::Invalid`] when `from` is after `to`, `to` is after now, or the
    /// range holds more than [`MAX_BACKFILL_TICKS`] ticks; [`ScheduleError::Unknown`];
    /// [`EngineError::Schema`]; store failures.
    pub async fn backfill_schedule(
        &self,
        name: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        by: &str,
    ) -> Result<Backfill, ScheduleError> {
        if from > to {
            return Err(ScheduleError::Invalid(format!(
                "backfill of `{name}`: the start {from} is after the end {to}; give --from \
                 before --to"
            )));
        }
        let now = self.now();
        if to > now {
            return Err(ScheduleError::Invalid(format!(
                "backfill of `{name}`: the end {to} is in the future (now is {now}); a \
                 backfill fires past ticks only, the scheduler fires the future ones"
            )));
        }
        let start = from
            .trunc_subsecs(0)
            .checked_sub_signed(chrono::Duration::seconds(1))
            .unwrap_or(from);
        let mut backfill = Backfill {
            schedule: name.to_owned(),
            ticks: Vec::new(),
            started: Vec::new(),
            existing: 0,
        };
        let ticks = |next: &dyn Fn(DateTime<Utc>) -> Result<DateTime<Utc>, EngineError>| {
            let mut ticks = Vec::new();
            let mut after = start;
            loop {
                let tick = next(after)?;
                if tick > to {
                    return Ok(ticks);
                }
                if ticks.len() == MAX_BACKFILL_TICKS {
                    return Err(ScheduleError::Invalid(format!(
                        "backfill of `{name}`: the range holds more than {MAX_BACKFILL_TICKS} \
                         ticks; backfill it in shorter ranges"
                    )));
                }
                ticks.push(tick);
                after = tick;
            }
        };
        if let Some(cron) = self.code_schedule(name) {
            backfill.ticks = ticks(&|after| cron.next_tick(after))?;
            for tick in backfill.ticks.clone() {
                let input = self.code_input(cron, tick)?;
                let runs = self
                    .start_occurrence(
                        &cron.workflow,
                        input,
                        Trigger::Cron,
                        &cron.run_key(tick),
                        schedule_options(name, tick),
                    )
                    .await?;
                for (id, created) in runs {
                    tally(&mut backfill, id, created);
                }
            }
        } else {
            let schedule = self.get_schedule(name).await?;
            let checked = schedule.spec.check(name, self)?;
            backfill.ticks = ticks(&|after| checked.timing.next_after(after))?;
            for tick in backfill.ticks.clone() {
                let runs = self
                    .start_occurrence(
                        &schedule.spec.workflow,
                        schedule.spec.input.clone(),
                        Trigger::Cron,
                        &schedule_run_key(name, tick),
                        schedule_options(name, tick),
                    )
                    .await?;
                for (id, created) in runs {
                    tally(&mut backfill, id, created);
                }
            }
        }
        tracing::info!(
            schedule = name,
            by,
            %from,
            %to,
            started = backfill.started.len(),
            existing = backfill.existing,
            "schedule backfilled"
        );
        Ok(backfill)
    }

    fn code_schedule(&self, name: &str) -> Option<&CronSchedule> {
        self.triggers().crons().find(|cron| cron.name() == name)
    }

    fn refuse_code(&self, name: &str, what: &str) -> Result<(), ScheduleError> {
        if self.code_schedule(name).is_some() {
            return Err(ScheduleError::Conflict(format!(
                "schedule `{name}` is declared in code (`EngineBuilder::cron`) and cannot be \
                 {what} at run time; change it in the code and deploy, or pause it with \
                 `schedules pause {name}`"
            )));
        }
        Ok(())
    }

    /// The stored row of data schedule `name`.
    async fn stored_row(&self, name: &str) -> Result<ScheduleRow, ScheduleError> {
        match self.store().schedule(name).await? {
            Some(row) if row.definition.is_some() => Ok(row),
            _ => Err(ScheduleError::Unknown(name.to_owned())),
        }
    }

    fn code_input(&self, cron: &CronSchedule, tick: DateTime<Utc>) -> Result<Value, ScheduleError> {
        super::guarded(|| (cron.input)(tick)).map_err(|panic| {
            ScheduleError::Engine(EngineError::Config(format!(
                "schedule `{}`: its input function {panic}",
                cron.name()
            )))
        })
    }

    fn code_view(&self, cron: &CronSchedule, row: Option<&ScheduleRow>) -> Schedule {
        let paused = row.is_some_and(|row| row.paused);
        Schedule {
            name: cron.name().to_owned(),
            source: ScheduleSource::Code,
            spec: ScheduleSpec {
                workflow: cron.workflow().to_owned(),
                cron: Some(cron.expression().to_owned()),
                interval: None,
                time_zone: cron.time_zone_name().to_owned(),
                input: cron.constant_input.clone().unwrap_or(Value::Null),
                overlap: OverlapPolicy::Allow,
                catch_up_window: humantime::format_duration(cron.grace_period()).to_string(),
            },
            paused,
            next_tick: if paused {
                None
            } else {
                cron.next_tick(self.now()).ok()
            },
            created_at: row.map(|row| row.created_at),
            created_by: row.map(|row| row.created_by.clone()),
            updated_at: row.map(|row| row.updated_at),
            updated_by: row.map(|row| row.updated_by.clone()),
        }
    }

    fn data_view(&self, row: &ScheduleRow, spec: ScheduleSpec) -> Schedule {
        let next_tick = if row.paused {
            None
        } else {
            spec.check(&row.name, self)
                .ok()
                .and_then(|checked| checked.timing.next_after(self.now()).ok())
        };
        Schedule {
            name: row.name.clone(),
            source: ScheduleSource::Data,
            spec,
            paused: row.paused,
            next_tick,
            created_at: Some(row.created_at),
            created_by: Some(row.created_by.clone()),
            updated_at: Some(row.updated_at),
            updated_by: Some(row.updated_by.clone()),
        }
    }

    /// The stored position under `cursor` (a fresh one when missing or unreadable).
    async fn position(&self, cursor: &str) -> Position {
        match self.store().cursor(cursor).await {
            Ok(Some(value)) => serde_json::from_value(value).unwrap_or_else(|e| {
                tracing::warn!(
                    cursor,
                    "schedule position does not decode ({e}); the schedule starts again from \
                     its creation, within its catch-up window"
                );
                Position::default()
            }),
            _ => Position::default(),
        }
    }
}

fn tally(backfill: &mut Backfill, id: RunId, created: bool) {
    if created {
        backfill.started.push(id);
    } else {
        backfill.existing += 1;
    }
}

/// One scheduler turn over the stored schedules `rows` (code-declared pause rows are
/// skipped): fires their due ticks at the engine's now. Returns the runs created and the
/// first error (each schedule still gets its turn).
pub(super) async fn fire_stored(
    engine: &Engine,
    rows: &[ScheduleRow],
) -> (Vec<RunId>, Vec<(String, EngineError)>) {
    let mut started = Vec::new();
    let mut errors = Vec::new();
    for row in rows {
        if engine.code_schedule(&row.name).is_some() {
            continue;
        }
        let spec = match decode_spec(row) {
            Some(Ok(spec)) => spec,
            Some(Err(problem)) => {
                errors.push((row.name.clone(), EngineError::Store(problem)));
                continue;
            }
            None => continue,
        };
        match fire_one(engine, row, &spec).await {
            Ok(runs) => started.extend(runs),
            Err(error) => errors.push((row.name.clone(), error)),
        }
    }
    (started, errors)
}

/// Fires the due ticks of one stored schedule.
async fn fire_one(
    engine: &Engine,
    row: &ScheduleRow,
    spec: &ScheduleSpec,
) -> Result<Vec<RunId>, EngineError> {
    let store = engine.store();
    let cursor = cursor_name(&row.name);
    let now = engine.now();
    let mut position = engine.position(&cursor).await;
    if position.generation != Some(row.created_at) || position.tick.is_none() {
        // A new schedule (or one deleted and created again): start at its creation.
        position = Position {
            generation: Some(row.created_at),
            tick: Some(row.created_at.trunc_subsecs(0)),
            ..Position::default()
        };
    }
    if row.paused {
        // Nothing fires and nothing is written: resuming moves the position to the moment
        // of the resume, so the ticks of the pause never fire.
        return Ok(Vec::new());
    }
    let before = position.clone();
    let checked = match spec.check(&row.name, engine) {
        Ok(checked) => checked,
        Err(error) => {
            // The workflow was unregistered, or its schema changed: nothing can fire.
            return Err(EngineError::Config(format!(
                "{error}; its ticks are skipped until it is fixed (`schedules update {}`)",
                row.name
            )));
        }
    };
    let last = position.tick.unwrap_or(row.created_at);
    let oldest = now
        .checked_sub_signed(checked.catch_up)
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
        .trunc_subsecs(0);
    let mut after = last.max(
        oldest
            .checked_sub_signed(chrono::Duration::seconds(1))
            .unwrap_or(oldest),
    );
    let mut ticks = Vec::new();
    while ticks.len() < MAX_TICKS_PER_TURN {
        let tick = checked.timing.next_after(after)?;
        if tick > now {
            break;
        }
        ticks.push(tick);
        after = tick;
    }
    let mut started = Vec::new();
    let result = fire_ticks(engine, row, spec, &ticks, &mut position, &mut started).await;
    if position != before {
        store.set_cursor(&cursor, &json!(position)).await?;
    }
    result.map(|()| started)
}

/// Fires a buffered tick whose wait is over, then `ticks` under the overlap policy;
/// updates `position` as it goes (`position.tick` is left to the caller).
async fn fire_ticks(
    engine: &Engine,
    row: &ScheduleRow,
    spec: &ScheduleSpec,
    ticks: &[DateTime<Utc>],
    position: &mut Position,
    started: &mut Vec<RunId>,
) -> Result<(), EngineError> {
    if let Some(buffered) = position.buffered
        && !previous_unfinished(engine, position).await?
    {
        position.buffered = None;
        fire_tick(engine, row, spec, buffered, position, started).await?;
    }
    for &tick in ticks {
        let busy =
            spec.overlap != OverlapPolicy::Allow && previous_unfinished(engine, position).await?;
        if !busy {
            fire_tick(engine, row, spec, tick, position, started).await?;
            position.tick = Some(tick);
            continue;
        }
        match spec.overlap {
            OverlapPolicy::BufferOne if position.buffered.is_none() => {
                tracing::info!(schedule = %row.name, %tick, "schedule tick waits for the previous run to end (overlap buffer_one)");
                position.buffered = Some(tick);
            }
            _ => {
                tracing::info!(schedule = %row.name, %tick, run = ?position.last_run, "schedule tick skipped: the previous run has not ended (overlap {})", spec.overlap);
            }
        }
        position.tick = Some(tick);
    }
    Ok(())
}

/// Whether the run of the schedule's last fired tick has not ended.
async fn previous_unfinished(engine: &Engine, position: &Position) -> Result<bool, EngineError> {
    let Some(run) = &position.last_run else {
        return Ok(false);
    };
    match engine.store().run(run).await? {
        Some(record) => Ok(!matches!(
            record.status,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Canceled
        )),
        None => Ok(false),
    }
}

/// The options of a run of schedule `name`'s `tick`: its actor.
fn schedule_options(name: &str, tick: DateTime<Utc>) -> crate::StartOptions {
    crate::StartOptions::new().actor(crate::identity::Actor::Schedule {
        name: name.to_owned(),
        tick,
    })
}

async fn fire_tick(
    engine: &Engine,
    row: &ScheduleRow,
    spec: &ScheduleSpec,
    tick: DateTime<Utc>,
    position: &mut Position,
    started: &mut Vec<RunId>,
) -> Result<(), EngineError> {
    let key = schedule_run_key(&row.name, tick);
    let options = schedule_options(&row.name, tick);
    match engine
        .start_occurrence(
            &spec.workflow,
            spec.input.clone(),
            Trigger::Cron,
            &key,
            options,
        )
        .await
    {
        Ok(runs) => {
            for (id, created) in runs {
                if created {
                    tracing::info!(schedule = %row.name, %tick, run = %id, "schedule tick started a run");
                    started.push(id.clone());
                } else {
                    tracing::debug!(schedule = %row.name, %tick, run = %id, "schedule tick already fired");
                }
                // The overlap policy looks at the tick's last run (of a subscribable
                // workflow: its last subscription's).
                position.last_run = Some(id);
            }
            Ok(())
        }
        Err(error @ (EngineError::Schema(_) | EngineError::UnknownWorkflow(_))) => {
            tracing::error!(schedule = %row.name, %tick, "schedule tick skipped: {error}");
            Ok(())
        }
        Err(error) => Err(error),
    }
}
