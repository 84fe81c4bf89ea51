//! `expense-report`: a sub-workflow that sleeps and waits on a hook — durable waits at any
//! depth.
//!
//! The top-level workflow `expense-report` calls the sub-workflow `review-expense` with
//! `.run(..)`, then settles the report. The review files the expense in the ledger, holds
//! it for the input's `hold` (a durable sleep: the employee may still attach receipts),
//! then asks the manager for a decision on an approval hook whose resume URL it sends
//! through an action. Both waits are recorded under the sub-workflow's step
//! (`review-expense#0/sleep#0`, `review-expense#0/hook#0`) and behave exactly as at the top
//! level: the run holds nothing while it sleeps or waits, any process on the database
//! continues it, and a recorded step never runs again. The report is tagged with its
//! employee, amount and (from the sub-workflow) the manager's decision, so runs can be
//! searched by them (`runs list --tag employee=Ada`).
//!
//! ```text
//! cargo run -q -p reprise-examples -- workflows run expense-report \
//!     --input '{"employee":"Ada","amount_cents":4200,"description":"Train to Lisbon","hold":"2s"}'
//! # waits out the 2 s hold, prints the resume URL and exits 3: the run is waiting
//! cargo run -q -p reprise-examples -- hooks resume <token> --payload '{"approved":true,"by":"Grace"}'
//! # {"expense_id":"…/review-expense#0/record-expense#0","result":"paid","by":"Grace",…}
//! ```

use std::time::Duration;

use reprise::prelude::*;

use crate::approval::Decision;

/// An expense report, as the employee submits it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExpenseReport {
    /// Who spent the money.
    pub employee: String,
    /// How much, in cents.
    pub amount_cents: u64,
    /// What it was for.
    pub description: String,
    /// How long the report is held before the manager is asked (a duration such as `"1d"`,
    /// or `"2s"` in a demo; default `"1h"`): time for the employee to attach receipts.
    #[serde(default = "default_hold")]
    pub hold: String,
    /// How long the payout waits for the bank's confirmation after it was sent, in
    /// milliseconds (default 0). A demo sets it to `kill -9` the process mid-payout: the
    /// payout, sent but not yet recorded, is sent again on resume under the same
    /// idempotency key, which a real bank would use to drop the repeat.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub confirm_ms: u64,
}

fn default_hold() -> String {
    "1h".to_owned()
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// An expense filed in the ledger.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Filed {
    /// The ledger entry's id: the filing step's idempotency key.
    pub expense_id: String,
}

/// The message asking the manager for a decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReviewRequest {
    /// The ledger entry to decide on.
    pub expense_id: String,
    /// Who spent the money.
    pub employee: String,
    /// How much, in cents.
    pub amount_cents: u64,
    /// What it was for.
    pub description: String,
    /// Where the decision is to be sent (`POST` JSON such as
    /// `{"approved":true,"by":"Grace"}`, or `GET` with a query).
    pub resume_url: String,
}

/// The outcome of the review sub-workflow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Review {
    /// The ledger entry.
    pub expense_id: String,
    /// The manager's decision.
    pub decision: Decision,
}

/// What settling the report is asked to do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Settlement {
    /// The ledger entry.
    pub expense_id: String,
    /// Who is paid (or told of the rejection).
    pub employee: String,
    /// The amount paid when approved, in cents.
    pub amount_cents: u64,
    /// Whether the manager approved.
    pub approved: bool,
    /// How long to wait for the bank's confirmation, in milliseconds.
    pub confirm_ms: u64,
}

/// How the report ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExpenseOutcome {
    /// The ledger entry.
    pub expense_id: String,
    /// `"paid"` or `"rejected"`.
    pub result: String,
    /// Who decided.
    pub by: String,
    /// The amount paid, in cents (0 when rejected).
    pub paid_cents: u64,
    /// The settlement's id: its step's idempotency key, the key a bank would be given.
    pub settlement_id: String,
}

/// Files the expense in the ledger (here: prints it on standard error).
#[action(retries = 3, backoff = "200ms")]
pub async fn record_expense(input: ExpenseReport, cx: ActionCtx) -> Result<Filed, ActionError> {
    crate::effects::record(&cx)?;
    eprintln!(
        "[ledger] {} spent {} on \"{}\"",
        input.employee,
        cents(input.amount_cents),
        input.description
    );
    Ok(Filed {
        expense_id: cx.idempotency_key().to_owned(),
    })
}

