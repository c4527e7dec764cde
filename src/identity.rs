//! Who is asking: established by authentication, read by limits, model access and logs.
//! It travels as a typed request extension.

use std::sync::Arc;

/// Where an identity came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A key from llmgate's own keys file.
    Key,
    /// An Open WebUI JWT verified locally with the shared secret.
    Jwt,
    /// An Open WebUI credential confirmed by asking Open WebUI (cached).
    Introspection,
}

#[derive(Clone, Debug)]
pub struct Identity {
    /// Stable name for logs, metrics and limits: a key id, or `user:<id>`. Never a credential.
    pub id: Arc<str>,
    pub source: Source,
    /// Open WebUI role (`admin`, `user`, ...), when known.
    pub role: Option<Arc<str>>,
    /// Model globs this identity may use; `None` means any model.
    pub models: Option<Arc<globset::GlobSet>>,
    /// This key's own rate limits, from the keys file; `None` keeps `[rate_limit]`'s.
    pub limits: Option<Arc<KeyLimits>>,
}

/// Per-key overrides of `[rate_limit]`; each field left out keeps the configured default,
/// and 0 lifts that limit for the key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyLimits {
    pub requests_per_minute: Option<u32>,
    pub burst: Option<u32>,
    pub requests_per_day: Option<u32>,
    pub tokens_per_minute: Option<u64>,
    pub tokens_per_day: Option<u64>,
    pub max_concurrent_streams: Option<u32>,
}

impl Identity {
    pub fn is_admin(&self) -> bool {
        self.role.as_deref() == Some("admin")
    }

    /// Whether `model` is on this identity's allowlist (always true without one).
    pub fn may_use(&self, model: &str) -> bool {
        self.models.as_ref().is_none_or(|g| g.is_match(model))
    }
}
