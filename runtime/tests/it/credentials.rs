//! Credentials (issue 17, DESIGN "Identity"): declared on actions, resolved per run user →
//! project → org (or only a pinned scope), encrypted at rest, never leaked (log, export,
//! traces, error text), rotated between steps, and managed over HTTP. On the memory store
//! and SQLite; one Postgres test (skipped without `REPRISE_TEST_POSTGRES_URL`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use reprise::credentials::{
    CredentialError, CredentialInfo, CredentialStore, EnvCredentials, FileCredentials,
    LayeredCredentials, Secret, SecretsKey, StoredCredentials,
};
use reprise::identity::Scope;
use reprise::prelude::*;
use reprise::store::{MemoryStore, Put, SharedStore, SqliteStore};
use reprise::{RunOutcome, StartOptions, Trigger};
use serde_json::{Value, json};

/// The part of a value before its first `:`: which scope's value a step got, without the
/// secret part (which would be masked).
fn tag(secret: &Secret) -> String {
    secret
        .expose()
        .split(':')
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[action(credentials = ["github"])]
async fn cr_github_tag(_input: u32, cx: ActionCtx) -> Result<String, ActionError> {
    Ok(tag(&cx.credential("github").await?))
}

#[action(credentials = [("billing", Scope::Org), ("mine", Scope::User), ("team", Scope::Project)])]
async fn cr_pinned_tag(name: String, cx: ActionCtx) -> Result<String, ActionError> {
    Ok(tag(&cx.credential(&name).await?))
}

/// Reads a credential whose name it is given: `slack` is not declared.
#[action(credentials = ["github"])]
async fn cr_dynamic(name: String, cx: ActionCtx) -> Result<String, ActionError> {
    Ok(tag(&cx.credential(&name).await?))
}

/// Returns the secret in its output (a mistake the masking must catch).
#[action(credentials = ["github"])]
async fn cr_leak_output(_input: u32, cx: ActionCtx) -> Result<String, ActionError> {
    let token = cx.credential("github").await?;
    Ok(format!("Authorization: Bearer {}", token.expose()))
}

/// Fails with the secret in its error text (as an HTTP client's error might), retried
/// once, so that both `step_retrying` and `step_failed` carry it.
#[action(credentials = ["github"], retries = 1, backoff = "1ms")]
async fn cr_leak_error(_input: u32, cx: ActionCtx) -> Result<String, ActionError> {
    let token = cx.credential("github").await?;
    Err(ActionError::transient(format!(
        "GET https://api.example/?access_token={} failed: 401",
        token.expose()
    ))
    .with_details(json!({ "token": token.expose() })))
}

#[workflow(slug = "cr-one")]
async fn cr_one(_ctx: Ctx, input: u32) -> Result<String, WorkflowError> {
    Ok(cr_github_tag.run(input).await?)
}

#[workflow(slug = "cr-pinned")]
async fn cr_pinned(_ctx: Ctx, name: String) -> Result<String, WorkflowError> {
    Ok(cr_pinned_tag.run(name).await?)
}

#[workflow(slug = "cr-dynamic-wf")]
async fn cr_dynamic_wf(_ctx: Ctx, name: String) -> Result<String, WorkflowError> {
    Ok(cr_dynamic.run(name).await?)
}

/// Leaks through a step's output (returned as the run's output too), then through a
/// step's error (which fails the run).
#[workflow(slug = "cr-leaky")]
async fn cr_leaky(_ctx: Ctx, _input: u32) -> Result<String, WorkflowError> {
    let header = cr_leak_output.run(1).await?;
    tracing::info!(header_len = header.len(), "got a header");
    cr_leak_error.run(2).await?;
    Ok(header)
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Go {
    go: bool,
}

/// A step, a hook (the run waits), a second step: a rotation between the two is seen by
/// the second only.
#[workflow(slug = "cr-rotate")]
async fn cr_rotate(ctx: Ctx, _input: u32) -> Result<Vec<String>, WorkflowError> {
    let first = cr_github_tag.run(1).await?;
    let _go: Go = ctx.hook().await?;
    let second = cr_github_tag.run(2).await?;
    Ok(vec![first, second])
}

/// Counts the look-ups of the store it wraps.
#[derive(Clone)]
struct Counting<S> {
    inner: S,
    reads: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl<S: CredentialStore> CredentialStore for Counting<S> {
    async fn get(&self, scope: &Scope, name: &str) -> Result<Option<Secret>, CredentialError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.get(scope, name).await
    }
    async fn set(&self, scope: &Scope, name: &str, value: &Secret) -> Result<(), CredentialError> {
        self.inner.set(scope, name, value).await
    }
    async fn delete(&self, scope: &Scope, name: &str) -> Result<bool, CredentialError> {
        self.inner.delete(scope, name).await
    }
    async fn list(&self, scope: Option<&Scope>) -> Result<Vec<CredentialInfo>, CredentialError> {
        self.inner.list(scope).await
    }
}

/// The two stores every test runs on: memory, and SQLite in `dir`.
fn stores(dir: &std::path::Path) -> Vec<(&'static str, SharedStore)> {
    vec![
        ("memory", Arc::new(MemoryStore::new()) as SharedStore),
        (
            "sqlite",
            Arc::new(SqliteStore::open(dir.join("creds.db")).unwrap()) as SharedStore,
        ),
    ]
}

/// An engine on `store` whose credentials are kept encrypted in it under `key`, counting
/// look-ups in `reads`.
fn engine(store: &SharedStore, key: &SecretsKey, reads: &Arc<AtomicUsize>) -> Engine {
    Engine::builder()
        .store(store.clone())
        .register(cr_one)
        .register(cr_pinned)
        .register(cr_dynamic_wf)
        .register(cr_leaky)
        .register(cr_rotate)
        .project("acme")
        .credentials(Counting {
            inner: StoredCredentials::new(store.clone(), key.clone()),
            reads: reads.clone(),
        })
        .build()
        .unwrap()
}

/// Runs `slug` for user `user` (if any) to its end; its outcome.
async fn run_for(engine: &Engine, slug: &str, input: Value, user: Option<&str>) -> RunOutcome {
    let mut options = StartOptions::default();
    if let Some(user) = user {
        options = options.user(user);
    }
    let (id, _) = engine
        .start_with(slug, input, Trigger::Code, options)
        .await
        .unwrap();
    engine.drive(&id).await.unwrap().outcome
}

fn failed(outcome: RunOutcome) -> WorkflowError {
    match outcome {
        RunOutcome::Failed(error) => error,
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn credentials_resolve_user_then_project_then_org_with_each_scope_missing_in_turn() {
    let dir = tempfile::tempdir().unwrap();
    for (label, store) in stores(dir.path()) {
        let key = SecretsKey::random();
        let reads = Arc::new(AtomicUsize::new(0));
        let engine = engine(&store, &key, &reads);
        let creds = engine.credentials();
        let ada = Scope::User("ada".into());
        let acme = Scope::Project("acme".into());
        creds
            .set(&ada, "github", &Secret::new("user:a-1"))
            .await
            .unwrap();
        creds
            .set(&acme, "github", &Secret::new("project:p-1"))
            .await
            .unwrap();
        creds
            .set(&Scope::Org, "github", &Secret::new("org:o-1"))
            .await
            .unwrap();

        let outcome = run_for(&engine, "cr-one", json!(1), Some("ada")).await;
        assert_eq!(outcome, RunOutcome::Completed(json!("user")), "{label}");
        // Another user: the project's.
        let outcome = run_for(&engine, "cr-one", json!(1), Some("bob")).await;
        assert_eq!(outcome, RunOutcome::Completed(json!("project")), "{label}");

        assert!(creds.delete(&ada, "github").await.unwrap());
        let outcome = run_for(&engine, "cr-one", json!(1), Some("ada")).await;
        assert_eq!(outcome, RunOutcome::Completed(json!("project")), "{label}");

        assert!(creds.delete(&acme, "github").await.unwrap());
        let outcome = run_for(&engine, "cr-one", json!(1), Some("ada")).await;
        assert_eq!(outcome, RunOutcome::Completed(json!("org")), "{label}");

        assert!(creds.delete(&Scope::Org, "github").await.unwrap());
        let error = failed(run_for(&engine, "cr-one", json!(1), Some("ada")).await);
        assert_eq!(error.kind, "credential_missing", "{label}: {error:?}");
        assert!(!error.retryable, "{label}");
        assert!(
            error.message.contains(
                "credential `github` is not set in any scope tried (user:ada, project:acme, org)"
            ),
            "{label}: {}",
            error.message
        );
        // Without a user: project, then org.
        let error = failed(run_for(&engine, "cr-one", json!(1), None).await);
        assert!(
            error.message.contains("(project:acme, org)"),
            "{label}: {}",
            error.message
        );
    }
}

#[tokio::test]
async fn a_pinned_credential_is_looked_up_only_in_its_scope() {
    let dir = tempfile::tempdir().unwrap();
    for (label, store) in stores(dir.path()) {
        let key = SecretsKey::random();
        let reads = Arc::new(AtomicUsize::new(0));
        let engine = engine(&store, &key, &reads);
        let creds = engine.credentials();
        let ada = Scope::User("ada".into());
        let acme = Scope::Project("acme".into());
        for name in ["billing", "mine", "team"] {
            creds.set(&ada, name, &Secret::new("user:u")).await.unwrap();
            creds
                .set(&acme, name, &Secret::new("project:p"))
                .await
                .unwrap();
            creds
                .set(&Scope::Org, name, &Secret::new("org:o"))
                .await
                .unwrap();
        }
        for (name, expected) in [("billing", "org"), ("mine", "user"), ("team", "project")] {
            let outcome = run_for(&engine, "cr-pinned", json!(name), Some("ada")).await;
            assert_eq!(
                outcome,
                RunOutcome::Completed(json!(expected)),
                "{label} {name}"
            );
        }
        // The pinned scope missing: no fallback, and the error names the one scope tried.
        assert!(creds.delete(&Scope::Org, "billing").await.unwrap());
        let error = failed(run_for(&engine, "cr-pinned", json!("billing"), Some("ada")).await);
        assert_eq!(error.kind, "credential_missing", "{label}");
        assert!(
            error.message.contains("scope tried (org)"),
            "{label}: {}",
            error.message
        );
        assert!(creds.delete(&ada, "mine").await.unwrap());
        let error = failed(run_for(&engine, "cr-pinned", json!("mine"), Some("ada")).await);
        assert!(
            error.message.contains("scope tried (user:ada)"),
            "{label}: {}",
            error.message
        );
        assert!(creds.delete(&acme, "team").await.unwrap());
        let error = failed(run_for(&engine, "cr-pinned", json!("team"), Some("ada")).await);
        assert!(
            error.message.contains("scope tried (project:acme)"),
            "{label}: {}",
            error.message
        );
        // Pinned to the user, but the run acts for none.
        let error = failed(run_for(&engine, "cr-pinned", json!("mine"), None).await);
        assert_eq!(error.kind, "credential_missing", "{label}");
        assert!(
            error
                .message
                .contains("pinned to the user scope, but this run acts for no user"),
            "{label}: {}",
            error.message
        );
    }
}

#[tokio::test]
async fn an_undeclared_credential_fails_the_step_without_a_retry() {
    let store: SharedStore = Arc::new(MemoryStore::new());
    let reads = Arc::new(AtomicUsize::new(0));
    let engine = engine(&store, &SecretsKey::random(), &reads);
    engine
        .credentials()
        .set(&Scope::Org, "slack", &Secret::new("org:slack-token"))
        .await
        .unwrap();
    let error = failed(run_for(&engine, "cr-dynamic-wf", json!("slack"), None).await);
    assert_eq!(error.kind, "undeclared_credential", "{error:?}");
    assert!(!error.retryable);
    assert!(
        error
            .message
            .contains("action `cr-dynamic` reads credential `slack` but does not declare it")
            && error
                .message
                .contains(r#"#[action(credentials = ["github", "slack"])]"#),
        "{}",
        error.message
    );
    assert_eq!(reads.load(Ordering::SeqCst), 0, "nothing is looked up");
}

/// A `tracing` writer that keeps everything written.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
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

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[tokio::test]
async fn secrets_never_reach_the_log_the_export_traces_or_error_text() {
    const SECRET: &str = "ghp_S3cretValue4242";
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let db_dir = dir.path().join("db");
    std::fs::create_dir_all(&db_dir).unwrap();
    for (label, store) in stores(&db_dir) {
        let reads = Arc::new(AtomicUsize::new(0));
        let engine = engine(&store, &SecretsKey::random(), &reads);
        engine
            .credentials()
            .set(&Scope::Org, "github", &Secret::new(SECRET))
            .await
            .unwrap();
        let (id, _) = engine
            .start_with("cr-leaky", json!(0), Trigger::Code, StartOptions::default())
            .await
            .unwrap();
        let error = failed(engine.drive(&id).await.unwrap().outcome);
        assert_eq!(error.kind, "transient", "{label}: {error:?}");
        assert!(
            !error.message.contains(SECRET),
            "{label}: run error {}",
            error.message
        );
        assert!(
            error.message.contains("access_token=*** failed"),
            "{label}: masked in place: {}",
            error.message
        );

        let events = serde_json::to_string(&engine.events(&id).await.unwrap()).unwrap();
        assert!(
            !events.contains(SECRET),
            "{label}: the event log holds the secret: {events}"
        );
        assert!(
            events.contains("Bearer ***"),
            "{label}: the output is masked: {events}"
        );
        assert!(events.contains("step_retrying"), "{label}: {events}");
        let export = serde_json::to_string(&engine.export_run(&id).await.unwrap()).unwrap();
        assert!(
            !export.contains(SECRET),
            "{label}: the export holds the secret"
        );
        let record = serde_json::to_string(&engine.get_run(&id).await.unwrap()).unwrap();
        assert!(
            !record.contains(SECRET),
            "{label}: the run record holds the secret"
        );
        // `Debug` of what an action holds.
        let secret = engine
            .credentials()
            .get(&Scope::Org, "github")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(format!("{secret:?} {secret}"), "Secret(***) Secret(***)");
    }
    // A missing credential's error names it, never a value of another scope.
    let store: SharedStore = Arc::new(MemoryStore::new());
    let engine = engine(&store, &SecretsKey::random(), &Arc::default());
    engine
        .credentials()
        .set(&Scope::User("bob".into()), "github", &Secret::new(SECRET))
        .await
        .unwrap();
    let error = failed(run_for(&engine, "cr-one", json!(1), Some("ada")).await);
    assert!(!format!("{error:?}").contains(SECRET));

    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(logs.contains("got a header"), "the capture works: {logs}");
    assert!(!logs.contains(SECRET), "the traces hold the secret: {logs}");
    // Nor the SQLite files (database, WAL): encrypted at rest, masked in the log.
    for (file, bytes) in files_in(&db_dir) {
        assert!(!holds(&bytes, SECRET), "{file} holds the secret");
    }
}

#[tokio::test]
async fn a_rotated_credential_is_used_by_the_next_step_and_replay_reads_none() {
    let dir = tempfile::tempdir().unwrap();
    for (label, store) in stores(dir.path()) {
        let key = SecretsKey::random();
        let reads = Arc::new(AtomicUsize::new(0));
        let first = engine(&store, &key, &reads);
        first
            .credentials()
            .set(&Scope::Org, "github", &Secret::new("v1:old-token"))
            .await
            .unwrap();
        let (id, _) = first
            .start_with(
                "cr-rotate",
                json!(0),
                Trigger::Code,
                StartOptions::default(),
            )
            .await
            .unwrap();
        assert!(matches!(
            first.drive(&id).await.unwrap().outcome,
            RunOutcome::Suspended(_)
        ));
        // project:acme (a miss), then org.
        assert_eq!(reads.load(Ordering::SeqCst), 2, "{label}");
        let hook = first.open_hooks(&id).await.unwrap().remove(0);
        drop(first);

        // Rotated while the run waits; resumed by "another process" (as after a crash).
        let reads = Arc::new(AtomicUsize::new(0));
        let second = engine(&store, &key, &reads);
        second
            .credentials()
            .set(&Scope::Org, "github", &Secret::new("v2:new-token"))
            .await
            .unwrap();
        second
            .resume_hook(&hook.token, json!({"go": true}))
            .await
            .unwrap();
        let outcome = second.drive(&id).await.unwrap().outcome;
        assert_eq!(
            outcome,
            RunOutcome::Completed(json!(["v1", "v2"])),
            "{label}"
        );
        assert_eq!(
            reads.load(Ordering::SeqCst),
            2,
            "{label}: the replayed step read no credential, the new step two scopes"
        );
    }
}

#[tokio::test]
async fn stored_credentials_are_encrypted_at_rest_and_a_wrong_key_fails_clearly() {
    const SECRET: &str = "xoxb-plain-secret-value";
    let dir = tempfile::tempdir().unwrap();
    for (label, store) in stores(dir.path()) {
        let key = SecretsKey::random();
        let creds = StoredCredentials::new(store.clone(), key.clone());
        creds
            .set(&Scope::Org, "slack", &Secret::new(SECRET))
            .await
            .unwrap();

        let document = store
            .document("credential", "org/slack")
            .await
            .unwrap()
            .unwrap();
        let text = document.value.to_string();
        assert!(!text.contains(SECRET), "{label}: {text}");
        assert_eq!(document.value["alg"], "chacha20poly1305", "{label}");
        assert!(document.value["nonce"].is_string() && document.value["ciphertext"].is_string());
        assert_eq!(
            creds
                .get(&Scope::Org, "slack")
                .await
                .unwrap()
                .unwrap()
                .expose(),
            SECRET,
            "{label}"
        );
        // Two writes of one value differ (a fresh nonce each).
        creds
            .set(&Scope::Org, "slack", &Secret::new(SECRET))
            .await
            .unwrap();
        let again = store
            .document("credential", "org/slack")
            .await
            .unwrap()
            .unwrap();
        assert_ne!(
            again.value["ciphertext"], document.value["ciphertext"],
            "{label}"
        );

        // Another key: a clear error naming the variable, never the value.
        let other = StoredCredentials::new(store.clone(), SecretsKey::random());
        let error = other
            .get(&Scope::Org, "slack")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(
                "stored credential `slack` in `org` does not decrypt with REPRISE_SECRETS_KEY"
            ),
            "{label}: {error}"
        );
        assert!(!error.contains(SECRET));

        // A row copied to another scope does not decrypt there.
        store
            .put_document(
                "credential",
                "user:eve/slack",
                &again.value,
                Put::Upsert,
                chrono::Utc::now(),
            )
            .await
            .unwrap();
        let error = creds
            .get(&Scope::User("eve".into()), "slack")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("copied from another scope or name"),
            "{label}: {error}"
        );

        let listed = creds.list(None).await.unwrap();
        let names: Vec<String> = listed
            .iter()
            .map(|i| format!("{}/{}", i.scope, i.name))
            .collect();
        assert_eq!(
            names,
            ["user:eve/slack", "org/slack"],
            "{label}: in resolution order"
        );
        assert!(
            listed
                .iter()
                .all(|i| i.source == "stored" && i.updated_at.is_some())
        );
        assert!(!serde_json::to_string(&listed).unwrap().contains(SECRET));
    }
    drop(dir);
    // A key that is not 32 bytes of base64.
    for (bad, expected) in [
        ("not base64!", "REPRISE_SECRETS_KEY is not base64"),
        (
            "c2hvcnQ=",
            "REPRISE_SECRETS_KEY decodes to 5 bytes; it must be exactly 32",
        ),
    ] {
        let error = SecretsKey::from_base64(bad).unwrap_err().to_string();
        assert!(error.contains(expected), "{error}");
        assert!(!error.contains(bad));
    }
    let key = SecretsKey::random();
    let round = SecretsKey::from_base64(&key.to_base64()).unwrap();
    assert_eq!(round.to_base64(), key.to_base64());
    assert_eq!(format!("{key:?}"), "SecretsKey(***)");
}

#[tokio::test]
async fn environment_and_file_stores_answer_and_refuse_writes() {
    let env = EnvCredentials::from_vars([
        ("REPRISE_CREDENTIAL_ORG_GITHUB", "org-token"),
        ("REPRISE_CREDENTIAL_USER_ADA_GITHUB", "ada-token"),
        ("REPRISE_CREDENTIAL_PROJECT_ACME_WEB_OPEN_AI_KEY", "p-key"),
        ("REPRISE_CREDENTIAL_ORG_EMPTY", ""),
        ("OTHER", "x"),
    ]);
    let get = |scope: Scope, name: &'static str| {
        let env = env.clone();
        async move {
            env.get(&scope, name)
                .await
                .unwrap()
                .map(|s| s.expose().to_owned())
        }
    };
    assert_eq!(
        get(Scope::Org, "github").await.as_deref(),
        Some("org-token")
    );
    assert_eq!(
        get(Scope::User("ada".into()), "github").await.as_deref(),
        Some("ada-token")
    );
    assert_eq!(
        get(Scope::Project("acme-web".into()), "open-ai.key")
            .await
            .as_deref(),
        Some("p-key")
    );
    assert_eq!(
        get(Scope::Org, "empty").await,
        None,
        "empty counts as unset"
    );
    assert_eq!(get(Scope::User("bob".into()), "github").await, None);
    let listed: Vec<String> = env
        .list(None)
        .await
        .unwrap()
        .iter()
        .map(|i| format!("{}/{}", i.scope, i.name))
        .collect();
    assert_eq!(
        listed,
        [
            "user:ada/github",
            "project:acme/web_open_ai_key",
            "org/github"
        ]
    );
    let listed: Vec<String> = env
        .list(Some(&Scope::Project("acme-web".into())))
        .await
        .unwrap()
        .iter()
        .map(|i| i.name.clone())
        .collect();
    assert_eq!(
        listed,
        ["open_ai_key"],
        "with a scope filter the id is known"
    );
    let error = env
        .set(&Scope::Org, "github", &Secret::new("x"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("read-only") && error.contains("REPRISE_SECRETS_KEY"),
        "{error}"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("credentials.json");
    std::fs::write(
        &path,
        r#"{"org": {"github": "file-org"}, "user:ada": {"github": "file-ada"}}"#,
    )
    .unwrap();
    let file = FileCredentials::new(&path);
    let value = file
        .get(&Scope::User("ada".into()), "github")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(value.expose(), "file-ada");
    assert!(
        file.get(&Scope::User("bob".into()), "github")
            .await
            .unwrap()
            .is_none()
    );
    let listed: Vec<String> = file
        .list(Some(&Scope::Org))
        .await
        .unwrap()
        .iter()
        .map(|i| format!("{}/{}/{}", i.scope, i.name, i.source))
        .collect();
    assert_eq!(listed, ["org/github/file"]);
    // Edited: seen at the next look-up.
    std::fs::write(&path, r#"{"org": {"github": "file-org-2"}}"#).unwrap();
    let value = file.get(&Scope::Org, "github").await.unwrap().unwrap();
    assert_eq!(value.expose(), "file-org-2");
    // Malformed: the error names the file and the place, never the value.
    for (text, expected) in [
        (r#"{"org": "ghp_leaked_value"}"#, "`org` must be an object"),
        (
            r#"{"team:x": {"github": "ghp_leaked_value"}}"#,
            "unknown scope `team:x`",
        ),
        (
            r#"{"org": {"github": 4242}}"#,
            "`org`.`github` must be a string",
        ),
        (
            r#"{"org": {"github": "ghp_leaked_value" "#,
            "is not valid JSON (line 1",
        ),
    ] {
        std::fs::write(&path, text).unwrap();
        let error = file
            .get(&Scope::Org, "github")
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected), "{text}: {error}");
        assert!(error.contains("credentials.json"), "{error}");
        assert!(
            !error.contains("ghp_leaked_value") && !error.contains("4242"),
            "{error}"
        );
    }
    assert!(
        file.set(&Scope::Org, "github", &Secret::new("x"))
            .await
            .is_err()
    );

    // Layered: the first that has it; writes go to the first layer.
    let store: SharedStore = Arc::new(MemoryStore::new());
    let layered = LayeredCredentials::new()
        .layer(StoredCredentials::new(store, SecretsKey::random()))
        .layer(env.clone());
    assert_eq!(
        layered
            .get(&Scope::Org, "github")
            .await
            .unwrap()
            .unwrap()
            .expose(),
        "org-token"
    );
    layered
        .set(&Scope::Org, "github", &Secret::new("stored-token"))
        .await
        .unwrap();
    assert_eq!(
        layered
            .get(&Scope::Org, "github")
            .await
            .unwrap()
            .unwrap()
            .expose(),
        "stored-token",
        "the stored value wins over the variable"
    );
    let sources: Vec<String> = layered
        .list(Some(&Scope::Org))
        .await
        .unwrap()
        .iter()
        .map(|i| format!("{}:{}", i.name, i.source))
        .collect();
    assert_eq!(sources, ["github:stored"]);
    // No layers: nothing, and writes say how to configure a store.
    let none = LayeredCredentials::new();
    assert!(none.get(&Scope::Org, "github").await.unwrap().is_none());
    let error = none
        .set(&Scope::Org, "github", &Secret::new("x"))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("REPRISE_SECRETS_KEY"), "{error}");
}

#[tokio::test]
async fn outside_a_run_only_the_org_scope_is_looked_up() {
    let cx =
        ActionCtx::standalone("cr-github-tag").with_credentials(EnvCredentials::from_vars([(
            "REPRISE_CREDENTIAL_USER_ADA_GITHUB",
            "user:only",
        )]));
    let error = cx.credential("github").await.unwrap_err();
    assert_eq!(error.kind, "credential_missing");
    assert!(
        error
            .message
            .contains("(org) (outside a run only `org` is looked up)"),
        "{}",
        error.message
    );
    let cx = ActionCtx::standalone("x").with_credentials(EnvCredentials::from_vars([(
        "REPRISE_CREDENTIAL_ORG_GITHUB",
        "org:ok",
    )]));
    assert_eq!(cx.credential("github").await.unwrap().expose(), "org:ok");
}

#[tokio::test]
async fn the_http_api_sets_lists_and_deletes_credentials_without_showing_values() {
    use reprise::http::{HttpOptions, serve};
    const SECRET: &str = "ghp_http_secret_1234";
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let store: SharedStore = Arc::new(MemoryStore::new());
    let engine = engine(&store, &SecretsKey::random(), &Arc::default());
    tokio::spawn(serve(
        engine.clone(),
        listener,
        HttpOptions {
            api_token: None,
            ..HttpOptions::default()
        },
        std::future::pending::<()>(),
    ));
    let client = reqwest::Client::new();
    let put = client
        .put(format!("{base}/credentials/user:ada/github"))
        .json(&json!({ "value": SECRET }))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let body = put.text().await.unwrap();
    assert!(!body.contains(SECRET), "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"scope": "user:ada", "name": "github", "change": "set"})
    );
    let stored = engine
        .credentials()
        .get(&Scope::User("ada".into()), "github")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.expose(), SECRET);

    let list = client
        .get(format!("{base}/credentials"))
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    let text = list.text().await.unwrap();
    assert!(!text.contains(SECRET), "{text}");
    let list: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(list[0]["scope"], "user:ada", "{list}");
    assert_eq!(list[0]["name"], "github", "{list}");
    let filtered: Value = client
        .get(format!("{base}/credentials?scope=org"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(filtered, json!([]));

    // Bad input: an unknown scope (path and query), a bad name, a body without `value`.
    for (method, url, body) in [
        (
            "PUT",
            "/credentials/team:x/github",
            Some(json!({"value": "v"})),
        ),
        ("GET", "/credentials?scope=everyone", None),
        ("DELETE", "/credentials/team:x/github", None),
        (
            "PUT",
            "/credentials/org/bad%20name",
            Some(json!({"value": "v"})),
        ),
        (
            "PUT",
            "/credentials/org/github",
            Some(json!({"secret": SECRET})),
        ),
        ("PUT", "/credentials/org/github", Some(json!({"value": ""}))),
    ] {
        let request = client.request(method.parse().unwrap(), format!("{base}{url}"));
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 400, "{method} {url}");
        let error: Value = response.json().await.unwrap();
        let message = error["error"].as_str().unwrap();
        assert!(!message.contains(SECRET), "{message}");
        if url.contains("team:x") || url.contains("everyone") {
            assert!(
                message.contains("use `user:<id>`, `project:<id>` or `org`"),
                "{method} {url}: {message}"
            );
        }
    }

    let deleted = client
        .delete(format!("{base}/credentials/user:ada/github"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    let again = client
        .delete(format!("{base}/credentials/user:ada/github"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
    let error: Value = again.json().await.unwrap();
    assert_eq!(error["code"], "unknown_credential");

    // A read-only store: 409.
    let read_only = Engine::builder()
        .credentials(EnvCredentials::from_vars([(
            "REPRISE_CREDENTIAL_ORG_X",
            "y",
        )]))
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(
        read_only,
        listener,
        HttpOptions {
            api_token: None,
            ..HttpOptions::default()
        },
        std::future::pending::<()>(),
    ));
    let response = client
        .put(format!("{base}/credentials/org/github"))
        .json(&json!({"value": "v"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 409);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["code"], "read_only");

    // The OpenAPI document lists the routes.
    let doc: Value = client
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        doc["paths"]["/credentials"]["get"].is_object(),
        "{}",
        doc["paths"]
    );
    let one = &doc["paths"]["/credentials/{scope}/{name}"];
    assert!(one["put"].is_object() && one["delete"].is_object(), "{one}");
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_keeps_credentials_encrypted() {
    let Some((store, _schema)) = crate::postgres::fresh_store().await else {
        return;
    };
    let store: SharedStore = Arc::new(store);
    let reads = Arc::new(AtomicUsize::new(0));
    let engine = engine(&store, &SecretsKey::random(), &reads);
    engine
        .credentials()
        .set(
            &Scope::Project("acme".into()),
            "github",
            &Secret::new("project:pg-secret"),
        )
        .await
        .unwrap();
    let document = store
        .document("credential", "project:acme/github")
        .await
        .unwrap()
        .unwrap();
    assert!(!document.value.to_string().contains("pg-secret"));
    let outcome = run_for(&engine, "cr-one", json!(1), Some("ada")).await;
    assert_eq!(outcome, RunOutcome::Completed(json!("project")));
}
