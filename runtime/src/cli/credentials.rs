//! `credentials set|list|delete`: the credentials of the engine's credential store
//! (`REPRISE_SECRETS_KEY` keeps them encrypted in the database; see
//! [`crate::credentials`]). Values are read from stdin, never from an argument (arguments
//! show in `ps` and shell history), and never printed.

use std::io::{IsTerminal, Read};

use clap::Subcommand;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};

use super::EXIT_COMPLETED;
use crate::credentials::{CredentialError, Secret};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::identity::Scope;

#[derive(Debug, Subcommand)]
pub(crate) enum CredentialsCommand {
    /// Set a credential to the value read from stdin (one trailing newline dropped):
    /// `printf %s "$TOKEN" | app credentials set github --scope user:ada`.
    Set {
        /// The credential's name (1 to 64 ASCII letters, digits, `-`, `_`, `.`).
        name: String,
        /// Its scope: `user:<id>`, `project:<id>` or `org`.
        #[arg(long, value_parser = Scope::parse)]
        scope: Scope,
    },
    /// List credentials: scope, name, when set, where kept. Never values.
    List {
        /// Only this scope: `user:<id>`, `project:<id>` or `org`.
        #[arg(long, value_parser = Scope::parse)]
        scope: Option<Scope>,
        /// Print JSON (the array `GET /credentials` answers).
        #[arg(long)]
        json: bool,
    },
    /// Delete a credential.
    Delete {
        /// The credential's name.
        name: String,
        /// Its scope: `user:<id>`, `project:<id>` or `org`.
        #[arg(long, value_parser = Scope::parse)]
        scope: Scope,
    },
}

/// A credential error as an engine error: a store failure keeps its kind (exit 4); the
/// rest (read-only store, bad name, a value that does not decrypt) are configuration
/// problems (exit 2).
fn engine_error(error: CredentialError) -> EngineError {
    match error {
        CredentialError::Store(error) => error,
        other => EngineError::Config(other.to_string()),
    }
}

/// The value on stdin, without one trailing newline.
fn read_value() -> Result<Secret, EngineError> {
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("enter the value, then a newline and Ctrl-D:");
    }
    let mut value = String::new();
    stdin
        .read_to_string(&mut value)
        .map_err(|e| EngineError::Config(format!("cannot read the value from stdin: {e}")))?;
    let value = Secret::new(value);
    let text = value.expose();
    let trimmed = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text);
    if trimmed.is_empty() {
        return Err(EngineError::Config(
            "no value on stdin: pipe it in, e.g. `printf %s \"$TOKEN\" | … credentials set \
             github --scope org`"
                .to_owned(),
        ));
    }
    Ok(Secret::new(trimmed))
}

/// Runs a `credentials` command; returns the exit code.
pub(super) async fn dispatch(
    engine: &Engine,
    command: CredentialsCommand,
) -> Result<u8, EngineError> {
    let store = engine.credentials();
    match command {
        CredentialsCommand::Set { name, scope } => {
            crate::credentials::check_name(&name).map_err(engine_error)?;
            let value = read_value()?;
            store
                .set(&scope, &name, &value)
                .await
                .map_err(engine_error)?;
            println!("credential {name} set in {scope}");
        }
        CredentialsCommand::List { scope, json } => {
            let list = store.list(scope.as_ref()).await.map_err(engine_error)?;
            if json {
                println!("{}", serde_json::to_string(&list)?);
                return Ok(EXIT_COMPLETED);
            }
            if list.is_empty() {
                println!(
                    "no credentials{}: set one with `credentials set <name> --scope <scope>` \
                     (the value on stdin)",
                    scope.map(|s| format!(" in {s}")).unwrap_or_default()
                );
                return Ok(EXIT_COMPLETED);
            }
            let mut table = Table::new();
            table
                .load_preset(UTF8_BORDERS_ONLY)
                .set_header(vec!["scope", "name", "updated", "source"]);
            for info in &list {
                table.add_row(vec![
                    info.scope.to_string(),
                    info.name.clone(),
                    info.updated_at
                        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                        .unwrap_or_default(),
                    info.source.clone(),
                ]);
            }
            println!("{table}");
        }
        CredentialsCommand::Delete { name, scope } => {
            crate::credentials::check_name(&name).map_err(engine_error)?;
            if !store.delete(&scope, &name).await.map_err(engine_error)? {
                return Err(EngineError::Config(format!(
                    "no credential `{name}` in scope `{scope}`; `credentials list` shows them"
                )));
            }
            println!("credential {name} deleted from {scope}");
        }
    }
    Ok(EXIT_COMPLETED)
}
