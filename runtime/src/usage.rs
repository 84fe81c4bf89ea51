//! [`Usage`]: tokens a model call used — recorded with LLM steps in the event log, summed
//! per step and run. Defined below the event log and the LLM module, which both use it;
//! re-exported as `reprise::llm::Usage`.

use serde::{Deserialize, Serialize};

/// Tokens a call (or a run) used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens of the prompt.
    pub prompt_tokens: u64,
    /// Tokens of the reply.
    pub completion_tokens: u64,
    /// Both.
    pub total_tokens: u64,
    /// Of the prompt tokens, those the provider read from its prompt cache (billed at a
    /// lower price, see [`crate::cost::ModelPrice::cached_input`]); 0 when it did not say.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cached_tokens: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, other: Usage) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.total_tokens += other.total_tokens;
        self.cached_tokens += other.cached_tokens;
    }
}
