//! Flow control across runs (DESIGN "Flow control"): queues with global and per-key
//! concurrency, sliding-window rate limits, priority, debounce and de-duplication, and
//! the routing of workers to queues and workflows.
//!
//! A run belongs to at most one queue: the one its workflow names
//! (`#[workflow(queue = "llm")]`) or the one its start names ([`crate::StartOptions::queue`]).
//! A queued run of a queue is *admitted* when a worker first claims it, and holds its
//! place in the queue's concurrency until it ends (completed, failed or canceled), also
//! while it sleeps or waits: "one sync per customer at a time" means one unfinished
//! admitted run per key. Admission is decided inside the store's claim
//! ([`crate::store::Store::claim`]), in one transaction (SQLite) or under a per-queue lock
//! (Postgres), so any number of workers in any number of processes respect the limits
//! together. The rule of admission has one home: [`Admitter`].
//!
//! A run waiting for admission stays `queued`; [`crate::Engine::queue_wait`] says why
//! (`runs get`, `GET /runs/{id}`, the UI).
//!
//! Rate limits are a sliding-window log: at most [`RateLimit::limit`] admissions in any
//! window of [`RateLimit::period`], counted from the admission times the store keeps
//! (the strict form of a token bucket whose capacity equals the limit: a bucket would
//! admit up to twice the limit across a window boundary; this never does).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::event::RunQueue;

/// The implicit queue of runs that name none, as worker routing names it
/// (`worker --queues default,gpu`).
pub const DEFAULT_QUEUE: &str = "default";

/// The settings of one queue: what bounds the runs in it. Declared in code
/// ([`crate::EngineBuilder::queue`]) or read from data (it is `Deserialize`: JSON such as
/// `{"name": "llm", "concurrency": 10, "key_concurrency": 1, "key": "/customer",
/// "rate_limit": {"limit": 60, "period": "1m"}}`, see
/// [`crate::EngineBuilder::queues_json`]).
///
/// Every limit is optional; a queue with none still orders its runs by priority.
///
/// ```
/// use std::time::Duration;
/// use reprise::queue::{DebouncePolicy, Queue};
/// let llm = Queue::new("llm")
///     .concurrency(10)
///     .key("/customer")
///     .key_concurrency(1)
///     .rate_limit(60, Duration::from_secs(60));
/// assert_eq!(llm.name, "llm");
/// let sync = Queue::new("sync").debounce(Duration::from_secs(5), DebouncePolicy::Replace);
/// assert!(sync.debounce.is_some());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Queue {
    /// The queue's name: 1 to 64 bytes of ASCII letters, digits, `-`, `_` and `.`.
    pub name: String,
    /// The most admitted, unfinished runs of the queue at once, over all keys and
    /// workers. `None`: no bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// The most admitted, unfinished runs per key at once (`1`: one run per customer at a
    /// time). Needs a key per run: [`Queue::key`] or [`crate::StartOptions::queue_key`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_concurrency: Option<u32>,
    /// Where a run's key is read from when its start gives none: a JSON pointer (RFC
    /// 6901) into the run's input, such as `/customer`. A string is the key as it is; a
    /// number or boolean its JSON text; anything else is an error at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// How many runs may be admitted per period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Debouncing of starts with the same key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debounce: Option<Debounce>,
    /// How many live step attempts (actions, inline steps, LLM requests) the queue's runs
    /// may make per period: each attempt takes a permit first ([`StepWindow`]). Replayed
    /// steps, recorded values and sub-workflow steps take none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_rate_limit: Option<RateLimit>,
}

/// A sliding-window rate limit: at most `limit` admissions (or, as a queue's
/// [`Queue::step_rate_limit`], step attempts) in any window of `period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Admissions per window; at least 1.
    pub limit: u32,
    /// The window, as humantime text in data (`"1m"`, `"30s"`); at least 1 ms.
    #[serde(with = "humantime_text")]
    #[schemars(with = "String")]
    pub period: Duration,
    /// Whether the limit applies to each key separately (`true`) or to the whole queue.
    #[serde(default)]
    pub per_key: bool,
}

/// Debouncing: starts of a queue's runs with the same key within `window` make one run.
/// A debounced run is due `window` after the start that created it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Debounce {
    /// How long a debounced run waits for later starts; humantime text in data.
    #[serde(with = "humantime_text")]
    #[schemars(with = "String")]
    pub window: Duration,
    /// What a later start with the key does while a run of the key is pending.
    #[serde(default)]
    pub policy: DebouncePolicy,
}

/// What a start does while a debounced run of its key is still pending (not admitted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DebouncePolicy {
    /// The pending run is canceled (its log says by which run) and the new start makes a
    /// new pending run, due `window` from now: the last start within the window wins.
    #[default]
    Replace,
    /// The new start is dropped and returns the pending run: the first start wins.
    Drop,
}

