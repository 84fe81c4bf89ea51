use reprise::prelude::*;

#[action]
async fn stamp(input: u64) -> Result<u64, ActionError> {
    Ok(input)
}

#[workflow]
async fn clocky(ctx: Ctx, input: u64) -> Result<u64, WorkflowError> {
    let now = std::time::SystemTime::now();
    let handle = tokio::spawn(async move { input });
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let _ = (now, handle, ctx);
    Ok(stamp.run(input).await?)
}

fn main() {}
