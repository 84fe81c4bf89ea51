//! `runs signal`, `runs state`, `runs update`, and `workflows run --key` when the key is
//! taken: talking to running runs from the command line. Errors exit as everywhere
//! ([`super::exit_code`]): 2 for what the caller can fix (unknown run, key or name, an
//! ended run, schema violations, a refused update), 3 when an update's answer did not come
//! in time.

use serde_json::json;

use super::args::RunsCommand;
use super::{EXIT_COMPLETED, EXIT_INCOMPLETE, pretty, read_json};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::event::RunId;

/// Runs a `runs signal|state|update` command; returns the exit code.
pub(super) async fn dispatch(engine: &Engine, command: RunsCommand) -> Result<u8, EngineError> {
    match command {
        RunsCommand::Signal {
            target,
            name,
            payload,
            workflow,
            idempotency_key,
            json,
        } => {
            let payload = read_json(&payload, "--payload")?;
            let run = match &workflow {
                Some(slug) => engine.run_by_key(slug, &target).await?.id,
                None => RunId(target),
            };
            let posted = engine
                .signal(&run, &name, payload, idempotency_key.as_deref())
                .await?;
            if json {
                println!(
                    "{}",
                    json!({ "run_id": run, "seq": posted.seq, "duplicate": posted.duplicate })
                );
            } else if posted.duplicate {
                println!(
                    "signal `{name}` was already delivered to run {run} with this idempotency \
                     key (#{}); nothing more was sent",
                    posted.seq
                );
            } else {
                println!("signal `{name}` delivered to run {run} (#{})", posted.seq);
            }
            Ok(EXIT_COMPLETED)
        }
        RunsCommand::State { id, key, wait } => {
            let run = RunId(id);
            let Some(key) = key else {
                println!("{}", pretty(&json!(engine.state(&run).await?)));
                return Ok(EXIT_COMPLETED);
            };
            let value = match wait {
                Some(wait) => Some(engine.wait_for_state(&run, &key, wait).await?),
                None => engine.state(&run).await?.remove(&key),
            };
            match value {
                Some(value) => {
                    println!("{}", pretty(&value));
                    Ok(EXIT_COMPLETED)
                }
                None => {
                    eprintln!(
                        "run {run} has not published state `{key}` (yet); `runs state {run}` \
                         lists what it published, `--wait 10s` waits for it"
                    );
                    Ok(EXIT_INCOMPLETE)
                }
            }
        }
        RunsCommand::Update {
            id,
            name,
            payload,
            wait,
        } => {
            let request = read_json(&payload, "--payload")?;
            let answer = engine.update(&RunId(id), &name, request, wait).await?;
            println!("{}", pretty(&answer));
            Ok(EXIT_COMPLETED)
        }
        other => Err(EngineError::Config(format!(
            "reprise bug: `{other:?}` is not a message command"
        ))),
    }
}

/// `workflows run --key` when run `id` already holds `key`: prints its id and says it
/// exists; starts nothing.
pub(super) async fn report_existing(
    engine: &Engine,
    id: &RunId,
    key: &str,
    slug: &str,
    as_json: bool,
) -> Result<u8, EngineError> {
    let record = engine.get_run(id).await?;
    if as_json {
        println!(
            "{}",
            json!({ "run_id": id, "status": record.status, "created": false, "key": key })
        );
    } else {
        println!(
            "run {id} ({slug}) already exists with business key `{key}`; it is {}, and no \
             other run was started",
            record.status
        );
    }
    Ok(EXIT_COMPLETED)
}
