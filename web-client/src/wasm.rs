//! Browser glue: the session WebSocket as the SSH byte stream, and the
//! [`ssh`](crate::ssh) session driven from JavaScript (xterm.js).
//!
//! ```js
//! const session = start_session({ wsUrl, user, service, cols, rows,
//!                                 onOutput, onStatus, onEnd });
//! ```
//!
//! The host keys the session accepts are not the page's to choose: the
//! relay's first message on the socket ([`Control::Opened`]) names the
//! connector that carries the session and the keys that connector reported.
//!
//! ```js
//! session.input(text); session.inputBytes(bytes); session.resize(cols, rows);
//! session.close();
//! ```
//!
//! `input` and `inputBytes` return `undefined`, or the line to show when the
//! input was refused (more than [`ssh::MAX_PENDING_INPUT`] would wait).

use std::cell::RefCell;
use std::rc::Rc;

use futures::channel::mpsc as fmpsc;
use futures::StreamExt as _;
use js_sys::{Function, Reflect, Uint8Array};
use sallyport_proto::client::Control;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;
use wasm_bindgen::prelude::*;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

use sallyport_proto::client::SessionEvent;

use crate::reporter::{self, Gathered, Outbox};
use crate::ssh::{self, Ended, Frontend, Input, Options, State};

/// Bytes between the SSH session and the WebSocket pump.
const PIPE_BUF: usize = 64 * 1024;
/// Above this many bytes queued in the browser's WebSocket, sending waits.
const MAX_WS_BUFFERED: u32 = 1024 * 1024;

/// What the WebSocket tells the pump.
enum WsEvent {
    Open,
    /// The relay's first message: who carries the session, which host keys
    /// its sshd may present, whether keystrokes are recorded.
    Opened(Carrier),
    Data(Vec<u8>),
    Eof,
    /// Closed, with the relay's reason when it gave one.
    Closed(Option<String>),
}

/// What [`Control::Opened`] says about the session.
struct Carrier {
    connector: String,
    host_keys: Vec<String>,
    record_input: bool,
}

struct JsFrontend {
    /// The relay keeps keystrokes ([`Control::Opened`]'s `record_input`);
    /// when false, input is not reported at all.
    record_input: std::cell::Cell<bool>,
    on_output: Function,
    on_status: Function,
    /// Optional: returns a promise while the page's output queue is full.
    output_drained: Option<Function>,
    /// Optional: `fetchCertificate(publicKey, principal)`, for services
    /// whose sshd trusts the relay's SSH CA.
    fetch_certificate: Option<Function>,
    reporter: Rc<JsReporter>,
}

/// Most accounts offered at `login as:` for a certificate login
/// (`principals`, from the relay's `/api/services`).
const MAX_PRINCIPALS: usize = 64;

/// How long the end of a session waits for the relay to acknowledge its
/// last events before the page is told the session is over.
const END_ACK_WAIT_MS: u32 = 3000;

thread_local! {
    /// Events the relay has not acknowledged, of every session this page
    /// ran: they go again on the next WebSocket that opens (a reconnect),
    /// and the relay stores each once.
    static OUTBOX: RefCell<Outbox> = RefCell::new(Outbox::default());
}

/// One session's [`reporter::Reporter`], with the clock and the socket
/// its messages go out on.
struct JsReporter {
    state: RefCell<reporter::Reporter>,
    ws: WebSocket,
}

/// A new session id: 16 letters and digits.
fn session_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 16];
    let _ = getrandom::fill(&mut bytes);
    bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// Milliseconds on the page's monotonic clock (never steps back with the
/// wall clock, so event times only go forward).
fn monotonic_ms() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map(|p| p.now())
        .unwrap_or_else(js_sys::Date::now)
}

impl JsReporter {
    fn session(&self) -> String {
        self.state.borrow().session().to_owned()
    }

    fn report(&self, event: SessionEvent) {
        let texts = OUTBOX.with(|o| {
            self.state
                .borrow_mut()
                .report(&mut o.borrow_mut(), event, monotonic_ms())
        });
        self.send(&texts);
    }

