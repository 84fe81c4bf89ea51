//! `runs list --tag …` and `runs get` as a user runs them: expense reports tagged by the
//! example (employee, amount, and the manager's decision from inside its sub-workflow),
//! searched, paged with the printed cursor, and bad filters refused with exit code 2.

use reprise_testkit::TempDb;
use serde_json::Value;

use crate::operator::{app, run};

/// Files a report that waits on the manager; its run id and hook token.
fn file_report(db: &TempDb, employee: &str, amount_cents: u64) -> (String, String) {
    let input = serde_json::json!({
        "employee": employee,
        "amount_cents": amount_cents,
        "description": "Train to Lisbon",
        "hold": "0s",
    })
    .to_string();
    let (code, out, err) = run(app(db).args([
        "workflows",
        "run",
        "expense-report",
        "--json",
        "--input",
        &input,
    ]));
    assert_eq!(code, 3, "the report waits on the manager: {out}{err}");
    let line: Value = serde_json::from_str(out.trim()).unwrap();
    let id = line["run_id"].as_str().unwrap().to_owned();
    let token = err
        .split("/hooks/")
        .nth(1)
        .and_then(|rest| rest.split([',', '?', ' ']).next())
        .unwrap_or_else(|| panic!("a resume URL in {err}"))
        .to_owned();
    (id, token)
}

/// The ids `runs list --json <args>` prints, and the next cursor it reports.
fn list(db: &TempDb, args: &[&str]) -> (Vec<String>, Option<String>) {
    let (code, out, err) = run(app(db).args(["runs", "list", "--json"]).args(args));
    assert_eq!(code, 0, "{args:?}: {out}{err}");
    let runs: Vec<Value> = serde_json::from_str(out.trim()).unwrap();
    let ids = runs
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    let cursor = err
        .lines()
        .find_map(|l| l.strip_prefix("next_cursor: "))
        .map(str::to_owned);
    (ids, cursor)
}

#[test]
fn runs_list_finds_runs_by_tag_and_time_pages_with_the_cursor_and_refuses_bad_filters() {
    let db = TempDb::new().unwrap();
    let (ada_small, _) = file_report(&db, "Ada", 4_200);
    let (grace, _) = file_report(&db, "Grace", 9_900);
    let (ada_big, ada_big_token) = file_report(&db, "Ada", 25_000);

    assert_eq!(
        list(&db, &["--tag", "employee=Ada"]).0,
        [ada_big.as_str(), ada_small.as_str()]
    );
    assert_eq!(
        list(
            &db,
            &["--tag", "employee=Ada", "--tag", "amount_cents>=10000"]
        )
        .0,
        [ada_big.as_str()]
    );
    assert_eq!(
        list(&db, &["--tag", "amount_cents<10000"]).0,
        [grace.as_str(), ada_small.as_str()]
    );
    assert_eq!(
        list(
            &db,
            &["--workflow", "expense-report", "--created-after", "1h"]
        )
        .0,
        [ada_big.as_str(), grace.as_str(), ada_small.as_str()]
    );
    assert_eq!(
        list(&db, &["--created-before", "2000-01-01T00:00:00Z"]).0,
        Vec::<String>::new()
    );
    assert_eq!(
        list(
            &db,
            &[
                "--updated-after",
                "2000-01-01T00:00:00Z",
                "--tag",
                "employee=Grace"
            ]
        )
        .0,
        [grace.as_str()]
    );

    // Pages of one, following the printed cursor: every report once, newest first.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut args = vec!["--limit", "1"];
        if let Some(c) = &cursor {
            args.extend(["--cursor", c.as_str()]);
        }
        let (ids, next) = list(&db, &args);
        seen.extend(ids);
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(seen.len() <= 3, "{seen:?}");
    }
    assert_eq!(seen, [ada_big.as_str(), grace.as_str(), ada_small.as_str()]);
    // The human listing prints it too.
    let (code, out, _) = run(app(&db).args(["runs", "list", "--limit", "1"]));
    assert_eq!(code, 0);
    assert!(out.contains("next cursor: "), "{out}");

    // A tag made inside the sub-workflow attaches to the report's run.
    let (code, out, err) = run(app(&db).args([
        "hooks",
        "resume",
        &ada_big_token,
        "--payload",
        r#"{"approved":false,"by":"Grace"}"#,
    ]));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        list(&db, &["--tag", "decision=rejected"]).0,
        [ada_big.as_str()]
    );

    // `runs get` shows the tags.
    let (code, out, err) = run(app(&db).args(["runs", "get", ada_big.as_str()]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("tags      amount_cents=25000 decision=rejected employee=Ada"),
        "{out}"
    );
    let (_, out, _) = run(app(&db).args(["runs", "get", ada_big.as_str(), "--json"]));
    let run_json: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        run_json["tags"],
        serde_json::json!({ "employee": "Ada", "amount_cents": 25000, "decision": "rejected" })
    );

    // Bad input: exit 2 with a message saying what is wrong.
    for (args, mentions) in [
        (vec!["--tag", "employee>Ada"], "numbers and times only"),
        (vec!["--tag", "employee"], "no operator"),
        (vec!["--tag", "bad key=1"], "tag key `bad key`"),
        (
            vec!["--created-after", "yesterday"],
            "neither an RFC 3339 time",
        ),
        (
            vec!["--cursor", "zzz"],
            "cursor `zzz` is not one a listing returned",
        ),
    ] {
        let (code, out, err) = run(app(&db).args(["runs", "list"]).args(&args));
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(mentions), "`{mentions}` not in {err}");
    }
}
