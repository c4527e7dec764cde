//! The access log line, formatted by hand: one request must not cost more in logging than in
//! proxying (tracing's JSON formatter was a quarter of all instructions per request).
//! The line has the shape of the other log lines (timestamp, level, target, fields) and is
//! handed to the log writer in one piece (`log_writer.rs`).

use crate::config::LogFormat;
use crate::error::json_string;
use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

pub const TARGET: &str = "llmgate::access";

/// Whether access lines are wanted now: `[log] access_log` and the level filter both agree.
pub fn enabled() -> bool {
    tracing::enabled!(target: "llmgate::access", tracing::Level::INFO)
}

thread_local! {
    static BUF: RefCell<String> = RefCell::new(String::with_capacity(512));
}

/// Builds one line in a reused per-thread buffer; `write` sends it.
pub struct Line<'a> {
    buf: &'a mut String,
    format: LogFormat,
}

impl Line<'_> {
    /// Formats a line with `fill` and writes it to stdout.
    pub fn emit(format: LogFormat, fill: impl FnOnce(&mut Line<'_>)) {
        BUF.with(|b| {
            let Ok(mut buf) = b.try_borrow_mut() else {
                return;
            };
            buf.clear();
            match format {
                LogFormat::Json => {
                    buf.push_str("{\"timestamp\":\"");
                    timestamp(&mut buf);
                    buf.push_str("\",\"level\":\"INFO\",\"target\":\"llmgate::access\"");
                }
                LogFormat::Text => {
                    timestamp(&mut buf);
                    buf.push_str("  INFO llmgate::access:");
                }
            }
            let mut line = Line {
                buf: &mut buf,
                format,
            };
            fill(&mut line);
            line.buf.push_str(if format == LogFormat::Json {
                "}\n"
            } else {
                "\n"
            });
            crate::log_writer::write_line(line.buf.as_bytes());
        });
    }

    fn key(&mut self, key: &str) {
        match self.format {
            LogFormat::Json => {
                self.buf.push_str(",\"");
                self.buf.push_str(key);
                self.buf.push_str("\":");
            }
            LogFormat::Text => {
                self.buf.push(' ');
                self.buf.push_str(key);
                self.buf.push('=');
            }
        }
    }

    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        json_string(self.buf, value);
        self
    }

    pub fn num(&mut self, key: &str, value: u64) -> &mut Self {
        self.key(key);
        push_uint(self.buf, value, 1);
        self
    }

    /// Milliseconds with microsecond precision.
    pub fn ms(&mut self, key: &str, d: std::time::Duration) -> &mut Self {
        self.key(key);
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        push_uint(self.buf, us / 1000, 1);
        self.buf.push('.');
        push_uint(self.buf, us % 1000, 3);
        self
    }
}

/// RFC 3339 UTC with microseconds, e.g. `2026-11-25T15:19:26.440434Z`.
fn timestamp(out: &mut String) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    push_uint(out, y.max(0) as u64, 4);
    out.push('-');
    push_uint(out, u64::from(m), 2);
    out.push('-');
    push_uint(out, u64::from(d), 2);
    out.push('T');
    push_uint(out, rem / 3600, 2);
    out.push(':');
    push_uint(out, rem % 3600 / 60, 2);
    out.push(':');
    push_uint(out, rem % 60, 2);
    out.push('.');
    push_uint(out, u64::from(now.subsec_micros()), 6);
    out.push('Z');
}

/// Decimal digits of `n`, zero-padded to at least `width`, without the `fmt` machinery.
fn push_uint(out: &mut String, mut n: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    while n > 0 || digits.len() - i < width.max(1) {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend(digits[i..].iter().map(|&b| b as char));
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_numbers() {
        let mut s = String::new();
        push_uint(&mut s, 7, 3);
        push_uint(&mut s, 0, 1);
        push_uint(&mut s, 1234567, 2);
        push_uint(&mut s, u64::MAX, 1);
        assert_eq!(s, format!("00701234567{}", u64::MAX));
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_782), (2026, 11, 25));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
