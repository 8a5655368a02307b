//! `sallyport-relay store migrate --to postgres://...`, with real processes:
//! a relay populated on sled through the product (users with groups, a
//! second factor and a lock, an enrolled connector with grants and an SSH
//! session through it, a terminal session's client events, a device, failed sign-ins, audit events) is stopped,
//! copied into a real PostgreSQL 15, and started again on it: the same
//! people sign in (an old sign-in still works), the connector reconnects
//! with its old certificate, and `audit verify` gives the same tip; a
//! chain that retention shortened keeps its anchor. A database that is not
//! empty, and a data dir a relay is running on, are refused.

use std::path::Path;
use std::process::{Command, Output};

use sallyport_client::api::Session;
use sallyport_proto::client::SessionEvent;
use sallyport_tests::client_ws::{acked, audit_export, client_token, open_web1, report};
use sallyport_tests::https::RelayOptions;
use sallyport_tests::postgres::Postgres;
use sallyport_tests::{
    bin, stderr, stdout, store_is_postgres, wait_for, Env, RelayProc, PASSWORD, USER,
};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// `sallyport-relay ARGS --data-dir DIR`, with `SALLYPORT_STORE=url` when given.
fn relay_cmd(data_dir: &Path, args: &[&str], store: Option<&str>) -> Output {
    let mut cmd = Command::new(bin("sallyport-relay"));
    cmd.args(args).arg("--data-dir").arg(data_dir);
    cmd.env_remove("SALLYPORT_STORE");
    if let Some(url) = store {
        let dir = data_dir
            .parent()
            .expect("the data dir is in the test's dir");
        cmd.env("SALLYPORT_STORE", url).env(
            "SALLYPORT_CLUSTER_KEY_FILE",
            sallyport_tests::cluster_key_file(dir, url),
        );
    }
    cmd.output().expect("run sallyport-relay")
}

fn migrate(data_dir: &Path, url: &str) -> Output {
    relay_cmd(data_dir, &["store", "migrate", "--to", url], None)
}

