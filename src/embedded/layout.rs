//! The data directory: what is in it, and refusing one that holds something else.
//!
//! ```text
//! <data-dir>/s3chaos-store     marker: "s3chaos store 1"
//! <data-dir>/meta.sqlite       the metadata database (+ -wal, -shm)
//! <data-dir>/blobs/<xx>/<id>   object bytes, one file per blob
//! <data-dir>/tmp/              uploads in progress (emptied at start)
//! ```

use std::path::{Path, PathBuf};

const MARKER: &str = "s3chaos-store";
const FORMAT: &str = "s3chaos store 1";

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("cannot use data directory {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "data directory {path} is not an s3chaos store: it holds {found:?} and no `s3chaos-store` marker. \
         If it is the folder-per-bucket layout of s3chaos 0.1's store (s3s-fs), its objects are plain files: \
         start with a new --data-dir and copy each bucket in with, e.g., \
         `aws s3 sync {path}/<bucket> s3://<bucket> --endpoint-url http://<s3chaos address>` \
         (user metadata kept in s3s-fs's hidden files is not carried over)"
    )]
    Foreign { path: PathBuf, found: String },
    #[error("data directory {path} is a store of another format ({found:?}; this s3chaos reads {FORMAT:?})")]
    OtherFormat { path: PathBuf, found: String },
}

#[derive(Debug, Clone)]
pub struct Layout {
    pub db: PathBuf,
    pub blobs: PathBuf,
    pub tmp: PathBuf,
}

impl Layout {
    /// Opens (or creates, when missing or empty) the store in `root`.
    pub fn open(root: &Path) -> Result<Layout, LayoutError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| LayoutError::Io { path, source }
        };
        std::fs::create_dir_all(root).map_err(io(root))?;
        let root = root.canonicalize().map_err(io(root))?;
        let marker = root.join(MARKER);
        match std::fs::read_to_string(&marker) {
            Ok(text) if text.trim() == FORMAT => {}
            Ok(text) => {
                return Err(LayoutError::OtherFormat {
                    path: root,
                    found: text.trim().to_owned(),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut entries = std::fs::read_dir(&root).map_err(io(&root))?;
                if let Some(entry) = entries.next() {
                    let entry = entry.map_err(io(&root))?;
                    return Err(LayoutError::Foreign {
                        found: entry.file_name().to_string_lossy().into_owned(),
                        path: root,
                    });
                }
                std::fs::write(&marker, format!("{FORMAT}\n")).map_err(io(&marker))?;
            }
            Err(e) => {
                return Err(LayoutError::Io {
                    path: marker,
                    source: e,
                });
            }
        }
        let layout = Layout {
            db: root.join("meta.sqlite"),
            blobs: root.join("blobs"),
            tmp: root.join("tmp"),
        };
        std::fs::create_dir_all(&layout.blobs).map_err(io(&layout.blobs))?;
        std::fs::create_dir_all(&layout.tmp).map_err(io(&layout.tmp))?;
        Ok(layout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_folder_per_bucket_directory_is_refused_with_a_way_forward() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("photos")).unwrap();
        std::fs::write(dir.path().join("photos/cat.jpg"), b"x").unwrap();
        let err = Layout::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not an s3chaos store"), "{err}");
        assert!(err.contains("aws s3 sync"), "{err}");
        // Nothing was written into it.
        assert!(!dir.path().join(MARKER).exists());
    }

    #[test]
    fn an_empty_or_missing_directory_becomes_a_store_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("new");
        let first = Layout::open(&root).unwrap();
        assert!(first.blobs.is_dir() && first.tmp.is_dir());
        Layout::open(&root).unwrap();
    }
}
