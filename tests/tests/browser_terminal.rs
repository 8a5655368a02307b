//! The terminal's bytes, exact both ways, in Chromium against a real sshd:
//! characters split across SSH packets, wide characters' cells, a paste of
//! 16 MiB into `cat` (its echo flowing back meanwhile), Ctrl-C after a
//! flood, X10 mouse reports and closing a tab with a live session. What the
//! server got is read from its files; what the page shows from
//! `window.sallyport.term`.

use sallyport_client::ssh;
use sallyport_tests::*;
use serde_json::Value;

/// Password sshd served as `web1` by connector `c1`, with the Sallyport user
/// named like the Unix account (the login name the page prefills).
fn password_env() -> (Env, Proc) {
    let env = Env::start_with(SshdAuth::Password);
    let c = env.connector("c1", "web1", &[]);
    env.relay.wait_online("c1", 2);
    env.relay.add_user(E2E_UNIX_USER, PASSWORD);
    (env, c)
}

fn run(env: &Env, script: &str, vars: &[(&str, &str)]) -> Value {
    let mut all = vec![("SERVICE", "web1"), ("SSH_PASSWORD", E2E_UNIX_PASSWORD)];
    all.extend_from_slice(vars);
    browser(
        env.path(),
        &env.relay,
        (E2E_UNIX_USER, PASSWORD),
        script,
        &all,
    )
}

/// A file the shell (as [`E2E_UNIX_USER`]) writes and this test reads: in
/// /tmp, which both may use, named for this process and `what`.
struct ServerFile(std::path::PathBuf);

impl ServerFile {
    fn new(what: &str) -> Self {
        let path =
            std::path::PathBuf::from(format!("/tmp/sallyport-term-{}-{what}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 path")
    }

    fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.0).unwrap_or_default()
    }
}

