//! Workflow files run by the interpreter (`files::run`): scope and expressions, control
//! flow, loops and their namespaces, error handling, and — with action steps — the event
//! log's ids, replay after a crash, and a file edited under an in-flight run.
//!
//! Every file's slug starts with `fr-`.

use std::path::Path;
use std::sync::Arc;

use reprise::event::{EventKind, RunId};
use reprise::prelude::*;
use reprise::store::{MemoryStore, SharedStore};
use reprise::{RunOutcome, Trigger};
use serde_json::{Value, json};

use crate::engine::{Calls, DyingStore, events_of, ids_of};

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn engine_with(dir: &Path, store: SharedStore, calls: &Arc<Calls>) -> Engine {
    Engine::builder()
        .store(store)
        .discover()
        .unwrap()
        .shared_resource(calls.clone())
        .run_retry_backoff(std::time::Duration::from_millis(1))
        .workflow_dir(dir)
        .build()
        .unwrap()
}

/// Builds an engine on a fresh memory store over a directory holding `file` as `name`.
fn engine_for(name: &str, file: &str) -> (Engine, Arc<Calls>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), name, file);
    let calls = Arc::new(Calls::default());
    let engine = engine_with(dir.path(), Arc::new(MemoryStore::new()), &calls);
    (engine, calls, dir)
}

async fn run(engine: &Engine, slug: &str, input: Value) -> (RunId, RunOutcome) {
    let id = engine.start_json(slug, input, Trigger::Code).await.unwrap();
    let execution = engine.drive(&id).await.unwrap();
    (id, execution.outcome)
}

/// The engine's replay check (a replay-only execution against the log) accepts the run.
async fn assert_replays(engine: &Engine, id: &RunId) {
    let export = engine.export_run(id).await.unwrap();
    let judged = engine.check_replay(&export).await.unwrap();
    assert!(judged.is_ok(), "replay check of {id}: {judged:?}");
}

/// The ids of the completed steps, recorded values (`$now#0`) left out.
fn step_ids(events: &[reprise::event::Event]) -> Vec<String> {
    ids_of(events, EventKind::StepCompleted)
        .into_iter()
        .filter(|id| !id.starts_with('$'))
        .collect()
}

fn completed(outcome: RunOutcome) -> Value {
    match outcome {
        RunOutcome::Completed(value) => value,
        other => panic!("the run did not complete: {other:?}"),
    }
}

fn failed(outcome: RunOutcome) -> WorkflowError {
    match outcome {
        RunOutcome::Failed(error) => error,
        other => panic!("the run did not fail: {other:?}"),
    }
}

const PURE: &str = r#"---
slug: fr-pure
vars:
  factor: 2
steps:
  - id: nums
    set:
      list: "{{ inputs.values }}"
  - id: doubled
    map: vars.list
    as: n
    value: "{{ n * vars.factor }}"
  - id: big
    filter: steps.doubled.output
    where: item > 4
  - id: total
    reduce: steps.big.output
    initial: 0
    value: "{{ acc + item }}"
  - id: never
    when: "inputs.values | length > 100"
    fail: "not skipped"
  - id: pick
    if: "{{ steps.total.output > 10 }}"
    then:
      - id: large
        set: {size: large}
    else:
      - id: small
        set: {size: small}
  - id: route
    switch: vars.size
    cases:
      large:
        - id: say-large
          output_variable: said
          set: {said: yes}
    default:
      - id: say-other
        fail: "unexpected {{ vars.size }}"
  - id: out
    return:
      total: "{{ steps.total.output }}"
      size: "{{ vars.size }}"
      first: "{{ steps.doubled.output[0] }}"
      never: "{{ steps.never.status }}"
      never_output: "{{ steps.never.output }}"
      small: "{{ steps.small is defined }}"
      route: "{{ steps.route.output }}"
      run: "{{ ctx.run_id }}"
      workflow: "{{ ctx.workflow }}"
      attempt: "{{ ctx.attempt }}"
      label: "total {{ steps.total.output }} of {{ inputs.values | length }}"
---
# Pure steps

Sets, maps, filters, reduces and branches.
"#;

