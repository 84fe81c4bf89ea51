//! Forms built from JSON Schemas: the start form of a workflow (its input schema) and the
//! delivery form of a hook (its payload schema). One builder for both.
//!
//! An object schema with `properties` becomes one field per property: a text input for
//! `string`, a number input for `number`/`integer`, a checkbox for a required `boolean` (a
//! true/false/unset select when optional), a select for `enum` (or a `oneOf`/`anyOf` of
//! `const`s), and a JSON textarea for anything else (objects, arrays, unions). Any other
//! schema becomes one JSON textarea for the whole payload. `ui.js` turns the fields back
//! into JSON, posts it, and puts each violation of a 422 answer next to the field its JSON
//! pointer names.

use maud::{Markup, html};
use serde_json::{Map, Value};

/// What the form does once the server accepted it.
#[derive(Clone, Copy)]
pub(crate) enum Then {
    /// Go to the page of the run in the answer's `run_id` (starting a run).
    OpenRun,
    /// Stay, and refresh the page's live region (delivering a hook).
    Refresh,
}

/// A form posting the JSON that `schema` describes to `action`.
pub(crate) fn schema_form(schema: &Value, action: &str, submit: &str, then: Then) -> Markup {
    let fields = fields_of(schema);
    let then = match then {
        Then::OpenRun => "run",
        Then::Refresh => "refresh",
    };
    html! {
        form.schema-form data-action=(action) data-then=(then) novalidate {
            @for field in &fields { (field_markup(field)) }
            div.form-error {}
            div { button.primary type="submit" { (submit) } }
        }
    }
}

/// How a field is edited.
#[derive(Debug, PartialEq)]
enum Control {
    Text,
    Number,
    Integer,
    Checkbox,
    /// Options as (JSON text, label); an empty value means "not given".
    Select(Vec<(String, String)>),
    Json,
}

/// One field of the form.
#[derive(Debug)]
struct Field {
    /// The property name; `None` for the whole payload.
    name: Option<String>,
    required: bool,
    control: Control,
    description: Option<String>,
    /// The initial value, as the control shows it.
    initial: Option<String>,
}

