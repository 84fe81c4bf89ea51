use reprise::prelude::*;

#[workflow]
async fn takes_a_number(input: u32) -> Result<u32, WorkflowError> {
    Ok(input)
}

// A handler must take `reprise::FailedRun`.
#[workflow(on_failure = takes_a_number)]
async fn wrong_handler(input: u32) -> Result<u32, WorkflowError> {
    Ok(input)
}

// The handler is a fn path, not a string.
#[workflow(on_failure = "takes-a-number")]
async fn string_handler(input: u32) -> Result<u32, WorkflowError> {
    Ok(input)
}

#[workflow(on_max_attempts = "park")]
async fn unknown_policy(input: u32) -> Result<u32, WorkflowError> {
    Ok(input)
}

#[workflow(on_error = takes_a_number)]
async fn misspelled(input: u32) -> Result<u32, WorkflowError> {
    Ok(input)
}

fn main() {}
