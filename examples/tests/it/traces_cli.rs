//! Traces from the example app's processes (issue 13, item 2): with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` set, the CLI exports the run's spans over OTLP/HTTP
//! (protobuf) to that collector, and has sent them by the time it exits.

use std::process::Command;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_exports_the_runs_spans_to_the_otlp_endpoint_before_it_exits() {
    let collector = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/traces"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&collector)
        .await;
    let db = TempDb::new().unwrap();
    let uri = collector.uri();
    let dir = db.dir().to_owned();
    let url = db.url();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_reprise-examples"))
            .args(["workflows", "run", "ten-steps", "--input", "5", "--json"])
            .env("REPRISE_DATABASE_URL", url)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", uri)
            .env("OTEL_SERVICE_NAME", "traces-cli-test")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .env_remove("OTEL_TRACES_SAMPLER")
            .env_remove("REPRISE_API_TOKEN")
            .current_dir(dir)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
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