fn fields_of(root: &Value) -> Vec<Field> {
    let schema = resolve(root, root);
    let properties = schema.get("properties").and_then(Value::as_object);
    let is_object = type_of(schema).as_deref() == Some("object");
    match properties {
        Some(properties) if is_object || schema.get("type").is_none() => {
            let required: Vec<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .map(|names| names.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            // Required fields first, each group in the schema's (alphabetical) order.
            let mut fields: Vec<Field> = properties
                .iter()
                .map(|(name, property)| {
                    field(
                        Some(name.clone()),
                        resolve(root, property),
                        root,
                        required.contains(&name.as_str()),
                    )
                })
                .collect();
            fields.sort_by_key(|f| !f.required);
            fields
        }
        _ => vec![Field {
            name: None,
            required: true,
            control: Control::Json,
            description: description(schema),
            initial: schema.get("default").map(pretty),
        }],
    }
}

fn field(name: Option<String>, schema: &Value, root: &Value, required: bool) -> Field {
    let schema = non_null(schema, root);
    let default = schema.get("default");
    let (control, initial) = if let Some(options) = choices(schema, root) {
        let initial = default.map(Value::to_string);
        (Control::Select(options), initial)
    } else {
        match type_of(schema).as_deref() {
            Some("string") => (
                Control::Text,
                default.and_then(Value::as_str).map(str::to_owned),
            ),
            Some("integer") => (Control::Integer, default.map(Value::to_string)),
            Some("number") => (Control::Number, default.map(Value::to_string)),
            Some("boolean") if required => (
                Control::Checkbox,
                default.and_then(Value::as_bool).map(|b| b.to_string()),
            ),
            Some("boolean") => (
                Control::Select(vec![
                    ("true".into(), "true".into()),
                    ("false".into(), "false".into()),
                ]),
                default.map(Value::to_string),
            ),
            _ => (Control::Json, default.map(pretty)),
        }
    };
    Field {
        name,
        required,
        control,
        description: description(schema),
        initial,
    }
}

fn field_markup(field: &Field) -> Markup {
    let pointer = field
        .name
        .as_deref()
        .map(|n| format!("/{}", n.replace('~', "~0").replace('/', "~1")))
        .unwrap_or_default();
    let label = field.name.as_deref().unwrap_or("Payload (JSON)");
    let id = format!("f{}", pointer.replace(['/', '~'], "-"));
    let name = field.name.as_deref();
    let required = field.required.then_some("");
    html! {
        div.field data-pointer=(pointer) {
            label for=(id) {
                (label)
                @if field.required && field.control != Control::Checkbox { span.req title="required" { "*" } }
            }
            @if let Some(text) = &field.description { p.hint { (super::layout::doc_text(text)) } }
            @match &field.control {
                Control::Text => input #(id) type="text" data-type="string" data-name=[name] data-required=[required] value=[field.initial.as_deref()];
                Control::Number => input #(id) type="number" step="any" data-type="number" data-name=[name] data-required=[required] value=[field.initial.as_deref()];
                Control::Integer => input #(id) type="number" step="1" data-type="integer" data-name=[name] data-required=[required] value=[field.initial.as_deref()];
                Control::Checkbox => input #(id) type="checkbox" data-type="boolean" data-name=[name] data-required=[required] checked[field.initial.as_deref() == Some("true")];
                Control::Select(options) => select #(id) data-type="select" data-name=[name] data-required=[required] {
                    option value="" { "—" }
                    @for (value, text) in options {
                        option value=(value) selected[field.initial.as_deref() == Some(value.as_str())] { (text) }
                    }
                },
                Control::Json => textarea #(id) data-type="json" data-name=[name] data-required=[required] spellcheck="false" placeholder="JSON" { (field.initial.as_deref().unwrap_or("")) },
            }
            div.violations {}
        }
    }
}

/// `schema` with a `$ref` into the root's `$defs`/`definitions` followed (a few levels).
fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    let mut current = schema;
    for _ in 0..8 {
        let Some(reference) = current.get("$ref").and_then(Value::as_str) else {
            break;
        };
        let Some(target) = reference
            .strip_prefix('#')
            .and_then(|pointer| root.pointer(pointer))
        else {
            break;
        };
        current = target;
    }
    current
}

/// An optional value's schema without its `null` branch: `{"type": ["string", "null"]}`
/// and `{"anyOf": [X, {"type": "null"}]}` edit as `string` and X.
fn non_null<'a>(schema: &'a Value, root: &'a Value) -> &'a Value {
    for key in ["anyOf", "oneOf"] {
        if let Some(branches) = schema.get(key).and_then(Value::as_array) {
            let rest: Vec<&Value> = branches
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) != Some("null"))
                .collect();
            if rest.len() == 1 && branches.len() == 2 {
                return resolve(root, rest[0]);
            }
        }
    }
    schema
}

/// The single non-null type of a schema (`"string"`, `["string", "null"]`), if any.
fn type_of(schema: &Value) -> Option<String> {
    match schema.get("type")? {
        Value::String(t) => Some(t.clone()),
        Value::Array(types) => {
            let rest: Vec<&str> = types
                .iter()
                .filter_map(Value::as_str)
                .filter(|t| *t != "null")
                .collect();
            (rest.len() == 1).then(|| rest[0].to_owned())
        }
        _ => None,
    }
}

