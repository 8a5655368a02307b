//! Driving `sallyport login` as a person does: through the browser (the
//! command prints a URL and waits for the relay's redirect on loopback) or
//! typing the password at a prompt on a pseudo-terminal (`script`, from
//! util-linux), and running the other `sallyport` commands.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

use crate::{bin, wait_for, wait_or_kill, Client, RelayProc, PATIENCE};

/// `sallyport ARGS` for `client`, to completion.
pub fn sallyport(client: &Client, args: &[&str]) -> Output {
    Command::new(bin("sallyport"))
        .args(args)
        .env("SALLYPORT_HOME", &client.home)
        .stdin(Stdio::null())
        .output()
        .expect("run sallyport")
}

/// A `sallyport login` through the browser, waiting for its redirect.
pub struct BrowserLogin {
    child: Child,
    stderr: PathBuf,
}

impl BrowserLogin {
    /// Starts `sallyport login --relay URL --no-browser` for `client`,
    /// trusting the relay's certificate.
    pub fn start(client: &Client, relay: &RelayProc) -> Self {
        std::fs::create_dir_all(&client.home).expect("client home");
        let stderr = client.home.with_extension("login.err");
        let child = Command::new(bin("sallyport"))
            .args([
                "login",
                "--relay",
                &relay.url(),
                "--no-browser",
                "--ca-cert",
            ])
            .arg(relay.data_dir.join("https.pem"))
            .env("SALLYPORT_HOME", &client.home)
            .env_remove("DISPLAY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("login stderr file"))
            .spawn()
            .expect("run sallyport login");
        Self { child, stderr }
    }

    /// The sign-in URL the command printed, once it has.
    pub fn url(&self) -> String {
        wait_for("sallyport login to print its URL", || {
            std::fs::read_to_string(&self.stderr)
                .ok()?
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with("https://") && l.contains("/cli/login?"))
                .map(str::to_owned)
        })
    }

    /// The loopback port in the printed URL.
    pub fn port(&self) -> u16 {
        let url = self.url();
        let port = url
            .split(['?', '&'])
            .find_map(|kv| kv.strip_prefix("port="))
            .expect("port in the sign-in URL");
        port.parse().expect("port number")
    }

    /// Waits for the command to end; returns whether it succeeded and its stderr.
    pub fn finish(mut self) -> (bool, String) {
        let status = wait_or_kill(&mut self.child, PATIENCE);
        let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        (status.is_some_and(|s| s.success()), err)
    }
}

/// `sallyport login --password` on a pseudo-terminal (`script`): for each
/// (prompt, answer) of `answers`, waits for the prompt and for the
/// terminal's echo to be off (so nothing is typed while it would still be
/// echoed), then types the answer. Returns whether the command succeeded
/// and everything the terminal showed.
pub fn login_on_a_terminal(
    client: &Client,
    relay: &RelayProc,
    user: &str,
    answers: &[(&str, &str)],
) -> (bool, String) {
    let command = format!(
        "exec {} login --relay {} --user {user} --password --ca-cert {}",
        bin("sallyport").display(),
        relay.url(),
        relay.data_dir.join("https.pem").display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("SALLYPORT_HOME", &client.home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run script (util-linux)");
    let mut input = child.stdin.take().expect("stdin");
    let mut output = child.stdout.take().expect("stdout");
    // The terminal's output, read as it comes.
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = output.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut shown = Vec::new();
    let mut from = 0;
    for (prompt, answer) in answers {
        let deadline = std::time::Instant::now() + PATIENCE;
        while !String::from_utf8_lossy(&shown[from..]).contains(prompt) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(bytes) => shown.extend(bytes),
                Err(_) => panic!(
                    "no prompt {prompt:?} on the terminal; it showed:\n{}",
                    String::from_utf8_lossy(&shown)
                ),
            }
        }
        from = shown.len();
        let tty = terminal_of(child.id());
        wait_for("the terminal's echo to be off", || {
            let out = Command::new("stty")
                .arg("-F")
                .arg(&tty)
                .arg("-a")
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.split_whitespace().any(|w| w == "-echo").then_some(())
        });
        input
            .write_all(format!("{answer}\n").as_bytes())
            .expect("type on the terminal");
    }
    let status = wait_or_kill(&mut child, PATIENCE);
    drop(input);
    let _ = reader.join();
    while let Ok(bytes) = rx.try_recv() {
        shown.extend(bytes);
    }
    (
        status.is_some_and(|s| s.success()),
        String::from_utf8_lossy(&shown).into_owned(),
    )
}

/// The pseudo-terminal `script` (process `pid`) runs its command on: the
/// standard input of its child.
fn terminal_of(pid: u32) -> PathBuf {
    wait_for("script to start its command", || {
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
        let child = children.split_whitespace().next()?.to_owned();
        std::fs::read_link(format!("/proc/{child}/fd/0"))
            .ok()
            .filter(|p| p.starts_with("/dev/pts"))
    })
}
