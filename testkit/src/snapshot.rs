//! Run-log snapshots: [`RedactedEvent`], the redaction behind [`crate::RunLog::redacted`],
//! and the [`assert_run_snapshot!`](crate::assert_run_snapshot) and
//! [`assert_log_snapshot!`](crate::assert_log_snapshot) macros.

use std::collections::HashMap;

use chrono::{DateTime, SubsecRound, Utc};
use reprise::event::{Event, EventKind, field};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One event of a redacted run log, as [`crate::RunLog::redacted`] lists it and a snapshot
/// shows it.
///
/// A snapshot must be identical across runs and machines, so every value that differs
/// between two runs of the same workflow with the same input is replaced by a placeholder:
///
/// | value | placeholder |
/// | --- | --- |
/// | timestamps (`at`, `wake_at`, `until`, `$now#n` outputs, RFC 3339 times and `DateTime<Utc>`'s `Display` inside any string) | `[time-N]` |
/// | the run's id (also inside idempotency keys and paths) | `[run-N]` |
/// | hook tokens (also inside resume URLs) and `token_hash` values | `[token-N]` |
/// | UUIDs (`$uuid#n` outputs, any UUID inside a string) | `[uuid-N]` |
/// | `$random#n` outputs (and later whole values equal to a distinctive one: not booleans, small integers or short strings) | `[random-N]` |
/// | jittered retry delays (`delay_ms` of `step_retrying`) | `[duration]` |
/// | the JSON Schema of `hook_created` | `[schema]` |
/// | the step-site `fingerprint` of `run_started` (it changes when code moves) | `[fingerprint]` |
/// | the `digest` of a step input that had anything redacted | `[digest]` |
/// | text given to [`crate::RunLog::redact_text`] | what the test says |
///
/// `N` counts distinct values in order of first appearance, so equal values share a number
/// and the links between events stay checked: the token in a resume URL and the
/// `token_hash` of its hook get the same `[token-N]`, a sleep's `wake_at` and the `at` of
/// the event that ends it the same `[time-N]` (times are compared to the microsecond, the
/// precision of the SQLite store). Input digests of inputs with nothing
/// redacted are kept: the same input always has the same digest.
///
/// Hook tokens reach a log only as their `token_hash`: the run itself writes
/// `{{reprise:hook-token:<hook-id>}}` wherever a token was (a resume URL in a step input),
/// which is stable and kept as it is. Bare tokens are still redacted, for logs written by
/// older versions and for text a test adds.
///
/// Times are numbered by value, so a snapshot is stable when the clock is: a
/// [`crate::TestEnv`] (in memory or SQLite) runs on a [`crate::VirtualClock`]. Under a
/// real clock, two events may or may not share a microsecond.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RedactedEvent {
    /// Position in the run's log, from 0.
    pub seq: u64,
    /// What happened.
    pub kind: EventKind,
    /// The correlation id, for step, sleep and hook events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The run or step attempt, from 1.
    pub attempt: u32,
    /// When it happened, as a `[time-N]` placeholder.
    pub at: String,
    /// The payload, redacted.
    pub payload: Value,
}

/// Redacts `events` (one run's log, in order) after replacing each `texts` pair's first
/// string by its second everywhere.
pub(crate) fn redact(events: &[Event], texts: &[(String, String)]) -> Vec<RedactedEvent> {
    let mut redactor = Redactor {
        texts,
        ..Redactor::default()
    };
    if let Some(first) = events.first() {
        redactor.run_number(first.run_id.as_str());
    }
    events.iter().map(|e| redactor.event(e)).collect()
}

/// Placeholder numbering for one log.
#[derive(Default)]
struct Redactor<'a> {
    texts: &'a [(String, String)],
    runs: Vec<String>,
    times: Vec<DateTime<Utc>>,
    /// Tokens and their SHA-256 hashes (hex), both mapped to the token's number.
    tokens: HashMap<String, usize>,
    token_count: usize,
    uuids: Vec<String>,
    /// Recorded random values distinctive enough to be recognized where they reappear.
    randoms: Vec<(Value, String)>,
    random_count: usize,
}