/// Asks the manager for a decision (here: prints the request on standard error, as a chat
/// bot would post it).
#[action(retries = 3, backoff = "200ms")]
pub async fn ask_manager(input: ReviewRequest, cx: ActionCtx) -> Result<(), ActionError> {
    crate::effects::record(&cx)?;
    eprintln!(
        "[expenses] {} asks for {} (\"{}\"): POST {{\"approved\":true,\"by\":\"<you>\"}} to {url}, \
         or open {url}?approved=true&by=<you> (approved=false to reject)",
        input.employee,
        cents(input.amount_cents),
        input.description,
        url = input.resume_url
    );
    Ok(())
}

/// Settles the report: pays an approved amount out to the employee, or tells them of the
/// rejection (here: prints it on standard error), then waits `confirm_ms` for the bank.
#[action(retries = 3, backoff = "200ms")]
pub async fn settle_expense(input: Settlement, cx: ActionCtx) -> Result<String, ActionError> {
    crate::effects::record(&cx)?;
    if input.approved {
        eprintln!(
            "[payout] {} to {} for {}",
            cents(input.amount_cents),
            input.employee,
            input.expense_id
        );
    } else {
        eprintln!(
            "[expenses] told {} that {} was rejected",
            input.employee, input.expense_id
        );
    }
    // An action may block and wait as it likes; a crash here repeats the effect above.
    tokio::time::sleep(Duration::from_millis(input.confirm_ms)).await;
    Ok(cx.idempotency_key().to_owned())
}

fn cents(amount: u64) -> String {
    format!("{}.{:02}", amount / 100, amount % 100)
}

/// Files the expense, holds it for `hold` (a durable sleep), then waits on the manager's
/// decision (a hook). Called as a sub-workflow by [`expense_report`], it also runs on its
/// own (`workflows run review-expense`).
#[workflow(slug = "review-expense")]
pub async fn review_expense(ctx: Ctx, input: ExpenseReport) -> Result<Review, WorkflowError> {
    // Refuse a malformed hold ("a while") before anything is filed.
    let hold: Duration = reprise::SleepDuration::to_duration(&input.hold)?;
    let filed = record_expense.run(input.clone()).await?;
    // Durable, also inside a sub-workflow: the wake-up time is recorded and the run suspends.
    ctx.sleep(hold).await?;
    let hook = ctx.hook::<Decision>();
    ask_manager
        .run(ReviewRequest {
            expense_id: filed.expense_id.clone(),
            employee: input.employee,
            amount_cents: input.amount_cents,
            description: input.description,
            resume_url: hook.resume_url(),
        })
        .await?;
    let decision = hook.await?;
    // Tagged from the sub-workflow: the tag attaches to the run being executed (the
    // `expense-report` run), so `runs list --tag decision=rejected` finds the report.
    let verdict = if decision.approved {
        "approved"
    } else {
        "rejected"
    };
    ctx.tag("decision", verdict).await?;
    Ok(Review {
        expense_id: filed.expense_id,
        decision,
    })
}

/// Reviews the report in the [`review_expense`] sub-workflow (a sleep and a hook inside it),
/// then settles it: pays it out when approved.
#[workflow(slug = "expense-report")]
pub async fn expense_report(
    ctx: Ctx,
    input: ExpenseReport,
) -> Result<ExpenseOutcome, WorkflowError> {
    // Searchable business fields: `runs list --tag employee=Ada --tag 'amount_cents>=10000'`.
    ctx.tag("employee", input.employee.as_str()).await?;
    ctx.tag("amount_cents", input.amount_cents).await?;
    let review = review_expense.run(input.clone()).await?;
    let approved = review.decision.approved;
    let settlement_id = settle_expense
        .run(Settlement {
            expense_id: review.expense_id.clone(),
            employee: input.employee,
            amount_cents: input.amount_cents,
            approved,
            confirm_ms: input.confirm_ms,
        })
        .await?;
    Ok(ExpenseOutcome {
        expense_id: review.expense_id,
        result: if approved { "paid" } else { "rejected" }.to_owned(),
        by: review.decision.by,
        paid_cents: if approved { input.amount_cents } else { 0 },
        settlement_id,
    })
}
