//! Settings of `sallyport-relay serve`: flags, `SALLYPORT_*` environment
//! variables and a TOML file (`--config`), in that order of precedence.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::web::client_addr::{ForwardedHeader, Forwarding};
use crate::web::listener::{self, ConnLimits};
use crate::web::PublicUrl;
use sallyport_common::time::parse_duration;

/// Live QUIC connections one connector may hold unless configured: twice
/// the most a connector keeps (16), so dead ones waiting out their idle
/// timeout do not lock a reconnecting connector out.
pub const DEFAULT_MAX_CONNECTIONS_PER_CONNECTOR: usize = 32;

/// The settings of `sallyport-relay serve` as given: flags, environment
/// and the config file, resolved by [`ServeArgs::resolve`].
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (keys in snake_case).
    #[arg(long, env = "SALLYPORT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where the relay keeps its database, CA and certificates.
    #[arg(long, env = "SALLYPORT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// HTTPS and WebSocket listener for people [default: 0.0.0.0:8443].
    #[arg(long, env = "SALLYPORT_LISTEN_HTTPS")]
    pub listen_https: Option<SocketAddr>,
    /// QUIC (UDP) listener for connectors [default: 0.0.0.0:4433].
    #[arg(long, env = "SALLYPORT_LISTEN_TUNNEL")]
    pub listen_tunnel: Option<SocketAddr>,
    /// The URL people open, e.g. https://relay.example.com [default: https://localhost:PORT].
    // The doc comment is the help text: a bare URL reads better there.
    #[allow(rustdoc::bare_urls)]
    #[arg(long, env = "SALLYPORT_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// host:port connectors dial, put in enrolment tokens [default: public URL host, tunnel port].
    #[arg(long, env = "SALLYPORT_PUBLIC_TUNNEL_ADDR")]
    pub public_tunnel_addr: Option<String>,
    /// PEM certificate chain for HTTPS [default: a self-signed one in the data dir].
    #[arg(long, env = "SALLYPORT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "SALLYPORT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// How long shutdown waits for open sessions, e.g. 30s [default: 30s].
    #[arg(long, env = "SALLYPORT_DRAIN_TIMEOUT")]
    pub drain_timeout: Option<String>,
    /// How long SSH certificates the relay signs are valid, e.g. 5m [default: 5m].
    #[arg(long, env = "SALLYPORT_SSH_CERT_TTL")]
    pub ssh_cert_ttl: Option<String>,
    /// Services whose sshd trusts the relay's SSH CA (repeatable): the
    /// browser logs in to them with a certificate, no password.
    #[arg(
        long = "ssh-cert-service",
        env = "SALLYPORT_SSH_CERT_SERVICES",
        value_delimiter = ','
    )]
    pub ssh_cert_services: Vec<String>,
    /// Drop audit events older than this, e.g. 90d [default: 90d].
    #[arg(long, env = "SALLYPORT_AUDIT_MAX_AGE")]
    pub audit_max_age: Option<String>,
    /// Keep at most this many audit events [default: 5000000].
    #[arg(long, env = "SALLYPORT_AUDIT_MAX_EVENTS")]
    pub audit_max_events: Option<u64>,
    /// Live QUIC connections one connector may hold [default: 32; connectors keep up to 16].
    #[arg(long, env = "SALLYPORT_MAX_CONNECTIONS_PER_CONNECTOR")]
    pub max_connections_per_connector: Option<usize>,
    /// Concurrent sessions (browser or `sallyport proxy`) one user may hold [default: 20].
    #[arg(long, env = "SALLYPORT_MAX_SESSIONS_PER_USER")]
    pub max_sessions_per_user: Option<usize>,
    /// Concurrent sessions one user may hold to one service, unless its
    /// policy sets max_sessions_per_user [default: 8, below sshd's MaxStartups of 10].
    #[arg(long, env = "SALLYPORT_MAX_SESSIONS_PER_USER_PER_SERVICE")]
    pub max_sessions_per_user_per_service: Option<usize>,
    /// Plain-HTTP listener for Prometheus /metrics; "" turns it off [default: 127.0.0.1:9464].
    #[arg(long, env = "SALLYPORT_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// How long an HTTPS client has for its TLS handshake [default: 10s].
    #[arg(long, env = "SALLYPORT_HTTPS_HANDSHAKE_TIMEOUT")]
    pub https_handshake_timeout: Option<String>,
    /// How long an HTTPS client has to send a request head, from its first
    /// byte, and then its body [default: 30s each].
    #[arg(long, env = "SALLYPORT_HTTPS_HEADER_TIMEOUT")]
    pub https_header_timeout: Option<String>,
    /// How long an HTTPS connection may wait for a request, or for its peer
    /// to read a response [default: 60s]. Session WebSockets are not cut by it.
    #[arg(long, env = "SALLYPORT_HTTPS_IDLE_TIMEOUT")]
    pub https_idle_timeout: Option<String>,
    /// HTTPS connections one client address (IPv6: one /64) may hold
    /// [default: 256, or the total cap / 8 when that is less].
    #[arg(long, env = "SALLYPORT_MAX_HTTPS_CONNECTIONS_PER_ADDRESS")]
    pub max_https_connections_per_address: Option<usize>,
    /// HTTPS connections everyone together may hold [default and most: the
    /// open-file limit less 256].
    #[arg(long, env = "SALLYPORT_MAX_HTTPS_CONNECTIONS")]
    pub max_https_connections: Option<usize>,
    /// Address ranges of the load balancers in front of the relay
    /// (repeatable, e.g. 10.0.0.0/8): only they may name the client's
    /// address (PROXY header, X-Forwarded-For) [default: none].
    #[arg(
        long = "trusted-proxy",
        env = "SALLYPORT_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<String>,
    /// Connections from a trusted proxy start with a PROXY protocol header (v1 or v2) [default: false].
    #[arg(long, env = "SALLYPORT_PROXY_PROTOCOL")]
    pub proxy_protocol: Option<bool>,
    /// The header trusted proxies put the client's address in:
    /// x-forwarded-for or forwarded (RFC 7239) [default: x-forwarded-for].
    #[arg(long, env = "SALLYPORT_FORWARDED_HEADER")]
    pub forwarded_header: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen_https: Option<SocketAddr>,
    listen_tunnel: Option<SocketAddr>,
    public_url: Option<String>,
    public_tunnel_addr: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    drain_timeout: Option<String>,
    ssh_cert_ttl: Option<String>,
    #[serde(default)]
    ssh_cert_services: Vec<String>,
    /// Access policy; reloaded on change (see `policy::PolicyHandle`).
    policy: Option<crate::policy::PolicyConfig>,
    audit_max_age: Option<String>,
    audit_max_events: Option<u64>,
    max_connections_per_connector: Option<usize>,
    max_sessions_per_user: Option<usize>,
    max_sessions_per_user_per_service: Option<usize>,
    metrics_listen: Option<String>,
    https_handshake_timeout: Option<String>,
    https_header_timeout: Option<String>,
    https_idle_timeout: Option<String>,
    max_https_connections_per_address: Option<usize>,
    max_https_connections: Option<usize>,
    trusted_proxies: Option<Vec<String>>,
    proxy_protocol: Option<bool>,
    forwarded_header: Option<String>,
    /// OpenID providers people may sign in with (`[[oidc]]` tables).
    #[serde(default)]
    oidc: Vec<crate::oidc::config::ProviderConfig>,
    /// `false` turns off sign-in with a local password (`POST /api/login`),
    /// leaving single sign-on only.
    password_sign_in: Option<bool>,
}

