//! `[auth]`: where identities come from, and the keys file (`[[keys]]` entries).

use super::load::toml_error;
use super::{ConfigError, Dur, Secret, UpstreamConfig};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// TOML file of `[[keys]]`, watched for changes; relative to the config file's directory.
    #[serde(default)]
    pub keys_file: Option<Spanned<String>>,
    /// Keys written in the config itself, as `[[auth.keys]]`.
    #[serde(default)]
    pub keys: Vec<KeyEntry>,
    /// Open WebUI's `WEBUI_SECRET_KEY`: JWTs are then verified locally (HS256).
    #[serde(default)]
    pub openwebui_jwt_secret: Option<Secret>,
    /// Upstream asked whose an `sk-` key (or, without a secret, a JWT) is.
    #[serde(default)]
    pub introspect_upstream: Option<Spanned<String>>,
    #[serde(default = "defaults::introspect_path")]
    pub introspect_path: String,
    #[serde(default = "defaults::introspect_ttl")]
    pub introspect_ttl: Dur,
    #[serde(default = "defaults::introspect_negative_ttl")]
    pub introspect_negative_ttl: Dur,
    #[serde(default = "defaults::introspect_timeout")]
    pub introspect_timeout: Dur,
    /// Most credentials whose introspection answer is kept.
    #[serde(default = "defaults::introspect_cache_size")]
    pub introspect_cache_size: u64,
    /// Failed credentials from one client address before it gets 429 (0: never).
    #[serde(default = "defaults::max_failures_per_ip")]
    pub max_failures_per_ip: u32,
    #[serde(default = "defaults::failure_window")]
    pub failure_window: Dur,
    /// What `keys_file` held when this config was loaded.
    #[serde(skip)]
    pub file: LoadedKeys,
}

/// The keys file as read: where it is, its entries, and a digest of its bytes (to notice
/// changes).
#[derive(Debug, Default, Clone)]
pub struct LoadedKeys {
    pub path: Option<PathBuf>,
    pub keys: Vec<KeyEntry>,
    pub digest: [u8; 32],
}

/// One key. New per-key settings are new optional fields here.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// The identity name in logs, metrics and limits.
    pub id: Spanned<String>,
    /// Hex SHA-256 of the key; the key itself is never stored.
    pub sha256: Spanned<String>,
    /// Model globs this key may use; absent means any.
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// Role given to this identity (routes can require one, e.g. "admin").
    #[serde(default)]
    pub role: Option<String>,
    /// This key's own `[rate_limit]` values; left out keeps the default, 0 lifts the limit.
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    #[serde(default)]
    pub burst: Option<u32>,
    #[serde(default)]
    pub requests_per_day: Option<u32>,
    #[serde(default)]
    pub max_concurrent_streams: Option<u32>,
    #[serde(default)]
    pub tokens_per_minute: Option<u64>,
    #[serde(default)]
    pub tokens_per_day: Option<u64>,
}

impl KeyEntry {
    /// The key's rate limit overrides, when it has any.
    pub fn limits(&self) -> Option<std::sync::Arc<crate::identity::KeyLimits>> {
        let l = crate::identity::KeyLimits {
            requests_per_minute: self.requests_per_minute,
            burst: self.burst,
            requests_per_day: self.requests_per_day,
            max_concurrent_streams: self.max_concurrent_streams,
            tokens_per_minute: self.tokens_per_minute,
            tokens_per_day: self.tokens_per_day,
        };
        (l != crate::identity::KeyLimits::default()).then(|| std::sync::Arc::new(l))
    }
}

/// The keys file's layout.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysFile {
    #[serde(default)]
    pub keys: Vec<KeyEntry>,
}

impl AuthConfig {
    pub(super) fn validate(
        &self,
        upstreams: &[UpstreamConfig],
        file: &str,
        text: &str,
    ) -> Result<(), ConfigError> {
        let auth_at = text.find("[auth]");
        let err = |at: Option<usize>, key: &str, message: String, fix: &str| {
            ConfigError::new(file, text, at, key, message, fix)
        };
        let has_source = self.keys_file.is_some()
            || !self.keys.is_empty()
            || self.openwebui_jwt_secret.is_some()
            || self.introspect_upstream.is_some();
        if !has_source {
            return Err(err(
                auth_at,
                "auth",
                "[auth] names no identity source, so nobody could be authenticated".into(),
                "set keys_file, [[auth.keys]], openwebui_jwt_secret or introspect_upstream; or remove [auth] to run without authentication",
            ));
        }
        if let Some(s) = &self.openwebui_jwt_secret {
            if s.0.len() < 16 {
                return Err(err(
                    text.find("openwebui_jwt_secret"),
                    "auth.openwebui_jwt_secret",
                    format!("the secret is {} bytes long; anyone could guess it and sign tokens", s.0.len()),
                    "use Open WebUI's WEBUI_SECRET_KEY (set a random one of at least 16 bytes there, e.g. `openssl rand -base64 24`), or leave it unset to verify JWTs by introspection",
                ));
            }
        }
        if let Some(up) = &self.introspect_upstream {
            if !upstreams.iter().any(|u| u.name.get_ref() == up.get_ref()) {
                return Err(err(
                    Some(up.span().start),
                    "auth.introspect_upstream",
                    format!("unknown upstream {:?}", up.get_ref()),
                    "name one of the [[upstreams]], usually the Open WebUI one",
                ));
            }
        }
        if !self.introspect_path.starts_with('/') {
            return Err(err(
                text.find("introspect_path"),
                "auth.introspect_path",
                format!("{:?} does not start with '/'", self.introspect_path),
                "use the default \"/api/v1/users/user/status\" for Open WebUI 0.12",
            ));
        }
        if self.introspect_timeout.0.is_zero() || self.failure_window.0.is_zero() {
            return Err(err(
                auth_at,
                "auth.introspect_timeout",
                "introspect_timeout and failure_window must be greater than zero".into(),
                "use e.g. \"5s\" and \"1m\"",
            ));
        }
        validate_keys(&self.keys, &[], file, text)
    }

