//! The configuration file: one TOML document, unknown keys rejected, defaults in code.
//!
//! `load` reads and expands a file, `validate` checks what serde cannot (references between
//! sections, URL shapes), and both report errors naming the key, the line and the fix.

mod auth;
mod load;
mod metrics;
mod models;
mod rate_limit;
mod routes;
mod server;
mod units;

pub use auth::{parse_keys_file, unreadable, AuthConfig, KeyEntry, KeysFile, LoadedKeys};
pub use load::{load, load_or_default, parse, ConfigError};
pub use metrics::{MetricsConfig, PricingConfig, DEFAULT_MAX_LABEL_VALUES};
pub use models::{globs, ModelCacheConfig, ModelRoutingConfig, DEFAULT_LIST_PATHS};
pub use rate_limit::{parse_net, Backend, OnBackendError, RateLimitConfig};
pub use units::{ByteSize, Dur};

use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;
use toml::Spanned;

/// The path used when neither `--config` nor `LLMGATE_CONFIG` is given.
pub const DEFAULT_PATH: &str = "config/llmgate.toml";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub upstreams: Vec<UpstreamConfig>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub model_cache: ModelCacheConfig,
    #[serde(default)]
    pub model_routing: ModelRoutingConfig,
    /// Without it nothing is authenticated (and llmgate says so at startup).
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// Without it nothing is rate limited.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub pricing: Vec<PricingConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Proxy listener, HTTP/1.1 and h2c.
    pub listen: SocketAddr,
    /// `/livez`, `/readyz` and `/metrics`; never the proxy port.
    pub admin_listen: SocketAddr,
    /// How long in-flight requests and streams may run on after SIGTERM.
    pub drain_timeout: Dur,
    /// Larger request bodies get 413, checked while they stream.
    pub max_request_body: ByteSize,
    /// Clients that do not finish sending their request head in time are dropped.
    pub header_read_timeout: Dur,
    /// Accept HTTP/2 with prior knowledge (h2c) on the proxy port.
    pub http2: bool,
    /// Request heads larger than this get 431 (twice this is cut off unread).
    pub max_header_bytes: ByteSize,
    /// Requests with more header lines than this get 431.
    pub max_headers: usize,
    /// Longest silent gap while a client sends its request body; then 408 and close.
    pub request_body_timeout: Dur,
    /// Client connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Path prefixes on which WebSocket upgrades are relayed; elsewhere they get 400.
    pub websocket_paths: Vec<String>,
    /// Runtime threads; `None` means one per CPU the process may use. With one, llmgate runs
    /// a single-threaded runtime: no hand-offs between threads.
    pub worker_threads: Option<Spanned<usize>>,
}

impl ServerConfig {
    /// The runtime threads to start: `worker_threads`, else one per usable CPU.
    pub fn threads(&self) -> usize {
        match &self.worker_threads {
            Some(n) => *n.get_ref(),
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9100)),
            drain_timeout: Dur(Duration::from_secs(30)),
            max_request_body: ByteSize(100 << 20),
            header_read_timeout: Dur(Duration::from_secs(10)),
            http2: true,
            max_header_bytes: ByteSize(64 << 10),
            max_headers: 100,
            request_body_timeout: Dur(Duration::from_secs(60)),
            max_connections: 10_000,
            websocket_paths: vec!["/ws".into()],
            worker_threads: None,
        }
    }
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter: "info", "warn", "llmgate=debug,info", ...
    pub level: String,
    pub format: LogFormat,
    /// One line per request at `info` level (target `llmgate::access`).
    pub access_log: bool,
    /// Longest time an access line waits in the buffer before it is written; "0s" writes
    /// every line at once (one `write` per request).
    pub access_log_flush: Dur,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
            access_log: true,
            access_log_flush: Dur(std::time::Duration::from_millis(100)),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    pub name: Spanned<String>,
    /// `http://host:port` with an optional base path, which is prepended to forwarded paths.
    pub url: Spanned<String>,
    #[serde(default = "defaults::connect_timeout")]
    pub connect_timeout: Dur,
    /// Time until the upstream's response headers arrive.
    #[serde(default = "defaults::response_timeout")]
    pub response_timeout: Dur,
    /// Longest silent gap between two body frames of a response.
    #[serde(default = "defaults::idle_timeout")]
    pub idle_timeout: Dur,
    /// Host header to send instead of the one taken from `url`.
    #[serde(default)]
    pub host_header: Option<String>,
    /// Idle pooled connections are closed after this long.
    #[serde(default = "defaults::pool_idle_timeout")]
    pub pool_idle_timeout: Dur,
    #[serde(default = "defaults::pool_max_idle")]
    pub pool_max_idle: usize,
    /// Credential this upstream receives instead of the client's (e.g. a relay's API key).
    #[serde(default)]
    pub bearer: Option<Secret>,
    /// Model globs this upstream serves; its listed models are filtered by them.
    #[serde(default)]
    pub models: Option<Spanned<Vec<String>>>,
    /// Static model ids for a relay without `/models`; otherwise `/models` is fetched when
    /// `models` is set.
    #[serde(default)]
    pub model_list: Option<Spanned<Vec<String>>>,
    /// Extra CA certificates (PEM) trusted for an https upstream, besides the webpki roots.
    #[serde(default)]
    pub ca_file: Option<Spanned<String>>,
}

/// A configured secret: usable, but never printed by `Debug`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Name used in logs and metrics; defaults to the path or prefix.
    #[serde(default)]
    pub name: Option<String>,
    /// Matches this prefix, on whole path segments. Exactly one of `path_prefix` and `path`.
    #[serde(default)]
    pub path_prefix: Option<Spanned<String>>,
    /// Matches this one path exactly; beats every prefix.
    #[serde(default)]
    pub path: Option<Spanned<String>>,
    pub upstream: Spanned<String>,
    /// Replaces the matched prefix before forwarding; the query string is kept.
    #[serde(default)]
    pub rewrite_prefix: Option<Spanned<String>>,
    /// Model globs: the route applies only to requests whose body names a matching model.
    #[serde(default)]
    pub models: Option<Spanned<Vec<String>>>,
    /// Served without a credential, even when `[auth]` is configured.
    #[serde(default)]
    pub public: bool,
    /// Only identities whose id matches one of these globs (or whose role is in `roles`).
    #[serde(default)]
    pub identities: Option<Vec<String>>,
    /// Only identities with one of these Open WebUI roles (or matching `identities`).
    #[serde(default)]
    pub roles: Option<Vec<String>>,
}

impl RouteConfig {
    /// The configured path or prefix, and whether it must match exactly.
    pub fn pattern(&self) -> Option<(&Spanned<String>, bool)> {
        match (&self.path, &self.path_prefix) {
            (Some(p), None) => Some((p, true)),
            (None, Some(p)) => Some((p, false)),
            _ => None,
        }
    }
}

mod defaults {
    use super::Dur;
    use std::time::Duration;

    pub fn connect_timeout() -> Dur {
        Dur(Duration::from_secs(2))
    }
    pub fn response_timeout() -> Dur {
        Dur(Duration::from_secs(300))
    }
    pub fn idle_timeout() -> Dur {
        Dur(Duration::from_secs(120))
    }
    pub fn pool_idle_timeout() -> Dur {
        Dur(Duration::from_secs(90))
    }
    pub fn pool_max_idle() -> usize {
        256
    }
}

/// The default configuration, compiled in so `llmgate` runs without a file on disk.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/llmgate.toml");
