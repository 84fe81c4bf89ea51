//! Payload limits (DESIGN "Reliability and security"; issue 15 item 9): the largest
//! workflow input, step input or output, hook payload and workflow output a run may
//! record ([`EngineBuilder::max_payload_bytes`]), and the log size past which a run is
//! logged as a warning ([`EngineBuilder::history_warning_bytes`]).
//!
//! Sizes are bytes of serialized JSON, counted without building the text. Each check runs
//! before anything is written, in one place per kind of payload:
//! - a workflow input: where every start path builds the run (`Engine::new_run_at`):
//!   code, CLI, HTTP, cron, webhook and poll triggers;
//! - a step input: in the recorder, when a step is about to run live (`RunState::enter`);
//! - a step output (actions, LLM steps, agents, sub-workflows): in the recorder, where
//!   every step outcome is recorded (`Slot::finish_step`);
//! - a hook payload: at delivery (`Engine::resume_hook`), before the append;
//! - a workflow output: where the run's completion is recorded (`Engine::finish`).
//!
//! Over the limit, a start or a hook delivery is refused with
//! [`EngineError::PayloadTooLarge`] (HTTP 413, CLI exit 2); inside a run the step (or the
//! run) fails with error kind [`kinds::PAYLOAD_TOO_LARGE`], never retried, unless the
//! body handles it. Payloads already recorded replay whatever the limit is now.

use std::io;

use serde_json::Value;

use crate::engine::{BuilderParts, EngineBuilder};
use crate::error::{ActionError, EngineError, kinds};
use crate::registry::Registry;

/// The default [`EngineBuilder::max_payload_bytes`]: 2 MiB.
pub const DEFAULT_MAX_PAYLOAD_BYTES: u64 = 2 * 1024 * 1024;

/// The default [`EngineBuilder::history_warning_bytes`]: 8 MiB.
pub const DEFAULT_HISTORY_WARNING_BYTES: u64 = 8 * 1024 * 1024;

/// The limits an engine was built with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PayloadLimits {
    /// The largest payload, in bytes of JSON.
    pub(crate) max_payload_bytes: u64,
    /// The log size (bytes of event payload JSON) past which a run is logged once as a
    /// warning; 0 turns the warning off.
    pub(crate) history_warning_bytes: u64,
}

impl Default for PayloadLimits {
    fn default() -> Self {
        PayloadLimits {
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            history_warning_bytes: DEFAULT_HISTORY_WARNING_BYTES,
        }
    }
}

/// Nothing to check against the registry.
fn check_limits(_: &Registry, _: &BuilderParts) -> Result<(), EngineError> {
    Ok(())
}

impl EngineBuilder {
    fn limits_mut(&mut self) -> &mut PayloadLimits {
        self.extension_mut::<PayloadLimits>(check_limits)
    }

    /// The largest payload a run may record, in bytes of serialized JSON (default 2 MiB,
    /// [`DEFAULT_MAX_PAYLOAD_BYTES`]): workflow inputs (every start path), step inputs and
    /// outputs (actions, LLM steps, agents, sub-workflows), hook payloads and workflow
    /// outputs. Checked before anything is written. A start or hook delivery over it is
    /// refused with [`EngineError::PayloadTooLarge`] (HTTP 413, CLI exit 2); inside a run,
    /// the step (or the run) fails with the non-retryable error kind
    /// [`kinds::PAYLOAD_TOO_LARGE`] naming it, the size and the limit, unless the body
    /// handles the error. Large data belongs elsewhere (a file, a bucket), with a
    /// reference in the payload. A `bytes` of 0 makes [`EngineBuilder::build`] fail.
    pub fn max_payload_bytes(mut self, bytes: u64) -> Self {
        if bytes == 0 {
            self.error.get_or_insert(EngineError::Config(
                "max_payload_bytes of 0 would refuse every payload (even `null`); give a \
                 size in bytes such as 2 * 1024 * 1024 (the default)"
                    .into(),
            ));
            return self;
        }
        self.limits_mut().max_payload_bytes = bytes;
        self
    }

    /// When a run's log grows past `bytes` (of event payload JSON, counted approximately:
    /// string escapes are not counted; default 8 MiB, [`DEFAULT_HISTORY_WARNING_BYTES`]),
    /// a warning naming the run is logged, once per
    /// run: every execution replays the whole log, so a log this big makes each resume
    /// slow (split the work into sub-workflows, or keep large data out of step outputs).
    /// 0 turns the warning off.
    pub fn history_warning_bytes(mut self, bytes: u64) -> Self {
        self.limits_mut().history_warning_bytes = bytes;
        self
    }
}

