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
    /// The message id; derived from the idempotency key, so a repeated post is the same post.
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

/// Posts a brief to the team channel (here: standard error).
#[action(retries = 2, backoff = "200ms")]
pub async fn post_brief(input: Brief, cx: ActionCtx) -> Result<Posted, ActionError> {
    crate::effects::record(&cx)?;
    eprintln!("[team channel] {}", input.brief);
    Ok(Posted {
        message_id: cx.idempotency_key().to_owned(),
    })
}

/// Researches a new user, posts a brief about them to the team and returns it.
#[workflow(slug = "signup-pipeline")]
pub async fn signup_pipeline(input: Signup) -> Result<Brief, WorkflowError> {
    let brief = research_signup.run(input).await?;
    post_brief.run(brief.clone()).await?;
    Ok(brief)
}
