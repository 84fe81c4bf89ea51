// Durable waits: `ctx.sleep`, `ctx.sleep_until`, `ctx.hook()` with and without turbofish,
// and a `mut` ctx binding that is also used for recorded values.
#![deny(warnings)]

use reprise::prelude::*;

#[derive(Serialize, Deserialize, JsonSchema)]
struct Approval {
    by: String,
}

#[action]
async fn notify(input: String) -> Result<(), ActionError> {
    let _ = input;
    Ok(())
}

#[workflow]
async fn approval_flow(mut ctx: Ctx, input: String) -> Result<String, WorkflowError> {
    let hook = ctx.hook::<Approval>();
    notify.run(format!("{input}: approve at {}", hook.resume_url())).await?;
    let approval = hook.await?;
    let started = ctx.now();
    ctx.sleep(std::time::Duration::from_secs(60)).await?;
    ctx.sleep_until(started).await?;
    let second: Approval = ctx.hook().await?;
    ctx = ctx.clone();
    let _ = ctx.attempt();
    Ok(format!("{} {}", approval.by, second.by))
}

fn main() {
    use reprise::Step;
    assert_eq!(<approval_flow as Step>::SLUG, "approval-flow");
}
