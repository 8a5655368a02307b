//! The session WebSocket: authenticate, check policy, dial a connector
//! that serves the service, and only then upgrade, so every failure
//! reaches the client as an HTTP status with a reason. After the upgrade
//! the bytes are the pipe's (`crate::pipe`) and the client's events the
//! recorder's (`audit::recorder`).

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use sallyport_proto::client::Control;
use sallyport_proto::frame::service_name;
use sallyport_proto::limits::MAX_WS_MESSAGE_LEN;
use sallyport_proto::tunnel::StreamHeader;
use tracing::Instrument as _;

use super::auth::require_sign_in;
use super::client_addr::ClientAddr;
use super::{access, session_limits, ApiErr, AppState};
use crate::audit::recorder::Recorder;
use crate::audit::Event;
use crate::live::SessionSlot;
use crate::metrics::Metrics;
use crate::pipe::pipe;
use crate::policy::Stage;
use crate::tunnel::{dial, Dialed};
use sallyport_common::secret::random_secret;

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
    ClientAddr(peer): ClientAddr,
    Path(service): Path<String>,
    axum::extract::Query(query): axum::extract::Query<SessionQuery>,
    tls: access::Tls,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiErr> {
    let started = std::time::Instant::now();
    let sign_in = require_sign_in(&state, &headers).await?;
    let explain = query.opened == Some(1);
    let mut ws = Some(ws);
    match open(
        state, peer, service, query, tls, &headers, &mut ws, sign_in, started,
    )
    .await
    {
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
    peer: IpAddr,
    service: String,
    query: SessionQuery,
    tls: access::Tls,
    headers: &HeaderMap,
    ws: &mut Option<WebSocketUpgrade>,
    sign_in: crate::store::SignInRecord,
    started: std::time::Instant,
) -> Result<Response, ApiErr> {
    let service = service_name("service name", &service)
        .map_err(|e| ApiErr(StatusCode::BAD_REQUEST, e.to_string()))?;
    // Policy first: a denied request learns nothing about the service and
    // opens no stream.
    let (policy, _) =
        access::check(&state, &sign_in, peer, &tls, &service, Stage::Websocket).await?;
    let user = sign_in.user;
    // Counted before the stream opens, until the pipe ends.
    let mut slot = session_limits::acquire(&state, headers, &policy, &user, &service).await?;
    let header = StreamHeader {
        stream: random_secret(12),
        service: service.clone(),
        user: user.clone(),
        client_addr: peer.to_string(),
    };
    slot.name_stream(&header.stream);
    let span = tracing::info_span!("session", stream = %header.stream, %service, %user);
    let dialed = dial_service(&state, &header)
        .instrument(span.clone())
        .await?;
    // On disk before the client hears the session is open; if it cannot
    // be recorded, the session does not happen (dropping the streams
    // closes them at the connector).
    state
        .audit
        .append(&Event::StreamOpened {
            stream: header.stream.clone(),
            service: service.clone(),
            user: user.clone(),
            connector: dialed.connector.clone(),
            client: peer.to_string(),
        })
        .await?;
    Metrics::add(&state.metrics.sessions_opened, 1);
    // Set up: the stream is bridged to the service and on the record.
    state.metrics.observe_session_setup(started.elapsed());
    span.in_scope(|| tracing::info!(connector = %dialed.connector, %peer, "session opened"));
    let recorder = Recorder {
        audit: state.audit.clone(),
        metrics: state.metrics.clone(),
        user,
        service,
        stream: header.stream,
        record_input: policy.records_input(&header.service),
        seen: slot.seen().clone(),
    };
    let ws = ws.take().ok_or_else(|| {
        ApiErr(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the session's socket was already used".into(),
        )
    })?;
    Ok(upgrade(&state, ws, query, dialed, recorder, slot, span))
}

/// Dials a connector serving `header.service` (see [`dial`]); a 503 when
/// none is online, 404 when the service is unknown, 502 with the reason
/// when none took the stream.
async fn dial_service(state: &AppState, header: &StreamHeader) -> Result<Dialed, ApiErr> {
    let service = &header.service;
    let candidates = state.registry.candidates(service);
    if candidates.is_empty() {
        return Err(if state.store.service_known(service).await? {
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
    // Try the live connections in turn: one that died a moment ago fails
    // fast, and the next takes the session. A refusal is the connector's
    // answer and final.
    dial(&candidates, header, &state.metrics)
        .await
        .map_err(|last| {
            Metrics::add(&state.metrics.sessions_refused, 1);
            let reason = last.map(|e| e.to_string()).unwrap_or_default();
            tracing::warn!(%reason, "session refused");
            ApiErr(StatusCode::BAD_GATEWAY, reason)
        })
}

/// Upgrades to the session's WebSocket: sends [`Control::Opened`] when the
/// client asked for it, runs the pipe until both directions are done, and
/// records the stream's end. Tracked, so the relay's shutdown can wait
/// for open sessions.
fn upgrade(
    state: &AppState,
    ws: WebSocketUpgrade,
    query: SessionQuery,
    dialed: Dialed,
    recorder: Recorder,
    slot: SessionSlot,
    span: tracing::Span,
) -> Response {
    let Dialed {
        connector,
        host_keys,
        send,
        recv,
    } = dialed;
    let metrics = state.metrics.clone();
    let sessions = state.sessions.clone();
    let audit = state.audit.clone();
    let opened = std::time::Instant::now();
    // The client learns whether its keystrokes are kept, so it sends
    // none when they are not (the relay drops any that come anyway).
    let hello = (query.opened == Some(1)).then_some(Control::Opened {
        connector,
        host_keys,
        record_input: recorder.record_input,
    });
    ws.max_message_size(MAX_WS_MESSAGE_LEN)
        .max_frame_size(MAX_WS_MESSAGE_LEN)
        .on_upgrade(move |socket| {
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
                    let (stream, service, user) = (
                        recorder.stream.clone(),
                        recorder.service.clone(),
                        recorder.user.clone(),
                    );
                    metrics.sessions_active.inc();
                    let events = recorder.into_client_events();
                    let (up, down) = pipe(socket, send, recv, &metrics, &slot, events).await;
                    drop(slot);
                    metrics.sessions_active.dec();
                    tracing::info!(bytes_up = up, bytes_down = down, "session closed");
                    let closed = Event::StreamClosed {
                        stream,
                        service,
                        user,
                        bytes_up: up,
                        bytes_down: down,
                        millis: opened.elapsed().as_millis() as u64,
                    };
                    if let Err(e) = audit.append(&closed).await {
                        tracing::error!(error = %e, "audit log failed");
                    }
                }
                .instrument(span),
            )
        })
}
