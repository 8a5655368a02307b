//! The QUIC tunnel on a bad network: the connector reaches the relay through
//! a lossy UDP forwarder (`sallyport_tests::lossy_udp`) that drops a set
//! fraction of the datagrams each way, or that rebinds like a NAT so the
//! relay sees the connector's address change mid-connection. OpenSSH's
//! `ssh` goes through `sallyport proxy` and the relay as a person's would;
//! the tests check what that person sees: a login, files that arrive
//! intact both ways, a session that outlives the path change.
//!
//! Loss makes these slow, so each prints its time to log in and its
//! throughput (`--no-capture` shows them).

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Instant;

use rand::{RngCore as _, SeedableRng as _};
use sallyport_tests::lossy_udp::{Config, LossyUdp};
use sallyport_tests::*;

/// The bytes moved each way in the loss tests (the 10 MB).
const BULK_BYTES: usize = 10 * 1024 * 1024;

/// A relay, sshd and signed-in user, with connector `c1` serving sshd as
/// `web1` over one QUIC connection that goes through a forwarder dropping
/// `loss` of the datagrams each way.
fn through_forwarder(loss: f64) -> (Env, LossyUdp, Proc) {
    let env = Env::start();
    let tunnel = SocketAddr::from(([127, 0, 0, 1], env.relay.tunnel_port));
    let fwd = LossyUdp::start(Config::new(tunnel, loss)).expect("start the lossy forwarder");
    let relay = fwd.addr().to_string();
    // QUIC only: these are QUIC's tests, and auto could fall back to TCP,
    // which does not go through the forwarder.
    let connector = env.connector(
        "c1",
        "web1",
        &[
            "--relay",
            &relay,
            "--transport",
            "quic",
            "--ha-connections",
            "1",
        ],
    );
    env.relay.wait_online("c1", 1);
    assert_eq!(
        env.relay.connector_row("c1").get(3).map(String::as_str),
        Some("quic"),
        "connector list: {}",
        env.relay.connector_list()
    );
    (env, fwd, connector)
}

/// Bytes that do not compress and are the same every run.
fn payload(len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(len as u64).fill_bytes(&mut data);
    data
}

