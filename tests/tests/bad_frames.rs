//! Garbage, truncated and oversize frames on a tunnel stream close that one
//! stream with a reason; the connector's other sessions keep working.
//!
//! The relay runs in-process here (its real code, as a library) because the
//! test has to write raw bytes where only the relay can: on a session stream
//! of a connector's tunnel. The connector and sshd are real processes.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::Stdio;
use std::time::Duration;

use sallyport_common::transport::Closed;
use sallyport_proto::io::FrameReader;
use sallyport_proto::tunnel::{StreamHeader, StreamReply};
use sallyport_relay::admin_api::Request;
use sallyport_relay::Relay;
use sallyport_relay::ServeArgs;
use sallyport_tests::*;

/// Sends `bytes` on a fresh session stream and returns the connector's refusal reason.
async fn refusal_for(relay: &Relay, bytes: &[u8]) -> String {
    let live = relay
        .registry
        .candidates("web1")
        .pop()
        .expect("connector online");
    let (mut send, mut recv) = live.conn.open_stream().await.expect("open stream");
    send.write_all(bytes).await.expect("write");
    send.finish();
    let reply = tokio::time::timeout(
        Duration::from_secs(30),
        FrameReader::new(&mut recv).read_frame::<StreamReply>(),
    )
    .await
    .expect("the connector answers within the header timeout")
    .expect("a well-formed reply");
    match reply {
        StreamReply::Refuse { reason } => reason,
        StreamReply::Accept => panic!("a bad header was accepted"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_only_their_stream() {
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(dir.path());
    let https = free_port();
    let tunnel = free_port();
    let config = ServeArgs {
        data_dir: Some(dir.path().join("relay")),
        listen_https: Some(format!("127.0.0.1:{https}").parse().unwrap()),
        listen_tunnel: Some(format!("127.0.0.1:{tunnel}").parse().unwrap()),
        public_url: Some(format!("https://localhost:{https}")),
        public_tunnel_addr: Some(format!("127.0.0.1:{tunnel}")),
        ..Default::default()
    }
    .resolve()
    .unwrap();
    let relay = Relay::start(config).await.unwrap();
    relay
        .admin(Request::UserAdd {
            name: USER.into(),
            password: PASSWORD.into(),
            groups: vec![],
        })
        .await
        .unwrap();
    let out = relay
        .admin(Request::ConnectorAdd {
            name: "c1".into(),
            ttl_secs: 600,
            services: vec!["web1".into()],
            replace: false,
        })
        .await
        .unwrap();
    let token = out.lines().last().unwrap().to_owned();
    let mut connector = start_connector(
        dir.path(),
        "c1",
        Some(&token),
        &[format!("web1={}", sshd.target())],
        &["--ha-connections", "1"],
    );
    for _ in 0..600 {
        if !relay.registry.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!relay.registry.is_empty(), "connector did not come online");

    // A real session that stays open across the bad frames.
    let client = Client::new(dir.path(), USER);
    let url = format!("https://localhost:{https}");
    let login = client.login_to(&url, &dir.path().join("relay/https.pem"), USER, PASSWORD);
    assert!(login.status.success(), "{}", stderr(&login));
    let mut ssh = client
        .ssh_command(&sshd, "web1", "while read line; do echo got-$line; done")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ssh_in = ssh.stdin.take().unwrap();
    let mut ssh_out = BufReader::new(ssh.stdout.take().unwrap());
    let mut line = String::new();
    let mut echo = move |word: &str| {
        writeln!(ssh_in, "{word}").unwrap();
        line.clear();
        ssh_out.read_line(&mut line).unwrap();
        line.trim().to_owned()
    };
    let first = tokio::task::block_in_place(|| echo("one"));
    assert_eq!(first, "got-one");

    // Garbage: not a frame at all.
    let reason = refusal_for(&relay, b"GET / HTTP/1.1\r\n\r\n").await;
    assert!(reason.starts_with("bad stream header"), "{reason}");
    // Truncated: a length prefix promising more than arrives.
    let mut truncated = 100u32.to_be_bytes().to_vec();
    truncated.extend_from_slice(br#"{"session":"#);
    let reason = refusal_for(&relay, &truncated).await;
    assert!(
        reason.contains("ended in the middle of a frame"),
        "{reason}"
    );
    // Oversize: a length over the limit is refused before any body is read.
    let reason = refusal_for(&relay, &u32::MAX.to_be_bytes()).await;
    assert!(reason.contains("over the limit"), "{reason}");
    // Well-formed JSON that breaks the field limits.
    let body = format!(
        r#"{{"session":"s","service":"{}","user":"u","client_addr":"a"}}"#,
        "x".repeat(500)
    );
    let mut oversized_field = (body.len() as u32).to_be_bytes().to_vec();
    oversized_field.extend_from_slice(body.as_bytes());
    let reason = refusal_for(&relay, &oversized_field).await;
    assert!(reason.contains("over the limit"), "{reason}");
    // A valid header for a service this connector does not expose.
    let mut frame = Vec::new();
    sallyport_proto::encode_frame(
        &StreamHeader {
            stream: "s1".into(),
            service: "database".into(),
            user: "u".into(),
            client_addr: "127.0.0.1:1".into(),
        },
        &mut frame,
    )
    .unwrap();
    let reason = refusal_for(&relay, &frame).await;
    assert_eq!(
        reason,
        "service \"database\" is not exposed by connector c1"
    );

    // The open session and the connector carry on.
    let again = tokio::task::block_in_place(|| echo("two"));
    assert_eq!(again, "got-two");
    assert!(connector.is_running());
    assert_eq!(relay.registry.len(), 1, "the tunnel connection survived");
    let out = tokio::task::block_in_place(|| client.ssh(&sshd, "web1", "echo fresh", b""));
    assert_eq!(stdout(&out), "fresh", "{}", stderr(&out));

    // The other direction: a connector (here, one holding c1's enrolled
    // identity) that sends garbage on its control stream loses that
    // connection, with the reason; the real connector's tunnel stays up.
    let identity = sallyport_connector::Identity::load(&dir.path().join("connector-c1")).unwrap();
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let dialer = sallyport_connector::dial::Dialer::new(
        format!("127.0.0.1:{tunnel}"),
        sallyport_connector::TransportConfig {
            choice: transport::choice(),
            ..Default::default()
        },
        identity.tls_config().unwrap(),
        endpoint,
    )
    .unwrap();
    let conn = dialer.connect().await.unwrap();
    let (mut send, _recv) = conn.open_control().await.unwrap();
    send.write_all(&[0, 0, 0, 5, b'{', b'!', b'!', b'!', b'}'])
        .await
        .unwrap();
    match tokio::time::timeout(Duration::from_secs(30), conn.closed())
        .await
        .unwrap()
    {
        Closed::ByPeer { code, reason } => {
            assert_eq!(
                code,
                u64::from(sallyport_proto::tunnel::Code::Protocol.code())
            );
            assert!(reason.starts_with("bad hello: malformed frame"), "{reason}");
        }
        other => panic!("expected a protocol close, got {other}"),
    }
    assert_eq!(
        relay.registry.len(),
        1,
        "the real connector's tunnel is untouched"
    );
    let out = tokio::task::block_in_place(|| client.ssh(&sshd, "web1", "echo still", b""));
    assert_eq!(stdout(&out), "still", "{}", stderr(&out));

    let _ = ssh.kill();
    let _ = ssh.wait();
    connector.kill();
    relay.shutdown().await;
}
