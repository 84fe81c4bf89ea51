//! Emitting events: [`Engine::emit`] (behind `POST /events` and `events emit`) delivers an
//! event to every run waiting for its name (`ctx.wait_for_event`) and starts one run of
//! every workflow declared with `#[workflow(on_event = "<name>")]` (DESIGN "Messages and
//! composition").
//!
//! # Once per id, and crash-safety
//!
//! An event is processed once per `(name, id)`. Every effect of an emit is idempotent on
//! its own, and the event is recorded (`Store::record_event`) only **after** them:
//! - a delivery to a waiting run is a message with the de-duplication key
//!   `event:<name>:<id>`: a run never gets one event twice;
//! - a run started by `on_event` is created with the `create_run_once` key
//!   `event:<workflow>:<id>`: one run per workflow and event id, ever, across processes.
//!
//! So an emit that failed or crashed half-way is simply emitted again with the same id: it
//! redoes what was missing and nothing twice. The rule for callers: **retry an emit with
//! the same id until it succeeds.** A repeated id reports `duplicate: true`; it starts no
//! second run and delivers to no run that has the event, but a run that started waiting for
//! the name since the first emit receives it too (the repeat is treated as a retry).

use serde::Serialize;
use serde_json::{Value, json};

use super::Engine;
use crate::error::{EngineError, SchemaViolation, Violation};
use crate::event::{Event, EventKind, EventPayload, EventRef, NewEvent, RunId, RunStatus, Trigger};
use crate::message::{EmittedEvent, NewMessage, event_channel};

/// The longest event name or id, in bytes.
pub const MAX_EVENT_NAME_LEN: usize = 255;

/// What [`Engine::emit`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Emitted {
    /// The event's id: the one given, or a fresh UUID v7.
    pub id: String,
    /// Whether an event with this name and id was emitted before (see the module docs: a
    /// repeat starts and delivers nothing twice).
    pub duplicate: bool,
    /// How many waiting runs got the event in their inbox by this call (runs that had it
    /// already are not counted). A run receives it only if its wait matches; one that does
    /// not match keeps it unconsumed.
    pub delivered: usize,
    /// The runs this call started (`on_event` workflows), in registration order; empty for
    /// a repeat (the runs were started by the first emit).
    pub started: Vec<RunId>,
    /// The `on_event` workflows that started nothing because the event's data does not fit
    /// their input schema.
    pub rejected: Vec<RejectedStart>,
}

/// An `on_event` workflow that did not start: the event's data is not a valid input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RejectedStart {
    /// The workflow's slug.
    pub workflow: String,
    /// Why: every schema violation, with its JSON pointer.
    pub reason: String,
}

/// Checks an event name (`order.paid`) or id: 1 to 255 bytes of printable characters (no
/// control characters, no whitespace). `field` is the JSON pointer of the error (`/name`).
///
/// # Errors
/// [`EngineError::Schema`] naming the field, what is wrong and how to fix it.
pub(crate) fn check_event_text(field: &str, value: &str) -> Result<(), EngineError> {
    let what = &field[1..];
    let problem = if value.is_empty() {
        Some(format!("the event {what} is empty"))
    } else if value.len() > MAX_EVENT_NAME_LEN {
        Some(format!(
            "the event {what} is {} bytes long; the limit is {MAX_EVENT_NAME_LEN}",
            value.len()
        ))
    } else {
        value
            .chars()
            .find(|c| c.is_control() || c.is_whitespace())
            .map(|c| {
                format!(
                    "the event {what} `{}` holds the character {c:?}; use printable \
                     characters without spaces, such as `order.paid`",
                    value.escape_debug()
                )
            })
    };
    match problem {
        None => Ok(()),
        Some(message) => Err(EngineError::Schema(SchemaViolation {
            what: "event".to_owned(),
            violations: vec![Violation {
                pointer: field.to_owned(),
                message,
            }],
        })),
    }
}

impl Engine {
    /// Emits event `name` (such as `order.paid`) with `data`, once per `(name, id)`: `id`
    /// is given by the sender (a retried emit with the same id does nothing twice) or a
    /// fresh UUID v7.
    ///
    /// 1. Every run waiting for `name` (a live `ctx.wait_for_event(name)`) gets the event
    ///    in its inbox (`{"id", "data"}`) and is woken; each of its waits takes it if its
    ///    `.matching` pointers hold and the data fits the wait's type (else it is recorded
    ///    as rejected for that run). Runs that have ended are skipped and forgotten.
    /// 2. Every workflow declared `#[workflow(on_event = "<name>")]` gets one run with the
    ///    data as input (trigger `event`), created once per event id across processes; data
    ///    that does not fit its input schema starts nothing and is reported in
    ///    [`Emitted::rejected`] (and logged once).
    /// 3. The event is recorded; see the [module docs](self) for the crash-safety rule.
    ///
    /// ```ignore
    /// let emitted = engine.emit("order.paid", json!({"order_id": "A-1"}), Some("pay-77".into())).await?;
    /// assert!(!emitted.duplicate);
    /// ```
    ///
    /// # Errors
    /// [`EngineError::Schema`] for a bad name or id (pointer `/name`, `/id`: empty, over
    /// 255 bytes, control characters or whitespace); [`EngineError::PayloadTooLarge`] for
    /// data over the payload limit; store failures (nothing is recorded: emit again with
    /// the same id).
    pub async fn emit(
        &self,
        name: &str,
        data: Value,
        id: Option<String>,
    ) -> Result<Emitted, EngineError> {
        check_event_text("/name", name)?;
        if let Some(id) = &id {
            check_event_text("/id", id)?;
        }
        self.payload_limits()
            .check(|| format!("the data of event `{name}`"), &data)?;
        let id = id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let mut emitted = Emitted {
            id: id.clone(),
            ..Emitted::default()
        };
        self.deliver_event(name, &id, &data, &mut emitted).await?;
        self.start_on_event(name, &id, &data, &mut emitted).await?;
        let event = EmittedEvent {
            name: name.to_owned(),
            id,
            data,
            at: self.now(),
        };
        emitted.duplicate = !self.store().record_event(&event).await?;
        Ok(emitted)
    }

