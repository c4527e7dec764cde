//! Reloading without a restart. SIGHUP reloads the whole config file; the keys file is read
//! every second and put in force when its bytes change (robust against editors, atomic
//! renames and Kubernetes ConfigMap symlink swaps). Anything new is validated exactly like
//! `llmgate check`; when it is broken the previous config and keys stay in force. Requests
//! in flight keep the snapshot they started with.

use crate::auth;
use crate::config::{self, Config, LoadedKeys};
use crate::state::{Shared, Snapshot};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

const KEYS_POLL: Duration = Duration::from_secs(1);

/// Starts the SIGHUP handler and the keys file watch. `path` is what the config was loaded
/// from (`None`: the default path or the built-in config), `current` the config in force.
pub fn spawn(shared: Arc<Shared>, path: Option<PathBuf>, mut current: Config) {
    // Registered before returning, so a SIGHUP sent once llmgate says it listens is handled.
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, "cannot handle SIGHUP; configuration reloads are off");
            None
        }
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(KEYS_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut refused_keys = None;
        loop {
            tokio::select! {
                Some(()) = async { hup.as_mut()?.recv().await } => {
                    tracing::info!("SIGHUP received: reloading the configuration");
                    reload_config(&shared, path.as_deref(), &mut current);
                    refused_keys = None;
                }
                _ = tick.tick() => poll_keys(&shared, &mut refused_keys).await,
            }
        }
    });
}

/// Loads the config file again and puts it in force if it is valid.
pub fn reload_config(shared: &Shared, path: Option<&Path>, current: &mut Config) -> bool {
    let reloads = &shared.metrics.config_reloads;
    match config::load_or_default(path) {
        Ok(new) => {
            warn_about_fixed_settings(current, &new);
            auth::warn_if_open(new.auth.as_ref());
            shared.snapshot.store(Arc::new(Snapshot::new(&new)));
            *current = new;
            reloads.with_label_values(&["ok"]).inc();
            tracing::info!("configuration reloaded");
            true
        }
        Err(e) => {
            reloads.with_label_values(&["error"]).inc();
            tracing::error!(error = %e, "configuration reload failed; the previous configuration stays in force");
            false
        }
    }
}

/// Puts the keys file in force when its bytes changed. `refused` remembers the digest of a
/// broken version, so it is reported once rather than every second.
async fn poll_keys(shared: &Shared, refused: &mut Option<[u8; 32]>) {
    let snap = shared.snapshot.load_full();
    let Some(auth) = &snap.auth else { return };
    let Some((path, in_force)) = auth.keys_file() else {
        return;
    };
    let name = path.display().to_string();
    let (digest, loaded) = match tokio::fs::read(&path).await {
        Ok(bytes) => {
            let digest: [u8; 32] = Sha256::digest(&bytes).into();
            if digest == in_force {
                *refused = None;
                return;
            }
            let keys = config::parse_keys_file(&name, &bytes, auth.inline_keys());
            (digest, keys)
        }
        Err(e) => (
            Sha256::digest(e.to_string()).into(),
            Err(config::unreadable(&name, &e)),
        ),
    };
    if *refused == Some(digest) {
        return;
    }
    let reloads = &shared.metrics.config_reloads;
    match loaded {
        Ok(keys) => {
            let n = auth.set_keys_file(LoadedKeys {
                path: Some(path),
                keys,
                digest,
            });
            *refused = None;
            reloads.with_label_values(&["ok"]).inc();
            tracing::info!(file = %name, keys = n, "keys file reloaded");
        }
        Err(e) => {
            *refused = Some(digest);
            reloads.with_label_values(&["error"]).inc();
            tracing::error!(error = %e, "keys file reload failed; the previous keys stay in force");
        }
    }
}

/// Listeners, drain, log, rate limit and `[metrics]` settings are read once at startup
/// (`[[pricing]]` is reloaded).
fn warn_about_fixed_settings(old: &Config, new: &Config) {
    let (o, n) = (&old.server, &new.server);
    let changed = [
        ("server.listen", o.listen != n.listen),
        ("server.admin_listen", o.admin_listen != n.admin_listen),
        ("server.http2", o.http2 != n.http2),
        (
            "server.header_read_timeout",
            o.header_read_timeout != n.header_read_timeout,
        ),
        ("server.drain_timeout", o.drain_timeout != n.drain_timeout),
        (
            "server.max_header_bytes",
            o.max_header_bytes != n.max_header_bytes,
        ),
        ("server.max_headers", o.max_headers != n.max_headers),
        (
            "server.request_body_timeout",
            o.request_body_timeout != n.request_body_timeout,
        ),
        (
            "server.max_connections",
            o.max_connections != n.max_connections,
        ),
        (
            "server.websocket_paths",
            o.websocket_paths != n.websocket_paths,
        ),
        ("log.level", old.log.level != new.log.level),
        ("log.format", old.log.format != new.log.format),
        ("log.access_log", old.log.access_log != new.log.access_log),
        ("rate_limit", old.rate_limit != new.rate_limit),
        (
            "metrics.max_label_values",
            old.metrics.max_label_values != new.metrics.max_label_values,
        ),
        ("metrics.llm", old.metrics.llm != new.metrics.llm),
    ];
    for (key, _) in changed.iter().filter(|(_, c)| *c) {
        tracing::warn!(
            key,
            "changed in the config file, but takes effect only after a restart"
        );
    }
}
