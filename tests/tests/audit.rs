//! The audit log: what the relay saw is on disk before it is acknowledged,
//! chained so that an altered event is found, and readable by admins only.

use sallyport_relay::audit::AuditLog;
use sallyport_relay::store::Store;
use sallyport_tests::*;
use serde_json::Value;

/// `sallyport-relay audit export --format jsonl`, parsed.
fn export(relay: &RelayProc, extra: &[&str]) -> Vec<Value> {
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

fn sign_in(relay: &RelayProc, user: &str, password: &str) -> (u16, String) {
    let body = serde_json::json!({ "user": user, "password": password });
    relay.curl(
        "/api/login",
        &[
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "--data",
            &body.to_string(),
        ],
    )
}

#[test]
fn a_session_is_in_the_audit_log_and_verify_finds_one_altered_event() {
    let mut env = Env::start();
    let _c = env.connector("c1", "web1", &[]);
    env.relay.wait_online("c1", 2);
    let out = env.ssh("web1", "echo audited", b"");
    assert_eq!(stdout(&out), "audited", "{}", stderr(&out));
    let (code, _) = sign_in(&env.relay, USER, "wrong password");
    assert_eq!(code, 401);

    // Every kind of event the journey made, in order, numbered 1, 2, 3...
    let events = export(&env.relay, &[]);
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

    // Filters: one session, by its id.
    let session = closed["event"]["session"].as_str().unwrap();
    let list = env
        .relay
        .admin(&["audit", "list", "--session", session], "");
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
        let store = Store::open(&env.relay.data_dir).unwrap();
        let log = AuditLog::open(&store).unwrap();
        let mut edited = failed["event"].clone();
        edited["ok"] = Value::Bool(true);
        log.tamper(failed["seq"].as_u64().unwrap(), edited).unwrap();
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
        let (code, body) = sign_in(&env.relay, "bob", "pw-bob");
        assert_eq!(code, 200, "{body}");
        // Acknowledged: killed at once, before any flush a timer might do.
        env.relay.kill();
        env.relay.launch();
        let events = export(&env.relay, &["--user", "bob", "--type", "sign_in"]);
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
        let (code, body) = sign_in(&env.relay, user, password);
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
}
