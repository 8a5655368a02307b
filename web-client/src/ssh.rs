//! The SSH session at the heart of the client, the same natively and in the
//! browser: host-key check against the keys the connector attested, login
//! as OpenSSH would (`ssh/auth.rs`: certificate, keyboard-interactive, password,
//! with the server's banner shown through [`server_text`]), then a shell on
//! a pty until it ends.
//!
//! The front end (xterm.js in the browser, a test natively) feeds
//! [`Input`] in and receives [`Frontend`] calls out; the byte stream to sshd
//! is any `AsyncRead + AsyncWrite` (the session WebSocket, or TCP in tests).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use russh::client;
use russh::keys::ssh_key::PublicKey;
use russh::keys::PublicKeyOrCertificate;
use russh::ChannelMsg;
use sallyport_proto::client::SessionEvent;
use sallyport_proto::limits::MAX_EVENT_DATA;
use sallyport_proto::ssh_algorithms;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

mod auth;
pub mod pace;
pub mod server_text;

pub use auth::{MAX_AUTH_ATTEMPTS, MAX_KBD_ROUNDS, MAX_PARTIAL_SUCCESSES};

/// Longest line accepted at a login prompt.
pub const MAX_LINE: usize = 1024;
/// Input events queued from the front end.
pub const INPUT_QUEUE: usize = 256;
/// Input handed to SSH per write: one packet at OpenSSH's usual maximum, so
/// each finished write is progress the stall check sees.
pub const INPUT_CHUNK: usize = 32 * 1024;
/// Most input (typed or pasted) that may wait for the server to take it.
/// Input that would go over is refused whole, with a message in the
/// terminal; anything smaller arrives whole, however slowly the server takes it.
pub const MAX_PENDING_INPUT: usize = 64 * 1024 * 1024;
/// With input waiting and nothing moving in either direction for this
/// long, the session shows [`State::Stalled`] (until something moves).
pub const STALL_AFTER_MS: u32 = 10_000;
/// How long the end of a session waits for the server to take the
/// disconnect message.
pub const DISCONNECT_WAIT_MS: u32 = 2_000;
/// The SSH channel window this client grants the server at first (RFC 4254
/// §5.2); then it follows how fast the front end takes output, between
/// [`pace::MIN_WINDOW`] and this ([`pace::MAX_WINDOW`]): with the queue of
/// received packets ([`SHELL_CHANNEL_BUFFER`]) and the page's output queue,
/// it is the most output already on its way when the person presses Ctrl-C
/// (sshd reads up to one window more from the pty before it sees the Ctrl-C).
pub const SHELL_WINDOW: u32 = pace::MAX_WINDOW;
/// Largest SSH packet the server may send on the channel (RFC 4254 §5.1),
/// fixed when the channel opens: half the smallest window, so a small
/// window still has a packet in flight while the next grant travels.
pub const SHELL_MAX_PACKET: u32 = pace::MIN_WINDOW / 2;
/// Packets received (and their window granted again) that may wait for the
/// session to read them: russh grants the window on receipt, so these (and
/// one more that russh holds while the queue is full) are in flight on top
/// of the window.
pub const SHELL_CHANNEL_BUFFER: usize = 2;

/// What the session is doing, for the front end's indicator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Connecting,
    Authenticating,
    Connected,
    /// Connected, but input waits and nothing has moved either way for
    /// [`STALL_AFTER_MS`]: the server takes no input (a program that does
    /// not read, or a connection that went quiet).
    Stalled,
    Closed,
    Error,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Connecting => "connecting",
            State::Authenticating => "authenticating",
            State::Connected => "connected",
            State::Stalled => "stalled",
            State::Closed => "closed",
            State::Error => "error",
        }
    }
}

