use reprise::prelude::*;

#[action]
fn not_async(input: u32) -> Result<u32, ActionError> {
    Ok(input)
}

fn main() {}
