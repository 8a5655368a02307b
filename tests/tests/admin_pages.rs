//! The admin pages as an admin, a user who is not one, and another site see
//! them: only members of `admin` get the pages and their API (every route,
//! walked from the relay's own list); another site cannot make an admin's
//! browser act; and an admin ends another user's live terminal session,
//! locks and unlocks a user, and issues an enrolment token that enrols a real
//! connector, each after a confirmation in the page and each an audit event
//! naming the admin (`by = {via: web, user: ADMIN}`).

use std::path::Path;

use sallyport_proto::client::SIGN_IN_COOKIE;
use sallyport_relay::admin_api::web_routes;
use sallyport_tests::lifecycle::audit_events;
use sallyport_tests::*;
use serde_json::{json, Value};

/// The admin in these journeys (group `admin`).
const ADMIN: &str = "ada";
const ADMIN_PASSWORD: &str = "ada's long admin password";

fn web_admin() -> Value {
    json!({"via": "web", "user": ADMIN})
}

/// Signs `user` in through the API; the sign-in's token.
fn sign_in(relay: &RelayProc, user: &str, password: &str) -> String {
    let (code, body) = relay.api_login(user, password, None);
    assert_eq!(code, 200, "sign-in of {user}: {body}");
    let v: Value = serde_json::from_str(&body).expect("a JSON answer");
    v["token"].as_str().expect("a token").to_owned()
}

/// The `Cookie:` header a browser signed in with `token` sends.
fn cookie(token: &str) -> String {
    format!("Cookie: {SIGN_IN_COOKIE}={token}")
}

/// `method path` with `headers`, as a browser on the relay's own pages would
/// send it (POSTs with the relay's Origin unless `headers` give another):
/// status and body.
fn request(relay: &RelayProc, method: &str, path: &str, headers: &[&str]) -> (u16, String) {
    let origin = format!("Origin: {}", relay.url());
    let mut args = vec!["-X", method];
    if method == "POST" && !headers.iter().any(|h| h.starts_with("Origin:")) {
        args.extend(["-H", &origin]);
    }
    for h in headers {
        args.extend(["-H", h]);
    }
    if method == "POST" {
        args.extend(["-H", "content-type: application/json", "--data", "{}"]);
    }
    relay.curl(path, &args)
}

/// An admin route's path with its parameters filled in: a real user (so a
/// request that got through would show), a connector, a device, a stream.
fn concrete(path: &str) -> String {
    path.replace("{name}", USER)
        .replace("{stream}", "no-such-stream")
}

fn is_locked(relay: &RelayProc, user: &str) -> bool {
    let show = stdout(&relay.admin(&["user", "show", user], ""));
    show.contains("locked since")
}

