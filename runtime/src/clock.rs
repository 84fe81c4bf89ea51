//! [`Clock`]: where the engine reads the time, so tests can drive it by hand.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// A source of the current time. The engine reads every timestamp and wake-up time from
/// it, so tests can drive time by hand.
pub trait Clock: Send + Sync + 'static {
    /// Now, in UTC.
    fn now(&self) -> DateTime<Utc>;

    /// Waits `duration` on this clock: step retry backoffs and in-process waits use it.
    /// The default sleeps on tokio's timer; a virtual clock may advance itself instead.
    fn sleep(&self, duration: Duration) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}
