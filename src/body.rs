//! Body wrappers that observe frames on their way through without copying or delaying them.
//!
//! `RequestBody` enforces the request size limit while the body streams to the upstream; it
//! can read a few frames ahead (to find a request's model) and replays them first.
//! `ResponseBody` is either a small body llmgate made itself or the upstream's body, which it
//! watches for idle gaps and reports (bytes, first byte, how it ended) to the request's
//! `Exchange` when it ends or is dropped.

use crate::error::ProxyError;
use crate::exchange::{Exchange, Outcome};
use crate::models::BodyGuard;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request body ended above `server.max_request_body`.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds the configured limit")]
pub struct BodyTooLarge;

/// The request body named a model its identity may not use, past the part read ahead.
#[derive(Debug, thiserror::Error)]
#[error("request body names a model this credential may not use")]
pub struct ModelDenied;

/// An upstream body stayed silent longer than its `idle_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("upstream body was idle for longer than idle_timeout")]
pub struct IdleTimeout;

/// The client sent nothing of its request body for longer than `request_body_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("client request body was idle for longer than request_body_timeout")]
pub struct ClientIdle;

/// What the request body leaves behind for the access log, written from the upstream
/// connection's task.
#[derive(Debug, Default)]
pub struct RequestTally {
    pub bytes: AtomicU64,
    pub too_large: AtomicBool,
    pub model_denied: AtomicBool,
}

/// The client's body on its way upstream, cut off with an error past the size limit (or when
/// its guard refuses a frame). Frames read ahead are replayed first, unchanged.
pub struct RequestBody {
    /// `None` for a body llmgate sends itself (always empty).
    inner: Option<Incoming>,
    replay: VecDeque<Frame<Bytes>>,
    guard: Option<Box<BodyGuard>>,
    limit: u64,
    read: u64,
    tally: Arc<RequestTally>,
    idle: Duration,
    last_frame: Instant,
    timer: Option<Pin<Box<Sleep>>>,
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        self.tally.bytes.store(self.read, Ordering::Relaxed);
    }
}

impl RequestBody {
    /// `idle` bounds the silence between two frames from the client (slowloris bodies).
    pub fn new(inner: Incoming, limit: u64, tally: Arc<RequestTally>, idle: Duration) -> Self {
        Self {
            inner: Some(inner),
            replay: VecDeque::new(),
            guard: None,
            limit,
            read: 0,
            tally,
            idle,
            last_frame: Instant::now(),
            timer: None,
        }
    }

    /// An empty body, for requests llmgate makes itself.
    pub fn empty() -> Self {
        Self {
            inner: None,
            replay: VecDeque::new(),
            guard: None,
            limit: 0,
            read: 0,
            tally: Arc::default(),
            idle: Duration::MAX,
            last_frame: Instant::now(),
            timer: None,
        }
    }

    /// Reads the client's next frame and keeps it to be replayed; returns its data (a shared
    /// handle, not a copy), or `None` once the body ended or reached its trailers.
    pub async fn read_ahead(&mut self) -> Result<Option<Bytes>, ProxyError> {
        let Some(inner) = self.inner.as_mut() else {
            return Ok(None);
        };
        if self.replay.back().is_some_and(|f| f.is_trailers()) {
            return Ok(None);
        }
        let next = match tokio::time::timeout(self.idle, inner.frame()).await {
            Ok(next) => next,
            Err(_) => return Err(ProxyError::ClientBodyTimeout),
        };
        self.last_frame = Instant::now();
        match next {
            None => Ok(None),
            Some(Err(_)) => Err(ProxyError::ClientBody),
            Some(Ok(frame)) => {
                let data = frame.data_ref().cloned();
                if let Some(d) = &data {
                    self.count(d.len())
                        .map_err(|_| ProxyError::RequestTooLarge { limit: self.limit })?;
                }
                self.replay.push_back(frame);
                Ok(data)
            }
        }
    }

    /// The frames read ahead, to be replayed first.
    pub fn buffered(&self) -> &VecDeque<Frame<Bytes>> {
        &self.replay
    }

    /// The frames read ahead, for the one edit llmgate makes (see `limits::usage_edit`).
    pub fn buffered_mut(&mut self) -> &mut VecDeque<Frame<Bytes>> {
        &mut self.replay
    }

    /// Checks every frame not yet read ahead, from now on.
    pub fn guard(&mut self, guard: Box<BodyGuard>) {
        self.guard = Some(guard);
    }