/// Where the session's output goes.
pub trait Frontend {
    /// Bytes for the terminal.
    fn output(&self, bytes: &[u8]);
    /// A change of state, with a short human-readable message.
    fn status(&self, state: State, message: &str);
    /// Resolves when the front end can take more output. Until then the
    /// session reads nothing more from the server, so a flood of output waits
    /// in SSH's flow control at the server, not in the front end's memory.
    fn drained(&self) -> impl std::future::Future<Output = ()> {
        std::future::ready(())
    }
    /// Something to report to the relay's audit log, from the moment the
    /// shell starts (nothing typed at the login prompts is reported). The
    /// front end stamps the time: `End`'s `duration_ms` is left 0 for it.
    fn event(&self, _event: SessionEvent) {}
    /// Resolves after `ms` milliseconds, for the stall check and the wait at
    /// the end. Natively tokio's timer; a front end without a timer never
    /// resolves it (no stall check, no bound on the last wait).
    fn sleep(&self, ms: u32) -> impl std::future::Future<Output = ()> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            tokio::time::sleep(std::time::Duration::from_millis(ms.into()))
        }
        #[cfg(target_arch = "wasm32")]
        {
            let _ = ms;
            std::future::pending()
        }
    }
    /// Milliseconds on a monotonic clock (any origin), for measuring how
    /// fast output is taken ([`pace`]). Natively since the first call; a
    /// front end without a clock answers 0, and the window stays at
    /// [`SHELL_WINDOW`].
    fn now_ms(&self) -> f64 {
        #[cfg(not(target_arch = "wasm32"))]
        {
            static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
            START
                .get_or_init(std::time::Instant::now)
                .elapsed()
                .as_secs_f64()
                * 1e3
        }
        #[cfg(target_arch = "wasm32")]
        {
            0.0
        }
    }
    /// Terminal bytes to report (output from the server, or input to it);
    /// by default each call is one or more `Output`/`Input` events. A front
    /// end may gather them into fewer events.
    fn terminal_data(&self, bytes: &[u8], output: bool) {
        report_bytes(self, bytes, output);
    }
    /// A key and a certificate to log in as `principal`, one of
    /// [`Options::principals`] that [`Options::certificate`] does not name
    /// (the person chose it at `login as:`); `Err` says why not, and the
    /// login goes on with the server's other methods.
    fn certify(
        &self,
        _principal: &str,
    ) -> impl std::future::Future<Output = Result<Certified, String>> {
        std::future::ready(Err("this client gets no certificates".into()))
    }
}

/// Reports terminal bytes as `Output`/`Input` events of at most
/// [`MAX_EVENT_DATA`] bytes each.
pub fn report_bytes<F: Frontend + ?Sized>(ui: &F, bytes: &[u8], output: bool) {
    use base64::Engine as _;
    for chunk in bytes.chunks(MAX_EVENT_DATA) {
        let data = base64::engine::general_purpose::STANDARD.encode(chunk);
        ui.event(if output {
            SessionEvent::Output { data }
        } else {
            SessionEvent::Input { data }
        });
    }
}

/// What the front end sends in.
#[derive(Debug, Clone)]
pub enum Input {
    /// Keystrokes or pasted text, as the terminal encodes them.
    Data(Vec<u8>),
    /// The terminal's new size in columns and rows.
    Resize(u32, u32),
    /// The person closed the session.
    Close,
}

/// How a session ended; its `Display` is the one line shown to the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    Exit(u32),
    Signal(String),
    /// The connection dropped or the relay refused it.
    Lost(String),
    AuthFailed,
    /// The server's key is not one the connector reported: stop, no prompt.
    HostKeyMismatch(String),
    /// The server and Sallyport share no algorithm of some kind: the one
    /// line of [`sallyport_proto::ssh_algorithms::describe_no_common`].
    NoCommonAlgorithm(String),
    /// Closed from the front end.
    Closed,
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Exit(code) => write!(f, "exit status {code}"),
            Ended::Signal(sig) => write!(f, "killed by signal {sig}"),
            Ended::Lost(why) => write!(f, "connection lost: {why}"),
            Ended::AuthFailed => write!(f, "authentication failed"),
            Ended::HostKeyMismatch(why) => write!(f, "host key mismatch: {why}"),
            Ended::NoCommonAlgorithm(why) => f.write_str(why),
            Ended::Closed => write!(f, "session closed"),
        }
    }
}

/// Settings of one session.
#[derive(Debug, Clone)]
pub struct Options {
    /// Login name offered at the `login as:` prompt (editable there).
    pub user: String,
    /// The host keys the connector carrying the session reported for the
    /// service, OpenSSH form: the server must present one of them.
    pub host_keys: Vec<String>,
    /// That connector's name, for the message when the key is not one of them.
    pub connector: Option<String>,
    /// Shown in the password prompt (`user@service's password:`).
    pub service: String,
    pub cols: u32,
    pub rows: u32,
    /// A key and the relay CA's certificate for it: log in as `user`
    /// without a prompt (the server's other methods follow if sshd says no).
    pub certificate: Option<Certified>,
    /// Every account the relay maps this person to on the service, `user`
    /// first. With more than one, `login as:` asks which (default `user`);
    /// one of them logs in with a certificate ([`Frontend::certify`] when
    /// `certificate` names another), any other name with a password.
    pub principals: Vec<String>,
}

