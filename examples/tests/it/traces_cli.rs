//! Traces from the example app's processes (issue 13, item 2): with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` set, the CLI exports the run's spans over OTLP/HTTP
//! (protobuf) to that collector, and has sent them by the time it exits.

use std::process::{Command, Output};

use reprise_testkit::TempDb;
use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// Runs `workflows run ten-steps` exporting to `collector`, as service `service` (or the
/// default when `None`).
async fn run_exporting(db: &TempDb, collector: &MockServer, service: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_reprise-examples"));
    command
        .args(["workflows", "run", "ten-steps", "--input", "5", "--json"])
        .env("REPRISE_DATABASE_URL", db.url())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", collector.uri())
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_TRACES_SAMPLER")
        .env_remove("OTEL_RESOURCE_ATTRIBUTES")
        .env_remove("REPRISE_API_TOKEN")
        .current_dir(db.dir());
    match service {
        Some(name) => command.env("OTEL_SERVICE_NAME", name),
        None => command.env_remove("OTEL_SERVICE_NAME"),
    };
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

async fn collector() -> MockServer {
    let collector = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/traces"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&collector)
        .await;
    collector
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_exports_the_runs_spans_to_the_otlp_endpoint_before_it_exits() {
    let collector = collector().await;
    let db = TempDb::new().unwrap();
    let out = run_exporting(&db, &collector, Some("traces-cli-test")).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["status"], "completed", "{line}");
    let run_id = line["run_id"].as_str().unwrap().to_owned();

    let requests = collector.received_requests().await.unwrap();
    assert!(
        !requests.is_empty(),
        "no OTLP request before the CLI exited"
    );
    for request in &requests {
        assert_eq!(
            request
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/x-protobuf")
        );
    }
    // The protobuf bodies carry the strings as they are: the service name, the run's id,
    // the workflow, and the step spans.
    let body: Vec<u8> = requests.iter().flat_map(|r| r.body.clone()).collect();
    for expected in [
        "traces-cli-test",
        run_id.as_str(),
        "reprise.run.id",
        "ten-steps",
        "reprise.step.id",
    ] {
        assert!(
            contains(&body, expected),
            "no `{expected}` in the exported spans"
        );
    }
}

#[test]
fn the_cli_log_leaves_the_trace_events_out_unless_rust_log_names_them() {
    let db = TempDb::new().unwrap();
    let input = r#"{"traveler":"Ada","destination":"Lisbon","hotel":"Overbooked Inn"}"#;
    let failing = |rust_log: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_reprise-examples"));
        command
            .args(["workflows", "run", "book-trip", "--input", input, "--json"])
            .env("REPRISE_DATABASE_URL", db.url())
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .env_remove("REPRISE_API_TOKEN")
            .current_dir(db.dir());
        match rust_log {
            Some(spec) => command.env("RUST_LOG", spec),
            None => command.env_remove("RUST_LOG"),
        };
        let out = command.output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        text(&out.stderr)
    };
    let quiet = failing(None);
    assert!(!quiet.contains("step failed"), "{quiet}");
    let traced = failing(Some("warn,reprise::trace=info"));
    assert!(traced.contains("step failed"), "{traced}");
    assert!(traced.contains("reprise.step.id"), "{traced}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_name_defaults_to_reprise() {
    let collector = collector().await;
    let db = TempDb::new().unwrap();
    let out = run_exporting(&db, &collector, None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let requests = collector.received_requests().await.unwrap();
    assert!(
        !requests.is_empty(),
        "no OTLP request before the CLI exited"
    );
    // The resource's attribute: the key `service.name`, then its value, a string (field 1
    // of the value, length 7): `0a 07 "reprise"`.
    let body = &requests[0].body;
    let key = body
        .windows(b"service.name".len())
        .position(|w| w == b"service.name")
        .expect("a service.name attribute");
    let after = &body[key..(key + 40).min(body.len())];
    let value = b"\x0a\x07reprise";
    assert!(after.windows(value.len()).any(|w| w == value), "{after:?}");
}
