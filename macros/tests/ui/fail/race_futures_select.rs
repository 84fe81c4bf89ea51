// `futures::select!` and `select_biased!` race futures without recording the winner, also
// when the steps are made (and fused) before the macro and only the variables race.
use futures::FutureExt;
use reprise::prelude::*;

#[action]
async fn fetch(input: u32) -> Result<u32, ActionError> {
    Ok(input)
}

#[workflow]
async fn racing(input: u32) -> Result<u32, WorkflowError> {
    let mut a = Box::pin(fetch.run(input).fuse());
    let mut b = Box::pin(fetch.run(input + 1).fuse());
    let first = futures::select! {
        x = a => x?,
        y = b => y?,
    };
    let second = futures::select_biased! {
        x = a => x?,
        y = b => y?,
    };
    Ok(first + second)
}

fn main() {}
