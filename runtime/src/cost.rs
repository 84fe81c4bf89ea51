//! What model calls cost: a [`PriceTable`] of per-million-token prices by model, turning the
//! [`Usage`] recorded with each LLM request into money (DESIGN "Observability": a price
//! table per model → cost per request, step, run; usage sums by workflow, model and day).
//!
//! Prices are US dollars per million tokens, split as the vendors bill them: prompt
//! (input) tokens, prompt tokens read from the provider's prompt cache, and completion
//! (output) tokens. Costs are computed when asked for (UI, `GET /usage`, `runs usage`,
//! metrics), from the token counts the event log records, so a corrected price table
//! re-prices old runs too; nothing about money is written to the log.
//!
//! The built-in table ([`PriceTable::builtin`]) holds list prices of common models as their
//! vendors published them (OpenAI and Anthropic pricing pages, checked 2026-11); they
//! change, so production deployments should load their own with
//! [`PriceTable::from_json_file`] (the CLI reads the file named by `REPRISE_PRICES`) or
//! [`crate::EngineBuilder::prices`]. A model the table does not know costs `None`
//! ("unknown"), never `0`.
//!
//! ```
//! use reprise::cost::{ModelPrice, PriceTable};
//! use reprise::llm::Usage;
//!
//! let table = PriceTable::empty().with("my-model", ModelPrice::new(2.0, 8.0));
//! let usage = Usage { prompt_tokens: 1_000_000, completion_tokens: 500_000, total_tokens: 1_500_000, ..Usage::default() };
//! assert_eq!(table.cost("vendor/my-model", &usage), Some(6.0));
//! assert_eq!(table.cost("other", &usage), None);
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use crate::usage::Usage;

/// Prices of one model, in US dollars per million tokens.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    /// Per million prompt (input) tokens not read from the cache.
    pub input: f64,
    /// Per million completion (output) tokens.
    pub output: f64,
    /// Per million prompt tokens read from the provider's prompt cache; `None`: billed as
    /// `input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<f64>,
}

impl ModelPrice {
    /// A price without a cache discount.
    pub const fn new(input: f64, output: f64) -> Self {
        ModelPrice {
            input,
            output,
            cached_input: None,
        }
    }

    /// The same price with cached prompt tokens billed at `per_million`.
    pub const fn cached(mut self, per_million: f64) -> Self {
        self.cached_input = Some(per_million);
        self
    }

    /// What `usage` costs at this price, in US dollars.
    pub fn cost(&self, usage: &Usage) -> f64 {
        let cached = usage.cached_tokens.min(usage.prompt_tokens);
        let fresh = usage.prompt_tokens - cached;
        (fresh as f64 * self.input
            + cached as f64 * self.cached_input.unwrap_or(self.input)
            + usage.completion_tokens as f64 * self.output)
            / 1_000_000.0
    }
}

/// Prices by model id (see the [module docs](self)).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PriceTable {
    models: BTreeMap<String, ModelPrice>,
}

/// The built-in list prices: (model, input, cached input, output), US dollars per million.
const BUILTIN: &[(&str, f64, f64, f64)] = &[
    ("gpt-4o", 2.50, 1.25, 10.00),
    ("gpt-4o-mini", 0.15, 0.075, 0.60),
    ("gpt-4.1", 2.00, 0.50, 8.00),
    ("gpt-4.1-mini", 0.40, 0.10, 1.60),
    ("gpt-4.1-nano", 0.10, 0.025, 0.40),
    ("gpt-5", 1.25, 0.125, 10.00),
    ("gpt-5-mini", 0.25, 0.025, 2.00),
    ("gpt-5-nano", 0.05, 0.005, 0.40),
    ("o3", 2.00, 0.50, 8.00),
    ("o4-mini", 1.10, 0.275, 4.40),
    ("claude-opus-4", 15.00, 1.50, 75.00),
    ("claude-sonnet-4", 3.00, 0.30, 15.00),
    ("claude-3-5-haiku", 0.80, 0.08, 4.00),
];

impl PriceTable {
    /// A table with no prices: every model costs `None`.
    pub fn empty() -> Self {
        PriceTable::default()
    }

    /// The built-in list prices of common OpenAI and Anthropic models (see the [module
    /// docs](self) for where they come from and why to override them).
    pub fn builtin() -> Self {
        let mut table = PriceTable::empty();
        for &(model, input, cached, output) in BUILTIN {
            table = table.with(model, ModelPrice::new(input, output).cached(cached));
        }
        table
    }

    /// This table with `model` priced at `price` (replacing any price it had).
    pub fn with(mut self, model: impl Into<String>, price: ModelPrice) -> Self {
        self.models.insert(model.into(), price);
        self
    }

    /// This table with every price of `other` added, `other` winning where both have one.
    pub fn merged(mut self, other: PriceTable) -> Self {
        self.models.extend(other.models);
        self
    }

