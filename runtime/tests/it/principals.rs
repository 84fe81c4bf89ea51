//! Who started a run (issue 17 items 1 and 4): the actor recorded for code, child runs,
//! emitted events, the CLI and the HTTP API (the configured token, named API tokens),
//! shown by `GET /runs/{id}` and the web UI; named tokens hashed at rest, with their
//! scopes enforced (403 naming the scope), revocable (401). Memory store and SQLite.

use std::sync::Arc;
use std::time::Duration;

use reprise::RunId;
use reprise::event::RunFilter;
use reprise::http::{HttpOptions, serve};
use reprise::identity::tokens::{self, ApiScope};
use reprise::identity::{Actor, RunRelation};
use reprise::prelude::*;
use reprise::store::SharedStore;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Digest;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Note {
    text: String,
}

/// Says who started it.
#[workflow(slug = "pr-who")]
async fn pr_who(ctx: Ctx, input: Note) -> Result<String, WorkflowError> {
    Ok(format!("{}: {}", ctx.actor().describe(), input.text))
}

/// Starts `pr-who` as a child and returns its answer.
#[workflow(slug = "pr-parent")]
async fn pr_parent(input: Note) -> Result<String, WorkflowError> {
    let child = pr_who.start(input).await?;
    Ok(match child.await {
        Ok(answer) => answer,
        Err(error) => format!("{}: {}", error.kind, error.message),
    })
}

/// Started once per `pr.ping` event id.
#[workflow(slug = "pr-on-ping", on_event = "pr.ping")]
async fn pr_on_ping(input: Note) -> Result<String, WorkflowError> {
    Ok(input.text)
}

/// Sleeps a day (so that it can be canceled).
#[workflow(slug = "pr-nap")]
async fn pr_nap(ctx: Ctx, input: Note) -> Result<String, WorkflowError> {
    ctx.sleep("1d").await?;
    Ok(input.text)
}

fn engine(store: SharedStore) -> Engine {
    Engine::builder()
        .store(store)
        .register(pr_who)
        .register(pr_parent)
        .register(pr_on_ping)
        .register(pr_nap)
        .build()
        .unwrap()
}

fn memory() -> SharedStore {
    Arc::new(reprise::store::MemoryStore::new())
}

fn sqlite(dir: &tempfile::TempDir) -> SharedStore {
    Arc::new(reprise::store::SqliteStore::open(dir.path().join("runs.db")).unwrap())
}

async fn identity(engine: &Engine, id: &RunId) -> reprise::identity::RunIdentity {
    reprise::identity_of(&engine.events(id).await.unwrap())
}

fn note(text: &str) -> Note {
    Note { text: text.into() }
}

async fn code_child_and_event_actors(store: SharedStore) {
    let engine = engine(store);
    let parent = engine.start(&pr_parent, note("hi")).await.unwrap();
    engine.execute(&parent).await.unwrap();
    let parent_identity = identity(&engine, &parent).await;
    assert_eq!(parent_identity.actor, Actor::Code);
    assert_eq!(parent_identity.user, None);

    let record = engine.get_run(&parent).await.unwrap();
    let links = reprise::run_links_of(&record, &engine.events(&parent).await.unwrap());
    let child = &links.children[0].run_id;
    run_to_end(&engine, child).await;
    let output = run_to_end(&engine, &parent).await;
    assert_eq!(
        identity(&engine, child).await.actor,
        Actor::Run {
            run_id: parent.to_string(),
            relation: RunRelation::Parent
        }
    );
    assert_eq!(
        output,
        json!(format!("run {parent} (parent): hi")),
        "the child's ctx.actor() names its parent"
    );

    let emitted = engine
        .emit("pr.ping", json!({"text": "pong"}), Some("ping-1".into()))
        .await
        .unwrap();
    assert_eq!(
        identity(&engine, &emitted.started[0]).await.actor,
        Actor::Event {
            name: "pr.ping".into(),
            id: "ping-1".into()
        }
    );
}

