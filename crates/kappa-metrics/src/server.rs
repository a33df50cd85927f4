//! The HTTP endpoint on `[metrics] listen`: `/metrics` (Prometheus text format 0.0.4),
//! `/healthz` (liveness) and `/readyz` (readiness, naming the conditions not ready; the reasons
//! are in the log, never in a body).
//! HTTP/1.1 on hyper; GET and HEAD only.
//!
//! The endpoint may face an open network (`0.0.0.0` in a pod), so what a client can hold is
//! bounded ([`Limits`]): one request per connection, whose headers must arrive within the
//! request timeout and whose connection is closed that long after it was accepted whatever it
//! does; at most `max_connections` at once, further ones closed as soon as they are accepted.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::{JoinHandle, JoinSet};

use crate::error::MetricsError;
use crate::health::{Health, Readiness};
use crate::recorder::Metrics;

/// How often histogram samples are drained between scrapes.
const UPKEEP: Duration = Duration::from_secs(5);

/// Content type of the Prometheus text exposition format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What one client may hold of the endpoint (`[metrics] max_connections`, `request_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// A connection must send its request headers within this, and is closed this long after
    /// it was accepted (the answer written or not).
    pub request_timeout: Duration,
}

impl Default for Limits {
    /// The `[metrics]` defaults: 64 connections, 10 s.
    fn default() -> Self {
        Limits {
            max_connections: 64,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// A running endpoint. Dropping it stops serving; [`Endpoint::stop`] does so and waits.
#[derive(Debug)]
pub struct Endpoint {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Endpoint {
    /// [`Endpoint::start_with`] the default [`Limits`].
    pub async fn start(listen: SocketAddr, health: Health) -> Result<Endpoint, MetricsError> {
        Endpoint::start_with(listen, health, Limits::default()).await
    }

    /// Installs the recorder ([`Metrics::install`]), binds `listen` and serves on the current
    /// tokio runtime within `limits`. Port 0 picks a free port ([`Endpoint::local_addr`] tells
    /// which).
    pub async fn start_with(
        listen: SocketAddr,
        health: Health,
        limits: Limits,
    ) -> Result<Endpoint, MetricsError> {
        let metrics = Metrics::install()?;
        let bind_error = |source| MetricsError::Bind {
            addr: listen,
            source,
        };
        let listener = TcpListener::bind(listen).await.map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(serve(listener, metrics, health, limits, stopped));
        tracing::info!(%addr, "metrics endpoint listening");
        Ok(Endpoint {
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, closes open connections and waits for the server task.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    health: Health,
    limits: Limits,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut connections = JoinSet::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut upkeep = tokio::time::interval(UPKEEP);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            _ = upkeep.tick() => metrics.run_upkeep(),
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Accepting and closing at once, rather than leaving it in the backlog, frees
                    // the kernel's resources too.
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        tracing::debug!(%peer, max_connections = limits.max_connections, "metrics endpoint at its connection limit; closing a connection");
                        drop(stream);
                        continue;
                    };
                    let (metrics, health) = (metrics.clone(), health.clone());
                    connections.spawn(async move {
                        let _slot = slot;
                        let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                            let response = respond(request.method(), request.uri().path(), &metrics, &health);
                            async move { Ok::<_, Infallible>(response) }
                        });
                        let connection = http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(limits.request_timeout)
                            .keep_alive(false)
                            .serve_connection(TokioIo::new(stream), service);
                        match tokio::time::timeout(limits.request_timeout, connection).await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "metrics endpoint connection ended with an error"),
                            Err(_) => tracing::debug!(%peer, "metrics endpoint connection closed after [metrics] request_timeout"),
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "metrics endpoint cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    connections.abort_all();
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The answer to `method path`.
fn respond(
    method: &Method,
    path: &str,
    metrics: &Metrics,
    health: &Health,
) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are served\n".into(),
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match path {
        "/metrics" => {
            let mut response = text(StatusCode::OK, metrics.render());
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(PROMETHEUS_TEXT));
            response
        }
        // No failure text on these unauthenticated probes (it may quote a URI, a value, a
        // path): a status word, and for readiness the names of the conditions that are not
        // ready. Health logs the reasons (redacted) when they are set.
        "/healthz" => match health.liveness() {
            Ok(()) => text(StatusCode::OK, "ok\n".into()),
            Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "failed\n".into()),
        },
        "/readyz" => match health.readiness() {
            Readiness::Ready => text(StatusCode::OK, "ready\n".into()),
            Readiness::NotReady(reasons) => {
                let mut body = String::from("not ready\n");
                for (condition, _) in reasons {
                    let _ = writeln!(body, "{condition}");
                }
                text(StatusCode::SERVICE_UNAVAILABLE, body)
            }
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; this endpoint serves /metrics, /healthz and /readyz\n".into(),
        ),
    }
}
