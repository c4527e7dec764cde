//! A short soak in CI: 20 seconds of mixed traffic through the real binary must end with no
//! unexplained outcome and no growth after warm-up. The same soak runs for as long as asked
//! with `cargo bench --bench soak -- --duration 600` (see README, "Fuzzing and soak").

mod soak;

use std::time::Duration;

#[test]
fn mixed_traffic_soak_has_no_unexplained_errors_and_no_growth() {
    let report = soak::run(&soak::Opts {
        bin: env!("CARGO_BIN_EXE_llmgate").into(),
        duration: Duration::from_secs(20),
        warmup: Duration::from_secs(6),
        workers: 8,
        print_every: 1,
    });
    report.print();
    assert!(
        report.passed(),
        "soak failed:\n- {}",
        report.problems.join("\n- ")
    );
}
