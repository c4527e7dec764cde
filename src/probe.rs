//! `llmgate probe URL`: the container health check, for images that have no shell and no curl.
//!
//! One HTTP/1.1 GET over a plain TCP connection, bounded by one deadline for connect, write and
//! read together; only the status line is read. Blocking std I/O on purpose: a probe needs no
//! runtime, and it must not read the config file (the proxy it checks already did).

use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Where a probe goes: `http://host[:port][/path]`.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    /// Host as written, IPv6 literals with their brackets (it becomes the `Host` header).
    pub host: String,
    pub port: u16,
    pub path: String,
}

/// Why a probe did not pass.
#[derive(Debug)]
pub enum ProbeError {
    /// The URL is not one a probe can use: the command line must change.
    Usage(String),
    /// Connect, write or read failed, or the deadline passed.
    Unreachable(String),
    /// The server answered, with this status, which is not 2xx.
    Status(u16),
    /// The server answered something that is not an HTTP/1.x status line.
    Garbled,
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usage(m) | Self::Unreachable(m) => f.write_str(m),
            Self::Status(s) => write!(f, "answered {s}"),
            Self::Garbled => f.write_str("answered something that is not HTTP/1.x"),
        }
    }
}

/// Parses `http://host[:port][/path[?query]]`; https, user info and fragments are refused.
pub fn parse_url(url: &str) -> Result<Target, ProbeError> {
    let usage =
        |m: &str| ProbeError::Usage(format!("{m}; write e.g. http://127.0.0.1:9100/readyz"));
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| usage("the URL must start with http:// (a probe speaks plain HTTP)"))?;
    if rest
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(usage("the URL contains spaces or control characters"));
    }
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if authority.contains('@') || path.contains('#') {
        return Err(usage("user info and fragments are not supported"));
    }
    let (host, port) = match authority.rfind(':') {
        // A colon inside brackets belongs to an IPv6 literal, not to a port.
        Some(i) if !authority[i..].contains(']') => {
            let port = authority[i + 1..]
                .parse::<u16>()
                .map_err(|_| usage("the port is not a number from 1 to 65535"))?;
            (&authority[..i], port)
        }
        _ => (authority, 80),
    };
    if host.is_empty() || port == 0 {
        return Err(usage("the URL has no host or a zero port"));
    }
    let path = match path {
        "" => "/".to_string(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_string(),
    };
    Ok(Target {
        host: host.to_string(),
        port,
        path,
    })
}

/// GETs `url` within `timeout`; Ok(status) only for a 2xx answer.
pub fn probe(url: &str, timeout: Duration) -> Result<u16, ProbeError> {
    let target = parse_url(url)?;
    let deadline = Instant::now() + timeout;
    let unreachable = |what: &str, e: &dyn fmt::Display| {
        ProbeError::Unreachable(format!("{what} {}:{}: {e}", target.host, target.port))
    };
    let bare = target.host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = (bare, target.port)
        .to_socket_addrs()
        .map_err(|e| unreachable("cannot resolve", &e))?
        .collect();
    let mut last = None;
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, left(deadline)?) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let mut stream = stream.ok_or_else(|| match last {
        Some(e) => unreachable("cannot connect to", &e),
        None => unreachable("no address for", &"empty resolution"),
    })?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: llmgate-probe/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        target.path,
        target.host,
        target.port,
        env!("CARGO_PKG_VERSION")
    );
    stream
        .set_write_timeout(Some(left(deadline)?))
        .and_then(|()| stream.write_all(request.as_bytes()))
        .map_err(|e| unreachable("cannot send to", &e))?;
    // The status line is all a probe needs; it fits in the first few dozen bytes.
    let mut head = [0u8; 256];
    let mut filled = 0;
    while !head[..filled].contains(&b'\n') && filled < head.len() {
        stream
            .set_read_timeout(Some(left(deadline)?))
            .map_err(|e| unreachable("cannot read from", &e))?;
        match stream.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(unreachable("no answer from", &e)),
        }
    }
    let status = status_code(&head[..filled]).ok_or(ProbeError::Garbled)?;
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err(ProbeError::Status(status))
    }
}

/// Time left before `deadline`, or the timeout error once it has passed.
fn left(deadline: Instant) -> Result<Duration, ProbeError> {
    let d = deadline.saturating_duration_since(Instant::now());
    if d.is_zero() {
        Err(ProbeError::Unreachable("timed out".into()))
    } else {
        Ok(d)
    }
}

/// The code of an `HTTP/1.x NNN ...` status line.
fn status_code(head: &[u8]) -> Option<u16> {
    let rest = head.strip_prefix(b"HTTP/1.")?;
    let code = rest.get(2..5)?;
    if rest.get(1) != Some(&b' ') || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(host: &str, port: u16, path: &str) -> Target {
        Target {
            host: host.into(),
            port,
            path: path.into(),
        }
    }

    #[test]
    fn urls() {
        let ok = |u: &str| parse_url(u).unwrap();
        assert_eq!(
            ok("http://127.0.0.1:9100/readyz"),
            t("127.0.0.1", 9100, "/readyz")
        );
        assert_eq!(ok("http://localhost"), t("localhost", 80, "/"));
        assert_eq!(ok("http://[::1]:9100"), t("[::1]", 9100, "/"));
        assert_eq!(ok("http://[::1]/x?y=1"), t("[::1]", 80, "/x?y=1"));
        assert_eq!(ok("http://h:1?q"), t("h", 1, "/?q"));
        for bad in [
            "https://127.0.0.1/",
            "127.0.0.1:9100",
            "http://:9100/",
            "http://h:0/",
            "http://h:99999/",
            "http://h:x/",
            "http://u@h/",
            "http://h/a b",
            "http://h/a\r\nX: y",
            "http://h/#f",
        ] {
            assert!(matches!(parse_url(bad), Err(ProbeError::Usage(_))), "{bad}");
        }
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(status_code(b"HTTP/1.0 503 x"), Some(503));
        assert_eq!(status_code(b"HTTP/1.1 20"), None);
        assert_eq!(status_code(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_code(b""), None);
    }
}