    /// Pending, until the client has been silent for `idle`; the timer is armed lazily and
    /// re-armed only when it fires, so a busy upload pays one clock read per frame.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(deadline) = self.last_frame.checked_add(self.idle) else {
            return Poll::Pending;
        };
        let t = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        loop {
            ready!(t.as_mut().poll(cx));
            let deadline = self.last_frame + self.idle;
            if deadline <= Instant::now() {
                return Poll::Ready(Some(Err(ClientIdle.into())));
            }
            t.as_mut().reset(deadline);
        }
    }

    fn count(&mut self, len: usize) -> Result<(), BoxError> {
        self.read += len as u64;
        if self.read > self.limit {
            self.tally.too_large.store(true, Ordering::Relaxed);
            return Err(BodyTooLarge.into());
        }
        Ok(())
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(frame) = this.replay.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let Poll::Ready(next) = Pin::new(inner).poll_frame(cx) else {
            return this.poll_idle(cx);
        };
        this.last_frame = Instant::now();
        match next {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    if let Err(e) = this.count(data.len()) {
                        return Poll::Ready(Some(Err(e)));
                    }
                    if let Some(guard) = this.guard.as_mut() {
                        if !guard.admit(data) {
                            this.tally.model_denied.store(true, Ordering::Relaxed);
                            return Poll::Ready(Some(Err(ModelDenied.into())));
                        }
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e.into()))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.replay.is_empty() && self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let buffered: u64 = self
            .replay
            .iter()
            .filter_map(|f| f.data_ref())
            .map(|d| d.len() as u64)
            .sum();
        let inner = self
            .inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint());
        let mut hint = SizeHint::new();
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + buffered);
        }
        hint.set_lower(inner.lower() + buffered);
        hint
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind {
        Full { data: Option<Bytes> },
        Upstream {
            #[pin]
            body: Incoming,
            idle: Duration,
            last_frame: Instant,
            timer: Option<Pin<Box<Sleep>>>,
        },
    }
}

pin_project! {
    /// Every response body llmgate sends: its own small answers and upstream streams.
    pub struct ResponseBody {
        #[pin]
        kind: Kind,
        exchange: Option<Box<Exchange>>,
    }

    impl PinnedDrop for ResponseBody {
        fn drop(this: Pin<&mut Self>) {
            // hyper stops polling once `is_end_stream` is true, so a body can be complete
            // without ever yielding `None`; anything else dropped early was cancelled.
            let outcome = if this.is_end_stream() { Outcome::Complete } else { Outcome::ClientCancel };
            ResponseBody::finish(this.project().exchange, outcome);
        }
    }
}

impl ResponseBody {
    pub fn full(data: Bytes) -> Self {
        Self {
            kind: Kind::Full {
                data: Some(data).filter(|d| !d.is_empty()),
            },
            exchange: None,
        }
    }

    pub fn empty() -> Self {
        Self::full(Bytes::new())
    }

    pub fn upstream(body: Incoming, idle: Duration) -> Self {
        Self {
            kind: Kind::Upstream {
                body,
                idle,
                last_frame: Instant::now(),
                timer: None,
            },
            exchange: None,
        }
    }

    pub fn is_upstream(&self) -> bool {
        matches!(self.kind, Kind::Upstream { .. })
    }

    /// Hands the request's bookkeeping to the body; it reports when the body ends or drops.
    pub fn observe(&mut self, exchange: Box<Exchange>) {
        self.exchange = Some(exchange);
    }

    fn finish(exchange: &mut Option<Box<Exchange>>, outcome: Outcome) {
        if let Some(mut ex) = exchange.take() {
            ex.outcome = outcome;
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let (polled, at) = match this.kind.project() {
            KindProj::Full { data } => (
                Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
                Instant::now(),
            ),
            KindProj::Upstream {
                body,
                idle,
                last_frame,
                timer,
            } => {
                match body.poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        *last_frame = Instant::now();
                        (Poll::Ready(Some(Ok(frame))), *last_frame)
                    }
                    Poll::Ready(Some(Err(e))) => {
                        Self::finish(this.exchange, Outcome::UpstreamError);
                        return Poll::Ready(Some(Err(e.into())));
                    }
                    Poll::Ready(None) => (Poll::Ready(None), *last_frame),
                    Poll::Pending => {
                        // The timer is armed lazily and only re-armed when it fires, so a busy
                        // stream pays one clock read per frame rather than a timer update.
                        let deadline = *last_frame + *idle;
                        let t = timer
                            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                        loop {
                            if t.as_mut().poll(cx).is_pending() {
                                return Poll::Pending;
                            }
                            let deadline = *last_frame + *idle;
                            if deadline <= Instant::now() {
                                Self::finish(this.exchange, Outcome::IdleTimeout);
                                return Poll::Ready(Some(Err(IdleTimeout.into())));
                            }
                            t.as_mut().reset(deadline);
                        }
                    }
                }
            }
        };
        let mut polled = polled;
        match &mut polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(ex), Some(data)) = (this.exchange.as_mut(), frame.data_mut()) {
                    ex.on_frame(data, at);
                    if let Some(edited) = ex.edit_frame(data) {
                        if edited.is_empty() {
                            // The whole frame was taken out: ask to be polled for the next.
                            cx.waker().wake_by_ref();
                            return Poll::Pending;
                        }
                        *data = edited;
                    }
                }
            }
            Poll::Ready(None) => Self::finish(this.exchange, Outcome::Complete),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full { data } => data.is_none(),
            Kind::Upstream { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Upstream { body, .. } => body.size_hint(),
        }
    }
}
