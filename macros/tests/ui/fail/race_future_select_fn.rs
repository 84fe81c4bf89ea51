// The racing functions of `futures`: `select`, `select_all`, `select_ok`, also as
// `future::select`.
use futures::future;
use reprise::prelude::*;

#[action]
async fn fetch(input: u32) -> Result<u32, ActionError> {
    Ok(input)
}

#[workflow]
async fn racing(input: u32) -> Result<u32, WorkflowError> {
    let a = Box::pin(fetch.run(input));
    let b = Box::pin(fetch.run(input + 1));
    let first = match futures::future::select(a, b).await {
        future::Either::Left((x, _)) | future::Either::Right((x, _)) => x?,
    };
    let many = vec![Box::pin(fetch.run(1)), Box::pin(fetch.run(2))];
    let (second, _, _) = future::select_all(many).await;
    let many = vec![Box::pin(fetch.run(3)), Box::pin(fetch.run(4))];
    let (third, _) = futures::future::select_ok(many).await?;
    Ok(first + second? + third)
}

fn main() {}
