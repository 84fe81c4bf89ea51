//! Retention and purging (DESIGN "Operations"; issue 15 item 6): [`Engine::purge_runs`]
//! (`runs purge`, `POST /runs/purge`), the retention policy
//! ([`EngineBuilder::retention`], `#[workflow(retention = "30d")]`) and the sweep that
//! enforces it ([`Engine::enforce_retention`], looped by [`run_retention`], which `dev` and
//! `worker` run).
//!
//! A purge deletes ended runs only (`completed`, `failed`, `canceled`), with their events
//! and run keys, in batches of at most [`crate::store::MAX_PURGE_BATCH`] runs, each its
//! own short transaction, so writers are never held up for long. A purged run leaves no
//! log to record the purge in: who asked is logged (tracing, at info) with the count
//! instead.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{BuilderParts, Engine, EngineBuilder};
use crate::error::EngineError;
use crate::registry::Registry;
use crate::store::{PurgeFilter, PurgedRun};

/// The retention settings attached to the engine (see [`EngineBuilder::retention`]).
#[derive(Clone, Debug)]
pub(crate) struct RetentionSettings {
    /// How long ended runs are kept unless their workflow says otherwise.
    default: Option<Duration>,
    /// How often [`run_retention`] sweeps.
    every: Duration,
    /// Runs per purge batch.
    batch: usize,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            default: None,
            every: DEFAULT_SWEEP_EVERY,
            batch: DEFAULT_BATCH,
        }
    }
}

/// How often the retention sweep runs unless configured: once a minute.
pub(crate) const DEFAULT_SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Runs deleted per batch (one short transaction) by the sweep and by `runs purge`.
pub(crate) const DEFAULT_BATCH: usize = 100;

/// Nothing to check against the registry: the settings are checked when set.
fn check_retention(_: &Registry, _: &BuilderParts) -> Result<(), EngineError> {
    Ok(())
}

impl EngineBuilder {
    fn retention_mut(&mut self) -> &mut RetentionSettings {
        self.extension_mut::<RetentionSettings>(check_retention)
    }

    /// Keeps ended runs (`completed`, `failed`, `canceled`) for `period` after they ended
    /// (their last update), then deletes them with their events and run keys. Applies to
    /// every registered workflow without its own `#[workflow(retention = "…")]`; runs of
    /// workflows this binary does not register are left alone (purge them with `runs
    /// purge --workflow <slug>`). Unfinished runs are never deleted, however old.
    ///
    /// Enforced by the sweep that `dev` and `worker` run ([`run_retention`], every
    /// [`EngineBuilder::retention_sweep_every`]). Default: none (runs are kept forever).
    /// A zero `period` makes [`EngineBuilder::build`] fail.
    pub fn retention(mut self, period: Duration) -> Self {
        if period.is_zero() {
            self.error.get_or_insert(EngineError::Config(
                "a retention of zero would delete every run as soon as it ends; give a \
                 period such as 30 days (`Duration::from_secs(30 * 24 * 3600)`)"
                    .into(),
            ));
            return self;
        }
        self.retention_mut().default = Some(period);
        self
    }

    /// How often the retention sweep runs (default 1 minute). Each sweep purges, per
    /// workflow, the ended runs older than its retention, in batches of 100 runs.
    /// A zero interval makes [`EngineBuilder::build`] fail.
    pub fn retention_sweep_every(mut self, every: Duration) -> Self {
        if every.is_zero() {
            self.error.get_or_insert(EngineError::Config(
                "a retention sweep interval of zero would sweep in a busy loop; use at least \
                 a second (default 1 minute)"
                    .into(),
            ));
            return self;
        }
        self.retention_mut().every = every;
        self
    }
}

/// The engine-wide retention variable of [`EngineBuilder::from_env`].
pub(crate) const RETENTION_ENV: &str = "REPRISE_RETENTION";

/// The sweep interval variable of [`EngineBuilder::from_env`].
pub(crate) const SWEEP_EVERY_ENV: &str = "REPRISE_RETENTION_SWEEP_EVERY";

