//! Durable select (`reprise::select!`), `.timeout(d)`, `#[workflow(timeout = "…")]` and
//! inline steps (`ctx.run`): the winner is recorded and every replay takes it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use reprise::event::{Event, EventKind, RunId, RunStatus};
use reprise::message::{NewMessage, signal_channel};
use reprise::prelude::*;
use reprise::store::{MemoryStore, SharedStore, SqliteStore};
use reprise::{Clock, RunOutcome};
use serde_json::{Value, json};

use crate::engine::{Calls, Num, add_one};

/// A clock the test moves by hand.
struct HandClock(Mutex<DateTime<Utc>>);

impl HandClock {
    fn new() -> Arc<HandClock> {
        Arc::new(HandClock(Mutex::new(Utc::now())))
    }
    fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap();
        *now += TimeDelta::from_std(by).unwrap();
    }
}

impl Clock for HandClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

fn engine(store: SharedStore, clock: &Arc<HandClock>, calls: &Arc<Calls>) -> Engine {
    Engine::builder()
        .store(store)
        .clock(clock.clone())
        .discover()
        .unwrap()
        .shared_resource(calls.clone())
        .run_retry_backoff(Duration::from_millis(1))
        .build()
        .unwrap()
}

async fn events_of(engine: &Engine, id: &RunId) -> Vec<Event> {
    engine.store().events(id).await.unwrap()
}

/// The recorded output at correlation id `id` (a `step_completed`).
fn completed(events: &[Event], id: &str) -> Option<Value> {
    events
        .iter()
        .find(|e| {
            e.event.kind == EventKind::StepCompleted
                && e.event.correlation_id.as_deref() == Some(id)
        })
        .map(|e| e.event.payload["output"].clone())
}

fn count(events: &[Event], kind: EventKind, id: &str) -> usize {
    events
        .iter()
        .filter(|e| e.event.kind == kind && e.event.correlation_id.as_deref() == Some(id))
        .count()
}

async fn signal(engine: &Engine, run: &RunId, name: &str, payload: Value) {
    engine
        .store()
        .post_message(NewMessage {
            run_id: run.clone(),
            channel: signal_channel(name),
            payload,
            dedupe: None,
            at: Utc::now(),
        })
        .await
        .unwrap();
}

/// Replays the run in a replay-only engine and asserts it reproduces its history.
async fn assert_replays(engine: &Engine, id: &RunId) {
    let export = engine.export_run(id).await.unwrap();
    let judged = engine.check_replay(&export).await.unwrap();
    assert!(judged.is_ok(), "replay check of {id}: {judged:?}");
}