#[tokio::test]
async fn fr_pure_steps_evaluate_over_inputs_steps_vars_and_ctx() {
    let (engine, _calls, _dir) = engine_for("pure.md", PURE);
    let (id, outcome) = run(&engine, "fr-pure", json!({"values": [1, 2, 3, 4]})).await;
    let output = completed(outcome);
    assert_eq!(output["total"], json!(14), "{output}");
    assert_eq!(output["size"], json!("large"));
    assert_eq!(output["first"], json!(2));
    assert_eq!(output["never"], json!("skipped"));
    assert_eq!(output["never_output"], Value::Null);
    assert_eq!(output["small"], json!(false), "the else branch did not run");
    assert_eq!(output["route"], json!({"said": "yes"}));
    assert_eq!(output["run"], json!(id.to_string()));
    assert_eq!(output["workflow"], json!("fr-pure"));
    assert_eq!(output["attempt"], json!(1));
    assert_eq!(output["label"], json!("total 14 of 4"));
    assert_replays(&engine, &id).await;
}

const LOOPS: &str = r#"
slug: fr-loops
steps:
  - id: each
    for_each: inputs.items
    as: x
    concurrency: 3
    steps:
      - id: sq
        set: {sq: "{{ x * x }}", pos: "{{ index }}"}
  - id: init
    set: {i: 0, acc: ""}
  - id: count
    while: vars.i < 4
    max_iterations: 10
    steps:
      - id: bump
        set: {i: "{{ vars.i + 1 }}", acc: "{{ vars.acc ~ vars.i }}"}
  - id: seq
    for_each: "[10, 20]"
    steps:
      - id: carry
        set: {last: "{{ item }}", before: "{{ vars.last | default(0) }}"}
  - id: both
    parallel: all
    branches:
      - name: left
        steps:
          - id: l
            set: {left: "{{ inputs.items[0] }}"}
      - name: right
        steps:
          - id: r
            set: {right: "{{ inputs.items[1] }}"}
  - id: done
    return:
      each: "{{ steps.each.output }}"
      count: "{{ steps.count.output }}"
      i: "{{ vars.i }}"
      acc: "{{ vars.acc }}"
      last: "{{ vars.last }}"
      before: "{{ vars.before }}"
      sq: "{{ vars.sq }}"
      both: "{{ steps.both.output }}"
      left: "{{ vars.left }}"
      right: "{{ vars.right }}"
"#;

#[tokio::test]
async fn fr_loops_collect_outputs_and_carry_or_merge_the_scope() {
    let (engine, _calls, _dir) = engine_for("loops.yaml", LOOPS);
    let (_, outcome) = run(&engine, "fr-loops", json!({"items": [1, 2, 3]})).await;
    let output = completed(outcome);
    assert_eq!(
        output["each"],
        json!([{"pos": 0, "sq": 1}, {"pos": 1, "sq": 4}, {"pos": 2, "sq": 9}]),
        "{output}"
    );
    assert_eq!(output["count"], json!({"acc": "0123", "i": 4}));
    assert_eq!(
        (output["i"].clone(), output["acc"].clone()),
        (json!(4), json!("0123"))
    );
    // A sequential for_each carries the scope: the second iteration saw the first's var.
    assert_eq!(
        (output["last"].clone(), output["before"].clone()),
        (json!(20), json!(10))
    );
    // Concurrent iterations merge back in item order: the last item's value wins.
    assert_eq!(output["sq"], json!(9));
    assert_eq!(
        output["both"],
        json!({"left": {"left": 1}, "right": {"right": 2}})
    );
    assert_eq!(
        (output["left"].clone(), output["right"].clone()),
        (json!(1), json!(2))
    );
}

#[tokio::test]
async fn fr_while_stops_at_max_iterations_and_for_each_needs_an_array() {
    let file = r#"
slug: fr-guard
steps:
  - id: forever
    while: "true"
    max_iterations: 3
    steps:
      - id: tick
        set: {t: 1}
"#;
    let (engine, _calls, _dir) = engine_for("guard.yaml", file);
    let error = failed(run(&engine, "fr-guard", json!({})).await.1);
    assert_eq!(error.kind, "max_iterations", "{error}");
    assert!(error.message.contains("`forever`"), "{error}");
    assert!(error.message.contains("max_iterations"), "{error}");

    let file = r#"
slug: fr-not-array
steps:
  - id: over
    for_each: inputs.n
    steps:
      - id: noop
        set: {x: 1}
"#;
    let (engine, _calls, _dir) = engine_for("not-array.yaml", file);
    let error = failed(run(&engine, "fr-not-array", json!({"n": 5})).await.1);
    assert_eq!(error.kind, "invalid_input", "{error}");
    assert!(error.message.contains("`over`"), "{error}");
    assert!(error.message.contains("not an array"), "{error}");
}

