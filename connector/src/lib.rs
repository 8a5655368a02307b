#![warn(missing_docs)]
#![forbid(unsafe_code)]
//! The Sallyport connector: enrols once with a relay, then keeps QUIC
//! connections to it (TLS over TCP where UDP is blocked) and bridges each stream to one of the services
//! named in its own configuration, and nothing else. It never listens,
//! unless an admin turns on its metrics listener (`--metrics-listen`,
//! `metrics_listener`), which serves metrics and health and nothing else.

mod bridge;
pub mod config;
pub mod dial;
mod enrol;
mod hostkeys;
mod identity;
mod metrics;
mod metrics_listener;
pub mod service;
mod supervisor;

pub use dial::{TransportChoice, TransportConfig};
pub use hostkeys::scan as scan_host_keys;
pub use identity::Identity;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sallyport_proto::frame::service_name;
use sallyport_proto::limits::MAX_SERVICES;
use sallyport_proto::token::EnrolmentToken;
use sallyport_proto::tunnel::{ServiceInfo, ServiceKind};
use tokio_util::sync::CancellationToken;

use crate::bridge::Services;

#[cfg(test)]
mod tests {
    #[test]
    fn service_specs() {
        use super::parse_service;
        assert_eq!(
            parse_service("web=10.0.0.5:22").unwrap(),
            ("web".into(), "10.0.0.5:22".into())
        );
        assert_eq!(
            parse_service("db=tcp://db:5432").unwrap().1,
            "tcp://db:5432"
        );
        assert_eq!(
            parse_service("Prod-DB=10.0.0.5:22").unwrap().0,
            "prod-db",
            "service names are stored lowercased"
        );
        assert!(parse_service("web").is_err());
        assert!(parse_service("web=host").is_err());
        assert!(parse_service("bad name=h:1").is_err());
        assert!(parse_service("web=:22").is_err());
    }
}

/// Why the connector cannot run; each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// A setting is wrong (the text names it).
    #[error("{0}")]
    Config(String),
    /// A file in the state directory cannot be read or written.
    #[error("cannot use state file {path}: {source}")]
    State {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The state directory has no identity and no token was given.
    #[error("{0} holds no enrolled connector: run once with --token")]
    NotEnrolled(PathBuf),
    /// A state file does not parse.
    #[error("connector state is corrupt: {0}")]
    Corrupt(String),
    /// The certificate, key or CA cannot be used for TLS.
    #[error("TLS set-up failed: {0}")]
    Tls(String),
    /// The relay (address, then why) cannot be reached.
    #[error("cannot connect to the relay at {0}: {1}")]
    Connect(String, String),
    /// The relay refused the enrolment token (its reason).
    #[error("enrolment refused: {0}")]
    Enrolment(String),
    /// The relay closed the tunnel for good (revoked, unauthorized).
    #[error("the relay refused this connector: {0}")]
    Refused(String),
}

/// Settings of `sallyport-connector run`.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// An enrolment token, for the first run (ignored once enrolled).
    pub token: Option<String>,
    /// Where the identity lives (0700; its files 0600).
    pub state_dir: PathBuf,
    /// `host:port` to dial instead of the relay address stored at
    /// enrolment (a relay that moved).
    pub relay: Option<String>,
    /// `NAME=HOST:PORT` specs, already split.
    pub services: Vec<(String, String)>,
    /// How many QUIC connections to keep to the relay, for failover.
    pub ha_connections: usize,
    /// How long open streams may take to finish at shutdown.
    pub drain_timeout: Duration,
    /// Where to serve `/metrics`, `/healthz` and `/readyz` in plain HTTP;
    /// `None` (the default): nowhere, the connector listens on nothing.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// QUIC, TCP or both (and where TCP dials).
    pub transport: TransportConfig,
}

/// Parses `NAME=HOST:PORT` (an SSH service) or `NAME=tcp://HOST:PORT` (any
/// TCP service: no host keys are looked up). NAME comes back lowercased,
/// its canonical form ([`service_name`]).
pub fn parse_service(spec: &str) -> Result<(String, String), String> {
    let (name, target) = spec
        .split_once('=')
        .ok_or_else(|| format!("--service {spec:?} must look like NAME=HOST:PORT"))?;
    let name = service_name("service name", name).map_err(|e| e.to_string())?;
    let port_ok = target
        .strip_prefix(TCP_SCHEME)
        .unwrap_or(target)
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !port_ok {
        return Err(format!("--service {spec:?}: the target must be HOST:PORT"));
    }
    Ok((name, target.to_owned()))
}

/// Prefix of a plain-TCP service target.
pub const TCP_SCHEME: &str = "tcp://";

fn endpoint() -> Result<quinn::Endpoint, ConnectorError> {
    // Dual-stack where possible, so the relay may be IPv4 or IPv6.
    let v6 = std::net::SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0));
    let v4 = std::net::SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0));
    quinn::Endpoint::client(v6)
        .or_else(|_| quinn::Endpoint::client(v4))
        .map_err(|e| ConnectorError::Connect("local UDP socket".into(), e.to_string()))
}

