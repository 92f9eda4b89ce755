//! `stale_reads`: eventual consistency. For `for:` after a PUT, COPY, multipart completion or
//! DELETE of a key through the proxy, GETs and HEADs of that key see its previous state (the
//! previous object, or `404 NoSuchKey` if it did not exist), and listings of its bucket omit
//! a new key and keep a deleted one. This is S3 before December 2020 (and every
//! cross-region replica's lag today): the bug it finds is an app that writes then reads, or
//! lists, and trusts what it sees.
//!
//! What is served stays S3-legal: an old-model stale read returned the old version or the
//! new one, and `404` only for a key that did not exist (S3 cached a GET's or HEAD's 404 of a
//! key not yet written). So the previous version is served only if a GET through s3chaos saw
//! it (objects up to `max_object_size` are kept, at most `max_keys` of them and `max_memory`
//! bytes in all, counting bodies being recorded, oldest dropped first), `NoSuchKey` only if a
//! GET or HEAD through s3chaos got a 404 for the key before its write (or it was deleted), and
//! otherwise the read is not staled: the current version is served and the log says "not
//! staled: previous version unknown". Listings still leave out a written key whose previous
//! version is unknown (the common write-then-list case of a new key). At most `4 × max_keys` changes are remembered: past
//! that the oldest end their window early (the key reads fresh, as S3 may). The rule must match the
//! writes, the reads and the listings of the bucket (leave its probability at 1).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use serde::Deserialize;

use super::{Applies, BodyCtx, Fault, FaultCtx, FaultState, Ending, RequestAction, state_of};
use crate::body::{BoxError, ProxyBody, full};
use crate::s3::{Code, Operation, RequestInfo, S3ErrorResponse};
use crate::values::{ByteSize, DurationValue};

/// Larger listings (S3 pages hold at most 1,000 keys, far below) end in an error.
const MAX_LIST_BODY: usize = 8 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StaleReadsFile {
    #[serde(rename = "for")]
    window: DurationValue,
    #[serde(default = "default_max_object")]
    max_object_size: ByteSize,
    #[serde(default = "default_max_keys")]
    max_keys: usize,
    #[serde(default = "default_max_memory")]
    max_memory: ByteSize,
}

/// Without it, `max_keys` × `max_object_size` (10 GiB by default) could be held.
fn default_max_memory() -> ByteSize {
    ByteSize(64 << 20)
}

fn default_max_object() -> ByteSize {
    ByteSize(1 << 20)
}

fn default_max_keys() -> usize {
    10_000
}

#[derive(Clone)]
pub struct StaleReads {
    window: Duration,
    max_object: u64,
    max_keys: usize,
    max_memory: u64,
}

/// What the fault has seen (the engine's state for the rule), shared with the GET bodies it
/// is recording.
pub struct Memory {
    max_keys: usize,
    max_memory: u64,
    /// Bytes of bodies held: cached, kept by a change, or being recorded.
    held: Arc<AtomicU64>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// (bucket, key) → when it last changed through the proxy, and what it was before.
    changes: HashMap<(String, String), Change>,
    /// What a GET or HEAD last showed of each key (forgotten at its next write, whose content
    /// the proxy does not keep), for serving it while stale.
    cache: HashMap<(String, String), Seen>,
    /// Insertion order of `cache`, for dropping the oldest.
    order: VecDeque<(String, String)>,
}

/// A key as a read through the proxy showed it.
#[derive(Clone)]
enum Seen {
    Object(Arc<Version>),
    /// `404`: the key did not exist.
    Absent,
}

struct Change {
    at: Instant,
    /// What the key was before the change, if a read showed it (`None`: unknown).
    previous: Option<Seen>,
    deleted: bool,
    /// "Not staled" was logged for it (once per change).
    logged: bool,
}

impl Change {
    /// A read of the key can be answered with its previous state.
    fn stales(&self) -> bool {
        self.previous.is_some()
    }

    /// The previous version, for a listing's edits.
    fn version(&self) -> Option<Arc<Version>> {
        match &self.previous {
            Some(Seen::Object(v)) => Some(v.clone()),
            _ => None,
        }
    }
}

/// An object as a GET saw it.
struct Version {
    headers: HeaderMap,
    body: Bytes,
    _charge: Charge,
}

/// Bytes counted against `max_memory` for as long as this lives.
struct Charge {
    bytes: u64,
    held: Arc<AtomicU64>,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.held.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

impl fmt::Debug for StaleReads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaleReads")
            .field("window", &self.window)
            .field("max_object", &self.max_object)
            .finish()
    }
}