    fn gather_output(self: &Rc<Self>, bytes: &[u8]) {
        let gathered = OUTBOX.with(|o| {
            self.state
                .borrow_mut()
                .gather_output(&mut o.borrow_mut(), bytes, monotonic_ms())
        });
        match gathered {
            Gathered::Waiting => {}
            Gathered::Send(texts) => self.send(&texts),
            Gathered::StartTimer => {
                let me = self.clone();
                wasm_bindgen_futures::spawn_local(async move {
                    sleep(reporter::OUTPUT_GATHER_MS as i32).await;
                    let texts =
                        OUTBOX.with(|o| me.state.borrow_mut().flush_output(&mut o.borrow_mut()));
                    me.send(&texts);
                });
            }
        }
    }

    /// Sends what the reporter produced. It is held in the outbox already:
    /// if the socket is gone, it waits for the next one.
    fn send(&self, texts: &[String]) {
        for text in texts {
            let _ = self.ws.send_with_str(text);
        }
    }
}

impl Frontend for JsFrontend {
    fn output(&self, bytes: &[u8]) {
        let _ = self
            .on_output
            .call1(&JsValue::NULL, &Uint8Array::from(bytes));
    }

    fn status(&self, state: State, message: &str) {
        let _ = self.on_status.call2(
            &JsValue::NULL,
            &JsValue::from_str(state.as_str()),
            &JsValue::from_str(message),
        );
    }

    fn event(&self, event: SessionEvent) {
        self.reporter.report(event);
    }

    fn terminal_data(&self, bytes: &[u8], output: bool) {
        if output {
            self.reporter.gather_output(bytes);
        } else if self.record_input.get() {
            ssh::report_bytes(self, bytes, false);
        }
    }

    async fn sleep(&self, ms: u32) {
        sleep(i32::try_from(ms).unwrap_or(i32::MAX)).await;
    }

    fn now_ms(&self) -> f64 {
        monotonic_ms()
    }

    async fn drained(&self) {
        let session = self.reporter.session();
        while OUTBOX.with(|o| o.borrow().held_back(&session))
            && self.reporter.ws.ready_state() == WebSocket::OPEN
        {
            sleep(20).await;
        }
        let Some(f) = &self.output_drained else {
            return;
        };
        if let Ok(promise) = f
            .call0(&JsValue::NULL)
            .and_then(|v| v.dyn_into::<js_sys::Promise>())
        {
            let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
        }
    }

    async fn certify(&self, principal: &str) -> Result<ssh::Certified, String> {
        match &self.fetch_certificate {
            Some(fetch) => certify(fetch, Some(principal)).await,
            None => Err("the service takes no certificates".into()),
        }
    }
}

fn field(opts: &JsValue, name: &str) -> Result<JsValue, JsValue> {
    let v = Reflect::get(opts, &JsValue::from_str(name))?;
    if v.is_undefined() {
        return Err(JsValue::from_str(&format!(
            "start_session: option {name} is missing"
        )));
    }
    Ok(v)
}

fn string(opts: &JsValue, name: &str) -> Result<String, JsValue> {
    field(opts, name)?
        .as_string()
        .ok_or_else(|| JsValue::from_str(&format!("start_session: {name} must be a string")))
}

fn number(opts: &JsValue, name: &str) -> Result<u32, JsValue> {
    field(opts, name)?
        .as_f64()
        .map(|n| n.clamp(1.0, 10_000.0) as u32)
        .ok_or_else(|| JsValue::from_str(&format!("start_session: {name} must be a number")))
}

fn function(opts: &JsValue, name: &str) -> Result<Function, JsValue> {
    field(opts, name)?
        .dyn_into::<Function>()
        .map_err(|_| JsValue::from_str(&format!("start_session: {name} must be a function")))
}

/// A running session, held by the page.
#[wasm_bindgen]
pub struct Session {
    input: mpsc::Sender<Input>,
    ws: WebSocket,
    id: String,
}

