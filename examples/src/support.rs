//! `support-triage`: a support desk with AI steps (DESIGN "AI steps").
//!
//! 1. **Triage.** `prompt_llm(..).output::<Triage>()` classifies the ticket: the model must
//!    answer JSON matching [`Triage`] (a [`Category`] and a confidence in `[0, 1]`); a reply
//!    that does not parse or validate is answered with its violations and asked again.
//! 2. **Agent.** An [`Agent`] with two tools, both actions: [`lookup_order`] (a small
//!    built-in order book, [`find_order`]) and [`refund`]. Every model turn and every tool
//!    call is its own recorded step (`support#0/turn#1`, `support#0/lookup-order#0`), so
//!    a crash mid-conversation loses nothing and asks the model nothing twice.
//! 3. **Approval.** [`refund`] issues refunds up to [`APPROVAL_THRESHOLD_CENTS`] at once;
//!    above it, it issues nothing and answers `needs_approval`. The workflow then sends a
//!    resume URL ([`request_refund_approval`]) and waits on a hook (holding nothing) for a
//!    [`Decision`], with the ticket's `approval_timeout` (default `3d`). An approved refund
//!    is issued by [`issue_approved_refund`] — an action the model is *not* offered, so no
//!    reply can approve a refund by itself. (The tool keeps no state, so it cannot see
//!    refunds already made on an order; a real payment service enforces such limits.)
//! 4. **Reply.** [`reply_to_customer`] sends the agent's answer, with the approval's
//!    outcome, and the run returns a [`TriageReport`] (with the agent's token usage;
//!    `runs get` shows every request's).
//!
//! The model is `openai/gpt-4o-mini` ([`DEFAULT_MODEL`]), `REPRISE_EXAMPLES_MODEL`, or the
//! ticket's `model`; [`choose_model`] picks it once per run, as a recorded step, so a run
//! resumed by a process configured with another model keeps the model it started with.
//!
//! Offline (neither `OPENAI_BASE_URL` nor `OPENAI_API_KEY` set) the example app answers
//! with [`ScriptedSupportModel`](crate::support_model::ScriptedSupportModel), a
//! deterministic stand-in that is **not AI**; with them set, a real OpenAI-compatible
//! endpoint answers.
//!
//! ```text
//! cargo run -q -p reprise-examples -- workflows run support-triage --input \
//!     '{"id":"TCK-1","customer_email":"ada@example.com","text":"My kettle from order A-1001 arrived broken. Please refund me."}'
//! # a refund of $34.99: issued by the agent, completes at once
//!
//! cargo run -q -p reprise-examples -- workflows run support-triage --input \
//!     '{"id":"TCK-2","customer_email":"grace@example.com","text":"The espresso machine of order A-1002 leaks. I want my money back."}'
//! # $189.00 is above the threshold: prints the resume URL and exits 3 (waiting)
//! cargo run -q -p reprise-examples -- hooks resume <token> --payload '{"approved":true,"by":"Ada"}'
//! ```

use reprise::AgentReply;
use reprise::prelude::*;

pub use crate::approval::Decision;

/// The chat model used unless `REPRISE_EXAMPLES_MODEL` or the ticket names another.
pub const DEFAULT_MODEL: &str = "openai/gpt-4o-mini";

/// The environment variable naming the chat model (`vendor/model`, e.g.
/// `openai/gpt-4.1-mini`, or a model id a local server knows, such as `llama3.2`).
pub const MODEL_ENV: &str = "REPRISE_EXAMPLES_MODEL";

/// Refunds up to this many cents ($50.00) are issued by the agent; larger ones wait for a
/// person's approval.
pub const APPROVAL_THRESHOLD_CENTS: u64 = 5_000;

/// The line before the customer's own words in the prompts (the scripted model reads
/// what follows it).
pub(crate) const CUSTOMER_WRITES: &str = "The customer writes:\n";

/// The system prompt of the triage step.
pub const TRIAGE_SYSTEM: &str = "You triage customer support tickets of an online shop. \
Answer with JSON only: the ticket's `category` (`billing`: charges, invoices, payments; \
`shipping`: delivery, tracking, delays; `refund`: the customer wants their money back; \
`other`: anything else) and your `confidence` in it, from 0 to 1.";

/// A support ticket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Ticket {
    /// The ticket's id, e.g. `TCK-1`.
    pub id: String,
    /// Who wrote it; the answer goes there.
    #[schemars(email)]
    pub customer_email: String,
    /// What they wrote.
    pub text: String,
    /// The chat model, `vendor/model`; default `REPRISE_EXAMPLES_MODEL`, else
    /// `openai/gpt-4o-mini`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// How long a refund above the threshold waits for a decision (`"3d"`, `"4h"`,
    /// `"30s"`); then the approval expires.
    #[serde(default = "default_approval_timeout")]
    pub approval_timeout: String,
}

