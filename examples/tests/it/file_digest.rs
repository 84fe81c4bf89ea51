//! `file-digest`, in-process: the report over a known tree.

use reprise_examples::file_digest::{DigestRequest, file_digest};
use reprise_testkit::{assert_each_step_recorded_once, completed_steps, memory_engine};

/// A directory of `count` small text files, plus a skipped `.git` and `target`.
pub(crate) fn fixture_tree(count: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..count {
        let sub = dir.path().join(format!("d{}", i % 3));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(
            sub.join(format!("f{i:03}.txt")),
            format!("file {i}\nhas three lines\nend"),
        )
        .unwrap();
    }
    for skipped in [".git", "target"] {
        std::fs::create_dir_all(dir.path().join(skipped)).unwrap();
        std::fs::write(dir.path().join(skipped).join("ignored"), "x").unwrap();
    }
    dir
}

#[tokio::test]
async fn the_report_covers_every_file_with_one_step_each() {
    let tree = fixture_tree(12);
    let out = tempfile::tempdir().unwrap();
    let report_path = out.path().join("report.json");
    let engine = memory_engine(|b| b).unwrap();
    let input = DigestRequest {
        dir: tree.path().to_string_lossy().into_owned(),
        delay_ms: 0,
        concurrency: 3,
        max_files: 500,
        out: Some(report_path.to_string_lossy().into_owned()),
    };
    let id = engine.start(&file_digest, input).await.unwrap();
    let execution = engine.drive(&id).await.unwrap();
    let reprise::RunOutcome::Completed(summary) = execution.outcome else {
        panic!("{:?}", execution.outcome)
    };
    assert_eq!(summary["files"], 12);
    assert_eq!(summary["lines"], 36);
    assert_eq!(summary["words"], 12 * 6);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    assert_eq!(report["digests"].as_array().unwrap().len(), 12);
    assert_eq!(report["tree_sha256"], summary["tree_sha256"]);

    let events = engine.store().events(&id).await.unwrap();
    assert_each_step_recorded_once(&events);
    let steps = completed_steps(&events);
    assert_eq!(steps.first().map(String::as_str), Some("list-files#0"));
    assert_eq!(
        steps.iter().filter(|s| s.starts_with("hash-file#")).count(),
        12
    );
    assert_eq!(steps.last().map(String::as_str), Some("write-report#0"));
}
