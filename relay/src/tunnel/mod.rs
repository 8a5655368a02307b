//! The relay's side of the tunnel: the listeners for connectors (QUIC, and
//! TLS over TCP for networks that block UDP), the registry of live
//! connections, and dialing a connector for a stream (`dial.rs`).

pub mod dial;
pub mod enrol;
pub mod registry;
pub mod server;
pub mod tcp;

use std::time::Duration;

pub use dial::{dial, Dialed};
pub use registry::{LiveConn, Registry};
pub use server::{server_config, tls_config, TunnelServer};
pub use tcp::TcpTunnel;

/// How long a connector may take to send its hello or enrolment request.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Heartbeat interval the relay asks connectors to keep.
pub const HEARTBEAT_SECS: u32 = 5;
