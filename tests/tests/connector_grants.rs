//! A connector serves only the services it was granted, and an enrolment
//! token cannot displace an enrolled connector: what an attacker holding an
//! enrolled connector, or a stale token, would try.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use sallyport_tests::*;

/// TCP connections sshd logged (LogLevel VERBOSE writes one per connection,
/// also for the connector's host key scan at start).
fn connections(sshd: &Sshd) -> usize {
    sshd.log_text().matches("Connection from").count()
}

/// `ssh` to `service` through the relay, trusting only `sshd`'s host key:
/// a session that reaches any other sshd fails the host key check.
fn ssh_strict(env: &Env, known_hosts: &std::path::Path, service: &str) -> std::process::Output {
    std::process::Command::new("ssh")
        .args(["-F", "/dev/null", "-i"])
        .arg(&env.sshd.client_key)
        .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"])
        .args(["-o", "StrictHostKeyChecking=yes", "-o"])
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .arg("-o")
        .arg(format!(
            "ProxyCommand={} proxy %h",
            bin("sallyport").display()
        ))
        .arg(format!("{}@{service}", env.sshd.user))
        .arg("echo reached")
        .env("SALLYPORT_HOME", &env.client.home)
        .output()
        .expect("ssh")
}

#[test]
fn a_connector_serves_only_the_services_it_was_granted() {
    let env = Env::start();
    // The real box, and another sshd an attacker's connector points at.
    let evil_dir = env.path().join("evil");
    std::fs::create_dir_all(&evil_dir).unwrap();
    let evil = Sshd::start(&evil_dir);

    let token1 = env.relay.token("c1", "10m", &["box"]);
    let _c1 = start_connector(
        env.path(),
        "c1",
        Some(&token1),
        &[format!("box={}", env.sshd.target())],
        &[],
    );
    let token2 = env.relay.token("c2", "10m", &["other"]);
    let c2 = start_connector(
        env.path(),
        "c2",
        Some(&token2),
        &[
            format!("box={}", evil.target()),
            format!("other={}", evil.target()),
        ],
        &[],
    );
    env.relay.wait_online("c1", 2);
    env.relay.wait_online("c2", 2);

    // The refusal is in the connector's log, the relay's log and the audit log.
    wait_for("c2 to log the refusal", || {
        c2.log_text()
            .contains("connector c2 is not granted service box")
            .then_some(())
    });
    let relay_log = env.relay.proc.as_ref().unwrap().log_text();
    assert!(relay_log.contains("service refused"), "{relay_log}");
    let audit = env.relay.admin(
        &["audit", "list", "--type", "connector_service_refused"],
        "",
    );
    assert!(
        stdout(&audit).contains("c2") && stdout(&audit).contains("box"),
        "{}",
        stdout(&audit)
    );
    // `connector list` shows what is granted and what was announced.
    let row = env.relay.connector_row("c2");
    assert_eq!(row[6..], ["other", "box!,other"], "{row:?}");
    assert_eq!(env.relay.connector_row("c1")[6..], ["box", "box"]);

    // Every session to box reaches the real sshd, none the other.
    let scanned = connections(&evil);
    let known_hosts = env.path().join("known_hosts");
    std::fs::write(&known_hosts, format!("box {}\n", env.sshd.host_pub)).unwrap();
    for _ in 0..8 {
        let out = ssh_strict(&env, &known_hosts, "box");
        assert_eq!(stdout(&out), "reached", "{}", stderr(&out));
    }
    assert_eq!(
        connections(&evil),
        scanned,
        "a session to box reached the other sshd"
    );
    // c2 still serves what it was granted.
    let out = env.client.ssh(&evil, "other", "echo other", b"");
    assert_eq!(stdout(&out), "other", "{}", stderr(&out));
    assert_eq!(connections(&evil), scanned + 1);

    // An admin grant applies to the live connections at once...
    let out = env.relay.admin(&["connector", "grant", "c2", "box"], "");
    assert!(
        stdout(&out).contains("c2 may now serve box"),
        "{}",
        stderr(&out)
    );
    let before = connections(&evil);
    for _ in 0..6 {
        let _ = ssh_strict(&env, &known_hosts, "box");
    }
    assert!(
        connections(&evil) > before,
        "a granted connector got no session"
    );

    // ...and so does taking it back.
    let out = env.relay.admin(&["connector", "ungrant", "c2", "box"], "");
    assert!(
        stdout(&out).contains("may no longer serve box"),
        "{}",
        stderr(&out)
    );
    let before = connections(&evil);
    for _ in 0..6 {
        let out = ssh_strict(&env, &known_hosts, "box");
        assert_eq!(stdout(&out), "reached", "{}", stderr(&out));
    }
    assert_eq!(connections(&evil), before);
    let audit = env
        .relay
        .admin(&["audit", "list", "--type", "connector_grants"], "");
    assert_eq!(stdout(&audit).lines().count(), 2, "{}", stdout(&audit));
}

