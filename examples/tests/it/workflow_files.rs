//! The example workflow files (`examples/workflows/`: `code-review.md`,
//! `nightly-report.yaml`) as a user relies on them: they parse and load into the example
//! app's engine; each runs end to end on a `TestEnv` (a mock GitHub-like API or stubs, a
//! fake or scripted model, the approval hook delivered), survives a crash at any point
//! (the crash checker, by slug), and has a run-log snapshot; `nightly-report` is fired by
//! its cron trigger on the virtual clock, fetches three sources at a time, and falls back
//! to empty metrics after retries 10 s apart; and the README's commands work in the app.
//!
//! Snapshots: `snapshots/it__workflow_files__*.snap` (review with `cargo insta review`).

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reprise::event::{EventKind, RunStatus};
use reprise::llm::{LlmRequest, Role};
use reprise::{ActionError, RunOutcome};
use reprise_examples::report_actions::{MetricsApi, ReportInbox};
use reprise_examples::review_actions::{GithubApi, ScriptedReviewModel, sample_pull};
use reprise_testkit::crash::{self, CheckConfig, CheckReport};
use reprise_testkit::http::MockHttp;
use reprise_testkit::llm::{FakeLlm, Reply};
use reprise_testkit::{
    Outcome, Pending, TempDb, TestEnv, assert_each_step_recorded_once, assert_run_snapshot,
    completed_steps,
};
use serde_json::{Value, json};

fn dir() -> PathBuf {
    PathBuf::from(reprise_examples::WORKFLOWS_DIR)
}

/// Whether a step with site key `key` completed (at the top level or in a namespace).
fn has_step(ids: &[String], key: &str) -> bool {
    let want = format!("{key}#0");
    ids.iter()
        .any(|id| *id == want || id.ends_with(&format!("/{want}")))
}

/// The scripted stand-in the example app uses offline (over a FakeLlm that knows nothing,
/// so any request it does not script fails loudly).
fn scripted() -> Arc<dyn reprise::llm::LlmProvider> {
    Arc::new(ScriptedReviewModel::wrapping(Arc::new(FakeLlm::new())))
}

fn review_input() -> Value {
    json!({ "repo": "octo/app", "pr": 7 })
}

/// `fetch-diff` answering the offline sample, `post-review` answering a fixed review:
/// no network.
fn stub_review_actions(env: &TestEnv) {
    env.stub_slug("fetch-diff", |input: Value| async move {
        let repo = input["repo"].as_str().unwrap_or_default().to_owned();
        let pr = input["pr"].as_u64().unwrap_or(1);
        Ok(serde_json::to_value(sample_pull(&repo, pr)).unwrap())
    });
    env.stub_slug("post-review", |input: Value| async move {
        Ok(json!({
            "id": "review-1",
            "url": null,
            "event": input["event"],
            "comments": input["comments"].as_array().map_or(0, Vec::len),
        }))
    });
}

fn review_env() -> TestEnv {
    let env = TestEnv::builder()
        .workflow_dir(dir())
        .configure(|b| b.llm(scripted()))
        .build();
    stub_review_actions(&env);
    env
}

fn the_hook(outcome: Outcome<Value>) -> (String, String, Value) {
    let waits = outcome.suspended();
    waits
        .iter()
        .find_map(|w| match w {
            Pending::Hook { id, token, schema } => {
                Some((id.clone(), token.clone(), schema.clone()))
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("the run waits on no hook: {waits:?}"))
}

// ---- the files themselves ----

#[test]
fn wf_files_the_example_files_parse_with_their_ids_and_triggers() {
    let read = |name: &str| {
        let path = dir().join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        reprise::files::parse_file(&path, &text).unwrap_or_else(|e| panic!("{e}"))
    };
    let review = read("code-review.md");
    assert_eq!(review.slug, "code-review");
    let ids: Vec<&str> = review.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "diff",
            "investigate",
            "verdict",
            "approval",
            "decided",
            "act",
            "result"
        ]
    );
    assert!(
        review.description.contains("pull request"),
        "{}",
        review.description
    );
    assert!(
        review.markdown.contains("## Steps"),
        "the body documents the workflow"
    );
    assert_eq!(review.input_schema["required"], json!(["repo", "pr"]));

    let report = read("nightly-report.yaml");
    assert_eq!(report.slug, "nightly-report");
    let ids: Vec<&str> = report.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "collect", "rows", "totals", "healthy", "summary", "send", "done"
        ]
    );
    assert_eq!(report.triggers.len(), 1);
    assert_eq!(report.triggers[0].cron.as_deref(), Some("0 2 * * *"));
}

