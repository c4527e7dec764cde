//! The result tables, one per scenario, as Markdown (the format BENCHMARKS.md records).

use crate::held::HeldRow;
use crate::opts::Cfg;
use crate::rr::RrRow;
use crate::sse_latency::SseRow;
use crate::stats::{fmt_opt, ms, signed_ms, vs_direct};
use crate::tput::TputRow;
use std::fmt::Write as _;

/// The rows of every scenario that ran.
#[derive(Default)]
pub struct Results {
    /// (table title, rows) per request/response scenario.
    pub rr_tables: Vec<(String, Vec<RrRow>)>,
    /// (staggered starts, rows) per SSE latency variant.
    pub sse_tables: Vec<(bool, Vec<SseRow>)>,
    pub tput_rows: Vec<TputRow>,
    pub held_rows: Vec<HeldRow>,
}

pub fn tables(cfg: &Cfg, res: &Results) -> String {
    let mut out = String::new();
    rr_tables(&mut out, res);
    sse_tables(&mut out, cfg, res);
    tput_table(&mut out, cfg, res);
    held_table(&mut out, cfg, res);
    out
}

fn rr_tables(out: &mut String, res: &Results) {
    let direct_of = |rows: &[RrRow]| rows.iter().find(|r| r.label == "direct").map(|r| r.rps);
    for (title, rows) in &res.rr_tables {
        let _ = writeln!(out, "\n#### {title}\n");
        let _ = writeln!(
            out,
            "| target | req/s | vs direct | p50 ms | p99 ms | proxy CPU ms / 1k req | mock CPU ms / 1k req | ok | errors |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        let d = direct_of(rows);
        for r in rows {
            let _ = writeln!(
                out,
                "| {} | {:.0} | {} | {} | {} | {} | {:.1} | {} | {} |",
                r.label,
                r.rps,
                vs_direct(r.rps, d),
                ms(r.p50_us, 1e3),
                ms(r.p99_us, 1e3),
                fmt_opt(r.proxy_ms_per_1k, 1),
                r.mock_ms_per_1k,
                r.ok,
                r.err
            );
        }
    }
}

fn sse_tables(out: &mut String, cfg: &Cfg, res: &Results) {
    for (stagger, rows) in &res.sse_tables {
        let _ = writeln!(
            out,
            "\n#### SSE, {} streams x {} chunks, {} ms apart, {} rounds per target, {}\n",
            cfg.sse_streams,
            cfg.sse_chunks,
            cfg.sse_gap_ms,
            cfg.sse_rounds,
            if *stagger {
                "starts spread evenly over one gap"
            } else {
                "all streams start together (chunks come in bursts)"
            }
        );
        let _ = writeln!(
            out,
            "| target | chunk latency p50 ms | p99 ms | p99 of single rounds ms | added p50 ms | added p99 ms | first chunk p50 ms | p99 ms | added first p50 ms | added first p99 ms | chunks | errors |"
        );
        let _ = writeln!(
            out,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        let d = rows.iter().find(|r| r.label == "direct");
        for r in rows {
            let add = |f: fn(&SseRow) -> i64| match d {
                Some(d) if r.label != "direct" => signed_ms(f(r) - f(d), 1e6),
                _ => "-".into(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {}–{} | {} | {} | {} | {} | {} | {} | {}/{} | {} |",
                r.label,
                ms(r.lat_p50, 1e6),
                ms(r.lat_p99, 1e6),
                ms(r.lat_p99_min, 1e6),
                ms(r.lat_p99_max, 1e6),
                add(|r| r.lat_p50),
                add(|r| r.lat_p99),
                ms(r.ttfc_p50, 1e6),
                ms(r.ttfc_p99, 1e6),
                add(|r| r.ttfc_p50),
                add(|r| r.ttfc_p99),
                r.chunks,
                r.expected,
                r.err
            );
        }
    }
}

fn tput_table(out: &mut String, cfg: &Cfg, res: &Results) {
    if !res.tput_rows.is_empty() {
        let _ = writeln!(
            out,
            "\n#### SSE throughput, {} streams x {} chunks, 0 ms apart, {} s\n",
            cfg.sse_streams,
            cfg.tput_chunks,
            cfg.tput_dur.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "| target | chunks/s | vs direct | proxy CPU µs / chunk | mock CPU µs / chunk | chunks | streams done | errors |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
        let d = res
            .tput_rows
            .iter()
            .find(|r| r.label == "direct")
            .map(|r| r.cps);
        for r in &res.tput_rows {
            let _ = writeln!(
                out,
                "| {} | {:.0} | {} | {} | {:.2} | {} | {} | {} |",
                r.label,
                r.cps,
                vs_direct(r.cps, d),
                fmt_opt(r.proxy_us_per_chunk, 2),
                r.mock_us_per_chunk,
                r.chunks,
                r.streams,
                r.err
            );
        }
    }
}

fn held_table(out: &mut String, cfg: &Cfg, res: &Results) {
    if !res.held_rows.is_empty() {
        let _ = writeln!(
            out,
            "\n#### Held streams: {} concurrent `GET /slow` streams (run first, on fresh processes)\n",
            cfg.held
        );
        let _ = writeln!(
            out,
            "| target | held | RSS before MiB | RSS held MiB | KiB per held stream | RSS after closing MiB | time to open s | errors |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
        for r in &res.held_rows {
            let _ = writeln!(
                out,
                "| {}{} | {}/{} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
                r.label,
                if r.label == "direct" { " (mock)" } else { "" },
                r.opened,
                r.wanted,
                r.rss_before_kib as f64 / 1024.0,
                r.rss_held_kib as f64 / 1024.0,
                r.kib_per_stream,
                r.rss_closed_kib as f64 / 1024.0,
                r.open_secs,
                r.err
            );
        }
    }
    for r in res.held_rows.iter().filter(|r| !r.later_cycles.is_empty()) {
        let cycles: Vec<String> = r
            .later_cycles
            .iter()
            .enumerate()
            .map(|(i, (h, c))| {
                format!(
                    "cycle {}: held {:.1} MiB, closed {:.1} MiB",
                    i + 2,
                    *h as f64 / 1024.0,
                    *c as f64 / 1024.0
                )
            })
            .collect();
        let _ = writeln!(out, "\n{} later cycles: {}.", r.label, cycles.join("; "));
    }
}
