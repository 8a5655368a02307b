//! The tunnel's listeners (QUIC on UDP; TLS on TCP, see [`super::tcp`]):
//! accept connector connections, tell enrolments from enrolled connectors by
//! the client certificate, and keep each connector's control stream,
//! whatever the transport.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sallyport_common::quic;
use sallyport_common::transport::Connection;
use sallyport_proto::io::{write_frame, FrameReader, ReadError};
use sallyport_proto::tunnel::{
    Code, Control, Hello, RefusedService, Welcome, ALPN, PROTOCOL_VERSION,
};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use super::registry::{LiveConn, Registry};
use super::{HANDSHAKE_TIMEOUT, HEARTBEAT_SECS};
use crate::metrics::Metrics;
use crate::pki::RelayCa;
use crate::store::{ConnectorState, Store};
use sallyport_common::hash::sha256_hex;

/// What the tunnel side of the relay needs.
pub struct TunnelCtx {
    pub store: Store,
    pub ca: Arc<RelayCa>,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    pub audit: Arc<crate::audit::AuditLog>,
    /// Live connections one enrolled connector may hold (a stolen
    /// certificate must not be able to open them without end).
    pub max_connections_per_connector: usize,
    /// Connections without a certificate being served at once (see
    /// [`super::enrol::MAX_ENROLMENTS`]).
    pub enrolments: super::enrol::EnrolSlots,
    /// Cancelled when the relay's drain time is over: connections still
    /// open (their sessions outlived it) are closed.
    pub closing: CancellationToken,
}

/// TLS settings of both tunnel listeners: TLS 1.3 only, the tunnel
/// certificate chained to the relay CA, the tunnel's ALPN, and client
/// certificates optional at the TLS layer (a connection without one may
/// only enrol) but, when present, signed by the relay CA.
pub fn tls_config(ca: &RelayCa) -> anyhow::Result<rustls::ServerConfig> {
    let provider = sallyport_common::tls::crypto_provider();
    let (chain, key) = ca.tunnel_server_identity()?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der().clone())?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    Ok(tls)
}

/// QUIC server settings: [`tls_config`] and the tunnel's transport numbers.
pub fn server_config(ca: &RelayCa) -> anyhow::Result<quinn::ServerConfig> {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls_config(ca)?)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(quic::transport_config(
        sallyport_proto::tunnel::transport::MAX_CONNECTOR_STREAMS,
    )));
    Ok(config)
}

pub struct TunnelServer {
    pub ctx: Arc<TunnelCtx>,
    pub endpoint: quinn::Endpoint,
}

impl TunnelServer {
    /// Accepts connections until `shutdown`; each connection task is tracked
    /// by `tasks` so shutdown can wait for them.
    pub async fn run(self, shutdown: CancellationToken, tasks: TaskTracker) {
        loop {
            let incoming = tokio::select! {
                i = self.endpoint.accept() => match i {
                    Some(i) => i,
                    None => break,
                },
                _ = shutdown.cancelled() => break,
            };
            let ctx = self.ctx.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                let remote = incoming.remote_address();
                match incoming.await {
                    Ok(conn) => handle(ctx, Connection::Quic(conn), shutdown).await,
                    Err(e) => tracing::debug!(%remote, error = %e, "tunnel handshake failed"),
                }
            });
        }
    }
}

/// Serves one connection, either transport, until it ends.
pub(super) async fn handle(ctx: Arc<TunnelCtx>, conn: Connection, shutdown: CancellationToken) {
    let Some(cert) = conn.peer_certificate() else {
        // Anyone may try to enrol: a few at a time, fewer from one address.
        let _slot = match ctx.enrolments.try_take(conn.remote_address().ip()) {
            Ok(slot) => slot,
            Err(why) => {
                tracing::debug!(remote = %conn.remote_address(), why, "enrolment refused");
                conn.close(Code::Busy, why);
                return;
            }
        };
        return super::enrol::serve(&ctx, conn).await;
    };
    let remote = conn.remote_address();
    let transport = conn.transport();
    let record = match ctx.store.connector_by_cert(&sha256_hex(&cert)).await {
        Ok(Some(r)) if r.state == ConnectorState::Enrolled => r,
        Ok(Some(r)) if r.state == ConnectorState::Revoked => {
            tracing::warn!(connector = %r.name, %remote, "revoked connector refused");
            conn.close(Code::Revoked, &format!("connector {} was revoked", r.name));
            return;
        }
        Ok(_) => {
            tracing::warn!(%remote, "unknown connector certificate refused");
            conn.close(
                Code::Unauthorized,
                "this connector certificate is not enrolled here",
            );
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "store failed");
            conn.close(Code::Done, "relay store unavailable");
            return;
        }
    };
    let span = tracing::info_span!("connector", connector = %record.name, %remote, %transport);
    run_connection(ctx, conn, record.name, shutdown)
        .instrument(span)
        .await
}

