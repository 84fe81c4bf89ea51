use reprise::prelude::*;

#[action]
async fn fast(input: u32) -> Result<u32, ActionError> {
    Ok(input)
}

#[workflow]
async fn racing(input: u32) -> Result<u32, WorkflowError> {
    let out = tokio::select! {
        a = fast.run(input) => a?,
        b = fast.run(input + 1) => b?,
    };
    Ok(out)
}

fn main() {}
