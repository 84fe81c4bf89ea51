//! The store conformance suite: the contract of `reprise::store::Store`, checked against
//! every implementation.
//!
//! Each check is an `async fn(SharedStore)` below. `conformance_suite!` stamps out one
//! `#[tokio::test]` per check and per store, from a *factory*: an `async fn() -> Fixture`
//! that returns a fresh, empty store plus whatever must outlive it (a temp dir, a
//! throw-away database). To run the suite against a new store (e.g. Postgres), write
//! its factory and add one line to the `conformance_suite!` call.
//!
//! Timestamps in the checks have microsecond precision: the contract keeps times to the
//! microsecond (SQLite and Postgres store no finer).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use reprise::EngineError;
use reprise::event::EventPayload;
use reprise::event::{
    Event, EventKind, NewEvent, RunFilter, RunId, RunRecord, RunStatus, RunUpdate, Trigger,
};
use reprise::message::{EmittedEvent, Message, NewMessage, Posted};
use reprise::queue::{
    ClaimRequest, DebouncePolicy, Gated, Queue, Routing, RunQueue, StartGate, WorkerInfo,
};
use reprise::store::{
    Acquired, Append, Lease, MemoryStore, PurgeFilter, SharedStore, StoreErrorKind,
};
use reprise::tags::{TagFilter, TagOp, TagValue};
use serde_json::{Value, json};

/// A store under test and what must live as long as it does.
pub(crate) struct Fixture {
    pub(crate) store: SharedStore,
    /// More handles onto the same data, each opened on its own as another process would
    /// (SQLite: another connection set and writer on the file; Postgres: another pool;
    /// memory: the same store, there is no other way in). For checks that race handles.
    pub(crate) handles: Vec<SharedStore>,
    /// Dropped after the store (fields drop in order): a temp dir, a database, ….
    _guard: Box<dyn std::any::Any + Send>,
}

impl Fixture {
    pub(crate) fn new(store: SharedStore, guard: impl std::any::Any + Send) -> Self {
        Self {
            handles: vec![store.clone()],
            store,
            _guard: Box::new(guard),
        }
    }

    fn with_handles(mut self, handles: Vec<SharedStore>) -> Self {
        self.handles = handles;
        self
    }
}

/// How many handles the racing checks use.
const HANDLES: usize = 3;

/// Factory: a fresh [`MemoryStore`].
async fn memory_store() -> Fixture {
    let store: SharedStore = Arc::new(MemoryStore::new());
    Fixture::new(store.clone(), ()).with_handles(vec![store; HANDLES])
}

/// Factory: a fresh [`reprise::store::SqliteStore`] in a temp dir.
#[cfg(feature = "sqlite")]
async fn sqlite_store() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("reprise.db");
    let store = reprise::store::SqliteStore::open(&path).expect("open SQLite store");
    let handles = (0..HANDLES)
        .map(|_| {
            Arc::new(reprise::store::SqliteStore::open(&path).expect("open SQLite store"))
                as SharedStore
        })
        .collect();
    Fixture::new(Arc::new(store), dir).with_handles(handles)
}

/// Factory: a fresh [`reprise::store::PostgresStore`] in a schema of its own (dropped
/// afterwards), or `None` — the check is skipped with a notice — when
/// `REPRISE_TEST_POSTGRES_URL` is unset.
#[cfg(feature = "postgres")]
async fn postgres_store() -> Option<Fixture> {
    let (store, schema) = crate::postgres::fresh_store().await?;
    let mut handles: Vec<SharedStore> = Vec::new();
    for _ in 0..HANDLES {
        handles.push(Arc::new(crate::postgres::another_handle(&schema).await));
    }
    Some(Fixture::new(Arc::new(store), schema).with_handles(handles))
}

