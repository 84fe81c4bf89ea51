//! Triggers: what starts runs without a caller (DESIGN "Surfaces") — cron schedules,
//! webhook sources and poll sources. Declare them on the [`EngineBuilder`]; a run they
//! start reports which one through `Ctx::trigger()` ([`Trigger::Cron`],
//! [`Trigger::Webhook`], [`Trigger::Poll`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), reprise::EngineError> {
//! use std::time::Duration;
//! use reprise::Engine;
//! use reprise::trigger::{CronSchedule, PollBatch, PollSource, WebhookSource, run_schedules};
//!
//! let engine = Engine::builder()
//!     .sqlite(".reprise/reprise.db")?
//!     .discover()?
//!     .cron(CronSchedule::new("nightly", "0 2 * * *", "cleanup")?.time_zone("Europe/Paris")?)
//!     .webhook(WebhookSource::new("github", "on-push").secret_env("GITHUB_WEBHOOK_SECRET"))
//!     .poll(PollSource::new("feed", "ingest", Duration::from_secs(300), |_cursor| async {
//!         Ok(PollBatch::default())
//!     }))
//!     .build()?;
//! // Fire cron ticks and polls until Ctrl-C (`dev` and `worker` do this for you); webhooks
//! // arrive over HTTP at `POST /webhooks/{source}` (or `Engine::deliver_webhook`).
//! run_schedules(engine, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! ## Cron schedules ([`CronSchedule`])
//! A five-field (or six, with seconds) cron expression, evaluated in UTC or in an IANA
//! time zone. Each tick starts one run; its input is fixed or computed from the tick.
//! - *Once per tick.* The run of a tick is created under the key
//!   `cron:<name>:<tick RFC 3339>`, atomically in the store, so however many processes
//!   share the store and fire the same tick, one run starts.
//! - *Durable position.* The last handled tick is the cursor `cron:<name>`. The first
//!   time a schedule is seen (no cursor) it starts from now: past ticks are not
//!   back-filled.
//! - *Missed ticks.* A tick noticed more than the grace period (default 1 minute) after
//!   its time — the process was down — is *missed*: [`MissedTicks::Skip`] (default)
//!   fires nothing for it, [`MissedTicks::RunOnce`] fires one run for the most recent
//!   missed tick however many were missed.
//!
//! ## Actors and subscribers
//! Every trigger records its actor in the run's `run_created` (`ctx.actor()`):
//! [`crate::identity::Actor::Schedule`] (name, tick), `Webhook` (source, delivery id),
//! `Poll` (source, item id). Every trigger occurrence starts its runs through one place,
//! the engine's fan-out ([`crate::subscriptions`]): a subscribable workflow gets one run
//! per active subscription, each created under `<the key below>/sub:<subscription id>`,
//! so once per occurrence and subscriber across processes.
//!
//! ## Schedules as data ([`ScheduleSpec`])
//! Schedules kept in the store beside the ones above, created, changed, paused, triggered
//! and backfilled at run time (`Engine::create_schedule` and its siblings, `schedules …`
//! in the CLI, `/schedules` over HTTP); the scheduler reads them on every turn, so no
//! restart is needed. Schedules declared in code can be paused and resumed the same way.
//! - *Once per tick.* A stored schedule's run of a tick is created under the key
//!   `schedule:<name>:<tick RFC 3339>` ([`schedule_run_key`]); trigger [`Trigger::Cron`].
//! - *Position.* The cursor `schedule:<name>` holds the last handled tick, the run of the
//!   last fired tick and a buffered tick; a new schedule starts at its creation.
//! - *Missed ticks* within the catch-up window fire once each; older ones are skipped.
//! - *Overlap* ([`OverlapPolicy`]): `skip`, `buffer_one` or `allow`.
//! - *Paused*: nothing fires; resuming moves the position (or a code schedule's cursor)
//!   to the moment of the resume, so the ticks of the pause never fire.
//! - *Backfill* ([`Engine::backfill_schedule`]) fires a range's ticks under the same keys:
//!   never twice.
//!
//! ## Webhook sources ([`WebhookSource`])
//! `POST /webhooks/{name}`, checked in this order: HMAC-SHA256 signature of the raw body
//! (`sha256=<hex>` in `x-hub-signature-256` by default, compared in constant time; a
//! source without a secret must say [`WebhookSource::insecure_no_signature`]), JSON and
//! the request schema, filters, the transform into the workflow's input, the workflow's
//! input schema.
//! - *Once per delivery.* With a [delivery header](WebhookSource::delivery_header), the run
//!   is created under `webhook:<name>:<delivery id>`: a redelivery gets
//!   [`WebhookDelivery::Duplicate`] with the first run's id. Without one, each accepted
//!   request starts a run.
//!
//! ## Poll sources ([`PollSource`])
//! A function called every interval with the stored cursor, returning new items and the
//! next cursor.
//! - *Once per item.* Each item's run is created under `poll:<name>:<item id>`, so an
//!   item returned again (the cursor write was lost in a crash, two processes polled)
//!   never starts a second run.
//! - *Durable cursor.* Stored as `poll:<name>` after the batch's runs exist, and passed to
//!   the next poll, also after a restart.
//! - *Failures.* A poll function's error (or panic) is logged and the poll is tried
//!   again at the next interval; the loop goes on.
//!
//! ## Time
//! All trigger time comes from the engine's [`crate::Clock`], so tests drive it by hand:
//! move the clock, then call [`Triggers::fire_due`] (what [`run_schedules`] does at least
//! once a second).

