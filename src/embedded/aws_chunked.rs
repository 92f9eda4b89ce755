//! Decoding `aws-chunked` request bodies (`STREAMING-*` payloads) without checking their
//! signatures: in any-credentials mode the store cannot know the secret the client signed
//! with, so it keeps the framing's meaning (the payload bytes, then the trailers) and drops
//! the proofs. The trailers go to a [`TrailerSlot`] the store reads once the body is done.
//!
//! Frame grammar (SigV4 streaming, signed or not):
//! `<hex-size>[;chunk-signature=<sig>]\r\n<data>\r\n` ... `0[;chunk-signature=<sig>]\r\n`
//! then trailer lines `name:value\r\n` and an empty line (some clients end at EOF instead).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::upload::UploadError;

/// Longest size or trailer line accepted (real ones are under 100 bytes).
const MAX_LINE: usize = 4096;
/// Most trailer bytes accepted in all.
const MAX_TRAILERS: usize = 16 * 1024;

/// Where the trailers of a decoded body land once its last frame is read.
#[derive(Clone, Default, Debug)]
pub struct TrailerSlot(Arc<Mutex<Option<HeaderMap>>>);

impl TrailerSlot {
    pub fn take(&self) -> Option<HeaderMap> {
        self.0.lock().ok().and_then(|mut t| t.take())
    }

    fn set(&self, trailers: HeaderMap) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(trailers);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a `<hex-size>[;ext]` line.
    Size,
    /// Inside a chunk's data.
    Data { remaining: u64 },
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// Reading trailer lines after the zero chunk.
    Trailers,
    /// The empty line after the trailers was read.
    Done,
}

/// The framing parser: bytes in, payload slices out (no copy of payload bytes).
#[derive(Debug)]
pub struct Deframer {
    state: State,
    line: Vec<u8>,
    trailers: HeaderMap,
    trailer_bytes: usize,
    decoded: u64,
}

impl Default for Deframer {
    fn default() -> Self {
        Deframer {
            state: State::Size,
            line: Vec::new(),
            trailers: HeaderMap::new(),
            trailer_bytes: 0,
            decoded: 0,
        }
    }
}

fn framing(why: impl Into<String>) -> UploadError {
    UploadError::Framing(why.into())
}

impl Deframer {
    /// Payload bytes decoded so far.
    pub fn decoded(&self) -> u64 {
        self.decoded
    }

    /// Feeds `input`; payload slices are appended to `out`.
    pub fn push(&mut self, mut input: Bytes, out: &mut VecDeque<Bytes>) -> Result<(), UploadError> {
        while !input.is_empty() {
            match self.state {
                State::Data { remaining } => {
                    let n = (input.len() as u64).min(remaining) as usize;
                    out.push_back(input.split_to(n));
                    self.decoded += n as u64;
                    self.state = if remaining == n as u64 {
                        State::DataEnd
                    } else {
                        State::Data {
                            remaining: remaining - n as u64,
                        }
                    };
                }
                State::Done => {
                    if input.iter().any(|b| !b.is_ascii_whitespace()) {
                        return Err(framing("bytes after the last aws-chunked frame"));
                    }
                    return Ok(());
                }
                State::Size | State::DataEnd | State::Trailers => {
                    let Some(line) = self.take_line(&mut input)? else {
                        return Ok(());
                    };
                    self.on_line(&line)?;
                }
            }
        }
        Ok(())
    }

    /// Moves bytes up to and including a CRLF into a finished line, if one is complete.
    fn take_line(&mut self, input: &mut Bytes) -> Result<Option<Vec<u8>>, UploadError> {
        match input.iter().position(|&b| b == b'\n') {
            Some(i) => {
                self.line.extend_from_slice(&input.split_to(i + 1));
                let mut line = std::mem::take(&mut self.line);
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                Ok(Some(line))
            }
            None => {
                self.line.extend_from_slice(input);
                input.clear();
                if self.line.len() > MAX_LINE {
                    return Err(framing("an aws-chunked frame line is too long"));
                }
                Ok(None)
            }
        }
    }

    fn on_line(&mut self, line: &[u8]) -> Result<(), UploadError> {
        match self.state {
            State::DataEnd => {
                if !line.is_empty() {
                    return Err(framing("chunk data longer than its declared size"));
                }
                self.state = State::Size;
            }
            State::Size => {
                let text = std::str::from_utf8(line).map_err(|_| framing("a chunk size line is not text"))?;
                let hex = text.split(';').next().unwrap_or("").trim();
                let size = u64::from_str_radix(hex, 16).map_err(|_| framing(format!("bad chunk size {hex:?}")))?;
                self.state = if size == 0 {
                    State::Trailers
                } else {
                    State::Data { remaining: size }
                };
            }
            State::Trailers => {
                if line.is_empty() {
                    self.state = State::Done;
                    return Ok(());
                }
                self.trailer_bytes += line.len();
                if self.trailer_bytes > MAX_TRAILERS {
                    return Err(framing("aws-chunked trailers too long"));
                }
                let text = std::str::from_utf8(line).map_err(|_| framing("a trailer line is not text"))?;
                let (name, value) = text
                    .split_once(':')
                    .ok_or_else(|| framing("a trailer line has no ':'"))?;
                let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| framing("bad trailer name"))?;
                let value = HeaderValue::from_str(value.trim()).map_err(|_| framing("bad trailer value"))?;
                self.trailers.append(name, value);
            }
            State::Data { .. } | State::Done => unreachable!("lines are only read between frames"),
        }
        Ok(())
    }

    /// The body ended: the trailers, or why the framing is incomplete.
    pub fn finish(mut self) -> Result<HeaderMap, UploadError> {
        if self.state == State::Trailers && !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.on_line(&line)?;
        }
        match self.state {
            State::Trailers | State::Done => Ok(self.trailers),
            _ => Err(UploadError::Incomplete),
        }
    }
}

