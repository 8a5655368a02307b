//! The end-to-end test harness: real relay and connector processes, OpenSSH
//! `sshd` and `ssh`, on ephemeral loopback ports in a temporary directory.
//! Every process is killed when its handle drops; when a test fails, the
//! tail of each process's log is printed so CI output shows what happened.

pub mod cli_login;
pub mod client_ws;
pub mod compat;
pub mod inproc;
pub mod lifecycle;
pub mod lossy_udp;
pub mod metrics;
pub mod netns;
pub mod oidc;
pub mod packages;
pub mod postgres;
pub mod proxy;
pub mod raw_session;
pub mod screen;

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub mod https;
pub mod sshd_startups;
pub mod sshd_variants;
pub mod tls;
pub mod transport;

/// How long a test waits for something that should happen promptly.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Where the workspace's binaries are (`target/debug` next to the test binary).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/debug/deps/test-hash -> target/debug; target/release/bench -> target/release
    let mut dir = exe.parent().expect("target dir").to_owned();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    for b in ["sallyport-relay", "sallyport-connector", "sallyport"] {
        assert!(
            dir.join(b).exists(),
            "{} is missing: run `cargo build --workspace --bins` before the tests (scripts/test.sh does)",
            dir.join(b).display()
        );
    }
    dir
}

pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// A free TCP port on loopback (also free for UDP, checked).
pub fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let port = tcp.local_addr().expect("addr").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Waits for `child` to exit, polling every 50 ms; after `limit` kills it
/// and returns `None`.
pub fn wait_or_kill(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after [`PATIENCE`].
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn wait_for_tcp(addr: SocketAddr) {
    wait_for(&format!("{addr} to accept connections"), || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()
    });
}

/// A child process, killed on drop; its stdout and stderr go to `log`.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command, log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Self {
            name: name.to_owned(),
            child,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status();
    }

    /// Waits for the process to exit on its own.
    pub fn wait_exit(&mut self) -> ExitStatus {
        wait_for(&format!("{} to exit", self.name), || {
            self.child.try_wait().ok().flatten()
        })
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let text = self.log_text();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!("---- last lines of {} ({}):", self.name, self.log.display());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// How an [`Sshd`] lets people in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshdAuth {
    /// Only the harness's client key, for the current user (most tests).
    Key,
    /// Passwords, by the `password` and `keyboard-interactive` methods (through
    /// PAM), for the [`E2E_UNIX_USER`] account: what a person types at the
    /// browser terminal's login prompt.
    Password,
    /// User certificates signed by the CA in `user_ca.pub` (see
    /// [`Sshd::start_trusting_ca`]), for the [`E2E_UNIX_USER`] account.
    Certificate,
}

/// OpenSSH's sshd from Debian's packages, on a free port.
pub struct Sshd {
    pub port: u16,
    pub client_key: PathBuf,
    pub host_pub: String,
    /// The user to log in as.
    pub user: String,
    pub auth: SshdAuth,
    dir: PathBuf,
    host_key: PathBuf,
    restarts: u32,
    proc: Option<Proc>,
}

/// Runs `cmd`, panicking with its status and output when it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `cmd` with `input` on its standard input (then closed) and
/// returns what it did, success or not; panics only when it cannot run.
pub fn output_with_input(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input)
        .unwrap_or_else(|e| panic!("cannot write to {cmd:?}: {e}"));
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

