//! Checks of parsed workflow files against the registry and each other: unknown actions
//! and workflows, sub-workflow paths (rewritten to the slug of the file they name), agent
//! tools, workflows that call themselves, duplicate slugs, expressions and templates that
//! read undefined names, and action inputs that cannot match the action's input schema.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Component, Path, PathBuf};

use serde_json::{Map, Value};

use super::parse::{closest, strip_braces};
use super::program::{Expr, Pos, Step, StepKind, Template, WorkflowFile};
use super::yaml::{Positions, escape, key_path};
use super::{FileError, FileErrors};
use crate::registry::Registry;

/// The `ctx` values expressions may read.
const CTX: [&str; 6] = ["run_id", "workflow", "attempt", "now", "user", "project"];

/// minijinja's global functions (they show up as undeclared names).
const GLOBALS: [&str; 4] = ["range", "dict", "namespace", "debug"];

/// Checks `files` (all files loaded together) against `registry` (the code steps), and
/// rewrites each `workflow:` step that names a file by path (`./review-one.md`, relative
/// to the file it is in) to that file's slug.
///
/// # Errors
/// Every problem found, each naming its file, line and column, in file and position
/// order.
pub fn check_files(files: &mut [WorkflowFile], registry: &Registry) -> Result<(), FileErrors> {
    let mut errors = Vec::new();
    let positions: Vec<Positions> = files.iter().map(positions_of).collect();

    // Slugs: unique among files, and not taken by a code workflow or an action.
    let mut slugs: HashMap<&str, (&Path, Pos)> = HashMap::new();
    for (file, positions) in files.iter().zip(&positions) {
        let at = if positions.has("/slug") {
            positions.value("/slug")
        } else {
            Pos { line: 1, column: 1 }
        };
        let error = |message: String| FileError::new(&file.path, at, message).key("slug");
        if let Some((other, other_at)) = slugs.get(file.slug.as_str()) {
            errors.push(
                error(format!(
                    "the slug `{}` is taken by {}:{}:{}",
                    file.slug,
                    other.display(),
                    other_at.line,
                    other_at.column
                ))
                .help("give one of them another `slug:` (or file name)"),
            );
        } else {
            slugs.insert(&file.slug, (&file.path, at));
        }
        if registry
            .workflow(&file.slug)
            .is_some_and(|w| w.origin.is_none())
        {
            errors.push(
                error(format!(
                    "the slug `{}` is taken by a `#[workflow]` fn",
                    file.slug
                ))
                .help("give the file another `slug:` (or file name)"),
            );
        } else if registry.action(&file.slug).is_some() {
            errors.push(
                error(format!(
                    "the slug `{}` is taken by an `#[action]`",
                    file.slug
                ))
                .help("give the file another `slug:` (or file name)"),
            );
        }
    }

    // Sub-workflows by path → the file's slug.
    let file_paths: Vec<(PathBuf, String)> = files
        .iter()
        .map(|f| (normalize(&f.path), f.slug.clone()))
        .collect();
    let file_slugs: BTreeSet<String> = files.iter().map(|f| f.slug.clone()).collect();
    for (file, positions) in files.iter_mut().zip(&positions) {
        let pointers = step_pointers(positions);
        let dir = file
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let path = file.path.clone();
        walk_mut(&mut file.steps, &mut |step| {
            let StepKind::Workflow { slug, .. } = &mut step.kind else {
                return;
            };
            let pointer = format!("{}/workflow", pointer_of(&pointers, step.at));
            if !is_path(slug) {
                if !file_slugs.contains(slug.as_str()) && registry.workflow(slug).is_none() {
                    let known: Vec<String> = file_slugs
                        .iter()
                        .cloned()
                        .chain(registry.workflows().map(|w| w.registration.slug.to_owned()))
                        .collect();
                    let mut error = FileError::new(
                        &path,
                        positions.value(&pointer),
                        format!("unknown workflow `{slug}`"),
                    )
                    .key(key_path(&pointer));
                    error.help = Some(suggest(slug, &known, "workflows"));
                    if registry.action(slug).is_some() {
                        error.help = Some(format!("`{slug}` is an action: use `action: {slug}`"));
                    }
                    errors.push(error);
                }
                return;
            }
            let target = normalize(&dir.join(slug.as_str()));
            match file_paths.iter().find(|(p, _)| *p == target) {
                Some((_, found)) => *slug = found.clone(),
                None => errors.push(
                    FileError::new(
                        &path,
                        positions.value(&pointer),
                        format!(
                            "no workflow file `{slug}` (looked for {})",
                            target.display()
                        ),
                    )
                    .key(key_path(&pointer))
                    .help(
                        "a path is relative to this file and must name a loaded `.md`, `.yaml` or `.yml` file",
                    ),
                ),
            }
        });
    }

    // Workflows that call themselves, through any number of files.
    let calls: HashMap<&str, Vec<(&str, Pos)>> = files
        .iter()
        .map(|f| {
            let callees = f
                .all_steps()
                .into_iter()
                .filter_map(|s| match &s.kind {
                    StepKind::Workflow { slug, .. } if file_slugs.contains(slug) => {
                        Some((slug.as_str(), s.at))
                    }
                    _ => None,
                })
                .collect();
            (f.slug.as_str(), callees)
        })
        .collect();
    for (file, positions) in files.iter().zip(&positions) {
        let pointers = step_pointers(positions);
        for (callee, at) in calls.get(file.slug.as_str()).into_iter().flatten() {
            if let Some(cycle) = path_to(&calls, callee, &file.slug) {
                let pointer = format!("{}/workflow", pointer_of(&pointers, *at));
                let mut chain = vec![file.slug.as_str()];
                chain.extend(cycle);
                errors.push(
                    FileError::new(
                        &file.path,
                        positions.value(&pointer),
                        format!(
                            "workflow `{}` calls itself: {}",
                            file.slug,
                            chain.join(" → ")
                        ),
                    )
                    .key(key_path(&pointer))
                    .help("a workflow runs its sub-workflows inline: use a `while` or `for_each` loop instead of recursion"),
                );
            }
        }
    }

    // Per step: actions, tools, inputs, names read.
    let mut validators = Validators::default();
    for (file, positions) in files.iter().zip(&positions) {
        let mut checker = Checker {
            file,
            positions,
            pointers: step_pointers(positions),
            registry,
            file_slugs: &file_slugs,
            files,
            vars: var_names(file),
            ids: file.all_steps().iter().map(|s| s.id.clone()).collect(),
            loops: loop_names(file),
            errors: &mut errors,
            validators: &mut validators,
        };
        let globals = Vec::new();
        for (name, value) in &file.vars {
            checker.template(&format!("/vars/{}", escape(name)), value, &globals);
        }
        checker.steps(&file.steps, &globals);
    }

    if errors.is_empty() {
        return Ok(());
    }
    errors.sort_by(|a, b| (&a.path, a.at).cmp(&(&b.path, b.at)));
    errors.dedup();
    Err(FileErrors(errors))
}

