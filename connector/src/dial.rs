//! Reaching the relay: QUIC when UDP gets through, TLS over TCP (with
//! HTTP/2, see `sallyport_common::transport::tcp`) when it does not.
//!
//! `--transport auto` (the default) tries QUIC first and falls back to TCP
//! when QUIC's handshake gets no answer within [`QUIC_FALLBACK_AFTER`]. A
//! connection slot on TCP in auto mode probes QUIC again every
//! `--quic-probe-interval` and moves to QUIC when a probe connects, leaving
//! the sessions already on the TCP connection to finish there
//! (`supervisor.rs`).

use std::sync::Arc;
use std::time::Duration;

use sallyport_common::quic;
use sallyport_common::transport::{tcp, Closed, Connection};
use sallyport_proto::tunnel::{ALPN, TUNNEL_SERVER_NAME};
use serde::{Deserialize, Serialize};
use tokio_util::task::TaskTracker;

use crate::ConnectorError;

/// How long `auto` waits for QUIC's handshake before it tries TCP: a relay
/// that UDP reaches answers within a round trip or two, and a network that
/// drops UDP never answers.
pub const QUIC_FALLBACK_AFTER: Duration = Duration::from_secs(3);
/// How often a connection slot that fell back to TCP tries QUIC again,
/// unless configured.
pub const DEFAULT_QUIC_PROBE_INTERVAL: Duration = Duration::from_secs(30);
/// How long one connection attempt may take (QUIC handshake; TCP connect,
/// TLS and HTTP/2 handshakes).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Which transports the connector may use (`--transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TransportChoice {
    /// QUIC, falling back to TCP when UDP gets no answer, and back to QUIC
    /// when it does again.
    #[default]
    Auto,
    /// QUIC only.
    Quic,
    /// TCP only (TLS and HTTP/2): for networks known to block UDP.
    Tcp,
}

/// The transport settings of `sallyport-connector run`.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Which transports to use.
    pub choice: TransportChoice,
    /// `host:port` of the relay's TCP tunnel listener; `None`: the same
    /// address as QUIC's (the relay listens on both by default).
    pub relay_tcp: Option<String>,
    /// How often a slot on TCP tries QUIC again (auto only).
    pub quic_probe_interval: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            choice: TransportChoice::Auto,
            relay_tcp: None,
            quic_probe_interval: DEFAULT_QUIC_PROBE_INTERVAL,
        }
    }
}

/// Dials the relay over the transports its settings allow.
pub struct Dialer {
    /// `host:port` QUIC dials (UDP).
    pub relay: String,
    /// `host:port` TCP dials.
    pub relay_tcp: String,
    /// The transport settings.
    pub transport: TransportConfig,
    quic: quinn::ClientConfig,
    endpoint: quinn::Endpoint,
    tls: Arc<rustls::ClientConfig>,
    /// The tasks driving TCP connections, waited for at shutdown so what
    /// they still hold goes out.
    drivers: TaskTracker,
}

impl Dialer {
    /// A dialer presenting what `tls` presents (and trusting what it
    /// trusts), with QUIC on `endpoint`.
    pub fn new(
        relay: String,
        transport: TransportConfig,
        mut tls: rustls::ClientConfig,
        endpoint: quinn::Endpoint,
    ) -> Result<Self, ConnectorError> {
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let quic =
            quic::client_config(tls.clone()).map_err(|e| ConnectorError::Tls(e.to_string()))?;
        Ok(Self {
            relay_tcp: transport.relay_tcp.clone().unwrap_or_else(|| relay.clone()),
            relay,
            transport,
            quic,
            endpoint,
            tls: Arc::new(tls),
            drivers: TaskTracker::new(),
        })
    }

    /// Waits (at most `limit`) until every TCP connection this dialer made
    /// has closed and sent what it held: after they were all closed.
    pub async fn wait_closed(&self, limit: Duration) {
        self.drivers.close();
        let _ = tokio::time::timeout(limit, self.drivers.wait()).await;
    }

    /// The QUIC endpoint (its UDP socket), to close at shutdown.
    pub fn endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }

    /// One connection over the transports allowed, QUIC first.
    pub async fn connect(&self) -> Result<Connection, Closed> {
        match self.transport.choice {
            TransportChoice::Quic => self.quic(CONNECT_TIMEOUT).await,
            TransportChoice::Tcp => self.tcp().await,
            TransportChoice::Auto => match self.quic(QUIC_FALLBACK_AFTER).await {
                Ok(conn) => Ok(conn),
                // The relay answered and refused: TCP would hear the same.
                Err(refused @ Closed::ByPeer { .. }) => Err(refused),
                Err(quic) => {
                    tracing::debug!(%quic, relay = %self.relay_tcp, "no QUIC; trying TCP");
                    self.tcp()
                        .await
                        .map_err(|tcp| Closed::Lost(format!("QUIC: {quic}; TCP: {tcp}")))
                }
            },
        }
    }

    /// A QUIC connection, if the handshake finishes within `timeout`.
    pub async fn quic(&self, timeout: Duration) -> Result<Connection, Closed> {
        let addr = resolve(&self.relay)
            .await
            .map_err(|e| Closed::Lost(e.to_string()))?;
        let connecting = self
            .endpoint
            .connect_with(self.quic.clone(), addr, TUNNEL_SERVER_NAME)
            .map_err(|e| Closed::Lost(e.to_string()))?;
        match tokio::time::timeout(timeout, connecting).await {
            Ok(Ok(conn)) => Ok(Connection::Quic(conn)),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(Closed::Lost(format!(
                "no answer over QUIC (UDP) within {timeout:?}"
            ))),
        }
    }

    /// A TCP connection (TLS, HTTP/2), within [`CONNECT_TIMEOUT`].
    pub async fn tcp(&self) -> Result<Connection, Closed> {
        let attempt = async {
            let addr = resolve(&self.relay_tcp)
                .await
                .map_err(|e| Closed::Lost(e.to_string()))?;
            tcp::connect(addr, self.tls.clone(), TUNNEL_SERVER_NAME, &self.drivers)
                .await
                .map_err(Closed::Lost)
        };
        tokio::time::timeout(CONNECT_TIMEOUT, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(Closed::Lost(format!(
                    "no TCP connection within {CONNECT_TIMEOUT:?}"
                )))
            })
    }
}

/// Resolves `host:port` to one socket address.
pub async fn resolve(relay: &str) -> Result<std::net::SocketAddr, ConnectorError> {
    tokio::net::lookup_host(relay)
        .await
        .map_err(|e| ConnectorError::Connect(relay.to_owned(), format!("cannot resolve: {e}")))?
        .next()
        .ok_or_else(|| ConnectorError::Connect(relay.to_owned(), "no address".into()))
}
