//! A person in a browser: headless Chromium from Debian's packages, driven
//! by playwright-core (the journeys are `tests/browser/*.mjs`), against a
//! real relay, connector and sshd.
//!
//! The tests marked `needs the wasm client` run SSH inside the page; they
//! are written against the wasm client's contract (`start_session` in
//! `web-client/dist/sallyport_web.js`) and pass once it is built.

use sallyport_tests::*;
use serde_json::Value;

const STREAMS_OPENED: &str = "sallyport_tunnel_streams_opened_total";

/// An environment with a connector `c1` serving the sshd as `web1`, online.
fn with_web1(auth: SshdAuth) -> (Env, Proc) {
    let env = Env::start_with(auth);
    let c = env.connector("c1", "web1", &[]);
    env.relay.wait_online("c1", 2);
    (env, c)
}

fn run(env: &Env, login: (&str, &str), script: &str, vars: &[(&str, &str)]) -> Value {
    browser(env.path(), &env.relay, login, script, vars)
}

fn str_of<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer} missing in {v}"))
}

fn u64_of(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{pointer} missing in {v}"))
}

#[test]
fn sign_in_lists_services_with_their_state() {
    let (env, _c1) = with_web1(SshdAuth::Key);
    // A second connector that has gone away: its service is listed offline.
    let mut c2 = env.connector("c2", "web2", &[]);
    env.relay.wait_online("c2", 2);
    c2.signal("TERM");
    c2.wait_exit();
    wait_for("c2 to be offline", || {
        let row = env.relay.connector_row("c2");
        (!row.get(2).is_some_and(|s| s.starts_with("yes"))).then_some(())
    });

    let r = run(
        &env,
        (USER, PASSWORD),
        "signin",
        &[("EXPECT_OFFLINE", "web2")],
    );
    assert_eq!(str_of(&r, "/afterSignIn"), "/services", "{r}");
    assert_eq!(str_of(&r, "/userShown"), USER);
    let services = r["services"].as_array().expect("services");
    let web1 = services.iter().find(|s| s["name"] == "web1").expect("web1");
    assert_eq!(web1["online"], true, "{r}");
    assert_eq!(web1["state"], "online");
    assert_eq!(web1["href"], "/t/web1");
    let web2 = services.iter().find(|s| s["name"] == "web2").expect("web2");
    assert_eq!(web2["online"], false, "{r}");
    assert_eq!(web2["state"], "offline");
    assert_eq!(r["csp"], serde_json::json!([]), "CSP violations: {r}");
    assert_eq!(r["consoleErrors"], serde_json::json!([]), "{r}");
    // Signed in, `/` is the services page; signed out, neither is reachable.
    assert_eq!(str_of(&r, "/rootWhenSignedIn"), "/services");
    assert_eq!(str_of(&r, "/afterSignOut"), "/");
    assert_eq!(str_of(&r, "/servicesAfterSignOut"), "/");
}

#[test]
fn a_wrong_sallyport_password_never_reaches_the_terminal_page() {
    let (env, _c1) = with_web1(SshdAuth::Key);
    let r = run(
        &env,
        (USER, "not the password"),
        "signin_wrong",
        &[("SERVICE", "web1")],
    );
    assert_eq!(r["errorVisible"], true, "{r}");
    assert_eq!(str_of(&r, "/error"), "wrong user name or password");
    assert_eq!(str_of(&r, "/afterSignIn"), "/");
    // The terminal page's URL sends the browser back to sign in.
    assert_eq!(str_of(&r, "/afterTerminalUrl"), "/");
    assert_eq!(r["terminalShown"], false);
    let urls: Vec<&str> = r["urls"]
        .as_array()
        .expect("urls")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        urls.iter()
            .all(|u| !u.starts_with("/t/") && *u != "/services"),
        "the browser got past sign-in: {urls:?}"
    );
    // And the relay serves no terminal page without a session.
    let (code, _) = env.relay.curl("/t/web1", &[]);
    assert_eq!(code, 303);
}