fn default_approval_timeout() -> String {
    "3d".to_owned()
}

impl Ticket {
    /// A ticket with the default model and approval timeout.
    pub fn new(
        id: impl Into<String>,
        customer_email: impl Into<String>,
        text: impl Into<String>,
    ) -> Self {
        Ticket {
            id: id.into(),
            customer_email: customer_email.into(),
            text: text.into(),
            model: None,
            approval_timeout: default_approval_timeout(),
        }
    }
}

/// What a ticket is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Charges, invoices, payments.
    Billing,
    /// Delivery, tracking, delays.
    Shipping,
    /// The customer wants their money back.
    Refund,
    /// Anything else.
    Other,
}

impl Category {
    /// The category as the model writes it (`billing`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Billing => "billing",
            Category::Shipping => "shipping",
            Category::Refund => "refund",
            Category::Other => "other",
        }
    }
}

/// The triage step's structured output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Triage {
    /// What the ticket is about.
    pub category: Category,
    /// How sure the model is, from 0 to 1.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub confidence: f64,
}

/// The arguments of [`lookup_order`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderRef {
    /// The order id, as the customer gave it, e.g. `A-1001`.
    pub order_id: String,
}

/// An order in the shop's order book.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Order {
    /// Its id, e.g. `A-1001`.
    pub order_id: String,
    /// What was ordered.
    pub items: Vec<String>,
    /// What the customer paid, in cents.
    pub total_cents: u64,
    /// `processing`, `shipped` or `delivered`.
    pub status: String,
    /// The carrier, once shipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
    /// The expected delivery date, while shipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<String>,
}

/// The built-in order book: `A-1001` ($34.99, delivered), `A-1002` ($189.00, delivered),
/// `A-1003` ($12.99, shipped) and `A-1004` ($450.00, processing).
pub fn find_order(order_id: &str) -> Option<Order> {
    let order = |id: &str, items: &[&str], total_cents, status: &str| Order {
        order_id: id.to_owned(),
        items: items.iter().map(|&item| item.to_owned()).collect(),
        total_cents,
        status: status.to_owned(),
        carrier: None,
        eta: None,
    };
    match order_id.trim() {
        "A-1001" => Some(order("A-1001", &["Blue enamel kettle"], 3_499, "delivered")),
        "A-1002" => Some(order(
            "A-1002",
            &["Espresso machine", "Milk jug"],
            18_900,
            "delivered",
        )),
        "A-1003" => Some(Order {
            carrier: Some("Parcelo".to_owned()),
            eta: Some("2030-01-04".to_owned()),
            ..order("A-1003", &["Tea sampler"], 1_299, "shipped")
        }),
        "A-1004" => Some(order("A-1004", &["Standing desk"], 45_000, "processing")),
        _ => None,
    }
}

/// Cents as dollars: `3499` → `$34.99`.
pub fn dollars(cents: u64) -> String {
    format!("${}.{:02}", cents / 100, cents % 100)
}

/// The arguments of [`refund`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RefundRequest {
    /// The order to refund, e.g. `A-1001`.
    pub order_id: String,
    /// How much to refund, in cents (at most the order's total).
    #[schemars(range(min = 1))]
    pub cents: u64,
    /// Why, in a few words.
    pub reason: String,
}

/// Whether a refund was issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    /// Issued.
    Refunded,
    /// Not issued: above the threshold, a person must approve it.
    NeedsApproval,
}

/// What [`refund`] and [`issue_approved_refund`] answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RefundResult {
    /// Whether the refund was issued.
    pub status: RefundStatus,
    /// The order.
    pub order_id: String,
    /// The amount, in cents.
    pub cents: u64,
    /// The refund's id, once issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<String>,
    /// Who approved it, for a refund above the threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// What happened, in words (for the model).
    pub message: String,
}

/// Picks the chat model of this run: the ticket's, else `REPRISE_EXAMPLES_MODEL`, else
/// `openai/gpt-4o-mini`. A recorded step, so the choice never changes for a run.
#[action]
pub async fn choose_model(requested: Option<String>) -> Result<String, ActionError> {
    let configured = std::env::var(MODEL_ENV)
        .ok()
        .filter(|model| !model.trim().is_empty());
    Ok(requested
        .filter(|model| !model.trim().is_empty())
        .or(configured)
        .unwrap_or_else(|| DEFAULT_MODEL.to_owned()))
}

