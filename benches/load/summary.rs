//! The summary after the tables: proxy system activity, memory, the targets met, problems.

use crate::facts::loadavg;
use crate::procfs;
use crate::report::Results;
use crate::sse_latency::SseRow;
use crate::stats::fmt_opt;
use crate::targets::{Kind, Lineup};
use std::fmt::Write as _;

pub fn write(out: &mut String, res: &Results, lu: &mut Lineup) {
    activity(out, res);
    memory(out, lu);
    goals(out, res, lu);
    problems(out, lu);
}

/// Where the proxy time goes: write calls and context switches.
fn activity(out: &mut String, res: &Results) {
    {
        let mut lines = Vec::new();
        for (title, rows) in &res.rr_tables {
            let short = title.split(',').next().unwrap_or(title);
            for r in rows {
                if let Some((w, c, i)) = r.proxy_diag {
                    lines.push(format!(
                        "| {short} | {} | per request | {w:.2} | {c:.3} | {i:.3} |",
                        r.label
                    ));
                }
            }
        }
        for r in &res.tput_rows {
            if let Some((w, c, i)) = r.proxy_diag {
                lines.push(format!(
                    "| SSE throughput | {} | per chunk | {w:.3} | {c:.4} | {i:.4} |",
                    r.label
                ));
            }
        }
        if !lines.is_empty() {
            let _ = writeln!(
                out,
                "\n#### Proxy system activity (from /proc/PID/io and /proc/PID/task/*/status)\n"
            );
            let _ = writeln!(
                out,
                "| scenario | target | unit | write/writev calls | voluntary context switches | involuntary (preempted) |"
            );
            let _ = writeln!(out, "|---|---|---|---:|---:|---:|");
            for l in lines {
                let _ = writeln!(out, "{l}");
            }
        }
    }
}

fn memory(out: &mut String, lu: &Lineup) {
    let _ = writeln!(out, "\n#### Proxy memory\n");
    let _ = writeln!(
        out,
        "| target | idle RSS MiB (after start) | RSS after suite MiB | threads |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for t in lu.targets.iter().filter(|t| t.kind == Kind::Proxy) {
        let _ = writeln!(
            out,
            "| {} | {:.1} | {} | {} |",
            t.label,
            t.idle_rss_kib as f64 / 1024.0,
            if t.dead.is_some() {
                "died".to_string()
            } else {
                format!("{:.1}", procfs::rss_kib(&t.pids) as f64 / 1024.0)
            },
            t.pids
                .iter()
                .filter_map(|p| procfs::status_kib(*p, "Threads:"))
                .sum::<u64>()
        );
    }

    for p in lu.procs.iter().filter(|p| p.name == "llmgate-log") {
        let text = std::fs::read_to_string(&p.log).unwrap_or_default();
        let _ = writeln!(
            out,
            "\nllmgate+accesslog wrote {} access-log lines ({:.1} MiB) to its stdout (a file).",
            text.lines()
                .filter(|l| l.contains("llmgate::access"))
                .count(),
            text.len() as f64 / (1024.0 * 1024.0)
        );
    }

    let _ = writeln!(out, "\nLoad average at the end: {}.", loadavg());
}

/// The project's targets for llmgate, each against its bound.
fn goals(out: &mut String, res: &Results, lu: &Lineup) {
    let sse_rows: &[SseRow] = res
        .sse_tables
        .iter()
        .find(|(stagger, _)| !stagger)
        .map(|(_, rows)| rows.as_slice())
        .unwrap_or(&[]);
    let find_rr = |title_part: &str, label: &str| {
        res.rr_tables
            .iter()
            .find(|(t, _)| t.contains(title_part))
            .and_then(|(_, rows)| rows.iter().find(|r| r.label == label))
            .and_then(|r| r.proxy_ms_per_1k)
    };
    let _ = writeln!(out, "\n#### Targets\n");
    let _ = writeln!(out, "| target | llmgate | bound | met |");
    let _ = writeln!(out, "|---|---:|---:|---|");
    let verdict = |ok: Option<bool>| match ok {
        Some(true) => "yes",
        Some(false) => "**no**",
        None => "n/a",
    };
    for (part, what) in [
        ("/api/models", "CPU ms / 1k model-list requests ≤ nginx"),
        ("non-stream", "CPU ms / 1k chat requests ≤ nginx"),
    ] {
        let l = find_rr(part, "llmgate");
        let n = find_rr(part, "nginx");
        let _ = writeln!(
            out,
            "| {what} | {} | {} | {} |",
            fmt_opt(l, 1),
            fmt_opt(n, 1),
            verdict(l.zip(n).map(|(l, n)| l <= n))
        );
    }
    {
        let d = sse_rows.iter().find(|r| r.label == "direct");
        let added = |label: &str| {
            d.and_then(|d| {
                sse_rows
                    .iter()
                    .find(|r| r.label == label)
                    .map(|r| (r.lat_p99 - d.lat_p99) as f64 / 1e6)
            })
        };
        let l = added("llmgate");
        let n = added("nginx");
        let _ = writeln!(
            out,
            "| added per-chunk latency p99 ms (streams started together) ≤ nginx | {} | {} | {} |",
            fmt_opt(l, 2),
            fmt_opt(n, 2),
            verdict(l.zip(n).map(|(l, n)| l <= n))
        );
    }
    {
        let l = res
            .held_rows
            .iter()
            .find(|r| r.label == "llmgate")
            .map(|r| r.kib_per_stream);
        let _ = writeln!(
            out,
            "| RSS per held stream KiB ≤ 16 | {} | 16 | {} |",
            fmt_opt(l, 1),
            verdict(l.map(|l| l <= 16.0))
        );
        let idle = lu
            .targets
            .iter()
            .find(|t| t.label == "llmgate")
            .map(|t| t.idle_rss_kib as f64 / 1024.0);
        let _ = writeln!(
            out,
            "| idle RSS MiB ≤ 15 | {} | 15 | {} |",
            fmt_opt(idle, 1),
            verdict(idle.map(|i| i <= 15.0))
        );
    }
}

fn problems(out: &mut String, lu: &mut Lineup) {
    let dead: Vec<String> = lu.targets.iter().filter_map(|t| t.dead.clone()).collect();
    lu.problems.extend(dead);
    if !lu.problems.is_empty() {
        let _ = writeln!(out, "\n#### Problems\n");
        for p in &lu.problems {
            let _ = writeln!(out, "- {}", p.replace('\n', " / "));
        }
    }
}
