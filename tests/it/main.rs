//! Integration tests: a real S3 server, s3chaos in front, real SDK clients.

mod admin;
mod cli;
mod clients;
mod containers;
mod dashboard;
mod drill;
mod explore;
mod faults;
mod forward;
mod hardening;
mod harness;
mod isolation;
mod outcomes;
mod passthrough;
mod pool;
mod property;
mod quirks;
mod scenarios;
mod secrets;
mod signed;
mod store;
mod store_listing;
mod stream_faults;
mod tls;
mod upload_faults;
mod verdicts;