#[wasm_bindgen]
impl Session {
    /// The id its events and recording go by in the relay's audit log.
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> String {
        self.id.clone()
    }

    /// Keystrokes or pasted text from the terminal (xterm's `onData`).
    /// Returns the message to show if it was refused.
    pub fn input(&self, data: &str) -> Option<String> {
        self.send_input(data.as_bytes())
    }

    /// Bytes from the terminal that are not text (xterm's `onBinary`: X10
    /// mouse reports, whose coordinates may be any byte): sent as they are.
    #[wasm_bindgen(js_name = inputBytes)]
    pub fn input_bytes(&self, data: &[u8]) -> Option<String> {
        self.send_input(data)
    }

    fn send_input(&self, data: &[u8]) -> Option<String> {
        if data.len() > ssh::MAX_PENDING_INPUT {
            return Some(ssh::input_refused(data.len(), 0));
        }
        match self.input.try_send(Input::Data(data.to_vec())) {
            Ok(()) => None,
            // The session takes input events as they come; a full queue
            // means it has stopped.
            Err(mpsc::error::TrySendError::Full(_)) => Some(
                "\r\n\x1b[1;33m[input refused: the session is not taking input]\x1b[0m\r\n".into(),
            ),
            Err(mpsc::error::TrySendError::Closed(_)) => None,
        }
    }

    pub fn resize(&self, cols: u32, rows: u32) {
        let _ = self.input.try_send(Input::Resize(cols, rows));
    }

    pub fn close(&self) {
        let _ = self.input.try_send(Input::Close);
        let _ = self.ws.close();
    }
}

/// Opens the session WebSocket and runs SSH over it.
#[wasm_bindgen]
pub fn start_session(opts: JsValue) -> Result<Session, JsValue> {
    let ws_url = string(&opts, "wsUrl")?;
    let mut options = Options {
        user: string(&opts, "user")?,
        host_keys: Vec::new(),
        connector: None,
        service: string(&opts, "service")?,
        cols: number(&opts, "cols")?,
        rows: number(&opts, "rows")?,
        certificate: None,
        // Optional: the accounts a certificate may log in as, `user` first.
        principals: field(&opts, "principals")
            .ok()
            .map(|v| js_sys::Array::from(&v))
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_string())
                    .take(MAX_PRINCIPALS)
                    .collect()
            })
            .unwrap_or_default(),
    };
    // Optional: `fetchCertificate(publicKey, principal)` resolves to a
    // certificate from the relay's SSH CA, for services whose sshd trusts it
    // (for `principal`, or the relay's first account for this person).
    let fetch_certificate = function(&opts, "fetchCertificate").ok();
    let on_end = function(&opts, "onEnd")?;
    let ws = WebSocket::new(&ws_url)?;
    ws.set_binary_type(BinaryType::Arraybuffer);
    let ui = JsFrontend {
        record_input: std::cell::Cell::new(false),
        on_output: function(&opts, "onOutput")?,
        on_status: function(&opts, "onStatus")?,
        output_drained: function(&opts, "outputDrained").ok(),
        fetch_certificate: fetch_certificate.clone(),
        reporter: Rc::new(JsReporter {
            state: RefCell::new(reporter::Reporter::new(session_id())),
            ws: ws.clone(),
        }),
    };
    let id = ui.reporter.session();
    // The browser's WebSocket cannot push back on what it receives, so this
    // queue is not bounded by itself; SSH's channel window bounds it: the
    // server sends no more than the window until the session has read it.
    let (events_tx, events_rx) = fmpsc::unbounded::<WsEvent>();
    let closures = install_handlers(&ws, events_tx);

    let (session_side, pump_side) = tokio::io::duplex(PIPE_BUF);
    let (input_tx, input_rx) = mpsc::channel(ssh::INPUT_QUEUE);
    let relay_error = Rc::new(RefCell::new(None::<String>));
    let (opened_tx, opened_rx) = futures::channel::oneshot::channel::<Carrier>();
    wasm_bindgen_futures::spawn_local(pump(
        ws.clone(),
        pump_side,
        events_rx,
        relay_error.clone(),
        opened_tx,
    ));
    wasm_bindgen_futures::spawn_local(async move {
        // Nothing of SSH starts before the relay has said who carries the
        // session and which host keys that connector reported.
        let Ok(carrier) = opened_rx.await else {
            let reason = relay_error
                .borrow()
                .clone()
                .unwrap_or_else(|| "the relay closed the session before it opened".into());
            let _ = on_end.call1(
                &JsValue::NULL,
                &JsValue::from_str(&Ended::Lost(reason).to_string()),
            );
            drop(closures);
            return;
        };
        options.host_keys = carrier.host_keys;
        options.connector = Some(carrier.connector);
        ui.record_input.set(carrier.record_input);
        // With one account, certified now, while nothing is asked; with
        // several, once the person has chosen at `login as:`.
        if let Some(fetch) = fetch_certificate.filter(|_| options.principals.len() <= 1) {
            match certify(&fetch, None).await {
                Ok(c) => options.certificate = Some(c),
                Err(why) => ui.output(
                    format!("No certificate ({why}); log in with a password.\r\n").as_bytes(),
                ),
            }
        }
        let ended = ssh::run(session_side, options, input_rx, &ui).await;
        // The end was just reported: give the relay a moment to confirm it
        // has it, so closing the page right away loses nothing. On a
        // socket that is gone, the events wait for the next one instead.
        let session = ui.reporter.session();
        for _ in 0..END_ACK_WAIT_MS / 20 {
            let pending = OUTBOX.with(|o| o.borrow().pending(&session));
            if !pending || ui.reporter.ws.ready_state() != WebSocket::OPEN {
                break;
            }
            sleep(20).await;
        }
        let text = match (&ended, relay_error.borrow().clone()) {
            (Ended::Lost(_), Some(reason)) => Ended::Lost(reason).to_string(),
            _ => ended.to_string(),
        };
        let _ = on_end.call1(&JsValue::NULL, &JsValue::from_str(&text));
        drop(closures);
    });
    Ok(Session {
        input: input_tx,
        ws,
        id,
    })
}

