//! End-to-end tests: real jobs, real components, the real `dynhost` binary.

#![expect(clippy::unwrap_used, reason = "test helpers: a panic is a failed test")]

mod support;

mod blocking;
mod cli;
mod config;
mod errors;
mod examples;
mod failures;
mod history;
mod hostile;
mod http;
mod init;
mod interrupt;
mod limits;
mod mapping;
mod nats;
mod outputs;
mod processes;
mod progress;
mod resume;
mod sandbox;
mod store_safety;
mod streaming;
mod types;
mod ui;
mod wit_versions;
