// Signal and update names must be string literals with the types in the turbofish: the
// workflow's registration lists them, and deliveries are checked against them.
use reprise::prelude::*;

#[workflow]
async fn messages(ctx: Ctx, input: String) -> Result<u32, WorkflowError> {
    let by_variable = ctx.signal::<u32>(&input).recv().await?;
    let untyped: u32 = ctx.signal("paid").recv().await?;
    let spaced = ctx.signal::<u32>("not a name").recv().await?;
    let half = ctx.updates::<u32>("set-limit");
    let first = ctx.signal::<u32>("count").recv().await?;
    let second = ctx.signal::<String>("count").recv().await?;
    let _ = (half, second);
    Ok(by_variable + untyped + spaced + first)
}

fn main() {}