#[test]
fn wf_files_the_example_files_load_into_the_example_apps_engine() {
    reprise_examples::link();
    let engine =
        reprise_testkit::memory_engine(|b| b.workflow_dir(dir())).unwrap_or_else(|e| panic!("{e}"));
    for slug in ["code-review", "nightly-report"] {
        assert!(
            engine.registry().workflow(slug).is_some(),
            "`{slug}` is registered"
        );
    }
    for slug in [
        "fetch-diff",
        "lookup-file",
        "run-linter",
        "post-review",
        "fetch-metrics",
        "empty-metrics",
        "send-report",
    ] {
        assert!(
            engine
                .registry()
                .actions()
                .any(|a| a.registration.slug == slug),
            "the action `{slug}` the files call is registered"
        );
    }
}

#[test]
fn wf_files_the_scripted_model_lints_then_requests_changes_for_the_sample() {
    let sample = sample_pull("octo/app", 7);
    let message = format!(
        "Pull request #7 of octo/app.\nChanged files: {}\n\n{}",
        sample.files.join(", "),
        sample.diff
    );
    let tool = |name: &str| reprise::llm::ToolSpec {
        name: name.into(),
        description: String::new(),
        parameters: json!({}),
    };
    let mut request = LlmRequest {
        model: "any".into(),
        messages: vec![reprise::llm::ChatMessage::user(message)],
        tools: vec![tool("lookup-file"), tool("run-linter")],
        ..LlmRequest::default()
    };
    let first = ScriptedReviewModel::respond(&request).unwrap().message;
    let paths: Vec<&str> = first
        .tool_calls
        .iter()
        .map(|c| c.arguments["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["src/config.rs", "README.md"], "lints every file");
    request.messages.push(first.clone());
    for call in &first.tool_calls {
        let report = reprise_examples::review_actions::lint(
            call.arguments["path"].as_str().unwrap(),
            call.arguments["patch"].as_str().unwrap(),
        );
        let report = json!({ "path": call.arguments["path"], "warnings": report });
        request.messages.push(reprise::llm::ChatMessage::tool(
            &call.id,
            report.to_string(),
        ));
    }
    let findings = ScriptedReviewModel::respond(&request).unwrap().message;
    let text = findings.content.unwrap();
    assert!(text.contains("- src/config.rs:11 unwrap:"), "{text}");

    let verdict = LlmRequest {
        model: "any".into(),
        messages: vec![reprise::llm::ChatMessage::user(format!(
            "Decide on pull request #7 of octo/app.\n\nThe reviewer's findings:\n{text}"
        ))],
        response_schema: Some(reprise::llm::ResponseSchema {
            name: "verdict".into(),
            schema: json!({}),
        }),
        ..LlmRequest::default()
    };
    let answer: Value = serde_json::from_str(
        &ScriptedReviewModel::respond(&verdict)
            .unwrap()
            .message
            .content
            .unwrap(),
    )
    .unwrap();
    assert_eq!(answer["verdict"], "request_changes");
    assert_eq!(answer["comments"].as_array().unwrap().len(), 3);
    assert_eq!(answer["comments"][0]["line"], 11);
}

// ---- code-review ----

/// A GitHub-like API with pull request 7 of `octo/app`: one file whose patch adds an
/// `unwrap()` on line 2.
async fn github() -> MockHttp {
    let api = MockHttp::start().await;
    api.respond_json(
        "GET",
        "/repos/octo/app/pulls/7",
        200,
        json!({
            "title": "Run the app",
            "user": { "login": "grace" },
            "head": { "sha": "feedface" },
        }),
    )
    .await;
    api.respond_json(
        "GET",
        "/repos/octo/app/pulls/7/files",
        200,
        json!([{
            "filename": "src/main.rs",
            "additions": 1,
            "deletions": 0,
            "patch": "@@ -1,2 +1,3 @@\n fn main() {\n+    run().unwrap();\n }\n",
        }]),
    )
    .await;
    api.respond_json(
        "GET",
        "/repos/octo/app/contents/src/main.rs",
        200,
        // "fn main() {\n    run().unwrap();\n}\n", base64.
        json!({
            "encoding": "base64",
            "content": "Zm4gbWFpbigpIHsKICAgIHJ1bigpLnVud3JhcCgpOwp9Cg==",
        }),
    )
    .await;
    api.respond_json(
        "POST",
        "/repos/octo/app/pulls/7/reviews",
        200,
        json!({ "id": 42, "html_url": "https://github.test/octo/app/pull/7#review-42" }),
    )
    .await;
    api
}

fn last_user(request: &LlmRequest) -> String {
    request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Some(Role::User))
        .and_then(|m| m.content.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn wf_files_code_review_reviews_a_pull_request_from_a_mock_github_and_posts_once_approved() {
    let api = github().await;
    let llm = FakeLlm::new()
        .reply_tool_calls([(
            "run-linter",
            json!({
                "path": "src/main.rs",
                "patch": "@@ -1,2 +1,3 @@\n fn main() {\n+    run().unwrap();\n }\n",
            }),
        )])
        .reply_tool_calls([(
            "lookup-file",
            json!({ "repo": "octo/app", "path": "src/main.rs" }),
        )])
        .reply("- src/main.rs:2 unwrap: panics when run fails\nA small change.")
        .reply(Reply::json(json!({
            "verdict": "request_changes",
            "summary": "Handle the error of run() instead of panicking.",
            "comments": [{ "path": "src/main.rs", "line": 2, "body": "Use `?` here." }],
        })));
    let env = TestEnv::builder()
        .workflow_dir(dir())
        .llm(llm.clone())
        .configure({
            let uri = api.uri();
            move |b| b.resource(GithubApi(uri))
        })
        .build();

    // The run stops at the approval hook, with the hook's schema.
    let outcome = env.run_slug("code-review", review_input()).await;
    let (hook, token, schema) = the_hook(outcome);
    assert!(hook.ends_with("approval#0"), "{hook}");
    assert!(
        schema.to_string().contains("reject"),
        "the hook's schema is the file's: {schema}"
    );
    assert!(
        api.received("POST", "/repos/octo/app/pulls/7/reviews")
            .await
            .is_empty(),
        "nothing is posted before a human approves"
    );

    // What the agent and the verdict were given.
    let requests = llm.requests();
    assert_eq!(requests.len(), 4, "three agent turns and the verdict");
    let tools: Vec<&str> = requests[0].tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(tools, ["lookup-file", "run-linter"]);
    let message = last_user(&requests[0]);
    assert!(message.contains("\"Run the app\""), "{message}");
    assert!(
        message.contains("+    run().unwrap();"),
        "the diff: {message}"
    );
    let linted = requests[1]
        .messages
        .iter()
        .find(|m| m.role == Some(Role::Tool))
        .and_then(|m| m.content.clone())
        .unwrap();
    assert!(linted.contains("unwrap"), "the linter ran: {linted}");
    let looked_up = requests[2]
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Some(Role::Tool))
        .and_then(|m| m.content.clone())
        .unwrap();
    assert!(
        looked_up.contains("fn main()"),
        "the file was read: {looked_up}"
    );
    let verdict = &requests[3];
    assert!(last_user(verdict).contains("panics when run fails"));
    let response_schema = verdict
        .response_schema
        .as_ref()
        .expect("a structured verdict");
    assert!(
        response_schema
            .schema
            .to_string()
            .contains("request_changes")
    );

    // Approved: posted once, with the reviewer's note.
    let done = env
        .resume_hook(
            &token,
            json!({ "decision": "approve", "reviewer": "ada", "note": "Thanks!" }),
        )
        .await
        .unwrap()
        .completed();
    assert_eq!(done["verdict"], "request_changes");
    assert_eq!(done["decision"], "approve");
    assert_eq!(done["comments"], 1);
    assert_eq!(done["review"]["id"], "42");
    assert_eq!(
        done["review"]["url"],
        "https://github.test/octo/app/pull/7#review-42"
    );
    let posted = api
        .received("POST", "/repos/octo/app/pulls/7/reviews")
        .await;
    assert_eq!(posted.len(), 1);
    assert!(posted[0].headers.get("idempotency-key").is_some());
    let body: Value = serde_json::from_slice(&posted[0].body).unwrap();
    assert_eq!(body["event"], "REQUEST_CHANGES");
    assert_eq!(body["comments"][0]["line"], 2);
    let text = body["body"].as_str().unwrap();
    assert!(text.starts_with("Handle the error of run()"), "{text}");
    assert!(
        text.contains("Thanks!") && text.contains("Approved by ada"),
        "{text}"
    );

    // Every call is a recorded step, once.
    let events = env.engine().events(&env.last_run()).await.unwrap();
    assert_each_step_recorded_once(&events);
    let ids = completed_steps(&events);
    for key in ["diff", "investigate", "verdict", "post"] {
        assert!(has_step(&ids, key), "`{key}` completed: {ids:?}");
    }
    let received: Vec<_> = events
        .iter()
        .filter(|e| e.event.kind == EventKind::HookReceived)
        .filter_map(|e| e.event.correlation_id.clone())
        .collect();
    assert_eq!(
        received,
        ["approval#0"],
        "the approval hook got one payload"
    );
    assert!(ids.iter().any(|id| id.contains("run-linter#0")), "{ids:?}");
    assert_eq!(env.calls_of("run-linter").len(), 1);
    assert_eq!(env.calls_of("lookup-file").len(), 1);
    assert_eq!(env.calls_of("post-review").len(), 1);
}

#[tokio::test]
async fn wf_files_code_review_posts_nothing_when_rejected_or_when_nobody_answers_in_3_days() {
    let env = review_env();
    let (_, token, _) = the_hook(env.run_slug("code-review", review_input()).await);
    let done = env
        .resume_hook(&token, json!({ "decision": "reject", "reviewer": "ada" }))
        .await
        .unwrap()
        .completed();
    assert_eq!(done["decision"], "reject");
    assert_eq!(done["review"], Value::Null);
    assert_eq!(
        done["verdict"], "request_changes",
        "the sample has an unwrap()"
    );
    assert!(env.calls_of("post-review").is_empty());

    // A payload that breaks the hook's schema is refused (the hook stays open).
    let env = review_env();
    let (_, token, _) = the_hook(env.run_slug("code-review", review_input()).await);
    let run = env.last_run();
    assert!(
        env.resume_hook(&token, json!({ "decision": "maybe", "reviewer": "ada" }))
            .await
            .is_err(),
        "`maybe` is not a decision"
    );
    // Nobody answers: after 3 days the hook times out and the run goes on without posting.
    let outcomes = env.advance(Duration::from_secs(3 * 24 * 3600 + 1)).await;
    let (_, outcome) = outcomes
        .into_iter()
        .find(|(id, _)| *id == run)
        .expect("the hook's deadline continued the run");
    let done = outcome.completed();
    assert_eq!(done["decision"], "expired");
    assert_eq!(done["review"], Value::Null);
    assert!(env.calls_of("post-review").is_empty());
}

#[tokio::test]
async fn wf_files_code_review_log() {
    let env = review_env();
    let (_, token, _) = the_hook(env.run_slug("code-review", review_input()).await);
    let done = env
        .resume_hook(&token, json!({ "decision": "approve", "reviewer": "ada" }))
        .await
        .unwrap()
        .completed();
    assert_eq!(done["review"]["id"], "review-1");
    assert_run_snapshot!(env, env.last_run());
}

fn review_check() -> CheckConfig {
    CheckConfig::default()
        .workflow_dir(dir())
        .configure(|b| b.llm(scripted()))
        .stub_slug("fetch-diff", |input: Value| async move {
            let repo = input["repo"].as_str().unwrap_or_default().to_owned();
            Ok(serde_json::to_value(sample_pull(&repo, 7)).unwrap())
        })
        .stub_slug("post-review", |input: Value| async move {
            Ok(json!({
                "id": "review-1",
                "url": null,
                "event": input["event"],
                "comments": input["comments"].as_array().map_or(0, Vec::len),
            }))
        })
        .hook(
            "approval#0",
            json!({ "decision": "approve", "reviewer": "ada" }),
        )
}

fn completed(report: &CheckReport) -> &Value {
    eprintln!("{report}");
    match &report.outcome {
        RunOutcome::Completed(output) => output,
        other => panic!("expected the run to complete, it ended {other:?}"),
    }
}

#[test]
fn wf_files_code_review_survives_any_crash() {
    let report = crash::assert_crash_safe_slug("code-review", review_input(), review_check());
    let output = completed(&report);
    assert_eq!(output["decision"], "approve");
    assert_eq!(output["review"]["id"], "review-1");
    assert_eq!(
        report.covered,
        report.crash_points.min(report.cases as usize)
    );
}

// ---- nightly-report ----

fn report_input(sources: &[&str]) -> Value {
    json!({
        "sources": sources,
        "to": "ops@example.com",
        "until": "2030-01-01T02:00:00Z",
    })
}

/// `fetch-metrics` answering fixed numbers per source, failing (transiently) for
/// `billing` every time; `send-report` answering a fixed id.
fn metrics_stub(
    input: Value,
) -> impl std::future::Future<Output = Result<Value, ActionError>> + Send + 'static {
    let source = input["source"].as_str().unwrap_or_default().to_owned();
    let until = input["until"].clone();
    std::future::ready(match source.as_str() {
        "billing" => Err(ActionError::transient("503 from the metrics API")),
        _ => {
            let (requests, errors) = match source.as_str() {
                "api" => (1000, 5),
                "web" => (2000, 60),
                _ => (500, 0),
            };
            Ok(json!({
                "source": source,
                "until": until,
                "requests": requests,
                "errors": errors,
                "p95_ms": 120,
                "stale": false,
            }))
        }
    })
}

fn send_stub(
    input: Value,
) -> impl std::future::Future<Output = Result<Value, ActionError>> + Send + 'static {
    std::future::ready(Ok(json!({
        "id": "report-1",
        "rows": input["rows"].as_array().map_or(0, Vec::len),
    })))
}

