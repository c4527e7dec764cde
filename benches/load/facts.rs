//! Machine facts for the report: CPUs, kernel, limits, load, versions, and the header section.

use crate::llmgate::llmgate_src_dir;
use crate::targets::Lineup;
use std::fmt::Write as _;
use std::process::{Command, Stdio};

/// True when `taskset` works and there are at least 2 CPUs.
pub fn pinning_available() -> bool {
    cpu_count() >= 2
        && Command::new("taskset")
            .args(["-c", "1", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
}

pub fn cpu_count() -> usize {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| s.lines().filter(|l| l.starts_with("processor")).count())
        .unwrap_or(1)
        .max(1)
}

pub fn cmd_out(prog: &str, args: &[&str]) -> Option<String> {
    Command::new(prog)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// RLIMIT_NOFILE of this process (after the re-exec raised it).
pub fn nofile() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(3)
                        .and_then(|v| v.parse::<u64>().ok())
                })
        })
        .unwrap_or(1024)
}

/// The "### Machine" section printed before the scenarios run.
pub fn machine(l: &Lineup, pin: bool, nofile: u64, quick: bool) -> String {
    let mut report = String::new();
    let src = llmgate_src_dir().display().to_string();
    let commit = cmd_out("git", &["-C", &src, "log", "-1", "--format=%h %cI %s"])
        .unwrap_or_else(|| "?".into());
    let _ = writeln!(report, "### Machine\n");
    let _ = writeln!(report, "- CPUs: {} x {}", cpu_count(), cpu_model());
    let _ = writeln!(
        report,
        "- kernel: {}",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
    let _ = writeln!(
        report,
        "- date: {}",
        cmd_out("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"]).unwrap_or_default()
    );
    let _ = writeln!(report, "- nginx: {}", l.nginx_version);
    let _ = writeln!(report, "- llmgate: {} (commit {commit})", l.llmgate_version);
    let _ = writeln!(
        report,
        "- pinning: {}; RLIMIT_NOFILE {nofile}; CLK_TCK {}",
        if pin {
            "load generator on CPU 0, mock + proxies on CPU 1"
        } else {
            "none (taskset missing or 1 CPU)"
        },
        l.env.clk_tck
    );
    let _ = writeln!(
        report,
        "- mode: {}; load average at start: {}",
        if quick { "--quick" } else { "full" },
        loadavg()
    );
    report
}
