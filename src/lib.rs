//! # s3chaos
//!
//! A fault-injection reverse proxy for S3-compatible object storage. Point an app, a CI job or
//! a game-day drill at it instead of S3; it forwards every request unchanged and, following a
//! YAML scenario, injects the faults real S3 outages produce.
//!
//! ## Layout
//! - [`scenario`] — the YAML model, its validation (with file:line:column errors) and the
//!   compiled [`scenario::Scenario`] shared read-only by every request.
//! - [`s3`] — S3 knowledge: the request classifier (operation, bucket, key) and S3's error
//!   codes and XML error bodies.
//! - [`engine`] — matching and decisions: which rules fire for a request, decided once, with
//!   seeded counter-based randomness; the kill switch and the cap on active faults.
//! - [`drill`] — the supervisor beside the proxy: logs the timeline's phases, enforces the
//!   stop condition.
//! - [`reload`] — live reload of the scenario file (polling, and SIGHUP).
//! - [`control`] — the one door to the running scenario, for reloads and the admin API
//!   (rules added at run time live here).
//! - [`admin`] — the admin API (JSON over HTTP) and its client, used by `s3chaos ctl`.
//! - [`telemetry`] — per-worker counters, Prometheus text, recent faults, the event log.
//! - [`report`] — an event log turned into a drill report (HTML with an SVG timeline, or
//!   Markdown).
//! - [`faults`] — one small file per fault kind behind the [`faults::Fault`] trait.
//! - [`proxy`] — listener, request phases, upstream client, body streaming, connection fates.
//! - [`library`] — the scenario library of `scenarios/`, built into the binary.
//! - [`embedded`] — the built-in S3 store (s3s-fs) used when no upstream is given.
//! - [`timer`] — a sub-millisecond timer for latency faults.

pub mod admin;
pub mod body;
pub mod control;
pub mod draw;
pub mod drill;
pub mod embedded;
pub mod engine;
pub mod faults;
pub mod frontend;
pub mod library;
pub mod proxy;
pub mod reload;
pub mod report;
pub mod s3;
pub mod scenario;
pub mod telemetry;
pub mod timer;
pub mod values;

#[cfg(test)]
mod layering;