async fn run_connection(
    ctx: Arc<TunnelCtx>,
    conn: Connection,
    name: String,
    shutdown: CancellationToken,
) {
    let protocol_error = |conn: &Connection, reason: String| {
        tracing::warn!(%reason, "closing connection: protocol error");
        Metrics::add(&ctx.metrics.tunnel_protocol_errors, 1);
        conn.close(Code::Protocol, &reason);
    };
    // The connector speaks first on the control stream (which it opens on
    // QUIC, and the relay on TCP).
    let hello = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let (send, recv) = conn.accept_control().await.map_err(|e| e.to_string())?;
        let mut recv = FrameReader::new(recv);
        let hello: Control = recv
            .read_frame()
            .await
            .map_err(|e| format!("bad hello: {e}"))?;
        Ok::<_, String>((send, recv, hello))
    })
    .await;
    let (mut send, mut recv, mut hello) = match hello {
        Ok(Ok((send, recv, Control::Hello(h)))) => (send, recv, h),
        Ok(Ok((_, _, other))) => {
            return protocol_error(&conn, format!("expected hello, got {other:?}"))
        }
        Ok(Err(e)) => return protocol_error(&conn, e),
        Err(_) => {
            conn.close(Code::Timeout, "no hello in time");
            return;
        }
    };
    if let Err(e) = check_hello(&mut hello, &name) {
        return protocol_error(&conn, e);
    }
    // Grants as the store has them now, reloaded in turn with any admin's
    // change so that a grant or ungrant landing meanwhile is not undone.
    ctx.registry.reload_grants(&name, &ctx.store).await;
    let granted = stored_grants(&ctx.store, &name).await;
    let refused = refuse_ungranted(&ctx, &name, &hello, &granted).await;
    let welcome = Control::Welcome(Welcome {
        protocol: PROTOCOL_VERSION,
        relay_version: env!("CARGO_PKG_VERSION").into(),
        heartbeat_secs: HEARTBEAT_SECS,
        refused,
    });
    if let Err(e) = ctx
        .store
        .touch_connector(&name, Some(&hello.services))
        .await
    {
        tracing::warn!(error = %e, "cannot record connector services");
    }
    let live = LiveConn {
        id: ctx.registry.next_id(),
        connector: name.clone(),
        conn: conn.clone(),
        services: Arc::new(hello.services),
        remote: conn.remote_address(),
        draining: Arc::new(AtomicBool::new(false)),
        version: hello.version.clone(),
    };
    if !ctx
        .registry
        .try_insert(live.clone(), ctx.max_connections_per_connector)
    {
        let reason = format!(
            "connector {name} already has {} connections, the most the relay allows",
            ctx.max_connections_per_connector
        );
        tracing::warn!(%reason, "connection refused");
        conn.close(Code::TooMany, &reason);
        return;
    }
    // Refused before the welcome: a connector that is told no was never up.
    if write_frame(&mut send, &welcome).await.is_err() {
        ctx.registry.remove(live.id);
        conn.close(Code::Done, "the welcome could not be sent");
        return;
    }
    let services: Vec<&str> = live
        .services
        .iter()
        .filter(|s| ctx.registry.serves(&live, &s.name))
        .map(|s| s.name.as_str())
        .collect();
    tracing::info!(services = ?services, version = %hello.version, "connector connected");
    let event = crate::audit::Event::ConnectorConnected {
        connector: name.clone(),
        remote: live.remote.to_string(),
    };
    if let Err(e) = ctx.audit.append(&event).await {
        tracing::error!(error = %e, "audit log failed");
    }
    Metrics::add(&ctx.metrics.connector_connections, 1);
    // A revocation that landed during the handshake found no live connection
    // to close: look again now that this one is registered.
    if !matches!(ctx.store.connector(&name).await, Ok(Some(r)) if r.state == ConnectorState::Enrolled)
    {
        ctx.registry.remove(live.id);
        conn.close(Code::Revoked, &format!("connector {name} was revoked"));
        return;
    }

    loop {
        tokio::select! {
            // Cancel-safe: a frame half read when shutdown wins stays in `recv`.
            msg = recv.read_frame::<Control>() => match msg {
                Ok(Control::Heartbeat { seq }) => {
                    if write_frame(&mut send, &Control::HeartbeatAck { seq }).await.is_err() {
                        break;
                    }
                    let _ = ctx.store.touch_connector(&name, None).await;
                }
                Ok(Control::HeartbeatAck { .. }) => {}
                Ok(Control::Drain { reason }) => {
                    tracing::info!(%reason, "connector draining");
                    live.draining.store(true, Ordering::Relaxed);
                }
                Ok(other) => {
                    protocol_error(&conn, format!("unexpected control message {other:?}"));
                    break;
                }
                Err(ReadError::Closed) => {
                    // Control stream finished: the connector has drained.
                    live.draining.store(true, Ordering::Relaxed);
                    break;
                }
                Err(ReadError::Frame(e)) => {
                    protocol_error(&conn, format!("bad control frame: {e}"));
                    break;
                }
                Err(ReadError::Io(_)) => break,
            },
            _ = shutdown.cancelled() => {
                let _ = write_frame(&mut send, &Control::Drain { reason: "relay shutting down".into() }).await;
                break;
            }
        }
    }
    // Sessions already open keep the connection until they end (or it
    // dies). It stays in the registry meanwhile, marked draining: it takes
    // no new sessions, but it counts against the connector's cap and a
    // revocation still closes it.
    live.draining.store(true, Ordering::Relaxed);
    // Our side of the control stream is done too, so that a connector
    // closing gracefully (on TCP, an HTTP/2 GOAWAY that waits for open
    // streams) is not kept waiting for it.
    send.finish();
    let reason = tokio::select! {
        reason = conn.closed() => reason,
        _ = ctx.closing.cancelled() => {
            conn.close(Code::Done, "relay shutting down");
            conn.closed().await
        }
    };
    ctx.registry.remove(live.id);
    let _ = ctx.store.touch_connector(&name, None).await;
    tracing::info!(%reason, "connector disconnected");
    let event = crate::audit::Event::ConnectorDisconnected {
        connector: name.clone(),
        reason: reason.to_string(),
    };
    if let Err(e) = ctx.audit.append(&event).await {
        tracing::error!(error = %e, "audit log failed");
    }
}

