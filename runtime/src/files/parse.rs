//! From a file's text to a [`WorkflowFile`]: YAML (with positions) → the file format's
//! JSON Schema → [`format`](super::format) types → checked [`Step`]s, every error with
//! its file:line:col and the offending key.
//!
//! What parse checks, per file: the YAML, the format (unknown keys with a "did you mean",
//! missing keys, wrong types), step ids (required, `[A-Za-z0-9_-]+`, unique in the file),
//! exactly one step type key per step and only the keys that type takes, durations, cron
//! expressions and time zones, numeric bounds (`concurrency`, `retry.max_attempts`,
//! `max_iterations`, `max_turns`, `parallel: N`), what some step types need (`switch` →
//! `cases`, `agent` → `message`, `error_handling: fallback` → `fallback`, …), variable
//! names, branch names, and that every expression and template compiles.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::OnceLock;

use serde_json::{Map, Value};

use super::format::{Backoff, ErrorHandling, ParallelWait, StepDef, WorkflowDoc};
use super::program::{Expr, Pos, Step, StepKind, Template, WorkflowFile};
use super::yaml::{Positions, Yaml, escape, key_path};
use super::{FileError, FileErrors};

/// The step type keys, in the order the format documents them.
pub(crate) const STEP_TYPES: [&str; 22] = [
    "action",
    "workflow",
    "prompt",
    "agent",
    "if",
    "switch",
    "for_each",
    "while",
    "map",
    "filter",
    "reduce",
    "parallel",
    "try",
    "sleep",
    "sleep_until",
    "hook",
    "signal",
    "event",
    "select",
    "set",
    "fail",
    "return",
];

/// The keys every step may have.
const COMMON_KEYS: [&str; 8] = [
    "id",
    "name",
    "when",
    "timeout",
    "error_handling",
    "fallback",
    "compensate",
    "output_variable",
];

/// The keys a step type takes besides its own and [`COMMON_KEYS`].
fn type_keys(kind: &str) -> &'static [&'static str] {
    match kind {
        "action" => &["input", "retry"],
        "workflow" => &["input"],
        "prompt" => &["model", "system", "temperature", "output_schema", "retry"],
        "agent" => &["model", "message"],
        "if" => &["then", "else"],
        "switch" => &["cases", "default"],
        "for_each" => &["steps", "as", "concurrency"],
        "while" => &["steps", "max_iterations"],
        "map" => &["as", "value"],
        "filter" => &["as", "where"],
        "reduce" => &["as", "initial", "accumulator", "value"],
        "parallel" => &["branches"],
        "try" => &["catch", "finally"],
        "hook" | "signal" => &["schema"],
        "event" => &["match"],
        "fail" => &["kind"],
        _ => &[],
    }
}

/// Names that loop variables and accumulators may not take (they would hide the scope's).
const RESERVED: [&str; 6] = ["inputs", "steps", "vars", "ctx", "error", "index"];

/// Parses the workflow file at `path` whose contents are `text` (nothing is read from
/// disk). Checks the format and each step on its own; what needs the registry or the
/// other files (unknown actions, sub-workflow paths, undefined variables) is
/// [`super::check_files`]'s.
///
/// # Errors
/// Every problem found, each naming `path`, line and column, in position order.
pub fn parse_file(path: &Path, text: &str) -> Result<WorkflowFile, FileErrors> {
    let source = super::source::split(path, text)?;
    let yaml = super::yaml::load(path, &source)?;
    let mut parser = Parser {
        path,
        positions: &yaml.positions,
        errors: Vec::new(),
        ids: HashMap::new(),
    };
    parser.schema(&yaml);
    if !parser.errors.is_empty() {
        return Err(parser.finish());
    }
    let doc: WorkflowDoc = match serde_json::from_value(yaml.value.clone()) {
        Ok(doc) => doc,
        Err(e) => {
            return Err(FileError::new(
                path,
                Pos { line: 1, column: 1 },
                format!("invalid workflow file: {e}"),
            )
            .into());
        }
    };
    let raw_steps = yaml.value.get("steps").unwrap_or(&Value::Null);
    let steps = parser.steps("/steps", &doc.steps, raw_steps);
    parser.document(&doc);
    let vars = doc
        .vars
        .iter()
        .map(|(name, value)| {
            let pointer = format!("/vars/{}", escape(name));
            (name.clone(), parser.template(&pointer, value.clone()))
        })
        .collect();
    if !parser.errors.is_empty() {
        return Err(parser.finish());
    }
    let slug = doc.slug.clone().unwrap_or_else(|| {
        path.file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("workflow")
            .to_owned()
    });
    let description = doc
        .description
        .clone()
        .unwrap_or_else(|| first_paragraph(source.markdown));
    Ok(WorkflowFile {
        path: path.to_owned(),
        slug,
        description,
        markdown: source.markdown.to_owned(),
        source: text.to_owned(),
        input_schema: doc.input.clone().unwrap_or(Value::Bool(true)),
        output_schema: doc.output.clone().unwrap_or(Value::Bool(true)),
        vars,
        triggers: doc.triggers.clone(),
        options: doc.options.clone(),
        steps,
    })
}

