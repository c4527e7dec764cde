//! `[model_cache]`, `[model_routing]` and the model keys of upstreams and routes, with their
//! validation.

use super::load::ConfigError;
use super::{ByteSize, Config, Dur};
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelCacheConfig {
    /// Cache model lists at all.
    pub enabled: bool,
    /// Exact request paths whose GET responses are model lists.
    pub paths: Vec<String>,
    /// How long a list is served without asking the upstream.
    pub ttl: Dur,
    /// How long after `ttl` a list is still served while a refresh runs or fails.
    pub stale_for: Dur,
    /// Memory for cached lists (one per identity or credential and path); the least used go
    /// first.
    pub max_size: ByteSize,
    /// Longest wait for a relay's `/models` when a list is built.
    pub fetch_timeout: Dur,
    /// Headers besides `Authorization`, `x-api-key` and the `token` cookie that tell users
    /// apart when no identity is known (e.g. a trusted `X-Forwarded-Email`).
    pub vary_headers: Vec<String>,
}

/// The paths Open WebUI, Ollama and OpenAI clients list models on.
pub const DEFAULT_LIST_PATHS: [&str; 5] = [
    "/api/models",
    "/api/v1/models",
    "/ollama/api/tags",
    "/v1/models",
    "/openai/models",
];

impl Default for ModelCacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            paths: DEFAULT_LIST_PATHS.iter().map(|p| p.to_string()).collect(),
            ttl: Dur(Duration::from_secs(30)),
            stale_for: Dur(Duration::from_secs(600)),
            max_size: ByteSize(256 << 20),
            fetch_timeout: Dur(Duration::from_secs(3)),
            vary_headers: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelRoutingConfig {
    /// How much of a request body is read, at most, to find its `model` before forwarding.
    pub peek_window: ByteSize,
}

impl Default for ModelRoutingConfig {
    fn default() -> Self {
        Self {
            peek_window: ByteSize(64 << 10),
        }
    }
}

/// Compiles model globs (`gpt-*`, `claude-?-*`); `None` for an empty list.
pub fn globs(patterns: &[String]) -> Result<globset::GlobSet, String> {
    let mut b = globset::GlobSetBuilder::new();
    for p in patterns {
        let glob = globset::GlobBuilder::new(p)
            .literal_separator(false)
            .build()
            .map_err(|e| format!("{p:?} is not a valid model glob: {e}"))?;
        b.add(glob);
    }
    b.build().map_err(|e| e.to_string())
}

pub(super) fn validate(c: &Config, file: &str, text: &str) -> Result<(), ConfigError> {
    let err = |span: Option<std::ops::Range<usize>>, key: &str, message: String, fix: &str| {
        ConfigError::new(file, text, span.map(|s| s.start), key, message, fix)
    };
    let mc = &c.model_cache;
    if mc.enabled && mc.ttl.0.is_zero() {
        return Err(err(
            None,
            "model_cache.ttl",
            "must be greater than zero".into(),
            "use e.g. \"30s\", or set enabled = false to turn the cache off",
        ));
    }
    if mc.max_size.0 < 1 << 20 {
        return Err(err(
            None,
            "model_cache.max_size",
            format!("{} bytes is too small to hold model lists", mc.max_size.0),
            "use at least \"1MiB\", e.g. \"256MiB\"",
        ));
    }
    if mc.fetch_timeout.0.is_zero() {
        return Err(err(
            None,
            "model_cache.fetch_timeout",
            "must be greater than zero".into(),
            "use e.g. \"3s\"",
        ));
    }
    if let Some(p) = mc.paths.iter().find(|p| !p.starts_with('/')) {
        return Err(err(
            None,
            "model_cache.paths",
            format!("{p:?} does not start with '/'"),
            "list exact request paths such as \"/api/models\"",
        ));
    }
    if let Some(h) = mc
        .vary_headers
        .iter()
        .find(|h| http::HeaderName::from_bytes(h.as_bytes()).is_err())
    {
        return Err(err(
            None,
            "model_cache.vary_headers",
            format!("{h:?} is not a valid header name"),
            "list header names such as \"x-forwarded-email\"",
        ));
    }
    if c.model_routing.peek_window.0 == 0 || c.model_routing.peek_window.0 > 16 << 20 {
        return Err(err(
            None,
            "model_routing.peek_window",
            format!(
                "{} bytes is out of range (1 byte to 16 MiB)",
                c.model_routing.peek_window.0
            ),
            "use e.g. \"64KiB\"",
        ));
    }
    for u in &c.upstreams {
        if let Some(m) = &u.models {
            globs(m.get_ref()).map_err(|e| err(Some(m.span()), "upstreams.models", e, GLOB_FIX))?;
        }
        if let Some(list) = &u.model_list {
            if list.get_ref().iter().any(|m| m.is_empty()) {
                return Err(err(
                    Some(list.span()),
                    "upstreams.model_list",
                    "contains an empty model id".into(),
                    "list the relay's model ids, e.g. [\"gpt-4o\", \"gpt-4o-mini\"]",
                ));
            }
        }
        if let Some(ca) = &u.ca_file {
            crate::tls::read_ca_file(ca.get_ref()).map_err(|e| {
                err(
                    Some(ca.span()),
                    "upstreams.ca_file",
                    e,
                    "point ca_file at a readable PEM file holding at least one CA certificate",
                )
            })?;
        }
    }
    for r in &c.routes {
        let Some(m) = &r.models else { continue };
        if m.get_ref().is_empty() {
            return Err(err(
                Some(m.span()),
                "routes.models",
                "this route has an empty models list, so it never applies".into(),
                "list model globs such as [\"gpt-*\"], or remove the key",
            ));
        }
        globs(m.get_ref()).map_err(|e| err(Some(m.span()), "routes.models", e, GLOB_FIX))?;
    }
    Ok(())
}

const GLOB_FIX: &str = "write globs such as \"gpt-*\" or \"claude-3-?-*\" ('*' matches any text, '?' one character, '[ab]' a set)";
