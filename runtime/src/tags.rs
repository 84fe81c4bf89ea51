//! Searchable tags of runs (DESIGN "Operations", issue 15 item 5): the value type
//! [`TagValue`], the filters of a listing ([`TagFilter`], [`TagOp`]) and the opaque
//! pagination cursor of [`crate::event::RunFilter::cursor`].
//!
//! A workflow body tags its run with `ctx.tag("customer", "acme").await?`. The tag is
//! recorded as a `run_tagged` event (so a replay answers it from the log and writes
//! nothing), and the store indexes it in the same transaction as the append that carries
//! the event: the SQL stores by a trigger on their events table, so the index can never
//! disagree with the log whichever path wrote the event. A later tag of the same key
//! replaces the value. A tag made inside a sub-workflow attaches to the top-level run.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use crate::event::{Event, EventKind, EventPayload, RunId, RunRecord};

/// The longest tag key, in bytes.
pub const MAX_TAG_KEY_LEN: usize = 64;

/// The longest string tag value, in bytes.
pub const MAX_TAG_STRING_LEN: usize = 1024;

/// The value of a tag: a string, a number, a boolean or a time (UTC).
///
/// Built with `From`: `"acme"`, `String`, any integer or float (kept as an `f64`, exact
/// for integers up to 2^53), `bool`, `chrono::DateTime<Utc>`. Strings and booleans can be
/// searched for equality; numbers and times also by range (`<`, `<=`, `>`, `>=`).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum TagValue {
    /// Text, at most [`MAX_TAG_STRING_LEN`] bytes.
    String(String),
    /// A finite number.
    Number(f64),
    /// A boolean.
    Bool(bool),
    /// A time, kept to the microsecond.
    Time(DateTime<Utc>),
}

impl TagValue {
    /// The type's name as written in the log and the index: `string`, `number`, `bool` or
    /// `time`.
    pub fn type_name(&self) -> &'static str {
        match self {
            TagValue::String(_) => "string",
            TagValue::Number(_) => "number",
            TagValue::Bool(_) => "bool",
            TagValue::Time(_) => "time",
        }
    }

    /// The value as plain JSON (a time as RFC 3339 text), as the API and `runs get` show it.
    pub fn to_json(&self) -> Value {
        match self {
            TagValue::String(s) => Value::String(s.clone()),
            // Whole numbers as JSON integers (`250`, not `250.0`).
            TagValue::Number(n) if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 => {
                Value::from(*n as i64)
            }
            TagValue::Number(n) => serde_json::Number::from_f64(*n)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            TagValue::Bool(b) => Value::Bool(*b),
            TagValue::Time(t) => Value::String(rfc3339(*t)),
        }
    }

    /// What the SQL indexes keep: `(value_text, value_num)`: strings and booleans
    /// (`true`/`false`) as text, numbers and times (µs since the Unix epoch) as numbers.
    pub(crate) fn index_columns(&self) -> (Option<String>, Option<f64>) {
        match self {
            TagValue::String(s) => (Some(s.clone()), None),
            TagValue::Bool(b) => (Some(b.to_string()), None),
            TagValue::Number(n) => (None, Some(*n)),
            TagValue::Time(t) => (None, Some(t.timestamp_micros() as f64)),
        }
    }

    /// Checks the value: a string of at most [`MAX_TAG_STRING_LEN`] bytes, a finite number.
    fn check(&self, key: &str) -> Result<(), String> {
        match self {
            TagValue::String(s) if s.len() > MAX_TAG_STRING_LEN => Err(format!(
                "the value of tag `{key}` is {} bytes long; the limit is {MAX_TAG_STRING_LEN}",
                s.len()
            )),
            TagValue::Number(n) if !n.is_finite() => Err(format!(
                "the value of tag `{key}` is {n}; a number tag must be finite"
            )),
            _ => Ok(()),
        }
    }

    /// Writes the value's fields into a `run_tagged` payload: `type`, `value` and, for a
    /// time, `epoch_us` (what the SQL index keeps, so it needs no date parsing).
    pub(crate) fn encode_into(&self, out: &mut Map<String, Value>) {
        out.insert(
            "type".to_owned(),
            Value::String(self.type_name().to_owned()),
        );
        out.insert("value".to_owned(), self.to_json());
        if let TagValue::Time(t) = self {
            out.insert("epoch_us".to_owned(), Value::from(t.timestamp_micros()));
        }
    }

    /// Reads what [`TagValue::encode_into`] wrote.
    pub(crate) fn decode(type_name: Option<&str>, value: &Value) -> Result<TagValue, String> {
        match (type_name, value) {
            (Some("string"), Value::String(s)) => Ok(TagValue::String(s.clone())),
            (Some("number"), Value::Number(n)) => n
                .as_f64()
                .map(TagValue::Number)
                .ok_or_else(|| format!("number {n} out of range")),
            (Some("bool"), Value::Bool(b)) => Ok(TagValue::Bool(*b)),
            (Some("time"), Value::String(s)) => DateTime::parse_from_rfc3339(s)
                .map(|t| TagValue::Time(t.with_timezone(&Utc)))
                .map_err(|e| format!("time `{s}`: {e}")),
            (type_name, value) => Err(format!(
                "a tag of type {} cannot hold {value}",
                type_name.unwrap_or("(missing)")
            )),
        }
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

impl fmt::Display for TagValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TagValue::String(s) => f.write_str(s),
            TagValue::Number(n) => write!(f, "{n}"),
            TagValue::Bool(b) => write!(f, "{b}"),
            TagValue::Time(t) => f.write_str(&rfc3339(*t)),
        }
    }
}

