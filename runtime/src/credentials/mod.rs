//! Credentials (DESIGN "Identity"): secrets an action declares
//! (`#[action(credentials = ["github"])]`) and reads with [`crate::ActionCtx::credential`],
//! resolved per run in the order of [`crate::identity::RunIdentity::scopes`] — the user
//! the run acts for, then its project, then the organisation — unless the declaration pins
//! a scope (`credentials = [("billing", Scope::Org)]`).
//!
//! Where they come from is a [`CredentialStore`]: [`EnvCredentials`] (environment
//! variables, read-only), [`FileCredentials`] (a JSON file, read-only),
//! [`StoredCredentials`] (store documents of kind `credential`, encrypted at rest with
//! ChaCha20-Poly1305 under `REPRISE_SECRETS_KEY`) and [`LayeredCredentials`] (the first of
//! several that has a value). Configure one with `EngineBuilder::credentials`;
//! `EngineBuilder::from_env` layers [`StoredCredentials`] over [`EnvCredentials`] when
//! `REPRISE_SECRETS_KEY` is set, and uses [`EnvCredentials`] alone otherwise.
//!
//! Values never reach the event log, exports, traces, logs or error text: a [`Secret`]
//! prints as `Secret(***)` and is not `Serialize`, errors name credentials and scopes
//! only, and every value resolved during a run's execution is masked (replaced by `***`)
//! in what that execution records afterwards (see [`Masks`]).

mod env;
mod file;
mod mask;
mod stored;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::ActionError;
use crate::identity::{RunIdentity, Scope};

pub use env::{ENV_PREFIX, EnvCredentials};
pub use file::FileCredentials;
pub(crate) use mask::Masks;
pub use mask::{MASK, MIN_MASKED_LEN};
pub use stored::{SECRETS_KEY_ENV, SecretsKey, StoredCredentials};

/// The error kind of a credential no scope tried has (not retried).
pub const CREDENTIAL_MISSING: &str = "credential_missing";
/// The error kind of a credential the action did not declare (not retried).
pub const UNDECLARED_CREDENTIAL: &str = "undeclared_credential";
/// The error kind of a credential that is there but cannot be read: it does not decrypt,
/// its file is malformed (not retried).
pub const CREDENTIAL_UNREADABLE: &str = "credential_unreadable";
/// The error kind of a credential store that failed (the database is down): retried as
/// the action's retries allow.
pub const CREDENTIAL_STORE: &str = "credential_store";

/// A secret value: what [`crate::ActionCtx::credential`] returns.
///
/// It is not `Serialize`, so it cannot be returned from a step or put into an event by
/// accident; `Debug` and `Display` print `Secret(***)`; the memory holding it is zeroed
/// when it is dropped (`zeroize`). Read it with [`Secret::expose`] where it is used (a
/// header, a connection string) and nowhere else.
///
/// ```
/// let secret = reprise::credentials::Secret::new("ghp_123");
/// assert_eq!(format!("{secret} {secret:?}"), "Secret(***) Secret(***)");
/// assert_eq!(secret.expose(), "ghp_123");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(Zeroizing::new(value.into()))
    }

    /// The value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The scope kind a declaration pins a credential to (`credentials = [("billing",
/// Scope::Org)]`); the user or project id comes from the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CredentialPin {
    /// Only `user:<the run's user>`.
    User,
    /// Only `project:<the run's project>`.
    Project,
    /// Only `org`.
    Org,
}

impl CredentialPin {
    /// `user`, `project` or `org` (as [`Scope::kind`]).
    pub fn kind(self) -> &'static str {
        match self {
            CredentialPin::User => "user",
            CredentialPin::Project => "project",
            CredentialPin::Org => "org",
        }
    }
}

/// One credential an action declares: its name and, if pinned, the one scope kind it is
/// looked up in. Written by `#[action(credentials = [..])]` into
/// [`crate::ActionOptions::credentials`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CredentialDecl {
    /// The credential's name (`github`).
    pub name: &'static str,
    /// The scope kind it is pinned to; `None`: user → project → org.
    pub pin: Option<CredentialPin>,
}

impl CredentialDecl {
    /// `name`, resolved user → project → org.
    pub const fn any(name: &'static str) -> CredentialDecl {
        CredentialDecl { name, pin: None }
    }

