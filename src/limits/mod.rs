//! Rate limits: requests per minute and per day, concurrent streams, and (with budgets) tokens,
//! per identity, or per client IP for requests without one. Decisions are exact: concurrent
//! requests for one key are decided one after another, in this process (`memory`) or in Redis
//! for all replicas together (`redis`).
//!
//! `admit` is the request path's step; the `Admission` it returns rides on the `Exchange`
//! until the response body ends or drops, which gives the stream slot back.

mod answer;
mod client_ip;
mod gcra;
mod memory;
mod redis;
mod tokens;
mod usage_edit;

pub use answer::{Limit, RateHeaders, Refusal};
pub use gcra::{Plan, Window, MINUTE_NS, TOK_MINUTE};
pub use memory::Memory;
pub use tokens::{Ask, Budget, READ_AHEAD};
pub use usage_edit::UsageStrip;

use crate::body::RequestBody;
use crate::config::{Backend, OnBackendError, RateLimitConfig};
use crate::error::ProxyError;
use crate::identity::{Identity, KeyLimits};
use crate::metrics::Metrics;
use crate::models::{BodyFacts, ReadAhead};
use answer::{headers, limit_of, retry_secs};
use gcra::{Denial, Status, DAY_NS, REQ_DAY, REQ_MINUTE, SLOTS, TOK_DAY};
use http::request::Parts;
use ipnet::IpNet;
use redis::{BackendError, Lease, RedisStore};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Whose allowance a request spends.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    Id(Arc<str>),
    Ip(IpAddr),
}

/// A backend's answer for one request.
#[derive(Debug)]
pub enum Verdict {
    Admit {
        status: [Option<Status>; SLOTS],
        /// The request holds one of the key's stream slots.
        counted: bool,
    },
    Deny {
        denial: Denial,
        status: [Option<Status>; SLOTS],
    },
    /// `max_concurrent_streams` reached.
    Streams,
}

#[derive(Clone)]
pub(crate) enum Store {
    Memory(Arc<Memory>),
    Redis(Arc<RedisStore>),
}

/// The limits in force for one key.
#[derive(Clone, Copy, Debug)]
struct Quotas {
    rpm: u32,
    burst: u32,
    rpd: u32,
    streams: u32,
    tpm: u64,
    tpd: u64,
}

impl Quotas {
    fn with(mut self, o: &KeyLimits) -> Self {
        self.rpm = o.requests_per_minute.unwrap_or(self.rpm);
        self.burst = o.burst.unwrap_or(self.burst);
        self.rpd = o.requests_per_day.unwrap_or(self.rpd);
        self.streams = o.max_concurrent_streams.unwrap_or(self.streams);
        self.tpm = o.tokens_per_minute.unwrap_or(self.tpm);
        self.tpd = o.tokens_per_day.unwrap_or(self.tpd);
        self
    }

    fn budgeted(&self) -> bool {
        self.tpm > 0 || self.tpd > 0
    }

    /// Request windows cost 1; token windows cost the request's reservation (and are left
    /// out for requests that ask no tokens).
    fn plan(&self, ask: Option<&Ask>) -> Plan {
        let mut p = Plan::default();
        p.slots[REQ_MINUTE] =
            Window::per(MINUTE_NS, self.rpm.into(), self.burst.into()).map(|w| (w, 1));
        p.slots[REQ_DAY] = Window::per(DAY_NS, self.rpd.into(), 0).map(|w| (w, 1));
        if let Some(ask) = ask {
            let cost = ask.cost();
            p.slots[TOK_MINUTE] = Window::per(MINUTE_NS, self.tpm, 0).map(|w| (w, cost));
            p.slots[TOK_DAY] = Window::per(DAY_NS, self.tpd, 0).map(|w| (w, cost));
        }
        p
    }
}

pub struct Limits {
    store: Store,
    identity: Quotas,
    per_ip: Quotas,
    trusted: Vec<IpNet>,
    exempt: Vec<Box<str>>,
    on_error: OnBackendError,
    /// The backend's last call failed; flips are logged, not every failure.
    failing: AtomicBool,
    /// While Redis is down, requests get `on_backend_error` at once instead of each waiting
    /// `redis_timeout`; one probe per `PROBE_EVERY` finds out when it is back.
    next_probe: AtomicU64,
    epoch: Instant,
    default_completion: u64,
}

const PROBE_EVERY: Duration = Duration::from_millis(250);

