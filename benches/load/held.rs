//! Scenario 5: many concurrent held streams, the proxy's memory per stream and after closing.

use crate::http::bad;
use crate::opts::Cfg;
use crate::procfs;
use crate::requests::get_req;
use crate::targets::{Env, Kind, Target};
use crate::util::find;
use bytes::Bytes;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// One target's row of the held-streams table.
pub struct HeldRow {
    pub label: String,
    pub opened: usize,
    pub wanted: usize,
    pub rss_before_kib: u64,
    pub rss_held_kib: u64,
    pub kib_per_stream: f64,
    /// After all streams were closed again.
    pub rss_closed_kib: u64,
    /// (held, closed) RSS of further cycles (`--held-cycles`).
    pub later_cycles: Vec<(u64, u64)>,
    pub open_secs: f64,
    pub err: u64,
}

async fn open_held(addr: SocketAddr, req: Bytes) -> io::Result<TcpStream> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    s.write_all(&req).await?;
    // Read only the head and the first chunk ("data: hello").
    let mut buf = Vec::with_capacity(1024);
    let mut tmp = [0u8; 1024];
    loop {
        let n = s.read(&mut tmp).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(p) = find(&buf, b"\r\n\r\n") {
            if !buf.starts_with(b"HTTP/1.1 200") && !buf.starts_with(b"HTTP/1.0 200") {
                return Err(bad(format!(
                    "status line {:?}",
                    String::from_utf8_lossy(&buf[..p.min(40)])
                )));
            }
            if find(&buf[p..], b"hello").is_some() {
                return Ok(s);
            }
        }
        if buf.len() > 65536 {
            return Err(bad("no first chunk in 64 KiB"));
        }
    }
}

pub async fn scenario_held(env: &Env, t: &Target, cfg: &Cfg) -> HeldRow {
    let pids: Vec<u32> = if t.kind == Kind::Proxy {
        t.pids.clone()
    } else {
        vec![env.mock_pid]
    };
    let mut row = held_cycle(&pids, t, cfg).await;
    for _ in 1..cfg.held_cycles {
        let r = held_cycle(&pids, t, cfg).await;
        row.later_cycles.push((r.rss_held_kib, r.rss_closed_kib));
    }
    row
}

async fn held_cycle(pids: &[u32], t: &Target, cfg: &Cfg) -> HeldRow {
    let fds_before = procfs::fd_count(pids);
    let rss_before = procfs::rss_kib(pids);
    let req = get_req(&format!("/slow?hold_s={}", cfg.hold_s));
    let sem = Arc::new(tokio::sync::Semaphore::new(256));
    let start = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..cfg.held {
        let sem = sem.clone();
        let req = req.clone();
        let addr = t.addr;
        set.spawn(async move {
            let _permit = sem
                .acquire_owned()
                .await
                .map_err(|_| bad("semaphore closed"))?;
            tokio::time::timeout(Duration::from_secs(15), open_held(addr, req))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "timed out"))?
        });
    }
    let mut held = Vec::with_capacity(cfg.held);
    let mut err = 0u64;
    let mut first_err: Option<String> = None;
    let until = tokio::time::Instant::now() + cfg.held_limit;
    loop {
        match tokio::time::timeout_at(until, set.join_next()).await {
            Ok(Some(Ok(Ok(s)))) => held.push(s),
            Ok(Some(Ok(Err(e)))) => {
                err += 1;
                first_err.get_or_insert_with(|| e.to_string());
            }
            Ok(Some(Err(_))) => err += 1,
            Ok(None) => break,
            Err(_) => {
                err += set.len() as u64;
                set.abort_all();
                break;
            }
        }
    }
    let open_secs = start.elapsed().as_secs_f64();
    if let Some(e) = first_err {
        eprintln!(
            "  held streams via {}: {err} failed, first error: {e}",
            t.label
        );
    }
    // Let the proxy settle, then read its memory while all are held.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let rss_held = procfs::rss_kib(pids);
    let opened = held.len();
    drop(held);
    drop(set);
    // Wait (bounded) until the proxy closed those connections again.
    let drain_until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < drain_until && procfs::fd_count(pids) > fds_before + 32 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_closed = procfs::rss_kib(pids);
    HeldRow {
        label: t.label.clone(),
        opened,
        wanted: cfg.held,
        rss_before_kib: rss_before,
        rss_held_kib: rss_held,
        kib_per_stream: (rss_held as f64 - rss_before as f64) / opened.max(1) as f64,
        rss_closed_kib: rss_closed,
        later_cycles: Vec::new(),
        open_secs,
        err,
    }
}
