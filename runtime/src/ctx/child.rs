//! Child runs: `wf.start(input)` in a workflow body starts workflow `wf` as its own run
//! (its own id, log, retries and lease), linked to its parent (DESIGN "Messages and
//! composition").
//!
//! Starting is a recorded step (id `start:<slug>#n`, kind `child`) whose output is
//! `{"run_id": …}`. The child is created with `Store::create_run_once` under the key
//! `child:<parent-run-id>/<correlation-id>`, so a parent that crashes after creating it and
//! replays the start finds the same child: exactly one child per start, across crashes.
//! The child's `run_created` names its parent (`parent: {run_id, step}`) and its trigger is
//! `child`.
//!
//! Awaiting the returned [`ChildRun`] is a receive (see [`super::inbox`]) under id
//! `<start-id>$result`, kind `child`, on channel `child:<child-run-id>`: when the child ends
//! (completed, failed, canceled) the engine posts its outcome into the parent's inbox
//! (de-duplicated by `child-result:<child-id>`), which wakes the parent. An await that finds
//! no message reads the child's record and posts the outcome itself when the child has
//! ended, so a crash between the child's end and the post loses nothing.

use std::marker::PhantomData;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Ctx;
use super::inbox::{Mode, Receive, receive};
use super::recorder::{Call, Entry, Shape};
use super::sleep::SleepDuration;
use crate::error::kinds;
use crate::event::{EventPayload, NewEvent, ParentRun, RunId, RunRecord, RunStatus, Trigger};
use crate::message::{NewMessage, child_channel};
use crate::schema::validator_for;
use crate::step::{Site, Step, StepBehavior};
use crate::store::Store;
use crate::{ActionError, WorkflowError};

/// The `kind` a child start records in its `step_started` event.
pub(crate) const CHILD_KIND: &str = "child";

/// The prefix of a child start's site key: `start:ship-order`, `start:ship-order@2`.
pub(crate) const START_PREFIX: &str = "start:";

/// The site key of a `.start(..)` / `.start_after(..)` site whose callee has slug `slug`:
/// `start:<slug>` (`start:<slug>@<n>` for the n-th site of the callee), or
/// `start:<pinned>` for a `#[step(id = "…")]` pin. The prefix keeps it apart from the
/// `.run(..)` sites of the same workflow.
pub(crate) fn start_key(site: &Site, slug: &str) -> String {
    format!("{START_PREFIX}{}", site.key(slug))
}

/// Whether correlation id `id` is a child start (its last segment starts with `start:`).
pub(crate) fn is_start_id(id: &str) -> bool {
    id.rsplit('/')
        .next()
        .is_some_and(|last| last.starts_with(START_PREFIX))
}

/// What becomes of an attached child run, still running, when its parent ends (completes,
/// fails or is canceled). Detached children ([`StartChild::detach`]) are never touched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ParentClose {
    /// The child is canceled (the default).
    #[default]
    Cancel,
    /// The child goes on to its own end; nobody awaits its result.
    Abandon,
}

/// `wf.start(input)` in a workflow body, not yet started: set options, then `.await` it
/// for a [`ChildRun`] handle, or call [`StartChild::detach`].
///
/// ```ignore
/// let ship = ship_order.start(order.clone()).await?;       // a ChildRun<Shipment>
/// tracing::info!(child = %ship.id(), "shipping");
/// let shipment = ship.await?;                               // the child's output
/// let audit = audit_trail.start(order).detach().await?;     // outlives this run
/// ```
#[must_use = "a child run starts only when the start is awaited (or detached and awaited)"]
pub struct StartChild<W: Step> {
    /// What the start needs, until it is first polled.
    parts: Option<Box<Parts<W>>>,
    /// The start, once polled.
    running: Option<BoxFuture<'static, Result<ChildRun<W::Output>, ActionError>>>,
}

struct Parts<W: Step> {
    ctx: Ctx,
    id: String,
    input: W::Input,
    delay: Result<Option<Duration>, ActionError>,
    on_parent_close: ParentClose,
    detached: bool,
}

