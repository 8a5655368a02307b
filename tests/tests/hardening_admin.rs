//! Admin commands on stores of any size, private data dirs, logs nobody can
//! forge: what an admin sees, with the real relay running.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use futures::{SinkExt as _, StreamExt as _};
use sallyport_proto::client::{Control, SessionEvent};
use sallyport_relay::admin_api::{self as admin, ReplyFrame, Request, MAX_MESSAGE_LEN};
use sallyport_tests::client_ws::{acked, client_token, open_web1, report};
use sallyport_tests::*;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// A user name (and session end reason) that would forge a log line and
/// colour the terminal of whoever reads the log.
const EVIL: &str = "mallory\n2026-01-01T00:00:00Z  INFO forged line\x1b[31m";
const FORGED: &str = "2026-01-01T00:00:00Z  INFO forged line";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Terminal output of `chunks` events of 16 KiB, each line numbered: what
/// the client reports for a session that printed `chunks * 16 KiB`.
fn terminal_output(chunks: usize) -> Vec<Vec<u8>> {
    const CHUNK: usize = sallyport_proto::limits::MAX_EVENT_DATA;
    let mut text = Vec::new();
    let mut line = 0;
    while text.len() < chunks * CHUNK {
        text.extend_from_slice(
            format!("line {line:07} of a long build log ........\r\n").as_bytes(),
        );
        line += 1;
    }
    text.truncate(chunks * CHUNK);
    text.chunks(CHUNK).map(<[u8]>::to_vec).collect()
}

/// Runs `req` on the admin socket by hand: every frame's length as sent,
/// and the output put together.
fn raw_admin(data_dir: &Path, req: &Request) -> (Vec<usize>, String) {
    use std::io::{Read as _, Write as _};
    let mut sock = std::os::unix::net::UnixStream::connect(data_dir.join("admin.sock")).unwrap();
    let mut frame = Vec::new();
    sallyport_proto::frame::encode_frame(req, &mut frame).unwrap();
    sock.write_all(&frame).unwrap();
    let (mut lens, mut output) = (Vec::new(), String::new());
    loop {
        let mut header = [0u8; 4];
        sock.read_exact(&mut header).unwrap();
        let len = u32::from_be_bytes(header) as usize;
        lens.push(len);
        assert!(
            len <= MAX_MESSAGE_LEN,
            "a frame of {len} bytes, over {MAX_MESSAGE_LEN}"
        );
        let mut body = vec![0u8; len];
        sock.read_exact(&mut body).unwrap();
        match serde_json::from_slice::<ReplyFrame>(&body).unwrap() {
            ReplyFrame::Output { text } => output.push_str(&text),
            ReplyFrame::Done { error: None } => return (lens, output),
            ReplyFrame::Done { error: Some(e) } => panic!("{e}"),
        }
    }
}

