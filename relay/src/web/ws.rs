//! The session WebSocket: authenticate, pick a connector that serves the
//! service, open a session stream, and only then upgrade, so every failure
//! reaches the client as an HTTP status with a reason. After the upgrade,
//! bytes flow both ways with backpressure and half-close.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use futures::{SinkExt as _, StreamExt as _};
use sallyport_proto::client::Control;
use sallyport_proto::frame::service_name;
use sallyport_proto::limits::MAX_WS_MESSAGE_LEN;
use sallyport_proto::tunnel::Code;
use sallyport_proto::tunnel::StreamHeader;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::auth::require_session;
use super::{access, session_limits, ApiErr, AppState};
use crate::audit::Event;
use crate::live::SessionSlot;
use crate::metrics::Metrics;
use crate::policy::Stage;
use crate::tunnel::{open_session, OpenError, FAILOVER_TIMEOUT, SESSION_OPEN_TIMEOUT};
use sallyport_common::secret::random_secret;

/// Largest session message sent to a client: a whole burst from the
/// connector, within the WebSocket message limit.
const DOWNSTREAM_BUF: usize = 64 * 1024;
const _: () = assert!(DOWNSTREAM_BUF <= MAX_WS_MESSAGE_LEN);

/// How often the relay pings the client during a session.
pub const PING_INTERVAL: Duration = Duration::from_secs(15);
/// A client that sends nothing (not even a pong) for this long is gone: a
/// laptop asleep or a dropped NAT mapping must not hold a session forever.
pub const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(45);

/// Client events waiting for the disk, per session.
const EVENT_QUEUE: usize = 256;
/// Most client events written with one flush.
const EVENT_BATCH: usize = 64;
/// Terminal bytes a client may report beyond what its session carried:
/// events of an earlier session resent after a reconnect (the browser keeps
/// at most 4 MiB unacknowledged).
const CLIENT_EVENT_SLACK: u64 = 8 * 1024 * 1024;

/// What a client event counts against its socket's terminal budget (see
/// [`crate::audit::budget::terminal_charge`]).
fn terminal_bytes(event: &Event) -> u64 {
    match event {
        Event::Client { event, .. } => crate::audit::budget::terminal_charge(event),
        _ => 0,
    }
}

/// Query of `GET /ws/{service}`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct SessionQuery {
    /// `?opened=1`: the client wants [`Control::Opened`] as the first
    /// message (the browser client, which checks host keys itself). Others
    /// (`sallyport proxy` of any version: OpenSSH checks the keys) get none,
    /// so a client older than the message keeps working.
    #[serde(default)]
    pub opened: Option<u8>,
}