fn output(outcome: &RunOutcome) -> Value {
    match outcome {
        RunOutcome::Completed(output) => output.clone(),
        other => panic!("not completed: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// select over a signal and a sleep

#[workflow(slug = "sel-signal-or-sleep")]
async fn signal_or_sleep(ctx: Ctx, _input: Num) -> Result<String, WorkflowError> {
    let out = reprise::select! {
        payment = ctx.signal::<Value>("paid").recv() => format!("paid {}", payment?),
        expired = ctx.sleep("1h") => {
            expired?;
            "expired".to_owned()
        }
    };
    Ok(out)
}

#[tokio::test]
async fn a_signal_beats_a_sleep_and_every_replay_takes_the_signal() {
    let (store, clock, calls): (SharedStore, _, _) = (
        Arc::new(MemoryStore::new()),
        HandClock::new(),
        Arc::new(Calls::default()),
    );
    let first = engine(store.clone(), &clock, &calls);
    let id = first.start(&signal_or_sleep, Num { n: 0 }).await.unwrap();
    let execution = first.execute(&id).await.unwrap();
    let RunOutcome::Suspended(waits) = &execution.outcome else {
        panic!("{execution:?}")
    };
    assert_eq!(waits.len(), 2, "waits on both branches: {waits:?}");
    assert_eq!(first.get_run(&id).await.unwrap().status, RunStatus::Waiting);

    signal(&first, &id, "paid", json!(42)).await;
    // A fresh engine on the same store: a restart between suspension and wake-up.
    let second = engine(store.clone(), &clock, &calls);
    let execution = second.execute(&id).await.unwrap();
    assert_eq!(output(&execution.outcome), json!("paid 42"));

    let events = events_of(&second, &id).await;
    let select = completed(&events, "select#0").expect("the select is recorded");
    assert_eq!(select["winner"], json!(0));
    assert_eq!(select["branches"][1]["started"], json!(true));
    assert_eq!(count(&events, EventKind::SleepStarted, "sleep#0"), 1);
    assert_eq!(count(&events, EventKind::SleepCompleted, "sleep#0"), 0);
    assert!(completed(&events, "signal:paid#0").is_some());
    // The select's record is written no later than the receipt it decided.
    let at = |id: &str| {
        events
            .iter()
            .find(|e| {
                e.event.correlation_id.as_deref() == Some(id)
                    && e.event.kind == EventKind::StepCompleted
            })
            .unwrap()
            .seq
    };
    assert!(at("select#0") < at("signal:paid#0"));

    // Once the sleep is long over, a replay still takes the signal.
    clock.advance(Duration::from_secs(7200));
    assert_replays(&second, &id).await;
}

#[tokio::test]
async fn a_sleep_beats_a_signal_that_comes_later_and_the_message_stays() {
    let (store, clock, calls): (SharedStore, _, _) = (
        Arc::new(MemoryStore::new()),
        HandClock::new(),
        Arc::new(Calls::default()),
    );
    let engine = engine(store, &clock, &calls);
    let id = engine.start(&signal_or_sleep, Num { n: 0 }).await.unwrap();
    let execution = engine.execute(&id).await.unwrap();
    assert!(matches!(execution.outcome, RunOutcome::Suspended(_)));
    assert!(engine.get_run(&id).await.unwrap().wake_at.is_some());

    clock.advance(Duration::from_secs(3601));
    let execution = engine.execute(&id).await.unwrap();
    assert_eq!(output(&execution.outcome), json!("expired"));
    let events = events_of(&engine, &id).await;
    let select = completed(&events, "select#0").unwrap();
    assert_eq!(select["winner"], json!(1));
    assert_eq!(count(&events, EventKind::SleepCompleted, "sleep#0"), 1);
    assert!(
        completed(&events, "signal:paid#0").is_none(),
        "the loser received nothing"
    );
    assert_replays(&engine, &id).await;
}

// ---------------------------------------------------------------------------------------
// hook vs sleep, on SQLite across a restart

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Approval {
    ok: bool,
}

#[workflow(slug = "sel-hook-or-sleep")]
async fn hook_or_sleep(ctx: Ctx, _input: Num) -> Result<String, WorkflowError> {
    let out = reprise::select! {
        approval = ctx.hook::<Approval>() => format!("approved {}", approval?.ok),
        slept = ctx.sleep("1d") => {
            slept?;
            "reminder".to_owned()
        }
    };
    Ok(out)
}

fn sqlite_store(dir: &tempfile::TempDir) -> SharedStore {
    Arc::new(SqliteStore::open(dir.path().join("reprise.db")).unwrap())
}

#[tokio::test]
async fn a_hook_beats_a_sleep_on_sqlite_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, calls) = (HandClock::new(), Arc::new(Calls::default()));
    let first = engine(sqlite_store(&dir), &clock, &calls);
    let id = first.start(&hook_or_sleep, Num { n: 0 }).await.unwrap();
    assert!(matches!(
        first.execute(&id).await.unwrap().outcome,
        RunOutcome::Suspended(_)
    ));
    let token = first.hook_token(&id, "hook#0");
    first
        .resume_hook(&token, json!({ "ok": true }))
        .await
        .unwrap();
    drop(first);

    // Another process on the same file, a day later: the hook still wins (its payload is
    // in the log, and it comes first), and the select is recorded before the body goes on.
    clock.advance(Duration::from_secs(2 * 86_400));
    let second = engine(sqlite_store(&dir), &clock, &calls);
    let execution = second.execute(&id).await.unwrap();
    assert_eq!(output(&execution.outcome), json!("approved true"));
    let events = events_of(&second, &id).await;
    assert_eq!(completed(&events, "select#0").unwrap()["winner"], json!(0));
    assert_eq!(count(&events, EventKind::SleepCompleted, "sleep#0"), 0);
    assert_replays(&second, &id).await;
}

#[tokio::test]
async fn a_sleep_beats_a_hook_and_the_hook_is_not_awaited_again() {
    let (store, clock, calls): (SharedStore, _, _) = (
        Arc::new(MemoryStore::new()),
        HandClock::new(),
        Arc::new(Calls::default()),
    );
    let engine = engine(store, &clock, &calls);
    let id = engine.start(&hook_or_sleep, Num { n: 0 }).await.unwrap();
    engine.execute(&id).await.unwrap();
    clock.advance(Duration::from_secs(86_401));
    let execution = engine.execute(&id).await.unwrap();
    assert_eq!(output(&execution.outcome), json!("reminder"));
    let events = events_of(&engine, &id).await;
    let select = completed(&events, "select#0").unwrap();
    assert_eq!(select["winner"], json!(1));
    assert_eq!(select["branches"][0]["started"], json!(true), "{select}");
    assert_eq!(count(&events, EventKind::HookReceived, "hook#0"), 0);
    assert_replays(&engine, &id).await;
}

// ---------------------------------------------------------------------------------------
// a live step loses: canceled and recorded

/// Takes a minute.
#[action(slug = "sel-slow")]
async fn sel_slow(input: Num) -> Result<Num, ActionError> {
    bump("sel-slow", input.n);
    tokio::time::sleep(Duration::from_secs(60)).await;
    Ok(input)
}

#[workflow(slug = "sel-action-or-sleep")]
async fn action_or_sleep(ctx: Ctx, input: Num) -> Result<String, WorkflowError> {
    let out = reprise::select! {
        done = sel_slow.run(input.clone()) => format!("done {}", done?.n),
        slept = ctx.sleep("0s") => {
            slept?;
            "gave up".to_owned()
        }
    };
    // Goes on after the select: a step recorded after the canceled one.
    let next = add_one.run(input).await?;
    Ok(format!("{out}, then {}", next.n))
}

#[tokio::test]
async fn a_losing_live_step_is_canceled_and_its_cancellation_recorded() {
    let (store, clock, calls): (SharedStore, _, _) = (
        Arc::new(MemoryStore::new()),
        HandClock::new(),
        Arc::new(Calls::default()),
    );
    let engine = engine(store.clone(), &clock, &calls);
    let started = std::time::Instant::now();
    let id = engine.start(&action_or_sleep, Num { n: 11 }).await.unwrap();
    let execution = engine.execute(&id).await.unwrap();
    assert_eq!(output(&execution.outcome), json!("gave up, then 12"));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the slow action was not awaited"
    );
    assert_eq!(calls_of("sel-slow", 11), 1);

    let events = events_of(&engine, &id).await;
    let select = completed(&events, "select#0").unwrap();
    assert_eq!(select["winner"], json!(1));
    assert_eq!(select["branches"][0]["started"], json!(true));
    let failed: Vec<_> = events
        .iter()
        .filter(|e| e.event.kind == EventKind::StepFailed)
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(
        failed[0].event.correlation_id.as_deref(),
        Some("sel-slow#0")
    );
    assert_eq!(failed[0].event.payload["error"]["kind"], json!("canceled"));
    let message = failed[0].event.payload["error"]["message"]
        .as_str()
        .unwrap();
    assert!(
        message.contains("select#0") && message.contains("branch 1"),
        "{message}"
    );

    // A replay after a restart takes the sleep again and never calls the action.
    assert_replays(&engine, &id).await;
    assert_eq!(calls_of("sel-slow", 11), 1);
}

