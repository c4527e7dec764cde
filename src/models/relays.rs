//! Relays' model lists for the merged catalogue: a static `model_list`, or `GET <url>/models`
//! with the relay's own credential, filtered by its `models` globs and cached like user lists.

use super::cache::{Cacheable, Failure};
use super::catalogue::{self, RelayModel};
use super::lists::{read_limited, ENTRY_OVERHEAD};
use crate::body::RequestBody;
use crate::state::Snapshot;
use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, StatusCode};
use std::sync::Arc;

/// A relay's models; empty and incomplete while the relay cannot be reached, so lists are
/// still built at once and the relay is asked again behind them.
pub struct RelayList {
    pub(super) models: Arc<[RelayModel]>,
    pub(super) complete: bool,
}

impl Cacheable for RelayList {
    fn weight(&self) -> u32 {
        let ids: usize = self
            .models
            .iter()
            .map(|m| 64 + m.id.len() + m.owned_by.len())
            .sum();
        ENTRY_OVERHEAD + ids as u32
    }

    fn complete(&self) -> bool {
        self.complete
    }
}

#[derive(Debug)]
pub struct RelayError;
impl Failure for RelayError {}

/// Where a relay's models come from.
pub(super) enum RelaySource {
    Static(Arc<[RelayModel]>),
    Fetch(Option<globset::GlobSet>),
}

/// A relay's models, never a failure: an unreachable relay gives an empty, incomplete list.
pub(super) async fn fetch_relay(snap: Arc<Snapshot>, idx: usize) -> Result<RelayList, RelayError> {
    let up = &snap.upstreams[idx];
    let fetched = tokio::time::timeout(snap.models.fetch_timeout, ask_relay(&snap, idx)).await;
    let models = match fetched {
        Ok(Ok(models)) => models,
        _ => {
            tracing::warn!(upstream = %up.name, "relay model list unavailable; its models are left out for now");
            return Ok(RelayList {
                models: Arc::new([]),
                complete: false,
            });
        }
    };
    Ok(RelayList {
        models,
        complete: true,
    })
}

async fn ask_relay(snap: &Snapshot, idx: usize) -> Result<Arc<[RelayModel]>, RelayError> {
    let up = &snap.upstreams[idx];
    let uri = up
        .uri_for(&PathAndQuery::from_static("/models"), None)
        .map_err(|_| RelayError)?;
    let mut req = Request::new(RequestBody::empty());
    *req.uri_mut() = uri;
    let h = req.headers_mut();
    h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    if let Some(host) = &up.host_header {
        h.insert(header::HOST, host.clone());
    }
    if let Some(bearer) = &up.bearer {
        h.insert(header::AUTHORIZATION, bearer.clone());
    }
    let resp = up.send(req).await.map_err(|_| RelayError)?;
    if resp.status() != StatusCode::OK {
        return Err(RelayError);
    }
    let body = read_limited(resp.into_body(), snap.models.fetch_timeout)
        .await
        .map_err(|_| RelayError)?;
    let mut models = catalogue::parse_relay_list(&body, &up.name).ok_or(RelayError)?;
    let globs = snap.models.relays.iter().find_map(|(i, s)| match s {
        RelaySource::Fetch(Some(g)) if *i == idx => Some(g),
        _ => None,
    });
    if let Some(globs) = globs {
        models.retain(|m| globs.is_match(&m.id));
    }
    Ok(models.into())
}
