//! The in-process limiter: one small entry per key in a sharded map, each decision made under
//! its shard's lock (held for a few arithmetic operations, never across an await), so
//! concurrent requests for one key are decided one after another and cannot overshoot.
//!
//! Entries whose windows are all full again and that hold no stream are evicted on a timer:
//! such an entry is indistinguishable from a missing one, so eviction never changes a decision.

use super::gcra::{self, Plan, Window, SLOTS};
use super::{Key, Verdict};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

const SHARDS: usize = 64;
/// How often idle entries are evicted.
pub const EVICT_EVERY: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Entry {
    tats: [u64; SLOTS],
    streams: u32,
}

pub struct Memory {
    shards: Box<[Mutex<HashMap<Key, Entry>>]>,
    hasher: std::hash::RandomState,
    epoch: Instant,
}

impl Memory {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: std::hash::RandomState::new(),
            epoch: Instant::now(),
        })
    }

    /// Nanoseconds on this limiter's clock.
    pub fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn shard(&self, key: &Key) -> MutexGuard<'_, HashMap<Key, Entry>> {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        // A panic while holding a shard cannot leave an entry half-written (plain integers),
        // so a poisoned shard is still sound to use.
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Decides `plan` for `key` at `now`; with `max_streams > 0` the admitted request also
    /// takes one of the key's stream slots, to be given back with `release`.
    pub fn decide(&self, key: &Key, plan: &Plan, max_streams: u32, now: u64) -> Verdict {
        let mut shard = self.shard(key);
        let entry = match shard.get_mut(key) {
            Some(e) => e,
            None => shard.entry(key.clone()).or_default(),
        };
        if max_streams > 0 && entry.streams >= max_streams {
            return Verdict::Streams;
        }
        let out = gcra::decide(&mut entry.tats, plan, now);
        match out.denied {
            Some(denial) => Verdict::Deny {
                denial,
                status: out.status,
            },
            None => {
                let counted = max_streams > 0;
                entry.streams += u32::from(counted);
                Verdict::Admit {
                    status: out.status,
                    counted,
                }
            }
        }
    }

    /// Gives back a stream slot taken by `decide`.
    pub fn release(&self, key: &Key) {
        if let Some(e) = self.shard(key).get_mut(key) {
            e.streams = e.streams.saturating_sub(1);
        }
    }

    /// Moves one window of `key` by `delta` units (see `gcra::adjust`).
    pub fn adjust(&self, key: &Key, slot: usize, w: Window, delta: i64, now: u64) {
        let mut shard = self.shard(key);
        let entry = match shard.get_mut(key) {
            Some(e) => e,
            None if delta > 0 => shard.entry(key.clone()).or_default(),
            None => return,
        };
        gcra::adjust(&mut entry.tats[slot], w, delta, now);
    }

    /// Forgets every key that holds nothing any more; returns how many were forgotten.
    pub fn evict(&self, now: u64) -> usize {
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
            let before = map.len();
            map.retain(|_, e| e.streams > 0 || !gcra::idle(&e.tats, now));
            removed += before - map.len();
            // Give the memory back too, not only the entries.
            if map.capacity() > 64 && map.capacity() > 4 * map.len() {
                map.shrink_to_fit();
            }
        }
        removed
    }

    /// Keys held now, and the entries the maps have room for.
    pub fn size(&self) -> (usize, usize) {
        self.shards.iter().fold((0, 0), |(n, cap), s| {
            let m = s.lock().unwrap_or_else(|p| p.into_inner());
            (n + m.len(), cap + m.capacity())
        })
    }

    /// Evicts idle keys every `every` for as long as the limiter exists.
    pub fn spawn_eviction(self: &Arc<Self>, every: Duration) {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(mem) = weak.upgrade() else { return };
                let removed = mem.evict(mem.now());
                if removed > 0 {
                    tracing::debug!(removed, "rate limit: idle keys evicted");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::gcra::{MINUTE_NS, REQ_MINUTE};
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn plan(per_minute: u64) -> Plan {
        let mut p = Plan::default();
        p.slots[REQ_MINUTE] = Some((Window::per(MINUTE_NS, per_minute, 0).unwrap(), 1));
        p
    }

    #[test]
    fn a_thousand_threads_against_a_limit_of_100_admit_exactly_100() {
        let mem = Memory::new();
        let key = Key::Id("team-a".into());
        let now = mem.now();
        let admitted = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..125 {
                        if let Verdict::Admit { .. } = mem.decide(&key, &plan(100), 0, now) {
                            admitted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.into_inner(), 100);
    }

    #[test]
    fn streams_are_counted_and_released() {
        let mem = Memory::new();
        let key = Key::Id("a".into());
        let p = Plan::default();
        assert!(matches!(
            mem.decide(&key, &p, 2, 0),
            Verdict::Admit { counted: true, .. }
        ));
        assert!(matches!(mem.decide(&key, &p, 2, 0), Verdict::Admit { .. }));
        assert!(matches!(mem.decide(&key, &p, 2, 0), Verdict::Streams));
        mem.release(&key);
        assert!(matches!(mem.decide(&key, &p, 2, 0), Verdict::Admit { .. }));
        // A key holding streams survives eviction even when its windows are idle.
        assert_eq!(mem.evict(u64::MAX), 0);
    }

    #[test]
    fn a_million_distinct_ips_are_evicted_once_idle() {
        let mem = Memory::new();
        let p = plan(60);
        let now = 1;
        for i in 0..1_000_000u32 {
            let key = Key::Ip(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)));
            assert!(matches!(
                mem.decide(&key, &p, 0, now),
                Verdict::Admit { .. }
            ));
        }
        let (len, cap) = mem.size();
        assert_eq!(len, 1_000_000);
        assert!(cap >= len);
        // Still within their window: nothing may be forgotten yet.
        assert_eq!(mem.evict(now + MINUTE_NS / 120), 0);
        // One request per IP refills after one interval (1 s at 60/minute).
        assert_eq!(mem.evict(now + MINUTE_NS / 60), 1_000_000);
        let (len, cap) = mem.size();
        assert_eq!(len, 0);
        assert!(
            cap <= SHARDS * 64,
            "maps gave their memory back: capacity {cap}"
        );
    }
}