/// A fresh key pair, its public half certified through the page's
/// `fetchCertificate` for `principal` (the relay's first account for this
/// person when `None`). The private key stays in this module's memory.
async fn certify(fetch: &Function, principal: Option<&str>) -> Result<ssh::Certified, String> {
    let (key, public) = ssh::new_key()?;
    let principal = principal.map_or(JsValue::UNDEFINED, JsValue::from_str);
    let promise = fetch
        .call2(&JsValue::NULL, &JsValue::from_str(&public), &principal)
        .and_then(|v| v.dyn_into::<js_sys::Promise>())
        .map_err(|_| "fetchCertificate must return a promise".to_string())?;
    let text = wasm_bindgen_futures::JsFuture::from(promise)
        .await
        .map_err(|e| {
            e.as_string()
                .or_else(|| js_sys::Error::from(e).message().as_string())
                .unwrap_or_else(|| "the relay refused".into())
        })?
        .as_string()
        .ok_or("the certificate is not text")?;
    let certificate =
        russh::keys::ssh_key::Certificate::from_openssh(text.trim()).map_err(|e| e.to_string())?;
    Ok(ssh::Certified { key, certificate })
}

type Handlers = (
    Closure<dyn FnMut()>,
    Closure<dyn FnMut(MessageEvent)>,
    Closure<dyn FnMut(CloseEvent)>,
);

