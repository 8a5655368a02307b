//! The tunnel survives what happens to real deployments: the relay crashes
//! and comes back, a connector of several dies, a connector is stopped.

use sallyport_tests::*;

#[test]
fn connector_reconnects_after_the_relay_is_killed_and_restarted() {
    let mut env = Env::start();
    let mut c = env.connector("c1", "web1", &[]);
    env.relay.wait_online("c1", 2);
    assert_eq!(stdout(&env.ssh("web1", "echo before", b"")), "before");

    env.relay.kill(); // SIGKILL: no drain, no goodbye
    env.relay.launch();
    env.relay.wait_online("c1", 2);
    assert!(
        c.is_running(),
        "the connector must keep running across a relay restart"
    );

    // The stored sign-in survives the restart too.
    let out = env.ssh("web1", "echo after", b"");
    assert_eq!(stdout(&out), "after", "stderr: {}", stderr(&out));
}

#[test]
fn sessions_still_succeed_when_one_of_two_connectors_dies() {
    let env = Env::start();
    let mut a = env.connector("a", "web1", &["--ha-connections", "1"]);
    let _b = env.connector("b", "web1", &["--ha-connections", "1"]);
    env.relay.wait_online("a", 1);
    env.relay.wait_online("b", 1);

    // Sessions spread over both connectors.
    for i in 0..4 {
        assert_eq!(
            stdout(&env.ssh("web1", &format!("echo s{i}"), b"")),
            format!("s{i}")
        );
    }
    let served = |p: &Proc| p.log_text().matches("session accepted").count();
    assert!(served(&a) > 0, "connector a served nothing");

    a.kill();
    for i in 0..4 {
        let out = env.ssh("web1", &format!("echo t{i}"), b"");
        assert_eq!(stdout(&out), format!("t{i}"), "stderr: {}", stderr(&out));
    }
}

#[test]
fn sigterm_drains_open_sessions_before_the_connector_exits() {
    let env = Env::start();
    let mut c = env.connector("c1", "web1", &["--ha-connections", "1"]);
    env.relay.wait_online("c1", 1);

    // A session that is in the middle of its work when SIGTERM arrives.
    let mut ssh = env
        .client
        .ssh_command(&env.sshd, "web1", "read line; echo got-$line")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the session to be accepted", || {
        c.log_text().contains("session accepted").then_some(())
    });
    c.signal("TERM");
    wait_for("the connector to start draining", || {
        c.log_text()
            .contains("waiting for open sessions")
            .then_some(())
    });
    assert!(
        c.is_running(),
        "the connector must wait for the open session"
    );

    use std::io::Write as _;
    ssh.stdin.take().unwrap().write_all(b"drained\n").unwrap();
    let out = ssh.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "got-drained", "stderr: {}", stderr(&out));
    assert!(
        c.wait_exit().success(),
        "the connector should exit cleanly after draining"
    );
}

#[test]
fn sigterm_on_the_relay_drains_open_sessions() {
    let mut env = Env::start();
    let _c = env.connector("c1", "web1", &[]);
    env.relay.wait_online("c1", 2);
    let mut ssh = env
        .client
        .ssh_command(&env.sshd, "web1", "read line; echo got-$line")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let relay = env.relay.proc.as_mut().unwrap();
    wait_for("the session to open", || {
        relay.log_text().contains("session opened").then_some(())
    });
    relay.signal("TERM");
    wait_for("the relay to start draining", || {
        relay
            .log_text()
            .contains("waiting for open sessions to finish")
            .then_some(())
    });
    assert!(
        relay.is_running(),
        "the relay must wait for the open session"
    );

    use std::io::Write as _;
    ssh.stdin.take().unwrap().write_all(b"drained\n").unwrap();
    let out = ssh.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "got-drained", "stderr: {}", stderr(&out));
    assert!(
        relay.wait_exit().success(),
        "the relay should exit cleanly after draining"
    );
}
