use reprise::prelude::*;

macro_rules! twice {
    ($e:expr) => {{
        $e.await?;
        $e.await?;
    }};
}

#[workflow]
async fn hidden_llm(input: String) -> Result<(), WorkflowError> {
    twice!(prompt_llm(input.clone()));
    Ok(())
}

#[workflow]
async fn hidden_agent(input: String) -> Result<(), WorkflowError> {
    let agent = Agent::new("a");
    twice!(agent.prompt(input.clone()));
    Ok(())
}

#[workflow]
async fn llm_arity(input: String) -> Result<(), WorkflowError> {
    prompt_llm(input, 2).await?;
    Ok(())
}

fn main() {}
