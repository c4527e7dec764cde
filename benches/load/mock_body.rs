//! Response bodies of the mock upstream: whole, timed SSE chunks, and slow held streams.

use crate::util::now_ns;
use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

pub enum MockBody {
    Full(Option<Bytes>),
    Sse(SseStream),
    Slow(SlowStream),
}

pub struct SseStream {
    n: u64,
    sent: u64,
    gap: Duration,
    start: tokio::time::Instant,
    sleep: Option<Pin<Box<Sleep>>>,
    armed: bool,
    done: bool,
}

impl SseStream {
    pub fn new(n: u64, gap: Duration) -> SseStream {
        SseStream {
            n,
            sent: 0,
            gap,
            start: tokio::time::Instant::now(),
            sleep: None,
            armed: false,
            done: false,
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.sent >= self.n {
            if self.done {
                return Poll::Ready(None);
            }
            self.done = true;
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
                b"data: [DONE]\n\n",
            )))));
        }
        if !self.gap.is_zero() && self.sent > 0 {
            let at = self.start + self.gap * self.sent as u32;
            let sl = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
            if !self.armed {
                sl.as_mut().reset(at);
                self.armed = true;
            }
            if sl.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.armed = false;
        }
        self.sent += 1;
        let chunk = format!(
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\
             \"choices\":[{{\"delta\":{{\"content\":\"tok\"}}}}],\"t\":{}}}\n\n",
            now_ns()
        );
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }
}

pub struct SlowStream {
    first_sent: bool,
    end: tokio::time::Instant,
    sleep: Pin<Box<Sleep>>,
}

const SLOW_TICK: Duration = Duration::from_secs(3);

impl SlowStream {
    pub fn new(hold: Duration) -> SlowStream {
        let now = tokio::time::Instant::now();
        SlowStream {
            first_sent: false,
            end: now + hold,
            sleep: Box::pin(tokio::time::sleep_until(now + SLOW_TICK.min(hold))),
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if !self.first_sent {
            self.first_sent = true;
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
                b"data: hello\n\n",
            )))));
        }
        if tokio::time::Instant::now() >= self.end {
            return Poll::Ready(None);
        }
        if self.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let now = tokio::time::Instant::now();
        if now >= self.end {
            return Poll::Ready(None);
        }
        let next = (now + SLOW_TICK).min(self.end);
        self.sleep.as_mut().reset(next);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b": ping\n\n")))))
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            MockBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            MockBody::Sse(s) => s.poll(cx),
            MockBody::Slow(s) => s.poll(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, MockBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            MockBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            MockBody::Full(None) => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