/// The limits set on a builder (its parts), defaults unless set.
pub(crate) fn limits_of(parts: &BuilderParts) -> PayloadLimits {
    parts
        .get(&std::any::TypeId::of::<PayloadLimits>())
        .and_then(|part| part.downcast_ref::<PayloadLimits>())
        .copied()
        .unwrap_or_default()
}

impl PayloadLimits {
    /// The limits of the engine whose runs see `env`.
    pub(crate) fn of(env: &crate::run_env::RunEnv) -> PayloadLimits {
        env.service::<PayloadLimits>().copied().unwrap_or_default()
    }
}

impl PayloadLimits {
    /// `Ok` when `value` is within the limit; else [`EngineError::PayloadTooLarge`] naming
    /// `what()` (`the input of workflow \`x\``).
    pub(crate) fn check(
        &self,
        what: impl FnOnce() -> String,
        value: &Value,
    ) -> Result<(), EngineError> {
        match json_len_over(value, self.max_payload_bytes) {
            None => Ok(()),
            Some(size) => Err(EngineError::PayloadTooLarge {
                what: what(),
                size,
                limit: self.max_payload_bytes,
            }),
        }
    }

    /// [`PayloadLimits::check`] as a step's error: kind `payload_too_large`, not
    /// retryable, with `size` and `limit` in its details.
    pub(crate) fn check_step(
        &self,
        what: impl FnOnce() -> String,
        value: &Value,
    ) -> Result<(), ActionError> {
        self.check(what, value).map_err(too_large_error)
    }
}

/// The step error of a [`EngineError::PayloadTooLarge`].
pub(crate) fn too_large_error(error: EngineError) -> ActionError {
    let details = match &error {
        EngineError::PayloadTooLarge { size, limit, .. } => {
            Some(serde_json::json!({ "size": size, "limit": limit }))
        }
        _ => None,
    };
    let error = ActionError::new(kinds::PAYLOAD_TOO_LARGE, error.to_string(), false);
    match details {
        Some(details) => error.with_details(details),
        None => error,
    }
}

/// The size of `value` as compact JSON, in bytes.
pub(crate) fn json_len(value: &Value) -> u64 {
    json_len_capped(value, u64::MAX)
}

/// The size of `value` as compact JSON when it is over `limit` (`Some(size)`), else
/// `None`.
///
/// The check of a value under the limit is what must be cheap (every step's input and
/// output goes through it): [`json_len_bound`] walks the value without serializing it and
/// is exact except for floats, which it counts at their longest. Only a value whose bound
/// is over the limit is serialized to count it exactly.
pub(crate) fn json_len_over(value: &Value, limit: u64) -> Option<u64> {
    let (bound, exact) = json_len_bound(value);
    if bound <= limit {
        return None;
    }
    let size = if exact { bound } else { json_len(value) };
    (size > limit).then_some(size)
}

/// Bytes of `value` as compact JSON (what `serde_json::to_vec` writes), counted by walking
/// it: strings with their escapes, integers by their digits, structure by its
/// punctuation. Floats count as 24 bytes, the longest `serde_json` writes; the flag says
/// whether the value had none, so that the count is exact.
pub(crate) fn json_len_bound(value: &Value) -> (u64, bool) {
    walk(value, string_len)
}

/// About the bytes of `value` as compact JSON, for the history warning: [`json_len_bound`]
/// without looking for escapes in strings (each counts its length and quotes), so that
/// it costs a walk of the structure only; every append of every run goes through it.
pub(crate) fn json_len_estimate(value: &Value) -> u64 {
    walk(value, |s| s.len() as u64 + 2).0
}

/// [`json_len_bound`]'s walk, with `string` the size of a string (values and keys).
fn walk(value: &Value, string: fn(&str) -> u64) -> (u64, bool) {
    match value {
        Value::Null => (4, true),
        Value::Bool(true) => (4, true),
        Value::Bool(false) => (5, true),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => (digits(u), true),
            (None, Some(i)) => (1 + digits(i.unsigned_abs()), true),
            _ => (24, false),
        },
        Value::String(s) => (string(s), true),
        Value::Array(items) => {
            let mut total = 2 + items.len().saturating_sub(1) as u64;
            let mut exact = true;
            for item in items {
                let (len, item_exact) = walk(item, string);
                total = total.saturating_add(len);
                exact &= item_exact;
            }
            (total, exact)
        }
        Value::Object(map) => {
            // `{`, `}`, a `:` per entry and a `,` between entries.
            let mut total = 2 + (2 * map.len()).saturating_sub(1) as u64;
            let mut exact = true;
            for (key, item) in map {
                let (len, item_exact) = walk(item, string);
                total = total.saturating_add(string(key)).saturating_add(len);
                exact &= item_exact;
            }
            (total, exact)
        }
    }
}

