//! Single sign-on with OpenID Connect, against a real provider
//! (`oidc-provider` from npm, see `tests/src/oidc.rs`) and headless
//! Chromium on its real login and consent pages.

use std::path::Path;

use sallyport_tests::https::RelayOptions;
use sallyport_tests::oidc::{redirect_uri, Provider, User};
use sallyport_tests::{browser, RelayProc};

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
    },
    User {
        name: "carl",
        groups: &["contractors"],
    },
    // The provider's script tampers with these users' ID tokens.
    User {
        name: "tamper-sig",
        groups: &["ops"],
    },
    User {
        name: "tamper-aud",
        groups: &["ops"],
    },
    User {
        name: "tamper-exp",
        groups: &["ops"],
    },
    // Signed with a key the provider publishes only from then on.
    User {
        name: "rotate-keys",
        groups: &["ops"],
    },
];

/// A provider with [`USERS`] and a relay that signs people in with it,
/// under [`POLICY`].
fn start(dir: &Path) -> (Provider, RelayProc) {
    let mut relay = RelayProc::prepare(dir, None, RelayOptions::default());
    let provider = Provider::start(dir, &[redirect_uri(&relay.url(), NAME)], USERS);
    let config = dir.join("relay.toml");
    std::fs::write(&config, format!("{}{POLICY}", provider.relay_config(NAME)))
        .expect("write relay.toml");
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
