//! HTTPS connections are bounded in time and number: one address that holds
//! a thousand idle connections and slowly dripped request heads locks no one
//! else out, even on a relay limited to 1024 open files, and the relay
//! closes what it held after its timeouts. Also: `/metrics` is served on a
//! listener of its own, not to the internet, and the session cookie is a
//! `__Host-` cookie.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::{Duration, Instant};

use futures::{SinkExt as _, StreamExt as _};
use sallyport_relay::limits;
use sallyport_tests::https::{self, RelayAddrs, RelayOptions};
use sallyport_tests::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::Message;

const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// Idle TCP connections the attacker opens (never a TLS byte).
const IDLE: usize = 1100;
/// TLS connections that drip a request head, one header line a second.
const SLOW: usize = 200;
/// The relay's default cap per address, kept by the flood test.
const PER_ADDRESS: usize = limits::DEFAULT_MAX_PER_ADDRESS;
/// The open-file limit (soft and hard) the relay runs under.
const FD_LIMIT: u64 = 1024;
/// The test's shortened timeouts.
const HANDSHAKE: Duration = Duration::from_secs(5);
const HEADER: Duration = Duration::from_secs(20);
const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// How late a close may come after its timeout on a busy CI machine.
const SLACK: Duration = Duration::from_secs(15);

const REFUSED_PER_ADDRESS: &str =
    "sallyport_https_connections_refused_total{reason=\"per_address\"}";
const REFUSED_TOTAL: &str = "sallyport_https_connections_refused_total{reason=\"total\"}";

fn flood_options(extra: &[&str]) -> RelayOptions {
    let secs = |d: Duration| format!("{}s", d.as_secs());
    let mut args = vec![
        "--https-handshake-timeout".to_owned(),
        secs(HANDSHAKE),
        "--https-header-timeout".to_owned(),
        secs(HEADER),
        "--https-idle-timeout".to_owned(),
        secs(IDLE_TIMEOUT),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    RelayOptions {
        args,
        fd_limit: Some(FD_LIMIT),
        ..Default::default()
    }
}

/// Opens `n` plain TCP connections from `source`, 100 at a time; each comes
/// with the moment it was opened. A connection the relay refuses may be
/// reset before the connect call returns: that is an `Err` here.
async fn open_idle(
    relay: &RelayProc,
    source: IpAddr,
    n: usize,
) -> Vec<(std::io::Result<tokio::net::TcpStream>, Instant)> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let batch = (n - out.len()).min(100);
        let start = Instant::now();
        let conns =
            futures::future::join_all((0..batch).map(|_| https::tcp_from(relay, source))).await;
        for c in conns {
            if let Err(e) = &c {
                assert_eq!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset,
                    "connect: {e}"
                );
            }
            out.push((c, start));
        }
    }
    out
}

/// Waits until the peer closes `conn` (EOF or reset); returns when.
async fn closed_at(
    mut conn: impl tokio::io::AsyncRead + Unpin,
    patience: Duration,
) -> Option<Instant> {
    let mut buf = [0u8; 256];
    let wait = async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(patience, wait).await.ok()
}

/// Runs a blocking harness call (curl, a relay command) off the runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

