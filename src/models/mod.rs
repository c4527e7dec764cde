//! Models: the model-list cache and merged catalogue (`lists`), routing by the model a
//! request body names (`peek`), and model allowlists on both.

mod cache;
mod catalogue;
mod lists;
mod peek;
mod scan;

pub use cache::Freshness;
pub use lists::{serve as serve_list, ModelLists};
pub use peek::BodyGuard;

use crate::body::RequestBody;
use crate::error::ProxyError;
use crate::identity::Identity;
use crate::routes::Route;
use crate::state::Snapshot;
use http::request::Parts;
use http::uri::PathAndQuery;
use http_body::Body;

/// The model a request names, read when its route depends on it or its identity has an
/// allowlist; a restricted identity naming another model (in the query or the body) is refused
/// here, before any upstream call.
pub async fn request_model(
    snap: &Snapshot,
    parts: &Parts,
    pq: &PathAndQuery,
    body: &mut RequestBody,
    identity: Option<&Identity>,
) -> Result<Option<String>, ProxyError> {
    let access = identity.filter(|i| i.models.is_some());
    if let Some(id) = access {
        if !peek::query_permits(id, pq.query()) {
            return Err(ProxyError::ModelNotAllowed);
        }
    }
    let route = snap.routes.routes_by_model(pq.path());
    if !(route || access.is_some())
        || body.is_end_stream()
        || crate::headers::is_upgrade(&parts.headers)
    {
        return Ok(None);
    }
    let need = peek::Need { route, access };
    peek::peek(body, snap.peek_window, need).await
}

/// The route for a request, given the model it names.
pub fn route<'a>(
    snap: &'a Snapshot,
    path: &str,
    model: Option<&str>,
) -> Result<&'a Route, ProxyError> {
    snap.routes.find(path, model).ok_or(match model {
        Some(_) if snap.routes.routes_by_model(path) => ProxyError::ModelNotRouted,
        _ => ProxyError::NoRoute,
    })
}
