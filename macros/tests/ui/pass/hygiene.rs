// User items named like the types and helpers the macros generate must not confuse them.
#![deny(warnings)]
#![allow(dead_code)]

use reprise::prelude::{action, workflow, ActionError, WorkflowError};

struct Result;
struct Ctx;
struct Step;
struct Box;
struct Option;
struct Site;
struct SiteKind;
struct Registration;
struct BoxFuture;
struct ActionCtx;
mod core {}

#[action]
async fn double(input: u32) -> std::result::Result<u32, ActionError> {
    Ok(input * 2)
}

#[action(slug = "add-one")]
async fn add_one(input: u32, cx: reprise::ActionCtx) -> std::result::Result<u32, ActionError> {
    let _ = cx.attempt();
    Ok(input + 1)
}

/// A user param named like the macro's generated locals does not clash with them.
#[workflow]
async fn twice(__reprise_ctx: reprise::Ctx, __reprise_input: u32) -> std::result::Result<u32, WorkflowError> {
    let __reprise_result = double.run(__reprise_input).await?;
    let __reprise_body = add_one.run(__reprise_result).await?;
    __reprise_ctx.sleep(std::time::Duration::from_millis(1)).await?;
    Ok(__reprise_body)
}

mod aliased {
    use reprise::prelude::*;

    type Result<T> = std::result::Result<T, ActionError>;

    #[action]
    pub async fn triple(input: u32) -> Result<u32> {
        Ok(input * 3)
    }

    mod wf {
        pub type Result<T> = std::result::Result<T, super::WorkflowError>;
    }

    #[workflow]
    pub async fn nine_times(input: u32) -> wf::Result<u32> {
        let once = triple.run(input).await?;
        Ok(triple.run(once).await?)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let engine = reprise::Engine::builder().discover().unwrap().build().unwrap();
    assert_eq!(engine.run(&twice, 4).await.unwrap().unwrap(), 9);
    assert_eq!(engine.run(&aliased::nine_times, 2).await.unwrap().unwrap(), 18);
}