/// Looks an order up by its id (e.g. `A-1001`): items, total in cents, shipping status,
/// carrier and expected delivery date. Fails for an unknown id.
#[action(retries = 3, backoff = "200ms")]
pub async fn lookup_order(input: OrderRef) -> Result<Order, ActionError> {
    find_order(&input.order_id).ok_or_else(|| {
        ActionError::permanent(format!(
            "there is no order `{}`; order ids look like A-1001: ask the customer to check it",
            input.order_id
        ))
    })
}

/// Refunds `cents` of an order to the customer's card (look the order up first: at most
/// its total). Refunds up to $50.00 are issued at once (`status: refunded`). A larger one is
/// NOT issued: the answer is `status: needs_approval`, a person decides later; tell the
/// customer so, and do not retry or split it.
#[action(retries = 3, backoff = "200ms")]
pub async fn refund(input: RefundRequest, cx: ActionCtx) -> Result<RefundResult, ActionError> {
    let order = refundable(&input.order_id, input.cents)?;
    if input.cents > APPROVAL_THRESHOLD_CENTS {
        return Ok(RefundResult {
            status: RefundStatus::NeedsApproval,
            order_id: order.order_id,
            cents: input.cents,
            refund_id: None,
            approved_by: None,
            message: format!(
                "not refunded: {} is above the {} a refund may have without approval; it \
                 was passed on to a person, who decides within a few days",
                dollars(input.cents),
                dollars(APPROVAL_THRESHOLD_CENTS)
            ),
        });
    }
    issue(&cx, &order, input.cents, None)
}

/// The arguments of [`issue_approved_refund`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovedRefund {
    /// The order to refund.
    pub order_id: String,
    /// How much, in cents.
    #[schemars(range(min = 1))]
    pub cents: u64,
    /// Why.
    pub reason: String,
    /// Who approved it.
    pub approved_by: String,
}

/// Issues a refund a person approved (any amount up to the order's total). Not offered to
/// the model: only the workflow calls it, after the approval hook.
#[action(retries = 3, backoff = "200ms")]
pub async fn issue_approved_refund(
    input: ApprovedRefund,
    cx: ActionCtx,
) -> Result<RefundResult, ActionError> {
    let order = refundable(&input.order_id, input.cents)?;
    issue(&cx, &order, input.cents, Some(input.approved_by))
}

/// The order, if `cents` of it may be refunded.
fn refundable(order_id: &str, cents: u64) -> Result<Order, ActionError> {
    let order = find_order(order_id).ok_or_else(|| {
        ActionError::permanent(format!(
            "there is no order `{order_id}`; look the order up first"
        ))
    })?;
    if cents == 0 || cents > order.total_cents {
        return Err(ActionError::permanent(format!(
            "cannot refund {} of order {}: its total is {}",
            dollars(cents),
            order.order_id,
            dollars(order.total_cents)
        )));
    }
    Ok(order)
}

/// Issues a refund (here: prints it on standard error, as a payment API would be called
/// with the step's idempotency key).
fn issue(
    cx: &ActionCtx,
    order: &Order,
    cents: u64,
    approved_by: Option<String>,
) -> Result<RefundResult, ActionError> {
    crate::effects::record(cx)?;
    let refund_id = format!("RF-{}-{cents}", order.order_id);
    let approval = approved_by
        .as_ref()
        .map(|by| format!(", approved by {by}"))
        .unwrap_or_default();
    eprintln!(
        "[refunds] {refund_id}: refunded {} of order {}{approval}",
        dollars(cents),
        order.order_id
    );
    Ok(RefundResult {
        status: RefundStatus::Refunded,
        order_id: order.order_id.clone(),
        cents,
        message: format!(
            "refunded {} of order {} ({refund_id}); it reaches the card in 3-5 business days",
            dollars(cents),
            order.order_id
        ),
        refund_id: Some(refund_id),
        approved_by,
    })
}

/// A refund waiting for a person's decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RefundApprovalRequest {
    /// The ticket it comes from.
    pub ticket_id: String,
    /// The order.
    pub order_id: String,
    /// How much, in cents.
    pub cents: u64,
    /// Why the agent asked for it.
    pub reason: String,
    /// Where the decision goes: `POST {"approved": true, "by": "<you>"}`, or
    /// `GET <resume_url>?approved=true&by=<you>`.
    pub resume_url: String,
    /// How long the approver has.
    pub decide_within: String,
}

