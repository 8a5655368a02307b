//! Logging in from the terminal page (headless Chromium, the wasm client)
//! to real sshds configured as people run them: which prompts come, what
//! of the server's banner the page shows (the exact cells, through
//! `window.sallyport.term`), and which account a certificate logs in as.
//! The journey is `tests/browser/ssh_login.mjs`.

use sallyport_tests::*;
use serde_json::Value;

/// An environment whose sshd (passwords for [`E2E_UNIX_USER`]) has
/// `lines` first in its sshd_config, and `banner` (if any) as its
/// `Banner`; a connector `c1` serves it as `web1`.
fn with_sshd(lines: &[&str], banner: Option<&[u8]>) -> (Env, Proc) {
    let mut env = Env::start_with(SshdAuth::Password);
    let mut all: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    if let Some(raw) = banner {
        let path = env.sshd.write_file("banner", raw);
        all.push(format!("Banner {}", path.display()));
    }
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    env.sshd.restart_with_lines(&all);
    // The connector reads sshd's host keys when it starts: after the restart.
    let c = env.connector("c1", "web1", &[]);
    env.relay.wait_online("c1", 2);
    (env, c)
}

/// Logs in at the page as [`E2E_UNIX_USER`] (typed at `login as:`, where
/// the page offers the Sallyport user name), answering every password
/// prompt with its password.
fn log_in(env: &Env, vars: &[(&str, &str)]) -> Value {
    let mut all = vec![
        ("SERVICE", "web1"),
        ("SSH_PASSWORD", E2E_UNIX_PASSWORD),
        ("LOGIN_NAME", E2E_UNIX_USER),
    ];
    all.extend_from_slice(vars);
    browser(env.path(), &env.relay, (USER, PASSWORD), "ssh_login", &all)
}

fn lines(r: &Value) -> Vec<String> {
    r["lines"]
        .as_array()
        .unwrap_or_else(|| panic!("no lines in {r}"))
        .iter()
        .map(|l| l.as_str().unwrap_or_default().to_owned())
        .collect()
}

