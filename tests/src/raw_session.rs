//! A raw session client for the hardening tests: signs in through the API,
//! opens session WebSockets with a bearer token (as `sallyport proxy`
//! does) and speaks the client's control messages by hand, so a test can
//! do what a hostile or careless client would.

use std::time::{Duration, Instant};

use futures::{SinkExt as _, StreamExt as _};
use sallyport_client::api::{self, RelayUrl};
use sallyport_proto::client::{Control, SessionEvent};
use tokio_tungstenite::tungstenite::Message;

use crate::{RelayProc, WS_UPGRADE};

pub use sallyport_client::api::Session;

/// Signs `user` in with `POST /api/login`; returns the bearer token.
pub fn api_token(relay: &RelayProc, user: &str, password: &str) -> String {
    let (code, body) = relay.api_login(user, password, None);
    assert_eq!(code, 200, "sign-in of {user}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("sign-in answer is JSON");
    v["token"].as_str().expect("a token").to_owned()
}

/// Opens the session WebSocket for `service`; `Err` is the relay's reason.
pub async fn open(relay: &RelayProc, token: &str, service: &str) -> Result<Session, String> {
    let pem = std::fs::read_to_string(relay.data_dir.join("https.pem")).expect("https.pem");
    let tls = api::tls_config(Some(&pem)).expect("TLS config");
    let url = RelayUrl::parse(&relay.url()).expect("relay URL");
    api::open_session(&url, tls, token, service)
        .await
        .map_err(|e| e.to_string())
}

/// The WebSocket upgrade for `service` by curl: its status and body (for
/// refusals, which come before any upgrade).
pub fn upgrade_status(relay: &RelayProc, token: &str, service: &str) -> (u16, String) {
    let auth = format!("Authorization: Bearer {token}");
    let mut args: Vec<&str> = WS_UPGRADE.to_vec();
    args.extend(["-H", &auth, "-m", "10"]);
    relay.curl(&format!("/ws/{service}"), &args)
}

/// Sends one client event; false once the socket is gone.
pub async fn send_event<S>(ws: &mut S, session: &str, seq: u64, event: SessionEvent) -> bool
where
    S: futures::Sink<Message> + Unpin,
{
    let msg = Control::Event {
        session: session.into(),
        seq,
        t_ms: seq,
        event,
    };
    ws.send(Message::Text(msg.to_text().into())).await.is_ok()
}

/// How a socket ended, as the client saw it.
#[derive(Debug, Default)]
pub struct Ending {
    /// The reason of the relay's `Control::Error`, if it sent one.
    pub error: Option<String>,
    /// The socket closed (a close frame or end of stream) within the wait.
    pub closed: bool,
    /// When it closed.
    pub at: Option<Instant>,
    /// The acknowledgements that came on the way, `(session, seq)`.
    pub acks: Vec<(String, u64)>,
}

/// Reads until the socket closes or `limit` passes, noting the relay's
/// error reason (session bytes, acknowledgements and messages this client
/// does not know are skipped).
pub async fn read_to_end<S>(ws: &mut S, limit: Duration) -> Ending
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut ending = Ending::default();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let msg = match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return ending,
            Ok(m) => m,
        };
        match msg {
            Some(Ok(Message::Text(t))) => match Control::parse(t.as_str()) {
                Ok(Control::Error { reason }) => ending.error = Some(reason),
                Ok(Control::Ack { session, seq }) => ending.acks.push((session, seq)),
                _ => {}
            },
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                ending.closed = true;
                ending.at = Some(Instant::now());
                return ending;
            }
            Some(Ok(_)) => {}
        }
    }
}

/// Waits for the relay to acknowledge `seq` of `session`; false if the
/// socket closed first or `limit` passed.
pub async fn acked(ws: &mut Session, session: &str, seq: u64, limit: Duration) -> bool {
    let wait = async {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Text(t) = msg {
                if let Ok(Control::Ack { session: s, seq: n }) = Control::parse(t.as_str()) {
                    if s == session && n >= seq {
                        return true;
                    }
                }
            }
        }
        false
    };
    tokio::time::timeout(limit, wait).await.unwrap_or(false)
}

/// The first session bytes (sshd's banner) within `limit`, if any arrive
/// before the socket closes.
pub async fn first_bytes(ws: &mut Session, limit: Duration) -> Option<Vec<u8>> {
    let wait = async {
        while let Some(Ok(msg)) = ws.next().await {
            match msg {
                Message::Binary(b) => return Some(b.to_vec()),
                Message::Close(_) => return None,
                _ => {}
            }
        }
        None
    };
    tokio::time::timeout(limit, wait).await.ok().flatten()
}
