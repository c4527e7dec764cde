//! Watches HTTP/1 request heads on the raw connection for what hyper hides from the service.
//!
//! hyper drops a `Content-Length` sent alongside `Transfer-Encoding`, and keeps one of several
//! equal `Content-Length` lines, before llmgate sees the request; RFC 9112's "reject with 400
//! and close" cannot be decided from the parsed headers. `Watched` sees the bytes hyper reads,
//! in order, follows each request's framing (head, then a sized or chunked body) and queues
//! one `HeadFraming` per head, which the connection's service attaches to the matching request.
//! It copies only partial head and chunk-size lines, never body bytes. Whatever it cannot
//! follow (HTTP/2, an upgraded stream, a malformed head hyper will refuse anyway) turns it off
//! for the rest of the connection, so it never queues a verdict out of order.

use bytes::Bytes;
use memchr::memchr;
use pin_project_lite::pin_project;
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How one request head declared its body, counted line by line as it was sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeadFraming {
    pub content_lengths: u8,
    pub transfer_encoding: bool,
}

impl HeadFraming {
    /// Why RFC 9112 §6.3 makes this head's framing ambiguous, if it does.
    pub fn problem(&self) -> Option<&'static str> {
        if self.transfer_encoding && self.content_lengths > 0 {
            Some("the request has both Content-Length and Transfer-Encoding")
        } else if self.content_lengths > 1 {
            Some("the request has more than one Content-Length")
        } else {
            None
        }
    }
}

/// The verdicts of one connection, oldest first; requests take them in the order they arrive.
#[derive(Clone, Default)]
pub struct Heads(Arc<Mutex<VecDeque<HeadFraming>>>);

impl Heads {
    /// Attaches the next head's verdict to the request hyper parsed from that head.
    pub fn attach<B>(&self, req: &mut http::Request<B>) {
        if req.version() != http::Version::HTTP_2 {
            let next = self.0.lock().ok().and_then(|mut q| q.pop_front());
            if let Some(f) = next {
                req.extensions_mut().insert(f);
            }
        }
    }

    fn push(&self, f: HeadFraming) {
        if let Ok(mut q) = self.0.lock() {
            q.push_back(f);
        }
    }
}

pin_project! {
    /// A connection whose inbound bytes are watched for request framing, and whose outbound
    /// bytes get a JSON body where hyper answers an unparsable request itself
    /// (`bare_errors.rs`).
    pub struct Watched<T> {
        #[pin]
        io: T,
        scan: Scanner,
        // The part of a swapped-in error answer not written yet.
        swap: Option<Bytes>,
    }
}

impl<T> Watched<T> {
    /// `head_limit` bounds the bytes of one head it follows; hyper refuses larger ones.
    pub fn new(io: T, heads: Heads, head_limit: usize) -> Self {
        Self {
            io,
            scan: Scanner {
                state: State::Head,
                line: Vec::new(),
                head: HeadFraming::default(),
                head_bytes: 0,
                request_line: false,
                content_length: None,
                head_limit,
                heads,
            },
            swap: None,
        }
    }
}

/// The JSON answer to write instead of `b`, when `b` is hyper's own bare error answer.
fn swap_for(b: &[u8]) -> Option<Bytes> {
    if b.starts_with(b"HTTP/1.1 4") || b.starts_with(b"HTTP/1.1 5") {
        crate::bare_errors::replacement(b)
    } else {
        None
    }
}

/// Writes the swapped-in answer whole, then reports hyper's `reported` bytes as written.
fn write_swap<T: AsyncWrite>(
    mut io: Pin<&mut T>,
    swap: &mut Option<Bytes>,
    cx: &mut Context<'_>,
    reported: usize,
) -> Poll<io::Result<usize>> {
    while let Some(rest) = swap.as_mut().filter(|r| !r.is_empty()) {
        let n = ready!(io.as_mut().poll_write(cx, rest))?;
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        bytes::Buf::advance(rest, n);
    }
    Poll::Ready(Ok(reported))
}

impl<T: AsyncRead> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        ready!(this.io.poll_read(cx, buf))?;
        this.scan.feed(&buf.filled()[before..]);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite> AsyncWrite for Watched<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.project();
        if this.swap.is_none() {
            *this.swap = swap_for(b);
        }
        if this.swap.is_some() {
            return write_swap(this.io, this.swap, cx, b.len());
        }
        this.io.poll_write(cx, b)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        if this.swap.is_none() {
            if let [only] = bufs {
                *this.swap = swap_for(only);
            }
        }
        if this.swap.is_some() {
            let len = bufs.iter().map(|b| b.len()).sum();
            return write_swap(this.io, this.swap, cx, len);
        }
        this.io.poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Head,
    Sized(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkEnd,
    Trailers,
    Off,
}

struct Scanner {
    state: State,
    /// The start of a line split across reads.
    line: Vec<u8>,
    head: HeadFraming,
    head_bytes: usize,
    request_line: bool,
    content_length: Option<u64>,
    head_limit: usize,
    heads: Heads,
}

