//! `llm-batch`: flow control across runs (DESIGN "Flow control"). Summarise hundreds of
//! documents with a chat model without tripping its rate limit, and without letting one
//! big customer take every slot.
//!
//! Every run of `llm-batch` summarises one [`Document`] of one customer: it picks the model
//! ([`choose_model`](crate::support::choose_model), a recorded step), asks it for a
//! summary (`prompt_llm`, one recorded step), and stores the summary ([`store_summary`], an
//! action with an effect). The workflow names its queue, `#[workflow(queue = "llm")]`, and
//! the example app configures that queue ([`queue`]) in `main.rs`:
//!
//! ```
//! # use std::time::Duration;
//! # use reprise::queue::Queue;
//! let llm = Queue::new("llm")
//!     .concurrency(8) // at most 8 summaries in flight, over all workers
//!     .key("/customer") // each run's key: the input's `customer`
//!     .key_concurrency(1) // one summary per customer at a time
//!     .rate_limit(20, Duration::from_secs(1)); // at most 20 starts in any second
//! assert_eq!(llm, reprise_examples::llm_batch::queue());
//! ```
//!
//! The limits hold across every worker process on the database: a run waits `queued`
//! until a worker's claim *admits* it, and it keeps its place (in the 8, and as its
//! customer's one) until it ends. `runs get <id>` says why a waiting run waits ("key
//! `cust-3` has 1 of 1 runs at once already", "the queue reached its rate limit of 20 per
//! 1s").
//!
//! # Try it
//!
//! [`llm_batch_fan`] (`llm-batch-fan`) starts one `llm-batch` child run per document of a
//! generated batch (`documents` of them over `customers` customers) and waits for all of
//! them; with the defaults, 500 runs over 50 customers, which the rate limit spreads over
//! at least 25 seconds:
//!
//! ```text
//! cargo run -q -p reprise-examples -- worker &            # or `dev`; two or three of them
//! cargo run -q -p reprise-examples -- workflows run llm-batch-fan --input '{"documents":500,"customers":50}'
//! cargo run -q -p reprise-examples -- runs list --workflow llm-batch --status queued
//! cargo run -q -p reprise-examples -- runs get <id>       # why this one waits
//! ```
//!
//! One document at a time:
//!
//! ```text
//! cargo run -q -p reprise-examples -- workflows run llm-batch --input \
//!     '{"customer":"cust-1","doc_id":"doc-1","text":"Quarterly report. Revenue grew 4 percent."}'
//! ```
//!
//! Queue settings can also live in data: every command of the app reads more queues from
//! `--queues-file` or `REPRISE_QUEUES`, a JSON array such as
//! `[{"name":"bulk","concurrency":2,"rate_limit":{"limit":5,"period":"1s"}}]`, and a start
//! can put a run in one of them (`workflows run llm-batch --queue bulk …`,
//! `StartOptions::queue`). Give every process on one database the same settings.
//!
//! Offline (neither `OPENAI_BASE_URL` nor `OPENAI_API_KEY` set) the scripted stand-in
//! [`ScriptedSupportModel`](crate::support_model::ScriptedSupportModel) answers (**not
//! AI**: it quotes the document's first sentence and counts its words); with them set, a
//! real OpenAI-compatible endpoint does.

use std::time::Duration;

use reprise::prelude::*;
use reprise::queue::Queue;

/// The queue `llm-batch` runs go through.
pub const QUEUE: &str = "llm";

/// The first line of the summary prompt (the scripted model recognises it).
pub(crate) const SUMMARISE: &str = "Summarise this document in one sentence.\n";

/// The settings of queue `llm` as the example app configures them: 8 runs at once, one
/// per customer (key `/customer`), at most 20 admissions in any second.
pub fn queue() -> Queue {
    Queue::new(QUEUE)
        .concurrency(8)
        .key("/customer")
        .key_concurrency(1)
        .rate_limit(20, Duration::from_secs(1))
}