const SOURCES: [&str; 4] = ["api", "web", "worker", "billing"];

#[tokio::test]
async fn wf_files_nightly_report_falls_back_for_a_failing_source_after_retries_10s_apart() {
    let api = MockHttp::start().await;
    for (source, requests, errors) in [("api", 1000, 5), ("web", 2000, 60), ("worker", 500, 0)] {
        api.respond_json(
            "GET",
            &format!("/metrics/{source}"),
            200,
            json!({ "requests": requests, "errors": errors, "p95_ms": 120 }),
        )
        .await;
    }
    api.respond_json("GET", "/metrics/billing", 503, json!({}))
        .await;
    api.respond_json("POST", "/reports", 200, json!({ "id": "report-9" }))
        .await;
    let env = TestEnv::builder()
        .workflow_dir(dir())
        .configure({
            let uri = api.uri();
            move |b| {
                b.resource(MetricsApi(uri.clone()))
                    .resource(ReportInbox(format!("{uri}/reports")))
            }
        })
        .build();
    let start = env.now();
    let done = env
        .run_slug("nightly-report", report_input(&SOURCES))
        .await
        .completed();

    assert_eq!(
        done["totals"],
        json!({ "requests": 3500, "errors": 65, "stale": 1 })
    );
    assert_eq!(
        done["healthy"],
        json!(["api", "worker"]),
        "web has 3 % errors"
    );
    assert_eq!(done["stale"], json!(["billing"]));
    assert_eq!(done["sent"], "report-9");
    assert_eq!(done["until"], "2030-01-01T02:00:00Z");

    // The report as sent: one row per source in input order, billing as a stale row.
    let sent = api.received_json("POST", "/reports").await;
    assert_eq!(sent.len(), 1);
    let rows = sent[0]["rows"].as_array().unwrap();
    let sources: Vec<&str> = rows.iter().map(|r| r["source"].as_str().unwrap()).collect();
    assert_eq!(sources, SOURCES);
    assert_eq!(rows[1]["error_rate"], 3.0);
    assert_eq!(rows[3]["stale"], true);
    assert_eq!(rows[3]["requests"], 0);

    // billing: three attempts (the file's retry), then the fallback's empty metrics.
    assert_eq!(
        api.received("GET", "/metrics/billing").await.len(),
        3,
        "max_attempts: 3"
    );
    let billing: Vec<_> = env
        .calls_of("fetch-metrics")
        .into_iter()
        .filter(|c| c.input["source"] == "billing")
        .collect();
    assert_eq!(
        billing.iter().map(|c| c.attempt).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let fallback = env.calls_of("empty-metrics");
    assert_eq!(fallback.len(), 1);
    assert_eq!(fallback[0].input["source"], "billing");

    // The retries in the log: two `step_retrying` 10 s apart (backoff: fixed), then the
    // step's failure 10 s after the second.
    let id = &billing[0].correlation_id;
    let events = env.engine().events(&env.last_run()).await.unwrap();
    let of_billing: Vec<_> = events
        .iter()
        .filter(|e| e.event.correlation_id.as_deref() == Some(id.as_str()))
        .filter(|e| {
            matches!(
                e.event.kind,
                EventKind::StepRetrying | EventKind::StepFailed
            )
        })
        .collect();
    let kinds: Vec<EventKind> = of_billing.iter().map(|e| e.event.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::StepRetrying,
            EventKind::StepRetrying,
            EventKind::StepFailed
        ],
        "{id}"
    );
    for retrying in &of_billing[..2] {
        assert_eq!(retrying.event.payload["delay_ms"], 10_000);
    }
    assert_eq!(
        of_billing[1].event.at - of_billing[0].event.at,
        chrono::TimeDelta::seconds(10)
    );
    assert_eq!(
        of_billing[2].event.at - of_billing[1].event.at,
        chrono::TimeDelta::seconds(10)
    );
    assert!(env.now() - start >= chrono::TimeDelta::seconds(20));
    assert_each_step_recorded_once(&events);
}

