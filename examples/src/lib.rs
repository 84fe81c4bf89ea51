//! Example workflows for reprise, each a complete, tested program:
//!
//! - [`signup`]: `signup-pipeline`, research → post a brief → return it; the email is
//!   validated by its JSON Schema (`#[schemars(email)]`).
//! - [`file_digest`]: `file-digest`, hashes every file of a directory with bounded
//!   parallelism and writes a report; slow it down with `delay_ms` and `kill -9` it to
//!   watch `runs resume` finish the job without redoing recorded steps.
//! - [`failure_report`]: `report-failure`, the failure handler of `file-digest`
//!   (`#[workflow(on_failure = …)]`): started once per failure with the failed run's id,
//!   input and error, it files a notice.
//! - [`book_trip`]: `book-trip`, retries a transient failure, then compensates a
//!   permanent one with recorded steps.
//! - [`approval`]: `approval`, sends a resume URL, waits for a decision on a hook (the run
//!   holds nothing while it waits), optionally with a timeout after which the request
//!   expires, and acts on the outcome.
//! - [`await_export`]: `await-export`, starts a remote job and polls it with a short
//!   durable sleep between polls; the hot-run cache continues each wake-up in memory
//!   instead of replaying the earlier polls.
//! - [`delayed_followup`]: `delayed-followup`, sends a welcome, sleeps durably for the
//!   input's `delay` (`"3d"`, or `"10s"` in a demo), then sends a follow-up.
//! - [`expense_report`]: `expense-report`, calls the sub-workflow `review-expense`, which
//!   files the expense, sleeps durably for the input's `hold` and waits on the manager's
//!   approval hook (sleeps and hooks work inside sub-workflows at any depth), then settles.
//! - [`digest`]: `daily-digest`, started by a cron schedule ([`digest::schedule`]) every
//!   morning; reads its trigger and tick, posts which files changed the day before.
//! - [`webhook`]: `triage-issue`, started by GitHub "issues" webhooks at
//!   `POST /webhooks/github` ([`webhook::github_source`]: signature, schema, filter,
//!   transform, de-duplication by delivery id); labels each new issue.
//! - [`versioning`]: `fulfill-order`, a workflow changed while runs are in flight
//!   (`ctx.patched`, pinned step ids), checked against histories its older version recorded.
//! - [`support`]: `support-triage`, AI steps: classifies a ticket with structured output,
//!   lets an agent with two tools (`lookup-order`, `refund`) resolve it, and waits on an
//!   approval hook for a refund above the threshold. Offline it runs on
//!   [`support_model::ScriptedSupportModel`], a scripted stand-in (not AI); with
//!   `OPENAI_BASE_URL` / `OPENAI_API_KEY` set, on a real OpenAI-compatible endpoint.
//! - [`order_saga`]: `order-saga`, started with the order id as its business key: reserves
//!   stock, publishes its status, then a durable `select!` races the `paid` and `canceled`
//!   signals against a payment deadline; paid orders start the child run `ship-parcel` and
//!   wait for it.
//! - [`reminder`]: `reminder`, waits for the `decide` signal, reminding every `every`, and
//!   continues as a new run (same business key) after a few reminders, so its history stays
//!   bounded however long it waits.
//! - [`llm_batch`]: `llm-batch`, flow control across runs: summarises one document of one
//!   customer with an LLM step, in queue `llm` (8 at once, one per customer, 20 starts per
//!   second, over every worker); `llm-batch-fan` starts 500 of them.
//! - [`repo_digest`]: `repo-digest`, a subscribable daily digest
//!   (`#[workflow(subscribable = DigestSettings)]`): each tick of its cron schedule starts
//!   one run per active subscription, acting for the subscriber, which fetches the recent
//!   activity of the subscriber's repositories with their `github` credential.
//! - [`ten_steps`]: `ten-steps`, ten recorded calls of one small effectful action; the load
//!   of the many-workers test (several `worker` processes on one Postgres database).
//! - Workflow files (no Rust) in `examples/workflows/`, loaded by the binary
//!   ([`WORKFLOWS_DIR`]): `code-review.md` (fetch a pull request's diff, an agent with
//!   tools, a structured verdict, an approval hook, post the review; its actions are in
//!   [`review_actions`]) and `nightly-report.yaml` (a cron trigger, `for_each` with
//!   concurrency, retry with a fixed delay and a fallback, `map`/`filter`/`reduce`; its
//!   actions are in [`report_actions`]).
//!
//! The binary (`cargo run -p reprise-examples -- --help`) is the reprise CLI with these
//! workflows, the digest's cron schedule and the GitHub webhook source registered (and the
//! scripted support model when no LLM endpoint is configured);
//! `cargo run -p reprise-examples -- dev` serves them all.

pub mod approval;
pub mod await_export;
pub mod book_trip;
pub mod delayed_followup;
pub mod digest;
pub mod effects;
pub mod expense_report;
pub mod failure_report;
pub mod file_digest;
pub mod llm_batch;
pub mod order_saga;
pub mod reminder;
pub mod repo_digest;
pub mod report_actions;
pub mod review_actions;
pub mod signup;
pub mod support;
pub mod support_model;
pub mod ten_steps;
pub mod versioning;
pub mod webhook;

/// The directory of the example workflow files (`examples/workflows`, an absolute path
/// fixed at build time), which the example app loads with
/// `EngineBuilder::workflow_dir`.
pub const WORKFLOWS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/workflows");

/// Keeps every example's registration in the final binary. Call it once from `main`.
///
/// `#[workflow]` and `#[action]` register themselves at link time; a linker only keeps the
/// parts of a library something refers to, so a binary names the workflows it ships.
pub fn link() {
    std::hint::black_box((
        signup::signup_pipeline,
        file_digest::file_digest,
        failure_report::report_failure,
        book_trip::book_trip,
        approval::approval,
        versioning::fulfill_order,
        delayed_followup::delayed_followup,
        expense_report::expense_report,
        expense_report::review_expense,
        digest::daily_digest,
        webhook::triage_issue,
        support::support_triage,
        ten_steps::ten_steps,
        order_saga::order_saga,
        order_saga::ship_parcel,
        reminder::reminder,
        llm_batch::llm_batch,
        llm_batch::llm_batch_fan,
        repo_digest::repo_digest,
        review_actions::fetch_diff,
        review_actions::lookup_file,
        review_actions::run_linter,
        review_actions::post_review,
        report_actions::fetch_metrics,
        report_actions::empty_metrics,
        report_actions::send_report,
    ));
}