mod cron;
mod files;
mod poll;
mod schedules;
mod webhook;

use std::collections::HashSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use crate::engine::{Engine, EngineBuilder};
use crate::error::EngineError;
use crate::event::RunId;
#[cfg(doc)]
use crate::event::Trigger;
use crate::registry::Registry;

pub use cron::{CronSchedule, MissedTicks};
pub(crate) use files::{add_file_triggers, file_triggers};
pub use poll::{PollBatch, PollFn, PollItem, PollSource};
pub use schedules::{
    Backfill, MAX_BACKFILL_TICKS, OverlapPolicy, Schedule, ScheduleError, ScheduleSource,
    ScheduleSpec, schedule_run_key,
};
pub use webhook::{DEFAULT_SIGNATURE_HEADER, WebhookDelivery, WebhookError, WebhookSource};

/// The trigger definitions an engine was built with ([`Engine::triggers`]).
#[derive(Debug, Default)]
pub struct Triggers {
    crons: Vec<CronSchedule>,
    webhooks: Vec<WebhookSource>,
    polls: Vec<PollSource>,
    /// The schedules and sources (`cron:<name>`, `poll:<name>`) whose last turn in
    /// [`Triggers::fire_due`] failed: a failure is logged when it starts and when it ends,
    /// not on every retry.
    failing: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Triggers {
    /// Whether there are no triggers at all.
    pub fn is_empty(&self) -> bool {
        self.crons.is_empty() && self.webhooks.is_empty() && self.polls.is_empty()
    }

    /// Whether there is anything for [`run_schedules`] to do (a cron schedule or a poll
    /// source).
    pub fn has_schedules(&self) -> bool {
        !self.crons.is_empty() || !self.polls.is_empty()
    }

    /// The cron schedules.
    pub fn crons(&self) -> impl Iterator<Item = &CronSchedule> {
        self.crons.iter()
    }

    /// The webhook sources.
    pub fn webhooks(&self) -> impl Iterator<Item = &WebhookSource> {
        self.webhooks.iter()
    }

    /// The poll sources.
    pub fn polls(&self) -> impl Iterator<Item = &PollSource> {
        self.polls.iter()
    }

    /// The webhook source named `name`.
    pub fn webhook(&self, name: &str) -> Option<&WebhookSource> {
        self.webhooks.iter().find(|source| source.name == name)
    }

    /// Checks the definitions against the registry: valid, unique names; every referenced
    /// workflow registered; every webhook source signed or explicitly unsigned; constant
    /// cron inputs valid. Called by `EngineBuilder::build`.
    ///
    /// # Errors
    /// One error listing every problem, each naming its trigger and how to fix it.
    pub(crate) fn check(&self, registry: &Registry) -> Result<(), EngineError> {
        let mut problems = Vec::new();
        let mut check_common =
            |kind: &str, names: &mut HashSet<String>, name: &str, workflow: &str| {
                if let Err(problem) = check_name(name) {
                    problems.push(format!("{kind} `{name}`: {problem}"));
                }
                if !names.insert(name.to_owned()) {
                    problems.push(format!(
                        "{kind} `{name}` is declared twice; give each {kind} its own name"
                    ));
                }
                if registry.workflow(workflow).is_none() {
                    problems.push(format!(
                        "{kind} `{name}` starts workflow `{workflow}`, which is not registered; \
                     register it (`.register(..)` or `.discover()`) or fix the slug"
                    ));
                }
            };
        let mut names = HashSet::new();
        for cron in &self.crons {
            check_common("cron schedule", &mut names, &cron.name, &cron.workflow);
        }
        let mut names = HashSet::new();
        for source in &self.webhooks {
            check_common("webhook source", &mut names, &source.name, &source.workflow);
        }
        let mut names = HashSet::new();
        for source in &self.polls {
            check_common("poll source", &mut names, &source.name, &source.workflow);
        }
        for cron in &self.crons {
            if let (Some(input), Some(entry)) =
                (&cron.constant_input, registry.workflow(&cron.workflow))
                && let Err(violation) = entry.input.validate(input)
            {
                problems.push(format!(
                    "cron schedule `{}`: its input does not fit workflow `{}`: {violation}; \
                     fix `.input(..)`",
                    cron.name, cron.workflow
                ));
            }
        }
        for source in &self.webhooks {
            if let Some(problem) = &source.problem {
                problems.push(problem.clone());
            }
            if !source.is_signed() && !source.insecure && source.problem.is_none() {
                problems.push(format!(
                    "webhook source `{}` has no secret: anyone could start runs; give it \
                     `.secret(..)` or `.secret_env(\"VAR\")`, or accept unsigned requests \
                     explicitly with `.insecure_no_signature()`",
                    source.name
                ));
            }
        }
        for source in &self.polls {
            if source.every.is_zero() {
                problems.push(format!(
                    "poll source `{}`: the interval is zero; poll every second or more",
                    source.name
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(definition_error(format!(
                "invalid triggers: {}",
                problems.join("; ")
            )))
        }
    }

    /// Starts a run for every cron tick (of the schedules declared in code, unless paused,
    /// and of the schedules kept in the store, read afresh on every call) and poll due at
    /// `engine.now()`: the scheduling loop's step, callable by hand in tests (move the
    /// clock, call this). Returns the runs it created (runs that already existed for a
    /// tick or item are not listed).
    ///
    /// # Errors
    /// The first store error met; every trigger is still given its turn, and work not
    /// done (a tick, an item) is picked up by the next call without duplicates.
    pub async fn fire_due(&self, engine: &Engine) -> Result<Vec<RunId>, EngineError> {
        let mut started = Vec::new();
        let mut first_error = None;
        // Stored schedules and paused states, read on every turn: changes made through the
        // CLI or the HTTP API take effect without a restart. Without them, no cron tick
        // fires (a paused schedule must not): each schedule reports the failure.
        let (rows, unreadable) = match engine.store().list_schedules().await {
            Ok(rows) => (Some(rows), None),
            Err(error) => (None, Some(error.to_string())),
        };
        let paused: HashSet<&str> = rows
            .iter()
            .flatten()
            .filter(|row| row.paused)
            .map(|row| row.name.as_str())
            .collect();
        for cron in &self.crons {
            if paused.contains(cron.name()) {
                // Paused: its ticks pass without firing (resuming moves its cursor to the
                // moment of the resume, so they never fire).
                continue;
            }
            let fired = match &unreadable {
                Some(error) => Err(EngineError::Store(format!(
                    "cannot read the schedules' paused states: {error}"
                ))),
                None => cron.fire_due(engine).await,
            };
            match fired {
                Ok(runs) => {
                    if self.recovered(&format!("cron:{}", cron.name)) {
                        tracing::info!(schedule = %cron.name, "cron schedule works again");
                    }
                    started.extend(runs);
                }
                Err(error) => {
                    if self.started_failing(&format!("cron:{}", cron.name)) {
                        tracing::error!(
                            schedule = %cron.name,
                            %error,
                            "cron schedule failed; retrying until it works (its ticks are \
                             fired then, none twice)"
                        );
                    } else {
                        tracing::debug!(schedule = %cron.name, %error, "cron schedule still failing");
                    }
                    first_error.get_or_insert(error);
                }
            }
        }
        for source in &self.polls {
            match source.fire_due(engine).await {
                Ok(runs) => {
                    if self.recovered(&format!("poll:{}", source.name)) {
                        tracing::info!(source = %source.name, "poll source works again");
                    }
                    started.extend(runs);
                }
                Err(error) => {
                    if self.started_failing(&format!("poll:{}", source.name)) {
                        tracing::error!(
                            source = %source.name,
                            %error,
                            "poll source failed; retrying until it works"
                        );
                    } else {
                        tracing::debug!(source = %source.name, %error, "poll source still failing");
                    }
                    first_error.get_or_insert(error);
                }
            }
        }
        if let Some(error) = unreadable {
            if self.started_failing("schedules") {
                tracing::error!(
                    %error,
                    "cannot read the stored schedules; retrying until they can be read (their \
                     ticks are fired then, none twice)"
                );
            }
            first_error.get_or_insert(EngineError::Store(error));
        }
        if let Some(rows) = &rows {
            if self.recovered("schedules") {
                tracing::info!("the stored schedules can be read again");
            }
            let (runs, errors) = schedules::fire_stored(engine, rows).await;
            started.extend(runs);
            let failing: HashSet<String> = errors
                .iter()
                .map(|(name, _)| format!("schedule:{name}"))
                .collect();
            for (name, error) in errors {
                if self.started_failing(&format!("schedule:{name}")) {
                    tracing::error!(
                        schedule = %name,
                        %error,
                        "stored schedule failed; retrying until it works (its ticks are fired \
                         then, none twice)"
                    );
                } else {
                    tracing::debug!(schedule = %name, %error, "stored schedule still failing");
                }
                first_error.get_or_insert(error);
            }
            for row in rows {
                let key = format!("schedule:{}", row.name);
                if !failing.contains(&key) && self.recovered(&key) {
                    tracing::info!(schedule = %row.name, "stored schedule works again");
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(started),
        }
    }

    /// Marks `key` failing; whether it was not before (the failure is news).
    fn started_failing(&self, key: &str) -> bool {
        self.failing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(key.to_owned())
    }

    /// Marks `key` working; whether it was failing before.
    fn recovered(&self, key: &str) -> bool {
        self.failing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(key)
    }

    /// How long until the next cron tick or poll, on the engine's clock (`None`: nothing
    /// scheduled).
    fn until_next(&self, engine: &Engine) -> Option<Duration> {
        let now = engine.now();
        let crons = self
            .crons
            .iter()
            .filter_map(|cron| cron.next_tick(now).ok());
        let polls = self
            .polls
            .iter()
            .map(|source| source.next_due().unwrap_or(now));
        crons
            .chain(polls)
            .min()
            .map(|next| (next - now).to_std().unwrap_or(Duration::ZERO))
    }

    fn add_cron(&mut self, schedule: CronSchedule) {
        self.crons.push(schedule);
    }

    fn add_webhook(&mut self, source: WebhookSource) {
        self.webhooks.push(source);
    }

    fn add_poll(&mut self, source: PollSource) {
        self.polls.push(source);
    }
}

/// The engine's triggers are attached to it from here (the engine does not know this
/// module): checked against the registry when the engine is built.
fn check_triggers(
    registry: &crate::registry::Registry,
    parts: &crate::engine::BuilderParts,
) -> Result<(), EngineError> {
    match parts
        .get(&std::any::TypeId::of::<Triggers>())
        .and_then(|part| part.downcast_ref::<Triggers>())
    {
        Some(triggers) => triggers.check(registry),
        None => Ok(()),
    }
}

impl EngineBuilder {
    fn triggers_mut(&mut self) -> &mut Triggers {
        self.extension_mut::<Triggers>(check_triggers)
    }

    /// Adds a cron schedule (see [`CronSchedule`]). Its ticks fire while
    /// [`run_schedules`] runs (`dev`, `worker`).
    pub fn cron(mut self, schedule: CronSchedule) -> Self {
        self.triggers_mut().add_cron(schedule);
        self
    }

    /// Adds a webhook source (see [`WebhookSource`]), served at `POST /webhooks/{name}`.
    pub fn webhook(mut self, source: WebhookSource) -> Self {
        self.triggers_mut().add_webhook(source);
        self
    }

    /// Adds a poll source (see [`PollSource`]). It polls while [`run_schedules`] runs
    /// (`dev`, `worker`).
    pub fn poll(mut self, source: PollSource) -> Self {
        self.triggers_mut().add_poll(source);
        self
    }
}

impl Engine {
    /// The triggers (cron, webhook and poll sources) the engine was built with.
    pub fn triggers(&self) -> &Triggers {
        static NONE: std::sync::OnceLock<Triggers> = std::sync::OnceLock::new();
        self.extension::<Triggers>()
            .unwrap_or_else(|| NONE.get_or_init(Triggers::default))
    }
}

/// The longest the scheduling loop sleeps between looks at the clock, so that a clock
/// moved by hand (tests) or a wall clock jump is noticed quickly.
const MAX_NAP: Duration = Duration::from_secs(1);

/// Fires cron ticks, stored schedules' ticks and polls of `engine`'s triggers as they
/// fall due on the engine's clock, until `shutdown` completes. It looks at the clock, and
/// reads the stored schedules, at least once a second.
/// Errors are logged and retried, never fatal; stopping mid-way loses nothing (runs are
/// keyed by tick and item).
///
/// Several processes may run it on one store: each tick and item still starts one run.
///
/// # Errors
/// None today; the `Result` leaves room for fatal conditions.
pub async fn run_schedules(
    engine: Engine,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), EngineError> {
    let mut shutdown = std::pin::pin!(shutdown);
    let triggers = engine.triggers();
    // Always loop, also without schedules in code: schedules may be created in the store
    // at any time (`schedules create`, `POST /schedules`).
    loop {
        let nap = tokio::select! {
            () = &mut shutdown => return Ok(()),
            fired = triggers.fire_due(&engine) => match fired {
                Ok(_) => triggers
                    .until_next(&engine)
                    .unwrap_or(MAX_NAP)
                    .clamp(Duration::from_millis(10), MAX_NAP),
                // Already logged; give the store a moment.
                Err(_) => MAX_NAP,
            },
        };
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            () = tokio::time::sleep(nap) => {}
        }
    }
}

/// The error of an invalid trigger definition.
fn definition_error(message: String) -> EngineError {
    EngineError::Config(message)
}

/// Names go into URLs (`/webhooks/{name}`) and keys (`cron:<name>:<tick>`).
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "the name contains `{bad}`; use letters, digits, `-`, `_` and `.` only"
        ));
    }
    Ok(())
}

/// Runs user code `f`, turning a panic into `Err("panicked: <message>")`.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(AssertUnwindSafe(f))
        .map_err(|panic| format!("panicked: {}", panic_message(&*panic)))
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "a non-text panic".to_owned()
    }
}
