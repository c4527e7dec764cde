//! The soak by hand, against the release binary:
//!
//! ```text
//! cargo bench --bench soak -- --duration 600 [--warmup 60] [--workers 16] [--every 10]
//! LLMGATE_BIN=/path/to/llmgate cargo bench --bench soak -- --duration 60
//! ```
//!
//! Prints a sample row every `--every` seconds, outcomes per kind and a verdict; exits 1 when
//! the verdict is FAIL. What is judged is described in tests/soak/soak.rs.

#[path = "../tests/soak/soak.rs"]
mod soak;

use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|v| {
                v.parse::<u64>()
                    .unwrap_or_else(|_| panic!("{name} takes a whole number, not {v:?}"))
            })
    };
    let duration = arg("--duration").unwrap_or(60);
    let warmup = arg("--warmup").unwrap_or((duration / 10).clamp(5, 60));
    let bin = std::env::var_os("LLMGATE_BIN")
        .map_or_else(|| env!("CARGO_BIN_EXE_llmgate").into(), Into::into);
    let report = soak::run(&soak::Opts {
        bin,
        duration: Duration::from_secs(duration),
        warmup: Duration::from_secs(warmup),
        workers: arg("--workers").unwrap_or(16) as usize,
        print_every: arg("--every").unwrap_or(if duration > 120 { 10 } else { 1 }) as usize,
    });
    report.print();
    if !report.passed() {
        std::process::exit(1);
    }
}
