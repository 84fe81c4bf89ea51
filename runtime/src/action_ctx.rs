//! [`ActionCtx`]: what an action learns about the step it runs as.

use std::any::Any;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::ActionError;
use crate::credentials::{CredentialDecl, CredentialStore, Secret};
use crate::resources::Resources;

/// The context of one attempt of an action: its idempotency key, attempt number and the
/// engine's shared resources. Take it as the optional second parameter of an `#[action]` fn.
#[derive(Clone, Debug)]
pub struct ActionCtx {
    idempotency_key: String,
    run_id: Option<String>,
    correlation_id: String,
    attempt: u32,
    resources: Option<Arc<Resources>>,
    cancellation: CancellationToken,
    /// The step's span, for [`ActionCtx::traceparent`].
    span: tracing::Span,
    /// The `traceparent` the run was started with, if any.
    run_traceparent: Option<Arc<str>>,
    /// Who started the run and whom it acts for (`None` outside a workflow).
    identity: Option<Arc<crate::identity::RunIdentity>>,
    /// The credential store, what the action declared, and the execution's masks.
    credentials: crate::credentials::CredentialAccess,
}

impl ActionCtx {
    /// The context of attempt `attempt` of step `correlation_id` of run `run_id`.
    pub(crate) fn new(
        run_id: &str,
        correlation_id: &str,
        attempt: u32,
        resources: Arc<Resources>,
        cancellation: CancellationToken,
        credentials: crate::credentials::CredentialAccess,
    ) -> Self {
        ActionCtx {
            idempotency_key: format!("{run_id}/{correlation_id}"),
            run_id: Some(run_id.to_owned()),
            correlation_id: correlation_id.to_owned(),
            attempt,
            resources: Some(resources),
            cancellation,
            span: tracing::Span::none(),
            run_traceparent: None,
            identity: None,
            credentials,
        }
    }

    /// Acting for the run's `identity` (its user, project and subscriber).
    pub(crate) fn acting(mut self, identity: Arc<crate::identity::RunIdentity>) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Who started the run and whom it acts for (its user, project and subscriber), or
    /// `None` outside a workflow.
    pub fn identity(&self) -> Option<&crate::identity::RunIdentity> {
        self.identity.as_deref()
    }

    /// With the step's span and the run's recorded `traceparent`.
    pub(crate) fn traced(mut self, span: tracing::Span, run_traceparent: Option<Arc<str>>) -> Self {
        self.span = span;
        self.run_traceparent = run_traceparent;
        self
    }

    /// The context of a call outside any workflow (`action.run(input)` in a unit test).
    pub fn standalone(slug: &str) -> Self {
        ActionCtx {
            idempotency_key: format!("standalone/{slug}"),
            run_id: None,
            correlation_id: slug.to_owned(),
            attempt: 1,
            resources: None,
            cancellation: CancellationToken::new(),
            span: tracing::Span::none(),
            run_traceparent: None,
            identity: None,
            credentials: crate::credentials::CredentialAccess {
                store: Arc::new(crate::credentials::EnvCredentials::new()),
                declared: None,
                slug: slug.to_owned(),
                masks: Arc::default(),
            },
        }
    }

    /// Only the credentials in `declared` may be read (an action's declaration).
    pub(crate) fn declaring(mut self, declared: &'static [CredentialDecl]) -> Self {
        self.credentials.declared = Some(declared);
        self
    }

    /// Reads credentials from `store` instead (for a standalone context in a unit test:
    /// `ActionCtx::standalone("fetch").with_credentials(FileCredentials::new(path))`).
    #[must_use]
    pub fn with_credentials(mut self, store: impl CredentialStore) -> Self {
        self.credentials.store = Arc::new(store);
        self
    }

