//! Updates: `ctx.updates::<Req, Resp>("set-limit")` in a workflow body receives requests
//! that a caller sends and waits on (`Engine::update`, `POST /runs/{id}/updates/{name}`);
//! the body answers each with [`UpdateRequest::reply`].
//!
//! A request is a message on the inbox channel `update:<name>`, received like a signal
//! (id `update:<name>#<n>`, a receipt with callee `recv:update` and output
//! `{"seq", "payload"}`); the reply is a recorded step (id `update:<name>#<n>$reply`,
//! callee `update-reply`, output `{"seq": <the request's seq>, "ok": <Resp>}` or
//! `{"seq", "error": "<message>"}`), which the waiting caller reads from the log.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use super::Ctx;
use super::inbox::{Mode, Receive, receive};
use crate::ActionError;
use crate::error::kinds;
use crate::step::StepData;

/// The callee of recorded update replies.
pub(crate) const UPDATE_REPLY: &str = "update-reply";

/// The suffix of a reply's correlation id (`update:set-limit#0$reply`).
pub(crate) const REPLY_SUFFIX: &str = "$reply";

/// The update requests named `name` a workflow body receives:
/// `ctx.updates::<Req, Resp>("set-limit")`. Cheap to clone; each [`Updates::recv`] takes
/// the next request.
#[must_use = "an updates handle receives nothing until `.recv()` is awaited"]
pub struct Updates<Req, Resp> {
    ctx: Ctx,
    name: Arc<str>,
    _types: PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> Clone for Updates<Req, Resp> {
    fn clone(&self) -> Self {
        Updates {
            ctx: self.ctx.clone(),
            name: self.name.clone(),
            _types: PhantomData,
        }
    }
}

impl<Req, Resp> std::fmt::Debug for Updates<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Updates")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// One update request received by the body: read it with [`UpdateRequest::input`], answer
/// it with [`UpdateRequest::reply`] (the caller waits for that answer).
#[must_use = "the caller waits until the request is answered with `.reply(..)`"]
pub struct UpdateRequest<Req, Resp> {
    ctx: Ctx,
    id: String,
    seq: u64,
    input: Req,
    _reply: PhantomData<fn() -> Resp>,
}

impl<Req: std::fmt::Debug, Resp> std::fmt::Debug for UpdateRequest<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpdateRequest")
            .field("id", &self.id)
            .field("seq", &self.seq)
            .field("input", &self.input)
            .finish_non_exhaustive()
    }
}

impl Ctx {
    /// The update `name` of this run: requests of type `Req`, answered with `Resp`.
    ///
    /// ```ignore
    /// let limits = ctx.updates::<SetLimit, Limit>("set-limit");
    /// let request = limits.recv().await?;            // waits, durably
    /// let ok = request.input().cents <= 100_000;
    /// request.reply(if ok { Ok(Limit { cents: request.input().cents }) }
    ///               else { Err("over the maximum of 100000".into()) }).await?;
    /// ```
    ///
    /// As for signals, `name` must be a string literal and both types written in the
    /// turbofish in a `#[workflow]` body: requests are validated against `Req` before they
    /// are posted.
    pub fn updates<Req: StepData, Resp: StepData>(&self, name: &str) -> Updates<Req, Resp> {
        Updates {
            ctx: self.clone(),
            name: Arc::from(name),
            _types: PhantomData,
        }
    }
}

impl<Req: StepData, Resp: StepData> Updates<Req, Resp> {
    /// The update's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits, durably, for the next request (at once when one is queued).
    ///
    /// # Errors
    /// `serde` when the recorded request no longer deserializes as `Req`; the run's poison.
    pub fn recv(
        &self,
    ) -> impl Future<Output = Result<UpdateRequest<Req, Resp>, ActionError>> + Send + 'static {
        let id = self.ctx.next_id(&format!("update:{}", self.name));
        let ctx = self.ctx.clone();
        let channel = crate::message::update_channel(&self.name);
        async move {
            let taken = AtomicU64::new(0);
            let receive_as = Receive {
                id: &id,
                kind: "update",
                channel: &channel,
                mode: Mode::Wait,
            };
            let payload = receive(&ctx, receive_as, |message| {
                taken.store(message.seq, Ordering::Relaxed);
                true
            })
            .await?;
            // Live: the message just taken; replayed: the seq its receipt recorded.
            let seq = match taken.load(Ordering::Relaxed) {
                0 => recorded_seq(&ctx, &id)?,
                seq => seq,
            };
            let input = super::signal::decode(&id, payload.unwrap_or(Value::Null))?;
            Ok(UpdateRequest {
                ctx,
                id,
                seq,
                input,
                _reply: PhantomData,
            })
        }
    }
}

/// The inbox seq a recorded receipt of `id` took.
fn recorded_seq(ctx: &Ctx, id: &str) -> Result<u64, ActionError> {
    ctx.run
        .history
        .get(id)
        .and_then(|r| match &r.outcome {
            Some(Ok(receipt)) => receipt.get("seq").and_then(Value::as_u64),
            _ => None,
        })
        .ok_or_else(|| {
            ActionError::new(
                kinds::SERDE,
                format!("the recorded receipt of `{id}` holds no inbox seq"),
                false,
            )
        })
}

impl<Req: StepData, Resp: StepData> UpdateRequest<Req, Resp> {
    /// The request.
    pub fn input(&self) -> &Req {
        &self.input
    }

    /// The request's position in the run's inbox (what the caller's reply is matched by).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The request's correlation id (`update:set-limit#0`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Answers the request: `Ok(resp)` is returned to the caller, `Err(message)` fails
    /// the caller's `Engine::update` with [`crate::EngineError::UpdateRejected`] (HTTP
    /// 422). Recorded (id `<request id>$reply`): a replay answers nothing again.
    ///
    /// # Errors
    /// `serde` when `Resp` does not serialize; `payload_too_large` over the payload limit;
    /// the run's poison.
    pub fn reply(
        self,
        result: Result<Resp, String>,
    ) -> impl Future<Output = Result<(), ActionError>> + Send + 'static {
        let id = format!("{}{REPLY_SUFFIX}", self.id);
        let output = match result {
            Ok(resp) => serde_json::to_value(resp)
                .map(|ok| json!({ "seq": self.seq, "ok": ok }))
                .map_err(|e| {
                    ActionError::new(kinds::SERDE, format!("reply of `{}`: {e}", self.id), false)
                }),
            Err(message) => Ok(json!({ "seq": self.seq, "error": message })),
        };
        let ctx = self.ctx;
        async move { super::publish::record_completed(&ctx, &id, UPDATE_REPLY, output?).await }
    }
}
