//! Sessions and client events are bounded per user; signing out ends a
//! sign-in's sessions; changing the second factor asks for the password;
//! keystrokes are recorded only where the policy says; SSH certificates
//! carry unique serials. Each test acts as a client or admin would (raw
//! WebSockets with a bearer token, curl, the admin CLI, ssh-keygen) and
//! checks what they would see.

use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::StreamExt as _;
use sallyport_proto::client::SessionEvent;
use sallyport_tests::raw_session::*;
use sallyport_tests::*;

/// `sallyport-relay`'s default cap on one user's concurrent sessions.
const DEFAULT_CAP: usize = sallyport_relay::limits::DEFAULT_MAX_SESSIONS_PER_USER;
/// Its default cap on one user's concurrent sessions to one service.
const SERVICE_CAP: usize = sallyport_relay::limits::DEFAULT_MAX_SESSIONS_PER_USER_PER_SERVICE;
/// `start`, `resize` and `end` events one client session may report (the
/// relay's `MAX_CONTROL_EVENTS_PER_SESSION`).
const CONTROL_EVENTS: u64 = sallyport_relay::limits::MAX_CONTROL_EVENTS_PER_SESSION;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("tokio runtime")
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn start_event(service: &str) -> SessionEvent {
    SessionEvent::Start {
        service: service.into(),
        principal: USER.into(),
        auth: "password".into(),
        host_key: "SHA256:test".into(),
        cols: 80,
        rows: 24,
    }
}

fn kinds(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            e["event"]["event"]["kind"]
                .as_str()
                .unwrap_or("?")
                .to_owned()
        })
        .collect()
}

/// An env whose connector serves `names` (all on the test sshd).
fn serving(names: &[&str], config: Option<&str>) -> (Env, Proc) {
    let env = Env::start_configured(SshdAuth::Key, config);
    let token = env.relay.token("c1", "10m", names);
    let services: Vec<String> = names
        .iter()
        .map(|name| format!("{name}={}", env.sshd.target()))
        .collect();
    let c = start_connector(env.path(), "c1", Some(&token), &services, &[]);
    env.relay.wait_online("c1", 2);
    (env, c)
}

/// An env whose connector serves web1 and web2 (both on the test sshd).
fn two_services(config: Option<&str>) -> (Env, Proc) {
    serving(&["web1", "web2"], config)
}

