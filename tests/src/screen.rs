//! The browser's SSH client core driven natively, as a person at a terminal
//! would: a [`Screen`] that keeps every byte the session writes and every
//! state it reports, and a [`Session`] over TCP to a real sshd.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sallyport_client::ssh::{self, Certified, Ended, Frontend, Input, Options, State};
use sallyport_proto::client::SessionEvent;
use tokio::sync::mpsc;

use crate::{Sshd, E2E_UNIX_USER, PATIENCE};

/// What the person sees: every byte written to the terminal, every state
/// with its message, the host key the session accepted.
#[derive(Default)]
pub struct Screen {
    output: Mutex<Vec<u8>>,
    states: Mutex<Vec<(State, String)>>,
    host_key: Mutex<Option<String>>,
    /// For certificate logins: a CA key that signs for any account asked
    /// (with ssh-keygen, see [`crate::sshd_variants`]).
    ca: Option<PathBuf>,
    /// The accounts certificates were asked for, in order.
    certified: Mutex<Vec<String>>,
}

impl Screen {
    /// A screen whose front end certifies keys with the CA key at `ca`.
    pub fn with_ca(ca: PathBuf) -> Self {
        Self {
            ca: Some(ca),
            ..Self::default()
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.output.lock().unwrap().clone()
    }

    /// The bytes as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }

    /// Whether the session reported `state` at some point.
    pub fn saw(&self, state: State) -> bool {
        self.message_of(state).is_some()
    }

    /// The message of the first report of `state`.
    pub fn message_of(&self, state: State) -> Option<String> {
        self.states
            .lock()
            .unwrap()
            .iter()
            .find(|(s, _)| *s == state)
            .map(|(_, m)| m.clone())
    }

    /// The fingerprint of the host key the session accepted (its start event).
    pub fn host_key(&self) -> Option<String> {
        self.host_key.lock().unwrap().clone()
    }

    /// The accounts certificates were asked for, in order.
    pub fn certified(&self) -> Vec<String> {
        self.certified.lock().unwrap().clone()
    }

    fn ended(&self) -> bool {
        self.saw(State::Closed) || self.saw(State::Error)
    }

    /// Waits up to [`PATIENCE`] until the bytes after `from` hold `what`;
    /// returns the offset just past it. Gives up at once when the session
    /// has ended without it.
    pub async fn try_wait_for(&self, what: &str, from: usize) -> Result<usize, String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            // Ended first: output comes before the end is reported.
            let ended = self.ended();
            let found = self.output.lock().unwrap().get(from..).and_then(|t| {
                t.windows(what.len().max(1))
                    .position(|w| w == what.as_bytes())
            });
            if let Some(i) = found {
                return Ok(from + i + what.len());
            }
            if ended || Instant::now() > deadline {
                let text = self.text();
                let tail: String = text
                    .chars()
                    .rev()
                    .take(2000)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                return Err(format!(
                    "{what:?} never appeared{}; the screen ends with:\n{tail}",
                    if ended { " (the session ended)" } else { "" }
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// [`Screen::try_wait_for`], failing the test when it gives up.
    pub async fn wait_for(&self, what: &str, from: usize) -> usize {
        self.try_wait_for(what, from)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
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

    fn event(&self, event: SessionEvent) {
        if let SessionEvent::Start { host_key, .. } = event {
            *self.host_key.lock().unwrap() = Some(host_key);
        }
    }

    async fn certify(&self, principal: &str) -> Result<Certified, String> {
        let ca = self.ca.as_ref().ok_or("no CA")?;
        self.certified.lock().unwrap().push(principal.to_owned());
        Ok(crate::sshd_variants::sign(ca, principal))
    }
}

/// A session's settings as the tests use them: [`E2E_UNIX_USER`] at
/// `login as:`, the service named `web1`, 100×30, accepting `host_keys`.
pub fn options(host_keys: Vec<String>) -> Options {
    Options {
        user: E2E_UNIX_USER.into(),
        host_keys,
        connector: None,
        service: "web1".into(),
        cols: 100,
        rows: 30,
        certificate: None,
        principals: Vec::new(),
    }
}

/// One session of the client core, running on its own task.
pub struct Session {
    pub screen: Arc<Screen>,
    pub tx: mpsc::Sender<Input>,
    pub task: tokio::task::JoinHandle<Ended>,
}

impl Session {
    /// Connects to `sshd` over TCP and runs a session with `options`,
    /// showing it on `screen`.
    pub async fn start(sshd: &Sshd, screen: Screen, options: Options) -> Self {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", sshd.port))
            .await
            .expect("connect to sshd");
        let (tx, rx) = mpsc::channel(ssh::INPUT_QUEUE);
        let screen = Arc::new(screen);
        let ui = screen.clone();
        let task = tokio::spawn(async move { ssh::run(tcp, options, rx, &*ui).await });
        Self { screen, tx, task }
    }

    /// Types `text`.
    pub async fn send(&self, text: &str) {
        self.tx
            .send(Input::Data(text.as_bytes().to_vec()))
            .await
            .expect("the session took no input");
    }
}
