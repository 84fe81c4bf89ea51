//! `repo-digest`: a subscribable daily digest — every morning, each subscriber gets a digest
//! of the recent activity of the repositories they chose, fetched from a GitHub-like HTTP
//! API with *their own* `github` credential.
//!
//! The workflow is declared `#[workflow(subscribable = DigestSettings)]`: a subscription
//! binds a user and their [`DigestSettings`] (checked against its JSON Schema) to it, and
//! each tick of [`schedule`] (`0 7 * * *`, or `REPRISE_EXAMPLES_REPO_DIGEST_CRON`) starts one
//! run per active subscription, acting for the subscriber:
//!
//! ```text
//! reprise-examples subscriptions create repo-digest --user ada \
//!     --config '{"repos": ["rust-lang/rust"], "hours": 24}'
//! reprise-examples subscriptions list
//! reprise-examples workflows run repo-digest --subscription <id> --input '{}'
//! ```
//!
//! The API's base URL is the engine resource [`GithubApi`] when one is registered (the
//! tests register a local mock's), else `REPRISE_EXAMPLES_GITHUB_API`, else
//! `https://api.github.com`.

use reprise::EngineError;
use reprise::prelude::*;
use reprise::trigger::{CronSchedule, MissedTicks};

/// The environment variable that overrides the digest's cron expression.
pub const CRON_ENV: &str = "REPRISE_EXAMPLES_REPO_DIGEST_CRON";

/// The digest's default cron expression: 07:00 every day (UTC).
pub const DEFAULT_CRON: &str = "0 7 * * *";

/// The environment variable naming the GitHub-like API's base URL.
pub const API_ENV: &str = "REPRISE_EXAMPLES_GITHUB_API";

/// The GitHub-like API's base URL, as an engine resource
/// (`EngineBuilder::resource(GithubApi(url))`); overrides [`API_ENV`].
#[derive(Clone, Debug)]
pub struct GithubApi(pub String);

/// A subscriber's settings (the subscription config of `repo-digest`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DigestSettings {
    /// The repositories to report on, as `owner/name` (1 to 20 of them).
    #[schemars(length(min = 1, max = 20))]
    pub repos: Vec<String>,
    /// How many hours back to look (1 to 168; default 24).
    #[serde(default = "default_hours")]
    #[schemars(range(min = 1, max = 168))]
    pub hours: u32,
}

fn default_hours() -> u32 {
    24
}

/// The input of a run: the tick it is for (set by the schedule).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DigestRequest {
    /// The cron tick (RFC 3339, UTC); without it, the time the run was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tick: Option<String>,
}

/// What to fetch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ActivityQuery {
    /// The repositories (`owner/name`).
    pub repos: Vec<String>,
    /// Only events at or after this time (RFC 3339).
    pub since: String,
}

/// One repository's recent activity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RepoActivity {
    /// `owner/name`.
    pub repo: String,
    /// How many events it had since the window's start.
    pub events: usize,
    /// The kinds of those events (`PushEvent`, `IssuesEvent`, …), sorted, without repeats.
    pub kinds: Vec<String>,
}

/// A subscriber's digest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RepoDigest {
    /// The subscriber.
    pub user: String,
    /// The window's start (RFC 3339).
    pub since: String,
    /// Each repository's activity, in the order of the settings.
    pub repos: Vec<RepoActivity>,
}

