// An action taking `cx: ActionCtx`, called directly (outside a workflow) and as a step.
#![deny(warnings)]

use reprise::prelude::*;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Order {
    pub id: u32,
}

/// Charges an order.
///
/// Only the first paragraph is the description.
#[action(retries = 2, backoff = "10ms", timeout = "5s", non_retryable = ["declined"])]
pub async fn charge(input: Order, cx: ActionCtx) -> Result<String, ActionError> {
    Ok(format!("{}:{}", input.id, cx.idempotency_key()))
}

#[workflow]
async fn checkout(input: Order) -> Result<String, WorkflowError> {
    Ok(charge.run(input).await?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(charge.run(Order { id: 7 }).await.unwrap(), "7:standalone/charge");
    assert_eq!(<charge as Step>::SLUG, "charge");
    assert_eq!(<charge as Step>::DESCRIPTION, "Charges an order.");

    let engine = Engine::builder().discover().unwrap().build().unwrap();
    let out = engine.run(&checkout, Order { id: 8 }).await.unwrap().unwrap();
    assert!(out.starts_with("8:") && out.ends_with("/charge#0"), "{out}");
}