/// Reads the session's first binary message: the sshd's version line.
async fn ssh_banner(ws: &mut https::Ws) -> String {
    let wait = async {
        while let Some(msg) = ws.next().await {
            if let Message::Binary(b) = msg.expect("session message") {
                return String::from_utf8_lossy(&b).into_owned();
            }
        }
        panic!("the session closed before sshd spoke");
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .expect("sshd's banner through the session")
}

#[test]
fn one_address_holding_idle_and_slow_connections_locks_out_no_one_else() {
    assert!(
        https::raise_own_fd_limit() >= (IDLE + SLOW + 200) as u64,
        "this test needs an open-file hard limit of at least {}",
        IDLE + SLOW + 200
    );
    // The per-address cap at its most (256): under ulimit -n 1024 its
    // default is a eighth of the total (96), which would refuse most of the
    // 200 slow heads at once; the case holds them all.
    let per_address = PER_ADDRESS.to_string();
    let env = Env::start_with_relay(
        SshdAuth::Key,
        None,
        flood_options(&["--max-https-connections-per-address", &per_address]),
    );
    let relay_pid = env.relay.proc.as_ref().expect("relay").pid();
    assert_eq!(
        https::fd_limits_of(relay_pid),
        ("1024".to_owned(), "1024".to_owned()),
        "the relay runs under ulimit -n 1024"
    );
    let _c1 = env.connector("c1", "web1", &[]);
    env.relay.wait_online("c1", 2);
    let refused_before = env.relay.metric(REFUSED_PER_ADDRESS);

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let relay = &env.relay;
    rt.block_on(async {
        // 200 TLS connections that send half a request head, then one more
        // header line every second: never idle, never done.
        let tls = https::relay_tls(relay);
        let mut slow = Vec::new();
        while slow.len() < SLOW {
            let batch = futures::future::join_all(
                (0..50).map(|_| https::tls_from(relay, tls.clone(), ATTACKER)),
            )
            .await;
            for conn in batch {
                let mut conn = conn.expect("TLS to the relay");
                conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
                    .await
                    .expect("half a head");
                slow.push((conn, Instant::now()));
            }
        }
        let drippers: Vec<_> = slow
            .into_iter()
            .map(|(conn, first_byte)| {
                tokio::spawn(async move {
                    let (rd, mut wr) = tokio::io::split(conn);
                    let drip = async move {
                        let mut tick = tokio::time::interval(Duration::from_secs(1));
                        loop {
                            tick.tick().await;
                            if wr.write_all(b"X-Drip: 1\r\n").await.is_err()
                                || wr.flush().await.is_err()
                            {
                                return Instant::now();
                            }
                        }
                    };
                    let closed = tokio::select! {
                        at = drip => Some(at),
                        at = closed_at(rd, HEADER + SLACK + SLACK) => at,
                    };
                    (first_byte, closed.expect("a slow head was never closed"))
                })
            })
            .collect();

        // 1,100 idle TCP connections: over the per-address cap, most are
        // refused at once.
        let idle = open_idle(relay, ATTACKER, IDLE).await;
        let want = (IDLE + SLOW - PER_ADDRESS) as u64;
        let refused = blocking({
            let addrs = RelayAddrs::of(relay);
            move || {
                wait_for("the relay to refuse the connections over the cap", || {
                    let n = addrs
                        .metric(REFUSED_PER_ADDRESS)
                        .saturating_sub(refused_before);
                    (n >= want).then_some(n)
                })
            }
        })
        .await;
        let idle_closes: Vec<_> = idle
            .into_iter()
            .map(|(conn, opened)| {
                tokio::spawn(async move {
                    match conn {
                        Ok(conn) => (opened, closed_at(conn, HANDSHAKE + SLACK + SLACK).await),
                        Err(_) => (opened, Some(opened)),
                    }
                })
            })
            .collect();

        // Someone else, from 127.0.0.2, signs in and opens a session to a
        // real sshd through the real connector.
        let (code, body) = blocking({
            let r = RelayAddrs::of(relay);
            move || r.login_from(OTHER, USER, PASSWORD)
        })
        .await;
        assert_eq!(code, 200, "sign-in from {OTHER} during the flood: {body}");
        let token = serde_json::from_str::<serde_json::Value>(&body).expect("JSON")["token"]
            .as_str()
            .expect("token")
            .to_owned();
        let mut ws = https::session_from(relay, OTHER, &token, "web1").await;
        let banner = ssh_banner(&mut ws).await;
        assert!(banner.starts_with("SSH-2.0-OpenSSH"), "{banner:?}");
        // ... while the slow heads were all still held.
        assert!(
            drippers.iter().all(|d| !d.is_finished()),
            "the relay dropped slow heads before the other client was served"
        );

        // A request body dripped a byte a second gets 408 after the header
        // timeout (counted from the end of the head) and the connection closes.
        let mut dripped = https::tls_from(relay, https::relay_tls(relay), OTHER)
            .await
            .expect("TLS");
        dripped
            .write_all(
                b"POST /api/login HTTP/1.1\r\nHost: localhost\r\n\
                  Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
            )
            .await
            .expect("a head");
        let head_sent = Instant::now();
        let body_drip = tokio::spawn(async move {
            let (mut rd, mut wr) = tokio::io::split(dripped);
            let drip = async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if wr.write_all(b" ").await.is_err() || wr.flush().await.is_err() {
                        return std::future::pending::<()>().await;
                    }
                }
            };
            let answer = async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 1024];
                while let Ok(n) = rd.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                (String::from_utf8_lossy(&got).into_owned(), Instant::now())
            };
            tokio::select! {
                _ = drip => unreachable!(),
                r = tokio::time::timeout(HEADER + SLACK, answer) => r,
            }
        });

        // A keep-alive connection from 127.0.0.2 that goes idle after one
        // request is closed after the idle timeout, not the (longer) head timeout.
        let mut keep = https::tls_from(relay, https::relay_tls(relay), OTHER)
            .await
            .expect("TLS");
        keep.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .expect("request");
        let mut buf = vec![0u8; 4096];
        let n = keep.read(&mut buf).await.expect("response");
        assert!(
            String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );
        let idle_from = Instant::now();
        let closed = closed_at(&mut keep, HEADER + SLACK)
            .await
            .expect("the idle keep-alive connection was never closed");
        let waited = closed - idle_from;
        assert!(
            waited >= IDLE_TIMEOUT - Duration::from_millis(500) && waited < HEADER,
            "idle keep-alive closed after {waited:?}"
        );

        let (answer, closed) = body_drip
            .await
            .expect("task")
            .expect("the dripped body was never cut off");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        let held = closed - head_sent;
        assert!(
            held >= HEADER - Duration::from_secs(2) && held < HEADER + SLACK,
            "a dripped body was held {held:?}"
        );

        // The session WebSocket outlived the HTTP idle timeout: it still
        // carries SSH both ways (sshd answers our version with its key exchange).
        ws.send(Message::Binary(
            b"SSH-2.0-OpenSSH_9.2 hardening-test\r\n".to_vec().into(),
        ))
        .await
        .expect("send through the session");
        let kexinit = ssh_banner(&mut ws).await;
        assert!(!kexinit.is_empty());

        // Every idle connection is closed: the refused at once, the
        // accepted after the handshake timeout.
        // (The server cannot close an accepted one before its timeout; a
        // refused one may be closed late only if the relay is slow to accept.)
        let mut at_once = 0;
        let mut after_timeout = 0;
        for c in idle_closes {
            let (opened, closed) = c.await.expect("task");
            let held = closed.expect("an idle connection was never closed") - opened;
            assert!(
                held < HANDSHAKE + SLACK,
                "an idle connection was held {held:?}"
            );
            if held < HANDSHAKE - Duration::from_millis(500) {
                at_once += 1;
            } else {
                after_timeout += 1;
            }
        }
        assert!(
            at_once as u64 >= want,
            "{at_once} closed before the handshake timeout, {refused} refused"
        );
        assert!(
            after_timeout >= 1,
            "no idle connection was held until the handshake timeout"
        );

        // Every slow head is closed by the head timeout, drip or not.
        for d in drippers {
            let (first_byte, closed) = d.await.expect("task");
            let held = closed - first_byte;
            assert!(
                held >= HEADER - Duration::from_secs(2) && held < HEADER + SLACK,
                "a slow head was held {held:?}"
            );
        }
    });

    // What an admin sees: the counters moved, and a handful of log lines
    // about refusals rather than one per connection.
    assert!(
        env.relay.metric(REFUSED_PER_ADDRESS) - refused_before
            >= (IDLE + SLOW - PER_ADDRESS) as u64
    );
    assert!(
        env.relay
            .metric("sallyport_https_timeouts_total{phase=\"header\"}")
            >= SLOW as u64
    );
    assert!(
        env.relay
            .metric("sallyport_https_timeouts_total{phase=\"handshake\"}")
            >= 1
    );
    assert!(
        env.relay
            .metric("sallyport_https_timeouts_total{phase=\"idle\"}")
            >= 1
    );
    let log = env.relay.proc.as_ref().expect("relay").log_text();
    let lines = log
        .lines()
        .filter(|l| l.contains("refused over the cap"))
        .count();
    assert!((1..=10).contains(&lines), "{lines} refusal lines:\n{log}");
    assert!(!log.contains("Too many open files"), "{log}");
}