/// Decimal digits of `n`.
fn digits(n: u64) -> u64 {
    u64::from(n.checked_ilog10().unwrap_or(0)) + 1
}

/// Bytes of `s` as a JSON string: its quotes, and its escapes as `serde_json` writes them
/// (`\"`, `\\` and `\b \t \n \f \r` take two bytes, other control characters six).
fn string_len(s: &str) -> u64 {
    let extra: u64 = s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | 0x08 | b'\t' | b'\n' | 0x0c | b'\r' => 1,
            0x00..=0x1f => 5,
            _ => 0,
        })
        .sum();
    s.len() as u64 + 2 + extra
}

/// The size of `value` as compact JSON, or any number over `cap` once it is known to be
/// over (counting stops there).
pub(crate) fn json_len_capped(value: &Value, cap: u64) -> u64 {
    let mut counter = Counter { bytes: 0, cap };
    // The counter fails only when it passes the cap; serde_json writes nothing else.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.bytes
}

/// About the size of a log's event payloads as compact JSON ([`json_len_estimate`]:
/// string escapes not counted, floats at their longest), counted up to `cap` (a result of
/// `cap` means "at least `cap`": counting stops there). `cap` 0 counts nothing.
pub(crate) fn log_bytes<'a>(payloads: impl Iterator<Item = &'a Value>, cap: u64) -> u64 {
    let mut total = 0u64;
    if cap == 0 {
        return 0;
    }
    for payload in payloads {
        total = total.saturating_add(json_len_estimate(payload));
        if total >= cap {
            return cap;
        }
    }
    total
}

/// A writer that only counts, and fails once past its cap (which stops serialization).
struct Counter {
    bytes: u64,
    cap: u64,
}

impl io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes = self.bytes.saturating_add(buf.len() as u64);
        if self.bytes > self.cap {
            return Err(io::Error::other("over the cap"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_compact_json_bytes() {
        let value = serde_json::json!({ "a": [1, 2, "é"], "b": null });
        let text = serde_json::to_string(&value).unwrap_or_default();
        assert_eq!(json_len(&value), text.len() as u64);
        assert_eq!(json_len_over(&value, text.len() as u64), None);
        assert_eq!(
            json_len_over(&value, text.len() as u64 - 1),
            Some(text.len() as u64)
        );
        assert!(json_len_capped(&value, 3) > 3);
    }

    /// The walk counts what serde_json writes, escapes and all; floats are bounded.
    #[test]
    fn the_bound_is_exact_without_floats_and_above_with_them() {
        let exact = [
            serde_json::json!(null),
            serde_json::json!(true),
            serde_json::json!(false),
            serde_json::json!(0),
            serde_json::json!(9),
            serde_json::json!(10),
            serde_json::json!(u64::MAX),
            serde_json::json!(i64::MIN),
            serde_json::json!(-1),
            serde_json::json!(""),
            serde_json::json!("quote \" backslash \\ tab \t nl \n cr \r bs \u{8} ff \u{c}"),
            serde_json::json!("bell \u{7} nul \u{0} unit \u{1f} del \u{7f} é ✓ 𝄞"),
            serde_json::json!([]),
            serde_json::json!({}),
            serde_json::json!([1, [2, [3, {}]], "x"]),
            serde_json::json!({ "k\"ey": { "a": [null, true], "b": {} }, "c": -42 }),
        ];
        for value in exact {
            let text = serde_json::to_string(&value).unwrap_or_default();
            assert_eq!(json_len_bound(&value), (text.len() as u64, true), "{text}");
        }
        for value in [
            serde_json::json!(0.1),
            serde_json::json!(-1.7976931348623157e308),
            serde_json::json!({ "x": [1.5, 2.25e-300] }),
        ] {
            let text = serde_json::to_string(&value).unwrap_or_default();
            let (bound, exact) = json_len_bound(&value);
            assert!(!exact && bound >= text.len() as u64, "{text}: {bound}");
            // The check still reports the exact size of a value over the limit.
            assert_eq!(json_len_over(&value, 0), Some(text.len() as u64));
        }
    }
}