impl Queue {
    /// A queue with no limits.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            concurrency: None,
            key_concurrency: None,
            key: None,
            rate_limit: None,
            debounce: None,
            step_rate_limit: None,
        }
    }

    /// Bounds the queue's admitted, unfinished runs to `n`.
    #[must_use]
    pub fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = Some(n);
        self
    }

    /// Bounds each key's admitted, unfinished runs to `n`.
    #[must_use]
    pub fn key_concurrency(mut self, n: u32) -> Self {
        self.key_concurrency = Some(n);
        self
    }

    /// Reads a run's key from `pointer` (a JSON pointer such as `/customer`) in its input.
    #[must_use]
    pub fn key(mut self, pointer: impl Into<String>) -> Self {
        self.key = Some(pointer.into());
        self
    }

    /// At most `limit` admissions in any window of `period`, for the whole queue.
    #[must_use]
    pub fn rate_limit(mut self, limit: u32, period: Duration) -> Self {
        self.rate_limit = Some(RateLimit {
            limit,
            period,
            per_key: false,
        });
        self
    }

    /// At most `limit` admissions in any window of `period`, per key.
    #[must_use]
    pub fn rate_limit_per_key(mut self, limit: u32, period: Duration) -> Self {
        self.rate_limit = Some(RateLimit {
            limit,
            period,
            per_key: true,
        });
        self
    }

    /// At most `limit` live step attempts in any window of `period`, over all runs of the
    /// queue, in every worker and process (see [`StepWindow`]).
    #[must_use]
    pub fn step_rate_limit(mut self, limit: u32, period: Duration) -> Self {
        self.step_rate_limit = Some(RateLimit {
            limit,
            period,
            per_key: false,
        });
        self
    }

    /// At most `limit` live step attempts in any window of `period`, per key (the runs'
    /// queue key; the queue then needs one per run).
    #[must_use]
    pub fn step_rate_limit_per_key(mut self, limit: u32, period: Duration) -> Self {
        self.step_rate_limit = Some(RateLimit {
            limit,
            period,
            per_key: true,
        });
        self
    }

    /// Debounces starts with the same key within `window`, by `policy`.
    #[must_use]
    pub fn debounce(mut self, window: Duration, policy: DebouncePolicy) -> Self {
        self.debounce = Some(Debounce { window, policy });
        self
    }

    /// Whether the queue needs a key per run (per-key concurrency, a per-key rate limit
    /// or step rate limit, or debouncing).
    pub fn needs_key(&self) -> bool {
        self.key_concurrency.is_some()
            || self.rate_limit.is_some_and(|r| r.per_key)
            || self.step_rate_limit.is_some_and(|r| r.per_key)
            || self.debounce.is_some()
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// What is wrong, naming the queue and the setting, as a sentence: a malformed name, a
    /// zero concurrency or limit (also of the step rate limit), a period or window under
    /// 1 ms, a key pointer that does not start with `/`.
    pub fn check(&self) -> Result<(), String> {
        check_queue_name(&self.name)?;
        let name = &self.name;
        if self.concurrency == Some(0) {
            return Err(format!(
                "queue `{name}` has concurrency 0: no run would ever start; use 1 or more, \
                 or leave it unset for no bound"
            ));
        }
        if self.key_concurrency == Some(0) {
            return Err(format!(
                "queue `{name}` has key_concurrency 0: no run would ever start; use 1 or \
                 more, or leave it unset"
            ));
        }
        if let Some(pointer) = &self.key
            && !pointer.is_empty()
            && !pointer.starts_with('/')
        {
            return Err(format!(
                "queue `{name}` reads its key from `{pointer}`, which is not a JSON pointer; \
                 write it as `/{pointer}`"
            ));
        }
        if let Some(rate) = &self.rate_limit {
            if rate.limit == 0 {
                return Err(format!(
                    "queue `{name}` has a rate limit of 0 per period: no run would ever \
                     start; use 1 or more"
                ));
            }
            if rate.period < Duration::from_millis(1) {
                return Err(format!(
                    "queue `{name}` has a rate-limit period under 1 ms; use a period such \
                     as `1s` or `1m`"
                ));
            }
        }
        if let Some(rate) = &self.step_rate_limit {
            if rate.limit == 0 {
                return Err(format!(
                    "queue `{name}` has a step rate limit of 0 per period: no step would \
                     ever run; use 1 or more"
                ));
            }
            if rate.period < Duration::from_millis(1) {
                return Err(format!(
                    "queue `{name}` has a step-rate-limit period under 1 ms; use a period \
                     such as `1s` or `1m`"
                ));
            }
        }
        if let Some(debounce) = &self.debounce
            && debounce.window < Duration::from_millis(1)
        {
            return Err(format!(
                "queue `{name}` has a debounce window under 1 ms; use a window such as `5s`"
            ));
        }
        Ok(())
    }
}

/// Checks a queue name: 1 to 64 bytes of ASCII letters, digits, `-`, `_` and `.`.
///
/// # Errors
/// What is wrong, as a sentence.
pub fn check_queue_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!(
            "queue name `{name}` must be 1 to 64 bytes of ASCII letters, digits, `-`, `_` \
             and `.`"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "queue name `{name}` contains {bad:?}; use ASCII letters, digits, `-`, `_` and `.`"
        ));
    }
    Ok(())
}