#[test]
fn a_full_listener_keeps_the_store_and_admin_commands_working() {
    https::raise_own_fd_limit();
    // No per-address cap to speak of: only the total, from the file limit, applies.
    let env = Env::start_with_relay(
        SshdAuth::Key,
        None,
        flood_options(&["--max-https-connections-per-address", "100000"]),
    );
    let total = (FD_LIMIT - limits::FD_RESERVE) as usize;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let idle = open_idle(&env.relay, ATTACKER, IDLE).await;
        let want = (IDLE - total) as u64;
        let reader = RelayAddrs::of(&env.relay);
        let refused = blocking(move || {
            wait_for("the relay to refuse the connections over its total", || {
                let n = reader.metric(REFUSED_TOTAL);
                (n >= want).then_some(n)
            })
        })
        .await;
        assert!(refused >= want);
        // While the listener is full, the admin socket and the store still
        // have descriptors: adding a user works through the running relay.
        let data_dir = env.relay.data_dir.clone();
        let out = blocking(move || {
            sallyport_tests::output_with_input(
                Command::new(bin("sallyport-relay"))
                    .args(["user", "add", "bob", "--password-stdin", "--data-dir"])
                    .arg(&data_dir),
                b"bob's password 1\n",
            )
        })
        .await;
        assert!(
            out.status.success(),
            "user add during the flood: {}",
            stderr(&out)
        );
        // Once the flood ends, bob signs in from elsewhere.
        drop(idle);
        let reader = RelayAddrs::of(&env.relay);
        let (code, body) = blocking(move || {
            wait_for("a sign-in from 127.0.0.2 after the flood", || {
                let (code, body) = reader.login_from(OTHER, "bob", "bob's password 1");
                (code == 200).then_some((code, body))
            })
        })
        .await;
        assert_eq!(code, 200, "{body}");
    });
    let log = env.relay.proc.as_ref().expect("relay").log_text();
    assert!(!log.contains("Too many open files"), "{log}");
}

