//! Cached model lists are compressed once, when the entry is filled, and sent compressed to
//! every client that accepts gzip (browsers, and the httpx behind the openai and ollama
//! Python clients, all do). Open WebUI's list is JSON that repeats the same keys per model:
//! 12 KB becomes about 1 KB, and the kernel's send cost per answer shrinks with it.
//! Proxied bodies are never compressed; this is llmgate's own answer.

use bytes::Bytes;
use flate2::{write::GzEncoder, Compression};
use http::{header, HeaderMap};
use std::io::Write as _;

/// Smaller lists are sent as they are: gzip's header and a second variant would not pay.
const MIN_SIZE: usize = 1024;

/// The gzip form of a list body, when it is worth keeping.
pub fn gzip(body: &[u8]) -> Option<Bytes> {
    if body.len() < MIN_SIZE {
        return None;
    }
    let mut enc = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::default());
    enc.write_all(body).ok()?;
    let out = enc.finish().ok()?;
    (out.len() < body.len()).then(|| Bytes::from(out))
}

/// Whether `Accept-Encoding` allows gzip (RFC 9110 §12.5.3): listed as `gzip`, `x-gzip` or
/// `*`, and not with `q=0`. An explicit `gzip` entry overrides `*`.
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut star = None;
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else {
            continue;
        };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let allowed = parts.all(|p| {
                let p = p.trim();
                let Some(q) = p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")) else {
                    return true;
                };
                q.trim().parse::<f32>().is_ok_and(|q| q > 0.0)
            });
            if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                return allowed;
            }
            if coding == "*" {
                star = Some(allowed);
            }
        }
    }
    star.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use std::io::Read as _;

    fn h(v: &[&str]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for v in v {
            m.append(header::ACCEPT_ENCODING, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn reads_accept_encoding_like_rfc_9110() {
        assert!(accepts_gzip(&h(&["gzip, deflate"])));
        assert!(accepts_gzip(&h(&["br", "GZIP;q=0.5"])));
        assert!(accepts_gzip(&h(&["x-gzip"])));
        assert!(accepts_gzip(&h(&["*"])));
        assert!(!accepts_gzip(&h(&[])));
        assert!(!accepts_gzip(&h(&["identity"])));
        assert!(!accepts_gzip(&h(&["br, deflate"])));
        assert!(!accepts_gzip(&h(&["gzip;q=0"])));
        assert!(!accepts_gzip(&h(&["gzip; q=0.000, *"])));
        assert!(!accepts_gzip(&h(&["*;q=0"])));
        assert!(!accepts_gzip(&h(&["gzip;q=zero"])));
    }

    #[test]
    fn compresses_lists_and_leaves_small_ones() {
        let body: String = (0..60)
            .map(|i| format!(r#"{{"id":"model-{i}","object":"model","owned_by":"ollama"}},"#))
            .collect();
        let gz = gzip(body.as_bytes()).expect("worth compressing");
        assert!(gz.len() < body.len() / 4, "{} of {}", gz.len(), body.len());
        let mut back = String::new();
        GzDecoder::new(&gz[..]).read_to_string(&mut back).unwrap();
        assert_eq!(back, body);
        assert_eq!(gzip(b"{\"data\":[]}"), None);
    }
}
