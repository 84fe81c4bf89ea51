// Tasks, threads and blocking: tokio, std::thread, rayon, futures::executor.
use reprise::prelude::*;

// A stand-in for the `rayon` crate, which this test does not depend on.
mod rayon {
    pub fn spawn(_: impl FnOnce()) {}
}

#[workflow]
async fn spawner(input: u32) -> Result<u32, WorkflowError> {
    let _ = tokio::spawn(async move { input });
    let _ = tokio::task::spawn_blocking(move || input);
    let _ = std::thread::spawn(move || input);
    rayon::spawn(|| {});
    let _ = futures::executor::block_on(async { input });
    tokio::task::block_in_place(|| {});
    Ok(input)
}

fn main() {}
