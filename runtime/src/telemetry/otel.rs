//! OpenTelemetry export of the run and step spans (feature `otel`): OTLP over HTTP with
//! protobuf bodies, configured by the standard variables.
//!
//! | variable | effect |
//! | --- | --- |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | base URL of the collector, e.g. `http://127.0.0.1:4318` (`/v1/traces` is appended); unset or empty: nothing is exported |
//! | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` | the full traces URL instead (used as is) |
//! | `OTEL_SERVICE_NAME` | the `service.name` resource attribute (default `reprise`) |
//! | `OTEL_RESOURCE_ATTRIBUTES` | more resource attributes, `key=value,…` |
//! | `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` | the sampler (`parentbased_always_on` by default; e.g. `traceidratio` with `0.1`) |
//! | `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT` | request headers, timeout |
//!
//! Spans are batched and sent from a background thread; [`OtelGuard`] sends what is left
//! when it is dropped (or on [`OtelGuard::shutdown`]).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanExporter};
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::registry::LookupSpan;

/// OpenTelemetry could not be set up or flushed.
#[derive(Debug, thiserror::Error)]
#[error("OpenTelemetry: {0}")]
pub struct TelemetryError(String);

/// Keeps the OpenTelemetry pipeline alive; dropping it flushes the spans still buffered
/// and stops the exporter (blocking for at most the exporter's timeout).
#[derive(Debug)]
pub struct OtelGuard {
    provider: Option<SdkTracerProvider>,
}

impl OtelGuard {
    /// The tracer provider, e.g. to [`SdkTracerProvider::force_flush`] it.
    pub fn provider(&self) -> Option<&SdkTracerProvider> {
        self.provider.as_ref()
    }

    /// Flushes and stops the exporter now.
    ///
    /// # Errors
    /// The exporter could not send the last spans (the collector is unreachable) or
    /// timed out.
    pub fn shutdown(mut self) -> Result<(), TelemetryError> {
        match self.provider.take() {
            Some(provider) => provider
                .shutdown()
                .map_err(|e| TelemetryError(format!("flushing the last spans failed: {e}"))),
            None => Ok(()),
        }
    }
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("warning: OpenTelemetry: flushing the last spans failed: {error}");
        }
    }
}

/// Whether `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set
/// (and not empty).
pub(crate) fn endpoint_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var(name).is_ok_and(|v| !v.trim().is_empty()))
}

/// A `tracing-subscriber` layer that exports spans over OTLP/HTTP (protobuf), configured
/// by the `OTEL_*` variables (see the module docs), with its guard; `Ok(None)` when
/// neither `OTEL_EXPORTER_OTLP_ENDPOINT` nor `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set,
/// so that nothing is exported. Add it to your own subscriber:
///
/// ```ignore
/// use tracing_subscriber::prelude::*;
/// let otel = reprise::telemetry::otel_layer()?;
/// let (layer, _guard) = otel.unzip();
/// tracing_subscriber::registry().with(tracing_subscriber::fmt::layer()).with(layer).init();
/// ```
///
/// The layer records spans and events of level `INFO` and above (the engine's `run` and
/// `step` spans, and your own).
///
/// # Errors
/// The exporter cannot be built (a malformed endpoint URL, an unknown protocol in
/// `OTEL_EXPORTER_OTLP_PROTOCOL`).
pub fn otel_layer<S>() -> Result<Option<(impl Layer<S> + use<S>, OtelGuard)>, TelemetryError>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    if !endpoint_configured() {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| {
            TelemetryError(format!(
                "cannot build the OTLP exporter ({e}); check OTEL_EXPORTER_OTLP_ENDPOINT \
                 (a URL such as `http://127.0.0.1:4318`)"
            ))
        })?;
    Ok(Some(otel_layer_with_exporter(exporter, true)))
}

/// [`otel_layer`] with the exporter of your choice (an in-memory exporter in a test, a
/// vendor's exporter): `batch` sends spans from a background thread in batches, otherwise
/// each span is exported as it ends (for tests).
pub fn otel_layer_with_exporter<S, E>(exporter: E, batch: bool) -> (impl Layer<S>, OtelGuard)
where
    S: Subscriber + for<'span> LookupSpan<'span>,
    E: SpanExporter + 'static,
{
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name("reprise");
    }
    let builder = SdkTracerProvider::builder().with_resource(resource.build());
    let provider = if batch {
        builder.with_batch_exporter(exporter)
    } else {
        builder.with_simple_exporter(exporter)
    }
    .build();
    let tracer = provider.tracer("reprise");
    // A step span is entered on every poll of its step: no per-poll work (busy/idle
    // times, activating the OTel context), and no attributes that repeat on every span
    // (source location, thread, target). `traceparent`s are read from the span itself.
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_context_activation(false)
        .with_filter(LevelFilter::INFO);
    (
        layer,
        OtelGuard {
            provider: Some(provider),
        },
    )
}

/// Installs a global subscriber that exports spans over OTLP (see [`otel_layer`]), for a
/// program that has none; `Ok(None)` when no endpoint is configured. Keep the guard
/// until the program ends: dropping it flushes the last spans. (The `reprise` CLI does
/// this itself, next to its log output.)
///
/// # Errors
/// As [`otel_layer`]; also when a global subscriber is installed already (then add
/// [`otel_layer`] to it instead).
pub fn init_otel() -> Result<Option<OtelGuard>, TelemetryError> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let Some((layer, guard)) = otel_layer()? else {
        return Ok(None);
    };
    tracing_subscriber::registry()
        .with(layer)
        .try_init()
        .map_err(|e| {
            TelemetryError(format!(
                "a global tracing subscriber is installed already ({e}); add \
                 `reprise::telemetry::otel_layer()` to it instead"
            ))
        })?;
    Ok(Some(guard))
}