    /// `name`, looked up only in scope kind `pin`.
    pub const fn pinned(name: &'static str, pin: CredentialPin) -> CredentialDecl {
        CredentialDecl {
            name,
            pin: Some(pin),
        }
    }
}

/// A credential's entry in a listing: where it is and when it last changed, never its
/// value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct CredentialInfo {
    /// Its scope (`user:ada`, `project:acme`, `org`).
    #[cfg_attr(feature = "http", schema(value_type = String))]
    pub scope: Scope,
    /// Its name.
    pub name: String,
    /// When it was last set (UTC), where the store knows it (`None` for environment
    /// variables and files).
    #[cfg_attr(feature = "http", schema(value_type = Option<String>, format = DateTime))]
    pub updated_at: Option<DateTime<Utc>>,
    /// The store that holds it: `stored`, `env` or `file`.
    pub source: String,
}

/// Why a credential store could not answer. Messages name credentials, scopes, files and
/// variables, never a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// The name is not a credential name.
    #[error(
        "`{0}` is not a credential name: use 1 to 64 ASCII letters, digits, `-`, `_` or `.`, e.g. `github`"
    )]
    InvalidName(String),
    /// The store cannot be written (environment variables, files).
    #[error("{0}")]
    ReadOnly(String),
    /// The value is there but cannot be read (does not decrypt, malformed).
    #[error("{0}")]
    Unreadable(String),
    /// The configuration is wrong (a bad key).
    #[error("{0}")]
    Config(String),
    /// The underlying store failed.
    #[error("credential store: {0}")]
    Store(#[from] crate::EngineError),
}

impl CredentialError {
    /// As an action's error: `credential_store` (retryable) for a store failure,
    /// `credential_unreadable` (not retried) for the rest.
    pub(crate) fn into_action_error(self) -> ActionError {
        match self {
            CredentialError::Store(_) => ActionError::new(CREDENTIAL_STORE, self.to_string(), true),
            other => ActionError::new(CREDENTIAL_UNREADABLE, other.to_string(), false),
        }
    }
}

/// Checks a credential name: 1 to 64 bytes of ASCII letters, digits, `-`, `_` and `.`
/// (the rule `#[action(credentials = [..])]` applies at compile time).
///
/// # Errors
/// [`CredentialError::InvalidName`].
pub fn check_name(name: &str) -> Result<(), CredentialError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(CredentialError::InvalidName(name.to_owned()))
    }
}

/// Where credentials are kept: read per scope and name; written, deleted and listed by the
/// `credentials` CLI and API. Implementations must never put a value into an error
/// message or a log line.
#[async_trait::async_trait]
pub trait CredentialStore: Send + Sync + 'static {
    /// The value of credential `name` in `scope`, if set there.
    ///
    /// # Errors
    /// A store failure, or a value that cannot be read.
    async fn get(&self, scope: &Scope, name: &str) -> Result<Option<Secret>, CredentialError>;

    /// Sets credential `name` in `scope` to `value` (a new value replaces the old one).
    ///
    /// # Errors
    /// [`CredentialError::ReadOnly`] for a store that cannot be written; store failures.
    async fn set(&self, scope: &Scope, name: &str, value: &Secret) -> Result<(), CredentialError>;

    /// Deletes credential `name` in `scope`: whether it was there.
    ///
    /// # Errors
    /// [`CredentialError::ReadOnly`] for a store that cannot be written; store failures.
    async fn delete(&self, scope: &Scope, name: &str) -> Result<bool, CredentialError>;

    /// The credentials there are (in `scope` only, when given), in resolution order
    /// (user scopes, project scopes, `org`; by id, then by name): names, scopes and
    /// times, never values.
    ///
    /// # Errors
    /// Store failures.
    async fn list(&self, scope: Option<&Scope>) -> Result<Vec<CredentialInfo>, CredentialError>;
}

#[async_trait::async_trait]
impl<T: CredentialStore + ?Sized> CredentialStore for Arc<T> {
    async fn get(&self, scope: &Scope, name: &str) -> Result<Option<Secret>, CredentialError> {
        (**self).get(scope, name).await
    }
    async fn set(&self, scope: &Scope, name: &str, value: &Secret) -> Result<(), CredentialError> {
        (**self).set(scope, name, value).await
    }
    async fn delete(&self, scope: &Scope, name: &str) -> Result<bool, CredentialError> {
        (**self).delete(scope, name).await
    }
    async fn list(&self, scope: Option<&Scope>) -> Result<Vec<CredentialInfo>, CredentialError> {
        (**self).list(scope).await
    }
}

