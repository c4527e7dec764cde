//! `[rate_limit]`: request rates, token budgets and concurrent streams, per identity (or per
//! client IP for requests without one), kept in memory or shared through Redis.

use super::load::line_of;
use super::{ConfigError, Dur, Secret};
use serde::Deserialize;
use std::collections::HashSet;
use std::time::Duration;

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Per identity; up to this many (plus `burst`) at once, then refilled evenly over a
    /// minute. 0: no per-minute request limit.
    pub requests_per_minute: u32,
    /// Requests allowed at once on top of `requests_per_minute`: 0 means an idle identity can
    /// send exactly `requests_per_minute` requests at once.
    pub burst: u32,
    /// Per identity, refilled evenly over a day. 0: none.
    pub requests_per_day: u32,
    /// Token budget per identity, refilled evenly over a minute. 0: none.
    pub tokens_per_minute: u64,
    /// Token budget per identity, refilled evenly over a day. 0: none.
    pub tokens_per_day: u64,
    /// Responses one identity may have flowing at once. 0: unlimited.
    pub max_concurrent_streams: u32,
    /// Requests without an identity are limited per client IP instead. 0: no limit.
    pub unauthenticated_per_ip_per_minute: u32,
    pub backend: Backend,
    /// `redis://[user:password@]host:port[/db]`; only read with `backend = "redis"`.
    pub redis_url: Secret,
    /// Longest wait for one Redis decision before `on_backend_error` applies.
    pub redis_timeout: Dur,
    /// Redis connections shared by all requests (each one multiplexed).
    pub redis_pool_size: usize,
    /// Prefix of every Redis key llmgate writes, so several deployments can share one Redis.
    pub redis_key_prefix: String,
    pub on_backend_error: OnBackendError,
    /// Peers (CIDRs or addresses) whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<String>,
    /// Route names that are never limited (e.g. the browser UI's public assets).
    pub exempt_routes: Vec<String>,
    /// Completion tokens reserved for a request that names no `max_tokens`.
    pub default_completion_reservation: u64,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Memory,
    Redis,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnBackendError {
    /// Refuse with 503 while the limits cannot be checked: limits hold, availability suffers.
    Deny,
    /// Let requests through unchecked: availability holds, limits do not.
    Allow,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            requests_per_minute: 600,
            burst: 50,
            requests_per_day: 0,
            tokens_per_minute: 0,
            tokens_per_day: 0,
            max_concurrent_streams: 0,
            unauthenticated_per_ip_per_minute: 60,
            backend: Backend::Memory,
            redis_url: Secret("redis://127.0.0.1:6379".into()),
            redis_timeout: Dur(Duration::from_millis(250)),
            redis_pool_size: 4,
            redis_key_prefix: "llmgate:".into(),
            on_backend_error: OnBackendError::Deny,
            trusted_proxies: Vec::new(),
            exempt_routes: Vec::new(),
            default_completion_reservation: 256,
        }
    }
}

impl RateLimitConfig {
    /// `route_names`: every configured route's name, for `exempt_routes`.
    pub(super) fn validate<'a>(
        &self,
        route_names: impl Iterator<Item = &'a str>,
        file: &str,
        text: &str,
    ) -> Result<(), ConfigError> {
        let section = text.find("[rate_limit]");
        let err = |key: &str, message: String, fix: &str| ConfigError {
            file: file.to_string(),
            line: key_line(text, section, key),
            key: format!("rate_limit.{key}"),
            message,
            fix: fix.to_string(),
        };
        if self.backend == Backend::Redis {
            let url = &self.redis_url.0;
            let scheme_ok = url.starts_with("redis://") || url.starts_with("redis+unix://");
            if !scheme_ok || redis::Client::open(url.as_str()).is_err() {
                // The URL may hold a password: it is not repeated in the message.
                return Err(err(
                    "redis_url",
                    "is not a usable Redis URL".into(),
                    "write e.g. \"redis://127.0.0.1:6379\" or \"redis://:${REDIS_PASSWORD}@redis:6379/0\"",
                ));
            }
            if self.redis_timeout.0.is_zero() {
                return Err(err(
                    "redis_timeout",
                    "must be greater than zero".into(),
                    "use e.g. \"250ms\"",
                ));
            }
            if !(1..=64).contains(&self.redis_pool_size) {
                return Err(err(
                    "redis_pool_size",
                    format!("{} is outside 1..=64", self.redis_pool_size),
                    "use a few connections, e.g. 4",
                ));
            }
        }
        for p in &self.trusted_proxies {
            if parse_net(p).is_none() {
                return Err(err(
                    "trusted_proxies",
                    format!("{p:?} is neither an IP address nor a CIDR"),
                    "write addresses or networks such as \"10.0.0.0/8\", \"127.0.0.1\" or \"::1/128\"",
                ));
            }
        }
        let names: HashSet<&str> = route_names.collect();
        for r in &self.exempt_routes {
            if !names.contains(r.as_str()) {
                let mut known: Vec<_> = names.iter().copied().collect();
                known.sort_unstable();
                return Err(err(
                    "exempt_routes",
                    format!("no route is called {r:?}"),
                    &format!(
                        "use route names (a route's `name`, else its path_prefix): {}",
                        known.join(", ")
                    ),
                ));
            }
        }
        if self.default_completion_reservation == 0 {
            return Err(err(
                "default_completion_reservation",
                "must be greater than zero, or budgets would let every request through".into(),
                "use e.g. 256",
            ));
        }
        Ok(())
    }
}

/// An address or CIDR from `trusted_proxies`; a bare address is a network of one.
pub fn parse_net(s: &str) -> Option<ipnet::IpNet> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

/// The line of `key = ...` inside the section starting at `section`, else the section's.
fn key_line(text: &str, section: Option<usize>, key: &str) -> Option<usize> {
    let start = section?;
    let body = &text[start..];
    let end = body[1..].find("\n[").map_or(body.len(), |i| i + 1);
    let at = body[..end]
        .match_indices(key)
        .find(|(i, _)| {
            let line_start = *i == 0 || body.as_bytes()[i - 1].is_ascii_whitespace();
            line_start && body[i + key.len()..].trim_start().starts_with('=')
        })
        .map_or(0, |(i, _)| i);
    Some(line_of(text, start + at))
}
