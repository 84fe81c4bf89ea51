//! Workflow files on the engine's surfaces: loading a directory (registry entries with
//! their path and text, the graph), the fingerprint that changes with a file edit (also of
//! a sub-workflow file), front-matter triggers (cron on a hand-moved clock, event, webhook;
//! unknown sources named at file:line:col), signal steps declared as messages, and the
//! HTTP API and UI (`origin`/`path`, `/workflows/{slug}/source`, starting runs).
//!
//! Slugs are prefixed `fx-`. These tests do not depend on what the interpreter does with a
//! run's steps: they look at what starts runs and what the surfaces show.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reprise::event::{EventKind, RunFilter, RunId};
use reprise::http::{HttpOptions, serve};
use reprise::prelude::*;
use reprise::store::{MemoryStore, SharedStore};
use reprise::trigger::{PollBatch, PollSource, WebhookDelivery, WebhookSource};
use reprise::{Clock, EngineError, MessageKind, Worker, WorkerOptions};
use serde_json::{Value, json};

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
struct FxNumber {
    n: i64,
}

/// Adds one.
#[action(slug = "fx-add")]
async fn fx_add(input: FxNumber) -> Result<FxNumber, ActionError> {
    Ok(FxNumber { n: input.n + 1 })
}

/// A directory with `files` (name → text) in it.
fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, text).unwrap();
    }
    dir
}

fn builder(store: SharedStore) -> reprise::EngineBuilder {
    Engine::builder().store(store).register(fx_add)
}

const SUM: &str = "---
slug: fx-sum
description: Adds one to n, twice <fast>.
input:
  type: object
  properties:
    n: { type: integer }