/// Runs an admin command that must succeed; its output.
fn ok(relay: &RelayProc, args: &[&str]) -> String {
    let out = relay.admin(args, "");
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

/// The client's terminal session the main test reports events of.
const TERM: &str = "term-migrated";

/// The client event that starts [`TERM`].
fn start_event() -> SessionEvent {
    SessionEvent::Start {
        service: "web1".into(),
        principal: USER.into(),
        auth: "publickey".into(),
        host_key: "SHA256:test".into(),
        cols: 80,
        rows: 24,
    }
}

/// Sends client event `seq` of [`TERM`] and reads until the relay
/// acknowledges it (it is stored).
async fn report_acked(ws: &mut Session, seq: u64, event: SessionEvent) {
    report(ws, TERM, seq, event).await;
    acked(ws, TERM, seq).await;
}

/// Stops the relay as an operator would (SIGTERM, then it exits).
fn stop(relay: &mut RelayProc) {
    let mut proc = relay.proc.take().expect("the relay runs");
    proc.signal("TERM");
    proc.wait_exit();
}

#[test]
fn a_populated_sled_store_moves_to_postgresql_and_the_relay_carries_on() {
    if store_is_postgres() {
        eprintln!("SALLYPORT_TEST_STORE=postgres: this test migrates from sled; skipped");
        return;
    }
    // alice is signed in with the native client; c1 serves web1 and is
    // granted web2 too.
    let mut env = Env::start();
    let token = env.relay.token("c1", "10m", &["web1", "web2"]);
    let svc = format!("web1={}", env.sshd.target());
    let _c1 = sallyport_tests::start_connector(env.path(), "c1", Some(&token), &[svc], &[]);
    env.relay.wait_online("c1", 2);
    let out = env.ssh("web1", "echo before", b"");
    assert!(out.status.success(), "ssh before: {}", stderr(&out));
    assert_eq!(stdout(&out), "before");

    // A terminal session's client events: its start (seq 1).
    let token = client_token(&env);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut ws = open_web1(&env, &token).await;
        report_acked(&mut ws, 1, start_event()).await;
    });

    // bob: groups and a second factor, signed in with a code once, and a
    // failed sign-in; carol: locked.
    env.relay.add_user_in("bob", "pw-bob", &["ops", "dev"]);
    let text = ok(&env.relay, &["user", "totp", "bob"]);
    let secret = text
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("secret="))
        .unwrap_or_else(|| panic!("no secret in {text}"))
        .to_owned();
    let (code, body) = env.relay.api_login("bob", "wrong password", None);
    assert_eq!(code, 401, "{body}");
    let used = sallyport_relay::test_hooks::code_now(&secret, now()).expect("code");
    let (code, body) = env.relay.api_login("bob", "pw-bob", Some(&used));
    assert_eq!(code, 200, "bob with a code: {body}");
    env.relay.add_user("carol", "pw-carol");
    ok(&env.relay, &["user", "lock", "carol"]);

    // A device.
    let certs = env.path().join("devices");
    ok(
        &env.relay,
        &[
            "device",
            "add",
            "laptop",
            "--attr",
            "managed=yes",
            "--out",
            certs.to_str().unwrap(),
        ],
    );

    let users_before = ok(&env.relay, &["user", "list"]);
    let devices_before = ok(&env.relay, &["device", "list"]);
    stop(&mut env.relay);
    let verify_sled = ok(&env.relay, &["audit", "verify"]);
    assert!(verify_sled.contains("hash"), "{verify_sled}");

    let pg = Postgres::start(env.path());
    let url = pg.create_database("migrated");
    let out = migrate(&env.relay.data_dir, &url);
    assert!(out.status.success(), "store migrate: {}", stderr(&out));
    let summary = stdout(&out);
    eprintln!("store migrate said:\n{summary}");
    for line in [
        "users: 3",
        "connectors: 1",
        "connector_certs: 1",
        "devices: 1",
    ] {
        assert!(
            summary.lines().any(|l| l == line),
            "no {line:?} in\n{summary}"
        );
    }
    assert!(summary.contains("totp_used: 1"), "{summary}");
    assert!(summary.contains("audit client sessions: 1"), "{summary}");
    assert!(
        summary.contains("audit client event keys: 1 (sled held 1)"),
        "{summary}"
    );
    assert!(summary.contains("sign_in_failures: 1"), "{summary}");
    let tip_line = |prefix: &str| {
        summary
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in\n{summary}"))
            .to_owned()
    };
    let (tip_sled, tip_pg) = (
        tip_line("audit tip in sled: "),
        tip_line("audit tip in PostgreSQL: "),
    );
    assert_eq!(tip_sled, tip_pg);
    assert!(
        verify_sled.contains(tip_sled.split("hash ").nth(1).unwrap()),
        "{verify_sled} vs {tip_sled}"
    );

    // audit verify on the copy, offline: the same words, the same tip.
    let out = relay_cmd(&env.relay.data_dir, &["audit", "verify"], Some(&url));
    assert!(
        out.status.success(),
        "audit verify on PostgreSQL: {}",
        stderr(&out)
    );
    assert_eq!(stdout(&out), verify_sled);

    // The relay again, on PostgreSQL.
    env.relay.store_url = Some(url.clone());
    env.relay.postgres = Some(pg);
    env.relay.launch();
    // Users (with their sign-ins, groups, codes, lock) and devices as they were.
    assert_eq!(ok(&env.relay, &["user", "list"]), users_before);
    assert_eq!(ok(&env.relay, &["device", "list"]), devices_before);
    env.relay.wait_online("c1", 2);
    let row = env.relay.connector_row("c1");
    assert_eq!(row.get(1).map(String::as_str), Some("enrolled"), "{row:?}");
    let list = env.relay.connector_list();
    assert!(list.contains("web2"), "the grants did not move:\n{list}");

    // alice's sign-in from before the move still works, through the
    // connector's old certificate, in a new session.
    let out = env.ssh("web1", "echo after", b"");
    assert!(out.status.success(), "ssh after: {}", stderr(&out));
    assert_eq!(stdout(&out), "after");
    // And she signs in afresh.
    let (code, body) = env.relay.api_login(USER, PASSWORD, None);
    assert_eq!(code, 200, "alice: {body}");

    // The terminal session goes on: its start, sent again, is stored once
    // (the once-only keys moved); its owner's budget moved too, so a second
    // start is refused.
    rt.block_on(async {
        let mut ws = open_web1(&env, &token).await;
        report_acked(&mut ws, 1, start_event()).await;
        let resize = SessionEvent::Resize {
            cols: 100,
            rows: 30,
        };
        report_acked(&mut ws, 2, resize).await;
        // Acknowledged (the client is to forget it) but never stored.
        report_acked(&mut ws, 3, start_event()).await;
    });
    let client: Vec<u64> = audit_export(&env.relay, &["--session", TERM, "--type", "client"])
        .iter()
        .map(|r| r["event"]["seq"].as_u64().expect("a client event's seq"))
        .collect();
    assert_eq!(
        client,
        [1, 2],
        "client events after the move: the resent start stored once, a second start refused"
    );

    // bob: the code used before the move stays used; a later one works.
    let (code, body) = env.relay.api_login("bob", "pw-bob", Some(&used));
    assert_eq!(code, 401, "a used code worked again: {body}");
    let (code, body) = env.relay.api_login("bob", "pw-bob", None);
    assert_eq!(code, 401, "bob without a code: {body}");
    let next = sallyport_relay::test_hooks::code_now(&secret, now() + 30).expect("code");
    let (code, body) = env.relay.api_login("bob", "pw-bob", Some(&next));
    assert_eq!(code, 200, "bob with a fresh code: {body}");

    // carol is still locked.
    let (code, body) = env.relay.api_login("carol", "pw-carol", None);
    assert_ne!(code, 200, "a locked user signed in: {body}");
    let shown = ok(&env.relay, &["user", "show", "bob"]);
    assert!(shown.contains("ops") && shown.contains("dev"), "{shown}");

    // The chain goes on from the copied tip and still verifies.
    let after = ok(&env.relay, &["audit", "verify"]);
    assert_ne!(after, verify_sled, "no events were appended after the move");
    assert!(!after.contains("FAILED"), "{after}");
}

