//! A connector on a network that drops outbound UDP (nftables in a network
//! namespace of its own, as hotel and corporate networks do) reaches the
//! relay over TCP in auto mode, carries `ssh` and browser sessions there,
//! and moves back to QUIC once UDP gets through again, without cutting the
//! session still open on the TCP connection. Needs root (`ip netns`, `nft`).

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::Stdio;

use sallyport_tests::netns::Netns;
use sallyport_tests::*;

/// Seconds from the connector's "connector starting" line to its
/// `count`th "tunnel up" line over `transport`, by its own log's clock.
fn seconds_to_tunnels(log: &str, transport: &str, count: usize) -> Option<f64> {
    // `2026-12-01T05:47:34.361728Z`: seconds into the day.
    let at = |line: &str| -> Option<f64> {
        let time = line.split_whitespace().next()?.split_once('T')?.1;
        let mut parts = time.trim_end_matches('Z').split(':');
        let h: f64 = parts.next()?.parse().ok()?;
        let m: f64 = parts.next()?.parse().ok()?;
        let s: f64 = parts.next()?.parse().ok()?;
        Some(h * 3600.0 + m * 60.0 + s)
    };
    let start = log
        .lines()
        .find(|l| l.contains("connector starting"))
        .and_then(at)?;
    let up = log
        .lines()
        .filter(|l| l.contains("tunnel up") && l.contains(&format!("transport={transport}")))
        .nth(count - 1)
        .and_then(at)?;
    Some((up - start).rem_euclid(86_400.0))
}

#[test]
fn a_connector_whose_network_drops_udp_connects_over_tcp_and_returns_to_quic() {
    let netns = Netns::create();
    netns.drop_outbound_udp();
    let host_ip = std::net::IpAddr::from(netns.host_ip);
    // Two sshds the namespace can reach: web1 takes the harness's key
    // (stock ssh through `sallyport proxy`), web2 a password (the browser).
    let env = netns.env();
    let mut web2 = Sshd::start_password(env.path());
    web2.listen_also(host_ip);
    env.relay.add_user(E2E_UNIX_USER, PASSWORD);
    let token = env.relay.token("c1", "10m", &["web1", "web2"]);
    let services = [
        format!("web1={host_ip}:{}", env.sshd.port),
        format!("web2={host_ip}:{}", web2.port),
    ];
    let c1 = netns.start_connector(
        env.path(),
        "c1",
        &token,
        &services,
        &["--transport", "auto", "--quic-probe-interval", "1s"],
    );

    // Enrolled and connected over TCP: QUIC's packets went nowhere.
    env.relay.wait_online("c1", 2);
    let row = env.relay.connector_row("c1");
    assert_eq!(row[3], "tcp", "connector list: {row:?}");
    assert!(netns.udp_dropped() > 0, "the namespace sent no UDP to drop");
    let log = c1.log_text();
    let took = seconds_to_tunnels(&log, "tcp", 2).expect("two tunnels up over tcp in the log");
    eprintln!("auto mode with UDP dropped: both tunnels up over TCP {took:.2} s after the start");
    assert!(took <= 10.0, "TCP took {took:.2} s, more than 10 s:\n{log}");
    let metrics = scrape_metrics(env.relay.metrics_port);
    assert!(
        metrics
            .contains(r#"sallyport_connector_connections_live{connector="c1",transport="tcp"} 2"#),
        "{metrics}"
    );

    // Stock OpenSSH through `sallyport proxy`, and a browser session.
    assert_eq!(stdout(&env.ssh("web1", "echo over-tcp", b"")), "over-tcp");
    let r = browser(
        env.path(),
        &env.relay,
        (E2E_UNIX_USER, PASSWORD),
        "echo",
        &[("SERVICE", "web2"), ("SSH_PASSWORD", E2E_UNIX_PASSWORD)],
    );
    assert_eq!(r["answer"], "42", "{r}");

    // A session that stays open across the move back to QUIC.
    let mut ssh = env
        .client
        .ssh_command(
            &env.sshd,
            "web1",
            "while read line; do echo got-$line; done",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh");
    let mut ssh_in = ssh.stdin.take().expect("stdin");
    let mut ssh_out = BufReader::new(ssh.stdout.take().expect("stdout"));
    let mut echo = move |word: &str| {
        writeln!(ssh_in, "{word}").expect("write to ssh");
        let mut line = String::new();
        ssh_out.read_line(&mut line).expect("read from ssh");
        line.trim().to_owned()
    };
    assert_eq!(echo("one"), "got-one");

    // UDP gets through again: the probes find QUIC, both slots move to it,
    // and the TCP connection carrying the open session stays for it.
    netns.allow_udp();
    wait_for(
        "c1 to move to QUIC, one TCP connection left for the open session",
        || {
            let row = env.relay.connector_row("c1");
            (row[2] == "yes(3)" && row[3] == "quic,tcp").then_some(())
        },
    );
    assert_eq!(echo("two"), "got-two", "the open session went on");
    assert_eq!(stdout(&env.ssh("web1", "echo over-quic", b"")), "over-quic");
    assert!(
        c1.log_text().contains("QUIC gets through again"),
        "{}",
        c1.log_text()
    );

    // The session ends; its TCP connection goes with it.
    drop(echo);
    let status = ssh.wait().expect("ssh exits");
    assert!(status.success(), "ssh: {status}");
    wait_for("c1 to be on QUIC only", || {
        let row = env.relay.connector_row("c1");
        (row[2] == "yes(2)" && row[3] == "quic").then_some(())
    });
    let metrics = scrape_metrics(env.relay.metrics_port);
    assert!(
        metrics
            .contains(r#"sallyport_connector_connections_live{connector="c1",transport="quic"} 2"#)
            && !metrics.contains(r#"transport="tcp""#),
        "{metrics}"
    );
}
