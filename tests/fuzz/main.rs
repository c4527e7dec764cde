//! Fuzzing on the stable toolchain: property tests with generated inputs, one module per
//! attack surface. Each property runs a bounded number of cases so the whole suite stays
//! well under a minute on two cores; for a long run by hand raise the count:
//!
//! ```text
//! PROPTEST_CASES=200000 cargo test --release --test fuzz
//! ```
//!
//! A failing case is shrunk and its seed appended to `tests/fuzz-regressions/MODULE.txt`
//! (commit it: it is replayed first on every run); cases worth reading are also kept as plain
//! `#[test]`s next to the property that found them.

mod config;
mod jwt;
mod models;
mod observe;
mod paths;

use proptest::test_runner::{Config, FileFailurePersistence};

/// `cases` unless `PROPTEST_CASES` says otherwise; failures persist to `file`.
pub fn cases(cases: u32, file: &'static str) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(file))),
        ..Config::default()
    }
}

/// Sorted, deduplicated cut points inside `len`, from arbitrary positions.
pub fn cut_points(raw: &[usize], len: usize) -> Vec<usize> {
    let mut cuts: Vec<usize> = raw.iter().map(|c| c % (len + 1)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

/// `data` cut at `cuts` (sorted), empty frames included where cuts repeat an end.
pub fn frames<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut from = 0;
    for &c in cuts {
        out.push(&data[from..c]);
        from = c;
    }
    out.push(&data[from..]);
    out
}
