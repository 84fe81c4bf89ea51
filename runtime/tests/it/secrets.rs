//! Secrets at rest (DESIGN "Reliability and security"): hook tokens exist at rest only as
//! hashes — never in the database file, an export or the event view — while the run itself
//! sees the same values live and on replay; a hook secret under 32 bytes is refused.

use std::sync::Arc;

use reprise::event::{EventKind, NewEvent, RunId, RunRecord, RunStatus, RunUpdate, Trigger};
use reprise::prelude::*;
use reprise::store::{Append, SharedStore, SqliteStore};
use reprise::{EngineError, MIN_HOOK_SECRET_LEN};
use serde_json::json;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Approval {
    by: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Sent {
    /// What the "mailer" received: the resume URL, and the bare token.
    url: String,
    token: String,
}

/// Stands for a mailer: sends the resume URL on and answers with what it sent.
#[action]
async fn mail_link(input: Sent) -> Result<Sent, ActionError> {
    Ok(input)
}

/// Fails once with the URL in its error (as an HTTP client's error would), then succeeds.
#[action(retries = 1, backoff = "1ms")]
async fn flaky_post(url: String, cx: ActionCtx) -> Result<u32, ActionError> {
    if cx.attempt() == 1 {
        return Err(ActionError::transient(format!(
            "POST {url}: connection reset"
        )));
    }
    Ok(cx.attempt())
}

/// Sends its hook's URL and token through steps, waits for the approval, and checks that
/// what the steps returned (replayed after the wait) is what it sent.
#[workflow(slug = "mail-then-approve")]
async fn mail_then_approve(ctx: Ctx, _input: serde_json::Value) -> Result<String, WorkflowError> {
    let hook = ctx.hook::<Approval>();
    let sent = Sent {
        url: hook.resume_url(),
        token: hook.token().to_owned(),
    };
    let echoed = mail_link.run(sent.clone()).await?;
    if echoed != sent {
        return Err(WorkflowError::new(
            "mismatch",
            format!("replayed {echoed:?}, sent {sent:?}"),
            false,
        ));
    }
    flaky_post.run(sent.url.clone()).await?;
    let approval = hook.await?;
    Ok(format!("{} approved by {}", sent.url, approval.by))
}

fn mail_engine(store: SharedStore) -> Engine {
    Engine::builder()
        .store(store)
        .register(mail_then_approve)
        .register(mail_link)
        .register(flaky_post)
        .hook_secret(b"secrets-test hook secret: 32 byte".to_vec())
        .build()
        .unwrap()
}

fn files_in(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            (path.display().to_string(), std::fs::read(&path).unwrap())
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[tokio::test]
async fn hook_tokens_exist_at_rest_only_as_hashes_and_replay_restores_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.db");
    let store: SharedStore = Arc::new(SqliteStore::open(&path).unwrap());
    let engine = mail_engine(store.clone());
    let id = engine
        .start_json("mail-then-approve", json!({}), Trigger::Code)
        .await
        .unwrap();
    engine.execute(&id).await.unwrap();
    let hooks = engine.open_hooks(&id).await.unwrap();
    assert_eq!(hooks.len(), 1);
    let token = hooks[0].token.clone();
    assert!(
        hooks[0].resume_url.ends_with(&format!("/hooks/{token}")),
        "open hooks still give the usable URL: {}",
        hooks[0].resume_url
    );

    // Delivered by "another process": the body replays the steps that carried the token.
    let other = mail_engine(store.clone());
    other
        .resume_hook(&token, json!({ "by": "ada" }))
        .await
        .unwrap();
    let execution = other.drive(&id).await.unwrap();
    assert_eq!(
        execution.outcome,
        reprise::RunOutcome::Completed(json!(format!("{} approved by ada", hooks[0].resume_url))),
        "replay must hand the body the token it sent, not the placeholder"
    );

    // Nowhere at rest: the database, its WAL, the export, the event view, the run record.
    drop(other);
    drop(engine);
    for (file, bytes) in files_in(dir.path()) {
        assert!(!contains(&bytes, &token), "{file} holds the hook token");
    }
    let store: SharedStore = Arc::new(SqliteStore::open(&path).unwrap());
    let engine = mail_engine(store.clone());
    let export = serde_json::to_string(&engine.export_run(&id).await.unwrap()).unwrap();
    assert!(!export.contains(&token), "the export holds the token");
    assert!(
        export.contains("{{reprise:hook-token:hook#0}}"),
        "the export shows where the token was: {export}"
    );
    let events = serde_json::to_string(&engine.events(&id).await.unwrap()).unwrap();
    assert!(!events.contains(&token), "the event view holds the token");
    let record = serde_json::to_string(&engine.get_run(&id).await.unwrap()).unwrap();
    assert!(!record.contains(&token), "the run's output holds the token");
    // The step that failed with the URL in its error, too.
    assert!(events.contains("connection reset"), "{events}");
}

#[tokio::test]
async fn views_redact_tokens_written_by_older_versions() {
    // A log written before tokens were redacted at append: the token in a step's input.
    let store: SharedStore = Arc::new(reprise::store::MemoryStore::new());
    let engine = mail_engine(store.clone());
    let id = RunId::from("legacy-run");
    let now = chrono::Utc::now();
    let record = RunRecord {
        id: id.clone(),
        workflow: "mail-then-approve".into(),
        status: RunStatus::Waiting,
        input: json!({}),
        output: None,
        error: None,
        attempt: 1,
        trigger: Trigger::Api,
        created_at: now,
        updated_at: now,
        wake_at: None,
        next_seq: 1,
        queue: None,
    };
    let created = NewEvent::new(
        None,
        1,
        now,
        reprise::event::EventPayload::RunCreated {
            workflow: "mail-then-approve".into(),
            input: json!({}),
            trigger: Trigger::Api,
            start_at: None,
            forked_from: None,
            traceparent: None,
            key: None,
            event: None,
            parent: None,
            continued_from: None,
            queue: None,
            identity: None,
        },
    );
    store.create_run(record, created).await.unwrap();
    let hook_created = NewEvent {
        kind: EventKind::HookCreated,
        correlation_id: Some("hook#0".into()),
        attempt: 1,
        at: now,
        payload: json!({ "token_hash": "x", "schema": {} }),
    };
    store
        .append(Append {
            run_id: id.clone(),
            first_seq: 1,
            events: vec![hook_created],
            update: RunUpdate::default(),
            fence: None,
            release: false,
        })
        .await
        .unwrap();
    let token = engine.open_hooks(&id).await.unwrap()[0].token.clone();
    let leaked = NewEvent {
        kind: EventKind::StepStarted,
        correlation_id: Some("mail-link#0".into()),
        attempt: 1,
        at: now,
        payload: json!({ "callee": "mail-link", "input": { "url": format!("http://h/hooks/{token}") } }),
    };
    store
        .append(Append {
            run_id: id.clone(),
            first_seq: 2,
            events: vec![leaked],
            update: RunUpdate::default(),
            fence: None,
            release: false,
        })
        .await
        .unwrap();
    let raw = serde_json::to_string(&store.events(&id).await.unwrap()).unwrap();
    assert!(raw.contains(&token), "the fixture holds the token");

    let events = serde_json::to_string(&engine.events(&id).await.unwrap()).unwrap();
    assert!(!events.contains(&token), "{events}");
    assert!(events.contains("http://h/hooks/{{reprise:hook-token:hook#0}}"));
    let export = serde_json::to_string(&engine.export_run(&id).await.unwrap()).unwrap();
    assert!(!export.contains(&token), "{export}");
}

#[test]
fn a_hook_secret_under_32_bytes_is_refused() {
    for secret in [Vec::new(), vec![b'x'; MIN_HOOK_SECRET_LEN - 1]] {
        let len = secret.len();
        let error = Engine::builder().hook_secret(secret).build().unwrap_err();
        let EngineError::Config(message) = &error else {
            panic!("expected a configuration error, got {error:?}");
        };
        assert!(
            message.contains(&format!("{len} bytes")) && message.contains("at least 32"),
            "{message}"
        );
        assert!(
            message.contains("openssl rand"),
            "says how to make one: {message}"
        );
    }
    assert!(
        Engine::builder()
            .hook_secret(vec![b'x'; MIN_HOOK_SECRET_LEN])
            .build()
            .is_ok()
    );
}

/// The input digest of versions before tokens were redacted: the first 8 bytes of the
/// SHA-256 of the input's compact JSON, token included, in hex.
fn legacy_digest(input: &serde_json::Value) -> String {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(serde_json::to_vec(input).unwrap());
    hash[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_run_recorded_with_tokens_in_its_log_replays_after_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.db");
    let store: SharedStore = Arc::new(SqliteStore::open(&path).unwrap());
    let engine = mail_engine(store.clone());
    let id = engine
        .start_json("mail-then-approve", json!({}), Trigger::Code)
        .await
        .unwrap();
    engine.execute(&id).await.unwrap();
    let token = engine.open_hooks(&id).await.unwrap()[0].token.clone();
    drop(engine);
    drop(store);

    // Rewrite the log as an older version wrote it: tokens in the step inputs, and the
    // input digests taken over them.
    let db = rusqlite::Connection::open(&path).unwrap();
    let rows: Vec<(i64, String)> = db
        .prepare("SELECT seq, payload FROM events WHERE run_id = ?1 AND kind = 'step_started'")
        .unwrap()
        .query_map([id.as_str()], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut rewritten = 0;
    for (seq, payload) in rows {
        let placeholder = "{{reprise:hook-token:hook#0}}";
        if !payload.contains(placeholder) {
            continue;
        }
        let mut payload: serde_json::Value =
            serde_json::from_str(&payload.replace(placeholder, &token)).unwrap();
        payload["digest"] = json!(legacy_digest(&payload["input"]));
        db.execute(
            "UPDATE events SET payload = ?1 WHERE run_id = ?2 AND seq = ?3",
            rusqlite::params![payload.to_string(), id.as_str(), seq],
        )
        .unwrap();
        rewritten += 1;
    }
    assert_eq!(rewritten, 2, "mail-link and flaky-post carried the token");
    drop(db);

    let store: SharedStore = Arc::new(SqliteStore::open(&path).unwrap());
    let engine = mail_engine(store);
    engine
        .resume_hook(&token, json!({ "by": "ada" }))
        .await
        .unwrap();
    let execution = engine.drive(&id).await.unwrap();
    assert!(
        matches!(execution.outcome, reprise::RunOutcome::Completed(_)),
        "{:?}",
        execution.outcome
    );
}

/// Asks for an approval inside a sub-workflow and returns the resume URL it sent.
#[workflow(slug = "ask-in-sub")]
async fn ask_in_sub(ctx: Ctx, _input: serde_json::Value) -> Result<String, WorkflowError> {
    let hook = ctx.hook::<Approval>();
    let url = hook.resume_url();
    mail_link
        .run(Sent {
            url: url.clone(),
            token: hook.token().to_owned(),
        })
        .await?;
    hook.await?;
    Ok(url)
}

/// Uses the URL a finished sub-workflow returned after a sleep, so that a replay answers
/// the sub-workflow from the log without re-entering it (nor re-creating its hook).
#[workflow(slug = "url-from-sub")]
async fn url_from_sub(ctx: Ctx, input: serde_json::Value) -> Result<String, WorkflowError> {
    let url = ask_in_sub.run(input).await?;
    ctx.sleep(std::time::Duration::from_millis(5)).await?;
    if !url.contains("/hooks/") || url.contains("{{") {
        return Err(WorkflowError::new("placeholder", url, false));
    }
    Ok(url)
}

#[tokio::test]
async fn a_url_returned_by_a_finished_sub_workflow_replays_with_its_token() {
    let store: SharedStore = Arc::new(reprise::store::MemoryStore::new());
    let engine = Engine::builder()
        .store(store)
        .register(url_from_sub)
        .register(ask_in_sub)
        .register(mail_link)
        .hook_secret(b"secrets-test hook secret: 32 byte".to_vec())
        // No hot runs: the sleep ends in a replay from the log.
        .hot_runs(0, std::time::Duration::ZERO)
        .build()
        .unwrap();
    let id = engine
        .start_json("url-from-sub", json!({}), Trigger::Code)
        .await
        .unwrap();
    engine.execute(&id).await.unwrap();
    let hook = engine.open_hooks(&id).await.unwrap().remove(0);
    engine
        .resume_hook(&hook.token, json!({ "by": "ada" }))
        .await
        .unwrap();
    let execution = engine.drive(&id).await.unwrap();
    assert_eq!(
        execution.outcome,
        reprise::RunOutcome::Completed(json!(hook.resume_url))
    );
    let events = serde_json::to_string(&engine.events(&id).await.unwrap()).unwrap();
    assert!(!events.contains(&hook.token), "{events}");
}
