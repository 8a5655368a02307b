//! The harness's signed-in client, as a test talks to the relay for it:
//! its API token, a session WebSocket opened the way the browser client
//! opens one, and the audit log exported through the admin CLI.

use sallyport_client::api::{self, RelayUrl, Session};
use serde_json::Value;

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