/// The file's positions, read again from its text (a file that does not parse has none).
fn positions_of(file: &WorkflowFile) -> Positions {
    super::source::split(&file.path, &file.source)
        .ok()
        .and_then(|source| super::yaml::load(&file.path, &source).ok())
        .map(|yaml| yaml.positions)
        .unwrap_or_default()
}

/// Where each step's `id` key is → the step's JSON pointer.
fn step_pointers(positions: &Positions) -> HashMap<Pos, String> {
    positions.step_pointers()
}

fn pointer_of(pointers: &HashMap<Pos, String>, at: Pos) -> String {
    pointers.get(&at).cloned().unwrap_or_default()
}

/// Whether a `workflow:` value is a file path rather than a slug.
fn is_path(slug: &str) -> bool {
    slug.contains('/')
        || slug.contains('\\')
        || [".md", ".yaml", ".yml"].iter().any(|e| slug.ends_with(e))
}

/// `path` with `.` and `..` resolved lexically (and made absolute from the current
/// directory when it is relative).
fn normalize(path: &Path) -> PathBuf {
    let path = if path.is_relative() {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_owned())
    } else {
        path.to_owned()
    };
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// A "did you mean" or the list of what exists.
fn suggest(word: &str, known: &[String], what: &str) -> String {
    match closest(word, known.iter().map(String::as_str)) {
        Some(near) => format!("did you mean `{near}`?"),
        None if known.is_empty() => format!("no {what} are registered"),
        None => {
            let mut shown: Vec<&str> = known.iter().map(String::as_str).take(20).collect();
            shown.sort_unstable();
            format!("registered {what}: {}", shown.join(", "))
        }
    }
}

