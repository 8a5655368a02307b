//! `sallyport-relay demo`: a relay, an in-process connector exposing the
//! local sshd as service `localhost`, and a user with a fresh password, in
//! one process with everything kept in one data dir.

mod ssh_target;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::admin::Request;
use crate::config::ServeConfig;
use crate::identity::hash_password;
use crate::store::UserRecord;
use crate::web::PublicUrl;
use crate::Relay;
use sallyport_common::secret::random_secret;
use sallyport_common::time::now_secs;

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Where the demo keeps its state [default: $XDG_DATA_HOME/sallyport-demo or ~/.local/share/sallyport-demo].
    #[arg(long, env = "SALLYPORT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// HTTPS listener.
    #[arg(long, env = "SALLYPORT_LISTEN_HTTPS", default_value = "127.0.0.1:8443")]
    pub listen_https: SocketAddr,
    /// QUIC listener for connectors.
    #[arg(
        long,
        env = "SALLYPORT_LISTEN_TUNNEL",
        default_value = "127.0.0.1:4433"
    )]
    pub listen_tunnel: SocketAddr,
    /// Plain-HTTP listener for Prometheus /metrics [default: none; the demo
    /// leaves 9464 to a relay that may already run on this machine].
    #[arg(long, env = "SALLYPORT_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// The SSH server the demo connector exposes as service `localhost`.
    #[arg(long, default_value = "127.0.0.1:22")]
    pub ssh_target: String,
}

fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(d).join("sallyport-demo");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".local/share/sallyport-demo")
}

pub async fn run(args: DemoArgs, stop: CancellationToken) -> anyhow::Result<()> {
    if !wait_for_ssh_target(&args.ssh_target, &stop).await? {
        return Ok(());
    }
    let data_dir = args.data_dir.unwrap_or_else(default_dir);
    let relay_dir = data_dir.join("relay");
    let connector_dir = data_dir.join("connector");
    let port = args.listen_https.port();
    let config = ServeConfig {
        data_dir: relay_dir.clone(),
        store: crate::config::StoreLocation::Sled,
        cluster_key_file: None,
        relay_id: crate::cluster::default_relay_id(),
        listen_https: args.listen_https,
        listen_tunnel: args.listen_tunnel,
        listen_tunnel_tcp: Some(args.listen_tunnel),
        listen_tunnel_tcp_is_default: true,
        public_url: PublicUrl::parse(&format!("https://localhost:{port}"))
            .map_err(anyhow::Error::msg)?,
        public_tunnel_addr: args.listen_tunnel.to_string(),
        tls: None,
        acme: None,
        drain_timeout: Duration::from_secs(5),
        ssh_cert_ttl: crate::ssh_ca::DEFAULT_CERT_TTL,
        ssh_cert_services: Vec::new(),
        config_file: None,
        audit_retention: Default::default(),
        max_connections_per_connector: crate::config::DEFAULT_MAX_CONNECTIONS_PER_CONNECTOR,
        max_sessions_per_user: crate::live::DEFAULT_MAX_SESSIONS_PER_USER,
        max_sessions_per_user_per_service: crate::live::DEFAULT_MAX_SESSIONS_PER_USER_PER_SERVICE,
        metrics_listen: match &args.metrics_listen {
            Some(text) => crate::config::parse_metrics_listen(text).map_err(anyhow::Error::msg)?,
            None => None,
        },
        metrics_listen_is_default: false,
        log_level: None,
        https_limits: Default::default(),
        forwarding: Default::default(),
        oidc: Vec::new(),
        password_sign_in: true,
    };
    let relay = Relay::start(config).await?;

    // A fresh password each start: the demo prints it, nobody has to remember it.
    let password = random_secret(12);
    relay
        .store
        .put_user(&UserRecord {
            name: "demo".into(),
            password_hash: hash_password(&password)?,
            groups: vec!["demo".into()],
            created: now_secs(),
            totp_secret: None,
            totp_pending: None,
            locked: None,
            sso: None,
        })
        .await?;

    let token = if sallyport_connector::Identity::exists(&connector_dir) {
        None
    } else {
        let out = relay
            .admin(Request::ConnectorAdd {
                name: format!(
                    "demo-{}",
                    random_secret(3)
                        .to_ascii_lowercase()
                        .replace(['-', '_'], "x")
                ),
                ttl_secs: 600,
                services: vec!["localhost".into()],
                replace: false,
            })
            .await
            .map_err(anyhow::Error::msg)?;
        out.lines().last().map(str::to_owned)
    };
    let connector_stop = CancellationToken::new();
    let connector = tokio::spawn(sallyport_connector::run(
        sallyport_connector::RunConfig {
            token,
            state_dir: connector_dir,
            relay: None,
            services: vec![("localhost".into(), args.ssh_target.clone())],
            ha_connections: 1,
            transport: Default::default(),
            drain_timeout: Duration::from_secs(5),
            metrics_listen: None,
        },
        connector_stop.clone(),
    ));
    // Wait until the connector is online, so what we print works at once.
    let online = async {
        while relay.registry.is_empty() && !connector.is_finished() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), online).await;
    if connector.is_finished() {
        let result = connector.await.context("demo connector task failed")?;
        relay.shutdown().await;
        result.context("the demo connector could not start")?;
        anyhow::bail!("the demo connector stopped");
    }

    let ca = relay_dir.join("https.pem");
    println!(
        "\nSallyport demo is running.\n\n\
         Relay:     https://localhost:{port}   (self-signed certificate: {ca})\n\
         User:      demo\n\
         Password:  {password}\n\
         Service:   localhost -> {target}\n\n\
         In a browser: open https://localhost:{port}, sign in as demo, pick `localhost`\n\
         and log in at the terminal's prompt with your own account's password.\n\n\
         With OpenSSH, in another terminal:\n\n  \
         cargo build --release -p sallyport-client   # builds the `sallyport` CLI into target/release\n  \
         target/release/sallyport login --relay https://localhost:{port} --ca-cert {ca}   # signs in through the browser\n  \
         ssh -o ProxyCommand='target/release/sallyport proxy %n' $USER@localhost\n\n\
         Without a browser, add `--user demo --password` to `sallyport login`: it asks for the password.\n\n\
         Press Ctrl-C to stop.",
        ca = ca.display(),
        target = args.ssh_target,
    );

    stop.cancelled().await;
    connector_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(6), connector).await;
    relay.shutdown().await;
    Ok(())
}

/// Waits until something answers at the SSH target, saying on the first
/// screen what to run if nothing does. `false` when stopped while waiting.
async fn wait_for_ssh_target(target: &str, stop: &CancellationToken) -> anyhow::Result<bool> {
    let mut told = false;
    loop {
        match ssh_target::probe(target).await {
            ssh_target::Probe::Answers => {
                if told {
                    println!("\n{target} answers now: starting the demo.");
                }
                return Ok(true);
            }
            ssh_target::Probe::Invalid(why) => {
                anyhow::bail!("--ssh-target {target}: {why}; give HOST:PORT, e.g. 127.0.0.1:22")
            }
            ssh_target::Probe::Silent(why) => {
                if !told {
                    println!(
                        "{}",
                        ssh_target::first_screen(target, &why, ssh_target::sshd_installed())
                    );
                    tracing::warn!(%target, %why, "no SSH server answers; waiting for one");
                    told = true;
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(false),
            _ = tokio::time::sleep(ssh_target::RETRY_EVERY) => {}
        }
    }
}
