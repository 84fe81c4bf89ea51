//! Issue 12 (hardening) through the example app's command line: `workflows run
//! --idempotency-key` starts one run per key (the duplicate start), an integer the Rust
//! type cannot hold exits 2 naming its pointer (defect 8), and `dev` warns when it listens
//! beyond loopback without an API token (defect 6).

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
    for amount in [
        "18446744073709551616",
        "1.8446744073709552e19",
        "-5",
        "12.0",
    ] {
        let input =
            format!(r#"{{"employee":"Ada","amount_cents":{amount},"description":"train"}}"#);
        let out = run(app(&db).args([
            "workflows",
            "run",
            "expense-report",
            "--input",
            &input,
            "--enqueue",
        ]));
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{amount}: {stderr}");
        assert!(stderr.contains("/amount_cents"), "{amount}: {stderr}");
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
        let db = TempDb::new().unwrap();
        let port = std::net::TcpListener::bind(format!("{host}:0"))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(db.dir().join("dev.log")).unwrap();
        let child = app(&db)
            .args(["dev", "--addr", &format!("{host}:{port}")])
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        Dev { child, db }
    }

    /// The output once `dev` printed its banner (the warning comes before its end).
    fn banner(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = std::fs::read_to_string(self.db.dir().join("dev.log")).unwrap_or_default();
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
