//! Starting and stopping a whole relay: store, CA, tunnel listener, HTTPS
//! listener and admin socket, with one shutdown path that drains sessions.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, AdminCtx, META_TUNNEL_ADDR};
use crate::audit::AuditLog;
use crate::config::ServeConfig;
use crate::health::{Health, Part};
use crate::identity::Identity;
use crate::metrics::Metrics;
use crate::pki::{self, RelayCa};
use crate::policy::PolicyHandle;
use crate::store::Store;
use crate::tls::acme::{Acme, Challenge};
use crate::tls::files::FileWatch;
use crate::tls::http01::Http01Tokens;
use crate::tls::HttpsCert;
use crate::tunnel::{self, Registry, TunnelServer};
use crate::web::listener::{self, GuardAcceptor, Limiter};
use crate::web::{self, AppState};

/// How often audit retention drops old events.
pub const AUDIT_PRUNE_INTERVAL: Duration = Duration::from_secs(600);

/// A relay that is up. Dropping it does not stop it; call [`Relay::shutdown`].
pub struct Relay {
    /// Its state.
    pub store: Store,
    /// Its audit log.
    pub audit: Arc<AuditLog>,
    /// The CA of the tunnel (connector certificates, the relay's QUIC and
    /// HTTPS identity).
    pub ca: Arc<RelayCa>,
    /// The connectors online now.
    pub registry: Arc<Registry>,
    /// Live sessions by user and sign-in.
    pub live: Arc<crate::live::LiveSessions>,
    /// Where the HTTPS listener is bound.
    pub https_addr: SocketAddr,
    /// Where the QUIC listener is bound.
    pub tunnel_addr: SocketAddr,
    /// The plain-HTTP `/metrics` listener's address, when there is one.
    pub metrics_addr: Option<SocketAddr>,
    /// The plain-HTTP listener of ACME HTTP-01 challenges, when there is one.
    pub acme_http_addr: Option<SocketAddr>,
    /// The settings it was started with.
    pub config: ServeConfig,
    /// What its admin socket runs commands on.
    admin: Arc<AdminCtx>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    sessions: TaskTracker,
    https: axum_server::Handle<SocketAddr>,
    metrics_http: axum_server::Handle<SocketAddr>,
    acme_http: Option<(axum_server::Handle<SocketAddr>, SocketAddr)>,
    /// What `/readyz` answers from.
    health: Arc<Health>,
    endpoint: quinn::Endpoint,
    /// Cancelled at the end of the drain time: every tunnel connection
    /// still open closes, whatever its transport.
    tunnel_closing: CancellationToken,
    /// See [`Relay::fenced`].
    fenced: CancellationToken,
}

