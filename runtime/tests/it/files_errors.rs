//! Workflow files that are wrong: each gives one clear message naming the file, line,
//! column and the offending key (issue 18).

use std::path::{Path, PathBuf};

use reprise::files::{Pos, StepKind};
use reprise::schema::Validator;

use reprise::files::{FileErrors, WorkflowFile, check_files, format_schema, load_dir, parse_file};
use reprise::prelude::*;
use reprise::registry::Registry;

/// The input of `fe-fetch-diff`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct FetchDiff {
    repo: String,
    pr: u32,
}

/// Fetches a pull request's diff.
#[action(slug = "fe-fetch-diff", register = false)]
async fn fe_fetch_diff(input: FetchDiff) -> Result<String, ActionError> {
    Ok(format!("{}#{}", input.repo, input.pr))
}

/// Posts a comment.
#[action(slug = "fe-post-comment", register = false)]
async fn fe_post_comment(body: String) -> Result<(), ActionError> {
    let _ = body;
    Ok(())
}

fn registry() -> Registry {
    let mut registry = Registry::default();
    registry.register::<fe_fetch_diff>().unwrap();
    registry.register::<fe_post_comment>().unwrap();
    registry
}

/// The messages of parsing `text` as the file `name`.
fn parse_errors(name: &str, text: &str) -> String {
    match parse_file(Path::new(name), text) {
        Ok(_) => panic!("{name} parsed"),
        Err(errors) => errors.to_string(),
    }
}