/// Loads the stored identity, enrolling first when a token is given.
pub async fn enrol_or_load(
    token: Option<&str>,
    state_dir: &Path,
    transport: &TransportConfig,
) -> Result<Identity, ConnectorError> {
    let token = token.filter(|t| !t.trim().is_empty());
    match token {
        Some(_) if Identity::exists(state_dir) => {
            // Service managers pass the token on every start; only the first uses it.
            let identity = Identity::load(state_dir)?;
            tracing::info!(connector = %identity.name, "already enrolled; ignoring --token");
            Ok(identity)
        }
        Some(token) => {
            let token = EnrolmentToken::decode(token)
                .map_err(|e| ConnectorError::Config(format!("bad --token: {e}")))?;
            // The token is spent by enrolling: make sure the result can be kept.
            let probe = state_dir.join(".writable");
            sallyport_common::fs::create_private_dir(state_dir)
                .and_then(|_| std::fs::write(&probe, b""))
                .and_then(|_| std::fs::remove_file(&probe))
                .map_err(|source| ConnectorError::State {
                    path: state_dir.to_owned(),
                    source,
                })?;
            let ep = endpoint()?;
            let identity = enrol::enrol(ep.clone(), &token, transport.clone()).await?;
            identity.save(state_dir)?;
            ep.close(sallyport_proto::tunnel::Code::Done.code().into(), b"");
            tracing::info!(connector = %identity.name, relay = %identity.relay, "enrolled");
            Ok(identity)
        }
        None => Identity::load(state_dir),
    }
}

/// Runs the connector until `shutdown` (then drains) or until the relay
/// refuses it for good.
pub async fn run(config: RunConfig, shutdown: CancellationToken) -> Result<(), ConnectorError> {
    if config.services.is_empty() {
        return Err(ConnectorError::Config(
            "give at least one --service NAME=HOST:PORT".into(),
        ));
    }
    if config.services.len() > MAX_SERVICES {
        return Err(ConnectorError::Config(format!(
            "at most {MAX_SERVICES} services"
        )));
    }
    let mut services = Services::new();
    let mut announced = Vec::new();
    for (name, spec) in &config.services {
        let (target, kind) = match spec.strip_prefix(TCP_SCHEME) {
            Some(t) => (t.to_owned(), ServiceKind::Tcp),
            None => (spec.clone(), ServiceKind::Ssh),
        };
        if services.insert(name.clone(), target.clone()).is_some() {
            return Err(ConnectorError::Config(format!(
                "service {name} is given twice (service names are case-insensitive)"
            )));
        }
        let host_keys = match kind {
            ServiceKind::Ssh => hostkeys::scan(&target).await,
            ServiceKind::Tcp => Vec::new(),
        };
        if kind == ServiceKind::Ssh && host_keys.is_empty() {
            tracing::warn!(service = %name, %target, "no SSH host keys found (is the service up?)");
        }
        announced.push(ServiceInfo {
            name: name.clone(),
            kind,
            host_keys,
        });
    }
    // Bound first: an address the admin asked for that cannot be had stops
    // the connector before it enrols or connects.
    let ops_listener = match config.metrics_listen {
        Some(addr) => Some(metrics_listener::bind(addr).await?),
        None => None,
    };
    let identity = enrol_or_load(
        config.token.as_deref(),
        &config.state_dir,
        &config.transport,
    )
    .await?;
    // The address dialled: the admin's `relay` setting, else the enrolled
    // one. The same string labels the metrics and names it in /readyz.
    let relay = config.relay.clone().unwrap_or(identity.relay.clone());
    let metrics = Arc::new(metrics::Metrics::new());
    metrics.add_relay(&relay);
    let ops_stop = CancellationToken::new();
    let ops_task = ops_listener.map(|listener| {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!("metrics listener on http://{addr}/metrics (and /healthz, /readyz)");
        }
        let ops = Arc::new(metrics_listener::Ops {
            metrics: metrics.clone(),
            relay: relay.clone(),
            stopping: shutdown.clone(),
        });
        tokio::spawn(metrics_listener::serve(listener, ops, ops_stop.clone()))
    });
    let dialer = dial::Dialer::new(
        relay.clone(),
        config.transport.clone(),
        identity.tls_config()?,
        endpoint()?,
    )?;
    let shared = Arc::new(supervisor::Shared {
        name: identity.name.clone(),
        relay,
        dialer,
        services,
        announced,
        drain_timeout: config.drain_timeout,
        metrics,
    });
    tracing::info!(
        connector = %shared.name,
        relay = %shared.relay,
        services = ?shared.services,
        connections = config.ha_connections,
        transport = ?config.transport.choice,
        "connector starting"
    );
    let result = supervisor::run(shared, config.ha_connections.max(1), shutdown).await;
    ops_stop.cancel();
    if let Some(task) = ops_task {
        let _ = task.await;
    }
    result
}
