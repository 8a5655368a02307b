//! The relay's side of the tunnel: the QUIC listener for connectors, the
//! registry of live connections, and opening session streams on them.

pub mod enrol;
pub mod registry;
pub mod server;

use std::time::Duration;

use sallyport_proto::io::{write_frame, FrameReader, ReadError};
use sallyport_proto::tunnel::{StreamHeader, StreamReply};

pub use registry::{LiveConn, Registry};
pub use server::{server_config, TunnelServer};

/// How long the connector may take to accept or refuse a session (it
/// connects to the local service first).
pub const SESSION_OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for an answer before trying the next connection, when
/// there is one: a connector that died without closing its connection stays
/// in the registry until the QUIC idle timeout, and must not hold a session
/// for all that time.
pub const FAILOVER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a connector may take to send its hello or enrolment request.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Heartbeat interval the relay asks connectors to keep.
pub const HEARTBEAT_SECS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("connector {connector} refused the session: {reason}")]
    Refused { connector: String, reason: String },
    #[error("connector {connector} did not answer: {detail}")]
    Failed { connector: String, detail: String },
}

/// Opens a session stream on `live` and waits for the connector's answer.
pub async fn open_session(
    live: &LiveConn,
    header: &StreamHeader,
    timeout: Duration,
) -> Result<(quinn::SendStream, quinn::RecvStream), OpenError> {
    let failed = |detail: String| OpenError::Failed {
        connector: live.connector.clone(),
        detail,
    };
    let attempt = async {
        let (mut send, recv) = live
            .conn
            .open_bi()
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
