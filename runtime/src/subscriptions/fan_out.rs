//! Fan-out: the one place every trigger occurrence (cron and stored schedule ticks, webhook
//! deliveries, poll items, emitted events) goes through to start its runs, so that an
//! occurrence of a subscribable workflow starts one run per active subscription.

use std::future::Future;

use serde_json::Value;

use crate::Engine;
use crate::StartOptions;
use crate::error::EngineError;
use crate::event::{RunId, Trigger};

/// The key a subscription's run of an occurrence is created under:
/// `<occurrence key>/sub:<subscription id>`.
pub(crate) fn subscriber_key(occurrence: &str, subscription: &str) -> String {
    format!("{occurrence}/sub:{subscription}")
}

impl Engine {
    /// Starts the runs of one trigger occurrence of workflow `slug`, as `start` starts one
    /// run (given the key to start it under — `key` itself, or for a subscription
    /// `<key>/sub:<id>` ([`subscriber_key`]); `None` when the occurrence has no key — and
    /// the options to start it with).
    ///
    /// A workflow that is not subscribable (or not registered: `start` reports that) gets
    /// one run with `options`. A subscribable one gets one run per active subscription,
    /// each with `options` plus the subscription's [`crate::identity::Subscriber`], in
    /// order of creation; with none active, no run (logged at info, naming the trigger). A
    /// subscription whose config no longer fits the workflow's schema is skipped (logged
    /// as an error). Returns each run started or found and whether `start` created it.
    ///
    /// # Errors
    /// The first error of `start` (runs started before it stay started; their keys make a
    /// retry of the occurrence start each once), or a store error listing subscriptions.
    pub(crate) async fn start_occurrence_with<F, Fut>(
        &self,
        slug: &str,
        key: Option<&str>,
        options: StartOptions,
        mut start: F,
    ) -> Result<Vec<(RunId, bool)>, EngineError>
    where
        F: FnMut(Option<String>, StartOptions) -> Fut,
        Fut: Future<Output = Result<(RunId, bool), EngineError>>,
    {
        let validator = match self.workflow(slug) {
            Ok(entry) => match &entry.subscription {
                Some(validator) => validator,
                None => return Ok(vec![start(key.map(str::to_owned), options).await?]),
            },
            Err(_) => return Ok(vec![start(key.map(str::to_owned), options).await?]),
        };
        let trigger = options
            .identity
            .actor
            .as_ref()
            .map_or_else(|| "a trigger".to_owned(), |actor| actor.describe());
        let subscriptions = self.subscriptions(Some(slug)).await?;
        let mut started = Vec::new();
        for subscription in subscriptions.iter().filter(|s| !s.paused) {
            if let Err(violation) = validator.validate(&subscription.config) {
                tracing::error!(
                    workflow = slug,
                    subscription = %subscription.id,
                    %trigger,
                    "subscription skipped: its config no longer fits the workflow's \
                     subscription schema ({violation}); delete it and create it again"
                );
                continue;
            }
            let key = key.map(|key| subscriber_key(key, &subscription.id));
            let options = options.clone().subscriber(subscription.subscriber());
            started.push(start(key, options).await?);
        }
        if started.is_empty() {
            tracing::info!(
                workflow = slug,
                %trigger,
                subscriptions = subscriptions.len(),
                "subscribable workflow has no active subscription: the trigger started no run"
            );
        }
        Ok(started)
    }

    /// [`Engine::start_occurrence_with`] starting each run with
    /// [`Engine::start_once_with`] under its key (a trigger occurrence always has one), with
    /// `input`.
    ///
    /// # Errors
    /// As [`Engine::start_occurrence_with`].
    pub(crate) async fn start_occurrence(
        &self,
        slug: &str,
        input: Value,
        trigger: Trigger,
        key: &str,
        options: StartOptions,
    ) -> Result<Vec<(RunId, bool)>, EngineError> {
        self.start_occurrence_with(slug, Some(key), options, |key, options| {
            let input = input.clone();
            async move {
                let key = key.unwrap_or_default();
                self.start_once_with(slug, input, trigger, &key, &options)
                    .await
            }
        })
        .await
    }
}
