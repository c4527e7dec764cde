//! Scenario 4: SSE throughput, streams of chunks sent back to back, per-chunk CPU cost.

use crate::http::KeepAlive;
use crate::opts::Cfg;
use crate::requests::sse_req;
use crate::sse::{read_sse, SseReader, StreamOut};
use crate::targets::{Env, Kind, Target};
use bytes::Bytes;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// One target's row of the throughput table.
pub struct TputRow {
    pub label: String,
    pub chunks: u64,
    pub streams: u64,
    pub cps: f64,
    pub proxy_us_per_chunk: Option<f64>,
    pub mock_us_per_chunk: f64,
    pub err: u64,
    /// Proxy write calls, voluntary and involuntary context switches per chunk.
    pub proxy_diag: Option<(f64, f64, f64)>,
}

async fn tput_worker(addr: SocketAddr, req: Bytes, deadline: Instant) -> StreamOut {
    let mut out = StreamOut::default();
    let mut ka = KeepAlive::new(addr, deadline);
    while let Some(mut c) = ka.next().await {
        let mut rd = SseReader::new(false, 0);
        let res =
            tokio::time::timeout(Duration::from_secs(10), read_sse(&mut c, &req, &mut rd)).await;
        out.chunks += rd.chunks;
        let close = match res {
            Ok(Ok(close)) if rd.done => {
                out.streams += 1;
                Some(close)
            }
            _ => None,
        };
        ka.done(c, close).await;
    }
    out.err += ka.err;
    out
}

async fn tput_run(
    addr: SocketAddr,
    streams: usize,
    chunks: u64,
    dur: Duration,
) -> (StreamOut, Duration) {
    let req = sse_req(chunks, 0);
    let start = Instant::now();
    let deadline = start + dur;
    let mut set = JoinSet::new();
    for _ in 0..streams {
        set.spawn(tput_worker(addr, req.clone(), deadline));
    }
    let mut all = StreamOut::default();
    while let Some(r) = set.join_next().await {
        match r {
            Ok(o) => all.add(o),
            Err(_) => all.err += 1,
        }
    }
    (all, start.elapsed())
}

pub async fn scenario_tput(env: &Env, t: &Target, cfg: &Cfg) -> TputRow {
    let _ = tput_run(t.addr, cfg.sse_streams, cfg.tput_chunks, cfg.warm).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let u0 = env.usage(t);
    let (out, el) = tput_run(t.addr, cfg.sse_streams, cfg.tput_chunks, cfg.tput_dur).await;
    let u = env.usage(t).since(u0);
    let n = out.chunks.max(1) as f64;
    TputRow {
        label: t.label.clone(),
        chunks: out.chunks,
        streams: out.streams,
        cps: out.chunks as f64 / el.as_secs_f64(),
        proxy_us_per_chunk: (t.kind == Kind::Proxy).then(|| env.ms(u.proxy.ticks) * 1000.0 / n),
        mock_us_per_chunk: env.ms(u.mock_ticks) * 1000.0 / n,
        err: out.err,
        proxy_diag: (t.kind == Kind::Proxy).then(|| u.proxy.per(n)),
    }
}