impl<'de> Deserialize<'de> for StaleReads {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f = StaleReadsFile::deserialize(d)?;
        if f.window.0.is_zero() {
            return Err(serde::de::Error::custom("stale_reads needs `for:` longer than zero"));
        }
        Ok(StaleReads {
            window: f.window.0,
            max_object: f.max_object_size.0,
            max_keys: f.max_keys.max(1),
            max_memory: f.max_memory.0,
        })
    }
}

fn is_write(op: Operation) -> bool {
    matches!(
        op,
        Operation::PutObject | Operation::CopyObject | Operation::CompleteMultipartUpload | Operation::DeleteObject
    )
}

impl Memory {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts `bytes` against `max_memory`, dropping the oldest cached versions to make room;
    /// `None` if there is none (the body then goes unrecorded).
    fn reserve(&self, bytes: u64) -> Option<Charge> {
        let mut state = self.lock();
        loop {
            let held = self.held.load(Ordering::Acquire);
            if held.saturating_add(bytes) <= self.max_memory {
                self.held.fetch_add(bytes, Ordering::AcqRel);
                return Some(Charge {
                    bytes,
                    held: self.held.clone(),
                });
            }
            let oldest = state.order.pop_front()?;
            state.cache.remove(&oldest);
        }
    }

    /// Bounds the changes: expired ones go first; if that is not enough, the older half ends
    /// its window early.
    fn bound_changes(&self, window: Duration) {
        let mut state = self.lock();
        let most = self.max_keys.saturating_mul(4);
        if state.changes.len() <= most {
            return;
        }
        state.changes.retain(|_, c| c.at.elapsed() < window);
        if state.changes.len() > most {
            let mut times: Vec<Instant> = state.changes.values().map(|c| c.at).collect();
            let middle = times.len() / 2;
            let (_, &mut newest_dropped, _) = times.select_nth_unstable(middle);
            state.changes.retain(|_, c| c.at > newest_dropped);
        }
    }

    fn remember(&self, id: (String, String), seen: Seen) {
        let mut state = self.lock();
        if state.cache.insert(id.clone(), seen).is_none() {
            state.order.push_back(id);
        }
        while state.cache.len() > self.max_keys {
            let Some(oldest) = state.order.pop_front() else { break };
            state.cache.remove(&oldest);
        }
    }
}

impl StaleReads {

    /// The change of `id` still inside the window, forgetting expired ones on the way.
    fn fresh_change<'s>(&self, state: &'s mut State, id: &(String, String)) -> Option<&'s Change> {
        let expired = state.changes.get(id).is_some_and(|c| c.at.elapsed() >= self.window);
        if expired {
            state.changes.remove(id);
        }
        state.changes.get(id)
    }
}

impl Fault for StaleReads {
    const KIND: &'static str = "stale_reads";

    const TERMINAL: bool = false;

    fn new_state(&self) -> Option<FaultState> {
        Some(Arc::new(Memory {
            max_keys: self.max_keys,
            max_memory: self.max_memory,
            held: Arc::default(),
            state: Mutex::new(State::default()),
        }))
    }

    /// Fires for a read of a key changed within the window (it is answered with the key's
    /// previous state); watches writes, other reads and listings (to remember and edit).
    fn applies(&self, req: &RequestInfo<'_>, state: Option<&FaultState>) -> Applies {
        let Some(memory) = state_of::<Memory>(state) else {
            return Applies::Skip;
        };
        match req.operation {
            Operation::GetObject | Operation::HeadObject => {
                let (Some(bucket), Some(key)) = (req.bucket.as_deref(), req.key.as_deref()) else {
                    return Applies::Skip;
                };
                let id = (bucket.to_owned(), key.to_owned());
                let mut state = memory.lock();
                if self.fresh_change(&mut state, &id).is_some_and(Change::stales) {
                    return Applies::Fire;
                }
                if let Some(change) = state.changes.get_mut(&id)
                    && !change.logged
                    && !change.deleted
                {
                    change.logged = true;
                    tracing::info!(
                        target: "s3chaos::fault",
                        bucket,
                        key,
                        "stale_reads: not staled: previous version unknown (no GET through s3chaos saw it); the current version is served, as S3 may"
                    );
                }
                Applies::Watch
            }
            op if is_write(op) => Applies::Watch,
            Operation::ListObjects | Operation::ListObjectsV2 => Applies::Watch,
            _ => Applies::Skip,
        }
    }

