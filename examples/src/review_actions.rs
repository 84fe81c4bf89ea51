//! The actions of the workflow file `workflows/code-review.md`: fetch a pull request's
//! diff, look a file up, lint a patch, post a review.
//!
//! The workflow itself is a file (no Rust): `code-review.md` calls these actions by slug
//! (`fetch-diff`, `lookup-file`, `run-linter`, `post-review`); its agent uses the middle two
//! as tools.
//!
//! They talk to a GitHub-like REST API whose base URL is the engine resource
//! [`GithubApi`] when one is registered (the tests register a local mock's), else
//! `REPRISE_EXAMPLES_GITHUB_API`. With neither, they work offline on a built-in sample pull
//! request ([`sample_pull`]) and print the review they would post on standard error, so
//! the README's `workflows run code-review` needs no network and no token. A token in
//! `REPRISE_EXAMPLES_GITHUB_TOKEN` is sent as a bearer token when set.

pub use crate::repo_digest::GithubApi;
use reprise::prelude::*;

/// The environment variable naming the GitHub-like API's base URL (shared with
/// `repo-digest`).
pub const API_ENV: &str = crate::repo_digest::API_ENV;

/// The environment variable holding an API token (optional).
pub const TOKEN_ENV: &str = "REPRISE_EXAMPLES_GITHUB_TOKEN";

/// Which pull request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PullRef {
    /// The repository, `owner/name`.
    #[schemars(length(min = 3))]
    pub repo: String,
    /// The pull request's number.
    #[schemars(range(min = 1))]
    pub pr: u64,
}

/// One changed file of a pull request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FileChange {
    /// The file's path in the repository.
    pub path: String,
    /// Lines added.
    pub additions: u64,
    /// Lines removed.
    pub deletions: u64,
    /// The unified-diff hunk(s) of the file (empty for binary files).
    pub patch: String,
}

/// A pull request and its diff.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PullDiff {
    /// The repository, `owner/name`.
    pub repo: String,
    /// The pull request's number.
    pub pr: u64,
    /// Its title.
    pub title: String,
    /// Who opened it (login).
    pub author: String,
    /// The commit the review is about (head of the branch).
    pub head_sha: String,
    /// The changed files' paths, in the API's order.
    pub files: Vec<String>,
    /// Every changed file with its patch.
    pub changes: Vec<FileChange>,
    /// The whole diff as text: each file's `--- path` header and patch.
    pub diff: String,
}

/// A file to read, at the pull request's head.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileQuery {
    /// The repository, `owner/name`.
    pub repo: String,
    /// The file's path in the repository.
    pub path: String,
    /// The commit or branch (default: the default branch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#ref: Option<String>,
}

/// A file's contents.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FileContents {
    /// The file's path.
    pub path: String,
    /// Its text (at most 20,000 characters; `truncated` says when cut).
    pub content: String,
    /// Whether `content` was cut.
    pub truncated: bool,
}

/// A patch to lint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LintRequest {
    /// The file's path (its extension picks the rules).
    pub path: String,
    /// The file's unified-diff patch: only added lines (`+…`) are linted.
    pub patch: String,
}

/// One linter finding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LintWarning {
    /// The line in the new file (1-based), from the hunk headers.
    pub line: u64,
    /// The rule (`unwrap`, `todo`, `debug-print`, `long-line`).
    pub rule: String,
    /// What is wrong.
    pub message: String,
}

/// What the linter found in a patch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LintReport {
    /// The file's path.
    pub path: String,
    /// The findings, in line order.
    pub warnings: Vec<LintWarning>,
}

/// A review comment on one line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReviewComment {
    /// The file's path.
    pub path: String,
    /// The line in the new file (1-based).
    #[schemars(range(min = 1))]
    pub line: u64,
    /// The comment.
    pub body: String,
}

/// What a review says overall (GitHub's review events).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReviewEvent {
    /// Approve the pull request.
    Approve,
    /// Ask for changes.
    RequestChanges,
    /// Comment only.
    Comment,
}

/// A review to post.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewPost {
    /// The repository, `owner/name`.
    pub repo: String,
    /// The pull request's number.
    #[schemars(range(min = 1))]
    pub pr: u64,
    /// Approve, request changes, or comment.
    pub event: ReviewEvent,
    /// The review's text.
    pub body: String,
    /// Line comments.
    #[serde(default)]
    pub comments: Vec<ReviewComment>,
}