/// Stamps out one `#[tokio::test]` per check for each `module => factory` pair. A factory
/// returns a `Fixture`, or an `Option<Fixture>` whose `None` skips the check (a store
/// whose server is not configured).
macro_rules! conformance_suite {
    ($($(#[$meta:meta])* $module:ident => $factory:ident),* $(,)?) => {
        $(
            $(#[$meta])*
            mod $module {
                conformance_suite!(@tests $factory;
                    create_and_get,
                    unknown_run,
                    duplicate_create_fails,
                    append_numbers_events_in_order,
                    first_seq_mismatch_conflicts_and_writes_nothing,
                    append_writes_events_and_update_together,
                    run_update_fields,
                    list_runs_filters_and_orders,
                    events_round_trip_exactly,
                    concurrent_appends_to_many_runs_all_land,
                    racing_appends_have_one_winner,
                    reads_never_see_half_an_append,
                    claim_due_leases_each_run_once,
                    which_runs_are_due,
                    run_counts_count_runs_and_due_ones_by_workflow_and_status,
                    expired_leases_are_reclaimed_and_fence_out_the_old_holder,
                    acquire_respects_live_leases,
                    renew_and_release,
                    a_releasing_append_gives_the_lease_back_with_its_write,
                    a_stale_releasing_append_is_fenced_out,
                    a_release_without_a_fence_is_refused,
                    concurrent_releasing_appends_all_land_and_release,
                    cancel_requests_reach_the_lease_holder,
                    create_run_once_creates_one_run_per_key,
                    cursors_round_trip,
                    documents_round_trip_by_mode_and_prefix,
                    concurrent_document_creations_have_one_winner,
                    next_wake_is_the_earliest_due_time,
                    concurrent_claims_never_share_a_run,
                    triage_reads_the_row_and_counts_trailing_deferrals,
                    healthy_listings_skip_nothing,
                    pause_requests_reach_the_lease_holder,
                    paused_runs_are_never_due,
                    runs_of_a_paused_workflow_are_not_claimed,
                    schedules_round_trip,
                    schedule_creation_is_atomic_and_pause_rows_are_upserted,
                    create_run_with_events_writes_the_whole_prefix,
                    purge_deletes_only_ended_runs_with_their_rows,
                    purge_batches_are_bounded_and_oldest_first,
                    purge_never_deletes_a_run_made_unfinished_concurrently,
                    a_purged_runs_tags_go_with_it,
                    tags_copied_into_a_fork_are_indexed,
                    tags_are_indexed_with_their_append,
                    tag_filters_compare_by_type_and_range,
                    time_ranges_filter_created_and_updated,
                    cursor_pages_have_no_duplicates_or_gaps,
                    malformed_tag_filters_and_cursors_are_refused,
                    concurrent_tagged_appends_are_all_indexed,
                    inbox_messages_are_numbered_per_run_and_read_after_a_seq,
                    a_duplicate_message_returns_the_earlier_seq_and_writes_nothing,
                    a_post_wakes_a_waiting_run_and_no_other,
                    posts_and_keys_to_an_unknown_run_fail,
                    inbox_seen_requeues_a_waiting_run_only_for_a_newer_message,
                    concurrent_posts_to_one_run_get_distinct_gapless_seqs,
                    event_waits_are_listed_oldest_first_until_removed,
                    emitted_events_are_recorded_once_per_name_and_id,
                    run_keys_are_read_and_repointed,
                    purge_removes_a_runs_inbox_and_event_waits,
                    a_post_racing_a_suspension_always_leaves_the_run_queued,
                    queue_columns_round_trip,
                    claim_admits_queue_runs_only_by_known_settings,
                    key_concurrency_holds_until_the_run_ends,
                    queue_concurrency_and_priority_order,
                    rate_limits_count_a_sliding_window,
                    per_key_rate_limits_count_each_key,
                    routing_claims_only_served_workflows_and_queues,
                    queue_totals_count_active_runs_of_the_queue_and_key,
                    dedup_gates_return_the_unfinished_holder,
                    debounce_replace_cancels_the_pending_run,
                    debounce_drop_keeps_the_first_pending_run,
                    racing_gated_starts_create_one_run,
                    workers_register_renew_and_expire,
                    list_runs_filters_by_queue,
                    a_claim_of_one_run_admits_it_alone_or_nothing,
                    a_stale_claim_never_stamps_an_admission_before_a_counted_one,
                    step_permits_are_a_sliding_window_with_the_next_free_time,
                    step_permits_per_key_count_each_key_alone,
                    racing_step_permit_takers_never_exceed_the_window,
                    step_permits_of_a_queue_without_a_step_limit_are_free;
                    fixture: concurrent_claims_never_run_two_of_one_key,
                );
            }
        )*
    };
    (@tests $factory:ident; $($check:ident),* ; fixture: $($fcheck:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let Some(fixture) = Option::<super::Fixture>::from(super::$factory().await)
                else {
                    return;
                };
                super::$check(fixture.store.clone()).await;
            }
        )*
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $fcheck() {
                let Some(fixture) = Option::<super::Fixture>::from(super::$factory().await)
                else {
                    return;
                };
                super::$fcheck(&fixture).await;
            }
        )*
    };
}

conformance_suite! {
    memory => memory_store,
    #[cfg(feature = "sqlite")]
    sqlite => sqlite_store,
    #[cfg(feature = "postgres")]
    postgres => postgres_store,
}

// ---------------------------------------------------------------------------------------
// Helpers

/// A time `micros` µs after a fixed instant (2026-09-21), microsecond precise.
fn t(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(1_790_000_000_123_456 + micros).expect("valid time")
}

fn record(id: &str, workflow: &str, created_at: DateTime<Utc>) -> RunRecord {
    RunRecord {
        id: RunId::from(id),
        workflow: workflow.to_owned(),
        status: RunStatus::Queued,
        input: json!({ "id": id, "n": 1 }),
        output: None,
        error: None,
        attempt: 0,
        trigger: Trigger::Api,
        created_at,
        updated_at: created_at,
        wake_at: None,
        next_seq: 1,
        queue: None,
    }
}

fn created_event(record: &RunRecord) -> NewEvent {
    NewEvent {
        kind: EventKind::RunCreated,
        correlation_id: None,
        attempt: 0,
        at: record.created_at,
        payload: json!({
            "workflow": record.workflow,
            "input": record.input,
            "trigger": record.trigger.as_str(),
        }),
    }
}

fn event(
    kind: EventKind,
    correlation_id: Option<&str>,
    at: DateTime<Utc>,
    payload: Value,
) -> NewEvent {
    NewEvent {
        kind,
        correlation_id: correlation_id.map(str::to_owned),
        attempt: 1,
        at,
        payload,
    }
}

/// Creates a queued run of `workflow` created at `created_at`; returns its record.
async fn create(
    store: &SharedStore,
    id: &str,
    workflow: &str,
    created_at: DateTime<Utc>,
) -> RunRecord {
    let record = record(id, workflow, created_at);
    store
        .create_run(record.clone(), created_event(&record))
        .await
        .expect("create_run");
    record
}

fn append(run: &RunRecord, first_seq: u64, events: Vec<NewEvent>, update: RunUpdate) -> Append {
    Append {
        run_id: run.id.clone(),
        first_seq,
        events,
        update,
        fence: None,
        release: false,
    }
}

/// The log a store should hold for `run`: its `run_created` event, then `events`, numbered
/// from 0.
fn log_of(run: &RunRecord, events: Vec<NewEvent>) -> Vec<Event> {
    std::iter::once(created_event(run))
        .chain(events)
        .enumerate()
        .map(|(seq, event)| Event {
            run_id: run.id.clone(),
            seq: seq as u64,
            event,
        })
        .collect()
}

async fn get(store: &SharedStore, id: &RunId) -> RunRecord {
    store.run(id).await.expect("run").expect("the run exists")
}

fn ids(runs: &[RunRecord]) -> Vec<&str> {
    runs.iter().map(|r| r.id.as_str()).collect()
}

// ---------------------------------------------------------------------------------------
// The checks

async fn create_and_get(store: SharedStore) {
    let record = create(&store, "run-1", "signup", t(0)).await;
    assert_eq!(get(&store, &record.id).await, record);
    let events = store.events(&record.id).await.expect("events");
    assert_eq!(
        events,
        vec![Event {
            run_id: record.id.clone(),
            seq: 0,
            event: created_event(&record)
        }]
    );
}

async fn unknown_run(store: SharedStore) {
    let missing = RunId::from("no-such-run");
    assert_eq!(store.run(&missing).await.expect("run"), None);
    assert_eq!(store.events(&missing).await.expect("events"), vec![]);
    let missing_record = record("no-such-run", "signup", t(0));
    let err = store
        .append(append(
            &missing_record,
            1,
            vec![event(EventKind::RunStarted, None, t(1), json!({}))],
            RunUpdate::default(),
        ))
        .await
        .expect_err("append to an unknown run must fail");
    assert!(
        matches!(&err, EngineError::UnknownRun(id) if id == "no-such-run"),
        "{err:?}"
    );
    assert_eq!(store.run(&missing).await.expect("run"), None);
}

async fn duplicate_create_fails(store: SharedStore) {
    let original = create(&store, "run-1", "signup", t(0)).await;
    let mut again = record("run-1", "other", t(5));
    again.input = json!("different");
    let err = store
        .create_run(again.clone(), created_event(&again))
        .await
        .expect_err("a second create with the same id must fail");
    assert!(err.to_string().contains("run-1"), "{err}");
    // The original is untouched.
    assert_eq!(get(&store, &original.id).await, original);
    assert_eq!(store.events(&original.id).await.expect("events").len(), 1);
    assert_eq!(
        store
            .list_runs(&RunFilter::default())
            .await
            .expect("list")
            .len(),
        1
    );
}

async fn append_numbers_events_in_order(store: SharedStore) {
    let run = create(&store, "run-1", "signup", t(0)).await;
    let first = vec![
        event(EventKind::RunStarted, None, t(1), json!({})),
        event(
            EventKind::StepStarted,
            Some("a#0"),
            t(2),
            json!({ "callee": "a" }),
        ),
    ];
    store
        .append(append(&run, 1, first.clone(), RunUpdate::default()))
        .await
        .expect("append 1");
    assert_eq!(get(&store, &run.id).await.next_seq, 3);
    let second = vec![
        event(
            EventKind::StepCompleted,
            Some("a#0"),
            t(3),
            json!({ "output": 1 }),
        ),
        event(
            EventKind::StepStarted,
            Some("b#0"),
            t(4),
            json!({ "callee": "b" }),
        ),
        event(
            EventKind::StepCompleted,
            Some("b#0"),
            t(5),
            json!({ "output": 2 }),
        ),
    ];
    store
        .append(append(&run, 3, second.clone(), RunUpdate::default()))
        .await
        .expect("append 2");
    assert_eq!(get(&store, &run.id).await.next_seq, 6);

    let events = store.events(&run.id).await.expect("events");
    let expected: Vec<NewEvent> = std::iter::once(created_event(&run))
        .chain(first)
        .chain(second)
        .collect();
    assert_eq!(events.len(), expected.len());
    for (seq, (got, want)) in events.iter().zip(expected).enumerate() {
        assert_eq!(got.seq, seq as u64);
        assert_eq!(got.run_id, run.id);
        assert_eq!(got.event, want);
    }
}

async fn first_seq_mismatch_conflicts_and_writes_nothing(store: SharedStore) {
    let run = create(&store, "run-1", "signup", t(0)).await;
    store
        .append(append(
            &run,
            1,
            vec![event(EventKind::RunStarted, None, t(1), json!({}))],
            RunUpdate::default(),
        ))
        .await
        .expect("append");
    let before = get(&store, &run.id).await;
    let events_before = store.events(&run.id).await.expect("events");

    for stale in [0, 1, 3, 100] {
        let update = RunUpdate {
            status: Some(RunStatus::Completed),
            attempt: Some(9),
            output: Some(json!("stale")),
            error: Some(json!("stale")),
            wake_at: Some(Some(t(99))),
            inbox_seen: None,
        };
        let err = store
            .append(append(
                &run,
                stale,
                vec![event(EventKind::RunCompleted, None, t(2), json!({}))],
                update,
            ))
            .await
            .expect_err("a stale first_seq must conflict");
        match err {
            EngineError::Conflict {
                run: id,
                expected,
                found,
            } => {
                assert_eq!(id, "run-1");
                assert_eq!(expected, stale);
                assert_eq!(found, 2);
            }
            other => panic!("expected Conflict, got {other:?}"),
        }
        assert_eq!(
            get(&store, &run.id).await,
            before,
            "first_seq {stale}: record changed"
        );
        assert_eq!(
            store.events(&run.id).await.expect("events"),
            events_before,
            "first_seq {stale}: events changed"
        );
    }
}

async fn append_writes_events_and_update_together(store: SharedStore) {
    let run = create(&store, "run-1", "signup", t(0)).await;
    let update = RunUpdate {
        status: Some(RunStatus::Completed),
        attempt: Some(1),
        output: Some(json!({ "brief": "hi" })),
        ..RunUpdate::default()
    };
    let events = vec![
        event(EventKind::RunStarted, None, t(1), json!({})),
        event(
            EventKind::RunCompleted,
            None,
            t(2),
            json!({ "output": { "brief": "hi" } }),
        ),
    ];
    store
        .append(append(&run, 1, events, update))
        .await
        .expect("append");
    let after = get(&store, &run.id).await;
    assert_eq!(after.status, RunStatus::Completed);
    assert_eq!(after.output, Some(json!({ "brief": "hi" })));
    assert_eq!(after.next_seq, 3);
    // `updated_at` is the time of the append's last event.
    assert_eq!(after.updated_at, t(2));
    assert_eq!(store.events(&run.id).await.expect("events").len(), 3);
}

async fn run_update_fields(store: SharedStore) {
    let run = create(&store, "run-1", "signup", t(0)).await;
    let mut seq = 1;
    let mut apply = async |at: i64, update: RunUpdate| {
        let events = vec![event(EventKind::RunSuspended, None, t(at), json!({}))];
        store
            .append(append(&run, seq, events, update))
            .await
            .expect("append");
        seq += 1;
        get(&store, &run.id).await
    };

    let r = apply(
        10,
        RunUpdate {
            status: Some(RunStatus::Running),
            attempt: Some(1),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        (r.status, r.attempt, r.updated_at),
        (RunStatus::Running, 1, t(10))
    );
    assert_eq!(
        (r.output.clone(), r.error.clone(), r.wake_at),
        (None, None, None)
    );
    assert_eq!(r.created_at, t(0));
    assert_eq!(r.input, run.input);
    assert_eq!(r.trigger, run.trigger);
    assert_eq!(r.workflow, run.workflow);

    let r = apply(
        20,
        RunUpdate {
            status: Some(RunStatus::Sleeping),
            wake_at: Some(Some(t(5_000_000))),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        (r.status, r.wake_at, r.attempt),
        (RunStatus::Sleeping, Some(t(5_000_000)), 1)
    );

    // `None` leaves every field alone.
    let r = apply(30, RunUpdate::default()).await;
    assert_eq!(
        (r.status, r.wake_at, r.attempt, r.updated_at),
        (RunStatus::Sleeping, Some(t(5_000_000)), 1, t(30))
    );

    // `Some(None)` clears the wake time.
    let r = apply(
        40,
        RunUpdate {
            status: Some(RunStatus::Running),
            wake_at: Some(None),
            ..Default::default()
        },
    )
    .await;
    assert_eq!((r.status, r.wake_at), (RunStatus::Running, None));

    let r = apply(
        50,
        RunUpdate {
            error: Some(json!({ "kind": "transient", "message": "boom" })),
            attempt: Some(2),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        r.error,
        Some(json!({ "kind": "transient", "message": "boom" }))
    );
    assert_eq!(r.attempt, 2);

    let r = apply(
        60,
        RunUpdate {
            status: Some(RunStatus::Completed),
            output: Some(json!(null)),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(r.status, RunStatus::Completed);
    // A JSON `null` output is a value, not "no output".
    assert_eq!(r.output, Some(Value::Null));
    // Setting the output does not clear the error, and vice versa.
    assert_eq!(
        r.error,
        Some(json!({ "kind": "transient", "message": "boom" }))
    );
    assert_eq!(r.next_seq, 7);

    // An append without events only updates the record.
    store
        .append(append(
            &run,
            7,
            vec![],
            RunUpdate {
                status: Some(RunStatus::Failed),
                ..Default::default()
            },
        ))
        .await
        .expect("append without events");
    let r = get(&store, &run.id).await;
    assert_eq!((r.status, r.next_seq, r.attempt), (RunStatus::Failed, 7, 2));
    assert_eq!(store.events(&run.id).await.expect("events").len(), 7);
}

/// `Store::triage`: the plain columns of a run row and how many `run_deferred` events end
/// its log (the strikes of a run the engine cannot execute).
async fn triage_reads_the_row_and_counts_trailing_deferrals(store: SharedStore) {
    assert_eq!(
        store.triage(&RunId::from("nope")).await.expect("triage"),
        None
    );
    let run = create(&store, "run-1", "signup", t(0)).await;
    let triage = store
        .triage(&run.id)
        .await
        .expect("triage")
        .expect("the run");
    assert_eq!(triage.next_seq, 1);
    assert_eq!(triage.status, Some(RunStatus::Queued));
    assert_eq!(triage.workflow, "signup");
    assert_eq!(triage.attempt, 0);
    assert_eq!(triage.deferrals, 0);
    let deferred = |strike: u32, at: i64| {
        event(
            EventKind::RunDeferred,
            None,
            t(at),
            json!({ "reason": "no workflow", "strike": strike, "wake_at": t(at + 10) }),
        )
    };
    let queued_later = RunUpdate {
        status: Some(RunStatus::Queued),
        wake_at: Some(Some(t(100))),
        ..RunUpdate::default()
    };
    store
        .append(append(
            &run,
            1,
            vec![deferred(1, 1), deferred(2, 2)],
            queued_later.clone(),
        ))
        .await
        .expect("append");
    let triage = store.triage(&run.id).await.expect("triage").expect("run");
    assert_eq!((triage.next_seq, triage.deferrals), (3, 2));
    // Any other event starts the count afresh.
    store
        .append(append(
            &run,
            3,
            vec![event(EventKind::RunStarted, None, t(3), json!({}))],
            RunUpdate::default(),
        ))
        .await
        .expect("append");
    let triage = store.triage(&run.id).await.expect("triage").expect("run");
    assert_eq!((triage.next_seq, triage.deferrals), (4, 0));
    store
        .append(append(&run, 4, vec![deferred(1, 4)], queued_later))
        .await
        .expect("append");
    let triage = store.triage(&run.id).await.expect("triage").expect("run");
    assert_eq!((triage.next_seq, triage.deferrals), (5, 1));
    // Another run's deferrals are its own.
    let other = create(&store, "run-2", "signup", t(5)).await;
    let triage = store.triage(&other.id).await.expect("triage").expect("run");
    assert_eq!((triage.next_seq, triage.deferrals), (1, 0));
}

/// `Store::list_runs_with_skipped` lists what `list_runs` lists and, with no bad row,
/// skips nothing.
async fn healthy_listings_skip_nothing(store: SharedStore) {
    create(&store, "a", "alpha", t(1)).await;
    create(&store, "b", "beta", t(2)).await;
    for filter in [
        RunFilter::default(),
        RunFilter {
            workflow: Some("beta".to_owned()),
            ..RunFilter::default()
        },
        RunFilter {
            limit: Some(1),
            ..RunFilter::default()
        },
    ] {
        let listing = store
            .list_runs_with_skipped(&filter)
            .await
            .expect("listing");
        assert_eq!(
            listing.runs,
            store.list_runs(&filter).await.expect("list_runs")
        );
        assert_eq!(listing.skipped, vec![]);
    }
}

async fn list_runs_filters_and_orders(store: SharedStore) {
    let a = create(&store, "a", "alpha", t(1)).await;
    create(&store, "b", "beta", t(2)).await;
    let c = create(&store, "c", "alpha", t(3)).await;
    create(&store, "d", "beta", t(4)).await;
    let e = create(&store, "e", "alpha", t(5)).await;
    let running = RunUpdate {
        status: Some(RunStatus::Running),
        ..Default::default()
    };
    store
        .append(append(&c, 1, vec![], running))
        .await
        .expect("append");
    let done = RunUpdate {
        status: Some(RunStatus::Completed),
        ..Default::default()
    };
    store
        .append(append(&e, 1, vec![], done))
        .await
        .expect("append");

    let list = async |status: Option<RunStatus>, workflow: Option<&str>, limit: Option<usize>| {
        let filter = RunFilter {
            status,
            workflow: workflow.map(str::to_owned),
            limit,
            ..RunFilter::default()
        };
        store.list_runs(&filter).await.expect("list_runs")
    };

    let all = list(None, None, None).await;
    assert_eq!(ids(&all), ["e", "d", "c", "b", "a"]);
    for listed in &all {
        assert_eq!(
            &get(&store, &listed.id).await,
            listed,
            "listing and get agree"
        );
    }
    assert_eq!(all[4], a);
    assert_eq!(
        ids(&list(Some(RunStatus::Queued), None, None).await),
        ["d", "b", "a"]
    );
    assert_eq!(ids(&list(None, Some("alpha"), None).await), ["e", "c", "a"]);
    assert_eq!(
        ids(&list(Some(RunStatus::Running), Some("alpha"), None).await),
        ["c"]
    );
    assert_eq!(
        ids(&list(Some(RunStatus::Running), Some("beta"), None).await),
        Vec::<&str>::new()
    );
    assert_eq!(ids(&list(None, None, Some(2)).await), ["e", "d"]);
    assert_eq!(ids(&list(None, Some("alpha"), Some(1)).await), ["e"]);
    assert_eq!(
        ids(&list(Some(RunStatus::Queued), Some("beta"), Some(10)).await),
        ["d", "b"]
    );
    assert_eq!(
        ids(&list(None, Some("nope"), None).await),
        Vec::<&str>::new()
    );
    assert_eq!(ids(&list(None, None, Some(0)).await), Vec::<&str>::new());
}

async fn events_round_trip_exactly(store: SharedStore) {
    let mut run = record("run-ü", "signup-pipeline", t(0));
    run.input = json!({ "name": "Ada ✓ \"quoted\" \n newline", "email": "ada@example.com" });
    run.trigger = Trigger::Webhook;
    run.attempt = 3;
    run.output = Some(json!([1, 2]));
    run.error = Some(json!({ "kind": "x" }));
    run.wake_at = Some(t(-1));
    run.updated_at = t(7);
    run.status = RunStatus::Waiting;
    store
        .create_run(run.clone(), created_event(&run))
        .await
        .expect("create");
    assert_eq!(
        get(&store, &run.id).await,
        run,
        "every field of the record round-trips"
    );

    let payloads = [
        json!({
            "callee": "research-signup",
            "input": { "nested": [1, 2.5, -0.25, null, true, "x", { "deep": [[]] }], "empty": {} },
            "big": u64::MAX,
            "negative": i64::MIN,
            "unicode": "日本語 🚀 \u{0000} \\",
        }),
        Value::Null,
        json!("just a string"),
        json!([]),
        json!({}),
        json!(12345),
    ];
    let times = [
        t(1),
        DateTime::from_timestamp_micros(0).expect("epoch"),
        DateTime::from_timestamp_micros(-1).expect("just before the epoch"),
        DateTime::from_timestamp_micros(4_102_444_800_000_001).expect("2100"),
        t(999_999),
        t(1_000_000),
    ];
    let correlation_ids = [
        Some("research-signup#0"),
        None,
        Some("enrich-lead#0/score-lead#12"),
        Some(""),
        None,
        Some("notify@2#3"),
    ];
    let kinds = [
        EventKind::StepStarted,
        EventKind::StepCompleted,
        EventKind::HookCreated,
        EventKind::SleepStarted,
        EventKind::RunSuspended,
        EventKind::RunCanceled,
    ];
    let new_events: Vec<NewEvent> = (0..payloads.len())
        .map(|i| NewEvent {
            kind: kinds[i],
            correlation_id: correlation_ids[i].map(str::to_owned),
            attempt: [1, 0, u32::MAX, 2, 7, 1][i],
            at: times[i],
            payload: payloads[i].clone(),
        })
        .collect();
    store
        .append(append(&run, 1, new_events.clone(), RunUpdate::default()))
        .await
        .expect("append");

    let events = store.events(&run.id).await.expect("events");
    let expected = log_of(&run, new_events);
    assert_eq!(events, expected);
}

async fn concurrent_appends_to_many_runs_all_land(store: SharedStore) {
    const RUNS: usize = 24;
    const APPENDS: u64 = 25;
    let mut records = Vec::new();
    for i in 0..RUNS {
        records.push(create(&store, &format!("run-{i:02}"), "many", t(i as i64)).await);
    }
    let tasks: Vec<_> = records
        .iter()
        .cloned()
        .map(|run| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 0..APPENDS {
                    let first_seq = 1 + 2 * n;
                    let cid = format!("step#{n}");
                    let events = vec![
                        event(
                            EventKind::StepStarted,
                            Some(&cid),
                            t(n as i64),
                            json!({ "run": run.id, "n": n }),
                        ),
                        event(
                            EventKind::StepCompleted,
                            Some(&cid),
                            t(n as i64),
                            json!({ "output": n }),
                        ),
                    ];
                    let update = RunUpdate {
                        attempt: Some(n as u32),
                        ..Default::default()
                    };
                    store
                        .append(append(&run, first_seq, events, update))
                        .await
                        .expect("concurrent append");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("append task");
    }
    for run in &records {
        let events = store.events(&run.id).await.expect("events");
        assert_eq!(events.len() as u64, 1 + 2 * APPENDS, "{}", run.id);
        for (seq, e) in events.iter().enumerate().skip(1) {
            let n = (seq as u64 - 1) / 2;
            assert_eq!(e.seq, seq as u64);
            assert_eq!(
                e.event.correlation_id.as_deref(),
                Some(format!("step#{n}").as_str())
            );
            if e.event.kind == EventKind::StepStarted {
                assert_eq!(e.event.payload, json!({ "run": run.id, "n": n }));
            }
        }
        let record = get(&store, &run.id).await;
        assert_eq!(record.next_seq, 1 + 2 * APPENDS);
        assert_eq!(u64::from(record.attempt), APPENDS - 1);
    }
}

async fn racing_appends_have_one_winner(store: SharedStore) {
    const RUNS: usize = 16;
    const RACERS: usize = 3;
    let mut tasks = Vec::new();
    let mut records = Vec::new();
    for i in 0..RUNS {
        let run = create(&store, &format!("run-{i:02}"), "race", t(i as i64)).await;
        for racer in 0..RACERS {
            let store = store.clone();
            let run = run.clone();
            tasks.push(tokio::spawn(async move {
                let events = vec![
                    event(EventKind::RunStarted, None, t(1), json!({ "racer": racer })),
                    event(
                        EventKind::StepStarted,
                        Some("s#0"),
                        t(2),
                        json!({ "racer": racer }),
                    ),
                ];
                let update = RunUpdate {
                    attempt: Some(racer as u32 + 1),
                    ..Default::default()
                };
                (
                    run.id.clone(),
                    racer,
                    store.append(append(&run, 1, events, update)).await,
                )
            }));
        }
        records.push(run);
    }
    let mut winners = std::collections::HashMap::new();
    for task in tasks {
        let (id, racer, result) = task.await.expect("racer task");
        match result {
            Ok(()) => assert!(
                winners.insert(id.clone(), racer).is_none(),
                "two winners for {id}"
            ),
            Err(EngineError::Conflict {
                run,
                expected,
                found,
            }) => {
                assert_eq!((run.as_str(), expected, found), (id.as_str(), 1, 3));
            }
            Err(other) => panic!("expected Ok or Conflict, got {other:?}"),
        }
    }
    assert_eq!(winners.len(), RUNS);
    for run in &records {
        let winner = winners[&run.id];
        let events = store.events(&run.id).await.expect("events");
        assert_eq!(events.len(), 3);
        assert!(
            events[1..]
                .iter()
                .all(|e| e.event.payload == json!({ "racer": winner }))
        );
        assert_eq!(get(&store, &run.id).await.attempt, winner as u32 + 1);
    }
}

async fn reads_never_see_half_an_append(store: SharedStore) {
    const APPENDS: u64 = 40;
    let run = create(&store, "run-1", "atomic", t(0)).await;
    let writer = {
        let store = store.clone();
        let run = run.clone();
        tokio::spawn(async move {
            for n in 0..APPENDS {
                let events = (0..3)
                    .map(|k| {
                        event(
                            EventKind::StepCompleted,
                            Some(&format!("s#{n}")),
                            t(k),
                            json!(k),
                        )
                    })
                    .collect();
                let update = RunUpdate {
                    attempt: Some(n as u32 + 1),
                    ..Default::default()
                };
                store
                    .append(append(&run, 1 + 3 * n, events, update))
                    .await
                    .expect("append");
            }
        })
    };
    loop {
        let finished = writer.is_finished();
        let events = store.events(&run.id).await.expect("events");
        assert_eq!(
            (events.len() - 1) % 3,
            0,
            "saw {} events: half an append",
            events.len()
        );
        let record = get(&store, &run.id).await;
        assert_eq!(
            (record.next_seq - 1) % 3,
            0,
            "record next_seq {} is mid-append",
            record.next_seq
        );
        assert_eq!(
            u64::from(record.attempt),
            (record.next_seq - 1) / 3,
            "record update and events disagree"
        );
        if finished {
            assert_eq!(events.len() as u64, 1 + 3 * APPENDS);
            break;
        }
        tokio::task::yield_now().await;
    }
    writer.await.expect("writer");
}

// ---------------------------------------------------------------------------------------
// SQLite only: durability across reopen, migrations, corrupt rows.

#[cfg(feature = "sqlite")]
mod sqlite_only {
    use std::path::Path;

    use reprise::store::SqliteStore;

    use super::*;

    /// Posts to one run from two processes (two stores on one file) are numbered in
    /// commit order: distinct seqs 1..=N, no gap, each stored under the seq returned.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn posts_from_two_processes_are_numbered_without_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reprise.db");
        let one: SharedStore = Arc::new(SqliteStore::open(&path).unwrap());
        let two: SharedStore = Arc::new(SqliteStore::open(&path).unwrap());
        create(&one, "shared", "wf", t(0)).await;
        let posters: Vec<_> = [one.clone(), two.clone(), one.clone(), two.clone()]
            .into_iter()
            .enumerate()
            .map(|(task, store)| {
                tokio::spawn(async move {
                    let mut seqs = Vec::new();
                    for i in 0..10u64 {
                        let n = task as u64 * 10 + i;
                        let posted = store
                            .post_message(message("shared", "signal:n", json!(n), None, 1))
                            .await
                            .expect("post");
                        seqs.push((posted.seq, n));
                    }
                    seqs
                })
            })
            .collect();
        let mut posted = Vec::new();
        for poster in posters {
            posted.extend(poster.await.unwrap());
        }
        posted.sort_unstable();
        let stored: Vec<(u64, u64)> = two
            .messages(&RunId::from("shared"), 0)
            .await
            .unwrap()
            .iter()
            .map(|m| (m.seq, m.payload.as_u64().unwrap()))
            .collect();
        assert_eq!(stored, posted);
        assert_eq!(
            stored.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
            (1..=40).collect::<Vec<_>>()
        );
    }

    /// A database of schema version 7 (before the run inbox) is migrated on open: its runs
    /// are kept, and they can receive messages.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_older_database_gains_the_inbox_tables() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reprise.db");
        {
            let store: SharedStore = Arc::new(SqliteStore::open(&path).unwrap());
            create(&store, "before", "wf", t(0)).await;
        }
        {
            // Back to version 7: as a build without the inbox (and without flow
            // control, version 9, and its listing index, version 11) left it.
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(
                "DROP TABLE messages; DROP TABLE event_waits; DROP TABLE emitted_events;
                 DROP TABLE workers; DROP TABLE documents; DROP INDEX runs_queue_created_at;
                 DROP INDEX runs_queue_waiting; DROP INDEX runs_queue_active;
                 DROP INDEX runs_queue_admitted_at; DROP INDEX runs_queue_admitted;
                 DROP INDEX runs_due;
                 ALTER TABLE runs DROP COLUMN queue; ALTER TABLE runs DROP COLUMN queue_key;
                 ALTER TABLE runs DROP COLUMN priority;
                 ALTER TABLE runs DROP COLUMN admitted_at;
                 CREATE INDEX runs_due ON runs (due_at) WHERE due_at IS NOT NULL;
                 DROP TABLE step_permits;
                 DELETE FROM schema_migrations WHERE version >= 8;",
            )
            .unwrap();
        }
        let store: SharedStore = Arc::new(SqliteStore::open(&path).unwrap());
        assert_eq!(SqliteStore::SCHEMA_VERSION, 13);
        assert_eq!(
            get(&store, &RunId::from("before")).await.queue,
            None,
            "an old run is in no queue"
        );
        let claimed = store
            .claim_due("w", t(secs(10)), t(secs(40)), 10)
            .await
            .unwrap();
        assert_eq!(leased_ids(&claimed), ["before"], "and is claimed as before");
        let posted = store
            .post_message(message("before", "signal:go", json!(1), None, 1))
            .await
            .unwrap();
        assert_eq!(posted.seq, 1);
        assert!(
            store
                .record_event(&EmittedEvent {
                    name: "e".into(),
                    id: "1".into(),
                    data: json!(null),
                    at: t(1),
                })
                .await
                .unwrap()
        );
    }

    /// A database whose events are clustered by `(run_id, seq)` (schema version 9) is
    /// migrated to the insertion-ordered events table on open (version 10): every run's
    /// log reads back the same, appends go on at the next seq, a duplicate seq is still
    /// refused, and tags appended afterwards are indexed (the trigger is recreated).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_version_9_database_keeps_its_logs_in_the_new_events_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reprise.db");
        let a;
        let b;
        {
            let store: SharedStore = Arc::new(SqliteStore::open(&path).unwrap());
            a = create(&store, "a", "wf", t(0)).await;
            b = create(&store, "b", "wf", t(1)).await;
            for (run, n) in [(&a, 3u64), (&b, 2)] {
                for seq in 1..=n {
                    store
                        .append(append(
                            run,
                            seq,
                            vec![event(EventKind::StepCompleted, Some("s"), t(2), json!(seq))],
                            RunUpdate::default(),
                        ))
                        .await
                        .unwrap();
                }
            }
        }
        {
            // Back to version 9: the events table as versions 1 to 9 made it (and no
            // queue listing index, version 12, nor step permits, version 13).
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE events_v9 (
                     run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
                     seq INTEGER NOT NULL, kind TEXT NOT NULL, correlation_id TEXT,
                     attempt INTEGER NOT NULL, at INTEGER NOT NULL, payload TEXT NOT NULL,
                     PRIMARY KEY (run_id, seq)
                 ) WITHOUT ROWID, STRICT;
                 INSERT INTO events_v9 SELECT run_id, seq, kind, correlation_id, attempt, at,
                     payload FROM events;
                 DROP TABLE events;
                 ALTER TABLE events_v9 RENAME TO events;
                 DROP TABLE documents; DROP INDEX runs_queue_created_at;
                 DROP TABLE step_permits;
                 DELETE FROM schema_migrations WHERE version >= 10;",
            )
            .unwrap();
        }
        assert_eq!(SqliteStore::SCHEMA_VERSION, 13);
        let store: SharedStore = Arc::new(SqliteStore::open(&path).unwrap());
        let steps = |n: u64| -> Vec<NewEvent> {
            (1..=n)
                .map(|seq| event(EventKind::StepCompleted, Some("s"), t(2), json!(seq)))
                .collect()
        };
        assert_eq!(store.events(&a.id).await.unwrap(), log_of(&a, steps(3)));
        assert_eq!(store.events(&b.id).await.unwrap(), log_of(&b, steps(2)));
        let stale = store
            .append(append(&a, 3, steps(1), RunUpdate::default()))
            .await;
        assert!(
            matches!(stale, Err(EngineError::Conflict { .. })),
            "{stale:?}"
        );
        store
            .append(append(
                &a,
                4,
                vec![tagged("customer", "acme", 0, t(3))],
                RunUpdate::default(),
            ))
            .await
            .unwrap();
        assert_eq!(store.events(&a.id).await.unwrap().len(), 5);
        assert_eq!(
            listed(&store, by_tags(vec![TagFilter::eq("customer", "acme")])).await,
            ["a"]
        );
    }

    /// Processes started together on a new file (a `worker` and a CLI command) each open
    /// it, switch it to WAL and migrate it at the same moment: every open succeeds.
    #[test]
    fn concurrent_first_opens_of_one_file_all_succeed() {
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("reprise.db");
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
            let openers: Vec<_> = (0..6)
                .map(|_| {
                    let path = path.clone();
                    let barrier = barrier.clone();
                    std::thread::spawn(move || {
                        barrier.wait();
                        SqliteStore::open(&path).map(drop)
                    })
                })
                .collect();
            for opener in openers {
                if let Err(error) = opener.join().unwrap() {
                    panic!("round {round}: {error}");
                }
            }
        }
    }

    fn shared(path: &Path) -> SharedStore {
        Arc::new(SqliteStore::open(path).expect("open SQLite store"))
    }

    fn raw(path: &Path) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(path).expect("raw connection");
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .expect("busy timeout");
        conn
    }

    fn migrations(path: &Path) -> Vec<(i64, String)> {
        let conn = raw(path);
        let mut stmt = conn
            .prepare("SELECT version, applied_at FROM schema_migrations ORDER BY version")
            .expect("prepare");
        stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn data_survives_close_and_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("nested/dirs/reprise.db");
        let (record, events) = {
            let store = shared(&path);
            let run = create(&store, "run-1", "signup", t(0)).await;
            let update = RunUpdate {
                status: Some(RunStatus::Sleeping),
                attempt: Some(1),
                wake_at: Some(Some(t(60_000_000))),
                ..Default::default()
            };
            let events = vec![
                event(EventKind::RunStarted, None, t(1), json!({})),
                event(
                    EventKind::SleepStarted,
                    Some("sleep#0"),
                    t(2),
                    json!({ "wake_at": t(60_000_000) }),
                ),
            ];
            store
                .append(append(&run, 1, events, update))
                .await
                .expect("append");
            (
                get(&store, &run.id).await,
                store.events(&run.id).await.expect("events"),
            )
        };
        assert!(
            path.exists(),
            "open creates parent directories and the file"
        );

        let store = shared(&path);
        assert_eq!(get(&store, &record.id).await, record);
        assert_eq!(store.events(&record.id).await.expect("events"), events);
        // Writing goes on where it stopped.
        let run = record.clone();
        store
            .append(append(
                &run,
                3,
                vec![event(
                    EventKind::SleepCompleted,
                    Some("sleep#0"),
                    t(3),
                    json!({}),
                )],
                RunUpdate::default(),
            ))
            .await
            .expect("append after reopen");
        assert_eq!(get(&store, &record.id).await.next_seq, 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reopening_applies_no_migration_twice() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("reprise.db");
        drop(shared(&path));
        let first = migrations(&path);
        let versions: Vec<i64> = first.iter().map(|(v, _)| *v).collect();
        let expected: Vec<i64> = (1..=i64::from(SqliteStore::SCHEMA_VERSION)).collect();
        assert_eq!(versions, expected);
        for _ in 0..3 {
            drop(shared(&path));
            assert_eq!(
                migrations(&path),
                first,
                "reopening changed schema_migrations"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_newer_schema_is_refused_with_both_versions() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("reprise.db");
        drop(shared(&path));
        let newer = i64::from(SqliteStore::SCHEMA_VERSION) + 7;
        raw(&path)
            .execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, 'later')",
                [newer],
            )
            .expect("insert");
        let err = SqliteStore::open(&path).expect_err("a newer schema must be refused");
        let message = err.to_string();
        assert!(
            matches!(&err, EngineError::Storage(e) if e.kind() == StoreErrorKind::Schema),
            "{err:?}"
        );
        assert!(message.contains(&newer.to_string()), "{message}");
        assert!(
            message.contains(&SqliteStore::SCHEMA_VERSION.to_string()),
            "{message}"
        );
        assert!(message.contains("newer"), "{message}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn corrupt_rows_are_errors_naming_the_run() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("reprise.db");
        let store = shared(&path);
        let corruptions = [
            (
                "bad-status",
                "UPDATE runs SET status = 'exploded' WHERE id = ?1",
                "status",
            ),
            (
                "bad-trigger",
                "UPDATE runs SET \"trigger\" = 'carrier-pigeon' WHERE id = ?1",
                "trigger",
            ),
            (
                "bad-input",
                "UPDATE runs SET input = '{not json' WHERE id = ?1",
                "input",
            ),
            (
                "bad-output",
                "UPDATE runs SET output = '[1,' WHERE id = ?1",
                "output",
            ),
            (
                "bad-attempt",
                "UPDATE runs SET attempt = -1 WHERE id = ?1",
                "attempt",
            ),
            (
                "bad-time",
                "UPDATE runs SET wake_at = 9223372036854775807 WHERE id = ?1",
                "wake_at",
            ),
        ];
        let healthy = create(&store, "healthy", "signup", t(0)).await;
        for (id, sql, column) in corruptions {
            let run = create(&store, id, "signup", t(0)).await;
            raw(&path).execute(sql, [id]).expect("corrupt the row");
            match store.run(&run.id).await {
                Err(EngineError::Corrupt { run, message }) => {
                    assert_eq!(run, id);
                    assert!(message.contains(column), "{id}: {message}");
                }
                other => panic!("{id}: expected Corrupt, got {other:?}"),
            }
            // Listings leave the row out and report it (issue 12, defect 7).
            let listing = store
                .list_runs_with_skipped(&RunFilter::default())
                .await
                .expect("one bad row never fails a listing");
            assert_eq!(ids(&listing.runs), ["healthy"], "{id}");
            assert_eq!(listing.skipped.len(), 1, "{id}");
            assert_eq!(listing.skipped[0].run_id, run.id);
            assert!(
                listing.skipped[0].reason.contains(column),
                "{id}: {}",
                listing.skipped[0].reason
            );
            assert_eq!(
                store.list_runs(&RunFilter::default()).await.expect("list"),
                vec![healthy.clone()]
            );
            raw(&path)
                .execute("DELETE FROM runs WHERE id = ?1", [id])
                .expect("clean up");
        }

        let event_corruptions = [
            (
                "bad-kind",
                "UPDATE events SET kind = 'run_exploded' WHERE run_id = ?1",
                "run_exploded",
            ),
            (
                "bad-payload",
                "UPDATE events SET payload = 'nope' WHERE run_id = ?1",
                "payload",
            ),
            ("gap", "UPDATE events SET seq = 5 WHERE run_id = ?1", "gap"),
        ];
        for (id, sql, needle) in event_corruptions {
            let run = create(&store, id, "signup", t(0)).await;
            raw(&path).execute(sql, [id]).expect("corrupt the event");
            match store.events(&run.id).await {
                Err(EngineError::Corrupt { run, message }) => {
                    assert_eq!(run, id);
                    assert!(message.contains(needle), "{id}: {message}");
                }
                other => panic!("{id}: expected Corrupt, got {other:?}"),
            }
        }
        // The store goes on working for healthy runs.
        let fresh = create(&store, "fresh", "signup", t(0)).await;
        assert_eq!(get(&store, &fresh.id).await, fresh);
        assert_eq!(get(&store, &healthy.id).await, healthy);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_that_is_not_a_database_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("reprise.db");
        std::fs::write(&path, vec![b'x'; 8192]).expect("write garbage");
        let err = SqliteStore::open(&path).expect_err("garbage must not open");
        let message = err.to_string();
        assert!(
            matches!(&err, EngineError::Storage(e) if e.kind() == StoreErrorKind::Database),
            "{err:?}"
        );
        // The cause is SQLite's own error, reachable through `source()`.
        let source = std::error::Error::source(&err).expect("a source");
        let sqlite = source
            .downcast_ref::<rusqlite::Error>()
            .expect("the source is the rusqlite::Error");
        assert_eq!(
            sqlite.sqlite_error_code(),
            Some(rusqlite::ErrorCode::NotADatabase),
            "{sqlite:?}"
        );
        assert!(message.contains("reprise.db"), "{message}");
        assert!(message.contains("not a database"), "{message}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_with_options_works() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("reprise.db");
        let options = reprise::store::SqliteOptions {
            synchronous: reprise::store::Synchronous::Normal,
            ..Default::default()
        };
        let store: SharedStore = Arc::new(SqliteStore::open_with(&path, options).expect("open"));
        let run = create(&store, "run-1", "signup", t(0)).await;
        assert_eq!(get(&store, &run.id).await, run);
        let mode: String = raw(&path)
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .expect("journal mode");
        assert_eq!(mode, "wal");
    }
}

// ---------------------------------------------------------------------------------------
// Leases, fencing, keys and cursors

fn secs(n: i64) -> i64 {
    n * 1_000_000
}

async fn set_status(store: &SharedStore, id: &RunId, status: RunStatus, wake_at: Option<i64>) {
    let record = get(store, id).await;
    store
        .append(append(
            &record,
            record.next_seq,
            vec![event(EventKind::RunSuspended, None, t(1), json!({}))],
            RunUpdate {
                status: Some(status),
                wake_at: Some(wake_at.map(t)),
                ..RunUpdate::default()
            },
        ))
        .await
        .expect("set status");
}

fn leased_ids(leases: &[Lease]) -> Vec<&str> {
    leases.iter().map(|l| l.run_id.as_str()).collect()
}

async fn claim_due_leases_each_run_once(store: SharedStore) {
    create(&store, "a", "wf", t(0)).await;
    create(&store, "b", "wf", t(1)).await;
    create(&store, "c", "wf", t(2)).await;
    let first = store
        .claim_due("w1", t(secs(10)), t(secs(40)), 2)
        .await
        .unwrap();
    assert_eq!(
        leased_ids(&first),
        ["a", "b"],
        "oldest first, at most `limit`"
    );
    assert!(
        first
            .iter()
            .all(|l| l.owner == "w1" && l.expires_at == t(secs(40)))
    );
    let second = store
        .claim_due("w2", t(secs(10)), t(secs(40)), 10)
        .await
        .unwrap();
    assert_eq!(
        leased_ids(&second),
        ["c"],
        "leased runs are not claimed twice"
    );
    let third = store
        .claim_due("w3", t(secs(10)), t(secs(40)), 10)
        .await
        .unwrap();
    assert!(third.is_empty());
}

async fn run_counts_count_runs_and_due_ones_by_workflow_and_status(store: SharedStore) {
    create(&store, "a1", "alpha", t(0)).await;
    create(&store, "a2", "alpha", t(1)).await;
    create(&store, "a3", "alpha", t(2)).await;
    let sleeping = create(&store, "a4", "alpha", t(3)).await;
    set_status(&store, &sleeping.id, RunStatus::Sleeping, Some(secs(100))).await;
    create(&store, "b1", "beta", t(4)).await;
    // One of alpha's queued runs is leased: queued, but not due.
    let leased = store
        .claim_due("w", t(secs(10)), t(secs(40)), 1)
        .await
        .unwrap();
    assert_eq!(leased_ids(&leased), ["a1"]);
    let mut counts = store.run_counts(t(secs(10))).await.unwrap();
    counts.sort_by_key(|c| (c.workflow.clone(), c.status.to_string()));
    let rows: Vec<(&str, RunStatus, u64, u64)> = counts
        .iter()
        .map(|c| (c.workflow.as_str(), c.status, c.runs, c.due))
        .collect();
    let mut expected = vec![
        ("alpha", RunStatus::Queued, 3, 2),
        ("alpha", RunStatus::Sleeping, 1, 0),
        ("beta", RunStatus::Queued, 1, 1),
    ];
    expected.sort_by_key(|e| (e.0, e.1.to_string()));
    assert_eq!(rows, expected);
    // Once the sleep is over, the sleeping run is due.
    let later = store.run_counts(t(secs(200))).await.unwrap();
    let sleeping = later
        .iter()
        .find(|c| c.status == RunStatus::Sleeping)
        .unwrap();
    assert_eq!(sleeping.due, 1);
}

async fn which_runs_are_due(store: SharedStore) {
    let queued = create(&store, "queued", "wf", t(0)).await;
    let retry = create(&store, "retry-later", "wf", t(1)).await;
    let sleeping = create(&store, "sleeping", "wf", t(2)).await;
    let waiting = create(&store, "waiting", "wf", t(3)).await;
    let hook_timeout = create(&store, "hook-timeout", "wf", t(4)).await;
    let done = create(&store, "done", "wf", t(5)).await;
    set_status(&store, &retry.id, RunStatus::Queued, Some(secs(100))).await;
    set_status(&store, &sleeping.id, RunStatus::Sleeping, Some(secs(50))).await;
    set_status(&store, &waiting.id, RunStatus::Waiting, None).await;
    set_status(&store, &hook_timeout.id, RunStatus::Waiting, Some(secs(70))).await;
    set_status(&store, &done.id, RunStatus::Completed, None).await;
    let _ = queued;

    let at = |s: i64| t(secs(s));
    let due = store.claim_due("w", at(10), at(11), 100).await.unwrap();
    assert_eq!(leased_ids(&due), ["queued"]);
    for lease in &due {
        store.release(lease).await.unwrap();
    }
    let due = store.claim_due("w", at(60), at(61), 100).await.unwrap();
    assert_eq!(
        leased_ids(&due),
        ["queued", "sleeping"],
        "a sleep ends at wake_at"
    );
    for lease in &due {
        store.release(lease).await.unwrap();
    }
    let due = store.claim_due("w", at(100), at(101), 2).await.unwrap();
    assert_eq!(
        leased_ids(&due),
        ["queued", "sleeping"],
        "with more runs due than `limit`, the earliest due are chosen (`retry-later` was \
         created before `sleeping` but is due later)"
    );
    for lease in &due {
        store.release(lease).await.unwrap();
    }
    let due = store.claim_due("w", at(100), at(101), 100).await.unwrap();
    assert_eq!(
        leased_ids(&due),
        ["queued", "retry-later", "sleeping", "hook-timeout"],
        "a retry is due at wake_at, a hook at its timeout; a waiting run without one and \
         an ended run never are"
    );
}

async fn expired_leases_are_reclaimed_and_fence_out_the_old_holder(store: SharedStore) {
    let run = create(&store, "r", "wf", t(0)).await;
    let old = store
        .claim_due("w1", t(0), t(secs(30)), 1)
        .await
        .unwrap()
        .pop()
        .expect("claimed");
    // The holder starts the run, then stalls past its lease.
    let mut started = append(
        &run,
        1,
        vec![event(EventKind::RunStarted, None, t(1), json!({}))],
        RunUpdate {
            status: Some(RunStatus::Running),
            ..RunUpdate::default()
        },
    );
    started.fence = Some(old.fence);
    store.append(started).await.unwrap();
    assert!(
        store
            .claim_due("w2", t(secs(29)), t(secs(60)), 1)
            .await
            .unwrap()
            .is_empty(),
        "a live lease is not reclaimed"
    );
    let new = store
        .claim_due("w2", t(secs(31)), t(secs(60)), 1)
        .await
        .unwrap()
        .pop()
        .expect("an expired lease of a running run is reclaimed");
    assert!(new.fence > old.fence, "the fence grows with each claim");
    // The old holder wakes up and tries to write: fenced out, nothing written.
    let mut stale = append(
        &run,
        2,
        vec![event(
            EventKind::StepCompleted,
            Some("x#0"),
            t(2),
            json!({}),
        )],
        RunUpdate::default(),
    );
    stale.fence = Some(old.fence);
    let error = store.append(stale).await.unwrap_err();
    assert!(matches!(error, EngineError::LeaseLost { .. }), "{error}");
    assert_eq!(store.events(&run.id).await.unwrap().len(), 2);
    assert_eq!(store.renew(&old, t(secs(90))).await.unwrap(), None);
    // The new holder writes.
    let mut fresh = append(
        &run,
        2,
        vec![event(EventKind::RunStarted, None, t(3), json!({}))],
        RunUpdate::default(),
    );
    fresh.fence = Some(new.fence);
    store.append(fresh).await.unwrap();
    // Releasing the stale lease does not free the new holder's.
    store.release(&old).await.unwrap();
    assert!(
        store
            .claim_due("w3", t(secs(32)), t(secs(60)), 1)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn acquire_respects_live_leases(store: SharedStore) {
    let run = create(&store, "r", "wf", t(0)).await;
    let Acquired::Lease(first) = store
        .acquire(&run.id, "w1", t(0), t(secs(10)))
        .await
        .unwrap()
    else {
        panic!("a free run is acquired");
    };
    match store
        .acquire(&run.id, "w2", t(secs(5)), t(secs(15)))
        .await
        .unwrap()
    {
        Acquired::HeldBy { owner, expires_at } => {
            assert_eq!((owner.as_str(), expires_at), ("w1", t(secs(10))));
        }
        other => panic!("expected HeldBy, got {other:?}"),
    }
    let Acquired::Lease(again) = store
        .acquire(&run.id, "w1", t(secs(5)), t(secs(15)))
        .await
        .unwrap()
    else {
        panic!("the holder may take its own lease again");
    };
    assert!(again.fence > first.fence);
    let Acquired::Lease(taken) = store
        .acquire(&run.id, "w2", t(secs(16)), t(secs(30)))
        .await
        .unwrap()
    else {
        panic!("an expired lease is taken over");
    };
    assert!(taken.fence > again.fence);
    let error = store
        .acquire(&RunId::from("missing"), "w1", t(0), t(1))
        .await
        .unwrap_err();
    assert!(matches!(error, EngineError::UnknownRun(_)), "{error}");
}

async fn renew_and_release(store: SharedStore) {
    create(&store, "r", "wf", t(0)).await;
    let lease = store
        .claim_due("w1", t(0), t(secs(10)), 1)
        .await
        .unwrap()
        .pop()
        .unwrap();
    let renewed = store
        .renew(&lease, t(secs(20)))
        .await
        .unwrap()
        .expect("a held lease renews");
    assert_eq!(
        (renewed.fence, renewed.expires_at),
        (lease.fence, t(secs(20)))
    );
    assert!(
        store
            .claim_due("w2", t(secs(15)), t(secs(30)), 1)
            .await
            .unwrap()
            .is_empty(),
        "renewal extends the lease"
    );
    store.release(&renewed).await.unwrap();
    assert_eq!(store.renew(&renewed, t(secs(30))).await.unwrap(), None);
    let reclaimed = store
        .claim_due("w2", t(secs(15)), t(secs(30)), 1)
        .await
        .unwrap();
    assert_eq!(
        leased_ids(&reclaimed),
        ["r"],
        "a released run is claimable at once"
    );
}

/// An append by the holder of `lease`, numbered from `first_seq`, that releases the lease.
fn releasing(
    run: &RunRecord,
    lease: &Lease,
    first_seq: u64,
    kind: EventKind,
    update: RunUpdate,
) -> Append {
    let mut append = append(
        run,
        first_seq,
        vec![event(kind, None, t(first_seq as i64), json!({}))],
        update,
    );
    append.fence = Some(lease.fence);
    append.release = true;
    append
}

async fn a_releasing_append_gives_the_lease_back_with_its_write(store: SharedStore) {
    // A run that ends: the last append completes it and frees the lease (another owner
    // may take the lease long before it would have expired).
    let done = create(&store, "done", "wf", t(0)).await;
    let Acquired::Lease(lease) = store
        .acquire(&done.id, "w1", t(0), t(secs(30)))
        .await
        .unwrap()
    else {
        panic!("a free run is acquired");
    };
    let output = json!({ "ok": true });
    store
        .append(releasing(
            &done,
            &lease,
            1,
            EventKind::RunCompleted,
            RunUpdate {
                status: Some(RunStatus::Completed),
                output: Some(output.clone()),
                ..RunUpdate::default()
            },
        ))
        .await
        .unwrap();
    let stored = store.run(&done.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.output, stored.next_seq),
        (RunStatus::Completed, Some(output), 2),
        "the events and the run's update are written"
    );
    assert_eq!(store.events(&done.id).await.unwrap().len(), 2);
    assert_eq!(
        store.renew(&lease, t(secs(40))).await.unwrap(),
        None,
        "the released lease cannot be renewed"
    );
    match store
        .acquire(&done.id, "w2", t(secs(1)), t(secs(31)))
        .await
        .unwrap()
    {
        Acquired::Lease(next) => assert!(next.fence > lease.fence),
        other => panic!("the lease was given back with the append, got {other:?}"),
    }

    // A run handed back to the queue (an append that changes no field of the run but its
    // log): claimable at once, and nothing more may be written under the released lease.
    let handed = create(&store, "handed", "wf", t(0)).await;
    let Acquired::Lease(lease) = store
        .acquire(&handed.id, "w1", t(0), t(secs(30)))
        .await
        .unwrap()
    else {
        panic!("a free run is acquired");
    };
    store
        .append(releasing(
            &handed,
            &lease,
            1,
            EventKind::RunSuspended,
            RunUpdate::default(),
        ))
        .await
        .unwrap();
    let mut after = append(
        &handed,
        2,
        vec![event(EventKind::RunStarted, None, t(3), json!({}))],
        RunUpdate::default(),
    );
    after.fence = Some(lease.fence);
    let error = store.append(after).await.unwrap_err();
    assert!(matches!(error, EngineError::LeaseLost { .. }), "{error}");
    let claimed = store
        .claim_due("w2", t(secs(1)), t(secs(31)), 10)
        .await
        .unwrap();
    assert_eq!(
        leased_ids(&claimed),
        ["handed"],
        "a run whose lease went with its last append is claimable at once"
    );
}

async fn a_stale_releasing_append_is_fenced_out(store: SharedStore) {
    let run = create(&store, "r", "wf", t(0)).await;
    let old = store
        .claim_due("w1", t(0), t(secs(30)), 1)
        .await
        .unwrap()
        .pop()
        .expect("claimed");
    // The lease expires and another worker takes the run over.
    let new = store
        .claim_due("w2", t(secs(31)), t(secs(60)), 1)
        .await
        .unwrap()
        .pop()
        .expect("an expired lease is reclaimed");
    // The old holder's last append: refused as a whole, the new holder's lease untouched.
    let stale = releasing(
        &run,
        &old,
        1,
        EventKind::RunCompleted,
        RunUpdate {
            status: Some(RunStatus::Completed),
            output: Some(json!(1)),
            ..RunUpdate::default()
        },
    );
    let error = store.append(stale).await.unwrap_err();
    assert!(matches!(error, EngineError::LeaseLost { .. }), "{error}");
    let stored = store.run(&run.id).await.unwrap().unwrap();
    assert_eq!((stored.status, stored.next_seq), (RunStatus::Queued, 1));
    assert_eq!(store.events(&run.id).await.unwrap().len(), 1);
    assert!(
        store
            .claim_due("w3", t(secs(32)), t(secs(90)), 1)
            .await
            .unwrap()
            .is_empty(),
        "the new holder keeps its lease"
    );
    assert!(
        store.renew(&new, t(secs(70))).await.unwrap().is_some(),
        "the new holder renews"
    );
    // A releasing append at a stale position is a conflict and releases nothing either.
    let misplaced = releasing(&run, &new, 5, EventKind::RunCompleted, RunUpdate::default());
    let error = store.append(misplaced).await.unwrap_err();
    assert!(matches!(error, EngineError::Conflict { .. }), "{error}");
    assert!(
        store.renew(&new, t(secs(80))).await.unwrap().is_some(),
        "a refused releasing append keeps the lease"
    );
}

/// Many runs ending at once (group commit on the SQL stores writes them together): each
/// append lands and each lease is given back.
async fn concurrent_releasing_appends_all_land_and_release(store: SharedStore) {
    let mut ended = Vec::new();
    for i in 0..40 {
        let run = create(&store, &format!("r{i:02}"), "wf", t(i)).await;
        let Acquired::Lease(lease) = store
            .acquire(&run.id, "w1", t(0), t(secs(30)))
            .await
            .unwrap()
        else {
            panic!("a free run is acquired");
        };
        ended.push((run, lease));
    }
    let writes = ended.iter().map(|(run, lease)| {
        let store = store.clone();
        // Every other run also changes a field; the rest only append.
        let update = if run.id.as_str() < "r20" {
            RunUpdate {
                status: Some(RunStatus::Completed),
                output: Some(json!(run.id.as_str())),
                ..RunUpdate::default()
            }
        } else {
            RunUpdate::default()
        };
        let append = releasing(run, lease, 1, EventKind::RunCompleted, update);
        tokio::spawn(async move { store.append(append).await })
    });
    for result in futures::future::join_all(writes).await {
        result.unwrap().unwrap();
    }
    for (run, _) in &ended {
        let stored = store.run(&run.id).await.unwrap().unwrap();
        assert_eq!(stored.next_seq, 2, "{}", run.id);
        let Acquired::Lease(_) = store
            .acquire(&run.id, "w2", t(secs(1)), t(secs(31)))
            .await
            .unwrap()
        else {
            panic!("the lease of {} was given back", run.id);
        };
    }
}

async fn a_release_without_a_fence_is_refused(store: SharedStore) {
    let run = create(&store, "r", "wf", t(0)).await;
    let mut unfenced = append(
        &run,
        1,
        vec![event(EventKind::RunCompleted, None, t(1), json!({}))],
        RunUpdate {
            status: Some(RunStatus::Completed),
            ..RunUpdate::default()
        },
    );
    unfenced.release = true;
    let error = store.append(unfenced).await.unwrap_err();
    assert!(
        matches!(&error, EngineError::Storage(e) if e.kind() == StoreErrorKind::Database),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("run `r`") && message.contains("Append::fence"),
        "the error names the run and the fix: {message}"
    );
    let stored = store.run(&run.id).await.unwrap().unwrap();
    assert_eq!((stored.status, stored.next_seq), (RunStatus::Queued, 1));
}

async fn cancel_requests_reach_the_lease_holder(store: SharedStore) {
    let run = create(&store, "r", "wf", t(0)).await;
    let lease = store
        .claim_due("w1", t(0), t(secs(10)), 1)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert!(!lease.cancel_requested);
    store.request_cancel(&run.id).await.unwrap();
    let renewed = store.renew(&lease, t(secs(20))).await.unwrap().unwrap();
    assert!(renewed.cancel_requested);
    store.release(&renewed).await.unwrap();
    let Acquired::Lease(next) = store.acquire(&run.id, "w2", t(1), t(2)).await.unwrap() else {
        panic!("released");
    };
    assert!(next.cancel_requested, "the request outlives the lease");
    let error = store
        .request_cancel(&RunId::from("missing"))
        .await
        .unwrap_err();
    assert!(matches!(error, EngineError::UnknownRun(_)), "{error}");
}

async fn pause_requests_reach_the_lease_holder(store: SharedStore) {
    let run = create(&store, "r", "wf", t(0)).await;
    let lease = store
        .claim_due("w1", t(0), t(secs(10)), 1)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(lease.pause_requested, None);
    store.request_pause(&run.id, Some("cli:ada")).await.unwrap();
    let renewed = store.renew(&lease, t(secs(20))).await.unwrap().unwrap();
    assert_eq!(renewed.pause_requested.as_deref(), Some("cli:ada"));
    assert!(!renewed.cancel_requested, "a pause is not a cancellation");
    store.release(&renewed).await.unwrap();
    let Acquired::Lease(next) = store.acquire(&run.id, "w2", t(1), t(2)).await.unwrap() else {
        panic!("released");
    };
    assert_eq!(
        next.pause_requested.as_deref(),
        Some("cli:ada"),
        "the request outlives the lease"
    );
    store.request_pause(&run.id, None).await.unwrap();
    let renewed = store.renew(&next, t(3)).await.unwrap().unwrap();
    assert_eq!(renewed.pause_requested, None, "withdrawn");
    let error = store
        .request_pause(&RunId::from("missing"), Some("x"))
        .await
        .unwrap_err();
    assert!(matches!(error, EngineError::UnknownRun(_)), "{error}");
}

async fn paused_runs_are_never_due(store: SharedStore) {
    let run = create(&store, "p", "wf", t(0)).await;
    set_status(&store, &run.id, RunStatus::Paused, Some(secs(1))).await;
    assert_eq!(get(&store, &run.id).await.status, RunStatus::Paused);
    let claimed = store
        .claim_due("w1", t(secs(100)), t(secs(110)), 10)
        .await
        .unwrap();
    assert!(claimed.is_empty(), "a paused run is never claimed");
    assert_eq!(store.next_wake().await.unwrap(), None);
    let listed = store
        .list_runs(&RunFilter {
            status: Some(RunStatus::Paused),
            ..RunFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&listed), ["p"]);
    set_status(&store, &run.id, RunStatus::Queued, None).await;
    let claimed = store
        .claim_due("w1", t(secs(100)), t(secs(110)), 10)
        .await
        .unwrap();
    assert_eq!(leased_ids(&claimed), ["p"], "claimed once queued again");
}

async fn runs_of_a_paused_workflow_are_not_claimed(store: SharedStore) {
    create(&store, "a", "held", t(0)).await;
    create(&store, "b", "other", t(1)).await;
    let pause = reprise::store::WorkflowPause {
        workflow: "held".into(),
        by: "cli:ada".into(),
        at: t(secs(5)),
    };
    assert!(
        store
            .set_workflow_pause("held", Some(&pause))
            .await
            .unwrap()
    );
    let again = reprise::store::WorkflowPause {
        by: "api".into(),
        ..pause.clone()
    };
    assert!(
        !store
            .set_workflow_pause("held", Some(&again))
            .await
            .unwrap(),
        "pausing a paused workflow changes nothing"
    );
    assert_eq!(store.workflow_pauses().await.unwrap(), vec![pause]);
    let claimed = store
        .claim_due("w1", t(secs(10)), t(secs(20)), 10)
        .await
        .unwrap();
    assert_eq!(leased_ids(&claimed), ["b"], "only the other workflow's run");
    assert!(store.set_workflow_pause("held", None).await.unwrap());
    assert!(!store.set_workflow_pause("held", None).await.unwrap());
    assert!(store.workflow_pauses().await.unwrap().is_empty());
    let claimed = store
        .claim_due("w1", t(secs(10)), t(secs(20)), 10)
        .await
        .unwrap();
    assert_eq!(leased_ids(&claimed), ["a"], "claimed once unpaused");
}

async fn create_run_once_creates_one_run_per_key(store: SharedStore) {
    let first = record("one", "wf", t(0));
    let created = store
        .create_run_once("webhook:github:42", first.clone(), created_event(&first))
        .await
        .unwrap();
    assert_eq!(created, None);
    let second = record("two", "wf", t(1));
    let existing = store
        .create_run_once("webhook:github:42", second.clone(), created_event(&second))
        .await
        .unwrap();
    assert_eq!(existing, Some(RunId::from("one")));
    assert!(store.run(&RunId::from("two")).await.unwrap().is_none());
    let other = store
        .create_run_once("webhook:github:43", second.clone(), created_event(&second))
        .await
        .unwrap();
    assert_eq!(other, None);
    // Racing creators with one key: exactly one run.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let r = record(&format!("race-{i}"), "wf", t(10 + i));
            store
                .create_run_once("cron:daily:x", r.clone(), created_event(&r))
                .await
        }));
    }
    let mut created = 0;
    for task in tasks {
        if task.await.unwrap().unwrap().is_none() {
            created += 1;
        }
    }
    assert_eq!(created, 1);
}

async fn cursors_round_trip(store: SharedStore) {
    assert_eq!(store.cursor("poll:feed").await.unwrap(), None);
    store
        .set_cursor("poll:feed", &json!({ "after": 17, "etag": "x" }))
        .await
        .unwrap();
    assert_eq!(
        store.cursor("poll:feed").await.unwrap(),
        Some(json!({ "after": 17, "etag": "x" }))
    );
    store.set_cursor("poll:feed", &json!(18)).await.unwrap();
    assert_eq!(store.cursor("poll:feed").await.unwrap(), Some(json!(18)));
    assert_eq!(store.cursor("other").await.unwrap(), None);
}

async fn documents_round_trip_by_mode_and_prefix(store: SharedStore) {
    use reprise::store::Put;
    let t0 = t(1_000_000);
    let t1 = t(61_000_000);
    assert_eq!(
        store.document("credential", "org/github").await.unwrap(),
        None
    );
    // Replace needs an existing document; Create needs none.
    assert!(
        !store
            .put_document("credential", "org/github", &json!(1), Put::Replace, t0)
            .await
            .unwrap()
    );
    assert!(
        store
            .put_document(
                "credential",
                "org/github",
                &json!({"v": 1}),
                Put::Create,
                t0
            )
            .await
            .unwrap()
    );
    assert!(
        !store
            .put_document(
                "credential",
                "org/github",
                &json!({"v": 2}),
                Put::Create,
                t1
            )
            .await
            .unwrap()
    );
    let doc = store
        .document("credential", "org/github")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(doc.value, json!({"v": 1}));
    assert!(
        store
            .put_document(
                "credential",
                "org/github",
                &json!({"v": 3}),
                Put::Replace,
                t1
            )
            .await
            .unwrap()
    );
    let doc = store
        .document("credential", "org/github")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (doc.value, doc.created_at, doc.updated_at),
        (json!({"v": 3}), t0, t1)
    );
    // Upsert writes either way; keys with LIKE wildcards are plain text to a prefix.
    for key in [
        "user:ada/github",
        "user:ada/slack",
        "user:ad_/x",
        "user:bob/github",
    ] {
        assert!(
            store
                .put_document("credential", key, &json!(key), Put::Upsert, t0)
                .await
                .unwrap()
        );
    }
    store
        .put_document("api_token", "user:ada/zzz", &json!(0), Put::Upsert, t0)
        .await
        .unwrap();
    let keys =
        |docs: Vec<reprise::store::Document>| docs.into_iter().map(|d| d.key).collect::<Vec<_>>();
    assert_eq!(
        keys(store.documents("credential", "user:ada/").await.unwrap()),
        vec!["user:ada/github", "user:ada/slack"]
    );
    assert_eq!(
        keys(store.documents("credential", "user:ad_").await.unwrap()),
        vec!["user:ad_/x"]
    );
    assert_eq!(store.documents("credential", "").await.unwrap().len(), 5);
    assert!(
        store
            .delete_document("credential", "user:ada/slack")
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_document("credential", "user:ada/slack")
            .await
            .unwrap()
    );
    assert_eq!(
        keys(store.documents("credential", "user:ada/").await.unwrap()),
        vec!["user:ada/github"]
    );
    assert_eq!(store.documents("api_token", "").await.unwrap().len(), 1);
    assert!(
        store
            .put_document("", "k", &json!(0), Put::Upsert, t0)
            .await
            .is_err()
    );
}