    /// A read the engine decided to fire on: the key's previous state. (Should the change
    /// expire in the microseconds since the decision, the request goes upstream as usual.)
    fn on_request(&self, ctx: &FaultCtx<'_>) -> RequestAction {
        let req = ctx.request;
        let (Some(memory), Some(bucket), Some(key)) = (state_of::<Memory>(ctx.state), req.bucket.as_deref(), req.key.as_deref())
        else {
            return RequestAction::Continue;
        };
        if !matches!(req.operation, Operation::GetObject | Operation::HeadObject) {
            return RequestAction::Continue;
        }
        let id = (bucket.to_owned(), key.to_owned());
        let mut state = memory.lock();
        let Some(change) = self.fresh_change(&mut state, &id) else {
            return RequestAction::Continue;
        };
        let response = match &change.previous {
            None => return RequestAction::Continue,
            Some(Seen::Absent) => {
                super::error::answer(&S3ErrorResponse::standard(Code::NoSuchKey), req.method, req.path)
            }
            Some(Seen::Object(version)) => {
                let body = if req.operation == Operation::HeadObject {
                    Bytes::new()
                } else {
                    version.body.clone()
                };
                let mut response = Response::new(full(body));
                *response.headers_mut() = version.headers.clone();
                response
            }
        };
        RequestAction::End(Ending::Respond(response))
    }

    fn on_response(&self, parts: &mut http::response::Parts, body: ProxyBody, ctx: &BodyCtx<'_>) -> ProxyBody {
        let target = ctx.target;
        // A shared handle: a recorded GET body outlives the response phase.
        let Some(memory) = ctx.state.cloned().and_then(|s| s.downcast::<Memory>().ok()) else {
            return body;
        };
        let Some(bucket) = target.bucket.clone() else {
            return body;
        };
        if parts.status == StatusCode::NOT_FOUND
            && matches!(target.operation, Operation::GetObject | Operation::HeadObject)
            && let Some(key) = target.key.clone()
        {
            // The key does not exist: a read after its first write may say so while stale.
            memory.remember((bucket, key), Seen::Absent);
            return body;
        }
        if !parts.status.is_success() {
            return body;
        }
        match (target.operation, target.key.clone()) {
            (op, Some(key)) if is_write(op) => {
                let id = (bucket, key);
                let deleted = op == Operation::DeleteObject;
                let mut state = memory.lock();
                // A write within an earlier write's window keeps that one's previous state
                // (readers may still see it); otherwise what a read last showed is the previous
                // state. Either way the new content is unseen (a DELETE's is known: nothing),
                // so the read is forgotten: a later write never serves a version older than
                // the one it replaced.
                let carried = self.fresh_change(&mut state, &id).map(|c| c.previous.clone());
                let seen = if deleted {
                    let seen = state.cache.insert(id.clone(), Seen::Absent);
                    if seen.is_none() {
                        state.order.push_back(id.clone());
                    }
                    seen
                } else {
                    state.cache.remove(&id)
                };
                let previous = carried.unwrap_or(seen);
                state.changes.insert(
                    id,
                    Change {
                        at: Instant::now(),
                        previous,
                        deleted,
                        logged: false,
                    },
                );
                drop(state);
                memory.bound_changes(self.window);
                body
            }
            (Operation::GetObject, Some(key)) if parts.status == StatusCode::OK => {
                let Some(size) = body.size_hint().upper().filter(|&n| n <= self.max_object) else {
                    return body;
                };
                let Some(charge) = memory.reserve(size) else {
                    return body;
                };
                ProxyBody::new(Recording {
                    charge: Some(charge),
                    inner: body,
                    seen: BytesMut::with_capacity(size as usize),
                    headers: Some(parts.headers.clone()),
                    id: Some((bucket, key)),
                    memory: memory.clone(),
                })
            }
            (Operation::ListObjects | Operation::ListObjectsV2, _) => {
                let window = self.window;
                let edits: Vec<(String, Option<Arc<Version>>, bool)> = {
                    let state = memory.lock();
                    state
                        .changes
                        .iter()
                        .filter(|((b, _), c)| *b == bucket && c.at.elapsed() < window)
                        .map(|((_, k), c)| (k.clone(), c.version(), c.deleted))
                        .collect()
                };
                if edits.is_empty() {
                    return body;
                }
                parts.headers.remove(http::header::CONTENT_LENGTH);
                rewrite_listing(body, edits)
            }
            _ => body,
        }
    }

