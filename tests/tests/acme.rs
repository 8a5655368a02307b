//! The relay gets its HTTPS certificate over ACME from Pebble (the ACME
//! test server Debian packages), over TLS-ALPN-01 and over HTTP-01: a
//! client that trusts only Pebble's root accepts it for the relay's name,
//! and a forced renewal (`sallyport-relay acme renew`) swaps it while an
//! SSH session opened before goes on.

use std::path::Path;

use sallyport_tests::tls::{served_cert, wait_for_new_cert, OpenSession, Pebble};
use sallyport_tests::*;

/// The relay's name: it resolves to 127.0.0.1 for Pebble too (from
/// /etc/hosts), so no DNS server is needed.
const NAME: &str = "localhost";

/// A relay (not yet started) whose certificate comes from a Pebble of its
/// own over `challenge`, and that Pebble.
fn relay_with_pebble(dir: &Path, challenge: &str) -> (RelayProc, Pebble) {
    let mut relay = RelayProc::prepare(dir, None, https::RelayOptions::default());
    let http_port = free_port();
    let pebble = Pebble::start(dir, http_port, relay.https_port);
    relay.options.args.extend(
        [
            "--acme-domain",
            NAME,
            "--acme-email",
            "admin@example.com",
            "--acme-directory",
            &pebble.directory,
            "--acme-ca-root",
            &pebble.api_cert.display().to_string(),
            "--acme-challenge",
            challenge,
            "--acme-listen-http",
            &format!("127.0.0.1:{http_port}"),
        ]
        .map(String::from),
    );
    relay.launch();
    (relay, pebble)
}

#[test]
fn the_relay_gets_a_certificate_over_tls_alpn_01_and_a_forced_renewal_keeps_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let (mut relay, pebble) = relay_with_pebble(dir.path(), "tls-alpn-01");
    let root = pebble.root_pem();
    let addr = relay.https_addr();
    // Until the order completes the relay serves its own certificate,
    // which a client trusting Pebble refuses.
    let first = wait_for_new_cert(addr, NAME, &root, None);

    let root_path = dir.path().join("pebble-root.pem");
    std::fs::write(&root_path, &root).unwrap();
    let sshd = Sshd::start(dir.path());
    relay.add_user(USER, PASSWORD);
    let client = Client::new(dir.path(), USER);
    let out = client.login_to(&relay.url(), &root_path, USER, PASSWORD);
    assert!(
        out.status.success(),
        "login trusting only Pebble: {}",
        stderr(&out)
    );
    let token = relay.token("c1", "10m", &["web1"]);
    let _c1 = start_connector(
        dir.path(),
        "c1",
        Some(&token),
        &[format!("web1={}", sshd.target())],
        &["--ha-connections", "1"],
    );
    relay.wait_online("c1", 1);
    let mut session = OpenSession::open(&client, &sshd, "web1");
    assert_eq!(session.echo("before"), "got-before");

    let out = relay.admin(&["acme", "renew"], "");
    assert!(out.status.success(), "acme renew: {}", stderr(&out));
    let renewed = wait_for_new_cert(addr, NAME, &root, Some(&first));
    assert_ne!(renewed, first);
    assert_eq!(
        session.echo("after"),
        "got-after",
        "the open session survives the renewal"
    );

    // The certificate is kept: a restart serves it without a new order.
    drop(session);
    relay.kill();
    relay.launch();
    assert_eq!(served_cert(addr, NAME, &root).unwrap(), renewed);
    relay.kill();
}

#[test]
fn the_relay_gets_a_certificate_over_http_01_and_redirects_other_plain_requests() {
    let dir = tempfile::tempdir().unwrap();
    let (mut relay, pebble) = relay_with_pebble(dir.path(), "http-01");
    let root = pebble.root_pem();
    wait_for_new_cert(relay.https_addr(), NAME, &root, None);

    // The plain-HTTP port serves nothing of its own.
    let http_port = relay
        .options
        .args
        .iter()
        .skip_while(|a| *a != "--acme-listen-http")
        .nth(1)
        .and_then(|a| a.rsplit(':').next())
        .unwrap()
        .to_owned();
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
        ])
        .arg(format!("http://127.0.0.1:{http_port}/api/me?x=1"))
        .output()
        .unwrap();
    assert_eq!(
        stdout(&out),
        format!("301 {}/api/me?x=1", relay.url()),
        "plain HTTP is sent to the public HTTPS URL"
    );
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!(
            "http://127.0.0.1:{http_port}/.well-known/acme-challenge/unknown"
        ))
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "404", "no token, no answer");
    relay.kill();
}
