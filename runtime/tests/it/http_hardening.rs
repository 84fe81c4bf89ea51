//! Issue 12 (hardening), the HTTP surface: timeouts and the connection limit (defect 3),
//! cross-site refusal (6), integer validation (8), JSON for the errors hyper answers on
//! its own (9), and idempotent starts. Real servers on 127.0.0.1:0; the connection-level
//! tests talk raw TCP, since what they check is what a misbehaving client does to a socket.

use std::net::SocketAddr;
use std::time::Duration;

use reprise::http::{HttpOptions, serve};
use reprise::prelude::*;
use reprise::{EngineError, Worker, WorkerOptions};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Counted {
    count: u64,
    small: Option<i8>,
}

/// Echoes its input.
#[workflow(slug = "hardening-count")]
async fn hardening_count(input: Counted) -> Result<Counted, WorkflowError> {
    Ok(input)
}

/// Echoes its input too (another workflow, for keys scoped per workflow).
#[workflow(slug = "hardening-count-2")]
async fn hardening_count_2(input: Counted) -> Result<Counted, WorkflowError> {
    Ok(input)
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Verdict {
    decision: String,
}

/// Waits for a decision on a hook.
#[workflow(slug = "hardening-approval")]
async fn hardening_approval(ctx: Ctx, input: Counted) -> Result<Verdict, WorkflowError> {
    let _ = input;
    let verdict: Verdict = ctx.hook().await?;
    Ok(verdict)
}

/// A server (and, with `worker`, a worker) on one engine.
struct Server {
    addr: SocketAddr,
    base: String,
    client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), EngineError>>,
}

fn options() -> HttpOptions {
    HttpOptions {
        api_token: None,
        ..HttpOptions::default()
    }
}

async fn server(options: HttpOptions, worker: bool) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let engine = Engine::builder()
        .public_url(base.clone())
        .register(hardening_count)
        .register(hardening_count_2)
        .register(hardening_approval)
        .build()
        .unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(engine.clone(), listener, options, async {
        let _ = stopped.await;
    }));
    if worker {
        let worker = Worker::new(
            &engine,
            WorkerOptions {
                poll_interval: Duration::from_millis(50),
                ..WorkerOptions::default()
            },
        );
        tokio::spawn(worker.run(std::future::pending::<()>()));
    }
    Server {
        addr,
        base,
        client: reqwest::Client::new(),
        stop: Some(stop),
        task,
    }
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs `body` as JSON with extra headers; the status and the JSON answer.
    async fn post(&self, path: &str, body: &str, headers: &[(&str, &str)]) -> (StatusCode, Value) {
        let mut request = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_owned());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        json_answer(request).await
    }

    async fn runs(&self) -> Vec<Value> {
        let (status, runs) = json_answer(self.client.get(self.url("/runs"))).await;
        assert_eq!(status, StatusCode::OK, "{runs}");
        runs.as_array().unwrap().clone()
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("serve returns after its shutdown signal")
            .unwrap()
            .unwrap();
    }
}

/// Sends `request` and checks that the answer is JSON.
async fn json_answer(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    assert!(
        content_type.starts_with("application/json"),
        "{status} answered with `{content_type}`: {text}"
    );
    (status, serde_json::from_str(&text).unwrap())
}

fn assert_error(status: StatusCode, body: &Value, expected: StatusCode, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
}

/// Reads from `stream` until the server closes it; panics if it is still open after
/// `within`. Returns what was read.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut chunk = [0u8; 8192];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server kept the connection open for {within:?}; read so far: {}",
        String::from_utf8_lossy(&out)
    );
    out
}

/// An HTTP/1.1 answer read off a socket: its status and its body parsed as JSON (panics,
/// naming the answer, when the body is not JSON).
fn parse_answer(bytes: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{status} without a JSON content type: {text:?}"
    );
    let body: Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: the body of {text:?}"));
    (status, body)
}