impl Relay {
    /// Starts every part of the relay, in this order: the store and the
    /// CAs on disk, the tunnel listener, the policy, the HTTPS and metrics
    /// listeners, the admin socket and audit retention. Fails (with the
    /// step named) before anything listens if the data dir, the store or a
    /// key cannot be used, or when an address cannot be bound.
    pub async fn start(config: ServeConfig) -> anyhow::Result<Self> {
        let caps = HttpsCaps::from_fd_limit(&config);
        let store = open_store(&config).await?;
        let cluster = open_cluster(&config, &store).await?;
        let (ca, ssh_ca) = match &cluster {
            Some(secrets) => {
                let ca = secrets.relay_ca().await?;
                // The cluster CA's certificate (public) where a single
                // relay keeps its own, for tools that trust it; the key
                // stays sealed in PostgreSQL.
                let cert_path = config.data_dir.join("ca.pem");
                sallyport_common::fs::write_private(&cert_path, ca.cert_pem().as_bytes())
                    .with_context(|| format!("cannot write {}", cert_path.display()))?;
                (ca, secrets.ssh_ca().await?)
            }
            None => (
                RelayCa::load_or_create(&config.data_dir)?,
                crate::ssh_ca::SshCa::load_or_create(&config.data_dir)?,
            ),
        };
        let ca = Arc::new(ca);
        store
            .set_meta(META_TUNNEL_ADDR, &config.public_tunnel_addr)
            .await?;
        let registry = Arc::new(Registry::default());
        let live = Arc::new(crate::live::LiveSessions::default());
        let audit = Arc::new(AuditLog::open(&store)?);
        let metrics = Arc::new(Metrics::default());
        let health = Arc::new(Health::new(store.clone()));
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let sessions = TaskTracker::new();

        let tunnel_closing = CancellationToken::new();
        let tunnel_ctx = Arc::new(tunnel::server::TunnelCtx {
            closing: tunnel_closing.clone(),
            store: store.clone(),
            ca: ca.clone(),
            registry: registry.clone(),
            metrics: metrics.clone(),
            audit: audit.clone(),
            max_connections_per_connector: config.max_connections_per_connector,
            enrolments: Default::default(),
        });
        let endpoint = start_tunnel(&config, tunnel_ctx, &health, &shutdown, &tasks)?;
        let tunnel_addr = endpoint.local_addr()?;
        let (tls, https_cert) = https_tls(&config, &ca)?;
        let http01_tokens = Arc::new(Http01Tokens::default());
        let acme = match &config.acme {
            Some(settings) => Some(Acme::new(
                settings.clone(),
                &config.data_dir,
                https_cert.clone(),
                http01_tokens.clone(),
                metrics.clone(),
            )?),
            None => None,
        };
        let policy = start_policy(&config, &audit, &shutdown, &tasks)?;

        store
            .set_meta(admin::META_PUBLIC_URL, &config.public_url.origin)
            .await?;
        // One context for the admin socket and the admin pages: the same
        // commands on the same state.
        let admin_ctx = Arc::new(AdminCtx {
            store: store.clone(),
            ca: ca.clone(),
            registry: Some(registry.clone()),
            policy: Some(policy.clone()),
            audit: audit.clone(),
            live: Some(live.clone()),
            acme: acme.clone(),
        });
        let state = Arc::new(AppState {
            store: store.clone(),
            identity: Arc::new(Identity::new(store.clone())?),
            registry: registry.clone(),
            metrics: metrics.clone(),
            public: config.public_url.clone(),
            sessions: sessions.clone(),
            ssh_ca: Arc::new(ssh_ca),
            cluster: cluster.clone(),
            service_cas: Default::default(),
            data_dir: config.data_dir.clone(),
            ssh_cert_ttl: config.ssh_cert_ttl,
            policy: policy.clone(),
            audit: audit.clone(),
            live: live.clone(),
            admin: admin_ctx.clone(),
            max_sessions_per_user: config.max_sessions_per_user,
            max_sessions_per_user_per_service: config.max_sessions_per_user_per_service,
            sso: Arc::new(crate::oidc::Sso::new(
                config.oidc.clone(),
                &config.public_url.origin,
                config.password_sign_in,
            )?),
        });
        let metrics_router =
            crate::metrics::router(metrics.clone(), registry.clone(), health.clone());
        let (https, https_addr) =
            start_https(&config, &caps, state, tls, &metrics, &health, &tasks)?;
        let (metrics_http, metrics_addr) = start_metrics(&config, metrics_router, &tasks)?;
        let acme_http = start_certificate_renewal(
            &config,
            https_cert,
            acme,
            http01_tokens,
            &metrics,
            &shutdown,
            &tasks,
        )?;
        let acme_http_addr = acme_http.as_ref().map(|(_, addr)| *addr);

        start_admin_socket(&config, admin_ctx.clone(), &shutdown, &tasks);
        let fenced = CancellationToken::new();
        if let Some(pg) = store.postgres() {
            let registration = crate::cluster::Registration::register(
                pg,
                &config.relay_id,
                &config.public_tunnel_addr,
                &config.public_url.origin,
            )
            .await?;
            tasks.spawn(registration.renew_until(pg.clone(), shutdown.clone(), fenced.clone()));
        }
        start_audit_retention(&config, audit.clone(), &shutdown, &tasks);

        tracing::info!(
            https = %https_addr,
            tunnel = %tunnel_addr,
            fd_limit = caps.fd_limit,
            max_https = caps.max_https,
            max_https_per_address =
                listener::per_address_cap(caps.max_https, config.https_limits.max_per_address),
            public_url = %config.public_url.origin,
            ca_fingerprint = %ca.fingerprint(),
            "relay listening"
        );
        Ok(Self {
            admin: admin_ctx,
            store,
            audit,
            ca,
            registry,
            live,
            https_addr,
            tunnel_addr,
            metrics_addr,
            acme_http_addr,
            acme_http,
            config,
            shutdown,
            tasks,
            sessions,
            https,
            metrics_http,
            health,
            endpoint,
            tunnel_closing,
            fenced,
        })
    }

