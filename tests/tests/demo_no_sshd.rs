//! `sallyport-relay demo` on a machine where nothing listens on its SSH
//! target: the first screen says so with what to run, the demo waits for
//! the server instead of printing a password for a service that cannot
//! work, and goes on by itself once the server answers.

use std::process::Command;

use sallyport_tests::*;

fn demo(dir: &std::path::Path, target: &str) -> (Proc, u16) {
    let https = free_port();
    let demo = Proc::spawn(
        "demo",
        Command::new(bin("sallyport-relay"))
            .arg("demo")
            .arg("--data-dir")
            .arg(dir.join("demo"))
            .args(["--listen-https", &format!("127.0.0.1:{https}")])
            .args(["--listen-tunnel", &format!("127.0.0.1:{}", free_port())])
            .args(["--ssh-target", target]),
        dir.join("demo.log"),
    );
    (demo, https)
}

#[test]
fn a_demo_without_sshd_says_what_to_run_and_starts_once_sshd_answers() {
    let dir = tempfile::tempdir().unwrap();
    // A real sshd, stopped: its port is closed, as on a machine without one.
    let mut sshd = Sshd::start(dir.path());
    sshd.stop();
    let target = sshd.target();
    let (mut demo, https) = demo(dir.path(), &target);

    let screen = wait_for("the demo's first screen", || {
        let log = demo.log_text();
        log.contains("Ctrl-C to stop").then_some(log)
    });
    assert!(
        screen.contains(&format!(
            "No SSH server answers at {target} (connection refused)."
        )),
        "{screen}"
    );
    assert!(
        screen.contains(&format!(
            "Start the SSH server at {target}, or run the demo with --ssh-target HOST:PORT"
        )),
        "{screen}"
    );
    // Its first screen: no password for a service that cannot work yet.
    assert!(
        !screen.contains("Password:") && !screen.contains("demo is running"),
        "{screen}"
    );
    assert!(demo.is_running(), "{screen}");

    // The admin starts sshd: the demo goes on without a restart, and what
    // it prints then works.
    sshd.change_host_key();
    let password = wait_for("the demo to print its password", || {
        let log = demo.log_text();
        let line = log.lines().find(|l| l.starts_with("Password:"))?;
        Some(line.trim_start_matches("Password:").trim().to_owned())
    });
    assert!(
        demo.log_text()
            .contains(&format!("{target} answers now: starting the demo.")),
        "{}",
        demo.log_text()
    );
    let client = Client::new(dir.path(), "demo");
    let out = client.login_to(
        &format!("https://localhost:{https}"),
        &dir.path().join("demo/relay/https.pem"),
        "demo",
        &password,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = client.ssh(&sshd, "localhost", "echo sshd came later", b"");
    assert_eq!(stdout(&out), "sshd came later", "{}", stderr(&out));

    demo.signal("TERM");
    assert!(demo.wait_exit().success(), "{}", demo.log_text());
}

#[test]
fn ctrl_c_while_waiting_for_sshd_stops_the_demo_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let target = format!("127.0.0.1:{}", free_port());
    let (mut demo, _) = demo(dir.path(), &target);
    wait_for("the demo's first screen", || {
        demo.log_text().contains("Ctrl-C to stop").then_some(())
    });
    demo.signal("INT");
    assert!(demo.wait_exit().success(), "{}", demo.log_text());
    assert!(
        !demo.log_text().contains("Password:"),
        "{}",
        demo.log_text()
    );
}

#[test]
fn a_target_that_is_no_address_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (mut demo, _) = demo(dir.path(), "no-port-here");
    let status = demo.wait_exit();
    let log = demo.log_text();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("--ssh-target no-port-here: ") && log.contains("give HOST:PORT"),
        "{log}"
    );
}
