//! `--otel`: the benchmark with the OpenTelemetry exporter on, sending OTLP/HTTP to a
//! local sink that reads each request and answers `200` (what a collector costs the
//! sender, without a collector's own work on this machine's two cores).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry_otlp::WithExportConfig as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::BoxError;

/// The exporter and its sink, for the life of the process.
pub(crate) struct Otel {
    guard: Option<reprise::telemetry::OtelGuard>,
    requests: Arc<AtomicU64>,
}

impl Otel {
    /// Flushes the last spans; returns the OTLP requests the sink received.
    pub(crate) fn finish(mut self) -> Result<u64, BoxError> {
        if let Some(guard) = self.guard.take() {
            guard.shutdown()?;
        }
        Ok(self.requests.load(Ordering::SeqCst))
    }
}

/// Starts the sink on 127.0.0.1 and installs the OTel layer (batched OTLP/HTTP, as the CLI
/// does) as the global subscriber.
pub(crate) fn install() -> Result<Otel, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let endpoint = format!("http://{}/v1/traces", listener.local_addr()?);
    let requests = Arc::new(AtomicU64::new(0));
    let counted = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let counted = counted.clone();
            std::thread::spawn(move || {
                let _ = serve(stream, &counted);
            });
        }
    });
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .build()?;
    let (layer, guard) = reprise::telemetry::otel_layer_with_exporter(exporter, true);
    tracing_subscriber::registry().with(layer).try_init()?;
    Ok(Otel {
        guard: Some(guard),
        requests,
    })
}

/// Answers every HTTP/1.1 request on `stream` with `200` after reading its body.
fn serve(stream: TcpStream, requests: &AtomicU64) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(()); // closed
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        requests.fetch_add(1, Ordering::SeqCst);
        writer.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
        )?;
    }
}
