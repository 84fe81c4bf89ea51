//! `fulfill-order`: changing a workflow while runs are in flight.
//!
//! Version 1 charged the card, told the customer, waited a cooling-off hour (a durable
//! sleep, so runs stay in flight for that hour) and shipped. Version 2, below, also tells
//! the customer at once that the order arrived. Two things keep the runs recorded by
//! version 1 replaying:
//!
//! - `ctx.patched("order-received-notice")` is `false` for runs that passed that point
//!   before the change, so they do not send the new notice late, out of order;
//! - the new notice is a second call site of `notify-customer` *in front of* the old one,
//!   which would take the old one's key (`notify-customer`) and turn it into
//!   `notify-customer@2`; `#[step(id = "…")]` pins both, the old call to the key version 1
//!   recorded it under.
//!
//! `examples/tests/it/replay.rs` replays histories recorded by version 1
//! (`examples/tests/fixtures/fulfill-order-v1-*.json`) against this code, and shows the
//! non-determinism the same change reports without these two measures.
//!
//! ```text
//! cargo run -q -p reprise-examples -- workflows run fulfill-order \
//!     --input '{"id":7,"item":"kettle","cents":3900}'
//! # the CLI waits out the hour in-process; press Ctrl-C: the run stays `sleeping`
//! cargo run -q -p reprise-examples -- workflows check     # do the recorded runs still replay?
//! ```

use reprise::prelude::*;

/// An order to fulfill.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Order {
    /// The order number.
    pub id: u32,
    /// What was ordered.
    pub item: String,
    /// The price, in cents.
    pub cents: u64,
}

/// A card payment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Receipt {
    /// The order number.
    pub order: u32,
    /// The payment's id at the card processor.
    pub charge: String,
}

/// A message to the customer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Notice {
    /// The order number.
    pub order: u32,
    /// The message.
    pub text: String,
}

/// A shipped order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Shipment {
    /// The order number.
    pub order: u32,
    /// The parcel's tracking number.
    pub tracking: String,
}

/// Charges the customer's card.
#[action(retries = 3, backoff = "200ms")]
pub async fn charge_card(input: Order, cx: ActionCtx) -> Result<Receipt, ActionError> {
    crate::effects::record(&cx)?;
    Ok(Receipt {
        order: input.id,
        charge: format!("ch-{}-{}", input.id, input.cents),
    })
}

/// Emails the customer (here: prints the email on standard error).
#[action(retries = 3, backoff = "200ms")]
pub async fn notify_customer(input: Notice, cx: ActionCtx) -> Result<(), ActionError> {
    crate::effects::record(&cx)?;
    eprintln!("[mail] order {}: {}", input.order, input.text);
    Ok(())
}

/// Hands the parcel to the carrier.
#[action(retries = 3, backoff = "200ms")]
pub async fn ship_order(input: Receipt, cx: ActionCtx) -> Result<Shipment, ActionError> {
    crate::effects::record(&cx)?;
    Ok(Shipment {
        order: input.order,
        tracking: format!("TRK-{}", input.order),
    })
}

/// The notice version 1 sent after the charge.
pub fn charged_notice(order: &Order, receipt: &Receipt) -> Notice {
    Notice {
        order: order.id,
        text: format!(
            "your {} is paid ({} cents, {}); it ships in an hour",
            order.item, order.cents, receipt.charge
        ),
    }
}

/// The notice version 2 added, sent as soon as the order arrives.
pub fn received_notice(order: &Order) -> Notice {
    Notice {
        order: order.id,
        text: format!("we received your order for a {}", order.item),
    }
}

/// Charges an order, tells the customer, waits a cooling-off hour and ships it
/// (version 2: also confirms receipt at once).
#[workflow(slug = "fulfill-order")]
pub async fn fulfill_order(ctx: Ctx, order: Order) -> Result<Shipment, WorkflowError> {
    // New in version 2. Runs recorded by version 1 went past this point without it.
    if ctx.patched("order-received-notice") {
        #[step(id = "notify-received")]
        notify_customer.run(received_notice(&order)).await?;
    }
    let receipt = charge_card.run(order.clone()).await?;
    // Version 1's only call site of `notify-customer`: pinned to the key it had then.
    #[step(id = "notify-customer")]
    notify_customer
        .run(charged_notice(&order, &receipt))
        .await?;
    ctx.sleep("1h").await?;
    Ok(ship_order.run(receipt).await?)
}
