//! `expense-report`: a durable sleep and a hook inside a sub-workflow (`review-expense`),
//! on a `TestEnv` with virtual time, and end to end as a user runs it: separate processes
//! of the example binary on one SQLite file, killed with SIGKILL while the sub-workflow
//! sleeps and in the middle of the payout, and continued by other processes (`runs resume`,
//! `hooks resume`, `worker`).
//!
//! Every process logs its effects to a file of its own (`effects-<process>.log`, through
//! `REPRISE_EXAMPLES_EFFECT_LOG`), so the tests say which process performed which effect.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use reprise::event::{Event, EventKind, RunFilter, RunId, RunRecord, RunStatus};
use reprise::store::{SqliteStore, Store};
use reprise_examples::approval::Decision;
use reprise_examples::expense_report::{
    ExpenseReport, ask_manager, expense_report, record_expense, settle_expense,
};
use reprise_testkit::{
    Pending, TempDb, TestEnv, assert_each_step_recorded_once, assert_run_snapshot, completed_steps,
};
use serde_json::{Value, json};

const SUB: &str = "review-expense#0";
const RECORD: &str = "review-expense#0/record-expense#0";
const SLEEP: &str = "review-expense#0/sleep#0";
const ASK: &str = "review-expense#0/ask-manager#0";
const HOOK: &str = "review-expense#0/hook#0";
const SETTLE: &str = "settle-expense#0";

/// The upper bound of every wait for a process or a run state: generous for a loaded CI
/// machine, and still an end, so a regression (a run that hangs) fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(60);

fn report(hold: &str, confirm_ms: u64) -> ExpenseReport {
    ExpenseReport {
        employee: "Ada".into(),
        amount_cents: 4200,
        description: "Train to Lisbon".into(),
        hold: hold.into(),
        confirm_ms,
    }
}

fn approved_by_grace() -> Decision {
    Decision {
        approved: true,
        by: "Grace".into(),
    }
}

// ---- on a TestEnv (virtual time) ----

#[tokio::test]
async fn the_review_sleeps_and_waits_inside_the_sub_workflow_then_the_report_is_paid() {
    let env = TestEnv::new();
    let start = env.now();
    let waits = env
        .execute(&expense_report, report("1d", 0))
        .await
        .suspended();
    assert_eq!(
        waits,
        [Pending::Sleep {
            id: SLEEP.into(),
            until: start + Duration::from_secs(24 * 3600),
        }]
    );
    assert_eq!(env.calls(&record_expense).len(), 1);
    assert!(env.calls(&ask_manager).is_empty(), "not before the hold");

    let (_, outcome) = env.advance(Duration::from_secs(24 * 3600)).await.remove(0);
    let waits = outcome.suspended();
    let [Pending::Hook { id, token, .. }] = &waits[..] else {
        panic!("{waits:?}")
    };
    assert_eq!(id, HOOK);
    let asked = env.calls(&ask_manager);
    assert_eq!(asked.len(), 1);
    assert_eq!(
        asked[0].resume_url,
        format!("http://reprise.test/hooks/{token}")
    );

    let run = env.last_run();
    let done = env
        .resume_hook(token, approved_by_grace())
        .await
        .unwrap()
        .completed();
    assert_eq!(
        done,
        json!({
            "expense_id": format!("{run}/{RECORD}"),
            "result": "paid",
            "by": "Grace",
            "paid_cents": 4200,
            "settlement_id": format!("{run}/{SETTLE}"),
        })
    );
    // Each action ran once, however often the body was replayed.
    assert_eq!(env.calls(&record_expense).len(), 1);
    assert_eq!(env.calls(&ask_manager).len(), 1);
    let settled = env.calls(&settle_expense);
    assert_eq!(settled.len(), 1);
    assert!(settled[0].approved);
    assert_each_step_recorded_once(&env.engine().events(&run).await.unwrap());
}

/// Starts a report held for an hour, waits out the hold and returns the approval hook's
/// token.
async fn token_after_an_hour_of_hold(env: &TestEnv) -> String {
    env.execute(&expense_report, report("1h", 0))
        .await
        .suspended();
    let (_, outcome) = env.advance(Duration::from_secs(3600)).await.remove(0);
    outcome.suspended()[0].token().unwrap().to_owned()
}