impl<W: Step> StartChild<W> {
    /// What becomes of the child if the parent ends first: canceled
    /// ([`ParentClose::Cancel`], the default) or left to finish ([`ParentClose::Abandon`]).
    /// Recorded with the start (changing it changes the start's input digest).
    pub fn on_parent_close(mut self, policy: ParentClose) -> Self {
        if let Some(parts) = &mut self.parts {
            parts.on_parent_close = policy;
        }
        self
    }

    /// Starts the child detached: it outlives the parent (never canceled by it) and no
    /// result is awaited. Returns the child's run id (recorded: a replay returns the same).
    ///
    /// # Errors
    /// As awaiting the start.
    pub fn detach(mut self) -> impl Future<Output = Result<RunId, ActionError>> + Send + 'static {
        if let Some(parts) = &mut self.parts {
            parts.detached = true;
        }
        async move { Ok(self.await?.id) }
    }
}

impl<W: Step> Future for StartChild<W> {
    type Output = Result<ChildRun<W::Output>, ActionError>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.get_mut();
        if this.running.is_none()
            && let Some(parts) = this.parts.take()
        {
            this.running = Some(Box::pin(parts.start()));
        }
        match &mut this.running {
            Some(running) => running.as_mut().poll(cx),
            None => std::task::Poll::Ready(Err(polled_after_completion())),
        }
    }
}

fn polled_after_completion() -> ActionError {
    ActionError::new(
        kinds::SERDE,
        "a child-run future was polled after it completed",
        false,
    )
}

impl<W: Step> Parts<W> {
    async fn start(self: Box<Self>) -> Result<ChildRun<W::Output>, ActionError> {
        let Parts {
            ctx,
            id,
            input,
            delay,
            on_parent_close,
            detached,
        } = *self;
        let delay = delay?;
        if !matches!(W::BEHAVIOR, StepBehavior::Workflow { .. }) {
            return Err(ActionError::new(
                kinds::NOT_A_WORKFLOW,
                format!(
                    "`{}` is an action: `.start(..)` starts a workflow as a child run; use \
                     `.run(..)` for actions",
                    W::SLUG
                ),
                false,
            ));
        }
        let input = serde_json::to_value(&input).map_err(|e| {
            ActionError::new(kinds::SERDE, format!("input of `{}`: {e}", W::SLUG), false)
        })?;
        let mut recorded = json!({
            "workflow": W::SLUG,
            "input": input,
            "on_parent_close": on_parent_close,
            "detached": detached,
        });
        if let (Some(delay), Value::Object(fields)) = (delay, &mut recorded) {
            let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
            fields.insert("delay_ms".to_owned(), Value::from(ms));
        }
        let run = &ctx.run;
        let call = Call {
            id: &id,
            callee: W::SLUG,
            shape: Shape::Leaf,
            input: Some(&recorded),
            output: None,
        };
        let mut slot = match run.enter(&call).await? {
            Entry::Replayed(outcome) => {
                let child = recorded_child(&id, outcome?)?;
                return Ok(ChildRun::new(ctx.clone(), &id, child));
            }
            Entry::Live(slot) => slot,
        };
        slot.started(CHILD_KIND, recorded.clone());
        let outcome = create_child::<W>(&ctx, &id, input, delay).await;
        let output = outcome.map(|child| json!({ "run_id": child }));
        let child = match &output {
            Ok(output) => recorded_child(&id, output.clone()),
            Err(error) => Err(error.clone()),
        };
        slot.finish_step(output, 1, None).await?;
        Ok(ChildRun::new(ctx.clone(), &id, child?))
    }
}

/// The run id a recorded start holds.
fn recorded_child(id: &str, output: Value) -> Result<RunId, ActionError> {
    match output.get("run_id").and_then(Value::as_str) {
        Some(child) => Ok(RunId::from(child)),
        None => Err(ActionError::new(
            kinds::SERDE,
            format!("the recorded start `{id}` holds no child run id: {output}"),
            false,
        )),
    }
}

