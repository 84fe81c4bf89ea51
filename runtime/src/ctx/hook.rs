//! Hooks: `ctx.hook::<T>()` in a workflow body waits, durably, for a payload of type `T`
//! delivered from outside (`Engine::resume_hook`, and later `POST /hooks/{token}`).
//!
//! A token is the run id plus a 256-bit HMAC-SHA256 of `run-id/correlation-id` under the
//! engine's hook secret, base64url-encoded: unguessable without the secret, and the same
//! on every replay, so a step that sent the resume URL replays with an identical input.
//! The log stores only the token's SHA-256 hash.

use std::future::IntoFuture;
use std::marker::PhantomData;

use futures::future::BoxFuture;

use super::recorder::{Call, Entry, Shape};
use super::{Ctx, Wait};
use crate::ActionError;
use crate::error::kinds;
use crate::event::{EventPayload, HookReceipt, RunUpdate};
use crate::history::hook_timed_out;
use crate::hook_token::{hook_token, token_hash};
use crate::schema::validator_for;
use crate::step::{Site, StepData};

/// A hook handle: read its [`Hook::token`] or [`Hook::resume_url`] and send them on (through
/// a step) before awaiting it; awaiting it yields the delivered payload.
#[must_use = "a hook does nothing until it is awaited"]
pub struct Hook<T> {
    ctx: Ctx,
    id: String,
    token: String,
    timeout: Option<Result<std::time::Duration, ActionError>>,
    /// A payload schema given at run time (a workflow file's `hook` step with `schema`),
    /// checked in place of `T`'s: at delivery, and against a replayed payload.
    schema:
        Option<Result<(serde_json::Value, std::sync::Arc<crate::schema::Validator>), ActionError>>,
    resume_url: std::sync::OnceLock<String>,
    _payload: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Hook<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hook")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

pub(crate) use crate::hook_token::RESUME_URL_SUFFIX;

/// `ctx.hook::<T>()`: a hook recorded under the site's id.
pub fn hook<T: StepData>(ctx: &Ctx, site: &'static Site) -> Hook<T> {
    let id = ctx.next_id(&site.key("hook"));
    let token = hook_token(ctx.run.env.hook_secret(), ctx.run.run_id.as_str(), &id);
    // From here on the run redacts this token from what it records (and restores it in
    // what it replays): tokens exist at rest only as hashes.
    ctx.run.hook_tokens.issue(&token, &id);
    Hook {
        ctx: ctx.clone(),
        id,
        token,
        timeout: None,
        schema: None,
        resume_url: std::sync::OnceLock::new(),
        _payload: PhantomData,
    }
}

impl<T: StepData> Hook<T> {
    /// The secret token that delivers the payload (base64url, 66 characters for UUID run
    /// ids: the run id and a 256-bit HMAC).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The URL that delivers the payload, under the engine's public base URL
    /// (`REPRISE_PUBLIC_URL`, default `http://127.0.0.1:8080`): `<base>/hooks/<token>`.
    ///
    /// The URL is recorded (as `<hook-id>$resume-url`) the first time it is read, so a
    /// replay in a process configured with another public URL sees the URL the run sent
    /// on, and a step that sent it replays with an identical input.
    pub fn resume_url(&self) -> String {
        self.resume_url
            .get_or_init(|| {
                let id = format!("{}{RESUME_URL_SUFFIX}", self.id);
                self.ctx.recorded_as(&id, "hook.resume_url", || {
                    self.ctx
                        .run
                        .env
                        .hook_resume_url(&self.ctx.run.run_id, &self.id)
                })
            })
            .clone()
    }

    /// The hook's correlation id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Makes the hook time out `duration` after it is first awaited (a [`Duration`], or a
    /// humantime string such as `"3d"`): awaiting it then fails with a permanent error of
    /// kind `timeout`, and a later delivery is refused (409 over HTTP). The deadline is
    /// recorded with the hook, so replays and restarts keep it; the run is woken at the
    /// deadline like a durable sleep.
    ///
    /// [`Duration`]: std::time::Duration
    ///
    /// ```ignore
    /// let approval = ctx.hook::<Decision>().timeout("2d");
    /// send_request.run(Request { url: approval.resume_url() }).await?;
    /// match approval.await {
    ///     Ok(decision) => { /* … */ }
    ///     Err(e) if e.kind == "timeout" => { /* escalate */ }
    ///     Err(e) => return Err(e.into()),
    /// }
    /// ```
    pub fn timeout(mut self, duration: impl super::sleep::SleepDuration) -> Self {
        self.timeout = Some(duration.to_duration());
        self
    }

