//! Reading a request's model before its route is chosen: frames are read ahead into the
//! request body (to be replayed unchanged) until the top-level `model` is known, the window is
//! full or the body ends. For an identity with a model allowlist, every `model` member read
//! ahead is checked, and the rest of the body is checked as it streams, so a second `model`
//! member cannot slip past.

use super::scan::{Found, Scanner, Span, Status};
use crate::body::RequestBody;
use crate::error::ProxyError;
use crate::identity::Identity;

/// What has been read ahead of a request body, and what the scanner found in it.
pub struct ReadAhead {
    scanner: Scanner,
    /// Every top-level `model` member found so far.
    found: Vec<Found>,
    /// The first exact `model` string within the window: what the route is chosen by.
    model: Option<String>,
    seen: u64,
    window: u64,
    /// The request has no body to read (none, or a protocol upgrade).
    no_body: bool,
}

/// When reading ahead may stop.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Until {
    /// The model to route by is known.
    RouteModel,
    /// Any `model` member is known (the guard checks the rest as it streams).
    AnyModel,
    /// The top-level object closed.
    Closed,
}

/// What the read-ahead found of a request body, for token budgets.
#[derive(Clone, Debug, Default)]
pub struct BodyFacts {
    /// The body is a JSON object, whose `{` is at this offset.
    pub open_at: Option<u64>,
    /// The whole object was read ahead: a member missing from `spans` is not in the body.
    pub closed: bool,
    pub read: u64,
    pub spans: Vec<Span>,
}

impl ReadAhead {
    pub fn new(window: u64, no_body: bool) -> Self {
        Self {
            scanner: Scanner::new(),
            found: Vec::new(),
            model: None,
            seen: 0,
            window,
            no_body,
        }
    }

    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// Reads ahead for routing: at most about `window` bytes (whole frames).
    pub async fn for_route(&mut self, body: &mut RequestBody) -> Result<(), ProxyError> {
        self.read(body, Until::RouteModel, self.window).await
    }

    /// Reads ahead until the top-level object closes, at most about `limit` bytes: token
    /// budgets need `max_tokens` and `stream`, which clients often send after the messages.
    /// Must run before `enforce`, whose guard only sees frames that were not read ahead.
    pub async fn for_budget(
        &mut self,
        body: &mut RequestBody,
        limit: u64,
    ) -> Result<BodyFacts, ProxyError> {
        self.read(body, Until::Closed, limit.max(self.window))
            .await?;
        let s = &self.scanner;
        Ok(BodyFacts {
            open_at: s.open_at(),
            closed: s.status() == Status::Closed,
            read: s.fed(),
            spans: s.spans().to_vec(),
        })
    }

    /// What the scanner finds in these frames (for tests and benchmarks of token budgets).
    pub fn facts_of<'a>(frames: impl Iterator<Item = &'a [u8]>) -> BodyFacts {
        let mut s = Scanner::new();
        frames.for_each(|f| s.feed(f));
        BodyFacts {
            open_at: s.open_at(),
            closed: s.status() == Status::Closed,
            read: s.fed(),
            spans: s.spans().to_vec(),
        }
    }

    async fn read(
        &mut self,
        body: &mut RequestBody,
        until: Until,
        limit: u64,
    ) -> Result<(), ProxyError> {
        if self.no_body {
            return Ok(());
        }
        loop {
            let done = match until {
                Until::RouteModel => self.model.is_some(),
                Until::AnyModel => !self.found.is_empty(),
                Until::Closed => false,
            };
            if done || self.seen >= limit || self.scanner.status() != Status::Scanning {
                return Ok(());
            }
            let Some(data) = body.read_ahead().await? else {
                return Ok(());
            };
            // Routing only looks inside the window; the rest of a frame is still scanned (it
            // is already in memory) so the guard can take over where reading ahead stops.
            let take = (self.window.saturating_sub(self.seen) as usize).min(data.len());
            self.seen += data.len() as u64;
            self.scanner.feed(&data[..take]);
            let found = self.scanner.take_found();
            if self.model.is_none() {
                self.model = found.iter().find(|f| f.exact).and_then(|f| f.value.clone());
            }
            self.found.extend(found);
            self.scanner.feed(&data[take..]);
            self.found.extend(self.scanner.take_found());
        }
    }

    /// Enforces an identity's model allowlist on the query and the whole body: what was read
    /// ahead now, before any upstream call; the rest as it streams.
    pub async fn enforce(
        mut self,
        identity: Option<&Identity>,
        query: Option<&str>,
        body: &mut RequestBody,
    ) -> Result<(), ProxyError> {
        let Some(id) = identity.filter(|i| i.models.is_some()) else {
            return Ok(());
        };
        if !query_permits(id, query) {
            return Err(ProxyError::ModelNotAllowed);
        }
        self.read(body, Until::AnyModel, self.window).await?;
        if !permits(id, &self.found, self.scanner.status()) {
            return Err(ProxyError::ModelNotAllowed);
        }
        if !self.no_body && self.scanner.status() == Status::Scanning {
            body.guard(Box::new(BodyGuard {
                scanner: self.scanner,
                identity: id.clone(),
            }));
        }
        Ok(())
    }
}

