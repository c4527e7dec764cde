//! Body wrappers that observe frames on their way through without copying or delaying them.
//!
//! `RequestBody` enforces the request size limit while the body streams to the upstream.
//! `ResponseBody` is either a small body llmgate made itself or the upstream's body, which it
//! watches for idle gaps and reports (bytes, first byte, how it ended) to the request's
//! `Exchange` when it ends or is dropped.

use crate::exchange::{Exchange, Outcome};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
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

/// An upstream body stayed silent longer than its `idle_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("upstream body was idle for longer than idle_timeout")]
pub struct IdleTimeout;

/// What the request body leaves behind for the access log, written from the upstream
/// connection's task.
#[derive(Debug, Default)]
pub struct RequestTally {
    pub bytes: AtomicU64,
    pub too_large: AtomicBool,
}

pin_project! {
    /// The client's body on its way upstream, cut off with an error past the size limit.
    pub struct RequestBody {
        #[pin]
        inner: Incoming,
        limit: u64,
        read: u64,
        tally: Arc<RequestTally>,
    }

    impl PinnedDrop for RequestBody {
        fn drop(this: Pin<&mut Self>) {
            this.tally.bytes.store(this.read, Ordering::Relaxed);
        }
    }
}

impl RequestBody {
    pub fn new(inner: Incoming, limit: u64, tally: Arc<RequestTally>) -> Self {
        Self {
            inner,
            limit,
            read: 0,
            tally,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match ready!(this.inner.poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    *this.read += data.len() as u64;
                    if *this.read > *this.limit {
                        this.tally.too_large.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(BodyTooLarge.into())));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e.into()))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
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
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(ex), Some(data)) = (this.exchange.as_mut(), frame.data_ref()) {
                    ex.on_frame(data, at);
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