/// A request let through: the headers it reports, the stream slot it holds, and its token
/// reservation, settled when its response ends.
pub struct Admission {
    headers: RateHeaders,
    _permit: Option<Permit>,
    pub budget: Option<Budget>,
}

impl Admission {
    pub fn write_headers(&self, h: &mut http::HeaderMap) {
        self.headers.write(h);
    }
}

/// One of a key's stream slots, given back when dropped.
pub struct Permit(Held);

enum Held {
    Memory(Arc<Memory>, Key),
    Redis(Arc<RedisStore>, Lease),
}

impl Drop for Permit {
    fn drop(&mut self) {
        match &self.0 {
            Held::Memory(m, key) => m.release(key),
            Held::Redis(r, lease) => r.release(lease),
        }
    }
}

impl Limits {
    /// Builds the limiter and starts its background tasks; call inside the runtime.
    pub fn new(cfg: &RateLimitConfig) -> Result<Self, String> {
        let store = match cfg.backend {
            Backend::Memory => {
                let m = Memory::new();
                m.spawn_eviction(memory::EVICT_EVERY);
                Store::Memory(m)
            }
            Backend::Redis => Store::Redis(
                RedisStore::new(cfg).map_err(|e| format!("rate_limit.redis_url: {e}"))?,
            ),
        };
        let identity = Quotas {
            rpm: cfg.requests_per_minute,
            burst: cfg.burst,
            rpd: cfg.requests_per_day,
            streams: cfg.max_concurrent_streams,
            tpm: cfg.tokens_per_minute,
            tpd: cfg.tokens_per_day,
        };
        Ok(Self {
            store,
            identity,
            per_ip: Quotas {
                rpm: cfg.unauthenticated_per_ip_per_minute,
                burst: 0,
                rpd: 0,
                ..identity
            },
            trusted: cfg
                .trusted_proxies
                .iter()
                .filter_map(|p| crate::config::parse_net(p))
                .collect(),
            exempt: cfg
                .exempt_routes
                .iter()
                .map(|r| r.as_str().into())
                .collect(),
            on_error: cfg.on_backend_error,
            failing: AtomicBool::new(false),
            next_probe: AtomicU64::new(0),
            epoch: Instant::now(),
            default_completion: cfg.default_completion_reservation,
        })
    }

    fn quotas(&self, identity: Option<&Identity>) -> Quotas {
        match identity {
            Some(id) => id
                .limits
                .as_ref()
                .map_or(self.identity, |o| self.identity.with(o)),
            None => self.per_ip,
        }
    }

    /// Reads ahead what a token budget needs (`max_tokens`, `stream`, ...) when one applies
    /// to this request; must run before the model guard takes over the body.
    pub async fn read_ahead(
        limits: Option<&Self>,
        route: &str,
        identity: Option<&Identity>,
        read: &mut ReadAhead,
        body: &mut RequestBody,
    ) -> Result<Option<BodyFacts>, ProxyError> {
        match limits {
            Some(l) if !l.exempt(route) && l.quotas(identity).budgeted() => {
                Ok(Some(read.for_budget(body, READ_AHEAD).await?))
            }
            _ => Ok(None),
        }
    }

    fn exempt(&self, route: &str) -> bool {
        self.exempt.iter().any(|r| &**r == route)
    }