/// The slugs on a call path from `from` to `to` (both included), if there is one.
fn path_to<'a>(
    calls: &HashMap<&'a str, Vec<(&'a str, Pos)>>,
    from: &'a str,
    to: &str,
) -> Option<Vec<&'a str>> {
    let mut seen = HashSet::new();
    let mut stack: Vec<Vec<&'a str>> = vec![vec![from]];
    while let Some(path) = stack.pop() {
        let last = path[path.len() - 1];
        if last == to {
            return Some(path);
        }
        if !seen.insert(last) {
            continue;
        }
        for (next, _) in calls.get(last).into_iter().flatten() {
            let mut longer = path.clone();
            longer.push(next);
            stack.push(longer);
        }
    }
    None
}

fn walk_mut(steps: &mut [Step], f: &mut dyn FnMut(&mut Step)) {
    for step in steps {
        f(step);
        walk_mut(&mut step.fallback, f);
        walk_mut(&mut step.compensate, f);
        match &mut step.kind {
            StepKind::If {
                then, otherwise, ..
            } => {
                walk_mut(then, f);
                walk_mut(otherwise, f);
            }
            StepKind::Switch { cases, default, .. } => {
                for (_, steps) in cases {
                    walk_mut(steps, f);
                }
                walk_mut(default, f);
            }
            StepKind::ForEach { steps, .. }
            | StepKind::While { steps, .. }
            | StepKind::Select(steps) => walk_mut(steps, f),
            StepKind::Parallel { branches, .. } => {
                for (_, steps) in branches {
                    walk_mut(steps, f);
                }
            }
            StepKind::Try {
                steps,
                catch,
                finally,
            } => {
                walk_mut(steps, f);
                walk_mut(catch, f);
                walk_mut(finally, f);
            }
            _ => {}
        }
    }
}

/// Every variable name the file sets: front matter `vars`, `set` names, `output_variable`s.
fn var_names(file: &WorkflowFile) -> HashSet<String> {
    let mut names: HashSet<String> = file.vars.iter().map(|(n, _)| n.clone()).collect();
    for step in file.all_steps() {
        if let Some(name) = &step.output_variable {
            names.insert(name.clone());
        }
        if let StepKind::Set(set) = &step.kind {
            names.extend(set.iter().map(|(n, _)| n.clone()));
        }
    }
    names
}

/// Loop variable and accumulator names → the id of a step that declares them.
fn loop_names(file: &WorkflowFile) -> HashMap<String, String> {
    let mut names = HashMap::new();
    for step in file.all_steps() {
        match &step.kind {
            StepKind::ForEach { item, .. }
            | StepKind::Map { item, .. }
            | StepKind::Filter { item, .. } => {
                names.entry(item.clone()).or_insert_with(|| step.id.clone());
                names
                    .entry("index".to_owned())
                    .or_insert_with(|| step.id.clone());
            }
            StepKind::Reduce {
                item, accumulator, ..
            } => {
                names.entry(item.clone()).or_insert_with(|| step.id.clone());
                names
                    .entry(accumulator.clone())
                    .or_insert_with(|| step.id.clone());
                names
                    .entry("index".to_owned())
                    .or_insert_with(|| step.id.clone());
            }
            _ => {}
        }
    }
    names
}

/// Compiled input schemas, by slug (compiled once per check).
#[derive(Default)]
struct Validators {
    compiled: HashMap<String, Option<(Value, jsonschema::Validator)>>,
}

struct Checker<'a> {
    file: &'a WorkflowFile,
    positions: &'a Positions,
    pointers: HashMap<Pos, String>,
    registry: &'a Registry,
    file_slugs: &'a BTreeSet<String>,
    files: &'a [WorkflowFile],
    vars: HashSet<String>,
    ids: HashSet<String>,
    loops: HashMap<String, String>,
    errors: &'a mut Vec<FileError>,
    validators: &'a mut Validators,
}

