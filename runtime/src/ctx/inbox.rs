#![allow(dead_code)] // TODO(issue14): used by the signal, event, child-run and select adapters
//! The run's view of its inbox (see [`crate::message`]) and the one receive adapter over the
//! recorder that signals, updates, events and child-run results share.
//!
//! A receive is a recorded wait under its own correlation id (`signal:paid#0`): the first
//! execution that finds a matching message records its receipt — a `step_completed` whose
//! callee is `recv:<kind>` and whose output is `{"seq": <inbox seq>, "payload": …}` — and
//! every replay returns that payload. A message is taken by one receive only: the seqs of
//! recorded receipts, and those taken in this execution, are skipped. With nothing to take,
//! a blocking receive suspends the run with [`Wait::Message`]; posting to a `waiting` run
//! makes it `queued` (`Store::post_message`), and the executor's suspension carries the
//! highest seq it read (`RunUpdate::inbox_seen`), so a message posted while the run was
//! executing wakes it too.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use super::recorder::{Call, Entry, Shape};
use super::{Ctx, RunState, Wait};
use crate::ActionError;
use crate::error::kinds;
use crate::event::{EventPayload, RunStatus, RunUpdate};
use crate::message::Message;

/// The callee prefix of recorded receipts (`recv:signal`, `recv:update`, `recv:event`,
/// `recv:child`).
pub(crate) const RECEIPT_PREFIX: &str = "recv:";

/// What one execution knows of its run's inbox.
#[derive(Default)]
pub(crate) struct Inbox {
    state: tokio::sync::Mutex<Loaded>,
    /// The highest seq read from the store (0: nothing read).
    seen: AtomicU64,
}

#[derive(Default)]
struct Loaded {
    /// Whether the inbox was read once (and `taken` filled from the history).
    ready: bool,
    /// Messages read, in seq order, not yet taken.
    messages: Vec<Message>,
    /// Seqs taken: by recorded receipts, or in this execution.
    taken: HashSet<u64>,
}

impl Inbox {
    /// The highest inbox seq this execution has read.
    pub(crate) fn seen(&self) -> u64 {
        self.seen.load(Ordering::Acquire)
    }
}

impl RunState {
    /// The highest inbox seq this execution has read (see [`RunUpdate::inbox_seen`]).
    pub(crate) fn inbox_seen(&self) -> u64 {
        self.inbox.seen()
    }

    /// Takes the first message of `channel` not taken yet for which `accept` holds, reading
    /// what was posted since the last read when none is at hand. The message is reserved for
    /// the caller, who records its receipt or gives it back with [`RunState::give_back`].
    ///
    /// # Errors
    /// A store failure reading the inbox.
    pub(crate) async fn take_message(
        &self,
        channel: &str,
        mut accept: impl FnMut(&Message) -> bool,
    ) -> Result<Option<Message>, crate::EngineError> {
        let mut loaded = self.inbox.state.lock().await;
        if !loaded.ready {
            loaded.taken = self.history.received_messages();
            loaded.ready = true;
        }
        for read_more in [false, true] {
            if read_more {
                let after = self.inbox.seen();
                let fresh = self.env.store.messages(&self.run_id, after).await?;
                if let Some(last) = fresh.last() {
                    self.inbox.seen.fetch_max(last.seq, Ordering::AcqRel);
                }
                let Loaded {
                    messages, taken, ..
                } = &mut *loaded;
                messages.extend(fresh.into_iter().filter(|m| !taken.contains(&m.seq)));
            }
            let Loaded {
                messages, taken, ..
            } = &mut *loaded;
            if let Some(index) = messages
                .iter()
                .position(|m| m.channel == channel && accept(m))
            {
                let message = messages.remove(index);
                taken.insert(message.seq);
                return Ok(Some(message));
            }
        }
        Ok(None)
    }

    /// Returns a message taken with [`RunState::take_message`] whose receipt was not
    /// recorded (the receive lost a select): the next receive of its channel takes it.
    pub(crate) async fn give_back(&self, message: Message) {
        let mut loaded = self.inbox.state.lock().await;
        loaded.taken.remove(&message.seq);
        let at = loaded
            .messages
            .iter()
            .position(|m| m.seq > message.seq)
            .unwrap_or(loaded.messages.len());
        loaded.messages.insert(at, message);
    }
}

