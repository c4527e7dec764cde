//! Models: the model-list cache and merged catalogue (`lists`), routing by the model a
//! request body names (`peek`), and model allowlists on both.
//!
//! On the request path: `read_model` (before routing), `route`, then, once the identity is
//! known, `ReadAhead::enforce`; model-list requests are answered by `serve_list`.

mod cache;
mod catalogue;
mod encoding;
mod lists;
mod peek;
mod relays;
mod scan;

pub use cache::Freshness;
pub use lists::{serve as serve_list, ModelLists};
pub use peek::{BodyFacts, BodyGuard, ReadAhead};
pub use scan::{Field, Span};
/// For the fuzz tests (tests/fuzz/models.rs); not an API.
#[doc(hidden)]
pub use scan::{Found, Scanner, Status};

use crate::body::RequestBody;
use crate::error::ProxyError;
use crate::routes::Route;
use crate::state::Snapshot;
use http::request::Parts;
use http::uri::PathAndQuery;
use http_body::Body;

/// Reads ahead of the body to find the model when the route for this path depends on it.
/// The result is also what `ReadAhead::enforce` checks an identity's allowlist against.
pub async fn read_model(
    snap: &Snapshot,
    parts: &Parts,
    pq: &PathAndQuery,
    body: &mut RequestBody,
) -> Result<ReadAhead, ProxyError> {
    let no_body = body.is_end_stream() || crate::headers::is_upgrade(&parts.headers);
    let mut read = ReadAhead::new(snap.peek_window, no_body);
    if snap.routes.routes_by_model(pq.path()) {
        read.for_route(body).await?;
    }
    Ok(read)
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
