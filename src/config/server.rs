//! Validation of the `[server]` limits that protect llmgate from hostile clients.

use super::ServerConfig;

/// Smallest `max_header_bytes`: hyper needs a read buffer of at least 8 KiB, which is twice it.
const MIN_HEADER_BYTES: u64 = 4 << 10;

/// A problem with a `[server]` key: (key, message, fix).
pub(super) type Problem = (&'static str, String, &'static str);

pub(super) fn validate(s: &ServerConfig) -> Result<(), Problem> {
    if s.max_header_bytes.0 < MIN_HEADER_BYTES || s.max_header_bytes.0 > 16 << 20 {
        return Err((
            "server.max_header_bytes",
            format!("{} bytes is outside 4KiB..16MiB", s.max_header_bytes.0),
            "use e.g. \"64KiB\"",
        ));
    }
    if s.max_headers == 0 || s.max_headers > 10_000 {
        return Err((
            "server.max_headers",
            format!("{} is outside 1..10000", s.max_headers),
            "use e.g. 100",
        ));
    }
    if s.request_body_timeout.0.is_zero() {
        return Err((
            "server.request_body_timeout",
            "must be greater than zero".into(),
            "use e.g. \"60s\"",
        ));
    }
    if s.max_connections == 0 {
        return Err((
            "server.max_connections",
            "must be greater than zero".into(),
            "use e.g. 10000",
        ));
    }
    if let Some(p) = s
        .websocket_paths
        .iter()
        .find(|p| !p.starts_with('/') || p.contains(['?', '#', '%']))
    {
        return Err((
            "server.websocket_paths",
            format!("{p:?} is not an absolute path prefix"),
            "write prefixes such as \"/ws\" (an empty list refuses every upgrade)",
        ));
    }
    Ok(())
}