steps:
  - id: first
    action: fx-add
    input: { n: \"{{ inputs.n }}\" }
  - id: second
    action: fx-add
    input: { n: \"{{ steps.first.output.n }}\" }
  - id: done
    return: \"{{ steps.second.output }}\"
---

# Sum

Adds one, twice.
";

// ---------------------------------------------------------------- loading, graph

#[tokio::test]
async fn fx_a_loaded_file_is_registered_with_its_path_text_and_graph() {
    let dir = dir_with(&[("sum.md", SUM)]);
    let engine = builder(Arc::new(MemoryStore::new()))
        .workflow_dir(dir.path())
        .build()
        .unwrap();
    let entry = engine
        .registry()
        .workflow("fx-sum")
        .expect("fx-sum is registered");
    assert_eq!(entry.path, Some(dir.path().join("sum.md").as_path()));
    assert_eq!(entry.source, Some(SUM));
    assert_eq!(
        entry.registration.description,
        "Adds one to n, twice <fast>."
    );
    assert_eq!(
        entry.input_schema()["properties"]["n"]["type"],
        json!("integer")
    );
    // Code workflows have no file.
    assert!(
        engine
            .registry()
            .workflows()
            .filter(|w| w.registration.slug != "fx-sum")
            .all(|w| w.path.is_none() && w.source.is_none())
    );

    // The graph is drawn from the file's steps: its two action calls by id.
    let graph = reprise::graph::Graph::of_workflow(engine.registry(), "fx-sum")
        .expect("a file workflow has a graph");
    let mermaid = graph.mermaid();
    assert!(mermaid.contains("[\"first\"]"), "{mermaid}");
    assert!(mermaid.contains("[\"second\"]"), "{mermaid}");
    let nodes = serde_json::to_value(&graph).unwrap()["nodes"].clone();
    let calls: Vec<&Value> = nodes
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["callee"] == "fx-add")
        .collect();
    assert_eq!(calls.len(), 2, "{nodes}");
}

#[tokio::test]
async fn fx_a_workflows_dir_with_a_taken_slug_fails_the_build_naming_the_file() {
    let dir = dir_with(&[(
        "clash.yaml",
        "slug: fx-add\nsteps:\n  - id: done\n    return: 1\n",
    )]);
    let error = builder(Arc::new(MemoryStore::new()))
        .workflow_dir(dir.path())
        .build()
        .unwrap_err();
    let text = error.to_string();
    assert!(text.contains("fx-add"), "{text}");
    assert!(text.contains("clash.yaml"), "{text}");
}

// ---------------------------------------------------------------- fingerprint

/// The fingerprint the run's first execution recorded (`run_started`).
async fn fingerprint_of(engine: &Engine, slug: &str) -> String {
    let id = engine
        .start_json(slug, json!({ "n": 1 }), reprise::Trigger::Code)
        .await
        .unwrap();
    // Whatever the body does, the attempt records the fingerprint when it starts.
    let _ = engine.drive(&id).await;
    let events = engine.store().events(&id).await.unwrap();
    let started = events
        .iter()
        .find(|e| e.event.kind == EventKind::RunStarted)
        .expect("the run started");
    started.event.payload["fingerprint"]
        .as_str()
        .expect("run_started records a fingerprint")
        .to_owned()
}

async fn fingerprint_with(files: &[(&str, &str)], slug: &str) -> String {
    let dir = dir_with(files);
    let engine = builder(Arc::new(MemoryStore::new()))
        .workflow_dir(dir.path())
        .build()
        .unwrap();
    fingerprint_of(&engine, slug).await
}

const PARENT: &str = "slug: fx-parent
steps:
  - id: child
    workflow: fx-child
    input: \"{{ inputs }}\"
";

#[tokio::test]
async fn fx_editing_a_file_or_its_sub_workflow_file_changes_the_fingerprint() {
    let before = fingerprint_with(&[("sum.md", SUM)], "fx-sum").await;
    let again = fingerprint_with(&[("sum.md", SUM)], "fx-sum").await;
    assert_eq!(before, again, "the same file has the same fingerprint");

    // An edit that keeps every step id and line (the second step's input).
    let edited = SUM.replace("steps.first.output.n", "steps.first.output.n + 1");
    let after = fingerprint_with(&[("sum.md", &edited)], "fx-sum").await;
    assert_ne!(before, after, "editing the file changes its fingerprint");

    // Editing only the sub-workflow's file changes the parent's fingerprint.
    let child =
        |value: &str| format!("slug: fx-child\nsteps:\n  - id: done\n    return: {value}\n");
    let one = fingerprint_with(
        &[("parent.yaml", PARENT), ("child.yaml", &child("1"))],
        "fx-parent",
    )
    .await;
    let two = fingerprint_with(
        &[("parent.yaml", PARENT), ("child.yaml", &child("2"))],
        "fx-parent",
    )
    .await;
    assert_ne!(
        one, two,
        "a sub-workflow file's edit changes the caller's fingerprint"
    );
}

const DRIFT: &str = "slug: fx-drift
steps:
  - id: add
    action: fx-add
    input: { n: \"{{ inputs.n }}\" }
  - id: nap
    sleep: 1h
  - id: done
    return: \"{{ steps.add.output }}\"
";

#[tokio::test]
async fn fx_a_run_replayed_against_an_edited_file_fails_saying_the_workflow_changed() {
    let store: SharedStore = Arc::new(MemoryStore::new());
    let v1 = dir_with(&[("drift.yaml", DRIFT)]);
    let old = builder(store.clone())
        .workflow_dir(v1.path())
        .build()
        .unwrap();
    let id = old
        .start_json("fx-drift", json!({ "n": 1 }), reprise::Trigger::Code)
        .await
        .unwrap();
    let first = old.execute(&id).await.unwrap();
    assert!(
        matches!(first.outcome, reprise::RunOutcome::Suspended(_)),
        "{:?}",
        first.outcome
    );

    // The file is edited while the run sleeps: the recorded step `add#0` now gets
    // another input.
    let v2 = dir_with(&[(
        "drift.yaml",
        &DRIFT.replace("{{ inputs.n }}", "{{ inputs.n + 1 }}"),
    )]);
    let new = builder(store.clone())
        .workflow_dir(v2.path())
        .build()
        .unwrap();
    let replayed = new.execute(&id).await.unwrap();
    let reprise::RunOutcome::Failed(error) = replayed.outcome else {
        panic!(
            "the edited file does not replay the run: {:?}",
            replayed.outcome
        );
    };
    let message = error.to_string();
    assert!(message.contains("add#0"), "{message}");
    assert!(
        message.contains("changed since this run was recorded"),
        "the report says the workflow changed: {message}"
    );
}

// ---------------------------------------------------------------- triggers

/// A clock moved by hand.
struct HandClock(Mutex<DateTime<Utc>>);

impl HandClock {
    fn at(text: &str) -> Arc<HandClock> {
        Arc::new(HandClock(Mutex::new(at(text))))
    }
    fn set(&self, text: &str) {
        *self.0.lock().unwrap() = at(text);
    }
}

impl Clock for HandClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

async fn runs_of(engine: &Engine, slug: &str) -> Vec<reprise::event::RunRecord> {
    engine
        .list_runs(&RunFilter {
            workflow: Some(slug.into()),
            ..RunFilter::default()
        })
        .await
        .unwrap()
}

const NIGHTLY: &str = "slug: fx-nightly
triggers:
  - cron: \"0 9 * * *\"
    timezone: Europe/Paris
    input: { day: \"{{ ctx.now[:10] }}\", fixed: kept }
steps:
  - id: done
    return: \"{{ inputs.day }}\"
";

#[tokio::test]
async fn fx_a_cron_trigger_fires_at_its_tick_on_the_engines_clock() {
    let dir = dir_with(&[("nightly.yaml", NIGHTLY)]);
    // 09:00 in Paris is 08:00 UTC in winter.
    let clock = HandClock::at("2026-01-15T07:59:00Z");
    let engine = builder(Arc::new(MemoryStore::new()))
        .clock(clock.clone())
        .workflow_dir(dir.path())
        .build()
        .unwrap();
    let cron = engine
        .triggers()
        .crons()
        .find(|c| c.workflow() == "fx-nightly")
        .expect("the file's cron trigger is a cron schedule");
    assert_eq!(cron.name(), "fx-nightly-cron-1");
    assert_eq!(cron.expression(), "0 9 * * *");
    assert_eq!(cron.time_zone_name(), "Europe/Paris");

    let triggers = engine.triggers();
    assert!(triggers.fire_due(&engine).await.unwrap().is_empty());
    clock.set("2026-01-15T07:59:59Z");
    assert!(triggers.fire_due(&engine).await.unwrap().is_empty());
    clock.set("2026-01-15T08:00:00Z");
    let started = triggers.fire_due(&engine).await.unwrap();
    assert_eq!(started.len(), 1);
    // Once per tick.
    assert!(triggers.fire_due(&engine).await.unwrap().is_empty());
    let runs = runs_of(&engine, "fx-nightly").await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].id, started[0]);
    assert_eq!(runs[0].trigger, reprise::Trigger::Cron);
    // The input template read the tick (`ctx.now`, UTC).
    assert_eq!(
        runs[0].input,
        json!({ "day": "2026-01-15", "fixed": "kept" })
    );
}

#[tokio::test]
async fn fx_an_event_trigger_starts_a_run_per_event_with_its_data() {
    let dir = dir_with(&[(
        "order.yaml",
        "slug: fx-order\ntriggers:\n  - event: fx.order.paid\nsteps:\n  - id: done\n    return: \"{{ inputs.total }}\"\n",
    )]);
    let engine = builder(Arc::new(MemoryStore::new()))
        .workflow_dir(dir.path())
        .build()
        .unwrap();
    assert_eq!(
        engine
            .registry()
            .workflow("fx-order")
            .unwrap()
            .options
            .on_event,
        Some("fx.order.paid")
    );
    let emitted = engine
        .emit("fx.order.paid", json!({ "total": 42 }), Some("e-1".into()))
        .await
        .unwrap();
    assert_eq!(emitted.started.len(), 1);
    let again = engine
        .emit("fx.order.paid", json!({ "total": 42 }), Some("e-1".into()))
        .await
        .unwrap();
    assert!(again.started.is_empty(), "one run per event id");
    let runs = runs_of(&engine, "fx-order").await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].input, json!({ "total": 42 }));
}

