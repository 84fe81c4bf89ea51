//! Masking: every credential value resolved during one execution of a run is remembered,
//! and the strings of what that execution records afterwards — step inputs and outputs,
//! error messages and details, the run's output and error — have each occurrence
//! replaced by `***` before they are written (as GitHub Actions masks secrets in logs).
//!
//! Values shorter than [`MIN_MASKED_LEN`] bytes are not masked: they would blank out
//! ordinary words and numbers in everything the run records.

use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;
use zeroize::Zeroizing;

/// What a masked value is replaced with.
pub const MASK: &str = "***";

/// The shortest value that is masked, in bytes.
pub const MIN_MASKED_LEN: usize = 4;

/// The credential values one execution of a run has resolved (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Masks {
    values: RwLock<Vec<Zeroizing<String>>>,
    /// Whether `values` holds any: read on every append, so a run without credentials pays
    /// one load, not a lock.
    any: AtomicBool,
}

impl Masks {
    /// Remembers `value` (a no-op for one shorter than [`MIN_MASKED_LEN`]).
    pub(crate) fn add(&self, value: &str) {
        if value.len() < MIN_MASKED_LEN {
            return;
        }
        let mut values = self.values.write().unwrap_or_else(|p| p.into_inner());
        if !values.iter().any(|v| v.as_str() == value) {
            values.push(Zeroizing::new(value.to_owned()));
            // Longest first, so that a value containing another is masked whole.
            values.sort_by_key(|v| std::cmp::Reverse(v.len()));
            self.any.store(true, Ordering::Release);
        }
    }

    /// Whether nothing was resolved yet (then there is nothing to mask).
    pub(crate) fn is_empty(&self) -> bool {
        !self.any.load(Ordering::Acquire)
    }

    /// `text` with every remembered value replaced by `***`.
    pub(crate) fn mask_str(&self, text: &mut String) {
        if self.is_empty() {
            return;
        }
        let values = self.values.read().unwrap_or_else(|p| p.into_inner());
        for value in values.iter() {
            if text.contains(value.as_str()) {
                *text = text.replace(value.as_str(), MASK);
            }
        }
    }

    /// Masks every string in `value` (object keys too).
    pub(crate) fn mask_value(&self, value: &mut Value) {
        if self.is_empty() {
            return;
        }
        crate::hook_token::edit_strings(value, &mut |text| self.mask_str(text));
    }

    /// Masks an action error's message and details.
    pub(crate) fn mask_error(&self, error: &mut crate::ActionError) {
        if self.is_empty() {
            return;
        }
        self.mask_str(&mut error.message);
        if let Some(details) = &mut error.details {
            self.mask_value(details);
        }
    }

    /// Masks the parts of an encoded event payload (or a run update's output or error)
    /// that hold what user code produced: `input`, `output`, `value`, and `error`'s
    /// `message` and `details`. Structural fields (kinds, callees, ids) are left alone,
    /// so the payload still decodes.
    pub(crate) fn mask_payload(&self, payload: &mut Value) {
        if self.is_empty() {
            return;
        }
        let Some(map) = payload.as_object_mut() else {
            return;
        };
        for key in ["input", "output", "value", "result"] {
            if let Some(part) = map.get_mut(key) {
                self.mask_value(part);
            }
        }
        if let Some(error) = map.get_mut("error") {
            self.mask_error_value(error);
        }
    }

    /// Masks an encoded error's `message` and `details`.
    pub(crate) fn mask_error_value(&self, error: &mut Value) {
        if self.is_empty() {
            return;
        }
        let Some(error) = error.as_object_mut() else {
            return;
        };
        if let Some(Value::String(message)) = error.get_mut("message") {
            self.mask_str(message);
        }
        if let Some(details) = error.get_mut("details") {
            self.mask_value(details);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn values_are_masked_in_outputs_and_errors_only() {
        let masks = Masks::default();
        let mut untouched = json!({"output": "tok_secret"});
        masks.mask_payload(&mut untouched);
        assert_eq!(untouched, json!({"output": "tok_secret"}));

        masks.add("tok_secret");
        masks.add("tok"); // too short: never masked
        let mut payload = json!({
            "kind": "action",
            "output": {"header": "Bearer tok_secret", "tok_secret": [1, "xtok_secretx"]},
            "error": {"kind": "http", "message": "401 for tok_secret", "details": {"k": "tok_secret"}},
        });
        masks.mask_payload(&mut payload);
        assert_eq!(
            payload,
            json!({
                "kind": "action",
                "output": {"header": "Bearer ***", "***": [1, "x***x"]},
                "error": {"kind": "http", "message": "401 for ***", "details": {"k": "***"}},
            })
        );
    }

    #[test]
    fn a_longer_value_is_masked_whole() {
        let masks = Masks::default();
        masks.add("abcd");
        masks.add("abcdefgh");
        let mut text = "abcdefgh abcd".to_owned();
        masks.mask_str(&mut text);
        assert_eq!(text, "*** ***");
    }
}
