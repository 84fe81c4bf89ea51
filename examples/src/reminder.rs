//! `reminder`: wait for a decision, reminding the approver every day, forever — with a
//! bounded history.
//!
//! The run races the `decide` signal against a durable sleep of `every`; each time the
//! sleep wins it sends a reminder. After `reminders_per_run` reminders it calls
//! `ctx.continue_as_new(..)`: this run completes with `{"continued_as": <new run id>}` and
//! a fresh run of `reminder` carries on with the count so far, under the same business key,
//! so a decision sent to the key reaches whichever run is current, and no run's history
//! grows without bound.
//!
//! ```text
//! cargo run -q -p reprise-examples -- dev &
//! curl -s -X POST 'localhost:8080/workflows/reminder?key=expense-77' \
//!     -H 'content-type: application/json' -d '{"title":"Approve expense 77","every":"5s"}'
//! # a reminder every 5 s; every 3 reminders the run continues as a new run
//! curl -s -X POST localhost:8080/workflows/reminder/runs/expense-77/signals/decide \
//!     -H 'content-type: application/json' -d '{"approved":true,"by":"Grace"}'
//! ```

use reprise::prelude::*;

use crate::approval::Decision;

/// What to remind about, and how often.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReminderRequest {
    /// What needs deciding.
    pub title: String,
    /// How long to wait between reminders (a duration such as `"1d"`; default `"1d"`).
    #[serde(default = "default_every")]
    pub every: String,
    /// Reminders sent before this run continues as a new run (default 3, at least 1).
    #[serde(default = "default_per_run")]
    pub reminders_per_run: u32,
    /// Reminders sent so far, by this run and the runs it continues (0 at the start).
    #[serde(default)]
    pub sent: u32,
}

fn default_every() -> String {
    "1d".to_owned()
}

fn default_per_run() -> u32 {
    3
}

/// One reminder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Nudge {
    /// What needs deciding.
    pub title: String,
    /// Which reminder this is, from 1.
    pub number: u32,
}

/// The decision, and how many reminders it took.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Decided {
    /// The decision.
    pub decision: Decision,
    /// Reminders sent before it came, over every run of the chain.
    pub reminders: u32,
}

/// Sends one reminder (here: prints it on standard error).
#[action(retries = 3, backoff = "200ms")]
pub async fn send_reminder(input: Nudge, cx: ActionCtx) -> Result<(), ActionError> {
    crate::effects::record(&cx)?;
    eprintln!(
        "[reminder #{}] still waiting: {}",
        input.number, input.title
    );
    Ok(())
}

/// Waits for the `decide` signal, reminding every `every`, continuing as a new run after
/// `reminders_per_run` reminders.
#[workflow(slug = "reminder")]
pub async fn reminder(ctx: Ctx, input: ReminderRequest) -> Result<Decided, WorkflowError> {
    let decide = ctx.signal::<Decision>("decide");
    let mut sent = input.sent;
    for _ in 0..input.reminders_per_run.max(1) {
        reprise::select! {
            decision = decide.recv() => {
                return Ok(Decided { decision: decision?, reminders: sent });
            }
            slept = ctx.sleep(input.every.clone()) => {
                slept?;
                sent += 1;
                send_reminder
                    .run(Nudge { title: input.title.clone(), number: sent })
                    .await?;
            }
        }
    }
    ctx.continue_as_new(ReminderRequest { sent, ..input }).await
}