const HOOKED: &str = "slug: fx-hooked
triggers:
  - webhook: fx-push
steps:
  - id: done
    return: \"{{ inputs }}\"
";

#[tokio::test]
async fn fx_a_webhook_trigger_names_the_source_that_starts_the_file_workflow() {
    let dir = dir_with(&[("hooked.yaml", HOOKED)]);
    let engine = builder(Arc::new(MemoryStore::new()))
        .workflow_dir(dir.path())
        .webhook(WebhookSource::new("fx-push", "fx-hooked").insecure_no_signature())
        .build()
        .unwrap();
    let delivered = engine
        .deliver_webhook("fx-push", &[], br#"{"ref":"main"}"#)
        .await
        .unwrap();
    let WebhookDelivery::Started(id) = delivered else {
        panic!("expected a started run, got {delivered:?}");
    };
    let runs = runs_of(&engine, "fx-hooked").await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].id, id);
    assert_eq!(runs[0].trigger, reprise::Trigger::Webhook);
    assert_eq!(runs[0].input, json!({ "ref": "main" }));
}

/// The build error of `builder` over a directory holding `name` = `text`, and the file's
/// path.
fn build_error(
    name: &str,
    text: &str,
    more: impl FnOnce(reprise::EngineBuilder) -> reprise::EngineBuilder,
) -> (String, PathBuf) {
    let dir = dir_with(&[(name, text)]);
    let path = dir.path().join(name);
    let error = more(builder(Arc::new(MemoryStore::new())).workflow_dir(dir.path()))
        .build()
        .unwrap_err();
    assert!(matches!(error, EngineError::Config(_)), "{error:?}");
    (error.to_string(), path)
}