const ERRORS: &str = r#"
slug: fr-errors
steps:
  - id: guarded
    try:
      - id: boom
        fail: "bad {{ inputs.what }}"
        kind: boom_kind
      - id: after-boom
        set: {reached: true}
    catch:
      - id: caught
        set: {caught: "{{ error.kind }}: {{ error.message }}"}
    finally:
      - id: cleanup
        set: {cleaned: true}
  - id: soft
    fail: soft failure
    error_handling: continue
  - id: alt
    fail: primary failed
    error_handling: fallback
    fallback:
      - id: alt-fallback
        set: {why: "{{ error.message }}"}
  - id: out
    return:
      caught: "{{ vars.caught }}"
      reached: "{{ vars.reached is defined }}"
      cleaned: "{{ vars.cleaned }}"
      soft_status: "{{ steps.soft.status }}"
      soft_error: "{{ steps.soft.error }}"
      alt: "{{ steps.alt.output }}"
      alt_status: "{{ steps.alt.status }}"
"#;

#[tokio::test]
async fn fr_try_catch_finally_and_error_handling_continue_and_fallback() {
    let (engine, _calls, _dir) = engine_for("errors.yaml", ERRORS);
    let (_, outcome) = run(&engine, "fr-errors", json!({"what": "input"})).await;
    let output = completed(outcome);
    assert_eq!(output["caught"], json!("boom_kind: bad input"), "{output}");
    assert_eq!(output["reached"], json!(false));
    assert_eq!(output["cleaned"], json!(true));
    assert_eq!(output["soft_status"], json!("failed"));
    assert_eq!(
        output["soft_error"],
        json!({"kind": "workflow_failed", "message": "soft failure"})
    );
    assert_eq!(output["alt"], json!({"why": "primary failed"}));
    assert_eq!(output["alt_status"], json!("fallback"));
}

#[tokio::test]
async fn fr_rollback_runs_compensations_last_finished_first_then_fails() {
    let file = r#"
slug: fr-rollback
vars:
  undone: ""
steps:
  - id: saga
    try:
      - id: book-hotel
        set: {hotel: booked}
        compensate:
          - id: cancel-hotel
            set: {undone: "{{ vars.undone ~ 'hotel;' }}"}
      - id: book-car
        set: {car: booked}
        compensate:
          - id: cancel-car
            set: {undone: "{{ vars.undone ~ 'car;' }}"}
      - id: book-flight
        fail: no seats
        kind: no_seats
        error_handling: rollback
    catch:
      - id: report
        return: {undone: "{{ vars.undone }}", error: "{{ error.kind }}"}
"#;
    let (engine, _calls, _dir) = engine_for("rollback.yaml", file);
    let output = completed(run(&engine, "fr-rollback", json!({})).await.1);
    assert_eq!(output, json!({"undone": "car;hotel;", "error": "no_seats"}));

    // Without a `try`, the original error fails the run after the compensations.
    let file = r#"
slug: fr-rollback-fails
steps:
  - id: one
    set: {a: 1}
    compensate:
      - id: undo-one
        set: {a: 0}
  - id: two
    fail: "broken {{ vars.a }}"
    error_handling: rollback
"#;
    let (engine, _calls, _dir) = engine_for("rollback-fails.yaml", file);
    let error = failed(run(&engine, "fr-rollback-fails", json!({})).await.1);
    assert_eq!(
        (error.kind.as_str(), error.message.as_str()),
        ("workflow_failed", "broken 1")
    );
}

#[tokio::test]
async fn fr_an_expression_error_names_the_file_the_step_and_the_expression() {
    let file = r#"
slug: fr-bad-expr
steps:
  - id: compute
    set: {x: "{{ inputs.missing.deeper }}"}
"#;
    let (engine, _calls, _dir) = engine_for("bad-expr.yaml", file);
    let error = failed(run(&engine, "fr-bad-expr", json!({})).await.1);
    assert_eq!(error.kind, "expression", "{error}");
    assert!(error.message.contains("bad-expr.yaml"), "{error}");
    // file:line:col when the parser gives positions; never a made-up `:0:0`.
    assert!(
        !error.message.contains("bad-expr.yaml:0"),
        "no made-up position: {error}"
    );
    assert!(error.message.contains("`compute`"), "{error}");
    assert!(error.message.contains("inputs.missing.deeper"), "{error}");
    assert!(!error.retryable, "{error}");
}