    /// The request path's rate limit step: `Ok(None)` when nothing limits this request,
    /// `Ok(Some)` when it is let through, else a 429 (or a 503 while the backend is down and
    /// `on_backend_error = "deny"`). With a token budget, `facts` (from `read_ahead`) give the
    /// reservation, and an admitted streaming request is edited to report its usage.
    pub async fn admit(
        &self,
        route: &str,
        parts: &mut Parts,
        body: &mut RequestBody,
        facts: Option<BodyFacts>,
        peer: IpAddr,
        metrics: &Metrics,
    ) -> Result<Option<Admission>, ProxyError> {
        if self.exempt(route) {
            return Ok(None);
        }
        let identity = parts.extensions.get::<Identity>();
        let quotas = self.quotas(identity);
        let key = match identity {
            Some(id) => Key::Id(id.id.clone()),
            None => Key::Ip(client_ip::client_ip(peer, &parts.headers, &self.trusted)),
        };
        let ask = facts.as_ref().and_then(|f| {
            let len = crate::app::content_length(&parts.headers);
            Ask::of(f, body.buffered(), len, self.default_completion)
        });
        let plan = quotas.plan(ask.as_ref());
        if plan.is_empty() && quotas.streams == 0 {
            return Ok(None);
        }
        let decided = match &self.store {
            Store::Memory(m) => {
                let v = m.decide(&key, &plan, quotas.streams, m.now());
                let held = matches!(v, Verdict::Admit { counted: true, .. })
                    .then(|| Permit(Held::Memory(m.clone(), key.clone())));
                Ok((v, held))
            }
            Store::Redis(r) => {
                if self.failing.load(Ordering::Relaxed) && !self.probe_turn() {
                    Err(BackendError::Down)
                } else {
                    r.decide(&key, &plan, quotas.streams)
                        .await
                        .map(|(v, lease)| (v, lease.map(|l| Permit(Held::Redis(r.clone(), l)))))
                        .map_err(BackendError::Redis)
                }
            }
        };
        let (verdict, permit) = match decided {
            Ok(d) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("rate limit backend reachable again; limits are enforced");
                }
                d
            }
            Err(e) => return self.backend_failed(e, metrics),
        };
        let is_ip = matches!(key, Key::Ip(_));
        match verdict {
            Verdict::Admit { status, .. } => {
                let budget = ask.map(|ask| {
                    let windows = [TOK_MINUTE, TOK_DAY].map(|i| plan.slots[i].map(|(w, _)| w));
                    tokens::admitted(&self.store, key, windows, ask, facts, parts, body)
                });
                Ok(Some(Admission {
                    headers: headers(&plan, &status),
                    _permit: permit,
                    budget,
                }))
            }
            Verdict::Deny { denial, status } => {
                let limit = limit_of(denial.slot, is_ip);
                metrics.ratelimited.with_label_values(&[limit.key()]).inc();
                let value = match denial.slot {
                    REQ_DAY => u64::from(quotas.rpd),
                    TOK_MINUTE => quotas.tpm,
                    TOK_DAY => quotas.tpd,
                    _ => u64::from(quotas.rpm),
                };
                Err(ProxyError::RateLimited(Box::new(Refusal {
                    limit,
                    value,
                    burst: (limit == Limit::RequestsPerMinute).then_some(quotas.burst.into()),
                    retry_after: denial.retry_after.map(retry_secs),
                    cost: plan.slots[denial.slot].map_or(0, |(_, c)| c),
                    headers: headers(&plan, &status),
                })))
            }
            Verdict::Streams => {
                let limit = Limit::ConcurrentStreams;
                metrics.ratelimited.with_label_values(&[limit.key()]).inc();
                Err(ProxyError::RateLimited(Box::new(Refusal {
                    limit,
                    value: quotas.streams.into(),
                    burst: None,
                    retry_after: Some(1),
                    cost: 0,
                    headers: RateHeaders::default(),
                })))
            }
        }
    }

    /// While Redis is failing: true for one request per `PROBE_EVERY`, which asks it again.
    fn probe_turn(&self) -> bool {
        let now = self.epoch.elapsed().as_nanos() as u64;
        let at = self.next_probe.load(Ordering::Relaxed);
        now >= at
            && self
                .next_probe
                .compare_exchange(
                    at,
                    now + PROBE_EVERY.as_nanos() as u64,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    fn backend_failed(
        &self,
        e: BackendError,
        metrics: &Metrics,
    ) -> Result<Option<Admission>, ProxyError> {
        let action = match self.on_error {
            OnBackendError::Deny => "deny",
            OnBackendError::Allow => "allow",
        };
        metrics
            .ratelimit_backend_errors
            .with_label_values(&[action])
            .inc();
        if !self.failing.swap(true, Ordering::Relaxed) {
            let now = self.epoch.elapsed().as_nanos() as u64;
            self.next_probe
                .store(now + PROBE_EVERY.as_nanos() as u64, Ordering::Relaxed);
            tracing::warn!(
                error = %e,
                on_backend_error = action,
                "rate limit backend unreachable; requests are {} until it answers again",
                if action == "deny" { "refused with 503" } else { "let through unchecked" }
            );
        }
        match self.on_error {
            OnBackendError::Deny => Err(ProxyError::RateLimitUnavailable),
            OnBackendError::Allow => Ok(None),
        }
    }

    /// The in-process limiter, when that is the backend (for tests and benchmarks).
    pub fn memory(&self) -> Option<&Arc<Memory>> {
        match &self.store {
            Store::Memory(m) => Some(m),
            Store::Redis(_) => None,
        }
    }
}