#[test]
fn only_admins_get_the_admin_pages_and_api_and_other_sites_cannot_use_an_admins_sign_in() {
    let env = Env::start();
    let relay = &env.relay;
    relay.add_user_in(ADMIN, ADMIN_PASSWORD, &["admin"]);
    let user_token = sign_in(relay, USER, PASSWORD);
    let user = cookie(&user_token);
    let bearer = format!("Authorization: Bearer {user_token}");
    let admin = cookie(&sign_in(relay, ADMIN, ADMIN_PASSWORD));
    let routes = web_routes();
    assert!(routes.len() >= 15, "{routes:?}");

    for (method, path) in &routes {
        let at = concrete(path);
        let api = path.starts_with("/api/");
        // Not signed in: pages go to sign-in, the API answers 401.
        let (code, body) = request(relay, method, &at, &[]);
        if api {
            assert_eq!(code, 401, "{method} {at} signed out: {body}");
        } else {
            assert_eq!(code, 303, "{method} {at} signed out: {body}");
        }
        // Signed in, not an admin: 403 with the reason, page or API.
        let (code, body) = request(relay, method, &at, &[&user]);
        assert_eq!(code, 403, "{method} {at} as {USER}: {body}");
        assert!(body.contains("only admins"), "{method} {at}: {body}");
        if !api {
            assert!(body.contains("Access denied"), "{at}: {body}");
        }
        // The same with a bearer token (the CLI's way of signing in).
        assert_eq!(request(relay, method, &at, &[&bearer]).0, 403, "{at}");
    }
    // /api/me says who is an admin (the services page links them on).
    let me = |who: &str| -> Value {
        serde_json::from_str(&request(relay, "GET", "/api/me", &[who]).1).expect("JSON")
    };
    assert_eq!(me(&user)["admin"], false);
    assert_eq!(me(&admin)["admin"], true);
    // An admin reads every page and list.
    for (method, path) in routes.iter().filter(|(m, _)| *m == "GET") {
        let (code, body) = request(relay, method, path, &[&admin]);
        assert_eq!(code, 200, "{method} {path} as the admin: {body}");
        if path.starts_with("/api/") {
            let v: Value = serde_json::from_str(&body).expect("JSON");
            assert!(v.is_array(), "{path}: {body}");
        } else {
            assert!(body.contains("/assets/admin.js"), "{path}: {body}");
        }
    }
    // Nothing the refused requests asked for happened.
    assert!(!is_locked(relay, USER));
    assert_eq!(relay.api_login(USER, PASSWORD, None).0, 200);
    for kind in [
        "user_locked",
        "user_unlocked",
        "sign_out",
        "connector_revoked",
    ] {
        assert!(audit_events(relay, kind).is_empty(), "{kind}");
    }

    // Another site making the admin's browser post: refused by its Origin
    // before anything runs.
    let lock = format!("/api/admin/users/{USER}/lock");
    let (code, body) = request(
        relay,
        "POST",
        &lock,
        &[&admin, "Origin: https://evil.example"],
    );
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("cross-origin request refused"), "{body}");
    assert!(!is_locked(relay, USER));
    assert!(audit_events(relay, "user_locked").is_empty());

    // From the relay's own page it works, and the audit event names the admin.
    let (code, body) = request(relay, "POST", &lock, &[&admin]);
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("JSON");
    assert!(
        v["message"].as_str().unwrap_or("").contains("locked"),
        "{body}"
    );
    assert!(is_locked(relay, USER));
    let locks = audit_events(relay, "user_locked");
    assert_eq!(locks.len(), 1, "{locks:?}");
    assert_eq!(locks[0]["event"]["by"], web_admin(), "{locks:?}");
    let users: Value =
        serde_json::from_str(&request(relay, "GET", "/api/admin/users", &[&admin]).1).unwrap();
    let row = users
        .as_array()
        .and_then(|u| u.iter().find(|u| u["name"] == USER))
        .cloned()
        .unwrap_or_else(|| panic!("{users}"));
    assert!(row["locked_since"].as_u64().is_some(), "{row}");
    assert_eq!(row["sso_provider"], Value::Null, "{row}");

    // The other actions, through the API the pages use: each is the admin
    // command, and its audit event names the web admin.
    let dir = env.path().to_str().unwrap().to_owned();
    let out = relay.admin(
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
    assert!(out.status.success(), "{}", stderr(&out));
    let _token = relay.token("c9", "10m", &["web9"]);
    let devices: Value =
        serde_json::from_str(&request(relay, "GET", "/api/admin/devices", &[&admin]).1).unwrap();
    assert_eq!(devices[0]["name"], "laptop", "{devices}");
    assert_eq!(
        devices[0]["attributes"],
        json!({"managed": "yes"}),
        "{devices}"
    );
    assert_eq!(devices[0]["revoked"], false, "{devices}");
    let connectors: Value =
        serde_json::from_str(&request(relay, "GET", "/api/admin/connectors", &[&admin]).1).unwrap();
    assert_eq!(connectors[0]["name"], "c9", "{connectors}");
    assert_eq!(connectors[0]["state"], "pending", "{connectors}");
    assert_eq!(connectors[0]["granted"], json!(["web9"]), "{connectors}");
    assert_eq!(connectors[0]["connections"], 0, "{connectors}");
    for (path, kind, field, value) in [
        (
            format!("/api/admin/users/{USER}/unlock"),
            "user_unlocked",
            "user",
            USER,
        ),
        (
            format!("/api/admin/users/{USER}/sign-out"),
            "sign_out",
            "user",
            USER,
        ),
        (
            "/api/admin/devices/laptop/revoke".into(),
            "device_revoked",
            "device",
            "laptop",
        ),
        (
            "/api/admin/connectors/c9/revoke".into(),
            "connector_revoked",
            "connector",
            "c9",
        ),
    ] {
        let (code, body) = request(relay, "POST", &path, &[&admin]);
        assert_eq!(code, 200, "{path}: {body}");
        let events = audit_events(relay, kind);
        assert_eq!(events.len(), 1, "{kind}: {events:?}");
        assert_eq!(events[0]["event"][field], value, "{events:?}");
        assert_eq!(events[0]["event"]["by"], web_admin(), "{events:?}");
    }
    assert!(!is_locked(relay, USER));
    // Signed out: the sign-in alice had is gone.
    assert_eq!(request(relay, "GET", "/api/me", &[&user]).0, 401);
    let devices: Value =
        serde_json::from_str(&request(relay, "GET", "/api/admin/devices", &[&admin]).1).unwrap();
    assert_eq!(devices[0]["revoked"], true, "{devices}");

    // What does not exist is 404; a token valid too long is refused.
    let (code, body) = request(
        relay,
        "POST",
        "/api/admin/sessions/no-such-stream/terminate",
        &[&admin],
    );
    assert_eq!(code, 404, "{body}");
    let (code, _) = request(relay, "POST", "/api/admin/users/nobody/lock", &[&admin]);
    assert_eq!(code, 404);
    let (code, body) = relay.curl(
        "/api/admin/connectors/c1/token",
        &[
            "-X",
            "POST",
            "-H",
            &admin,
            "-H",
            "content-type: application/json",
            "--data",
            r#"{"services":["web1"],"ttl_secs":99999999}"#,
        ],
    );
    assert_eq!(code, 400, "{body}");
    let issued = audit_events(relay, "enrolment_token_issued");
    assert!(
        issued.iter().all(|e| e["event"]["connector"] != "c1"),
        "{issued:?}"
    );
}