/// The first paragraph of Markdown text, headings skipped, lines joined.
fn first_paragraph(markdown: &str) -> String {
    markdown
        .split("\n\n")
        .map(str::trim)
        .find(|p| !p.is_empty() && !p.starts_with('#'))
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Expression text with any `{{ }}` around it removed.
pub(crate) fn strip_braces(source: &str) -> &str {
    let trimmed = source.trim();
    trimmed
        .strip_prefix("{{")
        .and_then(|s| s.strip_suffix("}}"))
        .unwrap_or(trimmed)
        .trim()
}

/// Whether `name` is an identifier (`[A-Za-z_][A-Za-z0-9_]*`).
pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `id` is a valid step id (`[A-Za-z0-9_-]+`).
fn is_step_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The edit distance between `a` and `b` (in characters; a swap of two neighbours
/// counts one: optimal string alignment).
pub(crate) fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The candidate closest to `word`, when it is close enough to be a likely typo.
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (distance(word, c), c))
        .filter(|(d, c)| *d <= c.chars().count().max(word.chars().count()).div_ceil(3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// The format's JSON Schema, compiled once.
fn validator() -> Result<&'static (Value, jsonschema::Validator), String> {
    static VALIDATOR: OnceLock<Result<(Value, jsonschema::Validator), String>> = OnceLock::new();
    VALIDATOR
        .get_or_init(|| {
            let schema = super::format_schema();
            jsonschema::options()
                .build(&schema)
                .map(|v| (schema.clone(), v))
                .map_err(|e| format!("the file format's JSON Schema does not compile: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The schema node at `path` (a keyword location) in `root`, following `$ref`s.
pub(crate) fn schema_at<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    let mut node = root;
    for token in path.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        node = if token == "$ref" {
            let target = node.get("$ref")?.as_str()?.strip_prefix('#')?;
            root.pointer(target)?
        } else {
            match node {
                Value::Array(items) => items.get(token.parse::<usize>().ok()?)?,
                _ => node.get(&token)?,
            }
        };
    }
    Some(node)
}

/// Every property name in the schema (the candidates for "did you mean" when the exact
/// object's properties cannot be found).
fn all_properties(root: &Value, out: &mut Vec<String>) {
    match root {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = map.get("properties") {
                out.extend(props.keys().cloned());
            }
            for v in map.values() {
                all_properties(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| all_properties(v, out)),
        _ => {}
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn plain_type(kind: &str) -> &'static str {
    match kind {
        "object" => "a mapping",
        "array" => "a list",
        "string" => "a string",
        "integer" => "an integer",
        "number" => "a number",
        "boolean" => "a boolean (`true` or `false`)",
        "null" => "null",
        _ => "a value of another type",
    }
}

struct Parser<'a> {
    path: &'a Path,
    positions: &'a Positions,
    errors: Vec<FileError>,
    /// Step id → where its `id` key is.
    ids: HashMap<String, Pos>,
}

impl Parser<'_> {
    fn finish(mut self) -> FileErrors {
        self.errors.sort_by_key(|e| e.at);
        self.errors.dedup();
        FileErrors(self.errors)
    }

    /// An error at the key of the member at `pointer`.
    fn at_key(&mut self, pointer: &str, message: impl Into<String>) -> &mut FileError {
        let error =
            FileError::new(self.path, self.positions.key(pointer), message).key(key_path(pointer));
        self.errors.push(error);
        self.errors.last_mut().expect("just pushed")
    }

    /// An error at the value of the member at `pointer`.
    fn at_value(&mut self, pointer: &str, message: impl Into<String>) -> &mut FileError {
        let error = FileError::new(self.path, self.positions.value(pointer), message)
            .key(key_path(pointer));
        self.errors.push(error);
        self.errors.last_mut().expect("just pushed")
    }

    fn help(&mut self, help: impl Into<String>) {
        if let Some(last) = self.errors.last_mut() {
            last.help = Some(help.into());
        }
    }

    // ---- the format's JSON Schema ----

    fn schema(&mut self, yaml: &Yaml) {
        let (schema, validator) = match validator() {
            Ok(v) => v,
            Err(message) => {
                self.errors.push(FileError::new(
                    self.path,
                    Pos { line: 1, column: 1 },
                    message,
                ));
                return;
            }
        };
        for error in validator.iter_errors(&yaml.value) {
            self.schema_error(schema, &yaml.value, &error);
        }
    }

    fn schema_error(
        &mut self,
        schema: &Value,
        document: &Value,
        error: &jsonschema::ValidationError<'_>,
    ) {
        use jsonschema::error::ValidationErrorKind as K;
        let pointer = error.instance_path().as_str().to_owned();
        let instance = document.pointer(&pointer).unwrap_or(&Value::Null);
        match error.kind() {
            K::AdditionalProperties { unexpected } => {
                let known: Vec<String> = {
                    let location = error.schema_path().as_str();
                    let parent = location
                        .strip_suffix("/additionalProperties")
                        .unwrap_or(location);
                    match schema_at(schema, parent)
                        .and_then(|s| s.get("properties"))
                        .and_then(Value::as_object)
                    {
                        Some(props) => props.keys().cloned().collect(),
                        None => {
                            let mut all = Vec::new();
                            all_properties(schema, &mut all);
                            all
                        }
                    }
                };
                let is_step =
                    known.iter().any(|k| k == "id") && known.iter().any(|k| k == "action");
                let step_type = STEP_TYPES
                    .iter()
                    .find(|t| instance.get(**t).is_some())
                    .copied();
                for key in unexpected {
                    let member = format!("{pointer}/{}", escape(key));
                    if is_step {
                        // Within a step, suggest among what this step may take.
                        let candidates: Vec<&str> = match step_type {
                            None => STEP_TYPES.to_vec(),
                            Some(kind) => {
                                COMMON_KEYS.iter().chain(type_keys(kind)).copied().collect()
                            }
                        };
                        match step_type {
                            None => self.at_key(&member, format!("unknown step type `{key}`")),
                            Some(_) => self.at_key(&member, format!("unknown key `{key}`")),
                        };
                        match (closest(key, candidates.iter().copied()), step_type) {
                            (Some(near), _) => self.help(format!("did you mean `{near}`?")),
                            (None, None) => {
                                self.help(format!("the step types are: {}", STEP_TYPES.join(", ")))
                            }
                            (None, Some(kind)) => self.help(format!(
                                "{} `{kind}` step takes: {}",
                                article(kind),
                                candidates.join(", ")
                            )),
                        }
                        continue;
                    }
                    self.at_key(&member, format!("unknown key `{key}`"));
                    match closest(key, known.iter().map(String::as_str)) {
                        Some(near) => self.help(format!("did you mean `{near}`?")),
                        None => {
                            let mut known = known.clone();
                            known.sort();
                            self.help(format!("the keys here are: {}", known.join(", ")));
                        }
                    }
                }
            }
            K::Required { property } => {
                let name = property.as_str().unwrap_or_default().to_owned();
                let member = format!("{pointer}/{}", escape(&name));
                let error = FileError::new(
                    self.path,
                    self.positions.value(&pointer),
                    format!("missing required key `{name}`"),
                )
                .key(key_path(&member));
                self.errors.push(error);
                if name == "id" {
                    self.help(
                        "give every step an `id`: letters, digits, `-` and `_`, unique in the file",
                    );
                }
            }
            K::Type { kind } => {
                let expected = match kind {
                    jsonschema::error::TypeKind::Single(t) => plain_type(&t.to_string()),
                    jsonschema::error::TypeKind::Multiple(types) => {
                        let first = types
                            .into_iter()
                            .map(|t| t.to_string())
                            .find(|t| t != "null")
                            .unwrap_or_else(|| "null".to_owned());
                        plain_type(&first)
                    }
                };
                self.at_value(
                    &pointer,
                    format!("expected {expected}, found {}", type_name(instance)),
                );
            }
            K::Enum { options } => {
                let options: Vec<String> = options
                    .as_array()
                    .map(|o| o.iter().map(|v| format!("`{}`", plain(v))).collect())
                    .unwrap_or_default();
                self.at_value(
                    &pointer,
                    format!("`{}` is not one of {}", plain(instance), options.join(", ")),
                );
                let words: Vec<String> = options
                    .iter()
                    .map(|o| o.trim_matches('`').to_owned())
                    .collect();
                if let Some(near) = closest(&plain(instance), words.iter().map(String::as_str)) {
                    self.help(format!("did you mean `{near}`?"));
                }
            }
            K::AnyOf { context } | K::OneOfNotValid { context } => {
                // Options (`anyOf: [X, null]`) and untagged enums: report the branch that
                // got furthest, else one message for the whole value.
                let informative: Vec<&Vec<jsonschema::ValidationError<'static>>> = context
                    .iter()
                    .filter(|branch| {
                        !branch.iter().all(|e| {
                            e.instance_path().as_str() == pointer
                                && matches!(e.kind(), K::Type { .. } | K::Enum { .. })
                        })
                    })
                    .collect();
                let constants: Vec<String> = context
                    .iter()
                    .flatten()
                    .flat_map(|e| match e.kind() {
                        K::Constant { expected_value } => vec![plain(expected_value)],
                        K::Enum { options } => options
                            .as_array()
                            .map(|o| o.iter().map(plain).collect())
                            .unwrap_or_default(),
                        _ => Vec::new(),
                    })
                    .collect();
                let all_constants = context.iter().flatten().all(|e| {
                    matches!(e.kind(), K::Constant { .. } | K::Enum { .. })
                        && e.instance_path().as_str() == pointer
                });
                if pointer.ends_with("/parallel") {
                    self.at_value(
                        &pointer,
                        format!("`{}` is not a way to wait for branches", plain(instance)),
                    );
                    self.help("use `all`, `any`, or a number of branches");
                } else if all_constants && !constants.is_empty() {
                    let listed: Vec<String> = constants.iter().map(|c| format!("`{c}`")).collect();
                    self.at_value(
                        &pointer,
                        format!("`{}` is not one of {}", plain(instance), listed.join(", ")),
                    );
                    if let Some(near) =
                        closest(&plain(instance), constants.iter().map(String::as_str))
                    {
                        self.help(format!("did you mean `{near}`?"));
                    }
                } else if let [branch] = informative.as_slice() {
                    for inner in branch.iter() {
                        self.schema_error(schema, document, inner);
                    }
                } else {
                    let expected: Vec<String> = context
                        .iter()
                        .flatten()
                        .filter_map(|e| match e.kind() {
                            K::Type {
                                kind: jsonschema::error::TypeKind::Single(t),
                            } if t.to_string() != "null" => {
                                Some(plain_type(&t.to_string()).to_owned())
                            }
                            _ => None,
                        })
                        .collect();
                    if expected.is_empty() {
                        self.at_value(&pointer, format!("invalid value: {error}"));
                    } else {
                        self.at_value(
                            &pointer,
                            format!(
                                "expected {}, found {}",
                                expected.join(" or "),
                                type_name(instance)
                            ),
                        );
                    }
                }
            }
            _ => {
                self.at_value(&pointer, format!("invalid value: {error}"));
            }
        }
    }

    // ---- document-level checks ----

    fn document(&mut self, doc: &WorkflowDoc) {
        if let Some(slug) = &doc.slug
            && !is_step_id(slug)
        {
            self.at_value(
                "/slug",
                format!("the slug `{slug}` may hold only letters, digits, `-` and `_`"),
            );
        }
        self.json_schema("/input", doc.input.as_ref());
        self.json_schema("/output", doc.output.as_ref());
        for name in doc.vars.keys() {
            self.identifier(&format!("/vars/{}", escape(name)), name, true);
        }
        for (what, value) in [
            ("timeout", &doc.options.timeout),
            ("retention", &doc.options.retention),
        ] {
            if let Some(text) = value {
                self.duration(&format!("/options/{what}"), text);
            }
        }
        if doc.options.max_attempts == Some(0) {
            self.at_value("/options/max_attempts", "`max_attempts` must be at least 1");
        }
        for (i, trigger) in doc.triggers.iter().enumerate() {
            let pointer = format!("/triggers/{i}");
            let kinds: Vec<&str> = [
                ("cron", trigger.cron.is_some()),
                ("webhook", trigger.webhook.is_some()),
                ("poll", trigger.poll.is_some()),
                ("event", trigger.event.is_some()),
            ]
            .into_iter()
            .filter_map(|(k, set)| set.then_some(k))
            .collect();
            match kinds.as_slice() {
                [] => {
                    self.at_value(
                        &pointer,
                        "a trigger needs one of `cron`, `webhook`, `poll`, `event`",
                    );
                }
                [_] => {}
                [_, second, ..] => {
                    self.at_key(
                        &format!("{pointer}/{second}"),
                        format!("a trigger takes one of `cron`, `webhook`, `poll`, `event`; this one has {}", kinds.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")),
                    );
                    self.help("declare one trigger per list item");
                }
            }
            if let Some(cron) = &trigger.cron {
                if let Err(e) = croner::Cron::from_str(cron) {
                    self.at_value(
                        &format!("{pointer}/cron"),
                        format!("`{cron}` is not a cron expression: {e}"),
                    );
                    self.help("use five fields `minute hour day-of-month month day-of-week` (`0 9 * * *`: 09:00 every day), or six with seconds first");
                }
            } else {
                for key in ["timezone", "input", "name"] {
                    let member = format!("{pointer}/{key}");
                    if self.positions.has(&member) {
                        self.at_key(&member, format!("`{key}` applies to `cron` triggers only"));
                    }
                }
            }
            if let Some(tz) = &trigger.timezone
                && chrono_tz::Tz::from_str(tz).is_err()
            {
                self.at_value(
                    &format!("{pointer}/timezone"),
                    format!("unknown time zone `{tz}`"),
                );
                self.help("use an IANA name such as `UTC`, `Europe/Paris` or `America/New_York`");
            }
            if let Some(input) = &trigger.input {
                self.compile_template(&format!("{pointer}/input"), input);
            }
        }
    }

    /// Checks that a JSON Schema written in the file (`input`, `output`, `output_schema`,
    /// `schema`) compiles.
    fn json_schema(&mut self, pointer: &str, schema: Option<&Value>) {
        if let Some(schema) = schema
            && let Err(e) = jsonschema::options().build(schema)
        {
            self.at_value(pointer, format!("not a valid JSON Schema: {e}"));
        }
    }

    fn identifier(&mut self, pointer: &str, name: &str, key: bool) {
        if !is_identifier(name) {
            let message = format!(
                "`{name}` is not a variable name: use letters, digits and `_`, not starting with a digit"
            );
            if key {
                self.at_key(pointer, message);
            } else {
                self.at_value(pointer, message);
            }
        }
    }

    fn duration(&mut self, pointer: &str, text: &str) -> Option<std::time::Duration> {
        match humantime::parse_duration(text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.at_value(pointer, format!("`{text}` is not a duration: {e}"));
                self.help("write a duration such as `30s`, `5m`, `1h 30m` or `2d`");
                None
            }
        }
    }

    // ---- expressions and templates ----

    fn expr(&mut self, pointer: &str, source: &str) -> Expr {
        let inner = strip_braces(source);
        if inner.is_empty() {
            self.at_value(pointer, "the expression is empty");
        } else if let Err(e) = super::expr::expression_names(inner) {
            self.at_value(
                pointer,
                format!("the expression `{inner}` does not compile: {e}"),
            );
        }
        Expr {
            source: inner.to_owned(),
            at: self.positions.value(pointer),
        }
    }

    fn template(&mut self, pointer: &str, value: Value) -> Template {
        self.compile_template(pointer, &value);
        Template {
            at: self.positions.value(pointer),
            value,
        }
    }

    fn compile_template(&mut self, pointer: &str, value: &Value) {
        match value {
            Value::String(text) if text.contains("{{") || text.contains("{%") => {
                if let Err(e) = super::expr::template_names(text) {
                    self.at_value(
                        pointer,
                        format!("the template `{text}` does not compile: {e}"),
                    );
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.compile_template(&format!("{pointer}/{i}"), item);
                }
            }
            Value::Object(map) => {
                for (k, v) in map {
                    self.compile_template(&format!("{pointer}/{}", escape(k)), v);
                }
            }
            _ => {}
        }
    }

    // ---- steps ----

    fn steps(&mut self, pointer: &str, defs: &[StepDef], raw: &Value) -> Vec<Step> {
        let empty = Vec::new();
        let raw = raw.as_array().unwrap_or(&empty);
        defs.iter()
            .enumerate()
            .filter_map(|(i, def)| {
                let raw = raw.get(i).and_then(Value::as_object);
                self.step(&format!("{pointer}/{i}"), def, raw)
            })
            .collect()
    }

    fn list(
        &mut self,
        pointer: &str,
        defs: &Option<Vec<StepDef>>,
        raw: &Map<String, Value>,
        key: &str,
    ) -> Vec<Step> {
        match defs {
            Some(defs) => self.steps(
                &format!("{pointer}/{key}"),
                defs,
                raw.get(key).unwrap_or(&Value::Null),
            ),
            None => Vec::new(),
        }
    }

    fn require(&mut self, pointer: &str, raw: &Map<String, Value>, kind: &str, key: &str) -> bool {
        let present = match raw.get(key) {
            None | Some(Value::Null) => false,
            Some(Value::Array(items)) => !items.is_empty(),
            Some(Value::Object(map)) => !map.is_empty(),
            Some(_) => true,
        };
        if !present {
            self.at_key(
                &format!("{pointer}/{kind}"),
                format!("{} `{kind}` step needs `{key}`", article(kind)),
            );
        }
        present
    }

    fn step(
        &mut self,
        pointer: &str,
        def: &StepDef,
        raw: Option<&Map<String, Value>>,
    ) -> Option<Step> {
        let empty = Map::new();
        let raw = raw.unwrap_or(&empty);
        let id_pointer = format!("{pointer}/id");
        let at = self.positions.key(&id_pointer);
        let id = def.id.clone();
        if !is_step_id(&id) {
            self.at_value(
                &id_pointer,
                format!("the step id `{id}` may hold only letters, digits, `-` and `_`"),
            );
        } else if let Some(first) = self.ids.get(&id) {
            let first = *first;
            self.at_value(
                &id_pointer,
                format!(
                    "duplicate step id `{id}` (first at {}:{})",
                    first.line, first.column
                ),
            );
            self.help("step ids are unique in a file, nested steps included: rename one");
        } else {
            self.ids
                .insert(id.clone(), self.positions.value(&id_pointer));
        }

        // Exactly one step type key, and only the keys it takes.
        let types: Vec<&str> = STEP_TYPES
            .iter()
            .copied()
            .filter(|k| raw.contains_key(*k))
            .collect();
        let kind = match types.as_slice() {
            [] => {
                self.at_key(&id_pointer, format!("step `{id}` has no step type"));
                self.help(format!("give it one of: {}", STEP_TYPES.join(", ")));
                None
            }
            [one] => Some(*one),
            [first, rest @ ..] => {
                let names: Vec<String> = types.iter().map(|t| format!("`{t}`")).collect();
                self.at_key(
                    &format!("{pointer}/{}", rest[0]),
                    format!("step `{id}` has several step types: {}", names.join(", ")),
                );
                self.help(format!(
                    "a step does one thing: keep `{first}` and move the rest to steps of their own"
                ));
                None
            }
        };
        if let Some(kind) = kind {
            let allowed = type_keys(kind);
            for key in raw.keys() {
                let key = key.as_str();
                if key == kind || COMMON_KEYS.contains(&key) || allowed.contains(&key) {
                    continue;
                }
                self.at_key(
                    &format!("{pointer}/{}", escape(key)),
                    format!("`{key}` does not apply to {} `{kind}` step", article(kind)),
                );
                if allowed.is_empty() {
                    self.help(format!(
                        "{} `{kind}` step takes only `{kind}` and the keys every step has ({})",
                        article(kind),
                        COMMON_KEYS.join(", ")
                    ));
                } else {
                    self.help(format!(
                        "{} `{kind}` step takes: {} (and the keys every step has)",
                        article(kind),
                        allowed.join(", ")
                    ));
                }
            }
        }

        // The keys every step has.
        let when = def
            .when
            .as_deref()
            .map(|w| self.expr(&format!("{pointer}/when"), w));
        let timeout = def
            .timeout
            .as_deref()
            .and_then(|t| self.duration(&format!("{pointer}/timeout"), t));
        let retry = def.retry.as_ref().and_then(|r| {
            let retry_pointer = format!("{pointer}/retry");
            if r.max_attempts == 0 {
                self.at_value(
                    &format!("{retry_pointer}/max_attempts"),
                    "`max_attempts` must be at least 1 (it counts the first attempt)",
                );
            }
            let delay = match &r.delay {
                Some(d) => self.duration(&format!("{retry_pointer}/delay"), d)?,
                None => std::time::Duration::from_secs(1),
            };
            let max_delay = match &r.max_delay {
                Some(d) => self.duration(&format!("{retry_pointer}/max_delay"), d)?,
                None => std::time::Duration::from_secs(300),
            };
            let policy = match r.backoff {
                Some(Backoff::Fixed) => crate::RetryPolicy::exponential(delay).max_delay(delay),
                _ => crate::RetryPolicy::exponential(delay)
                    .max_delay(max_delay)
                    .jitter(0.25),
            };
            Some(policy.max_attempts(r.max_attempts.max(1)))
        });
        let error_handling = def.error_handling.unwrap_or(ErrorHandling::Stop);
        let has_fallback = def.fallback.as_ref().is_some_and(|f| !f.is_empty());
        if error_handling == ErrorHandling::Fallback && !has_fallback {
            self.at_value(
                &format!("{pointer}/error_handling"),
                "`error_handling: fallback` needs `fallback` steps",
            );
            self.help("add `fallback:` with the steps to run when this step fails");
        } else if error_handling != ErrorHandling::Fallback && raw.contains_key("fallback") {
            self.at_key(
                &format!("{pointer}/fallback"),
                "`fallback` steps run only with `error_handling: fallback`",
            );
            self.help("add `error_handling: fallback` to this step, or remove `fallback`");
        }
        let fallback = self.list(pointer, &def.fallback, raw, "fallback");
        let compensate = self.list(pointer, &def.compensate, raw, "compensate");
        if let Some(name) = &def.output_variable {
            self.identifier(&format!("{pointer}/output_variable"), name, false);
        }

        self.json_schema(
            &format!("{pointer}/output_schema"),
            def.output_schema.as_ref(),
        );
        self.json_schema(&format!("{pointer}/schema"), def.schema.as_ref());
        let kind = self.kind(pointer, kind?, def, raw, &id)?;
        Some(Step {
            id: id.clone(),
            at,
            name: def.name.clone().unwrap_or(id),
            when,
            timeout,
            retry,
            error_handling,
            fallback,
            compensate,
            output_variable: def.output_variable.clone(),
            kind,
        })
    }

    fn item(&mut self, pointer: &str, def: &StepDef) -> String {
        match &def.as_ {
            Some(name) => {
                self.loop_name(&format!("{pointer}/as"), name);
                name.clone()
            }
            None => "item".to_owned(),
        }
    }

    fn loop_name(&mut self, pointer: &str, name: &str) {
        if !is_identifier(name) {
            self.identifier(pointer, name, false);
        } else if RESERVED.contains(&name) {
            self.at_value(
                pointer,
                format!("`{name}` is taken by the expression scope: pick another name"),
            );
        }
    }

    fn kind(
        &mut self,
        pointer: &str,
        kind: &str,
        def: &StepDef,
        raw: &Map<String, Value>,
        id: &str,
    ) -> Option<StepKind> {
        let p = |key: &str| format!("{pointer}/{key}");
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        Some(match kind {
            "action" | "workflow" => {
                let input = self.template(&p("input"), def.input.clone().unwrap_or(Value::Null));
                let slug = if kind == "action" {
                    text(&def.action)
                } else {
                    text(&def.workflow)
                };
                if slug.trim().is_empty() {
                    self.at_value(&p(kind), format!("`{kind}` needs a slug"));
                }
                if kind == "action" {
                    StepKind::Action { slug, input }
                } else {
                    StepKind::Workflow { slug, input }
                }
            }
            "prompt" => StepKind::Prompt {
                prompt: self.template(&p("prompt"), Value::String(text(&def.prompt))),
                model: def.model.clone(),
                system: def
                    .system
                    .clone()
                    .map(|s| self.template(&p("system"), Value::String(s))),
                temperature: def.temperature,
                output_schema: def.output_schema.clone(),
            },
            "agent" => {
                let agent = def.agent.clone().unwrap_or_default();
                self.require(pointer, raw, "agent", "message");
                if agent.max_turns == Some(0) {
                    self.at_value(&p("agent/max_turns"), "`max_turns` must be at least 1");
                }
                StepKind::Agent {
                    name: agent.name.clone().unwrap_or_else(|| id.to_owned()),
                    instructions: agent
                        .instructions
                        .clone()
                        .map(|s| self.template(&p("agent/instructions"), Value::String(s))),
                    tools: agent.tools.clone(),
                    max_turns: agent.max_turns.unwrap_or(10),
                    model: def.model.clone(),
                    message: self.template(&p("message"), Value::String(text(&def.message))),
                }
            }
            "if" => StepKind::If {
                condition: self.expr(&p("if"), &text(&def.if_)),
                then: self.list(pointer, &def.then, raw, "then"),
                otherwise: self.list(pointer, &def.else_, raw, "else"),
            },
            "switch" => {
                self.require(pointer, raw, "switch", "cases");
                let value = self.expr(&p("switch"), &text(&def.switch));
                let raw_cases = raw.get("cases").and_then(Value::as_object);
                // File order: the raw mapping keeps it (the typed one is sorted).
                let order: Vec<String> = match raw_cases {
                    Some(map) => map.keys().cloned().collect(),
                    None => Vec::new(),
                };
                let mut cases = Vec::new();
                for name in order {
                    if let Some(defs) = def.cases.as_ref().and_then(|c| c.get(&name)) {
                        let raw_list = raw_cases.and_then(|m| m.get(&name)).unwrap_or(&Value::Null);
                        let steps = self.steps(
                            &format!("{pointer}/cases/{}", escape(&name)),
                            defs,
                            raw_list,
                        );
                        cases.push((name, steps));
                    }
                }
                StepKind::Switch {
                    value,
                    cases,
                    default: self.list(pointer, &def.default, raw, "default"),
                }
            }
            "for_each" => {
                self.require(pointer, raw, "for_each", "steps");
                if def.concurrency == Some(0) {
                    self.at_value(&p("concurrency"), "`concurrency` must be at least 1");
                }
                StepKind::ForEach {
                    items: self.expr(&p("for_each"), &text(&def.for_each)),
                    item: self.item(pointer, def),
                    concurrency: def.concurrency.unwrap_or(1).max(1) as usize,
                    steps: self.list(pointer, &def.steps, raw, "steps"),
                }
            }
            "while" => {
                self.require(pointer, raw, "while", "steps");
                if def.max_iterations == Some(0) {
                    self.at_value(&p("max_iterations"), "`max_iterations` must be at least 1");
                }
                StepKind::While {
                    condition: self.expr(&p("while"), &text(&def.while_)),
                    max_iterations: def.max_iterations.unwrap_or(100),
                    steps: self.list(pointer, &def.steps, raw, "steps"),
                }
            }
            "map" => {
                self.require(pointer, raw, "map", "value");
                StepKind::Map {
                    items: self.expr(&p("map"), &text(&def.map)),
                    item: self.item(pointer, def),
                    value: self.template(&p("value"), def.value.clone().unwrap_or(Value::Null)),
                }
            }
            "filter" => {
                self.require(pointer, raw, "filter", "where");
                StepKind::Filter {
                    items: self.expr(&p("filter"), &text(&def.filter)),
                    item: self.item(pointer, def),
                    condition: self.expr(&p("where"), def.where_.as_deref().unwrap_or("true")),
                }
            }
            "reduce" => {
                self.require(pointer, raw, "reduce", "value");
                let accumulator = match &def.accumulator {
                    Some(name) => {
                        self.loop_name(&p("accumulator"), name);
                        name.clone()
                    }
                    None => "acc".to_owned(),
                };
                StepKind::Reduce {
                    items: self.expr(&p("reduce"), &text(&def.reduce)),
                    item: self.item(pointer, def),
                    initial: self
                        .template(&p("initial"), def.initial.clone().unwrap_or(Value::Null)),
                    accumulator,
                    value: self.template(&p("value"), def.value.clone().unwrap_or(Value::Null)),
                }
            }
            "parallel" => {
                self.require(pointer, raw, "parallel", "branches");
                let wait = def
                    .parallel
                    .unwrap_or(ParallelWait::Mode(super::format::WaitMode::All));
                let defs = def.branches.clone().unwrap_or_default();
                if let ParallelWait::Count(n) = wait
                    && (n == 0 || n as usize > defs.len())
                {
                    self.at_value(
                        &p("parallel"),
                        format!(
                            "`parallel: {n}` waits for {n} branches, but the step has {}",
                            defs.len()
                        ),
                    );
                    self.help(format!(
                        "use a number from 1 to {}, or `all` / `any`",
                        defs.len()
                    ));
                }
                let raw_branches = raw.get("branches").and_then(Value::as_array);
                let mut names: HashMap<String, Pos> = HashMap::new();
                let mut branches = Vec::new();
                for (i, branch) in defs.iter().enumerate() {
                    let bp = format!("{pointer}/branches/{i}");
                    let name_pointer = format!("{bp}/name");
                    if let Some(first) = names.get(&branch.name) {
                        let first = *first;
                        self.at_value(
                            &name_pointer,
                            format!(
                                "duplicate branch name `{}` (first at {}:{})",
                                branch.name, first.line, first.column
                            ),
                        );
                    } else {
                        names.insert(branch.name.clone(), self.positions.value(&name_pointer));
                    }
                    let raw_steps = raw_branches
                        .and_then(|b| b.get(i))
                        .and_then(|b| b.get("steps"))
                        .unwrap_or(&Value::Null);
                    let steps = self.steps(&format!("{bp}/steps"), &branch.steps, raw_steps);
                    branches.push((branch.name.clone(), steps));
                }
                StepKind::Parallel { wait, branches }
            }
            "try" => StepKind::Try {
                steps: self.list(pointer, &def.try_, raw, "try"),
                catch: self.list(pointer, &def.catch, raw, "catch"),
                finally: self.list(pointer, &def.finally, raw, "finally"),
            },
            "sleep" => {
                let d = text(&def.sleep);
                if !(d.contains("{{") || d.contains("{%")) {
                    self.duration(&p("sleep"), &d);
                }
                StepKind::Sleep(self.template(&p("sleep"), Value::String(d)))
            }
            "sleep_until" => {
                let t = text(&def.sleep_until);
                if !(t.contains("{{") || t.contains("{%"))
                    && chrono::DateTime::parse_from_rfc3339(&t).is_err()
                {
                    self.at_value(&p("sleep_until"), format!("`{t}` is not an RFC 3339 time"));
                    self.help("write a time such as `2026-12-24T09:00:00Z`, or a template that renders to one");
                }
                StepKind::SleepUntil(self.template(&p("sleep_until"), Value::String(t)))
            }
            "hook" => StepKind::Hook {
                label: text(&def.hook),
                schema: def.schema.clone(),
            },
            "signal" => StepKind::Signal {
                name: text(&def.signal),
                schema: def.schema.clone(),
            },
            "event" => StepKind::Event {
                name: text(&def.event),
                matching: def
                    .match_
                    .iter()
                    .flatten()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            self.template(&p(&format!("match/{}", escape(k))), v.clone()),
                        )
                    })
                    .collect(),
            },
            "select" => StepKind::Select(self.list(pointer, &def.select, raw, "select")),
            "set" => {
                let mut set = Vec::new();
                for (name, value) in def.set.iter().flatten() {
                    let member = format!("{pointer}/set/{}", escape(name));
                    self.identifier(&member, name, true);
                    set.push((name.clone(), self.template(&member, value.clone())));
                }
                StepKind::Set(set)
            }
            "fail" => StepKind::Fail {
                message: self.template(&p("fail"), Value::String(text(&def.fail))),
                kind: def
                    .kind
                    .clone()
                    .unwrap_or_else(|| "workflow_failed".to_owned()),
            },
            "return" => StepKind::Return(self.template(
                &p("return"),
                raw.get("return").cloned().unwrap_or(Value::Null),
            )),
            _ => return None,
        })
    }
}

/// A value as written in a message (strings without quotes).
fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `a` or `an` before a step type key.
pub(crate) fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}
