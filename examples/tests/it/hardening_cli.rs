//! The command line under adverse conditions (issue 12): logs on standard error (defect
//! 4), exit code 4 for store failures (10), store-open errors that say what failed and
//! read-only commands (11), nonsensical worker settings (12), a truncated database beside
//! its log (13), file modes and short hook secrets (part of 2 and 5).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reprise::event::Trigger;
use reprise_testkit::TempDb;
use serde_json::Value;

/// A 32-byte hook secret, so that a test does not depend on `hook.key`.
const SECRET: &str = "0123456789abcdef0123456789abcdef";

/// The example app on `db`, with a hook secret of its own, logging as by default.
fn app(db: &TempDb) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_reprise-examples"));
    command
        .env("REPRISE_DATABASE_URL", db.url())
        .env("REPRISE_EXAMPLES_EFFECT_LOG", db.dir().join("effects.log"))
        .env_remove("RUST_LOG")
        .env_remove("REPRISE_LOG_FORMAT")
        .env_remove("REPRISE_HOOK_SECRET")
        .current_dir(db.dir());
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `command` to its end, or kills it after `limit` and returns `None`: a command
/// that should stop at once must not hang the suite when it does not.
fn output_within(command: &mut Command, limit: Duration) -> Option<Output> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while started.elapsed() < limit {
        if child.try_wait().unwrap().is_some() {
            return Some(child.wait_with_output().unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn finished(command: &mut Command) -> Output {
    output_within(command, Duration::from_secs(60)).expect("the command did not end in 60 s")
}

/// Starts `command` and collects its standard error lines until one contains `wanted`
/// (or `limit` passes); kills it then. Returns every line read.
fn stderr_until(command: &mut Command, wanted: &str, limit: Duration) -> Vec<String> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines, inbox) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match inbox.recv_timeout(left) {
            Ok(line) => {
                let found = line.contains(wanted);
                seen.push(line);
                if found {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    seen
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Enqueues a `ten-steps` run on `db` through the CLI (creating the database); returns
/// its id.
fn enqueue(db: &TempDb) -> String {
    let out = finished(app(db).env("REPRISE_HOOK_SECRET", SECRET).args([
        "workflows",
        "run",
        "ten-steps",
        "--input",
        "5",
        "--enqueue",
        "--json",
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    line["run_id"].as_str().unwrap().to_owned()
}

// ---------------------------------------------------------------------------------------
// Logs (defect 4)

/// A worker whose store is unreachable (nothing listens on port 1) says so on standard
/// error, with the address, in the chosen format, and stdout stays clean.
#[test]
fn a_worker_on_a_failing_store_logs_could_not_claim_runs_as_text_and_as_json() {
    let db = TempDb::new().unwrap();
    let unreachable = "postgres://reprise@127.0.0.1:1/app";
    let worker = |format: &str, triggers: bool| {
        let mut command = app(&db);
        command
            .env("REPRISE_DATABASE_URL", unreachable)
            .env("REPRISE_HOOK_SECRET", SECRET)
            .args(["worker", "--log-format", format]);
        if !triggers {
            command.arg("--no-triggers");
        }
        command
    };

    let lines = stderr_until(
        &mut worker("text", false),
        "could not claim runs",
        Duration::from_secs(30),
    );
    let line = lines
        .iter()
        .find(|line| line.contains("could not claim runs"))
        .unwrap_or_else(|| panic!("no `could not claim runs` line on stderr: {lines:#?}"));
    assert!(
        line.contains("WARN") && line.contains("127.0.0.1:1"),
        "{line}"
    );

    // With the cron trigger on, for 3 s: each failure is logged once, not on every retry
    // (the worker claims and the scheduler fires every second).
    let lines = stderr_until(
        &mut worker("json", true),
        "a line that never comes",
        Duration::from_secs(3),
    );
    let logs: Vec<Value> = lines
        .iter()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    let claim = logs
        .iter()
        .find(|log| {
            log["message"]
                .as_str()
                .is_some_and(|m| m.contains("could not claim runs"))
        })
        .unwrap_or_else(|| panic!("no JSON `could not claim runs` line: {lines:#?}"));
    assert_eq!(claim["level"], "WARN", "{claim}");
    assert!(claim["target"].as_str().unwrap().starts_with("reprise"));
    assert!(claim["timestamp"].is_string(), "{claim}");
    assert!(
        claim["error"].as_str().unwrap().contains("127.0.0.1:1"),
        "the error is a field of its own: {claim}"
    );
    let count = |text: &str| {
        logs.iter()
            .filter(|log| log["message"].as_str().is_some_and(|m| m.contains(text)))
            .count()
    };
    assert_eq!(count("could not claim runs"), 1, "{lines:#?}");
    // One line per declared schedule of the app (`daily-digest`, `repo-digest-daily` in
    // code, `nightly-report` in its workflow file).
    assert_eq!(count("cron schedule failed"), 3, "{lines:#?}");
    let cron = logs
        .iter()
        .find(|log| {
            log["message"]
                .as_str()
                .is_some_and(|m| m.contains("cron schedule failed"))
        })
        .unwrap();
    assert_eq!(cron["level"], "ERROR");
    assert_eq!(cron["schedule"], "daily-digest");
}

#[test]
fn rust_log_can_add_detail_but_never_hides_warnings() {
    let db = TempDb::new().unwrap();
    enqueue(&db);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(db.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let out = finished(
        app(&db)
            .env("REPRISE_HOOK_SECRET", SECRET)
            .env("RUST_LOG", "off")
            .args(["workflows", "list"]),
    );
    assert_eq!(out.status.code(), Some(0));
    let stderr = text(&out.stderr);
    #[cfg(unix)]
    assert!(
        stderr.contains("WARN") && stderr.contains("has mode 0644"),
        "RUST_LOG=off still shows warnings: {stderr}"
    );
    assert!(
        text(&out.stdout).contains("ten-steps"),
        "stdout is the table"
    );
    assert!(!text(&out.stdout).contains("WARN"), "logs stay off stdout");
}

// ---------------------------------------------------------------------------------------
// Exit codes and store-open errors (defects 10, 11)

#[test]
fn help_lists_the_exit_codes() {
    let db = TempDb::new().unwrap();
    let out = finished(app(&db).arg("--help"));
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    for line in [
        "0  completed",
        "2  usage",
        "3  a run is still waiting",
        "4  store or infrastructure failure",
    ] {
        assert!(help.contains(line), "missing `{line}`: {help}");
    }
    assert!(help.contains("--log-format"), "{help}");
}

#[test]
fn a_file_that_is_not_a_database_exits_4_with_a_helpful_message() {
    let db = TempDb::new().unwrap();
    let notes = "# my notes\nnot a database at all\n";
    std::fs::write(db.path(), notes).unwrap();
    for args in [
        &["runs", "list"][..],
        &["workflows", "list"],
        &["runs", "resume"],
    ] {
        let out = finished(app(&db).env("REPRISE_HOOK_SECRET", SECRET).args(args));
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&db.path().display().to_string())
                && stderr.contains("is not a database")
                && stderr.contains("# my notes")
                && stderr.contains("REPRISE_DATABASE_URL"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("WAL mode"), "{stderr}");
    }
    assert_eq!(std::fs::read_to_string(db.path()).unwrap(), notes);
}

#[test]
fn a_damaged_database_exits_4_and_says_it_is_damaged() {
    let db = TempDb::new().unwrap();
    enqueue(&db);
    let mut bytes = std::fs::read(db.path()).unwrap();
    bytes[100..4096].fill(0xff); // the schema's page, after the file header
    std::fs::write(db.path(), &bytes).unwrap();
    for args in [&["runs", "list"][..], &["runs", "resume"]] {
        let out = finished(app(&db).env("REPRISE_HOOK_SECRET", SECRET).args(args));
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{args:?}: {stderr}");
        assert!(
            stderr.contains("damaged") && stderr.contains(".recover"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn an_unreachable_postgres_exits_4_naming_the_server() {
    let db = TempDb::new().unwrap();
    let out = finished(
        app(&db)
            .env("REPRISE_DATABASE_URL", "postgres://reprise@127.0.0.1:1/app")
            .env("REPRISE_HOOK_SECRET", SECRET)
            .args(["runs", "list"]),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("127.0.0.1:1/app") && stderr.contains("pg_isready"),
        "{stderr}"
    );
}

#[test]
fn a_database_url_of_an_unknown_kind_is_a_usage_error() {
    let db = TempDb::new().unwrap();
    let out = finished(
        app(&db)
            .env("REPRISE_DATABASE_URL", "mysql://localhost/app")
            .args(["runs", "list"]),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("unsupported database URL"));
}

// ---------------------------------------------------------------------------------------
// Read-only commands (defect 11)

#[test]
fn read_only_commands_on_a_missing_database_exit_4_and_create_nothing() {
    let db = TempDb::new().unwrap();
    for args in [
        &["runs", "list"][..],
        &["runs", "get", "some-run"],
        &["runs", "export", "some-run"],
        &["workflows", "check"],
    ] {
        let out = finished(app(&db).args(args));
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("no database at {}", db.path().display())),
            "{args:?}: {stderr}"
        );
    }
    let left: Vec<_> = std::fs::read_dir(db.dir()).unwrap().collect();
    assert!(left.is_empty(), "created {left:?}");
}

#[test]
fn read_only_commands_change_nothing_and_create_no_file() {
    let db = TempDb::new().unwrap();
    // A database made by the library: no `hook.key` beside it.
    let id = {
        let engine = db.engine(|builder| builder).unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime
            .block_on(engine.start_json("ten-steps", serde_json::json!(5), Trigger::Cli))
            .unwrap()
            .to_string()
    };
    let files = |dir: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(files(db.dir()), ["reprise.db"]);
    let bytes = std::fs::read(db.path()).unwrap();
    let modified = std::fs::metadata(db.path()).unwrap().modified().unwrap();

    let out = finished(app(&db).args(["runs", "list", "--json"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let runs: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs[0]["id"], id.as_str());
    for args in [
        &["runs", "get", id.as_str()][..],
        &["runs", "export", id.as_str()],
        &["workflows", "check"],
    ] {
        let out = finished(app(&db).args(args));
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    assert_eq!(
        files(db.dir()),
        ["reprise.db"],
        "no -wal, -shm or hook.key was created"
    );
    assert!(
        std::fs::read(db.path()).unwrap() == bytes,
        "the database file's bytes changed"
    );
    assert_eq!(
        std::fs::metadata(db.path()).unwrap().modified().unwrap(),
        modified
    );
}

#[cfg(unix)]
#[test]
fn runs_list_needs_only_read_permission() {
    use std::os::unix::fs::PermissionsExt;
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|out| text(&out.stdout).trim() == "0")
        .unwrap_or(true);
    if root {
        eprintln!("skipped: file permissions do not bind root (the effective uid is 0)");
        return;
    }
    let db = TempDb::new().unwrap();
    let id = enqueue(&db);
    std::fs::set_permissions(db.path(), std::fs::Permissions::from_mode(0o400)).unwrap();
    std::fs::set_permissions(db.dir(), std::fs::Permissions::from_mode(0o500)).unwrap();
    let list = finished(app(&db).args(["runs", "list", "--json"]));
    let resume = finished(
        app(&db)
            .env("REPRISE_HOOK_SECRET", SECRET)
            .args(["runs", "resume"]),
    );
    std::fs::set_permissions(db.dir(), std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(list.status.code(), Some(0), "{}", text(&list.stderr));
    assert!(text(&list.stdout).contains(&id));
    assert_eq!(resume.status.code(), Some(4), "{}", text(&resume.stderr));
    assert!(text(&resume.stderr).contains("permission denied"));
}

// ---------------------------------------------------------------------------------------
// Worker settings (defect 12)

#[test]
fn nonsensical_worker_settings_exit_2_at_once() {
    let db = TempDb::new().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (&["worker", "--concurrency", "0"], "at least 1"),
        (
            &["dev", "--addr", "127.0.0.1:0", "--concurrency", "0"],
            "at least 1",
        ),
        (&["worker", "--lease", "0s"], "too short"),
        (&["worker", "--lease", "100ms"], "too short"),
        (&["worker", "--lease", "30days"], "too long"),
    ];
    for (args, wanted) in cases {
        let out = output_within(
            app(&db).env("REPRISE_HOOK_SECRET", SECRET).args(args),
            Duration::from_secs(20),
        )
        .unwrap_or_else(|| panic!("{args:?} did not stop: it was accepted"));
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(wanted), "{args:?}: {stderr}");
    }
}

// ---------------------------------------------------------------------------------------
// A truncated database beside its log (defect 13)

#[test]
fn an_empty_database_file_beside_its_log_is_an_error_not_a_new_store() {
    let db = TempDb::new().unwrap();
    let copy = TempDb::new().unwrap();
    {
        // While the engine is open, its runs are in the log, not yet in the database file.
        let engine = db.engine(|builder| builder).unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime
            .block_on(engine.start_json("ten-steps", serde_json::json!(5), Trigger::Cli))
            .unwrap();
        std::fs::copy(sidecar(&db.path(), "-wal"), sidecar(&copy.path(), "-wal")).unwrap();
    }
    // The database file truncated (a bad copy, `> reprise.db`), its log still there.
    std::fs::write(copy.path(), b"").unwrap();
    let log = std::fs::metadata(sidecar(&copy.path(), "-wal"))
        .unwrap()
        .len();
    for args in [&["runs", "resume"][..], &["runs", "list"], &["worker"]] {
        let out = output_within(
            app(&copy).env("REPRISE_HOOK_SECRET", SECRET).args(args),
            Duration::from_secs(20),
        )
        .unwrap_or_else(|| panic!("{args:?} went on with an empty database"));
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{args:?}: {stderr}");
        assert!(
            stderr.contains("empty (0 bytes)") && stderr.contains("write-ahead log"),
            "{args:?}: {stderr}"
        );
        assert!(!text(&out.stdout).contains("no unfinished runs"));
    }
    assert_eq!(
        std::fs::metadata(sidecar(&copy.path(), "-wal"))
            .unwrap()
            .len(),
        log,
        "the log is kept for recovery"
    );
}

// ---------------------------------------------------------------------------------------
// File modes and hook secrets (parts of defects 2 and 5)

#[cfg(unix)]
#[test]
fn a_new_database_and_hook_key_are_private_and_loose_ones_are_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let db = TempDb::new().unwrap();
    let out = finished(app(&db).args(["workflows", "list"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let key = db.dir().join("hook.key");
    assert_eq!(mode(&db.path()), 0o600, "the database file");
    assert_eq!(mode(&key), 0o600, "hook.key");
    assert!(!text(&out.stderr).contains("WARN"), "{}", text(&out.stderr));

    std::fs::set_permissions(db.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = finished(app(&db).args(["workflows", "list"]));
    assert_eq!(out.status.code(), Some(0));
    let stderr = text(&out.stderr);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("WARN")).collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("reprise.db has mode 0644") && w.contains("chmod 600")),
        "{stderr}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("hook.key has mode 0640") && w.contains("chmod 600")),
        "{stderr}"
    );
    assert_eq!(warnings.len(), 2, "each once: {stderr}");
}

#[test]
fn a_hook_secret_under_32_bytes_is_refused_with_exit_2() {
    let db = TempDb::new().unwrap();
    let short = &SECRET[..31];
    for (secret, wanted) in [("", "empty"), (short, "only 31 bytes")] {
        let out = finished(
            app(&db)
                .env("REPRISE_HOOK_SECRET", secret)
                .args(["workflows", "list"]),
        );
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{secret:?}: {stderr}");
        assert!(
            stderr.contains("REPRISE_HOOK_SECRET")
                && stderr.contains(wanted)
                && stderr.contains("at least 32 bytes")
                && stderr.contains("openssl rand -base64 32"),
            "{stderr}"
        );
        assert!(!db.path().exists(), "nothing was opened");
    }
    let out = finished(
        app(&db)
            .env("REPRISE_HOOK_SECRET", SECRET)
            .args(["workflows", "list"]),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}