#[tokio::test]
async fn fr_return_ends_the_workflow_from_inside_a_loop_and_a_branch() {
    let file = r#"
slug: fr-return
steps:
  - id: search
    for_each: inputs.items
    steps:
      - id: check
        if: item == inputs.wanted
        then:
          - id: found
            return: {found: "{{ item }}", at: "{{ index }}"}
  - id: both
    parallel: all
    branches:
      - name: a
        steps:
          - id: give-up
            return: {found: null}
      - name: b
        steps:
          - id: b-step
            set: {b: 1}
  - id: unreachable
    fail: "the workflow went on after return"
"#;
    let (engine, _calls, _dir) = engine_for("return.yaml", file);
    let wanted = json!({"items": ["a", "b", "c"], "wanted": "b"});
    let output = completed(run(&engine, "fr-return", wanted).await.1);
    assert_eq!(output, json!({"found": "b", "at": 1}));
    let missing = json!({"items": ["a"], "wanted": "z"});
    let output = completed(run(&engine, "fr-return", missing).await.1);
    assert_eq!(output, json!({"found": null}));
}

// ---- leaf steps (action steps run through `files::run::calls`) ----

const FETCH: &str = r#"
slug: fr-fetch
steps:
  - id: each
    for_each: inputs.items
    concurrency: 2
    steps:
      - id: fetch
        action: add-one
        input: {n: "{{ item }}"}
  - id: total
    reduce: steps.each.output
    initial: 0
    value: "{{ acc + item.n }}"
  - id: sum
    action: double
    input: {n: "{{ steps.total.output }}"}
  - id: out
    return: "{{ steps.sum.output.n }}"
"#;

#[tokio::test]
async fn fr_loop_iterations_number_their_steps_in_namespaces() {
    let (engine, calls, _dir) = engine_for("fetch.yaml", FETCH);
    let (id, outcome) = run(&engine, "fr-fetch", json!({"items": [1, 2, 3]})).await;
    assert_eq!(completed(outcome), json!(18)); // (2 + 3 + 4) * 2
    let mut ids = step_ids(&events_of(&engine, &id).await);
    ids.sort();
    assert_eq!(
        ids,
        [
            "each#0/fetch#0",
            "each#1/fetch#0",
            "each#2/fetch#0",
            "sum#0"
        ]
    );
    let mut live = calls.all();
    live.sort();
    assert_eq!(live, ids, "each step ran once");
    assert_replays(&engine, &id).await;
}

#[tokio::test]
async fn fr_a_crashed_file_run_resumes_from_its_log() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "fetch.yaml", FETCH);
    let store: SharedStore = Arc::new(MemoryStore::new());
    let calls = Arc::new(Calls::default());
    // run_started + two step completions, then the "process" dies.
    let dying: SharedStore = Arc::new(DyingStore::new(store.clone(), 3));
    let first = engine_with(dir.path(), dying, &calls);
    let id = first
        .start_json("fr-fetch", json!({"items": [1, 2, 3]}), Trigger::Code)
        .await
        .unwrap();
    assert!(first.execute(&id).await.is_err(), "the store died");

    let second = engine_with(dir.path(), store, &calls);
    let execution = second.drive(&id).await.unwrap();
    assert_eq!(execution.outcome, RunOutcome::Completed(json!(18)));
    assert!(execution.replayed >= 1, "recorded steps replayed");
    let events = events_of(&second, &id).await;
    let mut ids = step_ids(&events);
    ids.sort();
    assert_eq!(
        ids,
        [
            "each#0/fetch#0",
            "each#1/fetch#0",
            "each#2/fetch#0",
            "sum#0"
        ],
        "each step recorded once"
    );
    let nows = ids_of(&events, EventKind::StepCompleted)
        .into_iter()
        .filter(|id| id == "$now#0")
        .count();
    assert_eq!(nows, 1, "ctx.now is recorded once and replayed");
    for step in [
        "each#0/fetch#0",
        "each#1/fetch#0",
        "each#2/fetch#0",
        "sum#0",
    ] {
        assert!(calls.count(step) >= 1, "{step} ran");
    }
    assert!(
        calls.all().len() < 8,
        "not every step ran twice: {:?}",
        calls.all()
    );
}

#[tokio::test]
async fn fr_editing_a_file_under_an_in_flight_run_fails_with_non_determinism() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "fetch.yaml", FETCH);
    let store: SharedStore = Arc::new(MemoryStore::new());
    let calls = Arc::new(Calls::default());
    let dying: SharedStore = Arc::new(DyingStore::new(store.clone(), 3));
    let first = engine_with(dir.path(), dying, &calls);
    let id = first
        .start_json("fr-fetch", json!({"items": [1, 2, 3]}), Trigger::Code)
        .await
        .unwrap();
    assert!(first.execute(&id).await.is_err(), "the store died");

    // The file changes what the recorded steps are called with.
    write(
        dir.path(),
        "fetch.yaml",
        &FETCH.replace("{n: \"{{ item }}\"}", "{n: \"{{ item + 100 }}\"}"),
    );
    let second = engine_with(dir.path(), store, &calls);
    let execution = second.drive(&id).await.unwrap();
    let error = failed(execution.outcome);
    assert!(error.is_non_determinism(), "{error}");
    assert!(error.message.contains("fetch"), "{error}");
}

