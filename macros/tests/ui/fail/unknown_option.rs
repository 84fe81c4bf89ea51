use reprise::prelude::*;

#[action(retry = 3)]
async fn typo(input: u32) -> Result<u32, ActionError> {
    Ok(input)
}

#[action(retries = 3, colour = "blue")]
async fn unknown(input: u32) -> Result<u32, ActionError> {
    Ok(input)
}

#[action(retries = 1, retries = 2)]
async fn twice(input: u32) -> Result<u32, ActionError> {
    Ok(input)
}

#[workflow(retries = 3)]
async fn wf(input: u32) -> Result<u32, WorkflowError> {
    Ok(input)
}

fn main() {}
