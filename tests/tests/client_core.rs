//! The browser's SSH client core, built natively, against the real sshd:
//! the same code the page runs, without the browser.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sallyport_client::ssh::{self, Ended, Frontend, Input, Options, State};
use sallyport_tests::*;
use tokio::sync::mpsc;

#[derive(Default)]
struct Screen {
    output: Mutex<Vec<u8>>,
    states: Mutex<Vec<State>>,
}

impl Screen {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    fn saw(&self, state: State) -> bool {
        self.states.lock().unwrap().contains(&state)
    }

    /// Waits until the screen shows `what` (after `from` bytes), returns where it ended.
    async fn wait_for(&self, what: &str, from: usize) -> usize {
        for _ in 0..1200 {
            let text = self.text();
            if let Some(i) = text.get(from..).and_then(|t| t.find(what)) {
                return from + i + what.len();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{what:?} never appeared; screen:\n{}", self.text());
    }
}

impl Frontend for Screen {
    fn output(&self, bytes: &[u8]) {
        self.output.lock().unwrap().extend_from_slice(bytes);
    }

    fn status(&self, state: State, _message: &str) {
        self.states.lock().unwrap().push(state);
    }
}

async fn start(
    sshd: &Sshd,
    host_keys: Vec<String>,
) -> (
    Arc<Screen>,
    mpsc::Sender<Input>,
    tokio::task::JoinHandle<Ended>,
) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", sshd.port))
        .await
        .unwrap();
    let options = Options {
        user: E2E_UNIX_USER.into(),
        host_keys,
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
    (screen, tx, task)
}

async fn send(tx: &mpsc::Sender<Input>, text: &str) {
    tx.send(Input::Data(text.as_bytes().to_vec()))
        .await
        .unwrap();
}

#[tokio::test]
async fn logs_in_with_a_password_and_runs_a_shell_on_a_pty() {
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start_password(dir.path());
    let (screen, tx, task) = start(&sshd, vec![sshd.host_pub.clone()]).await;

    let at = screen
        .wait_for(&format!("login as: {E2E_UNIX_USER}"), 0)
        .await;
    send(&tx, "\r").await;
    let at = screen.wait_for("assword: ", at).await;
    send(&tx, &format!("{E2E_UNIX_PASSWORD}\r")).await;
    tx.send(Input::Resize(123, 45)).await.unwrap();
    send(&tx, "stty size; echo $((6*7))\r").await;
    screen.wait_for("45 123", at).await;
    screen.wait_for("\r\n42\r\n", at).await;
    assert!(
        !screen.text().contains(E2E_UNIX_PASSWORD),
        "the password was echoed"
    );
    send(&tx, "exit 3\r").await;
    let ended = task.await.unwrap();
    assert_eq!(ended, Ended::Exit(3));
    assert!(screen.saw(State::Connected));
}

#[tokio::test]
async fn a_wrong_password_ends_without_a_shell() {
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start_password(dir.path());
    let (screen, tx, task) = start(&sshd, vec![sshd.host_pub.clone()]).await;
    let mut at = screen.wait_for("login as: ", 0).await;
    send(&tx, "\r").await;
    // Three tries of keyboard-interactive, then three of password (as OpenSSH).
    for _ in 0..2 * ssh::MAX_AUTH_ATTEMPTS {
        at = screen.wait_for("assword: ", at).await;
        send(&tx, "not the password\r").await;
    }
    let ended = task.await.unwrap();
    assert_eq!(ended, Ended::AuthFailed);
    assert!(
        screen.text().contains("Permission denied"),
        "{}",
        screen.text()
    );
    assert!(!screen.saw(State::Connected));
}

#[tokio::test]
async fn a_host_key_the_connector_did_not_report_stops_before_login() {
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start_password(dir.path());
    // Some other ed25519 key than the server's.
    let other = std::fs::read_to_string(sshd.client_key.with_extension("pub")).unwrap();
    let (screen, _tx, task) = start(&sshd, vec![other]).await;
    let ended = task.await.unwrap();
    match &ended {
        Ended::HostKeyMismatch(why) => assert!(why.contains("SHA256:"), "{why}"),
        other => panic!("expected a host key mismatch, got {other:?}"),
    }
    assert!(ended.to_string().starts_with("host key mismatch: "));
    assert!(
        !screen.text().contains("login as:"),
        "prompted despite the mismatch"
    );
    assert!(screen.saw(State::Error));
}
