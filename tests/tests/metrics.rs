//! What an operator's Prometheus, systemd and load balancer see: both
//! daemons' metrics listeners serve OpenMetrics text that the Prometheus
//! project's own parser reads line by line, the series move when a person
//! signs in and runs `ssh` through the relay, `/readyz` follows the tunnel
//! while `/healthz` stays up, and `--log-level` decides what is logged
//! (with `RUST_LOG`, when set, deciding instead).

use sallyport_tests::metrics::*;
use sallyport_tests::*;

const VERSION: &str = env!("CARGO_PKG_VERSION");

#[test]
fn a_session_through_the_relay_moves_both_daemons_metrics() {
    let env = Env::start();
    let relay_port = env.relay.metrics_port;
    let token = env.relay.token("c1", "10m", &["web1"]);
    let service = format!("web1={}", env.sshd.target());
    // --log-level warn, without RUST_LOG: info lines are not written.
    let (connector, connector_port) =
        start_connector_with_metrics(env.path(), "c1", &token, &service, &["--log-level", "warn"]);
    env.relay.wait_online("c1", 2);
    wait_for_status(connector_port, "/readyz", 200);

    let relay_before = Scrape::of(relay_port);
    let connector_before = Scrape::of(connector_port);

    // A real session: stock OpenSSH through `sallyport proxy`.
    let out = env.ssh("web1", "echo metrics-journey", b"");
    assert!(out.status.success(), "ssh: {}", stderr(&out));
    assert_eq!(stdout(&out), "metrics-journey");
    // And a sign-in that works and one that does not.
    assert_eq!(env.relay.api_login(USER, PASSWORD, None).0, 200);
    assert_eq!(env.relay.api_login(USER, "wrong", None).0, 401);

    let relay = Scrape::of(relay_port);
    let moved = |name: &str, labels: &[(&str, &str)]| {
        relay.value_or_zero(name, labels) - relay_before.value_or_zero(name, labels)
    };
    assert_eq!(
        moved("sallyport_sessions_total", &[("result", "opened")]),
        1.0
    );
    assert_eq!(moved("sallyport_session_setup_seconds_count", &[]), 1.0);
    let inf = relay
        .value("sallyport_session_setup_seconds_bucket", &[("le", "+Inf")])
        .expect("the +Inf bucket");
    assert_eq!(
        inf,
        relay
            .value("sallyport_session_setup_seconds_count", &[])
            .unwrap()
    );
    assert_eq!(
        moved(
            "sallyport_policy_evaluation_seconds_count",
            &[("stage", "websocket")]
        ),
        1.0
    );
    assert_eq!(
        moved("sallyport_policy_decisions_total", &[("result", "allow")]),
        1.0
    );
    assert_eq!(
        moved(
            "sallyport_sign_in_seconds_count",
            &[("method", "password"), ("result", "ok")]
        ),
        1.0
    );
    assert_eq!(
        moved(
            "sallyport_sign_in_seconds_count",
            &[("method", "password"), ("result", "failed")]
        ),
        1.0
    );
    assert_eq!(moved("sallyport_sign_ins_total", &[("result", "ok")]), 1.0);
    assert!(
        moved(
            "sallyport_session_bytes_total",
            &[("direction", "to_client")]
        ) > 0.0
    );
    assert!(
        moved(
            "sallyport_session_bytes_total",
            &[("direction", "to_connector")]
        ) > 0.0
    );
    assert_eq!(
        relay.value(
            "sallyport_build_info",
            &[("daemon", "relay"), ("version", VERSION)]
        ),
        Some(1.0),
        "{}",
        relay.text
    );
    assert_eq!(
        relay.value(
            "sallyport_connector_connections_live",
            &[("connector", "c1")]
        ),
        Some(2.0),
        "{}",
        relay.text
    );
    assert_eq!(
        relay.value(
            "sallyport_connector_info",
            &[("connector", "c1"), ("version", VERSION)]
        ),
        Some(1.0)
    );
    // Types and units as Prometheus reads them.
    let family = |name: &str| {
        relay
            .family(name)
            .unwrap_or_else(|| panic!("no family {name} in:\n{}", relay.text))
            .clone()
    };
    assert_eq!(family("sallyport_session_setup_seconds").kind, "histogram");
    assert_eq!(family("sallyport_session_setup_seconds").unit, "seconds");
    assert_eq!(family("sallyport_sign_in_seconds").kind, "histogram");
    assert_eq!(
        family("sallyport_policy_evaluation_seconds").kind,
        "histogram"
    );
    assert_eq!(family("sallyport_session_bytes").unit, "bytes");
    assert_eq!(family("sallyport_build").kind, "info");
    assert_eq!(family("sallyport_connector_connections_live").kind, "gauge");
    // No user name or client address is a label anywhere.
    for s in relay.families.iter().flat_map(|f| &f.samples) {
        for v in s.labels.values() {
            assert!(
                v != USER && !v.contains("127.0.0.1"),
                "{} has a label {v:?}",
                s.name
            );
        }
    }

    // The connector saw the same session.
    let connector_after = wait_for("the connector to count the session's end", || {
        let s = Scrape::of(connector_port);
        (s.value("sallyport_connector_sessions_active", &[]) == Some(0.0)).then_some(s)
    });
    let c_moved = |name: &str, labels: &[(&str, &str)]| {
        connector_after.value_or_zero(name, labels) - connector_before.value_or_zero(name, labels)
    };
    assert_eq!(
        c_moved(
            "sallyport_connector_sessions_total",
            &[("result", "opened")]
        ),
        1.0
    );
    assert!(
        c_moved(
            "sallyport_connector_session_bytes_total",
            &[("direction", "to_relay")]
        ) > 0.0
    );
    assert_eq!(
        c_moved("sallyport_connector_service_connect_seconds_count", &[]),
        1.0
    );
    let relay_addr = format!("127.0.0.1:{}", env.relay.tunnel_port);
    let up = connector_after
        .value(
            "sallyport_connector_tunnel_connections_up",
            &[("relay", &relay_addr), ("transport", "quic")],
        )
        .expect("the tunnel gauge");
    assert!(up >= 1.0, "{}", connector_after.text);
    assert_eq!(
        connector_after.value(
            "sallyport_build_info",
            &[("daemon", "connector"), ("version", VERSION)]
        ),
        Some(1.0)
    );
    assert!(connector_after
        .value("sallyport_connector_reconnects_total", &[])
        .is_some());

    // --log-level warn: the connector wrote no info line ("tunnel up",
    // "session accepted") although both happened.
    let log = connector.log_text();
    assert!(
        !log.contains(" INFO ") && !log.contains("session accepted"),
        "{log}"
    );
}

