//! Statistics and number formatting for the tables: percentiles, ms, optional figures.

/// The `p`th percentile of sorted samples (0 when there are none).
pub fn pct(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub fn ms(ns_or_us: i64, div: f64) -> String {
    format!("{:.2}", ns_or_us as f64 / div)
}

pub fn signed_ms(v: i64, div: f64) -> String {
    format!("{:+.2}", v as f64 / div)
}

pub fn fmt_opt(v: Option<f64>, prec: usize) -> String {
    match v {
        Some(x) => format!("{x:.prec$}"),
        None => "-".into(),
    }
}

/// `v / direct` as "0.00", or "-" without a direct figure.
pub fn vs_direct(v: f64, direct: Option<f64>) -> String {
    direct
        .map(|d| format!("{:.2}", v / d))
        .unwrap_or_else(|| "-".into())
}