impl Scanner {
    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match self.state {
                State::Off => return,
                State::Sized(n) | State::ChunkData(n) => {
                    let k = n.min(data.len() as u64);
                    data = &data[k as usize..];
                    self.state = match (self.state, n - k) {
                        (State::Sized(_), 0) => State::Head,
                        (State::Sized(_), left) => State::Sized(left),
                        (_, 0) => State::ChunkEnd,
                        (_, left) => State::ChunkData(left),
                    };
                }
                _ => {
                    let Some(end) = memchr(b'\n', data) else {
                        self.extend_line(data);
                        return;
                    };
                    let (part, rest) = data.split_at(end + 1);
                    data = rest;
                    if self.line.is_empty() {
                        self.on_line(part);
                    } else {
                        self.extend_line(part);
                        let line = std::mem::take(&mut self.line);
                        self.on_line(&line);
                        self.line = line;
                        self.line.clear();
                    }
                }
            }
        }
    }

    fn extend_line(&mut self, part: &[u8]) {
        if self.line.len() + part.len() > self.head_limit {
            self.state = State::Off;
        } else {
            self.line.extend_from_slice(part);
        }
    }

    /// One whole line, with its line ending.
    fn on_line(&mut self, line: &[u8]) {
        let text = trim_eol(line);
        self.state = match self.state {
            State::Head => return self.on_head_line(line.len(), text),
            State::ChunkSize => match chunk_size(text) {
                Some(0) => State::Trailers,
                Some(n) => State::ChunkData(n),
                None => State::Off,
            },
            State::ChunkEnd if text.is_empty() => State::ChunkSize,
            State::Trailers if text.is_empty() => State::Head,
            State::Trailers => State::Trailers,
            _ => State::Off,
        };
    }

    fn on_head_line(&mut self, len: usize, text: &[u8]) {
        self.head_bytes += len;
        if self.head_bytes > self.head_limit {
            self.state = State::Off;
            return;
        }
        if !self.request_line {
            // Empty lines before a request line are allowed (RFC 9112 §2.2).
            if text.is_empty() {
                self.head_bytes = 0;
            } else if text.ends_with(b" HTTP/1.1") || text.ends_with(b" HTTP/1.0") {
                self.request_line = true;
            } else {
                self.state = State::Off;
            }
            return;
        }
        if text.is_empty() {
            return self.end_head();
        }
        let Some(colon) = memchr(b':', text) else {
            self.state = State::Off;
            return;
        };
        let (name, value) = (&text[..colon], trim(&text[colon + 1..]));
        if name.eq_ignore_ascii_case(b"content-length") {
            self.head.content_lengths = self.head.content_lengths.saturating_add(1);
            if self.content_length.is_none() {
                self.content_length = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.head.transfer_encoding = true;
        } else if name.first().is_some_and(|b| b.is_ascii_whitespace()) {
            // obs-fold or a space before the colon: hyper refuses the request.
            self.state = State::Off;
        }
    }

    fn end_head(&mut self) {
        let head = std::mem::take(&mut self.head);
        self.heads.push(head);
        self.state = if head.transfer_encoding {
            State::ChunkSize
        } else {
            match (head.content_lengths, self.content_length) {
                (0, _) | (_, Some(0)) => State::Head,
                (_, Some(n)) => State::Sized(n),
                (_, None) => State::Off,
            }
        };
        self.head_bytes = 0;
        self.request_line = false;
        self.content_length = None;
    }
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| *b != b' ' && *b != b'\t');
    let end = v.iter().rposition(|b| *b != b' ' && *b != b'\t');
    match (start, end) {
        (Some(s), Some(e)) => &v[s..=e],
        _ => &[],
    }
}

/// The size of a chunk-size line, extensions ignored.
fn chunk_size(text: &[u8]) -> Option<u64> {
    let end = text
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(text.len());
    if end == 0 || end > 16 {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(&text[..end]).ok()?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&[u8]]) -> (Vec<HeadFraming>, State) {
        let heads = Heads::default();
        let mut w = Watched::new((), heads.clone(), 1024);
        for c in chunks {
            w.scan.feed(c);
        }
        let seen = heads.0.lock().unwrap().iter().copied().collect();
        (seen, w.scan.state)
    }

    const OK: HeadFraming = HeadFraming {
        content_lengths: 1,
        transfer_encoding: false,
    };

    #[test]
    fn follows_sized_and_chunked_bodies_across_any_split() {
        let stream: &[u8] = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
            POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nGET /\r\n0\r\nT: 1\r\n\r\n\
            POST /c HTTP/1.1\r\ncontent-length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
            GET /d HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n";
        let want = vec![
            OK,
            HeadFraming {
                content_lengths: 0,
                transfer_encoding: true,
            },
            HeadFraming {
                content_lengths: 1,
                transfer_encoding: true,
            },
            HeadFraming {
                content_lengths: 2,
                transfer_encoding: false,
            },
        ];
        for split in 0..stream.len() {
            let (seen, state) = scan(&[&stream[..split], &stream[split..]]);
            assert_eq!(seen, want, "split at {split}");
            assert_eq!(state, State::Head);
        }
        let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(scan(&bytewise).0, want);
        assert_eq!(want[0].problem(), None);
        assert!(want[2].problem().unwrap().contains("both"));
        assert!(want[3].problem().unwrap().contains("more than one"));
    }

    #[test]
    fn stops_on_what_it_cannot_follow() {
        assert_eq!(scan(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]).1, State::Off);
        assert_eq!(
            scan(&[b"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n"]).1,
            State::Off
        );
        assert_eq!(scan(&[&[b'a'; 2000]]).1, State::Off);
        let bad_chunk = scan(&[b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"]);
        assert_eq!(bad_chunk.1, State::Off);
        assert_eq!(bad_chunk.0.len(), 1);
    }
}
