//! Starting runs with options: [`StartOptions`] and [`Engine::start_with`], the one path
//! behind [`Engine::start_json`], [`Engine::start_idempotent`], delayed starts
//! (`workflows run --delay`/`--start-at`, `POST /workflows/{slug}?delay=`/`?start_at=`)
//! and their combinations.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::Engine;
use super::idempotent::check_idempotency_key;
use crate::error::EngineError;
use crate::event::{RunId, Trigger};

/// How to start a run, for [`Engine::start_with`]. The default starts at once, every time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StartOptions {
    /// When the run may start: it is created `queued` with this due time (`wake_at`) and no
    /// worker claims it before. `None`, or a time not after now, starts at once.
    pub start_at: Option<DateTime<Utc>>,
    /// Start at most one run of the workflow per key (see [`Engine::start_idempotent`]).
    pub idempotency_key: Option<String>,
    /// The W3C `traceparent` of the caller (e.g. the `traceparent` header of the request
    /// that starts the run): recorded in `run_created`, and every execution of the run
    /// joins that trace (see [`crate::telemetry`]).
    pub traceparent: Option<String>,
    /// The run's business key (see [`StartOptions::key`]).
    pub key: Option<String>,
    /// The run's queue, key in the queue, priority and de-duplication id (see
    /// [`StartOptions::queue`]).
    pub queue: crate::queue::QueueRequest,
    /// Who starts the run and whom it acts for (see [`StartOptions::actor`],
    /// [`StartOptions::user`], [`StartOptions::project`]); recorded in `run_created`.
    pub identity: crate::identity::IdentityRequest,
}

impl StartOptions {
    /// Starts at once, with no idempotency key.
    pub fn new() -> Self {
        Self::default()
    }

    /// The run may start at `at` (UTC), not before.
    #[must_use]
    pub fn start_at(mut self, at: DateTime<Utc>) -> Self {
        self.start_at = Some(at);
        self
    }

    /// Joins the trace of `traceparent` (a W3C `traceparent` header value, checked by
    /// [`Engine::start_with`]).
    #[must_use]
    pub fn traceparent(mut self, traceparent: impl Into<String>) -> Self {
        self.traceparent = Some(traceparent.into());
        self
    }

    /// Names the run by a business key of the caller's domain (an order id, a user id:
    /// 1 to 255 printable ASCII bytes, checked by [`Engine::start_with`]): one run per
    /// workflow and key. A later start with the same key creates nothing and returns that
    /// run (`created == false`), whatever its input and status; [`Engine::run_by_key`] finds
    /// it and [`Engine::signal_by_key`] signals it. Not combined with an idempotency key
    /// (the business key already makes the start idempotent).
    #[must_use]
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Puts the run in queue `name` instead of its workflow's own (`#[workflow(queue)]`).
    /// The queue must be known to the engine ([`crate::EngineBuilder::queue`], or named by
    /// a workflow); [`Engine::start_with`] fails with [`EngineError::Serde`] naming the
    /// known queues otherwise, and creates nothing.
    #[must_use]
    pub fn queue(mut self, name: impl Into<String>) -> Self {
        self.queue.queue = Some(name.into());
        self
    }

    /// The run's key in its queue (per-key concurrency, per-key rate limit, debounce),
    /// instead of the one the queue reads from the input ([`crate::queue::Queue::key`]):
    /// 1 to 255 printable ASCII bytes.
    #[must_use]
    pub fn queue_key(mut self, key: impl Into<String>) -> Self {
        self.queue.key = Some(key.into());
        self
    }

    /// The run's priority in its queue: higher is admitted first; equal priorities in
    /// order of due time, then creation. Default 0. Only for a run in a queue.
    #[must_use]
    pub fn priority(mut self, priority: i32) -> Self {
        self.queue.priority = Some(priority);
        self
    }

    /// De-duplication within the run's queue: while a run of the queue started with
    /// `id` has not ended, a start with `id` creates nothing and returns it (`created ==
    /// false`); after it ended, `id` starts a new run. 1 to 255 printable ASCII bytes.
    /// Only for a run in a queue; not combined with a debounced queue, a business key or
    /// an idempotency key.
    #[must_use]
    pub fn dedup_id(mut self, id: impl Into<String>) -> Self {
        self.queue.dedup_id = Some(id.into());
        self
    }

    /// Records `actor` as who started the run (an API principal, a trigger with its
    /// details), instead of the default for the start's trigger.
    #[must_use]
    pub fn actor(mut self, actor: crate::identity::Actor) -> Self {
        self.identity.actor = Some(actor);
        self
    }

    /// The user the run acts for (credentials are looked up in `user:<user>` first): 1 to
    /// 128 bytes of ASCII letters, digits, `-`, `_`, `.` and `@`, checked by
    /// [`Engine::start_with`]. Child runs act for their parent's user.
    #[must_use]
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.identity.user = Some(user.into());
        self
    }

    /// The run's project (credentials are looked up in `project:<project>` after the
    /// user's), instead of the engine's default ([`crate::EngineBuilder::project`]).
    #[must_use]
    pub fn project(mut self, project: impl Into<String>) -> Self {
        self.identity.project = Some(project.into());
        self
    }

    /// Starts the run for `subscriber`'s subscription: it acts for the subscriber's user
    /// (unless [`StartOptions::user`] says otherwise) and `ctx.subscriber()` returns it.
    #[must_use]
    pub fn subscriber(mut self, subscriber: crate::identity::Subscriber) -> Self {
        self.identity.subscriber = Some(subscriber);
        self
    }

    /// At most one run per `key` (1 to 255 printable ASCII bytes, checked by
    /// [`Engine::start_with`]).
    #[must_use]
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