#[test]
fn a_websocket_from_a_foreign_origin_is_refused() {
    let (env, _c1) = with_web1(SshdAuth::Key);
    let before = env.relay.metric(STREAMS_OPENED);
    let cert = env.relay.data_dir.join("https.pem");
    let key = env.relay.data_dir.join("https.key");
    let r = run(
        &env,
        (USER, PASSWORD),
        "origin",
        &[
            ("SERVICE", "web1"),
            ("TLS_CERT", cert.to_str().expect("path")),
            ("TLS_KEY", key.to_str().expect("path")),
        ],
    );
    // Same site (so the session cookie goes along), other origin: refused
    // before any stream is opened.
    assert_eq!(r["hasSessionCookie"], true, "{r}");
    assert_eq!(r["fromForeign"]["opened"], false, "{r}");
    assert!(
        str_of(&r, "/fromForeign/error").contains("403"),
        "not refused by the relay: {r}"
    );
    // The same socket from the relay's own page opens one stream.
    assert_eq!(r["fromRelay"]["opened"], true, "{r}");
    assert_eq!(env.relay.metric(STREAMS_OPENED), before + 1);
    let log = env
        .relay
        .proc
        .as_ref()
        .map(Proc::log_text)
        .unwrap_or_default();
    let foreign = str_of(&r, "/foreignOrigin");
    assert!(
        log.lines()
            .any(|l| l.contains("cross-origin request refused") && l.contains(foreign)),
        "the relay did not log the refusal of {foreign}"
    );
}

/// One `/assets/` file fetched with curl as bytes: (headers, body as sent).
fn fetch_asset(
    relay: &RelayProc,
    dir: &std::path::Path,
    file: &str,
    extra: &[&str],
) -> (String, Vec<u8>) {
    let (head, body) = (dir.join("head"), dir.join("body"));
    let out = std::process::Command::new("curl")
        .args(["-sk", "--http1.1", "-D"])
        .arg(&head)
        .arg("-o")
        .arg(&body)
        .args(extra)
        .arg(format!("{}/assets/{file}", relay.url()))
        .args([
            "--resolve",
            &format!("localhost:{}:127.0.0.1", relay.https_port),
        ])
        .output()
        .expect("curl");
    assert!(out.status.success(), "curl: {}", stderr(&out));
    let head = std::fs::read_to_string(head)
        .expect("headers")
        .to_ascii_lowercase();
    (head, std::fs::read(body).expect("body"))
}

#[test]
fn assets_are_served_gzipped_to_those_who_accept_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = RelayProc::start(dir.path());
    let file = "sallyport_web_bg.wasm";
    let built = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../web-client/dist")
            .join(file),
    )
    .expect("the built wasm client");

    // A browser's Accept-Encoding: the gzipped bytes, which decode to the file.
    let accept = ["-H", "Accept-Encoding: gzip, deflate, br, zstd"];
    let (head, body) = fetch_asset(&relay, dir.path(), file, &accept);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("\r\ncontent-encoding: gzip\r\n"), "{head}");
    assert!(head.contains("\r\nvary: accept-encoding\r\n"), "{head}");
    assert!(
        head.contains("\r\ncontent-type: application/wasm\r\n"),
        "{head}"
    );
    assert!(body.len() < built.len() / 2, "{} bytes gzipped", body.len());
    let gz = dir.path().join("wasm.gz");
    std::fs::write(&gz, &body).expect("write");
    let out = std::process::Command::new("gzip")
        .arg("-dc")
        .arg(&gz)
        .output()
        .expect("gzip");
    assert!(out.status.success(), "gzip -d: {}", stderr(&out));
    assert!(
        out.stdout == built,
        "the gzipped wasm is not the built file"
    );

    // Its own ETag revalidates it.
    let etag = head
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .expect("etag")
        .trim()
        .to_owned();
    let inm = format!("If-None-Match: {etag}");
    let (head, _) = fetch_asset(
        &relay,
        dir.path(),
        file,
        &[accept[0], accept[1], "-H", &inm],
    );
    assert!(head.starts_with("http/1.1 304"), "{head}");

    // No Accept-Encoding, or gzip refused: the file as built.
    for extra in [&[][..], &["-H", "Accept-Encoding: gzip;q=0, br"][..]] {
        let (head, body) = fetch_asset(&relay, dir.path(), file, extra);
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(!head.contains("content-encoding"), "{head}");
        assert!(head.contains("\r\nvary: accept-encoding\r\n"), "{head}");
        assert!(body == built, "{extra:?}: not the built file");
    }
    // The gzipped copy's ETag is not the plain file's.
    let (head, _) = fetch_asset(&relay, dir.path(), file, &["-H", &inm]);
    assert!(head.starts_with("http/1.1 200"), "{head}");
}

