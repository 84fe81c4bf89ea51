//! `ten-steps`: ten recorded calls of one small action, each with an effect (a line in the
//! [effect log](crate::effects)) and a value derived from its input. The load of the
//! many-workers test: several `worker` processes on one Postgres database, some of them
//! killed with `kill -9`, must still record each step once and complete each run once.
//!
//! ```text
//! cargo run -q -p reprise-examples -- workflows run ten-steps --input 5   # output: 15
//! ```

use reprise::prelude::*;

/// Adds one to `n`, after recording its effect.
#[action(retries = 3, backoff = "50ms")]
pub async fn advance(n: u64, cx: ActionCtx) -> Result<u64, ActionError> {
    crate::effects::record(&cx)?;
    Ok(n + 1)
}

/// Calls `advance` ten times in a row; returns `input + 10`.
#[workflow(slug = "ten-steps")]
pub async fn ten_steps(input: u64) -> Result<u64, WorkflowError> {
    let mut n = input;
    for _ in 0..10 {
        n = advance.run(n).await?;
    }
    Ok(n)
}
