//! Named API tokens (DESIGN "Identity"): each maps a bearer token to a *principal* (who
//! calls: a user id, a service name) and an [`ApiScope`] (what it may do).
//!
//! A token is `rpr_` followed by 32 random bytes from the operating system's generator in
//! base64url without padding (43 characters). It is shown once, when created, and never
//! stored: the store keeps, as document kind [`TOKEN_KIND`], its SHA-256 digest (lower-case
//! hex) as the key and an [`ApiToken`] (name, principal, scope, created_at, created_by) as
//! the value. A fast hash is right here (unlike for passwords): 256 random bits cannot be
//! guessed by trying, so slowing each guess down buys nothing, and a lookup per request
//! stays cheap. Names are unique: document kind [`TOKEN_NAME_KIND`], keyed by the name and
//! written with [`Put::Create`] first, is the atomic claim on a name.

use std::fmt;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use rand::TryRngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::EngineError;
use crate::store::{Put, Store};

/// The document kind of API tokens, keyed by the token's SHA-256 hex digest.
pub const TOKEN_KIND: &str = "api_token";

/// The document kind that reserves API token names (key: the name; value:
/// `{"hash": <the token's digest>}`).
pub const TOKEN_NAME_KIND: &str = "api_token_name";

/// The prefix of every named API token (so that leaked tokens are easy to scan for).
pub const TOKEN_PREFIX: &str = "rpr_";

/// What an API caller may do. Ordered: each scope allows everything the ones before it
/// allow (`read` < `start` < `operate` < `admin`). Written as its lower-case name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiScope {
    /// Read runs, workflows, queues, schedules, metrics, usage, the web UI.
    Read,
    /// Also start runs, emit events, resume hooks.
    Start,
    /// Also cancel, retry, fork, restart, pause and unpause runs and workflows, send
    /// signals and updates, manage schedules, pause subscriptions.
    Operate,
    /// Everything: also API tokens, credentials, creating and deleting subscriptions, purge.
    Admin,
}

impl ApiScope {
    /// Every scope, lowest first.
    pub const ALL: [ApiScope; 4] = [
        ApiScope::Read,
        ApiScope::Start,
        ApiScope::Operate,
        ApiScope::Admin,
    ];

    /// Whether a caller with this scope may do what needs `needed`.
    pub fn allows(self, needed: ApiScope) -> bool {
        self >= needed
    }

    /// Its name: `read`, `start`, `operate` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiScope::Read => "read",
            ApiScope::Start => "start",
            ApiScope::Operate => "operate",
            ApiScope::Admin => "admin",
        }
    }
}

impl fmt::Display for ApiScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ApiScope {
    type Err = String;

    /// `read`, `start`, `operate` or `admin`; anything else is an error listing them.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ApiScope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == text)
            .ok_or_else(|| {
                format!(
                    "`{text}` is not an API scope; use one of read, start, operate, admin \
                     (each includes the ones before it)"
                )
            })
    }
}

/// A named API token as stored (the token itself is not: see the [module docs](self)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    /// Its unique name (1 to 64 bytes of ASCII letters, digits, `-`, `_` and `.`).
    pub name: String,
    /// The principal it authenticates (a user id: the rules of [`super::Scope`]'s ids).
    pub principal: String,
    /// What it may do.
    pub scope: ApiScope,
    /// When it was created (UTC).
    pub created_at: DateTime<Utc>,
    /// Who created it: `cli:<user>` or the API principal.
    pub created_by: String,
}

/// A token just created: its record and the token itself, which is shown once and cannot
/// be read again. `Debug` does not print the token.
#[derive(Clone)]
pub struct NewApiToken {
    /// The stored record.
    pub info: ApiToken,
    /// The bearer token (`rpr_…`).
    pub token: String,
}

impl fmt::Debug for NewApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewApiToken")
            .field("info", &self.info)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// [`create`] refused: the name is taken (revoke that token first, or pick another name).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "an API token named `{0}` exists already; pick another name, or revoke it first \
     (`tokens revoke {0}`)"
)]
pub struct NameTaken(pub String);

/// The SHA-256 digest of `token` in lower-case hex: its key in the store.
pub fn token_hash(token: &str) -> String {
    crate::hex::hex(&Sha256::digest(token.as_bytes()))
}

/// Checks a token name: 1 to 64 bytes of ASCII letters, digits, `-`, `_` and `.`.
///
/// # Errors
/// A sentence naming the bad name and the rule.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "token name `{name}` must be 1 to 64 bytes of ASCII letters, digits, `-`, `_` \
             and `.`"
        ))
    }
}

/// Checks a principal: a user id (see [`super::Scope::parse`]).
///
/// # Errors
/// A sentence naming the bad principal and the rule.
pub fn check_principal(principal: &str) -> Result<(), String> {
    super::scope::check_id("principal", principal)
}

