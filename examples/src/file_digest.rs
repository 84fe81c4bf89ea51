//! `file-digest`: list the files of a directory (one step), hash and count each file
//! (one step per file, at most `concurrency` at a time with [`reprise::fan_out`]),
//! aggregate a report and write it to disk (an idempotent action).
//!
//! ```text
//! cargo run -q -p reprise-examples -- workflows run file-digest --input '{"dir":"."}'
//! ```
//!
//! Crash it on purpose: give each file a delay, `kill -9` the process mid-run, resume.
//! ```text
//! cargo run -q -p reprise-examples -- workflows run file-digest --input '{"dir":".","delay_ms":200}' &
//! sleep 3; kill -9 %1
//! cargo run -q -p reprise-examples -- runs resume
//! ```
//! The resume prints how many steps it answered from the log and how many it executed.

use std::path::{Path, PathBuf};

use reprise::prelude::*;
use sha2::{Digest, Sha256};

/// What to digest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DigestRequest {
    /// The directory, walked recursively (`.git`, `target`, `.reprise` and hidden
    /// directories are skipped).
    pub dir: String,
    /// A pause per file, in milliseconds, to make the run slow enough to interrupt.
    #[serde(default)]
    pub delay_ms: u64,
    /// How many files are hashed at the same time. Default 4.
    #[serde(default = "default_concurrency")]
    #[schemars(range(min = 1, max = 64))]
    pub concurrency: usize,
    /// At most this many files (in path order). Default 500.
    #[serde(default = "default_max_files")]
    #[schemars(range(min = 1))]
    pub max_files: usize,
    /// Where to write the report; default `.reprise/reports/<run-id>.json`.
    #[serde(default)]
    pub out: Option<String>,
}

fn default_concurrency() -> usize {
    4
}

fn default_max_files() -> usize {
    500
}

/// Input of `list-files`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ListFiles {
    /// The directory.
    pub dir: String,
    /// At most this many files.
    pub max_files: usize,
}

/// Input of `hash-file`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FileRef {
    /// The file's path.
    pub path: String,
    /// A pause before hashing, in milliseconds.
    pub delay_ms: u64,
}

/// The digest of one file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FileDigest {
    /// The file's path.
    pub path: String,
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Lines (`\n` count, plus one for a last line without newline).
    pub lines: u64,
    /// Whitespace-separated words (of the UTF-8 text; 0 for binary files).
    pub words: u64,
}

/// The report over all files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Report {
    /// The directory.
    pub dir: String,
    /// Number of files hashed.
    pub files: u64,
    /// Total size in bytes.
    pub bytes: u64,
    /// Total lines.
    pub lines: u64,
    /// Total words.
    pub words: u64,
    /// SHA-256 over the sorted `path:sha256` lines: one digest for the whole tree.
    pub tree_sha256: String,
    /// The largest file.
    pub largest: Option<String>,
    /// Every file's digest, in path order.
    pub digests: Vec<FileDigest>,
}

/// Input of `write-report`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WriteReport {
    /// Where to write; empty for `.reprise/reports/<run-id>.json`.
    pub out: Option<String>,
    /// The report.
    pub report: Report,
}

/// What `file-digest` returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DigestSummary {
    /// Number of files hashed.
    pub files: u64,
    /// Total size in bytes.
    pub bytes: u64,
    /// Total lines.
    pub lines: u64,
    /// Total words.
    pub words: u64,
    /// The tree's digest.
    pub tree_sha256: String,
    /// Where the full report was written.
    pub report_path: String,
}

fn skipped(name: &str) -> bool {
    name.starts_with('.') || name == "target"
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        if skipped(&name.to_string_lossy()) {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&entry.path(), out)?;
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
    Ok(())
}

/// Lists the regular files under a directory, recursively, in path order.
#[action(retries = 2, backoff = "100ms")]
pub async fn list_files(input: ListFiles) -> Result<Vec<String>, ActionError> {
    let root = PathBuf::from(&input.dir);
    if !root.is_dir() {
        return Err(ActionError::permanent(format!(
            "`{}` is not a directory",
            input.dir
        )));
    }
    let mut files = Vec::new();
    walk(&root, &mut files)?;
    files.truncate(input.max_files);
    Ok(files
        .into_iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect())
}

