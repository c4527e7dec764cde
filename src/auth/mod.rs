//! Who is asking. Every route that is not `public` needs an identity as soon as `[auth]` is
//! configured; identities come, in this order, from llmgate's own keys, from Open WebUI JWTs
//! verified locally, or from asking Open WebUI (cached). The result travels as the `Identity`
//! request extension.

mod credential;
mod introspect;
/// Public for the fuzz tests (tests/fuzz/jwt.rs); not an API.
#[doc(hidden)]
pub mod jwt;
pub mod keys;
mod throttle;

use crate::config::{AuthConfig, KeyEntry, LoadedKeys, UpstreamConfig};
use crate::error::ProxyError;
use crate::headers;
use crate::identity::{Identity, Source};
use crate::metrics::Metrics;
use crate::routes::Route;
use arc_swap::ArcSwap;
use http::request::Parts;
use introspect::Introspector;
use jwt::JwtVerifier;
use keys::KeyStore;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use throttle::Throttle;

/// Credentials longer than this are refused unread (and never sent upstream).
const MAX_CREDENTIAL: usize = 8 * 1024;

/// Why a request has no identity. `reason` is the `llmgate_auth_failures_total` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Missing,
    Invalid,
    Expired,
    Throttled { retry_after: u64 },
    Unavailable,
}

impl Failure {
    pub fn reason(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Invalid => "invalid",
            Self::Expired => "expired",
            Self::Throttled { .. } => "throttled",
            Self::Unavailable => "unavailable",
        }
    }
}

impl From<Failure> for ProxyError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Missing => ProxyError::MissingApiKey,
            Failure::Invalid | Failure::Expired => ProxyError::InvalidApiKey,
            Failure::Throttled { retry_after } => ProxyError::AuthThrottled { retry_after },
            Failure::Unavailable => ProxyError::AuthUnavailable,
        }
    }
}

/// The keys in force: inline ones plus the keys file as last read.
struct Keys {
    store: KeyStore,
    path: Option<PathBuf>,
    digest: [u8; 32],
}

pub struct Auth {
    keys: ArcSwap<Keys>,
    /// `[[auth.keys]]`, kept to rebuild the store when the keys file changes.
    inline: Vec<KeyEntry>,
    jwt: Option<JwtVerifier>,
    introspect: Option<Introspector>,
    throttle: Throttle,
}

impl Auth {
    pub fn new(cfg: &AuthConfig, upstreams: &[UpstreamConfig]) -> Self {
        let introspect = cfg.introspect_upstream.as_ref().map(|name| {
            let up = upstreams
                .iter()
                .find(|u| u.name.get_ref() == name.get_ref())
                .expect("validated by config");
            Introspector::new(cfg, up)
        });
        let auth = Self {
            keys: ArcSwap::from_pointee(Keys {
                store: KeyStore::default(),
                path: None,
                digest: [0; 32],
            }),
            inline: cfg.keys.clone(),
            jwt: cfg
                .openwebui_jwt_secret
                .as_ref()
                .map(|s| JwtVerifier::new(&s.0)),
            introspect,
            throttle: Throttle::new(cfg.max_failures_per_ip, cfg.failure_window.0),
        };
        auth.set_keys_file(cfg.file.clone());
        auth
    }

    /// The keys file in force, as (path, digest of its bytes).
    pub fn keys_file(&self) -> Option<(PathBuf, [u8; 32])> {
        let k = self.keys.load();
        k.path.clone().map(|p| (p, k.digest))
    }

    pub fn inline_keys(&self) -> &[KeyEntry] {
        &self.inline
    }

    /// Puts a validated keys file in force; requests already authenticated are unaffected.
    pub fn set_keys_file(&self, file: LoadedKeys) -> usize {
        let store = KeyStore::new(self.inline.iter().chain(&file.keys));
        let n = store.len();
        self.keys.store(Arc::new(Keys {
            store,
            path: file.path,
            digest: file.digest,
        }));
        n
    }