/// A posted review.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PostedReview {
    /// The review's id on the far side (the idempotency key when offline).
    pub id: String,
    /// Its URL (`None` offline).
    pub url: Option<String>,
    /// The event posted.
    pub event: ReviewEvent,
    /// How many line comments it carried.
    pub comments: usize,
}

/// The API's base URL: the [`GithubApi`] resource, else [`API_ENV`]; `None`: offline.
fn api(cx: &ActionCtx) -> Option<String> {
    match cx.resource::<GithubApi>() {
        Ok(api) => Some(api.0.trim_end_matches('/').to_owned()),
        Err(_) => std::env::var(API_ENV)
            .ok()
            .filter(|url| !url.is_empty())
            .map(|url| url.trim_end_matches('/').to_owned()),
    }
}

fn request(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
) -> reqwest::RequestBuilder {
    let builder = client
        .request(method, url)
        .header("user-agent", "reprise-code-review")
        .header("accept", "application/vnd.github+json");
    match std::env::var(TOKEN_ENV) {
        Ok(token) if !token.is_empty() => builder.bearer_auth(token),
        _ => builder,
    }
}

/// Sends `builder` and reads a JSON answer: connection errors, 5xx and 429 are transient,
/// other failures permanent (with what to check).
async fn send_json<T: serde::de::DeserializeOwned>(
    builder: reqwest::RequestBuilder,
    what: &str,
) -> Result<T, ActionError> {
    let response = builder
        .send()
        .await
        .map_err(|e| ActionError::transient(format!("{what}: {e}")))?;
    let status = response.status();
    if status.is_server_error() || status.as_u16() == 429 {
        return Err(ActionError::transient(format!("{what}: {status}")));
    }
    if !status.is_success() {
        return Err(ActionError::permanent(format!(
            "{what}: {status} (check the repository, the number and {TOKEN_ENV})"
        )));
    }
    response.json().await.map_err(|e| {
        ActionError::permanent(format!("{what}: the answer is not the expected JSON: {e}"))
    })
}

/// The built-in sample pull request the actions use offline (no API configured): a small
/// Rust change with an `unwrap()` and a `TODO` for the linter to find.
pub fn sample_pull(repo: &str, pr: u64) -> PullDiff {
    let changes = vec![
        FileChange {
            path: "src/config.rs".into(),
            additions: 4,
            deletions: 1,
            patch: "@@ -10,3 +10,6 @@ pub fn load(path: &Path) -> Config {\n     let text = std::fs::read_to_string(path)\n-        .unwrap_or_default();\n+        .unwrap();\n+    // TODO: report which key is missing\n+    let config: Config = toml::from_str(&text).unwrap();\n+    config\n }\n".into(),
        },
        FileChange {
            path: "README.md".into(),
            additions: 1,
            deletions: 0,
            patch: "@@ -1,2 +1,3 @@\n # app\n+Configuration lives in `app.toml`.\n".into(),
        },
    ];
    pull_diff(
        repo,
        pr,
        "Read the configuration from app.toml".into(),
        "octocat".into(),
        "0123456789abcdef0123456789abcdef01234567".into(),
        changes,
    )
}

fn pull_diff(
    repo: &str,
    pr: u64,
    title: String,
    author: String,
    head_sha: String,
    changes: Vec<FileChange>,
) -> PullDiff {
    let diff = changes
        .iter()
        .map(|c| format!("--- {}\n{}", c.path, c.patch))
        .collect::<Vec<_>>()
        .join("\n");
    PullDiff {
        repo: repo.to_owned(),
        pr,
        title,
        author,
        head_sha,
        files: changes.iter().map(|c| c.path.clone()).collect(),
        changes,
        diff,
    }
}

#[derive(Deserialize)]
struct ApiPull {
    title: String,
    user: ApiUser,
    head: ApiHead,
}

#[derive(Deserialize)]
struct ApiUser {
    login: String,
}

#[derive(Deserialize)]
struct ApiHead {
    sha: String,
}

#[derive(Deserialize)]
struct ApiFile {
    filename: String,
    #[serde(default)]
    additions: u64,
    #[serde(default)]
    deletions: u64,
    #[serde(default)]
    patch: Option<String>,
}