/// Creates the child run once per parent and start id; returns its id.
async fn create_child<W: Step>(
    ctx: &Ctx,
    id: &str,
    input: Value,
    delay: Option<Duration>,
) -> Result<RunId, ActionError> {
    let run = &ctx.run;
    validator_for::<W::Input>()
        .map_err(|e| ActionError::new(kinds::SCHEMA, e.to_string(), false))?
        .validate(&input)
        .map_err(|mut violation| {
            violation.what = format!("input of child run `{id}` (`{}`)", W::SLUG);
            ActionError::from(violation)
        })?;
    let workflow_queue = match W::BEHAVIOR {
        crate::step::StepBehavior::Workflow { options, .. } => options.queue,
        crate::step::StepBehavior::Action { .. } => None,
    };
    // A child run goes through its workflow's queue, as any other start does.
    let queue = crate::queue::QueueSettings::of(&run.env)
        .place(
            W::SLUG,
            workflow_queue,
            &crate::queue::QueueRequest::default(),
            &input,
        )
        .map_err(|e| ActionError::new(kinds::SCHEMA, format!("child run `{id}`: {e}"), false))?
        .map(|(placed, _)| placed);
    let now = run.env.now();
    let start_at = match delay {
        None => None,
        Some(delay) => Some(
            chrono::Duration::from_std(delay)
                .ok()
                .and_then(|d| now.checked_add_signed(d))
                .ok_or_else(|| {
                    ActionError::new(
                        "invalid_duration",
                        format!("the delay of child run `{id}` is too long"),
                        false,
                    )
                })?,
        ),
    };
    let record = RunRecord {
        // Derived from the parent's id and the start step's id: a re-executed start
        // creates (or finds) the same child.
        id: RunId::derived(&run.run_id, id),
        workflow: W::SLUG.to_owned(),
        status: RunStatus::Queued,
        input: input.clone(),
        output: None,
        error: None,
        attempt: 0,
        trigger: Trigger::Child,
        created_at: now,
        updated_at: now,
        wake_at: start_at.filter(|at| *at > now),
        next_seq: 1,
        queue: queue.clone(),
    };
    let created = NewEvent::new(
        None,
        0,
        now,
        EventPayload::RunCreated {
            workflow: W::SLUG.to_owned(),
            input,
            trigger: Trigger::Child,
            start_at,
            forked_from: None,
            traceparent: run.history.traceparent().map(|t| t.to_string()),
            parent: Some(ParentRun {
                run_id: run.run_id.clone(),
                step: id.to_owned(),
                started: None,
            }),
            continued_from: None,
            queue: queue.map(Box::new),
            key: None,
            event: None,
            // A child acts for its parent's user, project and subscriber.
            identity: Some(Box::new(crate::identity::RunIdentity {
                actor: crate::identity::Actor::Run {
                    run_id: run.run_id.to_string(),
                    relation: crate::identity::RunRelation::Parent,
                },
                ..(**run.history.identity()).clone()
            })),
        },
    );
    let child = record.id.clone();
    let key = format!("child:{}/{id}", run.run_id);
    let existing = run
        .env
        .store
        .create_run_once(&key, record, created)
        .await
        .map_err(|e| super::store_failure(run, e))?;
    match existing {
        Some(existing) => Ok(existing),
        None => {
            run.env.announce_created(&child, W::SLUG);
            tracing::info!(run = %run.run_id, child = %child, step = id, "child run started");
            Ok(child)
        }
    }
}

/// `wf.start(input)` in a workflow body (the `#[workflow]` macro rewrites it into this):
/// the child start of site `site`, its correlation id taken now.
pub fn start_child<W: Step>(
    ctx: &Ctx,
    site: &'static Site,
    workflow: &W,
    input: W::Input,
) -> StartChild<W> {
    let _ = workflow;
    StartChild {
        parts: Some(Box::new(Parts {
            id: ctx.next_id(&start_key(site, W::SLUG)),
            ctx: ctx.clone(),
            input,
            delay: Ok(None),
            on_parent_close: ParentClose::default(),
            detached: false,
        })),
        running: None,
    }
}

/// `wf.start_after(delay, input)` in a workflow body: a child run created `queued`, due
/// `delay` after the start is recorded (a [`Duration`], a [`chrono::TimeDelta`] or a
/// humantime string such as `"10m"`).
pub fn start_child_after<W: Step>(
    ctx: &Ctx,
    site: &'static Site,
    workflow: &W,
    delay: impl SleepDuration,
    input: W::Input,
) -> StartChild<W> {
    let mut start = start_child(ctx, site, workflow, input);
    if let Some(parts) = &mut start.parts {
        parts.delay = delay.to_duration().map(Some);
    }
    start
}

