use reprise::prelude::*;

#[action]
async fn notify(input: u32) -> Result<u32, ActionError> {
    Ok(input)
}

#[workflow]
async fn pinned(ctx: Ctx, input: u32) -> Result<u32, WorkflowError> {
    #[step(id = "notify-owner")]
    let a = notify.run(input).await?;
    #[step(id = "notify-owner")]
    let b = notify.run(a).await?;
    #[step(id = "nothing-here")]
    let c = a + b;
    #[step(id = "two-calls")]
    let d = notify.run(notify.run(c).await?).await?;
    #[step(id = "sleep")]
    notify.run(d).await?;
    ctx.sleep("1s").await?;
    Ok(d)
}

fn main() {}
