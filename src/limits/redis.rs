//! The shared limiter: every decision is one Lua script run in Redis (one round trip, atomic
//! across all replicas), over a small pool of multiplexed connections that reconnect on their
//! own, each call bounded by `redis_timeout`.
//!
//! Open streams are leases in a sorted set: released when the response ends, renewed while it
//! flows, and expired after `LEASE` if the replica holding them dies.

use super::gcra::{Denial, Plan, Status, Window, SLOTS};
use super::{Key, Verdict};
use crate::config::RateLimitConfig;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

const LEASE: Duration = Duration::from_secs(30);
const RENEW_EVERY: Duration = Duration::from_secs(10);

pub struct RedisStore {
    pool: Vec<ConnectionManager>,
    next: AtomicUsize,
    timeout: Duration,
    prefix: String,
    admit: Script,
    renew: Script,
    reconcile: Script,
    /// Leases held by this process: id -> (lease set key, member).
    leases: Mutex<HashMap<u64, (String, String)>>,
    /// Makes lease members unique across replicas.
    process: String,
    counter: AtomicU64,
}

/// A stream slot taken in Redis, given back with `release`.
pub struct Lease {
    id: u64,
}

impl RedisStore {
    /// Connects lazily: llmgate starts (and `on_backend_error` applies) while Redis is down.
    pub fn new(cfg: &RateLimitConfig) -> Result<Arc<Self>, RedisError> {
        let client = redis::Client::open(cfg.redis_url.0.as_str())?;
        let timeout = cfg.redis_timeout.0;
        let conf = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout.max(Duration::from_millis(500))))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1));
        let pool = (0..cfg.redis_pool_size)
            .map(|_| ConnectionManager::new_lazy_with_config(client.clone(), conf.clone()))
            .collect::<Result<_, _>>()?;
        let store = Arc::new(Self {
            pool,
            next: AtomicUsize::new(0),
            timeout,
            prefix: cfg.redis_key_prefix.clone(),
            admit: Script::new(include_str!("admit.lua")),
            renew: Script::new(include_str!("renew.lua")),
            reconcile: Script::new(include_str!("reconcile.lua")),
            leases: Mutex::default(),
            process: format!("{:016x}", rand::random::<u64>()),
            counter: AtomicU64::new(0),
        });
        spawn_renewal(Arc::downgrade(&store));
        Ok(store)
    }

    fn conn(&self) -> ConnectionManager {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.pool.len();
        self.pool[i].clone()
    }

    /// `{prefix}{tag}:w` (windows) and `{prefix}{tag}:s` (streams); the braces keep both in
    /// one Redis Cluster slot.
    fn keys(&self, key: &Key) -> (String, String) {
        let tag = match key {
            Key::Id(id) => format!("{}{{id:{id}}}", self.prefix),
            Key::Ip(ip) => format!("{}{{ip:{ip}}}", self.prefix),
        };
        (format!("{tag}:w"), format!("{tag}:s"))
    }

    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, RedisError>>,
    ) -> Result<T, RedisError> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer from Redis within {:?}", self.timeout),
            )
            .into()),
        }
    }

    pub async fn decide(
        &self,
        key: &Key,
        plan: &Plan,
        max_streams: u32,
    ) -> Result<(Verdict, Option<Lease>), RedisError> {
        let (windows, streams) = self.keys(key);
        let lease_id = self.counter.fetch_add(1, Ordering::Relaxed);
        let member = format!("{}-{lease_id}", self.process);
        let mut inv = self.admit.key(&windows);
        inv.key(&streams)
            .arg(max_streams)
            .arg(&member)
            .arg(LEASE.as_millis() as u64);
        for slot in &plan.slots {
            match slot {
                Some((w, cost)) => inv
                    .arg((w.interval / 1000).max(1))
                    .arg(w.capacity)
                    .arg(*cost),
                None => inv.arg(0).arg(0).arg(0),
            };
        }
        let mut conn = self.conn();
        let r: Vec<i64> = self.bounded(inv.invoke_async(&mut conn)).await?;
        if r.len() != 3 + 2 * SLOTS {
            return Err(RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "admit script returned an unexpected shape",
            )));
        }
        let us = |v: i64| u64::try_from(v).unwrap_or(0).saturating_mul(1000);
        let mut status = [None; SLOTS];
        for (i, s) in status.iter_mut().enumerate() {
            if plan.slots[i].is_some() {
                *s = Some(Status {
                    remaining: u64::try_from(r[3 + 2 * i]).unwrap_or(0),
                    reset: us(r[4 + 2 * i]),
                });
            }
        }
        Ok(match r[0] {
            0 if max_streams > 0 => {
                self.lock_leases().insert(lease_id, (streams, member));
                (
                    Verdict::Admit {
                        status,
                        counted: true,
                    },
                    Some(Lease { id: lease_id }),
                )
            }
            0 => (
                Verdict::Admit {
                    status,
                    counted: false,
                },
                None,
            ),
            1 => (
                Verdict::Deny {
                    denial: Denial {
                        slot: usize::try_from(r[1]).unwrap_or(0).min(SLOTS - 1),
                        retry_after: (r[2] >= 0).then(|| us(r[2])),
                    },
                    status,
                },
                None,
            ),
            _ => (Verdict::Streams, None),
        })
    }

    /// Moves the key's token windows by `delta` tokens (a reservation replaced by usage).
    pub async fn reconcile(
        &self,
        key: &Key,
        windows: [Option<Window>; 2],
        delta: i64,
    ) -> Result<(), RedisError> {
        let (hash, _) = self.keys(key);
        let mut inv = self.reconcile.key(&hash);
        inv.arg(delta);
        for w in windows {
            match w {
                Some(w) => inv.arg((w.interval / 1000).max(1)).arg(w.capacity),
                None => inv.arg(0).arg(0),
            };
        }
        let mut conn = self.conn();
        self.bounded(inv.invoke_async::<i64>(&mut conn)).await?;
        Ok(())
    }

    fn lock_leases(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (String, String)>> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives a stream slot back, in the background; if Redis cannot be told, the lease
    /// expires on its own.
    pub fn release(self: &Arc<Self>, lease: &Lease) {
        let Some((set, member)) = self.lock_leases().remove(&lease.id) else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let store = self.clone();
        rt.spawn(async move {
            let mut conn = store.conn();
            let cmd = redis::cmd("ZREM").arg(&set).arg(&member).to_owned();
            if let Err(e) = store
                .bounded(cmd.query_async::<i64>(&mut conn))
                .await
            {
                tracing::debug!(error = %e, "rate limit: stream lease not released; it will expire");
            }
        });
    }

    async fn renew_all(&self) -> Result<(), RedisError> {
        let held: Vec<(String, String)> = self.lock_leases().values().cloned().collect();
        for chunk in held.chunks(256) {
            let mut inv = self.renew.prepare_invoke();
            inv.arg(LEASE.as_millis() as u64);
            for (set, member) in chunk {
                inv.key(set).arg(member);
            }
            let mut conn = self.conn();
            self.bounded(inv.invoke_async::<i64>(&mut conn)).await?;
        }
        Ok(())
    }
}

fn spawn_renewal(weak: Weak<RedisStore>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RENEW_EVERY);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(store) = weak.upgrade() else { return };
            if let Err(e) = store.renew_all().await {
                tracing::debug!(error = %e, "rate limit: stream leases not renewed");
            }
        }
    });
}

/// Why a Redis decision was not made.
pub enum BackendError {
    Redis(RedisError),
    /// Redis failed moments ago and this request is not the one probing it.
    Down,
}

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Redis(e) => write!(f, "{e}"),
            Self::Down => f.write_str("Redis failed moments ago"),
        }
    }
}
