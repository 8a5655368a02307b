//! Frames between the relay and a connector, over QUIC.
//!
//! * The connector opens one **control stream** per connection and sends
//!   [`Control::Hello`]; the relay answers [`Control::Welcome`]; then both
//!   exchange heartbeats until one side sends [`Control::Drain`] or the
//!   connection closes.
//! * For each session the relay opens a **session stream** and sends a
//!   [`StreamHeader`]; the connector answers [`StreamReply`] and, when it
//!   accepts, raw bytes flow both ways until each side finishes.
//! * A connection that presents no client certificate may only enrol: it
//!   opens one stream, sends [`EnrolRequest`] and reads [`EnrolReply`].

use serde::{Deserialize, Serialize};

use crate::frame::{check_len, check_name, FrameError, Validate};
use crate::limits::*;

/// TLS application protocol of the tunnel.
pub const ALPN: &[u8] = b"sallyport/1";

/// Version of the frames in this module; sent in hello and welcome.
pub const PROTOCOL_VERSION: u32 = 1;

/// Server name the connector asks for and the relay's tunnel certificate
/// carries. It is fixed so the connector can reach the relay by any address:
/// trust comes from the pinned relay CA, not from DNS.
pub const TUNNEL_SERVER_NAME: &str = "tunnel.sallyport.invalid";

/// QUIC application error codes used when closing a connection or stream.
pub mod code {
    /// Normal close (shutdown, drain finished).
    pub const DONE: u32 = 0;
    /// The peer broke the protocol (bad frame, unexpected message).
    pub const PROTOCOL: u32 = 1;
    /// The connector is unknown, revoked or its token was refused.
    pub const UNAUTHORIZED: u32 = 2;
    /// The connector was revoked while connected.
    pub const REVOKED: u32 = 3;
    /// The peer took too long to send what it had to.
    pub const TIMEOUT: u32 = 4;
    /// The connector already holds as many connections as the relay allows.
    pub const TOO_MANY: u32 = 5;
}

/// QUIC stream error codes (RESET_STREAM / STOP_SENDING, RFC 9000 §19.4-5)
/// of a session stream: why one side abandoned it.
pub mod stream_code {
    /// The client went away (relay → connector).
    pub const CLIENT_GONE: u32 = 0x10;
    /// The connection to the service failed: it reset the connection or
    /// took no more bytes (connector → relay).
    pub const SERVICE_FAILED: u32 = 0x11;

    /// A person's words for `code`, for the message that ends the session.
    pub fn describe(code: u64) -> Option<&'static str> {
        match u32::try_from(code).ok()? {
            CLIENT_GONE => Some("the client went away"),
            SERVICE_FAILED => {
                Some("the connection to the service failed (it reset or closed the connection)")
            }
            _ => None,
        }
    }
}

/// Messages on the control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Control {
    /// Connector → relay, first message: who it is and what it serves.
    Hello(Hello),
    /// Relay → connector, answer to hello.
    Welcome(Welcome),
    /// Either side: liveness probe, answered by `HeartbeatAck` with the same `seq`.
    Heartbeat { seq: u64 },
    /// Answer to `Heartbeat`.
    HeartbeatAck { seq: u64 },
    /// Either side: open no new sessions on this connection; it closes when
    /// the open ones finish.
    Drain { reason: String },
}

/// What a connector says about itself when it connects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u32,
    pub connector: String,
    pub version: String,
    pub services: Vec<ServiceInfo>,
}

/// One service a connector exposes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    pub name: String,
    pub kind: ServiceKind,
    /// For SSH services: the host's public keys in OpenSSH form
    /// (`ssh-ed25519 AAAA...`), as the connector found them.
    #[serde(default)]
    pub host_keys: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    Ssh,
    Tcp,
}

/// The relay's answer to hello.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    pub protocol: u32,
    pub relay_version: String,
    /// How often the connector should send heartbeats.
    pub heartbeat_secs: u32,
    /// Services the hello named that this connector is not granted: the
    /// relay sends it no session for them (the others are served). At most
    /// [`MAX_SERVICES`], since each was in the hello.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<RefusedService>,
}

