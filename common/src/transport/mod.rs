//! The tunnel's two transports behind one set of types.
//!
//! A connector reaches its relay over QUIC (UDP) when it can, and over TCP
//! with TLS and HTTP/2 when UDP is blocked ([`tcp`]). Both carry the same
//! things: one control stream per connection and one bidirectional stream
//! per session, each with its own flow control, a clean end (FIN,
//! `END_STREAM`), an abort with a [`Code`] (RESET_STREAM, RST_STREAM), and
//! a connection close with a code and a reason. The relay and the connector
//! are written against [`Connection`], [`SendStream`] and [`RecvStream`],
//! so every session feature (failover, revocation, drain, audit) behaves
//! the same whatever the transport.
//!
//! One asymmetry is inherent: on QUIC either side opens streams, on HTTP/2
//! only the client does, and the relay is the HTTP/2 client (it opens the
//! session streams, as cloudflared's edge does towards its connector). So
//! the control stream is opened by the connector on QUIC and by the relay
//! on TCP: [`Connection::open_control`] and [`Connection::accept_control`]
//! hide that.

pub mod tcp;

use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use rustls::pki_types::CertificateDer;
use sallyport_proto::tunnel::Code;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Which transport a tunnel connection uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// QUIC over UDP (RFC 9000), the default.
    Quic,
    /// TLS 1.3 over TCP with HTTP/2 (RFC 9113) multiplexing the streams:
    /// for networks that block UDP.
    Tcp,
}

impl Transport {
    /// Every transport, in order of preference.
    pub const ALL: [Transport; 2] = [Transport::Quic, Transport::Tcp];

    /// The name in flags, logs, `connector list` and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Transport::Quic => "quic",
            Transport::Tcp => "tcp",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// The peer closed it on purpose: a [`Code`] number and its reason
    /// (a QUIC application CONNECTION_CLOSE, RFC 9000 §19.19; on TCP the
    /// relay's close stream, or an HTTP/2 GOAWAY's error code).
    ByPeer {
        /// The code's number (see [`Code::from_code`]).
        code: u64,
        /// The peer's words, possibly empty.
        reason: String,
    },
    /// This side closed it.
    Locally,
    /// It failed: timed out, reset, refused, or broken by the peer.
    Lost(String),
}

impl Closed {
    /// The peer's code, when it closed the connection on purpose.
    pub fn peer_code(&self) -> Option<Code> {
        match self {
            Closed::ByPeer { code, .. } => Code::from_code(*code),
            _ => None,
        }
    }
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Closed::ByPeer { code, reason } => {
                let what = Code::from_code(*code).map_or("closed by the peer", |c| c.describe());
                if reason.is_empty() {
                    write!(f, "{what} (code {code})")
                } else {
                    write!(f, "{what} (code {code}): {reason}")
                }
            }
            Closed::Locally => f.write_str("closed by this side"),
            Closed::Lost(why) => write!(f, "connection lost: {why}"),
        }
    }
}

impl From<quinn::ConnectionError> for Closed {
    fn from(e: quinn::ConnectionError) -> Self {
        match e {
            quinn::ConnectionError::ApplicationClosed(c) => Closed::ByPeer {
                code: c.error_code.into_inner(),
                reason: String::from_utf8_lossy(&c.reason).into_owned(),
            },
            quinn::ConnectionError::LocallyClosed => Closed::Locally,
            other => Closed::Lost(other.to_string()),
        }
    }
}

/// Why a stream read or write failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The peer aborted the stream with this code (see [`Code::from_code`]).
    #[error("the peer reset the stream (code {0})")]
    Reset(u64),
    /// The connection ended.
    #[error("{0}")]
    Connection(Closed),
    /// Anything else (writing after the end, a protocol error).
    #[error("{0}")]
    Other(String),
}

impl StreamError {
    /// The words a person reads: the [`Code`]'s description for a reset.
    pub fn describe(&self) -> String {
        match self {
            StreamError::Reset(code) => Code::from_code(*code)
                .map(|c| c.describe().to_owned())
                .unwrap_or_else(|| self.to_string()),
            other => other.to_string(),
        }
    }
}

impl From<StreamError> for std::io::Error {
    fn from(e: StreamError) -> Self {
        let kind = match &e {
            StreamError::Reset(_) => std::io::ErrorKind::ConnectionReset,
            StreamError::Connection(_) => std::io::ErrorKind::ConnectionAborted,
            StreamError::Other(_) => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, e)
    }
}

