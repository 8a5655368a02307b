//! The connector's one listener, and only when an admin asks for it with
//! `--metrics-listen ADDR`: plain HTTP/1.1 serving `GET /metrics`
//! (OpenMetrics text), `/healthz` (200 while the process serves) and
//! `/readyz` (200 while at least one tunnel connection to the relay is
//! up, else 503 with the reason). It carries no session and reaches no
//! service; it is off by default because the connector's promise is that
//! it listens on nothing, and turning it on is a choice about the host's
//! own network (a loopback address keeps it on the host).
//!
//! Anyone who can reach the address can connect, so everything a client
//! controls is bounded: at most [`MAX_CONNECTIONS`] at once (more are
//! reset at once), one request per connection (no keep-alive), a request
//! head of at most [`MAX_REQUEST_HEAD`] bytes that must arrive within
//! [`HEADER_TIMEOUT`], and the whole connection closed after
//! [`CONNECTION_TIMEOUT`] whatever it is doing. Request bodies are never
//! read.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use sallyport_common::metrics::{self as common, CONTENT_TYPE, HEALTH_CONTENT_TYPE};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;
use crate::ConnectorError;

/// Connections served at once (a scraper and a probe need one each).
pub const MAX_CONNECTIONS: usize = 16;
/// The most bytes of a request head (hyper's smallest read buffer): the
/// three routes need a request line and a few headers.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// How long a client has to send its request head, from the connection.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one connection may last in all, its response included.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// What the routes answer from.
pub struct Ops {
    /// The connector's metrics.
    pub metrics: Arc<Metrics>,
    /// The relay the tunnel goes to, for `/readyz`'s reason.
    pub relay: String,
    /// Cancelled when the connector shuts down: not ready from then on.
    pub stopping: CancellationToken,
}

impl Ops {
    /// `Ok` while a tunnel connection is up and the connector is not
    /// shutting down; otherwise why not.
    pub fn ready(&self) -> Result<(), String> {
        if self.stopping.is_cancelled() {
            return Err("the connector is shutting down".into());
        }
        if self.metrics.tunnels_up() < 1 {
            return Err(format!(
                "no tunnel connection to the relay at {} is up",
                self.relay
            ));
        }
        Ok(())
    }
}

/// Binds `addr`; an address that cannot be bound is an error the admin
/// must fix (they asked for it).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ConnectorError> {
    TcpListener::bind(addr).await.map_err(|e| {
        ConnectorError::Config(format!(
            "cannot listen for metrics on tcp {addr}: {e}; set --metrics-listen to a free address"
        ))
    })
}

/// Serves `listener` until `shutdown`, answering from `ops`.
pub async fn serve(listener: TcpListener, ops: Arc<Ops>, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let conns = TaskTracker::new();
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, say: wait a moment rather than spin.
                    tracing::warn!(error = %e, "metrics listener cannot accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // A reset, not a FIN: nothing left in TIME_WAIT for the refused.
            let _ = stream.set_zero_linger();
            continue;
        };
        let ops = ops.clone();
        conns.spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let answer = answer(&ops, req.method(), req.uri().path());
                async move { Ok::<_, Infallible>(answer) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .max_buf_size(MAX_REQUEST_HEAD)
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
            drop(slot);
        });
    }
    conns.close();
    let _ = tokio::time::timeout(Duration::from_secs(2), conns.wait()).await;
}

/// The response to `method` `path`.
fn answer(ops: &Ops, method: &Method, path: &str) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            HEALTH_CONTENT_TYPE,
            "GET only\n".into(),
        );
    }
    match path {
        "/metrics" => reply(
            StatusCode::OK,
            CONTENT_TYPE,
            common::encode(&[ops.metrics.registry()]),
        ),
        "/healthz" => reply(
            StatusCode::OK,
            HEALTH_CONTENT_TYPE,
            common::HEALTHZ_BODY.into(),
        ),
        "/readyz" => {
            let (code, body) = common::readyz(ops.ready());
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            reply(status, HEALTH_CONTENT_TYPE, body)
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            HEALTH_CONTENT_TYPE,
            "not found: try /metrics, /healthz or /readyz\n".into(),
        ),
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_with_a_tunnel_up_and_not_stopping() {
        let ops = Ops {
            metrics: Arc::new(Metrics::new()),
            relay: "relay.example:4433".into(),
            stopping: CancellationToken::new(),
        };
        let err = ops.ready().unwrap_err();
        assert!(err.contains("relay.example:4433"), "{err}");
        let _up = ops.metrics.tunnel_up(
            "relay.example:4433",
            sallyport_common::transport::Transport::Quic,
        );
        assert_eq!(ops.ready(), Ok(()));
        assert_eq!(
            answer(&ops, &Method::GET, "/readyz").status(),
            StatusCode::OK
        );
        assert_eq!(
            answer(&ops, &Method::POST, "/metrics").status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            answer(&ops, &Method::GET, "/other").status(),
            StatusCode::NOT_FOUND
        );
        ops.stopping.cancel();
        assert_eq!(
            answer(&ops, &Method::GET, "/readyz").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            answer(&ops, &Method::GET, "/healthz").status(),
            StatusCode::OK
        );
    }
}
