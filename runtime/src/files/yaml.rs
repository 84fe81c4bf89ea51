//! YAML with positions: a file's YAML read with `marked-yaml` into a `serde_json::Value`
//! and a map from each node's JSON pointer (`/steps/0/action`) to where its key and its
//! value are in the file.
//!
//! Scalars follow the YAML 1.2 core schema: an unquoted `null`, `~` or empty value is
//! `null`; `true`/`false` (also `True`, `TRUE`, …) are booleans; decimal, `0o` octal and
//! `0x` hex integers are numbers, and so are decimal floats; everything else, and every
//! quoted scalar, is a string. Anchors, aliases and tags are refused, as are duplicate
//! keys in a mapping.

use std::collections::HashMap;
use std::path::Path;

use marked_yaml::{LoaderOptions, Node};
use serde_json::{Map, Number, Value};

use super::FileError;
use super::program::Pos;
use super::source::Source;

/// Where one node is: its key (for mapping members) and its value.
#[derive(Clone, Copy, Debug, Default)]
struct Place {
    key: Option<Pos>,
    value: Pos,
}

/// JSON pointer → where the node is in the file.
#[derive(Clone, Debug, Default)]
pub(crate) struct Positions {
    places: HashMap<String, Place>,
}

impl Positions {
    /// Where the value at `pointer` starts; for a pointer that is not in the document, the
    /// value of its nearest ancestor that is.
    pub(crate) fn value(&self, pointer: &str) -> Pos {
        let mut pointer = pointer;
        loop {
            if let Some(place) = self.places.get(pointer) {
                return place.value;
            }
            match pointer.rfind('/') {
                Some(i) => pointer = &pointer[..i],
                None => return Pos { line: 1, column: 1 },
            }
        }
    }

    /// Where the key of the member at `pointer` is (its value's position for an array
    /// item; the nearest ancestor's when `pointer` is not in the document).
    pub(crate) fn key(&self, pointer: &str) -> Pos {
        match self.places.get(pointer) {
            Some(Place { key: Some(key), .. }) => *key,
            Some(place) => place.value,
            None => self.value(pointer),
        }
    }

    /// Whether `pointer` is in the document.
    pub(crate) fn has(&self, pointer: &str) -> bool {
        self.places.contains_key(pointer)
    }

    /// Where each `id` key is → the JSON pointer of the mapping that holds it (for
    /// steps: the step's pointer, found from [`super::Step::at`]).
    pub(crate) fn step_pointers(&self) -> HashMap<Pos, String> {
        self.places
            .iter()
            .filter_map(|(pointer, place)| {
                let parent = pointer.strip_suffix("/id")?;
                Some((place.key?, parent.to_owned()))
            })
            .collect()
    }
}

/// A file's YAML as JSON, with positions.
pub(crate) struct Yaml {
    /// The document.
    pub(crate) value: Value,
    /// Where each node is.
    pub(crate) positions: Positions,
}

/// Escapes one JSON pointer token (`~` → `~0`, `/` → `~1`).
pub(crate) fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// `pointer` as a dotted key path for messages: `/steps/2/actoin` → `steps[2].actoin`.
pub(crate) fn key_path(pointer: &str) -> String {
    let mut out = String::new();
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        if !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{token}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&token);
        }
    }
    out
}

/// Reads the YAML of `source` (part of the file at `path`).
///
/// # Errors
/// The YAML does not parse (at the parser's line and column, in file lines), or its top
/// level is not a mapping, or it uses anchors, aliases, tags or a duplicate key.
pub(crate) fn load(path: &Path, source: &Source<'_>) -> Result<Yaml, FileError> {
    let options = LoaderOptions::default()
        .error_on_duplicate_keys(true)
        .prevent_coercion(true);
    let offset = source.first_line.saturating_sub(1);
    let pos = |m: &marked_yaml::Marker| Pos {
        line: u32::try_from(m.line())
            .unwrap_or(u32::MAX)
            .saturating_add(offset),
        column: u32::try_from(m.column()).unwrap_or(u32::MAX),
    };
    let node = marked_yaml::parse_yaml_with_options(0, source.yaml, options).map_err(|e| {
        use marked_yaml::LoadError as E;
        match &e {
            E::ScanError(m, scan) => {
                FileError::new(path, pos(m), format!("invalid YAML: {}", scan.info()))
            }
            E::TopLevelMustBeMapping(m) | E::TopLevelMustBeSequence(m) => FileError::new(
                path,
                pos(m),
                "invalid workflow: the YAML must be a mapping (`steps:`, `slug:`, …)",
            ),
            E::UnexpectedAnchor(m) => FileError::new(
                path,
                pos(m),
                "invalid YAML: anchors and aliases (`&x`, `*x`) are not supported",
            )
            .help("write the value out where it is used"),
            E::UnexpectedTag(m) => FileError::new(
                path,
                pos(m),
                "invalid YAML: tags (`!tag`) are not supported",
            ),
            E::MappingKeyMustBeScalar(m) => FileError::new(
                path,
                pos(m),
                "invalid YAML: a mapping key must be a plain value, not a list or mapping",
            ),
            E::DuplicateKey(inner) => {
                let first = inner.prev_key.span().start().map(&pos).unwrap_or_default();
                let at = inner
                    .key
                    .span()
                    .start()
                    .map(&pos)
                    .unwrap_or(Pos { line: 1, column: 1 });
                FileError::new(
                    path,
                    at,
                    format!(
                        "duplicate key `{}` (first at {}:{})",
                        inner.key.as_str(),
                        first.line,
                        first.column
                    ),
                )
                .key(inner.key.as_str())
                .help("keep one of them")
            }
        }
    })?;
    let mut positions = Positions::default();
    let value = convert(&node, String::new(), None, &pos, &mut positions);
    Ok(Yaml { value, positions })
}