impl From<quinn::ReadError> for StreamError {
    fn from(e: quinn::ReadError) -> Self {
        match e {
            quinn::ReadError::Reset(code) => StreamError::Reset(code.into_inner()),
            quinn::ReadError::ConnectionLost(c) => StreamError::Connection(c.into()),
            other => StreamError::Other(other.to_string()),
        }
    }
}

impl From<quinn::WriteError> for StreamError {
    fn from(e: quinn::WriteError) -> Self {
        match e {
            quinn::WriteError::Stopped(code) => StreamError::Reset(code.into_inner()),
            quinn::WriteError::ConnectionLost(c) => StreamError::Connection(c.into()),
            other => StreamError::Other(other.to_string()),
        }
    }
}

/// One live tunnel connection, either transport. Cheap to clone: clones
/// are handles to the same connection.
#[derive(Clone)]
pub enum Connection {
    /// A QUIC connection.
    Quic(quinn::Connection),
    /// TLS over TCP with HTTP/2.
    Tcp(tcp::TcpConnection),
}

impl Connection {
    /// The transport it runs on.
    pub fn transport(&self) -> Transport {
        match self {
            Connection::Quic(_) => Transport::Quic,
            Connection::Tcp(_) => Transport::Tcp,
        }
    }

    /// The peer's address now: QUIC follows a peer whose address changed
    /// (connection migration, RFC 9000 §9; a NAT that rebinds).
    pub fn remote_address(&self) -> SocketAddr {
        match self {
            Connection::Quic(c) => c.remote_address(),
            Connection::Tcp(c) => c.remote_address(),
        }
    }

    /// The first certificate the peer presented in the TLS handshake, if any.
    pub fn peer_certificate(&self) -> Option<CertificateDer<'static>> {
        match self {
            Connection::Quic(c) => c
                .peer_identity()?
                .downcast::<Vec<CertificateDer<'static>>>()
                .ok()?
                .first()
                .cloned(),
            Connection::Tcp(c) => c.peer_certificate(),
        }
    }

    /// Opens a stream for one session (relay side).
    pub async fn open_stream(&self) -> Result<(SendStream, RecvStream), Closed> {
        match self {
            Connection::Quic(c) => {
                let (s, r) = c.open_bi().await?;
                Ok((SendStream::Quic(s), RecvStream::Quic(r)))
            }
            Connection::Tcp(c) => c.open_stream().await,
        }
    }

    /// Waits for the next stream the relay opens (connector side).
    pub async fn accept_stream(&self) -> Result<(SendStream, RecvStream), Closed> {
        match self {
            Connection::Quic(c) => {
                let (s, r) = c.accept_bi().await?;
                Ok((SendStream::Quic(s), RecvStream::Quic(r)))
            }
            Connection::Tcp(c) => c.accept_stream().await,
        }
    }

    /// The connector's side of the control (or enrolment) stream: it opens
    /// it on QUIC; on TCP the relay opens it first, before any session.
    pub async fn open_control(&self) -> Result<(SendStream, RecvStream), Closed> {
        match self {
            Connection::Quic(_) => self.open_stream().await,
            Connection::Tcp(_) => self.accept_stream().await,
        }
    }

    /// The relay's side of the control (or enrolment) stream; see
    /// [`Connection::open_control`].
    pub async fn accept_control(&self) -> Result<(SendStream, RecvStream), Closed> {
        match self {
            Connection::Quic(_) => self.accept_stream().await,
            Connection::Tcp(_) => self.open_stream().await,
        }
    }

    /// Closes the connection with `code` and `reason` (at most
    /// [`sallyport_proto::limits::MAX_REASON_LEN`] bytes are sent): open
    /// streams fail at once, the peer learns both.
    pub fn close(&self, code: Code, reason: &str) {
        let reason = truncate(reason, sallyport_proto::limits::MAX_REASON_LEN);
        match self {
            Connection::Quic(c) => c.close(code.code().into(), reason.as_bytes()),
            Connection::Tcp(c) => c.close(code, reason),
        }
    }

    /// Why it ended, once it has.
    pub fn close_reason(&self) -> Option<Closed> {
        match self {
            Connection::Quic(c) => c.close_reason().map(Closed::from),
            Connection::Tcp(c) => c.close_reason(),
        }
    }

    /// Waits until it ends; says why.
    pub async fn closed(&self) -> Closed {
        match self {
            Connection::Quic(c) => c.closed().await.into(),
            Connection::Tcp(c) => c.closed().await,
        }
    }
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The sending half of a stream.
pub enum SendStream {
    /// A QUIC stream.
    Quic(quinn::SendStream),
    /// An HTTP/2 stream.
    Tcp(tcp::H2Send),
}

