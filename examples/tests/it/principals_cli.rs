//! Who started a run, as `runs get` shows it on the README's app (SQLite), and named API
//! tokens from the command line: printed once, listed without the token.

use reprise_testkit::TempDb;
use serde_json::Value;

use crate::operator::{app, run};

#[test]
fn runs_get_shows_who_started_the_run_and_for_whom() {
    let db = TempDb::new().unwrap();
    let dir = db.dir().join("tree");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("a.txt"), "hello").unwrap();
    let input = serde_json::json!({ "dir": dir }).to_string();
    let (code, out, err) = run(app(&db).env("USER", "alice").args([
        "workflows",
        "run",
        "file-digest",
        "--json",
        "--input",
        &input,
        "--user",
        "ada",
        "--project",
        "web",
    ]));
    assert_eq!(code, 0, "{out}{err}");
    let id = serde_json::from_str::<Value>(out.trim()).unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let (code, out, err) = run(app(&db).args(["runs", "get", &id]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("started by cli user alice"), "{out}");
    assert!(out.contains("acts for user ada"), "{out}");
    assert!(out.contains("project web"), "{out}");

    let (code, out, _) = run(app(&db).args(["runs", "get", &id, "--json"]));
    assert_eq!(code, 0);
    let detail: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        detail["identity"],
        serde_json::json!({"actor": {"type": "cli", "user": "alice"}, "user": "ada", "project": "web"})
    );

    let (code, out, err) = run(app(&db).args([
        "workflows",
        "run",
        "file-digest",
        "--input",
        &input,
        "--user",
        "not ok",
    ]));
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("--user"), "{err}");
}

#[test]
fn tokens_are_printed_once_and_listed_without_the_token() {
    let db = TempDb::new().unwrap();
    let (code, out, err) = run(app(&db).args([
        "tokens",
        "create",
        "--name",
        "ci",
        "--principal",
        "ada",
        "--scope",
        "start",
    ]));
    assert_eq!(code, 0, "{out}{err}");
    let token = out
        .lines()
        .find(|line| line.starts_with("rpr_"))
        .unwrap_or_else(|| panic!("no token in {out}"))
        .to_owned();
    let (code, out, err) = run(app(&db).args(["tokens", "list"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("ci") && out.contains("ada") && out.contains("start"),
        "{out}"
    );
    assert!(!out.contains(&token), "the list never shows the token");
    let (code, out, err) = run(app(&db).args(["tokens", "list", "--json"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains(&token));
    let (code, _, err) = run(app(&db).args([
        "tokens",
        "create",
        "--name",
        "ci",
        "--principal",
        "bob",
        "--scope",
        "read",
    ]));
    assert_eq!(code, 2, "a taken name");
    assert!(err.contains("exists already"), "{err}");
}