impl Checker<'_> {
    fn error(&mut self, at: Pos, pointer: &str, message: String) -> &mut FileError {
        self.errors
            .push(FileError::new(&self.file.path, at, message).key(key_path(pointer)));
        let last = self.errors.len() - 1;
        &mut self.errors[last]
    }

    fn steps(&mut self, steps: &[Step], locals: &[String]) {
        for step in steps {
            self.step(step, locals);
        }
    }

    fn step(&mut self, step: &Step, locals: &[String]) {
        let p = pointer_of(&self.pointers, step.at);
        let key = |k: &str| format!("{p}/{k}");
        let with = |extra: &[&str]| {
            let mut l = locals.to_vec();
            l.extend(extra.iter().map(|s| (*s).to_owned()));
            l
        };
        if let Some(when) = &step.when {
            self.expr(&key("when"), when, locals);
        }
        self.steps(&step.fallback, &with(&["error"]));
        self.steps(&step.compensate, locals);
        match &step.kind {
            StepKind::Action { slug, input } => {
                self.template(&key("input"), input, locals);
                match self.registry.action(slug) {
                    Some(action) => {
                        let schema = (action.registration.input_schema)();
                        self.input(&p, "action", slug, &schema, &input.value);
                    }
                    None => {
                        let known: Vec<String> = self
                            .registry
                            .actions()
                            .map(|a| a.registration.slug.to_owned())
                            .collect();
                        let pointer = key("action");
                        let at = self.positions.value(&pointer);
                        let help = if self.registry.workflow(slug).is_some()
                            || self.file_slugs.contains(slug)
                        {
                            format!("`{slug}` is a workflow: use `workflow: {slug}`")
                        } else {
                            suggest(slug, &known, "actions")
                        };
                        self.error(at, &pointer, format!("unknown action `{slug}`"))
                            .help = Some(help);
                    }
                }
            }
            StepKind::Workflow { slug, input } => {
                self.template(&key("input"), input, locals);
                let schema = match self.registry.workflow(slug) {
                    Some(w) if w.origin.is_none() => Some(w.input_schema().clone()),
                    _ => self
                        .files
                        .iter()
                        .find(|f| &f.slug == slug)
                        .map(|f| f.input_schema.clone()),
                };
                if let Some(schema) = schema {
                    self.input(&p, "workflow", slug, &schema, &input.value);
                }
            }
            StepKind::Prompt { prompt, system, .. } => {
                self.template(&key("prompt"), prompt, locals);
                if let Some(system) = system {
                    self.template(&key("system"), system, locals);
                }
            }
            StepKind::Agent {
                instructions,
                tools,
                message,
                ..
            } => {
                if let Some(instructions) = instructions {
                    self.template(&key("agent/instructions"), instructions, locals);
                }
                self.template(&key("message"), message, locals);
                for (i, tool) in tools.iter().enumerate() {
                    let known = self.registry.action(tool).is_some()
                        || self.registry.workflow(tool).is_some()
                        || self.file_slugs.contains(tool);
                    if !known {
                        let all: Vec<String> = self
                            .registry
                            .actions()
                            .map(|a| a.registration.slug.to_owned())
                            .chain(
                                self.registry
                                    .workflows()
                                    .map(|w| w.registration.slug.to_owned()),
                            )
                            .chain(self.file_slugs.iter().cloned())
                            .collect();
                        let pointer = key(&format!("agent/tools/{i}"));
                        let at = self.positions.value(&pointer);
                        self.error(at, &pointer, format!("unknown agent tool `{tool}`"))
                            .help = Some(format!(
                            "a tool is a registered action or workflow; {}",
                            suggest(tool, &all, "actions and workflows")
                        ));
                    }
                }
            }
            StepKind::If {
                condition,
                then,
                otherwise,
            } => {
                self.expr(&key("if"), condition, locals);
                self.steps(then, locals);
                self.steps(otherwise, locals);
            }
            StepKind::Switch {
                value,
                cases,
                default,
            } => {
                self.expr(&key("switch"), value, locals);
                for (_, steps) in cases {
                    self.steps(steps, locals);
                }
                self.steps(default, locals);
            }
            StepKind::ForEach {
                items, item, steps, ..
            } => {
                self.expr(&key("for_each"), items, locals);
                self.steps(steps, &with(&[item, "index"]));
            }
            StepKind::While {
                condition, steps, ..
            } => {
                self.expr(&key("while"), condition, locals);
                self.steps(steps, locals);
            }
            StepKind::Map { items, item, value } => {
                self.expr(&key("map"), items, locals);
                self.template(&key("value"), value, &with(&[item, "index"]));
            }
            StepKind::Filter {
                items,
                item,
                condition,
            } => {
                self.expr(&key("filter"), items, locals);
                self.expr(&key("where"), condition, &with(&[item, "index"]));
            }
            StepKind::Reduce {
                items,
                item,
                initial,
                accumulator,
                value,
            } => {
                self.expr(&key("reduce"), items, locals);
                self.template(&key("initial"), initial, locals);
                self.template(&key("value"), value, &with(&[item, "index", accumulator]));
            }
            StepKind::Parallel { branches, .. } => {
                for (_, steps) in branches {
                    self.steps(steps, locals);
                }
            }
            StepKind::Try {
                steps,
                catch,
                finally,
            } => {
                self.steps(steps, locals);
                self.steps(catch, &with(&["error"]));
                self.steps(finally, locals);
            }
            StepKind::Sleep(t) => self.template(&key("sleep"), t, locals),
            StepKind::SleepUntil(t) => self.template(&key("sleep_until"), t, locals),
            StepKind::Hook { .. } | StepKind::Signal { .. } => {}
            StepKind::Event { matching, .. } => {
                for (k, t) in matching {
                    self.template(&key(&format!("match/{}", escape(k))), t, locals);
                }
            }
            StepKind::Select(steps) => self.steps(steps, locals),
            StepKind::Set(set) => {
                for (k, t) in set {
                    self.template(&key(&format!("set/{}", escape(k))), t, locals);
                }
            }
            StepKind::Fail { message, .. } => self.template(&key("fail"), message, locals),
            StepKind::Return(t) => self.template(&key("return"), t, locals),
        }
    }

    fn expr(&mut self, pointer: &str, expr: &Expr, locals: &[String]) {
        if let Ok(names) = super::expr::expression_names(strip_braces(&expr.source)) {
            let at = if self.positions.has(pointer) {
                self.positions.value(pointer)
            } else {
                expr.at
            };
            self.names(pointer, at, &names, locals);
        }
    }

    fn template(&mut self, pointer: &str, template: &Template, locals: &[String]) {
        self.value(pointer, &template.value, template.at, locals);
    }

    fn value(&mut self, pointer: &str, value: &Value, fallback: Pos, locals: &[String]) {
        match value {
            Value::String(text) if text.contains("{{") || text.contains("{%") => {
                if let Ok(names) = super::expr::template_names(text) {
                    let at = if self.positions.has(pointer) {
                        self.positions.value(pointer)
                    } else {
                        fallback
                    };
                    self.names(pointer, at, &names, locals);
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.value(&format!("{pointer}/{i}"), item, fallback, locals);
                }
            }
            Value::Object(map) => {
                for (k, v) in map {
                    self.value(&format!("{pointer}/{}", escape(k)), v, fallback, locals);
                }
            }
            _ => {}
        }
    }

    /// Checks that every name path in `names` is in scope.
    fn names(&mut self, pointer: &str, at: Pos, names: &BTreeSet<String>, locals: &[String]) {
        // `steps.fetch-diff.output` reads as `steps.fetch - diff.output`: report it once,
        // as the `steps.fetch` error, not also as an undefined `diff`.
        let mut dashed_parts: HashSet<String> = HashSet::new();
        for name in names {
            if let Some(id) = name
                .strip_prefix("steps.")
                .and_then(|r| r.split('.').next())
                && !self.ids.contains(id)
            {
                for known in &self.ids {
                    if let Some(rest) = known.strip_prefix(&format!("{id}-")) {
                        dashed_parts.extend(rest.split('-').map(str::to_owned));
                    }
                }
            }
        }
        for name in names {
            let mut parts = name.split('.');
            let head = parts.next().unwrap_or_default();
            let second = parts.next();
            if locals.iter().any(|l| l == head)
                || GLOBALS.contains(&head)
                || dashed_parts.contains(head)
            {
                continue;
            }
            let (message, help): (String, Option<String>) = match (head, second) {
                ("inputs", _) | ("ctx", None) | ("vars", None) | ("steps", None) => continue,
                ("ctx", Some(field)) => {
                    if CTX.contains(&field) {
                        continue;
                    }
                    (
                        format!("`ctx.{field}` is not a context value"),
                        Some(match closest(field, CTX) {
                            Some(near) => format!("did you mean `ctx.{near}`?"),
                            None => format!("`ctx` holds: {}", CTX.join(", ")),
                        }),
                    )
                }
                ("vars", Some(var)) => {
                    if self.vars.contains(var) {
                        continue;
                    }
                    let known: Vec<String> = self.vars.iter().cloned().collect();
                    (
                        format!("undefined variable `vars.{var}`: no `vars`, `set` or `output_variable` in this file sets `{var}`"),
                        closest(var, known.iter().map(String::as_str))
                            .map(|near| format!("did you mean `vars.{near}`?")),
                    )
                }
                ("steps", Some(id)) => {
                    if self.ids.contains(id) {
                        continue;
                    }
                    let known: Vec<String> = self.ids.iter().cloned().collect();
                    // `steps.fetch-diff` reads as `steps.fetch - diff`.
                    let dashed = known.iter().find(|k| k.starts_with(&format!("{id}-")));
                    let read = |id: &str| {
                        if id.contains('-') {
                            format!("steps[\"{id}\"]")
                        } else {
                            format!("steps.{id}")
                        }
                    };
                    (
                        format!("`steps.{id}` names no step of this file"),
                        Some(match (dashed, closest(id, known.iter().map(String::as_str))) {
                            (Some(dashed), _) => format!(
                                "an id with `-` is read as `{}` (`steps.{dashed}` subtracts)",
                                read(dashed)
                            ),
                            (None, Some(near)) => format!("did you mean `{}`?", read(near)),
                            (None, None) => "`steps.<id>` reads the step with that `id`".to_owned(),
                        }),
                    )
                }
                ("error", _) => (
                    "`error` is only set inside `catch` and `fallback` steps".to_owned(),
                    Some("read the error in a `try` step's `catch`, or a step's `fallback`".to_owned()),
                ),
                (head, _) => match self.loops.get(head) {
                    Some(step) => (
                        format!("`{head}` is only set inside the loop of step `{step}`"),
                        Some("use it inside that step, or collect what you need with `output_variable`".to_owned()),
                    ),
                    None => (
                        format!("undefined variable `{head}`"),
                        Some(match closest(head, ["inputs", "steps", "vars", "ctx"]) {
                            Some(near) => format!("did you mean `{near}`?"),
                            None => "expressions read `inputs`, `steps.<id>`, `vars.<name>`, `ctx` and loop variables".to_owned(),
                        }),
                    ),
                },
            };
            self.error(at, pointer, message).help = help;
        }
    }

    /// Checks a step's literal input against the callee's input schema: missing required
    /// properties, unknown ones, and literal values of the wrong type. Template values
    /// (`{{ … }}`) are taken as valid: only their presence counts.
    fn input(&mut self, step: &str, what: &str, slug: &str, schema: &Value, input: &Value) {
        if is_template(input) {
            return;
        }
        let input_pointer = format!("{step}/input");
        let has_input = self.positions.has(&input_pointer);
        let literal = match input {
            Value::Null if !has_input && schema.get("type") == Some(&Value::from("object")) => {
                Value::Object(Map::new())
            }
            other => strip_templates(other).unwrap_or(Value::Null),
        };
        let entry = self
            .validators
            .compiled
            .entry(format!("{what}:{slug}"))
            .or_insert_with(|| {
                jsonschema::options()
                    .build(schema)
                    .ok()
                    .map(|v| (schema.clone(), v))
            });
        let Some((schema, validator)) = entry.as_ref() else {
            return;
        };
        let mut found = Vec::new();
        for error in validator.iter_errors(&literal) {
            use jsonschema::error::ValidationErrorKind as K;
            let at_path = error.instance_path().as_str().to_owned();
            let pointer = format!("{input_pointer}{at_path}");
            match error.kind() {
                K::Required { property } => {
                    let name = property.as_str().unwrap_or_default();
                    let member = format!("{pointer}/{}", escape(name));
                    if input
                        .pointer(&format!("{at_path}/{}", escape(name)))
                        .is_some()
                    {
                        continue;
                    }
                    let at = if has_input {
                        self.positions.key(&pointer)
                    } else {
                        self.positions.value(&format!("{step}/{what}"))
                    };
                    found.push((
                        at,
                        member,
                        format!(
                            "the input of {what} `{slug}` is missing the required property `{name}`"
                        ),
                        None,
                    ));
                }
                K::AdditionalProperties { unexpected } => {
                    let location = error.schema_path().as_str();
                    let parent = location
                        .strip_suffix("/additionalProperties")
                        .unwrap_or(location);
                    let known: Vec<String> = super::parse::schema_at(schema, parent)
                        .and_then(|s| s.get("properties"))
                        .and_then(Value::as_object)
                        .map(|p| p.keys().cloned().collect())
                        .unwrap_or_default();
                    for name in unexpected {
                        let member = format!("{pointer}/{}", escape(name));
                        let help = match closest(name, known.iter().map(String::as_str)) {
                            Some(near) => format!("did you mean `{near}`?"),
                            None => format!("`{slug}` takes: {}", known.join(", ")),
                        };
                        found.push((
                            self.positions.key(&member),
                            member,
                            format!("{what} `{slug}` has no input property `{name}`"),
                            Some(help),
                        ));
                    }
                }
                K::Type { kind } if at_path.is_empty() && !has_input => {
                    let pointer = format!("{step}/{what}");
                    found.push((
                        self.positions.value(&pointer),
                        input_pointer.clone(),
                        format!("{what} `{slug}` needs an `input`: {}", type_words(kind)),
                        Some("add `input:` to the step".to_owned()),
                    ));
                }
                K::Type { kind } if at_path.is_empty() => {
                    found.push((
                        self.positions.value(&input_pointer),
                        input_pointer.clone(),
                        format!(
                            "the input of {what} `{slug}` must be {}, found `{literal}`",
                            type_words(kind)
                        ),
                        None,
                    ));
                }
                _ => {
                    let value = literal.pointer(&at_path).unwrap_or(&Value::Null);
                    let message = match error.kind() {
                        K::Type { kind } => format!(
                            "the input property `{}` of {what} `{slug}` must be {}, found `{}`",
                            key_path(&at_path),
                            type_words(kind),
                            value
                        ),
                        _ => format!(
                            "the input of {what} `{slug}` is invalid at `{}`: {error}",
                            key_path(&at_path)
                        ),
                    };
                    found.push((
                        self.positions.value(&pointer),
                        pointer.clone(),
                        message,
                        None,
                    ));
                }
            }
        }
        for (at, pointer, message, help) in found {
            self.error(at, &pointer, message).help = help;
        }
    }
}