/// Asks a person to approve a refund (here: prints the request and its resume URL on
/// standard error, as a chat bot would post it).
#[action(retries = 3, backoff = "200ms")]
pub async fn request_refund_approval(
    input: RefundApprovalRequest,
    cx: ActionCtx,
) -> Result<(), ActionError> {
    crate::effects::record(&cx)?;
    eprintln!(
        "[approvals] ticket {}: refund {} of order {} ({})? Decide within {}: POST \
         {{\"approved\":true,\"by\":\"<you>\"}} to {url}, or open {url}?approved=true&by=<you> \
         (approved=false to decline)",
        input.ticket_id,
        dollars(input.cents),
        input.order_id,
        input.reason,
        input.decide_within,
        url = input.resume_url
    );
    Ok(())
}

/// The answer to the customer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CustomerReply {
    /// The ticket.
    pub ticket_id: String,
    /// The customer's email.
    pub to: String,
    /// The text.
    pub text: String,
}

/// Answers the customer (here: prints the answer on standard error, as an email would be
/// sent with the step's idempotency key).
#[action(retries = 3, backoff = "200ms")]
pub async fn reply_to_customer(input: CustomerReply, cx: ActionCtx) -> Result<(), ActionError> {
    crate::effects::record(&cx)?;
    eprintln!(
        "[support] to {} (ticket {}): {}",
        input.to, input.ticket_id, input.text
    );
    Ok(())
}

/// How a refund's approval ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    /// Approved; the refund was issued.
    Approved,
    /// Declined; nothing was refunded.
    Declined,
    /// Nobody decided before the approval timeout; nothing was refunded.
    Expired,
}

/// A refund that needed approval, and what became of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalOutcome {
    /// The order.
    pub order_id: String,
    /// The amount asked for, in cents.
    pub cents: u64,
    /// The decision.
    pub status: ApprovalStatus,
    /// Who decided (absent when the approval expired).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// Tokens used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Tokens {
    /// Of the prompts.
    pub prompt: u64,
    /// Of the replies.
    pub completion: u64,
    /// Both.
    pub total: u64,
}

/// What `support-triage` did with a ticket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TriageReport {
    /// The ticket.
    pub ticket_id: String,
    /// The model id the run asked for (`vendor/model`, from [`choose_model`]); which
    /// provider answered depends on the engine's configuration.
    pub model: String,
    /// The triage's category.
    pub category: Category,
    /// The triage's confidence.
    pub confidence: f64,
    /// The agent's answer.
    pub answer: String,
    /// What was sent to the customer: the answer, and the outcome of any approval.
    pub reply: String,
    /// The refunds issued.
    pub refunds: Vec<RefundResult>,
    /// The refunds that needed approval, and their outcome.
    pub approvals: Vec<ApprovalOutcome>,
    /// Model turns the agent took.
    pub turns: u32,
    /// Tokens the agent's turns used (`runs get` adds the triage's).
    pub tokens: Tokens,
}

/// The support agent: `model`, a system prompt, the tools [`lookup_order`] and [`refund`],
/// at most 6 turns with tools.
pub fn support_agent(model: &str) -> Agent {
    Agent::new("support")
        .model(model)
        .system(format!(
            "You are a support agent of an online shop. Resolve the customer's ticket with \
             the tools.\n\
             - First look the order up with `lookup-order` (order ids look like A-1001).\n\
             - Refund only when the customer asks for their money back, at most the order's \
             total, with `refund`. Refunds above {} are not issued at once: `refund` answers \
             `needs_approval` and a person decides. Tell the customer so; do not split or \
             retry the refund.\n\
             - End with a short, friendly answer to the customer saying what you did.",
            dollars(APPROVAL_THRESHOLD_CENTS)
        ))
        .tool(lookup_order)
        .tool(refund)
        .max_turns(6)
}

/// The triage step's prompt.
pub fn triage_prompt(ticket: &Ticket) -> String {
    format!(
        "Classify ticket {} from {}.\n{CUSTOMER_WRITES}{}",
        ticket.id, ticket.customer_email, ticket.text
    )
}

/// The agent's first message.
pub fn agent_prompt(ticket: &Ticket, triage: &Triage) -> String {
    format!(
        "Ticket {} from {}, triaged as {} (confidence {:.2}).\n{CUSTOMER_WRITES}{}",
        ticket.id,
        ticket.customer_email,
        triage.category.as_str(),
        triage.confidence,
        ticket.text
    )
}

