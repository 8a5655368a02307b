//! The harness's signed-in client, as a test talks to the relay for it:
//! its API token, a session WebSocket opened the way the browser client
//! opens one, client events reported on it and their acknowledgements
//! awaited, and the audit log exported through the admin CLI.

use futures::{SinkExt as _, StreamExt as _};
use sallyport_client::api::{self, RelayUrl, Session};
use sallyport_proto::client::{Control, SessionEvent};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::{stderr, stdout, Env, RelayProc};

/// The API token of the harness's signed-in client (its
/// `credentials.json`).
pub fn client_token(env: &Env) -> String {
    let text = std::fs::read_to_string(env.client.home.join("credentials.json"))
        .expect("the client's credentials.json");
    serde_json::from_str::<Value>(&text).expect("credentials.json is JSON")["token"]
        .as_str()
        .expect("credentials.json has a token")
        .to_owned()
}

/// A session WebSocket to service `web1` with `token`, as the browser
/// client opens it.
pub async fn open_web1(env: &Env, token: &str) -> Session {
    let pem = std::fs::read_to_string(env.relay.data_dir.join("https.pem"))
        .expect("the relay's https.pem");
    let tls = api::tls_config(Some(&pem)).expect("TLS config");
    let relay = RelayUrl::parse(&env.relay.url()).expect("relay URL");
    api::open_session(&relay, tls, token, "web1")
        .await
        .expect("the session opens")
}

/// `sallyport-relay audit export --format jsonl` with `extra` arguments
/// (a filter), parsed: one JSON value per audit record.
pub fn audit_export(relay: &RelayProc, extra: &[&str]) -> Vec<Value> {
    let out = relay.admin(
        &[&["audit", "export", "--format", "jsonl"][..], extra].concat(),
        "",
    );
    assert!(out.status.success(), "audit export: {}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// Sends one client event of `session` numbered `seq` on `ws`, as the
/// browser client reports it.
pub async fn report(ws: &mut Session, session: &str, seq: u64, event: SessionEvent) {
    let msg = Control::Event {
        session: session.into(),
        seq,
        t_ms: seq * 10,
        event,
    };
    ws.send(Message::Text(msg.to_text().into()))
        .await
        .expect("send the event");
}

/// Reads `ws` until the relay acknowledges event `seq` of `session` (it is
/// on disk), ignoring SSH bytes; panics if the socket closes first or no
/// acknowledgement comes within two minutes.
pub async fn acked(ws: &mut Session, session: &str, seq: u64) {
    let wait = async {
        while let Some(msg) = ws.next().await {
            if let Message::Text(t) = msg.expect("a WebSocket message") {
                if let Ok(Control::Ack { session: s, seq: n }) = Control::parse(t.as_str()) {
                    if s == session && n >= seq {
                        return;
                    }
                }
            }
        }
        panic!("the socket closed before event {seq} was acknowledged");
    };
    tokio::time::timeout(std::time::Duration::from_secs(120), wait)
        .await
        .expect("acknowledgement");
}
