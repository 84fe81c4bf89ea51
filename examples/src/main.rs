//! The example app: the reprise CLI with the example workflows registered.
//!
//! ```text
//! cargo run -q -p reprise-examples -- workflows run file-digest --input '{"dir":"."}'
//! ```

use reprise_examples::effects::EffectLog;
use reprise_examples::signup::TeamChannel;

fn main() -> std::process::ExitCode {
    // Make sure the example workflows are linked in (their registrations live in the library).
    reprise_examples::link();
    reprise::cli::main(|engine| {
        let engine = engine.resource(EffectLog::from_env());
        Ok(match TeamChannel::from_env() {
            Some(channel) => engine.resource(channel),
            None => engine,
        })
    })
}