fn mb_per_s(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

/// Logs in, then moves [`BULK_BYTES`] up (into a file sshd's side writes)
/// and down (a file sshd's side reads), comparing every byte.
fn login_and_move_bulk_intact(loss: f64) {
    let started = Instant::now();
    let (env, fwd, _connector) = through_forwarder(loss);
    let pct = loss * 100.0;

    let t = Instant::now();
    let out = env.ssh("web1", "echo in", b"");
    let login = t.elapsed();
    assert_eq!(
        stdout(&out),
        "in",
        "login at {pct:.0} % loss: {}",
        stderr(&out)
    );

    // sshd runs on this machine as this user: the files are ours to read.
    let data = payload(BULK_BYTES);
    let up = env.path().join("up.bin");
    let t = Instant::now();
    let out = env.ssh("web1", &format!("cat > {}", up.display()), &data);
    let up_secs = t.elapsed().as_secs_f64();
    assert!(out.status.success(), "upload: {}", stderr(&out));
    let arrived = std::fs::read(&up).expect("the uploaded file");
    assert_eq!(
        arrived.len(),
        data.len(),
        "upload at {pct:.0} % loss: length"
    );
    assert!(
        arrived == data,
        "upload at {pct:.0} % loss: the bytes differ"
    );

    let down = env.path().join("down.bin");
    std::fs::write(&down, &data).expect("write the file to download");
    let t = Instant::now();
    let out = env.ssh("web1", &format!("cat {}", down.display()), b"");
    let down_secs = t.elapsed().as_secs_f64();
    assert!(out.status.success(), "download: {}", stderr(&out));
    assert_eq!(
        out.stdout.len(),
        data.len(),
        "download at {pct:.0} % loss: length"
    );
    assert!(
        out.stdout == data,
        "download at {pct:.0} % loss: the bytes differ"
    );

    let counts = fwd.counts();
    // The loss was real: both directions lost datagrams.
    assert!(
        counts.up_dropped > 0 && counts.down_dropped > 0,
        "the forwarder dropped nothing: {counts}"
    );
    eprintln!(
        "{pct:.0} % loss: login (ssh start to command output) {:.0} ms; {} MiB up {:.2} MB/s ({up_secs:.1} s), \
         down {:.2} MB/s ({down_secs:.1} s); forwarder: {counts}; whole test {:.1} s",
        login.as_secs_f64() * 1000.0,
        BULK_BYTES >> 20,
        mb_per_s(BULK_BYTES, up_secs),
        mb_per_s(BULK_BYTES, down_secs),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn ssh_logs_in_and_moves_10_mb_intact_at_10_percent_loss_each_way() {
    login_and_move_bulk_intact(0.10);
}

#[test]
fn ssh_logs_in_and_moves_10_mb_intact_at_5_percent_loss_each_way() {
    login_and_move_bulk_intact(0.05);
}

/// Lines of `child`'s stdout, read on a thread of their own so that a test
/// waits for one with a limit.
fn lines_of(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn next_line(lines: &mpsc::Receiver<String>, what: &str) -> String {
    lines
        .recv_timeout(PATIENCE)
        .unwrap_or_else(|_| panic!("no line from the open session {what}"))
}

#[test]
fn an_open_session_survives_the_connectors_address_changing() {
    session_survives_rebind(0.0);
}

/// The same while 10 % of the datagrams are lost each way, so that the
/// relay's path validation (PATH_CHALLENGE / PATH_RESPONSE) and the first
/// packets on the new path may be lost too.
#[test]
fn an_open_session_survives_the_connectors_address_changing_at_10_percent_loss() {
    session_survives_rebind(0.10);
}

/// Holds an ssh session open across a NAT rebinding of the connector's
/// path to the relay, with `loss` of the datagrams lost each way.
fn session_survives_rebind(loss: f64) {
    let (env, fwd, connector) = through_forwarder(loss);
    let mut ssh = env
        .client
        .ssh_command(&env.sshd, "web1", "while read l; do echo got-$l; done")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ssh");
    let mut input = ssh.stdin.take().expect("stdin");
    let lines = lines_of(ssh.stdout.take().expect("stdout"));
    input.write_all(b"before\n").expect("type into the session");
    assert_eq!(next_line(&lines, "before the rebind"), "got-before");

    // The NAT rebinds: from now on the relay sees the connector at a new port.
    fwd.rebind().expect("rebind");
    let t = Instant::now();
    input.write_all(b"after\n").expect("type into the session");
    assert_eq!(next_line(&lines, "after the rebind"), "got-after");
    let resumed = t.elapsed();
    let counts = fwd.counts();
    // The answer came back through the new address: the relay moved the
    // connection there (QUIC connection migration)...
    assert!(
        counts.down_on_new_path > 0,
        "the relay never answered the new address: {counts}"
    );

    // ...and new sessions are served on it.
    let out = env.ssh("web1", "echo new", b"");
    assert_eq!(
        stdout(&out),
        "new",
        "a new session after the rebind: {}",
        stderr(&out)
    );

    // The open session ends as its user ends it, not before.
    input.write_all(b"last\n").expect("type into the session");
    assert_eq!(next_line(&lines, "at its end"), "got-last");
    drop(input);
    let status = wait_or_kill(&mut ssh, PATIENCE).expect("ssh to exit once its input ends");
    let mut err = String::new();
    if let Some(mut e) = ssh.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    assert!(
        status.success(),
        "the session after the rebind: {status}: {err}"
    );

    // The same connection carried on: the connector never reconnected, and
    // the relay recorded one connection from it.
    assert_eq!(
        connector.log_text().matches("tunnel up").count(),
        1,
        "the connector opened a new tunnel: the connection did not survive"
    );
    let connected = env.relay.audit_export(&["--type", "connector_connected"]);
    assert_eq!(connected.len(), 1, "connections recorded: {connected:?}");
    env.relay.wait_online("c1", 1);
    eprintln!(
        "rebind at {:.0} % loss: the open session answered {:.0} ms after the path changed; forwarder: {counts}",
        loss * 100.0,
        resumed.as_secs_f64() * 1000.0
    );
}
