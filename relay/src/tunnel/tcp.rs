//! The tunnel's TCP listener, for connectors whose network blocks UDP: TLS
//! with the same certificates, client-certificate rule and ALPN as the QUIC
//! listener, then HTTP/2 (`sallyport_common::transport::tcp`). Each
//! connection is served by the same code as a QUIC one
//! ([`super::server::handle`]), so enrolment, limits, revocation and drain
//! apply to both alike.
//!
//! Anyone can open a TCP connection, so before TLS each one takes a place
//! under [`MAX_CONNECTIONS`] and [`MAX_PER_ADDRESS`], and the TLS handshake
//! has [`super::HANDSHAKE_TIMEOUT`] to finish.

use std::net::SocketAddr;
use std::sync::Arc;

use sallyport_common::transport::tcp;
use sallyport_proto::tunnel::ALPN;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::server::TunnelCtx;
use super::HANDSHAKE_TIMEOUT;
use crate::web::listener::Limiter;

/// TCP tunnel connections held at once, handshakes included.
pub const MAX_CONNECTIONS: usize = 8192;
/// TCP tunnel connections one address (an IPv6 /64) may hold: room for an
/// office of connectors behind one NAT, not for one host to take them all.
pub const MAX_PER_ADDRESS: usize = 512;

/// The TCP tunnel listener.
pub struct TcpTunnel {
    pub ctx: Arc<TunnelCtx>,
    pub listener: TcpListener,
    pub tls: Arc<rustls::ServerConfig>,
}

impl TcpTunnel {
    /// Accepts connections until `shutdown`; each is served in a task of
    /// `tasks`.
    pub async fn run(self, shutdown: CancellationToken, tasks: TaskTracker) {
        let limiter = Limiter::new("tunnel-tcp", MAX_CONNECTIONS, MAX_PER_ADDRESS, None);
        let acceptor = tokio_rustls::TlsAcceptor::from(self.tls);
        loop {
            let (tcp, remote) = tokio::select! {
                r = self.listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of descriptors, say: the next accept may work.
                        tracing::warn!(error = %e, "tunnel TCP accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = shutdown.cancelled() => break,
            };
            let Ok(permit) = limiter.try_acquire(remote.ip()) else {
                continue;
            };
            let (ctx, acceptor, shutdown) = (self.ctx.clone(), acceptor.clone(), shutdown.clone());
            let drivers = tasks.clone();
            tasks.spawn(async move {
                let _permit = permit;
                let _ = tcp.set_nodelay(true);
                match tokio::time::timeout(
                    HANDSHAKE_TIMEOUT,
                    accept(tcp, remote, &acceptor, &drivers),
                )
                .await
                {
                    Ok(Ok(conn)) => super::server::handle(ctx, conn, shutdown).await,
                    Ok(Err(e)) => {
                        tracing::debug!(%remote, error = %e, "tunnel TCP handshake failed")
                    }
                    Err(_) => tracing::debug!(%remote, "tunnel TCP handshake timed out"),
                }
            });
        }
    }
}

/// TLS, then HTTP/2 as the client.
async fn accept(
    tcp: tokio::net::TcpStream,
    remote: SocketAddr,
    acceptor: &tokio_rustls::TlsAcceptor,
    drivers: &TaskTracker,
) -> Result<sallyport_common::transport::Connection, String> {
    let tls = acceptor
        .accept(tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let (_, session) = tls.get_ref();
    if session.alpn_protocol() != Some(ALPN) {
        return Err("the client did not ask for the tunnel's ALPN".into());
    }
    let cert = session
        .peer_certificates()
        .and_then(|certs| certs.first().cloned())
        .map(|c| c.into_owned());
    tcp::client(tls, remote, cert, drivers).await
}
