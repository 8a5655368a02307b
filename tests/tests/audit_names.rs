//! One word, one meaning in the audit log: a *stream* is the relay's id of
//! one socket's QUIC stream (`stream_opened`, `stream_closed`), a
//! *session* the client's terminal session (its `client` events), which a
//! reconnect carries over several streams. `audit list --session` finds a
//! terminal session's client events and the stream events of every stream
//! it came on; records written before streams were named so (their stream
//! id in a `session` field) still verify and are still found.

use sallyport_client::api::Session;
use sallyport_proto::client::SessionEvent;
use sallyport_relay::AuditRecord as Record;
use sallyport_relay::SledStore;
use sallyport_tests::client_ws::{acked, audit_export, client_token, open_web1, report};
use sallyport_tests::*;
use serde_json::{json, Value};

/// `audit list` with `filter`: the sequence numbers it printed.
fn listed(relay: &RelayProc, filter: &[&str]) -> Vec<u64> {
    let out = relay.admin(&[&["audit", "list"][..], filter].concat(), "");
    assert!(out.status.success(), "audit list: {}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect()
}

/// Appends `events` to the chain in the relay's store the way relays
/// before the rename wrote them: each record's hash over the previous
/// hash, its number, its time and the event's canonical JSON, the JSON
/// stored as it is. Returns their sequence numbers.
fn append_as_before(store: &SledStore, events: &[Value]) -> Vec<u64> {
    let tree = store.open_tree("audit").unwrap();
    let last: Record = serde_json::from_slice(&tree.last().unwrap().expect("events").1).unwrap();
    let (mut seq, mut prev) = (last.seq, last.hash);
    let at_ms = sallyport_common::time::now_millis();
    let mut seqs = Vec::new();
    for event in events {
        seq += 1;
        let body = serde_json::to_string(event).unwrap();
        let hash = sallyport_common::hash::sha256_hex(
            format!("{prev}\n{seq}\n{at_ms}\n{body}").as_bytes(),
        );
        let record = Record {
            seq,
            at_ms,
            prev,
            hash: hash.clone(),
            event: event.clone(),
        };
        tree.insert(seq.to_be_bytes(), serde_json::to_vec(&record).unwrap())
            .unwrap();
        prev = hash;
        seqs.push(seq);
    }
    store.flush().unwrap();
    seqs
}

fn old_stream_opened(stream: &str) -> Value {
    json!({"type": "stream_opened", "session": stream, "service": "web1",
           "user": USER, "connector": "c1", "client": "127.0.0.1:40000"})
}

fn old_stream_closed(stream: &str) -> Value {
    json!({"type": "stream_closed", "session": stream, "service": "web1",
           "user": USER, "bytes_up": 10, "bytes_down": 20, "millis": 5})
}

fn old_client(session: &str, seq: u64, stream: &str) -> Value {
    json!({"type": "client", "session": session, "seq": seq, "t_ms": seq * 10,
           "user": USER, "service": "web1", "stream": stream,
           "event": {"type": "resize", "cols": 80, "rows": 24}})
}

#[test]
fn records_written_before_streams_were_named_still_verify_and_are_found() {
    let mut env = Env::start();
    env.relay.kill();
    // One terminal session that reconnected once (two streams), and a
    // stream of another session between them.
    let seqs = {
        let store = SledStore::open(&env.relay.data_dir).unwrap();
        append_as_before(
            &store,
            &[
                old_stream_opened("old-stream-1"),
                old_client("old-term", 1, "old-stream-1"),
                old_stream_closed("old-stream-1"),
                old_stream_opened("other-stream"),
                old_client("other-term", 1, "other-stream"),
                old_stream_closed("other-stream"),
                old_stream_opened("old-stream-2"),
                old_client("old-term", 2, "old-stream-2"),
                old_stream_closed("old-stream-2"),
            ],
        )
    };

    let verify = env.relay.admin(&["audit", "verify"], "");
    assert!(verify.status.success(), "{}", stderr(&verify));
    assert!(
        stdout(&verify).contains(&format!("{} events", seqs[8])),
        "{}",
        stdout(&verify)
    );
    env.relay.launch();

    // The terminal session: its events and its streams', not the other's.
    let term = listed(&env.relay, &["--session", "old-term"]);
    assert_eq!(
        term,
        [seqs[0], seqs[1], seqs[2], seqs[6], seqs[7], seqs[8]],
        "audit list --session old-term"
    );
    // A stream id, as before the rename: that stream's events.
    assert_eq!(
        listed(&env.relay, &["--session", "old-stream-1"]),
        [seqs[0], seqs[2]]
    );
    // By stream: its stream events and the client events it carried.
    assert_eq!(
        listed(&env.relay, &["--stream", "old-stream-2"]),
        [seqs[6], seqs[7], seqs[8]]
    );
    // Exported as stored: the old field names, byte for byte.
    let exported = audit_export(&env.relay, &["--session", "old-term"]);
    assert_eq!(exported[0]["event"], old_stream_opened("old-stream-1"));
    assert_eq!(exported[2]["event"], old_stream_closed("old-stream-1"));
}

/// Sends one client event of `session` and reads until the relay
/// acknowledges it (it is on disk).
async fn report_acked(ws: &mut Session, session: &str, seq: u64, event: SessionEvent) {
    report(ws, session, seq, event).await;
    acked(ws, session, seq).await;
}

#[test]
fn a_terminal_sessions_streams_and_client_events_are_listed_together() {
    const TERM: &str = "term-1";
    let env = Env::start();
    let _c = env.connector("c1", "web1", &[]);
    env.relay.wait_online("c1", 2);
    let token = client_token(&env);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // The terminal session starts on one socket, which drops...
        let mut ws = open_web1(&env, &token).await;
        let start = SessionEvent::Start {
            service: "web1".into(),
            principal: USER.into(),
            auth: "publickey".into(),
            host_key: "SHA256:test".into(),
            cols: 80,
            rows: 24,
        };
        report_acked(&mut ws, TERM, 1, start).await;
        drop(ws);
        // ...another terminal session comes and goes...
        let mut ws = open_web1(&env, &token).await;
        let resize = SessionEvent::Resize { cols: 1, rows: 1 };
        report_acked(&mut ws, "someone-else", 1, resize).await;
        drop(ws);
        // ...and the first goes on over a new socket until it ends.
        let mut ws = open_web1(&env, &token).await;
        let resize = SessionEvent::Resize {
            cols: 100,
            rows: 30,
        };
        report_acked(&mut ws, TERM, 2, resize).await;
        let end = SessionEvent::End {
            exit: Some(0),
            reason: "exit status 0".into(),
            bytes_in: 0,
            bytes_out: 0,
            duration_ms: 1000,
        };
        report_acked(&mut ws, TERM, 3, end).await;
    });

    // Each stream's end is written when its pipe has finished.
    let events = wait_for("both streams of the session closed", || {
        let events = audit_export(&env.relay, &["--session", TERM]);
        let closed = events
            .iter()
            .filter(|e| e["event"]["type"] == "stream_closed")
            .count();
        (closed == 2).then_some(events)
    });
    let of_type = |kind: &str| -> Vec<&Value> {
        events
            .iter()
            .filter(|e| e["event"]["type"] == kind)
            .map(|e| &e["event"])
            .collect()
    };
    let (opened, closed, client) = (
        of_type("stream_opened"),
        of_type("stream_closed"),
        of_type("client"),
    );
    assert_eq!(
        (opened.len(), closed.len(), client.len()),
        (2, 2, 3),
        "{events:#?}"
    );
    // Stream events name the stream as such; the client events name the
    // terminal session and the stream they came on: the first event on
    // one, the others on the next.
    let stream = |e: &Value| e["stream"].as_str().unwrap().to_owned();
    for e in opened.iter().chain(&closed) {
        assert!(e.get("session").is_none(), "{e}");
    }
    for (e, seq) in client.iter().zip(1..) {
        assert_eq!(
            (e["session"].as_str(), e["seq"].as_u64()),
            (Some(TERM), Some(seq))
        );
    }
    let (first, second) = (stream(client[0]), stream(client[1]));
    assert_ne!(first, second);
    assert_eq!(stream(client[2]), second);
    let mut streams: Vec<String> = opened.iter().map(|e| stream(e)).collect();
    streams.sort();
    let mut expected = vec![first.clone(), second];
    expected.sort();
    assert_eq!(streams, expected);
    let mut streams: Vec<String> = closed.iter().map(|e| stream(e)).collect();
    streams.sort();
    assert_eq!(streams, expected);
    // `audit list` prints the same events; `--stream` one stream's.
    // (Stream ids are random and may begin with `-`: hence `--stream=ID`.)
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(listed(&env.relay, &["--session", TERM]), seqs);
    let one: Vec<String> = audit_export(&env.relay, &[&format!("--stream={first}")])
        .iter()
        .map(|e| e["event"]["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(one, ["stream_opened", "client", "stream_closed"]);
    // The other terminal session's stream is in neither.
    let other = wait_for("the other session's stream closed", || {
        let other = audit_export(&env.relay, &["--session", "someone-else"]);
        (other.len() == 3).then_some(other)
    });
    for e in &other {
        assert!(!seqs.contains(&e["seq"].as_u64().unwrap()), "{e}");
    }
}
