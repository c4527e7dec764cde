//! hyper answers requests it cannot parse by itself (a malformed request line, an invalid
//! header, a head past its own size limit, an unsupported version) with a bare status line and
//! no body, before llmgate's service sees anything. Clients are promised an OpenAI-shaped JSON
//! error for everything they can cause, so the connection's writer (`framing::Watched`) swaps
//! that head for the same status with a JSON body.
//!
//! The head is recognised by what only hyper's own answers look like: a whole write holding
//! just a head, `connection: close`, `content-length: 0`, and no `x-request-id` (llmgate sets
//! one on every response it produces or forwards).

use bytes::Bytes;
use memchr::memmem;

/// The JSON answer to send instead of `head`, when `head` is hyper's own error answer.
pub fn replacement(head: &[u8]) -> Option<Bytes> {
    let status = head.strip_prefix(b"HTTP/1.1 ")?.get(..3)?;
    if !matches!(status[0], b'4' | b'5') || !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    let lower = head.to_ascii_lowercase();
    let has = |needle: &[u8]| memmem::find(&lower, needle).is_some();
    if !has(b"\r\nconnection: close\r\n")
        || !has(b"\r\ncontent-length: 0\r\n")
        || has(b"\r\nx-request-id:")
    {
        return None;
    }
    let (reason, message, code) = match status {
        b"431" => (
            "Request Header Fields Too Large",
            "the request head is larger than the configured limits",
            "headers_too_large",
        ),
        b"505" => (
            "HTTP Version Not Supported",
            "the request's HTTP version is not supported",
            "http_version_not_supported",
        ),
        b"408" => (
            "Request Timeout",
            "the request head did not arrive in time",
            "request_timeout",
        ),
        b"400" => (
            "Bad Request",
            "the request could not be parsed as HTTP/1.1",
            "bad_request",
        ),
        _ => return None,
    };
    let body = format!(
        "{{\"error\":{{\"message\":\"{message}\",\"type\":\"invalid_request_error\",\"code\":\"{code}\"}}}}"
    );
    let status = std::str::from_utf8(status).ok()?;
    Some(Bytes::from(format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_bare_400_becomes_json() {
        let head = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Wed, 25 Nov 2026 22:40:47 GMT\r\n\r\n";
        let out = replacement(head).expect("replaced");
        let text = std::str::from_utf8(&out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "bad_request");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }

    #[test]
    fn llmgates_own_and_forwarded_answers_are_left_alone() {
        for head in [
            // Forwarded or produced by llmgate: always carries x-request-id.
            &b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\nx-request-id: abc\r\ncontent-length: 0\r\n\r\n"[..],
            // A body follows the head in the same write.
            b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\nx",
            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n",
            b"data: HTTP/1.1 400\r\n\r\n",
            b"",
        ] {
            assert_eq!(replacement(head), None, "{}", String::from_utf8_lossy(head));
        }
    }
}