#[tokio::test]
async fn fx_a_trigger_naming_an_unknown_or_foreign_source_fails_the_build_at_its_line() {
    // No source of that name: file:line:col of the `webhook:` key, and how to fix it.
    let (text, path) = build_error("hooked.yaml", HOOKED, |b| b);
    assert!(
        text.contains(&format!(
            "{}:3:5: no webhook source named `fx-push` is configured",
            path.display()
        )),
        "{text}"
    );
    assert!(
        text.contains("WebhookSource::new(\"fx-push\", \"fx-hooked\")"),
        "{text}"
    );

    // A source that starts another workflow.
    let (text, path) = build_error("hooked.yaml", HOOKED, |b| {
        b.webhook(WebhookSource::new("fx-push", "fx-add-flow").insecure_no_signature())
    });
    assert!(
        text.contains(&format!(
            "{}:3:5: webhook source `fx-push` starts workflow `fx-add-flow`, not this file's `fx-hooked`",
            path.display()
        )),
        "{text}"
    );

    // A poll source, unknown.
    let polled =
        "slug: fx-polled\nsteps:\n  - id: done\n    return: 1\ntriggers:\n  - poll: fx-feed\n";
    let (text, path) = build_error("polled.yaml", polled, |b| b);
    assert!(
        text.contains(&format!(
            "{}:6:5: no poll source named `fx-feed` is configured",
            path.display()
        )),
        "{text}"
    );
    // Declared for this workflow: builds.
    let dir = dir_with(&[("polled.yaml", polled)]);
    builder(Arc::new(MemoryStore::new()))
        .workflow_dir(dir.path())
        .poll(PollSource::new(
            "fx-feed",
            "fx-polled",
            Duration::from_secs(60),
            |_cursor| async { Ok(PollBatch::default()) },
        ))
        .build()
        .unwrap();

    // Two event triggers, in a Markdown file whose step waits on an event of the same
    // name: the position is the trigger's (file lines, front matter included).
    let two_events = "---\nslug: fx-two-events\nsteps:\n  - id: wait\n    event: fx-other\ntriggers:\n  - event: fx-evt\n  - event: fx-other\n---\n\nTwo.\n";
    let (text, path) = build_error("two-events.md", two_events, |b| b);
    assert!(
        text.contains(&format!(
            "{}:8:5: a workflow has at most one `event` trigger",
            path.display()
        )),
        "{text}"
    );

    // A bad cron expression.
    let bad_cron = "slug: fx-bad-cron\ntriggers:\n  - cron: \"61 * * * *\"\nsteps:\n  - id: done\n    return: 1\n";
    let (text, path) = build_error("bad-cron.yaml", bad_cron, |b| b);
    assert!(
        text.contains(&format!(
            "{}:3:11: `61 * * * *` is not a cron expression",
            path.display()
        )),
        "{text}"
    );
}

// ---------------------------------------------------------------- signals

#[tokio::test]
async fn fx_signal_steps_are_declared_as_the_workflows_signals() {
    let dir = dir_with(&[(
        "wait.yaml",
        "slug: fx-wait\nsteps:\n  - id: go\n    signal: fx-go\n  - id: again\n    signal: fx-go\n  - id: stop\n    signal: fx-stop\n",
    )]);
    let engine = builder(Arc::new(MemoryStore::new()))
        .workflow_dir(dir.path())
        .build()
        .unwrap();
    let entry = engine.registry().workflow("fx-wait").unwrap();
    let names: Vec<(MessageKind, &str)> = entry
        .options
        .messages
        .iter()
        .map(|d| (d.kind, d.name))
        .collect();
    assert_eq!(
        names,
        vec![
            (MessageKind::Signal, "fx-go"),
            (MessageKind::Signal, "fx-stop")
        ]
    );
    // Any JSON payload passes the declaration (a step's `schema` is checked by the step).
    let validator = (entry.options.messages[0].payload)().unwrap();
    assert!(validator.validate(&json!({ "any": ["thing"] })).is_ok());
}

