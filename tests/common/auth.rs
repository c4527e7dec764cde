//! Credentials for tests: Open WebUI-style JWTs, llmgate keys, an introspection mock, and raw
//! HTTP/1.1 over TCP (so nothing on the client side normalises a request).

use super::*;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const JWT_SECRET: &str = "test-secret-0123456789abcdef";
/// The one `sk-` key the introspection mock knows: user "u1", role "user".
pub const SK_GOOD: &str = "sk-0123456789abcdef0123456789abcdef";
/// An `sk-` key of user "boss", role "admin".
pub const SK_ADMIN: &str = "sk-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An HS256 JWT like Open WebUI's, for user `id`, expiring `exp_in` seconds from now.
pub fn jwt(secret: &str, id: &str, exp_in: i64) -> String {
    let claims = serde_json::json!({
        "id": id, "exp": now() + exp_in, "iat": now(), "jti": "j1", "typ": "session"
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// A fresh llmgate key and its `[[keys]]` entry; `table` is "keys" for a keys file or
/// "auth.keys" for inline keys.
pub fn new_key(id: &str, table: &str) -> (String, String) {
    let key = llmgate::auth::keys::generate();
    let entry = llmgate::auth::keys::entry(id, &key).replace("[[keys]]", &format!("[[{table}]]"));
    (key, entry)
}

/// Open WebUI as far as introspection goes: `GET /api/v1/users/user/status` answers the user
/// for `SK_GOOD`, `SK_ADMIN` and any JWT signed with `JWT_SECRET`, 401 otherwise, after
/// `delay`. Every other path answers 200 `{"path": ...}`.
pub async fn open_webui(delay: Duration) -> MockUpstream {
    MockUpstream::start(move |req| async move {
        if req.uri().path() != "/api/v1/users/user/status" {
            return json(200, &format!(r#"{{"path":"{}"}}"#, req.uri().path()));
        }
        tokio::time::sleep(delay).await;
        let cred = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let user = match cred {
            SK_GOOD => Some(("u1".to_string(), "user")),
            SK_ADMIN => Some(("boss".to_string(), "admin")),
            t if t.starts_with("eyJ") => {
                let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
                v.validate_exp = true;
                jsonwebtoken::decode::<serde_json::Value>(
                    t,
                    &jsonwebtoken::DecodingKey::from_secret(JWT_SECRET.as_bytes()),
                    &v,
                )
                .ok()
                .map(|d| (d.claims["id"].as_str().unwrap_or("").to_string(), "user"))
            }
            _ => None,
        };
        match user {
            Some((id, role)) => json(
                200,
                &format!(r#"{{"id":"{id}","email":"{id}@example.com","role":"{role}","name":"{id}"}}"#),
            ),
            None => json(
                401,
                r#"{"detail":"Your session has expired or the token is invalid. Please sign in again."}"#,
            ),
        }
    })
    .await
}

/// How many introspection calls the mock has answered.
pub fn introspections(m: &MockUpstream) -> usize {
    m.seen()
        .iter()
        .filter(|s| s.uri.path() == "/api/v1/users/user/status")
        .count()
}

/// Requests the mock saw other than introspection.
pub fn forwarded(m: &MockUpstream) -> Vec<Seen> {
    m.seen()
        .into_iter()
        .filter(|s| s.uri.path() != "/api/v1/users/user/status")
        .collect()
}

/// A GET with `Authorization: Bearer <cred>`.
pub fn bearer_get(path: &str, cred: &str) -> Request<MockBody> {
    let mut req = request("GET", path, full(""));
    req.headers_mut()
        .insert("authorization", format!("Bearer {cred}").parse().unwrap());
    req
}

/// The status of a GET with `Authorization: Bearer <cred>`.
pub async fn bearer_status(addr: SocketAddr, path: &str, cred: &str) -> u16 {
    send(addr, bearer_get(path, cred)).await.status().as_u16()
}

/// `llmgate_auth_failures_total{reason}` as the admin listener reports it.
pub async fn auth_failures(proxy: &Proxy, reason: &str) -> Option<f64> {
    let m = proxy.metrics().await;
    metric(
        &m,
        &format!("llmgate_auth_failures_total{{reason=\"{reason}\"}}"),
    )
}

/// Status and body of a response, reading the body.
pub async fn status_body(resp: Response<Incoming>) -> (u16, String) {
    let status = resp.status().as_u16();
    (status, body_string(resp.into_body()).await)
}

/// Sends `raw` bytes on a fresh connection and returns the response head and body as text
/// (whatever arrives within a few seconds).
pub async fn raw_request(addr: SocketAddr, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // Until the connection closes or one whole response (head + content-length body) arrived.
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out);
        if let Some(head_end) = text.find("\r\n\r\n") {
            let len = text[..head_end]
                .lines()
                .find_map(|l| {
                    let l = l.to_ascii_lowercase();
                    l.strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if out.len() >= head_end + 4 + len {
                break;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of a raw response, e.g. 401.
pub fn raw_status(resp: &str) -> u16 {
    resp.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {resp:?}"))
}
