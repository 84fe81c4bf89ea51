//! Cron schedules: [`CronSchedule`] and the [`MissedTicks`] policy.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, SubsecRound, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde_json::{Value, json};

use super::{definition_error, guarded};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::event::{RunId, Trigger};

/// What a [`CronSchedule`] does with ticks that passed while no scheduler was running
/// (the process was down, or the machine slept).
///
/// A tick counts as *missed* when the scheduler first notices it more than the schedule's
/// grace period (default one minute, see [`CronSchedule::grace`]) after its time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum MissedTicks {
    /// Fire nothing for missed ticks: the schedule goes on with the next tick (default).
    #[default]
    Skip,
    /// Fire one run for the most recent missed tick, however many were missed; ticks that
    /// are on time fire as usual.
    RunOnce,
}

type InputFn = Arc<dyn Fn(DateTime<Utc>) -> Value + Send + Sync>;

/// A cron schedule: starts one run of a workflow at every tick of a cron expression.
///
/// Expressions have five fields (`minute hour day-of-month month day-of-week`) or six
/// (seconds first), as parsed by [croner](https://docs.rs/croner): ranges, steps, `L`,
/// `#`, `W`, names (`MON`, `JAN`) and aliases such as `@hourly` are accepted. Ticks are
/// computed in UTC unless a [time zone](CronSchedule::time_zone) is set.
///
/// ```no_run
/// # fn demo() -> Result<(), reprise::EngineError> {
/// use reprise::trigger::{CronSchedule, MissedTicks};
///
/// let nightly = CronSchedule::new("nightly-report", "0 9 * * MON-FRI", "daily-report")?
///     .time_zone("Europe/Paris")?
///     .input_with(|tick| serde_json::json!({ "day": tick.date_naive().to_string() }))
///     .missed(MissedTicks::RunOnce);
/// let engine = reprise::Engine::builder().discover()?.cron(nightly).build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct CronSchedule {
    pub(crate) name: String,
    expression: String,
    cron: Cron,
    pub(crate) workflow: String,
    pub(crate) input: InputFn,
    pub(crate) constant_input: Option<Value>,
    time_zone: Option<Tz>,
    missed: MissedTicks,
    grace: Duration,
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CronSchedule")
            .field("name", &self.name)
            .field("expression", &self.expression)
            .field("workflow", &self.workflow)
            .field("time_zone", &self.time_zone_name())
            .field("missed", &self.missed)
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

impl CronSchedule {
    /// A schedule named `name` (unique among cron schedules; letters, digits, `-`, `_`,
    /// `.`) that starts workflow `workflow` with input `{}` at every tick of `expression`,
    /// in UTC, skipping missed ticks.
    ///
    /// # Errors
    /// When `expression` is not a valid cron expression, or never matches any time
    /// (e.g. `0 0 30 2 *`, February 30th).
    pub fn new(
        name: impl Into<String>,
        expression: &str,
        workflow: impl Into<String>,
    ) -> Result<CronSchedule, EngineError> {
        let name = name.into();
        let cron = Cron::from_str(expression).map_err(|e| {
            definition_error(format!(
                "cron schedule `{name}`: `{expression}` is not a valid cron expression ({e}); \
                 use five fields `minute hour day-of-month month day-of-week` (e.g. `0 9 * * *` \
                 for 09:00 every day) or six with seconds first"
            ))
        })?;
        if let Err(e) = cron.find_next_occurrence(&Utc::now(), false) {
            return Err(definition_error(format!(
                "cron schedule `{name}`: `{expression}` never matches a time ({e})"
            )));
        }
        Ok(CronSchedule {
            name,
            expression: expression.to_owned(),
            cron,
            workflow: workflow.into(),
            input: Arc::new(|_| json!({})),
            constant_input: Some(json!({})),
            time_zone: None,
            missed: MissedTicks::Skip,
            grace: Duration::from_secs(60),
        })
    }

    /// Starts every run with `input` (default `{}`). It is checked against the workflow's
    /// input schema when the engine is built.
    pub fn input(mut self, input: Value) -> Self {
        let shared = input.clone();
        self.input = Arc::new(move |_| shared.clone());
        self.constant_input = Some(input);
        self
    }

    /// Computes each run's input from its tick (the scheduled instant, UTC, not the moment
    /// the scheduler noticed it). The input is validated when the run starts; a tick whose
    /// input is invalid is logged and skipped.
    pub fn input_with(
        mut self,
        input: impl Fn(DateTime<Utc>) -> Value + Send + Sync + 'static,
    ) -> Self {
        self.input = Arc::new(input);
        self.constant_input = None;
        self
    }

