//! Issue 17 (credentials) through the example app's process: `credentials set <name>
//! --scope ..` reads the value from stdin and keeps it encrypted in the database
//! (`REPRISE_SECRETS_KEY`), `credentials list` shows scopes and names but never values,
//! `credentials delete` removes one; an unknown scope exits 2 naming the accepted forms;
//! without a key the store is read-only (exit 2 saying to set it).

use std::io::Write;
use std::process::{Command, Output, Stdio};

use reprise_testkit::TempDb;
use serde_json::Value;

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const SECRET: &str = "ghp_cli_secret_value_77";

fn app(db: &TempDb, key: Option<&str>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_reprise-examples"));
    command
        .env("REPRISE_DATABASE_URL", db.url())
        .env_remove("REPRISE_API_TOKEN")
        .env_remove("REPRISE_SECRETS_KEY")
        .current_dir(db.dir());
    if let Some(key) = key {
        command.env("REPRISE_SECRETS_KEY", key);
    }
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `args` with `stdin` piped in.
fn run(db: &TempDb, key: Option<&str>, args: &[&str], stdin: &str) -> Output {
    let mut child = app(db, key)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn credentials_set_list_delete_round_trip_without_showing_values() {
    let db = TempDb::new().unwrap();
    let key = Some(KEY);
    let set = run(
        &db,
        key,
        &["credentials", "set", "github", "--scope", "user:ada"],
        &format!("{SECRET}\n"),
    );
    assert_eq!(set.status.code(), Some(0), "{}", text(&set.stderr));
    assert!(!text(&set.stdout).contains(SECRET));

    let list = run(&db, key, &["credentials", "list", "--json"], "");
    assert_eq!(list.status.code(), Some(0), "{}", text(&list.stderr));
    let stdout = text(&list.stdout);
    assert!(!stdout.contains(SECRET), "{stdout}");
    let listed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(listed[0]["scope"], "user:ada", "{listed}");
    assert_eq!(listed[0]["name"], "github", "{listed}");
    assert_eq!(listed[0]["source"], "stored", "{listed}");

    let table = run(
        &db,
        key,
        &["credentials", "list", "--scope", "user:ada"],
        "",
    );
    assert!(
        text(&table.stdout).contains("github"),
        "{}",
        text(&table.stdout)
    );

    // Encrypted at rest: the database files never hold the value.
    for entry in std::fs::read_dir(db.dir()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "a database file holds the secret"
        );
    }

    let delete = run(
        &db,
        key,
        &["credentials", "delete", "github", "--scope", "user:ada"],
        "",
    );
    assert_eq!(delete.status.code(), Some(0), "{}", text(&delete.stderr));
    let again = run(
        &db,
        key,
        &["credentials", "delete", "github", "--scope", "user:ada"],
        "",
    );
    assert_eq!(again.status.code(), Some(2), "{}", text(&again.stderr));
    assert!(text(&again.stderr).contains("no credential `github` in scope `user:ada`"));
}

#[test]
fn bad_scopes_empty_values_and_a_missing_key_exit_2() {
    let db = TempDb::new().unwrap();
    let bad = run(
        &db,
        Some(KEY),
        &["credentials", "set", "github", "--scope", "team:x"],
        SECRET,
    );
    assert_eq!(bad.status.code(), Some(2));
    let stderr = text(&bad.stderr);
    assert!(
        stderr.contains("unknown scope `team:x`; use `user:<id>`, `project:<id>` or `org`"),
        "{stderr}"
    );
    let empty = run(
        &db,
        Some(KEY),
        &["credentials", "set", "github", "--scope", "org"],
        "\n",
    );
    assert_eq!(empty.status.code(), Some(2));
    assert!(text(&empty.stderr).contains("no value on stdin"));
    let no_key = run(
        &db,
        None,
        &["credentials", "set", "github", "--scope", "org"],
        SECRET,
    );
    assert_eq!(no_key.status.code(), Some(2));
    let stderr = text(&no_key.stderr);
    assert!(stderr.contains("REPRISE_SECRETS_KEY"), "{stderr}");
    assert!(!stderr.contains(SECRET), "{stderr}");
    let bad_key = run(&db, Some("short"), &["credentials", "list"], "");
    assert_eq!(bad_key.status.code(), Some(2));
    let stderr = text(&bad_key.stderr);
    assert!(stderr.contains("REPRISE_SECRETS_KEY"), "{stderr}");
    assert!(!stderr.contains("short"), "{stderr}");
}
