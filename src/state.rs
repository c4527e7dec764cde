//! Process-wide state shared by every connection, and the reloadable config snapshot.

use crate::auth::Auth;
use crate::config::{Config, LogFormat};
use crate::guard::Guard;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::models::ModelLists;
use crate::observe::Pricing;
use crate::routes::RouteTable;
use crate::upstream::Upstream;
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What a request needs from the config; replaced whole on reload, so a request keeps the
/// snapshot it started with.
pub struct Snapshot {
    pub routes: RouteTable,
    pub upstreams: Vec<Upstream>,
    pub max_request_body: u64,
    /// Model lists cached and merged; rebuilt (emptied) with the snapshot.
    pub models: ModelLists,
    /// How much of a body is read ahead to find its model.
    pub peek_window: u64,
    /// `None` without an `[auth]` section: nothing is authenticated.
    pub auth: Option<Auth>,
    pub pricing: Pricing,
}

impl Snapshot {
    pub fn new(cfg: &Config) -> Self {
        let upstreams: Vec<Upstream> = cfg.upstreams.iter().map(Upstream::new).collect();
        let routes = RouteTable::new(&cfg.routes, |name| {
            upstreams
                .iter()
                .position(|u| &*u.name == name)
                .expect("validated by config::validate")
        });
        Self {
            routes,
            upstreams,
            max_request_body: cfg.server.max_request_body.0,
            models: ModelLists::new(cfg),
            peek_window: cfg.model_routing.peek_window.0,
            auth: cfg.auth.as_ref().map(|a| Auth::new(a, &cfg.upstreams)),
            pricing: Pricing::new(&cfg.pricing),
        }
    }
}

pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub metrics: Metrics,
    pub access_log: bool,
    pub log_format: LogFormat,
    /// Watch response bodies for model, TTFT and tokens (`[metrics] llm`).
    pub observe_llm: bool,
    /// Requests whose response has not finished (including streams).
    pub in_flight: AtomicUsize,
    /// Woken when `in_flight` drops to zero.
    pub idle: Notify,
    draining: AtomicBool,
    /// Relayed WebSocket connections, which outlive their HTTP exchange.
    pub upgrades: TaskTracker,
    /// Cancelled when the drain budget is spent, to cut what is still relayed.
    pub hard_stop: CancellationToken,
    /// `None` without `[rate_limit]`. Kept outside the snapshot, so a reload keeps every
    /// key's history.
    pub limits: Option<Limits>,
    /// Framing, `Host`, head-size and upgrade checks (`[server]`).
    pub guard: Guard,
    /// `[server] request_body_timeout`.
    pub request_body_timeout: Duration,
}

impl Shared {
    pub fn new(cfg: &Config) -> Arc<Self> {
        Arc::new(Self {
            snapshot: ArcSwap::from_pointee(Snapshot::new(cfg)),
            metrics: Metrics::with_max_label_values(cfg.metrics.max_label_values),
            access_log: cfg.log.access_log,
            log_format: cfg.log.format,
            observe_llm: cfg.metrics.llm,
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            draining: AtomicBool::new(false),
            upgrades: TaskTracker::new(),
            hard_stop: CancellationToken::new(),
            limits: cfg.rate_limit.as_ref().map(|rl| {
                Limits::new(rl).expect("rate_limit.redis_url is checked by config::validate")
            }),
            guard: Guard::new(&cfg.server),
            request_body_timeout: cfg.server.request_body_timeout.0,
        })
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
}