async fn concurrent_document_creations_have_one_winner(store: SharedStore) {
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .put_document(
                        "subscription",
                        "digest/ada",
                        &json!(i),
                        reprise::store::Put::Create,
                        t(0),
                    )
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(task.await.unwrap());
    }
    assert_eq!(winners, 1);
}

async fn next_wake_is_the_earliest_due_time(store: SharedStore) {
    assert_eq!(store.next_wake().await.unwrap(), None);
    let a = create(&store, "a", "wf", t(0)).await;
    let b = create(&store, "b", "wf", t(1)).await;
    assert_eq!(
        store.next_wake().await.unwrap(),
        None,
        "plain queued runs have no wake time"
    );
    set_status(&store, &a.id, RunStatus::Sleeping, Some(secs(50))).await;
    set_status(&store, &b.id, RunStatus::Waiting, Some(secs(20))).await;
    assert_eq!(store.next_wake().await.unwrap(), Some(t(secs(20))));
    set_status(&store, &b.id, RunStatus::Completed, None).await;
    assert_eq!(store.next_wake().await.unwrap(), Some(t(secs(50))));
}

async fn concurrent_claims_never_share_a_run(store: SharedStore) {
    for i in 0..40 {
        create(&store, &format!("run-{i:02}"), "wf", t(i)).await;
    }
    let mut tasks = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let leases = store
                    .claim_due(&format!("w{w}"), t(secs(1)), t(secs(100)), 3)
                    .await
                    .unwrap();
                if leases.is_empty() {
                    return mine;
                }
                mine.extend(leases.into_iter().map(|l| l.run_id));
            }
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!(before, all.len(), "a run was claimed twice");
    assert_eq!(all.len(), 40, "every run was claimed");
}

