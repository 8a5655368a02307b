//! Keeps `--ha-connections` QUIC connections to the relay alive, each with
//! its own control stream, reconnecting with jittered exponential backoff,
//! and drains them on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use sallyport_proto::io::{write_frame, FrameReader, ReadError};
use sallyport_proto::tunnel::{Code, Control, Hello, ServiceInfo, TUNNEL_SERVER_NAME};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::bridge::{self, Services};
use crate::ConnectorError;

/// First reconnect delay, doubled after each failure up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest reconnect delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// For this long after a working tunnel is lost, the delay stops growing at
/// [`FAST_BACKOFF_MAX`]: a relay that restarts or fails over is back in
/// seconds, and the connector should be serving again within two of them.
pub const FAST_RECONNECT_WINDOW: Duration = Duration::from_secs(300);
/// Longest reconnect delay within [`FAST_RECONNECT_WINDOW`].
pub const FAST_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How long one connection attempt (QUIC handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the relay may take to answer hello.
pub const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);
/// Heartbeat interval used until the relay says otherwise (and its bounds).
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);

/// Everything the connection workers share.
pub struct Shared {
    /// The connector's name.
    pub name: String,
    /// `host:port` of the relay's tunnel listener.
    pub relay: String,
    /// TLS with the connector's certificate, trusting the relay's CA only.
    pub client_config: quinn::ClientConfig,
    /// The one UDP socket all connections use.
    pub endpoint: quinn::Endpoint,
    /// What it may connect streams to.
    pub services: Services,
    /// The service list sent in hello, host keys included.
    pub announced: Vec<ServiceInfo>,
    /// How long open streams may take to finish at shutdown.
    pub drain_timeout: Duration,
}

/// Resolves `host:port` to one socket address.
pub async fn resolve(relay: &str) -> Result<SocketAddr, ConnectorError> {
    tokio::net::lookup_host(relay)
        .await
        .map_err(|e| ConnectorError::Connect(relay.to_owned(), format!("cannot resolve: {e}")))?
        .next()
        .ok_or_else(|| ConnectorError::Connect(relay.to_owned(), "no address".into()))
}

/// Why a connection ended.
enum Ended {
    /// Lost or closed by the relay; reconnect.
    Lost(String),
    /// The relay refused this connector for good (revoked, unknown).
    Refused(String),
    /// Our own shutdown.
    Shutdown,
}

/// Runs `count` connection workers until `shutdown` or a permanent refusal.
pub async fn run(
    shared: Arc<Shared>,
    count: usize,
    shutdown: CancellationToken,
) -> Result<(), ConnectorError> {
    let fatal = CancellationToken::new();
    let workers = TaskTracker::new();
    let (refusal_tx, mut refusal_rx) = tokio::sync::mpsc::channel::<String>(count.max(1));
    for i in 0..count {
        let shared = shared.clone();
        let stop = shutdown.child_token();
        let fatal = fatal.clone();
        let refusal_tx = refusal_tx.clone();
        let span = tracing::info_span!("tunnel", connector = %shared.name, conn = i);
        workers.spawn(
            async move {
                tokio::select! {
                    reason = worker(shared, stop) => {
                        if let Some(reason) = reason {
                            let _ = refusal_tx.try_send(reason);
                            fatal.cancel();
                        }
                    }
                    _ = fatal.cancelled() => {}
                }
            }
            .instrument(span),
        );
    }
    drop(refusal_tx);
    workers.close();
    workers.wait().await;
    shared
        .endpoint
        .close(Code::Done.code().into(), b"connector stopped");
    let _ = tokio::time::timeout(Duration::from_secs(2), shared.endpoint.wait_idle()).await;
    match refusal_rx.try_recv() {
        Ok(reason) => Err(ConnectorError::Refused(reason)),
        Err(_) => Ok(()),
    }
}

/// One connection slot: connect, serve, reconnect. Returns a reason when
/// the relay refused us for good.
async fn worker(shared: Arc<Shared>, shutdown: CancellationToken) -> Option<String> {
    let mut delay = BACKOFF_MIN;
    // When a tunnel that had been welcomed was last lost.
    let mut lost_at: Option<std::time::Instant> = None;
    loop {
        if shutdown.is_cancelled() {
            return None;
        }
        match connect(&shared).await {
            Ok(conn) => match serve(&shared, conn, &shutdown).await {
                (Ended::Shutdown, _) => return None,
                (Ended::Refused(reason), _) => return Some(reason),
                (Ended::Lost(reason), true) => {
                    tracing::warn!(%reason, "tunnel lost; reconnecting");
                    delay = BACKOFF_MIN;
                    lost_at = Some(std::time::Instant::now());
                }
                // Connected but not welcomed: back off as for a failed connect.
                (Ended::Lost(reason), false) => {
                    tracing::warn!(%reason, ?delay, "relay did not take the tunnel")
                }
            },
            Err(Ended::Refused(reason)) => return Some(reason),
            Err(Ended::Lost(reason)) => tracing::debug!(%reason, ?delay, "connect failed"),
            Err(Ended::Shutdown) => return None,
        }
        // Full jitter over the upper half keeps a fleet from reconnecting in step.
        let jittered = rand::rng().random_range(delay / 2..=delay);
        tokio::select! {
            _ = tokio::time::sleep(jittered) => {}
            _ = shutdown.cancelled() => return None,
        }
        let cap = match lost_at {
            Some(t) if t.elapsed() < FAST_RECONNECT_WINDOW => FAST_BACKOFF_MAX,
            _ => BACKOFF_MAX,
        };
        delay = (delay * 2).min(cap);
    }
}

