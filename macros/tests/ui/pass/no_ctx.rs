// A workflow without a `Ctx` parameter, and one whose `Ctx` is never used by name.
#![deny(warnings)]

use reprise::prelude::*;

#[action]
async fn greet(name: String) -> Result<String, ActionError> {
    Ok(format!("hello {name}"))
}

#[workflow]
async fn no_ctx(input: String) -> Result<String, WorkflowError> {
    Ok(greet.run(input).await?)
}

#[workflow]
async fn ctx_only_for_waits(ctx: Ctx, input: String) -> Result<String, WorkflowError> {
    ctx.sleep(std::time::Duration::from_millis(1)).await?;
    Ok(greet.run(input).await?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let engine = Engine::builder().discover().unwrap().build().unwrap();
    let out = engine.run(&no_ctx, "ada".to_owned()).await.unwrap().unwrap();
    assert_eq!(out, "hello ada");
    let out = engine.run(&ctx_only_for_waits, "bob".to_owned()).await.unwrap().unwrap();
    assert_eq!(out, "hello bob");
}
