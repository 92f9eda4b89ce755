//! # s3chaos
//!
//! A fault-injection reverse proxy for S3-compatible object storage. Point an app, a CI job or
//! a game-day drill at it instead of S3; it forwards every request unchanged and, following a
//! YAML scenario, injects the faults real S3 outages produce.
//!
//! ## Layout, in layers (each module uses only its own layer or those below; the
//! `layering` test checks it)
//! - leaves: [`s3`] (the request classifier, S3's typed error table and XML bodies),
//!   [`values`] (durations, sizes, rates, globs, ramps as a scenario writes them), [`draw`]
//!   (seeded per-request randomness), [`body`] (the body type), [`timer`] (the one clock
//!   faults wait on: sub-millisecond in production, tokio's in tests).
//! - [`faults`]: one small file per fault kind and one row in its table; body faults are
//!   chunk filters; [`faults::fate`] is what a fault asks of the connection.
//! - [`scenario`]: YAML → validated plain data ([`scenario::Spec`]), errors with
//!   file:line:column; [`scenario::Source`] and the one bounded reader.
//! - [`engine`]: compiles a spec ([`engine::Scenario`]: matchers, per-phase index, timeline,
//!   fault state carried across reloads) and decides once per request.
//! - services: [`control`] (the one door to the running scenario), [`drill`] (phase logs,
//!   stop condition), [`reload`] (live reload), [`telemetry`] (per-worker counters,
//!   Prometheus text, recent faults, the event log), [`library`] (the built-in scenarios).
//! - [`proxy`]: listener and workers, the request pipeline and its per-request context
//!   ([`proxy::context`]), the upstream pool, TLS, forward mode.
//! - front: [`admin`] (admin API), [`report`] (drill reports), [`verdict`] (whether the
//!   app passed: its clients' calls judged against `expect:`), [`embedded`] (the built-in
//!   S3 store), [`frontend`] (the builder `run`, `exec`, `--route` and the tests start from),
//!   [`explore`] (which fault points to run and what they meant), [`testing`] (s3chaos as a
//!   dev-dependency: a faulty S3 endpoint in a Rust test).

pub mod admin;
pub mod body;
pub mod control;
pub mod draw;
pub mod drill;
pub mod embedded;
pub mod engine;
pub mod explore;
pub mod faults;
pub mod frontend;
pub mod library;
pub mod proxy;
pub mod reload;
pub mod report;
pub mod s3;
pub mod scenario;
pub mod telemetry;
pub mod testing;
pub mod timer;
pub mod values;
pub mod verdict;

#[cfg(test)]
mod layering;
