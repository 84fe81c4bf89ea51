//! Hooks: `ctx.hook::<T>()` in a workflow body waits, durably, for a payload of type `T`
//! delivered from outside (`Engine::resume_hook`, and later `POST /hooks/{token}`).
//!
//! Tokens are 256-bit HMAC-SHA256 values of `run-id/correlation-id` under the engine's
//! hook secret, base64url-encoded: unguessable without the secret, and the same on every
//! replay, so a step that sent the resume URL replays with an identical input. The log
//! stores only the token's SHA-256 hash.

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
    _payload: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Hook<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hook")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The token of hook `id` of run `run_id` under `secret`.
pub(crate) fn hook_token(secret: &[u8], run_id: &str, id: &str) -> String {
    // HMAC accepts keys of any length, so construction cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(run_id.as_bytes());
    mac.update(b"/");
    mac.update(id.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// The hash under which a token is stored: SHA-256, hex.
pub(crate) fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `ctx.hook::<T>()`: a hook recorded under the site's id.
pub fn hook<T: StepData>(ctx: &Ctx, site: &'static Site) -> Hook<T> {
    let id = ctx.next_id(&site.key("hook"));
    let token = hook_token(ctx.run.engine.hook_secret(), ctx.run.run_id.as_str(), &id);
    Hook {
        ctx: ctx.clone(),
        id,
        token,
        _payload: PhantomData,
    }
}

impl<T: StepData> Hook<T> {
    /// The secret token that delivers the payload (base64url, 43 characters).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The URL that delivers the payload, under the engine's public base URL
    /// (`REPRISE_PUBLIC_URL`, default `http://127.0.0.1:8080`): `<base>/hooks/<token>`.
    pub fn resume_url(&self) -> String {
        format!(
            "{}/hooks/{}",
            self.ctx.run.engine.public_url().trim_end_matches('/'),
            self.token
        )
    }

    /// The hook's correlation id.
    pub fn id(&self) -> &str {
        &self.id
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
            if let Some(payload) = &recorded.hook_payload {
                validator_for::<T>()
                    .map_err(|e| ActionError::new(kinds::SCHEMA, e.to_string(), false))?
                    .validate(payload)
                    .map_err(|mut v| {
                        v.what = format!("payload of hook `{}`", self.id);
                        ActionError::from(v)
                    })?;
                run.replayed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
        if recorded.is_none() {
            let schema = crate::schema::schema_of::<T>();
            let event = run.event(
                EventKind::HookCreated,
                Some(&self.id),
                1,
                json!({ "token_hash": token_hash(&self.token), "schema": schema }),
            );
            if let Err(e) = run.append(vec![event], RunUpdate::default()).await {
                return Err(store_failure(run, e));
            }
        }
        run.suspend(Wait::Hook {
            id: self.id.clone(),
            timeout_at: None,
        });
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