#[tokio::test]
async fn a_rejected_report_is_settled_without_a_payout() {
    let env = TestEnv::new();
    let token = token_after_an_hour_of_hold(&env).await;
    // A link in an email: query values are text.
    let done = env
        .resume_hook(&token, json!({ "approved": "false", "by": "Grace" }))
        .await
        .unwrap()
        .completed();
    assert_eq!(done["result"], "rejected");
    assert_eq!(done["paid_cents"], 0);
    let settled = env.calls(&settle_expense);
    assert_eq!(settled.len(), 1);
    assert!(!settled[0].approved);
}

#[tokio::test]
async fn a_malformed_hold_fails_the_run_before_anything_is_filed() {
    let env = TestEnv::new();
    let error = env
        .execute(&expense_report, report("a while", 0))
        .await
        .failed();
    assert!(error.message.contains("is not a duration"), "{error}");
    assert!(env.calls(&record_expense).is_empty());
}

/// `snapshots/it__expense_report__expense_report_log.snap`: the nested ids of the sleep and
/// the hook, and the sub-workflow's step completing after its hook.
#[tokio::test]
async fn expense_report_log() {
    let env = TestEnv::new();
    let token = token_after_an_hour_of_hold(&env).await;
    env.resume_hook(&token, approved_by_grace())
        .await
        .unwrap()
        .completed();
    assert_run_snapshot!(env, env.last_run());
}

// ---- separate processes on one SQLite file ----

/// A process of the example app on `db`, its standard output and error going to files
/// (`<name>.out`, `<name>.err`) and its effects to `effects-<name>.log`. Killed on drop, so a
/// failing test leaves no process behind.
pub(crate) struct App {
    name: &'static str,
    child: Child,
    dir: PathBuf,
}

