//! Explore: finds the S3 faults a test suite does not survive, by running it once per fault
//! point (Filibuster's idea, for S3). Two fault-free baselines record the test's logical calls
//! ([`calls`]); each call × each fault class that applies to it ([`class`]) becomes a run
//! with one `nth:` rule that hits exactly that call; calls that appear only under a fault join
//! the frontier, and equivalent points are skipped ([`plan`]); the results make a matrix
//! ([`matrix`]) and a page ([`html`]).
//!
//! This module is the pure part (what to run and what it meant); `s3chaos explore` starts
//! the proxies and the command.

pub mod calls;
pub mod class;
pub mod html;
pub mod matrix;
pub mod plan;

pub use calls::{CallId, Comparison, Recorded, compare, record};
pub use class::FaultClass;
pub use matrix::Matrix;
pub use plan::{Done, Injection, Outcome, Plan, Point, Skipped};