/// Fetches a pull request and its changed files with their patches
/// (`GET {api}/repos/{repo}/pulls/{pr}` and `…/files`). Offline: [`sample_pull`].
/// Connection errors, 5xx and 429 are transient (retried), other statuses permanent.
#[action(retries = 3, backoff = "1s", timeout = "30s")]
pub async fn fetch_diff(input: PullRef, cx: ActionCtx) -> Result<PullDiff, ActionError> {
    let Some(api) = api(&cx) else {
        return Ok(sample_pull(&input.repo, input.pr));
    };
    let client = reqwest::Client::new();
    let url = format!("{api}/repos/{}/pulls/{}", input.repo, input.pr);
    let pull: ApiPull = send_json(
        request(&client, reqwest::Method::GET, &url),
        &format!("GET {url}"),
    )
    .await?;
    let files_url = format!("{url}/files");
    let files: Vec<ApiFile> = send_json(
        request(&client, reqwest::Method::GET, &files_url),
        &format!("GET {files_url}"),
    )
    .await?;
    let changes = files
        .into_iter()
        .map(|f| FileChange {
            path: f.filename,
            additions: f.additions,
            deletions: f.deletions,
            patch: f.patch.unwrap_or_default(),
        })
        .collect();
    Ok(pull_diff(
        &input.repo,
        input.pr,
        pull.title,
        pull.user.login,
        pull.head.sha,
        changes,
    ))
}

/// The most characters of a file [`lookup_file`] returns.
pub const MAX_FILE_CHARS: usize = 20_000;

#[derive(Deserialize)]
struct ApiContents {
    #[serde(default)]
    content: String,
    #[serde(default)]
    encoding: String,
}

/// Reads a file of the repository (`GET {api}/repos/{repo}/contents/{path}?ref=…`, base64
/// decoded), at most [`MAX_FILE_CHARS`] characters. Offline: the sample pull request's
/// files. Use it to see the code around a change.
#[action(retries = 3, backoff = "1s", timeout = "30s")]
pub async fn lookup_file(input: FileQuery, cx: ActionCtx) -> Result<FileContents, ActionError> {
    let text = match api(&cx) {
        None => match input.path.as_str() {
            "src/config.rs" => "use std::path::Path;\n\npub struct Config { pub name: String }\n\npub fn load(path: &Path) -> Config {\n    let text = std::fs::read_to_string(path)\n        .unwrap();\n    let config: Config = toml::from_str(&text).unwrap();\n    config\n}\n".to_owned(),
            "README.md" => "# app\nConfiguration lives in `app.toml`.\n".to_owned(),
            other => {
                return Err(ActionError::permanent(format!(
                    "no file `{other}` in the offline sample repository (it has src/config.rs and README.md)"
                )));
            }
        },
        Some(api) => {
            let client = reqwest::Client::new();
            let mut url = format!("{api}/repos/{}/contents/{}", input.repo, input.path);
            if let Some(r) = &input.r#ref {
                url = format!("{url}?ref={r}");
            }
            let contents: ApiContents = send_json(
                request(&client, reqwest::Method::GET, &url),
                &format!("GET {url}"),
            )
            .await?;
            if contents.encoding == "base64" {
                use base64_lite::decode;
                let bytes = decode(&contents.content).ok_or_else(|| {
                    ActionError::permanent(format!("GET {url}: the content is not valid base64"))
                })?;
                String::from_utf8_lossy(&bytes).into_owned()
            } else {
                contents.content
            }
        }
    };
    let truncated = text.chars().count() > MAX_FILE_CHARS;
    let content = if truncated {
        text.chars().take(MAX_FILE_CHARS).collect()
    } else {
        text
    };
    Ok(FileContents {
        path: input.path,
        content,
        truncated,
    })
}

/// A tiny base64 decoder (standard alphabet, padding and line breaks ignored), so the
/// example needs no extra dependency.
mod base64_lite {
    /// The bytes `text` encodes, or `None` when it holds a character outside the alphabet.
    pub(super) fn decode(text: &str) -> Option<Vec<u8>> {
        let mut bits = 0u32;
        let mut count = 0u8;
        let mut out = Vec::with_capacity(text.len() * 3 / 4);
        for c in text.bytes() {
            let value = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                b'=' | b'\n' | b'\r' | b' ' => continue,
                _ => return None,
            };
            bits = (bits << 6) | u32::from(value);
            count += 1;
            if count == 4 {
                out.extend_from_slice(&[(bits >> 16) as u8, (bits >> 8) as u8, bits as u8]);
                bits = 0;
                count = 0;
            }
        }
        match count {
            2 => out.push((bits >> 4) as u8),
            3 => out.extend_from_slice(&[(bits >> 10) as u8, (bits >> 2) as u8]),
            _ => {}
        }
        Some(out)
    }
}