#[test]
fn readyz_follows_the_tunnel_while_healthz_stays_up() {
    let mut env = Env::start();
    let relay_port = env.relay.metrics_port;
    assert_eq!(wait_for_status(relay_port, "/readyz", 200), "ready\n");
    let (code, content_type, body) = get(relay_port, "/healthz");
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    // Nothing else is on the listener.
    assert_eq!(get(relay_port, "/admin").0, 404);

    let token = env.relay.token("c2", "10m", &["web1"]);
    let service = format!("web1={}", env.sshd.target());
    // --log-level debug, without RUST_LOG: debug lines are written.
    let (connector, port) = start_connector_with_metrics(
        env.path(),
        "c2",
        &token,
        &service,
        &["--log-level", "debug"],
    );
    assert_eq!(wait_for_status(port, "/readyz", 200), "ready\n");
    assert_eq!(get(port, "/healthz").0, 200);
    let reconnects_before =
        Scrape::of(port).value_or_zero("sallyport_connector_reconnects_total", &[]);

    // The relay goes away: not ready, with the reason; alive all along.
    env.relay.kill();
    let body = wait_for_status(port, "/readyz", 503);
    let relay_addr = format!("127.0.0.1:{}", env.relay.tunnel_port);
    assert_eq!(
        body,
        format!("not ready: no tunnel connection to the relay at {relay_addr} is up\n")
    );
    assert_eq!(
        get(port, "/healthz"),
        (200, "text/plain; charset=utf-8".into(), "ok\n".into())
    );
    let down = Scrape::of(port);
    assert_eq!(
        down.value(
            "sallyport_connector_tunnel_connections_up",
            &[("relay", &relay_addr), ("transport", "quic")]
        ),
        Some(0.0)
    );
    wait_for("the connector to log a debug line", || {
        let log = connector.log_text();
        (log.contains(" DEBUG ") && log.contains("connect failed")).then_some(())
    });

    // Back: ready again, and the attempts in between were counted.
    env.relay.launch();
    wait_for_status(port, "/readyz", 200);
    let back = Scrape::of(port);
    assert!(
        back.value_or_zero("sallyport_connector_reconnects_total", &[]) > reconnects_before,
        "{}",
        back.text
    );
    assert_eq!(wait_for_status(relay_port, "/readyz", 200), "ready\n");
}

