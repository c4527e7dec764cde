//! Request path normalisation, done once before routing: the path a route is matched on is
//! the path that is forwarded, so no spelling of a protected path can pass as a public one.
//!
//! The canonical form: percent-encoded unreserved characters decoded (`%61` → `a`), other
//! escapes kept with upper-case hex, characters outside RFC 3986 `pchar` escaped, `.` and `..`
//! segments resolved, `//` merged. Whatever is ambiguous between upstream implementations is
//! refused instead of guessed: encoded `/` and `\`, backslashes, control bytes and NUL,
//! double encoding (`%252e`), invalid or overlong UTF-8, `..` above the root, and segments
//! that some servers read as dot segments (`...`, `..;x`, trailing dots or spaces).

use http::uri::PathAndQuery;
use std::borrow::Cow;

/// Why a path was refused; the text goes into the 400 answer.
pub type Refusal = &'static str;

/// The request target with its path in canonical form and its query untouched; a cheap clone
/// when the path already is canonical.
pub fn canonical(pq: &PathAndQuery) -> Result<PathAndQuery, Refusal> {
    match normalise(pq.path())? {
        Cow::Borrowed(_) => Ok(pq.clone()),
        Cow::Owned(mut p) => {
            if let Some(q) = pq.query() {
                p.push('?');
                p.push_str(q);
            }
            PathAndQuery::try_from(p).map_err(|_| "the path cannot be forwarded")
        }
    }
}

/// Returns the canonical form of `raw` (borrowed when it already is canonical).
pub fn normalise(raw: &str) -> Result<Cow<'_, str>, Refusal> {
    if !raw.starts_with('/') {
        return Err("the path must start with '/'");
    }
    if is_canonical(raw.as_bytes()) {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = String::with_capacity(raw.len());
    // Byte offsets in `out` where each kept segment starts (at its '/'), to undo on "..".
    let mut starts: Vec<usize> = Vec::new();
    let mut decoded = Vec::new();
    let segments: Vec<&str> = raw[1..].split('/').collect();
    let last = segments.len() - 1;
    for (i, seg) in segments.into_iter().enumerate() {
        decoded.clear();
        let start = out.len();
        out.push('/');
        canonical_segment(seg.as_bytes(), &mut out, &mut decoded)?;
        let text = std::str::from_utf8(&decoded).map_err(|_| "the path is not valid UTF-8")?;
        match text {
            // "//" merges; a trailing "/" stays.
            "" | "." => {
                out.truncate(start);
                if i == last {
                    out.push('/');
                }
            }
            ".." => {
                out.truncate(start);
                let parent = starts.pop().ok_or("the path climbs above the root")?;
                out.truncate(parent);
                if i == last {
                    out.push('/');
                }
            }
            _ => {
                check_segment(text)?;
                starts.push(start);
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

/// Appends the canonical spelling of one segment to `out` and its decoded bytes to `decoded`.
fn canonical_segment(seg: &[u8], out: &mut String, decoded: &mut Vec<u8>) -> Result<(), Refusal> {
    let mut i = 0;
    while i < seg.len() {
        let b = seg[i];
        let (byte, escaped) = if b == b'%' {
            let (Some(h), Some(l)) = (
                seg.get(i + 1).and_then(|&c| hex(c)),
                seg.get(i + 2).and_then(|&c| hex(c)),
            ) else {
                return Err("the path has a malformed percent-escape");
            };
            i += 3;
            (h << 4 | l, true)
        } else {
            i += 1;
            (b, false)
        };
        match byte {
            b'/' => return Err("the path has an encoded '/'"),
            b'\\' => return Err("the path has a backslash"),
            0..=0x1f | 0x7f => return Err("the path has a control character"),
            _ => {}
        }
        decoded.push(byte);
        if is_unreserved(byte) || (!escaped && is_pchar(byte)) {
            out.push(byte as char);
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(HEX[(byte >> 4) as usize] as char);
            out.push(HEX[(byte & 0xf) as usize] as char);
        }
    }
    Ok(())
}

/// Refuses segments that some server or filesystem would read as a dot segment.
fn check_segment(text: &str) -> Result<(), Refusal> {
    // A '%' that survives decoding and still reads as an escape ("%252e", "%25%32%65") would
    // mean something else to an upstream that decodes twice.
    let b = text.as_bytes();
    if b.windows(3)
        .any(|w| w[0] == b'%' && hex(w[1]).is_some() && hex(w[2]).is_some())
    {
        return Err("the path is percent-encoded twice");
    }
    let base = text.split(';').next().unwrap_or(text);
    if base.ends_with(['.', ' ']) || text.ends_with(['.', ' ']) {
        return Err("a path segment ends with a dot or a space");
    }
    Ok(())
}

/// One pass over an already canonical path: no escapes, no characters that need one, no empty
/// or dot segments, no trailing dots or spaces in a segment.
fn is_canonical(p: &[u8]) -> bool {
    let mut prev = b'/';
    for (i, &b) in p.iter().enumerate() {
        // "//", a segment ending in '.', "x.;y", or a byte that needs escaping.
        let bad = if b == b'/' {
            i > 0 && (prev == b'/' || prev == b'.')
        } else {
            !is_pchar(b) || (b == b';' && prev == b'.')
        };
        if bad {
            return false;
        }
        prev = b;
    }
    prev != b'.'
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 `pchar` without `%`: what may stand unescaped in a path segment.
fn is_pchar(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        normalise(raw)
            .unwrap_or_else(|e| panic!("{raw}: {e}"))
            .into_owned()
    }

    #[test]
    fn canonical_paths_are_borrowed() {
        for p in [
            "/",
            "/api/models",
            "/_app/immutable/x.js",
            "/a/b/",
            "/api/v1/files/abc;x",
        ] {
            assert!(matches!(normalise(p), Ok(Cow::Borrowed(_))), "{p}");
        }
    }

    #[test]
    fn resolves_and_decodes() {
        assert_eq!(ok("/static/../api/models"), "/api/models");
        assert_eq!(ok("/static/%2e%2e/api/models"), "/api/models");
        assert_eq!(ok("/static/.%2E/api/models"), "/api/models");
        assert_eq!(ok("//api//models"), "/api/models");
        assert_eq!(ok("/api/./models/"), "/api/models/");
        assert_eq!(ok("/api/models/."), "/api/models/");
        assert_eq!(ok("/a/b/.."), "/a/");
        assert_eq!(ok("/%61pi/%6dodels"), "/api/models");
        assert_eq!(ok("/files/a%20b%3f"), "/files/a%20b%3F");
        assert_eq!(ok("/x/%c3%a9"), "/x/%C3%A9");
        assert_eq!(ok("/x/{y}"), "/x/%7By%7D");
        assert_eq!(ok("/static/.."), "/");
    }

    #[test]
    fn refuses_ambiguous_paths() {
        for p in [
            "api",
            "/static/..%2fapi/models",
            "/static%2F..%2Fapi",
            "/static/..\\api",
            "/static/%5c..%5capi",
            "/api/%00",
            "/api/%0a",
            "/static/%252e%252e/api",
            "/static/%25%32%65%25%32%65/api",
            "/static/%c0%ae%c0%ae/api",
            "/x/%ff",
            "/../api",
            "/a/../../api",
            "/static/.../api",
            "/static/..;/api",
            "/static/.;x/api",
            "/api/models.",
            "/api./models",
            "/api/models%20",
            "/api/%2",
            "/api/%zz",
        ] {
            assert!(normalise(p).is_err(), "{p} was accepted");
        }
    }
}
