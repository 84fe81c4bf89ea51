//! Signals: `ctx.signal::<T>("paid")` in a workflow body receives, durably, the payloads
//! delivered to the run under that name (`Engine::signal`, `POST /runs/{id}/signals/paid`,
//! `ctx.send_signal` from another run).
//!
//! Each `recv()` / `try_recv()` is one receive over the run inbox ([`super::inbox::receive`])
//! with correlation id `signal:<name>#<n>` (`n` counts the receives of that name in the
//! namespace, taken when the future is created; `sub#0/signal:paid#0` in a sub-workflow):
//! its receipt (`step_completed`, callee `recv:signal`, output `{"seq", "payload"}`) is what
//! every replay returns. Signals of one name are received in delivery order, each once.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Value, json};

use super::Ctx;
use super::inbox::{Mode, Receive, receive};
use super::recorder::{Call, Entry, Shape};
use crate::ActionError;
use crate::delivery::SignalTarget;
use crate::error::kinds;
use crate::message::Posted;
use crate::step::{MessageKind, StepData};

/// The error kind of a signal `ctx.send_signal` could not deliver (unknown run or name,
/// ended run, invalid payload): permanent, recorded as the step's failure.
pub const SIGNAL_REFUSED: &str = "signal_refused";

/// A signal a workflow body receives: `ctx.signal::<T>("paid")`. Cheap to clone; each
/// [`Signal::recv`] takes the next payload delivered under the name.
///
/// Write the name as a string literal and the payload type in the turbofish: `#[workflow]`
/// collects them, so a delivery to a run of the workflow is checked against both.
#[must_use = "a signal handle receives nothing until `.recv()` is awaited"]
pub struct Signal<T> {
    ctx: Ctx,
    name: Arc<str>,
    _payload: PhantomData<fn() -> T>,
}

impl<T> Clone for Signal<T> {
    fn clone(&self) -> Self {
        Signal {
            ctx: self.ctx.clone(),
            name: self.name.clone(),
            _payload: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Signal<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signal")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Ctx {
    /// The signal `name` of this run, with payloads of type `T`:
    ///
    /// ```ignore
    /// #[derive(Serialize, Deserialize, JsonSchema)]
    /// struct Paid { amount_cents: u64 }
    ///
    /// let paid = ctx.signal::<Paid>("paid").recv().await?;   // waits, durably
    /// ```
    ///
    /// `name` must be a string literal in a `#[workflow]` body (1 to 100 ASCII letters,
    /// digits, `-`, `_`, `.`), and `T` written in the turbofish: the macro collects both
    /// into the workflow's registration, which deliveries are checked against.
    pub fn signal<T: StepData>(&self, name: &str) -> Signal<T> {
        Signal {
            ctx: self.clone(),
            name: Arc::from(name),
            _payload: PhantomData,
        }
    }

    /// Sends signal `name` with `payload` to another run — `target` is a [`crate::RunId`],
    /// or `(workflow_slug, business_key)` — as a recorded step (id `send-signal:<name>#<n>`,
    /// callee `send-signal`) whose output is the [`Posted`] receipt. The delivery is
    /// de-duplicated by `<this-run-id>/<step-id>`, so a replay or a crash mid-step delivers
    /// once.
    ///
    /// ```ignore
    /// ctx.send_signal(("fulfil-order", "order-42"), "paid", &Paid { amount_cents: 1200 }).await?;
    /// ```
    ///
    /// # Errors
    /// A permanent [`SIGNAL_REFUSED`] error, recorded, when the delivery is refused (no
    /// such run, key or signal name, the run has ended, the payload does not match);
    /// `serde` when the payload does not serialize.
    pub fn send_signal<P: Serialize>(
        &self,
        target: impl Into<SignalTarget>,
        name: &str,
        payload: &P,
    ) -> impl Future<Output = Result<Posted, ActionError>> + Send + 'static {
        let id = self.next_id(&format!("send-signal:{name}"));
        let ctx = self.clone();
        let target = target.into();
        let name = name.to_owned();
        let payload = serde_json::to_value(payload);
        async move {
            let payload = payload.map_err(|e| {
                ActionError::new(
                    kinds::SERDE,
                    format!("payload of signal `{name}` (step `{id}`): {e}"),
                    false,
                )
            })?;
            send_signal(ctx, id, target, name, payload).await
        }
    }
}

/// The send-signal adapter over the recorder: a leaf step whose live body delivers.
async fn send_signal(
    ctx: Ctx,
    id: String,
    target: SignalTarget,
    name: String,
    payload: Value,
) -> Result<Posted, ActionError> {
    let run = &ctx.run;
    let input = json!({ "target": &target, "name": &name, "payload": payload });
    let call = Call {
        id: &id,
        callee: "send-signal",
        shape: Shape::Leaf,
        input: Some(&input),
        output: None,
    };
    let mut slot = match run.enter(&call).await? {
        Entry::Replayed(outcome) => {
            return serde_json::from_value(outcome?).map_err(|e| {
                ActionError::new(
                    kinds::SERDE,
                    format!("recorded output of step `{id}`: {e}"),
                    false,
                )
            });
        }
        Entry::Live(slot) => slot,
    };
    slot.started("send-signal", input.clone());
    let env = &run.env;
    let payload = input.get("payload").cloned().unwrap_or(Value::Null);
    let dedupe = format!("{}/{id}", run.run_id);
    let delivered = async {
        let to = target.resolve(env).await?;
        crate::delivery::deliver(env, &to, MessageKind::Signal, &name, payload, Some(dedupe)).await
    }
    .await;
    match delivered {
        Ok((posted, _)) => {
            let output = serde_json::to_value(posted).unwrap_or(Value::Null);
            slot.finish_step(Ok(output), 1, None).await?;
            Ok(posted)
        }
        // Not recorded: the step runs again when the run resumes (delivered once by its
        // de-duplication key).
        Err(error) if error.is_store() => Err(super::store_failure(run, error)),
        Err(error) => {
            let refused = ActionError::new(
                SIGNAL_REFUSED,
                format!("signal `{name}` was not delivered: {error}"),
                false,
            );
            slot.finish_step(Err(refused.clone()), 1, None).await?;
            Err(refused)
        }
    }
}

impl<T: StepData> Signal<T> {
    /// The signal's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits, durably, for the next payload delivered under this name and returns it: at
    /// once when one was delivered before (even before the run started waiting), else
    /// the run suspends (status `waiting`) until a delivery wakes it.
    ///
    /// # Errors
    /// `serde` when the recorded payload no longer deserializes as `T`; the run's poison
    /// (non-determinism, a store failure).
    pub fn recv(&self) -> impl Future<Output = Result<T, ActionError>> + Send + 'static {
        let received = self.receive(Mode::Wait);
        async move {
            let (id, payload) = received.await?;
            decode(&id, payload.unwrap_or(Value::Null))
        }
    }

