//! The user lifecycle as an admin and a user see it: `user lock` and `user
//! remove` end the user's live browser and `ssh` sessions at once, each told
//! why, and refuse them from then on (sign-in, their sign-ins, SSH
//! certificates); `user passwd` and `user groups` change what sign-in and
//! policy see; a user changes their own password on the account page; and
//! `user list|show|unlock` say and undo what was done. Every step is an
//! audit event naming the admin (`cli` and the OS user of the admin socket).

use sallyport_tests::lifecycle::{audit_events, ready_then_wait, LongSsh};
use sallyport_tests::*;
use serde_json::Value;

/// One Sallyport user ([`E2E_UNIX_USER`]) with two live sessions: the
/// browser's terminal on `web1` (a password sshd) and `ssh` through
/// `sallyport proxy` on `box1` (a key sshd).
struct TwoSessions {
    env: Env,
    key_sshd: Sshd,
    proxy: Client,
    _connectors: [Proc; 2],
}

fn two_sessions() -> TwoSessions {
    let env = Env::start_with(SshdAuth::Password);
    let c1 = env.connector("c1", "web1", &[]);
    let key_sshd = Sshd::start(env.path());
    let token = env.relay.token("c2", "10m", &["box1"]);
    let c2 = start_connector(
        env.path(),
        "c2",
        Some(&token),
        &[format!("box1={}", key_sshd.target())],
        &[],
    );
    env.relay.wait_online("c1", 2);
    env.relay.wait_online("c2", 2);
    env.relay.add_user(E2E_UNIX_USER, PASSWORD);
    let proxy = Client::new(env.path(), "e2e");
    let out = proxy.login(&env.relay, E2E_UNIX_USER, PASSWORD);
    assert!(out.status.success(), "login: {}", stderr(&out));
    TwoSessions {
        env,
        key_sshd,
        proxy,
        _connectors: [c1, c2],
    }
}