#[test]
fn the_terminal_page_loads_for_a_signed_in_user() {
    let (env, _c1) = with_web1(SshdAuth::Key);
    let r = run(
        &env,
        (USER, PASSWORD),
        "terminal_page",
        &[("SERVICE", "web1")],
    );
    assert_eq!(str_of(&r, "/path"), "/t/web1", "{r}");
    assert_eq!(str_of(&r, "/serviceShown"), "web1");
    assert_eq!(str_of(&r, "/title"), "web1 · Sallyport");
    // xterm fills the window below the header bar.
    let cols = u64_of(&r, "/session/cols");
    let rows = u64_of(&r, "/session/rows");
    assert!(cols >= 80 && rows >= 24, "terminal is {cols}x{rows}: {r}");
    let screen_w = r["screen"]["width"].as_f64().expect("screen width");
    let view_w = r["viewport"]["width"].as_f64().expect("viewport width");
    assert!(screen_w > view_w * 0.9, "terminal is narrow: {r}");
    // The state indicator shows where the session is.
    assert_eq!(r["statusVisible"], true);
    let state = str_of(&r, "/statusState");
    assert!(
        ["authenticating", "connected", "closed", "error"].contains(&state),
        "state {state}: {r}"
    );
    assert!(str_of(&r, "/statusText").starts_with(match state {
        "connected" => "connected",
        "authenticating" => "authenticating",
        "closed" => "closed",
        _ => "error",
    }));
    assert_eq!(r["session"]["status"], state);
    // xterm renders under the relay's Content-Security-Policy.
    assert_eq!(r["csp"], serde_json::json!([]), "CSP violations: {r}");
    // The wasm client is served as wasm (browsers compile it only then).
    let out = std::process::Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{content_type}"])
        .arg(format!("{}/assets/sallyport_web_bg.wasm", env.relay.url()))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "application/wasm");
}

/// The sshd the wasm journeys log in to takes the test account's password
/// (checked with OpenSSH, so the browser tests fail only for the browser).
#[test]
fn the_password_sshd_lets_the_e2e_user_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sshd = Sshd::start_password(dir.path());
    let askpass = dir.path().join("askpass");
    std::fs::write(&askpass, format!("#!/bin/sh\necho '{E2E_UNIX_PASSWORD}'\n")).expect("askpass");
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&askpass)
        .status()
        .expect("chmod");
    for method in ["password", "keyboard-interactive"] {
        let out = std::process::Command::new("ssh")
            .args(["-F", "/dev/null", "-p", &sshd.port.to_string()])
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
            ])
            .args(["-o", "LogLevel=ERROR", "-o", "NumberOfPasswordPrompts=1"])
            .args(["-o", &format!("PreferredAuthentications={method}")])
            .arg(format!("{E2E_UNIX_USER}@127.0.0.1"))
            .arg("whoami")
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", "none")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("ssh");
        assert!(out.status.success(), "{method}: {}", stderr(&out));
        assert_eq!(stdout(&out), E2E_UNIX_USER, "{method}");
    }
}

// ---- journeys that run SSH in the page (the wasm client)

/// Password env with the Sallyport user named like the Unix account, so the
/// login name the page prefills is the right one.
fn password_env() -> (Env, Proc) {
    let (env, c) = with_web1(SshdAuth::Password);
    env.relay.add_user(E2E_UNIX_USER, PASSWORD);
    (env, c)
}

fn ssh_vars() -> Vec<(&'static str, &'static str)> {
    vec![("SERVICE", "web1"), ("SSH_PASSWORD", E2E_UNIX_PASSWORD)]
}

#[test]
fn sign_in_open_the_terminal_and_echo_42() {
    let (env, _c1) = password_env();
    let r = run(&env, (E2E_UNIX_USER, PASSWORD), "echo", &ssh_vars());
    assert_eq!(str_of(&r, "/prefilled"), E2E_UNIX_USER, "{r}");
    assert_eq!(str_of(&r, "/answer"), "42");
    // UTF-8 from the shell is shown as characters.
    assert_eq!(str_of(&r, "/utf8"), "u8:é✓日本", "{r}");
    assert_eq!(r["session"]["status"], "connected", "{r}");
    assert!(
        env.sshd
            .log_text()
            .contains(&format!("Accepted password for {E2E_UNIX_USER}"))
            || env.sshd.log_text().contains(&format!(
                "Accepted keyboard-interactive/pam for {E2E_UNIX_USER}"
            )),
        "sshd saw no login"
    );
    eprintln!(
        "page load to shell prompt: {} ms",
        u64_of(&r, "/toPromptMs")
    );
}