impl Redactor<'_> {
    fn event(&mut self, event: &Event) -> RedactedEvent {
        self.run_number(event.run_id.as_str());
        let at = self.time(event.event.at);
        let id = event
            .event
            .correlation_id
            .as_deref()
            .map(|id| self.string(id));
        let payload = self.payload(&event.event);
        RedactedEvent {
            seq: event.seq,
            kind: event.event.kind,
            id,
            attempt: event.event.attempt,
            at,
            payload,
        }
    }

    fn payload(&mut self, event: &reprise::event::NewEvent) -> Value {
        let Value::Object(payload) = &event.payload else {
            return self.value(&event.payload);
        };
        let random = event.kind == EventKind::StepCompleted
            && event
                .correlation_id
                .as_deref()
                .is_some_and(|id| last_segment(id).starts_with("$random"));
        let mut out = Map::new();
        // The input first: whether its digest is kept depends on it.
        let mut input_changed = false;
        if let Some(input) = payload.get(field::INPUT) {
            let redacted = self.value(input);
            input_changed = redacted != *input;
            out.insert(field::INPUT.to_owned(), redacted);
        }
        for (key, value) in payload {
            let redacted = match (event.kind, key.as_str(), value) {
                (_, field::INPUT, _) => continue,
                (EventKind::StepStarted, field::DIGEST, _) if input_changed => {
                    Value::from("[digest]")
                }
                (EventKind::StepRetrying, field::DELAY_MS, Value::Number(_)) => {
                    Value::from("[duration]")
                }
                (EventKind::HookCreated, field::SCHEMA, _) => Value::from("[schema]"),
                (EventKind::RunStarted, field::FINGERPRINT, _) => Value::from("[fingerprint]"),
                (_, field::TOKEN_HASH, Value::String(hash)) => Value::from(self.token_hash(hash)),
                (_, field::OUTPUT, output) if random => Value::from(self.random(output)),
                _ => self.value(value),
            };
            out.insert(self.string(key), redacted);
        }
        Value::Object(out)
    }

    fn value(&mut self, value: &Value) -> Value {
        match value {
            Value::String(s) => Value::from(self.string(s)),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.value(v)).collect()),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (self.string(k), self.value(v)))
                    .collect(),
            ),
            Value::Number(_) => match self.randoms.iter().find(|(v, _)| v == value) {
                Some((_, placeholder)) => Value::from(placeholder.clone()),
                None => value.clone(),
            },
            Value::Null | Value::Bool(_) => value.clone(),
        }
    }

    fn string(&mut self, s: &str) -> String {
        let mut s = s.to_owned();
        for (from, to) in self.texts {
            if !from.is_empty() {
                s = s.replace(from.as_str(), to);
            }
        }
        if let Some((_, placeholder)) = self
            .randoms
            .iter()
            .find(|(v, _)| v.as_str() == Some(s.as_str()))
        {
            return placeholder.clone();
        }
        let s = self.tokens_in(&s);
        let s = self.runs_in(s);
        let s = self.uuids_in(&s);
        self.times_in(&s)
    }

    fn run_number(&mut self, run: &str) -> usize {
        number(&mut self.runs, run.to_owned())
    }

    /// Times are told apart to the microsecond, the precision of the SQLite and Postgres
    /// stores: the in-memory store keeps nanoseconds, which a payload's `wake_at` (JSON
    /// text) keeps in every store.
    fn time(&mut self, at: DateTime<Utc>) -> String {
        let at = at.trunc_subsecs(6);
        format!("[time-{}]", number(&mut self.times, at))
    }

    fn token(&mut self, token: &str) -> String {
        let hash = sha256_hex(token.as_bytes());
        let n = match self.tokens.get(token).or_else(|| self.tokens.get(&hash)) {
            Some(n) => *n,
            None => {
                self.token_count += 1;
                self.token_count
            }
        };
        self.tokens.insert(token.to_owned(), n);
        self.tokens.insert(hash, n);
        format!("[token-{n}]")
    }

    fn token_hash(&mut self, hash: &str) -> String {
        let n = match self.tokens.get(hash) {
            Some(n) => *n,
            None => {
                self.token_count += 1;
                self.tokens.insert(hash.to_owned(), self.token_count);
                self.token_count
            }
        };
        format!("[token-{n}]")
    }

    fn random(&mut self, value: &Value) -> String {
        if let Some((_, placeholder)) = self.randoms.iter().find(|(v, _)| v == value) {
            return placeholder.clone();
        }
        self.random_count += 1;
        let placeholder = format!("[random-{}]", self.random_count);
        if distinctive(value) {
            self.randoms.push((value.clone(), placeholder.clone()));
        }
        placeholder
    }

    /// Replaces every hook token (a base64url word that decodes to a token's layout).
    fn tokens_in(&mut self, s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = String::with_capacity(s.len());
        let mut last = 0;
        let mut i = 0;
        while i < bytes.len() {
            if !is_base64url(bytes[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && is_base64url(bytes[i]) {
                i += 1;
            }
            let word = &s[start..i];
            if is_token(word) {
                out.push_str(&s[last..start]);
                out.push_str(&self.token(word));
                last = i;
            }
        }
        out.push_str(&s[last..]);
        out
    }

    /// Replaces the run ids of this log, wherever they appear.
    fn runs_in(&mut self, mut s: String) -> String {
        for (index, run) in self.runs.iter().enumerate() {
            if !run.is_empty() && s.contains(run.as_str()) {
                s = s.replace(run.as_str(), &format!("[run-{}]", index + 1));
            }
        }
        s
    }

    /// Replaces every UUID (8-4-4-4-12 hex digits, not inside a longer word).
    fn uuids_in(&mut self, s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = String::with_capacity(s.len());
        let mut last = 0;
        let mut i = 0;
        while i + 36 <= bytes.len() {
            let bounded = (i == 0 || !bytes[i - 1].is_ascii_alphanumeric())
                && bytes.get(i + 36).is_none_or(|b| !b.is_ascii_alphanumeric());
            if bounded && is_uuid(&bytes[i..i + 36]) {
                let uuid = s[i..i + 36].to_ascii_lowercase();
                out.push_str(&s[last..i]);
                match self.runs.iter().position(|r| r.eq_ignore_ascii_case(&uuid)) {
                    Some(run) => out.push_str(&format!("[run-{}]", run + 1)),
                    None => out.push_str(&format!("[uuid-{}]", number(&mut self.uuids, uuid))),
                }
                i += 36;
                last = i;
            } else {
                i += 1;
            }
        }
        out.push_str(&s[last..]);
        out
    }

    /// Replaces every RFC 3339 time with an offset (`2030-01-01T00:00:00.5Z`, `… +02:00`)
    /// and every `DateTime<Utc>` printed with `Display` (`2030-01-01 00:00:00 UTC`).
    fn times_in(&mut self, s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = String::with_capacity(s.len());
        let mut last = 0;
        let mut i = 0;
        while i < bytes.len() {
            let bounded = i == 0 || !bytes[i - 1].is_ascii_digit();
            let found = bounded
                .then(|| rfc3339_len(&bytes[i..]))
                .flatten()
                .and_then(|len| {
                    let text = s[i..i + len]
                        .replace(" UTC", "Z")
                        .replacen([' ', 't'], "T", 1);
                    DateTime::parse_from_rfc3339(&text)
                        .ok()
                        .map(|t| (len, t.with_timezone(&Utc)))
                });
            match found {
                Some((len, time)) => {
                    out.push_str(&s[last..i]);
                    out.push_str(&self.time(time));
                    i += len;
                    last = i;
                }
                None => i += 1,
            }
        }
        out.push_str(&s[last..]);
        out
    }
}

/// The 1-based number of `value` in `seen`, added at the end if new.
fn number<T: PartialEq>(seen: &mut Vec<T>, value: T) -> usize {
    match seen.iter().position(|v| *v == value) {
        Some(index) => index + 1,
        None => {
            seen.push(value);
            seen.len()
        }
    }
}

/// The part of a correlation id after its last `/` (a sub-workflow's namespace).
fn last_segment(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

/// Whether a random value is unlikely to occur by chance elsewhere in the log, so that
/// later occurrences may be replaced by its placeholder (small integers and booleans are
/// not: a `3` elsewhere is more likely a plain `3`).
fn distinctive(value: &Value) -> bool {
    match value {
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.unsigned_abs() >= 1 << 16,
            (None, Some(_)) => true,
            (None, None) => n.as_f64().is_some_and(|f| f.fract() != 0.0),
        },
        Value::String(s) => s.chars().count() >= 8,
        _ => false,
    }
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Decodes unpadded base64url.
fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()
}

/// Whether `word` is a reprise hook token: base64url of `[1][16-byte UUID][32-byte MAC]` or
/// `[2][length][run id][32-byte MAC]` (see `reprise::Hook::token`).
fn is_token(word: &str) -> bool {
    if word.len() < 43 {
        return false;
    }
    let Some(bytes) = base64url_decode(word) else {
        return false;
    };
    match bytes.first() {
        Some(1) => bytes.len() == 1 + 16 + 32,
        Some(2) => bytes
            .get(1)
            .is_some_and(|len| bytes.len() == 2 + usize::from(*len) + 32),
        _ => false,
    }
}

fn is_uuid(bytes: &[u8]) -> bool {
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// The length of the RFC 3339 date-time with offset at the start of `bytes`, if one is.
fn rfc3339_len(bytes: &[u8]) -> Option<usize> {
    let digits = |at: usize, n: usize| {
        bytes
            .get(at..at + n)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    let byte = |at: usize| bytes.get(at).copied();
    let date_time = digits(0, 4)
        && byte(4) == Some(b'-')
        && digits(5, 2)
        && byte(7) == Some(b'-')
        && digits(8, 2)
        && matches!(byte(10), Some(b'T' | b't' | b' '))
        && digits(11, 2)
        && byte(13) == Some(b':')
        && digits(14, 2)
        && byte(16) == Some(b':')
        && digits(17, 2);
    if !date_time {
        return None;
    }
    let mut len = 19;
    if byte(len) == Some(b'.') && digits(len + 1, 1) {
        len += 1;
        while digits(len, 1) {
            len += 1;
        }
    }
    if bytes.get(len..len + 4) == Some(b" UTC") {
        // chrono's `Display` of a `DateTime<Utc>`.
        return Some(len + 4);
    }
    match byte(len)? {
        b'Z' | b'z' => Some(len + 1),
        b'+' | b'-' if digits(len + 1, 2) && byte(len + 3) == Some(b':') && digits(len + 4, 2) => {
            Some(len + 6)
        }
        _ => None,
    }
}

/// SHA-256 of `data`, lowercase hex (how reprise stores a hook's `token_hash`).
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Asserts an insta YAML snapshot of a run's redacted log (see [`crate::RunLog::redacted`]):
/// `assert_run_snapshot!(env, run_id)` names the snapshot after the test function,
/// `assert_run_snapshot!("name", env, run_id)` names it. `env` is a [`crate::TestEnv`] (or
/// anything with an `async fn log(&self, &RunId) -> RunLog`); use it inside an `async` test.
///
/// ```ignore
/// #[tokio::test]
/// async fn signup_log() {
///     let env = TestEnv::new();
///     env.execute(&signup_pipeline, signup()).await.completed();
///     reprise_testkit::assert_run_snapshot!(env, env.last_run());
/// }
/// ```
///
/// Review new or changed snapshots with `cargo insta review`, or write them with
/// `INSTA_UPDATE=always cargo test`. The test crate needs no `insta` dependency.
#[macro_export]
macro_rules! assert_run_snapshot {
    ($name:expr, $env:expr, $run:expr $(,)?) => {{
        let __reprise_log = ($env).log(&$run).await;
        $crate::assert_log_snapshot!($name, __reprise_log);
    }};
    ($env:expr, $run:expr $(,)?) => {{
        let __reprise_log = ($env).log(&$run).await;
        $crate::assert_log_snapshot!(__reprise_log);
    }};
}

/// Asserts an insta YAML snapshot of a [`crate::RunLog`] (redacted with
/// [`crate::RunLog::redacted`]), for logs with extra redactions:
///
/// ```ignore
/// let log = env.log(&run).await.redact_text(dir, "[dir]");
/// reprise_testkit::assert_log_snapshot!(log);            // named after the test function
/// reprise_testkit::assert_log_snapshot!("digest", log);  // named
/// ```
#[macro_export]
macro_rules! assert_log_snapshot {
    ($name:expr, $log:expr $(,)?) => {{
        let __reprise_log: $crate::RunLog = $log;
        let __reprise_settings = $crate::RunLog::snapshot_settings(&__reprise_log);
        __reprise_settings.bind(|| {
            $crate::__insta::assert_yaml_snapshot!($name, __reprise_log.redacted());
        });
    }};
    ($log:expr $(,)?) => {{
        let __reprise_log: $crate::RunLog = $log;
        let __reprise_settings = $crate::RunLog::snapshot_settings(&__reprise_log);
        __reprise_settings.bind(|| {
            $crate::__insta::assert_yaml_snapshot!(__reprise_log.redacted());
        });
    }};
}