    /// A table read from JSON: an object from model id to `{"input", "output",
    /// "cached_input"?}` in US dollars per million tokens, e.g.
    /// `{"gpt-4o": {"input": 2.5, "output": 10, "cached_input": 1.25}}`.
    ///
    /// # Errors
    /// [`EngineError::Config`] naming what is wrong (not JSON, an unknown field, a negative
    /// or non-finite price) and how to write it.
    pub fn from_json(text: &str) -> Result<Self, EngineError> {
        let table: PriceTable = serde_json::from_str(text).map_err(|e| {
            EngineError::Config(format!(
                "the price table is not valid: {e}; write an object such as \
                 {{\"gpt-4o\": {{\"input\": 2.5, \"output\": 10, \"cached_input\": 1.25}}}} \
                 (US dollars per million tokens)"
            ))
        })?;
        for (model, price) in &table.models {
            let prices = [Some(price.input), Some(price.output), price.cached_input];
            if prices
                .into_iter()
                .flatten()
                .any(|p| !p.is_finite() || p < 0.0)
            {
                return Err(EngineError::Config(format!(
                    "the price of model `{model}` in the price table is negative or not a \
                     number; prices are US dollars per million tokens, 0 or more"
                )));
            }
        }
        Ok(table)
    }

    /// [`PriceTable::from_json`] of the file at `path`.
    ///
    /// # Errors
    /// [`EngineError::Config`] naming the file when it cannot be read or parsed.
    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self, EngineError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            EngineError::Config(format!(
                "could not read the price table `{}`: {e}",
                path.display()
            ))
        })?;
        PriceTable::from_json(&text).map_err(|e| match e {
            EngineError::Config(message) => {
                EngineError::Config(format!("`{}`: {message}", path.display()))
            }
            other => other,
        })
    }

    /// The price of `model`: its exact id, else the id without its vendor prefix
    /// (`openai/gpt-4o` → `gpt-4o`), else the longest priced id that `model` starts with
    /// followed by `-` (dated snapshots: `gpt-4o-2024-08-06` → `gpt-4o`).
    pub fn price(&self, model: &str) -> Option<&ModelPrice> {
        if let Some(price) = self.models.get(model) {
            return Some(price);
        }
        let bare = model.rsplit('/').next().unwrap_or(model);
        if let Some(price) = self.models.get(bare) {
            return Some(price);
        }
        self.models
            .iter()
            .filter(|(id, _)| {
                bare.len() > id.len()
                    && bare.starts_with(id.as_str())
                    && bare.as_bytes()[id.len()] == b'-'
            })
            .max_by_key(|(id, _)| id.len())
            .map(|(_, price)| price)
    }

    /// What `usage` cost on `model`, in US dollars; `None` when the table has no price for
    /// the model (see [`PriceTable::price`] for how ids match).
    pub fn cost(&self, model: &str, usage: &Usage) -> Option<f64> {
        self.price(model).map(|price| price.cost(usage))
    }

    /// The models priced, with their prices, sorted by id.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ModelPrice)> {
        self.models.iter().map(|(id, price)| (id.as_str(), price))
    }
}

/// `amount` US dollars for people: cents from $1 up (`$2.40`), six decimals below, where
/// LLM costs usually are (`$0.000374`).
pub(crate) fn dollars(amount: f64) -> String {
    if amount >= 1.0 {
        format!("${amount:.2}")
    } else {
        format!("${amount:.6}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(prompt: u64, cached: u64, completion: u64) -> Usage {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            cached_tokens: cached,
        }
    }

    #[test]
    fn cached_prompt_tokens_are_billed_at_the_cached_price() {
        let price = ModelPrice::new(2.0, 10.0).cached(0.5);
        // 600k fresh × 2 + 400k cached × 0.5 + 100k × 10 = 1.2 + 0.2 + 1.0
        let cost = price.cost(&usage(1_000_000, 400_000, 100_000));
        assert!((cost - 2.4).abs() < 1e-9, "{cost}");
        // No cached price: cached tokens cost the input price.
        let cost = ModelPrice::new(2.0, 10.0).cost(&usage(1_000_000, 400_000, 0));
        assert!((cost - 2.0).abs() < 1e-9, "{cost}");
    }

    #[test]
    fn ids_match_exactly_then_without_vendor_then_by_dated_snapshot() {
        let table = PriceTable::empty()
            .with("gpt-4o", ModelPrice::new(1.0, 1.0))
            .with("gpt-4o-mini", ModelPrice::new(2.0, 2.0))
            .with("openai/special", ModelPrice::new(3.0, 3.0));
        let input = |m: &str| table.price(m).map(|p| p.input);
        assert_eq!(input("gpt-4o"), Some(1.0));
        assert_eq!(input("openai/gpt-4o-mini"), Some(2.0));
        assert_eq!(input("gpt-4o-mini-2024-07-18"), Some(2.0));
        assert_eq!(input("gpt-4o-2024-08-06"), Some(1.0));
        assert_eq!(input("openai/special"), Some(3.0));
        assert_eq!(input("gpt-4"), None);
        assert_eq!(input("gpt-4ox"), None);
    }

    #[test]
    fn a_json_table_is_checked_and_merges_over_the_builtin_one() {
        let file =
            PriceTable::from_json(r#"{"gpt-4o": {"input": 1, "output": 2}}"#).expect("valid table");
        let table = PriceTable::builtin().merged(file);
        assert_eq!(table.price("gpt-4o"), Some(&ModelPrice::new(1.0, 2.0)));
        assert!(table.price("gpt-4o-mini").is_some());
        for bad in [
            r#"{"m": {"input": -1, "output": 2}}"#,
            r#"{"m": {"input": 1, "outptu": 2}}"#,
            "[1]",
        ] {
            let error = PriceTable::from_json(bad).expect_err(bad).to_string();
            assert!(error.contains("price"), "{error}");
        }
    }
}
