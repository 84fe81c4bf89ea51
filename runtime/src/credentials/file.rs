//! [`FileCredentials`]: credentials in a JSON file (read-only).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{CredentialError, CredentialInfo, CredentialStore, Secret, check_name};
use crate::identity::Scope;

/// Credentials in a JSON file, an object of scopes (`org`, `user:<id>`,
/// `project:<id>`), each an object of credential names to string values:
///
/// ```json
/// {"org": {"github": "ghp_…", "slack": "xoxb-…"}, "user:ada": {"github": "ghp_…"}}
/// ```
///
/// The file is read at every look-up, so an edited file is seen by the next step.
/// Read-only: `set` and `delete` fail (edit the file). A file that cannot be read or does
/// not have that shape fails every look-up with an error naming the file and the place
/// (never a value); keep it readable by its owner only (`chmod 600`).
#[derive(Clone, Debug)]
pub struct FileCredentials {
    path: PathBuf,
}

impl FileCredentials {
    /// The credentials in the file at `path` (it is read when they are looked up).
    pub fn new(path: impl Into<PathBuf>) -> FileCredentials {
        FileCredentials { path: path.into() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every (scope, name, value) of the file.
    fn read(&self) -> Result<Vec<(Scope, String, Secret)>, CredentialError> {
        let path = self.path.display();
        let unreadable = |what: String| {
            CredentialError::Unreadable(format!("credentials file `{path}`: {what}"))
        };
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| unreadable(format!("cannot be read: {e}")))?;
        // The parser's message may quote a value: report only where it failed.
        let root: Value = serde_json::from_str(&text).map_err(|e| {
            unreadable(format!(
                "is not valid JSON (line {}, column {}); it must be an object such as \
                 {{\"org\": {{\"github\": \"…\"}}, \"user:ada\": {{…}}}}",
                e.line(),
                e.column()
            ))
        })?;
        let Value::Object(scopes) = root else {
            return Err(unreadable(
                "must be a JSON object of scopes, e.g. {\"org\": {\"github\": \"…\"}}".to_owned(),
            ));
        };
        let mut all = Vec::new();
        for (scope_text, names) in scopes {
            let scope = Scope::parse(&scope_text)
                .map_err(|e| unreadable(format!("key `{scope_text}`: {e}")))?;
            let Value::Object(names) = names else {
                return Err(unreadable(format!(
                    "`{scope_text}` must be an object of credential names to values"
                )));
            };
            for (name, value) in names {
                check_name(&name).map_err(|e| unreadable(format!("`{scope_text}`: {e}")))?;
                let Value::String(value) = value else {
                    return Err(unreadable(format!(
                        "`{scope_text}`.`{name}` must be a string"
                    )));
                };
                all.push((scope.clone(), name, Secret::new(value)));
            }
        }
        Ok(all)
    }
}

fn read_only(path: &Path) -> CredentialError {
    CredentialError::ReadOnly(format!(
        "the credentials file `{}` is read-only here: edit the file",
        path.display()
    ))
}

#[async_trait::async_trait]
impl CredentialStore for FileCredentials {
    async fn get(&self, scope: &Scope, name: &str) -> Result<Option<Secret>, CredentialError> {
        check_name(name)?;
        Ok(self
            .read()?
            .into_iter()
            .find(|(s, n, _)| s == scope && n == name)
            .map(|(_, _, value)| value))
    }

    async fn set(&self, _: &Scope, name: &str, _: &Secret) -> Result<(), CredentialError> {
        check_name(name)?;
        Err(read_only(&self.path))
    }

    async fn delete(&self, _: &Scope, name: &str) -> Result<bool, CredentialError> {
        check_name(name)?;
        Err(read_only(&self.path))
    }

    async fn list(&self, scope: Option<&Scope>) -> Result<Vec<CredentialInfo>, CredentialError> {
        let mut list: Vec<CredentialInfo> = self
            .read()?
            .into_iter()
            .filter(|(s, _, _)| scope.is_none_or(|wanted| wanted == s))
            .map(|(scope, name, _)| CredentialInfo {
                scope,
                name,
                updated_at: None,
                source: "file".to_owned(),
            })
            .collect();
        super::sort(&mut list);
        Ok(list)
    }
}
