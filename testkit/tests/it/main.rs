//! The testkit's one integration-test binary.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod compose;
mod crash;
mod env;
mod llm;
mod payloads;
mod snapshot;