// ---------------------------------------------------------------------------------------
// inside a sub-workflow, inside join!, in a loop

#[workflow(slug = "sel-inner")]
async fn sel_inner(ctx: Ctx, input: Num) -> Result<String, WorkflowError> {
    let out = reprise::select! {
        payment = ctx.signal::<Value>("paid").recv() => format!("paid {}", payment?),
        slept = ctx.sleep("1h") => {
            slept?;
            format!("expired {}", input.n)
        }
    };
    Ok(out)
}

#[workflow(slug = "sel-outer")]
async fn sel_outer(_ctx: Ctx, input: Num) -> Result<String, WorkflowError> {
    let inner = sel_inner.run(input.clone()).await?;
    let (joined, added) = futures::join!(
        async {
            Ok::<_, ActionError>(reprise::select! {
                payment = _ctx.signal::<Value>("joined").recv() => format!("joined {}", payment?),
                slept = _ctx.sleep("2h") => {
                    slept?;
                    "join expired".to_owned()
                }
            })
        },
        add_one.run(input)
    );
    Ok(format!("{inner}; {}; {}", joined?, added?.n))
}

#[tokio::test]
async fn a_select_works_inside_a_sub_workflow_and_inside_join() {
    let (store, clock, calls): (SharedStore, _, _) = (
        Arc::new(MemoryStore::new()),
        HandClock::new(),
        Arc::new(Calls::default()),
    );
    let engine1 = engine(store.clone(), &clock, &calls);
    let id = engine1.start(&sel_outer, Num { n: 5 }).await.unwrap();
    assert!(matches!(
        engine1.execute(&id).await.unwrap().outcome,
        RunOutcome::Suspended(_)
    ));
    signal(&engine1, &id, "paid", json!("in sub")).await;
    // The sub-workflow's select is decided; the joined one waits on its own.
    let engine2 = engine(store.clone(), &clock, &calls);
    let execution = engine2.execute(&id).await.unwrap();
    assert!(
        matches!(execution.outcome, RunOutcome::Suspended(_)),
        "{execution:?}"
    );
    clock.advance(Duration::from_secs(7201));
    let execution = engine2.execute(&id).await.unwrap();
    assert_eq!(
        output(&execution.outcome),
        json!("paid \"in sub\"; join expired; 6")
    );
    let events = events_of(&engine2, &id).await;
    assert_eq!(
        completed(&events, "sel-inner#0/select#0").unwrap()["winner"],
        json!(0)
    );
    assert!(completed(&events, "sel-inner#0/signal:paid#0").is_some());
    assert_eq!(completed(&events, "select#0").unwrap()["winner"], json!(1));
    assert_eq!(calls.count("add-one#0"), 1, "the joined step ran once");
    assert_replays(&engine2, &id).await;
}

