//! The data path without sshd: a client's session WebSocket through an
//! in-process relay and connector to a TCP echo service
//! ([`sallyport_tests::inproc`]). What a user of the tunnel would check:
//! the bytes come back identical, output after the end of input still
//! arrives, a stopped connector does not stop the service, and a relay
//! that shuts down lets a live session finish.

use std::time::Duration;

use sallyport_tests::inproc::{after_eof, InProc};

/// Drain time for tests that do not shut the relay down.
const DRAIN: Duration = Duration::from_secs(5);

/// `len` bytes that show a lost, repeated or reordered chunk.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            // xorshift: no run of it repeats within a chunk.
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// `input` echoed, then what the service sends after the end of input.
fn echoed(input: &[u8]) -> Vec<u8> {
    [input, &after_eof()].concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_come_back_identical() {
    let env = InProc::start(&["c1"], DRAIN).await;
    let mut session = env.open().await.expect("session opens");
    assert_eq!(session.connector, "c1");
    // Small writes, each answered before the next, as keystrokes are.
    for word in [&b"h"[..], b"ello", b"\x00\xff\r\n", b"\x1b[A"] {
        session.send(word).await;
        assert_eq!(session.read_exact(word.len()).await, word);
    }
    let got = session.transfer(b"bye").await;
    assert_eq!(got.error, None);
    assert!(got.eof, "the service's end reaches the client");
    assert_eq!(got.bytes, echoed(b"bye"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_transfer_comes_back_identical() {
    let env = InProc::start(&["c1"], DRAIN).await;
    let session = env.open().await.expect("session opens");
    // Far more than any window or queue on the way: the pipe must carry
    // it with backpressure, neither dropping nor reordering a byte.
    let input = pattern(8 * 1024 * 1024 + 7, 1);
    let got = session.transfer(&input).await;
    assert_eq!(got.error, None);
    assert!(got.eof);
    assert_eq!(got.bytes.len(), input.len() + after_eof().len());
    assert!(got.bytes == echoed(&input), "the bytes differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_after_the_clients_end_of_input_still_arrives() {
    let env = InProc::start(&["c1"], DRAIN).await;
    let session = env.open().await.expect("session opens");
    // The client sends nothing at all and finishes at once: everything the
    // service sends afterwards (only after it saw the end of input: the
    // client's half-close travelled all the way) must still arrive.
    let got = session.transfer(b"").await;
    assert_eq!(got.error, None);
    assert!(got.eof);
    assert!(got.bytes == after_eof(), "{} bytes", got.bytes.len());

    // The same with input in flight when the client finishes.
    let session = env.open().await.expect("second session opens");
    let input = pattern(3 * 1024 * 1024, 2);
    let got = session.transfer(&input).await;
    assert!(got.bytes == echoed(&input), "{} bytes", got.bytes.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_session_goes_through_the_other_connector_when_one_stops() {
    let mut env = InProc::start(&["c1", "c2"], DRAIN).await;
    let first = env.open().await.expect("session opens");
    let carrier = first.connector.clone();
    let got = first.transfer(b"one").await;
    assert_eq!(got.bytes, echoed(b"one"));

    let stopped = env
        .connectors
        .iter()
        .position(|c| c.name == carrier)
        .expect("the carrier is one of ours");
    env.connectors[stopped].stop().await;
    let other = &env.connectors[1 - stopped].name;

    // Every session from now on goes through the connector that is left,
    // with nothing for the user to do.
    for i in 0..4u32 {
        let session = env.open().await.expect("session opens through the other");
        assert_eq!(&session.connector, other, "session {i}");
        let input = pattern(100_000, i);
        let got = session.transfer(&input).await;
        assert_eq!(got.error, None);
        assert!(got.bytes == echoed(&input), "session {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_shutting_down_lets_a_live_session_finish() {
    let mut env = InProc::start(&["c1"], Duration::from_secs(60)).await;
    let mut live = env.open().await.expect("session opens");
    live.send(b"before").await;
    assert_eq!(live.read_exact(6).await, b"before");

    let shutdown = env.begin_shutdown();
    // New sessions are refused from now on ...
    let refused = async {
        while env.open().await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(sallyport_tests::PATIENCE, refused)
        .await
        .expect("new sessions to be refused once the relay shuts down");
    assert!(
        !shutdown.is_finished(),
        "the relay waits for the live session"
    );

    // ... while the live one carries on to its natural end.
    let input = pattern(2 * 1024 * 1024, 3);
    live.send(b"during").await;
    assert_eq!(live.read_exact(6).await, b"during");
    let got = live.transfer(&input).await;
    assert_eq!(got.error, None, "the session ends cleanly");
    assert!(got.eof);
    assert!(got.bytes == echoed(&input));
    // With nothing left to wait for, the relay stops well before its
    // drain timeout.
    tokio::time::timeout(Duration::from_secs(30), shutdown)
        .await
        .expect("the relay stops once its last session ended")
        .expect("shutdown task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_outliving_the_drain_timeout_ends_with_a_reason() {
    let mut env = InProc::start(&["c1"], Duration::from_millis(300)).await;
    let mut live = env.open().await.expect("session opens");
    live.send(b"x").await;
    assert_eq!(live.read_exact(1).await, b"x");
    let shutdown = env.begin_shutdown();
    // The client keeps its session open past the drain timeout: the relay
    // ends it, and the client is told why (the relay stopped, not the
    // connector) rather than left hanging.
    let got = live.read_to_end().await;
    let reason = got.error.expect("a reason for the end");
    assert!(reason.contains("the relay closed"), "{reason}");
    assert!(!got.eof, "not mistaken for the service's end");
    tokio::time::timeout(sallyport_tests::PATIENCE, shutdown)
        .await
        .expect("the relay stops")
        .expect("shutdown task");
}

/// The stored client events of `session` in the relay's audit log, as
/// their numbers in the order they were stored.
async fn stored_events(env: &InProc, session: &str) -> Vec<u64> {
    let records = env
        .relay()
        .audit
        .list(&Default::default(), 100_000)
        .await
        .expect("audit list");
    records
        .iter()
        .filter(|r| r.event["type"] == "client" && r.event["session"] == session)
        .map(|r| r.event["seq"].as_u64().expect("a seq"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_events_reach_the_relay_once_across_a_reconnect() {
    use sallyport_client::reporter::{Gathered, Outbox, Reporter};
    use sallyport_proto::client::SessionEvent;

    let env = InProc::start(&["c1"], DRAIN).await;
    let mut outbox = Outbox::default();
    let mut reporter = Reporter::new("inproc-events".into());
    let id = reporter.session().to_owned();
    let start = SessionEvent::Start {
        service: sallyport_tests::inproc::SERVICE.into(),
        principal: "alice".into(),
        auth: "password".into(),
        host_key: "SHA256:none".into(),
        cols: 80,
        rows: 24,
    };

    // The first socket carries three events and hears them acknowledged.
    let mut first = env.open().await.expect("session opens");
    let mut texts = reporter.report(&mut outbox, start, 0.0);
    first.send(b"$ ").await;
    let echoed = first.read_exact(2).await;
    assert_eq!(
        reporter.gather_output(&mut outbox, &echoed, 1.0),
        Gathered::StartTimer
    );
    texts.extend(reporter.report(
        &mut outbox,
        SessionEvent::Resize {
            cols: 100,
            rows: 30,
        },
        2.0,
    ));
    for text in &texts {
        first.send_text(text).await;
    }
    for (session, seq) in first.acks_until(&id, 3).await {
        outbox
            .ack(&session, seq)
            .expect("the relay acks what was sent");
    }
    assert!(!outbox.pending(&id));

    // Two more go out on it, and the socket drops before their acks (or
    // before they are even sent: the third waits in the outbox).
    let mut texts = reporter.report(
        &mut outbox,
        SessionEvent::Resize { cols: 90, rows: 30 },
        3.0,
    );
    texts.extend(reporter.report(
        &mut outbox,
        SessionEvent::Resize { cols: 91, rows: 30 },
        4.0,
    ));
    for text in &texts {
        first.send_text(text).await;
    }
    drop(first);
    reporter.report(
        &mut outbox,
        SessionEvent::Resize { cols: 92, rows: 30 },
        5.0,
    );
    assert!(outbox.pending(&id));

    // The next socket sends again everything not acknowledged; the relay
    // stores each event once and acknowledges them all.
    let mut second = env.open().await.expect("second session opens");
    let again: Vec<String> = outbox.resend().map(str::to_owned).collect();
    assert_eq!(again.len(), 3, "events 4, 5 and 6 are held");
    for text in &again {
        second.send_text(text).await;
    }
    for (session, seq) in second.acks_until(&id, 6).await {
        outbox
            .ack(&session, seq)
            .expect("the relay acks what was sent");
    }
    assert!(!outbox.pending(&id), "nothing left to send");
    assert_eq!(stored_events(&env, &id).await, [1, 2, 3, 4, 5, 6]);
}