fn install_handlers(ws: &WebSocket, tx: fmpsc::UnboundedSender<WsEvent>) -> Handlers {
    let open_tx = tx.clone();
    let on_open = Closure::<dyn FnMut()>::new(move || {
        let _ = open_tx.unbounded_send(WsEvent::Open);
    });
    let msg_tx = tx.clone();
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
        let data = e.data();
        if let Some(text) = data.as_string() {
            let event = match Control::parse(&text) {
                Ok(Control::Opened {
                    connector,
                    host_keys,
                    record_input,
                }) => WsEvent::Opened(Carrier {
                    connector,
                    host_keys,
                    record_input,
                }),
                Ok(Control::Eof) => WsEvent::Eof,
                Ok(Control::Error { reason }) => WsEvent::Closed(Some(reason)),
                Ok(Control::Ack { session, seq }) => {
                    // An ack for an event never sent forgets nothing; the
                    // events go again on the next socket.
                    let _ = OUTBOX.with(|o| o.borrow_mut().ack(&session, seq));
                    return;
                }
                Ok(Control::Event { .. }) => return,
                Err(e) => WsEvent::Closed(Some(format!("bad message from the relay: {e}"))),
            };
            let _ = msg_tx.unbounded_send(event);
        } else {
            let bytes = Uint8Array::new(&data).to_vec();
            let _ = msg_tx.unbounded_send(WsEvent::Data(bytes));
        }
    });
    let close_tx = tx;
    let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |e: CloseEvent| {
        let reason = e.reason();
        let _ = close_tx.unbounded_send(WsEvent::Closed((!reason.is_empty()).then_some(reason)));
    });
    ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    (on_open, on_message, on_close)
}

/// Resolves after `ms` milliseconds.
async fn sleep(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// Moves bytes between the SSH session's end of the pipe and the WebSocket,
/// each direction on its own so neither can block the other.
async fn pump(
    ws: WebSocket,
    pipe: tokio::io::DuplexStream,
    mut events: fmpsc::UnboundedReceiver<WsEvent>,
    relay_error: Rc<RefCell<Option<String>>>,
    opened: futures::channel::oneshot::Sender<Carrier>,
) {
    // Nothing may be sent before the socket is open, and no SSH bytes flow
    // before the relay's `opened` (its first message).
    let mut opened = Some(opened);
    while opened.is_some() {
        match events.next().await {
            Some(WsEvent::Open) => {
                // What earlier sessions of this page reported and the relay
                // did not acknowledge (their socket dropped): again.
                OUTBOX.with(|o| {
                    for text in o.borrow().resend() {
                        if ws.send_with_str(text).is_err() {
                            break;
                        }
                    }
                });
            }
            Some(WsEvent::Opened(carrier)) => {
                if let Some(tx) = opened.take() {
                    let _ = tx.send(carrier);
                }
            }
            Some(WsEvent::Closed(reason)) => {
                // The relay answers a refused upgrade with an HTTP status the
                // page cannot read; say what it most likely means.
                *relay_error.borrow_mut() = Some(reason.unwrap_or_else(|| {
                    "the relay refused the session: you may have been signed out; reload the page".into()
                }));
                return;
            }
            Some(WsEvent::Data(_) | WsEvent::Eof) => {
                *relay_error.borrow_mut() =
                    Some("the relay sent session data before saying who carries it".into());
                let _ = ws.close();
                return;
            }
            None => return,
        }
    }
    let (mut from_session, mut to_session) = tokio::io::split(pipe);
    let up = async {
        let mut buf = vec![0u8; PIPE_BUF];
        loop {
            match from_session.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = ws.send_with_str(&Control::Eof.to_text());
                    break;
                }
                Ok(n) => {
                    while ws.buffered_amount() > MAX_WS_BUFFERED {
                        sleep(10).await;
                    }
                    if ws.send_with_u8_array(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
    };
    let down = async {
        while let Some(event) = events.next().await {
            match event {
                WsEvent::Data(d) => {
                    if to_session.write_all(&d).await.is_err() {
                        break;
                    }
                }
                WsEvent::Eof => {
                    let _ = to_session.shutdown().await;
                }
                WsEvent::Closed(reason) => {
                    if reason.is_some() {
                        *relay_error.borrow_mut() = reason;
                    }
                    break;
                }
                WsEvent::Open | WsEvent::Opened(_) => {}
            }
        }
        // Dropping our end tells the session the connection is gone.
        let _ = to_session.shutdown().await;
    };
    futures::future::join(up, down).await;
    let _ = ws.close();
}
