//! The store itself: the metadata database and the blob files, opened over a data directory,
//! with the async doors to both (every disk and database call runs on a blocking thread).

use std::sync::Arc;

use rusqlite::{Connection, Transaction};

use super::blobs::{Blobs, SweepReport};
use super::db::{Db, Durability};
use super::error::{StoreError, StoreResult};
use super::layout::{Layout, LayoutError};

#[derive(Clone)]
pub struct Store {
    pub db: Arc<Db>,
    pub blobs: Arc<Blobs>,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("cannot open the store's database: {0}")]
    Db(StoreError),
    #[error("cannot sweep the store's files: {0}")]
    Sweep(std::io::Error),
}

impl Store {
    /// Opens the store in `layout`, removing what a crash left half-done.
    pub fn open(layout: &Layout, durability: Durability) -> Result<(Store, SweepReport), OpenError> {
        let db = Db::open(&layout.db, durability).map_err(OpenError::Db)?;
        let blobs = Blobs::new(layout.blobs.clone(), layout.tmp.clone(), durability);
        let referenced = db.read(super::db::all_blobs).map_err(OpenError::Db)?;
        let report = blobs.sweep(&referenced).map_err(OpenError::Sweep)?;
        Ok((
            Store {
                db: Arc::new(db),
                blobs: Arc::new(blobs),
            },
            report,
        ))
    }

    pub fn open_dir(root: &std::path::Path, durability: Durability) -> Result<(Store, SweepReport), OpenError> {
        Store::open(&Layout::open(root)?, durability)
    }

    /// Runs a read on a pooled connection, on a blocking thread.
    pub async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || db.read(f))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Runs a write transaction on a blocking thread; committed when `f` is `Ok`.
    pub async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> StoreResult<T> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || db.write(f))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Runs any blocking work (file I/O) on a blocking thread.
    pub async fn blocking<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> StoreResult<T> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }
}