impl SendStream {
    /// Writes all of `buf`, waiting for flow control.
    pub async fn write_all(&mut self, buf: &[u8]) -> Result<(), StreamError> {
        match self {
            SendStream::Quic(s) => Ok(s.write_all(buf).await?),
            SendStream::Tcp(s) => s.write_all(buf).await,
        }
    }

    /// Writes `chunk` (without a copy on QUIC).
    pub async fn write_chunk(&mut self, chunk: Bytes) -> Result<(), StreamError> {
        match self {
            SendStream::Quic(s) => Ok(s.write_chunk(chunk).await?),
            SendStream::Tcp(s) => s.write_all(&chunk).await,
        }
    }

    /// Ends the stream cleanly (FIN, `END_STREAM`) after what was written.
    pub fn finish(&mut self) {
        match self {
            SendStream::Quic(s) => {
                let _ = s.finish();
            }
            SendStream::Tcp(s) => s.finish(),
        }
    }

    /// Aborts the stream with `code`: what was not yet delivered is dropped.
    pub fn reset(&mut self, code: Code) {
        match self {
            SendStream::Quic(s) => {
                let _ = s.reset(code.code().into());
            }
            SendStream::Tcp(s) => s.reset(code),
        }
    }

    /// After [`SendStream::finish`], waits until the peer has everything
    /// (QUIC: acknowledged). On TCP the bytes are in the kernel's hands
    /// once written, and a closing connection flushes them: returns at once.
    pub async fn stopped(&mut self) {
        if let SendStream::Quic(s) = self {
            let _ = s.stopped().await;
        }
    }
}

impl AsyncWrite for SendStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            SendStream::Quic(s) => AsyncWrite::poll_write(Pin::new(s), cx, buf),
            SendStream::Tcp(s) => s.poll_write(cx, buf).map_err(Into::into),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            SendStream::Quic(s) => AsyncWrite::poll_flush(Pin::new(s), cx),
            SendStream::Tcp(_) => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            SendStream::Quic(s) => AsyncWrite::poll_shutdown(Pin::new(s), cx),
            SendStream::Tcp(s) => {
                s.finish();
                Poll::Ready(Ok(()))
            }
        }
    }
}

/// The receiving half of a stream.
pub enum RecvStream {
    /// A QUIC stream.
    Quic(quinn::RecvStream),
    /// An HTTP/2 stream.
    Tcp(tcp::H2Recv),
}

impl RecvStream {
    /// Reads what has arrived into `buf`: `Ok(None)` at the stream's clean
    /// end, `Ok(Some(n))` with `n > 0` otherwise.
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<Option<usize>, StreamError> {
        match self {
            RecvStream::Quic(r) => Ok(r.read(buf).await?),
            RecvStream::Tcp(r) => std::future::poll_fn(|cx| r.poll_read(cx, buf)).await,
        }
    }

    /// Tells the peer to stop sending, with `code` (QUIC STOP_SENDING). On
    /// TCP, HTTP/2 has no such frame: the reset the same side sends on its
    /// sending half ends both directions, and this only stops reading.
    pub fn stop(&mut self, code: Code) {
        match self {
            RecvStream::Quic(r) => {
                let _ = r.stop(code.code().into());
            }
            RecvStream::Tcp(r) => r.stop(),
        }
    }
}

impl AsyncRead for RecvStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            RecvStream::Quic(r) => AsyncRead::poll_read(Pin::new(r), cx, buf),
            RecvStream::Tcp(r) => {
                let n = ready!(r.poll_read(cx, buf.initialize_unfilled()))?;
                if let Some(n) = n {
                    buf.advance(n);
                }
                Poll::Ready(Ok(()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_cut_at_a_character_boundary() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("aé", 2), "a");
        assert_eq!(truncate("aéb", 3), "aé");
    }

    #[test]
    fn a_reset_reads_as_its_code() {
        assert_eq!(
            StreamError::Reset(Code::ServiceFailed.code().into()).describe(),
            Code::ServiceFailed.describe()
        );
        let closed = Closed::ByPeer {
            code: Code::Revoked.code().into(),
            reason: "connector c1 was revoked".into(),
        };
        assert_eq!(closed.peer_code(), Some(Code::Revoked));
        assert!(closed.to_string().contains("connector c1 was revoked"));
    }
}