// ---------------------------------------------------------------------------------------
// Schedules kept as data

fn schedule_row(name: &str, at: DateTime<Utc>) -> reprise::store::ScheduleRow {
    reprise::store::ScheduleRow {
        name: name.to_owned(),
        definition: Some(json!({ "workflow": "w", "cron": "0 2 * * *", "input": { "n": 1 } })),
        paused: false,
        created_at: at,
        created_by: "cli:alice".to_owned(),
        updated_at: at,
        updated_by: "cli:alice".to_owned(),
    }
}

async fn schedules_round_trip(store: SharedStore) {
    assert!(store.list_schedules().await.unwrap().is_empty());
    assert_eq!(store.schedule("nightly").await.unwrap(), None);
    let nightly = schedule_row("nightly", t(0));
    assert!(store.create_schedule(&nightly).await.unwrap());
    assert!(
        store
            .create_schedule(&schedule_row("hourly", t(1)))
            .await
            .unwrap()
    );
    assert_eq!(
        store.schedule("nightly").await.unwrap(),
        Some(nightly.clone())
    );
    let names: Vec<String> = store
        .list_schedules()
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.name)
        .collect();
    assert_eq!(names, ["hourly", "nightly"], "listed by name");

    // An update replaces the definition, paused state and updated_*, never created_*.
    let mut changed = nightly.clone();
    changed.definition = Some(json!({ "workflow": "w", "interval": "15m" }));
    changed.paused = true;
    changed.created_at = t(99);
    changed.created_by = "mallory".to_owned();
    changed.updated_at = t(5);
    changed.updated_by = "api".to_owned();
    assert!(store.update_schedule(&changed).await.unwrap());
    let stored = store.schedule("nightly").await.unwrap().unwrap();
    assert_eq!(stored.definition, changed.definition);
    assert!(stored.paused);
    assert_eq!(
        (stored.created_at, stored.created_by.as_str()),
        (t(0), "cli:alice")
    );
    assert_eq!(
        (stored.updated_at, stored.updated_by.as_str()),
        (t(5), "api")
    );
    assert!(
        !store
            .update_schedule(&schedule_row("missing", t(0)))
            .await
            .unwrap()
    );
    assert_eq!(
        store.schedule("missing").await.unwrap(),
        None,
        "update creates nothing"
    );

    assert!(store.delete_schedule("nightly").await.unwrap());
    assert!(!store.delete_schedule("nightly").await.unwrap());
    assert_eq!(store.schedule("nightly").await.unwrap(), None);
    assert_eq!(store.list_schedules().await.unwrap().len(), 1);
}

async fn schedule_creation_is_atomic_and_pause_rows_are_upserted(store: SharedStore) {
    // Of many concurrent creations of one name, exactly one stores.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut row = schedule_row("race", t(i));
            row.created_by = format!("creator-{i}");
            store.create_schedule(&row).await.unwrap()
        }));
    }
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(task.await.unwrap());
    }
    assert_eq!(winners, 1);
    let stored = store.schedule("race").await.unwrap().unwrap();
    assert!(stored.created_by.starts_with("creator-"));

    // Pausing a schedule with no row (one declared in code) creates a definition-less row.
    store
        .set_schedule_paused("in-code", true, "cli:bob", t(10))
        .await
        .unwrap();
    let row = store.schedule("in-code").await.unwrap().unwrap();
    assert_eq!(row.definition, None);
    assert!(row.paused);
    assert_eq!(
        (row.created_by.as_str(), row.updated_at),
        ("cli:bob", t(10))
    );
    store
        .set_schedule_paused("in-code", false, "api", t(20))
        .await
        .unwrap();
    let row = store.schedule("in-code").await.unwrap().unwrap();
    assert!(!row.paused);
    assert_eq!(
        (row.created_by.as_str(), row.created_at),
        ("cli:bob", t(10))
    );
    assert_eq!((row.updated_by.as_str(), row.updated_at), ("api", t(20)));

    // Pausing a stored schedule keeps its definition.
    store
        .set_schedule_paused("race", true, "api", t(30))
        .await
        .unwrap();
    let paused = store.schedule("race").await.unwrap().unwrap();
    assert!(paused.paused);
    assert_eq!(paused.definition, stored.definition);
}