/// What the store says `connector` may serve; nothing when it cannot say.
pub async fn stored_grants(store: &Store, connector: &str) -> Vec<String> {
    match store.connector(connector).await {
        Ok(Some(r)) => r.granted.unwrap_or_default(),
        Ok(None) => Vec::new(),
        Err(e) => {
            tracing::error!(error = %e, %connector, "store failed; no grants");
            Vec::new()
        }
    }
}

/// The services `hello` names that `connector` is not granted, each logged
/// and audited (once per connection) with the reason the connector is told.
async fn refuse_ungranted(
    ctx: &TunnelCtx,
    connector: &str,
    hello: &Hello,
    granted: &[String],
) -> Vec<RefusedService> {
    let mut refused = Vec::new();
    for s in &hello.services {
        if granted.contains(&s.name) {
            continue;
        }
        let reason = format!(
            "connector {connector} is not granted service {}; an admin can run `sallyport-relay connector grant {connector} {}`",
            s.name, s.name
        );
        tracing::warn!(service = %s.name, %reason, "service refused");
        let event = crate::audit::Event::ConnectorServiceRefused {
            connector: connector.to_owned(),
            service: s.name.clone(),
            reason: reason.clone(),
        };
        if let Err(e) = ctx.audit.append(&event).await {
            tracing::error!(error = %e, "audit log failed");
        }
        refused.push(RefusedService {
            service: s.name.clone(),
            reason,
        });
    }
    refused
}

/// Checks `hello` and puts its service names in their canonical
/// (lowercase) form; two names that differ only in case are an error.
fn check_hello(hello: &mut Hello, enrolled_as: &str) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for s in &mut hello.services {
        let canonical = s.name.to_ascii_lowercase();
        if !seen.insert(canonical.clone()) {
            return Err(format!(
                "service {} is announced twice (service names are case-insensitive)",
                s.name
            ));
        }
        s.name = canonical;
    }
    if hello.protocol != PROTOCOL_VERSION {
        return Err(format!(
            "protocol version {} is not supported (relay speaks {PROTOCOL_VERSION})",
            hello.protocol
        ));
    }
    if hello.connector != enrolled_as {
        return Err(format!(
            "hello names connector {}, but the certificate was issued to {enrolled_as}",
            hello.connector
        ));
    }
    Ok(())
}