#[test]
fn copy_and_paste_work_in_the_terminal() {
    let (env, _c1) = password_env();
    let r = run(&env, (E2E_UNIX_USER, PASSWORD), "clipboard", &ssh_vars());
    assert_eq!(str_of(&r, "/shown"), "copy-me-5", "{r}");
    // Ctrl+C with a selection copies it, and is not an interrupt.
    assert_eq!(str_of(&r, "/copied"), "copy-me-5", "{r}");
    assert_eq!(r["interrupted"], false, "{r}");
    // Ctrl+V pastes into the session.
    assert_eq!(str_of(&r, "/pasted"), "pasted-7", "{r}");
}

#[test]
fn resizing_the_window_reaches_stty() {
    let (env, _c1) = password_env();
    let r = run(&env, (E2E_UNIX_USER, PASSWORD), "resize", &ssh_vars());
    let size = |when: &str| {
        (
            format!(
                "{} {}",
                u64_of(&r, &format!("/{when}/rows")),
                u64_of(&r, &format!("/{when}/cols"))
            ),
            str_of(&r, &format!("/{when}/stty")).to_owned(),
        )
    };
    let (term_before, stty_before) = size("before");
    let (term_after, stty_after) = size("after");
    assert_eq!(stty_before, term_before, "{r}");
    assert_eq!(stty_after, term_after, "{r}");
    assert_ne!(stty_after, stty_before, "the size did not change: {r}");
}

#[test]
fn seq_200000_arrives_complete() {
    let (env, _c1) = password_env();
    let r = run(&env, (E2E_UNIX_USER, PASSWORD), "seq", &ssh_vars());
    assert_eq!(r["bad"], serde_json::json!([]), "lines out of order: {r}");
    assert_eq!(u64_of(&r, "/count"), 200_000, "{r}");
    assert_eq!(str_of(&r, "/last"), "200000");
    eprintln!(
        "seq 1 200000 in the browser: {:.2} s, {:.2} MB/s",
        r["seconds"].as_f64().unwrap_or_default(),
        r["mbPerSecond"].as_f64().unwrap_or_default()
    );
}

#[test]
fn a_wrong_sshd_password_shows_an_error_and_no_shell() {
    // Signed in as alice; the login name is changed at the prompt.
    let (env, _c1) = with_web1(SshdAuth::Password);
    let r = run(
        &env,
        (USER, PASSWORD),
        "ssh_denied",
        &[
            ("SERVICE", "web1"),
            ("LOGIN_NAME", E2E_UNIX_USER),
            ("SSH_PASSWORD", "not the password"),
        ],
    );
    assert_eq!(str_of(&r, "/prefilled"), USER, "{r}");
    let reason = str_of(&r, "/session/endReason");
    assert!(reason.contains("authentication failed"), "{r}");
    assert_eq!(str_of(&r, "/endShown"), reason);
    assert_eq!(r["reconnectVisible"], true);
    assert_eq!(r["shellAnswered"], false, "a shell answered: {r}");
    let statuses = r["session"]["statusHistory"].as_array().expect("history");
    assert!(!statuses.contains(&Value::from("connected")), "{r}");
    // sshd saw the edited login name with a wrong password, and let nobody in.
    let log = env.sshd.log_text();
    assert!(
        log.contains(&format!("Failed password for {E2E_UNIX_USER}"))
            || log.contains(&format!(
                "Failed keyboard-interactive/pam for {E2E_UNIX_USER}"
            )),
        "sshd saw no failed login for {E2E_UNIX_USER}:\n{log}"
    );
    assert!(!log.contains("Accepted"), "sshd let someone in:\n{log}");
}

