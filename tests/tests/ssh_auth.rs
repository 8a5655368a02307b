//! Logging in with the browser's SSH client core (built natively) against
//! real sshds configured as people run them, one setting changed at a
//! time: which methods it tries and in what order, what it shows of the
//! server's banner and questions, and which account a certificate logs in
//! as.

use std::process::Command;

use sallyport_client::ssh::{self, server_text, Ended, Options};
use sallyport_tests::screen::{self, Screen, Session};
use sallyport_tests::*;

/// A session against `sshd` with the tests' options changed by `options`.
async fn start(sshd: &Sshd, screen: Screen, options: impl FnOnce(&mut Options)) -> Session {
    let mut opts = screen::options(vec![sshd.host_pub.clone()]);
    options(&mut opts);
    Session::start(sshd, screen, opts).await
}

/// At a shell: runs `id -un; echo $((6*7))`, checks the account and the
/// answer, exits.
async fn shell_as(s: Session, user: &str, from: usize) {
    s.send("id -un; echo $((6*7))\r").await;
    s.screen.wait_for(&format!("{user}\r\n42\r\n"), from).await;
    s.send("exit\r").await;
    assert_eq!(s.task.await.unwrap(), Ended::Exit(0));
}

/// A user CA made with ssh-keygen (its private key's path) and an sshd
/// that trusts it for the e2e account.
fn sshd_trusting_a_new_ca(dir: &std::path::Path) -> (std::path::PathBuf, Sshd) {
    let ca = dir.join("user_ca");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&ca)
        .output()
        .unwrap();
    assert!(out.status.success());
    let ca_pub = std::fs::read_to_string(ca.with_extension("pub")).unwrap();
    let sshd = Sshd::start_trusting_ca(dir, &ca_pub);
    (ca, sshd)
}

/// PAM (service `pam_name`, pam_echo) shows the bytes `notice` before its
/// password question: the screen must read exactly `login as:`, then
/// `shown`, then `Password: `; then the login goes on to a shell.
async fn pam_notice_then_login(pam_name: &str, notice: &[u8], shown: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notice");
    std::fs::write(&file, notice).unwrap();
    let (sshd, _pam) = Sshd::start_password_with_pam(
        dir.path(),
        pam_name,
        &format!("auth optional pam_echo.so file={}", file.display()),
    );
    let s = start(&sshd, Screen::default(), |_| {}).await;
    let at = s.screen.wait_for("login as: sallyport-e2e", 0).await;
    s.send("\r").await;
    let at = s.screen.wait_for("Password: ", at).await;
    assert_eq!(
        s.screen.text(),
        format!("login as: {E2E_UNIX_USER}\r\n{shown}Password: ")
    );
    s.send(&format!("{E2E_UNIX_PASSWORD}\r")).await;
    shell_as(s, E2E_UNIX_USER, at).await;
}

const PASSWORD_PROMPT: &str = "sallyport-e2e@web1's password: ";

#[tokio::test]
async fn without_pam_keyboard_interactive_asks_nothing_and_the_password_prompt_follows() {
    // sshd offers keyboard-interactive but, without PAM, has nothing to ask.
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start_password_with(
        dir.path(),
        &[
            "UsePAM no",
            "KbdInteractiveAuthentication yes",
            "PasswordAuthentication yes",
        ],
    );
    let s = start(&sshd, Screen::default(), |_| {}).await;
    let at = s.screen.wait_for("login as: sallyport-e2e", 0).await;
    s.send("\r").await;
    let at = s.screen.wait_for(PASSWORD_PROMPT, at).await;
    // Straight to the password: no retries of a method that asks nothing.
    assert_eq!(
        s.screen.text(),
        format!("login as: {E2E_UNIX_USER}\r\n{PASSWORD_PROMPT}")
    );
    s.send(&format!("{E2E_UNIX_PASSWORD}\r")).await;
    shell_as(s, E2E_UNIX_USER, at).await;
    let log = sshd.log_text();
    assert!(
        log.contains(&format!("Accepted password for {E2E_UNIX_USER}")),
        "{log}"
    );
}