fn start(node: &Node, pos: &dyn Fn(&marked_yaml::Marker) -> Pos) -> Pos {
    node.span()
        .start()
        .map(pos)
        .unwrap_or(Pos { line: 1, column: 1 })
}

fn convert(
    node: &Node,
    pointer: String,
    key: Option<Pos>,
    pos: &dyn Fn(&marked_yaml::Marker) -> Pos,
    positions: &mut Positions,
) -> Value {
    // A block mapping's own mark is where the parser saw its first `:`: use its first
    // key's position instead.
    let value_at = match node {
        Node::Mapping(map) => map
            .keys()
            .next()
            .and_then(|k| k.span().start())
            .map(pos)
            .unwrap_or_else(|| start(node, pos)),
        _ => start(node, pos),
    };
    let value = match node {
        Node::Scalar(scalar) => {
            if scalar.may_coerce() {
                resolve(scalar.as_str())
            } else {
                Value::String(scalar.as_str().to_owned())
            }
        }
        Node::Sequence(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| convert(item, format!("{pointer}/{i}"), None, pos, positions))
                .collect(),
        ),
        Node::Mapping(map) => {
            let mut out = Map::new();
            for (k, v) in map.iter() {
                let key_at = k.span().start().map(pos);
                let child = format!("{pointer}/{}", escape(k.as_str()));
                let value = convert(v, child, key_at, pos, positions);
                out.insert(k.as_str().to_owned(), value);
            }
            Value::Object(out)
        }
    };
    // A member with an empty value (`key:`) has no position of its own: use the key's.
    let value_at = match (&value, key) {
        (Value::Null, Some(key)) if node.span().start().is_none() => key,
        _ => value_at,
    };
    positions.places.insert(
        pointer,
        Place {
            key,
            value: value_at,
        },
    );
    value
}

/// The YAML 1.2 core schema's reading of an unquoted scalar.
fn resolve(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    let digits = |s: &str, radix: u32| !s.is_empty() && s.chars().all(|c| c.is_digit(radix));
    if let Some(hex) = text.strip_prefix("0x")
        && digits(hex, 16)
        && let Ok(n) = u64::from_str_radix(hex, 16)
    {
        return Value::Number(n.into());
    }
    if let Some(oct) = text.strip_prefix("0o")
        && digits(oct, 8)
        && let Ok(n) = u64::from_str_radix(oct, 8)
    {
        return Value::Number(n.into());
    }
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits(unsigned, 10) {
        if let Ok(n) = text.parse::<i64>() {
            return Value::Number(n.into());
        }
        if let Ok(n) = unsigned.parse::<u64>()
            && !text.starts_with('-')
        {
            return Value::Number(n.into());
        }
    }
    if is_float(unsigned)
        && let Some(n) = text.parse::<f64>().ok().and_then(Number::from_f64)
    {
        return Value::Number(n);
    }
    Value::String(text.to_owned())
}

/// `[0-9]*(\.[0-9]*)?([eE][-+]?[0-9]+)?` with at least one digit before the exponent.
fn is_float(text: &str) -> bool {
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((int, frac)) => (int, frac),
        None => (mantissa, ""),
    };
    let all_digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if !all_digits(int) || !all_digits(frac) || int.len() + frac.len() == 0 {
        return false;
    }
    match exponent {
        None => true,
        Some(exp) => {
            let exp = exp.strip_prefix(['-', '+']).unwrap_or(exp);
            !exp.is_empty() && all_digits(exp)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_schema_scalars() {
        assert_eq!(resolve("~"), Value::Null);
        assert_eq!(resolve("True"), Value::Bool(true));
        assert_eq!(resolve("12"), serde_json::json!(12));
        assert_eq!(resolve("-3"), serde_json::json!(-3));
        assert_eq!(resolve("0x1f"), serde_json::json!(31));
        assert_eq!(resolve("1.5"), serde_json::json!(1.5));
        assert_eq!(resolve("1e3"), serde_json::json!(1000.0));
        assert_eq!(resolve("yes"), serde_json::json!("yes"));
        assert_eq!(resolve("1.2.3"), serde_json::json!("1.2.3"));
        assert_eq!(resolve("."), serde_json::json!("."));
    }

    #[test]
    fn key_paths() {
        assert_eq!(key_path("/steps/2/actoin"), "steps[2].actoin");
        assert_eq!(key_path("/vars/a~1b"), "vars.a/b");
    }
}
