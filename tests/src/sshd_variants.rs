//! sshd with one setting changed at a time, as people run it: sshd_config
//! lines put before the harness's own (in sshd_config the first occurrence
//! of a keyword wins), and files for settings that name one (`Banner`).

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sallyport_client::ssh::Certified;

use crate::{wait_for, wait_for_tcp, Proc, Sshd};

/// A PAM service of the tests' own, `/etc/pam.d/NAME`; removed on drop.
pub struct PamService {
    path: PathBuf,
}

impl Drop for PamService {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Sshd {
    /// An sshd like [`Sshd::start_password`]'s (PAM, password and
    /// keyboard-interactive for [`crate::E2E_UNIX_USER`]) with `lines`
    /// first in its sshd_config, e.g. `["UsePAM no"]`.
    pub fn start_password_with(dir: &Path, lines: &[&str]) -> Self {
        let mut sshd = Self::start_password(dir);
        sshd.restart_with_lines(lines);
        sshd
    }

    /// Restarts sshd on the same port with `lines` before the config it
    /// has, so that they win over the harness's.
    pub fn restart_with_lines(&mut self, lines: &[&str]) {
        let path = self.dir.join("sshd_config");
        let config = std::fs::read_to_string(&path).expect("sshd_config");
        let mut changed = String::new();
        for line in lines {
            changed.push_str(line);
            changed.push('\n');
        }
        changed.push_str(&config);
        std::fs::write(&path, changed).expect("sshd_config");
        self.stop();
        self.launch();
    }

    /// Stops sshd and waits until its port takes no connections: a child
    /// it forked for the harness's readiness probe may hold the listening
    /// socket for a moment after it died, and a new sshd could not bind it
    /// meanwhile (the next connection would then be reset).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        wait_for(&format!("{addr} to be closed"), || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                .is_err()
                .then_some(())
        });
    }

    /// Writes `contents` to a file named `name` beside sshd_config (a
    /// `Banner`, say); returns its path.
    pub fn write_file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, contents).expect("sshd file");
        path
    }

    /// An sshd like [`Sshd::start_password`]'s whose PAM stack runs
    /// `auth_lines` before Debian's sshd stack. sshd names its PAM service
    /// after the file it was started as, so it is started through a
    /// symlink named `name` (unique per test: `sallyport-e2e-…`), with
    /// `/etc/pam.d/NAME` holding the stack while the service lives. Needs
    /// root, as sshd with PAM does.
    pub fn start_password_with_pam(dir: &Path, name: &str, auth_lines: &str) -> (Self, PamService) {
        assert!(
            name.starts_with("sallyport-e2e-") && !name.contains('/'),
            "a PAM service name of the tests' own: {name}"
        );
        let mut sshd = Self::start_password(dir);
        let path = Path::new("/etc/pam.d").join(name);
        std::fs::write(&path, format!("{auth_lines}\n@include sshd\n")).expect("PAM service");
        let service = PamService { path };
        let binary = ["/usr/sbin/sshd", "/usr/bin/sshd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("OpenSSH sshd is not installed");
        let link = sshd.dir.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(binary, &link).expect("symlink to sshd");
        sshd.stop();
        sshd.restarts += 1;
        sshd.proc = Some(Proc::spawn(
            "sshd",
            Command::new(&link)
                .args(["-D", "-e", "-f"])
                .arg(sshd.dir.join("sshd_config")),
            sshd.dir.join(format!("sshd-{}.log", sshd.restarts)),
        ));
        wait_for_tcp(SocketAddr::from(([127, 0, 0, 1], sshd.port)));
        (sshd, service)
    }
}

/// A fresh key and its certificate for `principal`, signed by `ca` with
/// OpenSSH's ssh-keygen.
pub fn sign(ca: &Path, principal: &str) -> Certified {
    let (key, public) = sallyport_client::ssh::new_key().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pub_path = dir.path().join("id.pub");
    std::fs::write(&pub_path, public).unwrap();
    let out = Command::new("ssh-keygen")
        .args(["-q", "-s"])
        .arg(ca)
        .args(["-I", "ssh_auth test", "-n", principal, "-V", "+5m"])
        .arg(&pub_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(dir.path().join("id-cert.pub")).unwrap();
    let certificate = russh::keys::ssh_key::Certificate::from_openssh(text.trim()).unwrap();
    Certified { key, certificate }
}
