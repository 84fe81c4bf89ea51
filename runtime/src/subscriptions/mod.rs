//! Subscriptions to subscribable workflows (DESIGN "Identity"; issue 17).
//!
//! A workflow declared `#[workflow(subscribable = DigestSettings)]` is *subscribable*: a
//! [`Subscription`] binds a subscriber (a user id) and a config valid against
//! `DigestSettings`' JSON Schema to it. Every trigger occurrence of the workflow (a cron or
//! stored schedule tick, a webhook delivery, a poll item, an emitted event) then starts one
//! run per *active* (not paused) subscription, each acting for the subscriber's user with
//! `ctx.subscriber()` returning the subscription — exactly once per occurrence and
//! subscriber, also when several processes fire the same occurrence (each run is created
//! under the key `<occurrence key>/sub:<subscription id>`). A direct start (`workflows
//! run`, `POST /workflows/{slug}`, [`crate::Engine::start_with`]) starts one run without a
//! subscriber, or for one subscription with [`crate::Engine::subscriber_for`].
//!
//! Subscriptions are stored as store documents of kind `subscription` under the key
//! `<workflow>/<id>`, value `{id, workflow, user, config, paused, created_at,
//! created_by}`, so every process sharing the store sees the same ones. Pausing or
//! deleting one stops new runs and leaves its running ones alone.

mod fan_out;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Engine;
use crate::error::EngineError;
use crate::identity::Subscriber;
use crate::store::{Document, Put};

/// The store document kind subscriptions are kept under.
pub const DOCUMENT_KIND: &str = "subscription";

/// A subscription: `user` subscribes to `workflow` with `config`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct Subscription {
    /// Its id (`sub_` and a time-ordered UUID): what `subscriptions pause|resume|delete`
    /// and `--subscription` take.
    pub id: String,
    /// The subscribable workflow's slug.
    pub workflow: String,
    /// The subscriber: the user its runs act for (credentials resolve in `user:<user>`
    /// first).
    pub user: String,
    /// The subscriber's settings, valid against the workflow's subscription schema:
    /// `ctx.subscriber().config`.
    #[cfg_attr(feature = "http", schema(value_type = Object))]
    pub config: Value,
    /// A paused subscription starts no runs.
    pub paused: bool,
    /// When it was created (UTC).
    #[schemars(with = "String")]
    #[cfg_attr(feature = "http", schema(value_type = String, format = DateTime))]
    pub created_at: DateTime<Utc>,
    /// Who created it (`cli user ada`, `principal api`, `code`).
    pub created_by: String,
}

impl Subscription {
    /// The [`Subscriber`] its runs carry.
    pub fn subscriber(&self) -> Subscriber {
        Subscriber {
            subscription: self.id.clone(),
            user: self.user.clone(),
            config: self.config.clone(),
        }
    }

    fn from_document(document: &Document) -> Result<Subscription, EngineError> {
        serde_json::from_value(document.value.clone()).map_err(|e| {
            EngineError::Serde(format!(
                "stored subscription `{}` cannot be read ({e}); delete it with `subscriptions \
                 delete` and create it again",
                document.key
            ))
        })
    }
}