#[test]
fn a_host_key_that_differs_from_the_connectors_report_stops_the_session() {
    let (mut env, _c1) = password_env();
    // The connector reported the old key at its start; sshd now has another.
    let reported = env.sshd.host_pub.clone();
    env.sshd.change_host_key();
    assert_ne!(env.sshd.host_pub, reported);

    let r = run(
        &env,
        (E2E_UNIX_USER, PASSWORD),
        "hostkey",
        &[("SERVICE", "web1")],
    );
    let reason = str_of(&r, "/session/endReason");
    assert!(
        reason.contains("host key") && reason.contains("not a key connector c1 reported"),
        "{r}"
    );
    assert_eq!(r["passwordPrompted"], false, "asked for a password: {r}");
    let statuses = r["session"]["statusHistory"].as_array().expect("history");
    assert!(!statuses.contains(&Value::from("connected")), "{r}");
    let log = env.sshd.log_text();
    assert!(
        !log.contains("Failed password") && !log.contains("Accepted"),
        "authentication was attempted:\n{log}"
    );
}

/// Two connectors serve web1, each from its own sshd. When someone answers
/// at c1's address with the key c2's sshd has, a session carried by c1 must
/// stop: the client accepts only the keys of the connector that carries
/// its session, never any key any connector reported.
#[test]
fn the_host_key_is_checked_against_the_connector_that_carries_the_session() {
    let (mut env, _c1) = password_env();
    let other_dir = env.path().join("sshd-c2");
    std::fs::create_dir_all(&other_dir).unwrap();
    let other = Sshd::start_password(&other_dir);
    let token = env.relay.token("c2", "10m", &["web1"]);
    let _c2 = start_connector(
        env.path(),
        "c2",
        Some(&token),
        &[format!("web1={}", other.target())],
        &[],
    );
    env.relay.wait_online("c2", 2);
    env.sshd.use_host_key_of(&other);

    // Round robin over four connections: of four sessions, two are c1's.
    let r = run(
        &env,
        (E2E_UNIX_USER, PASSWORD),
        "hostkey_carrier",
        &[("SERVICE", "web1"), ("ATTEMPTS", "4")],
    );
    let outcomes = r["outcomes"].as_array().expect("outcomes");
    let stopped: Vec<&Value> = outcomes.iter().filter(|o| !o["ended"].is_null()).collect();
    assert!(!stopped.is_empty(), "no session was stopped: {r}");
    for o in &stopped {
        let reason = o["ended"].as_str().unwrap_or_default();
        assert!(
            reason.contains("host key mismatch") && reason.contains("connector c1"),
            "{r}"
        );
        assert_eq!(o["prompted"], false, "a stopped session prompted: {r}");
    }
    // The sessions c2 carried reached its sshd's login prompt.
    assert!(outcomes.iter().any(|o| o["prompted"] == true), "{r}");
    let log = env.sshd.log_text();
    assert!(
        !log.contains("Failed password") && !log.contains("Accepted"),
        "authentication was attempted at c1's address:\n{log}"
    );
}

#[test]
fn with_certificates_on_a_browser_session_reaches_a_shell_with_no_password_typed() {
    // The policy says web1's sshd trusts the relay's CA and maps alice to
    // the Unix account the test sshd lets in.
    let policy = format!(
        "[policy]\n[policy.services.web1]\ncertificates = true\n\
         principals = {{ {USER} = [\"{E2E_UNIX_USER}\"] }}\n\
         [[policy.services.web1.rules]]\naction = \"allow\"\nusers = [\"{USER}\"]\n"
    );
    let env = Env::start_configured(SshdAuth::Certificate, Some(&policy));
    let _c1 = env.connector("c1", "web1", &[]);
    env.relay.wait_online("c1", 2);
    let r = run(&env, (USER, PASSWORD), "cert", &[("SERVICE", "web1")]);
    assert_eq!(str_of(&r, "/answer"), "42", "{r}");
    assert_eq!(r["prompted"], false, "a login prompt was shown: {r}");
    assert_eq!(r["session"]["status"], "connected", "{r}");
    let log = env.sshd.log_text();
    assert!(
        log.contains(&format!("Accepted publickey for {E2E_UNIX_USER}"))
            && log.contains(&format!("ID sallyport user={USER} service=web1")),
        "sshd did not log a certificate login:\n{log}"
    );
}

