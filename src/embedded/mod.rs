//! The embedded S3 store: s3chaos's own S3 server, so `s3chaos run` works with nothing else
//! installed. It listens on a private loopback port and the proxy forwards to it exactly as it
//! would to any other upstream, so faults and passthrough behave the same.
//!
//! s3s does the HTTP, XML and SigV4 work; this module is the storage behind s3s's `S3` trait:
//! - `layout`: the data directory; `db`: metadata in SQLite; `blobs`: object bytes in
//!   files named by id (a key is never a path);
//! - `upload`: receiving bodies (hashes, checksums); `aws_chunked` and `credentials`:
//!   who is let in and how a signed body becomes its payload;
//! - `listing`: S3's listing rules, apart from storage; `ops`: the operations.

mod aws_chunked;
mod blobs;
mod credentials;
mod db;
mod error;
mod layout;
mod listing;
mod meta;
mod ops;
mod server;
mod store;
mod upload;

pub use credentials::{Credentials, REGION};
pub use db::Durability;
pub use server::{EmbeddedError, EmbeddedStore, StoreOptions};
