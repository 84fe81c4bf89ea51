//! Events: `ctx.wait_for_event::<T>("order.paid").matching("/order_id", value)` waits,
//! durably, for an event emitted with [`crate::Engine::emit`] (or `POST /events`) whose
//! data matches (DESIGN "Messages and composition").
//!
//! A wait is a receive over the run's inbox ([`super::inbox::receive`], kind `event`,
//! channel `event:<name>`) under the correlation id `event:<name>#n`:
//! - before it first looks at the inbox, a live wait registers the run as a waiter for the
//!   name (`Store::add_event_wait`), durably; `emit` posts each event to every registered
//!   run's inbox. So a wait sees only events emitted **after** it was registered (as
//!   Inngest's `waitForEvent`); an event that reached the run's inbox and that no wait took
//!   yet (it did not match) stays there for a later wait of the same name;
//! - an event whose data matches every `.matching` pointer and fits `T`'s schema is
//!   received: its receipt is recorded (`step_completed`, callee `recv:event`, output
//!   `{"seq", "payload": {"id", "data"}}`) and every replay returns the same data;
//! - an event whose data matches but does not fit `T` is *rejected* for this run: a
//!   recorded fact under `<wait-id>/rejected@<seq>` (`step_completed`, callee
//!   `recv:event-rejected`, output `{"seq", "id", "reason"}`); it neither wakes nor
//!   satisfies the wait, and no later wait of the run takes it;
//! - after a receipt the registration is removed (`Store::remove_event_wait`), and so are
//!   those left when the run ends (a wait that lost a select, a body that failed in another
//!   branch: [`forget_event_waits`]); `emit` also drops registrations of runs that have
//!   ended (canceled while waiting, or a removal that failed), so none outlive their run
//!   for long.

use std::future::IntoFuture;
use std::marker::PhantomData;

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::inbox::{Mode, Receive, receive};
use super::recorder::{Call, Entry, Shape};
use super::{Ctx, Wait};
use crate::ActionError;
use crate::error::kinds;
use crate::event::EventPayload;
use crate::message::{Message, event_channel};
use crate::schema::validator_for;
use crate::step::StepData;

/// The callee of a recorded event receipt.
pub(crate) const EVENT_KIND: &str = "event";
/// The callee of a recorded rejection of an event whose data does not fit the wait's type.
pub(crate) const REJECTED_CALLEE: &str = "recv:event-rejected";

/// A wait for an event: refine it with [`EventWait::matching`], then await it for the
/// event's data as `T`.
///
/// Created by [`Ctx::wait_for_event`]. Awaiting it yields `Ok(T)`, or an `Err` from the
/// recorder (non-determinism, a store failure); it never fails because of what was
/// emitted (data that does not fit `T` is rejected and recorded, and the wait goes on).
#[must_use = "a wait for an event does nothing until it is awaited"]
pub struct EventWait<T> {
    ctx: Ctx,
    name: String,
    id: String,
    /// `(pointer, value)`; `None`: a value that did not serialize, which matches nothing.
    matching: Vec<(String, Option<Value>)>,
    _data: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for EventWait<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventWait")
            .field("name", &self.name)
            .field("id", &self.id)
            .field("matching", &self.matching)
            .finish_non_exhaustive()
    }
}

impl Ctx {
    /// Waits, durably, for the next event named `name` (such as `order.paid`) emitted
    /// after this wait started, whose data deserializes as `T`. Recorded under the
    /// correlation id `event:<name>#n` (n counts the waits for `name` in this scope), so
    /// every replay returns the same event's data; the run holds nothing while it waits
    /// (status `waiting`) and an emitted event wakes it.
    ///
    /// Only events emitted after the wait was registered are seen: an event emitted before
    /// is not delivered to this run (emit before you wait and it is lost for this run).
    ///
    /// ```ignore
    /// #[derive(Serialize, Deserialize, JsonSchema)]
    /// struct Paid { order_id: String, amount: u64 }
    ///
    /// let paid: Paid = ctx
    ///     .wait_for_event::<Paid>("order.paid")
    ///     .matching("/order_id", &order.id)
    ///     .await?;
    /// ```
    pub fn wait_for_event<T: StepData>(&self, name: &str) -> EventWait<T> {
        let id = self.next_id(&format!("event:{name}"));
        EventWait {
            ctx: self.clone(),
            name: name.to_owned(),
            id,
            matching: Vec::new(),
            _data: PhantomData,
        }
    }
}

