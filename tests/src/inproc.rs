//! The data path in one process: a relay ([`Relay::start`]) and one or more
//! connectors ([`sallyport_connector::run`]) as tasks of the test's own
//! runtime, serving a TCP echo service on loopback, reached by the session
//! WebSocket a client opens. No sshd, no child processes: a test of the
//! byte pipe, half-close, failover and drain runs in milliseconds and
//! fails with the library's own error, not a log tail.
//!
//! The setup is `sallyport-relay demo`'s: the relay's admin commands
//! ([`Relay::admin`]) add the user and the connectors' enrolment tokens,
//! and each connector enrols with its token into a directory of its own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use sallyport_client::api::{self, RelayUrl, Session};
use sallyport_proto::client::Control;
use sallyport_relay::admin_api::Request;
use sallyport_relay::PublicUrl;
use sallyport_relay::Relay;
use sallyport_relay::ServeConfig;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_util::sync::CancellationToken;

use crate::{free_port, PATIENCE};

/// The echo service's name at the relay.
pub const SERVICE: &str = "echo";
/// The user every harness signs in as.
pub const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery staple";

/// Bytes per WebSocket message the client sends (the browser sends what
/// its SSH session writes, a packet at a time).
const CLIENT_CHUNK: usize = 32 * 1024;

/// What the echo service sends after the client's end of input, before it
/// closes: enough bytes that they cross the pipe in many messages, ending
/// in a line a person would recognise. A client that stops reading at its
/// own end of input (no half-close) misses them.
pub fn after_eof() -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    bytes.extend_from_slice(b"\n-- echo: end of input --\n");
    bytes
}

/// A TCP echo service on loopback: every byte back as it came; at the
/// client's end of input, [`after_eof`], then its own end. Stops when
/// dropped.
pub struct Echo {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Echo {
    /// Listens on an ephemeral loopback port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the echo service");
        let addr = listener.local_addr().expect("echo address");
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                connections.spawn(echo(tcp));
            }
        });
        Self { addr, task }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo(mut tcp: tokio::net::TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tcp.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                if tcp.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
    let _ = tcp.write_all(&after_eof()).await;
    let _ = tcp.shutdown().await;
}

/// A connector running as a task, serving [`SERVICE`].
pub struct Connector {
    /// Its enrolled name.
    pub name: String,
    stop: CancellationToken,
    task: Option<JoinHandle<Result<(), sallyport_connector::ConnectorError>>>,
}

impl Connector {
    /// Stops it (as SIGTERM would: it drains) and waits until it has.
    pub async fn stop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let result = tokio::time::timeout(PATIENCE, task)
                .await
                .expect("the connector to stop")
                .expect("the connector task");
            assert!(result.is_ok(), "connector {}: {result:?}", self.name);
        }
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A relay, its connectors and the echo service, in this process.
pub struct InProc {
    /// `None` once [`InProc::begin_shutdown`] took it.
    relay: Option<Relay>,
    /// The connectors, in the order they were added.
    pub connectors: Vec<Connector>,
    /// The service every connector points at.
    pub echo: Echo,
    url: RelayUrl,
    tls: Arc<rustls::ClientConfig>,
    /// [`USER`]'s bearer token.
    token: String,
    dir: tempfile::TempDir,
}

