//! The tunnel over TCP: TLS 1.3 (the same certificates, client
//! certificate and ALPN as QUIC's handshake) carrying HTTP/2 (RFC 9113),
//! whose streams carry the tunnel's streams.
//!
//! Why HTTP/2: it is the multiplexer cloudflared falls back to for the same
//! reason, and the `h2` crate is hyper's own, already in the relay's tree
//! and hardened against the known HTTP/2 floods (rapid reset, CONTINUATION,
//! settings and ping floods). It gives each stream what QUIC gives it and a
//! home-made multiplexer would have to rebuild: per-stream and per-connection
//! flow control (RFC 9113 §5.2), a clean end (`END_STREAM`), an abort with a
//! code (RST_STREAM, §6.4), a cap on concurrent streams (§5.1.2), and PING
//! (§6.7) for liveness. yamux has no reset codes; WebSocket would need a
//! multiplexer on top.
//!
//! Roles are reversed, as in cloudflared: the relay, which opens the
//! session streams, is the HTTP/2 *client*; the connector is the server.
//! Every stream is a `POST` to [`STREAM_PATH`] answered at once with `200`;
//! the bytes are the request's and the response's DATA frames. The relay
//! closes a connection with a code and a reason by opening one more stream,
//! to [`CLOSE_PATH`], carrying them in its headers (HTTP/2's GOAWAY carries
//! only an error code); the connector closes with a GOAWAY whose error code
//! is the tunnel's [`Code`].
//!
//! Liveness: each side sends a PING every [`KEEP_ALIVE`] and drops the
//! connection when one is unanswered for [`TCP_IDLE_TIMEOUT`], as QUIC's
//! idle timeout does (longer: a PING waits behind what the socket already
//! holds, which on a slow uplink during a bulk upload is many seconds).
//!
//! A connection ends when [`Connection::close`] is called, when the peer
//! closes it or goes silent, and when the last handle to it is dropped.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf as _, Bytes};
use h2::{Ping, PingPong, Reason};
use rustls::pki_types::{CertificateDer, ServerName};
use sallyport_proto::limits::MAX_REASON_LEN;
use sallyport_proto::tunnel::transport::{
    CONNECTION_WINDOW_BYTES, KEEP_ALIVE, MAX_SESSIONS_PER_CONNECTION, STREAM_WINDOW_BYTES,
};
use sallyport_proto::tunnel::{Code, ALPN};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_util::task::TaskTracker;

use super::{Closed, Connection, RecvStream, SendStream, StreamError};

/// Path of a stream that carries a session (or the control stream).
pub const STREAM_PATH: &str = "/stream";
/// Path of the relay's closing stream: its headers carry the code and reason.
pub const CLOSE_PATH: &str = "/close";
/// Header of the closing stream with the [`Code`] number.
pub const CLOSE_CODE_HEADER: &str = "sallyport-close-code";
/// Header of the closing stream with the reason (at most [`MAX_REASON_LEN`]
/// bytes, percent-free visible ASCII; other bytes become `?`).
pub const CLOSE_REASON_HEADER: &str = "sallyport-close-reason";

/// Largest header block either side accepts, in bytes (RFC 9113 §6.5.2,
/// `SETTINGS_MAX_HEADER_LIST_SIZE`): the tunnel's headers are a few dozen
/// bytes, the close reason at most [`MAX_REASON_LEN`].
pub const MAX_HEADER_LIST_BYTES: u32 = 8 * 1024;
/// Largest DATA frame either side accepts, in bytes (RFC 9113 §4.2,
/// `SETTINGS_MAX_FRAME_SIZE`): larger than the 16 KiB default, so bulk
/// data costs fewer frame headers and wake-ups.
pub const MAX_FRAME_BYTES: u32 = 64 * 1024;
/// Bytes one stream may have queued for sending beyond what flow control
/// lets out: bounds the memory a slow peer can make this side hold.
pub const MAX_SEND_BUFFER_BYTES: usize = 1024 * 1024;
/// Streams the relay opened that the connector has not yet taken up; more
/// are refused (RST_STREAM `REFUSED_STREAM`) rather than queued.
pub const ACCEPT_QUEUE: usize = 64;
/// How long a closing side keeps the connection to deliver its close (the
/// relay's close stream, the connector's GOAWAY) before dropping it.
pub const CLOSE_LINGER: Duration = Duration::from_secs(1);
/// How long a stream this side no longer reads is still drained (its
/// DATA discarded) so that what this side sent on it is delivered: HTTP/2
/// resets a stream whose handles are all gone before both ends finished,
/// and a reset drops the data still queued. QUIC keeps a finished stream's
/// data until it is acknowledged; this is the nearest HTTP/2 has.
pub const DRAIN_LINGER: Duration = Duration::from_secs(10);
/// How long a PING may go unanswered before the connection counts as
/// dead: QUIC's [`IDLE_TIMEOUT`](sallyport_proto::tunnel::transport::IDLE_TIMEOUT) is 10 s, but QUIC's probes do not queue
/// behind megabytes of data in a socket buffer.
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest piece one write hands to HTTP/2 at a time, in bytes.
const WRITE_CHUNK_BYTES: usize = 256 * 1024;