/// Waits for the journey to write `path`.
fn wait_file(path: &Path) {
    wait_for(&format!("{}", path.display()), || {
        path.exists().then_some(())
    });
}

#[test]
fn an_admin_terminates_another_users_live_terminal_session_after_confirming() {
    let env = Env::start_with(SshdAuth::Password);
    let relay = &env.relay;
    let _c1 = env.connector("c1", "web1", &[]);
    relay.wait_online("c1", 2);
    // bob: a person with a terminal open (the Unix account sshd knows).
    let bob = E2E_UNIX_USER;
    relay.add_user(bob, PASSWORD);
    relay.add_user_in(ADMIN, ADMIN_PASSWORD, &["admin"]);
    let ready = env.path().join("bob-ready");
    let (bobs_page, admins_page) = std::thread::scope(|s| {
        let bobs = s.spawn(|| {
            browser(
                env.path(),
                relay,
                (bob, PASSWORD),
                "session_ended_by_admin",
                &[
                    ("SERVICE", "web1"),
                    ("SSH_PASSWORD", E2E_UNIX_PASSWORD),
                    ("READY_FILE", ready.to_str().unwrap()),
                ],
            )
        });
        wait_file(&ready);
        let admins = browser(
            env.path(),
            relay,
            (ADMIN, ADMIN_PASSWORD),
            "admin_pages",
            &[("STEPS", "sessions"), ("BOB", bob)],
        );
        (bobs.join().expect("bob's journey"), admins)
    });

    // What the admin saw: bob, the service, the account he logged in as,
    // since when, and bytes both ways.
    let seen = &admins_page["sessions"];
    let cells: Vec<&str> = seen["shown"]
        .as_array()
        .unwrap_or_else(|| panic!("{admins_page}"))
        .iter()
        .map(|c| c.as_str().unwrap_or(""))
        .collect();
    assert_eq!(&cells[..3], &[bob, "web1", bob], "{seen}");
    // `YYYY-MM-DD HH:MM:SS`, UTC.
    let since = cells[3];
    let shape: String = since
        .chars()
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect();
    assert_eq!(shape, "9999-99-99 99:99:99", "since: {since:?}");
    for bytes in &cells[4..6] {
        assert!(
            bytes.ends_with('B') && !bytes.starts_with("0 "),
            "bytes: {cells:?}"
        );
    }
    // Cancel left it; confirming ended it.
    assert_eq!(seen["afterCancel"], 1, "{seen}");
    assert!(
        seen["question"].as_str().unwrap_or("").contains(bob),
        "{seen}"
    );
    assert!(
        seen["done"].as_str().unwrap_or("").contains("ended"),
        "{seen}"
    );
    assert_eq!(seen["csp"], json!([]), "{seen}");
    assert_eq!(admins_page["consoleErrors"], json!([]), "{admins_page}");

    // bob's page: connected, then ended by an admin; that session alone
    // ended, bob is still signed in.
    assert_eq!(bobs_page["before"], "connected", "{bobs_page}");
    let reason = bobs_page["after"]["endReason"].as_str().unwrap_or_default();
    assert!(reason.contains("ended by an admin"), "{bobs_page}");
    assert_eq!(bobs_page["stillSignedIn"], true, "{bobs_page}");

    // The audit log: the termination, by the admin on the web.
    let ended = audit_events(relay, "session_terminated");
    assert_eq!(ended.len(), 1, "{ended:?}");
    let e = &ended[0]["event"];
    assert_eq!(e["by"], web_admin(), "{e}");
    assert_eq!(e["user"], bob, "{e}");
    assert_eq!(e["service"], "web1", "{e}");
    assert_eq!(e["stream"], seen["stream"], "{e}");
}

