//! The request path, top to bottom: this is the one place to read what happens to a request.

use crate::auth;
use crate::body::{RequestBody, RequestTally, ResponseBody};
use crate::error::ProxyError;
use crate::exchange::Exchange;
use crate::headers::{self, Peer, X_REQUEST_ID};
use crate::identity::Identity;
use crate::limits::Limits;
use crate::models;
use crate::state::Shared;
use crate::upgrade;
use http::{header, Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::time::Instant;

/// Answers one client request. Never fails: every failure is already a response.
pub async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    peer: Peer,
) -> Response<ResponseBody> {
    let start = Instant::now();
    // 1. Identify the request: its id travels upstream, back to the client and into the log.
    let request_id = headers::request_id(req.headers());
    let mut ex = Box::new(Exchange::begin(
        shared.clone(),
        request_id.clone(),
        req.method().clone(),
        req.uri().clone(),
        peer,
        start,
    ));

    // 2. Route and forward; any failure becomes an OpenAI-shaped error response.
    let mut resp = match forward(&shared, req, &mut ex, request_id.clone()).await {
        Ok(resp) => resp,
        Err(e) => {
            if let (Some(kind), Some(up)) = (e.upstream_kind(), ex.upstream.as_deref()) {
                shared
                    .metrics
                    .upstream_errors
                    .with_label_values(&[up, kind])
                    .inc();
            }
            e.to_response()
        }
    };

    // 3. Account for the response head; the body reports the rest when it ends.
    resp.headers_mut().insert(&X_REQUEST_ID, request_id);
    if let Some(admitted) = &ex.limits {
        admitted.write_headers(resp.headers_mut());
    }
    let status = resp.status();
    let route = ex.route.as_deref().unwrap_or("none");
    let upstream = ex.upstream.as_deref().unwrap_or("none");
    shared
        .metrics
        .requests
        .with_label_values(&[route, upstream, method_label(&ex.method), status.as_str()])
        .inc();
    shared
        .metrics
        .request_duration
        .with_label_values(&[route])
        .observe(start.elapsed().as_secs_f64());
    let streaming = resp.body().is_upstream();
    ex.respond(status.as_u16(), resp.headers(), streaming);
    resp.body_mut().observe(ex);
    resp
}