/// A body stream decoded from `aws-chunked`.
pub struct Dechunked<S> {
    inner: S,
    parser: Option<Deframer>,
    ready: VecDeque<Bytes>,
    slot: TrailerSlot,
    expected: Option<u64>,
}

impl<S> Dechunked<S> {
    /// `expected` is `x-amz-decoded-content-length`: a body decoding to another length fails.
    pub fn new(inner: S, expected: Option<u64>, slot: TrailerSlot) -> Self {
        Dechunked {
            inner,
            parser: Some(Deframer::default()),
            ready: VecDeque::new(),
            slot,
            expected,
        }
    }
}

impl<S, E> Stream for Dechunked<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<s3s::StdError>,
{
    type Item = Result<Bytes, s3s::StdError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(bytes) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(bytes)));
            }
            let Some(parser) = this.parser.as_mut() else {
                return Poll::Ready(None);
            };
            match std::task::ready!(Pin::new(&mut this.inner).poll_next(cx)) {
                Some(Ok(bytes)) => {
                    if let Err(e) = parser.push(bytes, &mut this.ready) {
                        this.parser = None;
                        return Poll::Ready(Some(Err(e.into())));
                    }
                    if this.expected.is_some_and(|n| parser.decoded() > n) {
                        this.parser = None;
                        return Poll::Ready(Some(Err(UploadError::TooLong.into())));
                    }
                }
                Some(Err(e)) => {
                    this.parser = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
                None => {
                    let parser = this.parser.take().expect("checked above");
                    let decoded = parser.decoded();
                    match parser.finish() {
                        Ok(_) if this.expected.is_some_and(|n| decoded < n) => {
                            return Poll::Ready(Some(Err(UploadError::Incomplete.into())));
                        }
                        Ok(trailers) => this.slot.set(trailers),
                        Err(e) => return Poll::Ready(Some(Err(e.into()))),
                    }
                }
            }
        }
    }
}

impl<S, E> s3s::stream::ByteStream for Dechunked<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<s3s::StdError>,
{
    fn remaining_length(&self) -> s3s::stream::RemainingLength {
        match (self.expected, &self.parser) {
            (Some(n), Some(p)) => {
                let buffered: u64 = self.ready.iter().map(|b| b.len() as u64).sum();
                s3s::stream::RemainingLength::new_exact((n.saturating_sub(p.decoded()) + buffered) as usize)
            }
            _ => s3s::stream::RemainingLength::unknown(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(framed: &[u8], piece: usize) -> Result<(Vec<u8>, HeaderMap), UploadError> {
        let mut parser = Deframer::default();
        let mut out = VecDeque::new();
        for p in framed.chunks(piece.max(1)) {
            parser.push(Bytes::copy_from_slice(p), &mut out)?;
        }
        let trailers = parser.finish()?;
        Ok((out.into_iter().flat_map(|b| b.to_vec()).collect(), trailers))
    }

    #[test]
    fn signed_chunks_decode_to_the_payload_whatever_the_read_sizes() {
        let sig = "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648";
        let mut framed = Vec::new();
        framed.extend_from_slice(format!("5;chunk-signature={sig}\r\nhello\r\n").as_bytes());
        framed.extend_from_slice(format!("7;chunk-signature={sig}\r\n, world\r\n").as_bytes());
        framed.extend_from_slice(format!("0;chunk-signature={sig}\r\n\r\n").as_bytes());
        for piece in [1, 2, 3, 7, 64, 1000] {
            let (payload, trailers) = decode_in_pieces(&framed, piece).unwrap();
            assert_eq!(payload, b"hello, world", "piece size {piece}");
            assert!(trailers.is_empty());
        }
    }

    #[test]
    fn unsigned_trailer_variant_yields_its_checksum_trailer() {
        let framed = b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\n\r\n";
        let (payload, trailers) = decode_in_pieces(framed, 4).unwrap();
        assert_eq!(payload, b"abc");
        assert_eq!(trailers["x-amz-checksum-crc32"], "NSRBwg==");
        // Some clients end at EOF after the trailer line.
        let (_, trailers) = decode_in_pieces(b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\n", 5).unwrap();
        assert_eq!(trailers["x-amz-checksum-crc32"], "NSRBwg==");
    }

    #[test]
    fn cut_or_malformed_framing_is_refused() {
        assert!(matches!(decode_in_pieces(b"5\r\nhel", 2), Err(UploadError::Incomplete)));
        assert!(matches!(
            decode_in_pieces(b"3\r\nabcdef\r\n0\r\n\r\n", 3),
            Err(UploadError::Framing(_))
        ));
        assert!(matches!(
            decode_in_pieces(b"zz\r\nabc\r\n", 3),
            Err(UploadError::Framing(_))
        ));
        assert!(matches!(
            decode_in_pieces(&[b'1'; 5000], 100),
            Err(UploadError::Framing(_))
        ));
    }
}
