//! `tokens create|list|revoke`: named API tokens ([`crate::identity::tokens`]).

use clap::Subcommand;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use serde_json::json;

use super::{EXIT_COMPLETED, EXIT_USAGE};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::identity::tokens::{self, ApiScope};

#[derive(Debug, Subcommand)]
pub(crate) enum TokensCommand {
    /// Create a named API token for a principal with a scope, and print it: this is the
    /// only time it is shown (the database keeps its SHA-256 digest only).
    Create {
        /// The token's unique name (1 to 64 ASCII letters, digits, `-`, `_`, `.`).
        #[arg(long, value_parser = parse_name)]
        name: String,
        /// The principal it authenticates, recorded as the actor of the runs it starts (a
        /// user id: 1 to 128 ASCII letters, digits, `-`, `_`, `.`, `@`).
        #[arg(long, value_parser = parse_principal)]
        principal: String,
        /// What it may do: read, start, operate or admin (each includes the ones before).
        #[arg(long, value_parser = parse_scope)]
        scope: ApiScope,
        /// Print JSON (`name`, `principal`, `scope`, `created_at`, `created_by`, `token`).
        #[arg(long)]
        json: bool,
    },
    /// List the named API tokens: names, principals, scopes, when and by whom created
    /// (never the tokens).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a named API token: requests with it get 401 from then on.
    Revoke {
        /// The token's name.
        name: String,
    },
}

fn parse_name(text: &str) -> Result<String, String> {
    tokens::check_name(text).map(|()| text.to_owned())
}

fn parse_principal(text: &str) -> Result<String, String> {
    tokens::check_principal(text).map(|()| text.to_owned())
}

fn parse_scope(text: &str) -> Result<ApiScope, String> {
    text.parse()
}

/// Runs a `tokens` command; returns the exit code.
pub(super) async fn dispatch(engine: &Engine, command: TokensCommand) -> Result<u8, EngineError> {
    let store = engine.store().as_ref();
    match command {
        TokensCommand::Create {
            name,
            principal,
            scope,
            json,
        } => {
            let by = super::cli_user();
            match tokens::create(store, &name, &principal, scope, &by, engine.now()).await? {
                Ok(new) => {
                    if json {
                        let mut body = json!(new.info);
                        body["token"] = json!(new.token);
                        println!("{body}");
                    } else {
                        println!(
                            "created token {name} for principal {principal} with scope {scope}; \
                             it is shown this once, keep it now:"
                        );
                        println!("{}", new.token);
                    }
                    Ok(EXIT_COMPLETED)
                }
                Err(taken) => {
                    eprintln!("error: {taken}");
                    Ok(EXIT_USAGE)
                }
            }
        }
        TokensCommand::List { json } => {
            let all = tokens::list(store).await?;
            if json {
                println!("{}", serde_json::to_string(&all)?);
                return Ok(EXIT_COMPLETED);
            }
            if all.is_empty() {
                println!(
                    "no named API tokens; create one with `tokens create --name NAME \
                     --principal USER --scope read|start|operate|admin`"
                );
                return Ok(EXIT_COMPLETED);
            }
            let mut table = Table::new();
            table.load_preset(UTF8_BORDERS_ONLY).set_header(vec![
                "name",
                "principal",
                "scope",
                "created",
                "created by",
            ]);
            for token in &all {
                table.add_row(vec![
                    token.name.clone(),
                    token.principal.clone(),
                    token.scope.to_string(),
                    token
                        .created_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    token.created_by.clone(),
                ]);
            }
            println!("{table}");
            Ok(EXIT_COMPLETED)
        }
        TokensCommand::Revoke { name } => {
            if tokens::revoke(store, &name).await? {
                println!("revoked token {name}");
                Ok(EXIT_COMPLETED)
            } else {
                eprintln!("error: no API token is named `{name}`; `tokens list` shows them");
                Ok(EXIT_USAGE)
            }
        }
    }
}
