//! The admin listener: probes, metrics and cache control, on a port of their own.

use crate::body::ResponseBody;
use crate::state::Shared;
use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;

pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors, say: pause rather than spin on a ready listener.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(answer(&shared, &req)) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn answer(shared: &Shared, req: &Request<Incoming>) -> Response<ResponseBody> {
    let (status, ctype, body): (StatusCode, &'static str, Bytes) = match req.uri().path() {
        "/livez" => (StatusCode::OK, "text/plain", Bytes::from_static(b"ok\n")),
        "/readyz" if shared.is_draining() => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            Bytes::from_static(b"draining\n"),
        ),
        "/readyz" => (StatusCode::OK, "text/plain", Bytes::from_static(b"ready\n")),
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            Bytes::from(shared.metrics.render()),
        ),
        "/cache/purge" if req.method() == http::Method::POST => {
            shared.snapshot.load().models.purge();
            (
                StatusCode::OK,
                "application/json",
                Bytes::from_static(br#"{"purged":true}"#),
            )
        }
        "/cache/purge" => (
            StatusCode::METHOD_NOT_ALLOWED,
            "application/json",
            Bytes::from_static(
                br#"{"error":{"message":"use POST /cache/purge","type":"invalid_request_error","code":"method_not_allowed"}}"#,
            ),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "application/json",
            Bytes::from_static(
                br#"{"error":{"message":"unknown admin path; try /livez, /readyz, /metrics or POST /cache/purge","type":"invalid_request_error","code":"not_found"}}"#,
            ),
        ),
    };
    let mut resp = Response::new(ResponseBody::full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    resp
}
