//! The data path of one session: bytes between the client's WebSocket and
//! the connector's QUIC stream, both directions copied to completion.
//!
//! The web layer opens the stream and upgrades the socket (`web::ws`); this
//! file only moves bytes, and knows nothing of policy or the audit log:
//! - client → connector: binary messages become stream writes; the
//!   client's [`Control::Eof`] finishes the stream (half-close: the other
//!   direction keeps flowing, so `ssh host cat < file` gets all its
//!   output);
//! - connector → client: each read of what has arrived (up to
//!   [`DOWNSTREAM_BUF`]) becomes one binary message; the stream's end
//!   becomes [`Control::Eof`], a reset a [`Control::Error`] with its reason;
//! - the relay pings every [`PING_INTERVAL`] and ends a session whose
//!   client sends nothing for [`CLIENT_IDLE_TIMEOUT`];
//! - backpressure: nothing is read from one side until the other took the
//!   last piece, so a slow side slows the other, with no buffer between.
//!
//! The client's event messages ([`Control::Event`]) are not data: the pipe
//! hands them, unread, to a [`Consumer`] through a bounded queue
//! ([`EventLink`]) and sends the client the acknowledgements it gets back.
//! The relay's consumer is the audit log's recorder
//! (`audit::recorder`).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures::{SinkExt as _, StreamExt as _};
use sallyport_common::transport::{Closed, RecvStream, SendStream, StreamError};
use sallyport_proto::client::{Control, SessionEvent};
use sallyport_proto::limits::MAX_WS_MESSAGE_LEN;
use sallyport_proto::tunnel::Code;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::live::SessionSlot;
use crate::metrics::Metrics;
use crate::web::session_limits;

/// Largest session message sent to a client: a whole burst from the
/// connector, within the WebSocket message limit.
const DOWNSTREAM_BUF: usize = 64 * 1024;
const _: () = assert!(DOWNSTREAM_BUF <= MAX_WS_MESSAGE_LEN);

/// How often the relay pings the client during a session.
pub const PING_INTERVAL: Duration = Duration::from_secs(15);
/// A client that sends nothing (not even a pong) for this long is gone: a
/// laptop asleep or a dropped NAT mapping must not hold a session forever.
pub const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(45);

/// A client's event message as it came ([`Control::Event`]'s fields),
/// passed on without being looked into.
#[derive(Debug)]
pub struct EventMessage {
    /// The client's terminal session id.
    pub session: String,
    /// The event's number in its session, from 1.
    pub seq: u64,
    /// Milliseconds since the session started, by the client's clock.
    pub t_ms: u64,
    /// What happened.
    pub event: SessionEvent,
}

/// An acknowledgement for the client: every event of `session` up to
/// `seq` is kept, so the client may forget them ([`Control::Ack`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The client's terminal session id.
    pub session: String,
    /// The last event of `session` kept.
    pub seq: u64,
}

/// Ends a session from outside the pipe's two directions (both at once),
/// optionally with a reason the client gets as a [`Control::Error`].
#[derive(Clone)]
pub struct SessionEnd {
    abort: CancellationToken,
    reason: Arc<OnceLock<String>>,
}

impl SessionEnd {
    /// Ends the session (no reason for the client).
    pub fn end(&self) {
        self.abort.cancel();
    }

    /// Ends the session and tells the client why (the first reason given
    /// is the one sent).
    pub fn end_with(&self, reason: String) {
        let _ = self.reason.set(reason);
        self.abort.cancel();
    }
}

/// The consumer's side of the pipe.
pub struct EventLink {
    /// The client's event messages, in the order they came; closed when
    /// the client's direction has finished. Bounded: a client that
    /// outruns the consumer waits (and its data with it).
    pub messages: mpsc::Receiver<EventMessage>,
    /// Acknowledgements to send, in order. Bounded like `messages`: a
    /// consumer should `try_send` and lose an acknowledgement rather than
    /// wait on a client that does not read (the client sends again).
    pub acks: mpsc::Sender<Ack>,
    /// Bytes carried both ways so far (SSH ciphertext, which is never
    /// shorter than the terminal data in it).
    pub carried: Arc<AtomicU64>,
    /// Ends the session.
    pub end: SessionEnd,
}

/// Whoever keeps a session's client events: runs beside the pipe from
/// the upgrade until `link.messages` is closed or it ends the session.
pub trait Consumer {
    /// Consumes the client's event messages. When it returns, the pipe
    /// refuses further messages (ending the session if the client sends
    /// one) and, once the data is done, closes the socket after the last
    /// acknowledgement.
    fn run(self, link: EventLink) -> impl Future<Output = ()> + Send;
}

/// How the pipe hands on a session's client events.
pub struct ClientEvents<A, C> {
    /// The bound of the queue of messages waiting for `consumer`, and of
    /// its acknowledgements waiting for the socket.
    pub queue: usize,
    /// Looks at each message as it arrives, before it is queued (a
    /// per-socket budget): `Err(reason)` ends the session with that reason.
    pub admit: A,
    /// Runs beside the pipe and consumes the queued messages.
    pub consumer: C,
}

