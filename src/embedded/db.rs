//! The metadata database (SQLite through rusqlite): buckets, object versions, the blob files
//! that hold each version's bytes, multipart uploads and their parts.
//!
//! Why SQLite: one file, transactions, ordered range scans for listings, and WAL mode with
//! `synchronous=NORMAL` makes every commit survive a crash of the process (`kill -9`)
//! without an fsync per write; only a power cut can lose the last commits (say
//! `--fsync` when that matters). Writes go through one connection (SQLite has one writer),
//! reads through a small pool of their own, so listings never wait for uploads.
//!
//! Keys are BLOBs: SQLite compares them with memcmp, which is S3's order (UTF-8 bytes), and a
//! listing can seek past a common prefix to a bound that is not valid UTF-8.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::error::{StoreError, StoreResult};
use super::meta::{ObjectMeta, UploadMeta};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS buckets (
    name TEXT PRIMARY KEY,
    created_ns INTEGER NOT NULL,
    versioning TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS versions (
    id INTEGER PRIMARY KEY,
    bucket TEXT NOT NULL,
    key BLOB NOT NULL,
    version_id TEXT NOT NULL,
    latest INTEGER NOT NULL,
    delete_marker INTEGER NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    modified_ns INTEGER NOT NULL,
    meta TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS versions_by_key ON versions (bucket, key, id);
CREATE INDEX IF NOT EXISTS versions_current ON versions (bucket, key) WHERE latest = 1 AND delete_marker = 0;
CREATE TABLE IF NOT EXISTS segments (
    version INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    blob TEXT NOT NULL,
    len INTEGER NOT NULL,
    PRIMARY KEY (version, seq)
);
CREATE TABLE IF NOT EXISTS uploads (
    upload_id TEXT PRIMARY KEY,
    bucket TEXT NOT NULL,
    key BLOB NOT NULL,
    initiated_ns INTEGER NOT NULL,
    meta TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS uploads_by_key ON uploads (bucket, key, initiated_ns);
CREATE TABLE IF NOT EXISTS parts (
    upload_id TEXT NOT NULL,
    number INTEGER NOT NULL,
    blob TEXT,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    modified_ns INTEGER NOT NULL,
    checksums TEXT NOT NULL,
    PRIMARY KEY (upload_id, number)
);
CREATE TABLE IF NOT EXISTS completed (
    upload_id TEXT PRIMARY KEY,
    bucket TEXT NOT NULL,
    key BLOB NOT NULL,
    version_id TEXT NOT NULL,
    etag TEXT NOT NULL,
    checksums TEXT NOT NULL,
    completed_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS completed_by_time ON completed (completed_ns);
";

/// How long a completed upload's answer is kept for a repeated CompleteMultipartUpload.
const COMPLETED_KEPT_NS: i64 = 24 * 3600 * 1_000_000_000;

/// How hard commits are pushed to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Survives the process dying at any point; a power cut may lose the last commits.
    #[default]
    ProcessCrash,
    /// Every commit and every object file is fsynced before the client hears "200".
    PowerLoss,
}

/// A bucket's versioning state, as S3 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versioning {
    /// Never enabled: every object has version id `null`.
    Off,
    Enabled,
    Suspended,
}

impl Versioning {
    fn from_column(text: &str) -> Versioning {
        match text {
            "Enabled" => Versioning::Enabled,
            "Suspended" => Versioning::Suspended,
            _ => Versioning::Off,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Versioning::Off => "",
            Versioning::Enabled => "Enabled",
            Versioning::Suspended => "Suspended",
        }
    }

    /// New versions get a fresh id (enabled) or replace the `null` one (off, suspended).
    pub fn keeps_history(self) -> bool {
        self == Versioning::Enabled
    }
}

#[derive(Debug, Clone)]
pub struct BucketRow {
    pub name: String,
    pub created: SystemTime,
    pub versioning: Versioning,
}

/// One stretch of an object's bytes: a whole blob file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub blob: String,
    pub len: u64,
}

/// One version of one key (possibly a delete marker).
#[derive(Debug, Clone)]
pub struct VersionRow {
    pub row: i64,
    pub key: String,
    pub version_id: String,
    pub latest: bool,
    pub delete_marker: bool,
    pub size: u64,
    pub etag: String,
    pub modified: SystemTime,
    pub meta: ObjectMeta,
}

/// A version about to be written.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub size: u64,
    pub etag: String,
    pub meta: ObjectMeta,
    pub segments: Vec<Segment>,
}

