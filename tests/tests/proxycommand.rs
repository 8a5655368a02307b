//! A person with stock OpenSSH reaches a service through the relay with
//! `ProxyCommand='sallyport proxy %n'`.

use std::process::Stdio;

use sallyport_tests::*;

fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn ssh_runs_a_command_and_round_trips_50_mb() {
    let env = Env::start();
    let _c = env.connector("c1", "web1", &[]);
    env.relay.wait_online("c1", 2);

    let out = env.ssh("web1", "echo hello from $(whoami)", b"");
    assert!(out.status.success(), "ssh failed: {}", stderr(&out));
    assert_eq!(stdout(&out), format!("hello from {}", env.sshd.user));

    // 50 MB up through the tunnel and back down, byte for byte.
    let mut data = vec![0u8; 50 * 1024 * 1024];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let want = sha256_hex(&data);
    let out = env.ssh("web1", "cat", &data);
    assert!(out.status.success(), "ssh cat failed: {}", stderr(&out));
    assert_eq!(out.stdout.len(), data.len(), "bytes came back short");
    assert_eq!(sha256_hex(&out.stdout), want);

    // And the remote side saw the same bytes (upload only, half-close ends it).
    let out = env.ssh("web1", "sha256sum", &data);
    assert!(
        out.status.success(),
        "ssh sha256sum failed: {}",
        stderr(&out)
    );
    assert_eq!(stdout(&out).split_whitespace().next(), Some(want.as_str()));
}

#[test]
fn unknown_or_unreachable_services_give_one_clear_line() {
    let env = Env::start();
    // A connector whose second service points at a closed port.
    let closed = free_port();
    let token = env.relay.token("c1", "10m", &["web1", "dead"]);
    let _c = start_connector(
        env.path(),
        "c1",
        Some(&token),
        &[
            format!("web1={}", env.sshd.target()),
            format!("dead=127.0.0.1:{closed}"),
        ],
        &[],
    );
    env.relay.wait_online("c1", 2);

    let out = env.ssh("nope", "true", b"");
    assert!(!out.status.success());
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.starts_with("sallyport:"))
        .unwrap_or_default();
    assert_eq!(line, "sallyport: no such service \"nope\"", "stderr: {err}");

    let out = env.ssh("dead", "true", b"");
    assert!(!out.status.success());
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.starts_with("sallyport:"))
        .unwrap_or_default();
    assert!(
        line.contains("connector c1 refused the session")
            && line.contains(&format!(
                "cannot reach service \"dead\" at 127.0.0.1:{closed}"
            )),
        "stderr: {err}"
    );

    // Not signed in at all.
    let stranger = Client::new(env.path(), "stranger");
    let out = stranger.ssh(&env.sshd, "web1", "true", b"");
    assert!(
        stderr(&out).contains("sallyport: not signed in"),
        "stderr: {}",
        stderr(&out)
    );

    // The working service still works.
    let out = env.ssh("web1", "echo ok", b"");
    assert_eq!(stdout(&out), "ok", "stderr: {}", stderr(&out));
}

#[test]
fn websocket_without_a_session_gets_401_and_opens_no_stream() {
    let env = Env::start();
    let _c = env.connector("c1", "web1", &[]);
    env.relay.wait_online("c1", 2);
    let before = env.relay.metric("sallyport_tunnel_streams_opened_total");
    let upgrade = WS_UPGRADE;
    let (code, body) = env.relay.curl("/ws/web1", &upgrade);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("sign in"), "{body}");

    let mut bad_token = upgrade.to_vec();
    bad_token.extend(["-H", "Authorization: Bearer not-a-real-token"]);
    let (code, _) = env.relay.curl("/ws/web1", &bad_token);
    assert_eq!(code, 401);

    let mut bad_cookie = upgrade.to_vec();
    bad_cookie.extend(["-H", "Cookie: __Host-sallyport_session=forged"]);
    let (code, _) = env.relay.curl("/ws/web1", &bad_cookie);
    assert_eq!(code, 401);

    // A foreign Origin is refused even with a valid session.
    let creds: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(env.client.home.join("credentials.json")).unwrap(),
    )
    .unwrap();
    let auth = format!("Authorization: Bearer {}", creds["token"].as_str().unwrap());
    let mut foreign = upgrade.to_vec();
    foreign.extend(["-H", &auth, "-H", "Origin: https://evil.example"]);
    let (code, body) = env.relay.curl("/ws/web1", &foreign);
    assert_eq!(code, 403, "{body}");

    assert_eq!(
        env.relay.metric("sallyport_tunnel_streams_opened_total"),
        before
    );
}