/// The messages of parsing then checking `files` (name, text) together.
fn check_errors(files: &[(&str, &str)]) -> String {
    let mut parsed: Vec<WorkflowFile> = files
        .iter()
        .map(|(name, text)| parse_file(Path::new(name), text).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    match check_files(&mut parsed, &registry()) {
        Ok(()) => panic!("the files passed the checks"),
        Err(FileErrors(errors)) => FileErrors(errors).to_string(),
    }
}

/// The fixtures directory `runtime/tests/files/<name>`.
fn fixtures(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/files")
        .join(name)
}

// ---- the YAML and the front matter ----

#[test]
fn fe_bad_yaml_names_the_parser_position() {
    assert_eq!(
        parse_errors("bad-yaml.yaml", "steps:\n  - id: a\n    action: [x\n"),
        "bad-yaml.yaml:4:1: invalid YAML: while parsing a flow sequence, expected ',' or ']'"
    );
}

#[test]
fn fe_bad_yaml_in_front_matter_counts_file_lines() {
    // The front matter starts on line 2: the second `:` is on line 3 of the file.
    assert_eq!(
        parse_errors("colon.md", "---\nsteps:\n  - id: a: b\n---\nbody\n"),
        "colon.md:3:10: invalid YAML: mapping values are not allowed in this context"
    );
}

#[test]
fn fe_markdown_without_front_matter() {
    assert_eq!(
        parse_errors("no-front.md", "# Hello\n\nsteps: []\n"),
        "no-front.md:1:1: a Markdown workflow file must start with YAML front matter\n  \
         help: put the workflow between two `---` lines at the top of the file"
    );
}

#[test]
fn fe_unclosed_front_matter() {
    assert_eq!(
        parse_errors("unclosed.md", "---\nsteps: []\n"),
        "unclosed.md:1:1: the YAML front matter is not closed\n  \
         help: end the front matter with a line holding only `---`"
    );
}

#[test]
fn fe_duplicate_yaml_key() {
    assert_eq!(
        parse_errors(
            "dupkey.yaml",
            "steps:\n  - id: a\n    sleep: 1s\n    sleep: 2s\n"
        ),
        "dupkey.yaml:4:5: duplicate key `sleep` (first at 3:5) (key `sleep`)\n  \
         help: keep one of them"
    );
}

// ---- the format ----

#[test]
fn fe_unknown_top_level_key_suggests_the_closest() {
    assert_eq!(
        parse_errors("top.yaml", "descripton: hi\nsteps: []\n"),
        "top.yaml:1:1: unknown key `descripton` (key `descripton`)\n  \
         help: did you mean `description`?"
    );
}

#[test]
fn fe_unknown_step_key_typo() {
    assert_eq!(
        parse_errors(
            "typo.md",
            "---\nslug: t\nsteps:\n  - id: fetch\n    action: fe-fetch-diff\n    inptu: {}\n---\n"
        ),
        "typo.md:6:5: unknown key `inptu` (key `steps[0].inptu`)\n  \
         help: did you mean `input`?"
    );
    // Without a step type, a typo is taken for the step type.
    assert_eq!(
        parse_errors(
            "typo2.md",
            "---\nslug: t\nsteps:\n  - id: fetch\n    actoin: fe-fetch-diff\n---\n"
        ),
        "typo2.md:5:5: unknown step type `actoin` (key `steps[0].actoin`)\n  \
         help: did you mean `action`?"
    );
}

#[test]
fn fe_unknown_step_type() {
    assert_eq!(
        parse_errors("type.yaml", "steps:\n  - id: x\n    tweet: hello\n"),
        "type.yaml:3:5: unknown step type `tweet` (key `steps[0].tweet`)\n  \
         help: the step types are: action, workflow, prompt, agent, if, switch, for_each, \
         while, map, filter, reduce, parallel, try, sleep, sleep_until, hook, signal, event, \
         select, set, fail, return"
    );
    assert_eq!(
        parse_errors(
            "type2.yaml",
            "steps:\n  - id: x\n    for_eahc: inputs.items\n"
        ),
        "type2.yaml:3:5: unknown step type `for_eahc` (key `steps[0].for_eahc`)\n  \
         help: did you mean `for_each`?"
    );
}

#[test]
fn fe_unknown_key_of_a_typed_step() {
    assert_eq!(
        parse_errors(
            "key.yaml",
            "steps:\n  - id: x\n    sleep: 1s\n    colour: red\n"
        ),
        "key.yaml:4:5: unknown key `colour` (key `steps[0].colour`)\n  \
         help: a `sleep` step takes: id, name, when, timeout, error_handling, fallback, \
         compensate, output_variable"
    );
}

#[test]
fn fe_invalid_json_schema_in_a_hook() {
    let message = parse_errors(
        "hook.yaml",
        "steps:\n  - id: ok\n    hook: Approve?\n    schema:\n      type: approval\n",
    );
    assert!(
        message.starts_with("hook.yaml:5:7: not a valid JSON Schema: "),
        "{message}"
    );
    assert!(message.ends_with("(key `steps[0].schema`)"), "{message}");
}

#[test]
fn fe_unknown_nested_key_in_retry() {
    assert_eq!(
        parse_errors(
            "retry.yaml",
            "steps:\n  - id: a\n    action: fe-post-comment\n    retry:\n      max_attempts: 3\n      backof: fixed\n"
        ),
        "retry.yaml:6:7: unknown key `backof` (key `steps[0].retry.backof`)\n  \
         help: did you mean `backoff`?"
    );
}

#[test]
fn fe_wrong_type_of_a_key() {
    assert_eq!(
        parse_errors(
            "conc.yaml",
            "steps:\n  - id: l\n    for_each: inputs.items\n    concurrency: many\n    steps:\n      - id: a\n        sleep: 1s\n"
        ),
        "conc.yaml:4:18: expected an integer, found a string (key `steps[0].concurrency`)"
    );
}

#[test]
fn fe_unknown_enum_value_suggests() {
    assert_eq!(
        parse_errors(
            "eh.yaml",
            "steps:\n  - id: a\n    sleep: 1s\n    error_handling: contine\n"
        ),
        "eh.yaml:4:21: `contine` is not one of `stop`, `continue`, `fallback`, `rollback` \
         (key `steps[0].error_handling`)\n  help: did you mean `continue`?"
    );
}

// ---- steps ----

#[test]
fn fe_two_step_types() {
    assert_eq!(
        parse_errors(
            "two.yaml",
            "steps:\n  - id: x\n    action: fe-post-comment\n    prompt: hi\n"
        ),
        "two.yaml:4:5: step `x` has several step types: `action`, `prompt` (key `steps[0].prompt`)\n  \
         help: a step does one thing: keep `action` and move the rest to steps of their own"
    );
}

#[test]
fn fe_no_step_type() {
    assert_eq!(
        parse_errors("none.yaml", "steps:\n  - id: x\n    name: X\n"),
        "none.yaml:2:5: step `x` has no step type (key `steps[0].id`)\n  \
         help: give it one of: action, workflow, prompt, agent, if, switch, for_each, while, \
         map, filter, reduce, parallel, try, sleep, sleep_until, hook, signal, event, select, \
         set, fail, return"
    );
}

#[test]
fn fe_missing_id() {
    assert_eq!(
        parse_errors(
            "noid.yaml",
            "steps:\n  - action: fe-post-comment\n    input: hi\n"
        ),
        "noid.yaml:2:5: missing required key `id` (key `steps[0].id`)\n  \
         help: give every step an `id`: letters, digits, `-` and `_`, unique in the file"
    );
}

#[test]
fn fe_duplicate_id_names_both_positions() {
    assert_eq!(
        parse_errors(
            "dup.yaml",
            "steps:\n  - id: a\n    sleep: 1s\n  - id: b\n    try:\n      - id: a\n        sleep: 2s\n    catch: []\n"
        ),
        "dup.yaml:6:13: duplicate step id `a` (first at 2:9) (key `steps[1].try[0].id`)\n  \
         help: step ids are unique in a file, nested steps included: rename one"
    );
}

#[test]
fn fe_bad_id_characters() {
    assert_eq!(
        parse_errors("badid.yaml", "steps:\n  - id: fetch.diff\n    sleep: 1s\n"),
        "badid.yaml:2:9: the step id `fetch.diff` may hold only letters, digits, `-` and `_` \
         (key `steps[0].id`)"
    );
}

#[test]
fn fe_key_that_does_not_apply_to_the_step_type() {
    assert_eq!(
        parse_errors(
            "cases.yaml",
            "steps:\n  - id: a\n    action: fe-post-comment\n    input: hi\n    cases: {}\n"
        ),
        "cases.yaml:5:5: `cases` does not apply to an `action` step (key `steps[0].cases`)\n  \
         help: an `action` step takes: input, retry (and the keys every step has)"
    );
    assert_eq!(
        parse_errors(
            "sleep.yaml",
            "steps:\n  - id: a\n    sleep: 1s\n    input: x\n"
        ),
        "sleep.yaml:4:5: `input` does not apply to a `sleep` step (key `steps[0].input`)\n  \
         help: a `sleep` step takes only `sleep` and the keys every step has (id, name, when, \
         timeout, error_handling, fallback, compensate, output_variable)"
    );
}

#[test]
fn fe_expression_syntax_error() {
    assert_eq!(
        parse_errors(
            "expr.yaml",
            "steps:\n  - id: a\n    if: \"inputs.x >\"\n    then:\n      - id: b\n        sleep: 1s\n"
        ),
        "expr.yaml:3:9: the expression `inputs.x >` does not compile: syntax error: unexpected \
         end of input, expected expression (key `steps[0].if`)"
    );
}

#[test]
fn fe_template_syntax_error() {
    assert_eq!(
        parse_errors(
            "tmpl.yaml",
            "steps:\n  - id: a\n    prompt: \"Hello {{ inputs.name \"\n"
        ),
        "tmpl.yaml:3:13: the template `Hello {{ inputs.name ` does not compile: syntax error: \
         unexpected end of input, expected end of variable block (key `steps[0].prompt`)"
    );
}

#[test]
fn fe_template_syntax_error_nested_in_input() {
    assert_eq!(
        parse_errors(
            "nested.yaml",
            "steps:\n  - id: a\n    action: fe-fetch-diff\n    input:\n      repo: \"{{ inputs.repo | }}\"\n      pr: 1\n"
        ),
        "nested.yaml:5:13: the template `{{ inputs.repo | }}` does not compile: syntax error: \
         unexpected end of input, expected identifier (key `steps[0].input.repo`)"
    );
}

#[test]
fn fe_bad_duration() {
    assert_eq!(
        parse_errors(
            "dur.yaml",
            "steps:\n  - id: a\n    action: fe-post-comment\n    input: hi\n    timeout: 5 minutes ago\n"
        ),
        "dur.yaml:5:14: `5 minutes ago` is not a duration: expected number at 10 (key \
         `steps[0].timeout`)\n  help: write a duration such as `30s`, `5m`, `1h 30m` or `2d`"
    );
}

#[test]
fn fe_bad_cron() {
    assert_eq!(
        parse_errors(
            "cron.yaml",
            "triggers:\n  - cron: \"61 * * * *\"\nsteps:\n  - id: a\n    sleep: 1s\n"
        ),
        "cron.yaml:2:11: `61 * * * *` is not a cron expression: Component error: Number out of \
         bounds. (key `triggers[0].cron`)\n  help: use five fields `minute hour day-of-month \
         month day-of-week` (`0 9 * * *`: 09:00 every day), or six with seconds first"
    );
}

#[test]
fn fe_fallback_without_steps() {
    assert_eq!(
        parse_errors(
            "fb.yaml",
            "steps:\n  - id: a\n    action: fe-post-comment\n    input: hi\n    error_handling: fallback\n"
        ),
        "fb.yaml:5:21: `error_handling: fallback` needs `fallback` steps (key \
         `steps[0].error_handling`)\n  help: add `fallback:` with the steps to run when this \
         step fails"
    );
}

#[test]
fn fe_parallel_count_larger_than_branches() {
    assert_eq!(
        parse_errors(
            "par.yaml",
            "steps:\n  - id: p\n    parallel: 3\n    branches:\n      - name: one\n        steps:\n          - id: a\n            sleep: 1s\n      - name: two\n        steps:\n          - id: b\n            sleep: 1s\n"
        ),
        "par.yaml:3:15: `parallel: 3` waits for 3 branches, but the step has 2 (key \
         `steps[0].parallel`)\n  help: use a number from 1 to 2, or `all` / `any`"
    );
}

#[test]
fn fe_parallel_unknown_mode() {
    assert_eq!(
        parse_errors(
            "parw.yaml",
            "steps:\n  - id: p\n    parallel: some\n    branches:\n      - name: one\n        steps:\n          - id: a\n            sleep: 1s\n"
        ),
        "parw.yaml:3:15: `some` is not a way to wait for branches (key `steps[0].parallel`)\n  \
         help: use `all`, `any`, or a number of branches"
    );
}

#[test]
fn fe_switch_without_cases() {
    assert_eq!(
        parse_errors(
            "switch.yaml",
            "steps:\n  - id: s\n    switch: inputs.kind\n"
        ),
        "switch.yaml:3:5: a `switch` step needs `cases` (key `steps[0].switch`)"
    );
}

#[test]
fn fe_concurrency_zero() {
    assert_eq!(
        parse_errors(
            "conc0.yaml",
            "steps:\n  - id: l\n    for_each: inputs.items\n    concurrency: 0\n    steps:\n      - id: a\n        sleep: 1s\n"
        ),
        "conc0.yaml:4:18: `concurrency` must be at least 1 (key `steps[0].concurrency`)"
    );
}

#[test]
fn fe_variable_name_not_an_identifier() {
    assert_eq!(
        parse_errors(
            "var.yaml",
            "steps:\n  - id: a\n    sleep: 1s\n    output_variable: my-var\n"
        ),
        "var.yaml:4:22: `my-var` is not a variable name: use letters, digits and `_`, not \
         starting with a digit (key `steps[0].output_variable`)"
    );
}

#[test]
fn fe_every_error_of_a_file_in_position_order() {
    assert_eq!(
        parse_errors(
            "many.yaml",
            "steps:\n  - id: a\n    sleep: soon\n  - id: a\n    sleep: 1s\n"
        ),
        "many.yaml:3:12: `soon` is not a duration: expected number at 0 (key `steps[0].sleep`)\n  help: write a duration such as `30s`, `5m`, `1h 30m` or `2d`\n\
         many.yaml:4:9: duplicate step id `a` (first at 2:9) (key `steps[1].id`)\n  \
         help: step ids are unique in a file, nested steps included: rename one"
    );
}

#[test]
fn fe_duplicate_branch_name() {
    assert_eq!(
        parse_errors(
            "branches.yaml",
            "steps:\n  - id: p\n    parallel: all\n    branches:\n      - name: one\n        steps:\n          - id: a\n            sleep: 1s\n      - name: one\n        steps:\n          - id: b\n            sleep: 1s\n"
        ),
        "branches.yaml:9:15: duplicate branch name `one` (first at 5:15) (key \
         `steps[0].branches[1].name`)"
    );
}

#[test]
fn fe_agent_without_message() {
    assert_eq!(
        parse_errors(
            "agent.yaml",
            "steps:\n  - id: a\n    agent:\n      tools: [fe-fetch-diff]\n"
        ),
        "agent.yaml:3:5: an `agent` step needs `message` (key `steps[0].agent`)"
    );
}

#[test]
fn fe_cron_only_keys_on_another_trigger() {
    assert_eq!(
        parse_errors(
            "trigger.yaml",
            "triggers:\n  - event: order.paid\n    timezone: UTC\nsteps:\n  - id: a\n    sleep: 1s\n"
        ),
        "trigger.yaml:3:5: `timezone` applies to `cron` triggers only (key `triggers[0].timezone`)"
    );
}

// ---- checks against the registry and the other files ----

#[test]
fn fe_undefined_variable() {
    assert_eq!(
        check_errors(&[(
            "undef.yaml",
            "steps:\n  - id: a\n    action: fe-post-comment\n    input: \"{{ user.name }}\"\n"
        )]),
        "undef.yaml:4:12: undefined variable `user` (key `steps[0].input`)\n  \
         help: expressions read `inputs`, `steps.<id>`, `vars.<name>`, `ctx` and loop variables"
    );
}

#[test]
fn fe_unknown_step_in_steps_x() {
    assert_eq!(
        check_errors(&[(
            "stepx.yaml",
            "steps:\n  - id: fetch-diff\n    sleep: 1s\n  - id: a\n    action: fe-post-comment\n    input: \"{{ steps.fetch_diff.output }}\"\n"
        )]),
        "stepx.yaml:6:12: `steps.fetch_diff` names no step of this file (key `steps[1].input`)\n  \
         help: did you mean `steps[\"fetch-diff\"]`?"
    );
    // `steps.fetch-diff` subtracts `diff` from `steps.fetch`.
    assert_eq!(
        check_errors(&[(
            "dashed.yaml",
            "steps:\n  - id: fetch-diff\n    sleep: 1s\n  - id: a\n    return: \"{{ steps.fetch-diff.output }}\"\n"
        )]),
        "dashed.yaml:5:13: `steps.fetch` names no step of this file (key `steps[1].return`)\n  \
         help: an id with `-` is read as `steps[\"fetch-diff\"]` (`steps.fetch-diff` subtracts)"
    );
}

#[test]
fn fe_undefined_var_and_ctx_value() {
    assert_eq!(
        check_errors(&[(
            "vars.yaml",
            "vars:\n  greeting: hi\nsteps:\n  - id: a\n    return: \"{{ vars.greting }} {{ ctx.runid }}\"\n"
        )]),
        "vars.yaml:5:13: `ctx.runid` is not a context value (key `steps[0].return`)\n  \
         help: did you mean `ctx.run_id`?\n\
         vars.yaml:5:13: undefined variable `vars.greting`: no `vars`, `set` or \
         `output_variable` in this file sets `greting` (key `steps[0].return`)\n  \
         help: did you mean `vars.greeting`?"
    );
}

#[test]
fn fe_loop_variable_outside_its_loop() {
    assert_eq!(
        check_errors(&[(
            "loopvar.yaml",
            "steps:\n  - id: l\n    for_each: inputs.items\n    as: file\n    steps:\n      - id: a\n        action: fe-post-comment\n        input: \"{{ file }} {{ index }}\"\n  - id: b\n    action: fe-post-comment\n    input: \"{{ file }}\"\n"
        )]),
        "loopvar.yaml:11:12: `file` is only set inside the loop of step `l` (key `steps[1].input`)\n  \
         help: use it inside that step, or collect what you need with `output_variable`"
    );
}

#[test]
fn fe_error_outside_catch() {
    assert_eq!(
        check_errors(&[(
            "err.yaml",
            "steps:\n  - id: t\n    try:\n      - id: a\n        fail: boom\n    catch:\n      - id: c\n        return: \"{{ error.message }}\"\n  - id: b\n    fail: \"{{ error.message }}\"\n"
        )]),
        "err.yaml:10:11: `error` is only set inside `catch` and `fallback` steps (key \
         `steps[1].fail`)\n  help: read the error in a `try` step's `catch`, or a step's \
         `fallback`"
    );
}

#[test]
fn fe_action_input_missing_required_property() {
    assert_eq!(
        check_errors(&[(
            "req.yaml",
            "steps:\n  - id: a\n    action: fe-fetch-diff\n    input:\n      repo: acme/app\n"
        )]),
        "req.yaml:4:5: the input of action `fe-fetch-diff` is missing the required property \
         `pr` (key `steps[0].input.pr`)"
    );
}

#[test]
fn fe_action_input_wrong_literal_type() {
    // A template value counts as present and is not type-checked; a literal is.
    assert_eq!(
        check_errors(&[(
            "wrongtype.yaml",
            "steps:\n  - id: a\n    action: fe-fetch-diff\n    input:\n      repo: acme/app\n      pr: \"{{ inputs.pr }}\"\n  - id: b\n    action: fe-fetch-diff\n    input:\n      repo: 42\n      pr: 7\n"
        )]),
        "wrongtype.yaml:10:13: the input property `repo` of action `fe-fetch-diff` must be a \
         string, found `42` (key `steps[1].input.repo`)"
    );
}

#[test]
fn fe_action_input_unknown_property() {
    assert_eq!(
        check_errors(&[(
            "extra.yaml",
            "steps:\n  - id: a\n    action: fe-fetch-diff\n    input:\n      repo: acme/app\n      pr: 7\n      rpeo: x\n"
        )]),
        "extra.yaml:7:7: action `fe-fetch-diff` has no input property `rpeo` (key \
         `steps[0].input.rpeo`)\n  help: did you mean `repo`?"
    );
}

#[test]
fn fe_action_without_input() {
    assert_eq!(
        check_errors(&[(
            "noinput.yaml",
            "steps:\n  - id: a\n    action: fe-post-comment\n"
        )]),
        "noinput.yaml:3:13: action `fe-post-comment` needs an `input`: a string (key \
         `steps[0].input`)\n  help: add `input:` to the step"
    );
}

#[test]
fn fe_unknown_action_suggests_the_closest_slug() {
    assert_eq!(
        check_errors(&[(
            "unknown.yaml",
            "steps:\n  - id: a\n    action: fe-fetch-dif\n"
        )]),
        "unknown.yaml:3:13: unknown action `fe-fetch-dif` (key `steps[0].action`)\n  \
         help: did you mean `fe-fetch-diff`?"
    );
}

#[test]
fn fe_unknown_workflow_path() {
    let dir = std::env::current_dir().unwrap();
    assert_eq!(
        check_errors(&[(
            "flows/path.yaml",
            "steps:\n  - id: a\n    workflow: ./nope.md\n"
        )]),
        format!(
            "flows/path.yaml:3:15: no workflow file `./nope.md` (looked for {}) (key \
             `steps[0].workflow`)\n  help: a path is relative to this file and must name a \
             loaded `.md`, `.yaml` or `.yml` file",
            dir.join("flows/nope.md").display()
        )
    );
}

#[test]
fn fe_unknown_workflow_slug() {
    assert_eq!(
        check_errors(&[
            ("caller.yaml", "steps:\n  - id: a\n    workflow: reviw\n"),
            ("review.yaml", "steps:\n  - id: a\n    sleep: 1s\n"),
        ]),
        "caller.yaml:3:15: unknown workflow `reviw` (key `steps[0].workflow`)\n  \
         help: did you mean `review`?"
    );
}

#[test]
fn fe_unknown_agent_tool() {
    assert_eq!(
        check_errors(&[(
            "tool.yaml",
            "steps:\n  - id: a\n    agent:\n      tools: [fe-fetch-diff, fe-post-coment]\n    message: hi\n"
        )]),
        "tool.yaml:4:30: unknown agent tool `fe-post-coment` (key `steps[0].agent.tools[1]`)\n  \
         help: a tool is a registered action or workflow; did you mean `fe-post-comment`?"
    );
}

#[test]
fn fe_workflow_calling_itself() {
    assert_eq!(
        check_errors(&[
            ("a.yaml", "steps:\n  - id: call-b\n    workflow: ./b.yaml\n"),
            ("b.yaml", "steps:\n  - id: call-a\n    workflow: a\n"),
        ]),
        "a.yaml:3:15: workflow `a` calls itself: a → b → a (key `steps[0].workflow`)\n  \
         help: a workflow runs its sub-workflows inline: use a `while` or `for_each` loop \
         instead of recursion\n\
         b.yaml:3:15: workflow `b` calls itself: b → a → b (key `steps[0].workflow`)\n  \
         help: a workflow runs its sub-workflows inline: use a `while` or `for_each` loop \
         instead of recursion"
    );
}

#[test]
fn fe_duplicate_slug_across_files() {
    assert_eq!(
        check_errors(&[
            (
                "one/x.yaml",
                "slug: same\nsteps:\n  - id: a\n    sleep: 1s\n"
            ),
            (
                "two/x.yaml",
                "slug: same\nsteps:\n  - id: a\n    sleep: 1s\n"
            ),
        ]),
        "two/x.yaml:1:7: the slug `same` is taken by one/x.yaml:1:7 (key `slug`)\n  \
         help: give one of them another `slug:` (or file name)"
    );
}

// ---- directories ----

#[test]
fn fe_load_dir_reports_every_file_in_path_order() {
    let dir = fixtures("broken");
    let errors = load_dir(&dir, &registry()).unwrap_err().to_string();
    assert_eq!(
        errors,
        format!(
            "{a}:4:5: unknown step type `actoin` (key `steps[0].actoin`)\n  help: did you mean \
             `action`?\n{b}:3:13: unknown action `fe-send-sms` (key `steps[0].action`)\n  \
             help: registered actions: fe-fetch-diff, fe-post-comment",
            a = dir.join("a-typo.md").display(),
            b = dir.join("b-unknown-action.yaml").display(),
        )
    );
}

#[test]
fn fe_good_files_load_with_positions_and_paths_rewritten_to_slugs() {
    let files = load_dir(&fixtures("good"), &registry()).unwrap_or_else(|e| panic!("{e}"));
    let slugs: Vec<&str> = files.iter().map(|f| f.slug.as_str()).collect();
    assert_eq!(slugs, ["code-review", "nightly-report", "fe-post-one"]);
    let review = &files[0];
    assert_eq!(
        review.description,
        "Review a pull request and post the verdict once a human approves."
    );
    let ids: Vec<(&str, Pos)> = review.steps.iter().map(|s| (s.id.as_str(), s.at)).collect();
    let at = |line, column| Pos { line, column };
    assert_eq!(
        ids,
        [
            ("fetch", at(10, 5)),
            ("review", at(18, 5)),
            ("verdict", at(24, 5)),
            ("approval", at(31, 5)),
            ("post", at(34, 5)),
        ]
    );
    let post = &review.steps[4];
    assert_eq!(
        post.when.as_ref().map(|w| (w.source.as_str(), w.at)),
        Some(("vars.verdict.approve", at(35, 11)))
    );
    match &post.kind {
        StepKind::Workflow { slug, input } => {
            assert_eq!(slug, "fe-post-one", "`./post-one.md` names the file's slug");
            assert_eq!(input.at, at(38, 7));
        }
        other => panic!("{other:?}"),
    }
    match &review.steps[0].kind {
        StepKind::Action { slug, input } => {
            assert_eq!(slug, "fe-fetch-diff");
            assert_eq!(input.at, at(13, 7));
        }
        other => panic!("{other:?}"),
    }
    // The YAML file: its steps are counted from line 1.
    let nightly = &files[1];
    assert_eq!(nightly.steps[0].at, at(8, 5));
    assert_eq!(nightly.all_steps().len(), 6);
}

#[test]
fn fe_format_schema_accepts_both_shapes_and_rejects_a_typo() {
    let validator = Validator::compile(format_schema(), "workflow file").unwrap();
    // A Markdown file's front matter, as JSON.
    let markdown = serde_json::json!({
        "description": "Review a pull request.",
        "input": {"type": "object"},
        "steps": [
            {"id": "fetch", "action": "fetch-diff", "input": {"repo": "{{ inputs.repo }}"},
             "timeout": "30s", "retry": {"max_attempts": 3}},
            {"id": "review", "agent": {"tools": ["fetch-diff"], "max_turns": 5},
             "message": "Review {{ steps.fetch.output }}"},
            {"id": "approve", "hook": "Post it?", "timeout": "1d"},
            {"id": "both", "parallel": 1, "branches": [
                {"name": "a", "steps": [{"id": "s", "sleep": "1s"}]}]},
            {"id": "any", "parallel": "any", "branches": []}
        ]
    });
    validator.validate(&markdown).unwrap();
    // A YAML file, as JSON.
    let yaml = serde_json::json!({
        "slug": "nightly-report",
        "triggers": [{"cron": "0 3 * * *", "timezone": "Europe/Paris"}],
        "vars": {"total": 0},
        "steps": [
            {"id": "each", "for_each": "inputs.repos", "concurrency": 2,
             "steps": [{"id": "diff", "action": "fetch-diff", "error_handling": "fallback",
                        "fallback": [{"id": "none", "set": {"missing": true}}],
                        "retry": {"max_attempts": 3, "backoff": "fixed", "delay": "10s"}}]},
            {"id": "sizes", "map": "steps.each.output", "value": "{{ item | length }}"},
            {"id": "total", "reduce": "steps.sizes.output", "initial": 0,
             "value": "{{ acc + item }}"},
            {"id": "done", "return": {"total": "{{ steps.total.output }}"}}
        ]
    });
    validator.validate(&yaml).unwrap();
    let typo = serde_json::json!({"steps": [{"id": "a", "actoin": "fetch-diff"}]});
    let violation = validator.validate(&typo).unwrap_err();
    assert_eq!(violation.violations.len(), 1);
    assert_eq!(violation.violations[0].pointer, "/steps/0");
    assert!(
        violation.violations[0].message.contains("actoin"),
        "{violation}"
    );
}

#[test]
fn fe_names_in_scope_pass_the_checks() {
    let text = r#"
vars:
  greeting: hi
steps:
  - id: fetch-diff
    action: fe-fetch-diff
    input: {repo: "{{ inputs.repo }}", pr: 1}
  - id: t
    try:
      - id: boom
        fail: "{{ vars.greeting }} {{ ctx.run_id }} {{ ctx.now }}"
    catch:
      - id: caught
        set:
          why: "{{ error.message }}"
  - id: sizes
    map: inputs.items
    value: "{{ index }}: {{ item }} {% for x in range(3) %}{{ x }}{% endfor %}"
  - id: total
    reduce: steps.sizes.output
    as: size
    initial: 0
    value: "{{ acc + size + index }}"
  - id: done
    return: "{{ steps['fetch-diff'].output }} {{ vars.why }} {{ steps.total.output }}"
"#;
    let mut files = vec![parse_file(Path::new("ok.yaml"), text).unwrap()];
    check_files(&mut files, &registry()).unwrap_or_else(|e| panic!("{e}"));
}
