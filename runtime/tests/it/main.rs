//! The runtime crate's one integration-test binary (one binary links the crate once,
//! which keeps `cargo test` fast). Each area of the runtime gets its own module here.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

// Other modules (engine, replay, hooks, …) get added next to this one.
mod children;
mod conformance;
mod credentials;
mod delayed_start;
mod engine;
mod events;
mod files_errors;
mod files_run;
mod files_steps;
mod files_surfaces;
mod fork_run;
mod graph;
mod hermetic;
mod hot_runs;
mod http;
mod http_fuzz;
mod http_hardening;
mod ids;
mod llm;
mod metrics;
mod pause_run;
mod payload_limits;
mod poison;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "postgres")]
mod postgres_queues;
mod principals;
mod queues;
mod queues_http;
mod registry;
mod retention;
mod retry_run;
mod schedules;
mod secrets;
mod select;
mod signals;
mod sqlite_queues;
mod step_rate;
mod store_open;
mod streams;
mod subscriptions;
mod tags;
mod traces;
mod triggers;
mod ui;
mod worker;