/// The longest line the linter accepts.
pub const MAX_LINE: usize = 100;

/// Lints the lines a patch adds (no I/O, deterministic): `unwrap()` and `expect(` in Rust
/// files, `TODO`/`FIXME` and `todo!()`, debug prints (`println!`, `dbg!`,
/// `console.log`), lines over [`MAX_LINE`] characters. Line numbers come from the hunk
/// headers (`@@ -a,b +c,d @@`).
#[action(timeout = "10s")]
pub async fn run_linter(input: LintRequest) -> Result<LintReport, ActionError> {
    Ok(LintReport {
        warnings: lint(&input.path, &input.patch),
        path: input.path,
    })
}

/// The findings of [`run_linter`] for `patch` of file `path`.
pub fn lint(path: &str, patch: &str) -> Vec<LintWarning> {
    let rust = path.ends_with(".rs");
    let mut warnings = Vec::new();
    let mut line = 0u64;
    for text in patch.lines() {
        if let Some(header) = text.strip_prefix("@@ ") {
            // `-a,b +c,d @@ …`: the new file's lines start at c.
            line = header
                .split_whitespace()
                .find_map(|part| part.strip_prefix('+'))
                .and_then(|range| range.split(',').next())
                .and_then(|start| start.parse().ok())
                .unwrap_or(1);
            continue;
        }
        if text.starts_with('-') {
            continue;
        }
        let added = text.strip_prefix('+');
        if let Some(added) = added {
            let mut warn = |rule: &str, message: &str| {
                warnings.push(LintWarning {
                    line,
                    rule: rule.to_owned(),
                    message: message.to_owned(),
                });
            };
            if rust && (added.contains(".unwrap()") || added.contains(".expect(")) {
                warn(
                    "unwrap",
                    "panics on error: return the error with `?` and context instead",
                );
            }
            if added.contains("TODO") || added.contains("FIXME") || added.contains("todo!(") {
                warn("todo", "unfinished work: open an issue or finish it");
            }
            if added.contains("println!")
                || added.contains("dbg!(")
                || added.contains("console.log")
            {
                warn(
                    "debug-print",
                    "debug output left in: use the logger or remove it",
                );
            }
            if added.chars().count() > MAX_LINE {
                warn("long-line", "longer than 100 characters: wrap it");
            }
        }
        line += 1;
    }
    warnings
}

/// Posts a review (`POST {api}/repos/{repo}/pulls/{pr}/reviews`, with the step's
/// idempotency key in `Idempotency-Key`). Offline: prints it on standard error and
/// answers with the idempotency key as its id. The effect is recorded in the
/// [`crate::effects::EffectLog`] when one is configured.
#[action(retries = 3, backoff = "1s", timeout = "30s")]
pub async fn post_review(input: ReviewPost, cx: ActionCtx) -> Result<PostedReview, ActionError> {
    crate::effects::record(&cx)?;
    let comments = input.comments.len();
    let Some(api) = api(&cx) else {
        eprintln!(
            "[review of {}#{}: {:?}] {} ({comments} line comments)",
            input.repo, input.pr, input.event, input.body
        );
        return Ok(PostedReview {
            id: cx.idempotency_key().to_owned(),
            url: None,
            event: input.event,
            comments,
        });
    };
    #[derive(Deserialize)]
    struct Answer {
        id: serde_json::Value,
        #[serde(default)]
        html_url: Option<String>,
    }
    let client = reqwest::Client::new();
    let url = format!("{api}/repos/{}/pulls/{}/reviews", input.repo, input.pr);
    let body = serde_json::json!({
        "event": input.event,
        "body": input.body,
        "comments": input.comments,
    });
    let answer: Answer = send_json(
        request(&client, reqwest::Method::POST, &url)
            .header("Idempotency-Key", cx.idempotency_key())
            .json(&body),
        &format!("POST {url}"),
    )
    .await?;
    Ok(PostedReview {
        id: match answer.id {
            serde_json::Value::String(id) => id,
            other => other.to_string(),
        },
        url: answer.html_url,
        event: input.event,
        comments,
    })
}