/// Fetches each repository's events (`GET {api}/repos/{repo}/events`) with the user's
/// `github` token and counts those since `since`. Transient HTTP failures are retried.
#[action(retries = 3, backoff = "1s", timeout = "30s", credentials = ["github"])]
pub async fn fetch_activity(
    input: ActivityQuery,
    cx: ActionCtx,
) -> Result<Vec<RepoActivity>, ActionError> {
    // The subscriber's own token (`user:<id>`), else the project's, else the org's.
    let token = cx.credential("github").await?;
    let api = match cx.resource::<GithubApi>() {
        Ok(api) => api.0.clone(),
        Err(_) => std::env::var(API_ENV).unwrap_or_else(|_| "https://api.github.com".to_owned()),
    };
    let client = reqwest::Client::new();
    let mut activity = Vec::with_capacity(input.repos.len());
    for repo in &input.repos {
        let url = format!("{}/repos/{repo}/events", api.trim_end_matches('/'));
        let response = client
            .get(&url)
            .bearer_auth(token.expose())
            .header("user-agent", "reprise-repo-digest")
            .header("accept", "application/vnd.github+json")
            .send()
            .await
            .map_err(|e| ActionError::transient(format!("GET {url}: {e}")))?;
        let status = response.status();
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(ActionError::transient(format!("GET {url}: {status}")));
        }
        if !status.is_success() {
            return Err(ActionError::permanent(format!(
                "GET {url}: {status} (check the repository name and the `github` credential)"
            )));
        }
        let events: Vec<serde_json::Value> = response
            .json()
            .await
            .map_err(|e| ActionError::permanent(format!("GET {url}: not a JSON array: {e}")))?;
        let recent: Vec<&serde_json::Value> = events
            .iter()
            .filter(|e| {
                e["created_at"]
                    .as_str()
                    .is_some_and(|at| at >= input.since.as_str())
            })
            .collect();
        let mut kinds: Vec<String> = recent
            .iter()
            .filter_map(|e| e["type"].as_str().map(str::to_owned))
            .collect();
        kinds.sort();
        kinds.dedup();
        activity.push(RepoActivity {
            repo: repo.clone(),
            events: recent.len(),
            kinds,
        });
    }
    Ok(activity)
}

/// One subscriber's digest: the activity of their repositories over their window.
///
/// # Errors
/// Without a subscription (a direct start without `--subscription`), a non-retryable
/// error saying how to start it; the fetch's errors.
#[workflow(slug = "repo-digest", subscribable = DigestSettings)]
pub async fn repo_digest(ctx: Ctx, input: DigestRequest) -> Result<RepoDigest, WorkflowError> {
    let Some(subscriber) = ctx.subscriber().cloned() else {
        return Err(WorkflowError::new(
            "no_subscription",
            "repo-digest runs for a subscription: subscribe with `subscriptions create \
             repo-digest --user <id> --config '{\"repos\": [\"owner/name\"]}'`, or start it \
             with `workflows run repo-digest --subscription <id>`",
            false,
        ));
    };
    let settings: DigestSettings = subscriber
        .config_as()
        .map_err(|e| WorkflowError::new("config", e.to_string(), false))?;
    let end = input
        .tick
        .as_deref()
        .and_then(|tick| chrono::DateTime::parse_from_rfc3339(tick).ok())
        .map_or_else(
            || ctx.triggered_at(),
            |tick| tick.with_timezone(&chrono::Utc),
        );
    let since = (end - chrono::Duration::hours(i64::from(settings.hours)))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let repos = fetch_activity
        .run(ActivityQuery {
            repos: settings.repos,
            since: since.clone(),
        })
        .await?;
    Ok(RepoDigest {
        user: subscriber.user,
        since,
        repos,
    })
}

/// The schedule named `repo-digest-daily` that starts `repo-digest` at every tick of
/// `expression` (UTC) — one run per active subscription — with the tick as its input; one
/// run per subscription makes up for missed ticks.
///
/// # Errors
/// [`EngineError::Config`] for an invalid expression, naming it.
pub fn schedule_with(expression: &str) -> Result<CronSchedule, EngineError> {
    Ok(
        CronSchedule::new("repo-digest-daily", expression, "repo-digest")?
            .missed(MissedTicks::RunOnce)
            .input_with(|tick| {
                serde_json::json!({
                    "tick": tick.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                })
            }),
    )
}

/// [`schedule_with`] the expression in [`CRON_ENV`], else [`DEFAULT_CRON`].
///
/// # Errors
/// As [`schedule_with`].
pub fn schedule() -> Result<CronSchedule, EngineError> {
    let expression = std::env::var(CRON_ENV).unwrap_or_else(|_| DEFAULT_CRON.to_owned());
    schedule_with(&expression)
}