/// The actor a start records when its caller names none: the command line's OS user for
/// [`Trigger::Cli`], the principal `api` for [`Trigger::Api`], and code otherwise
/// (triggers that know more name their actor themselves).
pub(crate) fn default_actor(trigger: Trigger) -> crate::identity::Actor {
    use crate::identity::Actor;
    match trigger {
        Trigger::Cli => Actor::cli_user(),
        Trigger::Api => Actor::Principal {
            name: "api".into(),
            token: None,
        },
        _ => Actor::Code,
    }
}

/// The forms `--delay` and `?delay=` accept, for error messages.
const DELAY_FORMS: &str = "a duration such as `30s`, `10m`, `1h 30m` or `2days`";
/// The forms `--start-at` and `?start_at=` accept, for error messages.
const START_AT_FORMS: &str =
    "an RFC 3339 time such as `2026-12-24T18:00:00Z` or `2026-12-24T19:00:00+01:00`";

/// Parses a delay (`10m`, `1h 30m`, humantime syntax).
///
/// # Errors
/// What is wrong and the accepted forms, as a sentence for the caller; `what` names the
/// parameter (`--delay`, `delay`).
pub(crate) fn parse_delay(what: &str, text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{what} `{text}` is not a duration ({e}); write {DELAY_FORMS}"))
}

/// Parses a start time (RFC 3339, with an offset or `Z`).
///
/// # Errors
/// What is wrong and the accepted forms, as a sentence for the caller.
pub(crate) fn parse_start_at(what: &str, text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{what} `{text}` is not a time ({e}); write {START_AT_FORMS}"))
}

/// `now + delay`.
///
/// # Errors
/// When the time is out of range (a delay of millennia), naming `what`.
pub(crate) fn delay_from(
    what: &str,
    now: DateTime<Utc>,
    delay: Duration,
) -> Result<DateTime<Utc>, String> {
    chrono::Duration::from_std(delay)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .ok_or_else(|| format!("{what} is too long; write {DELAY_FORMS}"))
}

impl Engine {
    /// Validates `input` against workflow `slug`'s input schema and creates a `queued` run
    /// as `options` say: due at [`StartOptions::start_at`] (a time in the past starts at
    /// once; the `run_created` event records the requested time either way), and at most
    /// once per [`StartOptions::idempotency_key`] (a later call with the same key and input
    /// creates nothing and returns that run), and at most once per business key
    /// ([`StartOptions::key`]). Returns the run's id and whether this call created it
    /// (always `true` without a key).
    ///
    /// # Errors
    /// As [`Engine::start_json`] and [`Engine::start_idempotent`]; [`EngineError::Serde`]
    /// for a malformed business key, or one combined with an idempotency key.
    pub async fn start_with(
        &self,
        slug: &str,
        input: Value,
        trigger: Trigger,
        mut options: StartOptions,
    ) -> Result<(RunId, bool), EngineError> {
        if let Some(traceparent) = &options.traceparent {
            crate::telemetry::check_traceparent(traceparent).map_err(EngineError::Serde)?;
        }
        if let Some(gated) = self.start_gated(slug, &input, trigger, &options).await? {
            return Ok(gated);
        }
        if let Some(key) = options.key.take() {
            return self.start_keyed(slug, input, trigger, options, key).await;
        }
        let Some(key) = options.idempotency_key.clone() else {
            let (record, created) = self.new_run_at(slug, input, trigger, &options)?;
            let id = record.id.clone();
            self.inner.env.store.create_run(record, created).await?;
            self.inner.env.announce_created(&id, slug);
            return Ok((id, true));
        };
        check_idempotency_key(&key).map_err(EngineError::Serde)?;
        let scoped = format!("idempotency:{slug}:{key}");
        let (record, created) = self.new_run_at(slug, input.clone(), trigger, &options)?;
        let id = record.id.clone();
        if let Some(existing) = self
            .inner
            .env
            .store
            .create_run_once(&scoped, record, created)
            .await?
        {
            let run = self.get_run(&existing).await?;
            if run.input != input {
                return Err(EngineError::IdempotencyConflict {
                    run: existing.to_string(),
                    workflow: slug.to_owned(),
                    key,
                });
            }
            return Ok((existing, false));
        }
        self.inner.env.announce_created(&id, slug);
        Ok((id, true))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn delays_and_times_parse_or_name_the_forms() {
        assert_eq!(parse_delay("--delay", "10m"), Ok(Duration::from_secs(600)));
        assert_eq!(
            parse_delay("delay", "300ms"),
            Ok(Duration::from_millis(300))
        );
        let err = parse_delay("--delay", "nonsense").unwrap_err();
        assert!(
            err.contains("--delay `nonsense`") && err.contains("10m"),
            "{err}"
        );
        let at = parse_start_at("start_at", "2026-12-24T19:00:00+01:00").unwrap();
        assert_eq!(at.to_rfc3339(), "2026-12-24T18:00:00+00:00");
        let err = parse_start_at("--start-at", "tomorrow").unwrap_err();
        assert!(err.contains("RFC 3339"), "{err}");
        let now = parse_start_at("t", "2026-01-01T00:00:00Z").unwrap();
        assert!(delay_from("--delay", now, Duration::from_secs(u64::MAX)).is_err());
        assert_eq!(
            delay_from("--delay", now, Duration::from_secs(60)).unwrap(),
            parse_start_at("t", "2026-01-01T00:01:00Z").unwrap()
        );
    }
}