    /// Posts the event into the inbox of every run waiting for `name`.
    async fn deliver_event(
        &self,
        name: &str,
        id: &str,
        data: &Value,
        emitted: &mut Emitted,
    ) -> Result<(), EngineError> {
        let store = self.store();
        for run_id in store.event_waiters(name).await? {
            let run = match store.run(&run_id).await? {
                Some(run) if !run.status.is_terminal() => run,
                // Ended (or purged) while registered: the registration is stale.
                _ => {
                    store.remove_event_wait(&run_id, name).await?;
                    continue;
                }
            };
            let message = NewMessage {
                run_id: run_id.clone(),
                channel: event_channel(name),
                payload: json!({ "id": id, "data": data }),
                dedupe: Some(format!("event:{name}:{id}")),
                at: self.now(),
            };
            match store.post_message(message).await {
                Ok(posted) if !posted.duplicate => {
                    emitted.delivered += 1;
                    if run.status == RunStatus::Waiting {
                        self.announce(&run_id, &run.workflow, RunStatus::Queued);
                    }
                }
                Ok(_) => {}
                Err(EngineError::UnknownRun(_)) => {
                    store.remove_event_wait(&run_id, name).await?;
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Creates a run of `slug` with the event's data as input under `key` (once), its
    /// `run_created` naming the event, with `options` (the event's actor; a subscriber).
    /// Returns the run and whether this call created it.
    async fn start_for_event(
        &self,
        slug: &str,
        data: &Value,
        (name, id): (&str, &str),
        key: &str,
        options: crate::StartOptions,
    ) -> Result<(RunId, bool), EngineError> {
        let (record, created) = self.new_run_at(slug, data.clone(), Trigger::Event, &options)?;
        let mut payload = EventPayload::decode_owned(created.kind, created.payload)
            .map_err(|e| EngineError::Serde(e.to_string()))?;
        if let EventPayload::RunCreated { event, .. } = &mut payload {
            *event = Some(EventRef {
                name: name.to_owned(),
                id: id.to_owned(),
            });
        }
        let created = NewEvent::new(None, 0, created.at, payload);
        let run_id = record.id.clone();
        match self.store().create_run_once(key, record, created).await? {
            Some(existing) => Ok((existing, false)),
            None => {
                self.env().announce_created(&run_id, slug);
                Ok((run_id, true))
            }
        }
    }

    /// Starts one run of every `on_event = name` workflow, once per event id.
    async fn start_on_event(
        &self,
        name: &str,
        id: &str,
        data: &Value,
        emitted: &mut Emitted,
    ) -> Result<(), EngineError> {
        let slugs: Vec<&'static str> = self
            .registry()
            .on_event(name)
            .map(|entry| entry.registration.slug)
            .collect();
        for slug in slugs {
            let key = format!("event:{slug}:{id}");
            let options = crate::StartOptions::new().actor(crate::identity::Actor::Event {
                name: name.to_owned(),
                id: id.to_owned(),
            });
            let started = self
                .start_occurrence_with(slug, Some(&key), options, |key, options| async move {
                    let key = key.unwrap_or_default();
                    self.start_for_event(slug, data, (name, id), &key, options)
                        .await
                })
                .await;
            match started {
                Ok(runs) => emitted.started.extend(
                    runs.into_iter()
                        .filter(|(_, created)| *created)
                        .map(|(run, _)| run),
                ),
                Err(EngineError::Schema(violation)) => {
                    let reason = violation.to_string();
                    tracing::warn!(
                        event = name,
                        event_id = id,
                        workflow = slug,
                        %reason,
                        "event not started as a run of its on_event workflow: its data is \
                         not a valid input"
                    );
                    emitted.rejected.push(RejectedStart {
                        workflow: slug.to_owned(),
                        reason,
                    });
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}

/// The emitted event that started a run of an `on_event` workflow: the `event` of its
/// `run_created` (event 0 of `events`, a run's log); `None` for other runs.
pub fn started_by_event(events: &[Event]) -> Option<EventRef> {
    let created = events
        .first()
        .filter(|e| e.event.kind == EventKind::RunCreated)?;
    match created.event.decode_payload() {
        Ok(EventPayload::RunCreated { event, .. }) => event,
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn event_names_are_printable_and_bounded() {
        assert!(check_event_text("/name", "order.paid").is_ok());
        for bad in ["", "order paid", "a\nb", &"x".repeat(256)] {
            let Err(EngineError::Schema(violation)) = check_event_text("/name", bad) else {
                panic!("`{bad}` accepted");
            };
            assert_eq!(violation.violations[0].pointer, "/name");
        }
        assert!(check_event_text("/name", &"x".repeat(255)).is_ok());
    }
}