#[test]
fn an_admin_locks_and_unlocks_a_user_and_enrols_a_connector_from_the_pages() {
    let env = Env::start();
    let relay = &env.relay;
    relay.add_user_in(ADMIN, ADMIN_PASSWORD, &["admin"]);
    let locked = env.path().join("locked");
    let checked = env.path().join("checked");
    let token_file = env.path().join("token");
    let mut connector = None;
    let page = std::thread::scope(|s| {
        let journey = s.spawn(|| {
            browser(
                env.path(),
                relay,
                (ADMIN, ADMIN_PASSWORD),
                "admin_pages",
                &[
                    ("STEPS", "users,connectors"),
                    ("LOCK_USER", USER),
                    ("LOCKED_FILE", locked.to_str().unwrap()),
                    ("CHECKED_FILE", checked.to_str().unwrap()),
                    ("CONNECTOR", "c7"),
                    ("SERVICE", "web7"),
                    ("TOKEN_FILE", token_file.to_str().unwrap()),
                ],
            )
        });
        // Locked from the page: the right password is refused, and the
        // sign-in alice had (the CLI's) no longer works.
        wait_file(&locked);
        let (code, body) = relay.api_login(USER, PASSWORD, None);
        assert_eq!(code, 403, "{body}");
        assert!(body.contains("locked"), "{body}");
        let out = env.client.login(relay, USER, PASSWORD);
        assert!(!out.status.success(), "{}", stdout(&out));
        std::fs::write(&checked, "checked\n").unwrap();
        // The token from the page enrols a real connector.
        wait_file(&token_file);
        let token = std::fs::read_to_string(&token_file).unwrap();
        connector = Some(start_connector(
            env.path(),
            "c7",
            Some(token.trim()),
            &[format!("web7={}", env.sshd.target())],
            &[],
        ));
        journey.join().expect("the admin's journey")
    });
    assert_eq!(page["consoleErrors"], json!([]), "{page}");
    assert_eq!(page["adminLink"], "/admin/users", "{page}");

    // Users: asked first, then locked and shown so; unlocked again.
    let users = &page["users"];
    assert!(
        users["lockQuestion"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("Lock {USER}?")),
        "{users}"
    );
    let cells = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .map(|c| c.as_str().unwrap_or("").to_owned())
            .collect()
    };
    assert_eq!(cells(&users["before"])[4], "", "{users}");
    assert!(!cells(&users["locked"])[4].is_empty(), "{users}");
    assert_eq!(cells(&users["locked"])[2], "local password", "{users}");
    assert_eq!(cells(&users["unlocked"])[4], "", "{users}");
    assert_eq!(users["csp"], json!([]), "{users}");
    // Unlocked: the password signs in again.
    assert_eq!(relay.api_login(USER, PASSWORD, None).0, 200);
    let out = env.client.login(relay, USER, PASSWORD);
    assert!(out.status.success(), "{}", stderr(&out));
    for kind in ["user_locked", "user_unlocked"] {
        let events = audit_events(relay, kind);
        assert_eq!(events.len(), 1, "{kind}: {events:?}");
        assert_eq!(events[0]["event"]["by"], web_admin(), "{events:?}");
        assert_eq!(events[0]["event"]["user"], USER, "{events:?}");
    }

    // Connectors: the token was shown once, enrolled c7, which is online.
    let c = &page["connectors"];
    assert_eq!(c["tokenFor"], "c7", "{c}");
    assert_eq!(c["tokenShownAgain"], false, "{c}");
    assert_eq!(cells(&c["pending"])[1], "pending", "{c}");
    let online = cells(&c["online"]);
    assert_eq!(online[0], "c7");
    assert_eq!(online[1], "enrolled", "{online:?}");
    assert!(online[2].starts_with("online ("), "{online:?}");
    assert_eq!(online[3], env!("CARGO_PKG_VERSION"), "{online:?}");
    assert_eq!(online[4], "web7", "{online:?}");
    assert_eq!(online[5], "web7", "{online:?}");
    assert_eq!(c["csp"], json!([]), "{c}");
    let issued = audit_events(relay, "enrolment_token_issued");
    assert_eq!(issued.len(), 1, "{issued:?}");
    assert_eq!(issued[0]["event"]["by"], web_admin());
    assert_eq!(issued[0]["event"]["connector"], "c7");
    assert_eq!(issued[0]["event"]["services"], json!(["web7"]));
    // And it carries sessions: ssh through the new connector works.
    relay.wait_online("c7", 2);
    let out = env.ssh("web7", "echo through c7", b"");
    assert_eq!(stdout(&out), "through c7", "{}", stderr(&out));
    drop(connector);
}
