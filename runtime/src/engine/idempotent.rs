//! Idempotent starts: [`Engine::start_idempotent`], what `Idempotency-Key` on
//! `POST /workflows/{slug}` and `workflows run --idempotency-key` use.

use serde_json::Value;

use super::Engine;
use crate::error::EngineError;
use crate::event::{RunId, Trigger};

/// Checks an idempotency key: 1 to [`crate::run_keys::MAX_KEY_LEN`] bytes of printable ASCII
/// (space to `~`), not only spaces.
///
/// # Errors
/// What is wrong with it, as a sentence for the caller.
pub(crate) fn check_idempotency_key(key: &str) -> Result<(), String> {
    crate::run_keys::check_key("idempotency key", key)
}

impl Engine {
    /// Starts a run of workflow `slug` once per idempotency `key`: the first call validates
    /// `input` and creates a `queued` run; a later call with the same `key` and the same
    /// input creates nothing and returns that run. Returns the run's id and whether this
    /// call created it. A key is 1 to 255 bytes of printable ASCII (a UUID fits). Keys are scoped per workflow (the same key may start one run of each
    /// workflow) and kept as long as the run is; two concurrent calls with one key create
    /// one run, across processes sharing the store.
    ///
    /// A client that lost the answer to a start (a cut connection, a timeout) retries with
    /// the same key and gets the same run instead of a second one. [`Engine::start_with`]
    /// combines a key with a start time.
    ///
    /// # Errors
    /// As [`Engine::start_json`] (invalid input is reported even when the key is taken);
    /// [`EngineError::Serde`] for a malformed key (empty, over 255 bytes, or not printable
    /// ASCII);
    /// [`EngineError::IdempotencyConflict`] when `key` already started a run of this
    /// workflow with a different input.
    pub async fn start_idempotent(
        &self,
        slug: &str,
        input: Value,
        trigger: Trigger,
        key: &str,
    ) -> Result<(RunId, bool), EngineError> {
        let options = super::StartOptions::new().idempotency_key(key);
        self.start_with(slug, input, trigger, options).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn keys_are_short_printable_ascii() {
        assert!(check_idempotency_key("0190a7c2-6f1e-7d3a-9c1b-2f4e5a6b7c8d").is_ok());
        assert!(check_idempotency_key("order 42 / retry").is_ok());
        assert!(check_idempotency_key("").is_err());
        assert!(check_idempotency_key("   ").is_err());
        assert!(check_idempotency_key(&"k".repeat(256)).is_err());
        assert!(check_idempotency_key(&"k".repeat(255)).is_ok());
        assert!(check_idempotency_key("tab\there").is_err());
        assert!(check_idempotency_key("clé").is_err());
    }
}
