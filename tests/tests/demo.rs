//! The README's run command: `sallyport-relay demo` prints what to run next,
//! and what it prints works.

use std::process::Command;

use sallyport_tests::*;

#[test]
fn demo_prints_a_password_that_reaches_the_local_sshd() {
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(dir.path());
    let https = free_port();
    let data = dir.path().join("demo");
    let mut demo = Proc::spawn(
        "demo",
        Command::new(bin("sallyport-relay"))
            .arg("demo")
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-https", &format!("127.0.0.1:{https}")])
            .args(["--listen-tunnel", &format!("127.0.0.1:{}", free_port())])
            .args(["--ssh-target", &sshd.target()]),
        dir.path().join("demo.log"),
    );
    let password = wait_for("the demo to print its password", || {
        let log = demo.log_text();
        let line = log.lines().find(|l| l.starts_with("Password:"))?;
        Some(line.trim_start_matches("Password:").trim().to_owned())
    });
    let log = demo.log_text();
    assert!(log.contains("User:      demo"), "{log}");
    assert!(
        log.contains("ssh -o ProxyCommand='target/release/sallyport proxy %n' $USER@localhost"),
        "{log}"
    );

    let client = Client::new(dir.path(), "demo");
    let out = client.login_to(
        &format!("https://localhost:{https}"),
        &data.join("relay/https.pem"),
        "demo",
        &password,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = client.ssh(&sshd, "localhost", "echo through the demo", b"");
    assert_eq!(stdout(&out), "through the demo", "{}", stderr(&out));

    // Ctrl-C / SIGTERM stops it cleanly.
    demo.signal("TERM");
    assert!(demo.wait_exit().success(), "{}", demo.log_text());
}
