// Step calls inside closures, async blocks and the known macros are rewritten.
#![deny(warnings)]

use futures::future::join_all;
use reprise::prelude::*;

#[action]
async fn square(input: u64) -> Result<u64, ActionError> {
    Ok(input * input)
}

#[action]
async fn label(input: u64) -> Result<String, ActionError> {
    Ok(format!("#{input}"))
}

#[workflow]
async fn squares(ctx: Ctx, input: Vec<u64>) -> Result<(u64, String), WorkflowError> {
    let all = join_all(input.iter().map(|i| square.run(*i))).await;
    let mut sum = 0;
    for item in all {
        sum += item?;
    }
    let bounded = fan_out(input.clone(), 2, |i| square.run(i + 1)).await;
    for item in bounded {
        sum += item?;
    }
    let (a, b) = futures::try_join!(square.run(2), async { square.run(3).await })?;
    let text = format!("{} {}", label.run(a + b).await?, ctx.attempt());
    let futures = vec![square.run(4), square.run(5)];
    for future in futures {
        sum += future.await?;
    }
    assert!(matches!(square.run(1).await, Ok(1)));
    Ok((sum, text))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let engine = Engine::builder().discover().unwrap().build().unwrap();
    let (sum, text) = engine.run(&squares, vec![1, 2, 3]).await.unwrap().unwrap();
    // 1+4+9, then 4+9+16, then 16+25
    assert_eq!(sum, 14 + 29 + 41);
    assert_eq!(text, "#13 1");
}