    fn describe(&self) -> String {
        format!("stale_reads for {}", humantime::format_duration(self.window))
    }
}

/// A GET's body on its way to the client, copied into the cache when it ends whole.
struct Recording {
    /// The body's size, counted against `max_memory` while it is recorded and then kept.
    charge: Option<Charge>,
    inner: ProxyBody,
    seen: BytesMut,
    headers: Option<HeaderMap>,
    id: Option<(String, String)>,
    memory: Arc<Memory>,
}

impl Body for Recording {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(data) = f.data_ref()
                    && this.id.is_some()
                {
                    this.seen.extend_from_slice(data);
                    if this.charge.as_ref().is_none_or(|c| this.seen.len() as u64 > c.bytes) {
                        // Longer than its size said: not recorded, and not held.
                        (this.id, this.charge, this.seen) = (None, None, BytesMut::new());
                    }
                }
            }
            Some(Err(_)) => this.id = None,
            None => {}
        }
        // hyper stops polling once the body says it has ended, so look for the end here
        // rather than waiting for a last `None`.
        if (frame.is_none() || this.inner.is_end_stream())
            && let (Some(headers), Some(id), Some(charge)) = (this.headers.take(), this.id.take(), this.charge.take())
        {
            let body = std::mem::take(&mut this.seen).freeze();
            this.memory.remember(
                id,
                Seen::Object(Arc::new(Version {
                    headers,
                    body,
                    _charge: charge,
                })),
            );
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Reads a listing whole (it is small) and edits it: keys written within the window that did
/// not exist before are left out; keys deleted within the window whose last version is known
/// are put back.
fn rewrite_listing(body: ProxyBody, edits: Vec<(String, Option<Arc<Version>>, bool)>) -> ProxyBody {
    let edited = async move {
        let mut body = body;
        let mut xml = BytesMut::new();
        while let Some(frame) = body.frame().await {
            if let Some(data) = frame?.data_ref() {
                xml.extend_from_slice(data);
                if xml.len() > MAX_LIST_BODY {
                    return Err(BoxError::from("a listing too large to edit for stale_reads"));
                }
            }
        }
        let edited = edit_listing(&String::from_utf8_lossy(&xml), &edits);
        Ok(Frame::data(Bytes::from(edited)))
    };
    ProxyBody::new(http_body_util::StreamBody::new(futures_util::stream::once(edited)))
}

/// The listing XML with entries left out and put back, in key order, `KeyCount` adjusted.
fn edit_listing(xml: &str, edits: &[(String, Option<Arc<Version>>, bool)]) -> String {
    const OPEN: &str = "<Contents>";
    const CLOSE: &str = "</Contents>";
    // Take every <Contents> block out, remembering where the first one stood.
    let mut out = String::with_capacity(xml.len());
    let mut entries: Vec<(String, String)> = Vec::new();
    let mut insert_at = None;
    let mut rest = xml;
    while let Some(start) = rest.find(OPEN) {
        let Some(len) = rest[start..].find(CLOSE).map(|e| e + CLOSE.len()) else {
            break;
        };
        out.push_str(&rest[..start]);
        insert_at.get_or_insert(out.len());
        let block = &rest[start..start + len];
        let key = between(block, "<Key>", "</Key>").unwrap_or_default();
        let key = quick_xml::escape::unescape(&key).map(|k| k.into_owned()).unwrap_or(key);
        entries.push((key, block.to_owned()));
        rest = &rest[start + len..];
    }
    out.push_str(rest);
    let Some(insert_at) = insert_at
        .or_else(|| out.find("<CommonPrefixes>"))
        .or_else(|| out.rfind("</ListBucketResult>"))
    else {
        return xml.to_owned();
    };
    let before = entries.len();
    // New keys (absent before their write) are not visible yet.
    entries.retain(|(key, _)| {
        !edits
            .iter()
            .any(|(k, previous, deleted)| k == key && previous.is_none() && !deleted)
    });
    let removed = before - entries.len();
    let added = merge(&mut entries, edits);
    let blocks: String = entries.into_iter().map(|(_, block)| block).collect();
    out.insert_str(insert_at, &blocks);
    adjust_key_count(&out, added as i64 - removed as i64)
}

/// Puts back the deleted keys whose last version is known; keeps key order. Returns how many.
fn merge(entries: &mut Vec<(String, String)>, edits: &[(String, Option<Arc<Version>>, bool)]) -> usize {
    let mut added = 0;
    for (key, previous, deleted) in edits {
        let (true, Some(version)) = (*deleted, previous) else {
            continue;
        };
        if entries.iter().any(|(k, _)| k == key) {
            continue;
        }
        let header = |name: &str| version.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
        let block = format!(
            "<Contents><Key>{}</Key><LastModified>{}</LastModified><ETag>{}</ETag><Size>{}</Size><StorageClass>STANDARD</StorageClass></Contents>",
            quick_xml::escape::escape(key.as_str()),
            httpdate::parse_http_date(header("last-modified"))
                .map(|t| humantime::format_rfc3339_millis(t).to_string())
                .unwrap_or_default(),
            quick_xml::escape::escape(header("etag")),
            version.body.len()
        );
        entries.push((key.clone(), block));
        added += 1;
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    added
}

fn adjust_key_count(xml: &str, delta: i64) -> String {
    let Some(count) = between(xml, "<KeyCount>", "</KeyCount>").and_then(|c| c.parse::<i64>().ok()) else {
        return xml.to_owned();
    };
    xml.replacen(
        &format!("<KeyCount>{count}</KeyCount>"),
        &format!("<KeyCount>{}</KeyCount>", (count + delta).max(0)),
        1,
    )
}

fn between(s: &str, open: &str, close: &str) -> Option<String> {
    let start = s.find(open)? + open.len();
    let end = s[start..].find(close)? + start;
    Some(s[start..end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::{Target, fate::ConnControl, with_request};

    fn stale() -> StaleReads {
        serde_yaml_ng::from_str("{for: 1h}").unwrap()
    }

    /// The response phase of a successful request of `operation` on `key`.
    fn answered(fault: &StaleReads, state: &FaultState, operation: Operation, key: &str) {
        let _ = answered_with(fault, state, operation, key, Bytes::new());
    }

    /// ... with `body`, returned as the fault passed it on.
    fn answered_with(fault: &StaleReads, state: &FaultState, operation: Operation, key: &str, body: Bytes) -> ProxyBody {
        answered_as(fault, state, operation, key, StatusCode::OK, body)
    }

    /// The response phase of a request of `operation` on `key` the upstream answered `status`.
    fn answered_as(
        fault: &StaleReads,
        state: &FaultState,
        operation: Operation,
        key: &str,
        status: StatusCode,
        body: Bytes,
    ) -> ProxyBody {
        let target = Target {
            operation,
            bucket: Some("b".into()),
            key: Some(key.into()),
        };
        let conn = Arc::new(ConnControl::new(Default::default()));
        let ctx = BodyCtx {
            target: &target,
            draw: crate::draw::Draw::new(1, 0, 0),
            state: Some(state),
            conn: &conn,
        };
        let (mut parts, _) = Response::new(()).into_parts();
        parts.status = status;
        fault.on_response(&mut parts, full(body), &ctx)
    }

    /// The fault held every GET body it saw, with no bound on bytes (10,000 keys × 1 MiB by
    /// default) nor on changes (a long window and many distinct keys written).
    #[tokio::test]
    async fn what_it_remembers_stays_within_its_bounds() {
        let fault: StaleReads = serde_yaml_ng::from_str("{for: 1h, max_keys: 10, max_memory: 10KiB}").unwrap();
        let state = fault.new_state().unwrap();
        let memory = state_of::<Memory>(Some(&state)).unwrap();
        let mut in_flight = Vec::new();
        for i in 0..50 {
            let key = format!("k{i}");
            let body = answered_with(&fault, &state, Operation::GetObject, &key, Bytes::from(vec![1u8; 3000]));
            if i % 10 == 0 {
                in_flight.push(body); // still being recorded
            } else {
                let got = http_body_util::BodyExt::collect(body).await.unwrap().to_bytes();
                assert_eq!(got.len(), 3000, "a body is passed on whole, recorded or not");
            }
            assert!(memory.held.load(Ordering::Acquire) <= 10 << 10, "over max_memory after {i}");
        }
        drop(in_flight);
        for key in ["r1", "r2", "r3"] {
            let body = answered_with(&fault, &state, Operation::GetObject, key, Bytes::from(vec![2u8; 3000]));
            let _ = http_body_util::BodyExt::collect(body).await.unwrap();
        }
        assert!(memory.held.load(Ordering::Acquire) <= 10 << 10);
        let cache = memory.lock().cache.len();
        assert_eq!(cache, 3, "once the recordings in flight are gone, new versions are kept");
        for i in 0..1000 {
            answered(&fault, &state, Operation::PutObject, &format!("w{i}"));
        }
        let changes = memory.lock().changes.len();
        assert!(changes <= 40, "{changes} changes remembered, bound 4 × max_keys");
        assert!(changes >= 20, "{changes}: the newest are kept");
        assert!(memory.lock().changes.contains_key(&("b".into(), "w999".into())));
    }

    /// A 404 a GET through the proxy got (the key does not exist yet).
    fn answered_404(fault: &StaleReads, state: &FaultState, key: &str) {
        let _ = answered_as(fault, state, Operation::GetObject, key, StatusCode::NOT_FOUND, Bytes::new());
    }

    fn read(fault: &StaleReads, state: &FaultState, key: &str) -> RequestAction {
        with_request("GET", &format!("/b/{key}"), |request| {
            fault.on_request(&FaultCtx {
                request,
                draw: crate::draw::Draw::new(1, 0, 0),
                state: Some(state),
            })
        })
    }

    #[test]
    fn watches_writes_then_fires_on_reads_of_a_key_known_absent_before() {
        let fault = stale();
        let state = fault.new_state().unwrap();
        let applies = |method: &str, target: &str| with_request(method, target, |r| fault.applies(r, Some(&state)));
        assert_eq!(applies("GET", "/b/new"), Applies::Watch, "nothing changed yet: watch (to cache it)");
        answered_404(&fault, &state, "new");
        assert_eq!(applies("PUT", "/b/new"), Applies::Watch);
        assert_eq!(applies("POST", "/b?delete"), Applies::Skip, "not a write it tracks");
        answered(&fault, &state, Operation::PutObject, "new");
        assert_eq!(applies("GET", "/b/new"), Applies::Fire, "a read within the window is stale");
        assert_eq!(applies("GET", "/b/other"), Applies::Watch);
        let RequestAction::End(Ending::Respond(response)) = read(&fault, &state, "new") else {
            panic!("a stale read is answered in S3's place");
        };
        assert_eq!(response.status(), 404, "a GET saw it absent before its write: NoSuchKey, as S3 did");
    }

    /// As a new user tried it: PUT v1, PUT v2, GET within the window. s3chaos never saw v1,
    /// and answered NoSuchKey, which S3 never did for a key that existed. Now the read is not
    /// staled: the current version is served.
    #[tokio::test]
    async fn an_overwrite_whose_previous_version_is_unknown_is_not_staled() {
        let fault = stale();
        let state = fault.new_state().unwrap();
        let applies = |method: &str, target: &str| with_request(method, target, |r| fault.applies(r, Some(&state)));
        answered(&fault, &state, Operation::PutObject, "k");
        answered(&fault, &state, Operation::PutObject, "k");
        assert_eq!(applies("GET", "/b/k"), Applies::Watch, "not fired: passes to the upstream");
        assert!(matches!(read(&fault, &state, "k"), RequestAction::Continue));
        // A key read (v0), then written: stale reads serve v0; written again within the
        // window, still v0 (readers may still see it). Written again after the window, the
        // previous state is the unseen v1: not staled (v0 would be older than any real lag).
        let short: StaleReads = serde_yaml_ng::from_str("{for: 50ms}").unwrap();
        let state = short.new_state().unwrap();
        let applies = |target: &str| with_request("GET", target, |r| short.applies(r, Some(&state)));
        let got = answered_with(&short, &state, Operation::GetObject, "seen", Bytes::from_static(b"v0"));
        let _ = got.collect().await; // read to its end: recorded
        answered(&short, &state, Operation::PutObject, "seen");
        assert_eq!(applies("/b/seen"), Applies::Fire, "v0 is known: stale");
        answered(&short, &state, Operation::PutObject, "seen");
        assert_eq!(applies("/b/seen"), Applies::Fire, "within the window: still v0");
        tokio::time::sleep(Duration::from_millis(60)).await;
        answered(&short, &state, Operation::PutObject, "seen");
        assert_eq!(applies("/b/seen"), Applies::Watch, "v1 was never seen: not staled");
    }

    #[test]
    fn a_listing_omits_a_key_written_within_the_window() {
        let xml = "<ListBucketResult><KeyCount>2</KeyCount><Contents><Key>a</Key></Contents><Contents><Key>new</Key></Contents></ListBucketResult>";
        let edited = edit_listing(xml, &[("new".into(), None, false)]);
        assert!(!edited.contains("<Key>new</Key>"), "{edited}");
        assert!(edited.contains("<Key>a</Key>") && edited.contains("<KeyCount>1</KeyCount>"), "{edited}");
    }
}
