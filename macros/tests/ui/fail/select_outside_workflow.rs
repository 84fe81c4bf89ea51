use reprise::prelude::*;

#[action]
async fn charge(input: u32) -> Result<u32, ActionError> {
    Ok(input)
}

// Not a workflow body: nothing records the winner.
async fn helper(ctx: Ctx) -> Result<u32, ActionError> {
    let out = reprise::select! {
        _ = ctx.sleep("1s") => 0,
    };
    Ok(out)
}

#[workflow]
async fn racing(_ctx: Ctx, input: u32) -> Result<u32, WorkflowError> {
    // An `else` arm: a durable select always waits for its first branch.
    let out = reprise::select! {
        a = charge.run(input) => a?,
        else => 0,
    };
    Ok(out)
}

fn main() {}