/// A built-in, scripted stand-in for a chat model that answers the requests of the
/// example workflow files, so the README's `workflows run code-review` and
/// `nightly-report` run offline. **It is not AI**: every reply is computed from the
/// request alone (the same request always gets the same reply), and any other request
/// goes to the model it wraps (the example app wraps
/// [`crate::support_model::ScriptedSupportModel`]).
///
/// - `code-review`'s agent (offered `run-linter`): first calls `run-linter` on every file
///   of the diff in its message (`--- <path>` sections), then answers with one line per
///   finding, `- <path>:<line> <rule>: <message>`, and a closing sentence.
/// - `code-review`'s verdict (a structured request whose prompt starts "Decide on pull
///   request"): `request_changes` with one comment per finding line of the prompt, or
///   `approve` when there is none.
/// - `nightly-report`'s summary (a prompt starting "Summarize the nightly report"): the
///   prompt's `Totals:` line.
pub struct ScriptedReviewModel {
    inner: std::sync::Arc<dyn reprise::llm::LlmProvider>,
}

impl ScriptedReviewModel {
    /// The stand-in, passing requests it does not know to `inner`.
    pub fn wrapping(inner: std::sync::Arc<dyn reprise::llm::LlmProvider>) -> Self {
        ScriptedReviewModel { inner }
    }

    /// The scripted reply to `request`, or `None` for a request of another workflow.
    pub fn respond(request: &reprise::llm::LlmRequest) -> Option<reprise::llm::LlmResponse> {
        use reprise::llm::{ChatMessage, LlmResponse, Role};
        let first_user = request
            .messages
            .iter()
            .find(|m| m.role == Some(Role::User))
            .and_then(|m| m.content.as_deref())
            .unwrap_or_default();
        let message = if first_user.contains("Decide on pull request") {
            request.response_schema.as_ref()?;
            ChatMessage::assistant(verdict_for(first_user).to_string())
        } else if first_user.starts_with("Summarize the nightly report") {
            let totals = first_user
                .lines()
                .find(|l| l.trim_start().starts_with("Totals:"))
                .unwrap_or("Totals: unknown.")
                .trim();
            ChatMessage::assistant(format!("(scripted model, not AI) {totals}"))
        } else if request.tools.iter().any(|t| t.name == "run-linter")
            || first_user.contains("Changed files:")
        {
            agent_turn(request, first_user)
        } else {
            return None;
        };
        let finish_reason = if message.tool_calls.is_empty() {
            "stop"
        } else {
            "tool_calls"
        };
        Some(LlmResponse {
            message,
            usage: reprise::llm::Usage::default(),
            model: "scripted-review-model".to_owned(),
            finish_reason: Some(finish_reason.to_owned()),
        })
    }
}

impl std::fmt::Debug for ScriptedReviewModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScriptedReviewModel")
    }
}

// `LlmProvider` is declared with `#[async_trait]`; this is what that attribute expands to
// (see `support_model.rs`).
impl reprise::llm::LlmProvider for ScriptedReviewModel {
    fn complete<'life0, 'async_trait>(
        &'life0 self,
        request: reprise::llm::LlmRequest,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = Result<reprise::llm::LlmResponse, reprise::llm::LlmError>,
                > + Send
                + 'async_trait,
        >,
    >
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        match Self::respond(&request) {
            Some(response) => Box::pin(std::future::ready(Ok(response))),
            None => self.inner.complete(request),
        }
    }
}

/// The `--- <path>` sections of a diff: each file's path and patch.
fn diff_sections(text: &str) -> Vec<(String, String)> {
    let mut sections: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(path) = line.strip_prefix("--- ")
            && !path.is_empty()
            && !path.contains(' ')
        {
            sections.push((path.to_owned(), String::new()));
        } else if let Some((_, patch)) = sections.last_mut()
            && (line.starts_with("@@") || line.starts_with(['+', '-', ' ']))
        {
            patch.push_str(line);
            patch.push('\n');
        }
    }
    sections
}

