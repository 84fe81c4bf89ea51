// `tokio::select!` over step futures made before it, and a `select!` imported at the top of
// the file (any macro named `select!` is rejected: the attribute cannot see imports).
use reprise::prelude::*;
use tokio::select;

#[action]
async fn fetch(input: u32) -> Result<u32, ActionError> {
    Ok(input)
}

#[workflow]
async fn racing(ctx: Ctx, input: u32) -> Result<u32, WorkflowError> {
    let a = fetch.run(input);
    let b = ctx.sleep("1h");
    let out = tokio::select! {
        x = a => x?,
        _ = b => 0,
    };
    let c = fetch.run(out);
    select! {
        x = c => Ok(x?),
    }
}

fn main() {}