    /// Cancelled when a newer process with this relay's id has fenced this
    /// one (PostgreSQL store): the relay must stop serving. Never cancelled
    /// on sled.
    pub fn fenced(&self) -> CancellationToken {
        self.fenced.clone()
    }

    /// Runs one admin command in this relay, as its admin socket would
    /// (`sallyport-relay user add ...` while it runs); the output, or the
    /// error the CLI would print. Runs on a blocking thread, as the admin
    /// socket's commands do.
    pub async fn admin(&self, req: crate::admin::Request) -> Result<String, String> {
        let ctx = self.admin.clone();
        tokio::task::spawn_blocking(move || crate::admin::execute(&ctx, req))
            .await
            .map_err(|e| e.to_string())?
    }

    /// Stops taking new sessions, tells connectors to drain, waits up to the
    /// drain timeout for open sessions, then closes everything.
    pub async fn shutdown(self) {
        let drain = self.config.drain_timeout;
        tracing::info!(?drain, "relay shutting down");
        self.health.stopping();
        self.shutdown.cancel();
        self.https.graceful_shutdown(Some(drain));
        self.metrics_http.shutdown();
        if let Some((handle, _)) = &self.acme_http {
            handle.shutdown();
        }
        self.tasks.close();
        // Upgraded WebSockets are no longer the HTTP server's connections:
        // wait for the session pipes themselves, up to the drain time. The
        // tunnel connection tasks end when connectors close or the endpoint does.
        self.sessions.close();
        if !self.sessions.is_empty() {
            tracing::info!(
                open = self.sessions.len(),
                "waiting for open sessions to finish"
            );
        }
        let _ = tokio::time::timeout(drain, self.sessions.wait()).await;
        self.tunnel_closing.cancel();
        self.endpoint.close(
            sallyport_proto::tunnel::Code::Done.code().into(),
            b"relay shutting down",
        );
        let _ = tokio::time::timeout(Duration::from_secs(2), self.tasks.wait()).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        if let Err(e) = self.store.flush().await {
            tracing::error!(error = %e, "final store flush failed");
        }
    }
}

/// How many HTTPS connections the relay takes: every one is a file
/// descriptor, so the cap stays below the open-file limit.
struct HttpsCaps {
    /// The open-file limit, raised as far as the kernel allows.
    fd_limit: u64,
    /// Most HTTPS connections at once.
    max_https: usize,
}

impl HttpsCaps {
    /// Takes all the file descriptors the kernel allows this process, then
    /// caps connections below it (warning when the configured cap is higher).
    fn from_fd_limit(config: &ServeConfig) -> Self {
        // Every HTTPS connection is a file descriptor: take all the kernel
        // allows this process, then cap connections below it.
        let fd_limit = match listener::raise_fd_limit() {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read or raise the open-file limit; assuming 1024");
                1024
            }
        };
        let https_limits = config.https_limits;
        let max_https = listener::total_cap(fd_limit, https_limits.max_total);
        if https_limits.max_total.is_some_and(|n| n > max_https) {
            tracing::warn!(
                configured = https_limits.max_total,
                max_https,
                fd_limit,
                "--max-https-connections is above the open-file limit less {}; using {max_https}",
                listener::FD_RESERVE
            );
        }
        Self {
            fd_limit,
            max_https,
        }
    }
}

/// The cluster's secrets, when the store is PostgreSQL: the cluster key
/// read from `--cluster-key-file` (required then). `None` on sled.
async fn open_cluster(
    config: &ServeConfig,
    store: &Store,
) -> anyhow::Result<Option<crate::cluster::ClusterSecrets>> {
    let Some(pg) = store.postgres() else {
        return Ok(None);
    };
    let path = config
        .cluster_key_file
        .as_deref()
        .ok_or(crate::cluster::ClusterError::NoKeyFile)?;
    let key = crate::cluster::ClusterKey::load(path)?;
    Ok(Some(
        crate::cluster::ClusterSecrets::new(pg.clone(), key).adopting(&config.data_dir),
    ))
}

