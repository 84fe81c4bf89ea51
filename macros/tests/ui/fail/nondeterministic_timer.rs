// Timers that are not durable: tokio's sleeps and intervals, `std::thread::sleep`.
use reprise::prelude::*;
use std::time::Duration;

#[workflow]
async fn waiter(input: u32) -> Result<u32, WorkflowError> {
    tokio::time::sleep_until(tokio::time::Instant::now()).await;
    let mut ticks = tokio::time::interval(Duration::from_secs(60));
    ticks.tick().await;
    std::thread::sleep(Duration::from_secs(1));
    Ok(input)
}

fn main() {}
