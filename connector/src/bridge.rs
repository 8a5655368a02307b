//! One session: read the relay's stream header, check the service is one of
//! ours, connect to it, answer, then copy bytes both ways to completion,
//! passing each side's end-of-stream on to the other.

use std::collections::BTreeMap;
use std::time::Duration;

use sallyport_common::transport::{RecvStream, SendStream};
use sallyport_proto::io::{write_frame, FrameReader, ReadError};
use sallyport_proto::tunnel::{Code, StreamHeader, StreamReply};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::metrics::Metrics;

/// How long the relay may take to send the stream header.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting to the local service may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Copy buffer per direction per session.
pub const COPY_BUF: usize = 64 * 1024;
/// How long a finished session waits for the relay to acknowledge its last bytes.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Service name → `host:port`, exactly as configured; nothing else is reachable.
pub type Services = BTreeMap<String, String>;

/// Serves one stream (one session's bytes), counted in `metrics`.
pub async fn serve(
    connector: &str,
    services: &Services,
    metrics: &Metrics,
    mut send: SendStream,
    recv: RecvStream,
) {
    // The reader stops at the header's last byte; the session's bytes stay
    // in the stream for `copy_both`.
    let mut reader = FrameReader::new(recv);
    let header = tokio::time::timeout(HEADER_TIMEOUT, reader.read_frame::<StreamHeader>()).await;
    let mut recv = reader.into_inner();
    let header = match header {
        Ok(Ok(h)) => h,
        Ok(Err(ReadError::Closed)) => return,
        Ok(Err(e)) => {
            metrics.sessions_refused.inc();
            return refuse(&mut send, &mut recv, format!("bad stream header: {e}")).await;
        }
        Err(_) => {
            metrics.sessions_refused.inc();
            return refuse(&mut send, &mut recv, "no stream header in time".into()).await;
        }
    };
    let span = tracing::info_span!("stream", stream = %header.stream, service = %header.service, user = %header.user);
    connect_and_copy(connector, services, metrics, header, send, recv)
        .instrument(span)
        .await
}

/// The rest of a session once its header is read, inside its tracing span.
async fn connect_and_copy(
    connector: &str,
    services: &Services,
    metrics: &Metrics,
    header: StreamHeader,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    // Relays send the canonical (lowercase) name; older ones may not.
    let Some(target) = services.get(&header.service.to_ascii_lowercase()) else {
        tracing::warn!("refused: service not exposed here");
        metrics.sessions_refused.inc();
        return refuse(
            &mut send,
            &mut recv,
            format!(
                "service {:?} is not exposed by connector {connector}",
                header.service
            ),
        )
        .await;
    };
    let started = std::time::Instant::now();
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target.as_str())).await
    {
        Ok(Ok(tcp)) => {
            metrics.observe_service_connect(started.elapsed());
            tcp
        }
        Ok(Err(e)) => {
            metrics.sessions_refused.inc();
            tracing::warn!(%target, error = %e, "refused: service unreachable");
            let reason = format!("cannot reach service {:?} at {target}: {e}", header.service);
            return refuse(&mut send, &mut recv, reason).await;
        }
        Err(_) => {
            metrics.sessions_refused.inc();
            let reason = format!(
                "cannot reach service {:?} at {target}: timed out",
                header.service
            );
            return refuse(&mut send, &mut recv, reason).await;
        }
    };
    let _ = tcp.set_nodelay(true);
    if write_frame(&mut send, &StreamReply::Accept).await.is_err() {
        return;
    }
    tracing::info!(client = %header.client_addr, %target, "session accepted");
    metrics.sessions_opened.inc();
    metrics.sessions_active.inc();
    let (up, down) = copy_both(tcp, send, recv, metrics).await;
    metrics.sessions_active.dec();
    tracing::info!(
        bytes_to_service = up,
        bytes_from_service = down,
        "session ended"
    );
}

async fn refuse(send: &mut SendStream, recv: &mut RecvStream, reason: String) {
    let _ = write_frame(send, &StreamReply::Refuse { reason }).await;
    send.finish();
    recv.stop(Code::Done);
}

/// Copies relay → service and service → relay until both are done. A clean
/// end of one direction is passed on as a half-close; a failure of either
/// side ends both.
async fn copy_both(
    tcp: TcpStream,
    mut send: SendStream,
    mut recv: RecvStream,
    metrics: &Metrics,
) -> (u64, u64) {
    let (mut tcp_r, mut tcp_w) = tcp.into_split();
    let abort = CancellationToken::new();
    let to_service = async {
        let mut n = 0u64;
        // `read` gathers every chunk already received into one buffer, so a
        // burst of QUIC packets becomes one TCP write, not one per packet.
        let mut buf = vec![0u8; COPY_BUF];
        loop {
            let read = tokio::select! {
                r = recv.read(&mut buf) => r,
                _ = abort.cancelled() => break,
            };
            match read {
                Ok(Some(k)) => {
                    if tcp_w.write_all(&buf[..k]).await.is_err() {
                        abort.cancel();
                        break;
                    }
                    n += k as u64;
                    metrics.bytes_to_service.inc_by(k as u64);
                }
                Ok(None) => {
                    let _ = tcp_w.shutdown().await;
                    break;
                }
                Err(_) => {
                    abort.cancel();
                    break;
                }
            }
        }
        if abort.is_cancelled() {
            recv.stop(Code::ServiceFailed);
        }
        n
    };
    let from_service = async {
        let mut n = 0u64;
        let mut buf = vec![0u8; COPY_BUF];
        loop {
            let read = tokio::select! {
                r = tcp_r.read(&mut buf) => r,
                _ = abort.cancelled() => break,
            };
            match read {
                Ok(0) => {
                    send.finish();
                    // Wait until the relay has everything: closing the
                    // connection (on drain) would discard what is in flight.
                    let _ = tokio::time::timeout(FLUSH_TIMEOUT, send.stopped()).await;
                    break;
                }
                Ok(k) => {
                    if send.write_all(&buf[..k]).await.is_err() {
                        abort.cancel();
                        break;
                    }
                    n += k as u64;
                    metrics.bytes_to_relay.inc_by(k as u64);
                }
                Err(_) => {
                    abort.cancel();
                    break;
                }
            }
        }
        if abort.is_cancelled() {
            send.reset(Code::ServiceFailed);
        }
        n
    };
    tokio::join!(to_service, from_service)
}
