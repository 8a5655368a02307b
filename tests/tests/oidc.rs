//! Single sign-on with OpenID Connect, against a real provider
//! (`oidc-provider` from npm, see `tests/src/oidc.rs`) and headless
//! Chromium on its real login and consent pages.

use std::path::Path;

use sallyport_tests::cli_login::{sallyport, BrowserLogin};
use sallyport_tests::https::RelayOptions;
use sallyport_tests::lifecycle::audit_events;
use sallyport_tests::oidc::{redirect_uri, Provider, User};
use sallyport_tests::{browser, start_connector, stdout, Client, RelayProc, Sshd};

/// The provider's name in the relay's config (and in its URLs).
const NAME: &str = "corp";

/// `ops` may open `web1`; `contractors` are denied it by a named rule.
const POLICY: &str = r#"
[policy]
[[policy.services.web1.rules]]
name = "no contractors"
action = "deny"
groups = ["contractors"]
[[policy.services.web1.rules]]
name = "ops"
action = "allow"
groups = ["ops"]
"#;

const USERS: &[User] = &[
    User {
        name: "olivia",
        groups: &["ops"],
        amr: &[],
    },
    User {
        name: "carl",
        groups: &["contractors"],
        amr: &[],
    },
    // The provider's script tampers with these users' ID tokens.
    User {
        name: "tamper-sig",
        groups: &["ops"],
        amr: &[],
    },
    User {
        name: "tamper-aud",
        groups: &["ops"],
        amr: &[],
    },
    User {
        name: "tamper-exp",
        groups: &["ops"],
        amr: &[],
    },
    // Signed with a key the provider publishes only from then on.
    User {
        name: "rotate-keys",
        groups: &["ops"],
        amr: &[],
    },
];

/// A provider with [`USERS`] and a relay that signs people in with it,
/// under [`POLICY`].
fn start(dir: &Path) -> (Provider, RelayProc) {
    start_relay(dir, &[(NAME, "")], "", POLICY, USERS)
}

/// A provider with `users`, and a relay whose config file has `head` (its
/// top-level keys), then one `[[oidc]]` table for that provider per
/// `(name, extra keys)` of `tables`, then `policy`.
fn start_relay(
    dir: &Path,
    tables: &[(&str, &str)],
    head: &str,
    policy: &str,
    users: &[User],
) -> (Provider, RelayProc) {
    let mut relay = RelayProc::prepare(dir, None, RelayOptions::default());
    let uris: Vec<String> = tables
        .iter()
        .map(|(name, _)| redirect_uri(&relay.url(), name))
        .collect();
    let provider = Provider::start(dir, &uris, users);
    let mut text = head.to_owned();
    for (name, extra) in tables {
        text.push_str(&provider.relay_config(name));
        text.push_str(extra);
    }
    text.push_str(policy);
    let config = dir.join("relay.toml");
    std::fs::write(&config, text).expect("write relay.toml");
    relay.config = Some(config);
    relay.launch();
    (provider, relay)
}

fn sign_ins_ok(relay: &RelayProc) -> u64 {
    relay.metric("sallyport_sign_ins_total{result=\"ok\"}")
}

/// Signs in through the provider's pages as `user`; returns what the
/// journey saw.
fn sso_journey(dir: &Path, relay: &RelayProc, user: &str) -> serde_json::Value {
    browser(
        dir,
        relay,
        (user, "any password: the test provider takes any"),
        "sso_signin",
        &[("SSO_PROVIDER", NAME), ("SSO_SERVICE", "web1")],
    )
}

