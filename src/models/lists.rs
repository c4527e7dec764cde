//! The model-list step: GETs of the configured list paths are answered from a per-identity
//! (or, without one, per-credential) cache, filled from the route's upstream with the relays'
//! models merged in.

use super::cache::{Cacheable, Failure, Freshness, Swr};
use super::catalogue::{self, RelayModel, Style};
use super::encoding;
use super::relays::{fetch_relay, RelayList, RelaySource};
use crate::body::{RequestBody, ResponseBody};
use crate::config::Config;
use crate::error::ProxyError;
use crate::headers;
use crate::identity::Identity;
use crate::state::{Shared, Snapshot};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{request, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// Larger upstream lists are refused rather than held in memory.
const MAX_LIST_BYTES: usize = 16 << 20;

static X_LLMGATE_CACHE: HeaderName = HeaderName::from_static("x-llmgate-cache");
static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// A list ready to serve.
pub struct Listing {
    content_type: HeaderValue,
    body: Bytes,
    /// `body` gzipped, for clients that accept it (`encoding.rs`).
    gzip: Option<Bytes>,
    /// Every relay's models are in it.
    complete: bool,
}

impl Cacheable for Listing {
    fn weight(&self) -> u32 {
        let gzip = self.gzip.as_ref().map_or(0, Bytes::len);
        ENTRY_OVERHEAD + (self.body.len() + gzip) as u32
    }

    fn complete(&self) -> bool {
        self.complete
    }
}

/// Bytes an entry costs besides its body (key, stamps, moka's bookkeeping), roughly.
pub(super) const ENTRY_OVERHEAD: u32 = 256;

/// Why a list could not be built; an upstream answer that is not a list is passed on as is.
#[derive(Debug)]
pub enum ListError {
    Proxy(ProxyError),
    Upstream {
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    },
}

impl Failure for ListError {
    fn revokes(&self) -> bool {
        matches!(self, Self::Upstream { status, .. } if matches!(status.as_u16(), 401 | 403))
    }
}

pub struct ModelLists {
    enabled: bool,
    paths: Vec<Box<str>>,
    lists: Swr<[u8; 32], Listing>,
    relay_lists: Swr<usize, RelayList>,
    /// Upstreams with `models` or `model_list`, by index.
    pub(super) relays: Vec<(usize, RelaySource)>,
    vary: Vec<HeaderName>,
    pub(super) fetch_timeout: Duration,
}

impl ModelLists {
    pub fn new(cfg: &Config) -> Self {
        let mc = &cfg.model_cache;
        let relays = cfg
            .upstreams
            .iter()
            .enumerate()
            .filter_map(|(i, u)| {
                let name = u.name.get_ref();
                let source = match (&u.model_list, &u.models) {
                    (Some(list), _) => RelaySource::Static(
                        list.get_ref()
                            .iter()
                            .map(|id| RelayModel {
                                id: id.clone(),
                                created: 0,
                                owned_by: name.clone(),
                            })
                            .collect(),
                    ),
                    (None, Some(globs)) => RelaySource::Fetch(Some(
                        crate::config::globs(globs.get_ref()).expect("validated"),
                    )),
                    (None, None) => return None,
                };
                Some((i, source))
            })
            .collect();
        Self {
            enabled: mc.enabled,
            paths: mc.paths.iter().map(|p| p.as_str().into()).collect(),
            lists: Swr::new(mc.ttl.0, mc.stale_for.0, mc.max_size.0),
            relay_lists: Swr::new(mc.ttl.0, mc.stale_for.0, mc.max_size.0),
            relays,
            vary: mc
                .vary_headers
                .iter()
                .map(|h| HeaderName::from_bytes(h.as_bytes()).expect("validated"))
                .collect(),
            fetch_timeout: mc.fetch_timeout.0,
        }
    }

    /// Whether this request is a model-list request the step answers.
    pub fn is_list(&self, method: &Method, path: &str) -> bool {
        *method == Method::GET && self.paths.iter().any(|p| &**p == path)
    }

    /// Drops every cached list (the admin listener's `POST /cache/purge`).
    pub fn purge(&self) {
        self.lists.purge();
        self.relay_lists.purge();
    }

    /// One cache entry per path and identity; without an identity, per credential the
    /// upstream sees, so one user's filtered list never reaches another. The query is not part
    /// of the key (list paths take none but `refresh`), so query strings cannot multiply
    /// entries; a request with one can only affect its own identity's entry.
    fn key(&self, path: &str, h: &HeaderMap, identity: Option<&Identity>) -> [u8; 32] {
        let mut d = Sha256::new();
        d.update(path.as_bytes());
        d.update([0]);
        match identity {
            Some(id) => {
                d.update(b"identity\0");
                d.update(id.id.as_bytes());
            }
            None => {
                d.update(b"credential\0");
                for name in [&header::AUTHORIZATION, &X_API_KEY]
                    .into_iter()
                    .chain(&self.vary)
                {
                    for v in h.get_all(name) {
                        d.update(v.as_bytes());
                        d.update([0]);
                    }
                    d.update([1]);
                }
                for v in h.get_all(header::COOKIE) {
                    for c in v.as_bytes().split(|&b| b == b';') {
                        if let Some(token) = c.trim_ascii().strip_prefix(b"token=") {
                            d.update(token);
                            d.update([0]);
                        }
                    }
                }
            }
        }
        d.finalize().into()
    }

    /// The relays' models to merge into a list from upstream `except`, and whether all of
    /// them are known.
    async fn relay_models(
        &self,
        snap: &Arc<Snapshot>,
        except: usize,
    ) -> (Vec<Arc<[RelayModel]>>, bool) {
        let mut out = Vec::with_capacity(self.relays.len());
        let mut complete = true;
        for (idx, source) in &self.relays {
            match source {
                _ if *idx == except => {}
                RelaySource::Static(list) => out.push(list.clone()),
                RelaySource::Fetch(_) => {
                    let (s, i) = (snap.clone(), *idx);
                    if let Ok((list, _)) = self.relay_lists.get(i, move || fetch_relay(s, i)).await
                    {
                        out.push(list.value.models.clone());
                        complete &= list.value.complete;
                    }
                }
            }
        }
        (out, complete)
    }
}

/// Answers a model-list request. `parts` is the request as it would be forwarded upstream.
pub async fn serve(
    shared: &Shared,
    snap: &Arc<Snapshot>,
    upstream: usize,
    mut parts: request::Parts,
    client: &PathAndQuery,
    identity: Option<Identity>,
) -> Result<Response<ResponseBody>, ProxyError> {
    let lists = &snap.models;
    let key = lists.key(client.path(), &parts.headers, identity.as_ref());
    let gzip_ok = encoding::accepts_gzip(&parts.headers);
    // The answer is read whole, so it must come back uncompressed and not as a 304.
    for h in [
        header::ACCEPT_ENCODING,
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::RANGE,
        header::IF_RANGE,
    ] {
        parts.headers.remove(h);
    }
    let refresh = identity.as_ref().is_some_and(Identity::is_admin)
        && form_urlencoded::parse(client.query().unwrap_or("").as_bytes())
            .any(|(k, v)| k == "refresh" && v == "true");
    let fetch = {
        let (snap, style) = (snap.clone(), catalogue::merge_style(client.path()));
        move || fetch_list(snap, upstream, parts.uri, parts.headers, style, identity)
    };
    let got = if !lists.enabled {
        fetch()
            .await
            .map(|l| (l.content_type.clone(), pick(&l, gzip_ok), Freshness::Miss))
            .map_err(Arc::new)
    } else {
        let got = if refresh {
            // Boxed: rare (an administrator's refresh), and inline it would double this future.
            let entry = Box::pin(lists.lists.reload(key, fetch())).await;
            entry.map(|e| (e, Freshness::Miss))
        } else {
            lists.lists.get(key, fetch).await
        };
        got.map(|(e, f)| (e.value.content_type.clone(), pick(&e.value, gzip_ok), f))
    };
    let (content_type, body, freshness) = match got {
        Ok(listing) => listing,
        Err(e) => {
            shared.metrics.model_cache(Freshness::Miss);
            return match &*e {
                ListError::Proxy(p) => Err(p.clone()),
                ListError::Upstream {
                    status,
                    headers,
                    body,
                } => {
                    let mut resp = Response::new(ResponseBody::full(body.clone()));
                    *resp.status_mut() = *status;
                    *resp.headers_mut() = headers.clone();
                    resp.headers_mut()
                        .insert(&X_LLMGATE_CACHE, HeaderValue::from_static("miss"));
                    Ok(resp)
                }
            };
        }
    };
    shared.metrics.model_cache(freshness);
    let (body, gzipped) = body;
    let mut resp = Response::new(ResponseBody::full(body));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type);
    if let Some(gzipped) = gzipped {
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        if gzipped {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
    }
    h.insert(
        &X_LLMGATE_CACHE,
        HeaderValue::from_static(freshness.as_str()),
    );
    Ok(resp)
}

/// The body to send and, when the list has a gzip form, whether it is the one sent.
fn pick(l: &Listing, gzip_ok: bool) -> (Bytes, Option<bool>) {
    match &l.gzip {
        Some(gz) if gzip_ok => (gz.clone(), Some(true)),
        Some(_) => (l.body.clone(), Some(false)),
        None => (l.body.clone(), None),
    }
}

async fn fetch_list(
    snap: Arc<Snapshot>,
    upstream: usize,
    uri: Uri,
    headers: HeaderMap,
    style: Option<Style>,
    identity: Option<Identity>,
) -> Result<Listing, ListError> {
    let up = &snap.upstreams[upstream];
    let mut req = Request::new(RequestBody::empty());
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    let main = async {
        let resp = up.send(req).await.map_err(ListError::Proxy)?;
        let (parts, body) = resp.into_parts();
        let body = read_limited(body, up.response_timeout).await?;
        Ok::<_, ListError>((parts, body))
    };
    let relays = async {
        if style.is_some() {
            snap.models.relay_models(&snap, upstream).await
        } else {
            (Vec::new(), true)
        }
    };
    let (main, (relays, complete)) = tokio::join!(main, relays);
    let (mut parts, body) = main?;
    let relays: Vec<&[RelayModel]> = relays.iter().map(|r| &r[..]).collect();
    let built = (parts.status == StatusCode::OK
        && !parts.headers.contains_key(header::CONTENT_ENCODING))
    .then(|| catalogue::build(&body, style, &relays, identity.as_ref()))
    .flatten();
    match built {
        Some(body) => Ok(Listing {
            content_type: parts
                .headers
                .get(header::CONTENT_TYPE)
                .cloned()
                .unwrap_or(HeaderValue::from_static("application/json")),
            gzip: encoding::gzip(&body),
            body,
            complete,
        }),
        None => {
            headers::strip_hop_by_hop(&mut parts.headers, false);
            parts.headers.remove(header::CONTENT_LENGTH);
            Err(ListError::Upstream {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        }
    }
}

pub(super) async fn read_limited(
    body: hyper::body::Incoming,
    within: Duration,
) -> Result<Bytes, ListError> {
    match tokio::time::timeout(within, Limited::new(body, MAX_LIST_BYTES).collect()).await {
        Err(_) => Err(ListError::Proxy(ProxyError::UpstreamTimeout)),
        Ok(Err(_)) => Err(ListError::Proxy(ProxyError::UpstreamReset)),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}
