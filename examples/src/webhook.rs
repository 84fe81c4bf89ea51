//! `triage-issue`: a workflow started by a webhook — GitHub's "issues" events, delivered to
//! `POST /webhooks/github`.
//!
//! [`github_source`] is the webhook source the example app registers (`main.rs`). A
//! delivery goes through, in order:
//!
//! 1. the signature: `x-hub-signature-256: sha256=<hex of HMAC-SHA256(secret, raw body)>`,
//!    as GitHub sends it, checked in constant time (a wrong or missing one is 401);
//! 2. the request schema, [`IssuesEvent`]: a body without `action`, `issue` or `repository`
//!    is 422 with the JSON pointer of each problem (subscribe the GitHub webhook to
//!    *Issues* events only);
//! 3. the filter: only `"action": "opened"` starts a run; `edited`, `closed`, `labeled`, …
//!    are answered 200 `{"ignored": true, "reason": …}`, so GitHub does not retry them;
//! 4. the transform into the workflow's input, [`NewIssue`];
//! 5. de-duplication by `x-github-delivery`: GitHub redelivers with the same id, and a
//!    redelivery starts nothing (200 `{"run_id": <the first run>, "duplicate": true}`).
//!
//! The secret comes from `REPRISE_EXAMPLES_WEBHOOK_SECRET`. When it is not set, the app
//! uses the public development secret [`DEV_SECRET`], so `dev` starts without setup —
//! **anyone who reads this file can sign requests with it: set the variable (to the secret
//! configured at GitHub) wherever the server is reachable by others.**
//!
//! ```text
//! body='{"action":"opened","issue":{"number":7,"title":"Crash on start","body":"panic at boot","html_url":"https://github.com/octo/app/issues/7","user":{"login":"ada"}},"repository":{"full_name":"octo/app"}}'
//! sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "reprise-examples-dev-secret" | sed 's/^.* //')
//! curl -s http://127.0.0.1:8080/webhooks/github -H "x-hub-signature-256: sha256=$sig" \
//!     -H 'x-github-delivery: 72d3162e-cc78-11e3-81ab-4c9367dc0958' -d "$body"
//! ```

use reprise::prelude::*;
use reprise::trigger::WebhookSource;
use sha2::{Digest, Sha256};

/// The environment variable holding the webhook secret.
pub const SECRET_ENV: &str = "REPRISE_EXAMPLES_WEBHOOK_SECRET";

/// The secret used when [`SECRET_ENV`] is not set: for local development only, since it is
/// public.
pub const DEV_SECRET: &str = "reprise-examples-dev-secret";

/// The webhook source's name: its URL is `/webhooks/github`.
pub const SOURCE: &str = "github";

/// The header GitHub puts the unique delivery id in.
pub const DELIVERY_HEADER: &str = "x-github-delivery";

/// A GitHub "issues" event, the part of it this example reads (GitHub sends more; extra
/// fields are allowed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IssuesEvent {
    /// What happened: `opened`, `edited`, `closed`, `labeled`, …
    pub action: String,
    /// The issue.
    pub issue: Issue,
    /// The repository.
    pub repository: Repository,
}

/// An issue, as GitHub describes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Issue {
    /// The issue number.
    pub number: u64,
    /// The title.
    pub title: String,
    /// The description (`null` when empty).
    #[serde(default)]
    pub body: Option<String>,
    /// The issue's web page.
    pub html_url: String,
    /// Who opened it.
    pub user: User,
}

/// A GitHub user.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct User {
    /// The user name.
    pub login: String,
}

/// A GitHub repository.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Repository {
    /// `owner/name`.
    pub full_name: String,
}

/// A newly opened issue: the workflow's input, made from the event by the transform.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NewIssue {
    /// `owner/name` of the repository.
    pub repo: String,
    /// The issue number.
    pub number: u64,
    /// The title.
    pub title: String,
    /// The description (empty when there is none).
    pub body: String,
    /// Who opened it.
    pub author: String,
    /// The issue's web page.
    pub url: String,
}

impl From<IssuesEvent> for NewIssue {
    fn from(event: IssuesEvent) -> Self {
        NewIssue {
            repo: event.repository.full_name,
            number: event.issue.number,
            title: event.issue.title,
            body: event.issue.body.unwrap_or_default(),
            author: event.issue.user.login,
            url: event.issue.html_url,
        }
    }
}

/// How an issue was triaged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Triage {
    /// `bug`, `question`, `enhancement` or `needs-triage`.
    pub label: String,
    /// `high` for crashes and data loss, else `normal`.
    pub priority: String,
}