// ---------------------------------------------------------------- HTTP and UI

/// Serves `engine` on 127.0.0.1:0 with a worker; returns the base URL.
async fn serve_engine(engine: &Engine) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let options = HttpOptions {
        api_token: None,
        ..HttpOptions::default()
    };
    tokio::spawn(serve(
        engine.clone(),
        listener,
        options,
        std::future::pending::<()>(),
    ));
    let worker = Worker::new(
        engine,
        WorkerOptions {
            poll_interval: Duration::from_millis(50),
            ..WorkerOptions::default()
        },
    );
    tokio::spawn(worker.run(std::future::pending::<()>()));
    base
}

/// A code workflow, to compare with.
#[workflow(slug = "fx-code")]
async fn fx_code(_ctx: Ctx, input: FxNumber) -> Result<FxNumber, WorkflowError> {
    Ok(input)
}

async fn get_json(client: &reqwest::Client, url: String) -> (u16, Value) {
    let response = client.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn path_text(path: &Path) -> String {
    path.display().to_string()
}

#[tokio::test]
async fn fx_http_lists_file_workflows_with_origin_path_and_source_and_starts_runs() {
    let dir = dir_with(&[("sum.md", SUM)]);
    let engine = builder(Arc::new(MemoryStore::new()))
        .register(fx_code)
        .workflow_dir(dir.path())
        .build()
        .unwrap();
    let base = serve_engine(&engine).await;
    let client = reqwest::Client::new();
    let file = path_text(&dir.path().join("sum.md"));

    let (status, list) = get_json(&client, format!("{base}/workflows")).await;
    assert_eq!(status, 200, "{list}");
    let find = |slug: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|w| w["slug"] == slug)
            .cloned()
            .unwrap_or_else(|| panic!("{slug} is listed: {list}"))
    };
    assert_eq!(find("fx-sum")["origin"], "file");
    assert_eq!(find("fx-sum")["path"], json!(file));
    assert_eq!(find("fx-code")["origin"], "code");
    assert!(find("fx-code").get("path").is_none());

    let (status, one) = get_json(&client, format!("{base}/workflows/fx-sum")).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["origin"], "file");
    assert_eq!(one["path"], json!(file));
    assert_eq!(one["input_schema"]["properties"]["n"]["type"], "integer");
    let (status, missing) = get_json(&client, format!("{base}/workflows/fx-nope")).await;
    assert_eq!(status, 404, "{missing}");

    let (status, source) = get_json(&client, format!("{base}/workflows/fx-sum/source")).await;
    assert_eq!(status, 200, "{source}");
    assert_eq!(
        source,
        json!({ "slug": "fx-sum", "path": file, "source": SUM })
    );
    let (status, none) = get_json(&client, format!("{base}/workflows/fx-code/source")).await;
    assert_eq!(status, 404, "{none}");
    assert_eq!(none["code"], "no_source", "{none}");

    // Starting a run over HTTP works as for code workflows: the input is checked against
    // the file's input schema, and a valid one is queued.
    let response = client
        .post(format!("{base}/workflows/fx-sum"))
        .json(&json!({ "n": "one" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 422);
    let response = client
        .post(format!("{base}/workflows/fx-sum"))
        .json(&json!({ "n": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let started: Value = response.json().await.unwrap();
    let id = RunId(started["run_id"].as_str().unwrap().to_owned());
    let run = engine.get_run(&id).await.unwrap();
    assert_eq!(run.workflow, "fx-sum");
    assert_eq!(run.input, json!({ "n": 1 }));

    // The UI page says where the workflow is defined and shows the file, escaped.
    let page = client
        .get(format!("{base}/ui/workflows/fx-sum"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("defined in"), "{page}");
    assert!(page.contains(&file), "{page}");
    assert!(page.contains("id: second"), "the source is shown");
    assert!(
        page.contains("twice &lt;fast&gt;."),
        "the source is escaped"
    );
    assert!(!page.contains("<fast>"), "nothing of the file is raw HTML");
    let listing = client
        .get(format!("{base}/ui/workflows"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(listing.contains("fx-sum"), "{listing}");
}