/// The relay's reason when it closed the connection on purpose.
fn closed_reason(e: &quinn::ConnectionError) -> Ended {
    match e {
        quinn::ConnectionError::ApplicationClosed(c)
            if c.error_code == Code::Revoked.code().into()
                || c.error_code == Code::Unauthorized.code().into() =>
        {
            Ended::Refused(String::from_utf8_lossy(&c.reason).into_owned())
        }
        other => Ended::Lost(other.to_string()),
    }
}

async fn connect(shared: &Shared) -> Result<quinn::Connection, Ended> {
    let addr = resolve(&shared.relay)
        .await
        .map_err(|e| Ended::Lost(e.to_string()))?;
    let connecting = shared
        .endpoint
        .connect_with(shared.client_config.clone(), addr, TUNNEL_SERVER_NAME)
        .map_err(|e| Ended::Lost(e.to_string()))?;
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(closed_reason(&e)),
        Err(_) => Err(Ended::Lost("connection attempt timed out".into())),
    }
}

/// Serves one connection until it ends; also says whether the relay
/// welcomed it (a tunnel that was up, as opposed to a failed attempt).
async fn serve(
    shared: &Arc<Shared>,
    conn: quinn::Connection,
    shutdown: &CancellationToken,
) -> (Ended, bool) {
    let hello = Control::Hello(Hello {
        protocol: sallyport_proto::tunnel::PROTOCOL_VERSION,
        connector: shared.name.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        services: shared.announced.clone(),
    });
    let handshake = async {
        let (mut send, recv) = conn.open_bi().await.map_err(|e| closed_reason(&e))?;
        write_frame(&mut send, &hello)
            .await
            .map_err(|e| Ended::Lost(e.to_string()))?;
        let mut recv = FrameReader::new(recv);
        match recv.read_frame::<Control>().await {
            Ok(Control::Welcome(w)) => Ok((send, recv, w)),
            Ok(other) => Err(Ended::Lost(format!("expected welcome, got {other:?}"))),
            Err(e) => Err(match conn.close_reason() {
                Some(reason) => closed_reason(&reason),
                None => Ended::Lost(format!("no welcome: {e}")),
            }),
        }
    };
    let (mut send, mut recv, welcome) = match tokio::time::timeout(WELCOME_TIMEOUT, handshake).await
    {
        Ok(Ok(x)) => x,
        Ok(Err(ended)) => {
            // The relay may close with its reason just after our hello.
            if let Ended::Lost(_) = ended {
                if let Ok(reason) =
                    tokio::time::timeout(Duration::from_millis(500), conn.closed()).await
                {
                    return (closed_reason(&reason), false);
                }
            }
            return (ended, false);
        }
        Err(_) => return (Ended::Lost("no welcome in time".into()), false),
    };
    tracing::info!(relay = %shared.relay, relay_version = %welcome.relay_version, "tunnel up");
    for r in &welcome.refused {
        tracing::warn!(service = %r.service, reason = %r.reason, "the relay refused a service");
    }
    let heartbeat = match welcome.heartbeat_secs {
        1..=300 => Duration::from_secs(welcome.heartbeat_secs.into()),
        _ => DEFAULT_HEARTBEAT,
    };
    let mut ticker = tokio::time::interval(heartbeat);
    let mut seq = 0u64;
    let sessions = TaskTracker::new();
    let ended = loop {
        tokio::select! {
            stream = conn.accept_bi() => match stream {
                Ok((s, r)) => {
                    let shared = shared.clone();
                    sessions.spawn(async move { bridge::serve(&shared.name, &shared.services, s, r).await });
                }
                Err(e) => break closed_reason(&e),
            },
            // Cancel-safe: a frame half read when another branch wins stays in `recv`.
            msg = recv.read_frame::<Control>() => match msg {
                Ok(Control::Heartbeat { seq }) => {
                    if write_frame(&mut send, &Control::HeartbeatAck { seq }).await.is_err() {
                        break Ended::Lost("control stream failed".into());
                    }
                }
                Ok(Control::HeartbeatAck { .. }) => {}
                Ok(Control::Drain { reason }) => {
                    tracing::info!(%reason, "relay asked us to drain this connection");
                    break Ended::Lost(format!("relay drained: {reason}"));
                }
                Ok(other) => break Ended::Lost(format!("unexpected control message {other:?}")),
                Err(ReadError::Closed) => break Ended::Lost("relay closed the control stream".into()),
                Err(e) => break match conn.close_reason() {
                    Some(reason) => closed_reason(&reason),
                    None => Ended::Lost(format!("control stream: {e}")),
                },
            },
            _ = ticker.tick() => {
                seq += 1;
                if write_frame(&mut send, &Control::Heartbeat { seq }).await.is_err() {
                    break match conn.close_reason() {
                        Some(reason) => closed_reason(&reason),
                        None => Ended::Lost("control stream failed".into()),
                    };
                }
            }
            _ = shutdown.cancelled() => {
                let _ = write_frame(&mut send, &Control::Drain { reason: "connector shutting down".into() }).await;
                break Ended::Shutdown;
            }
        }
    };
    // Open sessions finish on this connection (up to the drain timeout);
    // new ones go to our other connections or the next one. Tell the relay
    // first, whatever ended the loop, so it routes nothing more here.
    sessions.close();
    if let Ended::Lost(_) = ended {
        let drain = Control::Drain {
            reason: "connector reconnecting".into(),
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), write_frame(&mut send, &drain)).await;
    }
    if !sessions.is_empty() && !matches!(ended, Ended::Refused(_)) {
        tracing::info!(open = sessions.len(), "waiting for open sessions to finish");
        let _ = tokio::time::timeout(shared.drain_timeout, sessions.wait()).await;
    }
    let _ = send.finish();
    conn.close(Code::Done.code().into(), b"connector closing");
    (ended, true)
}