/// A client key and its certificate.
#[derive(Debug, Clone)]
pub struct Certified {
    pub key: russh::keys::ssh_key::PrivateKey,
    pub certificate: russh::keys::ssh_key::Certificate,
}

/// A fresh Ed25519 key pair: the private key, and the public key line to
/// have certified. The private key never leaves this client.
pub fn new_key() -> Result<(russh::keys::ssh_key::PrivateKey, String), String> {
    use russh::keys::ssh_key::private::Ed25519Keypair;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| format!("no randomness: {e}"))?;
    let key = russh::keys::ssh_key::PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    let public = key.public_key().to_openssh().map_err(|e| e.to_string())?;
    Ok((key, public))
}

/// Accepts exactly the host keys the connector attested.
struct Verifier {
    expected: Vec<PublicKey>,
    /// "the connector" or "connector NAME", as the refusal names it.
    connector: String,
    /// Why the server's key was refused, for the end message.
    refused: Arc<Mutex<Option<String>>>,
    /// The fingerprint of the key accepted, for the session's start event.
    accepted: Arc<Mutex<Option<String>>>,
    /// Banners received while logging in, until shown.
    banners: Arc<Mutex<server_text::Banners>>,
    /// The server's words when it disconnected (RFC 4253 §11.1), one
    /// harmless line: the end message gives them instead of a bare
    /// "disconnected".
    said: Arc<Mutex<Option<String>>>,
    /// The window to grant next, set by the shell loop ([`pace`]).
    window: pace::Window,
}

impl client::Handler for Verifier {
    type Error = russh::Error;

    /// The window granted the server next (RFC 4254 §5.2): what the shell
    /// loop measured the front end takes in [`pace::RENDER_BUDGET_MS`].
    fn adjust_window(&mut self, _channel: russh::ChannelId, _window: u32) -> u32 {
        self.window.get()
    }

    /// RFC 4252 §5.4: kept for the login to show (it runs on the session's
    /// task, which has no way to the front end).
    async fn auth_banner(
        &mut self,
        banner: &str,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.banners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(banner);
        Ok(())
    }

    async fn disconnected(
        &mut self,
        reason: client::DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        match reason {
            client::DisconnectReason::ReceivedDisconnect(info) => {
                let words = server_text::one_line(&info.message);
                if !words.is_empty() {
                    *self.said.lock().unwrap_or_else(|e| e.into_inner()) = Some(words);
                }
                Ok(())
            }
            client::DisconnectReason::Error(e) => Err(e),
        }
    }

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            *self.refused.lock().unwrap_or_else(|e| e.into_inner()) = Some(
                "the server offered a host certificate; only attested keys are accepted".into(),
            );
            return Ok(false);
        };
        if self.expected.iter().any(|k| k.key_data() == key.key_data()) {
            *self.accepted.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(key.fingerprint(Default::default()).to_string());
            return Ok(true);
        }
        let fingerprint = key.fingerprint(Default::default());
        let connector = &self.connector;
        let why = if self.expected.is_empty() {
            format!("{connector} reported no host keys for this service; the server offered {fingerprint}")
        } else {
            format!("the server offered {fingerprint}, which is not a key {connector} reported")
        };
        *self.refused.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
        Ok(false)
    }
}

/// A tiny line editor for login prompts, fed by terminal input.
struct Prompter<'a, F: Frontend> {
    ui: &'a F,
    input: &'a mut mpsc::Receiver<Input>,
    size: (u32, u32),
}

enum Line {
    Text(String),
    /// Ctrl-C, Ctrl-D on an empty line, or the front end closed.
    Cancelled,
}