/// A tunnel connection over TCP + TLS + HTTP/2. Clones are handles to the
/// same connection; it ends when [`Connection::close`] is called or the
/// peer closes it or goes silent (not when the handles are dropped: its
/// task holds it until then).
#[derive(Clone)]
pub struct TcpConnection {
    handle: Arc<Handle>,
}

/// What every clone of a [`TcpConnection`] shares: when the last goes, the
/// connection closes (its driver task and streams hold only [`Shared`]).
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        request_close(&self.shared, Code::Done, "");
    }
}

fn request_close(shared: &Shared, code: Code, reason: &str) {
    shared.close.send_if_modified(|c| {
        if c.is_some() {
            return false;
        }
        *c = Some((code, reason.to_owned()));
        true
    });
}

impl TcpConnection {
    fn new(shared: Arc<Shared>) -> Self {
        Self {
            handle: Arc::new(Handle { shared }),
        }
    }
}

struct Shared {
    remote: SocketAddr,
    peer_cert: Option<CertificateDer<'static>>,
    /// Why it ended: set once, by the driver or by `close`.
    state: watch::Sender<Option<Closed>>,
    /// A close asked for by this side, for the driver to carry out.
    close: watch::Sender<Option<(Code, String)>>,
    role: Role,
}

enum Role {
    /// The relay: opens streams.
    Client(h2::client::SendRequest<Bytes>),
    /// The connector: takes the streams the relay opens.
    Server(tokio::sync::Mutex<mpsc::Receiver<Accepted>>),
}

type Accepted = (
    http::Request<h2::RecvStream>,
    h2::server::SendResponse<Bytes>,
);

impl Shared {
    fn set(&self, closed: Closed) {
        self.state.send_if_modified(|s| {
            if s.is_some() {
                return false;
            }
            *s = Some(closed);
            true
        });
    }

    fn closed_or(&self, fallback: impl FnOnce() -> Closed) -> Closed {
        self.state.borrow().clone().unwrap_or_else(fallback)
    }

    fn stream_error(&self, e: h2::Error) -> StreamError {
        if e.is_reset() && e.is_remote() {
            if let Some(reason) = e.reason() {
                return StreamError::Reset(u32::from(reason).into());
            }
        }
        match self.state.borrow().clone() {
            Some(closed) => StreamError::Connection(closed),
            None if e.is_go_away() || e.is_io() => StreamError::Connection(connection_error(e)),
            None => StreamError::Other(e.to_string()),
        }
    }
}

/// Why a whole HTTP/2 connection ended, from its error. A GOAWAY's code
/// is HTTP/2's (RFC 9113 §7), not the tunnel's: only NO_ERROR reads as a
/// normal close; the relay's own codes come on its close stream.
fn connection_error(e: h2::Error) -> Closed {
    if e.is_go_away() && e.is_remote() {
        return match e.reason() {
            Some(Reason::NO_ERROR) | None => Closed::ByPeer {
                code: Code::Done.code().into(),
                reason: String::new(),
            },
            Some(reason) => Closed::Lost(format!("the peer sent GOAWAY ({reason:?})")),
        };
    }
    match e.get_io() {
        Some(io) => Closed::Lost(io.to_string()),
        None => Closed::Lost(e.to_string()),
    }
}

fn client_builder() -> h2::client::Builder {
    let mut b = h2::client::Builder::new();
    b.initial_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .max_header_list_size(MAX_HEADER_LIST_BYTES)
        .max_send_buffer_size(MAX_SEND_BUFFER_BYTES)
        .enable_push(false);
    b
}

