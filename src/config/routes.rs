//! `[[routes]]` checks: one canonical path or prefix each, no repeats, a known upstream, and
//! allowlists only where someone is asked who they are.

use super::{ConfigError, RouteConfig};
use std::collections::HashSet;

pub(super) fn validate(
    routes: &[RouteConfig],
    names: &HashSet<&str>,
    has_auth: bool,
    file: &str,
    text: &str,
) -> Result<(), ConfigError> {
    let at = |span: std::ops::Range<usize>, key: &str, message: String, fix: &str| {
        ConfigError::new(file, text, Some(span.start), key, message, fix)
    };
    let mut patterns = HashSet::new();
    for r in routes {
        let Some((pattern, exact)) = r.pattern() else {
            return Err(at(
                r.upstream.span(),
                "routes.path_prefix",
                "a route needs exactly one of `path_prefix` and `path`".into(),
                "write path_prefix = \"/api/\" to match a prefix, or path = \"/api/config\" for one path",
            ));
        };
        let key = if exact {
            "routes.path"
        } else {
            "routes.path_prefix"
        };
        let p = pattern.get_ref();
        if crate::path::normalise(p).ok().as_deref() != Some(p.as_str()) {
            let fix = match crate::path::normalise(p) {
                Ok(canonical) => format!("write it as llmgate compares paths: {canonical:?}"),
                Err(_) => "write an absolute path such as \"/ollama/\", without dot segments, escapes or \"//\"".into(),
            };
            return Err(at(
                pattern.span(),
                key,
                format!("{p:?} is not a canonical absolute path, so no request would match it"),
                &fix,
            ));
        }
        // Routes with `models` may share a path or prefix with one route without them.
        if r.models.is_none() && !patterns.insert((p.as_str(), exact)) {
            return Err(at(
                pattern.span(),
                key,
                format!("{p:?} is configured twice without `models`"),
                "keep one [[routes]] per path or prefix; several may share one when all but one have `models`",
            ));
        }
        let up = r.upstream.get_ref();
        if !names.contains(up.as_str()) {
            let known: Vec<_> = names.iter().copied().collect();
            return Err(at(
                r.upstream.span(),
                "routes.upstream",
                format!("route {p:?} names unknown upstream {up:?}"),
                &format!(
                    "use one of the [[upstreams]] names ({}) or add an upstream called {up:?}",
                    known.join(", ")
                ),
            ));
        }
        if let Some(rw) = &r.rewrite_prefix {
            if !rw.get_ref().starts_with('/') {
                return Err(at(
                    rw.span(),
                    "routes.rewrite_prefix",
                    format!("{:?} does not start with '/'", rw.get_ref()),
                    "write an absolute path such as \"/\"",
                ));
            }
        }
        let restricted = r.identities.is_some() || r.roles.is_some();
        if restricted && (r.public || !has_auth) {
            return Err(at(
                pattern.span(),
                "routes.identities",
                format!(
                    "route {p:?} limits who may use it, but {}",
                    if r.public {
                        "it is public"
                    } else {
                        "there is no [auth] section to say who is asking"
                    }
                ),
                "remove identities/roles, or configure [auth] and keep the route non-public",
            ));
        }
        for glob in r.identities.iter().flatten() {
            if let Err(e) = globset::Glob::new(glob) {
                return Err(at(
                    pattern.span(),
                    "routes.identities",
                    format!("{glob:?} is not a valid glob: {e}"),
                    "write an identity id or a glob such as \"user:*\"",
                ));
            }
        }
    }
    Ok(())
}