impl<F: Frontend> Prompter<'_, F> {
    /// Shows `prompt`, starts with `initial` (editable), echoes unless `secret`.
    async fn read_line(&mut self, prompt: &str, initial: &str, secret: bool) -> Line {
        let mut line: String = initial.to_owned();
        self.ui.output(prompt.as_bytes());
        if !secret {
            self.ui.output(line.as_bytes());
        }
        let mut escape = false;
        loop {
            let Some(event) = self.input.recv().await else {
                return Line::Cancelled;
            };
            let data = match event {
                Input::Data(d) => d,
                Input::Resize(c, r) => {
                    self.size = (c, r);
                    continue;
                }
                Input::Close => return Line::Cancelled,
            };
            for ch in String::from_utf8_lossy(&data).chars() {
                if escape {
                    // Skip the rest of an escape sequence (arrows, function keys).
                    escape = !ch.is_ascii_alphabetic() && ch != '~';
                    continue;
                }
                match ch {
                    '\r' | '\n' => {
                        self.ui.output(b"\r\n");
                        return Line::Text(line);
                    }
                    '\u{3}' => {
                        self.ui.output(b"^C\r\n");
                        return Line::Cancelled;
                    }
                    '\u{4}' if line.is_empty() => return Line::Cancelled,
                    '\u{7f}' | '\u{8}' => {
                        let erased = line.pop().is_some();
                        if erased && !secret {
                            self.ui.output(b"\x08 \x08");
                        }
                    }
                    '\u{15}' => {
                        if !secret {
                            for _ in line.chars() {
                                self.ui.output(b"\x08 \x08");
                            }
                        }
                        line.clear();
                    }
                    '\u{1b}' => escape = true,
                    c if !c.is_control() && line.len() + c.len_utf8() <= MAX_LINE => {
                        line.push(c);
                        if !secret {
                            let mut buf = [0u8; 4];
                            self.ui.output(c.encode_utf8(&mut buf).as_bytes());
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

fn parse_keys(keys: &[String]) -> Vec<PublicKey> {
    keys.iter()
        .filter_map(|k| PublicKey::from_openssh(k.trim()).ok())
        .collect()
}

/// Runs one session over `stream` until it ends, and reports the end.
pub async fn run<S, F>(
    stream: S,
    options: Options,
    mut input: mpsc::Receiver<Input>,
    ui: &F,
) -> Ended
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Frontend,
{
    let said = Arc::new(Mutex::new(None));
    let mut ended = session(stream, options, &mut input, ui, &said).await;
    if let Some(words) = said.lock().unwrap_or_else(|e| e.into_inner()).take() {
        match ended {
            // OpenSSH prints them too ("Received disconnect ...").
            Ended::AuthFailed => {
                ui.output(format!("The server disconnected: {words}\r\n").as_bytes())
            }
            Ended::Lost(_) => ended = Ended::Lost(format!("the server disconnected: {words}")),
            _ => {}
        }
    }
    let state = match ended {
        Ended::Exit(_) | Ended::Closed => State::Closed,
        _ => State::Error,
    };
    ui.status(state, &ended.to_string());
    ended
}

async fn session<S, F>(
    stream: S,
    mut options: Options,
    input: &mut mpsc::Receiver<Input>,
    ui: &F,
    said: &Arc<Mutex<Option<String>>>,
) -> Ended
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Frontend,
{
    ui.status(State::Connecting, "connecting");
    let refused = Arc::new(Mutex::new(None));
    let accepted = Arc::new(Mutex::new(None));
    let banners = Arc::new(Mutex::new(server_text::Banners::default()));
    let window = pace::Window::default();
    let verifier = Verifier {
        expected: parse_keys(&options.host_keys),
        connector: match &options.connector {
            Some(name) => format!("connector {name}"),
            None => "the connector".into(),
        },
        refused: refused.clone(),
        accepted: accepted.clone(),
        banners: banners.clone(),
        said: said.clone(),
        window: window.clone(),
    };
    let config = Arc::new(client::Config {
        window_size: SHELL_WINDOW,
        maximum_packet_size: SHELL_MAX_PACKET,
        channel_buffer_size: SHELL_CHANNEL_BUFFER,
        ..ssh_algorithms::client_config()
    });
    let mut handle = match client::connect_stream(config, stream, verifier).await {
        Ok(h) => h,
        Err(e) => {
            if let Some(why) = refused.lock().unwrap_or_else(|e| e.into_inner()).take() {
                return Ended::HostKeyMismatch(why);
            }
            return match ssh_algorithms::negotiation_failure(&e) {
                Some(why) => Ended::NoCommonAlgorithm(why),
                None => Ended::Lost(e.to_string()),
            };
        }
    };

    ui.status(State::Authenticating, "log in");
    let mut prompter = Prompter {
        ui,
        input,
        size: (options.cols, options.rows),
    };
    let login = auth::Login {
        handle: &mut handle,
        prompter: &mut prompter,
        banners: &banners,
    };
    let (user, auth) = match login.run(&mut options).await {
        Ok(done) => (done.user, done.method),
        Err(ended) => return ended,
    };
    let (cols, rows) = prompter.size;

    let channel = match handle.channel_open_session().await {
        Ok(c) => c,
        Err(e) => return Ended::Lost(format!("cannot open a session channel: {e}")),
    };
    let (mut reader, writer) = channel.split();
    if let Err(e) = writer
        .request_pty(false, "xterm-256color", cols, rows, 0, 0, &[])
        .await
    {
        return Ended::Lost(format!("pty request failed: {e}"));
    }
    if let Err(e) = writer.request_shell(false).await {
        return Ended::Lost(format!("shell request failed: {e}"));
    }
    let label = format!("{user}@{}", options.service);
    ui.status(State::Connected, &label);
    ui.event(SessionEvent::Start {
        service: options.service.clone(),
        principal: user.clone(),
        auth: auth.to_owned(),
        host_key: accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_default(),
        cols,
        rows,
    });
    let (mut bytes_in, mut bytes_out) = (0u64, 0u64);
    let ended = shell(
        &handle,
        &mut reader,
        &writer,
        prompter.input,
        ui,
        (&mut bytes_in, &mut bytes_out),
        &label,
        window,
    )
    .await;
    ui.event(SessionEvent::End {
        exit: match ended {
            Ended::Exit(code) => Some(code),
            _ => None,
        },
        reason: ended.to_string(),
        bytes_in,
        bytes_out,
        duration_ms: 0,
    });
    ended
}

/// Sends a session's input to the server while it keeps reading the
/// server's output, so neither direction waits on the other. Holds the input
/// SSH's flow control has not taken yet, at most [`MAX_PENDING_INPUT`] bytes.
struct Outbox {
    /// Chunks of at most [`INPUT_CHUNK`] bytes, oldest first.
    chunks: VecDeque<Vec<u8>>,
    /// Bytes in `chunks` and in the write under way.
    bytes: usize,
}

/// The line shown when input is refused because too much already waits.
pub fn input_refused(len: usize, waiting: usize) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    format!(
        "\r\n\x1b[1;33m[input of {:.1} MiB refused: {:.1} MiB already wait for the server, and at most {} MiB may; paste less at a time, or copy files with scp or sftp]\x1b[0m\r\n",
        len as f64 / MIB,
        waiting as f64 / MIB,
        MAX_PENDING_INPUT >> 20
    )
}

/// The shell's life: output to the front end, input and resizes to the
/// server, until it ends. Counts bytes from (`.0`) and to (`.1`) the server.
/// `label` is the connected state's message (`user@service`).
///
/// Every wait is a branch of one `select!`: a write waiting for the server's
/// window, a resize, the front end's output queue and the stall timer never
/// stop the channel being read, which is what lets sshd's echo of a large
/// paste drain while the paste goes out (reading nothing while a write
/// waits deadlocks against the server's window, RFC 4254 §5.2).
/// `window` is the window the session's handler grants, which the loop
/// sets from how fast `ui` takes output ([`pace`]).
#[allow(clippy::too_many_arguments)] // each is a separate borrow of the session
async fn shell<H, F>(
    handle: &client::Handle<H>,
    reader: &mut russh::ChannelReadHalf,
    writer: &russh::ChannelWriteHalf<client::Msg>,
    input: &mut mpsc::Receiver<Input>,
    ui: &F,
    bytes: (&mut u64, &mut u64),
    label: &str,
    window: pace::Window,
) -> Ended
where
    H: client::Handler,
    F: Frontend,
{
    let (bytes_in, bytes_out) = bytes;
    let mut exit = None;
    let mut outbox = Outbox {
        chunks: VecDeque::new(),
        bytes: 0,
    };
    // The write under way (a chunk of the outbox) and its length.
    let mut sending: Option<(BoxFuture<'_, Result<(), russh::Error>>, usize)> = None;
    // The resize under way, and the newest size asked for meanwhile.
    let mut resizing: Option<BoxFuture<'_, Result<(), russh::Error>>> = None;
    let mut next_size: Option<(u32, u32)> = None;
    // While the front end's output queue is full: reading waits for it.
    let mut paused = None;
    let mut pace = pace::Pace::new(window);
    // Restarted whenever something moves; fires while input waits.
    let mut stall = Box::pin(ui.sleep(STALL_AFTER_MS));
    let mut stalled = false;
    // Something moved: the stall timer starts again, and a stalled session
    // is connected again.
    macro_rules! moved {
        () => {
            stall = Box::pin(ui.sleep(STALL_AFTER_MS));
            if stalled {
                stalled = false;
                ui.status(State::Connected, label);
            }
        };
    }
    let ended = loop {
        if sending.is_none() {
            if let Some(chunk) = outbox.chunks.pop_front() {
                let len = chunk.len();
                sending = Some((Box::pin(writer.data_bytes(chunk)), len));
            }
        }
        if resizing.is_none() {
            if let Some((c, r)) = next_size.take() {
                resizing = Some(Box::pin(writer.window_change(c, r, 0, 0)));
            }
        }
        tokio::select! {
            sent = async {
                match sending.as_mut() {
                    Some((write, _)) => write.await,
                    None => std::future::pending().await,
                }
            } => {
                let len = sending.take().map_or(0, |(_, len)| len);
                if sent.is_err() {
                    break None;
                }
                outbox.bytes -= len;
                moved!();
            }
            _ = async {
                match resizing.as_mut() {
                    Some(resize) => resize.await,
                    None => std::future::pending().await,
                }
            } => resizing = None,
            msg = reader.wait(), if paused.is_none() => match msg {
                Some(ChannelMsg::Data { data }) | Some(ChannelMsg::ExtendedData { data, .. }) => {
                    ui.output(&data);
                    ui.terminal_data(&data, true);
                    *bytes_in += data.len() as u64;
                    let mut drained = Box::pin(ui.drained());
                    let held = futures::poll!(drained.as_mut()).is_pending();
                    pace.output(ui.now_ms(), data.len(), held);
                    if held {
                        paused = Some(drained);
                    }
                    moved!();
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => exit = Some(Ended::Exit(exit_status)),
                Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                    exit = Some(Ended::Signal(format!("{signal_name:?}")))
                }
                Some(ChannelMsg::Close) | None => break None,
                Some(_) => {}
            },
            _ = async {
                match paused.as_mut() {
                    Some(drained) => drained.await,
                    None => std::future::pending().await,
                }
            } => {
                paused = None;
                pace.released(ui.now_ms());
            }
            _ = &mut stall, if outbox.bytes > 0 && !stalled => {
                stalled = true;
                ui.status(
                    State::Stalled,
                    &format!(
                        "{} bytes of input wait and nothing has moved for {} s",
                        outbox.bytes,
                        STALL_AFTER_MS / 1000
                    ),
                );
            }
            event = input.recv() => match event {
                Some(Input::Data(d)) => {
                    if outbox.bytes + d.len() > MAX_PENDING_INPUT {
                        ui.output(input_refused(d.len(), outbox.bytes).as_bytes());
                        continue;
                    }
                    ui.terminal_data(&d, false);
                    *bytes_out += d.len() as u64;
                    if outbox.bytes == 0 {
                        // The stall clock starts when input starts waiting.
                        stall = Box::pin(ui.sleep(STALL_AFTER_MS));
                    }
                    outbox.bytes += d.len();
                    if d.len() <= INPUT_CHUNK {
                        outbox.chunks.push_back(d);
                    } else {
                        outbox.chunks.extend(d.chunks(INPUT_CHUNK).map(<[u8]>::to_vec));
                    }
                }
                Some(Input::Resize(c, r)) => {
                    ui.event(SessionEvent::Resize { cols: c, rows: r });
                    next_size = Some((c, r));
                }
                Some(Input::Close) | None => break Some(Ended::Closed),
            },
        }
    };
    // Dropping the writes under way first: russh's session may be waiting
    // for them.
    drop(sending);
    drop(resizing);
    let reason = if ended.is_some() {
        "closed by user"
    } else {
        ""
    };
    // A session that no longer answers must not hold the end up.
    tokio::select! {
        _ = handle.disconnect(russh::Disconnect::ByApplication, reason, "") => {}
        _ = ui.sleep(DISCONNECT_WAIT_MS) => {}
    }
    ended.unwrap_or_else(|| {
        exit.unwrap_or_else(|| Ended::Lost("the server closed the session".into()))
    })
}
