//! `subscriptions create|list|pause|resume|delete`: subscriptions to subscribable workflows
//! (see [`crate::subscriptions`]) from the command line. Creations are recorded as made by
//! `cli user $USER`. Bad input (an unknown or non-subscribable workflow, a bad user id, a
//! config that is not JSON or does not fit the workflow's subscription schema — each
//! violation printed with its JSON pointer — an unknown subscription) exits with 2.

use clap::Subcommand;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use serde_json::json;

use super::{EXIT_COMPLETED, read_json};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::subscriptions::Subscription;

/// `subscriptions …`.
#[derive(Debug, Subcommand)]
pub(crate) enum SubscriptionsCommand {
    /// Subscribe a user to a subscribable workflow (`#[workflow(subscribable = T)]`): every
    /// trigger occurrence of the workflow then starts one run for the subscription, acting
    /// for the user.
    Create {
        /// The subscribable workflow's slug.
        workflow: String,
        /// The subscriber (a user id: ASCII letters, digits, `-`, `_`, `.`, `@`).
        #[arg(long)]
        user: String,
        /// The subscriber's settings, as JSON text or `@path/to/file.json`; checked against
        /// the workflow's subscription schema (`workflows schema <slug>` shows it).
        #[arg(long, default_value = "null")]
        config: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List subscriptions, by workflow, then in order of creation.
    List {
        /// Only the subscriptions of this workflow.
        #[arg(long, value_name = "SLUG")]
        workflow: Option<String>,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Pause a subscription: trigger occurrences start no run for it (its runs already
    /// started go on).
    Pause {
        /// The subscription's id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Resume a paused subscription: the next trigger occurrence starts its run.
    Resume {
        /// The subscription's id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a subscription: it starts no more runs (its runs already started go on).
    Delete {
        /// The subscription's id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `subscriptions` command; returns the exit code (errors: see the module docs).
pub(super) async fn dispatch(
    engine: &Engine,
    command: SubscriptionsCommand,
) -> Result<u8, EngineError> {
    match command {
        SubscriptionsCommand::Create {
            workflow,
            user,
            config,
            json,
        } => {
            let config = read_json(&config, "--config")?;
            let by = crate::identity::Actor::cli_user().describe();
            let subscription = engine
                .create_subscription_by(&workflow, &user, config, &by)
                .await?;
            report(&subscription, json, "created");
        }
        SubscriptionsCommand::List { workflow, json } => {
            let subscriptions = engine.subscriptions(workflow.as_deref()).await?;
            if json {
                println!("{}", json!(subscriptions));
            } else if subscriptions.is_empty() {
                println!(
                    "no subscriptions; create one with `subscriptions create <workflow> --user \
                     <id> --config '<json>'`"
                );
            } else {
                let mut table = Table::new();
                table.load_preset(UTF8_BORDERS_ONLY);
                table.set_header(["ID", "WORKFLOW", "USER", "STATE", "CREATED", "CONFIG"]);
                for s in &subscriptions {
                    table.add_row([
                        s.id.clone(),
                        s.workflow.clone(),
                        s.user.clone(),
                        state(s).to_owned(),
                        s.created_at
                            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        s.config.to_string(),
                    ]);
                }
                println!("{table}");
            }
        }
        SubscriptionsCommand::Pause { id, json } => {
            report(&engine.pause_subscription(&id, true).await?, json, "paused");
        }
        SubscriptionsCommand::Resume { id, json } => {
            report(
                &engine.pause_subscription(&id, false).await?,
                json,
                "resumed",
            );
        }
        SubscriptionsCommand::Delete { id, json } => {
            let subscription = engine.delete_subscription(&id).await?;
            if json {
                println!("{}", json!({ "id": subscription.id, "deleted": true }));
            } else {
                println!(
                    "subscription {} of {} to {} deleted (its runs stay)",
                    subscription.id, subscription.user, subscription.workflow
                );
            }
        }
    }
    Ok(EXIT_COMPLETED)
}

fn state(subscription: &Subscription) -> &'static str {
    if subscription.paused {
        "paused"
    } else {
        "active"
    }
}

fn report(subscription: &Subscription, json: bool, what: &str) {
    if json {
        println!("{}", json!(subscription));
    } else {
        println!(
            "subscription {} of {} to {} {what} ({})",
            subscription.id,
            subscription.user,
            subscription.workflow,
            state(subscription)
        );
    }
}
