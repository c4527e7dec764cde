//! Minimal HTTP/1.1 client: keeps the load generator light.

use crate::requests::get_req;
use crate::util::{find, now_ns};
use bytes::{Buf, BytesMut};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Hard cap on the requests one closed-loop connection may send in one run.
pub const MAX_REQS_PER_CONN: u64 = 2_000_000;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BodyKind {
    Len(usize),
    Chunked,
    Eof,
}

#[derive(Debug)]
pub struct Head {
    pub status: u16,
    pub kind: BodyKind,
    pub close: bool,
}

pub struct Http {
    s: TcpStream,
    buf: BytesMut,
    /// CLOCK_REALTIME (ns) of the last successful read.
    ts: i64,
}

pub fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn parse_head(h: &[u8]) -> io::Result<Head> {
    let text = std::str::from_utf8(h).map_err(|_| bad("non-UTF-8 response head"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let mut close = version == "HTTP/1.0";
    let mut len = None;
    let mut chunked = false;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("content-length") {
                len = v.parse().ok();
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.to_ascii_lowercase().contains("chunked");
            } else if k.eq_ignore_ascii_case("connection") {
                if v.eq_ignore_ascii_case("close") {
                    close = true;
                } else if v.eq_ignore_ascii_case("keep-alive") {
                    close = false;
                }
            }
        }
    }
    let kind = if chunked {
        BodyKind::Chunked
    } else if let Some(n) = len {
        BodyKind::Len(n)
    } else if status == 204 || status == 304 || status < 200 {
        BodyKind::Len(0)
    } else {
        BodyKind::Eof
    };
    Ok(Head {
        status,
        kind,
        close: close || kind == BodyKind::Eof,
    })
}

impl Http {
    pub async fn connect(addr: SocketAddr) -> io::Result<Http> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Http {
            s,
            buf: BytesMut::with_capacity(16 * 1024),
            ts: 0,
        })
    }

    /// Reads more bytes; Ok(0) at EOF.
    async fn fill_opt(&mut self) -> io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(16 * 1024);
        }
        let n = self.s.read_buf(&mut self.buf).await?;
        self.ts = now_ns();
        Ok(n)
    }

    async fn fill(&mut self) -> io::Result<()> {
        match self.fill_opt().await? {
            0 => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            )),
            _ => Ok(()),
        }
    }

    async fn read_head(&mut self) -> io::Result<Head> {
        loop {
            if let Some(p) = find(&self.buf, b"\r\n\r\n") {
                let head = parse_head(&self.buf[..p])?;
                self.buf.advance(p + 4);
                return Ok(head);
            }
            if self.buf.len() > 64 * 1024 {
                return Err(bad("response head over 64 KiB"));
            }
            self.fill().await?;
        }
    }

    async fn read_line(&mut self) -> io::Result<usize> {
        loop {
            if let Some(p) = find(&self.buf, b"\r\n") {
                return Ok(p);
            }
            if self.buf.len() > 8192 {
                return Err(bad("chunk line over 8 KiB"));
            }
            self.fill().await?;
        }
    }

    /// Hands the next `rem` body bytes to `f`.
    async fn read_len<F: FnMut(&[u8], i64)>(
        &mut self,
        mut rem: usize,
        f: &mut F,
    ) -> io::Result<()> {
        while rem > 0 {
            if self.buf.is_empty() {
                self.fill().await?;
            }
            let take = rem.min(self.buf.len());
            f(&self.buf[..take], self.ts);
            self.buf.advance(take);
            rem -= take;
        }
        Ok(())
    }

    /// Reads a whole response body and hands each piece of it, with the time
    /// it was read, to `f`.
    pub async fn read_body<F: FnMut(&[u8], i64)>(
        &mut self,
        kind: BodyKind,
        mut f: F,
    ) -> io::Result<()> {
        match kind {
            BodyKind::Len(n) => self.read_len(n, &mut f).await,
            BodyKind::Eof => loop {
                if !self.buf.is_empty() {
                    f(&self.buf, self.ts);
                    self.buf.clear();
                }
                if self.fill_opt().await? == 0 {
                    return Ok(());
                }
            },
            BodyKind::Chunked => loop {
                let p = self.read_line().await?;
                let line = std::str::from_utf8(&self.buf[..p]).map_err(|_| bad("chunk size"))?;
                let hex = line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(hex, 16)
                    .map_err(|_| bad(format!("chunk size {hex:?}")))?;
                self.buf.advance(p + 2);
                if size == 0 {
                    // Trailers, up to the empty line.
                    loop {
                        let p = self.read_line().await?;
                        self.buf.advance(p + 2);
                        if p == 0 {
                            return Ok(());
                        }
                    }
                }
                self.read_len(size, &mut f).await?;
                while self.buf.len() < 2 {
                    self.fill().await?;
                }
                if &self.buf[..2] != b"\r\n" {
                    return Err(bad("missing CRLF after chunk"));
                }
                self.buf.advance(2);
            },
        }
    }

    /// Sends `req` and reads the response head.
    pub async fn request(&mut self, req: &[u8]) -> io::Result<Head> {
        self.s.write_all(req).await?;
        self.read_head().await
    }

    /// Sends `req` and reads the whole response. Returns (status, must close).
    pub async fn round_trip(&mut self, req: &[u8]) -> io::Result<(u16, bool)> {
        let h = self.request(req).await?;
        self.read_body(h.kind, |_, _| {}).await?;
        Ok((h.status, h.close))
    }
}

/// One client's requests, one after the other on a kept-alive connection,
/// until `deadline` (and at most `MAX_REQS_PER_CONN`); a failed connect or
/// exchange counts in `err` and is followed by a new connection after a short pause.
pub struct KeepAlive {
    addr: SocketAddr,
    deadline: Instant,
    conn: Option<Http>,
    n: u64,
    pub err: u64,
}

impl KeepAlive {
    pub fn new(addr: SocketAddr, deadline: Instant) -> KeepAlive {
        KeepAlive {
            addr,
            deadline,
            conn: None,
            n: 0,
            err: 0,
        }
    }

    /// The connection for the next request; None when the time or count is up.
    pub async fn next(&mut self) -> Option<Http> {
        while Instant::now() < self.deadline && self.n < MAX_REQS_PER_CONN {
            self.n += 1;
            if let Some(c) = self.conn.take() {
                return Some(c);
            }
            match Http::connect(self.addr).await {
                Ok(c) => return Some(c),
                Err(_) => {
                    self.err += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        None
    }

    /// Takes the connection back after an exchange: `Some(must close)` when
    /// it succeeded, None when it failed.
    pub async fn done(&mut self, c: Http, close: Option<bool>) {
        match close {
            Some(false) => self.conn = Some(c),
            Some(true) => {}
            None => {
                self.err += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

pub async fn http_get(addr: SocketAddr, path: &str, limit: Duration) -> io::Result<(u16, Vec<u8>)> {
    let fut = async {
        let mut c = Http::connect(addr).await?;
        let h = c.request(&get_req(path)).await?;
        let mut body = Vec::new();
        c.read_body(h.kind, |d, _| body.extend_from_slice(d))
            .await?;
        Ok((h.status, body))
    };
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "timed out"))?
}
