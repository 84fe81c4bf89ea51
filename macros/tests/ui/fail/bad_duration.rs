use reprise::prelude::*;

#[action(backoff = "fast", timeout = "soon")]
async fn slow(input: u32) -> Result<u32, ActionError> {
    Ok(input)
}

#[action(timeout = "0s")]
async fn instant(input: u32) -> Result<u32, ActionError> {
    Ok(input)
}

fn main() {}
