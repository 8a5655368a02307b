//! The audit log: what the relay saw is on disk before it is acknowledged,
//! chained so that an altered event is found, and readable by admins only.

use sallyport_relay::SledStore;
use sallyport_tests::client_ws::audit_export;
use sallyport_tests::*;
use serde_json::Value;

#[test]
fn a_session_is_in_the_audit_log_and_verify_finds_one_altered_event() {
    let mut env = Env::start();
    let _c = env.connector("c1", "web1", &[]);
    env.relay.wait_online("c1", 2);
    let out = env.ssh("web1", "echo audited", b"");
    assert_eq!(stdout(&out), "audited", "{}", stderr(&out));
    let (code, _) = env.relay.api_login(USER, "wrong password", None);
    assert_eq!(code, 401);

    // Every kind of event the journey made, in order, numbered 1, 2, 3...
    let events = audit_export(&env.relay, &[]);
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"]["type"].as_str().unwrap())
        .collect();
    for kind in [
        "sign_in",
        "connector_connected",
        "decision",
        "stream_opened",
        "stream_closed",
    ] {
        assert!(kinds.contains(&kind), "no {kind} in {kinds:?}");
    }
    let closed = events
        .iter()
        .find(|e| e["event"]["type"] == "stream_closed")
        .unwrap();
    assert_eq!(closed["event"]["user"], USER);
    assert!(
        closed["event"]["bytes_down"].as_u64().unwrap() > 0,
        "{closed}"
    );
    let failed = events
        .iter()
        .find(|e| e["event"]["type"] == "sign_in" && e["event"]["ok"] == false)
        .expect("the failed sign-in");
    assert_eq!(failed["event"]["reason"], "wrong user name or password");
    // Each event names the hash of the one before.
    for pair in events.windows(2) {
        assert_eq!(pair[1]["prev"], pair[0]["hash"]);
    }

    // Filters: one stream, by its id (random, so it may begin with `-`).
    let session = closed["event"]["stream"].as_str().unwrap();
    let list = env
        .relay
        .admin(&["audit", "list", &format!("--session={session}")], "");
    let lines = stdout(&list);
    assert_eq!(lines.lines().count(), 2, "{lines}");
    assert!(
        lines.contains("stream_opened") && lines.contains("stream_closed"),
        "{lines}"
    );

    let verify = env.relay.admin(&["audit", "verify"], "");
    assert!(verify.status.success(), "{}", stderr(&verify));
    assert!(stdout(&verify).contains(&format!("{} events", events.len())));

    // Someone with the database edits one event: verify says which.
    env.relay.kill();
    {
        // The stored record (sled tree `audit`, keyed by the big-endian
        // sequence number) with its event changed and its hashes left alone.
        let store = SledStore::open(&env.relay.data_dir).unwrap();
        let tree = store.open_tree("audit").unwrap();
        let key = failed["seq"].as_u64().unwrap().to_be_bytes();
        let mut record: Value = serde_json::from_slice(&tree.get(key).unwrap().unwrap()).unwrap();
        record["event"]["ok"] = Value::Bool(true);
        tree.insert(key, serde_json::to_vec(&record).unwrap())
            .unwrap();
        store.flush().unwrap();
    }
    let verify = env.relay.admin(&["audit", "verify"], "");
    assert!(!verify.status.success(), "verify passed an altered log");
    assert!(
        stderr(&verify).contains(&format!("event {} was changed", failed["seq"])),
        "{}",
        stderr(&verify)
    );
    env.relay.launch();
}

#[test]
fn no_acknowledged_event_is_lost_when_the_relay_is_killed() {
    let mut env = Env::start();
    env.relay.add_user("bob", "pw-bob");
    const ROUNDS: usize = 20;
    for round in 0..ROUNDS {
        let (code, body) = env.relay.api_login("bob", "pw-bob", None);
        assert_eq!(code, 200, "{body}");
        // Acknowledged: killed at once, before any flush a timer might do.
        env.relay.kill();
        env.relay.launch();
        let events = audit_export(&env.relay, &["--user", "bob", "--type", "sign_in"]);
        assert_eq!(events.len(), round + 1, "round {round}: {events:?}");
    }
    let verify = env.relay.admin(&["audit", "verify"], "");
    assert!(verify.status.success(), "{}", stderr(&verify));
}