fn type_words(kind: &jsonschema::error::TypeKind) -> String {
    let word = |t: String| match t.as_str() {
        "object" => "a mapping".to_owned(),
        "array" => "a list".to_owned(),
        "integer" => "an integer".to_owned(),
        other => format!("a {other}"),
    };
    match kind {
        jsonschema::error::TypeKind::Single(t) => word(t.to_string()),
        jsonschema::error::TypeKind::Multiple(types) => types
            .into_iter()
            .map(|t| word(t.to_string()))
            .collect::<Vec<_>>()
            .join(" or "),
    }
}

/// Whether `value` is a string that renders (`{{ … }}` or `{% … %}`).
fn is_template(value: &Value) -> bool {
    matches!(value, Value::String(s) if s.contains("{{") || s.contains("{%"))
}

/// `value` with every templated part removed: template strings and the arrays that hold
/// one (`None` when `value` itself is one).
fn strip_templates(value: &Value) -> Option<Value> {
    match value {
        v if is_template(v) => None,
        Value::Array(items) => items
            .iter()
            .map(strip_templates)
            .collect::<Option<Vec<_>>>()
            .map(Value::Array),
        Value::Object(map) => Some(Value::Object(
            map.iter()
                .filter_map(|(k, v)| strip_templates(v).map(|v| (k.clone(), v)))
                .collect(),
        )),
        other => Some(other.clone()),
    }
}