#[derive(Debug, Clone)]
pub struct UploadRow {
    pub upload_id: String,
    pub bucket: String,
    pub key: String,
    pub initiated: SystemTime,
    pub meta: UploadMeta,
}

#[derive(Debug, Clone)]
pub struct PartRow {
    pub number: u32,
    pub blob: Option<String>,
    pub size: u64,
    pub etag: String,
    pub modified: SystemTime,
    pub checksums: super::meta::Checksums,
}

pub fn to_ns(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos().min(i64::MAX as u128) as i64)
}

pub fn from_ns(ns: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns.max(0) as u64)
}

fn bad_json(e: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
}

fn key_text(bytes: Vec<u8>) -> rusqlite::Result<String> {
    String::from_utf8(bytes)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, Box::new(e)))
}

const VERSION_COLUMNS: &str = "id, key, version_id, latest, delete_marker, size, etag, modified_ns, meta";

fn version_from(row: &rusqlite::Row<'_>) -> rusqlite::Result<VersionRow> {
    Ok(VersionRow {
        row: row.get(0)?,
        key: key_text(row.get(1)?)?,
        version_id: row.get(2)?,
        latest: row.get(3)?,
        delete_marker: row.get(4)?,
        size: row.get::<_, i64>(5)? as u64,
        etag: row.get(6)?,
        modified: from_ns(row.get(7)?),
        meta: ObjectMeta::from_json(&row.get::<_, String>(8)?).map_err(bad_json)?,
    })
}

fn open_connection(path: &std::path::Path, durability: Durability) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let sync = match durability {
        Durability::ProcessCrash => "NORMAL",
        Durability::PowerLoss => "FULL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    Ok(conn)
}

/// The database: one writer connection, a pool of readers.
pub struct Db {
    path: std::path::PathBuf,
    durability: Durability,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

const MAX_IDLE_READERS: usize = 8;

impl Db {
    pub fn open(path: &std::path::Path, durability: Durability) -> StoreResult<Db> {
        let writer = open_connection(path, durability)?;
        writer.execute_batch(SCHEMA)?;
        Ok(Db {
            path: path.to_owned(),
            durability,
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
        })
    }

    /// Runs `f` on a reader connection (blocking: call from a blocking thread).
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        let pooled = self
            .readers
            .lock()
            .map_err(|_| StoreError::Task("reader pool poisoned".into()))?
            .pop();
        let conn = match pooled {
            Some(c) => c,
            None => open_connection(&self.path, self.durability)?,
        };
        let result = f(&conn);
        if let Ok(mut pool) = self.readers.lock()
            && pool.len() < MAX_IDLE_READERS
        {
            pool.push(conn);
        }
        result
    }

    /// Runs `f` in a write transaction, committed when `f` returns `Ok`.
    pub fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> StoreResult<T>) -> StoreResult<T> {
        let mut conn = self
            .writer
            .lock()
            .map_err(|_| StoreError::Task("writer poisoned".into()))?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }
}

// ---- buckets ----

pub fn bucket(conn: &Connection, name: &str) -> StoreResult<Option<BucketRow>> {
    Ok(conn
        .prepare_cached("SELECT name, created_ns, versioning FROM buckets WHERE name = ?1")?
        .query_row([name], |r| {
            Ok(BucketRow {
                name: r.get(0)?,
                created: from_ns(r.get(1)?),
                versioning: Versioning::from_column(&r.get::<_, String>(2)?),
            })
        })
        .optional()?)
}

