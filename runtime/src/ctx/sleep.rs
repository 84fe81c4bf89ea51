//! Durable sleep: `ctx.sleep(d)` and `ctx.sleep_until(t)` in a workflow body.
//!
//! The first execution records `sleep_started` with the wake-up time and suspends the run
//! (status `sleeping`: no task held); the run is resumed once the time has come and the
//! replay records `sleep_completed` and goes on. A sleep that already elapsed on replay does
//! not wait again. A short sleep may keep its body in the engine's hot-run cache
//! ([`crate::EngineBuilder::hot_runs`]); the run then continues in place, writing the same
//! events as a replay would.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::recorder::{Call, Entry, Shape};
use super::{Ctx, Wait};
use crate::ActionError;
use crate::event::{EventPayload, RunStatus, RunUpdate};
use crate::step::Site;

/// A length of time `ctx.sleep` accepts: a [`Duration`], a [`chrono::TimeDelta`], or a
/// humantime string such as `"1h 30m"` or `"500ms"`.
pub trait SleepDuration {
    /// The duration.
    ///
    /// # Errors
    /// A permanent `invalid_duration` error naming the text when it does not parse.
    fn to_duration(&self) -> Result<Duration, ActionError>;
}

impl SleepDuration for Duration {
    fn to_duration(&self) -> Result<Duration, ActionError> {
        Ok(*self)
    }
}

impl SleepDuration for chrono::TimeDelta {
    fn to_duration(&self) -> Result<Duration, ActionError> {
        self.to_std().map_err(|_| {
            ActionError::new(
                "invalid_duration",
                format!("cannot sleep for a negative time ({self})"),
                false,
            )
        })
    }
}

impl SleepDuration for &str {
    fn to_duration(&self) -> Result<Duration, ActionError> {
        humantime::parse_duration(self).map_err(|e| {
            ActionError::new(
                "invalid_duration",
                format!(
                    "`{self}` is not a duration ({e}); write it like \"90s\", \"15m\" or \"1h 30m\""
                ),
                false,
            )
        })
    }
}

impl SleepDuration for String {
    fn to_duration(&self) -> Result<Duration, ActionError> {
        self.as_str().to_duration()
    }
}

impl SleepDuration for &String {
    fn to_duration(&self) -> Result<Duration, ActionError> {
        self.as_str().to_duration()
    }
}

/// A point in time `ctx.sleep_until` accepts: a `DateTime<Utc>`, a [`std::time::SystemTime`]
/// or an RFC 3339 string.
pub trait WakeTime {
    /// The time, in UTC.
    ///
    /// # Errors
    /// A permanent `invalid_time` error when a string does not parse.
    fn to_wake_time(&self) -> Result<DateTime<Utc>, ActionError>;
}

impl WakeTime for DateTime<Utc> {
    fn to_wake_time(&self) -> Result<DateTime<Utc>, ActionError> {
        Ok(*self)
    }
}

impl WakeTime for std::time::SystemTime {
    fn to_wake_time(&self) -> Result<DateTime<Utc>, ActionError> {
        Ok(DateTime::<Utc>::from(*self))
    }
}

impl WakeTime for &str {
    fn to_wake_time(&self) -> Result<DateTime<Utc>, ActionError> {
        DateTime::parse_from_rfc3339(self).map(|t| t.with_timezone(&Utc)).map_err(|e| {
            ActionError::new(
                "invalid_time",
                format!("`{self}` is not an RFC 3339 time ({e}); write it like \"2026-01-31T09:00:00Z\""),
                false,
            )
        })
    }
}

/// `ctx.sleep(duration)`: a durable sleep recorded under the site's id.
pub fn sleep(
    ctx: &Ctx,
    site: &'static Site,
    duration: impl SleepDuration,
) -> impl Future<Output = Result<(), ActionError>> + Send + 'static {
    let id = ctx.next_id(&site.key("sleep"));
    let ctx = ctx.clone();
    let duration = duration.to_duration();
    async move {
        let duration = duration?;
        let wake_at = ctx.run.env.now()
            + chrono::TimeDelta::from_std(duration).unwrap_or(chrono::TimeDelta::MAX);
        wait_until(ctx, id, wake_at).await
    }
}

/// `ctx.sleep_until(time)`: a durable sleep until a point in time.
pub fn sleep_until(
    ctx: &Ctx,
    site: &'static Site,
    time: impl WakeTime,
) -> impl Future<Output = Result<(), ActionError>> + Send + 'static {
    let id = ctx.next_id(&site.key("sleep-until"));
    let ctx = ctx.clone();
    let time = time.to_wake_time();
    async move { wait_until(ctx, id, time?).await }
}

/// The sleep adapter over the recorder: a recorded `sleep_completed` answers it; otherwise
/// `sleep_started` records the wake-up time (once) and the run suspends until then.
pub(crate) async fn wait_until(
    ctx: Ctx,
    id: String,
    requested_wake: DateTime<Utc>,
) -> Result<(), ActionError> {
    let run = &ctx.run;
    let call = Call {
        id: &id,
        callee: "sleep",
        shape: Shape::Wait,
        input: None,
        output: None,
    };
    let slot = match run.enter(&call).await? {
        Entry::Replayed(outcome) => return outcome.map(drop),
        Entry::Live(slot) => slot,
    };
    let wake_at = match slot.previous().and_then(|r| r.wake_at) {
        Some(wake_at) => wake_at,
        None => {
            let event = run.event(
                Some(&id),
                1,
                EventPayload::SleepStarted {
                    wake_at: requested_wake,
                },
            );
            slot.record(event, RunUpdate::default()).await?;
            requested_wake
        }
    };
    let mut resumptions = run.resumptions();
    loop {
        if run.env.now() >= wake_at {
            if !super::race::may_finish() {
                // Another branch of a select won: this sleep records nothing.
                match std::future::pending::<std::convert::Infallible>().await {}
            }
            let event = run.event(Some(&id), 1, EventPayload::SleepCompleted);
            let update = RunUpdate {
                status: Some(RunStatus::Running),
                ..RunUpdate::default()
            };
            return slot.finish_wait(event, update).await;
        }
        run.suspend(Wait::Sleep {
            id: id.clone(),
            until: wake_at,
        });
        // The executor drops the body once every live step has recorded, and the run is
        // replayed from its log when it wakes; or it keeps the body in its hot-run cache and
        // continues it here when the run wakes.
        if resumptions.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
