//! The route table: an exact `path` beats every prefix; among prefixes the longest matching
//! `path_prefix` wins, on whole path segments. Routes with `models` apply only to requests
//! naming a matching model, and are tried before the route without `models` on the same path
//! or prefix. Lookups allocate nothing.

use crate::config::RouteConfig;
use crate::identity::Identity;
use http::uri::PathAndQuery;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug)]
pub struct Route {
    /// Name for logs and metrics: the configured `name`, or the path or prefix.
    pub name: Arc<str>,
    /// The configured path or prefix.
    pub prefix: String,
    /// Index into the snapshot's upstreams.
    pub upstream: usize,
    pub rewrite: Option<String>,
    /// Served without a credential.
    pub public: bool,
    /// Who may use the route; `None` means every identity.
    access: Option<Access>,
    /// Models this route is for; `None` serves any request.
    pub models: Option<globset::GlobSet>,
}

#[derive(Debug)]
struct Access {
    identities: globset::GlobSet,
    roles: Vec<Box<str>>,
}

#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
    /// The routes on each exact path, those with `models` first.
    exact: HashMap<Box<str>, Vec<usize>>,
    /// Indexes of prefix routes, longest prefix first (with `models` first among equals), so
    /// the first match is the most specific.
    prefixes: Vec<usize>,
    /// Whether any route has `models`, so other paths skip the model lookup.
    any_models: bool,
}

impl RouteTable {
    pub fn new(cfg: &[RouteConfig], upstream_index: impl Fn(&str) -> usize) -> Self {
        let mut table = Self::default();
        for r in cfg {
            let (pattern, exact) = r.pattern().expect("validated by config::validate");
            let prefix = pattern.get_ref().clone();
            let access = (r.identities.is_some() || r.roles.is_some()).then(|| {
                let mut set = globset::GlobSetBuilder::new();
                for g in r.identities.iter().flatten() {
                    set.add(globset::Glob::new(g).expect("validated by config::validate"));
                }
                Access {
                    identities: set.build().expect("validated globs build"),
                    roles: r
                        .roles
                        .iter()
                        .flatten()
                        .map(|s| s.as_str().into())
                        .collect(),
                }
            });
            let i = table.routes.len();
            if exact {
                table
                    .exact
                    .entry(prefix.as_str().into())
                    .or_default()
                    .push(i);
            } else {
                table.prefixes.push(i);
            }
            table.routes.push(Route {
                name: r.name.clone().unwrap_or_else(|| prefix.clone()).into(),
                upstream: upstream_index(r.upstream.get_ref()),
                rewrite: r.rewrite_prefix.as_ref().map(|p| p.get_ref().clone()),
                prefix,
                public: r.public,
                access,
                models: r.models.as_ref().map(|m| {
                    crate::config::globs(m.get_ref()).expect("validated by config::validate")
                }),
            });
        }
        let routes = &table.routes;
        table.prefixes.sort_by_key(|&i| {
            let r = &routes[i];
            (std::cmp::Reverse(r.prefix.len()), r.models.is_none())
        });
        for on_path in table.exact.values_mut() {
            on_path.sort_by_key(|&i| routes[i].models.is_none());
        }
        table.any_models = routes.iter().any(|r| r.models.is_some());
        table
    }

    /// The route for an already normalised path that serves `model` (routes with `models`
    /// are skipped when the model is unknown or does not match).
    pub fn find(&self, path: &str, model: Option<&str>) -> Option<&Route> {
        let exact = self.exact.get(path).into_iter().flatten();
        exact
            .map(|&i| &self.routes[i])
            .find(|r| r.serves(model))
            .or_else(|| {
                self.prefixes
                    .iter()
                    .map(|&i| &self.routes[i])
                    .find(|r| prefix_matches(&r.prefix, path) && r.serves(model))
            })
    }

    /// Whether the route for `path` could depend on the request's model.
    pub fn routes_by_model(&self, path: &str) -> bool {
        if !self.any_models {
            return false;
        }
        let exact = self.exact.get(path).into_iter().flatten();
        let prefixes = self
            .prefixes
            .iter()
            .filter(|&&i| prefix_matches(&self.routes[i].prefix, path));
        exact
            .chain(prefixes)
            .any(|&i| self.routes[i].models.is_some())
    }
}

/// `/api` matches `/api` and `/api/x` but not `/apix`; `/ollama/` matches `/ollama/x`.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        None => false,
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
    }
}

impl Route {
    fn serves(&self, model: Option<&str>) -> bool {
        match (&self.models, model) {
            (None, _) => true,
            (Some(globs), Some(m)) => globs.is_match(m),
            (Some(_), None) => false,
        }
    }