#[tokio::test]
async fn pam_keyboard_interactive_shows_a_utf8_banner_then_asks_for_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let mut sshd = Sshd::start_password(dir.path());
    let banner = sshd.write_file(
        "banner",
        "Welcome to web1 — café ☕\nAuthorised use only.\n".as_bytes(),
    );
    sshd.restart_with_lines(&[&format!("Banner {}", banner.display())]);
    let s = start(&sshd, Screen::default(), |_| {}).await;
    let at = s.screen.wait_for("login as: sallyport-e2e", 0).await;
    s.send("\r").await;
    let at = s.screen.wait_for("Password: ", at).await;
    // Exactly: the banner with line breaks a terminal renders, then PAM's prompt.
    assert_eq!(
        s.screen.text(),
        format!(
            "login as: {E2E_UNIX_USER}\r\n\
             Welcome to web1 — café ☕\r\nAuthorised use only.\r\nPassword: "
        )
    );
    s.send(&format!("{E2E_UNIX_PASSWORD}\r")).await;
    shell_as(s, E2E_UNIX_USER, at).await;
    let log = sshd.log_text();
    assert!(
        log.contains(&format!(
            "Accepted keyboard-interactive/pam for {E2E_UNIX_USER}"
        )),
        "{log}"
    );
}

#[tokio::test]
async fn keyboard_interactive_then_password_both_asked_when_the_server_needs_both() {
    // Two rounds: PAM's keyboard-interactive gives a partial success, then
    // sshd wants the password as well (RFC 4252 §5.1).
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start_password_with(
        dir.path(),
        &["AuthenticationMethods keyboard-interactive,password"],
    );
    let s = start(&sshd, Screen::default(), |_| {}).await;
    let at = s.screen.wait_for("login as: sallyport-e2e", 0).await;
    s.send("\r").await;
    let at = s.screen.wait_for("Password: ", at).await;
    s.send(&format!("{E2E_UNIX_PASSWORD}\r")).await;
    let at = s.screen.wait_for(PASSWORD_PROMPT, at).await;
    s.send(&format!("{E2E_UNIX_PASSWORD}\r")).await;
    shell_as(s, E2E_UNIX_USER, at).await;
    let text = sshd.log_text();
    assert!(
        text.contains(&format!(
            "Partial keyboard-interactive/pam for {E2E_UNIX_USER}"
        )),
        "sshd logged no partial success:\n{text}"
    );
    assert!(
        text.contains(&format!("Accepted password for {E2E_UNIX_USER}")),
        "{text}"
    );
}

/// A banner in Latin-1 with an escape sequence, a bell, a bare CR and
/// bare LFs: what sshd sends is shown sanitised, byte for byte, and the
/// login goes on.
#[tokio::test]
async fn a_latin1_banner_with_control_characters_is_shown_harmless_and_login_goes_on() {
    let raw: &[u8] = b"Willkommen in M\xfcnchen\n\x1b[31mrot\x1b[0m\x07\nA\rB\r\nEnde\n";
    let dir = tempfile::tempdir().unwrap();
    let mut sshd = Sshd::start_password_with(dir.path(), &["UsePAM no"]);
    let banner = sshd.write_file("banner", raw);
    sshd.restart_with_lines(&[&format!("Banner {}", banner.display())]);
    let s = start(&sshd, Screen::default(), |_| {}).await;
    let at = s.screen.wait_for("login as: sallyport-e2e", 0).await;
    s.send("\r").await;
    let at = s.screen.wait_for(PASSWORD_PROMPT, at).await;
    let shown = "Willkommen in M\u{fffd}nchen\r\n\\033[31mrot\\033[0m\\007\r\nA\\015B\r\nEnde\r\n";
    assert_eq!(server_text::for_terminal(raw), shown);
    assert_eq!(
        s.screen.text(),
        format!("login as: {E2E_UNIX_USER}\r\n{shown}{PASSWORD_PROMPT}")
    );
    assert!(
        !s.screen.bytes().contains(&0x1b),
        "an ESC reached the terminal"
    );
    s.send(&format!("{E2E_UNIX_PASSWORD}\r")).await;
    shell_as(s, E2E_UNIX_USER, at).await;
}