/// A fork is created with its copied prefix in one write: the run, its `run_created` and
/// the copied events, numbered from 1, with `next_seq` after them; a duplicate id creates
/// nothing; appends go on after the prefix.
async fn create_run_with_events_writes_the_whole_prefix(store: SharedStore) {
    let record = record("fork-1", "signup", t(0));
    let prefix = vec![
        event(
            EventKind::StepStarted,
            Some("a#0"),
            t(1),
            json!({ "callee": "a", "kind": "action", "input": { "n": 1 }, "digest": "00" }),
        ),
        event(
            EventKind::StepCompleted,
            Some("a#0"),
            t(2),
            json!({ "output": { "n": 2 } }),
        ),
        event(
            EventKind::SleepStarted,
            Some("sleep#0"),
            t(3),
            json!({ "wake_at": t(9) }),
        ),
    ];
    store
        .create_run_with_events(record.clone(), created_event(&record), prefix.clone())
        .await
        .expect("create_run_with_events");
    let stored = get(&store, &record.id).await;
    assert_eq!(stored.next_seq, 4);
    assert_eq!(stored.status, RunStatus::Queued);
    assert_eq!(stored.input, record.input);
    let events = store.events(&record.id).await.expect("events");
    let expected = log_of(&record, prefix);
    assert_eq!(events, expected);

    // The same id again: refused, nothing written.
    let err = store
        .create_run_with_events(
            record.clone(),
            created_event(&record),
            vec![event(
                EventKind::SleepCompleted,
                Some("sleep#0"),
                t(4),
                json!({}),
            )],
        )
        .await
        .expect_err("a second create with the same id must fail");
    assert!(err.to_string().contains("fork-1"), "{err}");
    assert_eq!(store.events(&record.id).await.expect("events"), expected);

    // Appends continue after the prefix.
    store
        .append(append(
            &record,
            4,
            vec![event(EventKind::RunStarted, None, t(5), json!({}))],
            RunUpdate::default(),
        ))
        .await
        .expect("append after the prefix");
    assert_eq!(get(&store, &record.id).await.next_seq, 5);
}

// ---------------------------------------------------------------------------------------
// Purging (retention)

/// Moves run `id` to `status` with one event at `at` (so its `updated_at` is `at`).
async fn move_to(store: &SharedStore, id: &str, status: RunStatus, at: DateTime<Utc>) {
    let record = get(store, &RunId::from(id)).await;
    store
        .append(append(
            &record,
            record.next_seq,
            vec![event(EventKind::RunSuspended, None, at, json!({}))],
            RunUpdate {
                status: Some(status),
                ..RunUpdate::default()
            },
        ))
        .await
        .expect("move run");
}

fn purge_filter(before: DateTime<Utc>, limit: usize) -> PurgeFilter {
    PurgeFilter {
        limit,
        ..PurgeFilter::before(before)
    }
}

fn purged_ids(batch: &reprise::store::PurgeBatch) -> Vec<&str> {
    batch.runs.iter().map(|r| r.run_id.as_str()).collect()
}

async fn purge_deletes_only_ended_runs_with_their_rows(store: SharedStore) {
    use RunStatus::*;
    // Ended before the cutoff (t = 50 s), in update order: done, broke, stopped.
    for (id, status, at) in [
        ("done", Completed, 10),
        ("broke", Failed, 20),
        ("stopped", Canceled, 30),
    ] {
        create(&store, id, "wf", t(0)).await;
        move_to(&store, id, status, t(secs(at))).await;
    }
    // Unfinished, however old: never purged.
    create(&store, "queued", "wf", t(0)).await;
    for (id, status) in [
        ("running", Running),
        ("sleeping", Sleeping),
        ("waiting", Waiting),
        ("paused", Paused),
    ] {
        create(&store, id, "wf", t(0)).await;
        move_to(&store, id, status, t(secs(1))).await;
    }
    // Ended after the cutoff; ended but of another workflow.
    create(&store, "recent", "wf", t(0)).await;
    move_to(&store, "recent", Completed, t(secs(100))).await;
    create(&store, "other", "other-wf", t(0)).await;
    move_to(&store, "other", Completed, t(secs(5))).await;
    // A run key of an ended run goes with it.
    let keyed = record("keyed", "wf", t(0));
    store
        .create_run_once("cron:nightly:1", keyed.clone(), created_event(&keyed))
        .await
        .unwrap();
    move_to(&store, "keyed", Completed, t(secs(40))).await;

    let cutoff = t(secs(50));
    // A dry run counts and lists, and deletes nothing.
    let dry = store
        .purge_runs(&PurgeFilter {
            workflow: Some("wf".into()),
            status: Some(Failed),
            dry_run: true,
            ..PurgeFilter::before(cutoff)
        })
        .await
        .unwrap();
    assert_eq!((dry.count, purged_ids(&dry)), (1, vec!["broke"]));
    let dry_all = store
        .purge_runs(&PurgeFilter {
            dry_run: true,
            ..PurgeFilter::before(cutoff)
        })
        .await
        .unwrap();
    assert_eq!(dry_all.count, 5);
    assert!(store.run(&RunId::from("broke")).await.unwrap().is_some());
    assert_eq!(store.events(&RunId::from("broke")).await.unwrap().len(), 2);

    // An unfinished status matches nothing, even with a cutoff in the far future.
    for status in [Queued, Running, Sleeping, Waiting, Paused] {
        let none = store
            .purge_runs(&PurgeFilter {
                status: Some(status),
                ..PurgeFilter::before(t(secs(1_000_000)))
            })
            .await
            .unwrap();
        assert_eq!(none.count, 0, "{status}");
    }

    let purged = store
        .purge_runs(&PurgeFilter {
            workflow: Some("wf".into()),
            ..PurgeFilter::before(cutoff)
        })
        .await
        .unwrap();
    assert_eq!(
        purged_ids(&purged),
        vec!["done", "broke", "stopped", "keyed"]
    );
    assert_eq!(purged.count, 4);
    assert_eq!(purged.runs[1].status, Failed);
    assert_eq!(purged.runs[1].workflow, "wf");
    for id in ["done", "broke", "stopped", "keyed"] {
        let id = RunId::from(id);
        assert!(store.run(&id).await.unwrap().is_none(), "{id} is gone");
        assert!(
            store.events(&id).await.unwrap().is_empty(),
            "{id}'s events are gone"
        );
    }
    // The key is free again: a new run can be created under it.
    let again = record("keyed-again", "wf", t(1));
    let created = store
        .create_run_once("cron:nightly:1", again.clone(), created_event(&again))
        .await
        .unwrap();
    assert_eq!(created, None, "the purged run's key was deleted with it");
    for id in [
        "queued", "running", "sleeping", "waiting", "paused", "recent", "other",
    ] {
        let id = RunId::from(id);
        assert!(store.run(&id).await.unwrap().is_some(), "{id} is kept");
        assert!(
            !store.events(&id).await.unwrap().is_empty(),
            "{id} keeps its events"
        );
    }
    // Without a workflow filter, the other workflow's old run goes too; nothing else.
    let rest = store
        .purge_runs(&PurgeFilter::before(cutoff))
        .await
        .unwrap();
    assert_eq!(purged_ids(&rest), vec!["other"]);
    let listed = store.list_runs(&RunFilter::default()).await.unwrap();
    assert_eq!(listed.len(), 7, "{:?}", ids(&listed));
}

async fn purge_batches_are_bounded_and_oldest_first(store: SharedStore) {
    for i in 0..7 {
        let id = format!("r{i}");
        create(&store, &id, "wf", t(0)).await;
        // Ended in reverse creation order: r6 is the oldest.
        move_to(&store, &id, RunStatus::Completed, t(secs(20 - i))).await;
    }
    let dry = store
        .purge_runs(&PurgeFilter {
            dry_run: true,
            ..purge_filter(t(secs(100)), 3)
        })
        .await
        .unwrap();
    assert_eq!((dry.count, purged_ids(&dry)), (7, vec!["r6", "r5", "r4"]));
    let mut batches = Vec::new();
    loop {
        let batch = store
            .purge_runs(&purge_filter(t(secs(100)), 3))
            .await
            .unwrap();
        let ids: Vec<String> = purged_ids(&batch).iter().map(|s| s.to_string()).collect();
        let last = ids.len() < 3;
        batches.push(ids);
        if last {
            break;
        }
    }
    assert_eq!(
        batches,
        vec![vec!["r6", "r5", "r4"], vec!["r3", "r2", "r1"], vec!["r0"]]
    );
}

/// A task flips runs between `failed` and `queued` (as a retry does) while purges run in
/// small batches: a run is only ever deleted while it is `failed`, so a run the flipper
/// made `queued` is always still there when it flips it back, and the runs it leaves
/// `queued` at the end survive every purge.
async fn purge_never_deletes_a_run_made_unfinished_concurrently(store: SharedStore) {
    const RUNS: usize = 24;
    for i in 0..RUNS {
        let id = format!("r{i:02}");
        create(&store, &id, "wf", t(0)).await;
        move_to(&store, &id, RunStatus::Failed, t(secs(1))).await;
    }
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flipper = {
        let store = store.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut left_queued = Vec::new();
            for round in 0..6 {
                for i in 0..RUNS {
                    let id = format!("r{i:02}");
                    let Some(record) = store.run(&RunId::from(id.as_str())).await.unwrap() else {
                        continue; // purged while failed: fine
                    };
                    let to_queued = append(
                        &record,
                        record.next_seq,
                        vec![event(EventKind::RunRetried, None, t(secs(2)), json!({}))],
                        RunUpdate {
                            status: Some(RunStatus::Queued),
                            ..RunUpdate::default()
                        },
                    );
                    match store.append(to_queued).await {
                        Ok(()) => {}
                        // Purged between the read and the append (it was failed): fine.
                        Err(EngineError::UnknownRun(_)) => continue,
                        Err(error) => panic!("flip {id} to queued: {error}"),
                    }
                    // Odd runs stay queued in the last round.
                    if round == 5 && i % 2 == 1 {
                        left_queued.push(id);
                        continue;
                    }
                    let queued = store
                        .run(&RunId::from(id.as_str()))
                        .await
                        .unwrap()
                        .unwrap_or_else(|| panic!("queued run {id} was purged"));
                    assert_eq!(queued.status, RunStatus::Queued);
                    store
                        .append(append(
                            &queued,
                            queued.next_seq,
                            vec![event(EventKind::RunFailed, None, t(secs(3)), json!({}))],
                            RunUpdate {
                                status: Some(RunStatus::Failed),
                                ..RunUpdate::default()
                            },
                        ))
                        .await
                        .unwrap_or_else(|e| panic!("queued run {id} vanished: {e}"));
                }
                tokio::task::yield_now().await;
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            left_queued
        })
    };
    let mut purged = Vec::new();
    loop {
        let finished = done.load(std::sync::atomic::Ordering::SeqCst);
        let batch = store
            .purge_runs(&purge_filter(t(secs(100)), 2))
            .await
            .unwrap();
        assert!(batch.runs.len() <= 2, "a batch is bounded by its limit");
        for run in &batch.runs {
            assert_eq!(run.status, RunStatus::Failed, "only ended runs are purged");
        }
        purged.extend(batch.runs);
        if finished {
            break;
        }
        tokio::task::yield_now().await;
    }
    let left_queued = flipper.await.unwrap();
    // Whatever is left failed goes now; the queued ones never do.
    let rest = store
        .purge_runs(&purge_filter(t(secs(100)), 1000))
        .await
        .unwrap();
    for run in &rest.runs {
        assert_eq!(run.status, RunStatus::Failed);
    }
    for id in &left_queued {
        let run = store.run(&RunId::from(id.as_str())).await.unwrap();
        assert_eq!(
            run.map(|r| r.status),
            Some(RunStatus::Queued),
            "{id} survives"
        );
    }
    let remaining = store.list_runs(&RunFilter::default()).await.unwrap();
    assert_eq!(remaining.len(), left_queued.len());
    assert!(
        purged.len() + rest.runs.len() + left_queued.len() == RUNS,
        "every run is either purged once or left queued"
    );
}

// ---------------------------------------------------------------------------------------
// Search: tags, time ranges, cursors (issue 15 item 5)

/// A `run_tagged` event for `key` = `value`.
fn tagged(key: &str, value: impl Into<TagValue>, n: u32, at: DateTime<Utc>) -> NewEvent {
    NewEvent::new(
        Some(format!("$tag:{key}#{n}")),
        1,
        at,
        EventPayload::RunTagged {
            key: key.to_owned(),
            value: value.into(),
        },
    )
}

fn by_tags(tags: Vec<TagFilter>) -> RunFilter {
    RunFilter {
        tags,
        ..RunFilter::default()
    }
}

async fn listed(store: &SharedStore, filter: RunFilter) -> Vec<String> {
    store
        .list_runs(&filter)
        .await
        .expect("list_runs")
        .into_iter()
        .map(|r| r.id.0)
        .collect()
}

/// A tag is searchable once the append that carries its `run_tagged` event returns, a
/// re-tag replaces the value, and a refused append indexes nothing: the index and the
/// log never disagree.
async fn tags_are_indexed_with_their_append(store: SharedStore) {
    let a = create(&store, "a", "order", t(1)).await;
    let b = create(&store, "b", "order", t(2)).await;
    assert_eq!(
        listed(&store, by_tags(vec![TagFilter::eq("customer", "acme")])).await,
        Vec::<String>::new()
    );
    store
        .append(append(
            &a,
            1,
            vec![
                event(EventKind::RunStarted, None, t(3), json!({})),
                tagged("customer", "acme", 0, t(3)),
            ],
            RunUpdate::default(),
        ))
        .await
        .expect("append");
    store
        .append(append(
            &b,
            1,
            vec![tagged("customer", "globex", 0, t(4))],
            RunUpdate::default(),
        ))
        .await
        .expect("append");
    assert_eq!(
        listed(&store, by_tags(vec![TagFilter::eq("customer", "acme")])).await,
        ["a"]
    );
    // A re-tag of the key replaces its value.
    store
        .append(append(
            &b,
            2,
            vec![tagged("customer", "acme", 1, t(5))],
            RunUpdate::default(),
        ))
        .await
        .expect("append");
    assert_eq!(
        listed(&store, by_tags(vec![TagFilter::eq("customer", "acme")])).await,
        ["b", "a"]
    );
    assert_eq!(
        listed(&store, by_tags(vec![TagFilter::eq("customer", "globex")])).await,
        Vec::<String>::new()
    );
    // A stale append (wrong first_seq) writes neither its events nor its tags.
    let err = store
        .append(append(
            &a,
            1,
            vec![tagged("region", "eu", 0, t(6))],
            RunUpdate::default(),
        ))
        .await
        .expect_err("stale append");
    assert!(matches!(err, EngineError::Conflict { .. }), "{err:?}");
    assert_eq!(
        listed(&store, by_tags(vec![TagFilter::eq("region", "eu")])).await,
        Vec::<String>::new()
    );
    // The log says what the index says.
    let events = store.events(&b.id).await.expect("events");
    let tags = reprise::tags::tags_of(&events);
    assert_eq!(tags.get("customer"), Some(&TagValue::from("acme")));
    // Tags combine with the other filters.
    let filter = RunFilter {
        tags: vec![TagFilter::eq("customer", "acme")],
        workflow: Some("other".to_owned()),
        ..RunFilter::default()
    };
    assert_eq!(listed(&store, filter).await, Vec::<String>::new());
}

/// Equality compares values of one type (the number 100 is not the string "100");
/// numbers and times compare by range; several tag filters must all match.
async fn tag_filters_compare_by_type_and_range(store: SharedStore) {
    let day = |d: u32| {
        DateTime::parse_from_rfc3339(&format!("2026-12-{d:02}T10:00:00.000001Z"))
            .expect("time")
            .with_timezone(&Utc)
    };
    let runs = [
        ("r1", 50.0, "100", true, day(1)),
        ("r2", 100.0, "x", false, day(2)),
        ("r3", 150.5, "y", true, day(3)),
        ("r4", -3.0, "z", false, day(4)),
    ];
    for (i, (id, amount, code, vip, due)) in runs.iter().enumerate() {
        let run = create(&store, id, "order", t(i as i64 * 10)).await;
        store
            .append(append(
                &run,
                1,
                vec![
                    tagged("amount", *amount, 0, t(i as i64 * 10 + 1)),
                    tagged("code", *code, 0, t(i as i64 * 10 + 1)),
                    tagged("vip", *vip, 0, t(i as i64 * 10 + 1)),
                    tagged("due", *due, 0, t(i as i64 * 10 + 1)),
                ],
                RunUpdate::default(),
            ))
            .await
            .expect("append");
    }
    let ge = TagFilter::new("amount", TagOp::Ge, 100);
    assert_eq!(
        listed(&store, by_tags(vec![ge.clone()])).await,
        ["r3", "r2"]
    );
    let gt = TagFilter::new("amount", TagOp::Gt, 100);
    assert_eq!(listed(&store, by_tags(vec![gt])).await, ["r3"]);
    let lt = TagFilter::new("amount", TagOp::Lt, 100);
    assert_eq!(listed(&store, by_tags(vec![lt])).await, ["r4", "r1"]);
    let le = TagFilter::new("amount", TagOp::Le, 50);
    assert_eq!(listed(&store, by_tags(vec![le])).await, ["r4", "r1"]);
    let eq = TagFilter::eq("amount", 150.5);
    assert_eq!(listed(&store, by_tags(vec![eq])).await, ["r3"]);
    // Types are distinct: "100" the string is not 100 the number.
    assert_eq!(
        listed(&store, by_tags(vec![TagFilter::eq("code", "100")])).await,
        ["r1"]
    );
    assert_eq!(
        listed(&store, by_tags(vec![TagFilter::eq("code", 100)])).await,
        Vec::<String>::new()
    );
    assert_eq!(
        listed(&store, by_tags(vec![TagFilter::eq("amount", "100")])).await,
        Vec::<String>::new()
    );
    assert_eq!(
        listed(&store, by_tags(vec![TagFilter::eq("vip", true)])).await,
        ["r3", "r1"]
    );
    // Times compare to the microsecond.
    let due = TagFilter::new("due", TagOp::Lt, day(3));
    assert_eq!(listed(&store, by_tags(vec![due])).await, ["r2", "r1"]);
    let due = TagFilter::new("due", TagOp::Ge, day(3));
    assert_eq!(listed(&store, by_tags(vec![due])).await, ["r4", "r3"]);
    assert_eq!(
        listed(&store, by_tags(vec![TagFilter::eq("due", day(2))])).await,
        ["r2"]
    );
    // Several filters: all must match (with or without an equality to drive the search).
    assert_eq!(
        listed(
            &store,
            by_tags(vec![ge.clone(), TagFilter::eq("vip", true)])
        )
        .await,
        ["r3"]
    );
    assert_eq!(
        listed(
            &store,
            by_tags(vec![ge, TagFilter::new("due", TagOp::Lt, day(3))])
        )
        .await,
        ["r2"]
    );
    // A key no run has matches nothing.
    assert_eq!(
        listed(&store, by_tags(vec![TagFilter::eq("nope", 1)])).await,
        Vec::<String>::new()
    );
}

/// `created_after`/`updated_after` are inclusive, `*_before` exclusive.
async fn time_ranges_filter_created_and_updated(store: SharedStore) {
    let a = create(&store, "a", "order", t(10)).await;
    create(&store, "b", "order", t(20)).await;
    create(&store, "c", "order", t(30)).await;
    store
        .append(append(
            &a,
            1,
            vec![event(EventKind::RunStarted, None, t(40), json!({}))],
            RunUpdate::default(),
        ))
        .await
        .expect("append");
    let filter = RunFilter {
        created_after: Some(t(20)),
        ..RunFilter::default()
    };
    assert_eq!(listed(&store, filter).await, ["c", "b"]);
    let filter = RunFilter {
        created_before: Some(t(20)),
        ..RunFilter::default()
    };
    assert_eq!(listed(&store, filter).await, ["a"]);
    let filter = RunFilter {
        created_after: Some(t(11)),
        created_before: Some(t(30)),
        ..RunFilter::default()
    };
    assert_eq!(listed(&store, filter).await, ["b"]);
    let filter = RunFilter {
        updated_after: Some(t(40)),
        ..RunFilter::default()
    };
    assert_eq!(listed(&store, filter).await, ["a"]);
    let filter = RunFilter {
        updated_before: Some(t(40)),
        ..RunFilter::default()
    };
    assert_eq!(listed(&store, filter).await, ["c", "b"]);
}