/// Copies client → connector and connector → client until both directions
/// have finished (or either side fails), then closes the WebSocket. Returns
/// the byte counts each way. Ends early when the slot's sign-in ends.
pub async fn pipe<A, C>(
    socket: WebSocket,
    mut send: SendStream,
    mut recv: RecvStream,
    metrics: &Metrics,
    slot: &SessionSlot,
    events: ClientEvents<A, C>,
) -> (u64, u64)
where
    A: FnMut(&EventMessage) -> Result<(), String>,
    C: Consumer,
{
    let ClientEvents {
        queue,
        mut admit,
        consumer,
    } = events;
    let (mut ws_tx, mut ws_rx) = socket.split();
    let (events_tx, events_rx) = mpsc::channel::<EventMessage>(queue);
    // Bytes carried both ways (SSH ciphertext, which is never shorter than
    // the terminal data in it).
    let relayed = Arc::new(AtomicU64::new(0));
    let (acks_tx, mut acks_rx) = mpsc::channel::<Ack>(queue);
    // Cancelled when the session must end in both directions at once,
    // also by its sign-in ending.
    let abort = slot.signed_out().child_token();
    // Why the relay ended the session, for the client (set once).
    let end = SessionEnd {
        abort: abort.clone(),
        reason: Arc::new(OnceLock::new()),
    };
    // Cancelled when the connector → client direction has finished cleanly.
    let down_done = CancellationToken::new();
    let record = consumer.run(EventLink {
        messages: events_rx,
        acks: acks_tx,
        carried: relayed.clone(),
        end: end.clone(),
    });

    let upstream = async {
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
                    slot.seen().count_up(n);
                    Metrics::add(&metrics.bytes_to_connector, n);
                }
                Some(Ok(Message::Text(t))) => match Control::parse(t.as_str()) {
                    Ok(Control::Eof) if !eof => {
                        eof = true;
                        send.finish();
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
                        let message = EventMessage {
                            session,
                            seq,
                            t_ms,
                            event,
                        };
                        if let Err(reason) = admit(&message) {
                            end.end_with(reason);
                            break;
                        }
                        // Bounded: a client that outruns the consumer waits.
                        // Refused once the consumer has stopped (it ended
                        // the session).
                        if events_tx.send(message).await.is_err() {
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
            send.reset(Code::ClientGone);
        }
        drop(events_tx);
        bytes
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
                            if ws_tx.send(ack_message(ack)).await.is_err() {
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
                    slot.seen().count_down(n);
                    Metrics::add(&metrics.bytes_to_client, n);
                }
                // The relay is ending the session (sign-out, lock, an
                // admin's terminate): the tunnel's end that follows is not
                // the server's. No `eof`, or a client that closes its output
                // on it (`sallyport proxy`, whose ssh then kills it) would
                // never hear the reason sent last.
                Ok(None) if abort.is_cancelled() => break Ok(()),
                Ok(None) => {
                    let _ = ws_tx
                        .send(Message::Text(Control::Eof.to_text().into()))
                        .await;
                    down_done.cancel();
                    break Ok(());
                }
                // The relay is ending the session and has reset the stream
                // (on HTTP/2 that ends both directions): not the connector's
                // doing, and the relay's reason goes to the client below.
                Err(_) if abort.is_cancelled() => break Ok(()),
                Err(StreamError::Connection(Closed::Locally)) => {
                    // The relay itself closed the tunnel: at the end of its
                    // drain time, or revoking the connector.
                    abort.cancel();
                    break Err(
                        "the relay closed the connector's tunnel (shutting down, or the connector was revoked)"
                            .to_owned(),
                    );
                }
                Err(e) => {
                    abort.cancel();
                    break Err(format!("the connector ended the session: {}", e.describe()));
                }
            }
        };
        if abort.is_cancelled() {
            recv.stop(Code::ClientGone);
        }
        if let Err(reason) = outcome {
            let _ = ws_tx
                .send(Message::Text(Control::Error { reason }.to_text().into()))
                .await;
        }
        // The client reports its session's end after the data: keep
        // acknowledging until the consumer is done, so the client hears
        // its last events are safe before the socket closes.
        while acks_open && !abort.is_cancelled() {
            let ack = tokio::select! {
                a = acks_rx.recv() => a,
                _ = abort.cancelled() => None,
            };
            let Some(ack) = ack else { break };
            if ws_tx.send(ack_message(ack)).await.is_err() {
                break;
            }
        }
        (bytes, ws_tx)
    };

    let (up, (down, mut ws_tx), ()) = tokio::join!(upstream, downstream, record);
    if slot.signed_out().is_cancelled() {
        tracing::info!("the session's sign-in ended; session ended");
        let why = slot.end_reason().unwrap_or(session_limits::SIGNED_OUT);
        let _ = end.reason.set(why.to_owned());
    }
    if let Some(reason) = end.reason.get() {
        // Acknowledgements still queued go first (a refused event's among
        // them), so the client forgets what it must not send again.
        while let Ok(ack) = acks_rx.try_recv() {
            if ws_tx.send(ack_message(ack)).await.is_err() {
                break;
            }
        }
        let error = Control::Error {
            reason: reason.clone(),
        };
        let _ = ws_tx.send(Message::Text(error.to_text().into())).await;
    }
    let _ = ws_tx.send(Message::Close(None)).await;
    (up, down)
}

fn ack_message(ack: Ack) -> Message {
    let Ack { session, seq } = ack;
    Message::Text(Control::Ack { session, seq }.to_text().into())
}