/// How a receive behaves when no message is at hand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Suspend the run until one arrives (`recv`).
    Wait,
    /// Record that there was none and return `None` (`try_recv`).
    Try,
}

/// One receive, as the typed adapters (signals, updates, events, child results) describe it.
pub(crate) struct Receive<'a> {
    /// The receive's correlation id.
    pub(crate) id: &'a str,
    /// The receipt's kind: `signal`, `update`, `event`, `child` (callee `recv:<kind>`).
    pub(crate) kind: &'a str,
    /// The inbox channel.
    pub(crate) channel: &'a str,
    /// Wait or try.
    pub(crate) mode: Mode,
}

/// The receive adapter over the recorder: the recorded receipt answers it; otherwise the
/// first acceptable message of the channel is taken and its receipt recorded, or the run
/// suspends (`Mode::Wait`) or `None` is recorded (`Mode::Try`). Returns the message's
/// payload (its recorded `seq` stays in the log).
///
/// `accept` may refuse a message (an event that does not match): the message stays for
/// other receives.
///
/// # Errors
/// The recorder's errors (non-determinism, poison), a store failure.
pub(crate) async fn receive(
    ctx: &Ctx,
    receive: Receive<'_>,
    accept: impl FnMut(&Message) -> bool,
) -> Result<Option<Value>, ActionError> {
    let run = &ctx.run;
    let callee = format!("{RECEIPT_PREFIX}{}", receive.kind);
    if run.replay_only()
        && receive.mode == Mode::Wait
        && run
            .history
            .get(receive.id)
            .is_none_or(|recorded| recorded.outcome.is_none())
    {
        // A replay-only check reached a receive the run had not finished: it waits here,
        // as the run did (the check compares the suspension with the recorded one).
        run.suspend(Wait::Message {
            id: receive.id.to_owned(),
            channel: receive.channel.to_owned(),
        });
        match std::future::pending::<std::convert::Infallible>().await {}
    }
    let call = Call {
        id: receive.id,
        callee: &callee,
        shape: Shape::Wait,
        input: None,
        output: None,
    };
    let slot = match run.enter(&call).await? {
        Entry::Replayed(outcome) => return Ok(receipt_payload(outcome?)),
        Entry::Live(slot) => slot,
    };
    // Counted as live while it reads the inbox: the executor suspends a run only when no
    // branch can still make progress, and a receive waiting for the store's answer can (in
    // a select or `join!`, another branch may have registered its wait meanwhile).
    let busy = run.live_step();
    let message = run
        .take_message(receive.channel, accept)
        .await
        .map_err(|e| super::store_failure(run, e))?;
    drop(busy);
    let message = match (message, receive.mode) {
        (Some(message), _) => Some(message),
        (None, Mode::Try) => None,
        (None, Mode::Wait) => {
            run.suspend(Wait::Message {
                id: receive.id.to_owned(),
                channel: receive.channel.to_owned(),
            });
            // The executor drops the body; a message makes the run replay from its log.
            std::future::pending::<()>().await;
            return Err(ActionError::new(
                kinds::STORE,
                "unreachable: a suspended receive resumed in place",
                false,
            ));
        }
    };
    if !super::race::may_finish() {
        // Another branch of a select won: the message stays for the next receive.
        if let Some(message) = message {
            run.give_back(message).await;
        }
        match std::future::pending::<std::convert::Infallible>().await {}
    }
    let output = match &message {
        Some(message) => json!({ "seq": message.seq, "payload": message.payload }),
        None => json!({ "seq": null }),
    };
    let event = run.event(
        Some(receive.id),
        1,
        EventPayload::StepCompleted {
            output,
            callee: Some(callee.clone()),
            usage: None,
            usage_total: None,
            seeded: false,
        },
    );
    let update = RunUpdate {
        status: Some(RunStatus::Running),
        ..RunUpdate::default()
    };
    slot.finish_wait(event, update).await?;
    Ok(message.map(|m| m.payload))
}

/// The payload of a recorded receipt (`None`: a `try` that found nothing).
fn receipt_payload(output: Value) -> Option<Value> {
    match output {
        Value::Object(mut receipt) if receipt.get("seq").is_some_and(|s| !s.is_null()) => {
            Some(receipt.remove("payload").unwrap_or(Value::Null))
        }
        _ => None,
    }
}
