//! Identity (DESIGN "Identity"): who or what started a run, whom it acts for, and the
//! scopes credentials are resolved in.
//!
//! Every run records a [`RunIdentity`] in its `run_created` event (field `identity`):
//! - its [`Actor`]: an API principal, a CLI user, a trigger with its details (schedule
//!   name and tick, webhook source and delivery id, poll source and item id, emitted event
//!   name and id), another run (a parent, the run it continues, the run whose failure it
//!   handles), or code;
//! - the *user* it acts for and its *project*: the first two [`Scope`]s a credential is
//!   looked up in (then the organisation);
//! - for a run of a subscribable workflow started by a trigger, its [`Subscriber`].
//!
//! The identity is part of the log, so a replay sees the same values; `ctx.actor()`,
//! `ctx.user()`, `ctx.project()` and `ctx.subscriber()` read it. Runs recorded before
//! identities were have none: their actor reads as [`Actor::Unrecorded`].

mod scope;
pub mod tokens;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use scope::Scope;

/// Checks a user id (1 to 128 bytes of ASCII letters, digits, `-`, `_`, `.` and `@`).
///
/// # Errors
/// A sentence naming the id and the accepted characters.
pub(crate) fn check_user_id(id: &str) -> Result<(), String> {
    scope::check_id("user", id)
}

/// Who or what started a run, with the details a trigger knows. Written in the log as an
/// object tagged by `type`, e.g. `{"type": "schedule", "name": "nightly", "tick":
/// "2026-12-06T02:00:00Z"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Actor {
    /// An authenticated caller of the HTTP API: a named API token's principal (and the
    /// token's name), or `api` for the engine's single bearer token or an API without
    /// authentication.
    Principal {
        /// The principal's name (a user id, a service name).
        name: String,
        /// The name of the API token used, if a named token.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
    /// The command line of the app's binary, run by `user` (the OS user, `$USER`).
    Cli {
        /// The OS user name (`unknown` when the environment names none).
        user: String,
    },
    /// A cron schedule's tick.
    Schedule {
        /// The schedule's name.
        name: String,
        /// The tick (UTC) the run is for.
        #[schemars(with = "String")]
        tick: DateTime<Utc>,
    },
    /// A webhook delivery.
    Webhook {
        /// The webhook source's name.
        source: String,
        /// The delivery id the source reported, if it reports one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delivery_id: Option<String>,
    },
    /// A poll source's new item.
    Poll {
        /// The poll source's name.
        source: String,
        /// The item's id.
        item_id: String,
    },
    /// An emitted event (`Engine::emit`, `POST /events`).
    Event {
        /// The event's name.
        name: String,
        /// The event's id.
        id: String,
    },
    /// Another run: a parent starting a child, a run continuing as new, a run whose
    /// failure this run handles (`on_failure`).
    Run {
        /// The other run's id.
        run_id: String,
        /// How it relates to this run.
        relation: RunRelation,
    },
    /// Code calling the engine directly (tests, an embedding app).
    Code,
    /// A run recorded before actors were (its log has no `identity`).
    Unrecorded,
}

/// How the run of an [`Actor::Run`] relates to the run it started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunRelation {
    /// The parent of a child run.
    Parent,
    /// The run this one continues (continue-as-new).
    Continued,
    /// The failed run this one handles (`on_failure`).
    Failed,
    /// The run this one forks or restarts.
    Forked,
}

impl Actor {
    /// [`Actor::Cli`] for the OS user of this process (`$USER`, else `$USERNAME`, else
    /// `unknown`).
    pub fn cli_user() -> Actor {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("USERNAME"))
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "unknown".into());
        Actor::Cli { user }
    }

    /// One line for people: `principal ada (token ci)`, `schedule nightly at
    /// 2026-12-06T02:00:00Z`, `run 01J… (parent)`.
    pub fn describe(&self) -> String {
        match self {
            Actor::Principal { name, token } => match token {
                Some(token) => format!("principal {name} (token {token})"),
                None => format!("principal {name}"),
            },
            Actor::Cli { user } => format!("cli user {user}"),
            Actor::Schedule { name, tick } => format!(
                "schedule {name} at {}",
                tick.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            ),
            Actor::Webhook {
                source,
                delivery_id,
            } => match delivery_id {
                Some(id) => format!("webhook {source} (delivery {id})"),
                None => format!("webhook {source}"),
            },
            Actor::Poll { source, item_id } => format!("poll {source} (item {item_id})"),
            Actor::Event { name, id } => format!("event {name} ({id})"),
            Actor::Run { run_id, relation } => {
                let relation = match relation {
                    RunRelation::Parent => "parent",
                    RunRelation::Continued => "continued",
                    RunRelation::Failed => "failed",
                    RunRelation::Forked => "forked",
                };
                format!("run {run_id} ({relation})")
            }
            Actor::Code => "code".into(),
            Actor::Unrecorded => "not recorded".into(),
        }
    }
}