pub fn current_user() -> String {
    let out = run_ok(Command::new("id").arg("-un"));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The Unix account that [`SshdAuth::Password`] tests log in as.
pub const E2E_UNIX_USER: &str = "sallyport-e2e";
/// Its password (a test account on a test machine; see [`ensure_unix_user`]).
pub const E2E_UNIX_PASSWORD: &str = "sallyport e2e 7 pass";

/// Creates the [`E2E_UNIX_USER`] account (once) and sets its password to
/// [`E2E_UNIX_PASSWORD`] (every time). Needs root, as CI has. Several test
/// processes may race here: `useradd`/`chpasswd` lock /etc/passwd and fail
/// while another holds it, so each step is retried until it has happened.
pub fn ensure_unix_user() {
    let exists = || {
        Command::new("id")
            .arg(E2E_UNIX_USER)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(
        current_user() == "root",
        "password tests need root to create the Unix user {E2E_UNIX_USER} (CI runs as root)"
    );
    wait_for(&format!("Unix user {E2E_UNIX_USER} to exist"), || {
        if exists() {
            return Some(());
        }
        let _ = Command::new("useradd")
            .args(["--create-home", "--shell", "/bin/bash", E2E_UNIX_USER])
            .stderr(Stdio::null())
            .status();
        exists().then_some(())
    });
    wait_for(
        &format!("the password of {E2E_UNIX_USER} to be set"),
        || {
            let mut child = Command::new("chpasswd")
                .stdin(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .ok()?;
            child
                .stdin
                .take()?
                .write_all(format!("{E2E_UNIX_USER}:{E2E_UNIX_PASSWORD}\n").as_bytes())
                .ok()?;
            child.wait().ok()?.success().then_some(())
        },
    );
}

fn keygen(path: &Path) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(path),
    );
}

impl Sshd {
    /// An sshd that accepts the harness's client key for the current user.
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, SshdAuth::Key)
    }

    /// An sshd that accepts passwords for [`E2E_UNIX_USER`] (created here).
    pub fn start_password(dir: &Path) -> Self {
        ensure_unix_user();
        Self::start_with(dir, SshdAuth::Password)
    }

    /// An sshd that trusts user certificates from `ca_pub` (one OpenSSH
    /// line, e.g. the relay's `/ssh-ca.pub`) for [`E2E_UNIX_USER`].
    pub fn start_trusting_ca(dir: &Path, ca_pub: &str) -> Self {
        ensure_unix_user();
        let sshd_dir = dir.join("sshd-ca");
        std::fs::create_dir_all(&sshd_dir).expect("sshd dir");
        std::fs::write(sshd_dir.join("user_ca.pub"), ca_pub).expect("user_ca.pub");
        Self::start_with(dir, SshdAuth::Certificate)
    }

    fn start_with(dir: &Path, auth: SshdAuth) -> Self {
        let dir = dir.join(match auth {
            SshdAuth::Key => "sshd",
            SshdAuth::Password => "sshd-password",
            SshdAuth::Certificate => "sshd-ca",
        });
        std::fs::create_dir_all(&dir).expect("sshd dir");
        let _ = std::fs::create_dir_all("/run/sshd");
        let host_key = dir.join("host_ed25519");
        let client_key = dir.join("client_ed25519");
        keygen(&host_key);
        keygen(&client_key);
        std::fs::copy(
            client_key.with_extension("pub"),
            dir.join("authorized_keys"),
        )
        .expect("authorized_keys");
        let port = free_port();
        let auth_lines = match auth {
            SshdAuth::Key => {
                "UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n".to_owned()
            }
            // keyboard-interactive needs PAM on Linux; PAM also does the passwords.
            SshdAuth::Password => {
                "UsePAM yes\nPasswordAuthentication yes\nKbdInteractiveAuthentication yes\n\
                 PubkeyAuthentication no\n"
                    .to_owned()
            }
            // Forwarding on in sshd, so that the certificate's extensions
            // (from the policy) are what decides `ssh -L` and `ssh -A`.
            SshdAuth::Certificate => format!(
                "UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 AllowTcpForwarding yes\nAllowAgentForwarding yes\n\
                 TrustedUserCAKeys {}\n",
                dir.join("user_ca.pub").display()
            ),
        };
        std::fs::write(
            dir.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
                 StrictModes no\n{auth_lines}\
                 PermitRootLogin prohibit-password\nPidFile none\nMaxStartups 100\nLogLevel VERBOSE\n",
                host_key.display(),
                dir.join("authorized_keys").display()
            ),
        )
        .expect("sshd_config");
        let mut sshd = Self {
            port,
            client_key,
            host_pub: String::new(),
            user: match auth {
                SshdAuth::Key => current_user(),
                SshdAuth::Password | SshdAuth::Certificate => E2E_UNIX_USER.to_owned(),
            },
            auth,
            dir,
            host_key,
            restarts: 0,
            proc: None,
        };
        sshd.launch();
        sshd
    }

    fn launch(&mut self) {
        let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("OpenSSH sshd is not installed: run scripts/test.sh, which installs it");
        self.restarts += 1;
        let proc = Proc::spawn(
            "sshd",
            Command::new(sshd)
                .args(["-D", "-e", "-f"])
                .arg(self.dir.join("sshd_config")),
            self.dir.join(format!("sshd-{}.log", self.restarts)),
        );
        self.proc = Some(proc);
        wait_for_tcp(SocketAddr::from(([127, 0, 0, 1], self.port)));
        self.host_pub =
            std::fs::read_to_string(self.host_key.with_extension("pub")).expect("host key");
    }

    /// Restarts sshd on the same port with a new host key: what a client
    /// sees when someone else answers at the service's address.
    pub fn change_host_key(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
        keygen(&self.host_key);
        self.launch();
    }

    /// Restarts sshd on the same port, listening on `ip` as well as on
    /// loopback: for a connector in another network namespace.
    pub fn listen_also(&mut self, ip: std::net::IpAddr) {
        let path = self.dir.join("sshd_config");
        let mut config = std::fs::read_to_string(&path).expect("sshd_config");
        config.push_str(&format!("ListenAddress {ip}\n"));
        std::fs::write(&path, config).expect("sshd_config");
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
        self.launch();
    }

    /// Restarts sshd on the same port presenting `other`'s host key: a
    /// machine at this address impersonating `other`'s server.
    pub fn use_host_key_of(&mut self, other: &Sshd) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
        std::fs::copy(&other.host_key, &self.host_key).expect("copy host key");
        let public = other.host_key.with_extension("pub");
        if public.exists() {
            std::fs::copy(&public, self.host_key.with_extension("pub")).expect("copy host key");
        }
        self.host_pub.clone_from(&other.host_pub);
        self.launch();
    }

    /// Everything sshd logged so far (all its runs).
    pub fn log_text(&self) -> String {
        (1..=self.restarts)
            .map(|i| {
                std::fs::read_to_string(self.dir.join(format!("sshd-{i}.log"))).unwrap_or_default()
            })
            .collect()
    }

    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// A relay process with its data dir and ports; restartable with the same state.