/// Where `/metrics` is served unless configured: loopback only, so nothing
/// operational reaches the internet; 9464 is the usual Prometheus exporter port.
pub const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9464);

/// A `--metrics-listen` value: an address, or "" for none.
pub fn parse_metrics_listen(text: &str) -> Result<Option<SocketAddr>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        format!(
            "--metrics-listen {text:?} is not an address like 127.0.0.1:9464 (or \"\" for none)"
        )
    })
}

/// A timeout flag's value: a duration of at least a second.
fn parse_timeout(flag: &str, text: Option<String>, default: Duration) -> Result<Duration, String> {
    let Some(text) = text else {
        return Ok(default);
    };
    let d = parse_duration(&text).map_err(|e| format!("--{flag}: {e}"))?;
    if d.is_zero() {
        return Err(format!("--{flag} must be at least 1s"));
    }
    Ok(d)
}

/// Resolved settings of a relay.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The data dir (0700): database, CAs, keys, admin socket.
    pub data_dir: PathBuf,
    /// Where people's HTTPS is served.
    pub listen_https: SocketAddr,
    /// Where connectors' QUIC is served (UDP).
    pub listen_tunnel: SocketAddr,
    /// The URL people open; its origin is the only one the relay accepts.
    pub public_url: PublicUrl,
    /// `host:port` that enrolment tokens tell connectors to dial.
    pub public_tunnel_addr: String,
    /// The HTTPS certificate chain and key files; without them the relay
    /// serves a certificate of its own CA.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// How long live sessions may take to finish at shutdown.
    pub drain_timeout: Duration,
    /// Validity of the SSH certificates the relay signs.
    pub ssh_cert_ttl: Duration,
    /// Services whose sshd trusts the relay's SSH CA.
    pub ssh_cert_services: Vec<String>,
    /// The config file, which also holds the access policy.
    pub config_file: Option<PathBuf>,
    /// How long (and how many) audit events are kept.
    pub audit_retention: crate::audit::Retention,
    /// Concurrent QUIC connections one connector may hold.
    pub max_connections_per_connector: usize,
    /// Concurrent sessions one user may hold, to all services together.
    pub max_sessions_per_user: usize,
    /// Concurrent sessions one user may hold to one service (a service's
    /// policy table may set its own `max_sessions_per_user` instead).
    pub max_sessions_per_user_per_service: usize,
    /// The plain-HTTP `/metrics` listener, if any.
    pub metrics_listen: Option<SocketAddr>,
    /// `metrics_listen` is `DEFAULT_METRICS_LISTEN` because nobody set
    /// one: if that port is taken, the relay starts without metrics (with a
    /// warning) rather than not at all. An address an admin chose must bind.
    pub metrics_listen_is_default: bool,
    /// Timeouts and caps of the HTTPS listener.
    pub https_limits: ConnLimits,
    /// Whose word about the client's address the HTTPS listener takes.
    pub forwarding: Forwarding,
    /// OpenID providers, checked, with their client secrets read.
    pub oidc: Vec<crate::oidc::Provider>,
    /// Whether local users may sign in with a password (config file
    /// `password_sign_in`, default true). Off, only single sign-on signs
    /// anyone in; it needs at least one `[[oidc]]` provider.
    pub password_sign_in: bool,
}