impl Serialize for TagValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl From<&str> for TagValue {
    fn from(value: &str) -> Self {
        TagValue::String(value.to_owned())
    }
}

impl From<String> for TagValue {
    fn from(value: String) -> Self {
        TagValue::String(value)
    }
}

impl From<&String> for TagValue {
    fn from(value: &String) -> Self {
        TagValue::String(value.clone())
    }
}

impl From<bool> for TagValue {
    fn from(value: bool) -> Self {
        TagValue::Bool(value)
    }
}

impl From<DateTime<Utc>> for TagValue {
    fn from(value: DateTime<Utc>) -> Self {
        TagValue::Time(value)
    }
}

macro_rules! number_from {
    ($($t:ty),*) => {$(
        impl From<$t> for TagValue {
            fn from(value: $t) -> Self {
                TagValue::Number(value as f64)
            }
        }
    )*};
}
number_from!(i8, i16, i32, i64, u8, u16, u32, u64, usize, isize, f32, f64);

/// Checks a tag key: 1 to [`MAX_TAG_KEY_LEN`] bytes of ASCII letters, digits, `_`, `-`,
/// `.` and `:` (so a filter such as `amount>=100` parses without quoting).
///
/// # Errors
/// A message naming the key and saying what to change.
pub fn check_tag_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("a tag key must not be empty".to_owned());
    }
    if key.len() > MAX_TAG_KEY_LEN {
        return Err(format!(
            "tag key `{key}` is {} bytes long; the limit is {MAX_TAG_KEY_LEN}",
            key.len()
        ));
    }
    if let Some(bad) = key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
    {
        return Err(format!(
            "tag key `{key}` holds `{bad}`; use ASCII letters, digits, `_`, `-`, `.` and `:`"
        ));
    }
    Ok(())
}

/// Checks a tag (key and value) before it is recorded.
pub(crate) fn check_tag(key: &str, value: &TagValue) -> Result<(), String> {
    check_tag_key(key)?;
    value.check(key)
}

/// How a [`TagFilter`] compares a run's tag with its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TagOp {
    /// Equal (any type; a number never equals a string).
    Eq,
    /// Less than (numbers and times).
    Lt,
    /// At most (numbers and times).
    Le,
    /// Greater than (numbers and times).
    Gt,
    /// At least (numbers and times).
    Ge,
}

impl TagOp {
    /// The operator as written in a filter: `=`, `<`, `<=`, `>`, `>=`.
    pub fn as_str(self) -> &'static str {
        match self {
            TagOp::Eq => "=",
            TagOp::Lt => "<",
            TagOp::Le => "<=",
            TagOp::Gt => ">",
            TagOp::Ge => ">=",
        }
    }

    /// The SQL operator.
    pub(crate) fn sql(self) -> &'static str {
        self.as_str()
    }
}

/// One condition on a run's tag: the run has tag `key` of `value`'s type, and its value
/// compares to `value` by `op`. A run without the tag never matches.
#[derive(Clone, Debug, PartialEq)]
pub struct TagFilter {
    /// The tag key.
    pub key: String,
    /// The comparison.
    pub op: TagOp,
    /// What the tag's value is compared with; its type is the type the tag must have.
    pub value: TagValue,
}

