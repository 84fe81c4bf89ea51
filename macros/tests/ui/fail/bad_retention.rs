use reprise::prelude::*;

#[workflow(retention = "a month")]
async fn keep_a_month(_ctx: Ctx, input: u32) -> Result<u32, WorkflowError> {
    Ok(input)
}

#[workflow(retention = "0s")]
async fn keep_nothing(_ctx: Ctx, input: u32) -> Result<u32, WorkflowError> {
    Ok(input)
}

#[workflow(ttl = "30d")]
async fn keep_ttl(_ctx: Ctx, input: u32) -> Result<u32, WorkflowError> {
    Ok(input)
}

fn main() {}
