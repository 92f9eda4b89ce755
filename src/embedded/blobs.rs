//! Object bytes on disk: one file per blob, named by a random id (never by the key, so no key
//! can name a path), under `blobs/<2 hex>/<id>`. A blob is written in `tmp/`, moved into place
//! when complete, and only then referenced by a database commit; files no commit refers to are
//! swept at start-up. A blob being read is leased: retiring it (an overwrite, a delete) waits
//! for the last reader, so a GET that has begun never loses its bytes.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use tokio::task::JoinHandle;

use super::db::{Durability, Segment};

/// Bytes read from disk per step: large reads keep GET at disk/page-cache speed.
pub const READ_CHUNK: usize = 1 << 20;

pub struct Blobs {
    dir: PathBuf,
    tmp: PathBuf,
    durability: Durability,
    leases: Mutex<HashMap<String, usize>>,
    /// Retired while leased: deleted when the last lease ends.
    retired: Mutex<HashSet<String>>,
}

pub fn new_blob_id() -> String {
    let n: u128 = rand::random();
    format!("{n:032x}")
}

impl Blobs {
    pub fn new(dir: PathBuf, tmp: PathBuf, durability: Durability) -> Blobs {
        Blobs {
            dir,
            tmp,
            durability,
            leases: Mutex::default(),
            retired: Mutex::default(),
        }
    }

    pub fn path(&self, id: &str) -> PathBuf {
        let shard = id.get(..2).unwrap_or("00");
        self.dir.join(shard).join(id)
    }

    /// A new, empty file in `tmp/` (removed again unless committed).
    pub fn temp(&self) -> io::Result<TempBlob> {
        let id = new_blob_id();
        let path = self.tmp.join(&id);
        let file = File::create_new(&path)?;
        Ok(TempBlob {
            id,
            path,
            file: Some(file),
            committed: false,
        })
    }

    /// Moves a complete temp file into place (fsynced first under `--fsync`); returns its id.
    pub fn commit(&self, mut temp: TempBlob) -> io::Result<String> {
        if let Some(file) = temp.file.take() {
            if self.durability == Durability::PowerLoss {
                file.sync_all()?;
            }
            drop(file);
        }
        let target = self.path(&temp.id);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::rename(&temp.path, &target)?;
        if self.durability == Durability::PowerLoss
            && let Some(parent) = target.parent()
        {
            File::open(parent)?.sync_all()?;
        }
        temp.committed = true;
        Ok(temp.id.clone())
    }

    pub fn open(&self, id: &str) -> io::Result<File> {
        File::open(self.path(id))
    }

    /// Marks blobs as being read until the lease is dropped.
    pub fn lease(self: &Arc<Self>, ids: impl IntoIterator<Item = String>) -> Lease {
        let ids: Vec<String> = ids.into_iter().collect();
        if let Ok(mut leases) = self.leases.lock() {
            for id in &ids {
                *leases.entry(id.clone()).or_default() += 1;
            }
        }
        Lease {
            blobs: Arc::clone(self),
            ids,
        }
    }

    /// Deletes blobs no version uses any more (now, or when their last reader is done).
    pub fn retire(&self, ids: impl IntoIterator<Item = String>) {
        let leases = self.leases.lock();
        for id in ids {
            let leased = leases.as_ref().is_ok_and(|l| l.contains_key(&id));
            if leased {
                if let Ok(mut r) = self.retired.lock() {
                    r.insert(id);
                }
            } else {
                self.remove(&id);
            }
        }
    }

    fn remove(&self, id: &str) {
        if let Err(e) = std::fs::remove_file(self.path(id))
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(blob = id, error = %e, "embedded store: cannot delete a retired blob (left for the start-up sweep)");
        }
    }

    /// Start-up: empties `tmp/` (uploads a crash cut short) and deletes blob files no commit
    /// refers to (written just before a crash, or retired just before one).
    pub fn sweep(&self, referenced: &HashSet<String>) -> io::Result<SweepReport> {
        let mut report = SweepReport::default();
        for entry in std::fs::read_dir(&self.tmp)? {
            let entry = entry?;
            std::fs::remove_file(entry.path())?;
            report.partial_uploads += 1;
        }
        for shard in std::fs::read_dir(&self.dir)? {
            let shard = shard?;
            if !shard.file_type()?.is_dir() {
                continue;
            }
            for entry in std::fs::read_dir(shard.path())? {
                let entry = entry?;
                let name = entry.file_name();
                let referenced = name.to_str().is_some_and(|n| referenced.contains(n));
                if !referenced {
                    std::fs::remove_file(entry.path())?;
                    report.orphans += 1;
                }
            }
        }
        Ok(report)
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub partial_uploads: usize,
    pub orphans: usize,
}