fn server_builder() -> h2::server::Builder {
    let mut b = h2::server::Builder::new();
    b.initial_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .max_header_list_size(MAX_HEADER_LIST_BYTES)
        .max_send_buffer_size(MAX_SEND_BUFFER_BYTES)
        .max_concurrent_streams(MAX_SESSIONS_PER_CONNECTION);
    b
}

/// The relay's side: takes a TLS connection whose handshake chose [`ALPN`]
/// and starts HTTP/2 on it as the client. `peer_cert` is the connector's
/// certificate, if it presented one. The task that drives the connection
/// is tracked by `drivers`: waiting for it after a close is waiting until
/// what was queued has gone out (bounded by [`DRAIN_LINGER`]).
///
/// # Errors
/// The HTTP/2 handshake failed (the text says why).
pub async fn client<T>(
    io: T,
    remote: SocketAddr,
    peer_cert: Option<CertificateDer<'static>>,
    drivers: &TaskTracker,
) -> Result<Connection, String>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send_request, conn) = client_builder()
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|e| format!("HTTP/2 handshake failed: {e}"))?;
    let shared = Arc::new(Shared {
        remote,
        peer_cert,
        state: watch::Sender::new(None),
        close: watch::Sender::new(None),
        role: Role::Client(send_request.clone()),
    });
    drivers.spawn(drive_client(conn, send_request, shared.clone()));
    Ok(Connection::Tcp(TcpConnection::new(shared)))
}

/// The connector's side: connects to `addr` over TCP, makes the TLS
/// handshake with `tls` (whose ALPN must include [`ALPN`]) for `server_name`,
/// and serves HTTP/2 on it. Nagle is off: session bytes are small
/// interactive writes. The connection's task is tracked by `drivers`, as
/// in [`client`].
///
/// # Errors
/// TCP, TLS or HTTP/2 failed, or the listener does not speak the tunnel's
/// ALPN (the text says which).
pub async fn connect(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    server_name: &str,
    drivers: &TaskTracker,
) -> Result<Connection, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("TCP connect failed: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(server_name.to_owned()).map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    if tls.get_ref().1.alpn_protocol() != Some(ALPN) {
        return Err(format!(
            "{addr} does not speak the tunnel protocol over TCP (no ALPN {})",
            String::from_utf8_lossy(ALPN)
        ));
    }
    let conn = server_builder()
        .handshake::<_, Bytes>(tls)
        .await
        .map_err(|e| format!("HTTP/2 handshake failed: {e}"))?;
    let (tx, rx) = mpsc::channel(ACCEPT_QUEUE);
    let shared = Arc::new(Shared {
        remote: addr,
        peer_cert: None,
        state: watch::Sender::new(None),
        close: watch::Sender::new(None),
        role: Role::Server(tokio::sync::Mutex::new(rx)),
    });
    drivers.spawn(drive_server(conn, tx, shared.clone()));
    Ok(Connection::Tcp(TcpConnection::new(shared)))
}

/// Keep-alive bookkeeping shared by both drivers.
struct KeepAlive {
    pings: Option<PingPong>,
    sent: Option<Instant>,
}

impl KeepAlive {
    /// On each tick: false when the last ping went unanswered too long.
    fn tick(&mut self) -> bool {
        match self.sent {
            Some(at) => at.elapsed() < TCP_IDLE_TIMEOUT,
            None => {
                if let Some(p) = self.pings.as_mut() {
                    if p.send_ping(Ping::opaque()).is_ok() {
                        self.sent = Some(Instant::now());
                    }
                }
                true
            }
        }
    }

    fn poll_pong(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match (self.sent, self.pings.as_mut()) {
            (Some(_), Some(p)) => match ready!(p.poll_pong(cx)) {
                Ok(_) => {
                    self.sent = None;
                    Poll::Ready(())
                }
                // The connection's own future reports the failure.
                Err(_) => Poll::Pending,
            },
            _ => Poll::Pending,
        }
    }
}

fn unanswered() -> Closed {
    Closed::Lost(format!(
        "no answer to keep-alive pings for {}s",
        TCP_IDLE_TIMEOUT.as_secs()
    ))
}

/// What both drivers start from: the keep-alive state, its ticker, and the
/// close requests (one made before the task first ran included).
fn driver_state(
    pings: Option<PingPong>,
    shared: &Shared,
) -> (
    KeepAlive,
    tokio::time::Interval,
    watch::Receiver<Option<(Code, String)>>,
) {
    let mut close = shared.close.subscribe();
    close.mark_changed();
    (
        KeepAlive { pings, sent: None },
        tokio::time::interval(KEEP_ALIVE),
        close,
    )
}

