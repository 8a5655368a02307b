//! QUIC settings shared by the relay and the connector (TLS through
//! [`crate::tls::crypto_provider`]).

use sallyport_proto::tunnel::transport::*;
use std::sync::Arc;

/// Transport settings from the numbers both sides share
/// (`sallyport_proto::tunnel::transport`); `incoming_bidi` is how many
/// streams the peer may open.
pub fn transport_config(incoming_bidi: u32) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(IDLE_TIMEOUT).expect("a 10 s timeout fits a QUIC varint"),
    ));
    t.keep_alive_interval(Some(KEEP_ALIVE));
    t.stream_receive_window(STREAM_WINDOW_BYTES.into());
    t.receive_window(CONNECTION_WINDOW_BYTES.into());
    t.send_window(CONNECTION_WINDOW_BYTES.into());
    t.max_concurrent_bidi_streams(incoming_bidi.into());
    t.max_concurrent_uni_streams(MAX_UNI_STREAMS.into());
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(MTU_UPPER_BOUND_BYTES);
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
