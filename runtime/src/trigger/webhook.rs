//! Webhook sources: [`WebhookSource`], delivered with [`Engine::deliver_webhook`].

use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use schemars::JsonSchema;
use serde_json::Value;
use sha2::Sha256;

use super::guarded;
use crate::engine::Engine;
use crate::error::{EngineError, SchemaViolation, Violation};
use crate::event::{RunId, Trigger};
use crate::schema::{Validator, schema_of};

type FilterFn = Arc<dyn Fn(&Value) -> Result<(), String> + Send + Sync>;
type TransformFn = Arc<dyn Fn(Value) -> Result<Value, String> + Send + Sync>;

/// The header GitHub sends the body's signature in, the default of
/// [`WebhookSource::signature_header`].
pub const DEFAULT_SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// A webhook source: requests to `POST /webhooks/{name}` start runs of a workflow.
///
/// A delivery goes through, in order: the HMAC-SHA256 signature check (the raw body,
/// keyed with the source's secret, sent as `sha256=<hex>` like GitHub does), JSON parsing
/// and the optional request [schema](WebhookSource::schema), the
/// [filters](WebhookSource::filter), the [transform](WebhookSource::transform) into the
/// workflow's input, the workflow's own input schema, and de-duplication by the
/// [delivery id header](WebhookSource::delivery_header). See [`Engine::deliver_webhook`].
///
/// A source must have a secret, or say explicitly that it takes unsigned requests
/// ([`WebhookSource::insecure_no_signature`]); otherwise `EngineBuilder::build` fails.
///
/// ```no_run
/// # fn demo() -> Result<(), reprise::EngineError> {
/// use reprise::trigger::WebhookSource;
/// use serde_json::json;
///
/// let pushes = WebhookSource::new("github", "on-push")
///     .secret_env("GITHUB_WEBHOOK_SECRET")
///     .delivery_header("x-github-delivery")
///     .filter(|body| match body["ref"].as_str() {
///         Some("refs/heads/main") => Ok(()),
///         other => Err(format!("push to {other:?}, not main")),
///     })
///     .transform(|body| Ok(json!({ "commit": body["after"] })));
/// let engine = reprise::Engine::builder().discover()?.webhook(pushes).build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct WebhookSource {
    pub(crate) name: String,
    pub(crate) workflow: String,
    secret: Option<Vec<u8>>,
    pub(crate) insecure: bool,
    signature_header: String,
    delivery_header: Option<String>,
    schema: Option<Arc<Validator>>,
    filters: Vec<FilterFn>,
    transform: Option<TransformFn>,
    /// A definition error found by a builder method, reported by `Triggers::check`.
    pub(crate) problem: Option<String>,
}

impl fmt::Debug for WebhookSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSource")
            .field("name", &self.name)
            .field("workflow", &self.workflow)
            .field("signed", &self.secret.is_some())
            .field("signature_header", &self.signature_header)
            .field("delivery_header", &self.delivery_header)
            .field("schema", &self.schema.is_some())
            .field("filters", &self.filters.len())
            .field("transform", &self.transform.is_some())
            .finish_non_exhaustive()
    }
}

impl WebhookSource {
    /// A source named `name` (its URL is `/webhooks/<name>`; letters, digits, `-`, `_`,
    /// `.`) starting workflow `workflow` with the request body as input. Give it a
    /// [secret](WebhookSource::secret) before building the engine.
    pub fn new(name: impl Into<String>, workflow: impl Into<String>) -> WebhookSource {
        WebhookSource {
            name: name.into(),
            workflow: workflow.into(),
            secret: None,
            insecure: false,
            signature_header: DEFAULT_SIGNATURE_HEADER.to_owned(),
            delivery_header: None,
            schema: None,
            filters: Vec::new(),
            transform: None,
            problem: None,
        }
    }

