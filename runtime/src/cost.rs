//! What model calls cost: a [`PriceTable`] of per-million-token prices by model, turning the
//! [`Usage`] recorded with each LLM request into money (DESIGN "Observability": a price
//! table per model → cost per request, step, run).
//!
//! STUB (issue 13 kick-off): the API the UI and metrics code against; filled in on `main`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::usage::Usage;

/// Prices of one model, in US dollars per million tokens.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelPrice {
    /// Per million prompt (input) tokens.
    pub input: f64,
    /// Per million completion (output) tokens.
    pub output: f64,
}

/// Prices by model id (see the [module docs](self)).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PriceTable {
    models: HashMap<String, ModelPrice>,
}

impl PriceTable {
    /// What `usage` cost on `model`, in US dollars; `None` when the table has no price for
    /// the model.
    pub fn cost(&self, model: &str, usage: &Usage) -> Option<f64> {
        let price = self.models.get(model)?;
        Some(
            (usage.prompt_tokens as f64 * price.input
                + usage.completion_tokens as f64 * price.output)
                / 1_000_000.0,
        )
    }
}