/// `GET /ws/{service}`: a session's WebSocket. Anyone not signed in gets
/// 401. A signed-in client that asked for `?opened=1` (the browser, which
/// cannot read an HTTP status of a refused upgrade) gets every other
/// refusal over the socket instead: one [`Control::Error`] with the reason
/// (the policy's, the connector's, sshd's unreachability), then a close.
/// Others get the status and a JSON `{"error"}` body.
pub async fn session(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(service): Path<String>,
    axum::extract::Query(query): axum::extract::Query<SessionQuery>,
    tls: access::Tls,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiErr> {
    let session = require_session(&state, &headers)?;
    let explain = query.opened == Some(1);
    let mut ws = Some(ws);
    match open(state, peer, service, query, tls, &headers, &mut ws, session).await {
        Ok(r) => Ok(r),
        Err(e) => match ws.take() {
            Some(ws) if explain => Ok(refuse_over_socket(ws, e)),
            _ => Err(e),
        },
    }
}

/// Upgrades, sends `refusal` as [`Control::Error`], and closes.
fn refuse_over_socket(ws: WebSocketUpgrade, refusal: ApiErr) -> Response {
    ws.on_upgrade(move |mut socket| async move {
        let error = Control::Error { reason: refusal.1 };
        if socket
            .send(Message::Text(error.to_text().into()))
            .await
            .is_ok()
        {
            let _ = socket.send(Message::Close(None)).await;
        }
    })
}

/// The session as [`session`] opens it; takes `ws` only once the session
/// is open, so a refusal leaves it for [`refuse_over_socket`].
#[allow(clippy::too_many_arguments)]
async fn open(
    state: Arc<AppState>,
    peer: SocketAddr,
    service: String,
    query: SessionQuery,
    tls: access::Tls,
    headers: &HeaderMap,
    ws: &mut Option<WebSocketUpgrade>,
    session: crate::store::SessionRecord,
) -> Result<Response, ApiErr> {
    let service = service_name("service name", &service)
        .map_err(|e| ApiErr(StatusCode::BAD_REQUEST, e.to_string()))?;
    // Policy first: a denied request learns nothing about the service and
    // opens no stream.
    let (policy, _) = access::check(
        &state,
        &session,
        peer.ip(),
        &tls,
        &service,
        Stage::Websocket,
    )?;
    let user = session.user;
    // Counted before the stream opens, until the pipe ends.
    let slot = session_limits::acquire(&state, headers, &policy, &user, &service)?;
    let candidates = state.registry.candidates(&service);
    if candidates.is_empty() {
        return Err(if state.store.service_known(&service)? {
            ApiErr(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("no connector serving {service:?} is online"),
            )
        } else {
            ApiErr(
                StatusCode::NOT_FOUND,
                format!("no such service {service:?}"),
            )
        });
    }
    let header = StreamHeader {
        session: random_secret(12),
        service: service.clone(),
        user: user.clone(),
        client_addr: peer.to_string(),
    };
    let span = tracing::info_span!("session", session = %header.session, %service, %user);
    // Try the live connections in turn: one that died a moment ago fails
    // fast, and the next takes the session. A refusal is the connector's
    // answer and final.
    let mut last = None;
    let mut opened = None;
    for (i, live) in candidates.iter().enumerate() {
        Metrics::add(&state.metrics.streams_opened, 1);
        let timeout = if i + 1 < candidates.len() {
            FAILOVER_TIMEOUT
        } else {
            SESSION_OPEN_TIMEOUT
        };
        match open_session(live, &header, timeout)
            .instrument(span.clone())
            .await
        {
            Ok(streams) => {
                // The keys of the connector that carries this session,
                // reported for this service: the only ones its client accepts.
                let host_keys = live
                    .announced(&service)
                    .map(|s| s.host_keys.clone())
                    .unwrap_or_default();
                opened = Some((live.connector.clone(), host_keys, streams));
                break;
            }
            Err(e @ OpenError::Refused { .. }) => {
                last = Some(e);
                break;
            }
            Err(e) => {
                span.in_scope(
                    || tracing::warn!(error = %e, "session open failed; trying another connection"),
                );
                last = Some(e);
            }
        }
    }
    let Some((connector, host_keys, (send, recv))) = opened else {
        Metrics::add(&state.metrics.sessions_refused, 1);
        let reason = last.map(|e| e.to_string()).unwrap_or_default();
        span.in_scope(|| tracing::warn!(%reason, "session refused"));
        return Err(ApiErr(StatusCode::BAD_GATEWAY, reason));
    };
    // On disk before the client hears the session is open; if it cannot
    // be recorded, the session does not happen (dropping the streams
    // closes them at the connector).
    state.audit.append(&Event::StreamOpened {
        session: header.session.clone(),
        service: service.clone(),
        user: user.clone(),
        connector: connector.clone(),
        client: peer.to_string(),
    })?;
    Metrics::add(&state.metrics.sessions_opened, 1);
    span.in_scope(|| tracing::info!(%connector, %peer, "session opened"));
    let metrics = state.metrics.clone();
    let sessions = state.sessions.clone();
    let audit = state.audit.clone();
    let opened = std::time::Instant::now();
    let recorder = Recorder {
        audit: audit.clone(),
        user: user.clone(),
        service: service.clone(),
        stream: header.session.clone(),
        record_input: policy.records_input(&service),
    };
    // The client learns whether its keystrokes are kept, so it sends
    // none when they are not (the relay drops any that come anyway).
    let hello = (query.opened == Some(1)).then(|| Control::Opened {
        connector: connector.clone(),
        host_keys,
        record_input: recorder.record_input,
    });
    let ws = ws.take().ok_or_else(|| {
        ApiErr(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the session's socket was already used".into(),
        )
    })?;
    Ok(ws
        .max_message_size(MAX_WS_MESSAGE_LEN)
        .max_frame_size(MAX_WS_MESSAGE_LEN)
        .on_upgrade(move |socket| {
            // Tracked, so the relay's shutdown can wait for open sessions.
            sessions.track_future(
                async move {
                    let mut socket = socket;
                    if let Some(hello) = hello {
                        if socket
                            .send(Message::Text(hello.to_text().into()))
                            .await
                            .is_err()
                        {
                            tracing::info!("client gone before the session started");
                        }
                    }
                    metrics.sessions_active.fetch_add(1, Ordering::Relaxed);
                    let (up, down) = pipe(socket, send, recv, &metrics, recorder, &slot).await;
                    drop(slot);
                    metrics.sessions_active.fetch_sub(1, Ordering::Relaxed);
                    tracing::info!(bytes_up = up, bytes_down = down, "session closed");
                    let closed = Event::StreamClosed {
                        session: header.session,
                        service,
                        user,
                        bytes_up: up,
                        bytes_down: down,
                        millis: opened.elapsed().as_millis() as u64,
                    };
                    if let Err(e) = audit.append(&closed) {
                        tracing::error!(error = %e, "audit log failed");
                    }
                }
                .instrument(span),
            )
        }))
}

/// Acknowledges `(session, seq)` pairs: the last of each session's run
/// acknowledges the run. Never waits: a full queue or a finished socket
/// loses only an acknowledgement, and the client sends again.
fn acknowledge(
    acks: &tokio::sync::mpsc::Sender<Control>,
    events: impl IntoIterator<Item = (String, u64)>,
) {
    let mut last: Vec<(String, u64)> = Vec::new();
    for (session, seq) in events {
        match last.iter_mut().find(|(s, _)| *s == session) {
            Some(entry) => entry.1 = entry.1.max(seq),
            None => last.push((session, seq)),
        }
    }
    for (session, seq) in last {
        let _ = acks.try_send(Control::Ack { session, seq });
    }
}

/// Copies client → connector and connector → client until both directions
/// have finished (or either side fails), then closes the WebSocket. Returns
/// the byte counts each way.
async fn pipe(
    socket: WebSocket,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    metrics: &Metrics,
    recorder: Recorder,
    slot: &SessionSlot,
) -> (u64, u64) {
    let (mut ws_tx, mut ws_rx) = socket.split();
    let (events_tx, mut events_rx) = tokio::sync::mpsc::channel::<Event>(EVENT_QUEUE);
    // Bytes carried both ways (SSH ciphertext, which is never shorter than
    // the terminal data in it).
    let relayed = std::sync::atomic::AtomicU64::new(0);
    let (acks_tx, mut acks_rx) = tokio::sync::mpsc::channel::<Control>(EVENT_QUEUE);
    // Cancelled when the session must end in both directions at once,
    // also by its sign-in ending.
    let abort = slot.signed_out().child_token();
    // Why the relay ended the session, for the client (set once).
    let ended: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let mut input_dropped = 0u64;
    // Cancelled when the connector → client direction has finished cleanly.
    let down_done = CancellationToken::new();

    let upstream = async {
        let mut socket_budget = crate::audit::budget::SocketBudget::default();
        let mut bytes = 0u64;
        let mut eof = false;
        loop {
            let msg = tokio::select! {
                m = tokio::time::timeout(CLIENT_IDLE_TIMEOUT, ws_rx.next()) => match m {
                    Ok(m) => m,
                    Err(_) => {
                        tracing::info!("client silent for {CLIENT_IDLE_TIMEOUT:?}; ending the session");
                        abort.cancel();
                        break;
                    }
                },
                _ = abort.cancelled() => break,
                _ = down_done.cancelled(), if eof => break,
            };
            match msg {
                Some(Ok(Message::Binary(b))) if !eof => {
                    let n = b.len() as u64;
                    if send.write_chunk(b).await.is_err() {
                        abort.cancel();
                        break;
                    }
                    bytes += n;
                    relayed.fetch_add(n, Ordering::Relaxed);
                    Metrics::add(&metrics.bytes_to_connector, n);
                }
                Some(Ok(Message::Text(t))) => match Control::parse(t.as_str()) {
                    Ok(Control::Eof) if !eof => {
                        eof = true;
                        let _ = send.finish();
                    }
                    Ok(Control::Error { reason }) => {
                        tracing::info!(%reason, "client ended the session");
                        abort.cancel();
                        break;
                    }
                    // Accepted while the socket is open, also after the
                    // client's eof; but once both directions are done the
                    // relay closes, so clients send their events (the
                    // session's end) before their eof.
                    Ok(Control::Event {
                        session,
                        seq,
                        t_ms,
                        event,
                    }) => {
                        if let Err(e) = socket_budget.charge(&session, &event) {
                            tracing::warn!(reason = %e, "client events over the connection's budget; ending the session");
                            let _ = ended.set(e.to_string());
                            abort.cancel();
                            break;
                        }
                        let event = Event::Client {
                            session,
                            seq,
                            t_ms,
                            user: recorder.user.clone(),
                            service: recorder.service.clone(),
                            stream: recorder.stream.clone(),
                            event,
                        };
                        // Bounded: a client that outruns the disk waits.
                        // Refused once the recorder has stopped (it ended
                        // the session).
                        if events_tx.send(event).await.is_err() {
                            abort.cancel();
                            break;
                        }
                    }
                    Ok(other) => {
                        tracing::warn!(message = ?other, "unexpected control message from client");
                        abort.cancel();
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "bad control message from client");
                        abort.cancel();
                        break;
                    }
                },
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Binary(_))) => {
                    tracing::warn!("client sent data after eof");
                    abort.cancel();
                    break;
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    if !eof {
                        abort.cancel();
                    }
                    break;
                }
            }
        }
        if abort.is_cancelled() {
            let _ = send.reset(Code::ClientGone.code().into());
        }
        drop(events_tx);
        bytes
    };

    // Client events go to disk in batches (one flush each), then their
    // acknowledgements go back down the socket.
    let record = async {
        // Terminal bytes the client reported, against what the session
        // carried: a client cannot fill the disk with made-up output.
        let mut reported = 0u64;
        // Carried bytes the stored terminal events have used; the rest
        // backs events to come (see `audit::budget`).
        let mut backed_used = 0u64;
        while let Some(first) = events_rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < EVENT_BATCH {
                match events_rx.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(_) => break,
                }
            }
            let dropped =
                session_limits::drop_unrecorded_input(&mut batch, recorder.record_input, metrics);
            input_dropped += dropped.len() as u64;
            reported += batch.iter().map(terminal_bytes).sum::<u64>();
            let carried = relayed.load(Ordering::Relaxed);
            if reported > carried + CLIENT_EVENT_SLACK {
                tracing::warn!(
                    reported,
                    carried,
                    "client reported more terminal data than the session carried; ending it"
                );
                abort.cancel();
                break;
            }
            let audit = recorder.audit.clone();
            let user = recorder.user.clone();
            let backed = carried.saturating_sub(backed_used);
            let stored = tokio::task::spawn_blocking(move || {
                audit.append_client_events(&user, &batch, backed)
            })
            .await;
            match stored {
                Ok(Ok(crate::audit::ClientAppend {
                    refused: Some(e),
                    refused_at,
                    stored,
                    ..
                })) => {
                    tracing::warn!(reason = %e, "client event over its budget; ending the session");
                    // What was stored, and the refused event, which never
                    // will be: the client forgets them, so its next socket
                    // does not meet the same refusal again. (Not the dropped
                    // keystrokes: one may come after events not looked at.)
                    acknowledge(&acks_tx, stored.into_iter().chain(refused_at));
                    let _ = ended.set(e.to_string());
                    abort.cancel();
                    break;
                }
                Ok(Ok(crate::audit::ClientAppend {
                    stored,
                    backed_used: used,
                    ..
                })) => {
                    backed_used += used;
                    acknowledge(&acks_tx, dropped.into_iter().chain(stored));
                }
                // Acknowledging anything after a batch that failed would
                // let the client forget it: end the session instead, and
                // the client sends everything unacknowledged on its next socket.
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "audit log failed: client events not acknowledged; ending the session");
                    abort.cancel();
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "audit log failed: client events not acknowledged; ending the session");
                    abort.cancel();
                    break;
                }
            }
        }
        // A client still sending must not wait on a recorder that stopped.
        events_rx.close();
        drop(acks_tx);
    };

    let downstream = async {
        let mut bytes = 0u64;
        // One message per read of everything received so far (up to the
        // message limit), not one per QUIC packet.
        let mut buf = vec![0u8; DOWNSTREAM_BUF];
        // Pings prove a quiet client is still there (its pongs reset the
        // idle timeout upstream).
        let mut ping = tokio::time::interval(PING_INTERVAL);
        ping.reset();
        let mut acks_open = true;
        let outcome: Result<(), String> = loop {
            let read = tokio::select! {
                r = recv.read(&mut buf) => r,
                ack = acks_rx.recv(), if acks_open => {
                    match ack {
                        Some(ack) => {
                            if ws_tx.send(Message::Text(ack.to_text().into())).await.is_err() {
                                abort.cancel();
                                break Ok(());
                            }
                        }
                        None => acks_open = false,
                    }
                    continue;
                }
                _ = ping.tick() => {
                    if ws_tx.send(Message::Ping(bytes::Bytes::new())).await.is_err() {
                        abort.cancel();
                        break Ok(());
                    }
                    continue;
                }
                _ = abort.cancelled() => break Ok(()),
            };
            match read {
                Ok(Some(k)) => {
                    let n = k as u64;
                    let msg = Message::Binary(bytes::Bytes::copy_from_slice(&buf[..k]));
                    if ws_tx.send(msg).await.is_err() {
                        abort.cancel();
                        break Ok(());
                    }
                    bytes += n;
                    relayed.fetch_add(n, Ordering::Relaxed);
                    Metrics::add(&metrics.bytes_to_client, n);
                }
                Ok(None) => {
                    let _ = ws_tx
                        .send(Message::Text(Control::Eof.to_text().into()))
                        .await;
                    down_done.cancel();
                    break Ok(());
                }
                Err(e) => {
                    abort.cancel();
                    let why = match &e {
                        quinn::ReadError::Reset(code) => Code::from_code(code.into_inner())
                            .map(|c| c.describe().to_owned())
                            .unwrap_or_else(|| e.to_string()),
                        _ => e.to_string(),
                    };
                    break Err(format!("the connector ended the session: {why}"));
                }
            }
        };
        if abort.is_cancelled() {
            let _ = recv.stop(Code::ClientGone.code().into());
        }
        if let Err(reason) = outcome {
            let _ = ws_tx
                .send(Message::Text(Control::Error { reason }.to_text().into()))
                .await;
        }
        // The client reports its session's end after the data: keep
        // acknowledging until the recorder is done, so the client hears
        // its last events are safe before the socket closes.
        while acks_open && !abort.is_cancelled() {
            let ack = tokio::select! {
                a = acks_rx.recv() => a,
                _ = abort.cancelled() => None,
            };
            let Some(ack) = ack else { break };
            if ws_tx
                .send(Message::Text(ack.to_text().into()))
                .await
                .is_err()
            {
                break;
            }
        }
        (bytes, ws_tx)
    };

    let (up, (down, mut ws_tx), ()) = tokio::join!(upstream, downstream, record);
    if slot.signed_out().is_cancelled() {
        tracing::info!("the session's sign-in ended; session ended");
        let _ = ended.set(session_limits::SIGNED_OUT.to_owned());
    }
    if let Some(reason) = ended.get() {
        // Acknowledgements still queued go first (a refused event's among
        // them), so the client forgets what it must not send again.
        while let Ok(ack) = acks_rx.try_recv() {
            if ws_tx
                .send(Message::Text(ack.to_text().into()))
                .await
                .is_err()
            {
                break;
            }
        }
        let error = Control::Error {
            reason: reason.clone(),
        };
        let _ = ws_tx.send(Message::Text(error.to_text().into())).await;
    }
    if input_dropped > 0 {
        tracing::info!(
            input_dropped,
            "keystroke events not recorded: record_input is off for this service"
        );
    }
    let _ = ws_tx.send(Message::Close(None)).await;
    (up, down)
}

/// Who and what a session's client events are recorded as.
pub struct Recorder {
    pub audit: Arc<crate::audit::AuditLog>,
    pub user: String,
    pub service: String,
    /// The relay's id of the stream (the client names its own session).
    pub stream: String,
    /// The policy records keystrokes for this service (`record_input`).
    pub record_input: bool,
}
