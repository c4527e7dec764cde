//! Scenarios 1 and 2: closed-loop request/response load (model list, non-stream chat).

use crate::http::KeepAlive;
use crate::opts::Cfg;
use crate::stats::pct;
use crate::targets::{Env, Kind, Target};
use bytes::Bytes;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// One target's row of a request/response table.
pub struct RrRow {
    pub label: String,
    pub ok: u64,
    pub err: u64,
    pub rps: f64,
    pub p50_us: i64,
    pub p99_us: i64,
    pub proxy_ms_per_1k: Option<f64>,
    pub mock_ms_per_1k: f64,
    /// Proxy write calls, voluntary and involuntary context switches per request.
    pub proxy_diag: Option<(f64, f64, f64)>,
}

#[derive(Default)]
struct LoopOut {
    ok: u64,
    err: u64,
    lats_us: Vec<i64>,
}

async fn closed_loop_conn(addr: SocketAddr, req: Bytes, deadline: Instant) -> LoopOut {
    let mut out = LoopOut {
        lats_us: Vec::with_capacity(65536),
        ..LoopOut::default()
    };
    let mut ka = KeepAlive::new(addr, deadline);
    while let Some(mut c) = ka.next().await {
        let t0 = Instant::now();
        let res = tokio::time::timeout(Duration::from_secs(10), c.round_trip(&req)).await;
        let close = match res {
            Ok(Ok((status, close))) => {
                if status == 200 {
                    out.ok += 1;
                    out.lats_us.push(t0.elapsed().as_micros() as i64);
                } else {
                    out.err += 1;
                }
                Some(close)
            }
            _ => None,
        };
        ka.done(c, close).await;
    }
    out.err += ka.err;
    out
}

async fn closed_loop(
    addr: SocketAddr,
    req: &Bytes,
    conns: usize,
    dur: Duration,
) -> (LoopOut, Duration) {
    let start = Instant::now();
    let deadline = start + dur;
    let mut set = JoinSet::new();
    for _ in 0..conns {
        set.spawn(closed_loop_conn(addr, req.clone(), deadline));
    }
    let mut all = LoopOut::default();
    while let Some(r) = set.join_next().await {
        if let Ok(o) = r {
            all.ok += o.ok;
            all.err += o.err;
            all.lats_us.extend(o.lats_us);
        } else {
            all.err += 1;
        }
    }
    (all, start.elapsed())
}

pub async fn scenario_rr(env: &Env, t: &Target, cfg: &Cfg, req: &Bytes) -> RrRow {
    let _ = closed_loop(t.addr, req, cfg.conns, cfg.warm).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let u0 = env.usage(t);
    let (mut out, el) = closed_loop(t.addr, req, cfg.conns, cfg.dur).await;
    let u = env.usage(t).since(u0);
    out.lats_us.sort_unstable();
    let k = (out.ok.max(1)) as f64 / 1000.0;
    let n = out.ok.max(1) as f64;
    RrRow {
        label: t.label.clone(),
        ok: out.ok,
        err: out.err,
        rps: out.ok as f64 / el.as_secs_f64(),
        p50_us: pct(&out.lats_us, 50.0),
        p99_us: pct(&out.lats_us, 99.0),
        proxy_ms_per_1k: (t.kind == Kind::Proxy).then(|| env.ms(u.proxy.ticks) / k),
        mock_ms_per_1k: env.ms(u.mock_ticks) / k,
        proxy_diag: (t.kind == Kind::Proxy).then(|| u.proxy.per(n)),
    }
}
