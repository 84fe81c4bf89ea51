// Reading the environment in a workflow body is a warning (shown here as an error with
// `deny`): the value is not recorded.
#![deny(deprecated)]

use reprise::prelude::*;

#[workflow]
async fn configured(input: String) -> Result<String, WorkflowError> {
    let base = std::env::var("BASE_URL").unwrap_or_default();
    Ok(format!("{base}/{input}"))
}

fn main() {}
