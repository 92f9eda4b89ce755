//! The command line's subcommands that need more than a few lines.

pub mod ctl;
pub mod exec;
pub mod explore;
pub mod junit;
pub mod serve;
pub mod trust;