    /// The shared secret requests are signed with: the signature header must hold
    /// `sha256=<hex of HMAC-SHA256(secret, raw body)>`. An empty secret is rejected at
    /// build time.
    pub fn secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        let secret = secret.into();
        if secret.is_empty() {
            self.problem.get_or_insert_with(|| {
                format!(
                    "webhook source `{}`: the secret is empty; use the secret configured at \
                     the sender",
                    self.name
                )
            });
        }
        self.secret = Some(secret);
        self
    }

    /// Reads the secret from environment variable `var` now; a missing or empty variable
    /// is reported by `EngineBuilder::build`.
    pub fn secret_env(mut self, var: &str) -> Self {
        match std::env::var(var) {
            Ok(secret) if !secret.is_empty() => self.secret(secret),
            _ => {
                self.problem.get_or_insert_with(|| {
                    format!(
                        "webhook source `{}`: environment variable `{var}` is not set (or is \
                         empty); set it to the secret configured at the sender",
                        self.name
                    )
                });
                self
            }
        }
    }

    /// Accepts unsigned requests: anyone who can reach the URL can start runs. Only for
    /// sources that cannot sign (and then behind another check, e.g. a private network).
    pub fn insecure_no_signature(mut self) -> Self {
        self.insecure = true;
        self
    }

    /// The header holding the signature (default `x-hub-signature-256`, as GitHub sends).
    pub fn signature_header(mut self, header: &str) -> Self {
        self.signature_header = header.to_ascii_lowercase();
        self
    }

    /// The header holding a unique delivery id (e.g. `x-github-delivery`): a delivery
    /// whose id already started a run starts nothing and reports that run
    /// ([`WebhookDelivery::Duplicate`]). Without this header (or when a request lacks
    /// it), deliveries are not de-duplicated.
    pub fn delivery_header(mut self, header: &str) -> Self {
        self.delivery_header = Some(header.to_ascii_lowercase());
        self
    }

    /// Checks request bodies against `T`'s JSON Schema; a mismatch is
    /// [`WebhookError::InvalidPayload`] with the JSON pointer of each violation.
    pub fn schema<T: JsonSchema>(self) -> Self {
        self.schema_json(schema_of::<T>())
    }

    /// Checks request bodies against the JSON Schema `schema` (draft 2020-12). An invalid
    /// schema is reported by `EngineBuilder::build`.
    pub fn schema_json(mut self, schema: Value) -> Self {
        match Validator::compile(schema, format!("body of webhook `{}`", self.name)) {
            Ok(validator) => self.schema = Some(Arc::new(validator)),
            Err(error) => {
                self.problem
                    .get_or_insert_with(|| format!("webhook source `{}`: {error}", self.name));
            }
        }
        self
    }

    /// Starts a run only when `filter` accepts the (schema-checked) body: `Err(reason)`
    /// drops the delivery as [`WebhookDelivery::Filtered`] (not an error: the sender gets
    /// a success, so it does not retry). Several filters must all accept.
    pub fn filter(
        mut self,
        filter: impl Fn(&Value) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.filters.push(Arc::new(filter));
        self
    }

    /// Turns the body into the workflow's input (default: the body itself). `Err(message)`
    /// rejects the delivery as [`WebhookError::Transform`]. The result is then checked
    /// against the workflow's input schema.
    pub fn transform(
        mut self,
        transform: impl Fn(Value) -> Result<Value, String> + Send + Sync + 'static,
    ) -> Self {
        self.transform = Some(Arc::new(transform));
        self
    }

    /// The source's name (the `{source}` of its URL).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The slug of the workflow it starts.
    pub fn workflow(&self) -> &str {
        &self.workflow
    }

    /// Whether requests must be signed.
    pub fn is_signed(&self) -> bool {
        self.secret.is_some()
    }

    /// The request body's JSON Schema, if one was set.
    pub fn body_schema(&self) -> Option<&Value> {
        self.schema.as_deref().map(Validator::schema)
    }

    /// The `create_run_once` key of delivery `id`: `webhook:<name>:<id>`.
    pub fn run_key(&self, id: &str) -> String {
        format!("webhook:{}:{id}", self.name)
    }

    fn verify(
        &self,
        secret: &[u8],
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), WebhookError> {
        let header = &self.signature_header;
        let Some(value) = header_value(headers, header) else {
            return Err(WebhookError::BadSignature(format!(
                "missing header `{header}`: sign the raw body with HMAC-SHA256 and the \
                 source's secret and send `{header}: sha256=<hex digest>`"
            )));
        };
        let Some(digest) = value
            .trim()
            .strip_prefix("sha256=")
            .and_then(decode_hex)
            .filter(|digest| digest.len() == 32)
        else {
            return Err(WebhookError::BadSignature(format!(
                "header `{header}` must be `sha256=<hex digest>` (64 hex digits of \
                 HMAC-SHA256 of the raw body)"
            )));
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|e| {
            WebhookError::BadSignature(format!("the source's secret cannot key HMAC: {e}"))
        })?;
        mac.update(body);
        // Constant-time comparison.
        mac.verify_slice(&digest).map_err(|_| {
            WebhookError::BadSignature(format!(
                "header `{header}` does not match the body: check that the sender uses the \
                 same secret and that the body reaches the server unmodified"
            ))
        })
    }

    fn payload_error(&self, message: String) -> WebhookError {
        WebhookError::InvalidPayload(SchemaViolation {
            what: format!("body of webhook `{}`", self.name),
            violations: vec![Violation {
                pointer: String::new(),
                message,
            }],
        })
    }
}