#[tokio::test]
async fn a_48_kib_banner_is_shown_whole() {
    let mut raw = String::new();
    let mut n = 0;
    while raw.len() < 48 * 1024 {
        n += 1;
        raw.push_str(&format!(
            "{n:05} the quick brown fox jumps over the lazy dog\n"
        ));
    }
    raw.truncate(48 * 1024 - 1);
    raw.push('\n');
    let dir = tempfile::tempdir().unwrap();
    let mut sshd = Sshd::start_password(dir.path());
    let banner = sshd.write_file("banner", raw.as_bytes());
    sshd.restart_with_lines(&[&format!("Banner {}", banner.display())]);
    let s = start(&sshd, Screen::default(), |_| {}).await;
    let at = s.screen.wait_for("login as: sallyport-e2e", 0).await;
    s.send("\r").await;
    let at = s.screen.wait_for("Password: ", at).await;
    let shown = raw.replace('\n', "\r\n");
    assert_eq!(
        s.screen.text(),
        format!("login as: {E2E_UNIX_USER}\r\n{shown}Password: ")
    );
    s.send(&format!("{E2E_UNIX_PASSWORD}\r")).await;
    shell_as(s, E2E_UNIX_USER, at).await;
}

#[tokio::test]
async fn three_wrong_answers_per_method_then_the_next_method_then_permission_denied() {
    // PAM: keyboard-interactive and password both check the Unix password.
    // As OpenSSH: three tries of each; sshd's MaxAuthTries (6) ends it.
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start_password(dir.path());
    let s = start(&sshd, Screen::default(), |_| {}).await;
    let mut at = s.screen.wait_for("login as: ", 0).await;
    s.send("\r").await;
    for prompt in ["Password: ", PASSWORD_PROMPT] {
        for _ in 0..ssh::MAX_AUTH_ATTEMPTS {
            at = s.screen.wait_for(prompt, at).await;
            s.send("not the password\r").await;
        }
    }
    assert_eq!(s.task.await.unwrap(), Ended::AuthFailed);
    let text = s.screen.text();
    assert_eq!(
        text.matches("Password: ").count(),
        ssh::MAX_AUTH_ATTEMPTS,
        "{text}"
    );
    assert_eq!(
        text.matches(PASSWORD_PROMPT).count(),
        ssh::MAX_AUTH_ATTEMPTS,
        "{text}"
    );
    assert!(text.contains("Permission denied"), "{text}");
    // sshd's own words when it hangs up (its MaxAuthTries), as OpenSSH shows them.
    assert!(
        text.contains("The server disconnected: Too many authentication failures"),
        "{text}"
    );
}

#[tokio::test]
async fn a_certificate_login_offers_every_mapped_account_and_logs_in_as_the_one_chosen() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, sshd) = sshd_trusting_a_new_ca(dir.path());
    // The first account has no Unix user: the person picks the second.
    let first = "sallyport-e2e-ops";
    let prefetched = sshd_variants::sign(&ca, first);
    let screen = Screen::with_ca(ca.clone());
    let s = start(&sshd, screen, |o| {
        o.user = first.into();
        o.principals = vec![first.into(), E2E_UNIX_USER.into()];
        o.certificate = Some(prefetched);
    })
    .await;
    let at = s.screen.wait_for(&format!("login as: {first}"), 0).await;
    assert!(
        s.screen
            .text()
            .contains(&format!("{first}, {E2E_UNIX_USER}")),
        "the accounts were not offered: {}",
        s.screen.text()
    );
    // Ctrl-U clears the offered name.
    s.send(&format!("\u{15}{E2E_UNIX_USER}\r")).await;
    let at = s.screen.wait_for("\r\n", at).await;
    let screen = s.screen.clone();
    shell_as(s, E2E_UNIX_USER, at).await;
    // A certificate was asked for the account chosen, and nothing typed.
    assert_eq!(screen.certified(), [E2E_UNIX_USER]);
    assert!(!screen.text().contains("password: "), "{}", screen.text());
    let log = sshd.log_text();
    assert!(
        log.contains(&format!("Accepted publickey for {E2E_UNIX_USER}"))
            && log.contains("ID ssh_auth test"),
        "sshd did not log a certificate login:\n{log}"
    );
}

