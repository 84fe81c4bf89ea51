//! Business keys: a run named by a key of the caller's domain (`order-42`), one run per
//! workflow and key ([`Engine::start_with_key`], [`crate::StartOptions::key`]), found again
//! with [`Engine::run_by_key`].
//!
//! A key is a [`crate::store::Store::create_run_once`] key in its own namespace,
//! `business:<slug>:<key>` (idempotency keys are `idempotency:<slug>:<key>`: the two never
//! meet), so two concurrent starts with one key create one run, across processes. The key
//! is recorded in the run's `run_created` event (`"key"`). Continue-as-new re-points the
//! key at the run that continues ([`crate::store::Store::set_run_key`]).

use serde_json::Value;

use super::{Engine, StartOptions};
use crate::error::EngineError;
use crate::event::{EventKind, EventPayload, NewEvent, RunId, RunRecord, Trigger};
use crate::run_keys::{business_key, check_business_key, run_id_for_key};

/// The business key recorded in a run's `run_created` event (event 0 of `events`), if any.
pub fn key_of(events: &[crate::event::Event]) -> Option<String> {
    let created = events
        .first()
        .filter(|e| e.event.kind == EventKind::RunCreated)?;
    match created.event.decode_payload() {
        Ok(EventPayload::RunCreated { key, .. }) => key,
        _ => None,
    }
}

/// Records business key `key` in a `run_created` event.
fn stamp_key(created: &mut NewEvent, key: &str) {
    if let Some(payload) = created.payload.as_object_mut() {
        payload.insert(
            crate::event::field::KEY.to_owned(),
            Value::String(key.to_owned()),
        );
    }
}

impl Engine {
    /// Starts a run of workflow `slug` named by business key `key`, unless a run of `slug`
    /// already holds the key: then nothing is created and that run is returned. Returns
    /// the run's id and whether this call created it. Same as [`Engine::start_with`] with
    /// [`StartOptions::key`].
    ///
    /// ```no_run
    /// # async fn demo(engine: reprise::Engine) -> Result<(), reprise::EngineError> {
    /// let input = serde_json::json!({"order": 42});
    /// let (run, created) = engine
    ///     .start_with_key("fulfil-order", input, reprise::Trigger::Code, "order-42")
    ///     .await?;
    /// assert_eq!(engine.run_by_key("fulfil-order", "order-42").await?.id, run);
    /// # let _ = created; Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Engine::start_json`] (the input is validated even when the key is taken);
    /// [`EngineError::Serde`] for a malformed key (empty, over 255 bytes, not printable
    /// ASCII).
    pub async fn start_with_key(
        &self,
        slug: &str,
        input: Value,
        trigger: Trigger,
        key: &str,
    ) -> Result<(RunId, bool), EngineError> {
        self.start_with(slug, input, trigger, StartOptions::new().key(key))
            .await
    }

    /// The run of workflow `slug` that holds business key `key` (the run that continued it,
    /// after a continue-as-new).
    ///
    /// # Errors
    /// [`EngineError::UnknownKey`] when no run of `slug` holds `key`;
    /// [`EngineError::Serde`] for a malformed key; store failures.
    pub async fn run_by_key(&self, slug: &str, key: &str) -> Result<RunRecord, EngineError> {
        let id = run_id_for_key(self.env(), slug, key).await?;
        self.get_run(&id).await
    }

    /// [`Engine::start_with`] for options with a business key (taken out of `options`).
    pub(super) async fn start_keyed(
        &self,
        slug: &str,
        input: Value,
        trigger: Trigger,
        options: StartOptions,
        key: String,
    ) -> Result<(RunId, bool), EngineError> {
        check_business_key(&key).map_err(EngineError::Serde)?;
        if options.idempotency_key.is_some() {
            return Err(EngineError::Serde(
                "a start takes a business key or an idempotency key, not both: the business \
                 key already returns the existing run; drop the idempotency key"
                    .to_owned(),
            ));
        }
        let (record, mut created) = self.new_run_at(slug, input, trigger, &options)?;
        stamp_key(&mut created, &key);
        let id = record.id.clone();
        let scoped = business_key(slug, &key);
        if let Some(existing) = self
            .env()
            .store
            .create_run_once(&scoped, record, created)
            .await?
        {
            return Ok((existing, false));
        }
        self.env().announce_created(&id, slug);
        Ok((id, true))
    }
}