#[test]
fn a_second_token_cannot_displace_an_enrolled_connector() {
    let env = Env::start();
    let svc = format!("web1={}", env.sshd.target());
    // Two tokens for one name: only the newer one works.
    let first = env.relay.token("c5", "10m", &["web1"]);
    let second = env.relay.token("c5", "10m", &["web1"]);
    let mut stale = start_connector(
        env.path(),
        "c5-stale",
        Some(&first),
        std::slice::from_ref(&svc),
        &[],
    );
    assert!(!stale.wait_exit().success());
    assert!(
        stale
            .log_text()
            .contains("the enrolment token is not known to this relay"),
        "{}",
        stale.log_text()
    );
    let mut c5 = start_connector(
        env.path(),
        "c5",
        Some(&second),
        std::slice::from_ref(&svc),
        &[],
    );
    env.relay.wait_online("c5", 2);

    // No new token for an enrolled name without --replace.
    let out = env.relay.admin(&["connector", "add", "c5"], "");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "connector c5 is already enrolled; revoke it first or use connector add c5 --replace"
        ),
        "{}",
        stderr(&out)
    );

    // The real c5 comes back after a restart: nobody took its name.
    c5.signal("TERM");
    assert!(c5.wait_exit().success());
    let mut c5 = start_connector(env.path(), "c5", None, std::slice::from_ref(&svc), &[]);
    env.relay.wait_online("c5", 2);
    assert_eq!(stdout(&env.ssh("web1", "echo back", b"")), "back");

    // --replace: the new enrolment takes over and the old one is cut off.
    let out = env
        .relay
        .admin(&["connector", "add", "c5", "--replace", "--ttl", "10m"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let replacing = stdout(&out).lines().last().unwrap().trim().to_owned();
    let _new = start_connector(
        env.path(),
        "c5-new",
        Some(&replacing),
        std::slice::from_ref(&svc),
        &[],
    );
    assert!(!c5.wait_exit().success());
    assert!(
        c5.log_text()
            .contains("connector c5 was replaced by a new enrolment"),
        "{}",
        c5.log_text()
    );
    env.relay.wait_online("c5", 2);
    assert_eq!(stdout(&env.ssh("web1", "echo new", b"")), "new");
}

/// A QUIC client with no certificate that trusts the relay's CA: what
/// anyone on the internet can open against the tunnel port.
fn anonymous_endpoint(relay: &RelayProc, bind: IpAddr) -> (quinn::Endpoint, quinn::ClientConfig) {
    let ca = std::fs::read(relay.data_dir.join("ca.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(sallyport_common::tls::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(Arc::new(roots))
        .with_no_client_auth();
    let config = sallyport_common::quic::client_config(tls).unwrap();
    let endpoint = quinn::Endpoint::client(SocketAddr::new(bind, 0)).unwrap();
    (endpoint, config)
}

use rustls_pki_types::pem::PemObject as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_malformed_enrolments_neither_hold_the_slots_nor_spend_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let relay = RelayProc::start(dir.path());
    let sshd = Sshd::start(dir.path());
    let token = relay.token("c1", "10m", &["web1"]);
    let tunnel = SocketAddr::new([127, 0, 0, 1].into(), relay.tunnel_port);

    // A certificate request that is not one: refused with the reason, and
    // the token stays good.
    let (endpoint, config) = anonymous_endpoint(&relay, [127, 0, 0, 1].into());
    let conn = endpoint
        .connect_with(
            config.clone(),
            tunnel,
            sallyport_proto::tunnel::TUNNEL_SERVER_NAME,
        )
        .unwrap()
        .await
        .unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let secret = sallyport_proto::token::EnrolmentToken::decode(&token)
        .unwrap()
        .secret;
    let req = sallyport_proto::tunnel::EnrolRequest {
        secret,
        csr_pem:
            "-----BEGIN CERTIFICATE REQUEST-----\nnot base64\n-----END CERTIFICATE REQUEST-----\n"
                .into(),
        version: "attacker".into(),
    };
    sallyport_proto::io::write_frame(&mut send, &req)
        .await
        .unwrap();
    let reply: sallyport_proto::tunnel::EnrolReply =
        sallyport_proto::io::FrameReader::new(&mut recv)
            .read_frame()
            .await
            .unwrap();
    assert!(
        matches!(&reply, sallyport_proto::tunnel::EnrolReply::Refused { .. }),
        "{reply:?}"
    );

    // Twenty idle connections from one address (127.0.0.2) that never ask.
    let (idle_endpoint, _) = anonymous_endpoint(&relay, [127, 0, 0, 2].into());
    let mut idle = Vec::new();
    for _ in 0..20 {
        let connecting = idle_endpoint
            .connect_with(
                config.clone(),
                tunnel,
                sallyport_proto::tunnel::TUNNEL_SERVER_NAME,
            )
            .unwrap();
        if let Ok(conn) = connecting.await {
            idle.push(conn);
        }
    }
    // The real connector still enrols, with the token the bad request left.
    let c1 = tokio::task::block_in_place(|| {
        let c = start_connector(
            dir.path(),
            "c1",
            Some(&token),
            &[format!("web1={}", sshd.target())],
            &[],
        );
        relay.wait_online("c1", 2);
        c
    });
    assert!(
        !c1.log_text().contains("too many enrolments"),
        "{}",
        c1.log_text()
    );

    // The idle ones: refused at once beyond the per-address cap, the others
    // closed when they let the deadline pass.
    let mut refused = 0;
    let mut timed_out = 0;
    for conn in idle {
        match tokio::time::timeout(Duration::from_secs(30), conn.closed())
            .await
            .expect("an idle enrolment connection was left open")
        {
            quinn::ConnectionError::ApplicationClosed(close) => {
                let reason = String::from_utf8_lossy(&close.reason).into_owned();
                if reason.contains("from your address") {
                    refused += 1;
                } else {
                    assert_eq!(reason, "no enrolment request in time");
                    timed_out += 1;
                }
            }
            other => panic!("unexpected end: {other}"),
        }
    }
    assert_eq!(
        timed_out,
        sallyport_relay::limits::MAX_ENROLMENTS_PER_ADDRESS
    );
    assert_eq!(refused + timed_out, 20);
}

/// The relay names the carrying connector and its keys only to a client
/// that asks (`?opened=1`, the browser); a client that does not ask (any
/// `sallyport proxy`, also one older than the message) gets sshd's bytes
/// first, as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_opened_message_goes_only_to_clients_that_ask_for_it() {
    use futures::StreamExt as _;
    use sallyport_tests::raw_session::{api_token, first_bytes, open};
    use tokio_tungstenite::tungstenite::Message;

    let env = tokio::task::block_in_place(|| {
        let env = Env::start();
        let token = env.relay.token("c1", "10m", &["web1"]);
        let c = start_connector(
            env.path(),
            "c1",
            Some(&token),
            &[format!("web1={}", env.sshd.target())],
            &[],
        );
        env.relay.wait_online("c1", 2);
        (env, c)
    });
    let (env, _c) = env;
    let token = tokio::task::block_in_place(|| api_token(&env.relay, USER, PASSWORD));

    let mut plain = open(&env.relay, &token, "web1").await.expect("session");
    let first = tokio::time::timeout(PATIENCE, plain.next())
        .await
        .expect("a first message")
        .expect("a message")
        .expect("no error");
    assert!(
        matches!(&first, Message::Binary(b) if b.starts_with(b"SSH-2.0-")),
        "{first:?}"
    );

    // The query rides on the service part of the URL the client builds.
    let mut asking = open(&env.relay, &token, "web1?opened=1")
        .await
        .expect("session");
    let first = tokio::time::timeout(PATIENCE, asking.next())
        .await
        .expect("a first message")
        .expect("a message")
        .expect("no error");
    let Message::Text(text) = first else {
        panic!("expected the opened message, got {first:?}");
    };
    match sallyport_proto::client::Control::parse(text.as_str()).unwrap() {
        sallyport_proto::client::Control::Opened {
            connector,
            host_keys,
            record_input,
        } => {
            assert_eq!(connector, "c1");
            let key = env.sshd.host_pub.split_whitespace().nth(1).unwrap();
            assert!(host_keys.iter().any(|k| k.contains(key)), "{host_keys:?}");
            assert!(!record_input, "keystrokes are not recorded by default");
        }
        other => panic!("expected opened, got {other:?}"),
    }
    assert!(first_bytes(&mut asking, PATIENCE)
        .await
        .is_some_and(|b| b.starts_with(b"SSH-2.0-")));
}
