//! Relay start options (extra flags, an open-file limit) and HTTPS clients
//! whose socket is bound to a chosen loopback address, for the tests of the
//! HTTPS listener's caps and timeouts.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use sallyport_client::api;
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::WebSocketStream;

use crate::{bin, RelayProc};

/// How a [`RelayProc`] starts beyond the harness's own flags.
#[derive(Debug, Clone, Default)]
pub struct RelayOptions {
    /// Extra `serve` flags (a `--metrics-listen` here replaces the harness's).
    pub args: Vec<String>,
    /// The address the tunnel listens on and enrolment tokens name
    /// [default: 127.0.0.1]: another, for connectors in another network
    /// namespace.
    pub tunnel_ip: Option<std::net::IpAddr>,
    /// Start the relay under `ulimit -n N` (soft and hard), as a small host would.
    pub fd_limit: Option<u64>,
    /// Keep its state in a PostgreSQL of its own whatever
    /// `SALLYPORT_TEST_STORE` says (see [`crate::store_is_postgres`]).
    pub postgres: bool,
}

impl RelayOptions {
    /// The command that runs `sallyport-relay` (under the open-file limit, if any).
    pub fn command(&self) -> Command {
        match self.fd_limit {
            Some(n) => {
                let mut cmd = Command::new("sh");
                cmd.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(bin("sallyport-relay"));
                cmd
            }
            None => Command::new(bin("sallyport-relay")),
        }
    }

    /// Whether the relay listens for connectors on TCP too: when this run
    /// is over TCP (`SALLYPORT_TRANSPORT=tcp`), for connectors in another
    /// namespace (`tunnel_ip`), or when the flags set it.
    pub fn tunnel_tcp(&self) -> bool {
        crate::transport::choice() == sallyport_connector::TransportChoice::Tcp
            || self.tunnel_ip.is_some()
            || self.args.iter().any(|a| a == "--listen-tunnel-tcp")
    }

    /// Whether the flags set `--metrics-listen` themselves.
    pub fn sets_metrics_listen(&self) -> bool {
        self.args.iter().any(|a| a == "--metrics-listen")
    }
}

/// Raises this test process's soft open-file limit to its hard limit (a
/// test that holds a thousand sockets needs more than the usual 1024) and
/// returns the new soft limit.
pub fn raise_own_fd_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).expect("raise the open-file limit")
}

/// The relay's open-file limit as the kernel holds it (soft, hard).
pub fn fd_limits_of(pid: u32) -> (String, String) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("/proc/PID/limits");
    let line = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files line");
    let mut cols = line["Max open files".len()..].split_whitespace();
    (
        cols.next().unwrap_or_default().to_owned(),
        cols.next().unwrap_or_default().to_owned(),
    )
}

/// A TCP connection to the relay's HTTPS port from `source` (any port).
pub async fn tcp_from(relay: &RelayProc, source: IpAddr) -> std::io::Result<TcpStream> {
    let socket = match source {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(relay.https_addr()).await
}

/// TLS settings that trust the relay's self-signed certificate.
pub fn relay_tls(relay: &RelayProc) -> Arc<rustls::ClientConfig> {
    let pem = std::fs::read_to_string(relay.data_dir.join("https.pem")).expect("https.pem");
    api::tls_config(Some(&pem)).expect("TLS config")
}

/// A TLS connection to the relay from `source`, as `localhost`.
pub async fn tls_from(
    relay: &RelayProc,
    tls: Arc<rustls::ClientConfig>,
    source: IpAddr,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = tcp_from(relay, source).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("server name");
    tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
}

/// A relay's ports and certificate, owned, for blocking helpers run off
/// an async test's runtime.
#[derive(Debug, Clone)]
pub struct RelayAddrs {
    pub https_port: u16,
    pub metrics_port: u16,
    /// The relay's self-signed HTTPS certificate.
    pub ca: PathBuf,
}

impl RelayAddrs {
    pub fn of(relay: &RelayProc) -> Self {
        Self {
            https_port: relay.https_port,
            metrics_port: relay.metrics_port,
            ca: relay.data_dir.join("https.pem"),
        }
    }

    /// A counter from the metrics listener; 0 when it is missing.
    pub fn metric(&self, name: &str) -> u64 {
        crate::metric_in(&crate::scrape_metrics(self.metrics_port), name).unwrap_or(0)
    }

    /// `POST /api/login` with curl bound to `source`: the status and the answer.
    pub fn login_from(&self, source: IpAddr, user: &str, password: &str) -> (u16, String) {
        let body = serde_json::json!({ "user": user, "password": password });
        let out = Command::new("curl")
            .args(["-s", "--http1.1", "--max-time", "30", "--cacert"])
            .arg(&self.ca)
            .args(["--interface", &source.to_string()])
            .args(["-o", "-", "-w", "\n%{http_code}"])
            .args([
                "-X",
                "POST",
                "-H",
                "content-type: application/json",
                "--data",
            ])
            .arg(body.to_string())
            .args([
                "--resolve",
                &format!("localhost:{}:127.0.0.1", self.https_port),
            ])
            .arg(format!("https://localhost:{}/api/login", self.https_port))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }
}

/// A TLS session WebSocket.
pub type Ws = WebSocketStream<TlsStream<TcpStream>>;

/// A session WebSocket to `service` over a connection from `source`, signed
/// in with the bearer `token`.
pub async fn session_from(relay: &RelayProc, source: IpAddr, token: &str, service: &str) -> Ws {
    use tungstenite::client::IntoClientRequest as _;
    let stream = tls_from(relay, relay_tls(relay), source)
        .await
        .expect("TLS to the relay");
    let mut req = format!("wss://localhost:{}/ws/{service}", relay.https_port)
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    match tokio_tungstenite::client_async(req, stream).await {
        Ok((ws, _)) => ws,
        Err(e) => panic!("the session WebSocket did not open: {e}"),
    }
}
