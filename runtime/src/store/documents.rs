//! Documents: named JSON values of one kind that the store keeps for the engine's own
//! data beside runs (credentials encrypted at rest, API tokens by hash, subscriptions).
//! The store keeps them opaque; their owners check and read them. See
//! [`super::Store::put_document`].

use chrono::{DateTime, Utc};
use serde::Serialize;

/// One stored document: `value` under (`kind`, `key`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Document {
    /// What it is (`credential`, `api_token`, `subscription`): 1 to 64 bytes.
    pub kind: String,
    /// Its key within the kind, unique there: 1 to 512 bytes.
    pub key: String,
    /// The document.
    pub value: serde_json::Value,
    /// When it was first stored (UTC).
    pub created_at: DateTime<Utc>,
    /// When it was last written (UTC).
    pub updated_at: DateTime<Utc>,
}

/// How [`super::Store::put_document`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Put {
    /// Only if no document has the key (`false`, nothing written, when one has): of two
    /// concurrent creations of one key, exactly one writes.
    Create,
    /// Only if a document has the key (`false`, nothing written, when none has); it keeps
    /// its `created_at`.
    Replace,
    /// Either way (always `true`).
    Upsert,
}

/// Checks a document's kind and key.
///
/// # Errors
/// A store error naming the bad part.
pub(crate) fn check(kind: &str, key: &str) -> Result<(), crate::EngineError> {
    if kind.is_empty() || kind.len() > 64 || key.is_empty() || key.len() > 512 {
        return Err(super::StoreError::new(
            super::StoreErrorKind::Config,
            format!(
                "document kind `{kind}` / key `{key}`: a kind is 1 to 64 bytes and a key 1 to 512"
            ),
        )
        .into());
    }
    Ok(())
}

/// The error of a store that keeps no documents.
pub(crate) fn unsupported() -> crate::EngineError {
    super::StoreError::new(
        super::StoreErrorKind::Config,
        "this store keeps no documents (credentials, API tokens, subscriptions); use the \
         memory, SQLite or Postgres store",
    )
    .into()
}
