//! Routing `vendor/model` ids to providers.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::{LlmError, LlmErrorKind, LlmProvider};

/// Providers by vendor: `openai/gpt-4o-mini` goes to the provider registered as
/// `openai`, with model `gpt-4o-mini`. A model id whose prefix names no registered vendor
/// (`meta-llama/Llama-3-8B` on a vLLM server) goes, whole, to the default provider.
#[derive(Clone, Default)]
pub struct LlmRouter {
    vendors: BTreeMap<String, Arc<dyn LlmProvider>>,
    default: Option<Arc<dyn LlmProvider>>,
}

impl fmt::Debug for LlmRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmRouter")
            .field("vendors", &self.vendors.keys().collect::<Vec<_>>())
            .field("default", &self.default.is_some())
            .finish()
    }
}

impl LlmRouter {
    /// Serves `vendor/…` model ids with `provider` (a later call for the same vendor
    /// replaces it).
    pub fn add(&mut self, vendor: impl Into<String>, provider: Arc<dyn LlmProvider>) {
        self.vendors.insert(vendor.into(), provider);
    }

    /// Serves model ids no vendor claims with `provider`.
    pub fn set_default(&mut self, provider: Arc<dyn LlmProvider>) {
        self.default = Some(provider);
    }

    /// Whether no provider is configured.
    pub fn is_empty(&self) -> bool {
        self.vendors.is_empty() && self.default.is_none()
    }

    /// The provider for `model` and the model name to send it.
    ///
    /// # Errors
    /// [`LlmErrorKind::NoProvider`] naming the id and the configured vendors.
    pub fn route(&self, model: &str) -> Result<(Arc<dyn LlmProvider>, String), LlmError> {
        if let Some((vendor, name)) = model.split_once('/')
            && let Some(provider) = self.vendors.get(vendor)
        {
            return Ok((provider.clone(), name.to_owned()));
        }
        if let Some(provider) = &self.default {
            return Ok((provider.clone(), model.to_owned()));
        }
        let vendors: Vec<&str> = self.vendors.keys().map(String::as_str).collect();
        Err(LlmError::new(
            LlmErrorKind::NoProvider,
            format!(
                "no LLM provider serves model `{model}` (configured vendors: {}); set \
                 OPENAI_BASE_URL/OPENAI_API_KEY, or add one with \
                 `Engine::builder().llm_provider(\"vendor\", provider)`",
                if vendors.is_empty() {
                    "none".to_owned()
                } else {
                    vendors.join(", ")
                }
            ),
        ))
    }
}

/// The engine's LLM configuration as runs see it: the router and the default model. Kept
/// in the run environment by type, so the environment does not depend on this module.
pub(crate) struct LlmSettings {
    pub(crate) router: LlmRouter,
    pub(crate) default_model: Option<String>,
}

impl LlmSettings {
    /// The settings of `env` (none registered: no provider, no default model).
    pub(crate) fn of(env: &crate::run_env::RunEnv) -> &LlmSettings {
        static NONE: std::sync::OnceLock<LlmSettings> = std::sync::OnceLock::new();
        env.service::<LlmSettings>().unwrap_or_else(|| {
            NONE.get_or_init(|| LlmSettings {
                router: LlmRouter::default(),
                default_model: None,
            })
        })
    }

    /// The router of `vendor/model` ids to providers.
    pub(crate) fn router(&self) -> &LlmRouter {
        &self.router
    }

    /// The model of LLM steps and agents that name none.
    pub(crate) fn default_model(&self) -> Option<String> {
        self.default_model.clone()
    }

    /// The model `explicit` names, else the default model.
    ///
    /// # Errors
    /// A permanent `llm` error naming `what` (`LLM step `llm#0``, `agent `support``) and
    /// how to set a model, when neither is set.
    pub(crate) fn model_for(
        &self,
        explicit: Option<String>,
        what: &str,
    ) -> Result<String, crate::ActionError> {
        explicit.or_else(|| self.default_model()).ok_or_else(|| {
            crate::ActionError::new(
                super::LLM_ERROR,
                format!(
                    "{what} names no model: add `.model(\"vendor/model\")`, or give the engine a \
                     default with `EngineBuilder::default_model` (the CLI reads \
                     REPRISE_LLM_MODEL)"
                ),
                false,
            )
        })
    }
}