#[test]
fn a_second_factor_is_asked_for_after_the_password_and_a_denied_page_says_why() {
    let (env, _c1) = Env::start_with_office_only_service();
    let out = env.relay.admin(&["user", "totp", USER], "");
    assert!(out.status.success(), "user totp: {}", stderr(&out));
    let text = stdout(&out);
    let secret = text
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("secret="))
        .unwrap_or_else(|| panic!("no secret in {text}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let code = sallyport_relay::test_hooks::code_now(secret, now).unwrap();

    let r = run(
        &env,
        (USER, PASSWORD),
        "signin_totp",
        &[("CODE", &code), ("DENIED", "office")],
    );
    assert!(str_of(&r, "/askedFor").contains("one-time code"), "{r}");
    assert_eq!(r["codeShown"], true, "{r}");
    assert_eq!(str_of(&r, "/stayed"), "/", "{r}");
    assert_eq!(str_of(&r, "/afterCode"), "/services", "{r}");
    // The services page: web1 to open, office held back with the reason,
    // and hidden a service the policy does not give alice at all.
    let services = r["services"].as_array().expect("services");
    let names: Vec<&str> = services.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["office", "web1"], "{r}");
    assert_eq!(services[0]["state"], "not allowed", "{r}");
    assert_eq!(services[0]["href"], "", "{r}");
    assert_eq!(services[1]["href"], "/t/web1", "{r}");
    assert!(
        str_of(&r, "/heldBack").contains("not in a network allowed for service office"),
        "{r}"
    );
    assert_eq!(u64_of(&r, "/deniedStatus"), 403, "{r}");
    assert_eq!(
        str_of(&r, "/reason"),
        "your address 127.0.0.1 is not in a network allowed for service office",
        "{r}"
    );
    assert_eq!(r["terminalShown"], false, "{r}");
    assert_eq!(r["csp"], serde_json::json!([]), "CSP violations: {r}");
}

#[test]
fn a_user_turns_on_one_time_codes_from_the_account_page() {
    let (env, _c1) = with_web1(SshdAuth::Key);
    let r = run(&env, (USER, PASSWORD), "account_totp", &[]);
    assert!(str_of(&r, "/before").contains("off"), "{r}");
    assert!(
        str_of(&r, "/uri").starts_with("otpauth://totp/")
            && str_of(&r, "/uri").contains(":alice?secret="),
        "{r}"
    );
    assert_eq!(r["qrLoaded"], true, "{r}");
    assert!(str_of(&r, "/after").contains("on for your account"), "{r}");
    assert!(str_of(&r, "/askedFor").contains("one-time code"), "{r}");
    assert_eq!(str_of(&r, "/signedInAgain"), "/services", "{r}");
}