impl TagFilter {
    /// `key = value`.
    pub fn eq(key: impl Into<String>, value: impl Into<TagValue>) -> Self {
        TagFilter {
            key: key.into(),
            op: TagOp::Eq,
            value: value.into(),
        }
    }

    /// `key op value` (a range needs a number or a time).
    pub fn new(key: impl Into<String>, op: TagOp, value: impl Into<TagValue>) -> Self {
        TagFilter {
            key: key.into(),
            op,
            value: value.into(),
        }
    }

    /// Checks the filter: a valid key, and a number or time for a range.
    ///
    /// # Errors
    /// A message saying what is wrong and how to write it.
    pub fn check(&self) -> Result<(), String> {
        check_tag_key(&self.key)?;
        if self.op != TagOp::Eq && !matches!(self.value, TagValue::Number(_) | TagValue::Time(_)) {
            return Err(format!(
                "tag filter `{}{}{}`: `{}` compares numbers and times only; a {} can only be \
                 matched with `=`",
                self.key,
                self.op.as_str(),
                self.value,
                self.op.as_str(),
                self.value.type_name()
            ));
        }
        self.value.check(&self.key)
    }

    /// Whether a run whose tags are `tags` matches.
    pub fn matches(&self, tags: &BTreeMap<String, TagValue>) -> bool {
        let Some(have) = tags.get(&self.key) else {
            return false;
        };
        let ordering = match (have, &self.value) {
            (TagValue::String(a), TagValue::String(b)) => a.partial_cmp(b),
            (TagValue::Bool(a), TagValue::Bool(b)) => a.partial_cmp(b),
            (TagValue::Number(a), TagValue::Number(b)) => a.partial_cmp(b),
            (TagValue::Time(a), TagValue::Time(b)) => a.partial_cmp(b),
            _ => None,
        };
        let Some(ordering) = ordering else {
            return false;
        };
        use std::cmp::Ordering::*;
        match self.op {
            TagOp::Eq => ordering == Equal,
            TagOp::Lt => ordering == Less,
            TagOp::Le => ordering != Greater,
            TagOp::Gt => ordering == Greater,
            TagOp::Ge => ordering != Less,
        }
    }
}

impl fmt::Display for TagFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.key, self.op.as_str(), self.value)
    }
}

impl std::str::FromStr for TagFilter {
    type Err = String;

    /// Parses `key=value`, `key<value`, `key<=value`, `key>value`, `key>=value`.
    ///
    /// The value's type is read from its text: `true`/`false` is a boolean, a number
    /// (`100`, `-2.5`) a number, an RFC 3339 time (`2026-12-06T10:00:00Z`) a time, and
    /// anything else a string; text in double quotes (`"100"`) is always a string.
    fn from_str(text: &str) -> Result<Self, String> {
        let at = text.find(['=', '<', '>']).ok_or_else(|| {
            format!(
                "tag filter `{text}` has no operator; write `key=value`, or `key>=value` \
                 (also `<`, `<=`, `>`) for numbers and times"
            )
        })?;
        let key = &text[..at];
        let rest = &text[at..];
        let (op, value) = [
            ("<=", TagOp::Le),
            (">=", TagOp::Ge),
            ("<", TagOp::Lt),
            (">", TagOp::Gt),
            ("=", TagOp::Eq),
        ]
        .into_iter()
        .find_map(|(sym, op)| rest.strip_prefix(sym).map(|value| (op, value)))
        .ok_or_else(|| format!("tag filter `{text}`: unknown operator"))?;
        check_tag_key(key).map_err(|e| format!("tag filter `{text}`: {e}"))?;
        let value = parse_value(value);
        let filter = TagFilter {
            key: key.to_owned(),
            op,
            value,
        };
        filter.check()?;
        Ok(filter)
    }
}

/// A filter value's type, read from its text (see [`TagFilter`]'s `FromStr`).
fn parse_value(text: &str) -> TagValue {
    if text.len() >= 2 && text.starts_with('"') && text.ends_with('"') {
        return TagValue::String(text[1..text.len() - 1].to_owned());
    }
    match text {
        "true" => return TagValue::Bool(true),
        "false" => return TagValue::Bool(false),
        _ => {}
    }
    if let Ok(n) = text.parse::<f64>()
        && n.is_finite()
        && !text.is_empty()
    {
        return TagValue::Number(n);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return TagValue::Time(t.with_timezone(&Utc));
    }
    TagValue::String(text.to_owned())
}