#[workflow(slug = "sel-loop")]
async fn select_loop(ctx: Ctx, input: Num) -> Result<Vec<String>, WorkflowError> {
    let mut winners = Vec::new();
    for _ in 0..input.n {
        let winner = reprise::select! {
            got = ctx.signal::<Value>("go").recv() => {
                got?;
                "signal".to_owned()
            }
            slept = ctx.sleep("1h") => {
                slept?;
                "sleep".to_owned()
            }
        };
        winners.push(winner);
    }
    Ok(winners)
}

/// A small deterministic generator (xorshift64*), seeded per test run.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % sides
    }
}

/// The select's winner is the same in 100 resumes with randomized timing: 20 runs of 5
/// selects in a loop, each decided by a signal, the timer, or both at once (randomly
/// chosen), each resumed by a fresh engine (a restart) that replays the earlier selects;
/// then every run is replayed 5 more times.
#[tokio::test]
async fn the_recorded_winner_is_taken_in_100_resumes_with_random_timing() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut dice = Dice(seed);
    let (store, clock, calls): (SharedStore, _, _) = (
        Arc::new(MemoryStore::new()),
        HandClock::new(),
        Arc::new(Calls::default()),
    );
    let mut resumes = 0;
    for _ in 0..20 {
        let engine1 = engine(store.clone(), &clock, &calls);
        let id = engine1.start(&select_loop, Num { n: 5 }).await.unwrap();
        let mut execution = engine1.execute(&id).await.unwrap();
        let mut expected = Vec::new();
        while let RunOutcome::Suspended(_) = &execution.outcome {
            match dice.roll(3) {
                0 => {
                    signal(&engine1, &id, "go", json!(null)).await;
                    expected.push("signal");
                }
                1 => {
                    clock.advance(Duration::from_secs(3601));
                    expected.push("sleep");
                }
                _ => {
                    // Both ready at the resume: the first branch in source order wins.
                    signal(&engine1, &id, "go", json!(null)).await;
                    clock.advance(Duration::from_secs(3601));
                    expected.push("signal");
                }
            }
            let restarted = engine(store.clone(), &clock, &calls);
            execution = restarted.execute(&id).await.unwrap();
            resumes += 1;
            // A left-over message is received by the next select at once.
            let events = events_of(&restarted, &id).await;
            let decided = (0..5)
                .filter(|k| completed(&events, &format!("select#{k}")).is_some())
                .count();
            while expected.len() < decided {
                expected.push("signal");
            }
        }
        let out = output(&execution.outcome);
        let events = events_of(&engine1, &id).await;
        let recorded: Vec<Value> = (0..5)
            .map(|k| {
                let select = completed(&events, &format!("select#{k}")).unwrap();
                json!(if select["winner"] == json!(0) {
                    "signal"
                } else {
                    "sleep"
                })
            })
            .collect();
        assert_eq!(out, json!(recorded), "seed {seed}");
        assert_eq!(out, json!(expected), "seed {seed}");
        for _ in 0..5 {
            clock.advance(Duration::from_secs(dice.roll(10_000)));
            assert_replays(&engine1, &id).await;
        }
    }
    assert!(resumes >= 100, "{resumes} resumes");
}

