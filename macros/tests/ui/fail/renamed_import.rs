// `use` items inside the body are resolved: a renamed clock, RNG or race is rejected like
// its full path, and so is the `use` of a rejected item itself.
use reprise::prelude::*;

// A stand-in for the `rand` crate, which this test does not depend on: the macro only
// sees paths.
mod rand {
    pub fn random<T: Default>() -> T {
        T::default()
    }
}

#[action]
async fn fetch(input: u32) -> Result<u32, ActionError> {
    Ok(input)
}

#[workflow]
async fn renamed(input: u32) -> Result<u32, WorkflowError> {
    use futures::future::select;
    use rand::random as dice;
    use std::time::SystemTime as Wall;
    use tokio::time::timeout;

    let started = Wall::now();
    let roll: u32 = dice();
    let _ = timeout(std::time::Duration::from_secs(1), fetch.run(input)).await;
    let _ = select(Box::pin(fetch.run(1)), Box::pin(fetch.run(2))).await;
    let _ = started;
    Ok(roll)
}

fn main() {}
