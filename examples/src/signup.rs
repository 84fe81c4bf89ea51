//! `signup-pipeline`: research a new user, post a brief about them, return it.
//!
//! ```text
//! cargo run -q -p reprise-examples -- workflows run signup-pipeline \
//!     --input '{"name":"Ada Lovelace","email":"ada@example.com"}'
//! ```
//! An invalid email is rejected before any run exists (exit code 2, naming `/email`).

use reprise::prelude::*;

/// A new user, as the signup form sends it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Signup {
    /// Full name.
    pub name: String,
    /// Email address; checked against the `email` format of JSON Schema.
    #[schemars(email)]
    pub email: String,
}

/// A short brief about a new user.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Brief {
    /// The text of the brief.
    pub brief: String,
}

/// Where a brief was posted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Posted {
    /// The channel's message id (the idempotency key when printed instead).
    pub message_id: String,
}

/// Looks the new user up and writes a short brief.
#[action(retries = 3, backoff = "200ms", timeout = "30s")]
pub async fn research_signup(input: Signup) -> Result<Brief, ActionError> {
    let domain = input.email.rsplit('@').next().unwrap_or_default();
    let company = domain.split('.').next().unwrap_or(domain);
    Ok(Brief {
        brief: format!(
            "{} signed up from {company} ({domain}); say hello within a day.",
            input.name
        ),
    })
}

/// The team's chat channel: a webhook taking `POST {base_url}/messages` with
/// `{"text": …}` and answering `{"id": …}`. Register it as an engine resource; without it,
/// briefs are printed on standard error.
#[derive(Clone, Debug)]
pub struct TeamChannel {
    base_url: String,
    client: reqwest::Client,
}

impl TeamChannel {
    /// A channel at `base_url` (e.g. `http://127.0.0.1:9000`).
    pub fn new(base_url: impl Into<String>) -> Self {
        TeamChannel {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            client: reqwest::Client::new(),
        }
    }

    /// The channel named by `REPRISE_EXAMPLES_TEAM_CHANNEL_URL`, if set.
    pub fn from_env() -> Option<Self> {
        std::env::var("REPRISE_EXAMPLES_TEAM_CHANNEL_URL")
            .ok()
            .map(Self::new)
    }

    /// Posts `text`, de-duplicated on the far side by `idempotency_key`; returns the
    /// message id. 5xx and connection errors are transient, other statuses permanent.
    async fn post(&self, text: &str, idempotency_key: &str) -> Result<String, ActionError> {
        let url = format!("{}/messages", self.base_url);
        let response = self
            .client
            .post(&url)
            .header("Idempotency-Key", idempotency_key)
            .json(&serde_json::json!({ "text": text }))
            .send()
            .await
            .map_err(|e| ActionError::transient(format!("POST {url}: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            let message = format!("POST {url} answered {status}");
            return Err(if status.is_server_error() {
                ActionError::transient(message)
            } else {
                ActionError::permanent(message)
            });
        }
        let body: serde_json::Value = response.json().await.map_err(|e| {
            ActionError::permanent(format!("POST {url}: the answer is not JSON: {e}"))
        })?;
        Ok(body["id"].as_str().unwrap_or_default().to_owned())
    }
}

/// Posts a brief to the team channel ([`TeamChannel`] if the engine has one, else
/// standard error).
#[action(retries = 2, backoff = "200ms", timeout = "10s")]
pub async fn post_brief(input: Brief, cx: ActionCtx) -> Result<Posted, ActionError> {
    crate::effects::record(&cx)?;
    let message_id = match cx.resource::<TeamChannel>() {
        Ok(channel) => channel.post(&input.brief, cx.idempotency_key()).await?,
        Err(_) => {
            eprintln!("[team channel] {}", input.brief);
            cx.idempotency_key().to_owned()
        }
    };
    Ok(Posted { message_id })
}

/// Researches a new user, posts a brief about them to the team and returns it.
#[workflow(slug = "signup-pipeline")]
pub async fn signup_pipeline(input: Signup) -> Result<Brief, WorkflowError> {
    let brief = research_signup.run(input).await?;
    post_brief.run(brief.clone()).await?;
    Ok(brief)
}
