//! The relay's metrics: counters, gauges and histograms kept by the code
//! that sees each event, exposed in the OpenMetrics text format by
//! `prometheus-client` on a plain-HTTP listener of their own
//! (`--metrics-listen`, loopback by default), never on the public HTTPS one
//! ([`router`], with `/healthz` and `/readyz`).
//!
//! Every name and label is listed in docs/METRICS.md. Label values come
//! from fixed sets (outcomes, directions, phases, policy stages) or from
//! connector names, which only an admin creates (`connector add`): never a
//! user name or a client address, so the number of series is bounded by
//! the relay's own configuration, whatever the network sends.

mod connectors;
mod http;

pub use http::router;

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use sallyport_common::metrics::{register_build_info, seconds};

use crate::policy::Stage;

/// Buckets of `sallyport_session_setup_seconds`: a session opens in
/// milliseconds on a LAN, in a second or two over a slow connector, and
/// gives up at the stream-open timeout (`tunnel::dial::STREAM_OPEN_TIMEOUT`).
pub const SESSION_SETUP_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Buckets of `sallyport_sign_in_seconds`: a password check is an argon2
/// hash (about 0.1 s in a release build); single sign-on waits for the
/// provider's token endpoint.
pub const SIGN_IN_BUCKETS: [f64; 11] =
    [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Buckets of `sallyport_policy_evaluation_seconds`: reading a few store
/// records, evaluating the rules (microseconds), and the decision's audit
/// event written to disk (a flush: milliseconds).
pub const POLICY_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// How a person signed in, for `sallyport_sign_in_seconds{method}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInMethod {
    /// `POST /api/login`: password, and a one-time code when enrolled.
    Password,
    /// The single sign-on callback (`/auth/oidc/{name}/callback`).
    Sso,
}

impl SignInMethod {
    fn label(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::Sso => "sso",
        }
    }
}

