use reprise::prelude::*;

#[action]
async fn add(input: (u32, u32)) -> Result<u32, ActionError> {
    Ok(input.0 + input.1)
}

#[workflow]
async fn adds(input: u32) -> Result<u32, WorkflowError> {
    Ok(add.run(input, 1).await?)
}

fn main() {}
