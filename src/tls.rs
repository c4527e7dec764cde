//! TLS for https upstreams: rustls with the ring provider, the webpki roots, and optionally the
//! CA certificates of an upstream's `ca_file`.

use crate::config::UpstreamConfig;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use std::sync::Arc;

/// The CA certificates in a PEM file, or why there are none.
pub fn read_ca_file(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {path:?}: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{path:?} is not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{path:?} holds no CERTIFICATE block"));
    }
    Ok(certs)
}

/// The connector for an upstream: plain http, or https verified against the webpki roots
/// plus the upstream's `ca_file`.
pub fn upstream_connector(
    cfg: &UpstreamConfig,
    mut http: HttpConnector,
) -> HttpsConnector<HttpConnector> {
    // https URIs need the TLS connector to see them as https, not plain tcp.
    http.enforce_http(false);
    let extra = match &cfg.ca_file {
        // Checked by config::validate; if the file vanished since, only the built-in roots
        // are trusted, so the relay's private CA fails closed.
        Some(path) => read_ca_file(path.get_ref()).unwrap_or_else(|e| {
            tracing::error!(upstream = %cfg.name.get_ref(), error = %e, "ca_file unusable");
            Vec::new()
        }),
        None => Vec::new(),
    };
    connector(http, extra)
}

/// A connector that speaks plain http and https (HTTP/1.1 over TLS, verified against the
/// webpki roots plus `extra` CAs).
fn connector(
    http: HttpConnector,
    extra: Vec<CertificateDer<'static>>,
) -> HttpsConnector<HttpConnector> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra {
        // A certificate rustls cannot use is left out; the handshake then fails closed.
        if let Err(e) = roots.add(cert) {
            tracing::warn!(error = %e, "a certificate of ca_file was not usable as a trust anchor");
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http)
}