/// The terminal output in an asciicast recording, put together.
fn cast_output(cast: &str) -> String {
    let mut lines = cast.lines();
    let header: Value = serde_json::from_str(lines.next().expect("a header")).unwrap();
    assert_eq!(header["version"], 2);
    lines
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e[1] == "o")
        .map(|e| e[2].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn exports_of_several_mib_go_through_the_running_relay_in_bounded_messages() {
    const SESSION: &str = "big-build-log";
    // 6 MiB of output: within the 8 MiB a client may report beyond what
    // the session carried.
    let chunks = terminal_output(6 * 64);
    let sent: Vec<u8> = chunks.concat();
    let mut env = Env::start();
    let _c = env.connector("c1", "web1", &[]);
    env.relay.wait_online("c1", 2);
    let token = client_token(&env);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let last = chunks.len() as u64 + 2;
    rt.block_on(async {
        let mut ws = open_web1(&env, &token).await;
        report(
            &mut ws,
            SESSION,
            1,
            SessionEvent::Start {
                service: "web1".into(),
                principal: USER.into(),
                auth: "publickey".into(),
                host_key: "SHA256:test".into(),
                cols: 120,
                rows: 40,
            },
        )
        .await;
        for (i, chunk) in chunks.iter().enumerate() {
            let data = b64(chunk);
            report(
                &mut ws,
                SESSION,
                i as u64 + 2,
                SessionEvent::Output { data },
            )
            .await;
        }
        let end = SessionEvent::End {
            exit: Some(0),
            reason: "exit status 0".into(),
            bytes_in: 0,
            bytes_out: sent.len() as u64,
            duration_ms: 1000,
        };
        report(&mut ws, SESSION, last, end).await;
        acked(&mut ws, SESSION, last).await;
    });

    // The recording, through the running relay: every byte, in order.
    let cast_text = std::fs::read_to_string(env.relay.export_recording(SESSION)).unwrap();
    assert!(cast_text.len() > 6 << 20, "{} bytes", cast_text.len());
    assert!(
        cast_output(&cast_text).as_bytes() == sent,
        "the recording differs from the output"
    );
    // To standard output, the same.
    let out = env.relay.admin(&["recording", "export", SESSION], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout == cast_text.as_bytes());

    // The audit log as JSON lines: every event, every byte.
    let out = env
        .relay
        .admin(&["audit", "export", "--format", "jsonl"], "");
    assert!(out.status.success(), "audit export: {}", stderr(&out));
    let events: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "each event once, in order"
    );
    let client: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"]["type"] == "client" && e["event"]["session"] == SESSION)
        .collect();
    assert_eq!(client.len() as u64, last);
    let exported: Vec<u8> = client
        .iter()
        .filter_map(|e| e["event"]["event"]["data"].as_str())
        .flat_map(|d| base64::engine::general_purpose::STANDARD.decode(d).unwrap())
        .collect();
    assert!(
        exported == sent,
        "the exported events differ from the output"
    );

    // `audit list`: one line per event, the output of each in it.
    let out = env.relay.admin(
        &[
            "audit",
            "list",
            "--session",
            SESSION,
            "--type",
            "client",
            "--limit",
            "100000",
        ],
        "",
    );
    assert!(out.status.success(), "audit list: {}", stderr(&out));
    let listed = stdout(&out);
    assert_eq!(listed.lines().count() as u64, last, "one line per event");
    for chunk in &chunks {
        assert!(listed.contains(&b64(chunk)), "a chunk of output is missing");
    }
    // The last few only, oldest first.
    let out = env.relay.admin(
        &[
            "audit",
            "list",
            "--session",
            SESSION,
            "--type",
            "client",
            "--limit",
            "3",
        ],
        "",
    );
    let tail: Vec<u64> = stdout(&out)
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    let newest = client.last().unwrap()["seq"].as_u64().unwrap();
    assert_eq!(tail, [newest - 2, newest - 1, newest]);

    // On the socket itself: many frames, none over the limit, and the
    // same bytes the CLI printed.
    let filter = sallyport_relay::AuditFilter {
        session: Some(SESSION.into()),
        ..Default::default()
    };
    let (lens, text) = raw_admin(&env.relay.data_dir, &Request::AuditExport { filter });
    assert!(lens.len() > 20, "{} frames", lens.len());
    assert!(text.len() > 6 << 20);
    let req = Request::RecordingExport {
        session: SESSION.into(),
    };
    let (lens, text) = raw_admin(&env.relay.data_dir, &req);
    assert!(lens.iter().all(|&l| l <= MAX_MESSAGE_LEN));
    assert_eq!(text, cast_text);
    eprintln!(
        "recording of {} bytes in {} frames, the largest {} bytes (limit {MAX_MESSAGE_LEN}, {} bytes of text each)",
        text.len(),
        lens.len(),
        lens.iter().max().unwrap(),
        admin::OUTPUT_CHUNK
    );

    // With the relay stopped, the command opens the store itself: the same.
    env.relay.kill();
    let out = env.relay.admin(&["recording", "export", SESSION], "");
    assert!(out.status.success(), "offline: {}", stderr(&out));
    assert!(
        out.stdout == cast_text.as_bytes(),
        "the offline export differs"
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Every directory and file under `dir` (and `dir`), links not followed.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut all = vec![dir.to_owned()];
    let mut i = 0;
    while i < all.len() {
        if std::fs::symlink_metadata(&all[i]).unwrap().is_dir() {
            for e in std::fs::read_dir(&all[i]).unwrap() {
                all.push(e.unwrap().path());
            }
        }
        i += 1;
    }
    all
}

/// What an earlier run with umask 022 (or a careless copy) leaves.
fn make_readable(dir: &Path) {
    for p in walk(dir) {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.is_dir() {
            chmod(&p, 0o755);
        } else if meta.is_file() {
            chmod(&p, 0o644);
        }
    }
}

fn assert_private(dir: &Path) {
    let all = walk(dir);
    assert!(all.len() > 5, "{all:?}");
    for p in all {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        let want = if meta.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&p), want, "{} is {:o}", p.display(), mode(&p));
    }
}