pub fn buckets(conn: &Connection) -> StoreResult<Vec<BucketRow>> {
    let mut stmt = conn.prepare_cached("SELECT name, created_ns, versioning FROM buckets ORDER BY name")?;
    let rows = stmt.query_map([], |r| {
        Ok(BucketRow {
            name: r.get(0)?,
            created: from_ns(r.get(1)?),
            versioning: Versioning::from_column(&r.get::<_, String>(2)?),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Inserts a bucket; false when it already exists.
pub fn create_bucket(tx: &Transaction<'_>, name: &str, now: SystemTime) -> StoreResult<bool> {
    let n = tx
        .prepare_cached("INSERT OR IGNORE INTO buckets (name, created_ns) VALUES (?1, ?2)")?
        .execute(params![name, to_ns(now)])?;
    Ok(n == 1)
}

/// Whether the bucket holds any version (delete markers count, as in S3) or upload.
/// No object, version or delete marker: S3's condition for DeleteBucket. (Multipart
/// uploads in progress do not count; [`delete_bucket`] aborts them.)
pub fn bucket_is_empty(conn: &Connection, name: &str) -> StoreResult<bool> {
    let any: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM versions WHERE bucket = ?1 LIMIT 1")?
        .query_row([name], |r| r.get(0))
        .optional()?;
    Ok(any.is_none())
}

/// Forgets a bucket and aborts its multipart uploads in progress, as S3 does (ceph's
/// s3-tests, which run against AWS, delete buckets with uploads left open); returns the
/// part blobs to delete.
pub fn delete_bucket(tx: &Transaction<'_>, name: &str) -> StoreResult<Vec<String>> {
    let ids: Vec<String> = tx
        .prepare_cached("SELECT upload_id FROM uploads WHERE bucket = ?1")?
        .query_map([name], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut retired = Vec::new();
    for id in ids {
        retired.extend(end_upload(tx, &id, &std::collections::HashSet::new())?);
    }
    tx.prepare_cached("DELETE FROM completed WHERE bucket = ?1")?
        .execute([name])?;
    tx.prepare_cached("DELETE FROM buckets WHERE name = ?1")?
        .execute([name])?;
    Ok(retired)
}

pub fn set_versioning(tx: &Transaction<'_>, name: &str, v: Versioning) -> StoreResult<()> {
    tx.prepare_cached("UPDATE buckets SET versioning = ?2 WHERE name = ?1")?
        .execute(params![name, v.as_str()])?;
    Ok(())
}

// ---- versions ----

/// The latest version of a key (possibly a delete marker).
pub fn latest(conn: &Connection, bucket: &str, key: &str) -> StoreResult<Option<VersionRow>> {
    let sql = format!("SELECT {VERSION_COLUMNS} FROM versions WHERE bucket = ?1 AND key = ?2 AND latest = 1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![bucket, key.as_bytes()], version_from)
        .optional()?)
}

pub fn version(conn: &Connection, bucket: &str, key: &str, version_id: &str) -> StoreResult<Option<VersionRow>> {
    let sql = format!("SELECT {VERSION_COLUMNS} FROM versions WHERE bucket = ?1 AND key = ?2 AND version_id = ?3");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![bucket, key.as_bytes(), version_id], version_from)
        .optional()?)
}

pub fn segments(conn: &Connection, row: i64) -> StoreResult<Vec<Segment>> {
    let mut stmt = conn.prepare_cached("SELECT blob, len FROM segments WHERE version = ?1 ORDER BY seq")?;
    let rows = stmt.query_map([row], |r| {
        Ok(Segment {
            blob: r.get(0)?,
            len: r.get::<_, i64>(1)? as u64,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Current (latest, not deleted) objects of a bucket with keys from `from` on, in key order.
pub fn current_from(
    conn: &Connection,
    bucket: &str,
    from: &[u8],
    inclusive: bool,
    limit: usize,
) -> StoreResult<Vec<VersionRow>> {
    let op = if inclusive { ">=" } else { ">" };
    let sql = format!(
        "SELECT {VERSION_COLUMNS} FROM versions WHERE bucket = ?1 AND latest = 1 AND delete_marker = 0 \
         AND key {op} ?2 ORDER BY key LIMIT ?3"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![bucket, from, limit as i64], version_from)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Distinct keys that have any version, from `from` on.
pub fn keys_with_versions_from(
    conn: &Connection,
    bucket: &str,
    from: &[u8],
    inclusive: bool,
    limit: usize,
) -> StoreResult<Vec<String>> {
    let op = if inclusive { ">=" } else { ">" };
    let sql = format!("SELECT DISTINCT key FROM versions WHERE bucket = ?1 AND key {op} ?2 ORDER BY key LIMIT ?3");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![bucket, from, limit as i64], |r| key_text(r.get(0)?))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Every version of a key, newest first.
pub fn versions_of(conn: &Connection, bucket: &str, key: &str) -> StoreResult<Vec<VersionRow>> {
    let sql = format!("SELECT {VERSION_COLUMNS} FROM versions WHERE bucket = ?1 AND key = ?2 ORDER BY id DESC");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![bucket, key.as_bytes()], version_from)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn remove_version(tx: &Transaction<'_>, row: i64, retired: &mut Vec<String>) -> StoreResult<()> {
    for s in segments(tx, row)? {
        retired.push(s.blob);
    }
    tx.prepare_cached("DELETE FROM segments WHERE version = ?1")?
        .execute([row])?;
    tx.prepare_cached("DELETE FROM versions WHERE id = ?1")?
        .execute([row])?;
    Ok(())
}

/// Adds a version as the latest of its key, following the bucket's versioning: with history
/// kept the old latest stays (no longer latest); otherwise the `null` version is replaced.
/// Returns the new version's id and the blobs no version uses any more.
pub fn insert_version(
    tx: &Transaction<'_>,
    bucket: &BucketRow,
    key: &str,
    delete_marker: bool,
    new: &NewVersion,
    now: SystemTime,
) -> StoreResult<(String, Vec<String>)> {
    let mut retired = Vec::new();
    let version_id = if bucket.versioning.keeps_history() {
        new_version_id()
    } else {
        "null".to_owned()
    };
    if version_id == "null"
        && let Some(old) = tx
            .prepare_cached("SELECT id FROM versions WHERE bucket = ?1 AND key = ?2 AND version_id = 'null'")?
            .query_row(params![bucket.name, key.as_bytes()], |r| r.get::<_, i64>(0))
            .optional()?
    {
        remove_version(tx, old, &mut retired)?;
    }
    tx.prepare_cached("UPDATE versions SET latest = 0 WHERE bucket = ?1 AND key = ?2 AND latest = 1")?
        .execute(params![bucket.name, key.as_bytes()])?;
    tx.prepare_cached(
        "INSERT INTO versions (bucket, key, version_id, latest, delete_marker, size, etag, modified_ns, meta) \
         VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        bucket.name,
        key.as_bytes(),
        version_id,
        delete_marker,
        new.size as i64,
        new.etag,
        to_ns(now),
        new.meta.to_json()
    ])?;
    let row = tx.last_insert_rowid();
    let mut insert = tx.prepare_cached("INSERT INTO segments (version, seq, blob, len) VALUES (?1, ?2, ?3, ?4)")?;
    for (seq, s) in new.segments.iter().enumerate() {
        insert.execute(params![row, seq as i64, s.blob, s.len as i64])?;
    }
    Ok((version_id, retired))
}

/// Removes one version for good (DELETE with a versionId); the next newest becomes latest.
pub fn delete_version(
    tx: &Transaction<'_>,
    bucket: &str,
    key: &str,
    version_id: &str,
) -> StoreResult<Option<(VersionRow, Vec<String>)>> {
    let Some(found) = version(tx, bucket, key, version_id)? else {
        return Ok(None);
    };
    let mut retired = Vec::new();
    remove_version(tx, found.row, &mut retired)?;
    if found.latest {
        tx.prepare_cached(
            "UPDATE versions SET latest = 1 WHERE id = (SELECT max(id) FROM versions WHERE bucket = ?1 AND key = ?2)",
        )?
        .execute(params![bucket, key.as_bytes()])?;
    }
    Ok(Some((found, retired)))
}

pub fn update_meta(tx: &Transaction<'_>, row: i64, meta: &ObjectMeta) -> StoreResult<()> {
    tx.prepare_cached("UPDATE versions SET meta = ?2 WHERE id = ?1")?
        .execute(params![row, meta.to_json()])?;
    Ok(())
}

/// Every blob a version or a part refers to (for the start-up sweep of orphan files).
pub fn all_blobs(conn: &Connection) -> StoreResult<std::collections::HashSet<String>> {
    let mut stmt = conn.prepare("SELECT blob FROM segments UNION SELECT blob FROM parts WHERE blob IS NOT NULL")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

// ---- multipart ----

pub fn create_upload(tx: &Transaction<'_>, up: &UploadRow) -> StoreResult<()> {
    tx.prepare_cached("INSERT INTO uploads (upload_id, bucket, key, initiated_ns, meta) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![
            up.upload_id,
            up.bucket,
            up.key.as_bytes(),
            to_ns(up.initiated),
            serde_json::to_string(&up.meta).expect("plain data serializes")
        ])?;
    Ok(())
}

fn upload_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<UploadRow> {
    Ok(UploadRow {
        upload_id: r.get(0)?,
        bucket: r.get(1)?,
        key: key_text(r.get(2)?)?,
        initiated: from_ns(r.get(3)?),
        meta: serde_json::from_str(&r.get::<_, String>(4)?).map_err(bad_json)?,
    })
}

pub fn upload(conn: &Connection, upload_id: &str) -> StoreResult<Option<UploadRow>> {
    Ok(conn
        .prepare_cached("SELECT upload_id, bucket, key, initiated_ns, meta FROM uploads WHERE upload_id = ?1")?
        .query_row([upload_id], upload_from)
        .optional()?)
}

/// Uploads of a bucket in (key, initiation) order, from a key on.
pub fn uploads_from(
    conn: &Connection,
    bucket: &str,
    from: &[u8],
    inclusive: bool,
    limit: usize,
) -> StoreResult<Vec<UploadRow>> {
    let op = if inclusive { ">=" } else { ">" };
    let sql = format!(
        "SELECT upload_id, bucket, key, initiated_ns, meta FROM uploads WHERE bucket = ?1 AND key {op} ?2 \
         ORDER BY key, initiated_ns, upload_id LIMIT ?3"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![bucket, from, limit as i64], upload_from)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Records a part (replacing an earlier upload of the same number); returns the blob replaced.
pub fn put_part(tx: &Transaction<'_>, upload_id: &str, part: &PartRow) -> StoreResult<Option<String>> {
    let old: Option<Option<String>> = tx
        .prepare_cached("SELECT blob FROM parts WHERE upload_id = ?1 AND number = ?2")?
        .query_row(params![upload_id, part.number], |r| r.get(0))
        .optional()?;
    tx.prepare_cached(
        "INSERT OR REPLACE INTO parts (upload_id, number, blob, size, etag, modified_ns, checksums) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        upload_id,
        part.number,
        part.blob,
        part.size as i64,
        part.etag,
        to_ns(part.modified),
        serde_json::to_string(&part.checksums).expect("plain data serializes")
    ])?;
    Ok(old.flatten())
}

pub fn parts(conn: &Connection, upload_id: &str, after: u32, limit: usize) -> StoreResult<Vec<PartRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT number, blob, size, etag, modified_ns, checksums FROM parts WHERE upload_id = ?1 AND number > ?2 \
         ORDER BY number LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![upload_id, after, limit as i64], |r| {
        Ok(PartRow {
            number: r.get(0)?,
            blob: r.get(1)?,
            size: r.get::<_, i64>(2)? as u64,
            etag: r.get(3)?,
            modified: from_ns(r.get(4)?),
            checksums: serde_json::from_str(&r.get::<_, String>(5)?).map_err(bad_json)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Forgets an upload and its parts; returns the part blobs to delete, except `keep`.
pub fn end_upload(
    tx: &Transaction<'_>,
    upload_id: &str,
    keep: &std::collections::HashSet<String>,
) -> StoreResult<Vec<String>> {
    let all = parts(tx, upload_id, 0, usize::MAX >> 1)?;
    tx.prepare_cached("DELETE FROM parts WHERE upload_id = ?1")?
        .execute([upload_id])?;
    tx.prepare_cached("DELETE FROM uploads WHERE upload_id = ?1")?
        .execute([upload_id])?;
    Ok(all
        .into_iter()
        .filter_map(|p| p.blob)
        .filter(|b| !keep.contains(b))
        .collect())
}

/// What a CompleteMultipartUpload answered, kept a day so that a client retrying it (its
/// first answer lost, as an `ambiguous` fault makes it) hears the same success, as from S3.
#[derive(Debug, Clone)]
pub struct CompletedRow {
    pub bucket: String,
    pub key: String,
    pub version_id: String,
    pub etag: String,
    pub checksums: super::meta::Checksums,
}

pub fn record_completed(tx: &Transaction<'_>, upload_id: &str, row: &CompletedRow, now: SystemTime) -> StoreResult<()> {
    let now = to_ns(now);
    tx.prepare_cached("DELETE FROM completed WHERE completed_ns < ?1")?
        .execute([now - COMPLETED_KEPT_NS])?;
    let checksums = serde_json::to_string(&row.checksums).expect("plain data serializes");
    tx.prepare_cached(
        "INSERT OR REPLACE INTO completed (upload_id, bucket, key, version_id, etag, checksums, completed_ns) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        upload_id,
        row.bucket,
        row.key.as_bytes(),
        row.version_id,
        row.etag,
        checksums,
        now
    ])?;
    Ok(())
}

pub fn completed(conn: &Connection, upload_id: &str) -> StoreResult<Option<CompletedRow>> {
    Ok(conn
        .prepare_cached("SELECT bucket, key, version_id, etag, checksums FROM completed WHERE upload_id = ?1")?
        .query_row([upload_id], |r| {
            Ok(CompletedRow {
                bucket: r.get(0)?,
                key: String::from_utf8_lossy(&r.get::<_, Vec<u8>>(1)?).into_owned(),
                version_id: r.get(2)?,
                etag: r.get(3)?,
                checksums: serde_json::from_str(&r.get::<_, String>(4)?).map_err(bad_json)?,
            })
        })
        .optional()?)
}

/// A fresh id: 32 characters of S3's version-id alphabet.
pub fn new_version_id() -> String {
    random_id(32)
}

pub fn random_id(len: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--fsync` (PowerLoss) makes SQLite sync every commit (`synchronous=FULL`, 2) on the
    /// writer and on every reader; the default syncs at checkpoints only (`NORMAL`, 1).
    #[test]
    fn durability_sets_sqlite_synchronous_on_every_connection() {
        for (durability, level) in [(Durability::ProcessCrash, 1), (Durability::PowerLoss, 2)] {
            let dir = tempfile::tempdir().unwrap();
            let db = Db::open(&dir.path().join("meta.sqlite"), durability).unwrap();
            let query = |c: &Connection| Ok(c.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0))?);
            assert_eq!(db.read(query).unwrap(), level, "{durability:?} reader");
            assert_eq!(db.write(|tx| query(tx)).unwrap(), level, "{durability:?} writer");
        }
    }
}
