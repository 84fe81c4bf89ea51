//! `repo-digest` through the example app: subscriptions created, listed, paused, resumed and
//! deleted from the command line, bad configs exiting 2 with their JSON pointers, and
//! one cron tick fanning out into one digest per subscriber
//! against a mock GitHub API.

use reprise_testkit::TempDb;
use serde_json::{Value, json};

// The app as the schedules tests run it (same database, effect log and OS user).
use super::schedules_cli::{json, run};

#[test]
fn subscriptions_are_created_listed_paused_resumed_and_deleted_from_the_cli() {
    let db = TempDb::new().unwrap();
    // The subscription schema is shown with the workflow's schemas.
    let (code, out, err) = run(&db, &["workflows", "schema", "repo-digest"]);
    assert_eq!(code, 0, "{err}");
    let schemas: Value = serde_json::from_str(&out).unwrap();
    assert!(
        schemas["subscription"]["properties"]["repos"].is_object(),
        "{out}"
    );

    let created = json(
        &db,
        &[
            "subscriptions",
            "create",
            "repo-digest",
            "--user",
            "ada",
            "--config",
            r#"{"repos": ["ada/app"], "hours": 12}"#,
            "--json",
        ],
    );
    assert_eq!(created["user"], "ada");
    assert_eq!(
        created["config"],
        json!({ "repos": ["ada/app"], "hours": 12 })
    );
    assert_eq!(created["paused"], false);
    assert_eq!(created["created_by"], "cli user ada");
    let id = created["id"].as_str().unwrap().to_owned();

    let config = db.dir().join("bob.json");
    std::fs::write(&config, r#"{"repos": ["bob/lib"]}"#).unwrap();
    let bob = json(
        &db,
        &[
            "subscriptions",
            "create",
            "repo-digest",
            "--user",
            "bob",
            "--config",
            &format!("@{}", config.display()),
            "--json",
        ],
    );
    assert_eq!(bob["config"], json!({ "repos": ["bob/lib"] }));

    let list = json(
        &db,
        &[
            "subscriptions",
            "list",
            "--workflow",
            "repo-digest",
            "--json",
        ],
    );
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    let (code, out, _) = run(&db, &["subscriptions", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains(&id) && out.contains("active"), "{out}");

    let paused = json(&db, &["subscriptions", "pause", &id, "--json"]);
    assert_eq!(paused["paused"], true);
    // A paused subscription cannot start a run by hand either: exit 2, nothing started.
    let (code, _, err) = run(
        &db,
        &[
            "workflows",
            "run",
            "repo-digest",
            "--subscription",
            &id,
            "--input",
            "{}",
            "--enqueue",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("paused"), "{err}");
    let resumed = json(&db, &["subscriptions", "resume", &id, "--json"]);
    assert_eq!(resumed["paused"], false);
    let started = json(
        &db,
        &[
            "workflows",
            "run",
            "repo-digest",
            "--subscription",
            &id,
            "--input",
            "{}",
            "--enqueue",
            "--json",
        ],
    );
    assert_eq!(started["status"], "queued");

    let deleted = json(&db, &["subscriptions", "delete", &id, "--json"]);
    assert_eq!(deleted, json!({ "id": id, "deleted": true }));
    let (code, _, err) = run(&db, &["subscriptions", "delete", &id]);
    assert_eq!(code, 2);
    assert!(err.contains("no subscription"), "{err}");
    assert_eq!(
        json(&db, &["subscriptions", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn a_bad_subscription_exits_2_naming_what_to_fix() {
    let db = TempDb::new().unwrap();
    let (code, _, err) = run(
        &db,
        &[
            "subscriptions",
            "create",
            "repo-digest",
            "--user",
            "ada",
            "--config",
            r#"{"repos": [], "hours": 500}"#,
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/repos") && err.contains("/hours"), "{err}");
    let (code, _, err) = run(
        &db,
        &[
            "subscriptions",
            "create",
            "file-digest",
            "--user",
            "ada",
            "--config",
            "{}",
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("not subscribable"), "{err}");
    let (code, _, err) = run(
        &db,
        &[
            "subscriptions",
            "create",
            "repo-digest",
            "--user",
            "ada",
            "--config",
            "{oops",
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("--config"), "{err}");
    let (code, _, err) = run(&db, &["subscriptions", "pause", "sub_nope"]);
    assert_eq!(code, 2);
    assert!(err.contains("sub_nope"), "{err}");
    assert!(
        json(&db, &["subscriptions", "list", "--json"])
            .as_array()
            .unwrap()
            .is_empty(),
        "nothing stored"
    );
}

/// Three subscribers, one cron tick, three digests, each fetched with its subscriber's
/// own `github` token (kept encrypted in the store) from a mock GitHub API; a fourth
/// subscriber without a token gets a failed run naming the credential and the scopes tried.
#[tokio::test]
async fn one_tick_makes_one_digest_per_subscriber_against_a_mock_github() {
    use std::sync::Arc;

    use reprise::credentials::{Secret, SecretsKey};
    use reprise::identity::Scope;
    use reprise::{Engine, RunOutcome};
    use reprise_examples::repo_digest;
    use reprise_testkit::VirtualClock;
    use wiremock::matchers::{header, method, path_regex};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let github = MockServer::start().await;
    // Each user's repository answers only to that user's token.
    for user in ["ada", "bob", "cy"] {
        Mock::given(method("GET"))
            .and(path_regex(format!(r"^/repos/{user}/app/events$")))
            .and(header(
                "authorization",
                format!("Bearer token-of-{user}").as_str(),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!([
                { "type": "PushEvent", "created_at": "2026-03-02T06:00:00Z" },
                { "type": "IssuesEvent", "created_at": "2026-03-02T05:00:00Z" },
                { "type": "PushEvent", "created_at": "2026-02-20T05:00:00Z" }
            ])))
            .expect(1)
            .mount(&github)
            .await;
    }

    let start = serde_json::from_value(json!("2026-03-02T06:59:00Z")).unwrap();
    let clock = Arc::new(VirtualClock::new(start));
    let db = TempDb::new().unwrap();
    let engine = Engine::builder()
        .sqlite(db.path())
        .unwrap()
        .discover()
        .unwrap()
        .clock(clock.clone())
        .resource(repo_digest::GithubApi(github.uri()))
        .cron(repo_digest::schedule_with("0 7 * * *").unwrap())
        .secrets_key(SecretsKey::random())
        .build()
        .unwrap();
    for user in ["ada", "bob", "cy"] {
        engine
            .credentials()
            .set(
                &Scope::User(user.into()),
                "github",
                &Secret::new(format!("token-of-{user}")),
            )
            .await
            .unwrap();
        engine
            .create_subscription(
                "repo-digest",
                user,
                json!({ "repos": [format!("{user}/app")] }),
            )
            .await
            .unwrap();
    }
    // A subscriber with no `github` credential anywhere.
    engine
        .create_subscription("repo-digest", "dee", json!({ "repos": ["dee/app"] }))
        .await
        .unwrap();
    engine.triggers().fire_due(&engine).await.unwrap();
    clock.set(serde_json::from_value(json!("2026-03-02T07:00:00Z")).unwrap());
    let started = engine.triggers().fire_due(&engine).await.unwrap();
    assert_eq!(started.len(), 4);
    let mut users = Vec::new();
    for id in &started {
        let outcome = engine.drive(id).await.unwrap().outcome;
        if let RunOutcome::Failed(error) = &outcome {
            assert_eq!(error.kind, "credential_missing", "{error:?}");
            assert!(
                error.message.contains("github") && error.message.contains("user:dee"),
                "{}",
                error.message
            );
            continue;
        }
        let RunOutcome::Completed(digest) = outcome else {
            panic!("run {id} did not complete: {outcome:?}");
        };
        assert_eq!(digest["repos"][0]["events"], 2, "{digest}");
        assert_eq!(
            digest["repos"][0]["kinds"],
            json!(["IssuesEvent", "PushEvent"])
        );
        users.push(digest["user"].as_str().unwrap().to_owned());
    }
    users.sort();
    assert_eq!(users, ["ada", "bob", "cy"]);
}