// ---------------------------------------------------------------------------------------
// inline steps

/// Closure calls of the inline-step tests, by (step name, workflow input): tests run in
/// parallel, each with its own input.
static INLINE_CALLS: Mutex<Vec<(&'static str, i64, usize)>> = Mutex::new(Vec::new());

/// Counts one call of `name` for input `n`; returns the calls so far.
fn bump(name: &'static str, n: i64) -> usize {
    let mut calls = INLINE_CALLS.lock().unwrap();
    match calls.iter_mut().find(|(k, m, _)| *k == name && *m == n) {
        Some(entry) => {
            entry.2 += 1;
            entry.2
        }
        None => {
            calls.push((name, n, 1));
            1
        }
    }
}

fn calls_of(name: &'static str, n: i64) -> usize {
    let calls = INLINE_CALLS.lock().unwrap();
    calls
        .iter()
        .find(|(k, m, _)| *k == name && *m == n)
        .map_or(0, |(_, _, c)| *c)
}

#[workflow(slug = "sel-inline")]
async fn inline_steps(ctx: Ctx, input: Num) -> Result<String, WorkflowError> {
    let key = input.n;
    let ticket: String = ctx
        .run("create-ticket", move || async move {
            bump("create-ticket", key);
            Ok(format!("T-{key}"))
        })
        .await?;
    // Fails twice, then succeeds: two `step_retrying`.
    let flaky: u32 = ctx
        .run_with(
            "flaky-call",
            InlineOptions::new()
                .retries(3)
                .backoff("1ms")
                .timeout("10s"),
            move || async move {
                let n = bump("flaky-call", key);
                if !n.is_multiple_of(3) {
                    return Err(ActionError::transient(format!("try {n} failed")));
                }
                Ok(7)
            },
        )
        .await?;
    ctx.sleep("1m").await?;
    Ok(format!("{ticket} {flaky}"))
}

#[workflow(slug = "sel-inline-outer")]
async fn inline_outer(_ctx: Ctx, input: Num) -> Result<String, WorkflowError> {
    Ok(inline_steps.run(input).await?)
}

#[tokio::test]
async fn inline_steps_are_recorded_retried_and_replayed_without_calling_the_closure() {
    let (store, clock, calls): (SharedStore, _, _) = (
        Arc::new(MemoryStore::new()),
        HandClock::new(),
        Arc::new(Calls::default()),
    );
    let first = engine(store.clone(), &clock, &calls);
    let id = first.start(&inline_outer, Num { n: 3 }).await.unwrap();
    assert!(matches!(
        first.execute(&id).await.unwrap().outcome,
        RunOutcome::Suspended(_)
    ));
    clock.advance(Duration::from_secs(61));
    let second = engine(store.clone(), &clock, &calls);
    let execution = second.execute(&id).await.unwrap();
    assert_eq!(output(&execution.outcome), json!("T-3 7"));
    // Each closure ran for its attempts only, never again on the resume.
    assert_eq!(calls_of("create-ticket", 3), 1);
    assert_eq!(calls_of("flaky-call", 3), 3);

    let events = events_of(&second, &id).await;
    let ticket = "sel-inline#0/create-ticket#0";
    assert_eq!(completed(&events, ticket), Some(json!("T-3")));
    let started = events
        .iter()
        .find(|e| {
            e.event.kind == EventKind::StepStarted
                && e.event.correlation_id.as_deref() == Some(ticket)
        })
        .unwrap();
    assert_eq!(started.event.payload["kind"], json!("inline"));
    assert_eq!(started.event.payload["callee"], json!("create-ticket"));
    assert_eq!(
        count(
            &events,
            EventKind::StepRetrying,
            "sel-inline#0/flaky-call#0"
        ),
        2
    );
    assert_eq!(
        completed(&events, "sel-inline#0/flaky-call#0"),
        Some(json!(7))
    );
    assert_replays(&second, &id).await;
    assert_eq!(calls_of("create-ticket", 3), 1);
}

#[workflow(slug = "sel-inline-bad-name")]
async fn inline_bad_name(ctx: Ctx, _input: Num) -> Result<String, WorkflowError> {
    let result: Result<u8, ActionError> = ctx.run("a/b", || async { Ok(1) }).await;
    let error = result.unwrap_err();
    Ok(format!("{}: {}", error.kind, error.message))
}

#[tokio::test]
async fn an_inline_step_with_a_bad_name_fails_clearly_and_runs_nothing() {
    let (store, clock, calls): (SharedStore, _, _) = (
        Arc::new(MemoryStore::new()),
        HandClock::new(),
        Arc::new(Calls::default()),
    );
    let engine = engine(store, &clock, &calls);
    let id = engine.start(&inline_bad_name, Num { n: 0 }).await.unwrap();
    let out = output(&engine.execute(&id).await.unwrap().outcome);
    let text = out.as_str().unwrap();
    assert!(
        text.starts_with("invalid_step_name: \"a/b\" cannot name an inline step"),
        "{text}"
    );
    let events = events_of(&engine, &id).await;
    assert!(
        !events
            .iter()
            .any(|e| e.event.kind == EventKind::StepStarted)
    );
}

// ---------------------------------------------------------------------------------------
// .timeout(d)

#[workflow(slug = "sel-timeouts")]
async fn timeouts(ctx: Ctx, input: Num) -> Result<Vec<String>, WorkflowError> {
    let mut seen = Vec::new();
    // A slow action loses to its timeout: canceled, and the body gets a `timeout` error.
    match sel_slow.run(input.clone()).timeout("0s").await {
        Ok(_) => seen.push("action finished".to_owned()),
        Err(e) if e.is_timeout() => seen.push(format!("action {}", e.kind)),
        Err(e) => return Err(e.into()),
    }
    // A quick one beats its timeout.
    let quick = add_one.run(input).timeout("1h").await?;
    seen.push(format!("quick {}", quick.n));
    // A signal that does not come in time.
    let paid = ctx.signal::<Value>("paid");
    match paid.recv().timeout("30m").await {
        Ok(payload) => seen.push(format!("paid {payload}")),
        Err(e) if e.is_timeout() => seen.push("no payment".to_owned()),
        Err(e) => return Err(e.into()),
    }
    // A signal that does.
    let shipped = ctx.signal::<Value>("shipped");
    let payload = shipped.recv().timeout("30m").await?;
    seen.push(format!("shipped {payload}"));
    Ok(seen)
}

#[tokio::test]
async fn timeouts_race_a_durable_timer_and_replay_the_same_way() {
    let (store, clock, calls): (SharedStore, _, _) = (
        Arc::new(MemoryStore::new()),
        HandClock::new(),
        Arc::new(Calls::default()),
    );
    let engine1 = engine(store.clone(), &clock, &calls);
    let id = engine1.start(&timeouts, Num { n: 1 }).await.unwrap();
    // Suspends on the first signal, after both step timeouts were decided.
    assert!(matches!(
        engine1.execute(&id).await.unwrap().outcome,
        RunOutcome::Suspended(_)
    ));
    let record = engine1.get_run(&id).await.unwrap();
    assert_eq!(record.status, RunStatus::Waiting);
    // The timer's deadline wakes the run.
    assert!(record.wake_at.is_some());
    clock.advance(Duration::from_secs(31 * 60));
    let engine2 = engine(store.clone(), &clock, &calls);
    assert!(matches!(
        engine2.execute(&id).await.unwrap().outcome,
        RunOutcome::Suspended(_)
    ));
    signal(&engine2, &id, "shipped", json!("by boat")).await;
    let execution = engine2.execute(&id).await.unwrap();
    assert_eq!(
        output(&execution.outcome),
        json!([
            "action timeout",
            "quick 2",
            "no payment",
            "shipped \"by boat\""
        ])
    );
    let events = events_of(&engine2, &id).await;
    assert_eq!(completed(&events, "timeout#0").unwrap()["winner"], json!(1));
    assert_eq!(
        count(&events, EventKind::SleepCompleted, "timeout#0$timer"),
        1
    );
    let canceled = events
        .iter()
        .find(|e| {
            e.event.kind == EventKind::StepFailed
                && e.event.correlation_id.as_deref() == Some("sel-slow#0")
        })
        .expect("the slow action's cancellation is recorded");
    assert_eq!(canceled.event.payload["error"]["kind"], json!("canceled"));
    assert_eq!(
        completed(&events, "timeout@2#0").unwrap()["winner"],
        json!(0)
    );
    assert_eq!(
        completed(&events, "timeout@3#0").unwrap()["winner"],
        json!(1)
    );
    assert_eq!(
        completed(&events, "timeout@4#0").unwrap()["winner"],
        json!(0)
    );
    assert!(completed(&events, "signal:shipped#0").is_some());
    assert_replays(&engine2, &id).await;
}

#[workflow(slug = "sel-hook-deadline")]
async fn hook_deadline(ctx: Ctx, _input: Num) -> Result<String, WorkflowError> {
    // A hook's own recorded deadline, raced against a signal: the timeout claims the select.
    let out = reprise::select! {
        approval = ctx.hook::<Approval>().timeout("1h") => match approval {
            Ok(a) => format!("approved {}", a.ok),
            Err(e) if e.is_timeout() => "hook timed out".to_owned(),
            Err(e) => return Err(e.into()),
        },
        payment = ctx.signal::<Value>("paid").recv() => format!("paid {}", payment?),
    };
    Ok(out)
}

#[tokio::test]
async fn a_hook_timeout_wins_a_select_and_is_recorded_with_it() {
    let (store, clock, calls): (SharedStore, _, _) = (
        Arc::new(MemoryStore::new()),
        HandClock::new(),
        Arc::new(Calls::default()),
    );
    let engine = engine(store, &clock, &calls);
    let id = engine.start(&hook_deadline, Num { n: 0 }).await.unwrap();
    assert!(matches!(
        engine.execute(&id).await.unwrap().outcome,
        RunOutcome::Suspended(_)
    ));
    clock.advance(Duration::from_secs(3601));
    let execution = engine.execute(&id).await.unwrap();
    assert_eq!(output(&execution.outcome), json!("hook timed out"));
    let events = events_of(&engine, &id).await;
    assert_eq!(completed(&events, "select#0").unwrap()["winner"], json!(0));
    assert_eq!(count(&events, EventKind::HookReceived, "hook#0"), 1);
    assert_replays(&engine, &id).await;
}

// ---------------------------------------------------------------------------------------
// #[workflow(timeout = "…")]

#[workflow(slug = "sel-run-timeout", timeout = "2h", max_attempts = 5)]
async fn run_timeout(ctx: Ctx, input: Num) -> Result<Num, WorkflowError> {
    let a = add_one.run(input).await?;
    ctx.sleep("1d").await?;
    Ok(a)
}

#[tokio::test]
async fn a_run_timeout_fails_a_sleeping_run_at_its_deadline() {
    let (store, clock, calls): (SharedStore, _, _) = (
        Arc::new(MemoryStore::new()),
        HandClock::new(),
        Arc::new(Calls::default()),
    );
    let engine1 = engine(store.clone(), &clock, &calls);
    let id = engine1.start(&run_timeout, Num { n: 1 }).await.unwrap();
    let created = engine1.get_run(&id).await.unwrap().created_at;
    assert!(matches!(
        engine1.execute(&id).await.unwrap().outcome,
        RunOutcome::Suspended(_)
    ));
    // Woken at the deadline, not at the end of the day-long sleep.
    let record = engine1.get_run(&id).await.unwrap();
    assert_eq!(record.status, RunStatus::Sleeping);
    assert_eq!(record.wake_at, Some(created + TimeDelta::hours(2)));

    clock.advance(Duration::from_secs(2 * 3600));
    let engine2 = engine(store.clone(), &clock, &calls);
    let execution = engine2.execute(&id).await.unwrap();
    let RunOutcome::Failed(error) = &execution.outcome else {
        panic!("{execution:?}")
    };
    assert_eq!(error.kind, "timeout");
    assert!(!error.retryable);
    assert!(error.message.contains("2h"), "{}", error.message);
    let record = engine2.get_run(&id).await.unwrap();
    assert_eq!(record.status, RunStatus::Failed);
    let events = events_of(&engine2, &id).await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event.kind == EventKind::RunFailed)
            .count(),
        1
    );
    assert_eq!(
        calls.count("add-one#0"),
        1,
        "the recorded step did not run again"
    );
}