#[test]
fn one_user_holds_at_most_20_sessions_and_other_users_are_still_served() {
    // Three services, so that the cap over all of them (20) binds before
    // the one per service (8).
    const SERVICES: [&str; 3] = ["web1", "web2", "web3"];
    let (env, _c) = serving(&SERVICES, None);
    env.relay.add_user("bob", "bob's password");
    let alice = api_token(&env.relay, USER, PASSWORD);
    let bob = api_token(&env.relay, "bob", "bob's password");
    let streams_before = env.relay.metric("sallyport_tunnel_streams_opened_total");

    rt().block_on(async {
        // 110 attempts (more than sshd's MaxStartups of 100 in the harness),
        // to the three services in turn.
        let mut held = Vec::new();
        let mut refused = Vec::new();
        for service in SERVICES.iter().cycle().take(110) {
            match open(&env.relay, &alice, service).await {
                Ok(ws) => held.push(ws),
                Err(reason) => refused.push(reason),
            }
        }
        assert_eq!(held.len(), DEFAULT_CAP, "refusals: {refused:?}");
        assert_eq!(refused.len(), 110 - DEFAULT_CAP);
        let want = format!("user {USER} already has {DEFAULT_CAP} sessions open");
        assert!(refused.iter().all(|r| r.contains(&want)), "{refused:?}");

        // The upgrade itself: 429 with the reason as a JSON error.
        let (code, body) = upgrade_status(&env.relay, &alice, "web1");
        assert_eq!(code, 429, "{body}");
        let err: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
        assert!(err["error"].as_str().unwrap().contains(&want), "{body}");
        // Refused sessions opened no stream at the connector.
        assert_eq!(
            env.relay.metric("sallyport_tunnel_streams_opened_total") - streams_before,
            DEFAULT_CAP as u64
        );

        // Another user is served at once: sshd answers with its banner.
        let asked = Instant::now();
        let mut b = open(&env.relay, &bob, "web1").await.expect("bob's session");
        let banner = first_bytes(&mut b, PATIENCE).await.expect("sshd's banner");
        assert!(banner.starts_with(b"SSH-2.0-"), "{banner:?}");
        eprintln!("bob's banner after {:?}", asked.elapsed());

        // Closing one of alice's sessions frees a slot.
        let mut one = held.pop().expect("a held session");
        one.close(None).await.expect("close");
        drop(one);
        let mut again = None;
        let deadline = Instant::now() + PATIENCE;
        while again.is_none() && Instant::now() < deadline {
            match open(&env.relay, &alice, "web1").await {
                Ok(ws) => again = Some(ws),
                Err(r) => {
                    assert!(r.contains(&want), "{r}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        assert!(again.is_some(), "no slot came free after closing a session");
    });
}

#[test]
fn one_users_110_sessions_to_a_service_leave_a_stock_sshd_serving_others() {
    let mut env = Env::start();
    // OpenSSH's default MaxStartups 10:30:100: from 10 unauthenticated
    // connections on, sshd drops new ones at random ("Exceeded
    // MaxStartups" instead of its banner).
    env.sshd.restart_with_stock_max_startups();
    let _c = env.connector("c1", "web1", &[]);
    env.relay.wait_online("c1", 2);
    env.relay.add_user("bob", "bob's password");
    let alice = api_token(&env.relay, USER, PASSWORD);
    let bob = api_token(&env.relay, "bob", "bob's password");
    let is_banner = |b: &Option<Vec<u8>>| {
        b.as_deref()
            .is_some_and(|b| b.starts_with(b"SSH-2.0-OpenSSH"))
    };

    rt().block_on(async {
        // alice tries 110 sessions and holds every one sshd greets, idle
        // (never authenticating: each counts against MaxStartups).
        let streams_before = env.relay.metric("sallyport_tunnel_streams_opened_total");
        let mut held = Vec::new();
        let mut refused = Vec::new();
        let mut cut = 0;
        for _ in 0..110 {
            match open(&env.relay, &alice, "web1").await {
                Ok(mut ws) => {
                    if is_banner(&first_bytes(&mut ws, PATIENCE).await) {
                        held.push(ws);
                    } else {
                        cut += 1;
                    }
                }
                Err(reason) => refused.push(reason),
            }
        }
        let streams = env.relay.metric("sallyport_tunnel_streams_opened_total") - streams_before;
        let (code, body) = upgrade_status(&env.relay, &alice, "web1");

        // bob opens 30 sessions one after another, each only reading the banner.
        let mut bob_failed = Vec::new();
        for i in 0..30 {
            match open(&env.relay, &bob, "web1").await {
                Ok(mut ws) => {
                    let banner = first_bytes(&mut ws, PATIENCE).await;
                    if !is_banner(&banner) {
                        let got = banner.map(|b| String::from_utf8_lossy(&b).into_owned());
                        bob_failed.push(format!("#{i}: no banner but {got:?}"));
                    }
                    ws.close(None).await.ok();
                }
                Err(reason) => bob_failed.push(format!("#{i}: {reason}")),
            }
            // Like a person, bob opens the next one after the last has
            // ended: its sshd child gone, so that it no longer counts
            // against MaxStartups beside alice's held ones (on a loaded
            // machine it could still be exiting when the next arrived).
            let deadline = Instant::now() + PATIENCE;
            while env.relay.metric("sallyport_sessions_active") > held.len() as u64
                && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let throttled = env.sshd.max_startups_lines();
        eprintln!(
            "alice: {} held, {} refused, {cut} cut by sshd; bob: {} of 30 not served; \
             sshd throttling lines: {}",
            held.len(),
            refused.len(),
            bob_failed.len(),
            throttled.len()
        );

        assert!(bob_failed.is_empty(), "bob was not served: {bob_failed:?}");
        assert!(
            throttled.is_empty(),
            "sshd throttled connections:\n{}",
            throttled.join("\n")
        );
        assert_eq!(held.len(), SERVICE_CAP, "cut: {cut}, refusals: {refused:?}");
        assert_eq!(cut, 0);
        assert_eq!(refused.len(), 110 - SERVICE_CAP);
        let want = format!("user {USER} already has {SERVICE_CAP} sessions to service web1 open");
        assert!(refused.iter().all(|r| r.contains(&want)), "{refused:?}");
        assert_eq!(code, 429, "{body}");
        assert!(body.contains(&want), "{body}");
        // Refused sessions opened no stream at the connector.
        assert_eq!(streams, SERVICE_CAP as u64);
        drop(held);
    });
}

#[test]
fn the_policy_caps_a_users_sessions_per_service_and_the_config_caps_the_total() {
    let (env, _c) = two_services(Some(
        r#"
max_sessions_per_user = 3

[policy.services.web1]
max_sessions_per_user = 2
rules = [{ action = "allow", everyone = true }]

[policy.services.web2]
rules = [{ action = "allow", everyone = true }]
"#,
    ));
    let alice = api_token(&env.relay, USER, PASSWORD);
    rt().block_on(async {
        let _a = open(&env.relay, &alice, "web1").await.expect("web1 #1");
        let _b = open(&env.relay, &alice, "web1").await.expect("web1 #2");
        let (code, body) = upgrade_status(&env.relay, &alice, "web1");
        assert_eq!(code, 429, "{body}");
        assert!(
            body.contains("already has 2 sessions to service web1 open"),
            "{body}"
        );
        let _c = open(&env.relay, &alice, "web2").await.expect("web2 #1");
        let (code, body) = upgrade_status(&env.relay, &alice, "web2");
        assert_eq!(code, 429, "{body}");
        assert!(body.contains("already has 3 sessions open"), "{body}");
    });
}

/// A fresh session id for every event would give each its own budget: one
/// connection may report events of a few session ids only.
#[test]
fn a_new_session_id_for_every_event_does_not_reset_the_budget() {
    let env = Env::start();
    let _c = env.connector("c1", "web1", &[]);
    env.relay.wait_online("c1", 2);
    let token = api_token(&env.relay, USER, PASSWORD);
    let ids = sallyport_relay::limits::MAX_SESSION_IDS_PER_SOCKET;
    rt().block_on(async {
        let ws = open(&env.relay, &token, "web1").await.expect("session");
        let (mut tx, mut rx) = ws.split();
        let send = async {
            for n in 0..1000 {
                if !send_event(&mut tx, &format!("fresh-{n}"), 1, start_event("web1")).await {
                    return n;
                }
            }
            1000
        };
        let (_, ending) = tokio::join!(send, read_to_end(&mut rx, PATIENCE));
        assert!(ending.closed, "the session was not ended");
        let reason = ending.error.expect("a reason");
        assert!(
            reason.contains(&format!("events of more than {ids} sessions")),
            "{reason}"
        );
    });
    let out = env.relay.admin(
        &["audit", "list", "--type", "client", "--limit", "5000"],
        "",
    );
    let starts = stdout(&out)
        .lines()
        .filter(|l| l.contains("fresh-"))
        .count();
    assert!(
        starts <= ids,
        "{starts} sessions' events stored:\n{}",
        stdout(&out)
    );
}

#[test]
fn a_flood_of_resize_events_ends_the_session_and_a_new_socket_cannot_send_more() {
    let env = Env::start();
    let _c = env.connector("c1", "web1", &[]);
    env.relay.wait_online("c1", 2);
    let token = api_token(&env.relay, USER, PASSWORD);
    const SESSION: &str = "flood-1";
    let flood = CONTROL_EVENTS + 1000;

    rt().block_on(async {
        let ws = open(&env.relay, &token, "web1").await.expect("session");
        let (mut tx, mut rx) = ws.split();
        let send = async {
            for seq in 1..=flood {
                let resize = SessionEvent::Resize {
                    cols: 80 + (seq % 50) as u32,
                    rows: 24,
                };
                if !send_event(&mut tx, SESSION, seq, resize).await {
                    return seq;
                }
            }
            flood
        };
        let (sent, ending) = tokio::join!(send, read_to_end(&mut rx, PATIENCE));
        eprintln!("the relay ended the flood after {sent} sends");
        assert!(ending.closed, "the session was not ended");
        let reason = ending.error.expect("a reason");
        assert!(
            reason.contains(&format!(
                "reported more than {CONTROL_EVENTS} start, resize and end events"
            )),
            "{reason}"
        );

        // A new socket for the same session id starts from the same budget.
        let mut ws = open(&env.relay, &token, "web1").await.expect("session");
        send_event(
            &mut ws,
            SESSION,
            flood + 1,
            SessionEvent::Resize { cols: 1, rows: 1 },
        )
        .await;
        let ending = read_to_end(&mut ws, PATIENCE).await;
        assert!(ending.closed);
        assert!(
            ending.error.as_deref().unwrap_or("").contains("resize"),
            "{ending:?}"
        );

        // One start per session id: a second one is refused.
        let mut ws = open(&env.relay, &token, "web1").await.expect("session");
        send_event(&mut ws, "two-starts", 1, start_event("web1")).await;
        assert!(acked(&mut ws, "two-starts", 1, PATIENCE).await);
        send_event(&mut ws, "two-starts", 2, start_event("web1")).await;
        let ending = read_to_end(&mut ws, PATIENCE).await;
        assert!(ending.closed);
        // The refused event is acknowledged before the error, so the
        // client forgets it and its next socket does not meet it again.
        assert!(
            ending.acks.contains(&("two-starts".to_owned(), 2)),
            "{ending:?}"
        );
        assert!(
            ending
                .error
                .as_deref()
                .unwrap_or("")
                .contains("already reported its start"),
            "{ending:?}"
        );
    });

    // Counted with the relay stopped: the export reads the store itself
    // (through a running relay, one admin reply holds at most 1 MiB).
    let mut env = env;
    env.relay.kill();
    let stored = env.relay.client_events(SESSION);
    assert_eq!(
        stored.len() as u64,
        CONTROL_EVENTS,
        "the audit log holds the budget, no more"
    );
    assert_eq!(kinds(&env.relay.client_events("two-starts")), ["start"]);
}

#[test]
fn made_up_terminal_output_is_bounded_per_session_id_across_sockets() {
    let env = Env::start();
    let _c = env.connector("c1", "web1", &[]);
    env.relay.wait_online("c1", 2);
    let token = api_token(&env.relay, USER, PASSWORD);
    const SESSION: &str = "made-up";
    const CHUNK: usize = 12 * 1024;
    let unbacked = sallyport_relay::limits::MAX_UNBACKED_TERMINAL_BYTES_PER_SESSION;
    // Per socket this passes (the relay allows 8 MiB beyond what a socket
    // carried); two sockets' worth for one session id must not.
    let per_socket = (unbacked as usize * 3 / 4) / CHUNK;
    let output = || SessionEvent::Output {
        data: base64::engine::general_purpose::STANDARD.encode(vec![b'x'; CHUNK]),
    };
    rt().block_on(async {
        let mut ws = open(&env.relay, &token, "web1").await.expect("session");
        for seq in 1..=per_socket as u64 {
            send_event(&mut ws, SESSION, seq, output()).await;
        }
        assert!(
            acked(&mut ws, SESSION, per_socket as u64, PATIENCE).await,
            "the first socket's events were refused"
        );
        ws.close(None).await.ok();

        let ws = open(&env.relay, &token, "web1").await.expect("session");
        let (mut tx, mut rx) = ws.split();
        let send = async {
            for seq in per_socket as u64 + 1..=2 * per_socket as u64 {
                if !send_event(&mut tx, SESSION, seq, output()).await {
                    break;
                }
            }
        };
        let ((), ending) = tokio::join!(send, read_to_end(&mut rx, PATIENCE));
        assert!(ending.closed, "the second socket was not ended");
        assert!(
            ending
                .error
                .as_deref()
                .unwrap_or("")
                .contains("more terminal data than its connections carried"),
            "{ending:?}"
        );
    });
    // Counted with the relay stopped: the export reads the store itself
    // (through a running relay, one admin reply holds at most 1 MiB).
    let mut env = env;
    env.relay.kill();
    let stored: u64 = env
        .relay
        .client_events(SESSION)
        .iter()
        .map(|e| {
            let data = e["event"]["event"]["data"].as_str().unwrap_or("");
            data.len() as u64 / 4 * 3
        })
        .sum();
    eprintln!("stored {stored} bytes of made-up output for one session id");
    assert!(stored <= unbacked + 64 * 1024, "{stored}");
}

#[test]
fn signing_out_ends_that_sign_ins_sessions_and_user_sign_out_ends_them_all() {
    let env = Env::start();
    let _c = env.connector("c1", "web1", &[]);
    env.relay.wait_online("c1", 2);
    let first = api_token(&env.relay, USER, PASSWORD);
    let second = api_token(&env.relay, USER, PASSWORD);
    let me = |token: &str| {
        env.relay
            .curl(
                "/api/me",
                &["-H", &format!("Authorization: Bearer {token}")],
            )
            .0
    };

    rt().block_on(async {
        let mut a = open(&env.relay, &first, "web1").await.expect("session 1");
        let mut b = open(&env.relay, &second, "web1").await.expect("session 2");
        assert!(first_bytes(&mut a, PATIENCE).await.is_some());

        let asked = Instant::now();
        let (code, body) = env.relay.curl(
            "/api/logout",
            &[
                "-X",
                "POST",
                "-H",
                &format!("Authorization: Bearer {first}"),
            ],
        );
        assert_eq!(code, 204, "{body}");
        let ending = read_to_end(&mut a, PATIENCE).await;
        assert!(ending.closed, "the signed-out session is still open");
        let took = ending.at.expect("closed").duration_since(asked);
        eprintln!("session closed {took:?} after the sign-out was asked for");
        assert!(
            ending.error.as_deref().unwrap_or("").contains("signed out"),
            "{ending:?}"
        );
        assert_eq!(me(&first), 401);

        // The other sign-in's session is untouched: it still carries events.
        send_event(
            &mut b,
            "still-open",
            1,
            SessionEvent::Resize { cols: 80, rows: 24 },
        )
        .await;
        assert!(
            acked(&mut b, "still-open", 1, PATIENCE).await,
            "the other sign-in's session was closed"
        );
        assert_eq!(me(&second), 200);

        // The admin's view: alice's sign-ins (the harness's CLI sign-in and
        // `second`), with address and second factor, never a token.
        let out = env.relay.admin(&["user", "sessions", USER], "");
        assert!(out.status.success(), "{}", stderr(&out));
        let list = stdout(&out);
        let rows: Vec<&str> = list.lines().skip(1).collect();
        assert_eq!(rows.len(), 2, "{list}");
        assert!(rows.iter().all(|r| r.contains("127.0.0.1")), "{list}");
        assert!(!list.contains(&second) && !list.contains(&first), "{list}");
        let cli_token = {
            let text = std::fs::read_to_string(env.client.home.join("credentials.json")).unwrap();
            serde_json::from_str::<serde_json::Value>(&text).unwrap()["token"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert!(!list.contains(&cli_token), "{list}");

        let out = env.relay.admin(&["user", "sign-out", USER], "");
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stdout(&out).contains("2 sign-in(s) ended, 1 live session(s) closed"),
            "{}",
            stdout(&out)
        );
        let ending = read_to_end(&mut b, PATIENCE).await;
        assert!(ending.closed, "user sign-out left a session open");
        assert!(
            ending.error.as_deref().unwrap_or("").contains("signed out"),
            "{ending:?}"
        );
        assert_eq!(me(&second), 401);
        assert_eq!(me(&cli_token), 401);
        let out = env.relay.admin(&["user", "sessions", USER], "");
        assert_eq!(stdout(&out).lines().count(), 1, "{}", stdout(&out));
    });

    let out = env
        .relay
        .admin(&["audit", "list", "--type", "sign_out"], "");
    let audit = stdout(&out);
    assert_eq!(audit.lines().count(), 2, "{audit}");
    assert!(
        audit.contains("by_admin=false") && audit.contains("by_admin=true"),
        "{audit}"
    );
}

#[test]
fn turning_on_one_time_codes_asks_for_the_password_again() {
    let env = Env::start();
    let token = api_token(&env.relay, USER, PASSWORD);
    let setup = |body: &str| {
        env.relay.curl(
            "/api/totp/setup",
            &[
                "-X",
                "POST",
                "-H",
                &format!("Authorization: Bearer {token}"),
                "-H",
                "content-type: application/json",
                "--data",
                body,
            ],
        )
    };
    // A stolen session alone (no password) cannot set up codes.
    let (code, body) = setup("{}");
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("enter your password"), "{body}");
    let (code, body) = setup(r#"{"password":"not it"}"#);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("wrong password"), "{body}");
    let (code, body) = setup(&serde_json::json!({ "password": PASSWORD }).to_string());
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("otpauth://totp/"), "{body}");
}

#[test]
fn keystrokes_are_recorded_only_where_the_policy_says_record_input() {
    let (env, _c) = two_services(Some(
        r#"
[policy.services.web1]
rules = [{ action = "allow", everyone = true }]

[policy.services.web2]
record_input = true
rules = [{ action = "allow", everyone = true }]
"#,
    ));
    let token = api_token(&env.relay, USER, PASSWORD);
    rt().block_on(async {
        for service in ["web1", "web2"] {
            let id = format!("keys-{service}");
            let mut ws = open(&env.relay, &token, service).await.expect("session");
            send_event(&mut ws, &id, 1, start_event(service)).await;
            let typed = SessionEvent::Input {
                data: b64("sudo-password-typed\r"),
            };
            send_event(&mut ws, &id, 2, typed).await;
            let shown = SessionEvent::Output {
                data: b64("shown-on-screen\r\n"),
            };
            send_event(&mut ws, &id, 3, shown).await;
            // Acknowledged either way: the client may forget them.
            assert!(acked(&mut ws, &id, 3, PATIENCE).await, "{service}");
            ws.close(None).await.ok();
        }
    });
    assert_eq!(
        kinds(&env.relay.client_events("keys-web1")),
        ["start", "output"]
    );
    assert_eq!(
        kinds(&env.relay.client_events("keys-web2")),
        ["start", "input", "output"]
    );
    // The recording of web1 shows the screen, not the keystrokes.
    for (service, has_keys) in [("web1", false), ("web2", true)] {
        let cast = env.path().join(format!("{service}.cast"));
        let out = env.relay.admin(
            &[
                "recording",
                "export",
                &format!("keys-{service}"),
                "--out",
                cast.to_str().unwrap(),
            ],
            "",
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let text = std::fs::read_to_string(&cast).unwrap();
        assert!(text.contains("shown-on-screen"), "{text}");
        let listed = stdout(&env.relay.admin(
            &["audit", "list", "--session", &format!("keys-{service}")],
            "",
        ));
        assert_eq!(listed.contains("\"input\""), has_keys, "{listed}");
        assert_eq!(text.contains("sudo-password-typed"), has_keys, "{text}");
    }
}

/// The serial and key id of a certificate, as `ssh-keygen -L` prints them.
fn serial_and_key_id(cert: &std::path::Path) -> (u64, String) {
    let out = std::process::Command::new("ssh-keygen")
        .args(["-L", "-f"])
        .arg(cert)
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success(), "ssh-keygen -L: {}", stderr(&out));
    let text = stdout(&out);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
            .trim()
            .to_owned()
    };
    let serial = field("Serial:").parse().expect("a number");
    (serial, field("Key ID:"))
}

#[test]
fn certificates_get_unique_random_serials_named_in_the_audit_log() {
    let env = Env::start_with(SshdAuth::Certificate);
    let _c = env.connector("c1", "web1", &[]);
    env.relay.wait_online("c1", 2);
    let cert = env.client.home.join("certs/web1-cert.pub");
    let mut seen = Vec::new();
    for _ in 0..2 {
        let out = std::process::Command::new(bin("sallyport"))
            .args(["ssh-cert", "web1"])
            .env("SALLYPORT_HOME", &env.client.home)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        seen.push(serial_and_key_id(&cert));
    }
    let (one, two) = (&seen[0], &seen[1]);
    assert!(one.0 != 0 && two.0 != 0, "{seen:?}");
    assert_ne!(one.0, two.0, "two certificates with one serial");
    for (_, key_id) in &seen {
        assert!(
            key_id.contains(&format!("user={USER} service=web1 session=")),
            "{key_id}"
        );
    }
    let audit = stdout(
        &env.relay
            .admin(&["audit", "list", "--type", "cert_issued"], ""),
    );
    for (serial, _) in &seen {
        assert!(audit.contains(&format!("serial={serial}")), "{audit}");
    }
}