/// Applies `REPRISE_RETENTION` ([`EngineBuilder::retention`]) and
/// `REPRISE_RETENTION_SWEEP_EVERY` ([`EngineBuilder::retention_sweep_every`]), humantime
/// durations, when set; a value that is not a duration makes the build fail naming it.
pub(crate) fn from_env(mut builder: EngineBuilder) -> EngineBuilder {
    type Setter = fn(EngineBuilder, Duration) -> EngineBuilder;
    let setters: [(&str, Setter); 2] = [
        (RETENTION_ENV, EngineBuilder::retention),
        (SWEEP_EVERY_ENV, EngineBuilder::retention_sweep_every),
    ];
    for (name, set) in setters {
        let Some(text) = std::env::var(name).ok().filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        match humantime::parse_duration(text.trim()) {
            Ok(duration) => builder = set(builder, duration),
            Err(e) => {
                builder.error.get_or_insert(EngineError::Config(format!(
                    "{name} `{text}` is not a duration ({e}); write one such as `30d`, \
                     `12h` or `90days`"
                )));
            }
        }
    }
    builder
}

/// What [`Engine::purge_runs`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    /// Whether this was a dry run (nothing was deleted).
    pub dry_run: bool,
    /// How many runs were deleted; in a dry run, how many would be.
    pub count: u64,
    /// The count per workflow slug (in a dry run, of the runs listed in `runs` only).
    pub by_workflow: BTreeMap<String, u64>,
    /// In a dry run, the first runs that would be deleted (at most the filter's `limit`),
    /// oldest update first; empty otherwise.
    pub runs: Vec<PurgedRun>,
}

impl Engine {
    /// Deletes the ended runs `filter` matches, with their events and run keys, in
    /// batches of `filter.limit` (at most [`crate::store::MAX_PURGE_BATCH`]) until none is
    /// left; or, with `filter.dry_run`, counts them and lists the first `filter.limit`.
    /// `by` says who asked (`cli:<user>`, `api`, your own text): the purged runs keep no
    /// log to record it in, so it is logged (tracing, info) with the count.
    ///
    /// # Errors
    /// [`EngineError::InvalidRequest`] when `filter.status` has not ended (a purge never
    /// deletes an unfinished run); store errors (the batches deleted before it stay
    /// deleted).
    pub async fn purge_runs(
        &self,
        filter: &PurgeFilter,
        by: &str,
    ) -> Result<PurgeReport, EngineError> {
        filter.check().map_err(EngineError::InvalidRequest)?;
        if filter.dry_run {
            let batch = self.store().purge_runs(filter).await?;
            let mut by_workflow = BTreeMap::new();
            for run in &batch.runs {
                *by_workflow.entry(run.workflow.clone()).or_insert(0) += 1;
            }
            return Ok(PurgeReport {
                dry_run: true,
                count: batch.count,
                by_workflow,
                runs: batch.runs,
            });
        }
        let by_workflow = self.purge_all(filter).await?;
        let count = by_workflow.values().sum();
        tracing::info!(
            by,
            count,
            before = %filter.before.to_rfc3339(),
            workflow = filter.workflow.as_deref().unwrap_or("*"),
            status = filter.status.map_or("completed|failed|canceled", |s| s.as_str()),
            "runs purged"
        );
        Ok(PurgeReport {
            dry_run: false,
            count,
            by_workflow,
            runs: Vec::new(),
        })
    }

    /// Purges batch after batch until a batch comes back short; the count per workflow.
    async fn purge_all(&self, filter: &PurgeFilter) -> Result<BTreeMap<String, u64>, EngineError> {
        let mut by_workflow = BTreeMap::new();
        loop {
            let batch = self.store().purge_runs(filter).await?;
            for run in &batch.runs {
                *by_workflow.entry(run.workflow.clone()).or_insert(0) += 1;
            }
            if batch.runs.len() < filter.batch() {
                return Ok(by_workflow);
            }
            // Let other work (appends, claims) in between batches.
            tokio::task::yield_now().await;
        }
    }

    /// The retention of workflow `slug`: its own `#[workflow(retention = "…")]`, else the
    /// engine-wide [`EngineBuilder::retention`]; `None` keeps its runs forever.
    pub fn retention_of(&self, slug: &str) -> Option<Duration> {
        let own = self
            .registry()
            .workflow(slug)
            .and_then(|entry| entry.options.retention);
        own.or_else(|| self.retention_settings().default)
    }

