//! [`Engine::signal`] and [`Engine::signal_by_key`]: signals from outside a run, over the
//! delivery path of [`crate::delivery`].

use serde_json::Value;

use super::Engine;
use crate::delivery::deliver;
use crate::error::EngineError;
use crate::event::RunId;
use crate::message::Posted;
use crate::step::MessageKind;

impl Engine {
    /// Delivers signal `name` with `payload` to run `run`: a body waiting in
    /// `ctx.signal::<T>(name).recv()` receives it (signals of one name are received in the
    /// order they were delivered; one sent before the run waits is kept until it does).
    /// With an `idempotency_key`, a retried delivery with the same key posts nothing and
    /// returns the first one's [`Posted`] (`duplicate: true`).
    ///
    /// ```no_run
    /// # async fn demo(engine: reprise::Engine, run: reprise::RunId) -> Result<(), reprise::EngineError> {
    /// let posted = engine
    ///     .signal(&run, "paid", serde_json::json!({"amount_cents": 1200}), Some("pay-42"))
    ///     .await?;
    /// println!("signal #{} (duplicate: {})", posted.seq, posted.duplicate);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`EngineError::UnknownRun`] (404); [`EngineError::UnknownMessage`] (404) when the
    /// run's workflow (and the sub-workflows it calls) receives no signal `name`;
    /// [`EngineError::InvalidState`] (409) when the run has ended;
    /// [`EngineError::Schema`] (422) naming the JSON pointers that do not match `T`;
    /// [`EngineError::PayloadTooLarge`] (413); [`EngineError::Serde`] for a malformed
    /// idempotency key; store failures. Nothing is delivered on any error.
    pub async fn signal(
        &self,
        run: &RunId,
        name: &str,
        payload: Value,
        idempotency_key: Option<&str>,
    ) -> Result<Posted, EngineError> {
        if let Some(key) = idempotency_key {
            super::idempotent::check_idempotency_key(key).map_err(EngineError::Serde)?;
        }
        let dedupe = idempotency_key.map(|key| format!("signal:{name}:{key}"));
        deliver(self.env(), run, MessageKind::Signal, name, payload, dedupe)
            .await
            .map(|(posted, _)| posted)
    }

    /// [`Engine::signal`] to the run of workflow `slug` that holds business key `key`
    /// (see [`Engine::run_by_key`]).
    ///
    /// # Errors
    /// [`EngineError::UnknownKey`] (404) when no run of `slug` holds `key`; otherwise as
    /// [`Engine::signal`].
    pub async fn signal_by_key(
        &self,
        slug: &str,
        key: &str,
        name: &str,
        payload: Value,
        idempotency_key: Option<&str>,
    ) -> Result<Posted, EngineError> {
        let run = crate::run_keys::run_id_for_key(self.env(), slug, key).await?;
        self.signal(&run, name, payload, idempotency_key).await
    }
}
