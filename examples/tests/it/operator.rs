//! The example app as an operator runs it in the CLI tests: a child process on a fresh
//! database, as user `ada` (operations record `cli:ada`), with its exit code, standard
//! output and standard error.

use std::process::{Command, Output};

use reprise_testkit::TempDb;

/// The example binary on `db`, with an effect log beside it, run as user `ada`.
pub(crate) fn app(db: &TempDb) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_reprise-examples"));
    command
        .env("REPRISE_DATABASE_URL", db.url())
        .env("REPRISE_EXAMPLES_EFFECT_LOG", db.dir().join("effects.log"))
        .env("USER", "ada")
        .current_dir(db.dir());
    command
}

/// Runs `command`: its exit code (-1 when killed by a signal), stdout and stderr.
pub(crate) fn run(command: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}
