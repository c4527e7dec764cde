//! Asking Open WebUI whose credential this is (`GET /api/v1/users/user/status` by default),
//! with the answer cached by credential hash. Concurrent requests for one credential cause one
//! upstream call. 401 means invalid (cached briefly); any other failure fails closed (503) and
//! is never cached.

use super::keys::Hash;
use super::Failure;
use crate::config::{AuthConfig, UpstreamConfig};
use crate::identity::{Identity, Source};
use bytes::Bytes;
use http::{header, HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use moka::future::Cache;
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// User objects are small; a larger answer is not one.
const MAX_ANSWER: usize = 256 * 1024;

#[derive(Clone)]
enum Verdict {
    Valid(Identity),
    Invalid,
}

pub struct Introspector {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    uri: Uri,
    host: Option<HeaderValue>,
    upstream: Arc<str>,
    timeout: Duration,
    cache: Cache<Hash, Verdict>,
}

/// Why an answer could not be had; logged, never cached, never shown to the client.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Unavailable(String);

#[derive(Deserialize)]
struct User {
    id: String,
    #[serde(default)]
    role: Option<String>,
}

struct Ttl {
    valid: Duration,
    invalid: Duration,
}

impl moka::Expiry<Hash, Verdict> for Ttl {
    fn expire_after_create(&self, _: &Hash, v: &Verdict, _: Instant) -> Option<Duration> {
        Some(match v {
            Verdict::Valid(_) => self.valid,
            Verdict::Invalid => self.invalid,
        })
    }
}

impl Introspector {
    pub fn new(cfg: &AuthConfig, up: &UpstreamConfig) -> Self {
        let (scheme, authority, base) =
            crate::upstream::parse_base_url(up.url.get_ref()).expect("validated by config");
        let uri = Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query(format!("{base}{}", cfg.introspect_path))
            .build()
            .expect("validated by config");
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(up.connect_timeout.0));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(up.pool_idle_timeout.0)
            .build(crate::tls::upstream_connector(up, connector));
        let cache = Cache::builder()
            .max_capacity(cfg.introspect_cache_size)
            .expire_after(Ttl {
                valid: cfg.introspect_ttl.0,
                invalid: cfg.introspect_negative_ttl.0,
            })
            .build();
        Self {
            client,
            uri,
            host: up
                .host_header
                .as_deref()
                .and_then(|h| HeaderValue::from_str(h).ok()),
            upstream: up.name.get_ref().as_str().into(),
            timeout: cfg.introspect_timeout.0,
            cache,
        }
    }

    pub async fn check(&self, hash: &Hash, credential: &str) -> Result<Identity, Failure> {
        let ask = async {
            let answer = self.ask(credential).await;
            // Logged once per upstream call, not once per request waiting on it.
            if let Err(e) = &answer {
                tracing::warn!(
                    upstream = %self.upstream,
                    reason = %e,
                    "cannot verify a credential by introspection; refusing with 503 (fail closed)"
                );
            }
            answer
        };
        match self.cache.try_get_with_by_ref(hash, ask).await {
            Ok(Verdict::Valid(id)) => Ok(id),
            Ok(Verdict::Invalid) => Err(Failure::Invalid),
            Err(_) => Err(Failure::Unavailable),
        }
    }

    async fn ask(&self, credential: &str) -> Result<Verdict, Unavailable> {
        // Credentials come from headers, cookies or a query string, so this always succeeds.
        let Ok(mut auth) = HeaderValue::try_from(format!("Bearer {credential}")) else {
            return Ok(Verdict::Invalid);
        };
        auth.set_sensitive(true);
        let mut req = Request::get(self.uri.clone())
            .header(header::AUTHORIZATION, auth)
            .header(header::ACCEPT, "application/json")
            .body(Empty::new())
            .expect("valid request");
        if let Some(h) = &self.host {
            req.headers_mut().insert(header::HOST, h.clone());
        }
        let path = self.uri.path();
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| Unavailable(format!("GET {path} failed: {e}")))?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED {
                return Ok(Verdict::Invalid);
            }
            if status != StatusCode::OK {
                let hint = if status == StatusCode::FORBIDDEN {
                    " (Open WebUI answers 403 when user status is disabled, ENABLE_USER_STATUS=false, or API keys are not enabled; set auth.introspect_path or openwebui_jwt_secret)"
                } else {
                    ""
                };
                return Err(Unavailable(format!("GET {path} answered {status}{hint}")));
            }
            let body = Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| Unavailable(format!("GET {path}: reading the answer failed: {e}")))?
                .to_bytes();
            let user: User = serde_json::from_slice(&body).map_err(|e| {
                Unavailable(format!("GET {path} did not answer with a user object: {e}"))
            })?;
            if user.id.is_empty() {
                return Err(Unavailable(format!(
                    "GET {path} answered a user without an id"
                )));
            }
            Ok(Verdict::Valid(Identity {
                id: format!("user:{}", user.id).into(),
                source: Source::Introspection,
                role: user.role.map(Into::into),
                models: None,
                limits: None,
            }))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                Unavailable(format!(
                    "GET {path} did not answer within {:?}",
                    self.timeout
                ))
            })?
    }
}
