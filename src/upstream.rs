//! Upstreams: a pooled HTTP/1.1 client each, URL building, and classified failures.

use crate::body::{BodyTooLarge, ClientIdle, ModelDenied, RequestBody};
use crate::config::UpstreamConfig;
use crate::error::ProxyError;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

pub struct Upstream {
    pub name: Arc<str>,
    scheme: Scheme,
    authority: Authority,
    /// Path prefix from the configured URL, without a trailing slash ("" for none).
    base_path: String,
    pub host_header: Option<HeaderValue>,
    /// `Authorization` value sent instead of the client's credential.
    pub bearer: Option<HeaderValue>,
    pub response_timeout: Duration,
    pub idle_timeout: Duration,
    client: Client<HttpsConnector<HttpConnector>, RequestBody>,
}

/// Splits an upstream URL into scheme, authority and base path, or says what is wrong with it.
pub fn parse_base_url(url: &str) -> Result<(Scheme, Authority, String), String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a valid URL: {e}"))?;
    let scheme = match uri.scheme_str() {
        Some("http") => Scheme::HTTP,
        Some("https") => Scheme::HTTPS,
        _ => return Err(format!("{url:?} must start with http:// or https://")),
    };
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("{url:?} has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!(
            "{url:?}: credentials in the URL are not supported; use a header setting instead"
        ));
    }
    if uri.query().is_some() {
        return Err(format!(
            "{url:?}: a query string is not allowed in an upstream URL"
        ));
    }
    Ok((
        scheme,
        authority,
        uri.path().trim_end_matches('/').to_string(),
    ))
}

impl Upstream {
    pub fn new(cfg: &UpstreamConfig) -> Self {
        let (scheme, authority, base_path) =
            parse_base_url(cfg.url.get_ref()).expect("validated by config::validate");
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(cfg.connect_timeout.0));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let connector = crate::tls::upstream_connector(cfg, http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(cfg.pool_idle_timeout.0)
            .pool_max_idle_per_host(cfg.pool_max_idle)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Self {
            name: cfg.name.get_ref().as_str().into(),
            scheme,
            authority,
            base_path,
            host_header: cfg
                .host_header
                .as_deref()
                .map(|h| HeaderValue::from_str(h).expect("validated by config::validate")),
            bearer: cfg.bearer.as_ref().map(|b| {
                let mut v = HeaderValue::from_str(&format!("Bearer {}", b.0))
                    .expect("validated by config::validate");
                v.set_sensitive(true);
                v
            }),
            response_timeout: cfg.response_timeout.0,
            idle_timeout: cfg.idle_timeout.0,
            client,
        }
    }

    /// The absolute URI for a request: `rewritten` if the route rewrote the path, else the
    /// client's own path and query, behind this upstream's base path.
    pub fn uri_for(
        &self,
        client: &PathAndQuery,
        rewritten: Option<String>,
    ) -> Result<Uri, ProxyError> {
        let pq = match (self.base_path.is_empty(), rewritten) {
            (true, None) => client.clone(),
            (true, Some(p)) => PathAndQuery::try_from(p)
                .map_err(|_| ProxyError::BadRequest("request path cannot be forwarded"))?,
            (false, p) => {
                let p = p.as_deref().unwrap_or(client.as_str());
                PathAndQuery::try_from(format!("{}{p}", self.base_path))
                    .map_err(|_| ProxyError::BadRequest("request path cannot be forwarded"))?
            }
        };
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(pq);
        Uri::from_parts(parts)
            .map_err(|_| ProxyError::BadRequest("request path cannot be forwarded"))
    }

    /// Sends the request and waits for the response head, at most `response_timeout`.
    pub async fn send(&self, req: Request<RequestBody>) -> Result<Response<Incoming>, ProxyError> {
        match tokio::time::timeout(self.response_timeout, self.client.request(req)).await {
            Err(_) => Err(ProxyError::UpstreamTimeout),
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(classify(&e)),
        }
    }
}

fn classify(e: &hyper_util::client::legacy::Error) -> ProxyError {
    if e.is_connect() {
        return ProxyError::UpstreamUnavailable;
    }
    // The request body's own errors sit deeper in the chain than hyper's wrapper of them.
    let mut source = e.source();
    while let Some(err) = source {
        if err.is::<BodyTooLarge>() {
            return ProxyError::RequestTooLarge { limit: 0 };
        }
        if err.is::<ModelDenied>() {
            return ProxyError::ModelNotAllowed;
        }
        if err.is::<ClientIdle>() {
            return ProxyError::ClientBodyTimeout;
        }
        source = err.source();
    }
    let mut source = e.source();
    while let Some(err) = source {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            if h.is_parse() || h.is_parse_status() {
                return ProxyError::UpstreamProtocol;
            }
            if h.is_user() {
                // Our request body failed: the client went away or sent a broken body.
                return ProxyError::ClientBody;
            }
            if h.is_timeout() {
                return ProxyError::UpstreamTimeout;
            }
        }
        source = err.source();
    }
    ProxyError::UpstreamReset
}
