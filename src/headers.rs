//! Header hygiene on both legs: hop-by-hop removal, `X-Forwarded-*`, and request ids.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::cell::Cell;
use std::net::{IpAddr, SocketAddr};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// RFC 9110 §7.6.1 connection-specific fields, plus the legacy ones clients still send.
fn fixed_hop_by_hop() -> [&'static HeaderName; 9] {
    [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::PROXY_AUTHENTICATE,
        &header::PROXY_AUTHORIZATION,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
    ]
}

/// True for an HTTP/1.1 upgrade request (`Connection: upgrade` plus `Upgrade`).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_has(headers, "upgrade")
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Removes hop-by-hop headers, including those the `Connection` header names. For an upgrade
/// the `Upgrade` header and `Connection: upgrade` are kept, since they must reach the peer.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    if let Some(conn) = headers.get(header::CONNECTION) {
        if conn.as_bytes().contains(&b',') || !is_fixed_token(conn.as_bytes()) {
            let named: Vec<HeaderName> = headers
                .get_all(header::CONNECTION)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
                .collect();
            for name in named {
                if !(keep_upgrade && name == header::UPGRADE) {
                    headers.remove(name);
                }
            }
        }
    }
    let upgrade = if keep_upgrade {
        headers.remove(header::UPGRADE)
    } else {
        None
    };
    for name in fixed_hop_by_hop() {
        headers.remove(name);
    }
    if let Some(up) = upgrade {
        headers.insert(header::UPGRADE, up);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// `Connection` values that only name fields removed anyway.
fn is_fixed_token(v: &[u8]) -> bool {
    v.eq_ignore_ascii_case(b"keep-alive")
        || v.eq_ignore_ascii_case(b"close")
        || v.eq_ignore_ascii_case(b"upgrade")
}

/// The client end of a connection, with its address formatted once per connection rather
/// than once per request.
#[derive(Clone, Debug)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The IP as text (IPv4-mapped IPv6 shown as IPv4), ready for `X-Forwarded-For`.
    pub ip: HeaderValue,
}

impl Peer {
    pub fn new(addr: SocketAddr) -> Self {
        let ip = match addr.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        let ip =
            HeaderValue::try_from(ip.to_string()).expect("an IP address is a valid header value");
        Self { addr, ip }
    }

    pub fn ip_str(&self) -> &str {
        self.ip.to_str().unwrap_or("-")
    }
}

/// Sets the `X-Forwarded-*` trio. A client's own `X-Forwarded-For` is replaced, not extended:
/// the peer address is the only one llmgate can vouch for.
pub fn set_forwarded(headers: &mut HeaderMap, peer: &Peer, host: Option<HeaderValue>) {
    headers.insert(&X_FORWARDED_FOR, peer.ip.clone());
    headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    match host {
        Some(h) => {
            headers.insert(&X_FORWARDED_HOST, h);
        }
        None => {
            headers.remove(&X_FORWARDED_HOST);
        }
    }
}

static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// Replaces every client credential (`Authorization`, `x-api-key`, the `token` cookie) with
/// the upstream's own, so a relay never sees what the client presented.
pub fn swap_credentials(headers: &mut HeaderMap, bearer: &HeaderValue) {
    remove_credentials(headers);
    headers.insert(header::AUTHORIZATION, bearer.clone());
}

/// Removes every place a client credential travels in: `Authorization`, `x-api-key` and the
/// `token` cookie.
pub fn remove_credentials(headers: &mut HeaderMap) {
    headers.remove(header::AUTHORIZATION);
    headers.remove(&X_API_KEY);
    remove_cookie(headers, "token");
}

/// Drops the cookie called `name` from every `Cookie` header, keeping the others.
pub fn remove_cookie(headers: &mut HeaderMap, name: &str) {
    if !headers.contains_key(header::COOKIE) {
        return;
    }
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .split(';')
                .map(str::trim)
                .filter(|c| !c.is_empty() && c.split('=').next().map(str::trim) != Some(name))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .filter(|c| !c.is_empty())
        .collect();
    headers.remove(header::COOKIE);
    for c in kept {
        if let Ok(v) = HeaderValue::try_from(c) {
            headers.append(header::COOKIE, v);
        }
    }
}

/// The client's `x-request-id` when it is short and printable, else a fresh one.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&X_REQUEST_ID) {
        let b = v.as_bytes();
        if !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic()) {
            return v.clone();
        }
    }
    new_request_id()
}

thread_local! {
    static ID_STATE: Cell<(u64, u64)> = Cell::new((rand::random(), 0));
}

/// 32 hex digits: a random per-thread prefix and a counter, unique without a shared atomic.
pub fn new_request_id() -> HeaderValue {
    let (prefix, n) = ID_STATE.with(|s| {
        let (p, n) = s.get();
        s.set((p, n.wrapping_add(1)));
        (p, n)
    });
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, word) in [prefix, n].into_iter().enumerate() {
        for j in 0..16 {
            out[i * 16 + j] = HEX[((word >> (60 - 4 * j)) & 0xf) as usize];
        }
    }
    HeaderValue::from_bytes(&out).expect("hex digits are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_connection_named() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        let mut up = h.clone();
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
        up.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        strip_hop_by_hop(&mut up, true);
        assert_eq!(up.get(header::UPGRADE).unwrap(), "websocket");
        assert_eq!(up.get(header::CONNECTION).unwrap(), "upgrade");
    }

    #[test]
    fn credentials_are_swapped_and_other_cookies_kept() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer client"),
        );
        h.insert("x-api-key", HeaderValue::from_static("client"));
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; token=secret; b=2"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("token=again"));
        swap_credentials(&mut h, &HeaderValue::from_static("Bearer relay"));
        assert_eq!(h[header::AUTHORIZATION], "Bearer relay");
        assert!(!h.contains_key("x-api-key"));
        let cookies: Vec<_> = h.get_all(header::COOKIE).iter().collect();
        assert_eq!(cookies, ["a=1; b=2"]);
    }

    #[test]
    fn request_ids() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        let mut h = HeaderMap::new();
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("has space"));
        assert_ne!(request_id(&h), "has space");
    }
}
