//! Restarting the harness's relay with extra command-line arguments (a
//! global flag such as `--log-json`), without touching the process's own
//! environment, which every other test would inherit.

use std::process::Command;
use std::time::Duration;

use crate::{bin, wait_for, Proc, RelayProc};

impl RelayProc {
    /// Stops the relay and starts it again as [`RelayProc::launch`] does,
    /// with `extra` after the usual `serve` arguments.
    pub fn relaunch_with(&mut self, extra: &[&str]) {
        self.kill();
        self.starts += 1;
        let sock = self.data_dir.join("admin.sock");
        let _ = std::fs::remove_file(&sock);
        let mut cmd = Command::new(bin("sallyport-relay"));
        cmd.arg("serve");
        if let Some(config) = &self.config {
            cmd.arg("--config").arg(config);
        }
        cmd.arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen-https", &format!("127.0.0.1:{}", self.https_port)])
            .args([
                "--listen-tunnel",
                &format!("127.0.0.1:{}", self.tunnel_port),
            ])
            .args(["--public-url", &self.url()])
            .args([
                "--public-tunnel-addr",
                &format!("127.0.0.1:{}", self.tunnel_port),
            ])
            .args(["--drain-timeout", "5s"])
            .args(extra)
            .env("RUST_LOG", "info");
        let proc = Proc::spawn(
            "relay",
            &mut cmd,
            self.dir.join(format!("relay-{}.log", self.starts)),
        );
        let addr = self.https_addr();
        let proc = self.proc.insert(proc);
        wait_for(&format!("the relay to serve on {addr}"), || {
            assert!(proc.is_running(), "the relay exited:\n{}", proc.log_text());
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()
        });
        wait_for("the relay's admin socket", || sock.exists().then_some(()));
    }
}
