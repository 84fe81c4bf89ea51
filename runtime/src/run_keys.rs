//! The keys callers name runs by: idempotency keys and business keys (their rules, and
//! the `create_run_once` keys they are stored under), and finding the run that holds a
//! business key. Below the engine and the workflow context, which both use it.

use crate::error::EngineError;
use crate::event::RunId;
use crate::run_env::RunEnv;

/// The longest idempotency or business key accepted, in bytes.
pub(crate) const MAX_KEY_LEN: usize = 255;

/// Checks a key named `what` (`idempotency key`, `business key`): 1 to
/// [`MAX_KEY_LEN`] bytes of printable ASCII (space to `~`), not only spaces.
///
/// # Errors
/// What is wrong with it, as a sentence for the caller.
pub(crate) fn check_key(what: &str, key: &str) -> Result<(), String> {
    if key.trim().is_empty() {
        return Err(format!(
            "the {what} is empty; send a unique value per intended run, such as a UUID"
        ));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(format!(
            "the {what} is {} bytes; the longest accepted is {MAX_KEY_LEN} \
             (a UUID is 36)",
            key.len()
        ));
    }
    if let Some(bad) = key.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(format!(
            "the {what} contains {bad:?}; use printable ASCII only (letters, digits, \
             punctuation), such as a UUID"
        ));
    }
    Ok(())
}

/// The `create_run_once` key of business key `key` of workflow `slug`.
pub(crate) fn business_key(slug: &str, key: &str) -> String {
    format!("business:{slug}:{key}")
}

/// Checks a business key: as an idempotency key, 1 to 255 bytes of printable ASCII.
///
/// # Errors
/// What is wrong with it, as a sentence for the caller.
pub(crate) fn check_business_key(key: &str) -> Result<(), String> {
    check_key("business key", key)
}

/// The run of workflow `slug` that holds business key `key`.
///
/// # Errors
/// [`EngineError::Serde`] for a malformed key; [`EngineError::UnknownKey`] when no run
/// holds it; store failures.
pub(crate) async fn run_id_for_key(
    env: &RunEnv,
    slug: &str,
    key: &str,
) -> Result<RunId, EngineError> {
    check_business_key(key).map_err(EngineError::Serde)?;
    env.store
        .run_for_key(&business_key(slug, key))
        .await?
        .ok_or_else(|| EngineError::UnknownKey {
            workflow: slug.to_owned(),
            key: key.to_owned(),
        })
}