impl App {
    pub(crate) fn spawn(db: &TempDb, name: &'static str, args: &[&str]) -> App {
        let dir = db.dir().to_path_buf();
        let file = |ext: &str| File::create(dir.join(format!("{name}.{ext}"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_reprise-examples"))
            .args(args)
            .env("REPRISE_DATABASE_URL", db.url())
            .env(
                "REPRISE_EXAMPLES_EFFECT_LOG",
                dir.join(format!("effects-{name}.log")),
            )
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(file("out"))
            .stderr(file("err"))
            .spawn()
            .unwrap();
        App { name, child, dir }
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the process to exit, at most [`PATIENCE`].
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "`{}` did not exit within {PATIENCE:?}\nstdout: {}\nstderr: {}",
                    self.name,
                    self.stdout(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9`: no chance to clean up, as in a crash.
    pub(crate) fn sigkill(&mut self) {
        assert!(
            self.running(),
            "`{}` exited early: {}",
            self.name,
            self.stderr()
        );
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// `kill -TERM`: a graceful shutdown; waits for the exit.
    fn sigterm(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        self.wait()
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.out", self.name))).unwrap_or_default()
    }

    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.err", self.name))).unwrap_or_default()
    }

    /// The idempotency keys of the effects this process performed, in order.
    pub(crate) fn effects(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join(format!("effects-{}.log", self.name)))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a foreground command to its end: exit code, parsed JSON standard output, the
/// process (for its stderr and effects).
pub(crate) fn run_json(
    db: &TempDb,
    name: &'static str,
    args: &[&str],
) -> (Option<i32>, Value, App) {
    let mut app = App::spawn(db, name, args);
    let code = app.wait().code();
    let stdout = app.stdout();
    let line = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("`{name}` printed no JSON ({e}): {stdout}\n{}", app.stderr()));
    (code, line, app)
}

/// Polls the database until `ready` holds for run `id`, at most [`PATIENCE`].
pub(crate) async fn wait_until(
    store: &SqliteStore,
    id: &RunId,
    what: &str,
    ready: impl Fn(&RunRecord, &[Event]) -> bool,
) -> (RunRecord, Vec<Event>) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let run = store.run(id).await.unwrap().expect("the run exists");
        let events = store.events(id).await.unwrap();
        if ready(&run, &events) {
            return (run, events);
        }
        assert!(
            !run.status.is_terminal(),
            "run {id} ended ({}) before {what}: {:?} {:?}",
            run.status,
            run.output,
            run.error
        );
        assert!(
            Instant::now() < deadline,
            "run {id} never {what} within {PATIENCE:?}; it is {}",
            run.status
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The one run in the database, once there is one.
async fn the_run(store: &SqliteStore) -> RunId {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(run) = store.list_runs(&RunFilter::default()).await.unwrap().pop() {
            return run.id;
        }
        assert!(Instant::now() < deadline, "no run was started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn count(events: &[Event], kind: EventKind, id: &str) -> usize {
    events
        .iter()
        .filter(|e| e.event.kind == kind && e.event.correlation_id.as_deref() == Some(id))
        .count()
}

/// The first event of `kind` for step `id`.
fn first<'a>(events: &'a [Event], kind: EventKind, id: &str) -> &'a Event {
    events
        .iter()
        .find(|e| e.event.kind == kind && e.event.correlation_id.as_deref() == Some(id))
        .unwrap_or_else(|| panic!("no {kind:?} for {id}"))
}

/// The finished run's log, whichever processes wrote it: every step — the nested ones
/// (`review-expense#0/…`) included — completed exactly once, the sleep started and ended
/// once (after its wake-up time), the hook created and delivered once, the run completed
/// once, and sequence numbers without gaps.
///
/// `sleeping` is the run's record while it slept (its `wake_at`).
fn assert_log_recorded_once(events: &[Event], sleeping: &RunRecord) {
    let wake_at = sleeping.wake_at.expect("a sleeping run has a wake-up time");
    assert_each_step_recorded_once(events);
    let mut steps = completed_steps(events);
    steps.sort();
    assert_eq!(steps, [SUB, ASK, RECORD, SETTLE], "{steps:?}");
    for (kind, id) in [
        (EventKind::StepCompleted, RECORD),
        (EventKind::StepCompleted, ASK),
        (EventKind::StepCompleted, SUB),
        (EventKind::StepCompleted, SETTLE),
        (EventKind::SleepStarted, SLEEP),
        (EventKind::SleepCompleted, SLEEP),
        (EventKind::HookCreated, HOOK),
        (EventKind::HookReceived, HOOK),
    ] {
        assert_eq!(count(events, kind, id), 1, "{kind:?} {id}");
    }
    let completions = events
        .iter()
        .filter(|e| e.event.kind == EventKind::RunCompleted)
        .count();
    assert_eq!(completions, 1);
    assert!(
        first(events, EventKind::SleepCompleted, SLEEP).event.at >= wake_at,
        "the hold was waited out, not cut short by the kill"
    );
    assert!(first(events, EventKind::StepStarted, ASK).event.at >= wake_at);
}

fn expected_output(id: &RunId) -> Value {
    json!({
        "expense_id": format!("{id}/{RECORD}"),
        "result": "paid",
        "by": "Grace",
        "paid_cents": 4200,
        "settlement_id": format!("{id}/{SETTLE}"),
    })
}

/// The commands a user types, each its own process: `workflows run` (killed with SIGKILL
/// while the sub-workflow sleeps) → `runs resume` (waits out the rest of the sleep, sends
/// the resume URL, exits 3 with the run `waiting`) → `runs get --json` (the hook's URL) →
/// `hooks resume` (a payload of the wrong shape is refused and the hook stays open; the
/// right one completes the run) → `hooks resume` again (refused).
///
/// Effects: each ran exactly once, in the process that recorded its step. No kill fell
/// between an effect and its record: the first process was killed while the run was
/// `sleeping`, when nothing was in flight, and the others ran to their end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_a_run_killed_while_its_sub_workflow_sleeps_resumes_waits_and_completes() {
    let started = Instant::now();
    let db = TempDb::new().unwrap();
    // Created (and migrated) before any process of the app opens it.
    let store = SqliteStore::open(db.path()).unwrap();
    let input = serde_json::to_string(&report("2s", 0)).unwrap();

    let mut started_run = App::spawn(
        &db,
        "run",
        &[
            "workflows",
            "run",
            "expense-report",
            "--json",
            "--input",
            &input,
        ],
    );
    let id = the_run(&store).await;
    let (sleeping, events) = wait_until(&store, &id, "slept in its sub-workflow", |run, events| {
        run.status == RunStatus::Sleeping && count(events, EventKind::SleepStarted, SLEEP) == 1
    })
    .await;
    assert!(sleeping.wake_at.is_some());
    assert_eq!(completed_steps(&events), [RECORD]);
    // `workflows run` waits out the sleep in its own process: kill it there.
    started_run.sigkill();
    assert_eq!(started_run.effects(), [format!("{id}/{RECORD}")]);
    let run = store.run(&id).await.unwrap().unwrap();
    assert_eq!(
        (run.status, run.wake_at, run.next_seq),
        (RunStatus::Sleeping, sleeping.wake_at, sleeping.next_seq),
        "the kill changed nothing recorded"
    );

    let (code, line, resumed) = run_json(&db, "resume", &["runs", "resume", id.as_str(), "--json"]);
    assert_eq!(
        code,
        Some(3),
        "left waiting on the hook: {line}\n{}",
        resumed.stderr()
    );
    assert_eq!(line["status"], "waiting", "{line}");
    assert_eq!(line["waits"][0]["id"], HOOK, "{line}");
    assert_eq!(resumed.effects(), [format!("{id}/{ASK}")]);

    let (code, got, _) = run_json(&db, "get", &["runs", "get", id.as_str(), "--json"]);
    assert_eq!(code, Some(0));
    assert_eq!(got["run"]["status"], "waiting", "{got}");
    assert_eq!(got["open_hooks"][0]["id"], HOOK, "{got}");
    let url = got["open_hooks"][0]["resume_url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        resumed.stderr().contains(&url),
        "the manager was sent the URL `runs get` shows ({url}):\n{}",
        resumed.stderr()
    );
    let token = url.rsplit('/').next().unwrap().to_owned();

    let mut wrong = App::spawn(
        &db,
        "wrong",
        &[
            "hooks",
            "resume",
            &token,
            "--payload",
            r#"{"approved":"yes","by":"Grace"}"#,
        ],
    );
    assert_eq!(wrong.wait().code(), Some(2), "{}", wrong.stderr());
    assert!(wrong.stderr().contains("/approved"), "{}", wrong.stderr());

    let (code, done, delivered) = run_json(
        &db,
        "deliver",
        &[
            "hooks",
            "resume",
            &token,
            "--payload",
            r#"{"approved":true,"by":"Grace"}"#,
            "--json",
        ],
    );
    assert_eq!(code, Some(0), "{done}\n{}", delivered.stderr());
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"], expected_output(&id));
    assert!(
        delivered.stderr().contains("[payout] 42.00 to Ada"),
        "{}",
        delivered.stderr()
    );

    let mut again = App::spawn(
        &db,
        "again",
        &[
            "hooks",
            "resume",
            &token,
            "--payload",
            r#"{"approved":false,"by":"Bob"}"#,
        ],
    );
    assert_eq!(again.wait().code(), Some(2), "one payload only");
    assert!(again.stderr().contains("already"), "{}", again.stderr());

    let events = store.events(&id).await.unwrap();
    assert_log_recorded_once(&events, &sleeping);
    assert_eq!(delivered.effects(), [format!("{id}/{SETTLE}")]);
    for refused in [&wrong, &again] {
        assert!(
            refused.effects().is_empty(),
            "`{}` ran no action",
            refused.name
        );
    }
    eprintln!("cli chain took {:?}", started.elapsed());
}

/// Workers, each its own process, and one payout interrupted between its effect and its
/// record: `workflows run --enqueue` → worker A (SIGKILL while the sub-workflow sleeps; its
/// hot-run cache held the body) → worker B (wakes the run at its wake-up time, replays it,
/// sends the resume URL; the run waits; SIGTERM) → `hooks resume` with the URL worker B
/// printed (delivers, drives the run on and is SIGKILLed after the payout's effect, during
/// its 2 s wait for the bank, before the step is recorded) → worker C (takes the run over
/// once that process's lease expires and completes it).
///
/// Effects: filing and asking ran exactly once (A and B respectively: neither was killed
/// with an effect in flight). The payout ran exactly twice, once in the `hooks resume`
/// process and once in worker C, with the same idempotency key: the kill fell between its
/// effect and its record, so the step was not recorded and ran again — the at-least-once
/// case that the idempotency key exists for. Its step is still recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_take_over_a_sub_workflow_that_sleeps_and_a_payout_killed_mid_step() {
    let started = Instant::now();
    let db = TempDb::new().unwrap();
    let store = SqliteStore::open(db.path()).unwrap();
    let input = serde_json::to_string(&report("2s", 2000)).unwrap();
    let worker_args = ["worker", "--concurrency", "2", "--lease", "1s"];

    let (code, line, _) = run_json(
        &db,
        "enqueue",
        &[
            "workflows",
            "run",
            "expense-report",
            "--enqueue",
            "--json",
            "--input",
            &input,
        ],
    );
    assert_eq!(
        (code, &line["status"]),
        (Some(0), &json!("queued")),
        "{line}"
    );
    let id = RunId(line["run_id"].as_str().unwrap().to_owned());

    let mut a = App::spawn(&db, "worker-a", &worker_args);
    let (sleeping, _) = wait_until(&store, &id, "slept in its sub-workflow", |run, events| {
        run.status == RunStatus::Sleeping && count(events, EventKind::SleepStarted, SLEEP) == 1
    })
    .await;
    a.sigkill();
    assert_eq!(a.effects(), [format!("{id}/{RECORD}")]);

    let mut b = App::spawn(&db, "worker-b", &worker_args);
    wait_until(&store, &id, "waited on its hook", |run, _| {
        run.status == RunStatus::Waiting
    })
    .await;
    assert_eq!(b.effects(), [format!("{id}/{ASK}")]);
    let printed = b.stderr();
    let url = printed
        .split_whitespace()
        .find(|word| word.contains("/hooks/") && word.ends_with(','))
        .unwrap_or_else(|| panic!("worker B printed no resume URL:\n{printed}"))
        .trim_end_matches(',');
    let token = url.rsplit('/').next().unwrap().to_owned();
    assert!(b.sigterm().success(), "{}", b.stderr());

    let mut deliver = App::spawn(
        &db,
        "deliver",
        &[
            "hooks",
            "resume",
            &token,
            "--payload",
            r#"{"approved":true,"by":"Grace"}"#,
        ],
    );
    let deadline = Instant::now() + PATIENCE;
    while deliver.effects().is_empty() {
        assert!(
            deliver.running() && Instant::now() < deadline,
            "`hooks resume` paid nothing: {}",
            deliver.stderr()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    deliver.sigkill();
    let events = store.events(&id).await.unwrap();
    assert_eq!(count(&events, EventKind::HookReceived, HOOK), 1);
    assert_eq!(
        count(&events, EventKind::StepCompleted, SETTLE),
        0,
        "the kill was meant to fall inside the payout's 2 s wait for the bank; it came \
         after the step was recorded (is the machine overloaded?)"
    );

    let mut c = App::spawn(&db, "worker-c", &worker_args);
    let (run, events) = wait_until(&store, &id, "completed", |run, _| {
        run.status == RunStatus::Completed
    })
    .await;
    assert!(c.sigterm().success(), "{}", c.stderr());
    assert_eq!(run.output, Some(expected_output(&id)));
    assert_log_recorded_once(&events, &sleeping);

    let payout = format!("{id}/{SETTLE}");
    assert_eq!(deliver.effects(), [payout.as_str()], "paid, then killed");
    assert_eq!(
        c.effects(),
        [payout.as_str()],
        "paid again: the step had no record"
    );
    eprintln!("worker chain took {:?}", started.elapsed());
}
