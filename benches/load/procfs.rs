//! /proc readings: CPU time, RSS, threads, fds, context switches and write calls of processes.

use std::process::Command;

/// utime + stime of one process (all threads), in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let f = stat_fields(pid)?;
    // After the comm: state(0) ppid(1) ... utime(11) stime(12)
    let u: u64 = f.get(11)?.parse().ok()?;
    let st: u64 = f.get(12)?.parse().ok()?;
    Some(u + st)
}

fn ppid(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// The fields of /proc/PID/stat after the command name (which may hold spaces).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

pub fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

pub fn rss_kib(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|p| status_kib(*p, "VmRSS:")).sum()
}

pub fn cpu_sum(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|p| cpu_ticks(*p)).sum()
}

pub fn fd_count(pids: &[u32]) -> usize {
    pids.iter()
        .filter_map(|p| std::fs::read_dir(format!("/proc/{p}/fd")).ok())
        .map(|d| d.count())
        .sum()
}

pub fn children(parent: u32) -> Vec<u32> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) {
                if ppid(pid) == Some(parent) {
                    v.push(pid);
                }
            }
        }
    }
    v
}

/// Voluntary and involuntary context switches of all threads. Voluntary ones are the
/// proxy blocking (an idle event loop, a lock, a cross-thread hand-off); involuntary ones are
/// preemption, which mostly measures what else runs on the same CPU.
fn ctx_switches(pids: &[u32]) -> (u64, u64) {
    let (mut vol, mut invol) = (0, 0);
    for pid in pids {
        let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for e in rd.flatten() {
            let tid = e.file_name().to_string_lossy().to_string();
            if let Ok(tid) = tid.parse::<u32>() {
                let s = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"))
                    .unwrap_or_default();
                for l in s.lines() {
                    let n = || {
                        l.split_whitespace()
                            .nth(1)
                            .and_then(|v| v.parse::<u64>().ok())
                            .unwrap_or(0)
                    };
                    if l.starts_with("voluntary_ctxt_switches") {
                        vol += n();
                    } else if l.starts_with("nonvoluntary_ctxt_switches") {
                        invol += n();
                    }
                }
            }
        }
    }
    (vol, invol)
}

/// write(2)/writev(2) calls (`syscw` in /proc/PID/io; send(2) is not counted).
fn write_calls(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/io")).ok())
        .filter_map(|s| {
            s.lines()
                .find(|l| l.starts_with("syscw:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum()
}

/// A reading of CPU time, context switches and write calls.
#[derive(Clone, Copy)]
pub struct Snap {
    pub ticks: u64,
    pub ctx: u64,
    pub ictx: u64,
    pub writes: u64,
}

pub fn snap(pids: &[u32]) -> Snap {
    let (ctx, ictx) = ctx_switches(pids);
    Snap {
        ticks: cpu_sum(pids),
        ctx,
        ictx,
        writes: write_calls(pids),
    }
}

impl Snap {
    /// Write calls, voluntary and involuntary context switches per unit of work.
    pub fn per(self, n: f64) -> (f64, f64, f64) {
        (
            self.writes as f64 / n,
            self.ctx as f64 / n,
            self.ictx as f64 / n,
        )
    }

    pub fn since(self, before: Snap) -> Snap {
        Snap {
            ticks: self.ticks.saturating_sub(before.ticks),
            ctx: self.ctx.saturating_sub(before.ctx),
            ictx: self.ictx.saturating_sub(before.ictx),
            writes: self.writes.saturating_sub(before.writes),
        }
    }
}

pub fn clk_tck() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}
