//! Workflow files from the command line, as a user runs the example app:
//! `workflows check --files DIR` on a good and a broken directory (exit codes, every
//! problem as file:line:col on stderr), `workflows schema --file-format`, and
//! `--workflows-dir` / `REPRISE_WORKFLOWS_DIR` loading files for `workflows list` and
//! `workflows graph`.

use std::path::Path;
use std::process::{Command, Output};

use reprise_testkit::TempDb;
use serde_json::Value;

fn app(db: &TempDb) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_reprise-examples"));
    command
        .env("REPRISE_DATABASE_URL", db.url())
        .env("REPRISE_EXAMPLES_EFFECT_LOG", db.dir().join("effects.log"))
        .env_remove("REPRISE_WORKFLOWS_DIR")
        .current_dir(db.dir());
    command
}

fn run(command: &mut Command) -> Output {
    command.output().expect("the example app runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const HELLO: &str = "---
slug: fx-cli-hello
description: Says hello.
steps:
  - id: greet
    set:
      greeting: \"hello {{ inputs.name }}\"
  - id: pause
    sleep: 1s
  - id: done
    return: \"{{ vars.greeting }}\"
---

Says hello.
";

const NIGHTLY: &str = "slug: fx-cli-nightly
triggers:
  - cron: \"0 2 * * *\"
steps:
  - id: done
    return: 1
";

/// A directory `name` in `db`'s directory holding `files`.
fn dir_in(db: &TempDb, name: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
    let dir = db.dir().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for (file, content) in files {
        std::fs::write(dir.join(file), content).unwrap();
    }
    dir
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn fx_workflows_check_files_passes_a_good_dir_and_lists_every_problem_of_a_broken_one() {
    let db = TempDb::new().expect("a temp db");
    let good = dir_in(
        &db,
        "good",
        &[("hello.md", HELLO), ("nightly.yaml", NIGHTLY)],
    );
    let out = run(app(&db).args(["workflows", "check", "--files", &shown(&good)]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("2 files OK"),
        "{}",
        text(&out.stdout)
    );

    let broken = dir_in(
        &db,
        "broken",
        &[
            ("hello.md", HELLO),
            ("no-front.md", "# Just Markdown\n\nNo front matter here.\n"),
            (
                "hooked.yaml",
                "slug: fx-cli-hooked\ntriggers:\n  - webhook: fx-missing\nsteps:\n  - id: done\n    return: 1\n",
            ),
        ],
    );
    let out = run(app(&db).args(["workflows", "check", "--files", &shown(&broken)]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    let no_front = shown(&broken.join("no-front.md"));
    let hooked = shown(&broken.join("hooked.yaml"));
    assert!(
        stderr.contains(&format!(
            "{no_front}:1:1: a Markdown workflow file must start with YAML front matter"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{hooked}:3:5: no webhook source named `fx-missing` is configured"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("2 problems in"), "{stderr}");

    // `--json`: one object with the problems' positions.
    let out = run(app(&db).args(["workflows", "check", "--files", &shown(&broken), "--json"]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let body: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(body["files"], 3, "{body}");
    let errors = body["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e["path"] == hooked.as_str() && e["line"] == 3 && e["column"] == 5),
        "{body}"
    );

    // The same broken directory given to load stops any command, naming the problem
    // (exit 2); `check --files` still lists the problems when it is also configured.
    let out = run(app(&db).args(["--workflows-dir", &shown(&broken), "workflows", "list"]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("{no_front}:1:1")),
        "{}",
        text(&out.stderr)
    );
    let out = run(app(&db).env("REPRISE_WORKFLOWS_DIR", &broken).args([
        "workflows",
        "check",
        "--files",
        &shown(&broken),
    ]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
}

#[test]
fn fx_workflows_schema_file_format_prints_the_json_schema_of_files() {
    let db = TempDb::new().expect("a temp db");
    let out = run(app(&db).args(["workflows", "schema", "--file-format"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let schema: Value = serde_json::from_slice(&out.stdout).expect("a JSON Schema");
    assert!(schema["properties"]["steps"].is_object(), "{schema}");
    assert!(schema["properties"]["triggers"].is_object(), "{schema}");
    assert_eq!(schema["required"], serde_json::json!(["steps"]), "{schema}");
    // A slug or the flag is needed.
    let out = run(app(&db).args(["workflows", "schema"]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn fx_workflows_dir_loads_files_for_list_and_graph() {
    let db = TempDb::new().expect("a temp db");
    let dir = dir_in(
        &db,
        "flows",
        &[("hello.md", HELLO), ("nightly.yaml", NIGHTLY)],
    );
    let out = run(app(&db).args(["--workflows-dir", &shown(&dir), "workflows", "list"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let list = text(&out.stdout);
    let hello = list
        .lines()
        .find(|l| l.contains("fx-cli-hello"))
        .unwrap_or_else(|| panic!("fx-cli-hello is listed: {list}"));
    assert!(
        hello.contains("hello.md"),
        "the file's path is shown: {list}"
    );
    assert!(list.contains("source"), "{list}");
    // Without the option, no file is loaded.
    let out = run(app(&db).args(["workflows", "list"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains("fx-cli-hello"));

    // The environment variable does the same.
    let out = run(app(&db).env("REPRISE_WORKFLOWS_DIR", &dir).args([
        "workflows",
        "graph",
        "fx-cli-hello",
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mermaid = text(&out.stdout);
    assert!(mermaid.starts_with("flowchart TD\n"), "{mermaid}");
    assert!(
        mermaid.contains("pause"),
        "the sleep step is drawn: {mermaid}"
    );

    // The file's cron trigger is one of the schedules.
    let out = run(app(&db).args([
        "--workflows-dir",
        &shown(&dir),
        "schedules",
        "list",
        "--json",
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let schedules = text(&out.stdout);
    assert!(schedules.contains("fx-cli-nightly-cron-1"), "{schedules}");
}
