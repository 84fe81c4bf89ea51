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
    crate::hex::hex(&Sha256::digest(token.as_bytes()))
}

/// What stands for the token of hook `id` in a run's log: `{{reprise:hook-token:<id>}}`.
///
/// Hook tokens exist at rest only as hashes (DESIGN "Reliability and security"): every
/// value a run records (step inputs and outputs, recorded values such as the hook's resume
/// URL, errors, the run's output) is written with each token it holds replaced by this
/// placeholder, and replay puts the token back (it is derived again from the secret, the
/// run id and the hook id), so the body sees the same values live and on replay.
pub(crate) fn token_placeholder(id: &str) -> String {
    format!("{PLACEHOLDER_OPEN}{id}{PLACEHOLDER_CLOSE}")
}

const PLACEHOLDER_OPEN: &str = "{{reprise:hook-token:";
const PLACEHOLDER_CLOSE: &str = "}}";

/// The suffix of the correlation id under which a hook's resume URL is recorded.
pub(crate) const RESUME_URL_SUFFIX: &str = "$resume-url";

/// `value` with every token placeholder replaced by the token it stands for, derived
/// again from `secret` and the run id: what the body saw when it recorded the value.
/// Tokens are derived rather than looked up, so a placeholder recorded by a hook this
/// execution has not re-created (one inside a finished sub-workflow) expands too.
pub(crate) fn expand_placeholders(
    value: &serde_json::Value,
    secret: &[u8],
    run_id: &str,
) -> serde_json::Value {
    let mut value = value.clone();
    edit_strings(&mut value, &mut |text| {
        expand_placeholders_str(text, secret, run_id);
    });
    value
}

/// [`expand_placeholders`] on a string, in place.
pub(crate) fn expand_placeholders_str(text: &mut String, secret: &[u8], run_id: &str) {
    if !text.contains(PLACEHOLDER_OPEN) {
        return;
    }
    let mut out = String::with_capacity(text.len() + 32);
    let mut rest = text.as_str();
    while let Some(start) = rest.find(PLACEHOLDER_OPEN) {
        let after = &rest[start + PLACEHOLDER_OPEN.len()..];
        let Some(end) = after.find(PLACEHOLDER_CLOSE) else {
            break;
        };
        out.push_str(&rest[..start]);
        out.push_str(&hook_token(secret, run_id, &after[..end]));
        rest = &after[end + PLACEHOLDER_CLOSE.len()..];
    }
    out.push_str(rest);
    *text = out;
}

/// Applies `edit` to every string of `value`, object keys included: the one walk behind
/// redaction and expansion.
pub(crate) fn edit_strings(value: &mut serde_json::Value, edit: &mut impl FnMut(&mut String)) {
    use serde_json::Value;
    match value {
        Value::String(text) => edit(text),
        Value::Array(items) => {
            for item in items {
                edit_strings(item, edit);
            }
        }
        Value::Object(map) => {
            let renamed: Vec<(String, String)> = map
                .keys()
                .filter_map(|key| {
                    let mut new = key.clone();
                    edit(&mut new);
                    (new != *key).then(|| (key.clone(), new))
                })
                .collect();
            for (old, new) in renamed {
                if let Some(item) = map.remove(&old) {
                    map.insert(new, item);
                }
            }
            for item in map.values_mut() {
                edit_strings(item, edit);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// The hook tokens one execution of a run has handed out, each with its placeholder: the
/// redaction of what the run records, and its reversal on replay.
#[derive(Debug, Default)]
pub(crate) struct IssuedTokens {
    /// `(token, placeholder)` pairs, in the order the body created its hooks.
    pairs: std::sync::RwLock<Vec<(String, String)>>,
    /// Whether `pairs` holds any: read on every recorded step, so a run without hooks pays
    /// one relaxed load, not a lock.
    any: std::sync::atomic::AtomicBool,
}

impl IssuedTokens {
    /// Remembers `token`, the token of hook `id`.
    pub(crate) fn issue(&self, token: &str, id: &str) {
        let mut pairs = self.pairs.write().unwrap_or_else(|p| p.into_inner());
        if !pairs.iter().any(|(known, _)| known == token) {
            pairs.push((token.to_owned(), token_placeholder(id)));
            self.any.store(true, std::sync::atomic::Ordering::Release);
        }
    }

    /// Whether no hook was created yet (then there is nothing to redact or expand).
    pub(crate) fn is_empty(&self) -> bool {
        !self.any.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Replaces every issued token in the strings of `value` by its placeholder.
    pub(crate) fn redact(&self, value: &mut serde_json::Value) {
        let pairs = self.pairs.read().unwrap_or_else(|p| p.into_inner());
        edit_strings(value, &mut |text| {
            for (token, placeholder) in pairs.iter() {
                if text.contains(token.as_str()) {
                    *text = text.replace(token.as_str(), placeholder);
                }
            }
        });
    }
}

/// Redacts, in events read from a log, the token of every hook the log created: the
/// second line of defence for logs written before tokens were redacted at append (and for
/// any event not written through a run's own appends). Views of a log (`runs export`,
/// `GET /runs/{id}/events`) pass through it.
pub(crate) fn redact_log(secret: &[u8], run_id: &str, events: &mut [crate::event::Event]) {
    let issued = IssuedTokens::default();
    for event in events.iter() {
        if event.event.kind == crate::event::EventKind::HookCreated
            && let Some(id) = &event.event.correlation_id
        {
            issued.issue(&hook_token(secret, run_id, id), id);
        }
    }
    if issued.is_empty() {
        return;
    }
    for event in events {
        issued.redact(&mut event.event.payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redaction_replaces_tokens_everywhere_and_expansion_restores_them() {
        let token = hook_token(&[7; 32], "run-1", "hook#0");
        let issued = IssuedTokens::default();
        issued.issue(&token, "hook#0");
        let original = json!({
            "url": format!("http://x/hooks/{token}"),
            "list": [token.clone(), 1, null],
            token.clone(): "as a key",
        });
        let mut value = original.clone();
        issued.redact(&mut value);
        let text = value.to_string();
        assert!(!text.contains(&token), "{text}");
        assert!(text.contains("{{reprise:hook-token:hook#0}}"), "{text}");
        assert_eq!(expand_placeholders(&value, &[7; 32], "run-1"), original);
    }
}