    /// The next payload delivered under this name if one is there, else `None`, without
    /// waiting. The answer is recorded: every replay returns the same `Some`/`None`.
    ///
    /// # Errors
    /// As [`Signal::recv`].
    pub fn try_recv(
        &self,
    ) -> impl Future<Output = Result<Option<T>, ActionError>> + Send + 'static {
        let received = self.receive(Mode::Try);
        async move {
            match received.await? {
                (id, Some(payload)) => decode(&id, payload).map(Some),
                (_, None) => Ok(None),
            }
        }
    }

    /// One receive of this signal (its id taken now, when the future is created), with
    /// the receive's id and the payload, if any.
    fn receive(
        &self,
        mode: Mode,
    ) -> impl Future<Output = Result<(String, Option<Value>), ActionError>> + Send + 'static {
        let id = self.ctx.next_id(&format!("signal:{}", self.name));
        let ctx = self.ctx.clone();
        let channel = crate::message::signal_channel(&self.name);
        async move {
            let receive_as = Receive {
                id: &id,
                kind: "signal",
                channel: &channel,
                mode,
            };
            let payload = receive(&ctx, receive_as, |_| true).await?;
            Ok((id, payload))
        }
    }
}

/// The next payload delivered to the run as signal `name`, received (waiting durably)
/// under the correlation id `id` — a workflow file's `signal` step, whose id is its step
/// id rather than `signal:<name>#n`. The receipt is recorded as for [`Signal::recv`].
///
/// # Errors
/// The recorder's errors (non-determinism, poison), a store failure.
pub(crate) async fn receive_at(ctx: &Ctx, id: &str, name: &str) -> Result<Value, ActionError> {
    let channel = crate::message::signal_channel(name);
    let receive_as = Receive {
        id,
        kind: "signal",
        channel: &channel,
        mode: Mode::Wait,
    };
    Ok(receive(ctx, receive_as, |_| true)
        .await?
        .unwrap_or(Value::Null))
}

/// Declarations of signals `names` whose payloads may be any JSON value, for a workflow
/// registered at run time (a workflow file's `signal` steps, listed in its
/// `WorkflowOptions::messages`): deliveries of those names are accepted
/// (`Engine::signal` refuses names a workflow does not declare); a `signal` step checks
/// its own `schema` when it receives one. Duplicates are dropped. Leaked, like the rest of a
/// loaded file's manifest (once per load).
pub(crate) fn any_payload_signals<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> &'static [crate::step::MessageDecl] {
    let mut names: Vec<&str> = names.into_iter().collect();
    names.sort_unstable();
    names.dedup();
    let decls: Vec<crate::step::MessageDecl> = names
        .into_iter()
        .map(|name| crate::step::MessageDecl {
            kind: MessageKind::Signal,
            name: Box::leak(name.to_owned().into_boxed_str()),
            payload: crate::schema::validator_for::<Value>,
            reply: None,
        })
        .collect();
    Box::leak(decls.into_boxed_slice())
}

/// A received payload as `T`.
pub(crate) fn decode<T: StepData>(id: &str, payload: Value) -> Result<T, ActionError> {
    serde_json::from_value(payload).map_err(|e| {
        ActionError::new(
            kinds::SERDE,
            format!("payload received by `{id}`: {e}"),
            false,
        )
    })
}
