//! The client side of SSE: splitting streams into events, per-chunk latency from the mock's stamps.

use crate::http::{bad, Http};
use crate::util::find;
use std::io;

/// Sends a streaming request and feeds the whole answer to `rd`. Returns
/// whether the connection must be closed.
pub async fn read_sse(c: &mut Http, req: &[u8], rd: &mut SseReader) -> io::Result<bool> {
    let h = c.request(req).await?;
    if h.status != 200 {
        return Err(bad(format!("status {}", h.status)));
    }
    c.read_body(h.kind, |d, ts| rd.feed(d, ts)).await?;
    Ok(h.close)
}

/// Splits an SSE byte stream into events; records per-chunk latency.
pub struct SseReader {
    pending: Vec<u8>,
    pub chunks: u64,
    pub done: bool,
    pub first_recv_ns: Option<i64>,
    record: bool,
    pub lats: Vec<i64>,
}

impl SseReader {
    pub fn new(record: bool, cap: usize) -> SseReader {
        SseReader {
            pending: Vec::with_capacity(4096),
            chunks: 0,
            done: false,
            first_recv_ns: None,
            record,
            lats: Vec::with_capacity(if record { cap } else { 0 }),
        }
    }

    pub fn feed(&mut self, data: &[u8], recv_ns: i64) {
        self.pending.extend_from_slice(data);
        let mut start = 0;
        while let Some(p) = find(&self.pending[start..], b"\n\n") {
            let ev = &self.pending[start..start + p];
            start += p + 2;
            if !ev.starts_with(b"data:") {
                continue; // comments, pings
            }
            if find(ev, b"[DONE]").is_some() {
                self.done = true;
                continue;
            }
            self.chunks += 1;
            if self.first_recv_ns.is_none() {
                self.first_recv_ns = Some(recv_ns);
            }
            if self.record {
                if let Some(t) = parse_t(ev) {
                    self.lats.push(recv_ns - t);
                }
            }
        }
        if start > 0 {
            self.pending.drain(..start);
        }
    }
}

fn parse_t(ev: &[u8]) -> Option<i64> {
    let p = find(ev, b"\"t\":")?;
    let digits = &ev[p + 4..];
    let end = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

/// What the client saw of one or more SSE streams.
#[derive(Default)]
pub struct StreamOut {
    pub lats: Vec<i64>,
    pub ttfc: Option<i64>,
    pub chunks: u64,
    pub streams: u64,
    pub err: u64,
}

impl StreamOut {
    /// Adds another stream's (or worker's) figures; its time to first chunk is the caller's.
    pub fn add(&mut self, o: StreamOut) {
        self.chunks += o.chunks;
        self.streams += o.streams;
        self.err += o.err;
        self.lats.extend(o.lats);
    }
}