#[test]
fn metrics_have_their_own_listener_and_the_public_one_serves_none() {
    let env = Env::start();
    // Over HTTPS: no metrics, health as before.
    let (code, body) = env.relay.curl("/metrics", &[]);
    assert_eq!(code, 404, "{body}");
    assert!(!body.contains("sallyport_"), "{body}");
    assert_eq!(env.relay.curl("/healthz", &[]).0, 200);
    // On the metrics listener, in plain HTTP: the sign-in the harness did.
    assert!(env.relay.metric("sallyport_sign_ins_total{result=\"ok\"}") >= 1);
    let log = env.relay.proc.as_ref().expect("relay").log_text();
    assert!(
        log.contains(&format!(
            "metrics listener on http://127.0.0.1:{}/metrics",
            env.relay.metrics_port
        )),
        "{log}"
    );

    // Turned off with an empty address: the relay says so and does not listen.
    let dir = tempfile::tempdir().expect("tempdir");
    let off = RelayProc::start_with_options(
        dir.path(),
        None,
        RelayOptions {
            args: vec!["--metrics-listen".into(), String::new()],
            ..Default::default()
        },
    );
    let relay = off.proc.as_ref().expect("relay");
    wait_for("the relay to say the metrics listener is off", || {
        relay
            .log_text()
            .contains("metrics listener off")
            .then_some(())
    });
    assert!(std::net::TcpStream::connect(("127.0.0.1", off.metrics_port)).is_err());
}

