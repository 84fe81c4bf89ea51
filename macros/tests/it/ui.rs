//! trybuild UI tests: `tests/ui/pass/*.rs` must compile and run, `tests/ui/fail/*.rs`
//! must fail with exactly the `.stderr` next to them.
//!
//! Regenerate the expected output with `TRYBUILD=overwrite cargo test -p reprise-macros --test it ui`
//! and read every changed `.stderr`: it is what a user sees. The toolchain is pinned by
//! `rust-toolchain.toml`, so the messages are stable.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
