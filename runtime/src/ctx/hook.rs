//! Hooks: `ctx.hook::<T>()` in a workflow body waits, durably, for a payload of type `T`
//! delivered from outside (`Engine::resume_hook`, and later `POST /hooks/{token}`).
//!
//! A token is the run id plus a 256-bit HMAC-SHA256 of `run-id/correlation-id` under the
//! engine's hook secret, base64url-encoded: unguessable without the secret, and the same
//! on every replay, so a step that sent the resume URL replays with an identical input.
//! The log stores only the token's SHA-256 hash.

use std::future::IntoFuture;
use std::marker::PhantomData;

use base64::Engine as _;
use futures::future::BoxFuture;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{Ctx, Wait, poisoned_error, store_failure};
use crate::ActionError;
use crate::error::kinds;
use crate::event::{EventKind, RunUpdate};
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

/// Token layout: base64url (no padding) of `[format byte][run id][32-byte MAC]`, where the
/// MAC is HMAC-SHA256 of `run-id/correlation-id` under the engine's secret. The run id
/// inside lets a delivery find its run without an index; the MAC makes it unguessable.
/// Format 1: the run id as the 16 bytes of a UUID; format 2: one length byte, then its UTF-8.
const TOKEN_UUID: u8 = 1;
const TOKEN_TEXT: u8 = 2;

fn hook_mac(secret: &[u8], run_id: &str, id: &str) -> [u8; 32] {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return [0; 32];
    };
    mac.update(run_id.as_bytes());
    mac.update(b"/");
    mac.update(id.as_bytes());
    mac.finalize().into_bytes().into()
}

/// The token of hook `id` of run `run_id` under `secret`.
pub(crate) fn hook_token(secret: &[u8], run_id: &str, id: &str) -> String {
    let mut bytes = Vec::with_capacity(64);
    match uuid::Uuid::parse_str(run_id) {
        Ok(uuid) if uuid.hyphenated().to_string() == run_id => {
            bytes.push(TOKEN_UUID);
            bytes.extend_from_slice(uuid.as_bytes());
        }
        _ => {
            bytes.push(TOKEN_TEXT);
            let text = &run_id.as_bytes()[..run_id.len().min(255)];
            bytes.push(text.len() as u8);
            bytes.extend_from_slice(text);
        }
    }
    bytes.extend_from_slice(&hook_mac(secret, run_id, id));
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The run id a token names, if the token is well-formed (says nothing about its validity).
pub(crate) fn token_run_id(token: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    let (run_id, rest) = match *bytes.first()? {
        TOKEN_UUID => {
            let uuid = uuid::Uuid::from_slice(bytes.get(1..17)?).ok()?;
            (uuid.hyphenated().to_string(), bytes.get(17..)?)
        }
        TOKEN_TEXT => {
            let len = usize::from(*bytes.get(1)?);
            let text = std::str::from_utf8(bytes.get(2..2 + len)?).ok()?;
            (text.to_owned(), bytes.get(2 + len..)?)
        }
        _ => return None,
    };
    (rest.len() == 32).then_some(run_id)
}

/// The hash under which a token is stored: SHA-256, hex.
pub(crate) fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The suffix of the correlation id under which a hook's resume URL is recorded.
pub(crate) const RESUME_URL_SUFFIX: &str = "$resume-url";

/// `ctx.hook::<T>()`: a hook recorded under the site's id.
pub fn hook<T: StepData>(ctx: &Ctx, site: &'static Site) -> Hook<T> {
    let id = ctx.next_id(&site.key("hook"));
    let token = hook_token(ctx.run.engine.hook_secret(), ctx.run.run_id.as_str(), &id);
    Hook {
        ctx: ctx.clone(),
        id,
        token,
        timeout: None,
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
                        .engine
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

    async fn wait(self) -> Result<T, ActionError> {
        let run = &self.ctx.run;
        let recorded = run.history.get(&self.id);
        if let Some(recorded) = recorded {
            if recorded.callee != "hook" {
                return Err(run.non_determinism(
                    &self.id,
                    format!("`{}`", recorded.callee),
                    "a hook".to_owned(),
                ));
            }
            if recorded.hook_timed_out {
                run.answered_from_log();
                return Err(timed_out(&self.id, recorded.hook_timeout_at));
            }
            if let Some(payload) = &recorded.hook_payload {
                validator_for::<T>()
                    .map_err(|e| ActionError::new(kinds::SCHEMA, e.to_string(), false))?
                    .validate(payload)
                    .map_err(|mut v| {
                        v.what = format!("payload of hook `{}`", self.id);
                        ActionError::from(v)
                    })?;
                run.answered_from_log();
                return serde_json::from_value(payload.clone()).map_err(|e| {
                    ActionError::new(
                        kinds::SERDE,
                        format!("payload of hook `{}`: {e}", self.id),
                        false,
                    )
                });
            }
        }
        if let Some(poison) = run.poisoned() {
            return Err(poisoned_error(&poison));
        }
        if recorded.is_none() && run.engine.is_replay_only() {
            return Err(run.non_determinism(
                &self.id,
                "no such hook".to_owned(),
                "a hook".to_owned(),
            ));
        }
        let timeout_at = match recorded {
            Some(recorded) => recorded.hook_timeout_at,
            None => {
                let timeout_at = self.timeout.transpose()?.map(|timeout| {
                    run.engine.now()
                        + chrono::TimeDelta::from_std(timeout).unwrap_or(chrono::TimeDelta::MAX)
                });
                let schema = crate::schema::schema_of::<T>();
                let mut payload =
                    json!({ "token_hash": token_hash(&self.token), "schema": schema });
                if let Some(timeout_at) = timeout_at {
                    payload["timeout_at"] = json!(timeout_at);
                }
                let event = run.event(EventKind::HookCreated, Some(&self.id), 1, payload);
                if let Err(e) = run.append(vec![event], RunUpdate::default()).await {
                    return Err(store_failure(run, e));
                }
                timeout_at
            }
        };
        if let Some(deadline) = timeout_at
            && run.engine.now() >= deadline
        {
            let event = run.event(
                EventKind::HookReceived,
                Some(&self.id),
                1,
                json!({ "timed_out": true, "timeout_at": deadline }),
            );
            let update = RunUpdate {
                status: Some(crate::event::RunStatus::Running),
                ..RunUpdate::default()
            };
            if let Err(e) = run.append(vec![event], update).await {
                return Err(store_failure(run, e));
            }
            run.executed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(timed_out(&self.id, Some(deadline)));
        }
        run.suspend(Wait::Hook {
            id: self.id.clone(),
            timeout_at,
        });
        std::future::pending::<()>().await;
        Err(ActionError::new(
            kinds::STORE,
            "unreachable: a suspended hook resumed in place",
            false,
        ))
    }
}

/// The error of a hook that received nothing before its deadline.
fn timed_out(id: &str, deadline: Option<chrono::DateTime<chrono::Utc>>) -> ActionError {
    let at = deadline
        .map(|d| format!(" at {}", d.to_rfc3339()))
        .unwrap_or_default();
    ActionError::new(
        kinds::TIMEOUT,
        format!("hook `{id}` received no payload before its timeout{at}"),
        false,
    )
}

impl<T: StepData> IntoFuture for Hook<T> {
    type Output = Result<T, ActionError>;
    type IntoFuture = BoxFuture<'static, Result<T, ActionError>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.wait())
    }
}
