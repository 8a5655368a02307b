//! Dialing a connector for one stream: open a stream (QUIC or HTTP/2) on
//! one of the connector's live connections, send the [`StreamHeader`], and
//! wait for its [`StreamReply`]. When a connector holds several
//! connections, one that died a moment ago fails within
//! [`FAILOVER_TIMEOUT`] and the next takes the stream; a refusal is the
//! connector's answer and final.
//!
//! This is the only place the relay opens streams, so the web layer asks
//! for "a stream to this service" and gets either the streams or the reason
//! there are none.

use std::time::Duration;

use sallyport_common::transport::{RecvStream, SendStream};
use sallyport_proto::io::{write_frame, FrameReader, ReadError};
use sallyport_proto::tunnel::{StreamHeader, StreamReply};

use super::LiveConn;
use crate::metrics::Metrics;

/// How long the connector may take to accept or refuse a stream (it
/// connects to the local service first).
pub const STREAM_OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for an answer before trying the next connection, when
/// there is one: a connector that died without closing its connection stays
/// in the registry until the QUIC idle timeout, and must not hold a stream
/// for all that time.
pub const FAILOVER_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a stream did not open on a connection.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The connector answered [`StreamReply::Refuse`] (say, its service is
    /// down): final, no other connection is tried.
    #[error("connector {connector} refused the session: {reason}")]
    Refused { connector: String, reason: String },
    /// The connection failed or gave no answer in time: the next one may.
    #[error("connector {connector} did not answer: {detail}")]
    Failed { connector: String, detail: String },
}

/// Opens a stream on `live`, sends `header` and waits for the connector's
/// answer.
pub async fn open_stream(
    live: &LiveConn,
    header: &StreamHeader,
    timeout: Duration,
) -> Result<(SendStream, RecvStream), OpenError> {
    let failed = |detail: String| OpenError::Failed {
        connector: live.connector.clone(),
        detail,
    };
    let attempt = async {
        let (mut send, recv) = live
            .conn
            .open_stream()
            .await
            .map_err(|e| failed(e.to_string()))?;
        write_frame(&mut send, header)
            .await
            .map_err(|e| failed(e.to_string()))?;
        // The reader stops at the reply's last byte: the service's first
        // bytes, right behind it, stay in the stream for the pipe.
        let mut recv = FrameReader::new(recv);
        match recv.read_frame::<StreamReply>().await {
            Ok(StreamReply::Accept) => Ok((send, recv.into_inner())),
            Ok(StreamReply::Refuse { reason }) => Err(OpenError::Refused {
                connector: live.connector.clone(),
                reason,
            }),
            Err(ReadError::Closed) => Err(failed("stream closed before an answer".into())),
            Err(e) => Err(failed(e.to_string())),
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| Err(failed(format!("no answer within {timeout:?}"))))
}

/// A stream the connector accepted.
pub struct Dialed {
    /// The connector that carries it.
    pub connector: String,
    /// That connector's host keys for the service (OpenSSH one-line form),
    /// as its connection announced them: the only ones its client accepts.
    pub host_keys: Vec<String>,
    /// Relay → connector.
    pub send: SendStream,
    /// Connector → relay.
    pub recv: RecvStream,
}

/// Tries `candidates` (live connections serving `header.service`, in the
/// registry's order) in turn until one accepts the stream. Each attempt
/// but the last waits [`FAILOVER_TIMEOUT`], the last
/// [`STREAM_OPEN_TIMEOUT`]. Errors: the connector's refusal (final, not
/// retried) or the last connection's failure; `None` when there were no
/// candidates. Counts every attempt in `streams_opened`. Logs in the
/// caller's span.
pub async fn dial(
    candidates: &[LiveConn],
    header: &StreamHeader,
    metrics: &Metrics,
) -> Result<Dialed, Option<OpenError>> {
    let mut last = None;
    for (i, live) in candidates.iter().enumerate() {
        Metrics::add(&metrics.streams_opened, 1);
        let timeout = if i + 1 < candidates.len() {
            FAILOVER_TIMEOUT
        } else {
            STREAM_OPEN_TIMEOUT
        };
        match open_stream(live, header, timeout).await {
            Ok((send, recv)) => {
                let host_keys = live
                    .announced(&header.service)
                    .map(|s| s.host_keys.clone())
                    .unwrap_or_default();
                return Ok(Dialed {
                    connector: live.connector.clone(),
                    host_keys,
                    send,
                    recv,
                });
            }
            Err(e @ OpenError::Refused { .. }) => return Err(Some(e)),
            Err(e) => {
                tracing::warn!(error = %e, "stream open failed; trying another connection");
                last = Some(e);
            }
        }
    }
    Err(last)
}