#[test]
fn a_taken_metrics_port_stops_serve_only_where_an_admin_chose_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let out = Command::new(bin("sallyport-relay"))
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path().join("relay"))
        .args(["--listen-https", &format!("127.0.0.1:{}", free_port())])
        .args(["--listen-tunnel", &format!("127.0.0.1:{}", free_port())])
        .args(["--metrics-listen", &format!("127.0.0.1:{port}")])
        .output()
        .expect("run serve");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "cannot listen for metrics on tcp 127.0.0.1:{port}"
        )) && err.contains("--metrics-listen"),
        "{err}"
    );

    // The demo has no metrics listener unless asked, so 9464 being taken
    // (by a relay already running here, say) does not stop it.
    let _hold = std::net::TcpListener::bind("127.0.0.1:9464");
    let sshd = Sshd::start(dir.path());
    let mut demo = Proc::spawn(
        "demo",
        Command::new(bin("sallyport-relay"))
            .arg("demo")
            .arg("--data-dir")
            .arg(dir.path().join("demo"))
            .args(["--listen-https", &format!("127.0.0.1:{}", free_port())])
            .args(["--listen-tunnel", &format!("127.0.0.1:{}", free_port())])
            .args(["--ssh-target", &sshd.target()]),
        dir.path().join("demo.log"),
    );
    wait_for("the demo to print its password", || {
        assert!(demo.is_running(), "the demo exited:\n{}", demo.log_text());
        demo.log_text().contains("Password:").then_some(())
    });
    demo.signal("TERM");
    assert!(demo.wait_exit().success(), "{}", demo.log_text());

    // Nor does it stop `serve` when nobody chose the address: the relay
    // starts without metrics and says so.
    let mut relay = Proc::spawn(
        "relay",
        Command::new(bin("sallyport-relay"))
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path().join("default-metrics"))
            .args(["--listen-https", &format!("127.0.0.1:{}", free_port())])
            .args(["--listen-tunnel", &format!("127.0.0.1:{}", free_port())])
            .env_remove("SALLYPORT_METRICS_LISTEN"),
        dir.path().join("default-metrics.log"),
    );
    wait_for("the relay to start without metrics", || {
        assert!(
            relay.is_running(),
            "the relay exited:\n{}",
            relay.log_text()
        );
        relay
            .log_text()
            .contains("metrics listener off: cannot listen on tcp 127.0.0.1:9464")
            .then_some(())
    });
    relay.kill();
}

#[test]
fn the_session_cookie_is_a_host_cookie() {
    let env = Env::start();
    let jar = env.path().join("cookies.txt");
    let body = serde_json::json!({ "user": USER, "password": PASSWORD });
    let (code, headers) = env.relay.curl(
        "/api/login",
        &[
            "-D",
            "-",
            "-c",
            jar.to_str().expect("path"),
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "--data",
            &body.to_string(),
        ],
    );
    assert_eq!(code, 200, "{headers}");
    let set_cookie = headers
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("set-cookie")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no Set-Cookie in:\n{headers}"));
    let mut parts = set_cookie.split(';').map(str::trim);
    let (name, value) = parts
        .next()
        .and_then(|p| p.split_once('='))
        .expect("name=value");
    assert_eq!(name, "__Host-sallyport_session");
    assert!(!value.is_empty());
    let attrs: Vec<String> = parts.map(str::to_ascii_lowercase).collect();
    for want in ["path=/", "secure", "httponly", "samesite=strict"] {
        assert!(
            attrs.iter().any(|a| a == want),
            "{want} missing: {set_cookie}"
        );
    }
    assert!(
        !attrs.iter().any(|a| a.starts_with("domain")),
        "a __Host- cookie has no Domain: {set_cookie}"
    );
    // curl's cookie engine applies the prefix rules browsers do: it keeps
    // the cookie, for this host only (no subdomains), path /, secure only.
    let jar_text = std::fs::read_to_string(&jar).expect("cookie jar");
    let row: Vec<&str> = jar_text
        .lines()
        .find(|l| l.contains("__Host-sallyport_session"))
        .unwrap_or_else(|| panic!("curl did not keep the cookie:\n{jar_text}"))
        .split('\t')
        .collect();
    assert_eq!(
        (row[0], row[1], row[2], row[3], row[5]),
        (
            "#HttpOnly_localhost",
            "FALSE",
            "/",
            "TRUE",
            "__Host-sallyport_session"
        ),
        "{jar_text}"
    );
    // The cookie signs requests in; the old name no longer does.
    let jar_arg = jar.to_str().expect("path");
    assert_eq!(env.relay.curl("/api/me", &["-b", jar_arg]).0, 200);
    let old = format!("Cookie: sallyport_session={value}");
    assert_eq!(env.relay.curl("/api/me", &["-H", &old]).0, 401);
}