#[test]
fn non_admins_get_403_on_every_audit_route() {
    let env = Env::start();
    env.relay.add_user_in("root-admin", "pw-admin", &["admin"]);
    let token = |user: &str, password: &str| {
        let (code, body) = env.relay.api_login(user, password, None);
        assert_eq!(code, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        v["token"].as_str().unwrap().to_owned()
    };
    let alice = token(USER, PASSWORD);
    let admin = token("root-admin", "pw-admin");
    for route in [
        "/api/audit",
        "/api/audit?user=alice",
        "/api/audit?type=sign_in&limit=5",
    ] {
        let (code, body) = env
            .relay
            .curl(route, &["-H", &format!("Authorization: Bearer {alice}")]);
        assert_eq!(code, 403, "{route}: {body}");
        assert!(body.contains("only admins"), "{body}");
        let (code, body) = env.relay.curl(route, &[]);
        assert_eq!(code, 401, "{route} without a session: {body}");
        let (code, body) = env
            .relay
            .curl(route, &["-H", &format!("Authorization: Bearer {admin}")]);
        assert_eq!(code, 200, "{route} as admin: {body}");
        let events: Vec<Value> = serde_json::from_str(&body).unwrap();
        assert!(!events.is_empty(), "{route}");
    }
    // The pages: 403 with the reason for others, the page for admins.
    for page in ["/audit", "/replay/some-session"] {
        let (code, body) = env
            .relay
            .curl(page, &["-H", &format!("Authorization: Bearer {alice}")]);
        assert_eq!(code, 403, "{page}: {body}");
        assert!(body.contains("only admins"), "{body}");
        let (code, _) = env
            .relay
            .curl(page, &["-H", &format!("Authorization: Bearer {admin}")]);
        assert_eq!(code, 200, "{page} as admin");
    }
    // Recordings: the same rule (an admin asking for one that does not exist gets 404).
    let route = "/api/recordings/no-such-session";
    let (code, body) = env
        .relay
        .curl(route, &["-H", &format!("Authorization: Bearer {alice}")]);
    assert_eq!(code, 403, "{body}");
    assert_eq!(env.relay.curl(route, &[]).0, 401);
    let (code, body) = env
        .relay
        .curl(route, &["-H", &format!("Authorization: Bearer {admin}")]);
    assert_eq!(code, 404, "{body}");
}

mod client_events {
    use base64::Engine as _;
    use futures::{SinkExt as _, StreamExt as _};
    use sallyport_client::api::{self, RelayUrl, Session};
    use sallyport_proto::client::{Control, SessionEvent};
    use sallyport_tests::*;
    use tokio_tungstenite::tungstenite::Message;

    const SESSION: &str = "rec-test-1";

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    /// The events a browser would report for `echo marker-123`.
    fn events() -> Vec<(u64, u64, SessionEvent)> {
        vec![
            (
                1,
                0,
                SessionEvent::Start {
                    service: "web1".into(),
                    principal: "alice".into(),
                    auth: "password".into(),
                    host_key: "SHA256:test".into(),
                    cols: 80,
                    rows: 24,
                },
            ),
            (2, 40, SessionEvent::Output { data: b64("$ ") }),
            (
                3,
                900,
                SessionEvent::Input {
                    data: b64("echo marker-123\r"),
                },
            ),
            (
                4,
                950,
                SessionEvent::Output {
                    data: b64("echo marker-123\r\nmarker-123\r\n"),
                },
            ),
            (
                5,
                1200,
                SessionEvent::Resize {
                    cols: 100,
                    rows: 30,
                },
            ),
            (
                6,
                1500,
                SessionEvent::End {
                    exit: Some(0),
                    reason: "exit status 0".into(),
                    bytes_in: 60,
                    bytes_out: 17,
                    duration_ms: 1500,
                },
            ),
        ]
    }

    async fn connect(env: &Env, token: &str) -> Session {
        let pem = std::fs::read_to_string(env.relay.data_dir.join("https.pem")).unwrap();
        let tls = api::tls_config(Some(&pem)).unwrap();
        let relay = RelayUrl::parse(&env.relay.url()).unwrap();
        api::open_session(&relay, tls, token, "web1").await.unwrap()
    }

    async fn send(ws: &mut Session, from: u64, to: u64) {
        for (seq, t_ms, event) in events() {
            if (from..=to).contains(&seq) {
                let msg = Control::Event {
                    session: SESSION.into(),
                    seq,
                    t_ms,
                    event,
                };
                ws.send(Message::Text(msg.to_text().into())).await.unwrap();
            }
        }
    }

    /// Reads until the relay acknowledges `seq` (ignoring SSH bytes).
    async fn acked(ws: &mut Session, seq: u64) {
        let wait = async {
            while let Some(msg) = ws.next().await {
                if let Message::Text(t) = msg.unwrap() {
                    if let Ok(Control::Ack { session, seq: s }) = Control::parse(t.as_str()) {
                        assert_eq!(session, SESSION);
                        if s >= seq {
                            return;
                        }
                    }
                }
            }
            panic!("the socket closed before event {seq} was acknowledged");
        };
        tokio::time::timeout(std::time::Duration::from_secs(30), wait)
            .await
            .expect("acknowledgement");
    }

    #[test]
    fn client_events_are_stored_once_across_a_dropped_connection_and_replay_as_asciicast() {
        let mut env = Env::start();
        let _c = env.connector("c1", "web1", &[]);
        env.relay.wait_online("c1", 2);
        let text = std::fs::read_to_string(env.client.home.join("credentials.json")).unwrap();
        let token = serde_json::from_str::<serde_json::Value>(&text).unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let mut ws = connect(&env, &token).await;
            send(&mut ws, 1, 3).await;
            acked(&mut ws, 3).await;
            // Two more, then the connection drops before their acknowledgements.
            send(&mut ws, 4, 5).await;
            drop(ws);
            // The client reconnects and sends everything it holds that was
            // not acknowledged (and, to be sure, one that was).
            let mut ws = connect(&env, &token).await;
            send(&mut ws, 3, 6).await;
            acked(&mut ws, 6).await;
        });

        // Killed right after acknowledging: still all there, each once.
        env.relay.kill();
        env.relay.launch();
        let stored = env.relay.client_events(SESSION);
        let seqs: Vec<u64> = stored
            .iter()
            .map(|r| r["event"]["seq"].as_u64().unwrap())
            .collect();
        // The keystrokes (3) are acknowledged but not recorded: the policy
        // does not set record_input for web1.
        assert_eq!(seqs, [1, 2, 4, 5, 6], "each event once, in order");

        // More sessions, each killed right after its event is acknowledged.
        const ROUNDS: u64 = 5;
        for round in 1..=ROUNDS {
            env.relay.wait_online("c1", 2);
            rt.block_on(async {
                let mut ws = connect(&env, &token).await;
                let msg = Control::Event {
                    session: format!("{SESSION}-kill-{round}"),
                    seq: 1,
                    t_ms: 0,
                    event: SessionEvent::Resize { cols: 80, rows: 24 },
                };
                ws.send(Message::Text(msg.to_text().into())).await.unwrap();
                let wait = async {
                    while let Some(Ok(m)) = ws.next().await {
                        if let Message::Text(t) = m {
                            if let Ok(Control::Ack { .. }) = Control::parse(t.as_str()) {
                                return;
                            }
                        }
                    }
                    panic!("no acknowledgement in round {round}");
                };
                tokio::time::timeout(std::time::Duration::from_secs(30), wait)
                    .await
                    .unwrap();
            });
            env.relay.kill();
            env.relay.launch();
            let out = env.relay.admin(
                &["audit", "list", "--type", "client", "--limit", "1000"],
                "",
            );
            for r in 1..=round {
                assert!(
                    stdout(&out).contains(&format!("{SESSION}-kill-{r}")),
                    "round {round}: the event of round {r} is missing:\n{}",
                    stdout(&out)
                );
            }
        }
        assert_eq!(stored[0]["event"]["user"], USER);
        assert_eq!(stored[4]["event"]["event"]["exit"], 0);

        // The recording: asciicast v2 that asciinema itself reads.
        let cast = env.relay.export_recording(SESSION);
        let text = std::fs::read_to_string(&cast).unwrap();
        let mut lines = text.lines();
        let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(header["version"], 2);
        assert_eq!(
            (header["width"].as_u64(), header["height"].as_u64()),
            (Some(80), Some(24))
        );
        assert!(
            header["timestamp"].as_u64().unwrap() > 1_700_000_000,
            "{header}"
        );
        let mut last = 0.0;
        for line in lines {
            let e: serde_json::Value = serde_json::from_str(line).unwrap();
            let t = e[0].as_f64().unwrap();
            assert!(t >= last, "timestamps go back: {text}");
            last = t;
        }
        // asciinema wants a terminal: `script` gives it one.
        let played = std::process::Command::new("script")
            .args([
                "-qec",
                &format!("asciinema play -s 1000 {}", cast.display()),
                "/dev/null",
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("script and asciinema (scripts/test.sh installs asciinema)");
        assert!(
            played.status.success(),
            "asciinema play: {}",
            stderr(&played)
        );
        assert!(
            stdout(&played).contains("marker-123"),
            "{}",
            stdout(&played)
        );
    }
}