fn prompts(r: &Value) -> Vec<&str> {
    r["prompts"]
        .as_array()
        .unwrap_or_else(|| panic!("no prompts in {r}"))
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

/// The lines between `login as:` and the first password prompt: what the
/// server showed before asking.
fn shown_before_prompt(r: &Value) -> Vec<String> {
    let all = lines(r);
    let start = all
        .iter()
        .position(|l| l.starts_with("login as:"))
        .unwrap_or_else(|| panic!("no login prompt: {r}"));
    let end = all
        .iter()
        .position(|l| l.trim_end().ends_with("password:") || l.starts_with("Password:"))
        .unwrap_or_else(|| panic!("no password prompt: {r}"));
    all[start + 1..end].to_vec()
}

const PASSWORD_PROMPT: &str = "sallyport-e2e@web1's password:";

#[test]
fn without_pam_the_password_prompt_follows_keyboard_interactive_that_asks_nothing() {
    let (env, _c) = with_sshd(
        &[
            "UsePAM no",
            "KbdInteractiveAuthentication yes",
            "PasswordAuthentication yes",
        ],
        None,
    );
    let r = log_in(&env, &[]);
    assert_eq!(prompts(&r), ["login as:", PASSWORD_PROMPT], "{r}");
    assert_eq!(r["whoami"], E2E_UNIX_USER, "{r}");
    assert_eq!(r["session"]["status"], "connected", "{r}");
    assert!(
        env.sshd
            .log_text()
            .contains(&format!("Accepted password for {E2E_UNIX_USER}")),
        "{}",
        env.sshd.log_text()
    );
}

#[test]
fn pam_keyboard_interactive_asks_and_a_utf8_banner_with_bare_line_feeds_shows_line_by_line() {
    let banner = "Welcome to web1 — café ☕\nAuthorised use only.\n\tIndented.\n";
    let (env, _c) = with_sshd(&[], Some(banner.as_bytes()));
    let r = log_in(&env, &[]);
    assert_eq!(prompts(&r), ["login as:", "Password:"], "{r}");
    // No staircase: each line starts in column 0 (the tab moves to column 8).
    assert_eq!(
        shown_before_prompt(&r),
        [
            "Welcome to web1 — café ☕",
            "Authorised use only.",
            "        Indented."
        ],
        "{r}"
    );
    assert_eq!(r["whoami"], E2E_UNIX_USER, "{r}");
    assert!(env.sshd.log_text().contains(&format!(
        "Accepted keyboard-interactive/pam for {E2E_UNIX_USER}"
    )));
}

#[test]
fn keyboard_interactive_then_password_when_the_server_needs_both() {
    let (env, _c) = with_sshd(
        &["AuthenticationMethods keyboard-interactive,password"],
        None,
    );
    let r = log_in(&env, &[]);
    assert_eq!(
        prompts(&r),
        ["login as:", "Password:", PASSWORD_PROMPT],
        "{r}"
    );
    assert_eq!(r["whoami"], E2E_UNIX_USER, "{r}");
    let log = env.sshd.log_text();
    assert!(
        log.contains(&format!(
            "Partial keyboard-interactive/pam for {E2E_UNIX_USER}"
        )) && log.contains(&format!("Accepted password for {E2E_UNIX_USER}")),
        "{log}"
    );
}

#[test]
fn a_latin1_banner_with_escape_sequences_shows_harmless_and_login_goes_on() {
    let raw: &[u8] =
        b"Willkommen in M\xfcnchen\n\x1b[31mrot\x1b[0m\x07\x1b]0;owned\x07\nA\rB\r\nEnde\n";
    let (env, _c) = with_sshd(&["UsePAM no"], Some(raw));
    let r = log_in(&env, &[]);
    assert_eq!(prompts(&r), ["login as:", PASSWORD_PROMPT], "{r}");
    assert_eq!(
        shown_before_prompt(&r),
        [
            "Willkommen in M\u{fffd}nchen",
            "\\033[31mrot\\033[0m\\007\\033]0;owned\\007",
            "A\\015B",
            "Ende"
        ],
        "{r}"
    );
    // Not a cell drawn in colour; the title is the page's.
    assert_eq!(r["styled"], serde_json::json!([]), "{r}");
    assert_eq!(r["title"], "web1 · Sallyport", "{r}");
    assert_eq!(r["whoami"], E2E_UNIX_USER, "{r}");
}

#[test]
fn a_48_kib_banner_is_shown_whole() {
    let mut raw = String::new();
    let mut n = 0;
    while raw.len() + 48 <= 48 * 1024 {
        n += 1;
        raw.push_str(&format!("{n:05} the quick brown fox jumps over the dog\n"));
    }
    let (env, _c) = with_sshd(&[], Some(raw.as_bytes()));
    let r = log_in(&env, &[]);
    let shown = shown_before_prompt(&r);
    let want: Vec<&str> = raw.lines().collect();
    assert!(raw.len() > 47 * 1024, "{}", raw.len());
    assert_eq!(shown.len(), want.len(), "first: {:?}", shown.first());
    assert_eq!(shown, want);
    assert_eq!(r["whoami"], E2E_UNIX_USER, "{r}");
}

#[test]
fn a_certificate_login_offers_the_mapped_accounts_and_logs_in_as_the_one_chosen() {
    // The policy maps alice to two accounts; the first has no Unix user.
    let first = "sallyport-e2e-ops";
    let policy = format!(
        "[policy]\n[policy.services.web1]\ncertificates = true\n\
         principals = {{ {USER} = [\"{first}\", \"{E2E_UNIX_USER}\"] }}\n\
         [[policy.services.web1.rules]]\naction = \"allow\"\nusers = [\"{USER}\"]\n"
    );
    let env = Env::start_configured(SshdAuth::Certificate, Some(&policy));
    let _c1 = env.connector("c1", "web1", &[]);
    env.relay.wait_online("c1", 2);
    let r = log_in(&env, &[]);
    assert_eq!(r["offered"], first, "{r}");
    // Nothing but the account asked.
    assert_eq!(prompts(&r), ["login as:"], "{r}");
    assert!(
        lines(&r)
            .iter()
            .any(|l| l.contains(&format!("{first}, {E2E_UNIX_USER}"))),
        "the accounts were not listed: {r}"
    );
    assert_eq!(r["whoami"], E2E_UNIX_USER, "{r}");
    let log = env.sshd.log_text();
    assert!(
        log.contains(&format!("Accepted publickey for {E2E_UNIX_USER}"))
            && log.contains(&format!("ID sallyport user={USER} service=web1")),
        "sshd did not log a certificate login:\n{log}"
    );
    // The relay certified the account chosen, and no other.
    let issued = stdout(
        &env.relay
            .admin(&["audit", "list", "--type", "cert_issued"], ""),
    );
    assert_eq!(issued.lines().count(), 1, "{issued}");
    assert!(
        issued.contains(E2E_UNIX_USER) && !issued.contains(first),
        "{issued}"
    );
}

#[test]
fn keyboard_interactive_text_of_several_lines_shows_line_by_line() {
    // PAM's messages come inside the prompt, each ending in a bare line
    // feed (OpenSSH's auth-pam.c): a staircase unless made line breaks.
    let mut env = Env::start_with(SshdAuth::Password);
    let dir = env.path().join("pam");
    std::fs::create_dir_all(&dir).unwrap();
    let notice = dir.join("notice");
    std::fs::write(&notice, "Maintenance tonight.\nSave your work.").unwrap();
    let (sshd, _pam) = Sshd::start_password_with_pam(
        &dir,
        "sallyport-e2e-kbd-browser",
        &format!("auth optional pam_echo.so file={}", notice.display()),
    );
    env.sshd = sshd;
    let _c = env.connector("c1", "web1", &[]);
    env.relay.wait_online("c1", 2);
    let r = log_in(&env, &[]);
    assert_eq!(
        shown_before_prompt(&r),
        ["Maintenance tonight.", "Save your work."],
        "{r}"
    );
    assert_eq!(prompts(&r), ["login as:", "Password:"], "{r}");
    assert_eq!(r["whoami"], E2E_UNIX_USER, "{r}");
}