/// A started child run: [`ChildRun::id`] names it; `.await` gives its result, durably (a
/// recorded receive: across crashes of the parent or the child, every replay gets the same).
///
/// The result is the child's output, or an error: kind `child_failed` when the child
/// failed (its error in `details`, its message quoted), kind `canceled` when it was
/// canceled. Dropping the handle without awaiting it leaves the child running (and, by
/// default, canceled when the parent ends).
#[must_use = "await the child run for its result, or drop it to leave it running"]
pub struct ChildRun<O> {
    ctx: Ctx,
    id: RunId,
    /// The correlation id of the result's receive (`start:ship-order#0$result`).
    result_id: String,
    /// The receive, once polled.
    running: Option<BoxFuture<'static, Result<O, ActionError>>>,
    _output: PhantomData<fn() -> O>,
}

impl<O> std::fmt::Debug for ChildRun<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildRun")
            .field("id", &self.id)
            .field("result_id", &self.result_id)
            .finish_non_exhaustive()
    }
}

impl<O> ChildRun<O> {
    fn new(ctx: Ctx, start_id: &str, id: RunId) -> Self {
        ChildRun {
            ctx,
            id,
            result_id: format!("{start_id}$result"),
            running: None,
            _output: PhantomData,
        }
    }

    /// The child's run id.
    pub fn id(&self) -> &RunId {
        &self.id
    }
}

impl<O: serde::de::DeserializeOwned + Send + 'static> ChildRun<O> {
    /// Waits for the child's result at most `duration` (a [`std::time::Duration`], a
    /// [`chrono::TimeDelta`] or a humantime string such as `"1h"`), counted from when the
    /// timeout is first awaited: a durable select of the result against a durable timer,
    /// recorded under `<start-id>$result$timeout` (the timer under `…$timeout$timer`), so
    /// every replay takes the same branch and a restart keeps the deadline. When the timer
    /// wins the result is a permanent error of kind `timeout`
    /// ([`ActionError::is_timeout`]). The timeout gives up on the result, not on the run:
    /// the child goes on until its parent ends, when its [`ParentClose`] policy applies
    /// (by default it is canceled then).
    ///
    /// ```ignore
    /// let child = ship_parcel.start(shipment).await?;
    /// match child.timeout("2h").await {
    ///     Ok(shipped) => { /* … */ }
    ///     Err(e) if e.is_timeout() => { /* escalate */ }
    ///     Err(e) => return Err(e.into()),
    /// }
    /// ```
    ///
    /// # Errors
    /// The child's own outcome (as awaiting the handle), kind `timeout` when the timer won,
    /// kind `invalid_duration` when `duration` does not parse.
    pub fn timeout(
        self,
        duration: impl super::sleep::SleepDuration,
    ) -> impl Future<Output = Result<O, ActionError>> + Send + 'static {
        let ctx = self.ctx.clone();
        let id = format!("{}$timeout", self.result_id);
        super::timeout::timeout_as(ctx, id, self, duration)
    }
}

impl<O: serde::de::DeserializeOwned + Send + 'static> Future for ChildRun<O> {
    type Output = Result<O, ActionError>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.get_mut();
        let running = this.running.get_or_insert_with(|| {
            Box::pin(await_child(
                this.ctx.clone(),
                this.id.clone(),
                this.result_id.clone(),
            ))
        });
        running.as_mut().poll(cx)
    }
}

/// The child's result: its recorded receipt, or a receive of its outcome message.
async fn await_child<O: serde::de::DeserializeOwned>(
    ctx: Ctx,
    id: RunId,
    result_id: String,
) -> Result<O, ActionError> {
    let run = &ctx.run;
    let recorded = run
        .history
        .get(&result_id)
        .is_some_and(|r| r.outcome.is_some());
    if !recorded && !run.replay_only() {
        // A child that ended without its post reaching us (a crash in between): post its
        // outcome now (idempotent).
        // (Counted as live while it reads the store: see `inbox::receive`.)
        let _busy = run.live_step();
        if let Ok(Some(child)) = run.env.store.run(&id).await {
            let _ = post_result(&*run.env.store, &child, &run.run_id, &id).await;
        }
    }
    let channel = child_channel(&id);
    let receipt = Receive {
        id: &result_id,
        kind: CHILD_KIND,
        channel: &channel,
        mode: Mode::Wait,
    };
    let payload = receive(&ctx, receipt, |_| true)
        .await?
        .unwrap_or(Value::Null);
    child_outcome(&id, payload)
}

