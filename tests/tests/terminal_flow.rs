//! The shell loop of the client core, natively, against the real sshd: input
//! and output flow at once (a paste's echo drains while the paste goes out),
//! and input the server does not take is shown as a stalled session that
//! can still be closed.

use std::time::{Duration, Instant};

use sallyport_client::ssh::{self, Ended, Input, State};
use sallyport_tests::screen::{self, Screen, Session};
use sallyport_tests::*;

/// Logs in to `sshd` as the e2e account and waits for the shell prompt;
/// returns the session and where the screen was then.
async fn shell(sshd: &Sshd) -> (Session, usize) {
    let options = screen::options(vec![sshd.host_pub.clone()]);
    let s = Session::start(sshd, Screen::default(), options).await;
    let at = s.screen.wait_for("login as: ", 0).await;
    s.send("\r").await;
    let at = s.screen.wait_for("assword: ", at).await;
    s.send(&format!("{E2E_UNIX_PASSWORD}\r")).await;
    s.send("echo sh''ell-ready\r").await;
    let at = s.screen.wait_for("shell-ready\r\n", at).await;
    (s, at)
}

/// `len` bytes of lines of printable text, each ending in `end` (the last
/// one too).
fn lines(len: usize, end: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            if i % 80 == 79 || i + 1 == len {
                end
            } else {
                b'a' + (i % 26) as u8
            }
        })
        .collect()
}

#[tokio::test]
async fn a_paste_larger_than_both_windows_arrives_whole_while_its_echo_flows_back() {
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start_password(dir.path());
    let (s, at) = shell(&sshd).await;
    let file = format!("/tmp/sallyport-flow-{}", std::process::id());
    let _ = std::fs::remove_file(&file);
    // Removed however the test ends.
    struct Remove<'a>(&'a str);
    impl Drop for Remove<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }
    let _remove = Remove(&file);
    s.send(&format!("cat > {file}\r")).await;
    s.screen.wait_for("\r\n", at).await;
    // 6 MiB: more than sshd's window for our input and ours for its echo
    // together, as a terminal sends it (CR ends a line; the pty makes it LF).
    const SIZE: usize = 6 << 20;
    s.tx.send(Input::Data(lines(SIZE, b'\r'))).await.unwrap();
    s.send("\x04echo ca''t-done\r").await;
    s.screen.wait_for("cat-done\r\n", at).await;
    let got = std::fs::read(&file).unwrap_or_default();
    assert_eq!(got.len(), SIZE);
    assert!(got == lines(SIZE, b'\n'), "the file differs from the paste");
    assert!(s.screen.message_of(State::Stalled).is_none());
    s.tx.send(Input::Close).await.unwrap();
    assert_eq!(s.task.await.unwrap(), Ended::Closed);
}

#[tokio::test]
async fn input_the_server_does_not_take_shows_a_stalled_session_that_still_closes() {
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start_password(dir.path());
    let (s, _) = shell(&sshd).await;
    // Nothing reads the pty: its buffer, then sshd's window for our input
    // fill, and the rest waits in the client.
    s.send("sleep 600\r").await;
    s.tx.send(Input::Data(lines(8 << 20, b'\r'))).await.unwrap();
    let deadline = Instant::now() + PATIENCE;
    let message = loop {
        if let Some(m) = s.screen.message_of(State::Stalled) {
            break m;
        }
        assert!(Instant::now() < deadline, "never shown as stalled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        message.contains("bytes of input wait") && message.contains("nothing has moved"),
        "{message}"
    );
    s.tx.send(Input::Close).await.unwrap();
    assert_eq!(s.task.await.unwrap(), Ended::Closed);
}

#[tokio::test]
async fn input_over_the_limit_is_refused_whole_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start_password(dir.path());
    let (s, at) = shell(&sshd).await;
    s.tx.send(Input::Data(lines(ssh::MAX_PENDING_INPUT + 1, b'\r')))
        .await
        .unwrap();
    s.screen.wait_for("MiB refused", at).await;
    // Nothing of it reached the shell, which still answers.
    s.send("echo $((6*7))\r").await;
    let end = s.screen.wait_for("42\r\n", at).await;
    let out = s.screen.bytes()[at..end].to_vec();
    assert!(!out.windows(8).any(|w| w == b"abcdefgh"), "some was sent");
    s.tx.send(Input::Close).await.unwrap();
    assert_eq!(s.task.await.unwrap(), Ended::Closed);
}
