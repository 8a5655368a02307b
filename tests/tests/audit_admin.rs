//! Every admin and identity action is an audit event in the hash chain,
//! naming who did it (`cli` and the OS user, through the admin socket or
//! on the data dir), with a stable `code` and an RFC 3339 `time` beside
//! the milliseconds; records written by the previous version (no `by`, no
//! `time` or `code` stored) still verify and are exported with both.

use sallyport_relay::AuditRecord as Record;
use sallyport_relay::SledStore;
use sallyport_tests::lifecycle::audit_events;
use sallyport_tests::*;
use serde_json::{json, Value};

fn uid() -> u32 {
    let out = std::process::Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn cli_actor() -> Value {
    json!({"via": "cli", "os_user": current_user(), "uid": uid()})
}

fn ok(relay: &RelayProc, args: &[&str], stdin: &str) -> String {
    let out = relay.admin(args, stdin);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

/// Appends `events` the way the previous version did: the record holds
/// seq, at_ms, prev, hash and the event, nothing else.
fn append_as_before(store: &SledStore, events: &[Value]) {
    let tree = store.open_tree("audit").unwrap();
    let last: Record = serde_json::from_slice(&tree.last().unwrap().expect("events").1).unwrap();
    let (mut seq, mut prev) = (last.seq, last.hash);
    let at_ms = sallyport_common::time::now_millis();
    for event in events {
        seq += 1;
        let body = serde_json::to_string(event).unwrap();
        let hash = sallyport_common::hash::sha256_hex(
            format!("{prev}\n{seq}\n{at_ms}\n{body}").as_bytes(),
        );
        let stored =
            json!({"seq": seq, "at_ms": at_ms, "prev": prev, "hash": hash, "event": event});
        tree.insert(seq.to_be_bytes(), serde_json::to_vec(&stored).unwrap())
            .unwrap();
        prev = hash;
    }
    store.flush().unwrap();
}

/// RFC 3339 in UTC with milliseconds, and the same instant as `at_ms`.
fn check_time(r: &Value) {
    let time = r["time"].as_str().unwrap_or_else(|| panic!("no time: {r}"));
    let parsed = time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{time}: {e}"));
    assert_eq!(
        (parsed.unix_timestamp_nanos() / 1_000_000) as u64,
        r["at_ms"].as_u64().unwrap(),
        "{r}"
    );
    assert!(time.ends_with('Z'), "{time}");
}

const POLICY: &str = r#"
[policy]
[[policy.services.web1.rules]]
name = "everyone"
action = "allow"
everyone = true
"#;

#[test]
fn every_admin_command_is_an_audit_event_with_who_code_and_time() {
    let mut env = Env::start_configured(SshdAuth::Key, Some(POLICY));
    let relay = &env.relay;
    let dir = env.path().to_str().unwrap().to_owned();
    // Through the running relay's admin socket.
    ok(
        relay,
        &["user", "add", "bob", "--password-stdin", "--groups", "dev"],
        "pw-bob\n",
    );
    ok(
        relay,
        &["user", "passwd", "bob", "--password-stdin"],
        "pw-bob-2\n",
    );
    ok(relay, &["user", "groups", "bob", "ops"], "");
    ok(relay, &["user", "totp", "bob"], "");
    ok(relay, &["user", "totp", "bob"], "");
    ok(relay, &["user", "totp", "bob", "--off"], "");
    ok(relay, &["user", "lock", "bob"], "");
    ok(relay, &["user", "unlock", "bob"], "");
    ok(relay, &["user", "sign-out", USER], "");
    ok(
        relay,
        &[
            "device",
            "add",
            "laptop",
            "--attr",
            "managed=yes",
            "--out",
            &dir,
        ],
        "",
    );
    ok(relay, &["device", "revoke", "laptop"], "");
    let token = relay.token("c9", "10m", &["web9"]);
    ok(relay, &["connector", "grant", "c9", "web10"], "");
    ok(relay, &["connector", "ungrant", "c9", "web10"], "");
    ok(relay, &["connector", "revoke", "c9"], "");
    // The policy file read again on SIGHUP: its SHA-256 is recorded.
    let config = relay.config.clone().expect("a config file");
    let sha = sallyport_common::hash::sha256_hex(&std::fs::read(&config).unwrap());
    relay.proc.as_ref().expect("the relay runs").signal("HUP");
    let reload = wait_for("the policy_reloaded event", || {
        audit_events(relay, "policy_reloaded").pop()
    });
    assert_eq!(reload["event"]["sha256"], sha.as_str(), "{reload}");
    assert_eq!(reload["event"]["ok"], true, "{reload}");
    assert_eq!(
        reload["event"]["by"],
        json!({"via": "relay", "trigger": "SIGHUP"})
    );
    assert_eq!(reload["code"], 5002);
    check_time(&reload);
    ok(relay, &["user", "remove", "bob"], "");

    // (type, code, the field naming what it was done to, its value, how many).
    let expect: &[(&str, u64, &str, &str, usize)] = &[
        ("user_added", 2001, "user", "bob", 1),
        ("password_changed", 1012, "user", "bob", 1),
        ("groups_changed", 2005, "user", "bob", 1),
        ("totp_enrolled", 1010, "user", "bob", 2),
        ("totp_reset", 1011, "user", "bob", 1),
        ("user_locked", 2003, "user", "bob", 1),
        ("user_unlocked", 2004, "user", "bob", 1),
        ("sign_out", 1002, "user", USER, 1),
        ("device_added", 4001, "device", "laptop", 1),
        ("device_revoked", 4002, "device", "laptop", 1),
        ("enrolment_token_issued", 3007, "connector", "c9", 1),
        ("connector_grants", 3005, "connector", "c9", 2),
        ("connector_revoked", 3004, "connector", "c9", 1),
        ("user_removed", 2002, "user", "bob", 1),
    ];
    for (kind, code, field, value, n) in expect {
        let events: Vec<Value> = audit_events(relay, kind)
            .into_iter()
            .filter(|r| r["event"][field] == *value)
            .collect();
        assert_eq!(events.len(), *n, "{kind}: {events:?}");
        for r in &events {
            assert_eq!(r["code"], *code, "{r}");
            assert_eq!(r["event"]["by"], cli_actor(), "{r}");
            check_time(r);
        }
    }
    let enrolled = audit_events(relay, "totp_enrolled");
    assert_eq!(enrolled.len(), 2, "{enrolled:?}");
    assert_eq!(enrolled[0]["event"]["replaced"], false);
    assert_eq!(enrolled[1]["event"]["replaced"], true);
    let issued = &audit_events(relay, "enrolment_token_issued")
        .pop()
        .expect("c9's token")["event"];
    assert_eq!(issued["connector"], "c9");
    assert_eq!(issued["services"], json!(["web9"]));
    // Secrets never reach the log: no password, no token, no TOTP secret.
    let all = ok(relay, &["audit", "export"], "");
    assert!(
        !all.contains("pw-bob") && !all.contains(&token),
        "a secret in the log"
    );
    assert!(!all.contains("secret="), "a TOTP secret in the log");
    // `audit list` names the admin in a word.
    let list = ok(relay, &["audit", "list", "--type", "user_locked"], "");
    assert!(
        list.contains(&format!("by=\"cli ({})\"", current_user())),
        "{list}"
    );

    // On the data dir, with no relay running: the same events, by the
    // user running the command.
    env.relay.kill();
    let relay = &env.relay;
    ok(
        relay,
        &["user", "add", "carol", "--password-stdin"],
        "pw-carol\n",
    );
    ok(relay, &["user", "lock", "carol"], "");
    let locks = audit_events(relay, "user_locked");
    assert_eq!(locks.len(), 2);
    assert_eq!(locks[1]["event"]["by"], cli_actor());
    let verify = ok(relay, &["audit", "verify"], "");
    assert!(verify.contains("audit log intact"), "{verify}");
}

#[test]
fn a_store_written_by_the_previous_version_verifies_and_gains_time_and_code() {
    let mut env = Env::start();
    env.relay.kill();
    {
        let store = SledStore::open(&env.relay.data_dir).unwrap();
        append_as_before(
            &store,
            &[
                json!({"type": "connector_revoked", "connector": "old-c"}),
                json!({"type": "sign_out", "user": USER, "sign_ins": 1, "sessions": 0, "by_admin": true}),
                json!({"type": "connector_grants", "connector": "old-c", "service": "web1", "granted": true}),
            ],
        );
    }
    let verify = ok(&env.relay, &["audit", "verify"], "");
    assert!(verify.contains("audit log intact"), "{verify}");
    env.relay.launch();
    // New events after the old ones, then the whole chain again.
    ok(&env.relay, &["user", "lock", USER], "");
    ok(
        &env.relay,
        &[
            "device",
            "add",
            "new-d",
            "--out",
            env.path().to_str().unwrap(),
        ],
        "",
    );
    let verify = ok(&env.relay, &["audit", "verify"], "");
    assert!(verify.contains("audit log intact"), "{verify}");

    let revoked = audit_events(&env.relay, "connector_revoked");
    assert_eq!(
        revoked[0]["event"],
        json!({"type": "connector_revoked", "connector": "old-c"})
    );
    assert_eq!(revoked[0]["code"], 3004);
    check_time(&revoked[0]);
    let sign_outs = audit_events(&env.relay, "sign_out");
    let old = sign_outs.last().unwrap();
    assert!(old["event"].get("by").is_none(), "{old}");
    assert_eq!(old["code"], 1002);
    // The sign-in from before, with its at_ms, time and code: every record,
    // however old, has both, and the stored bytes hold neither.
    let first = &audit_events(&env.relay, "sign_in")[0];
    assert_eq!(first["code"], 1001);
    check_time(first);
    let store_has_time = {
        env.relay.kill();
        let store = SledStore::open(&env.relay.data_dir).unwrap();
        let tree = store.open_tree("audit").unwrap();
        tree.iter().any(|e| {
            let v: Value = serde_json::from_slice(&e.unwrap().1).unwrap();
            v.get("time").is_some() || v.get("code").is_some()
        })
    };
    assert!(!store_has_time, "time or code stored in a record");
}

#[test]
fn an_admin_terminates_one_live_session_and_the_log_says_who() {
    use sallyport_tests::raw_session::{
        acked, api_token, first_bytes, open, read_to_end, send_event,
    };
    let env = Env::start();
    let _c = env.connector("c1", "web1", &[]);
    env.relay.wait_online("c1", 2);
    let token = api_token(&env.relay, USER, PASSWORD);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut a = open(&env.relay, &token, "web1").await.expect("session 1");
        let mut b = open(&env.relay, &token, "web1").await.expect("session 2");
        assert!(first_bytes(&mut a, PATIENCE).await.is_some());
        assert!(first_bytes(&mut b, PATIENCE).await.is_some());
        let opened = audit_events(&env.relay, "stream_opened");
        let stream = opened[0]["event"]["stream"].as_str().unwrap().to_owned();
        let out = ok(&env.relay, &["session", "terminate", &stream], "");
        assert!(out.contains("ended"), "{out}");
        // The first session (its stream_opened is on disk before it
        // opened) ended with the reason; the second goes on.
        let ended = read_to_end(&mut a, PATIENCE).await;
        assert!(ended.closed, "{ended:?}");
        assert!(
            ended
                .error
                .as_deref()
                .unwrap_or("")
                .contains("ended by an admin"),
            "{ended:?}"
        );
        let resize = sallyport_proto::client::SessionEvent::Resize { cols: 80, rows: 24 };
        send_event(&mut b, "still-open", 1, resize).await;
        assert!(
            acked(&mut b, "still-open", 1, PATIENCE).await,
            "the other session was ended too"
        );
        // An unknown stream is an error the admin can read.
        let out = env.relay.admin(&["session", "terminate", "nope"], "");
        assert!(!out.status.success());
        assert!(stderr(&out).contains("no live session"), "{}", stderr(&out));
    });
    let ended = audit_events(&env.relay, "session_terminated");
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0]["event"]["user"], USER);
    assert_eq!(ended[0]["event"]["service"], "web1");
    assert_eq!(ended[0]["event"]["by"], cli_actor());
    assert_eq!(ended[0]["code"], 6004);
    check_time(&ended[0]);
}
