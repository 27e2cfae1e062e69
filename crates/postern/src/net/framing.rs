//! A watch on HTTP/1.1 request framing as the bytes arrive.
//!
//! When a request has both Content-Length and Transfer-Encoding, hyper drops
//! the Content-Length, reads the body as chunked and closes the connection
//! afterwards (RFC 9112 section 6.1 allows that). postern instead rejects
//! such a request with 400, as a front proxy should. hyper removes the
//! evidence before the request reaches a service, so this wrapper reads the
//! request heads itself, with httparse (hyper's own parser), as the bytes go
//! by, and raises a flag that the request pipeline checks.
//!
//! The watch follows message boundaries (Content-Length and chunked bodies)
//! across keep-alive requests. A request that requests an upgrade is treated
//! like any other, because the upgrade may be refused and the connection go
//! on as HTTP/1.1. Bytes that do not parse as a request head (HTTP/2, the
//! frames after an accepted upgrade) end the watch for that connection, and
//! hyper still parses every request and rejects what is malformed.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// Cap on the headers httparse reads from one head.
const MAX_HEADERS: usize = 128;

/// An I/O stream whose request heads are checked for ambiguous framing.
pub struct FramingWatch<S> {
    inner: S,
    state: State,
    /// Bytes of the head or chunk-size line read so far.
    pending: Vec<u8>,
    max_head_bytes: usize,
    /// Request heads seen so far.
    heads: u64,
    /// The 1-based number of the first ambiguous request, or 0.
    ambiguous: Arc<AtomicU64>,
    /// Bytes handed back with [`FramingWatch::unread`], read again before
    /// the stream and not watched twice.
    replay: bytes::Bytes,
    /// Whether the bytes so far end exactly between two requests.
    at_boundary: Arc<AtomicBool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Body(u64),
    ChunkSize,
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd(u8),
    Trailers,
    /// The watch has ended for this connection.
    Off,
}

impl<S> FramingWatch<S> {
    /// Wraps `inner`. When the connection's n-th request head (counting
    /// from 1) has both Content-Length and Transfer-Encoding, `ambiguous` is
    /// set to n. HTTP/1.1 serves requests in order, so the pipeline can tell
    /// which request that was by counting its own.
    pub fn new(inner: S, max_head_bytes: usize, ambiguous: Arc<AtomicU64>) -> Self {
        FramingWatch {
            inner,
            state: State::Head,
            pending: Vec::new(),
            max_head_bytes,
            heads: 0,
            ambiguous,
            replay: bytes::Bytes::new(),
            at_boundary: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Returns a flag that is true while the bytes read so far end exactly
    /// between two requests: no request head, body or chunk is half read.
    /// It turns false for good once the watch ends (HTTP/2, an upgrade).
    pub fn boundary(&self) -> Arc<AtomicBool> {
        self.at_boundary.clone()
    }

    /// Hands back bytes that were read through the watch but not used, so
    /// that the next reads return them first.
    pub fn unread(&mut self, bytes: bytes::Bytes) {
        debug_assert!(self.replay.is_empty(), "unread twice without a read");
        self.replay = bytes;
    }

    /// Checks whether bytes handed back with [`FramingWatch::unread`] are
    /// waiting to be read.
    pub fn has_unread(&self) -> bool {
        !self.replay.is_empty()
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Feeds bytes read from the client through the state machine.
    fn observe(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && self.state != State::Off {
            let used = match self.state {
                State::Head => self.observe_head(bytes),
                State::Body(left) => {
                    let n = left.min(bytes.len() as u64);
                    self.state = if n == left {
                        State::Head
                    } else {
                        State::Body(left - n)
                    };
                    n as usize
                }
                State::ChunkSize => self.observe_line(bytes, Self::chunk_size_line),
                State::ChunkData(left) => {
                    let n = left.min(bytes.len() as u64);
                    self.state = if n == left {
                        State::ChunkEnd(2)
                    } else {
                        State::ChunkData(left - n)
                    };
                    n as usize
                }
                State::ChunkEnd(left) => {
                    let n = (left as usize).min(bytes.len());
                    self.state = if n == left as usize {
                        State::ChunkSize
                    } else {
                        State::ChunkEnd(left - n as u8)
                    };
                    n
                }
                State::Trailers => self.observe_line(bytes, Self::trailer_line),
                State::Off => bytes.len(),
            };
            bytes = &bytes[used..];
        }
    }

    /// Collects a request head and decides how its body is framed. Returns
    /// how many bytes of `bytes` belong to the head.
    fn observe_head(&mut self, bytes: &[u8]) -> usize {
        // A head usually arrives in one read: parse it in place, and copy
        // bytes aside only when it is split across reads.
        let before = self.pending.len();
        let parsed = if before == 0 {
            parse_head(bytes)
        } else {
            self.pending.extend_from_slice(bytes);
            parse_head(&self.pending)
        };
        let (head_len, framing) = match parsed {
            Head::Complete(len, framing) => (len, framing),
            // hyper rejects a head longer than `max_head_bytes` itself, so
            // the watch gives up only well past that point.
            Head::Partial if before + bytes.len() <= 2 * self.max_head_bytes => {
                if before == 0 {
                    self.pending.extend_from_slice(bytes);
                }
                return bytes.len();
            }
            // HTTP/2's preface, or bytes that are not HTTP/1.1: an accepted
            // upgrade (a WebSocket's frames) or a request hyper rejects.
            Head::Partial | Head::Invalid => {
                self.stop();
                return bytes.len();
            }
        };

        // Free the copy: an idle keep-alive connection keeps nothing.
        self.pending = Vec::new();
        self.heads += 1;
        self.state = match framing {
            (true, Some(_)) => {
                self.ambiguous.store(self.heads, Ordering::SeqCst);
                State::Off
            }
            (true, None) => State::ChunkSize,
            (false, Some(0)) | (false, None) => State::Head,
            (false, Some(u64::MAX)) => State::Off,
            (false, Some(n)) => State::Body(n),
        };
        head_len - before
    }

    /// Collects one CRLF-terminated line and hands it to `on_line`. Returns
    /// how many bytes of `bytes` were used.
    fn observe_line(&mut self, bytes: &[u8], on_line: fn(&mut Self, &[u8])) -> usize {
        let end = bytes.iter().position(|&b| b == b'\n');
        let used = end.map(|i| i + 1).unwrap_or(bytes.len());
        self.pending.extend_from_slice(&bytes[..used]);
        if self.pending.len() > self.max_head_bytes {
            self.stop();
            return bytes.len();
        }
        if end.is_some() {
            let line = std::mem::take(&mut self.pending);
            on_line(self, &line);
        }
        used
    }

    fn chunk_size_line(&mut self, line: &[u8]) {
        match chunk_size(line) {
            Some(0) => self.state = State::Trailers,
            Some(size) => self.state = State::ChunkData(size),
            None => self.stop(),
        }
    }

    fn trailer_line(&mut self, line: &[u8]) {
        if line == b"\r\n" || line == b"\n" {
            self.state = State::Head;
        }
    }

    fn stop(&mut self) {
        self.state = State::Off;
        self.pending = Vec::new();
    }
}

/// A request head parse: its length and framing (chunked, Content-Length,
/// with `u64::MAX` for an unreadable length), or why there is none yet.
enum Head {
    Complete(usize, (bool, Option<u64>)),
    Partial,
    Invalid,
}

fn parse_head(buf: &[u8]) -> Head {
    // Uninitialized slots, as hyper uses them: filling 128 empty headers
    // first would write 4 KiB on every request.
    let mut headers =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let len = match request.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(_) => return Head::Invalid,
    };
    let mut content_length = None;
    let mut chunked = false;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            content_length = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .or(Some(u64::MAX));
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = true;
        }
    }
    Head::Complete(len, (chunked, content_length))
}