/// A rule checked atomically with a run's creation ([`crate::store::Store::create_run_gated`]),
/// under a key of the queue.
#[derive(Clone, Debug, PartialEq)]
pub enum StartGate {
    /// De-duplication: while the run holding `key` is unfinished, a start creates nothing
    /// and returns it ([`Gated::Existing`]); once it has ended, a start creates a new run
    /// and the key passes to it.
    Dedup {
        /// The store key (see [`gate_key`]).
        key: String,
    },
    /// Debouncing: while the run holding `key` is pending (queued, not admitted),
    /// `Drop` returns it ([`Gated::Existing`]) and `Replace` cancels it by appending
    /// `canceled` (a `run_canceled` event, numbered by the store at the pending run's
    /// `next_seq`) and creates the new run ([`Gated::Replaced`]). Otherwise the new run
    /// is created and takes the key.
    Debounce {
        /// The store key (see [`gate_key`]).
        key: String,
        /// What a start does while a pending run holds the key.
        policy: DebouncePolicy,
        /// The event appended to a replaced run (its `seq` is set by the store).
        canceled: crate::event::NewEvent,
        /// The replaced run's error (its `error` column), as `runs cancel` sets it.
        error: serde_json::Value,
    },
}

/// What [`crate::store::Store::create_run_gated`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gated {
    /// The run was created and holds the gate's key.
    Created,
    /// Nothing was created: the run holding the key.
    Existing(crate::event::RunId),
    /// The run was created and holds the key; the run that held it, pending, was canceled.
    Replaced(crate::event::RunId),
}

/// The store key of a gate: `queue-gate:<queue>:<kind>:<key>` (`kind` is `dedup` or
/// `debounce`), in the keys table `create_run_once` uses.
pub fn gate_key(queue: &str, kind: &str, key: &str) -> String {
    format!("queue-gate:{queue}:{kind}:{key}")
}

/// Which runs a worker claims ([`crate::WorkerOptions::queues`],
/// [`crate::WorkerOptions::workflows`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Routing {
    /// Only runs of these workflows (slugs). `None`: any workflow.
    pub workflows: Option<Vec<String>>,
    /// Only runs in these queues ([`DEFAULT_QUEUE`] names runs in no queue). `None`: any
    /// queue, and runs in none.
    pub queues: Option<Vec<String>>,
}

impl Routing {
    /// Whether a run of `workflow` in `queue` (`None`: no queue) is served.
    pub fn serves(&self, workflow: &str, queue: Option<&str>) -> bool {
        let queue = queue.unwrap_or(DEFAULT_QUEUE);
        self.workflows
            .as_ref()
            .is_none_or(|w| w.iter().any(|w| w == workflow))
            && self
                .queues
                .as_ref()
                .is_none_or(|q| q.iter().any(|q| q == queue))
    }
}

/// One claim ([`crate::store::Store::claim`]): up to `limit` due runs, leased to `owner`
/// until `expires_at`, among those `routing` serves, admitting runs of the queues in
/// `queues` by their settings.
#[derive(Clone, Debug)]
pub struct ClaimRequest<'a> {
    /// The lease owner (a worker id).
    pub owner: &'a str,
    /// The store's notion of now (decides due runs, lease expiry, rate windows).
    pub now: DateTime<Utc>,
    /// When the leases end unless renewed.
    pub expires_at: DateTime<Utc>,
    /// The most runs claimed.
    pub limit: usize,
    /// Which runs are served.
    pub routing: &'a Routing,
    /// The settings of every queue this worker knows. A run in a queue named here waits
    /// for admission by [`Admitter`]; a run in a queue not named here is not claimed (its
    /// limits are unknown to this worker). Runs in no queue are claimed as before.
    pub queues: &'a [Queue],
    /// `Some(id)`: a claim of run `id` alone, for direct execution
    /// ([`crate::Engine::execute`]). It claims nothing else and admits no other run: `id`
    /// is admitted and leased only if it waits for admission in one of `queues`, is due,
    /// unleased and served, and the queue's walk in admission order would admit it — the
    /// runs ahead of it that the limits would admit are counted as if admitted (they
    /// come first), none of them is touched. Otherwise the answer is empty. `limit` must
    /// be at least 1. `None`: an ordinary claim.
    pub run: Option<&'a crate::event::RunId>,
}

/// Counts a store reads for a queue ([`crate::store::Store::queue_totals`]): what
/// [`Admitter`] starts from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueTotals {
    /// Admitted, unfinished runs of the queue (all keys).
    pub active: u64,
    /// Admissions in the rate window (`admitted_at > now - period`), all keys; 0 without
    /// a queue-wide rate limit.
    pub admitted_in_window: u64,
    /// The oldest admission in that window (when the next slot frees), if any.
    pub oldest_in_window: Option<DateTime<Utc>>,
}

/// The per-key counts of [`QueueTotals`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyTotals {
    /// Admitted, unfinished runs with the key.
    pub active: u64,
    /// Admissions with the key in the rate window; 0 without a per-key rate limit.
    pub admitted_in_window: u64,
    /// The oldest of them, if any.
    pub oldest_in_window: Option<DateTime<Utc>>,
}