/// Drives a run here until it ends; its output.
async fn run_to_end(engine: &Engine, id: &RunId) -> Value {
    for _ in 0..50 {
        let record = engine.get_run(id).await.unwrap();
        if record.status.is_terminal() {
            return record.output.unwrap_or(Value::Null);
        }
        let _ = engine.drive(id).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("run {id} did not end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_child_and_emitted_event_runs_record_their_actor_memory() {
    code_child_and_event_actors(memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_child_and_emitted_event_runs_record_their_actor_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    code_child_and_event_actors(sqlite(&dir)).await;
}

/// A server on 127.0.0.1:0 for `engine`; its base URL and the sender that stops it.
async fn server(
    engine: &Engine,
    token: Option<&str>,
) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = HttpOptions {
        api_token: token.map(str::to_owned),
        ..HttpOptions::default()
    };
    tokio::spawn(serve(engine.clone(), listener, options, async {
        let _ = stopped.await;
    }));
    (base, stop)
}

/// A request with `token` (if any): the status and the JSON (or text) answer.
async fn call(
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn get(base: &str, path: &str, token: Option<&str>) -> (StatusCode, Value) {
    call(reqwest::Method::GET, format!("{base}{path}"), token, None).await
}

async fn post(base: &str, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
    call(
        reqwest::Method::POST,
        format!("{base}{path}"),
        token,
        Some(body),
    )
    .await
}

/// `POST /tokens` with the master token; the new token.
async fn create_token(
    base: &str,
    master: &str,
    name: &str,
    principal: &str,
    scope: &str,
) -> String {
    let (status, body) = post(
        base,
        "/tokens",
        Some(master),
        json!({"name": name, "principal": principal, "scope": scope}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["principal"], principal);
    assert_eq!(body["scope"], scope);
    body["token"].as_str().unwrap().to_owned()
}

async fn named_tokens_over_http(store: SharedStore) {
    let engine = engine(store.clone());
    let master = "master-token-0123456789";
    let (base, _stop) = server(&engine, Some(master)).await;
    let base = base.as_str();
    let ci = create_token(base, master, "ci", "ada", "start").await;
    let dash = create_token(base, master, "dash", "dash", "read").await;
    let ops = create_token(base, master, "ops", "olga", "operate").await;
    assert!(ci.starts_with("rpr_") && ci != dash && dash != ops);

    // Hashed at rest: the documents hold the digest as key and no token in clear.
    let documents = store.documents("api_token", "").await.unwrap();
    assert_eq!(documents.len(), 3);
    let stored = format!(
        "{}{}",
        serde_json::to_string(&documents).unwrap(),
        serde_json::to_string(&store.documents("api_token_name", "").await.unwrap()).unwrap()
    );
    for token in [&ci, &dash, &ops] {
        assert!(
            !stored.contains(token.as_str()),
            "a token is stored in clear"
        );
        let digest = reprise_hex(&sha2::Sha256::digest(token.as_bytes()));
        assert!(documents.iter().any(|d| d.key == digest));
    }

    // A named token's start records its principal and the token's name.
    let (status, body) = post(
        base,
        "/workflows/pr-who?user=ada&project=web",
        Some(&ci),
        json!({"text": "x"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["run_id"].as_str().unwrap().to_owned();
    let (status, run) = get(base, &format!("/runs/{id}"), Some(&dash)).await;
    assert_eq!(status, StatusCode::OK, "a read token reads runs");
    assert_eq!(
        run["identity"],
        json!({"actor": {"type": "principal", "name": "ada", "token": "ci"}, "user": "ada", "project": "web"})
    );
    let (status, page) = get(base, &format!("/ui/runs/{id}"), Some(&dash)).await;
    assert_eq!(status, StatusCode::OK);
    let page = page.as_str().unwrap();
    assert!(page.contains("Started by"), "the UI shows the actor");
    assert!(page.contains("principal ada (token ci)"), "{page}");

    // Acting for another user needs admin.
    let (status, body) = post(
        base,
        "/workflows/pr-who?user=bob",
        Some(&ci),
        json!({"text": "x"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("`admin`"),
        "{body}"
    );

    // A read token cannot start or cancel, and is told what is needed.
    let (status, body) = post(base, "/workflows/pr-nap", Some(&dash), json!({"text": "x"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "forbidden");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("`start`") && error.contains("`read`"),
        "{error}"
    );
    let (status, body) = post(
        base,
        "/workflows/pr-nap",
        Some(master),
        json!({"text": "z"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let nap = body["run_id"].as_str().unwrap().to_owned();
    assert_eq!(
        identity(&engine, &RunId(nap.clone())).await.actor,
        Actor::Principal {
            name: "api".into(),
            token: None
        },
        "the configured token is principal api"
    );
    let (status, body) = post(
        base,
        &format!("/runs/{nap}/cancel"),
        Some(&dash),
        json!(null),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("`operate`"),
        "{body}"
    );
    // The web UI's login takes a named token; a read token gives a read-only UI.
    let client = reqwest::Client::new();
    let login = client
        .post(format!("{base}/ui/login"))
        .json(&json!({"token": dash}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::NO_CONTENT);
    let cookie = login.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let page = client
        .get(format!("{base}/ui/runs/{nap}"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let cancel = client
        .post(format!("{base}/runs/{nap}/cancel"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        cancel.status(),
        StatusCode::FORBIDDEN,
        "the UI's cancel button"
    );
    let (status, runs) = get(base, "/runs", Some(&dash)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(runs.as_array().unwrap().len(), 2);
    let (status, _) = post(base, "/tokens", Some(&ops), json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "tokens need admin");

    // Restart and fork record the caller as the actor.
    let (status, body) = post(
        base,
        &format!("/runs/{id}/restart"),
        Some(&ops),
        json!(null),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let restarted = RunId(body["run_id"].as_str().unwrap().to_owned());
    assert_eq!(body["forked_from"]["by"], "api:olga");
    assert_eq!(
        identity(&engine, &restarted).await,
        reprise::identity::RunIdentity {
            actor: Actor::Principal {
                name: "olga".into(),
                token: Some("ops".into())
            },
            user: Some("ada".into()),
            project: Some("web".into()),
            subscriber: None,
        },
        "a restart keeps whom the run acts for"
    );

    // Bad ids are 400.
    let (status, body) = post(
        base,
        "/workflows/pr-who?user=a%20b",
        Some(master),
        json!({"text": "x"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Names are unique; listing never shows tokens; revoking makes them 401.
    let (status, body) = post(
        base,
        "/tokens",
        Some(master),
        json!({"name": "ci", "principal": "eve", "scope": "admin"}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "token_name_taken");
    let (status, body) = post(
        base,
        "/tokens",
        Some(master),
        json!({"name": "x", "principal": "eve", "scope": "root"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, list) = get(base, "/tokens", Some(master)).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ci", "dash", "ops"]);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|t| t.get("token").is_none())
    );
    let (status, body) = call(
        reqwest::Method::DELETE,
        format!("{base}/tokens/dash"),
        Some(master),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = get(base, "/runs", Some(&dash)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a revoked token: {body}");
    let (status, _) = call(
        reqwest::Method::DELETE,
        format!("{base}/tokens/dash"),
        Some(master),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = get(base, "/runs", Some("rpr_not-a-token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "an unknown token");
}

/// Lower-case hex.
fn reprise_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_tokens_are_hashed_scoped_recorded_and_revocable_memory() {
    named_tokens_over_http(memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_tokens_are_hashed_scoped_recorded_and_revocable_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    named_tokens_over_http(sqlite(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_api_records_a_named_token_and_refuses_a_revoked_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(&dir);
    let engine = engine(store.clone());
    let (base, _stop) = server(&engine, None).await;
    let new = tokens::create(
        store.as_ref(),
        "bot",
        "robo",
        ApiScope::Start,
        "test",
        chrono::Utc::now(),
    )
    .await
    .unwrap()
    .unwrap();
    let (status, body) = post(&base, "/workflows/pr-who", None, json!({"text": "x"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let anonymous = RunId(body["run_id"].as_str().unwrap().to_owned());
    assert_eq!(
        identity(&engine, &anonymous).await.actor,
        Actor::Principal {
            name: "api".into(),
            token: None
        }
    );
    let (status, body) = post(
        &base,
        "/workflows/pr-who",
        Some(&new.token),
        json!({"text": "x"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let named = RunId(body["run_id"].as_str().unwrap().to_owned());
    assert_eq!(
        identity(&engine, &named).await.actor,
        Actor::Principal {
            name: "robo".into(),
            token: Some("bot".into())
        }
    );
    let (status, _) = post(
        &base,
        "/runs/purge",
        Some(&new.token),
        json!({"before": "1d"}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "its scope holds also without a configured token"
    );
    assert!(tokens::revoke(store.as_ref(), "bot").await.unwrap());
    let (status, _) = post(
        &base,
        "/workflows/pr-who",
        Some(&new.token),
        json!({"text": "x"}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a revoked token is refused"
    );
}

/// `reprise <args>` on the SQLite database `db` (in this process); the exit code.
async fn cli(db: &std::path::Path, args: &[&str]) -> u8 {
    let url = format!("sqlite://{}", db.display());
    let mut all = vec!["reprise", "--db", url.as_str()];
    all.extend_from_slice(args);
    reprise::cli::run(all, Ok).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_records_its_user_and_manages_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("runs.db");
    let run = [
        "workflows",
        "run",
        "pr-who",
        "--input",
        r#"{"text":"x"}"#,
        "--json",
    ];
    let mut with_user = run.to_vec();
    with_user.extend(["--user", "ada", "--project", "web"]);
    assert_eq!(cli(&db, &with_user).await, 0);
    let mut bad = run.to_vec();
    bad.extend(["--user", "a b"]);
    assert_eq!(cli(&db, &bad).await, 2, "a bad --user is a usage error");
    let mut bad = run.to_vec();
    bad.extend(["--project", "x/y"]);
    assert_eq!(cli(&db, &bad).await, 2, "a bad --project is a usage error");

    let engine = engine(Arc::new(reprise::store::SqliteStore::open(&db).unwrap()));
    let runs = engine.list_runs(&RunFilter::default()).await.unwrap();
    assert_eq!(runs.len(), 1, "the bad ids started nothing");
    let id = runs[0].id.clone();
    let recorded = identity(&engine, &id).await;
    assert!(matches!(recorded.actor, Actor::Cli { .. }), "{recorded:?}");
    assert_eq!(recorded.user.as_deref(), Some("ada"));
    assert_eq!(recorded.project.as_deref(), Some("web"));
    assert_eq!(cli(&db, &["runs", "get", id.as_str()]).await, 0);

    assert_eq!(cli(&db, &["runs", "restart", id.as_str()]).await, 0);
    let runs = engine.list_runs(&RunFilter::default()).await.unwrap();
    let restarted = runs.iter().find(|r| r.id != id).unwrap();
    let recorded = identity(&engine, &restarted.id).await;
    assert!(matches!(recorded.actor, Actor::Cli { .. }), "{recorded:?}");
    assert_eq!(recorded.user.as_deref(), Some("ada"));

    let create = [
        "tokens",
        "create",
        "--name",
        "ci",
        "--principal",
        "ada",
        "--scope",
        "start",
    ];
    assert_eq!(cli(&db, &create).await, 0);
    assert_eq!(cli(&db, &create).await, 2, "a taken name");
    assert_eq!(
        cli(
            &db,
            &[
                "tokens",
                "create",
                "--name",
                "x",
                "--principal",
                "ada",
                "--scope",
                "root"
            ]
        )
        .await,
        2,
        "an unknown scope"
    );
    let store = engine.store();
    let listed = tokens::list(store.as_ref()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].principal, "ada");
    assert_eq!(listed[0].scope, ApiScope::Start);
    assert!(listed[0].created_by.starts_with("cli:"));
    assert_eq!(cli(&db, &["tokens", "list"]).await, 0);
    assert_eq!(cli(&db, &["tokens", "revoke", "ci"]).await, 0);
    assert_eq!(
        cli(&db, &["tokens", "revoke", "ci"]).await,
        2,
        "nothing to revoke"
    );
    assert!(tokens::list(store.as_ref()).await.unwrap().is_empty());
}
