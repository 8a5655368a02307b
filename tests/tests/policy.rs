//! Access policy, end to end: a real relay reading its policy from its
//! config file, a connector, sshd and stock ssh. Every denial is checked at
//! all three places the relay asks (terminal page, session WebSocket,
//! certificate), must answer 403 with the reason, and must open no stream
//! at the connector.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sallyport_tests::*;

/// Every service the connector exposes points at the same sshd; each
/// service's rules exercise one kind of condition.
const SERVICES: &[&str] = &[
    "ident", "device", "office", "risky", "hours", "mfa", "abroad",
];

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `[policy]` with a time window that is certainly closed now (it opens
/// two hours from now and lasts one hour), and a country database `geo`
/// that puts 127.0.0.0/8 in Germany.
fn policy_toml(geo: &std::path::Path) -> String {
    write_country_db(geo, std::net::Ipv4Addr::new(127, 0, 0, 0), 8, "DE");
    let minute = |offset_h: u64| {
        let m = (now() / 60 + offset_h * 60) % (24 * 60);
        format!("{:02}:{:02}", m / 60, m % 60)
    };
    format!(
        r#"
[policy]
geoip_db = "{}"
[policy.risk]
failed_sign_in = 20
new_network = 10
new_device = 0
quiet_hours_score = 0

[[policy.services.ident.rules]]
name = "no contractors"
action = "deny"
groups = ["contractors"]
[[policy.services.ident.rules]]
name = "ops"
action = "allow"
groups = ["ops"]

[[policy.services.device.rules]]
name = "managed laptops"
action = "allow"
groups = ["ops"]
device_attributes = {{ managed = "yes" }}

[[policy.services.office.rules]]
action = "allow"
groups = ["ops"]
cidr = ["10.0.0.0/8", "192.168.0.0/16"]

[[policy.services.risky.rules]]
action = "allow"
groups = ["ops"]
max_risk = 30

[[policy.services.hours.rules]]
action = "allow"
groups = ["ops"]
hours = "{}-{}"

[[policy.services.mfa.rules]]
action = "allow"
groups = ["ops"]
second_factor = true

[[policy.services.abroad.rules]]
action = "allow"
groups = ["ops"]
not_countries = ["DE"]
"#,
        geo.display(),
        minute(2),
        minute(3)
    )
}

/// A connector exposing every name in [`SERVICES`].
fn connector(env: &Env) -> Proc {
    let token = env.relay.token("c1", "10m", SERVICES);
    let services: Vec<String> = SERVICES
        .iter()
        .map(|s| format!("{s}={}", env.sshd.target()))
        .collect();
    let c = start_connector(env.path(), "c1", Some(&token), &services, &[]);
    env.relay.wait_online("c1", 2);
    c
}

/// A signed-in native client for `user`.
fn signed_in(env: &Env, user: &str, password: &str) -> Client {
    let client = Client::new(env.path(), user);
    let out = client.login(&env.relay, user, password);
    assert!(out.status.success(), "login {user}: {}", stderr(&out));
    client
}

/// The bearer token `sallyport login` stored.
fn token(client: &Client) -> String {
    let text = std::fs::read_to_string(client.home.join("credentials.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["token"].as_str().unwrap().to_owned()
}

fn unescape_html(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// What the three checkpoints answer `token` for `service`: the terminal
/// page, the session WebSocket and a certificate request.
fn checkpoints(
    relay: &RelayProc,
    token: &str,
    service: &str,
    extra: &[&str],
) -> Vec<(&'static str, u16, String)> {
    let auth = format!("Authorization: Bearer {token}");
    let page = relay.curl(
        &format!("/t/{service}"),
        &[&["-H", &auth][..], extra].concat(),
    );
    let ws = relay.curl(
        &format!("/ws/{service}"),
        &[&["-H", &auth, "-m", "3"][..], &WS_UPGRADE, extra].concat(),
    );
    let body = serde_json::json!({ "service": service, "public_key": "ssh-ed25519 AAAA" });
    let cert = relay.curl(
        "/api/ssh-cert",
        &[
            &[
                "-X",
                "POST",
                "-H",
                &auth,
                "-H",
                "content-type: application/json",
                "--data",
                &body.to_string(),
            ][..],
            extra,
        ]
        .concat(),
    );
    // JSON answers carry the reason in "error".
    let error = |body: String| match serde_json::from_str::<serde_json::Value>(&body) {
        Ok(v) => v["error"].as_str().map(str::to_owned).unwrap_or(body),
        Err(_) => body,
    };
    vec![
        ("page", page.0, unescape_html(&page.1)),
        ("websocket", ws.0, error(ws.1)),
        ("certificate", cert.0, error(cert.1)),
    ]
}

/// Every checkpoint answers 403 with `reason` in the body.
fn assert_denied(relay: &RelayProc, token: &str, service: &str, extra: &[&str], reason: &str) {
    for (stage, code, body) in checkpoints(relay, token, service, extra) {
        assert_eq!(code, 403, "{service} at the {stage}: {body}");
        assert!(
            body.contains(reason),
            "{service} at the {stage}: want {reason:?} in {body}"
        );
    }
}

/// Streams the relay opened, and sessions the connector saw.
fn streams(relay: &RelayProc, connector: &Proc) -> (u64, usize) {
    (
        relay.metric("sallyport_tunnel_streams_opened_total"),
        connector.log_text().matches("session{").count(),
    )
}

#[test]
fn denials_by_user_group_device_cidr_risk_and_time_say_why_and_open_no_stream() {
    let geo = tempfile::tempdir().unwrap();
    let env = Env::start_configured(
        SshdAuth::Key,
        Some(&policy_toml(&geo.path().join("country.mmdb"))),
    );
    let c = connector(&env);
    env.relay.add_user_in("olivia", "pw-olivia", &["ops"]);
    env.relay
        .add_user_in("carl", "pw-carl", &["ops", "contractors"]);
    env.relay.add_user_in("dave", "pw-dave", &["dev"]);
    env.relay.add_user_in("rita", "pw-rita", &["ops"]);
    let olivia = signed_in(&env, "olivia", "pw-olivia");

    // Allowed: a real SSH session through the tunnel.
    let out = olivia.ssh(&env.sshd, "ident", "echo through-policy", b"");
    assert_eq!(stdout(&out), "through-policy", "{}", stderr(&out));
    let out = olivia.ssh(&env.sshd, "risky", "echo low-risk", b"");
    assert_eq!(stdout(&out), "low-risk", "{}", stderr(&out));

    // Risk: two failed sign-ins (2 x 20) and a network rita never used (10).
    for _ in 0..2 {
        let (code, _) = env.relay.api_login("rita", "wrong", None);
        assert_eq!(code, 401);
    }
    let rita = token(&signed_in(&env, "rita", "pw-rita"));
    let carl = token(&signed_in(&env, "carl", "pw-carl"));
    let dave = token(&signed_in(&env, "dave", "pw-dave"));
    let olivia_token = token(&olivia);

    // Devices: one with the posture the rule asks for, one without.
    let certs = env.path().join("devices");
    for (name, attrs) in [
        ("laptop", &["--attr", "managed=yes"][..]),
        ("kiosk", &[][..]),
    ] {
        let out = env.relay.admin(
            &[
                &["device", "add", name, "--out"][..],
                &[certs.to_str().unwrap()],
                attrs,
            ]
            .concat(),
            "",
        );
        assert!(out.status.success(), "device add: {}", stderr(&out));
    }
    let with_device = |name: &str| {
        vec![
            "--cert".to_owned(),
            certs.join(format!("{name}.crt")).display().to_string(),
            "--key".to_owned(),
            certs.join(format!("{name}.key")).display().to_string(),
        ]
    };
    let laptop = with_device("laptop");
    let laptop: Vec<&str> = laptop.iter().map(String::as_str).collect();
    let kiosk = with_device("kiosk");
    let kiosk: Vec<&str> = kiosk.iter().map(String::as_str).collect();
    let list = env.relay.admin(&["device", "list"], "");
    assert!(stdout(&list).contains("managed=yes"), "{}", stdout(&list));

    let before = streams(&env.relay, &c);
    assert_denied(
        &env.relay,
        &dave,
        "ident",
        &[],
        "user dave may not reach service ident",
    );
    assert_denied(
        &env.relay,
        &carl,
        "ident",
        &[],
        "denied by rule \"no contractors\" (group contractors)",
    );
    assert_denied(
        &env.relay,
        &olivia_token,
        "device",
        &[],
        "service device needs a device certificate from this relay, and none was presented",
    );
    assert_denied(
        &env.relay,
        &olivia_token,
        "device",
        &kiosk,
        "needs a device with managed=yes; device kiosk is not registered with it",
    );
    assert_denied(
        &env.relay,
        &olivia_token,
        "office",
        &[],
        "your address 127.0.0.1 is not in a network allowed for service office",
    );
    assert_denied(
        &env.relay,
        &rita,
        "risky",
        &[],
        "your risk score 50 (2 failed sign-in(s) in the last hour +40, first use of this network +10) is above 30",
    );
    assert_denied(
        &env.relay,
        &olivia_token,
        "hours",
        &[],
        "service hours may be reached only every day ",
    );
    assert_denied(
        &env.relay,
        &olivia_token,
        "abroad",
        &[],
        "your location (DE) is blocked for service abroad",
    );
    assert_eq!(
        streams(&env.relay, &c),
        before,
        "a denied request must open no stream"
    );
    // A reason never lists who else a rule admits.
    let (_, _, body) = &checkpoints(&env.relay, &dave, "ident", &[])[1];
    assert!(!body.contains("ops") && !body.contains("olivia"), "{body}");

    // The managed laptop's certificate passes the device rule: the page
    // opens and the WebSocket is upgraded.
    let passes = checkpoints(&env.relay, &olivia_token, "device", &laptop);
    assert_eq!(passes[0].1, 200, "page with the laptop: {}", passes[0].2);
    assert_eq!(
        passes[1].1, 101,
        "websocket with the laptop: {}",
        passes[1].2
    );

    // A certificate the relay did not issue is no device, and no failed
    // handshake either: the browser keeps reaching the relay.
    let foreign = rcgen::generate_simple_self_signed(vec!["laptop".to_owned()]).unwrap();
    std::fs::write(certs.join("foreign.crt"), foreign.cert.pem()).unwrap();
    std::fs::write(
        certs.join("foreign.key"),
        foreign.signing_key.serialize_pem(),
    )
    .unwrap();
    let foreign = with_device("foreign");
    let foreign: Vec<&str> = foreign.iter().map(String::as_str).collect();
    let none = "service device needs a device certificate from this relay, and none was presented";
    assert_denied(&env.relay, &olivia_token, "device", &foreign, none);
    // A revoked device is no device.
    let out = env.relay.admin(&["device", "revoke", "laptop"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_denied(&env.relay, &olivia_token, "device", &laptop, none);

    // Every decision was recorded with its inputs.
    let log = env.relay.admin(&["policy", "log", "--limit", "200"], "");
    let log = stdout(&log);
    let decisions: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let rita_denied = decisions
        .iter()
        .find(|d| d["inputs"]["user"] == "rita" && d["stage"] == "websocket")
        .unwrap_or_else(|| panic!("no decision for rita in {log}"));
    assert_eq!(rita_denied["allowed"], false);
    assert_eq!(rita_denied["inputs"]["risk"]["score"], 50);
    assert_eq!(rita_denied["inputs"]["ip"], "127.0.0.1");
    let laptop_allowed = decisions
        .iter()
        .find(|d| d["inputs"]["device"]["name"] == "laptop" && d["allowed"] == true)
        .unwrap_or_else(|| panic!("no allowed laptop decision in {log}"));
    assert_eq!(
        laptop_allowed["inputs"]["device"]["attributes"]["managed"],
        "yes"
    );
}

#[test]
fn policy_test_explains_a_decision_for_given_inputs() {
    let geo = tempfile::tempdir().unwrap();
    let env = Env::start_configured(
        SshdAuth::Key,
        Some(&policy_toml(&geo.path().join("country.mmdb"))),
    );
    env.relay.add_user_in("olivia", "pw-olivia", &["ops"]);
    let test = |args: &[&str]| {
        let out = env.relay.admin(
            &[&["policy", "test", "--user", "olivia"][..], args].concat(),
            "",
        );
        assert!(out.status.success(), "policy test: {}", stderr(&out));
        stdout(&out)
    };
    let office = test(&["--service", "office", "--ip", "10.2.3.4"]);
    assert!(office.starts_with("decision: allow"), "{office}");
    assert!(
        office.contains("address 10.2.3.4 in 10.0.0.0/8"),
        "{office}"
    );
    let away = test(&["--service", "office", "--ip", "203.0.113.5"]);
    assert!(away.starts_with("decision: deny"), "{away}");
    assert!(
        away.contains("reason:   your address 203.0.113.5 is not in a network allowed"),
        "{away}"
    );
    assert!(away.contains("rule 1 allow"), "{away}");
    let risky = test(&["--service", "risky", "--ip", "10.0.0.1", "--risk", "31"]);
    assert!(risky.contains("your risk score 31"), "{risky}");
    // The country database: 127/8 is in Germany, 10/8 is nowhere.
    let de = test(&["--service", "abroad", "--ip", "127.0.0.1"]);
    assert!(
        de.contains("country=DE") && de.starts_with("decision: deny"),
        "{de}"
    );
    let nowhere = test(&["--service", "abroad", "--ip", "10.0.0.1"]);
    assert!(
        nowhere.contains("country=-") && nowhere.starts_with("decision: allow"),
        "{nowhere}"
    );
    assert!(risky.contains("your risk score 31"), "{risky}");
    // The window opens two hours from now: closed now, open in 150 minutes.
    let closed = test(&["--service", "hours", "--ip", "10.0.0.1"]);
    assert!(closed.contains("may be reached only every day"), "{closed}");
    let later = (now() + 150 * 60).to_string();
    let open = test(&["--service", "hours", "--ip", "10.0.0.1", "--at", &later]);
    assert!(open.starts_with("decision: allow"), "{open}");
    // With the relay stopped, the policy comes from --config.
    let mut relay = env.relay;
    relay.kill();
    let config = relay.config.clone().unwrap();
    let out = relay.admin(
        &[
            "policy",
            "test",
            "--user",
            "olivia",
            "--service",
            "ident",
            "--ip",
            "10.0.0.1",
            "--config",
            config.to_str().unwrap(),
        ],
        "",
    );
    assert!(
        stdout(&out).starts_with("decision: allow"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn totp_admits_the_right_code_once_and_refuses_wrong_and_replayed_codes() {
    let geo = tempfile::tempdir().unwrap();
    let env = Env::start_configured(
        SshdAuth::Key,
        Some(&policy_toml(&geo.path().join("country.mmdb"))),
    );
    let _c = connector(&env);
    env.relay.add_user_in("tom", "pw-tom", &["ops"]);
    env.relay.add_user_in("olivia", "pw-olivia", &["ops"]);

    // Enrolment shows the otpauth URI and a QR code of it.
    let out = env.relay.admin(&["user", "totp", "tom"], "");
    assert!(out.status.success(), "user totp: {}", stderr(&out));
    let text = stdout(&out);
    let uri = text
        .lines()
        .find(|l| l.starts_with("otpauth://totp/"))
        .unwrap_or_else(|| panic!("no otpauth URI in {text}"));
    assert!(uri.contains(":tom?secret="), "{uri}");
    assert!(
        text.contains('█') || text.contains('▀'),
        "no QR code in {text}"
    );
    let secret = uri
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("secret="))
        .unwrap();

    // No code, a wrong code: refused, with what to do.
    let (code, body) = env.relay.api_login("tom", "pw-tom", None);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("enter the one-time code"), "{body}");
    let valid: Vec<String> = [now() - 30, now(), now() + 30]
        .iter()
        .map(|t| sallyport_relay::test_hooks::code_now(secret, *t).unwrap())
        .collect();
    let wrong = ["000000", "111111", "222222", "333333"]
        .into_iter()
        .find(|c| !valid.iter().any(|v| v == c))
        .unwrap();
    let (code, body) = env.relay.api_login("tom", "pw-tom", Some(wrong));
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("wrong one-time code"), "{body}");

    // The right code signs in (with the native client); the same code again does not.
    let right = sallyport_relay::test_hooks::code_now(secret, now()).unwrap();
    let tom = Client::new(env.path(), "tom");
    let out = tom.login_with_code(&env.relay, "tom", "pw-tom", &right);
    assert!(out.status.success(), "login with code: {}", stderr(&out));
    let (code, body) = env.relay.api_login("tom", "pw-tom", Some(&right));
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("already used"), "{body}");

    // A service that needs a second factor: tom's session has one.
    let out = tom.ssh(&env.sshd, "mfa", "echo second-factor-ok", b"");
    assert_eq!(stdout(&out), "second-factor-ok", "{}", stderr(&out));
    // olivia signed in with a password only, and has no code set up.
    let olivia = token(&signed_in(&env, "olivia", "pw-olivia"));
    assert_denied(
        &env.relay,
        &olivia,
        "mfa",
        &[],
        "service mfa needs a second factor: ask an admin to set up a one-time code (TOTP) for you",
    );
}

#[test]
fn a_policy_edited_during_a_session_applies_to_new_requests_and_leaves_the_session_alone() {
    let allow =
        "[policy]\n[[policy.services.web1.rules]]\naction = \"allow\"\nusers = [\"alice\"]\n";
    // The same length as `allow`, so only the modification time tells them apart.
    let deny = allow.replace("alice", "bobby");
    let env = Env::start_configured(SshdAuth::Key, Some(allow));
    let _c = env.connector("c1", "web1", &[]);
    env.relay.wait_online("c1", 2);
    let token = token(&env.client);
    let config = env.relay.config.clone().unwrap();
    let page = || {
        env.relay.curl(
            "/t/web1",
            &["-H", &format!("Authorization: Bearer {token}")],
        )
    };
    let reloads = || {
        let logs = env.relay.proc.as_ref().unwrap().log_text();
        logs.matches("policy reloaded").count()
    };

    // An open session, waiting for a line.
    let mut ssh = env
        .client
        .ssh_command(&env.sshd, "web1", "echo ready; read line; echo got-$line")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(ssh.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");

    // The admin takes alice off the service.
    std::fs::write(&config, &deny).unwrap();
    let reason = "user alice may not reach service web1";
    wait_for("the edited policy to apply", || {
        let (code, body) = page();
        (code == 403 && body.contains(reason)).then_some(())
    });
    assert_denied(&env.relay, &token, "web1", &[], reason);

    // The open session carries on.
    ssh.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "got-hello");
    let status = wait_or_kill(&mut ssh, Duration::from_secs(30)).expect("ssh ended");
    assert!(status.success());

    // A file that does not parse is refused; the policy in force stays.
    std::fs::write(&config, "[policy\n").unwrap();
    wait_for("the relay to refuse the broken file", || {
        let logs = env.relay.proc.as_ref().unwrap().log_text();
        logs.contains("policy not reloaded").then_some(())
    });
    assert_denied(&env.relay, &token, "web1", &[], reason);
    // Nor may an empty file (a half-done copy) switch the policy off.
    let refusals = || {
        let logs = env.relay.proc.as_ref().unwrap().log_text();
        logs.matches("policy not reloaded").count()
    };
    let refused = refusals();
    std::fs::write(&config, "").unwrap();
    wait_for("the relay to refuse the empty file", || {
        (refusals() > refused).then_some(())
    });
    assert_denied(&env.relay, &token, "web1", &[], reason);
    let before = reloads();
    std::fs::write(&config, &deny).unwrap();
    wait_for("the mended file to load", || {
        (reloads() > before).then_some(())
    });

    // SIGHUP reloads a file the watch cannot tell has changed: same size,
    // and the old modification time put back.
    let mtime = std::fs::metadata(&config).unwrap().modified().unwrap();
    std::fs::write(&config, allow).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&config)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    env.relay.proc.as_ref().unwrap().signal("HUP");
    wait_for("SIGHUP to reload the policy", || {
        (page().0 == 200).then_some(())
    });
    let logs = env.relay.proc.as_ref().unwrap().log_text();
    assert!(logs.contains("SIGHUP"), "{logs}");
    let out = env.ssh("web1", "echo allowed-again", b"");
    assert_eq!(stdout(&out), "allowed-again", "{}", stderr(&out));
}
