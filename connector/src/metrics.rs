//! The connector's metrics: its tunnel to the relay (connections up,
//! reconnects), the sessions it bridges (opened, refused, active, bytes,
//! time to connect to the service) and `sallyport_build_info`, in the
//! OpenMetrics text format by `prometheus-client`. They are served only
//! when `--metrics-listen` is given (see `metrics_listener`).
//!
//! Labels: `relay` is the relay address from the enrolment token (one
//! value per connector); `result` and `direction` come from fixed sets.
//! Service names, users and client addresses are never labels.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use sallyport_common::metrics::{bounded_label, register_build_info, seconds};
use sallyport_common::transport::Transport;

/// Buckets of `sallyport_connector_service_connect_seconds`: a TCP connect
/// on the local network takes well under a millisecond to a few; it gives
/// up at `bridge::CONNECT_TIMEOUT`.
pub const SERVICE_CONNECT_BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 5.0,
];

/// The connector's metrics. Each field is a handle on one series of the
/// registry; cloning a handle shares its value.
pub struct Metrics {
    registry: Registry,
    tunnels: Family<[(&'static str, String); 2], Gauge>,
    /// Every tunnel connection up, whatever its relay address (for `/readyz`).
    tunnels_up: Gauge,
    /// `sallyport_connector_reconnects_total`.
    pub reconnects: Counter,
    /// `sallyport_connector_sessions_total{result="opened"}`.
    pub sessions_opened: Counter,
    /// `sallyport_connector_sessions_total{result="refused"}`.
    pub sessions_refused: Counter,
    /// `sallyport_connector_sessions_active`.
    pub sessions_active: Gauge,
    /// `sallyport_connector_session_bytes_total{direction="to_service"}`.
    pub bytes_to_service: Counter,
    /// `sallyport_connector_session_bytes_total{direction="to_relay"}`.
    pub bytes_to_relay: Counter,
    service_connect: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A tunnel connection counted as up until this is dropped.
pub struct TunnelUp {
    per_relay: Gauge,
    total: Gauge,
}

impl Drop for TunnelUp {
    fn drop(&mut self) {
        self.per_relay.dec();
        self.total.dec();
    }
}

impl Metrics {
    /// Every series at zero, registered under their names.
    pub fn new() -> Self {
        let mut registry = sallyport_common::metrics::registry();
        let r = &mut registry;
        register_build_info(r, "connector", env!("CARGO_PKG_VERSION"));
        let tunnels = Family::<[(&'static str, String); 2], Gauge>::default();
        r.register(
            "connector_tunnel_connections_up",
            "Connections to the relay that the relay welcomed and that are up now, by the \
             relay address the connector was enrolled with and by transport (quic, tcp).",
            tunnels.clone(),
        );
        let reconnects = Counter::default();
        r.register(
            "connector_reconnects",
            "Connection attempts to the relay after a connection slot's first: after a lost \
             tunnel or a failed attempt.",
            reconnects.clone(),
        );
        let sessions = Family::<[(&'static str, &'static str); 1], Counter>::default();
        let sessions_opened = sessions.get_or_create_owned(&[("result", "opened")]);
        let sessions_refused = sessions.get_or_create_owned(&[("result", "refused")]);
        r.register(
            "connector_sessions",
            "Session streams from the relay: opened (connected to the service) or refused \
             (bad header, service not exposed here, service unreachable).",
            sessions,
        );
        let sessions_active = Gauge::default();
        r.register(
            "connector_sessions_active",
            "Sessions bridged now.",
            sessions_active.clone(),
        );
        let bytes = Family::<[(&'static str, &'static str); 1], Counter>::default();
        let bytes_to_service = bytes.get_or_create_owned(&[("direction", "to_service")]);
        let bytes_to_relay = bytes.get_or_create_owned(&[("direction", "to_relay")]);
        r.register_with_unit(
            "connector_session",
            "Session bytes bridged.",
            Unit::Bytes,
            bytes,
        );
        let service_connect = Histogram::new(SERVICE_CONNECT_BUCKETS);
        r.register_with_unit(
            "connector_service_connect",
            "Time to connect to a service for a session (successful connects).",
            Unit::Seconds,
            service_connect.clone(),
        );
        Self {
            registry,
            tunnels,
            tunnels_up: Gauge::default(),
            reconnects,
            sessions_opened,
            sessions_refused,
            sessions_active,
            bytes_to_service,
            bytes_to_relay,
            service_connect,
        }
    }

    /// Shows `relay` (the address the connector was enrolled with) with
    /// no tunnel up over either transport, before any connects.
    pub fn add_relay(&self, relay: &str) {
        for transport in Transport::ALL {
            let _ = self.tunnels.get_or_create_owned(&[
                ("relay", bounded_label(relay)),
                ("transport", transport.to_string()),
            ]);
        }
    }

    /// Counts a tunnel connection to `relay` over `transport` as up until
    /// the guard drops.
    pub fn tunnel_up(&self, relay: &str, transport: Transport) -> TunnelUp {
        let per_relay = self.tunnels.get_or_create_owned(&[
            ("relay", bounded_label(relay)),
            ("transport", transport.to_string()),
        ]);
        per_relay.inc();
        self.tunnels_up.inc();
        TunnelUp {
            per_relay,
            total: self.tunnels_up.clone(),
        }
    }

    /// Tunnel connections up now.
    pub fn tunnels_up(&self) -> i64 {
        self.tunnels_up.get()
    }

    /// A service took `took` to accept a session's TCP connection.
    pub fn observe_service_connect(&self, took: Duration) {
        self.service_connect.observe(seconds(took));
    }

    /// The registry the series are in.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tunnel_counts_while_its_guard_lives() {
        let m = Metrics::new();
        m.add_relay("relay.example:4433");
        let text = sallyport_common::metrics::encode(&[m.registry()]);
        assert!(text.contains(
            "sallyport_connector_tunnel_connections_up{relay=\"relay.example:4433\",transport=\"tcp\"} 0\n"
        ));
        let up = m.tunnel_up("relay.example:4433", Transport::Quic);
        let _up2 = m.tunnel_up("relay.example:4433", Transport::Quic);
        assert_eq!(m.tunnels_up(), 2);
        drop(up);
        assert_eq!(m.tunnels_up(), 1);
        let text = sallyport_common::metrics::encode(&[m.registry()]);
        for line in [
            "sallyport_connector_tunnel_connections_up{relay=\"relay.example:4433\",transport=\"quic\"} 1",
            "sallyport_connector_reconnects_total 0",
            "sallyport_connector_sessions_total{result=\"refused\"} 0",
            "sallyport_connector_sessions_active 0",
            "sallyport_connector_session_bytes_total{direction=\"to_relay\"} 0",
            "sallyport_connector_service_connect_seconds_count 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing in:\n{text}"
            );
        }
        assert!(text.contains("sallyport_build_info{daemon=\"connector\",version=\""));
    }
}
