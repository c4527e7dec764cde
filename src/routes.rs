//! The route table: longest matching path prefix wins; prefixes match whole path segments.
//! Routes with `models` apply only to requests naming a matching model; on the same prefix
//! they are tried before the route without `models`.

use crate::config::RouteConfig;
use http::uri::PathAndQuery;
use std::sync::Arc;

#[derive(Debug)]
pub struct Route {
    /// Name for logs and metrics: the configured `name`, or the prefix.
    pub name: Arc<str>,
    pub prefix: String,
    /// Index into the snapshot's upstreams.
    pub upstream: usize,
    pub rewrite: Option<String>,
    /// Models this route is for; `None` serves any request.
    pub models: Option<globset::GlobSet>,
}

#[derive(Debug, Default)]
pub struct RouteTable {
    /// Longest prefix first, so the first match is the most specific one.
    routes: Vec<Route>,
    /// Whether any route has `models`, so paths without them skip the model lookup.
    any_models: bool,
}

impl RouteTable {
    pub fn new(cfg: &[RouteConfig], upstream_index: impl Fn(&str) -> usize) -> Self {
        let mut routes: Vec<Route> = cfg
            .iter()
            .map(|r| {
                let prefix = r.path_prefix.get_ref().clone();
                Route {
                    name: r.name.clone().unwrap_or_else(|| prefix.clone()).into(),
                    upstream: upstream_index(r.upstream.get_ref()),
                    rewrite: r.rewrite_prefix.as_ref().map(|p| p.get_ref().clone()),
                    models: r.models.as_ref().map(|m| {
                        crate::config::globs(m.get_ref()).expect("validated by config::validate")
                    }),
                    prefix,
                }
            })
            .collect();
        routes.sort_by_key(|r| (std::cmp::Reverse(r.prefix.len()), r.models.is_none()));
        let any_models = routes.iter().any(|r| r.models.is_some());
        Self { routes, any_models }
    }

    /// The most specific route for `path` that serves `model` (routes with `models` are
    /// skipped when the model is unknown or does not match).
    pub fn find(&self, path: &str, model: Option<&str>) -> Option<&Route> {
        self.routes.iter().find(|r| {
            prefix_matches(&r.prefix, path)
                && match (&r.models, model) {
                    (None, _) => true,
                    (Some(globs), Some(m)) => globs.is_match(m),
                    (Some(_), None) => false,
                }
        })
    }

    /// Whether the route for `path` could depend on the request's model.
    pub fn routes_by_model(&self, path: &str) -> bool {
        self.any_models
            && self
                .routes
                .iter()
                .any(|r| r.models.is_some() && prefix_matches(&r.prefix, path))
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
        let table = RouteTable {
            routes: vec![relay, same_prefix, route("/v1", None)],
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
    }
}