impl ServeArgs {
    /// The settings in force: a flag (or its environment variable) over the
    /// config file over the default. Errors say which setting is wrong.
    pub fn resolve(self) -> Result<ServeConfig, String> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let data_dir = self
            .data_dir
            .or(file.data_dir)
            .ok_or("set --data-dir (or SALLYPORT_DATA_DIR, or data_dir in --config)")?;
        let listen_https = self
            .listen_https
            .or(file.listen_https)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 8443)));
        let listen_tunnel = self
            .listen_tunnel
            .or(file.listen_tunnel)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 4433)));
        let public_url = self
            .public_url
            .or(file.public_url)
            .unwrap_or_else(|| format!("https://localhost:{}", listen_https.port()));
        let public_url = PublicUrl::parse(&public_url)?;
        let public_tunnel_addr = self
            .public_tunnel_addr
            .or(file.public_tunnel_addr)
            .unwrap_or_else(|| {
                if public_url.host.contains(':') {
                    format!("[{}]:{}", public_url.host, listen_tunnel.port())
                } else {
                    format!("{}:{}", public_url.host, listen_tunnel.port())
                }
            });
        let tls = match (
            self.tls_cert.or(file.tls_cert),
            self.tls_key.or(file.tls_key),
        ) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return Err("give both --tls-cert and --tls-key, or neither".into()),
        };
        let drain_timeout = match self.drain_timeout.or(file.drain_timeout) {
            Some(d) => parse_duration(&d)?,
            None => Duration::from_secs(30),
        };
        let mut ssh_cert_services = self.ssh_cert_services;
        ssh_cert_services.extend(file.ssh_cert_services);
        for s in &mut ssh_cert_services {
            *s = sallyport_proto::frame::service_name("--ssh-cert-service", s)
                .map_err(|e| e.to_string())?;
        }
        let ssh_cert_ttl = match self.ssh_cert_ttl.or(file.ssh_cert_ttl) {
            Some(d) => parse_duration(&d)?,
            None => crate::ssh_ca::DEFAULT_CERT_TTL,
        };
        let audit_retention = crate::audit::Retention {
            max_age: match self.audit_max_age.or(file.audit_max_age) {
                Some(d) => parse_duration(&d)?,
                None => crate::audit::DEFAULT_MAX_AGE,
            },
            max_events: self
                .audit_max_events
                .or(file.audit_max_events)
                .unwrap_or(crate::audit::DEFAULT_MAX_EVENTS)
                .max(1),
        };
        let max_connections_per_connector = self
            .max_connections_per_connector
            .or(file.max_connections_per_connector)
            .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_CONNECTOR)
            .max(1);
        let max_sessions_per_user = self
            .max_sessions_per_user
            .or(file.max_sessions_per_user)
            .unwrap_or(crate::live::DEFAULT_MAX_SESSIONS_PER_USER)
            .max(1);
        let max_sessions_per_user_per_service = self
            .max_sessions_per_user_per_service
            .or(file.max_sessions_per_user_per_service)
            .unwrap_or(crate::live::DEFAULT_MAX_SESSIONS_PER_USER_PER_SERVICE)
            .max(1);
        let metrics_setting = self.metrics_listen.or(file.metrics_listen);
        let metrics_listen_is_default = metrics_setting.is_none();
        let metrics_listen = match metrics_setting {
            Some(text) => parse_metrics_listen(&text)?,
            None => Some(DEFAULT_METRICS_LISTEN),
        };
        let https_limits = ConnLimits {
            handshake_timeout: parse_timeout(
                "https-handshake-timeout",
                self.https_handshake_timeout
                    .or(file.https_handshake_timeout),
                listener::DEFAULT_HANDSHAKE_TIMEOUT,
            )?,
            header_timeout: parse_timeout(
                "https-header-timeout",
                self.https_header_timeout.or(file.https_header_timeout),
                listener::DEFAULT_HEADER_TIMEOUT,
            )?,
            idle_timeout: parse_timeout(
                "https-idle-timeout",
                self.https_idle_timeout.or(file.https_idle_timeout),
                listener::DEFAULT_IDLE_TIMEOUT,
            )?,
            max_per_address: self
                .max_https_connections_per_address
                .or(file.max_https_connections_per_address)
                .map(|n| n.max(1)),
            max_total: self
                .max_https_connections
                .or(file.max_https_connections)
                .map(|n| n.max(1)),
        };
        // A list is one setting: flags (or the environment) replace the file's.
        let trusted_proxies = if self.trusted_proxies.is_empty() {
            file.trusted_proxies.unwrap_or_default()
        } else {
            self.trusted_proxies
        };
        let forwarding = Forwarding {
            trusted_proxies: trusted_proxies
                .iter()
                .map(|c| c.parse().map_err(|e| format!("trusted_proxies: {e}")))
                .collect::<Result<_, String>>()?,
            proxy_protocol: self.proxy_protocol.or(file.proxy_protocol).unwrap_or(false),
            header: match self.forwarded_header.or(file.forwarded_header) {
                Some(h) => h.parse()?,
                None => ForwardedHeader::default(),
            },
        };
        if forwarding.proxy_protocol && forwarding.trusted_proxies.is_empty() {
            return Err(
                "proxy_protocol = true needs trusted_proxies (the balancers' addresses): \
                 a PROXY header is read only from them"
                    .into(),
            );
        }
        let oidc = crate::oidc::config::resolve(file.oidc)?;
        let password_sign_in = file.password_sign_in.unwrap_or(true);
        if !password_sign_in && oidc.is_empty() {
            return Err(
                "password_sign_in = false needs at least one [[oidc]] provider, or nobody could sign in"
                    .into(),
            );
        }
        Ok(ServeConfig {
            oidc,
            password_sign_in,
            metrics_listen,
            metrics_listen_is_default,
            https_limits,
            forwarding,
            audit_retention,
            max_connections_per_connector,
            max_sessions_per_user,
            max_sessions_per_user_per_service,
            data_dir,
            listen_https,
            listen_tunnel,
            public_url,
            public_tunnel_addr,
            tls,
            drain_timeout,
            ssh_cert_ttl,
            ssh_cert_services,
            config_file: self.config,
        })
    }
}

