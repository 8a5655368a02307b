//! Frames between the relay and a connector, over QUIC.
//!
//! * The connector opens one **control stream** per connection and sends
//!   [`Control::Hello`]; the relay answers [`Control::Welcome`]; then both
//!   exchange heartbeats until one side sends [`Control::Drain`] or the
//!   connection closes.
//! * For each session's WebSocket the relay opens a **stream** and sends a
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

pub mod code;
pub mod transport;

pub use code::Code;

/// Messages on the control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Control {
    /// Connector → relay, first message: who it is and what it serves.
    Hello(Hello),
    /// Relay → connector, answer to hello.
    Welcome(Welcome),
    /// Either side: liveness probe, answered by `HeartbeatAck` with the same `seq`.
    Heartbeat {
        /// The sender's counter, echoed by the answer.
        seq: u64,
    },
    /// Answer to `Heartbeat`.
    HeartbeatAck {
        /// The `seq` of the heartbeat answered.
        seq: u64,
    },
    /// Either side: open no new sessions on this connection; it closes when
    /// the open ones finish.
    Drain {
        /// Why, for the other side's log (at most [`MAX_REASON_LEN`] bytes).
        reason: String,
    },
}

/// What a connector says about itself when it connects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The connector's [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// The connector's name, which must be the one its certificate was
    /// enrolled as.
    pub connector: String,
    /// The connector's software version, for the relay's log and `connector
    /// list` (at most [`MAX_NAME_LEN`] bytes).
    pub version: String,
    /// What it serves: at most [`MAX_SERVICES`].
    pub services: Vec<ServiceInfo>,
}

/// One service a connector exposes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// The service's name, as people ask for it (compared
    /// case-insensitively, see [`crate::frame::service_name`]).
    pub name: String,
    /// What speaks on it.
    pub kind: ServiceKind,
    /// For SSH services: the host's public keys in OpenSSH form
    /// (`ssh-ed25519 AAAA...`), as the connector found them.
    #[serde(default)]
    pub host_keys: Vec<String>,
}

/// What speaks on a service's port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    /// An SSH server: the connector scans its host keys for the hello.
    Ssh,
    /// Any other TCP service, carried as bytes.
    Tcp,
}

/// The relay's answer to hello.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The relay's [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// The relay's software version, for the connector's log.
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
    /// The name as the hello gave it.
    pub service: String,
    /// Why (at most [`MAX_REASON_LEN`] bytes), for the connector's log.
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
    /// The service to connect the stream to (its canonical, lowercase name).
    pub service: String,
    /// The Sallyport user the stream is for, for the connector's log.
    pub user: String,
    /// The person's address as the relay saw it (`ip:port`), for the
    /// connector's log.
    pub client_addr: String,
}

/// The connector's answer to a stream header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamReply {
    /// The connector is connected to the service: bytes may flow.
    Accept,
    /// It is not, and the stream ends.
    Refuse {
        /// Why (at most [`MAX_REASON_LEN`] bytes), shown to the person.
        reason: String,
    },
}

/// First frame on an enrolment stream, connector → relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolRequest {
    /// The secret part of the enrolment token.
    pub secret: String,
    /// A PKCS#10 certificate signing request for the connector's own key.
    pub csr_pem: String,
    /// The connector's software version, for the relay's log.
    pub version: String,
}

/// The relay's answer to an enrolment request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EnrolReply {
    /// The connector is enrolled; it keeps these and connects with them.
    Enrolled {
        /// The name it was enrolled as (the token's).
        connector: String,
        /// Its client certificate, PEM.
        cert_pem: String,
        /// The relay's CA certificate, PEM, which it pins from now on.
        ca_pem: String,
    },
    /// It is not.
    Refused {
        /// Why, for the person running the connector.
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