/// What became of an accepted webhook delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WebhookDelivery {
    /// A run was started (HTTP 202).
    Started(RunId),
    /// A delivery with the same id already started this run; nothing new was started
    /// (HTTP 200).
    Duplicate(RunId),
    /// A filter declined the delivery, for this reason; nothing was started (HTTP 200).
    Filtered(String),
    /// The source's workflow is subscribable: the runs this delivery started, one per
    /// active subscription, and those a delivery with the same id already started (HTTP
    /// 202 when it started any, else 200; both empty when no subscription is active).
    Subscribers {
        /// The runs started now.
        started: Vec<RunId>,
        /// The runs started earlier by a delivery with the same id.
        duplicates: Vec<RunId>,
    },
}

impl WebhookDelivery {
    /// The run started or found, if any.
    pub fn run_id(&self) -> Option<&RunId> {
        match self {
            WebhookDelivery::Started(id) | WebhookDelivery::Duplicate(id) => Some(id),
            WebhookDelivery::Subscribers {
                started,
                duplicates,
            } => started.first().or(duplicates.first()),
            WebhookDelivery::Filtered(_) => None,
        }
    }
}

/// Why a webhook delivery was rejected. Nothing was started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// No source has this name (HTTP 404).
    #[error(
        "no webhook source named `{0}`; sources are declared with `EngineBuilder::webhook`, \
         check the URL `/webhooks/<source>`"
    )]
    UnknownSource(String),
    /// The signature header is missing, malformed, or does not match the body (HTTP 401).
    #[error("signature rejected: {0}")]
    BadSignature(String),
    /// The body is not JSON, does not match the source's request schema, or its
    /// transform does not match the workflow's input schema; every violation has its
    /// JSON pointer (HTTP 422).
    #[error("{0}")]
    InvalidPayload(SchemaViolation),
    /// The source's transform rejected the body (HTTP 422).
    #[error("{0}")]
    Transform(String),
    /// The engine or its store failed (HTTP 500); the sender should retry.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl Engine {
    /// Delivers a request to webhook source `source`: checks its signature, parses and
    /// checks the body, applies the source's filters and transform, and starts a run of
    /// its workflow with [`Trigger::Webhook`] (once per delivery id, when the source has a
    /// [delivery header](WebhookSource::delivery_header)). `headers` are `(name, value)`
    /// pairs; names are matched case-insensitively. `body` is the raw request body, as
    /// signed.
    ///
    /// # Errors
    /// See [`WebhookError`]; nothing is started on error.
    pub async fn deliver_webhook(
        &self,
        source: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<WebhookDelivery, WebhookError> {
        let def = self
            .triggers()
            .webhook(source)
            .ok_or_else(|| WebhookError::UnknownSource(source.to_owned()))?;
        match &def.secret {
            Some(secret) => def.verify(secret, headers, body)?,
            None if def.insecure => {}
            None => {
                return Err(WebhookError::BadSignature(format!(
                    "webhook source `{source}` has no secret; give it one with `.secret(..)` \
                     or accept unsigned requests with `.insecure_no_signature()`"
                )));
            }
        }
        let body: Value = serde_json::from_slice(body)
            .map_err(|e| def.payload_error(format!("the body is not JSON: {e}")))?;
        if let Some(schema) = &def.schema {
            schema
                .validate(&body)
                .map_err(WebhookError::InvalidPayload)?;
        }
        for filter in &def.filters {
            let verdict = guarded(|| filter(&body)).map_err(|panic| {
                WebhookError::Transform(format!("a filter of webhook source `{source}` {panic}"))
            })?;
            if let Err(reason) = verdict {
                tracing::debug!(source, %reason, "webhook delivery filtered");
                return Ok(WebhookDelivery::Filtered(reason));
            }
        }
        let input = match &def.transform {
            None => body,
            Some(transform) => guarded(|| transform(body)).unwrap_or_else(Err).map_err(
                |message| {
                    WebhookError::Transform(format!(
                        "the transform of webhook source `{source}` rejected the body: {message}"
                    ))
                },
            )?,
        };
        let delivery = def
            .delivery_header
            .as_deref()
            .and_then(|header| header_value(headers, header))
            .map(str::trim)
            .filter(|id| !id.is_empty());
        // A sender's trace context: the run joins its trace.
        let traceparent = crate::telemetry::incoming_traceparent(header_value(
            headers,
            crate::telemetry::TRACEPARENT,
        ));
        let mut options = crate::StartOptions::new().actor(crate::identity::Actor::Webhook {
            source: def.name.clone(),
            delivery_id: delivery.map(str::to_owned),
        });
        options.traceparent = traceparent;
        let key = delivery.map(|id| def.run_key(id));
        let subscribable = self
            .workflow(&def.workflow)
            .is_ok_and(|entry| entry.subscription.is_some());
        let started = self
            .start_occurrence_with(&def.workflow, key.as_deref(), options, |key, options| {
                let input = input.clone();
                async move {
                    match key {
                        Some(key) => {
                            self.start_once_with(
                                &def.workflow,
                                input,
                                Trigger::Webhook,
                                &key,
                                &options,
                            )
                            .await
                        }
                        None => {
                            self.start_with(&def.workflow, input, Trigger::Webhook, options)
                                .await
                        }
                    }
                }
            })
            .await
            .map(|runs| {
                if subscribable {
                    let (started, duplicates): (Vec<_>, Vec<_>) =
                        runs.into_iter().partition(|(_, created)| *created);
                    WebhookDelivery::Subscribers {
                        started: started.into_iter().map(|(id, _)| id).collect(),
                        duplicates: duplicates.into_iter().map(|(id, _)| id).collect(),
                    }
                } else {
                    match runs.into_iter().next() {
                        Some((run, true)) => WebhookDelivery::Started(run),
                        Some((run, false)) => WebhookDelivery::Duplicate(run),
                        None => WebhookDelivery::Subscribers {
                            started: Vec::new(),
                            duplicates: Vec::new(),
                        },
                    }
                }
            });
        match started {
            Ok(delivery) => {
                tracing::info!(source, ?delivery, "webhook delivered");
                Ok(delivery)
            }
            Err(EngineError::Schema(violation)) => Err(WebhookError::InvalidPayload(violation)),
            Err(error) => Err(WebhookError::Engine(error)),
        }
    }
}

fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| {
            let high = char::from(pair[0]).to_digit(16)?;
            let low = char::from(pair[1]).to_digit(16)?;
            u8::try_from(high * 16 + low).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::decode_hex;

    #[test]
    fn hex_decodes_both_cases_and_rejects_junk() {
        assert_eq!(decode_hex("00ffAB"), Some(vec![0, 255, 0xab]));
        assert_eq!(decode_hex("0"), None);
        assert_eq!(decode_hex("zz"), None);
        assert_eq!(decode_hex(""), Some(vec![]));
    }
}