#[tokio::test]
async fn keyboard_interactive_text_of_several_lines_shows_line_by_line() {
    // PAM's messages before a prompt reach the client inside the prompt,
    // each ending in a bare line feed (OpenSSH's auth-pam.c): a staircase
    // unless each becomes a line break.
    pam_notice_then_login(
        "sallyport-e2e-kbd-native",
        b"Maintenance tonight.\nSave your work.",
        "Maintenance tonight.\r\nSave your work.\r\n",
    )
    .await;
}

#[tokio::test]
async fn an_account_the_certificate_does_not_cover_logs_in_with_a_password() {
    // As OpenSSH's user@: any name may be typed; one the relay does not
    // map the person to gets no certificate and goes to the password.
    let dir = tempfile::tempdir().unwrap();
    let (ca, mut sshd) = sshd_trusting_a_new_ca(dir.path());
    sshd.restart_with_lines(&["UsePAM yes", "PasswordAuthentication yes"]);
    let screen = Screen::with_ca(ca.clone());
    let mapped = ["sallyport-e2e-ops", "sallyport-e2e-dev"];
    let s = start(&sshd, screen, |o| {
        o.user = mapped[0].into();
        o.principals = mapped.iter().map(|p| p.to_string()).collect();
    })
    .await;
    let at = s
        .screen
        .wait_for(&format!("login as: {}", mapped[0]), 0)
        .await;
    s.send(&format!("\u{15}{E2E_UNIX_USER}\r")).await;
    let at = s.screen.wait_for(PASSWORD_PROMPT, at).await;
    s.send(&format!("{E2E_UNIX_PASSWORD}\r")).await;
    let screen = s.screen.clone();
    shell_as(s, E2E_UNIX_USER, at).await;
    assert!(screen.certified().is_empty());
    assert!(sshd
        .log_text()
        .contains(&format!("Accepted password for {E2E_UNIX_USER}")));
}

#[tokio::test]
async fn a_latin1_keyboard_interactive_question_is_shown_replaced_and_login_goes_on() {
    // PAM passes its messages' bytes through; these are Latin-1 (and an
    // escape sequence), which ended the session in russh's UTF-8 decoding.
    pam_notice_then_login(
        "sallyport-e2e-kbd-latin1",
        b"Gr\xfc\xdfe aus M\xfcnchen \x1b[5mblink",
        "Gr\u{fffd}\u{fffd}e aus M\u{fffd}nchen \\033[5mblink\r\n",
    )
    .await;
}

#[tokio::test]
async fn a_name_the_certificate_does_not_cover_is_told_which_it_does_when_sshd_takes_only_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, sshd) = sshd_trusting_a_new_ca(dir.path());
    let screen = Screen::with_ca(ca.clone());
    let s = start(&sshd, screen, |o| {
        o.principals = vec![E2E_UNIX_USER.into(), "sallyport-e2e-ops".into()];
    })
    .await;
    s.screen
        .wait_for(&format!("login as: {E2E_UNIX_USER}"), 0)
        .await;
    s.send("\u{15}someone-else\r").await;
    assert_eq!(s.task.await.unwrap(), Ended::AuthFailed);
    let text = s.screen.text();
    assert!(
        text.ends_with(&format!(
            "web1: the server takes only keys, and there is no certificate for someone-else; \
             yours can log in as {E2E_UNIX_USER}, sallyport-e2e-ops.\r\n"
        )),
        "{text}"
    );
    assert!(s.screen.certified().is_empty());
}
