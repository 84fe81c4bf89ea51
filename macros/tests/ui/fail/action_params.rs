use reprise::prelude::*;

#[action]
async fn no_input() -> Result<u32, ActionError> {
    Ok(1)
}

#[action]
async fn three(a: u32, cx: ActionCtx, c: u32) -> Result<u32, ActionError> {
    Ok(a + c)
}

#[action]
async fn generic<T: Send>(input: T) -> Result<u32, ActionError> {
    Ok(1)
}

struct Service;

impl Service {
    #[action]
    async fn method(&self, input: u32) -> Result<u32, ActionError> {
        Ok(input)
    }
}

fn main() {}
