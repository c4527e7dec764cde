//! The one error type for answers llmgate produces itself, mapped to HTTP in one place.

use crate::body::ResponseBody;
use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use std::fmt::Write;

/// Everything that makes llmgate answer a request itself instead of an upstream.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProxyError {
    #[error("no route matches this path")]
    NoRoute,
    #[error("{0}")]
    BadRequest(&'static str),
    #[error("invalid request path: {0}")]
    InvalidPath(&'static str),
    #[error("ambiguous request framing: {0}")]
    AmbiguousFraming(&'static str),
    #[error("invalid Host header: {0}")]
    InvalidHost(&'static str),
    #[error("the request head is larger than the configured limits")]
    HeadersTooLarge,
    #[error("WebSocket upgrades are not served on this path")]
    UpgradeNotAllowed,
    #[error("the client stopped sending its request body")]
    ClientBodyTimeout,
    #[error("no API key was sent; send one as `Authorization: Bearer <key>`")]
    MissingApiKey,
    #[error("the API key or token is invalid, expired or revoked")]
    InvalidApiKey,
    #[error("this identity is not allowed to use this route")]
    PermissionDenied,
    #[error("too many failed authentication attempts from this address; retry in {retry_after}s")]
    AuthThrottled { retry_after: u64 },
    #[error("the credential cannot be verified right now; try again shortly")]
    AuthUnavailable,
    #[error("request body is larger than the limit of {limit} bytes")]
    RequestTooLarge { limit: u64 },
    #[error("the request body could not be read from the client")]
    ClientBody,
    #[error("upstream is unavailable")]
    UpstreamUnavailable,
    #[error("upstream connection failed before the response")]
    UpstreamReset,
    #[error("upstream sent an invalid response")]
    UpstreamProtocol,
    #[error("upstream did not answer in time")]
    UpstreamTimeout,
    #[error("llmgate is shutting down")]
    ShuttingDown,
    #[error("{0}")]
    RateLimited(Box<crate::limits::Refusal>),
    #[error("rate limits cannot be checked right now; try again shortly")]
    RateLimitUnavailable,
    #[error("this credential may not use the requested model")]
    ModelNotAllowed,
    #[error("no route on this path serves the requested model")]
    ModelNotRouted,
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute | Self::ModelNotRouted => StatusCode::NOT_FOUND,
            Self::BadRequest(_)
            | Self::InvalidPath(_)
            | Self::ClientBody
            | Self::AmbiguousFraming(_)
            | Self::InvalidHost(_)
            | Self::UpgradeNotAllowed => StatusCode::BAD_REQUEST,
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::ClientBodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::MissingApiKey | Self::InvalidApiKey => StatusCode::UNAUTHORIZED,
            Self::PermissionDenied | Self::ModelNotAllowed => StatusCode::FORBIDDEN,
            Self::AuthThrottled { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::AuthUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::RequestTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UpstreamUnavailable | Self::UpstreamReset | Self::UpstreamProtocol => {
                StatusCode::BAD_GATEWAY
            }
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::ShuttingDown | Self::RateLimitUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// Low-cardinality name, used as the JSON `code` and as a metrics label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NoRoute => "no_route",
            Self::BadRequest(_) => "bad_request",
            Self::InvalidPath(_) => "invalid_path",
            Self::AmbiguousFraming(_) => "ambiguous_framing",
            Self::InvalidHost(_) => "invalid_host",
            Self::HeadersTooLarge => "headers_too_large",
            Self::UpgradeNotAllowed => "upgrade_not_allowed",
            Self::ClientBodyTimeout => "client_body_timeout",
            Self::MissingApiKey => "missing_api_key",
            Self::InvalidApiKey => "invalid_api_key",
            Self::PermissionDenied => "permission_denied",
            Self::AuthThrottled { .. } => "rate_limit_exceeded",
            Self::AuthUnavailable => "auth_unavailable",
            Self::ClientBody => "client_body_error",
            Self::RequestTooLarge { .. } => "request_too_large",
            Self::UpstreamUnavailable | Self::UpstreamReset | Self::UpstreamProtocol => {
                "upstream_unavailable"
            }
            Self::UpstreamTimeout => "upstream_timeout",
            Self::ShuttingDown => "shutting_down",
            Self::RateLimited(_) => "rate_limit_exceeded",
            Self::RateLimitUnavailable => "rate_limit_unavailable",
            Self::ModelNotAllowed => "model_not_allowed",
            Self::ModelNotRouted => "model_not_found",
        }
    }

    /// The upstream error class for `llmgate_upstream_errors_total{kind}`, if this is one.
    pub fn upstream_kind(&self) -> Option<&'static str> {
        match self {
            Self::UpstreamUnavailable => Some("connect"),
            Self::UpstreamReset => Some("reset"),
            Self::UpstreamProtocol => Some("protocol"),
            Self::UpstreamTimeout => Some("timeout"),
            _ => None,
        }
    }

    fn error_type(&self) -> &'static str {
        // OpenAI's 429s say which kind of limit: "requests" or "tokens".
        if let Self::RateLimited(r) = self {
            return if r.limit.is_tokens() {
                "tokens"
            } else {
                "requests"
            };
        }
        if self.status().is_server_error() {
            "server_error"
        } else {
            "invalid_request_error"
        }
    }

    /// `{"error":{"message","type","code"}}`, OpenAI's shape.
    pub fn to_response(&self) -> Response<ResponseBody> {
        let mut body = String::with_capacity(128);
        body.push_str("{\"error\":{\"message\":");
        json_string(&mut body, &self.to_string());
        let _ = write!(
            body,
            ",\"type\":\"{}\",\"code\":\"{}\"}}}}",
            self.error_type(),
            self.kind()
        );
        let mut resp = Response::new(ResponseBody::full(Bytes::from(body)));
        *resp.status_mut() = self.status();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let h = resp.headers_mut();
        match self {
            Self::ShuttingDown
            | Self::RequestTooLarge { .. }
            | Self::ClientBody
            | Self::ClientBodyTimeout
            | Self::AmbiguousFraming(_)
            | Self::InvalidHost(_)
            | Self::HeadersTooLarge
            | Self::ModelNotAllowed => {
                h.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Self::MissingApiKey => {
                h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::InvalidApiKey => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            Self::AuthThrottled { retry_after } => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            _ => {}
        }
        match self {
            Self::RateLimited(r) => {
                r.headers.write(resp.headers_mut());
                if let Some(secs) = r.retry_after {
                    resp.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                }
            }
            Self::RateLimitUnavailable => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        resp
    }
}

/// Appends `s` as a JSON string literal, copying unescaped runs whole.
pub fn json_string(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{:04x}", b);
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_shape() {
        let mut s = String::new();
        json_string(&mut s, "a\"b\n");
        assert_eq!(s, r#""a\"b\u000a""#);
        let r = ProxyError::RequestTooLarge { limit: 10 }.to_response();
        assert_eq!(r.status(), 413);
    }
}