/// Paging with the cursor visits every run once, newest first with ties by id, also
/// while new runs are created between pages; with a tag filter too.
async fn cursor_pages_have_no_duplicates_or_gaps(store: SharedStore) {
    // Ten runs, several created in the same microsecond (ties broken by id).
    let times = [1, 2, 2, 2, 3, 4, 4, 5, 6, 6];
    for (i, at) in times.iter().enumerate() {
        let run = create(&store, &format!("run-{i:02}"), "order", t(*at)).await;
        let customer = if i % 2 == 0 { "acme" } else { "globex" };
        store
            .append(append(
                &run,
                1,
                vec![tagged("customer", customer, 0, t(100))],
                RunUpdate::default(),
            ))
            .await
            .expect("append");
    }
    let snapshot = listed(&store, RunFilter::default()).await;
    let mut expected: Vec<(i64, String)> = times
        .iter()
        .enumerate()
        .map(|(i, at)| (*at, format!("run-{i:02}")))
        .collect();
    expected.sort_by(|a, b| b.cmp(a));
    assert_eq!(
        snapshot,
        expected
            .iter()
            .map(|(_, id)| id.clone())
            .collect::<Vec<_>>(),
        "newest first, ties by id (highest first)"
    );
    let mut created = 0;
    for filter in [
        RunFilter::default(),
        by_tags(vec![TagFilter::eq("customer", "acme")]),
    ] {
        // What a listing shows now: the pages must show exactly this.
        let want = listed(&store, filter.clone()).await;
        assert!(want.len() >= 5, "{want:?}");
        let mut seen: Vec<String> = Vec::new();
        let mut cursor = None;
        let mut page_no = 0;
        loop {
            let page = store
                .list_runs_with_skipped(&RunFilter {
                    limit: Some(3),
                    cursor: cursor.clone(),
                    ..filter.clone()
                })
                .await
                .expect("page");
            assert!(page.runs.len() <= 3);
            seen.extend(page.runs.iter().map(|r| r.id.0.clone()));
            // New runs arrive between pages (newer than everything listed so far).
            created += 1;
            let new = create(
                &store,
                &format!("new-{created}"),
                "order",
                t(1000 + created),
            )
            .await;
            store
                .append(append(
                    &new,
                    1,
                    vec![tagged("customer", "acme", 0, t(1000))],
                    RunUpdate::default(),
                ))
                .await
                .expect("append");
            page_no += 1;
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
            assert!(page_no < 20, "paging does not end");
        }
        assert_eq!(seen, want, "pages visit every run once, in order");
    }
}

/// A malformed tag filter or cursor fails the listing with an error naming it.
async fn malformed_tag_filters_and_cursors_are_refused(store: SharedStore) {
    create(&store, "a", "order", t(1)).await;
    let range_on_string = by_tags(vec![TagFilter::new("customer", TagOp::Gt, "acme")]);
    let err = store
        .list_runs(&range_on_string)
        .await
        .expect_err("a range on a string");
    assert!(err.to_string().contains("numbers and times"), "{err}");
    let bad_key = by_tags(vec![TagFilter::eq("", "acme")]);
    let err = store.list_runs(&bad_key).await.expect_err("an empty key");
    assert!(err.to_string().contains("empty"), "{err}");
    let bad_cursor = RunFilter {
        cursor: Some("not-a-cursor".to_owned()),
        ..RunFilter::default()
    };
    let err = store
        .list_runs(&bad_cursor)
        .await
        .expect_err("a cursor no listing returned");
    assert!(err.to_string().contains("cursor"), "{err}");
}

/// Tags carried by concurrent appends (which the Postgres store writes in one statement)
/// are all indexed.
async fn concurrent_tagged_appends_are_all_indexed(store: SharedStore) {
    let mut runs = Vec::new();
    for i in 0..40 {
        runs.push(create(&store, &format!("run-{i:02}"), "order", t(i)).await);
    }
    let writes = runs.iter().enumerate().map(|(i, run)| {
        let store = store.clone();
        let append = append(
            run,
            1,
            vec![tagged("batch", (i % 4) as i64, 0, t(100))],
            RunUpdate::default(),
        );
        async move { store.append(append).await }
    });
    for result in futures::future::join_all(writes).await {
        result.expect("append");
    }
    for k in 0..4 {
        let found = listed(&store, by_tags(vec![TagFilter::eq("batch", k)])).await;
        let want: Vec<String> = (0..40)
            .rev()
            .filter(|i| i % 4 == k)
            .map(|i| format!("run-{i:02}"))
            .collect();
        assert_eq!(found, want);
    }
}

/// A purged run's tags are deleted with it: a run created later under the same id is not
/// found by the old tag, and the tag index holds nothing of the purged run.
async fn a_purged_runs_tags_go_with_it(store: SharedStore) {
    let run = create(&store, "tagged-run", "wf", t(0)).await;
    store
        .append(append(
            &run,
            1,
            vec![tagged("customer", "acme", 0, t(1))],
            RunUpdate::default(),
        ))
        .await
        .unwrap();
    assert_eq!(
        listed(&store, by_tags(vec![TagFilter::eq("customer", "acme")])).await,
        ["tagged-run"]
    );
    move_to(&store, "tagged-run", RunStatus::Completed, t(secs(2))).await;
    let purged = store
        .purge_runs(&PurgeFilter::before(t(secs(10))))
        .await
        .unwrap();
    assert_eq!(purged.runs.len(), 1);
    assert!(
        listed(&store, by_tags(vec![TagFilter::eq("customer", "acme")]))
            .await
            .is_empty()
    );
    // The same id again, untagged: the purged run's tag must not find it.
    create(&store, "tagged-run", "wf", t(20)).await;
    assert!(
        listed(&store, by_tags(vec![TagFilter::eq("customer", "acme")]))
            .await
            .is_empty(),
        "a purged run's tag outlived it"
    );
}

/// A fork's copied `run_tagged` events are indexed like appended ones: the new run is found
/// by its tags as soon as it exists.
async fn tags_copied_into_a_fork_are_indexed(store: SharedStore) {
    let record = record("fork-tagged", "wf", t(0));
    store
        .create_run_with_events(
            record.clone(),
            created_event(&record),
            vec![tagged("customer", "globex", 0, t(1))],
        )
        .await
        .unwrap();
    assert_eq!(
        listed(&store, by_tags(vec![TagFilter::eq("customer", "globex")])).await,
        ["fork-tagged"]
    );
}

// ---------------------------------------------------------------------------------------
// The run inbox: messages, event waits, emitted events, run keys

fn message(run: &str, channel: &str, payload: Value, dedupe: Option<&str>, at: i64) -> NewMessage {
    NewMessage {
        run_id: RunId::from(run),
        channel: channel.to_owned(),
        payload,
        dedupe: dedupe.map(str::to_owned),
        at: t(at),
    }
}

async fn post(store: &SharedStore, message: NewMessage) -> Posted {
    store.post_message(message).await.expect("post_message")
}

fn seqs(messages: &[Message]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}

/// Suspends run `id` as `waiting` (a hook wait with the given timeout), having read its
/// inbox up to `seen`.
async fn suspend_waiting(store: &SharedStore, id: &str, wake_at: Option<i64>, seen: Option<u64>) {
    let record = get(store, &RunId::from(id)).await;
    store
        .append(append(
            &record,
            record.next_seq,
            vec![event(EventKind::RunSuspended, None, t(2), json!({}))],
            RunUpdate {
                status: Some(RunStatus::Waiting),
                wake_at: Some(wake_at.map(t)),
                inbox_seen: seen,
                ..RunUpdate::default()
            },
        ))
        .await
        .expect("suspend");
}

/// A run's messages are numbered 1, 2, 3, … per run, whatever other runs receive, and come
/// back exactly (channel, payload, dedupe key, time), in seq order, from after a given seq.
async fn inbox_messages_are_numbered_per_run_and_read_after_a_seq(store: SharedStore) {
    create(&store, "a", "wf", t(0)).await;
    create(&store, "b", "wf", t(1)).await;
    let posted = [
        post(
            &store,
            message("a", "signal:paid", json!({"n": 1}), None, 10),
        )
        .await,
        post(
            &store,
            message("b", "signal:paid", json!({"n": 1}), None, 11),
        )
        .await,
        post(
            &store,
            message("a", "update:add", json!([1, "x", null]), Some("k1"), 12),
        )
        .await,
        post(&store, message("a", "child:c-1", json!("done"), None, 13)).await,
        post(
            &store,
            message("b", "event:order.paid", json!(null), None, 14),
        )
        .await,
    ];
    let numbered: Vec<(u64, bool)> = posted.iter().map(|p| (p.seq, p.duplicate)).collect();
    assert_eq!(
        numbered,
        [(1, false), (1, false), (2, false), (3, false), (2, false)]
    );
    let a = store.messages(&RunId::from("a"), 0).await.unwrap();
    assert_eq!(
        a,
        vec![
            Message {
                seq: 1,
                channel: "signal:paid".into(),
                payload: json!({"n": 1}),
                dedupe: None,
                at: t(10),
            },
            Message {
                seq: 2,
                channel: "update:add".into(),
                payload: json!([1, "x", null]),
                dedupe: Some("k1".into()),
                at: t(12),
            },
            Message {
                seq: 3,
                channel: "child:c-1".into(),
                payload: json!("done"),
                dedupe: None,
                at: t(13),
            },
        ]
    );
    assert_eq!(
        seqs(&store.messages(&RunId::from("a"), 1).await.unwrap()),
        [2, 3]
    );
    assert_eq!(
        seqs(&store.messages(&RunId::from("a"), 3).await.unwrap()),
        [] as [u64; 0]
    );
    assert_eq!(
        seqs(&store.messages(&RunId::from("a"), u64::MAX).await.unwrap()),
        [] as [u64; 0]
    );
    let b = store.messages(&RunId::from("b"), 1).await.unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!((b[0].seq, b[0].channel.as_str()), (2, "event:order.paid"));
    assert!(
        store
            .messages(&RunId::from("nobody"), 0)
            .await
            .unwrap()
            .is_empty(),
        "a run that does not exist has an empty inbox"
    );
}

/// A message whose dedupe key this run has seen is not stored: the earlier message's seq
/// comes back with `duplicate: true`, the numbering goes on without a gap, and the same
/// key in another run's inbox is a different message.
async fn a_duplicate_message_returns_the_earlier_seq_and_writes_nothing(store: SharedStore) {
    create(&store, "a", "wf", t(0)).await;
    create(&store, "b", "wf", t(1)).await;
    post(&store, message("a", "signal:go", json!(0), None, 1)).await;
    let first = post(
        &store,
        message("a", "signal:go", json!(1), Some("idem-1"), 2),
    )
    .await;
    assert_eq!(
        first,
        Posted {
            seq: 2,
            duplicate: false
        }
    );
    let again = post(
        &store,
        message("a", "signal:other", json!(2), Some("idem-1"), 3),
    )
    .await;
    assert_eq!(
        again,
        Posted {
            seq: 2,
            duplicate: true
        }
    );
    let inbox = store.messages(&RunId::from("a"), 0).await.unwrap();
    assert_eq!(seqs(&inbox), [1, 2]);
    assert_eq!(
        inbox[1].payload,
        json!(1),
        "the duplicate overwrote the first message"
    );
    let next = post(
        &store,
        message("a", "signal:go", json!(3), Some("idem-2"), 4),
    )
    .await;
    assert_eq!(
        next,
        Posted {
            seq: 3,
            duplicate: false
        }
    );
    let other_run = post(
        &store,
        message("b", "signal:go", json!(4), Some("idem-1"), 5),
    )
    .await;
    assert_eq!(
        other_run,
        Posted {
            seq: 1,
            duplicate: false
        }
    );
}

/// A post makes a `waiting` run `queued` (its hook timeout cleared), so a worker claims
/// it now; a sleeping, running, completed or paused run keeps its status and wake-up time.
async fn a_post_wakes_a_waiting_run_and_no_other(store: SharedStore) {
    use RunStatus::*;
    for (id, status, wake_at) in [
        ("waiting", Waiting, Some(secs(3600))),
        ("waiting-forever", Waiting, None),
        ("sleeping", Sleeping, Some(secs(3600))),
        ("running", Running, None),
        ("completed", Completed, None),
        ("paused", Paused, None),
    ] {
        create(&store, id, "wf", t(0)).await;
        set_status(&store, &RunId::from(id), status, wake_at).await;
    }
    let now = t(secs(10));
    let before = store
        .claim_due("w", now, now + chrono::Duration::seconds(30), 10)
        .await
        .unwrap();
    assert_eq!(
        leased_ids(&before),
        ["running"],
        "only the orphaned running run is due before any post"
    );
    for id in [
        "waiting",
        "waiting-forever",
        "sleeping",
        "running",
        "completed",
        "paused",
    ] {
        post(&store, message(id, "signal:go", json!({}), None, secs(5))).await;
    }
    for (id, status, wake_at) in [
        ("waiting", Queued, None),
        ("waiting-forever", Queued, None),
        ("sleeping", Sleeping, Some(t(secs(3600)))),
        ("running", Running, None),
        ("completed", Completed, None),
        ("paused", Paused, None),
    ] {
        let run = get(&store, &RunId::from(id)).await;
        assert_eq!((run.status, run.wake_at), (status, wake_at), "run `{id}`");
    }
    let mut claimed: Vec<String> = store
        .claim_due("w2", now, now + chrono::Duration::seconds(30), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.run_id.0)
        .collect();
    claimed.sort();
    assert!(
        claimed.contains(&"waiting".to_owned()) && claimed.contains(&"waiting-forever".to_owned()),
        "woken runs are due at once: claimed {claimed:?}"
    );
    assert!(!claimed.contains(&"sleeping".to_owned()));
}

/// Posting to, or pointing a key at, a run that does not exist fails with `UnknownRun`
/// and stores nothing.
async fn posts_and_keys_to_an_unknown_run_fail(store: SharedStore) {
    let error = store
        .post_message(message("ghost", "signal:go", json!(1), Some("d"), 1))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, EngineError::UnknownRun(id) if id == "ghost"),
        "{error:?}"
    );
    assert!(
        store
            .messages(&RunId::from("ghost"), 0)
            .await
            .unwrap()
            .is_empty()
    );
    let error = store
        .set_run_key("order-1", &RunId::from("ghost"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, EngineError::UnknownRun(id) if id == "ghost"),
        "{error:?}"
    );
    assert_eq!(store.run_for_key("order-1").await.unwrap(), None);
    // A run created later under that id starts with an empty inbox.
    create(&store, "ghost", "wf", t(0)).await;
    let posted = post(
        &store,
        message("ghost", "signal:go", json!(1), Some("d"), 1),
    )
    .await;
    assert_eq!(
        posted,
        Posted {
            seq: 1,
            duplicate: false
        }
    );
}

/// An append that suspends a run as `waiting` leaves it `queued` (wake-up time cleared)
/// when its inbox holds a message past `inbox_seen` (posted while it executed), and
/// `waiting` otherwise; without `inbox_seen`, or with another status, the inbox is not
/// looked at.
async fn inbox_seen_requeues_a_waiting_run_only_for_a_newer_message(store: SharedStore) {
    use RunStatus::*;
    let id = RunId::from("r");
    create(&store, "r", "wf", t(0)).await;
    // Nothing in the inbox: waits.
    suspend_waiting(&store, "r", Some(secs(60)), Some(0)).await;
    let run = get(&store, &id).await;
    assert_eq!((run.status, run.wake_at), (Waiting, Some(t(secs(60)))));

    post(&store, message("r", "signal:a", json!(1), None, 3)).await;
    post(&store, message("r", "signal:a", json!(2), None, 4)).await;
    // The post woke it; it executes and reads both.
    assert_eq!(get(&store, &id).await.status, Queued);
    set_status(&store, &id, Running, None).await;
    suspend_waiting(&store, "r", Some(secs(60)), Some(2)).await;
    let run = get(&store, &id).await;
    assert_eq!(
        (run.status, run.wake_at),
        (Waiting, Some(t(secs(60)))),
        "all read: waits"
    );

    // Message 3 arrives while it runs (the post does not wake a running run) …
    set_status(&store, &id, Running, None).await;
    post(&store, message("r", "signal:a", json!(3), None, 5)).await;
    assert_eq!(get(&store, &id).await.status, Running);
    // … and its suspension, having read up to 2, leaves it queued, due at once.
    suspend_waiting(&store, "r", Some(secs(60)), Some(2)).await;
    let run = get(&store, &id).await;
    assert_eq!(
        (run.status, run.wake_at),
        (Queued, None),
        "an unread message: queued"
    );
    let now = t(secs(10));
    let claimed = store
        .claim_due("w", now, now + chrono::Duration::seconds(30), 10)
        .await
        .unwrap();
    assert_eq!(leased_ids(&claimed), ["r"]);

    // Having read it: waits.
    suspend_waiting(&store, "r", None, Some(3)).await;
    assert_eq!(get(&store, &id).await.status, Waiting);
    // Without `inbox_seen` the inbox is not consulted, even with an unread message.
    set_status(&store, &id, Running, None).await;
    post(&store, message("r", "signal:a", json!(4), None, 6)).await;
    suspend_waiting(&store, "r", None, None).await;
    assert_eq!(get(&store, &id).await.status, Waiting);
    // Nor for a status other than waiting.
    set_status(&store, &id, Running, None).await;
    let record = get(&store, &id).await;
    store
        .append(append(
            &record,
            record.next_seq,
            vec![event(EventKind::RunSuspended, None, t(7), json!({}))],
            RunUpdate {
                status: Some(Sleeping),
                wake_at: Some(Some(t(secs(90)))),
                inbox_seen: Some(0),
                ..RunUpdate::default()
            },
        ))
        .await
        .unwrap();
    let run = get(&store, &id).await;
    assert_eq!((run.status, run.wake_at), (Sleeping, Some(t(secs(90)))));
}

/// Posts to one run from many tasks at once get distinct seqs 1..=N, with no gap, and
/// the inbox holds each message under the seq its post returned.
async fn concurrent_posts_to_one_run_get_distinct_gapless_seqs(store: SharedStore) {
    create(&store, "busy", "wf", t(0)).await;
    set_status(&store, &RunId::from("busy"), RunStatus::Waiting, None).await;
    const TASKS: u64 = 8;
    const EACH: u64 = 6;
    let posters: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut posted = Vec::new();
                for i in 0..EACH {
                    let n = task * EACH + i;
                    let dedupe = format!("m-{n}");
                    let p = store
                        .post_message(message("busy", "signal:n", json!(n), Some(&dedupe), 1))
                        .await
                        .expect("post");
                    assert!(!p.duplicate);
                    posted.push((p.seq, n));
                }
                posted
            })
        })
        .collect();
    let mut posted = Vec::new();
    for poster in posters {
        posted.extend(poster.await.unwrap());
    }
    posted.sort_unstable();
    let numbers: Vec<u64> = posted.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(numbers, (1..=TASKS * EACH).collect::<Vec<_>>());
    let inbox = store.messages(&RunId::from("busy"), 0).await.unwrap();
    let stored: Vec<(u64, u64)> = inbox
        .iter()
        .map(|m| (m.seq, m.payload.as_u64().expect("a number")))
        .collect();
    assert_eq!(
        stored, posted,
        "each message is stored under the seq its post returned"
    );
    assert_eq!(
        get(&store, &RunId::from("busy")).await.status,
        RunStatus::Queued
    );
}