#[test]
fn sso_button_signs_in_through_the_provider_and_its_groups_meet_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (provider, relay) = start(dir.path());

    let (code, body) = relay.curl("/api/sso", &[]);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(&format!("\"name\":\"{NAME}\"")), "{body}");

    // A member of `ops`: signed in as herself, and the terminal is hers.
    let r = sso_journey(dir.path(), &relay, "olivia");
    assert_eq!(r["buttonText"], format!("Sign in with {NAME}"), "{r}");
    assert_eq!(r["providerOrigin"], provider.issuer, "{r}");
    assert_eq!(r["afterSignIn"], "/services", "{r}");
    assert_eq!(r["userShown"], "olivia", "{r}");
    assert_eq!(r["terminalStatus"], 200, "{r}");

    // A contractor: signed in too, but policy denies web1 by its group, and says so.
    let r = sso_journey(dir.path(), &relay, "carl");
    assert_eq!(r["afterSignIn"], "/services", "{r}");
    assert_eq!(r["userShown"], "carl", "{r}");
    assert_eq!(r["terminalStatus"], 403, "{r}");
    let text = r["terminalText"].as_str().unwrap_or_default();
    assert!(
        text.contains("denied by rule \"no contractors\" (group contractors)"),
        "{text}"
    );

    // Both sign-ins were timed, as single sign-on.
    assert_eq!(
        relay.metric("sallyport_sign_in_seconds_count{method=\"sso\",result=\"ok\"}"),
        2
    );

    // Each sign-in is an audit event naming the provider, the subject and the groups.
    let out = relay.admin(&["audit", "list", "--type", "sso_sign_in"], "");
    let log = String::from_utf8_lossy(&out.stdout);
    let olivia = log
        .lines()
        .find(|l| l.contains("olivia"))
        .unwrap_or_else(|| panic!("no sign-in of olivia in:\n{log}"));
    assert!(olivia.contains(NAME), "{olivia}");
    assert!(olivia.contains("ops"), "{olivia}");
}

#[test]
fn replayed_unknown_or_foreign_state_is_refused_without_a_sign_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_provider, relay) = start(dir.path());

    // A state the relay never issued.
    let before = sign_ins_ok(&relay);
    let (code, body) = relay.curl(
        &format!("/auth/oidc/{NAME}/callback?code=made-up&state=made-up"),
        &[],
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("this sign-in is unknown, was already used or has expired"),
        "{body}"
    );

    // A real state, brought back by a browser that did not start it (no
    // binding cookie): what a login cross-site request forgery looks like.
    let (code, body) = relay.curl(
        &format!("/auth/oidc/{NAME}"),
        &["-o", "/dev/null", "-D", "-"],
    );
    assert_eq!(code, 303, "{body}");
    let location = body
        .lines()
        .find_map(|l| {
            l.strip_prefix("location: ")
                .or(l.strip_prefix("Location: "))
        })
        .expect("a Location header")
        .trim()
        .to_owned();
    let state = location
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("state="))
        .expect("a state in the provider's URL");
    let (code, body) = relay.curl(
        &format!("/auth/oidc/{NAME}/callback?code=made-up&state={state}"),
        &[],
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("started in another browser"), "{body}");
    // And it was used up by that try.
    let (code, body) = relay.curl(
        &format!("/auth/oidc/{NAME}/callback?code=made-up&state={state}"),
        &["-H", "Cookie: sallyport_oidc=anything"],
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("already used"), "{body}");

    // A real sign-in, then its callback URL again: refused, no new sign-in.
    let r = sso_journey(dir.path(), &relay, "olivia");
    assert_eq!(r["afterSignIn"], "/services", "{r}");
    let callback = r["urls"]
        .as_array()
        .and_then(|urls| {
            urls.iter()
                .filter_map(|u| u.as_str())
                .find(|u| u.contains("/callback?"))
        })
        .unwrap_or_else(|| panic!("the journey passed no callback: {r}"))
        .to_owned();
    let signed_in = sign_ins_ok(&relay);
    assert_eq!(signed_in, before + 1);
    let path = &callback[relay.url().len()..];
    let (code, body) = relay.curl(path, &[]);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("already used"), "{body}");
    assert_eq!(sign_ins_ok(&relay), signed_in, "a replay signed someone in");
}

