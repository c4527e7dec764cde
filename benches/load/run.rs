//! The benchmark run: start the targets, run the chosen scenarios on each, print the report.

use crate::facts::{self, pinning_available};
use crate::held::scenario_held;
use crate::opts::{Cfg, Opts};
use crate::report::{self, Results};
use crate::requests::{chat_body, get_req, post_req};
use crate::rr::scenario_rr;
use crate::sse_latency::{scenario_sse_round, SseAcc};
use crate::summary;
use crate::targets::Lineup;
use crate::tput::scenario_tput;
use std::time::Duration;

pub async fn run(opts: Opts) -> i32 {
    let mut cfg = Cfg::new(&opts);
    let pin = pinning_available();
    let tmp = match tempfile::Builder::new().prefix("llmgate-load-").tempdir() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tempdir: {e}");
            return 1;
        }
    };
    {
        use std::os::unix::fs::PermissionsExt;
        // nginx workers (user nobody when started as root) must reach it.
        let _ = std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755));
    }
    let nofile = facts::nofile();
    // Each held stream costs the client one fd, and the bench owns 3 targets
    // at once only sequentially; keep a margin.
    let max_held = (nofile.saturating_sub(512)) as usize;
    if cfg.held > max_held {
        eprintln!(
            "RLIMIT_NOFILE is {nofile}: held streams cut from {} to {max_held}",
            cfg.held
        );
        cfg.held = max_held;
    }

    let mut l = match Lineup::start(tmp.path(), pin, nofile).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    print!("{}", facts::machine(&l, pin, nofile, opts.quick));
    let mut res = Results::default();

    // ---- 5: held streams (first, on fresh processes) ----

    if opts.wants("held") {
        eprintln!("== held streams: {} per target", cfg.held);
        for i in 0..l.targets.len() {
            l.check_alive();
            let t = &l.targets[i];
            if !t.measured(true) {
                continue;
            }
            let r = scenario_held(&l.env, t, &cfg).await;
            eprintln!(
                "  {:<18} {}/{} held, {:.1} KiB/stream",
                r.label, r.opened, r.wanted, r.kib_per_stream
            );
            res.held_rows.push(r);
        }
    }

    // ---- 1 and 2: request/response ----
    let models_req = get_req("/api/models");
    let chat_req = post_req(
        "/api/chat/completions",
        "application/json",
        &chat_body(false),
    );
    for (name, title, req) in [
        ("models", "GET /api/models (12 KB JSON)", &models_req),
        (
            "chat",
            "POST /api/chat/completions, non-stream (1 KB body, 0.6 KB answer)",
            &chat_req,
        ),
    ] {
        if !opts.wants(name) {
            continue;
        }
        eprintln!("== {title}");
        let mut rows = Vec::new();
        for i in 0..l.targets.len() {
            l.check_alive();
            let t = &l.targets[i];
            if !t.measured(false) {
                continue;
            }
            let r = scenario_rr(&l.env, t, &cfg, req).await;
            eprintln!("  {:<18} {:>8.0} req/s, {} errors", r.label, r.rps, r.err);
            rows.push(r);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        res.rr_tables.push((
            format!(
                "{title}, {} connections, {} s",
                cfg.conns,
                cfg.dur.as_secs_f64()
            ),
            rows,
        ));
    }

    // ---- 3: SSE latency, synchronized starts, then staggered starts ----
    // Rounds go round-robin over the targets so that a noisy moment of the
    // machine does not land on one target only.
    if opts.wants("sse") {
        for stagger in [false, true] {
            eprintln!(
                "== SSE latency, {}, {} rounds",
                if stagger {
                    "staggered starts"
                } else {
                    "all streams start together"
                },
                cfg.sse_rounds
            );
            let mut accs: Vec<SseAcc> = l.targets.iter().map(|_| SseAcc::default()).collect();
            for _round in 0..cfg.sse_rounds {
                for (i, acc) in accs.iter_mut().enumerate() {
                    l.check_alive();
                    let t = &l.targets[i];
                    if !t.measured(true) {
                        continue;
                    }
                    scenario_sse_round(t, &cfg, stagger, acc).await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            let mut rows = Vec::new();
            for (t, acc) in l.targets.iter().zip(accs) {
                if acc.expected == 0 {
                    continue;
                }
                let r = acc.row(&t.label);
                eprintln!(
                    "  {:<18} p50 {:.2} ms p99 {:.2} ms (rounds {:.2}..{:.2}), {}/{} chunks, {} errors",
                    r.label,
                    r.lat_p50 as f64 / 1e6,
                    r.lat_p99 as f64 / 1e6,
                    r.lat_p99_min as f64 / 1e6,
                    r.lat_p99_max as f64 / 1e6,
                    r.chunks,
                    r.expected,
                    r.err
                );
                rows.push(r);
            }
            res.sse_tables.push((stagger, rows));
        }
    }
    // ---- 4: SSE throughput ----
    if opts.wants("tput") {
        eprintln!("== SSE throughput");
        for i in 0..l.targets.len() {
            l.check_alive();
            let t = &l.targets[i];
            if !t.measured(true) {
                continue;
            }
            let r = scenario_tput(&l.env, t, &cfg).await;
            eprintln!(
                "  {:<18} {:>9.0} chunks/s, {} errors",
                r.label, r.cps, r.err
            );
            res.tput_rows.push(r);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    l.check_alive();

    let mut out = report::tables(&cfg, &res);
    summary::write(&mut out, &res, &mut l);
    print!("{out}");
    drop(l);
    if opts.keep {
        let kept = tmp.keep();
        eprintln!("kept configs and logs in {}", kept.display());
    }
    0
}