/// Event waits: adding is idempotent (a run keeps its place), waiters are listed oldest
/// wait first per event name, removing ends a wait (removing a wait that is not there is
/// fine), and a wait added again goes to the back.
async fn event_waits_are_listed_oldest_first_until_removed(store: SharedStore) {
    for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
        create(&store, id, "wf", t(i as i64)).await;
    }
    let waiters = |name: &'static str| {
        let store = store.clone();
        async move {
            let ids = store.event_waiters(name).await.expect("event_waiters");
            ids.into_iter().map(|id| id.0).collect::<Vec<_>>()
        }
    };
    assert!(waiters("order.paid").await.is_empty());
    for id in ["b", "a", "c", "b"] {
        store
            .add_event_wait(&RunId::from(id), "order.paid")
            .await
            .unwrap();
    }
    store
        .add_event_wait(&RunId::from("a"), "order.shipped")
        .await
        .unwrap();
    assert_eq!(waiters("order.paid").await, ["b", "a", "c"]);
    assert_eq!(waiters("order.shipped").await, ["a"]);
    store
        .remove_event_wait(&RunId::from("a"), "order.paid")
        .await
        .unwrap();
    store
        .remove_event_wait(&RunId::from("a"), "order.paid")
        .await
        .unwrap();
    store
        .remove_event_wait(&RunId::from("c"), "no.such.event")
        .await
        .unwrap();
    assert_eq!(waiters("order.paid").await, ["b", "c"]);
    assert_eq!(
        waiters("order.shipped").await,
        ["a"],
        "other names are untouched"
    );
    store
        .add_event_wait(&RunId::from("a"), "order.paid")
        .await
        .unwrap();
    assert_eq!(waiters("order.paid").await, ["b", "c", "a"]);
    // A run that does not exist waits for nothing.
    store
        .add_event_wait(&RunId::from("ghost"), "order.paid")
        .await
        .unwrap();
    assert_eq!(waiters("order.paid").await, ["b", "c", "a"]);
}

/// `record_event` is true the first time a `(name, id)` is recorded and false after, so
/// an event re-sent by its sender is processed once; the same id under another name is
/// another event.
async fn emitted_events_are_recorded_once_per_name_and_id(store: SharedStore) {
    let emitted = |name: &str, id: &str, at: i64| EmittedEvent {
        name: name.to_owned(),
        id: id.to_owned(),
        data: json!({"amount": 5}),
        at: t(at),
    };
    assert!(
        store
            .record_event(&emitted("order.paid", "e-1", 1))
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_event(&emitted("order.paid", "e-1", 2))
            .await
            .unwrap()
    );
    assert!(
        store
            .record_event(&emitted("order.paid", "e-2", 3))
            .await
            .unwrap()
    );
    assert!(
        store
            .record_event(&emitted("order.shipped", "e-1", 4))
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_event(&emitted("order.shipped", "e-1", 5))
            .await
            .unwrap()
    );
}

/// `run_for_key` finds the run a `create_run_once` key (or `set_run_key`) names;
/// `set_run_key` repoints an existing key (continue-as-new hands a business key on) and
/// creates a new one, idempotently; `create_run_once` then finds the new holder.
async fn run_keys_are_read_and_repointed(store: SharedStore) {
    assert_eq!(store.run_for_key("order-7").await.unwrap(), None);
    let first = record("first", "wf", t(0));
    assert_eq!(
        store
            .create_run_once("order-7", first.clone(), created_event(&first))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.run_for_key("order-7").await.unwrap(),
        Some(RunId::from("first"))
    );
    create(&store, "next", "wf", t(1)).await;
    store
        .set_run_key("order-7", &RunId::from("next"))
        .await
        .unwrap();
    store
        .set_run_key("order-7", &RunId::from("next"))
        .await
        .unwrap();
    assert_eq!(
        store.run_for_key("order-7").await.unwrap(),
        Some(RunId::from("next"))
    );
    let third = record("third", "wf", t(2));
    assert_eq!(
        store
            .create_run_once("order-7", third.clone(), created_event(&third))
            .await
            .unwrap(),
        Some(RunId::from("next")),
        "create_run_once finds the repointed key"
    );
    assert_eq!(store.run(&RunId::from("third")).await.unwrap(), None);
    store
        .set_run_key("customer-3", &RunId::from("first"))
        .await
        .unwrap();
    assert_eq!(
        store.run_for_key("customer-3").await.unwrap(),
        Some(RunId::from("first"))
    );
    assert_eq!(
        store.run_for_key("order-7").await.unwrap(),
        Some(RunId::from("next"))
    );
}

/// Purging a run deletes its inbox, its event waits and its keys: a run created later
/// under the same id starts with an empty inbox (numbered from 1 again) and waits for
/// nothing.
async fn purge_removes_a_runs_inbox_and_event_waits(store: SharedStore) {
    create(&store, "old", "wf", t(0)).await;
    create(&store, "kept", "wf", t(1)).await;
    store
        .set_run_key("biz-1", &RunId::from("old"))
        .await
        .unwrap();
    for id in ["old", "kept"] {
        post(&store, message(id, "signal:go", json!(1), Some("d-1"), 2)).await;
        post(&store, message(id, "signal:go", json!(2), None, 3)).await;
        store
            .add_event_wait(&RunId::from(id), "order.paid")
            .await
            .unwrap();
    }
    move_to(&store, "old", RunStatus::Completed, t(secs(2))).await;
    let purged = store
        .purge_runs(&PurgeFilter::before(t(secs(10))))
        .await
        .unwrap();
    assert_eq!(purged_ids(&purged), ["old"]);
    assert!(
        store
            .messages(&RunId::from("old"), 0)
            .await
            .unwrap()
            .is_empty()
    );
    let waiters: Vec<String> = store
        .event_waiters("order.paid")
        .await
        .unwrap()
        .into_iter()
        .map(|id| id.0)
        .collect();
    assert_eq!(waiters, ["kept"]);
    assert_eq!(store.run_for_key("biz-1").await.unwrap(), None);
    assert_eq!(
        seqs(&store.messages(&RunId::from("kept"), 0).await.unwrap()),
        [1, 2]
    );
    // The same id again: nothing of the purged run is left.
    create(&store, "old", "wf", t(secs(20))).await;
    assert!(
        store
            .messages(&RunId::from("old"), 0)
            .await
            .unwrap()
            .is_empty()
    );
    let posted = post(
        &store,
        message("old", "signal:go", json!(1), Some("d-1"), 30),
    )
    .await;
    assert_eq!(
        posted,
        Posted {
            seq: 1,
            duplicate: false
        },
        "the old dedupe key is gone"
    );
    let waiters = store.event_waiters("order.paid").await.unwrap();
    assert_eq!(waiters, [RunId::from("kept")]);
}

/// A post racing the append that suspends a run on a wait (having read the inbox before
/// the post) never leaves the message unread: whichever commits first, the run ends
/// `queued` (the post wakes a waiting run, or the suspension sees the newer message).
async fn a_post_racing_a_suspension_always_leaves_the_run_queued(store: SharedStore) {
    let id = RunId::from("racer");
    create(&store, "racer", "wf", t(0)).await;
    for round in 0..40u64 {
        set_status(&store, &id, RunStatus::Running, None).await;
        let seen = round;
        let poster = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .post_message(message("racer", "signal:go", json!(round), None, 1))
                    .await
                    .expect("post")
            })
        };
        let suspender = {
            let store = store.clone();
            tokio::spawn(async move {
                suspend_waiting(&store, "racer", Some(secs(3600)), Some(seen)).await;
            })
        };
        let posted = poster.await.unwrap();
        suspender.await.unwrap();
        assert_eq!(posted.seq, round + 1);
        let run = get(&store, &id).await;
        assert_eq!(
            (run.status, run.wake_at),
            (RunStatus::Queued, None),
            "round {round}: message {} was left unread by a waiting run",
            posted.seq
        );
    }
}

// ---------------------------------------------------------------------------------------
// Flow control (issue 16): queue columns, admission at claim time, routing, gates, totals,
// the worker registry.

/// A queued run of `workflow` in `queue` under `key` at `priority`.
async fn create_in_queue(
    store: &SharedStore,
    id: &str,
    workflow: &str,
    created_at: DateTime<Utc>,
    queue: &str,
    key: Option<&str>,
    priority: i32,
) -> RunRecord {
    let mut record = record(id, workflow, created_at);
    record.queue = Some(RunQueue {
        name: queue.to_owned(),
        key: key.map(str::to_owned),
        priority,
        admitted_at: None,
    });
    store
        .create_run(record.clone(), created_event(&record))
        .await
        .expect("create_run");
    record
}

/// A claim of up to `limit` runs at `now` (µs), routed by `routing`, knowing `queues`.
async fn claim_with(
    store: &SharedStore,
    owner: &str,
    now: i64,
    limit: usize,
    routing: &Routing,
    queues: &[Queue],
) -> Vec<Lease> {
    store
        .claim(&ClaimRequest {
            owner,
            now: t(now),
            expires_at: t(now + secs(30)),
            limit,
            routing,
            queues,
            run: None,
        })
        .await
        .expect("claim")
}

/// Ends the leased run with `run_completed` (status `completed`), as its worker would.
async fn complete(store: &SharedStore, lease: &Lease, at: i64) {
    let record = get(store, &lease.run_id).await;
    store
        .append(Append {
            run_id: record.id.clone(),
            first_seq: record.next_seq,
            events: vec![event(
                EventKind::RunCompleted,
                None,
                t(at),
                json!({ "output": null }),
            )],
            update: RunUpdate {
                status: Some(RunStatus::Completed),
                output: Some(Value::Null),
                ..RunUpdate::default()
            },
            fence: Some(lease.fence),
            release: false,
        })
        .await
        .expect("complete the run");
}

async fn queue_columns_round_trip(store: SharedStore) {
    let placed = create_in_queue(&store, "q1", "wf", t(0), "llm", Some("cust-1"), -3).await;
    let free = create(&store, "free", "wf", t(1)).await;
    assert_eq!(get(&store, &placed.id).await.queue, placed.queue);
    assert_eq!(get(&store, &free.id).await.queue, None);
    let listed = store.list_runs(&RunFilter::default()).await.unwrap();
    let listed = listed.iter().find(|r| r.id == placed.id).unwrap();
    assert_eq!(listed.queue, placed.queue, "listings carry the queue too");
}

async fn claim_admits_queue_runs_only_by_known_settings(store: SharedStore) {
    create(&store, "free", "wf", t(0)).await;
    let placed = create_in_queue(&store, "queued", "wf", t(1), "llm", None, 0).await;
    let everything = Routing::default();
    // Without the queue's settings, only the free run is claimed.
    let first = claim_with(&store, "w1", secs(10), 10, &everything, &[]).await;
    assert_eq!(leased_ids(&first), ["free"]);
    assert_eq!(
        get(&store, &placed.id).await.queue.unwrap().admitted_at,
        None
    );
    // With them, the queue run is admitted, at `now`.
    let llm = [Queue::new("llm")];
    let second = claim_with(&store, "w2", secs(11), 10, &everything, &llm).await;
    assert_eq!(leased_ids(&second), ["queued"]);
    assert_eq!(
        get(&store, &placed.id).await.queue.unwrap().admitted_at,
        Some(t(secs(11)))
    );
    // Admitted once: after its lease is given back, any claim takes it, settings or not.
    store.release(&second[0]).await.unwrap();
    let third = claim_with(&store, "w3", secs(12), 10, &everything, &[]).await;
    assert_eq!(leased_ids(&third), ["queued"]);
    assert_eq!(
        get(&store, &placed.id).await.queue.unwrap().admitted_at,
        Some(t(secs(11))),
        "admission happens once"
    );
}

async fn key_concurrency_holds_until_the_run_ends(store: SharedStore) {
    create_in_queue(&store, "a1", "wf", t(0), "q", Some("A"), 0).await;
    create_in_queue(&store, "a2", "wf", t(1), "q", Some("A"), 0).await;
    create_in_queue(&store, "b1", "wf", t(2), "q", Some("B"), 0).await;
    let q = [Queue::new("q").key_concurrency(1)];
    let routing = Routing::default();
    let first = claim_with(&store, "w", secs(10), 10, &routing, &q).await;
    assert_eq!(
        leased_ids(&first),
        ["a1", "b1"],
        "a2 waits for a1; it does not hold b1 back"
    );
    complete(&store, &first[1], secs(11)).await;
    // A sleeping admitted run still holds its key.
    store.release(&first[0]).await.unwrap();
    set_status(
        &store,
        &first[0].run_id,
        RunStatus::Sleeping,
        Some(secs(1000)),
    )
    .await;
    assert!(
        claim_with(&store, "w", secs(20), 10, &routing, &q)
            .await
            .is_empty()
    );
    // It wakes, is claimed again (admitted already) and ends: a2 follows.
    let woken = claim_with(&store, "w", secs(1001), 10, &routing, &q).await;
    assert_eq!(leased_ids(&woken), ["a1"]);
    complete(&store, &woken[0], secs(1002)).await;
    let next = claim_with(&store, "w", secs(1003), 10, &routing, &q).await;
    assert_eq!(leased_ids(&next), ["a2"]);
}

async fn queue_concurrency_and_priority_order(store: SharedStore) {
    create_in_queue(&store, "low-early", "wf", t(0), "q", None, 0).await;
    create_in_queue(&store, "high", "wf", t(1), "q", None, 5).await;
    create_in_queue(&store, "mid", "wf", t(2), "q", None, 1).await;
    create_in_queue(&store, "low-late", "wf", t(3), "q", None, 0).await;
    let q = [Queue::new("q").concurrency(2)];
    let routing = Routing::default();
    let first = claim_with(&store, "w", secs(10), 10, &routing, &q).await;
    let mut got = leased_ids(&first);
    got.sort_unstable();
    assert_eq!(
        got,
        ["high", "mid"],
        "highest priorities first, two at once"
    );
    let high = first.iter().find(|l| l.run_id.as_str() == "high").unwrap();
    complete(&store, high, secs(11)).await;
    let second = claim_with(&store, "w", secs(12), 10, &routing, &q).await;
    assert_eq!(leased_ids(&second), ["low-early"], "FIFO within a priority");
    assert!(
        claim_with(&store, "w", secs(13), 10, &routing, &q)
            .await
            .is_empty()
    );
}

async fn rate_limits_count_a_sliding_window(store: SharedStore) {
    for i in 0..5 {
        create_in_queue(&store, &format!("r{i}"), "wf", t(i), "q", None, 0).await;
    }
    let q = [Queue::new("q").rate_limit(2, std::time::Duration::from_secs(10))];
    let routing = Routing::default();
    let first = claim_with(&store, "w", secs(100), 10, &routing, &q).await;
    assert_eq!(leased_ids(&first), ["r0", "r1"]);
    // Ending runs does not give rate back: the window does.
    for lease in &first {
        complete(&store, lease, secs(101)).await;
    }
    assert!(
        claim_with(&store, "w", secs(105), 10, &routing, &q)
            .await
            .is_empty()
    );
    assert!(
        claim_with(&store, "w", secs(110) - 1, 10, &routing, &q)
            .await
            .is_empty(),
        "one µs before the window has passed"
    );
    let (totals, _) = store.queue_totals(&q[0], None, t(secs(109))).await.unwrap();
    assert_eq!(totals.admitted_in_window, 2);
    assert_eq!(totals.oldest_in_window, Some(t(secs(100))));
    let second = claim_with(&store, "w", secs(110), 10, &routing, &q).await;
    assert_eq!(leased_ids(&second), ["r2", "r3"]);
}

async fn per_key_rate_limits_count_each_key(store: SharedStore) {
    create_in_queue(&store, "a1", "wf", t(0), "q", Some("A"), 0).await;
    create_in_queue(&store, "a2", "wf", t(1), "q", Some("A"), 0).await;
    create_in_queue(&store, "b1", "wf", t(2), "q", Some("B"), 0).await;
    let q = [Queue::new("q").rate_limit_per_key(1, std::time::Duration::from_secs(60))];
    let routing = Routing::default();
    let first = claim_with(&store, "w", secs(10), 10, &routing, &q).await;
    assert_eq!(leased_ids(&first), ["a1", "b1"]);
    for lease in &first {
        complete(&store, lease, secs(11)).await;
    }
    let (_, key) = store
        .queue_totals(&q[0], Some("A"), t(secs(20)))
        .await
        .unwrap();
    assert_eq!(key.unwrap().admitted_in_window, 1);
    assert!(
        claim_with(&store, "w", secs(69), 10, &routing, &q)
            .await
            .is_empty()
    );
    let later = claim_with(&store, "w", secs(70), 10, &routing, &q).await;
    assert_eq!(leased_ids(&later), ["a2"]);
}

async fn routing_claims_only_served_workflows_and_queues(store: SharedStore) {
    create(&store, "alpha-free", "alpha", t(0)).await;
    create(&store, "beta-free", "beta", t(1)).await;
    create_in_queue(&store, "alpha-gpu", "alpha", t(2), "gpu", None, 0).await;
    let gpu = [Queue::new("gpu")];
    let only_default = Routing {
        workflows: None,
        queues: Some(vec!["default".to_owned()]),
    };
    let got = claim_with(&store, "w", secs(10), 10, &only_default, &gpu).await;
    assert_eq!(leased_ids(&got), ["alpha-free", "beta-free"]);
    for lease in &got {
        store.release(lease).await.unwrap();
    }
    let only_gpu = Routing {
        workflows: None,
        queues: Some(vec!["gpu".to_owned()]),
    };
    let got = claim_with(&store, "w", secs(11), 10, &only_gpu, &gpu).await;
    assert_eq!(leased_ids(&got), ["alpha-gpu"]);
    store.release(&got[0]).await.unwrap();
    let only_beta = Routing {
        workflows: Some(vec!["beta".to_owned()]),
        queues: None,
    };
    let got = claim_with(&store, "w", secs(12), 10, &only_beta, &gpu).await;
    assert_eq!(leased_ids(&got), ["beta-free"]);
}

async fn queue_totals_count_active_runs_of_the_queue_and_key(store: SharedStore) {
    create_in_queue(&store, "a1", "wf", t(0), "q", Some("A"), 0).await;
    create_in_queue(&store, "a2", "wf", t(1), "q", Some("A"), 0).await;
    create_in_queue(&store, "b1", "wf", t(2), "q", Some("B"), 0).await;
    create_in_queue(&store, "other", "wf", t(3), "other", Some("A"), 0).await;
    let q = Queue::new("q");
    let routing = Routing::default();
    let leases = claim_with(
        &store,
        "w",
        secs(10),
        10,
        &routing,
        &[q.clone(), Queue::new("other")],
    )
    .await;
    assert_eq!(leases.len(), 4);
    let (totals, key) = store
        .queue_totals(&q, Some("A"), t(secs(11)))
        .await
        .unwrap();
    assert_eq!(totals.active, 3, "admitted, unfinished runs of `q` only");
    assert_eq!(key.unwrap().active, 2);
    let a1 = leases.iter().find(|l| l.run_id.as_str() == "a1").unwrap();
    complete(&store, a1, secs(12)).await;
    let (totals, key) = store
        .queue_totals(&q, Some("A"), t(secs(13)))
        .await
        .unwrap();
    assert_eq!((totals.active, key.unwrap().active), (2, 1));
    let (_, none) = store.queue_totals(&q, None, t(secs(13))).await.unwrap();
    assert_eq!(none, None);
}

fn queued_in(id: &str, created_at: DateTime<Utc>, key: &str) -> RunRecord {
    let mut r = record(id, "wf", created_at);
    r.queue = Some(RunQueue {
        name: "q".to_owned(),
        key: Some(key.to_owned()),
        priority: 0,
        admitted_at: None,
    });
    r
}

async fn dedup_gates_return_the_unfinished_holder(store: SharedStore) {
    let gate = StartGate::Dedup {
        key: reprise::queue::gate_key("q", "dedup", "job-7"),
    };
    let first = queued_in("first", t(0), "k");
    let created = store
        .create_run_gated(first.clone(), created_event(&first), &gate)
        .await
        .unwrap();
    assert_eq!(created, Gated::Created);
    let second = queued_in("second", t(1), "k");
    let again = store
        .create_run_gated(second.clone(), created_event(&second), &gate)
        .await
        .unwrap();
    assert_eq!(again, Gated::Existing(first.id.clone()));
    assert!(store.run(&second.id).await.unwrap().is_none());
    // Once the holder has ended, the id starts a new run.
    let leases = claim_with(
        &store,
        "w",
        secs(10),
        10,
        &Routing::default(),
        &[Queue::new("q")],
    )
    .await;
    complete(&store, &leases[0], secs(11)).await;
    let third = store
        .create_run_gated(second.clone(), created_event(&second), &gate)
        .await
        .unwrap();
    assert_eq!(third, Gated::Created);
    assert!(store.run(&second.id).await.unwrap().is_some());
}

fn debounce_gate(policy: DebouncePolicy, at: DateTime<Utc>) -> StartGate {
    StartGate::Debounce {
        key: reprise::queue::gate_key("q", "debounce", "k"),
        policy,
        canceled: event(
            EventKind::RunCanceled,
            None,
            at,
            json!({ "error": { "kind": "canceled", "message": "debounced", "retryable": false } }),
        ),
        error: json!({ "kind": "canceled", "message": "debounced", "retryable": false }),
    }
}