/// The `[policy]` of a config file (`None` when it has none). The whole
/// file is parsed, so a reload refuses a file `serve` would refuse.
pub fn read_policy(path: &Path) -> Result<Option<crate::policy::PolicyConfig>, String> {
    Ok(read_file(path)?.policy)
}

fn read_file(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    toml::from_str(&text)
        .map_err(|e| format!("{} is not a valid relay config: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_and_defaults_fill_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("relay.toml");
        std::fs::write(
            &file,
            "data_dir = \"/srv/relay\"\npublic_url = \"https://relay.example\"\n",
        )
        .unwrap();
        let cfg = ServeArgs {
            config: Some(file.clone()),
            listen_tunnel: Some("127.0.0.1:7000".parse().unwrap()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(cfg.data_dir, PathBuf::from("/srv/relay"));
        assert_eq!(cfg.public_url.origin, "https://relay.example");
        assert_eq!(cfg.public_tunnel_addr, "relay.example:7000");
        assert_eq!(cfg.listen_https.port(), 8443);
        assert_eq!(cfg.metrics_listen, Some(DEFAULT_METRICS_LISTEN));
        assert!(cfg.metrics_listen_is_default);
        assert_eq!(cfg.https_limits, ConnLimits::default());
        assert_eq!(
            cfg.max_sessions_per_user_per_service,
            crate::live::DEFAULT_MAX_SESSIONS_PER_USER_PER_SERVICE
        );

        std::fs::write(
            &file,
            "data_dir = \"/srv/relay\"\nmetrics_listen = \"\"\nhttps_idle_timeout = \"5s\"\n\
             max_sessions_per_user_per_service = 3\n",
        )
        .unwrap();
        let cfg = ServeArgs {
            config: Some(file.clone()),
            max_https_connections_per_address: Some(10),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(cfg.metrics_listen, None);
        assert_eq!(cfg.https_limits.idle_timeout, Duration::from_secs(5));
        assert_eq!(cfg.https_limits.max_per_address, Some(10));
        assert_eq!(cfg.max_sessions_per_user_per_service, 3);

        std::fs::write(
            &file,
            "data_dir = \"/srv/relay\"\nproxy_protocol = true\n\
             trusted_proxies = [\"10.0.0.0/8\", \"2001:db8::/32\"]\nforwarded_header = \"forwarded\"\n",
        )
        .unwrap();
        let cfg = ServeArgs {
            config: Some(file.clone()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert!(cfg.forwarding.proxy_protocol);
        assert_eq!(cfg.forwarding.header, ForwardedHeader::Forwarded);
        assert!(cfg.forwarding.is_trusted("10.1.2.3".parse().unwrap()));
        assert!(!cfg.forwarding.is_trusted("192.0.2.1".parse().unwrap()));
        let cfg = ServeArgs {
            config: Some(file.clone()),
            trusted_proxies: vec!["192.0.2.1".into()],
            proxy_protocol: Some(false),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert!(!cfg.forwarding.proxy_protocol);
        assert!(!cfg.forwarding.is_trusted("10.1.2.3".parse().unwrap()));
        assert!(cfg.forwarding.is_trusted("192.0.2.1".parse().unwrap()));
        std::fs::write(&file, "data_dir = \"/x\"\nproxy_protocol = true\n").unwrap();
        let err = ServeArgs {
            config: Some(file.clone()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.contains("trusted_proxies"), "{err}");

        std::fs::write(&file, "data_dirr = \"/x\"\n").unwrap();
        let err = ServeArgs {
            config: Some(file),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.contains("unknown field"), "{err}");
    }
}
