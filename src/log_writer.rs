//! Where access lines go: a shared buffer that one writer thread empties into stdout.
//!
//! One `write` per request was a quarter of llmgate's CPU for small requests (BENCHMARKS.md):
//! here a request only appends its line under a short lock, and the writer thread sends
//! whatever piled up at most every `[log] access_log_flush` (or sooner, once 64 KiB wait).
//! A slow stdout reader never stalls the proxy: the writer thread blocks, not the runtime, and
//! past 8 MiB of backlog lines are dropped and counted rather than held without bound.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

/// A backlog this large wakes the writer before its interval is up.
const FLUSH_AT: usize = 64 * 1024;
/// Lines beyond this backlog are dropped (and counted) instead of buffered.
const MAX_BACKLOG: usize = 8 * 1024 * 1024;

/// Lines dropped because stdout could not keep up; read by the metrics endpoint.
pub static DROPPED: AtomicU64 = AtomicU64::new(0);
/// The flush interval in microseconds; 0 writes every line at once.
static INTERVAL_US: AtomicU64 = AtomicU64::new(100_000);

struct Sink {
    pending: Mutex<Vec<u8>>,
    wake: Condvar,
    /// Held while a batch is written, so batches reach stdout in the order they were taken.
    io: Mutex<()>,
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// Sets the flush interval (`[log] access_log_flush`); zero writes each line as it comes.
pub fn set_interval(d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    INTERVAL_US.store(us, Ordering::Relaxed);
}

/// Queues one complete line (ending in `\n`).
pub fn write_line(line: &[u8]) {
    if INTERVAL_US.load(Ordering::Relaxed) == 0 {
        let _ = std::io::stdout().lock().write_all(line);
        return;
    }
    let sink = sink();
    if sink.push(line) {
        sink.wake.notify_one();
    }
}

impl Sink {
    fn new() -> Sink {
        Sink {
            pending: Mutex::new(Vec::with_capacity(FLUSH_AT)),
            wake: Condvar::new(),
            io: Mutex::new(()),
        }
    }

    /// Appends a line; true when the writer should be woken.
    fn push(&self, line: &[u8]) -> bool {
        let Ok(mut buf) = self.pending.lock() else {
            return false;
        };
        if buf.len() + line.len() > MAX_BACKLOG {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let before = buf.len();
        buf.extend_from_slice(line);
        // The writer sleeps until there is something to write, then waits one interval to
        // gather more; it is only woken again early when the batch grows large.
        before == 0 || (before < FLUSH_AT && buf.len() >= FLUSH_AT)
    }
}

/// Writes everything queued so far; called before the process exits.
pub fn flush() {
    if let Some(sink) = SINK.get() {
        write_batch(sink);
    }
}

fn sink() -> &'static Sink {
    SINK.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("llmgate-log".into())
            .spawn(writer);
        if let Err(e) = spawned {
            // Without the thread nothing would empty the buffer: write lines directly.
            INTERVAL_US.store(0, Ordering::Relaxed);
            eprintln!("llmgate: cannot start the access-log writer ({e}); writing unbuffered");
        }
        Sink::new()
    })
}

fn writer() {
    let sink = sink();
    loop {
        {
            let Ok(mut buf) = sink.pending.lock() else {
                return;
            };
            while buf.is_empty() {
                buf = match sink.wake.wait(buf) {
                    Ok(b) => b,
                    Err(_) => return,
                };
            }
            let interval = Duration::from_micros(INTERVAL_US.load(Ordering::Relaxed));
            if buf.len() < FLUSH_AT {
                let _ = sink
                    .wake
                    .wait_timeout_while(buf, interval, |b| b.len() < FLUSH_AT);
            }
        }
        write_batch(sink);
    }
}

fn write_batch(sink: &Sink) {
    let Ok(_io) = sink.io.lock() else {
        return;
    };
    let batch = match sink.pending.lock() {
        Ok(mut buf) if !buf.is_empty() => {
            std::mem::replace(&mut *buf, Vec::with_capacity(FLUSH_AT))
        }
        _ => return,
    };
    let _ = std::io::stdout().lock().write_all(&batch);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_the_writer_on_the_first_line_and_on_a_large_batch_only() {
        let sink = Sink::new();
        assert!(sink.push(b"first\n"));
        assert!(!sink.push(b"second\n"));
        let big = vec![b'x'; FLUSH_AT];
        assert!(sink.push(&big));
        assert!(!sink.push(b"more\n"));
    }

    #[test]
    fn a_full_backlog_drops_and_counts() {
        let sink = Sink::new();
        sink.pending.lock().unwrap().resize(MAX_BACKLOG - 4, b' ');
        let before = DROPPED.load(Ordering::Relaxed);
        assert!(!sink.push(b"dropped\n"));
        assert!(DROPPED.load(Ordering::Relaxed) > before);
        assert_eq!(sink.pending.lock().unwrap().len(), MAX_BACKLOG - 4);
    }
}