#[test]
fn the_relay_log_level_comes_from_the_flag_the_file_or_rust_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    // log_level = "warn" in the file: the warning about having no policy
    // is written, the info lines are not, even after a sign-in.
    let (mut quiet, data_dir, https) =
        start_relay_without_rust_log(dir.path(), "quiet", "log_level = \"warn\"\n", &[]);
    add_user_at(&data_dir, USER, PASSWORD);
    assert_eq!(api_login_at(https, USER, PASSWORD), 200);
    let log = quiet.log_text();
    assert!(
        log.contains(" WARN ") && log.contains("no [policy]"),
        "{log}"
    );
    assert!(
        !log.contains(" INFO ") && !log.contains("relay listening") && !log.contains("signed in"),
        "{log}"
    );
    quiet.kill();

    // --log-level over the file's log_level.
    let (mut loud, _, _) = start_relay_without_rust_log(
        dir.path(),
        "loud",
        "log_level = \"warn\"\n",
        &["--log-level", "info"],
    );
    wait_for("the relay to log at info", || {
        loud.log_text().contains("relay listening").then_some(())
    });
    loud.kill();

    // RUST_LOG (the harness sets RUST_LOG=info) over --log-level.
    let env = Env::start_with_relay(
        SshdAuth::Key,
        None,
        https::RelayOptions {
            args: vec!["--log-level".into(), "error".into()],
            ..Default::default()
        },
    );
    let relay = env.relay.proc.as_ref().expect("the relay runs");
    wait_for("RUST_LOG=info to win over --log-level error", || {
        relay.log_text().contains("relay listening").then_some(())
    });
}

/// Opens `cap + extra` silent connections to `port` and polls until the
/// listener has kept exactly `cap` of them and closed the rest (refused
/// over its cap, before reading a byte); returns the kept ones.
fn fill_past_the_cap(port: u16, cap: usize, extra: usize) -> Vec<std::net::TcpStream> {
    use std::io::Read as _;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let conns: Vec<_> = (0..cap + extra)
        .map(|_| {
            let c = std::net::TcpStream::connect(addr).expect("connect");
            c.set_nonblocking(true).expect("nonblocking");
            c
        })
        .collect();
    let mut refused = vec![false; conns.len()];
    wait_for(
        &format!(
            "{extra} of {} connections to port {port} to be refused",
            cap + extra
        ),
        || {
            for (c, r) in conns.iter().zip(refused.iter_mut()) {
                let mut byte = [0u8; 1];
                match (&*c).read(&mut byte) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    // Closed or reset without a byte of answer.
                    Ok(0) | Err(_) => *r = true,
                    Ok(_) => panic!("a silent connection to port {port} got an answer"),
                }
            }
            (refused.iter().filter(|r| **r).count() == extra).then_some(())
        },
    );
    conns
        .into_iter()
        .zip(refused)
        .filter_map(|(c, r)| (!r).then_some(c))
        .collect()
}

#[test]
fn the_metrics_listeners_bound_connections_and_request_heads() {
    let env = Env::start();
    let token = env.relay.token("c3", "10m", &["web1"]);
    let service = format!("web1={}", env.sshd.target());
    let (_connector, connector_port) =
        start_connector_with_metrics(env.path(), "c3", &token, &service, &[]);
    let big = format!("X-Padding: {}", "a".repeat(20 * 1024));
    for (daemon, port) in [
        ("relay", env.relay.metrics_port),
        ("connector", connector_port),
    ] {
        // A request head over 8 KiB is answered 431, not buffered.
        let out = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", &big])
            .arg(format!("http://127.0.0.1:{port}/metrics"))
            .output()
            .expect("curl");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "431", "{daemon}");
        // Sixteen silent connections fill the listener; more are refused
        // at once, and once the sixteen go the listener serves again.
        let held = fill_past_the_cap(port, 16, 4);
        assert_eq!(held.len(), 16, "{daemon}");
        drop(held);
        wait_for_status(port, "/healthz", 200);
    }
}
