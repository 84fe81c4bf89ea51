//! Inline steps: `ctx.run("name", || async { .. })` records a closure's result as a step,
//! for side effects too small for an `#[action]` (DESIGN "Messages and composition").
//!
//! The step's id is `<name>#n` (`n` counts the calls with that name in this scope; inside a
//! sub-workflow the id is prefixed like every other: `sub#0/charge#0`); it records
//! `step_started` (kind `inline`, callee `name`, input `null`), then `step_completed` with
//! the closure's output or `step_failed` with its error, and `step_retrying` for each
//! retried attempt. A replay returns the recorded output without calling the closure.
//!
//! The output type only needs `Serialize + DeserializeOwned`: it is not checked against a
//! JSON Schema (an inline step has no declared schema; a recorded output that no longer
//! deserializes into the type fails the step with a `serde` error). Use an `#[action]` when
//! the output must be validated, or when the step should show in the workflow's graph.

use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Ctx;
use super::recorder::{Call, Entry, Shape};
use super::sleep::SleepDuration;
use crate::ActionError;
use crate::error::kinds;
use crate::step::ActionOptions;

/// Options of an inline step (`ctx.run_with(name, options, f)`): the same retry and
/// timeout rules as an `#[action]`'s (see [`ActionOptions`]).
///
/// ```ignore
/// let receipt = ctx
///     .run_with("charge", InlineOptions::new().retries(3).backoff("1s").timeout("10s"), || async {
///         charge_card(&card).await.map_err(|e| ActionError::transient(e.to_string()))
///     })
///     .await?;
/// ```
#[derive(Clone, Debug)]
pub struct InlineOptions {
    retries: u32,
    backoff: Result<Duration, ActionError>,
    timeout: Option<Result<Duration, ActionError>>,
}

impl Default for InlineOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl InlineOptions {
    /// The defaults of an action: no retries, 1 s backoff, no timeout.
    pub fn new() -> Self {
        InlineOptions {
            retries: ActionOptions::DEFAULT.retries,
            backoff: Ok(ActionOptions::DEFAULT.backoff),
            timeout: None,
        }
    }

    /// Retries after the first attempt, for a retryable error (`retries(3)`: up to 4
    /// attempts), each recorded as `step_retrying`.
    #[must_use]
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// The delay before the first retry (a [`Duration`] or a humantime string such as
    /// `"500ms"`); it doubles on each retry, capped at 5 minutes, with ±25 % jitter. A text
    /// that does not parse fails the step (kind `invalid_duration`) when it runs.
    #[must_use]
    pub fn backoff(mut self, backoff: impl SleepDuration) -> Self {
        self.backoff = backoff.to_duration();
        self
    }

    /// The time limit of one attempt (a [`Duration`] or a humantime string such as
    /// `"10s"`): an attempt over it fails with a retryable `timeout` error.
    #[must_use]
    pub fn timeout(mut self, timeout: impl SleepDuration) -> Self {
        self.timeout = Some(timeout.to_duration());
        self
    }

    /// As [`ActionOptions`], or the error of a duration that did not parse.
    fn action_options(&self) -> Result<ActionOptions, ActionError> {
        Ok(ActionOptions {
            retries: self.retries,
            backoff: self.backoff.clone()?,
            timeout: self.timeout.clone().transpose()?,
            non_retryable: &[],
            credentials: &[],
        })
    }
}

/// Checks an inline step's name: 1 to 100 characters, ASCII letters, digits, `-`, `_`,
/// `.` and `:` (no `/`, `#` or `$`, which structure correlation ids).
fn check_name(name: &str) -> Result<(), ActionError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if ok {
        return Ok(());
    }
    Err(ActionError::new(
        kinds::INVALID_STEP_NAME,
        format!(
            "{name:?} cannot name an inline step: use 1 to 100 ASCII letters, digits, `-`, `_`, `.` or `:` (no `/`, `#`, `$` or spaces), e.g. `ctx.run(\"charge-card\", || async {{ .. }})`"
        ),
        false,
    ))
}

impl Ctx {
    /// Runs `f` once as a recorded inline step named `name` (id `<name>#n`) and returns its
    /// output; a replay returns the recorded output (or error) without calling `f`.
    ///
    /// For side effects too small for an `#[action]`: `f` is called for each attempt and
    /// returns a future of `Result<T, ActionError>`. No retries, no timeout: see
    /// [`Ctx::run_with`]. Do not call steps inside `f`: it is not workflow code.
    ///
    /// ```ignore
    /// let id: String = ctx.run("create-ticket", || async {
    ///     Ok(tickets::create("printer on fire").await?.id)
    /// }).await?;
    /// ```
    ///
    /// # Errors
    /// `f`'s error; kind `invalid_step_name` for a bad name (nothing runs); `serde` when
    /// the output does not serialize, or a recorded one no longer deserializes into `T`;
    /// the recorder's errors (non-determinism, a store failure).
    pub fn run<T, F, Fut>(
        &self,
        name: &str,
        f: F,
    ) -> impl Future<Output = Result<T, ActionError>> + Send + 'static
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, ActionError>> + Send + 'static,
    {
        self.run_with(name, InlineOptions::new(), f)
    }

    /// [`Ctx::run`] with retries and a per-attempt timeout, as for actions.
    ///
    /// # Errors
    /// As [`Ctx::run`]; kind `invalid_duration` for an option's duration that did not parse.
    pub fn run_with<T, F, Fut>(
        &self,
        name: &str,
        options: InlineOptions,
        f: F,
    ) -> impl Future<Output = Result<T, ActionError>> + Send + 'static
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, ActionError>> + Send + 'static,
    {
        // The id is taken now (when the future is created), like every step's.
        let checked = check_name(name).map(|()| (self.next_id(name), name.to_owned()));
        let ctx = self.clone();
        async move {
            let (id, name) = checked?;
            inline(&ctx, &id, &name, options, f).await
        }
    }
}

/// The inline-step adapter over the recorder.
async fn inline<T, F, Fut>(
    ctx: &Ctx,
    id: &str,
    name: &str,
    options: InlineOptions,
    mut f: F,
) -> Result<T, ActionError>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, ActionError>> + Send + 'static,
{
    let run = &ctx.run;
    let decode = |output: Value| {
        serde_json::from_value::<T>(output).map_err(|e| {
            ActionError::new(
                kinds::SERDE,
                format!("recorded output of inline step `{id}`: {e}"),
                false,
            )
        })
    };
    let call = Call {
        id,
        callee: name,
        shape: Shape::Leaf,
        input: None,
        output: None,
    };
    let mut slot = match run.enter(&call).await? {
        Entry::Replayed(outcome) => return decode(outcome?),
        Entry::Live(slot) => slot,
    };
    slot.started("inline", Value::Null);
    let (result, attempts) = match options.action_options() {
        Err(error) => (Err(error), 1),
        Ok(options) => {
            let attempt = |_| -> futures::future::BoxFuture<'static, Result<T, ActionError>> {
                Box::pin(f())
            };
            slot.instrument(super::step::attempts(run, id, name, options, attempt))
                .await
        }
    };
    let mut typed = None;
    let outcome = result.and_then(|output| {
        let json = serde_json::to_value(&output).map_err(|e| {
            ActionError::new(
                kinds::SERDE,
                format!("output of inline step `{id}`: {e}"),
                false,
            )
        })?;
        typed = Some(output);
        Ok(json)
    });
    slot.finish_step(outcome, attempts, None).await?;
    typed.ok_or_else(|| {
        ActionError::new(
            kinds::SERDE,
            format!("inline step `{id}` finished without an output"),
            false,
        )
    })
}
