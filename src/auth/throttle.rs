//! Failed credentials per client address: past `max_failures_per_ip` within `failure_window`
//! the address gets 429 before its credentials cost a lookup or an upstream call. Memory is
//! bounded: at most `MAX_TRACKED` addresses, each forgotten when its window ends.

use moka::sync::Cache;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MAX_TRACKED: u64 = 100_000;

pub struct Throttle {
    max: u32,
    window: Duration,
    failures: Cache<IpAddr, Arc<Window>>,
    /// When the last failure was counted (ms since `epoch`, 0: never), so that while nobody
    /// fails, checking an address costs one atomic load instead of a cache lookup.
    last_failure: AtomicU64,
    epoch: Instant,
}

struct Window {
    start: Instant,
    count: AtomicU32,
}

impl Throttle {
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            failures: Cache::builder()
                .max_capacity(MAX_TRACKED)
                .time_to_live(window)
                .build(),
            last_failure: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        // +1 keeps 0 meaning "never".
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// Seconds until `ip` may try again, when it is blocked now.
    pub fn blocked(&self, ip: IpAddr) -> Option<u64> {
        let last = self.last_failure.load(Ordering::Acquire);
        if self.max == 0
            || last == 0
            || self.now_ms().saturating_sub(last) > self.window.as_millis() as u64
        {
            return None;
        }
        let w = self.failures.get(&key(ip))?;
        if w.count.load(Ordering::Relaxed) < self.max {
            return None;
        }
        let left = self.window.saturating_sub(w.start.elapsed());
        Some(left.as_secs() + u64::from(left.subsec_nanos() > 0))
    }

    pub fn fail(&self, ip: IpAddr) {
        if self.max == 0 {
            return;
        }
        let w = self.failures.get_with(key(ip), || {
            Arc::new(Window {
                start: Instant::now(),
                count: AtomicU32::new(0),
            })
        });
        w.count.fetch_add(1, Ordering::Relaxed);
        self.last_failure.store(self.now_ms(), Ordering::Release);
    }
}

/// IPv6 clients usually own a whole /64, so that is what counts as one address.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_max_failures_per_address() {
        let t = Throttle::new(3, Duration::from_secs(60));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(t.blocked(a), None);
            t.fail(a);
        }
        assert!(matches!(t.blocked(a), Some(59..=60)));
        assert_eq!(t.blocked("10.0.0.2".parse().unwrap()), None);
        for _ in 0..3 {
            t.fail(b);
        }
        assert!(t.blocked("2001:db8::ffff".parse().unwrap()).is_some());
        assert!(t.blocked("2001:db9::1".parse().unwrap()).is_none());
        assert!(Throttle::new(0, Duration::from_secs(1))
            .blocked(a)
            .is_none());
    }
}
