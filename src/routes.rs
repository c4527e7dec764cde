//! The route table: longest matching path prefix wins; prefixes match whole path segments.

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
}

#[derive(Debug, Default)]
pub struct RouteTable {
    /// Longest prefix first, so the first match is the most specific one.
    routes: Vec<Route>,
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
                    prefix,
                }
            })
            .collect();
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        Self { routes }
    }

    pub fn find(&self, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| prefix_matches(&r.prefix, path))
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
}
