//! `sallyport login` like `tsh login`: through the browser with a loopback
//! redirect, or with a password typed at a prompt that does not echo; and
//! `status`, `ls` and `logout` around it.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;

use sallyport_tests::cli_login::{login_on_a_terminal, sallyport, BrowserLogin};
use sallyport_tests::*;
use serde_json::Value;

fn credentials(client: &Client) -> Option<Value> {
    let text = std::fs::read_to_string(client.home.join("credentials.json")).ok()?;
    Some(serde_json::from_str(&text).expect("credentials JSON"))
}

/// `secs` as `date -u` writes it, as `sallyport status` should.
fn utc(secs: u64) -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%d %H:%M:%S UTC"])
        .output()
        .expect("date");
    stdout(&out)
}

/// `GET /api/me` with `token`: the status.
fn me_with(relay: &RelayProc, token: &str) -> u16 {
    relay
        .curl(
            "/api/me",
            &["-H", &format!("Authorization: Bearer {token}")],
        )
        .0
}

#[test]
fn the_browser_signs_the_cli_in_then_ssh_status_ls_and_logout_work() {
    let env = Env::start();
    let _c1 = env.connector("c1", "web1", &[]);
    env.relay.wait_online("c1", 2);
    // A second connector that has gone away: `ls` shows its service offline.
    let mut c2 = env.connector("c2", "web2", &[]);
    env.relay.wait_online("c2", 2);
    c2.signal("TERM");
    c2.wait_exit();
    wait_for("c2 to be offline", || {
        let row = env.relay.connector_row("c2");
        (!row.get(2).is_some_and(|s| s.starts_with("yes"))).then_some(())
    });

    let cli = Client::new(env.path(), "browser");
    let login = BrowserLogin::start(&cli, &env.relay);
    let url = login.url();
    assert!(
        url.starts_with(&format!("{}/cli/login?port=", env.relay.url())),
        "{url}"
    );
    let r = browser(
        env.path(),
        &env.relay,
        (USER, PASSWORD),
        "cli_login",
        &[("CLI_LOGIN_URL", &url)],
    );
    // Not signed in, the browser went to the real sign-in page, and from
    // there back to the CLI on loopback with a state and a code only.
    assert_eq!(r["signInPage"], "/", "{r}");
    assert!(
        r["next"]
            .as_str()
            .unwrap_or_default()
            .starts_with("/cli/login?"),
        "{r}"
    );
    assert_eq!(
        r["callbackHost"],
        format!("127.0.0.1:{}", login.port()),
        "{r}"
    );
    assert_eq!(r["callbackPath"], "/callback", "{r}");
    assert_eq!(
        r["callbackParams"],
        serde_json::json!(["code", "state"]),
        "{r}"
    );
    assert!(
        r["answer"]
            .as_str()
            .unwrap_or_default()
            .contains("Signed in"),
        "{r}"
    );
    let (ok, err) = login.finish();
    assert!(ok, "sallyport login: {err}");
    assert!(
        err.contains(&format!("signed in to {} as {USER}", env.relay.url())),
        "{err}"
    );

    let creds = credentials(&cli).expect("credentials written");
    let token = creds["token"].as_str().expect("token").to_owned();
    let expires = creds["expires"].as_u64().expect("expires");
    // The code in the redirect is not the token.
    assert!(
        !r.to_string().contains(&token),
        "the token went through the browser"
    );

    // ssh through `sallyport proxy` with the browser-made sign-in.
    let out = cli.ssh(&env.sshd, "web1", "echo hello via the browser sign-in", b"");
    assert!(out.status.success(), "ssh: {}", stderr(&out));
    assert_eq!(stdout(&out), "hello via the browser sign-in");

    let out = sallyport(&cli, &["status"]);
    assert!(out.status.success(), "status: {}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains(&format!("user:    {USER}")), "{text}");
    assert!(
        text.contains(&format!("relay:   {}", env.relay.url())),
        "{text}"
    );
    assert!(
        text.contains(&format!("expires: {}", utc(expires))),
        "{text}"
    );
    assert!(text.contains("checked with the relay"), "{text}");

    let out = sallyport(&cli, &["ls"]);
    assert!(out.status.success(), "ls: {}", stderr(&out));
    let text = stdout(&out);
    let row = |name: &str| -> Vec<String> {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(row("web1")[1..], ["online", "allowed"], "{text}");
    assert_eq!(row("web2")[1..], ["offline", "allowed"], "{text}");

    // logout: ended on the relay and forgotten here.
    assert_eq!(me_with(&env.relay, &token), 200);
    let out = sallyport(&cli, &["logout"]);
    assert!(out.status.success(), "logout: {}", stderr(&out));
    assert!(credentials(&cli).is_none(), "credentials kept after logout");
    assert_eq!(
        me_with(&env.relay, &token),
        401,
        "the old token still works"
    );
    let out = sallyport(&cli, &["status"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not signed in"), "{}", stderr(&out));
    // The other sign-in of the same user is untouched.
    let out = env.ssh("web1", "echo still here", b"");
    assert_eq!(stdout(&out), "still here", "{}", stderr(&out));
}

#[test]
fn status_says_so_when_the_relay_has_ended_the_sign_in() {
    let env = Env::start();
    let token = credentials(&env.client).expect("signed in")["token"]
        .as_str()
        .expect("token")
        .to_owned();
    // Signed out elsewhere (the browser's "Sign out" does the same).
    let (code, _) = env.relay.curl(
        "/api/logout",
        &[
            "-X",
            "POST",
            "-H",
            &format!("Authorization: Bearer {token}"),
        ],
    );
    assert_eq!(code, 204);
    let out = sallyport(&env.client, &["status"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("signed out: the relay has ended the sign-in"),
        "{err}"
    );

    // A sign-in past its time is reported without asking the relay.
    let mut creds = credentials(&env.client).expect("credentials");
    creds["expires"] = 1.into();
    std::fs::write(env.client.home.join("credentials.json"), creds.to_string())
        .expect("write credentials");
    let out = sallyport(&env.client, &["status"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "signed out: the sign-in of {USER} at {}",
            env.relay.url()
        )) && err.contains("expired at 1970-01-01 00:00:01 UTC"),
        "{err}"
    );
}

#[test]
fn ls_says_why_a_service_is_denied() {
    let (env, _c1) = Env::start_with_office_only_service();
    let out = sallyport(&env.client, &["ls"]);
    assert!(out.status.success(), "ls: {}", stderr(&out));
    let text = stdout(&out);
    let rows: Vec<&str> = text.lines().skip(1).collect();
    // `secret` is not alice's at all, so it is not listed.
    assert_eq!(rows.len(), 2, "{text}");
    assert!(rows[0].starts_with("office "), "{text}");
    assert!(
        rows[0].contains(
            "online   denied: your address 127.0.0.1 is not in a network allowed for service office"
        ),
        "{text}"
    );
    assert!(rows[1].starts_with("web1 "), "{text}");
    assert!(rows[1].ends_with("online   allowed"), "{text}");
}

#[test]
fn a_callback_with_the_wrong_state_is_refused_and_nothing_is_saved() {
    let env = Env::start();
    let cli = Client::new(env.path(), "victim");
    let login = BrowserLogin::start(&cli, &env.relay);
    let port = login.port();
    let get = |target: &str| -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the listener");
        write!(s, "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").expect("send");
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer
    };
    // Something else on the port (a favicon, a probe) does not end the wait.
    assert!(get("/favicon.ico").starts_with("HTTP/1.1 404"));
    // A callback that is not for this sign-in ends it, with nothing saved.
    let answer = get("/callback?state=someone-elses-state-value&code=abc");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let (ok, err) = login.finish();
    assert!(!ok, "login succeeded with the wrong state: {err}");
    assert!(err.contains("wrong state"), "{err}");
    assert!(credentials(&cli).is_none(), "credentials written");
}

#[test]
fn the_relay_asks_then_hands_a_code_only_to_loopback_and_only_once() {
    let env = Env::start();
    let token = credentials(&env.client).expect("signed in")["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let verifier = "a-verifier-only-the-cli-knows-0123456789abcdef";
    let challenge: String = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let path = format!("/cli/login?port=4321&state=0123456789abcdef-state&challenge={challenge}");
    let location = |extra: &[&str]| -> (u16, String) {
        let mut args = vec!["-D", "-"];
        args.extend(extra);
        let (code, head) = env.relay.curl(&path, &args);
        let location = head
            .lines()
            .find_map(|l| {
                l.strip_prefix("location: ")
                    .or_else(|| l.strip_prefix("Location: "))
            })
            .unwrap_or_default()
            .trim()
            .to_owned();
        (code, location)
    };
    // Not signed in: to the sign-in page, which comes back here.
    let (code, to) = location(&[]);
    assert_eq!(code, 303);
    assert!(
        to.starts_with("/?next=%2Fcli%2Flogin%3Fport%3D4321"),
        "{to}"
    );
    // Signed in (the browser's cookie): a page that asks first, its
    // Continue link bound to this browser's sign-in.
    let cookie = format!("Cookie: __Host-sallyport_session={token}");
    let (status, page) = env.relay.curl(&path, &["-H", &cookie]);
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(&format!("in as <strong id=\"user\">{USER}</strong>")),
        "{page}"
    );
    let confirm = page
        .split("href=\"")
        .find_map(|rest| rest.split('"').next().filter(|l| l.contains("confirm=")))
        .unwrap_or_else(|| panic!("no Continue link in {page}"))
        .replace("&amp;", "&");
    assert!(confirm.starts_with(&path), "{confirm}");
    // A made-up confirmation (another site's link) only gets the question again.
    let forged = format!("{path}&confirm={}", "0".repeat(64));
    let (status, page) = env.relay.curl(&forged, &["-H", &cookie]);
    assert_eq!(status, 200);
    assert!(page.contains("id=\"confirm\""), "{page}");
    let location = |extra: &[&str]| -> (u16, String) {
        let mut args = vec!["-D", "-"];
        args.extend(extra);
        let (code, head) = env.relay.curl(&confirm, &args);
        let location = head
            .lines()
            .find_map(|l| {
                l.strip_prefix("location: ")
                    .or_else(|| l.strip_prefix("Location: "))
            })
            .unwrap_or_default()
            .trim()
            .to_owned();
        (code, location)
    };
    // Another browser's sign-in cannot use this browser's Continue link.
    let (_, other) = env.relay.api_login(USER, PASSWORD, None);
    let other: Value = serde_json::from_str(&other).expect("JSON");
    let other_cookie = format!(
        "Cookie: __Host-sallyport_session={}",
        other["token"].as_str().expect("token")
    );
    let (status, to) = location(&["-H", &other_cookie]);
    assert_eq!(
        (status, to.as_str()),
        (200, ""),
        "another browser's link worked"
    );
    // Confirmed: to loopback, with the state and a code.
    let (code, to) = location(&["-H", &cookie]);
    assert_eq!(code, 303);
    let prefix = "http://127.0.0.1:4321/callback?state=0123456789abcdef-state&code=";
    assert!(to.starts_with(prefix), "{to}");
    let code_value = &to[prefix.len()..];
    assert!(
        !to.contains(&token),
        "the browser's token is in the redirect"
    );
    // A bad challenge or state is refused, not redirected.
    let (status, _) = env.relay.curl(
        "/cli/login?port=4321&state=0123456789abcdef-state&challenge=nothex",
        &["-H", &cookie],
    );
    assert_eq!(status, 400);

    let exchange = |code: &str, verifier: &str| {
        let body = serde_json::json!({ "code": code, "verifier": verifier }).to_string();
        env.relay.curl(
            "/api/cli/token",
            &[
                "-X",
                "POST",
                "-H",
                "content-type: application/json",
                "--data",
                &body,
            ],
        )
    };
    // The code without the verifier is useless, and is used up by the try.
    let (status, body) = exchange(code_value, "a-guess");
    assert_eq!(status, 401, "{body}");
    let (status, body) = exchange(code_value, verifier);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("unknown, used or expired"), "{body}");

    // A fresh code with the verifier: a sign-in of its own, once.
    let (_, to) = location(&["-H", &cookie]);
    let code_value = to[prefix.len()..].to_owned();
    let (status, body) = exchange(&code_value, verifier);
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(answer["user"], USER);
    let new_token = answer["token"].as_str().expect("token");
    assert_ne!(new_token, token);
    assert_eq!(me_with(&env.relay, new_token), 200);
    let (status, _) = exchange(&code_value, verifier);
    assert_eq!(status, 401, "a code worked twice");
}

#[test]
fn password_prompts_without_echo_and_asks_for_a_code_when_needed() {
    let env = Env::start();
    let cli = Client::new(env.path(), "terminal");
    let (ok, shown) = login_on_a_terminal(
        &cli,
        &env.relay,
        USER,
        &[(&format!("Password for {USER} at"), PASSWORD)],
    );
    assert!(ok, "login on a terminal failed:\n{shown}");
    assert!(
        !shown.contains(PASSWORD),
        "the password was echoed:\n{shown}"
    );
    assert!(
        shown.contains(&format!("signed in to {} as {USER}", env.relay.url())),
        "{shown}"
    );
    assert!(credentials(&cli).is_some());

    // With one-time codes on, the code is asked for next, also unechoed.
    let out = env.relay.admin(&["user", "totp", USER], "");
    assert!(out.status.success(), "user totp: {}", stderr(&out));
    let text = stdout(&out);
    let secret = text
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("secret="))
        .unwrap_or_else(|| panic!("no secret in {text}"))
        .to_owned();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let code = sallyport_relay::test_hooks::code_now(&secret, now).expect("code");
    let cli = Client::new(env.path(), "terminal-totp");
    let (ok, shown) = login_on_a_terminal(
        &cli,
        &env.relay,
        USER,
        &[
            (&format!("Password for {USER} at"), PASSWORD),
            ("One-time code: ", &code),
        ],
    );
    assert!(ok, "login with a code failed:\n{shown}");
    assert!(
        !shown.contains(PASSWORD),
        "the password was echoed:\n{shown}"
    );
    assert!(!shown.contains(&code), "the code was echoed:\n{shown}");
    assert!(credentials(&cli).is_some());
}
