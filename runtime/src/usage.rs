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
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, other: Usage) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.total_tokens += other.total_tokens;
    }
}
