//! `order-saga`: an order that waits for its payment, addressed by its order id.
//!
//! The run is started with the order id as its business key. It reserves stock, publishes
//! its status (readable from outside while it runs), then races three things in a durable
//! `select!`: the `paid` signal, the `canceled` signal, and a payment deadline (a durable
//! sleep). The winner is recorded, so every replay takes the same branch. Paid: it starts
//! the child run `ship-parcel` (its own run, id, log and retries, linked to this one) and
//! waits for its result durably. Canceled or expired: it releases the stock (a
//! compensation step).
//!
//! ```text
//! cargo run -q -p reprise-examples -- dev &
//! curl -s -X POST 'localhost:8080/workflows/order-saga?key=A-1001' \
//!     -H 'content-type: application/json' -d '{"order_id":"A-1001","amount_cents":4200}'
//! curl -s localhost:8080/workflows/order-saga/runs/A-1001            # the run, by its key
//! curl -s localhost:8080/runs/<run-id>/state                          # {"status":"awaiting_payment"}
//! curl -s -X POST localhost:8080/workflows/order-saga/runs/A-1001/signals/paid \
//!     -H 'content-type: application/json' -d '{"amount_cents":4200,"reference":"pay_1"}'
//! # the run starts `ship-parcel`, waits for it, and completes with the tracking number
//! ```

use reprise::prelude::*;

/// An order to take payment for and ship.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Order {
    /// The order's id (also the run's business key).
    pub order_id: String,
    /// What the customer owes, in cents.
    pub amount_cents: u64,
    /// How long the customer has to pay (a duration such as `"1d"` or `"30s"`; default
    /// `"1d"`). When it passes first, the order expires.
    #[serde(default = "default_deadline")]
    pub pay_within: String,
}

fn default_deadline() -> String {
    "1d".to_owned()
}

/// The `paid` signal: the payment provider confirms a payment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Payment {
    /// The amount paid, in cents.
    pub amount_cents: u64,
    /// The provider's reference for the payment.
    pub reference: String,
}

/// The `canceled` signal: the customer cancels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Cancellation {
    /// Why, in the customer's words.
    pub reason: String,
}

/// What shipping is asked to do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Shipment {
    /// The order.
    pub order_id: String,
}

/// A shipped parcel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Shipped {
    /// The carrier's tracking number.
    pub tracking: String,
}

/// How the order ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderOutcome {
    /// The order.
    pub order_id: String,
    /// `"shipped"`, `"canceled"` or `"expired"`.
    pub result: String,
    /// The payment's reference, when paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<String>,
    /// The tracking number, when shipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<String>,
    /// Why it was canceled, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Reserves the order's stock (here: prints it on standard error).
#[action(retries = 3, backoff = "200ms")]
pub async fn reserve_stock(input: Shipment, cx: ActionCtx) -> Result<(), ActionError> {
    crate::effects::record(&cx)?;
    eprintln!("[stock] reserved for order {}", input.order_id);
    Ok(())
}

/// Releases the order's stock again (the compensation of [`reserve_stock`]).
#[action(retries = 3, backoff = "200ms")]
pub async fn release_stock(input: Shipment, cx: ActionCtx) -> Result<(), ActionError> {
    crate::effects::record(&cx)?;
    eprintln!("[stock] released for order {}", input.order_id);
    Ok(())
}

/// Hands the parcel to the carrier; the tracking number is the step's idempotency key, the
/// key a carrier's API would be given.
#[action(retries = 3, backoff = "200ms")]
pub async fn dispatch_parcel(input: Shipment, cx: ActionCtx) -> Result<Shipped, ActionError> {
    crate::effects::record(&cx)?;
    eprintln!("[carrier] order {} dispatched", input.order_id);
    Ok(Shipped {
        tracking: format!("TRK-{}", cx.idempotency_key().len() * 7919 % 100_000),
    })
}

/// Ships a paid order: started by `order-saga` as a child run.
#[workflow(slug = "ship-parcel")]
pub async fn ship_parcel(input: Shipment) -> Result<Shipped, WorkflowError> {
    Ok(dispatch_parcel.run(input).await?)
}

/// Takes an order from reservation to payment (or cancellation, or expiry) to shipping.
#[workflow(slug = "order-saga")]
pub async fn order_saga(ctx: Ctx, input: Order) -> Result<OrderOutcome, WorkflowError> {
    let shipment = Shipment {
        order_id: input.order_id.clone(),
    };
    reserve_stock.run(shipment.clone()).await?;
    ctx.publish("status", &"awaiting_payment").await?;
    let paid = ctx.signal::<Payment>("paid");
    let canceled = ctx.signal::<Cancellation>("canceled");
    let outcome = |result: &str| OrderOutcome {
        order_id: input.order_id.clone(),
        result: result.to_owned(),
        payment: None,
        tracking: None,
        reason: None,
    };
    reprise::select! {
        payment = paid.recv() => {
            let payment = payment?;
            ctx.publish("status", &"shipping").await?;
            // Its own run, linked to this one; awaiting the handle waits for its result
            // durably (across crashes of either run).
            let child = ship_parcel.start(shipment).await?;
            let shipped = child.await?;
            ctx.publish("status", &"shipped").await?;
            Ok(OrderOutcome {
                payment: Some(payment.reference),
                tracking: Some(shipped.tracking),
                ..outcome("shipped")
            })
        }
        cancellation = canceled.recv() => {
            let cancellation = cancellation?;
            release_stock.run(shipment).await?;
            ctx.publish("status", &"canceled").await?;
            Ok(OrderOutcome {
                reason: Some(cancellation.reason),
                ..outcome("canceled")
            })
        }
        expired = ctx.sleep(input.pay_within.clone()) => {
            expired?;
            release_stock.run(shipment).await?;
            ctx.publish("status", &"expired").await?;
            Ok(outcome("expired"))
        }
    }
}