/// Checks a subscription id's shape (`sub_` and letters, digits and `-`), so ids never hold
/// `/` and a key `<workflow>/<id>` is unambiguous.
fn check_id(id: &str) -> Result<(), EngineError> {
    let ok = id.len() <= 64
        && id.strip_prefix("sub_").is_some_and(|rest| {
            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(EngineError::UnknownSubscription(id.to_owned()))
    }
}

impl Engine {
    /// Subscribes `user` to subscribable workflow `workflow` with `config`; the
    /// subscription is active at once (the workflow's next trigger occurrence starts a
    /// run for it). Recorded as created by code; see [`Engine::create_subscription_by`].
    ///
    /// # Errors
    /// As [`Engine::create_subscription_by`].
    pub async fn create_subscription(
        &self,
        workflow: &str,
        user: &str,
        config: Value,
    ) -> Result<Subscription, EngineError> {
        self.create_subscription_by(workflow, user, config, "code")
            .await
    }

    /// [`Engine::create_subscription`], recording `created_by` (who asked, for people:
    /// `cli user ada`, `principal api`).
    ///
    /// # Errors
    /// [`EngineError::UnknownWorkflow`]; [`EngineError::InvalidRequest`] when the workflow
    /// is not subscribable or `user` is not a valid user id (1 to 128 bytes of ASCII
    /// letters, digits, `-`, `_`, `.`, `@`); [`EngineError::Schema`] naming the JSON
    /// pointer of every violation when `config` does not fit the workflow's subscription
    /// schema (nothing is stored); store failures.
    pub async fn create_subscription_by(
        &self,
        workflow: &str,
        user: &str,
        config: Value,
        created_by: &str,
    ) -> Result<Subscription, EngineError> {
        let entry = self.workflow(workflow)?;
        let Some(validator) = &entry.subscription else {
            return Err(EngineError::InvalidRequest(format!(
                "workflow `{workflow}` is not subscribable: declare it with \
                 `#[workflow(subscribable = ConfigType)]` to let users subscribe to it"
            )));
        };
        crate::identity::check_user_id(user).map_err(EngineError::InvalidRequest)?;
        validator.validate(&config)?;
        let subscription = Subscription {
            id: format!("sub_{}", uuid::Uuid::now_v7().simple()),
            workflow: entry.registration.slug.to_owned(),
            user: user.to_owned(),
            config,
            paused: false,
            created_at: self.now(),
            created_by: created_by.to_owned(),
        };
        let key = format!("{}/{}", subscription.workflow, subscription.id);
        let value = serde_json::to_value(&subscription)?;
        self.store()
            .put_document(DOCUMENT_KIND, &key, &value, Put::Create, self.now())
            .await?;
        tracing::info!(
            subscription = %subscription.id,
            workflow,
            user,
            by = created_by,
            "subscription created"
        );
        Ok(subscription)
    }

    /// The subscriptions of `workflow` (`None`: of every workflow), by workflow, then in
    /// order of creation.
    ///
    /// # Errors
    /// Store failures; a stored subscription that cannot be read.
    pub async fn subscriptions(
        &self,
        workflow: Option<&str>,
    ) -> Result<Vec<Subscription>, EngineError> {
        let prefix = workflow.map(|w| format!("{w}/")).unwrap_or_default();
        self.store()
            .documents(DOCUMENT_KIND, &prefix)
            .await?
            .iter()
            .map(Subscription::from_document)
            .collect()
    }

    /// The subscription with id `id`.
    ///
    /// # Errors
    /// [`EngineError::UnknownSubscription`]; store failures.
    pub async fn subscription(&self, id: &str) -> Result<Subscription, EngineError> {
        self.subscription_document(id)
            .await
            .map(|(_, subscription)| subscription)
    }

    async fn subscription_document(&self, id: &str) -> Result<(String, Subscription), EngineError> {
        check_id(id)?;
        let suffix = format!("/{id}");
        let document = self
            .store()
            .documents(DOCUMENT_KIND, "")
            .await?
            .into_iter()
            .find(|d| d.key.ends_with(&suffix))
            .ok_or_else(|| EngineError::UnknownSubscription(id.to_owned()))?;
        let subscription = Subscription::from_document(&document)?;
        Ok((document.key, subscription))
    }

    /// Pauses (`paused == true`) or resumes subscription `id`: a paused subscription starts
    /// no runs from the trigger occurrences while it is paused (they are not made up
    /// later); its runs already started go on. Returns the subscription as stored.
    ///
    /// # Errors
    /// [`EngineError::UnknownSubscription`]; store failures.
    pub async fn pause_subscription(
        &self,
        id: &str,
        paused: bool,
    ) -> Result<Subscription, EngineError> {
        let (key, mut subscription) = self.subscription_document(id).await?;
        subscription.paused = paused;
        let value = serde_json::to_value(&subscription)?;
        if !self
            .store()
            .put_document(DOCUMENT_KIND, &key, &value, Put::Replace, self.now())
            .await?
        {
            return Err(EngineError::UnknownSubscription(id.to_owned()));
        }
        let what = if paused { "paused" } else { "resumed" };
        tracing::info!(subscription = id, workflow = %subscription.workflow, "subscription {what}");
        Ok(subscription)
    }

    /// Deletes subscription `id`: it starts no more runs; its runs already started go on
    /// (they keep their `ctx.subscriber()`). Returns what was deleted.
    ///
    /// # Errors
    /// [`EngineError::UnknownSubscription`]; store failures.
    pub async fn delete_subscription(&self, id: &str) -> Result<Subscription, EngineError> {
        let (key, subscription) = self.subscription_document(id).await?;
        if !self.store().delete_document(DOCUMENT_KIND, &key).await? {
            return Err(EngineError::UnknownSubscription(id.to_owned()));
        }
        tracing::info!(subscription = id, workflow = %subscription.workflow, "subscription deleted");
        Ok(subscription)
    }

    /// The [`Subscriber`] to start a run of `workflow` for subscription `id` directly
    /// (`workflows run --subscription`, `POST /workflows/{slug}?subscription=`): pass it to
    /// [`crate::StartOptions::subscriber`].
    ///
    /// # Errors
    /// [`EngineError::UnknownSubscription`]; [`EngineError::InvalidRequest`] when the
    /// subscription is of another workflow or paused; [`EngineError::Schema`] when its
    /// config no longer fits the workflow's subscription schema; store failures.
    pub async fn subscriber_for(
        &self,
        workflow: &str,
        id: &str,
    ) -> Result<Subscriber, EngineError> {
        let subscription = self.subscription(id).await?;
        if subscription.workflow != workflow {
            return Err(EngineError::InvalidRequest(format!(
                "subscription `{id}` is a subscription to workflow `{}`, not `{workflow}`",
                subscription.workflow
            )));
        }
        if subscription.paused {
            return Err(EngineError::InvalidRequest(format!(
                "subscription `{id}` is paused; resume it first (`subscriptions resume {id}`)"
            )));
        }
        if let Some(validator) = &self.workflow(workflow)?.subscription {
            validator.validate(&subscription.config)?;
        }
        Ok(subscription.subscriber())
    }
}