    /// Computes ticks in the IANA time zone `name` (e.g. `Europe/Paris`,
    /// `America/New_York`) instead of UTC, following its daylight-saving changes: a
    /// wall-clock time that does not exist on a spring-forward day fires right after the
    /// gap; one that exists twice on a fall-back day fires once, at its first occurrence.
    ///
    /// # Errors
    /// When `name` is not a known IANA time zone.
    pub fn time_zone(mut self, name: &str) -> Result<Self, EngineError> {
        let tz = Tz::from_str(name).map_err(|_| {
            definition_error(format!(
                "cron schedule `{}`: unknown time zone `{name}`; use an IANA name such as \
                 `UTC`, `Europe/Paris` or `America/New_York`",
                self.name
            ))
        })?;
        self.time_zone = Some(tz);
        Ok(self)
    }

    /// What to do with ticks missed while no scheduler ran (default [`MissedTicks::Skip`]).
    pub fn missed(mut self, policy: MissedTicks) -> Self {
        self.missed = policy;
        self
    }

    /// How late a tick may be noticed and still fire as on time (default 60 s); a tick
    /// noticed later counts as missed (see [`MissedTicks`]). The scheduling loop looks at
    /// least once a second, so this only matters after downtime.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The schedule's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cron expression.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The slug of the workflow it starts.
    pub fn workflow(&self) -> &str {
        &self.workflow
    }

    /// The time zone ticks are computed in (`UTC` by default).
    pub fn time_zone_name(&self) -> &str {
        self.time_zone.as_ref().map_or("UTC", |tz| tz.name())
    }

    /// How late a tick may be noticed and still fire as on time (see
    /// [`CronSchedule::grace`]).
    pub fn grace_period(&self) -> Duration {
        self.grace
    }

    /// The missed-tick policy.
    pub fn missed_policy(&self) -> MissedTicks {
        self.missed
    }

    /// The name of the durable cursor holding the last handled tick: `cron:<name>`.
    pub fn cursor_name(&self) -> String {
        format!("cron:{}", self.name)
    }

    /// The `create_run_once` key of the run of `tick`: `cron:<name>:<tick, RFC 3339 UTC>`.
    pub fn run_key(&self, tick: DateTime<Utc>) -> String {
        format!(
            "cron:{}:{}",
            self.name,
            tick.to_rfc3339_opts(SecondsFormat::Secs, true)
        )
    }

    /// The first tick strictly after `after`.
    ///
    /// # Errors
    /// When croner cannot find one (the search limit was exceeded).
    pub fn next_tick(&self, after: DateTime<Utc>) -> Result<DateTime<Utc>, EngineError> {
        let after = after.trunc_subsecs(0);
        match self.time_zone {
            Some(tz) => self.next_in(&after.with_timezone(&tz)),
            None => self.next_in(&after),
        }
    }

