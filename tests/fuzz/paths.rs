//! Path normalisation and route matching: no input panics, the canonical form is a fixed
//! point with none of the spellings that mean different things to different servers, and no
//! spelling of a protected path is routed to a public route (the table of tests/bypass.rs).

use crate::cases;
use http::uri::PathAndQuery;
use llmgate::path::{canonical, normalise};
use llmgate::routes::RouteTable;
use proptest::prelude::*;
use std::borrow::Cow;
use std::sync::LazyLock;

const PERSIST: &str = "tests/fuzz-regressions/paths.txt";

/// The table of tests/bypass.rs: public "/", "/static/", "/_app/" and "/api/config"; the rest
/// protected.
static TABLE: LazyLock<RouteTable> = LazyLock::new(|| {
    let text = include_str!("../common/guarded_routes.toml").replace("UPSTREAM", "127.0.0.1:1")
        + "[[auth.keys]]\nid = \"k\"\nsha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\n";
    let config = llmgate::config::parse("fuzz.toml", &text, &|_| None).unwrap();
    RouteTable::new(&config.routes, |_| 0)
});

/// What the reference model (below) says is public, on a fully decoded, resolved path.
fn public_by_rule(decoded: &str) -> bool {
    decoded == "/"
        || decoded == "/api/config"
        || decoded.starts_with("/static/")
        || decoded.starts_with("/_app/")
}

/// How a server that decodes every escape, splits on both slashes and resolves dot segments
/// would read `path`: its decoded segments, or `None` when it climbs above the root.
fn upstream_view(path: &str) -> Option<(Vec<Vec<u8>>, bool)> {
    let bytes = percent_decode(path.as_bytes());
    let mut segs: Vec<Vec<u8>> = Vec::new();
    let parts: Vec<&[u8]> = bytes[1..].split(|&b| b == b'/' || b == b'\\').collect();
    let mut trailing = false;
    for (i, seg) in parts.iter().enumerate() {
        let last = i == parts.len() - 1;
        match *seg {
            b"" | b"." => trailing = last,
            b".." => {
                segs.pop()?;
                trailing = last;
            }
            s => {
                segs.push(s.to_vec());
                trailing = false;
            }
        }
    }
    Some((segs, trailing))
}

fn percent_decode(b: &[u8]) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn joined((segs, trailing): &(Vec<Vec<u8>>, bool)) -> String {
    let mut s = String::from("/");
    s += &segs
        .iter()
        .map(|x| String::from_utf8_lossy(x))
        .collect::<Vec<_>>()
        .join("/");
    if *trailing && !segs.is_empty() {
        s.push('/');
    }
    s
}

/// Path pieces that attack normalisers, mixed with plain names.
fn token() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "/",
        "/",
        "/",
        "//",
        ".",
        "..",
        "...",
        "%2e",
        "%2E",
        "%2e%2e",
        ".%2e",
        "%2f",
        "%2F",
        "%5c",
        "%5C",
        "\\",
        "%25",
        "%252e",
        "%25%32%65",
        "%00",
        "%0a",
        "%09",
        "%c0%ae",
        "%c0%af",
        "%e0%80%ae",
        "%ff",
        "%C3%A9",
        "é",
        "日本",
        "static",
        "api",
        "config",
        "models",
        "_app",
        "ollama",
        "STATIC",
        "%73tatic",
        "%61pi",
        ";",
        ";x",
        "..;",
        " ",
        "%20",
        "%",
        "%z",
        "%zz",
        "%7e",
        "~",
        "x.",
        "a",
        "?",
        "#",
        "{",
        "%3b",
        "%3B",
        "+",
        "@",
        ":",
        "%u002e",
    ])
}

fn attack_path() -> impl Strategy<Value = String> {
    prop::collection::vec(token(), 0..14).prop_map(|t| format!("/{}", t.concat()))
}

fn any_path() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => attack_path(),
        1 => any::<String>().prop_map(|s| format!("/{s}")),
        1 => any::<String>(),
    ]
}