/// Makes the data dir private (warning when it was not) and opens the store in it.
async fn open_store(config: &ServeConfig) -> anyhow::Result<Store> {
    let repaired = crate::data_dir::prepare(&config.data_dir)?;
    if repaired.were_readable > 0 {
        tracing::warn!(
            data_dir = %config.data_dir.display(),
            files = repaired.were_readable,
            "the data dir was readable by other users; it is private now (0700, files 0600): \
             if others could log in here, consider its keys exposed"
        );
    }
    Ok(config.store.open(&config.data_dir).await?)
}

/// Binds the tunnel listeners (QUIC on UDP, and TLS on TCP unless turned
/// off) and serves connectors on them until `shutdown`.
fn start_tunnel(
    config: &ServeConfig,
    ctx: Arc<tunnel::server::TunnelCtx>,
    health: &Arc<Health>,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) -> anyhow::Result<quinn::Endpoint> {
    let socket = std::net::UdpSocket::bind(config.listen_tunnel).with_context(|| {
        format!(
            "cannot listen for connectors on udp {}",
            config.listen_tunnel
        )
    })?;
    let endpoint = quinn::Endpoint::new(
        pki::tunnel_endpoint_config(&config.data_dir)?,
        Some(tunnel::server_config(&ctx.ca)?),
        socket,
        Arc::new(quinn::TokioRuntime),
    )?;
    if let Some(addr) = config.listen_tunnel_tcp {
        match std::net::TcpListener::bind(addr) {
            Ok(listener) => {
                listener.set_nonblocking(true)?;
                let tcp = tunnel::TcpTunnel {
                    ctx: ctx.clone(),
                    listener: tokio::net::TcpListener::from_std(listener)?,
                    tls: Arc::new(tunnel::tls_config(&ctx.ca)?),
                };
                tasks.spawn(tcp.run(shutdown.clone(), tasks.clone()));
            }
            Err(e) if config.listen_tunnel_tcp_is_default => tracing::warn!(
                %addr, error = %e,
                "cannot listen for connectors on tcp; connectors whose network blocks UDP cannot connect \
                 (set --listen-tunnel-tcp to another address, or \"\" to turn this off)"
            ),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot listen for connectors on tcp {addr}"))
            }
        }
    }
    let server = TunnelServer {
        ctx,
        endpoint: endpoint.clone(),
    };
    let (health, shutdown, inner) = (health.clone(), shutdown.clone(), tasks.clone());
    health.set(Part::Tunnel, true);
    tasks.spawn(async move {
        server.run(shutdown, inner).await;
        health.set(Part::Tunnel, false);
    });
    Ok(endpoint)
}

