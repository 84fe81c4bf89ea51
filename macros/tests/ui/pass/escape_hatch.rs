// A non-step `run` method stays usable in a workflow body when called as a path, and
// `#[step(id)]` pins a site.
#![deny(warnings)]

use reprise::prelude::*;

struct Runner {
    base: u32,
}

impl Runner {
    fn run(&self, a: u32, b: u32) -> u32 {
        self.base + a + b
    }
}

#[action]
async fn notify(input: u32) -> Result<u32, ActionError> {
    Ok(input)
}

#[workflow]
async fn with_runner(input: u32) -> Result<u32, WorkflowError> {
    let runner = Runner { base: input };
    let total = Runner::run(&runner, 1, 2);
    #[step(id = "first-notify")]
    let first = notify.run(total).await?;
    #[step(id = "second-notify")]
    notify.run(first).await?;
    Ok(first)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let engine = Engine::builder().discover().unwrap().build().unwrap();
    assert_eq!(engine.run(&with_runner, 10).await.unwrap().unwrap(), 13);
}
