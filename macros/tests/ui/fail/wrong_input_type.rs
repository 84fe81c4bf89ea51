use reprise::prelude::*;

#[action]
async fn double(input: u32) -> Result<u32, ActionError> {
    Ok(input * 2)
}

#[workflow]
async fn typed(input: String) -> Result<u32, WorkflowError> {
    Ok(double.run(input).await?)
}

fn main() {}