#[test]
fn a_tampered_id_token_is_refused_with_a_reason_and_no_sign_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_provider, relay) = start(dir.path());
    // A corrupted signature; then tokens re-signed with the provider's key,
    // so only their claims are wrong: another audience, expired.
    for (user, why) in [
        ("tamper-sig", "Signature verification failed"),
        ("tamper-aud", "Invalid audiences"),
        ("tamper-exp", "Expired"),
    ] {
        let before = sign_ins_ok(&relay);
        let r = sso_journey(dir.path(), &relay, user);
        assert_eq!(r["callbackStatus"], 403, "{user}: {r}");
        let refusal = r["refusal"].as_str().unwrap_or_default();
        assert!(
            refusal.contains("the provider's ID token is not valid") && refusal.contains(why),
            "{user}: {refusal}"
        );
        assert_eq!(sign_ins_ok(&relay), before, "{user} was signed in");
        // The browser stays on the refusal, and the refusal is on the record.
        assert_eq!(
            r["afterSignIn"],
            format!("/auth/oidc/{NAME}/callback"),
            "{user}: {r}"
        );
        let out = relay.admin(&["audit", "list", "--type", "sso_sign_in"], "");
        let log = String::from_utf8_lossy(&out.stdout);
        assert!(
            log.lines()
                .any(|l| l.contains("ok=false") && l.contains(why)),
            "{user}: no refused sign-in in\n{log}"
        );
    }
}

#[test]
fn a_token_signed_with_a_rotated_key_is_accepted_after_the_keys_are_fetched_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_provider, relay) = start(dir.path());
    // The relay learns the provider's keys with a first sign-in.
    let r = sso_journey(dir.path(), &relay, "olivia");
    assert_eq!(r["afterSignIn"], "/services", "{r}");
    // Then the provider signs with a key it had not published before.
    let r = sso_journey(dir.path(), &relay, "rotate-keys");
    assert_eq!(r["callbackStatus"], 200, "{r}");
    assert_eq!(r["afterSignIn"], "/services", "{r}");
    assert_eq!(r["userShown"], "rotate-keys", "{r}");
}

#[test]
fn sallyport_login_goes_through_the_provider_then_ssh_works_and_status_names_the_user() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_provider, relay) = start(dir.path());
    let sshd = Sshd::start(dir.path());
    let token = relay.token("c1", "10m", &["web1"]);
    let _connector = start_connector(
        dir.path(),
        "c1",
        Some(&token),
        &[format!("web1={}", sshd.target())],
        &[],
    );
    relay.wait_online("c1", 2);

    let cli = Client::new(dir.path(), "olivia");
    let login = BrowserLogin::start(&cli, &relay);
    let r = browser(
        dir.path(),
        &relay,
        ("olivia", "any password: the test provider takes any"),
        "cli_sso_login",
        &[("CLI_LOGIN_URL", &login.url()), ("SSO_PROVIDER", NAME)],
    );
    // The sign-in page's button carried the CLI's sign-in through the provider.
    assert_eq!(r["signInPage"], "/", "{r}");
    let href = r["buttonHref"].as_str().unwrap_or_default();
    assert!(
        href.starts_with(&format!("/auth/oidc/{NAME}?next=%2Fcli%2Flogin%3F")),
        "{r}"
    );
    assert_eq!(r["userAsked"], "olivia", "{r}");
    assert_eq!(r["callbackPath"], "/callback", "{r}");
    let (ok, err) = login.finish();
    assert!(ok, "sallyport login: {err}");
    assert!(err.contains("as olivia"), "{err}");

    // ssh through `sallyport proxy`, as olivia, whose group the provider gave.
    let out = cli.ssh(&sshd, "web1", "echo hello from sso", b"");
    assert!(
        out.status.success(),
        "ssh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout(&out), "hello from sso");

    let out = sallyport(&cli, &["status"]);
    assert!(out.status.success(), "status: {out:?}");
    let text = stdout(&out);
    assert!(text.contains("user:    olivia"), "{text}");
    assert!(text.contains("expires:"), "{text}");
}

/// `web2` needs a second factor; for single sign-on users that is the
/// provider's (`amr`).
const MFA_POLICY: &str = r#"
[policy]
[[policy.services.web1.rules]]
action = "allow"
groups = ["ops"]
[[policy.services.web2.rules]]
name = "ops with mfa"
action = "allow"
groups = ["ops"]
second_factor = true
"#;