/// A run's tags as its log records them: the last value of each key.
pub fn tags_of(events: &[Event]) -> BTreeMap<String, TagValue> {
    let mut tags = BTreeMap::new();
    for event in events {
        if event.event.kind != EventKind::RunTagged {
            continue;
        }
        if let Ok(EventPayload::RunTagged { key, value }) =
            EventPayload::decode(EventKind::RunTagged, &event.event.payload)
        {
            tags.insert(key, value);
        }
    }
    tags
}

/// The position after which a page of a listing continues: the creation time and id of
/// the last run of the previous page (runs are listed newest first, ties by id, highest
/// first). Written as an opaque string ([`RunCursor::encode`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunCursor {
    /// The last listed run's creation time.
    pub created_at: DateTime<Utc>,
    /// The last listed run's id.
    pub id: RunId,
}

impl RunCursor {
    /// The cursor after `run`.
    pub fn after(run: &RunRecord) -> Self {
        RunCursor {
            created_at: run.created_at,
            id: run.id.clone(),
        }
    }

    /// The opaque text form (URL-safe base64).
    pub fn encode(&self) -> String {
        let plain = format!("1:{}:{}", self.created_at.timestamp_micros(), self.id);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(plain)
    }

    /// Reads [`RunCursor::encode`]'s output.
    ///
    /// # Errors
    /// A message saying the cursor is not one a listing returned.
    pub fn decode(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "cursor `{text}` is not one a listing returned; pass the `next_cursor` of the \
                 previous page unchanged"
            )
        };
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| bad())?;
        let plain = String::from_utf8(bytes).map_err(|_| bad())?;
        let mut parts = plain.splitn(3, ':');
        let (Some("1"), Some(micros), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let micros: i64 = micros.parse().map_err(|_| bad())?;
        let created_at = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
        Ok(RunCursor {
            created_at,
            id: RunId(id.to_owned()),
        })
    }

    /// Whether `run` comes after this cursor in listing order.
    pub fn is_before(&self, run: &RunRecord) -> bool {
        (run.created_at, &run.id) < (self.created_at, &self.id)
    }
}

/// The cursor of the page after `runs`, when the page is full (`limit` rows read).
pub(crate) fn next_cursor(
    limit: Option<usize>,
    rows_read: usize,
    runs: &[RunRecord],
) -> Option<String> {
    let limit = limit?;
    if limit == 0 || rows_read < limit {
        return None;
    }
    runs.last().map(|run| RunCursor::after(run).encode())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn filters_parse_with_typed_values() {
        let f: TagFilter = "customer=acme".parse().unwrap();
        assert_eq!(f, TagFilter::eq("customer", "acme"));
        let f: TagFilter = "amount>=100".parse().unwrap();
        assert_eq!(f, TagFilter::new("amount", TagOp::Ge, 100));
        let f: TagFilter = "code=\"100\"".parse().unwrap();
        assert_eq!(f, TagFilter::eq("code", "100"));
        let f: TagFilter = "vip=true".parse().unwrap();
        assert_eq!(f, TagFilter::eq("vip", true));
        let f: TagFilter = "due<2026-12-06T10:00:00Z".parse().unwrap();
        assert!(matches!(f.value, TagValue::Time(_)));
        assert_eq!(f.op, TagOp::Lt);
    }

    #[test]
    fn malformed_filters_say_what_is_wrong() {
        let e = "customer".parse::<TagFilter>().unwrap_err();
        assert!(e.contains("no operator"), "{e}");
        let e = "=acme".parse::<TagFilter>().unwrap_err();
        assert!(e.contains("must not be empty"), "{e}");
        let e = "customer>acme".parse::<TagFilter>().unwrap_err();
        assert!(e.contains("numbers and times only"), "{e}");
        let e = "cust omer=acme".parse::<TagFilter>().unwrap_err();
        assert!(e.contains("holds ` `"), "{e}");
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = RunCursor {
            created_at: DateTime::from_timestamp_micros(1_790_000_000_123_456).unwrap(),
            id: RunId::from("0193-abc"),
        };
        assert_eq!(RunCursor::decode(&c.encode()).unwrap(), c);
        assert!(RunCursor::decode("nope!").is_err());
        assert!(RunCursor::decode("bm9wZQ").is_err());
    }
}