impl InProc {
    /// A relay with `connectors` (their names) enrolled and online, each
    /// serving [`SERVICE`], and [`USER`] signed in. `drain_timeout` is how
    /// long the relay's shutdown waits for live sessions.
    pub async fn start(connectors: &[&str], drain_timeout: Duration) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let https_port = free_port();
        let tunnel_port = free_port();
        let listen_tunnel = SocketAddr::from(([127, 0, 0, 1], tunnel_port));
        let public_url = format!("https://localhost:{https_port}");
        let config = ServeConfig {
            data_dir: dir.path().join("relay"),
            store: sallyport_relay::StoreLocation::Sled,
            cluster_key_file: None,
            relay_id: "inproc".to_owned(),
            listen_https: SocketAddr::from(([127, 0, 0, 1], https_port)),
            listen_tunnel,
            listen_tunnel_tcp: Some(listen_tunnel),
            listen_tunnel_tcp_is_default: false,
            public_url: PublicUrl::parse(&public_url).expect("public URL"),
            public_tunnel_addr: listen_tunnel.to_string(),
            tls: None,
            acme: None,
            drain_timeout,
            ssh_cert_ttl: sallyport_relay::limits::DEFAULT_CERT_TTL,
            ssh_cert_services: Vec::new(),
            config_file: None,
            audit_retention: Default::default(),
            max_connections_per_connector:
                sallyport_relay::limits::DEFAULT_MAX_CONNECTIONS_PER_CONNECTOR,
            max_sessions_per_user: sallyport_relay::limits::DEFAULT_MAX_SESSIONS_PER_USER,
            max_sessions_per_user_per_service:
                sallyport_relay::limits::DEFAULT_MAX_SESSIONS_PER_USER_PER_SERVICE,
            metrics_listen: None,
            metrics_listen_is_default: false,
            log_level: None,
            https_limits: Default::default(),
            forwarding: Default::default(),
            oidc: Vec::new(),
            password_sign_in: true,
        };
        let relay = Relay::start(config).await.expect("the relay starts");
        let pem = std::fs::read_to_string(dir.path().join("relay/https.pem")).expect("https.pem");
        let tls = api::tls_config(Some(&pem)).expect("TLS config");
        let url = RelayUrl::parse(&public_url).expect("relay URL");
        let mut env = Self {
            relay: Some(relay),
            connectors: Vec::new(),
            echo: Echo::start().await,
            url,
            tls,
            token: String::new(),
            dir,
        };
        env.admin(Request::UserAdd {
            name: USER.into(),
            password: PASSWORD.into(),
            groups: Vec::new(),
        })
        .await;
        let login = api::login(&env.url, env.tls.clone(), USER, PASSWORD, None)
            .await
            .expect("sign-in");
        env.token = login.token;
        for name in connectors {
            env.add_connector(name).await;
        }
        env
    }

    /// The running relay.
    pub fn relay(&self) -> &Relay {
        self.relay.as_ref().expect("the relay is running")
    }

    /// Runs one admin command, as `sallyport-relay` would over its socket.
    async fn admin(&self, req: Request) -> String {
        self.relay().admin(req).await.expect("admin command")
    }

    /// Enrols connector `name` serving [`SERVICE`] and waits until it is online.
    pub async fn add_connector(&mut self, name: &str) {
        let out = self
            .admin(Request::ConnectorAdd {
                name: name.into(),
                ttl_secs: 600,
                services: vec![SERVICE.into()],
                replace: false,
            })
            .await;
        let token = out.lines().last().expect("a token").to_owned();
        let stop = CancellationToken::new();
        let spec = format!("{SERVICE}=tcp://{}", self.echo.addr);
        let task = tokio::spawn(sallyport_connector::run(
            sallyport_connector::RunConfig {
                token: Some(token),
                state_dir: self.dir.path().join(format!("connector-{name}")),
                relay: None,
                services: vec![sallyport_connector::parse_service(&spec).expect("service spec")],
                ha_connections: 1,
                drain_timeout: Duration::from_secs(5),
                metrics_listen: None,
                // SALLYPORT_TRANSPORT, as the connector's own flag reads
                // it: the suite runs once per transport.
                transport: sallyport_connector::TransportConfig {
                    choice: crate::transport::choice(),
                    ..Default::default()
                },
            },
            stop.clone(),
        ));
        let registry = self.relay().registry.clone();
        let online = async {
            while !registry.online().contains_key(name) {
                if task.is_finished() {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            true
        };
        let online = tokio::time::timeout(PATIENCE, online).await;
        if !matches!(online, Ok(true)) {
            let why = if task.is_finished() {
                format!("{:?}", task.await)
            } else {
                "still trying".into()
            };
            panic!("connector {name} did not come online: {why}");
        }
        self.connectors.push(Connector {
            name: name.into(),
            stop,
            task: Some(task),
        });
    }

    /// Opens a session to [`SERVICE`] as the browser does (asking for the
    /// relay's `opened` message); `Err` is the relay's reason.
    pub async fn open(&self) -> Result<EchoSession, String> {
        let service = format!("{SERVICE}?opened=1");
        let mut ws = api::open_session(&self.url, self.tls.clone(), &self.token, &service)
            .await
            .map_err(|e| e.to_string())?;
        let first = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .map_err(|_| "no `opened` from the relay".to_string())?;
        match first {
            Some(Ok(Message::Text(t))) => match Control::parse(t.as_str()) {
                Ok(Control::Opened { connector, .. }) => Ok(EchoSession { ws, connector }),
                Ok(Control::Error { reason }) => Err(reason),
                other => Err(format!("expected `opened`, got {other:?}")),
            },
            other => Err(format!("expected `opened`, got {other:?}")),
        }
    }

    /// Starts the relay's shutdown (SIGTERM's): it takes no new sessions
    /// and waits up to its drain timeout for live ones. The task ends when
    /// the relay has stopped.
    pub fn begin_shutdown(&mut self) -> JoinHandle<()> {
        let relay = self.relay.take().expect("the relay is running");
        tokio::spawn(relay.shutdown())
    }
}

/// A live session to the echo service.
pub struct EchoSession {
    ws: Session,
    /// The connector that carries it (the relay's `opened` message).
    pub connector: String,
}

/// Everything a session delivered until the relay closed it.
#[derive(Debug, Default)]
pub struct Received {
    /// The service's bytes, in order.
    pub bytes: Vec<u8>,
    /// The relay said the service's side ended (`eof`).
    pub eof: bool,
    /// The reason of the relay's `error`, if it sent one.
    pub error: Option<String>,
}

impl EchoSession {
    /// Sends `bytes` in messages of at most [`CLIENT_CHUNK`].
    pub async fn send(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(CLIENT_CHUNK) {
            self.ws
                .send(Message::Binary(Bytes::copy_from_slice(chunk)))
                .await
                .expect("send session bytes");
        }
    }

    /// Sends one control message as text (a client event, as the browser
    /// client reports them).
    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("send a control message");
    }

    /// Reads until the relay acknowledges event `seq` of `session` (or a
    /// later one); returns every acknowledgement on the way, in order, as
    /// `(session, seq)`. Session bytes are skipped.
    pub async fn acks_until(&mut self, session: &str, seq: u64) -> Vec<(String, u64)> {
        let mut acks = Vec::new();
        loop {
            let msg = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("an acknowledgement within the patience");
            match msg {
                Some(Ok(Message::Text(t))) => match Control::parse(t.as_str()) {
                    Ok(Control::Ack { session: s, seq: n }) => {
                        let done = s == session && n >= seq;
                        acks.push((s, n));
                        if done {
                            return acks;
                        }
                    }
                    Ok(Control::Error { reason }) => {
                        panic!("the relay ended the session: {reason}")
                    }
                    _ => {}
                },
                Some(Ok(_)) => {}
                other => panic!("the session ended before the ack of {seq}: {other:?}"),
            }
        }
    }

    /// Reads exactly `n` of the service's bytes.
    pub async fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut got = Vec::new();
        while got.len() < n {
            let msg = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("the service's bytes within the patience");
            match msg {
                Some(Ok(Message::Binary(b))) => got.extend_from_slice(&b),
                Some(Ok(Message::Text(t))) => {
                    panic!("{} of {n} bytes, then {t}", got.len())
                }
                Some(Ok(_)) => {}
                other => panic!("{} of {n} bytes, then {other:?}", got.len()),
            }
        }
        assert_eq!(got.len(), n, "more bytes than sent");
        got
    }

    /// Sends `bytes`, then the client's end of input (`eof`), while reading
    /// everything the service sends until the relay closes the session.
    pub async fn transfer(self, bytes: &[u8]) -> Received {
        let (mut tx, mut rx) = self.ws.split();
        let send = async {
            for chunk in bytes.chunks(CLIENT_CHUNK) {
                let msg = Message::Binary(Bytes::copy_from_slice(chunk));
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
            let _ = tx.send(Message::Text(Control::Eof.to_text().into())).await;
        };
        let (_, got) =
            tokio::time::timeout(PATIENCE, futures::future::join(send, receive(&mut rx)))
                .await
                .expect("the session to end within the patience");
        got
    }

    /// Reads until the relay closes the session, sending nothing more.
    pub async fn read_to_end(mut self) -> Received {
        tokio::time::timeout(PATIENCE, receive(&mut self.ws))
            .await
            .expect("the session to end within the patience")
    }
}

/// Everything `rx` delivers until the relay closes the session.
async fn receive<S>(rx: &mut S) -> Received
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut got = Received::default();
    while let Some(msg) = rx.next().await {
        match msg {
            Ok(Message::Binary(b)) => got.bytes.extend_from_slice(&b),
            Ok(Message::Text(t)) => match Control::parse(t.as_str()) {
                Ok(Control::Eof) => got.eof = true,
                Ok(Control::Error { reason }) => got.error = Some(reason),
                _ => {}
            },
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    got
}