#[tokio::test]
async fn fr_action_errors_can_be_caught_and_outputs_feed_later_steps() {
    let file = r#"
slug: fr-action-flow
steps:
  - id: first
    action: add-one
    input: {n: "{{ inputs.n }}"}
    output_variable: one
  - id: missing
    fail: "not found"
    kind: not_found
    error_handling: continue
  - id: second
    when: "steps.missing.status == 'failed'"
    action: double
    input: "{{ vars.one }}"
  - id: out
    return: "{{ steps.second.output }}"
"#;
    let (engine, calls, _dir) = engine_for("action-flow.yaml", file);
    let output = completed(run(&engine, "fr-action-flow", json!({"n": 4})).await.1);
    assert_eq!(output, json!({"n": 10}));
    assert_eq!(calls.all(), ["first#0", "second#0"]);
}

#[tokio::test]
async fn fr_parallel_any_and_first_n_record_their_winners() {
    let file = r#"
slug: fr-first-n
steps:
  - id: two
    parallel: 2
    branches:
      - name: quick
        steps:
          - id: quick-step
            set: {quick: true}
      - name: quicker
        steps:
          - id: quicker-step
            set: {quicker: true}
      - name: slow
        steps:
          - id: slow-step
            action: add-one
            input: {n: 1}
  - id: one
    parallel: any
    branches:
      - name: first
        steps:
          - id: first-step
            set: {first: 1}
      - name: second
        steps:
          - id: second-step
            action: double
            input: {n: 2}
  - id: out
    return:
      two: "{{ steps.two.output }}"
      one: "{{ steps.one.output }}"
      quick: "{{ vars.quick }}"
"#;
    let (engine, calls, _dir) = engine_for("first-n.yaml", file);
    let (id, outcome) = run(&engine, "fr-first-n", json!({})).await;
    let output = completed(outcome);
    assert_eq!(
        output["two"],
        json!({"quick": {"quick": true}, "quicker": {"quicker": true}}),
        "{output}"
    );
    assert_eq!(
        output["one"],
        json!({"winner": "first", "output": {"first": 1}})
    );
    assert_eq!(output["quick"], json!(true));
    let recorded = ids_of(&events_of(&engine, &id).await, EventKind::StepCompleted);
    assert!(recorded.contains(&"two#0".to_owned()), "{recorded:?}");
    assert!(
        calls.count("second-step") == 0,
        "the loser of `any` never started"
    );

    // A replay takes the recorded winners.
    assert_replays(&engine, &id).await;
}

/// A clock the test moves by hand.
struct HandClock(std::sync::Mutex<chrono::DateTime<chrono::Utc>>);

impl reprise::Clock for HandClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        *self.0.lock().unwrap()
    }
}

#[tokio::test]
async fn fr_a_control_flow_step_timeout_is_a_durable_timer_error_handling_sees() {
    let file = r#"
slug: fr-timeout
steps:
  - id: guarded
    timeout: 1h
    error_handling: continue
    if: "true"
    then:
      - id: approval
        hook: Approve the release
  - id: out
    return:
      status: "{{ steps.guarded.status }}"
      kind: "{{ steps.guarded.error.kind }}"
"#;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "timeout.yaml", file);
    let clock = Arc::new(HandClock(std::sync::Mutex::new(chrono::Utc::now())));
    let engine = Engine::builder()
        .store(Arc::new(MemoryStore::new()))
        .clock(clock.clone())
        .workflow_dir(dir.path())
        .build()
        .unwrap();
    let id = engine
        .start_json("fr-timeout", json!({}), Trigger::Code)
        .await
        .unwrap();
    let first = engine.drive(&id).await.unwrap();
    assert!(
        matches!(first.outcome, RunOutcome::Suspended(_)),
        "{:?}",
        first.outcome
    );
    *clock.0.lock().unwrap() += chrono::TimeDelta::hours(2);
    let output = completed(engine.drive(&id).await.unwrap().outcome);
    assert_eq!(output, json!({"status": "failed", "kind": "timeout"}));
    let events = events_of(&engine, &id).await;
    assert!(
        events
            .iter()
            .any(|e| e.event.correlation_id.as_deref() == Some("guarded.timeout#0")),
        "the timer is recorded at the step's timeout site"
    );
    assert_replays(&engine, &id).await;
}
