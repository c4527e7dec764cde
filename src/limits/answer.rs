//! What clients are told: the `x-ratelimit-*` headers on every limited response, and the
//! refusal behind a 429.

use super::gcra::{Plan, Status, REQ_DAY, REQ_MINUTE, SLOTS, TOK_DAY, TOK_MINUTE};
use http::{HeaderMap, HeaderName, HeaderValue};
use std::fmt;

static LIMIT_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
static REMAINING_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-requests");
static RESET_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");
static LIMIT_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-limit-tokens");
static REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");
static RESET_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-reset-tokens");

/// One window as the headers report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trio {
    /// The most the window allows at once.
    pub limit: u64,
    pub remaining: u64,
    /// Nanoseconds until the window is full again.
    pub reset: u64,
}

/// The tightest request window and the tightest token window of a decision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub requests: Option<Trio>,
    pub tokens: Option<Trio>,
}

impl RateHeaders {
    /// Sets the headers, replacing an upstream's own: the client's limits are llmgate's.
    pub fn write(&self, h: &mut HeaderMap) {
        let names = [
            (
                self.requests,
                [&LIMIT_REQUESTS, &REMAINING_REQUESTS, &RESET_REQUESTS],
            ),
            (
                self.tokens,
                [&LIMIT_TOKENS, &REMAINING_TOKENS, &RESET_TOKENS],
            ),
        ];
        for (trio, [limit, remaining, reset]) in names {
            if let Some(t) = trio {
                h.insert(limit, HeaderValue::from(t.limit));
                h.insert(remaining, HeaderValue::from(t.remaining));
                h.insert(reset, reset_value(t.reset));
            }
        }
    }
}

/// OpenAI's reset format: Go-style durations such as `20ms`, `1s`, `6m0s`, `1h2m3s`.
/// Whole seconds are rounded up, so waiting that long is always enough.
pub fn reset_value(ns: u64) -> HeaderValue {
    let s = if ns < 1_000_000_000 {
        format!("{}ms", ns.div_ceil(1_000_000))
    } else {
        let secs = ns.div_ceil(1_000_000_000);
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        match (h, m) {
            (0, 0) => format!("{s}s"),
            (0, _) => format!("{m}m{s}s"),
            _ => format!("{h}h{m}m{s}s"),
        }
    };
    HeaderValue::try_from(s).expect("digits and unit letters are a valid header value")
}

/// Which configured limit refused a request; also the `llmgate_ratelimited_total` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    RequestsPerMinute,
    RequestsPerDay,
    TokensPerMinute,
    TokensPerDay,
    ConcurrentStreams,
    UnauthenticatedPerIp,
}

impl Limit {
    /// The config key, which is also the metrics label.
    pub fn key(self) -> &'static str {
        match self {
            Self::RequestsPerMinute => "requests_per_minute",
            Self::RequestsPerDay => "requests_per_day",
            Self::TokensPerMinute => "tokens_per_minute",
            Self::TokensPerDay => "tokens_per_day",
            Self::ConcurrentStreams => "max_concurrent_streams",
            Self::UnauthenticatedPerIp => "unauthenticated_per_ip_per_minute",
        }
    }

    pub fn is_tokens(self) -> bool {
        matches!(self, Self::TokensPerMinute | Self::TokensPerDay)
    }
}

/// A 429: which limit, its configured value, and when to come back.
#[derive(Clone, Debug)]
pub struct Refusal {
    pub limit: Limit,
    pub value: u64,
    /// `requests_per_minute` only: its burst.
    pub burst: Option<u64>,
    /// Whole seconds, rounded up; `None` when waiting cannot help (a request asking more
    /// tokens than the budget holds).
    pub retry_after: Option<u64>,
    /// Tokens the request asked for (token limits only).
    pub cost: u64,
    pub headers: RateHeaders,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = self.limit.key();
        let who = match self.limit {
            Limit::UnauthenticatedPerIp => "this client address",
            _ => "this identity",
        };
        match (self.limit, self.retry_after) {
            (Limit::ConcurrentStreams, _) => write!(
                f,
                "rate limit reached: {key} is {} for {who}; retry when one of its responses has finished",
                self.value
            ),
            (_, None) => write!(
                f,
                "this request may use up to {} tokens, more than {key} ({}) allows at once; lower max_tokens or shorten the prompt",
                self.cost, self.value
            ),
            (_, Some(secs)) => {
                write!(f, "rate limit reached: {key} is {}", self.value)?;
                if let Some(b) = self.burst {
                    write!(f, " (burst {b})")?;
                }
                write!(f, " for {who}")?;
                if self.limit.is_tokens() {
                    write!(
                        f,
                        " and this request reserves {} tokens (max_tokens plus the prompt estimate)",
                        self.cost
                    )?;
                }
                write!(f, "; retry after {secs}s")
            }
        }
    }
}

/// Nanoseconds to whole seconds for `Retry-After`, rounded up and at least 1.
pub fn retry_secs(ns: u64) -> u64 {
    ns.div_ceil(1_000_000_000).max(1)
}

/// Which configured limit a refused slot stands for.
pub fn limit_of(slot: usize, is_ip: bool) -> Limit {
    match slot {
        REQ_MINUTE if is_ip => Limit::UnauthenticatedPerIp,
        REQ_MINUTE => Limit::RequestsPerMinute,
        REQ_DAY => Limit::RequestsPerDay,
        TOK_MINUTE => Limit::TokensPerMinute,
        _ => Limit::TokensPerDay,
    }
}

/// The tightest request window (and token window) for the headers.
pub fn headers(plan: &Plan, status: &[Option<Status>; SLOTS]) -> RateHeaders {
    let tightest = |slots: [usize; 2]| {
        slots
            .iter()
            .filter_map(|&i| {
                let (w, _) = plan.slots[i]?;
                let s = status[i]?;
                Some(Trio {
                    limit: w.capacity,
                    remaining: s.remaining,
                    reset: s.reset,
                })
            })
            .min_by_key(|t| t.remaining)
    };
    RateHeaders {
        requests: tightest([REQ_MINUTE, REQ_DAY]),
        tokens: tightest([TOK_MINUTE, TOK_DAY]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_values_read_like_openai() {
        assert_eq!(reset_value(600_000_000), "600ms");
        assert_eq!(reset_value(1), "1ms");
        assert_eq!(reset_value(1_000_000_000), "1s");
        assert_eq!(reset_value(1_000_000_001), "2s");
        assert_eq!(reset_value(360_000_000_000), "6m0s");
        assert_eq!(reset_value(86_400_000_000_000), "24h0m0s");
        assert_eq!(retry_secs(1), 1);
        assert_eq!(retry_secs(600_000_000), 1);
        assert_eq!(retry_secs(1_200_000_000), 2);
    }
}