#[tokio::test]
async fn wf_files_nightly_report_fetches_three_sources_at_a_time() {
    let env = TestEnv::builder().workflow_dir(dir()).build();
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    env.stub_slug("fetch-metrics", {
        let (running, most) = (running.clone(), most.clone());
        move |input: Value| {
            let (running, most) = (running.clone(), most.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                metrics_stub(json!({ "source": "api", "until": input["until"] })).await
            }
        }
    });
    env.stub_slug("send-report", send_stub);
    let sources = ["a", "b", "c", "d", "e", "f", "g"];
    let done = env
        .run_slug("nightly-report", report_input(&sources))
        .await
        .completed();
    assert_eq!(done["totals"]["requests"], 7000);
    assert_eq!(env.calls_of("fetch-metrics").len(), 7);
    assert_eq!(
        most.load(Ordering::SeqCst),
        3,
        "concurrency: 3 — three fetches at once, never more"
    );
}

#[tokio::test]
async fn wf_files_nightly_report_is_started_by_its_cron_trigger_at_2am() {
    let env = TestEnv::builder()
        .workflow_dir(dir())
        .starting_at("2030-01-01T01:59:30Z".parse().unwrap())
        .build();
    env.stub_slug("fetch-metrics", metrics_stub);
    env.stub_slug("send-report", send_stub);
    let triggers = env.engine().triggers();
    let schedule = triggers
        .crons()
        .find(|c| c.workflow() == "nightly-report")
        .expect("the file's cron trigger is a schedule");
    assert_eq!(
        (schedule.name(), schedule.expression()),
        ("nightly-report", "0 2 * * *")
    );
    assert!(env.fire_triggers().await.is_empty(), "01:59:30: not yet");
    env.clock().advance(Duration::from_secs(40)); // 02:00:10
    let fired = env.fire_triggers().await;
    assert_eq!(fired.len(), 1, "the 02:00 tick");
    assert!(
        env.fire_triggers().await.is_empty(),
        "a tick starts one run, however often the scheduler looks"
    );
    let (id, outcome) = fired.into_iter().next().unwrap();
    let run = env.engine().get_run(&id).await.unwrap();
    assert_eq!(run.trigger, reprise::Trigger::Cron);
    assert_eq!(run.input["sources"], json!(SOURCES));
    let until = run.input["until"].as_str().unwrap().to_owned();
    assert!(
        until.starts_with("2030-01-01T02:00:00"),
        "the trigger's input is rendered at the tick: {until}"
    );
    let done = outcome.completed();
    assert_eq!(done["until"], until.as_str());
    assert_eq!(done["stale"], json!(["billing"]));
    let record = env.engine().get_run(&id).await.unwrap();
    assert_eq!(record.status, RunStatus::Completed);
}