/// The options of an `enum`, a `const`, or a `oneOf`/`anyOf` of `const`s/`enum`s (with
/// their descriptions as labels); `None` for other schemas.
fn choices(schema: &Value, root: &Value) -> Option<Vec<(String, String)>> {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return Some(values.iter().map(option).collect());
    }
    if let Some(value) = schema.get("const") {
        return Some(vec![option(value)]);
    }
    for key in ["oneOf", "anyOf"] {
        let Some(branches) = schema.get(key).and_then(Value::as_array) else {
            continue;
        };
        let mut options = Vec::new();
        for branch in branches {
            let branch = resolve(root, branch);
            let booleans = [Value::Bool(true), Value::Bool(false)];
            let values: Vec<&Value> = if let Some(value) = branch.get("const") {
                vec![value]
            } else if let Some(values) = branch.get("enum").and_then(Value::as_array) {
                values.iter().collect()
            } else if type_of(branch).as_deref() == Some("boolean") {
                booleans.iter().collect()
            } else {
                return None;
            };
            for value in values {
                let (json, text) = option(value);
                let label = match branch.get("description").and_then(Value::as_str) {
                    Some(d) if branch.get("const").is_some() => {
                        format!("{text} — {}", first_line(d))
                    }
                    _ => text,
                };
                // `true` and `"true"` read the same: the first branch's is offered.
                if !options.iter().any(|(_, l)| *l == label) {
                    options.push((json, label));
                }
            }
        }
        return Some(options);
    }
    None
}

fn option(value: &Value) -> (String, String) {
    let label = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    (value.to_string(), label)
}

fn description(schema: &Value) -> Option<String> {
    schema
        .get("description")
        .or_else(|| schema.get("title"))
        .and_then(Value::as_str)
        .map(|d| d.trim().to_owned())
        .filter(|d| !d.is_empty())
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// An empty object schema, for hooks recorded without one (any JSON is taken).
pub(crate) fn any_schema() -> Value {
    Value::Object(Map::new())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_object_schema_becomes_one_field_per_property() {
        let schema = json!({
            "type": "object",
            "required": ["title", "approved"],
            "properties": {
                "title": {"type": "string", "description": "A title"},
                "count": {"type": ["integer", "null"]},
                "ratio": {"type": "number"},
                "approved": {"type": "boolean"},
                "maybe": {"type": "boolean"},
                "color": {"$ref": "#/$defs/Color"},
                "nested": {"type": "object"},
                "when": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "flag": {"anyOf": [{"type": "boolean"}, {"enum": ["true", "false"]}]},
            },
            "$defs": {"Color": {"enum": ["red", "green"]}}
        });
        let fields = fields_of(&schema);
        let by_name = |n: &str| {
            fields
                .iter()
                .find(|f| f.name.as_deref() == Some(n))
                .unwrap_or_else(|| panic!("no field {n}"))
        };
        assert_eq!(by_name("title").control, Control::Text);
        assert!(by_name("title").required);
        assert_eq!(by_name("title").description.as_deref(), Some("A title"));
        assert_eq!(by_name("count").control, Control::Integer);
        assert!(!by_name("count").required);
        assert_eq!(by_name("ratio").control, Control::Number);
        assert_eq!(by_name("approved").control, Control::Checkbox);
        assert!(matches!(by_name("maybe").control, Control::Select(_)));
        assert_eq!(
            by_name("color").control,
            Control::Select(vec![
                ("\"red\"".into(), "red".into()),
                ("\"green\"".into(), "green".into())
            ])
        );
        assert_eq!(by_name("nested").control, Control::Json);
        assert_eq!(
            by_name("flag").control,
            Control::Select(vec![
                ("true".into(), "true".into()),
                ("false".into(), "false".into())
            ]),
            "a boolean or its text: one true/false choice"
        );
        assert_eq!(by_name("when").control, Control::Text);
    }

    #[test]
    fn other_schemas_become_one_json_field() {
        for schema in [
            json!({"type": "string"}),
            json!({}),
            json!({"type": "array"}),
        ] {
            let fields = fields_of(&schema);
            assert_eq!(fields.len(), 1, "{schema}");
            assert_eq!(fields[0].name, None);
            assert_eq!(fields[0].control, Control::Json);
        }
        let markup = schema_form(&json!({}), "/hooks/t", "Send", Then::Refresh).into_string();
        assert!(markup.contains("data-pointer=\"\""), "{markup}");
        assert!(markup.contains("data-action=\"/hooks/t\""), "{markup}");
    }
}