/// Why a run is not admitted now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Blocked {
    /// The queue's concurrency is used up.
    Concurrency {
        /// Admitted, unfinished runs.
        active: u64,
        /// The bound.
        limit: u32,
    },
    /// The key's concurrency is used up.
    KeyConcurrency {
        /// The key.
        key: String,
        /// Admitted, unfinished runs with it.
        active: u64,
        /// The bound.
        limit: u32,
    },
    /// The rate limit is reached (for the queue, or for `key` when per key).
    RateLimit {
        /// The key, for a per-key limit.
        key: Option<String>,
        /// The limit per window.
        limit: u32,
        /// The window, in milliseconds.
        period_ms: u64,
        /// When the next admission is allowed.
        next_at: Option<DateTime<Utc>>,
    },
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Blocked::Concurrency { active, limit } => {
                write!(
                    f,
                    "the queue's concurrency is used up ({active} of {limit} running)"
                )
            }
            Blocked::KeyConcurrency { key, active, limit } => write!(
                f,
                "key `{key}` has {active} of {limit} runs at once already"
            ),
            Blocked::RateLimit {
                key,
                limit,
                period_ms,
                next_at,
            } => {
                let period = humantime::format_duration(Duration::from_millis(*period_ms));
                match key {
                    Some(key) => write!(
                        f,
                        "key `{key}` reached its rate limit of {limit} per {period}"
                    )?,
                    None => write!(
                        f,
                        "the queue reached its rate limit of {limit} per {period}"
                    )?,
                }
                if let Some(at) = next_at {
                    write!(
                        f,
                        "; next admission at {}",
                        at.format("%Y-%m-%dT%H:%M:%S%.3fZ")
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// The rule of admission, applied by every store inside its claim: starts from the
/// queue's [`QueueTotals`], is given each candidate's [`KeyTotals`] once per key
/// ([`Admitter::needs_key_totals`], [`Admitter::add_key_totals`]), and admits candidates
/// in the store's order (priority, then due time, then creation) while the limits allow,
/// counting each admission.
#[derive(Debug)]
pub struct Admitter<'q> {
    queue: &'q Queue,
    now: DateTime<Utc>,
    totals: QueueTotals,
    keys: HashMap<String, KeyTotals>,
}

impl<'q> Admitter<'q> {
    /// An admitter for `queue` at `now`, from the store's counts.
    pub fn new(queue: &'q Queue, now: DateTime<Utc>, totals: QueueTotals) -> Self {
        Self {
            queue,
            now,
            totals,
            keys: HashMap::new(),
        }
    }

    /// The start of the rate window at `now` (admissions strictly after it count), if
    /// the queue has a rate limit.
    pub fn window_start(queue: &Queue, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let rate = queue.rate_limit?;
        let period = chrono::Duration::from_std(rate.period).ok()?;
        now.checked_sub_signed(period)
    }

    /// Whether the store must load the totals of `key` before [`Admitter::admit`] can
    /// decide on it (the queue counts per key, and they are not loaded yet).
    pub fn needs_key_totals(&self, key: &str) -> bool {
        let per_key = self.queue.key_concurrency.is_some()
            || self.queue.rate_limit.is_some_and(|r| r.per_key);
        per_key && !self.keys.contains_key(key)
    }

    /// Gives the store's counts for `key`.
    pub fn add_key_totals(&mut self, key: &str, totals: KeyTotals) {
        self.keys.insert(key.to_owned(), totals);
    }

    /// Whether no run at all can be admitted now (queue-wide concurrency or rate limit
    /// reached): the store can stop looking at candidates.
    pub fn is_full(&self) -> bool {
        self.queue_blocked().is_some()
    }

    fn queue_blocked(&self) -> Option<Blocked> {
        if let Some(limit) = self.queue.concurrency
            && self.totals.active >= u64::from(limit)
        {
            return Some(Blocked::Concurrency {
                active: self.totals.active,
                limit,
            });
        }
        if let Some(rate) = self.queue.rate_limit
            && !rate.per_key
            && self.totals.admitted_in_window >= u64::from(rate.limit)
        {
            return Some(Blocked::RateLimit {
                key: None,
                limit: rate.limit,
                period_ms: millis(rate.period),
                next_at: self
                    .totals
                    .oldest_in_window
                    .map(|t| t + chrono_of(rate.period)),
            });
        }
        None
    }

    /// Decides on a candidate with `key` (`None`: the run has none) without admitting it.
    pub fn check(&self, key: Option<&str>) -> Result<(), Blocked> {
        if let Some(blocked) = self.queue_blocked() {
            return Err(blocked);
        }
        let Some(key) = key else { return Ok(()) };
        let totals = self.keys.get(key).cloned().unwrap_or_default();
        if let Some(limit) = self.queue.key_concurrency
            && totals.active >= u64::from(limit)
        {
            return Err(Blocked::KeyConcurrency {
                key: key.to_owned(),
                active: totals.active,
                limit,
            });
        }
        if let Some(rate) = self.queue.rate_limit
            && rate.per_key
            && totals.admitted_in_window >= u64::from(rate.limit)
        {
            return Err(Blocked::RateLimit {
                key: Some(key.to_owned()),
                limit: rate.limit,
                period_ms: millis(rate.period),
                next_at: totals.oldest_in_window.map(|t| t + chrono_of(rate.period)),
            });
        }
        Ok(())
    }

    /// Admits a candidate with `key` if the limits allow, counting it; else says why not.
    ///
    /// # Errors
    /// The limit that blocks the candidate.
    pub fn admit(&mut self, key: Option<&str>) -> Result<(), Blocked> {
        self.check(key)?;
        self.totals.active += 1;
        self.totals.admitted_in_window += 1;
        self.totals.oldest_in_window.get_or_insert(self.now);
        if let Some(key) = key {
            let totals = self.keys.entry(key.to_owned()).or_default();
            totals.active += 1;
            totals.admitted_in_window += 1;
            totals.oldest_in_window.get_or_insert(self.now);
        }
        Ok(())
    }
}

/// The step rate limit of one queue (or of one key of it) at one moment: the rule every
/// store's [`crate::store::Store::take_step_permit`] applies, atomically with recording
/// the permit it grants.
///
/// A sliding-window log, as for admissions: a permit is granted when fewer than `limit`
/// permits of the same `queue` and `scope` were taken after `start` (= `now - period`);
/// granting it records a permit at `now`. So at most `limit` permits fall in any window of
/// `period`, however many workers and processes take them. When the window is full, the
/// next permit frees when the oldest one in it leaves the window (its time + `period`).
///
/// Times are whole microseconds (what the SQL stores keep), so every store draws the
/// window's edge at the same instant.
///
/// ```
/// use std::time::Duration;
/// use chrono::{DateTime, Utc};
/// use reprise::queue::{Queue, StepWindow};
/// let llm = Queue::new("llm").step_rate_limit(2, Duration::from_secs(1));
/// let now = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
/// let window = StepWindow::of(&llm, None, now).unwrap().unwrap();
/// assert_eq!(window.decide(1, Some(now)), Ok(()));
/// let next = window.decide(2, Some(now)).unwrap_err();
/// assert_eq!(next, now + chrono::Duration::seconds(1));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepWindow {
    /// The queue's name.
    pub queue: String,
    /// What the permits are counted over: the run's key for a per-key limit, the empty
    /// string for the whole queue (a key is never empty).
    pub scope: String,
    /// Permits per window; at least 1.
    pub limit: u32,
    /// The window.
    pub period: Duration,
    /// When the permit is asked for, in whole microseconds.
    pub now: DateTime<Utc>,
    /// `now - period`: permits taken strictly after it count.
    pub start: DateTime<Utc>,
    /// `now - 2 × period`: permits taken at or before it may be deleted. Not `start`:
    /// a taker whose clock lags this one's by up to a period still counts what it needs.
    pub stale: DateTime<Utc>,
}

impl StepWindow {
    /// The window a live step attempt of a run in `queue` with `key` takes its permit
    /// from at `now`; `None` when the queue has no step rate limit.
    ///
    /// # Errors
    /// A sentence naming the queue when its limit is per key and the run has no key.
    pub fn of(
        queue: &Queue,
        key: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<StepWindow>, String> {
        let Some(rate) = queue.step_rate_limit else {
            return Ok(None);
        };
        let scope = if rate.per_key {
            match key {
                Some(key) => key.to_owned(),
                None => {
                    return Err(format!(
                        "queue `{}` limits step attempts per key, but the run has no key in \
                         it; give the queue a key pointer (`Queue::key`) or start the run \
                         with a key (`StartOptions::queue_key`, `--queue-key`)",
                        queue.name
                    ));
                }
            }
        } else {
            String::new()
        };
        let window = StepWindow {
            queue: queue.name.clone(),
            scope,
            limit: rate.limit,
            period: rate.period,
            now,
            start: now,
            stale: now,
        };
        // A period longer than all of time: every permit counts, none is stale.
        Ok(Some(window.at(now)))
    }

    /// The same window at `now` (whole microseconds): a store times the window once it
    /// holds the scope's lock.
    #[must_use]
    pub fn at(&self, now: DateTime<Utc>) -> StepWindow {
        let now = whole_micros(now);
        let before = |t: DateTime<Utc>| {
            t.checked_sub_signed(chrono_of(self.period))
                .unwrap_or(DateTime::<Utc>::MIN_UTC)
        };
        let start = before(now);
        StepWindow {
            queue: self.queue.clone(),
            scope: self.scope.clone(),
            limit: self.limit,
            period: self.period,
            now,
            start,
            stale: before(start),
        }
    }

    /// Decides from the store's count of permits in the window (`taken`, of this queue
    /// and scope, taken after [`StepWindow::start`]) and the oldest of them: `Ok(())` to
    /// grant one (the store then records it at [`StepWindow::now`]), else when the next
    /// permit frees.
    ///
    /// # Errors
    /// The instant the oldest permit in the window leaves it (`now` when the store
    /// reported none, which cannot happen with a full window).
    pub fn decide(&self, taken: u64, oldest: Option<DateTime<Utc>>) -> Result<(), DateTime<Utc>> {
        if taken < u64::from(self.limit) {
            return Ok(());
        }
        Err(oldest.map_or(self.now, |t| {
            t.checked_add_signed(chrono_of(self.period))
                .unwrap_or(DateTime::<Utc>::MAX_UTC)
        }))
    }

    /// The state of the window as `queues list` and `runs get` show it, from the same
    /// counts.
    pub fn permits(&self, taken: u64, oldest: Option<DateTime<Utc>>) -> StepPermits {
        StepPermits {
            key: (!self.scope.is_empty()).then(|| self.scope.clone()),
            limit: self.limit,
            period_ms: millis(self.period),
            taken,
            next_at: self.decide(taken, oldest).err(),
        }
    }
}

/// How much of a queue's step rate limit is used ([`crate::store::Store::step_permits`]):
/// what `queues list`, `GET /queues` and `runs get` show.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StepPermits {
    /// The key, for a per-key limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The limit per window.
    pub limit: u32,
    /// The window, in milliseconds.
    pub period_ms: u64,
    /// Permits taken in the current window.
    pub taken: u64,
    /// When the window is full: when the next permit frees.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_at: Option<DateTime<Utc>>,
}

impl StepPermits {
    /// Whether the window is full (a step asking now waits).
    pub fn is_full(&self) -> bool {
        self.next_at.is_some()
    }
}

impl std::fmt::Display for StepPermits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let period = humantime::format_duration(Duration::from_millis(self.period_ms));
        let whose = match &self.key {
            Some(key) => format!("key `{key}`'s step rate limit"),
            None => "the queue's step rate limit".to_owned(),
        };
        write!(
            f,
            "{} of {whose} of {} per {period} taken",
            self.taken, self.limit
        )?;
        if let Some(at) = self.next_at {
            write!(
                f,
                "; steps wait for a permit until {}",
                at.format("%Y-%m-%dT%H:%M:%S%.3fZ")
            )?;
        }
        Ok(())
    }
}

