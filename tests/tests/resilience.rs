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

/// Holds a session open while `proc` gets SIGTERM: `proc` must keep running
/// until the session finishes, the session must finish intact, and `proc`
/// must then exit cleanly. `opened` is the log line that says the session
/// reached `proc`.
fn assert_sigterm_drains(client: &Client, sshd: &Sshd, proc: &mut Proc, opened: &str) {
    let mut ssh = client
        .ssh_command(sshd, "web1", "read line; echo got-$line")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the session to open", || {
        proc.log_text().contains(opened).then_some(())
    });
    proc.signal("TERM");
    wait_for(&format!("the {} to start draining", proc.name), || {
        proc.log_text()
            .contains("waiting for open sessions")
            .then_some(())
    });
    assert!(
        proc.is_running(),
        "the {} must wait for the open session",
        proc.name
    );

    use std::io::Write as _;
    ssh.stdin.take().unwrap().write_all(b"drained\n").unwrap();
    let out = ssh.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "got-drained", "stderr: {}", stderr(&out));
    assert!(
        proc.wait_exit().success(),
        "the {} should exit cleanly after draining",
        proc.name
    );
}

#[test]
fn sigterm_drains_open_sessions_before_the_connector_exits() {
    let env = Env::start();
    let mut c = env.connector("c1", "web1", &["--ha-connections", "1"]);
    env.relay.wait_online("c1", 1);
    assert_sigterm_drains(&env.client, &env.sshd, &mut c, "session accepted");
}

#[test]
fn sigterm_on_the_relay_drains_open_sessions() {
    let mut env = Env::start();
    let _c = env.connector("c1", "web1", &[]);
    env.relay.wait_online("c1", 2);
    let relay = env.relay.proc.as_mut().unwrap();
    assert_sigterm_drains(&env.client, &env.sshd, relay, "session opened");
}