#[test]
fn two_providers_with_password_sign_in_off_an_allow_list_and_the_providers_second_factor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let users = &[
        User {
            name: "olivia",
            groups: &["ops"],
            amr: &[],
        },
        User {
            name: "mia",
            groups: &["ops"],
            amr: &["pwd", "mfa"],
        },
        User {
            name: "carl",
            groups: &["contractors"],
            amr: &[],
        },
    ];
    let (_provider, relay) = start_relay(
        dir.path(),
        &[
            (NAME, ""),
            (
                "partners",
                "label = \"Partner sign-in\"\nallowed_groups = [\"ops\"]\n",
            ),
        ],
        "password_sign_in = false\n",
        MFA_POLICY,
        users,
    );

    // Both providers are offered; passwords are not.
    let (code, body) = relay.curl("/api/sso", &[]);
    assert_eq!(code, 200, "{body}");
    let options: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(options["password"], false, "{body}");
    assert_eq!(options["providers"][1]["name"], "partners", "{body}");
    assert_eq!(
        options["providers"][1]["label"], "Partner sign-in",
        "{body}"
    );
    relay.add_user("breakglass", "a local password");
    let (code, body) = relay.curl(
        "/api/login",
        &[
            "-H",
            "Content-Type: application/json",
            "--data",
            r#"{"user":"breakglass","password":"a local password"}"#,
        ],
    );
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("password sign-in is turned off"), "{body}");

    // The provider says mia used a second factor: web2 is hers.
    let journey = |user: &str, provider: &str, service: &str| {
        browser(
            dir.path(),
            &relay,
            (user, "any password: the test provider takes any"),
            "sso_signin",
            &[("SSO_PROVIDER", provider), ("SSO_SERVICE", service)],
        )
    };
    let r = journey("mia", "partners", "web2");
    assert_eq!(r["buttons"], 2, "{r}");
    assert_eq!(r["passwordForm"], false, "{r}");
    assert_eq!(r["userShown"], "mia", "{r}");
    assert_eq!(r["terminalStatus"], 200, "{r}");
    let mia = audit_events(&relay, "sso_sign_in")
        .into_iter()
        .find(|r| r["event"]["user"] == "mia")
        .expect("mia's sso_sign_in");
    assert_eq!(mia["event"]["provider"], "partners", "{mia}");
    assert_eq!(mia["event"]["subject"], "mia", "{mia}");
    assert_eq!(mia["event"]["groups"], serde_json::json!(["ops"]), "{mia}");
    assert_eq!(mia["event"]["second_factor"], true, "{mia}");
    assert_eq!(mia["code"], 1003, "{mia}");

    // Olivia's provider did not: web1 yes, web2 no, and the page says what to do.
    let r = journey("olivia", NAME, "web2");
    assert_eq!(r["userShown"], "olivia", "{r}");
    assert_eq!(r["terminalStatus"], 403, "{r}");
    let text = r["terminalText"].as_str().unwrap_or_default();
    assert!(
        text.contains(&format!(
            "sign in again through {NAME} with multi-factor authentication"
        )),
        "{text}"
    );

    // SSO users are users like the others: listed, with their provider;
    // no password can be set for them; locked, the provider cannot sign
    // them in.
    let list = stdout(&relay.admin(&["user", "list"], ""));
    let row = list
        .lines()
        .find(|l| l.starts_with("mia "))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(row.contains("sso:partners"), "{list}");
    let out = relay.admin(
        &["user", "passwd", "mia", "--password-stdin"],
        "a long password\n",
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("mia signs in through partners"),
        "{out:?}"
    );
    let out = relay.admin(&["user", "lock", "mia"], "");
    assert!(out.status.success(), "{out:?}");
    let r = journey("mia", "partners", "web2");
    assert_eq!(r["callbackStatus"], 403, "{r}");
    let refusal = r["refusal"].as_str().unwrap_or_default();
    assert!(refusal.contains("this account is locked"), "{refusal}");

    // The partners' allow-list admits ops only.
    let r = journey("carl", "partners", "web1");
    assert_eq!(r["callbackStatus"], 403, "{r}");
    let refusal = r["refusal"].as_str().unwrap_or_default();
    assert!(
        refusal.contains("carl is in none of the groups allowed to sign in with partners"),
        "{refusal}"
    );
}