/// Audit events a relay keeps in the refusal test: retention drops older
/// ones, so the chain copied starts after an anchor.
const KEPT_EVENTS: &str = "3";

#[test]
fn migrate_refuses_a_running_relay_and_a_database_that_is_not_empty() {
    if store_is_postgres() {
        eprintln!("SALLYPORT_TEST_STORE=postgres: this test migrates from sled; skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let options = RelayOptions {
        args: vec!["--audit-max-events".into(), KEPT_EVENTS.into()],
        ..Default::default()
    };
    let mut relay = RelayProc::start_with_options(dir.path(), None, options);
    for name in ["dora", "eve", "frank", "gus"] {
        relay.add_user(name, "pw");
    }
    // Retention runs at start: the oldest events go, leaving an anchor.
    relay.kill();
    relay.launch();
    wait_for("retention to drop the oldest audit events", || {
        let first = relay.audit_export(&[]).first()?.get("seq")?.as_u64()?;
        (first > 1).then_some(())
    });
    let pg = Postgres::start(dir.path());
    let url = pg.create_database("target");

    let out = migrate(&relay.data_dir, &url);
    assert!(!out.status.success(), "migrated a running relay's store");
    assert!(
        stderr(&out).contains("a relay is running"),
        "{}",
        stderr(&out)
    );

    stop(&mut relay);
    let verify_sled = ok(&relay, &["audit", "verify"]);
    let out = migrate(&relay.data_dir, &url);
    assert!(out.status.success(), "store migrate: {}", stderr(&out));
    let summary = stdout(&out);
    assert!(summary.contains("users: 4"), "{summary}");
    assert!(
        summary.contains("audit retention anchor: event "),
        "{summary}"
    );
    let out = relay_cmd(&relay.data_dir, &["audit", "verify"], Some(&url));
    assert!(
        out.status.success(),
        "audit verify on PostgreSQL: {}",
        stderr(&out)
    );
    assert_eq!(stdout(&out), verify_sled);

    // Again into the same (now full) database: refused, with what to do,
    // and nothing written.
    let out = migrate(&relay.data_dir, &url);
    assert!(!out.status.success(), "migrated into a database twice");
    let err = stderr(&out);
    assert!(err.contains("is not empty"), "{err}");
    assert!(err.contains("users"), "{err}");
    assert!(err.contains("drop the database"), "{err}");
    assert_eq!(pg.psql("target", "SELECT count(*) FROM users").trim(), "4");

    // Not a PostgreSQL URL.
    let out = relay_cmd(&relay.data_dir, &["store", "migrate", "--to", "sled"], None);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("postgres://"), "{}", stderr(&out));
}