/// The message payload of an ended child's outcome: `{"status": "completed", "output"}`,
/// `{"status": "failed", "error"}` or `{"status": "canceled"}`; `None` while it runs.
pub(crate) fn result_payload(child: &RunRecord) -> Option<Value> {
    match child.status {
        RunStatus::Completed => Some(json!({
            "status": "completed",
            "output": child.output.clone().unwrap_or(Value::Null),
        })),
        RunStatus::Failed => Some(json!({
            "status": "failed",
            "error": child.error.clone().unwrap_or(Value::Null),
        })),
        RunStatus::Canceled => Some(json!({ "status": "canceled" })),
        _ => None,
    }
}

/// Posts the outcome of ended run `child` into `parent`'s inbox on the channel of
/// `started` (the run the parent started: `child` itself, or the first run of its
/// continue-as-new chain). Idempotent (de-duplicated by `child-result:<started>`); nothing
/// is posted while `child` runs, or when it ended by continuing as new.
///
/// # Errors
/// Store failures.
pub(crate) async fn post_result(
    store: &dyn Store,
    child: &RunRecord,
    parent: &RunId,
    started: &RunId,
) -> Result<(), crate::EngineError> {
    let Some(payload) = result_payload(child) else {
        return Ok(());
    };
    if continued_as(child).is_some() {
        return Ok(()); // its continuation posts the result when it ends
    }
    store
        .post_message(NewMessage {
            run_id: parent.clone(),
            channel: child_channel(started),
            payload,
            dedupe: Some(format!("child-result:{started}")),
            at: child.updated_at,
        })
        .await?;
    Ok(())
}

/// The run a completed run continued as (`ctx.continue_as_new`), from its output.
pub(crate) fn continued_as(record: &RunRecord) -> Option<RunId> {
    if record.status != RunStatus::Completed {
        return None;
    }
    let output = record.output.as_ref()?.as_object()?;
    if output.len() != 1 {
        return None;
    }
    output
        .get(super::continue_as_new::CONTINUED_AS)
        .and_then(Value::as_str)
        .map(RunId::from)
}

/// The body's view of a child's outcome message.
fn child_outcome<O: serde::de::DeserializeOwned>(
    id: &RunId,
    payload: Value,
) -> Result<O, ActionError> {
    let status = payload.get("status").and_then(Value::as_str).unwrap_or("");
    match status {
        "completed" => {
            let output = payload.get("output").cloned().unwrap_or(Value::Null);
            serde_json::from_value(output).map_err(|e| {
                ActionError::new(
                    kinds::SERDE,
                    format!("the output of child run {id} does not decode: {e}"),
                    false,
                )
            })
        }
        "failed" => {
            let error = payload.get("error").cloned().unwrap_or(Value::Null);
            let message = serde_json::from_value::<WorkflowError>(error.clone())
                .map(|e| format!("{}: {}", e.kind, e.message))
                .unwrap_or_else(|_| error.to_string());
            let mut failed = ActionError::new(
                kinds::CHILD_FAILED,
                format!("child run {id} failed: {message}"),
                false,
            );
            failed.details = Some(error);
            Err(failed)
        }
        "canceled" => Err(ActionError::new(
            kinds::CANCELED,
            format!("child run {id} was canceled"),
            false,
        )),
        _ => Err(ActionError::new(
            kinds::SERDE,
            format!("the result message of child run {id} is not an outcome: {payload}"),
            false,
        )),
    }
}

impl super::RunState {
    /// Whether this execution reached a child start (replayed or live): only then can the
    /// run have children to cancel when it ends.
    pub(crate) fn started_children(&self) -> bool {
        super::lock(&self.counters)
            .keys()
            .any(|key| is_start_id(key))
    }
}