async fn debounce_replace_cancels_the_pending_run(store: SharedStore) {
    let first = queued_in("first", t(0), "k");
    let gate = debounce_gate(DebouncePolicy::Replace, t(1));
    assert_eq!(
        store
            .create_run_gated(first.clone(), created_event(&first), &gate)
            .await
            .unwrap(),
        Gated::Created
    );
    let second = queued_in("second", t(1), "k");
    assert_eq!(
        store
            .create_run_gated(second.clone(), created_event(&second), &gate)
            .await
            .unwrap(),
        Gated::Replaced(first.id.clone())
    );
    let replaced = get(&store, &first.id).await;
    assert_eq!(replaced.status, RunStatus::Canceled);
    assert_eq!(replaced.next_seq, 2);
    assert!(replaced.error.is_some());
    let log = store.events(&first.id).await.unwrap();
    assert_eq!(log[1].event.kind, EventKind::RunCanceled);
    assert_eq!(log[1].seq, 1);
    // Once the pending run is admitted, a start makes a new pending run and replaces none.
    let leases = claim_with(
        &store,
        "w",
        secs(10),
        10,
        &Routing::default(),
        &[Queue::new("q")],
    )
    .await;
    assert_eq!(leased_ids(&leases), ["second"]);
    let third = queued_in("third", t(secs(11)), "k");
    assert_eq!(
        store
            .create_run_gated(third.clone(), created_event(&third), &gate)
            .await
            .unwrap(),
        Gated::Created
    );
    assert_eq!(
        get(&store, &RunId::from("second")).await.status,
        RunStatus::Queued
    );
}

async fn debounce_drop_keeps_the_first_pending_run(store: SharedStore) {
    let first = queued_in("first", t(0), "k");
    let gate = debounce_gate(DebouncePolicy::Drop, t(1));
    store
        .create_run_gated(first.clone(), created_event(&first), &gate)
        .await
        .unwrap();
    let second = queued_in("second", t(1), "k");
    assert_eq!(
        store
            .create_run_gated(second.clone(), created_event(&second), &gate)
            .await
            .unwrap(),
        Gated::Existing(first.id.clone())
    );
    assert!(store.run(&second.id).await.unwrap().is_none());
    assert_eq!(get(&store, &first.id).await.status, RunStatus::Queued);
}

async fn racing_gated_starts_create_one_run(store: SharedStore) {
    let gate = StartGate::Dedup {
        key: reprise::queue::gate_key("q", "dedup", "race"),
    };
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let r = queued_in(&format!("race-{i}"), t(i), "k");
            store
                .create_run_gated(r.clone(), created_event(&r), &gate)
                .await
        }));
    }
    let mut created = 0;
    for task in tasks {
        if task.await.unwrap().unwrap() == Gated::Created {
            created += 1;
        }
    }
    assert_eq!(created, 1);
}

async fn workers_register_renew_and_expire(store: SharedStore) {
    let info = |id: &str, expires_at| WorkerInfo {
        id: id.to_owned(),
        registered: vec!["wf".to_owned()],
        routing: Routing {
            workflows: None,
            queues: Some(vec!["gpu".to_owned()]),
        },
        queues: vec!["gpu".to_owned()],
        started_at: t(0),
        expires_at,
    };
    store
        .worker_heartbeat(&info("w1", t(secs(10))))
        .await
        .unwrap();
    store
        .worker_heartbeat(&info("w2", t(secs(5))))
        .await
        .unwrap();
    let live = store.live_workers(t(secs(6))).await.unwrap().unwrap();
    assert_eq!(live, vec![info("w1", t(secs(10)))], "w2 expired");
    store
        .worker_heartbeat(&info("w2", t(secs(20))))
        .await
        .unwrap();
    let live = store.live_workers(t(secs(11))).await.unwrap().unwrap();
    assert_eq!(live, vec![info("w2", t(secs(20)))], "renewed; w1 expired");
    store.worker_stopped("w2").await.unwrap();
    assert!(
        store
            .live_workers(t(secs(11)))
            .await
            .unwrap()
            .unwrap()
            .is_empty()
    );
}

/// Claimers racing on separate handles (separate writers or pools, as separate processes
/// have) and separate tasks, over many keys: from the claimed sets alone, no two runs of
/// one key and never more than the queue's concurrency are ever held at once, and every
/// run is claimed once. Each claim is bracketed by a global sequence number read before
/// the claim is sent and after it answered, each completion by one read before it is
/// sent: a run holds its place in the store at least from its claim's answer to its
/// completion's start, so two of one key whose such spans overlap were admitted against
/// the limits (reads of the sequence only narrow the spans, never widen them).
async fn concurrent_claims_never_run_two_of_one_key(fixture: &Fixture) {
    const RUNS: usize = 240;
    const KEYS: usize = 24;
    const CONCURRENCY: u32 = 8;
    let store = &fixture.store;
    for i in 0..RUNS {
        let key = format!("k{:02}", i % KEYS);
        create_in_queue(
            store,
            &format!("r{i:04}"),
            "wf",
            t(i as i64),
            "q",
            Some(&key),
            0,
        )
        .await;
    }
    let q: Arc<[Queue]> = Arc::from(vec![
        Queue::new("q").key_concurrency(1).concurrency(CONCURRENCY),
    ]);
    let seq = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    // Two claimers per handle, each on a task of its own.
    for (w, handle) in fixture
        .handles
        .iter()
        .chain(fixture.handles.iter())
        .enumerate()
    {
        let (store, q, seq, done) = (handle.clone(), q.clone(), seq.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            use std::sync::atomic::Ordering::SeqCst;
            let owner = format!("w{w}");
            let routing = Routing::default();
            // (run, key, span start, span end)
            let mut held: Vec<(String, String, u64, u64)> = Vec::new();
            let mut idle = 0;
            while done.load(SeqCst) < RUNS && idle < 5_000 {
                let leases = claim_with(&store, &owner, secs(10), 2, &routing, &q).await;
                let answered = seq.fetch_add(1, SeqCst);
                if leases.is_empty() {
                    idle += 1;
                    tokio::task::yield_now().await;
                    continue;
                }
                idle = 0;
                let mut keys = Vec::new();
                for lease in &leases {
                    keys.push(get(&store, &lease.run_id).await.queue.unwrap().key.unwrap());
                }
                // Hold the places a moment so that other claimers meet full keys.
                tokio::task::yield_now().await;
                for (lease, key) in leases.iter().zip(keys) {
                    let ending = seq.fetch_add(1, SeqCst);
                    complete(&store, lease, secs(11)).await;
                    held.push((lease.run_id.to_string(), key, answered, ending));
                    done.fetch_add(1, SeqCst);
                }
            }
            held
        }));
    }
    let mut spans: Vec<(String, String, u64, u64)> = Vec::new();
    let mut claimers_with_work = 0;
    for task in tasks {
        let held = task.await.unwrap();
        claimers_with_work += usize::from(!held.is_empty());
        spans.extend(held);
    }
    let mut ids: Vec<&str> = spans.iter().map(|s| s.0.as_str()).collect();
    ids.sort_unstable();
    let claimed = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), claimed, "a run was claimed twice");
    assert_eq!(claimed, RUNS, "every run ran once");
    assert!(
        claimers_with_work >= 2,
        "the claimers did not race: only {claimers_with_work} claimed anything"
    );
    for (i, a) in spans.iter().enumerate() {
        let mut overlapping = 0;
        for b in &spans[i + 1..] {
            // Both held places between max(starts) and min(ends).
            if a.2.max(b.2) < a.3.min(b.3) {
                assert_ne!(a.1, b.1, "runs {} and {} of one key held at once", a.0, b.0);
            }
        }
        for b in &spans {
            if a.2 >= b.2 && a.2 < b.3 {
                overlapping += 1;
            }
        }
        assert!(
            overlapping <= CONCURRENCY as usize,
            "{overlapping} runs held at once, over the queue's concurrency {CONCURRENCY}"
        );
    }
}

async fn list_runs_filters_by_queue(store: SharedStore) {
    create_in_queue(&store, "a1", "wf", t(1), "alpha", Some("k"), 0).await;
    create_in_queue(&store, "b1", "wf", t(2), "beta", None, 0).await;
    create(&store, "none", "wf", t(3)).await;
    create_in_queue(&store, "a2", "other", t(4), "alpha", None, 5).await;
    let by_queue = |queue: &str| RunFilter {
        queue: Some(queue.to_owned()),
        ..RunFilter::default()
    };
    let ids = |runs: Vec<RunRecord>| {
        runs.into_iter()
            .map(|r| r.id.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(store.list_runs(&by_queue("alpha")).await.unwrap()),
        ["a2", "a1"]
    );
    assert_eq!(
        ids(store.list_runs(&by_queue("beta")).await.unwrap()),
        ["b1"]
    );
    assert!(
        store
            .list_runs(&by_queue("default"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .list_runs(&by_queue("gamma"))
            .await
            .unwrap()
            .is_empty()
    );
    // Admitted and ended runs stay in their queue's listing; filters combine.
    let q = [Queue::new("alpha")];
    let alpha_only = Routing {
        workflows: None,
        queues: Some(vec!["alpha".to_owned()]),
    };
    let leases = claim_with(&store, "w", secs(1), 1, &alpha_only, &q).await;
    assert_eq!(leased_ids(&leases), ["a2"], "priority first");
    complete(&store, &leases[0], secs(2)).await;
    assert_eq!(
        ids(store.list_runs(&by_queue("alpha")).await.unwrap()),
        ["a2", "a1"]
    );
    let queued = RunFilter {
        status: Some(RunStatus::Queued),
        ..by_queue("alpha")
    };
    assert_eq!(ids(store.list_runs(&queued).await.unwrap()), ["a1"]);
    let of_wf = RunFilter {
        workflow: Some("other".to_owned()),
        ..by_queue("alpha")
    };
    assert_eq!(ids(store.list_runs(&of_wf).await.unwrap()), ["a2"]);
    // Pages of one queue.
    let first = store
        .list_runs_with_skipped(&RunFilter {
            limit: Some(1),
            ..by_queue("alpha")
        })
        .await
        .unwrap();
    assert_eq!(ids(first.runs), ["a2"]);
    let rest = store
        .list_runs_with_skipped(&RunFilter {
            cursor: first.next_cursor,
            ..by_queue("alpha")
        })
        .await
        .unwrap();
    assert_eq!(ids(rest.runs), ["a1"]);
}

/// A claim of run `id` alone ([`ClaimRequest::run`]).
async fn claim_one(store: &SharedStore, now: i64, queues: &[Queue], id: &str) -> Vec<Lease> {
    let id = RunId::from(id);
    store
        .claim(&ClaimRequest {
            owner: "direct",
            now: t(now),
            expires_at: t(now + secs(30)),
            limit: 1,
            routing: &Routing::default(),
            queues,
            run: Some(&id),
        })
        .await
        .expect("claim one run")
}

async fn a_claim_of_one_run_admits_it_alone_or_nothing(store: SharedStore) {
    // Concurrency 1: `first` is ahead of `second`.
    create_in_queue(&store, "first", "wf", t(0), "one", None, 0).await;
    create_in_queue(&store, "second", "wf", t(1), "one", None, 0).await;
    create(&store, "free", "wf", t(2)).await;
    let one = [Queue::new("one").concurrency(1)];
    assert!(claim_one(&store, secs(1), &one, "second").await.is_empty());
    for id in ["first", "second"] {
        let run = get(&store, &RunId::from(id)).await;
        assert_eq!(run.queue.unwrap().admitted_at, None, "{id} was admitted");
    }
    assert!(
        claim_one(&store, secs(1), &one, "free").await.is_empty(),
        "a run in no queue is not claimed by a claim of one run"
    );
    assert_eq!(
        get(&store, &RunId::from("free")).await.status,
        RunStatus::Queued
    );
    let leases = claim_one(&store, secs(1), &one, "first").await;
    assert_eq!(leased_ids(&leases), ["first"]);
    assert_eq!(
        get(&store, &RunId::from("first"))
            .await
            .queue
            .unwrap()
            .admitted_at,
        Some(t(secs(1)))
    );
    assert!(
        claim_one(&store, secs(2), &one, "second").await.is_empty(),
        "the place is taken"
    );
    complete(&store, &leases[0], secs(3)).await;
    assert_eq!(
        leased_ids(&claim_one(&store, secs(4), &one, "second").await),
        ["second"]
    );

    // Per-key concurrency only: the run ahead, of another key, keeps waiting (it is only
    // counted), and the run asked for is admitted beside it.
    create_in_queue(&store, "k1-a", "wf", t(10), "keys", Some("k1"), 0).await;
    create_in_queue(&store, "k2-a", "wf", t(11), "keys", Some("k2"), 0).await;
    create_in_queue(&store, "k1-b", "wf", t(12), "keys", Some("k1"), 0).await;
    let keys = [Queue::new("keys").key_concurrency(1)];
    assert_eq!(
        leased_ids(&claim_one(&store, secs(5), &keys, "k2-a").await),
        ["k2-a"]
    );
    assert_eq!(
        get(&store, &RunId::from("k1-a"))
            .await
            .queue
            .unwrap()
            .admitted_at,
        None
    );
    assert!(
        claim_one(&store, secs(5), &keys, "k1-b").await.is_empty(),
        "k1-a, ahead with the same key, would take the key's place"
    );
    assert_eq!(
        get(&store, &RunId::from("k1-a"))
            .await
            .queue
            .unwrap()
            .admitted_at,
        None
    );
}

async fn a_stale_claim_never_stamps_an_admission_before_a_counted_one(store: SharedStore) {
    for i in 0..4 {
        create_in_queue(&store, &format!("r{i}"), "wf", t(i), "q", None, 0).await;
    }
    let q = [Queue::new("q").rate_limit(2, std::time::Duration::from_secs(10))];
    let routing = Routing::default();
    let first = claim_with(&store, "a", secs(100), 1, &routing, &q).await;
    assert_eq!(leased_ids(&first), ["r0"]);
    // A claimer that read its time (95 s) before the first claim was made, and got its
    // turn after it: the admission it makes happened after r0's.
    let stale = claim_with(&store, "b", secs(95), 1, &routing, &q).await;
    assert_eq!(leased_ids(&stale), ["r1"]);
    let r1 = get(&store, &RunId::from("r1")).await.queue.unwrap();
    assert!(
        r1.admitted_at >= Some(t(secs(100))),
        "r1 stamped {:?}, before r0's admission at 100 s",
        r1.admitted_at
    );
    // At 106 s both admissions are within the last 10 s: the limit of 2 is reached.
    assert!(
        claim_with(&store, "c", secs(106), 1, &routing, &q)
            .await
            .is_empty(),
        "a third admission within 10 s"
    );
    assert_eq!(
        leased_ids(&claim_with(&store, "c", secs(110), 1, &routing, &q).await),
        ["r2"]
    );
}

// ---------------------------------------------------------------------------------------
// Step rate limits (`Store::take_step_permit`, `Store::step_permits`)

/// A clock that always reads `at`.
struct Fixed(DateTime<Utc>);

impl reprise::Clock for Fixed {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

fn fixed(at: DateTime<Utc>) -> Arc<dyn reprise::Clock> {
    Arc::new(Fixed(at))
}

async fn step_permits_are_a_sliding_window_with_the_next_free_time(store: SharedStore) {
    let q = Queue::new("q").step_rate_limit(2, std::time::Duration::from_secs(10));
    let other = Queue::new("other").step_rate_limit(2, std::time::Duration::from_secs(10));
    assert_eq!(
        store
            .take_step_permit(&q, None, &fixed(t(0)))
            .await
            .unwrap(),
        Ok(())
    );
    assert_eq!(
        store
            .take_step_permit(&q, None, &fixed(t(secs(4))))
            .await
            .unwrap(),
        Ok(())
    );
    // Full: the next permit frees when the first leaves the window (0 s + 10 s).
    assert_eq!(
        store
            .take_step_permit(&q, None, &fixed(t(secs(5))))
            .await
            .unwrap(),
        Err(t(secs(10)))
    );
    assert_eq!(
        store.step_permits(&q, None, t(secs(5))).await.unwrap(),
        (2, Some(t(0)))
    );
    // Another queue has a window of its own.
    assert_eq!(
        store
            .take_step_permit(&other, None, &fixed(t(secs(5))))
            .await
            .unwrap(),
        Ok(())
    );
    // One microsecond before the first permit leaves, still full; at its edge, free.
    assert_eq!(
        store
            .take_step_permit(&q, None, &fixed(t(secs(10) - 1)))
            .await
            .unwrap(),
        Err(t(secs(10)))
    );
    assert_eq!(
        store
            .take_step_permit(&q, None, &fixed(t(secs(10))))
            .await
            .unwrap(),
        Ok(())
    );
    assert_eq!(
        store
            .take_step_permit(&q, None, &fixed(t(secs(11))))
            .await
            .unwrap(),
        Err(t(secs(14))),
        "now the oldest in the window is the one at 4 s"
    );
    assert_eq!(
        store.step_permits(&q, None, t(secs(11))).await.unwrap(),
        (2, Some(t(secs(4))))
    );
    assert_eq!(
        store.step_permits(&q, None, t(secs(30))).await.unwrap(),
        (0, None)
    );
}

async fn step_permits_per_key_count_each_key_alone(store: SharedStore) {
    let q = Queue::new("q")
        .key("/customer")
        .step_rate_limit_per_key(1, std::time::Duration::from_secs(60));
    assert_eq!(
        store
            .take_step_permit(&q, Some("A"), &fixed(t(0)))
            .await
            .unwrap(),
        Ok(())
    );
    assert_eq!(
        store
            .take_step_permit(&q, Some("A"), &fixed(t(secs(1))))
            .await
            .unwrap(),
        Err(t(secs(60)))
    );
    assert_eq!(
        store
            .take_step_permit(&q, Some("B"), &fixed(t(secs(1))))
            .await
            .unwrap(),
        Ok(()),
        "key B is not held back by key A"
    );
    assert_eq!(
        store.step_permits(&q, Some("A"), t(secs(2))).await.unwrap(),
        (1, Some(t(0)))
    );
    // Without a key, a per-key limit counts nothing and takes nothing.
    assert_eq!(
        store.step_permits(&q, None, t(secs(2))).await.unwrap(),
        (0, None)
    );
    let err = store
        .take_step_permit(&q, None, &fixed(t(secs(2))))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("queue `q` limits step attempts per key"),
        "{err}"
    );
}

async fn racing_step_permit_takers_never_exceed_the_window(store: SharedStore) {
    // At each of 40 instants 100 ms apart, 8 takers race for a permit; the limit is 5 per
    // second. However they interleave, no window of 1 s holds more than 5 granted
    // permits, and every window is used fully (the takers always want more).
    let q = Queue::new("q").step_rate_limit(5, std::time::Duration::from_secs(1));
    let mut granted = Vec::new();
    for tick in 0..40i64 {
        let now = t(tick * 100_000);
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let store = store.clone();
            let q = q.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .take_step_permit(&q, None, &fixed(now))
                    .await
                    .unwrap()
                    .is_ok()
            }));
        }
        for task in tasks {
            if task.await.unwrap() {
                granted.push(now);
            }
        }
    }
    for (i, at) in granted.iter().enumerate() {
        let in_window = granted[i..]
            .iter()
            .take_while(|b| **b < *at + chrono::Duration::seconds(1))
            .count();
        assert!(
            in_window <= 5,
            "{in_window} permits in the second from {at}"
        );
    }
    // 40 instants over 4 s: 4 full windows of 5, at 0 s, 1 s, 2 s and 3 s.
    assert_eq!(granted.len(), 20, "{granted:?}");
}

async fn step_permits_of_a_queue_without_a_step_limit_are_free(store: SharedStore) {
    let q = Queue::new("q").rate_limit(1, std::time::Duration::from_secs(60));
    for i in 0..3 {
        assert_eq!(
            store
                .take_step_permit(&q, None, &fixed(t(i)))
                .await
                .unwrap(),
            Ok(())
        );
    }
    assert_eq!(store.step_permits(&q, None, t(3)).await.unwrap(), (0, None));
}