#[tokio::test]
async fn wf_files_nightly_report_log() {
    let env = TestEnv::builder().workflow_dir(dir()).build();
    env.stub_slug("fetch-metrics", metrics_stub);
    env.stub_slug("send-report", send_stub);
    let done = env
        .run_slug("nightly-report", report_input(&SOURCES))
        .await
        .completed();
    assert_eq!(done["sent"], "report-1");
    assert_run_snapshot!(env, env.last_run());
}

#[tokio::test]
async fn wf_files_nightly_report_summary_asks_the_model_when_asked_to() {
    let llm = FakeLlm::new().reply("All quiet except billing, which sent no data.");
    let env = TestEnv::builder()
        .workflow_dir(dir())
        .llm(llm.clone())
        .build();
    env.stub_slug("fetch-metrics", metrics_stub);
    env.stub_slug("send-report", send_stub);
    let mut input = report_input(&SOURCES);
    input["summarize"] = json!(true);
    env.run_slug("nightly-report", input).await.completed();
    let requests = llm.requests();
    assert_eq!(requests.len(), 1);
    let prompt = last_user(&requests[0]);
    assert!(
        prompt.contains("Totals: 3500 requests, 65 errors, 1 sources without data."),
        "{prompt}"
    );
    assert!(prompt.contains("- billing: 0 requests"), "{prompt}");
    let sent = env.calls_of("send-report");
    assert_eq!(
        sent[0].input["summary"],
        "All quiet except billing, which sent no data."
    );

    // Without `summarize`, no model is asked and the summary is empty.
    let env = TestEnv::builder().workflow_dir(dir()).build();
    env.stub_slug("fetch-metrics", metrics_stub);
    env.stub_slug("send-report", send_stub);
    env.run_slug("nightly-report", report_input(&SOURCES))
        .await
        .completed();
    assert_eq!(env.calls_of("send-report")[0].input["summary"], "");
}