/// The refunds the agent's `refund` calls issued, and the ones that need approval (once
/// per order and amount).
fn refund_results(reply: &AgentReply) -> (Vec<RefundResult>, Vec<RefundResult>) {
    let mut issued = Vec::new();
    let mut pending: Vec<RefundResult> = Vec::new();
    for call in reply.tool_calls.iter().filter(|c| c.tool == "refund") {
        // Errors (`{"error": …}`) were answered to the model; they refunded nothing.
        let Ok(result) = serde_json::from_value::<RefundResult>(call.result.clone()) else {
            continue;
        };
        match result.status {
            RefundStatus::Refunded => issued.push(result),
            RefundStatus::NeedsApproval => {
                let seen = pending
                    .iter()
                    .any(|p| p.order_id == result.order_id && p.cents == result.cents);
                if !seen {
                    pending.push(result);
                }
            }
        }
    }
    (issued, pending)
}

/// The agent's answer, followed by the outcome of each approval.
fn customer_text(answer: &str, approvals: &[ApprovalOutcome]) -> String {
    let mut text = answer.trim().to_owned();
    for approval in approvals {
        let what = format!(
            "your refund of {} for order {}",
            dollars(approval.cents),
            approval.order_id
        );
        let update = match approval.status {
            ApprovalStatus::Approved => {
                format!(
                    "{what} was approved and issued; it reaches your card in 3-5 business days."
                )
            }
            ApprovalStatus::Declined => {
                format!("after review, {what} was declined. Reply to this message to discuss it.")
            }
            ApprovalStatus::Expired => {
                format!("{what} could not be reviewed in time; a colleague will contact you.")
            }
        };
        text.push_str("\n\nUpdate: ");
        text.push_str(&update);
    }
    text
}

/// Triages a support ticket, lets an agent with order tools resolve it, waits for a
/// person's approval of a large refund, and answers the customer.
#[workflow(slug = "support-triage")]
pub async fn support_triage(ctx: Ctx, ticket: Ticket) -> Result<TriageReport, WorkflowError> {
    // Refuse a malformed timeout ("soon") before any model is asked or money moves.
    let approval_timeout = reprise::SleepDuration::to_duration(&ticket.approval_timeout)?;
    let model = choose_model.run(ticket.model.clone()).await?;

    let triage = prompt_llm(triage_prompt(&ticket))
        .model(model.clone())
        .system(TRIAGE_SYSTEM)
        .temperature(0.0)
        .output::<Triage>()
        .await?;

    let agent = support_agent(&model);
    let reply = agent.prompt(agent_prompt(&ticket, &triage)).await?;

    let (mut refunds, pending) = refund_results(&reply);
    let mut approvals = Vec::new();
    for asked in pending {
        // The deadline is recorded with the hook: replays and restarts keep it.
        let hook = ctx.hook::<Decision>().timeout(approval_timeout);
        request_refund_approval
            .run(RefundApprovalRequest {
                ticket_id: ticket.id.clone(),
                order_id: asked.order_id.clone(),
                cents: asked.cents,
                reason: format!("ticket triaged as {}", triage.category.as_str()),
                resume_url: hook.resume_url(),
                decide_within: ticket.approval_timeout.clone(),
            })
            .await?;
        let (status, by) = match hook.await {
            Ok(decision) if decision.approved => {
                let issued = issue_approved_refund
                    .run(ApprovedRefund {
                        order_id: asked.order_id.clone(),
                        cents: asked.cents,
                        reason: format!("ticket {}", ticket.id),
                        approved_by: decision.by.clone(),
                    })
                    .await?;
                refunds.push(issued);
                (ApprovalStatus::Approved, Some(decision.by))
            }
            Ok(decision) => (ApprovalStatus::Declined, Some(decision.by)),
            // Nobody decided in time: an outcome to tell the customer, not a failure.
            Err(error) if error.kind == reprise::kinds::TIMEOUT => (ApprovalStatus::Expired, None),
            Err(error) => return Err(error.into()),
        };
        approvals.push(ApprovalOutcome {
            order_id: asked.order_id,
            cents: asked.cents,
            status,
            by,
        });
    }

    let text = customer_text(&reply.text, &approvals);
    reply_to_customer
        .run(CustomerReply {
            ticket_id: ticket.id.clone(),
            to: ticket.customer_email.clone(),
            text: text.clone(),
        })
        .await?;

    Ok(TriageReport {
        ticket_id: ticket.id,
        model,
        category: triage.category,
        confidence: triage.confidence,
        answer: reply.text,
        reply: text,
        refunds,
        approvals,
        turns: reply.turns,
        tokens: Tokens {
            prompt: reply.usage.prompt_tokens,
            completion: reply.usage.completion_tokens,
            total: reply.usage.total_tokens,
        },
    })
}