    /// Reads `keys_file` (relative to the config file's directory) into `self.file`.
    pub(super) fn load_keys_file(&mut self, config_file: &Path) -> Result<(), ConfigError> {
        let Some(rel) = &self.keys_file else {
            return Ok(());
        };
        let path = config_file
            .parent()
            .unwrap_or(Path::new(""))
            .join(rel.get_ref());
        let name = path.display().to_string();
        let bytes = std::fs::read(&path).map_err(|e| unreadable(&name, &e))?;
        let keys = parse_keys_file(&name, &bytes, &self.keys)?;
        self.file = LoadedKeys {
            path: Some(path),
            keys,
            digest: Sha256::digest(&bytes).into(),
        };
        Ok(())
    }
}

/// The error for a keys file that cannot be read.
pub fn unreadable(name: &str, e: &std::io::Error) -> ConfigError {
    ConfigError::new(
        name,
        "",
        None,
        "auth.keys_file",
        format!("cannot read the keys file: {e}"),
        "create the file (it may hold no [[keys]] yet) or correct auth.keys_file",
    )
}

/// Parses and validates a keys file's bytes; ids and hashes must not repeat `inline` keys.
pub fn parse_keys_file(
    name: &str,
    bytes: &[u8],
    inline: &[KeyEntry],
) -> Result<Vec<KeyEntry>, ConfigError> {
    let text = String::from_utf8_lossy(bytes);
    let file: KeysFile = toml::from_str(&text).map_err(|e| toml_error(name, &text, &e))?;
    validate_keys(&file.keys, &[], name, &text)?;
    validate_keys(inline, &file.keys, name, "")?;
    Ok(file.keys)
}

/// Checks each entry, and that ids and hashes are unique across `a` and `b` (inline and file
/// keys). `text` is the source of `a`, for line numbers.
fn validate_keys(
    a: &[KeyEntry],
    b: &[KeyEntry],
    file: &str,
    text: &str,
) -> Result<(), ConfigError> {
    let mut ids = HashSet::new();
    let mut hashes = HashSet::new();
    for k in a.iter().chain(b) {
        let at = |span: std::ops::Range<usize>| (!text.is_empty()).then_some(span.start);
        let err = |span, key: &str, message: String, fix: &str| {
            ConfigError::new(file, text, at(span), key, message, fix)
        };
        let id = k.id.get_ref();
        if !crate::auth::keys::valid_id(id) {
            return Err(err(
                k.id.span(),
                "keys.id",
                format!("{id:?} is not a valid key id"),
                "use 1-64 letters, digits, '.', '_' or '-' (ids with ':' are reserved for Open WebUI users)",
            ));
        }
        if !ids.insert(id.as_str()) {
            return Err(err(
                k.id.span(),
                "keys.id",
                format!("key id {id:?} is used twice"),
                "give every key its own id",
            ));
        }
        let hash = k.sha256.get_ref();
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err(
                k.sha256.span(),
                "keys.sha256",
                format!("the sha256 of key {id:?} is not 64 hex digits"),
                "paste the value printed by `llmgate keys new` or `llmgate keys hash` (never the key itself)",
            ));
        }
        if !hashes.insert(hash.to_ascii_lowercase()) {
            return Err(err(
                k.sha256.span(),
                "keys.sha256",
                format!("key {id:?} has the same hash as another key"),
                "every key must be different; mint a new one with `llmgate keys new`",
            ));
        }
        for glob in k.models.iter().flatten() {
            if let Err(e) = globset::Glob::new(glob) {
                return Err(err(
                    k.id.span(),
                    "keys.models",
                    format!("{glob:?} (key {id:?}) is not a valid glob: {e}"),
                    "write a model name or a glob such as \"llama3*\"",
                ));
            }
        }
    }
    Ok(())
}

mod defaults {
    use super::Dur;
    use std::time::Duration;

    pub fn introspect_path() -> String {
        "/api/v1/users/user/status".into()
    }
    pub fn introspect_ttl() -> Dur {
        Dur(Duration::from_secs(60))
    }
    pub fn introspect_negative_ttl() -> Dur {
        Dur(Duration::from_secs(5))
    }
    pub fn introspect_timeout() -> Dur {
        Dur(Duration::from_secs(5))
    }
    pub fn introspect_cache_size() -> u64 {
        100_000
    }
    pub fn max_failures_per_ip() -> u32 {
        20
    }
    pub fn failure_window() -> Dur {
        Dur(Duration::from_secs(60))
    }
}