/// Labels to put on an issue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LabelRequest {
    /// `owner/name` of the repository.
    pub repo: String,
    /// The issue number.
    pub number: u64,
    /// The labels.
    pub labels: Vec<String>,
}

/// What the run did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TriageOutcome {
    /// `owner/name#number`.
    pub issue: String,
    /// The label given.
    pub label: String,
    /// The priority given.
    pub priority: String,
    /// How the run was started (`webhook` when GitHub sent the event).
    pub trigger: String,
}

/// The example app's webhook source: `POST /webhooks/github` starts `triage-issue` for
/// every newly opened issue, signed with the secret in [`SECRET_ENV`] (or [`DEV_SECRET`]
/// when it is not set — development only).
pub fn github_source() -> WebhookSource {
    let secret = std::env::var(SECRET_ENV)
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEV_SECRET.to_owned());
    github_source_with_secret(secret)
}

/// [`github_source`] with the secret `secret`.
pub fn github_source_with_secret(secret: impl Into<Vec<u8>>) -> WebhookSource {
    WebhookSource::new(SOURCE, "triage-issue")
        .secret(secret)
        .delivery_header(DELIVERY_HEADER)
        .schema::<IssuesEvent>()
        .filter(|body| match body["action"].as_str() {
            Some("opened") => Ok(()),
            other => Err(format!(
                "action `{}` is not `opened`; only new issues are triaged",
                other.unwrap_or_default()
            )),
        })
        .transform(|body| {
            let event: IssuesEvent = serde_json::from_value(body).map_err(|e| e.to_string())?;
            serde_json::to_value(NewIssue::from(event)).map_err(|e| e.to_string())
        })
}

/// The value of the `x-hub-signature-256` header for `body` under `secret`:
/// `sha256=<hex of HMAC-SHA256(secret, body)>`, as GitHub computes it. For tests and demos.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC (RFC 2104) over SHA-256, whose block is 64 bytes.
    let mut key = [0u8; 64];
    if secret.len() > 64 {
        key[..32].copy_from_slice(&Sha256::digest(secret));
    } else {
        key[..secret.len()].copy_from_slice(secret);
    }
    let pad = |byte: u8| key.map(|k| k ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(body)
        .finalize();
    let outer = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    let hex: String = outer.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Labels an issue by keywords of its title and description.
#[action]
pub async fn classify_issue(input: NewIssue) -> Result<Triage, ActionError> {
    let text = format!("{} {}", input.title, input.body).to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| text.contains(w));
    let label = if has(&["crash", "panic", "error", "bug", "broken", "fails"]) {
        "bug"
    } else if input.title.trim_end().ends_with('?') || has(&["how do", "how to", "is it possible"])
    {
        "question"
    } else if has(&["feature", "support for", "would be nice", "please add"]) {
        "enhancement"
    } else {
        "needs-triage"
    };
    let priority = if label == "bug" && has(&["crash", "panic", "data loss"]) {
        "high"
    } else {
        "normal"
    };
    Ok(Triage {
        label: label.to_owned(),
        priority: priority.to_owned(),
    })
}

/// Adds labels to the issue (here: prints the call a GitHub client would make, with the
/// step's idempotency key so a repeated call can be recognised).
#[action(retries = 3, backoff = "200ms")]
pub async fn label_issue(input: LabelRequest, cx: ActionCtx) -> Result<(), ActionError> {
    crate::effects::record(&cx)?;
    eprintln!(
        "[github] POST /repos/{}/issues/{}/labels {:?} (key {})",
        input.repo,
        input.number,
        input.labels,
        cx.idempotency_key()
    );
    Ok(())
}

/// Classifies a newly opened issue and labels it (`priority:high` too for crashes).
#[workflow(slug = "triage-issue")]
pub async fn triage_issue(ctx: Ctx, input: NewIssue) -> Result<TriageOutcome, WorkflowError> {
    let triage = classify_issue.run(input.clone()).await?;
    let mut labels = vec![triage.label.clone()];
    if triage.priority == "high" {
        labels.push("priority:high".to_owned());
    }
    label_issue
        .run(LabelRequest {
            repo: input.repo.clone(),
            number: input.number,
            labels,
        })
        .await?;
    Ok(TriageOutcome {
        issue: format!("{}#{}", input.repo, input.number),
        label: triage.label,
        priority: triage.priority,
        trigger: ctx.trigger().to_string(),
    })
}