pub struct Lease {
    blobs: Arc<Blobs>,
    ids: Vec<String>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Ok(mut leases) = self.blobs.leases.lock() else {
            return;
        };
        for id in &self.ids {
            let last = match leases.get_mut(id) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => {
                    leases.remove(id);
                    true
                }
                None => false,
            };
            if last && self.blobs.retired.lock().is_ok_and(|mut r| r.remove(id)) {
                self.blobs.remove(id);
            }
        }
    }
}

/// A blob being written: its file in `tmp/`, removed on drop unless committed.
pub struct TempBlob {
    id: String,
    path: PathBuf,
    file: Option<File>,
    committed: bool,
}

impl TempBlob {
    pub fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.write_all(bytes),
            None => Err(io::Error::other("temp blob already closed")),
        }
    }
}

impl Drop for TempBlob {
    fn drop(&mut self) {
        if !self.committed {
            self.file.take();
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Where a read is: the segments left, as (blob id, first byte, end byte) in that blob.
struct ReadPlan {
    blobs: Arc<Blobs>,
    pieces: std::collections::VecDeque<(String, u64, u64)>,
    open: Option<(File, u64, u64)>,
    _lease: Lease,
}

impl ReadPlan {
    /// Reads the next chunk (blocking).
    fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        use std::os::unix::fs::FileExt;
        loop {
            if self.open.is_none() {
                let Some((id, start, end)) = self.pieces.pop_front() else {
                    return Ok(None);
                };
                if start == end {
                    continue;
                }
                self.open = Some((self.blobs.open(&id)?, start, end));
            }
            let (file, at, end) = self.open.as_mut().expect("opened above");
            let want = ((*end - *at) as usize).min(READ_CHUNK);
            let mut buf = BytesMut::zeroed(want);
            let mut filled = 0;
            while filled < want {
                let n = file.read_at(&mut buf[filled..], *at + filled as u64)?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "an object file is shorter than its record",
                    ));
                }
                filled += n;
            }
            *at += want as u64;
            if *at == *end {
                self.open = None;
            }
            return Ok(Some(buf.freeze()));
        }
    }
}

/// Opens `range` of an object made of `segments`, checking the first file is there (so a
/// failure is a 5xx before any byte, not a cut body). Blocking.
pub fn open_range(blobs: &Arc<Blobs>, segments: &[Segment], range: std::ops::Range<u64>) -> io::Result<ObjectBody> {
    let mut pieces = std::collections::VecDeque::new();
    let mut offset = 0u64;
    for s in segments {
        let (seg_start, seg_end) = (offset, offset + s.len);
        offset = seg_end;
        let start = range.start.max(seg_start);
        let end = range.end.min(seg_end);
        if start < end {
            pieces.push_back((s.blob.clone(), start - seg_start, end - seg_start));
        }
    }
    let lease = blobs.lease(pieces.iter().map(|p| p.0.clone()));
    // The record was read before the lease was taken: a blob retired in between is gone, and
    // the caller reads the record again rather than cut the body half-way.
    for (id, _, _) in pieces.iter().skip(1) {
        std::fs::metadata(blobs.path(id))?;
    }
    let open = match pieces.pop_front() {
        Some((id, start, end)) => Some((blobs.open(&id)?, start, end)),
        None => None,
    };
    Ok(ObjectBody {
        plan: Some(ReadPlan {
            blobs: Arc::clone(blobs),
            pieces,
            open,
            _lease: lease,
        }),
        pending: None,
    })
}

type Step = io::Result<(ReadPlan, Option<Bytes>)>;

/// An object's bytes as a stream: 1 MiB reads on blocking threads, one read ahead.
pub struct ObjectBody {
    plan: Option<ReadPlan>,
    pending: Option<JoinHandle<Step>>,
}

impl ObjectBody {
    /// The next chunk, read on this thread (for copies, which run on a blocking thread).
    pub fn next_blocking(&mut self) -> io::Result<Option<Bytes>> {
        match self.plan.as_mut() {
            Some(plan) => plan.next_chunk(),
            None => Ok(None),
        }
    }

    fn spawn(&mut self) {
        if let Some(mut plan) = self.plan.take() {
            self.pending = Some(tokio::task::spawn_blocking(move || {
                let chunk = plan.next_chunk()?;
                Ok((plan, chunk))
            }));
        }
    }
}

impl Stream for ObjectBody {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.pending.is_none() {
            self.spawn();
        }
        let Some(pending) = self.pending.as_mut() else {
            return Poll::Ready(None);
        };
        let step = std::task::ready!(Pin::new(pending).poll(cx));
        self.pending = None;
        match step {
            Ok(Ok((plan, Some(chunk)))) => {
                self.plan = Some(plan);
                self.spawn();
                Poll::Ready(Some(Ok(chunk)))
            }
            Ok(Ok((_, None))) => Poll::Ready(None),
            Ok(Err(e)) => Poll::Ready(Some(Err(e))),
            Err(join) => Poll::Ready(Some(Err(io::Error::other(join)))),
        }
    }
}

use std::future::Future as _;