/// Hashes a file and counts its lines and words.
#[action(retries = 2, backoff = "100ms", timeout = "60s")]
pub async fn hash_file(input: FileRef, cx: ActionCtx) -> Result<FileDigest, ActionError> {
    if input.delay_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(input.delay_ms)).await;
    }
    let bytes = tokio::fs::read(&input.path).await?;
    crate::effects::record(&cx)?;
    let text = std::str::from_utf8(&bytes).ok();
    let newlines = bytes.iter().filter(|b| **b == b'\n').count() as u64;
    let unterminated = u64::from(!bytes.is_empty() && !bytes.ends_with(b"\n"));
    Ok(FileDigest {
        path: input.path,
        sha256: hex(&Sha256::digest(&bytes)),
        bytes: bytes.len() as u64,
        lines: newlines + unterminated,
        words: text.map_or(0, |t| t.split_whitespace().count() as u64),
    })
}

/// Writes the report as pretty JSON; idempotent: the file is written to a temporary name
/// and renamed into place, so a repeated write leaves the same file.
#[action(retries = 3, backoff = "100ms")]
pub async fn write_report(input: WriteReport, cx: ActionCtx) -> Result<String, ActionError> {
    let path = match input.out {
        Some(out) if !out.is_empty() => PathBuf::from(out),
        _ => {
            let run = cx.run_id().unwrap_or("standalone");
            PathBuf::from(".reprise/reports").join(format!("{run}.json"))
        }
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(parent).await?;
    }
    let text = serde_json::to_vec_pretty(&input.report)?;
    let temporary = path.with_extension("json.tmp");
    tokio::fs::write(&temporary, text).await?;
    tokio::fs::rename(&temporary, &path).await?;
    crate::effects::record(&cx)?;
    Ok(path.to_string_lossy().into_owned())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Aggregates per-file digests into a report (plain code: deterministic, so it needs no step).
pub fn aggregate(dir: &str, mut digests: Vec<FileDigest>) -> Report {
    digests.sort_by(|a, b| a.path.cmp(&b.path));
    let mut tree = Sha256::new();
    for digest in &digests {
        tree.update(format!("{}:{}\n", digest.path, digest.sha256));
    }
    Report {
        dir: dir.to_owned(),
        files: digests.len() as u64,
        bytes: digests.iter().map(|d| d.bytes).sum(),
        lines: digests.iter().map(|d| d.lines).sum(),
        words: digests.iter().map(|d| d.words).sum(),
        tree_sha256: hex(&tree.finalize()),
        largest: digests
            .iter()
            .max_by_key(|d| d.bytes)
            .map(|d| d.path.clone()),
        digests,
    }
}

/// Hashes every file of a directory with bounded parallelism and writes a report. A run
/// that fails for good starts `report-failure`.
///
/// Its failure handler is [`crate::failure_report::report_failure`].
#[workflow(slug = "file-digest", on_failure = crate::failure_report::report_failure)]
pub async fn file_digest(input: DigestRequest) -> Result<DigestSummary, WorkflowError> {
    let files = list_files
        .run(ListFiles {
            dir: input.dir.clone(),
            max_files: input.max_files,
        })
        .await?;
    let delay_ms = input.delay_ms;
    let results = reprise::fan_out(files, input.concurrency, |path| {
        hash_file.run(FileRef { path, delay_ms })
    })
    .await;
    let digests = results.into_iter().collect::<Result<Vec<_>, _>>()?;
    let report = aggregate(&input.dir, digests);
    let summary = DigestSummary {
        files: report.files,
        bytes: report.bytes,
        lines: report.lines,
        words: report.words,
        tree_sha256: report.tree_sha256.clone(),
        report_path: String::new(),
    };
    let report_path = write_report
        .run(WriteReport {
            out: input.out,
            report,
        })
        .await?;
    Ok(DigestSummary {
        report_path,
        ..summary
    })
}