/// Several stores as one: [`CredentialStore::get`] answers from the first layer that has
/// the credential; `set` and `delete` go to the first layer; `list` is every layer's
/// listing, a (scope, name) listed once, by the first layer that has it. With no layers
/// it holds nothing and cannot be written.
#[derive(Clone, Default)]
pub struct LayeredCredentials {
    layers: Vec<Arc<dyn CredentialStore>>,
}

impl LayeredCredentials {
    /// No layers yet.
    pub fn new() -> LayeredCredentials {
        LayeredCredentials::default()
    }

    /// Adds `store` below the layers added before (it answers only what they do not).
    #[must_use]
    pub fn layer(mut self, store: impl CredentialStore) -> LayeredCredentials {
        self.layers.push(Arc::new(store));
        self
    }
}

#[async_trait::async_trait]
impl CredentialStore for LayeredCredentials {
    async fn get(&self, scope: &Scope, name: &str) -> Result<Option<Secret>, CredentialError> {
        for layer in &self.layers {
            if let Some(value) = layer.get(scope, name).await? {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    async fn set(&self, scope: &Scope, name: &str, value: &Secret) -> Result<(), CredentialError> {
        match self.layers.first() {
            Some(first) => first.set(scope, name, value).await,
            None => Err(not_writable()),
        }
    }

    async fn delete(&self, scope: &Scope, name: &str) -> Result<bool, CredentialError> {
        match self.layers.first() {
            Some(first) => first.delete(scope, name).await,
            None => Err(not_writable()),
        }
    }

    async fn list(&self, scope: Option<&Scope>) -> Result<Vec<CredentialInfo>, CredentialError> {
        let mut all: Vec<CredentialInfo> = Vec::new();
        for layer in &self.layers {
            for info in layer.list(scope).await? {
                if !all
                    .iter()
                    .any(|i| i.scope == info.scope && i.name == info.name)
                {
                    all.push(info);
                }
            }
        }
        sort(&mut all);
        Ok(all)
    }
}

/// The error of writing where no writable store is configured.
fn not_writable() -> CredentialError {
    CredentialError::ReadOnly(format!(
        "no writable credential store is configured: set {SECRETS_KEY_ENV} (32 bytes, base64; \
         make one with `openssl rand -base64 32`) to keep credentials encrypted in the \
         database, or configure one with `EngineBuilder::credentials(..)`"
    ))
}

/// Sorts a listing in resolution order: user scopes, project scopes, `org` (each by id),
/// then by name.
pub(crate) fn sort(list: &mut [CredentialInfo]) {
    list.sort_by(|a, b| (&a.scope, &a.name).cmp(&(&b.scope, &b.name)));
}

/// The engine's credential store, kept as a run-environment service so that
/// [`crate::ActionCtx`] reaches it.
#[derive(Clone)]
pub(crate) struct CredentialSettings {
    pub(crate) store: Arc<dyn CredentialStore>,
}

impl CredentialSettings {
    /// The store of the engine `env` belongs to (an empty one if it has none).
    pub(crate) fn of(env: &crate::run_env::RunEnv) -> Arc<dyn CredentialStore> {
        env.service::<CredentialSettings>().map_or_else(
            || Arc::new(LayeredCredentials::new()) as Arc<dyn CredentialStore>,
            |s| s.store.clone(),
        )
    }
}

/// What an [`crate::ActionCtx`] needs to resolve credentials: the store, what the action
/// declared (`None`: anything, for a context made by hand), the slug for messages, and the
/// execution's masks.
#[derive(Clone)]
pub(crate) struct CredentialAccess {
    pub(crate) store: Arc<dyn CredentialStore>,
    pub(crate) declared: Option<&'static [CredentialDecl]>,
    pub(crate) slug: String,
    pub(crate) masks: Arc<Masks>,
}

impl std::fmt::Debug for CredentialAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialAccess")
            .field("declared", &self.declared)
            .field("slug", &self.slug)
            .finish_non_exhaustive()
    }
}

impl CredentialAccess {
    /// Resolves credential `name` for a run acting as `identity` (`None`: outside a run,
    /// the organisation only): the declaration's scopes in order, the first hit wins, and
    /// its value is remembered in the masks.
    ///
    /// # Errors
    /// `undeclared_credential`, `credential_missing` (naming every scope tried),
    /// `credential_unreadable`, `credential_store` (retryable).
    pub(crate) async fn resolve(
        &self,
        identity: Option<&RunIdentity>,
        name: &str,
    ) -> Result<Secret, ActionError> {
        let pin = match self.declared {
            None => None,
            Some(declared) => match declared.iter().find(|d| d.name == name) {
                Some(decl) => decl.pin,
                None => return Err(undeclared(&self.slug, name, declared)),
            },
        };
        check_name(name)
            .map_err(|e| ActionError::new(UNDECLARED_CREDENTIAL, e.to_string(), false))?;
        let scopes = scopes_for(identity, pin);
        for scope in &scopes {
            if let Some(secret) = self
                .store
                .get(scope, name)
                .await
                .map_err(CredentialError::into_action_error)?
            {
                self.masks.add(secret.expose());
                return Ok(secret);
            }
        }
        Err(missing(name, &scopes, pin, identity.is_some()))
    }
}

/// The scopes `name` is looked up in, in order: the run's (user, project, org), or only
/// those of the pinned kind; outside a run, the organisation only.
fn scopes_for(identity: Option<&RunIdentity>, pin: Option<CredentialPin>) -> Vec<Scope> {
    let all = identity.map_or_else(|| vec![Scope::Org], RunIdentity::scopes);
    match pin {
        None => all,
        Some(pin) => all.into_iter().filter(|s| s.kind() == pin.kind()).collect(),
    }
}

/// The `undeclared_credential` error.
fn undeclared(slug: &str, name: &str, declared: &[CredentialDecl]) -> ActionError {
    let mut names: Vec<String> = declared.iter().map(|d| format!("\"{}\"", d.name)).collect();
    names.push(format!("\"{name}\""));
    ActionError::new(
        UNDECLARED_CREDENTIAL,
        format!(
            "action `{slug}` reads credential `{name}` but does not declare it; declare every \
             credential the action reads: `#[action(credentials = [{}])]`",
            names.join(", ")
        ),
        false,
    )
}

/// The `credential_missing` error: the credential and every scope tried, never a value.
fn missing(name: &str, scopes: &[Scope], pin: Option<CredentialPin>, in_run: bool) -> ActionError {
    let message = if scopes.is_empty() {
        let pin = pin.map_or("", CredentialPin::kind);
        format!(
            "credential `{name}` is pinned to the {pin} scope, but this run acts for no {pin}: \
             start it with a {pin} (`StartOptions::{pin}(..)`, `--{pin}`) or pin another scope"
        )
    } else {
        let tried: Vec<String> = scopes.iter().map(ToString::to_string).collect();
        let first = &scopes[0];
        format!(
            "credential `{name}` is not set in any scope tried ({}){}; set it with \
             `credentials set {name} --scope {first}` (the value on stdin) or \
             `PUT /credentials/{first}/{name}`",
            tried.join(", "),
            if in_run {
                ""
            } else {
                " (outside a run only `org` is looked up)"
            }
        )
    };
    ActionError::new(CREDENTIAL_MISSING, message, false)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["github", "a", "open-ai_key.v2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "with space", "slash/no", &"x".repeat(65)] {
            let error = check_name(bad).unwrap_err().to_string();
            assert!(error.contains("1 to 64"), "{error}");
        }
    }

    #[test]
    fn pinned_scopes_keep_only_their_kind() {
        let identity = RunIdentity {
            actor: crate::identity::Actor::Code,
            user: Some("ada".into()),
            project: Some("acme".into()),
            subscriber: None,
        };
        assert_eq!(
            scopes_for(Some(&identity), None),
            vec![
                Scope::User("ada".into()),
                Scope::Project("acme".into()),
                Scope::Org
            ]
        );
        assert_eq!(
            scopes_for(Some(&identity), Some(CredentialPin::Project)),
            vec![Scope::Project("acme".into())]
        );
        assert_eq!(scopes_for(None, None), vec![Scope::Org]);
        assert_eq!(scopes_for(None, Some(CredentialPin::User)), vec![]);
    }
}