impl<T: StepData> EventWait<T> {
    /// A wait for event `name` recorded under the correlation id `id` (a workflow file's
    /// `event` step, whose id is its step id rather than `event:<name>#n`).
    pub(crate) fn at(ctx: &Ctx, id: String, name: &str) -> Self {
        EventWait {
            ctx: ctx.clone(),
            name: name.to_owned(),
            id,
            matching: Vec::new(),
            _data: PhantomData,
        }
    }

    /// Takes only an event whose data holds `value` at JSON pointer `pointer` (RFC 6901:
    /// `/order_id`, `/customer/id`, `/items/0/sku`; `""` is the whole data). Several
    /// `.matching` calls must all hold. An event that does not match stays in the run's
    /// inbox for another wait of the same name.
    ///
    /// A `value` that does not serialize (a map with non-string keys) matches nothing.
    pub fn matching(mut self, pointer: &str, value: impl serde::Serialize) -> Self {
        let value = serde_json::to_value(value).ok();
        self.matching.push((pointer.to_owned(), value));
        self
    }

    /// The wait's correlation id (`event:order.paid#0`, prefixed by its scope).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether `data` holds every `.matching` value.
    fn matches(&self, data: &Value) -> bool {
        self.matching
            .iter()
            .all(|(pointer, value)| value.is_some() && data.pointer(pointer) == value.as_ref())
    }

    /// The event adapter: registration, rejections, then the shared receive.
    async fn wait(self) -> Result<T, ActionError> {
        let run = &self.ctx.run;
        let channel = event_channel(&self.name);
        let finished = run
            .history
            .get(&self.id)
            .is_some_and(|recorded| recorded.outcome.is_some());
        // A live wait (not answered by the log, not a replay-only check) registers the run
        // first, then looks at the inbox: an event emitted in between is posted to it.
        let live = !finished && !run.replay_only();
        if live {
            // Counted as live while it reads and writes the store: the executor must not
            // suspend the run on another branch's wait while this one is still on its way
            // to registering its own.
            let _busy = run.live_step();
            run.env
                .store
                .add_event_wait(&run.run_id, &self.name)
                .await
                .map_err(|e| super::store_failure(run, e))?;
            *super::lock(&run.event_waits)
                .entry(self.name.clone())
                .or_default() += 1;
            self.reject_unfit(&channel).await?;
        }
        if !finished && run.replay_only() {
            // A replay-only check reached a wait the run had not finished: it waits here,
            // as the run did (the check compares the suspension with the recorded one).
            run.suspend(Wait::Message {
                id: self.id.clone(),
                channel: channel.clone(),
            });
            std::future::pending::<()>().await;
        }
        let validator = validator_for::<T>().map_err(|e| {
            ActionError::new(
                kinds::SCHEMA,
                format!("the type of event wait `{}`: {e}", self.id),
                false,
            )
        })?;
        let accept = |message: &Message| {
            let data = message.payload.get("data").unwrap_or(&Value::Null);
            self.matches(data) && validator.validate(data).is_ok()
        };
        let request = Receive {
            id: &self.id,
            kind: EVENT_KIND,
            channel: &channel,
            mode: Mode::Wait,
        };
        let payload = receive(&self.ctx, request, accept).await?;
        if live && last_open_wait(run, &self.name) {
            // Received, and no other wait of this execution waits for the name: the run no
            // longer waits for it (a later wait registers again). A failure here only
            // leaves a registration that `emit` or the run's end drops later.
            if let Err(error) = run
                .env
                .store
                .remove_event_wait(&run.run_id, &self.name)
                .await
            {
                tracing::warn!(run = %run.run_id, wait = %self.id, %error,
                    "could not remove the event wait registration after its receipt; \
                     the next emit of this name drops it");
            }
        }
        let data = payload
            .and_then(|mut p| p.get_mut("data").map(Value::take))
            .unwrap_or(Value::Null);
        serde_json::from_value(data).map_err(|e| {
            ActionError::new(
                kinds::SERDE,
                format!("data of event wait `{}`: {e}", self.id),
                false,
            )
        })
    }