    /// Whether `cred` is an llmgate key (known, or shaped like one). Open WebUI's own formats
    /// (`sk-` keys, JWTs) are meant for Open WebUI and are not hashed to find out.
    fn is_own_key(&self, cred: &str) -> bool {
        if cred.starts_with(keys::PREFIX) {
            return true;
        }
        if cred.starts_with("sk-") || jwt::is_jwt_shaped(cred) {
            return false;
        }
        let held = self.keys.load();
        !held.store.is_empty() && held.store.get(&keys::sha256(cred)).is_some()
    }

    /// The identity behind the request's credential.
    pub async fn authenticate(
        &self,
        headers: &http::HeaderMap,
        path: &str,
        query: Option<&str>,
        peer: IpAddr,
    ) -> Result<Identity, Failure> {
        let cred = credential::find(headers, path, query).ok_or(Failure::Missing)?;
        if let Some(retry_after) = self.throttle.blocked(peer) {
            return Err(Failure::Throttled { retry_after });
        }
        let result = self.verify(cred).await;
        if let Err(Failure::Invalid | Failure::Expired) = result {
            self.throttle.fail(peer);
        }
        result
    }

    async fn verify(&self, cred: &str) -> Result<Identity, Failure> {
        if cred.len() > MAX_CREDENTIAL {
            return Err(Failure::Invalid);
        }
        let hash = keys::sha256(cred);
        if let Some(id) = self.keys.load().store.get(&hash) {
            return Ok(id.clone());
        }
        // An unknown llmgate key is wrong, and must not travel to an upstream to be asked about.
        if cred.starts_with(keys::PREFIX) {
            return Err(Failure::Invalid);
        }
        let jwt = jwt::is_jwt_shaped(cred);
        match (&self.jwt, &self.introspect) {
            (Some(v), _) if jwt => v.verify(cred, &hash),
            (_, Some(i)) if jwt || cred.starts_with("sk-") => i.check(&hash, cred).await,
            _ => Err(Failure::Invalid),
        }
    }
}

/// The authentication step of the request path: unless the route is public (or there is no
/// `[auth]`), the request gets an `Identity` extension or an error answer. Returns the identity's name for
/// the access log.
pub async fn identify(
    auth: Option<&Auth>,
    route: &Route,
    parts: &mut Parts,
    path: &str,
    peer: IpAddr,
    metrics: &Metrics,
) -> Result<Option<Arc<str>>, ProxyError> {
    let Some(auth) = auth else {
        return Ok(None);
    };
    if route.public {
        // Not checked, but an llmgate key still never leaves (the UI sends its credential to
        // public paths such as /api/config too).
        let query = parts.uri.query();
        if credential::find(&parts.headers, path, query).is_some_and(|c| auth.is_own_key(c)) {
            headers::remove_credentials(&mut parts.headers);
        }
        return Ok(None);
    }
    // Boxed: inline, the introspection path made every request's future 4 KB larger, and
    // hyper holds that future for each request until its response head is out.
    let identity =
        match Box::pin(auth.authenticate(&parts.headers, path, parts.uri.query(), peer)).await {
            Ok(id) => id,
            Err(f) => {
                metrics.auth_failures.with_label_values(&[f.reason()]).inc();
                return Err(f.into());
            }
        };
    if !route.permits(&identity) {
        metrics
            .auth_failures
            .with_label_values(&["forbidden"])
            .inc();
        return Err(ProxyError::PermissionDenied);
    }
    // llmgate's own keys mean nothing upstream: they never leave.
    if identity.source == Source::Key {
        headers::remove_credentials(&mut parts.headers);
    }
    let name = identity.id.clone();
    parts.extensions.insert(identity);
    Ok(Some(name))
}

/// Says loudly that a config without `[auth]` lets everyone in.
pub fn warn_if_open(auth: Option<&AuthConfig>) {
    if auth.is_none() {
        tracing::warn!(
            "no [auth] section: llmgate authenticates nothing and every route is open to anyone who can reach it"
        );
    }
}