/// Whether `identity` may send a body naming these models. Values that cannot be read, and
/// bodies no strict parser would read the way the scanner did, are refused.
fn permits(identity: &Identity, found: &[Found], status: Status) -> bool {
    status != Status::Malformed
        && found
            .iter()
            .all(|f| f.value.as_deref().is_some_and(|m| identity.may_use(m)))
}

/// Checks the frames of a restricted identity's body that were not read ahead.
pub struct BodyGuard {
    scanner: Scanner,
    identity: Identity,
}

impl BodyGuard {
    /// False when the frame names a model the identity may not use (or makes the body
    /// unreadable), so the body must be cut off before the upstream sees all of it.
    pub fn admit(&mut self, data: &[u8]) -> bool {
        if self.scanner.status() != Status::Scanning {
            return true;
        }
        self.scanner.feed(data);
        let found = self.scanner.take_found();
        permits(&self.identity, &found, self.scanner.status())
    }
}

/// Whether every `model` parameter of a query string is allowed (some servers read the model
/// from the query, so a `?model=` must not get around the allowlist).
pub fn query_permits(identity: &Identity, query: Option<&str>) -> bool {
    let Some(q) = query else {
        return true;
    };
    form_urlencoded::parse(q.as_bytes())
        .filter(|(k, _)| k.eq_ignore_ascii_case("model"))
        .all(|(_, v)| identity.may_use(&v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Source;
    use std::sync::Arc;

    fn restricted(globs: &[&str]) -> Identity {
        let globs: Vec<String> = globs.iter().map(|g| g.to_string()).collect();
        Identity {
            id: "k1".into(),
            source: Source::Key,
            role: None,
            models: Some(Arc::new(crate::config::globs(&globs).unwrap())),
            limits: None,
        }
    }

    #[test]
    fn query_models_are_checked_after_decoding() {
        let id = restricted(&["gpt-*"]);
        assert!(query_permits(&id, None));
        assert!(query_permits(&id, Some("x=1&model=gpt-4o")));
        assert!(!query_permits(&id, Some("model=gpt-4o&model=llama3")));
        assert!(!query_permits(&id, Some("MODEL=llama3")));
        assert!(!query_permits(&id, Some("mod%65l=llama%33")));
        assert!(query_permits(&id, Some("mod%65l=gpt%2D4o")));
    }

    #[test]
    fn guard_refuses_a_later_duplicate() {
        let id = restricted(&["gpt-*"]);
        let mut scanner = Scanner::new();
        scanner.feed(br#"{"model":"gpt-4o","messages":["#);
        assert!(permits(&id, &scanner.take_found(), scanner.status()));
        let mut guard = BodyGuard {
            scanner,
            identity: id,
        };
        assert!(guard.admit(br#""hi"],"#));
        assert!(!guard.admit(br#""Model":"llama3"}"#));
    }
}