static TICKS: AtomicUsize = AtomicUsize::new(0);

#[workflow(slug = "sel-run-timeout-busy", timeout = "1s")]
async fn run_timeout_busy(ctx: Ctx, _input: Num) -> Result<u32, WorkflowError> {
    for _ in 0..100 {
        ctx.run("tick", || async {
            TICKS.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(())
        })
        .await?;
    }
    Ok(100)
}

#[tokio::test]
async fn a_run_timeout_stops_an_executing_run_at_its_next_step_boundary() {
    let (store, clock, calls): (SharedStore, _, _) = (
        Arc::new(MemoryStore::new()),
        HandClock::new(),
        Arc::new(Calls::default()),
    );
    let engine = engine(store, &clock, &calls);
    let id = engine.start(&run_timeout_busy, Num { n: 0 }).await.unwrap();
    let started = std::time::Instant::now();
    let execution = engine.execute(&id).await.unwrap();
    let RunOutcome::Failed(error) = &execution.outcome else {
        panic!("{execution:?}")
    };
    assert_eq!(error.kind, "timeout");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let ticks = TICKS.load(Ordering::SeqCst);
    assert!((5..100).contains(&ticks), "{ticks} ticks");
    // Every tick that started was recorded (the live step finished before the body stopped).
    let events = events_of(&engine, &id).await;
    let completed = events
        .iter()
        .filter(|e| e.event.kind == EventKind::StepCompleted)
        .count();
    assert_eq!(completed, ticks);
    assert_eq!(engine.get_run(&id).await.unwrap().status, RunStatus::Failed);
}