pub struct RelayProc {
    pub data_dir: PathBuf,
    pub https_port: u16,
    pub tunnel_port: u16,
    /// Its plain-HTTP `/metrics` listener (on 127.0.0.1).
    pub metrics_port: u16,
    /// Extra flags and limits it starts with.
    pub options: https::RelayOptions,
    /// The config file (`--config`), when the relay has one.
    pub config: Option<PathBuf>,
    /// The PostgreSQL URL of its store (`SALLYPORT_STORE`), when the suite
    /// runs on PostgreSQL (see [`store_is_postgres`]); `None`: sled.
    pub store_url: Option<String>,
    dir: PathBuf,
    starts: u32,
    pub proc: Option<Proc>,
    /// The PostgreSQL that holds that store, stopped when the relay's
    /// handle drops (after the relay: fields drop in order).
    pub postgres: Option<postgres::Postgres>,
}

/// True when `SALLYPORT_TEST_STORE=postgres`: each relay the harness starts
/// keeps its state in a PostgreSQL of its own rather than in sled, so the
/// same tests run on both engines (scripts/test.sh runs a set of them so).
pub fn store_is_postgres() -> bool {
    std::env::var("SALLYPORT_TEST_STORE").is_ok_and(|v| v == "postgres")
}

/// A cluster key file in `dir` for the relays on the database at `url`:
/// derived from the URL, so every relay of a test's cluster, and every admin
/// command run on it, has the same key (a real cluster makes one with
/// `sallyport-relay cluster-key generate`).
pub fn cluster_key_file(dir: &Path, url: &str) -> PathBuf {
    let key_file = dir.join("cluster.key");
    let digest = ring::digest::digest(&ring::digest::SHA256, url.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    write_private_file(&key_file, format!("{hex}\n").as_bytes());
    key_file
}

impl RelayProc {
    pub fn start(dir: &Path) -> Self {
        Self::start_with_config(dir, None)
    }

    /// A relay with `config` (TOML) as its config file, if given.
    pub fn start_with_config(dir: &Path, config: Option<&str>) -> Self {
        Self::start_with_options(dir, config, https::RelayOptions::default())
    }

    /// A relay with `config` (TOML) as its config file, if given, started as `options` say.
    pub fn start_with_options(
        dir: &Path,
        config: Option<&str>,
        options: https::RelayOptions,
    ) -> Self {
        let mut r = Self::prepare(dir, config, options);
        r.launch();
        r
    }

    /// Like [`RelayProc::start_with_options`] but not started: its ports
    /// (and so [`RelayProc::url`]) are chosen, and [`RelayProc::launch`]
    /// starts it. For set-ups that need the relay's URL before it runs (an
    /// OpenID provider's redirect URI).
    pub fn prepare(dir: &Path, config: Option<&str>, options: https::RelayOptions) -> Self {
        let config = config.map(|text| {
            let path = dir.join("relay.toml");
            std::fs::write(&path, text).expect("write relay.toml");
            path
        });
        let postgres =
            (options.postgres || store_is_postgres()).then(|| postgres::Postgres::start(dir));
        Self {
            store_url: postgres.as_ref().map(|pg| pg.create_database("relay")),
            postgres,
            data_dir: dir.join("relay"),
            https_port: free_port(),
            tunnel_port: free_port(),
            metrics_port: free_port(),
            options,
            config,
            dir: dir.to_owned(),
            starts: 0,
            proc: None,
        }
    }

    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.https_port)
    }

    pub fn https_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.https_port))
    }

    /// Stops the relay and starts it again with `extra` added to its flags
    /// (a global one such as `--log-json` too), for this and later launches.
    pub fn relaunch_with(&mut self, extra: &[&str]) {
        self.kill();
        self.options
            .args
            .extend(extra.iter().map(|a| a.to_string()));
        self.launch();
    }

    /// `IP:PORT` of the tunnel (QUIC on UDP, the TCP fallback on TCP).
    pub fn tunnel_addr(&self) -> String {
        let ip = self
            .options
            .tunnel_ip
            .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
        SocketAddr::new(ip, self.tunnel_port).to_string()
    }

    /// Starts the process (again) and waits until it serves.
    pub fn launch(&mut self) {
        self.starts += 1;
        let sock = self.data_dir.join("admin.sock");
        let _ = std::fs::remove_file(&sock);
        let mut cmd = self.options.command();
        cmd.arg("serve");
        if let Some(config) = &self.config {
            cmd.arg("--config").arg(config);
        }
        let proc = Proc::spawn(
            "relay",
            cmd.arg("--data-dir")
                .arg(&self.data_dir)
                .args(["--listen-https", &format!("127.0.0.1:{}", self.https_port)])
                .args(["--listen-tunnel", &self.tunnel_addr()])
                .args(["--public-url", &self.url()])
                .args(["--public-tunnel-addr", &self.tunnel_addr()])
                // The TCP tunnel listener takes one more TCP port number,
                // and each number free_port hands out may be handed to
                // another test's process too: only where a test uses it.
                .args(if self.options.tunnel_tcp() {
                    Vec::new()
                } else {
                    vec!["--listen-tunnel-tcp".to_owned(), String::new()]
                })
                .args(["--drain-timeout", "5s"])
                .args(if self.options.sets_metrics_listen() {
                    Vec::new()
                } else {
                    vec![
                        "--metrics-listen".to_owned(),
                        format!("127.0.0.1:{}", self.metrics_port),
                    ]
                })
                .args(&self.options.args)
                .envs(self.store_env())
                .env("RUST_LOG", "info"),
            self.dir.join(format!("relay-{}.log", self.starts)),
        );
        let addr = self.https_addr();
        let proc = self.proc.insert(proc);
        // A relay that refuses its configuration exits at once: say why
        // instead of waiting out the patience.
        wait_for(&format!("the relay to serve on {addr}"), || {
            assert!(proc.is_running(), "the relay exited:\n{}", proc.log_text());
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()
        });
        wait_for("the relay's admin socket", || sock.exists().then_some(()));
    }

    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Runs `sallyport-relay ARGS --data-dir D`, feeding `stdin`.
    pub fn admin(&self, args: &[&str], stdin: &str) -> Output {
        output_with_input(
            Command::new(bin("sallyport-relay"))
                .args(args)
                .arg("--data-dir")
                .arg(&self.data_dir)
                .envs(self.store_env()),
            stdin.as_bytes(),
        )
    }

    /// `SALLYPORT_STORE` for its processes, when its store is PostgreSQL,
    /// with the cluster settings a relay on PostgreSQL needs: a cluster key
    /// file derived from the URL (relays sharing a database share the key;
    /// written 0600 beside the data dir) and a relay id of its own
    /// (`relay-HTTPS_PORT`). A `--cluster-key-file` or `--relay-id` flag
    /// overrides them.
    pub fn store_env(&self) -> Vec<(&'static str, String)> {
        let Some(url) = &self.store_url else {
            return Vec::new();
        };
        let key_file = cluster_key_file(&self.dir, url);
        vec![
            ("SALLYPORT_STORE", url.clone()),
            ("SALLYPORT_CLUSTER_KEY_FILE", key_file.display().to_string()),
            ("SALLYPORT_RELAY_ID", format!("relay-{}", self.https_port)),
        ]
    }

    pub fn add_user(&self, name: &str, password: &str) {
        self.add_user_in(name, password, &[]);
    }

    /// Adds a user who belongs to `groups`.
    pub fn add_user_in(&self, name: &str, password: &str, groups: &[&str]) {
        let mut args = vec!["user", "add", name, "--password-stdin"];
        let groups = groups.join(",");
        if !groups.is_empty() {
            args.extend(["--groups", &groups]);
        }
        let out = self.admin(&args, &format!("{password}\n"));
        assert!(
            out.status.success(),
            "user add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A fresh enrolment token for `name` (the last line of `connector
    /// add`), granting it `services`.
    pub fn token(&self, name: &str, ttl: &str, services: &[&str]) -> String {
        let mut args = vec!["connector", "add", name, "--ttl", ttl];
        for s in services {
            args.extend(["--service", s]);
        }
        let out = self.admin(&args, "");
        assert!(
            out.status.success(),
            "connector add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .expect("token line")
            .trim()
            .to_owned()
    }

    pub fn connector_list(&self) -> String {
        let out = self.admin(&["connector", "list"], "");
        assert!(
            out.status.success(),
            "connector list: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The `connector list` row of `name`, split into columns.
    pub fn connector_row(&self, name: &str) -> Vec<String> {
        self.connector_list()
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .map(|l| l.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// Waits until `name` has `conns` live connections.
    pub fn wait_online(&self, name: &str, conns: usize) {
        let want = format!("yes({conns})");
        wait_for(
            &format!("connector {name} online with {conns} connections"),
            || {
                let row = self.connector_row(name);
                (row.get(2).map(String::as_str) == Some(want.as_str())).then_some(())
            },
        );
    }

    /// Fetches `path` over HTTPS with curl; returns the status line and body.
    pub fn curl(&self, path: &str, extra: &[&str]) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-sk", "--http1.1", "-o", "-", "-w", "\n%{http_code}"])
            .args(extra)
            .arg(format!("{}{path}", self.url()))
            .args([
                "--resolve",
                &format!("localhost:{}:127.0.0.1", self.https_port),
            ])
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }

    /// `POST /api/login` with curl (a one-time `code` if given): the status
    /// and the answer.
    pub fn api_login(&self, user: &str, password: &str, code: Option<&str>) -> (u16, String) {
        let body = serde_json::json!({ "user": user, "password": password, "code": code });
        self.curl(
            "/api/login",
            &[
                "-X",
                "POST",
                "-H",
                "content-type: application/json",
                "--data",
                &body.to_string(),
            ],
        )
    }

    /// `recording export SESSION --out FILE` (through the running relay when
    /// it runs): the file it wrote, an asciicast.
    pub fn export_recording(&self, session: &str) -> PathBuf {
        let cast = self.dir.join(format!("{session}.cast"));
        let out = self.admin(
            &[
                "recording",
                "export",
                session,
                "--out",
                cast.to_str().expect("a UTF-8 path"),
            ],
            "",
        );
        assert!(
            out.status.success(),
            "recording export: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cast
    }

    /// The client events of one session in the audit log, oldest first, as
    /// `audit export` writes them.
    pub fn client_events(&self, session: &str) -> Vec<serde_json::Value> {
        self.audit_export(&["--session", session, "--type", "client"])
    }

    /// The records `audit export --format jsonl FILTERS` gives (with
    /// `time` and `code`), oldest first.
    pub fn audit_export(&self, filters: &[&str]) -> Vec<serde_json::Value> {
        let args = [&["audit", "export", "--format", "jsonl"], filters].concat();
        let out = self.admin(&args, "");
        assert!(
            out.status.success(),
            "audit export: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("an exported record is JSON"))
            .collect()
    }

    /// A counter from `/metrics` (the relay's plain-HTTP metrics listener).
    pub fn metric(&self, name: &str) -> u64 {
        let body = scrape_metrics(self.metrics_port);
        metric_in(&body, name).unwrap_or_else(|| panic!("metric {name} not found in:\n{body}"))
    }
}

/// The text of `/metrics` on the relay's metrics listener at `port` (empty
/// when it does not answer within 10 s).
pub fn scrape_metrics(port: u16) -> String {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10"])
        .arg(format!("http://127.0.0.1:{port}/metrics"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of the sample `name` (with its labels) in Prometheus text.
pub fn metric_in(body: &str, name: &str) -> Option<u64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

impl Drop for RelayProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// curl arguments that make a request a WebSocket upgrade.
pub const WS_UPGRADE: [&str; 8] = [
    "-H",
    "Connection: Upgrade",
    "-H",
    "Upgrade: websocket",
    "-H",
    "Sec-WebSocket-Version: 13",
    "-H",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
];

/// A connector process.
pub fn start_connector(
    dir: &Path,
    name: &str,
    token: Option<&str>,
    services: &[String],
    extra: &[&str],
) -> Proc {
    let state = dir.join(format!("connector-{name}"));
    let mut cmd = Command::new(bin("sallyport-connector"));
    cmd.arg("run")
        .arg("--state-dir")
        .arg(&state)
        .env("RUST_LOG", "info");
    if let Some(t) = token {
        cmd.args(["--token", t]);
    }
    for s in services {
        cmd.args(["--service", s]);
    }
    cmd.args(extra);
    let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    Proc::spawn(
        &format!("connector {name}"),
        &mut cmd,
        dir.join(format!("connector-{name}-{n}.log")),
    )
}

/// Stock `ssh` logging in with the harness's client key, never asking or
/// remembering anything: the options every tunnelled and direct run shares.
pub fn ssh_with_key(sshd: &Sshd) -> Command {
    ssh_with_identity(&sshd.client_key)
}

/// Stock `ssh` offering only the key at `key` (and a certificate beside it,
/// `KEY-cert.pub`, if there is one), never asking or remembering anything.
pub fn ssh_with_identity(key: &Path) -> Command {
    let mut cmd = Command::new("ssh");
    cmd.args(["-F", "/dev/null", "-i"]).arg(key).args([
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
    ]);
    cmd
}

/// A user of the native client: its own SALLYPORT_HOME.
pub struct Client {
    pub home: PathBuf,
}

impl Client {
    pub fn new(dir: &Path, name: &str) -> Self {
        Self {
            home: dir.join(format!("home-{name}")),
        }
    }

    pub fn login(&self, relay: &RelayProc, user: &str, password: &str) -> Output {
        self.login_to(
            &relay.url(),
            &relay.data_dir.join("https.pem"),
            user,
            password,
        )
    }

    /// `sallyport login --code CODE`, for users with a second factor.
    pub fn login_with_code(
        &self,
        relay: &RelayProc,
        user: &str,
        password: &str,
        code: &str,
    ) -> Output {
        self.login_args(
            &relay.url(),
            &relay.data_dir.join("https.pem"),
            user,
            password,
            &["--code", code],
        )
    }

    /// `sallyport login` to the relay at `url`, trusting its certificate `ca`.
    pub fn login_to(&self, url: &str, ca: &Path, user: &str, password: &str) -> Output {
        self.login_args(url, ca, user, password, &[])
    }

    fn login_args(
        &self,
        url: &str,
        ca: &Path,
        user: &str,
        password: &str,
        extra: &[&str],
    ) -> Output {
        output_with_input(
            Command::new(bin("sallyport"))
                .args([
                    "login",
                    "--relay",
                    url,
                    "--user",
                    user,
                    "--password-stdin",
                    "--ca-cert",
                ])
                .arg(ca)
                .args(extra)
                .env("SALLYPORT_HOME", &self.home),
            format!("{password}\n").as_bytes(),
        )
    }

    /// `ssh` through `sallyport proxy` to `service`, running `command` with `stdin`.
    pub fn ssh_command(&self, sshd: &Sshd, service: &str, command: &str) -> Command {
        let mut cmd = ssh_with_key(sshd);
        cmd.args(["-o", "ConnectTimeout=30", "-o"])
            .arg(format!(
                "ProxyCommand={} proxy %h",
                bin("sallyport").display()
            ))
            .arg(format!("{}@{service}", sshd.user))
            .arg(command)
            .env("SALLYPORT_HOME", &self.home);
        cmd
    }

    pub fn ssh(&self, sshd: &Sshd, service: &str, command: &str, stdin: &[u8]) -> Output {
        let mut child = self
            .ssh_command(sshd, service, command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ssh");
        let mut input = child.stdin.take().expect("stdin");
        let data = stdin.to_vec();
        let feeder = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let out = child.wait_with_output().expect("ssh output");
        let _ = feeder.join();
        out
    }
}

/// Everything most journeys need: sshd, a relay, one user signed in.
pub struct Env {
    pub sshd: Sshd,
    pub relay: RelayProc,
    pub client: Client,
    /// Last, so it is removed after the processes have stopped and a failed
    /// test could still print their logs.
    pub dir: tempfile::TempDir,
}

pub const USER: &str = "alice";
pub const PASSWORD: &str = "correct horse battery staple";

impl Env {
    pub fn start() -> Self {
        Self::start_with(SshdAuth::Key)
    }

    /// Like [`Env::start`], with an sshd that lets people in as `auth` says.
    pub fn start_with(auth: SshdAuth) -> Self {
        Self::start_configured(auth, None)
    }

    /// Like [`Env::start_with`], the relay reading `config` (TOML) as its config file.
    pub fn start_configured(auth: SshdAuth, config: Option<&str>) -> Self {
        Self::start_with_relay(auth, config, https::RelayOptions::default())
    }

    /// Like [`Env::start_configured`], the relay started as `options` say.
    pub fn start_with_relay(
        auth: SshdAuth,
        config: Option<&str>,
        options: https::RelayOptions,
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sallyport-e2e")
            .tempdir()
            .expect("tempdir");
        let relay = RelayProc::start_with_options(dir.path(), config, options);
        let sshd = match auth {
            SshdAuth::Key => Sshd::start(dir.path()),
            SshdAuth::Password => Sshd::start_password(dir.path()),
            SshdAuth::Certificate => {
                // What an admin does: fetch the relay's CA for TrustedUserCAKeys.
                let (code, ca) = relay.curl("/ssh-ca.pub", &[]);
                assert_eq!(code, 200, "GET /ssh-ca.pub: {ca}");
                Sshd::start_trusting_ca(dir.path(), &ca)
            }
        };
        relay.add_user(USER, PASSWORD);
        let client = Client::new(dir.path(), USER);
        let out = client.login(&relay, USER, PASSWORD);
        assert!(
            out.status.success(),
            "login: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            dir,
            sshd,
            relay,
            client,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// An [`Env`] whose policy lets [`USER`] reach `web1` from anywhere
    /// and `office` only from 10.0.0.0/8 (so not from loopback), and gives
    /// `secret` to no one, with connector `c1` serving all three, online;
    /// the connector's process comes with it.
    pub fn start_with_office_only_service() -> (Self, Proc) {
        let policy = format!(
            "[policy]\n[[policy.services.web1.rules]]\naction = \"allow\"\nusers = [\"{USER}\"]\n\
             [[policy.services.office.rules]]\naction = \"allow\"\nusers = [\"{USER}\"]\ncidr = [\"10.0.0.0/8\"]\n"
        );
        let env = Self::start_configured(SshdAuth::Key, Some(&policy));
        let token = env.relay.token("c1", "10m", &["web1", "office", "secret"]);
        let services = [
            format!("web1={}", env.sshd.target()),
            format!("office={}", env.sshd.target()),
            format!("secret={}", env.sshd.target()),
        ];
        let c1 = start_connector(env.path(), "c1", Some(&token), &services, &[]);
        env.relay.wait_online("c1", 2);
        (env, c1)
    }

    /// Enrols and starts a connector exposing sshd as `service`.
    pub fn connector(&self, name: &str, service: &str, extra: &[&str]) -> Proc {
        let token = self.relay.token(name, "10m", &[service]);
        let svc = format!("{service}={}", self.sshd.target());
        start_connector(self.path(), name, Some(&token), &[svc], extra)
    }

    pub fn ssh(&self, service: &str, command: &str, stdin: &[u8]) -> Output {
        self.client.ssh(&self.sshd, service, command, stdin)
    }
}

/// stdout as text, trimmed.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_owned()
}

/// How long one browser journey may take, start to finish (Chromium's start,
/// the page loads, a large `seq`).
pub const BROWSER_PATIENCE: Duration = Duration::from_secs(240);

/// `tests/browser`, where the journeys and their `node_modules` are.
pub fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// Runs the browser journey `tests/browser/SCRIPT.mjs` with Node: Debian's
/// Chromium, a fresh profile under `dir`, signed in to `relay` as `user`.
/// `vars` are extra environment variables for the script. Returns the JSON
/// object the script printed; panics (with the script's stderr) if it could
/// not run the journey.
pub fn browser(
    dir: &Path,
    relay: &RelayProc,
    (user, password): (&str, &str),
    script: &str,
    vars: &[(&str, &str)],
) -> serde_json::Value {
    let browser_dir = browser_dir();
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci --prefix tests/browser` (scripts/test.sh does)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: install Debian's chromium package (scripts/test.sh does)"
    );
    let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    let profile = dir.join(format!("chromium-{script}-{n}"));
    std::fs::create_dir_all(&profile).expect("browser profile dir");
    let out_path = dir.join(format!("browser-{script}-{n}.out"));
    let err_path = dir.join(format!("browser-{script}-{n}.err"));
    let mut child = Command::new("node")
        .arg(browser_dir.join(format!("{script}.mjs")))
        .current_dir(&browser_dir)
        .env("SALLYPORT_URL", relay.url())
        .env("SALLYPORT_USER", user)
        .env("SALLYPORT_PASSWORD", password)
        .env("BROWSER_PROFILE", &profile)
        .env("CHROMIUM", &chromium)
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("browser stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("browser stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start node (install Debian's nodejs): {e}"));
    let Some(status) = wait_or_kill(&mut child, BROWSER_PATIENCE) else {
        panic!(
            "browser journey {script} took longer than {BROWSER_PATIENCE:?}:\n{}",
            std::fs::read_to_string(&err_path).unwrap_or_default()
        );
    };
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(
        status.success(),
        "browser journey {script} failed ({status}):\n{err}"
    );
    let last = out.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| {
        panic!("browser journey {script} printed no JSON result ({e}):\n{out}\n{err}")
    })
}

/// Writes a MaxMind-format (MMDB) country database in which the IPv4 range
/// `net/prefix` is in `country` and nothing else is anywhere: what
/// `policy.geoip_db` reads, without a download. Format: MaxMind DB spec 2.0
/// (a binary search tree over address bits, 24-bit records, a data
/// section, then metadata after a marker).
pub fn write_country_db(path: &Path, net: std::net::Ipv4Addr, prefix: u32, country: &str) {
    // Data section values (MaxMind DB encoding): control byte = type << 5 | size.
    fn string(out: &mut Vec<u8>, s: &str) {
        out.push((2 << 5) | s.len() as u8);
        out.extend_from_slice(s.as_bytes());
    }
    fn map(out: &mut Vec<u8>, pairs: usize) {
        out.push((7 << 5) | pairs as u8);
    }
    fn uint(out: &mut Vec<u8>, kind: u8, v: u64) {
        let bytes: Vec<u8> = v
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        if kind <= 7 {
            out.push((kind << 5) | bytes.len() as u8);
        } else {
            // Extended types: type 0 in the control byte, type - 7 after it.
            out.push(bytes.len() as u8);
            out.push(kind - 7);
        }
        out.extend_from_slice(&bytes);
    }
    let node_count = prefix;
    let bits = u32::from(net);
    let data_pointer = node_count + 16; // the first (only) value, at data offset 0
    let mut tree = Vec::new();
    for depth in 0..prefix {
        let next = if depth + 1 == prefix {
            data_pointer
        } else {
            depth + 1
        };
        let bit = (bits >> (31 - depth)) & 1;
        let (left, right) = if bit == 0 {
            (next, node_count)
        } else {
            (node_count, next)
        };
        tree.extend_from_slice(&left.to_be_bytes()[1..]);
        tree.extend_from_slice(&right.to_be_bytes()[1..]);
    }
    let mut out = tree;
    out.extend_from_slice(&[0u8; 16]);
    map(&mut out, 1);
    string(&mut out, "country");
    map(&mut out, 1);
    string(&mut out, "iso_code");
    string(&mut out, country);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    map(&mut out, 9);
    string(&mut out, "node_count");
    uint(&mut out, 6, u64::from(node_count));
    string(&mut out, "record_size");
    uint(&mut out, 5, 24);
    string(&mut out, "ip_version");
    uint(&mut out, 5, 4);
    string(&mut out, "database_type");
    string(&mut out, "Sallyport-Test-Country");
    string(&mut out, "languages");
    out.extend_from_slice(&[0, 4]); // an empty array (extended type 11)
    string(&mut out, "binary_format_major_version");
    uint(&mut out, 5, 2);
    string(&mut out, "binary_format_minor_version");
    uint(&mut out, 5, 0);
    string(&mut out, "build_epoch");
    uint(&mut out, 9, 1_800_000_000);
    string(&mut out, "description");
    map(&mut out, 1);
    string(&mut out, "en");
    string(&mut out, "Test countries");
    std::fs::write(path, out).expect("write the country database");
}

/// Writes `contents` to `path` with mode 0600 (replacing the file).
pub fn write_private_file(path: &Path, contents: &[u8]) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if std::fs::read(path).is_ok_and(|old| old == contents) {
        return;
    }
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(contents).expect("write a private file");
}
