//! [`RetryPolicy`]: the one backoff rule of reprise — action retries, run-level retries of
//! a failed body, LLM steps, and the HTTP provider's request retries all use it.
//!
//! The delay before retry *n* (after failed attempt *n*, from 1) is
//! `initial × 2^(n-1)`, capped at `max_delay`, then scaled by a uniform random factor in
//! `[1 - jitter, 1 + jitter)` — exponential backoff with "equal jitter" (AWS Architecture
//! Blog, "Exponential Backoff And Jitter", 2015). Jitter spreads the retries of many runs
//! that failed together; it is 0 where waits must be exact (run-level retries, so virtual
//! clocks in tests fire them on time).

use std::time::Duration;

/// How many attempts a failing operation gets, and how long to wait between them.
///
/// ```
/// use std::time::Duration;
/// use reprise::RetryPolicy;
///
/// let policy = RetryPolicy::exponential(Duration::from_secs(1))
///     .max_attempts(4)
///     .max_delay(Duration::from_secs(5));
/// assert!(policy.allows_retry_after(3));
/// assert!(!policy.allows_retry_after(4));
/// assert_eq!(policy.delay(1), Duration::from_secs(1));
/// assert_eq!(policy.delay(3), Duration::from_secs(4));
/// assert_eq!(policy.delay(4), Duration::from_secs(5)); // capped
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1: no retry).
    pub max_attempts: u32,
    /// The delay before the first retry.
    pub initial: Duration,
    /// The cap on any one delay.
    pub max_delay: Duration,
    /// The jitter fraction, in `[0, 1)`: each delay is scaled by a random factor in
    /// `[1 - jitter, 1 + jitter)`.
    pub jitter: f64,
}

impl RetryPolicy {
    /// Exponential backoff from `initial`: unlimited attempts (`u32::MAX`), delays capped
    /// at 10 minutes, no jitter.
    pub const fn exponential(initial: Duration) -> Self {
        RetryPolicy {
            max_attempts: u32::MAX,
            initial,
            max_delay: Duration::from_secs(600),
            jitter: 0.0,
        }
    }

    /// With `attempts` attempts in all (at least 1).
    #[must_use]
    pub const fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = if attempts == 0 { 1 } else { attempts };
        self
    }

    /// With delays capped at `max`.
    #[must_use]
    pub const fn max_delay(mut self, max: Duration) -> Self {
        self.max_delay = max;
        self
    }

    /// With jitter `fraction` (clamped to `[0, 0.99]`).
    #[must_use]
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction.clamp(0.0, 0.99);
        self
    }

    /// Whether failed attempt `attempt` (from 1) may be followed by another.
    pub fn allows_retry_after(&self, attempt: u32) -> bool {
        attempt < self.max_attempts
    }

    /// The delay before the retry that follows failed attempt `attempt` (from 1).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        let base = self.initial.saturating_mul(factor).min(self.max_delay);
        if self.jitter <= 0.0 {
            return base;
        }
        base.mul_f64(rand::random_range(1.0 - self.jitter..1.0 + self.jitter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jittered_delays_stay_within_their_band() {
        let policy = RetryPolicy::exponential(Duration::from_secs(2)).jitter(0.25);
        for attempt in 1..6 {
            let base = Duration::from_secs(2) * 2u32.pow(attempt - 1);
            for _ in 0..50 {
                let delay = policy.delay(attempt);
                assert!(delay >= base.mul_f64(0.75) && delay < base.mul_f64(1.25));
            }
        }
    }

    #[test]
    fn huge_attempt_numbers_saturate_at_the_cap() {
        let policy = RetryPolicy::exponential(Duration::from_secs(1));
        assert_eq!(policy.delay(200), Duration::from_secs(600));
        assert_eq!(policy.max_attempts(0).max_attempts, 1);
    }
}