/// One agent turn of the scripted model: lint what is not linted yet, else sum up.
fn agent_turn(request: &reprise::llm::LlmRequest, first_user: &str) -> reprise::llm::ChatMessage {
    use reprise::llm::{ChatMessage, Role, ToolCall};
    let files = diff_sections(first_user);
    let asked: Vec<String> = request
        .messages
        .iter()
        .flat_map(|m| &m.tool_calls)
        .filter(|c| c.name == "run-linter")
        .filter_map(|c| c.arguments["path"].as_str().map(str::to_owned))
        .collect();
    let offered = request.tools.iter().any(|t| t.name == "run-linter");
    let todo: Vec<&(String, String)> = files.iter().filter(|(p, _)| !asked.contains(p)).collect();
    if offered && !todo.is_empty() {
        return ChatMessage {
            role: Some(Role::Assistant),
            content: None,
            tool_calls: todo
                .iter()
                .enumerate()
                .map(|(n, (path, patch))| ToolCall {
                    id: format!("lint-{}-{n}", asked.len()),
                    name: "run-linter".to_owned(),
                    arguments: serde_json::json!({ "path": path, "patch": patch }),
                })
                .collect(),
            tool_call_id: None,
        };
    }
    let mut findings = Vec::new();
    for message in request
        .messages
        .iter()
        .filter(|m| m.role == Some(Role::Tool))
    {
        if let Some(report) = message.content.as_deref().and_then(lint_report_in) {
            for w in report.warnings {
                findings.push(format!(
                    "- {}:{} {}: {}",
                    report.path, w.line, w.rule, w.message
                ));
            }
        }
    }
    if findings.is_empty() {
        findings.push("- no findings".to_owned());
    }
    ChatMessage::assistant(format!(
        "{}\nThe change touches {} file(s); the linter's findings above are all I found.",
        findings.join("\n"),
        files.len()
    ))
}

/// The [`LintReport`] a tool message holds: its JSON, or an object with one inside (a
/// tool result wrapped in `{"output": …}` or similar).
fn lint_report_in(content: &str) -> Option<LintReport> {
    fn find(value: &serde_json::Value) -> Option<LintReport> {
        if let Ok(report) = serde_json::from_value::<LintReport>(value.clone()) {
            return Some(report);
        }
        match value {
            serde_json::Value::Object(map) => map.values().find_map(find),
            serde_json::Value::Array(items) => items.iter().find_map(find),
            _ => None,
        }
    }
    find(&serde_json::from_str(content).ok()?)
}

/// The scripted verdict for a verdict prompt: a comment per `- path:line rule: message`
/// line.
fn verdict_for(prompt: &str) -> serde_json::Value {
    let comments: Vec<serde_json::Value> = prompt
        .lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("- ")?;
            let (place, message) = rest.split_once(": ")?;
            let (location, rule) = place.split_once(' ')?;
            let (path, line) = location.rsplit_once(':')?;
            let line: u64 = line.parse().ok().filter(|l| *l >= 1)?;
            Some(serde_json::json!({
                "path": path,
                "line": line,
                "body": format!("{rule}: {message}"),
            }))
        })
        .collect();
    if comments.is_empty() {
        serde_json::json!({
            "verdict": "approve",
            "summary": "(scripted model, not AI) The linter found nothing; looks good to me.",
            "comments": [],
        })
    } else {
        serde_json::json!({
            "verdict": "request_changes",
            "summary": format!(
                "(scripted model, not AI) The linter found {} problem(s) to fix before merging.",
                comments.len()
            ),
            "comments": comments,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_linter_numbers_added_lines_from_the_hunk_header() {
        let sample = sample_pull("o/r", 1);
        let warnings = lint("src/config.rs", &sample.changes[0].patch);
        let found: Vec<(u64, &str)> = warnings.iter().map(|w| (w.line, w.rule.as_str())).collect();
        assert_eq!(found, [(11, "unwrap"), (12, "todo"), (13, "unwrap")]);
        assert!(lint("README.md", &sample.changes[1].patch).is_empty());
    }

    #[test]
    fn base64_decodes_with_line_breaks() {
        assert_eq!(
            base64_lite::decode("aGVs\nbG8=").as_deref(),
            Some(&b"hello"[..])
        );
        assert_eq!(base64_lite::decode("aGk"), Some(b"hi".to_vec()));
        assert_eq!(base64_lite::decode("*"), None);
    }
}
