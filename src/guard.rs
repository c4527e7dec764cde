//! Checks on the request head before it is routed: framing, `Host`, head size and upgrades.
//!
//! hyper parses the head; these are the rules it leaves to the server (RFC 9112 §3.2 and
//! §6.3) and the limits llmgate answers with a JSON error instead of hyper's bare one.

use crate::config::ServerConfig;
use crate::error::ProxyError;
use crate::framing::HeadFraming;
use crate::headers;
use http::{header, request::Parts, Version};

/// The `[server]` limits the checks apply, read once at startup.
#[derive(Debug, Clone)]
pub struct Guard {
    max_header_bytes: usize,
    max_headers: usize,
    websocket_paths: Vec<String>,
}

impl Guard {
    pub fn new(s: &ServerConfig) -> Self {
        Self {
            max_header_bytes: usize::try_from(s.max_header_bytes.0).unwrap_or(usize::MAX),
            max_headers: s.max_headers,
            websocket_paths: s.websocket_paths.clone(),
        }
    }

    /// Refuses heads whose framing is ambiguous, whose `Host` is missing or repeated, or which
    /// are over the size limits.
    pub fn check(&self, parts: &Parts) -> Result<(), ProxyError> {
        if let Some(problem) = parts
            .extensions
            .get::<HeadFraming>()
            .and_then(|f| f.problem())
        {
            return Err(ProxyError::AmbiguousFraming(problem));
        }
        let h = &parts.headers;
        if h.len() > self.max_headers {
            return Err(ProxyError::HeadersTooLarge);
        }
        let bytes: usize = h.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
        let target = parts.uri.path_and_query().map_or(0, |pq| pq.as_str().len());
        if bytes + target > self.max_header_bytes {
            return Err(ProxyError::HeadersTooLarge);
        }
        let mut hosts = h.get_all(header::HOST).iter();
        match (hosts.next(), hosts.next()) {
            (_, Some(_)) => Err(ProxyError::InvalidHost(
                "more than one Host header was sent",
            )),
            (None, _) if parts.version == Version::HTTP_11 => Err(ProxyError::InvalidHost(
                "an HTTP/1.1 request needs a Host header",
            )),
            (Some(v), _) if !v.as_bytes().iter().all(|b| is_host_byte(*b)) => Err(
                ProxyError::InvalidHost("the Host header is not a host[:port]"),
            ),
            _ => Ok(()),
        }
    }

    /// WebSocket upgrades are relayed only under `websocket_paths`. Other protocols (`h2c`
    /// from `curl --http2`, TLS) are ignored, as RFC 9110 §7.8 allows: the request is served
    /// as plain HTTP/1.1.
    pub fn upgrade(&self, parts: &mut Parts, path: &str) -> Result<(), ProxyError> {
        if parts.version != Version::HTTP_11 || !headers::is_upgrade(&parts.headers) {
            return Ok(());
        }
        let websocket = parts
            .headers
            .get_all(header::UPGRADE)
            .iter()
            .any(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
        if !websocket {
            parts.headers.remove(header::UPGRADE);
            return Ok(());
        }
        if self.websocket_paths.iter().any(|p| under(path, p)) {
            Ok(())
        } else {
            Err(ProxyError::UpgradeNotAllowed)
        }
    }
}

/// RFC 3986 reg-name, IP literal and port characters; no userinfo, path or whitespace.
fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:[]".contains(&b)
}

/// `path` is `prefix` or lies below it, on whole segments.
fn under(path: &str, prefix: &str) -> bool {
    let p = prefix.strip_suffix('/').unwrap_or(prefix);
    path.strip_prefix(p)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_paths_match_whole_segments() {
        assert!(under("/ws", "/ws"));
        assert!(under("/ws/socket.io/", "/ws"));
        assert!(under("/ws/socket.io", "/ws/"));
        assert!(!under("/wsx", "/ws"));
        assert!(under("/anything", "/"));
    }
}
