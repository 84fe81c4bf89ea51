use reprise::prelude::*;

#[workflow]
async fn only_ctx(ctx: Ctx) -> Result<(), WorkflowError> {
    Ok(())
}

#[workflow]
fn not_async(input: u32) -> Result<u32, WorkflowError> {
    Ok(input)
}

#[workflow]
async fn too_many(ctx: Ctx, a: u32, b: u32) -> Result<u32, WorkflowError> {
    Ok(a + b)
}

#[workflow]
async fn generic<T>(input: u32) -> Option<u32> {
    Some(input)
}

fn main() {}