    /// Checks payloads against `schema` (a JSON Schema given at run time) instead of `T`'s:
    /// the schema is recorded with the hook, so a delivery that does not match is refused
    /// (the hook stays open), and a replayed payload is checked against it. A schema that
    /// does not compile fails the hook's await with kind `schema`.
    pub(crate) fn schema(mut self, schema: serde_json::Value) -> Self {
        let compiled = crate::schema::Validator::compile(
            schema.clone(),
            format!("payload of hook `{}`", self.id),
        )
        .map(|validator| (schema, std::sync::Arc::new(validator)))
        .map_err(|e| ActionError::new(kinds::SCHEMA, e.to_string(), false));
        self.schema = Some(compiled);
        self
    }

    /// The hook adapter over the recorder: a recorded `hook_received` answers it (the
    /// payload re-validated against `T`, or the timeout); otherwise `hook_created` records
    /// the token hash and deadline (once) and the run waits for a delivery.
    async fn wait(mut self) -> Result<T, ActionError> {
        let schema = self.schema.take().transpose()?;
        let run = &self.ctx.run;
        let call = Call {
            id: &self.id,
            callee: "hook",
            shape: Shape::Wait,
            input: None,
            output: if schema.is_some() {
                None
            } else {
                Some(validator_for::<T>)
            },
        };
        let slot = match run.enter(&call).await? {
            Entry::Replayed(outcome) => {
                let payload = outcome?;
                if let Some((_, validator)) = &schema {
                    run.check_recorded_against(&self.id, validator, &payload)?;
                }
                return serde_json::from_value(payload).map_err(|e| {
                    ActionError::new(
                        kinds::SERDE,
                        format!("payload of hook `{}`: {e}", self.id),
                        false,
                    )
                });
            }
            Entry::Live(slot) => slot,
        };
        let timeout_at = match slot.previous() {
            Some(recorded) => recorded.hook_timeout_at,
            None => {
                let timeout_at = self.timeout.transpose()?.map(|timeout| {
                    run.env.now()
                        + chrono::TimeDelta::from_std(timeout).unwrap_or(chrono::TimeDelta::MAX)
                });
                let payload = EventPayload::HookCreated {
                    token_hash: token_hash(&self.token),
                    schema: match schema {
                        Some((schema, _)) => schema,
                        None => crate::schema::schema_of::<T>(),
                    },
                    timeout_at,
                };
                let event = run.event(Some(&self.id), 1, payload);
                slot.record(event, RunUpdate::default()).await?;
                timeout_at
            }
        };
        if let Some(deadline) = timeout_at
            && run.env.now() >= deadline
        {
            if !super::race::may_finish() {
                // Another branch of a select won: the timeout records nothing.
                match std::future::pending::<std::convert::Infallible>().await {}
            }
            let event = run.event(
                Some(&self.id),
                1,
                EventPayload::HookReceived(HookReceipt::TimedOut {
                    timeout_at: Some(deadline),
                }),
            );
            let update = RunUpdate {
                status: Some(crate::event::RunStatus::Running),
                ..RunUpdate::default()
            };
            slot.finish_wait(event, update).await?;
            return Err(hook_timed_out(&self.id, Some(deadline)));
        }
        run.suspend(Wait::Hook {
            id: self.id.clone(),
            timeout_at,
        });
        // The executor drops the body; a delivery makes the run replay from its log.
        std::future::pending::<()>().await;
        Err(ActionError::new(
            kinds::STORE,
            "unreachable: a suspended hook resumed in place",
            false,
        ))
    }
}

impl<T: StepData> IntoFuture for Hook<T> {
    type Output = Result<T, ActionError>;
    type IntoFuture = BoxFuture<'static, Result<T, ActionError>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.wait())
    }
}