async fn forward(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    ex: &mut Exchange,
    request_id: http::HeaderValue,
) -> Result<Response<ResponseBody>, ProxyError> {
    if shared.is_draining() {
        return Err(ProxyError::ShuttingDown);
    }
    // The snapshot is held for the whole exchange, so a reload never changes a request midway.
    let snap = shared.snapshot.load_full();
    let (mut parts, body) = req.into_parts();
    // Ambiguous framing, a missing or repeated Host and oversized heads never reach a route.
    shared.guard.check(&parts)?;

    // Only origin-form targets ("/path?query") are routed; "*" and absolute-form are refused.
    let pq = match parts.uri.path_and_query() {
        Some(pq) if pq.path().starts_with('/') && parts.method != Method::CONNECT => pq.clone(),
        _ => {
            return Err(ProxyError::BadRequest(
                "request target must be an absolute path",
            ))
        }
    };
    // Normalised once: the route is matched on this path and this path is forwarded.
    let pq = crate::path::canonical(&pq).map_err(ProxyError::InvalidPath)?;
    shared.guard.upgrade(&mut parts, pq.path())?;

    // Bodies declared too large are refused before they cost an upstream call; the rest are
    // counted as they stream.
    let limit = snap.max_request_body;
    if content_length(&parts.headers).is_some_and(|len| len > limit) {
        return Err(ProxyError::RequestTooLarge { limit });
    }
    let tally = Arc::new(RequestTally::default());
    ex.request_tally = Some(tally.clone());
    let mut body = RequestBody::new(body, limit, tally.clone(), shared.request_body_timeout);

    // The route may depend on the model the body names, read ahead from a bounded prefix.
    let mut read = models::read_model(&snap, &parts, &pq, &mut body).await?;
    let route = models::route(&snap, pq.path(), read.model())?;
    let upstream = &snap.upstreams[route.upstream];
    ex.route = Some(route.name.clone());
    ex.upstream = Some(upstream.name.clone());

    // Who is asking: once [auth] is configured, every route that is not public needs an
    // identity, which travels on as the `Identity` extension.
    let peer = ex.peer.addr.ip();
    ex.identity = auth::identify(
        snap.auth.as_ref(),
        route,
        &mut parts,
        pq.path(),
        peer,
        &shared.metrics,
    )
    .await?;

    // A token budget reserves by `max_tokens` and `stream`, read ahead like the model.
    let identity = parts.extensions.get::<Identity>().cloned();
    let lim = shared.limits.as_ref();
    let facts = Limits::read_ahead(lim, &route.name, identity.as_ref(), &mut read, &mut body);
    let facts = facts.await?;

    // An identity's model allowlist covers the query and every `model` in the body.
    read.enforce(identity.as_ref(), pq.query(), &mut body)
        .await?;

    // Rate limits and token budgets, per identity or client IP: refused here, before the
    // upstream is asked.
    if let Some(limits) = lim {
        let peer = ex.peer.addr.ip();
        let m = &shared.metrics;
        // Boxed (like the list answer below) to keep every request's future small.
        let admit = limits.admit(&route.name, &mut parts, &mut body, facts, peer, m);
        ex.limits = Box::pin(admit).await?;
    }

    let upgrade = headers::is_upgrade(&parts.headers) && parts.version == Version::HTTP_11;
    let client_upgrade = if upgrade {
        parts.extensions.remove::<OnUpgrade>()
    } else {
        None
    };
    let client_host = parts
        .headers
        .get(header::HOST)
        .cloned()
        .or_else(|| parts.uri.authority().and_then(|a| a.as_str().parse().ok()));
    headers::strip_hop_by_hop(&mut parts.headers, upgrade);
    parts.headers.remove(header::HOST);
    if let Some(h) = &upstream.host_header {
        parts.headers.insert(header::HOST, h.clone());
    }
    if let Some(bearer) = &upstream.bearer {
        headers::swap_credentials(&mut parts.headers, bearer);
    }
    headers::set_forwarded(&mut parts.headers, &ex.peer, client_host);
    parts.headers.insert(&X_REQUEST_ID, request_id);
    parts.uri = upstream.uri_for(&pq, route.rewrite(&pq))?;
    parts.version = Version::HTTP_11;
    parts.extensions = http::Extensions::new();

    // Model lists are answered from the cache, filled from this upstream with relays merged.
    if snap.models.is_list(&parts.method, pq.path()) {
        let answer = models::serve_list(shared, &snap, route.upstream, parts, &pq, identity);
        return Box::pin(answer).await;
    }

    ex.sent_upstream();
    let resp = upstream
        .send(Request::from_parts(parts, body))
        .await
        .map_err(|e| {
            if tally.too_large.load(Ordering::Relaxed) {
                ProxyError::RequestTooLarge { limit }
            } else if tally.model_denied.load(Ordering::Relaxed) {
                ProxyError::ModelNotAllowed
            } else {
                e
            }
        })?;

    let (mut parts, body) = resp.into_parts();
    let switching = parts.status == StatusCode::SWITCHING_PROTOCOLS;
    if let (true, Some(client)) = (switching, client_upgrade) {
        if let Some(up) = parts.extensions.remove::<OnUpgrade>() {
            upgrade::relay(shared, client, up, upstream.name.clone());
        }
    }
    headers::strip_hop_by_hop(&mut parts.headers, switching);
    parts.extensions = http::Extensions::new();
    Ok(Response::from_parts(
        parts,
        ResponseBody::upstream(body, upstream.idle_timeout),
    ))
}

pub(crate) fn content_length(h: &http::HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Methods outside the standard set share one label, so clients cannot mint series.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}
