//! Counters for `/metrics`, in the Prometheus text format, and the
//! listener that serves them: plain HTTP on its own address
//! (`--metrics-listen`, loopback by default), never on the public HTTPS one.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    pub sign_ins_ok: AtomicU64,
    pub sign_ins_failed: AtomicU64,
    pub sessions_opened: AtomicU64,
    pub streams_opened: AtomicU64,
    pub sessions_refused: AtomicU64,
    /// Client input events (keystrokes) dropped unstored: the service does
    /// not record input.
    pub input_events_dropped: AtomicU64,
    pub sessions_active: AtomicU64,
    pub bytes_to_connector: AtomicU64,
    pub bytes_to_client: AtomicU64,
    pub connector_connections: AtomicU64,
    pub enrolments: AtomicU64,
    pub tunnel_protocol_errors: AtomicU64,
    pub policy_allowed: AtomicU64,
    pub policy_denied: AtomicU64,
    /// HTTPS connections refused because their address held its cap.
    pub https_refused_per_address: AtomicU64,
    /// HTTPS connections refused because the listener held its total.
    pub https_refused_total: AtomicU64,
    /// HTTPS connections open now (a gauge).
    pub https_connections_open: AtomicU64,
    /// HTTPS connections closed for taking too long over their TLS handshake.
    pub https_timeouts_handshake: AtomicU64,
    /// ... over a request head.
    pub https_timeouts_header: AtomicU64,
    /// ... idle between requests, or with a response the peer did not read.
    pub https_timeouts_idle: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn render(&self, connectors_online: usize) -> String {
        let rows: &[(&str, &str, &str, u64)] = &[
            (
                "sallyport_sign_ins_total{result=\"ok\"}",
                "counter",
                "Sign-ins.",
                self.sign_ins_ok.load(Ordering::Relaxed),
            ),
            (
                "sallyport_sign_ins_total{result=\"failed\"}",
                "",
                "",
                self.sign_ins_failed.load(Ordering::Relaxed),
            ),
            (
                "sallyport_sessions_total{result=\"opened\"}",
                "counter",
                "Session streams requested.",
                self.sessions_opened.load(Ordering::Relaxed),
            ),
            (
                "sallyport_sessions_total{result=\"refused\"}",
                "",
                "",
                self.sessions_refused.load(Ordering::Relaxed),
            ),
            (
                "sallyport_client_input_events_dropped_total",
                "counter",
                "Keystroke events not recorded (record_input is off for the service).",
                self.input_events_dropped.load(Ordering::Relaxed),
            ),
            (
                "sallyport_policy_decisions_total{result=\"allow\"}",
                "counter",
                "Access policy decisions (page, WebSocket, certificate).",
                self.policy_allowed.load(Ordering::Relaxed),
            ),
            (
                "sallyport_policy_decisions_total{result=\"deny\"}",
                "",
                "",
                self.policy_denied.load(Ordering::Relaxed),
            ),
            (
                "sallyport_tunnel_streams_opened_total",
                "counter",
                "Session streams opened to connectors.",
                self.streams_opened.load(Ordering::Relaxed),
            ),
            (
                "sallyport_sessions_active",
                "gauge",
                "Sessions open now.",
                self.sessions_active.load(Ordering::Relaxed),
            ),
            (
                "sallyport_session_bytes_total{direction=\"to_connector\"}",
                "counter",
                "Session bytes relayed.",
                self.bytes_to_connector.load(Ordering::Relaxed),
            ),
            (
                "sallyport_session_bytes_total{direction=\"to_client\"}",
                "",
                "",
                self.bytes_to_client.load(Ordering::Relaxed),
            ),
            (
                "sallyport_connector_connections_total",
                "counter",
                "Connector connections accepted.",
                self.connector_connections.load(Ordering::Relaxed),
            ),
            (
                "sallyport_connector_connections_live",
                "gauge",
                "Connector connections live now.",
                connectors_online as u64,
            ),
            (
                "sallyport_enrolments_total",
                "counter",
                "Connectors enrolled.",
                self.enrolments.load(Ordering::Relaxed),
            ),
            (
                "sallyport_tunnel_protocol_errors_total",
                "counter",
                "Bad frames from connectors.",
                self.tunnel_protocol_errors.load(Ordering::Relaxed),
            ),
            (
                "sallyport_https_connections_refused_total{reason=\"per_address\"}",
                "counter",
                "HTTPS connections refused at once, over a connection cap.",
                self.https_refused_per_address.load(Ordering::Relaxed),
            ),
            (
                "sallyport_https_connections_refused_total{reason=\"total\"}",
                "",
                "",
                self.https_refused_total.load(Ordering::Relaxed),
            ),
            (
                "sallyport_https_connections_open",
                "gauge",
                "HTTPS connections open now (upgraded session WebSockets included).",
                self.https_connections_open.load(Ordering::Relaxed),
            ),
            (
                "sallyport_https_timeouts_total{phase=\"handshake\"}",
                "counter",
                "HTTPS connections closed by a timeout.",
                self.https_timeouts_handshake.load(Ordering::Relaxed),
            ),
            (
                "sallyport_https_timeouts_total{phase=\"header\"}",
                "",
                "",
                self.https_timeouts_header.load(Ordering::Relaxed),
            ),
            (
                "sallyport_https_timeouts_total{phase=\"idle\"}",
                "",
                "",
                self.https_timeouts_idle.load(Ordering::Relaxed),
            ),
        ];
        let mut out = String::new();
        for &(name, kind, help, value) in rows {
            let base = name.split('{').next().unwrap_or(name);
            if !kind.is_empty() {
                let _ = writeln!(out, "# HELP {base} {help}\n# TYPE {base} {kind}");
            }
            let _ = writeln!(out, "{name} {value}");
        }
        out
    }
}

/// The metrics listener's routes: `GET /metrics` and nothing else.
pub fn router(
    metrics: std::sync::Arc<Metrics>,
    registry: std::sync::Arc<crate::tunnel::Registry>,
) -> axum::Router {
    use axum::http::header;
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || async move {
            (
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                metrics.render(registry.len()),
            )
        }),
    )
}
