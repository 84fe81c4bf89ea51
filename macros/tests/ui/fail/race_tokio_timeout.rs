// `tokio::time::timeout` (also as `time::timeout`, and `timeout_at`) around a step races it
// against a timer without recording which finished first.
use reprise::prelude::*;
use std::time::Duration;
use tokio::time;

#[action]
async fn fetch(input: u32) -> Result<u32, ActionError> {
    Ok(input)
}

#[workflow]
async fn deadline(input: u32) -> Result<u32, WorkflowError> {
    let first = match tokio::time::timeout(Duration::from_secs(5), fetch.run(input)).await {
        Ok(x) => x?,
        Err(_) => 0,
    };
    let second = time::timeout(Duration::from_secs(5), fetch.run(input)).await;
    let at = tokio::time::Instant::now() + Duration::from_secs(5);
    let third = tokio::time::timeout_at(at, fetch.run(input)).await;
    let _ = (second, third);
    Ok(first)
}

fn main() {}
