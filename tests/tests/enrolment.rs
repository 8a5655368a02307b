//! Enrolment tokens are single-use and expire; revoked connectors are cut off.

use sallyport_tests::*;

#[test]
fn a_revoked_connector_is_disconnected_and_cannot_reconnect() {
    let env = Env::start();
    let mut c = env.connector("c1", "web1", &[]);
    env.relay.wait_online("c1", 2);
    assert_eq!(stdout(&env.ssh("web1", "echo up", b"")), "up");

    let out = env.relay.admin(&["connector", "revoke", "c1"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("2 live connection(s) closed"),
        "{}",
        stdout(&out)
    );

    // The connector is told why and stops; it is not online any more.
    let status = c.wait_exit();
    assert!(!status.success());
    assert!(
        c.log_text().contains("connector c1 was revoked"),
        "{}",
        c.log_text()
    );
    let row = env.relay.connector_row("c1");
    assert_eq!(
        row[1..3],
        ["revoked".to_string(), "no".to_string()],
        "{row:?}"
    );

    // Its stored identity no longer gets in.
    let svc = format!("web1={}", env.sshd.target());
    let mut again = start_connector(env.path(), "c1", None, &[svc], &[]);
    assert!(!again.wait_exit().success());
    assert!(again.log_text().contains("revoked"), "{}", again.log_text());

    let out = env.ssh("web1", "true", b"");
    // Its services are gone with it.
    assert!(
        stderr(&out).contains("sallyport: no such service \"web1\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn used_and_expired_tokens_are_refused() {
    let env = Env::start();
    let token = env.relay.token("c1", "10m", &["web1"]);
    let svc = format!("web1={}", env.sshd.target());
    let _first = start_connector(
        env.path(),
        "c1",
        Some(&token),
        std::slice::from_ref(&svc),
        &[],
    );
    env.relay.wait_online("c1", 2);

    // The same token a second time, from another state dir.
    let mut reuse = start_connector(
        env.path(),
        "c1-copy",
        Some(&token),
        std::slice::from_ref(&svc),
        &[],
    );
    assert!(!reuse.wait_exit().success());
    assert!(
        reuse
            .log_text()
            .contains("enrolment token was already used"),
        "{}",
        reuse.log_text()
    );

    // A token that expired before use.
    let short = env.relay.token("c2", "1s", &["web1"]);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let mut late = start_connector(env.path(), "c2", Some(&short), &[svc], &[]);
    assert!(!late.wait_exit().success());
    assert!(late.log_text().contains("expired"), "{}", late.log_text());
    assert_eq!(env.relay.connector_row("c2")[1], "pending");
}

#[test]
fn admin_commands_work_with_the_relay_stopped() {
    let mut env = Env::start();
    env.relay.kill();
    env.relay.add_user("bob", "hunter2");
    let token = env.relay.token("offline", "10m", &[]);
    assert!(token.starts_with("spt1."), "{token}");
    assert!(env.relay.connector_list().contains("offline"));
    env.relay.launch();
    let bob = Client::new(env.path(), "bob");
    let out = bob.login(&env.relay, "bob", "hunter2");
    assert!(out.status.success(), "{}", stderr(&out));
    // The data dir and its secrets are private.
    use std::os::unix::fs::PermissionsExt as _;
    // (On PostgreSQL the CA key is the cluster's, sealed in the database.)
    let files: &[&str] = if store_is_postgres() {
        &["https.key", "admin.sock"]
    } else {
        &["ca.key", "https.key", "admin.sock"]
    };
    for f in files {
        let mode = std::fs::metadata(env.relay.data_dir.join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{f} is readable by others: {mode:o}");
    }
    let mode = std::fs::metadata(bob.home.join("credentials.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0);
}

#[test]
fn the_relay_caps_the_connections_of_one_connector() {
    let dir = tempfile::tempdir().unwrap();
    let relay =
        RelayProc::start_with_config(dir.path(), Some("max_connections_per_connector = 2\n"));
    let sshd = Sshd::start(dir.path());
    let token = relay.token("c1", "10m", &["web1"]);
    let mut c = start_connector(
        dir.path(),
        "c1",
        Some(&token),
        &[format!("web1={}", sshd.target())],
        &["--ha-connections", "3"],
    );
    relay.wait_online("c1", 2);
    wait_for("the relay to refuse the third connection", || {
        let log = relay.proc.as_ref().unwrap().log_text();
        log.contains("connector c1 already has 2 connections, the most the relay allows")
            .then_some(())
    });
    assert_eq!(
        relay.connector_row("c1").get(2).map(String::as_str),
        Some("yes(2)")
    );
    // The two it has still carry sessions.
    relay.add_user(USER, PASSWORD);
    let client = Client::new(dir.path(), USER);
    assert!(client.login(&relay, USER, PASSWORD).status.success());
    let out = client.ssh(&sshd, "web1", "echo capped", b"");
    assert_eq!(stdout(&out), "capped", "{}", stderr(&out));
    c.kill();
}
