//! Issue 12 (hardening) through the example app's processes: `workflows run
//! --idempotency-key` starts one run per key (the duplicate start), an integer the Rust
//! type cannot hold exits 2 naming its pointer (defect 8), `dev` warns when it listens
//! beyond loopback without an API token (defect 6), and a flood of idle connections under a
//! 256-descriptor limit neither stops `dev`'s API for good nor fails its worker's runs
//! (defect 3).

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use reprise_testkit::TempDb;
use serde_json::Value;

fn app(db: &TempDb) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_reprise-examples"));
    command
        .env("REPRISE_DATABASE_URL", db.url())
        .env("REPRISE_EXAMPLES_EFFECT_LOG", db.dir().join("effects.log"))
        .env_remove("REPRISE_API_TOKEN")
        .current_dir(db.dir());
    command
}

fn run(command: &mut Command) -> Output {
    command.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn runs(db: &TempDb) -> Vec<Value> {
    let out = run(app(db).args(["runs", "list", "--json"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

const REPORT: &str = r#"{"employee":"Ada","amount_cents":4200,"description":"train"}"#;

/// `workflows run expense-report --enqueue --json` with `input` and `key`.
fn enqueue(db: &TempDb, input: &str, key: &str) -> Output {
    run(app(db).args([
        "workflows",
        "run",
        "expense-report",
        "--input",
        input,
        "--enqueue",
        "--json",
        "--idempotency-key",
        key,
    ]))
}

#[test]
fn workflows_run_with_an_idempotency_key_starts_one_run_per_key() {
    let db = TempDb::new().unwrap();
    let first = enqueue(&db, REPORT, "expense-2026-12-05-ada");
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let first: Value = serde_json::from_slice(&first.stdout).unwrap();
    let id = first["run_id"].as_str().unwrap().to_owned();
    assert!(first.get("duplicate").is_none(), "{first}");

    // The script retries (it did not see the answer): the same run, nothing new.
    let again = enqueue(&db, REPORT, "expense-2026-12-05-ada");
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    let again: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["run_id"], id.as_str(), "{again}");
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(runs(&db).len(), 1);

    // Another input under the key: exit 2, naming the run; nothing started.
    let other = r#"{"employee":"Ada","amount_cents":9900,"description":"train"}"#;
    let conflict = enqueue(&db, other, "expense-2026-12-05-ada");
    let stderr = text(&conflict.stderr);
    assert_eq!(conflict.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&id), "{stderr}");
    assert!(stderr.contains("idempotency key"), "{stderr}");
    assert_eq!(runs(&db).len(), 1);

    // A key that is no key is a usage error.
    let bad = enqueue(&db, REPORT, "");
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
    assert_eq!(runs(&db).len(), 1);
}

#[test]
fn an_integer_the_rust_type_cannot_hold_exits_2_naming_the_pointer_and_creates_no_run() {
    let db = TempDb::new().unwrap();
    // `file-digest`'s `delay_ms` is a `u64`.
    for delay in [
        "18446744073709551616",
        "1.8446744073709552e19",
        "-5",
        "12.0",
        "1e3",
    ] {
        let input = format!(r#"{{"dir":".","delay_ms":{delay}}}"#);
        let out = run(app(&db).args([
            "workflows",
            "run",
            "file-digest",
            "--input",
            &input,
            "--enqueue",
        ]));
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{delay}: {stderr}");
        assert!(stderr.contains("/delay_ms"), "{delay}: {stderr}");
    }
    assert!(runs(&db).is_empty(), "no run was created");
}

/// A `dev` process on `addr`, its output in `dev.log`; killed when dropped.
struct Dev {
    child: Child,
    db: TempDb,
}

impl Dev {
    fn start(host: &str) -> Dev {
        Self::start_with(host, None, &[]).0
    }

    /// `dev` on `host` with extra `env`, under `ulimit -n <files>` when given; returns it
    /// and its port.
    fn start_with(host: &str, files: Option<u32>, env: &[(&str, &str)]) -> (Dev, u16) {
        let db = TempDb::new().unwrap();
        let port = std::net::TcpListener::bind(format!("{host}:0"))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(db.dir().join("dev.log")).unwrap();
        let binary = env!("CARGO_BIN_EXE_reprise-examples");
        let addr = format!("{host}:{port}");
        let mut command = match files {
            Some(files) => {
                let mut sh = Command::new("sh");
                sh.args(["-c", &format!("ulimit -n {files} && exec \"$0\" \"$@\"")])
                    .args([binary, "dev", "--addr", &addr]);
                sh
            }
            None => {
                let mut dev = Command::new(binary);
                dev.args(["dev", "--addr", &addr]);
                dev
            }
        };
        command
            .env("REPRISE_DATABASE_URL", db.url())
            .env("REPRISE_EXAMPLES_EFFECT_LOG", db.dir().join("effects.log"))
            .env_remove("REPRISE_API_TOKEN")
            .current_dir(db.dir())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log));
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().unwrap();
        (Dev { child, db }, port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.db.dir().join("dev.log")).unwrap_or_default()
    }

    /// The output once `dev` printed its banner (the warning comes before its end).
    fn banner(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.log();
            if log.contains("start a run:") {
                return log;
            }
            assert!(Instant::now() < deadline, "dev did not start: {log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn dev_warns_when_it_listens_beyond_loopback_without_a_token() {
    let exposed = Dev::start("0.0.0.0");
    let log = exposed.banner();
    assert!(
        log.contains("warning: the HTTP API listens on 0.0.0.0"),
        "{log}"
    );
    assert!(log.contains("REPRISE_API_TOKEN"), "{log}");
    drop(exposed);

    let local = Dev::start("127.0.0.1");
    let log = local.banner();
    assert!(!log.contains("warning: the HTTP API"), "{log}");
}

/// The status of run `id`, read by `runs get --json` (another process).
fn status_of(db: &TempDb, id: &str) -> String {
    let out = run(app(db).args(["runs", "get", id, "--json"]));
    let run: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    run["run"]["status"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_over_a_256_descriptor_limit_neither_stop_the_api_nor_fail_a_run() {
    // 256 descriptors: `dev` serves at most 128 connections; the rest wait in the backlog.
    let (dev, port) = Dev::start_with(
        "127.0.0.1",
        Some(256),
        &[("REPRISE_HTTP_HEADER_TIMEOUT", "2s")],
    );
    dev.banner();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let started: Value = client
        .post(format!("{base}/workflows/delayed-followup"))
        .header("content-type", "application/json")
        .body(r#"{"name":"Ada","email":"ada@example.com","delay":"2s"}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = started["run_id"].as_str().unwrap().to_owned();

    // 300 connections that never send a byte, while the run sleeps.
    let mut connecting = Vec::new();
    for _ in 0..300 {
        connecting.push(tokio::spawn(tokio::time::timeout(
            Duration::from_secs(3),
            tokio::net::TcpStream::connect(("127.0.0.1", port)),
        )));
    }
    let mut idle = Vec::new();
    for connection in connecting {
        if let Ok(Ok(Ok(stream))) = connection.await {
            idle.push(stream);
        }
    }
    assert!(
        idle.len() >= 200,
        "only {} connections were made",
        idle.len()
    );

    // The worker in the same process wakes the run and completes it.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = status_of(&dev.db, &id);
        if status == "completed" {
            break;
        }
        assert_ne!(status, "failed", "the run failed: {}", dev.log());
        assert!(
            Instant::now() < deadline,
            "run {id} is still {status}: {}",
            dev.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The stalled connections are closed after the header timeout: the API answers again,
    // with the 300 still open on this side.
    let answer = tokio::time::timeout(
        Duration::from_secs(45),
        client.get(format!("{base}/workflows")).send(),
    )
    .await
    .expect("the API answers once the stalled connections are timed out")
    .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let log = dev.log();
    assert!(!log.contains("Too many open files"), "{log}");
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_errors_at_the_descriptor_limit_are_logged_once_and_survived() {
    // 26 descriptors, about 17 of them `dev`'s own: the connection limit (13) is above what
    // is left, so accepting fails with "Too many open files" while the flood lasts.
    let (dev, port) = Dev::start_with(
        "127.0.0.1",
        Some(26),
        &[("REPRISE_HTTP_HEADER_TIMEOUT", "1s")],
    );
    dev.banner();
    let mut idle = Vec::new();
    for _ in 0..40 {
        if let Ok(Ok(stream)) = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(("127.0.0.1", port)),
        )
        .await
        {
            idle.push(stream);
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The server is alive and answers once the stalled connections are timed out.
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            client
                .get(format!("http://127.0.0.1:{port}/workflows"))
                .send(),
        )
        .await;
        if let Ok(Ok(answer)) = answer {
            assert_eq!(answer.status().as_u16(), 200);
            break;
        }
        assert!(Instant::now() < deadline, "no answer: {}", dev.log());
    }
    let log = dev.log();
    let warnings = log.matches("accepting an HTTP connection failed").count();
    assert_eq!(warnings, 1, "one warning a minute at most: {log}");
    assert!(log.contains("Too many open files"), "{log}");
    drop(idle);
}