/// `t` without its sub-microsecond part.
fn whole_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn chrono_of(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// A live worker, as it registers itself in the store
/// ([`crate::store::Store::worker_heartbeat`]): what it serves, so a run no live worker
/// serves can be reported instead of silently waiting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// The worker's id (its engine's owner id).
    pub id: String,
    /// The workflows its binary registers (slugs).
    pub registered: Vec<String>,
    /// Its routing.
    pub routing: Routing,
    /// The queues whose settings it knows (names): it claims runs of no other queue.
    pub queues: Vec<String>,
    /// When it registered.
    pub started_at: DateTime<Utc>,
    /// Until when it counts as live unless it renews (heartbeats every poll interval).
    pub expires_at: DateTime<Utc>,
}

impl WorkerInfo {
    /// Whether this worker would claim a run of `workflow` in `queue`.
    pub fn serves(&self, workflow: &str, queue: Option<&str>) -> bool {
        self.registered.iter().any(|w| w == workflow)
            && self.routing.serves(workflow, queue)
            && queue.is_none_or(|q| self.queues.iter().any(|k| k == q))
    }
}

/// The key of a run in `queue`, from an explicit start key or the queue's pointer into
/// `input`.
///
/// # Errors
/// A sentence naming the queue and the pointer when the queue needs a key and none can
/// be read (the pointer is missing from the input, or names an object or array).
pub fn key_of_run(
    queue: &Queue,
    explicit: Option<&str>,
    input: &serde_json::Value,
) -> Result<Option<String>, String> {
    if let Some(key) = explicit {
        crate::run_keys::check_key("queue key", key)?;
        return Ok(Some(key.to_owned()));
    }
    let Some(pointer) = &queue.key else {
        if queue.needs_key() {
            return Err(format!(
                "queue `{}` limits or debounces per key, but neither the queue names a key \
                 pointer (`Queue::key(\"/customer\")`) nor the start gives a key \
                 (`StartOptions::queue_key`, `--queue-key`, `?queue_key=`)",
                queue.name
            ));
        }
        return Ok(None);
    };
    let name = &queue.name;
    let key = match input.pointer(pointer) {
        None => {
            return Err(format!(
                "queue `{name}` reads each run's key from `{pointer}`, which the input does \
                 not have; add it to the input or give the key at start (`--queue-key`)"
            ));
        }
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => v.to_string(),
        Some(other) => {
            return Err(format!(
                "queue `{name}` reads each run's key from `{pointer}`, which is {} in the \
                 input; point at a string or number",
                match other {
                    serde_json::Value::Null => "null",
                    serde_json::Value::Array(_) => "an array",
                    _ => "an object",
                }
            ));
        }
    };
    crate::run_keys::check_key("queue key", &key)
        .map_err(|e| format!("queue `{name}`: the key read from `{pointer}`: {e}"))?;
    Ok(Some(key))
}

