//! QUIC settings shared by the relay and the connector (TLS through
//! [`crate::tls::crypto_provider`]).

use std::sync::Arc;
use std::time::Duration;

/// A connection with no packets for this long is dead (keep-alives below keep
/// a healthy idle tunnel far from it).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an idle tunnel sends a keep-alive packet.
pub const KEEP_ALIVE: Duration = Duration::from_secs(2);
/// Flow-control window of one session stream: bounds the bytes buffered per
/// session on each side while keeping a loopback or LAN path busy.
pub const STREAM_WINDOW: u32 = 4 * 1024 * 1024;
/// Flow-control window of a whole connection, across its sessions.
pub const CONNECTION_WINDOW: u32 = 32 * 1024 * 1024;
/// Most sessions (relay-opened streams) one connection carries at once.
pub const MAX_SESSIONS_PER_CONNECTION: u32 = 1024;
/// Largest UDP payload path MTU discovery probes for. Quinn's default stops
/// at 1452 (Ethernet); loopback and jumbo-frame networks carry far more, and
/// every packet saved is a seal, an open and a share of a syscall saved. On
/// paths that cannot, the probes are lost and the MTU stays where it was.
pub const MTU_UPPER_BOUND: u16 = 9000;
/// Streams a connector may open towards the relay: its control stream (or
/// its enrolment stream) and one spare.
pub const MAX_CONNECTOR_STREAMS: u32 = 2;

/// Transport settings; `incoming_bidi` is how many streams the peer may open.
pub fn transport_config(incoming_bidi: u32) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(IDLE_TIMEOUT).expect("a 10 s timeout fits a QUIC varint"),
    ));
    t.keep_alive_interval(Some(KEEP_ALIVE));
    t.stream_receive_window(STREAM_WINDOW.into());
    t.receive_window(CONNECTION_WINDOW.into());
    t.send_window(CONNECTION_WINDOW.into());
    t.max_concurrent_bidi_streams(incoming_bidi.into());
    t.max_concurrent_uni_streams(0u32.into());
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(MTU_UPPER_BOUND);
    t.mtu_discovery_config(Some(mtu));
    t
}

/// Wraps a rustls client config for the tunnel (ALPN, transport settings).
///
/// # Errors
/// When `tls` offers no TLS 1.3 cipher suite QUIC can use.
pub fn client_config(
    mut tls: rustls::ClientConfig,
) -> Result<quinn::ClientConfig, quinn::crypto::rustls::NoInitialCipherSuite> {
    tls.alpn_protocols = vec![sallyport_proto::tunnel::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport_config(MAX_SESSIONS_PER_CONNECTION)));
    Ok(config)
}
