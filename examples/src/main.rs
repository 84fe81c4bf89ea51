//! The example app: the reprise CLI with the example workflows registered, plus the
//! digest's cron schedule and the GitHub webhook source.
//!
//! ```text
//! cargo run -q -p reprise-examples -- workflows run file-digest --input '{"dir":"."}'
//! cargo run -q -p reprise-examples -- dev      # worker + scheduler + HTTP API on :8080
//! ```
//!
//! Queue `llm` (`llm-batch`) is configured here; `--queues-file` or `REPRISE_QUEUES` (a
//! JSON array of queue settings) add more.
//!
//! The workflow files of `examples/workflows/` (`code-review`, `nightly-report`) are
//! loaded too ([`reprise_examples::WORKFLOWS_DIR`], the source tree's directory; a binary
//! copied elsewhere has none), unless `REPRISE_WORKFLOWS_DIR` names another directory of
//! workflow files:
//!
//! ```text
//! cargo run -q -p reprise-examples -- workflows run code-review --input '{"repo":"octo/app","pr":7}'
//! ```
//!
//! LLM steps (`support-triage`, `llm-batch`, the files' prompts and agents) go to the
//! OpenAI-compatible endpoint named by `OPENAI_BASE_URL` / `OPENAI_API_KEY`; with neither
//! set, to the built-in [`ScriptedReviewModel`] over [`ScriptedSupportModel`],
//! deterministic stand-ins (not AI) so the examples run offline.

use std::sync::Arc;

use reprise_examples::effects::EffectLog;
use reprise_examples::review_actions::ScriptedReviewModel;
use reprise_examples::signup::TeamChannel;
use reprise_examples::support_model::ScriptedSupportModel;

fn main() -> std::process::ExitCode {
    // Make sure the example workflows are linked in (their registrations live in the library).
    reprise_examples::link();
    reprise::cli::main(|engine| {
        let engine = engine
            .resource(EffectLog::from_env())
            // `daily-digest` at 09:00 UTC (REPRISE_EXAMPLES_DIGEST_CRON overrides); fired by
            // `dev` and `worker`.
            .cron(reprise_examples::digest::schedule()?)
            // `repo-digest` at 07:00 UTC (REPRISE_EXAMPLES_REPO_DIGEST_CRON overrides): one
            // run per active subscription.
            .cron(reprise_examples::repo_digest::schedule()?)
            // `POST /webhooks/github` starts `triage-issue` (secret:
            // REPRISE_EXAMPLES_WEBHOOK_SECRET, or a public development default).
            .webhook(reprise_examples::webhook::github_source())
            // `llm-batch` runs: 8 at once, one per customer, 20 starts per second, over
            // every worker on the database.
            .queue(reprise_examples::llm_batch::queue());
        // The example workflow files; `REPRISE_WORKFLOWS_DIR` (read by the CLI) replaces
        // them. A binary copied away from its source tree has none to load.
        let examples_dir = std::path::Path::new(reprise_examples::WORKFLOWS_DIR);
        let engine =
            if std::env::var_os("REPRISE_WORKFLOWS_DIR").is_some() || !examples_dir.is_dir() {
                engine
            } else {
                engine.workflow_dir(examples_dir)
            };
        let engine = match TeamChannel::from_env() {
            Some(channel) => engine.resource(channel),
            None => engine,
        };
        // No LLM endpoint configured: answer `support-triage`, `llm-batch` and the workflow
        // files with the scripted stand-ins.
        // (With OPENAI_BASE_URL or OPENAI_API_KEY set, the engine uses that endpoint.)
        Ok(match reprise::llm::OpenAiProvider::from_env() {
            Some(_) => engine,
            None => engine.llm(Arc::new(ScriptedReviewModel::wrapping(Arc::new(
                ScriptedSupportModel,
            )))),
        })
    })
}