async fn drive_client<T>(
    conn: h2::client::Connection<T, Bytes>,
    mut send_request: h2::client::SendRequest<Bytes>,
    shared: Arc<Shared>,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut conn = conn;
    let (mut keep, mut ticker, mut close) = driver_state(conn.ping_pong(), &shared);
    let ended = loop {
        tokio::select! {
            r = &mut conn => break match r {
                Ok(()) => Closed::ByPeer { code: Code::Done.code().into(), reason: String::new() },
                Err(e) => connection_error(e),
            },
            _ = ticker.tick() => if !keep.tick() { break unanswered() },
            () = std::future::poll_fn(|cx| keep.poll_pong(cx)) => {}
            _ = close.changed() => {
                let Some((code, reason)) = close.borrow_and_update().clone() else { continue };
                // Streams fail as closed by this side from here on.
                shared.set(Closed::Locally);
                let request = http::Request::post(format!("https://tunnel{CLOSE_PATH}"))
                    .header(CLOSE_CODE_HEADER, code.code())
                    .header(CLOSE_REASON_HEADER, header_safe(&reason))
                    .body(());
                if let Ok(request) = request {
                    let _ = send_request.send_request(request, true);
                }
                // Until the connector hangs up on it, or briefly.
                let _ = tokio::time::timeout(CLOSE_LINGER, &mut conn).await;
                break Closed::Locally;
            }
        }
    };
    shared.set(ended);
}

async fn drive_server<T>(
    mut conn: h2::server::Connection<T, Bytes>,
    accepted: mpsc::Sender<Accepted>,
    shared: Arc<Shared>,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut keep, mut ticker, mut close) = driver_state(conn.ping_pong(), &shared);
    let ended = loop {
        tokio::select! {
            next = conn.accept() => match next {
                Some(Ok((request, mut respond))) => {
                    if request.uri().path() == CLOSE_PATH {
                        break closed_by_relay(request.headers());
                    }
                    if request.uri().path() != STREAM_PATH {
                        respond.send_reset(Reason::REFUSED_STREAM);
                        continue;
                    }
                    if let Err(mpsc::error::TrySendError::Full((_, mut respond))) =
                        accepted.try_send((request, respond))
                    {
                        respond.send_reset(Reason::REFUSED_STREAM);
                    }
                }
                Some(Err(e)) => break connection_error(e),
                None => break Closed::ByPeer { code: Code::Done.code().into(), reason: String::new() },
            },
            _ = ticker.tick() => if !keep.tick() { break unanswered() },
            () = std::future::poll_fn(|cx| keep.poll_pong(cx)) => {}
            _ = close.changed() => {
                let Some((code, _)) = close.borrow_and_update().clone() else { continue };
                shared.set(Closed::Locally);
                // A normal close comes after the sessions ended: what they
                // sent last may still be queued, so it goes out first (a
                // GOAWAY that lets open streams finish). Any other close
                // is abrupt.
                let linger = if code == Code::Done {
                    conn.graceful_shutdown();
                    DRAIN_LINGER
                } else {
                    conn.abrupt_shutdown(Reason::from(code.code()));
                    CLOSE_LINGER
                };
                let _ = tokio::time::timeout(
                    linger,
                    std::future::poll_fn(|cx| conn.poll_closed(cx)),
                )
                .await;
                break Closed::Locally;
            }
        }
    };
    shared.set(ended);
}