/// The queue parts of a start ([`crate::StartOptions::queue`],
/// [`crate::StartOptions::queue_key`], [`crate::StartOptions::priority`],
/// [`crate::StartOptions::dedup_id`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueRequest {
    /// The queue, instead of the workflow's own.
    pub queue: Option<String>,
    /// The run's key in the queue, instead of the one the queue's pointer reads.
    pub key: Option<String>,
    /// The run's priority (default 0; higher first).
    pub priority: Option<i32>,
    /// The de-duplication id: while a run of the queue with this id is unfinished, the
    /// start returns it instead of creating one.
    pub dedup_id: Option<String>,
}

/// The queues an engine knows: those configured on its builder and, with no limits,
/// those its workflows name without configuring them. Kept as a run-environment
/// service, so workflow contexts (child runs) place runs as the engine does.
#[derive(Clone, Debug, Default)]
pub(crate) struct QueueSettings {
    queues: std::sync::Arc<[Queue]>,
}

impl QueueSettings {
    /// The settings of `configured` plus the queues named by `named` (workflow slug,
    /// queue name) pairs.
    ///
    /// # Errors
    /// A sentence naming the queue: a setting [`Queue::check`] rejects, or two
    /// configurations of one name.
    pub(crate) fn new<'a>(
        configured: Vec<Queue>,
        named: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, String> {
        let mut queues: Vec<Queue> = Vec::new();
        for queue in configured {
            queue.check()?;
            if queues.iter().any(|q| q.name == queue.name) {
                return Err(format!(
                    "queue `{}` is configured twice; configure each queue once",
                    queue.name
                ));
            }
            queues.push(queue);
        }
        for (workflow, name) in named {
            check_queue_name(name).map_err(|e| format!("workflow `{workflow}`: {e}"))?;
            if !queues.iter().any(|q| q.name == name) {
                queues.push(Queue::new(name));
            }
        }
        queues.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Self {
            queues: queues.into(),
        })
    }

    /// The engine's queues, from its run environment (none when it configured none).
    pub(crate) fn of(env: &crate::run_env::RunEnv) -> &QueueSettings {
        static NONE: std::sync::OnceLock<QueueSettings> = std::sync::OnceLock::new();
        env.service::<QueueSettings>()
            .unwrap_or_else(|| NONE.get_or_init(QueueSettings::default))
    }

    /// Every queue, by name.
    pub(crate) fn all(&self) -> &[Queue] {
        &self.queues
    }

    /// The queue `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&Queue> {
        self.queues.iter().find(|q| q.name == name)
    }

    /// Where a new run of a workflow goes: its queue (the start's, else the workflow's
    /// own `workflow_queue`), key and priority, with the queue's settings; `None` for a
    /// run in no queue.
    ///
    /// # Errors
    /// A sentence for the caller: an unknown queue (naming the known ones), a key the
    /// queue needs but cannot read, a malformed explicit key or de-duplication id, queue
    /// options given for a run in no queue.
    pub(crate) fn place(
        &self,
        workflow: &str,
        workflow_queue: Option<&str>,
        request: &QueueRequest,
        input: &serde_json::Value,
    ) -> Result<Option<(RunQueue, &Queue)>, String> {
        let Some(name) = request.queue.as_deref().or(workflow_queue) else {
            if request.key.is_some() || request.priority.is_some() || request.dedup_id.is_some() {
                return Err(format!(
                    "workflow `{workflow}` runs in no queue, so a queue key, priority or \
                     de-duplication id means nothing; name a queue (`--queue`, `?queue=`, \
                     `StartOptions::queue`) or drop them"
                ));
            }
            return Ok(None);
        };
        let Some(queue) = self.get(name) else {
            let known: Vec<&str> = self.queues.iter().map(|q| q.name.as_str()).collect();
            return Err(if known.is_empty() {
                format!(
                    "unknown queue `{name}`: this engine has no queues; configure one with \
                     `Engine::builder().queue(Queue::new(\"{name}\"))`"
                )
            } else {
                format!(
                    "unknown queue `{name}`; the queues are {}",
                    known
                        .iter()
                        .map(|q| format!("`{q}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            });
        };
        if let Some(id) = &request.dedup_id {
            crate::run_keys::check_key("de-duplication id", id)?;
        }
        let key = key_of_run(queue, request.key.as_deref(), input)?;
        Ok(Some((
            RunQueue {
                name: queue.name.clone(),
                key,
                priority: request.priority.unwrap_or(0),
                admitted_at: None,
            },
            queue,
        )))
    }
}

mod humantime_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(text.trim()).map_err(|e| {
            serde::de::Error::custom(format!(
                "`{text}` is not a duration ({e}); write one such as `30s`, `1m` or `1h`"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn the_admitter_bounds_queue_and_key_concurrency_and_counts_what_it_admits() {
        let q = Queue::new("q").concurrency(3).key_concurrency(1);
        let mut a = Admitter::new(&q, t(0), QueueTotals::default());
        assert!(a.needs_key_totals("a"));
        a.add_key_totals("a", KeyTotals::default());
        a.add_key_totals(
            "b",
            KeyTotals {
                active: 1,
                ..KeyTotals::default()
            },
        );
        a.add_key_totals("c", KeyTotals::default());
        a.add_key_totals("d", KeyTotals::default());
        assert_eq!(a.admit(Some("a")), Ok(()));
        assert!(matches!(
            a.admit(Some("a")),
            Err(Blocked::KeyConcurrency { .. })
        ));
        assert!(matches!(
            a.admit(Some("b")),
            Err(Blocked::KeyConcurrency { .. })
        ));
        assert_eq!(a.admit(Some("c")), Ok(()));
        assert_eq!(a.admit(Some("d")), Ok(()));
        assert!(a.is_full());
        assert!(matches!(
            a.admit(Some("e")),
            Err(Blocked::Concurrency {
                active: 3,
                limit: 3
            })
        ));
    }

    #[test]
    fn the_rate_limit_counts_the_window_and_names_the_next_admission() {
        let q = Queue::new("q").rate_limit(2, Duration::from_secs(60));
        let totals = QueueTotals {
            active: 0,
            admitted_in_window: 1,
            oldest_in_window: Some(t(-30)),
        };
        let mut a = Admitter::new(&q, t(0), totals);
        assert_eq!(a.admit(None), Ok(()));
        let Err(Blocked::RateLimit { next_at, .. }) = a.admit(None) else {
            panic!("expected the rate limit")
        };
        assert_eq!(next_at, Some(t(30)));
        assert_eq!(Admitter::window_start(&q, t(0)), Some(t(-60)));
    }

    #[test]
    fn keys_come_from_the_start_or_the_pointer_with_clear_errors() {
        let q = Queue::new("llm").key("/customer").key_concurrency(1);
        assert_eq!(
            key_of_run(&q, None, &json!({"customer": "c1"})),
            Ok(Some("c1".into()))
        );
        assert_eq!(
            key_of_run(&q, None, &json!({"customer": 7})),
            Ok(Some("7".into()))
        );
        assert_eq!(key_of_run(&q, Some("x"), &json!({})), Ok(Some("x".into())));
        let err = key_of_run(&q, None, &json!({"other": 1})).unwrap_err();
        assert!(
            err.contains("`/customer`") && err.contains("does not have"),
            "{err}"
        );
        let err = key_of_run(&q, None, &json!({"customer": {"id": 1}})).unwrap_err();
        assert!(err.contains("an object"), "{err}");
        let bare = Queue::new("b").key_concurrency(1);
        assert!(
            key_of_run(&bare, None, &json!({}))
                .unwrap_err()
                .contains("neither")
        );
        assert_eq!(key_of_run(&Queue::new("free"), None, &json!({})), Ok(None));
    }

    #[test]
    fn settings_are_checked_and_read_from_json() {
        assert!(Queue::new("bad name").check().is_err());
        assert!(
            Queue::new("q")
                .concurrency(0)
                .check()
                .unwrap_err()
                .contains("concurrency 0")
        );
        assert!(
            Queue::new("q")
                .key("customer")
                .check()
                .unwrap_err()
                .contains("`/customer`")
        );
        let q: Queue = serde_json::from_value(json!({
            "name": "llm", "concurrency": 10, "key": "/customer", "key_concurrency": 1,
            "rate_limit": {"limit": 60, "period": "1m", "per_key": true},
            "debounce": {"window": "5s", "policy": "drop"}
        }))
        .unwrap();
        assert_eq!(q.rate_limit.unwrap().period, Duration::from_secs(60));
        assert_eq!(q.debounce.unwrap().policy, DebouncePolicy::Drop);
        assert!(q.check().is_ok());
        let err = serde_json::from_value::<Queue>(
            json!({"name": "q", "rate_limit": {"limit": 1, "period": "soon"}}),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("`soon` is not a duration"), "{err}");
        let err = serde_json::from_value::<Queue>(json!({"name": "q", "concurency": 1}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("concurency"), "{err}");
    }

    #[test]
    fn the_step_window_counts_after_its_start_and_names_the_next_permit() {
        let q = Queue::new("q").step_rate_limit(2, Duration::from_secs(10));
        let now = t(0) + chrono::Duration::nanoseconds(1_500); // 1.5 µs: cut to 1 µs
        let w = StepWindow::of(&q, Some("ignored"), now).unwrap().unwrap();
        assert_eq!(w.scope, "", "a queue-wide limit counts the whole queue");
        assert_eq!(w.now, t(0) + chrono::Duration::microseconds(1));
        assert_eq!(w.start, w.now - chrono::Duration::seconds(10));
        assert_eq!(w.stale, w.now - chrono::Duration::seconds(20));
        assert_eq!(w.decide(1, Some(t(-5))), Ok(()));
        assert_eq!(w.decide(2, Some(t(-5))), Err(t(5)));
        let permits = w.permits(2, Some(t(-5)));
        assert!(permits.is_full());
        assert_eq!(permits.next_at, Some(t(5)));
        assert!(
            permits
                .to_string()
                .contains("2 of the queue's step rate limit of 2 per 10s")
        );
        assert_eq!(StepWindow::of(&Queue::new("free"), None, now), Ok(None));
        let per_key = Queue::new("k").step_rate_limit_per_key(1, Duration::from_secs(1));
        assert!(per_key.needs_key());
        assert_eq!(
            StepWindow::of(&per_key, Some("c1"), now)
                .unwrap()
                .unwrap()
                .scope,
            "c1"
        );
        let err = StepWindow::of(&per_key, None, now).unwrap_err();
        assert!(
            err.contains("queue `k` limits step attempts per key"),
            "{err}"
        );
    }

    #[test]
    fn step_rate_limits_are_checked_and_read_from_json() {
        let err = Queue::new("q")
            .step_rate_limit(0, Duration::from_secs(1))
            .check()
            .unwrap_err();
        assert!(
            err.contains("queue `q` has a step rate limit of 0"),
            "{err}"
        );
        let err = Queue::new("q")
            .step_rate_limit(1, Duration::from_micros(10))
            .check()
            .unwrap_err();
        assert!(err.contains("step-rate-limit period under 1 ms"), "{err}");
        let q: Queue = serde_json::from_value(json!({
            "name": "llm",
            "step_rate_limit": {"limit": 600, "period": "1m", "per_key": false}
        }))
        .unwrap();
        assert_eq!(
            q.step_rate_limit,
            Some(RateLimit {
                limit: 600,
                period: Duration::from_secs(60),
                per_key: false
            })
        );
        assert!(!q.needs_key());
    }

    #[test]
    fn routing_and_worker_service() {
        let r = Routing {
            workflows: None,
            queues: Some(vec!["default".into(), "gpu".into()]),
        };
        assert!(r.serves("a", None));
        assert!(r.serves("a", Some("gpu")));
        assert!(!r.serves("a", Some("llm")));
        let w = WorkerInfo {
            id: "w".into(),
            registered: vec!["a".into()],
            routing: Routing::default(),
            queues: vec!["gpu".into()],
            started_at: t(0),
            expires_at: t(10),
        };
        assert!(w.serves("a", Some("gpu")));
        assert!(!w.serves("a", Some("llm")));
        assert!(!w.serves("b", None));
    }
}
