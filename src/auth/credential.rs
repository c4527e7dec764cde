//! Where a client's credential is read from, in Open WebUI's own order, so llmgate and Open
//! WebUI always judge the same credential: `Authorization: Bearer`, then the `token` cookie,
//! then `x-api-key`; for Socket.IO upgrades last the `token` query parameter.

use http::header::{self, HeaderMap, HeaderName};

static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// The Socket.IO endpoint, where browsers may put the token in the query.
const SOCKET_IO: &str = "/ws/socket.io";

/// The credential the request carries, if any; borrowed, never copied.
pub fn find<'a>(headers: &'a HeaderMap, path: &str, query: Option<&'a str>) -> Option<&'a str> {
    bearer(headers)
        .or_else(|| cookie(headers, "token"))
        .or_else(|| nonempty(headers.get(&X_API_KEY)?.to_str().ok()?))
        .or_else(|| {
            let socket = path == SOCKET_IO || path.starts_with("/ws/socket.io/");
            socket.then(|| query_param(query?, "token")).flatten()
        })
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, cred) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| nonempty(cred.trim()))
        .flatten()
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.split_once('=')?;
            (k.trim() == name)
                .then(|| nonempty(v.trim().trim_matches('"')))
                .flatten()
        })
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| nonempty(v)).flatten()
    })
}

fn nonempty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn open_webui_order() {
        let all = headers(&[
            ("x-api-key", "from-header"),
            ("cookie", "a=1; token=from-cookie"),
            ("authorization", "Bearer from-bearer"),
        ]);
        assert_eq!(find(&all, "/api", None), Some("from-bearer"));
        let h = headers(&[
            ("x-api-key", "k"),
            ("cookie", "token=c"),
            ("authorization", "Basic x"),
        ]);
        assert_eq!(find(&h, "/api", None), Some("c"));
        let h = headers(&[("x-api-key", "k"), ("cookie", "tokens=c")]);
        assert_eq!(find(&h, "/api", None), Some("k"));
        assert_eq!(
            find(&headers(&[("authorization", "bearer lower")]), "/", None),
            Some("lower")
        );
        assert_eq!(
            find(&headers(&[("authorization", "Bearer ")]), "/", None),
            None
        );
    }

    #[test]
    fn query_token_only_for_socket_io() {
        let h = HeaderMap::new();
        let q = Some("EIO=4&token=jwt&transport=websocket");
        assert_eq!(find(&h, "/ws/socket.io/", q), Some("jwt"));
        assert_eq!(find(&h, "/ws/socket.io", q), Some("jwt"));
        assert_eq!(find(&h, "/api/models", q), None);
        assert_eq!(find(&h, "/ws/socket.iox", q), None);
    }
}