/// A replay-only check of a run suspended in a select reproduces its waits.
#[tokio::test]
async fn a_run_suspended_in_a_select_passes_the_replay_check() {
    let (store, clock, calls): (SharedStore, _, _) = (
        Arc::new(MemoryStore::new()),
        HandClock::new(),
        Arc::new(Calls::default()),
    );
    let engine = engine(store, &clock, &calls);
    let id = engine.start(&hook_or_sleep, Num { n: 0 }).await.unwrap();
    engine.execute(&id).await.unwrap();
    assert_eq!(
        engine.get_run(&id).await.unwrap().status,
        RunStatus::Waiting
    );
    assert_replays(&engine, &id).await;
}

#[tokio::test]
async fn inline_steps_replay_on_sqlite_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, calls) = (HandClock::new(), Arc::new(Calls::default()));
    let first = engine(sqlite_store(&dir), &clock, &calls);
    let id = first.start(&inline_outer, Num { n: 9 }).await.unwrap();
    assert!(matches!(
        first.execute(&id).await.unwrap().outcome,
        RunOutcome::Suspended(_)
    ));
    drop(first);
    clock.advance(Duration::from_secs(61));
    let second = engine(sqlite_store(&dir), &clock, &calls);
    let execution = second.execute(&id).await.unwrap();
    assert_eq!(output(&execution.outcome), json!("T-9 7"));
    let events = events_of(&second, &id).await;
    assert_eq!(
        completed(&events, "sel-inline#0/create-ticket#0"),
        Some(json!("T-9"))
    );
    assert_eq!(calls_of("create-ticket", 9), 1);
    assert_eq!(calls_of("flaky-call", 9), 3);
    assert_replays(&second, &id).await;
}