    fn next_in<Z: TimeZone>(&self, after: &DateTime<Z>) -> Result<DateTime<Utc>, EngineError> {
        self.cron
            .find_next_occurrence(after, false)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| self.cron_error(e))
    }

    /// The last tick strictly before `before`, if croner finds one.
    fn previous_tick(&self, before: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let found = match self.time_zone {
            Some(tz) => self
                .cron
                .find_previous_occurrence(&before.with_timezone(&tz), false)
                .map(|t| t.with_timezone(&Utc)),
            None => self.cron.find_previous_occurrence(&before, false),
        };
        found.ok()
    }

    fn cron_error(&self, error: croner::errors::CronError) -> EngineError {
        definition_error(format!(
            "cron schedule `{}` (`{}`): {error}",
            self.name, self.expression
        ))
    }

    /// The ticks to fire at `now` given the last handled tick `last`, and the new cursor
    /// value (the latest tick handled, fired or skipped), if any tick was handled.
    fn plan(&self, last: DateTime<Utc>, now: DateTime<Utc>) -> Result<Plan, EngineError> {
        const MAX_ON_TIME: usize = 1000;
        let grace = chrono::Duration::from_std(self.grace).unwrap_or(chrono::Duration::MAX);
        // Ticks are whole seconds: `t >= on_time_from` ⇔ `t > on_time_from - 1 s`.
        let on_time_from = now
            .checked_sub_signed(grace)
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
            .trunc_subsecs(0);
        let exclusive_start = last.max(
            on_time_from
                .checked_sub_signed(chrono::Duration::seconds(1))
                .unwrap_or(on_time_from),
        );
        let mut on_time = Vec::new();
        let mut after = exclusive_start;
        while on_time.len() < MAX_ON_TIME {
            let tick = self.next_tick(after)?;
            if tick > now {
                break;
            }
            on_time.push(tick);
            after = tick;
        }
        let missed = if last < on_time_from {
            self.previous_tick(on_time_from).filter(|t| *t > last)
        } else {
            None
        };
        let cursor = on_time.last().copied().or(missed);
        let mut fire = Vec::new();
        if self.missed == MissedTicks::RunOnce {
            fire.extend(missed);
        }
        fire.extend(on_time);
        Ok(Plan { fire, cursor })
    }

    /// Fires the ticks due at the engine's `now`; returns the runs it created.
    pub(crate) async fn fire_due(&self, engine: &Engine) -> Result<Vec<RunId>, EngineError> {
        let store = engine.store();
        let cursor_name = self.cursor_name();
        let now = engine.now();
        let last = match store.cursor(&cursor_name).await? {
            Some(value) => parse_cursor(&cursor_name, &value)?,
            None => {
                // First start: begin from now, no backfill.
                let anchor = now.trunc_subsecs(0);
                store
                    .set_cursor(&cursor_name, &cursor_value(anchor))
                    .await?;
                tracing::info!(
                    schedule = %self.name,
                    next = ?self.next_tick(anchor).ok(),
                    "cron schedule starts"
                );
                return Ok(Vec::new());
            }
        };
        if now <= last {
            return Ok(Vec::new());
        }
        let Plan { fire, cursor } = self.plan(last, now)?;
        let Some(cursor) = cursor else {
            return Ok(Vec::new());
        };
        let mut started = Vec::new();
        for tick in fire {
            if let Err(error) = self.fire(engine, tick, &mut started).await {
                // Progress so far stays recorded: runs are keyed by tick, so firing the
                // remaining ticks again later can never start one twice.
                if let Some(done) = tick.checked_sub_signed(chrono::Duration::seconds(1))
                    && done > last
                {
                    store.set_cursor(&cursor_name, &cursor_value(done)).await?;
                }
                return Err(error);
            }
        }
        store
            .set_cursor(&cursor_name, &cursor_value(cursor))
            .await?;
        Ok(started)
    }

    async fn fire(
        &self,
        engine: &Engine,
        tick: DateTime<Utc>,
        started: &mut Vec<RunId>,
    ) -> Result<(), EngineError> {
        let input = match guarded(|| (self.input)(tick)) {
            Ok(input) => input,
            Err(panic) => {
                tracing::error!(schedule = %self.name, %tick, "cron input function {panic}; tick skipped");
                return Ok(());
            }
        };
        let key = self.run_key(tick);
        let options = crate::StartOptions::new().actor(crate::identity::Actor::Schedule {
            name: self.name.clone(),
            tick,
        });
        match engine
            .start_occurrence(&self.workflow, input, Trigger::Cron, &key, options)
            .await
        {
            Ok(runs) => {
                for (id, created) in runs {
                    if created {
                        tracing::info!(schedule = %self.name, %tick, run = %id, "cron tick started a run");
                        started.push(id);
                    } else {
                        tracing::debug!(schedule = %self.name, %tick, run = %id, "cron tick already fired");
                    }
                }
                Ok(())
            }
            Err(error @ (EngineError::Schema(_) | EngineError::UnknownWorkflow(_))) => {
                // Retrying would fail the same way forever: report and go on.
                tracing::error!(schedule = %self.name, %tick, "cron tick skipped: {error}");
                Ok(())
            }
            Err(error) => Err(error),
        }
    }
}

/// What [`CronSchedule::plan`] decided.
#[derive(Debug, PartialEq)]
struct Plan {
    /// The ticks to fire, oldest first.
    fire: Vec<DateTime<Utc>>,
    /// The latest tick handled (fired or skipped), the new cursor; `None`: no tick.
    cursor: Option<DateTime<Utc>>,
}

/// The cursor value of a last handled `tick`.
pub(super) fn cursor_value(tick: DateTime<Utc>) -> Value {
    Value::String(tick.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

fn parse_cursor(name: &str, value: &Value) -> Result<DateTime<Utc>, EngineError> {
    value
        .as_str()
        .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| {
            EngineError::Store(format!(
                "cursor `{name}` holds {value}, not an RFC 3339 time; delete it to restart the \
                 schedule from now"
            ))
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn plan_splits_on_time_and_missed_ticks() {
        let s = CronSchedule::new("s", "0 * * * *", "w").unwrap();
        // On time: the 10:00 tick noticed at 10:00:30.
        let Plan { fire, cursor } = s
            .plan(at("2026-01-01T09:30:00Z"), at("2026-01-01T10:00:30Z"))
            .unwrap();
        assert_eq!(fire, [at("2026-01-01T10:00:00Z")]);
        assert_eq!(cursor, Some(at("2026-01-01T10:00:00Z")));
        // Missed: 10:00 … 13:00, noticed at 13:30.
        let Plan { fire, cursor } = s
            .plan(at("2026-01-01T09:30:00Z"), at("2026-01-01T13:30:00Z"))
            .unwrap();
        assert!(fire.is_empty());
        assert_eq!(cursor, Some(at("2026-01-01T13:00:00Z")));
        let s = s.missed(MissedTicks::RunOnce);
        let Plan { fire, .. } = s
            .plan(at("2026-01-01T09:30:00Z"), at("2026-01-01T13:30:00Z"))
            .unwrap();
        assert_eq!(fire, [at("2026-01-01T13:00:00Z")]);
        // Nothing between.
        let Plan { fire, cursor } = s
            .plan(at("2026-01-01T10:00:00Z"), at("2026-01-01T10:59:59Z"))
            .unwrap();
        assert!(fire.is_empty());
        assert_eq!(cursor, None);
    }
}