/// The code and reason of the relay's close stream.
fn closed_by_relay(headers: &http::HeaderMap) -> Closed {
    let code = headers
        .get(CLOSE_CODE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(Code::Done.code().into());
    let reason = headers
        .get(CLOSE_REASON_HEADER)
        .map(|v| String::from_utf8_lossy(v.as_bytes()))
        .unwrap_or_default();
    Closed::ByPeer {
        code,
        reason: super::truncate(&reason, MAX_REASON_LEN).to_owned(),
    }
}

/// `reason` as a header value: visible ASCII and spaces kept, anything else `?`.
fn header_safe(reason: &str) -> String {
    super::truncate(reason, MAX_REASON_LEN)
        .chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

impl TcpConnection {
    pub(super) fn remote_address(&self) -> SocketAddr {
        self.handle.shared.remote
    }

    pub(super) fn peer_certificate(&self) -> Option<CertificateDer<'static>> {
        self.handle.shared.peer_cert.clone()
    }

    pub(super) async fn open_stream(&self) -> Result<(SendStream, RecvStream), Closed> {
        let Role::Client(send_request) = &self.handle.shared.role else {
            return Err(Closed::Lost(
                "the connector side of a TCP tunnel opens no streams".into(),
            ));
        };
        if let Some(closed) = self.close_reason() {
            return Err(closed);
        }
        let lost = |e: h2::Error| self.handle.shared.closed_or(|| connection_error(e));
        let mut ready = send_request.clone().ready().await.map_err(lost)?;
        let request = http::Request::post(format!("https://tunnel{STREAM_PATH}"))
            .body(())
            .map_err(|e| Closed::Lost(e.to_string()))?;
        let (response, send) = ready.send_request(request, false).map_err(lost)?;
        Ok((
            SendStream::Tcp(H2Send {
                inner: send,
                shared: self.handle.shared.clone(),
                finished: false,
            }),
            RecvStream::Tcp(H2Recv {
                state: RecvState::Response(response),
                buf: Bytes::new(),
                shared: self.handle.shared.clone(),
            }),
        ))
    }

    pub(super) async fn accept_stream(&self) -> Result<(SendStream, RecvStream), Closed> {
        let Role::Server(accepted) = &self.handle.shared.role else {
            // The relay's side takes no streams: wait for the end.
            return Err(self.closed().await);
        };
        let mut accepted = accepted.lock().await;
        loop {
            let next = tokio::select! {
                next = accepted.recv() => next,
                closed = self.closed() => return Err(closed),
            };
            let Some((request, mut respond)) = next else {
                return Err(self
                    .handle
                    .shared
                    .closed_or(|| Closed::Lost("closed".into())));
            };
            let response = http::Response::new(());
            let Ok(send) = respond.send_response(response, false) else {
                continue;
            };
            return Ok((
                SendStream::Tcp(H2Send {
                    inner: send,
                    shared: self.handle.shared.clone(),
                    finished: false,
                }),
                RecvStream::Tcp(H2Recv {
                    state: RecvState::Body(request.into_body()),
                    buf: Bytes::new(),
                    shared: self.handle.shared.clone(),
                }),
            ));
        }
    }

    pub(super) fn close(&self, code: Code, reason: &str) {
        request_close(&self.handle.shared, code, reason);
    }

    pub(super) fn close_reason(&self) -> Option<Closed> {
        self.handle.shared.state.borrow().clone()
    }

    pub(super) async fn closed(&self) -> Closed {
        let mut state = self.handle.shared.state.subscribe();
        let closed = match state.wait_for(Option::is_some).await {
            Ok(s) => s.clone().unwrap_or(Closed::Locally),
            Err(_) => Closed::Locally,
        };
        closed
    }
}

/// The sending half of an HTTP/2 stream; see [`SendStream`].
pub struct H2Send {
    inner: h2::SendStream<Bytes>,
    shared: Arc<Shared>,
    finished: bool,
}

impl H2Send {
    pub(super) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<Result<usize, StreamError>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let want = buf.len().min(WRITE_CHUNK_BYTES);
        self.inner.reserve_capacity(want);
        // Zero after the peer shrank its windows: poll again, which either
        // finds capacity or registers for the next increase.
        let mut capacity = self.inner.poll_capacity(cx);
        while let Poll::Ready(Some(Ok(0))) = capacity {
            capacity = self.inner.poll_capacity(cx);
        }
        match ready!(capacity) {
            Some(Ok(n)) => {
                let n = n.min(want);
                self.inner
                    .send_data(Bytes::copy_from_slice(&buf[..n]), false)
                    .map_err(|e| self.shared.stream_error(e))?;
                Poll::Ready(Ok(n))
            }
            Some(Err(e)) => Poll::Ready(Err(self.shared.stream_error(e))),
            // No more sending on this stream: the peer reset it, or it ended.
            None => Poll::Ready(Err(match self.inner.poll_reset(cx) {
                Poll::Ready(Ok(reason)) => StreamError::Reset(u32::from(reason).into()),
                Poll::Ready(Err(e)) => self.shared.stream_error(e),
                Poll::Pending => StreamError::Other("the stream has ended".into()),
            })),
        }
    }

    pub(super) async fn write_all(&mut self, mut buf: &[u8]) -> Result<(), StreamError> {
        while !buf.is_empty() {
            let n = std::future::poll_fn(|cx| self.poll_write(cx, buf)).await?;
            buf = &buf[n..];
        }
        Ok(())
    }

    pub(super) fn finish(&mut self) {
        if !std::mem::replace(&mut self.finished, true) {
            let _ = self.inner.send_data(Bytes::new(), true);
        }
    }

    pub(super) fn reset(&mut self, code: Code) {
        self.finished = true;
        self.inner.send_reset(Reason::from(code.code()));
    }
}

