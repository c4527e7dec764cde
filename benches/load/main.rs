//! Load benchmark for llmgate: the mock upstream directly, through llmgate and
//! through nginx, side by side in one run.
//!
//! Run:   `cargo bench --bench load`            (full run, about 2 minutes)
//!        `cargo bench --bench load -- --quick` (about 30 seconds)
//! Extra: `--only held,models,chat,sse,tput`  run a subset of the scenarios
//!        `--held-cycles N`                   open and close the held streams N times (1..5)
//!        `--keep`                            keep the temp dir (configs, logs)
//!        `--held N`                          number of held streams
//!        `LLMGATE_BIN=/path/to/llmgate`      measure another llmgate binary
//!
//! Processes: this program re-executes itself through `sh -c 'ulimit -n 65536;
//! exec taskset -c 0 ...'` so that it has enough file descriptors for 5000+
//! sockets and runs pinned on CPU 0 (the load generator, a current-thread tokio
//! runtime). The mock upstream is this same executable started with
//! `--mock-upstream PORTFILE`; the mock, llmgate and nginx all run on CPU 1.
//! CPU time of a process is read from /proc/PID/stat (utime + stime), memory
//! from VmRSS in /proc/PID/status. Only loopback addresses are used, and every
//! load loop is bounded by a deadline and a request count.

mod bare;
mod child;
mod facts;
mod held;
mod http;
mod llmgate;
mod mock;
mod mock_body;
mod nginx;
mod opts;
mod proc;
mod procfs;
mod report;
mod requests;
mod rr;
mod run;
mod sse;
mod sse_latency;
mod stats;
mod summary;
mod targets;
mod tput;
mod util;

use facts::pinning_available;
use opts::Opts;
use std::path::Path;
use std::process::Command;

/// Set in the environment of the re-executed benchmark process.
const ENV_INNER: &str = "LLMGATE_LOADBENCH_INNER";
/// RLIMIT_NOFILE asked for (soft and hard) through `ulimit -n`.
const NOFILE: u64 = 65536;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--mock-upstream") {
        let Some(portfile) = args.get(i + 1) else {
            eprintln!("--mock-upstream needs a PORTFILE argument");
            std::process::exit(2);
        };
        mock::run(Path::new(portfile));
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--bare-proxy") {
        let (Some(portfile), Some(Ok(port))) =
            (args.get(i + 1), args.get(i + 2).map(|p| p.parse::<u16>()))
        else {
            eprintln!("--bare-proxy needs PORTFILE and the upstream PORT");
            std::process::exit(2);
        };
        bare::run(Path::new(portfile), port);
        return;
    }
    if std::env::var_os(ENV_INNER).is_none() {
        std::process::exit(reexec(&args));
    }
    let opts = match Opts::parse(&args[1..]) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("load bench: {e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    // Ctrl-C drops the run, and with it every child process (see `Proc`).
    let code = rt.block_on(async {
        tokio::select! {
            code = run::run(opts) => code,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("load bench: interrupted");
                130
            }
        }
    });
    drop(rt);
    std::process::exit(code);
}

/// Re-executes this program through `sh` with a raised RLIMIT_NOFILE, pinned
/// on CPU 0 when `taskset` works. Returns the exit code of the inner run.
fn reexec(args: &[String]) -> i32 {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("load bench: current_exe: {e}");
            return 1;
        }
    };
    let exec = if pinning_available() {
        "exec taskset -c 0 \"$0\" \"$@\""
    } else {
        "exec \"$0\" \"$@\""
    };
    let script = format!(
        "ulimit -n {NOFILE} 2>/dev/null || ulimit -n \"$(ulimit -Hn)\" 2>/dev/null; {exec}"
    );
    match Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(exe)
        .args(&args[1..])
        .env(ENV_INNER, "1")
        .status()
    {
        Ok(s) => s.code().unwrap_or(1),
        Err(e) => {
            eprintln!("load bench: cannot run sh: {e}");
            1
        }
    }
}