impl Drop for ServerFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn sha256(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn a_character_split_across_packets_is_shown_whole_and_wide_ones_take_two_cells() {
    let (env, _c1) = password_env();
    let r = run(&env, "term_utf8", &[]);
    let splits = r["splits"].as_array().expect("splits");
    // é at 1; — at 1 and 2 (`A\xe2\x80` then `\x94B`); 😀 at 1, 2 and 3.
    assert_eq!(splits.len(), 6, "{r}");
    for split in splits {
        assert_eq!(split["shown"], split["want"], "split: {split}");
    }
    // `G😀H`: the emoji takes cells 1 and 2 (Unicode 11 widths), so H is in
    // cell 3, as the server's wcwidth has it (4 columns in all).
    let cells = r["cells"].as_array().expect("the G😀H line");
    let cell = |i: usize| (cells[i]["chars"].as_str(), cells[i]["width"].as_u64());
    assert_eq!(cell(0), (Some("G"), Some(1)), "{r}");
    assert_eq!(cell(1), (Some("😀"), Some(2)), "{r}");
    assert_eq!(cell(2), (Some(""), Some(0)), "{r}");
    assert_eq!(cell(3), (Some("H"), Some(1)), "{r}");
    assert_eq!(r["serverWidth"], 4, "the server's wcwidth: {r}");
}

#[test]
fn a_16_mib_paste_into_cat_arrives_whole() {
    let (env, _c1) = password_env();
    // 16 MiB of lines a pty passes as they are: base64's alphabet, 63
    // characters and a line feed each (a canonical-mode line holds 4095).
    const SIZE: usize = 16 << 20;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = Vec::with_capacity(SIZE);
    let mut x: u32 = 0x9e37_79b9;
    while text.len() < SIZE {
        if text.len() % 64 == 63 {
            text.push(b'\n');
        } else {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            text.push(ALPHABET[(x % 64) as usize]);
        }
    }
    let source = env.path().join("paste.txt");
    std::fs::write(&source, &text).expect("write the paste");
    let remote = ServerFile::new("paste");
    let r = run(
        &env,
        "term_paste",
        &[
            ("PASTE_FILE", source.to_str().expect("path")),
            ("REMOTE_FILE", remote.path()),
        ],
    );
    assert_eq!(r["promptBack"], true, "cat never finished: {r}");
    let got = remote.bytes();
    assert_eq!(got.len(), text.len(), "{r}");
    assert_eq!(sha256(&got), sha256(&text));
    assert_eq!(r["session"]["status"], "connected", "{r}");
}

#[test]
fn ctrl_c_after_a_flood_stops_it_within_what_flow_control_lets_through() {
    let (env, _c1) = password_env();
    let r = run(&env, "term_interrupt", &[]);
    // What may still arrive after Ctrl-C: the window sshd may fill before it
    // sees the Ctrl-C, the window it read from the pty meanwhile (OpenSSH
    // reads ahead up to the window), one more granted while the Ctrl-C was
    // on its way, the packets russh queues, and the page's queue and the
    // write in xterm's hands.
    let window = u64::from(ssh::SHELL_WINDOW);
    let queued = (ssh::SHELL_CHANNEL_BUFFER as u64) * u64::from(ssh::SHELL_MAX_PACKET);
    let received = r["receivedAfter"].as_u64().expect("receivedAfter");
    let bound = 3 * window + queued;
    assert!(
        received <= bound,
        "{received} bytes received after Ctrl-C, more than the {bound} in flight at most: {r}"
    );
    let page = r["limits"]["highWater"].as_u64().expect("highWater")
        + r["limits"]["maxWrite"].as_u64().expect("maxWrite");
    let shown = r["shownAfter"].as_u64().expect("shownAfter");
    assert!(
        shown <= bound + page,
        "{shown} bytes shown after Ctrl-C, more than the {} in flight at most: {r}",
        bound + page
    );
    eprintln!(
        "after Ctrl-C: {shown} bytes shown in {:.0} ms (flood at {:.1} MB/s)",
        r["msToPrompt"].as_f64().unwrap_or_default(),
        r["floodMbPerSecond"].as_f64().unwrap_or_default()
    );
}

#[test]
fn ctrl_c_after_binary_garbage_on_a_slow_page_stops_within_a_window_sized_to_the_page() {
    let (env, _c1) = password_env();
    // Raw random bytes render about ten times slower than text in xterm,
    // and the CPU throttled six times slows that again: the window the
    // client grants must follow the page's speed. ESC and the lead byte of
    // UTF-8's C1 controls are left out, so the garbage cannot change the
    // terminal's modes and hide the prompt.
    let r = run(
        &env,
        "term_interrupt",
        &[
            ("THROTTLE", "6"),
            ("FLOOD_BYTES", "524288"),
            (
                "FLOOD_COMMAND",
                r"head -c 50M /dev/urandom | tr -d '\033\302'",
            ),
        ],
    );
    let received = r["receivedAfter"].as_u64().expect("receivedAfter");
    let flood = r["floodMbPerSecond"].as_f64().expect("floodMbPerSecond");
    eprintln!(
        "throttled 6x, binary: {received} bytes received and {} shown after Ctrl-C, prompt in {:.0} ms (flood at {flood:.3} MB/s)",
        r["shownAfter"].as_u64().unwrap_or_default(),
        r["msToPrompt"].as_f64().unwrap_or_default(),
    );
    // The flood went at the page's speed (flow control held the rest at
    // the server), so the window the client grants is about what arrives in
    // a quarter of a second at that speed (half as much again here: the
    // client measures it over shorter spans than the whole flood, smoothed),
    // at least MIN_WINDOW. What may still arrive is three such windows (as
    // in the test above) and the packets russh holds, not three of the
    // largest window: a fixed 256 KiB window let 135-230 KB through at
    // 0.02-0.09 MB/s, where the bound here is 36-113 KB.
    let quarter_second = (1.5 * flood * 1e6 * ssh::pace::RENDER_BUDGET_MS / 1e3) as u64;
    let window = quarter_second.clamp(
        u64::from(ssh::pace::MIN_WINDOW),
        u64::from(ssh::pace::MAX_WINDOW),
    );
    let queued = (ssh::SHELL_CHANNEL_BUFFER as u64 + 1) * u64::from(ssh::SHELL_MAX_PACKET);
    let bound = 3 * window + queued;
    assert!(
        received <= bound,
        "{received} bytes received after Ctrl-C, more than the {bound} a window sized to the page lets through: {r}"
    );
}

#[test]
fn default_mode_mouse_reports_reach_the_server_as_bytes() {
    let (env, _c1) = password_env();
    let remote = ServerFile::new("mouse");
    let r = run(&env, "term_mouse", &[("REMOTE_FILE", remote.path())]);
    assert_eq!(r["done"], true, "the shell never got 12 bytes: {r}");
    // X10 encoding (ESC [ M, then 32 + button, column, row, 1-based): a
    // left press and its release at column 100, row 3; the column's byte
    // is 0x84 as it is, not UTF-8's C2 84.
    let column = r["column"].as_u64().expect("column") as u8;
    let row = r["row"].as_u64().expect("row") as u8;
    let report = |button: u8| [0x1b, b'[', b'M', 32 + button, 32 + column, 32 + row];
    let want: Vec<u8> = [report(0), report(3)].concat();
    assert_eq!(remote.bytes(), want, "{r}");
}

#[test]
fn a_live_session_asks_before_the_tab_closes() {
    let (env, _c1) = password_env();
    let r = run(&env, "term_unload", &[]);
    assert_eq!(r["whileLive"], serde_json::json!(["beforeunload"]), "{r}");
    // Staying kept the session.
    assert_eq!(r["answer"], "still-42", "{r}");
    assert_eq!(r["statusWhileLive"], "connected", "{r}");
    // Ended, the tab closes without asking.
    assert_eq!(r["afterEnd"], serde_json::json!([]), "{r}");
    assert_eq!(r["closedAfterEnd"], true, "{r}");
}

#[test]
fn input_the_server_does_not_take_shows_the_session_stalled_not_connected() {
    let (env, _c1) = password_env();
    let r = run(&env, "term_stall", &[]);
    assert_eq!(r["session"]["status"], "stalled", "{r}");
    let shown = r["shown"].as_str().expect("the status text");
    assert!(
        shown.starts_with("stalled: ") && shown.contains("bytes of input wait"),
        "{r}"
    );
}
