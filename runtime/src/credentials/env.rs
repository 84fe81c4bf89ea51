//! [`EnvCredentials`]: credentials in environment variables (read-only).

use std::collections::BTreeMap;

use super::{CredentialError, CredentialInfo, CredentialStore, Secret, check_name};
use crate::identity::Scope;

/// The prefix of every credential variable.
pub const ENV_PREFIX: &str = "REPRISE_CREDENTIAL_";

/// Credentials in environment variables, read when they are looked up (so a changed
/// variable is seen by the next step of a process that re-reads its environment; a
/// process's environment rarely changes, so rotate with a restart). Read-only: `set` and
/// `delete` fail.
///
/// Credential `name` in `scope` is the variable
/// `REPRISE_CREDENTIAL_<SCOPE>_<NAME>`, where `<SCOPE>` is `ORG`, `USER_<ID>` or
/// `PROJECT_<ID>`; `<ID>` and `<NAME>` are upper-cased and every character that is not an
/// ASCII letter or digit (`-`, `.`, `@`, `_`) becomes `_`:
///
/// | scope | name | variable |
/// |---|---|---|
/// | `org` | `github` | `REPRISE_CREDENTIAL_ORG_GITHUB` |
/// | `user:ada` | `github` | `REPRISE_CREDENTIAL_USER_ADA_GITHUB` |
/// | `project:acme-web` | `open-ai.key` | `REPRISE_CREDENTIAL_PROJECT_ACME_WEB_OPEN_AI_KEY` |
///
/// An empty variable counts as unset. Listing turns variables back into scopes and names,
/// lower-cased, with `_` where the name had `-` or `.`; without a scope filter, a user or
/// project id is taken to end at the first `_` after `USER_` / `PROJECT_` (list with
/// `--scope` for ids that hold one).
///
/// ```
/// use reprise::credentials::EnvCredentials;
/// use reprise::identity::Scope;
/// assert_eq!(EnvCredentials::variable(&Scope::User("ada".into()), "github"), "REPRISE_CREDENTIAL_USER_ADA_GITHUB");
/// ```
#[derive(Clone, Debug, Default)]
pub struct EnvCredentials {
    /// Fixed variables instead of the process environment (tests).
    fixed: Option<BTreeMap<String, String>>,
}

impl EnvCredentials {
    /// Reads the process environment.
    pub fn new() -> EnvCredentials {
        EnvCredentials::default()
    }

    /// Reads `vars` (name, value pairs) instead of the process environment: for tests,
    /// which should not change the environment of a process running other tests.
    pub fn from_vars<K: Into<String>, V: Into<String>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> EnvCredentials {
        EnvCredentials {
            fixed: Some(
                vars.into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
        }
    }

    /// The variable that holds credential `name` in `scope` (see the type's docs).
    pub fn variable(scope: &Scope, name: &str) -> String {
        format!("{ENV_PREFIX}{}_{}", scope_part(scope), upper(name))
    }

    fn var(&self, name: &str) -> Option<String> {
        let value = match &self.fixed {
            Some(vars) => vars.get(name).cloned(),
            None => std::env::var(name).ok(),
        };
        value.filter(|v| !v.is_empty())
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = match &self.fixed {
            Some(vars) => vars
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, _)| k.clone())
                .collect(),
            None => std::env::vars_os()
                .filter(|(_, v)| !v.is_empty())
                .filter_map(|(k, _)| k.into_string().ok())
                .collect(),
        };
        names.retain(|n| n.starts_with(ENV_PREFIX));
        names
    }
}

/// `ORG`, `USER_<ID>` or `PROJECT_<ID>`.
fn scope_part(scope: &Scope) -> String {
    match scope {
        Scope::Org => "ORG".to_owned(),
        Scope::User(id) => format!("USER_{}", upper(id)),
        Scope::Project(id) => format!("PROJECT_{}", upper(id)),
    }
}

/// Upper-cased, every character but ASCII letters and digits as `_`.
fn upper(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The (scope, name) a variable's part after the prefix stands for, when `filter` is
/// `None` (see the type's docs).
fn parse(rest: &str) -> Option<(Scope, String)> {
    let lower = rest.to_ascii_lowercase();
    if let Some(name) = lower.strip_prefix("org_") {
        return Some((Scope::Org, name.to_owned()));
    }
    for (prefix, user) in [("user_", true), ("project_", false)] {
        if let Some(tail) = lower.strip_prefix(prefix) {
            let (id, name) = tail.split_once('_')?;
            let scope = if user {
                Scope::User(id.to_owned())
            } else {
                Scope::Project(id.to_owned())
            };
            return Some((scope, name.to_owned()));
        }
    }
    None
}

fn read_only() -> CredentialError {
    CredentialError::ReadOnly(format!(
        "environment variables are read-only credentials: set the variable ({ENV_PREFIX}<SCOPE>_<NAME>) \
         where the process starts, or set {} to keep credentials encrypted in the database",
        super::SECRETS_KEY_ENV
    ))
}

#[async_trait::async_trait]
impl CredentialStore for EnvCredentials {
    async fn get(&self, scope: &Scope, name: &str) -> Result<Option<Secret>, CredentialError> {
        check_name(name)?;
        Ok(self.var(&Self::variable(scope, name)).map(Secret::new))
    }

    async fn set(&self, _: &Scope, name: &str, _: &Secret) -> Result<(), CredentialError> {
        check_name(name)?;
        Err(read_only())
    }

    async fn delete(&self, _: &Scope, name: &str) -> Result<bool, CredentialError> {
        check_name(name)?;
        Err(read_only())
    }

    async fn list(&self, scope: Option<&Scope>) -> Result<Vec<CredentialInfo>, CredentialError> {
        let mut list = Vec::new();
        for var in self.names() {
            let rest = &var[ENV_PREFIX.len()..];
            let found = match scope {
                Some(scope) => rest
                    .strip_prefix(&format!("{}_", scope_part(scope)))
                    .filter(|name| !name.is_empty())
                    .map(|name| (scope.clone(), name.to_ascii_lowercase())),
                None => parse(rest),
            };
            if let Some((scope, name)) = found {
                list.push(CredentialInfo {
                    scope,
                    name,
                    updated_at: None,
                    source: "env".to_owned(),
                });
            }
        }
        super::sort(&mut list);
        Ok(list)
    }
}