type Labels = [(&'static str, &'static str); 2];
type Label = [(&'static str, &'static str); 1];
type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The relay's metrics. Each field is a handle on one series of the
/// registry; cloning a handle shares its value.
pub struct Metrics {
    registry: Registry,
    /// `sallyport_sign_ins_total{result="ok"}`.
    pub sign_ins_ok: Counter,
    /// `sallyport_sign_ins_total{result="failed"}`.
    pub sign_ins_failed: Counter,
    /// `sallyport_sessions_total{result="opened"}`.
    pub sessions_opened: Counter,
    /// `sallyport_tunnel_streams_opened_total`: every attempt to open a
    /// session stream on a connector connection.
    pub streams_opened: Counter,
    /// `sallyport_sessions_total{result="refused"}`.
    pub sessions_refused: Counter,
    /// Client input events (keystrokes) dropped unstored: the service does
    /// not record input.
    pub input_events_dropped: Counter,
    /// `sallyport_sessions_active`.
    pub sessions_active: Gauge,
    /// `sallyport_session_bytes_total{direction="to_connector"}`.
    pub bytes_to_connector: Counter,
    /// `sallyport_session_bytes_total{direction="to_client"}`.
    pub bytes_to_client: Counter,
    /// `sallyport_connector_connections_total`.
    pub connector_connections: Counter,
    /// `sallyport_enrolments_total`.
    pub enrolments: Counter,
    /// `sallyport_tunnel_protocol_errors_total`.
    pub tunnel_protocol_errors: Counter,
    /// `sallyport_policy_decisions_total{result="allow"}`.
    pub policy_allowed: Counter,
    /// `sallyport_policy_decisions_total{result="deny"}`.
    pub policy_denied: Counter,
    /// HTTPS connections refused because their address held its cap.
    pub https_refused_per_address: Counter,
    /// HTTPS connections refused because the listener held its total.
    pub https_refused_total: Counter,
    /// HTTPS connections open now (a gauge).
    pub https_connections_open: Gauge,
    /// HTTPS connections closed for taking too long over their TLS handshake.
    pub https_timeouts_handshake: Counter,
    /// ... over a request head.
    pub https_timeouts_header: Counter,
    /// ... idle between requests, or with a response the peer did not read.
    pub https_timeouts_idle: Counter,
    /// `sallyport_tls_certificate_reloads_total{result="ok"}`: HTTPS
    /// certificates swapped in while running (files reloaded, ACME issued).
    pub tls_reloads: Counter,
    /// `sallyport_tls_certificate_reloads_total{result="failed"}`: new HTTPS
    /// certificates refused (a bad pair) or ACME orders that failed.
    pub tls_reload_failures: Counter,
    /// `sallyport_session_setup_seconds` (see [`Metrics::observe_session_setup`]).
    session_setup: Histogram,
    /// `sallyport_sign_in_seconds{method, result}`.
    sign_in: HistogramFamily<Labels>,
    /// `sallyport_policy_evaluation_seconds{stage}`.
    policy_evaluation: HistogramFamily<Label>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A counter family with one label, and a handle on each of `values`.
fn counter_family<const N: usize>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    label: &'static str,
    values: [&'static str; N],
) -> [Counter; N] {
    let family = Family::<Label, Counter>::default();
    let handles = values.map(|v| family.get_or_create_owned(&[(label, v)]));
    match unit {
        Some(unit) => registry.register_with_unit(name, help, unit, family),
        None => registry.register(name, help, family),
    }
    handles
}

impl Metrics {
    /// Every series at zero, registered under their names.
    pub fn new() -> Self {
        let mut registry = sallyport_common::metrics::registry();
        let r = &mut registry;
        register_build_info(r, "relay", env!("CARGO_PKG_VERSION"));
        let [sign_ins_ok, sign_ins_failed] = counter_family(
            r,
            "sign_ins",
            "Sign-ins, by password or single sign-on.",
            None,
            "result",
            ["ok", "failed"],
        );
        let [sessions_opened, sessions_refused] = counter_family(
            r,
            "sessions",
            "Session streams requested.",
            None,
            "result",
            ["opened", "refused"],
        );
        let input_events_dropped = Counter::default();
        r.register(
            "client_input_events_dropped",
            "Keystroke events not recorded (record_input is off for the service).",
            input_events_dropped.clone(),
        );
        let [policy_allowed, policy_denied] = counter_family(
            r,
            "policy_decisions",
            "Access policy decisions (page, WebSocket, certificate).",
            None,
            "result",
            ["allow", "deny"],
        );
        let streams_opened = Counter::default();
        r.register(
            "tunnel_streams_opened",
            "Session streams opened to connectors (each attempt, failovers included).",
            streams_opened.clone(),
        );
        let sessions_active = Gauge::default();
        r.register(
            "sessions_active",
            "Sessions open now.",
            sessions_active.clone(),
        );
        let [bytes_to_connector, bytes_to_client] = counter_family(
            r,
            "session",
            "Session bytes relayed.",
            Some(Unit::Bytes),
            "direction",
            ["to_connector", "to_client"],
        );
        let connector_connections = Counter::default();
        r.register(
            "connector_connections",
            "Connector connections accepted.",
            connector_connections.clone(),
        );
        let enrolments = Counter::default();
        r.register("enrolments", "Connectors enrolled.", enrolments.clone());
        let tunnel_protocol_errors = Counter::default();
        r.register(
            "tunnel_protocol_errors",
            "Bad frames from connectors.",
            tunnel_protocol_errors.clone(),
        );
        let [https_refused_per_address, https_refused_total] = counter_family(
            r,
            "https_connections_refused",
            "HTTPS connections refused at once, over a connection cap.",
            None,
            "reason",
            ["per_address", "total"],
        );
        let https_connections_open = Gauge::default();
        r.register(
            "https_connections_open",
            "HTTPS connections open now (upgraded session WebSockets included).",
            https_connections_open.clone(),
        );
        let [https_timeouts_handshake, https_timeouts_header, https_timeouts_idle] = counter_family(
            r,
            "https_timeouts",
            "HTTPS connections closed by a timeout.",
            None,
            "phase",
            ["handshake", "header", "idle"],
        );
        let [tls_reloads, tls_reload_failures] = counter_family(
            r,
            "tls_certificate_reloads",
            "HTTPS certificates swapped in while running (files reloaded, ACME issued), \
             and new ones refused or ACME orders that failed.",
            None,
            "result",
            ["ok", "failed"],
        );
        let session_setup = Histogram::new(SESSION_SETUP_BUCKETS);
        r.register_with_unit(
            "session_setup",
            "Time from a session request (browser WebSocket or `sallyport proxy`) reaching the \
             relay to its stream being bridged: signed in, policy decided, a connector reached \
             and connected to the service, the stream on the audit log. Sessions that opened.",
            Unit::Seconds,
            session_setup.clone(),
        );
        let sign_in: HistogramFamily<Labels> =
            Family::new_with_constructor(|| Histogram::new(SIGN_IN_BUCKETS));
        r.register_with_unit(
            "sign_in",
            "Time to answer a sign-in: password (and one-time code) checks, or the single \
             sign-on callback with its token exchange; both with the audit event written.",
            Unit::Seconds,
            sign_in.clone(),
        );
        let policy_evaluation: HistogramFamily<Label> =
            Family::new_with_constructor(|| Histogram::new(POLICY_BUCKETS));
        r.register_with_unit(
            "policy_evaluation",
            "Time to decide a request by policy: its inputs read from the store, the rules \
             evaluated, the decision written to the audit log.",
            Unit::Seconds,
            policy_evaluation.clone(),
        );
        Self {
            registry,
            sign_ins_ok,
            sign_ins_failed,
            sessions_opened,
            streams_opened,
            sessions_refused,
            input_events_dropped,
            sessions_active,
            bytes_to_connector,
            bytes_to_client,
            connector_connections,
            enrolments,
            tunnel_protocol_errors,
            policy_allowed,
            policy_denied,
            https_refused_per_address,
            https_refused_total,
            https_connections_open,
            https_timeouts_handshake,
            https_timeouts_header,
            https_timeouts_idle,
            tls_reloads,
            tls_reload_failures,
            session_setup,
            sign_in,
            policy_evaluation,
        }
    }

