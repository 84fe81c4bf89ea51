//! [`StoredCredentials`]: credentials kept as store documents, encrypted at rest.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::{CredentialError, CredentialInfo, CredentialStore, Secret, check_name};
use crate::identity::Scope;
use crate::store::{Put, SharedStore};

/// The environment variable that holds the key credentials are encrypted with: 32 bytes,
/// base64 (`openssl rand -base64 32`).
pub const SECRETS_KEY_ENV: &str = "REPRISE_SECRETS_KEY";

/// The document kind credentials are kept under.
pub(crate) const DOCUMENT_KIND: &str = "credential";

/// The algorithm named in every stored credential.
const ALGORITHM: &str = "chacha20poly1305";

/// The key [`StoredCredentials`] encrypts with: 32 bytes, zeroed when dropped. Prints as
/// `SecretsKey(***)`.
#[derive(Clone)]
pub struct SecretsKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey(***)")
    }
}

impl SecretsKey {
    /// The key `bytes`.
    pub fn new(bytes: [u8; 32]) -> SecretsKey {
        SecretsKey(Zeroizing::new(bytes))
    }

    /// A fresh random key (tests; a deployment keeps one key in `REPRISE_SECRETS_KEY`).
    pub fn random() -> SecretsKey {
        SecretsKey::new(rand::random())
    }

    /// The key as standard base64 (what `REPRISE_SECRETS_KEY` holds).
    pub fn to_base64(&self) -> String {
        STANDARD.encode(*self.0)
    }

    /// Decodes a key written as base64 (standard or URL-safe, padded or not), as
    /// `REPRISE_SECRETS_KEY` holds it.
    ///
    /// # Errors
    /// [`CredentialError::Config`] naming `REPRISE_SECRETS_KEY` when the text is not
    /// base64 or does not decode to exactly 32 bytes (the message never quotes the text).
    pub fn from_base64(text: &str) -> Result<SecretsKey, CredentialError> {
        let text = text.trim();
        let bytes = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(text).ok())
            .map(Zeroizing::new)
            .ok_or_else(|| {
                CredentialError::Config(format!(
                    "{SECRETS_KEY_ENV} is not base64: it must hold 32 random bytes in base64; \
                     make one with `openssl rand -base64 32`"
                ))
            })?;
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            CredentialError::Config(format!(
                "{SECRETS_KEY_ENV} decodes to {} bytes; it must be exactly 32 (make one with \
                 `openssl rand -base64 32`)",
                bytes.len()
            ))
        })?;
        Ok(SecretsKey::new(key))
    }

    /// The key in `REPRISE_SECRETS_KEY`, or `None` when it is unset or empty.
    ///
    /// # Errors
    /// As [`SecretsKey::from_base64`].
    pub fn from_env() -> Result<Option<SecretsKey>, CredentialError> {
        match std::env::var(SECRETS_KEY_ENV) {
            Ok(text) if !text.trim().is_empty() => SecretsKey::from_base64(&text).map(Some),
            _ => Ok(None),
        }
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(&(*self.0).into())
    }
}

/// Credentials kept in the engine's store as documents of kind `credential`, key
/// `<scope>/<name>` (`user:ada/github`), encrypted at rest with ChaCha20-Poly1305
/// (RFC 8439, the RustCrypto `chacha20poly1305` crate) under a [`SecretsKey`].
///
/// A document is `{"v": 1, "alg": "chacha20poly1305", "nonce": <base64 of 12 random
/// bytes>, "ciphertext": <base64>}`; the associated data is
/// `reprise-credential/v1\n<scope>\n<name>`, so a document copied to another scope or name
/// fails to decrypt instead of handing one user's secret to another. A document that does
/// not decrypt (another key, an altered or moved row) fails the look-up with an error
/// naming the credential, its scope and `REPRISE_SECRETS_KEY`.
///
/// Needs a store that keeps documents (memory, SQLite, Postgres).
#[derive(Clone)]
pub struct StoredCredentials {
    store: SharedStore,
    key: SecretsKey,
}

impl std::fmt::Debug for StoredCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCredentials").finish_non_exhaustive()
    }
}

impl StoredCredentials {
    /// Credentials in `store`, encrypted with `key`.
    pub fn new(store: SharedStore, key: SecretsKey) -> StoredCredentials {
        StoredCredentials { store, key }
    }