/// The CLI's stored bearer token.
fn cli_token(client: &Client) -> String {
    let text = std::fs::read_to_string(client.home.join("credentials.json")).unwrap();
    serde_json::from_str::<Value>(&text).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Runs `action` (`["user", "lock"]`, ...) on [`E2E_UNIX_USER`] while both
/// sessions are live; asserts both end telling why (`why`), that signing
/// in again is refused with `refusal`, and that the old sign-in gets no
/// SSH certificate. Returns the admin command's output.
fn ends_both_sessions(t: &TwoSessions, action: &[&str], why: &str, refusal: &str) -> String {
    let relay = &t.env.relay;
    let ssh = LongSsh::start(t.proxy.ssh_command(&t.key_sshd, "box1", &ready_then_wait()));
    let ready = t.env.path().join("browser-ready");
    let (page, admin_out, started) = std::thread::scope(|s| {
        let page = s.spawn(|| {
            browser(
                t.env.path(),
                relay,
                (E2E_UNIX_USER, PASSWORD),
                "session_ended_by_admin",
                &[
                    ("SERVICE", "web1"),
                    ("SSH_PASSWORD", E2E_UNIX_PASSWORD),
                    ("READY_FILE", ready.to_str().unwrap()),
                ],
            )
        });
        wait_for("the browser's shell", || ready.exists().then_some(()));
        let started = std::time::SystemTime::now();
        let out = relay.admin(&[action, &[E2E_UNIX_USER]].concat(), "");
        assert!(out.status.success(), "{action:?}: {}", stderr(&out));
        (page.join().expect("browser journey"), stdout(&out), started)
    });
    // Two sign-ins (the page's, the CLI's), two live sessions.
    assert!(
        admin_out.contains("2 sign-in(s) ended, 2 live session(s) closed"),
        "{admin_out}"
    );

    // The page: connected at a shell, then ended with the reason. How long
    // that took is printed for the record (no threshold: shared machines).
    assert_eq!(page["before"], "connected", "{page}");
    if let (Some(ended), Ok(since)) = (
        page["endedAtMs"].as_u64(),
        started.duration_since(std::time::UNIX_EPOCH),
    ) {
        eprintln!(
            "{action:?}: the page saw its session end {} ms after the admin command started",
            ended.saturating_sub(since.as_millis() as u64)
        );
    }
    let reason = page["after"]["endReason"].as_str().unwrap_or_default();
    assert!(reason.contains(why), "the page's end reason: {page}");
    assert_eq!(page["pathAfterSignIn"], "/", "{page}");
    let shown = page["signInError"].as_str().unwrap_or_default();
    assert!(shown.contains(refusal), "signing in again showed: {page}");

    // ssh through the proxy: ended, with the relay's reason on stderr.
    let out = ssh.ended();
    assert!(!out.status.success(), "ssh ended well: {out:?}");
    assert!(stderr(&out).contains(why), "ssh's stderr: {}", stderr(&out));

    // The CLI's sign-in is gone: no API, no certificate.
    let token = cli_token(&t.proxy);
    let bearer = format!("Authorization: Bearer {token}");
    assert_eq!(relay.curl("/api/me", &["-H", &bearer]).0, 401);
    let (code, body) = relay.curl(
        "/api/ssh-cert",
        &[
            "-X",
            "POST",
            "-H",
            &bearer,
            "-H",
            "content-type: application/json",
            "--data",
            r#"{"service":"box1","public_key":"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"}"#,
        ],
    );
    assert_eq!(code, 401, "{body}");
    admin_out
}

/// The admin socket's peer, as audit events name it.
fn cli_actor() -> Value {
    serde_json::json!({"via": "cli", "os_user": current_user(), "uid": rustix_uid()})
}

fn rustix_uid() -> u32 {
    let out = std::process::Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn locking_a_user_ends_their_browser_and_ssh_sessions_and_refuses_them_until_unlocked() {
    let t = two_sessions();
    let relay = &t.env.relay;
    let out = ends_both_sessions(&t, &["user", "lock"], "locked", "locked");
    assert!(out.contains("locked"), "{out}");

    // The right password is told the account is locked (403); a wrong one
    // learns nothing more than a wrong password.
    let (code, body) = relay.api_login(E2E_UNIX_USER, PASSWORD, None);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("locked"), "{body}");
    let (code, body) = relay.api_login(E2E_UNIX_USER, "not it", None);
    assert_eq!(code, 401, "{body}");
    assert!(!body.contains("locked"), "{body}");
    let again = t.proxy.login(relay, E2E_UNIX_USER, PASSWORD);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("locked"), "{}", stderr(&again));

    // What the admin sees.
    let list = stdout(&relay.admin(&["user", "list"], ""));
    let row = list
        .lines()
        .find(|l| l.starts_with(E2E_UNIX_USER))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(row.contains("locked"), "{list}");
    let show = stdout(&relay.admin(&["user", "show", E2E_UNIX_USER], ""));
    assert!(show.contains("locked since"), "{show}");

    // The audit log: the lock, by the admin, with what it ended.
    let locks = audit_events(relay, "user_locked");
    assert_eq!(locks.len(), 1, "{locks:?}");
    let lock = &locks[0];
    assert_eq!(lock["event"]["user"], E2E_UNIX_USER);
    assert_eq!(lock["event"]["sessions"], 2, "{lock}");
    assert_eq!(lock["event"]["by"], cli_actor(), "{lock}");
    assert_eq!(lock["code"], 2003);
    assert!(lock["time"].as_str().unwrap().ends_with('Z'), "{lock}");
    // The refused sign-ins are events too.
    let refused = audit_events(relay, "sign_in");
    assert!(
        refused.iter().any(|r| r["event"]["ok"] == false
            && r["event"]["reason"]
                .as_str()
                .unwrap_or("")
                .contains("locked")),
        "{refused:?}"
    );

    // Unlocked: sign-in and sessions work again.
    let out = relay.admin(&["user", "unlock", E2E_UNIX_USER], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let again = t.proxy.login(relay, E2E_UNIX_USER, PASSWORD);
    assert!(again.status.success(), "{}", stderr(&again));
    let out = t.proxy.ssh(&t.key_sshd, "box1", "echo back", b"");
    assert_eq!(stdout(&out), "back", "{}", stderr(&out));
    let unlocks = audit_events(relay, "user_unlocked");
    assert_eq!(unlocks[0]["event"]["by"], cli_actor());
}

#[test]
fn removing_a_user_ends_their_sessions_and_they_no_longer_exist() {
    let t = two_sessions();
    let relay = &t.env.relay;
    ends_both_sessions(
        &t,
        &["user", "remove"],
        "removed",
        "wrong user name or password",
    );
    let (code, _) = relay.api_login(E2E_UNIX_USER, PASSWORD, None);
    assert_eq!(code, 401);
    let list = stdout(&relay.admin(&["user", "list"], ""));
    assert!(!list.contains(E2E_UNIX_USER), "{list}");
    let out = relay.admin(&["user", "show", E2E_UNIX_USER], "");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no user named"), "{}", stderr(&out));
    let removed = audit_events(relay, "user_removed");
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert_eq!(removed[0]["event"]["by"], cli_actor());
    assert_eq!(removed[0]["code"], 2002);
    // The name may be given again, to someone new.
    relay.add_user(E2E_UNIX_USER, "a new person's password");
    assert_eq!(
        relay
            .api_login(E2E_UNIX_USER, "a new person's password", None)
            .0,
        200
    );
}

#[test]
fn passwd_and_groups_change_what_sign_in_and_policy_see() {
    let config = r#"
[policy]
[[policy.services.web1.rules]]
name = "ops only"
action = "allow"
groups = ["ops"]
"#;
    let env = Env::start_configured(SshdAuth::Key, Some(config));
    let _c = env.connector("c1", "web1", &[]);
    env.relay.wait_online("c1", 2);

    // Not in ops: denied, with the reason.
    let out = env.ssh("web1", "echo in", b"");
    assert!(!out.status.success(), "{}", stdout(&out));
    let denied = stderr(&out);
    assert!(denied.contains("may not reach service web1"), "{denied}");

    let out = env.relay.admin(&["user", "groups", USER, "ops,dev"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("groups of {USER}: dev,ops"));
    let out = env.ssh("web1", "echo in", b"");
    assert_eq!(stdout(&out), "in", "{}", stderr(&out));

    let out = env.relay.admin(&["user", "groups", USER, ""], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!env.ssh("web1", "echo in", b"").status.success());
    let changes = audit_events(&env.relay, "groups_changed");
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(changes[0]["event"]["before"], serde_json::json!([]));
    assert_eq!(
        changes[0]["event"]["after"],
        serde_json::json!(["dev", "ops"])
    );
    assert_eq!(changes[1]["event"]["after"], serde_json::json!([]));

    // A new password: the old one no longer signs in, the new one does.
    let out = env.relay.admin(
        &["user", "passwd", USER, "--password-stdin"],
        "a brand new one\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(env.relay.api_login(USER, PASSWORD, None).0, 401);
    assert_eq!(env.relay.api_login(USER, "a brand new one", None).0, 200);
    let changed = audit_events(&env.relay, "password_changed");
    assert_eq!(changed[0]["event"]["by"], cli_actor(), "{changed:?}");
    // Never the password.
    let all = stdout(&env.relay.admin(&["audit", "export"], ""));
    assert!(!all.contains("a brand new one"));
}

#[test]
fn a_user_changes_their_password_on_the_account_page_with_the_current_one() {
    let env = Env::start();
    let new = "the new password on the account page";
    let r = browser(
        env.path(),
        &env.relay,
        (USER, PASSWORD),
        "account_password",
        &[("NEW_PASSWORD", new)],
    );
    let wrong = r["wrong"]["error"].as_str().unwrap_or_default();
    assert!(wrong.contains("wrong password"), "{r}");
    assert_eq!(r["wrong"]["done"], false, "{r}");
    assert_eq!(r["right"]["done"], true, "{r}");
    assert_eq!(r["right"]["error"], Value::Null, "{r}");
    assert_eq!(r["oldPassword"]["path"], "/", "{r}");
    assert!(
        r["oldPassword"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("wrong user name or password"),
        "{r}"
    );
    assert_eq!(r["newPassword"]["path"], "/services", "{r}");
    let changed = audit_events(&env.relay, "password_changed");
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(
        changed[0]["event"]["by"],
        serde_json::json!({"via": "web", "user": USER})
    );
    // Without a sign-in, or without the current password: refused.
    let (code, _) = env.relay.curl(
        "/api/password",
        &[
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "--data",
            r#"{"current":"","new":"x"}"#,
        ],
    );
    assert_eq!(code, 401);
}