    /// Adds `n` to `counter`.
    pub fn add(counter: &Counter, n: u64) {
        counter.inc_by(n);
    }

    /// A session that opened took `took` from its request reaching the
    /// relay to its stream being bridged (see `SESSION_SETUP_BUCKETS`).
    pub fn observe_session_setup(&self, took: Duration) {
        self.session_setup.observe(seconds(took));
    }

    /// A sign-in by `method` succeeded (`ok`) or failed after `took`:
    /// counted in `sallyport_sign_ins_total` and timed in
    /// `sallyport_sign_in_seconds`.
    pub fn sign_in(&self, method: SignInMethod, ok: bool, took: Duration) {
        Self::add(
            if ok {
                &self.sign_ins_ok
            } else {
                &self.sign_ins_failed
            },
            1,
        );
        self.observe_sign_in(method, ok, took);
    }

    /// A sign-in by `method` was answered (`ok` or not) after `took`.
    pub fn observe_sign_in(&self, method: SignInMethod, ok: bool, took: Duration) {
        let result = if ok { "ok" } else { "failed" };
        self.sign_in
            .get_or_create(&[("method", method.label()), ("result", result)])
            .observe(seconds(took));
    }

    /// A policy decision at `stage` took `took`.
    pub fn observe_policy(&self, stage: Stage, took: Duration) {
        let stage = match stage {
            Stage::Page => "page",
            Stage::Websocket => "websocket",
            Stage::Certificate => "certificate",
            Stage::Test => "test",
        };
        self.policy_evaluation
            .get_or_create(&[("stage", stage)])
            .observe(seconds(took));
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
    fn names_stay_what_dashboards_know() {
        let m = Metrics::new();
        Metrics::add(&m.sign_ins_ok, 2);
        Metrics::add(&m.bytes_to_client, 5);
        m.sessions_active.inc();
        m.observe_session_setup(Duration::from_millis(30));
        m.observe_sign_in(SignInMethod::Password, true, Duration::from_millis(120));
        m.observe_policy(Stage::Websocket, Duration::from_micros(300));
        let text = sallyport_common::metrics::encode(&[m.registry()]);
        for line in [
            "sallyport_sign_ins_total{result=\"ok\"} 2",
            "sallyport_sign_ins_total{result=\"failed\"} 0",
            "sallyport_sessions_total{result=\"opened\"} 0",
            "sallyport_session_bytes_total{direction=\"to_client\"} 5",
            "sallyport_sessions_active 1",
            "sallyport_tunnel_streams_opened_total 0",
            "sallyport_client_input_events_dropped_total 0",
            "sallyport_policy_decisions_total{result=\"deny\"} 0",
            "sallyport_https_connections_refused_total{reason=\"per_address\"} 0",
            "sallyport_https_timeouts_total{phase=\"idle\"} 0",
            "sallyport_https_connections_open 0",
            "sallyport_connector_connections_total 0",
            "sallyport_enrolments_total 0",
            "sallyport_tunnel_protocol_errors_total 0",
            "sallyport_session_setup_seconds_count 1",
            "sallyport_sign_in_seconds_count{method=\"password\",result=\"ok\"} 1",
            "sallyport_policy_evaluation_seconds_count{stage=\"websocket\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing in:\n{text}"
            );
        }
        assert!(text.contains("sallyport_build_info{daemon=\"relay\",version=\""));
    }
}