/// The subscription a run was started for (see `#[workflow(subscribable = …)]`): its id,
/// its subscriber and the subscriber's validated configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Subscriber {
    /// The subscription's id.
    pub subscription: String,
    /// The subscriber (a user id): the user the run acts for.
    pub user: String,
    /// The subscription's configuration, valid against the workflow's subscription schema
    /// when the run was started.
    pub config: serde_json::Value,
}

impl Subscriber {
    /// The configuration as `T` (the workflow's subscription config type).
    ///
    /// # Errors
    /// The serde error when the configuration does not fit `T`.
    pub fn config_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.config)
    }
}

/// Who started a run and whom it acts for, as recorded in its `run_created` event
/// (`"identity": {"actor": {…}, "user"?, "project"?, "subscriber"?}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RunIdentity {
    /// Who or what started the run.
    pub actor: Actor,
    /// The user the run acts for: credentials are looked up in `user:<id>` first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The run's project: credentials are looked up in `project:<id>` next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// For a run started for a subscription: the subscription and its subscriber.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriber: Option<Subscriber>,
}

impl Default for RunIdentity {
    /// [`RunIdentity::unrecorded`].
    fn default() -> Self {
        RunIdentity::unrecorded()
    }
}

impl RunIdentity {
    /// The identity of a run recorded before identities were.
    pub fn unrecorded() -> RunIdentity {
        RunIdentity {
            actor: Actor::Unrecorded,
            user: None,
            project: None,
            subscriber: None,
        }
    }

    /// The scopes a credential is looked up in, in order: `user:<id>` (when the run acts
    /// for a user), `project:<id>` (when it has a project), then the organisation.
    pub fn scopes(&self) -> Vec<Scope> {
        let mut scopes = Vec::with_capacity(3);
        if let Some(user) = &self.user {
            scopes.push(Scope::User(user.clone()));
        }
        if let Some(project) = &self.project {
            scopes.push(Scope::Project(project.clone()));
        }
        scopes.push(Scope::Org);
        scopes
    }
}

/// The identity parts of a start ([`crate::StartOptions::actor`],
/// [`crate::StartOptions::user`], [`crate::StartOptions::project`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdentityRequest {
    /// Who starts the run; `None`: the engine's default for the start's trigger (the
    /// OS user for the CLI, the principal `api` for the HTTP API, [`Actor::Code`] else).
    pub actor: Option<Actor>,
    /// The user the run acts for; `None`: the subscriber's, else none.
    pub user: Option<String>,
    /// The run's project; `None`: the engine's default project
    /// (`EngineBuilder::project`), else none.
    pub project: Option<String>,
    /// The subscription the run is started for (set by subscription fan-out).
    pub subscriber: Option<Subscriber>,
}

impl IdentityRequest {
    /// The identity recorded for a start, given the actor to record when the request names
    /// none and the engine's default project.
    ///
    /// # Errors
    /// A sentence when the user or project is not a valid scope id (see [`Scope::parse`]).
    pub fn resolve(
        &self,
        default_actor: impl FnOnce() -> Actor,
        default_project: Option<&str>,
    ) -> Result<RunIdentity, String> {
        let user = self
            .user
            .clone()
            .or_else(|| self.subscriber.as_ref().map(|s| s.user.clone()));
        if let Some(user) = &user {
            scope::check_id("user", user)?;
        }
        let project = self
            .project
            .clone()
            .or_else(|| default_project.map(str::to_owned));
        if let Some(project) = &project {
            scope::check_id("project", project)?;
        }
        Ok(RunIdentity {
            actor: self.actor.clone().unwrap_or_else(default_actor),
            user,
            project,
            subscriber: self.subscriber.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn actors_are_written_tagged_and_read_back() {
        let tick = DateTime::parse_from_rfc3339("2026-12-06T02:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let actor = Actor::Schedule {
            name: "nightly".into(),
            tick,
        };
        let json = serde_json::to_value(&actor).unwrap();
        assert_eq!(
            json,
            json!({"type": "schedule", "name": "nightly", "tick": "2026-12-06T02:00:00Z"})
        );
        assert_eq!(serde_json::from_value::<Actor>(json).unwrap(), actor);
        assert_eq!(actor.describe(), "schedule nightly at 2026-12-06T02:00:00Z");
    }

    #[test]
    fn a_start_resolves_user_project_and_actor() {
        let request = IdentityRequest {
            subscriber: Some(Subscriber {
                subscription: "s1".into(),
                user: "ada".into(),
                config: json!({}),
            }),
            ..IdentityRequest::default()
        };
        let identity = request.resolve(|| Actor::Code, Some("acme")).unwrap();
        assert_eq!(identity.user.as_deref(), Some("ada"));
        assert_eq!(identity.project.as_deref(), Some("acme"));
        assert_eq!(identity.actor, Actor::Code);
        assert_eq!(
            identity.scopes(),
            vec![
                Scope::User("ada".into()),
                Scope::Project("acme".into()),
                Scope::Org
            ]
        );
        let bad = IdentityRequest {
            user: Some("a b".into()),
            ..IdentityRequest::default()
        };
        assert!(
            bad.resolve(|| Actor::Code, None)
                .unwrap_err()
                .contains("user")
        );
    }
}
