//! Keeps `--ha-connections` connections to the relay alive (QUIC, or TCP
//! where UDP is blocked: `dial.rs`), each with its own control stream,
//! reconnecting with jittered exponential backoff, and drains them on
//! shutdown. A slot that fell back to TCP moves back to QUIC when a probe
//! gets through, and leaves its open sessions to finish on the TCP
//! connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use sallyport_common::transport::{tcp, Closed, Connection, Transport};
use sallyport_proto::io::{write_frame, FrameReader, ReadError};
use sallyport_proto::tunnel::{Code, Control, Hello, ServiceInfo};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::bridge::{self, Services};
use crate::dial::{Dialer, TransportChoice};
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
/// How long the relay may take to answer hello.
pub const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);
/// Heartbeat interval used until the relay says otherwise (and its bounds).
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);

/// Everything the connection workers share.
pub struct Shared {
    /// The connector's name.
    pub name: String,
    /// `host:port` of the relay's tunnel listener (QUIC), as the metrics
    /// and logs name the relay.
    pub relay: String,
    /// Connects over the transports allowed, with the connector's
    /// certificate, trusting the relay's CA only; one UDP socket for all
    /// QUIC connections.
    pub dialer: Dialer,
    /// What it may connect streams to.
    pub services: Services,
    /// The service list sent in hello, host keys included.
    pub announced: Vec<ServiceInfo>,
    /// How long open streams may take to finish at shutdown.
    pub drain_timeout: Duration,
    /// Tunnel and session metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Why a connection ended.
enum Ended {
    /// Lost or closed by the relay; reconnect.
    Lost(String),
    /// The relay refused this connector for good (revoked, unknown).
    Refused(String),
    /// Our own shutdown.
    Shutdown,
    /// A QUIC probe got through: the slot moves to this connection, and
    /// the sessions on the old one finish there.
    Moved(Connection),
}

/// Runs `count` connection workers until `shutdown` or a permanent refusal.
pub async fn run(
    shared: Arc<Shared>,
    count: usize,
    shutdown: CancellationToken,
) -> Result<(), ConnectorError> {
    let fatal = CancellationToken::new();
    let workers = TaskTracker::new();
    // Connections left behind by a slot that moved to QUIC, until their
    // sessions end.
    let draining = TaskTracker::new();
    let (refusal_tx, mut refusal_rx) = tokio::sync::mpsc::channel::<String>(count.max(1));
    for i in 0..count {
        let shared = shared.clone();
        let stop = shutdown.child_token();
        let fatal = fatal.clone();
        let refusal_tx = refusal_tx.clone();
        let draining = draining.clone();
        let span = tracing::info_span!("tunnel", connector = %shared.name, conn = i);
        workers.spawn(
            async move {
                tokio::select! {
                    reason = worker(shared, stop, draining) => {
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
    // Sessions left on connections that moved to QUIC finish, unless the
    // relay refused this connector for good.
    draining.close();
    tokio::select! {
        _ = draining.wait() => {}
        _ = fatal.cancelled() => {}
    }
    // TCP connections closed gracefully send what their sessions left
    // queued before the process exits.
    shared.dialer.wait_closed(tcp::DRAIN_LINGER).await;
    let endpoint = shared.dialer.endpoint();
    endpoint.close(Code::Done.code().into(), b"connector stopped");
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
    match refusal_rx.try_recv() {
        Ok(reason) => Err(ConnectorError::Refused(reason)),
        Err(_) => Ok(()),
    }
}

/// One connection slot: connect, serve, reconnect. Returns a reason when
/// the relay refused us for good.
async fn worker(
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    draining: TaskTracker,
) -> Option<String> {
    let mut delay = BACKOFF_MIN;
    // When a tunnel that had been welcomed was last lost.
    let mut lost_at: Option<std::time::Instant> = None;
    let mut first = true;
    // A connection a QUIC probe opened, to serve next.
    let mut next: Option<Connection> = None;
    loop {
        if shutdown.is_cancelled() {
            return None;
        }
        let connected = match next.take() {
            Some(conn) => Ok(conn),
            None => {
                if !std::mem::take(&mut first) {
                    shared.metrics.reconnects.inc();
                }
                shared.dialer.connect().await.map_err(ended_by)
            }
        };
        match connected {
            Ok(conn) => match serve(&shared, conn, &shutdown, &draining).await {
                (Ended::Shutdown, _) => return None,
                (Ended::Refused(reason), _) => return Some(reason),
                (Ended::Moved(conn), _) => {
                    next = Some(conn);
                    delay = BACKOFF_MIN;
                    continue;
                }
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
            Err(Ended::Shutdown | Ended::Moved(_)) => return None,
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

/// What a connection's end means for its slot: the relay refusing this
/// connector for good (revoked, unknown), or a loss to reconnect after.
fn ended_by(closed: Closed) -> Ended {
    match (&closed, closed.peer_code()) {
        (Closed::ByPeer { reason, .. }, Some(Code::Revoked | Code::Unauthorized)) => {
            Ended::Refused(reason.clone())
        }
        _ => Ended::Lost(closed.to_string()),
    }
}

/// A QUIC connection attempt running beside a TCP connection's work.
type Probe<'a> = Pin<Box<dyn Future<Output = Result<Connection, Closed>> + Send + 'a>>;

/// Serves one connection until it ends; also says whether the relay
/// welcomed it (a tunnel that was up, as opposed to a failed attempt).
async fn serve(
    shared: &Arc<Shared>,
    conn: Connection,
    shutdown: &CancellationToken,
    draining: &TaskTracker,
) -> (Ended, bool) {
    let hello = Control::Hello(Hello {
        protocol: sallyport_proto::tunnel::PROTOCOL_VERSION,
        connector: shared.name.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        services: shared.announced.clone(),
    });
    let handshake = async {
        let (mut send, recv) = conn.open_control().await.map_err(ended_by)?;
        write_frame(&mut send, &hello)
            .await
            .map_err(|e| Ended::Lost(e.to_string()))?;
        let mut recv = FrameReader::new(recv);
        match recv.read_frame::<Control>().await {
            Ok(Control::Welcome(w)) => Ok((send, recv, w)),
            Ok(other) => Err(Ended::Lost(format!("expected welcome, got {other:?}"))),
            Err(e) => Err(match conn.close_reason() {
                Some(reason) => ended_by(reason),
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
                    return (ended_by(reason), false);
                }
            }
            return (ended, false);
        }
        Err(_) => return (Ended::Lost("no welcome in time".into()), false),
    };
    let transport = conn.transport();
    tracing::info!(relay = %shared.relay, relay_version = %welcome.relay_version, %transport, "tunnel up");
    let up = shared.metrics.tunnel_up(&shared.relay, transport);
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
    // On TCP in auto mode, QUIC is tried again now and then.
    let probing =
        transport == Transport::Tcp && shared.dialer.transport.choice == TransportChoice::Auto;
    let every = shared.dialer.transport.quic_probe_interval;
    let mut probe_ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    probe_ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut probe: Option<Probe<'_>> = None;
    let ended = loop {
        tokio::select! {
            _ = probe_ticker.tick(), if probing && probe.is_none() => {
                probe = Some(Box::pin(shared.dialer.quic(crate::dial::QUIC_FALLBACK_AFTER)));
            }
            result = async { probe.as_mut().expect("guarded").await }, if probe.is_some() => {
                probe = None;
                match result {
                    Ok(quic) => {
                        tracing::info!("QUIC gets through again; moving this connection to it");
                        break Ended::Moved(quic);
                    }
                    Err(e) => tracing::debug!(error = %e, "QUIC probe failed; staying on TCP"),
                }
            }
            stream = conn.accept_stream() => match stream {
                Ok((s, r)) => {
                    let shared = shared.clone();
                    sessions.spawn(async move {
                        bridge::serve(&shared.name, &shared.services, &shared.metrics, s, r).await
                    });
                }
                Err(e) => break ended_by(e),
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
                // The relay's close (with its reason: revoked, too many)
                // may trail its end of the control stream on TCP.
                Err(ReadError::Closed) => break match tokio::time::timeout(Duration::from_millis(500), conn.closed()).await {
                    Ok(reason) => ended_by(reason),
                    Err(_) => Ended::Lost("relay closed the control stream".into()),
                },
                Err(e) => break match conn.close_reason() {
                    Some(reason) => ended_by(reason),
                    None => Ended::Lost(format!("control stream: {e}")),
                },
            },
            _ = ticker.tick() => {
                seq += 1;
                if write_frame(&mut send, &Control::Heartbeat { seq }).await.is_err() {
                    break match conn.close_reason() {
                        Some(reason) => ended_by(reason),
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
    // Down for new sessions from here, whatever is still draining.
    drop(up);
    // Open sessions finish on this connection (up to the drain timeout);
    // new ones go to our other connections or the next one. Tell the relay
    // first, whatever ended the loop, so it routes nothing more here.
    drop(probe);
    sessions.close();
    let why = match &ended {
        Ended::Lost(_) => Some("connector reconnecting"),
        Ended::Moved(_) => Some("connector moving to QUIC"),
        _ => None,
    };
    if let Some(reason) = why {
        let drain = Control::Drain {
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), write_frame(&mut send, &drain)).await;
    }
    if let Ended::Moved(_) = ended {
        // Not an outage: the sessions here go on for as long as they last
        // (the drain timeout counts only from a shutdown), while the slot
        // serves new ones over QUIC.
        let (shutdown, drain_timeout) = (shutdown.clone(), shared.drain_timeout);
        draining.spawn(
            async move {
                if !sessions.is_empty() {
                    tracing::info!(
                        open = sessions.len(),
                        "sessions stay on the TCP connection until they end"
                    );
                }
                tokio::select! {
                    _ = sessions.wait() => {}
                    _ = async {
                        shutdown.cancelled().await;
                        tokio::time::sleep(drain_timeout).await;
                    } => {}
                }
                send.finish();
                conn.close(Code::Done, "connector moved to QUIC");
            }
            .in_current_span(),
        );
        return (ended, true);
    }
    if !sessions.is_empty() && !matches!(ended, Ended::Refused(_)) {
        tracing::info!(open = sessions.len(), "waiting for open sessions to finish");
        let _ = tokio::time::timeout(shared.drain_timeout, sessions.wait()).await;
    }
    send.finish();
    conn.close(Code::Done, "connector closing");
    (ended, true)
}