#[test]
fn a_data_dir_readable_by_others_is_made_private_by_serve_and_by_admin_commands() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = RelayProc::start(dir.path());
    relay.add_user(USER, PASSWORD);
    relay.kill();
    make_readable(&relay.data_dir);
    // (https.key: on PostgreSQL the CA key is the cluster's, not a file.)
    assert_eq!(mode(&relay.data_dir.join("https.key")), 0o644);

    relay.launch();
    // Files sled and the relay make while running are private too.
    relay.add_user("bob", PASSWORD);
    assert_private(&relay.data_dir);
    assert!(
        relay
            .proc
            .as_ref()
            .unwrap()
            .log_text()
            .contains("readable by other users"),
        "the relay says it was"
    );

    // An admin command with the relay stopped repairs it as well.
    relay.kill();
    make_readable(&relay.data_dir);
    let out = relay.admin(&["connector", "list"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_private(&relay.data_dir);
}

/// `serve` on `data_dir`: it must refuse at once, with one line saying why.
fn assert_refused(data_dir: &Path, why: &str) {
    let port = free_port();
    let mut child = Command::new(bin("sallyport-relay"))
        .args(["serve", "--data-dir"])
        .arg(data_dir)
        .args(["--listen-https", &format!("127.0.0.1:{port}")])
        .args(["--listen-tunnel", &format!("127.0.0.1:{port}")])
        .args(["--public-url", &format!("https://localhost:{port}")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_or_kill(&mut child, PATIENCE).expect("the relay refuses at once");
    let out = child.wait_with_output().unwrap();
    assert!(!status.success());
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains(why), "{err}");
    assert!(err.contains("chmod"), "says what to do: {err}");
    assert!(!data_dir.join("db").exists(), "nothing was written");
}

#[test]
fn a_data_dir_others_can_write_or_swap_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Its parent lets anyone rename it away and put another in its place.
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    chmod(&open, 0o777);
    assert_refused(&open.join("relay"), "writable by other users");
    // The data dir itself lets anyone put files in it.
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    chmod(&shared, 0o777);
    assert_refused(&shared, "writable by other users");
    // Admin commands refuse it too: the socket in it may not be the relay's.
    let out = Command::new(bin("sallyport-relay"))
        .args(["connector", "list", "--data-dir"])
        .arg(&shared)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("writable by other users"),
        "{}",
        stderr(&out)
    );

    // A sticky parent (like /tmp) is fine: others cannot move what is not theirs.
    chmod(&open, 0o1777);
    let relay = RelayProc::start(&open);
    assert_eq!(mode(&relay.data_dir), 0o700);
}

/// Signs in as [`EVIL`] (refused) and ends a session with [`EVIL`] as the
/// reason: two ways a peer puts its own text in the relay's log.
fn hostile_strings_reach_the_log(env: &Env) {
    let (code, _) = env.relay.api_login(EVIL, "wrong password", None);
    assert_eq!(code, 401);
    let token = client_token(env);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut ws = open_web1(env, &token).await;
        let msg = Control::Error {
            reason: EVIL.into(),
        };
        ws.send(Message::Text(msg.to_text().into())).await.unwrap();
        // The relay closes the session: read until it does.
        let drain = async { while let Some(Ok(_)) = ws.next().await {} };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(30), drain).await;
    });
}

#[test]
fn user_strings_cannot_forge_lines_or_send_escape_codes_in_the_human_log() {
    let env = Env::start();
    let _c = env.connector("c1", "web1", &[]);
    env.relay.wait_online("c1", 2);
    hostile_strings_reach_the_log(&env);
    let log_path = env.relay.proc.as_ref().unwrap().log.clone();
    let escaped = EVIL.replace('\n', "\\n").replace('\x1b', "\\u{1b}");
    let log = wait_for("both hostile strings in the relay's log", || {
        let log = std::fs::read(&log_path).unwrap();
        let text = String::from_utf8_lossy(&log).into_owned();
        (text.contains("sign-in failed") && text.contains("client ended the session"))
            .then_some(log)
    });
    let text = String::from_utf8_lossy(&log);
    assert!(!log.contains(&0x1b), "an ESC byte in the log:\n{text}");
    for line in text.lines() {
        assert!(!line.starts_with(FORGED), "a forged line:\n{text}");
    }
    let failed = text.lines().find(|l| l.contains("sign-in failed")).unwrap();
    assert!(failed.contains(&escaped), "{failed}");
    let ended = text
        .lines()
        .find(|l| l.contains("client ended the session"))
        .unwrap();
    assert!(ended.contains(&escaped), "{ended}");
}

#[test]
fn json_logs_stay_one_object_per_line_with_the_strings_intact() {
    let mut env = Env::start();
    env.relay.relaunch_with(&["--log-json"]);
    let _c = env.connector("c1", "web1", &[]);
    env.relay.wait_online("c1", 2);
    hostile_strings_reach_the_log(&env);
    let log_path = env.relay.proc.as_ref().unwrap().log.clone();
    let events: Vec<Value> = wait_for("both hostile strings in the relay's log", || {
        let text = std::fs::read_to_string(&log_path).unwrap();
        let events: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
            .collect();
        let has = |msg: &str| events.iter().any(|e| e["fields"]["message"] == msg);
        (has("sign-in failed") && has("client ended the session")).then_some(events)
    });
    let failed = events
        .iter()
        .find(|e| e["fields"]["message"] == "sign-in failed")
        .unwrap();
    assert_eq!(failed["fields"]["user"], EVIL, "the name as sent");
    let ended = events
        .iter()
        .find(|e| e["fields"]["message"] == "client ended the session")
        .unwrap();
    assert_eq!(ended["fields"]["reason"], EVIL);
}