/// What a canonical path may not contain.
fn assert_canonical_shape(n: &str) -> Result<(), TestCaseError> {
    let b = n.as_bytes();
    prop_assert!(n.starts_with('/'), "{n:?}");
    prop_assert!(!n.contains("//"), "{n:?}");
    for seg in n[1..].split('/') {
        prop_assert!(seg != "." && seg != "..", "{n:?}");
        prop_assert!(!seg.ends_with('.') && !seg.ends_with(' '), "{n:?}");
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        prop_assert!(c > 0x20 && c < 0x7f && c != b'\\', "{n:?} has byte {c:#x}");
        if c == b'%' {
            let esc = &n[i..i + 3];
            prop_assert!(
                esc.bytes()
                    .skip(1)
                    .all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(&h)),
                "{n:?}: escape {esc} is not upper-case hex"
            );
            let v = u8::from_str_radix(&esc[1..], 16).unwrap();
            prop_assert!(
                !(v.is_ascii_alphanumeric() || b"-._~".contains(&v)),
                "{n:?}: unreserved {esc} left encoded"
            );
            prop_assert!(!matches!(v, b'/' | b'\\'), "{n:?}: {esc}");
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

fn check(raw: &str) -> Result<(), TestCaseError> {
    let Ok(n) = normalise(raw) else {
        return Ok(());
    };
    assert_canonical_shape(&n)?;
    // A fixed point. (Recognised without allocating only when it has no escapes: the
    // one-pass check does not decode, so "/%C3%A9" goes through the full pass again, and it
    // conservatively refuses "x.;y".)
    let again = normalise(&n);
    prop_assert!(
        matches!(&again, Ok(m) if *m == n),
        "{raw:?} -> {n:?} -> {again:?}"
    );
    if !n.contains('%') && !n.contains(".;") {
        prop_assert!(
            matches!(again, Ok(Cow::Borrowed(_))),
            "{n:?} is copied again"
        );
    }
    prop_assert!(PathAndQuery::try_from(&*n).is_ok(), "{n:?}");
    // The canonical path means to a decoding server what the raw path meant.
    let raw_view = upstream_view(raw);
    let view = upstream_view(&n).expect("canonical paths stay under the root");
    prop_assert_eq!(raw_view.as_ref(), Some(&view), "{:?} -> {:?}", raw, n);
    // Decoding once more changes nothing: no double encoding survives.
    let decoded = joined(&view);
    prop_assert_eq!(
        percent_decode(decoded.as_bytes()),
        decoded.as_bytes().to_vec()
    );
    // A public route only ever serves paths that are public as the upstream reads them.
    let route = TABLE
        .find(&n, None)
        .expect("the catch-all serves every path");
    if route.public {
        prop_assert!(
            public_by_rule(&decoded),
            "{raw:?} -> {n:?} (upstream reads {decoded:?}) took public route {}",
            route.name
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(4_000, PERSIST))]

    #[test]
    fn normalised_paths_are_canonical_and_keep_their_meaning(raw in any_path()) {
        check(&raw)?;
    }

    /// A public prefix followed by anything: either refused, or still public as read upstream,
    /// or routed to a protected route.
    #[test]
    fn public_prefixes_cannot_be_escaped(
        prefix in prop::sample::select(vec!["/static/", "/_app/", "/api/config", "/", "/static"]),
        rest in prop::collection::vec(token(), 0..10),
    ) {
        check(&format!("{prefix}{}", rest.concat()))?;
    }

    /// Whole request targets (path and query) from arbitrary bytes.
    #[test]
    fn request_targets_never_panic(raw in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut target = b"/".to_vec();
        target.extend_from_slice(&raw);
        if let Ok(pq) = PathAndQuery::try_from(target.as_slice()) {
            if let Ok(c) = canonical(&pq) {
                prop_assert_eq!(c.query(), pq.query());
                prop_assert_eq!(normalise(pq.path()).unwrap(), c.path());
                check(pq.path())?;
            }
        }
    }
}

/// The bypass table's attempts, through the same checks (they must keep passing).
#[test]
fn bypass_table_spellings() {
    for raw in [
        "/static/../api/models",
        "/static/%2e%2e/api/models",
        "/static/.%2e/api/models",
        "/static//../api/models",
        "/api/config;/../models",
        "/static/..%2fapi/models",
        "/static/%252e%252e/api/models",
        "/static/%c0%ae%c0%ae/api/models",
        "/static/..;/api/models",
        "/static./../api/models",
        "/%73tatic/app.css",
        "/static/./a/../app.css",
    ] {
        check(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
    }
}
