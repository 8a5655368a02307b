//! For the user-lifecycle journeys: an `ssh` through `sallyport proxy` that
//! stays open until something ends it, and reading a user's audit events.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;

use crate::{wait_or_kill, RelayProc, PATIENCE};

/// The line [`LongSsh`]'s remote command prints once its shell runs.
pub const READY: &str = "sallyport-ready";

/// The remote command of a [`LongSsh`]: says it is there, then waits far
/// longer than any test (it ends only when the session is ended).
pub fn ready_then_wait() -> String {
    format!("echo {READY}; exec sleep 600")
}

/// An `ssh` (built by `Client::ssh_command` with [`ready_then_wait`]) that
/// keeps its session open; killed on drop.
pub struct LongSsh {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl LongSsh {
    /// Starts `cmd` and waits until the remote shell said [`READY`].
    pub fn start(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ssh");
        let stdout = child.stdout.take().expect("ssh stdout");
        let (tx, lines) = mpsc::sync_channel(64);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut ssh = Self { child, lines };
        ssh.wait_ready();
        ssh
    }

    fn wait_ready(&mut self) {
        loop {
            match self.lines.recv_timeout(PATIENCE) {
                Ok(line) if line.trim() == READY => return,
                Ok(_) => {}
                Err(_) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!("ssh never reached its shell: {}", self.stderr_text());
                }
            }
        }
    }

    /// Waits (at most the harness's patience) for `ssh` to end; returns
    /// how it ended. Panics if it is still running then.
    pub fn ended(mut self) -> Output {
        let status = wait_or_kill(&mut self.child, PATIENCE)
            .unwrap_or_else(|| panic!("ssh still runs {PATIENCE:?} later"));
        let stderr = self.stderr_text().into_bytes();
        let stdout = self
            .lines
            .try_iter()
            .collect::<Vec<_>>()
            .join("\n")
            .into_bytes();
        Output {
            status,
            stdout,
            stderr,
        }
    }
}

impl LongSsh {
    /// What `ssh` (and the proxy it ran) wrote to stderr; for an ended one.
    fn stderr_text(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            use std::io::Read as _;
            let _ = e.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for LongSsh {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The events of type `kind` in the relay's audit log, as `audit export`
/// gives them (with `time` and `code`).
pub fn audit_events(relay: &RelayProc, kind: &str) -> Vec<serde_json::Value> {
    relay.audit_export(&["--type", kind])
}