#[test]
fn sign_in_is_rate_limited_and_wrong_passwords_are_refused() {
    let env = Env::start();
    let client = Client::new(env.path(), "mallory");
    let out = client.login(&env.relay, USER, "wrong");
    assert!(!out.status.success());
    assert_eq!(stderr(&out), "sallyport: wrong user name or password");
    for _ in 0..5 {
        client.login(&env.relay, USER, "wrong");
    }
    let out = client.login(&env.relay, USER, PASSWORD);
    assert!(
        stderr(&out).contains("too many failed sign-ins"),
        "{}",
        stderr(&out)
    );
}

/// `sallyport proxy web1` with its stdin held open (returned beside it),
/// once sshd's banner has come through.
fn proxy_with_stdin_open(env: &Env) -> (std::process::Child, std::process::ChildStdin) {
    use std::io::Read as _;
    let mut proxy = std::process::Command::new(bin("sallyport"))
        .args(["proxy", "web1"])
        .env("SALLYPORT_HOME", &env.client.home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = proxy.stdin.take().unwrap();
    let mut banner = [0u8; 8];
    proxy
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut banner)
        .unwrap();
    assert_eq!(&banner, b"SSH-2.0-");
    (proxy, stdin)
}

/// When the relay ends the session (here: an admin signs the user out),
/// `sallyport proxy` exits with the reason even though whatever feeds its
/// stdin keeps it open.
#[test]
fn the_proxy_exits_when_the_relay_ends_the_session_with_stdin_still_open() {
    use std::io::Read as _;
    let env = Env::start();
    let _c = env.connector("c1", "web1", &[]);
    env.relay.wait_online("c1", 2);
    let (mut proxy, _stdin_held_open) = proxy_with_stdin_open(&env);

    let out = env.relay.admin(&["user", "sign-out", USER], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let status = wait_or_kill(&mut proxy, PATIENCE)
        .expect("the proxy kept running after the relay ended its session");
    assert!(!status.success());
    let mut err = String::new();
    proxy
        .stderr
        .as_mut()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("signed out"), "{err}");
}

/// When sshd ends the connection, `sallyport proxy` ends too (SSH has no
/// half-close at the transport), even though its stdin stays open.
#[test]
fn the_proxy_exits_when_sshd_closes_with_stdin_still_open() {
    use std::io::{Read as _, Write as _};
    let env = Env::start();
    let _c = env.connector("c1", "web1", &[]);
    env.relay.wait_online("c1", 2);
    let (mut proxy, mut stdin_held_open) = proxy_with_stdin_open(&env);
    // Not SSH: sshd says so and closes the connection.
    stdin_held_open.write_all(b"GET / HTTP/1.0\r\n").unwrap();
    stdin_held_open.flush().unwrap();
    let status = wait_or_kill(&mut proxy, PATIENCE)
        .expect("the proxy kept running after sshd closed the connection");
    let mut err = String::new();
    let _ = proxy.stderr.as_mut().unwrap().read_to_string(&mut err);
    assert!(
        status.success(),
        "a server that ends the session is a clean end: {err}"
    );
    let mut rest = Vec::new();
    let _ = proxy.stdout.as_mut().unwrap().read_to_end(&mut rest);
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        rest.contains("Invalid SSH identification string"),
        "sshd's last words reach stdout: {rest:?}"
    );
    drop(stdin_held_open);
}
