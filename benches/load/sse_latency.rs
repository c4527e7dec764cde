//! Scenario 3: SSE per-chunk latency and time to first chunk, over rounds of concurrent streams.

use crate::http::Http;
use crate::opts::Cfg;
use crate::requests::sse_req;
use crate::sse::{read_sse, SseReader, StreamOut};
use crate::stats::pct;
use crate::targets::Target;
use crate::util::now_ns;
use bytes::Bytes;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::task::JoinSet;

/// One target's row of an SSE latency table (ns).
pub struct SseRow {
    pub label: String,
    pub lat_p50: i64,
    pub lat_p99: i64,
    /// Lowest and highest p99 of a single round.
    pub lat_p99_min: i64,
    pub lat_p99_max: i64,
    pub ttfc_p50: i64,
    pub ttfc_p99: i64,
    pub chunks: u64,
    pub expected: u64,
    pub err: u64,
}

/// Samples of all rounds of one target.
#[derive(Default)]
pub struct SseAcc {
    pub lats: Vec<i64>,
    pub ttfc: Vec<i64>,
    pub round_p99: Vec<i64>,
    pub chunks: u64,
    pub expected: u64,
    pub err: u64,
}

impl SseAcc {
    pub fn row(mut self, label: &str) -> SseRow {
        self.lats.sort_unstable();
        self.ttfc.sort_unstable();
        SseRow {
            label: label.to_string(),
            lat_p50: pct(&self.lats, 50.0),
            lat_p99: pct(&self.lats, 99.0),
            lat_p99_min: self.round_p99.iter().copied().min().unwrap_or(0),
            lat_p99_max: self.round_p99.iter().copied().max().unwrap_or(0),
            ttfc_p50: pct(&self.ttfc, 50.0),
            ttfc_p99: pct(&self.ttfc, 99.0),
            chunks: self.chunks,
            expected: self.expected,
            err: self.err,
        }
    }
}

/// One stream: waits until `start_at`, sends the request, reads it all.
async fn sse_one(
    mut c: Http,
    req: Bytes,
    start_at: tokio::time::Instant,
    cap: usize,
    limit: Duration,
) -> StreamOut {
    tokio::time::sleep_until(start_at).await;
    let mut out = StreamOut {
        streams: 1,
        ..StreamOut::default()
    };
    let sent = now_ns();
    let mut rd = SseReader::new(true, cap);
    let res = tokio::time::timeout(limit, read_sse(&mut c, &req, &mut rd)).await;
    if !matches!(res, Ok(Ok(_))) || !rd.done {
        out.err += 1;
    }
    out.ttfc = rd.first_recv_ns.map(|f| f - sent);
    out.chunks = rd.chunks;
    out.lats = rd.lats;
    out
}

/// Returns all streams' figures and the times to first chunk (ns).
async fn sse_round(
    addr: SocketAddr,
    streams: usize,
    chunks: u64,
    gap_ms: u64,
    stagger: bool,
) -> (StreamOut, Vec<i64>) {
    let req = sse_req(chunks, gap_ms);
    let mut all = StreamOut {
        lats: Vec::with_capacity(streams * chunks as usize),
        ..StreamOut::default()
    };
    let mut ttfcs = Vec::new();
    // Connect all first so that connection set-up is not in the figures.
    let mut conns = Vec::with_capacity(streams);
    for _ in 0..streams {
        match Http::connect(addr).await {
            Ok(c) => conns.push(c),
            Err(_) => all.err += 1,
        }
    }
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    // Either all streams start together (their chunks come in bursts of
    // `streams`), or the starts are spread evenly over one gap.
    let stagger = if stagger {
        Duration::from_micros(gap_ms * 1000 / streams.max(1) as u64)
    } else {
        Duration::ZERO
    };
    let limit = Duration::from_millis(5000 + chunks * gap_ms * 3);
    let mut set = JoinSet::new();
    for (i, c) in conns.into_iter().enumerate() {
        set.spawn(sse_one(
            c,
            req.clone(),
            start + stagger * i as u32,
            chunks as usize,
            limit,
        ));
    }
    while let Some(r) = set.join_next().await {
        match r {
            Ok(o) => {
                ttfcs.extend(o.ttfc);
                all.add(o);
            }
            Err(_) => all.err += 1,
        }
    }
    (all, ttfcs)
}

/// One measured SSE round against `t`, added to `acc`. The first round
/// of a target is preceded by a short warm-up round that fills the
/// proxies' upstream connection pools.
pub async fn scenario_sse_round(t: &Target, cfg: &Cfg, stagger: bool, acc: &mut SseAcc) {
    if acc.expected == 0 {
        let _ = sse_round(t.addr, cfg.sse_streams, 2, 0, false).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (mut out, ttfc) = sse_round(
        t.addr,
        cfg.sse_streams,
        cfg.sse_chunks,
        cfg.sse_gap_ms,
        stagger,
    )
    .await;
    out.lats.sort_unstable();
    acc.round_p99.push(pct(&out.lats, 99.0));
    acc.lats.extend(out.lats);
    acc.ttfc.extend(ttfc);
    acc.chunks += out.chunks;
    acc.expected += cfg.sse_streams as u64 * cfg.sse_chunks;
    acc.err += out.err;
}
