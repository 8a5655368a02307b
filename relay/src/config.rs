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
    /// Where the relay keeps users, sign-ins, connectors and the audit
    /// chain: "sled" (embedded, in the data dir) or a PostgreSQL URL,
    /// postgres://USER@HOST:PORT/DB?sslmode=require, shared by the relays
    /// of a cluster [default: sled].
    #[allow(rustdoc::bare_urls)]
    #[arg(long, env = "SALLYPORT_STORE")]
    pub store: Option<String>,
    /// The cluster key (64 hex digits or 32 raw bytes, mode 0600) that seals
    /// the CAs the relays of a cluster share in PostgreSQL; required with a
    /// PostgreSQL store. `sallyport-relay cluster-key generate PATH` makes one.
    #[arg(long, env = "SALLYPORT_CLUSTER_KEY_FILE")]
    pub cluster_key_file: Option<PathBuf>,
    /// This relay's id in its cluster (PostgreSQL store); a second process
    /// started with the same id fences this one [default: the host name].
    #[arg(long, env = "SALLYPORT_RELAY_ID")]
    pub relay_id: Option<String>,
    /// HTTPS and WebSocket listener for people [default: 0.0.0.0:8443].
    #[arg(long, env = "SALLYPORT_LISTEN_HTTPS")]
    pub listen_https: Option<SocketAddr>,
    /// QUIC (UDP) listener for connectors [default: 0.0.0.0:4433].
    #[arg(long, env = "SALLYPORT_LISTEN_TUNNEL")]
    pub listen_tunnel: Option<SocketAddr>,
    /// TCP listener for connectors whose network blocks UDP (TLS, HTTP/2);
    /// "" turns it off [default: the tunnel's address, on TCP].
    #[arg(long, env = "SALLYPORT_LISTEN_TUNNEL_TCP")]
    pub listen_tunnel_tcp: Option<String>,
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
    /// Obtain and renew the HTTPS certificate over ACME for these names
    /// (repeatable or comma-separated), instead of --tls-cert.
    #[arg(
        long = "acme-domain",
        env = "SALLYPORT_ACME_DOMAINS",
        value_delimiter = ','
    )]
    pub acme_domains: Vec<String>,
    /// Contact address given to the ACME CA (expiry warnings, policy changes).
    #[arg(long, env = "SALLYPORT_ACME_EMAIL")]
    pub acme_email: Option<String>,
    /// ACME directory: an https:// URL, letsencrypt or letsencrypt-staging [default: letsencrypt].
    #[arg(long, env = "SALLYPORT_ACME_DIRECTORY")]
    pub acme_directory: Option<String>,
    /// PEM CA certificate to trust for the ACME server, beyond the usual roots (a private CA).
    #[arg(long, env = "SALLYPORT_ACME_CA_ROOT")]
    pub acme_ca_root: Option<PathBuf>,
    /// How the CA checks the names: tls-alpn-01 (port 443) or http-01 (port 80) [default: tls-alpn-01].
    #[arg(long, env = "SALLYPORT_ACME_CHALLENGE")]
    pub acme_challenge: Option<String>,
    /// Plain-HTTP listener for http-01 challenges (the rest redirects to HTTPS) [default: 0.0.0.0:80].
    #[arg(long, env = "SALLYPORT_ACME_LISTEN_HTTP")]
    pub acme_listen_http: Option<SocketAddr>,
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
    /// What to log: off, error, warn, info, debug or trace, for every
    /// target. RUST_LOG, when set, wins as a full filter [default: info].
    #[arg(long, env = "SALLYPORT_LOG_LEVEL")]
    pub log_level: Option<String>,
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
    store: Option<String>,
    cluster_key_file: Option<PathBuf>,
    relay_id: Option<String>,
    listen_https: Option<SocketAddr>,
    listen_tunnel: Option<SocketAddr>,
    listen_tunnel_tcp: Option<String>,
    public_url: Option<String>,
    public_tunnel_addr: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    acme_domains: Option<Vec<String>>,
    acme_email: Option<String>,
    acme_directory: Option<String>,
    acme_ca_root: Option<PathBuf>,
    acme_challenge: Option<String>,
    acme_listen_http: Option<SocketAddr>,
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
    log_level: Option<String>,
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
    /// The store's engine.
    pub store: StoreLocation,
    /// The cluster key file (`--cluster-key-file`), if given: required
    /// (and only read) with a PostgreSQL store.
    pub cluster_key_file: Option<PathBuf>,
    /// This relay's id in its cluster (`--relay-id`, default the host name).
    pub relay_id: String,
    /// Where people's HTTPS is served.
    pub listen_https: SocketAddr,
    /// Where connectors' QUIC is served (UDP).
    pub listen_tunnel: SocketAddr,
    /// Where connectors' TCP fallback is served, if anywhere.
    pub listen_tunnel_tcp: Option<SocketAddr>,
    /// `listen_tunnel_tcp` is the default (the tunnel's address, on TCP)
    /// because nobody set one: if that port is taken, the relay starts
    /// without the TCP fallback (with a warning) rather than not at all.
    pub listen_tunnel_tcp_is_default: bool,
    /// The URL people open; its origin is the only one the relay accepts.
    pub public_url: PublicUrl,
    /// `host:port` that enrolment tokens tell connectors to dial.
    pub public_tunnel_addr: String,
    /// The HTTPS certificate chain and key files; without them the relay
    /// serves a certificate of its own CA.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The HTTPS certificate over ACME, when `acme_domains` is set.
    pub acme: Option<crate::tls::acme::AcmeSettings>,
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
    /// The log level set by `--log-level` or the config file's
    /// `log_level`; `None`: the default. `RUST_LOG` overrides it (see
    /// `sallyport_common::logging::init_with_level`).
    pub log_level: Option<sallyport_common::logging::LevelFilter>,
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
        let store = StoreLocation::parse(self.store.as_deref().or(file.store.as_deref()))?;
        let cluster_key_file = self.cluster_key_file.or(file.cluster_key_file);
        let relay_id = self
            .relay_id
            .or(file.relay_id)
            .unwrap_or_else(crate::cluster::default_relay_id);
        if relay_id.is_empty() || relay_id.len() > MAX_RELAY_ID_LEN {
            return Err(format!(
                "--relay-id (SALLYPORT_RELAY_ID, relay_id in --config) is 1 to {MAX_RELAY_ID_LEN} bytes"
            ));
        }
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
        let acme = crate::tls::acme::AcmeInput {
            domains: if self.acme_domains.is_empty() {
                file.acme_domains.unwrap_or_default()
            } else {
                self.acme_domains
            },
            email: self.acme_email.or(file.acme_email),
            directory: self.acme_directory.or(file.acme_directory),
            ca_root: self.acme_ca_root.or(file.acme_ca_root),
            challenge: self.acme_challenge.or(file.acme_challenge),
            listen_http: self.acme_listen_http.or(file.acme_listen_http),
        }
        .resolve()?;
        if acme.is_some() && tls.is_some() {
            return Err("give --tls-cert/--tls-key or acme_domains, not both".into());
        }
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
        let tcp_setting = self.listen_tunnel_tcp.or(file.listen_tunnel_tcp);
        let listen_tunnel_tcp_is_default = tcp_setting.is_none();
        let listen_tunnel_tcp = match tcp_setting.as_deref().map(str::trim) {
            None => Some(listen_tunnel),
            Some("") => None,
            Some(text) => Some(text.parse().map_err(|_| {
                format!("--listen-tunnel-tcp {text:?} is not an address like 0.0.0.0:4433 (or \"\" for none)")
            })?),
        };
        let metrics_setting = self.metrics_listen.or(file.metrics_listen);
        let metrics_listen_is_default = metrics_setting.is_none();
        let metrics_listen = match metrics_setting {
            Some(text) => parse_metrics_listen(&text)?,
            None => Some(DEFAULT_METRICS_LISTEN),
        };
        let log_level = match self.log_level.or(file.log_level) {
            Some(text) => Some(
                sallyport_common::logging::parse_level(&text)
                    .map_err(|e| format!("--log-level: {e}"))?,
            ),
            None => None,
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
            cluster_key_file,
            relay_id,
            metrics_listen,
            metrics_listen_is_default,
            log_level,
            https_limits,
            forwarding,
            audit_retention,
            max_connections_per_connector,
            max_sessions_per_user,
            max_sessions_per_user_per_service,
            data_dir,
            store,
            listen_https,
            listen_tunnel,
            listen_tunnel_tcp,
            listen_tunnel_tcp_is_default,
            public_url,
            public_tunnel_addr,
            tls,
            acme,
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

/// Longest `--relay-id`, bytes.
pub const MAX_RELAY_ID_LEN: usize = 128;

/// The cluster key file the admin commands use when no relay is running:
/// the environment's `SALLYPORT_CLUSTER_KEY_FILE`, else `cluster_key_file`
/// in the config file.
pub fn cluster_key_file_for_admin(config: Option<&Path>) -> Result<Option<PathBuf>, String> {
    if let Some(v) = std::env::var_os("SALLYPORT_CLUSTER_KEY_FILE") {
        return Ok(Some(PathBuf::from(v)));
    }
    match config {
        Some(path) => Ok(read_file(path)?.cluster_key_file),
        None => Ok(None),
    }
}

/// Where a relay's state is kept (`--store`).
#[derive(Clone, PartialEq, Eq, Default)]
pub enum StoreLocation {
    /// sled, embedded in the data dir.
    #[default]
    Sled,
    /// A PostgreSQL database, by its URL (`postgres://` or `postgresql://`).
    Postgres(String),
}

/// The URL may carry a password: never printed.
impl std::fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sled => f.write_str("Sled"),
            Self::Postgres(_) => f.write_str("Postgres(..)"),
        }
    }
}

