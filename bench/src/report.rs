//! Results: one [`Metric`] per measured figure, with DESIGN's goal next to it; printed as
//! a plain table or as JSON.

use serde::{Deserialize, Serialize};

use crate::system::{FsyncStats, Machine};

/// A DESIGN target for a metric.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Goal {
    /// The value must be at least this.
    AtLeast(f64),
    /// The value must be at most this.
    AtMost(f64),
}

impl Goal {
    fn met(self, value: f64) -> bool {
        match self {
            Goal::AtLeast(goal) => value >= goal,
            Goal::AtMost(goal) => value <= goal,
        }
    }

    fn show(self, unit: &str) -> String {
        match self {
            Goal::AtLeast(goal) => format!(">= {} {unit}", number(goal)),
            Goal::AtMost(goal) => format!("<= {} {unit}", number(goal)),
        }
    }
}

/// One measured figure.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Metric {
    /// `w1`, `w2`, `w3`, `w3-10k`, `flat`, `fsync`.
    pub(crate) workload: String,
    /// `memory`, `sqlite` or `disk`.
    pub(crate) store: String,
    /// What was measured.
    pub(crate) name: String,
    /// The value, in `unit`.
    pub(crate) value: f64,
    /// The unit.
    pub(crate) unit: String,
    /// DESIGN's target, if it sets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) goal: Option<Goal>,
    /// Whether the target is met.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) met: Option<bool>,
    /// DESIGN's figure for the fastest established engine, for scale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reference: Option<String>,
    /// Over several rounds: the smallest value (`value` is the median).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) min: Option<f64>,
    /// Over several rounds: the largest value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) max: Option<f64>,
}

impl Metric {
    /// A metric without goal.
    pub(crate) fn new(workload: &str, store: &str, name: &str, value: f64, unit: &str) -> Metric {
        Metric {
            workload: workload.to_owned(),
            store: store.to_owned(),
            name: name.to_owned(),
            value,
            unit: unit.to_owned(),
            goal: None,
            met: None,
            reference: None,
            min: None,
            max: None,
        }
    }

    /// With DESIGN's target.
    pub(crate) fn goal(mut self, goal: Goal) -> Metric {
        self.met = Some(goal.met(self.value));
        self.goal = Some(goal);
        self
    }

    /// With the established engine's figure.
    pub(crate) fn reference(mut self, reference: &str) -> Metric {
        self.reference = Some(reference.to_owned());
        self
    }
}

/// Merges the metrics of several rounds: one metric per (workload, store, name), in order
/// of first appearance, whose value is the median of the rounds (with min and max when
/// there was more than one).
pub(crate) fn aggregate(rounds: Vec<Vec<Metric>>) -> Vec<Metric> {
    let mut merged: Vec<(Metric, Vec<f64>)> = Vec::new();
    for metric in rounds.into_iter().flatten() {
        let same = |m: &Metric| {
            m.workload == metric.workload && m.store == metric.store && m.name == metric.name
        };
        match merged.iter_mut().find(|(m, _)| same(m)) {
            Some((_, values)) => values.push(metric.value),
            None => {
                let value = metric.value;
                merged.push((metric, vec![value]));
            }
        }
    }
    merged
        .into_iter()
        .map(|(mut metric, mut values)| {
            metric.value = crate::stats::percentile(&mut values, 50.0);
            if values.len() > 1 {
                metric.min = values.first().copied();
                metric.max = values.last().copied();
            }
            metric.met = metric.goal.map(|g| g.met(metric.value));
            metric
        })
        .collect()
}

/// Everything one invocation measured.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Report {
    /// The machine.
    pub(crate) machine: Machine,
    /// The fdatasync floor of the benchmark directory's disk, if measured.
    pub(crate) fsync: Option<FsyncStats>,
    /// The figures.
    pub(crate) metrics: Vec<Metric>,
    /// Remarks (failures, caveats).
    pub(crate) notes: Vec<String>,
}

/// A number with sensible precision.
pub(crate) fn number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 1000.0 {
        let whole = format!("{value:.0}");
        // Thousands separators for readability.
        let (sign, digits) = whole.split_at(usize::from(whole.starts_with('-')));
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        format!("{sign}{grouped}")
    } else if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// Prints the report as a plain table.
pub(crate) fn print_table(report: &Report) {
    let m = &report.machine;
    println!(
        "machine: {} | {} logical CPUs | {} MiB RAM | kernel {} | bench dir {} ({} on {})",
        m.cpu_model, m.logical_cpus, m.mem_total_mib, m.kernel, m.bench_dir, m.filesystem, m.device
    );
    if let Some(f) = &report.fsync {
        println!(
            "fdatasync floor (4 KiB overwrite + fdatasync, {} runs): median {:.0} µs, p99 {:.0} µs => {} ops/s; \
             same with fsync: median {:.0} µs; appending + fdatasync: median {:.0} µs; \
             WAL-like commit (16 KiB + fsync): median {:.0} µs",
            f.iterations,
            f.median_us,
            f.p99_us,
            number(f.ops_per_s),
            f.fsync_median_us,
            f.append_median_us,
            f.wal_commit_median_us
        );
    }
    println!();
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::ASCII_MARKDOWN);
    table.set_header([
        "workload",
        "store",
        "metric",
        "measured",
        "DESIGN target",
        "status",
        "established engine",
    ]);
    for metric in &report.metrics {
        let status = match metric.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "",
        };
        table.add_row([
            metric.workload.clone(),
            metric.store.clone(),
            metric.name.clone(),
            match (metric.min, metric.max) {
                (Some(min), Some(max)) => format!(
                    "{} {} ({}-{})",
                    number(metric.value),
                    metric.unit,
                    number(min),
                    number(max)
                ),
                _ => format!("{} {}", number(metric.value), metric.unit),
            },
            metric
                .goal
                .map(|g| g.show(&metric.unit))
                .unwrap_or_default(),
            status.to_owned(),
            metric.reference.clone().unwrap_or_default(),
        ]);
    }
    println!("{table}");
    for note in &report.notes {
        println!("note: {note}");
    }
}
