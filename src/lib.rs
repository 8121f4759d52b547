//! takehome runs candidates' take-home solutions in hardened Docker containers and grades them
//! against hidden data. See ARCHITECTURE.md for the bird's-eye view and the code map.

pub mod assign;
pub mod backup;
pub mod check;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod debrief;
pub mod digest;
pub mod environment;
pub mod erase;
pub mod errors;
pub mod grading;
pub mod http_client;
pub mod intake;
pub mod job;
pub mod mail;
pub mod methodology;
pub mod notebook;
pub mod oidc;
pub mod report;
pub mod review;
pub mod sandbox;
pub mod scaffold;
pub mod secret;
pub mod similarity;
pub mod store;
pub mod submission;
pub mod task;
pub mod tls;
pub mod units;
pub mod web;
pub mod webhook;

/// The version recorded in every report's provenance.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
