// Durable select, `.timeout(d)`, inline steps and the run timeout: everything compiles
// under `deny(warnings)`, including a select in statement position, inside a loop, with
// `?`, `break` and `return` in arm bodies, and a `use reprise::select;` import.
#![deny(warnings)]

use reprise::prelude::*;

#[derive(Serialize, Deserialize, JsonSchema)]
struct Approval {
    ok: bool,
}

#[action]
async fn charge(input: u32) -> Result<u32, ActionError> {
    Ok(input)
}

#[workflow(timeout = "7d")]
async fn order(ctx: Ctx, input: u32) -> Result<u32, WorkflowError> {
    let first = reprise::select! {
        charged = charge.run(input) => charged?,
        approval = ctx.hook::<Approval>() => if approval?.ok { 1 } else { return Ok(0) },
        _ = ctx.sleep("2d") => 0,
    };
    let mut total = first;
    loop {
        reprise::select! {
            more = charge.run(total) => { total += more?; }
            slept = ctx.sleep("1h") => { slept?; break; }
        }
        if total > 100 {
            break;
        }
    }
    let late = match charge.run(total).timeout("10m").await {
        Ok(n) => n,
        Err(e) if e.is_timeout() => 0,
        Err(e) => return Err(e.into()),
    };
    let fee: u32 = ctx
        .run("fee", move || async move { Ok(late / 10) })
        .timeout("30s")
        .await?;
    let tip: u32 = ctx
        .run_with("tip", InlineOptions::new().retries(2).backoff("1s"), || async { Ok(1) })
        .await?;
    {
        #[allow(unused_imports)] // rewritten away by `#[workflow]`
        use reprise::select;
        select! {
            _ = ctx.sleep("1s") => {}
        }
    }
    Ok(late + fee + tip)
}

fn main() {}
