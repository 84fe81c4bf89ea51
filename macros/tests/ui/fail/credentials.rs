use reprise::prelude::*;

#[action(credentials = ["github"])]
async fn undeclared(input: u32, cx: ActionCtx) -> Result<u32, ActionError> {
    let _github = cx.credential("github").await?;
    let _slack = cx.credential("slack").await?;
    Ok(input)
}

#[action]
async fn declares_nothing(input: u32, cx: ActionCtx) -> Result<u32, ActionError> {
    let _token = cx.credential("github").await?;
    Ok(input)
}

#[action(credentials = [("billing", Scope::Team), ("github", Scope::User("ada"))])]
async fn bad_pins(input: u32) -> Result<u32, ActionError> {
    Ok(input)
}

#[action(credentials = ["github", "github", "open ai"])]
async fn bad_names(input: u32) -> Result<u32, ActionError> {
    Ok(input)
}

#[workflow(credentials = ["github"])]
async fn on_a_workflow(input: u32) -> Result<u32, WorkflowError> {
    Ok(input)
}

fn main() {}
