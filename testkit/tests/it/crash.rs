//! The crash-and-replay checker: a sound workflow (retries, a durable sleep, a hook,
//! concurrent steps) survives every crash point on both stores, and a deliberately broken
//! engine is caught with a minimal plan and the run's log.

use std::collections::BTreeSet;
use std::time::Duration;

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use reprise::prelude::*;
use reprise::{Fault, RunOutcome};
use reprise_testkit::crash::{self, CheckConfig, CrashPlan, StoreKind};
use serde_json::json;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Parcel {
    id: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Label {
    code: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Signature {
    by: String,
}

/// Prints a label; the printer is cold on the first attempt (a recorded retry).
#[action(retries = 2, backoff = "1s")]
async fn print_label(input: Parcel, cx: ActionCtx) -> Result<Label, ActionError> {
    if cx.attempt() == 1 {
        return Err(ActionError::transient("the printer is warming up"));
    }
    Ok(Label {
        code: format!("L-{}", input.id),
    })
}

/// Hands a labelled parcel to the courier.
#[action]
async fn hand_over(input: Label) -> Result<String, ActionError> {
    Ok(format!("handed over {}", input.code))
}

/// Emails the receipt of a labelled parcel.
#[action]
async fn email_receipt(input: Label) -> Result<String, ActionError> {
    Ok(format!("receipt for {}", input.code))
}

/// Labels a parcel, waits a minute and for a signature, then hands it over and emails the
/// receipt at the same time.
#[workflow(slug = "crash-parcel")]
async fn parcel(ctx: Ctx, input: Parcel) -> Result<String, WorkflowError> {
    let label = print_label.run(input).await?;
    ctx.sleep(Duration::from_secs(60)).await?;
    let signature: Signature = ctx.hook().await?;
    let (handed, receipt) =
        futures::future::try_join(hand_over.run(label.clone()), email_receipt.run(label)).await?;
    Ok(format!("{handed}; {receipt}; signed by {}", signature.by))
}

/// Puts a parcel in a crate.
#[action]
async fn crate_parcel(input: Parcel) -> Result<Parcel, ActionError> {
    Ok(input)
}

/// Dispatches a crated parcel.
#[action]
async fn dispatch_parcel(input: Parcel) -> Result<String, ActionError> {
    Ok(format!("dispatched {}", input.id))
}

/// Crates and dispatches a parcel.
#[workflow(slug = "crash-dispatch")]
async fn dispatch(input: Parcel) -> Result<String, WorkflowError> {
    let crated = crate_parcel.run(input).await?;
    Ok(dispatch_parcel.run(crated).await?)
}

/// Labels a crated parcel: a sub-workflow, its steps namespaced under the calling step.
#[workflow(slug = "crash-crate-and-label")]
async fn crate_and_label(input: Parcel) -> Result<Label, WorkflowError> {
    let crated = crate_parcel.run(input).await?;
    Ok(Label {
        code: format!("C-{}", crated.id),
    })
}

/// Crates and labels a parcel in a sub-workflow, stamps it with a recorded time, and
/// fails its first attempt as a whole (a run-level retry replays the recorded steps).
#[workflow(slug = "crash-retried", max_attempts = 3)]
async fn retried(ctx: Ctx, input: Parcel) -> Result<String, WorkflowError> {
    let label = crate_and_label.run(input.clone()).await?;
    let _stamped_at = ctx.now();
    if ctx.attempt() == 1 {
        return Err(WorkflowError::new("flaky", "the first attempt fails", true));
    }
    let sent = dispatch_parcel.run(input).await?;
    Ok(format!(
        "{} {sent} at attempt {}",
        label.code,
        ctx.attempt()
    ))
}

fn signed() -> CheckConfig {
    CheckConfig::default().hook("hook#0", json!({ "by": "Ada" }))
}

#[test]
fn a_sound_workflow_survives_random_and_every_crash_point_in_memory() {
    let report = crash::assert_crash_safe(&parcel, Parcel { id: 7 }, signed());
    eprintln!("{report}");
    assert_eq!(
        report.outcome,
        RunOutcome::Completed(json!("handed over L-7; receipt for L-7; signed by Ada"))
    );
    assert_eq!(
        report.actions, 4,
        "two attempts of print-label, then two steps"
    );
    assert!(report.crashed > 0);

    let all = CrashPlan::all(report.appends, report.actions, false);
    let sweep = crash::check_plans(&parcel, Parcel { id: 7 }, signed(), all.clone())
        .unwrap_or_else(|failure| panic!("{failure}"));
    eprintln!("{sweep}");
    assert_eq!(sweep.covered, all.len());
    assert_eq!(
        sweep.crashed as usize,
        all.len(),
        "every crash point is reached"
    );
}

#[test]
fn a_sound_workflow_survives_crashes_and_torn_writes_on_sqlite() {
    let config = signed().sqlite().max_cases(24);
    let report = crash::assert_crash_safe(&parcel, Parcel { id: 8 }, config);
    eprintln!("{report}");
    assert_eq!(report.store, StoreKind::Sqlite);

    // SQLite ignores a torn last commit at every append of the run.
    let torn = (0..report.appends).map(CrashPlan::TornWrite);
    let sweep = crash::check_plans(&parcel, Parcel { id: 8 }, signed().sqlite(), torn)
        .unwrap_or_else(|failure| panic!("{failure}"));
    eprintln!("{sweep}");
    assert_eq!(sweep.crashed as usize, report.appends);
}

#[test]
fn sub_workflows_recorded_values_and_run_level_retries_survive_crashes() {
    let report = crash::assert_crash_safe(&retried, Parcel { id: 4 }, CheckConfig::default());
    eprintln!("{report}");
    assert_eq!(
        report.outcome,
        RunOutcome::Completed(json!("C-4 dispatched 4 at attempt 2"))
    );
    let config = CheckConfig::default()
        .crashes(3)
        .sweep_first(false)
        .cases(128);
    eprintln!(
        "{}",
        crash::assert_crash_safe(&retried, Parcel { id: 4 }, config)
    );
    let config = CheckConfig::default().sqlite().max_cases(32);
    eprintln!(
        "{}",
        crash::assert_crash_safe(&retried, Parcel { id: 4 }, config)
    );
}

#[test]
fn a_run_left_waiting_on_a_hook_must_be_left_waiting_after_every_crash() {
    let report =
        crash::assert_crash_safe(&parcel, Parcel { id: 9 }, CheckConfig::default().cases(64));
    let RunOutcome::Suspended(waits) = &report.outcome else {
        panic!("{:?}", report.outcome)
    };
    assert!(matches!(&waits[..], [reprise::Wait::Hook { id, .. }] if id == "hook#0"));
}

#[test]
fn an_engine_that_never_records_a_step_is_caught_without_a_crash() {
    let config = CheckConfig::default()
        .cases(16)
        .configure(|b| b.fault(Fault::SkipStepRecord("dispatch-parcel#0".into())));
    let failure = crash::check(&dispatch, Parcel { id: 1 }, config).unwrap_err();
    let text = failure.to_string();
    eprintln!("{text}");
    assert_eq!(failure.plan(), None, "the uncrashed run already shows it");
    assert!(
        failure
            .problems
            .iter()
            .any(|p| p.contains("`dispatch-parcel#0`")
                && p.contains("no step_completed or step_failed")),
        "{text}"
    );
    assert!(text.contains("step_started"), "the log is printed: {text}");
}

#[test]
fn an_engine_that_loses_a_step_record_after_a_resume_is_caught_with_a_minimal_plan() {
    let config = CheckConfig::default()
        .configure_after_crash(|b| b.fault(Fault::SkipStepRecord("dispatch-parcel#0".into())));
    // The sweep of every crash point stops at the simplest failing one.
    let failure = crash::check(&dispatch, Parcel { id: 2 }, config).unwrap_err();
    let text = failure.to_string();
    eprintln!("{text}");
    let plan = failure.plan().expect("a crash plan");
    assert!(
        matches!(
            plan,
            CrashPlan::BeforeAppend(0) | CrashPlan::AfterAppend(0) | CrashPlan::MidAction(0)
        ),
        "shrunk to a minimal plan, got {plan:?}"
    );
    assert!(
        failure
            .problems
            .iter()
            .any(|p| p.contains("`dispatch-parcel#0`")),
        "{text}"
    );
    assert!(text.contains("minimal crash plan"), "{text}");
    assert!(
        text.contains("---- crash #1:"),
        "the crash point is marked: {text}"
    );
    assert!(text.contains("dispatch-parcel#0"), "{text}");

    // The printed plan reproduces it.
    let again = crash::check_plans(
        &dispatch,
        Parcel { id: 2 },
        CheckConfig::default()
            .configure_after_crash(|b| b.fault(Fault::SkipStepRecord("dispatch-parcel#0".into()))),
        [plan],
    )
    .unwrap_err();
    assert_eq!(again.plan(), Some(plan));
}

#[test]
fn random_plans_shrink_to_a_minimal_one() {
    let config = CheckConfig::default()
        .sweep_first(false)
        .cases(64)
        .configure_after_crash(|b| b.fault(Fault::SkipStepRecord("dispatch-parcel#0".into())));
    let failure = crash::check(&dispatch, Parcel { id: 3 }, config).unwrap_err();
    eprintln!("{failure}");
    // Every plan whose crash leaves dispatch-parcel unrecorded fails; the simplest of
    // each kind has index 0, and shrinking moves to the earliest kind it can.
    assert!(
        matches!(
            failure.plan(),
            Some(CrashPlan::BeforeAppend(0) | CrashPlan::AfterAppend(0) | CrashPlan::MidAction(0))
        ),
        "{failure}"
    );
}

#[test]
fn a_sound_workflow_survives_several_crashes_in_a_row() {
    let config = signed().crashes(3).sweep_first(false).cases(128);
    let report = crash::assert_crash_safe(&parcel, Parcel { id: 10 }, config);
    eprintln!("{report}");

    // Die right after the resume started, then again before the sleep is recorded.
    let report = crash::check_crashes(
        &parcel,
        Parcel { id: 10 },
        signed(),
        &[
            CrashPlan::MidAction(1),
            CrashPlan::AfterAppend(0),
            CrashPlan::BeforeAppend(2),
        ],
    )
    .unwrap_or_else(|failure| panic!("{failure}"));
    assert_eq!(report.crashed, 1);
}

#[test]
fn the_strategy_draws_every_crash_point_and_nothing_else() {
    let strategy = crash::strategy(4, 2, true);
    let mut runner = TestRunner::deterministic();
    let drawn: BTreeSet<CrashPlan> = (0..2_000)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect();
    let all: BTreeSet<CrashPlan> = CrashPlan::all(4, 2, true).into_iter().collect();
    assert_eq!(drawn, all);

    let memory: BTreeSet<CrashPlan> = (0..2_000)
        .map(|_| {
            crash::strategy(3, 0, false)
                .new_tree(&mut runner)
                .unwrap()
                .current()
        })
        .collect();
    assert_eq!(
        memory,
        CrashPlan::all(3, 0, false)
            .into_iter()
            .collect::<BTreeSet<_>>()
    );
}

#[test]
fn a_workflow_without_retries_or_sub_workflows_survives_refused_appends() {
    let config = CheckConfig::default().store_failures(true);
    let report = crash::assert_crash_safe(&dispatch, Parcel { id: 5 }, config);
    eprintln!("{report}");
    assert_eq!(
        report.crash_points,
        4 + 4 + 2 + 4,
        "crashes plus one refusal per append"
    );
}

/// Engine bug found by this checker (reported, not fixed here): when the store refuses the
/// `step_retrying` append of an action attempt, `store_failure` poisons the run and hands
/// the step a `store` error, which `ctx/step.rs` then records as the step's outcome
/// (`step_failed {kind: "store"}`) once the store works again. Every later execution
/// replays that error and exits with `EngineError::Store`: the run stays `running` forever.
#[test]
fn a_refused_retry_record_leaves_the_run_resumable() {
    crash::check_plans(
        &parcel,
        Parcel { id: 6 },
        signed(),
        [CrashPlan::FailAppend(1)],
    )
    .unwrap_or_else(|failure| panic!("{failure}"));
}

/// The same engine bug through a sub-workflow: the refused append of an inner step's
/// record fails the sub-workflow, whose step then records `step_failed {kind: "store"}`.
#[test]
fn a_refused_record_inside_a_sub_workflow_leaves_the_run_resumable() {
    let config = CheckConfig::default();
    crash::check_plans(
        &retried,
        Parcel { id: 6 },
        config,
        [CrashPlan::FailAppend(1)],
    )
    .unwrap_or_else(|failure| panic!("{failure}"));
}

#[tokio::test]
async fn the_checker_also_runs_from_an_async_test() {
    let report = crash::check(
        &dispatch,
        Parcel { id: 11 },
        CheckConfig::default().cases(8),
    )
    .unwrap_or_else(|failure| panic!("{failure}"));
    assert_eq!(report.cases, 8);
}
