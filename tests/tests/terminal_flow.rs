//! The shell loop of the client core, natively, against the real sshd: input
//! and output flow at once (a paste's echo drains while the paste goes out),
//! and input the server does not take is shown as a stalled session that
//! can still be closed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sallyport_client::ssh::{self, Ended, Frontend, Input, Options, State};
use sallyport_tests::*;
use tokio::sync::mpsc;

#[derive(Default)]
struct Screen {
    output: Mutex<Vec<u8>>,
    states: Mutex<Vec<(State, String)>>,
}

impl Screen {
    /// Waits until the output after `from` holds `what`; returns where it ends.
    async fn wait_for(&self, what: &str, from: usize) -> usize {
        let deadline = Instant::now() + PATIENCE;
        loop {
            {
                let out = self.output.lock().unwrap();
                if let Some(i) = out
                    .get(from..)
                    .and_then(|t| t.windows(what.len()).position(|w| w == what.as_bytes()))
                {
                    return from + i + what.len();
                }
            }
            if Instant::now() > deadline {
                let out = self.output.lock().unwrap();
                let tail =
                    String::from_utf8_lossy(&out[out.len().saturating_sub(600)..]).into_owned();
                panic!("{what:?} never appeared; the screen ends with:\n{tail}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn saw(&self, state: State) -> Option<String> {
        self.states
            .lock()
            .unwrap()
            .iter()
            .find(|(s, _)| *s == state)
            .map(|(_, m)| m.clone())
    }
}

impl Frontend for Screen {
    fn output(&self, bytes: &[u8]) {
        self.output.lock().unwrap().extend_from_slice(bytes);
    }

    fn status(&self, state: State, message: &str) {
        self.states
            .lock()
            .unwrap()
            .push((state, message.to_owned()));
    }
}

/// Logs in to `sshd` as the e2e account and waits for the shell prompt.
async fn shell(
    sshd: &Sshd,
) -> (
    Arc<Screen>,
    mpsc::Sender<Input>,
    tokio::task::JoinHandle<Ended>,
    usize,
) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", sshd.port))
        .await
        .unwrap();
    let options = Options {
        user: E2E_UNIX_USER.into(),
        host_keys: vec![sshd.host_pub.clone()],
        connector: None,
        service: "web1".into(),
        cols: 100,
        rows: 30,
        certificate: None,
        principals: Vec::new(),
    };
    let (tx, rx) = mpsc::channel(ssh::INPUT_QUEUE);
    let screen = Arc::new(Screen::default());
    let ui = screen.clone();
    let task = tokio::spawn(async move { ssh::run(tcp, options, rx, &*ui).await });
    let at = screen.wait_for("login as: ", 0).await;
    send(&tx, "\r").await;
    let at = screen.wait_for("assword: ", at).await;
    send(&tx, &format!("{E2E_UNIX_PASSWORD}\r")).await;
    send(&tx, "echo sh''ell-ready\r").await;
    let at = screen.wait_for("shell-ready\r\n", at).await;
    (screen, tx, task, at)
}

async fn send(tx: &mpsc::Sender<Input>, text: &str) {
    tx.send(Input::Data(text.as_bytes().to_vec()))
        .await
        .unwrap();
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
    let (screen, tx, task, at) = shell(&sshd).await;
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
    send(&tx, &format!("cat > {file}\r")).await;
    screen.wait_for("\r\n", at).await;
    // 6 MiB: more than sshd's window for our input and ours for its echo
    // together, as a terminal sends it (CR ends a line; the pty makes it LF).
    const SIZE: usize = 6 << 20;
    tx.send(Input::Data(lines(SIZE, b'\r'))).await.unwrap();
    send(&tx, "\x04echo ca''t-done\r").await;
    screen.wait_for("cat-done\r\n", at).await;
    let got = std::fs::read(&file).unwrap_or_default();
    assert_eq!(got.len(), SIZE);
    assert!(got == lines(SIZE, b'\n'), "the file differs from the paste");
    assert!(screen.saw(State::Stalled).is_none());
    tx.send(Input::Close).await.unwrap();
    assert_eq!(task.await.unwrap(), Ended::Closed);
}

#[tokio::test]
async fn input_the_server_does_not_take_shows_a_stalled_session_that_still_closes() {
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start_password(dir.path());
    let (screen, tx, task, _) = shell(&sshd).await;
    // Nothing reads the pty: its buffer, then sshd's window for our input
    // fill, and the rest waits in the client.
    send(&tx, "sleep 600\r").await;
    tx.send(Input::Data(lines(8 << 20, b'\r'))).await.unwrap();
    let deadline = Instant::now() + PATIENCE;
    let message = loop {
        if let Some(m) = screen.saw(State::Stalled) {
            break m;
        }
        assert!(Instant::now() < deadline, "never shown as stalled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        message.contains("bytes of input wait") && message.contains("nothing has moved"),
        "{message}"
    );
    tx.send(Input::Close).await.unwrap();
    assert_eq!(task.await.unwrap(), Ended::Closed);
}

#[tokio::test]
async fn input_over_the_limit_is_refused_whole_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start_password(dir.path());
    let (screen, tx, task, at) = shell(&sshd).await;
    tx.send(Input::Data(lines(ssh::MAX_PENDING_INPUT + 1, b'\r')))
        .await
        .unwrap();
    screen.wait_for("MiB refused", at).await;
    // Nothing of it reached the shell, which still answers.
    send(&tx, "echo $((6*7))\r").await;
    let end = screen.wait_for("42\r\n", at).await;
    let out = screen.output.lock().unwrap()[at..end].to_vec();
    assert!(!out.windows(8).any(|w| w == b"abcdefgh"), "some was sent");
    tx.send(Input::Close).await.unwrap();
    assert_eq!(task.await.unwrap(), Ended::Closed);
}