/// Reads the size at the start of a chunk-size line. Written here rather
/// than taken from httparse, whose `parse_chunk_size` rejects more than 16
/// hex digits while hyper accepts any number of leading zeros: the watch must
/// follow every body hyper follows, or a client could end it at will.
/// Whatever follows the digits (extensions, whitespace) is skipped.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return None;
    }
    line[..digits].iter().try_fold(0u64, |size, &b| {
        let digit = (b as char).to_digit(16)? as u64;
        size.checked_mul(16)?.checked_add(digit)
    })
}

impl<S: AsyncRead + Unpin> AsyncRead for FramingWatch<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.replay.is_empty() {
            let n = this.replay.len().min(buf.remaining());
            buf.put_slice(&this.replay.split_to(n));
            return Poll::Ready(Ok(()));
        }
        let start = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.state != State::Off {
            this.observe(&buf.filled()[start..]);
            let boundary = this.state == State::Head && this.pending.is_empty();
            this.at_boundary.store(boundary, Ordering::Relaxed);
        }
        polled
    }
}

super::delegate_async_write!(FramingWatch);

#[cfg(test)]
mod tests {
    use super::*;

    /// Returns the number of the ambiguous request (0 for none) and the
    /// final state.
    fn watch_all(chunks: &[&[u8]]) -> (u64, State) {
        let flag = Arc::new(AtomicU64::new(0));
        let mut watch = FramingWatch::new((), 8192, flag.clone());
        for chunk in chunks {
            watch.observe(chunk);
        }
        (flag.load(Ordering::SeqCst), watch.state)
    }

    #[test]
    fn flags_length_with_chunked() {
        let request = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(watch_all(&[request]).0, 1);
        let reversed = b"POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n";
        assert_eq!(watch_all(&[reversed]).0, 1);
    }

    #[test]
    fn follows_keep_alive_requests() {
        let first = b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
        let second = b"POST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nTrailer: t\r\n\r\n";
        let third = b"GET /c HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(watch_all(&[first, second]), (0, State::Head));
        assert_eq!(watch_all(&[first, second, third]).0, 3);
    }

    #[test]
    fn head_like_body_not_parsed() {
        let body = b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let head = format!(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        assert_eq!(watch_all(&[head.as_bytes(), body]), (0, State::Head));
    }

    #[test]
    fn byte_by_byte_matches_whole() {
        let request = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n";
        let bytes: Vec<&[u8]> = request.chunks(1).collect();
        assert_eq!(watch_all(&bytes).0, 2);
    }

    #[test]
    fn long_chunk_sizes_followed() {
        let chunked = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000000005\r\nhello\r\n0\r\n\r\n";
        let smuggle = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(watch_all(&[chunked, smuggle]).0, 2);
        assert_eq!(chunk_size(b"1f;name=value\r\n"), Some(31));
        assert_eq!(chunk_size(b"10000000000000000\r\n"), None);
        assert_eq!(chunk_size(b"\r\n"), None);
    }

    #[test]
    fn stops_on_http2_preface() {
        assert_eq!(
            watch_all(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]).1,
            State::Off
        );
    }

    #[test]
    fn watches_on_after_refused_upgrade() {
        let upgrade =
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
        let connect = b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n";
        let smuggle = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(watch_all(&[upgrade, connect, smuggle]).0, 3);
    }

    #[test]
    fn stops_on_websocket_frames() {
        let upgrade =
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
        // A masked text frame, as a client sends after the 101.
        let frame = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(watch_all(&[upgrade, &frame]), (0, State::Off));
    }
}