/// A new random token: `rpr_` and 32 bytes from the OS generator, base64url.
fn generate() -> Result<String, EngineError> {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.try_fill_bytes(&mut bytes).map_err(|e| {
        EngineError::Store(format!(
            "the operating system's random generator failed ({e}); no token was created"
        ))
    })?;
    Ok(format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// Creates a token named `name` for `principal` with `scope`, recorded as created by
/// `created_by` at `now`. The returned [`NewApiToken::token`] is the only copy of it.
///
/// # Errors
/// `Ok(Err(NameTaken))` when a token has the name (nothing is written);
/// [`EngineError::InvalidRequest`] for a bad name or principal; store failures.
pub async fn create(
    store: &dyn Store,
    name: &str,
    principal: &str,
    scope: ApiScope,
    created_by: &str,
    now: DateTime<Utc>,
) -> Result<Result<NewApiToken, NameTaken>, EngineError> {
    check_name(name).map_err(EngineError::InvalidRequest)?;
    check_principal(principal).map_err(EngineError::InvalidRequest)?;
    let token = generate()?;
    let hash = token_hash(&token);
    let claim = serde_json::json!({ "hash": hash });
    if !store
        .put_document(TOKEN_NAME_KIND, name, &claim, Put::Create, now)
        .await?
    {
        return Ok(Err(NameTaken(name.to_owned())));
    }
    let info = ApiToken {
        name: name.to_owned(),
        principal: principal.to_owned(),
        scope,
        created_at: now,
        created_by: created_by.to_owned(),
    };
    let value = serde_json::to_value(&info).map_err(|e| EngineError::Serde(e.to_string()))?;
    let written = store
        .put_document(TOKEN_KIND, &hash, &value, Put::Create, now)
        .await;
    match written {
        Ok(true) => Ok(Ok(NewApiToken { info, token })),
        // Two equal 256-bit random values do not happen; a store failure can.
        other => {
            let _ = store.delete_document(TOKEN_NAME_KIND, name).await;
            match other {
                Err(error) => Err(error),
                _ => Err(EngineError::Store(
                    "a token with the same digest exists; create the token again".into(),
                )),
            }
        }
    }
}

/// Every named token, by name.
///
/// # Errors
/// Store failures; a stored token that does not decode is [`EngineError::Corrupt`].
pub async fn list(store: &dyn Store) -> Result<Vec<ApiToken>, EngineError> {
    let mut tokens = Vec::new();
    for document in store.documents(TOKEN_KIND, "").await? {
        tokens.push(decode(&document.value)?);
    }
    tokens.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(tokens)
}

/// Revokes the token named `name`: requests with it get 401 from then on. Whether there
/// was one.
///
/// # Errors
/// Store failures.
pub async fn revoke(store: &dyn Store, name: &str) -> Result<bool, EngineError> {
    let Some(claim) = store.document(TOKEN_NAME_KIND, name).await? else {
        return Ok(false);
    };
    if let Some(hash) = claim.value.get("hash").and_then(|h| h.as_str()) {
        store.delete_document(TOKEN_KIND, hash).await?;
    }
    store.delete_document(TOKEN_NAME_KIND, name).await
}

/// The named token `presented` is, if any (a revoked or unknown token is `None`).
///
/// # Errors
/// Store failures; a stored token that does not decode is [`EngineError::Corrupt`].
pub async fn verify(store: &dyn Store, presented: &str) -> Result<Option<ApiToken>, EngineError> {
    if !presented.starts_with(TOKEN_PREFIX) {
        return Ok(None);
    }
    match store.document(TOKEN_KIND, &token_hash(presented)).await? {
        Some(document) => decode(&document.value).map(Some),
        None => Ok(None),
    }
}

fn decode(value: &serde_json::Value) -> Result<ApiToken, EngineError> {
    ApiToken::deserialize(value).map_err(|e| EngineError::Corrupt {
        run: "-".into(),
        message: format!("a stored API token does not decode ({e}); revoke and recreate it"),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn scopes_are_ordered_and_parsed() {
        assert!(ApiScope::Admin.allows(ApiScope::Read));
        assert!(ApiScope::Operate.allows(ApiScope::Start));
        assert!(!ApiScope::Read.allows(ApiScope::Start));
        assert!(!ApiScope::Operate.allows(ApiScope::Admin));
        for scope in ApiScope::ALL {
            assert_eq!(scope.as_str().parse::<ApiScope>().unwrap(), scope);
        }
        let error = "write".parse::<ApiScope>().unwrap_err();
        assert!(error.contains("read, start, operate, admin"), "{error}");
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("ci-bot.1").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name(&"x".repeat(65)).is_err());
    }

    #[test]
    fn tokens_are_random_prefixed_and_43_characters_after_the_prefix() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 43);
        assert_eq!(token_hash(&a).len(), 64);
    }
}