    /// Whether `id` may use this route: listed by id glob or by role, or the route lists no one.
    pub fn permits(&self, id: &Identity) -> bool {
        self.access.as_ref().is_none_or(|a| {
            a.identities.is_match(&*id.id)
                || id
                    .role
                    .as_deref()
                    .is_some_and(|r| a.roles.iter().any(|x| **x == *r))
        })
    }

    /// The path and query to send upstream (before the upstream's base path), or `None` when
    /// the client's can be forwarded as it is.
    pub fn rewrite(&self, pq: &PathAndQuery) -> Option<String> {
        let rewrite = self.rewrite.as_deref()?;
        let rest = &pq.path()[self.prefix.len()..];
        let mut out = String::with_capacity(
            rewrite.len() + rest.len() + pq.query().map_or(0, |q| q.len() + 1),
        );
        out.push_str(rewrite);
        // Joining "/" and "/x", or "/v1/" and "x", must give exactly one slash.
        match (out.ends_with('/'), rest.starts_with('/')) {
            (true, true) => out.push_str(&rest[1..]),
            (false, false) if !rest.is_empty() => {
                out.push('/');
                out.push_str(rest);
            }
            _ => out.push_str(rest),
        }
        if let Some(q) = pq.query() {
            out.push('?');
            out.push_str(q);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str, rewrite: Option<&str>) -> Route {
        Route {
            name: prefix.into(),
            prefix: prefix.into(),
            upstream: 0,
            rewrite: rewrite.map(Into::into),
            public: false,
            access: None,
            models: None,
        }
    }

    #[test]
    fn segment_matching() {
        assert!(prefix_matches("/api", "/api"));
        assert!(prefix_matches("/api", "/api/models"));
        assert!(!prefix_matches("/api", "/apix"));
        assert!(prefix_matches("/ollama/", "/ollama/api/tags"));
        assert!(!prefix_matches("/ollama/", "/ollama"));
        assert!(prefix_matches("/", "/anything"));
    }

    #[test]
    fn rewrites_keep_query_and_one_slash() {
        let pq = |s: &str| PathAndQuery::try_from(s).unwrap();
        let r = route("/ollama/", Some("/"));
        assert_eq!(
            r.rewrite(&pq("/ollama/api/tags?x=1")).unwrap(),
            "/api/tags?x=1"
        );
        let r = route("/ollama", Some("/"));
        assert_eq!(r.rewrite(&pq("/ollama/api/tags")).unwrap(), "/api/tags");
        assert_eq!(r.rewrite(&pq("/ollama")).unwrap(), "/");
        let r = route("/api/chat/completions", Some("/chat/completions"));
        assert_eq!(
            r.rewrite(&pq("/api/chat/completions")).unwrap(),
            "/chat/completions"
        );
        let r = route("/a/", Some("/b"));
        assert_eq!(r.rewrite(&pq("/a/c")).unwrap(), "/b/c");
        assert!(route("/x", None).rewrite(&pq("/x/y")).is_none());
    }

    #[test]
    fn model_routes_win_only_for_their_models() {
        let mut relay = route("/v1/chat/completions", None);
        relay.upstream = 1;
        relay.models = Some(crate::config::globs(&["gpt-*".into()]).unwrap());
        let mut same_prefix = route("/v1/chat/completions", None);
        same_prefix.upstream = 2;
        let mut exact_relay = route("/x", None);
        exact_relay.upstream = 3;
        exact_relay.models = relay.models.clone();
        let table = RouteTable {
            routes: vec![
                relay,
                same_prefix,
                route("/v1", None),
                exact_relay,
                route("/", None),
            ],
            exact: HashMap::from([("/x".into(), vec![3])]),
            prefixes: vec![0, 1, 2, 4],
            any_models: true,
        };
        let up = |m| table.find("/v1/chat/completions", m).unwrap().upstream;
        assert_eq!(up(Some("gpt-4o")), 1);
        assert_eq!(up(Some("llama3")), 2);
        assert_eq!(up(None), 2);
        assert!(table.routes_by_model("/v1/chat/completions"));
        assert!(!table.routes_by_model("/v1/models"));
        assert_eq!(
            table.find("/v1/models", Some("gpt-4o")).unwrap().prefix,
            "/v1"
        );
        // An exact path for other models falls back to the prefixes.
        assert!(table.routes_by_model("/x"));
        assert_eq!(table.find("/x", Some("gpt-4o")).unwrap().upstream, 3);
        assert_eq!(table.find("/x", Some("llama3")).unwrap().prefix, "/");
    }
}
