//! The command line's log output: a `tracing-subscriber` on standard error.
//!
//! Which lines: `RUST_LOG` (the `tracing-subscriber` `EnvFilter` syntax, e.g.
//! `reprise=debug` or `info,reprise::worker=trace`) when it is set, else
//! [`DEFAULT_FILTER`] (`info` for reprise, `warn` for everything else). Warnings and
//! errors are shown whatever `RUST_LOG` says: it can add lines, not hide those. How they
//! look: `--log-format text` (the default; colours only on a terminal) or `json`, one
//! JSON object per line with the event's fields (`run`, `error`, …) at the top level.
//!
//! Standard output is never written to: tables and `--json` output stay parseable.
//!
//! The run and step spans of `crate::telemetry` (target `reprise::trace`) and their
//! events are left out of the log unless `RUST_LOG` names that target.
//!
//! With the `otel` feature, when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, the run and step spans are also exported
//! over OTLP (see `crate::telemetry::otel_layer`); the spans left are sent when the
//! command ends.

use std::io::IsTerminal;

use tracing_subscriber::Layer;
use tracing_subscriber::filter::{EnvFilter, FilterExt, LevelFilter, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use super::args::LogFormat;

/// The filter used when `RUST_LOG` is unset or empty.
pub(super) const DEFAULT_FILTER: &str = "warn,reprise=info";

/// What must live until the command ends: the OpenTelemetry pipeline, flushed on drop.
pub(super) struct Telemetry {
    #[cfg(feature = "otel")]
    _otel: Option<crate::telemetry::OtelGuard>,
}

/// Installs the subscriber as the process's global default. Does nothing when one is
/// installed already (the application set up its own, or [`super::run`] ran before in
/// this process). An unparsable `RUST_LOG` falls back to [`DEFAULT_FILTER`] with a
/// warning naming it.
pub(super) fn init(format: LogFormat) -> Telemetry {
    let (filter, problem) = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => match EnvFilter::builder()
            .with_default_directive(LevelFilter::WARN.into())
            .parse(&spec)
        {
            Ok(filter) => (filter, None),
            Err(error) => (
                EnvFilter::new(DEFAULT_FILTER),
                Some(format!(
                    "RUST_LOG=`{spec}` is not a valid filter ({error}); using \
                     `{DEFAULT_FILTER}`. Write it like `info` or `reprise=debug,warn`"
                )),
            ),
        },
        _ => (EnvFilter::new(DEFAULT_FILTER), None),
    };
    // The run and step spans and their events (target `reprise::trace`) are for trace
    // backends: they stay out of the log unless RUST_LOG names them
    // (`RUST_LOG=info,reprise::trace=info`). Warnings and errors pass whatever RUST_LOG
    // says.
    let traces_in_log = std::env::var("RUST_LOG").is_ok_and(|spec| spec.contains("reprise::trace"));
    let not_traces = filter_fn(move |meta| traces_in_log || meta.target() != "reprise::trace");
    let filter = filter.or(LevelFilter::WARN).and(not_traces);
    let layer = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    #[cfg(feature = "otel")]
    let (otel, guard, otel_problem) = match crate::telemetry::otel_layer() {
        Ok(Some((layer, guard))) => (Some(layer), Some(guard), None),
        Ok(None) => (None, None, None),
        Err(error) => (None, None, Some(format!("{error}; spans are not exported"))),
    };
    #[cfg(not(feature = "otel"))]
    let (otel, otel_problem): (Option<tracing_subscriber::layer::Identity>, Option<String>) =
        (None, None);
    let installed = tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .with(otel)
        .try_init()
        .is_ok();
    if installed {
        for problem in [problem, otel_problem].into_iter().flatten() {
            tracing::warn!("{problem}");
        }
    }
    Telemetry {
        #[cfg(feature = "otel")]
        _otel: guard.filter(|_| installed),
    }
}