    /// Records a rejection for every matching event in the inbox whose data does not fit
    /// `T` (and that no receipt or earlier rejection took): each is taken for good.
    async fn reject_unfit(&self, channel: &str) -> Result<(), ActionError> {
        let run = &self.ctx.run;
        let validator = validator_for::<T>().map_err(|e| {
            ActionError::new(
                kinds::SCHEMA,
                format!("the type of event wait `{}`: {e}", self.id),
                false,
            )
        })?;
        loop {
            let mut reason = String::new();
            let unfit = run
                .take_message(channel, |message| {
                    let data = message.payload.get("data").unwrap_or(&Value::Null);
                    if !self.matches(data) {
                        return false;
                    }
                    match validator.validate(data) {
                        Ok(()) => false,
                        Err(mut violation) => {
                            violation.what = format!("data of event `{}`", self.name);
                            reason = violation.to_string();
                            true
                        }
                    }
                })
                .await
                .map_err(|e| super::store_failure(run, e))?;
            let Some(message) = unfit else {
                return Ok(());
            };
            let event_id = message.payload.get("id").cloned().unwrap_or(Value::Null);
            let id = format!("{}/rejected@{}", self.id, message.seq);
            let call = Call {
                id: &id,
                callee: REJECTED_CALLEE,
                shape: Shape::Value,
                input: None,
                output: None,
            };
            if let Entry::Live(slot) = run.enter(&call).await? {
                tracing::warn!(
                    run = %run.run_id,
                    wait = %self.id,
                    event = %event_id,
                    %reason,
                    "event rejected for this run: its data does not fit the wait's type"
                );
                slot.finish_event(EventPayload::StepCompleted {
                    output: json!({ "seq": message.seq, "id": event_id, "reason": reason }),
                    callee: Some(REJECTED_CALLEE.to_owned()),
                    usage: None,
                    usage_total: None,
                    seeded: false,
                })
                .await?;
            }
        }
    }
}

/// Counts one open wait for `name` as closed; whether it was the last one.
fn last_open_wait(run: &super::RunState, name: &str) -> bool {
    let mut open = super::lock(&run.event_waits);
    match open.get_mut(name) {
        Some(count) if *count > 1 => {
            *count -= 1;
            false
        }
        _ => {
            open.remove(name);
            true
        }
    }
}

/// Removes the event-wait registrations of a run that has ended (`outcome` completed,
/// failed or canceled) and still had some (a wait that lost a select, a body that failed
/// while waiting in another branch). A failure is logged; `Engine::emit` drops stale
/// registrations of ended runs too.
pub(crate) async fn forget_event_waits(run: &super::RunState, outcome: &crate::RunOutcome) {
    use crate::RunOutcome::{Canceled, Completed, Failed};
    if !matches!(outcome, Completed(_) | Failed(_) | Canceled) {
        return;
    }
    let names = std::mem::take(&mut *super::lock(&run.event_waits));
    for name in names.into_keys() {
        if let Err(error) = run.env.store.remove_event_wait(&run.run_id, &name).await {
            tracing::warn!(run = %run.run_id, event = %name, %error,
                "could not remove the event wait registration of an ended run; the next \
                 emit of this name drops it");
        }
    }
}

impl<T: StepData> IntoFuture for EventWait<T> {
    type Output = Result<T, ActionError>;
    type IntoFuture = BoxFuture<'static, Result<T, ActionError>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.wait())
    }
}