#[test]
fn wf_files_nightly_report_survives_any_crash() {
    let config = CheckConfig::default()
        .workflow_dir(dir())
        .stub_slug("fetch-metrics", metrics_stub)
        .stub_slug("send-report", send_stub);
    let report = crash::assert_crash_safe_slug("nightly-report", report_input(&SOURCES), config);
    let output = completed(&report);
    assert_eq!(output["stale"], json!(["billing"]));
    assert_eq!(output["totals"]["requests"], 3500);
}

// ---- the README's app ----

fn app(db: &TempDb) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_reprise-examples"));
    command
        .env("REPRISE_DATABASE_URL", db.url())
        .env_remove("REPRISE_WORKFLOWS_DIR")
        .env_remove("REPRISE_EXAMPLES_GITHUB_API")
        .env_remove("REPRISE_EXAMPLES_METRICS_API")
        .env_remove("REPRISE_EXAMPLES_REPORT_URL")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .current_dir(db.dir());
    command
}

fn json_out(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn wf_files_the_readme_app_runs_both_files_offline() {
    let db = TempDb::new().unwrap();
    let run = |args: &[&str]| app(&db).args(args).output().unwrap();

    // code-review: waits on the approval hook (exit 3), then posts once approved.
    let out = run(&[
        "workflows",
        "run",
        "code-review",
        "--input",
        r#"{"repo":"octo/app","pr":7}"#,
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let waiting = json_out(&out);
    assert_eq!(waiting["status"], "waiting");
    let run_id = waiting["run_id"].as_str().unwrap().to_owned();
    let got = json_out(&run(&["runs", "get", &run_id, "--json"]));
    let url = got["open_hooks"][0]["resume_url"].as_str().unwrap();
    let token = url.rsplit('/').next().unwrap().to_owned();
    let out = run(&[
        "hooks",
        "resume",
        &token,
        "--payload",
        r#"{"decision":"approve","reviewer":"ada"}"#,
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done = json_out(&out);
    assert_eq!(done["output"]["verdict"], "request_changes");
    assert_eq!(done["output"]["decision"], "approve");
    assert_eq!(done["output"]["comments"], 3, "the sample's three findings");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("[review of octo/app#7"),
        "offline, the review is printed"
    );

    // nightly-report: offline numbers, sent (printed) at once.
    let out = run(&[
        "workflows",
        "run",
        "nightly-report",
        "--input",
        r#"{"sources":["api","web"],"to":"ops@example.com"}"#,
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done = json_out(&out);
    assert_eq!(done["output"]["totals"]["stale"], 0);
    assert!(done["output"]["totals"]["requests"].as_u64().unwrap() >= 20_000);
}