/// The HTTPS listener's TLS settings: a resolver holding its certificate
/// (the configured one, or one the relay CA issues, until ACME has one),
/// and device certificates asked for.
fn https_tls(
    config: &ServeConfig,
    ca: &Arc<RelayCa>,
) -> anyhow::Result<(rustls::ServerConfig, Arc<HttpsCert>)> {
    let first = match &config.tls {
        Some((cert, key)) => crate::tls::files::load_pair(cert, key)?,
        None => {
            let (chain, key) =
                pki::https_identity(&config.data_dir, None, &config.public_url.host)?;
            rustls::sign::CertifiedKey::from_der(
                chain,
                key,
                &sallyport_common::tls::crypto_provider(),
            )
            .context("the relay's own HTTPS certificate (https.pem, https.key in the data dir) and key do not match")?
        }
    };
    let resolver = HttpsCert::new(first);
    // Device certificates: asked for, never required. A browser without
    // one connects as before; the policy decides what a device is worth.
    let devices = pki::DeviceCertVerifier::new(ca)?;
    let mut tls =
        rustls::ServerConfig::builder_with_provider(sallyport_common::tls::crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(devices)
            .with_cert_resolver(resolver.clone());
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    if config
        .acme
        .as_ref()
        .is_some_and(|a| a.challenge == Challenge::TlsAlpn01)
    {
        // Only validation servers offer it, and they get only the
        // challenge certificate (see `HttpsCert`).
        tls.alpn_protocols
            .push(crate::tls::resolver::ACME_TLS_ALPN.to_vec());
    }
    Ok((tls, resolver))
}

/// Keeps the HTTPS certificate current until `shutdown`: the files are
/// reloaded on SIGHUP and change, or ACME orders and renews one (with its
/// HTTP-01 listener, whose handle and address are returned).
#[allow(clippy::too_many_arguments)]
fn start_certificate_renewal(
    config: &ServeConfig,
    https_cert: Arc<HttpsCert>,
    acme: Option<Arc<Acme>>,
    http01_tokens: Arc<Http01Tokens>,
    metrics: &Arc<Metrics>,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) -> anyhow::Result<Option<(axum_server::Handle<SocketAddr>, SocketAddr)>> {
    if let Some((cert_path, key_path)) = &config.tls {
        let watch = FileWatch {
            cert_path: cert_path.clone(),
            key_path: key_path.clone(),
            cert: https_cert,
            metrics: metrics.clone(),
        };
        tasks.spawn(watch.run(shutdown.clone()));
    }
    let (Some(acme), Some(settings)) = (acme, &config.acme) else {
        return Ok(None);
    };
    let http = match settings.challenge {
        Challenge::Http01 => Some(crate::tls::http01::start(
            settings.listen_http,
            http01_tokens,
            config.public_url.origin.clone(),
            config.https_limits,
            tasks,
        )?),
        Challenge::TlsAlpn01 => None,
    };
    tracing::info!(
        domains = %settings.domains.join(","),
        directory = %settings.directory,
        challenge = ?settings.challenge,
        "the HTTPS certificate comes from ACME"
    );
    tasks.spawn(acme.run(shutdown.clone()));
    Ok(http)
}

/// Loads the access policy from the config file and reloads it when the
/// file changes, until `shutdown`.
fn start_policy(
    config: &ServeConfig,
    audit: &Arc<AuditLog>,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) -> anyhow::Result<Arc<PolicyHandle>> {
    let policy = Arc::new(
        PolicyHandle::load(config.config_file.clone(), config.ssh_cert_services.clone())
            .map_err(anyhow::Error::msg)?,
    );
    if !policy.current().configured {
        tracing::warn!(
            "no [policy] in the config file: every signed-in user may reach every service"
        );
    }
    tasks.spawn(policy.clone().watch(shutdown.clone(), audit.clone()));
    Ok(policy)
}

/// Binds the HTTPS listener and serves the web app on it, behind the
/// connection caps and timeouts.
fn start_https(
    config: &ServeConfig,
    caps: &HttpsCaps,
    state: Arc<AppState>,
    tls: rustls::ServerConfig,
    metrics: &Arc<Metrics>,
    health: &Arc<Health>,
    tasks: &TaskTracker,
) -> anyhow::Result<(axum_server::Handle<SocketAddr>, SocketAddr)> {
    let https_limits = config.https_limits;
    let max_https = caps.max_https;
    let app = web::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let https = axum_server::Handle::new();
    let listener = std::net::TcpListener::bind(config.listen_https)
        .with_context(|| format!("cannot listen for HTTPS on tcp {}", config.listen_https))?;
    listener.set_nonblocking(true)?;
    let https_addr = listener.local_addr()?;
    let rustls_config = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls));
    // TCP_NODELAY: session bytes are small interactive writes (keystrokes,
    // prompts, SSH handshake messages); Nagle would hold them for an ACK.
    let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(rustls_config)
        .handshake_timeout(https_limits.handshake_timeout)
        .acceptor(axum_server::accept::NoDelayAcceptor::new());
    // Caps and timeouts around it: a connection over a cap is closed
    // before its TLS handshake (a trusted proxy's, once its PROXY header
    // has named the client).
    let limiter = Limiter::new(
        "https",
        max_https,
        listener::per_address_cap(max_https, https_limits.max_per_address),
        Some(metrics.clone()),
    );
    let fwd = &config.forwarding;
    if !fwd.trusted_proxies.is_empty() {
        let ranges: Vec<String> = fwd.trusted_proxies.iter().map(|c| c.to_string()).collect();
        tracing::info!(
            trusted_proxies = %ranges.join(","),
            proxy_protocol = fwd.proxy_protocol,
            header = ?fwd.header,
            "the client's address is taken from trusted proxies"
        );
    }
    let acceptor = GuardAcceptor::new(
        acceptor,
        limiter,
        https_limits,
        Some(metrics.clone()),
        Arc::new(config.forwarding.clone()),
    );
    let server = axum_server::from_tcp(listener)?
        .acceptor(acceptor)
        .handle(https.clone());
    // Bound already: connections wait in the backlog until it serves.
    let health = health.clone();
    health.set(Part::Https, true);
    tasks.spawn(async move {
        if let Err(e) = server.serve(app).await {
            tracing::error!(error = %e, "HTTPS listener failed");
        }
        health.set(Part::Https, false);
    });
    Ok((https, https_addr))
}