    /// Whether any registered workflow has a retention (its own or the engine-wide one):
    /// whether [`run_retention`] has anything to do.
    pub fn has_retention(&self) -> bool {
        self.registry()
            .workflows()
            .any(|w| self.retention_of(w.registration.slug).is_some())
    }

    fn retention_settings(&self) -> RetentionSettings {
        self.extension::<RetentionSettings>()
            .cloned()
            .unwrap_or_default()
    }

    /// One retention sweep: for every registered workflow with a retention, purges its
    /// ended runs last updated more than that long ago (on the engine's clock), in
    /// batches of 100. Logs the count per workflow at info when it purged any. Returns
    /// the count per workflow slug (workflows with nothing purged left out).
    ///
    /// # Errors
    /// The first store error; the other workflows are still swept.
    pub async fn enforce_retention(&self) -> Result<BTreeMap<String, u64>, EngineError> {
        let settings = self.retention_settings();
        let now = self.now();
        let mut purged = BTreeMap::new();
        let mut first_error = None;
        let slugs: Vec<&'static str> = self
            .registry()
            .workflows()
            .map(|w| w.registration.slug)
            .collect();
        for slug in slugs {
            let Some(period) = self.retention_of(slug) else {
                continue;
            };
            let filter = PurgeFilter {
                before: cutoff(now, period),
                workflow: Some(slug.to_owned()),
                status: None,
                limit: settings.batch,
                dry_run: false,
            };
            match self.purge_all(&filter).await {
                Ok(counts) => {
                    let count: u64 = counts.values().sum();
                    if count > 0 {
                        tracing::info!(
                            workflow = slug,
                            count,
                            retention = %humantime::format_duration(period),
                            by = "retention",
                            "ended runs past their retention purged"
                        );
                        purged.insert(slug.to_owned(), count);
                    }
                }
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(purged),
        }
    }
}

/// Parses the `before` of a purge: an RFC 3339 time (`2026-01-01T00:00:00Z`) or an age
/// (humantime: `30d`, `12h`, `90days`), meaning that long before `now`.
///
/// # Errors
/// What is wrong and the accepted forms, naming `what` (`--before`, `before`).
pub(crate) fn parse_before(
    what: &str,
    text: &str,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, EngineError> {
    let text = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    match humantime::parse_duration(text) {
        Ok(age) => Ok(cutoff(now, age)),
        Err(_) => Err(EngineError::InvalidRequest(format!(
            "{what} `{text}` is neither a time nor an age: write an RFC 3339 time \
             (`2026-01-01T00:00:00Z`) or an age such as `30d`, `12h` or `90days` (that long \
             before now)"
        ))),
    }
}

/// `now - period`, or the earliest time when that is out of range (nothing is that old).
fn cutoff(now: DateTime<Utc>, period: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(period)
        .ok()
        .and_then(|period| now.checked_sub_signed(period))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Sweeps `engine`'s retention ([`Engine::enforce_retention`]) every
/// [`EngineBuilder::retention_sweep_every`] (first at once) until `shutdown` completes;
/// returns at once when no workflow has a retention. `dev` and `worker` run it. A failing
/// sweep is logged at warn once (and at info when sweeps work again) and retried at the
/// next interval; it never stops the loop. Several processes may run it on one store.
pub async fn run_retention(engine: Engine, shutdown: impl Future<Output = ()> + Send) {
    if !engine.has_retention() {
        return;
    }
    let every = engine.retention_settings().every;
    let mut shutdown = std::pin::pin!(shutdown);
    let mut failing = false;
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            swept = engine.enforce_retention() => match swept {
                Ok(_) if failing => {
                    tracing::info!("the retention sweep works again");
                    failing = false;
                }
                Ok(_) => {}
                Err(error) => {
                    if !failing {
                        tracing::warn!(
                            %error,
                            retry_every = %humantime::format_duration(every),
                            "the retention sweep failed; retrying at every interval"
                        );
                    }
                    failing = true;
                }
            },
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}