impl Drop for H2Send {
    /// As QUIC's does: a stream dropped unfinished ends cleanly after what
    /// was written (call [`SendStream::reset`] first to abort it).
    fn drop(&mut self) {
        self.finish();
    }
}

enum RecvState {
    /// The relay's side, until the connector's response headers arrive.
    Response(h2::client::ResponseFuture),
    /// Reading DATA frames.
    Body(h2::RecvStream),
    /// Ended, or stopped by this side.
    Done,
}

/// The receiving half of an HTTP/2 stream; see [`RecvStream`].
pub struct H2Recv {
    state: RecvState,
    /// What the last DATA frame left unread.
    buf: Bytes,
    shared: Arc<Shared>,
}

impl H2Recv {
    pub(super) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<Result<Option<usize>, StreamError>> {
        loop {
            if !self.buf.is_empty() {
                let n = out.len().min(self.buf.len());
                out[..n].copy_from_slice(&self.buf[..n]);
                self.buf.advance(n);
                return Poll::Ready(Ok(Some(n)));
            }
            match &mut self.state {
                RecvState::Response(response) => {
                    let response = ready!(Pin::new(response).poll(cx))
                        .map_err(|e| self.shared.stream_error(e))?;
                    if response.status() != http::StatusCode::OK {
                        self.state = RecvState::Done;
                        return Poll::Ready(Err(StreamError::Other(format!(
                            "the connector answered the stream with {}",
                            response.status()
                        ))));
                    }
                    self.state = RecvState::Body(response.into_body());
                }
                RecvState::Body(body) => match ready!(body.poll_data(cx)) {
                    Some(Ok(data)) => {
                        // Held here until read: one frame at most, so the
                        // window can open again at once.
                        let _ = body.flow_control().release_capacity(data.len());
                        self.buf = data;
                    }
                    Some(Err(e)) => return Poll::Ready(Err(self.shared.stream_error(e))),
                    None => {
                        self.state = RecvState::Done;
                        return Poll::Ready(Ok(None));
                    }
                },
                RecvState::Done => return Poll::Ready(Ok(None)),
            }
        }
    }

    /// Reads no more: what arrives is discarded (see [`DRAIN_LINGER`]).
    pub(super) fn stop(&mut self) {
        self.buf = Bytes::new();
        drain(std::mem::replace(&mut self.state, RecvState::Done));
    }
}

impl Drop for H2Recv {
    fn drop(&mut self) {
        drain(std::mem::replace(&mut self.state, RecvState::Done));
    }
}

/// Discards what still arrives on a stream this side stopped reading, for
/// at most [`DRAIN_LINGER`], so the stream ends cleanly and what this side
/// sent on it is not reset away.
fn drain(state: RecvState) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let body = async move {
        let mut body = match state {
            RecvState::Done => return,
            RecvState::Body(body) => body,
            RecvState::Response(response) => match response.await {
                Ok(response) => response.into_body(),
                Err(_) => return,
            },
        };
        while let Some(Ok(data)) = body.data().await {
            let _ = body.flow_control().release_capacity(data.len());
        }
    };
    runtime.spawn(async move {
        let _ = tokio::time::timeout(DRAIN_LINGER, body).await;
    });
}

use std::future::Future as _;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_survive_as_header_values() {
        let safe = header_safe("connector c1 was revoked\n\u{e9}");
        assert_eq!(safe, "connector c1 was revoked??");
        assert!(http::HeaderValue::from_str(&safe).is_ok());
        let mut headers = http::HeaderMap::new();
        headers.insert(CLOSE_CODE_HEADER, http::HeaderValue::from(3u32));
        headers.insert(CLOSE_REASON_HEADER, safe.parse().unwrap());
        assert_eq!(
            closed_by_relay(&headers),
            Closed::ByPeer {
                code: 3,
                reason: safe
            }
        );
    }
}
