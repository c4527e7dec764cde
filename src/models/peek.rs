//! Reading a request's model before its route is chosen: frames are read ahead into the
//! request body (to be replayed unchanged) until the top-level `model` is known, the window is
//! full or the body ends. For an identity with a model allowlist, the rest of the body is
//! then checked as it streams, so a second `model` member cannot slip past.

use super::scan::{Found, Scanner, Status};
use crate::body::RequestBody;
use crate::error::ProxyError;
use crate::identity::Identity;

/// What reading ahead needs to find.
pub struct Need<'a> {
    /// The route depends on the model.
    pub route: bool,
    /// An identity with an allowlist: every model the body names must be on it.
    pub access: Option<&'a Identity>,
}

/// Reads ahead at most about `window` bytes (whole frames) and returns the model to route by:
/// the first exact top-level `model` string within the window.
pub async fn peek(
    body: &mut RequestBody,
    window: u64,
    need: Need<'_>,
) -> Result<Option<String>, ProxyError> {
    let mut scanner = Scanner::new();
    let mut seen = 0u64;
    let mut model = None;
    let mut any_model = false;
    while let Some(data) = body.read_ahead().await? {
        // Routing only looks inside the window; the rest of a frame is still scanned (it is
        // already in memory) so the guard can take over where reading ahead stops.
        let take = (window.saturating_sub(seen) as usize).min(data.len());
        seen += data.len() as u64;
        scanner.feed(&data[..take]);
        let found = scanner.take_found();
        if model.is_none() {
            model = found
                .iter()
                .find(|f| f.exact)
                .and_then(|f| f.value.clone());
        }
        any_model |= !found.is_empty();
        if let Some(id) = need.access {
            scanner.feed(&data[take..]);
            let rest = scanner.take_found();
            any_model |= !rest.is_empty();
            if !permits(id, &found, scanner.status()) || !permits(id, &rest, scanner.status()) {
                return Err(ProxyError::ModelNotAllowed);
            }
        }
        let found_enough = if need.route {
            model.is_some()
        } else {
            any_model
        };
        if found_enough || seen >= window || scanner.status() != Status::Scanning {
            break;
        }
    }
    if let Some(id) = need.access {
        if scanner.status() == Status::Scanning {
            body.guard(Box::new(BodyGuard {
                scanner,
                identity: id.clone(),
            }));
        }
    }
    Ok(model)
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
