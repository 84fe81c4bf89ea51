//! The example app: the reprise CLI with the example workflows registered.
fn main() -> std::process::ExitCode {
    reprise::cli::main(Ok)
}
