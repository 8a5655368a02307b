//! PostgreSQL restarted under a relay that keeps its state there: what a
//! person signing in sees while it is down (a clear 503), what happens to
//! the session they already have open (it goes on: its bytes never touch
//! the store), and that the relay recovers by itself once it is back.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::Stdio;

use sallyport_tests::https::RelayOptions;
use sallyport_tests::{stderr, wait_for, Env, SshdAuth, PASSWORD, USER};

#[test]
fn postgres_restarted_gives_503_keeps_open_sessions_and_recovers() {
    let mut env = Env::start_with_relay(
        SshdAuth::Key,
        None,
        RelayOptions {
            postgres: true,
            ..Default::default()
        },
    );
    let _c = env.connector("c1", "web1", &[]);
    env.relay.wait_online("c1", 2);

    // A session open before the outage: `cat` echoes each line.
    let mut ssh = env
        .client
        .ssh_command(&env.sshd, "web1", "cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ssh");
    let mut input = ssh.stdin.take().expect("stdin");
    let mut output = BufReader::new(ssh.stdout.take().expect("stdout"));
    let mut echo = |line: &str| {
        writeln!(input, "{line}").expect("write to ssh");
        let mut got = String::new();
        output.read_line(&mut got).expect("read from ssh");
        assert_eq!(got.trim_end(), line);
    };
    echo("before the outage");

    env.relay.postgres.as_mut().expect("postgres").stop();
    let (code, body) = env.relay.api_login(USER, PASSWORD, None);
    assert_eq!(code, 503, "sign-in while PostgreSQL is down: {body}");
    assert!(body.contains("store"), "{body}");
    echo("while PostgreSQL is down");

    env.relay.postgres.as_mut().expect("postgres").start_again();
    wait_for("sign-in to work again", || {
        (env.relay.api_login(USER, PASSWORD, None).0 == 200).then_some(())
    });
    echo("after it is back");
    drop(input);
    let out = ssh.wait_with_output().expect("ssh exits");
    assert!(out.status.success(), "ssh: {}", stderr(&out));

    // New sessions, and the chain written across the outage, are whole.
    let out = env.ssh("web1", "echo again", b"");
    assert!(out.status.success(), "ssh after: {}", stderr(&out));
    let out = env.relay.admin(&["audit", "verify"], "");
    assert!(out.status.success(), "audit verify: {}", stderr(&out));
}