    /// The value of credential `name` for this run: looked up in the run's user scope,
    /// then its project's, then the organisation's (`user:ada`, `project:acme`, `org`:
    /// [`crate::identity::RunIdentity::scopes`]), or only in the scope the declaration
    /// pins (`#[action(credentials = [("billing", Scope::Org)])]`); the first scope that
    /// has it wins. It is read from the engine's [`CredentialStore`] at each call, so a
    /// rotated value is used by the next step; replayed steps do not run, so they read
    /// nothing. Outside a run ([`ActionCtx::standalone`], `action.run(input)` in a test)
    /// only `org` is looked up, in the environment ([`crate::credentials::EnvCredentials`])
    /// unless [`ActionCtx::with_credentials`] says otherwise.
    ///
    /// The value is remembered for the rest of the run's execution and masked (`***`) in
    /// every step input, output and error it records afterwards; still, never return it
    /// from a step or put it in an error.
    ///
    /// ```ignore
    /// #[action(credentials = ["github"])]
    /// async fn fetch_repo(input: Repo, cx: ActionCtx) -> Result<Info, ActionError> {
    ///     let token = cx.credential("github").await?;
    ///     let request = client.get(url).bearer_auth(token.expose());
    ///     // ..
    /// }
    /// ```
    ///
    /// # Errors
    /// Not retried unless said: `undeclared_credential` when the action does not declare
    /// `name`; `credential_missing` naming the credential and every scope tried (`user:ada,
    /// project:acme, org`); `credential_unreadable` when the value does not decrypt (a
    /// wrong `REPRISE_SECRETS_KEY`) or its file is malformed; `credential_store`
    /// (retryable) when the store failed. No error text holds a value.
    pub async fn credential(&self, name: &str) -> Result<Secret, ActionError> {
        self.credentials
            .resolve(self.identity.as_deref(), name)
            .await
    }

    /// `run-id/correlation-id`: the same on every attempt and every replay of this step, and
    /// different for every other step, so a far side that de-duplicates on it (an
    /// `Idempotency-Key` header, a unique column) applies the effect exactly once.
    pub fn idempotency_key(&self) -> &str {
        &self.idempotency_key
    }

    /// The run's id, or `None` outside a workflow.
    pub fn run_id(&self) -> Option<&str> {
        self.run_id.as_deref()
    }

    /// The step's correlation id, e.g. `hash-file#3`.
    pub fn correlation_id(&self) -> &str {
        &self.correlation_id
    }

    /// The attempt of this step, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// A W3C `traceparent` header value for an outgoing call made by this step, so that
    /// the far side joins the run's trace: with the `otel` feature and its layer installed
    /// (`reprise::telemetry::otel_layer`), the step's own span; otherwise the
    /// `traceparent` the run was started with (the caller's span), if any. `None` when
    /// neither exists (or outside a workflow).
    ///
    /// ```ignore
    /// let mut request = client.post(url);
    /// if let Some(traceparent) = cx.traceparent() {
    ///     request = request.header("traceparent", traceparent);
    /// }
    /// ```
    pub fn traceparent(&self) -> Option<String> {
        crate::telemetry::traceparent_of(&self.span)
            .or_else(|| self.run_traceparent.as_deref().map(str::to_owned))
    }

    /// The run's cancellation token: cancelled when the run is canceled (`runs cancel`,
    /// `POST /runs/{id}/cancel`). A long action can select on
    /// [`CancellationToken::cancelled`] to stop early; whatever it returns is recorded as
    /// usual, and the run then ends `canceled` at its next step boundary.
    ///
    /// ```ignore
    /// tokio::select! {
    ///     result = long_call() => result,
    ///     () = cx.cancellation().cancelled() => Err(ActionError::permanent("canceled")),
    /// }
    /// ```
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancellation
    }

    /// Whether the run was canceled (see [`ActionCtx::cancellation`]).
    pub fn is_canceled(&self) -> bool {
        self.cancellation.is_cancelled()
    }

    /// The resource of type `T` registered with `Engine::builder().resource(..)`.
    ///
    /// # Errors
    /// A permanent `missing_resource` error naming the type when none was registered.
    pub fn resource<T: Any + Send + Sync>(&self) -> Result<Arc<T>, ActionError> {
        self.resources
            .as_ref()
            .and_then(|resources| resources.get::<T>())
            .ok_or_else(|| {
                ActionError::new(
                    "missing_resource",
                    format!(
                        "no resource of type `{}` is registered; add `.resource(value)` to `Engine::builder()`",
                        std::any::type_name::<T>()
                    ),
                    false,
                )
            })
    }
}
