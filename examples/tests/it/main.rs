//! The examples' one integration-test binary: each example workflow's behaviour, and the
//! example app as a user runs it (child processes, exit codes, `kill -9` and resume).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod app;
mod book_trip;
mod crash;
mod credentials_cli;
mod delayed_start_cli;
mod events_cli;
mod expense_report;
mod file_digest;
mod files_cli;
mod flow_control;
mod fork_cli;
mod graph_cli;
mod hardening_cli;
mod hot_runs;
mod idempotent_cli;
mod many_workers;
mod operator;
mod pause_cli;
mod payload_cli;
mod poison_cli;
mod principals_cli;
mod purge_cli;
mod queues_cli;
mod queues_testenv;
mod replay;
mod repo_digest;
mod retry_cli;
mod schedules_cli;
mod search_cli;
mod signup;
mod snapshots;
mod support;
mod talking;
mod traces_cli;
mod triggers_example;
mod ui_browser;
mod waits;
mod watch_cli;
mod workers;
mod workflow_files;