/// One document to summarise.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Document {
    /// Whose document it is: the run's key in queue `llm` (one run per customer at a time).
    pub customer: String,
    /// The document's id within the customer's documents.
    pub doc_id: String,
    /// The text to summarise.
    pub text: String,
    /// The chat model (`vendor/model`); default: `REPRISE_EXAMPLES_MODEL`, else
    /// `openai/gpt-4o-mini`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// A summary to store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SummaryToStore {
    /// The customer.
    pub customer: String,
    /// The document's id.
    pub doc_id: String,
    /// The model's summary.
    pub summary: String,
}

/// What a run of `llm-batch` returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    /// The customer.
    pub customer: String,
    /// The document's id.
    pub doc_id: String,
    /// The model that summarised it.
    pub model: String,
    /// The summary.
    pub summary: String,
    /// Where it was stored (`summaries/<customer>/<doc_id>.txt`).
    pub stored_at: String,
}

/// Stores a summary (in this example: logs the effect and names where it would be) and
/// returns its location.
#[action(retries = 3, backoff = "100ms")]
pub async fn store_summary(input: SummaryToStore, cx: ActionCtx) -> Result<String, ActionError> {
    crate::effects::record(&cx)?;
    Ok(format!("summaries/{}/{}.txt", input.customer, input.doc_id))
}

/// The prompt for `doc`.
fn summary_prompt(doc: &Document) -> String {
    format!("{SUMMARISE}\n{}", doc.text)
}

/// Summarises one document of one customer; runs in queue `llm`.
#[workflow(slug = "llm-batch", queue = "llm")]
pub async fn llm_batch(doc: Document) -> Result<Summary, WorkflowError> {
    let model = crate::support::choose_model.run(doc.model.clone()).await?;
    let summary = prompt_llm(summary_prompt(&doc))
        .model(model.clone())
        .system("You summarise business documents for their owner. Be brief and factual.")
        .temperature(0.0)
        .await?;
    let stored_at = store_summary
        .run(SummaryToStore {
            customer: doc.customer.clone(),
            doc_id: doc.doc_id.clone(),
            summary: summary.clone(),
        })
        .await?;
    Ok(Summary {
        customer: doc.customer,
        doc_id: doc.doc_id,
        model,
        summary,
        stored_at,
    })
}

/// A generated batch for `llm-batch-fan`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Batch {
    /// How many documents (one `llm-batch` run each); default 500, at most 10,000.
    #[serde(default = "default_documents")]
    #[schemars(range(min = 1, max = 10_000))]
    pub documents: u32,
    /// Over how many customers (`cust-0` …); document `i` belongs to customer
    /// `i % customers`. Default 50.
    #[serde(default = "default_customers")]
    #[schemars(range(min = 1))]
    pub customers: u32,
}

fn default_documents() -> u32 {
    500
}

fn default_customers() -> u32 {
    50
}

/// What `llm-batch-fan` returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BatchReport {
    /// Documents summarised.
    pub summarised: u32,
    /// Customers they belong to.
    pub customers: u32,
}

/// Document `i` of a generated batch over `customers` customers.
pub fn generated_document(i: u32, customers: u32) -> Document {
    let customer = format!("cust-{}", i % customers.max(1));
    Document {
        text: format!(
            "Report {i} for {customer}. Orders rose by {} percent this week. Two deliveries \
             were late and one invoice is still open.",
            i % 17
        ),
        customer,
        doc_id: format!("doc-{i}"),
        model: None,
    }
}

/// Starts one `llm-batch` child run per document of a generated [`Batch`], then waits for
/// all of them: the queue, not this loop, decides how fast they run.
#[workflow(slug = "llm-batch-fan")]
pub async fn llm_batch_fan(batch: Batch) -> Result<BatchReport, WorkflowError> {
    let mut children = Vec::new();
    for i in 0..batch.documents {
        children.push(
            llm_batch
                .start(generated_document(i, batch.customers))
                .await?,
        );
    }
    let mut summarised = 0;
    for child in children {
        child.await?;
        summarised += 1;
    }
    Ok(BatchReport {
        summarised,
        customers: batch.customers.min(batch.documents),
    })
}