/// A service name the relay will not route to a connector, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedService {
    pub service: String,
    pub reason: String,
}

/// First frame on a stream, relay → connector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamHeader {
    /// The relay's id of this stream (in its logs and audit events). On
    /// the wire as `session`, the name connectors already deployed read;
    /// `stream` is accepted too.
    #[serde(rename = "session", alias = "stream")]
    pub stream: String,
    pub service: String,
    pub user: String,
    pub client_addr: String,
}

/// The connector's answer to a stream header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamReply {
    Accept,
    Refuse { reason: String },
}

/// First frame on an enrolment stream, connector → relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolRequest {
    /// The secret part of the enrolment token.
    pub secret: String,
    /// A PKCS#10 certificate signing request for the connector's own key.
    pub csr_pem: String,
    pub version: String,
}

/// The relay's answer to an enrolment request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EnrolReply {
    Enrolled {
        connector: String,
        cert_pem: String,
        ca_pem: String,
    },
    Refused {
        reason: String,
    },
}

impl Validate for Control {
    fn validate(&self) -> Result<(), FrameError> {
        match self {
            Control::Hello(h) => h.validate(),
            Control::Welcome(w) => {
                check_len("relay version", &w.relay_version, MAX_ID_LEN)?;
                if w.refused.len() > MAX_SERVICES {
                    return Err(FrameError::Invalid(format!(
                        "{} services refused, over the limit of {MAX_SERVICES}",
                        w.refused.len()
                    )));
                }
                for r in &w.refused {
                    check_name("service name", &r.service)?;
                    check_len("reason", &r.reason, MAX_REASON_LEN)?;
                }
                Ok(())
            }
            Control::Heartbeat { .. } | Control::HeartbeatAck { .. } => Ok(()),
            Control::Drain { reason } => check_len("reason", reason, MAX_REASON_LEN),
        }
    }
}

impl Validate for Hello {
    fn validate(&self) -> Result<(), FrameError> {
        check_name("connector name", &self.connector)?;
        check_len("connector version", &self.version, MAX_ID_LEN)?;
        if self.services.len() > MAX_SERVICES {
            return Err(FrameError::Invalid(format!(
                "{} services declared, over the limit of {MAX_SERVICES}",
                self.services.len()
            )));
        }
        for s in &self.services {
            check_name("service name", &s.name)?;
            if s.host_keys.len() > MAX_HOST_KEYS {
                return Err(FrameError::Invalid(format!(
                    "service {} has {} host keys, over the limit of {MAX_HOST_KEYS}",
                    s.name,
                    s.host_keys.len()
                )));
            }
            for k in &s.host_keys {
                check_len("host key", k, MAX_HOST_KEY_LEN)?;
            }
        }
        Ok(())
    }
}

impl Validate for StreamHeader {
    fn validate(&self) -> Result<(), FrameError> {
        check_len("stream id", &self.stream, MAX_ID_LEN)?;
        check_name("service name", &self.service)?;
        check_name("user name", &self.user)?;
        check_len("client address", &self.client_addr, MAX_ADDR_LEN)
    }
}

impl Validate for StreamReply {
    fn validate(&self) -> Result<(), FrameError> {
        match self {
            StreamReply::Accept => Ok(()),
            StreamReply::Refuse { reason } => check_len("reason", reason, MAX_REASON_LEN),
        }
    }
}

impl Validate for EnrolRequest {
    fn validate(&self) -> Result<(), FrameError> {
        check_len("secret", &self.secret, MAX_ID_LEN)?;
        check_len("certificate request", &self.csr_pem, MAX_PEM_LEN)?;
        check_len("connector version", &self.version, MAX_ID_LEN)
    }
}

impl Validate for EnrolReply {
    fn validate(&self) -> Result<(), FrameError> {
        match self {
            EnrolReply::Enrolled {
                connector,
                cert_pem,
                ca_pem,
            } => {
                check_name("connector name", connector)?;
                check_len("certificate", cert_pem, MAX_PEM_LEN)?;
                check_len("CA certificate", ca_pem, MAX_PEM_LEN)
            }
            EnrolReply::Refused { reason } => check_len("reason", reason, MAX_REASON_LEN),
        }
    }
}