#[workflow(slug = "sel-timeout-inner")]
async fn timeout_inner(_ctx: Ctx, input: Num) -> Result<String, WorkflowError> {
    Ok(match sel_slow.run(input).timeout("0s").await {
        Ok(done) => format!("done {}", done.n),
        Err(e) if e.is_timeout() => "timed out".to_owned(),
        Err(e) => return Err(e.into()),
    })
}

#[workflow(slug = "sel-timeout-outer")]
async fn timeout_outer(ctx: Ctx, input: Num) -> Result<String, WorkflowError> {
    let inner = timeout_inner.run(input).await?;
    ctx.sleep("1m").await?;
    Ok(inner)
}

#[tokio::test]
async fn a_timeout_inside_a_sub_workflow_is_recorded_under_its_scope() {
    let (store, clock, calls): (SharedStore, _, _) = (
        Arc::new(MemoryStore::new()),
        HandClock::new(),
        Arc::new(Calls::default()),
    );
    let first = engine(store.clone(), &clock, &calls);
    let id = first.start(&timeout_outer, Num { n: 21 }).await.unwrap();
    assert!(matches!(
        first.execute(&id).await.unwrap().outcome,
        RunOutcome::Suspended(_)
    ));
    clock.advance(Duration::from_secs(61));
    let second = engine(store, &clock, &calls);
    let execution = second.execute(&id).await.unwrap();
    assert_eq!(output(&execution.outcome), json!("timed out"));
    let events = events_of(&second, &id).await;
    let scope = "sel-timeout-inner#0";
    assert_eq!(
        completed(&events, &format!("{scope}/timeout#0")).unwrap()["winner"],
        json!(1)
    );
    assert_eq!(
        count(
            &events,
            EventKind::SleepCompleted,
            &format!("{scope}/timeout#0$timer")
        ),
        1
    );
    assert_eq!(
        calls_of("sel-slow", 21),
        1,
        "not called again on the resume"
    );
    assert_replays(&second, &id).await;
}
