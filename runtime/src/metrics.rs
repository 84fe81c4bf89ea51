//! The engine's metrics, exposed by `GET /metrics` in the OpenMetrics text format that
//! Prometheus scrapes (<https://prometheus.io/docs/specs/om/open_metrics_spec/>), through
//! the official `prometheus-client` crate. Every name starts with `reprise_`.
//!
//! Each engine (each process) counts what it did itself — the runs it created, the steps
//! its workers ran live, the hooks it accepted — so a fleet's totals are the sum over its
//! processes, as Prometheus aggregates them. Steps answered from the log by a replay are
//! not counted: a step is counted once, by the process that ran it. The run gauges
//! (`reprise_runs`, `reprise_runs_due`) are read from the store at scrape time and are the
//! same in every process.
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | `reprise_runs_started_total` | counter | `workflow` | runs created (any trigger, forks included) |
//! | `reprise_runs_completed_total` | counter | `workflow` | runs that completed |
//! | `reprise_runs_failed_total` | counter | `workflow` | runs that failed for good |
//! | `reprise_runs_canceled_total` | counter | `workflow` | runs canceled |
//! | `reprise_step_duration_seconds` | histogram | `callee`, `outcome` | live steps (actions, sub-workflows, LLM requests, agents), start to recorded outcome, retries included; `outcome` is `completed` or `failed` |
//! | `reprise_step_attempts` | histogram | `callee` | attempts a live step took |
//! | `reprise_runs_claimed_total` | counter | | runs this process's workers claimed |
//! | `reprise_lease_takeovers_total` | counter | | claims of a run another execution had been running (its lease expired or was released) |
//! | `reprise_runs_executing` | gauge | | runs this process is executing now (holding their lease) |
//! | `reprise_hook_deliveries_total` | counter | `outcome` | hook payloads `accepted` or `rejected` (schema violations, unknown or closed hooks) |
//! | `reprise_llm_requests_total` | counter | `model` | model requests made live |
//! | `reprise_llm_tokens_total` | counter | `model`, `kind` | tokens, `kind` = `prompt`, `completion` or `cached` (of the prompt tokens, read from the cache) |
//! | `reprise_llm_cost_usd_total` | counter | `model` | their cost by the engine's [`crate::cost::PriceTable`]; models without a price are left out |
//! | `reprise_runs` | gauge | `workflow`, `status` | runs in the store, by status |
//! | `reprise_runs_due` | gauge | `workflow` | of those, due now and not leased (waiting for a worker) |
//! | `reprise_queue_active` | gauge | `queue` | admitted runs of the flow-control queue that have not ended (what its concurrency counts) |
//! | `reprise_queue_waiting` | gauge | `queue` | runs of the queue that are `queued` and not admitted yet |
//! | `reprise_queue_admitted_in_window` | gauge | `queue` | admissions in the queue's current rate window (0 without a queue-wide rate limit) |
//!
//! The queue gauges are read at scrape time ([`crate::Engine::queue_states`]), one series
//! per queue this engine knows; like the run gauges they are the same in every process.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::RunStatus;
use crate::store::RunCount;
use crate::usage::Usage;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkflowLabel {
    workflow: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    callee: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CalleeLabel {
    callee: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabel {
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    model: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabel {
    queue: String,
}

/// A flow-control queue's counts at scrape time, as the queue gauges show them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct QueueGauges {
    /// The queue's name.
    pub(crate) queue: String,
    /// Admitted, unfinished runs.
    pub(crate) active: u64,
    /// Queued runs not admitted yet.
    pub(crate) waiting: u64,
    /// Admissions in the current rate window.
    pub(crate) admitted_in_window: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunGaugeLabels {
    workflow: String,
    status: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Step durations: 1 ms to about 9 h, doubling.
fn duration_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 25))
}

/// Attempts: 1, 2, 3, 5, 10, 20, 50.
fn attempt_buckets() -> Histogram {
    Histogram::new([1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0])
}

/// The metrics of one engine (see the [module docs](self)).
pub struct Metrics {
    registry: Registry,
    runs_started: Family<WorkflowLabel, Counter>,
    runs_completed: Family<WorkflowLabel, Counter>,
    runs_failed: Family<WorkflowLabel, Counter>,
    runs_canceled: Family<WorkflowLabel, Counter>,
    step_duration: HistogramFamily<StepLabels>,
    step_attempts: HistogramFamily<CalleeLabel>,
    runs_claimed: Counter,
    lease_takeovers: Counter,
    runs_executing: Gauge,
    hook_deliveries: Family<OutcomeLabel, Counter>,
    llm_requests: Family<ModelLabel, Counter>,
    llm_tokens: Family<TokenLabels, Counter>,
    llm_cost: Family<ModelLabel, Counter<f64, AtomicU64>>,
    runs: Family<RunGaugeLabels, Gauge>,
    runs_due: Family<WorkflowLabel, Gauge>,
    queue_active: Family<QueueLabel, Gauge>,
    queue_waiting: Family<QueueLabel, Gauge>,
    queue_admitted_in_window: Family<QueueLabel, Gauge>,
    /// One scrape at a time sets the run gauges and encodes them.
    render_lock: std::sync::Mutex<()>,
    /// The step histograms of each callee, looked up without building label sets: a step's
    /// hot path pays one hash of its callee, no allocation.
    steps: std::sync::RwLock<HashMap<String, StepHistograms>>,
}

/// The histograms of one callee's steps (handles into the families).
struct StepHistograms {
    completed: Histogram,
    failed: Histogram,
    attempts: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh set of metrics, all zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("reprise");
        let metrics = Metrics {
            runs_started: Family::default(),
            runs_completed: Family::default(),
            runs_failed: Family::default(),
            runs_canceled: Family::default(),
            step_duration: Family::new_with_constructor(duration_buckets),
            step_attempts: Family::new_with_constructor(attempt_buckets),
            runs_claimed: Counter::default(),
            lease_takeovers: Counter::default(),
            runs_executing: Gauge::default(),
            hook_deliveries: Family::default(),
            llm_requests: Family::default(),
            llm_tokens: Family::default(),
            llm_cost: Family::default(),
            runs: Family::default(),
            runs_due: Family::default(),
            queue_active: Family::default(),
            queue_waiting: Family::default(),
            queue_admitted_in_window: Family::default(),
            registry: Registry::default(),
            render_lock: std::sync::Mutex::new(()),
            steps: std::sync::RwLock::new(HashMap::new()),
        };
        registry.register(
            "runs_started",
            "Runs created (any trigger, forks included)",
            metrics.runs_started.clone(),
        );
        registry.register(
            "runs_completed",
            "Runs that completed",
            metrics.runs_completed.clone(),
        );
        registry.register(
            "runs_failed",
            "Runs that failed for good",
            metrics.runs_failed.clone(),
        );
        registry.register(
            "runs_canceled",
            "Runs canceled",
            metrics.runs_canceled.clone(),
        );
        registry.register(
            "step_duration_seconds",
            "Live steps, from start to recorded outcome (retries included), in seconds",
            metrics.step_duration.clone(),
        );
        registry.register(
            "step_attempts",
            "Attempts a live step took",
            metrics.step_attempts.clone(),
        );
        registry.register(
            "runs_claimed",
            "Runs this process's workers claimed",
            metrics.runs_claimed.clone(),
        );
        registry.register(
            "lease_takeovers",
            "Claims of a run another execution had been running (lease expired or released)",
            metrics.lease_takeovers.clone(),
        );
        registry.register(
            "runs_executing",
            "Runs this process is executing now",
            metrics.runs_executing.clone(),
        );
        registry.register(
            "hook_deliveries",
            "Hook payloads accepted or rejected",
            metrics.hook_deliveries.clone(),
        );
        registry.register(
            "llm_requests",
            "Model requests made live",
            metrics.llm_requests.clone(),
        );
        registry.register(
            "llm_tokens",
            "Tokens of live model requests, by kind (prompt, completion, cached)",
            metrics.llm_tokens.clone(),
        );
        registry.register(
            "llm_cost_usd",
            "Cost of live model requests in US dollars, by the engine's price table",
            metrics.llm_cost.clone(),
        );
        registry.register(
            "runs",
            "Runs in the store, by workflow and status (read at scrape time)",
            metrics.runs.clone(),
        );
        registry.register(
            "runs_due",
            "Runs due now and not leased, by workflow (read at scrape time)",
            metrics.runs_due.clone(),
        );
        registry.register(
            "queue_active",
            "Admitted runs of the queue that have not ended (read at scrape time)",
            metrics.queue_active.clone(),
        );
        registry.register(
            "queue_waiting",
            "Queued runs of the queue not admitted yet (read at scrape time)",
            metrics.queue_waiting.clone(),
        );
        registry.register(
            "queue_admitted_in_window",
            "Admissions in the queue's current rate window (read at scrape time)",
            metrics.queue_admitted_in_window.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    /// A run of `workflow` was created.
    pub(crate) fn run_started(&self, workflow: &str) {
        self.runs_started.get_or_create(&label(workflow)).inc();
    }

    /// A run of `workflow` reached `status`; terminal statuses are counted.
    pub(crate) fn run_transition(&self, workflow: &str, status: RunStatus) {
        let family = match status {
            RunStatus::Completed => &self.runs_completed,
            RunStatus::Failed => &self.runs_failed,
            RunStatus::Canceled => &self.runs_canceled,
            _ => return,
        };
        family.get_or_create(&label(workflow)).inc();
    }

    /// A live step of `callee` recorded its outcome after `attempts` attempts and `elapsed`.
    pub(crate) fn step_finished(
        &self,
        callee: &str,
        completed: bool,
        attempts: u32,
        elapsed: Duration,
    ) {
        let observe = |histograms: &StepHistograms| {
            let duration = if completed {
                &histograms.completed
            } else {
                &histograms.failed
            };
            duration.observe(elapsed.as_secs_f64());
            histograms.attempts.observe(f64::from(attempts));
        };
        if let Some(histograms) = self
            .steps
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(callee)
        {
            return observe(histograms);
        }
        let step = |outcome| StepLabels {
            callee: callee.to_owned(),
            outcome,
        };
        // One statement per lookup: `get_or_create` hands out a read guard of the family,
        // which must be gone before the next lookup may take the family's write lock.
        let completed = self.step_duration.get_or_create(&step("completed")).clone();
        let failed = self.step_duration.get_or_create(&step("failed")).clone();
        let attempts = self
            .step_attempts
            .get_or_create(&CalleeLabel {
                callee: callee.to_owned(),
            })
            .clone();
        let histograms = StepHistograms {
            completed,
            failed,
            attempts,
        };
        observe(&histograms);
        self.steps
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(callee.to_owned(), histograms);
    }

    /// This process's workers claimed `n` runs.
    pub(crate) fn runs_claimed(&self, n: usize) {
        self.runs_claimed.inc_by(n as u64);
    }

    /// A claimed run had been running under another execution.
    pub(crate) fn lease_takeover(&self) {
        self.lease_takeovers.inc();
    }

    /// This process started (`+1`) or stopped (`-1`) executing a run.
    pub(crate) fn executing(&self, delta: i64) {
        self.runs_executing.inc_by(delta);
    }

    /// A hook payload was accepted or rejected.
    pub(crate) fn hook_delivery(&self, accepted: bool) {
        let outcome = if accepted { "accepted" } else { "rejected" };
        self.hook_deliveries
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// A live model request to `model` used `usage`, costing `cost` US dollars if priced.
    pub(crate) fn llm_request(&self, model: &str, usage: &Usage, cost: Option<f64>) {
        let model_label = ModelLabel {
            model: model.to_owned(),
        };
        self.llm_requests.get_or_create(&model_label).inc();
        for (kind, tokens) in [
            ("prompt", usage.prompt_tokens),
            ("completion", usage.completion_tokens),
            ("cached", usage.cached_tokens),
        ] {
            self.llm_tokens
                .get_or_create(&TokenLabels {
                    model: model.to_owned(),
                    kind,
                })
                .inc_by(tokens);
        }
        if let Some(cost) = cost.filter(|c| c.is_finite() && *c >= 0.0) {
            self.llm_cost.get_or_create(&model_label).inc_by(cost);
        }
    }

    /// The metrics as OpenMetrics text, with the run gauges set from `counts` (from
    /// [`crate::store::Store::run_counts`]) and the queue gauges from `queues`.
    pub(crate) fn render(&self, counts: &[RunCount], queues: &[QueueGauges]) -> String {
        let _one_at_a_time = self.render_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.runs.clear();
        self.runs_due.clear();
        self.queue_active.clear();
        self.queue_waiting.clear();
        self.queue_admitted_in_window.clear();
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        for queue in queues {
            let label = QueueLabel {
                queue: queue.queue.clone(),
            };
            self.queue_active
                .get_or_create(&label)
                .set(gauge(queue.active));
            self.queue_waiting
                .get_or_create(&label)
                .set(gauge(queue.waiting));
            self.queue_admitted_in_window
                .get_or_create(&label)
                .set(gauge(queue.admitted_in_window));
        }
        for count in counts {
            let runs = i64::try_from(count.runs).unwrap_or(i64::MAX);
            self.runs
                .get_or_create(&RunGaugeLabels {
                    workflow: count.workflow.clone(),
                    status: count.status.to_string(),
                })
                .set(runs);
            let due = i64::try_from(count.due).unwrap_or(i64::MAX);
            self.runs_due
                .get_or_create(&label(&count.workflow))
                .inc_by(due);
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn label(workflow: &str) -> WorkflowLabel {
    WorkflowLabel {
        workflow: workflow.to_owned(),
    }
}