/// Metrics: plain HTTP on an address of its own (loopback by default), or
/// none. A default address that is taken turns it off with a warning; a
/// configured one that cannot be bound is an error.
fn start_metrics(
    config: &ServeConfig,
    metrics_router: axum::Router,
    tasks: &TaskTracker,
) -> anyhow::Result<(axum_server::Handle<SocketAddr>, Option<SocketAddr>)> {
    let https_limits = config.https_limits;
    let metrics_http = axum_server::Handle::new();
    let metrics_addr = match config.metrics_listen {
        None => {
            tracing::info!("metrics listener off (--metrics-listen is empty)");
            None
        }
        Some(addr) => match std::net::TcpListener::bind(addr) {
            Err(e) if config.metrics_listen_is_default => {
                tracing::warn!(
                    "metrics listener off: cannot listen on tcp {addr} ({e}); set \
                     --metrics-listen to a free address to have /metrics"
                );
                None
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "cannot listen for metrics on tcp {addr}: set --metrics-listen to a free \
                     address, or to \"\" to turn the metrics listener off"
                )))
            }
            Ok(listener) => {
                let local = listener.local_addr()?;
                let limiter = Limiter::new(
                    "metrics",
                    listener::METRICS_MAX_CONNECTIONS,
                    listener::METRICS_MAX_CONNECTIONS,
                    None,
                );
                let acceptor = GuardAcceptor::new(
                    axum_server::accept::DefaultAcceptor::new(),
                    limiter,
                    https_limits,
                    None,
                    // Scrapers connect directly: nobody speaks for them.
                    Default::default(),
                );
                let mut server = axum_server::from_tcp(listener)?
                    .acceptor(acceptor)
                    .handle(metrics_http.clone());
                // A scrape's request head is a few hundred bytes.
                server
                    .http_builder()
                    .http1()
                    .max_buf_size(listener::METRICS_MAX_REQUEST_HEAD);
                tasks.spawn(async move {
                    if let Err(e) = server.serve(metrics_router.into_make_service()).await {
                        tracing::error!(error = %e, "metrics listener failed");
                    }
                });
                tracing::info!(
                    "metrics listener on http://{local}/metrics (and /healthz, /readyz)"
                );
                Some(local)
            }
        },
    };
    Ok((metrics_http, metrics_addr))
}

/// Serves admin commands on the socket in the data dir until `shutdown`.
fn start_admin_socket(
    config: &ServeConfig,
    admin_ctx: Arc<AdminCtx>,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) {
    let sock = admin::socket_path(&config.data_dir);
    let sd = shutdown.clone();
    tasks.spawn(async move {
        if let Err(e) = admin::serve_socket(sock, admin_ctx, sd).await {
            tracing::error!(error = %e, "admin socket failed");
        }
    });
}

/// Audit retention: drops events older than the retention at start and
/// every [`AUDIT_PRUNE_INTERVAL`], until `shutdown`.
fn start_audit_retention(
    config: &ServeConfig,
    audit: Arc<AuditLog>,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) {
    // Retention: at start and every few minutes.
    let retention = config.audit_retention;
    let prune_audit = audit;
    let sd = shutdown.clone();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(AUDIT_PRUNE_INTERVAL);
        loop {
            tokio::select! {
                _ = sd.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = sallyport_common::time::now_millis();
            match prune_audit.prune(retention, now).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(dropped = n, "audit retention"),
                Err(e) => tracing::error!(error = %e, "audit retention failed"),
            }
        }
    });
}
