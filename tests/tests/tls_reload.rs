//! The relay's HTTPS certificate files are renewed while it runs: new
//! handshakes get the new certificate, an SSH session opened before goes
//! on, and a pair that cannot be used is refused while the old one stays.

use std::path::Path;

use sallyport_tests::tls::{served_cert, wait_for_new_cert, OpenSession, TestCa};
use sallyport_tests::*;

fn write_pair(dir: &Path, (cert, key): &(String, String)) {
    // What certbot's deploy does, roughly: the key, then the chain.
    std::fs::write(dir.join("tls.key"), key).unwrap();
    std::fs::write(dir.join("tls.pem"), cert).unwrap();
}

#[test]
fn renewed_certificate_files_reach_new_handshakes_and_open_sessions_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Test admin CA");
    let ca_path = dir.path().join("admin-ca.pem");
    std::fs::write(&ca_path, &ca.cert_pem).unwrap();
    let first = ca.issue(&["localhost"]);
    write_pair(dir.path(), &first);
    let cert = dir.path().join("tls.pem").display().to_string();
    let key = dir.path().join("tls.key").display().to_string();
    let options = https::RelayOptions {
        args: vec!["--tls-cert".into(), cert, "--tls-key".into(), key],
        ..Default::default()
    };
    let mut relay = RelayProc::start_with_options(dir.path(), None, options);
    let addr = relay.https_addr();
    let served_first =
        served_cert(addr, "localhost", &ca.cert_pem).expect("the first pair verifies");

    let sshd = Sshd::start(dir.path());
    relay.add_user(USER, PASSWORD);
    let client = Client::new(dir.path(), USER);
    let out = client.login_to(&relay.url(), &ca_path, USER, PASSWORD);
    assert!(out.status.success(), "login: {}", stderr(&out));
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
    assert_eq!(session.echo("one"), "got-one");

    // Renewed files: found by the watcher, no signal needed.
    write_pair(dir.path(), &ca.issue(&["localhost"]));
    let second = wait_for_new_cert(addr, "localhost", &ca.cert_pem, Some(&served_first));
    assert_eq!(
        session.echo("two"),
        "got-two",
        "the open session survives the swap"
    );

    // A certificate whose key is not the one beside it: refused, the old one stays.
    let (other_cert, _) = ca.issue(&["localhost"]);
    std::fs::write(dir.path().join("tls.pem"), other_cert).unwrap();
    let proc = relay.proc.as_ref().unwrap();
    wait_for("the relay to refuse the broken pair", || {
        proc.log_text()
            .contains("HTTPS certificate not reloaded")
            .then_some(())
    });
    assert_eq!(
        served_cert(addr, "localhost", &ca.cert_pem).unwrap(),
        second
    );

    // SIGHUP reads a good pair at once.
    let third_pair = ca.issue(&["localhost"]);
    write_pair(dir.path(), &third_pair);
    proc.signal("HUP");
    wait_for_new_cert(addr, "localhost", &ca.cert_pem, Some(&second));
    assert!(
        relay.proc.as_mut().unwrap().is_running(),
        "SIGHUP must not stop the relay"
    );
    assert_eq!(session.echo("three"), "got-three");

    // New sessions verify the new certificate.
    let out = client.ssh(&sshd, "web1", "echo fresh", b"");
    assert_eq!(stdout(&out), "fresh", "stderr: {}", stderr(&out));
    assert!(relay.metric("sallyport_tls_certificate_reloads_total{result=\"failed\"}") >= 1);
    relay.kill();
}