/// Sends raw bytes on a new connection and reads the answer until the server closes.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    read_until_closed(&mut stream, Duration::from_secs(10)).await
}

// Defect 3: no read timeout, no connection limit.

#[tokio::test]
async fn stalled_and_idle_connections_are_closed_after_their_timeouts() {
    let server = server(
        HttpOptions {
            header_timeout: Duration::from_millis(500),
            idle_timeout: Duration::from_millis(500),
            ..options()
        },
        false,
    )
    .await;
    // Connects and sends nothing.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    // Sends half a request head, then stalls.
    let mut partial = TcpStream::connect(server.addr).await.unwrap();
    partial
        .write_all(b"POST /workflows/hardening-count HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Gets an answer, then stays idle on keep-alive.
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(b"GET /workflows HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();

    let nothing = read_until_closed(&mut silent, Duration::from_secs(10)).await;
    assert!(nothing.is_empty());
    let nothing = read_until_closed(&mut partial, Duration::from_secs(10)).await;
    assert!(nothing.is_empty(), "{}", String::from_utf8_lossy(&nothing));
    let answer = read_until_closed(&mut idle, Duration::from_secs(10)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn a_body_shorter_than_its_content_length_gets_408_in_json_and_a_closed_connection() {
    let server = server(
        HttpOptions {
            body_timeout: Duration::from_millis(500),
            ..options()
        },
        false,
    )
    .await;
    let request = b"POST /workflows/hardening-count HTTP/1.1\r\nHost: x\r\n\
        content-type: application/json\r\ncontent-length: 100\r\n\r\n{\"count\": 1";
    let answer = exchange(server.addr, request).await;
    let (status, body) = parse_answer(&answer);
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["code"], "request_timeout", "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("Content-Length"),
        "{body}"
    );
    assert!(server.runs().await.is_empty(), "no run was started");
    server.stop().await;
}

#[tokio::test]
async fn connections_over_the_limit_wait_and_are_served_once_one_closes() {
    let server = server(
        HttpOptions {
            max_connections: 3,
            header_timeout: Duration::from_secs(60),
            ..options()
        },
        false,
    )
    .await;
    // Three stalled connections take every slot.
    let mut stalled = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(b"GET /workf").await.unwrap();
        stalled.push(stream);
    }
    // A fourth connection's request waits.
    let mut fourth = TcpStream::connect(server.addr).await.unwrap();
    fourth
        .write_all(b"GET /workflows HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(700), fourth.read(&mut first)).await;
    assert!(
        early.is_err(),
        "the fourth connection was served while three held the limit of 3"
    );
    // One stalled connection goes away: the fourth is served.
    drop(stalled.pop());
    let answer = read_until_closed(&mut fourth, Duration::from_secs(10)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    // And the server goes on answering at the limit.
    drop(stalled);
    let (status, _) = json_answer(server.client.get(server.url("/workflows"))).await;
    assert_eq!(status, StatusCode::OK);
    server.stop().await;
}

// Defect 6: cross-site requests start runs.

#[tokio::test]
async fn a_text_plain_or_form_post_is_refused_with_415_and_starts_nothing() {
    let server = server(options(), false).await;
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let (status, body) = json_answer(
            server
                .client
                .post(server.url("/workflows/hardening-count"))
                .header("content-type", content_type)
                .body(r#"{"count": 1}"#),
        )
        .await;
        assert_error(
            status,
            &body,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        );
        assert!(
            body["error"].as_str().unwrap().contains("application/json"),
            "{body}"
        );
    }
    // A body without any Content-Type (a `fetch` with a Blob) too.
    let (status, body) = json_answer(
        server
            .client
            .post(server.url("/workflows/hardening-count"))
            .body(r#"{"count": 1}"#),
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    assert!(server.runs().await.is_empty(), "no run was started");
    // JSON is accepted.
    let (status, body) = server
        .post("/workflows/hardening-count", r#"{"count": 1}"#, &[])
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn a_cross_site_origin_is_refused_with_403_and_the_same_origin_is_not() {
    let server = server(options(), false).await;
    let input = r#"{"count": 1}"#;
    let (status, body) = server
        .post(
            "/workflows/hardening-count",
            input,
            &[("origin", "https://evil.example")],
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "cross_site");
    assert!(
        body["error"].as_str().unwrap().contains("evil.example"),
        "{body}"
    );
    let (status, body) = server
        .post(
            "/workflows/hardening-count",
            input,
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "cross_site");
    let (status, body) = server
        .post("/workflows/hardening-count", input, &[("origin", "null")])
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "cross_site");
    assert!(server.runs().await.is_empty(), "no run was started");

    // A page of this server, and clients that send no Origin, are fine.
    let (status, body) = server
        .post(
            "/workflows/hardening-count",
            input,
            &[
                ("origin", server.base.as_str()),
                ("sec-fetch-site", "same-origin"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["run_id"].as_str().unwrap().to_owned();
    // Cancel is state-changing too: refused cross-site, fine from curl (no body, no type).
    let (status, body) = json_answer(
        server
            .client
            .post(server.url(&format!("/runs/{id}/cancel")))
            .header("origin", "https://evil.example"),
    )
    .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "cross_site");
    let (status, body) = json_answer(
        server
            .client
            .post(server.url(&format!("/runs/{id}/cancel"))),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn a_hook_link_still_works_from_an_email_or_another_site() {
    let server = server(options(), true).await;
    let (status, body) = server
        .post("/workflows/hardening-approval", r#"{"count": 1}"#, &[])
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["run_id"].as_str().unwrap().to_owned();
    let url = loop {
        let (_, run) = json_answer(server.client.get(server.url(&format!("/runs/{id}")))).await;
        if let Some(url) = run["hooks"][0]["resume_url"].as_str() {
            break url.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // What a mail client does when the link is clicked: a cross-site GET.
    let (status, body) = json_answer(
        server
            .client
            .get(format!("{url}?decision=approved"))
            .header("sec-fetch-site", "cross-site")
            .header("origin", "https://mail.example"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["run_id"], id.as_str());
    server.stop().await;
}

// Defect 8: integers the Rust type cannot hold pass validation.

#[tokio::test]
async fn integers_the_rust_type_cannot_hold_are_422_naming_the_pointer_and_start_nothing() {
    let server = server(options(), false).await;
    let cases = [
        (r#"{"count": 18446744073709551616}"#, "/count"),
        (r#"{"count": 1.8446744073709552e19}"#, "/count"),
        (r#"{"count": -1}"#, "/count"),
        (r#"{"count": 1e3}"#, "/count"),
        (r#"{"count": 7.0}"#, "/count"),
        (r#"{"count": 1, "small": 128}"#, "/small"),
        (r#"{"count": 1, "small": -129}"#, "/small"),
    ];
    for (input, pointer) in cases {
        let (status, body) = server.post("/workflows/hardening-count", input, &[]).await;
        assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "schema");
        let pointers: std::collections::BTreeSet<&str> = body["violations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["pointer"].as_str().unwrap())
            .collect();
        assert_eq!(pointers, [pointer].into(), "{input}: {body}");
    }
    assert!(server.runs().await.is_empty(), "no run was started");
    // The extremes the types hold are accepted.
    let (status, body) = server
        .post(
            "/workflows/hardening-count",
            r#"{"count": 18446744073709551615, "small": -128}"#,
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    server.stop().await;
}

// Defect 9: errors below the router have empty, non-JSON bodies.

#[tokio::test]
async fn errors_hyper_answers_before_the_router_are_json() {
    let server = server(options(), false).await;
    let bad_length = b"POST /workflows/hardening-count HTTP/1.1\r\nHost: x\r\n\
        content-type: application/json\r\ncontent-length: abc\r\n\r\n{}";
    let (status, body) = parse_answer(&exchange(server.addr, bad_length).await);
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("bad_request")),
        "{body}"
    );

    // A TLS ClientHello sent to the plain-HTTP port.
    let tls = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\x00\x01\x02\x03\r\n\r\n";
    let (status, body) = parse_answer(&exchange(server.addr, tls).await);
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("bad_request")),
        "{body}"
    );

    let garbage = b"hello there\r\n\r\n";
    let (status, body) = parse_answer(&exchange(server.addr, garbage).await);
    assert_eq!(status, 400, "{body}");

    let long = format!(
        "GET /runs?workflow={} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(200_000)
    );
    let (status, body) = parse_answer(&exchange(server.addr, long.as_bytes()).await);
    assert_eq!(
        (status, body["code"].as_str()),
        (414, Some("uri_too_long")),
        "{body}"
    );

    // The router's own errors, for completeness: 404, 405, 413, bad JSON.
    let (status, body) = json_answer(server.client.get(server.url("/nowhere"))).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = json_answer(server.client.put(server.url("/workflows"))).await;
    assert_error(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    let big = format!(
        r#"{{"count": 1, "pad": "{}"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let (status, body) = server.post("/workflows/hardening-count", &big, &[]).await;
    assert_error(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    let (status, body) = server
        .post("/workflows/hardening-count", "{count:", &[])
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    // After all that the server still answers.
    let (status, _) = json_answer(server.client.get(server.url("/workflows"))).await;
    assert_eq!(status, StatusCode::OK);
    server.stop().await;
}

// The duplicate start: no idempotency key.

#[tokio::test]
async fn an_idempotency_key_returns_the_same_run_and_refuses_another_input() {
    let server = server(options(), false).await;
    let key = [("idempotency-key", "order-42")];
    let (status, first) = server
        .post("/workflows/hardening-count", r#"{"count": 1}"#, &key)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    assert_eq!(first["status"], "queued");
    assert!(first.get("duplicate").is_none(), "{first}");
    let id = first["run_id"].as_str().unwrap();

    // The retry after a cut connection: same key, same input.
    let (status, again) = server
        .post("/workflows/hardening-count", r#"{ "count" : 1 }"#, &key)
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["run_id"], id, "{again}");
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(again["status"], "queued", "{again}");

    // Another input under the key: 409 naming the run.
    let (status, conflict) = server
        .post("/workflows/hardening-count", r#"{"count": 2}"#, &key)
        .await;
    assert_error(
        status,
        &conflict,
        StatusCode::CONFLICT,
        "idempotency_conflict",
    );
    assert!(
        conflict["error"].as_str().unwrap().contains(id),
        "{conflict}"
    );

    // Keys are per workflow.
    let (status, other) = server
        .post("/workflows/hardening-count-2", r#"{"count": 2}"#, &key)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{other}");
    assert_ne!(other["run_id"], id);

    // A malformed key is 400, and starts nothing.
    let long = "k".repeat(300);
    let (status, body) = server
        .post(
            "/workflows/hardening-count",
            r#"{"count": 3}"#,
            &[("idempotency-key", long.as_str())],
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(server.runs().await.len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn concurrent_starts_with_one_key_create_one_run() {
    let server = server(options(), false).await;
    let server = std::sync::Arc::new(server);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            server
                .post(
                    "/workflows/hardening-count",
                    r#"{"count": 5}"#,
                    &[("idempotency-key", "same")],
                )
                .await
        }));
    }
    let mut ids = std::collections::HashSet::new();
    let mut created = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            StatusCode::ACCEPTED => created += 1,
            StatusCode::OK => assert_eq!(body["duplicate"], true, "{body}"),
            other => panic!("{other}: {body}"),
        }
        ids.insert(body["run_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(created, 1);
    assert_eq!(ids.len(), 1);
    assert_eq!(server.runs().await.len(), 1);
    let Ok(server) = std::sync::Arc::try_unwrap(server) else {
        panic!("every request finished");
    };
    server.stop().await;
}
