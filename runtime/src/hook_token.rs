//! Hook tokens: what a delivery presents to resume a hook (`POST /hooks/{token}`).
//!
//! A token is the run id plus a 256-bit HMAC-SHA256 (RFC 2104) of
//! `run-id/correlation-id` under the engine's hook secret, base64url-encoded (RFC 4648
//! §5, no padding): unguessable without the secret, and the same on every replay, so a
//! step that sent the resume URL replays with an identical input. The log stores only
//! the token's SHA-256 hash.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Token layout: base64url (no padding) of `[format byte][run id][32-byte MAC]`, where the
/// MAC is HMAC-SHA256 of `run-id/correlation-id` under the engine's secret. The run id
/// inside lets a delivery find its run without an index; the MAC makes it unguessable.
/// Format 1: the run id as the 16 bytes of a UUID; format 2: one length byte, then its UTF-8.
const TOKEN_UUID: u8 = 1;
const TOKEN_TEXT: u8 = 2;

fn hook_mac(secret: &[u8], run_id: &str, id: &str) -> [u8; 32] {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return [0; 32];
    };
    mac.update(run_id.as_bytes());
    mac.update(b"/");
    mac.update(id.as_bytes());
    mac.finalize().into_bytes().into()
}

/// The token of hook `id` of run `run_id` under `secret`.
pub(crate) fn hook_token(secret: &[u8], run_id: &str, id: &str) -> String {
    let mut bytes = Vec::with_capacity(64);
    match uuid::Uuid::parse_str(run_id) {
        Ok(uuid) if uuid.hyphenated().to_string() == run_id => {
            bytes.push(TOKEN_UUID);
            bytes.extend_from_slice(uuid.as_bytes());
        }
        _ => {
            bytes.push(TOKEN_TEXT);
            let text = &run_id.as_bytes()[..run_id.len().min(255)];
            bytes.push(text.len() as u8);
            bytes.extend_from_slice(text);
        }
    }
    bytes.extend_from_slice(&hook_mac(secret, run_id, id));
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The run id a token names, if the token is well-formed (says nothing about its validity).
pub(crate) fn token_run_id(token: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    let (run_id, rest) = match *bytes.first()? {
        TOKEN_UUID => {
            let uuid = uuid::Uuid::from_slice(bytes.get(1..17)?).ok()?;
            (uuid.hyphenated().to_string(), bytes.get(17..)?)
        }
        TOKEN_TEXT => {
            let len = usize::from(*bytes.get(1)?);
            let text = std::str::from_utf8(bytes.get(2..2 + len)?).ok()?;
            (text.to_owned(), bytes.get(2 + len..)?)
        }
        _ => return None,
    };
    (rest.len() == 32).then_some(run_id)
}

/// The hash under which a token is stored: SHA-256, hex.
pub(crate) fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
