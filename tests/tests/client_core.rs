//! The browser's SSH client core, built natively, against the real sshd:
//! the same code the page runs, without the browser.

use sallyport_client::ssh::{self, Ended, Input, State};
use sallyport_tests::screen::{self, Screen, Session};
use sallyport_tests::*;

/// A session against `sshd` accepting `host_keys`.
async fn start(sshd: &Sshd, host_keys: Vec<String>) -> Session {
    Session::start(sshd, Screen::default(), screen::options(host_keys)).await
}

#[tokio::test]
async fn logs_in_with_a_password_and_runs_a_shell_on_a_pty() {
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start_password(dir.path());
    let s = start(&sshd, vec![sshd.host_pub.clone()]).await;

    let at = s
        .screen
        .wait_for(&format!("login as: {E2E_UNIX_USER}"), 0)
        .await;
    s.send("\r").await;
    let at = s.screen.wait_for("assword: ", at).await;
    s.send(&format!("{E2E_UNIX_PASSWORD}\r")).await;
    s.tx.send(Input::Resize(123, 45)).await.unwrap();
    s.send("stty size; echo $((6*7))\r").await;
    s.screen.wait_for("45 123", at).await;
    s.screen.wait_for("\r\n42\r\n", at).await;
    assert!(
        !s.screen.text().contains(E2E_UNIX_PASSWORD),
        "the password was echoed"
    );
    s.send("exit 3\r").await;
    let ended = s.task.await.unwrap();
    assert_eq!(ended, Ended::Exit(3));
    assert!(s.screen.saw(State::Connected));
}

#[tokio::test]
async fn a_wrong_password_ends_without_a_shell() {
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start_password(dir.path());
    let s = start(&sshd, vec![sshd.host_pub.clone()]).await;
    let mut at = s.screen.wait_for("login as: ", 0).await;
    s.send("\r").await;
    // Three tries of keyboard-interactive, then three of password (as OpenSSH).
    for _ in 0..2 * ssh::MAX_AUTH_ATTEMPTS {
        at = s.screen.wait_for("assword: ", at).await;
        s.send("not the password\r").await;
    }
    let ended = s.task.await.unwrap();
    assert_eq!(ended, Ended::AuthFailed);
    assert!(
        s.screen.text().contains("Permission denied"),
        "{}",
        s.screen.text()
    );
    assert!(!s.screen.saw(State::Connected));
}

#[tokio::test]
async fn a_host_key_the_connector_did_not_report_stops_before_login() {
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start_password(dir.path());
    // Some other ed25519 key than the server's.
    let other = std::fs::read_to_string(sshd.client_key.with_extension("pub")).unwrap();
    let s = start(&sshd, vec![other]).await;
    let ended = s.task.await.unwrap();
    match &ended {
        Ended::HostKeyMismatch(why) => assert!(why.contains("SHA256:"), "{why}"),
        other => panic!("expected a host key mismatch, got {other:?}"),
    }
    assert!(ended.to_string().starts_with("host key mismatch: "));
    assert!(
        !s.screen.text().contains("login as:"),
        "prompted despite the mismatch"
    );
    assert!(s.screen.saw(State::Error));
}