    /// The document key of credential `name` in `scope`.
    pub fn document_key(scope: &Scope, name: &str) -> String {
        format!("{scope}/{name}")
    }

    fn aad(scope: &Scope, name: &str) -> String {
        format!("reprise-credential/v1\n{scope}\n{name}")
    }

    fn seal(&self, scope: &Scope, name: &str, value: &Secret) -> Result<Value, CredentialError> {
        let nonce: [u8; 12] = rand::random();
        let aad = Self::aad(scope, name);
        let ciphertext = self
            .key
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: value.expose().as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| {
                CredentialError::Config(format!(
                    "credential `{name}` in `{scope}` could not be encrypted"
                ))
            })?;
        Ok(json!({
            "v": 1,
            "alg": ALGORITHM,
            "nonce": STANDARD.encode(nonce),
            "ciphertext": STANDARD.encode(ciphertext),
        }))
    }

    fn open(&self, scope: &Scope, name: &str, document: &Value) -> Result<Secret, CredentialError> {
        let malformed = |what: &str| {
            CredentialError::Unreadable(format!(
                "stored credential `{name}` in `{scope}` is malformed ({what}); set it again \
                 with `credentials set {name} --scope {scope}`"
            ))
        };
        let field = |key: &str| {
            document
                .get(key)
                .and_then(Value::as_str)
                .and_then(|text| STANDARD.decode(text).ok())
                .ok_or_else(|| malformed(&format!("no base64 `{key}`")))
        };
        if document.get("alg").and_then(Value::as_str) != Some(ALGORITHM) {
            return Err(malformed("unknown `alg`"));
        }
        let nonce = field("nonce")?;
        if nonce.len() != 12 {
            return Err(malformed("the nonce is not 12 bytes"));
        }
        let ciphertext = field("ciphertext")?;
        let aad = Self::aad(scope, name);
        let plain = self
            .key
            .cipher()
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| {
                CredentialError::Unreadable(format!(
                    "stored credential `{name}` in `{scope}` does not decrypt with \
                     {SECRETS_KEY_ENV}: it was written with another key, or its row was \
                     altered or copied from another scope or name; set {SECRETS_KEY_ENV} to \
                     the key it was written with, or set the credential again"
                ))
            })?;
        let text = std::str::from_utf8(&plain).map_err(|_| malformed("not UTF-8"))?;
        Ok(Secret::new(text))
    }
}

#[async_trait::async_trait]
impl CredentialStore for StoredCredentials {
    async fn get(&self, scope: &Scope, name: &str) -> Result<Option<Secret>, CredentialError> {
        check_name(name)?;
        let key = Self::document_key(scope, name);
        match self.store.document(DOCUMENT_KIND, &key).await? {
            None => Ok(None),
            Some(document) => self.open(scope, name, &document.value).map(Some),
        }
    }

    async fn set(&self, scope: &Scope, name: &str, value: &Secret) -> Result<(), CredentialError> {
        check_name(name)?;
        let sealed = self.seal(scope, name, value)?;
        let key = Self::document_key(scope, name);
        self.store
            .put_document(
                DOCUMENT_KIND,
                &key,
                &sealed,
                Put::Upsert,
                chrono::Utc::now(),
            )
            .await?;
        Ok(())
    }

    async fn delete(&self, scope: &Scope, name: &str) -> Result<bool, CredentialError> {
        check_name(name)?;
        let key = Self::document_key(scope, name);
        Ok(self.store.delete_document(DOCUMENT_KIND, &key).await?)
    }

    async fn list(&self, scope: Option<&Scope>) -> Result<Vec<CredentialInfo>, CredentialError> {
        let prefix = scope.map(|s| format!("{s}/")).unwrap_or_default();
        let mut list = Vec::new();
        for document in self.store.documents(DOCUMENT_KIND, &prefix).await? {
            // A key that is not `<scope>/<name>` was not written here: skipped.
            let Some((scope, name)) = document.key.rsplit_once('/') else {
                continue;
            };
            let Ok(scope) = Scope::parse(scope) else {
                continue;
            };
            list.push(CredentialInfo {
                scope,
                name: name.to_owned(),
                updated_at: Some(document.updated_at),
                source: "stored".to_owned(),
            });
        }
        super::sort(&mut list);
        Ok(list)
    }
}