impl StoreLocation {
    /// `None` or "sled": sled; a `postgres://` or `postgresql://` URL:
    /// PostgreSQL. Anything else is an error naming the setting.
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        match value.map(str::trim) {
            None | Some("") | Some("sled") => Ok(Self::Sled),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Self::Postgres(url.to_owned()))
            }
            Some(_) => Err(
                "--store (SALLYPORT_STORE, store in --config) is \"sled\" or a postgres:// URL"
                    .into(),
            ),
        }
    }

    /// The setting the admin commands use when no relay is running: the
    /// environment's `SALLYPORT_STORE`, else `store` in the config file.
    pub fn for_admin(config: Option<&Path>) -> Result<Self, String> {
        if let Ok(v) = std::env::var("SALLYPORT_STORE") {
            return Self::parse(Some(&v));
        }
        match config {
            Some(path) => Self::parse(read_file(path)?.store.as_deref()),
            None => Ok(Self::Sled),
        }
    }

    /// Opens the store this names: sled in `data_dir`, or a connection
    /// pool to PostgreSQL with its migrations applied.
    pub async fn open(
        &self,
        data_dir: &Path,
    ) -> Result<crate::store::Store, crate::store::StoreError> {
        match self {
            Self::Sled => crate::store::Store::open(data_dir),
            Self::Postgres(url) => crate::store::Store::connect(url).await,
        }
    }
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
    fn acme_settings_come_from_the_file_and_exclude_certificate_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("relay.toml");
        std::fs::write(
            &file,
            "data_dir = \"/srv/relay\"\nacme_domains = [\"relay.example.com\"]\n\
             acme_email = \"admin@example.com\"\nacme_challenge = \"http-01\"\n\
             acme_directory = \"letsencrypt-staging\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(file.clone()),
            ..Default::default()
        };
        let acme = args.clone().resolve().unwrap().acme.unwrap();
        assert_eq!(acme.domains, vec!["relay.example.com"]);
        assert_eq!(acme.challenge, crate::tls::acme::Challenge::Http01);
        assert_eq!(acme.directory, crate::tls::acme::LETS_ENCRYPT_STAGING);
        assert_eq!(acme.listen_http, crate::tls::acme::DEFAULT_LISTEN_HTTP);
        let both = ServeArgs {
            tls_cert: Some("/etc/c.pem".into()),
            tls_key: Some("/etc/k.pem".into()),
            ..args
        };
        assert!(both.resolve().unwrap_err().contains("not both"));
    }

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

    #[test]
    fn log_level_from_the_flag_over_the_file() {
        use sallyport_common::logging::LevelFilter;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("relay.toml");
        std::fs::write(&file, "data_dir = \"/x\"\nlog_level = \"warn\"\n").unwrap();
        let resolve = |flag: Option<&str>| {
            ServeArgs {
                config: Some(file.clone()),
                log_level: flag.map(str::to_owned),
                ..Default::default()
            }
            .resolve()
        };
        assert_eq!(resolve(None).unwrap().log_level, Some(LevelFilter::WARN));
        assert_eq!(
            resolve(Some("DEBUG")).unwrap().log_level,
            Some(LevelFilter::DEBUG)
        );
        let err = resolve(Some("loud")).unwrap_err();
        assert!(
            err.contains("--log-level") && err.contains("debug"),
            "{err}"
        );
    }

    #[test]
    fn the_shipped_config_files_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        // The packages' /etc/sallyport/relay.toml.
        let cfg = ServeArgs {
            config: Some(root.join("debian/relay.toml")),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(cfg.data_dir, PathBuf::from("/var/lib/sallyport-relay"));
        // docker-compose.yml's.
        let cfg = ServeArgs {
            config: Some(root.join("../docker/relay.toml")),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(cfg.public_tunnel_addr, "relay:4433");
    }
}