#[test]
fn a_browser_session_is_recorded_with_its_marker_and_exit_status() {
    let (env, _c1) = password_env();
    let r = run(&env, (E2E_UNIX_USER, PASSWORD), "audit_marker", &ssh_vars());
    let marker = str_of(&r, "/marker").to_owned();
    let session = str_of(&r, "/sessionId").to_owned();
    assert!(marker.starts_with("marker-"), "{r}");

    // The end is the last event the client sends; wait until it is stored.
    let events = wait_for("the session's end in the audit log", || {
        let events = env.relay.client_events(&session);
        events
            .iter()
            .any(|e| e["event"]["event"]["kind"] == "end")
            .then_some(events)
    });
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"]["event"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"start"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"end"), "{kinds:?}");
    let start = &events[0]["event"]["event"];
    assert_eq!(start["service"], "web1");
    assert_eq!(start["principal"], E2E_UNIX_USER);
    assert!(
        start["host_key"].as_str().unwrap().starts_with("SHA256:"),
        "{start}"
    );
    let end = &events.last().unwrap()["event"]["event"];
    assert_eq!(end["exit"], 3, "{end}");
    assert!(end["bytes_in"].as_u64().unwrap() > 0 && end["bytes_out"].as_u64().unwrap() > 0);
    // Keystrokes are not recorded: the policy does not set record_input.
    assert!(!kinds.contains(&"input"), "{kinds:?}");
    // Each event once, in order (the keystrokes' numbers are missing),
    // times never going back.
    let seqs: Vec<u64> = events
        .iter()
        .map(|e| e["event"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs.first(), Some(&1), "{seqs:?}");
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let times: Vec<u64> = events
        .iter()
        .map(|e| e["event"]["t_ms"].as_u64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

    // The recording shows the marker in the terminal stream.
    let cast = env.path().join("session.cast");
    let out = env.relay.admin(
        &[
            "recording",
            "export",
            &session,
            "--out",
            cast.to_str().unwrap(),
        ],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&cast).unwrap();
    let header: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(header["version"], 2, "{header}");
    assert!(header["width"].as_u64().unwrap() > 0 && header["height"].as_u64().unwrap() > 0);
    let output: String = text
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e[1] == "o")
        .map(|e| e[2].as_str().unwrap().to_owned())
        .collect();
    assert!(output.contains(&format!("{marker}\r\n")), "{output}");

    // An admin finds it on the audit page and replays it in the browser.
    env.relay.add_user_in("auditor", "pw-auditor", &["admin"]);
    let r = run(
        &env,
        ("auditor", "pw-auditor"),
        "audit_pages",
        &[("SESSION", &session), ("MARKER", &marker)],
    );
    let rows = r["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), events.len(), "one row per event: {r}");
    assert_eq!(rows[0][2], "client", "{r}");
    assert_eq!(rows[0][3], E2E_UNIX_USER, "{r}");
    assert_eq!(str_of(&r, "/link"), format!("/replay/{session}"));
    assert_eq!(r["auditCsp"], serde_json::json!([]), "CSP violations: {r}");
    assert_eq!(r["replayCsp"], serde_json::json!([]), "CSP violations: {r}");
}

#[test]
fn after_a_dropped_connection_no_event_is_lost_or_stored_twice() {
    let (env, _c1) = password_env();
    let r = run(&env, (E2E_UNIX_USER, PASSWORD), "audit_drop", &ssh_vars());
    assert!(
        u64_of(&r, "/acksDropped") > 0,
        "the test lost no acknowledgements: {r}"
    );
    let ends = |events: &[Value]| {
        events
            .iter()
            .filter(|e| e["event"]["event"]["kind"] == "end")
            .count()
    };
    // The second session ends normally; wait for its end to be stored.
    let second = wait_for("the second session's end", || {
        let ev = env.relay.client_events(str_of(&r, "/second"));
        (ends(&ev) == 1).then_some(ev)
    });
    // The first session's end was reported while its socket was gone: it
    // came on the second socket.
    let first = env.relay.client_events(str_of(&r, "/first"));
    for (name, events) in [("first", &first), ("second", &second)] {
        let seqs: Vec<u64> = events
            .iter()
            .map(|e| e["event"]["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "{name} session: every event exactly once"
        );
        assert_eq!(ends(events), 1, "{name} session's end");
    }
    let first_end = &first.last().unwrap()["event"]["event"];
    assert!(
        first_end["reason"]
            .as_str()
            .unwrap()
            .contains("connection lost"),
        "{first_end}"
    );
    let lost = str_of(&r, "/lost");
    let recorded: String = first
        .iter()
        .filter(|e| e["event"]["event"]["kind"] == "output")
        .map(|e| {
            use base64::Engine as _;
            let data = e["event"]["event"]["data"].as_str().unwrap();
            String::from_utf8_lossy(
                &base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .unwrap(),
            )
            .into_owned()
        })
        .collect();
    assert!(
        recorded.contains(lost),
        "{lost} not in the first session's output: {recorded}"
    );
}

#[test]
fn a_session_the_connector_cannot_open_shows_the_connectors_words() {
    let env = Env::start();
    // The connector is online, but its service points at a closed port.
    let closed = free_port();
    let token = env.relay.token("c1", "10m", &["dead"]);
    let _c = start_connector(
        env.path(),
        "c1",
        Some(&token),
        &[format!("dead=127.0.0.1:{closed}")],
        &[],
    );
    env.relay.wait_online("c1", 2);
    let r = run(&env, (USER, PASSWORD), "hostkey", &[("SERVICE", "dead")]);
    let reason = str_of(&r, "/session/endReason");
    assert!(
        reason.contains("connector c1 refused the session")
            && reason.contains(&format!(
                "cannot reach service \"dead\" at 127.0.0.1:{closed}"
            )),
        "the page shows the connector's reason, not a guess: {r}"
    );
    assert_eq!(r["passwordPrompted"], false, "{r}");
}
