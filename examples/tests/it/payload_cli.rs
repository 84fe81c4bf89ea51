//! Payload limits as a CLI user meets them: a workflow input over the default limit
//! (2 MiB of JSON) is refused with exit 2, naming the size and the limit, and starts
//! nothing.

use std::process::Command;

use reprise_testkit::TempDb;

#[test]
fn an_input_over_the_payload_limit_is_exit_2_and_starts_nothing() {
    let db = TempDb::new().unwrap();
    let app = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_reprise-examples"));
        command
            .env("REPRISE_DATABASE_URL", db.url())
            .env("REPRISE_EXAMPLES_EFFECT_LOG", db.dir().join("effects.log"))
            .current_dir(db.dir());
        command
    };
    // 2 MiB + 1 byte of JSON exactly: `{"dir":"xx…"}`.
    let limit = reprise::DEFAULT_MAX_PAYLOAD_BYTES as usize;
    let dir = "x".repeat(limit + 1 - r#"{"dir":""}"#.len());
    let input = serde_json::json!({ "dir": dir }).to_string();
    assert_eq!(input.len(), limit + 1);
    let path = db.dir().join("big.json");
    std::fs::write(&path, &input).unwrap();
    let out = app()
        .args(["workflows", "run", "file-digest", "--enqueue", "--input"])
        .arg(format!("@{}", path.display()))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("the input of workflow `file-digest` is 2097153 bytes")
            && err.contains("limit of 2097152 bytes"),
        "{err}"
    );
    let list = app().args(["runs", "list", "--json"]).output().unwrap();
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        !listed.contains("file-digest"),
        "no run was started: {listed}"
    );
}
