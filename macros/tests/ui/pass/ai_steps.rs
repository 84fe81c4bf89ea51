//! `prompt_llm(..)` and `agent.prompt(..)` are rewritten into recorded steps, also inside
//! `join!` and `format!`, and with builder calls and turbofish on the result.
use std::future::IntoFuture;

use reprise::prelude::*;

#[derive(Clone, Serialize, Deserialize, JsonSchema)]
struct Label {
    label: String,
}

/// Looks something up.
#[action]
async fn look_up(input: String) -> Result<String, ActionError> {
    Ok(input)
}

#[workflow]
async fn triage(ticket: String) -> Result<String, WorkflowError> {
    let label = prompt_llm(format!("Label: {ticket}"))
        .model("openai/gpt-4o-mini")
        .system("Reply with JSON.")
        .output::<Label>()
        .await?;
    let agent = Agent::new("helper").tool(look_up).max_turns(3);
    // Both are `IntoFuture` builders: `join!` takes them with `.into_future()`.
    let (a, b) = futures::join!(
        agent.prompt(ticket.clone()).into_future(),
        reprise::prompt_llm("second").temperature(0.2).into_future()
    );
    let reply = a?;
    Ok(format!("{} {} {}", label.label, reply.text, b?))
}

fn main() {}
